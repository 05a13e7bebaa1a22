"""Missing values: em_fit(missing="marginalize") against a direct NumPy/SciPy incomplete-data EM, and impute.

Every fit here has N_SAMPLES <= 256 rows (padded to 256) in D features with K components and
user-given initial parameters, so each covariance type compiles one program shared by the tests.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import bayesgmm
from bayesgmm import em
from bayesgmm.chunks import chunk_rows
from bayesgmm.em._estep import chunk_statistics, missing_e_step
from tests._references import COVARIANCE_TYPES, covariances_in_layout, full_covariances, make_mixture_data

N_SAMPLES, D, K = 200, 3, 2
EPS = np.finfo(np.float64).eps


def _with_missing(X, fraction, rng):
    """X with about ``fraction`` of its entries NaN at random (MCAR), every row keeping one observed entry."""
    X = X.copy()
    mask = rng.random(X.shape) < fraction
    empty = mask.all(axis=1)
    mask[empty, rng.integers(0, X.shape[1], empty.sum())] = False
    X[mask] = np.nan
    return X


def _data(seed=0, fraction=0.25):
    rng = np.random.default_rng(seed)
    X, _ = make_mixture_data(rng, N_SAMPLES, D, K, separation=2.5)
    return X, _with_missing(X, fraction, rng)


def _start(X, covariance_type, seed=1):
    """A rough start: two observed-mean-imputed rows as means, the observed variances (diagonal) for all."""
    rng = np.random.default_rng(seed)
    filled = np.where(np.isnan(X), np.nanmean(X, axis=0), X)
    means = filled[rng.choice(len(X), size=K, replace=False)]
    covariance = np.cov(filled.T) + 0.5 * np.diag(np.nanvar(X, axis=0))
    return np.full(K, 1.0 / K), means, covariances_in_layout(np.repeat(covariance[None], K, axis=0), covariance_type)


def _fit(X, covariance_type, start, *, max_iter, tol=0.0, reg_covar=1e-6, **kwargs):
    weights, means, covariances = start
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesgmm.ConvergenceWarning)  # tol=0 runs exactly max_iter steps
        return bayesgmm.em_fit(
            X,
            K,
            covariance_type=covariance_type,
            weights_init=weights,
            means_init=means,
            covariances_init=covariances,
            max_iter=max_iter,
            tol=tol,
            reg_covar=reg_covar,
            # 64-row chunks: the complete rows (sorted first) fill whole chunks of the ordinary path,
            # the others take the conditional one, so both branches run in every fit
            **{"missing": "marginalize", "chunk_size": 64, **kwargs},
        )


# ----------------------------------------------------------------------------- the reference


def _observed_log_joint(X, weights, means, covariances):
    """(n, k) log π_k + log N(x_o | μ_o, Σ_oo), by sub-matrix indexing and scipy.stats."""
    log_joint = np.empty((len(X), len(weights)))
    for i, row in enumerate(X):
        o = ~np.isnan(row)
        for j in range(len(weights)):
            marginal = multivariate_normal(means[j, o], covariances[j][np.ix_(o, o)])
            log_joint[i, j] = np.log(weights[j]) + marginal.logpdf(row[o])
    return log_joint


def _conditionals(X, means, covariances):
    """E_k[x | x_o] (n, k, d) and Cov_k[x | x_o] (n, k, d, d) by the textbook formulas."""
    n, d = X.shape
    expected = np.empty((n, len(means), d))
    conditional = np.zeros((n, len(means), d, d))
    for i, row in enumerate(X):
        o, m = ~np.isnan(row), np.isnan(row)
        for j, (mean, cov) in enumerate(zip(means, covariances)):
            expected[i, j] = row
            if m.any():
                gain = np.linalg.solve(cov[np.ix_(o, o)], cov[np.ix_(o, m)]).T  # Σ_mo Σ_oo⁻¹
                expected[i, j, m] = mean[m] + gain @ (row[o] - mean[o])
                conditional[i, j][np.ix_(m, m)] = cov[np.ix_(m, m)] - gain @ cov[np.ix_(o, m)]
    return expected, conditional


def _reference_em(X, start, covariance_type, n_iter, reg_covar):
    """Ghahramani & Jordan's EM written out: mean log-likelihoods before each step and after, final params."""
    weights, means, covariances = start
    covariances = full_covariances(np.asarray(covariances), covariance_type, K, D)
    history = []
    for iteration in range(n_iter + 1):
        log_joint = _observed_log_joint(X, weights, means, covariances)
        log_norm = logsumexp(log_joint, axis=1)
        history.append(log_norm.mean())
        if iteration == n_iter:
            break
        resp = np.exp(log_joint - log_norm[:, None])
        expected, conditional = _conditionals(X, means, covariances)
        nk = resp.sum(axis=0) + 10 * EPS  # scikit-learn's counts
        means = np.einsum("nk,nkd->kd", resp, expected) / nk[:, None]
        centred = expected - means[None]
        scatter = np.einsum("nk,nkd,nke->kde", resp, centred, centred) + np.einsum("nk,nkde->kde", resp, conditional)
        if covariance_type == "full":
            covariances = scatter / nk[:, None, None] + reg_covar * np.eye(D)
        elif covariance_type == "tied":
            covariances = np.broadcast_to(scatter.sum(axis=0) / nk.sum() + reg_covar * np.eye(D), (K, D, D))
        elif covariance_type == "diag":
            variances = np.diagonal(scatter, axis1=1, axis2=2) / nk[:, None] + reg_covar
            covariances = np.stack([np.diag(v) for v in variances])
        else:
            variances = np.trace(scatter, axis1=1, axis2=2) / (nk * D) + reg_covar
            covariances = variances[:, None, None] * np.eye(D)
        weights = nk / nk.sum()
    return np.array(history), weights, means, covariances


