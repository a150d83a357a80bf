"""COMMIT task builders: condition pixels, padding and latent condition masks (17xHxW and T = 1)."""

from __future__ import annotations

import pytest
import torch

from videogen.errors import UserError
from videogen.transformer.tasks import (
    HOLE_FILL,
    TASKS,
    build_condition,
    get_task,
    latent_condition_mask,
    latent_factors,
)
from videogen.transformer.vocab import TASK_IDS

T, H, W = 17, 32, 32
LATENT = (5, 4, 4)  # causal /4 in time, /8 in space


def clip(frames: int = T, batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, frames, H, W, generator=g) * 2 - 1


def latent_frames(latent_mask: torch.Tensor) -> list[int]:
    """Latent frames that hold any condition position (for sample 0)."""
    return [t for t in range(latent_mask.shape[1]) if latent_mask[0, t].any()]


def cells(rows: range, cols: range, frames: int = LATENT[0]) -> torch.Tensor:
    mask = torch.zeros(frames, LATENT[1], LATENT[2], dtype=torch.bool)
    mask[:, rows.start : rows.stop, cols.start : cols.stop] = True
    return mask


# ----------------------------------------------------------------------------- every task


@pytest.mark.parametrize("name", sorted(TASKS))
@pytest.mark.parametrize("frames", [T, 1])
def test_shapes_and_condition_pixels_preserved(name: str, frames: int) -> None:
    video = clip(frames)
    latent = (1 + (frames - 1) // 4, *LATENT[1:])
    needs_time = get_task(name).family in ("frame_prediction", "interpolation")
    if (frames == 1 and needs_time) or (frames > 1 and name == "image_generation"):
        with pytest.raises(UserError):
            build_condition(name, video, latent)
        return
    cond = build_condition(name, video, latent)
    assert cond.video.shape == video.shape and cond.video.dtype == video.dtype
    assert cond.pixel_mask.shape == (2, frames, H, W) and cond.pixel_mask.dtype == torch.bool
    assert cond.latent_mask.shape == (2, *latent) and cond.latent_mask.dtype == torch.bool
    keep = cond.pixel_mask.unsqueeze(1).expand_as(video)
    assert torch.equal(cond.video[keep], video[keep])  # condition pixels exactly preserved
    assert cond.video.min() >= -1 and cond.video.max() <= 1
    if not get_task(name).has_condition:
        assert not cond.pixel_mask.any() and not cond.latent_mask.any()
        assert not cond.video.any()
    else:
        assert cond.pixel_mask.any() and cond.latent_mask.any()


def test_registry_families_and_codes() -> None:
    codes = [spec.code for spec in TASKS.values()]
    assert len(codes) == len(set(codes))
    for spec in TASKS.values():
        assert spec.task_id == TASK_IDS[spec.family]
        assert get_task(spec.code) is spec and get_task(spec.code.lower()) is spec
    # inpainting has its own task token (not MAGVIT v1's reused outpainting token)
    assert TASKS["inpaint_central"].task_id != TASKS["outpaint_central"].task_id
    assert TASKS["class_frame_prediction"].task_id == TASKS["frame_prediction"].task_id
    assert (
        TASKS["class_frame_prediction"].class_conditional and not TASKS["frame_prediction"].class_conditional
    )
    with pytest.raises(UserError, match="unknown"):
        get_task("superresolution")
    with pytest.raises(UserError, match="options"):
        build_condition("frame_prediction", clip(), LATENT, num_frames=3)


# ----------------------------------------------------------------------------- frame prediction / interpolation


@pytest.mark.parametrize(
    ("num_cond", "expected"), [(1, [0]), (2, [0, 1]), (5, [0, 1]), (6, [0, 1, 2]), (9, [0, 1, 2])]
)
def test_frame_prediction_latent_frames(num_cond: int, expected: list[int]) -> None:
    video = clip()
    cond = build_condition("frame_prediction", video, LATENT, num_cond_frames=num_cond)
    assert latent_frames(cond.latent_mask) == expected
    assert cond.latent_mask[:, expected].all()  # whole latent frames
    assert cond.pixel_mask[:, :num_cond].all() and not cond.pixel_mask[:, num_cond:].any()
    # padding repeats the last condition frame
    last = video[:, :, num_cond - 1 : num_cond].expand(-1, -1, T - num_cond, -1, -1)
    assert torch.equal(cond.video[:, :, num_cond:], last)


@pytest.mark.parametrize("num_cond", [0, T])
def test_frame_prediction_rejects_bad_counts(num_cond: int) -> None:
    with pytest.raises(UserError, match="num_cond_frames"):
        build_condition("frame_prediction", clip(), LATENT, num_cond_frames=num_cond)


def test_interpolation_blends_between_end_frames() -> None:
    video = clip()
    cond = build_condition("interpolation", video, LATENT)
    assert latent_frames(cond.latent_mask) == [0, 4]
    first, last = video[:, :, 0], video[:, :, T - 1]
    for t in range(1, T - 1):
        alpha = t / (T - 1)
        torch.testing.assert_close(cond.video[:, :, t], (1 - alpha) * first + alpha * last)
    two = build_condition("interpolation", video, LATENT, num_cond_frames=2)
    assert two.pixel_mask[0, :, 0, 0].tolist() == [True, True] + [False] * 13 + [True, True]
    torch.testing.assert_close(two.video[:, :, 8], (two.video[:, :, 1] + two.video[:, :, 15]) / 2)
    with pytest.raises(UserError):
        build_condition("interpolation", video, LATENT, num_cond_frames=9)


# ----------------------------------------------------------------------------- outpainting / inpainting


@pytest.mark.parametrize(
    ("name", "rows", "cols"),
    [
        ("outpaint_central", range(1, 3), range(1, 3)),
        ("outpaint_vertical", range(0, 4), range(1, 3)),
        ("outpaint_horizontal", range(1, 3), range(0, 4)),
    ],
)
def test_outpaint_static_regions(name: str, rows: range, cols: range) -> None:
    video = clip()
    cond = build_condition(name, video, LATENT)
    assert torch.equal(cond.latent_mask[0], cells(rows, cols))
    assert torch.equal(cond.latent_mask[1], cond.latent_mask[0])
    y0, y1, x0, x1 = rows.start * 8, rows.stop * 8, cols.start * 8, cols.stop * 8
    assert cond.pixel_mask[0, 0, y0:y1, x0:x1].all() and cond.pixel_mask[0, 0].sum() == (y1 - y0) * (x1 - x0)
    # edge replicate: every pixel outside takes the nearest box pixel
    for y, x in [(0, 0), (H - 1, W - 1), (0, W // 2), (H // 2, 0)]:
        ny, nx = min(max(y, y0), y1 - 1), min(max(x, x0), x1 - 1)
        assert torch.equal(cond.video[:, :, :, y, x], video[:, :, :, ny, nx])


def test_outpaint_user_box_and_image() -> None:
    image = clip(frames=1)
    cond = build_condition("outpaint", image, (1, 4, 4), mode="box", box=(0, 8, 16, 32))
    assert torch.equal(cond.latent_mask[0, 0], cells(range(0, 2), range(1, 4), frames=1)[0])
    assert torch.equal(cond.video[:, :, 0, 31, 0], image[:, :, 0, 15, 8])
    with pytest.raises(UserError, match="box"):
        build_condition("outpaint", image, (1, 4, 4), mode="box", box=(8, 8, 8, 16))
    with pytest.raises(UserError, match="mode"):
        build_condition("outpaint", image, (1, 4, 4), mode="diagonal")


def test_inpaint_central_is_the_complement() -> None:
    video = clip()
    cond = build_condition("inpaint_central", video, LATENT)
    assert torch.equal(cond.latent_mask[0], ~cells(range(1, 3), range(1, 3)))
    hole = ~cond.pixel_mask.unsqueeze(1).expand_as(video)
    assert (cond.video[hole] == HOLE_FILL).all()
    assert hole[0, 0, 0, 8:24, 8:24].all() and hole[0, 0, 0].sum() == 16 * 16


def test_inpaint_user_box_marks_only_cells_fully_outside_the_hole() -> None:
    video = clip()
    box = (5, 5, 20, 12)  # touches latent rows 0..2 and cols 0..1
    cond = build_condition("inpaint", video, LATENT, mode="box", box=box)
    assert torch.equal(cond.latent_mask[0], ~cells(range(0, 3), range(0, 2)))
    assert not cond.pixel_mask[0, :, 5:20, 5:12].any() and cond.pixel_mask[0, :, 20:, :].all()
    assert (cond.video[:, :, :, 5:20, 5:12] == HOLE_FILL).all()
    assert torch.equal(cond.video[:, :, :, :5], video[:, :, :, :5])
    with pytest.raises(UserError, match="box"):
        build_condition("inpaint", video, LATENT, mode="box", box=(0, 0, 40, 8))
    with pytest.raises(UserError, match="box"):
        build_condition("inpaint", video, LATENT, mode="box")


@pytest.mark.parametrize("name", ["outpaint_dynamic", "inpaint_dynamic"])
def test_dynamic_regions_move_over_time(name: str) -> None:
    video = clip()
    cond = build_condition(name, video, LATENT)
    region = cond.pixel_mask[0] if name.startswith("outpaint") else ~cond.pixel_mask[0]  # (T, H, W)
    row = H // 2
    lefts = [int(region[t, row].nonzero()[0]) for t in range(T)]
    widths = [int(region[t, row].sum()) for t in range(T)]
    assert lefts[0] == 0 and lefts[-1] == W // 2 and lefts == sorted(lefts)
    assert set(widths) == {W // 2}
    assert (cond.video[:, :, 0, row, W // 2 :] == HOLE_FILL).all() == name.startswith("outpaint")
    # latent: the region moves across latent frames too
    lat = cond.latent_mask[0] if name.startswith("outpaint") else ~cond.latent_mask[0]
    lat_lefts = [int(lat[t, 2].nonzero()[0]) for t in range(LATENT[0])]
    assert lat_lefts[0] == 0 and lat_lefts == sorted(lat_lefts) and lat_lefts[-1] > lat_lefts[0]
    # the latent condition mask follows the rule: fully-condition cells in some covered frame
    assert torch.equal(cond.latent_mask, latent_condition_mask(cond.pixel_mask, LATENT))
    assert not torch.equal(cond.latent_mask[0, 0], cond.latent_mask[0, -1])


# ----------------------------------------------------------------------------- geometry


def test_latent_condition_mask_rule() -> None:
    pixel = torch.zeros(1, 9, 16, 16, dtype=torch.bool)  # 9 frames, factor 8 -> latent (3, 2, 2)
    pixel[0, 5, :8, :8] = True  # whole cell (0, 0) in frame 5 -> latent frame 2 (frames 5..8)
    pixel[0, 1:5, 8:16, :7] = True  # cell (1, 0) never complete -> never condition
    mask = latent_condition_mask(pixel, (3, 2, 2))
    expected = torch.zeros(1, 3, 2, 2, dtype=torch.bool)
    expected[0, 2, 0, 0] = True
    assert torch.equal(mask, expected)


def test_latent_factors() -> None:
    assert latent_factors((17, 128, 128), (5, 16, 16)) == (4, 8, 8)
    assert latent_factors((1, 64, 32), (1, 8, 4)) == (1, 8, 8)
    for video_shape, latent in [
        ((16, 32, 32), (5, 4, 4)),
        ((17, 32, 30), (5, 4, 4)),
        ((5, 32, 32), (1, 4, 4)),
    ]:
        with pytest.raises(ValueError):
            latent_factors(video_shape, latent)
