"""Token vocabulary of the COMMIT transformer: code ids, [MASK], task and class ids, sub-token split.

Code ids are the tokenizer's ids ``0 .. codebook_size - 1``. Everything else lives where it cannot
collide with a code id:

- ``MASK_ID = -1`` is the only special value a token grid may hold besides code ids; the model maps it to
  its own learned vector (no row of the code tables).
- Task ids index a separate task-token table (``TASK_IDS``); class ids index a separate class table whose
  last row ``num_classes`` is the UNCOND class. They never enter the token grid.

Large vocabularies are split into sub-tokens (MAGVIT-v2): with sub-token sizes ``(n_lo, n_hi)``
(powers of two, ``n_lo * n_hi = codebook_size``) ``low = idx % n_lo`` and ``high = idx // n_lo``
(``idx & (n_lo - 1)`` and ``idx >> b_lo`` for 18-bit codes split 9 + 9); ``merge_tokens`` is the inverse.
A small vocabulary is one "sub-token" of size ``codebook_size`` (any size, e.g. FSQ's 1000).
"""

from __future__ import annotations

import torch

MASK_ID = -1
"""Token-grid value of a masked position; outside every codebook range ``[0, codebook_size)``."""

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


def sub_token_sizes(codebook_size: int, split: bool) -> tuple[int, ...]:
    """Sizes of the sub-token vocabularies, low part first: ``(codebook_size,)`` or, for a power-of-two
    codebook of b bits, ``(2**ceil(b/2), 2**floor(b/2))``."""
    if not split:
        return (codebook_size,)
    bits = codebook_size.bit_length() - 1
    if codebook_size != 2**bits or bits < 2:
        raise ValueError(
            f"only a power-of-two codebook (>= 4 codes) splits into sub-tokens, got {codebook_size}"
        )
    low = (bits + 1) // 2
    return (2**low, 2 ** (bits - low))


def split_tokens(ids: torch.Tensor, sizes: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    """Code ids (any shape, int64, in ``[0, prod(sizes))``) -> one id tensor per sub-token, low first."""
    if len(sizes) == 1:
        return (ids,)
    parts = []
    for size in sizes:
        parts.append(ids % size)
        ids = ids // size
    return tuple(parts)


def merge_tokens(
    parts: tuple[torch.Tensor, ...] | list[torch.Tensor], sizes: tuple[int, ...]
) -> torch.Tensor:
    """Inverse of :func:`split_tokens`: sub-token ids (low first) -> code ids."""
    ids = torch.zeros_like(parts[0])
    scale = 1
    for part, size in zip(parts, sizes):
        ids = ids + part * scale
        scale *= size
    return ids
