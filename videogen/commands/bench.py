"""``run.sh bench NAME``: run ``benchmarks/bench_NAME.py`` (each prints its own table)."""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

from videogen.errors import UserError

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("name", help=f"which benchmark: {', '.join(available()) or '(none found)'}")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the benchmark")


def run(args: argparse.Namespace) -> int:
    script = BENCH_DIR / f"bench_{args.name}.py"
    if not script.is_file():
        raise UserError(f"no benchmark '{args.name}'; choose from {', '.join(available())}")
    sys.argv = [str(script), *args.args]
    runpy.run_path(str(script), run_name="__main__")
    return 0
