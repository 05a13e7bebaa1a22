"""em's NumPy driver (``bayesgmm.em.fit_on_host``, ``infer``'s start on small data) is ``em_fit``.

The same random draws, initialisation, kernels (M-step, repair, stopping rule) and table,
on NumPy arrays: its fit equals ``em_fit``'s in float64 to 1e-10 (round-off of a different
E-step: dense Cholesky factors against quadratic features), iteration for iteration, for
every covariance structure, with sample weights and when components are re-seeded, for
Student-t components and with a noise component. ``em_fit`` is made to compile its fits
(``HOST_MAX_WORK = 0``) so that the two drivers are compared.
"""

import warnings
from unittest import mock

import jax
import numpy as np
import pytest

import bayesgmm
from bayesgmm.em import EMConfig, UserInit, fit_on_host
from tests._references import COVARIANCE_TYPES, make_mixture_data

TOLERANCE = 1e-10  # float64 round-off of two formulations over tens of iterations


def _both(X, k, sample_weight=None, seed=3, start=None, **settings):
    """``(host result, host warnings, em_fit result, em_fit warnings)`` with the same settings.

    ``start``: optional ``(weights, means, covariances)`` in scikit-learn's layout.
    """
    config = EMConfig.validated(**settings)
    user_init = UserInit(*start) if start is not None else UserInit()
    host, notices = fit_on_host(X, k, config, seed=seed, sample_weight=sample_weight, user_init=user_init)
    initial = {} if start is None else dict(zip(("weights_init", "means_init", "covariances_init"), start))
    # em_fit itself runs small fits on the NumPy driver: HOST_MAX_WORK = 0 makes it compile them
    with warnings.catch_warnings(record=True) as caught, mock.patch.object(bayesgmm.em._fit, "HOST_MAX_WORK", 0):
        warnings.simplefilter("always")
        compiled = bayesgmm.em_fit(X, k, seed=seed, sample_weight=sample_weight, **initial, **settings)
    return host, [str(notice.message) for notice in notices], compiled, [str(item.message) for item in caught]


def _assert_same_fit(host, compiled):
    """Every restart ends at the same log-likelihood; the best one is the same fit.

    Restarts that reach one optimum in different labellings tie to round-off, and either may
    then be the best: the parameters are compared when the best restart is clear.
    """
    np.testing.assert_allclose(host.restart_log_likelihoods, compiled.restart_log_likelihoods, rtol=TOLERANCE)
    ranked = np.sort(compiled.restart_log_likelihoods)
    if len(ranked) > 1 and ranked[-1] - ranked[-2] < 1e-8:
        np.testing.assert_allclose(host.log_likelihood, compiled.log_likelihood, rtol=TOLERANCE)
        return
    assert host.n_iter == compiled.n_iter
    assert host.converged == compiled.converged
    for leaf, other in zip(jax.tree.leaves(host.params), jax.tree.leaves(compiled.params), strict=True):
        np.testing.assert_allclose(leaf, other, rtol=TOLERANCE, atol=TOLERANCE)
    np.testing.assert_allclose(host.log_likelihood_history, compiled.log_likelihood_history, rtol=TOLERANCE)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init", ["kmeans", "k-means++", "random_from_data"])
def test_host_fit_is_em_fit(covariance_type, init):
    """Single restarts from three seeds (each one compared whole), then the best of five."""
    X, _ = make_mixture_data(np.random.default_rng(5), 400, 3, 3, separation=1.0)
    settings = dict(covariance_type=covariance_type, init=init, max_iter=300, tol=1e-8)
    optima = []
    for seed in range(3):
        host, host_warnings, compiled, compiled_warnings = _both(X, 4, seed=seed, n_init=1, **settings)
        _assert_same_fit(host, compiled)
        assert host_warnings == compiled_warnings
        optima.append(compiled.log_likelihood)
    host, _, compiled, _ = _both(X, 4, n_init=5, **settings)
    _assert_same_fit(host, compiled)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_host_fit_with_weights_is_em_fit(covariance_type):
    """Zero and integer weights (rows of weight 0 never count, nor are drawn)."""
    rng = np.random.default_rng(8)
    X, _ = make_mixture_data(rng, 300, 2, 3)
    weights = rng.integers(0, 3, len(X)).astype(float)
    settings = dict(covariance_type=covariance_type, n_init=1, max_iter=300, tol=1e-8)
    host, host_warnings, compiled, compiled_warnings = _both(X, 3, sample_weight=weights, **settings)
    _assert_same_fit(host, compiled)
    assert host_warnings == compiled_warnings


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_host_fit_reseeds_like_em_fit(covariance_type):
    """A component started far from every row empties: both drivers re-seed it at the same
    (worst) row in the same iteration, say so in the same words, and end at the same fit.

    (With ``reg_covar=0`` on duplicated rows the two would part once a covariance becomes
    singular to round-off: which one fails its Cholesky factorisation first is round-off.)
    """
    rng = np.random.default_rng(27)
    X = np.concatenate([rng.normal([-4, 0], 1, (150, 2)), rng.normal([4, 0], 1, (150, 2))])
    covariances = {
        "full": np.stack([np.eye(2)] * 2),
        "tied": np.eye(2),
        "diag": np.ones((2, 2)),
        "spherical": np.ones(2),
    }
    start = (np.array([0.5, 0.5]), np.array([[0.0, 0.0], [1e4, 1e4]]), covariances[covariance_type])
    settings = dict(covariance_type=covariance_type, max_iter=500, tol=1e-8)
    host, host_warnings, compiled, compiled_warnings = _both(X, 2, start=start, **settings)
    _assert_same_fit(host, compiled)
    assert any("re-seeded component 1" in message for message in host_warnings)
    assert host_warnings == compiled_warnings


