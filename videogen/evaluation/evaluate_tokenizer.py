"""Tokenizer evaluation on held-out clips: reconstruction PSNR / SSIM, codebook usage, rFVD.

Every clip is the centered window of ``num_frames`` frames at ``resolution`` (short-side resize,
center crop). Scores cover every frame of the reconstruction ``detokenize(tokenize(clip))``. Codebook
usage counts the tokens of all clips together (a per-batch count says nothing for 2^18 codes).
With an I3D TorchScript file, also rFVD (reconstructions against the clips, whole clips).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from videogen.data.manifest import Manifest
from videogen.errors import UserError
from videogen.evaluation import CodebookUsage, I3DFeatures, frechet_distance_from_features, psnr, ssim
from videogen.evaluation.eval_data import eval_batches
from videogen.tokenizer import VideoTokenizer


@torch.no_grad()
def evaluate_tokenizer(
    tokenizer: VideoTokenizer,
    data: str | Path | Manifest,
    *,
    num_frames: int = 17,
    resolution: int = 64,
    fps: float | None = None,
    limit: int | None = None,
    batch_size: int = 4,
    i3d: str | Path | torch.nn.Module | None = None,
    backend: str = "decord",
    progress: bool = True,
) -> dict:
    """Returns ``{"tokenizer": {"psnr", "ssim", "psnr_per_frame", "ssim_per_frame", "codebook": {...},
    "num_clips", "num_frames", "resolution", "latent_shape"[, "rfvd", "fvd_protocol"]}}``
    (PSNR in dB and SSIM: means over clips of the per-clip mean over frames)."""
    tokenizer = tokenizer.eval()
    device = next(tokenizer.parameters()).device
    latent_shape = tokenizer.latent_shape(num_frames, resolution, resolution)
    count, batches = eval_batches(
        data,
        num_frames,
        (resolution, resolution),
        fps=fps,
        limit=limit,
        batch_size=batch_size,
        backend=backend,
    )
    usage = CodebookUsage(tokenizer.codebook_size)
    extractor = I3DFeatures(i3d, device=device) if i3d is not None else None
    sums: dict[str, torch.Tensor] = {}
    real_features, recon_features = [], []
    seen = 0
    with tqdm(total=count, desc="eval tokenizer", unit="clip", disable=not progress) as bar:
        for batch in batches:
            video = batch["video"].to(device)
            tokens = tokenizer.tokenize(video)  # (B, T', H', W')
            recon = tokenizer.detokenize(tokens)  # (B, 3, T, H, W) in [-1, 1]
            usage.update(tokens)
            for name, scores in (("psnr", psnr(recon, video)), ("ssim", ssim(recon, video))):
                for key, values in ((name, scores.per_sample), (f"{name}_per_frame", scores.per_frame)):
                    total = values.detach().double().cpu().sum(0)
                    sums[key] = total if key not in sums else sums[key] + total
            if extractor is not None:
                real_features.append(extractor(video))
                recon_features.append(extractor(recon))
            seen += video.shape[0]
            bar.update(video.shape[0])
    if seen == 0:
        raise UserError(f"no clips to evaluate in '{data}'")
    metrics: dict[str, Any] = {
        key: (float(v / seen) if v.dim() == 0 else [float(x) for x in v / seen]) for key, v in sums.items()
    }
    metrics.update(
        codebook=usage.summary(),
        num_clips=seen,
        num_frames=num_frames,
        resolution=[resolution, resolution],
        latent_shape=list(latent_shape),
        fps=fps,
    )
    if extractor is not None:
        metrics["rfvd"] = frechet_distance_from_features(torch.cat(real_features), torch.cat(recon_features))
        metrics["fvd_protocol"] = {
            "num_clips": seen,
            "num_frames": num_frames,
            "i3d": extractor.source,
            "i3d_call": extractor.call,
            "resize_mode": extractor.resize_mode,
        }
    return {"tokenizer": metrics}


def format_tokenizer_table(result: dict) -> str:
    """A markdown table of :func:`evaluate_tokenizer`'s result."""
    m = result["tokenizer"]
    code = m["codebook"]
    lines = [
        f"tokenizer: {m['num_clips']} clips of {m['num_frames']} frames at {m['resolution'][0]}x{m['resolution'][1]} "
        f"-> {'x'.join(map(str, m['latent_shape']))} tokens",
        "",
        "| PSNR (dB) | SSIM | codes used | usage | perplexity |" + (" rFVD |" if "rfvd" in m else ""),
        "|---|---|---|---|---|" + ("---|" if "rfvd" in m else ""),
        f"| {m['psnr']:.2f} | {m['ssim']:.4f} | {code['used_codes']} / {code['codebook_size']} | "
        f"{100 * code['usage_fraction']:.1f}% | {code['perplexity']:.1f} |"
        + (f" {m['rfvd']:.1f} |" if "rfvd" in m else ""),
    ]
    return "\n".join(lines)
