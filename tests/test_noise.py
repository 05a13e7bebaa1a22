"""A uniform background-noise component (``em_fit(noise=True)``, mclust's ``Vinv``).

- The density ``π_0 / V + (1 − π_0) Σ_k π_k N(x | μ_k, Σ_k)`` against scipy, and ``V`` the
  bounding box's volume (or the given hypervolume).
- EM's iterations equal an independent NumPy transcription of the noise-augmented EM from
  the same start (Banfield and Raftery 1993; Fraley and Raftery 2002, §5.2).
- Planted uniform outliers are recovered (precision and recall ≥ 0.9) in a stated setting.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.special
import scipy.stats

import bayesgmm
from bayesgmm import GMMParams, em_fit


def _planted(seed, n_outliers=100, half_width=15.0, d=2):
    """Two clusters of 450 rows (standard deviation 0.5, centres ±3 on the first axis) and
    ``n_outliers`` rows uniform on the cube of half-width ``half_width``."""
    rng = np.random.default_rng(seed)
    centre = np.zeros(d)
    centre[0] = 3.0
    clusters = np.concatenate([rng.normal(-centre, 0.5, (450, d)), rng.normal(centre, 0.5, (450, d))])
    outliers = rng.uniform(-half_width, half_width, (n_outliers, d))
    return np.concatenate([clusters, outliers]), np.r_[np.zeros(900, bool), np.ones(n_outliers, bool)]


def _reference_log_joint(params, X):
    log_volume = np.sum(np.log(np.diff(np.asarray(params.noise_bounds), axis=0)))
    noise = float(params.noise_weight)
    columns = [
        np.log((1 - noise) * w) + scipy.stats.multivariate_normal(m, S).logpdf(X)
        for w, m, S in zip(np.asarray(params.weights), np.asarray(params.means), np.asarray(params.covariance_matrices))
    ]
    return np.stack(columns + [np.full(len(X), np.log(noise) - log_volume)], axis=1)


def test_density_and_predictions_with_a_noise_component():
    X, _ = _planted(0)
    result = em_fit(X, 2, noise=True, tol=1e-6, max_iter=300)
    params = result.params
    reference = _reference_log_joint(params, X)
    np.testing.assert_allclose(np.asarray(params.log_joint(X)), reference, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(params.log_prob(X)), scipy.special.logsumexp(reference, axis=1), rtol=1e-10)
    assert params.predict_proba(X).shape == (len(X), 3)
    labels = np.asarray(params.predict(X))
    np.testing.assert_array_equal(labels, np.where(reference.argmax(1) == 2, -1, reference.argmax(1)))
    np.testing.assert_allclose(result.log_likelihood, np.mean(params.log_prob(X)), rtol=1e-10)
    # the box is the data's bounding box; the noise weight is a free parameter of BIC
    np.testing.assert_allclose(np.asarray(params.noise_bounds), [X.min(0), X.max(0)], rtol=1e-12)
    plain = GMMParams(params.weights, params.means, params.scale, params.covariance_type)
    assert params.n_parameters == plain.n_parameters + 1


def test_given_hypervolume():
    X, _ = _planted(1)
    result = em_fit(X, 2, noise=2000.0, tol=1e-6, max_iter=300)
    np.testing.assert_allclose(np.prod(np.diff(np.asarray(result.params.noise_bounds), axis=0)), 2000.0, rtol=1e-10)


def _reference_em(X, weights, means, covariances, noise, log_volume, n_iter, reg_covar):
    """Noise-augmented EM for full covariances (Fraley and Raftery 2002, §5.2), NumPy and SciPy."""
    history = []
    for iteration in range(n_iter + 1):
        log_joint = np.stack(
            [
                np.log((1 - noise) * w) + scipy.stats.multivariate_normal(m, S).logpdf(X)
                for w, m, S in zip(weights, means, covariances)
            ]
            + [np.full(len(X), np.log(noise) - log_volume)],
            axis=1,
        )
        log_norm = scipy.special.logsumexp(log_joint, axis=1)
        history.append(log_norm.mean())
        if iteration == n_iter:
            break
        resp = np.exp(log_joint - log_norm[:, None])
        counts = resp[:, :-1].sum(0)
        noise = resp[:, -1].sum() / len(X)
        weights = counts / counts.sum()
        means = resp[:, :-1].T @ X / counts[:, None]
        diff = X[:, None, :] - means[None]
        covariances = np.einsum("nk,nki,nkj->kij", resp[:, :-1], diff, diff) / counts[:, None, None]
        covariances += reg_covar * np.eye(X.shape[1])
    return np.array(history), weights, means, covariances, noise


def test_em_iterations_equal_an_independent_transcription():
    """From a given start (the noise weight at ``NOISE_START``), eight iterations: the same
    log-likelihoods, noise weight and parameters to float64 round-off (1e-9: the reference inverts
    matrices). The Student-t steps are checked in tests/test_families.py; the noise step is the same."""
    X, _ = _planted(2, n_outliers=60)
    means0 = np.array([[-1.0, 0.5], [1.0, -0.5]])
    covariances0 = np.stack([np.eye(2) * 4.0] * 2)
    # a given start: weights, means and covariances; no noise guess, the noise weight starts at 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesgmm.ConvergenceWarning)
        result = em_fit(
            X, 2, noise=True, weights_init=[0.5, 0.5], means_init=means0, covariances_init=covariances0,
            max_iter=8, tol=0.0, reg_covar=1e-6,
        )  # fmt: skip
    log_volume = float(np.sum(np.log(X.max(0) - X.min(0))))
    history, weights, means, covariances, noise = _reference_em(
        X, np.array([0.5, 0.5]), means0, covariances0, 0.1, log_volume, 8, 1e-6
    )
    np.testing.assert_allclose(result.log_likelihood_history, history, rtol=1e-9)
    np.testing.assert_allclose(float(result.params.noise_weight), noise, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(result.params.weights), weights, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(result.params.means), means, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.asarray(result.params.covariances), covariances, rtol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("family", ["gaussian", "student_t"])
def test_planted_outliers_are_recovered(seed, family):
    """Two clusters of 450 rows (sd 0.5, 6 apart) and 100 uniform outliers on [−15, 15]²: the rows
    labelled −1 are the outliers with precision and recall ≥ 0.9. (About 1% of the outliers fall
    inside a cluster's 3-sd ellipse, where no method can tell them apart; over seeds 0–7 the
    Gaussian fit's recall ranged 0.93–0.99 and its precision 0.98–1.)"""
    X, outlier = _planted(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesgmm.ConvergenceWarning)  # ν is slow to settle beside the noise
        result = em_fit(X, 2, noise=True, family=family, tol=1e-6, max_iter=500)
    flagged = np.asarray(result.params.predict(X)) == -1
    precision = np.sum(flagged & outlier) / np.sum(flagged)
    recall = np.sum(flagged & outlier) / np.sum(outlier)
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)
    np.testing.assert_allclose(np.sort(np.asarray(result.params.means)[:, 0]), [-3.0, 3.0], atol=0.1)


