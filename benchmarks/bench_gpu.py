"""The prepared GPU check: what only a GPU can show, in one run of a few minutes on one GPU.

    ./run.sh bench gpu                 # on a machine with a CUDA GPU (bf16, the sizes of the presets)
    ./run.sh bench gpu --smoke         # the same checks with tiny models on the CPU in fp32 (minutes)

Rows (each prints time per step, peak GPU memory, and what was checked):

* tokenizer S and B train step in bf16: the real loop step (``TokenizerStep`` on a DeepSpeed engine made
  by ``Trainer``, EMA update included) on random 17x128x128 clips; every loss finite.
* the GAN step: generator and PatchGAN discriminator in two DeepSpeed engines, LeCam on; losses finite.
* transformer S train step (forward, COMMIT loss, backward) in bf16 with attention ``sdpa`` and with
  ``xformers`` (the ``[gpu]`` extra; the row says so when it is not installed), and the largest
  difference between their logits on the same weights and inputs.
* 12-step sampling (MaskGIT/COMMIT decoding) of the transformer: seconds and forward passes.
* exports: both models written with ``save_pretrained`` and loaded back give identical outputs.

Only the packages the project installs are used; nothing is downloaded. Exit code 1 when a check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from videogen.config_loader import from_dict
from videogen.data.failures import FailureMonitor
from videogen.errors import UserError
from videogen.tokenizer import TokenizerConfig, VideoTokenizer
from videogen.tokenizer.discriminator import build_discriminator
from videogen.tokenizer.losses import LeCam
from videogen.tokenizer_training.loop import contiguous_parameters
from videogen.tokenizer_training.step import TokenizerStep
from videogen.tokenizer_training.training_config import LossConfig, TokenizerTrainConfig
from videogen.training import RunConfig, Trainer, distributed_session
from videogen.transformer import CommitTransformer, sample
from videogen.transformer.masking import commit_loss, prepare_training_inputs
from videogen.transformer.vocab import TASK_IDS

# (preset, overrides, clip frames, clip size, batch) per mode
TOKENIZER_ROWS = {
    "gpu": [("S", {}, 17, 128, 1), ("B", {}, 17, 128, 1)],
    "smoke": [("tiny", {"base_channels": 8, "num_groups": 4}, 5, 32, 1)],
}
TRANSFORMER = {  # preset, overrides, token grid, batch
    "gpu": ("S", {}, (5, 16, 16), 4),
    "smoke": ("tiny", {"hidden_size": 64, "num_layers": 2, "num_heads": 2}, (2, 4, 4), 2),
}


class Report:
    """The table's rows, and whether every check passed."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []
        self.failed = False

    def add(self, check: str, setting: str, seconds: str, memory: str, result: str, ok: bool) -> None:
        self.rows.append((check, setting, seconds, memory, ("" if ok else "FAILED: ") + result))
        self.failed |= not ok
        print(f"  {check} ({setting}): {seconds} s, {memory}, {result}", file=sys.stderr)

    def table(self) -> str:
        lines = [
            "| check | setting | s/step (median) | peak GPU memory | result |",
            "|---|---|---:|---:|---|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


def peak_memory(device: torch.device) -> str:
    if device.type != "cuda":
        return "-"
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB"


def reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[int], object], steps: int, warmup: int, device: torch.device) -> tuple[float, list]:
    """Median seconds of ``fn(i)`` over ``steps`` calls after ``warmup`` calls, and every call's result."""
    times, results = [], []
    for i in range(warmup + steps):
        synchronize(device)
        start = time.perf_counter()
        results.append(fn(i))
        synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times), results


def all_finite(metrics: dict) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in metrics.values() if isinstance(v, torch.Tensor))


