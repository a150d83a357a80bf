"""``run.sh eval tokenizer | transformer``: metrics on held-out clips, printed as a table and written as JSON.

    ./run.sh eval transformer --data data/sample/val.jsonl [--tasks FP,IG --limit 64 --i3d i3d.pt --out m.json]
    ./run.sh eval tokenizer --data data/sample/val.jsonl [--num-frames 17 --resolution 64 --i3d i3d.pt]

``eval transformer``: every task the export was trained on, one row each, next to its non-learned
baseline and the tokenizer's reconstruction (``evaluation.evaluate_transformer``); class-conditional
generation judged by a small classifier trained on the labelled ``--classifier-data`` (cached in
``classifier/`` beside the JSON). ``eval tokenizer``: reconstruction PSNR / SSIM, codebook usage, rFVD
with ``--i3d``. The JSON goes to ``--out`` (default: ``eval/`` next to the evaluated export, e.g.
``runs/transformer-default/eval/transformer.json``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from videogen.atomic import write_json
from videogen.commands.infer import add_sampling_arguments, check_counts, sampling_arguments
from videogen.data.config import DEFAULT_SAMPLE_DIR
from videogen.errors import UserError
from videogen.inference.exports import resolve_export
from videogen.inference.output import check_writable

DEFAULT_DATA = f"{DEFAULT_SAMPLE_DIR}/val.jsonl"
DEFAULT_CLASSIFIER_DATA = f"{DEFAULT_SAMPLE_DIR}/train.jsonl"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", default=DEFAULT_DATA, help=f"held-out clips: a manifest or folder ({DEFAULT_DATA})"
    )
    parser.add_argument(
        "--tokenizer", default=None, help="tokenizer export (default runs/tokenizer-default/export)"
    )
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N clips only")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--i3d", default=None, help="local I3D TorchScript file (StyleGAN-V's i3d_torchscript.pt) for FVD"
    )
    parser.add_argument("--out", default=None, help="metrics JSON (default: eval/ next to the export)")
    parser.add_argument("--backend", default="decord", help="video decoder: decord | pyav")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    targets = parser.add_subparsers(dest="target", required=True, metavar="{tokenizer,transformer}")
    tok = targets.add_parser("tokenizer", help="reconstruction PSNR / SSIM, codebook usage, rFVD")
    _common(tok)
    tok.add_argument(
        "--num-frames", type=int, default=None, help="frames per clip (default: the run's, else 17)"
    )
    tok.add_argument("--resolution", type=int, default=None, help="square size (default: the run's, else 64)")
    tok.add_argument(
        "--fps", type=float, default=None, help="resample clips to this rate (default: the run's)"
    )
    tr = targets.add_parser(
        "transformer", help="every trained task vs its baseline and the tokenizer ceiling, one row each"
    )
    _common(tr)
    tr.add_argument(
        "--transformer", default=None, help="transformer export (default runs/transformer-default/export)"
    )
    tr.add_argument(
        "--tasks",
        default=None,
        help="rows to score, comma-separated names or codes (FP,FI,IPC,OPC,IG,CG; default: every trained one)",
    )
    tr.add_argument(
        "--cond-frames",
        type=int,
        default=None,
        help="frame prediction condition frames (default: as trained)",
    )
    tr.add_argument("--model-fps", type=float, default=None, help="the model's frame rate, if not recorded")
    tr.add_argument(
        "--classifier-data",
        default=DEFAULT_CLASSIFIER_DATA,
        help=f"labelled clips the class classifier trains on ({DEFAULT_CLASSIFIER_DATA})",
    )
    tr.add_argument("--samples-per-class", type=int, default=10, help="generated images per class")
    tr.add_argument("--clips-per-class", type=int, default=4, help="generated clips per class")
    add_sampling_arguments(tr)


def _default_out(export_dir: Path, name: str) -> Path:
    return export_dir.resolve().parent / "eval" / name


def run_tokenizer(args: argparse.Namespace) -> int:
    from videogen.devices import pick_device
    from videogen.evaluation.evaluate_tokenizer import evaluate_tokenizer, format_tokenizer_table
    from videogen.inference.geometry import read_run_data_config
    from videogen.tokenizer import VideoTokenizer

    export = resolve_export("tokenizer", args.tokenizer)
    out = check_writable(args.out or _default_out(export, "tokenizer.json"))  # before the evaluation
    run_data = read_run_data_config(export)
    num_frames = args.num_frames or run_data.get("num_frames") or 17
    resolution = args.resolution or run_data.get("resolution") or 64
    fps = args.fps or run_data.get("target_fps")
    tokenizer = VideoTokenizer.from_pretrained(export, map_location=pick_device(args.device))
    result = evaluate_tokenizer(
        tokenizer,
        args.data,
        num_frames=num_frames,
        resolution=resolution,
        fps=fps,
        limit=args.limit,
        batch_size=args.batch_size,
        i3d=args.i3d,
        backend=args.backend,
    )
    result["tokenizer"].update(export=str(export), data=str(args.data))
    out = write_json(out, result, indent=2)
    print(format_tokenizer_table(result))
    print(f"wrote {out}")
    return 0


def run_transformer(args: argparse.Namespace) -> int:
    from videogen.evaluation.eval_data import check_manifest_path
    from videogen.evaluation.evaluate_generation import CLASS_ROWS, frame_classifier
    from videogen.evaluation.evaluate_transformer import (
        evaluate_transformer,
        format_transformer_table,
        plan_rows,
    )
    from videogen.inference.sampling import SamplingOptions
    from videogen.pipeline import VideoGenPipeline

    for flag in ("samples_per_class", "clips_per_class", "batch_size"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} {getattr(args, flag)} must be >= 1")
    check_counts(args)
    SamplingOptions.from_kwargs(sampling_arguments(args))  # bad options fail before the models load
    check_manifest_path(args.data)
    tokenizer_dir = resolve_export("tokenizer", args.tokenizer)
    transformer_dir = resolve_export("transformer", args.transformer)
    out = check_writable(args.out or _default_out(transformer_dir, "transformer.json"))
    pipe = VideoGenPipeline.from_pretrained(
        tokenizer_dir,
        transformer_dir,
        device=args.device,
        fps=args.model_fps,
        log=lambda m: print(m, file=sys.stderr),
    )
    asked = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    rows, _ = plan_rows(pipe.engine, asked)  # an untrained task asked for fails here, before any work
    classifier = record = None
    if any(row in CLASS_ROWS for row in rows) and args.classifier_data:
        classifier, record = frame_classifier(
            pipe.engine, args.classifier_data, args.data, out.parent / "classifier", backend=args.backend
        )
    result = evaluate_transformer(
        pipe.engine,
        args.data,
        rows=rows,
        num_cond_frames=args.cond_frames,
        limit=args.limit,
        batch_size=args.batch_size,
        options=pipe.sampling_options(**sampling_arguments(args)),
        conditioned_options=pipe.sampling_options(conditioned=True, **sampling_arguments(args)),
        classifier=classifier,
        classifier_record=record,
        samples_per_class=args.samples_per_class,
        clips_per_class=args.clips_per_class,
        i3d=args.i3d,
        backend=args.backend,
    )
    result["transformer_eval"].update(
        tokenizer=str(tokenizer_dir), transformer=str(transformer_dir), data=str(args.data)
    )
    out = write_json(out, result, indent=2)
    print(format_transformer_table(result))
    print(f"wrote {out}")
    return 0


def run(args: argparse.Namespace) -> int:
    return run_tokenizer(args) if args.target == "tokenizer" else run_transformer(args)
