"""Decoder upsampler: causal conv to ``C * s_t * s_h * s_w`` channels, 3D depth-to-space, drop frames.

Depth-to-space turns latent frame j into frames j*s_t .. j*s_t + s_t - 1; dropping the first s_t - 1
output frames of a clip makes 1 + k input frames give 1 + s_t*k frames, with frame 0 from frame 0 alone
and every later group of s_t frames from one input frame (causal: nothing sees a later input frame).
Channel order of the conv output is ``(c, s_t, s_h, s_w)`` (c slowest); inflation relies on it.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from videogen.tokenizer.causal_conv import CausalCache, is_channels_last, make_conv


def depth_to_space_3d(x: torch.Tensor, factors: tuple[int, int, int]) -> torch.Tensor:
    """``(B, C*st*sh*sw, T, H, W)`` -> ``(B, C, T*st, H*sh, W*sw)``, one copy, keeping the memory format."""
    st, sh, sw = factors
    if is_channels_last(x):
        b, _, t, h, w = x.shape
        # physical (B, T, H, W, C st sh sw) -> physical (B, T st, H sh, W sw, C), logical B C T H W
        y = rearrange(
            x.permute(0, 2, 3, 4, 1), "b t h w (c st sh sw) -> b t st h sh w sw c", st=st, sh=sh, sw=sw
        )
        y = y.reshape(b, t * st, h * sh, w * sw, -1)
        return y.permute(0, 4, 1, 2, 3)
    return rearrange(x, "b (c st sh sw) t h w -> b c (t st) (h sh) (w sw)", st=st, sh=sh, sw=sw)


def space_to_depth(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(B, C, T, H, W)`` -> ``(B, C*p*p, T, H/p, W/p)`` (channel order ``(c, p_h, p_w)``, c slowest), the
    inverse of ``depth_to_space_3d(y, (1, p, p))``, keeping the memory format; ``p = 1`` returns ``x``."""
    if patch_size == 1:
        return x
    p = patch_size
    if is_channels_last(x):
        y = rearrange(x.permute(0, 2, 3, 4, 1), "b t (h ph) (w pw) c -> b t h w (c ph pw)", ph=p, pw=p)
        return y.permute(0, 4, 1, 2, 3)
    return rearrange(x, "b c t (h ph) (w pw) -> b (c ph pw) t h w", ph=p, pw=p)


class DepthToSpaceUpsample(nn.Module):
    """``(B, C, T, H, W)`` -> ``(B, C, 1 + s_t*(T-1), s_h*H, s_w*W)`` for a whole clip.

    With a chunk cache, only the stream's first chunk drops the first ``s_t - 1`` frames; later chunks
    give ``s_t * T`` frames, so chunks concatenate to the one-pass output.
    """

    def __init__(
        self,
        channels: int,
        factors: tuple[int, int, int],
        kernel_size: tuple[int, int, int],
        conv: str = "full",
        time_padding: str = "zeros",
    ) -> None:
        super().__init__()
        self.factors = tuple(factors)
        st, sh, sw = self.factors
        self.conv = make_conv(conv, time_padding)(channels, channels * st * sh * sw, kernel_size)

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        first_chunk = cache is None or self not in cache
        if cache is not None:
            cache[self] = True
        y = depth_to_space_3d(self.conv(x, cache), self.factors)
        drop = self.factors[0] - 1
        return y[:, :, drop:] if drop and first_chunk else y
