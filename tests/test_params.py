"""GMMParams against scipy.stats and scikit-learn, jitted and not, batched and not."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture
from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky

from bayesgmm import GMMParams
from tests._references import COVARIANCE_TYPES, covariances_in_layout, full_covariances, random_spd

K, D = 3, 3


def _random_params(covariance_type, seed=0, k=K, d=D):
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(k))
    means = rng.normal(scale=3.0, size=(k, d))
    covariances = covariances_in_layout(np.stack([random_spd(rng, d) for _ in range(k)]), covariance_type)
    return GMMParams.from_covariances(weights, means, covariances, covariance_type), (weights, means, covariances)


def _scipy_log_prob(weights, means, covariances, covariance_type, X):
    full = full_covariances(covariances, covariance_type, len(weights), X.shape[1])
    per_component = np.stack(
        [np.log(w) + stats.multivariate_normal(m, c).logpdf(X) for w, m, c in zip(weights, means, full)], axis=-1
    )
    return per_component.reshape(len(X), len(weights))


def _sklearn_model(weights, means, covariances, covariance_type):
    model = GaussianMixture(len(weights), covariance_type=covariance_type)
    model.weights_, model.means_, model.covariances_ = weights, means, covariances
    model.precisions_cholesky_ = _compute_precision_cholesky(covariances, covariance_type)
    return model


@pytest.mark.parametrize("use_jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_densities_match_scipy(covariance_type, use_jit):
    """log_prob, predict_proba and predict against scipy.stats.multivariate_normal (float64 round-off)."""
    params, (weights, means, covariances) = _random_params(covariance_type)
    X = np.random.default_rng(1).normal(scale=3.0, size=(50, D))
    joint = _scipy_log_prob(weights, means, covariances, covariance_type, X)
    call = (lambda f: jax.jit(f)) if use_jit else (lambda f: f)
    np.testing.assert_allclose(call(lambda p: p.log_prob(X))(params), logsumexp(joint, axis=1), rtol=1e-10)
    np.testing.assert_allclose(call(lambda p: p.score_samples(X))(params), logsumexp(joint, axis=1), rtol=1e-10)
    expected_proba = np.exp(joint - logsumexp(joint, axis=1, keepdims=True))
    np.testing.assert_allclose(call(lambda p: p.predict_proba(X))(params), expected_proba, atol=1e-10)
    np.testing.assert_array_equal(call(lambda p: p.predict(X))(params), joint.argmax(axis=1))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_derived_quantities_match_sklearn(covariance_type):
    params, (weights, means, covariances) = _random_params(covariance_type)
    model = _sklearn_model(weights, means, covariances, covariance_type)
    X = np.random.default_rng(2).normal(scale=3.0, size=(80, D))
    np.testing.assert_allclose(params.covariances, covariances, rtol=1e-12)
    np.testing.assert_allclose(params.precisions_cholesky, model.precisions_cholesky_, rtol=1e-10)
    expected_precisions = np.linalg.inv(covariances) if covariance_type in ("full", "tied") else 1 / covariances
    np.testing.assert_allclose(params.precisions, expected_precisions, rtol=1e-10)
    assert params.n_parameters == model._n_parameters()
    np.testing.assert_allclose(params.score(X), model.score(X), rtol=1e-12)
    np.testing.assert_allclose(params.bic(X), model.bic(X), rtol=1e-12)
    np.testing.assert_allclose(params.aic(X), model.aic(X), rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_batched_params_equal_one_at_a_time(covariance_type):
    """A (2, 3) batch of parameters gives the same answers as each set alone, under jit and vmap."""
    singles = [_random_params(covariance_type, seed=s)[0] for s in range(6)]
    batch = jax.tree.map(lambda *leaves: jnp.stack(leaves).reshape((2, 3) + leaves[0].shape), *singles)
    assert batch.batch_shape == (2, 3) and batch.n_components == K
    X = np.random.default_rng(3).normal(size=(40, D))
    log_prob = jax.jit(lambda p: p.log_prob(X))(batch)
    assert log_prob.shape == (2, 3, 40)
    for index, single in enumerate(singles):
        np.testing.assert_allclose(log_prob.reshape(6, 40)[index], single.log_prob(X), rtol=1e-12)
    vmapped = jax.vmap(lambda p: p.predict_proba(X))(
        jax.tree.map(lambda leaf: leaf.reshape((6,) + leaf.shape[2:]), batch)
    )
    np.testing.assert_allclose(vmapped.reshape(2, 3, 40, K), batch.predict_proba(X), rtol=1e-12)
    assert batch.covariances.shape[:2] == (2, 3)
    assert batch.bic(X).shape == (2, 3)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_sample_moments_within_monte_carlo_error(covariance_type):
    """Sample mean and covariance of each component within 5 Monte Carlo standard errors."""
    params, (weights, means, covariances) = _random_params(covariance_type, seed=4)
    n = 40_000
    X, labels = params.sample(n, seed=0)
    X, labels = np.asarray(X), np.asarray(labels)
    full = full_covariances(covariances, covariance_type, K, D)
    counts = np.bincount(labels, minlength=K)
    # label counts: binomial standard error sqrt(n w (1 - w))
    assert np.all(np.abs(counts - n * weights) <= 5 * np.sqrt(n * weights * (1 - weights)))
    for component in range(K):
        rows = X[labels == component]
        standard_error = np.sqrt(np.diag(full[component]) / len(rows))
        assert np.all(np.abs(rows.mean(axis=0) - means[component]) <= 5 * standard_error)
        # variance of a sample covariance entry: (σ_ij² + σ_ii σ_jj) / n for Gaussian data
        diag = np.diag(full[component])
        covariance_error = np.sqrt((full[component] ** 2 + np.outer(diag, diag)) / len(rows))
        assert np.all(np.abs(np.cov(rows.T) - full[component]) <= 5 * covariance_error)


def test_sample_is_reproducible_and_batched():
    params, _ = _random_params("diag")
    first, _ = params.sample(10, seed=3)
    second, _ = params.sample(10, seed=3)
    np.testing.assert_array_equal(first, second)
    batch = jax.tree.map(lambda *leaves: jnp.stack(leaves), params, params)
    X, labels = batch.sample(7, seed=1)
    assert X.shape == (2, 7, D) and labels.shape == (2, 7)
    assert not np.allclose(X[0], X[1])  # each batch member gets its own key


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match=r"weights must have shape \(\.\.\., 2\)"):
        GMMParams(jnp.ones(3) / 3, jnp.zeros((2, 2)), jnp.ones((2, 2)), "diag")
    with pytest.raises(ValueError, match=r"scale for covariance_type='full' must end in shape \(2, 3, 3\)"):
        GMMParams(jnp.ones(2) / 2, jnp.zeros((2, 3)), jnp.ones((2, 3)), "full")
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        GMMParams(jnp.ones(2) / 2, jnp.zeros((2, 3)), jnp.ones((2, 3)), "ful")
    params, _ = _random_params("full")
    with pytest.raises(ValueError, match=r"X must have shape \(n_samples, 3\)"):
        params.log_prob(np.zeros((4, 2)))


def test_params_are_a_pytree_with_static_covariance_type():
    params, _ = _random_params("tied")
    leaves, treedef = jax.tree.flatten(params)
    assert len(leaves) == 3
    rebuilt = jax.tree.unflatten(treedef, leaves)
    assert rebuilt.covariance_type == "tied"
    doubled = jax.tree.map(lambda leaf: 2 * leaf, params)
    np.testing.assert_allclose(doubled.means, 2 * params.means)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_covariance_matrices_are_dense_for_every_type(covariance_type):
    params, (weights, means, covariances) = _random_params(covariance_type)
    expected = full_covariances(covariances, covariance_type, K, D)
    np.testing.assert_allclose(params.covariance_matrices, expected, rtol=1e-12)


def test_a_first_call_compiles_whole_programs_not_operations_one_by_one():
    """``log_prob``, ``predict_proba``, ``icl``, ``sample``, ``covariances`` and ``precisions`` on a new shape
    compile at most three programs each (their own, jitted, and at most key or dtype handling), where
    eagerly they compiled each JAX operation as a program of its own (``log_prob`` 40, ``sample`` 23,
    ``icl`` 20, ``precisions`` 8 on a first call);
    the scikit-learn estimator's ``fit`` compiles its derived attributes as one program and ``predict``
    one program (no slices of device arrays)."""
    from bayesgmm.sklearn import GaussianMixture as BayesGaussianMixture

    rng = np.random.default_rng(11)
    X = rng.normal(size=(157, 3))  # a shape no other test uses
    params = GMMParams.from_covariances(
        np.array([0.3, 0.7]), rng.normal(size=(2, 3)), np.stack([np.eye(3), 2.0 * np.eye(3)]), "full"
    )
    params = jax.tree.map(jnp.asarray, params)  # device arrays, as em_fit returns them
    compiled = []

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiled.append(kwargs.get("fun_name"))

    calls = {
        "log_prob": lambda: params.log_prob(X),
        "predict_proba": lambda: params.predict_proba(X),
        "icl": lambda: params.icl(X),
        "sample": lambda: params.sample(131, seed=5),
        "covariances": lambda: params.covariances,
        "precisions": lambda: params.precisions,
        "estimator fit": lambda: BayesGaussianMixture(2, random_state=0).fit(X[:149]),
    }
    counts = {}
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        for name, call in calls.items():
            compiled.clear()
            jax.block_until_ready(call())
            counts[name] = list(compiled)
        estimator = BayesGaussianMixture(2, random_state=0).fit(X[:149])
        compiled.clear()
        estimator.predict(X[:139])
        counts["estimator predict"] = list(compiled)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert all(len(programs) <= 3 for programs in counts.values()), counts
    assert counts["estimator predict"] == ["jit(_log_prob_and_log_resp)"], counts
    assert counts["covariances"] == ["jit(_covariances)"] and counts["precisions"] == ["jit(_precisions)"], counts
