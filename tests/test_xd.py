"""Measurement errors: em_fit(measurement_error=S), extreme deconvolution (Bovy, Hogg & Roweis 2011).

References: astroML's ``XDGMM`` (its own EM loop, run step by step from our start), a direct
NumPy transcription of the paper's update written here (every covariance type of scikit-learn,
rows with NaN too), ``scipy.stats.multivariate_normal`` with covariance ``Σ_k + S_i``, and a
known generating mixture observed through known heteroscedastic errors.

The EM fits below have N_SAMPLES <= 256 rows (padded to 256) in D features with K components
and user-given initial parameters, so each covariance type compiles one program shared by
the tests.
"""

import warnings

import jax
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import bayesgmm
from bayesgmm.chunks import chunk_rows
from bayesgmm.em._estep import errors_e_step
from tests._references import COVARIANCE_TYPES, covariances_in_layout, full_covariances, make_mixture_data, random_spd

N_SAMPLES, D, K = 200, 3, 2
EPS = np.finfo(np.float64).eps


def _errors(rng, n, d=D, scale=0.5):
    """(n, d, d) heteroscedastic, correlated error covariances: ``scale² (A Aᵀ / d)`` with a random size per row."""
    A = rng.normal(size=(n, d, d))
    size = rng.uniform(0.2, 1.0, n)[:, None, None]
    return scale**2 * size * A @ np.swapaxes(A, 1, 2) / d


def _data(seed=0):
    """Noisy rows of a two-component mixture and their (n, d, d) error covariances."""
    rng = np.random.default_rng(seed)
    X, _ = make_mixture_data(rng, N_SAMPLES, D, K, separation=2.5)
    errors = _errors(rng, N_SAMPLES)
    noise = np.einsum("nij,nj->ni", np.linalg.cholesky(errors), rng.normal(size=(N_SAMPLES, D)))
    return X + noise, errors


def _start(X, covariance_type, seed=1):
    """Two rows as means, the data covariance for every component (in the type's layout)."""
    rng = np.random.default_rng(seed)
    means = X[rng.choice(len(X), size=K, replace=False)]
    covariance = np.cov(X.T)
    return np.full(K, 1.0 / K), means, covariances_in_layout(np.repeat(covariance[None], K, axis=0), covariance_type)


def _dense_start(X, seed=1):
    """``_start`` with dense covariances of positive entries (``diag(var) + 0.1``): em_fit's check of
    covariances_init for mclust's models (VEV) is its check of variances, entry by entry."""
    weights, means, _ = _start(X, "full", seed)
    covariance = np.diag(X.var(axis=0)) + 0.1
    return weights, means, np.repeat(covariance[None], K, axis=0)


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
            **{"chunk_size": 64, **kwargs},  # several chunks: the scan over chunks, with a partial last one
        )


# ----------------------------------------------------------------------------- the reference


def _convolved_log_joint(X, errors, weights, means, covariances):
    """(n, k) log π_k + log N(x_o | μ_o, (Σ_k + S_i)_oo), row by row with scipy.stats."""
    log_joint = np.empty((len(X), len(weights)))
    for i, (row, error) in enumerate(zip(X, errors)):
        o = ~np.isnan(row)
        for j in range(len(weights)):
            density = multivariate_normal(means[j, o], (covariances[j] + error)[np.ix_(o, o)])
            log_joint[i, j] = np.log(weights[j]) + density.logpdf(row[o])
    return log_joint


def _deconvolved_moments(X, errors, means, covariances):
    """Bovy et al.'s b_ik (n, k, d) and B_ik (n, k, d, d), eq. (16)-(17), over the observed coordinates."""
    n, d = X.shape
    b = np.empty((n, len(means), d))
    B = np.empty((n, len(means), d, d))
    for i, (row, error) in enumerate(zip(X, errors)):
        o = ~np.isnan(row)
        for j, (mean, cov) in enumerate(zip(means, covariances)):
            T = (cov + error)[np.ix_(o, o)]
            gain = np.linalg.solve(T, cov[o, :]).T  # Σ_·o T_oo⁻¹ (d, |o|)
            b[i, j] = mean + gain @ (row[o] - mean[o])
            B[i, j] = cov - gain @ cov[o, :]
    return b, B


