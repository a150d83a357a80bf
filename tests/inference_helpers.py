"""Tiny randomly initialised exported models for the inference tests (not a test file).

Tokenizer: preset tiny with 8-16 channels and 6 bits (temporal /4, spatial /4). Transformer: preset
tiny with 2 layers of width 32 over at most 3 x 8 x 8 tokens, 4 classes. Together: a window of
9 frames of 32 x 32 pixels. The transformer export records what a trained one would (tasks, the
tokenizer's identity, the window, sampling defaults): by default every task, so every use runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from videogen.data.manifest import write_manifest
from videogen.export import TokenizerIdentity, TransformerExportInfo, WindowGeometry
from videogen.tokenizer import VideoTokenizer
from videogen.transformer import TASKS, CommitTransformer
from videogen.video_io import write_video

WINDOW, SIZE, NUM_CLASSES = 9, 32, 4


def single_thread():
    """Generator for a module-scoped fixture: torch on one thread (tiny convs thrash on a busy 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_export_info(
    tokenizer: VideoTokenizer,
    tasks: dict[str, float] | None = None,
    window: tuple[int, int, int] = (WINDOW, SIZE, SIZE),
    fps: float | None = None,
    class_dropout: float = 0.1,
    trained_from: Path | None = None,
    sampling: dict | None = None,
) -> TransformerExportInfo:
    """What a training run would record for a transformer on ``tokenizer`` (default: every task;
    ``sampling``: the decoding defaults, by default 12 sampled steps for every task)."""
    return TransformerExportInfo(
        tasks=tasks if tasks is not None else {name: 1.0 for name in TASKS},
        tokenizer=TokenizerIdentity.of(tokenizer, trained_from),
        window=WindowGeometry(*window, fps),
        task_options={"frame_prediction": {"num_cond_frames": 5}, "interpolation": {"num_cond_frames": 1}},
        class_dropout=class_dropout,
        condition_dropout=0.1,
        classes=[f"class{i}" for i in range(NUM_CLASSES)],
        sampling=sampling or {"steps": 12, "temperature": 1.0, "choice_temperature": 4.5},
    )


def export_tiny_models(root: Path, size: int = SIZE, **info) -> tuple[Path, Path]:
    """Write ``root/tokenizer`` and ``root/transformer`` (``save_pretrained`` folders) for frames of
    ``size`` x ``size``; ``info`` changes what the transformer export records (see :func:`tiny_export_info`)."""
    torch.manual_seed(0)
    tokenizer = VideoTokenizer.from_preset("tiny", base_channels=8, num_groups=4, lfq={"bits": 6})
    transformer = CommitTransformer.from_preset(
        "tiny",
        codebook_size=64,
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        num_classes=NUM_CLASSES,
        max_frames=3,
        max_height=size // 4,
        max_width=size // 4,
    )
    tokenizer.save_pretrained(root / "tokenizer")
    info = {"window": (WINDOW, size, size), **info}
    info = tiny_export_info(tokenizer, trained_from=root / "tokenizer", **info)
    transformer.save_pretrained(root / "transformer", info)
    return root / "tokenizer", root / "transformer"


def smooth_frames(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 ``(T, H, W, 3)``: moving gradients (compress well, so mp4 round trips stay close)."""
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 6.28, 3)
    t, y, x = np.meshgrid(np.arange(num_frames), np.arange(height), np.arange(width), indexing="ij")
    channels = [127 + 100 * np.sin(0.15 * x + 0.1 * y + 0.3 * t + p) for p in phase]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def write_manifest_clips(root: Path, count: int = 3, num_frames: int = 12, fps: float = 8.0) -> Path:
    """``count`` mp4 clips of ``num_frames`` 40 x 48 frames and ``root/clips.jsonl`` listing them."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        path = write_video(root / f"clip{i}.mp4", smooth_frames(num_frames, 40, 48, seed=i), fps)
        rows.append(
            {"path": path.name, "num_frames": num_frames, "fps": fps, "height": 40, "width": 48, "label": i}
        )
    manifest = root / "clips.jsonl"
    write_manifest(manifest, rows)
    return manifest
