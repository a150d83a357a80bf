"""Exports that describe themselves: the round trip of every record, atomic writes with the umask's mode,
a foreign tokenizer refused, untrained tasks refused (API and CLI), copied exports that behave the same,
and the rule of which trained task serves which use."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
import yaml
from inference_helpers import NUM_CLASSES, SIZE, WINDOW, export_tiny_models, single_thread, smooth_frames
from safetensors.torch import load_file

from videogen.cli import main
from videogen.config_loader import to_dict
from videogen.errors import UserError
from videogen.export import CONFIG_FILE, WEIGHTS_FILE, state_dict_sha256
from videogen.inference.trained_tasks import TrainedTasks
from videogen.pipeline import VideoGenPipeline
from videogen.tokenizer import VideoTokenizer
from videogen.transformer import TASKS, CommitTransformer
from videogen.video_io import write_image, write_video

FAST = {"steps": 2}
RECORDS = {
    "tasks",
    "task_options",
    "class_dropout",
    "condition_dropout",
    "tokenizer",
    "window",
    "classes",
    "sampling",
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    yield from single_thread()


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Two pairs: ``full`` (every task, class dropout) and ``narrow`` (frame prediction only)."""
    root = tmp_path_factory.mktemp("exports")
    return {
        "full": export_tiny_models(root / "full", sampling={"steps": 12, "conditioned": {"steps": 1}}),
        "narrow": export_tiny_models(root / "narrow", tasks={"frame_prediction": 1.0}, class_dropout=0.0),
        "root": root,
    }


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# ----------------------------------------------------------------------------- the format


def test_transformer_export_round_trip_keeps_every_record(exports, tmp_path) -> None:
    tok_dir, tr_dir = exports["full"]
    data = yaml.safe_load((tr_dir / CONFIG_FILE).read_text())
    assert list(data)[:3] == ["kind", "format_version", "model"] and RECORDS <= set(data)
    model = CommitTransformer.from_pretrained(tr_dir)
    info, tokenizer = model.export_info, VideoTokenizer.from_pretrained(tok_dir)
    assert info.tasks == {name: 1.0 for name in TASKS}
    assert info.task_options["frame_prediction"] == {"num_cond_frames": 5}
    assert (info.class_dropout, info.condition_dropout) == (0.1, 0.1)
    assert info.tokenizer.weights_sha256 == state_dict_sha256(tokenizer.state_dict())
    assert info.tokenizer.config == to_dict(tokenizer.config) and info.tokenizer.codebook_size == 64
    assert info.tokenizer.trained_from == str(tok_dir)
    window = info.window
    assert (window.num_frames, window.height, window.width, window.fps) == (WINDOW, SIZE, SIZE, None)
    assert info.classes == [f"class{i}" for i in range(NUM_CLASSES)] and info.sampling["steps"] == 12
    assert info.sampling["conditioned"] == {"steps": 1}
    # a loaded export saves back the same files
    model.save_pretrained(tmp_path / "again")
    assert (tmp_path / "again" / CONFIG_FILE).read_text() == (tr_dir / CONFIG_FILE).read_text()
    a, b = load_file(tmp_path / "again" / WEIGHTS_FILE), load_file(tr_dir / WEIGHTS_FILE)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_weights_hash_is_layout_free_and_sees_every_value() -> None:
    weight = torch.randn(2, 3, 4, 5, 6, generator=torch.Generator().manual_seed(0))
    state = {"b": torch.zeros(3), "w": weight}
    digest = state_dict_sha256(state)
    assert digest == state_dict_sha256(
        {"w": weight.to(memory_format=torch.channels_last_3d), "b": state["b"]}
    )
    changed = weight.clone()
    changed[1, 2, 3, 4, 5] += 1e-6
    assert state_dict_sha256({"b": state["b"], "w": changed}) != digest
    assert state_dict_sha256({"b": state["b"], "w2": weight}) != digest


