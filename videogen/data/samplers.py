"""Deterministic, resumable, distributed batch samplers.

The order of an epoch is a function of ``(seed, epoch)`` only, so any batch can be computed by index
arithmetic: resuming at ``(epoch, position)`` skips the first ``position`` batches without
decoding anything. Each global batch of ``batch_size * world_size`` samples is cut into
``world_size`` slices; rank ``r`` gets slice ``r``, so ranks see disjoint samples.

The state is ``{"epoch", "position"}`` where ``position`` counts batches consumed in ``epoch``.
Iterating a sampler directly keeps it current; behind a DataLoader with workers the sampler is
read ahead of what training consumed, so the loader from :func:`videogen.data.loader.build_loader`
sets the state after each batch it hands out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np


class EpochBatchSampler:
    """Iteration and state shared by the samplers; subclasses define ``__len__`` and :meth:`batch`."""

    epoch: int = 0
    position: int = 0

    def __len__(self) -> int:  # batches per epoch
        raise NotImplementedError

    def batch(self, epoch: int, index: int) -> list[int]:
        """Sample indices of batch ``index`` of ``epoch`` (this rank's slice)."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[int]]:
        """Batches from the current position to the end of the epoch; then the next epoch begins."""
        if self.position >= len(self):
            self.epoch, self.position = self.epoch + 1, 0
        epoch, start = self.epoch, self.position
        for index in range(start, len(self)):
            batch = self.batch(epoch, index)
            self.epoch, self.position = epoch, index + 1
            yield batch
        self.epoch, self.position = epoch + 1, 0

    def set_state(self, epoch: int, position: int) -> None:
        if epoch < 0 or not 0 <= position <= len(self):
            raise ValueError(f"sampler state epoch={epoch}, position={position} is outside 0..{len(self)}")
        self.epoch, self.position = epoch, position

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.set_state(int(state["epoch"]), int(state["position"]))


class ResumableSampler(EpochBatchSampler):
    """Batches of ``batch_size`` indices in ``[0, num_samples)`` for one of ``world_size`` ranks.

    ``shuffle``: a fresh permutation per epoch from ``(seed, epoch)``; else in order.
    ``drop_last``: only full global batches; otherwise the last global batch is filled up by
    wrapping around to the start of the order (as ``DistributedSampler`` does), so every rank
    gets the same number of batches, the last possibly smaller.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        drop_last: bool = True,
    ) -> None:
        if num_samples < 0 or batch_size < 1:
            raise ValueError(f"need num_samples >= 0 and batch_size >= 1, got {num_samples}, {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.epoch = 0
        self.position = 0
        self._order_epoch: int | None = None
        self._order = np.arange(0)

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        full, rest = divmod(self.num_samples, self.global_batch_size)
        return full + int(rest > 0 and not self.drop_last)

    def order(self, epoch: int) -> np.ndarray:
        """int64 ``(num_samples,)``: the epoch's sample order (the same on every rank)."""
        if self._order_epoch != epoch:
            if self.shuffle:
                self._order = np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
            else:
                self._order = np.arange(self.num_samples)
            self._order_epoch = epoch
        return self._order

    def batch(self, epoch: int, index: int) -> list[int]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} is outside 0..{len(self) - 1}")
        order = self.order(epoch)
        begin = index * self.global_batch_size
        chunk = order[begin : begin + self.global_batch_size]
        per_rank = self.batch_size
        if len(chunk) < self.global_batch_size:  # the last, partial global batch (drop_last=False)
            per_rank = -(-len(chunk) // self.world_size)
            fill = per_rank * self.world_size - len(chunk)
            chunk = np.concatenate([chunk, np.resize(order, fill)])
        return chunk[self.rank * per_rank : (self.rank + 1) * per_rank].tolist()
