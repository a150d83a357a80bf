"""Clip transforms in plain torch: short-side resize, square crop, horizontal flip, uint8 -> [-1, 1].

Frames stay uint8 through resizing (the antialiased bilinear kernel of ``F.interpolate`` has a fast
uint8 path for channels-last ``(T, 3, H, W)``, about 5x the float one) and become float only at the
end, already at the output size.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

Crop = Literal["random", "center"]


def resize_short_side(frames: torch.Tensor, size: int) -> torch.Tensor:
    """``(T, 3, H, W)`` (uint8 or float) -> ``(T, 3, H', W')`` with ``min(H', W') == size``, aspect kept.

    Antialiased bilinear, so downscaling does not alias; returns the input when already that size.
    """
    height, width = frames.shape[-2:]
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    if (new_h, new_w) == (height, width):
        return frames
    if frames.dtype == torch.uint8:
        frames = frames.contiguous(memory_format=torch.channels_last)
    return F.interpolate(frames, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)


def crop_offsets(
    height: int, width: int, size: int, mode: Crop = "center", rng: np.random.Generator | None = None
) -> tuple[int, int]:
    """(top, left) of a ``size`` x ``size`` crop: uniform over valid offsets, or centered."""
    if height < size or width < size:
        raise ValueError(f"cannot crop {size}x{size} from {height}x{width}")
    if mode == "random":
        if rng is None:
            raise ValueError("a random crop needs an rng")
        return int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
    return (height - size) // 2, (width - size) // 2


def crop(frames: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    """``(..., H, W)`` -> ``(..., size, size)`` (a view)."""
    return frames[..., top : top + size, left : left + size]


def to_model_range(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``(T, 3, H, W)`` -> float32 ``(3, T, H, W)`` in ``[-1, 1]``."""
    video = frames.permute(1, 0, 2, 3)  # (T, 3, H, W) -> (3, T, H, W)
    return video.to(torch.float32, memory_format=torch.contiguous_format).div_(127.5).sub_(1.0)


class ClipTransform:
    """uint8 frames ``(T, H, W, 3)`` -> float32 video ``(3, T, crop, crop)`` in ``[-1, 1]``.

    The short side is resized to ``size``, then a ``crop_size`` square (default ``size``) is cut.
    Training: random crop and (if ``random_flip``) a horizontal flip with probability 1/2, both
    drawn from the ``rng`` passed per call. Evaluation: center crop, no flip.
    """

    def __init__(
        self, size: int, train: bool, random_flip: bool = True, crop_size: int | None = None
    ) -> None:
        self.size = size
        self.crop_size = crop_size or size
        if self.crop_size > size:
            raise ValueError(f"crop_size {self.crop_size} is larger than the resized short side {size}")
        self.train = train
        self.random_flip = random_flip and train

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
        if self.train and rng is None:
            raise ValueError("a training transform needs an rng")
        x = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, H, W, 3) -> (T, 3, H, W), channels-last view
        x = resize_short_side(x, self.size)
        top, left = crop_offsets(
            x.shape[-2], x.shape[-1], self.crop_size, "random" if self.train else "center", rng
        )
        x = crop(x, top, left, self.crop_size)
        if self.random_flip and rng.random() < 0.5:
            x = x.flip(-1)
        return to_model_range(x)
