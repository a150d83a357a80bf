"""Moving digits: two colored digits of one class bouncing inside a dark, tinted frame (a small video
task with labels).

Digits are drawn with Pillow's bundled font (``ImageFont.load_default(size=...)``), so nothing is
downloaded. Each digit moves at a constant random velocity and reflects off the walls. Both digits of
a clip are its class (0-9), in two clearly different colours, so the label describes every frame (a
classifier of single frames can tell it, and a generated frame of class k must show k's). Everything
is a function of the ``rng`` passed in, so a seed fixes the frames exactly.
"""

from __future__ import annotations

import colorsys
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

NUM_CLASSES = 10


@lru_cache(maxsize=8)
def digit_glyphs(size: int) -> tuple[np.ndarray, ...]:
    """Ten float32 alpha masks in [0, 1] (one per digit, cropped to the ink) for a ``size`` x ``size`` frame.

    Glyphs are about 0.4 x ``size`` tall (28 px in a 64 px frame, as in Moving MNIST).
    """
    font = ImageFont.load_default(size=max(8, round(0.6 * size)))
    stroke = max(1, size // 64)
    masks = []
    for digit in range(NUM_CLASSES):
        text = str(digit)
        left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
        image = Image.new("L", (right - left + 2, bottom - top + 2), 0)
        ImageDraw.Draw(image).text(
            (1 - left, 1 - top), text, fill=255, font=font, stroke_width=stroke, stroke_fill=255
        )
        masks.append(np.asarray(image, dtype=np.float32) / 255.0)
    return tuple(masks)


def _bright_color(rng: np.random.Generator, hue: float) -> np.ndarray:
    saturation, value = rng.uniform(0.5, 1.0), rng.uniform(0.85, 1.0)
    return np.array(colorsys.hsv_to_rgb(hue, saturation, value), dtype=np.float32) * 255


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """float32 ``(size, size, 3)``: a dark color with a gentle diagonal gradient to a second dark color."""
    top = rng.uniform(0, 50, 3).astype(np.float32)
    bottom = rng.uniform(0, 50, 3).astype(np.float32)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / max(1, size - 1)
    mix = ((x + y) / 2)[..., None]  # (size, size, 1)
    return top * (1 - mix) + bottom * mix


def _trajectory(rng: np.random.Generator, num_frames: int, room: tuple[int, int], size: int) -> np.ndarray:
    """int ``(num_frames, 2)`` top-left (y, x) positions bouncing inside ``[0, room]``."""
    position = rng.uniform(0, 1, 2) * np.array(room, dtype=np.float64)
    speed = rng.uniform(0.75, 2.0) * size / 64  # pixels per frame
    angle = rng.uniform(0, 2 * np.pi)
    velocity = speed * np.array([np.sin(angle), np.cos(angle)])
    limit = np.array(room, dtype=np.float64)
    out = np.empty((num_frames, 2), dtype=np.int64)
    for t in range(num_frames):
        out[t] = np.round(position)
        position = position + velocity
        for axis in range(2):  # reflect off the walls
            if position[axis] < 0:
                position[axis], velocity[axis] = -position[axis], -velocity[axis]
            elif position[axis] > limit[axis]:
                position[axis], velocity[axis] = 2 * limit[axis] - position[axis], -velocity[axis]
            position[axis] = min(max(position[axis], 0.0), limit[axis])
    return out


def render_moving_digits(
    rng: np.random.Generator, num_frames: int = 33, size: int = 64, label: int | None = None
) -> tuple[np.ndarray, int]:
    """One clip: uint8 ``(num_frames, size, size, 3)`` and its label (the class of both digits, 0-9).

    ``label`` picks the class (random if None).
    """
    glyphs = digit_glyphs(size)
    label = int(rng.integers(NUM_CLASSES)) if label is None else int(label)
    digits = [label, label]
    hues = [rng.random()]
    hues.append((hues[0] + rng.uniform(0.25, 0.75)) % 1.0)  # two clearly different colors
    frames = np.repeat(_background(rng, size)[None], num_frames, axis=0)  # (T, S, S, 3)
    for digit, hue in zip(digits, hues):
        mask = glyphs[digit]
        height, width = mask.shape
        color = _bright_color(rng, hue)
        path = _trajectory(rng, num_frames, (size - height, size - width), size)
        for t, (top, left) in enumerate(path):
            region = frames[t, top : top + height, left : left + width]
            alpha = mask[..., None]  # (h, w, 1)
            region *= 1 - alpha
            region += alpha * color
    return np.clip(np.round(frames), 0, 255).astype(np.uint8), label
