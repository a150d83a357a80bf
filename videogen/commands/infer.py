"""``run.sh predict | interpolate | inpaint | outpaint | generate``: the pipeline's uses on files.

    ./run.sh predict --input clip.mp4 --cond-frames 5 --num-frames 33 --out pred.mp4
    ./run.sh interpolate --first a.png --last b.png --out mid.mp4
    ./run.sh inpaint --input clip.mp4 --box y0,x0,y1,x1 --out fixed.mp4
    ./run.sh outpaint --input clip.mp4 --mode vertical --out wide.mp4
    ./run.sh generate --class 3 --out image.png        (--frames 17 --out clip.mp4)

Models: ``--tokenizer`` / ``--transformer`` export folders, by default the exports of the default
training runs (``runs/tokenizer-default/export``, ``runs/transformer-default/export``). The window,
the default condition frames and the sampling defaults come from the transformer export; a use it
was not trained on, or a tokenizer other than its own, is one line and exit code 2. The output
format follows the suffix (.mp4, .gif, .png/.jpg for one frame); the file is written atomically.
``--side-by-side`` also writes ``<out stem>.sbs<suffix>``: what the model was given (gray where
unknown) | the output | the truth when the input has it.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from videogen.errors import UserError
from videogen.inference.exports import resolve_export
from videogen.inference.output import (
    IMAGE_SUFFIXES,
    check_output_path,
    check_writable,
    sibling_path,
    write_output,
)
from videogen.inference.sampling import SamplingOptions
from videogen.video_io import probe_video, read_image, read_video

INPUT_IMAGE_SUFFIXES = IMAGE_SUFFIXES + (".bmp", ".webp")


def _echo(message: str) -> None:
    print(message, file=sys.stderr)


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    if command in ("predict", "inpaint", "outpaint"):
        parser.add_argument("--input", required=True, help="input video (.mp4, .gif, ...) or image")
    if command == "predict":
        parser.add_argument(
            "--cond-frames",
            type=int,
            default=None,
            help="condition frames taken from the input (default: what the transformer was trained with)",
        )
        parser.add_argument(
            "--num-frames",
            type=int,
            default=None,
            help="frames to output, condition included (default: one window)",
        )
    if command == "interpolate":
        parser.add_argument("--first", required=True, help="first frame (an image; or a video's last frame)")
        parser.add_argument("--last", required=True, help="last frame (an image; or a video's first frame)")
        parser.add_argument(
            "--num-frames", type=int, default=None, help="frames to output, both ends included (3..window)"
        )
    if command == "inpaint":
        parser.add_argument(
            "--box",
            required=True,
            help="region to regenerate: y0,x0,y1,x1 in input pixels (y1, x1 exclusive)",
        )
    if command == "outpaint":
        parser.add_argument(
            "--mode",
            default="central",
            help="known region: central (H/4..3H/4 x W/4..3W/4), vertical (W/4..3W/4 columns), "
            "horizontal (H/4..3H/4 rows), dynamic (keep placement only)",
        )
        parser.add_argument(
            "--placement",
            default="extend",
            help="extend: the input fills the region and the model draws around it (default); "
            "keep: the input fills the frame and only its region is kept",
        )
    if command == "generate":
        parser.add_argument("--frames", type=int, default=1, help="frames to generate (1 = an image)")
    parser.add_argument("--class", dest="class_id", type=int, default=None, help="class id (default: none)")
    parser.add_argument("--out", required=True, help="output file: .mp4, .gif, or .png/.jpg for one frame")
    parser.add_argument(
        "--tokenizer", default=None, help="tokenizer export (default runs/tokenizer-default/export)"
    )
    parser.add_argument(
        "--transformer", default=None, help="transformer export (default runs/transformer-default/export)"
    )
    parser.add_argument(
        "--side-by-side", action="store_true", help="also write <out>.sbs: input | output | truth"
    )
    add_sampling_arguments(parser)
    if command != "generate":
        parser.add_argument(
            "--no-paste", action="store_true", help="output the model's reconstruction of the known part too"
        )
        parser.add_argument("--resize", default="crop", help="crop (scale + center crop, default) | stretch")
    parser.add_argument(
        "--model-fps", type=float, default=None, help="the model's frame rate, if not recorded"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """``--seed``, ``--steps``, ...: each left out takes the transformer export's sampling default."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="decoding steps per window (default: the export's; the default runs: 1 for the tasks given "
        "part of the video, 12 for generation)",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="token sampling temperature (0 = argmax; default: the export's, 0 / 1 as for --steps)",
    )
    parser.add_argument(
        "--choice-temperature", type=float, default=None, help="noise on which tokens to keep"
    )
    parser.add_argument("--top-k", type=int, default=None, help="sample among the k most likely codes")
    parser.add_argument("--schedule", default=None, help="mask schedule: cosine | linear | exp")
    parser.add_argument(
        "--guidance", type=float, default=None, help="classifier-free guidance scale (0 = off)"
    )
    parser.add_argument("--guidance-ramp", default=None, help="constant | linear")
    parser.add_argument(
        "--keep-condition",
        default=None,
        help="regenerate (MAGVIT: condition tokens are re-predicted) | fixed (kept from the start)",
    )


