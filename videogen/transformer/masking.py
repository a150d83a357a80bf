"""Training-side COMMIT masking: mask draws, the three-way token mix, CFG dropout, task mix, the loss.

Pure functions; all randomness comes from an optional ``torch.Generator`` (see ``rng.uniform``).
Token grids are int64 ``(B, T', H', W')``; masks are bool of the same shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from videogen.errors import UserError
from videogen.transformer.draws import uniform
from videogen.transformer.logits import TokenLogits
from videogen.transformer.mask_schedules import mask_ratio, masked_count
from videogen.transformer.tasks import get_task
from videogen.transformer.vocab import MASK_ID, UNCOND_TASK_ID

RATIO_MODES = ("per_sample", "per_batch")
TASK_MODES = ("per_step", "per_sample")
GROUPS = ("mask", "refine", "recons")


# ----------------------------------------------------------------------------- masks and the mix


def sample_mask(
    shape: tuple[int, ...],
    *,
    schedule: str = "cosine",
    ratio_mode: str = "per_sample",
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Draw which positions are masked: ``(B, ...)`` bool with exactly ``n_b`` True per sample.

    ``u ~ U(0, 1)`` (one per sample, or one for the batch with ``ratio_mode="per_batch"``),
    ``r = gamma(u)`` (``schedule``, default ``cos(pi/2 u)``), ``n_b = clip(floor(N r), 1, N)`` with
    ``N = prod(shape[1:])``; the masked positions are the ``n_b`` lowest of iid uniform scores.
    """
    if ratio_mode not in RATIO_MODES:
        raise UserError(f"mask ratio mode {ratio_mode!r} is unknown; use {' or '.join(RATIO_MODES)}")
    batch, num = shape[0], math.prod(shape[1:])
    u = uniform((batch if ratio_mode == "per_sample" else 1,), generator, device).expand(batch)
    counts = masked_count(num, mask_ratio(u, schedule, num).clamp(1e-6, 1.0)).clamp(1, num)  # (B,)
    scores = uniform((batch, num), generator, device)
    ranks = scores.argsort(dim=1).argsort(dim=1)  # rank of every position's score within its sample
    return (ranks < counts.unsqueeze(1)).view(shape)


def mix_tokens(
    targets: torch.Tensor, cond_tokens: torch.Tensor, cond_mask: torch.Tensor, masked: torch.Tensor
) -> torch.Tensor:
    """COMMIT's three-way mix -> model input ids.

    masked and in the condition region -> the condition token; masked outside it -> ``MASK_ID``;
    not masked -> the true token.
    """
    fill = torch.where(cond_mask, cond_tokens, MASK_ID)
    return torch.where(masked, fill, targets)


