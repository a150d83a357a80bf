"""Token cache: ``run.sh tokenize`` in-process on real mp4 files with a tiny random tokenizer, read back
with ``TokenDataset`` (also through forked DataLoader workers); resume, rebuild, interruption, bad input."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from videogen.cli import main
from videogen.data.manifest import read_manifest
from videogen.data.transforms import ClipTransform
from videogen.data.video_dataset import VideoClipDataset
from videogen.token_cache import format as cache_format
from videogen.token_cache.format import TokenCacheError
from videogen.token_cache.reader import TokenDataset, select_task
from videogen.tokenizer import VideoTokenizer
from videogen.transformer.tasks import TASKS, build_condition
from videogen.video_io import read_video, write_video

FRAMES, RES = 9, 32  # 9 x 32 x 32 clips -> a 3 x 8 x 8 token grid with the tiny tokenizer below
CLIP_LENGTHS = (13, 21, 9, 17, 30)  # frames of the good clips (labels 0, 1, 2, 0, 1)
BROKEN_ROW = 2  # the manifest row of a file that does not decode
ALL_TASKS = [n for n in TASKS if n not in ("outpaint", "inpaint", "image_generation")]
TASK_OPTIONS = {"frame_prediction": {"num_cond_frames": 5}, "class_frame_prediction": {"num_cond_frames": 5}}
TASK_OPTIONS["interpolation"] = {"num_cond_frames": 1}


def make_tokenizer(path: Path, seed: int = 0, bits: int = 6) -> VideoTokenizer:
    torch.manual_seed(seed)
    tokenizer = VideoTokenizer.from_preset("tiny", base_channels=8, num_groups=4, lfq={"bits": bits}).eval()
    tokenizer.save_pretrained(path)
    return tokenizer


def make_clip(path: Path, num_frames: int, seed: int) -> None:
    """A 48 x 64 clip: a moving gradient plus a bright square that moves (so frames differ)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:48, 0:64]
    base = rng.integers(0, 256, 3)
    frames = np.zeros((num_frames, 48, 64, 3), dtype=np.uint8)
    for t in range(num_frames):
        for c in range(3):
            frames[t, ..., c] = (base[c] + 3 * x + (c + 1) * y + 7 * t) % 256
        top, left = (2 * t) % 36, (3 * t + seed) % 52
        frames[t, top : top + 12, left : left + 12] = 250
    write_video(path, frames, fps=10)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """A tokenizer export, a manifest of 5 good clips + 1 broken file, and a cache of all tasks with flips."""
    root = tmp_path_factory.mktemp("token_cache")
    tokenizer = make_tokenizer(root / "tokenizer")
    rows = []
    for i, length in enumerate(CLIP_LENGTHS):
        make_clip(root / f"clip{i}.mp4", length, seed=i)
        rows.append({"path": f"clip{i}.mp4", "num_frames": length, "fps": 10.0, "height": 48, "width": 64})
        rows[-1]["label"] = i % 3
    (root / "broken.mp4").write_bytes(os.urandom(3000))
    rows.insert(BROKEN_ROW, {"path": "broken.mp4", "num_frames": 20, "fps": 10.0, "height": 48, "width": 64})
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    world = {"root": root, "tokenizer": tokenizer, "manifest": root / "train.jsonl", "cache": root / "cache"}
    args = ["--flip", "both", "--shard-size", "2", "--batch-size", "3", "--workers", "2"]
    assert tokenize(world, world["cache"], *args) == 0
    return world


def tokenize(world: dict, out: Path, *extra: str, tokenizer: Path | None = None) -> int:
    return main(
        [
            "tokenize",
            "--tokenizer",
            str(tokenizer or world["root"] / "tokenizer"),
            "--data",
            str(world["manifest"]),
        ]
        + [
            "--out",
            str(out),
            "--num-frames",
            str(FRAMES),
            "--resolution",
            str(RES),
            "--device",
            "cpu",
            *extra,
        ]
    )


def all_items(dataset: TokenDataset) -> list[dict]:
    return [dataset[i] for i in range(len(dataset))]


def shard_meta_mtimes(cache: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in sorted((cache / "shards").glob("*/meta.json"))}


