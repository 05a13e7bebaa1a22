"""Student-t components (``family="student_t"``): densities, sampling and EM, against independent references.

- Densities against ``scipy.stats.multivariate_t`` for every layout of the covariance table.
- Sampling: the scale mixture's covariance ``ν/(ν − 2) Σ`` within Monte Carlo error.
- EM: iterations equal an independent NumPy/SciPy transcription of Liu and Rubin's ECME (McLachlan
  and Peel's CM-steps for weights, means and scales, 2000, §7.5; the degrees of freedom maximising
  the observed likelihood, by ``scipy.optimize.brentq``) from the same start, on both drivers; ECME
  reaches the maximum in far fewer iterations than ECM; the
  converged fit equals ``studenttmixture``'s (another implementation, other iterates, same
  maximum); the log-likelihood never decreases; known mixtures are recovered.
"""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest
import scipy.optimize
import scipy.special
import scipy.stats

import bayesgmm
from bayesgmm import GMMParams, em_fit
from bayesgmm.families import DOF_BOUNDS, STUDENT_T, maximise_dof, solve_dof

TRUE = GMMParams.from_covariances(
    [0.4, 0.6],
    [[-3.0, 0.0], [3.0, 1.0]],
    [[[1.0, 0.3], [0.3, 1.0]], [[2.0, 0.0], [0.0, 0.5]]],
    "full",
    family="student_t",
    dof=[3.0, 8.0],
)


def _data(n, seed=3):
    X, labels = TRUE.sample(n, seed=seed)
    return np.asarray(X), np.asarray(labels)


def _random_params(covariance_type, rng, k=3, d=3):
    A = rng.normal(size=(k, d, d))
    full = A @ np.swapaxes(A, 1, 2) + np.eye(d)
    dense = {
        "full": full,
        "tied": full[0],
        "diag": np.diagonal(full, axis1=1, axis2=2),
        "spherical": np.diagonal(full, axis1=1, axis2=2).mean(axis=1),
    }[covariance_type]
    weights = rng.dirichlet(np.ones(k))
    return GMMParams.from_covariances(
        weights, rng.normal(size=(k, d)), dense, covariance_type, family="student_t", dof=rng.uniform(1.5, 20, k)
    )


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("jitted", [False, True])
def test_log_prob_equals_scipy_multivariate_t(covariance_type, jitted):
    rng = np.random.default_rng(0)
    params = _random_params(covariance_type, rng)
    X = rng.normal(size=(50, 3)) * 4
    matrices = np.asarray(params.covariance_matrices)
    reference = scipy.special.logsumexp(
        [
            np.log(w) + scipy.stats.multivariate_t(m, S, df=nu).logpdf(X)
            for w, m, S, nu in zip(
                np.asarray(params.weights), np.asarray(params.means), matrices, np.asarray(params.dof)
            )
        ],
        axis=0,
    )
    log_prob = jax.jit(lambda p, X: p.log_prob(X)) if jitted else (lambda p, X: p.log_prob(X))
    np.testing.assert_allclose(np.asarray(log_prob(params, X)), reference, rtol=1e-12, atol=1e-12)


def test_parameter_count_follows_the_degrees_of_freedom_mode():
    base = GMMParams.from_covariances(TRUE.weights, TRUE.means, TRUE.covariances, "full").n_parameters
    assert TRUE.n_parameters == base + 2
    shared = GMMParams.from_covariances(
        TRUE.weights, TRUE.means, TRUE.covariances, "full", family="student_t", dof=[4.0, 4.0], dof_mode="shared"
    )
    fixed = GMMParams.from_covariances(
        TRUE.weights, TRUE.means, TRUE.covariances, "full", family="student_t", dof=[4.0, 4.0], dof_mode="fixed"
    )
    assert (shared.n_parameters, fixed.n_parameters) == (base + 1, base)


