"""infer() with Student-t components and with measurement errors.

- ``family="student_t"``: draws carry ``dof`` (relabelled with the components, in ArviZ, in
  LOO's pointwise log-likelihood through the t density); heavy-tailed data give a posterior
  of ``ν`` that covers the generating value; simulation-based calibration.
- ``measurement_error=S``: the likelihood uses ``Σ_k + S_i`` (the model's density against scipy
  is in tests/test_model.py); the errors are standardised with the data (a rescaled problem
  gives the rescaled answer); noisy data give back the noise-free (deconvolved) variances;
  posterior-predictive replicates carry the errors.
- The Gaussian program holds none of the Student-t terms (the family is static).
"""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import bayesgmm
from bayesgmm import GMMParams
from bayesgmm.convert import _error_draws
from bayesgmm.inference import relabel
from bayesgmm.model import Priors, sites_from_params, unconstrain, unconstrained_log_density
from tests._references import match_components

T_MEANS = np.array([[-4.0, 0.0], [4.0, 1.0]])
T_DOF = np.array([3.0, 3.0])


def _t_mixture(n, seed, dof=T_DOF):
    truth = GMMParams.from_covariances(
        [0.5, 0.5], T_MEANS, [[[1.0, 0.3], [0.3, 0.8]], [[0.6, 0.0], [0.0, 1.2]]], "full", family="student_t", dof=dof
    )
    X, _ = truth.sample(n, seed=seed)
    return np.asarray(X)


# ----------------------------------------------------------------------------- Student-t


def test_relabel_permutes_dof_with_the_components():
    rng = np.random.default_rng(0)
    dof = np.array([2.0, 10.0, 50.0])
    means = np.array([[-5.0, 0.0], [0.0, 5.0], [5.0, 0.0]])
    reference = GMMParams.from_covariances(
        [0.3, 0.3, 0.4], means, np.array([1.0, 2.0, 3.0]), "spherical", family="student_t", dof=dof
    )
    permutations = np.stack([rng.permutation(3) for _ in range(6)]).reshape(2, 3, 3)
    shuffled = jax.vmap(
        jax.vmap(
            lambda p: GMMParams(
                reference.weights[p], reference.means[p], reference.scale[p], "spherical", reference.dof[p], "student_t"
            )
        )
    )(jnp.asarray(permutations))
    relabelled, _ = relabel(shuffled, means)
    assert relabelled.family == "student_t"
    np.testing.assert_allclose(relabelled.dof, np.broadcast_to(dof, (2, 3, 3)))
    np.testing.assert_allclose(relabelled.scale, np.broadcast_to(reference.scale, (2, 3, 3)))


def test_student_t_posterior_has_dof_in_arviz_and_t_pointwise_log_likelihood():
    """A short NUTS run: dof draws (chain, draw, k) on every path out of ``infer``."""
    import arviz_stats

    X = _t_mixture(120, seed=1)
    posterior = bayesgmm.infer(
        X, 2, method="nuts", family="student_t", num_warmup=60, num_samples=40, num_chains=2, progress_bar=False
    )
    params = posterior.params
    assert params.family == "student_t" and params.dof.shape == (2, 40, 2)
    assert posterior.reference.family == "student_t" and posterior.reference.dof.shape == (2,)
    assert np.all(np.asarray(params.dof) > 0)
    # the pointwise log-likelihood is the t mixture's density of each row under each draw (data scale)
    np.testing.assert_allclose(posterior.log_likelihood, params.log_prob(X), rtol=1e-10, atol=1e-10)
    gaussian = GMMParams(params.weights, params.means, params.scale, "full")
    assert not np.allclose(posterior.log_likelihood, gaussian.log_prob(X), rtol=1e-3)
    tree = posterior.to_arviz()
    assert tree["posterior"]["dof"].dims == ("chain", "draw", "component")
    np.testing.assert_allclose(tree["posterior"]["dof"].values, params.dof)
    assert np.isfinite(arviz_stats.loo(tree).elpd)
    mean = posterior.mean_params()
    assert mean.family == "student_t" and mean.dof.shape == (2,)
    pooled = posterior.predictive_mixture()
    assert pooled.dof.shape == (2 * 40 * 2,)
    np.testing.assert_allclose(
        posterior.log_prob(X[:5]),
        jax.nn.logsumexp(params.log_prob(X[:5]).reshape(-1, 5), axis=0) - np.log(80),
        rtol=1e-10,
    )


@pytest.mark.parametrize("method", ["map", "svi"])
def test_student_t_map_and_svi_start_from_the_t_fit(method):
    X = _t_mixture(150, seed=2)
    fit = bayesgmm.em_fit(X, 2, family="student_t", seed=0)
    posterior = bayesgmm.infer(
        X, 2, method=method, family="student_t", init=fit, num_steps=300, num_samples=20, progress_bar=False
    )
    assert posterior.params.family == "student_t"
    order = match_components(T_MEANS, np.asarray(fit.params.means))
    means = np.asarray(posterior.params.means).mean(axis=(0, 1))[order]
    np.testing.assert_allclose(means, T_MEANS, atol=0.5)


