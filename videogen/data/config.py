"""``DataConfig``: where the clips come from and how they are cut, resized and batched (the ``data:`` section)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from videogen.config_loader import check

DEFAULT_SAMPLE_DIR = "data/sample"


@dataclass
class DataConfig:
    """Data for training and evaluation.

    ``train`` / ``val`` / ``image_data`` are a JSONL manifest (``./run.sh data manifest``) or a folder
    (probed at start, slower). The defaults point at the generated sample data (``./run.sh data sample``).
    """

    train: str = f"{DEFAULT_SAMPLE_DIR}/train.jsonl"
    val: str | None = f"{DEFAULT_SAMPLE_DIR}/val.jsonl"
    num_frames: int = 17  # frames per clip: 1 + 4k for a tokenizer of temporal factor 4 (videogen.frame_rule)
    resolution: int = 64  # square output side in pixels: short-side resize, then crop
    # training only: cut random crop_size x crop_size squares from the resized frames (null = the whole
    # resolution square): smaller crops are cheaper samples of the same pixels for fully convolutional
    # models; evaluation always sees the full resolution
    crop_size: int | None = None
    frame_stride: int = 1  # take every n-th source frame (ignored when target_fps is set)
    target_fps: float | None = None  # resample every clip to this rate (frames per second) instead
    random_flip: bool = True  # horizontal flip with probability 1/2 (training only)
    backend: Literal["decord", "pyav"] = "decord"
    too_short: Literal["skip", "loop"] = "skip"  # clips shorter than a window: drop them, or loop them
    max_failure_fraction: float = 0.1  # stop once this fraction of files failed to decode
    min_samples_before_failure_check: int = 64  # ... but only after this many samples were seen
    image_data: str | None = None  # images (folder or manifest) mixed in as 1-frame videos
    # what image batches hold: "files" (image_data) or "clip_frames" (one random frame of a training
    # clip per image: as many distinct images as the clips have frames, no image files needed)
    image_source: Literal["files", "clip_frames"] = "files"
    image_ratio: float = 0.0  # fraction of training batches that are image batches (0 = video only)
    # images per image batch (per process); null = the clip batch size. An image costs about 1/num_frames
    # of a clip, so image batches can hold many more samples at the same cost
    image_batch_size: int | None = None
    num_workers: int = 2  # DataLoader worker processes (forked); 0 = load in the main process
    # decode every training file once at start into memory at the training resolution (for data that
    # fits in RAM: no decoding per step, so num_workers=0 leaves the cores to the model)
    preload: bool = False
    preload_max_gb: float = 4.0  # refuse to preload more than this (estimated from the manifest)
    prefetch_factor: int = 2  # batches each worker prepares ahead
    timeout_s: float = 300.0  # a worker that takes longer for one batch fails the run (a hung decoder)
    max_attempts: int = 10  # a sample is replaced by another at most this many times in a row
    probe_workers: int = 2  # processes that probe a folder given in place of a manifest

    def validate(self) -> None:
        check(bool(self.train), "train", self.train, "give a manifest (.jsonl) or a folder of videos")
        # >= 1 here; the tokenizer's frame rule (1 + 4k for the shipped ones) is checked where the
        # tokenizer is known (the training configs, the token cache, inference)
        check(self.num_frames >= 1, "num_frames", self.num_frames, "must be >= 1")
        check(
            self.resolution >= 8 and self.resolution % 8 == 0,
            "resolution",
            self.resolution,
            "must be a multiple of 8 (>= 8)",
        )
        check(
            self.crop_size is None or 8 <= self.crop_size <= self.resolution,
            "crop_size",
            self.crop_size,
            f"must be null or in [8, resolution={self.resolution}]",
        )
        check(self.frame_stride >= 1, "frame_stride", self.frame_stride, "must be >= 1")
        check(
            self.target_fps is None or self.target_fps > 0,
            "target_fps",
            self.target_fps,
            "must be > 0 or null",
        )
        check(
            0.0 <= self.max_failure_fraction <= 1.0,
            "max_failure_fraction",
            self.max_failure_fraction,
            "must be in [0, 1]",
        )
        check(
            self.min_samples_before_failure_check >= 0,
            "min_samples_before_failure_check",
            self.min_samples_before_failure_check,
            "must be >= 0",
        )
        check(0.0 <= self.image_ratio <= 1.0, "image_ratio", self.image_ratio, "must be in [0, 1]")
        check(
            self.image_ratio == 0.0 or self.image_source == "clip_frames" or bool(self.image_data),
            "image_ratio",
            self.image_ratio,
            "needs data.image_data (a folder or manifest of images) or data.image_source=clip_frames; "
            "set one or use image_ratio=0",
        )
        check(
            self.image_batch_size is None or self.image_batch_size >= 1,
            "image_batch_size",
            self.image_batch_size,
            "must be >= 1 or null (= the clip batch size)",
        )
        check(self.num_workers >= 0, "num_workers", self.num_workers, "must be >= 0")
        check(self.preload_max_gb > 0, "preload_max_gb", self.preload_max_gb, "must be > 0")
        check(self.prefetch_factor >= 1, "prefetch_factor", self.prefetch_factor, "must be >= 1")
        check(self.timeout_s > 0, "timeout_s", self.timeout_s, "must be > 0 seconds")
        check(self.max_attempts >= 1, "max_attempts", self.max_attempts, "must be >= 1")
        check(self.probe_workers >= 0, "probe_workers", self.probe_workers, "must be >= 0")
