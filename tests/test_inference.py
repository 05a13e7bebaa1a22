"""infer(): recovery of a known mixture, r-hat after relabelling, SVI/MAP vs NUTS, priors, caching."""

import functools
import logging
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bayesgmm
from bayesgmm import GMMParams
from bayesgmm.inference import relabel
from bayesgmm.model import Priors
from tests._references import COVARIANCE_TYPES

TRUE_MEANS = np.array([[-5.0, 0.0], [0.0, 5.0], [5.0, 0.0]])
TRUE_WEIGHTS = np.array([0.3, 0.3, 0.4])


def _separated_data(n=500, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=n, p=TRUE_WEIGHTS)
    covariances = np.array([[[1.0, 0.3], [0.3, 0.8]], [[0.6, -0.2], [-0.2, 1.2]], [[1.5, 0.0], [0.0, 0.5]]])
    noise = np.einsum("nij,nj->ni", np.linalg.cholesky(covariances)[labels], rng.normal(size=(n, 2)))
    return TRUE_MEANS[labels] + noise


def _order_to_truth(posterior):
    """Index of the reference component nearest each true mean."""
    from tests._references import match_components

    return match_components(TRUE_MEANS, np.asarray(posterior.reference.means))


@pytest.fixture(scope="module")
def nuts_posterior():
    return bayesgmm.infer(
        _separated_data(), 3, method="nuts", num_warmup=500, num_samples=1000, num_chains=4, progress_bar=False
    )


@pytest.mark.slow
def test_nuts_recovers_means_with_good_diagnostics(nuts_posterior):
    import arviz_stats

    posterior = nuts_posterior
    order = _order_to_truth(posterior)
    means = np.asarray(posterior.params.means)[:, :, order]  # (chain, draw, k, d)
    mean, sd = means.mean(axis=(0, 1)), means.std(axis=(0, 1))
    # each coordinate within 3 posterior sd of the generating value
    assert np.all(np.abs(mean - TRUE_MEANS) < 3 * sd), (mean, sd)
    rhat = arviz_stats.rhat(posterior.to_arviz())
    worst = max(float(rhat[name].max()) for name in rhat.data_vars)
    assert worst < 1.01, rhat
    divergences = posterior.sample_stats["diverging"].mean()
    assert divergences < 0.01


@pytest.mark.slow
@pytest.mark.parametrize(
    "method, guide",
    [  # CI runs SVI with the default guide and MAP; the other two guides are extended (a minute each on 2 cores)
        ("svi", "normal"),
        pytest.param("svi", "multivariate_normal", marks=pytest.mark.extended),
        pytest.param("svi", "lowrank_multivariate_normal", marks=pytest.mark.extended),
        ("map", "normal"),
    ],
)
def test_svi_and_map_agree_with_nuts(nuts_posterior, method, guide):
    """Posterior means of SVI draws (or the MAP point) within 3 NUTS posterior sd."""
    posterior = bayesgmm.infer(
        _separated_data(), 3, method=method, guide=guide, num_steps=3000, num_samples=500, progress_bar=False
    )
    reference_order = _order_to_truth(nuts_posterior)
    order = _order_to_truth(posterior)
    nuts_means = np.asarray(nuts_posterior.params.means)[:, :, reference_order]
    means = np.asarray(posterior.params.means)[:, :, order]
    assert np.all(np.abs(means.mean(axis=(0, 1)) - nuts_means.mean(axis=(0, 1))) < 3 * nuts_means.std(axis=(0, 1)))
    nuts_weights = np.asarray(nuts_posterior.params.weights)[:, :, reference_order]
    weights = np.asarray(posterior.params.weights)[:, :, order]
    assert np.all(
        np.abs(weights.mean(axis=(0, 1)) - nuts_weights.mean(axis=(0, 1))) < 3 * nuts_weights.std(axis=(0, 1))
    )


