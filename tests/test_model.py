"""The NumPyro model: its log density equals priors + mixture likelihood computed with scipy."""

import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density
from scipy import stats

from bayesgmm import GMMParams
from bayesgmm.model import Priors, gmm_model, params_from_sites, sites_from_params
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


@pytest.mark.parametrize("std_prior", ["lognormal", "halfnormal"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_density_is_priors_plus_likelihood(covariance_type, std_prior):
    rng = np.random.default_rng(0)
    k, d, n = 3, 3, 40
    X = rng.normal(size=(n, d))
    covariances = covariances_in_layout(np.stack([random_spd(rng, d) for _ in range(k)]), covariance_type)
    params = GMMParams.from_covariances(
        rng.dirichlet(np.ones(k)), rng.normal(size=(k, d)), covariances, covariance_type
    )
    priors = Priors(weight_concentration=1.5, std_prior=std_prior, lkj_concentration=2.5)
    hyper = priors.resolve(np.zeros(d), 1.0, np.ones(d) * 1.3, k)
    sites = sites_from_params(params)
    value, _ = log_density(
        gmm_model, (jnp.asarray(X), hyper), dict(k=k, covariance_type=covariance_type, std_prior=std_prior), sites
    )
    # independent reference
    expected = stats.dirichlet(np.full(k, 1.5)).logpdf(np.asarray(params.weights))
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
        expected += np.sum(_lkj_cholesky_logpdf(np.asarray(sites["corr_cholesky"]), 2.5))
    full = full_covariances(np.asarray(params.covariances), covariance_type, k, d)
    per_component = np.stack(
        [
            np.log(w) + stats.multivariate_normal(m, c).logpdf(X)
            for w, m, c in zip(np.asarray(params.weights), np.asarray(params.means), full)
        ]
    )
    expected += np.sum(np.logaddexp.reduce(per_component, axis=0))
    np.testing.assert_allclose(float(value), expected, rtol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_sites_round_trip(covariance_type):
    rng = np.random.default_rng(1)
    covariances = covariances_in_layout(np.stack([random_spd(rng, 2) for _ in range(2)]), covariance_type)
    params = GMMParams.from_covariances([0.4, 0.6], rng.normal(size=(2, 2)), covariances, covariance_type)
    rebuilt = params_from_sites(sites_from_params(params), covariance_type)
    np.testing.assert_allclose(rebuilt.scale, params.scale, rtol=1e-12)


def test_priors_are_validated():
    with pytest.raises(ValueError, match="std_prior must be one of"):
        Priors(std_prior="gamma")
    with pytest.raises(ValueError, match="weight_concentration must be a positive number"):
        Priors(weight_concentration=0.0)
    with pytest.raises(ValueError, match=r"Priors.mean_scale must be a finite positive"):
        Priors(mean_scale=[-1.0, 1.0]).resolve(np.zeros(2), 1.0, np.ones(2), 2)
