"""Causal 3D-CNN decoder: quantized latent ``(B, bits, 1 + k, h, w)`` -> video ``(B, 3, 1 + t*k, h*s, w*s)``.

Mirror of the encoder: conv_in; mid ResBlocks; per level from the top, an adaptive GroupNorm
conditioned on the latent, ``num_res_blocks`` ResBlocks, then (all levels but the first) a
depth-to-space upsampler mirroring the encoder's downsampler below it; GroupNorm -> SiLU -> conv to RGB.
Output frame f (f in 4j-3..4j) depends on latent frames <= j only.
"""

from __future__ import annotations

import torch
from torch import nn

from videogen.tokenizer.causal_conv import CausalCache, CausalConv3d
from videogen.tokenizer.config import TokenizerConfig
from videogen.tokenizer.norm import AdaptiveGroupNorm, FrameGroupNorm
from videogen.tokenizer.resblock import ResBlock
from videogen.tokenizer.upsample import DepthToSpaceUpsample


class Decoder(nn.Module):
    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        kernel = (config.temporal_kernel_size, config.spatial_kernel_size, config.spatial_kernel_size)
        channels = config.level_channels
        bits = config.lfq.bits
        block = dict(kernel_size=kernel, num_groups=config.num_groups, eps=config.norm_eps)

        previous = channels[-1]
        self.conv_in = CausalConv3d(bits, previous, kernel)
        self.mid = nn.ModuleList(ResBlock(previous, previous, **block) for _ in range(config.num_mid_blocks))
        self.levels = nn.ModuleList()  # levels[0] is the top (coarsest) level
        frames_per_latent = 1
        for i in reversed(range(len(channels))):
            width = channels[i]
            level = nn.Module()
            level.norm = AdaptiveGroupNorm(
                previous, bits, config.num_groups, config.norm_eps, frames_per_latent
            )
            level.blocks = nn.ModuleList(
                ResBlock(previous if j == 0 else width, width, **block) for j in range(config.num_res_blocks)
            )
            if i > 0:
                factors = (2 if config.temporal_downsample[i - 1] else 1, 2, 2)
                level.upsample = DepthToSpaceUpsample(width, factors, kernel)
                frames_per_latent *= factors[0]
            else:
                level.upsample = None
            self.levels.append(level)
            previous = width
        self.norm_out = FrameGroupNorm(config.num_groups, previous, eps=config.norm_eps, activation="silu")
        self.conv_out = CausalConv3d(previous, config.in_channels, kernel, bias=True)

    def forward(self, latent: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        """``latent (B, bits, T', H', W')`` (+-1 codes) -> ``(B, C_in, T, H, W)``, T = 1 + t*(T'-1) for a clip."""
        x = self.conv_in(latent, cache)
        for block in self.mid:
            x = block(x, cache)
        for level in self.levels:
            x = level.norm(x, latent, cache)
            for block in level.blocks:
                x = block(x, cache)
            if level.upsample is not None:
                x = level.upsample(x, cache)
        return self.conv_out(self.norm_out(x), cache)
