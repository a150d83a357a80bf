"""VideoTokenizer speed: encode, decode and a training step per clip, FLOPs, GFLOP/s against the
machine's own fp32/bf16 matmul and conv3d ceilings, measured in the same run.

    python benchmarks/bench_tokenizer.py                              # tiny at 17x64x64, S at 17x128x128
    python benchmarks/bench_tokenizer.py --presets B --dtypes fp32,bf16 --formats channels_last_3d
    python benchmarks/bench_tokenizer.py --presets S --size 64       # quicker

Train step = forward (with the LFQ losses) + L1 reconstruction loss + backward, gradients set to None
before each step. Encode = ``tokenize``, decode = ``detokenize`` (no gradients). bf16 = autocast.
FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on the same call (convolutions and
matmuls only, so GroupNorm, SiLU and copies are "free" and count against the achieved rate). Times
are the median of ``--repeats`` runs after one warm-up (the counted run). Ceilings: a 2048^3 matmul
and a 128->128 3x3x3 conv3d over 9x32x32 (forward + backward, channels_last_3d), fp32 and bf16,
measured before and after the model runs.

Other processes on a shared machine make wall-clock timings noisy, so every time is also reported as
process CPU time / threads ("cpu"): with ``OMP_WAIT_POLICY=PASSIVE`` (set here unless the environment
says otherwise) idle OpenMP threads sleep instead of spinning, so CPU time counts the work done, not
the waiting for cores held by other processes. On a quiet machine the two agree.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its OpenMP threads

import argparse  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from contextlib import nullcontext  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from tqdm import tqdm  # noqa: E402

from videogen.tokenizer import VideoTokenizer  # noqa: E402

DEFAULT_SIZE = {"tiny": 64, "S": 128, "B": 128, "L": 128}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def autocast(dtype: str):
    return torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median (wall seconds, CPU seconds / threads) of ``repeats`` calls."""
    walls, cpus = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), _cpu_seconds()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append((_cpu_seconds() - start_cpu) / torch.get_num_threads())
    return statistics.median(walls), statistics.median(cpus)


def count_flops(fn) -> int:
    """Run ``fn`` once under a FLOP counter (this run is also the warm-up)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def ceilings(repeats: int) -> dict[str, tuple[float, float]]:
    """(wall, cpu) GFLOP/s of a large matmul and of a typical conv3d (fwd+bwd), fp32 and bf16."""
    out = {}
    for name, dtype in DTYPES.items():
        a = torch.randn(2048, 2048, dtype=dtype)
        b = torch.randn(2048, 2048, dtype=dtype)
        a @ b
        seconds = timed(lambda a=a, b=b: a @ b, repeats)
        out[f"matmul {name}"] = tuple(2 * 2048**3 / t / 1e9 for t in seconds)
        fmt = torch.channels_last_3d
        x = torch.randn(1, 128, 11, 32, 32, dtype=dtype).contiguous(memory_format=fmt).requires_grad_()
        w = torch.randn(128, 128, 3, 3, 3, dtype=dtype).contiguous(memory_format=fmt).requires_grad_()

        def conv_step(x=x, w=w):
            y = F.conv3d(x, w, padding=(0, 1, 1))
            y.backward(torch.ones_like(y))
            x.grad = w.grad = None

        conv_step()
        flops = 3 * 2 * 128 * 128 * 27 * 9 * 32 * 32
        out[f"conv3d {name}"] = tuple(flops / t / 1e9 for t in timed(conv_step, repeats))
    return out


def bench_case(preset: str, size: int, frames: int, dtype: str, fmt: str, repeats: int, batch: int) -> dict:
    torch.manual_seed(0)
    model = VideoTokenizer.from_preset(preset).set_memory_format(fmt)
    video = torch.rand(batch, 3, frames, size, size) * 2 - 1

    def train_step():
        model.zero_grad(set_to_none=True)
        with autocast(dtype):
            out = model(video, step=0)
            loss = (out.reconstruction - video).abs().mean() + out.quantizer_loss
        loss.backward()

    def encode():
        with autocast(dtype):
            return model.tokenize(video)

    tokens = encode()

    def decode():
        with autocast(dtype):
            model.detokenize(tokens)

    result = {"params": sum(p.numel() for p in model.parameters())}
    for name, fn in (("encode", encode), ("decode", decode), ("train", train_step)):
        flops = count_flops(fn)
        wall, cpu = timed(fn, repeats)
        result[name] = {"wall": wall / batch, "cpu": cpu / batch, "gflop": flops / batch / 1e9}
    return result


def print_tables(args, peak: dict, peak_after: dict, rows: list, load: tuple[float, float]) -> None:
    print(
        f"\n{torch.get_num_threads()} threads, torch {torch.__version__}, batch {args.batch}, per-clip times, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, 1-min load average {load[0]:.1f} before, "
        f"{load[1]:.1f} after\n"
    )
    print("| ceiling (fwd+bwd for conv3d) | GFLOP/s wall, before | after | GFLOP/s cpu, before | after |")
    print("|---|---:|---:|---:|---:|")
    for key in peak:
        print(
            f"| {key} | {peak[key][0]:.0f} | {peak_after[key][0]:.0f} | {peak[key][1]:.0f} | {peak_after[key][1]:.0f} |"
        )
    print()
    print(
        "| preset | clip | dtype | layout | params (M) | encode s | decode s | train step s | train GFLOP | "
        "train GFLOP/s | % of conv3d ceiling | encode GFLOP/s | decode GFLOP/s |"
    )
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for preset, size, dtype, fmt, r in rows:
        times = " | ".join(f"{r[k]['cpu']:.2f} ({r[k]['wall']:.2f})" for k in ("encode", "decode", "train"))
        rate = {k: r[k]["gflop"] / r[k]["cpu"] for k in ("encode", "decode", "train")}
        rate_wall = r["train"]["gflop"] / r["train"]["wall"]
        conv_peak = max(peak[f"conv3d {dtype}"][1], peak_after[f"conv3d {dtype}"][1])
        print(
            f"| {preset} | {args.frames}x{size}x{size} | {dtype} | {fmt} | {r['params'] / 1e6:.1f} | {times} | "
            f"{r['train']['gflop']:.0f} | {rate['train']:.0f} ({rate_wall:.0f}) | "
            f"{100 * rate['train'] / conv_peak:.0f} | {rate['encode']:.0f} | {rate['decode']:.0f} |"
        )
    print(
        "\ntimes and rates: CPU time / threads (wall clock in parentheses); % of the cpu-based conv3d ceiling"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", default="tiny,S", help="comma list of tiny,S,B,L")
    parser.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32,bf16 (bf16 = autocast)")
    parser.add_argument("--formats", default="channels_last_3d,contiguous", help="memory formats to compare")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=None, help="H = W (default: tiny 64, others 128)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cases = [
        (p, d, f)
        for p in args.presets.split(",")
        for d in args.dtypes.split(",")
        for f in args.formats.split(",")
    ]
    load_before = os.getloadavg()[0]
    peak = ceilings(max(args.repeats, 3))
    rows = []
    for preset, dtype, fmt in tqdm(cases, desc="tokenizer cases"):
        size = args.size or DEFAULT_SIZE[preset]
        result = bench_case(preset, size, args.frames, dtype, fmt, args.repeats, args.batch)
        rows.append((preset, size, dtype, fmt, result))
    peak_after = ceilings(max(args.repeats, 3))
    print_tables(args, peak, peak_after, rows, (load_before, os.getloadavg()[0]))


if __name__ == "__main__":
    main()
