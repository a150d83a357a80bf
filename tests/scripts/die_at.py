"""``python die_at.py MOMENT STEP [toy_train.py args]``: ``toy_train.py``, SIGKILLed at one chosen moment.

MOMENT ``latest``: while saving checkpoint STEP, after its folder was renamed into place and
``latest.tmp`` was written, before ``latest`` is replaced (the narrowest window of a save).
MOMENT ``logged``: right after the metrics of step STEP were written to ``metrics.jsonl`` (steps after
the last checkpoint, which a resume trains again). SIGKILL: no handler, no cleanup runs.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from pathlib import Path

import torch  # noqa: F401  (before anything that may import decord)

import videogen.training.checkpoint as checkpoint
from videogen.training.logger import MetricsLogger

moment, step = sys.argv[1], int(sys.argv[2])
_write_atomic, _scalars = checkpoint._write_atomic, MetricsLogger.scalars


def _die() -> None:
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def write_atomic(path: Path, text: str) -> None:
    if (
        moment == "latest"
        and path.name == checkpoint.LATEST_FILE
        and text.strip() == checkpoint.checkpoint_name(step)
    ):
        path.with_name(path.name + ".tmp").write_text(text)
        _die()
    _write_atomic(path, text)


def scalars(self, at: int, metrics, show=()) -> None:
    _scalars(self, at, metrics, show)
    if moment == "logged" and at == step and "loss" in metrics:
        _die()


checkpoint._write_atomic = write_atomic
MetricsLogger.scalars = scalars
sys.argv = [str(Path(__file__).with_name("toy_train.py")), *sys.argv[3:]]
runpy.run_path(sys.argv[0], run_name="__main__")
