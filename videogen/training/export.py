"""Export: a folder with ``config.yaml`` + ``model.safetensors``, loadable without DeepSpeed.

``config.yaml`` holds ``kind`` (``"tokenizer"`` | ``"transformer"`` | ...) next to the fields of
the model's dataclass config (the layout ``VideoTokenizer.save_pretrained`` writes too);
``model.safetensors`` holds the weights (the EMA ones when training kept an EMA) with ``kind`` in
its metadata. The files are written under temporary names and renamed, so a crash never leaves a
half-written export behind. Models with their own ``save_pretrained`` can be exported through that
instead (see :func:`export_pretrained`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

from videogen.config import to_dict
from videogen.errors import UserError

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"


def export_model(state_dict: dict[str, torch.Tensor], config: Any, kind: str, out_dir: str | Path) -> Path:
    """Write ``config.yaml`` (``kind`` + the config's fields) and ``model.safetensors`` into ``out_dir``.

    ``config`` is a dataclass (or a plain mapping). Tensors are stored contiguous on CPU; tied weights
    are stored once per key. Call on one rank only.
    """
    fields = to_dict(config) if config is not None else {}
    if "kind" in fields:
        raise ValueError("a config exported with export_model must not have a field named 'kind'")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in state_dict.items()}
    tmp_weights = out_dir / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp_weights), metadata={"format": "pt", "kind": kind})
    tmp_config = out_dir / (CONFIG_FILE + ".tmp")
    tmp_config.write_text(yaml.safe_dump({"kind": kind, **fields}, sort_keys=False))
    os.replace(tmp_weights, out_dir / WEIGHTS_FILE)
    os.replace(tmp_config, out_dir / CONFIG_FILE)
    return out_dir


def load_export(
    out_dir: str | Path, kind: str | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read an export: ``(config fields without kind, state dict)``; checks ``kind`` when given."""
    out_dir = Path(out_dir)
    config_file, weights_file = out_dir / CONFIG_FILE, out_dir / WEIGHTS_FILE
    if not config_file.is_file() or not weights_file.is_file():
        raise UserError(f"'{out_dir}' is not an export: it needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    data = yaml.safe_load(config_file.read_text()) or {}
    found = data.pop("kind", None)
    if kind is not None and found != kind:
        raise UserError(f"'{out_dir}' holds a {found!r} model, not a {kind!r}; give a {kind} export")
    return data, load_file(str(weights_file))


def export_pretrained(
    build: Callable[[], nn.Module], weights: dict[str, torch.Tensor], out_dir: str | Path
) -> Path:
    """Build a fresh fp32 model, load ``weights`` (e.g. ``ema.state_dict()``), call its ``save_pretrained``.

    For models that write their own export (with the same two files); call on one rank only.
    """
    model = build().float()
    model.load_state_dict(weights)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    return out_dir
