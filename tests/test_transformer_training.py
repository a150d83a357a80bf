"""Transformer training end to end: generated moving-digit mp4 clips and stills -> a tiny random tokenizer
export -> token caches made on first use (clips, held-out clips, stills) -> a DeepSpeed run (real engine,
EMA, checkpoints) -> an export that records what it was trained for, samples, resume; plus the per-sample
task mix with image steps and the bad-input paths."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch.utils.data import default_collate

from videogen.cli import main as cli_main
from videogen.config_loader import ConfigError
from videogen.data.sample_data import SampleParams, make_sample_data
from videogen.export import state_dict_sha256
from videogen.token_cache.reader import TokenDataset
from videogen.tokenizer import VideoTokenizer
from videogen.transformer import CommitTransformer, TransformerConfig
from videogen.transformer.vocab import MASK_ID, TASK_IDS, UNCOND_TASK_ID
from videogen.transformer_training.loop import main
from videogen.transformer_training.step import (
    TrainStep,
    build_inputs,
    evaluate_fixed,
    image_batch,
    seeded_generator,
)
from videogen.transformer_training.training_config import DEFAULT_CONFIG, load_training_config
from videogen.video_io import read_video

FRAMES, RES = 9, 16  # 9 x 16 x 16 clips -> a 3 x 4 x 4 token grid with the tiny tokenizer below
STEPS, MORE_STEPS = 40, 46
TASKS = {
    "frame_prediction": 1,
    "interpolation": 1,
    "inpaint_central": 1,
    "class_generation": 1,
    "image_generation": 1,
}
NUM_IMAGES = 8


def run_config(root: Path, **changes) -> dict:
    """A test-sized run: 2-layer 64-wide model, high lr, every evaluation at the same fixed masks."""
    config = {
        "run": {"root": str(root / "runs"), "name": "tiny"},
        "tokenizer": str(root / "tokenizer"),
        "data": {
            "train": str(root / "data" / "train.jsonl"),
            "val": str(root / "data" / "val.jsonl"),
            "image_data": str(root / "data" / "images.jsonl"),
            "image_batch_size": 4,
            "num_frames": FRAMES,
            "resolution": RES,
            "num_workers": 0,
        },
        "tokenize": {"batch_size": 4, "max_clips": 20},  # 20 of the 24 clips, evenly spaced
        "model": {"preset": "tiny", "hidden_size": 64, "num_layers": 2, "num_heads": 2},
        "masking": {"tasks": TASKS, "task_mode": "per_sample"},
        "evaluation": {"num_items": 8, "batch_size": 8},
        "sampling": {
            "tasks": ["frame_prediction", "class_generation"],
            "num_videos": 2,
            "steps": 4,
            "conditioned": {"steps": 1, "temperature": 0.0},
        },
        "train": {
            "max_steps": STEPS,
            "ema_decay": 0.5,
            "engine": {"micro_batch_size": 8, "zero_stage": 2},
            "optimizer": {"lr": 2e-3},
            "schedule": {"warmup_steps": 3, "kind": "constant"},
            "checkpoint": {"every_steps": 10, "keep_last": 2},
            "log": {"every_steps": 5, "eval_every_steps": 20, "media_every_steps": 0, "tensorboard": True},
        },
    }
    for key, value in changes.items():
        node = config
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    return config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """Generated clips (24 train, 8 val, 10 labels) and 8 stills, a random tiny tokenizer, and one finished run."""
    root = tmp_path_factory.mktemp("transformer_training")
    params = SampleParams(
        count=24, val_count=8, test_count=0, image_count=NUM_IMAGES, size=32, num_frames=FRAMES, real=False
    )
    make_sample_data(root / "data", params, workers=0)
    torch.manual_seed(0)
    tokenizer = VideoTokenizer.from_preset("tiny", base_channels=8, num_groups=4, lfq={"bits": 6}).eval()
    tokenizer.save_pretrained(root / "tokenizer")
    config = write_config(root / "run.yaml", run_config(root))
    assert main(str(config), []) == 0
    return {"root": root, "config": config, "run_dir": root / "runs" / "tiny"}


# ----------------------------------------------------------------------------- the finished run


def test_training_lowers_the_masked_position_loss(world):
    logs = records(world["run_dir"])
    evals = {r["step"]: r for r in logs if "eval/mask_loss" in r}
    assert sorted(evals) == [0, 20, STEPS]
    start, end = evals[0]["eval/mask_loss"], evals[STEPS]["eval/mask_loss"]
    assert end < 0.85 * start, (start, end)  # the same items and masks, EMA weights
    assert evals[STEPS]["eval/mask_acc"] > evals[0]["eval/mask_acc"]
    train = [r for r in logs if "mask_loss" in r]
    assert [r["step"] for r in train] == list(range(5, STEPS + 1, 5))
    assert train[-1]["mask_loss"] < train[0]["mask_loss"]
    # every position group is reported, per task too
    for name in ("mask", "refine", "recons"):
        assert f"{name}_loss" in train[-1] and f"{name}_acc" in train[-1]
    for task in TASKS:
        assert f"eval/{task}/mask_loss" in evals[STEPS]
    assert "eval/class_generation/refine_loss" not in evals[STEPS]  # no condition, nothing to refine
    assert (world["run_dir"] / "tensorboard").is_dir()


def test_run_config_holds_the_data_section_and_the_filled_model(world):
    saved = yaml.safe_load((world["run_dir"] / "config.yaml").read_text())
    assert saved["data"]["num_frames"] == FRAMES and saved["data"]["resolution"] == RES
    model = saved["model"]  # from the cache: 6-bit tokens on a 3 x 4 x 4 grid, 10 digit classes
    assert (model["codebook_size"], model["max_frames"], model["max_height"], model["max_width"]) == (
        64,
        3,
        4,
        4,
    )
    assert model["num_classes"] == 10
    cache = TokenDataset(world["run_dir"] / "token_cache")
    assert len(cache) == 20 and cache.num_classes == 10  # tokenize.max_clips of the 24 clips
    assert len(TokenDataset(world["run_dir"] / "token_cache_val")) == 8
    images = TokenDataset(world["run_dir"] / "token_cache_images")  # the stills, as 1-frame grids
    assert (
        len(images) == NUM_IMAGES and images.grid_shape == (1, 4, 4) and images.tasks == ("image_generation",)
    )
    assert (
        saved["train"]["optimizer"]["betas"] == [0.9, 0.96]
        and saved["train"]["optimizer"]["weight_decay"] == 0.045
    )


def test_export_records_what_it_was_trained_for(world):
    info = CommitTransformer.from_pretrained(world["run_dir"] / "export").export_info
    assert info.tasks == {name: float(w) for name, w in TASKS.items()}
    assert info.task_options["frame_prediction"] == {"num_cond_frames": 5}
    assert info.task_options["interpolation"] == {"num_cond_frames": 1}
    assert (info.class_dropout, info.condition_dropout) == (0.1, 0.1)
    tokenizer = VideoTokenizer.from_pretrained(world["root"] / "tokenizer")
    assert info.tokenizer.weights_sha256 == state_dict_sha256(tokenizer.state_dict())
    assert info.tokenizer.codebook_size == 64 and info.tokenizer.trained_from == str(
        world["root"] / "tokenizer"
    )
    window = info.window  # the sample clips are all 10 fps, taken at stride 1
    assert (window.num_frames, window.height, window.width, window.fps) == (FRAMES, RES, RES, 10.0)
    assert info.classes == [str(i) for i in range(10)]
    assert info.sampling["steps"] == 4 and info.sampling["choice_temperature"] == 4.5
    assert info.sampling["conditioned"] == {"steps": 1, "temperature": 0.0}


def test_export_loads_with_from_pretrained_and_equals_the_ema_weights(world):
    run_dir = world["run_dir"]
    exported = CommitTransformer.from_pretrained(run_dir / "export").eval()
    ema = CommitTransformer(exported.config)
    ema.load_state_dict(load_file(run_dir / "checkpoints" / f"step_{STEPS:08d}" / "ema_model.safetensors"))
    ema.eval()
    tokens = torch.randint(0, 64, (3, 3, 4, 4), generator=torch.Generator().manual_seed(0))
    tokens[:, 1:] = MASK_ID
    task_ids = torch.tensor([TASK_IDS["frame_prediction"], UNCOND_TASK_ID, TASK_IDS["inpainting"]])
    class_ids = torch.tensor([3, 10, 0])
    with torch.no_grad():
        a, b = exported(tokens, task_ids, class_ids), ema(tokens, task_ids, class_ids)
    assert all(torch.equal(x, y) for x, y in zip(a.parts, b.parts))


def test_sample_videos_are_written_and_decode(world):
    samples = world["run_dir"] / "samples"
    for task in ("frame_prediction", "class_generation"):
        frames = read_video(samples / f"step_{STEPS:07d}_{task}.mp4")
        # rows: 2 items; columns: condition | sample | ground truth (2-pixel separators)
        assert frames.shape == (FRAMES, 2 * RES + 2, 3 * RES + 4, 3)
        assert (samples / f"step_{STEPS:07d}_{task}.gif").is_file()


def test_resume_continues_the_step_count_and_keeps_the_cache(world, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(world["run_dir"], root / "tiny")
    shards = sorted((root / "tiny" / "token_cache" / "shards").glob("*/meta.json"))
    mtimes = [p.stat().st_mtime_ns for p in shards]
    config = run_config(world["root"], **{"run.root": str(root), "train.max_steps": MORE_STEPS})
    assert main(str(write_config(tmp_path / "more.yaml", config)), []) == 0
    logs = records(root / "tiny")
    resumed = [r for r in logs if r.get("event") == "resumed"]
    assert len(resumed) == 1 and resumed[0]["step"] == STEPS
    assert max(r["step"] for r in logs) == MORE_STEPS
    assert (root / "tiny" / "checkpoints" / f"step_{MORE_STEPS:08d}").is_dir()
    assert [p.stat().st_mtime_ns for p in shards] == mtimes  # the complete cache was not remade


# ----------------------------------------------------------------------------- inputs and evaluation


def test_per_sample_task_mix_builds_each_samples_own_condition(world):
    dataset = TokenDataset(world["run_dir"] / "token_cache")
    batch = default_collate([dataset[i] for i in range(4)])
    names = ["frame_prediction", "interpolation", "inpaint_central", "class_generation"]
    inputs = build_inputs(
        batch,
        names,
        num_classes=10,
        schedule="cosine",
        ratio_mode="per_sample",
        class_dropout=0.0,
        condition_dropout=0.0,
        generator=seeded_generator(0),
        device=torch.device("cpu"),
    )
    assert inputs.task_ids.tolist() == [
        TASK_IDS[f] for f in ("frame_prediction", "interpolation", "inpainting")
    ] + [UNCOND_TASK_ID]
    assert inputs.class_ids.tolist() == [10, 10, 10, batch["label"][3].item()]  # only CG uses the label
    for b, name in enumerate(names):
        cond, mask = batch["cond_tokens"][name][b], batch["cond_mask"][name][b]
        assert torch.equal(inputs.cond_mask[b], mask)
        masked = inputs.masked[b]
        expected = torch.where(masked, torch.where(mask, cond, MASK_ID), batch["tokens"][b])
        assert torch.equal(inputs.inputs[b], expected)
    assert not inputs.cond_mask[3].any() and inputs.cond_mask[0].any()


def test_image_generation_trains_on_the_first_latent_frame(world):
    dataset = TokenDataset(world["run_dir"] / "token_cache")
    batch = default_collate([dataset[i] for i in range(2)])
    kwargs = dict(
        num_classes=10,
        schedule="cosine",
        ratio_mode="per_sample",
        class_dropout=0.0,
        condition_dropout=0.0,
        device=torch.device("cpu"),
    )
    inputs = build_inputs(batch, ["image_generation"] * 2, generator=seeded_generator(1), **kwargs)
    assert inputs.targets.shape == (2, 1, 4, 4) and torch.equal(inputs.targets, batch["tokens"][:, :1])
    assert not inputs.cond_mask.any()
    with pytest.raises(Exception, match="per_step"):
        build_inputs(batch, ["image_generation", "frame_prediction"], generator=seeded_generator(1), **kwargs)
    images = TokenDataset(world["run_dir"] / "token_cache_images")
    mixed = image_batch(batch, images, 3, seeded_generator(2))  # first frames, then 3 stills
    assert mixed["tokens"].shape == (5, 1, 4, 4) and torch.equal(mixed["tokens"][:2], batch["tokens"][:, :1])
    assert mixed["label"].shape == (5,)
    inputs = build_inputs(mixed, ["image_generation"] * 5, generator=seeded_generator(1), **kwargs)
    assert torch.equal(inputs.targets, mixed["tokens"])


def test_per_sample_mode_draws_image_steps_at_their_share_on_every_rank():
    masking = load_training_config(DEFAULT_CONFIG).masking  # six tasks of weight 1
    kinds = []
    for step in range(300):
        names = []
        for rank in (0, 1):
            trainer = SimpleNamespace(cfg=SimpleNamespace(seed=0), step=step, dist=SimpleNamespace(rank=rank))
            step_fn = TrainStep(trainer, None, masking, num_classes=10, label_smoothing=0.0)
            names.append(step_fn.task_names(4, step, seeded_generator(rank, step)))
        image = [n == ["image_generation"] * 4 for n in names]
        assert image[0] == image[1]  # an image step on every rank or none
        assert image[0] or "image_generation" not in names[0] + names[1]
        kinds.append(image[0])
    assert 0.1 < sum(kinds) / len(kinds) < 0.25  # 1/6 of the steps


def test_per_step_tasks_are_one_draw_per_step_shared_by_ranks_and_micro_batches():
    masking = load_training_config(None, ["masking.task_mode=per_step"]).masking
    picks = {}
    for step in range(12):
        for rank in (0, 1):
            trainer = SimpleNamespace(cfg=SimpleNamespace(seed=0), step=step, dist=SimpleNamespace(rank=rank))
            step_fn = TrainStep(trainer, None, masking, num_classes=10, label_smoothing=0.0)
            names = step_fn.task_names(4, step, seeded_generator(rank, step))
            assert len(set(names)) == 1 and len(names) == 4
            assert picks.setdefault(step, names) == names  # the same on every rank
    assert len({names[0] for names in picks.values()}) > 1  # but not the same task every step


def test_fixed_mask_evaluation_is_deterministic(world):
    dataset = TokenDataset(world["run_dir"] / "token_cache_val")
    model = CommitTransformer.from_pretrained(world["run_dir"] / "export")
    cfg = load_training_config(world["config"]).evaluation
    kwargs = dict(num_classes=10, schedule="cosine", label_smoothing=1e-4, device=torch.device("cpu"))
    first = evaluate_fixed(model, dataset, list(TASKS), cfg, **kwargs)
    assert first == evaluate_fixed(model, dataset, list(TASKS), cfg, **kwargs)
    assert first["mask_loss"] > 0 and 0 <= first["mask_acc"] <= 1


# ----------------------------------------------------------------------------- configs and bad input


def test_missing_tokenizer_export_exits_2_with_one_line(world, tmp_path, monkeypatch, capsys):
    config = write_config(tmp_path / "c.yaml", run_config(world["root"], tokenizer=str(tmp_path / "nothing")))
    assert cli_main(["train", "transformer", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing" in err and "tokenizer" in err
    monkeypatch.chdir(tmp_path)  # no runs/tokenizer-default/export here
    default = run_config(world["root"])
    del default["tokenizer"]
    config = write_config(tmp_path / "d.yaml", default)
    assert cli_main(["train", "transformer", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "./run.sh train tokenizer" in err


def test_shipped_configs_load_and_bad_task_settings_are_refused():
    default = load_training_config(DEFAULT_CONFIG)
    assert default.run.name == "transformer-default" and default.model.preset == "tiny"
    assert default.tokenizer == "runs/tokenizer-default/export"
    assert default.train.optimizer.betas == (0.9, 0.96) and default.train.engine.gradient_clipping == 1.0
    ucf = load_training_config(DEFAULT_CONFIG.parent / "ucf101_B.yaml")
    assert (ucf.model.num_layers, ucf.model.hidden_size, ucf.model.num_heads) == (12, 768, 12)
    assert isinstance(ucf.model, TransformerConfig)
    assert set(default.masking.weights()) == {
        "frame_prediction",
        "interpolation",
        "inpaint_central",
        "outpaint_central",
        "class_generation",
        "image_generation",
    }  # everything the CLI offers by default
    images_only = load_training_config(
        None,
        ["masking.tasks={image_generation: 1}", "masking.task_mode=per_sample", "sampling.tasks=[IG]"],
    )
    assert images_only.masking.image_fraction() == 1.0
    with pytest.raises(ConfigError, match="unknown"):
        load_training_config(None, ["masking.tasks={jumping: 1}"])
    with pytest.raises(ConfigError, match="sampling.tasks"):
        load_training_config(None, ["masking.tasks={FP: 1}", "sampling.tasks=[CG]"])
    sampling = load_training_config(None, ["sampling.conditioned={steps: 2}"]).sampling
    assert sampling.decoding(conditioned=True) == {**sampling.decoding(conditioned=False), "steps": 2}
    for bad in ("{seed: 1}", "{steps: 0}", "{temperature: -1}", "{stepz: 2}"):
        with pytest.raises(ConfigError, match="sampling.conditioned"):
            load_training_config(None, [f"sampling.conditioned={bad}"])
