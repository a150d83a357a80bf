"""``VideoClipDataset``: one random (or centered) window of a video per item, resized, cropped, in [-1, 1].

An item is a dict::

    {"video": float32 (3, T, H, W) in [-1, 1], "label": int (-1 if none),
     "index": int (the row actually loaded), "num_failed": int (substitutions before it)}

A file that fails to decode is replaced by another row chosen deterministically from
``(seed, epoch, index, attempt)``; the number of replacements travels in ``num_failed`` to the main
process (see :class:`~videogen.data.failures.FailureMonitor`). Clips too short for a window are
dropped when the dataset is built (``too_short="skip"``, counted in ``num_too_short``) or looped
(``"loop"``). Randomness (window start, crop, flip) comes from ``(seed, epoch, index)``, so a
resumed run sees the same clips as an uninterrupted one, whatever the number of workers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from videogen.data.clip_index import choose_window, fits, source_step
from videogen.data.failures import DataError
from videogen.data.frame_cache import FrameCache
from videogen.data.manifest import Manifest
from videogen.data.manifest_builder import load_manifest
from videogen.data.transforms import ClipTransform
from videogen.video_io import VideoDecodeError, read_video

logger = logging.getLogger("videogen.data")


class SubstitutingDataset(Dataset):
    """Items from ``load(row, rng)``; a row that raises ``VideoDecodeError`` is replaced and counted."""

    manifest: Manifest
    seed: int = 0
    epoch: int = 0
    max_attempts: int = 10

    def __len__(self) -> int:
        return len(self.manifest)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's random draws (set before workers are forked; the loader does it)."""
        self.epoch = epoch

    def load(self, row: int, rng: np.random.Generator) -> torch.Tensor:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict:
        row = int(index)
        last_error = ""
        for attempt in range(self.max_attempts):
            rng = np.random.default_rng([self.seed, self.epoch, int(index), attempt])
            try:
                video = self.load(row, rng)
            except VideoDecodeError as e:
                last_error = str(e)
                logger.warning("skipping %s (item %d): %s", self.manifest.paths[row], row, e)
                row = int(rng.integers(len(self)))
                continue
            label = int(self.manifest.labels[row])
            return {"video": video, "label": label, "index": row, "num_failed": attempt}
        raise DataError(
            f"{self.max_attempts} samples in a row failed to decode in '{self.manifest.source}' "
            f"(last: {last_error}); check the files or rebuild the manifest"
        )


class VideoClipDataset(SubstitutingDataset):
    """Clips of ``num_frames`` frames at ``frame_stride`` (or resampled to ``target_fps``), ``resolution`` square.

    ``source``: a manifest (``.jsonl``), a folder (probed now) or a :class:`Manifest`. ``train``:
    random window start, random crop and flip; otherwise the centered window, center crop, no flip.
    ``preload``: decode every file once now into a :class:`FrameCache` (no decoding per item); ``cache``:
    use one already made for the same manifest (e.g. the clips' own cache for single frames of them).
    """

    def __init__(
        self,
        source: str | Path | Manifest,
        num_frames: int = 17,
        resolution: int = 64,
        frame_stride: int = 1,
        target_fps: float | None = None,
        train: bool = True,
        backend: Literal["decord", "pyav"] = "decord",
        too_short: Literal["skip", "loop"] = "skip",
        random_flip: bool = True,
        seed: int = 0,
        max_attempts: int = 10,
        probe_workers: int = 2,
        preload: bool = False,
        preload_max_gb: float = 4.0,
        cache: FrameCache | None = None,
        crop_size: int | None = None,
    ) -> None:
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        manifest = (
            source if isinstance(source, Manifest) else load_manifest(source, "video", probe_workers, backend)
        )
        self.num_frames = num_frames
        self.frame_stride = frame_stride
        self.target_fps = target_fps
        self.train = train
        self.backend = backend
        self.too_short = too_short
        self.seed = seed
        self.epoch = 0
        self.max_attempts = max_attempts
        self.transform = ClipTransform(resolution, train=train, random_flip=random_flip, crop_size=crop_size)
        self.num_too_short = 0
        if too_short == "skip":
            keep = fits(manifest.num_frames, manifest.fps, num_frames, frame_stride, target_fps)
            self.num_too_short = int((~keep).sum())
            if self.num_too_short:
                logger.warning(
                    "%s: leaving out %d of %d clips shorter than %d frames at %s (data.too_short=skip)",
                    manifest.source,
                    self.num_too_short,
                    len(manifest),
                    num_frames,
                    f"{target_fps} fps" if target_fps else f"stride {frame_stride}",
                )
            manifest = manifest.select(keep)
        if len(manifest) == 0:
            raise DataError(
                f"'{manifest.source}' has no clips long enough for {num_frames} frames at "
                f"{f'{target_fps} fps' if target_fps else f'stride {frame_stride}'} "
                f"({self.num_too_short} too short); lower data.num_frames / data.frame_stride or set "
                "data.too_short=loop"
            )
        self.manifest = manifest
        if cache is not None and len(cache) != len(manifest):
            raise ValueError(
                f"a frame cache of {len(cache)} files does not fit a manifest of {len(manifest)}"
            )
        if cache is None and preload:
            cache = FrameCache(manifest, resolution, "video", backend, preload_max_gb)
        self.cache = cache

    def frame_indices(self, row: int, rng: np.random.Generator | None) -> np.ndarray:
        """Source frame indices of the clip for ``row`` (pure index math on the verified count)."""
        step = source_step(float(self.manifest.fps[row]), self.frame_stride, self.target_fps)
        indices = choose_window(
            int(self.manifest.num_frames[row]),
            self.num_frames,
            step,
            position="random" if self.train else "center",
            rng=rng,
            too_short=self.too_short,
        )
        if indices is None:  # "skip" rows were filtered at construction; this means the manifest changed
            raise VideoDecodeError(f"video '{self.manifest.paths[row]}' is too short for a clip")
        return indices

    def load(self, row: int, rng: np.random.Generator) -> torch.Tensor:
        indices = self.frame_indices(row, rng)
        if self.cache is not None:
            frames = self.cache.frames(row, indices)  # (T, H', W', 3) uint8, short side at the resolution
        else:
            frames = read_video(self.manifest.paths[row], indices, backend=self.backend)  # (T, H, W, 3) uint8
        return self.transform(frames, rng)  # (3, T, res, res) float in [-1, 1]
