"""MaskGIT iterative decoding with COMMIT condition refill (MAGVIT v1, DESIGN §4 "Sampler").

Start: every position is unknown; its input is the condition token inside the condition region and
[MASK] elsewhere (``keep_condition="regenerate"``, MAGVIT), or condition positions are known from the
start and keep their condition tokens (``"fixed"``). Step ``t`` of ``T``:

1. one forward pass (with CFG: one pass over the batch and its unconditional twin together);
2. sample a code at every unknown position (temperature, top-k); known positions keep theirs;
3. confidence = log-prob of the sampled code (sum over sub-token heads), ``+inf`` at known positions;
4. the ``c[t]`` lowest of ``confidence + choice_temperature * (1 - (t+1)/T) * Gumbel`` stay masked
   (``mask_schedules.scheduled_mask_counts``: ``floor(n * gamma((t+1)/T))``, at least one fixed per step,
   none left after the last); everything else is fixed for good;
5. re-masked positions in the condition region get their condition token back, others [MASK].

``T`` steps cost at most ``T`` forward passes (steps with nothing left to decode are skipped).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from videogen.transformer.draws import gumbel
from videogen.transformer.logits import TokenLogits
from videogen.transformer.mask_schedules import scheduled_mask_counts
from videogen.transformer.vocab import MASK_ID, UNCOND_TASK_ID

GUIDANCE_RAMPS = ("constant", "linear")
KEEP_CONDITION = ("regenerate", "fixed")

Model = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], TokenLogits]


@dataclass(frozen=True)
class SamplerStep:
    """What step ``t`` saw and decided (grids ``(B, T', H', W')``).

    inputs: the token grid fed to the model; sampled: the sampled grid (known positions unchanged);
    masked: positions left masked after the step; guidance_scale: the CFG scale used.
    """

    step: int
    inputs: torch.Tensor
    sampled: torch.Tensor
    masked: torch.Tensor
    guidance_scale: float


def guidance_at(step: int, steps: int, scale: float, ramp: str) -> float:
    """CFG scale of step ``step`` of ``steps``: ``scale`` ("constant") or ``scale * (step+1)/steps`` ("linear")."""
    if ramp == "constant":
        return scale
    if ramp == "linear":
        return scale * (step + 1) / steps
    raise ValueError(f"guidance ramp {ramp!r} is unknown; use {' or '.join(GUIDANCE_RAMPS)}")


def _select_masked(score: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` scores, ``(B,)`` counts -> bool ``(B, N)``, True at the ``counts[b]`` lowest scores."""
    ranks = score.argsort(dim=1, stable=True).argsort(dim=1)
    return ranks < counts.unsqueeze(1)


@torch.no_grad()
def sample(
    model: Model,
    cond_tokens: torch.Tensor,
    cond_mask: torch.Tensor,
    task_ids: torch.Tensor,
    class_ids: torch.Tensor,
    *,
    steps: int = 12,
    schedule: str = "cosine",
    temperature: float = 1.0,
    top_k: int | None = None,
    choice_temperature: float = 4.5,
    guidance_scale: float = 0.0,
    guidance_ramp: str = "constant",
    uncond_class_id: int | None = None,
    keep_condition: str = "regenerate",
    generator: torch.Generator | None = None,
    return_history: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, list[SamplerStep]]:
    """Decode a token grid.

    model: ``model(tokens, task_ids, class_ids) -> TokenLogits`` (a ``CommitTransformer``; put into eval
    mode for the call). cond_tokens: ``(B, T', H', W')`` int64, the tokenizer's tokens of the padded
    condition video (read only where ``cond_mask``). cond_mask: ``(B, T', H', W')`` bool latent condition
    mask. task_ids, class_ids: ``(B,)``. guidance_scale ``s > 0`` mixes ``cond + s * (cond - uncond)``
    with the twin (UNCOND class, unconditional task, [MASK] instead of condition tokens);
    ``uncond_class_id`` defaults to ``model.uncond_class_id``; with ``keep_condition="fixed"`` the twin
    also sees [MASK] at the fixed condition positions. ``generator`` makes it deterministic.

    Returns ``(B, T', H', W')`` int64 code ids (no ``MASK_ID``), and with ``return_history`` also a
    list of :class:`SamplerStep`, one per forward pass.
    """
    if keep_condition not in KEEP_CONDITION:
        raise ValueError(f"keep_condition {keep_condition!r} is unknown; use {' or '.join(KEEP_CONDITION)}")
    if choice_temperature < 0:
        raise ValueError(f"choice_temperature must be >= 0, got {choice_temperature}")
    guidance_at(0, steps, guidance_scale, guidance_ramp)  # validates the ramp name
    shape = cond_tokens.shape
    batch, device = shape[0], cond_tokens.device
    cond_tokens = cond_tokens.reshape(batch, -1)
    cond_mask = cond_mask.reshape(batch, -1).to(torch.bool)
    if guidance_scale != 0.0:
        if uncond_class_id is None:
            uncond_class_id = model.uncond_class_id
        twin_tasks = torch.full_like(task_ids, UNCOND_TASK_ID)
        twin_classes = torch.full_like(class_ids, uncond_class_id)
        all_tasks, all_classes = torch.cat([task_ids, twin_tasks]), torch.cat([class_ids, twin_classes])

    # State: known/sampled ids, unknown positions, positions whose input is a condition token.
    fixed = cond_mask if keep_condition == "fixed" else torch.zeros_like(cond_mask)
    unknown = ~fixed
    tokens = torch.where(fixed, cond_tokens, MASK_ID)
    inputs = torch.where(cond_mask, cond_tokens, MASK_ID)
    cond_input = cond_mask
    counts = scheduled_mask_counts(unknown.sum(1), steps, schedule)  # (steps, B)

    was_training = isinstance(model, nn.Module) and model.training
    if isinstance(model, nn.Module):
        model.eval()
    history: list[SamplerStep] = []
    try:
        for t in range(steps):
            if not unknown.any():
                break
            grid = inputs.view(shape)
            scale = guidance_at(t, steps, guidance_scale, guidance_ramp)
            if guidance_scale != 0.0:
                twin = torch.where(cond_input, MASK_ID, inputs).view(shape)
                both = model(torch.cat([grid, twin]), all_tasks, all_classes)
                logits = both.map(lambda x: x[:batch]).guided(both.map(lambda x: x[batch:]), scale)
            else:
                logits = model(grid, task_ids, class_ids)
            sampled, log_prob = logits.sample(temperature, top_k, generator)
            sampled = torch.where(unknown, sampled, tokens)
            confidence = torch.where(unknown, log_prob, torch.inf)
            progress = (t + 1) / steps
            noise = gumbel((batch, unknown.shape[1]), generator, device)
            score = confidence + choice_temperature * (1.0 - progress) * noise
            masked = _select_masked(score, counts[t]) & unknown
            tokens = sampled
            unknown = masked
            cond_input = (masked & cond_mask) | fixed
            inputs = torch.where(masked, torch.where(cond_mask, cond_tokens, MASK_ID), sampled)
            if return_history:
                history.append(SamplerStep(t, grid, sampled.view(shape), masked.view(shape), scale))
    finally:
        if was_training:
            model.train()
    out = tokens.view(shape)
    return (out, history) if return_history else out
