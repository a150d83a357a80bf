"""PSNR / SSIM against closed forms and a slow numpy SSIM; codebook usage; copy-last-frame baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from videogen.errors import UserError
from videogen.evaluation import (
    PSNR_CAP_DB,
    CodebookUsage,
    copy_last_frame,
    frame_prediction_scores,
    psnr,
    ssim,
)

C1, C2 = 0.01**2, 0.03**2


def random_pair(shape, noise=0.2, seed=0, dtype=torch.float64):
    """A target clip in [-0.8, 0.8] and a correlated prediction (target + noise), both in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    target = torch.rand(shape, generator=generator, dtype=dtype) * 1.6 - 0.8
    pred = (target + noise * torch.randn(shape, generator=generator, dtype=dtype)).clamp(-1, 1)
    return pred, target


# ----------------------------------------------------------------------------- slow numpy SSIM reference


def reference_ssim_image(x: np.ndarray, y: np.ndarray) -> float:
    """skimage's algorithm on (H, W, C) float64 in [0, 1]: Gaussian filter with 'reflect' borders (a full
    non-separable 11x11 sum), population covariances, crop the 5-pixel border, mean per channel, mean."""
    radius, sigma = 5, 1.5
    offsets = np.arange(-radius, radius + 1)
    g = np.exp(-0.5 * (offsets / sigma) ** 2)
    g /= g.sum()
    window = np.outer(g, g)
    height, width, channels = x.shape

    def gaussian_filter(image: np.ndarray) -> np.ndarray:
        padded = np.pad(image, radius, mode="symmetric")  # scipy.ndimage 'reflect' == numpy 'symmetric'
        out = np.zeros_like(image)
        for i in range(2 * radius + 1):
            for j in range(2 * radius + 1):
                out += window[i, j] * padded[i : i + height, j : j + width]
        return out

    per_channel = []
    for c in range(channels):
        a, b = x[..., c], y[..., c]
        ux, uy = gaussian_filter(a), gaussian_filter(b)
        vx = gaussian_filter(a * a) - ux * ux
        vy = gaussian_filter(b * b) - uy * uy
        vxy = gaussian_filter(a * b) - ux * uy
        s = ((2 * ux * uy + C1) * (2 * vxy + C2)) / ((ux**2 + uy**2 + C1) * (vx + vy + C2))
        per_channel.append(s[radius:-radius, radius:-radius].mean())
    return float(np.mean(per_channel))


