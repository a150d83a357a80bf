"""Lookup-free quantization (MAGVIT-v2): each of ``bits`` latent channels is quantized to its sign.

Code of a latent z in R^bits: q = sign(z) in {-1, +1}^bits (z = 0 counts as -1); token index
= sum_i 2^i [z_i > 0], channel 0 the least significant bit (frozen by a test). The quantized tensor
equals q exactly, with a straight-through gradient (identity to z). Losses (see ``LFQConfig``):
commitment ``w_c * mean((z - sg(q))^2)`` and entropy ``w_e(step) * (mean_n H(p_n) - gamma H(mean_n p_n))``
with p_n = softmax over all codes of 2 <z_n, c> / tau, computed exactly in factorized form
(``lfq_entropy.py``). A per-frame GroupNorm without affine (or a soft clamp) first keeps z at O(1).
The quantizer always runs in fp32 or wider (autocast is disabled inside).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from videogen.tokenizer.config import LFQConfig
from videogen.tokenizer.lfq_entropy import factorized_entropy_terms
from videogen.tokenizer.norm import frame_group_norm
from videogen.tokenizer.quantizer import Quantizer, QuantizerOutput, at_least_fp32, no_autocast


@dataclass
class LFQOutput(QuantizerOutput):
    """:class:`QuantizerOutput` (codes exactly +-scale, loss = commitment + entropy) with the LFQ terms."""

    commitment_loss: torch.Tensor  # commitment_weight * mean((z - sg(q))^2)
    entropy_loss: torch.Tensor  # entropy_weight(step) * (per_sample_entropy - gamma * codebook_entropy)
    per_sample_entropy: torch.Tensor  # mean_n H(p_n), nats
    codebook_entropy: torch.Tensor  # H(mean_n p_n), nats (global batch when distributed)
    entropy_weight: float  # the annealed weight used at this step
    codebook_usage: torch.Tensor  # fraction of the 2**bits codes used by this batch's tokens (this rank)
    perplexity: torch.Tensor  # exp(entropy of this batch's token histogram); 2**bits at most


class LFQ(Quantizer):
    """Lookup-free quantizer with exact factorized entropy loss. No parameters.

    ``LFQ(bits, **options)``: ``options`` are the other :class:`LFQConfig` fields.
    """

    config_class: type = LFQConfig

    def __init__(self, bits: int, **options: Any) -> None:
        super().__init__()
        self.config = self.config_class(bits=bits, **options)
        self.config.validate()

    @classmethod
    def from_config(cls, config) -> LFQ:
        return cls(**vars(config))

    @property
    def bits(self) -> int:
        return self.config.bits

    @property
    def latent_channels(self) -> int:
        return self.config.bits

    @property
    def codebook_size(self) -> int:
        return 2**self.config.bits

    @property
    def code_scale(self) -> float:
        """The value of a bit in a code vector: codes are +-code_scale (1 for LFQ)."""
        return 1.0

    # ------------------------------------------------------------------ codes <-> indices

    def _powers(self, device: torch.device) -> torch.Tensor:
        return 2 ** torch.arange(self.bits, device=device, dtype=torch.int64)

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """``(B, bits, *grid)`` codes (sign decides; > 0 is bit 1) -> ``(B, *grid)`` int64 indices."""
        shape = (1, self.bits) + (1,) * (codes.dim() - 2)
        return ((codes > 0).long() * self._powers(codes.device).view(shape)).sum(1)

    def indices_to_codes(self, indices: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``(B, *grid)`` int64 indices -> ``(B, bits, *grid)`` codes in {-code_scale, +code_scale}."""
        shape = (1, self.bits) + (1,) * (indices.dim() - 1)
        bits = (indices.long().unsqueeze(1) >> torch.arange(self.bits, device=indices.device).view(shape)) & 1
        return (bits.to(dtype) * 2 - 1) * self.code_scale

    # ------------------------------------------------------------------ pieces

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """The pre-sign normalization of ``z (B, bits, *grid)`` (per frame for 5-D input), in fp32 or wider."""
        z = at_least_fp32(z)
        kind = self.config.normalization
        if kind == "group_norm":
            return frame_group_norm(z, self.config.norm_groups, eps=1e-6)
        if kind == "soft_clamp":
            value = self.config.soft_clamp_value
            return value * torch.tanh(z / value)
        return z

    def entropy_weight_at(self, step: int | None) -> float:
        """Annealed entropy weight: ``start * w`` at step 0, linear to ``w`` at ``entropy_anneal_steps``."""
        weight = self.config.entropy_weight
        steps = self.config.entropy_anneal_steps
        if step is None or steps <= 0:
            return weight
        remaining = max(0.0, 1.0 - step / steps)
        return weight * (1.0 + (self.config.entropy_anneal_start - 1.0) * remaining)

    def entropy_terms(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z (..., bits)`` (normalized) -> (mean per-sample entropy, codebook entropy), nats, at this
        temperature, for p(c) = softmax over the codes c of 2 <z, c> / tau."""
        if z.shape[-1] != self.bits:
            raise ValueError(f"entropy_terms needs latents of shape (..., {self.bits}), got {tuple(z.shape)}")
        with no_autocast(z.device):
            # codes are +-code_scale: <z, c> = <code_scale * z, +-1>, the factorized form's convention
            return factorized_entropy_terms(z * self.code_scale, self.config.temperature)

    @torch.no_grad()
    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference: ``z (B, bits, *grid)`` -> (codes ``(B, bits, *grid)`` +-scale, indices ``(B, *grid)``)."""
        with no_autocast(z.device):
            z = self.normalize(z)
            codes = torch.where(z > 0, 1.0, -1.0).to(z.dtype) * self.code_scale
            return codes, self.codes_to_indices(z)

    # ------------------------------------------------------------------ forward

    def forward(self, z: torch.Tensor, step: int | None = None) -> LFQOutput:
        """Quantize ``z (B, bits, *grid)`` (channel-first, any dtype) with losses and statistics."""
        self.check_latent(z)
        with no_autocast(z.device):
            z = self.normalize(z)
            hard = torch.where(z > 0, 1.0, -1.0).to(z.dtype) * self.code_scale
            quantized = hard + (z - z.detach())  # value exactly the code, gradient identity to z
            indices = self.codes_to_indices(z)
            commitment = self.config.commitment_weight * torch.mean((z - hard) ** 2)
            # (B, bits, *grid) -> (B, *grid, bits)
            per_sample, codebook = self.entropy_terms(z.movedim(1, -1))
            weight = self.entropy_weight_at(step)
            entropy_loss = weight * (per_sample - self.config.codebook_entropy_gamma * codebook)
            usage, perplexity = self.usage_statistics(indices)
        metrics = {
            "quantizer/commitment": commitment.detach(),
            "quantizer/entropy_loss": entropy_loss.detach(),
            "quantizer/per_sample_entropy": per_sample.detach(),
            "quantizer/codebook_entropy": codebook.detach(),
            "quantizer/entropy_weight": torch.tensor(float(weight)),
            "quantizer/batch_usage": usage,
            "quantizer/perplexity": perplexity,
        }
        return LFQOutput(
            quantized=quantized,
            indices=indices,
            loss=commitment + entropy_loss,
            metrics=metrics,
            commitment_loss=commitment,
            entropy_loss=entropy_loss,
            per_sample_entropy=per_sample.detach(),
            codebook_entropy=codebook.detach(),
            entropy_weight=weight,
            codebook_usage=usage,
            perplexity=perplexity,
        )

    def extra_repr(self) -> str:
        c = self.config
        return f"bits={c.bits}, temperature={c.temperature}, normalization={c.normalization!r}"


def max_entropy(bits: int) -> float:
    """Entropy of the uniform distribution over 2**bits codes: bits * ln 2 nats."""
    return bits * math.log(2.0)
