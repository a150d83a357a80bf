"""Which source frames make a clip: pure index math, no decoding.

A clip is ``num_frames`` output frames taken from a video every ``step`` source frames, where
``step`` is ``frame_stride`` or, with a target rate, ``source_fps / target_fps`` (fractional:
frame ``i`` of the clip is source frame ``start + floor(i * step)``). Any ``num_frames`` >= 1 (the
tokenizer's frame rule is checked where the tokenizer is known: :mod:`videogen.frame_rule`). Every index returned is below the
verified frame count of the video: a window that does not fit is ``None`` (skip) or wraps around
(loop).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

Position = Literal["random", "center", "start"]
_EPS = 1e-6  # so that e.g. 3 * (10/3) counts as 10, not 9.999


def source_step(fps: float, frame_stride: int = 1, target_fps: float | None = None) -> float:
    """Source frames per clip frame: ``fps / target_fps`` when both are known, else ``frame_stride``.

    A target rate above the source rate gives a step below 1 (frames repeat).
    """
    if target_fps is not None and fps > 0:
        return fps / target_fps
    return float(frame_stride)


def window_span(num_frames: int, step: float) -> int:
    """Source frames a window covers from its first to its last frame (inclusive)."""
    return int(math.floor((num_frames - 1) * step + _EPS)) + 1


def window_indices(start: int, num_frames: int, step: float) -> np.ndarray:
    """int64 ``(num_frames,)`` source indices ``start + floor(i * step)``."""
    return start + np.floor(np.arange(num_frames) * step + _EPS).astype(np.int64)


def choose_window(
    num_available: int,
    num_frames: int,
    step: float,
    position: Position = "random",
    rng: np.random.Generator | None = None,
    too_short: Literal["skip", "loop"] = "skip",
) -> np.ndarray | None:
    """Source indices of one clip from a video with ``num_available`` (verified) frames.

    ``position``: ``"random"`` start (needs ``rng``), ``"center"`` or ``"start"``. A video shorter
    than the window gives None with ``too_short="skip"``; with ``"loop"`` the video repeats from
    its first frame. All indices are in ``[0, num_available)``.
    """
    if num_available <= 0:
        return None
    span = window_span(num_frames, step)
    if span > num_available:
        if too_short == "skip":
            return None
        return window_indices(0, num_frames, step) % num_available
    max_start = num_available - span
    if position == "random":
        if rng is None:
            raise ValueError("position='random' needs an rng")
        start = int(rng.integers(0, max_start + 1))
    elif position == "center":
        start = max_start // 2
    else:
        start = 0
    return window_indices(start, num_frames, step)


def fits(
    num_available: np.ndarray, fps: np.ndarray, num_frames: int, frame_stride: int, target_fps: float | None
):
    """bool per video (vectorised): does a window fit into its verified frame count?"""
    num_available = np.asarray(num_available)
    fps = np.asarray(fps, dtype=np.float64)
    if target_fps is None:
        steps = np.full(num_available.shape, float(frame_stride))
    else:
        steps = np.where(fps > 0, fps / target_fps, float(frame_stride))
    spans = np.floor((num_frames - 1) * steps + _EPS).astype(np.int64) + 1
    return spans <= num_available
