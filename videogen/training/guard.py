"""Non-finite guard: skip the update, count it, stop after several in a row.

A train step calls :meth:`NonFiniteGuard.check` on its loss(es) *before* ``engine.backward``; when
it returns False the step skips backward and ``engine.step`` (no optimizer update, no scheduler
step). The check is a collective, so every rank skips together (ZeRO would otherwise hang in its
gradient reduction). Updates DeepSpeed itself skipped for non-finite gradients are counted too
(:meth:`note`). The loop calls :meth:`end_step` once per micro-batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from videogen.collectives import all_reduce_
from videogen.errors import UserError


class TrainingDivergedError(UserError):
    """Losses or gradients stayed non-finite for ``max_consecutive`` steps (or weights went non-finite)."""


class NonFiniteGuard:
    """Counts micro-steps with a non-finite loss: ``total`` overall and ``consecutive`` in a row."""

    def __init__(self, max_consecutive: int, device: torch.device | str = "cpu"):
        self.max_consecutive = max_consecutive
        self.device = torch.device(device)
        self.total = 0
        self.consecutive = 0
        self._bad_this_step: list[str] = []

    def check(self, **losses: torch.Tensor) -> bool:
        """True when every named loss is finite on every rank (a collective; call it on every rank)."""
        local = torch.stack([torch.isfinite(v.detach()).all() for v in losses.values()]).to(self.device)
        ok = all_reduce_(local.float(), "min")
        bad = [name for name, good in zip(losses, ok.tolist()) if not good]
        self._bad_this_step += bad
        return not bad

    def note(self, what: str) -> None:
        """Count this micro-step as non-finite for another reason (e.g. DeepSpeed skipped an update
        because the gradients overflowed); must be called on every rank alike."""
        self._bad_this_step.append(what)

    def end_step(self, step: int, hint: Callable[[], str] | None = None) -> bool:
        """Close one micro-step; returns whether it was skipped. Raises after too many in a row."""
        skipped = bool(self._bad_this_step)
        names, self._bad_this_step = self._bad_this_step, []
        if not skipped:
            self.consecutive = 0
            return False
        self.total += 1
        self.consecutive += 1
        if self.consecutive >= self.max_consecutive:
            raise TrainingDivergedError(
                f"training stopped at step {step}: non-finite values ({', '.join(sorted(set(names)))}) "
                f"for {self.consecutive} steps in a row (limit train.max_nonfinite_steps="
                f"{self.max_consecutive}); those steps were skipped and no checkpoint was written from them"
                f"{hint() if hint else ''}. Try a lower train.optimizer.lr, train.engine.gradient_clipping=1.0 or "
                "train.engine.precision=fp32"
            )
        return True

    def state_dict(self) -> dict[str, int]:
        return {"total": self.total, "consecutive": self.consecutive}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.total = int(state["total"])
        self.consecutive = int(state["consecutive"])


def all_finite(tensors: list[torch.Tensor], device: torch.device | str) -> bool:
    """True when every tensor is finite on every rank (a collective)."""
    checks = [torch.isfinite(t.detach()).all().to(device) for t in tensors if t.is_floating_point()]
    flag = torch.stack(checks).all().float().reshape(1) if checks else torch.ones(1, device=device)
    return bool(all_reduce_(flag, "min").item() > 0)
