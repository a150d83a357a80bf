"""COMMIT transformer speed: train step (fwd + bwd) and 12-step sampling, against the matmul ceiling.

For each preset and token grid: the time of one training step (three-way mix, forward, loss,
backward) and of one 12-step MaskGIT/COMMIT decode, in float32 and under bf16 autocast; achieved
GFLOP/s counted by ``torch.utils.flop_counter.FlopCounterMode`` (attention included) against the
float32 matmul ceiling measured in the same run (best of several GEMM shapes, including the model's
own, re-measured between settings; the best is used). Prints a markdown table.

    python benchmarks/bench_transformer.py                      # presets S and B, 5x16x16 and 1x16x16
    python benchmarks/bench_transformer.py --preset S --grids 5x16x16 --dtypes bf16
    ./run.sh bench transformer --preset tiny --grids 5x16x16 --dtypes fp32 --batch 4 --bits 12 \
        --set hidden_size=128 grid_conv=3 sub_tokens=bits position=rope --layouts joint divided
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count
from tqdm import tqdm

from videogen.transformer import CommitTransformer, sample
from videogen.transformer.masking import commit_loss, prepare_training_inputs
from videogen.transformer.vocab import TASK_IDS


def _cpu_flash_forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_flash_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


# FlopCounterMode has no entry for the CPU flash-attention kernels; count them like the CUDA ones.
CUSTOM_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_forward,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_backward,
}


def count_flops(fn) -> int:
    with FlopCounterMode(display=False, custom_mapping=CUSTOM_FLOPS) as counter:
        fn()
    return counter.get_total_flops()


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def timed(fn, repeats: int, clock=time.perf_counter) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return times


def matmul_ceiling(shapes: list[tuple[int, int, int]], dtype: torch.dtype, repeats: int, clock) -> float:
    """Best GFLOP/s of ``(m, k) @ (k, n)`` over ``shapes``."""
    best = 0.0
    for m, k, n in shapes:
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        seconds = min(timed(lambda a=a, b=b: a @ b, repeats, clock))
        best = max(best, 2 * m * k * n / seconds / 1e9)
    return best


def autocast(dtype: str):
    if dtype == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def parse_grid(text: str) -> tuple[int, int, int]:
    frames, height, width = (int(v) for v in text.lower().split("x"))
    return frames, height, width


def measure(
    model: CommitTransformer, grid: tuple[int, int, int], dtype: str, args: argparse.Namespace
) -> dict:
    """Train-step and sampling timings of ``model`` on a ``grid`` token grid under ``dtype``."""
    cfg = model.config
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 2**args.bits, (args.batch, *grid), generator=gen)
    cond_mask = torch.zeros_like(tokens, dtype=torch.bool)
    cond_mask[:, :1] = True  # frame prediction from the first latent frame
    task_ids = torch.full((args.batch,), TASK_IDS["frame_prediction"])
    class_ids = torch.full((args.batch,), model.uncond_class_id)

    def train_step() -> None:
        batch = prepare_training_inputs(
            tokens,
            tokens,
            cond_mask,
            task_ids,
            class_ids,
            uncond_class_id=model.uncond_class_id,
            generator=gen,
        )
        with autocast(dtype):
            logits = model(batch.inputs, batch.task_ids, batch.class_ids)
        loss = commit_loss(
            logits, tokens, batch.masked, batch.cond_mask, label_smoothing=cfg.label_smoothing
        ).loss
        loss.backward()
        model.zero_grad(set_to_none=True)

    model.train()
    train_flops = count_flops(train_step)
    clock = CLOCKS[args.clock]
    train_times = timed(train_step, args.repeats, clock)
    row = {
        "preset": f"{cfg.preset} ({cfg.num_layers}/{cfg.hidden_size}/{cfg.num_heads})",
        "layout": cfg.attention_layout,
        "tokens": f"{grid[0]}x{grid[1]}x{grid[2]} = {grid[0] * grid[1] * grid[2]}",
        "dtype": dtype,
        "attention": model.attention_backend("cpu"),
        "train_median": statistics.median(train_times),
        "train_best": min(train_times),
        "train_gflops": train_flops / min(train_times) / 1e9,
    }
    if args.no_sample:
        return row
    model.eval()
    with torch.no_grad(), autocast(dtype):
        forward_flops = count_flops(lambda: model(tokens, task_ids, class_ids))
    forwards = []
    hook = model.register_forward_hook(lambda *_: forwards.append(1))
    start = clock()
    with autocast(dtype):
        sample(model, tokens, cond_mask, task_ids, class_ids, steps=args.steps, generator=gen)
    seconds = clock() - start
    hook.remove()
    row.update(
        sample_s=seconds, forwards=len(forwards), sample_gflops=forward_flops * len(forwards) / seconds / 1e9
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", nargs="+", default=["S", "B"], help="model presets (tiny, S, B, L)")
    parser.add_argument("--grids", nargs="+", default=["5x16x16", "1x16x16"], help="latent grids T'xH'xW'")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--bits", type=int, default=18, help="codebook bits (18 -> two 2^9 sub-token heads)")
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=12, help="sampling steps")
    parser.add_argument("--repeats", type=int, default=3, help="timed train steps per setting")
    parser.add_argument("--dropout", type=float, default=None, help="override the preset's dropout")
    parser.add_argument("--no-sample", action="store_true", help="skip the sampling measurement")
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="model config fields for every preset, e.g. hidden_size=128 grid_conv=3 sub_tokens=bits",
    )
    parser.add_argument(
        "--layouts",
        nargs="+",
        default=["joint"],
        choices=["joint", "divided"],
        help="attention layouts (model.attention_layout) to measure each preset with",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--clock",
        default="wall",
        choices=sorted(CLOCKS),
        help="wall time, or process CPU time (with --threads 1 on a shared machine: time actually run)",
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu" and torch.get_num_threads() != 1:
        parser.error("--clock cpu needs --threads 1 (CPU time of several threads includes their spin-waits)")

    grids = [parse_grid(g) for g in args.grids]
    torch.manual_seed(0)
    models = {}
    gemm_shapes = [(2048, 2048, 2048)]
    fields = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set {item!r}: use KEY=VALUE")
        fields[key] = yaml.safe_load(value)
    for name in args.preset:
        overrides = {"codebook_size": 2**args.bits, "max_frames": max(g[0] for g in grids)}
        overrides.update(max_height=max(g[1] for g in grids), max_width=max(g[2] for g in grids))
        if args.dropout is not None:
            overrides["dropout"] = args.dropout
        for layout in args.layouts:
            models[name, layout] = CommitTransformer.from_preset(
                name, **overrides, **fields, attention_layout=layout
            )
        dim = models[name, args.layouts[0]].config.hidden_size
        seq = args.batch * (2 + max(g[0] * g[1] * g[2] for g in grids))  # rows of the model's GEMMs
        gemm_shapes += [(seq, dim, 4 * dim), (seq, 4 * dim, dim), (seq, dim, 3 * dim)]
    clock = CLOCKS[args.clock]
    ceiling = matmul_ceiling(gemm_shapes, torch.float32, 5, clock)
    # a bf16 GEMM of 2048^3 takes minutes on a CPU without bf16 instructions: only when bf16 is measured
    ceiling_bf16 = (
        matmul_ceiling(gemm_shapes[:1], torch.bfloat16, 5, clock) if "bf16" in args.dtypes else None
    )

    rows = []
    settings = [
        (p, lay, g, d) for p in args.preset for lay in args.layouts for g in grids for d in args.dtypes
    ]
    for preset, layout, grid, dtype in tqdm(settings, desc="bench_transformer"):
        rows.append(measure(models[preset, layout], grid, dtype, args))
        # re-measure after every setting: the ceiling is the best seen in the whole run (conservative)
        ceiling = max(ceiling, matmul_ceiling(gemm_shapes[:1], torch.float32, 3, clock))
    for row in rows:
        row["train_pct"] = 100 * row["train_gflops"] / ceiling

    print(
        f"\nfp32 matmul ceiling {ceiling:.0f} GFLOP/s, bf16 "
        f"{'not measured' if ceiling_bf16 is None else f'{ceiling_bf16:.0f} GFLOP/s'} "
        f"(best GEMM of {len(gemm_shapes)} shapes, measured before and between the settings); torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {args.clock} clock, batch {args.batch}, {args.bits}-bit codes "
        f"(heads {'x'.join(str(n) for n in next(iter(models.values())).config.sub_token_sizes)})\n"
    )
    print(
        "| preset (L/D/H) | layout | tokens | dtype | attention | train step s (median / best) | train GFLOP/s | "
        f"% of fp32 ceiling | {args.steps}-step sample s | forward passes | sample GFLOP/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        sample_cells = (
            f"{r['sample_s']:.2f} | {r['forwards']} | {r['sample_gflops']:.0f}"
            if "sample_s" in r
            else "- | - | -"
        )
        print(
            f"| {r['preset']} | {r['layout']} | {r['tokens']} | {r['dtype']} | {r['attention']} | "
            f"{r['train_median']:.2f} / {r['train_best']:.2f} | {r['train_gflops']:.0f} | {r['train_pct']:.0f}% | "
            f"{sample_cells} |"
        )


if __name__ == "__main__":
    main()
