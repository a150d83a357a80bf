"""A demo training stage: ``./run.sh train tokenizer|transformer`` in a child process, timed to a deadline.

Each call of a training loop is a fresh ``python -m videogen train ...`` process: exactly the command a
person would run, and no DeepSpeed, process-group or thread state is left in the demo process (whose
later forks of data workers stay safe). With ``budget.plan: measure`` the loop first runs ``probe_steps``
steps (no final evaluation, no sample videos, no learning-rate decay yet); the seconds per step are read
from the run's ``metrics.jsonl`` and ``train.max_steps`` is set to the steps that fit until the stage's
deadline. The loop is called again and resumes from the probe's checkpoint (``train.checkpoint.resume:
auto``). Should the machine slow down (it may be shared), a :class:`Watchdog` sends the loop SIGTERM
near the deadline: it writes a checkpoint and exits (its documented signal behaviour), and a last call
with ``max_steps`` = the step reached only exports and evaluates. The plan is kept in ``demo.json``: an
interrupted stage resumes to the same step count. ``plan: fixed`` trains the config's ``train.max_steps``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videogen.demo.budget import Clock, DemoState, plan_steps, seconds_per_step
from videogen.demo.config import CONFIG_DIR, BudgetConfig
from videogen.errors import UserError
from videogen.training.checkpoint import CheckpointManager, read_meta
from videogen.training.logger import format_duration

REPO_ROOT = CONFIG_DIR.parents[1]


class DemoInterrupted(Exception):
    """A child process was stopped by the person (SIGINT / SIGTERM); training checkpoints are written."""


def latest_step(run_dir: Path) -> int:
    """Step of the newest complete checkpoint of a run (0 when there is none)."""
    newest = CheckpointManager(Path(run_dir) / "checkpoints", 0, None).latest()
    return int(read_meta(newest)["step"]) if newest is not None else 0


def has_export(run_dir: Path) -> bool:
    export = Path(run_dir) / "export"
    return (export / "config.yaml").is_file() and (export / "model.safetensors").is_file()


class Watchdog:
    """``with Watchdog(process, seconds, log, still_training) as dog:`` sends ``process`` one SIGTERM after
    ``seconds`` if it still runs and ``still_training()`` says it has not reached its last step (``dog.fired``).

    One signal only: a training loop takes a second one as "abort now". A loop past its last step is
    left to finish its evaluation and export.
    """

    def __init__(
        self,
        process: subprocess.Popen,
        seconds: float | None,
        log: Callable[[str], Any],
        still_training: Callable[[], bool] = lambda: True,
    ) -> None:
        self.process = process
        self.seconds = seconds
        self.log = log
        self.still_training = still_training
        self.fired = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        if self._done.wait(max(0.0, self.seconds)) or self.process.poll() is not None:
            return
        if not self.still_training():
            return
        self.log("[demo] this stage's time is up: stopping training at the next step (checkpoint kept)")
        self.fired = True
        self.process.send_signal(signal.SIGTERM)

    def __enter__(self) -> Watchdog:
        if self.seconds is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()


def logged_step(metrics_file: Path) -> int:
    """The step of the last training record in a run's ``metrics.jsonl`` (0 when none)."""
    step = 0
    if metrics_file.is_file():
        for line in metrics_file.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "event" not in record and "step" in record:
                step = int(record["step"])
    return step


