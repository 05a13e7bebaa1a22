"""The NumPyro model: its log density equals priors + mixture likelihood computed with scipy.

Gaussian components, Student-t components (``family="student_t"``: a ``dof`` site with a Gamma
prior, the multivariate t likelihood) and Gaussian components observed with measurement errors
(the likelihood ``Σ_k π_k N(x_i | μ_k, Σ_k + S_i)``); and the hand-written density NUTS uses
against NumPyro's potential energy of the model, for each.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import constrain_fn, log_density, potential_energy, unconstrain_fn
from scipy import stats

from bayesgmm import GMMParams
from bayesgmm.model import (
    STD_PRIORS,
    Priors,
    constrain,
    gmm_model,
    params_from_sites,
    sites_from_params,
    unconstrain,
    unconstrained_log_density,
)
from tests._references import COVARIANCE_TYPES, covariances_in_layout, full_covariances, random_spd


def _lkj_cholesky_logpdf(L, eta):
    """LKJ(η) density of a correlation Cholesky factor, written out independently.

    p(C) = det(C)^(η−1) / c_d(η) with Lewandowski, Kurowicka & Joe (2009)'s
    c_d(η) = 2^{Σ_k (2η−2+d−k)(d−k)} Π_k B(η + (d−k−1)/2, η + (d−k−1)/2)^{d−k}, k = 1..d−1,
    times the Jacobian Π_i L_ii^{d−i} of C = L Lᵀ (for d = 2: 2^{2η−1} B(η, η), the
    normaliser of (1−r²)^{η−1} on (−1, 1)).
    """
    from scipy.special import betaln

    d = L.shape[-1]
    k = np.arange(1, d)
    b = eta + (d - k - 1) / 2.0
    log_c = np.sum((2 * eta - 2 + d - k) * (d - k)) * np.log(2.0) + np.sum((d - k) * betaln(b, b))
    i = np.arange(2, d + 1)
    log_diag = np.log(np.diagonal(L, axis1=-2, axis2=-1)[..., 1:])
    return np.sum((d - i + 2 * eta - 2) * log_diag, axis=-1) - log_c


def _reference_log_prior(params, sites, hyper, covariance_type, std_prior, lkj_concentration=2.5):
    """The log prior density of the sites from scipy.stats (and ``_lkj_cholesky_logpdf``)."""
    k = params.n_components
    expected = stats.dirichlet(np.full(k, float(hyper.weight_concentration))).logpdf(np.asarray(params.weights))
    expected += (
        stats.norm(np.asarray(hyper.mean_loc), np.asarray(hyper.mean_scale)).logpdf(np.asarray(params.means)).sum()
    )
    stds = np.asarray(sites["stds"])
    if std_prior == "lognormal":
        loc, scale = np.asarray(hyper.std_loc), np.asarray(hyper.std_scale)
        if covariance_type == "spherical":
            loc, scale = loc.mean(), scale.mean()
        expected += stats.lognorm(s=scale, scale=np.exp(loc)).logpdf(stds).sum()
    else:
        scale = np.asarray(hyper.std_scale)
        expected += stats.halfnorm(scale=scale.mean() if covariance_type == "spherical" else scale).logpdf(stds).sum()
    if "corr_cholesky" in sites:
        expected += np.sum(_lkj_cholesky_logpdf(np.asarray(sites["corr_cholesky"]), lkj_concentration))
    if "dof" in sites:
        rate = float(hyper.dof_rate)
        expected += stats.gamma(float(hyper.dof_concentration), scale=1.0 / rate).logpdf(np.asarray(sites["dof"])).sum()
    return expected


def _random_params(rng, k, d, covariance_type, **family):
    covariances = covariances_in_layout(np.stack([random_spd(rng, d) for _ in range(k)]), covariance_type)
    return GMMParams.from_covariances(
        rng.dirichlet(np.ones(k)), rng.normal(size=(k, d)), covariances, covariance_type, **family
    )


@pytest.mark.parametrize("std_prior", ["lognormal", "halfnormal"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_density_is_priors_plus_likelihood(covariance_type, std_prior):
    rng = np.random.default_rng(0)
    k, d, n = 3, 3, 40
    X = rng.normal(size=(n, d))
    params = _random_params(rng, k, d, covariance_type)
    priors = Priors(weight_concentration=1.5, std_prior=std_prior, lkj_concentration=2.5)
    hyper = priors.resolve(np.zeros(d), 1.0, np.ones(d) * 1.3, k)
    sites = sites_from_params(params)
    value, _ = log_density(
        gmm_model, (jnp.asarray(X), hyper), dict(k=k, covariance_type=covariance_type, std_prior=std_prior), sites
    )
    # independent reference
    expected = _reference_log_prior(params, sites, hyper, covariance_type, std_prior)
    full = full_covariances(np.asarray(params.covariances), covariance_type, k, d)
    per_component = np.stack(
        [
            np.log(w) + stats.multivariate_normal(m, c).logpdf(X)
            for w, m, c in zip(np.asarray(params.weights), np.asarray(params.means), full)
        ]
    )
    expected += np.sum(np.logaddexp.reduce(per_component, axis=0))
    np.testing.assert_allclose(float(value), expected, rtol=1e-10)


DOF = np.array([1.5, 6.0, 40.0])  # heavy, moderate and near-Gaussian tails


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_student_t_log_density_is_priors_plus_likelihood(covariance_type):
    """``family="student_t"``: the Gamma prior of ``dof`` and the multivariate t likelihood
    (``scipy.stats.multivariate_t`` with shape matrix ``Σ_k``), the assignments marginalised."""
    rng = np.random.default_rng(3)
    k, d, n = 3, 3, 40
    X = rng.standard_t(3.0, size=(n, d))
    params = _random_params(rng, k, d, covariance_type, family="student_t", dof=DOF)
    priors = Priors(weight_concentration=1.5, lkj_concentration=2.5, dof_concentration=2.5, dof_rate=0.2)
    hyper = priors.resolve(np.zeros(d), 1.0, np.ones(d) * 1.3, k)
    sites = sites_from_params(params)
    assert set(sites) >= {"dof"}
    settings = dict(k=k, covariance_type=covariance_type, std_prior="lognormal", family="student_t")
    value, _ = log_density(gmm_model, (jnp.asarray(X), hyper), settings, sites)
    expected = _reference_log_prior(params, sites, hyper, covariance_type, "lognormal")
    full = full_covariances(np.asarray(params.covariances), covariance_type, k, d)
    per_component = np.stack(
        [
            np.log(w) + stats.multivariate_t(m, c, df=nu).logpdf(X)
            for w, m, c, nu in zip(np.asarray(params.weights), np.asarray(params.means), full, DOF)
        ]
    )
    expected += np.sum(np.logaddexp.reduce(per_component, axis=0))
    np.testing.assert_allclose(float(value), expected, rtol=1e-10)


def _random_errors(rng, n, d, form):
    """Measurement errors as the model takes them: (n, d) variances or (n, d, d) covariances."""
    if form == "variances":
        return rng.uniform(0.0, 1.5, size=(n, d)) ** 2
    return np.stack([random_spd(rng, d, scale=0.5) for _ in range(n)])


@pytest.mark.parametrize(
    "covariance_type, form",
    [("full", "covariances"), ("diag", "variances"), ("tied", "variances"), ("spherical", "covariances")],
)
def test_measurement_error_log_density_is_priors_plus_deconvolved_likelihood(covariance_type, form):
    """With errors ``S_i`` each row's likelihood is ``Σ_k π_k N(x_i | μ_k, Σ_k + S_i)`` (scipy)."""
    rng = np.random.default_rng(4)
    k, d, n = 3, 3, 30
    X = rng.normal(size=(n, d))
    params = _random_params(rng, k, d, covariance_type)
    errors = _random_errors(rng, n, d, form)
    hyper = Priors(weight_concentration=1.5, lkj_concentration=2.5).resolve(np.zeros(d), 1.0, np.ones(d) * 1.3, k)
    sites = sites_from_params(params)
    settings = dict(k=k, covariance_type=covariance_type, std_prior="lognormal")
    value, _ = log_density(gmm_model, (jnp.asarray(X), hyper, None, None, jnp.asarray(errors)), settings, sites)
    expected = _reference_log_prior(params, sites, hyper, covariance_type, "lognormal")
    full = full_covariances(np.asarray(params.covariances), covariance_type, k, d)
    S = errors if form == "covariances" else np.stack([np.diag(v) for v in errors])
    per_row = [
        np.logaddexp.reduce(
            [
                np.log(w) + stats.multivariate_normal(m, c + S[i]).logpdf(X[i])
                for w, m, c in zip(np.asarray(params.weights), np.asarray(params.means), full)
            ]
        )
        for i in range(n)
    ]
    expected += np.sum(per_row)
    np.testing.assert_allclose(float(value), expected, rtol=1e-10)
    without, _ = log_density(gmm_model, (jnp.asarray(X), hyper), settings, sites)
    assert abs(float(value - without)) > 0.1  # the errors matter
    with pytest.raises(ValueError, match="Gaussian components"):
        log_density(
            gmm_model,
            (jnp.asarray(X), hyper, None, None, jnp.asarray(errors)),
            dict(settings, family="student_t"),
            sites,
        )


