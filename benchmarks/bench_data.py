"""Data loading throughput: decode + transform of clip windows from H.264 mp4, decord vs PyAV, and the DataLoader.

    python benchmarks/bench_data.py [--videos 4] [--size 320x240] [--frames 150] [--clips 40] [--batches 12]

Writes a few test videos first (moving textured shapes, H.264 crf 23, keyframe every second) to a
temporary folder. Table 1: one clip at a time in this process (one torch thread): median milliseconds
of decoding, of transforming (short-side resize, crop, flip, to [-1, 1]) and clips per second, for
17-frame windows at 64 and 128 pixels and strides 1 and 2. The first row per backend is the
ceiling: decoding whole videos front to back, in frames per second. Table 2: ``build_loader`` with
0, 1 and 2 forked workers (batch 8), clips per second after the first batch.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from videogen.data.clip_index import choose_window  # noqa: E402
from videogen.data.config import DataConfig  # noqa: E402
from videogen.data.loader import build_loader  # noqa: E402
from videogen.data.manifest_builder import build_manifest  # noqa: E402
from videogen.data.transforms import ClipTransform  # noqa: E402
from videogen.video_io import probe_video, read_video, write_video  # noqa: E402


def make_video(
    path: Path, rng: np.random.Generator, frames: int, height: int, width: int, fps: float
) -> None:
    """Camera-like content: a drifting textured background and three moving colored discs."""
    texture = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3)).astype(np.float32)
    texture = np.kron(texture, np.ones((8, 8, 1), np.float32))  # blocky texture, upsampled
    y, x = np.mgrid[0:height, 0:width]
    centers = rng.uniform(0, 1, (3, 2)) * [height, width]
    velocities = rng.uniform(-3, 3, (3, 2))
    colors = rng.uniform(60, 255, (3, 3))
    out = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        shift = int(t * 1.5) % 8
        frame = 0.6 * texture[shift : shift + height, shift : shift + width] + 0.2 * (x[..., None] + t) % 256
        for center, velocity, color in zip(centers, velocities, colors):
            cy, cx = (center + t * velocity) % [height, width]
            disc = (y - cy) ** 2 + (x - cx) ** 2 < (min(height, width) / 8) ** 2
            frame[disc] = color
        out[t] = np.clip(frame, 0, 255)
    write_video(path, out, fps, crf=23)


def time_decode_all(paths: list[Path], backend: str) -> float:
    """Sequential decode of whole videos: frames per second."""
    start, count = time.perf_counter(), 0
    for path in paths:
        count += len(read_video(path, backend=backend))
    return count / (time.perf_counter() - start)


def time_clips(paths: list[Path], counts: list[int], backend: str, size: int, stride: int, clips: int):
    """Median (decode ms, transform ms) per random 17-frame window and clips/s from their sum.

    Medians, because this machine is shared: a mean would carry other processes' bursts.
    """
    rng = np.random.default_rng(0)
    transform = ClipTransform(size, train=True)
    decode_ms, transform_ms = [], []
    for i in range(clips):
        row = i % len(paths)
        indices = choose_window(counts[row], 17, float(stride), "random", rng)
        t0 = time.perf_counter()
        frames = read_video(paths[row], indices, backend=backend)
        t1 = time.perf_counter()
        video = transform(frames, rng)
        t2 = time.perf_counter()
        assert video.shape == (3, 17, size, size)
        decode_ms.append(1000 * (t1 - t0))
        transform_ms.append(1000 * (t2 - t1))
    decode, trans = float(np.median(decode_ms)), float(np.median(transform_ms))
    return decode, trans, 1000 / (decode + trans)


def time_loader(manifest: Path, workers: int, batches: int, size: int, backend: str) -> float:
    cfg = DataConfig(train=str(manifest), num_frames=17, resolution=size, frame_stride=2, num_workers=workers)
    cfg.backend = backend
    loader, _ = build_loader(cfg, "train", batch_size=8, seed=0)
    iterator = iter(loader)
    next(iterator)  # workers started, first batch in
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        try:
            seen += len(next(iterator)["index"])
        except StopIteration:
            iterator = iter(loader)
            seen += len(next(iterator)["index"])
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT of the test videos")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--clips", type=int, default=40, help="clips timed per row of table 1")
    parser.add_argument("--batches", type=int, default=12, help="batches of 8 timed per row of table 2")
    parser.add_argument("--workers", default="0,1,2", help="worker counts for table 2")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "videos"
        rng = np.random.default_rng(0)
        paths = [folder / f"v{i}.mp4" for i in range(args.videos)]
        for path in paths:
            make_video(path, rng, args.frames, height, width, args.fps)
        counts = [probe_video(p).num_frames for p in paths]
        manifest = Path(tmp) / "m.jsonl"
        build_manifest(folder, manifest, workers=0)
        manifest.write_text(manifest.read_text() * 16)  # each video 16 times: enough rows for full batches
        print(
            f"\n{args.videos} videos {width}x{height}, {args.frames} frames, {args.fps:g} fps, H.264 crf 23, "
            f"GOP {round(args.fps)}; {os.cpu_count()} CPUs, torch {torch.__version__}, 1 torch thread\n"
        )
        print("| backend | clip | stride | decode ms/clip | transform ms/clip | clips/s |")
        print("|---|---|---|---:|---:|---:|")
        for backend in ("decord", "pyav"):
            print(
                f"| {backend} | whole videos, front to back | 1 | | | {time_decode_all(paths, backend):.0f} frames/s |"
            )
            for size in (64, 128):
                for stride in (1, 2):
                    decode_ms, transform_ms, rate = time_clips(
                        paths, counts, backend, size, stride, args.clips
                    )
                    print(
                        f"| {backend} | 17x{size}x{size} | {stride} | {decode_ms:.1f} | {transform_ms:.1f} | {rate:.1f} |"
                    )
        print("\n| DataLoader (build_loader, batch 8, stride 2) | workers | clips/s |")
        print("|---|---:|---:|")
        for backend in ("decord", "pyav"):
            for size in (64, 128):
                for workers in (int(w) for w in args.workers.split(",")):
                    rate = time_loader(manifest, workers, args.batches, size, backend)
                    print(f"| {backend}, 17x{size}x{size} | {workers} | {rate:.1f} |")


if __name__ == "__main__":
    main()
