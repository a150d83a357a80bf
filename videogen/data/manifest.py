"""Manifests: one JSON line per clip, read into numpy columns.

A line holds ``path`` (relative to the manifest's folder, or absolute), ``num_frames`` (verified by
decoding), ``fps``, ``height``, ``width`` and optionally ``label`` (int class index, or a class
name listed in ``classes.json``) and ``split`` (e.g. ``"train"``)::

    {"path": "train/00000.mp4", "num_frames": 33, "fps": 8.0, "height": 64, "width": 64, "label": 3}

Image manifests need only ``path`` (and optionally ``label``, ``split``). Class names live next to
the manifest in ``classes.json``, a JSON list: label ``i`` is ``classes[i]``.

Rows are kept as numpy columns, never as a list of dicts: forked DataLoader workers touch the
reference counts of Python objects on access and so copy a list of dicts page by page.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from videogen import atomic
from videogen.data.failures import DataError

CLASSES_FILE = "classes.json"
VIDEO_KEYS = ("path", "num_frames", "fps", "height", "width")
Kind = Literal["video", "image"]


@dataclass(frozen=True)
class Manifest:
    """Columns of ``N`` clips (or images). Paths are absolute; ``labels`` is -1 where unknown."""

    paths: np.ndarray  # str (N,)
    num_frames: np.ndarray  # int64 (N,), decodable frames (1 for images)
    fps: np.ndarray  # float64 (N,), frames per second (0 if unknown)
    heights: np.ndarray  # int64 (N,), pixels (0 if unknown)
    widths: np.ndarray  # int64 (N,)
    labels: np.ndarray  # int64 (N,), class index or -1
    splits: np.ndarray  # str (N,), "" where not given
    source: str = ""  # where the rows came from, for messages
    classes: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def select(self, keep: np.ndarray) -> Manifest:
        """The rows where bool ``keep`` is True (or the rows at integer ``keep``)."""
        columns = {
            f.name: getattr(self, f.name)[keep]
            for f in dataclasses.fields(self)
            if f.name not in ("source", "classes")
        }
        return Manifest(**columns, source=self.source, classes=self.classes)

    def for_split(self, split: str) -> Manifest:
        """Rows of ``split`` when the manifest names splits; all rows when it names none."""
        if not np.any(self.splits != ""):
            return self
        keep = self.splits == split
        if not keep.any():
            present = ", ".join(sorted(set(self.splits.tolist()) - {""}))
            raise DataError(f"manifest '{self.source}' has no rows with split '{split}' (it has: {present})")
        return self.select(keep)

    @property
    def num_classes(self) -> int:
        if self.classes is not None:
            return len(self.classes)
        return int(self.labels.max()) + 1 if len(self.labels) else 0


def make_manifest(
    paths: list[str],
    num_frames: list[int] | None = None,
    fps: list[float] | None = None,
    heights: list[int] | None = None,
    widths: list[int] | None = None,
    labels: list[int] | None = None,
    splits: list[str] | None = None,
    source: str = "",
    classes: list[str] | tuple[str, ...] | None = None,
) -> Manifest:
    """Columns from lists (missing columns get their 'unknown' value)."""
    n = len(paths)

    def column(values, default, dtype):
        return np.asarray(values if values is not None else [default] * n, dtype=dtype).reshape(n)

    return Manifest(
        paths=np.asarray([str(p) for p in paths], dtype=str).reshape(n),
        num_frames=column(num_frames, 1, np.int64),
        fps=column(fps, 0.0, np.float64),
        heights=column(heights, 0, np.int64),
        widths=column(widths, 0, np.int64),
        labels=column(labels, -1, np.int64),
        splits=np.asarray(splits if splits is not None else [""] * n, dtype=str).reshape(n),
        source=source,
        classes=tuple(classes) if classes is not None else None,
    )


# ----------------------------------------------------------------------------- files


def read_classes(folder: str | Path) -> list[str] | None:
    """Class names from ``folder/classes.json`` (index = label), or None if there is none."""
    path = Path(folder) / CLASSES_FILE
    if not path.is_file():
        return None
    try:
        names = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"'{path}' is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError(f"'{path}' must hold a JSON list of class names")
    return names


def write_classes(folder: str | Path, names: Iterable[str]) -> list[str]:
    """Write ``folder/classes.json``; names already listed there keep their index, new ones are appended.

    Returns the full list, so label indices stay stable when train and val manifests share a folder.
    """
    existing = read_classes(folder) or []
    merged = existing + sorted(set(names) - set(existing), key=_natural_key)
    atomic.write_json(Path(folder) / CLASSES_FILE, merged)
    return merged


def _natural_key(name: str) -> tuple:
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def write_manifest(path: str | Path, rows: Iterable[dict]) -> int:
    """Write rows (dicts with the manifest keys) as JSONL, atomically; returns the number written."""
    count = 0
    with atomic.replacing(path) as tmp, open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
            count += 1
    return count


def read_manifest(path: str | Path, kind: Kind = "video") -> Manifest:
    """Load a JSONL manifest into columns; relative paths are resolved against its folder.

    Raises :class:`DataError` naming the file and line for a missing file, bad JSON or a missing key.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"manifest '{path}' does not exist; build one with `./run.sh data manifest FOLDER --out {path}` "
            "or make sample data with `./run.sh data sample`"
        )
    root = path.resolve().parent
    required = VIDEO_KEYS if kind == "video" else ("path",)
    classes = read_classes(root)
    class_index = {name: i for i, name in enumerate(classes or [])}
    columns: dict[str, list] = {
        k: [] for k in ("path", "num_frames", "fps", "height", "width", "label", "split")
    }
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"manifest '{path}' line {line_no} is not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(
                    f"manifest '{path}' line {line_no} is {_shown(row)}, not a JSON object; each line is "
                    '{"path": ..., "num_frames": ...} (rebuild it with `./run.sh data manifest`)'
                )
            missing = [k for k in required if k not in row]
            if missing:
                raise DataError(
                    f"manifest '{path}' line {line_no} lacks {', '.join(missing)}; "
                    f"a {kind} manifest needs {', '.join(required)} (rebuild it with `./run.sh data manifest`)"
                )
            where = (path, line_no)
            file = Path(_field(row, "path", str, None, where))
            columns["path"].append(str(file if file.is_absolute() else root / file))
            columns["num_frames"].append(_field(row, "num_frames", int, 1, where))
            columns["fps"].append(_field(row, "fps", float, 0.0, where))
            columns["height"].append(_field(row, "height", int, 0, where))
            columns["width"].append(_field(row, "width", int, 0, where))
            columns["label"].append(_label_index(row.get("label"), class_index, path, line_no))
            columns["split"].append(str(row.get("split") or ""))
    return make_manifest(
        columns["path"],
        columns["num_frames"],
        columns["fps"],
        columns["height"],
        columns["width"],
        columns["label"],
        columns["split"],
        source=str(path),
        classes=classes,
    )


