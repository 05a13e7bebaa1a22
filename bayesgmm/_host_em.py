"""EM in NumPy on the host: ``infer``'s starting point on small data sets.

``infer`` starts its chains at an EM fit and relabels every draw to that fit's components.
On the data sizes NUTS is run on (a few thousand rows), ``em_fit``'s compiled program costs
more to build than to run: about 4 CPU-seconds of tracing and XLA compilation for a fit
that NumPy does in milliseconds, and on a small machine that compilation competes for the
cores with the NUTS program's own (``infer`` compiles both at once). ``fit`` here runs the
same algorithm in NumPy, in float64, and compiles nothing:

- k-means++ seeding (greedy, ``2 + ⌊log k⌋`` candidates per center) and Lloyd's
  iterations (scikit-learn's stopping rule), then one M-step from the hard labels;
- EM with scikit-learn's M-step (``n_k + 10 ε``, ``reg_covar`` on the diagonal) and its
  stopping rule (change of the mean log-likelihood below ``tol``), up to ``max_iter``
  M-steps;
- the restart of highest final log-likelihood out of ``n_init``.

It draws its own random numbers (NumPy's), so it does not reproduce ``em_fit``'s fit
number for number; it finds an optimum of the same quality (tested against ``em_fit``).
A restart in which a component empties (fewer than 1e-3 of the mean row weight) or a
covariance is not positive definite is dropped; ``fit`` returns None when every restart
was, and ``infer`` then uses ``em_fit`` with re-seeding. Data sets larger than
``HOST_EM_MAX_WORK`` use ``em_fit`` (its compiled program is the faster one there).

May touch: NumPy only; returns ``GMMParams`` holding NumPy arrays.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

from bayesgmm.em._kernels import EMPTY_FRACTION
from bayesgmm.params import GMMParams

# n * k * d * (d + 1) at most: a host fit of 180 000 took 0.3-0.4 s here, about 1 s at the limit (em_fit: ~3 s)
HOST_EM_MAX_WORK = 500_000


def use_host(n: int, k: int, d: int) -> bool:
    """Whether ``fit`` is the cheaper way to an EM fit of this size."""
    return n * k * d * (d + 1) <= HOST_EM_MAX_WORK


def _squared_distances(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """(n, m) squared distances of every row to every center."""
    return np.maximum(np.sum(X**2, axis=1)[:, None] - 2.0 * X @ centers.T + np.sum(centers**2, axis=1)[None, :], 0.0)


def _kmeans_plusplus(X: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """(k, d) centers by greedy k-means++ (scikit-learn's variant, row weights as multiplicities)."""
    n_trials = 2 + int(math.log(k))
    first = rng.choice(X.shape[0], p=w / w.sum())
    centers = [X[first]]
    closest = _squared_distances(X, X[first][None])[:, 0] * w
    for _ in range(1, k):
        cumulative = np.cumsum(closest)
        candidates = np.minimum(np.searchsorted(cumulative, rng.uniform(size=n_trials) * cumulative[-1]), len(X) - 1)
        candidate_closest = np.minimum(closest[:, None], _squared_distances(X, X[candidates]) * w[:, None])
        best = np.argmin(candidate_closest.sum(axis=0))
        centers.append(X[candidates[best]])
        closest = candidate_closest[:, best]
    return np.stack(centers)


def _lloyd(X: np.ndarray, w: np.ndarray, centers: np.ndarray, max_iter: int = 300, tol: float = 1e-4) -> np.ndarray:
    """(n,) labels after Lloyd's iterations; stops when the total squared center shift is at
    most ``tol`` times the mean feature variance. Empty clusters keep their center."""
    k = centers.shape[0]
    mean = w @ X / w.sum()
    threshold = tol * np.mean(w @ (X - mean) ** 2 / w.sum())
    for _ in range(max_iter):
        labels = np.argmin(_squared_distances(X, centers), axis=1)
        counts = np.bincount(labels, weights=w, minlength=k)
        sums = np.stack([np.bincount(labels, weights=w * X[:, j], minlength=k) for j in range(X.shape[1])], axis=1)
        new = np.where(counts[:, None] > 0, sums / np.where(counts > 0, counts, 1.0)[:, None], centers)
        shift = np.sum((new - centers) ** 2)
        centers = new
        if shift <= threshold:
            break
    return np.argmin(_squared_distances(X, centers), axis=1)


def _m_step(X, w, resp, reg_covar: float, covariance_type: str):
    """Weights, means and dense covariances (k, d, d) from responsibilities (n, k); None if a
    component is empty."""
    weighted = resp * w[:, None]
    nk = weighted.sum(axis=0) + 10 * np.finfo(float).eps
    if np.any(nk < EMPTY_FRACTION * w.mean()):
        return None
    means = weighted.T @ X / nk[:, None]
    k, d = means.shape
    diff = X[None, :, :] - means[:, None, :]  # (k, n, d)
    covariances = np.einsum("kn,kni,knj->kij", weighted.T, diff, diff) / nk[:, None, None]
    if covariance_type == "tied":
        covariances = np.broadcast_to(np.einsum("k,kij->ij", nk, covariances) / nk.sum(), (k, d, d))
    elif covariance_type == "diag":
        covariances = np.einsum("kii->ki", covariances)[:, :, None] * np.eye(d)
    elif covariance_type == "spherical":
        covariances = np.einsum("kii->k", covariances)[:, None, None] / d * np.eye(d)
    return nk / nk.sum(), means, covariances + reg_covar * np.eye(d)


def _log_resp(X, weights, means, covariances):
    """Per-row log-likelihood (n,) and log responsibilities (n, k); None if a covariance is not
    positive definite."""
    try:
        cholesky = np.linalg.cholesky(covariances)
    except np.linalg.LinAlgError:
        return None
    inverse = np.linalg.inv(cholesky)  # (k, d, d), lower triangular
    y = np.einsum("kij,knj->kni", inverse, X[None, :, :] - means[:, None, :])
    d = X.shape[1]
    log_det = np.sum(np.log(np.einsum("kii->ki", cholesky)), axis=1)
    log_joint = (np.log(weights) - log_det - 0.5 * d * math.log(2 * math.pi))[None, :] - 0.5 * np.sum(y**2, 2).T
    log_norm = logsumexp(log_joint, axis=1)
    return log_norm, log_joint - log_norm[:, None]


def em(X, w, params, covariance_type: str, *, max_iter: int, tol: float, reg_covar: float):
    """EM from ``params = (weights, means, dense covariances)``: ``(mean log-likelihood of the
    returned parameters, parameters, M-steps)``, or None when a component degenerates.

    Stops when the mean log-likelihood changes by less than ``tol`` between iterations or
    after ``max_iter`` M-steps; the last E-step scores the returned parameters.
    """
    previous = -np.inf
    for n_iter in range(max_iter + 1):
        scored = _log_resp(X, *params)
        if scored is None:
            return None
        log_norm, log_resp = scored
        log_likelihood = float(w @ log_norm / w.sum())
        if abs(log_likelihood - previous) < tol or n_iter == max_iter:
            return log_likelihood, params, n_iter
        previous = log_likelihood
        params = _m_step(X, w, np.exp(log_resp), reg_covar, covariance_type)
        if params is None:
            return None


def _one_fit(X, w, k, covariance_type, rng, *, max_iter, tol, reg_covar):
    """(mean log-likelihood, (weights, means, covariances), M-steps) of one restart, or None."""
    labels = _lloyd(X, w, _kmeans_plusplus(X, w, k, rng))
    params = _m_step(X, w, np.eye(k)[labels], reg_covar, covariance_type)
    if params is None:
        return None
    return em(X, w, params, covariance_type, max_iter=max_iter, tol=tol, reg_covar=reg_covar)


def _scale(covariances: np.ndarray, covariance_type: str) -> np.ndarray:
    """Dense covariances (k, d, d) -> ``GMMParams.scale`` in the layout of ``covariance_type``."""
    if covariance_type == "full":
        return np.linalg.cholesky(covariances)
    if covariance_type == "tied":
        return np.linalg.cholesky(covariances[0])
    if covariance_type == "diag":
        return np.sqrt(np.einsum("kii->ki", covariances))
    return np.sqrt(covariances[:, 0, 0])


def fit(
    X: np.ndarray,
    sample_weight: np.ndarray,
    k: int,
    covariance_type: str,
    *,
    n_init: int = 5,
    max_iter: int = 500,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    seed: int = 0,
) -> GMMParams | None:
    """The best of ``n_init`` EM fits of ``X (n, d)`` with row weights ``(n,)``, or None.

    Parameters as ``em_fit``'s. The parameters are in ``X``'s dtype (computed in float64).
    """
    X64, w = np.asarray(X, dtype=np.float64), np.asarray(sample_weight, dtype=np.float64)
    rows = w > 0  # rows of weight 0 count for nothing and are never chosen as centers
    X64, w = X64[rows], w[rows]
    rng = np.random.default_rng(seed)
    fits = [
        _one_fit(X64, w, k, covariance_type, rng, max_iter=max_iter, tol=tol, reg_covar=reg_covar)
        for _ in range(n_init)
    ]
    fits = [fit for fit in fits if fit is not None and np.isfinite(fit[0])]
    if not fits:
        return None
    _, (weights, means, covariances), _ = max(fits, key=lambda fit: fit[0])
    dtype = np.asarray(X).dtype
    return GMMParams(
        weights.astype(dtype), means.astype(dtype), _scale(covariances, covariance_type).astype(dtype), covariance_type
    )
