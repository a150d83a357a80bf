"""Command-line entry point: ``python -m videogen <command> ...`` (what ``./run.sh`` calls).

Each command lives in ``videogen/commands/<module>.py`` with two functions,
``add_arguments(parser, command)`` and ``run(args) -> int``. Only the chosen command's module is
imported, so ``--help`` is quick and one command's heavy imports never slow another.
Bad input (a :class:`~videogen.errors.UserError`, or an ``OSError`` such as a folder that is not
writable) is printed as one line and exits with code 2. A command module that sets
``INTERMIXED_ARGS = True`` takes its options anywhere among its positionals (``train tokenizer
--config x.yaml key=value``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from videogen.errors import UserError, os_error_line

# command -> (module under videogen.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("data", "make sample data or build a manifest from a folder of videos"),
    "train": ("train", "train the tokenizer or the COMMIT transformer"),
    "tokenize": ("tokenize", "encode a dataset once into token shards for transformer training"),
    "predict": ("infer", "predict the next frames of a clip"),
    "interpolate": ("infer", "generate the frames between two images"),
    "inpaint": ("infer", "fill a box in a clip"),
    "outpaint": ("infer", "extend a clip beyond a central region"),
    "generate": ("infer", "generate an image or a clip (optionally of a class)"),
    "eval": ("evaluate", "evaluate a tokenizer or a transformer on a manifest"),
    "bench": ("bench", "run a benchmark and print its table"),
    "demo": ("demo", "from nothing to results: data, models, predictions and a report"),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: run.sh <command> [options]   (run.sh <command> --help for details)", "", "commands:"]
    lines += [f"  {'setup'.ljust(width)}  create .venv and install videogen (done automatically)"]
    lines += [f"  {'test'.ljust(width)}  run the test suite (pytest arguments pass through)"]
    lines += [f"  {name.ljust(width)}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def _lost_another_process(error: RuntimeError) -> bool:
    """A collective failed because another rank exited (it printed the reason; this rank adds nothing)."""
    text = str(error)
    several = int(os.environ.get("WORLD_SIZE", "1") or 1) > 1
    return several and ("Connection closed by peer" in text or "Connection reset by peer" in text)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    command = argv[0]
    if command not in COMMANDS:
        print(f"error: unknown command '{command}'\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"videogen.commands.{COMMANDS[command][0]}")
    parser = argparse.ArgumentParser(prog=f"run.sh {command}", description=COMMANDS[command][1])
    module.add_arguments(parser, command)
    parse = parser.parse_intermixed_args if getattr(module, "INTERMIXED_ARGS", False) else parser.parse_args
    args = parse(argv[1:])
    args.command = command
    try:
        return int(module.run(args) or 0)
    except UserError as e:
        _error_line(f"error: {e}")
        return 2
    except OSError as e:  # the environment said no: a permission, a full disk, a path through a file
        _error_line(f"error: {os_error_line(e)}")
        return 2
    except RuntimeError as e:
        if not _lost_another_process(e):
            raise
        rank = os.environ.get("RANK", "?")
        _error_line(f"error: rank {rank}: another process of this run stopped; its own message says why")
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _error_line(line: str) -> None:
    """One write per line: under the launcher (``python -u``) ``print`` writes the text and its newline
    separately, so two ranks failing at once could run their lines together."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