def test_without_outliers_the_noise_weight_is_small():
    X, _ = _planted(3, n_outliers=0)
    result = em_fit(X, 2, noise=True, tol=1e-6, max_iter=300)
    assert float(result.params.noise_weight) < 0.01
    # the box is then tight around the clusters: a few of their most extreme rows may go to the noise
    assert np.mean(np.asarray(result.params.predict(X)) == -1) < 0.01


def test_noise_with_missing_values_errors_and_streaming():
    X, outlier = _planted(4)
    reference = em_fit(X, 2, noise=True, tol=1e-8, max_iter=300)
    # streamed rows: the same fit up to summation order
    path = np.lib.format.open_memmap("/tmp/bayesgmm-noise-test.npy", mode="w+", dtype=np.float64, shape=X.shape)
    path[:] = X
    streamed = em_fit(np.load("/tmp/bayesgmm-noise-test.npy", mmap_mode="r"), 2, noise=True, tol=1e-8, max_iter=300)
    np.testing.assert_allclose(streamed.log_likelihood, reference.log_likelihood, rtol=1e-6)
    # zero measurement errors: the ordinary fit
    errors = em_fit(X, 2, noise=True, measurement_error=np.zeros_like(X), tol=1e-8, max_iter=300)
    np.testing.assert_allclose(errors.log_likelihood, reference.log_likelihood, rtol=1e-8)
    # missing values: the noise density is 1/V over a row's observed coordinates; EM stays monotone
    incomplete = X.copy()
    incomplete[np.random.default_rng(5).random(X.shape) < 0.1] = np.nan
    incomplete[np.all(np.isnan(incomplete), axis=1), 0] = 0.0
    marginal = em_fit(incomplete, 2, noise=True, missing="marginalize", tol=1e-8, max_iter=300)
    assert np.all(np.diff(marginal.log_likelihood_history) >= -1e-10)
    params = marginal.params
    widths = np.diff(np.asarray(params.noise_bounds), axis=0)[0]
    noise = float(params.noise_weight)
    total = 0.0
    for row in incomplete:
        observed = ~np.isnan(row)
        total += scipy.special.logsumexp(
            [
                np.log((1 - noise) * w)
                + scipy.stats.multivariate_normal(m[observed], S[np.ix_(observed, observed)]).logpdf(row[observed])
                for w, m, S in zip(
                    np.asarray(params.weights), np.asarray(params.means), np.asarray(params.covariance_matrices)
                )
            ]
            + [np.log(noise) - np.sum(np.log(widths[observed]))]
        )
    np.testing.assert_allclose(marginal.log_likelihood, total / len(X), rtol=1e-9)


