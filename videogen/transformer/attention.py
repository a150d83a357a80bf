"""Multi-head self-attention with selectable kernels: SDPA, xformers (CUDA) or plain math; optional rotary
positions."""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F
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


class SelfAttention(nn.Module):
    """Bidirectional attention over ``(B, L, D)``; no padding mask (every sequence is full)."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, backend: str, angles: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, L, D) -> (B, L, D)``; ``angles`` ``(L, head_dim // 2)``: rotary angles of each position
        (``videogen.transformer.rope``), applied to queries and keys; None = no rotation."""
        batch, length, dim = x.shape
        head_dim = dim // self.num_heads
        drop = self.dropout if self.training else 0.0
        q, k, v = self.qkv(x).view(batch, length, 3, self.num_heads, head_dim).unbind(2)  # (B, L, heads, hd)
        if angles is not None:
            q, k = rotate(q, angles[:, None]), rotate(k, angles[:, None])
        if backend == "xformers":
            import xformers.ops as xops

            out = xops.memory_efficient_attention(q, k, v, p=drop)
        else:
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # each (B, heads, L, head_dim)
            if backend == "sdpa":
                out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
            else:  # "math": reference kernel, softmax in float32
                scores = (q @ k.transpose(-2, -1)) * head_dim**-0.5
                probs = F.dropout(scores.float().softmax(dim=-1), drop).to(v.dtype)
                out = probs @ v
            out = out.transpose(1, 2)  # (B, heads, L, hd) -> (B, L, heads, hd)
        return self.proj(out.reshape(batch, length, dim))
