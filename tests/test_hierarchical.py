"""The hierarchical start (mclust's model-based agglomeration, Fraley 1998) against a brute-force
reference, known clusters, scikit-learn from the same start, and mclust's Old Faithful choice."""

import itertools
import warnings

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture

import bayesgmm
from bayesgmm.datasets import load_faithful
from bayesgmm.em._hierarchical import MAX_ROWS, hierarchical_partitions, merge_tree, partitions, svd_transform
from bayesgmm.em._init import subset_rows
from tests._references import COVARIANCE_TYPES, covariances_in_layout, precisions_from_covariances


def _brute_force_partitions(Z, ks):
    """Naive agglomeration: every step scores every pair of clusters from their member rows.

    mclust's hcVVV criterion written out: a cluster of ``l`` rows with scatter ``W`` scores
    ``l log(det(W / l) [l > d] + (tr W + alpha) / l)``, ``alpha = tr(total scatter) / (n d)``;
    merge the pair whose merged score minus their scores is lowest. O(n³) pairs.
    """
    n, d = Z.shape
    alpha = np.sum((Z - Z.mean(axis=0)) ** 2) / (n * d)

    def score(members):
        rows = Z[members]
        size = len(members)
        centred = rows - rows.mean(axis=0)
        W = centred.T @ centred
        inner = np.trace(W) + alpha
        determinant = np.linalg.det(W / size) if size > d else 0.0
        return size * np.log(determinant + inner / size)

    clusters = [[i] for i in range(n)]
    cuts = {}
    while True:
        if len(clusters) in ks:
            labels = np.empty(n, int)
            for label, members in enumerate(clusters):
                labels[members] = label
            cuts[len(clusters)] = labels
        if len(clusters) == min(ks):
            return cuts
        costs = {
            (i, j): score(clusters[i] + clusters[j]) - score(clusters[i]) - score(clusters[j])
            for i, j in itertools.combinations(range(len(clusters)), 2)
        }
        i, j = min(costs, key=costs.get)
        clusters[i] = clusters[i] + clusters[j]
        del clusters[j]


def _same_partition(a, b):
    """Equal up to the numbering of the clusters."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("d", [1, 2, 3])
def test_merge_tree_equals_brute_force(d):
    """Continuous data (no ties): the incremental tree makes the same merges as scoring every pair anew."""
    rng = np.random.default_rng(d)
    Z = np.concatenate([rng.normal(center, 1.0, size=(12, d)) for center in (-3.0, 0.0, 4.0)])
    ks = list(range(1, 11))
    expected = _brute_force_partitions(Z, ks)
    initial, merges = merge_tree(Z, np.ones(len(Z)), 1)
    found = partitions(initial, merges, ks)
    for k in ks:
        assert _same_partition(found[k], expected[k]), k


def test_duplicates_start_together_and_weights_count_as_copies():
    """Identical rows form one initial cluster (mclust's dupPartition); a row of weight 2 is a duplicated row."""
    rng = np.random.default_rng(5)
    Z = rng.normal(size=(20, 2))
    duplicated = np.concatenate([Z, Z[:5]])
    initial, _ = merge_tree(duplicated, np.ones(25), 1)
    np.testing.assert_array_equal(initial[20:], initial[:5])
    weights = np.ones(20)
    weights[:5] = 2.0
    by_copies = partitions(*merge_tree(duplicated, np.ones(25), 1), range(1, 8))
    by_weights = partitions(*merge_tree(Z, weights, 1), range(1, 8))
    for k in range(1, 8):
        assert _same_partition(by_copies[k][:20], by_weights[k]), k


def test_separated_clusters_are_found_exactly():
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0, 0.0], [12.0, 0.0, 0.0], [0.0, 12.0, 0.0]])
    truth = np.repeat(np.arange(3), 60)
    X = centers[truth] + rng.normal(size=(180, 3)) @ np.array([[1.0, 0.3, 0.0], [0.0, 1.0, 0.2], [0.0, 0.0, 1.0]])
    labels = hierarchical_partitions(X, np.ones(180), [3])[3]
    assert _same_partition(labels, truth)


