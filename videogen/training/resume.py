"""What a resumed run may change: one rule per config key, checked before anything is loaded.

A checkpoint keeps the resolved config of the run that wrote it (flattened to dotted keys, in
``meta.json``). On resume the current config is compared with it key by key:

* keys matching :data:`MAY_CHANGE` take their new value from the resumed step on (how long to
  train, logging / evaluation / checkpoint cadence, the LR schedule and peak lr, loss weights,
  decoding and worker settings); the changes are listed in one line;
* every other key is fixed for the life of a run (the model and its quantizer, the data and its
  geometry, batch sizes, the optimizer kind and the settings its state restores, the engine layout,
  the seed): a change is refused with one line naming the key, both values and the fix;
* the process count is fixed too (ZeRO shards and the data position are per process).

A peak learning rate that differs from the checkpoint's is applied explicitly, with a printed line
(:func:`apply_peak_lr`): DeepSpeed restores the optimizer's and the scheduler's lr, which would
otherwise silently win over the config. Keys that the checkpoint does not know (added to the code
since) are not compared.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
from pathlib import Path
from typing import Any

from videogen.config_loader import to_dict
from videogen.errors import UserError
from videogen.training.checkpoint import CheckpointManager, read_meta

MAY_CHANGE = (
    "run.*",
    "train.max_steps",
    "train.max_minutes",
    "train.max_nonfinite_steps",
    "train.ema_decay",
    "train.log.*",
    "train.checkpoint.*",
    "train.schedule.*",
    "train.optimizer.lr",
    "train.optimizer.implementation",
    "train.engine.gradient_clipping",
    "train.engine.activation_checkpointing",
    "loss.*_weight",
    "loss.gan.start_step",
    "loss.gan.r1_interval",
    "loss.gan.schedule.*",
    "loss.gan.optimizer.lr",
    "loss.gan.optimizer.implementation",
    "data.val",
    "data.num_workers",
    "data.preload",
    "data.preload_max_gb",
    "data.prefetch_factor",
    "data.timeout_s",
    "data.probe_workers",
    "data.backend",
    "data.max_failure_fraction",
    "data.min_samples_before_failure_check",
    "data.max_attempts",
    "eval.*",
    "evaluation.*",
    "sampling.*",
    "val_cache",
    "loader_workers",
    "tokenize.batch_size",
    "tokenize.device",
    "init_from_image",
)

# why a key is fixed, by its first matching pattern (for the refusal message)
WHY_FIXED = (
    ("model.*", "the model's shape and quantizer are fixed for a run"),
    ("loss.gan.discriminator.*", "the discriminator's shape is fixed for a run"),
    (
        "*optimizer.*",
        "the optimizer kind and the settings its checkpointed state restores are fixed for a run",
    ),
    ("train.engine.*", "the batch size and the engine layout (ZeRO stage, precision) are fixed for a run"),
    ("train.seed", "the data order depends on the seed"),
    ("data.*", "the data, its geometry and the data position are fixed for a run"),
    (
        "decoder_finetune.*",
        "the decoder fine-tune shapes the optimizer's groups and has its own data position",
    ),
    ("*", "it is fixed for a run"),
)


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """A config dataclass as ``{"train.optimizer.lr": 0.002, ...}``; mappings and lists stay whole values."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        flat: dict[str, Any] = {}
        for field in dataclasses.fields(config):
            flat.update(flatten(getattr(config, field.name), f"{prefix}{field.name}."))
        return flat
    return {prefix[:-1]: to_dict(config)}


def may_change(key: str) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in MAY_CHANGE)


def _why(key: str) -> str:
    return next(why for pattern, why in WHY_FIXED if fnmatch.fnmatchcase(key, pattern))


def _show(value: Any) -> str:
    return "null" if value is None else str(value)


def check_resume(
    checkpoint: Path, saved: dict[str, Any] | None, current: dict[str, Any], saved_world: int, world: int
) -> list[str]:
    """Refuse (``UserError``) a resume that changes a fixed key or the process count; returns the
    ``key old -> new`` descriptions of the allowed changes. ``saved`` None (an older checkpoint): no
    key is compared."""
    if saved_world != world:
        raise UserError(
            f"checkpoint '{checkpoint}' was written by {saved_world} process(es) and this run has {world}: "
            f"resume with {saved_world} (run.sh train --num-gpus {saved_world}), or start a new run (run.name=NEW)"
        )
    current = json.loads(json.dumps(current))  # compare as stored: lists, not tuples; string keys
    changed = [k for k in current if saved is not None and k in saved and saved[k] != current[k]]
    refused = [k for k in changed if not may_change(k)]
    if refused:
        key = refused[0]
        more = f" (also changed: {', '.join(refused[1:])})" if len(refused) > 1 else ""
        raise UserError(
            f"cannot resume '{checkpoint}' with {key} = {_show(current[key])}: the checkpoint has "
            f"{_show(saved[key])}, and {_why(key)}; set {key}={_show(saved[key])}, or start a new run "
            f"(run.name=NEW){more}"
        )
    return [f"{k} {_show(saved[k])} -> {_show(current[k])}" for k in changed]


def resume_point(
    checkpoints: CheckpointManager, resume: str, config: dict[str, Any], world: int
) -> tuple[Path | None, list[str]]:
    """The checkpoint ``resume`` names (None: start fresh) and the allowed changes to ``config``
    (flattened) since it was written; refuses the others, and ``never`` over existing checkpoints."""
    path = checkpoints.resolve(resume)
    if path is None:
        existing = checkpoints.latest()
        if existing is not None:  # only with resume=never: "auto" would have found it
            raise UserError(
                f"train.checkpoint.resume=never, but '{checkpoints.root}' holds checkpoints of an earlier "
                f"run (newest {existing.name}), which a new run there would mix with and delete; choose "
                "another run.name, resume it (train.checkpoint.resume=auto), or move that folder away"
            )
        return None, []
    meta = read_meta(path)
    return path, check_resume(path, meta.get("config"), config, int(meta.get("world_size", world)), world)


def apply_peak_lr(engine: Any, lr: float) -> float | None:
    """Make ``lr`` the engine's peak lr after a checkpoint restored another; returns the restored one
    (None when they agree). The LR multiplier is the config's, at the restored step."""
    scheduler = getattr(engine, "lr_scheduler", None)
    base_lrs = getattr(scheduler, "base_lrs", None)
    learning = [base for base in base_lrs or [] if base != 0]  # a group at 0 is frozen (a decoder fine-tune)
    if not learning or all(abs(base - lr) <= 1e-12 * max(1.0, lr) for base in learning):
        return None
    restored = float(learning[0])
    scheduler.base_lrs = [lr if base != 0 else 0.0 for base in base_lrs]
    lrs = [lr * factor(scheduler.last_epoch) for factor in scheduler.lr_lambdas]
    for group, value in zip(scheduler.optimizer.param_groups, lrs):
        group["initial_lr"] = lr
        group["lr"] = value
    scheduler._last_lr = lrs
    return restored
