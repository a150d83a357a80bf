"""Tokenizer training losses: reconstruction, GAN (hinge / non-saturating), LeCam, R1.

All return fp32 scalars. Discriminator logits may have any shape ``(B, ...)`` (a PatchGAN grid or
one logit per sample).

Two DeepSpeed engines (generator, discriminator) under ZeRO 0-2: the generator's adversarial term
must not put gradients into the discriminator's parameters (ZeRO-2 has already reduced them;
toggling ``requires_grad`` breaks ZeRO-1/2). :func:`discriminator_logits_detached` runs the
discriminator through ``torch.func.functional_call`` with *detached* parameters, so gradients reach
only the generator. The discriminator step then uses ``fake.detach()``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from videogen.collectives import all_reduce_, world_size


def reconstruction_loss(reconstruction: torch.Tensor, target: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Mean ``|x_hat - x|`` (``"l1"``) or ``(x_hat - x)^2`` (``"l2"``) over every element, in fp32."""
    diff = reconstruction.float() - target.float()
    if kind == "l1":
        return diff.abs().mean()
    if kind == "l2":
        return diff.pow(2).mean()
    raise ValueError(f"unknown reconstruction loss {kind!r}; use l1 or l2")


def per_sample_logits(logits: torch.Tensor) -> torch.Tensor:
    """``(B, ...)`` -> ``(B,)``: the mean logit of each sample, in fp32."""
    return logits.float().flatten(1).mean(dim=1)


def discriminator_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "hinge"
) -> torch.Tensor:
    """D loss: ``"hinge"`` = ``0.5 * (mean relu(1 - D(x)) + mean relu(1 + D(x_hat)))``;
    ``"non_saturating"`` = ``0.5 * (mean softplus(-D(x)) + mean softplus(D(x_hat)))`` (per patch)."""
    real, fake = real_logits.float(), fake_logits.float()
    if kind == "hinge":
        return 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())
    if kind == "non_saturating":
        return 0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean())
    raise ValueError(f"unknown discriminator loss {kind!r}; use hinge or non_saturating")


def generator_loss(fake_logits: torch.Tensor, kind: str = "non_saturating") -> torch.Tensor:
    """G adversarial loss on the per-sample mean logit (as Open-MAGVIT2 does).

    ``"non_saturating"``: ``mean softplus(-mean_logit)`` = ``-log sigmoid``; ``"hinge"``: ``-mean_logit``.
    """
    logits = per_sample_logits(fake_logits)
    if kind == "non_saturating":
        return F.softplus(-logits).mean()
    if kind == "hinge":
        return -logits.mean()
    raise ValueError(f"unknown generator loss {kind!r}; use non_saturating or hinge")


def discriminator_logits_detached(discriminator: nn.Module, video: torch.Tensor) -> torch.Tensor:
    """``discriminator(video)`` with detached parameters: gradients flow to ``video`` only.

    Pass ``d_engine.module`` (ZeRO 0-2 hold full weights on every rank). Buffers are the module's own
    (BatchNorm statistics update as in a normal forward).
    """
    params = {name: p.detach() for name, p in discriminator.named_parameters()}
    buffers = dict(discriminator.named_buffers())
    return torch.func.functional_call(discriminator, (params, buffers), (video,))


class LeCam(nn.Module):
    """LeCam regularisation with EMAs (decay 0.999) of the mean real and fake logits.

    ``reg = mean(relu(D(x) - ema_fake)^2) + mean(relu(ema_real - D(x_hat))^2)``. Calling the module
    first updates the EMAs with this step's mean logits (averaged over ranks, so every rank holds
    the same state), then returns ``reg``. The EMAs start at 0 and are buffers: ``state_dict`` goes
    into checkpoints (register it with the trainer).
    """

    def __init__(self, decay: float = 0.999):
        super().__init__()
        self.decay = decay
        self.register_buffer("ema_real", torch.zeros(()))
        self.register_buffer("ema_fake", torch.zeros(()))

    @torch.no_grad()
    def update(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> None:
        means = torch.stack([real_logits.detach().float().mean(), fake_logits.detach().float().mean()])
        means = all_reduce_(means.to(self.ema_real.device), "sum") / world_size()
        self.ema_real.lerp_(means[0], 1.0 - self.decay)
        self.ema_fake.lerp_(means[1], 1.0 - self.decay)

    def regularizer(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """The LeCam term for the current EMAs (no update)."""
        real, fake = real_logits.float(), fake_logits.float()
        return F.relu(real - self.ema_fake).pow(2).mean() + F.relu(self.ema_real - fake).pow(2).mean()

    def forward(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        self.update(real_logits, fake_logits)
        return self.regularizer(real_logits, fake_logits)


def r1_penalty(real_logits: torch.Tensor, real_inputs: torch.Tensor) -> torch.Tensor:
    """``mean_b ||d sum D(x) / d x_b||^2``; ``real_inputs`` must have had ``requires_grad`` set before D ran.

    The graph is kept (``create_graph``) so the penalty trains D. Multiply by ``gamma / 2`` as usual.
    Under DeepSpeed, compute ``real_logits`` with ``d_engine.module(real_inputs)``, not
    ``d_engine(real_inputs)``: the engine's forward hooks its output so that *any* backward through
    it (this ``autograd.grad`` included) starts ZeRO's gradient reduction, which then fails.
    ``d_engine.backward(d_loss)`` afterwards works as usual.
    """
    (grad,) = torch.autograd.grad(
        real_logits.float().sum(), real_inputs, create_graph=True, allow_unused=True
    )
    if grad is None:  # D ignores its input
        return real_logits.float().sum() * 0.0
    return grad.float().pow(2).flatten(1).sum(dim=1).mean()
