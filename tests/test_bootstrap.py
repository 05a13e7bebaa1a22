"""The bootstrap (``bayesgmm.bootstrap``, ``bayesgmm.bootstrap_lrt``) against closed forms, simulated truth and
mclust's published likelihood-ratio test (its vignette's diabetes example)."""

from pathlib import Path

import jax
import numpy as np
import pytest
from scipy import stats
from scipy.optimize import linear_sum_assignment

import bayesgmm
from bayesgmm.em import EMConfig, prepare_data, refit
from bayesgmm.em._config import Program
from bayesgmm.em._data import settings
from bayesgmm.em._memory import fit_replicates
from bayesgmm.em._state import UserInit

DIABETES = Path(__file__).parent / "data" / "diabetes.csv"


def two_components(rng, n, means=(0.0, 4.0), sds=(1.0, 1.0), weight=0.4):
    """Rows of a 1-D two-component mixture with component 0 of weight ``weight``."""
    labels = (rng.random(n) >= weight).astype(int)
    return (np.asarray(means)[labels] + np.asarray(sds)[labels] * rng.normal(size=n))[:, None]


def coverage_bound_holds(covered: int, total: int, level: float = 0.95) -> bool:
    """Whether ``covered`` of ``total`` intervals is consistent with coverage ``level``: the two-sided
    exact binomial test does not reject at 0.001 (a correct implementation fails once in 1000 seeds)."""
    return stats.binomtest(covered, total, level).pvalue > 0.001


# ---------------------------------------------------------------- standard errors and intervals


@pytest.mark.parametrize("kind", ["nonparametric", "parametric"])
def test_standard_error_of_a_one_component_mean_is_sigma_over_root_n(kind):
    """For one Gaussian component the bootstrap distribution of the mean has standard deviation
    ``σ̂ / √n`` (σ̂ the maximum-likelihood standard deviation: exactly, for both bootstraps, as the
    number of replicates grows), and that of the variance ``√((m4 − σ̂⁴) / n)`` (nonparametric, m4 the
    fourth central sample moment) or ``√(2 / n) σ̂²`` (parametric, the Gaussian's m4 = 3σ⁴), to first
    order. A standard deviation estimated from B replicates has relative standard error
    ``1 / √(2 (B − 1))`` (5 % for B = 200): we allow four of them."""
    rng = np.random.default_rng(1)
    n, n_boot = 400, 200
    X = rng.normal(size=(n, 2)) * [1.0, 3.0] + [5.0, -2.0]
    fit = bayesgmm.em_fit(X, 1, covariance_type="diag")
    boot = bayesgmm.bootstrap(X, fit.params, n_boot=n_boot, type=kind, seed=0)
    rtol = 4 / np.sqrt(2 * (n_boot - 1))
    sigma = X.std(axis=0)  # ddof=0: the fit's
    np.testing.assert_allclose(boot.means.se[0], sigma / np.sqrt(n), rtol=rtol)
    centred = X - X.mean(axis=0)
    m4 = np.mean(centred**4, axis=0) if kind == "nonparametric" else 3 * sigma**4
    np.testing.assert_allclose(boot.covariances.se[0], np.sqrt((m4 - sigma**4) / n), rtol=rtol)
    np.testing.assert_allclose(boot.weights.se, [0.0], atol=1e-6)  # one component: weight 1 always
    assert boot.means.replicates.shape == (n_boot, 1, 2) and boot.n_failed == 0 and boot.converged.all()
    # the intervals hold the estimate, and their width is that of a normal's at this level, ±20 %
    assert np.all(boot.means.lower < boot.means.estimate) and np.all(boot.means.estimate < boot.means.upper)
    width = boot.means.upper - boot.means.lower
    np.testing.assert_allclose(width, 2 * stats.norm.ppf(0.975) * boot.means.se, rtol=0.2)


