"""The non-learned baseline of each task and the region scores, on hand-made clips whose answers are known;
the frame classifier and the distinct-output count of the class rows."""

from __future__ import annotations

import math

import pytest
import torch

from videogen.evaluation import (
    copy_last_frame,
    edge_replicate,
    linear_blend,
    mean_fill,
    psnr,
    region_scores,
    ssim,
)
from videogen.evaluation.classifier import accuracy, load_or_train, train_classifier
from videogen.evaluation.evaluate_generation import ClassHits, distinct_count


def ramp(frames: int, height: int = 2, width: int = 2) -> torch.Tensor:
    """(1, 1, T, H, W): frame t is filled with the value t."""
    return torch.arange(frames, dtype=torch.float32).view(1, 1, -1, 1, 1).expand(1, 1, frames, height, width)


def test_copy_last_frame_repeats_the_last_condition_frame() -> None:
    out = copy_last_frame(ramp(5), 2)
    assert out[0, 0, :, 0, 0].tolist() == [0, 1, 1, 1, 1]


def test_linear_blend_goes_from_the_first_to_the_last_frame() -> None:
    clip = ramp(5)
    clip = torch.cat([clip[:, :, :1], torch.full_like(clip[:, :, 1:4], 9.0), 2 * clip[:, :, 4:]], dim=2)
    out = linear_blend(clip)  # first 0, last 8 over 5 frames: 0, 2, 4, 6, 8 (the middle ignored)
    assert out[0, 0, :, 1, 1].tolist() == [0, 2, 4, 6, 8]
    two = torch.stack([torch.full((2, 2), -1.0), torch.zeros(2, 2), torch.ones(2, 2)]).view(1, 1, 3, 2, 2)
    assert torch.equal(linear_blend(two)[0, 0, 1], torch.zeros(2, 2))


def test_mean_fill_uses_the_mean_colour_of_each_frames_known_pixels() -> None:
    clip = torch.tensor([[1.0, 3.0], [5.0, 100.0]]).view(1, 1, 1, 2, 2).repeat(1, 2, 2, 1, 1)
    clip[:, 1] *= -1  # a second channel with its own mean
    clip[:, :, 1] += 10  # a second frame with its own mean
    known = torch.tensor([[True, True], [True, False]]).view(1, 1, 2, 2).expand(1, 2, 2, 2)
    out = mean_fill(clip, known)
    assert out[0, 0, 0, 1, 1] == 3.0 and out[0, 1, 0, 1, 1] == -3.0  # (1 + 3 + 5) / 3, per channel
    assert out[0, 0, 1, 1, 1] == 13.0  # frame by frame
    assert torch.equal(out[..., :1, :], clip[..., :1, :])  # known pixels kept


def test_edge_replicate_extends_the_box_outward() -> None:
    frame = torch.arange(16, dtype=torch.float32).view(4, 4)
    out = edge_replicate(frame.view(1, 1, 1, 4, 4), (1, 1, 3, 3))[0, 0, 0]
    expected = torch.tensor([[5, 5, 6, 6], [5, 5, 6, 6], [9, 9, 10, 10], [9, 9, 10, 10]], dtype=torch.float32)
    assert torch.equal(out, expected)


def test_region_psnr_counts_only_the_region() -> None:
    truth = torch.zeros(1, 3, 2, 12, 12)
    pred = truth.clone()
    pred[:, :, 1, 0, 0] = 1.0  # one pixel off by 0.5 in [0, 1], in frame 1 only
    pred[:, :, 0, 5, 5] = -1.0  # outside the region: ignored
    region = torch.zeros(1, 2, 12, 12, dtype=torch.bool)
    region[:, 1, :2, :2] = True  # 4 pixels of frame 1
    scores = psnr(pred, truth, mask=region)
    expected = -10 * math.log10(0.25 / 4)  # mse: one of 4 pixels off by 0.5, every channel
    assert math.isnan(float(scores.per_frame[0, 0]))  # no region in frame 0: left out of the mean
    assert float(scores.per_sample[0]) == pytest.approx(expected, rel=1e-5)


def test_whole_frame_regions_equal_the_plain_scores() -> None:
    generator = torch.Generator().manual_seed(0)
    truth = torch.rand(2, 3, 4, 16, 16, generator=generator) * 2 - 1
    pred = (truth + 0.2 * torch.randn(truth.shape, generator=generator)).clamp(-1, 1)
    region = torch.zeros(2, 4, 16, 16, dtype=torch.bool)
    region[:, 2:] = True  # frames 2 and 3
    scores = region_scores(pred, truth, region)
    torch.testing.assert_close(scores["psnr"].per_sample, psnr(pred[:, :, 2:], truth[:, :, 2:]).per_sample)
    torch.testing.assert_close(scores["ssim"].per_sample, ssim(pred[:, :, 2:], truth[:, :, 2:]).per_sample)


def test_distinct_count_merges_near_copies() -> None:
    base = torch.zeros(1, 3, 1, 8, 8)
    samples = torch.cat([base, base + 1e-4, base + 0.5, base])  # two near-copies of the first
    assert distinct_count(samples) == 2


def test_class_hits_tell_one_answer_for_everything_from_spread_answers() -> None:
    labels = torch.arange(10).repeat(2)  # 2 samples of each of 10 classes
    one_answer = torch.zeros(20, 10)
    one_answer[:, 3] = 1.0  # the classifier says 3 whatever it sees
    hits = ClassHits()
    hits.add(one_answer, labels)
    assert hits.rates()[0] == 0.1  # exactly chance ...
    assert hits.most_common_answer() == (3, 1.0)  # ... from one answer
    assert (hits.confusion[:, 3] == 2).all() and hits.confusion.sum() == 20
    shifted = torch.nn.functional.one_hot((labels + 1) % 10, 10).float()  # always the next class: 0% right
    spread = ClassHits()
    spread.add(shifted, labels)
    assert spread.rates()[0] == 0.0 and spread.most_common_answer() == (0, 0.1)
    assert (spread.confusion == torch.roll(torch.eye(10, dtype=torch.long), 1, dims=1).numpy() * 2).all()


def colour_frames(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames of 3 classes: mostly red, green or blue, with noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 3
    frames = 0.3 * torch.randn(count, 3, 16, 16, generator=generator) - 0.5
    frames[torch.arange(count), labels] += 1.0
    return frames.clamp(-1, 1), labels


def test_the_frame_classifier_learns_deterministically_and_is_cached(tmp_path) -> None:
    train, test = colour_frames(48, 0), colour_frames(30, 1)
    a = train_classifier(*train, 3, seed=0, epochs=2)
    b = train_classifier(*train, 3, seed=0, epochs=2)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert accuracy(a, *test) == 1.0
    calls = []

    def data():
        calls.append(1)
        return (*train, *test, 3)

    model, record = load_or_train(tmp_path, {"data": "colours"}, data)
    again, cached = load_or_train(tmp_path, {"data": "colours"}, data)
    assert len(calls) == 1 and cached["cached"] and not record["cached"]
    assert record["held_out_accuracy"] == cached["held_out_accuracy"] == 1.0
    assert torch.equal(model(test[0]), again(test[0]))
