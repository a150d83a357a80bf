"""Input checks of the tokenizer: shapes, frame counts, token ranges. Errors name the value and the fix."""

from __future__ import annotations

import torch

from videogen.errors import UserError
from videogen.frame_rule import fits_frame_rule, frame_rule


class VideoShapeError(UserError, ValueError):
    """A video, latent or token tensor has a shape (or values) the tokenizer cannot take."""


def check_video(video: torch.Tensor, in_channels: int, temporal_factor: int, spatial_factor: int) -> None:
    """Raise :class:`VideoShapeError` unless ``video`` is ``(B, in_channels, 1 + t*k, H, W)``, H, W % s == 0."""
    if not isinstance(video, torch.Tensor) or not video.is_floating_point():
        kind = getattr(video, "dtype", type(video).__name__)
        raise VideoShapeError(f"video must be a float tensor in [-1, 1], got {kind}")
    if video.dim() != 5:
        raise VideoShapeError(
            f"video must have shape (B, C, T, H, W), got {tuple(video.shape)}; an image is (B, C, 1, H, W)"
        )
    b, c, t, h, w = video.shape
    if c != in_channels:
        raise VideoShapeError(
            f"video has {c} channels (shape {tuple(video.shape)}); the tokenizer needs {in_channels} "
            "(layout B C T H W)"
        )
    if not fits_frame_rule(t, temporal_factor):
        raise VideoShapeError(
            f"video has T = {t} frames; the tokenizer needs T = {frame_rule(temporal_factor)}: trim or pad the clip"
        )
    for name, size in (("H", h), ("W", w)):
        if size < 1 or size % spatial_factor:
            raise VideoShapeError(
                f"video has {name} = {size}; it must be a positive multiple of the spatial factor "
                f"{spatial_factor} (crop or resize)"
            )


def check_tokens(tokens: torch.Tensor, codebook_size: int) -> None:
    """Raise :class:`VideoShapeError` unless ``tokens`` is an int ``(B, T', H', W')`` tensor of code ids."""
    if not isinstance(tokens, torch.Tensor) or tokens.is_floating_point() or tokens.dtype == torch.bool:
        kind = getattr(tokens, "dtype", type(tokens).__name__)
        raise VideoShapeError(f"tokens must be an integer tensor (B, T', H', W'), got {kind}")
    if tokens.dim() != 4:
        raise VideoShapeError(f"tokens must have shape (B, T', H', W'), got {tuple(tokens.shape)}")
    if tokens.numel():
        low, high = int(tokens.min()), int(tokens.max())
        if low < 0 or high >= codebook_size:
            raise VideoShapeError(
                f"token ids must lie in [0, {codebook_size}), got values in [{low}, {high}] "
                "(tokens from a tokenizer with another codebook size?)"
            )


def check_latent(latent: torch.Tensor, channels: int) -> None:
    """Raise :class:`VideoShapeError` unless ``latent`` is a float ``(B, channels, T', H', W')`` tensor."""
    if latent.dim() != 5 or latent.shape[1] != channels:
        raise VideoShapeError(f"codes must have shape (B, {channels}, T', H', W'), got {tuple(latent.shape)}")


def check_chunk_frames(chunk_frames: int | None, temporal_factor: int) -> None:
    if chunk_frames is not None and (chunk_frames < 1 or chunk_frames % temporal_factor):
        raise VideoShapeError(
            f"chunk_frames = {chunk_frames}; it must be a positive multiple of the temporal factor "
            f"{temporal_factor} so chunks align with latent frames"
        )
