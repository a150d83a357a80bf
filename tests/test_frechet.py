"""Frechet distance against Gaussian closed forms; FVD through a real TorchScript file saved to disk."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from videogen.errors import UserError
from videogen.evaluation import (
    I3DFeatures,
    compute_fvd,
    frechet_distance,
    frechet_distance_from_features,
    gaussian_stats,
    resize_frames,
)


def random_spd(rng: np.random.Generator, dim: int) -> np.ndarray:
    a = rng.standard_normal((dim, dim))
    return a @ a.T + 0.5 * np.eye(dim)


def random_rotation(rng: np.random.Generator, dim: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


# ----------------------------------------------------------------------------- closed forms


def test_diagonal_and_commuting_covariances_match_closed_form():
    rng = np.random.default_rng(0)
    dim = 6
    mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim)
    a, b = rng.uniform(0.1, 3.0, dim), rng.uniform(0.1, 3.0, dim)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)

    # commuting = diagonal in one shared (rotated) basis: same closed form
    q = random_rotation(rng, dim)
    value = frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert value == pytest.approx(expected, rel=1e-10)

    # one dimension: (m1 - m2)^2 + (s1 - s2)^2 with standard deviations s
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0, rel=1e-12)


def test_identical_is_zero_and_rotation_invariant_and_matches_ttur_form():
    rng = np.random.default_rng(1)
    dim = 8
    mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim)
    sigma1, sigma2 = random_spd(rng, dim), random_spd(rng, dim)  # do not commute
    assert frechet_distance(mu1, sigma1, mu1, sigma1) < 1e-10 * np.trace(sigma1)

    value = frechet_distance(mu1, sigma1, mu2, sigma2)
    # independent formula (pytorch-fid / TTUR): tr sqrt(S1 S2) from the eigenvalues of the product
    eig = np.linalg.eigvals(sigma1 @ sigma2).astype(np.complex128)
    ttur = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sqrt(eig).real.sum()
    assert value == pytest.approx(ttur, rel=1e-10)
    assert value > 1.0

    rot = random_rotation(rng, dim)
    rotated = frechet_distance(rot @ mu1, rot @ sigma1 @ rot.T, rot @ mu2, rot @ sigma2 @ rot.T)
    assert rotated == pytest.approx(value, rel=1e-10)
    swapped = frechet_distance(mu2, sigma2, mu1, sigma1)  # a distance is symmetric
    assert swapped == pytest.approx(value, rel=1e-10)
    # torch inputs (float32) are accepted and computed in float64
    as_torch = frechet_distance(*(torch.from_numpy(x).float() for x in (mu1, sigma1, mu2, sigma2)))
    assert as_torch == pytest.approx(value, rel=1e-5)


def test_estimate_from_samples_approaches_closed_form():
    rng = np.random.default_rng(2)
    dim = 3
    mu1, mu2 = np.zeros(dim), np.array([1.0, 0.5, -0.5])
    sigma1, sigma2 = random_spd(rng, dim), random_spd(rng, dim)
    exact = frechet_distance(mu1, sigma1, mu2, sigma2)  # ~8.3
    samples1 = rng.multivariate_normal(mu1, sigma1, 100_000)
    samples2 = rng.multivariate_normal(mu2, sigma2, 100_000)
    mu_hat, sigma_hat = gaussian_stats(samples1)
    np.testing.assert_allclose(mu_hat, mu1, atol=0.05)
    estimate = frechet_distance_from_features(samples1, samples2)
    # sampling std of this estimate is ~0.04 at N = 100k (measured over 40 seeds); 4 std
    assert estimate == pytest.approx(exact, abs=0.16)
    few = frechet_distance_from_features(samples1[:50], samples2[:50])
    assert abs(few - exact) > abs(estimate - exact)


def test_singular_covariances_warn_and_stay_accurate():
    # rank-deficient but exactly known: FD = (1 - 2)^2 + 0 = 1 for diag(1, 0) vs diag(4, 0)
    with pytest.warns(RuntimeWarning, match="near-\\)?singular"):
        value = frechet_distance(np.zeros(2), np.diag([1.0, 0.0]), np.zeros(2), np.diag([4.0, 0.0]))
    # the added c * I (c = 1e-6 * 4) lowers the value by about 2 * sqrt(c * 4) = 8e-3 at most
    assert value == pytest.approx(1.0, abs=8e-3)

    # fewer samples than dimensions: singular estimates, the distance of a set to itself is still 0
    features = np.random.default_rng(3).standard_normal((5, 16))
    with pytest.warns(RuntimeWarning):
        assert frechet_distance_from_features(features, features) < 1e-9
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a well-conditioned case must not warn
        frechet_distance(np.zeros(2), np.eye(2), np.ones(2), 2 * np.eye(2))


def test_frechet_rejects_bad_inputs():
    with pytest.raises(UserError, match="shapes disagree"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(UserError, match="not positive semi-definite"):
        frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))
    with pytest.raises(UserError, match="at least 2"):
        frechet_distance_from_features(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(UserError, match="NaN"):
        frechet_distance_from_features(np.full((3, 2), np.nan), np.zeros((3, 2)))


# ----------------------------------------------------------------------------- FVD with a scripted I3D stand-in

FEATURE_WEIGHTS = torch.from_numpy(np.random.default_rng(4).standard_normal((12, 6))).float()


class StyleGanVStandIn(torch.nn.Module):
    """Mimics i3d_torchscript.pt's call: refuses anything but (B, 3, T, 224, 224) in [-1, 1] with
    rescale=False, resize=False, return_features=True. Features: 2x2 spatial means per channel -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("weights", FEATURE_WEIGHTS.clone())

    def forward(
        self, x: torch.Tensor, rescale: bool = True, resize: bool = True, return_features: bool = False
    ) -> torch.Tensor:
        if rescale or resize or not return_features:
            raise RuntimeError("called without rescale=False, resize=False, return_features=True")
        if x.shape[1] != 3 or x.shape[3] != 224 or x.shape[4] != 224:
            raise RuntimeError("expected (B, 3, T, 224, 224)")
        if x.min() < -1.0 or x.max() > 1.0:
            raise RuntimeError("expected values in [-1, 1]")
        pooled = torch.nn.functional.adaptive_avg_pool3d(x, (1, 2, 2)).flatten(1)  # (B, 12)
        return pooled @ self.weights


