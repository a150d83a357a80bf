"""``TransformerTrainingConfig``: everything ``./run.sh train transformer`` reads (YAML + dotted overrides).

Sections: ``run`` (where), ``data`` (the clips the token cache is made from, ``data.image_data`` the
images image generation also trains on; the window frames / size / fps go into the export),
``tokenizer`` (its export folder), ``cache`` / ``val_cache`` / ``image_cache`` (token caches),
``tokenize`` (how the caches are made), ``model`` (preset +
deltas; ``codebook_size``, ``max_frames/height/width`` and ``num_classes`` are filled from the cache,
so they never disagree with it), ``masking`` (tasks, mask schedule, CFG dropout), ``evaluation``,
``sampling`` (periodic sample videos) and ``train`` (engine, optimizer, schedule, checkpoints, logs).
The label smoothing of the loss is ``model.label_smoothing`` (it travels with the model's config).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import videogen
from videogen.config_loader import check, from_dict, load_config
from videogen.data.config import DataConfig
from videogen.errors import UserError
from videogen.inference.sampling import SamplingOptions
from videogen.training.config import RunConfig, TrainConfig
from videogen.transformer.config import TransformerConfig
from videogen.transformer.mask_schedules import SCHEDULES

IMAGE_TASK = "image_generation"
"""Trained on 1-frame grids: ``tokens[:, :1]`` of the clips (with a causal tokenizer the tokens of frame 0
alone) and the images of ``data.image_data`` (their own cache); no condition, so no condition tokens."""

DEFAULT_TASKS = {
    "frame_prediction": 1.0,
    "interpolation": 1.0,
    "outpaint_central": 1.0,
    "inpaint_central": 1.0,
    "class_generation": 1.0,
    IMAGE_TASK: 1.0,
}
"""Every task the CLI offers by default (predict, interpolate, inpaint, outpaint, generate clip / image)."""


def canonical_task(name: str) -> str:
    """Task name or short code -> registry name (``UserError`` for an unknown one)."""
    from videogen.transformer.tasks import get_task

    return get_task(name).name


@dataclass
class TokenizeConfig:
    """How the token caches are made from ``data`` (see ``videogen.token_cache.writer.TokenCacheConfig``)."""

    cond_frames: int | None = None  # frame prediction condition frames; None = 1 + temporal factor (5)
    interp_cond_frames: int = 1  # interpolation condition frames at each end
    windows_per_clip: int = 1  # 1 = the centered window of each clip; K = K evenly spaced windows
    flip: Literal["none", "both"] = "none"  # "both": also cache the mirrored clip
    batch_size: int = 8  # clip windows per tokenizer call
    shard_size: int = 1024  # clip windows per shard file
    device: str = "auto"  # "auto" (CUDA when available) | "cpu" | "cuda" | "cuda:N"
    max_clips: int | None = None  # cache at most this many clips of data.train, evenly spaced; None = all

    def validate(self) -> None:
        check(
            self.cond_frames is None or self.cond_frames >= 1,
            "cond_frames",
            self.cond_frames,
            "use >= 1 or null",
        )
        check(self.interp_cond_frames >= 1, "interp_cond_frames", self.interp_cond_frames, "must be >= 1")
        check(self.windows_per_clip >= 1, "windows_per_clip", self.windows_per_clip, "must be >= 1")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        check(self.shard_size >= 1, "shard_size", self.shard_size, "must be >= 1")
        check(self.max_clips is None or self.max_clips >= 1, "max_clips", self.max_clips, "use >= 1 or null")


@dataclass
class MaskingConfig:
    """COMMIT training inputs: which tasks, how they mix, the mask ratio, and CFG dropout.

    ``tasks``: task name (or code) -> weight >= 0; a task is drawn by weight once per optimizer step
    (``task_mode: per_step``, MAGVIT v1; the same task on every rank) or per sample (``per_sample``).
    ``image_generation`` trains on 1-frame grids, which cannot share a batch with clips: with
    ``per_sample`` a step is an image step with probability weight / total (one draw per step, the same
    on every rank), and the other steps draw the video tasks per sample.
    """

    tasks: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TASKS))
    task_mode: Literal["per_step", "per_sample"] = "per_sample"
    schedule: str = "cosine"  # mask ratio gamma(u), u ~ U(0, 1): "cosine" | "linear" | "exp"
    ratio_mode: Literal["per_sample", "per_batch"] = "per_sample"  # one ratio per sample or per batch
    class_dropout: float = 0.1  # P(class -> UNCOND), for classifier-free guidance
    condition_dropout: float = 0.1  # P(condition -> none, task -> unconditional); nested in class dropout

    def validate(self) -> None:
        check(len(self.tasks) > 0, "tasks", self.tasks, "name at least one task with a weight")
        names = []
        for name, weight in self.tasks.items():
            try:
                names.append(canonical_task(str(name)))
            except UserError as e:
                check(False, "tasks", name, str(e))
            ok = isinstance(weight, (int, float)) and not isinstance(weight, bool) and weight >= 0
            check(ok, f"tasks.{name}", weight, "weights must be numbers >= 0")
        check(len(set(names)) == len(names), "tasks", list(self.tasks), "name each task once")
        check(
            sum(float(w) for w in self.tasks.values()) > 0, "tasks", self.tasks, "give some task a weight > 0"
        )
        check(self.schedule in SCHEDULES, "schedule", self.schedule, f"use one of {', '.join(SCHEDULES)}")
        for name in ("class_dropout", "condition_dropout"):
            value = getattr(self, name)
            check(0.0 <= value <= 1.0, name, value, "must be in [0, 1]")

    def weights(self) -> dict[str, float]:
        """Registry task name -> weight, for tasks with weight > 0 (in the given order)."""
        return {canonical_task(n): float(w) for n, w in self.tasks.items() if float(w) > 0}

    def cached_tasks(self) -> tuple[str, ...]:
        """Tasks the clip token cache must hold (every weighted task except image generation)."""
        return tuple(n for n in self.weights() if n != IMAGE_TASK)

    def video_weights(self) -> dict[str, float]:
        """:meth:`weights` without image generation (what a video step draws from)."""
        return {n: w for n, w in self.weights().items() if n != IMAGE_TASK}

    def image_fraction(self) -> float:
        """Probability that a ``per_sample`` step is an image-generation step (its share of the weights)."""
        weights = self.weights()
        return weights.get(IMAGE_TASK, 0.0) / sum(weights.values())


@dataclass
class EvalConfig:
    """Fixed-mask evaluation (EMA weights) at start, every ``train.log.eval_every_steps`` and at the end."""

    num_items: int = 8  # items per task (from the val cache, else the train cache)
    batch_size: int = 8
    seed: int = 0  # fixes the masks, so evaluations are comparable

    def validate(self) -> None:
        check(self.num_items >= 0, "num_items", self.num_items, "use 0 (off) or more")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")


# SamplingOptions fields a config sets (the seed is each call's own)
DECODING_FIELDS = (
    "steps",
    "schedule",
    "temperature",
    "top_k",
    "choice_temperature",
    "guidance_scale",
    "guidance_ramp",
)


@dataclass
class SamplingConfig:
    """Sample videos decoded every ``train.log.media_every_steps`` (and at the end) with the EMA weights.

    Written to ``<run>/samples/step_<N>_<task>.{mp4,gif}``: one row per item, columns condition |
    sample | ground truth (all decoded by the tokenizer), and to TensorBoard.
    """

    tasks: tuple[str, ...] = ("frame_prediction",)  # each must be a trained task
    num_videos: int = 2  # items per task (the first of the val cache, else of the train cache)
    steps: int = 12
    schedule: str = "cosine"
    temperature: float = 1.0  # sampling temperature of each token
    top_k: int | None = None
    choice_temperature: float = 4.5  # Gumbel noise on the confidence, annealed to 0
    guidance_scale: float = 0.0  # classifier-free guidance; 0 = off
    guidance_ramp: Literal["constant", "linear"] = "constant"
    # overrides of the fields above for the tasks given part of the video (frame prediction, interpolation,
    # inpainting, outpainting); generation uses the fields above. {steps: 1, temperature: 0.0} = one greedy
    # pass: the most likely code at every position at once
    conditioned: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    fps: float = 10.0  # of the written files (data.target_fps when set)
    formats: tuple[str, ...] = ("mp4", "gif")

    def decoding(self, conditioned: bool) -> dict[str, Any]:
        """The sampler's keyword arguments (``SamplingOptions`` fields but the seed) of generation, or of
        the tasks given part of the video (``conditioned``: with the overrides of ``self.conditioned``)."""
        fields = {name: getattr(self, name) for name in DECODING_FIELDS}
        return {**fields, **self.conditioned} if conditioned else fields

    def validate(self) -> None:
        for name in self.tasks:
            try:
                canonical_task(name)
            except UserError as e:
                check(False, "tasks", name, str(e))
        check(self.num_videos >= 0, "num_videos", self.num_videos, "use 0 (off) or more")
        check(self.steps >= 1, "steps", self.steps, "must be >= 1")
        check(self.schedule in SCHEDULES, "schedule", self.schedule, f"use one of {', '.join(SCHEDULES)}")
        check(self.temperature >= 0, "temperature", self.temperature, "must be >= 0")
        check(self.top_k is None or self.top_k >= 1, "top_k", self.top_k, "use >= 1 or null")
        check(self.choice_temperature >= 0, "choice_temperature", self.choice_temperature, "must be >= 0")
        unknown = sorted(set(self.conditioned) - set(DECODING_FIELDS))
        check(not unknown, "conditioned", self.conditioned, f"use the fields {', '.join(DECODING_FIELDS)}")
        try:
            SamplingOptions.from_kwargs(self.decoding(conditioned=True))
        except UserError as e:
            check(False, "conditioned", self.conditioned, str(e))
        check(self.fps > 0, "fps", self.fps, "must be > 0")
        check(all(f in ("mp4", "gif") for f in self.formats), "formats", self.formats, "use mp4 and/or gif")


DEFAULT_CONFIG = Path(videogen.__file__).resolve().parents[1] / "configs" / "transformer" / "default.yaml"


def _magvit_train() -> TrainConfig:
    """MAGVIT v1's recipe: AdamW (0.9, 0.96), wd 0.045, lr 1e-4, 5k warmup, cosine, clip 1.0."""
    return from_dict(
        TrainConfig,
        {
            "max_steps": 100_000,
            "ema_decay": 0.999,
            "optimizer": {"lr": 1e-4, "betas": [0.9, 0.96], "weight_decay": 0.045},
            "schedule": {"kind": "cosine", "warmup_steps": 5000, "min_lr_ratio": 0.0},
            "checkpoint": {"every_steps": 2000},
            "log": {"every_steps": 10, "eval_every_steps": 1000, "media_every_steps": 5000},
        },
    )


