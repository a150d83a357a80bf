"""Causal 3D convolution: k_t - 1 frames of padding in front (none behind), k//2 around in space.

The front padding is zeros (``time_padding="zeros"``: black frames before the clip) or copies of the
first frame (``"first_frame"``, as most causal video VAEs: a still clip then looks still to every conv, so
all its latent frames are equal).

With this padding, output frame i of a conv with temporal stride s sees input frames
i*s - (k_t - 1) .. i*s: frame 0 of the output depends on input frame 0 alone, for strided convs too.
Never pad extra frames in front of a clip (see ``tests/test_causal_conv.py`` for the bug that causes).

``FactorizedCausalConv3d`` is the (2+1)D alternative (``TokenizerConfig.conv = "factorized"``): a
k x k conv on each frame and a causal k_t-tap conv over time, the time conv starting as the identity
(its last tap, the current frame, is the identity matrix, the earlier taps zero), so a fresh model is a
per-frame image model that learns motion. 9 C^2 + 3 C^2 instead of 27 C^2 weights per layer, and on a
CPU several times faster than a 3D conv (a frame conv is a 2D conv over B*T images, a time conv one
matrix product per tap).

Chunked processing (long videos, bounded memory) uses an explicit cache, in the style of the
``conv_cache`` of diffusers' CogVideoX VAE: a plain dict, created empty by the caller and passed to every
call for one stream. Each causal module keeps its own state under its own key (the module itself):
a conv keeps the input frames it has not yet consumed (the k_t - 1 frames before the next output's
window, or k_t - s frames for strided convs), so feeding a clip in consecutive chunks gives the same
output frames as one pass.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# State of one stream for chunked processing: module -> whatever that module carries between chunks.
CausalCache = dict[nn.Module, Any]

TIME_PADDINGS = ("zeros", "first_frame")


def _triple(value: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (value, value, value) if isinstance(value, int) else tuple(value)


def is_channels_last(x: torch.Tensor) -> bool:
    """True when ``x`` is laid out ``channels_last_3d`` (and not also plain contiguous)."""
    return x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous()


def pad_front(x: torch.Tensor, frames: int, mode: str = "zeros") -> torch.Tensor:
    """``(B, C, T, H, W)`` -> ``(B, C, frames + T, H, W)`` with ``frames`` zero frames (``"zeros"``) or copies
    of frame 0 (``"first_frame"``) in front, same memory format.

    One write of the result (``F.pad`` fills all of it with zeros, then copies, and its backward clones);
    the backward is a view.
    """
    if mode == "first_frame":
        return torch.cat([x[:, :, :1].expand(-1, -1, frames, -1, -1), x], dim=2)
    b, c, _, h, w = x.shape
    fmt = torch.channels_last_3d if is_channels_last(x) else torch.contiguous_format
    zeros = torch.empty((b, c, frames, h, w), dtype=x.dtype, device=x.device, memory_format=fmt).zero_()
    return torch.cat([zeros, x], dim=2)


class CausalConv3d(nn.Conv3d):
    """``nn.Conv3d`` with causal temporal padding; input and output ``(B, C, T, H, W)``.

    Output frames: ``(T + k_t - 1 - k_t) // s_t + 1`` = ``(T - 1) // s_t + 1``; spatial sizes as a
    ``"same"``-padded conv with the given spatial stride. The weight layout is that of ``nn.Conv3d``
    (``(C_out, C_in, k_t, k_h, k_w)``), so state dicts and 2D->3D inflation address ``.weight`` directly.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int] = 3,
        stride: int | tuple[int, int, int] = 1,
        bias: bool = False,
        time_padding: str = "zeros",
    ) -> None:
        kernel = _triple(kernel_size)
        if kernel[1] % 2 == 0 or kernel[2] % 2 == 0:
            raise ValueError(f"spatial kernel sizes must be odd, got {kernel}")
        if time_padding not in TIME_PADDINGS:
            raise ValueError(f"time_padding {time_padding!r} is unknown; use {' or '.join(TIME_PADDINGS)}")
        super().__init__(
            in_channels,
            out_channels,
            kernel,
            stride=_triple(stride),
            padding=(0, kernel[1] // 2, kernel[2] // 2),  # space: symmetric, done by the conv itself
            bias=bias,
        )
        self.time_pad = kernel[0] - 1
        self.time_padding = time_padding

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        """``x (B, C_in, T, H, W)`` -> ``(B, C_out, T_out, H_out, W_out)``.

        Without ``cache`` the clip is complete (``time_padding`` in front). With ``cache`` (a dict shared by all
        modules of one stream) ``x`` is the next chunk: the frames kept from earlier chunks go in front,
        and the frames this chunk leaves unconsumed are kept for the next one. A chunk too short to
        complete an output window returns zero output frames.
        """
        if cache is None:
            if self.time_pad:  # only the temporal front padding is a copy; space is padded by the conv
                x = pad_front(x, self.time_pad, self.time_padding)
            return self._conv_forward(x, self.weight, self.bias)

        previous = cache.get(self)
        if previous is None:
            x = pad_front(x, self.time_pad, self.time_padding) if self.time_pad else x
        elif previous.shape[2]:
            x = torch.cat([previous, x], dim=2)
        kernel_t, stride_t = self.kernel_size[0], self.stride[0]
        num_out = (x.shape[2] - kernel_t) // stride_t + 1 if x.shape[2] >= kernel_t else 0
        # keep the unconsumed tail (a copy, so the chunk's buffer can be freed)
        cache[self] = x[:, :, num_out * stride_t :].clone()
        if num_out == 0:
            b, _, _, h, w = x.shape
            h_out = (h + 2 * self.padding[1] - self.kernel_size[1]) // self.stride[1] + 1
            w_out = (w + 2 * self.padding[2] - self.kernel_size[2]) // self.stride[2] + 1
            return x.new_zeros(b, self.out_channels, 0, h_out, w_out)
        x = x[:, :, : (num_out - 1) * stride_t + kernel_t]
        return self._conv_forward(x, self.weight, self.bias)

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The conv of the (already padded) input; a per-frame kernel runs as a 2D conv over B*T frames
        (the same result, several times faster than ``conv3d`` on a CPU)."""
        if self.kernel_size[0] != 1 or self.stride[0] != 1:
            return super()._conv_forward(x, weight, bias)
        b, _, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, -1, h, w)  # (B, C, T, H, W) -> (B*T, C, H, W)
        y = F.conv2d(frames, weight[:, :, 0], bias, self.stride[1:], self.padding[1:])
        return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)  # (B*T, C', H', W') -> (B, C', T, H', W')


class TemporalCausalConv(CausalConv3d):
    """A ``(k_t, 1, 1)`` causal conv over time (stride ``s_t``), as one matrix product per tap.

    ``identity_init``: the last tap (the current frame) starts as the identity, the others at zero.
    """

    def __init__(
        self,
        channels: int,
        kernel_t: int,
        stride_t: int = 1,
        identity_init: bool = True,
        time_padding: str = "zeros",
    ) -> None:
        super().__init__(
            channels, channels, (kernel_t, 1, 1), stride=(stride_t, 1, 1), time_padding=time_padding
        )
        if identity_init:
            with torch.no_grad():
                self.weight.copy_(self.identity_weight())

    def identity_weight(self) -> torch.Tensor:
        """The weight of the identity in time: the last tap (the current frame) is the unit matrix."""
        weight = torch.zeros_like(self.weight)
        weight[:, :, -1, 0, 0] = torch.eye(self.weight.shape[0], dtype=weight.dtype, device=weight.device)
        return weight

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        kernel_t, stride_t = self.kernel_size[0], self.stride[0]
        num_out = (x.shape[2] - kernel_t) // stride_t + 1
        out = None
        for k in range(kernel_t):  # y_i = sum_k W_k x_{i*s + k}
            frames = x[:, :, k : k + (num_out - 1) * stride_t + 1 : stride_t]
            frames = frames.movedim(1, -1)  # (B, C, T', H, W) -> (B, T', H, W, C)
            term = F.linear(frames, weight[:, :, k, 0, 0])
            out = term if out is None else out.add_(term)
        return out.movedim(-1, 1)  # (B, T', H, W, C) -> (B, C, T', H, W)


class FactorizedCausalConv3d(nn.Module):
    """(2+1)D causal conv ``(B, C_in, T, H, W)`` -> ``(B, C_out, T_out, H_out, W_out)``, shapes as
    :class:`CausalConv3d` with the same kernel and stride.

    ``spatial``: a ``(1, k, k)`` conv with the spatial stride (and the bias, if any); ``temporal``: a ``k_t``-tap causal conv with
    the temporal stride, on the narrower side (before the spatial conv when C_in <= C_out, after it
    otherwise), identity at start. With ``k_t = 1`` there is no time conv: a per-frame conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int] = 3,
        stride: int | tuple[int, int, int] = 1,
        bias: bool = False,
        time_padding: str = "zeros",
    ) -> None:
        super().__init__()
        kernel_t, kernel_h, kernel_w = _triple(kernel_size)
        stride_t, stride_h, stride_w = _triple(stride)
        self.spatial = CausalConv3d(
            in_channels, out_channels, (1, kernel_h, kernel_w), stride=(1, stride_h, stride_w), bias=bias
        )
        self.time_first = in_channels <= out_channels
        self.temporal = (
            TemporalCausalConv(
                in_channels if self.time_first else out_channels,
                kernel_t,
                stride_t,
                time_padding=time_padding,
            )
            if kernel_t > 1 or stride_t > 1
            else None
        )

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        if self.temporal is None:
            return self.spatial(x, cache)
        if self.time_first:
            return self.spatial(self.temporal(x, cache), cache)
        return self.temporal(self.spatial(x, cache), cache)


def make_conv(kind: str, time_padding: str = "zeros"):
    """The conv a config's ``conv`` names, ``"full"`` (3D kernels) or ``"factorized"`` ((2+1)D), as a
    constructor with its ``time_padding`` set."""
    return partial(
        {"full": CausalConv3d, "factorized": FactorizedCausalConv3d}[kind], time_padding=time_padding
    )