# ----------------------------------------------------------------------------- kernels


def _random_params(covariance_type, seed=3):
    rng = np.random.default_rng(seed)
    full = np.stack([np.cov(rng.normal(size=(10, D)).T) + 0.3 * np.eye(D) for _ in range(K)])
    return bayesgmm.GMMParams.from_covariances(
        rng.dirichlet(np.ones(K)),
        rng.normal(size=(K, D)),
        covariances_in_layout(full, covariance_type),
        covariance_type,
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_rows_without_missing_values_give_the_regular_statistics(covariance_type):
    X, _ = _data()
    params = _random_params(covariance_type)
    weights = np.random.default_rng(4).integers(0, 3, N_SAMPLES).astype(float)

    @jax.jit  # one program for the three: each compilation costs seconds
    def all_three(params, X, weights):
        rows = chunk_rows(X, weights, 64)
        regular, _ = em.e_step(params, rows, "whitened")
        fast, _ = missing_e_step(params, rows)  # complete chunks: the ordinary densities
        # the general (conditional) formulas on complete rows: every observed mask is all-true
        general, _ = chunk_statistics(params, X, weights, complete=False)
        general = general[:2] + (params.structure.em.second_from_full(general[2]),) + general[3:]
        return regular[:4], fast[:4], general[:4]

    regular, fast, general = all_three(params, X, weights)
    for stats in (fast, general):
        for got, want in zip(stats, regular):  # counts, first, second, log-likelihood
            # the same sums in another order and formulation: round-off, 1e-12 relative
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * float(np.max(np.abs(want))))


