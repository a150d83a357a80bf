"""Exports: self-contained model folders, ``config.yaml`` + ``model.safetensors``, for every model kind.

One format for the tokenizer, the transformer and any other model the trainer exports:

- ``config.yaml``: ``kind`` (``"tokenizer"`` | ``"transformer"`` | ...) first, then the model's config.
  A tokenizer export holds the fields of its ``TokenizerConfig`` (the quantizer included). A transformer
  export (``format_version: 2``) holds its ``TransformerConfig`` under ``model:`` and what it was trained
  for (:class:`TransformerExportInfo`): the tasks with their weights and options, the class and
  condition dropout, the identity of its tokenizer (config, codebook size and :func:`state_dict_sha256`
  of its weights), the window (frames, size, fps), the class names and the sampling defaults.
- ``model.safetensors``: the weights (EMA weights for trained models), ``kind`` in its metadata.

Inference reads nothing outside the export folders, so a copied folder behaves the same anywhere.
Every folder is written complete under a temporary name beside its place and then swapped in
(:func:`replace_folder`): a crash, a kill or a full disk never leaves a half-written export, nor a new
config next to old weights. Files get the mode the umask gives any new file (:func:`follow_umask`).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

from videogen.config_loader import check, from_dict, to_dict
from videogen.errors import UserError

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
TRANSFORMER_FORMAT_VERSION = 2
"""``format_version`` of transformer exports that describe themselves (1: the bare model config)."""


# ----------------------------------------------------------------------------- atomic folders

AT_FDCWD, RENAME_EXCHANGE = -100, 2
_FILLING: set[Path] = set()  # temporary folders replace_folder is filling now (written into directly)


def _umask() -> int:
    """This process's umask, read without changing it where Linux tells it (``os.umask`` sets it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(*paths: str | Path) -> None:
    """Give each file (and each file under each folder) in ``paths`` the mode any new file gets here
    (``0o666 & ~umask``): safetensors writes its files 0600 whatever the umask, so an export or an EMA
    file would be readable by its owner only."""
    mode = 0o666 & ~_umask()
    for path in map(Path, paths):
        for file in [path] if path.is_file() else (p for p in path.rglob("*") if p.is_file()):
            os.chmod(file, mode)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (Linux ``renameat2``); False where that is not available."""
    try:
        rename = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    return rename(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _tidy_after_kill(out_dir: Path) -> None:
    """Remove what a killed :func:`replace_folder` of ``out_dir`` left beside it: its temporary folder,
    and the previous folder it had renamed aside (put back if ``out_dir`` is missing). Folders of a
    process that is still running are left alone."""
    pattern = re.compile(rf"\.{re.escape(out_dir.name)}\.(tmp|old)-(\d+)")
    for stale in out_dir.parent.glob(f".{out_dir.name}.*-*"):
        match = pattern.fullmatch(stale.name)
        if match is None or not stale.is_dir() or _alive(int(match.group(2))):
            continue
        if match.group(1) == "old" and not out_dir.exists():
            os.replace(stale, out_dir)  # killed between moving the finished folder aside and the swap
        else:
            shutil.rmtree(stale, ignore_errors=True)


def replace_folder(out_dir: str | Path, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` fills a fresh folder beside ``out_dir``, which then takes ``out_dir``'s place.

    If ``write`` fails, ``out_dir`` is untouched and the temporary folder is removed; if the process is
    killed, ``out_dir`` is untouched too and the next call removes what was left. An existing
    ``out_dir`` is swapped out atomically (or, without ``renameat2``, renamed aside first) and
    deleted only once the new folder is in place. Files get the umask's mode (see :func:`follow_umask`).
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _tidy_after_kill(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        _FILLING.add(tmp.resolve())
        try:
            write(tmp)
        finally:
            _FILLING.discard(tmp.resolve())
        follow_umask(tmp)
        if not out_dir.exists():
            os.replace(tmp, out_dir)
        elif not _exchange(tmp, out_dir):  # tmp now holds the old folder when the exchange worked
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


# ----------------------------------------------------------------------------- writing and reading


def _cpu_tensors(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: t.detach().to("cpu").contiguous().clone() for name, t in state_dict.items()}


def _writer(fields: dict[str, Any], tensors: dict[str, torch.Tensor], kind: str) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "pt", "kind": kind})
        (folder / CONFIG_FILE).write_text(yaml.safe_dump({"kind": kind, **fields}, sort_keys=False))

    return write


def save_export(
    directory: str | Path, kind: str, fields: dict[str, Any], state_dict: Mapping[str, torch.Tensor]
) -> Path:
    """Write the export folder ``directory`` (``kind`` + ``fields`` in ``config.yaml``, the weights in
    ``model.safetensors``) atomically, replacing an export that is there.

    A folder holding anything but an export's two files is refused (a :class:`UserError`): the swap
    would remove the rest. What ``save_pretrained`` of both models calls.
    """
    directory = Path(directory)
    if directory.is_dir():
        others = sorted(p.name for p in directory.iterdir() if p.name not in (CONFIG_FILE, WEIGHTS_FILE))
        if others:
            listed = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise UserError(
                f"'{directory}' holds other files than an export ({listed}); save the export into a new "
                "or empty folder"
            )
    if "kind" in fields:
        raise ValueError("export fields must not have a key named 'kind' (it is the export's own)")
    write = _writer(fields, _cpu_tensors(state_dict), kind)
    if directory.resolve() in _FILLING:  # already the temporary folder of an atomic export
        write(directory)
        return directory
    return replace_folder(directory, write)


def read_export_config(directory: str | Path, kind: str, make_hint: str) -> dict[str, Any]:
    """``config.yaml`` of the export ``directory`` without ``kind``, which must be ``kind``; a missing
    file or another kind is a :class:`UserError` (``make_hint``: how to make one, for the message)."""
    directory = Path(directory)
    config_file, weights_file = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_file.is_file() or not weights_file.is_file():
        raise UserError(
            f"{kind} export '{directory}' not found: need a folder with {CONFIG_FILE} and {WEIGHTS_FILE} "
            f"({make_hint})"
        )
    try:
        data = yaml.safe_load(config_file.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"'{config_file}' is not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"'{config_file}' is not a mapping of config keys")
    found = data.pop("kind", None)
    if found != kind:
        raise UserError(
            f"'{directory}' holds an export of kind {found!r}, not {kind!r}; pass a {kind} export folder"
        )
    return data


def export_model(state_dict: dict[str, torch.Tensor], config: Any, kind: str, out_dir: str | Path) -> Path:
    """Write ``config.yaml`` (``kind`` + the config's fields) and ``model.safetensors`` into ``out_dir``.

    ``config`` is a dataclass (or a plain mapping). Tensors are stored contiguous on CPU; tied weights
    are stored once per key. Replaces whatever ``out_dir`` holds (an export folder of a training run).
    Call on one rank only.
    """
    fields = to_dict(config) if config is not None else {}
    if "kind" in fields:
        raise ValueError("a config exported with export_model must not have a field named 'kind'")
    return replace_folder(out_dir, _writer(fields, _cpu_tensors(state_dict), kind))


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
    return replace_folder(out_dir, model.save_pretrained)


# ----------------------------------------------------------------------------- identity


def state_dict_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of a state dict: every tensor's name, dtype, shape and bytes, in name order.

    Deterministic across devices and memory layouts (tensors are read contiguous on CPU), so the
    weights of an export hash the same wherever they are loaded.
    """
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- what a transformer export says


@dataclass
class TokenizerIdentity:
    """The tokenizer a transformer was trained on: its config, codebook size and weights hash.

    ``trained_from``: where its export was when the transformer was trained (a hint for messages;
    the identity is the hash).
    """

    codebook_size: int
    weights_sha256: str
    config: dict[str, Any] = field(default_factory=dict)
    trained_from: str | None = None

    def validate(self) -> None:
        check(self.codebook_size >= 2, "codebook_size", self.codebook_size, "must be >= 2")
        check(
            bool(re.fullmatch(r"[0-9a-f]{64}", self.weights_sha256)),
            "weights_sha256",
            self.weights_sha256,
            "must be a SHA-256 hex digest",
        )

    @classmethod
    def of(cls, tokenizer: nn.Module, trained_from: str | Path | None = None) -> TokenizerIdentity:
        """The identity of a ``VideoTokenizer`` (anything with ``config``, ``codebook_size``, ``state_dict``)."""
        return cls(
            codebook_size=int(tokenizer.codebook_size),
            weights_sha256=state_dict_sha256(tokenizer.state_dict()),
            config=to_dict(tokenizer.config),
            trained_from=None if trained_from is None else str(trained_from),
        )

    def describe(self) -> str:
        """``LFQ tokenizer with 1024 codes, weights sha256 1a2b3c4d5e6f``."""
        quantizer = str(self.config.get("quantizer") or "").upper()
        return (
            f"{quantizer} tokenizer with {self.codebook_size} codes, weights sha256 {self.weights_sha256[:12]}"
        ).strip()


@dataclass
class WindowGeometry:
    """The clip a transformer was trained on: ``num_frames`` frames of ``height x width`` at ``fps``
    (None: the frame rate of the training clips was not one rate)."""

    num_frames: int
    height: int
    width: int
    fps: float | None = None

    def validate(self) -> None:
        for name in ("num_frames", "height", "width"):
            check(getattr(self, name) >= 1, name, getattr(self, name), "must be >= 1")
        check(self.fps is None or self.fps > 0, "fps", self.fps, "must be > 0 or null")


@dataclass
class TransformerExportInfo:
    """What a transformer export says about its training, beside its architecture.

    tasks: task name -> weight (> 0) of the training task mix. task_options: task name -> the task
    builder's options it was trained with (condition frames). class_dropout / condition_dropout: the
    classifier-free-guidance dropout rates (they train the unconditional twin). tokenizer: the
    tokenizer's identity. window: the clip geometry. classes: class names (None: numbered or no
    classes). sampling: the sampling defaults (``SamplingOptions`` fields but the seed), and under
    ``conditioned`` the ones that differ for the tasks given part of the video (prediction,
    interpolation, inpainting, outpainting).
    """

    tasks: dict[str, float]
    tokenizer: TokenizerIdentity
    window: WindowGeometry
    task_options: dict[str, dict] = field(default_factory=dict)
    class_dropout: float = 0.0
    condition_dropout: float = 0.0
    classes: list[str] | None = None
    sampling: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        check(len(self.tasks) > 0, "tasks", self.tasks, "name at least one trained task")
        for name, weight in self.tasks.items():
            ok = isinstance(weight, (int, float)) and not isinstance(weight, bool) and weight > 0
            check(ok, f"tasks.{name}", weight, "weights must be numbers > 0")
        for name in ("class_dropout", "condition_dropout"):
            check(0.0 <= getattr(self, name) <= 1.0, name, getattr(self, name), "must be in [0, 1]")
        check("seed" not in self.sampling, "sampling", self.sampling, "holds no seed (a call's own)")
        conditioned = self.sampling.get("conditioned", {})
        check(isinstance(conditioned, dict), "sampling.conditioned", conditioned, "must be a mapping")
        check("seed" not in conditioned, "sampling.conditioned", conditioned, "holds no seed (a call's own)")

    def to_fields(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> TransformerExportInfo:
        return from_dict(cls, fields)
