"""Per-frame GroupNorm and the decoder's adaptive GroupNorm (conditioned on the quantized latent).

Normalization statistics are taken over (channels of a group, H, W) *of each frame*, never across time:
statistics over T would let frame 0 see the future and make chunked encoding differ from one pass.
(Open-MAGVIT2 normalizes over T as well; with per-frame statistics causality and chunking are exact.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def frame_group_norm(
    x: torch.Tensor,
    num_groups: int,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-6,
    activation: str = "none",
) -> torch.Tensor:
    """GroupNorm of each frame of ``x (B, C, T, H, W)`` on its own (4-D and 3-D inputs: plain GroupNorm),
    then ``activation`` (``"silu"`` or ``"none"``). Output has the dtype and memory format of ``x``.

    In ``channels_last_3d`` memory (physically ``B T H W C``) the fold of T into the batch is a free
    view; in contiguous memory it costs a transpose copy. bf16/fp16 inputs are normalized (and
    activated) in fp32: more accurate statistics, and on CPU the fp32 kernels with the casts take
    about 2/3 of the CPU time of the bf16 GroupNorm + SiLU (forward + backward, measured).
    """
    dtype = x.dtype
    if dtype in (torch.bfloat16, torch.float16):
        x = x.float()
    if weight is not None and weight.dtype != x.dtype:  # bf16 parameters (DeepSpeed bf16) on fp32 math
        weight = weight.to(x.dtype)
    if bias is not None and bias.dtype != x.dtype:
        bias = bias.to(x.dtype)
    if x.dim() == 5:
        b, c, t, h, w = x.shape
        folded = x.transpose(1, 2).reshape(b * t, c, h, w)  # (B, C, T, H, W) -> (B*T, C, H, W)
        out = F.group_norm(folded, num_groups, weight, bias, eps)
        out = out.reshape(b, t, c, h, w).transpose(1, 2)  # (B*T, C, H, W) -> (B, C, T, H, W)
    else:
        out = F.group_norm(x, num_groups, weight, bias, eps)
    if activation == "silu":
        out = F.silu(out)
    return out.to(dtype)


class FrameGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` (same parameters and state-dict keys) applied per frame of a ``(B, C, T, H, W)``
    clip, followed by ``activation`` (``"silu"`` or ``"none"``)."""

    def __init__(
        self, num_groups: int, num_channels: int, eps: float = 1e-6, activation: str = "none"
    ) -> None:
        if activation not in ("silu", "none"):
            raise ValueError(f"activation must be 'silu' or 'none', got {activation!r}")
        super().__init__(num_groups, num_channels, eps=eps)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return frame_group_norm(x, self.num_groups, self.weight, self.bias, self.eps, self.activation)


def latent_frames_to_frames(values: torch.Tensor, num_frames: int, frames_per_latent: int, first_chunk: bool):
    """Spread per-latent-frame values ``(B, T', ...)`` over ``num_frames`` frames of a decoder level.

    A causal decoder level at ``frames_per_latent`` = r frames per latent frame holds, for a whole clip,
    frame 0 (from latent 0) then r frames per later latent: frame f belongs to latent ceil(f / r).
    Later chunks of a stream hold whole groups of r: local frame f belongs to local latent f // r.
    """
    index = torch.arange(num_frames, device=values.device)
    index = (
        (index + frames_per_latent - 1) // frames_per_latent if first_chunk else index // frames_per_latent
    )
    return values.index_select(1, index)


class AdaptiveGroupNorm(nn.Module):
    """GroupNorm without affine, then ``scale * x + shift`` from the quantized latent (decoder only).

    scale = Linear(per-channel std of the latent), shift = Linear(per-channel mean), both over (H', W')
    of each latent frame, applied to the decoder frames that latent frame covers (causal). The scale
    map starts at weight 0 / bias 1 and the shift map at 0, so a fresh model starts as plain GroupNorm.
    """

    def __init__(
        self, channels: int, latent_channels: int, num_groups: int, eps: float, frames_per_latent: int
    ) -> None:
        super().__init__()
        self.num_groups = num_groups
        self.eps = eps
        self.frames_per_latent = frames_per_latent
        self.scale = nn.Linear(latent_channels, channels)
        self.shift = nn.Linear(latent_channels, channels)
        nn.init.zeros_(self.scale.weight)
        nn.init.ones_(self.scale.bias)
        nn.init.zeros_(self.shift.weight)
        nn.init.zeros_(self.shift.bias)

    def forward(self, x: torch.Tensor, latent: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        """``x (B, C, T, H, W)``, ``latent (B, C_z, T', H', W')`` (the chunk's latent frames) -> like ``x``."""
        first_chunk = cache is None or self not in cache
        if cache is not None:
            cache[self] = True
        var, mean = torch.var_mean(latent, dim=(3, 4), correction=0)  # (B, C_z, T')
        std = torch.sqrt(var + self.eps)
        scale = self.scale(std.transpose(1, 2))  # (B, T', C)
        shift = self.shift(mean.transpose(1, 2))
        scale = latent_frames_to_frames(scale, x.shape[2], self.frames_per_latent, first_chunk)  # (B, T, C)
        shift = latent_frames_to_frames(shift, x.shape[2], self.frames_per_latent, first_chunk)
        normed = frame_group_norm(x, self.num_groups, None, None, self.eps)
        # (B, T, C) -> (B, C, T, 1, 1)
        scale = scale.transpose(1, 2)[..., None, None].to(normed.dtype)
        shift = shift.transpose(1, 2)[..., None, None].to(normed.dtype)
        return torch.addcmul(shift, normed, scale)