def test_relabel_undoes_known_permutations():
    rng = np.random.default_rng(0)
    reference = GMMParams.from_covariances(TRUE_WEIGHTS, TRUE_MEANS, np.array([1.0, 2.0, 3.0]), "spherical")
    permutations = np.stack([rng.permutation(3) for _ in range(12)]).reshape(3, 4, 3)
    shuffled = jax.vmap(
        jax.vmap(lambda p: GMMParams(reference.weights[p], reference.means[p], reference.scale[p], "spherical"))
    )(jnp.asarray(permutations))
    noisy = GMMParams(
        shuffled.weights, shuffled.means + 0.1 * rng.normal(size=shuffled.means.shape), shuffled.scale, "spherical"
    )
    relabelled, found = relabel(noisy, TRUE_MEANS)
    for chain in range(3):
        for draw in range(4):
            np.testing.assert_array_equal(permutations[chain, draw][found[chain, draw]], [0, 1, 2])
    np.testing.assert_allclose(relabelled.scale, np.broadcast_to(reference.scale, (3, 4, 3)))
    np.testing.assert_allclose(relabelled.weights, np.broadcast_to(TRUE_WEIGHTS, (3, 4, 3)))


def test_prior_changes_the_posterior():
    """A tight prior on the means far from the data pulls the MAP estimate towards it."""
    X = _separated_data(n=60)
    loose = bayesgmm.infer(X, 3, method="map", num_steps=1500, progress_bar=False)
    tight = bayesgmm.infer(
        X,
        3,
        method="map",
        num_steps=1500,
        progress_bar=False,
        prior=Priors(mean_loc=[20.0, 20.0], mean_scale=[0.5, 0.5]),
    )
    distance = lambda p: np.linalg.norm(np.asarray(p.params.means)[0, 0] - 20.0, axis=-1).mean()  # noqa: E731
    assert distance(tight) < distance(loose) - 5.0


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_every_covariance_type_and_one_feature(covariance_type):
    X = _separated_data(n=120)
    posterior = bayesgmm.infer(X, 3, method="map", covariance_type=covariance_type, num_steps=500, progress_bar=False)
    assert posterior.params.batch_shape == (1, 1)
    assert np.all(np.isfinite(posterior.log_likelihood))
    one = bayesgmm.infer(X[:, :1], 2, method="map", covariance_type=covariance_type, num_steps=300, progress_bar=False)
    assert np.all(np.isfinite(np.asarray(one.params.covariance_matrices)))


def test_log_likelihood_is_on_the_data_scale():
    """The stored per-row log-likelihood equals log p(x | θ) of the data-scale parameters."""
    X = _separated_data(n=80) * 100.0 + 1000.0
    posterior = bayesgmm.infer(X, 3, method="map", num_steps=300, progress_bar=False)
    single = jax.tree.map(lambda leaf: leaf[0, 0], posterior.params)
    np.testing.assert_allclose(posterior.log_likelihood[0, 0], single.log_prob(X), rtol=1e-9)


def test_to_arviz_groups_dims_and_loo(nuts_posterior):
    import arviz_stats
    import pandas as pd

    tree = nuts_posterior.to_arviz(posterior_predictive=True)
    assert {"posterior", "log_likelihood", "observed_data", "sample_stats", "posterior_predictive"} <= set(
        tree.children
    )
    posterior = tree["posterior"]
    assert posterior["covariances"].dims == ("chain", "draw", "component", "feature", "feature_bis")
    assert tree["log_likelihood"]["obs"].dims == ("chain", "draw", "obs_id")
    assert tree["observed_data"]["obs"].dims == ("obs_id", "feature")
    assert tree["posterior_predictive"]["obs"].shape == (4, 1000, 500, 2)
    assert "diverging" in tree["sample_stats"]
    loo = arviz_stats.loo(tree)
    assert np.isfinite(loo.elpd)
    summary = nuts_posterior.summary()
    assert isinstance(summary, pd.DataFrame) and "r_hat" in summary.columns


def test_feature_names_from_dataframe():
    import pandas as pd

    frame = pd.DataFrame(_separated_data(n=60), columns=["eruptions", "waiting"])
    posterior = bayesgmm.infer(frame, 2, method="map", num_steps=200, progress_bar=False)
    tree = posterior.to_arviz()
    assert list(tree["posterior"]["means"].coords["feature"].values) == ["eruptions", "waiting"]


