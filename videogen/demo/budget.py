"""The demo's clock and its record of finished stages.

:class:`Clock`: seconds since the demo started and the deadlines of its stages (fractions of the budget).
:func:`seconds_per_step` reads a training run's ``metrics.jsonl``; :func:`plan_steps` turns a measured
rate into ``train.max_steps``. :class:`DemoState` is ``<out>/demo.json``: per stage whether it finished,
its wall time, and a training stage's planned step count (so an interrupted run resumes to the same plan).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videogen import atomic
from videogen.errors import UserError

STATE_FILE = "demo.json"


@dataclass(frozen=True)
class Clock:
    """``started`` (``time.time()``) and ``budget_s`` seconds of wall time for this invocation."""

    started: float
    budget_s: float

    def elapsed(self) -> float:
        return time.time() - self.started

    def left_until(self, fraction: float) -> float:
        """Seconds from now until ``fraction`` of the budget has passed (negative when already late)."""
        return self.started + fraction * self.budget_s - time.time()


def seconds_per_step(metrics_file: Path) -> float | None:
    """Training seconds per step of a run, from the step / time of its ``metrics.jsonl`` scalar records.

    Only the training records count (not events or ``eval/`` records), and only within a session (a
    ``resumed`` event starts a new one): the sum of each session's ``t_last - t_first`` over the sum of its
    ``step_last - step_first``. None when no session logged two records.
    """
    if not metrics_file.is_file():
        return None
    sessions: list[list[tuple[int, float]]] = [[]]
    for line in metrics_file.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("event") == "resumed":
            sessions.append([])
        elif "event" not in record and "time" in record and not any(k.startswith("eval/") for k in record):
            sessions[-1].append((int(record["step"]), float(record["time"])))
    seconds = steps = 0.0
    for points in sessions:
        if len(points) >= 2 and points[-1][0] > points[0][0]:
            seconds += points[-1][1] - points[0][1]
            steps += points[-1][0] - points[0][0]
    return max(seconds, 1e-6) / steps if steps else None


def plan_steps(done: int, rate: float, startup_s: float, seconds_left: float, margin: float, cap: int) -> int:
    """Total ``train.max_steps``: the ``done`` steps plus as many as fit in ``margin`` of the time left
    after a restart (``startup_s``) at ``rate`` seconds per step; at least ``done``, at most ``cap``."""
    more = int(margin * (seconds_left - startup_s) / rate) if rate > 0 else 0
    return max(done, min(cap, done + max(0, more)))


class DemoState:
    """``<out>/demo.json``: ``{"fingerprint": ..., "stages": {name: {"done": bool, "seconds": float, ...}}}``.

    A folder made with other settings (another config, ``--fast``) is refused, not overwritten.
    """

    def __init__(self, out: Path, fingerprint: str) -> None:
        self.path = Path(out) / STATE_FILE
        self.data: dict[str, Any] = {"fingerprint": fingerprint, "stages": {}}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except json.JSONDecodeError:
                data = None
            if not isinstance(data, dict) or not isinstance(data.get("stages"), dict):
                raise UserError(
                    f"'{self.path}' is damaged; delete '{out}' (or use another --out) and run again"
                )
            if data.get("fingerprint") != fingerprint:
                raise UserError(
                    f"'{out}' holds a demo made with other settings (another config or --fast); "
                    "use another --out or delete that folder"
                )
            self.data = data
        elif Path(out).is_dir() and any(Path(out).iterdir()):
            raise UserError(f"'{out}' exists and is not a demo folder (no {STATE_FILE}); use another --out")

    def stage(self, name: str) -> dict[str, Any]:
        return self.data["stages"].setdefault(name, {"done": False, "seconds": 0.0})

    def done(self, name: str) -> bool:
        return bool(self.stage(name).get("done"))

    def add_time(self, name: str, seconds: float) -> None:
        """Add wall time to a stage (its total over interrupted and resumed invocations)."""
        stage = self.stage(name)
        stage["seconds"] = float(stage.get("seconds", 0.0)) + seconds
        self.save()

    def finish(self, name: str, **info: Any) -> None:
        self.stage(name).update(done=True, **info)
        self.save()

    def save(self) -> None:
        atomic.write_json(self.path, self.data)
