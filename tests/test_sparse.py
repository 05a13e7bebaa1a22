"""Sparse finite mixtures: infer(X, k_max, sparse=True) and the posterior of the number of clusters."""

import os

import numpy as np
import pytest

import bayesgmm
from bayesgmm import GMMParams
from bayesgmm.datasets import load_faithful
from bayesgmm.inference import Posterior, _executable, _lowered
from bayesgmm.model import SPARSE_WEIGHT_CONCENTRATION, Priors


def _circle_data(k, n=150, seed=0, radius=6.0):
    """``n`` rows in ``k`` equal unit-variance clusters on a circle (neighbouring centres 7+ sd apart for k ≤ 5)."""
    rng = np.random.default_rng(seed)
    angles = 2.0 * np.pi * np.arange(k) / k
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], axis=-1) if k > 1 else np.zeros((1, 2))
    return centres[np.arange(n) % k] + rng.normal(size=(n, 2))


def _posterior(params: GMMParams, X, sparse=True, measurement_error=None) -> Posterior:
    """A ``Posterior`` of given draws (chain, draw) without running a sampler."""
    n = X.shape[0]
    return Posterior(
        params=params,
        log_likelihood=np.zeros(params.batch_shape + (n,)),
        method="nuts",
        reference=None,
        sample_stats={},
        permutations=None,
        X=X,
        feature_names=["a", "b"],
        priors=Priors(),
        measurement_error=measurement_error,
        sparse=sparse,
    )


def _draws(weights, means) -> GMMParams:
    """Spherical unit-covariance draws: ``weights (chain, draw, k)``, ``means (chain, draw, k, 2)``."""
    weights, means = np.asarray(weights, np.float64), np.asarray(means, np.float64)
    return GMMParams(weights, means, np.ones(weights.shape), "spherical")


def test_priors_default_weight_concentration_is_one_or_sparse():
    center, scale, std = np.zeros(2), 1.0, np.ones(2)
    assert float(Priors().resolve(center, scale, std, 3).weight_concentration) == 1.0
    sparse = Priors().with_weight_concentration(sparse=True)
    assert sparse.weight_concentration == SPARSE_WEIGHT_CONCENTRATION == 0.01
    assert float(sparse.resolve(center, scale, std, 3).weight_concentration) == pytest.approx(0.01)
    # a value the user set wins over either default
    assert Priors(weight_concentration=0.5).with_weight_concentration(sparse=True).weight_concentration == 0.5
    assert Priors(weight_concentration=0.5).with_weight_concentration().weight_concentration == 0.5
    with pytest.raises(ValueError, match="weight_concentration must be a positive number"):
        Priors(weight_concentration=-0.01)


def test_occupied_counts_rows_under_map_allocation():
    """Draw 0: two clusters of rows, a third component far from every row; draw 1: all three hold rows."""
    X = np.array([[-5.0, 0.0], [-5.2, 0.3], [5.0, 0.0], [5.1, -0.2], [0.0, 8.0]])
    means = np.array([[[[-5.0, 0.0], [5.0, 0.0], [50.0, 50.0]], [[-5.0, 0.0], [5.0, 0.0], [0.0, 8.0]]]])
    weights = np.array([[[0.5, 0.5 - 1e-9, 1e-9], [0.4, 0.4, 0.2]]])
    posterior = _posterior(_draws(weights, means), X)
    np.testing.assert_array_equal(posterior.n_occupied(allocation="map"), [[2, 3]])
    np.testing.assert_array_equal(posterior.n_occupied(allocation="sampled"), [[2, 3]])  # clear-cut rows
    values, probabilities = posterior.n_components(allocation="map")
    np.testing.assert_array_equal(values, [2, 3])
    np.testing.assert_allclose(probabilities, [0.5, 0.5])
    with pytest.raises(ValueError, match="allocation"):
        posterior.n_occupied(allocation="mean")


def test_sampled_allocation_occupancy_matches_its_closed_form():
    """Under one draw the rows' sampled components are independent: component j is occupied with
    probability ``1 − Π_i (1 − r_ij)``, and the count's exact law sums over the 3³ allocations. Over
    4000 copies of the draw (allocated independently) the mean count is within 4 Monte Carlo
    standard errors of its expectation."""
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 0.5]])
    means = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 3.0]])
    weights = np.array([0.5, 0.3, 0.2])
    copies = 4000
    params = _draws(np.broadcast_to(weights, (1, copies, 3)), np.broadcast_to(means, (1, copies, 3, 2)))
    posterior = _posterior(params, X)
    responsibilities = np.asarray(params.predict_proba(X))[0, 0]  # (n, k)
    occupied_probability = 1.0 - np.prod(1.0 - responsibilities, axis=0)  # (k,)
    expected_mean = occupied_probability.sum()
    # the count is a sum of dependent indicators: its variance from the exact law of the count
    labels = np.array(np.meshgrid(*[np.arange(3)] * 3, indexing="ij")).reshape(3, -1).T  # every allocation
    probability = np.prod(responsibilities[np.arange(3), labels], axis=1)
    counts_exact = np.array([len(set(row)) for row in labels])
    variance = np.sum(probability * counts_exact**2) - np.sum(probability * counts_exact) ** 2
    np.testing.assert_allclose(np.sum(probability * counts_exact), expected_mean)
    counts = posterior.n_occupied(seed=3)
    assert abs(counts.mean() - expected_mean) < 4.0 * np.sqrt(variance / copies), (counts.mean(), expected_mean)
    np.testing.assert_array_equal(posterior.n_occupied(seed=3), counts)  # the seed fixes the allocations


