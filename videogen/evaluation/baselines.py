"""Trivial, non-learned baselines for every COMMIT task, and the scores of a region.

A model is only interesting if it beats the simplest fill of what it was asked for; report the
baseline next to every result, scored the same way, on the same region:

- frame prediction: :func:`copy_last_frame` (the last condition frame, repeated);
- interpolation: :func:`linear_blend` (each middle frame a linear blend of the first and the last);
- inpainting: :func:`mean_fill` (the hole filled, frame by frame, with the mean colour of the known pixels);
- outpainting: :func:`edge_replicate` (the known box's border pixels extended outward).

Clips are ``(B, C, T, H, W)``; values pass through unchanged (any range). Known pixels are kept.
"""

from __future__ import annotations

import torch

from videogen.errors import UserError
from videogen.evaluation.image_metrics import FrameScores, psnr, ssim


def _check_num_cond_frames(num_frames: int, num_cond_frames: int) -> None:
    if not 1 <= num_cond_frames < num_frames:
        raise UserError(
            f"num_cond_frames={num_cond_frames} must be in [1, {num_frames - 1}] for clips of {num_frames} frames"
        )


def copy_last_frame(clip: torch.Tensor, num_cond_frames: int) -> torch.Tensor:
    """Copy-last-frame prediction: (B, C, T, H, W) -> (B, C, T, H, W).

    Frames ``0 .. c-1`` are the condition frames, kept as they are; frames ``c .. T-1`` all repeat
    frame ``c-1`` (c = ``num_cond_frames``). Values pass through unchanged (range of ``clip``).
    """
    if clip.dim() != 5:
        raise UserError(f"copy_last_frame: expected a clip (B, C, T, H, W); got shape {tuple(clip.shape)}")
    num_frames = clip.shape[2]
    _check_num_cond_frames(num_frames, num_cond_frames)
    last = clip[:, :, num_cond_frames - 1 : num_cond_frames]  # (B, C, 1, H, W)
    predicted = last.expand(-1, -1, num_frames - num_cond_frames, -1, -1)
    return torch.cat([clip[:, :, :num_cond_frames], predicted], dim=2)


def linear_blend(clip: torch.Tensor) -> torch.Tensor:
    """Interpolation baseline: (B, C, T, H, W) -> the same clip with frames ``1 .. T-2`` replaced by
    ``(1 - a) * first + a * last``, ``a = t / (T - 1)``; the first and last frames are kept."""
    if clip.dim() != 5 or clip.shape[2] < 3:
        raise UserError(f"linear_blend: expected a clip (B, C, T >= 3, H, W); got shape {tuple(clip.shape)}")
    frames = clip.shape[2]
    alpha = torch.linspace(0.0, 1.0, frames, dtype=clip.dtype, device=clip.device).view(1, 1, -1, 1, 1)
    return (1 - alpha) * clip[:, :, :1] + alpha * clip[:, :, -1:]


def mean_fill(clip: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Inpainting baseline: each frame's unknown pixels set to the mean colour of its known pixels.

    clip (B, C, T, H, W); known: bool (B, T, H, W) (or broadcastable), True where a pixel is given.
    A frame without known pixels is filled with 0.
    """
    if clip.dim() != 5:
        raise UserError(f"mean_fill: expected a clip (B, C, T, H, W); got shape {tuple(clip.shape)}")
    weights = known.to(clip.dtype).expand(clip.shape[0], *clip.shape[2:]).unsqueeze(1)  # (B, 1, T, H, W)
    count = weights.sum(dim=(3, 4), keepdim=True)
    mean = (clip * weights).sum(dim=(3, 4), keepdim=True) / count.clamp_min(1)  # (B, C, T, 1, 1)
    return torch.where(weights.bool(), clip, mean.expand_as(clip))


def edge_replicate(clip: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """Outpainting baseline: keep ``box`` = (y0, x0, y1, x1) (half-open) and extend its border pixels
    outward (every pixel takes the value of the nearest pixel of the box). (B, C, T, H, W) -> same shape."""
    if clip.dim() != 5:
        raise UserError(f"edge_replicate: expected a clip (B, C, T, H, W); got shape {tuple(clip.shape)}")
    height, width = clip.shape[3:]
    y0, x0, y1, x1 = box
    if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
        raise UserError(f"edge_replicate: box {box} is not inside a {height}x{width} frame")
    rows = torch.arange(height, device=clip.device).clamp(y0, y1 - 1)
    cols = torch.arange(width, device=clip.device).clamp(x0, x1 - 1)
    return clip[:, :, :, rows][:, :, :, :, cols]


def region_scores(pred: torch.Tensor, truth: torch.Tensor, region: torch.Tensor) -> dict[str, FrameScores]:
    """PSNR and SSIM over ``region`` (bool (B, T, H, W): the predicted / filled pixels) only.

    Frames without region pixels are left out (see ``image_metrics``); ``per_sample`` (B,) is the mean
    over the frames that have some.
    """
    return {"psnr": psnr(pred, truth, mask=region), "ssim": ssim(pred, truth, mask=region)}


def frame_prediction_scores(
    pred: torch.Tensor, truth: torch.Tensor, num_cond_frames: int
) -> dict[str, FrameScores]:
    """PSNR and SSIM over the predicted frames only (the first ``num_cond_frames`` are left out).

    pred, truth: (B, 3, T, H, W) in [-1, 1], the full clips including condition frames.
    Returns ``{"psnr": FrameScores, "ssim": FrameScores}``; each ``per_frame`` is (B, T - c) for
    frames c .. T-1 and ``per_sample`` (B,) is their mean (conventions in ``image_metrics``).
    """
    if pred.shape != truth.shape or pred.dim() != 5:
        raise UserError(
            f"frame prediction scores: prediction {tuple(pred.shape)} and truth {tuple(truth.shape)} "
            "must be clips (B, 3, T, H, W) of one shape"
        )
    _check_num_cond_frames(pred.shape[2], num_cond_frames)
    pred_future = pred[:, :, num_cond_frames:]
    truth_future = truth[:, :, num_cond_frames:]
    return {"psnr": psnr(pred_future, truth_future), "ssim": ssim(pred_future, truth_future)}