def test_sample_covariance_is_the_scale_mixtures():
    """``Cov = ν/(ν − 2) Σ``; with ν = 10 and 8 the fourth moments are finite, so the sample
    covariance has a Monte Carlo standard error; each entry within 5 of them."""
    params = GMMParams.from_covariances(
        [0.5, 0.5], [[0.0, 0.0], [10.0, 0.0]], [[[1.0, 0.5], [0.5, 2.0]], [[1.0, 0.0], [0.0, 1.0]]],
        family="student_t", dof=[10.0, 8.0],
    )  # fmt: skip
    X, labels = (np.asarray(a) for a in params.sample(200_000, seed=5))
    for component, nu in enumerate([10.0, 8.0]):
        rows = X[labels == component] - np.asarray(params.means[component])
        expected = nu / (nu - 2) * np.asarray(params.covariances[component])
        products = rows[:, :, None] * rows[:, None, :]
        standard_error = products.std(axis=0) / np.sqrt(len(rows))
        assert np.all(np.abs(products.mean(axis=0) - expected) < 5 * standard_error)


def test_invalid_family_arguments_are_clear_errors():
    X, _ = _data(200)
    with pytest.raises(ValueError, match="family must be one of"):
        em_fit(X, 2, family="cauchy")
    with pytest.raises(ValueError, match="finite number > 0"):
        em_fit(X, 2, family="student_t", dof=0.0)
    with pytest.raises(ValueError, match="finite number > 0"):
        em_fit(X, 2, family="student_t", dof=-3)
    with pytest.raises(ValueError, match="'shared'"):
        em_fit(X, 2, family="student_t", dof="pooled")
    with pytest.raises(ValueError, match="Student-t components only"):
        em_fit(X, 2, dof=4.0)
    with pytest.raises(ValueError, match="moments='raw'"):
        em_fit(X, 2, family="student_t", moments="raw")
    with pytest.raises(ValueError, match="must be given for family='student_t'"):
        GMMParams(TRUE.weights, TRUE.means, TRUE.scale, "full", family="student_t")
    with pytest.raises(ValueError, match="dof must have shape"):
        GMMParams(TRUE.weights, TRUE.means, TRUE.scale, "full", dof=TRUE.dof[:1], family="student_t")


def test_solve_dof_is_the_root_of_the_estimating_equation():
    constants = np.array([-1.05, -1.3, -1.7, -2.2])  # roots in DOF_BOUNDS: constant in (−2.27, −1.003)
    roots = np.asarray(solve_dof(jax.numpy.asarray(constants)))

    def equation(nu, constant):
        return np.log(nu / 2) - scipy.special.digamma(nu / 2) + 1 + constant

    for root, constant in zip(roots, constants):
        reference = scipy.optimize.brentq(equation, *DOF_BOUNDS, args=(constant,), xtol=1e-14)
        np.testing.assert_allclose(root, reference, rtol=1e-10)
    # no root in the bounds: the equation stays positive (upper bound) or negative (lower bound)
    np.testing.assert_allclose(
        np.asarray(solve_dof(jax.numpy.asarray([-1.0 + 1e-9, -20.0]))), DOF_BOUNDS[::-1], rtol=1e-9
    )


# ----------------------------------------------------------------------------- EM


