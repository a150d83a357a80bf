"""Collectives across the ranks of a run that are no-ops in a single process: what models, losses and
the training runtime share (setting the process group up is :mod:`videogen.training.distributed`)."""

from __future__ import annotations

import torch
import torch.distributed as torch_dist


def world_size() -> int:
    return torch_dist.get_world_size() if torch_dist.is_available() and torch_dist.is_initialized() else 1


def all_reduce_(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (``"sum" | "max" | "min"``) across ranks; a no-op in a single process."""
    if world_size() > 1:
        ops = {"sum": torch_dist.ReduceOp.SUM, "max": torch_dist.ReduceOp.MAX, "min": torch_dist.ReduceOp.MIN}
        torch_dist.all_reduce(tensor, op=ops[op])
    return tensor


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on at least one (a collective: every rank must call it)."""
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    return bool(all_reduce_(value, "max").item() > 0)


def broadcast_(tensors: list[torch.Tensor], src: int = 0) -> None:
    """Overwrite ``tensors`` on every rank with rank ``src``'s values (a no-op in a single process)."""
    if world_size() > 1:
        for tensor in tensors:
            torch_dist.broadcast(tensor, src)


def barrier() -> None:
    if world_size() > 1:
        torch_dist.barrier()
