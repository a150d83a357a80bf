"""``./run.sh demo --fast`` end to end into a temporary folder (generated mp4 clips, real DeepSpeed training of
both models, real exports), then a rerun that reuses every stage, a resumed transformer stage, a folder
made with other settings refused; plus the budget arithmetic and the watchdog that stops a training loop."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from videogen.cli import main as cli_main
from videogen.demo.budget import plan_steps, seconds_per_step
from videogen.demo.stages import merge_means
from videogen.demo.training import Watchdog, latest_step
from videogen.video_io import read_image, read_video

FAST_FRAMES, FAST_RES, FAST_COND = 9, 16, 5  # configs/demo/fast.yaml: 9 x 16 x 16 windows, 5 condition frames
REQUIRED = ("psnr", "ssim", "copy_last_frame_psnr", "copy_last_frame_ssim", "tokenizer_psnr")
STAGES = ("data", "tokenizer", "cache", "transformer", "showcase", "evaluate")


def demo_args(root: Path, *extra: str) -> list[str]:
    return ["demo", "--fast", "--out", str(root / "out"), f"data.root={root / 'data'}", *extra]


def snapshot(out: Path) -> dict[str, float]:
    """mtime of every file the stages made (checkpoints, exports, caches, GIFs, PNGs)."""
    return {
        str(p.relative_to(out)): p.stat().st_mtime_ns
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name not in ("metrics.json", "report.md", "report.html", "demo.json")
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("demo")
    assert cli_main(demo_args(root)) == 0
    out = root / "out"
    return {"root": root, "out": out, "files": snapshot(out)}


@pytest.mark.slow
def test_metrics_hold_finite_scores_of_the_predicted_frames(demo):
    metrics = json.loads((demo["out"] / "metrics.json").read_text())
    fp = metrics["frame_prediction"]
    for key in REQUIRED + ("tokenizer_ssim",):
        assert isinstance(fp[key], float) and math.isfinite(fp[key]), key
    # condition frames excluded: one score per predicted frame
    assert (fp["num_frames"], fp["num_cond_frames"]) == (FAST_FRAMES, FAST_COND)
    assert fp["condition_frames_in_scores"] is False
    assert len(fp["psnr_per_frame"]) == len(fp["copy_last_frame_psnr_per_frame"]) == FAST_FRAMES - FAST_COND
    assert fp["num_clips"] == 4 and fp["resolution"] == [FAST_RES, FAST_RES]
    # scored in two chunks of 2 clips and merged: the mean over clips still equals the mean over frames
    for key in ("psnr", "ssim", "copy_last_frame_psnr", "tokenizer_psnr"):
        assert fp[key] == pytest.approx(sum(fp[f"{key}_per_frame"]) / (FAST_FRAMES - FAST_COND), rel=1e-6)
    tok = metrics["tokenizer"]
    assert math.isfinite(tok["psnr"]) and math.isfinite(tok["ssim"])
    assert 0 < tok["codebook_usage"] <= 1 and tok["used_codes"] <= tok["codebook_size"] == 2**6
    for name in ("tokenizer", "transformer"):
        assert metrics["training"][name]["steps"] == 4  # the fast configs' train.max_steps
        assert metrics["training"][name]["wall_s"] > 0
    assert set(metrics["stage_seconds"]) == set(STAGES)
    for name in ("tokenizer", "transformer"):
        assert latest_step(demo["out"] / name) == 4
        assert (demo["out"] / name / "export" / "model.safetensors").is_file()


@pytest.mark.slow
def test_report_links_only_files_that_exist(demo):
    out = demo["out"]
    report = out / "report.md"
    text = report.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links and all(not Path(link).is_absolute() and (out / link).is_file() for link in links)
    for name in (
        "predict.sbs.gif",
        "interpolate.sbs.gif",
        "inpaint.sbs.gif",
        "outpaint.sbs.gif",
        "generate.png",
    ):
        assert f"showcase/clip_00/{name}" in links
    assert "showcase/classes.png" in links and "tokenizer/reconstructions.gif" in links
    fp = json.loads((out / "metrics.json").read_text())["frame_prediction"]
    assert f"| {fp['psnr']:.2f} | {fp['ssim']:.4f} |" in text  # the model's row
    assert f"| {fp['copy_last_frame_psnr']:.2f} | {fp['copy_last_frame_ssim']:.4f} |" in text
    # the media are what they claim: a window of frames, an image per class, side by side with the truth
    predict = read_video(out / "showcase/clip_00/predict.gif")
    assert predict.shape == (FAST_FRAMES, FAST_RES, FAST_RES, 3)
    assert read_video(out / "showcase/clip_00/predict.sbs.gif").shape[2] > 2 * FAST_RES
    assert read_image(out / "showcase/clip_00/generate.png").shape == (FAST_RES, FAST_RES, 3)
    classes = read_image(out / "showcase/classes.png")
    assert classes.shape[0] == FAST_RES and classes.shape[1] == 10 * FAST_RES + 9 * 2  # 10 digits, 2 px gaps
    assert "<img src='showcase/clip_00/predict.sbs.gif'" in (out / "report.html").read_text()


@pytest.mark.slow
def test_rerun_reuses_every_finished_stage(demo, capsys):
    assert cli_main(demo_args(demo["root"])) == 0
    printed = capsys.readouterr().out
    for i, name in enumerate(STAGES, 1):
        assert re.search(rf"\[demo\] {i}/6 {name}: .*: reused", printed), name
    assert f"report: {demo['out'] / 'report.md'}" in printed
    assert snapshot(demo["out"]) == demo["files"]  # nothing was made again


@pytest.mark.slow
def test_an_unfinished_stage_resumes_and_later_stages_follow(demo, capsys):
    out = demo["out"]
    state = json.loads((out / "demo.json").read_text())
    state["stages"]["transformer"]["done"] = False  # as if stopped after its last checkpoint
    (out / "demo.json").write_text(json.dumps(state))
    records = (out / "transformer" / "metrics.jsonl").read_text().splitlines()
    assert cli_main(demo_args(demo["root"])) == 0
    printed = capsys.readouterr().out
    for name in ("data", "tokenizer", "cache"):
        assert re.search(rf"{name}: .*: reused", printed)
    for name in ("transformer", "showcase", "evaluate"):
        assert re.search(rf"\[demo\] {name} done in", printed)
    after = snapshot(out)
    for path, mtime in demo["files"].items():
        if path.startswith("tokenizer/") or "/shards/" in path:
            assert after[path] == mtime, path  # the tokenizer and the cache shards were reused
    new = [json.loads(line) for line in (out / "transformer" / "metrics.jsonl").read_text().splitlines()]
    new = new[len(records) :]
    assert new[0]["event"] == "resumed" and new[0]["step"] == 4  # resumed from the checkpoint ...
    assert not [r for r in new if "mask_loss" in r]  # ... with nothing left to train
    assert latest_step(out / "transformer") == 4


@pytest.mark.slow
def test_a_folder_made_with_other_settings_is_refused(demo, capsys):
    assert cli_main(demo_args(demo["root"], "showcase.steps=3")) == 2
    err = capsys.readouterr().err
    assert "holds a demo made with other settings" in err and len(err.strip().splitlines()) == 1


def test_seconds_per_step_counts_training_records_within_sessions(tmp_path):
    records = [
        {"step": 2, "time": 100.0, "loss": 1.0},
        {"step": 4, "time": 101.0, "loss": 1.0},
        {"step": 4, "time": 150.0, "eval/psnr": 20.0},  # evaluation time is not training time
        {"step": 4, "time": 151.0, "event": "checkpoint"},
        {"step": 4, "time": 190.0, "event": "resumed"},  # a restart is not training time either
        {"step": 6, "time": 200.0, "loss": 1.0},
        {"step": 8, "time": 203.0, "loss": 1.0},
    ]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert seconds_per_step(path) == pytest.approx((1.0 + 3.0) / (2 + 2))
    path.write_text(json.dumps(records[0]) + "\n")
    assert seconds_per_step(path) is None and seconds_per_step(tmp_path / "missing.jsonl") is None


def test_merge_means_weights_each_part_by_its_clips():
    parts = [
        {
            "psnr": 10.0,
            "psnr_per_frame": [9.0, 11.0],
            "num_clips": 2,
            "num_frames": 9,
            "resolution": [16, 16],
        },
        {
            "psnr": 20.0,
            "psnr_per_frame": [19.0, 21.0],
            "num_clips": 6,
            "num_frames": 9,
            "resolution": [16, 16],
        },
    ]
    merged = merge_means(parts)
    assert merged["psnr"] == pytest.approx(17.5) and merged["psnr_per_frame"] == pytest.approx([16.5, 18.5])
    assert (merged["num_clips"], merged["num_frames"], merged["resolution"]) == (8, 9, [16, 16])


def test_plan_steps_fits_the_time_left_between_the_done_steps_and_the_cap():
    assert plan_steps(15, rate=2.0, startup_s=10.0, seconds_left=110.0, margin=0.5, cap=1000) == 15 + 25
    assert plan_steps(15, rate=2.0, startup_s=10.0, seconds_left=110.0, margin=0.5, cap=20) == 20
    assert plan_steps(15, rate=2.0, startup_s=10.0, seconds_left=5.0, margin=0.5, cap=1000) == 15  # late


LOOP_CHILD = """
import signal, time
from videogen.training.signals import StopSignal  # what Trainer.fit installs around its steps
with StopSignal(verbose=False) as stop:
    print("ready", flush=True)
    deadline = time.time() + 60
    while stop.received is None and time.time() < deadline:
        time.sleep(0.01)
print("saved a checkpoint" if stop.received == signal.SIGTERM else "no signal", flush=True)
"""


def test_watchdog_stops_a_training_loop_in_a_child_process_once():
    process = subprocess.Popen([sys.executable, "-c", LOOP_CHILD], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    lines: list[str] = []
    with Watchdog(process, 0.05, lines.append) as dog:
        code = process.wait(timeout=60)
    assert dog.fired and code == 0 and len(lines) == 1  # the loop's handler took it: a clean exit
    assert process.stdout.read().strip() == "saved a checkpoint"
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait(timeout=60)
    with Watchdog(done, 0.0, lines.append) as late:
        time.sleep(0.05)
    assert not late.fired and len(lines) == 1  # a finished process is left alone
