"""Held-out evaluation during and after tokenizer training: PSNR, SSIM, codebook usage, samples.

Runs on rank 0 with an fp32 copy of the tokenizer holding the EMA weights (or an export), so it is
independent of the engines' precision and leaves the training module untouched. Video held-out data
goes through :func:`videogen.evaluation.evaluate_tokenizer.evaluate_tokenizer` (the ``eval tokenizer``
command's function: centered windows, PSNR / SSIM per frame, usage over all clips); image data
(``eval.kind: image``, for image tokenizers) through the same metrics over 1-frame clips.
Samples: the first ``eval.num_samples`` held-out clips, each row ``input | reconstruction``, written as
``<stem>.mp4`` and ``<stem>.gif``. Every held-out set (``data.val`` as ``val``, then ``eval.sets``) is
evaluated and sampled on its own; results are keyed by set name.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from videogen.data.image_dataset import ImageDataset
from videogen.errors import UserError
from videogen.evaluation import CodebookUsage, psnr, ssim
from videogen.evaluation.eval_data import eval_batches
from videogen.evaluation.evaluate_tokenizer import evaluate_tokenizer
from videogen.tokenizer import VideoTokenizer
from videogen.tokenizer_training.training_config import TokenizerTrainingConfig
from videogen.video_io import side_by_side, to_uint8_frames, write_video

SEPARATOR = 2  # pixels between samples and between input and reconstruction


def _image_batches(source: str, resolution: int, limit: int | None, batch_size: int) -> tuple[int, Iterator]:
    dataset = ImageDataset(source, resolution=resolution, train=False)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    loader = DataLoader(Subset(dataset, range(count)), batch_size=batch_size, shuffle=False, num_workers=0)
    return count, iter(loader)


@torch.no_grad()
def evaluate_images(
    tokenizer: VideoTokenizer, source: str, resolution: int, limit: int | None, batch_size: int
) -> dict[str, Any]:
    """PSNR / SSIM / codebook usage of ``tokenizer`` over the images of ``source`` (1-frame clips)."""
    device = next(tokenizer.parameters()).device
    usage = CodebookUsage(tokenizer.codebook_size)
    sums = {"psnr": 0.0, "ssim": 0.0}
    seen = 0
    for batch in _image_batches(source, resolution, limit, batch_size)[1]:
        video = batch["video"].to(device)  # (B, 3, 1, H, W)
        tokens = tokenizer.tokenize(video)
        recon = tokenizer.detokenize(tokens)
        usage.update(tokens)
        sums["psnr"] += float(psnr(recon, video).per_sample.double().sum())
        sums["ssim"] += float(ssim(recon, video).per_sample.double().sum())
        seen += video.shape[0]
    return {
        "psnr": sums["psnr"] / seen,
        "ssim": sums["ssim"] / seen,
        "codebook": usage.summary(),
        "num_clips": seen,
        "num_frames": 1,
        "resolution": [resolution, resolution],
    }


def sample_grid(inputs: torch.Tensor, reconstructions: torch.Tensor) -> np.ndarray:
    """``(N, 3, T, H, W)`` pairs in [-1, 1] -> uint8 ``(T, N*H + gaps, 2W + gap, 3)``: rows ``input | reconstruction``."""
    pairs = [
        side_by_side([to_uint8_frames(a), to_uint8_frames(b)], separator=SEPARATOR)
        for a, b in zip(inputs, reconstructions)
    ]
    rows: list[np.ndarray] = []
    for i, pair in enumerate(pairs):
        if i:
            rows.append(np.full((pair.shape[0], SEPARATOR, pair.shape[2], 3), 255, dtype=np.uint8))
        rows.append(pair)
    return np.concatenate(rows, axis=1)  # stacked along H


class HeldOutEvaluator:
    """Evaluates tokenizer weights on the held-out sets and writes side-by-side samples (call on rank 0).

    ``sources``: set name -> manifest or folder: ``val`` (``data.val``) first, then ``eval.sets``.
    """

    def __init__(self, cfg: TokenizerTrainingConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.device = device
        self.model = VideoTokenizer(cfg.model).to(device).eval().requires_grad_(False)
        self.sources: dict[str, str] = {"val": str(cfg.data.val), **cfg.eval.sets}
        self._clips: dict[str, torch.Tensor] = {}
        # (step, {set name: metrics}) of the latest evaluation
        self.last: tuple[int, dict[str, dict[str, Any]]] | None = None

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)

    def use_model(self, model: VideoTokenizer) -> None:
        """Evaluate ``model`` (e.g. the export loaded with ``from_pretrained``) from now on."""
        self.model = model.to(self.device).eval().requires_grad_(False)

    def evaluate(self, step: int, progress: bool = False) -> dict[str, dict[str, Any]]:
        """Metrics of the current weights per set: ``{name: {psnr (dB), ssim, codebook {...}, num_clips, ...}}``."""
        results = {name: self._evaluate(source, progress) for name, source in self.sources.items()}
        self.last = (step, results)
        return results

    def _evaluate(self, source: str, progress: bool) -> dict[str, Any]:
        data, ev = self.cfg.data, self.cfg.eval
        if ev.kind == "image":
            metrics = evaluate_images(self.model, source, data.resolution, ev.num_clips, ev.batch_size)
        else:
            result = evaluate_tokenizer(
                self.model,
                source,
                num_frames=ev.frames(data.num_frames),
                resolution=data.resolution,
                fps=data.target_fps,
                limit=ev.num_clips,
                batch_size=ev.batch_size,
                backend=data.backend,
                progress=progress,
            )
            metrics = result["tokenizer"]
        return metrics

    @staticmethod
    def scalars(results: dict[str, dict[str, Any]]) -> dict[str, float]:
        """The numbers worth a TensorBoard curve: ``psnr``, ... for ``val``, ``<set>/psnr``, ... for the others."""
        out = {}
        for name, metrics in results.items():
            prefix = "" if name == "val" else f"{name}/"
            code = metrics["codebook"]
            out.update(
                {
                    f"{prefix}psnr": float(metrics["psnr"]),
                    f"{prefix}ssim": float(metrics["ssim"]),
                    f"{prefix}codebook_usage": float(code["usage_fraction"]),
                    f"{prefix}codebook_used": float(code["used_codes"]),
                    f"{prefix}codebook_perplexity": float(code["perplexity"]),
                }
            )
        return out

    def sample_clips(self, name: str = "val") -> torch.Tensor:
        """The first ``eval.num_samples`` clips of set ``name``, ``(N, 3, T, H, W)`` in [-1, 1] (read once)."""
        if name not in self._clips:
            data, n, source = self.cfg.data, self.cfg.eval.num_samples, self.sources[name]
            if self.cfg.eval.kind == "image":
                _, batches = _image_batches(source, data.resolution, n, n)
            else:
                _, batches = eval_batches(
                    source,
                    self.cfg.eval.frames(data.num_frames),
                    (data.resolution, data.resolution),
                    fps=data.target_fps,
                    limit=n,
                    batch_size=n,
                    backend=data.backend,
                )
            self._clips[name] = next(iter(batches))["video"]
        return self._clips[name]

    @torch.no_grad()
    def write_samples(self, stem: Path, name: str = "val") -> tuple[torch.Tensor, list[Path]]:
        """Reconstruct the sample clips of set ``name``; write ``stem.mp4`` and ``stem.gif`` (``stem`` gets
        ``_<name>`` for sets other than ``val``). Returns the pairs for TensorBoard, ``(N, 3, T, H, 2W)``,
        and the files written."""
        if self.cfg.eval.num_samples == 0:
            return torch.empty(0), []
        if name != "val":
            stem = stem.with_name(f"{stem.name}_{name}")
        clips = self.sample_clips(name).to(self.device)
        recon = self.model.detokenize(self.model.tokenize(clips))
        frames = sample_grid(clips.cpu(), recon.cpu())
        fps = self.cfg.eval.sample_fps
        paths = [write_video(stem.with_suffix(suffix), frames, fps) for suffix in (".mp4", ".gif")]
        return torch.cat([clips, recon], dim=-1).cpu(), paths


def check_eval_data(cfg: TokenizerTrainingConfig) -> None:
    """Fail before training when a held-out set is named but missing (:class:`~videogen.errors.UserError`)."""
    if cfg.data.val and not Path(cfg.data.val).exists():
        raise UserError(
            f"data.val = '{cfg.data.val}' does not exist; give a held-out manifest or folder "
            "(`./run.sh data manifest`), or data.val=null to train without held-out evaluation"
        )
    if cfg.eval.sets and not cfg.data.val:
        raise UserError("eval.sets needs data.val (the main held-out set); set it or eval.sets={}")
    for name, source in cfg.eval.sets.items():
        if not Path(source).exists():
            raise UserError(
                f"eval.sets.{name} = '{source}' does not exist; give a held-out manifest or folder, "
                f"or drop the set (eval.sets={{}})"
            )
