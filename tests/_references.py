"""Shared helpers for the tests: generating mixtures and scikit-learn references."""

import numpy as np
from scipy.optimize import linear_sum_assignment

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def random_spd(rng, d, scale=1.0):
    A = rng.normal(size=(d, d))
    return scale * (A @ A.T / d + 0.5 * np.eye(d))


def covariances_in_layout(full_covariances, covariance_type):
    """Convert (k, d, d) covariances to scikit-learn's layout for the type."""
    if covariance_type == "full":
        return full_covariances
    if covariance_type == "tied":
        return full_covariances.mean(axis=0)
    diagonals = np.diagonal(full_covariances, axis1=1, axis2=2)
    return diagonals if covariance_type == "diag" else diagonals.mean(axis=1)


def full_covariances(covariances, covariance_type, k, d):
    """Expand covariances in scikit-learn's layout for the type to (k, d, d)."""
    if covariance_type == "full":
        return covariances
    if covariance_type == "tied":
        return np.broadcast_to(covariances, (k, d, d))
    if covariance_type == "diag":
        return np.stack([np.diag(row) for row in covariances])
    return covariances[:, None, None] * np.eye(d)


def precisions_from_covariances(covariances, covariance_type):
    if covariance_type in ("full", "tied"):
        return np.linalg.inv(covariances)
    return 1.0 / covariances


def make_mixture_data(rng, n, d, k, separation=4.0):
    """Rows from a mixture with random means, SPD covariances and weights."""
    means = rng.normal(scale=separation, size=(k, d))
    covariances = np.stack([random_spd(rng, d) for _ in range(k)])
    weights = rng.dirichlet(np.full(k, 5.0))
    labels = rng.choice(k, size=n, p=weights)
    noise = rng.normal(size=(n, d))
    chol = np.linalg.cholesky(covariances)
    X = means[labels] + np.einsum("nij,nj->ni", chol[labels], noise)
    return X, labels


def match_components(reference_means, means):
    """Permutation ``p`` such that ``means[p]`` lines up with ``reference_means``."""
    cost = ((reference_means[:, None, :] - means[None, :, :]) ** 2).sum(-1)
    _, columns = linear_sum_assignment(cost)
    return columns


def permute_covariances(covariances, permutation, covariance_type):
    return covariances if covariance_type == "tied" else covariances[permutation]
