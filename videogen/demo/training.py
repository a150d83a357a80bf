"""A demo training stage: ``./run.sh train tokenizer|transformer`` in a child process, timed to a deadline.

Each call of a training loop is a fresh ``python -m videogen train ...`` process (exactly the command a
person would run; no DeepSpeed, process-group or thread state left behind in the demo process, whose
later forks of data workers stay safe). With ``budget.plan: measure`` the loop first runs
``probe_steps`` steps (no final evaluation, no sample videos) and the seconds per step are read from the
run's ``metrics.jsonl``; the learning rate then decays over the steps expected to fit until the stage's
deadline, and the loop is called again: it resumes from the probe's checkpoint
(``train.checkpoint.resume: auto``) and trains until a :class:`Watchdog` sends it SIGTERM at the
deadline. The loop writes a checkpoint and exits (its documented signal behaviour); a last call with
``max_steps`` = the step reached only exports and evaluates. A shared machine that slows down or speeds
up changes the step count, not the wall time. An interrupted stage resumes from its checkpoint and
trains until this invocation's deadline. ``plan: fixed`` trains the config's own ``train.max_steps``.
"""

from __future__ import annotations

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

from videogen.demo.budget import Clock, DemoState, format_duration, plan_steps, seconds_per_step
from videogen.demo.config import CONFIG_DIR, BudgetConfig
from videogen.errors import UserError
from videogen.training.checkpoint import CheckpointManager, read_meta

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
    """``with Watchdog(process, seconds, log) as dog:`` sends ``process`` one SIGTERM after ``seconds``
    if it still runs (``dog.fired``). One only: a training loop takes a second one as "abort now"."""

    def __init__(self, process: subprocess.Popen, seconds: float | None, log: Callable[[str], Any]) -> None:
        self.process = process
        self.seconds = seconds
        self.log = log
        self.fired = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        if self._done.wait(max(0.0, self.seconds)) or self.process.poll() is not None:
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


def run_child(
    args: list[str], log: Callable[[str], Any], deadline_s: float | None = None
) -> tuple[int, bool]:
    """Run ``python <args>`` from the repository root; returns (exit code, whether the watchdog stopped it).

    Ctrl-C reaches the child too (same process group): we wait for it to write its checkpoint and exit,
    then raise :class:`DemoInterrupted`.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    process = subprocess.Popen([sys.executable, *args], env=env)
    interrupted = False
    with Watchdog(process, deadline_s, log) as dog:
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
        code, fired = run_child(command, log, deadline_s)
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
    if before < probe:
        stage.train_to(probe, stage.probe_overrides, log)
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
    """Train ``stage`` until its deadline (``end_fraction`` of the budget) and export it.

    After the probe, ``expected`` = the steps that fit until the deadline at the probe's rate; the learning
    rate decays over them (``train.schedule.decay_steps``, then its floor), ``train.max_steps`` is 3x that
    (or the config's cap) and the watchdog ends training when the time is up, leaving ``1 - margin`` of
    the stage for the restart, the final evaluation and the export.
    Returns ``{"steps", "expected_steps", "s_per_step"}``.
    """
    info = state.stage(stage.what)
    if budget.plan == "fixed":
        stage.train_to(stage.cap, [], log)
        return {"steps": stage.cap, "s_per_step": seconds_per_step(stage.run_dir / "metrics.jsonl")}
    if "expected_steps" not in info:
        info.update(_probe(stage, budget, log))
        left = clock.left_until(end_fraction)
        expected = plan_steps(
            info["probe_steps"], info["probe_s_per_step"], info["startup_s"], left, budget.margin, stage.cap
        )
        info["expected_steps"] = expected
        state.save()
        log(
            f"[demo] {stage.what}: {info['probe_s_per_step']:.2f} s/step over the first {info['probe_steps']} "
            f"steps; about {expected} steps fit in the {format_duration(left)} left: training until then"
        )
    expected = info["expected_steps"]
    schedule = [f"train.schedule.decay_steps={max(1, expected - stage.warmup)}"]
    ceiling = min(stage.cap, 3 * expected)
    left = clock.left_until(end_fraction)
    deadline = left - info.get("startup_s", 0.0) - (1 - budget.margin) * left
    reached, fired = stage.call(ceiling, schedule, log, deadline)
    if reached < ceiling and not fired:
        raise DemoInterrupted(f"{stage.what} training stopped at step {reached}")
    if fired:
        log(f"[demo] {stage.what}: time is up at step {reached} (about {expected} expected); exporting")
        stage.train_to(reached, schedule, log)  # nothing left to train: export and final evaluation
    rate = seconds_per_step(stage.run_dir / "metrics.jsonl")
    return {"steps": reached, "expected_steps": expected, "s_per_step": rate}
