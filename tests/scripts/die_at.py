"""``python die_at.py MOMENT STEP [toy_train.py args]``: ``toy_train.py``, SIGKILLed at one chosen moment.

MOMENT ``latest``: while saving checkpoint STEP, after its folder was renamed into place and
the temporary file of ``latest`` was written, before it replaces ``latest`` (the narrowest window of a save).
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

import videogen.atomic as atomic
import videogen.training.checkpoint as checkpoint
from videogen.training.logger import MetricsLogger

moment, step = sys.argv[1], int(sys.argv[2])
_write_text, _scalars = atomic.write_text, MetricsLogger.scalars


def _die() -> None:
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def write_text(path: Path, text: str, durable: bool = False) -> None:
    if (
        moment == "latest"
        and Path(path).name == checkpoint.LATEST_FILE
        and text.strip() == checkpoint.checkpoint_name(step)
    ):
        with atomic.replacing(path) as tmp:
            tmp.write_text(text)
            _die()  # inside: the temporary file is written and not yet renamed
    _write_text(path, text, durable)


def scalars(self, at: int, metrics, show=()) -> None:
    _scalars(self, at, metrics, show)
    if moment == "logged" and at == step and "loss" in metrics:
        _die()


atomic.write_text = write_text
MetricsLogger.scalars = scalars
sys.argv = [str(Path(__file__).with_name("toy_train.py")), *sys.argv[3:]]
runpy.run_path(sys.argv[0], run_name="__main__")