@pytest.mark.slow
def test_percentile_intervals_of_the_means_cover_the_truth():
    """30 data sets of 200 rows from a known two-component mixture: the 95 % intervals of the two
    means (60 intervals) and of the first weight (30) cover the truth at a rate the exact binomial
    test does not reject (``coverage_bound_holds``). Coverage well under 0.95 (too-narrow intervals:
    replicates stopped near the start, replicates left in the wrong labelling) fails it."""
    true_means, true_weight = np.array([0.0, 4.0]), 0.4
    rng = np.random.default_rng(2)
    covered_means = covered_weights = 0
    n_sets = 30
    for data_set in range(n_sets):
        X = two_components(rng, 200, true_means, weight=true_weight)
        fit = bayesgmm.em_fit(X, 2, init="hierarchical", tol=1e-6, max_iter=1000)
        order = np.argsort(np.asarray(fit.params.means[:, 0]))  # the reference labelling: by the mean
        params = bayesgmm.GMMParams(fit.params.weights[order], fit.params.means[order], fit.params.scale[order], "full")
        boot = bayesgmm.bootstrap(X, params, n_boot=99, seed=data_set)
        covered_means += int(np.sum((boot.means.lower[:, 0] <= true_means) & (true_means <= boot.means.upper[:, 0])))
        covered_weights += int(boot.weights.lower[0] <= true_weight <= boot.weights.upper[0])
    assert coverage_bound_holds(covered_means, 2 * n_sets), covered_means
    assert coverage_bound_holds(covered_weights, n_sets), covered_weights


def test_coverage_bound_rejects_too_narrow_intervals():
    """The bound of the coverage test can fail: 50 of 60 (83 %) is rejected, 55 of 60 is not."""
    assert not coverage_bound_holds(50, 60)
    assert coverage_bound_holds(55, 60)


# ---------------------------------------------------------------- relabelling


def test_replicates_come_back_in_the_order_of_params():
    """Components of nearly equal means (±0.3) and unequal spreads (standard deviations 1 and 4): in
    some raw refits the means cross, and the assignment on the means (the package's labelling rule,
    as for posterior draws) reorders them. After ``bootstrap`` every replicate is in ``params``'
    order: the identity is its optimal assignment to ``params``' means; the reversed ``params``
    give the reversed replicates."""
    rng = np.random.default_rng(5)
    X = two_components(rng, 100, means=(-0.3, 0.3), sds=(1.0, 4.0), weight=0.5)
    fit = bayesgmm.em_fit(X, 2, covariance_type="spherical", seed=0)
    params = fit.params
    n_boot = 60

    def optimal(reference, means):
        cost = ((reference[:, None, :] - means[None, :, :]) ** 2).sum(-1)
        return linear_sum_assignment(cost)[1]

    # the raw refits (the same resamples as bootstrap's, seed 0) include swapped ones: the test exercises relabelling
    data = prepare_data(X, dtype=jax.numpy.result_type(float), stream=False)
    counts = np.random.default_rng(0).multinomial(100, np.full(100, 1 / 100), size=n_boot)
    raw = refit(data, params, EMConfig.validated(covariance_type="spherical", tol=1e-5, max_iter=1000), weights=counts)
    reference = np.asarray(params.means)
    swapped = [not np.array_equal(optimal(reference, means), [0, 1]) for means in raw.params.means]
    assert sum(swapped) >= 5, "too few raw replicates swapped their components to exercise relabelling"

    boot = bayesgmm.bootstrap(X, params, n_boot=n_boot, seed=0)
    for means in boot.replicates.means:
        assert np.array_equal(optimal(reference, means), [0, 1])
    reversed_params = bayesgmm.GMMParams(params.weights[::-1], params.means[::-1], params.scale[::-1], "spherical")
    reversed_boot = bayesgmm.bootstrap(X, reversed_params, n_boot=n_boot, seed=0)
    np.testing.assert_allclose(reversed_boot.means.replicates, boot.means.replicates[:, ::-1], atol=1e-5)
    np.testing.assert_allclose(reversed_boot.covariances.se, boot.covariances.se[::-1], atol=1e-5)


