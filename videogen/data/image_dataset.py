"""``ImageDataset``: images as 1-frame videos, with the same item dict as the video clips.

``{"video": float32 (3, 1, H, W) in [-1, 1], "label": int, "index": int, "num_failed": int}``.
The causal tokenizer encodes frame 0 on its own, so an image is simply a clip with T = 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from videogen.data.failures import DataError
from videogen.data.frame_cache import FrameCache
from videogen.data.manifest import Manifest
from videogen.data.manifest_builder import load_manifest
from videogen.data.transforms import ClipTransform
from videogen.data.video_dataset import SubstitutingDataset
from videogen.video_io import read_image


class ImageDataset(SubstitutingDataset):
    """Images from a manifest (``.jsonl`` with ``path``), a folder (labels from sub-folders) or a :class:`Manifest`.

    ``train``: random crop and flip; otherwise center crop. Unreadable images are replaced and
    counted in ``num_failed``, as for videos. ``preload``: decode every image once now (``FrameCache``).
    """

    def __init__(
        self,
        source: str | Path | Manifest,
        resolution: int = 64,
        train: bool = True,
        random_flip: bool = True,
        seed: int = 0,
        max_attempts: int = 10,
        probe_workers: int = 2,
        preload: bool = False,
        preload_max_gb: float = 4.0,
        crop_size: int | None = None,
    ) -> None:
        manifest = source if isinstance(source, Manifest) else load_manifest(source, "image", probe_workers)
        if len(manifest) == 0:
            raise DataError(f"'{manifest.source}' lists no images")
        self.manifest = manifest
        self.seed = seed
        self.epoch = 0
        self.max_attempts = max_attempts
        self.transform = ClipTransform(resolution, train=train, random_flip=random_flip, crop_size=crop_size)
        self.cache = FrameCache(manifest, resolution, "image", max_gb=preload_max_gb) if preload else None

    def load(self, row: int, rng: np.random.Generator) -> torch.Tensor:
        if self.cache is not None:
            frames = self.cache.frames(row)  # (1, H', W', 3) uint8
        else:
            frames = read_image(self.manifest.paths[row])[None]  # (H, W, 3) -> (1, H, W, 3) uint8
        return self.transform(frames, rng)  # (1, H, W, 3) -> (3, 1, res, res)