def test_svd_transform_is_mclust_s():
    """Standardised columns rotated to the principal axes, each divided by the square root of its singular value."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 3)) @ rng.normal(size=(3, 3)) + 10.0
    Z = svd_transform(X, np.ones(50))
    standardised = (X - X.mean(axis=0)) / X.std(axis=0, ddof=1)
    singular = np.linalg.svd(standardised, compute_uv=False)
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(Z.T @ Z, np.diag(singular), atol=1e-10)  # orthogonal axes, scatter s_j
    constant = np.column_stack([X, np.full(50, 3.0)])  # a constant column carries nothing and is dropped
    np.testing.assert_allclose(np.abs(svd_transform(constant, np.ones(50))), np.abs(Z), atol=1e-10)


def test_subset_above_max_rows_is_seeded_and_deterministic_below():
    weights = np.ones(MAX_ROWS + 500)
    weights[7] = 0.0
    below = subset_rows(0, weights[: MAX_ROWS - 1])
    np.testing.assert_array_equal(below, np.flatnonzero(weights[: MAX_ROWS - 1]))
    first, again, other = subset_rows(0, weights), subset_rows(0, weights), subset_rows(1, weights)
    assert len(first) == MAX_ROWS and 7 not in first
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def _partition_start(X, labels, k, covariance_type, reg_covar=1e-6):
    """scikit-learn's M-step from hard labels: the parameters EM starts from."""
    resp = np.eye(k)[labels]
    counts = resp.sum(axis=0) + 10 * np.finfo(float).eps
    means = resp.T @ X / counts[:, None]
    full = np.stack([(resp[:, j, None] * (X - means[j])).T @ (X - means[j]) / counts[j] for j in range(k)])
    if covariance_type == "tied":
        covariances = np.tensordot(counts, full, axes=1) / counts.sum()
    else:
        covariances = covariances_in_layout(full, covariance_type)
    d = X.shape[1]
    if covariance_type in ("full", "tied"):
        covariances = covariances + reg_covar * np.eye(d)
    else:
        covariances = covariances + reg_covar
    return counts / counts.sum(), means, covariances


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_em_from_the_hierarchical_start_equals_sklearn_from_it(covariance_type):
    """em_fit(init="hierarchical") is EM from the tree's partition: scikit-learn started there agrees (float64)."""
    X = np.asarray(load_faithful(), float)
    k = 3
    labels = hierarchical_partitions(X, np.ones(len(X)), [k])[k]
    weights, means, covariances = _partition_start(X, labels, k, covariance_type)
    reference = GaussianMixture(
        k,
        covariance_type=covariance_type,
        tol=1e-6,
        max_iter=500,
        weights_init=weights,
        means_init=means,
        precisions_init=precisions_from_covariances(covariances, covariance_type),
    ).fit(X)
    result = bayesgmm.em_fit(X, k, covariance_type=covariance_type, init="hierarchical", tol=1e-6, max_iter=500)
    assert result.n_iter == reference.n_iter_
    np.testing.assert_allclose(result.params.means, reference.means_, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(result.params.covariances, reference.covariances_, rtol=1e-6, atol=1e-6)


def test_every_driver_gives_the_same_hierarchical_fit(tmp_path):
    """In memory, streamed from a memmap, and on the host (infer's start) start from the same partition."""
    from bayesgmm.em import EMConfig, fit_on_host

    X = np.asarray(load_faithful(), float)
    in_memory = bayesgmm.em_fit(X, 3, covariance_type="tied", init="hierarchical", tol=1e-6)
    path = tmp_path / "faithful.npy"
    np.save(path, X)
    streamed = bayesgmm.em_fit(np.load(path, mmap_mode="r"), 3, covariance_type="tied", init="hierarchical", tol=1e-6)
    config = EMConfig.validated(covariance_type="tied", init="hierarchical", tol=1e-6)
    on_host, _ = fit_on_host(X, 3, config, seed=0)
    for other in (streamed, on_host):
        assert other.n_iter == in_memory.n_iter
        np.testing.assert_allclose(other.params.means, in_memory.params.means, rtol=1e-8)
        np.testing.assert_allclose(other.log_likelihood, in_memory.log_likelihood, rtol=1e-10)


def test_default_grid_fits_equal_em_fit_from_the_hierarchical_start():
    """select's default grid (one tree for every k and type) fits what em_fit(init="hierarchical") fits
    (without the close calls' refits, which replace some fits by better ones)."""
    X = np.asarray(load_faithful(), float)
    selection = bayesgmm.select(X, k=[1, 2, 4], covariance_types=COVARIANCE_TYPES, close_call_starts=0)
    assert set(selection.table["start"]) == {"hierarchical"}
    for (k, covariance_type), result in selection.fits.items():
        alone = bayesgmm.em_fit(X, k, covariance_type=covariance_type, init="hierarchical", tol=1e-4)
        assert result.n_iter == alone.n_iter, (k, covariance_type)
        np.testing.assert_allclose(result.log_likelihood, alone.log_likelihood, rtol=1e-9)
        np.testing.assert_allclose(result.params.means, alone.params.means, rtol=1e-9, atol=1e-9)


def test_hierarchical_is_deterministic_so_restarts_are_an_error():
    X = np.asarray(load_faithful(), float)
    with pytest.raises(ValueError, match="deterministic"):
        bayesgmm.em_fit(X, 2, init="hierarchical", n_init=3)
    first = bayesgmm.em_fit(X, 2, init="hierarchical", seed=0)
    second = bayesgmm.em_fit(X, 2, init="hierarchical", seed=123)  # below MAX_ROWS the seed plays no part
    np.testing.assert_array_equal(first.params.means, second.params.means)


def test_missing_values_start_from_the_complete_rows_filled_with_column_means():
    rng = np.random.default_rng(3)
    X = np.asarray(load_faithful(), float).copy()
    X[rng.choice(272, 20, replace=False), rng.integers(0, 2, 20)] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = bayesgmm.em_fit(X, 2, init="hierarchical", missing="marginalize", tol=1e-6, max_iter=500)
    assert result.converged and np.all(np.isfinite(result.params.means))


def test_old_faithful_select_is_mclust_s_choice():
    """mclust's default Mclust(faithful) chooses EEE (tied) with 3 components, BIC −2314.386 in its sign,
    VVV (full) with 2 at −2322.192 next (mclust vignette; Scrucca et al. 2016, The R Journal 8(1))."""
    X = load_faithful()
    selection = bayesgmm.select(X)
    assert (selection.best_k, selection.best_covariance_type) == (3, "tied")
    bic = selection.table.set_index(["k", "covariance_type"])["bic"]
    # tol=1e-4 stops a slow climb early: within 0.15 of the maximum's BIC, 2314.296 (below)
    assert 2314.29 <= bic[(3, "tied")] <= 2314.45
    assert bic[(2, "full")] == pytest.approx(2322.19, abs=0.01)
    # run to convergence, the maximum is 2314.296: at least as good as mclust's (its own stopping rule)
    converged = bayesgmm.select(X, 3, "tied", tol=1e-9, max_iter=2000).table["bic"].iloc[0]
    assert converged == pytest.approx(2314.296, abs=0.002)
    assert converged <= 2314.386