# ----------------------------------------------------------------------------- contents


def test_cache_holds_the_tokenizers_tokens_conditions_masks_and_labels(world):
    tokenizer, manifest = world["tokenizer"], read_manifest(world["manifest"])
    good = np.array([r for r in range(len(manifest)) if r != BROKEN_ROW])
    clips = VideoClipDataset(manifest.select(good), num_frames=FRAMES, resolution=RES, train=False)
    videos = torch.stack([clips[i]["video"] for i in range(len(clips))])  # (5, 3, 9, 32, 32)
    videos = torch.stack([videos, videos.flip(-1)], dim=1).flatten(0, 1)  # each clip, then its mirror
    grid = tokenizer.latent_shape(FRAMES, RES, RES)

    dataset = TokenDataset(world["cache"])
    items = all_items(dataset)
    assert len(dataset) == 10 and dataset.grid_shape == grid == (3, 8, 8)
    assert dataset.codebook_size == 64 and dataset.num_classes == 3
    assert list(dataset.tasks) == ALL_TASKS
    tokens = torch.stack([it["tokens"] for it in items])
    assert tokens.dtype == torch.int64
    assert torch.equal(tokens, tokenizer.tokenize(videos))
    assert [int(it["label"]) for it in items] == [int(manifest.labels[r]) for r in good for _ in range(2)]
    assert [dataset.source(i) for i in range(10)] == [(int(r), 0, f) for r in good for f in (False, True)]

    conditions = {
        name: build_condition(name, videos, grid, **TASK_OPTIONS.get(name, {})) for name in ALL_TASKS
    }
    with_cond = [name for name in ALL_TASKS if TASKS[name].has_condition]
    expected = tokenizer.tokenize(torch.cat([conditions[n].video for n in with_cond])).split(len(videos))
    expected = dict(zip(with_cond, expected))
    for name in ALL_TASKS:
        got = torch.stack([it["cond_tokens"][name] for it in items])
        want = expected.get(name, torch.zeros_like(got))
        assert torch.equal(got, want), name
        masks = torch.stack([it["cond_mask"][name] for it in items])
        assert masks.dtype == torch.bool and torch.equal(masks, conditions[name].latent_mask), name
    assert dataset.masks["frame_prediction"][:2].all() and not dataset.masks["frame_prediction"][2:].any()
    assert not dataset.masks["class_generation"].any()

    index = json.loads((world["cache"] / "index.json").read_text())
    assert index["num_failed"] == 1 and index["failed"][0]["row"] == BROKEN_ROW
    assert index["tokenizer"]["dir"] == str((world["root"] / "tokenizer").resolve())
    assert index["tasks"]["class_frame_prediction"]["cond_field"] == "cond_frame_prediction"
    shard = world["cache"] / "shards" / "00000"
    assert np.load(shard / "tokens.npy", mmap_mode="r").dtype == np.uint16
    fields = {p.name for p in shard.glob("*.npy")}
    assert fields == {"tokens.npy", "labels.npy", "rows.npy", "windows.npy", "flips.npy"} | {
        f"cond_{n}.npy" for n in with_cond if n != "class_frame_prediction"
    }  # no per-clip masks: one file per task under masks/
    assert sorted(p.stem for p in (world["cache"] / "masks").glob("*.npy")) == sorted(ALL_TASKS)


def test_several_windows_per_clip(world, tmp_path):
    out = tmp_path / "windows"
    assert tokenize(world, out, "--windows-per-clip", "2", "--tasks", "FP", "--cond-frames", "1") == 0
    dataset = TokenDataset(out, tokenizer=world["tokenizer"])
    manifest = read_manifest(world["manifest"])
    transform = ClipTransform(RES, train=False)
    expected, sources = [], []
    for row in range(len(manifest)):
        if row == BROKEN_ROW:
            continue
        last_start = int(manifest.num_frames[row]) - FRAMES
        for window, start in enumerate((0, last_start)):  # first and last possible start
            frames = read_video(manifest.paths[row], np.arange(start, start + FRAMES))
            expected.append(transform(frames))
            sources.append((row, window, False))
    tokens = torch.stack([it["tokens"] for it in all_items(dataset)])
    assert torch.equal(tokens, world["tokenizer"].tokenize(torch.stack(expected)))
    assert [dataset.source(i) for i in range(len(dataset))] == sources
    assert dataset.tasks == ("frame_prediction",)
    assert dataset.masks["frame_prediction"][0].all() and not dataset.masks["frame_prediction"][1:].any()


