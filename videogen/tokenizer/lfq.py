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

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import nn

from videogen.tokenizer.config import LFQConfig
from videogen.tokenizer.lfq_entropy import factorized_entropy_terms
from videogen.tokenizer.norm import frame_group_norm


@dataclass
class LFQOutput:
    """What the quantizer gives for latents ``z (B, bits, *grid)``. Losses are weighted and ready to add."""

    quantized: torch.Tensor  # (B, bits, *grid) exactly +-1, straight-through gradient to z
    indices: torch.Tensor  # (B, *grid) int64 in [0, 2**bits)
    loss: torch.Tensor  # commitment_loss + entropy_loss
    commitment_loss: torch.Tensor  # commitment_weight * mean((z - sg(q))^2)
    entropy_loss: torch.Tensor  # entropy_weight(step) * (per_sample_entropy - gamma * codebook_entropy)
    per_sample_entropy: torch.Tensor  # mean_n H(p_n), nats
    codebook_entropy: torch.Tensor  # H(mean_n p_n), nats (global batch when distributed)
    entropy_weight: float  # the annealed weight used at this step
    codebook_usage: torch.Tensor  # fraction of the 2**bits codes used by this batch's tokens (this rank)
    perplexity: torch.Tensor  # exp(entropy of this batch's token histogram); 2**bits at most


def _no_autocast(device: torch.device):
    if device.type in ("cpu", "cuda", "xpu", "mps"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


class LFQ(nn.Module):
    """Lookup-free quantizer with exact factorized entropy loss. No parameters."""

    def __init__(
        self,
        bits: int,
        temperature: float = 0.01,
        commitment_weight: float = 0.25,
        entropy_weight: float = 0.1,
        codebook_entropy_gamma: float = 1.0,
        entropy_anneal_start: float = 3.0,
        entropy_anneal_steps: int = 2000,
        normalization: str = "group_norm",
        norm_groups: int = 1,
        soft_clamp_value: float = 10.0,
    ) -> None:
        super().__init__()
        self.config = LFQConfig(
            bits=bits,
            temperature=temperature,
            commitment_weight=commitment_weight,
            entropy_weight=entropy_weight,
            codebook_entropy_gamma=codebook_entropy_gamma,
            entropy_anneal_start=entropy_anneal_start,
            entropy_anneal_steps=entropy_anneal_steps,
            normalization=normalization,
            norm_groups=norm_groups,
            soft_clamp_value=soft_clamp_value,
        )
        self.config.validate()

    @classmethod
    def from_config(cls, config: LFQConfig) -> LFQ:
        return cls(**vars(config))

    @property
    def bits(self) -> int:
        return self.config.bits

    @property
    def codebook_size(self) -> int:
        return 2**self.config.bits

    # ------------------------------------------------------------------ codes <-> indices

    def _powers(self, device: torch.device) -> torch.Tensor:
        return 2 ** torch.arange(self.bits, device=device, dtype=torch.int64)

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """``(B, bits, *grid)`` codes (sign decides; > 0 is bit 1) -> ``(B, *grid)`` int64 indices."""
        shape = (1, self.bits) + (1,) * (codes.dim() - 2)
        return ((codes > 0).long() * self._powers(codes.device).view(shape)).sum(1)

    def indices_to_codes(self, indices: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``(B, *grid)`` int64 indices -> ``(B, bits, *grid)`` codes in {-1, +1}."""
        shape = (1, self.bits) + (1,) * (indices.dim() - 1)
        bits = (indices.long().unsqueeze(1) >> torch.arange(self.bits, device=indices.device).view(shape)) & 1
        return bits.to(dtype) * 2 - 1

    # ------------------------------------------------------------------ pieces

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """The pre-sign normalization of ``z (B, bits, *grid)`` (per frame for 5-D input), in fp32 or wider."""
        z = z.to(torch.promote_types(z.dtype, torch.float32))
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
        """``z (..., bits)`` -> (mean per-sample entropy, codebook entropy), nats, at this temperature."""
        if z.shape[-1] != self.bits:
            raise ValueError(f"entropy_terms needs latents of shape (..., {self.bits}), got {tuple(z.shape)}")
        with _no_autocast(z.device):
            return factorized_entropy_terms(z, self.config.temperature)

    @torch.no_grad()
    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference: ``z (B, bits, *grid)`` -> (codes ``(B, bits, *grid)`` +-1, indices ``(B, *grid)``)."""
        with _no_autocast(z.device):
            z = self.normalize(z)
            codes = torch.where(z > 0, 1.0, -1.0).to(z.dtype)
            return codes, self.codes_to_indices(z)

    @torch.no_grad()
    def usage_statistics(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(fraction of codes used, perplexity = exp(entropy of the index histogram)) of ``indices``."""
        flat = indices.reshape(-1)
        counts = torch.zeros(self.codebook_size, device=flat.device).index_add_(
            0, flat, torch.ones_like(flat, dtype=torch.float32)
        )
        usage = (counts > 0).float().mean()
        freq = counts / counts.sum().clamp_min(1)
        entropy = -(freq * torch.log(freq.clamp_min(1e-30))).sum()
        return usage, entropy.exp()

    # ------------------------------------------------------------------ forward

    def forward(self, z: torch.Tensor, step: int | None = None) -> LFQOutput:
        """Quantize ``z (B, bits, *grid)`` (channel-first, any dtype) with losses and statistics."""
        if z.dim() < 2 or z.shape[1] != self.bits:
            raise ValueError(f"LFQ needs latents (B, {self.bits}, ...), got {tuple(z.shape)}")
        with _no_autocast(z.device):
            z = self.normalize(z)
            hard = torch.where(z > 0, 1.0, -1.0).to(z.dtype)
            quantized = hard + (z - z.detach())  # value exactly +-1, gradient identity to z
            indices = self.codes_to_indices(z)
            commitment = self.config.commitment_weight * torch.mean((z - hard) ** 2)
            per_sample, codebook = self.entropy_terms(
                z.movedim(1, -1)
            )  # (B, bits, *grid) -> (B, *grid, bits)
            weight = self.entropy_weight_at(step)
            entropy_loss = weight * (per_sample - self.config.codebook_entropy_gamma * codebook)
            usage, perplexity = self.usage_statistics(indices)
        return LFQOutput(
            quantized=quantized,
            indices=indices,
            loss=commitment + entropy_loss,
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
