"""DeepSpeed engines from a model and our config, plus batch placement and activation checkpointing."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from videogen.errors import UserError
from videogen.training.config import OptimizerConfig, ScheduleConfig, TrainConfig
from videogen.training.deepspeed_config import build_deepspeed_config
from videogen.training.distributed import DistInfo
from videogen.training.lr_schedule import scheduler_factory


def default_param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on trainable tensors with >= 2 dims (conv / linear / embedding weights) only."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _checkpointed(forward: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(forward)
    def run(*args: Any, **kwargs: Any) -> Any:
        if torch.is_grad_enabled():
            return checkpoint(forward, *args, use_reentrant=False, **kwargs)
        return forward(*args, **kwargs)

    run.videogen_checkpointed = True  # type: ignore[attr-defined]
    return run


def apply_activation_checkpointing(module: nn.Module, mode: str) -> int:
    """``mode="blocks"``: recompute the model's blocks in backward instead of storing activations.

    The model names its blocks with a ``checkpoint_block_types`` class attribute (a tuple of module
    classes); each such submodule's ``forward`` is wrapped with torch's non-reentrant checkpoint
    (parameter names and state dicts are unchanged). Returns how many blocks were wrapped.
    """
    if mode == "none":
        return 0
    block_types = tuple(getattr(module, "checkpoint_block_types", ()))
    if not block_types:
        raise UserError(
            f"train.engine.activation_checkpointing = {mode!r}, but {type(module).__name__} declares no "
            "checkpoint_block_types; use activation_checkpointing=none"
        )
    count = 0
    for sub in module.modules():
        if isinstance(sub, block_types) and not getattr(sub.forward, "videogen_checkpointed", False):
            sub.forward = _checkpointed(sub.forward)
            count += 1
    return count


def avoid_cpu_bf16_conv_bug(precision: str, device: torch.device) -> bool:
    """bf16 on CPU: turn oneDNN off (process-wide); returns whether it did.

    torch 2.13's oneDNN bf16 ``Conv3d`` weight gradient on CPU is wrong for small temporal sizes
    (e.g. input ``(2, 16, 2, 4, 4)``, stride (1, 2, 2): values ~1e36, inf or nan; fp32 and the
    non-oneDNN kernels are right). bf16 on CPU is for testing the GPU code path, so correctness wins
    over speed there.
    """
    if precision != "bf16" or device.type != "cpu" or not torch.backends.mkldnn.enabled:
        return False
    warnings.warn(
        "bf16 on CPU: oneDNN is disabled (its bf16 Conv3d gradients are wrong); expect slow convs",
        stacklevel=3,
    )
    torch.backends.mkldnn.enabled = False
    return True


def create_engine(
    module: nn.Module,
    cfg: TrainConfig,
    dist: DistInfo,
    *,
    param_groups: list[dict[str, Any]] | None = None,
    optimizer: OptimizerConfig | None = None,
    schedule: ScheduleConfig | None = None,
) -> Any:
    """``deepspeed.initialize`` for one model with its own config dict, optimizer and LR schedule.

    ``optimizer`` / ``schedule`` replace the ones in ``cfg`` (e.g. for a discriminator). The
    scheduler (warmup + decay over ``cfg.max_steps``) is stepped by DeepSpeed once per optimizer
    step and saved in its checkpoints. Returns the ``DeepSpeedEngine``; its ``module`` is the model
    (in bf16 when the precision resolves to bf16).
    """
    import deepspeed

    optimizer = optimizer or cfg.optimizer
    config = build_deepspeed_config(cfg, device=dist.device, optimizer=optimizer)
    avoid_cpu_bf16_conv_bug("bf16" if config["bf16"]["enabled"] else "fp32", dist.device)
    groups = (
        param_groups if param_groups is not None else default_param_groups(module, optimizer.weight_decay)
    )
    apply_activation_checkpointing(module, cfg.engine.activation_checkpointing)
    engine, _, _, _ = deepspeed.initialize(
        model=module,
        model_parameters=groups,
        config=config,
        lr_scheduler=scheduler_factory(schedule or cfg.schedule, cfg.max_steps),
        dist_init_required=False,
    )
    return engine


def module_dtype(module: nn.Module) -> torch.dtype:
    """The floating dtype of a module's first parameter (bf16 for a bf16 engine's module)."""
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)


def to_device(batch: Any, device: torch.device, dtype: torch.dtype | None = None) -> Any:
    """Move every tensor of a (nested) batch to ``device``; floating tensors are cast to ``dtype``."""
    if torch.is_tensor(batch):
        if dtype is not None and batch.is_floating_point():
            return batch.to(device, dtype, non_blocking=True)
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device, dtype) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device, dtype) for v in batch)
    return batch
