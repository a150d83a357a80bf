"""3D rotary position embedding (RoPE) over the ``(t, h, w)`` token grid.

Each head's query and key are split into pairs of channels; a pair is rotated by the angle
``position * frequency`` of one axis (about 1/4 of the pairs for time, 3/8 each for height and width).
A query at grid position ``p`` and a key at ``q`` then meet with a score that depends on ``p - q`` only,
not on where the pair sits in the grid: a digit's strokes look the same to attention anywhere in the
frame, and a shift between latent frames (motion) is the same pattern everywhere (RoFormer; FiT and
Lumina use the same axis split for images). The prefix tokens (task, class) are not rotated.
"""

from __future__ import annotations

import torch


def axis_pairs(head_dim: int) -> tuple[int, int, int]:
    """Channel pairs given to (time, height, width) for a head of ``head_dim`` channels (even)."""
    pairs = head_dim // 2
    spatial = pairs * 3 // 8
    return pairs - 2 * spatial, spatial, spatial


def rope_angles(
    grid: tuple[int, int, int], head_dim: int, base: float, prefix: int, device: torch.device
) -> torch.Tensor:
    """Angles ``(prefix + T*H*W, head_dim // 2)`` float32 for a ``(T, H, W)`` grid in raster order after
    ``prefix`` unrotated tokens (angle 0)."""
    parts = []
    for size, pairs in zip(grid, axis_pairs(head_dim)):
        freqs = base ** (-torch.arange(pairs, dtype=torch.float32, device=device) / max(pairs, 1))
        parts.append(torch.arange(size, dtype=torch.float32, device=device)[:, None] * freqs)  # (size, pairs)
    frames, height, width = grid
    t, h, w = parts
    angles = torch.cat(
        [
            t[:, None, None].expand(frames, height, width, -1),
            h[None, :, None].expand(frames, height, width, -1),
            w[None, None, :].expand(frames, height, width, -1),
        ],
        dim=-1,
    ).reshape(frames * height * width, -1)  # (N, head_dim // 2)
    return torch.cat([angles.new_zeros(prefix, angles.shape[1]), angles])


def rotate(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs ``(2i, 2i + 1)`` of ``x`` ``(..., head_dim)`` by ``angles`` ``(..., head_dim // 2)``
    (broadcast: ``(L, 1, head_dim // 2)`` for ``x`` ``(B, L, heads, head_dim)``)."""
    pairs = x.float().unflatten(-1, (-1, 2))  # (..., head_dim // 2, 2)
    even, odd = pairs.unbind(-1)
    cos, sin = angles.cos(), angles.sin()
    out = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)
    return out.flatten(-2).to(x.dtype)


def divided_angles(
    grid: tuple[int, int, int], head_dim: int, base: float, prefix: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Angles for divided space-time attention: ``(prefix + H*W, head_dim // 2)`` for a latent frame after
    the prefix (the time pairs at frame 0: one frame's positions share their time, so only their offsets
    in space count) and ``(T, head_dim // 2)`` for a column of latent frames (height and width at 0)."""
    frames, height, width = grid
    space = rope_angles((1, height, width), head_dim, base, prefix, device)
    time = rope_angles((frames, 1, 1), head_dim, base, 0, device)
    return space, time
