"""One COMMIT training step, and the fixed-mask evaluation that tracks it.

A batch of token-cache items becomes model inputs in four moves (``transformer.masking``): a task
per step or per sample (by weight), its condition tokens and latent condition mask from the cache,
the task/class prefix with CFG dropout, then the mask draw (cosine ratio, exact counts) and the
three-way mix. The loss is cross-entropy over every latent position with label smoothing;
metrics are reported for masked ([MASK] input), refine (condition-token input) and reconstruction
(true-token input) positions separately, summed over ranks so every rank logs the same names.

Image generation trains on 1-frame grids, which cannot share a batch with clips: an *image step*
(per-step draw, or with ``per_sample`` a draw per step at the task's share of the weights) trains on
the first latent frame of the batch's clips plus ``image_batch_size`` images of the image cache
(picked at random, so no loader state), all as image generation.

Randomness comes from generators seeded by ``(seed, rank, step, micro-batch)``, so masks, task and
image draws do not depend on what ran before (an exact resume needs no RNG state); per-step task
draws use ``(seed, step)`` only and agree on every rank.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from videogen.collectives import all_reduce_
from videogen.errors import UserError
from videogen.token_cache.reader import select_task
from videogen.transformer.masking import (
    GROUPS,
    TrainingInputs,
    commit_loss,
    prepare_training_inputs,
    sample_tasks,
    task_prefix,
)
from videogen.transformer_training.training_config import IMAGE_TASK, EvalConfig, MaskingConfig

SHOWN = ("loss", "mask_loss", "mask_acc")  # on the progress bar
_TASK_STREAM, _MASK_STREAM, _IMAGE_STREAM = 1, 2, 3  # generator streams


def seeded_generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded from integer ``keys`` (any number, order matters)."""
    seed = np.random.SeedSequence([int(k) for k in keys]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(seed))


def transformer_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """MAGVIT v1: weight decay on the blocks' (and untied heads') matrices only; none on embeddings
    (code tables, which the tied head shares), positions, [MASK], task and class vectors, biases, norms."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_matrix = p.ndim >= 2 and name.split(".")[0] in ("blocks", "heads")
        (decay if is_matrix else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


# ----------------------------------------------------------------------------- inputs


def build_inputs(
    batch: Mapping[str, Any],
    task_names: Sequence[str],
    *,
    num_classes: int,
    schedule: str,
    ratio_mode: str,
    class_dropout: float,
    condition_dropout: float,
    generator: torch.Generator,
    device: torch.device,
) -> TrainingInputs:
    """Collated ``TokenDataset`` items + a task per sample -> mixed model inputs on ``device``.

    ``image_generation`` (the whole batch) uses latent frame 0 only: ``(B, 1, H', W')``, no condition
    (a batch of 1-frame grids, such as images, is used as it is).
    """
    tokens = batch["tokens"]  # (B, T', H', W') int64
    if IMAGE_TASK in task_names:
        if any(name != IMAGE_TASK for name in task_names):
            raise UserError(
                f"{IMAGE_TASK} cannot share a batch with video tasks; use masking.task_mode=per_step"
            )
        tokens = tokens[:, :1]
        cond_tokens, cond_mask = torch.zeros_like(tokens), torch.zeros(tokens.shape, dtype=torch.bool)
    else:
        cond_tokens, cond_mask = select_task(batch, task_names)
    task_ids, class_ids = task_prefix(list(task_names), batch["label"], num_classes)
    return prepare_training_inputs(
        tokens.to(device),
        cond_tokens.to(device),
        cond_mask.to(device),
        task_ids.to(device),
        class_ids.to(device),
        uncond_class_id=num_classes,
        schedule=schedule,
        ratio_mode=ratio_mode,
        class_dropout=class_dropout,
        condition_dropout=condition_dropout,
        generator=generator,
    )


# ----------------------------------------------------------------------------- metrics


def _group_sums(metrics: Mapping[str, float]) -> list[float]:
    """``commit_loss`` metrics -> [loss, acc, 1, then (ce sum, correct sum, count) per group]."""
    values = [metrics["loss"], metrics["acc"], 1.0]
    for group in GROUPS:
        count = metrics[f"{group}_count"]
        values += [metrics.get(f"{group}_loss", 0.0) * count, metrics.get(f"{group}_acc", 0.0) * count, count]
    return values


def _means(totals: Sequence[float]) -> dict[str, float]:
    """Summed :func:`_group_sums` -> means; a group's loss/acc only where it had positions."""
    out = {"loss": totals[0] / totals[2], "acc": totals[1] / totals[2]}
    positions = sum(totals[5 + 3 * i] for i in range(len(GROUPS)))
    for i, group in enumerate(GROUPS):
        ce, correct, count = totals[3 + 3 * i : 6 + 3 * i]
        if count > 0:
            out[f"{group}_loss"], out[f"{group}_acc"] = ce / count, correct / count
    out["masked_fraction"] = (totals[5] + totals[8]) / max(positions, 1.0)
    return out


