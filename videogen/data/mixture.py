"""Joint image + video training: a dataset of both and a batch sampler whose batches are all one kind.

Videos have T frames and images 1, so a batch cannot mix them. Each epoch is one pass over the
videos with image batches interleaved at fixed, seeded positions so that a fraction
``image_ratio`` of all batches are image batches. The image batches cycle through the images
across epochs. Everything is index arithmetic on ``(seed, epoch, position)``, so the mixture
resumes exactly like :class:`~videogen.data.samplers.ResumableSampler` and all ranks agree on
which steps are image steps.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from videogen.data.samplers import EpochBatchSampler, ResumableSampler


class JointDataset(Dataset):
    """Indices ``[0, len(videos))`` are videos, the rest images (shifted by ``len(videos)``)."""

    def __init__(self, videos: Dataset, images: Dataset) -> None:
        self.videos = videos
        self.images = images
        self.num_videos = len(videos)

    def __len__(self) -> int:
        return self.num_videos + len(self.images)

    def set_epoch(self, epoch: int) -> None:
        self.videos.set_epoch(epoch)
        self.images.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict:
        if index < self.num_videos:
            return self.videos[index]
        item = self.images[index - self.num_videos]
        item["index"] += self.num_videos
        return item


class JointBatchSampler(EpochBatchSampler):
    """Interleave batches of ``video_sampler`` with image batches of ``image_sampler`` (indices + ``image_offset``).

    Per epoch: ``len(video_sampler)`` video batches and ``round(n * r / (1 - r))`` image batches,
    ``r = image_ratio`` in (0, 1), at positions drawn from ``(seed, epoch)``.
    """

    def __init__(
        self,
        video_sampler: ResumableSampler,
        image_sampler: ResumableSampler,
        image_ratio: float,
        image_offset: int,
        seed: int = 0,
    ) -> None:
        if not 0.0 < image_ratio < 1.0:
            raise ValueError(f"image_ratio must be in (0, 1), got {image_ratio}")
        if len(image_sampler) == 0:
            raise ValueError("the image sampler has no batches")
        self.videos = video_sampler
        self.images = image_sampler
        self.image_offset = image_offset
        self.seed = seed
        self.num_image_batches = max(1, round(len(video_sampler) * image_ratio / (1.0 - image_ratio)))
        self.epoch = 0
        self.position = 0
        self._layout_epoch: int | None = None

    def __len__(self) -> int:
        return len(self.videos) + self.num_image_batches

    def is_image_batch(self, epoch: int) -> np.ndarray:
        """bool ``(len(self),)``: which batches of ``epoch`` are image batches."""
        return self._layout(epoch)[0]

    def _layout(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(is_image, rank of each batch among the batches of its kind) for ``epoch``."""
        if self._layout_epoch != epoch:
            slots = np.random.default_rng([self.seed, epoch, 1]).permutation(len(self))
            is_image = np.zeros(len(self), dtype=bool)
            is_image[slots[: self.num_image_batches]] = True
            rank_in_kind = np.where(is_image, np.cumsum(is_image) - 1, np.cumsum(~is_image) - 1)
            self._cache = (is_image, rank_in_kind)
            self._layout_epoch = epoch
        return self._cache

    def batch(self, epoch: int, index: int) -> list[int]:
        is_image, rank_in_kind = self._layout(epoch)
        if not is_image[index]:
            return self.videos.batch(epoch, int(rank_in_kind[index]))
        # image batches run on across epochs: the k-th image batch ever is batch k % len of image epoch k // len
        count = epoch * self.num_image_batches + int(rank_in_kind[index])
        image_epoch, image_index = divmod(count, len(self.images))
        return [i + self.image_offset for i in self.images.batch(image_epoch, image_index)]
