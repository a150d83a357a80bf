"""``data split``: official lists and the seeded split by group (UCF-101's ``_gXX_``), with the CLI's errors."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from videogen import cli
from videogen.data.manifest import read_manifest, write_classes, write_manifest
from videogen.data.split import split_manifest
from videogen.errors import UserError


def ucf_manifest(folder: Path, groups: int = 10, clips: int = 3) -> Path:
    """A manifest of UCF-101-style names: 2 classes x ``groups`` groups x ``clips`` clips (no real files)."""
    rows = [
        {
            "path": f"{c}/v_{c}_g{g:02d}_c{k:02d}.avi",
            "num_frames": 40,
            "fps": 25.0,
            "height": 240,
            "width": 320,
            "label": c,
        }
        for c in ("Biking", "Diving")
        for g in range(1, groups + 1)
        for k in range(1, clips + 1)
    ]
    write_classes(folder, ["Biking", "Diving"])
    write_manifest(folder / "all.jsonl", rows)
    return folder / "all.jsonl"


def group_of(path: str) -> str:
    return re.search(r"_g(\d+)_", Path(path).name).group(1)


def test_seeded_split_keeps_groups_together_and_is_reproducible(tmp_path):
    manifest = ucf_manifest(tmp_path)
    report = split_manifest(manifest, test_fraction=0.2, seed=3)
    train, test = read_manifest(report.files["train"]), read_manifest(report.files["test"])
    assert len(train) + len(test) == 60 and report.counts == {"train": len(train), "test": len(test)}
    assert len(test) == 12  # 2 of 10 groups (6 rows each) reach 20%
    train_groups = {group_of(p) for p in train.paths}
    test_groups = {group_of(p) for p in test.paths}
    assert not train_groups & test_groups and report.groups == {"train": 8, "test": 2}
    assert train.classes == ("Biking", "Diving") and set(test.labels.tolist()) == {0, 1}
    first = report.files["test"].read_text()
    split_manifest(manifest, test_fraction=0.2, seed=3)
    assert report.files["test"].read_text() == first  # a function of the rows and the seed
    chosen = set()
    for seed in range(4, 10):
        split_manifest(manifest, test_fraction=0.2, seed=seed)
        chosen.add(frozenset(group_of(p) for p in read_manifest(report.files["test"]).paths))
    assert len(chosen) > 1  # the seed picks the groups


def test_seeded_split_without_groups_splits_files(tmp_path):
    rows = [
        {"path": f"clip{i}.mp4", "num_frames": 9, "fps": 8.0, "height": 32, "width": 32} for i in range(10)
    ]
    write_manifest(tmp_path / "all.jsonl", rows)
    report = split_manifest(tmp_path / "all.jsonl", test_fraction=0.3)
    assert report.counts == {"train": 7, "test": 3} and report.groups == {"train": 7, "test": 3}


def test_official_lists_match_by_path_suffix(tmp_path):
    manifest = ucf_manifest(tmp_path, groups=8, clips=1)
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    test_names = [f"{c}/v_{c}_g{g:02d}_c01.avi" for c in ("Biking", "Diving") for g in range(1, 3)]
    (lists / "testlist01.txt").write_text("\n".join(test_names + ["Biking/v_Biking_g03_c09.avi"]) + "\n")
    report = split_manifest(manifest, test_list=lists / "testlist01.txt")
    test = read_manifest(report.files["test"])
    assert sorted(Path(p).relative_to(tmp_path).as_posix() for p in test.paths) == sorted(test_names)
    assert report.counts == {"train": 12, "test": 4}
    assert report.not_found == ["Biking/v_Biking_g03_c09.avi"]  # e.g. skipped as corrupt when probed

    train_names = [f"Diving/v_Diving_g{g:02d}_c01.avi 2" for g in range(3, 9)]  # with class indices
    (lists / "trainlist01.txt").write_text("\n".join(train_names) + "\n")
    report = split_manifest(
        manifest, test_list=lists / "testlist01.txt", train_list=lists / "trainlist01.txt"
    )
    assert report.counts == {"train": 6, "test": 4} and report.left_out == 6


def test_split_into_another_folder_rebases_paths_and_copies_classes(tmp_path):
    manifest = ucf_manifest(tmp_path / "data", groups=5, clips=1)
    report = split_manifest(manifest, out_dir=tmp_path / "elsewhere", test_fraction=0.4)
    moved = read_manifest(report.files["train"])
    assert all(Path(os.path.normpath(p)).parent.parent == tmp_path / "data" for p in moved.paths)
    assert json.loads((tmp_path / "elsewhere" / "classes.json").read_text()) == ["Biking", "Diving"]
    assert moved.classes == ("Biking", "Diving")


def test_bad_input_is_refused(tmp_path):
    manifest = ucf_manifest(tmp_path, groups=1, clips=2)
    with pytest.raises(UserError, match="would be empty"):
        split_manifest(manifest, test_fraction=0.5)  # one group: it cannot be on both sides
    with pytest.raises(UserError, match="between 0 and 1"):
        split_manifest(manifest, test_fraction=1.5)
    with pytest.raises(UserError, match="not a regular expression"):
        split_manifest(manifest, group_pattern="(")
    with pytest.raises(UserError, match="does not exist"):
        split_manifest(manifest, test_list=tmp_path / "nope.txt")
    with pytest.raises(UserError, match="does not exist"):
        split_manifest(tmp_path / "missing.jsonl")


def test_cli_split_and_its_errors(tmp_path, capsys):
    manifest = ucf_manifest(tmp_path)
    assert cli.main(["data", "split", str(manifest), "--test-fraction", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "test: 18 rows in 3 groups" in out and (tmp_path / "train.jsonl").is_file()
    assert cli.main(["data", "split", str(manifest), "--test-list", "x.txt", "--test-fraction", "0.3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "do not apply" in err[0]
    assert cli.main(["data", "split", str(tmp_path / "none.jsonl")]) == 2
