"""Training configs: the engine (DeepSpeed), optimizer, LR schedule, checkpoints, logging and the run.

A training command's top-level config composes these, e.g. ``run: RunConfig`` (``run.name``) and
``train: TrainConfig`` (``train.engine.zero_stage=2``, ``train.optimizer.lr=1e-4``, ...). The DeepSpeed
dict is generated from :class:`TrainConfig` by :func:`videogen.training.build_deepspeed_config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from videogen.config_loader import check


@dataclass
class EngineConfig:
    """How DeepSpeed runs one model: ZeRO stage, precision, batch, accumulation, clipping."""

    zero_stage: int = 2  # 0 | 1 | 2 (ZeRO-3 partitions weights: EMA, export and the GAN step need 0-2)
    precision: str = "auto"  # "auto" (bf16 on GPU, fp32 on CPU) | "fp32" | "bf16"
    micro_batch_size: int = 1  # samples per process per forward
    gradient_accumulation_steps: int = 1
    gradient_clipping: float = 1.0  # max global grad norm; 0 = off
    activation_checkpointing: str = "none"  # "none" | "blocks" (recompute the model's blocks in backward)
    deepspeed_overrides: str | None = None  # JSON file deep-merged over the generated DeepSpeed dict

    def validate(self) -> None:
        check(self.zero_stage in (0, 1, 2), "zero_stage", self.zero_stage, "use 0, 1 or 2")
        check(
            self.precision in ("auto", "fp32", "bf16"), "precision", self.precision, "use auto, fp32 or bf16"
        )
        check(self.micro_batch_size >= 1, "micro_batch_size", self.micro_batch_size, "must be >= 1")
        check(
            self.gradient_accumulation_steps >= 1,
            "gradient_accumulation_steps",
            self.gradient_accumulation_steps,
            "must be >= 1",
        )
        check(self.gradient_clipping >= 0, "gradient_clipping", self.gradient_clipping, "use 0 (off) or > 0")
        check(
            self.activation_checkpointing in ("none", "blocks"),
            "activation_checkpointing",
            self.activation_checkpointing,
            "use none or blocks",
        )


@dataclass
class OptimizerConfig:
    """Adam(W) settings. ``implementation``: "auto" = torch AdamW (foreach on CPU, fused on GPU)."""

    name: str = "adamw"  # "adamw" (decoupled weight decay) | "adam" (L2 weight decay)
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-8
    weight_decay: float = 0.0  # applied to weights with >= 2 dims; biases, norms and gains get none
    implementation: str = (
        "auto"  # "auto" | "torch" | "torch_fused" (CUDA) | "deepspeed" (FusedAdam, JIT-built)
    )

    def validate(self) -> None:
        check(self.name in ("adamw", "adam"), "name", self.name, "use adamw or adam")
        check(self.lr > 0, "lr", self.lr, "must be > 0")
        check(all(0 <= b < 1 for b in self.betas), "betas", self.betas, "each beta must be in [0, 1)")
        check(self.eps > 0, "eps", self.eps, "must be > 0")
        check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "must be >= 0")
        check(
            self.implementation in ("auto", "torch", "torch_fused", "deepspeed"),
            "implementation",
            self.implementation,
            "use auto, torch, torch_fused or deepspeed",
        )


@dataclass
class ScheduleConfig:
    """Learning-rate multiplier over optimizer steps: linear warmup, then decay to ``min_lr_ratio``."""

    kind: str = "cosine"  # "cosine" | "linear" | "constant" (after warmup)
    warmup_steps: int = 0
    decay_steps: int | None = None  # steps from the end of warmup to the floor; None = until max_steps
    min_lr_ratio: float = 0.01  # floor as a fraction of the peak lr
    cooldown_steps: int = 0  # the last N steps of the run fall linearly to the floor (with constant: WSD)

    def validate(self) -> None:
        check(
            self.kind in ("cosine", "linear", "constant"), "kind", self.kind, "use cosine, linear or constant"
        )
        check(self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, "must be >= 0")
        check(
            self.decay_steps is None or self.decay_steps >= 1,
            "decay_steps",
            self.decay_steps,
            "use >= 1 or null",
        )
        check(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", self.min_lr_ratio, "must be in [0, 1]")
        check(self.cooldown_steps >= 0, "cooldown_steps", self.cooldown_steps, "must be >= 0")


@dataclass
class CheckpointConfig:
    """When checkpoints are written, how many are kept, and where a run resumes from."""

    every_steps: int = 1000  # also written at the last step and on SIGINT/SIGTERM; 0 = only those
    keep_last: int = 3  # older complete checkpoints are deleted; 0 = keep all
    resume: str = (
        "auto"  # "auto" (newest complete checkpoint of this run, else start fresh) | "never" | a path
    )

    def validate(self) -> None:
        check(self.every_steps >= 0, "every_steps", self.every_steps, "use 0 (end and signals only) or more")
        check(self.keep_last >= 0, "keep_last", self.keep_last, "use 0 (keep all) or more")
        check(bool(self.resume), "resume", self.resume, "use auto, never or a checkpoint path")


@dataclass
class LogConfig:
    """Progress bar, TensorBoard and ``metrics.jsonl`` cadence (rank 0 writes)."""

    every_steps: int = 10  # scalars (averaged over the steps since the last log and over ranks)
    eval_every_steps: int = 0  # the loop's evaluation callback; 0 = off
    media_every_steps: int = 0  # sample videos / images to TensorBoard; 0 = off
    tensorboard: bool = True
    progress_bar: bool = True

    def validate(self) -> None:
        for name in ("every_steps", "eval_every_steps", "media_every_steps"):
            check(getattr(self, name) >= 0, name, getattr(self, name), "use 0 (off) or more")
        check(self.every_steps >= 1, "every_steps", self.every_steps, "must be >= 1")


@dataclass
class TrainConfig:
    """Everything the generic training loop needs, shared by the tokenizer and transformer trainers."""

    max_steps: int = 1000  # optimizer steps
    # a wall-clock budget for the training loop (minutes, this invocation): the run finishes at the
    # first step past it as if max_steps were that step (schedules still follow max_steps); null = none
    max_minutes: float | None = None
    seed: int = 0
    ema_decay: float = 0.999  # EMA of the trained model's weights (fp32); 0 = no EMA
    max_nonfinite_steps: int = 5  # stop after this many steps in a row with a non-finite loss
    engine: EngineConfig = field(default_factory=EngineConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def validate(self) -> None:
        check(self.max_steps >= 1, "max_steps", self.max_steps, "must be >= 1")
        check(
            self.max_minutes is None or self.max_minutes > 0,
            "max_minutes",
            self.max_minutes,
            "must be > 0 or null (no time budget)",
        )
        check(self.seed >= 0, "seed", self.seed, "must be >= 0")
        check(0 <= self.ema_decay < 1, "ema_decay", self.ema_decay, "use 0 (off) or a value in (0, 1)")
        check(self.max_nonfinite_steps >= 1, "max_nonfinite_steps", self.max_nonfinite_steps, "must be >= 1")


@dataclass
class RunConfig:
    """Where a run lives: ``<root>/<name>/`` holds config.yaml, checkpoints/, tensorboard/, metrics.jsonl."""

    name: str = "default"
    root: str = "runs"

    def validate(self) -> None:
        ok = bool(self.name) and "/" not in self.name and self.name not in (".", "..")
        check(ok, "name", self.name, "use a plain folder name such as tokenizer-ucf")
