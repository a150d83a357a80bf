"""Seeding and random-state capture (python, numpy, torch CPU and CUDA) for exact resume.

States are stored as plain tensors, lists and numbers, so checkpoints load with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The current random states of python, numpy, torch CPU and (if present) CUDA."""
    version, internal, gauss = random.getstate()
    key, np_state, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {
            "key": key,
            "state": torch.from_numpy(np_state.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    np_state = npy["state"].numpy().astype(np.uint32)
    np.random.set_state((npy["key"], np_state, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_rng_state(path: str | Path) -> None:
    torch.save(rng_state(), str(path))


def load_rng_state(path: str | Path) -> None:
    set_rng_state(torch.load(str(path), map_location="cpu", weights_only=True))
