"""Multi-head self-attention with selectable kernels: SDPA, xformers (CUDA) or plain math; optional rotary
positions."""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from videogen.errors import UserError
from videogen.transformer.rope import rotate

ATTENTION_BACKENDS = ("auto", "sdpa", "xformers", "math")


def resolve_attention(name: str, device: torch.device | str) -> str:
    """Config value -> the kernel actually used on ``device``: "sdpa", "xformers" or "math".

    "auto" picks xformers' memory-efficient attention when it is importable and the device is CUDA,
    else ``torch.nn.functional.scaled_dot_product_attention``.
    """
    device = torch.device(device)
    has_xformers = device.type == "cuda" and importlib.util.find_spec("xformers") is not None
    if name == "auto":
        return "xformers" if has_xformers else "sdpa"
    if name == "xformers" and not has_xformers:
        raise UserError(
            f"attention 'xformers' needs a CUDA device and the xformers package (device is {device.type}); "
            "use attention=auto or attention=sdpa"
        )
    if name not in ATTENTION_BACKENDS:
        raise UserError(f"attention {name!r} is unknown; use one of {', '.join(ATTENTION_BACKENDS)}")
    return name


def window_mask(
    grid: tuple[int, int, int], radius: tuple[int, int, int], prefix: int, device: torch.device
) -> torch.Tensor:
    """``(prefix + T*H*W, prefix + T*H*W)`` bool, True where a query (row) may attend to a key (column):
    grid positions within ``radius`` (frames, height, width) of each other on every axis, and the
    ``prefix`` tokens (task, class) with everything, both ways."""
    near_t, near_h, near_w = (
        (torch.arange(size, device=device)[:, None] - torch.arange(size, device=device)).abs() <= r
        for size, r in zip(grid, radius)
    )  # each (size, size): within the radius on that axis
    near = rearrange(
        near_t[:, None, None, :, None, None]
        & near_h[None, :, None, None, :, None]
        & near_w[None, None, :, None, None, :],
        "t h w u v x -> (t h w) (u v x)",
    )  # (N, N), raster order both ways
    length = prefix + len(near)
    mask = torch.ones(length, length, dtype=torch.bool, device=device)
    mask[prefix:, prefix:] = near
    return mask


class SelfAttention(nn.Module):
    """Bidirectional attention over ``(B, L, D)``; no padding mask (every sequence is full)."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        backend: str,
        angles: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(B, L, D) -> (B, L, D)``; ``angles`` ``(L, head_dim // 2)``: rotary angles of each position
        (``videogen.transformer.rope``), applied to queries and keys; None = no rotation. ``mask``
        ``(L, L)`` bool: which keys each query may attend to (:func:`window_mask`); None = all. The
        xformers kernel takes no mask."""
        batch, length, dim = x.shape
        head_dim = dim // self.num_heads
        drop = self.dropout if self.training else 0.0
        q, k, v = self.qkv(x).view(batch, length, 3, self.num_heads, head_dim).unbind(2)  # (B, L, heads, hd)
        if angles is not None:
            q, k = rotate(q, angles[:, None]), rotate(k, angles[:, None])
        if backend == "xformers":
            if mask is not None:
                raise ValueError("the xformers attention kernel takes no mask: use sdpa or math")
            import xformers.ops as xops

            out = xops.memory_efficient_attention(q, k, v, p=drop)
        else:
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # each (B, heads, L, head_dim)
            if backend == "sdpa":
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
            else:  # "math": reference kernel, softmax in float32
                scores = (q @ k.transpose(-2, -1)) * head_dim**-0.5
                if mask is not None:
                    scores = scores.masked_fill(~mask, float("-inf"))
                probs = F.dropout(scores.float().softmax(dim=-1), drop).to(v.dtype)
                out = probs @ v
            out = out.transpose(1, 2)  # (B, heads, L, hd) -> (B, L, heads, hd)
        return self.proj(out.reshape(batch, length, dim))