def _reference_ecme(X, weights, means, covariances, dof, n_iter, reg_covar, dof_mode):
    """Liu and Rubin's ECME for a t mixture, full covariances, in NumPy and SciPy: ``n_iter`` iterations of
    McLachlan and Peel's (2000, §7.5) E-step and CM-step for weights, means and scales, then ν maximising
    the observed log-likelihood at the new means and scales (its derivative's root by ``brentq``, component
    after component, or one ν for all; a bound when the derivative keeps its sign)."""
    n, d = X.shape

    def log_joint(weights, means, covariances, dof):
        return np.stack(
            [
                np.log(w) + scipy.stats.multivariate_t(m, S, df=nu).logpdf(X)
                for w, m, S, nu in zip(weights, means, covariances, dof)
            ],
            axis=1,
        )

    def score(nu, sq, resp):  # Σ_i r_ik ∂/∂ν log t(x_i; ν)
        terms = (
            scipy.special.digamma((nu + d) / 2) - scipy.special.digamma(nu / 2) - d / nu
            - np.log1p(sq / nu) + (nu + d) * sq / (nu * (nu + sq))
        ) / 2  # fmt: skip
        return np.sum(resp * terms)

    def root(function):
        low, high = function(DOF_BOUNDS[0]), function(DOF_BOUNDS[1])
        if low <= 0:
            return DOF_BOUNDS[0]
        if high >= 0:
            return DOF_BOUNDS[1]
        return scipy.optimize.brentq(function, *DOF_BOUNDS, xtol=1e-14, rtol=1e-15)

    history = []
    for _ in range(n_iter + 1):
        joint = log_joint(weights, means, covariances, dof)
        log_norm = scipy.special.logsumexp(joint, axis=1)
        history.append(log_norm.mean())
        if len(history) == n_iter + 1:
            break
        resp = np.exp(joint - log_norm[:, None])
        diff = X[:, None, :] - means[None]
        sq = np.einsum("nki,kij,nkj->nk", diff, np.linalg.inv(covariances), diff)
        u = (dof + d) / (dof + sq)
        counts = resp.sum(axis=0)
        ru = resp * u
        means = (ru.T @ X) / ru.sum(axis=0)[:, None]
        diff = X[:, None, :] - means[None]
        covariances = np.einsum("nk,nki,nkj->kij", ru, diff, diff) / counts[:, None, None] + reg_covar * np.eye(d)
        weights = counts / n
        sq = np.einsum("nki,kij,nkj->nk", diff, np.linalg.inv(covariances), diff)  # at the new means and scales

        def resp_at(dof, new=(weights, means, covariances)):
            joint = log_joint(*new, dof)
            return np.exp(joint - scipy.special.logsumexp(joint, axis=1)[:, None])

        if dof_mode == "shared":
            dof = np.full(2, root(lambda nu, sq=sq: score(nu, sq, resp_at(np.full(2, nu)))))
        elif dof_mode == "component":
            for k in range(2):

                def one(nu, k=k, sq=sq, held=dof):
                    trial = held.copy()
                    trial[k] = nu
                    return score(nu, sq[:, k], resp_at(trial)[:, k])

                dof = dof.copy()
                dof[k] = root(one)
    return np.array(history), weights, means, covariances, dof