# ---------------------------------------------------------------- the compiled driver


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_vmapped_replicates_equal_mapped_ones(covariance_type):
    """``fit_replicates`` vmapped (accelerators) and mapped (CPU) run the same fits; and a replicate of
    unit weights is ``em_fit`` started from the same parameters."""
    rng = np.random.default_rng(4)
    X = two_components(rng, 150, means=(0.0, 3.0))
    X = np.concatenate([X, rng.normal(size=(150, 1))], axis=1)
    fit = bayesgmm.em_fit(X, 2, covariance_type=covariance_type, seed=0)
    config = EMConfig.validated(covariance_type=covariance_type, tol=1e-6, max_iter=500)
    dtype = jax.numpy.result_type(float)
    data = prepare_data(X, dtype=dtype, stream=False)
    weights = np.zeros((4, data.X.shape[0]), dtype)
    weights[:, :150] = rng.multinomial(150, np.full(150, 1 / 150), size=4)
    weights[0, :150] = 1.0
    start = fit.params
    user_init = UserInit(
        np.asarray(start.weights),
        np.asarray((start.means - data.center) / data.scale),
        np.asarray(start.covariances / data.scale**2),
    )
    states = {}
    for sequential in (True, False):
        program = Program(2, covariance_type, "kmeans", "whitened", "reseed", 512, 256, sequential)
        states[sequential] = jax.device_get(
            fit_replicates(data.X, weights, settings(data, 2, config, dtype), user_init, program=program)
        )
    np.testing.assert_allclose(states[True].params.means, states[False].params.means, atol=1e-4)
    np.testing.assert_allclose(states[True].log_likelihood, states[False].log_likelihood, rtol=1e-5)
    direct = bayesgmm.em_fit(
        X,
        2,
        covariance_type=covariance_type,
        tol=1e-6,
        max_iter=500,
        weights_init=start.weights,
        means_init=start.means,
        covariances_init=start.covariances,
    )
    means = states[True].params.means[0] * data.scale + data.center
    np.testing.assert_allclose(means, direct.params.means, atol=1e-3)


# ---------------------------------------------------------------- the likelihood-ratio test


def test_lrt_on_one_gaussian_is_not_significant():
    """Under the null (one Gaussian) the bootstrap p-value is uniform on {1, ..., B + 1} / (B + 1); this
    seed's is above 0.05, as 95 % of seeds' are (deterministic given the seed). The observed statistic
    is within the bulk of its bootstrap distribution, not beyond it."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(200, 2)) @ np.array([[1.0, 0.5], [0.0, 1.0]])
    test = bayesgmm.bootstrap_lrt(X, 1, "full", n_boot=99, seed=0)
    assert test.ks.tolist() == [1] and test.replicates.shape == (99, 1)
    assert test.p_values[0] > 0.05
    valid = test.replicates[:, 0]
    assert test.p_values[0] == pytest.approx((1 + np.sum(valid >= test.statistic[0])) / 100)
    assert sorted(test.fits) == [1, 2]


def test_lrt_on_two_separated_components_is_significant():
    """Two components 8 standard deviations apart: the observed statistic (hundreds) exceeds every
    bootstrap statistic under one Gaussian (a few units), so the p-value is its least, 1 / (B + 1);
    and k = 2 vs 3 is not rejected at 0.05 with ``max_k``, which stops there."""
    rng = np.random.default_rng(6)
    X = two_components(rng, 300, means=(0.0, 8.0), weight=0.5)
    test = bayesgmm.bootstrap_lrt(X, 1, "spherical", n_boot=49, max_k=4, seed=0)
    assert test.p_values[0] == pytest.approx(1 / 50)
    assert test.statistic[0] > 100 > np.nanmax(test.replicates[:, 0])
    assert test.ks.tolist() == [1, 2] and test.p_values[1] > 0.05  # stopped after the first non-significant test


def _diabetes():
    return np.loadtxt(DIABETES, delimiter=",", skiprows=4, usecols=(1, 2, 3))


def test_lrt_statistics_are_mclust_s_on_the_diabetes_data():
    """mclust's vignette: ``mclustBootstrapLRT(X, modelName = "VVV")`` on the (corrected) diabetes data
    prints LRTS 369.98537 (1 vs 2), 121.10652 (2 vs 3), 19.90071 (3 vs 4), p-values 0.001, 0.001 (no
    replicate reached: 1 / 1000), 0.283; and its VVV, 3 fit has log-likelihood −2295.118.

    The one-component log-likelihood is closed form: it must agree to round-off (−2540.664 is
    mclust's, from its printed figures). The others are EM maxima where each EM stopped: mclust stops
    when a step gains less than 1e-5 of |log L| (0.023 here), about ``tol=1.6e-4`` per row in ours;
    with that tolerance each statistic (a difference of two such fits) agrees within 2 × 0.023 ≈ 0.05.
    With the hierarchical start as mclust's, the fits are the same maxima."""
    X = _diabetes()
    test = bayesgmm.bootstrap_lrt(X, 1, "full", n_boot=19, max_k=2, level=1.0, seed=0, tol=1.6e-4)
    log_likelihood = {k: fit.log_likelihood * len(X) for k, fit in test.fits.items()}
    mclust_3 = -2295.118
    mclust_1 = mclust_3 - 121.10652 / 2 - 369.98537 / 2
    assert log_likelihood[1] == pytest.approx(mclust_1, abs=2e-3)  # mclust's figures carry 3 decimals
    assert log_likelihood[3] == pytest.approx(mclust_3, abs=0.03)
    np.testing.assert_allclose(test.statistic, [369.98537, 121.10652], atol=0.05)
    np.testing.assert_allclose(test.p_values, [1 / 20, 1 / 20])  # as mclust's 1 / (999 + 1): none reached


@pytest.mark.slow
def test_lrt_p_value_is_mclust_s_on_the_diabetes_data():
    """3 vs 4 components on the diabetes data: mclust's p-value 0.283 (999 replicates) and ours (399) are
    two Monte Carlo estimates of one probability (with mclust's stopping rule, ``tol=1.6e-4``): they
    differ by less than three standard errors, ``3 √(p (1 − p) (1/399 + 1/999))`` = 0.08. (Run to
    convergence, ``tol=1e-5``, the bootstrap statistics grow and the p-value is about 0.40: mclust's
    refits with 4 components stop early.)"""
    test = bayesgmm.bootstrap_lrt(_diabetes(), 3, "full", n_boot=399, seed=0, tol=1.6e-4)
    assert test.statistic[0] == pytest.approx(19.90071, abs=0.05)
    assert test.p_values[0] == pytest.approx(0.283, abs=3 * np.sqrt(0.283 * 0.717 * (1 / 399 + 1 / 999)))


# ---------------------------------------------------------------- input errors


def _small_fit():
    rng = np.random.default_rng(7)
    X = two_components(rng, 60)
    return X, bayesgmm.em_fit(X, 2, seed=0).params


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (dict(n_boot=1), ValueError, "n_boot must be an integer >= 2"),
        (dict(n_boot=0), ValueError, "n_boot"),
        (dict(n_boot="99"), TypeError, "n_boot"),
        (dict(level=1.0), ValueError, r"level must be in \(0, 1\)"),
        (dict(level="0.9"), TypeError, "level"),
        (dict(type="jackknife"), ValueError, "type must be one of"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(tol=-1.0), ValueError, "tol"),
    ],
)
def test_bootstrap_rejects_bad_arguments(change, error, match):
    X, params = _small_fit()
    with pytest.raises(error, match=match):
        bayesgmm.bootstrap(X, params, **{"n_boot": 9, **change})