def test_family_and_errors_are_checked():
    X = _t_mixture(60, seed=3)
    with pytest.raises(ValueError, match="family must be one of"):
        bayesgmm.infer(X, 2, method="map", family="cauchy")
    with pytest.raises(ValueError, match="measurement_error applies to Gaussian components"):
        bayesgmm.infer(X, 2, method="map", family="student_t", measurement_error=np.ones_like(X))
    with pytest.raises(ValueError, match="measurement_error has shape"):
        bayesgmm.infer(X, 2, method="map", measurement_error=np.ones((60, 3)))
    with pytest.raises(ValueError, match="standard deviations, which must be >= 0"):
        bayesgmm.infer(X, 2, method="map", measurement_error=-np.ones_like(X))
    gaussian_fit = bayesgmm.em_fit(X, 2, seed=0)
    with pytest.raises(ValueError, match="family='gaussian' components but infer was asked for family='student_t'"):
        bayesgmm.infer(X, 2, method="map", family="student_t", init=gaussian_fit)


def test_gaussian_density_holds_no_student_t_terms():
    """The family is static: the Gaussian log density's gradient (NUTS's) has no lgamma or digamma."""
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.normal(size=(20, 2)))
    hyper = Priors().resolve(np.zeros(2), 1.0, np.ones(2), 2)
    params = GMMParams.from_covariances([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], [np.eye(2)] * 2, "full")
    u = unconstrain(sites_from_params(params))
    settings = dict(k=2, covariance_type="full", std_prior="lognormal")
    gaussian = str(jax.make_jaxpr(jax.grad(lambda u: unconstrained_log_density(u, X, hyper, **settings)))(u))
    t_params = GMMParams(params.weights, params.means, params.scale, "full", jnp.array([3.0, 5.0]), "student_t")
    u_t = unconstrain(sites_from_params(t_params))
    student_t = str(
        jax.make_jaxpr(jax.grad(lambda u: unconstrained_log_density(u, X, hyper, family="student_t", **settings)))(u_t)
    )
    assert "lgamma" in student_t and "digamma" in student_t  # the t normaliser and its gradient in ν
    assert "lgamma" not in gaussian and "digamma" not in gaussian


@pytest.mark.slow
def test_student_t_posterior_covers_heavy_tails_and_means():
    """Heavy-tailed data (ν = 3): the posterior of each ν_k covers 3 and stays away from Gaussian
    tails (its 97.5% quantile below 20, the prior mean), and the means are within 3 posterior sd.

    Data seed 5 (maximum-likelihood ν̂ = 3.2 and 3.6). Seed 4's data put ν̂ = 4.4 on one component,
    where 3 sat on the posterior's 0.5% quantile (3.0 ± 0.15 over chain seeds): the check then
    turned on Monte Carlo noise, and flipped when ECME changed the chains' EM start."""
    X = _t_mixture(600, seed=5)
    posterior = bayesgmm.infer(
        X, 2, method="nuts", family="student_t", num_warmup=300, num_samples=300, num_chains=2, progress_bar=False
    )
    order = match_components(T_MEANS, np.asarray(posterior.reference.means))
    dof = np.asarray(posterior.params.dof)[:, :, order].reshape(-1, 2)
    low, high = np.quantile(dof, [0.005, 0.995], axis=0)
    assert np.all((low < T_DOF) & (T_DOF < high)), (low, high)
    assert np.all(np.quantile(dof, 0.975, axis=0) < 20.0), np.quantile(dof, 0.975, axis=0)
    means = np.asarray(posterior.params.means)[:, :, order].reshape(-1, 2, 2)
    mean, sd = means.mean(axis=0), means.std(axis=0)
    assert np.all(np.abs(mean - T_MEANS) < 3 * sd + 1e-3), (mean, sd)
    assert posterior.sample_stats["diverging"].mean() < 0.01


# Simulation-based calibration (Talts et al. 2018) of the Student-t model, as
# tests/test_calibration.py for the Gaussian one: ν drawn from its Gamma prior too.
SBC_REPLICATIONS = 100
SBC_ROWS = 40
SBC_THIN = 4
SBC_PRIOR = Priors(
    weight_concentration=2.0,
    mean_loc=0.0,
    mean_scale=3.0,
    std_prior="lognormal",
    std_loc=0.0,
    std_scale=0.5,
    dof_concentration=2.0,
    dof_rate=0.1,
)


