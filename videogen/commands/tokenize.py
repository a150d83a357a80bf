"""``run.sh tokenize``: encode a dataset once with the frozen tokenizer into a token cache.

The cache (``--out``) holds, per clip window, the target tokens, the condition tokens of every
configured COMMIT task and the label, in memmapped shards that ``videogen.token_cache.reader.TokenDataset``
reads. Rerunning the same command resumes: complete shards are kept, missing or damaged ones rebuilt.
"""

from __future__ import annotations

import argparse

from videogen.data.config import DataConfig


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    data = DataConfig()
    parser.add_argument("--out", required=True, help="token cache folder (new, or one to resume)")
    parser.add_argument(
        "--tokenizer", default=None, help="tokenizer export (default: runs/tokenizer-default/export)"
    )
    parser.add_argument(
        "--data", default=data.train, help="video manifest (.jsonl) or folder (default: %(default)s)"
    )
    parser.add_argument(
        "--tasks",
        default="all",
        help="comma-separated task names or codes (frame_prediction,interpolation,outpaint_central,... "
        "or FP,FI,OPC,...), or 'all' (default): every task that fits the clip length",
    )
    parser.add_argument(
        "--num-frames",
        type=int,
        default=data.num_frames,
        help="frames per clip, 1 + 4k for a temporal factor 4 tokenizer",
    )
    parser.add_argument("--resolution", type=int, default=data.resolution, help="square side in pixels")
    parser.add_argument("--frame-stride", type=int, default=1, help="take every n-th source frame")
    parser.add_argument("--target-fps", type=float, default=None, help="resample clips to this frame rate")
    parser.add_argument("--split", default=None, help="only manifest rows of this split (default: all rows)")
    parser.add_argument(
        "--windows-per-clip",
        type=int,
        default=1,
        help="1 (default): the centered window of each clip; K: K windows with evenly spaced starts",
    )
    parser.add_argument(
        "--flip", choices=("none", "both"), default="none", help="both: also store the mirrored clip"
    )
    parser.add_argument(
        "--cond-frames",
        type=int,
        default=None,
        help="condition frames of frame prediction (default: 1 + the tokenizer's temporal factor)",
    )
    parser.add_argument(
        "--interp-cond-frames", type=int, default=1, help="condition frames at each end for interpolation"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="clip windows per tokenizer call")
    parser.add_argument("--shard-size", type=int, default=1024, help="clip windows per shard")
    parser.add_argument("--workers", type=int, default=data.num_workers, help="decoding processes")
    parser.add_argument("--backend", choices=("decord", "pyav"), default=data.backend, help="video decoder")
    parser.add_argument(
        "--too-short", choices=("skip", "loop"), default=data.too_short, help="clips shorter than a window"
    )
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a cache in --out made with other settings"
    )


def run(args: argparse.Namespace) -> int:
    from videogen.data.loader import prepare_data
    from videogen.inference.exports import resolve_export
    from videogen.token_cache.writer import TokenCacheConfig, build_token_cache

    tokenizer_dir = resolve_export("tokenizer", args.tokenizer)
    prepare_data(DataConfig(train=args.data, val=None))  # makes the sample data when it is the default
    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    config = TokenCacheConfig(
        tasks=tasks,
        num_frames=args.num_frames,
        resolution=args.resolution,
        frame_stride=args.frame_stride,
        target_fps=args.target_fps,
        backend=args.backend,
        too_short=args.too_short,
        split=args.split,
        windows_per_clip=args.windows_per_clip,
        flip=args.flip,
        cond_frames=args.cond_frames,
        interp_cond_frames=args.interp_cond_frames,
        shard_size=args.shard_size,
        batch_size=args.batch_size,
        num_workers=args.workers,
    )
    summary = build_token_cache(tokenizer_dir, args.data, args.out, config, args.device, args.overwrite)
    print(
        f"token cache {summary.out}: {summary.num_items} items in {summary.num_shards} shards "
        f"({summary.shards_written} written, {summary.shards_skipped} already complete); "
        f"{summary.num_failed} clip windows failed to decode"
    )
    return 0
