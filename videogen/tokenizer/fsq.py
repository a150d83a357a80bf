"""Finite scalar quantization (Mentzer et al. 2023): round each bounded channel to a few levels.

Channel i of z with L = ``levels[i]`` levels is bounded by
``tanh(z + shift) * (L - 1) / 2 * (1 + eps) - offset`` (offset 1/2 and a shift for even L, so z = 0 maps
to 0 and rounding gives exactly the integers -L//2 .. (L-1)//2), rounded with a straight-through gradient, and divided by
L // 2, so codes lie in [-1, 1]. The id is mixed-radix: sum_i digit_i * prod_{j<i} L_j with
digit_i = level index in 0..L-1 (channel 0 the least significant digit). No codebook, no loss.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from videogen.tokenizer.config import FSQConfig
from videogen.tokenizer.quantizer import Quantizer, QuantizerOutput, at_least_fp32, no_autocast

_EPS = 1e-3  # lets tanh reach the outermost levels' rounding intervals (and keeps atanh finite for L = 2)


class FSQ(Quantizer):
    """``FSQ(levels)``: one channel per entry of ``levels``. No parameters."""

    def __init__(self, levels: tuple[int, ...] | list[int], **options: Any) -> None:
        super().__init__()
        self.config = FSQConfig(levels=tuple(int(level) for level in levels), **options)
        self.config.validate()
        levels_t = torch.tensor(self.config.levels, dtype=torch.int64)
        basis = torch.cumprod(torch.cat([torch.ones(1, dtype=torch.int64), levels_t[:-1]]), 0)
        # constants, not state: derived from the config, never saved in checkpoints
        self.register_buffer("_levels", levels_t, persistent=False)
        self.register_buffer("_basis", basis, persistent=False)

    @classmethod
    def from_config(cls, config: FSQConfig) -> FSQ:
        return cls(config.levels)

    @property
    def latent_channels(self) -> int:
        return len(self.config.levels)

    @property
    def codebook_size(self) -> int:
        return math.prod(self.config.levels)

    def _view(self, values: torch.Tensor, dims: int) -> torch.Tensor:
        """Per-channel constants shaped to broadcast over ``(B, C, *grid)`` with ``dims`` dimensions."""
        return values.view((1, -1) + (1,) * (dims - 2))

    def _half_width(self, dims: int, dtype: torch.dtype) -> torch.Tensor:
        return self._view(self._levels // 2, dims).to(dtype)

    # ------------------------------------------------------------------ bound and round

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """``z (B, C, *grid)`` -> values strictly between the lowest and highest level (integer scale)."""
        levels = self._view(self._levels, z.dim()).to(z.dtype)
        half_levels = (levels - 1) * (1 + _EPS) / 2
        offset = torch.where(levels % 2 == 0, 0.5, 0.0).to(z.dtype)
        shift = torch.atanh(offset / half_levels)
        return torch.tanh(z + shift) * half_levels - offset

    def _digits(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes in [-1, 1] -> level indices 0..L-1 per channel (int64)."""
        half = self._half_width(codes.dim(), codes.dtype)
        return torch.round(codes * half + half).long()

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """``(B, C, *grid)`` codes -> ``(B, *grid)`` int64 mixed-radix ids."""
        return (self._digits(codes) * self._view(self._basis, codes.dim())).sum(1)

    def indices_to_codes(self, indices: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``(B, *grid)`` int64 ids -> ``(B, C, *grid)`` codes in [-1, 1]."""
        dims = indices.dim() + 1
        digits = (indices.long().unsqueeze(1) // self._view(self._basis, dims)) % self._view(
            self._levels, dims
        )
        half = self._half_width(dims, torch.float64)
        return ((digits.double() - half) / half).to(dtype)

    @torch.no_grad()
    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with no_autocast(z.device):
            z = at_least_fp32(z)
            codes = torch.round(self.bound(z)) / self._half_width(z.dim(), z.dtype)
            return codes, self.codes_to_indices(codes)

    def forward(self, z: torch.Tensor, step: int | None = None) -> QuantizerOutput:
        """``z (B, C, *grid)`` -> codes in [-1, 1] with a straight-through gradient through the rounding."""
        self.check_latent(z)
        with no_autocast(z.device):
            bounded = self.bound(at_least_fp32(z))
            rounded = bounded + (torch.round(bounded) - bounded).detach()
            quantized = rounded / self._half_width(z.dim(), bounded.dtype)
            indices = self.codes_to_indices(quantized.detach())
        return QuantizerOutput(
            quantized=quantized,
            indices=indices,
            loss=quantized.new_zeros(()),
            metrics=self.usage_metrics(indices),
        )

    def extra_repr(self) -> str:
        return f"levels={self.config.levels}, codes={self.codebook_size}"