def tokenizer_step(
    report: Report, dist, args: argparse.Namespace, row: tuple, precision: str, gan: bool
) -> None:
    preset, overrides, frames, size, batch = row
    model = VideoTokenizer(from_dict(TokenizerConfig, {"preset": preset, **overrides}))
    train = from_dict(
        TokenizerTrainConfig,
        {
            "max_steps": args.warmup + args.steps,
            "engine": {"micro_batch_size": batch, "precision": precision},
            "checkpoint": {"resume": "never", "every_steps": 0},
            "log": {"tensorboard": False, "progress_bar": False},
        },
    )
    disc_channels = 64 if args.mode == "gpu" else 8
    loss = from_dict(
        LossConfig,
        {"gan": {"generator_weight": 0.1 if gan else 0.0, "discriminator": {"base_channels": disc_channels}}},
    )
    reset_memory(dist.device)
    with tempfile.TemporaryDirectory() as root, Trainer(train, RunConfig("gpu-check", root), dist) as trainer:
        gen = trainer.add_engine("generator", contiguous_parameters(model), ema=True)
        dis = lecam = None
        if gan:
            dis = trainer.add_engine(
                "discriminator", build_discriminator(loss.gan.discriminator), optimizer=loss.gan.optimizer
            )
            lecam = LeCam(loss.gan.lecam_decay)
        trainer.resume()
        step_fn = TokenizerStep(trainer, loss, gen, dis, lecam, None, FailureMonitor())
        batch_data = {
            "video": torch.rand(batch, 3, frames, size, size) * 2 - 1,
            "num_failed": torch.zeros(batch, dtype=torch.long),
        }

        def step(i: int) -> dict:
            metrics = step_fn(batch_data)
            trainer.step = gen.global_steps
            trainer.emas["generator"].update(gen.module)
            return metrics

        seconds, results = timed(step, args.steps, args.warmup, dist.device)
    finite = all(all_finite(m) for m in results)
    what = "generator + discriminator engines, LeCam" if gan else "DeepSpeed engine + EMA"
    report.add(
        "tokenizer GAN step" if gan else "tokenizer train step",
        f"{preset}, {batch}x{frames}x{size}x{size}, {precision}",
        f"{seconds:.2f}",
        peak_memory(dist.device),
        f"{what}; losses finite" if finite else f"{what}; a loss is not finite",
        finite,
    )


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def logits(model: CommitTransformer, inputs: dict) -> torch.Tensor:
    """The model's logits of every head, concatenated: (B, N, sum of the head sizes), float32."""
    out = model(inputs["tokens"], inputs["task_ids"], inputs["class_ids"])
    return torch.cat([part.float() for part in out.parts], dim=-1)


def transformer_inputs(model: CommitTransformer, grid: tuple, batch: int, device: torch.device) -> dict:
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.config.codebook_size, (batch, *grid), generator=generator).to(device)
    cond_mask = torch.zeros_like(tokens, dtype=torch.bool)
    cond_mask[:, :1] = True  # frame prediction from the first latent frame
    task_ids = torch.full((batch,), TASK_IDS["frame_prediction"], device=device)
    class_ids = torch.full((batch,), model.uncond_class_id, device=device)
    return {"tokens": tokens, "cond_mask": cond_mask, "task_ids": task_ids, "class_ids": class_ids}


