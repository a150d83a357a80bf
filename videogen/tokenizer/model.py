"""VideoTokenizer: causal 3D-CNN encoder -> quantizer -> decoder. One model for images (T = 1) and videos.

A clip ``(B, 3, 1 + t*k, H, W)`` in [-1, 1] becomes ``(B, 1 + k, H/s, W/s)`` int64 tokens in
[0, codebook_size) (t = ``temporal_factor``, s = ``spatial_factor``); latent frame 0 encodes frame 0 alone,
latent j frames <= t*j. Export format (``save_pretrained``): a folder with ``config.yaml`` (the
``TokenizerConfig`` plus ``kind: tokenizer``) and ``model.safetensors``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from videogen.config_loader import ConfigError, from_dict, read_yaml, to_dict
from videogen.errors import UserError
from videogen.export import save_export
from videogen.tokenizer.bsq import BSQ
from videogen.tokenizer.config import QUANTIZERS, TokenizerConfig
from videogen.tokenizer.decoder import Decoder
from videogen.tokenizer.encoder import Encoder
from videogen.tokenizer.fsq import FSQ
from videogen.tokenizer.lfq import LFQ
from videogen.tokenizer.quantizer import Quantizer
from videogen.tokenizer.validation import (
    check_chunk_frames,
    check_latent,
    check_tokens,
    check_video,
)
from videogen.tokenizer.vq import VQ

KIND = "tokenizer"
CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
MEMORY_FORMATS = {"channels_last_3d": torch.channels_last_3d, "contiguous": torch.contiguous_format}


QUANTIZER_CLASSES: dict[str, type[Quantizer]] = {"lfq": LFQ, "fsq": FSQ, "bsq": BSQ, "vq": VQ}
assert tuple(QUANTIZER_CLASSES) == QUANTIZERS


def build_quantizer(config: TokenizerConfig) -> Quantizer:
    """The quantizer ``config.quantizer`` names, built from its config section."""
    return QUANTIZER_CLASSES[config.quantizer].from_config(config.quantizer_config)


@dataclass
class TokenizerOutput:
    """``VideoTokenizer.forward``: reconstruction, tokens and the quantizer's (weighted) loss and metrics."""

    reconstruction: torch.Tensor  # (B, 3, T, H, W), fp32 (or wider), not clamped
    tokens: torch.Tensor  # (B, T', H', W') int64
    quantized: torch.Tensor  # (B, C, T', H', W') code vectors with straight-through gradient
    quantizer_loss: torch.Tensor  # the quantizer's weighted auxiliary loss (add it to the training loss)
    quantizer_metrics: dict[str, torch.Tensor]  # detached scalars, "quantizer/..." (usage, perplexity, ...)


@dataclass
class EncodeOutput:
    codes: torch.Tensor  # (B, C, T', H', W') code vectors (the decoder's input)
    tokens: torch.Tensor  # (B, T', H', W') int64


def _chunks(total: int, first: int, size: int) -> list[slice]:
    """Slices of [0, total): the first ``first`` items, then ``size`` at a time."""
    bounds = [0, min(first, total)]
    while bounds[-1] < total:
        bounds.append(min(bounds[-1] + size, total))
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


