"""``run.sh predict | interpolate | inpaint | outpaint | generate`` with tiny random exported models.

Commands run in-process through ``videogen.cli.main`` (the same code path as ``python -m videogen``);
one test runs a real subprocess to check the exit code and the absence of a traceback end to end.
Outputs are read back with ``videogen.video_io`` (decord for mp4, Pillow for gif and png).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from inference_helpers import SIZE, WINDOW, export_tiny_models, single_thread, smooth_frames

from videogen.cli import main
from videogen.video_io import probe_video, read_image, read_video, write_image, write_video

REPO = Path(__file__).resolve().parents[1]
FAST = ["--steps", "3"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    yield from single_thread()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("infer")
    tokenizer, transformer = export_tiny_models(root / "models")
    frames = smooth_frames(12, 40, 48)
    files = {"tokenizer": tokenizer, "transformer": transformer, "root": root}
    files["clip"] = write_video(root / "clip.mp4", frames, fps=8)
    files["a"] = write_image(root / "a.png", frames[0])
    files["b"] = write_image(root / "b.png", frames[-1])
    files["garbage"] = root / "garbage.mp4"
    files["garbage"].write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    return files


def cli(files: dict, *args: str, models: bool = True) -> int:
    extra = (
        ["--tokenizer", str(files["tokenizer"]), "--transformer", str(files["transformer"])] if models else []
    )
    return main([*map(str, args), *extra, *FAST])


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: "), err
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def test_predict_writes_the_requested_frames_and_side_by_side(files, tmp_path) -> None:
    out = tmp_path / "pred.mp4"
    rc = cli(
        files,
        "predict",
        "--input",
        files["clip"],
        "--cond-frames",
        5,
        "--num-frames",
        17,
        "--out",
        out,
        "--side-by-side",
    )
    assert rc == 0
    frames = read_video(out)
    assert frames.shape == (17, SIZE, SIZE, 3)
    sbs = read_video(tmp_path / "pred.sbs.mp4")  # given | output | truth, 2-pixel separators
    assert sbs.shape == (17, SIZE, 3 * SIZE + 4, 3)
    assert probe_video(out).fps == pytest.approx(8.0)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_predict_default_length_is_one_window(files, tmp_path) -> None:
    out = tmp_path / "pred.gif"
    assert cli(files, "predict", "--input", files["clip"], "--out", out) == 0
    assert read_video(out).shape == (WINDOW, SIZE, SIZE, 3)
    fixed = tmp_path / "fixed.gif"  # the given frames' tokens kept from the start instead of re-predicted
    assert cli(files, "predict", "--input", files["clip"], "--keep-condition", "fixed", "--out", fixed) == 0
    assert read_video(fixed).shape == (WINDOW, SIZE, SIZE, 3)


def test_interpolate(files, tmp_path) -> None:
    out = tmp_path / "mid.gif"
    rc = cli(
        files, "interpolate", "--first", files["a"], "--last", files["b"], "--num-frames", 7, "--out", out
    )
    assert rc == 0
    assert read_video(out).shape == (7, SIZE, SIZE, 3)


def test_inpaint_and_outpaint_keep_the_input_length(files, tmp_path) -> None:
    fixed, wide = tmp_path / "fixed.mp4", tmp_path / "wide.mp4"
    assert cli(files, "inpaint", "--input", files["clip"], "--box", "8,8,30,40", "--out", fixed) == 0
    assert read_video(fixed).shape == (12, SIZE, SIZE, 3)
    assert (
        cli(
            files, "outpaint", "--input", files["clip"], "--mode", "vertical", "--out", wide, "--side-by-side"
        )
        == 0
    )
    assert read_video(wide).shape == (12, SIZE, SIZE, 3)
    assert read_video(tmp_path / "wide.sbs.mp4").shape == (12, SIZE, 2 * SIZE + 2, 3)  # given | output


def test_generate_image_and_clip(files, tmp_path) -> None:
    assert cli(files, "generate", "--class", 3, "--out", tmp_path / "image.png") == 0
    assert read_image(tmp_path / "image.png").shape == (SIZE, SIZE, 3)
    assert cli(files, "generate", "--frames", 13, "--out", tmp_path / "clip.mp4") == 0
    assert read_video(tmp_path / "clip.mp4").shape == (13, SIZE, SIZE, 3)


def test_default_exports_of_the_training_runs(files, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli(files, "generate", "--out", "x.png", models=False) == 2
    assert "./run.sh train tokenizer" in error_line(capsys)
    shutil.copytree(files["tokenizer"], tmp_path / "runs/tokenizer-default/export")
    assert cli(files, "generate", "--out", "x.png", models=False) == 2
    assert "./run.sh train transformer" in error_line(capsys)
    shutil.copytree(files["transformer"], tmp_path / "runs/transformer-default/export")
    assert cli(files, "generate", "--out", "x.png", models=False) == 0
    assert read_image(tmp_path / "x.png").shape == (SIZE, SIZE, 3)


BAD = {
    "missing input": (["predict", "--input", "{root}/nope.mp4", "--out", "{tmp}/o.mp4"], "nope.mp4"),
    "unreadable input": (
        ["inpaint", "--input", "{garbage}", "--box", "0,0,8,8", "--out", "{tmp}/o.mp4"],
        "garbage",
    ),
    "tokenizer as transformer": (
        ["generate", "--out", "{tmp}/o.png", "--transformer", "{tokenizer}"],
        "tokenizer",
    ),
    "box outside the frame": (
        ["inpaint", "--input", "{clip}", "--box", "0,0,60,8", "--out", "{tmp}/o.mp4"],
        "box",
    ),
    "box not four numbers": (
        ["inpaint", "--input", "{clip}", "--box", "1,2,3", "--out", "{tmp}/o.mp4"],
        "box",
    ),
    "zero condition frames": (
        ["predict", "--input", "{clip}", "--cond-frames", "0", "--out", "{tmp}/o.mp4"],
        "condition",
    ),
    "condition frames >= window": (
        ["predict", "--input", "{clip}", "--cond-frames", str(WINDOW), "--out", "{tmp}/o.mp4"],
        "condition",
    ),
    "condition frames >= num frames": (
        ["predict", "--input", "{clip}", "--cond-frames", "5", "--num-frames", "5", "--out", "{tmp}/o.mp4"],
        "num_frames",
    ),
    "class out of range": (["generate", "--class", "7", "--out", "{tmp}/o.png"], "class"),
    "bad mode": (["outpaint", "--input", "{clip}", "--mode", "diagonal", "--out", "{tmp}/o.mp4"], "diagonal"),
    "bad output suffix": (["generate", "--out", "{tmp}/o.txt"], ".txt"),
    "bad keep-condition": (
        ["generate", "--keep-condition", "always", "--out", "{tmp}/o.png"],
        "keep_condition",
    ),
    "image output for a clip": (["generate", "--frames", "9", "--out", "{tmp}/o.png"], "9 frames"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_is_one_line_and_exit_code_2(files, tmp_path, capsys, name) -> None:
    args, needle = BAD[name]
    fields = {k: str(v) for k, v in files.items()} | {"tmp": str(tmp_path)}
    args = [a.format(**fields) for a in args]
    models = ["--tokenizer", str(files["tokenizer"])]
    if "--transformer" not in args:
        models += ["--transformer", str(files["transformer"])]
    rc = main([*args, *models, *FAST])
    assert rc == 2
    assert needle in error_line(capsys)
    assert not list(tmp_path.iterdir())  # nothing written, not even a temp file


def test_failure_keeps_an_existing_output(files, tmp_path, capsys) -> None:
    out = tmp_path / "pred.mp4"
    out.write_bytes(b"finished earlier")
    assert cli(files, "predict", "--input", files["clip"], "--cond-frames", 0, "--out", out) == 2
    assert out.read_bytes() == b"finished earlier"
    assert (
        cli(files, "predict", "--input", files["clip"], "--cond-frames", 1, "--num-frames", 5, "--out", out)
        == 0
    )
    assert read_video(out).shape == (5, SIZE, SIZE, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.mp4"]


def test_subprocess_exit_code_and_no_traceback(files, tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "videogen", "predict", "--input", "missing.mp4", "--out", "o.mp4"]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing.mp4" in lines[0], proc.stderr