def reference_ssim_video(pred: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """(B, 3, T, H, W) in [-1, 1] -> (B, T) via the numpy reference on [0, 1] frames."""
    p = (pred.double().numpy() + 1) / 2
    t = (target.double().numpy() + 1) / 2
    batch, _, frames = p.shape[:3]
    out = np.zeros((batch, frames))
    for b in range(batch):
        for f in range(frames):
            out[b, f] = reference_ssim_image(p[b, :, f].transpose(1, 2, 0), t[b, :, f].transpose(1, 2, 0))
    return out


# ----------------------------------------------------------------------------- PSNR


def test_psnr_identical_is_capped_and_offsets_give_closed_form():
    _, target = random_pair((2, 3, 4, 8, 8))
    target = target * 0.5  # in [-0.4, 0.4] so offsets below never clamp
    same = psnr(target, target)
    assert same.per_frame.shape == (2, 4) and same.per_sample.shape == (2,)
    assert torch.all(same.per_frame == PSNR_CAP_DB) and PSNR_CAP_DB == 100.0

    # a constant offset d on the [0, 1] scale (2d on [-1, 1]) per frame: PSNR = -20 log10(d)
    offsets01 = torch.tensor([0.1, 0.01, 0.05, 0.2], dtype=torch.float64)
    pred = target + 2 * offsets01.view(1, 1, 4, 1, 1)
    scores = psnr(pred, target)
    expected = -20 * torch.log10(offsets01)  # 20, 40, 26.02, 13.98 dB
    torch.testing.assert_close(scores.per_frame, expected.expand(2, 4), rtol=0, atol=1e-9)
    torch.testing.assert_close(scores.per_sample, expected.mean().expand(2), rtol=0, atol=1e-9)


def test_psnr_matches_per_frame_mse_on_unit_range_and_images_work():
    pred, target = random_pair((3, 3, 5, 9, 7), seed=1)
    scores = psnr(pred, target)
    p, t = (pred.numpy() + 1) / 2, (target.numpy() + 1) / 2
    mse = ((p - t) ** 2).mean(axis=(1, 3, 4))
    np.testing.assert_allclose(scores.per_frame.numpy(), 10 * np.log10(1 / mse), rtol=1e-12)
    image = psnr(pred[:, :, :1], target[:, :, :1])  # (B, 3, 1, H, W)
    assert image.per_frame.shape == (3, 1)
    torch.testing.assert_close(image.per_sample, scores.per_frame[:, 0])


def test_psnr_clamps_to_the_valid_range():
    target = torch.ones(1, 3, 2, 4, 4)
    assert torch.all(psnr(target * 3.0, target).per_frame == PSNR_CAP_DB)  # 3.0 clamps to 1.0
    # -1 vs 1 is the largest possible error: MSE 1 -> 0 dB
    assert torch.all(psnr(-target, target).per_frame == 0.0)


def test_psnr_rejects_mismatched_or_non_rgb_inputs():
    with pytest.raises(UserError, match="shape"):
        psnr(torch.zeros(1, 3, 2, 8, 8), torch.zeros(1, 3, 3, 8, 8))
    with pytest.raises(UserError, match=r"\(B, 3, T, H, W\)"):
        psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


# ----------------------------------------------------------------------------- SSIM


def test_ssim_matches_slow_numpy_reference_float64():
    pred, target = random_pair((2, 3, 3, 17, 23), seed=2)  # non-square, odd sizes
    scores = ssim(pred, target)
    expected = reference_ssim_video(pred, target)
    assert scores.per_frame.dtype == torch.float64 and scores.per_frame.shape == (2, 3)
    np.testing.assert_allclose(scores.per_frame.numpy(), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(scores.per_sample.numpy(), expected.mean(axis=1), rtol=0, atol=1e-12)
    assert 0.2 < expected.min() and expected.max() < 0.95  # a non-trivial regime


def test_ssim_float32_agrees_with_reference_and_chunking_is_invisible():
    pred, target = random_pair((2, 3, 5, 16, 16), noise=0.05, seed=3, dtype=torch.float32)
    expected = reference_ssim_video(pred, target)
    whole = ssim(pred, target)
    chunked = ssim(pred, target, frames_per_chunk=3)
    assert whole.per_frame.dtype == torch.float32
    # float32 moments: E[x^2] - E[x]^2 rounds at ~1e-8 absolute (measured error here ~1.4e-7)
    np.testing.assert_allclose(whole.per_frame.numpy(), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(chunked.per_frame, whole.per_frame)


def test_ssim_closed_forms():
    pred, _ = random_pair((2, 3, 2, 12, 12), seed=4)
    same = ssim(pred, pred)
    assert torch.all(same.per_frame == 1.0)

    # constant frames a, b (on [0, 1]): variances vanish, SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b = 0.3, 0.7
    x = torch.full((1, 3, 1, 12, 12), 2 * a - 1, dtype=torch.float64)
    y = torch.full((1, 3, 1, 12, 12), 2 * b - 1, dtype=torch.float64)
    expected = (2 * a * b + C1) / (a * a + b * b + C1)
    assert ssim(x, y).per_frame.item() == pytest.approx(expected, abs=1e-12)


def test_ssim_frames_are_scored_independently():
    pred, target = random_pair((2, 3, 4, 12, 12), seed=5)
    before = ssim(pred, target).per_frame
    changed = pred.clone()
    changed[:, :, 2] = target[:, :, 2]
    after = ssim(changed, target).per_frame
    assert torch.all(after[:, 2] == 1.0)
    keep = [0, 1, 3]
    torch.testing.assert_close(after[:, keep], before[:, keep], rtol=0, atol=0)


def test_ssim_rejects_frames_smaller_than_the_window():
    with pytest.raises(UserError, match="11x11"):
        ssim(torch.zeros(1, 3, 1, 10, 32), torch.zeros(1, 3, 1, 10, 32))


# ----------------------------------------------------------------------------- codebook usage


def test_codebook_usage_known_histograms():
    usage = CodebookUsage(4)
    usage.update(torch.tensor([[0, 1], [0, 1]]))
    summary = usage.summary()
    assert usage.histogram.tolist() == [2, 2, 0, 0]
    assert summary["used_codes"] == 2 and summary["usage_fraction"] == 0.5 and summary["num_tokens"] == 4
    assert summary["entropy"] == pytest.approx(math.log(2), abs=1e-12)
    assert summary["perplexity"] == pytest.approx(2.0, abs=1e-12)

    skewed = CodebookUsage(8)
    skewed.update(torch.tensor([5, 7, 7, 7]))
    expected_entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert skewed.entropy == pytest.approx(expected_entropy, abs=1e-12)
    assert skewed.perplexity == pytest.approx(math.exp(expected_entropy), abs=1e-12)
    assert skewed.usage_fraction == 2 / 8


def test_codebook_usage_2_to_18_codes_accumulates_over_batches():
    codebook_size = 2**18
    generator = torch.Generator().manual_seed(0)
    # tokens (B, T', H', W') drawn from the first 1000 codes only, over three batches
    batches = [torch.randint(0, 1000, (2, 3, 8, 8), generator=generator) * 262 for _ in range(3)]
    usage = CodebookUsage(codebook_size)
    for tokens in batches:
        usage.update(tokens)
    all_tokens = torch.cat([t.reshape(-1) for t in batches]).numpy()
    expected = np.bincount(all_tokens, minlength=codebook_size)
    assert usage.histogram.shape == (codebook_size,) and usage.histogram.dtype == torch.int64
    np.testing.assert_array_equal(usage.histogram.numpy(), expected)
    probs = expected[expected > 0] / expected.sum()
    assert usage.used_codes == len(np.unique(all_tokens))
    assert usage.usage_fraction == len(np.unique(all_tokens)) / codebook_size
    assert usage.perplexity == pytest.approx(math.exp(-(probs * np.log(probs)).sum()), rel=1e-12)

    uniform = CodebookUsage(codebook_size)
    uniform.update(torch.arange(codebook_size).repeat(2))  # every code twice
    assert uniform.usage_fraction == 1.0
    assert uniform.perplexity == pytest.approx(codebook_size, rel=1e-12)


def test_codebook_usage_rejects_bad_tokens_and_empty_sets():
    usage = CodebookUsage(16)
    with pytest.raises(UserError, match=r"\[0, 16\]"):
        usage.update(torch.tensor([0, 16]))
    with pytest.raises(UserError, match="integer"):
        usage.update(torch.tensor([0.0, 1.0]))
    with pytest.raises(UserError, match="no tokens"):
        usage.summary()


# ----------------------------------------------------------------------------- copy-last-frame baseline


def test_copy_last_frame_repeats_the_last_condition_frame():
    clip = torch.randn(2, 3, 7, 4, 5)
    prediction = copy_last_frame(clip, num_cond_frames=3)
    assert prediction.shape == clip.shape
    torch.testing.assert_close(prediction[:, :, :3], clip[:, :, :3], rtol=0, atol=0)
    for frame in range(3, 7):
        torch.testing.assert_close(prediction[:, :, frame], clip[:, :, 2], rtol=0, atol=0)
    with pytest.raises(UserError, match="num_cond_frames=7"):
        copy_last_frame(clip, num_cond_frames=7)
    with pytest.raises(UserError, match="num_cond_frames=0"):
        copy_last_frame(clip, num_cond_frames=0)


def test_frame_prediction_scores_use_predicted_frames_only():
    _, truth = random_pair((2, 3, 6, 12, 12), seed=6)
    truth = truth * 0.5
    num_cond = 2
    # condition frames wrong, predicted frames exact -> perfect scores
    pred = truth.clone()
    pred[:, :, :num_cond] = -truth[:, :, :num_cond]
    scores = frame_prediction_scores(pred, truth, num_cond)
    assert scores["psnr"].per_frame.shape == (2, 4) and scores["ssim"].per_frame.shape == (2, 4)
    assert torch.all(scores["psnr"].per_sample == PSNR_CAP_DB)
    assert torch.all(scores["ssim"].per_sample == 1.0)

    # condition frames exact, predicted frames off by 0.1 on [0, 1] -> exactly 20 dB
    pred = truth.clone()
    pred[:, :, num_cond:] += 0.2
    scores = frame_prediction_scores(pred, truth, num_cond)
    torch.testing.assert_close(scores["psnr"].per_sample, torch.full((2,), 20.0, dtype=torch.float64))
    assert torch.all(scores["ssim"].per_sample < 1.0)


def test_copy_last_frame_is_perfect_on_a_static_video_and_worse_on_motion():
    frame = random_pair((1, 3, 1, 16, 16), seed=7)[1]
    static = frame.expand(1, 3, 5, 16, 16).contiguous()
    scores = frame_prediction_scores(copy_last_frame(static, 1), static, 1)
    assert scores["psnr"].per_sample.item() == PSNR_CAP_DB and scores["ssim"].per_sample.item() == 1.0

    moving = torch.cat([torch.roll(frame, shifts=step, dims=-1) for step in range(5)], dim=2)  # pans right
    scores = frame_prediction_scores(copy_last_frame(moving, 1), moving, 1)
    psnr_per_frame = scores["psnr"].per_frame[0]
    assert psnr_per_frame.max() < 30.0
    assert scores["ssim"].per_sample.item() < 0.5
