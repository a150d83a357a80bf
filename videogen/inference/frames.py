"""Fit user frames to the model: spatial resize (+ center crop), frame-rate resampling, box mapping.

The model works on clips of a fixed size ``height x width`` (the transformer's latent grid times the
tokenizer's spatial factor). A frame of another size is fitted in one of two ways (``resize``):

- ``"crop"`` (default): scale so the frame covers ``height x width`` with its aspect ratio kept (for a
  square model: the short side becomes the model's side), then cut the centered ``height x width``
  window. Nothing is distorted; the borders of the long side are dropped.
- ``"stretch"``: scale each axis to the model's size; everything is kept, the aspect ratio is not.

Resizing is antialiased bilinear on uint8 frames, as in the data pipeline, so the model sees what it
was trained on. Frames stay uint8 ``(T, H, W, 3)`` here; the pipeline converts them to ``[-1, 1]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from videogen.data.clip_index import window_indices
from videogen.errors import UserError

RESIZE_MODES = ("crop", "stretch")
Box = tuple[int, int, int, int]  # (y0, x0, y1, x1) pixels, half-open


@dataclass(frozen=True)
class Fit:
    """How a ``source`` frame ``(H, W)`` becomes a ``size`` frame: scale to ``resized``, then crop at ``(top, left)``."""

    source: tuple[int, int]
    size: tuple[int, int]
    resized: tuple[int, int]
    top: int
    left: int
    mode: str

    @property
    def identity(self) -> bool:
        return self.source == self.size

    def describe(self) -> str:
        """``"320x240 -> 64x64 (scaled to 85x64, center crop)"`` (height x width order: ``HxW``)."""
        src = f"{self.source[0]}x{self.source[1]}"
        out = f"{self.size[0]}x{self.size[1]}"
        if self.identity:
            return out
        if self.mode == "stretch":
            return f"{src} -> {out} (stretched)"
        if self.resized == self.size:
            return f"{src} -> {out} (scaled)"
        return f"{src} -> {out} (scaled to {self.resized[0]}x{self.resized[1]}, center crop)"

    def map_box(self, box: Box) -> Box:
        """A box in source pixels -> the box in model pixels (grown outward to whole pixels, clipped).

        Raises :class:`UserError` when the box lies entirely in the part that the crop drops.
        """
        y0, x0, y1, x1 = box
        sy, sx = self.resized[0] / self.source[0], self.resized[1] / self.source[1]
        height, width = self.size
        my0 = max(0, math.floor(y0 * sy - self.top + 1e-6))
        mx0 = max(0, math.floor(x0 * sx - self.left + 1e-6))
        my1 = min(height, math.ceil(y1 * sy - self.top - 1e-6))
        mx1 = min(width, math.ceil(x1 * sx - self.left - 1e-6))
        if my0 >= my1 or mx0 >= mx1:
            raise UserError(
                f"box {tuple(box)} lies outside the centered part of the {self.source[0]}x{self.source[1]} "
                f"frame that the model sees ({self.describe()}); move the box or use resize='stretch'"
            )
        return my0, mx0, my1, mx1


def plan_fit(source: tuple[int, int], size: tuple[int, int], mode: str = "crop") -> Fit:
    """The :class:`Fit` of a ``source`` (H, W) frame onto ``size`` (H, W) with ``mode`` ("crop" | "stretch")."""
    if mode not in RESIZE_MODES:
        raise UserError(f"resize mode {mode!r} is unknown; use {' or '.join(RESIZE_MODES)}")
    (src_h, src_w), (height, width) = source, size
    if min(src_h, src_w) < 1:
        raise UserError(f"frames of size {src_h}x{src_w} are empty")
    if mode == "stretch":
        return Fit(source, size, size, 0, 0, mode)
    scale = max(height / src_h, width / src_w)
    resized = (max(height, round(src_h * scale)), max(width, round(src_w * scale)))
    return Fit(source, size, resized, (resized[0] - height) // 2, (resized[1] - width) // 2, mode)


def apply_fit(frames: np.ndarray, fit: Fit) -> np.ndarray:
    """uint8 ``(T, H, W, 3)`` -> uint8 ``(T, height, width, 3)`` as planned by ``fit``."""
    check_frames(frames, "frames")
    if fit.identity:
        return np.ascontiguousarray(frames)
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # (T, H, W, 3) -> (T, 3, H, W)
    if fit.resized != fit.source:
        x = x.contiguous(memory_format=torch.channels_last)  # the fast uint8 path of interpolate
        x = F.interpolate(x, size=fit.resized, mode="bilinear", antialias=True, align_corners=False)
    x = x[:, :, fit.top : fit.top + fit.size[0], fit.left : fit.left + fit.size[1]]
    return x.permute(0, 2, 3, 1).contiguous().numpy()  # (T, 3, h, w) -> (T, h, w, 3)


def resample_indices(num_frames: int, source_fps: float | None, target_fps: float | None) -> np.ndarray:
    """Source frame indices that play ``num_frames`` frames at ``source_fps`` as ``target_fps``.

    Frame ``i`` of the result is source frame ``floor(i * source_fps / target_fps)``; all frames when
    either rate is unknown (None or 0) or they are equal.
    """
    if not source_fps or not target_fps or abs(source_fps - target_fps) < 1e-6 * target_fps:
        return np.arange(num_frames)
    step = source_fps / target_fps
    count = int(math.floor((num_frames - 1) / step + 1e-6)) + 1
    return window_indices(0, count, step)


def check_frames(frames: np.ndarray, name: str) -> np.ndarray:
    """Raise :class:`UserError` unless ``frames`` is uint8 ``(T, H, W, 3)`` with ``T >= 1``."""
    if (
        not isinstance(frames, np.ndarray)
        or frames.dtype != np.uint8
        or frames.ndim != 4
        or frames.shape[-1] != 3
    ):
        shape = getattr(frames, "shape", None)
        kind = getattr(frames, "dtype", type(frames).__name__)
        raise UserError(f"{name} must be uint8 frames (T, H, W, 3), got {kind} {shape}")
    if len(frames) == 0:
        raise UserError(f"{name} holds no frames")
    return frames


def as_frames(image: np.ndarray, name: str) -> np.ndarray:
    """An image ``(H, W, 3)`` or frames ``(T, H, W, 3)`` (uint8) -> frames ``(T, H, W, 3)``."""
    if isinstance(image, np.ndarray) and image.ndim == 3:
        image = image[None]
    return check_frames(image, name)
