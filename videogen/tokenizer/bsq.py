"""Binary spherical quantization (BSQ-ViT, Zhao et al. 2024): LFQ on the unit sphere.

u = z / ||z|| over the ``bits`` channels of each position, code q = sign(u) / sqrt(bits): every code has
norm 1, so ||u - q|| is bounded whatever the encoder does (no commitment loss needed; the default
weight is 0). Token ids are LFQ's (bit i = [u_i > 0], channel 0 least significant), and the entropy terms
are LFQ's exact factorized ones for p(c) = softmax over the codes of 2 <u, c> / tau.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from videogen.tokenizer.config import BSQConfig
from videogen.tokenizer.lfq import LFQ
from videogen.tokenizer.quantizer import at_least_fp32


class BSQ(LFQ):
    """``BSQ(bits, **options)``: ``options`` are the other :class:`BSQConfig` fields. No parameters."""

    config_class = BSQConfig

    @property
    def code_scale(self) -> float:
        return 1.0 / math.sqrt(self.bits)

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """``z (B, bits, *grid)`` -> unit vectors over the channel dimension, in fp32 or wider."""
        return F.normalize(at_least_fp32(z), dim=1, eps=1e-6)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, temperature={self.config.temperature}, codes on the unit sphere"