@pytest.mark.parametrize(
    "settings",
    [
        dict(method="nuts", num_warmup=20, num_samples=20, num_chains=2),
        dict(method="svi", num_steps=50, num_samples=10),
        dict(method="svi", num_steps=50, num_samples=10, batch_size=32),
    ],
    ids=["nuts", "svi", "minibatch-svi"],
)
def test_second_call_with_new_data_does_not_recompile(caplog, settings):
    bayesgmm.infer(_separated_data(n=100, seed=1), 3, progress_bar=False, **settings)
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        caplog.clear()
        bayesgmm.infer(_separated_data(n=100, seed=2), 3, progress_bar=False, **settings)
    compiled = [r.getMessage() for r in caplog.records if "ompil" in r.getMessage()]
    assert compiled == [], compiled


@pytest.mark.slow
def test_minibatch_svi_recovers_the_means_and_agrees_with_full_batch():
    n = 20000
    X = _separated_data(n=n, seed=4)
    settings = dict(method="svi", num_steps=3000, num_samples=200, progress_bar=False)
    minibatch = bayesgmm.infer(X, 3, batch_size=512, **settings)
    full = bayesgmm.infer(X, 3, **settings)
    order = _order_to_truth(minibatch)
    assert np.array_equal(order, _order_to_truth(full))
    mean_minibatch = np.asarray(minibatch.params.means)[0][:, order].mean(axis=0)
    mean_full = np.asarray(full.params.means)[0][:, order].mean(axis=0)
    # Posterior sd of a component mean ≈ its maximum-likelihood standard error sqrt(Σ_jj / n_k)
    # (the guide's own sd is not used: 3000 steps leave it wider than the posterior).
    labels = np.argmin(((X[:, None, :] - TRUE_MEANS[None]) ** 2).sum(-1), axis=1)
    standard_error = np.stack([X[labels == c].std(axis=0) / np.sqrt(np.sum(labels == c)) for c in range(3)])
    assert np.all(np.abs(mean_minibatch - TRUE_MEANS) < 4 * standard_error), (mean_minibatch, standard_error)
    # Same optimum, reached with noisy gradients: within a posterior sd of full-batch SVI
    # (observed ≤ 0.3 standard errors).
    assert np.all(np.abs(mean_minibatch - mean_full) < standard_error), (mean_minibatch, mean_full)
    # the per-row log-likelihood for LOO covers every row, not just the last minibatch
    assert minibatch.log_likelihood.shape == (1, 200, n)
    draw = jax.tree.map(lambda leaf: leaf[0, 7], minibatch.params)
    np.testing.assert_allclose(minibatch.log_likelihood[0, 7], draw.log_prob(X), rtol=1e-9)


def test_em_start_on_host_for_small_data_compiled_for_large(monkeypatch):
    """The start: em_fit's NumPy driver on small data (em_fit is not called), and equal to
    em_fit's fit; on large data em_fit, and a fit that raises with degenerate='raise' is
    fitted again with 'reseed'."""
    from bayesgmm import inference
    from bayesgmm._errors import DegenerateFitError

    calls = []

    def em_fit(*args, degenerate, **kwargs):
        calls.append(degenerate)
        if degenerate == "raise":
            raise DegenerateFitError("a component's covariance stopped being positive definite")
        return bayesgmm.em_fit(*args, degenerate=degenerate, **kwargs)

    monkeypatch.setattr(inference, "em_fit", em_fit)
    X = _separated_data(n=60)
    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    start = inference._em_start(Z, np.ones(len(Z)), 3, "full", 0)
    assert calls == []  # small data: the NumPy driver, em_fit is not called
    compiled = bayesgmm.em_fit(Z, 3, n_init=5, max_iter=500, seed=0)
    for leaf, other in zip(jax.tree.leaves(start), jax.tree.leaves(compiled.params), strict=True):
        np.testing.assert_allclose(leaf, other, rtol=1e-10, atol=1e-10)  # the same fit, to round-off
    with monkeypatch.context() as patch:
        patch.setattr(inference, "HOST_EM_MAX_WORK", 0)  # data too large for the host
        posterior = bayesgmm.infer(X, 3, method="map", num_steps=50, progress_bar=False)
    assert calls == ["raise", "reseed"]
    assert np.all(np.isfinite(posterior.log_likelihood))