def test_forked_dataloader_workers_read_the_memmaps(world):
    dataset = TokenDataset(world["cache"], tasks=["FP", "class_generation", "IPD"])
    assert dataset.tasks == ("frame_prediction", "class_generation", "inpaint_dynamic")
    direct = all_items(dataset)  # memmaps opened in the parent before the fork: workers reopen their own
    loader = DataLoader(dataset, batch_size=4, num_workers=2, multiprocessing_context="fork")
    batches = list(loader)
    assert torch.equal(
        torch.cat([b["tokens"] for b in batches]), torch.stack([it["tokens"] for it in direct])
    )
    assert torch.equal(torch.cat([b["label"] for b in batches]), torch.stack([it["label"] for it in direct]))
    batch = batches[0]
    assert set(batch["cond_tokens"]) == set(dataset.tasks) and batch["cond_mask"][
        "inpaint_dynamic"
    ].shape == (
        4,
        3,
        8,
        8,
    )
    names = ["frame_prediction", "class_generation", "inpaint_dynamic", "frame_prediction"]
    cond, mask = select_task(batch, names)
    for b, name in enumerate(names):
        assert torch.equal(cond[b], direct[b]["cond_tokens"][name])
        assert torch.equal(mask[b], dataset.masks[name])
    restored = pickle.loads(pickle.dumps(dataset))  # as a spawned worker gets it: no memmap travels
    assert not restored._open and torch.equal(restored[5]["tokens"], direct[5]["tokens"])
    flat = dataset.item(3, "IPD")
    assert torch.equal(flat["cond_tokens"], direct[3]["cond_tokens"]["inpaint_dynamic"])
    assert int(flat["task_id"]) == TASKS["inpaint_dynamic"].task_id
    with pytest.raises(TokenCacheError, match="no task image_generation"):
        TokenDataset(world["cache"], tasks=["image_generation"])


# ----------------------------------------------------------------------------- resume and repair


def test_rerun_skips_complete_shards_and_rebuilds_damaged_ones(world, tmp_path, capsys):
    cache = tmp_path / "cache"
    shutil.copytree(world["cache"], cache)
    before = all_items(TokenDataset(cache))
    mtimes = shard_meta_mtimes(cache)
    assert len(mtimes) == 3
    capsys.readouterr()
    assert tokenize(world, cache, "--flip", "both", "--shard-size", "2", "--workers", "0") == 0
    assert "(0 written, 3 already complete)" in capsys.readouterr().out
    assert shard_meta_mtimes(cache) == mtimes

    (cache / "shards" / "00001" / "tokens.npy").unlink()  # a deleted file
    damaged = cache / "shards" / "00002" / "cond_outpaint_dynamic.npy"
    data = bytearray(damaged.read_bytes())
    data[-5:] = bytes(255 - b for b in data[-5:])  # same size, other bytes
    damaged.write_bytes(bytes(data))
    with pytest.raises(TokenCacheError, match="damaged.*00001.*tokens.npy.*is missing"):
        TokenDataset(cache)
    assert tokenize(world, cache, "--flip", "both", "--shard-size", "2", "--workers", "0") == 0
    assert "(2 written, 1 already complete)" in capsys.readouterr().out
    after = shard_meta_mtimes(cache)
    assert after["00000"] == mtimes["00000"] and after["00001"] != mtimes["00001"]
    assert after["00002"] != mtimes["00002"]
    for old, new in zip(before, all_items(TokenDataset(cache))):
        assert torch.equal(old["tokens"], new["tokens"])
        for name in old["cond_tokens"]:
            assert torch.equal(old["cond_tokens"][name], new["cond_tokens"][name])


