"""Tokenizer recipes side by side at an equal wall-clock budget: the study behind the default config.

    ./run.sh bench tokenizer_study                        # every row, 6 minutes each, two at a time
    ./run.sh bench tokenizer_study --rows default,fsq --minutes 12
    ./run.sh bench tokenizer_study --list                 # the rows and the command of each
    ./run.sh bench tokenizer_study --table                # the table of the rows already run
    ./run.sh bench tokenizer_study --baselines            # flat grey and mean-colour fills of the held-out sets

Each row is a real ``./run.sh train tokenizer`` run: the default config (``configs/tokenizer/default.yaml``)
with the clips the study was run on (16 of 5 frames; the default now takes row ``clips-9-lr-1e-3``: 8 of 9)
plus the row's overrides, trained for ``--minutes`` of wall clock (``train.max_minutes``; the schedule
is the default's: warmup, then a constant lr) on ONE core
(``OMP_NUM_THREADS=1``, pinned with ``taskset``), two rows at a time on a 2-core machine, then scored on
the held-out sets of the default config (moving digits and real content, 17x64x64, EMA weights).
Nothing else should run meanwhile. Results land in ``runs/study/<row>/`` and one markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> (what the row changes, overrides on top of the default config)
ROWS: dict[str, tuple[str, list[str]]] = {
    "default": ("the default recipe", []),
    # ---- the stall: the previous default (full 3D convs at 64x64, LFQ aux losses, one clip per step)
    "previous-default": (
        "previous default: full-res 3D convs, LFQ commitment 0.25 + entropy 0.05, 1 clip of 17 frames, "
        "whole frames, Adam (0.5, 0.9) at 2e-3",
        [
            "model.patch_size=1",
            "model.spatial_downsample=null",
            "model.conv=full",
            "model.lfq.commitment_weight=0.25",
            "model.lfq.entropy_weight=0.05",
            "model.lfq.entropy_anneal_steps=100",
            "data.train=data/sample/train.jsonl",
            "data.num_frames=17",
            "data.crop_size=null",
            "data.image_ratio=0",
            "train.engine.micro_batch_size=1",
            "train.optimizer.lr=2e-3",
            "train.optimizer.betas=[0.5,0.9]",
        ],
    ),
    # ---- LFQ losses
    "lfq-aux-losses": (
        "LFQ commitment 0.25 + entropy 0.05 (annealed from 0.15)",
        [
            "model.lfq.commitment_weight=0.25",
            "model.lfq.entropy_weight=0.05",
            "model.lfq.entropy_anneal_steps=100",
        ],
    ),
    "lfq-entropy": (
        "LFQ entropy 0.02 only (no annealing)",
        ["model.lfq.entropy_weight=0.02", "model.lfq.entropy_anneal_start=1"],
    ),
    "lfq-commitment": (
        "LFQ commitment 0.25 only (no entropy loss)",
        ["model.lfq.commitment_weight=0.25"],
    ),
    "lfq-commitment-0.05": (
        "LFQ commitment 0.05 only (no entropy loss)",
        ["model.lfq.commitment_weight=0.05"],
    ),
    # ---- optimization
    "lr-5e-4": ("lr 5e-4", ["train.optimizer.lr=5e-4"]),
    "cosine-decay": (
        "cosine decay to 1% over the ~1450 steps the budget holds (not a constant lr)",
        ["train.schedule.kind=cosine", "train.schedule.min_lr_ratio=0.01", "train.max_steps=1450"],
    ),
    "lr-2e-3": ("lr 2e-3", ["train.optimizer.lr=2e-3"]),
    "lr-4e-3": ("lr 4e-3", ["train.optimizer.lr=4e-3"]),
    # ---- what a batch holds
    "whole-frames": (
        "whole 64x64 frames (no crops), 8 clips + 16 frames, lr 2e-3",
        [
            "data.crop_size=null",
            "train.engine.micro_batch_size=8",
            "data.image_batch_size=16",
            "train.optimizer.lr=2e-3",
        ],
    ),
    "whole-frames-stills": (
        "whole frames, image batches of 32 stills (data/sample/images.jsonl) instead of clip frames, "
        "8 clips, lr 2e-3",
        [
            "data.crop_size=null",
            "data.image_source=files",
            "data.image_data=data/sample/images.jsonl",
            "train.engine.micro_batch_size=8",
            "train.optimizer.lr=2e-3",
        ],
    ),
    "crop-16": (
        "16x16 crops, 8 clips + 16 frames, lr 2e-3",
        [
            "data.crop_size=16",
            "train.engine.micro_batch_size=8",
            "data.image_batch_size=16",
            "train.optimizer.lr=2e-3",
        ],
    ),
    "batch-8": (
        "8 clips + 16 frames per step, lr 2e-3",
        ["train.engine.micro_batch_size=8", "data.image_batch_size=16", "train.optimizer.lr=2e-3"],
    ),
    "batch-32": (
        "32 clips + 64 frames per step, lr 2e-3",
        ["train.engine.micro_batch_size=32", "data.image_batch_size=64", "train.optimizer.lr=2e-3"],
    ),
    "clips-9": (
        "8 clips of 9 frames (not 16 of 5), lr 2e-3",
        ["data.num_frames=9", "train.engine.micro_batch_size=8", "train.optimizer.lr=2e-3"],
    ),
    "clips-9-lr-1e-3": (
        "8 clips of 9 frames (not 16 of 5) at the default lr 1e-3",
        ["data.num_frames=9", "train.engine.micro_batch_size=8"],
    ),
    "clips-17": (
        "4 clips of 17 frames (not 16 of 5)",
        ["data.num_frames=17", "train.engine.micro_batch_size=4"],
    ),
    "video-only": ("video batches only (no image batches)", ["data.image_ratio=0"]),
    "digits-only": ("trained on digits only (no real content)", ["data.train=data/sample/train.jsonl"]),
    # ---- architecture
    "full-3d-convs": ("full 3x3x3 convs instead of (2+1)D", ["model.conv=full"]),
    "no-patch-stem": (
        "no patchify stem: convs at full resolution, spatial /4 by two strided levels",
        ["model.patch_size=1", "model.spatial_downsample=null"],
    ),
    "wider": ("base width 64 (not 32), lr 2e-3", ["model.base_channels=64", "train.optimizer.lr=2e-3"]),
    # ---- the quantizers at equal token grid and ~10 bits
    "fsq": ("FSQ (8, 8, 4, 4) = 1024 codes", ["model.quantizer=fsq"]),
    "bsq": ("BSQ 10 bits", ["model.quantizer=bsq"]),
    "vq": ("VQ 1024 x 8-d, EMA codebook, dead-code restarts", ["model.quantizer=vq"]),
    "lfq-12-bits": ("LFQ 12 bits (4096 codes) per position", ["model.lfq.bits=12"]),
}

# a constant learning rate after the warmup (cosine over a million steps), nothing but training in the budget,
# no decoder fine-tune;
# the base of every row is the recipe the study ran on: 16 clips of 5 frames (the default now trains on 8 clips
# of 9 frames, row clips-9-lr-1e-3)
FIXED = [
    "train.max_steps=1000000",
    "train.checkpoint.every_steps=0",
    "train.log.eval_every_steps=0",
    "data.num_frames=5",
    "train.engine.micro_batch_size=16",
    "decoder_finetune.fraction=0",  # stage 1 alone (the default's stage 2 came after this study)
    "train.schedule.cooldown_steps=0",
]


def command(row: str, minutes: float, core: int | None) -> list[str]:
    overrides = [f"run.root={ROOT / 'runs' / 'study'}", f"run.name={row}", f"train.max_minutes={minutes}"]
    train = [sys.executable, "-m", "videogen", "train", "tokenizer", *FIXED, *overrides, *ROWS[row][1]]
    return (["taskset", "-c", str(core)] if core is not None and shutil.which("taskset") else []) + train


def shell_line(row: str, minutes: float) -> str:
    args = " ".join(
        [*FIXED, f"run.root=runs/study run.name={row} train.max_minutes={minutes}", *ROWS[row][1]]
    )
    return f"OMP_NUM_THREADS=1 taskset -c 0 ./run.sh train tokenizer {args}"


def run_row(row: str, minutes: float, core: int) -> dict:
    run_dir = ROOT / "runs" / "study" / row
    shutil.rmtree(run_dir, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.time()
    log = ROOT / "runs" / "study" / f"{row}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        code = subprocess.run(
            command(row, minutes, core), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        ).returncode
    return {"row": row, "code": code, "wall_s": time.time() - started, **(read_row(row) if code == 0 else {})}


def read_row(row: str) -> dict:
    """The held-out scores of a finished row (``runs/study/<row>/eval.json``), or ``{}``."""
    eval_file = ROOT / "runs" / "study" / row / "eval.json"
    if not eval_file.is_file():
        return {}
    evaluation = json.loads(eval_file.read_text())
    return {
        "step": evaluation["step"],
        "digits": evaluation["tokenizer"],
        "real": evaluation["sets"].get("real"),
    }


def table(results: list[dict], minutes: float) -> str:
    lines = [
        f"| row | what it changes | steps in {minutes:g} min | digits PSNR / SSIM | real PSNR / SSIM | codebook usage (digits) |",
        "|---|---|---:|---|---|---:|",
    ]
    for r in results:
        if "digits" not in r and r["code"] == "not run":
            lines.append(f"| {r['row']} | {ROWS[r['row']][0]} | not run yet | | | |")
            continue
        if "digits" not in r:
            lines.append(
                f"| {r['row']} | {ROWS[r['row']][0]} | failed (exit {r['code']}, see runs/study/{r['row']}.log) | | | |"
            )
            continue
        d, real = r["digits"], r["real"]
        real_text = f"{real['psnr']:.2f} / {real['ssim']:.3f}" if real else "-"
        lines.append(
            f"| {r['row']} | {ROWS[r['row']][0]} | {r['step']} | {d['psnr']:.2f} / {d['ssim']:.3f} | {real_text} | "
            f"{100 * d['codebook']['usage_fraction']:.1f}% |"
        )
    return "\n".join(lines)


def baselines(num_clips: int = 40, num_frames: int = 17, resolution: int = 64) -> str:
    """PSNR / SSIM of what needs no model, on the held-out sets of the rows: a flat grey frame and each
    clip's mean colour."""
    import torch

    from videogen.evaluation.eval_data import eval_batches
    from videogen.evaluation.image_metrics import psnr, ssim

    lines = ["| held-out set | flat grey frame | each clip's mean colour |", "|---|---:|---:|"]
    for name, manifest in (("digits", "data/sample/val.jsonl"), ("real", "data/sample/real_val.jsonl")):
        _, batches = eval_batches(
            str(ROOT / manifest), num_frames, (resolution, resolution), limit=num_clips, batch_size=8
        )
        scores: dict[str, list] = {"grey": [], "mean": []}
        for batch in batches:
            clips = batch["video"]  # (B, 3, T, H, W) in [-1, 1]
            fills = {
                "grey": torch.zeros_like(clips),
                "mean": clips.mean(dim=(2, 3, 4), keepdim=True).expand_as(clips).contiguous(),
            }
            for fill, guess in fills.items():
                scores[fill].append((psnr(guess, clips).per_sample, ssim(guess, clips).per_sample))
        cells = [
            f"{torch.cat([p for p, _ in scores[f]]).mean():.2f} / {torch.cat([q for _, q in scores[f]]).mean():.3f}"
            for f in ("grey", "mean")
        ]
        lines.append(f"| {name} (PSNR / SSIM) | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="all", help="comma-separated row names, or all")
    parser.add_argument("--minutes", type=float, default=6.0, help="wall-clock training budget per row")
    parser.add_argument("--parallel", type=int, default=2, help="rows at a time, one core each")
    parser.add_argument("--list", action="store_true", help="print the rows and their commands, run nothing")
    parser.add_argument(
        "--baselines",
        action="store_true",
        help="print the no-model baselines of the held-out sets, run nothing",
    )
    parser.add_argument(
        "--table",
        action="store_true",
        help="print the table of the rows already run (runs/study/), run nothing",
    )
    args = parser.parse_args()
    rows = list(ROWS) if args.rows == "all" else [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        print(f"error: unknown rows {unknown}; choose from {', '.join(ROWS)}", file=sys.stderr)
        return 2
    if args.list:
        for row in rows:
            print(f"{row}: {ROWS[row][0]}\n  {shell_line(row, args.minutes)}")
        return 0
    if args.baselines:
        print(baselines())
        return 0
    if args.table:
        print(table([{"row": row, "code": "not run", **read_row(row)} for row in rows], args.minutes))
        return 0
    free_cores: queue.Queue[int] = queue.Queue()
    for core in range(args.parallel):
        free_cores.put(core)

    def on_a_free_core(row: str) -> dict:
        core = free_cores.get()
        try:
            return run_row(row, args.minutes, core)
        finally:
            free_cores.put(core)

    with ThreadPoolExecutor(args.parallel) as pool:
        results = list(pool.map(on_a_free_core, rows))
    print(table(results, args.minutes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
