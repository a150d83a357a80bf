"""Learning-rate schedule: linear warmup, then cosine (or linear) decay to a floor.

The schedule is a multiplier of each param group's peak lr, as a picklable callable for
``torch.optim.lr_scheduler.LambdaLR``. DeepSpeed steps the scheduler once per optimizer step and
stores its state in checkpoints, so a resumed run continues on the same curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from videogen.training.config import ScheduleConfig


@dataclass(frozen=True)
class LRMultiplier:
    """``factor(step)`` in ``[min_lr_ratio, 1]`` after warmup; ``step`` counts optimizer steps from 0.

    Warmup: ``(step + 1) / warmup_steps`` (the first update already has a non-zero lr).
    Decay over ``decay_steps`` after warmup: cosine ``floor + (1 - floor) * (1 + cos(pi * p)) / 2`` or
    linear ``1 - (1 - floor) * p`` with progress ``p`` in [0, 1]; then the floor. Cooldown: from step
    ``cooldown_start`` on, the factor falls linearly from its value there to the floor at ``total_steps``
    (with ``constant``: warmup-stable-decay).
    """

    kind: str
    warmup_steps: int
    decay_steps: int
    min_lr_ratio: float
    cooldown_start: int | None = None
    total_steps: int = 0

    def __call__(self, step: int) -> float:
        start = self.cooldown_start
        if start is None or step < start:
            return self._base(step)
        progress = min(1.0, (step - start) / max(1, self.total_steps - start))
        return self._base(start) + (self.min_lr_ratio - self._base(start)) * progress

    def _base(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.decay_steps))
        floor = self.min_lr_ratio
        if self.kind == "linear":
            return 1.0 - (1.0 - floor) * progress
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_multiplier(cfg: ScheduleConfig, max_steps: int) -> LRMultiplier:
    """The multiplier for a run of ``max_steps`` optimizer steps (decay until the end unless set)."""
    decay = cfg.decay_steps if cfg.decay_steps is not None else max(1, max_steps - cfg.warmup_steps)
    cooldown = max(0, max_steps - cfg.cooldown_steps) if cfg.cooldown_steps else None
    return LRMultiplier(cfg.kind, cfg.warmup_steps, decay, cfg.min_lr_ratio, cooldown, max_steps)


def scheduler_factory(cfg: ScheduleConfig, max_steps: int):
    """A callable ``optimizer -> LambdaLR`` for ``deepspeed.initialize(lr_scheduler=...)``.

    Checkpoints restore only the scheduler's step: a run resumed with another ``max_steps`` or
    schedule follows the new config from the restored step on. (LambdaLR would also restore the
    attributes of a callable object, so the multiplier is wrapped in a plain function, which it skips.)
    """
    multiplier = lr_multiplier(cfg, max_steps)

    def factor(step: int) -> float:
        return multiplier(step)

    def make(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    return make
