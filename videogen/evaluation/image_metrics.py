"""PSNR and SSIM per frame for videos (and images as 1-frame videos).

Conventions (the usual ones, so numbers compare with published tables):

* Inputs are float videos in ``[-1, 1]``, layout ``(B, 3, T, H, W)``; an image is ``(B, 3, 1, H, W)``.
  Both inputs are clamped to ``[-1, 1]`` (what a saved video would hold) and mapped to ``[0, 1]``;
  the data range is 1.
* Every frame is scored on its own; ``per_sample`` is the mean over frames of the per-frame values
  (not the PSNR of the clip's pooled MSE). Callers that must leave frames out (condition frames in
  frame prediction) slice ``per_frame`` or the inputs first, see ``baselines.frame_prediction_scores``.
* PSNR: ``10 * log10(1 / MSE)`` with the MSE over channels and pixels of one frame, in dB. Identical
  frames (MSE 0) are capped at :data:`PSNR_CAP_DB` = 100 dB instead of ``inf``, so averages stay finite.
* SSIM: Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5, truncated at 3.5 sigma),
  K1 = 0.01, K2 = 0.03, population (not sample) covariances, computed per RGB channel and averaged
  over channels and over the "valid" window positions (the 5-pixel border strip, where the window
  would leave the image, is dropped). This equals scikit-image's
  ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=1, channel_axis=-1)`` on the ``[0, 1]`` frame. Frames must be at least 11x11.

Region scores (``mask``): PSNR from the MSE over the region's pixels of each frame; SSIM as the mean
of the SSIM map over the valid window positions whose centre pixel is in the region. Frames without
region pixels score NaN and are left out of ``per_sample`` (the mean over the frames that have some).
With a mask that covers whole frames, both equal the unmasked scores of those frames.

Computation runs on the inputs' device in float32 (float64 when an input is float64). SSIM on CUDA
always runs in float64: cuDNN may execute float32 convolutions in TF32 (10-bit mantissa), which would
wreck the local variances E[x^2] - E[x]^2.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange

from videogen.errors import UserError

PSNR_CAP_DB = 100.0
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)  # 5 -> an 11x11 window
SSIM_K1 = 0.01
SSIM_K2 = 0.03


class FrameScores(NamedTuple):
    """A metric for a batch of clips: ``per_sample`` (B,) is the mean of ``per_frame`` (B, T) over T."""

    per_sample: torch.Tensor
    per_frame: torch.Tensor


def _check_pair(pred: torch.Tensor, target: torch.Tensor, metric: str) -> None:
    if pred.shape != target.shape:
        raise UserError(
            f"{metric}: prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}"
        )
    if pred.dim() != 5 or pred.shape[1] != 3:
        raise UserError(
            f"{metric}: expected videos (B, 3, T, H, W) (an image is (B, 3, 1, H, W)); got {tuple(pred.shape)}"
        )


def _to_unit_range(video: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped, in ``dtype``."""
    return (video.to(dtype).clamp(-1.0, 1.0) + 1.0) * 0.5


def _compute_dtype(pred: torch.Tensor, target: torch.Tensor) -> torch.dtype:
    dtype = torch.promote_types(pred.dtype, target.dtype)
    return torch.promote_types(dtype, torch.float32)


def _scores(per_frame: torch.Tensor) -> FrameScores:
    return FrameScores(per_sample=per_frame.nanmean(dim=1), per_frame=per_frame)


def _region(mask: torch.Tensor | None, pred: torch.Tensor) -> torch.Tensor | None:
    """``mask`` (B, T, H, W) or (T, H, W) bool -> (B, T, H, W) on ``pred``'s device, or None."""
    if mask is None:
        return None
    batch, _, frames, height, width = pred.shape
    if mask.dtype != torch.bool or mask.shape[-3:] != (frames, height, width):
        raise UserError(
            f"region mask must be bool (B, T, H, W) = (.., {frames}, {height}, {width}); got "
            f"{mask.dtype} {tuple(mask.shape)}"
        )
    return mask.to(pred.device).expand(batch, frames, height, width)


# ----------------------------------------------------------------------------- PSNR


def psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> FrameScores:
    """Peak signal-to-noise ratio in dB per frame, data range 1 on [0, 1] frames, capped at 100 dB.

    pred, target: float (B, 3, T, H, W) in [-1, 1]; ``mask``: optional bool (B, T, H, W) region (see the
    module doc). Returns ``FrameScores`` with ``per_frame`` (B, T) and ``per_sample`` (B,) = mean over frames.
    """
    _check_pair(pred, target, "PSNR")
    region = _region(mask, pred)
    dtype = _compute_dtype(pred, target)
    diff = _to_unit_range(pred, dtype) - _to_unit_range(target, dtype)
    if region is None:
        mse = diff.square().mean(dim=(1, 3, 4))  # (B, 3, T, H, W) -> (B, T)
    else:
        weights = region.unsqueeze(1).to(dtype)  # (B, 1, T, H, W)
        pixels = weights.sum(dim=(1, 3, 4)) * diff.shape[1]
        mse = (diff.square() * weights).sum(dim=(1, 3, 4)) / pixels  # NaN where a frame has no region
    min_mse = 10.0 ** (-PSNR_CAP_DB / 10.0)
    per_frame = -10.0 * torch.log10(mse.clamp_min(min_mse))
    return _scores(per_frame)


