"""3D discriminators for the tokenizer's GAN loss: PatchGAN (default) and StyleGAN-style with blur pooling.

Both take videos ``(B, C, T, H, W)`` in [-1, 1], T = 1 (an image) included, and return logits:
the PatchGAN a grid ``(B, 1, T', H', W')`` (one logit per space-time patch), the StyleGAN-style one
``(B, 1)``. Losses average logits per sample, so either shape works with
:mod:`videogen.tokenizer.losses`.

Norm option (``norm``): ``"batch"`` (Open-MAGVIT2's choice) normalises over each rank's own
micro-batch, like DDP without SyncBatchNorm; its running statistics are per rank and unused while
training (the discriminator only runs in train mode). ``"group"`` is batch-size independent and
identical on every rank. ``"none"`` drops normalisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from videogen.config_loader import check


@dataclass
class DiscriminatorConfig:
    """Which discriminator and its size. ``temporal_strides``: time stride of each strided PatchGAN layer."""

    kind: str = "patchgan"  # "patchgan" | "stylegan"
    in_channels: int = 3
    base_channels: int = 64
    norm: str = "batch"  # "batch" | "group" | "none"
    # PatchGAN: num_layers strided convs (x2 channels each, at most x8), then a stride-1 conv and the logit conv
    num_layers: int = 3
    temporal_strides: tuple[int, ...] = (2, 2, 1)
    # StyleGAN-style: residual blocks with 3D blur pooling, channels base * multiplier
    channel_multipliers: tuple[int, ...] = (2, 4, 4, 4)

    def validate(self) -> None:
        check(self.kind in ("patchgan", "stylegan"), "kind", self.kind, "use patchgan or stylegan")
        check(self.norm in ("batch", "group", "none"), "norm", self.norm, "use batch, group or none")
        check(self.base_channels >= 1, "base_channels", self.base_channels, "must be >= 1")
        check(self.num_layers >= 1, "num_layers", self.num_layers, "must be >= 1")
        check(
            len(self.temporal_strides) == self.num_layers and all(s in (1, 2) for s in self.temporal_strides),
            "temporal_strides",
            self.temporal_strides,
            f"give num_layers={self.num_layers} strides, each 1 or 2",
        )
        check(
            len(self.channel_multipliers) >= 1, "channel_multipliers", self.channel_multipliers, "give >= 1"
        )


class BatchNorm3dFP32(nn.BatchNorm3d):
    """BatchNorm3d computed in the dtype of its running statistics (fp32), whatever the input dtype.

    Same parameter and buffer names as ``nn.BatchNorm3d``. DeepSpeed's bf16 mode casts parameters
    but keeps buffers fp32, a mix ``F.batch_norm`` rejects; fp32 also keeps the statistics exact.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        momentum = self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked)
        dtype = self.running_mean.dtype if self.running_mean is not None else torch.float32
        weight = self.weight.to(dtype) if self.weight is not None else None
        bias = self.bias.to(dtype) if self.bias is not None else None
        batch_stats = self.training or self.running_mean is None
        out = F.batch_norm(
            x.to(dtype),
            self.running_mean,
            self.running_var,
            weight,
            bias,
            batch_stats,
            momentum or 0.0,
            self.eps,
        )
        return out.to(x.dtype)