@pytest.mark.parametrize(
    "covariance_type, std_prior, d",
    [(covariance_type, std_prior, 3) for covariance_type in COVARIANCE_TYPES for std_prior in STD_PRIORS]
    + [pytest.param(*case, marks=pytest.mark.slow) for case in [("full", "lognormal", 1), ("full", "halfnormal", 2)]]
    + [pytest.param("tied", "lognormal", 5, marks=pytest.mark.slow)],
)
def test_unconstrained_log_density_is_minus_numpyro_potential_energy(covariance_type, std_prior, d):
    """The hand-written density NUTS uses equals NumPyro's potential energy of ``gmm_model``.

    NumPyro traces the model, applies its transforms (stick-breaking, exp, CorrCholesky) and
    adds their log-Jacobians; the hand-written version works in log space and inverts the
    correlation factor by matrix products. Same function, different arithmetic: values and
    gradients agree to float64 round-off (observed ≤ 1e-14 relative); so do they without the
    log-Jacobians (``jacobian=False``) against NumPyro's log joint density of the constrained
    sites. d = 1, 2, 3, 5 cover no
    correlations and one, two and three factors of the unit-triangular inverse. Jitted: op-by-op
    gradients of the traced model are slow to dispatch.
    """
    _check_hand_written_density(covariance_type, std_prior, d)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_student_t_unconstrained_log_density_is_minus_numpyro_potential_energy(covariance_type):
    """The same for Student-t components: the ``dof`` site (log ν) with its Gamma prior and the t likelihood."""
    _check_hand_written_density(covariance_type, "lognormal", 3, family="student_t")