def test_occupied_with_measurement_errors_widens_the_components():
    """A row between two components: with a large error on it, its responsibilities follow Σ_k + S_i."""
    X = np.array([[-3.0, 0.0], [3.0, 0.0], [0.0, 30.0]])
    means = np.array([[[[-3.0, 0.0], [3.0, 0.0], [0.0, 10.0]]]])
    weights = np.array([[[0.45, 0.45, 0.1]]])
    errors = np.zeros((3, 2))
    assert _posterior(_draws(weights, means), X).n_occupied(allocation="map")[0, 0] == 3  # far row: nearest is 2
    errors[2] = 1e4  # variances: the far row fits every component about as well; the weights decide
    posterior = _posterior(_draws(weights, means), X, measurement_error=errors)
    assert posterior.n_occupied(allocation="map")[0, 0] == 2


def test_to_arviz_has_n_occupied_for_sparse_posteriors_only():
    X = np.array([[-5.0, 0.0], [5.0, 0.0], [5.1, 0.1]])
    means = np.broadcast_to(np.array([[-5.0, 0.0], [5.0, 0.0], [50.0, 0.0]]), (2, 3, 3, 2))
    weights = np.broadcast_to(np.array([0.4, 0.6 - 1e-9, 1e-9]), (2, 3, 3))
    tree = _posterior(_draws(weights, means), X).to_arviz()
    n_occupied = tree["posterior"]["n_occupied"]
    assert n_occupied.dims == ("chain", "draw")
    np.testing.assert_array_equal(n_occupied.values, np.full((2, 3), 2))
    assert "n_occupied" not in _posterior(_draws(weights, means), X, sparse=False).to_arviz()["posterior"]


def test_sparse_reuses_the_compiled_program_and_refuses_map():
    """The Dirichlet concentration is an argument of the programs: sparse=True compiles nothing new."""
    X = _circle_data(2, n=60)
    settings = dict(method="svi", num_steps=20, num_samples=10, progress_bar=False)
    bayesgmm.infer(X, 3, **settings)
    lowered, executables = _lowered.cache_info(), _executable.cache_info()
    posterior = bayesgmm.infer(X, 3, sparse=True, **settings)
    assert _lowered.cache_info().misses == lowered.misses
    assert _executable.cache_info().misses == executables.misses
    assert posterior.sparse and posterior.priors.weight_concentration == SPARSE_WEIGHT_CONCENTRATION
    assert not bayesgmm.infer(X, 3, **settings).sparse
    with pytest.raises(ValueError, match="no posterior mode"):
        bayesgmm.infer(X, 3, method="map", sparse=True, progress_bar=False)


@pytest.mark.sampling
def test_sampling_tests_run_at_xla_default_optimisation():
    """conftest.py runs a ``sampling`` test in a process of its own, without the suite's fast compilation."""
    assert os.environ.get("BAYESGMM_TEST_DEFAULT_OPTIMISATION") == "1"
    assert "--xla_backend_optimization_level=0" not in os.environ.get("XLA_FLAGS", "")


@pytest.mark.slow
@pytest.mark.sampling
def test_sparse_nuts_recovers_the_number_of_clusters():
    """k = 1..5 well-separated clusters, k_max = 6: the posterior mode of the occupied count is k.

    One compiled program serves the five data sets (same shapes). Mixing between counts is not
    asserted: NUTS rarely moves between them (docs/bayes.md, "Sparse mixtures").
    """
    for k in range(1, 6):
        posterior = bayesgmm.infer(
            _circle_data(k), 6, sparse=True, num_warmup=150, num_samples=150, num_chains=2, progress_bar=False
        )
        values, probabilities = posterior.n_components()
        assert values[np.argmax(probabilities)] == k, (k, values, probabilities)
        assert probabilities.sum() == pytest.approx(1.0)
    # Posterior.n_components' docstring example (not a doctest: same shapes, so the same program)
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-5.0, 1.0, (75, 2)), rng.normal(5.0, 1.0, (75, 2))])
    posterior = bayesgmm.infer(X, 6, sparse=True, num_warmup=150, num_samples=150, num_chains=2, progress_bar=False)
    values, probabilities = posterior.n_components()
    assert int(values[np.argmax(probabilities)]) == 2


@pytest.mark.slow
@pytest.mark.sampling
def test_sparse_old_faithful_agrees_with_bic_for_tied_covariances():
    """Old Faithful, tied covariances (mclust's EEE): BIC's choice over k = 1..6 is 3, and so is the
    posterior mode of the occupied count of a sparse mixture with k_max = 6.

    With full covariances BIC (and ICL) choose 2 while the sparse posterior puts about 0.7 on 3
    and its chains disagree (docs/bayes.md): not asserted.
    """
    X = load_faithful()
    bic_k = bayesgmm.select(X, range(1, 7), "tied").best_k
    posterior = bayesgmm.infer(
        X, 6, covariance_type="tied", sparse=True, num_warmup=200, num_samples=200, num_chains=2, progress_bar=False
    )
    values, probabilities = posterior.n_components()
    assert bic_k == 3
    assert values[np.argmax(probabilities)] == bic_k, (values, probabilities)
