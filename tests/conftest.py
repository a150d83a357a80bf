"""Shared fixtures: small real H.264 files written with PyAV, and broken variants of them.

The good clip is 40 frames of 64 x 96 at 25 fps with a keyframe every 8 frames. Frame ``i`` has a
16-row band of grey level ``5 + 6 i`` at the top, so the index of every decoded frame can be read
back (``frame_index``) and seeking is checked frame by frame.
"""

from __future__ import annotations

import fractions
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch  # noqa: F401  (before decord, always)

NUM_FRAMES, HEIGHT, WIDTH, FPS, GOP = 40, 64, 96, 25, 8


def pattern_frame(index: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """uint8 ``(H, W, 3)``: a moving color gradient and a top band of grey level ``5 + 6 * index``."""
    y, x = np.mgrid[0:height, 0:width]
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    frame[..., 0] = (x * 2 + index * 3) % 256
    frame[..., 1] = (y * 3) % 256
    frame[..., 2] = 128
    frame[:16] = 5 + 6 * (index % 41)
    return frame


def frame_index(frames: np.ndarray) -> list[int]:
    """The index encoded in each of uint8 ``(T, H, W, 3)`` frames (from the top band)."""
    band = frames[:, 2:14, 4:-4].astype(np.float64).mean(axis=(1, 2, 3))
    return np.round((band - 5) / 6).astype(int).tolist()


def write_pattern_clip(
    path: Path, num_frames: int = NUM_FRAMES, faststart: bool = True, height: int = HEIGHT, width: int = WIDTH
) -> Path:
    """Write the pattern clip with PyAV directly (independent of ``videogen.video_io.write_video``)."""
    import av

    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream("libx264", rate=fractions.Fraction(FPS))
        stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
        stream.options = {"crf": "18", "g": str(GOP)}
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(pattern_frame(i, height, width), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="session")
def video_files(tmp_path_factory) -> dict[str, Path]:
    """Paths: ``good`` (faststart), ``moov_end`` (index at the end), ``corrupt`` (random bytes),
    ``empty`` (0 bytes), ``truncated`` (faststart cut at 60%), ``truncated_moov_end`` (cut at 60%),
    ``missing`` (no file)."""
    root = tmp_path_factory.mktemp("videos")
    files = {
        "good": write_pattern_clip(root / "good.mp4"),
        "moov_end": write_pattern_clip(root / "moov_end.mp4", faststart=False),
    }
    files["corrupt"] = root / "corrupt.mp4"
    files["corrupt"].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    files["empty"] = root / "empty.mp4"
    files["empty"].write_bytes(b"")
    for name, source in (("truncated", "good"), ("truncated_moov_end", "moov_end")):
        data = files[source].read_bytes()
        files[name] = root / f"{name}.mp4"
        files[name].write_bytes(data[: int(len(data) * 0.6)])
    files["missing"] = root / "missing.mp4"
    return files


@pytest.fixture(scope="session")
def clip_folder(tmp_path_factory) -> Path:
    """A UCF-101-style folder: ``cats/`` with 3 good clips, ``dogs/`` with 2 good clips and 1 corrupt file."""
    root = tmp_path_factory.mktemp("clips")
    for label, count in (("cats", 3), ("dogs", 2)):
        (root / label).mkdir()
        for i in range(count):
            write_pattern_clip(root / label / f"{label}_{i}.mp4", num_frames=24 + 4 * i)
    (root / "dogs" / "broken.mp4").write_bytes(os.urandom(2048))
    return root


@pytest.fixture
def frame_index_of() -> Callable[[np.ndarray], list[int]]:
    return frame_index


@pytest.fixture
def pattern() -> Callable[..., np.ndarray]:
    return pattern_frame


@pytest.fixture
def write_clip() -> Callable[..., Path]:
    return write_pattern_clip