@pytest.mark.parametrize(
    "covariance_type, error_form",
    [("full", "covariances"), ("diag", "variances")]
    + [pytest.param(*case, marks=pytest.mark.slow) for case in [("tied", "covariances"), ("spherical", "variances")]],
)
def test_measurement_error_unconstrained_log_density_is_minus_numpyro_potential_energy(covariance_type, error_form):
    """The same with measurement errors: the likelihood with ``Σ_k + S_i``."""
    _check_hand_written_density(covariance_type, "lognormal", 3, error_form=error_form)


def _check_hand_written_density(covariance_type, std_prior, d, family="gaussian", error_form=None):
    """``unconstrained_log_density`` against NumPyro's potential energy and log density of ``gmm_model``."""
    rng = np.random.default_rng(d)
    k, n = 3, 50
    X = jnp.asarray(rng.normal(size=(n, d)))
    t = {} if family == "gaussian" else dict(family=family, dof=DOF)
    params = _random_params(rng, k, d, covariance_type, **t)
    hyper = Priors(
        weight_concentration=1.5, std_prior=std_prior, lkj_concentration=2.5, dof_concentration=2.5, dof_rate=0.2
    ).resolve(np.zeros(d), 1.0, np.ones(d) * 1.3, k)
    settings = dict(k=k, covariance_type=covariance_type, std_prior=std_prior, family=family)
    errors = None if error_form is None else jnp.asarray(_random_errors(rng, n, d, error_form))
    model_args = (X, hyper) if errors is None else (X, hyper, None, None, errors)
    sites = sites_from_params(params)

    def reference(u):
        return -potential_energy(gmm_model, model_args, settings, u)

    def hand_written(u):
        return unconstrained_log_density(u, X, hyper, None, errors, **settings)

    # jacobian=False (MAP's objective): NumPyro's log joint density of the constrained sites
    def reference_joint(u):
        return log_density(gmm_model, model_args, settings, constrain_fn(gmm_model, model_args, settings, u))[0]

    def hand_written_joint(u):
        return unconstrained_log_density(u, X, hyper, None, errors, jacobian=False, **settings)

    @jax.jit  # one program for both sides of every comparison (one compilation, not six)
    def all_of_it(sites):
        reference_unconstrained = unconstrain_fn(gmm_model, model_args, settings, sites)
        unconstrained = unconstrain(sites)
        return (
            reference_unconstrained,
            unconstrained,
            [jax.value_and_grad(f)(reference_unconstrained) for f in (reference, hand_written)],
            [jax.value_and_grad(f)(reference_unconstrained) for f in (reference_joint, hand_written_joint)],
            constrain_fn(gmm_model, model_args, settings, reference_unconstrained),
            constrain(reference_unconstrained),
        )

    reference_unconstrained, unconstrained, with_jacobian, joint, expected_sites, sites_back = all_of_it(sites)
    assert set(unconstrained) == set(reference_unconstrained)
    for name, value in reference_unconstrained.items():
        np.testing.assert_allclose(unconstrained[name], value, rtol=1e-12, atol=1e-12)
    for (expected_value, expected_gradient), (value, gradient) in (with_jacobian, joint):
        np.testing.assert_allclose(value, expected_value, rtol=1e-13)
        for name in unconstrained:
            np.testing.assert_allclose(gradient[name], expected_gradient[name], rtol=1e-11, atol=1e-11)
    for name, value in sites_back.items():
        np.testing.assert_allclose(value, expected_sites[name], rtol=1e-12, atol=1e-14)
    assert abs(float(joint[1][0]) - float(with_jacobian[1][0])) > 1e-3  # the Jacobian is not zero here


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_sites_round_trip(covariance_type):
    rng = np.random.default_rng(1)
    covariances = covariances_in_layout(np.stack([random_spd(rng, 2) for _ in range(2)]), covariance_type)
    params = GMMParams.from_covariances([0.4, 0.6], rng.normal(size=(2, 2)), covariances, covariance_type)
    rebuilt = params_from_sites(sites_from_params(params), covariance_type)
    np.testing.assert_allclose(rebuilt.scale, params.scale, rtol=1e-12)
    assert rebuilt.family == "gaussian" and rebuilt.dof is None


