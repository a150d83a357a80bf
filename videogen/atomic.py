"""Atomic file writes: a reader (or a run killed mid-write) sees the old file or the new one, never half.

Every write goes to a temporary name next to the target and is renamed over it when complete; the
temporary file is removed whatever happens. ``durable=True`` also fsyncs the file before the rename
(checkpoints and token caches, which a crash must not lose). Folder swaps (checkpoints, exports,
the sample data) build a whole folder under a temporary name and rename it; they use :func:`fsync`.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def fsync(path: str | Path) -> None:
    """Flush a file or folder to disk (a folder: its entries, e.g. after a rename); best effort."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def replacing(path: str | Path, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path (same folder and suffix as ``path``) to write; renamed over ``path`` on
    success, removed on failure. The folder is created if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        if durable:
            fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str, durable: bool = False) -> Path:
    with replacing(path, durable) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, data: Any, indent: int = 1, durable: bool = False) -> Path:
    """``data`` as indented JSON with a final newline."""
    return write_text(path, json.dumps(data, indent=indent) + "\n", durable)


def leftovers(path: str | Path) -> list[Path]:
    """The temporary files that writes of ``path`` killed before their rename left behind."""
    path = Path(path)
    return sorted(path.parent.glob(f".{path.stem}.*.tmp{path.suffix}"))
