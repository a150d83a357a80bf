"""What a token cache holds and how it is made: :class:`TokenCacheConfig` (clips, windows, tasks, shards)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from videogen.config_loader import check
from videogen.data.config import DataConfig


@dataclass
class TokenCacheConfig:
    """What to cache and how. Data fields mean what they mean in ``DataConfig`` (evaluation windows)."""

    tasks: tuple[str, ...] = ("all",)  # task names or codes; "all" = every task that fits the clip length
    kind: Literal["video", "image"] = "video"  # "image": an image manifest, each image a 1-frame clip
    num_frames: int = 17  # 1 + 4k for a temporal factor 4 tokenizer (checked against the tokenizer)
    resolution: int = 64  # square side: short-side resize, center crop
    frame_stride: int = 1
    target_fps: float | None = None
    backend: Literal["decord", "pyav"] = "decord"
    too_short: Literal["skip", "loop"] = "skip"
    split: str | None = None  # only manifest rows of this split (None: every row)
    windows_per_clip: int = 1  # 1 = the centered window; K = K evenly spaced windows
    flip: Literal["none", "both"] = "none"  # "both": also store the horizontally flipped clip
    cond_frames: int | None = None  # frame prediction condition frames (None: 1 + temporal factor)
    interp_cond_frames: int = 1  # interpolation condition frames at each end
    shard_size: int = 1024  # clip windows per shard
    batch_size: int = 8  # clip windows per tokenizer call (times 1 + conditions, times 2 with flips)
    num_workers: int = 2  # decoding processes (forked); 0 = decode in the main process

    @classmethod
    def from_data_config(cls, data: DataConfig, **fields) -> TokenCacheConfig:
        """The clip settings of a ``DataConfig`` (frames, size, stride / fps, decoder, workers) + ``fields``."""
        names = (
            "num_frames",
            "resolution",
            "frame_stride",
            "target_fps",
            "backend",
            "too_short",
            "num_workers",
        )
        return cls(**{name: getattr(data, name) for name in names}, **fields)

    def validate(self) -> None:
        check(len(self.tasks) > 0, "tasks", self.tasks, "name at least one task, or 'all'")
        check(self.kind in ("video", "image"), "kind", self.kind, "use video or image")
        check(
            self.kind == "video" or (self.num_frames == 1 and self.windows_per_clip == 1),
            "num_frames",
            self.num_frames,
            "an image cache holds 1-frame clips: use num_frames=1 and windows_per_clip=1",
        )
        check(self.num_frames >= 1, "num_frames", self.num_frames, "must be >= 1")
        check(self.resolution >= 1, "resolution", self.resolution, "must be >= 1")
        check(self.frame_stride >= 1, "frame_stride", self.frame_stride, "must be >= 1")
        check(self.target_fps is None or self.target_fps > 0, "target_fps", self.target_fps, "must be > 0")
        check(self.windows_per_clip >= 1, "windows_per_clip", self.windows_per_clip, "must be >= 1")
        check(self.flip in ("none", "both"), "flip", self.flip, "use none or both")
        check(
            self.cond_frames is None or self.cond_frames >= 1, "cond_frames", self.cond_frames, "must be >= 1"
        )
        check(self.interp_cond_frames >= 1, "interp_cond_frames", self.interp_cond_frames, "must be >= 1")
        check(self.shard_size >= 1, "shard_size", self.shard_size, "must be >= 1")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        check(self.num_workers >= 0, "num_workers", self.num_workers, "must be >= 0")
