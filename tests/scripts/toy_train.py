"""Run the generic training loop on the toy problem (for the signal / kill / resume / non-finite tests).

    python tests/scripts/toy_train.py --root DIR --max-steps 50 --every 2 [--sleep 0.05]
        [--resume auto] [--nan-step S --nan-count K] [--nan-weights-step S]

Prints ``RESULT {json}`` on success (final step, where it started, non-finite count); a
``UserError`` (e.g. a diverged run) prints ``error: ...`` and exits 2, as the CLI does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from toy import ToyDataset, ToyModel, epoch_loader  # noqa: E402

from videogen.config_loader import from_dict  # noqa: E402
from videogen.errors import UserError  # noqa: E402
from videogen.training import RunConfig, TrainConfig, Trainer, distributed_session  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--name", default="toy")
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--every", type=int, default=2)
    parser.add_argument("--keep-last", type=int, default=2)
    parser.add_argument("--resume", default="auto")
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--zero-stage", type=int, default=2)
    parser.add_argument("--nan-step", type=int, default=-1, help="inject a NaN loss while at this step ...")
    parser.add_argument("--nan-count", type=int, default=0, help="... this many times")
    parser.add_argument("--max-nonfinite", type=int, default=3)
    args = parser.parse_args()

    cfg = from_dict(
        TrainConfig,
        {
            "max_steps": args.max_steps,
            "max_nonfinite_steps": args.max_nonfinite,
            "ema_decay": 0.9,
            "engine": {"zero_stage": args.zero_stage, "micro_batch_size": 4},
            "optimizer": {"lr": 1e-2},
            "schedule": {"warmup_steps": 2, "decay_steps": 20},
            "checkpoint": {"every_steps": args.every, "keep_last": args.keep_last, "resume": args.resume},
            "log": {"every_steps": 1, "tensorboard": False},
        },
    )
    nan_left = [args.nan_count]
    with distributed_session() as dist:
        with Trainer(cfg, RunConfig(name=args.name, root=args.root), dist, config=cfg) as trainer:
            engine = trainer.add_engine("model", ToyModel(), ema=True)
            loader, sampler = epoch_loader(ToyDataset(64), 4, dist.rank, dist.world_size)
            trainer.register("data", sampler)
            start = trainer.resume()

            def train_step(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
                batch = trainer.to_device(batch)
                loss = (engine(batch["x"]) - batch["y"]).pow(2).mean()
                if trainer.step == args.nan_step and nan_left[0] > 0:
                    nan_left[0] -= 1
                    loss = loss * float("nan")
                if trainer.finite(loss=loss):
                    engine.backward(loss)
                    engine.step()
                if args.sleep:
                    time.sleep(args.sleep)
                return {"loss": loss}

            code = trainer.fit(loader, train_step)
            result = {"start": start, "step": trainer.step, "nonfinite": trainer.guard.total}
            print("RESULT " + json.dumps(result), flush=True)
            return code


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