def _t_label_invariant(weights, means, stds, dof):
    """Quantities that do not depend on the component labels; arrays (..., k)."""
    overall_mean = np.sum(weights * means, axis=-1)
    smaller = np.argmin(means, axis=-1)[..., None]
    return {
        "overall_mean": overall_mean,
        "overall_scale": np.sum(weights * (stds**2 + means**2), axis=-1) - overall_mean**2,
        "smaller_mean": np.min(means, axis=-1),
        "larger_mean": np.max(means, axis=-1),
        "log_dof_of_smaller_mean": np.log(np.take_along_axis(dof, smaller, axis=-1)[..., 0]),
    }


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::bayesgmm.SpuriousComponentWarning")  # EM starts on 40 rows from the prior
def test_student_t_nuts_ranks_are_uniform():
    """100 data sets of 40 rows (k = 2, d = 1, ν from its prior), 2 chains x 200 draws each: about 50 s."""
    rng = np.random.default_rng(2010)
    ranks = None
    n_draws = None
    for replication in range(SBC_REPLICATIONS):
        weights = rng.dirichlet([2.0, 2.0])
        means = rng.normal(0.0, 3.0, size=2)
        stds = np.exp(rng.normal(0.0, 0.5, size=2))
        dof = rng.gamma(2.0, 1.0 / 0.1, size=2)
        truth = GMMParams(weights, means[:, None], stds[:, None], "diag", dof, "student_t")
        X, _ = truth.sample(SBC_ROWS, seed=replication)
        posterior = bayesgmm.infer(
            np.asarray(X),
            2,
            method="nuts",
            covariance_type="diag",
            family="student_t",
            prior=SBC_PRIOR,
            num_warmup=300,
            num_samples=200,
            num_chains=2,
            seed=replication,
            progress_bar=False,
        )
        draws = _t_label_invariant(
            np.asarray(posterior.params.weights).reshape(-1, 2)[::SBC_THIN],
            np.asarray(posterior.params.means).reshape(-1, 2)[::SBC_THIN],
            np.asarray(posterior.params.scale).reshape(-1, 2)[::SBC_THIN],
            np.asarray(posterior.params.dof).reshape(-1, 2)[::SBC_THIN],
        )
        true_values = _t_label_invariant(weights, means, stds, dof)
        ranks = ranks or {name: [] for name in draws}
        n_draws = len(draws["overall_mean"])
        for name in ranks:
            ranks[name].append(int(np.sum(draws[name] < true_values[name])))
    L = n_draws
    uniform_mean, uniform_variance = L / 2.0, ((L + 1) ** 2 - 1) / 12.0
    for name, values in ranks.items():
        values = np.asarray(values)
        counts, _ = np.histogram(values / (L + 1), bins=10, range=(0.0, 1.0))
        assert stats.chisquare(counts).pvalue > 1e-3, (name, counts)
        z_mean = (values.mean() - uniform_mean) / np.sqrt(uniform_variance / SBC_REPLICATIONS)
        assert abs(z_mean) < 3.5, (name, values.mean(), z_mean)
        se_variance = np.sqrt(((L + 1) ** 4 / 80.0 - uniform_variance**2) / SBC_REPLICATIONS)
        assert abs(values.var() - uniform_variance) < 3.5 * se_variance, (name, values.var(), uniform_variance)


# ----------------------------------------------------------------------------- measurement errors

XD_MEANS = np.array([[-3.0, 0.0], [3.0, 1.0]])
XD_VARIANCES = np.array([[0.5, 1.0], [1.2, 0.4]])


def _noisy_rows(n, seed):
    """Rows of a diagonal Gaussian mixture plus heteroscedastic Gaussian noise: (X, error sds, true rows)."""
    rng = np.random.default_rng(seed)
    truth = GMMParams.from_covariances([0.4, 0.6], XD_MEANS, XD_VARIANCES, "diag")
    V, _ = truth.sample(n, seed=seed)
    sds = rng.uniform(0.3, 1.0, size=(n, 2))
    return np.asarray(V) + sds * rng.normal(size=(n, 2)), sds, np.asarray(V)