def make_norm(kind: str, channels: int) -> nn.Module:
    """``"batch"`` -> BatchNorm3d (fp32 math), ``"group"`` -> GroupNorm (up to 32 groups), ``"none"`` -> Identity."""
    if kind == "batch":
        return BatchNorm3dFP32(channels)
    if kind == "group":
        groups = math.gcd(32, channels)
        return nn.GroupNorm(groups, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; use batch, group or none")


# ----------------------------------------------------------------------------- PatchGAN


class PatchDiscriminator3D(nn.Module):
    """3D PatchGAN in Open-MAGVIT2's layout: 3x3x3 convs, LeakyReLU(0.2), N(0, 0.02) init.

    Reference shapes (base 64, strides (2,2,1)): 17x128x128 -> 9x64x64 (64 ch) -> 5x32x32 (128)
    -> 5x16x16 (256) -> 5x16x16 (512) -> logits (B, 1, 5, 16, 16). A 1-frame input gives T' = 1.
    """

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        use_bias = cfg.norm == "none"
        channels = cfg.base_channels
        layers: list[nn.Module] = [
            nn.Conv3d(cfg.in_channels, channels, 3, stride=(cfg.temporal_strides[0], 2, 2), padding=1),
            nn.LeakyReLU(0.2),
        ]
        for index in range(1, cfg.num_layers + 1):
            out = cfg.base_channels * min(2**index, 8)
            stride = (cfg.temporal_strides[index], 2, 2) if index < cfg.num_layers else (1, 1, 1)
            layers += [
                nn.Conv3d(channels, out, 3, stride=stride, padding=1, bias=use_bias),
                make_norm(cfg.norm, out),
                nn.LeakyReLU(0.2),
            ]
            channels = out
        layers.append(nn.Conv3d(channels, 1, 3, stride=1, padding=1))
        self.layers = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.BatchNorm3d, nn.GroupNorm)):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` in [-1, 1] -> patch logits ``(B, 1, T', H', W')``."""
        return self.layers(video)


# ----------------------------------------------------------------------------- StyleGAN-style


class BlurPool3D(nn.Module):
    """Blur with a separable [1, 2, 1]^3 / 64 kernel, then stride 2 in T, H, W: size n -> ceil(n / 2).

    Replicate padding keeps a constant signal constant at the borders, so a 1-frame clip passes
    through time unchanged (MAGVIT-v2's 3D blur pooling in place of average pooling).
    """

    def __init__(self, channels: int):
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = taps[:, None, None] * taps[None, :, None] * taps[None, None, :]
        self.register_buffer(
            "kernel", (kernel / kernel.sum()).expand(channels, 1, 3, 3, 3).clone(), persistent=False
        )
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 1, 1, 1, 1, 1), mode="replicate")
        return F.conv3d(x, self.kernel.to(x.dtype), stride=2, groups=self.channels)


class ResBlockDown3D(nn.Module):
    """conv3 -> LReLU -> blur-pool -> conv3 -> LReLU, plus blur-pool -> 1x1x1 skip; sum / sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, in_channels, 3, padding=1)
        self.norm1 = make_norm(norm, in_channels)
        self.down = BlurPool3D(in_channels)
        self.conv2 = nn.Conv3d(in_channels, out_channels, 3, padding=1)
        self.norm2 = make_norm(norm, out_channels)
        self.skip = nn.Conv3d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.norm1(self.conv1(x)), 0.2)
        h = F.leaky_relu(self.norm2(self.conv2(self.down(h))), 0.2)
        return (h + self.skip(self.down(x))) / math.sqrt(2.0)


class StyleGANDiscriminator3D(nn.Module):
    """MAGVIT-style residual discriminator: conv_in, blur-pooled residual blocks, conv, two dense layers.

    Each block halves T, H and W (rounding up; T = 1 stays 1). The last feature map is average-pooled
    to ``(1, 4, 4)`` before the dense layers, so any input size (and T = 1) gives ``(B, 1)`` logits.
    """

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        channels = cfg.base_channels
        self.conv_in = nn.Conv3d(cfg.in_channels, channels, 3, padding=1)
        blocks = []
        for multiplier in cfg.channel_multipliers:
            out = cfg.base_channels * multiplier
            blocks.append(ResBlockDown3D(channels, out, cfg.norm))
            channels = out
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv3d(channels, channels, 3, padding=1)
        self.dense = nn.Linear(channels * 16, channels)
        self.logit = nn.Linear(channels, 1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` in [-1, 1] -> logits ``(B, 1)``."""
        h = F.leaky_relu(self.conv_in(video), 0.2)
        for block in self.blocks:
            h = block(h)
        h = F.leaky_relu(self.conv_out(h), 0.2)
        h = F.adaptive_avg_pool3d(h, (1, 4, 4)).flatten(1)  # (B, C, t, h, w) -> (B, C*16)
        return self.logit(F.leaky_relu(self.dense(h), 0.2))


def build_discriminator(cfg: DiscriminatorConfig) -> nn.Module:
    """The discriminator named by ``cfg.kind``."""
    if cfg.kind == "stylegan":
        return StyleGANDiscriminator3D(cfg)
    return PatchDiscriminator3D(cfg)
