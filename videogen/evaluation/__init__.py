"""Evaluation metrics: PSNR, SSIM, Frechet distance (FVD with a user-supplied I3D), codebook usage,
and the copy-last-frame baseline for frame prediction."""

from videogen.evaluation.baselines import copy_last_frame, frame_prediction_scores
from videogen.evaluation.codebook import CodebookUsage
from videogen.evaluation.frechet import frechet_distance, frechet_distance_from_features, gaussian_stats
from videogen.evaluation.i3d import I3DFeatures, compute_fvd, load_torchscript, resize_frames
from videogen.evaluation.image_metrics import PSNR_CAP_DB, FrameScores, psnr, ssim

__all__ = [
    "PSNR_CAP_DB",
    "CodebookUsage",
    "FrameScores",
    "I3DFeatures",
    "compute_fvd",
    "copy_last_frame",
    "frame_prediction_scores",
    "frechet_distance",
    "frechet_distance_from_features",
    "gaussian_stats",
    "load_torchscript",
    "psnr",
    "ssim",
    "resize_frames",
]
