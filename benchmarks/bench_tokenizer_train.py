"""Time per tokenizer training step: the real loop step under DeepSpeed vs a plain PyTorch Adam step.

    python benchmarks/bench_tokenizer_train.py                                   # tiny, 17x32x32, batch 4
    python benchmarks/bench_tokenizer_train.py --preset B --frames 17 --resolution 128 --batch 1 --steps 2

Rows:
* ``torch``: ``VideoTokenizer`` forward at ``step``, L1 + LFQ loss, backward, ``torch.optim.Adam`` step
  (no DeepSpeed): the floor the loop can reach on this machine.
* ``loop zero=Z gan=off|on``: :class:`~videogen.tokenizer_training.step.TokenizerStep` on DeepSpeed
  engines made by :class:`~videogen.training.Trainer` (fp32 on CPU; the generator's EMA update
  included), exactly what ``./run.sh train tokenizer`` runs per micro-batch, minus data loading.
  ``gan=on`` adds the PatchGAN (``--disc-channels``) generator term and discriminator step with LeCam.

Inputs are random clips in [-1, 1] (speed does not depend on content). Time: median over
``--steps`` steps after ``--warmup`` warm-up steps; "CPU s/step" is the process's CPU time (all
threads) per step, a number that other load on the machine changes much less than wall time.
CPU threads: torch's default unless ``--threads``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from tqdm import tqdm

from videogen.config_loader import from_dict
from videogen.data.failures import FailureMonitor
from videogen.tokenizer import TokenizerConfig, VideoTokenizer
from videogen.tokenizer.discriminator import build_discriminator
from videogen.tokenizer.losses import LeCam
from videogen.tokenizer_training.loop import contiguous_parameters
from videogen.tokenizer_training.step import TokenizerStep
from videogen.tokenizer_training.training_config import LossConfig, TokenizerTrainConfig
from videogen.training import RunConfig, Trainer, distributed_session


def _model(args: argparse.Namespace) -> VideoTokenizer:
    return VideoTokenizer(from_dict(TokenizerConfig, {"preset": args.preset}))


def _batch(args: argparse.Namespace) -> dict[str, torch.Tensor]:
    shape = (args.batch, 3, args.frames, args.resolution, args.resolution)
    return {"video": torch.rand(shape) * 2 - 1, "num_failed": torch.zeros(args.batch, dtype=torch.long)}


def _timed(fn, args: argparse.Namespace, desc: str) -> list[tuple[float, float]]:
    """``(wall seconds, CPU seconds of all this process's threads)`` of each timed step."""
    times = []
    for i in tqdm(range(args.warmup + args.steps), desc=desc, leave=False):
        start, cpu = time.perf_counter(), time.process_time()
        fn(i)
        if i >= args.warmup:
            times.append((time.perf_counter() - start, time.process_time() - cpu))
    return times


def bench_torch(args: argparse.Namespace) -> list[tuple[float, float]]:
    model = _model(args)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.5, 0.9))
    video = _batch(args)["video"]

    def step(i: int) -> None:
        out = model(video, i)
        loss = (out.reconstruction - video).abs().mean() + out.quantizer_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return _timed(step, args, "torch")


def bench_loop(args: argparse.Namespace, dist, zero_stage: int, gan: bool) -> list[tuple[float, float]]:
    train = from_dict(
        TokenizerTrainConfig,
        {
            "max_steps": args.warmup + args.steps,
            "engine": {"zero_stage": zero_stage, "micro_batch_size": args.batch, "precision": "fp32"},
            "checkpoint": {"resume": "never", "every_steps": 0},
            "log": {"tensorboard": False, "progress_bar": False},
        },
    )
    loss = from_dict(
        LossConfig,
        {
            "gan": {
                "generator_weight": 0.1 if gan else 0.0,
                "discriminator": {"base_channels": args.disc_channels},
            }
        },
    )
    with tempfile.TemporaryDirectory() as root, Trainer(train, RunConfig("bench", root), dist) as trainer:
        gen = trainer.add_engine("generator", contiguous_parameters(_model(args)), ema=True)
        dis = lecam = None
        if gan:
            dis = trainer.add_engine(
                "discriminator", build_discriminator(loss.gan.discriminator), optimizer=loss.gan.optimizer
            )
            lecam = LeCam(loss.gan.lecam_decay)
        trainer.resume()
        step_fn = TokenizerStep(trainer, loss, gen, dis, lecam, None, FailureMonitor())
        batch = _batch(args)

        def step(i: int) -> None:
            step_fn(batch)
            trainer.step = gen.global_steps
            trainer.emas["generator"].update(gen.module)  # what Trainer.fit does after each optimizer step

        return _timed(step, args, f"loop zero={zero_stage} gan={'on' if gan else 'off'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(TokenizerConfig.PRESETS))
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--zero", type=int, nargs="+", default=[0, 2], help="ZeRO stages of the loop rows")
    parser.add_argument("--gan", choices=["off", "on", "both"], default="both")
    parser.add_argument("--disc-channels", type=int, default=32, help="PatchGAN base channels")
    parser.add_argument("--no-torch", action="store_true", help="skip the plain PyTorch row")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    if not args.no_torch:
        rows.append(("torch (plain Adam, no DeepSpeed)", bench_torch(args)))
    gans = {"off": [False], "on": [True], "both": [False, True]}[args.gan]
    with distributed_session() as dist:
        for zero_stage in args.zero:
            for gan in gans:
                label = f"loop zero={zero_stage} gan={'on' if gan else 'off'}"
                rows.append((label, bench_loop(args, dist, zero_stage, gan)))
    params = sum(p.numel() for p in _model(args).parameters()) / 1e6
    print(
        f"\ntokenizer `{args.preset}` ({params:.1f}M params), batch {args.batch} x {args.frames}x"
        f"{args.resolution}x{args.resolution}, fp32, {torch.get_num_threads()} CPU threads, "
        f"median of {args.steps} steps\n"
    )
    print("| step | s/step | frames/s | min s/step | CPU s/step |")
    print("|---|---|---|---|---|")
    for label, times in rows:
        wall = [w for w, _ in times]
        median = statistics.median(wall)
        cpu = statistics.median(c for _, c in times)
        frames = args.batch * args.frames / median
        print(f"| {label} | {median:.3f} | {frames:.1f} | {min(wall):.3f} | {cpu:.3f} |")


if __name__ == "__main__":
    main()