@dataclass
class TransformerTrainingConfig:
    """The resolved config of one transformer training run (written to ``<run>/config.yaml``)."""

    run: RunConfig = field(default_factory=lambda: RunConfig(name="transformer-default"))
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: str = "runs/tokenizer-default/export"  # a tokenizer export folder
    cache: str | None = None  # train token cache; None = <run>/token_cache (remade if the tokenizer changes)
    val_cache: str | None = None  # None = <run>/token_cache_val from data.val (when set); "none" = no val
    # images for image generation: None = <run>/token_cache_images from data.image_data (when set and
    # image_generation is trained); "none" = image generation trains on the clips' first frames only
    image_cache: str | None = None
    tokenize: TokenizeConfig = field(default_factory=TokenizeConfig)
    model: TransformerConfig = field(default_factory=lambda: from_dict(TransformerConfig, {"preset": "tiny"}))
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    loader_workers: int = 0  # DataLoader processes reading the token cache (memmaps: 0 is usually enough)
    train: TrainConfig = field(default_factory=_magvit_train)

    def validate(self) -> None:
        check(self.loader_workers >= 0, "loader_workers", self.loader_workers, "must be >= 0")
        trained = set(self.masking.weights())
        for name in self.sampling.tasks:
            check(
                canonical_task(name) in trained,
                "sampling.tasks",
                name,
                f"sample only trained tasks ({', '.join(sorted(trained))})",
            )


def load_training_config(path: str | Path | None, overrides: Iterable[str] = ()) -> TransformerTrainingConfig:
    """The dataclass defaults <- a YAML file of deltas (``configs/transformer/default.yaml`` when None)
    <- dotted overrides (:func:`videogen.config_loader.load_config`). ``masking.tasks`` and other mappings
    given in the file replace the default mapping as a whole."""
    return load_config(TransformerTrainingConfig, path, overrides, default_path=DEFAULT_CONFIG)
