"""Export: a folder with ``config.yaml`` + ``model.safetensors``, loadable without DeepSpeed.

``config.yaml`` holds ``kind`` (``"tokenizer"`` | ``"transformer"`` | ...) next to the fields of
the model's dataclass config (the layout ``VideoTokenizer.save_pretrained`` writes too);
``model.safetensors`` holds the weights (the EMA ones when training kept an EMA) with ``kind`` in
its metadata. The folder is written complete under a temporary name beside ``out_dir`` and then
swapped into place (:func:`replace_folder`), so a crash or a full disk never leaves a half-written
export, nor a new config next to old weights, and a finished export is replaced only by a complete
one. Models with their own ``save_pretrained`` can be exported through that instead (see
:func:`export_pretrained`).
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
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


AT_FDCWD, RENAME_EXCHANGE = -100, 2


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
        write(tmp)
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


def export_model(state_dict: dict[str, torch.Tensor], config: Any, kind: str, out_dir: str | Path) -> Path:
    """Write ``config.yaml`` (``kind`` + the config's fields) and ``model.safetensors`` into ``out_dir``.

    ``config`` is a dataclass (or a plain mapping). Tensors are stored contiguous on CPU; tied weights
    are stored once per key. Call on one rank only.
    """
    fields = to_dict(config) if config is not None else {}
    if "kind" in fields:
        raise ValueError("a config exported with export_model must not have a field named 'kind'")
    tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in state_dict.items()}

    def write(folder: Path) -> None:
        save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "pt", "kind": kind})
        (folder / CONFIG_FILE).write_text(yaml.safe_dump({"kind": kind, **fields}, sort_keys=False))

    return replace_folder(out_dir, write)


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
