"""``run.sh eval tokenizer | transformer``: metrics on held-out clips, printed as a table and written as JSON.

    ./run.sh eval transformer --data data/sample/val.jsonl [--cond-frames 5 --limit 64 --i3d i3d.pt --out m.json]
    ./run.sh eval tokenizer --data data/sample/val.jsonl [--num-frames 17 --resolution 64 --i3d i3d.pt]

``eval transformer``: frame prediction (PSNR / SSIM of the predicted frames, next to the copy-last-frame
baseline and the tokenizer's reconstruction; FVD with ``--i3d``). ``eval tokenizer``: reconstruction
PSNR / SSIM, codebook usage, rFVD with ``--i3d``. The JSON goes to ``--out`` (default: ``eval/`` next to
the evaluated export, e.g. ``runs/transformer-default/eval/frame_prediction.json``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from videogen.data.config import DEFAULT_SAMPLE_DIR
from videogen.inference.exports import resolve_export
from videogen.inference.output import check_writable, write_json

DEFAULT_DATA = f"{DEFAULT_SAMPLE_DIR}/val.jsonl"


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
        "transformer", help="frame prediction vs copy-last-frame and the tokenizer ceiling"
    )
    _common(tr)
    tr.add_argument(
        "--transformer", default=None, help="transformer export (default runs/transformer-default/export)"
    )
    tr.add_argument(
        "--cond-frames", type=int, default=None, help="condition frames (default 1 + temporal factor)"
    )
    tr.add_argument("--model-fps", type=float, default=None, help="the model's frame rate, if not recorded")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--steps", type=int, default=12)
    tr.add_argument("--temperature", type=float, default=1.0)
    tr.add_argument("--choice-temperature", type=float, default=4.5)
    tr.add_argument("--guidance", type=float, default=0.0)


def _default_out(export_dir: Path, name: str) -> Path:
    return export_dir.resolve().parent / "eval" / name


def run_tokenizer(args: argparse.Namespace) -> int:
    from videogen.inference.engine import pick_device
    from videogen.inference.evaluate_tokenizer import evaluate_tokenizer, format_tokenizer_table
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
    out = write_json(out, result)
    print(format_tokenizer_table(result))
    print(f"wrote {out}")
    return 0


def run_transformer(args: argparse.Namespace) -> int:
    from videogen.inference.evaluate_prediction import evaluate_frame_prediction, format_prediction_table
    from videogen.inference.sampling import SamplingOptions
    from videogen.pipeline import VideoGenPipeline

    tokenizer_dir = resolve_export("tokenizer", args.tokenizer)
    transformer_dir = resolve_export("transformer", args.transformer)
    out = check_writable(args.out or _default_out(transformer_dir, "frame_prediction.json"))
    pipe = VideoGenPipeline.from_pretrained(
        tokenizer_dir,
        transformer_dir,
        device=args.device,
        fps=args.model_fps,
        log=lambda m: print(m, file=sys.stderr),
    )
    options = SamplingOptions(
        seed=args.seed,
        steps=args.steps,
        temperature=args.temperature,
        choice_temperature=args.choice_temperature,
        guidance_scale=args.guidance,
    )
    result = evaluate_frame_prediction(
        pipe.engine,
        args.data,
        num_cond_frames=args.cond_frames,
        limit=args.limit,
        batch_size=args.batch_size,
        options=options,
        i3d=args.i3d,
        backend=args.backend,
    )
    result["frame_prediction"].update(
        tokenizer=str(tokenizer_dir), transformer=str(transformer_dir), data=str(args.data)
    )
    out = write_json(out, result)
    print(format_prediction_table(result))
    print(f"wrote {out}")
    return 0


def run(args: argparse.Namespace) -> int:
    return run_tokenizer(args) if args.target == "tokenizer" else run_transformer(args)