def global_metrics(metrics: Mapping[str, float], device: torch.device) -> dict[str, float]:
    """One step's ``commit_loss`` metrics summed over ranks (a collective): the same names on every rank."""
    totals = all_reduce_(torch.tensor(_group_sums(metrics), dtype=torch.float64, device=device))
    return _means(totals.tolist())


# ----------------------------------------------------------------------------- the step


def image_batch(
    batch: Mapping[str, Any], images: Dataset | None, count: int, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """An image step's batch: latent frame 0 of the clips ``(B, 1, H', W')`` followed by ``count`` items
    of the image cache ``images`` (drawn uniformly with ``generator``; none without a cache)."""
    tokens, labels = [batch["tokens"][:, :1]], [batch["label"]]
    if images is not None and count > 0 and len(images) > 0:
        picks = torch.randint(len(images), (count,), generator=generator).tolist()
        drawn = default_collate([images[i] for i in picks])
        tokens.append(drawn["tokens"][:, :1])
        labels.append(drawn["label"])
    return {"tokens": torch.cat(tokens), "label": torch.cat(labels)}


class TrainStep:
    """``step(batch) -> metrics`` for ``Trainer.fit``: inputs, forward through the engine, loss, update.

    ``images``: the image token cache (1-frame grids) image steps add ``image_batch_size`` items of.
    ``history`` keeps the last ``keep`` steps' metrics and ``first`` the first ``keep`` (for the summary).
    """

    def __init__(
        self,
        trainer: Any,
        engine: Any,
        masking: MaskingConfig,
        num_classes: int,
        label_smoothing: float,
        keep: int = 20,
        images: Dataset | None = None,
        image_batch_size: int = 0,
    ) -> None:
        self.trainer, self.engine, self.masking = trainer, engine, masking
        self.images, self.image_batch_size = images, image_batch_size
        self.weights = masking.weights()
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.first: list[dict[str, float]] = []
        self.history: deque[dict[str, float]] = deque(maxlen=keep)
        self._keep = keep
        self._last = (-1, 0)  # (step, micro-batch index within the step)

    def task_names(self, batch_size: int, step: int, generator: torch.Generator) -> list[str]:
        """The batch's tasks: one per step (``per_step``), or per sample, where image generation is an
        image step (all of the batch) drawn once per step at its share of the weights."""
        seed = self.trainer.cfg.seed
        per_step = seeded_generator(seed, _TASK_STREAM, step)  # equal on every rank and micro-batch
        if self.masking.task_mode == "per_step":
            return sample_tasks(self.weights, batch_size, mode="per_step", generator=per_step)
        share = self.masking.image_fraction()
        if share > 0 and float(torch.rand((), generator=per_step)) < share:
            return [IMAGE_TASK] * batch_size
        return sample_tasks(self.masking.video_weights(), batch_size, mode="per_sample", generator=generator)

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, float]:
        trainer, masking = self.trainer, self.masking
        step = trainer.step
        micro = self._last[1] + 1 if self._last[0] == step else 0
        self._last = (step, micro)
        generator = seeded_generator(trainer.cfg.seed, _MASK_STREAM, trainer.dist.rank, step, micro)
        names = self.task_names(batch["tokens"].shape[0], step, generator)
        if names[0] == IMAGE_TASK:
            picks = seeded_generator(trainer.cfg.seed, _IMAGE_STREAM, trainer.dist.rank, step, micro)
            batch = image_batch(batch, self.images, self.image_batch_size, picks)
            names = [IMAGE_TASK] * batch["tokens"].shape[0]
        inputs = build_inputs(
            batch,
            names,
            num_classes=self.num_classes,
            schedule=masking.schedule,
            ratio_mode=masking.ratio_mode,
            class_dropout=masking.class_dropout,
            condition_dropout=masking.condition_dropout,
            generator=generator,
            device=trainer.device,
        )
        logits = self.engine(inputs.inputs, inputs.task_ids, inputs.class_ids)
        out = commit_loss(
            logits, inputs.targets, inputs.masked, inputs.cond_mask, label_smoothing=self.label_smoothing
        )
        if trainer.finite(loss=out.loss):
            self.engine.backward(out.loss)
            self.engine.step()
        metrics = global_metrics(out.metrics, trainer.device)
        if len(self.first) < self._keep:
            self.first.append(metrics)
        self.history.append(metrics)
        return metrics