def _reference_xd(X, errors, start, covariance_type, n_iter, reg_covar, sample_weight=None):
    """The XD EM written out: mean log-likelihoods before each step and after, final parameters.

    The M-step of each covariance type from the expected scatter ``Σ w r [(b − μ)(b − μ)ᵀ + B]``
    about the new means, as scikit-learn's from complete data (``n_k`` with its 10 ε).
    """
    w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, float)
    weights, means, covariances = start
    covariances = full_covariances(np.asarray(covariances), covariance_type, K, D)
    history = []
    for iteration in range(n_iter + 1):
        log_joint = _convolved_log_joint(X, errors, weights, means, covariances)
        log_norm = logsumexp(log_joint, axis=1)
        history.append(w @ log_norm / w.sum())
        if iteration == n_iter:
            break
        resp = np.exp(log_joint - log_norm[:, None]) * w[:, None]
        b, B = _deconvolved_moments(X, errors, means, covariances)
        nk = resp.sum(axis=0) + 10 * EPS
        means = np.einsum("nk,nkd->kd", resp, b) / nk[:, None]
        centred = b - means[None]
        scatter = np.einsum("nk,nkd,nke->kde", resp, centred, centred) + np.einsum("nk,nkde->kde", resp, B)
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


def _assert_matches_reference(result, reference, rtol):
    history, weights, means, covariances = reference
    np.testing.assert_allclose(result.log_likelihood_history, history, rtol=rtol)
    np.testing.assert_allclose(result.params.weights, weights, rtol=rtol)
    np.testing.assert_allclose(result.params.means, means, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(result.params.covariance_matrices, covariances, rtol=rtol, atol=rtol)


# ----------------------------------------------------------------------------- fits


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_matches_a_direct_xd_em(covariance_type):
    X, errors = _data()
    start = _start(X, covariance_type)
    n_iter = 4
    result = _fit(X, covariance_type, start, max_iter=n_iter, measurement_error=errors)
    assert result.n_iter == n_iter
    # float64 both ways, four well-conditioned steps from the same start: round-off (~1e-14);
    # 1e-9 relative leaves room for the different summation orders and nothing else
    _assert_matches_reference(result, _reference_xd(X, errors, start, covariance_type, n_iter, 1e-6), 1e-9)


def test_matches_astroml_xdgmm():
    """astroML's XDGMM ``_EMstep`` (Bovy et al.'s eqs. 16-18, no regularisation) from the same start."""
    density_estimation = pytest.importorskip("astroML.density_estimation")
    X, errors = _data(seed=2)
    start = _start(X, "full")
    n_iter = 10
    result = _fit(X, "full", start, max_iter=n_iter, reg_covar=0.0, measurement_error=errors)
    xd = density_estimation.XDGMM(K)
    xd.alpha, xd.mu, xd.V = (np.array(value, dtype=float) for value in start)
    log_likelihoods = [xd.logL(X, errors) / N_SAMPLES]  # astroML's logL is the sum over rows
    for _ in range(n_iter):
        xd._EMstep(X, errors)
        log_likelihoods.append(xd.logL(X, errors) / N_SAMPLES)
    assert result.n_iter == n_iter
    # the same ten float64 steps (astroML inverts T, we solve with its Cholesky factor; its weights
    # lack scikit-learn's 10 ε in n_k, a relative 1e-16): round-off, far inside 1e-9
    np.testing.assert_allclose(result.log_likelihood_history, log_likelihoods, rtol=1e-9)
    np.testing.assert_allclose(result.params.weights, xd.alpha, rtol=1e-9)
    np.testing.assert_allclose(result.params.means, xd.mu, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(result.params.covariances, xd.V, rtol=1e-9, atol=1e-9)


def test_standard_deviations_are_diagonal_covariances_and_nan_is_an_infinite_error():
    """(n, d) standard deviations fit as (n, d, d) diag(σ²); NaN coordinates are marginalised as well."""
    X, _ = _data(seed=3)
    rng = np.random.default_rng(4)
    sigma = rng.uniform(0.0, 0.8, X.shape)
    start = _start(X, "full")
    from_sigma = _fit(X, "full", start, max_iter=3, measurement_error=sigma)
    diagonal = sigma[:, :, None] ** 2 * np.eye(D)
    from_covariances = _fit(X, "full", start, max_iter=3, measurement_error=diagonal)
    for got, want in zip(jax.tree.leaves(from_sigma.params), jax.tree.leaves(from_covariances.params)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)  # the same sums from the same numbers
    # 15% of entries missing, with NaN errors there (not used)
    X_missing, errors = X.copy(), _errors(rng, N_SAMPLES)
    mask = rng.random(X.shape) < 0.15
    mask[mask.all(axis=1), 0] = False
    X_missing[mask] = np.nan
    errors[mask[:, :, None] | mask[:, None, :]] = np.nan
    result = _fit(X_missing, "full", start, max_iter=4, measurement_error=errors, missing="marginalize")
    reference = _reference_xd(X_missing, np.nan_to_num(errors), start, "full", 4, 1e-6)
    _assert_matches_reference(result, reference, 1e-9)


def test_sample_weight_counts_rows():
    X, errors = _data(seed=5)
    counts = np.random.default_rng(6).integers(0, 3, N_SAMPLES)
    assert counts.sum() <= 256  # same padded shape, same program
    start = _start(X, "full")
    weighted = _fit(X, "full", start, max_iter=5, sample_weight=counts, measurement_error=errors)
    repeated = _fit(
        np.repeat(X, counts, axis=0), "full", start, max_iter=5, measurement_error=np.repeat(errors, counts, axis=0)
    )
    # the same sums in another order: round-off
    np.testing.assert_allclose(weighted.log_likelihood_history, repeated.log_likelihood_history, rtol=1e-11)
    for got, want in zip(jax.tree.leaves(weighted.params), jax.tree.leaves(repeated.params)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    reference = _reference_xd(X, errors, start, "full", 5, 1e-6, sample_weight=counts)
    _assert_matches_reference(weighted, reference, 1e-9)


@pytest.mark.parametrize("covariance_type", ["full", "VEV"])
def test_zero_errors_give_the_ordinary_fit(covariance_type):
    X, _ = _data(seed=7)
    start = _dense_start(X)  # dense covariances: the layout of full and of mclust's VEV
    ordinary = _fit(X, covariance_type, start, max_iter=20)
    zero = _fit(X, covariance_type, start, max_iter=20, measurement_error=np.zeros((N_SAMPLES, D, D)))
    assert zero.n_iter == ordinary.n_iter
    # the same iterations in float64 by two formulations (Cholesky factors of Σ_k per row and
    # the ordinary whitened or raw E-step): round-off far below 1e-9
    np.testing.assert_allclose(zero.log_likelihood_history, ordinary.log_likelihood_history, rtol=1e-10)
    for got, want in zip(jax.tree.leaves(zero.params), jax.tree.leaves(ordinary.params)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_mclust_model_climbs_the_deconvolved_likelihood():
    """VEV (mclust's iterative M-step) on the XD statistics: monotone, and the likelihood it reports is scipy's."""
    X, errors = _data(seed=8)
    result = _fit(X, "VEV", _dense_start(X), max_iter=30, measurement_error=errors, reg_covar=0.0)
    history = result.log_likelihood_history
    assert np.all(np.diff(history) >= -1e-10 * np.abs(history[1:]))  # EM never decreases it (round-off aside)
    assert history[-1] > history[0] + 0.05  # it did climb
    params = result.params
    covariances = np.asarray(params.covariance_matrices)
    shape_ratios = [np.linalg.eigvalsh(c) / np.linalg.det(c) ** (1 / D) for c in covariances]
    np.testing.assert_allclose(shape_ratios[0], shape_ratios[1], rtol=1e-6)  # VEV: equal shapes, own volumes
    log_joint = _convolved_log_joint(X, errors, np.asarray(params.weights), np.asarray(params.means), covariances)
    assert result.log_likelihood == pytest.approx(logsumexp(log_joint, axis=1).mean(), rel=1e-12)


@pytest.mark.slow
def test_recovers_a_known_mixture_from_noisy_rows():
    """Heteroscedastic errors as large as the components' own spread: XD recovers the mixture, EM inflates it."""
    rng = np.random.default_rng(9)
    n, d = 6000, 2
    weights = np.array([0.4, 0.6])
    means = np.array([[-4.0, 0.0], [4.0, 1.0]])
    covariances = np.array([[[1.0, 0.5], [0.5, 0.8]], [[0.6, -0.2], [-0.2, 1.2]]])
    labels = rng.choice(2, size=n, p=weights)
    truth = means[labels] + np.einsum("nij,nj->ni", np.linalg.cholesky(covariances)[labels], rng.normal(size=(n, d)))
    sigma = rng.uniform(0.3, 1.5, (n, d))  # each entry's own error standard deviation
    X = truth + sigma * rng.normal(size=(n, d))
    result = bayesgmm.em_fit(X, 2, measurement_error=sigma, seed=0, tol=1e-6, max_iter=500)
    ordinary = bayesgmm.em_fit(X, 2, seed=0)
    order = np.argsort(np.asarray(result.params.means)[:, 0])
    fitted = np.asarray(result.params.covariance_matrices)[order]
    # standard errors of the moment estimates Cov(x) − mean(S) per component: the noisy rows'
    # covariance Σ + S̄ sets them (XD's maximum likelihood does at least as well); 4 of them
    # bounds the noise and stays far below the inflation S̄ (0.9 on the diagonal) being tested
    mean_errors = np.diag(np.mean(sigma**2, axis=0))
    noisy = covariances + mean_errors
    n_k = n * weights
    variances = np.diagonal(noisy, axis1=1, axis2=2)
    covariance_se = np.sqrt((variances[:, :, None] * variances[:, None, :] + noisy**2) / n_k[:, None, None])
    np.testing.assert_array_less(np.abs(fitted - covariances), 4 * covariance_se)
    mean_se = np.sqrt(variances / n_k[:, None])
    np.testing.assert_array_less(np.abs(np.asarray(result.params.means)[order] - means), 4 * mean_se)
    weight_se = np.sqrt(weights * (1 - weights) / n)
    np.testing.assert_array_less(np.abs(np.asarray(result.params.weights)[order] - weights), 4 * weight_se)
    # the ordinary fit sees Σ + S̄: its variances are inflated by about the mean error variance
    inflated = np.diagonal(np.asarray(ordinary.params.covariance_matrices)[order], axis1=1, axis2=2)
    np.testing.assert_array_less(np.abs(inflated - variances), 4 * np.sqrt(2 * variances**2 / n_k[:, None]))
    assert np.all(inflated > np.diagonal(covariances, axis1=1, axis2=2) + 0.5)


# ----------------------------------------------------------------------------- densities and kernels


@pytest.mark.parametrize("covariance_type", ["full", "diag", "VEV"])
@pytest.mark.parametrize("form", ["covariances", "standard deviations"])
def test_log_prob_and_predict_proba_under_the_convolved_covariances(covariance_type, form):
    rng = np.random.default_rng(10)
    dense = np.stack([random_spd(rng, D) for _ in range(K)])
    params = bayesgmm.GMMParams.from_covariances(
        rng.dirichlet(np.ones(K)),
        rng.normal(size=(K, D)),
        covariances_in_layout(dense, covariance_type) if covariance_type != "VEV" else dense,
        covariance_type,
    )
    X = rng.normal(size=(30, D)) * 2
    X[3, 1] = np.nan  # a missing coordinate: the density of the others
    if form == "covariances":
        errors = _errors(rng, 30)
        measurement_error = errors
    else:
        measurement_error = rng.uniform(0, 1, (30, D))
        errors = measurement_error[:, :, None] ** 2 * np.eye(D)
    log_joint = _convolved_log_joint(
        X, errors, np.asarray(params.weights), np.asarray(params.means), np.asarray(params.covariance_matrices)
    )
    np.testing.assert_allclose(
        params.log_prob(X, measurement_error=measurement_error), logsumexp(log_joint, axis=1), rtol=1e-12
    )
    resp = np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))
    np.testing.assert_allclose(params.predict_proba(X, measurement_error=measurement_error), resp, atol=1e-12)
    jitted = jax.jit(lambda p, X, S: p.log_prob(X, measurement_error=S))(params, X, measurement_error)
    np.testing.assert_allclose(jitted, logsumexp(log_joint, axis=1), rtol=1e-12)
    zero = params.log_prob(np.nan_to_num(X), measurement_error=np.zeros((30, D)))
    np.testing.assert_allclose(zero, params.log_prob(np.nan_to_num(X)), rtol=1e-12)  # no error: the mixture


def test_log_prob_maps_over_batched_parameters():
    rng = np.random.default_rng(11)
    first, second = (
        bayesgmm.GMMParams.from_covariances(
            rng.dirichlet(np.ones(K)), rng.normal(size=(K, D)), [random_spd(rng, D)] * K
        )
        for _ in range(2)
    )
    batch = jax.tree.map(lambda a, b: np.stack([a, b]), first, second)
    X, errors = rng.normal(size=(20, D)), _errors(rng, 20)
    log_prob = batch.log_prob(X, measurement_error=errors)
    assert log_prob.shape == (2, 20)
    np.testing.assert_allclose(log_prob[1], second.log_prob(X, measurement_error=errors), rtol=1e-14)


def _intermediate_shapes(jaxpr) -> set[tuple[int, ...]]:
    """The shapes of every value a jaxpr computes, and the jaxprs inside it (scan bodies, conds)."""
    shapes = set()
    for eqn in jaxpr.eqns:
        shapes |= {tuple(getattr(var.aval, "shape", ())) for var in eqn.outvars}
        for param in eqn.params.values():
            for inner in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(inner, "jaxpr", inner)
                if hasattr(inner, "eqns"):
                    shapes |= _intermediate_shapes(inner)
    return shapes


def test_the_e_step_holds_one_chunk_of_per_row_matrices():
    """Never an (n, k, d, d) array: the biggest value is the input errors (n, d, d), the per-chunk ones (k, c, d, d)."""
    n, k, chunk = 4096, 4, 64
    rng = np.random.default_rng(12)
    params = bayesgmm.GMMParams.from_covariances(np.full(k, 1 / k), rng.normal(size=(k, D)), [np.eye(D)] * k)
    rows = chunk_rows(rng.normal(size=(n, D)), np.ones(n), chunk, errors=_errors(rng, n))
    shapes = _intermediate_shapes(jax.make_jaxpr(errors_e_step)(params, rows).jaxpr)
    assert (k, chunk, D, D) in shapes  # the per-chunk factors: the walk saw inside the scan
    assert max(int(np.prod(shape)) for shape in shapes) <= n * D * D  # (n, k, d, d) would be k times that


def test_float32_without_x64():
    """Without x64 the fit runs in float32 (Cholesky factors of Σ_k + S_i in float32) and lands near float64's."""
    X, errors = _data(seed=13)
    start = _start(X, "full")
    reference = _fit(X, "full", start, max_iter=10, measurement_error=errors)
    with jax.enable_x64(False):
        result = _fit(X, "full", start, max_iter=10, measurement_error=errors)
        assert result.params.means.dtype == np.float32
    # ten steps in float32 on well-conditioned data (variances ~1): round-off of 1e-7 relative,
    # amplified by the iterations; 1e-4 is loose for that and tight for a wrong formula
    np.testing.assert_allclose(result.log_likelihood_history, reference.log_likelihood_history, rtol=1e-4)
    np.testing.assert_allclose(result.params.means, reference.params.means, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(result.params.covariances, reference.params.covariances, rtol=1e-3, atol=1e-4)


# ----------------------------------------------------------------------------- errors

_X, _S = _data()


def _with(index, value, S=_S):
    S = S.copy()
    S[index] = value
    return S


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"measurement_error": _S[:10]}, ValueError, r"shape \(10, 3, 3\); pass \(200, 3\) standard deviations or "),
        ({"measurement_error": _S[:, :, :2]}, ValueError, r"shape \(200, 3, 2\)"),
        (
            {"measurement_error": _with((7, 0, 0), np.nan)},
            ValueError,
            r"NaN or infinite values in 1 row\(s\) \(first: row 7\)",
        ),
        ({"measurement_error": _with((9, 1, 1), np.inf)}, ValueError, r"first: row 9"),
        ({"measurement_error": -np.ones((N_SAMPLES, D))}, ValueError, r"standard deviations, which must be >= 0"),
        ({"measurement_error": _with((4, 0, 1), 5.0)}, ValueError, r"symmetric .*first: row 4"),
        (
            {"measurement_error": _with(11, np.diag([1.0, -0.5, 1.0]))},
            ValueError,
            r"positive semi-definite .*first: row 11, smallest eigenvalue -0.5",
        ),
        ({"measurement_error": np.full((N_SAMPLES, D), "a")}, TypeError, r"must be numeric"),
        (
            {"measurement_error": _S, "moments": "raw"},
            ValueError,
            r"moments='raw' does not apply with measurement_error",
        ),
        ({"measurement_error": _S, "stream": True}, ValueError, r"measurement_error needs the rows in memory"),
    ],
)
def test_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        bayesgmm.em_fit(_X, K, **kwargs)


def test_log_prob_checks_its_errors_too():
    params = bayesgmm.GMMParams.from_covariances([1.0], [[0.0] * D], [np.eye(D)])
    with pytest.raises(ValueError, match=r"positive semi-definite"):
        params.log_prob(_X, measurement_error=_with(0, -np.eye(D)))
    with pytest.raises(ValueError, match=r"shape \(3,\); pass \(200, 3\)"):
        params.log_prob(_X, measurement_error=np.ones(3))