def test_sample_draws_the_noise_inside_its_box():
    X, _ = _planted(6)
    params = em_fit(X, 2, noise=True, tol=1e-6, max_iter=300).params
    samples, labels = (np.asarray(a) for a in params.sample(20_000, seed=1))
    share = np.mean(labels == -1)
    p = float(params.noise_weight)
    assert abs(share - p) < 5 * np.sqrt(p * (1 - p) / 20_000)
    low, high = np.asarray(params.noise_bounds)
    assert np.all((samples[labels == -1] >= low) & (samples[labels == -1] <= high))


def test_bad_noise_arguments():
    X, _ = _planted(7)
    with pytest.raises(ValueError, match="hypervolume must be a finite number > 0"):
        em_fit(X, 2, noise=-1.0)
    with pytest.raises(TypeError, match="noise must be True"):
        em_fit(X, 2, noise="yes")
    constant = X.copy()
    constant[:, 1] = 1.0
    for noise in (True, 5.0):  # a hypervolume cannot scale a box of no width
        with pytest.raises(ValueError, match="takes one value on every row.*drop the constant feature"):
            em_fit(constant, 2, noise=noise)
    params = em_fit(X, 2, noise=True, tol=1e-3).params
    with pytest.raises(ValueError, match="noise component"):
        params.condition([0], [[0.0]])
    with pytest.raises(ValueError, match="noise component"):
        params.impute(X[:3])


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_save_and_load_keep_the_noise_component(tmp_path, suffix):
    X, _ = _planted(8)
    params = em_fit(X, 2, noise=True, family="student_t", tol=1e-3).params
    path = tmp_path / f"noise{suffix}"
    bayesgmm.save(params, path)
    loaded = bayesgmm.load(path)
    np.testing.assert_allclose(float(loaded.noise_weight), float(params.noise_weight), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(loaded.noise_bounds), np.asarray(params.noise_bounds), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(loaded.log_prob(X)), np.asarray(params.log_prob(X)), rtol=1e-12)
    assert loaded.family == "student_t"


def test_select_with_noise_picks_the_clusters_not_a_component_for_the_outliers():
    """Without noise BIC spends a broad third component on the outliers; with it, two clusters win."""
    X, _ = _planted(9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesgmm.ConvergenceWarning)
        plain = bayesgmm.select(X, k=range(1, 5), covariance_types="spherical", close_call_starts=0)
        noisy = bayesgmm.select(X, k=range(1, 5), covariance_types="spherical", noise=True)
    assert plain.best_k == 3 and noisy.best_k == 2
    assert noisy.best.params.noise_weight is not None
    # both in one grid: a noise column, and the noise fit wins; the plain half equals select without noise
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesgmm.ConvergenceWarning)
        # close calls are the whole grid's (with and without noise): without them the halves compare
        both = bayesgmm.select(X, k=range(1, 5), covariance_types="spherical", noise=(False, True), close_call_starts=0)
    assert list(both.table.columns[:3]) == ["k", "covariance_type", "noise"]
    assert both.best_k == 2 and both.best.params.noise_weight is not None
    without = both.table[~both.table["noise"].astype(bool)]
    np.testing.assert_allclose(without["bic"].to_numpy(), plain.table["bic"].to_numpy(), rtol=1e-12)


def test_other_tools_refuse_a_noise_component():
    X, _ = _planted(10)
    fit = em_fit(X, 2, noise=True, tol=1e-3)
    with pytest.raises(ValueError, match="noise component"):
        bayesgmm.infer(X, 2, method="map", init=fit)
    with pytest.raises(ValueError, match="noise component"):
        bayesgmm.em_partial_fit(fit, X)
    with pytest.raises(ValueError, match="noise component"):
        bayesgmm.bootstrap(X, fit, n_boot=10)