def test_batch_size_is_validated():
    X = _separated_data(n=50)
    for batch_size, message in [
        (0, "batch_size must be an integer >= 1"),
        (2.5, "batch_size must be an integer >= 1"),
        (51, "batch_size=51 is larger than the 50 rows of X"),
    ]:
        with pytest.raises(ValueError, match=message):
            bayesgmm.infer(X, 3, method="svi", batch_size=batch_size)
    for method in ("nuts", "map"):
        with pytest.raises(ValueError, match="batch_size .* is for method='svi' only"):
            bayesgmm.infer(X, 3, method=method, batch_size=10)


def test_sample_weight_is_repeated_rows():
    """Integer ``sample_weight`` gives the posterior of the rows repeated; weight 0 drops a row.

    MAP (deterministic from the EM start) on weights in {0, 1, 2} against MAP on the rows
    repeated: the same log density (``test_model``), the same weighted standardisation and
    prior defaults, EM starts at the same optimum; what is left is float32 round-off in the
    optimiser (observed 1e-7 on means of size 5: bound 1e-5). Ignoring the weights moves
    the means by far more than that, so the comparison can fail.
    """
    X = _separated_data(n=150, seed=3)
    w = np.random.default_rng(4).integers(0, 3, size=len(X))
    settings = dict(method="map", num_steps=500, progress_bar=False)
    weighted = bayesgmm.infer(X, 3, sample_weight=w, **settings)
    repeated = bayesgmm.infer(np.repeat(X, w, axis=0), 3, **settings)
    unweighted = bayesgmm.infer(X, 3, **settings)
    assert weighted.log_likelihood.shape == (1, 1, len(X))  # unweighted log p(x_i | θ) of every row
    order = [np.argsort(np.asarray(p.params.means[0, 0, :, 0])) for p in (weighted, repeated)]
    for name in ("weights", "means", "covariances"):
        np.testing.assert_allclose(
            np.asarray(getattr(weighted.params, name))[0, 0, order[0]],
            np.asarray(getattr(repeated.params, name))[0, 0, order[1]],
            atol=1e-5,
        )
    shift = np.abs(np.sort(weighted.params.means[0, 0, :, 0]) - np.sort(unweighted.params.means[0, 0, :, 0]))
    assert shift.max() > 1e-3
    expected = repeated.params.log_prob(X)
    np.testing.assert_allclose(weighted.log_likelihood[0, 0], expected[0, 0], rtol=1e-5, atol=1e-5)


def test_sample_weight_is_validated():
    X = _separated_data(n=50)
    for weights, message in [
        (np.ones(49), r"sample_weight must have shape \(50,\)"),
        (-np.ones(50), "sample_weight must be >= 0"),
        (np.r_[1.0, 1.0, np.zeros(48)], "leaves 2 rows with a positive weight, fewer than k=3"),
    ]:
        with pytest.raises(ValueError, match=message):
            bayesgmm.infer(X, 3, method="map", sample_weight=weights)


