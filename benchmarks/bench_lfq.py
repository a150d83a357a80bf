"""LFQ forward+backward with both entropy terms: exact factorized form vs the naive softmax over 2^bits.

    python benchmarks/bench_lfq.py                       # N = 20480 latents at 10, 14, 18 bits
    python benchmarks/bench_lfq.py --bits 18 --latents 2560 --repeats 5

Time: median of ``--repeats`` runs after one warm-up, of ``LFQ.forward`` (normalization, sign,
commitment, both entropy terms, codebook statistics) plus ``backward`` of its loss.
Peak extra memory: the process's resident-set high-water mark (VmHWM) reset before the run through
``/proc/self/clear_refs`` (Linux), minus the resident set at that moment: every byte the run touched,
whoever allocated it (tensors, autograd buffers, BLAS workspaces). Where the reset is not allowed, a
1 ms RSS sampling thread is used instead (it may miss peaks shorter than a millisecond).
The naive form runs only where its N x 2^bits matrices fit (``--naive-limit-gb``, default 8 GB for
four fp32 matrices).

On a shared machine wall-clock times are noisy; each time is also given as process CPU time / threads
("cpu"), with ``OMP_WAIT_POLICY=PASSIVE`` (set here unless the environment says otherwise) so idle
OpenMP threads sleep rather than spin and CPU time counts the work, not the waiting for a core.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its OpenMP threads

import argparse  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from videogen.tokenizer import LFQ  # noqa: E402
from videogen.tokenizer.lfq_naive import naive_entropy_terms  # noqa: E402


class NaiveLFQ(LFQ):
    """The same quantizer with the naive entropy (for comparison only)."""

    def entropy_terms(self, z):
        return naive_entropy_terms(z.float(), self.config.temperature)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_extra_memory(fn) -> tuple[int, str]:
    """Run ``fn`` once; return (peak resident bytes above the start, method)."""
    start = _rss_bytes()
    if _reset_hwm():
        fn()
        return _hwm_bytes() - start, "VmHWM"
    peak, running = [start], [True]

    def sample():
        while running[0]:
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    fn()
    running[0] = False
    thread.join()
    return max(peak[0], _rss_bytes()) - start, "RSS sampling"


def run_case(cls: type[LFQ], bits: int, latents: int, repeats: int) -> dict:
    torch.manual_seed(0)
    quantizer = cls(bits)
    grid = latents // 1280 if latents % 1280 == 0 else 1  # clips of 5 x 16 x 16 latents
    shape = (grid, bits, 5, 16, 16) if latents % 1280 == 0 else (1, bits, latents)
    z = torch.randn(shape, requires_grad=True)

    def step():
        out = quantizer(z, step=0)
        out.loss.backward()
        z.grad = None
        return out

    out = step()  # warm-up
    memory, method = peak_extra_memory(step)
    times, cpu_times = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), _cpu_seconds()
        step()
        times.append(time.perf_counter() - start)
        cpu_times.append((_cpu_seconds() - start_cpu) / torch.get_num_threads())
    return {
        "time": statistics.median(times),
        "cpu": statistics.median(cpu_times),
        "memory": memory,
        "method": method,
        "per_sample": out.per_sample_entropy.item(),
        "codebook": out.codebook_entropy.item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bits", type=int, nargs="+", default=[10, 14, 18])
    parser.add_argument("--latents", type=int, default=20480, help="N latents (16 clips x 1280 = 20480)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--naive-limit-gb", type=float, default=8.0, help="skip naive when 4 N x 2^bits fp32 exceed this"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cases = []
    for bits in args.bits:
        cases.append(("factorized", LFQ, bits))
        if 4 * args.latents * 2**bits * 4 <= args.naive_limit_gb * 1e9:
            cases.append(("naive", NaiveLFQ, bits))
    rows = []
    load_before = os.getloadavg()[0]
    for name, cls, bits in tqdm(cases, desc="lfq cases"):
        rows.append((name, bits, run_case(cls, bits, args.latents, args.repeats)))

    print(
        f"\nLFQ forward+backward (commitment + both entropy terms), N = {args.latents} latents, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, 1-min load average {load_before:.1f} "
        f"before, {os.getloadavg()[0]:.1f} after\n"
    )
    print("| bits | entropy | fwd+bwd s, cpu (wall) | peak extra memory (MB) | per-sample H | codebook H |")
    print("|---:|---|---:|---:|---:|---:|")
    for name, bits, r in rows:
        print(
            f"| {bits} | {name} | {r['cpu']:.3f} ({r['time']:.3f}) | {r['memory'] / 1e6:.0f} | "
            f"{r['per_sample']:.4f} | {r['codebook']:.4f} |"
        )
    skipped = [b for b in args.bits if not any(n == "naive" and bb == b for n, bb, _ in rows)]
    if skipped:
        print(
            f"\nnaive skipped at bits {skipped} (needs > {args.naive_limit_gb} GB); memory method: {rows[0][2]['method']}"
        )


if __name__ == "__main__":
    main()
