"""host_em (infer's NumPy EM start) against scikit-learn (same initial parameters) and em_fit."""

import warnings

import jax
import numpy as np
import pytest
from sklearn.mixture import GaussianMixture

import bayesgmm
from bayesgmm import _host_em as host_em
from tests._references import (
    COVARIANCE_TYPES,
    covariances_in_layout,
    full_covariances,
    make_mixture_data,
    match_components,
    precisions_from_covariances,
)


def _in_layout(dense, covariance_type):
    """host_em's dense (k, d, d) covariances in scikit-learn's layout."""
    if covariance_type == "tied":
        return dense[0]
    return covariances_in_layout(dense, covariance_type)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("d", [1, 2, 3])
def test_em_takes_the_same_path_as_sklearn(covariance_type, d):
    """Seven iterations from the same start agree with scikit-learn to float64 round-off.

    tol=0 forces exactly 7 M-steps in both; round-off over 7 iterations is ~1e-13, and 1e-9
    relative still catches any algorithmic difference (a divisor, reg_covar, the tied
    pooling), which shows at 1e-3 or more.
    """
    rng = np.random.default_rng(10 + d)
    k = 3
    X, _ = make_mixture_data(rng, 300, d, k)
    means = X[rng.choice(len(X), size=k, replace=False)]
    covariances = covariances_in_layout(np.repeat(np.atleast_2d(np.cov(X.T))[None], k, axis=0), covariance_type)
    weights = np.full(k, 1.0 / k)
    reference = GaussianMixture(
        k,
        covariance_type=covariance_type,
        tol=0.0,
        max_iter=7,
        weights_init=weights,
        means_init=means,
        precisions_init=precisions_from_covariances(covariances, covariance_type),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged after 7 iterations
        reference.fit(X)
    start = (weights, means, full_covariances(covariances, covariance_type, k, d))
    log_likelihood, (weights, means, dense), n_iter = host_em.em(
        X, np.ones(len(X)), start, covariance_type, max_iter=7, tol=0.0, reg_covar=1e-6
    )
    assert n_iter == reference.n_iter_ == 7
    np.testing.assert_allclose(weights, reference.weights_, rtol=1e-9)
    np.testing.assert_allclose(means, reference.means_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(_in_layout(dense, covariance_type), reference.covariances_, rtol=1e-9)
    np.testing.assert_allclose(log_likelihood, reference.score(X), rtol=1e-12)


@pytest.mark.parametrize("covariance_type", ["full", "spherical"])
def test_integer_weights_count_as_repeated_rows(covariance_type):
    """Weight m on a row is m copies of it: the same EM path to round-off."""
    rng = np.random.default_rng(3)
    X, _ = make_mixture_data(rng, 80, 2, 2)
    counts = rng.integers(0, 4, size=len(X))
    start = (np.array([0.5, 0.5]), X[:2], np.repeat(np.cov(X.T)[None], 2, axis=0))
    settings = dict(max_iter=5, tol=0.0, reg_covar=1e-6)
    weighted = host_em.em(X, counts.astype(float), start, covariance_type, **settings)
    repeated = host_em.em(np.repeat(X, counts, axis=0), np.ones(counts.sum()), start, covariance_type, **settings)
    np.testing.assert_allclose(weighted[0], repeated[0], rtol=1e-12)
    for a, b in zip(weighted[1], repeated[1]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fit_finds_the_optimum_em_fit_finds(covariance_type):
    """On separated clusters both reach the same optimum (up to the components' order).

    Unit-variance clusters 8 sd apart: every covariance type is well specified and EM
    converges in a few iterations. Both stop once an iteration changes the mean
    log-likelihood by less than tol = 1e-3, so each is within about tol of the common
    optimum: the mean log-likelihoods agree within 2 tol, and the means within 0.05 sd.
    """
    rng = np.random.default_rng(7)
    X = np.concatenate([rng.normal(center, 1.0, size=(200, 2)) for center in ([0, 0], [8, 0], [0, 8])])
    params = host_em.fit(X, np.ones(len(X)), 3, covariance_type, seed=0)
    with jax.enable_x64(True), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = bayesgmm.em_fit(X, 3, covariance_type=covariance_type, n_init=5, max_iter=500, seed=0).params
    assert params.covariance_type == covariance_type and params.scale.shape == reference.scale.shape
    host_log_likelihood = float(np.mean(params.log_prob(X)))
    reference_log_likelihood = float(np.mean(reference.log_prob(X)))
    assert abs(host_log_likelihood - reference_log_likelihood) < 2e-3
    permutation = match_components(np.asarray(reference.means), params.means)
    np.testing.assert_allclose(params.means[permutation], reference.means, atol=0.05)


def test_fit_keeps_the_data_dtype_and_drops_zero_weight_rows():
    rng = np.random.default_rng(0)
    X, _ = make_mixture_data(rng, 200, 2, 2, separation=6.0)
    far = np.vstack([X, np.full((5, 2), 1e3)])  # rows of weight 0 must not pull a component
    w = np.r_[np.ones(len(X)), np.zeros(5)]
    params = host_em.fit(far.astype(np.float32), w, 2, "full", seed=1)
    assert params.means.dtype == params.scale.dtype == params.weights.dtype == np.float32
    assert np.all(np.abs(params.means) < 50)
    np.testing.assert_allclose(params.weights.sum(), 1.0, rtol=1e-6)


def test_fit_returns_none_when_every_restart_degenerates():
    """Two distinct rows cannot fill three components: no restart survives, and infer falls back."""
    X = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]]), 20, axis=0)
    assert host_em.fit(X, np.ones(len(X)), 3, "full", seed=0) is None


def test_use_host_only_for_small_problems():
    assert host_em.use_host(1000, 3, 2)  # infer's benchmark workload
    assert not host_em.use_host(100_000, 5, 4)
