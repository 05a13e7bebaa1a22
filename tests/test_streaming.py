"""EM streamed from a memory-mapped file, block by block, equals the in-memory fit."""

import numpy as np
import pytest

import bayesgmm
from bayesgmm.em import _streaming as streaming
from tests._references import COVARIANCE_TYPES, make_mixture_data


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 3 chunks of 200 rows, so that 3001 rows take 6 blocks (the last one padded)."""
    monkeypatch.setattr(streaming, "BLOCK_ELEMENTS", 3 * 200 * 3)


@pytest.fixture
def memmap(tmp_path):
    X, _ = make_mixture_data(np.random.default_rng(50), 3001, 3, 3)
    path = tmp_path / "X.npy"
    np.save(path, X)
    return X, np.load(path, mmap_mode="r")


@pytest.mark.slow
@pytest.mark.parametrize(
    "init, covariance_type",
    [  # in CI: every covariance type once, each initialisation twice; the rest extended
        pytest.param(init, covariance_type, marks=() if (init == "kmeans") == (i % 2 == 0) else pytest.mark.extended)
        for init in ("kmeans", "random")
        for i, covariance_type in enumerate(COVARIANCE_TYPES)
    ],
)
def test_streamed_equals_in_memory(small_blocks, memmap, covariance_type, init):
    """Same chunks, same kernels, same draws: equal up to summation order (float64 round-off).

    The spec asks for the same result as in memory; the per-block partial sums only change
    the order of additions (~1e-15 relative per pass, 1e-9 leaves room for 300 iterations).
    """
    X, mapped = memmap
    weights = np.random.default_rng(51).integers(0, 3, size=len(X)).astype(float)
    kwargs = dict(covariance_type=covariance_type, init=init, n_init=2, seed=5, tol=1e-8, max_iter=300, chunk_size=200)
    in_memory = bayesgmm.em_fit(X, 3, sample_weight=weights, **kwargs)
    streamed = bayesgmm.em_fit(mapped, 3, sample_weight=weights, **kwargs)  # a memmap streams by default
    assert streamed.n_iter == in_memory.n_iter
    np.testing.assert_allclose(streamed.log_likelihood, in_memory.log_likelihood, rtol=1e-9)
    np.testing.assert_allclose(streamed.params.means, in_memory.params.means, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(streamed.params.covariances, in_memory.params.covariances, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(streamed.restart_log_likelihoods, in_memory.restart_log_likelihoods, rtol=1e-9)


def test_stream_from_given_initial_parameters_and_in_memory_array(small_blocks, memmap):
    X, _ = memmap
    start = dict(
        weights_init=np.full(3, 1 / 3), means_init=X[[0, 1, 2]], covariances_init=np.repeat(np.eye(3)[None], 3, 0)
    )
    kwargs = dict(tol=1e-8, max_iter=300, chunk_size=200, **start)
    in_memory = bayesgmm.em_fit(X, 3, stream=False, **kwargs)
    streamed = bayesgmm.em_fit(X, 3, stream=True, **kwargs)
    np.testing.assert_allclose(streamed.log_likelihood_history, in_memory.log_likelihood_history, rtol=1e-10)
    np.testing.assert_allclose(streamed.params.means, in_memory.params.means, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("n_init", [1, pytest.param(2, marks=pytest.mark.extended)])  # hierarchical start; k-means
def test_select_on_a_stream_equals_select_in_memory(small_blocks, memmap, n_init):
    """select over several k on streamed rows: each k's fit takes the first k of the grid's draws
    (it failed with a shape error before: the streamed fits got the k_max-component draws). Same
    table to float64 round-off (1e-9) and the same choice as in memory."""
    X, mapped = memmap
    kwargs = dict(k=[1, 2, 3], covariance_types=["full", "spherical"], n_init=n_init, tol=1e-5, max_iter=1000)
    in_memory = bayesgmm.select(X, **kwargs)
    streamed = bayesgmm.select(mapped, **kwargs)
    assert (streamed.best_k, streamed.best_covariance_type) == (in_memory.best_k, in_memory.best_covariance_type)
    assert list(streamed.table["start"]) == list(in_memory.table["start"])
    np.testing.assert_allclose(streamed.table["bic"], in_memory.table["bic"], rtol=1e-9)


def test_stream_rejects_what_it_cannot_read(tmp_path):
    with pytest.raises(ValueError, match="2-D numeric NumPy array"):
        bayesgmm.em_fit([[1.0, 2.0], [3.0, 4.0]], 1, stream=True)
    bad = np.ones((50, 2))
    bad[17, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite values \\(first: row 17\\)"):
        bayesgmm.em_fit(bad, 1, stream=True)
    with pytest.raises(ValueError, match="stream must be True, False or None"):
        bayesgmm.em_fit(bad, 1, stream="yes")
