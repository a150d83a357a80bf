"""``./run.sh demo``: from nothing to results (data, tokenizer, token cache, transformer, uses, report).

    from videogen.demo import load_demo_config, run_demo
    report = run_demo("runs/demo", load_demo_config())   # -> runs/demo/report.md

Every stage prints a header line and its time; finished stages are reused on a rerun (``demo.json``),
interrupted training resumes from its checkpoint. See ``stages.py`` for the stages, ``training.py`` for
how step counts follow the time budget, ``report.py`` for ``metrics.json`` and the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from videogen.demo.budget import Clock, DemoState
from videogen.demo.config import DemoConfig, load_demo_config
from videogen.demo.training import DemoInterrupted
from videogen.training.logger import format_duration


def run_demo(out: str | Path, cfg: DemoConfig, log: Callable[[str], Any] = print) -> Path:
    """Run (or finish) the demo into ``out``; returns the path of ``report.md``."""
    from videogen.atomic import write_json
    from videogen.demo.report import collect_metrics, write_report
    from videogen.demo.stages import STAGES, DemoContext

    out = Path(out)
    clock = Clock(time.time(), cfg.budget.minutes * 60)
    state = DemoState(out, cfg.fingerprint())
    state.save()
    ctx = DemoContext(out, cfg, clock, state, log)
    log(f"[demo] into {out}, budget {cfg.budget.minutes:g} min ({cfg.budget.plan} step counts)")
    rerun = False  # once a stage runs again, every later stage does too (its inputs changed)
    for index, (name, (text, stage, ready)) in enumerate(STAGES.items(), 1):
        header = f"[demo] {index}/{len(STAGES)} {name}: {text}"
        record = state.stage(name)
        if not rerun and record.get("done") and ready(ctx):
            log(f"{header}: reused (done before, {format_duration(record['seconds'])})")
            continue
        if record.get("done"):  # finished before, but its outputs are gone or its inputs changed
            state.data["stages"][name] = {"done": False, "seconds": 0.0}
        rerun = True
        log(header)
        started = time.time()
        try:
            info = stage(ctx)
        finally:
            state.add_time(name, time.time() - started)
        state.finish(name, **info)
        log(
            f"[demo] {name} done in {format_duration(time.time() - started)} "
            f"(demo clock {format_duration(clock.elapsed())} of {format_duration(clock.budget_s)})"
        )
    metrics = collect_metrics(out, state.data["stages"], cfg.budget.minutes, clock.elapsed())
    write_json(out / "metrics.json", metrics, indent=2)
    report = write_report(out, metrics, state.data["stages"])
    log(f"[demo] finished in {format_duration(clock.elapsed())}; metrics {out / 'metrics.json'}")
    return report


__all__ = ["DemoConfig", "DemoInterrupted", "load_demo_config", "run_demo"]