def test_interrupted_run_is_not_taken_as_complete(world, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    real_commit, calls = cache_format.commit_shard, []

    def commit_then_interrupt(tmp: Path, final: Path) -> None:
        calls.append(final.name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if Ctrl-C arrived while the second shard was being written
        real_commit(tmp, final)

    monkeypatch.setattr(cache_format, "commit_shard", commit_then_interrupt)
    assert tokenize(world, cache, "--flip", "both", "--shard-size", "2", "--workers", "0") == 130
    monkeypatch.setattr(cache_format, "commit_shard", real_commit)
    assert not (cache / "index.json").exists()
    assert [p.name for p in (cache / "shards").iterdir()] == ["00000"]
    # a temporary shard left behind by a killed process looks complete inside but must not count
    shutil.copytree(cache / "shards" / "00000", cache / "shards" / ".00001.tmp-99999")
    capsys.readouterr()
    with pytest.raises(TokenCacheError, match="incomplete"):
        TokenDataset(cache)
    assert tokenize(world, cache, "--flip", "both", "--shard-size", "2", "--workers", "0") == 0
    assert "(2 written, 1 already complete)" in capsys.readouterr().out
    assert sorted(p.name for p in (cache / "shards").iterdir()) == ["00000", "00001", "00002"]
    resumed, reference = all_items(TokenDataset(cache)), all_items(TokenDataset(world["cache"]))
    assert all(torch.equal(a["tokens"], b["tokens"]) for a, b in zip(resumed, reference))
    assert len(resumed) == len(reference) == 10


# ----------------------------------------------------------------------------- bad input


def test_bad_input_is_a_one_line_error_with_exit_2(world, tmp_path, capsys):
    not_empty = tmp_path / "notes"
    not_empty.mkdir()
    (not_empty / "todo.txt").write_text("mine")
    cases = {
        "no tokenizer": ["--tokenizer", str(tmp_path / "nope")],
        "no manifest": ["--data", str(tmp_path / "missing.jsonl")],
        "not a cache folder": ["--out", str(not_empty)],
        "unknown task": ["--tasks", "frame_prediction,juggling"],
        "task that does not fit": ["--tasks", "image_generation"],
        "bad window count": ["--windows-per-clip", "0"],
        "too many condition frames": ["--cond-frames", str(FRAMES)],
    }
    for case, extra in cases.items():
        argv = ["tokenize", "--tokenizer", str(world["root"] / "tokenizer"), "--data", str(world["manifest"])]
        argv += [
            "--out",
            str(tmp_path / "out"),
            "--num-frames",
            str(FRAMES),
            "--resolution",
            str(RES),
            *extra,
        ]
        assert main(argv) == 2, case
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, (case, err)
    assert (not_empty / "todo.txt").read_text() == "mine"
    with pytest.raises(TokenCacheError, match="is not a token cache") as info:
        TokenDataset(not_empty)
    assert "\n" not in str(info.value)


def test_another_tokenizer_is_refused(world, tmp_path, capsys):
    other_config = make_tokenizer(tmp_path / "bits5", bits=5)
    make_tokenizer(tmp_path / "reseeded", seed=1)  # same config, other weights
    TokenDataset(world["cache"], tokenizer=world["root"] / "tokenizer")  # the right one passes
    for wrong in (other_config, tmp_path / "bits5", other_config.config):
        with pytest.raises(TokenCacheError, match="made with tokenizer config"):
            TokenDataset(world["cache"], tokenizer=wrong)
    with pytest.raises(TokenCacheError, match="other weights"):
        TokenDataset(world["cache"], tokenizer=tmp_path / "reseeded")

    cache = tmp_path / "cache"
    shutil.copytree(world["cache"], cache)
    capsys.readouterr()
    args = ("--flip", "both", "--shard-size", "2", "--workers", "0")
    assert tokenize(world, cache, *args, tokenizer=tmp_path / "bits5") == 2
    assert "other settings (differing: " in capsys.readouterr().err
    assert tokenize(world, cache, *args, "--tasks", "FP", "--overwrite", tokenizer=tmp_path / "bits5") == 0
    replaced = TokenDataset(cache, tokenizer=tmp_path / "bits5")
    assert replaced.codebook_size == 32 and replaced.tasks == ("frame_prediction",)
