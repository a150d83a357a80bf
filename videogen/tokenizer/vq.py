"""Lookup-codebook vector quantization in the VQ-VAE / VQGAN / ViT-VQGAN line.

Latents ``z (B, dim, *grid)`` (the encoder projects to a low ``dim``, e.g. 8) and the ``K`` codes are
L2-normalized; each position takes the code of highest cosine similarity; the decoder gets that
(unit) code with a straight-through gradient. Loss: ``commitment_weight * mean((z - sg(q))^2)``.

The codebook is not trained by the optimizer: in training mode each forward moves it toward the
latents assigned to it (exponential moving averages of the per-code counts and sums, decay
``ema_decay``, summed over ranks), and a code whose EMA count falls below ``dead_code_threshold`` x the
mean count is restarted from a random latent of the batch (rank 0 picks, every rank takes the same).
The codebook starts random with zero counts, so the codes the first training batch does not pick
are restarted from its latents. Codebook and counts are fp32 buffers (kept fp32 when the module is
cast to bf16): saved with the weights, copied (not averaged) by the weight EMA.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange

from videogen.tokenizer.config import VQConfig
from videogen.tokenizer.quantizer import Quantizer, QuantizerOutput, at_least_fp32, no_autocast


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class VQ(Quantizer):
    """``VQ(codebook_size, dim, **options)``: ``options`` are the other :class:`VQConfig` fields."""

    def __init__(self, codebook_size: int, dim: int, **options: Any) -> None:
        super().__init__()
        self.config = VQConfig(codebook_size=codebook_size, dim=dim, **options)
        self.config.validate()
        codebook = F.normalize(torch.randn(codebook_size, dim), dim=1)
        self.register_buffer("codebook", codebook)  # (K, dim), unit rows
        self.register_buffer("ema_count", torch.zeros(codebook_size))  # (K,)
        self.register_buffer("ema_sum", torch.zeros(codebook_size, dim))  # (K, dim)

    @classmethod
    def from_config(cls, config: VQConfig) -> VQ:
        return cls(**vars(config))

    def _apply(self, fn, recurse: bool = True):
        """Casts (``.to(bf16)``, ``.half()``) keep the codebook state fp32; devices still change."""
        super()._apply(fn, recurse)
        for name in ("codebook", "ema_count", "ema_sum"):
            buffer = getattr(self, name)
            if buffer.is_floating_point() and buffer.dtype != torch.float32:
                setattr(self, name, buffer.float())
        return self

    @property
    def latent_channels(self) -> int:
        return self.config.dim

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    # ------------------------------------------------------------------ lookup

    def _nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """``(N, dim)`` unit latents -> ``(N,)`` ids of the most similar codes."""
        return (flat @ self.codebook.to(flat.dtype).T).argmax(dim=1)

    def indices_to_codes(self, indices: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``(B, *grid)`` ids -> ``(B, dim, *grid)`` unit code vectors."""
        return self.codebook[indices.long()].to(dtype).movedim(-1, 1)

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """``(B, dim, *grid)`` vectors -> ``(B, *grid)`` ids of the nearest codes (by cosine)."""
        flat = F.normalize(at_least_fp32(codes).movedim(1, -1), dim=-1)
        return self._nearest(flat.reshape(-1, self.config.dim)).view(flat.shape[:-1])

    @torch.no_grad()
    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with no_autocast(z.device):
            indices = self.codes_to_indices(z)
            return self.indices_to_codes(indices, at_least_fp32(z).dtype), indices

    # ------------------------------------------------------------------ codebook updates

    def _all_reduce(self, *tensors: torch.Tensor) -> None:
        if _distributed():
            for tensor in tensors:
                dist.all_reduce(tensor)

    @torch.no_grad()
    def _update_codebook(self, flat: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """EMA step from ``flat (N, dim)`` assigned to ``indices (N,)``; restart dead codes. Returns the
        number of restarted codes."""
        counts = torch.bincount(indices, minlength=self.codebook_size).to(flat.dtype)
        sums = torch.zeros_like(self.ema_sum, dtype=flat.dtype).index_add_(0, indices, flat)
        self._all_reduce(counts, sums)
        decay = self.config.ema_decay
        self.ema_count.mul_(decay).add_(counts.to(self.ema_count.dtype), alpha=1 - decay)
        self.ema_sum.mul_(decay).add_(sums.to(self.ema_sum.dtype), alpha=1 - decay)
        alive = self.ema_count > 0
        self.codebook[alive] = F.normalize(self.ema_sum[alive], dim=1)

        mean_count = self.ema_count.mean()
        dead = self.ema_count < self.config.dead_code_threshold * mean_count
        num_dead = int(dead.sum())
        if num_dead:
            picks = torch.randint(0, flat.shape[0], (num_dead,), device=flat.device)
            fresh = flat[picks].to(self.codebook.dtype)
            if _distributed():  # every rank takes rank 0's choice
                dist.broadcast(fresh, src=0)
            self.codebook[dead] = fresh
            self.ema_count[dead] = mean_count.to(self.ema_count.dtype)
            self.ema_sum[dead] = fresh * self.ema_count[dead, None]
        return torch.tensor(float(num_dead))

    # ------------------------------------------------------------------ forward

    def forward(self, z: torch.Tensor, step: int | None = None) -> QuantizerOutput:
        """``z (B, dim, *grid)`` -> unit codes with a straight-through gradient; updates the codebook in
        training mode."""
        self.check_latent(z)
        with no_autocast(z.device):
            unit = F.normalize(at_least_fp32(z), dim=1)
            flat = rearrange(unit, "b d ... -> (b ...) d")  # (B, dim, *grid) -> (N, dim)
            indices = self._nearest(flat.detach())
            restarted = self._update_codebook(flat.detach(), indices) if self.training else torch.tensor(0.0)
            if self.training:  # restarted codes may now be nearer
                indices = self._nearest(flat.detach())
            codes = self.codebook[indices].to(unit.dtype)  # (N, dim)
            codes = rearrange(codes, "(b g) d -> b d g", b=z.shape[0]).reshape(unit.shape)
            commitment = self.config.commitment_weight * torch.mean((unit - codes) ** 2)
            quantized = unit + (codes - unit).detach()
            indices = indices.view((z.shape[0],) + tuple(z.shape[2:]))
        metrics = {
            "quantizer/commitment": commitment.detach(),
            "quantizer/restarted_codes": restarted,
            **self.usage_metrics(indices),
        }
        return QuantizerOutput(quantized=quantized, indices=indices, loss=commitment, metrics=metrics)

    def extra_repr(self) -> str:
        return f"codebook_size={self.codebook_size}, dim={self.config.dim}, ema_decay={self.config.ema_decay}"
