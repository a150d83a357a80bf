"""``python cli_cases.py CASES.json``: run several CLI commands in this process, print their outcomes.

``CASES.json`` maps a name to an argv list (``["predict", "--input", ...]``). Prints one line
``RESULT {json}`` mapping each name to ``{"code", "stderr", "traceback"}``; ``traceback`` is the
exception an uncaught error would have shown (what ``python -m videogen`` would print), else None.
Used where one process must run the cases under another identity (e.g. without root's file access).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import traceback

import torch  # noqa: F401  (before decord, always)

from videogen.cli import main


def run_case(argv: list[str]) -> dict:
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = main(argv)
        return {"code": code, "stderr": err.getvalue(), "traceback": None}
    except SystemExit as e:
        return {"code": e.code, "stderr": err.getvalue(), "traceback": None}
    except BaseException:
        return {"code": 1, "stderr": err.getvalue(), "traceback": traceback.format_exc()}


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    results = {name: run_case(argv) for name, argv in cases.items()}
    print("RESULT " + json.dumps(results), flush=True)