def run_child(
    args: list[str],
    log: Callable[[str], Any],
    deadline_s: float | None = None,
    still_training: Callable[[], bool] = lambda: True,
) -> tuple[int, bool]:
    """Run ``python <args>`` with the repository on the path; returns (exit code, whether the watchdog
    stopped it after ``deadline_s``).

    Ctrl-C reaches the child too (same process group): we wait for it to write its checkpoint and exit,
    then raise :class:`DemoInterrupted`.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    process = subprocess.Popen([sys.executable, *args], env=env)
    interrupted = False
    with Watchdog(process, deadline_s, log, still_training) as dog:
        while True:
            try:
                code = process.wait()
                break
            except KeyboardInterrupt:
                interrupted = True  # the child got it as well: let it save and exit
    if interrupted:
        raise DemoInterrupted(f"stopped during `{' '.join(args[:4])} ...`")
    return code, dog.fired


@dataclass
class TrainingStage:
    """How to call one training loop: ``videogen train <what> --config ... overrides``, its run folder and cap."""

    what: str  # "tokenizer" | "transformer"
    config: Path
    run_dir: Path
    cap: int  # the training config's train.max_steps: never more
    warmup: int = 0  # the training config's train.schedule.warmup_steps
    overrides: list[str] = field(default_factory=list)
    probe_overrides: list[str] = field(default_factory=list)  # probe only: skip final evaluation / samples

    def call(
        self, max_steps: int, extra: list[str], log: Callable[[str], Any], deadline_s: float | None = None
    ) -> tuple[int, bool]:
        """Train to ``max_steps``; returns (step of the newest checkpoint, whether the watchdog stopped it)."""
        overrides = [*self.overrides, *extra, f"train.max_steps={max_steps}"]
        # --config before the positionals: argparse cannot take positionals on both sides of an option
        command = ["-m", "videogen", "train", "--config", str(self.config), self.what, *overrides]
        log(f"[demo] $ ./run.sh train --config {self.config} {self.what} {' '.join(overrides)}")
        metrics = self.run_dir / "metrics.jsonl"
        code, fired = run_child(command, log, deadline_s, lambda: logged_step(metrics) < max_steps)
        if code != 0 and not fired:
            if code == 2:
                raise UserError(f"{self.what} training stopped on the error above (exit code 2)")
            raise DemoInterrupted(f"{self.what} training ended with exit code {code}")
        return latest_step(self.run_dir), fired

    def train_to(self, max_steps: int, extra: list[str], log: Callable[[str], Any]) -> None:
        reached, _ = self.call(max_steps, extra, log)
        if reached < max_steps or not has_export(self.run_dir):
            raise DemoInterrupted(f"{self.what} training stopped at step {reached} of {max_steps}")


def _probe(stage: TrainingStage, budget: BudgetConfig, log: Callable[[str], Any]) -> dict:
    """Run (or finish) the probe; returns its measured rate and restart overhead."""
    probe = min(budget.probe_steps, stage.cap)
    before = latest_step(stage.run_dir)
    started = time.time()
    if before < probe:  # no decay yet: the steps that fit are not known
        stage.train_to(probe, [*stage.probe_overrides, f"train.schedule.decay_steps={stage.cap}"], log)
    wall = time.time() - started
    rate = seconds_per_step(stage.run_dir / "metrics.jsonl")
    if rate is None:  # too few logged steps: the whole call, startup included
        rate = wall / max(1, probe - before)
    startup = max(0.0, wall - (probe - before) * rate) if before < probe else 0.0
    return {"probe_steps": probe, "probe_s_per_step": rate, "startup_s": startup}


def run_training(
    stage: TrainingStage,
    budget: BudgetConfig,
    clock: Clock,
    end_fraction: float,
    state: DemoState,
    log: Callable[[str], Any],
) -> dict[str, Any]:
    """Train ``stage`` for the steps that fit until its deadline (``end_fraction`` of the budget), export it.

    After the probe, ``planned`` = the steps that fit in ``margin`` of the time left at the probe's rate
    (kept in ``demo.json``); the loop trains to it. If the machine slows down, the watchdog stops the
    training at the deadline minus half the remaining ``1 - margin`` (left for the final evaluation and
    export), and a last call exports what was reached. Returns ``{"steps", "planned_steps", "s_per_step"}``.
    """
    info = state.stage(stage.what)
    if budget.plan == "fixed":
        stage.train_to(stage.cap, [], log)
        return {"steps": stage.cap, "s_per_step": seconds_per_step(stage.run_dir / "metrics.jsonl")}
    if "planned_steps" not in info:
        info.update(_probe(stage, budget, log))
        left = clock.left_until(end_fraction)
        planned = plan_steps(
            info["probe_steps"], info["probe_s_per_step"], info["startup_s"], left, budget.margin, stage.cap
        )
        info["planned_steps"] = planned
        state.save()
        log(
            f"[demo] {stage.what}: {info['probe_s_per_step']:.2f} s/step over the first {info['probe_steps']} "
            f"steps; {format_duration(left)} left for this stage -> train.max_steps={planned}"
        )
    planned = info["planned_steps"]
    left = clock.left_until(end_fraction)
    deadline = left - info.get("startup_s", 0.0) - 0.5 * (1 - budget.margin) * left
    reached, fired = stage.call(planned, [], log, deadline)
    if reached < planned and not fired:
        raise DemoInterrupted(f"{stage.what} training stopped at step {reached} of {planned}")
    if fired or not has_export(stage.run_dir):
        log(
            f"[demo] {stage.what}: stopped at step {reached} of {planned} to keep to the time budget; exporting"
        )
        stage.train_to(reached, [], log)  # nothing left to train: export and final evaluation
    rate = seconds_per_step(stage.run_dir / "metrics.jsonl")
    return {"steps": reached, "planned_steps": planned, "s_per_step": rate}