def test_student_t_sites_round_trip():
    rng = np.random.default_rng(1)
    params = _random_params(rng, 3, 2, "full", family="student_t", dof=DOF)
    sites = sites_from_params(params)
    rebuilt = params_from_sites(sites, "full")
    assert rebuilt.family == "student_t"
    np.testing.assert_allclose(rebuilt.dof, DOF, rtol=1e-12)
    np.testing.assert_allclose(jax.jit(constrain)(jax.jit(unconstrain)(sites))["dof"], DOF, rtol=1e-12)


def test_priors_are_validated():
    with pytest.raises(ValueError, match="std_prior must be one of"):
        Priors(std_prior="gamma")
    with pytest.raises(ValueError, match="weight_concentration must be a positive number"):
        Priors(weight_concentration=0.0)
    with pytest.raises(ValueError, match="dof_concentration must be a positive number"):
        Priors(dof_concentration=-2.0)
    with pytest.raises(ValueError, match="dof_rate must be a positive number"):
        Priors(dof_rate=float("inf"))
    with pytest.raises(ValueError, match=r"Priors.mean_scale must be a finite positive"):
        Priors(mean_scale=[-1.0, 1.0]).resolve(np.zeros(2), 1.0, np.ones(2), 2)


@pytest.mark.parametrize("covariance_type", ["full", "spherical"])
def test_weighted_log_density_is_the_density_of_repeated_rows(covariance_type):
    """``sample_weight``: a row of integer weight m counts as m copies, weight 0 not at all.

    The hand-written density and NumPyro's potential energy of ``gmm_model`` (full batch and
    minibatch), each with weights, against the hand-written density of the rows repeated.
    Same terms summed in a different order: float64 round-off (≤ 1e-12 relative).
    """
    rng = np.random.default_rng(7)
    k, n, d = 3, 40, 2
    X = rng.normal(size=(n, d))
    w = rng.integers(0, 4, size=n).astype(float)
    w[:3] = 0.0
    covariances = covariances_in_layout(np.stack([random_spd(rng, d) for _ in range(k)]), covariance_type)
    weights, means = rng.dirichlet(np.ones(k)), rng.normal(size=(k, d))
    params = GMMParams.from_covariances(weights, means, covariances, covariance_type)
    hyper = Priors().resolve(np.zeros(d), 1.0, np.ones(d), k)
    settings = dict(k=k, covariance_type=covariance_type, std_prior="lognormal")
    u = jax.jit(unconstrain)(sites_from_params(params))
    repeated = unconstrained_log_density(u, jnp.asarray(np.repeat(X, w.astype(int), axis=0)), hyper, **settings)
    weighted = unconstrained_log_density(u, jnp.asarray(X), hyper, jnp.asarray(w), **settings)
    np.testing.assert_allclose(weighted, repeated, rtol=1e-12)
    numpyro_weighted = -potential_energy(gmm_model, (jnp.asarray(X), hyper, None, jnp.asarray(w)), settings, u)
    np.testing.assert_allclose(numpyro_weighted, repeated, rtol=1e-12)
    unweighted = unconstrained_log_density(u, jnp.asarray(X), hyper, **settings)
    assert abs(float(unweighted - repeated)) > 1.0  # the weights matter for these data
    # a minibatch of every row is the full batch: the subsample's weights follow its rows
    rows = jnp.asarray(rng.permutation(n))
    minibatch = -potential_energy(gmm_model, (jnp.asarray(X), hyper, rows, jnp.asarray(w)), settings, u)
    np.testing.assert_allclose(minibatch, repeated, rtol=1e-12)
