"""A toy regression problem for engine / checkpoint / loop tests: tiny model, indexed dataset."""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.data import Dataset

from videogen.data.loader import EpochDataLoader
from videogen.data.samplers import ResumableSampler
from videogen.training import DistInfo, setup_distributed, teardown_distributed

FEATURES = 8


class ToyDataset(Dataset):
    """Sample ``i``: ``{"index": i, "x": (8,), "y": (8,)}``, fixed by ``i`` (y = a fixed linear map of x)."""

    def __init__(self, num_samples: int = 64):
        self.num_samples = num_samples
        generator = torch.Generator().manual_seed(1234)
        self.x = torch.randn(num_samples, FEATURES, generator=generator)
        self.map = torch.randn(FEATURES, FEATURES, generator=generator) / FEATURES**0.5
        self.y = self.x @ self.map

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"index": torch.tensor(index), "x": self.x[index], "y": self.y[index]}

    def set_epoch(self, epoch: int) -> None:  # the loader tells datasets the epoch; nothing random here
        pass


def epoch_loader(
    dataset: Dataset, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 1
) -> tuple[EpochDataLoader, ResumableSampler]:
    """The project's resumable loader (one epoch per pass) over ``dataset``, and its sampler."""
    sampler = ResumableSampler(len(dataset), batch_size, seed=seed, rank=rank, world_size=world_size)
    return EpochDataLoader(dataset, batch_sampler=sampler), sampler


class ToyModel(nn.Module):
    """(B, 8) -> (B, 8): Linear -> LayerNorm -> GELU -> Linear (has both decayed and undecayed params)."""

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(FEATURES, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Linear(hidden, FEATURES)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def single_process() -> Iterator[DistInfo]:
    """A launcher-less single-process group on CPU (gloo) for in-process engine tests; torn down after."""
    previous = os.environ.get("DS_ACCELERATOR")
    os.environ["DS_ACCELERATOR"] = "cpu"
    info = setup_distributed()
    yield info
    teardown_distributed(info)
    if previous is None:
        os.environ.pop("DS_ACCELERATOR", None)
    else:
        os.environ["DS_ACCELERATOR"] = previous