def transformer_checks(
    report: Report, args: argparse.Namespace, device: torch.device, precision: str
) -> None:
    preset, overrides, grid, batch = TRANSFORMER[args.mode]
    size = {"max_frames": grid[0], "max_height": grid[1], "max_width": grid[2]}
    models: dict[str, CommitTransformer] = {}
    for attention in ("sdpa", "xformers"):
        model = CommitTransformer.from_preset(preset, attention=attention, **size, **overrides)
        if models:  # the same weights as the sdpa model
            model.load_state_dict(models["sdpa"].state_dict())
        model = model.to(device)
        setting = f"{preset}, {batch}x{grid[0]}x{grid[1]}x{grid[2]} tokens, {precision}, {attention}"
        try:
            backend = model.attention_backend(device)
        except UserError as e:  # xformers missing or unusable here: say so, not a failure of the project
            report.add("transformer train step", setting, "-", "-", f"not run: {e}", True)
            continue
        models[attention] = model
        inputs = transformer_inputs(model, grid, batch, device)
        generator = torch.Generator().manual_seed(1)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        reset_memory(device)

        def step(i: int, model=model, inputs=inputs, generator=generator, optimizer=optimizer) -> float:
            training = prepare_training_inputs(
                inputs["tokens"],
                inputs["tokens"],
                inputs["cond_mask"],
                inputs["task_ids"],
                inputs["class_ids"],
                uncond_class_id=model.uncond_class_id,
                generator=generator,
            )
            with autocast(device, precision):
                out = model(training.inputs, training.task_ids, training.class_ids)
            loss = commit_loss(out, inputs["tokens"], training.masked, training.cond_mask).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return float(loss.detach())

        model.train()
        seconds, losses = timed(step, args.steps, args.warmup, device)
        finite = all(math.isfinite(v) for v in losses)
        report.add(
            "transformer train step",
            f"{setting} ({backend})",
            f"{seconds:.2f}",
            peak_memory(device),
            "loss finite" if finite else "loss not finite",
            finite,
        )
        model.eval()
    if len(models) == 2:  # after their own steps the weights differ: compare on the same weights
        sdpa, xformers = models["sdpa"], models["xformers"]
        xformers.load_state_dict(sdpa.state_dict())
        inputs = transformer_inputs(sdpa, grid, batch, device)
        with torch.no_grad(), autocast(device, precision):
            diff = (logits(sdpa, inputs) - logits(xformers, inputs)).abs().max().item()
        tolerance = 5e-2 if precision == "bf16" else 1e-4
        report.add(
            "sdpa vs xformers logits",
            f"{preset}, same weights and inputs, {precision}",
            "-",
            "-",
            f"max |difference| {diff:.2e} (tolerance {tolerance:g})",
            diff <= tolerance,
        )
    model = models["sdpa"]
    inputs = transformer_inputs(model, grid, batch, device)
    forwards = []
    hook = model.register_forward_hook(lambda *_: forwards.append(1))
    reset_memory(device)

    def decode(i: int) -> torch.Tensor:
        with torch.no_grad(), autocast(device, precision):
            return sample(
                model,
                inputs["tokens"],
                inputs["cond_mask"],
                inputs["task_ids"],
                inputs["class_ids"],
                steps=12,
                generator=torch.Generator().manual_seed(i),
            )

    seconds, outputs = timed(decode, 1, 1, device)
    hook.remove()
    decoded = outputs[-1]
    valid = decoded.shape == inputs["tokens"].shape and bool(
        ((decoded >= 0) & (decoded < model.config.codebook_size)).all()
    )
    passes = len(forwards) // 2  # two decodes: the warm-up and the timed one
    report.add(
        "12-step sampling",
        f"{preset}, {batch} clips, {precision}",
        f"{seconds:.2f}",
        peak_memory(device),
        f"{passes} forward passes per decode; every position decoded to a code id: {valid}",
        valid and passes == 12,
    )
    export_checks(report, model, inputs, device)


def export_checks(report: Report, transformer: CommitTransformer, inputs: dict, device: torch.device) -> None:
    preset, overrides, frames, size, _ = TOKENIZER_ROWS["smoke"][0]
    tokenizer = VideoTokenizer(from_dict(TokenizerConfig, {"preset": preset, **overrides})).to(device).eval()
    clip = (torch.rand(1, 3, frames, size, size) * 2 - 1).to(device)
    with tempfile.TemporaryDirectory() as root:
        tokenizer.save_pretrained(Path(root) / "tokenizer")
        transformer.save_pretrained(Path(root) / "transformer")
        tokenizer_back = VideoTokenizer.from_pretrained(Path(root) / "tokenizer").to(device).eval()
        transformer_back = CommitTransformer.from_pretrained(Path(root) / "transformer", device=device).eval()
    with torch.no_grad():
        same_tokens = torch.equal(tokenizer.tokenize(clip), tokenizer_back.tokenize(clip))
        same_logits = torch.equal(logits(transformer, inputs), logits(transformer_back, inputs))
    ok = same_tokens and same_logits
    report.add(
        "exports",
        "save_pretrained -> from_pretrained, both models",
        "-",
        "-",
        f"identical tokens: {same_tokens}; identical logits: {same_logits}",
        ok,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU in fp32 (no GPU needed)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    args.mode = "smoke" if args.smoke else "gpu"
    if args.mode == "gpu" and not torch.cuda.is_available():
        print(
            "error: no CUDA GPU here; `./run.sh bench gpu --smoke` runs the same checks on the CPU",
            file=sys.stderr,
        )
        return 2
    precision = "bf16" if args.mode == "gpu" else "fp32"
    started = time.time()
    report = Report()
    with distributed_session() as dist:
        device = dist.device
        for row in TOKENIZER_ROWS[args.mode]:
            tokenizer_step(report, dist, args, row, precision, gan=False)
        tokenizer_step(report, dist, args, TOKENIZER_ROWS[args.mode][0], precision, gan=True)
        transformer_checks(report, args, device, precision)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (smoke run)"
    print(f"\n{name}, torch {torch.__version__}, {time.time() - started:.0f} s in all\n")
    print(report.table())
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