@pytest.mark.parametrize("driver", ["numpy", "compiled"])
@pytest.mark.parametrize("dof_mode", ["component", "shared", "fixed"])
def test_em_iterations_equal_an_independent_ecme(dof_mode, driver, monkeypatch):
    """Ten iterations from the same start: the same log-likelihoods and parameters to float64 round-off
    (1e-8 relative: the reference inverts matrices, the package solves triangular systems)."""
    X, _ = _data(600)
    means0 = np.array([[-1.0, 0.0], [1.0, 0.5]])
    covariances0 = np.stack([np.cov(X.T)] * 2)
    dof = {"component": None, "shared": "shared", "fixed": 4.0}[dof_mode]
    if driver == "compiled":  # em_fit runs fits this small on the NumPy driver unless told not to
        monkeypatch.setattr(bayesgmm.em._fit, "HOST_MAX_WORK", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesgmm.ConvergenceWarning)
        result = em_fit(
            X, 2, family="student_t", dof=dof, weights_init=[0.5, 0.5], means_init=means0,
            covariances_init=covariances0, max_iter=10, tol=0.0, reg_covar=1e-6,
        )  # fmt: skip
    history, weights, means, covariances, dofs = _reference_ecme(
        X, np.array([0.5, 0.5]), means0, covariances0, np.full(2, 4.0), 10, 1e-6, dof_mode
    )
    np.testing.assert_allclose(result.log_likelihood_history, history, rtol=1e-8)
    np.testing.assert_allclose(np.asarray(result.params.weights), weights, rtol=1e-8)
    np.testing.assert_allclose(np.asarray(result.params.means), means, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(np.asarray(result.params.covariances), covariances, rtol=1e-8)
    np.testing.assert_allclose(np.asarray(result.params.dof), dofs, rtol=1e-8)
    assert result.params.dof_mode == dof_mode


def test_dof_derivatives_equal_finite_differences():
    """``dof_derivatives`` against central differences (step 1e-4 ν: truncation error ~1e-8 relative,
    round-off ~1e-12 absolute): the score against ``log_density``'s, the curvature against the score's;
    at small, middling and large ν and distances, with one ``p`` for all rows and one per row."""
    sq_norm = np.array([[0.01, 0.5, 3.0, 30.0, 400.0]])
    for p in (1, 5, np.array([1.0, 2.0, 3.0, 4.0, 5.0])):
        for nu in (1.2, 4.0, 25.0, 150.0):
            h = 1e-4 * nu

            def f(v, p=p):
                return STUDENT_T.log_density(sq_norm, p, np.array([v]))

            def score_at(v, p=p):
                return STUDENT_T.dof_derivatives(sq_norm, p, np.array([v]))[0]

            score, curvature = STUDENT_T.dof_derivatives(sq_norm, p, np.array([nu]))
            np.testing.assert_allclose(score, (f(nu + h) - f(nu - h)) / (2 * h), rtol=1e-6, atol=1e-12)
            np.testing.assert_allclose(
                curvature, (score_at(nu + h) - score_at(nu - h)) / (2 * h), rtol=1e-6, atol=1e-12
            )


@pytest.mark.parametrize("xp", ["numpy", "jax"])
@pytest.mark.parametrize("dof_mode", ["component", "shared"])
def test_maximise_dof_maximises_the_observed_likelihood(dof_mode, xp):
    """ECME's ν-step against a derivative-free search (``scipy.optimize.minimize_scalar`` on log ν):
    the same maximiser (component after component for "component"), to 1e-5 relative (the
    bounded Brent search's resolution of a maximum, √ε of its flat top), with a noise component."""
    rng = np.random.default_rng(5)
    k, n, d = 3, 3000, 4
    scale = np.array([1.0, 2.0, 0.7])[:, None]
    sq_norm = rng.chisquare(d, size=(k, n)) * scale / rng.gamma(3.0, 1 / 3.0, size=(k, n))
    base = np.log([0.2, 0.3, 0.4])[:, None] - np.array([0.0, 1.0, -0.5])[:, None] + np.zeros((k, n))
    noise = np.full(n, np.log(0.1) - 8.0)
    weights = rng.integers(1, 3, size=n).astype(float)
    active = np.ones(k, bool)
    start = np.array([4.0, 30.0, 2.0])

    def likelihood(dof):
        joint = base + STUDENT_T.log_density(sq_norm, d, dof)
        return weights @ scipy.special.logsumexp(np.vstack([joint, noise[None]]), axis=0)

    expected = start.copy()
    if dof_mode == "shared":
        found = scipy.optimize.minimize_scalar(
            lambda t: -likelihood(np.full(k, np.exp(t))), bounds=np.log(DOF_BOUNDS), method="bounded",
            options=dict(xatol=1e-10),
        )  # fmt: skip
        expected[:] = np.exp(found.x)
    else:
        for j in range(k):

            def negative(t, j=j):
                trial = expected.copy()
                trial[j] = np.exp(t)
                return -likelihood(trial)

            found = scipy.optimize.minimize_scalar(
                negative, bounds=np.log(DOF_BOUNDS), method="bounded", options=dict(xatol=1e-10)
            )
            expected[j] = np.exp(found.x)
    arrays = (start, base, sq_norm, weights, noise, active)
    if xp == "jax":
        with jax.enable_x64(True):
            arrays = tuple(jax.numpy.asarray(a) for a in arrays)
            result = jax.jit(maximise_dof, static_argnums=(0, 8))(
                STUDENT_T, arrays[0], arrays[1], arrays[2], d, *arrays[3:], dof_mode
            )
            result = np.asarray(result)
    else:
        result = maximise_dof(STUDENT_T, start, base, sq_norm, d, weights, noise, active, dof_mode)
    np.testing.assert_allclose(result, expected, rtol=1e-5)
    assert likelihood(result) >= likelihood(expected) - 1e-9 * abs(likelihood(expected))


def test_ecme_reaches_the_maximum_in_few_iterations(monkeypatch):
    """On near-Gaussian clusters (ν → ∞, the likelihood flat in ν) ECME stops at the default tol 1e-3
    (mean log-likelihood change) within 0.1 log-likelihood units of the maximum (a fit to tol 1e-10),
    in at most 8 iterations; ECM's ν-step, kept for streamed rows, stops more than 1 unit short after
    more iterations (measured: ECME 0.018 after 4 iterations, ECM 3.9 after 12)."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) + 4])
    best = em_fit(X, 2, family="student_t", tol=1e-10, max_iter=5000)
    ecme = em_fit(X, 2, family="student_t")
    assert len(X) * (best.log_likelihood - ecme.log_likelihood) < 0.1
    assert ecme.n_iter <= 8
    monkeypatch.setattr(bayesgmm.em._host, "uses_observed_dof_step", lambda family, dof_mode: False)
    ecm = em_fit(X, 2, family="student_t")  # the NumPy driver (400 rows), with ECM's ν-step
    assert len(X) * (best.log_likelihood - ecm.log_likelihood) > 1.0
    assert ecm.n_iter > ecme.n_iter


def test_missing_values_ecme_is_monotone():
    """With 15% of entries missing the ν-step uses each row's observed coordinates (its own ``p``):
    the observed-data log-likelihood never decreases, and ν is recovered as from complete rows."""
    X, _ = _data(3000, seed=7)
    rng = np.random.default_rng(8)
    holes = X.copy()
    holes[rng.random(X.shape) < 0.15] = np.nan
    holes = holes[~np.all(np.isnan(holes), axis=1)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesgmm.ConvergenceWarning)
        result = em_fit(holes, 2, family="student_t", missing="marginalize", tol=0.0, max_iter=40)
    history = result.log_likelihood_history
    assert np.all(np.diff(history) >= -1e-12 * np.abs(history[1:]))
    complete = em_fit(X, 2, family="student_t", tol=1e-8, max_iter=500)
    order = np.argsort(np.asarray(result.params.means[:, 0])), np.argsort(np.asarray(complete.params.means[:, 0]))
    np.testing.assert_allclose(
        np.asarray(result.params.dof)[order[0]], np.asarray(complete.params.dof)[order[1]], rtol=0.35
    )


@pytest.mark.parametrize("fixed", [True, False])
def test_converged_fit_equals_studenttmixture(fixed):
    """studenttmixture (Parkinson) divides the scale by Σ r u instead of Σ r (Kent, Tyler and Vardi's
    faster iteration): other iterates, the same fixed point. Converged from the same start, the
    log-likelihoods agree to 1e-10 and the parameters to 1e-5 (both stop on tiny changes of a
    linearly converging sequence; their distance to the maximum is what is compared)."""
    studenttmixture = pytest.importorskip("studenttmixture")
    X, _ = _data(2000)
    means0 = np.array([[-1.0, 0.0], [1.0, 0.5]])
    covariance0 = np.cov(X.T) + 1e-6 * np.eye(2)
    model = studenttmixture.EMStudentMixture(
        n_components=2, tol=1e-12, max_iter=5000, df=4.0, fixed_df=fixed, reg_covar=1e-6
    )
    model.initialize_params = lambda X, seed, init: (
        means0.copy(), np.stack([covariance0] * 2, -1), np.full(2, 0.5),
        np.stack([np.linalg.cholesky(covariance0)] * 2, -1),
    )  # fmt: skip
    model.fit(X)
    result = em_fit(
        X, 2, family="student_t", dof=4.0 if fixed else None, weights_init=[0.5, 0.5], means_init=means0,
        covariances_init=np.stack([np.cov(X.T)] * 2), tol=1e-13, max_iter=5000,
    )  # fmt: skip
    np.testing.assert_allclose(result.log_likelihood, model.score(X), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(result.params.means), model.location_, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(result.params.covariances), np.moveaxis(model.scale_, -1, 0), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(np.asarray(result.params.dof), model.df_, rtol=1e-4)


@pytest.mark.parametrize(
    "covariance_type, dof", [("full", None), ("tied", "shared"), ("diag", 5.0), ("spherical", None), ("VEV", None)]
)
def test_log_likelihood_never_decreases(covariance_type, dof):
    """ECME is monotone: each conditional maximisation increases the expected complete log-likelihood
    (weights, means, scales) or the log-likelihood itself (the degrees of freedom)."""
    X, _ = _data(1500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesgmm.ConvergenceWarning)
        result = em_fit(X, 2, family="student_t", dof=dof, covariance_type=covariance_type, tol=0.0, max_iter=60)
    assert np.all(np.diff(result.log_likelihood_history) >= -1e-12 * np.abs(result.log_likelihood_history[1:]))
    assert result.params.family == "student_t" and result.params.covariance_type == covariance_type


def test_recovers_a_known_mixture():
    """n = 20 000 from TRUE: means within 0.05, degrees of freedom within 25% (ν̂'s standard error
    at ν = 8 and 12 000 rows is about 10%, at ν = 3 and 8 000 rows 4%), labels as right as the true
    mixture's own classification, less 0.5% (its tails overlap: it gets 97% right)."""
    X, labels = _data(20_000)
    result = em_fit(X, 2, family="student_t", tol=1e-8, max_iter=500)
    order = np.argsort(np.asarray(result.params.means[:, 0]))
    np.testing.assert_allclose(np.asarray(result.params.means)[order], np.asarray(TRUE.means), atol=0.05)
    np.testing.assert_allclose(np.asarray(result.params.dof)[order], [3.0, 8.0], rtol=0.25)
    accuracy = np.mean(np.asarray(result.params.predict(X)) == order[labels])
    assert accuracy > np.mean(np.asarray(TRUE.predict(X)) == labels) - 0.005


def test_robust_to_outliers():
    """Two Gaussian clusters and 5% uniform outliers over a wide box: the t fit's means stay within 0.1
    of the clusters', the Gaussian fit's are pulled away or its covariances blown up."""
    rng = np.random.default_rng(7)
    clusters = np.concatenate([rng.normal([-3, 0], 0.7, (500, 2)), rng.normal([3, 0], 0.7, (500, 2))])
    X = np.concatenate([clusters, rng.uniform(-25, 25, (50, 2))])
    robust = em_fit(X, 2, family="student_t", n_init=3, tol=1e-6, max_iter=2000)
    means = np.sort(np.asarray(robust.params.means[:, 0]))
    np.testing.assert_allclose(means, [-3.0, 3.0], atol=0.1)
    assert np.min(np.asarray(robust.params.dof)) < 5  # the outliers are one component's heavy tails (or both's)
    gaussian = em_fit(X, 2, n_init=3, tol=1e-6, max_iter=2000)
    assert np.max(np.asarray(gaussian.params.covariances)) > 3 * np.max(np.asarray(robust.params.covariances))


def test_missing_values_marginalise_the_t_density():
    """With NaN, the likelihood reported is the observed-data one (scipy's t marginal of the observed
    coordinates) and never decreases."""
    X, _ = _data(800)
    kwargs = dict(family="student_t", tol=0.0, max_iter=15, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesgmm.ConvergenceWarning)
        incomplete = X.copy()
        incomplete[np.random.default_rng(2).random(X.shape) < 0.1] = np.nan
        incomplete[np.all(np.isnan(incomplete), axis=1), 0] = 0.0
        marginal = em_fit(incomplete, 2, missing="marginalize", **kwargs)
    assert np.all(np.diff(marginal.log_likelihood_history) >= -1e-12)
    params = marginal.params
    reference = 0.0
    for row in incomplete:
        observed = ~np.isnan(row)
        reference += scipy.special.logsumexp(
            [
                np.log(w)
                + scipy.stats.multivariate_t(m[observed], S[np.ix_(observed, observed)], df=nu).logpdf(row[observed])
                for w, m, S, nu in zip(
                    np.asarray(params.weights),
                    np.asarray(params.means),
                    np.asarray(params.covariances),
                    np.asarray(params.dof),
                )  # fmt: skip
            ]
        )
    np.testing.assert_allclose(marginal.log_likelihood, reference / len(X), rtol=1e-10)


def test_float32_far_from_the_origin():
    """float32, data at 10⁴: the fit matches the float64 fit of the centred data (the data are centred
    and rescaled before fitting; the E-step accumulates about the current means)."""
    X, _ = _data(5000)
    with jax.enable_x64(False):
        far = em_fit(X + 1e4, 2, family="student_t", tol=1e-6, max_iter=300)
    near = em_fit(X, 2, family="student_t", tol=1e-10, max_iter=300)
    order = np.argsort(np.asarray(far.params.means[:, 0]))
    near_order = np.argsort(np.asarray(near.params.means[:, 0]))
    far_means = np.asarray(far.params.means, np.float64)[order] - 1e4
    np.testing.assert_allclose(far_means, np.asarray(near.params.means)[near_order], atol=2e-2)
    np.testing.assert_allclose(far.log_likelihood, near.log_likelihood, rtol=1e-4)
    # ν's likelihood is flat near 8 (its standard error here is ~15%): tol=1e-6 stops float32 within 10%
    np.testing.assert_allclose(np.asarray(far.params.dof)[order], np.asarray(near.params.dof)[near_order], rtol=0.1)
    assert far.params.dtype == np.float32
