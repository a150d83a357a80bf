"""Residual block of the causal 3D CNN (Open-MAGVIT2 layout, no bias, no dropout).

GroupNorm -> SiLU -> causal conv k^3 -> GroupNorm -> SiLU -> causal conv k^3, plus the input
(through a 1x1x1 conv when the channel count changes). GroupNorm is per frame (see ``norm.py``);
``conv="factorized"`` makes both convs (2+1)D (``causal_conv.FactorizedCausalConv3d``).
"""

from __future__ import annotations

import torch
from torch import nn

from videogen.tokenizer.causal_conv import CausalCache, CausalConv3d, make_conv
from videogen.tokenizer.norm import FrameGroupNorm


class ResBlock(nn.Module):
    """``(B, C_in, T, H, W)`` -> ``(B, C_out, T, H, W)``; causal in T (output frame t sees frames <= t)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int, int] = (3, 3, 3),
        num_groups: int = 32,
        eps: float = 1e-6,
        conv: str = "full",
        time_padding: str = "zeros",
    ) -> None:
        super().__init__()
        self.norm1 = FrameGroupNorm(num_groups, in_channels, eps=eps, activation="silu")
        self.conv1 = make_conv(conv, time_padding)(in_channels, out_channels, kernel_size)
        self.norm2 = FrameGroupNorm(num_groups, out_channels, eps=eps, activation="silu")
        self.conv2 = make_conv(conv, time_padding)(out_channels, out_channels, kernel_size)
        self.skip = CausalConv3d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        h = self.conv1(self.norm1(x), cache)  # norm1 / norm2 include the SiLU
        h = self.conv2(self.norm2(h), cache)
        return h.add_(x if self.skip is None else self.skip(x))  # conv output is fresh: add in place
