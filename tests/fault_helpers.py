"""Helpers for the fault drills (``test_faults.py``, ``test_resume_rules.py``); not a test file.

Processes are found by a marker in their command line (a unique run name or folder), which forked
DataLoader workers share with their training process.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import time
from pathlib import Path

import psutil

from videogen import cli
from videogen.data.sample_data import SampleParams, make_sample_data
from videogen.training.distributed import LAUNCHER_VARS

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "tests" / "scripts"
FRAMES, SIZE = 5, 32


def child_env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "PYTHONPATH": str(ROOT)}
    for name in LAUNCHER_VARS:
        env.pop(name, None)
    return env


def processes_with(marker: str) -> list[psutil.Process]:
    """Live processes (not this one) with ``marker`` in their command line (forked workers included)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if process.pid != os.getpid() and any(marker in arg for arg in process.info["cmdline"] or []):
                if process.status() != psutil.STATUS_ZOMBIE:
                    found.append(process)
        except psutil.Error:
            pass
    return found


def left_after(marker: str, limit_s: float) -> list[psutil.Process]:
    """The processes with ``marker`` still alive once they had ``limit_s`` to go ([] as soon as none is)."""
    deadline = time.monotonic() + limit_s
    while (left := processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def kill_all(marker: str) -> None:
    for process in processes_with(marker):
        with contextlib.suppress(psutil.Error):
            process.kill()


def wait_until(condition, what: str, process: subprocess.Popen, log: Path, limit_s: float = 180.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        if process.poll() is not None:
            raise AssertionError(
                f"exited early ({process.returncode}) waiting for {what}: {log.read_text()[-3000:]}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {limit_s:.0f} s: {log.read_text()[-3000:]}")
        time.sleep(0.2)


def finish(process: subprocess.Popen, log: Path, marker: str, limit_s: float, what: str) -> int:
    """The exit code of ``process`` (writing to ``log``); the test fails if it still runs after ``limit_s``
    (``what`` hung). Whatever is left with ``marker`` in its command line is killed either way."""
    try:
        return process.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"{what} hung: still running after {limit_s:.0f} s: {log.read_text()[-2000:]}"
        ) from None
    finally:
        process.kill()
        kill_all(marker)


def logged_steps(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return sum('"loss' in line for line in path.read_text().splitlines()) if path.is_file() else 0


def error_line(stderr: str) -> str:
    """The one ``error:`` line, which must also be the last line, with no traceback anywhere."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert "Traceback" not in stderr and len(errors) == 1 and lines[-1] == errors[0], stderr[-3000:]
    return errors[0]


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def run_cli(*argv: str) -> tuple[int, str]:
    """``python -m videogen ...`` in this process: (exit code, stderr). An uncaught error propagates."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, err.getvalue()


def make_sample(folder: Path):
    """8 training and 2 held-out moving-digit clips of 9 frames at 32x32 (no images, no real content)."""
    params = SampleParams(
        count=8, val_count=2, test_count=0, image_count=0, size=SIZE, num_frames=9, real=False
    )
    return make_sample_data(folder / "sample", params, workers=1)


def overrides(root: Path, sample, name: str, **extra) -> list[str]:
    values = {
        "run.root": str(root),
        "run.name": name,
        "data.train": str(sample.train),
        "data.val": str(sample.val),
        "data.num_frames": FRAMES,
        "data.resolution": SIZE,
        "data.num_workers": 0,
        "model.base_channels": 16,
        "model.num_groups": 8,
        "train.max_steps": 2,
        "train.engine.micro_batch_size": 2,
        "train.log.every_steps": 1,
        "train.log.eval_every_steps": 0,
        "train.log.media_every_steps": 0,
        "train.log.tensorboard": False,
        "train.log.progress_bar": False,
        "train.checkpoint.every_steps": 0,
        "eval.final": "'off'",  # quoted: a YAML word, whatever the override parser does with on/off
        # the data path the drills are about: decoding per step (no preload), whole frames, clips only
        "data.preload": False,
        "data.crop_size": "null",
        "data.image_ratio": 0,
        "eval.num_frames": "null",
        "eval.sets": "{}",
        **extra,
    }
    return [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in values.items()]