class VideoTokenizer(nn.Module):
    """MAGVIT-v2 style tokenizer. ``VideoTokenizer(config)`` or ``VideoTokenizer.from_preset("tiny")``.

    Activations run in ``channels_last_3d`` memory by default (fastest on CPU; see ``set_memory_format``).
    """

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.encoder = Encoder(config)
        self.quantizer = build_quantizer(config)
        self.decoder = Decoder(config)
        self.memory_format = torch.channels_last_3d
        self.set_memory_format("channels_last_3d")

    # ------------------------------------------------------------------ construction and files

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> VideoTokenizer:
        """Preset ``tiny`` / ``S`` / ``B`` / ``L`` with field overrides (a quantizer section given as a
        dict, e.g. ``lfq={"bits": 12}``, merges into the preset's)."""
        presets = TokenizerConfig.PRESETS
        if name not in presets:
            raise ConfigError(f"unknown tokenizer preset {name!r}; choose from {', '.join(presets)}")
        data = dict(presets[name])
        for key, value in overrides.items():
            if key in QUANTIZERS and not isinstance(value, dict):
                value = to_dict(value)
            if key in QUANTIZERS:
                value = {**data.get(key, {}), **value}
            data[key] = value
        return cls(from_dict(TokenizerConfig, data))

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``config.yaml`` (``kind: tokenizer`` + config) and ``model.safetensors`` to ``directory``,
        atomically, with the umask's file mode (``videogen.export.save_export``)."""
        save_export(directory, KIND, to_dict(self.config), self.state_dict())

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, map_location: str | torch.device = "cpu"
    ) -> VideoTokenizer:
        """Load a folder written by ``save_pretrained``; a missing file or another kind -> ``UserError``."""
        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        if not config_path.is_file():
            raise UserError(f"'{directory}' is not a tokenizer checkpoint: no {CONFIG_FILE} in it")
        data = read_yaml(config_path)
        kind = data.pop("kind", None)
        if kind != KIND:
            raise UserError(
                f"'{directory}' holds a checkpoint of kind {kind!r}, not a tokenizer; "
                "pass a folder written by VideoTokenizer.save_pretrained"
            )
        config = from_dict(TokenizerConfig, data)
        if not weights_path.is_file():
            raise UserError(f"tokenizer checkpoint '{directory}' has no {WEIGHTS_FILE}")
        model = cls(config)
        try:
            model.load_state_dict(load_file(str(weights_path), device=str(map_location)))
        except RuntimeError as e:
            first = str(e).splitlines()[0]
            raise UserError(f"weights in '{weights_path}' do not match its config.yaml: {first}") from None
        return model.to(map_location)

    def set_memory_format(self, name: str) -> VideoTokenizer:
        """``"channels_last_3d"`` (default) or ``"contiguous"``: layout of weights and activations."""
        if name not in MEMORY_FORMATS:
            raise ConfigError(f"memory format {name!r} is not one of {', '.join(MEMORY_FORMATS)}")
        self.memory_format = MEMORY_FORMATS[name]
        return self.to(memory_format=self.memory_format)

    # ------------------------------------------------------------------ sizes

    @property
    def temporal_factor(self) -> int:
        return self.config.temporal_factor

    @property
    def spatial_factor(self) -> int:
        return self.config.spatial_factor

    @property
    def latent_channels(self) -> int:
        """Channels of the code vectors (``(B, C, T', H', W')``): bits for LFQ/BSQ, levels for FSQ, dim for VQ."""
        return self.quantizer.latent_channels

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
        """Token grid ``(T', H', W')`` of a ``num_frames x height x width`` clip (checked like a video)."""
        check_video(
            torch.empty(1, self.config.in_channels, num_frames, height, width, device="meta"),
            self.config.in_channels,
            self.temporal_factor,
            self.spatial_factor,
        )
        return (
            (num_frames - 1) // self.temporal_factor + 1,
            height // self.spatial_factor,
            width // self.spatial_factor,
        )

    def indices_to_codes(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, T', H', W')`` int64 -> ``(B, C, T', H', W')`` code vectors (the weights' float dtype)."""
        return self.quantizer.indices_to_codes(tokens, dtype=self.decoder.weight_dtype)

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """``(B, C, T', H', W')`` code vectors -> ``(B, T', H', W')`` int64."""
        return self.quantizer.codes_to_indices(codes)

    # ------------------------------------------------------------------ encode / decode

    def _check_video(self, video: torch.Tensor) -> torch.Tensor:
        check_video(video, self.config.in_channels, self.temporal_factor, self.spatial_factor)
        return video.contiguous(memory_format=self.memory_format)

    def _latent_chunks(self, video: torch.Tensor, chunk_frames: int | None) -> Iterator[torch.Tensor]:
        """Encoder output for consecutive chunks of ``video`` (one chunk without ``chunk_frames``)."""
        video = self._check_video(video)
        check_chunk_frames(chunk_frames, self.temporal_factor)
        if chunk_frames is None or chunk_frames + 1 >= video.shape[2]:
            yield self.encoder(video)
            return
        cache: dict = {}  # the stream's conv state, carried from chunk to chunk
        for frames in _chunks(video.shape[2], 1 + chunk_frames, chunk_frames):
            yield self.encoder(video[:, :, frames], cache)

    def encode_latents(self, video: torch.Tensor, chunk_frames: int | None = None) -> torch.Tensor:
        """``(B, 3, T, H, W)`` -> unquantized ``z (B, C, T', H', W')``, in chunks of ``chunk_frames``."""
        return torch.cat(list(self._latent_chunks(video, chunk_frames)), dim=2)

    def encode(self, video: torch.Tensor, chunk_frames: int | None = None) -> EncodeOutput:
        """``video (B, 3, T, H, W)`` in [-1, 1] -> codes and tokens. ``chunk_frames`` (a multiple of
        ``temporal_factor``) bounds memory: frames go through the conv cache that many at a time
        (the first chunk takes one more), with the same result as one pass."""
        parts = [self.quantizer.quantize(z) for z in self._latent_chunks(video, chunk_frames)]
        return EncodeOutput(torch.cat([c for c, _ in parts], dim=2), torch.cat([t for _, t in parts], dim=1))

    def decode(self, codes: torch.Tensor, chunk_frames: int | None = None) -> torch.Tensor:
        """Codes ``(B, C, T', H', W')`` (floats, or int64 tokens ``(B, T', H', W')``) -> video
        ``(B, 3, 1 + t*(T'-1), H, W)``, not clamped. ``chunk_frames``: output frames per chunk (a
        multiple of ``temporal_factor``), same pixels as one pass."""
        if not codes.is_floating_point():
            check_tokens(codes, self.codebook_size)
            codes = self.indices_to_codes(codes)
        check_latent(codes, self.latent_channels)
        check_chunk_frames(chunk_frames, self.temporal_factor)
        codes = codes.contiguous(memory_format=self.memory_format)
        if chunk_frames is None or chunk_frames // self.temporal_factor + 1 >= codes.shape[2]:
            video = self.decoder(codes)
        else:
            per_chunk = chunk_frames // self.temporal_factor
            cache: dict = {}
            parts = [
                self.decoder(codes[:, :, s], cache) for s in _chunks(codes.shape[2], 1 + per_chunk, per_chunk)
            ]
            video = torch.cat(parts, dim=2)
        return video.to(torch.promote_types(video.dtype, torch.float32))

    @torch.no_grad()
    def tokenize(self, video: torch.Tensor, chunk_frames: int | None = None) -> torch.Tensor:
        """``video (B, 3, 1 + t*k, H, W)`` in [-1, 1] -> tokens ``(B, 1 + k, H/s, W/s)`` int64."""
        return self.encode(video, chunk_frames).tokens

    @torch.no_grad()
    def detokenize(self, tokens: torch.Tensor, chunk_frames: int | None = None) -> torch.Tensor:
        """Tokens ``(B, T', H', W')`` -> video ``(B, 3, 1 + t*(T'-1), H, W)`` clamped to [-1, 1]."""
        check_tokens(tokens, self.codebook_size)
        return self.decode(self.indices_to_codes(tokens), chunk_frames).clamp_(-1.0, 1.0)

    def forward(
        self, video: torch.Tensor, step: int | None = None, train_encoder: bool = True
    ) -> TokenizerOutput:
        """Training pass: ``video (B, 3, T, H, W)`` -> reconstruction, tokens, quantizer losses at ``step``.

        ``train_encoder=False`` (a decoder fine-tune): the encoder and quantizer run without autograd, so
        only the decoder gets gradients and the encoder's backward is not paid for.
        """
        video = self._check_video(video)
        with torch.set_grad_enabled(train_encoder and torch.is_grad_enabled()):
            quant = self.quantizer(self.encoder(video), step)
        reconstruction = self.decoder(quant.quantized.contiguous(memory_format=self.memory_format))
        return TokenizerOutput(
            reconstruction=reconstruction.to(torch.promote_types(reconstruction.dtype, torch.float32)),
            tokens=quant.indices,
            quantized=quant.quantized,
            quantizer_loss=quant.loss,
            quantizer_metrics=quant.metrics,
        )

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"base={c.base_channels}, multipliers={c.channel_multipliers}, blocks={c.num_res_blocks}, "
            f"quantizer={c.quantizer} ({self.codebook_size} codes), "
            f"factors=(t{self.temporal_factor}, s{self.spatial_factor})"
        )
