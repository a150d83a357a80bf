"""Manifests: building from folders (verified counts, labels, skipped files) and reading them back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from videogen.data.failures import DataError
from videogen.data.manifest import read_classes, read_manifest
from videogen.data.manifest_builder import build_manifest, load_manifest, print_report
from videogen.errors import UserError


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("workers", [0, 2])
def test_build_manifest_from_subfolders_skips_bad_files(clip_folder, tmp_path, workers):
    out = tmp_path / "lists" / "train.jsonl"
    report = build_manifest(clip_folder, out, workers=workers)
    rows = _rows(out)
    assert report.num_written == len(rows) == 5
    assert [Path(r["path"]).name for r in rows] == [
        "cats_0.mp4",
        "cats_1.mp4",
        "cats_2.mp4",
        "dogs_0.mp4",
        "dogs_1.mp4",
    ]
    assert [r["num_frames"] for r in rows] == [24, 28, 32, 24, 28]  # verified by decoding
    assert all(r["fps"] == 25.0 and (r["height"], r["width"]) == (64, 96) for r in rows)
    assert [r["label"] for r in rows] == [0, 0, 0, 1, 1]
    assert read_classes(out.parent) == ["cats", "dogs"]
    assert not Path(rows[0]["path"]).is_absolute()  # relative to the manifest's folder
    assert len(report.skipped) == 1 and report.skipped[0][0].endswith("broken.mp4")
    assert "cannot be opened" in report.skipped[0][1]
    skipped = _rows(out.with_suffix(".skipped.jsonl"))
    assert skipped == [{"path": report.skipped[0][0], "reason": report.skipped[0][1]}]
    lines = []
    print_report(report, echo=lines.append)
    assert any("broken.mp4" in line and "cannot be opened" in line for line in lines)

    manifest = read_manifest(out)
    assert len(manifest) == 5 and manifest.classes == ("cats", "dogs") and manifest.num_classes == 2
    assert all(Path(p).is_file() for p in manifest.paths)  # resolved against the manifest's folder
    np.testing.assert_array_equal(manifest.num_frames, [24, 28, 32, 24, 28])
    assert manifest.paths.dtype.kind == "U" and manifest.labels.dtype == np.int64  # columns, not dicts


def test_truncated_file_gets_its_decodable_count(tmp_path, video_files):
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "t.mp4").write_bytes(video_files["truncated"].read_bytes())
    (folder / "g.mp4").write_bytes(video_files["good"].read_bytes())
    report = build_manifest(folder, tmp_path / "m.jsonl", workers=0, backend="pyav")
    counts = {Path(r["path"]).name: r["num_frames"] for r in _rows(report.out)}
    assert counts["g.mp4"] == 40 and 0 < counts["t.mp4"] < 40  # the index claims 40; decoding says fewer


def test_kinetics_label_file(tmp_path, write_clip):
    folder = tmp_path / "k400"
    folder.mkdir()
    for name in ("abc_DEF-1_000010_000020", "x_y_z_000000_000010", "unlisted_000001_000011"):
        write_clip(folder / f"{name}.mp4", num_frames=9)
    labels = tmp_path / "train.csv"
    labels.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "riding a bike,abc_DEF-1,10,20,train\n"
        "abseiling,x_y_z,0,10,val\n"
    )
    out = tmp_path / "k.jsonl"
    report = build_manifest(folder, out, labels=labels, workers=0)
    rows = {Path(r["path"]).stem: r for r in _rows(out)}
    assert read_classes(tmp_path) == ["abseiling", "riding a bike"]
    assert (
        rows["abc_DEF-1_000010_000020"]["label"] == 1 and rows["abc_DEF-1_000010_000020"]["split"] == "train"
    )
    assert rows["x_y_z_000000_000010"]["label"] == 0 and rows["x_y_z_000000_000010"]["split"] == "val"
    assert [Path(p).name for p, _ in report.skipped] == ["unlisted_000001_000011.mp4"]
    assert "not listed" in report.skipped[0][1]
    manifest = read_manifest(out)
    assert len(manifest.for_split("val")) == 1 and manifest.for_split("val").labels.tolist() == [0]
    with pytest.raises(DataError, match="no rows with split 'test'"):
        manifest.for_split("test")


def test_path_label_file_and_class_merging(tmp_path, write_clip):
    folder = tmp_path / "v"
    folder.mkdir()
    for name in ("a", "b"):
        write_clip(folder / f"{name}.mp4", num_frames=5)
    (tmp_path / "labels.txt").write_text("a.mp4 zebra\nb.mp4,ant\n")
    (tmp_path / "classes.json").write_text(
        json.dumps(["zebra"])
    )  # an earlier manifest's classes keep their index
    build_manifest(folder, tmp_path / "m.jsonl", labels=tmp_path / "labels.txt", workers=0)
    assert read_classes(tmp_path) == ["zebra", "ant"]
    assert [r["label"] for r in _rows(tmp_path / "m.jsonl")] == [0, 1]


def test_bad_manifests_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"path": "a.mp4", "num_frames": 5, "fps": 1, "height": 8, "width": 8}\n{"path": "b.mp4"}\n'
    )
    with pytest.raises(DataError, match=r"bad.jsonl' line 2 lacks num_frames, fps, height, width"):
        read_manifest(bad)
    bad.write_text("not json\n")
    with pytest.raises(DataError, match="line 1 is not valid JSON"):
        read_manifest(bad)
    with pytest.raises(DataError, match="does not exist; build one"):
        read_manifest(tmp_path / "missing.jsonl")
    with pytest.raises(UserError, match="does not exist or is not a folder"):
        build_manifest(tmp_path / "nope", tmp_path / "x.jsonl")
    with pytest.raises(UserError, match="must end in .jsonl"):
        build_manifest(tmp_path, tmp_path / "x.json")
    with pytest.raises(DataError, match=".jsonl manifest or a folder"):
        load_manifest(tmp_path / "x.csv")
    images = tmp_path / "images.jsonl"
    images.write_text('{"path": "a.png", "label": "cat"}\n')
    with pytest.raises(DataError, match="label 'cat' is a name"):
        read_manifest(images, kind="image")
