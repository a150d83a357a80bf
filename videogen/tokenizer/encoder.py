"""Causal 3D-CNN encoder: video ``(B, 3, 1 + t*k, H, W)`` -> latent ``(B, C_z, 1 + k, H/s, W/s)``.

Optional space-to-depth stem (``patch_size`` p: p x p patches -> 3 p^2 channels); conv_in; per level ``num_res_blocks`` ResBlocks then (all levels but the last) a stride-2 causal conv,
stride (s_t, s_s, s_s) from ``level_strides`` (temporal / spatial downsampling flags); mid ResBlocks;
GroupNorm -> SiLU -> 1x1x1 conv to the quantizer's ``C_z = latent_channels``. Latent frame j sees input frames <= t*j.
"""

from __future__ import annotations

import torch
from torch import nn

from videogen.tokenizer.causal_conv import CausalCache, CausalConv3d, make_conv
from videogen.tokenizer.config import TokenizerConfig
from videogen.tokenizer.norm import FrameGroupNorm
from videogen.tokenizer.resblock import ResBlock
from videogen.tokenizer.upsample import space_to_depth


class Encoder(nn.Module):
    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        spatial = config.encoder_spatial_kernel_size or config.spatial_kernel_size
        kernel = (config.temporal_kernel_size, spatial, spatial)
        channels = config.level_channels
        block = dict(
            kernel_size=kernel,
            num_groups=config.num_groups,
            eps=config.norm_eps,
            conv=config.conv,
            time_padding=config.time_padding,
        )
        conv = make_conv(config.conv, config.time_padding)

        self.patch_size = config.patch_size
        self.conv_in = conv(config.in_channels * self.patch_size**2, channels[0], kernel)
        self.levels = nn.ModuleList()
        previous = channels[0]
        for i, width in enumerate(channels):
            level = nn.Module()
            level.blocks = nn.ModuleList(
                ResBlock(previous if j == 0 else width, width, **block) for j in range(config.num_res_blocks)
            )
            if i < len(channels) - 1:
                stride_t, stride_s = config.level_strides[i]
                stride = (stride_t, stride_s, stride_s)
                level.downsample = conv(width, width, kernel, stride=stride)
            else:
                level.downsample = None
            self.levels.append(level)
            previous = width
        self.mid = nn.ModuleList(ResBlock(previous, previous, **block) for _ in range(config.num_mid_blocks))
        self.norm_out = FrameGroupNorm(config.num_groups, previous, eps=config.norm_eps, activation="silu")
        self.conv_out = CausalConv3d(previous, config.latent_channels, 1, bias=True)

    def forward(self, video: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        """``video (B, C_in, T, H, W)`` -> ``z (B, C_z, T', H', W')`` (unquantized); cache: chunked stream."""
        x = self.conv_in(space_to_depth(video, self.patch_size), cache)
        for level in self.levels:
            for block in level.blocks:
                x = block(x, cache)
            if level.downsample is not None:
                x = level.downsample(x, cache)
        for block in self.mid:
            x = block(x, cache)
        return self.conv_out(self.norm_out(x), cache)
