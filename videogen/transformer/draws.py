"""Uniform draws from an optional ``torch.Generator``, on the generator's device, moved to ``device``.

Drawing where the generator lives makes results depend only on the seed, so a CPU generator gives the
same masks and samples for CPU and GPU tensors.
"""

from __future__ import annotations

import torch


def uniform(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device | str
) -> torch.Tensor:
    """float32 ``U[0, 1)`` of ``shape`` on ``device``."""
    source = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=source, dtype=torch.float32).to(device)


def gumbel(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device | str
) -> torch.Tensor:
    """float32 standard Gumbel noise ``-log(-log(u))`` of ``shape`` on ``device`` (finite everywhere)."""
    u = uniform(shape, generator, device).clamp_min(torch.finfo(torch.float32).tiny)
    return -torch.log(-torch.log(u))
