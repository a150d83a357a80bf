"""LPIPS-style perceptual loss on VGG16 features, with weights from a local file (never downloaded).

The VGG16 feature stack is defined here with torchvision's parameter names (``features.0.weight``
... ``features.28.bias``), so a state dict saved from ``torchvision.models.vgg16().features`` (or the
whole model) loads without torchvision. Also accepted: LPIPS / taming-style files (``net.slice1.0.weight``
..., ``lin0.model.1.weight`` ...). With the five LPIPS linear layers the loss is LPIPS; without them
every channel weighs 1 (LPIPS's "baseline" variant).

Distance per image: for each tap (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3) normalise features
to unit length over channels, square the difference, weight channels (the linear layers), average
over space; sum over taps. Inputs are in [-1, 1].
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import torch
from einops import rearrange
from torch import nn

from videogen.errors import UserError

# torchvision's vgg16 "features": channels per conv, "M" = 2x2 max-pool (indices follow the Sequential)
VGG16_LAYOUT: tuple[int | str, ...] = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
)
TAPS = (3, 8, 15, 22, 29)  # indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in features
TAP_CHANNELS = (64, 128, 256, 512, 512)
# LPIPS input scaling: [-1, 1] -> ImageNet-normalised
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class VGG16Features(nn.Module):
    """torchvision's ``vgg16().features`` (same parameter names), returning the five LPIPS taps."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in VGG16_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU(inplace=False)]
                channels = int(item)
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in TAPS:
                taps.append(x)
                if index == TAPS[-1]:
                    break
        return taps


def _normalize_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map torchvision / LPIPS / taming key layouts onto ``features.N.*`` and ``lins.K.weight``."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if m := re.fullmatch(r"(?:features\.|net\.slice\d\.)?(\d+)\.(weight|bias)", key):
            out[f"features.{m.group(1)}.{m.group(2)}"] = value
        elif m := re.fullmatch(r"lins?\.?(\d)\.model\.1\.weight", key):
            out[f"lins.{m.group(1)}.weight"] = value
    return out


def read_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch file (loaded with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"perceptual weights file '{path}' does not exist; give a local VGG16 state dict")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input
        raise UserError(f"cannot read perceptual weights '{path}': {type(e).__name__}: {e}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"perceptual weights '{path}' must hold a state dict (name -> tensor)")
    return {k: v for k, v in state.items() if torch.is_tensor(v)}


class PerceptualLoss(nn.Module):
    """Frozen LPIPS-style distance: ``forward(x, y) -> (B,)``, 0 for identical inputs.

    Build with :meth:`from_files`. Parameters never train (``requires_grad=False``); gradients flow
    to the inputs. Keep it outside the DeepSpeed engines and move it with ``.to(device, dtype)``.
    """

    def __init__(self, lpips_weights: bool):
        super().__init__()
        self.vgg = VGG16Features()
        self.lins = (
            nn.ModuleList([nn.Conv2d(c, 1, 1, bias=False) for c in TAP_CHANNELS]) if lpips_weights else None
        )
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_files(cls, vgg_path: str | Path, lpips_path: str | Path | None = None) -> PerceptualLoss:
        """Load VGG16 features from ``vgg_path`` and LPIPS linear layers from it or from ``lpips_path``."""
        state = _normalize_keys(read_state_file(vgg_path))
        if lpips_path is not None:
            state.update(
                {
                    k: v
                    for k, v in _normalize_keys(read_state_file(lpips_path)).items()
                    if k.startswith("lins.")
                }
            )
        has_lins = any(k.startswith("lins.") for k in state)
        loss = cls(lpips_weights=has_lins)
        expected = {f"vgg.{k}" for k in loss.vgg.state_dict()} | {
            k for k in loss.state_dict() if k.startswith("lins.")
        }
        renamed = {(k if k.startswith("lins.") else f"vgg.{k}"): v for k, v in state.items()}
        missing = sorted(expected - set(renamed))
        if missing:
            source = f"'{vgg_path}'" + (f" / '{lpips_path}'" if lpips_path else "")
            raise UserError(
                f"perceptual weights {source} lack {len(missing)} tensors (e.g. {missing[0]}); "
                "give a torchvision vgg16 (features) or LPIPS state dict"
            )
        try:
            loss.load_state_dict({k: renamed[k] for k in expected})
        except RuntimeError as e:
            raise UserError(
                f"perceptual weights '{vgg_path}' do not fit VGG16: {str(e).splitlines()[-1]}"
            ) from None
        return loss.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> PerceptualLoss:
        return super().train(False)  # always frozen

    def forward(self, x: torch.Tensor, y: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """Distance per sample ``(B,)`` between ``x`` and ``y`` in [-1, 1].

        Images ``(B, 3, H, W)`` or videos ``(B, 3, T, H, W)`` (frames averaged; ``num_frames`` picks
        that many random frames, the same for ``x`` and ``y``, to save memory).
        """
        frames = 1
        if x.ndim == 5:
            if num_frames is not None and x.shape[2] > num_frames:
                pick = torch.randperm(x.shape[2], device=x.device)[:num_frames]
                x, y = x[:, :, pick], y[:, :, pick]
            frames = x.shape[2]
            x = rearrange(x, "b c t h w -> (b t) c h w")
            y = rearrange(y, "b c t h w -> (b t) c h w")
        both = torch.cat([x, y]).to(self.shift.dtype)
        taps = self.vgg((both - self.shift) / self.scale)
        total = torch.zeros(x.shape[0], device=x.device, dtype=torch.float32)
        for index, feats in enumerate(taps):
            feats = feats.float()
            feats = feats / (feats.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            fx, fy = feats.chunk(2)
            diff = (fx - fy).pow(2)
            if self.lins is not None:
                diff = self.lins[index](diff.to(self.lins[index].weight.dtype)).float()
            else:
                diff = diff.sum(dim=1, keepdim=True)
            total = total + diff.mean(dim=(1, 2, 3))
        return total.view(-1, frames).mean(dim=1)  # ((B*T),) -> (B,)


def build_perceptual_loss(
    vgg_path: str | None, lpips_path: str | None = None, log: Callable[[str], None] = print
) -> PerceptualLoss | None:
    """The perceptual loss, or None (said once through ``log``) when no weights file is given."""
    if not vgg_path:
        if lpips_path:
            raise UserError("LPIPS linear weights were given without VGG16 weights; give the VGG16 file too")
        log("perceptual loss: off (no VGG16 weights file given; loss.vgg_path=FILE turns it on)")
        return None
    loss = PerceptualLoss.from_files(vgg_path, lpips_path)
    kind = "LPIPS" if loss.lins is not None else "VGG16 features (uniform channel weights)"
    log(f"perceptual loss: {kind} from {vgg_path}")
    return loss