def test_measurement_errors_are_standardised_with_the_data():
    """MAP on ``10 x`` with errors ``10 S^{1/2}`` is ten times MAP on ``x``: the errors move with the data."""
    X, sds, _ = _noisy_rows(150, seed=5)
    settings = dict(method="map", covariance_type="diag", num_steps=400, progress_bar=False)
    prior = Priors(mean_scale=[6.0, 6.0], std_loc=np.log([0.5, 0.5]))
    scaled_prior = Priors(mean_scale=[60.0, 60.0], std_loc=np.log([5.0, 5.0]))
    posterior = bayesgmm.infer(X, 2, measurement_error=sds, prior=prior, **settings)
    scaled = bayesgmm.infer(10.0 * X, 2, measurement_error=10.0 * sds, prior=scaled_prior, **settings)
    np.testing.assert_allclose(scaled.params.means, 10.0 * np.asarray(posterior.params.means), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(scaled.params.scale, 10.0 * np.asarray(posterior.params.scale), rtol=1e-4)
    # the per-row log-likelihood is that of the noisy rows, log p(x_i | θ, S_i), on the data's scale
    np.testing.assert_allclose(
        posterior.log_likelihood, posterior.params.log_prob(X, measurement_error=sds), rtol=1e-10
    )
    np.testing.assert_allclose(posterior.measurement_error, sds**2)
    assert posterior.to_arviz(posterior_predictive=True)["posterior_predictive"]["obs"].shape == (1, 1, 150, 2)
    without = bayesgmm.infer(X, 2, prior=prior, **settings)
    assert np.all(np.asarray(without.params.scale) > np.asarray(posterior.params.scale))  # errors deconvolved
    # (n, d, d) covariances: the same posterior as the (n, d) standard deviations they equal
    covariances = np.stack([np.diag(s**2) for s in sds])
    as_matrices = bayesgmm.infer(X, 2, measurement_error=covariances, prior=prior, **settings)
    np.testing.assert_allclose(as_matrices.params.means, posterior.params.means, rtol=1e-5, atol=1e-5)


def test_posterior_predictive_replicates_carry_the_measurement_errors():
    """Replicates of noisy rows get each row's error: draws of (n, d) variances and (n, d, d)
    covariances (one singular) have those covariances, within 5 Monte Carlo standard errors."""
    rng = np.random.default_rng(0)
    covariances = np.stack([[[2.0, 0.6], [0.6, 0.5]], [[1.0, 0.0], [0.0, 0.0]]])
    variances = np.array([[0.25, 4.0], [1.0, 0.0]])
    draws = 20000
    for errors, dense in ((covariances, covariances), (variances, np.stack([np.diag(v) for v in variances]))):
        noise = _error_draws(errors, (draws, 2, 2), seed=int(rng.integers(1 << 30)))
        for row in range(2):
            sample = np.cov(noise[:, row].T)
            se = np.sqrt((dense[row] ** 2 + np.outer(np.diag(dense[row]), np.diag(dense[row]))) / draws)
            assert np.all(np.abs(sample - dense[row]) <= 5 * se + 1e-12), (sample, dense[row])


@pytest.mark.slow
@pytest.mark.parametrize("extra", ["student_t", "errors"])
def test_second_call_with_new_data_does_not_recompile(caplog, extra):
    """As for Gaussian components (tests/test_inference.py): the family is static, the errors an argument."""
    settings = dict(method="nuts", num_warmup=20, num_samples=20, num_chains=2, progress_bar=False)

    def call(seed):
        if extra == "student_t":
            return bayesgmm.infer(_t_mixture(100, seed=seed), 2, family="student_t", **settings)
        X, sds, _ = _noisy_rows(100, seed=seed)
        return bayesgmm.infer(X, 2, measurement_error=sds, **settings)

    call(1)
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        caplog.clear()
        call(2)
    compiled = [r.getMessage() for r in caplog.records if "ompil" in r.getMessage()]
    assert compiled == [], compiled


@pytest.mark.slow
def test_measurement_errors_recover_the_deconvolved_variances():
    """Noisy rows (error sd 0.3-1, as large as the components' own): the posterior of the
    component variances covers the noise-free ones (within 3 posterior sd), where the fit that
    ignores the errors is far off."""
    X, sds, _ = _noisy_rows(800, seed=6)
    posterior = bayesgmm.infer(
        X,
        2,
        method="nuts",
        covariance_type="diag",
        measurement_error=sds,
        num_warmup=300,
        num_samples=300,
        num_chains=2,
        progress_bar=False,
    )
    order = match_components(XD_MEANS, np.asarray(posterior.reference.means))
    variances = np.asarray(posterior.params.covariances)[:, :, order].reshape(-1, 2, 2)
    mean, sd = variances.mean(axis=0), variances.std(axis=0)
    assert np.all(np.abs(mean - XD_VARIANCES) < 3 * sd), (mean, sd)
    means = np.asarray(posterior.params.means)[:, :, order].reshape(-1, 2, 2)
    assert np.all(np.abs(means.mean(axis=0) - XD_MEANS) < 3 * means.std(axis=0)), means.mean(axis=0)
    ignoring = bayesgmm.em_fit(X, 2, covariance_type="diag", seed=0).params
    naive = np.asarray(ignoring.covariances)[match_components(XD_MEANS, np.asarray(ignoring.means))]
    assert np.all(naive - XD_VARIANCES > 3 * sd)  # the noise inflates every variance
    assert posterior.sample_stats["diverging"].mean() < 0.01
