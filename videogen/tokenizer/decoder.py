"""Causal 3D-CNN decoder: code vectors ``(B, C_z, 1 + k, h, w)`` -> video ``(B, 3, 1 + t*k, h*s, w*s)``.

Mirror of the encoder: conv_in; mid ResBlocks; per level from the top, an adaptive GroupNorm
conditioned on the latent, ``num_res_blocks`` ResBlocks, then (all levels but the first) a
depth-to-space upsampler mirroring the encoder's downsampler below it; GroupNorm -> SiLU -> conv to RGB
(to 3 p^2 channels and depth-to-space when the encoder has a ``patch_size`` p stem).
Output frame f (f in 4j-3..4j) depends on latent frames <= j only.
"""

from __future__ import annotations

import torch
from torch import nn

from videogen.tokenizer.causal_conv import CausalCache, make_conv
from videogen.tokenizer.config import TokenizerConfig
from videogen.tokenizer.norm import AdaptiveGroupNorm, FrameGroupNorm
from videogen.tokenizer.resblock import ResBlock
from videogen.tokenizer.upsample import DepthToSpaceUpsample, depth_to_space_3d


class Decoder(nn.Module):
    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        kernel = (config.temporal_kernel_size, config.spatial_kernel_size, config.spatial_kernel_size)
        channels = config.level_channels
        latent_channels = config.latent_channels
        block = dict(
            kernel_size=kernel,
            num_groups=config.num_groups,
            eps=config.norm_eps,
            conv=config.conv,
            time_padding=config.time_padding,
        )
        conv = make_conv(config.conv, config.time_padding)

        previous = channels[-1]
        self.conv_in = conv(latent_channels, previous, kernel)
        self.mid = nn.ModuleList(ResBlock(previous, previous, **block) for _ in range(config.num_mid_blocks))
        self.levels = nn.ModuleList()  # levels[0] is the top (coarsest) level
        frames_per_latent = 1
        for i in reversed(range(len(channels))):
            width = channels[i]
            level = nn.Module()
            level.norm = AdaptiveGroupNorm(
                previous, latent_channels, config.num_groups, config.norm_eps, frames_per_latent
            )
            level.blocks = nn.ModuleList(
                ResBlock(previous if j == 0 else width, width, **block) for j in range(config.num_res_blocks)
            )
            if i > 0:
                stride_t, stride_s = config.level_strides[i - 1]
                factors = (stride_t, stride_s, stride_s)
                level.upsample = DepthToSpaceUpsample(
                    width, factors, kernel, config.conv, config.time_padding
                )
                frames_per_latent *= factors[0]
            else:
                level.upsample = None
            self.levels.append(level)
            previous = width
        self.norm_out = FrameGroupNorm(config.num_groups, previous, eps=config.norm_eps, activation="silu")
        self.patch_size = config.patch_size
        self.conv_out = conv(previous, config.in_channels * self.patch_size**2, kernel, bias=True)

    @property
    def weight_dtype(self) -> torch.dtype:
        """The dtype of the decoder's weights (what its input must have)."""
        return self.norm_out.weight.dtype

    def forward(self, latent: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        """``latent (B, C_z, T', H', W')`` (code vectors) -> ``(B, C_in, T, H, W)``, T = 1 + t*(T'-1) for a clip."""
        x = self.conv_in(latent, cache)
        for block in self.mid:
            x = block(x, cache)
        for level in self.levels:
            x = level.norm(x, latent, cache)
            for block in level.blocks:
                x = block(x, cache)
            if level.upsample is not None:
                x = level.upsample(x, cache)
        x = self.conv_out(self.norm_out(x), cache)
        return depth_to_space_3d(x, (1, self.patch_size, self.patch_size)) if self.patch_size > 1 else x
