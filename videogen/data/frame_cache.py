"""``FrameCache``: every file of a manifest decoded once, at the training resolution, kept in memory.

For datasets that fit in RAM (the sample data: ~0.3 GB at 64 px) this removes all decoding from the
training loop: on a 2-core machine a decoding worker otherwise takes a core from the model. Frames are
stored as uint8 ``(T, H', W', 3)`` with the short side resized to ``resolution`` (what the clip
transform would do first; its crop and flip still run per item). Decoding runs in threads (the
decoders release the GIL) with a progress bar. A file that fails keeps its error: asking for its
frames raises :class:`~videogen.video_io.VideoDecodeError`, so the dataset substitutes and counts it
exactly as when it decodes per item. A file a manifest lists more than once (to weight it up) is decoded
and kept once. Built in the main process before the DataLoader forks, the
arrays are shared with the workers.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from videogen.data.failures import DataError
from videogen.data.manifest import Manifest
from videogen.data.transforms import resize_short_side
from videogen.video_io import VideoDecodeError, read_image, read_video


def _resized(frames: np.ndarray, size: int) -> np.ndarray:
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, H, W, 3) -> (T, 3, H, W)
    x = resize_short_side(x, size)
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())  # (T, 3, H', W') -> (T, H', W', 3)


def _first_rows(manifest: Manifest) -> list[int]:
    """For each row, the first row with the same file (a manifest may list a file more than once)."""
    first: dict[str, int] = {}
    return [first.setdefault(str(path), row) for row, path in enumerate(manifest.paths)]


def estimated_bytes(manifest: Manifest, resolution: int, kind: Literal["video", "image"]) -> int:
    """Memory the cache of ``manifest`` would take (uint8, short side ``resolution``)."""
    total = 0
    for row in sorted(set(_first_rows(manifest))):  # a file listed twice is kept once
        height, width = int(manifest.heights[row]), int(manifest.widths[row])
        frames = 1 if kind == "image" else int(manifest.num_frames[row])
        if min(height, width) <= 0:  # size not in the manifest: count a square frame
            height = width = resolution
        scale = resolution / min(height, width)
        total += frames * max(resolution, round(height * scale)) * max(resolution, round(width * scale)) * 3
    return total


class FrameCache:
    """Decoded frames of every row of ``manifest``; ``frames(row, indices)`` -> uint8 ``(len, H', W', 3)``."""

    def __init__(
        self,
        manifest: Manifest,
        resolution: int,
        kind: Literal["video", "image"] = "video",
        backend: str = "decord",
        max_gb: float = 4.0,
        workers: int = 2,
    ) -> None:
        need = estimated_bytes(manifest, resolution, kind)
        if need > max_gb * 2**30:
            raise DataError(
                f"data.preload: '{manifest.source}' would take {need / 2**30:.1f} GB in memory at "
                f"{resolution} px, over data.preload_max_gb={max_gb}; raise that or set data.preload=false"
            )
        self.resolution = resolution
        # a file listed more than once (a manifest that weights some files up) is decoded and kept once
        self._first_row = _first_rows(manifest)
        unique = sorted(set(self._first_row))
        self._frames: list[np.ndarray | None] = [None] * len(manifest)
        self._errors: dict[int, str] = {}

        def decode(row: int) -> None:
            path = manifest.paths[row]
            try:
                frames = read_image(path)[None] if kind == "image" else read_video(path, backend=backend)
                self._frames[row] = _resized(frames, resolution)
            except VideoDecodeError as e:
                self._errors[row] = str(e)

        bar = tqdm(total=len(unique), desc=f"preload {manifest.source}", unit="file", dynamic_ncols=True)
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for _ in pool.map(decode, unique):
                bar.update()
        bar.close()

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def num_failed(self) -> int:
        return len(self._errors)

    @property
    def nbytes(self) -> int:
        return sum(f.nbytes for f in self._frames if f is not None)

    def frames(self, row: int, indices: np.ndarray | None = None) -> np.ndarray:
        """uint8 ``(T, H', W', 3)`` frames of ``row`` (``indices`` picks some); a row that failed to
        decode raises :class:`VideoDecodeError` with its original message."""
        first = self._first_row[row]
        if first in self._errors:
            raise VideoDecodeError(self._errors[first])
        frames = self._frames[first]
        return frames if indices is None else frames[np.asarray(indices)]