@pytest.mark.slow
@pytest.mark.parametrize("covariance_type", ["full", "spherical"])  # the kernel test covers the layouts of all four
def test_without_nan_the_missing_path_is_the_regular_fit(covariance_type):
    X, _ = _data()
    start = _start(X, covariance_type)
    regular = _fit(X, covariance_type, start, max_iter=30, missing="raise")
    dispatched = _fit(X, covariance_type, start, max_iter=30)  # no NaN: the regular program
    assert dispatched.log_likelihood == regular.log_likelihood
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesgmm.ConvergenceWarning)
        config = em.EMConfig(
            covariance_type=covariance_type,
            n_init=1,
            init="kmeans",
            max_iter=30,
            tol=1e-8,
            reg_covar=1e-6,
            moments="missing",  # what em_fit uses on data with NaN
            chunk_size=64,
        )
        ((forced, *_),), _ = em.fit_groups(
            em.prepare_data(X, dtype=jnp.float64), [K], config, seed=0, user_init=em.UserInit(*start)
        )
    assert forced.n_iter == regular.n_iter
    # the same iterations from the same start in float64, two formulations: round-off far below 1e-10
    for got, want in zip(jax.tree.leaves(forced.params), jax.tree.leaves(regular.params)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(forced.log_likelihood_history, regular.log_likelihood_history, rtol=1e-10)


# ----------------------------------------------------------------------------- fits


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_matches_a_direct_incomplete_data_em(covariance_type):
    _, X = _data()
    assert 0.2 < np.isnan(X).mean() < 0.3
    start = _start(X, covariance_type)
    n_iter = 4
    result = _fit(X, covariance_type, start, max_iter=n_iter)
    history, weights, means, covariances = _reference_em(X, start, covariance_type, n_iter, reg_covar=1e-6)
    assert result.n_iter == n_iter
    # float64 both ways, four well-conditioned steps from the same start: agreement to round-off
    # (~1e-14); 1e-9 relative leaves room for the different summation orders and nothing else
    np.testing.assert_allclose(result.log_likelihood_history, history, rtol=1e-9)
    np.testing.assert_allclose(result.params.weights, weights, rtol=1e-9)
    np.testing.assert_allclose(result.params.means, means, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(result.params.covariance_matrices, covariances, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_likelihood_is_monotone_and_the_observed_data_one(covariance_type):
    _, X = _data(seed=5)
    result = _fit(X, covariance_type, _start(X, covariance_type), max_iter=40, reg_covar=0.0)
    history = result.log_likelihood_history
    # EM never decreases the observed-data likelihood; allow float64 round-off of the sums
    assert np.all(np.diff(history) >= -1e-12 * np.abs(history[1:]))
    assert history[-1] > history[0] + 0.1  # it did climb
    params = result.params
    log_joint = _observed_log_joint(
        X, np.asarray(params.weights), np.asarray(params.means), np.asarray(params.covariance_matrices)
    )
    assert result.log_likelihood == pytest.approx(logsumexp(log_joint, axis=1).mean(), rel=1e-12)


def test_sample_weight_counts_rows():
    _, X = _data(seed=6)
    counts = np.random.default_rng(7).integers(0, 3, N_SAMPLES)
    assert counts.sum() <= 256  # same padded shape, same program
    start = _start(X, "full")
    weighted = _fit(X, "full", start, max_iter=10, sample_weight=counts)
    repeated = _fit(np.repeat(X, counts, axis=0), "full", start, max_iter=10)
    # the same sums in another order: round-off
    np.testing.assert_allclose(weighted.log_likelihood_history, repeated.log_likelihood_history, rtol=1e-11)
    for got, want in zip(jax.tree.leaves(weighted.params), jax.tree.leaves(repeated.params)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.slow
def test_recovers_a_known_mixture_with_a_fifth_of_the_entries_missing():
    rng = np.random.default_rng(8)
    n, fraction = 8000, 0.2
    weights = np.array([0.4, 0.6])
    means = np.array([[-2.0, 0.0, 1.0], [2.0, 1.0, -1.0]])
    covariances = np.array(
        [[[1.0, 0.6, 0.2], [0.6, 1.5, -0.4], [0.2, -0.4, 0.8]], [[0.7, -0.3, 0.0], [-0.3, 1.0, 0.5], [0.0, 0.5, 1.2]]]
    )
    labels = rng.choice(2, size=n, p=weights)
    X = means[labels] + np.einsum("nij,nj->ni", np.linalg.cholesky(covariances)[labels], rng.normal(size=(n, 3)))
    result = bayesgmm.em_fit(_with_missing(X, fraction, rng), 2, missing="marginalize", seed=0)
    order = np.argsort(np.asarray(result.params.means)[:, 0])
    fitted_means = np.asarray(result.params.means)[order]
    fitted_covariances = np.asarray(result.params.covariance_matrices)[order]
    # standard errors of the complete-data estimates with only the observed share of each
    # component's rows: conservative (observed neighbours add information), so 4 of them is a
    # loose bound for noise but a tight one for the biases of imputing (covariances ~20% low)
    n_observed = n * weights * (1 - fraction)
    mean_se = np.sqrt(np.diagonal(covariances, axis1=1, axis2=2) / n_observed[:, None])
    np.testing.assert_array_less(np.abs(fitted_means - means), 4 * mean_se)
    variances = np.diagonal(covariances, axis1=1, axis2=2)
    covariance_se = np.sqrt(
        (variances[:, :, None] * variances[:, None, :] + covariances**2) / n_observed[:, None, None]
    )
    np.testing.assert_array_less(np.abs(fitted_covariances - covariances), 4 * covariance_se)
    weight_se = np.sqrt(weights * (1 - weights) / n)
    np.testing.assert_array_less(np.abs(np.asarray(result.params.weights)[order] - weights), 4 * weight_se)


# ----------------------------------------------------------------------------- impute


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_impute_is_the_conditional_mean(covariance_type):
    _, X = _data(seed=9)
    X = X[:40]
    params = _random_params(covariance_type)
    imputed = np.asarray(params.impute(X))
    weights, means = np.asarray(params.weights), np.asarray(params.means)
    covariances = np.asarray(params.covariance_matrices)
    log_joint = _observed_log_joint(X, weights, means, covariances)
    resp = np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))
    expected, _ = _conditionals(X, means, covariances)
    reference = np.einsum("nk,nkd->nd", resp, expected)
    observed = ~np.isnan(X)
    np.testing.assert_array_equal(imputed[observed], X[observed])  # untouched, bit for bit
    np.testing.assert_allclose(imputed, reference, rtol=1e-12, atol=1e-12)  # round-off of two formulas


def test_impute_maps_over_batches_and_jits():
    _, X = _data(seed=9)
    X = X[:40]
    first, second = _random_params("full", seed=10), _random_params("full", seed=11)
    batch = jax.tree.map(lambda a, b: jnp.stack([a, b]), first, second)
    imputed = jax.jit(lambda params, X: params.impute(X))(batch, X)  # under jit: X is traced
    assert imputed.shape == (2, 40, D)
    np.testing.assert_allclose(imputed[0], first.impute(X), rtol=1e-14)
    np.testing.assert_allclose(imputed[1], second.impute(X), rtol=1e-14)
    complete = np.nan_to_num(X)
    np.testing.assert_array_equal(first.impute(complete), complete)  # nothing to fill


@pytest.mark.parametrize(
    "X, message",
    [
        (
            np.array([[1.0, np.nan, 0.0], [np.nan] * 3, [np.nan] * 3]),
            r"2 row\(s\) with every entry NaN \(first: row 1\)",
        ),
        (np.array([[1.0, np.inf, 0.0]]), r"infinite values .*only NaN marks a missing entry"),
        (np.zeros((4, 2)), r"shape \(n_samples, 3\)"),
        (np.zeros(3), r"1-D"),
    ],
)
def test_impute_rejects_bad_input(X, message):
    with pytest.raises(ValueError, match=message):
        _random_params("full").impute(X)


# ----------------------------------------------------------------------------- errors

_X_NAN = _data()[1]


@pytest.mark.parametrize(
    "X, kwargs, message",
    [
        (_X_NAN, {}, r"NaN in \d+ row\(s\) \(first: row \d+\); .*missing='marginalize'"),
        (_X_NAN, {"missing": "drop"}, r"missing must be one of \('raise', 'marginalize'\)"),
        (
            np.vstack([_X_NAN, [[np.nan] * D] * 2]),
            {"missing": "marginalize"},
            r"2 row\(s\) with every entry NaN \(first: row 200\)",
        ),
        (
            np.where(np.arange(D) == 1, np.nan, np.nan_to_num(_X_NAN)),
            {"missing": "marginalize"},
            r"Feature 1 of X is NaN in every row",
        ),
        (np.where(np.arange(D) == 1, np.inf, _X_NAN), {"missing": "marginalize"}, r"infinite values in 200 row\(s\)"),
        (
            _X_NAN,
            {"missing": "marginalize", "moments": "raw"},
            r"moments='raw' does not apply with missing='marginalize'",
        ),
        (_X_NAN, {"missing": "marginalize", "stream": True}, r"needs the rows in memory"),
    ],
)
def test_clear_errors(X, kwargs, message):
    with pytest.raises(ValueError, match=message):
        bayesgmm.em_fit(X, K, **kwargs)


def test_never_observed_in_weighted_rows_is_an_error():
    X = np.nan_to_num(_X_NAN)
    X[1:, 2] = np.nan  # feature 2 observed in row 0 only, which has weight 0
    weights = np.ones(N_SAMPLES)
    weights[0] = 0.0
    with pytest.raises(ValueError, match=r"Feature 2 of X is NaN in every row of positive weight"):
        bayesgmm.em_fit(X, K, missing="marginalize", sample_weight=weights)