def sampling_arguments(args: argparse.Namespace) -> dict:
    """The sampling options given on the command line (the rest are the export's defaults)."""
    given = {
        "seed": args.seed,
        "steps": args.steps,
        "temperature": args.temperature,
        "choice_temperature": args.choice_temperature,
        "top_k": getattr(args, "top_k", None),
        "schedule": getattr(args, "schedule", None),
        "guidance_scale": args.guidance,
        "guidance_ramp": getattr(args, "guidance_ramp", None),
        "keep_condition": getattr(args, "keep_condition", None),
    }
    return {name: value for name, value in given.items() if value is not None}


def read_input(path: str, max_frames: int | None = None) -> tuple[np.ndarray, float | None]:
    """uint8 frames ``(T, H, W, 3)`` of a video or image file and its frame rate (None for images).

    ``max_frames``: read at most the first that many frames.
    """
    if path.lower().endswith(INPUT_IMAGE_SUFFIXES):
        return read_image(path)[None], None
    info = probe_video(path, verify=False)
    indices = None if max_frames is None or max_frames >= info.num_frames else np.arange(max_frames)
    return read_video(path, indices), (info.fps or None)


def parse_box(text: str) -> tuple[int, int, int, int]:
    """``"y0,x0,y1,x1"`` -> four ints."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise UserError(f"--box {text!r} must be four integers y0,x0,y1,x1 (pixels, y1 and x1 exclusive)")
    return values


def load_pipeline(args: argparse.Namespace):
    from videogen.pipeline import VideoGenPipeline

    tokenizer_dir = resolve_export("tokenizer", args.tokenizer)
    transformer_dir = resolve_export("transformer", args.transformer)
    pipe = VideoGenPipeline.from_pretrained(
        tokenizer_dir,
        transformer_dir,
        device=args.device,
        fps=args.model_fps,
        resize=getattr(args, "resize", "crop"),
        log=_echo,
    )
    pipe.engine.progress = True
    return pipe


def decoded_task(args: argparse.Namespace) -> str:
    """The task (of ``transformer.TASKS``) the command decodes its first window with."""
    from videogen.inference.engine import check_outpaint_mode

    if args.command == "predict":
        return "frame_prediction"
    if args.command == "interpolate":
        return "interpolation"
    if args.command == "inpaint":
        return "inpaint"
    if args.command == "outpaint":
        return f"outpaint_{check_outpaint_mode(args.mode)}"
    if args.frames == 1:
        return "image_generation"
    return "unconditional" if args.class_id is None else "class_generation"


def check_trained(pipe, args: argparse.Namespace, sampling: dict) -> None:
    """A use the transformer was not trained on is one line now, before any input is read (a clip
    generated longer than a window also needs frame prediction, which continues it)."""
    guidance = pipe.sampling_options(**sampling).guidance_scale > 0
    pipe.trained.require(decoded_task(args), args.class_id is not None, guidance=guidance)
    if args.command == "generate" and args.frames > pipe.num_frames:
        pipe.engine.check_continuation(args.class_id is not None, guidance)


def _check_inputs(args: argparse.Namespace) -> None:
    """Fail on a missing, unreadable or undecodable input file before loading any model."""
    for name in ("input", "first", "last"):
        path = getattr(args, name, None)
        if path is not None and not Path(path).is_file():
            raise UserError(f"--{name} '{path}' does not exist (or is not a file)")
        if path is not None:
            try:
                open(path, "rb").close()
            except OSError as e:
                raise UserError(
                    f"--{name} '{path}' cannot be read ({e.strerror}); check its permissions"
                ) from None
            if not path.lower().endswith(INPUT_IMAGE_SUFFIXES):
                probe_video(path, verify=False)  # a damaged video is one line now, not after the models load


def check_counts(args: argparse.Namespace) -> None:
    """Frame counts and the frame rate must make sense before any model is loaded (``--num-frames -3``
    would otherwise surface as a decoder's complaint about an empty index list, ``--model-fps 0`` be
    taken as "unknown")."""
    counts = {
        "num_frames": "frames to output",
        "cond_frames": "condition frames",
        "frames": "frames to generate",
    }
    for flag, what in counts.items():
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            raise UserError(f"--{flag.replace('_', '-')} {value}: the number of {what} must be >= 1")
    fps = getattr(args, "model_fps", None)
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise UserError(f"--model-fps {fps:g} must be > 0 (frames per second); leave it out if unknown")


def _expected_frames(args: argparse.Namespace, window: int) -> int | None:
    if args.command == "generate":
        return args.frames
    if args.command in ("predict", "interpolate"):
        return args.num_frames if args.num_frames is not None else window
    return None


def run(args: argparse.Namespace) -> int:
    command = args.command
    out = check_writable(check_output_path(args.out, args.frames if command == "generate" else None))
    check_counts(args)
    SamplingOptions.from_kwargs(sampling_arguments(args))  # bad options fail before the models load
    _check_inputs(args)
    box = parse_box(args.box) if command == "inpaint" else None
    pipe = load_pipeline(args)
    sampling = sampling_arguments(args)
    check_trained(pipe, args, sampling)
    _echo(f"models: {pipe.sources[0]} + {pipe.sources[1]}; window {pipe.geometry.describe()}")
    check_output_path(out, _expected_frames(args, pipe.num_frames))
    paste = not getattr(args, "no_paste", False)
    common = {"class_id": args.class_id, "output": "result", **sampling}
    if command == "predict":
        cond = args.cond_frames if args.cond_frames is not None else pipe.engine.default_cond_frames
        num_frames = args.num_frames if args.num_frames is not None else pipe.num_frames
        frames, fps = read_input(args.input, _frames_to_read(args.input, num_frames, pipe.fps))
        result = pipe.predict(frames, cond, num_frames, fps=fps, paste_condition=paste, **common)
    elif command == "interpolate":
        first, _ = read_input(args.first)
        last, _ = read_input(args.last)
        result = pipe.interpolate(first, last, args.num_frames, paste_condition=paste, **common)
    elif command == "inpaint":
        frames, fps = read_input(args.input)
        result = pipe.inpaint(frames, box, fps=fps, paste_condition=paste, **common)
    elif command == "outpaint":
        frames, fps = read_input(args.input)
        result = pipe.outpaint(
            frames, args.mode, placement=args.placement, fps=fps, paste_condition=paste, **common
        )
    else:
        result = pipe.generate(args.class_id, args.frames, output="result", **sampling)
    write_output(out, result.frames, result.fps)
    num, height, width = result.frames.shape[:3]
    print(f"wrote {out} ({num} frame{'s' * (num != 1)}, {height}x{width}, {result.fps:g} fps)")
    if args.side_by_side:
        if result.condition is None and result.truth is None:
            _echo("--side-by-side: nothing to compare for generate (no input); skipped")
        else:
            sbs = write_output(sibling_path(out, "sbs"), result.side_by_side(), result.fps)
            print(f"wrote {sbs} (given | output{' | truth' if result.truth is not None else ''})")
    return 0


def _frames_to_read(path: str, num_frames: int, model_fps: float | None) -> int | None:
    """Source frames that cover ``num_frames`` output frames (the truth of a prediction), or None = all."""
    if path.lower().endswith(INPUT_IMAGE_SUFFIXES):
        return None
    fps = probe_video(path, verify=False).fps
    ratio = fps / model_fps if fps and model_fps else 1.0
    return math.ceil(num_frames * ratio) + 1