def test_per_row_log_likelihood_in_blocks_matches_all_rows_at_once(monkeypatch):
    """Blocks of rows (the last one padded) give the same per-row log-likelihood as one pass."""
    from bayesgmm import inference

    rng = np.random.default_rng(5)
    params = GMMParams.from_covariances(TRUE_WEIGHTS, TRUE_MEANS, np.array([1.0, 2.0, 3.0]), "spherical")
    draws = {
        "weights": jnp.broadcast_to(params.weights, (2, 5, 3)),
        "means": params.means + 0.1 * rng.normal(size=(2, 5, 3, 2)),
        "stds": jnp.broadcast_to(params.scale, (2, 5, 3)),
    }
    Z = rng.normal(size=(103, 2))
    _, whole = inference._params_and_log_likelihood(draws, Z, "spherical")
    monkeypatch.setattr(inference, "_LOG_LIKELIHOOD_BLOCK_ELEMENTS", 2 * 5 * 3 * 2 * 10)  # 10 rows a block
    blocked_params, blocked = inference._params_and_log_likelihood(draws, Z, "spherical")
    assert blocked.shape == (2, 5, 103)
    np.testing.assert_allclose(blocked, whole, rtol=1e-14)
    np.testing.assert_allclose(whole, blocked_params.log_prob(Z), rtol=1e-14)


@pytest.mark.parametrize("num_chains", [2, 3])
def test_every_chain_method_runs_the_same_sampler(monkeypatch, num_chains):
    # Same keys and starts: each chain's arithmetic is the same under lax.map, vmap and
    # threads, so short float64 runs agree to round-off amplified over 30 NUTS steps
    # (observed: identical). Two cores are pretended, so "threads" runs one chain per call,
    # on two host threads.
    from bayesgmm import _threads

    monkeypatch.setattr(_threads, "host_cores", lambda: 2)
    X = _separated_data(n=100, seed=3)
    runs = [
        bayesgmm.infer(
            X, 3, num_warmup=15, num_samples=15, num_chains=num_chains, progress_bar=False, chain_method=method
        )
        for method in ("sequential", "vectorized", "threads")
    ]
    for run in runs[1:]:
        np.testing.assert_allclose(run.params.means, runs[0].params.means, rtol=1e-8, atol=1e-10)
        np.testing.assert_array_equal(run.sample_stats["n_steps"], runs[0].sample_stats["n_steps"])
    assert len(set(np.asarray(runs[0].params.means)[:, -1, 0, 0])) == num_chains  # the chains differ
    with pytest.raises(ValueError, match="chain_method must be one of"):
        bayesgmm.infer(X, 3, chain_method="parallel")


