"""Class-conditional generation scored by a frame classifier: the image and clip rows of
``./run.sh eval transformer`` (see ``evaluation.evaluate_transformer``).

``samples_per_class`` images (or clips) of every class are generated with seeds ``seed + 1000 k + i``
and judged by a small frame classifier of the data's labels (``evaluation.classifier``: trained on
real frames of the classifier data, cached in a folder) -- top-1 and top-2. A clip's class is the mean of its frames'
log-probabilities. Beside it: the classifier on the held-out real clips (frame 0 for images) and on
their tokenizer reconstructions (the ceiling), chance, and the fraction of distinct outputs: a
sample within :data:`DUPLICATE_PSNR_DB` of an earlier one of its class counts once (mode collapse).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from videogen.errors import UserError
from videogen.evaluation import psnr
from videogen.evaluation.classifier import FrameClassifier, load_or_train, topk_correct
from videogen.evaluation.eval_data import check_manifest_path, eval_batches
from videogen.inference.engine import InferenceEngine
from videogen.inference.sampling import SamplingOptions
from videogen.transformer.tasks import get_task

CLASS_ROWS = {"image_generation": "image generation", "class_generation": "clip generation"}
DUPLICATE_PSNR_DB = 30.0
CLASSIFIER_FRAME_STEP = 2  # every 2nd frame of each clip window trains / tests the classifier


def distinct_count(videos: torch.Tensor, threshold_db: float = DUPLICATE_PSNR_DB) -> int:
    """Samples ``(N, 3, T, H, W)`` that are not within ``threshold_db`` PSNR of an earlier kept one."""
    kept: list[torch.Tensor] = []
    for video in videos:
        if all(float(psnr(video[None], other[None]).per_sample[0]) < threshold_db for other in kept):
            kept.append(video)
    return len(kept)


class ClassHits:
    """Top-1 / top-2 hit counts of the classifier, and its confusion matrix ``confusion[label, answer]``
    (a classifier that gives one answer to every sample scores exactly chance: the matrix tells that
    apart from answers spread over the classes)."""

    def __init__(self) -> None:
        self.top1 = self.top2 = self.count = 0
        self.confusion: np.ndarray | None = None  # (classes, classes) int64, sized by the first logits

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        labelled = labels >= 0
        logits, labels = logits[labelled], labels[labelled]
        self.top1 += int(topk_correct(logits, labels, 1).sum())
        self.top2 += int(topk_correct(logits, labels, 2).sum())
        self.count += int(labels.numel())
        if self.confusion is None:
            self.confusion = np.zeros((logits.shape[-1],) * 2, dtype=np.int64)
        np.add.at(self.confusion, (labels.cpu().numpy(), logits.argmax(-1).cpu().numpy()), 1)

    def rates(self) -> tuple[float | None, float | None]:
        return (self.top1 / self.count, self.top2 / self.count) if self.count else (None, None)

    def most_common_answer(self) -> tuple[int, float] | None:
        """The class the classifier answered most often and the share of samples it got (None if none)."""
        if not self.count:
            return None
        answers = self.confusion.sum(axis=0)
        return int(answers.argmax()), float(answers.max() / self.count)


class RealClassScores:
    """The classifier on held-out real clips and their tokenizer reconstructions, per class row."""

    def __init__(self, classifier: FrameClassifier, rows: list[str]) -> None:
        self.classifier = classifier
        self.real = {row: ClassHits() for row in rows}
        self.recon = {row: ClassHits() for row in rows}

    def add(self, truth: torch.Tensor, recon: torch.Tensor, labels: torch.Tensor) -> None:
        """``truth`` / ``recon`` ``(B, 3, T, H, W)`` and their labels ``(B,)`` (-1: none, skipped)."""
        for row in self.real:
            first = row == "image_generation"  # an image row judges frame 0 alone
            self.real[row].add(self.classifier.clip_logits(truth[:, :, :1] if first else truth), labels)
            self.recon[row].add(self.classifier.clip_logits(recon[:, :, :1] if first else recon), labels)

    def record(self, row: str) -> dict[str, Any]:
        real, recon = self.real[row].rates(), self.recon[row].rates()
        return {
            "real_accuracy": real[0],
            "real_top2_accuracy": real[1],
            "tokenizer_accuracy": recon[0],
            "tokenizer_top2_accuracy": recon[1],
            "real_clips": self.real[row].count,
        }


def _classifier_frames(batches) -> tuple[torch.Tensor, torch.Tensor]:
    """Every :data:`CLASSIFIER_FRAME_STEP`-th frame of labelled clips: ``(N, 3, H, W)``, labels ``(N,)``."""
    frames, labels = [], []
    for batch in batches:
        video, label = batch["video"][:, :, ::CLASSIFIER_FRAME_STEP], batch["label"]
        keep = label >= 0
        video, label = video[keep], label[keep]
        frames.append(video.transpose(1, 2).flatten(0, 1))  # (B, 3, T', H, W) -> (B*T', 3, H, W)
        labels.append(label.repeat_interleave(video.shape[2]))
    if not frames:
        return torch.zeros(0, 3, 1, 1), torch.zeros(0, dtype=torch.int64)
    return torch.cat(frames), torch.cat(labels).to(torch.int64)


def frame_classifier(
    engine: InferenceEngine,
    train_data: str | Path,
    held_out: str | Path,
    cache_dir: str | Path,
    *,
    backend: str = "decord",
    seed: int = 0,
) -> tuple[FrameClassifier, dict[str, Any]]:
    """The classifier of ``train_data``'s labels at the engine's window (cached in ``cache_dir``)."""
    from videogen.data.manifest_builder import load_manifest

    check_manifest_path(train_data)
    manifest = load_manifest(train_data, "video", 0, backend)
    if manifest.num_classes == 0:
        raise UserError(f"classifier data '{train_data}' has no labels; pass a labelled manifest")
    geometry = engine.geometry
    window = (geometry.num_frames, (geometry.height, geometry.width))

    def data():
        common = {"fps": geometry.fps, "batch_size": 16, "backend": backend}
        train = _classifier_frames(eval_batches(train_data, *window, **common)[1])
        test = _classifier_frames(eval_batches(held_out, *window, **common)[1])
        return (*train, *test, manifest.num_classes)

    description = {
        "train_data": str(Path(train_data).resolve()),
        "train_manifest": _file_digest(train_data),
        "held_out": str(Path(held_out).resolve()),
        "held_out_manifest": _file_digest(held_out),
        "window": [geometry.num_frames, geometry.height, geometry.width, geometry.fps],
        "frame_step": CLASSIFIER_FRAME_STEP,
        "classes": list(manifest.classes or []) or manifest.num_classes,
    }
    return load_or_train(cache_dir, description, data, seed=seed)


def _file_digest(path: str | Path) -> str | None:
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else None


def generation_row(
    engine: InferenceEngine,
    row: str,
    classifier: FrameClassifier,
    per_class: int,
    batch_size: int,
    options: SamplingOptions,
    bar: tqdm,
) -> dict[str, Any]:
    """Generate ``per_class`` samples of every class; the classifier's hits and the distinct fraction."""
    frames = 1 if row == "image_generation" else engine.num_frames
    hits, distinct = ClassHits(), []
    for k in range(engine.num_classes):
        samples = []
        for start in range(0, per_class, batch_size):
            size = min(batch_size, per_class - start)
            seeded = dataclasses.replace(options, seed=options.seed + 1000 * k + start)
            samples.append(engine.generate(size, frames, engine.class_ids(k, size), seeded))
            bar.update(size)
        videos = torch.cat(samples)
        hits.add(classifier.clip_logits(videos), torch.full((len(videos),), k, device=videos.device))
        distinct.append(distinct_count(videos) / len(videos))
    top1, top2 = hits.rates()
    answer, share = hits.most_common_answer()
    return {
        "name": CLASS_ROWS[row],
        "code": get_task(row).code,
        "samples_per_class": per_class,
        "num_samples": hits.count,
        "accuracy": top1,
        "top2_accuracy": top2,
        "chance": 1.0 / engine.num_classes,
        "distinct_fraction": float(np.mean(distinct)),
        "duplicate_psnr_db": DUPLICATE_PSNR_DB,
        "confusion": hits.confusion.tolist(),  # [requested class][classifier's answer] -> samples
        "most_common_answer": answer,
        "most_common_answer_share": share,
    }
