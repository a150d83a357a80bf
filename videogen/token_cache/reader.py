"""``TokenDataset``: a token cache written by ``./run.sh tokenize``, read through memmaps.

The cache layout is in ``format.py``. An item is one clip window (one flip variant) with its
target tokens, label, and the condition tokens and latent condition mask of every cached task. The
cache must be complete: ``index.json`` present and every shard file of its recorded size.
Memmaps are opened lazily in the process that reads them (a forked DataLoader worker opens its own;
none is open on the object before the first item), at most ``MAX_OPEN_SHARDS`` shards at a time.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from videogen.errors import UserError
from videogen.token_cache.format import SHARDS_DIR, TokenCacheError, check_tokenizer, read_index
from videogen.transformer.tasks import get_task

MAX_OPEN_SHARDS = 32  # each open memmap holds a file descriptor


# ----------------------------------------------------------------------------- dataset


class TokenDataset(Dataset):
    """Items of a token cache. ``TokenDataset(cache_dir, tasks=None, tokenizer=None)``.

    ``tasks``: names (or short codes) of cached tasks to return; None = all cached tasks.
    ``tokenizer``: optional ``VideoTokenizer`` / ``TokenizerConfig`` / export dir; refused unless it is
    the tokenizer the cache was made with (config hash; for a dir also the weights).

    ``dataset[i]`` -> ``{"tokens": int64 (T', H', W'), "label": int64 () (-1 = none),
    "cond_tokens": {task: int64 (T', H', W')}, "cond_mask": {task: bool (T', H', W')}}``.
    Tasks without a condition (class generation, unconditional) get zero condition tokens and an
    all-False mask. ``dataset.item(i, task)`` is the flat form for one task (adds ``"task_id"``).
    The default collate stacks both forms; :func:`select_task` picks per-sample tasks from a batch.

    Image generation needs no separate cache: with the causal tokenizer ``tokens[:1]`` (latent frame 0)
    are exactly the tokens of frame 0 alone.

    Attributes: ``grid_shape`` (T', H', W'), ``codebook_size``, ``tasks``,
    ``task_ids`` {task: task-token id}, ``num_classes``, ``classes`` (names or None),
    ``masks`` {task: bool (T', H', W')}, ``index`` (the parsed ``index.json``).
    ``source(i)`` -> (manifest row, window number, flipped) of item ``i``.
    """

    def __init__(
        self, cache_dir: str | Path, tasks: Sequence[str] | None = None, tokenizer: Any = None
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.index = read_index(self.cache_dir)
        if tokenizer is not None:
            check_tokenizer(self.index, tokenizer, self.cache_dir)
        cached = self.index["tasks"]
        if tasks is None:
            names = list(cached)
        else:
            names = [get_task(t).name for t in tasks]
            missing = [n for n in names if n not in cached]
            if missing:
                raise TokenCacheError(
                    f"token cache '{self.cache_dir}' has no task {', '.join(missing)}; it holds "
                    f"{', '.join(cached)} (remake it with --tasks to add tasks)"
                )
        self.tasks: tuple[str, ...] = tuple(dict.fromkeys(names))
        self.task_ids = {name: int(cached[name]["task_id"]) for name in self.tasks}
        self.grid_shape: tuple[int, int, int] = tuple(self.index["grid_shape"])
        self.codebook_size: int = int(self.index["codebook_size"])
        self.num_classes: int = int(self.index["num_classes"])
        self.classes: tuple[str, ...] | None = (
            tuple(self.index["classes"]) if self.index.get("classes") is not None else None
        )
        self.masks = {
            name: torch.from_numpy(np.load(self.cache_dir / cached[name]["mask_file"]).astype(bool))
            for name in self.tasks
        }
        self._fields = {name: cached[name]["cond_field"] for name in self.tasks}  # None = no condition
        self._zeros = torch.zeros(self.grid_shape, dtype=torch.int64)
        counts = [shard["count"] for shard in self.index["shards"]]
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._open: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._pid: int | None = None

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getstate__(self) -> dict:  # pickled for spawned workers: no open memmaps travel
        state = self.__dict__.copy()
        state["_open"], state["_pid"] = OrderedDict(), None
        return state

    # ------------------------------------------------------------------ memmaps

    def _shard(self, shard: int) -> dict[str, np.ndarray]:
        """Memmaps of one shard, opened in this process (reopened after a fork), LRU-bounded."""
        if self._pid != os.getpid():
            self._open, self._pid = OrderedDict(), os.getpid()
        arrays = self._open.get(shard)
        if arrays is None:
            folder = self.cache_dir / SHARDS_DIR / self.index["shards"][shard]["name"]
            arrays = {
                name.removesuffix(".npy"): np.load(folder / name, mmap_mode="r")
                for name in self.index["shards"][shard]["files"]
            }
            self._open[shard] = arrays
            if len(self._open) > MAX_OPEN_SHARDS:
                self._open.popitem(last=False)
        else:
            self._open.move_to_end(shard)
        return arrays

    def _locate(self, i: int) -> tuple[dict[str, np.ndarray], int]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"item {i} is out of range for a token cache of {n} items")
        i = int(i) % n
        shard = int(np.searchsorted(self._offsets, i, side="right")) - 1
        return self._shard(shard), i - int(self._offsets[shard])

    @staticmethod
    def _grid(array: np.ndarray, j: int) -> torch.Tensor:
        return torch.from_numpy(array[j].astype(np.int64))  # (T', H', W') stored dtype -> int64

    # ------------------------------------------------------------------ items

    def __getitem__(self, i: int) -> dict:
        arrays, j = self._locate(i)
        cond_tokens = {
            task: self._zeros.clone() if field is None else self._grid(arrays[field], j)
            for task, field in self._fields.items()
        }
        return {
            "tokens": self._grid(arrays["tokens"], j),
            "label": torch.tensor(int(arrays["labels"][j]), dtype=torch.int64),
            "cond_tokens": cond_tokens,
            "cond_mask": {task: self.masks[task].clone() for task in self.tasks},
        }

    def item(self, i: int, task: str) -> dict:
        """Flat item for one task: ``tokens``, ``label``, ``cond_tokens``, ``cond_mask``, ``task_id`` (int64)."""
        name = get_task(task).name
        if name not in self._fields:
            raise TokenCacheError(f"task {task!r} is not among this dataset's tasks {', '.join(self.tasks)}")
        arrays, j = self._locate(i)
        field = self._fields[name]
        return {
            "tokens": self._grid(arrays["tokens"], j),
            "label": torch.tensor(int(arrays["labels"][j]), dtype=torch.int64),
            "cond_tokens": self._zeros.clone() if field is None else self._grid(arrays[field], j),
            "cond_mask": self.masks[name].clone(),
            "task_id": torch.tensor(self.task_ids[name], dtype=torch.int64),
        }

    def source(self, i: int) -> tuple[int, int, bool]:
        """Where item ``i`` came from: (manifest row, window number, flipped)."""
        arrays, j = self._locate(i)
        return int(arrays["rows"][j]), int(arrays["windows"][j]), bool(arrays["flips"][j])


def select_task(batch: Mapping, task_names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """From a collated batch of ``TokenDataset`` items, sample b's condition of task ``task_names[b]``.

    Returns ``cond_tokens`` int64 ``(B, T', H', W')`` and ``cond_mask`` bool ``(B, T', H', W')``
    (``task_names`` as drawn by ``transformer.masking.sample_tasks``).
    """
    names = [get_task(t).name for t in task_names]
    missing = sorted(set(names) - set(batch["cond_tokens"]))
    if missing:
        raise UserError(f"the batch has no condition for task(s) {', '.join(missing)}; cache them first")
    cond = torch.stack([batch["cond_tokens"][n][b] for b, n in enumerate(names)])
    mask = torch.stack([batch["cond_mask"][n][b] for b, n in enumerate(names)])
    return cond, mask
