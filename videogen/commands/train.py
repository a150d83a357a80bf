"""``run.sh train tokenizer|transformer [--config YAML] [key=value ...]``.

With no other argument each trains its default (preset ``tiny`` on the sample data, 2 CPU cores);
a YAML file and dotted overrides change anything, e.g. ``model.preset=S data.num_frames=9``.
Several processes: ``run.sh train tokenizer --num-gpus 8`` (run.sh hands those flags to the
``deepspeed`` launcher).
"""

from __future__ import annotations

import argparse
import importlib

INTERMIXED_ARGS = True  # `train tokenizer --config x.yaml key=value`: options among the overrides
LOOPS = {"tokenizer": "videogen.tokenizer_training.loop", "transformer": "videogen.transformer_training.loop"}


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("what", choices=sorted(LOOPS), help="which model to train")
    parser.add_argument("--config", help="YAML config (default: configs/<what>/default.yaml)")
    parser.add_argument("--resume", help="auto (default) | never | a checkpoint path")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. run.name=x")
    parser.epilog = "example: run.sh train tokenizer model.preset=tiny data.num_frames=9 train.max_steps=200"


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.resume:
        overrides.append(f"train.checkpoint.resume={args.resume}")
    loop = importlib.import_module(LOOPS[args.what])
    return int(loop.main(args.config, overrides) or 0)
