"""Split one manifest into ``train.jsonl`` and ``test.jsonl``: by a dataset's official lists, or seeded by group.

Official lists (UCF-101's ``trainlist01.txt`` / ``testlist01.txt``): one file per line, its path
relative to the dataset root, optionally followed by a class index (``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1``).
A manifest row belongs to a list when its path ends with the listed path. With only a test list every
other row trains; with both, rows in neither list are left out and counted.

Seeded split: rows are grouped by ``group_pattern`` (a regular expression searched in the file name;
its first group, or the whole match, names the group; UCF-101's ``_g08_`` by default) and whole groups
go to the test set until it holds ``test_fraction`` of the rows, so clips cut from one recording never
sit on both sides. A file name the pattern does not match is a group of its own. The result depends
only on the rows and the seed.

Rows are copied unchanged (paths rewritten when the output folder differs from the manifest's);
``classes.json`` goes with them, so labels keep their meaning.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from videogen.data.manifest import read_classes, write_classes, write_manifest
from videogen.errors import UserError

UCF_GROUP_PATTERN = r"_g(\d+)_"
SPLIT_FILES = {"train": "train.jsonl", "test": "test.jsonl"}


@dataclass
class SplitReport:
    """What :func:`split_manifest` wrote."""

    files: dict[str, Path]  # split -> manifest written
    counts: dict[str, int]  # split -> rows
    groups: dict[str, int]  # split -> distinct groups (seeded split) or 0
    left_out: int = 0  # rows in neither official list
    not_found: list[str] = field(default_factory=list)  # listed files the manifest lacks (skipped or missing)
    classes_without_test: list[str] = field(default_factory=list)


def split_manifest(
    manifest: str | Path,
    out_dir: str | Path | None = None,
    test_list: str | Path | None = None,
    train_list: str | Path | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    group_pattern: str = UCF_GROUP_PATTERN,
) -> SplitReport:
    """Write ``out_dir/train.jsonl`` and ``out_dir/test.jsonl`` (``out_dir``: the manifest's folder)."""
    manifest = Path(manifest)
    rows = _read_rows(manifest)
    out_dir = Path(out_dir) if out_dir is not None else manifest.parent
    if train_list is not None and test_list is None:
        raise UserError(
            "--train-list needs --test-list (a test list alone is enough: every other file trains)"
        )
    not_found: list[str] = []
    left_out = 0
    groups = {"train": 0, "test": 0}
    if test_list is not None:
        paths = [PurePosixPath(row["path"].replace(os.sep, "/")).parts for row in rows]
        in_test, missing_test = _match_list(_read_list(test_list), paths)
        not_found += missing_test
        if train_list is not None:
            in_train, missing_train = _match_list(_read_list(train_list), paths)
            not_found += missing_train
            both = in_train & in_test
            if both.any():
                raise UserError(
                    f"'{rows[int(np.flatnonzero(both)[0])]['path']}' is in both '{train_list}' and '{test_list}'"
                )
            left_out = int((~(in_train | in_test)).sum())
        else:
            in_train = ~in_test
    else:
        if not 0.0 < test_fraction < 1.0:
            raise UserError(f"--test-fraction {test_fraction} must be between 0 and 1")
        try:
            pattern = re.compile(group_pattern)
        except re.error as e:
            raise UserError(f"--group-pattern {group_pattern!r} is not a regular expression ({e})") from None
        keys = [_group_key(pattern, row["path"]) for row in rows]
        in_test = _seeded_test_groups(keys, test_fraction, seed)
        in_train = ~in_test
        groups = {
            "train": len({k for k, t in zip(keys, in_test) if not t}),
            "test": len({k for k, t in zip(keys, in_test) if t}),
        }
    chosen = {"train": in_train, "test": in_test}
    for split, keep in chosen.items():
        if not keep.any():
            raise UserError(
                f"the {split} split of '{manifest}' would be empty; check the lists or the fraction"
            )

    classes = read_classes(manifest.parent)
    files = {}
    for split, keep in chosen.items():
        picked = [_moved(row, manifest.parent, out_dir) for row, k in zip(rows, keep) if k]
        files[split] = out_dir / SPLIT_FILES[split]
        write_manifest(files[split], picked)
    if classes is not None and out_dir.resolve() != manifest.parent.resolve():
        write_classes(out_dir, classes)
    labels = {"train": set(), "test": set()}
    for split, keep in chosen.items():
        labels[split] = {
            str(row["label"]) for row, k in zip(rows, keep) if k and row.get("label") is not None
        }
    return SplitReport(
        files=files,
        counts={split: int(keep.sum()) for split, keep in chosen.items()},
        groups=groups,
        left_out=left_out,
        not_found=not_found,
        classes_without_test=sorted(labels["train"] - labels["test"]),
    )


def print_report(report: SplitReport) -> None:
    for split, path in report.files.items():
        groups = f" in {report.groups[split]} groups" if report.groups[split] else ""
        print(f"{split}: {report.counts[split]} rows{groups} -> {path}")
    if report.left_out:
        print(f"left out: {report.left_out} rows in neither list")
    if report.not_found:
        shown = ", ".join(report.not_found[:3]) + (" ..." if len(report.not_found) > 3 else "")
        print(
            f"listed but not in the manifest (skipped when probed, or missing): {len(report.not_found)}: {shown}"
        )
    if report.classes_without_test:
        print(f"classes with no test rows: {', '.join(report.classes_without_test)}")


# ----------------------------------------------------------------------------- pieces


def _read_rows(manifest: Path) -> list[dict]:
    if not manifest.is_file():
        raise UserError(
            f"manifest '{manifest}' does not exist; build one with `./run.sh data manifest FOLDER`"
        )
    rows = []
    for line_no, line in enumerate(manifest.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"manifest '{manifest}' line {line_no} is not valid JSON ({e.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("path"), str):
            raise UserError(f"manifest '{manifest}' line {line_no} has no \"path\"")
        rows.append(row)
    if not rows:
        raise UserError(f"manifest '{manifest}' has no rows")
    return rows


def _read_list(path: str | Path) -> list[tuple[str, ...]]:
    """An official list: the first field of each line, as path parts."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"split list '{path}' does not exist")
    entries = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not entries:
        raise UserError(f"split list '{path}' lists no files")
    return [PurePosixPath(e.replace("\\", "/")).parts for e in entries]


def _match_list(entries: list[tuple[str, ...]], paths: list[tuple[str, ...]]) -> tuple[np.ndarray, list[str]]:
    """Rows whose path ends with a listed path, and the listed paths no row has."""
    by_name: dict[str, list[int]] = {}
    for i, parts in enumerate(paths):
        by_name.setdefault(parts[-1], []).append(i)
    hit = np.zeros(len(paths), dtype=bool)
    missing = []
    for entry in entries:
        found = [i for i in by_name.get(entry[-1], []) if paths[i][-len(entry) :] == entry]
        if found:
            hit[found] = True
        else:
            missing.append("/".join(entry))
    return hit, missing


def _group_key(pattern: re.Pattern, path: str) -> str:
    name = PurePosixPath(path.replace(os.sep, "/")).name
    match = pattern.search(name)
    if match is None:
        return "file:" + path
    return "group:" + (match.group(1) if match.groups() else match.group(0))


def _seeded_test_groups(keys: list[str], test_fraction: float, seed: int) -> np.ndarray:
    """Whole groups, in a seeded order, into the test set until it holds ``test_fraction`` of the rows."""
    names = sorted(set(keys))
    sizes = {name: 0 for name in names}
    for key in keys:
        sizes[key] += 1
    order = np.random.default_rng(seed).permutation(len(names))
    target = test_fraction * len(keys)
    test, count = set(), 0
    for i in order:
        if count >= target or len(test) == len(names) - 1:  # never every group: training needs one
            break
        test.add(names[i])
        count += sizes[names[i]]
    return np.array([key in test for key in keys], dtype=bool)


def _moved(row: dict, src: Path, dst: Path) -> dict:
    """The row with a relative path re-based from folder ``src`` to folder ``dst``."""
    path = Path(row["path"])
    if path.is_absolute() or src.resolve() == dst.resolve():
        return row
    return {**row, "path": os.path.relpath(src.resolve() / path, dst.resolve())}
