"""Tiny tokenizers for tests (here and in other parts' tests): milliseconds per clip on a CPU.

``tiny_config()``: temporal /4 (17 -> 5 latent frames), spatial /4, 64 codes, 8-16 channels.
``tiny_model()`` randomizes the norm parameters too (the adaptive norms start as identity maps, which
would hide a wrong conditioning path from a test).
"""

from __future__ import annotations

import torch

from videogen.config_loader import from_dict
from videogen.tokenizer.causal_conv import TemporalCausalConv
from videogen.tokenizer.config import QUANTIZERS, TokenizerConfig
from videogen.tokenizer.model import VideoTokenizer
from videogen.tokenizer.norm import AdaptiveGroupNorm

_TINY_QUANTIZERS = {  # 64 codes each
    "lfq": {"bits": 6},
    "bsq": {"bits": 6},
    "fsq": {"levels": (4, 4, 4)},
    "vq": {"codebook_size": 64, "dim": 4},
}


def tiny_config(**overrides) -> TokenizerConfig:
    """Temporal /4 (17 -> 5), spatial /4, 64 codes, 8-16 channels. ``quantizer="fsq"`` picks another
    quantizer; a section such as ``lfq={...}`` overrides fields of its quantizer."""
    fields = dict(
        base_channels=8,
        channel_multipliers=(1, 2, 2),
        num_res_blocks=1,
        num_mid_blocks=1,
        temporal_downsample=(True, True),
        num_groups=4,
    )
    fields.update(overrides)
    for kind in QUANTIZERS:
        fields[kind] = {**_TINY_QUANTIZERS[kind], **fields.get(kind, {})}
    config = from_dict(TokenizerConfig, fields)
    config.validate()
    return config


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter random values (the adaptive norms and the factorized convs' time convs start
    as identity maps otherwise)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, AdaptiveGroupNorm):
                for p in module.parameters():
                    p.copy_(
                        torch.randn(p.shape, generator=generator) * 0.3
                        + (1.0 if p is module.scale.bias else 0.0)
                    )
            elif isinstance(module, TemporalCausalConv):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * 0.5)
            elif isinstance(module, torch.nn.GroupNorm) and module.affine:
                module.weight.copy_(1 + 0.2 * torch.randn(module.weight.shape, generator=generator))
                module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=generator))
    return model


def tiny_model(dtype: torch.dtype = torch.float64, seed: int = 0, **overrides) -> VideoTokenizer:
    """A randomized ``tiny_config`` model in eval mode (float64 by default: exact comparisons)."""
    torch.manual_seed(seed)
    return randomize_(VideoTokenizer(tiny_config(**overrides)), seed).to(dtype).eval()


def random_video(batch: int, frames: int, height: int, width: int, dtype=torch.float64, seed: int = 1):
    """Uniform noise in [-1, 1], ``(B, 3, T, H, W)``."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 3, frames, height, width, generator=generator) * 2 - 1).to(dtype)
