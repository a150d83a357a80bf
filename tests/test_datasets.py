"""Datasets, index math, transforms, failure counting, samplers and the loader, on real mp4 files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from videogen.data.clip_index import (
    choose_window,
    fits,
    source_step,
    window_indices,
    window_span,
)
from videogen.data.config import DataConfig
from videogen.data.failures import DataError, FailureMonitor
from videogen.data.image_dataset import ImageDataset
from videogen.data.loader import build_loader
from videogen.data.manifest import make_manifest
from videogen.data.mixture import JointBatchSampler
from videogen.data.samplers import ResumableSampler
from videogen.data.transforms import ClipTransform, crop_offsets, resize_short_side
from videogen.data.video_dataset import VideoClipDataset
from videogen.frame_rule import fits_frame_rule, frames_at_most, latent_frames
from videogen.video_io import write_image

# ----------------------------------------------------------------------------- index math


@pytest.mark.parametrize(
    ("num_frames", "factor", "valid"),
    [
        (1, 4, True),
        (5, 4, True),
        (9, 4, True),
        (17, 4, True),
        (33, 4, True),
        (0, 4, False),
        (2, 4, False),
        (16, 4, False),
        (7, 2, True),
        (8, 2, False),
        (6, 1, True),
        (0, 1, False),
    ],
)
def test_frame_rule(num_frames, factor, valid):
    assert fits_frame_rule(num_frames, factor) is valid
    below = frames_at_most(max(num_frames, 1), factor)
    assert fits_frame_rule(below, factor) and below <= max(num_frames, 1) < below + factor
    if valid:
        assert latent_frames(num_frames, factor) == 1 + (num_frames - 1) // factor


@pytest.mark.parametrize(
    ("fps", "stride", "target_fps", "num_frames", "expected"),
    [
        (25.0, 1, None, 5, [0, 1, 2, 3, 4]),
        (25.0, 3, None, 5, [0, 3, 6, 9, 12]),
        (30.0, 1, 10.0, 5, [0, 3, 6, 9, 12]),  # 30 -> 10 fps: every third frame
        (25.0, 4, 10.0, 5, [0, 2, 5, 7, 10]),  # 25 -> 10 fps: step 2.5 overrides the stride
        (30000 / 1001, 1, 30000 / 1001 / 3, 5, [0, 3, 6, 9, 12]),  # NTSC rate, exact thirds
        (10.0, 1, 20.0, 5, [0, 0, 1, 1, 2]),  # upsampling repeats frames
        (0.0, 2, 10.0, 5, [0, 2, 4, 6, 8]),  # unknown fps: the stride is used
    ],
)
def test_window_at_stride_or_target_fps(fps, stride, target_fps, num_frames, expected):
    step = source_step(fps, stride, target_fps)
    assert window_indices(0, num_frames, step).tolist() == expected
    assert window_span(num_frames, step) == expected[-1] + 1
    assert choose_window(expected[-1] + 1, num_frames, step, "start").tolist() == expected
    assert choose_window(expected[-1], num_frames, step, "start") is None  # one frame short: skip


@pytest.mark.parametrize("num_available", [1, 7, 17, 18, 40, 100])
@pytest.mark.parametrize("num_frames", [1, 5, 17])
@pytest.mark.parametrize("step", [1.0, 2.0, 2.5, 0.5])
def test_windows_stay_inside_the_verified_count(num_available, num_frames, step):
    rng = np.random.default_rng(0)
    fits_one = window_span(num_frames, step) <= num_available
    assert bool(fits([num_available], [0.0], num_frames, 1, None)[0]) == (
        window_span(num_frames, 1.0) <= num_available
    )
    for position in ("random", "center", "start"):
        for _ in range(5):
            skip = choose_window(num_available, num_frames, step, position, rng, too_short="skip")
            loop = choose_window(num_available, num_frames, step, position, rng, too_short="loop")
            assert (skip is not None) == fits_one
            assert len(loop) == num_frames and 0 <= loop.min() and loop.max() < num_available
            if skip is not None:
                assert 0 <= skip.min() and skip.max() < num_available
                np.testing.assert_array_equal(skip - skip[0], window_indices(0, num_frames, step))


def test_center_and_random_starts():
    assert choose_window(41, 5, 2.0, "center").tolist() == [16, 18, 20, 22, 24]
    starts = {int(choose_window(20, 5, 1.0, "random", np.random.default_rng(s))[0]) for s in range(200)}
    assert starts == set(range(16))  # every valid start, nothing past the end
    assert choose_window(3, 5, 1.0, "start", too_short="loop").tolist() == [0, 1, 2, 0, 1]


# ----------------------------------------------------------------------------- transforms


def test_resize_crop_flip_shapes_and_range(pattern):
    frames = np.stack([pattern(i) for i in range(5)])  # (5, 64, 96, 3)
    resized = resize_short_side(torch.from_numpy(frames).permute(0, 3, 1, 2), 32)
    assert resized.shape == (5, 3, 32, 48) and resized.dtype == torch.uint8
    assert crop_offsets(32, 48, 32, "center") == (0, 8)
    train = ClipTransform(32, train=True)
    video = train(frames, np.random.default_rng(0))
    assert video.shape == (3, 5, 32, 32) and video.dtype == torch.float32
    assert video.min() >= -1 and video.max() <= 1 and video.max() > 0.5 and video.min() < -0.5
    evaluation = ClipTransform(32, train=False)
    center = evaluation(frames)
    torch.testing.assert_close(center, evaluation(frames))  # deterministic
    # left-right flip is an exact mirror of the same crop
    mirrored = ClipTransform(32, train=False)(np.ascontiguousarray(frames[:, :, ::-1]))
    torch.testing.assert_close(mirrored, center.flip(-1))
    up = ClipTransform(128, train=False)(frames[:, :20, :30])  # smaller than the output: upsampled
    assert up.shape == (3, 5, 128, 128)
    # a smaller crop of the resized frames: the same pixels as the full square, cut
    crops = ClipTransform(32, train=False, crop_size=16)(frames)
    assert crops.shape == (3, 5, 16, 16)
    torch.testing.assert_close(crops, center[..., 8:24, 8:24])
    with pytest.raises(ValueError, match="crop_size"):
        ClipTransform(32, train=True, crop_size=48)


# ----------------------------------------------------------------------------- datasets and failures


def _bad_manifest(tmp_path: Path, video_files, n_good: int = 3) -> Path:
    rows = [
        {
            "path": str(video_files["good"]),
            "num_frames": 40,
            "fps": 25.0,
            "height": 64,
            "width": 96,
            "label": 1,
        }
    ]
    rows = rows * n_good + [
        {"path": str(video_files[name]), "num_frames": 40, "fps": 25.0, "height": 64, "width": 96, "label": 2}
        for name in ("corrupt", "empty", "truncated")
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_video_dataset_takes_clips_for_any_temporal_factor(video_files):
    """7 frames = 1 + 2*3 (a temporal factor 2 tokenizer): the data layer assumes no factor."""
    manifest = make_manifest([str(video_files["good"])], [40], [25.0], [64], [96], [3])
    data = VideoClipDataset(manifest, num_frames=7, resolution=32, train=False)
    assert data[0]["video"].shape == (3, 7, 32, 32)


def test_video_dataset_items(video_files, frame_index_of):
    manifest = make_manifest([str(video_files["good"])], [40], [25.0], [64], [96], [3])
    data = VideoClipDataset(manifest, num_frames=9, resolution=32, frame_stride=2, train=True, seed=1)
    item = data[0]
    assert item["video"].shape == (3, 9, 32, 32) and item["video"].dtype == torch.float32
    assert item["label"] == 3 and item["index"] == 0 and item["num_failed"] == 0
    torch.testing.assert_close(
        data[0]["video"], item["video"]
    )  # the same draw for the same (seed, epoch, index)
    data.set_epoch(1)
    assert not torch.equal(data[0]["video"], item["video"])  # another epoch, another window/crop
    evaluation = VideoClipDataset(manifest, num_frames=9, resolution=64, frame_stride=2, train=False)
    indices = evaluation.frame_indices(0, None)
    assert indices.tolist() == [11, 13, 15, 17, 19, 21, 23, 25, 27]  # centered in 40 frames
    # the frames are really those: decode the band from the uint8 pixels of the (uncropped-height) clip
    pixels = ((evaluation[0]["video"] + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()
    assert frame_index_of(pixels) == indices.tolist()


def test_broken_files_are_substituted_and_counted(tmp_path, video_files):
    data = VideoClipDataset(_bad_manifest(tmp_path, video_files), num_frames=17, resolution=32, seed=0)
    items = [data[i] for i in range(len(data))]
    assert [it["num_failed"] > 0 for it in items] == [False] * 3 + [True] * 3
    assert all(it["index"] < 3 and it["label"] == 1 for it in items)  # the substitutes are good rows
    assert all(it["video"].shape == (3, 17, 32, 32) for it in items)
    again = data[4]  # deterministic substitution
    assert again["index"] == items[4]["index"] and again["num_failed"] == items[4]["num_failed"]


def test_preloaded_items_equal_decoded_items_and_failures_are_still_substituted(tmp_path, video_files):
    source = _bad_manifest(tmp_path, video_files)  # the good file listed 3 times, then 3 broken ones
    decoded = VideoClipDataset(source, num_frames=17, resolution=32, seed=0)
    preloaded = VideoClipDataset(source, num_frames=17, resolution=32, seed=0, preload=True)
    # the good file is decoded and kept once: 40 frames of 32x48 (64x96 at short side 32)
    assert preloaded.cache.num_failed == 3 and preloaded.cache.nbytes == 40 * 32 * 48 * 3
    for i in range(len(decoded)):
        a, b = decoded[i], preloaded[i]
        assert (a["index"], a["num_failed"]) == (b["index"], b["num_failed"])
        # the cache resizes whole frames once, the transform then crops: the same pixels up to rounding
        assert (a["video"] - b["video"]).abs().max() <= 2 / 255
    with pytest.raises(DataError, match="preload_max_gb"):
        VideoClipDataset(source, num_frames=17, resolution=32, preload=True, preload_max_gb=1e-6)


def test_failure_monitor_raises_above_the_fraction():
    monitor = FailureMonitor(max_fraction=0.2, min_samples=8)
    assert monitor.update({"num_failed": torch.tensor([0, 3, 0, 0])}) == 3  # 3 of 7 tried, but only 4 seen
    with pytest.raises(DataError, match=r"3 of 11 files .*max_failure_fraction=0.2"):
        monitor.update({"num_failed": torch.tensor([0, 0, 0, 0])})  # 8 seen: 27% > 20%
    at_limit = FailureMonitor(max_fraction=0.2, min_samples=8)
    for _ in range(5):
        at_limit.update({"num_failed": [0, 0, 1, 0]})  # 1 of 5 tried per batch: exactly 20%, not above
    assert at_limit.failed == 5 and at_limit.seen == 20 and at_limit.fraction == pytest.approx(0.2)
    restored = FailureMonitor()
    restored.load_state_dict(at_limit.state_dict())
    assert (restored.failed, restored.seen) == (5, 20)


def test_too_short_clips_are_skipped_or_looped(clip_folder):
    # clips of 24, 28 (cats), 24, 28 (dogs) and 32 frames; 33 frames fit none, 25 fit three
    with pytest.raises(DataError, match="too_short=loop"):
        VideoClipDataset(clip_folder, num_frames=33, resolution=32, probe_workers=0)
    data = VideoClipDataset(clip_folder, num_frames=25, resolution=32, probe_workers=0)
    assert len(data) == 3 and data.num_too_short == 2
    looped = VideoClipDataset(
        clip_folder, num_frames=33, resolution=32, too_short="loop", train=False, probe_workers=0
    )
    assert len(looped) == 5 and looped.frame_indices(0, None).tolist() == list(range(24)) + list(range(9))
    assert looped[0]["video"].shape == (3, 33, 32, 32)


def test_image_dataset(tmp_path, pattern):
    for label in ("a", "b"):
        for i in range(2):
            write_image(tmp_path / label / f"{i}.png", pattern(3 * i)[:, : 40 + 20 * i])
    (tmp_path / "b" / "bad.png").write_bytes(b"junk")
    data = ImageDataset(tmp_path, resolution=32, seed=0)
    assert len(data) == 5 and data.manifest.classes == ("a", "b")
    items = [data[i] for i in range(5)]
    assert all(it["video"].shape == (3, 1, 32, 32) for it in items)
    assert [it["num_failed"] for it in items] == [0, 0, 0, 0, 1]
    assert [it["label"] for it in items[:4]] == [0, 0, 1, 1]


# ----------------------------------------------------------------------------- samplers


def _drain(sampler, count=None):
    out = []
    for batch in sampler:
        out.append(batch)
        if count is not None and len(out) == count:
            break
    return out


def test_resumable_sampler_resumes_mid_epoch_exactly():
    full = ResumableSampler(50, 4, seed=3)
    epoch0, epoch1 = _drain(full), _drain(full)
    assert len(epoch0) == len(full) == 12 and epoch0 != epoch1
    first = ResumableSampler(50, 4, seed=3)
    assert _drain(first, 5) == epoch0[:5]
    state = first.state_dict()
    assert state == {"epoch": 0, "position": 5}
    resumed = ResumableSampler(50, 4, seed=3)
    resumed.load_state_dict(state)
    assert _drain(resumed) == epoch0[5:]  # exactly the remaining batches
    assert _drain(resumed) == epoch1
    with pytest.raises(ValueError):
        resumed.load_state_dict({"epoch": 0, "position": 13})


@pytest.mark.parametrize("drop_last", [True, False])
def test_ranks_get_disjoint_slices_that_cover_each_global_batch(drop_last):
    world, n, bs = 3, 40, 4
    per_rank = [
        _drain(ResumableSampler(n, bs, seed=7, rank=r, world_size=world, drop_last=drop_last))
        for r in range(world)
    ]
    assert len({len(batches) for batches in per_rank}) == 1
    single = ResumableSampler(n, bs * world, seed=7, drop_last=drop_last)
    for step, global_batch in enumerate(_drain(single)):
        parts = [per_rank[r][step] for r in range(world)]
        if drop_last or len(global_batch) == bs * world:
            assert sorted(sum(parts, [])) == sorted(global_batch)
            assert len(set(sum(parts, []))) == bs * world  # disjoint
    seen = {i for batches in per_rank for batch in batches for i in batch}
    assert len(seen) == (n // (bs * world)) * bs * world if drop_last else seen == set(range(n))


def test_joint_sampler_mixes_homogeneous_batches_and_resumes():
    videos, images = ResumableSampler(30, 2, seed=1), ResumableSampler(5, 2, seed=1)
    joint = JointBatchSampler(videos, images, image_ratio=0.25, image_offset=30, seed=1)
    epoch = _drain(joint)
    assert len(epoch) == 15 + 5
    kinds = [all(i >= 30 for i in b) for b in epoch]
    assert all(all(i >= 30 for i in b) or all(i < 30 for i in b) for b in epoch)
    assert sum(kinds) == 5 and sorted(i for b, k in zip(epoch, kinds) if not k for i in b) == list(range(30))
    again = JointBatchSampler(
        ResumableSampler(30, 2, seed=1), ResumableSampler(5, 2, seed=1), 0.25, 30, seed=1
    )
    assert _drain(again, 7) == epoch[:7]
    resumed = JointBatchSampler(
        ResumableSampler(30, 2, seed=1), ResumableSampler(5, 2, seed=1), 0.25, 30, seed=1
    )
    resumed.load_state_dict(again.state_dict())
    assert _drain(resumed) == epoch[7:]
    assert _drain(resumed) == _drain(joint)  # the next epoch too (image batches run on across epochs)


# ----------------------------------------------------------------------------- the loader


def test_loader_with_two_forked_workers_counts_failures(tmp_path, video_files):
    cfg = DataConfig(
        train=str(_bad_manifest(tmp_path, video_files, n_good=5)), num_frames=9, resolution=32, num_workers=2
    )
    loader, sampler = build_loader(cfg, "train", batch_size=2, seed=0)
    monitor = FailureMonitor(max_fraction=0.9, min_samples=0)
    batches = []
    for batch in loader:
        assert batch["video"].shape == (2, 3, 9, 32, 32) and batch["video"].dtype == torch.float32
        monitor.update(batch)
        batches.append(batch["index"].tolist())
        assert sampler.state_dict() == {"epoch": 0, "position": len(batches)}  # consumed, not prefetched
    assert len(batches) == 4 and sampler.state_dict() == {"epoch": 1, "position": 0}
    assert monitor.seen == 8 and monitor.failed >= 3  # the three broken rows, each replaced at least once
    with pytest.raises(DataError, match="max_failure_fraction"):
        strict = FailureMonitor(max_fraction=0.1, min_samples=0)
        for batch in loader:
            strict.update(batch)


def test_loader_resume_gives_the_same_batches(clip_folder):
    cfg = DataConfig(train=str(clip_folder), num_frames=5, resolution=32, num_workers=0, probe_workers=0)
    reference, _ = build_loader(cfg, "train", batch_size=2, seed=5)
    full = list(reference) + list(reference)  # two epochs
    loader, sampler = build_loader(cfg, "train", batch_size=2, seed=5)
    first = next(iter(loader))
    torch.testing.assert_close(first["video"], full[0]["video"])
    state = sampler.state_dict()
    assert state == {"epoch": 0, "position": 1}
    loader2, sampler2 = build_loader(cfg, "train", batch_size=2, seed=5)
    sampler2.load_state_dict(state)
    rest = list(loader2) + list(loader2)
    assert len(rest) == len(full) - 1
    for a, b in zip(rest, full[1:]):
        assert a["index"].tolist() == b["index"].tolist()
        torch.testing.assert_close(a["video"], b["video"])  # same windows, crops and flips


def test_loader_val_split_and_empty_data(clip_folder):
    cfg = DataConfig(train=str(clip_folder), val=str(clip_folder), num_frames=5, resolution=32, num_workers=0)
    val, _ = build_loader(cfg, "val", batch_size=2, rank=1, world_size=2)
    batches = list(val)
    assert len(batches) == 2 and [len(b["index"]) for b in batches] == [2, 1]  # 5 clips, 2 ranks x 2, padded
    with pytest.raises(DataError, match="fewer than one global batch of 8"):
        build_loader(cfg, "train", batch_size=4, world_size=2)
    with pytest.raises(DataError, match="data.val is not set"):
        build_loader(DataConfig(train=str(clip_folder), val=None), "val")


def test_loader_joint_image_video_batches(clip_folder, tmp_path, pattern):
    for i in range(4):
        write_image(tmp_path / "images" / f"{i}.png", pattern(i))
    cfg = DataConfig(
        train=str(clip_folder),
        num_frames=5,
        resolution=32,
        num_workers=0,
        image_data=str(tmp_path / "images"),
        image_ratio=0.5,
    )
    loader, sampler = build_loader(cfg, "train", batch_size=2)
    shapes = [tuple(b["video"].shape) for b in loader]
    assert sorted(set(shapes)) == [(2, 3, 1, 32, 32), (2, 3, 5, 32, 32)]
    assert shapes.count((2, 3, 1, 32, 32)) == shapes.count((2, 3, 5, 32, 32)) == 2
    # more images per image batch, everything preloaded: the same kinds of batches, no decoding
    cfg = dataclasses.replace(cfg, image_batch_size=4, preload=True)
    loader, _ = build_loader(cfg, "train", batch_size=2)
    assert loader.dataset.videos.cache is not None and loader.dataset.images.cache is not None
    shapes = [tuple(b["video"].shape) for b in loader]
    assert sorted(set(shapes)) == [(2, 3, 5, 32, 32), (4, 3, 1, 32, 32)]
    # images as single frames of the training clips: no image files, the clips' frame cache shared
    cfg = dataclasses.replace(cfg, image_data=None, image_source="clip_frames")
    loader, _ = build_loader(cfg, "train", batch_size=2)
    assert loader.dataset.images.cache is loader.dataset.videos.cache
    batches = list(loader)
    frames = [b for b in batches if b["video"].shape[2] == 1]
    assert frames and all(tuple(b["video"].shape) == (4, 3, 1, 32, 32) for b in frames)
    assert not torch.equal(frames[0]["video"][0], frames[0]["video"][1])
