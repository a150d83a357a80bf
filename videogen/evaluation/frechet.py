"""Frechet distance between Gaussians, the statistic behind FID and FVD.

    d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2)

The matrix square roots are taken by symmetric eigen-decomposition in float64 (numpy only, no scipy):
``S1^1/2`` from the eigenvalues of S1 (clipped at 0), then the eigenvalues of the symmetric PSD matrix
``S1^1/2 S2 S1^1/2``. This is the same quantity as the usual ``tr sqrtm(S1 S2)`` (the two matrices are
similar) but never needs a complex or non-symmetric square root.

Near-singular covariances (the smallest eigenvalue below ``eps`` times the largest of either matrix,
e.g. estimated from fewer samples than feature dimensions) get the same ``c * I`` added to both, with
a ``RuntimeWarning`` that states ``c``; with ``eps = 1e-6`` this lowers d^2 by at most about
``2 * sqrt(eps) * lambda_max`` per affected direction. Distances from fewer samples than dimensions
are poor estimates in any case: FD is biased in the sample count, so compare only at equal N.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from videogen.errors import UserError

ArrayLike = np.ndarray | torch.Tensor


def _as_float64(array: ArrayLike) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().to("cpu", torch.float64).numpy()
    return np.asarray(array, dtype=np.float64)


def gaussian_stats(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D), float64, of features (N, D) with N >= 2."""
    features = _as_float64(features)
    if features.ndim != 2:
        raise UserError(f"features must be a 2-D array (N, D); got shape {features.shape}")
    if features.shape[0] < 2:
        raise UserError(
            f"need at least 2 feature vectors to estimate a covariance; got {features.shape[0]} "
            "(evaluate on more samples)"
        )
    if not np.isfinite(features).all():
        raise UserError("features contain NaN or inf; check the feature extractor's inputs")
    return features.mean(axis=0), np.cov(features, rowvar=False, ddof=1).reshape(features.shape[1], -1)


def _symmetric_eig(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.linalg.eigh(0.5 * (matrix + matrix.T))


def frechet_distance(
    mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike, eps: float = 1e-6
) -> float:
    """Squared Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    mu: (D,), sigma: (D, D) symmetric positive semi-definite (torch or numpy, any float dtype;
    computed in float64). Returns a float >= 0 (round-off below 0 is clipped). See the module doc
    for the near-singular handling controlled by ``eps``.
    """
    mu1, mu2 = _as_float64(mu1).reshape(-1), _as_float64(mu2).reshape(-1)
    sigma1, sigma2 = _as_float64(sigma1), _as_float64(sigma2)
    dim = mu1.shape[0]
    if mu2.shape != (dim,) or sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
        raise UserError(
            f"Frechet distance: shapes disagree: mu1 {mu1.shape}, sigma1 {sigma1.shape}, "
            f"mu2 {mu2.shape}, sigma2 {sigma2.shape}; need (D,) and (D, D) for one D"
        )
    for name, value in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.isfinite(value).all():
            raise UserError(f"Frechet distance: {name} contains NaN or inf")

    eigvals1, eigvecs1 = _symmetric_eig(sigma1)
    eigvals2 = np.linalg.eigvalsh(0.5 * (sigma2 + sigma2.T))
    scale = max(float(eigvals1.max()), float(eigvals2.max()), 0.0)
    smallest = min(float(eigvals1.min()), float(eigvals2.min()))
    if smallest < -1e-3 * scale:
        raise UserError(
            f"Frechet distance: a covariance has eigenvalue {smallest:.3g} (largest {scale:.3g}); "
            "it is not positive semi-definite, so it is not a covariance matrix"
        )
    offset = 0.0
    if scale > 0.0 and smallest < eps * scale:
        offset = eps * scale - smallest
        warnings.warn(
            f"Frechet distance: covariance is (near-)singular (smallest eigenvalue {smallest:.3g}, "
            f"largest {scale:.3g}); added {offset:.3g} * I to both. Use more samples than feature "
            f"dimensions ({dim}) for a reliable estimate.",
            RuntimeWarning,
            stacklevel=2,
        )
        eigvals1 = eigvals1 + offset
        sigma2 = sigma2 + offset * np.eye(dim)

    # S1^1/2 = V diag(sqrt(l)) V^T; then the eigenvalues of the PSD matrix S1^1/2 S2 S1^1/2
    sqrt_sigma1 = (eigvecs1 * np.sqrt(np.clip(eigvals1, 0.0, None))) @ eigvecs1.T
    product = sqrt_sigma1 @ sigma2 @ sqrt_sigma1
    trace_sqrt_product = float(
        np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (product + product.T)), 0.0, None)).sum()
    )

    mean_term = float(np.sum((mu1 - mu2) ** 2))
    trace1 = float(np.clip(eigvals1, 0.0, None).sum())
    trace2 = float(np.trace(sigma2))
    return max(0.0, mean_term + trace1 + trace2 - 2.0 * trace_sqrt_product)


def frechet_distance_from_features(features1: ArrayLike, features2: ArrayLike, eps: float = 1e-6) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N1, D) and (N2, D)."""
    mu1, sigma1 = gaussian_stats(features1)
    mu2, sigma2 = gaussian_stats(features2)
    return frechet_distance(mu1, sigma1, mu2, sigma2, eps=eps)
