"""The DeepSpeed config dict, generated from :class:`~videogen.training.config.TrainConfig`.

There are no ``"auto"`` values: those are only understood by accelerate / the HF Trainer, and raw
``deepspeed.initialize`` fails on them with an obscure ``TypeError``. An optional JSON file
(``engine.deepspeed_overrides``) is deep-merged on top for settings we do not model (offload,
bucket sizes, communication dtypes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from videogen.config_loader import deep_merge
from videogen.errors import UserError
from videogen.training.config import OptimizerConfig, TrainConfig

NEVER_PRINT = 10**9  # DeepSpeed's own periodic prints; our logger does the reporting


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``"auto"`` -> ``"bf16"`` on a GPU that supports it, else ``"fp32"``; explicit values are checked."""
    device_type = torch.device(device).type
    bf16_ok = device_type == "cpu" or (device_type == "cuda" and torch.cuda.is_bf16_supported())
    if precision == "auto":
        return "bf16" if device_type == "cuda" and bf16_ok else "fp32"
    if precision == "bf16" and not bf16_ok:
        raise UserError("train.engine.precision = 'bf16' is not supported by this GPU; use precision=fp32")
    return precision


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype the engine's module (and its inputs) use for a resolved precision."""
    return torch.bfloat16 if precision == "bf16" else torch.float32


def _optimizer_section(opt: OptimizerConfig, device_type: str) -> dict[str, Any]:
    params: dict[str, Any] = {
        "lr": opt.lr,
        "betas": list(opt.betas),
        "eps": opt.eps,
        "weight_decay": opt.weight_decay,
    }
    impl = opt.implementation
    if impl == "auto":
        impl = "torch_fused" if device_type == "cuda" else "torch"
    if impl == "deepspeed" and device_type != "cuda":
        raise UserError(
            "train.optimizer.implementation = 'deepspeed' (FusedAdam) needs a GPU; use auto or torch on CPU"
        )
    if impl in ("torch", "torch_fused"):
        params["torch_adam"] = True  # torch.optim.Adam(W): no JIT-built DeepSpeed op
        if impl == "torch_fused":
            params["fused"] = True
    if opt.name == "adam":
        return {"type": "Adam", "params": {**params, "adam_w_mode": False}}
    return {"type": "AdamW", "params": params}


def _find_auto(node: Any, path: str = "") -> str | None:
    if isinstance(node, dict):
        for key, value in node.items():
            found = _find_auto(value, f"{path}.{key}" if path else key)
            if found:
                return found
    elif node == "auto":
        return path
    return None


def read_overrides(path: str | Path) -> dict:
    """A JSON mapping of DeepSpeed settings (no ``"auto"`` values)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"train.engine.deepspeed_overrides = '{path}' does not exist; give a JSON file or null"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"DeepSpeed overrides '{path}' are not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"DeepSpeed overrides '{path}' must hold a JSON object at the top level")
    return data


def build_deepspeed_config(
    cfg: TrainConfig,
    *,
    device: torch.device | str = "cpu",
    optimizer: OptimizerConfig | None = None,
) -> dict[str, Any]:
    """The dict for ``deepspeed.initialize(config=...)`` of one engine.

    ``optimizer`` replaces ``cfg.optimizer`` (e.g. a discriminator with its own settings: each engine
    gets its own dict). The global batch is ``micro_batch_size * gradient_accumulation_steps *
    world_size``; DeepSpeed derives it from the first two and the process group.
    """
    engine = cfg.engine
    device_type = torch.device(device).type
    precision = resolve_precision(engine.precision, device)
    zero: dict[str, Any] = {"stage": engine.zero_stage}
    if engine.zero_stage > 0:
        zero.update(
            contiguous_gradients=True,
            overlap_comm=device_type == "cuda",
            reduce_scatter=True,
            reduce_bucket_size=int(5e8),
            allgather_bucket_size=int(5e8),
        )
    ds: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": engine.micro_batch_size,
        "gradient_accumulation_steps": engine.gradient_accumulation_steps,
        "gradient_clipping": engine.gradient_clipping,
        "optimizer": _optimizer_section(optimizer or cfg.optimizer, device_type),
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16"},
        "steps_per_print": NEVER_PRINT,
        "wall_clock_breakdown": False,
    }
    if engine.deepspeed_overrides:
        ds = deep_merge(ds, read_overrides(engine.deepspeed_overrides))
    auto_key = _find_auto(ds)
    if auto_key:
        raise UserError(
            f"DeepSpeed setting '{auto_key}' is \"auto\", which only accelerate understands; "
            "give a number (or drop the key and let videogen set it)"
        )
    return ds
