"""Frame-prediction evaluation of a tokenizer + COMMIT transformer on held-out clips.

For every clip (the centered window of the model's length) the first ``c`` frames condition the
model, which predicts the rest. Scored on the predicted frames only (condition frames excluded):

- ``psnr`` / ``ssim``: the model's prediction (one sample per clip; its own decoding everywhere,
  nothing pasted) against the truth;
- ``copy_last_frame_*``: the baseline that repeats the last condition frame;
- ``tokenizer_*``: the tokenizer's reconstruction of the true clip, the ceiling a token model can reach.

With an I3D TorchScript file, also FVD of the predicted clips and of the reconstructions against the
true clips (whole clips, condition frames included as the model decoded them: MAGVIT's convention).
FVD is biased in the number of clips: compare only at equal counts.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from videogen.data.manifest import Manifest
from videogen.errors import UserError
from videogen.evaluation import (
    I3DFeatures,
    copy_last_frame,
    frame_prediction_scores,
    frechet_distance_from_features,
)
from videogen.evaluation.eval_data import eval_batches
from videogen.inference.engine import InferenceEngine
from videogen.inference.sampling import SamplingOptions

METHODS = {
    "": "COMMIT transformer",
    "copy_last_frame_": "copy last frame",
    "tokenizer_": "tokenizer (ceiling)",
}


class RunningMean:
    """Running mean of per-sample values (B,) or per-frame values (B, T)."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.count = 0

    def add(self, values: torch.Tensor) -> None:
        values = values.detach().double().cpu()
        self.total = values.sum(0) if self.total is None else self.total + values.sum(0)
        self.count += values.shape[0]

    def value(self) -> Any:
        mean = self.total / self.count
        return float(mean) if mean.dim() == 0 else [float(v) for v in mean]


@torch.no_grad()
def evaluate_frame_prediction(
    engine: InferenceEngine,
    data: str | Path | Manifest,
    *,
    num_cond_frames: int | None = None,
    limit: int | None = None,
    batch_size: int = 4,
    options: SamplingOptions | None = None,
    i3d: str | Path | torch.nn.Module | None = None,
    backend: str = "decord",
    progress: bool = True,
) -> dict:
    """Evaluate frame prediction on clips of ``data`` (a manifest, a folder or a :class:`Manifest`).

    ``engine``: an :class:`InferenceEngine` (``VideoGenPipeline.engine``). ``num_cond_frames`` default
    :attr:`InferenceEngine.default_cond_frames`. ``limit``: the first that many clips. ``i3d``: path of an I3D
    TorchScript file (or a module) for FVD; None skips FVD.

    Returns ``{"frame_prediction": {...}}`` with ``psnr``, ``ssim``, ``copy_last_frame_psnr``,
    ``copy_last_frame_ssim``, ``tokenizer_psnr``, ``tokenizer_ssim`` (means over clips of the per-clip
    mean over predicted frames; dB and [-1, 1]), ``psnr_per_frame`` etc. (per predicted frame),
    ``num_clips``, ``num_cond_frames``, ``num_frames``, ``resolution``, ``sampling``, and with ``i3d``
    ``fvd``, ``tokenizer_fvd``, ``fvd_protocol``.
    """
    options = options or SamplingOptions()
    c = engine.default_cond_frames if num_cond_frames is None else num_cond_frames
    engine.check_cond_frames(c)
    count, batches = eval_batches(
        data,
        engine.num_frames,
        engine.frame_size,
        fps=engine.geometry.fps,
        limit=limit,
        batch_size=batch_size,
        backend=backend,
    )
    extractor = I3DFeatures(i3d, device=engine.device) if i3d is not None else None
    means: dict[str, RunningMean] = {}
    features: dict[str, list[torch.Tensor]] = {"real": [], "pred": [], "recon": []}
    with tqdm(total=count, desc="eval frame prediction", unit="clip", disable=not progress) as bar:
        for batch in batches:
            truth = batch["video"].to(engine.device)
            class_ids = engine.class_ids(None, truth.shape[0])
            pred = engine.predict(truth[:, :, :c], truth.shape[2], class_ids, options, paste_condition=False)
            recon = engine.reconstruct(truth)
            for prefix, video in (
                ("", pred),
                ("copy_last_frame_", copy_last_frame(truth, c)),
                ("tokenizer_", recon),
            ):
                for metric, scores in frame_prediction_scores(video, truth, c).items():
                    means.setdefault(f"{prefix}{metric}", RunningMean()).add(scores.per_sample)
                    means.setdefault(f"{prefix}{metric}_per_frame", RunningMean()).add(scores.per_frame)
            if extractor is not None:
                for name, video in (("real", truth), ("pred", pred), ("recon", recon)):
                    features[name].append(extractor(video))
            bar.update(truth.shape[0])
    if not means:
        raise UserError(f"no clips to evaluate in '{data}'")
    metrics: dict[str, Any] = {name: mean.value() for name, mean in means.items()}
    metrics.update(
        num_clips=count,
        num_cond_frames=c,
        num_frames=engine.num_frames,
        resolution=list(engine.frame_size),
        fps=engine.geometry.fps,
        condition_frames_in_scores=False,
        sampling=asdict(options),
    )
    if extractor is not None:
        real = torch.cat(features["real"])
        metrics["fvd"] = frechet_distance_from_features(real, torch.cat(features["pred"]))
        metrics["tokenizer_fvd"] = frechet_distance_from_features(real, torch.cat(features["recon"]))
        metrics["fvd_protocol"] = {
            "num_clips": count,
            "num_frames": engine.num_frames,
            "condition_frames": "included, as decoded by the model",
            "i3d": extractor.source,
            "i3d_call": extractor.call,
            "resize_mode": extractor.resize_mode,
        }
    return {"frame_prediction": metrics}


def format_prediction_table(result: dict) -> str:
    """A markdown table of :func:`evaluate_frame_prediction`'s result (one row per method)."""
    m = result["frame_prediction"]
    fvd = "fvd" in m
    predicted = m["num_frames"] - m["num_cond_frames"]
    lines = [
        f"frame prediction: {m['num_clips']} clips, {m['num_cond_frames']} condition + {predicted} predicted "
        f"frames of {m['resolution'][0]}x{m['resolution'][1]} (scores over predicted frames only)",
        "",
        "| method | PSNR (dB) | SSIM |" + (" FVD |" if fvd else ""),
        "|---|---|---|" + ("---|" if fvd else ""),
    ]
    for prefix, name in METHODS.items():
        row = f"| {name} | {m[prefix + 'psnr']:.2f} | {m[prefix + 'ssim']:.4f} |"
        if fvd:
            value = m.get(prefix + "fvd")
            row += f" {value:.1f} |" if value is not None else " - |"
        lines.append(row)
    return "\n".join(lines)
