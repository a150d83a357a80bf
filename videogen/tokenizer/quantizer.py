"""What every quantizer of the tokenizer offers (LFQ, FSQ, BSQ, VQ), and ``build_quantizer``.

A quantizer turns encoder latents ``z (B, C, *grid)`` into code vectors of the same shape (the decoder's
input) and integer token ids ``(B, *grid)`` in ``[0, codebook_size)``. ``C = latent_channels``. Training
passes go through ``forward`` (straight-through gradient to z, a weighted auxiliary loss, metrics);
inference through ``quantize``; ``indices_to_codes`` / ``codes_to_indices`` convert both ways, so
tokens alone decode. Every quantizer runs in fp32 or wider (autocast is disabled inside).

| kind | codes                                   | ids         | auxiliary loss                         |
|------|-----------------------------------------|-------------|----------------------------------------|
| lfq  | sign(z) in {-1,+1}^bits                 | 2**bits     | commitment + annealed entropy          |
| bsq  | sign(z/||z||) / sqrt(bits), unit sphere | 2**bits     | as LFQ (commitment 0 by default)       |
| fsq  | round(bounded z) on levels per channel  | prod levels | none                                   |
| vq   | nearest of K L2-normalized vectors      | K           | commitment; codebook by EMA + restarts |
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class QuantizerOutput:
    """What a quantizer's ``forward`` gives for latents ``z (B, C, *grid)``."""

    quantized: torch.Tensor  # (B, C, *grid) code vectors, straight-through gradient to z
    indices: torch.Tensor  # (B, *grid) int64 in [0, codebook_size)
    loss: torch.Tensor  # weighted auxiliary loss, ready to add (0 when the quantizer has none)
    metrics: dict[str, torch.Tensor]  # detached scalars for logging, named "quantizer/..."


def no_autocast(device: torch.device):
    """A context that turns autocast off on ``device`` (quantizers compute in fp32 or wider)."""
    if device.type in ("cpu", "cuda", "xpu", "mps"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def at_least_fp32(z: torch.Tensor) -> torch.Tensor:
    return z.to(torch.promote_types(z.dtype, torch.float32))


class Quantizer(nn.Module):
    """Base class: subclasses set ``latent_channels`` and ``codebook_size`` and implement the four methods."""

    latent_channels: int
    codebook_size: int

    def forward(self, z: torch.Tensor, step: int | None = None) -> QuantizerOutput:
        raise NotImplementedError

    @torch.no_grad()
    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference: ``z (B, C, *grid)`` -> (codes ``(B, C, *grid)``, indices ``(B, *grid)``)."""
        raise NotImplementedError

    def indices_to_codes(self, indices: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``(B, *grid)`` int64 ids -> ``(B, C, *grid)`` code vectors (what the decoder takes)."""
        raise NotImplementedError

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """``(B, C, *grid)`` code vectors -> ``(B, *grid)`` int64 ids."""
        raise NotImplementedError

    def check_latent(self, z: torch.Tensor) -> None:
        if z.dim() < 2 or z.shape[1] != self.latent_channels:
            raise ValueError(
                f"{type(self).__name__} needs latents (B, {self.latent_channels}, ...), got {tuple(z.shape)}"
            )

    @torch.no_grad()
    def usage_statistics(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(fraction of codes used, perplexity = exp(entropy of the id histogram)) of ``indices``."""
        flat = indices.reshape(-1)
        counts = torch.zeros(self.codebook_size, device=flat.device).index_add_(
            0, flat, torch.ones_like(flat, dtype=torch.float32)
        )  # (index_add_, unlike bincount, also runs on meta tensors)
        usage = (counts > 0).float().mean()
        freq = counts / counts.sum().clamp_min(1)
        entropy = -(freq * torch.log(freq.clamp_min(1e-30))).sum()
        return usage, entropy.exp()

    def usage_metrics(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        usage, perplexity = self.usage_statistics(indices)
        return {"quantizer/batch_usage": usage, "quantizer/perplexity": perplexity}
