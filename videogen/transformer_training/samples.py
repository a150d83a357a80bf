"""Sample videos during transformer training: COMMIT decoding on a few cached items, decoded to pixels.

For each sampling task, the first ``num_videos`` items of a token cache are decoded by
``transformer.sample`` (the EMA weights, a fixed seed, so samples of different steps are comparable),
then the tokenizer turns three token grids into pixels: the condition (the condition tokens, with the
positions outside the latent condition mask dimmed: what the model was given), the sample, and the
ground truth (the item's tokens: the best the tokenizer can show). Written as
``<out>/step_<N>_<task>.{mp4,gif}``, one row per item, and returned for TensorBoard.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from videogen.token_cache.reader import select_task
from videogen.transformer.masking import task_prefix
from videogen.transformer.sampler import sample
from videogen.transformer.tasks import get_task
from videogen.transformer_training.training_config import IMAGE_TASK, SamplingConfig, canonical_task
from videogen.video_io import side_by_side, to_float_video, to_uint8_frames, write_video

DIM = 0.25  # brightness of the pixels outside the condition region in the condition column
SEPARATOR = 2  # pixels between columns and rows


def pixel_mask(latent_mask: torch.Tensor, num_frames: int, height: int, width: int) -> torch.Tensor:
    """Latent condition mask ``(B, T', H', W')`` -> pixel mask ``(B, 1, T, H, W)`` (causal time mapping:
    frame 0 <- latent 0, frame f >= 1 <- latent ``1 + (f - 1) // t``)."""
    frames, lat_h, lat_w = latent_mask.shape[1:]
    temporal = (num_frames - 1) // (frames - 1) if frames > 1 else 1
    index = torch.tensor(
        [0] + [1 + (f - 1) // temporal for f in range(1, num_frames)], device=latent_mask.device
    )
    mask = latent_mask[:, index]  # (B, T, H', W')
    mask = mask.repeat_interleave(height // lat_h, dim=2).repeat_interleave(width // lat_w, dim=3)
    return mask.unsqueeze(1)


def stack_rows(rows: Sequence[np.ndarray], separator: int = SEPARATOR, value: int = 255) -> np.ndarray:
    """uint8 ``(T, H_i, W, 3)`` clips of equal T and W, top to bottom with ``separator`` rows between."""
    parts = []
    for i, row in enumerate(rows):
        if i:
            parts.append(np.full((row.shape[0], separator, row.shape[2], 3), value, dtype=np.uint8))
        parts.append(row)
    return np.concatenate(parts, axis=1)


class SampleVideos:
    """``samples(model, step) -> {tag: (B, 3, T, H, W) video}``, writing the files as a side effect.

    ``dataset``: a ``TokenDataset`` (its first items are used); ``tokenizer_dir``: the export that made
    it (loaded on first use, onto ``device``).
    """

    def __init__(
        self,
        dataset: Dataset,
        tokenizer_dir: str | Path,
        cfg: SamplingConfig,
        out_dir: str | Path,
        *,
        num_classes: int,
        device: torch.device,
        fps: float,
    ) -> None:
        self.cfg = cfg
        self.tasks = [canonical_task(t) for t in cfg.tasks]
        count = min(cfg.num_videos, len(dataset))
        self.batch = default_collate([dataset[i] for i in range(count)]) if count else None
        self.tokenizer_dir = Path(tokenizer_dir)
        self.out_dir = Path(out_dir)
        self.num_classes = num_classes
        self.device = device
        self.fps = fps
        self._tokenizer: Any = None
        self.written: list[Path] = []

    @property
    def enabled(self) -> bool:
        return self.batch is not None and bool(self.tasks)

    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from videogen.tokenizer import VideoTokenizer

            self._tokenizer = VideoTokenizer.from_pretrained(self.tokenizer_dir, self.device).eval()
        return self._tokenizer

    @torch.no_grad()
    def task_panel(self, model: Callable[..., Any], task: str) -> np.ndarray:
        """uint8 ``(T, rows, W, 3)``: per item, condition | sample | ground truth."""
        batch, cfg, device = self.batch, self.cfg, self.device
        size = batch["tokens"].shape[0]
        truth = batch["tokens"]
        if task == IMAGE_TASK:
            truth = truth[:, :1]
            cond_tokens, cond_mask = torch.zeros_like(truth), torch.zeros(truth.shape, dtype=torch.bool)
        else:
            cond_tokens, cond_mask = select_task(batch, [task] * size)
        task_ids, class_ids = task_prefix([task] * size, batch["label"], self.num_classes)
        tokens = sample(
            model,
            cond_tokens.to(device),
            cond_mask.to(device),
            task_ids.to(device),
            class_ids.to(device),
            **cfg.decoding(conditioned=get_task(task).has_condition),
            uncond_class_id=self.num_classes,
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        grids = torch.cat([cond_tokens.to(device), tokens, truth.to(device)])  # (3B, T', H', W')
        videos = self.tokenizer().detokenize(grids).float()  # (3B, 3, T, H, W) in [-1, 1]
        cond, samples, real = videos.split(size)
        known = pixel_mask(cond_mask.to(device), *cond.shape[2:])
        cond = torch.where(known, cond, (cond + 1) * DIM - 1)  # dim what the model did not get
        rows = [
            side_by_side([to_uint8_frames(v[i]) for v in (cond, samples, real)], separator=SEPARATOR)
            for i in range(size)
        ]
        return stack_rows(rows)

    def __call__(self, model: Callable[..., Any], step: int) -> dict[str, torch.Tensor]:
        if not self.enabled:
            return {}
        media = {}
        for task in self.tasks:
            frames = self.task_panel(model, task)
            for fmt in self.cfg.formats:
                path = self.out_dir / f"step_{step:07d}_{task}.{fmt}"
                self.written.append(write_video(path, frames, self.fps))
            media[f"samples/{task}"] = to_float_video(frames).unsqueeze(0)  # (T, H, W, 3) -> (1, 3, T, H, W)
        return media
