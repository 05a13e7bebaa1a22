"""bayesgmm.select: the batched grid equals separate em_fit calls, and the criteria are the textbook ones."""

import math

import numpy as np
import pytest

import bayesgmm
from bayesgmm.datasets import load_faithful

KS = [1, 2, 3]
TYPES = ["full", "tied", "diag", "spherical"]  # tied pools the components: the switched-off ones must not count


@pytest.fixture(scope="module")
def selection():
    return bayesgmm.select(load_faithful(), k=KS, covariance_types=TYPES, n_init=2, seed=3)


def test_table_has_one_row_per_fit(selection):
    table = selection.table
    assert list(table.columns) == [
        "k",
        "covariance_type",
        "log_likelihood",
        "n_parameters",
        "bic",
        "aic",
        "icl",
        "n_iter",
        "converged",
        "spurious",  # every restart had a component the data cannot support: criteria NaN, never chosen
    ]
    assert [(row.k, row.covariance_type) for row in table.itertuples()] == [(k, t) for t in TYPES for k in KS]
    assert set(selection.fits) == {(k, t) for t in TYPES for k in KS}


def test_each_grid_fit_equals_em_fit(selection, monkeypatch):
    """The grid batches every k in one program (unused components switched off); same seed, same fit.

    Only the chunking differs (round-off): 1e-9 relative. em_fit's compiled program, not its
    NumPy driver for small data (which equals it to round-off, tests/test_em_host.py, but may
    then prefer the other of two restarts that reach the same maximum in another labelling).
    """
    monkeypatch.setattr(bayesgmm.em._fit, "HOST_MAX_WORK", 0)
    X = load_faithful()
    for (k, covariance_type), result in selection.fits.items():
        alone = bayesgmm.em_fit(X, k, covariance_type=covariance_type, n_init=2, seed=3, tol=1e-4)  # select's tol
        assert result.n_iter == alone.n_iter, (k, covariance_type)
        np.testing.assert_allclose(result.log_likelihood, alone.log_likelihood, rtol=1e-9)
        np.testing.assert_allclose(result.params.means, alone.params.means, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(result.params.covariances, alone.params.covariances, rtol=1e-9, atol=1e-9)


def test_criteria_are_the_closed_forms(selection):
    """BIC/AIC from the log-likelihood and parameter count; ICL = BIC + twice the classification entropy."""
    X = load_faithful()
    n = len(X)
    for row in selection.table.itertuples():
        params = selection.fits[(row.k, row.covariance_type)].params
        assert row.n_parameters == params.n_parameters
        log_likelihood = float(np.sum(params.log_prob(X)))
        np.testing.assert_allclose(row.bic, -2 * log_likelihood + row.n_parameters * math.log(n), rtol=1e-10)
        np.testing.assert_allclose(row.aic, -2 * log_likelihood + 2 * row.n_parameters, rtol=1e-10)
        responsibilities = np.asarray(params.predict_proba(X))
        np.testing.assert_allclose(row.icl, row.bic - 2 * np.sum(np.log(responsibilities.max(axis=1))), rtol=1e-10)
        np.testing.assert_allclose(row.icl, float(params.icl(X)), rtol=1e-10)


def test_best_is_the_minimum_and_faithful_picks_two_full_components(selection):
    table = selection.table
    best = table.loc[table["bic"].idxmin()]
    assert (selection.best_k, selection.best_covariance_type) == (int(best.k), best.covariance_type) == (2, "full")
    assert selection.best is selection.fits[(2, "full")]
    by_icl = bayesgmm.select(load_faithful(), k=KS, covariance_types=TYPES, n_init=2, seed=3, criterion="icl")
    assert by_icl.best_k == int(by_icl.table.loc[by_icl.table["icl"].idxmin()].k)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(k=[]), "at least one number of components"),
        (dict(k=[0, 2]), "k must be an integer >= 1"),
        (dict(covariance_types=["full", "banana"]), "covariance_type must be one of"),
        (dict(criterion="waic"), "criterion must be one of"),
        (dict(k=[300]), "k=300 components need at least 300"),
        (dict(num_samples=10), "criterion='loo' only"),
    ],
)
def test_bad_grid_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bayesgmm.select(load_faithful(), **kwargs)