@pytest.mark.parametrize(
    "covariance_type, settings",
    [
        ("full", dict(family="student_t")),
        ("tied", dict(family="student_t", dof="shared")),
        ("diag", dict(family="student_t", dof=5.0)),
        ("full", dict(noise=True)),
        ("VEV", dict(noise=True, family="student_t")),
    ],
)
def test_host_fit_of_other_families_and_noise_is_em_fit(covariance_type, settings):
    """Student-t components (ECME, its degrees of freedom by SciPy's special functions) and a noise
    component (the same noise guess for the start) on the host equal the compiled fit."""
    rng = np.random.default_rng(11)
    X = np.concatenate(
        [rng.standard_t(3, (200, 2)) - 4, rng.standard_t(3, (200, 2)) + 4, rng.uniform(-20, 20, (40, 2))]
    )
    host, host_warnings, compiled, compiled_warnings = _both(
        X, 2, covariance_type=covariance_type, max_iter=300, tol=1e-8, **settings
    )
    _assert_same_fit(host, compiled)
    assert host_warnings == compiled_warnings
    assert (host.params.family, host.params.noise_weight is None) == (compiled.params.family, "noise" not in settings)


def test_host_fit_raises_like_em_fit():
    X = np.repeat(np.array([[-3.0, 1.0], [3.0, 2.0]]), 60, axis=0)
    config = EMConfig.validated(reg_covar=0.0, degenerate="raise")
    with pytest.raises(bayesgmm.DegenerateFitError, match="Increase reg_covar"):
        fit_on_host(X, 2, config, seed=0)


def test_host_fit_compiles_nothing():
    """The point of the driver: no XLA compilation (``jax_log_compiles`` would log one)."""
    X, _ = make_mixture_data(np.random.default_rng(6), 300, 2, 3)
    config = EMConfig.validated(covariance_type="full", n_init=2)
    compiled = []

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiled.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        fit_on_host(X, 3, config, seed=0)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert compiled == []


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_numpy_classify_is_predict(covariance_type):
    """``select``'s classification on the host (``em.numpy_classify``, NumPy leaves, nothing compiled)
    labels every row as ``GMMParams.predict`` does, for Gaussian and Student-t components."""
    import dataclasses

    from bayesgmm.em import numpy_classify
    from tests._references import covariances_in_layout

    rng = np.random.default_rng(3)
    X, _ = make_mixture_data(rng, 300, 3, 3, separation=1.0)  # overlapping: many rows near a boundary
    factors = rng.normal(size=(3, 3, 3)) * 0.5
    full = factors @ np.swapaxes(factors, 1, 2) + 0.5 * np.eye(3)
    means = X[rng.choice(len(X), 3, replace=False)]
    with jax.enable_x64(True):
        params = bayesgmm.GMMParams.from_covariances(
            [0.2, 0.3, 0.5], means, covariances_in_layout(full, covariance_type), covariance_type
        )
        heavy = dataclasses.replace(params, family="student_t", dof_mode="component", dof=np.array([3.0, 8.0, 30.0]))
        for each in (params, heavy):
            expected = np.asarray(each.predict(X))
            got = numpy_classify(jax.device_get(each), X)
            assert isinstance(got, np.ndarray)
            np.testing.assert_array_equal(got, expected)
