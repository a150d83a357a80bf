"""``TokenizerTrainingConfig``: everything ``./run.sh train tokenizer`` reads (YAML + dotted overrides).

Sections: ``run`` (name, root), ``data`` (:class:`~videogen.data.DataConfig`), ``model``
(:class:`~videogen.tokenizer.TokenizerConfig`: a ``preset`` plus deltas), ``loss`` (reconstruction,
perceptual, GAN), ``train`` (engine, optimizer, schedule, checkpoints, logging cadence), ``eval``
(what the periodic and final held-out evaluations cover), ``decoder_finetune`` (an optional second
stage: the decoder alone on whole frames, tokens fixed) and ``init_from_image``.

The dataclass defaults are the CPU default run (``configs/tokenizer/default.yaml`` spells them out).
The tokenizer's optimizer defaults to Adam (0.5, 0.9), lr 1e-4 (Open-MAGVIT2), for the generator and
the discriminator alike. Evaluation cadence is ``train.log.eval_every_steps`` (held-out PSNR / SSIM /
codebook usage with EMA weights, plus side-by-side samples); ``train.log.media_every_steps`` puts
training reconstructions into TensorBoard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import videogen
from videogen.config_loader import check, from_dict, load_config
from videogen.data.config import DataConfig
from videogen.frame_rule import fits_frame_rule, frame_rule
from videogen.tokenizer.config import TokenizerConfig
from videogen.tokenizer.discriminator import DiscriminatorConfig
from videogen.training.config import OptimizerConfig, RunConfig, ScheduleConfig, TrainConfig

CONFIG_DIR = Path(videogen.__file__).resolve().parents[1] / "configs" / "tokenizer"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


@dataclass
class TokenizerOptimizerConfig(OptimizerConfig):
    """Adam with betas (0.5, 0.9), lr 1e-4, no weight decay (Open-MAGVIT2's tokenizer recipe)."""

    name: str = "adam"
    betas: tuple[float, float] = (0.5, 0.9)


@dataclass
class GANConfig:
    """Adversarial loss: a 3D discriminator in its own DeepSpeed engine, hinge for D, NS for G.

    ``generator_weight = 0`` turns the GAN off (no discriminator is built, none is checkpointed).
    From ``start_step`` (generator steps) on, each training step adds ``generator_weight * G loss``
    to the generator and then trains the discriminator on the detached reconstruction with
    ``lecam_weight * LeCam`` (EMAs of the mean logits, decay ``lecam_decay``) and, every
    ``r1_interval`` discriminator steps, ``r1_weight / 2 * r1_interval * R1`` (0 = off).
    """

    generator_weight: float = 0.1  # 0.1 images, 0.3 video in Open-MAGVIT2; 0 = no GAN
    start_step: int = 0  # generator step at which D training and the adversarial term begin
    generator_loss: str = "non_saturating"  # "non_saturating" | "hinge" (on the per-sample mean logit)
    discriminator_loss: str = "hinge"  # "hinge" | "non_saturating"
    lecam_weight: float = 0.05
    lecam_decay: float = 0.999
    r1_weight: float = 0.0  # gamma of the R1 gradient penalty on real inputs; 0 = off
    r1_interval: int = 1  # lazy R1: every n discriminator steps, scaled by n
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    optimizer: TokenizerOptimizerConfig = field(default_factory=TokenizerOptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(kind="constant"))

    def validate(self) -> None:
        check(self.generator_weight >= 0, "generator_weight", self.generator_weight, "use 0 (off) or > 0")
        check(self.start_step >= 0, "start_step", self.start_step, "must be >= 0")
        check(
            self.generator_loss in ("non_saturating", "hinge"),
            "generator_loss",
            self.generator_loss,
            "use non_saturating or hinge",
        )
        check(
            self.discriminator_loss in ("hinge", "non_saturating"),
            "discriminator_loss",
            self.discriminator_loss,
            "use hinge or non_saturating",
        )
        check(self.lecam_weight >= 0, "lecam_weight", self.lecam_weight, "use 0 (off) or > 0")
        check(0 <= self.lecam_decay < 1, "lecam_decay", self.lecam_decay, "must be in [0, 1)")
        check(self.r1_weight >= 0, "r1_weight", self.r1_weight, "use 0 (off) or > 0")
        check(self.r1_interval >= 1, "r1_interval", self.r1_interval, "must be >= 1")

    @property
    def enabled(self) -> bool:
        return self.generator_weight > 0


@dataclass
class LossConfig:
    """Generator loss: ``w_rec * rec + w_perc * LPIPS + w_g * G_adv + LFQ (commitment + entropy)``.

    The LFQ weights and entropy annealing live in ``model.lfq``. The perceptual loss needs a local
    VGG16 weights file (``vgg_path``, torchvision layout; optional LPIPS linear layers in
    ``lpips_path``); without one it is off, which the run says once at start.
    """

    reconstruction: str = "l1"  # "l1" | "l2"
    reconstruction_weight: float = 1.0
    perceptual_weight: float = 1.0  # used only when vgg_path is set
    vgg_path: str | None = None  # local torchvision vgg16 (features) or LPIPS state dict
    lpips_path: str | None = None  # LPIPS linear layers, if not in vgg_path
    perceptual_frames: int | None = None  # random frames per clip for the perceptual loss; null = all
    gan: GANConfig = field(default_factory=GANConfig)

    def validate(self) -> None:
        check(self.reconstruction in ("l1", "l2"), "reconstruction", self.reconstruction, "use l1 or l2")
        check(self.reconstruction_weight >= 0, "reconstruction_weight", self.reconstruction_weight, ">= 0")
        check(self.perceptual_weight >= 0, "perceptual_weight", self.perceptual_weight, "must be >= 0")
        check(
            self.perceptual_frames is None or self.perceptual_frames >= 1,
            "perceptual_frames",
            self.perceptual_frames,
            "use null (all frames) or >= 1",
        )


@dataclass
class EvalConfig:
    """Held-out evaluation (EMA weights) on ``data.val``: every ``train.log.eval_every_steps`` and at the end.

    ``kind``: what ``data.val`` holds, ``"video"`` clips (centered windows of ``num_frames``, default
    ``data.num_frames``: a run may train on short clips and be scored on long ones)
    or ``"image"`` files (1-frame clips, for image tokenizers). Samples: the first ``num_samples``
    held-out clips side by side (input | reconstruction) as ``samples/step_XXXXXX.{mp4,gif}``.
    ``sets``: more held-out sets (name -> manifest or folder, of the same ``kind``; e.g. ``real:
    data/sample/real_val.jsonl``), evaluated and reported beside ``data.val`` (metrics
    ``eval/<name>/...``, samples ``samples/step_XXXXXX_<name>.*``, ``reconstructions_<name>.*``).
    """

    kind: str = "video"  # "video" | "image"
    num_clips: int | None = 40  # held-out clips evaluated; null = all
    num_frames: int | None = None  # frames per held-out clip (1 + t*k); null = data.num_frames
    batch_size: int = 4
    num_samples: int = 4  # clips in the side-by-side sample videos; 0 = none
    sample_fps: float = 8.0  # frame rate of the sample mp4 / gif
    final: str = "on"  # "on" | "off": evaluate the export and write reconstructions after training
    sets: dict[str, str] = field(default_factory=dict)  # more held-out sets: name -> manifest or folder

    def frames(self, data_frames: int) -> int:
        """Frames per held-out clip: ``num_frames``, else the training clips' ``data_frames``."""
        return self.num_frames or data_frames

    def validate(self) -> None:
        check(self.kind in ("video", "image"), "kind", self.kind, "use video or image")
        check(self.num_clips is None or self.num_clips >= 1, "num_clips", self.num_clips, "null or >= 1")
        check(self.num_frames is None or self.num_frames >= 1, "num_frames", self.num_frames, "null or >= 1")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        check(self.num_samples >= 0, "num_samples", self.num_samples, "must be >= 0")
        check(self.sample_fps > 0, "sample_fps", self.sample_fps, "must be > 0")
        check(self.final in ("on", "off"), "final", self.final, "use on or off")
        for name in self.sets:
            check(
                name.isidentifier() and name != "val",
                "sets",
                name,
                "set names must be identifiers other than 'val' (data.val is evaluated as 'val')",
            )


@dataclass
class DecoderFinetuneConfig:
    """Stage 2 of a run (VidTok's second stage, MaskBit's decoder fine-tune): the last ``fraction`` of
    ``train.max_steps`` train the decoder alone, on whole frames.

    At the first step of stage 2 the encoder and the quantizer take their EMA weights and stop learning
    (learning rate 0; they run without autograd), so the token ids are fixed from then on and the
    decoder fits them; its batches are ``crop_size`` crops (null = whole frames: the statistics the
    decoder's GroupNorms see at inference) of ``micro_batch_size`` clips and ``image_batch_size``
    images (null = the stage-1 sizes), drawn from the manifest ``train`` (null = ``data.train``: a
    stage 2 on part of the training data weights that part up). The optimizer, schedule and EMA go on
    as before. A fraction, not a step count, so that any ``train.max_steps`` keeps the split.
    """

    fraction: float = 0.0  # of train.max_steps; 0 = no second stage
    train: str | None = None  # stage 2's training manifest; null = data.train
    crop_size: int | None = None
    micro_batch_size: int | None = None
    image_batch_size: int | None = None

    def steps(self, max_steps: int) -> int:
        """Stage 2's share of ``max_steps`` optimizer steps."""
        return round(self.fraction * max_steps)

    def validate(self) -> None:
        check(
            0 <= self.fraction < 1, "fraction", self.fraction, "must be in [0, 1) (0 = no decoder fine-tune)"
        )
        for name in ("micro_batch_size", "image_batch_size"):
            value = getattr(self, name)
            check(value is None or value >= 1, name, value, "must be null or >= 1")


def _tiny() -> TokenizerConfig:
    return from_dict(TokenizerConfig, {"preset": "tiny"})


@dataclass
class TokenizerTrainConfig(TrainConfig):
    """:class:`TrainConfig` with the tokenizer's optimizer defaults (Adam (0.5, 0.9), lr 1e-4)."""

    optimizer: TokenizerOptimizerConfig = field(default_factory=TokenizerOptimizerConfig)


@dataclass
class TokenizerRunConfig(RunConfig):
    """:class:`RunConfig` named ``tokenizer-default`` unless set."""

    name: str = "tokenizer-default"


@dataclass
class TokenizerTrainingConfig:
    """The whole tokenizer run. Run directory: ``<run.root>/<run.name>/``."""

    run: TokenizerRunConfig = field(default_factory=TokenizerRunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: TokenizerConfig = field(default_factory=_tiny)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TokenizerTrainConfig = field(default_factory=TokenizerTrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    decoder_finetune: DecoderFinetuneConfig = field(default_factory=DecoderFinetuneConfig)
    init_from_image: str | None = None  # image tokenizer export, last-tap inflated into the video model

    def validate(self) -> None:
        factor = self.model.temporal_factor
        check(
            fits_frame_rule(self.data.num_frames, factor),
            "data.num_frames",
            self.data.num_frames,
            f"must be {frame_rule(factor)} for this model (temporal factor {factor})",
        )
        check(
            self.data.resolution % self.model.spatial_factor == 0,
            "data.resolution",
            self.data.resolution,
            f"must be a multiple of the model's spatial factor {self.model.spatial_factor}",
        )
        check(
            (self.data.crop_size or 0) % self.model.spatial_factor == 0,
            "data.crop_size",
            self.data.crop_size,
            f"must be a multiple of the model's spatial factor {self.model.spatial_factor}",
        )
        crop = self.decoder_finetune.crop_size
        check(
            crop is None or (crop % self.model.spatial_factor == 0 and 8 <= crop <= self.data.resolution),
            "decoder_finetune.crop_size",
            crop,
            f"must be null or a multiple of {self.model.spatial_factor} in [8, data.resolution]",
        )
        frames = self.eval.num_frames
        check(
            frames is None or fits_frame_rule(frames, factor),
            "eval.num_frames",
            frames,
            f"must be {frame_rule(factor)} for this model (temporal factor {factor})",
        )
        check(
            self.eval.kind == "video" or self.data.num_frames == 1,
            "eval.kind",
            self.eval.kind,
            "image evaluation needs data.num_frames=1 (an image tokenizer)",
        )


def load_training_config(
    config_path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> TokenizerTrainingConfig:
    """The dataclass defaults (the reference recipe, preset B) <- a YAML file of deltas
    (``configs/tokenizer/default.yaml``, the CPU run, when None) <- dotted overrides
    (:func:`videogen.config_loader.load_config`). Bad keys or values raise :class:`~videogen.config_loader.ConfigError`
    (exit code 2). A ``model:`` section that names a ``preset`` starts from it, deltas merged key by key."""
    return load_config(TokenizerTrainingConfig, config_path, overrides, default_path=DEFAULT_CONFIG)
