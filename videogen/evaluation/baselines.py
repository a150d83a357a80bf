"""Trivial baselines and frame-prediction scoring.

A frame-prediction model is only interesting if it beats copying the last condition frame forward;
report that baseline next to every prediction result, scored the same way.
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