@pytest.mark.slow
@pytest.mark.parametrize("first", ["arviz", "numpyro"])
def test_import_order_does_not_matter(first):
    other = {"arviz": "numpyro", "numpyro": "arviz"}[first]
    code = (
        f"import {first}, {other}, bayesgmm, numpy as np\n"
        "X = np.random.default_rng(0).normal(size=(40, 2))\n"
        "p = bayesgmm.infer(X, 2, num_warmup=30, num_samples=30, num_chains=2, progress_bar=False)\n"
        "print(sorted(p.to_arviz().children))\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr
    assert "posterior" in completed.stdout


@pytest.mark.slow
def test_loo_prefers_the_generating_number_of_components():
    X = _separated_data(n=300, seed=3)
    comparison = bayesgmm.loo_compare(X, [1, 2, 3], num_warmup=200, num_samples=200, num_chains=2, progress_bar=False)
    assert comparison.best_k == 3
    assert list(comparison.table.index)[0] == "k=3"
    # three well-separated clusters: the gap to k=2 is many standard errors
    row = comparison.table.loc["k=2"]
    assert abs(row["elpd_diff"]) > 4 * row["dse"]


def test_arviz_plots_accept_the_tree(nuts_posterior):
    arviz_plots = pytest.importorskip("arviz_plots")
    plot = arviz_plots.plot_trace_dist(nuts_posterior.to_arviz(), var_names=["weights"])
    assert plot is not None


def test_guides_are_not_shared_across_numbers_of_features():
    """Two MAP fits with the same settings on 2 and then 1 feature(s): the cached SVI program of
    the first (its autoguide keeps the sites' shapes) must not serve the second."""
    X = _separated_data(n=90)
    for data in (X, X[:, :1]):
        posterior = bayesgmm.infer(data, 2, method="map", num_steps=20, progress_bar=False)
        assert posterior.params.means.shape[-1] == data.shape[1]


@pytest.mark.parametrize("method", ["map", "svi"])
def test_init_sets_the_start_and_the_labelling(method):
    """infer(init=fit): the draws are labelled as the given fit (its components in its order),
    and Posterior.reference is that fit, whichever order EM would have found them in."""
    X = _separated_data(n=150)
    fit = bayesgmm.em_fit(X, 3, n_init=3, seed=0)
    order = np.array([2, 0, 1])  # the same fit with its components in another order
    permuted = bayesgmm.GMMParams(fit.params.weights[order], fit.params.means[order], fit.params.scale[order], "full")
    for given in (fit, permuted):
        posterior = bayesgmm.infer(X, 3, method=method, num_steps=200, num_samples=20, init=given, progress_bar=False)
        reference = given.params if isinstance(given, bayesgmm.EMResult) else given
        np.testing.assert_allclose(posterior.reference.means, reference.means, rtol=1e-12)
        # well separated clusters: the posterior mean of component j sits at the given fit's component j
        means = np.asarray(posterior.mean_params().means)
        assert np.all(np.linalg.norm(means - np.asarray(reference.means), axis=1) < 0.3), (means, reference.means)


def test_init_is_checked():
    X = _separated_data(n=60)
    fit = bayesgmm.em_fit(X, 3, seed=0)
    with pytest.raises(TypeError, match="init must be a bayesgmm.GMMParams or EMResult"):
        bayesgmm.infer(X, 3, method="map", init=fit.params.means)
    with pytest.raises(ValueError, match="covariance_type='diag'"):
        bayesgmm.infer(X, 3, method="map", covariance_type="diag", init=fit)
    with pytest.raises(ValueError, match="k=2"):
        bayesgmm.infer(X, 2, method="map", init=fit)


def test_map_takes_numpyro_autodelta_steps():
    """MAP's one compiled program (``_variational``, a point in unconstrained coordinates and
    ``unconstrained_log_density`` without Jacobian) against NumPyro's own ``SVI`` with
    ``AutoDelta`` on ``gmm_model``: same start, same Adam schedule, same objective, so the same
    path up to float32 round-off of differently ordered sums (observed ≤ 2e-6 relative after
    300 steps; 1e-4 leaves room for the steps' amplification, far below a step's size, 1e-2).
    """
    from numpyro import optim
    from numpyro.infer import SVI, Trace_ELBO, autoguide, init_to_value

    from bayesgmm.inference import Standardisation, _on_standard_scale
    from bayesgmm.model import gmm_model, params_from_sites, sites_from_params

    X = _separated_data(n=80)
    num_steps = 300
    fit = bayesgmm.em_fit(X, 3, seed=1)
    posterior = bayesgmm.infer(X, 3, method="map", num_steps=num_steps, init=fit, progress_bar=False)

    center, variance = X.mean(axis=0), X.var(axis=0)
    standard = Standardisation.of(center, variance)
    dtype = jnp.result_type(float)
    Z = jnp.asarray((X - center) / standard.scale, dtype)
    w = jnp.ones(len(X), dtype)
    hyper = Priors().resolve(center, standard.scale, np.sqrt(variance), 3)
    start = _on_standard_scale(fit.params, standard, dtype)
    model = functools.partial(gmm_model, k=3, covariance_type="full", std_prior="lognormal")
    guide = autoguide.AutoDelta(model, init_loc_fn=init_to_value(values=sites_from_params(start)))
    svi = SVI(model, guide, optim.Adam(lambda step: 1e-2 * 0.01 ** (step / num_steps)), Trace_ELBO())
    result = svi.run(jax.random.key(0), num_steps, Z, hyper, None, w, progress_bar=False)
    expected = standard.to_data(params_from_sites(guide.median(result.params), "full"))
    mode = jax.tree.map(lambda leaf: leaf[0, 0], posterior.params)
    np.testing.assert_allclose(posterior.sample_stats["loss"], result.losses, rtol=1e-4)
    for name in ("weights", "means", "scale"):
        np.testing.assert_allclose(getattr(mode, name), getattr(expected, name), rtol=1e-4, atol=1e-5)
