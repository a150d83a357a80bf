"""A small frame classifier of a dataset's labels: the judge of class-conditional generation.

A generated image (or clip) of class ``k`` counts as right when this classifier, trained on real frames
of the same data, calls it ``k``. Nothing is downloaded and nothing is pretrained: three conv layers on
32x32 frames, trained on CPU in seconds (Adam, a fixed number of epochs, a fixed seed: the same
weights every time on one machine). Report its own held-out accuracy beside what it says of
generated samples: it is the ceiling of that number. :func:`load_or_train` caches it in a folder,
keyed by what it was trained on.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from videogen.export import follow_umask

INPUT_SIZE = 32  # frames are area-resized to INPUT_SIZE x INPUT_SIZE first
VERSION = 1  # of the architecture and the recipe (part of the cache key)


class FrameClassifier(nn.Module):
    """``(N, 3, H, W)`` frames in [-1, 1] -> ``(N, num_classes)`` logits (any H, W: resized to 32x32)."""

    def __init__(self, num_classes: int, width: int = 32) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 16x16
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8
            nn.Conv2d(2 * width, 4 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(4 * width, num_classes)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            frames = F.interpolate(frames, size=(INPUT_SIZE, INPUT_SIZE), mode="area")
        return self.head(self.features(frames).flatten(1))

    @torch.no_grad()
    def clip_logits(self, videos: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` clips -> ``(B, num_classes)``: the mean over frames of the log-probabilities."""
        batch, _, frames = videos.shape[:3]
        flat = videos.transpose(1, 2).flatten(0, 1)  # (B, 3, T, H, W) -> (B*T, 3, H, W)
        return self(flat).log_softmax(-1).view(batch, frames, -1).mean(1)


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """``(N,)`` bool: the label is among the ``k`` highest logits."""
    k = min(k, logits.shape[-1])
    return (logits.topk(k, dim=-1).indices == labels.view(-1, 1)).any(-1)


def train_classifier(
    frames: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    seed: int = 0,
    epochs: int = 8,
    batch_size: int = 64,
    lr: float = 3e-3,
) -> FrameClassifier:
    """Train on ``frames`` (N, 3, H, W) in [-1, 1] with ``labels`` (N,) in ``[0, num_classes)``; deterministic
    for ``seed`` (its own generator: the global RNG is untouched)."""
    frames = F.interpolate(frames.float(), size=(INPUT_SIZE, INPUT_SIZE), mode="area")
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FrameClassifier(num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * max(1, -(-len(frames) // batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(frames), generator=generator)
        for start in range(0, len(frames), batch_size):
            picks = order[start : start + batch_size]
            loss = F.cross_entropy(model(frames[picks]), labels[picks])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: FrameClassifier, frames: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Top-``k`` accuracy on ``frames`` (N, 3, H, W) with ``labels`` (N,)."""
    hits = [
        topk_correct(model(frames[i : i + 256]), labels[i : i + 256], k) for i in range(0, len(frames), 256)
    ]
    return float(torch.cat(hits).float().mean()) if hits else float("nan")


def cache_key(description: dict[str, Any]) -> str:
    """A short hash of what the classifier is trained on and how (with :data:`VERSION`)."""
    text = json.dumps({"version": VERSION, **description}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_or_train(
    folder: str | Path,
    description: dict[str, Any],
    data: Callable[[], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]],
    *,
    seed: int = 0,
) -> tuple[FrameClassifier, dict[str, Any]]:
    """The classifier cached in ``folder`` for ``description`` (what it is trained on), else trained now.

    ``data()`` -> ``(train frames, train labels, held-out frames, held-out labels, num_classes)``; it is
    called only when there is no cached classifier. Returns the model and its record: ``num_classes``,
    ``train_frames``, ``held_out_frames``, ``held_out_accuracy``, ``held_out_top2_accuracy``,
    ``train_seconds``, ``seed``, ``file``, ``description``.
    """
    key = cache_key({**description, "seed": seed})
    folder = Path(folder)
    weights, record_file = folder / f"classifier-{key}.safetensors", folder / f"classifier-{key}.json"
    if weights.is_file() and record_file.is_file():
        record = json.loads(record_file.read_text())
        model = FrameClassifier(record["num_classes"])
        model.load_state_dict(load_file(str(weights)))
        return model.eval(), record | {"cached": True}
    started = time.time()
    train_frames, train_labels, val_frames, val_labels, num_classes = data()
    model = train_classifier(train_frames, train_labels, num_classes, seed=seed)
    record = {
        "num_classes": num_classes,
        "architecture": f"3 conv layers on {INPUT_SIZE}x{INPUT_SIZE} frames (version {VERSION})",
        "train_frames": len(train_frames),
        "held_out_frames": len(val_frames),
        "held_out_accuracy": accuracy(model, val_frames, val_labels, 1),
        "held_out_top2_accuracy": accuracy(model, val_frames, val_labels, 2),
        "train_seconds": round(time.time() - started, 1),
        "seed": seed,
        "file": str(weights),
        "description": description,
    }
    folder.mkdir(parents=True, exist_ok=True)
    tmp = weights.with_name(weights.name + ".tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    follow_umask(tmp)
    tmp.replace(weights)
    tmp = record_file.with_name(record_file.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(record_file)
    return model, record | {"cached": False}