def test_bootstrap_rejects_params_that_do_not_fit_the_data():
    X, params = _small_fit()
    with pytest.raises(ValueError, match="params have 1 feature.*X has 2"):
        bayesgmm.bootstrap(np.hstack([X, X]), params, n_boot=9)
    with pytest.raises(TypeError, match="params must be a GMMParams"):
        bayesgmm.bootstrap(X, {"means": params.means}, n_boot=9)
    batched = jax.tree.map(lambda leaf: np.stack([leaf, leaf]), params)
    with pytest.raises(ValueError, match="one fit, not a batch"):
        bayesgmm.bootstrap(X, batched, n_boot=9)
    with pytest.raises(ValueError, match="k=2 components need at least 2 samples"):
        bayesgmm.bootstrap(X[:1], params, n_boot=9)
    with pytest.raises(ValueError, match="NaN"):
        bayesgmm.bootstrap(np.where(np.arange(60)[:, None] == 3, np.nan, X), params, n_boot=9)
    with pytest.warns(bayesgmm.ConvergenceWarning, match=r"did not converge within max_iter=1 .* of 9 bootstrap"):
        bayesgmm.bootstrap(X, params, n_boot=9, max_iter=1, tol=1e-12)
    result = bayesgmm.em_fit(X, 2, seed=0)  # an EMResult is accepted for its params
    assert bayesgmm.bootstrap(X, result, n_boot=9).means.estimate.shape == (2, 1)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (dict(k=0), ValueError, "k must be an integer >= 1"),
        (dict(k=2, max_k=1), ValueError, "max_k must be an integer >= 2"),
        (dict(n_boot=0), ValueError, "n_boot"),
        (dict(covariance_type="XYZ"), ValueError, "covariance_type"),
        (dict(level=0.0), ValueError, r"level must be in \(0, 1\]"),
        (dict(k=60), ValueError, "k=61 components need at least 61 samples"),
    ],
)
def test_bootstrap_lrt_rejects_bad_arguments(change, error, match):
    X, _ = _small_fit()
    with pytest.raises(error, match=match):
        bayesgmm.bootstrap_lrt(X, **{"n_boot": 9, **change})
