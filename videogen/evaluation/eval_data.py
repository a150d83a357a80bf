"""Held-out clips for evaluation: deterministic centered windows from a manifest, in batches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from videogen.data.manifest import Manifest
from videogen.data.video_dataset import VideoClipDataset
from videogen.errors import UserError


def check_manifest_path(data: str | Path | Manifest, make_hint: str = "./run.sh data sample") -> None:
    """A missing manifest or folder -> :class:`UserError` naming it and how to make one."""
    if isinstance(data, Manifest):
        return
    if not Path(data).exists():
        raise UserError(
            f"evaluation data '{data}' does not exist; make a manifest with `{make_hint}` or pass --data"
        )


def eval_batches(
    data: str | Path | Manifest,
    num_frames: int,
    size: tuple[int, int],
    *,
    fps: float | None = None,
    limit: int | None = None,
    batch_size: int = 4,
    backend: str = "decord",
) -> tuple[int, Iterator[dict]]:
    """``(number of clips, iterator of batches)``; a batch is ``{"video": (B, 3, T, H, W) in [-1, 1], "label": (B,)}``.

    Each clip is the centered window of ``num_frames`` frames (resampled to ``fps`` when given), short
    side resized and center-cropped to the square ``size``; the first ``limit`` clips of the manifest.
    """
    check_manifest_path(data)
    if size[0] != size[1]:
        raise UserError(f"evaluation reads square clips; the model's frames are {size[0]}x{size[1]}")
    if limit is not None and limit < 1:
        raise UserError(f"--limit {limit} must be >= 1")
    dataset = VideoClipDataset(
        data, num_frames=num_frames, resolution=size[0], target_fps=fps, train=False, backend=backend
    )
    count = len(dataset) if limit is None else min(limit, len(dataset))
    loader = DataLoader(Subset(dataset, range(count)), batch_size=batch_size, shuffle=False, num_workers=0)
    return count, ({"video": b["video"], "label": torch.as_tensor(b["label"])} for b in loader)