def mean_of(records: Sequence[Mapping[str, float]], name: str) -> float | None:
    """Mean of ``name`` over the records that have it (None if none does)."""
    values = [r[name] for r in records if name in r and np.isfinite(r[name])]
    return float(np.mean(values)) if values else None


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_fixed(
    model: Callable[..., Any],
    dataset: Dataset,
    tasks: Sequence[str],
    cfg: EvalConfig,
    *,
    num_classes: int,
    schedule: str,
    label_smoothing: float,
    device: torch.device,
) -> dict[str, float]:
    """Loss and accuracy per position group on the first ``cfg.num_items`` items, for every task.

    Masks come from generators seeded by ``(cfg.seed, task index, batch index)`` and there is no CFG
    dropout, so two calls on the same weights agree exactly and calls over training are comparable.
    Returns the totals over all tasks (``mask_loss``, ...) and per task (``<task>/mask_loss``, ...).
    """
    count = min(cfg.num_items, len(dataset))
    if count == 0 or not tasks:
        return {}
    was_training = isinstance(model, nn.Module) and model.training
    if isinstance(model, nn.Module):
        model.eval()
    results: dict[str, float] = {}
    overall = np.zeros(3 + 3 * len(GROUPS))
    try:
        for t, task in enumerate(tasks):
            totals = np.zeros_like(overall)
            for b, start in enumerate(range(0, count, cfg.batch_size)):
                batch = default_collate(
                    [dataset[i] for i in range(start, min(count, start + cfg.batch_size))]
                )
                size = batch["tokens"].shape[0]
                inputs = build_inputs(
                    batch,
                    [task] * size,
                    num_classes=num_classes,
                    schedule=schedule,
                    ratio_mode="per_sample",
                    class_dropout=0.0,
                    condition_dropout=0.0,
                    generator=seeded_generator(cfg.seed, t, b),
                    device=device,
                )
                logits = model(inputs.inputs, inputs.task_ids, inputs.class_ids)
                out = commit_loss(
                    logits, inputs.targets, inputs.masked, inputs.cond_mask, label_smoothing=label_smoothing
                )
                sums = np.asarray(_group_sums(out.metrics))
                sums[:3] *= size  # loss and acc are batch means: weight by items
                totals += sums
            overall += totals
            results.update({f"{task}/{k}": v for k, v in _means(totals.tolist()).items()})
    finally:
        if was_training:
            model.train()
    return {**_means(overall.tolist()), **results}
