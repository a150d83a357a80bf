"""Token vocabulary of the COMMIT transformer: code ids, [MASK], task and class ids, sub-token split.

Code ids are the tokenizer's ids ``0 .. 2**codebook_bits - 1``. Everything else lives where it cannot
collide with a code id:

- ``MASK_ID = -1`` is the only special value a token grid may hold besides code ids; the model maps it to
  its own learned vector (no row of the code tables).
- Task ids index a separate task-token table (``TASK_IDS``); class ids index a separate class table whose
  last row ``num_classes`` is the UNCOND class. They never enter the token grid.

Large vocabularies are split into sub-tokens (MAGVIT-v2): with ``bits = (b_lo, b_hi)``
``low = idx & (2**b_lo - 1)`` and ``high = idx >> b_lo``; ``merge_tokens`` is the inverse.
"""

from __future__ import annotations

import torch

MASK_ID = -1
"""Token-grid value of a masked position; outside every codebook range ``[0, 2**bits)``."""

TASK_FAMILIES: tuple[str, ...] = (
    "generation",  # class-conditional / unconditional / image generation, and the CFG twin
    "frame_prediction",
    "interpolation",
    "outpainting",
    "inpainting",  # its own token (MAGVIT v1's release reuses the outpainting token by mistake)
)
TASK_IDS: dict[str, int] = {name: i for i, name in enumerate(TASK_FAMILIES)}
"""Task family name -> task-token id (row of the model's task table)."""

UNCOND_TASK_ID = TASK_IDS["generation"]
"""Task id used when the condition is dropped (training) and by the CFG twin (sampling)."""


def sub_token_bits(codebook_bits: int, split: bool) -> tuple[int, ...]:
    """Bits per sub-token, low part first: ``(bits,)`` or ``(ceil(bits/2), floor(bits/2))``."""
    if not split:
        return (codebook_bits,)
    low = (codebook_bits + 1) // 2
    return (low, codebook_bits - low)


def split_tokens(ids: torch.Tensor, bits: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    """Code ids (any shape, int64, in ``[0, 2**sum(bits))``) -> one id tensor per sub-token, low first."""
    parts = []
    shift = 0
    for b in bits:
        parts.append((ids >> shift) & ((1 << b) - 1))
        shift += b
    return tuple(parts)


def merge_tokens(parts: tuple[torch.Tensor, ...] | list[torch.Tensor], bits: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`split_tokens`: sub-token ids (low first) -> code ids."""
    ids = torch.zeros_like(parts[0])
    shift = 0
    for part, b in zip(parts, bits):
        ids = ids | (part << shift)
        shift += b
    return ids
