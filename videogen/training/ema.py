"""Exponential moving average of a module's weights, kept in fp32.

Updated from ``engine.module`` after each optimizer step (ZeRO 0-2 keep full weights on every rank,
so every rank holds the same EMA). Under bf16 the module weights are bf16; the average itself stays
fp32. Buffers (e.g. norm statistics) are copied, not averaged. Evaluation and export use these
weights; they are saved in checkpoints as ``ema_<engine>.safetensors``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from videogen.export import follow_umask


class EMA:
    """fp32 EMA: ``ema <- decay * ema + (1 - decay) * weight`` for every floating-point parameter.

    The keys are those of ``module.state_dict()``; :meth:`state_dict` is a full state dict that loads
    into a fresh copy of the module (parameters averaged, buffers as last seen).
    """

    def __init__(self, module: nn.Module, decay: float, device: torch.device | str | None = None):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        param_names = {name for name, p in module.named_parameters(remove_duplicate=False)}
        self.averaged: dict[str, torch.Tensor] = {}
        self.copied: dict[str, torch.Tensor] = {}
        for name, value in module.state_dict().items():
            target = device if device is not None else value.device
            if name in param_names and value.is_floating_point():
                self.averaged[name] = value.detach().to(target, torch.float32, copy=True)
            else:
                self.copied[name] = value.detach().to(target, copy=True)

    def _sources(self, module: nn.Module) -> dict[str, torch.Tensor]:
        state = module.state_dict(keep_vars=True)
        missing = set(self.averaged) - set(state)
        if missing:
            raise KeyError(
                f"EMA: module lacks {sorted(missing)[:3]} ...; was it built from a different model?"
            )
        return state

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """One EMA step from the module's current weights (call after each optimizer step)."""
        state = self._sources(module)
        names = list(self.averaged)
        ema = [self.averaged[n] for n in names]
        new = [state[n].detach().to(ema[i].device, torch.float32) for i, n in enumerate(names)]
        torch._foreach_lerp_(ema, new, 1.0 - self.decay)
        for name, buf in self.copied.items():
            buf.copy_(state[name].detach())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**self.averaged, **self.copied}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        expected = set(self.averaged) | set(self.copied)
        if set(state) != expected:
            diff = sorted(expected.symmetric_difference(state))[:3]
            raise KeyError(f"EMA state does not match the model (first differing keys: {diff})")
        for name, value in state.items():
            target = self.averaged.get(name, self.copied.get(name))
            target.copy_(value.to(target.device, target.dtype))

    def save(self, path: str | Path) -> None:
        tensors = {name: t.detach().cpu().contiguous() for name, t in self.state_dict().items()}
        save_file(tensors, str(path), metadata={"format": "pt", "ema_decay": str(self.decay)})
        follow_umask(path)  # safetensors writes 0600

    def load(self, path: str | Path) -> None:
        self.load_state_dict(load_file(str(path)))

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Write the EMA weights into ``module`` (cast to its dtype)."""
        state = module.state_dict()
        for name, value in self.state_dict().items():
            state[name].copy_(value.to(state[name].device, state[name].dtype))

    @contextmanager
    def swapped_into(self, module: nn.Module) -> Iterator[nn.Module]:
        """Temporarily run ``module`` with the EMA weights (e.g. for evaluation); restored on exit."""
        backup = {name: t.detach().clone() for name, t in module.state_dict().items()}
        self.copy_to(module)
        try:
            yield module
        finally:
            with torch.no_grad():
                for name, t in module.state_dict().items():
                    t.copy_(backup[name])
