"""``GenerationResult``: what a pipeline call made, with what the model was given and the truth when known."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from videogen.video_io import side_by_side

UNKNOWN_GRAY = 128
"""uint8 value shown where the model had no condition pixels (0.0 in [-1, 1])."""


@dataclass(frozen=True)
class GenerationResult:
    """frames: uint8 ``(T, H, W, 3)``, the output. condition: uint8 ``(T, H, W, 3)`` or None, the condition
    pixels the model was given, gray (128) where it had none. truth: uint8 real frames matching
    ``frames`` where known (may be shorter), else None. fps: frame rate of ``frames``."""

    frames: np.ndarray
    condition: np.ndarray | None
    truth: np.ndarray | None
    fps: float

    def side_by_side(self) -> np.ndarray:
        """uint8 ``(T, H, W', 3)``: condition | output | truth (the columns that exist), left to right.

        Columns shorter than the output are padded with black frames.
        """
        columns = [c for c in (self.condition, self.frames, self.truth) if c is not None]
        return side_by_side([pad_frames(c, len(self.frames)) for c in columns])


def pad_frames(frames: np.ndarray, num_frames: int, value: int = 0) -> np.ndarray:
    """uint8 ``(T, H, W, 3)`` -> ``(max(T, num_frames), H, W, 3)``, extra frames filled with ``value``."""
    if len(frames) >= num_frames:
        return frames
    extra = np.full((num_frames - len(frames), *frames.shape[1:]), value, dtype=np.uint8)
    return np.concatenate([frames, extra])


def masked_condition(frames: np.ndarray, known: np.ndarray) -> np.ndarray:
    """uint8 ``(T, H, W, 3)`` frames shown only where ``known`` ``(T, H, W)`` bool, gray elsewhere."""
    return np.where(known[..., None], frames, np.uint8(UNKNOWN_GRAY)).astype(np.uint8)