# ----------------------------------------------------------------------------- SSIM


def gaussian_window_1d(
    sigma: float = SSIM_SIGMA, radius: int = SSIM_RADIUS, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Normalized 1-D Gaussian weights, shape (2 * radius + 1,), as ``scipy.ndimage.gaussian_filter``."""
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (weights / weights.sum()).to(dtype)


def _valid_gaussian_filter(maps: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter without padding: (N, C, H, W) -> (N, C, H - 2r, W - 2r)."""
    channels = maps.shape[1]
    size = window.numel()
    kernel_w = window.view(1, 1, 1, size).expand(channels, 1, 1, size)
    kernel_h = window.view(1, 1, size, 1).expand(channels, 1, size, 1)
    out = F.conv2d(maps, kernel_w, groups=channels)
    return F.conv2d(out, kernel_h, groups=channels)


def ssim(
    pred: torch.Tensor, target: torch.Tensor, frames_per_chunk: int = 64, mask: torch.Tensor | None = None
) -> FrameScores:
    """Structural similarity per frame (Gaussian 11x11 window, sigma 1.5; RGB averaged; see module doc).

    pred, target: float (B, 3, T, H, W) in [-1, 1] with H, W >= 11; ``mask``: optional bool (B, T, H, W)
    region (see the module doc). Returns ``FrameScores`` with
    ``per_frame`` (B, T) in [-1, 1] (1 = identical) and ``per_sample`` (B,) = mean over frames.
    ``frames_per_chunk`` bounds memory: that many frames are filtered at once. Scores are float32
    (float64 for float64 inputs, and always on CUDA; see the module doc).
    """
    _check_pair(pred, target, "SSIM")
    region = _region(mask, pred)
    batch, _, num_frames, height, width = pred.shape
    window_size = 2 * SSIM_RADIUS + 1
    if height < window_size or width < window_size:
        raise UserError(
            f"SSIM: frames of {height}x{width} are smaller than the {window_size}x{window_size} window; "
            f"use frames of at least {window_size}x{window_size}"
        )
    dtype = _compute_dtype(pred, target)
    if pred.device.type == "cuda":  # cuDNN may run float32 convolutions in TF32, far too coarse for moments
        dtype = torch.float64
    window = gaussian_window_1d(dtype=dtype).to(pred.device)
    c1 = (SSIM_K1 * 1.0) ** 2
    c2 = (SSIM_K2 * 1.0) ** 2

    # (B, C, T, H, W) -> (B*T, C, H, W): every frame is an independent image
    x_all = rearrange(_to_unit_range(pred, dtype), "b c t h w -> (b t) c h w")
    y_all = rearrange(_to_unit_range(target, dtype), "b c t h w -> (b t) c h w")
    r = SSIM_RADIUS
    centres = None if region is None else rearrange(region, "b t h w -> (b t) h w")[:, r:-r, r:-r]
    per_image = []
    for start in range(0, x_all.shape[0], frames_per_chunk):
        x = x_all[start : start + frames_per_chunk]
        y = y_all[start : start + frames_per_chunk]
        # five local moments in one grouped convolution: (N, 5*C, H, W) -> (N, 5*C, H-10, W-10)
        moments = _valid_gaussian_filter(torch.cat([x, y, x * x, y * y, x * y], dim=1), window)
        mu_x, mu_y, e_xx, e_yy, e_xy = moments.chunk(5, dim=1)
        var_x = e_xx - mu_x * mu_x
        var_y = e_yy - mu_y * mu_y
        cov_xy = e_xy - mu_x * mu_y
        numerator = (2.0 * mu_x * mu_y + c1) * (2.0 * cov_xy + c2)
        denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
        ssim_map = (numerator / denominator).mean(dim=1)  # (N, H-10, W-10), mean over channels
        if centres is None:
            per_image.append(ssim_map.mean(dim=(1, 2)))
        else:
            inside = centres[start : start + frames_per_chunk].to(dtype)
            per_image.append((ssim_map * inside).sum(dim=(1, 2)) / inside.sum(dim=(1, 2)))
    per_frame = rearrange(torch.cat(per_image), "(b t) -> b t", b=batch, t=num_frames)
    return _scores(per_frame)
