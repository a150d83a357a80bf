"""Mask schedules gamma: progress in [0, 1] -> fraction of tokens masked, shared by training and sampling.

Training draws ``u ~ U(0, 1)`` and masks ``floor(N * gamma(u))`` tokens; sampling leaves
``floor(N * gamma((t + 1) / T))`` tokens masked after step ``t`` of ``T``.
"""

from __future__ import annotations

import math

import torch

SCHEDULES = ("cosine", "linear", "exp")

_ROUNDING = 1e-6  # floor(N * gamma) is taken with this slack so that e.g. 12 * (1 - 1/12) floors to 11


def mask_ratio(
    progress: torch.Tensor | float, schedule: str = "cosine", num_tokens: torch.Tensor | int = 1
) -> torch.Tensor:
    """Fraction masked in ``[0, 1]`` (float64) at ``progress`` in ``[0, 1]``; decreasing, ``gamma(1) = 0``.

    cosine: ``cos(pi/2 * p)``; linear: ``1 - p``; exp: ``1 - 2**(-log2(N) * (1 - p))`` (MAGVIT's "exp",
    which needs the token count ``num_tokens``; it keeps almost everything masked until late).
    ``progress`` and ``num_tokens`` broadcast against each other.
    """
    p = torch.as_tensor(progress, dtype=torch.float64).clamp(0.0, 1.0)
    if schedule == "cosine":
        return torch.where(p >= 1.0, 0.0, torch.cos(math.pi / 2 * p))  # exact 0 at the end
    if schedule == "linear":
        return 1.0 - p
    if schedule == "exp":
        n = torch.as_tensor(num_tokens, dtype=torch.float64, device=p.device).clamp_min(1.0)
        return 1.0 - torch.pow(2.0, -torch.log2(n) * (1.0 - p))
    raise ValueError(f"mask schedule {schedule!r} is unknown; use one of {', '.join(SCHEDULES)}")


def masked_count(num_tokens: torch.Tensor | int, ratio: torch.Tensor) -> torch.Tensor:
    """``floor(num_tokens * ratio)`` as int64 (with a 1e-6 slack against float rounding)."""
    n = torch.as_tensor(num_tokens, dtype=torch.float64, device=ratio.device)
    return torch.floor(n * ratio.to(torch.float64) + _ROUNDING).to(torch.int64)


def scheduled_mask_counts(num_unknown: torch.Tensor, steps: int, schedule: str = "cosine") -> torch.Tensor:
    """Number of positions still masked after each decoding step.

    num_unknown: ``(B,)`` int64, unknown positions per sample before step 0 (``N`` when every position
    is generated). Returns ``(steps, B)`` int64 ``c`` with ``c[t] = floor(n * gamma((t+1)/steps))``
    clipped so that every step fixes at least one token (``c[t] <= c[t-1] - 1`` while any is left) and
    keeps at least one masked until the last step (``c[t] >= 1`` for ``t < steps - 1``, ``c[-1] = 0``).
    A sample whose count reaches 0 early has nothing left to decode in the remaining steps.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    num_unknown = num_unknown.to(torch.int64)
    counts = []
    previous = num_unknown
    for t in range(steps):
        progress = torch.full(
            num_unknown.shape, (t + 1) / steps, dtype=torch.float64, device=num_unknown.device
        )
        scheduled = masked_count(num_unknown, mask_ratio(progress, schedule, num_unknown))
        high = (previous - 1).clamp_min(0)
        low = torch.zeros_like(high) if t == steps - 1 else high.clamp_max(1)
        current = torch.minimum(torch.maximum(scheduled, low), high)
        counts.append(current)
        previous = current
    return torch.stack(counts)
