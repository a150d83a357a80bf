"""``run.sh demo [--out runs/demo] [--budget-minutes 20] [--fast] [--config YAML] [key=value ...]``.

From nothing to results: sample data, tokenizer, token cache, COMMIT transformer, then prediction,
interpolation, inpainting, outpainting and generation on held-out clips, ``metrics.json`` and a report
(``report.md`` / ``report.html``) whose path it prints. Rerunning reuses finished stages and resumes
interrupted training. ``--fast`` (``configs/demo/fast.yaml``): tiny models and a few steps, for tests.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--out", default="runs/demo", help="folder for everything it makes (%(default)s)")
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=None,
        help="wall time to fit in; training step counts are set from measured step times (default 20)",
    )
    parser.add_argument("--fast", action="store_true", help="tiny models, a few steps: seconds, not minutes")
    parser.add_argument("--config", default=None, help="demo config (default configs/demo/demo.yaml)")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. data.root=data/other"
    )
    parser.epilog = "example: run.sh demo --budget-minutes 30   (then open runs/demo/report.md)"


def run(args: argparse.Namespace) -> int:
    from videogen.demo import DemoInterrupted, load_demo_config, run_demo
    from videogen.demo.config import FAST_CONFIG
    from videogen.errors import UserError

    if args.fast and args.config:
        raise UserError("--fast and --config both name a demo config; give one of them")
    overrides = list(args.overrides)
    if args.budget_minutes is not None:
        if args.budget_minutes <= 0:
            raise UserError(f"--budget-minutes {args.budget_minutes:g} must be > 0")
        overrides.append(f"budget.minutes={args.budget_minutes}")
    cfg = load_demo_config(FAST_CONFIG if args.fast else args.config, overrides)
    try:
        report = run_demo(args.out, cfg)
    except DemoInterrupted as e:
        print(f"interrupted: {e}; run the same command again to resume", file=sys.stderr)
        return 130
    print(f"report: {report}")
    return 0