def cfg_dropout(
    task_ids: torch.Tensor,
    class_ids: torch.Tensor,
    cond_mask: torch.Tensor,
    *,
    uncond_class_id: int,
    class_dropout: float = 0.1,
    condition_dropout: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Drop the class and/or the condition of some samples so classifier-free guidance has a twin.

    One ``u ~ U(0, 1)`` per sample: ``u < class_dropout`` sets the class to UNCOND;
    ``u < condition_dropout`` empties the condition mask (so masked positions get [MASK], never
    condition tokens) and sets the task to the unconditional task. The events are nested, so with
    equal rates every dropped sample is exactly the sampler's unconditional twin.
    Returns new ``(task_ids, class_ids, cond_mask)``.
    """
    for name, rate in (("class_dropout", class_dropout), ("condition_dropout", condition_dropout)):
        if not 0.0 <= rate <= 1.0:
            raise UserError(f"{name} = {rate} must be in [0, 1]")
    u = uniform((task_ids.shape[0],), generator, task_ids.device)
    drop_class, drop_cond = u < class_dropout, u < condition_dropout
    class_ids = torch.where(drop_class, uncond_class_id, class_ids)
    task_ids = torch.where(drop_cond, UNCOND_TASK_ID, task_ids)
    cond_mask = cond_mask & ~drop_cond.view(-1, *([1] * (cond_mask.dim() - 1)))
    return task_ids, class_ids, cond_mask


# ----------------------------------------------------------------------------- tasks and prefix


def sample_tasks(
    weights: Mapping[str, float],
    batch_size: int,
    *,
    mode: str = "per_step",
    generator: torch.Generator | None = None,
) -> list[str]:
    """Pick a task name per sample by ``weights`` (name -> weight >= 0, not all 0).

    mode: "per_step" draws one task for the whole batch (MAGVIT v1); "per_sample" draws each sample's
    task independently.
    """
    if mode not in TASK_MODES:
        raise UserError(f"task sampling mode {mode!r} is unknown; use {' or '.join(TASK_MODES)}")
    names = list(weights)
    for name in names:
        get_task(name)
    probs = torch.tensor([float(weights[n]) for n in names], dtype=torch.float64)
    if len(names) == 0 or (probs < 0).any() or probs.sum() <= 0:
        raise UserError(f"task weights {dict(weights)} must be >= 0 with a positive sum")
    draws = uniform((1 if mode == "per_step" else batch_size,), generator, "cpu").to(torch.float64)
    cumulative = (probs / probs.sum()).cumsum(0)
    index = torch.searchsorted(cumulative, draws, right=True).clamp_max(len(names) - 1)
    picked = [names[i] for i in index.tolist()]
    return picked * batch_size if mode == "per_step" else picked


def task_prefix(
    task_names: Sequence[str], labels: torch.Tensor | None, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Task names ``[B]`` and labels ``(B,)`` (or None; a label < 0 means unknown) -> task ids, class ids.

    The class id is the label for class-conditional tasks with a known label, else UNCOND (= num_classes).
    """
    specs = [get_task(n) for n in task_names]
    task_ids = torch.tensor([s.task_id for s in specs], dtype=torch.int64)
    use_class = torch.tensor([s.class_conditional for s in specs], dtype=torch.bool)
    if labels is None or num_classes == 0:
        return task_ids, torch.full_like(task_ids, num_classes)
    labels = labels.to("cpu", torch.int64)
    if (labels >= num_classes).any():
        raise UserError(f"labels {labels.tolist()} exceed num_classes = {num_classes}")
    class_ids = torch.where(use_class & (labels >= 0), labels, num_classes)
    return task_ids, class_ids


# ----------------------------------------------------------------------------- one training batch


@dataclass(frozen=True)
class TrainingInputs:
    """Model inputs and loss bookkeeping for one batch (grids ``(B, T', H', W')``, ids ``(B,)``)."""

    inputs: torch.Tensor  # code ids or MASK_ID, after the three-way mix
    targets: torch.Tensor  # true code ids everywhere
    masked: torch.Tensor  # bool, positions chosen by the mask draw
    cond_mask: torch.Tensor  # bool, condition region (empty for condition-dropped samples)
    task_ids: torch.Tensor
    class_ids: torch.Tensor


def prepare_training_inputs(
    targets: torch.Tensor,
    cond_tokens: torch.Tensor,
    cond_mask: torch.Tensor,
    task_ids: torch.Tensor,
    class_ids: torch.Tensor,
    *,
    uncond_class_id: int,
    schedule: str = "cosine",
    ratio_mode: str = "per_sample",
    class_dropout: float = 0.1,
    condition_dropout: float = 0.1,
    generator: torch.Generator | None = None,
) -> TrainingInputs:
    """CFG dropout, mask draw and three-way mix for one batch (see the functions above)."""
    task_ids, class_ids, cond_mask = cfg_dropout(
        task_ids,
        class_ids,
        cond_mask,
        uncond_class_id=uncond_class_id,
        class_dropout=class_dropout,
        condition_dropout=condition_dropout,
        generator=generator,
    )
    masked = sample_mask(
        tuple(targets.shape),
        schedule=schedule,
        ratio_mode=ratio_mode,
        generator=generator,
        device=targets.device,
    )
    inputs = mix_tokens(targets, cond_tokens, cond_mask, masked)
    return TrainingInputs(inputs, targets, masked, cond_mask, task_ids, class_ids)


# ----------------------------------------------------------------------------- loss


@dataclass(frozen=True)
class LossOutput:
    """``loss``: scalar tensor to backpropagate. ``metrics``: floats (see :func:`commit_loss`)."""

    loss: torch.Tensor
    metrics: dict[str, float]


def commit_loss(
    logits: TokenLogits,
    targets: torch.Tensor,
    masked: torch.Tensor,
    cond_mask: torch.Tensor,
    *,
    label_smoothing: float = 1e-4,
) -> LossOutput:
    """Cross-entropy over all latent positions (MAGVIT's mask + refine + recons), label-smoothed.

    logits: ``(B, N, .)`` from the model; targets/masked/cond_mask: ``(B, T', H', W')`` with N = T'H'W'.
    For split vocabularies the loss is the sum of the sub-token cross-entropies. The loss is the
    mean over every position of every sample (each sample is normalized by its N).

    metrics: "loss", "acc" over all positions; for each group "mask" ([MASK] inputs: masked outside
    the condition region), "refine" (condition-token inputs: masked inside it) and "recons" (true-token
    inputs): "<group>_count" always, "<group>_loss" and "<group>_acc" only when the group is non-empty.
    Accuracy = the argmax code equals the target. Early in training "loss" falls just from copying
    the recons inputs; "mask_loss" / "mask_acc" show real learning.
    """
    batch, num = logits.shape
    targets = targets.reshape(batch, num)
    masked = masked.reshape(batch, num)
    cond_mask = cond_mask.reshape(batch, num)
    ce = logits.cross_entropy(targets, label_smoothing)  # (B, N) float32
    loss = ce.mean()
    with torch.no_grad():
        correct = logits.accuracy(targets).float()
        groups = (masked & ~cond_mask, masked & cond_mask, ~masked)
        stats = [ce.detach().mean(), correct.mean()]
        for group in groups:
            g = group.float()
            stats += [(ce.detach() * g).sum(), (correct * g).sum(), g.sum()]
        values = torch.stack(stats).tolist()  # one device sync
    metrics = {"loss": values[0], "acc": values[1]}
    for i, name in enumerate(GROUPS):
        ce_sum, correct_sum, count = values[2 + 3 * i : 5 + 3 * i]
        metrics[f"{name}_count"] = count
        if count > 0:
            metrics[f"{name}_loss"] = ce_sum / count
            metrics[f"{name}_acc"] = correct_sum / count
    return LossOutput(loss, metrics)