class PlainStandIn(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("weights", FEATURE_WEIGHTS.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool3d(x, (1, 2, 2)).flatten(1)
        return (pooled @ self.weights).view(x.shape[0], 6, 1)  # a trailing axis, flattened by the caller


@pytest.fixture(scope="module")
def scripted_paths(tmp_path_factory):
    """Both stand-ins scripted and saved as real TorchScript archives (what users hand to compute_fvd)."""
    folder = tmp_path_factory.mktemp("i3d")
    stylegan = folder / "i3d_torchscript.pt"
    plain = folder / "plain_torchscript.pt"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.* is deprecated", category=DeprecationWarning)
        torch.jit.save(torch.jit.script(StyleGanVStandIn()), str(stylegan))
        torch.jit.save(torch.jit.script(PlainStandIn()), str(plain))
    return stylegan, plain


def clip_set(num_videos: int = 32, seed: int = 5) -> torch.Tensor:
    """Clips (N, 3, 9, 16, 16) in [-0.6, 0.6]: per-clip random quadrant brightness plus pixel noise."""
    generator = torch.Generator().manual_seed(seed)
    quadrants = torch.rand(num_videos, 3, 1, 2, 2, generator=generator) - 0.5
    base = quadrants.repeat_interleave(8, dim=3).repeat_interleave(8, dim=4).expand(-1, -1, 9, -1, -1)
    return base + 0.1 * (torch.rand(num_videos, 3, 9, 16, 16, generator=generator) - 0.5)


def test_fvd_through_saved_torchscript(scripted_paths):
    stylegan_path, _ = scripted_paths
    real = clip_set()
    batches = list(real.split(10))  # an iterable of batches of uneven size

    same = compute_fvd(batches, real, stylegan_path, batch_size=4, progress=False)
    assert same["fvd"] < 1e-6
    assert same["i3d_call"] == "stylegan_v" and same["i3d"] == str(stylegan_path)
    assert (same["num_real"], same["num_fake"], same["num_frames"], same["feature_dim"]) == (32, 32, 9, 6)
    assert same["real_resolution"] == [16, 16] and same["i3d_resolution"] == 224
    assert same["resize_mode"] == "bilinear"
    json.dumps(same)

    # a brightness shift d moves every feature by d * (1^T W) and leaves the covariance: FVD = d^2 |1^T W|^2
    shift_norm = float(FEATURE_WEIGHTS.double().sum(dim=0).square().sum())
    values = []
    for shift in (0.1, 0.3):
        result = compute_fvd(real, real + shift, stylegan_path, progress=False)
        assert result["fvd"] == pytest.approx(shift**2 * shift_norm, rel=1e-4)
        values.append(result["fvd"])
    assert 0 < values[0] < values[1]


def test_fvd_plain_module_fallback_and_sample_count(scripted_paths):
    stylegan_path, plain_path = scripted_paths
    real, fake = clip_set(seed=5), clip_set(seed=6)
    reference = compute_fvd(real, fake, stylegan_path, num_videos=20, progress=False)
    plain = compute_fvd(real, fake, plain_path, num_videos=20, progress=False)
    assert plain["i3d_call"] == "plain" and reference["i3d_call"] == "stylegan_v"
    assert plain["num_real"] == plain["num_fake"] == 20
    assert plain["fvd"] == pytest.approx(reference["fvd"], rel=1e-5) and plain["fvd"] > 0
    in_memory = I3DFeatures(PlainStandIn())
    assert in_memory(real[:3]).shape == (3, 6)


def test_fvd_rejects_bad_inputs(scripted_paths, tmp_path):
    stylegan_path, _ = scripted_paths
    missing = tmp_path / "nowhere" / "i3d_torchscript.pt"
    with pytest.raises(UserError, match="nowhere"):
        compute_fvd(clip_set(4), clip_set(4), missing, progress=False)
    not_torchscript = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, str(not_torchscript))
    with pytest.raises(UserError, match="not a TorchScript"):
        I3DFeatures(not_torchscript)
    real = clip_set(8)
    with pytest.raises(UserError, match="asked for 16 real clips but got only 8"):
        compute_fvd(real, real, stylegan_path, num_videos=16, progress=False)
    with pytest.raises(UserError, match="9 frames, fake clips 10"):
        compute_fvd(real, torch.cat([real, real[:, :, :1]], dim=2), stylegan_path, progress=False)
    with pytest.raises(UserError, match=">= 9"):
        compute_fvd(real[:, :, :8], real[:, :, :8], stylegan_path, progress=False)
    with pytest.raises(UserError, match="resize mode"):
        compute_fvd(real, real, stylegan_path, resize_mode="nearest", progress=False)


def test_resize_modes():
    video = torch.randn(1, 2, 1, 5, 7, dtype=torch.float64)
    # TF1 resize_bilinear: output pixel i reads source i * in / out, no half-pixel offset, edge-clamped
    out = resize_frames(video, size=9, mode="tf1_bilinear")
    frame = video[0, 0, 0].numpy()

    def tf1_sample(y: float, x: float) -> float:
        y0, x0 = int(np.floor(y)), int(np.floor(x))
        y1, x1 = min(y0 + 1, 4), min(x0 + 1, 6)
        fy, fx = y - y0, x - x0
        top = frame[y0, x0] * (1 - fx) + frame[y0, x1] * fx
        bottom = frame[y1, x0] * (1 - fx) + frame[y1, x1] * fx
        return top * (1 - fy) + bottom * fy

    expected = np.array([[tf1_sample(i * 5 / 9, j * 7 / 9) for j in range(9)] for i in range(9)])
    np.testing.assert_allclose(out[0, 0, 0].numpy(), expected, rtol=0, atol=1e-12)
    assert out[0, 0, 0, 0, 0] == video[0, 0, 0, 0, 0]  # no half-pixel shift: corner pixel kept

    for mode in ("bilinear", "tf1_bilinear"):
        constant = torch.full((2, 3, 2, 16, 12), 0.25)
        resized = resize_frames(constant, size=224, mode=mode)
        assert resized.shape == (2, 3, 2, 224, 224)
        torch.testing.assert_close(resized, torch.full_like(resized, 0.25))