def _shown(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


_KINDS = {str: "a string", int: "a whole number", float: "a number"}


def _field(row: dict, key: str, kind: type, default, where: tuple[Path, int]):
    """``row[key]`` checked to be of ``kind`` (``default`` when absent; a string must not be empty).

    A value of another type is one :class:`DataError` naming the file, the line, the key and the value:
    ``"num_frames": "abc"`` or ``"path": null`` would otherwise fail later, far from the manifest.
    """
    value = row.get(key, default)
    if kind in (int, float) and isinstance(value, str):  # "33" and "25.0" were always read as numbers
        try:
            value = float(value.strip())
        except ValueError:
            pass
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        ok, value = True, int(value)
    if kind is str and ok and not value:
        ok = False
    if kind is float and ok and not math.isfinite(value):
        ok = False
    if not ok:
        path, line_no = where
        raise DataError(
            f"manifest '{path}' line {line_no}: \"{key}\" is {_shown(value)}, not {_KINDS[kind]}"
            f"{' (non-empty)' if kind is str else ''}; fix that line or rebuild the manifest with "
            "`./run.sh data manifest`"
        )
    return value


def _label_index(label, class_index: dict[str, int], path: Path, line_no: int) -> int:
    if label is None:
        return -1
    if isinstance(label, bool) or not isinstance(label, (int, str)):
        raise DataError(f"manifest '{path}' line {line_no}: label {label!r} must be an int or a class name")
    if isinstance(label, int):
        return label
    if label not in class_index:
        raise DataError(
            f"manifest '{path}' line {line_no}: label {label!r} is a name but "
            f"'{path.parent / CLASSES_FILE}' does not list it"
        )
    return class_index[label]
