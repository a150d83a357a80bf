"""One tokenizer training step: generator update, then (once the GAN is on) discriminator update.

Generator loss (fp32)::

    w_rec * rec(x_hat, x) + w_perc * LPIPS(x_hat, x) + quantizer loss (e.g. LFQ commitment + entropy)
        + w_g * G_adv(D(x_hat))            # D run with detached weights: gradients reach G only

Discriminator loss on the detached reconstruction::

    D_loss(D(x), D(x_hat)) + w_lecam * LeCam(D(x), D(x_hat)) + r1_weight / 2 * interval * R1(x)

Works for ZeRO 0-2 with two DeepSpeed engines: the generator's adversarial term goes through
``discriminator_logits_detached`` (``functional_call`` with detached weights), the real logits come
from ``dis.module`` (R1's ``autograd.grad`` must not trigger ZeRO's reduction hooks) and the fake ones
from the engine. Every decision (GAN on, R1 due) depends only on step counters, so all ranks take
the same branches and issue the same collectives. In a decoder fine-tune (``freeze``, from its first
step on) the encoder runs without autograd and only the decoder learns.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as torch_dist

from videogen.collectives import world_size
from videogen.data.failures import FailureMonitor
from videogen.tokenizer.losses import (
    LeCam,
    discriminator_logits_detached,
    discriminator_loss,
    generator_loss,
    r1_penalty,
    reconstruction_loss,
)
from videogen.tokenizer.perceptual import PerceptualLoss
from videogen.tokenizer_training.decoder_finetune import EncoderFreeze
from videogen.tokenizer_training.training_config import LossConfig
from videogen.training.trainer import Trainer

# shown on the progress bar (those present)
SHOWN = ("loss/rec", "train/psnr", "quantizer/perplexity", "loss/g_adv", "loss/d")


def global_failures(num_failed: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Every rank's ``num_failed`` ``(B,)`` gathered into ``(world * B,)`` on CPU, the same on every rank
    (so the :class:`FailureMonitor` of every rank stops the run at the same step)."""
    if world_size() <= 1:
        return num_failed.detach().long().cpu()
    local = num_failed.detach().long().to(device)  # NCCL gathers device tensors only
    parts = [torch.zeros_like(local) for _ in range(world_size())]
    torch_dist.all_gather(parts, local)
    return torch.cat(parts).cpu()


def batch_psnr(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of a whole batch in [-1, 1] (peak-to-peak 2), clamped reconstruction, as a 0-dim tensor."""
    mse = (reconstruction.detach().float().clamp(-1, 1) - target.detach().float()).pow(2).mean()
    return 10.0 * torch.log10(4.0 / mse.clamp_min(1e-10))


class TokenizerStep:
    """``step(batch) -> metrics`` for :meth:`Trainer.fit`; keeps the latest input / reconstruction for media.

    ``dis`` and ``lecam`` are None when the GAN is off; ``perceptual`` is None without VGG weights.
    """

    def __init__(
        self,
        trainer: Trainer,
        loss: LossConfig,
        gen: Any,
        dis: Any | None,
        lecam: LeCam | None,
        perceptual: PerceptualLoss | None,
        monitor: FailureMonitor,
        media_samples: int = 2,
        freeze: EncoderFreeze | None = None,
    ) -> None:
        self.trainer = trainer
        self.loss = loss
        self.gan = loss.gan
        self.gen = gen
        self.dis = dis
        self.lecam = lecam
        self.perceptual = perceptual
        self.monitor = monitor
        self.media_samples = media_samples
        self.freeze = freeze
        self.last_pair: tuple[torch.Tensor, torch.Tensor] | None = None

    def gan_active(self, step: int) -> bool:
        return self.dis is not None and step >= self.gan.start_step

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        trainer = self.trainer
        self.monitor.update({"num_failed": global_failures(batch["num_failed"], trainer.device)})
        x = trainer.to_device(batch["video"])  # (B, 3, T, H, W) in [-1, 1], T = 1 for image batches
        step = trainer.step
        gan_on = self.gan_active(step)

        # ---------------------------------------------------------------- generator
        decoder_only = self.freeze is not None and self.freeze.in_stage_two(step)
        out = self.gen(x, step, train_encoder=not decoder_only)
        fake = out.reconstruction  # (B, 3, T, H, W) fp32, not clamped
        rec = reconstruction_loss(fake, x, self.loss.reconstruction)
        g_loss = self.loss.reconstruction_weight * rec + out.quantizer_loss.float()
        metrics: dict[str, torch.Tensor] = {
            "loss/rec": rec.detach(),
            "loss/quantizer": out.quantizer_loss.detach().float(),
            **{name: value.detach().float() for name, value in out.quantizer_metrics.items()},
            "train/psnr": batch_psnr(fake, x),
        }
        if self.perceptual is not None and self.loss.perceptual_weight > 0:
            dtype = self.perceptual.shift.dtype
            perc = self.perceptual(fake.to(dtype), x.to(dtype), self.loss.perceptual_frames).float().mean()
            g_loss = g_loss + self.loss.perceptual_weight * perc
            metrics["loss/perceptual"] = perc.detach()
        if gan_on:
            logits = discriminator_logits_detached(self.dis.module, fake.to(x.dtype))
            g_adv = generator_loss(logits, self.gan.generator_loss)
            g_loss = g_loss + self.gan.generator_weight * g_adv
            metrics["loss/g_adv"] = g_adv.detach()
        metrics["loss/generator"] = g_loss.detach()
        if trainer.finite(generator=g_loss):
            self.gen.backward(g_loss)
            self.gen.step()
        self.last_pair = (x[: self.media_samples].detach(), fake[: self.media_samples].detach())
        if not gan_on:
            return metrics

        # ---------------------------------------------------------------- discriminator
        r1_due = self.gan.r1_weight > 0 and self.dis.global_steps % self.gan.r1_interval == 0
        real_in = x.detach().requires_grad_(r1_due)
        real_logits = self.dis.module(real_in)  # not dis(...): see module docstring
        fake_logits = self.dis(fake.detach().to(x.dtype))
        d_adv = discriminator_loss(real_logits, fake_logits, self.gan.discriminator_loss)
        lecam = self.lecam(real_logits, fake_logits)  # updates the EMAs (all-reduced), then the term
        d_loss = d_adv + self.gan.lecam_weight * lecam
        if r1_due:
            r1 = r1_penalty(real_logits, real_in)
            d_loss = d_loss + 0.5 * self.gan.r1_weight * self.gan.r1_interval * r1
            metrics["loss/r1"] = r1.detach()
        if trainer.finite(discriminator=d_loss):
            self.dis.backward(d_loss)
            self.dis.step()
        metrics.update(
            {
                "loss/d": d_loss.detach(),
                "loss/d_adv": d_adv.detach(),
                "loss/lecam": lecam.detach(),
                "d/logits_real": real_logits.detach().float().mean(),
                "d/logits_fake": fake_logits.detach().float().mean(),
                "d/lecam_ema_real": self.lecam.ema_real.detach().clone(),
                "d/lecam_ema_fake": self.lecam.ema_fake.detach().clone(),
            }
        )
        return metrics

    def media(self, step: int) -> dict[str, torch.Tensor]:
        """The latest training input | reconstruction, ``(B, 3, T, H, 2W)`` in [-1, 1], for TensorBoard."""
        if self.last_pair is None:
            return {}
        x, fake = self.last_pair
        return {"train/reconstruction": torch.cat([x.float(), fake.float().clamp(-1, 1)], dim=-1)}