def test_exports_are_atomic_follow_the_umask_and_spare_other_files(exports, tmp_path, monkeypatch) -> None:
    tokenizer = VideoTokenizer.from_pretrained(exports["full"][0])
    transformer = CommitTransformer.from_pretrained(exports["full"][1])
    old = os.umask(0o027)
    try:
        tokenizer.save_pretrained(tmp_path / "tok")
        transformer.save_pretrained(tmp_path / "tr")
    finally:
        os.umask(old)
    for folder in ("tok", "tr"):
        modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (tmp_path / folder).iterdir()}
        assert modes == {CONFIG_FILE: "0o640", WEIGHTS_FILE: "0o640"}, folder
    before = {p.name: p.read_bytes() for p in (tmp_path / "tr").iterdir()}

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device (injected)")

    monkeypatch.setattr("videogen.export.save_file", fail)
    with pytest.raises(OSError, match="injected"):
        transformer.save_pretrained(tmp_path / "tr")
    assert {p.name: p.read_bytes() for p in (tmp_path / "tr").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok", "tr"]  # no temporary folder left
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="notes.txt"):
        tokenizer.save_pretrained(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_an_export_without_a_training_record_loads_but_is_not_used(exports, tmp_path) -> None:
    tok_dir, tr_dir = exports["full"]
    data = yaml.safe_load((tr_dir / CONFIG_FILE).read_text())
    legacy = tmp_path / "legacy"  # format 1: the bare model config, as exports were before
    legacy.mkdir()
    (legacy / CONFIG_FILE).write_text(yaml.safe_dump({"kind": "transformer", **data["model"]}))
    shutil.copy(tr_dir / WEIGHTS_FILE, legacy / WEIGHTS_FILE)
    model = CommitTransformer.from_pretrained(legacy)
    assert model.export_info is None and model.config.codebook_size == 64
    with pytest.raises(UserError, match="does not say what it was trained on") as e:
        VideoGenPipeline.from_pretrained(tok_dir, legacy, device="cpu")
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- pairing and copying


def test_a_foreign_tokenizer_is_refused_naming_both(exports, tmp_path, capsys) -> None:
    tok_dir, tr_dir = exports["full"]
    torch.manual_seed(1)  # the same config and codebook, other weights (a retrained tokenizer)
    VideoTokenizer.from_preset("tiny", base_channels=8, num_groups=4, lfq={"bits": 6}).save_pretrained(
        tmp_path / "other"
    )
    with pytest.raises(UserError) as e:
        VideoGenPipeline.from_pretrained(tmp_path / "other", tr_dir, device="cpu")
    message = str(e.value)
    assert str(tmp_path / "other") in message and str(tr_dir) in message and "\n" not in message
    assert str(tok_dir) in message  # where its own tokenizer was when it was trained
    args = ["generate", "--out", str(tmp_path / "x.png"), "--tokenizer", str(tmp_path / "other")]
    assert main([*args, "--transformer", str(tr_dir), "--steps", "1"]) == 2
    line = error_line(capsys)
    assert "another tokenizer" in line and str(tmp_path / "other") in line and str(tr_dir) in line
    assert not (tmp_path / "x.png").exists()
    # the same weights under another config (an edited config.yaml) are another tokenizer too
    shutil.copytree(tok_dir, tmp_path / "edited")
    config = yaml.safe_load((tmp_path / "edited" / CONFIG_FILE).read_text())
    config["lfq"]["soft_clamp_value"] = 3.0
    (tmp_path / "edited" / CONFIG_FILE).write_text(yaml.safe_dump(config))
    with pytest.raises(UserError, match="its config has lfq ="):
        VideoGenPipeline.from_pretrained(tmp_path / "edited", tr_dir, device="cpu")


def test_a_copied_export_gives_identical_outputs(exports, tmp_path) -> None:
    tok_dir, tr_dir = exports["full"]
    # a training run's config beside the export: inference must not read it
    run_config = {"data": {"num_frames": 5, "resolution": 16, "target_fps": 3}}
    (tr_dir.parent / "config.yaml").write_text(yaml.safe_dump(run_config))
    try:
        here = VideoGenPipeline.from_pretrained(tok_dir, tr_dir, device="cpu")
    finally:
        (tr_dir.parent / "config.yaml").unlink()
    elsewhere = tmp_path / "copied" / "somewhere"
    shutil.copytree(tok_dir, elsewhere / "t")
    shutil.copytree(tr_dir, elsewhere / "m")
    there = VideoGenPipeline.from_pretrained(elsewhere / "t", elsewhere / "m", device="cpu")
    for pipe in (here, there):
        assert (pipe.num_frames, pipe.frame_size, pipe.fps) == (WINDOW, (SIZE, SIZE), None)
    clip = smooth_frames(12, 40, 48)
    for use in (
        lambda p: p.predict(clip, 5, 13, seed=3, **FAST),
        lambda p: p.inpaint(clip, (8, 8, 30, 40), seed=4, **FAST),
        lambda p: p.generate(class_id=2, seed=5, **FAST),
    ):
        np.testing.assert_array_equal(use(here), use(there))


def test_the_window_and_fps_come_from_the_export(tmp_path) -> None:
    tok_dir, tr_dir = export_tiny_models(tmp_path, window=(5, 16, 16), fps=4.0)
    messages: list[str] = []
    pipe = VideoGenPipeline.from_pretrained(tok_dir, tr_dir, device="cpu", log=messages.append)
    assert (pipe.num_frames, pipe.frame_size, pipe.fps) == (5, (16, 16), 4.0)
    result = pipe.predict(smooth_frames(24, 16, 16), 1, 5, fps=12.0, output="result", **FAST)
    assert result.frames.shape == (5, 16, 16, 3) and result.fps == 4.0
    assert "24 frames at 12 fps -> 8 at 4 fps" in messages[0]


# ----------------------------------------------------------------------------- honest tasks


def test_untrained_tasks_are_refused_at_the_api(exports) -> None:
    pipe = VideoGenPipeline.from_pretrained(*exports["narrow"], device="cpu")
    clip = smooth_frames(WINDOW, SIZE, SIZE)
    assert pipe.predict(clip, 5, **FAST).shape == (WINDOW, SIZE, SIZE, 3)  # the one trained task runs
    cases = {
        "interpolate": lambda: pipe.interpolate(clip[0], clip[-1], **FAST),
        "inpaint": lambda: pipe.inpaint(clip, (8, 8, 24, 24), **FAST),
        "outpaint": lambda: pipe.outpaint(clip, **FAST),
        "an image": lambda: pipe.generate(**FAST),
        "a clip of a class": lambda: pipe.generate(class_id=1, num_frames=WINDOW, **FAST),
        "predict with a class": lambda: pipe.predict(clip, 5, class_id=1, **FAST),
    }
    for name, call in cases.items():
        with pytest.raises(UserError, match=r"was trained on frame_prediction \(FP\);") as e:
            call()
        assert "\n" not in str(e.value), name


@pytest.mark.parametrize(
    "args",
    [
        ["generate"],
        ["generate", "--class", "1", "--frames", str(WINDOW)],
        ["interpolate", "--first", "{a}", "--last", "{b}"],
        ["inpaint", "--input", "{clip}", "--box", "8,8,20,20"],
        ["outpaint", "--input", "{clip}", "--mode", "vertical"],
        ["predict", "--input", "{clip}", "--class", "2"],
    ],
)
def test_untrained_tasks_are_refused_at_the_cli(exports, tmp_path, capsys, args) -> None:
    frames = smooth_frames(WINDOW, SIZE, SIZE)
    files = {
        "a": write_image(tmp_path / "a.png", frames[0]),
        "b": write_image(tmp_path / "b.png", frames[-1]),
        "clip": write_video(tmp_path / "clip.mp4", frames, fps=8),
    }
    tok_dir, tr_dir = exports["narrow"]
    out = tmp_path / ("o.png" if args[0] == "generate" and "--frames" not in args else "o.mp4")
    argv = [a.format(**files) for a in args] + ["--out", str(out)]
    assert main([*argv, "--tokenizer", str(tok_dir), "--transformer", str(tr_dir), "--steps", "1"]) == 2
    line = error_line(capsys)
    assert "was not trained for" in line and "frame_prediction (FP)" in line and str(tr_dir) in line
    assert not out.exists()


def test_outpaint_modes_and_the_class_follow_the_trained_tasks(tmp_path) -> None:
    tasks = {"outpaint_central": 1.0, "class_generation": 1.0}
    pipe = VideoGenPipeline.from_pretrained(*export_tiny_models(tmp_path, tasks=tasks), device="cpu")
    clip = smooth_frames(WINDOW, SIZE, SIZE)
    assert pipe.outpaint(clip, "central", placement="keep", **FAST).shape == clip.shape
    with pytest.raises(UserError, match="around a vertical band"):
        pipe.outpaint(clip, "vertical", **FAST)
    with pytest.raises(UserError, match="leave the class out"):
        pipe.outpaint(clip, "central", class_id=1, **FAST)
    assert pipe.generate(num_frames=WINDOW, **FAST).shape == (WINDOW, SIZE, SIZE, 3)  # class dropout: UNCOND
    with pytest.raises(UserError, match="image generation"):
        pipe.generate(class_id=1, **FAST)
    with pytest.raises(UserError, match="frame prediction"):  # longer clips continue by frame prediction
        pipe.generate(class_id=1, num_frames=WINDOW + 4, **FAST)


SERVING = [  # trained tasks, class dropout, decoded task, with a class, served by
    ({"frame_prediction"}, 0.0, "frame_prediction", False, "frame_prediction"),
    ({"frame_prediction"}, 0.1, "frame_prediction", True, None),
    ({"class_frame_prediction"}, 0.1, "frame_prediction", False, "class_frame_prediction"),
    ({"class_frame_prediction"}, 0.0, "frame_prediction", False, None),
    ({"class_frame_prediction"}, 0.0, "frame_prediction", True, "class_frame_prediction"),
    ({"interpolation"}, 0.1, "interpolation", True, None),
    ({"inpaint_central"}, 0.0, "inpaint", False, "inpaint_central"),
    ({"inpaint_dynamic"}, 0.0, "inpaint_central", False, None),
    ({"outpaint_central"}, 0.0, "outpaint_central", False, "outpaint_central"),
    ({"outpaint_central"}, 0.0, "outpaint_vertical", False, None),
    ({"class_generation"}, 0.1, "unconditional", False, "class_generation"),
    ({"class_generation"}, 0.0, "unconditional", False, None),
    ({"class_generation"}, 0.1, "image_generation", True, None),
    ({"image_generation"}, 0.1, "image_generation", False, "image_generation"),
    ({"image_generation"}, 0.0, "image_generation", False, None),
    ({"image_generation"}, 0.0, "image_generation", True, "image_generation"),
]


@pytest.mark.parametrize("trained, class_dropout, task, with_class, served", SERVING)
def test_which_trained_task_serves_a_use(trained, class_dropout, task, with_class, served) -> None:
    tasks = TrainedTasks(dict.fromkeys(trained, 1.0), class_dropout=class_dropout, num_classes=NUM_CLASSES)
    assert tasks.serving(task, with_class) == served
    if served is None:
        with pytest.raises(UserError, match="was not trained for"):
            tasks.require(task, with_class)


def test_guidance_needs_the_dropout_that_trains_its_twin() -> None:
    tasks = TrainedTasks({"frame_prediction": 1.0, "class_generation": 1.0}, 0.1, 0.0, NUM_CLASSES)
    assert tasks.require("class_generation", True, guidance=True) == "class_generation"
    with pytest.raises(UserError, match="condition dropout"):
        tasks.require("frame_prediction", False, guidance=True)
