"""Build manifests from folders: find the files, probe each one by decoding it, attach labels.

Labels come from sub-folder names (UCF-101 layout, ``ROOT/ClassName/clip.avi``) or from a label
file: a Kinetics-style CSV with ``youtube_id`` and ``label`` columns (files named
``<youtube_id>_<start>_<end>.mp4``, optional ``split`` column), a CSV with ``path`` and ``label``
columns, or header-less ``path,label`` / ``path label`` lines. Files that do not decode, or that a
label file does not list, are skipped with a reason.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videogen.data.failures import DataError
from videogen.data.manifest import Kind, Manifest, make_manifest, read_manifest, write_classes, write_manifest
from videogen.errors import UserError
from videogen.parallel import map_unordered
from videogen.video_io import VideoDecodeError, VideoInfo, probe_video, read_image

logger = logging.getLogger("videogen.data")

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_KINETICS_NAME = re.compile(r"^(.*)_\d{6}_\d{6}$")


# ----------------------------------------------------------------------------- finding files and labels


def scan_folder(folder: str | Path, extensions: tuple[str, ...]) -> list[Path]:
    """Files under ``folder`` (recursively, hidden ones left out) with one of ``extensions``, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"folder '{folder}' does not exist or is not a folder")
    files = [
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in extensions
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    return sorted(files)


def subfolder_labels(folder: Path, files: list[Path]) -> list[str] | None:
    """The first sub-folder name of each file, if every file sits in a sub-folder; else None."""
    parts = [f.relative_to(folder).parts for f in files]
    if not parts or any(len(p) < 2 for p in parts):
        return None
    return [p[0] for p in parts]


@dataclass
class LabelTable:
    """Labels read from a label file: key -> (class name, split or None)."""

    key: str  # "youtube_id" or "path"
    entries: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    def lookup(self, relative: str) -> tuple[str, str | None] | None:
        path = Path(relative)
        if self.key == "youtube_id":
            match = _KINETICS_NAME.match(path.stem)
            return self.entries.get(match.group(1) if match else path.stem)
        for key in (relative, path.name, path.stem):
            if key in self.entries:
                return self.entries[key]
        return None


def read_label_file(path: str | Path) -> LabelTable:
    """Parse a label file (see the module docstring for the formats)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"label file '{path}' does not exist")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise UserError(
            f"label file '{path}' is not text; give a Kinetics CSV (youtube_id,label[,split]) or 'path,label' lines"
        ) from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise UserError(f"label file '{path}' is empty")
    header = [h.strip().lower() for h in next(csv.reader([lines[0]]))]
    if "label" in header and ("youtube_id" in header or "path" in header):
        key = "youtube_id" if "youtube_id" in header else "path"
        table = LabelTable(key)
        for fields in csv.reader(lines[1:]):
            row = dict(zip(header, (f.strip() for f in fields)))
            if row.get(key) and row.get("label"):
                table.entries[row[key]] = (row["label"], row.get("split") or None)
        return table
    table = LabelTable("path")
    for line_no, line in enumerate(lines, 1):
        fields = next(csv.reader([line])) if "," in line else line.split()
        if len(fields) < 2:
            raise UserError(f"label file '{path}' line {line_no} must be 'path,label' (got {line!r})")
        table.entries[fields[0].strip()] = (fields[1].strip(), None)
    return table


# ----------------------------------------------------------------------------- probing


def _probe_one(task: tuple[int, str, str, str]) -> tuple[int, VideoInfo | None, str | None]:
    index, path, kind, backend = task
    try:
        if kind == "image":
            image = read_image(path)
            return index, VideoInfo(1, 0.0, image.shape[0], image.shape[1]), None
        return index, probe_video(path, backend=backend, verify=True), None
    except VideoDecodeError as e:
        return index, None, str(e)


def probe_files(
    files: list[Path], kind: Kind = "video", backend: str = "decord", workers: int = 2, desc: str = "probing"
) -> list[VideoInfo | str]:
    """Decode every file once (in ``workers`` processes); per file its info or why it failed."""
    tasks = [(i, str(f), kind, backend) for i, f in enumerate(files)]
    results: list[Any] = [None] * len(files)
    for index, info, reason in map_unordered(_probe_one, tasks, workers, desc=desc, leave=False):
        results[index] = info if info is not None else reason
    return results


# ----------------------------------------------------------------------------- building


@dataclass
class BuildReport:
    """What :func:`build_manifest` did."""

    out: Path
    num_written: int
    skipped: list[tuple[str, str]]  # (path, reason)
    classes: list[str] | None
    skipped_file: Path | None


def _collect_rows(
    folder: Path,
    relative_to: Path,
    kind: Kind,
    labels: str | Path | None,
    workers: int,
    backend: str,
    split: str | None,
    probe: bool = True,
) -> tuple[list[dict], list[tuple[str, str]], list[str]]:
    """Rows (label as class *name*), skipped (path, reason) and the class names found.

    Videos are always probed; images only with ``probe`` (else height and width are 0 and a bad
    image is found when it is loaded).
    """
    files = scan_folder(folder, VIDEO_EXTENSIONS if kind == "video" else IMAGE_EXTENSIONS)
    if not files:
        kinds = ", ".join(VIDEO_EXTENSIONS if kind == "video" else IMAGE_EXTENSIONS)
        raise UserError(f"folder '{folder}' holds no {kind} files ({kinds})")
    table = read_label_file(labels) if labels is not None else None
    names = None if table is not None else subfolder_labels(folder, files)
    if kind == "image" and not probe:
        infos: list[VideoInfo | str] = [VideoInfo(1, 0.0, 0, 0)] * len(files)
    else:
        infos = probe_files(files, kind, backend, workers, desc=f"probing {folder.name or folder}")
    rows, skipped = [], []
    for i, (file, info) in enumerate(zip(files, infos)):
        if isinstance(info, str):
            skipped.append((str(file), info))
            continue
        row: dict[str, Any] = {"path": _relative(file, relative_to)}
        if kind == "video":
            row.update(num_frames=info.num_frames, fps=round(info.fps, 6))
        row.update(height=info.height, width=info.width)
        row_split = split
        if table is not None:
            found = table.lookup(file.relative_to(folder).as_posix())
            if found is None:
                skipped.append((str(file), f"not listed in label file '{labels}'"))
                continue
            row["label"], row_split = found[0], found[1] or split
        elif names is not None:
            row["label"] = names[i]
        if row_split:
            row["split"] = row_split
        rows.append(row)
    class_names = sorted({r["label"] for r in rows if "label" in r})
    return rows, skipped, class_names


def _relative(file: Path, root: Path) -> str:
    return Path(os.path.relpath(file.resolve(), root.resolve())).as_posix()


def build_manifest(
    folder: str | Path,
    out: str | Path,
    labels: str | Path | None = None,
    workers: int = 2,
    backend: str = "decord",
    kind: Kind = "video",
    split: str | None = None,
) -> BuildReport:
    """Probe every video (or image) under ``folder`` and write a manifest to ``out`` (JSONL).

    Paths are written relative to ``out``'s folder. With labels, ``classes.json`` is written (merged)
    next to ``out`` and each row's ``label`` is the class index. Skipped files and their reasons go
    to ``<out stem>.skipped.jsonl``.
    """
    folder, out = Path(folder), Path(out)
    if out.suffix != ".jsonl":
        raise UserError(f"manifest file '{out}' must end in .jsonl")
    rows, skipped, class_names = _collect_rows(folder, out.parent, kind, labels, workers, backend, split)
    classes = None
    if class_names:
        classes = write_classes(out.parent, class_names)
        index = {name: i for i, name in enumerate(classes)}
        for row in rows:
            if "label" in row:
                row["label"] = index[row["label"]]
    num_written = write_manifest(out, rows)
    skipped_file = out.with_suffix(".skipped.jsonl")
    if skipped:
        write_manifest(skipped_file, ({"path": p, "reason": r} for p, r in skipped))
    elif skipped_file.exists():
        skipped_file.unlink()
    return BuildReport(out, num_written, skipped, classes, skipped_file if skipped else None)


def manifest_from_folder(
    folder: str | Path, kind: Kind = "video", workers: int = 2, backend: str = "decord"
) -> Manifest:
    """An in-memory manifest of a folder; labels from sub-folders.

    Videos are probed now (skipped files are logged); images are only listed.
    """
    folder = Path(folder)
    rows, skipped, class_names = _collect_rows(
        folder, folder, kind, None, workers, backend, None, probe=False
    )
    for path, reason in skipped:
        logger.warning("skipping %s: %s", path, reason)
    index = {name: i for i, name in enumerate(class_names)}
    return make_manifest(
        [str(folder.resolve() / r["path"]) for r in rows],
        [r.get("num_frames", 1) for r in rows],
        [r.get("fps", 0.0) for r in rows],
        [r["height"] for r in rows],
        [r["width"] for r in rows],
        [index[r["label"]] if "label" in r else -1 for r in rows],
        source=str(folder),
        classes=class_names or None,
    )


def load_manifest(
    source: str | Path, kind: Kind = "video", workers: int = 2, backend: str = "decord"
) -> Manifest:
    """A manifest file (``.jsonl``) or a folder (probed now, see :func:`manifest_from_folder`)."""
    source = Path(source)
    if source.is_dir():
        logger.info(
            "probing folder %s (build a manifest once with `./run.sh data manifest` to skip this)", source
        )
        return manifest_from_folder(source, kind, workers, backend)
    if source.suffix != ".jsonl":
        raise DataError(f"data source '{source}' must be a .jsonl manifest or a folder")
    return read_manifest(source, kind)


def print_report(report: BuildReport, echo: Callable[[str], Any] = print, max_listed: int = 50) -> None:
    """A summary: rows written, classes, every skipped file with its reason (up to ``max_listed``)."""
    echo(f"wrote {report.num_written} rows to {report.out}")
    if report.classes:
        echo(f"{len(report.classes)} classes -> {report.out.parent / 'classes.json'}")
    if report.skipped:
        echo(f"skipped {len(report.skipped)} files (all listed in {report.skipped_file}):")
        for path, reason in report.skipped[:max_listed]:
            echo(f"  {path}: {reason}")
        if len(report.skipped) > max_listed:
            echo(f"  ... and {len(report.skipped) - max_listed} more")
