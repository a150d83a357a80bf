"""Tokenizer configs: :class:`LFQConfig` (the quantizer) nested in :class:`TokenizerConfig` (the model).

Presets (``TokenizerConfig.PRESETS``, or ``VideoTokenizer.from_preset(name, **overrides)``):

| preset | base | multipliers   | blocks/level | time down | bits | 17x128x128 -> | params |
|--------|------|---------------|--------------|-----------|------|---------------|--------|
| tiny   | 32   | (1, 2, 2)     | 1            | (T, T)    | 10   | 5x32x32 (/4)  | 3.4M   |
| S      | 64   | (1, 2, 2, 4)  | 2            | (F, T, T) | 18   | 5x16x16 (/8)  | 56.4M  |
| B      | 128  | (1, 2, 2, 4)  | 4            | (F, T, T) | 18   | 5x16x16 (/8)  | 370.5M |
| L      | 128  | (1, 2, 2, 4)  | 6            | (F, T, T) | 18   | 5x16x16 (/8)  | 515.7M |

Mid blocks = blocks per level. ``tiny`` is meant for CPU (GroupNorm with 8 groups, 1 block per
level, spatial /4 so a small frame still gives a useful grid): at 64x64 a 17-frame clip gives
5x16x16 = 1280 tokens of 10 bits (1024 codes, so a small CPU run can use its whole codebook), at 32x32
5x8x8 = 320 tokens. ``B`` is the Open-MAGVIT2 reference video net (about 370M parameters there too);
``L`` is B with 6 residual blocks per level and in the middle (same token grid, 17x128x128 -> 5x16x16).

An *image* tokenizer is a config with ``temporal_kernel_size=1`` and no temporal downsampling
(``image_config(video_config)`` builds it); ``inflate.py`` turns its weights into a video model.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import ClassVar

from videogen.config_loader import ConfigError, check
from videogen.tokenizer.causal_conv import TIME_PADDINGS

QUANTIZERS = ("lfq", "fsq", "bsq", "vq")


@dataclass
class BinaryCodeConfig:
    """What LFQ and BSQ share: ``bits`` sign bits per latent position, 2**bits codes, and their losses.

    Loss = commitment_weight * mean((z - sg(q))^2)
         + entropy_weight(step) * (mean per-sample entropy - codebook_entropy_gamma * codebook entropy).

    Annealing convention: the entropy weight is ``entropy_anneal_start * entropy_weight`` at step 0 and
    falls linearly to ``entropy_weight`` at ``entropy_anneal_steps`` (paper: 0.3 -> 0.1 over 2k steps),
    constant after. ``entropy_anneal_start=1`` disables annealing; ``step=None`` uses ``entropy_weight``.
    """

    bits: int = 18
    temperature: float = 0.01  # tau in p(c) = softmax(2<z, c> / tau)
    commitment_weight: float = 0.25
    entropy_weight: float = 0.1
    codebook_entropy_gamma: float = 1.0
    entropy_anneal_start: float = 3.0  # multiplier of entropy_weight at step 0
    entropy_anneal_steps: int = 2000

    def validate(self) -> None:
        check(1 <= self.bits <= 30, "bits", self.bits, "use 1..30 bits (2**bits codes fit in int64 math)")
        check(self.temperature > 0, "temperature", self.temperature, "must be > 0")
        check(self.commitment_weight >= 0, "commitment_weight", self.commitment_weight, "must be >= 0")
        check(self.entropy_weight >= 0, "entropy_weight", self.entropy_weight, "must be >= 0")
        check(
            self.entropy_anneal_start >= 0, "entropy_anneal_start", self.entropy_anneal_start, "must be >= 0"
        )
        check(
            self.entropy_anneal_steps >= 0, "entropy_anneal_steps", self.entropy_anneal_steps, "must be >= 0"
        )

    @property
    def latent_channels(self) -> int:
        return self.bits

    @property
    def codebook_size(self) -> int:
        return 2**self.bits


@dataclass
class LFQConfig(BinaryCodeConfig):
    """Lookup-free quantizer (MAGVIT-v2): codes sign(z) in {-1, +1}^bits after a normalization."""

    # what keeps z at O(1) before the sign: "group_norm" (per frame, no affine), "soft_clamp"
    # (v * tanh(z / v)) or "none"
    normalization: str = "group_norm"
    norm_groups: int = 1  # groups of the "group_norm" normalization (must divide bits)
    soft_clamp_value: float = 10.0

    def validate(self) -> None:
        super().validate()
        check(
            self.normalization in ("group_norm", "soft_clamp", "none"),
            "normalization",
            self.normalization,
            "choose 'group_norm', 'soft_clamp' or 'none'",
        )
        check(
            self.norm_groups >= 1 and self.bits % self.norm_groups == 0,
            "norm_groups",
            self.norm_groups,
            f"must divide bits = {self.bits}",
        )
        check(self.soft_clamp_value > 0, "soft_clamp_value", self.soft_clamp_value, "must be > 0")


@dataclass
class BSQConfig(BinaryCodeConfig):
    """Binary spherical quantizer (BSQ-ViT): z L2-normalized over its channels, then sign / sqrt(bits).

    Every code has norm 1, so the quantization error is bounded and no commitment loss is needed
    (the BSQ recipe uses 0); the entropy terms are LFQ's, on the scaled codes.
    """

    commitment_weight: float = 0.0


@dataclass
class FSQConfig:
    """Finite scalar quantizer: channel i of z bounded (tanh) and rounded to ``levels[i]`` values in [-1, 1].

    prod(levels) codes, no auxiliary loss. Powers of two keep ids splittable into sub-tokens (the
    transformer's two heads above 2**14 codes): (8, 8, 4, 4) = 2**10, (8,) * 6 = 2**18; the FSQ paper's
    (8, 5, 5, 5) = 1000 works with a one-head transformer.
    """

    levels: tuple[int, ...] = (8, 8, 8, 8, 8, 8)

    def validate(self) -> None:
        check(
            len(self.levels) >= 1 and all(level >= 2 for level in self.levels),
            "levels",
            self.levels,
            "need at least one channel with >= 2 levels",
        )
        check(math.prod(self.levels) <= 2**30, "levels", self.levels, "at most 2**30 codes in all")

    @property
    def latent_channels(self) -> int:
        return len(self.levels)

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)


@dataclass
class VQConfig:
    """Lookup-codebook VQ (VQGAN / ViT-VQGAN line): ``dim``-d L2-normalized latents, nearest of
    ``codebook_size`` L2-normalized codes by cosine. The codebook follows EMAs of its assigned latents
    (decay ``ema_decay``, summed over ranks); a code whose EMA count falls below ``dead_code_threshold``
    times the mean count is restarted from a latent of the batch. Loss: commitment_weight *
    mean((z - sg(q))^2)."""

    codebook_size: int = 1024
    dim: int = 8
    commitment_weight: float = 0.25
    ema_decay: float = 0.99
    dead_code_threshold: float = 0.03

    def validate(self) -> None:
        check(2 <= self.codebook_size <= 2**20, "codebook_size", self.codebook_size, "use 2 .. 2**20")
        check(self.dim >= 1, "dim", self.dim, "must be >= 1")
        check(self.commitment_weight >= 0, "commitment_weight", self.commitment_weight, "must be >= 0")
        check(0 <= self.ema_decay < 1, "ema_decay", self.ema_decay, "must be in [0, 1)")
        check(self.dead_code_threshold >= 0, "dead_code_threshold", self.dead_code_threshold, "must be >= 0")

    @property
    def latent_channels(self) -> int:
        return self.dim


_TINY = {
    "base_channels": 32,
    "num_groups": 8,
    "channel_multipliers": (1, 2, 2),
    "num_res_blocks": 1,
    "num_mid_blocks": 1,
    "temporal_downsample": (True, True),
    # the four quantizers at about 10 bits per latent position. No LFQ / BSQ auxiliary losses: with the
    # reference weights (commitment 0.25, entropy 0.1) they outweigh the reconstruction signal that
    # reaches the encoder through the straight-through sign and a small model stalls
    # (tests/test_tokenizer_learning.py; the study in docs/tokenizer_study.md)
    "lfq": {"bits": 10, "commitment_weight": 0.0, "entropy_weight": 0.0},
    "bsq": {"bits": 10, "entropy_weight": 0.0},
    "fsq": {"levels": (8, 8, 4, 4)},
    "vq": {"codebook_size": 1024},
}
_S = {
    "base_channels": 64,
    "channel_multipliers": (1, 2, 2, 4),
    "num_res_blocks": 2,
    "num_mid_blocks": 2,
    "temporal_downsample": (False, True, True),
    "lfq": {"bits": 18},
    "bsq": {"bits": 18},
    "fsq": {"levels": (8, 8, 8, 8, 8, 8)},
    "vq": {"codebook_size": 16384},
}
_B = {**_S, "base_channels": 128, "num_res_blocks": 4, "num_mid_blocks": 4}
_L = {**_B, "num_res_blocks": 6, "num_mid_blocks": 6}


@dataclass
class TokenizerConfig:
    """Causal 3D-CNN encoder/decoder around a quantizer (defaults = preset ``B``).

    With ``patch_size`` p > 1 the encoder first folds p x p pixel patches into channels (space-to-depth,
    a cheap full-resolution stem: no conv runs at full resolution) and the decoder's last conv makes
    the 3 p^2 values of each patch. Level i of the encoder has ``num_res_blocks`` ResBlocks at
    ``base_channels * channel_multipliers[i]`` channels; every level but the last ends in a strided
    causal conv that halves T where ``temporal_downsample[i]`` and H, W where ``spatial_downsample[i]``
    (None = every level). Spatial factor = p * 2**sum(spatial_downsample), temporal factor =
    2**sum(temporal_downsample); a clip needs T = 1 + temporal_factor * k frames and gives 1 + k latent
    frames.

    ``quantizer`` picks the bottleneck (``lfq`` | ``fsq`` | ``bsq`` | ``vq``); its section (``lfq``,
    ``fsq``, ``bsq``, ``vq``) configures it, the other sections are ignored.
    """

    PRESETS: ClassVar[dict[str, dict]] = {"tiny": _TINY, "S": _S, "B": _B, "L": _L}

    in_channels: int = 3
    base_channels: int = 128
    channel_multipliers: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 4
    num_mid_blocks: int = 4
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    spatial_downsample: tuple[bool, ...] | None = None  # per level like temporal_downsample; None = all
    patch_size: int = 1  # space-to-depth stem: p x p pixel patches folded into channels (1 = none)
    temporal_kernel_size: int = 3  # 1 = an image tokenizer (every conv is per frame)
    conv: str = (
        "full"  # "full" (k_t x k x k kernels) | "factorized" ((2+1)D: k x k per frame, then k_t over time)
    )
    # what the causal convs see before frame 0: "zeros" (black frames) | "first_frame" (frame 0 repeated, as
    # most causal video VAEs do: a still video then has the same latent in every latent frame)
    time_padding: str = "zeros"
    spatial_kernel_size: int = 3
    # the encoder's spatial kernel (None = spatial_kernel_size). 1 makes every code a function of its own
    # patch only (its p x p pixels over time, and the frame's norm statistics): the same local content gets
    # the same code anywhere, and a code does not change when something moves elsewhere in the frame.
    # The decoder keeps spatial_kernel_size and reads the codes around each position.
    encoder_spatial_kernel_size: int | None = None
    num_groups: int = 32  # GroupNorm groups (must divide every channel count)
    norm_eps: float = 1e-6
    quantizer: str = "lfq"
    lfq: LFQConfig = field(default_factory=LFQConfig)
    fsq: FSQConfig = field(default_factory=FSQConfig)
    bsq: BSQConfig = field(default_factory=BSQConfig)
    vq: VQConfig = field(default_factory=VQConfig)

    # ------------------------------------------------------------------ derived sizes

    @property
    def level_channels(self) -> tuple[int, ...]:
        return tuple(self.base_channels * m for m in self.channel_multipliers)

    @property
    def level_strides(self) -> tuple[tuple[int, int], ...]:
        """(temporal, spatial) stride of each downsampling level (encoder order, finest first)."""
        spatial = self.spatial_downsample
        if spatial is None:
            spatial = (True,) * len(self.temporal_downsample)
        return tuple((1 + bool(t), 1 + bool(s)) for t, s in zip(self.temporal_downsample, spatial))

    @property
    def spatial_factor(self) -> int:
        return self.patch_size * math.prod(s for _, s in self.level_strides)

    @property
    def temporal_factor(self) -> int:
        return math.prod(t for t, _ in self.level_strides)

    @property
    def quantizer_config(self) -> LFQConfig | FSQConfig | BSQConfig | VQConfig:
        """The section of the chosen quantizer."""
        return getattr(self, self.quantizer)

    @property
    def latent_channels(self) -> int:
        """Channels of the encoder's output and the decoder's input (the quantizer's code vectors)."""
        return self.quantizer_config.latent_channels

    @property
    def codebook_size(self) -> int:
        return self.quantizer_config.codebook_size

    def validate(self) -> None:
        check(self.in_channels >= 1, "in_channels", self.in_channels, "must be >= 1")
        check(self.base_channels >= 1, "base_channels", self.base_channels, "must be >= 1")
        check(
            len(self.channel_multipliers) >= 1 and all(m >= 1 for m in self.channel_multipliers),
            "channel_multipliers",
            self.channel_multipliers,
            "need at least one level and positive multipliers",
        )
        check(
            len(self.temporal_downsample) == len(self.channel_multipliers) - 1,
            "temporal_downsample",
            self.temporal_downsample,
            f"need one flag per downsampling level ({len(self.channel_multipliers) - 1} = levels - 1)",
        )
        check(
            self.spatial_downsample is None or len(self.spatial_downsample) == len(self.temporal_downsample),
            "spatial_downsample",
            self.spatial_downsample,
            f"need null (every level) or one flag per downsampling level ({len(self.temporal_downsample)})",
        )
        check(self.conv in ("full", "factorized"), "conv", self.conv, "use full or factorized")
        check(
            self.time_padding in TIME_PADDINGS,
            "time_padding",
            self.time_padding,
            f"use {' or '.join(TIME_PADDINGS)}",
        )
        check(self.patch_size >= 1, "patch_size", self.patch_size, "must be >= 1 (1 = no patchify stem)")
        check(self.num_res_blocks >= 1, "num_res_blocks", self.num_res_blocks, "must be >= 1")
        check(self.num_mid_blocks >= 0, "num_mid_blocks", self.num_mid_blocks, "must be >= 0")
        check(
            self.temporal_kernel_size >= 1,
            "temporal_kernel_size",
            self.temporal_kernel_size,
            "must be >= 1 (1 = image tokenizer)",
        )
        check(
            self.temporal_kernel_size > 1 or not any(self.temporal_downsample),
            "temporal_downsample",
            self.temporal_downsample,
            "temporal downsampling needs temporal_kernel_size > 1",
        )
        check(
            self.spatial_kernel_size >= 1 and self.spatial_kernel_size % 2 == 1,
            "spatial_kernel_size",
            self.spatial_kernel_size,
            "must be odd (3 = the reference)",
        )
        check(
            self.encoder_spatial_kernel_size is None
            or (self.encoder_spatial_kernel_size >= 1 and self.encoder_spatial_kernel_size % 2 == 1),
            "encoder_spatial_kernel_size",
            self.encoder_spatial_kernel_size,
            "must be odd (1 = codes of their own patch only) or null (= spatial_kernel_size)",
        )
        bad = [c for c in self.level_channels if c % self.num_groups]
        check(
            self.num_groups >= 1 and not bad,
            "num_groups",
            self.num_groups,
            f"must divide every level's channel count {self.level_channels}",
        )
        check(self.norm_eps > 0, "norm_eps", self.norm_eps, "must be > 0")
        check(
            self.quantizer in QUANTIZERS, "quantizer", self.quantizer, f"choose from {', '.join(QUANTIZERS)}"
        )
        try:
            self.quantizer_config.validate()
        except ConfigError as e:  # name the nested key
            raise ConfigError(str(e).replace("config key '", f"config key '{self.quantizer}.", 1)) from None


def image_config(config: TokenizerConfig) -> TokenizerConfig:
    """The image (per-frame) counterpart of a video config: temporal kernel 1, no temporal downsampling."""
    return dataclasses.replace(
        config,
        temporal_kernel_size=1,
        temporal_downsample=tuple(False for _ in config.temporal_downsample),
        **{kind: dataclasses.replace(getattr(config, kind)) for kind in QUANTIZERS},
    )
