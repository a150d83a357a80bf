"""Evaluation, one home. Metrics (imported here): PSNR, SSIM (whole frames or a region), Frechet distance
(FVD with a user-supplied I3D), codebook usage, the non-learned baseline of every task, and a small frame
classifier for class-conditional generation. The held-out evaluations of ``./run.sh eval`` (modules,
not imported here: they sit above :mod:`videogen.inference`): ``evaluate_tokenizer``,
``evaluate_transformer`` (+ ``evaluate_generation``: generated classes), ``evaluate_prediction``
(frame prediction alone, the demo) and ``eval_data`` (the held-out clips). A trainer's evaluation during
its run is in its own room (``tokenizer_training.evaluation``)."""

from videogen.evaluation.baselines import (
    copy_last_frame,
    edge_replicate,
    frame_prediction_scores,
    linear_blend,
    mean_fill,
    region_scores,
)
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
    "edge_replicate",
    "linear_blend",
    "mean_fill",
    "region_scores",
    "frame_prediction_scores",
    "frechet_distance",
    "frechet_distance_from_features",
    "gaussian_stats",
    "load_torchscript",
    "psnr",
    "ssim",
    "resize_frames",
]
