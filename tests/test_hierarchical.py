"""The hierarchical start (mclust's model-based agglomeration, Fraley 1998) against mclust's rule
written out pair by pair, mclust's own tree on Old Faithful, known clusters, scikit-learn from the
same start, and mclust's Old Faithful choice."""

import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture

import bayesgmm
from bayesgmm.datasets import load_faithful
from bayesgmm.em._hierarchical import MAX_ROWS, hierarchical_partitions, merge_tree, partitions, svd_transform
from bayesgmm.em._init import subset_rows
from tests._references import COVARIANCE_TYPES, covariances_in_layout, precisions_from_covariances


def _mclust_merges(Z, weights):
    """mclust's ``hcvvv`` rule written out from its Fortran (mclust 6.1.1 ``src/mclust.f``), plain NumPy,
    every pair scored anew at every step: O(S³) pairs. Returns the merged pairs (lower row first).

    Clusters sit at positions 0 .. L − 1 (initially the rows in order). A cluster of weight ``l``
    with scatter trace ``t`` and factor ``G`` scores ``l log(det(G / l) [l > d] + (t + alpha) / l)``,
    ``alpha = t(all rows) / (n d)``; two single rows by the trace alone (the first scan). A pair's
    ``G`` is, for its cost, the factor the younger cluster was made with plus the factor kept of
    the older one plus ``v vᵀ`` (the cost is scored when the younger one is made), and for the
    merged cluster the same if one of them was made by the last merge, else the factors kept of
    both plus ``v vᵀ``; the factor kept of a cluster has its factor's first row copied into each
    of its ``min(l − 1, d)`` rows, row ``k`` read from column ``k`` on. The cheapest pair merges,
    the last of equal ones in the scan (``j`` = 1 .. L − 1, ``i`` < ``j``); the merged cluster takes
    position ``i``, the cluster at the last position moves to ``j``. A cluster is named by its
    first row.
    """
    n, d = Z.shape
    mean = weights @ Z / weights.sum()
    alpha = float(weights @ np.sum((Z - mean) ** 2, axis=1)) / (weights.sum() * d)

    def score(weight, trace, gram):
        determinant = 0.0
        if weight > d:
            sign, log_det = np.linalg.slogdet(gram / weight)
            determinant = np.exp(log_det) if sign > 0 else 0.0
        return weight * np.log(determinant + (trace + alpha) / weight)

    def kept(gram, weight):
        first = gram[0] / np.sqrt(gram[0, 0]) if gram[0, 0] > 0 else np.zeros(d)
        rows = np.zeros((d, d))
        for k in range(int(min(weight - 1, d))):
            rows[k, k:] = first[k:]
        return rows.T @ rows

    clusters = [
        dict(name=i, weight=w, mean=Z[i], trace=0.0, gram=np.zeros((d, d)), kept=np.zeros((d, d)), made=-1)
        for i, w in enumerate(weights)
    ]
    for cluster in clusters:
        cluster["score"] = score(cluster["weight"], 0.0, cluster["gram"])

    def merged(a, b, both_kept=False):
        weight = a["weight"] + b["weight"]
        v = np.sqrt(a["weight"] * b["weight"] / weight) * (a["mean"] - b["mean"])
        trace = a["trace"] + b["trace"] + v @ v
        young, old = (a, b) if a["made"] >= b["made"] else (b, a)
        gram = (young["kept"] if both_kept else young["gram"]) + old["kept"] + np.outer(v, v)
        if a["made"] == b["made"] == -1 and a["weight"] == b["weight"] == 1:
            value = 2 * np.log((trace + alpha) / 2)  # two single rows: the trace alone, also for d = 1
        else:
            value = score(weight, trace, gram)
        mean = (a["weight"] * a["mean"] + b["weight"] * b["mean"]) / weight
        return dict(name=min(a["name"], b["name"]), weight=weight, mean=mean, trace=trace, gram=gram, score=value)

    pairs = []
    for step in range(n - 1):
        best = None
        for j in range(1, len(clusters)):
            for i in range(j):
                cost = merged(clusters[i], clusters[j])["score"] - clusters[i]["score"] - clusters[j]["score"]
                if best is None or cost <= best[0]:
                    best = (cost, i, j)
        cost, i, j = best
        last = step - 1 in (clusters[i]["made"], clusters[j]["made"])
        new = merged(clusters[i], clusters[j], both_kept=not last) | dict(made=step)
        new["score"] = cost + clusters[i]["score"] + clusters[j]["score"]
        new["kept"] = kept(new["gram"], new["weight"])
        pairs.append(sorted((clusters[i]["name"], clusters[j]["name"])))
        clusters[i] = new
        clusters[j] = clusters[-1]
        clusters.pop()
    return np.array(pairs)


def _same_partition(a, b):
    """Equal up to the numbering of the clusters."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


LOOPS = pytest.mark.parametrize("on_host", [True, False], ids=["numpy", "compiled"])  # merge_tree's two loops


@LOOPS
@pytest.mark.parametrize("case", ["plain", "identical rows", "weighted"])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_merge_tree_equals_mclusts_rule_written_out(d, case, on_host):
    """The incremental tree makes the merges of mclust's rule scored pair by pair (``_mclust_merges``):
    continuous rows, rows with copies (their pairs tie), and weighted rows."""
    rng = np.random.default_rng(d)
    Z = np.concatenate([rng.normal(center, 1.0, size=(12, d)) for center in (-3.0, 0.0, 4.0)])
    weights = np.ones(len(Z))
    if case == "identical rows":
        Z = np.concatenate([Z, Z[[3, 20, 31, 20]]])
        weights = np.ones(len(Z))
    elif case == "weighted":
        weights = rng.integers(1, 4, size=len(Z)).astype(float)
    initial, merges = merge_tree(Z, weights, 1, on_host=on_host)
    np.testing.assert_array_equal(initial, np.arange(len(Z)))
    np.testing.assert_array_equal(merges, _mclust_merges(Z, weights))


@LOOPS
def test_identical_rows_start_apart_and_ties_go_to_the_last_pair(on_host):
    """As ``Mclust``'s ``hc`` call (no ``partition``): one cluster per row, identical rows too; their
    pairs all cost ``−2 log 2``, and mclust's scan merges the last of them first."""
    rng = np.random.default_rng(5)
    Z = rng.normal(size=(20, 2))
    duplicated = np.concatenate([Z, Z[:5]])
    initial, merges = merge_tree(duplicated, np.ones(25), 1, on_host=on_host)
    np.testing.assert_array_equal(initial, np.arange(25))
    np.testing.assert_array_equal(merges[0], [4, 24])


@LOOPS
def test_old_faithful_tree_is_mclusts(on_host):
    """Old Faithful's tree against mclust 6.1.1's ``hcvvv`` (its Fortran compiled and called as
    ``hc(faithful, "VVV", use = "SVD")``, ``hclass``): the first merges (``hcPairs`` less one) and
    the cluster sizes of the cuts at k = 2 .. 9, numbered by first row (``partconv``'s order)."""
    X = np.asarray(load_faithful(), float)
    initial, merges = merge_tree(svd_transform(X, np.ones(len(X))), np.ones(len(X)), 1, on_host=on_host)
    np.testing.assert_array_equal(merges[:8] + 1, [[183, 264], [132, 183], [132, 222], [132, 268], [132, 175],
                                                   [105, 132], [105, 196], [105, 141]])  # fmt: skip
    sizes = {
        2: [175, 97], 3: [40, 97, 135], 4: [40, 65, 135, 32], 5: [40, 65, 65, 32, 70],
        6: [40, 65, 29, 32, 70, 36], 7: [40, 34, 29, 32, 70, 31, 36], 8: [26, 34, 29, 32, 70, 31, 36, 14],
        9: [26, 34, 29, 32, 59, 31, 11, 36, 14],
    }  # fmt: skip
    cuts = partitions(initial, merges, sizes)
    for k, expected in sizes.items():
        assert np.bincount(cuts[k]).tolist() == expected, k


def _csv_rows(name: str) -> np.ndarray:
    """The numeric columns of a data set in tests/data."""
    import pandas as pd

    frame = pd.read_csv(Path(__file__).parent / "data" / f"{name}.csv", comment="#")
    return frame.select_dtypes("number").to_numpy(float)


def test_the_numpy_loop_makes_the_compiled_loop_s_merges():
    """``merge_tree`` runs small trees in NumPy and larger ones compiled (``HOST_MAX_WORK``): one loop
    (``_merge_loop``), the same merges, ties included, on real data sets of 1 to 13 features, rows with
    copies and weighted rows."""
    from sklearn.datasets import load_iris, load_wine

    rng = np.random.default_rng(7)
    rows = rng.normal(size=(60, 3))
    sets = {
        "faithful": (np.asarray(load_faithful(), float), None),
        "iris": (load_iris().data, None),  # has identical rows
        "wine": (load_wine().data, None),  # 13 features: the factorisation's general path
        "galaxies": (_csv_rows("galaxies"), None),  # 1 feature
        "thyroid": (_csv_rows("thyroid"), None),
        "crabs": (_csv_rows("crabs"), None),
        "penguins": (_csv_rows("penguins"), None),
        "copies": (np.concatenate([rows, rows[:20], rows[5:9]]), None),
        "weighted": (rows, rng.integers(1, 5, size=60).astype(float)),
    }
    for name, (X, weights) in sets.items():
        weights = np.ones(len(X)) if weights is None else weights
        Z = svd_transform(X, weights)
        numpy_loop = merge_tree(Z, weights, 1, on_host=True)[1]
        np.testing.assert_array_equal(numpy_loop, merge_tree(Z, weights, 1, on_host=False)[1], err_msg=name)


def test_a_tree_shape_met_again_and_again_moves_to_the_compiled_loop(monkeypatch):
    """Ski rental (``HOST_MAX_WORK``): trees of one shape (rows padded to their bucket, dimensions) are
    merged in NumPy while the session's S² d for that shape, this tree's included, stays within the
    budget, then in the compiled loop, with the same merges; another shape keeps its own count, and a
    tree over the budget compiles at once."""
    import bayesgmm.em._hierarchical as hierarchical

    calls = []
    loop = hierarchical._merge_loop
    monkeypatch.setattr(hierarchical, "_merge_loop", lambda *args: calls.append("numpy") or loop(*args))
    compiled = hierarchical._merges
    monkeypatch.setattr(hierarchical, "_merges", lambda *args: calls.append("compiled") or compiled(*args))
    rng = np.random.default_rng(3)
    Z = rng.normal(size=(40, 2))
    weights = np.ones(40)
    monkeypatch.setattr(hierarchical, "HOST_MAX_WORK", 3 * 40 * 40 * 2)  # three trees' worth
    merges = [merge_tree(Z + 1e-9 * call, weights)[1] for call in range(5)]
    assert calls == ["numpy"] * 3 + ["compiled"] * 2
    for later in merges[1:]:
        np.testing.assert_array_equal(later, merges[0])
    calls.clear()
    merge_tree(rng.normal(size=(40, 3)), weights)  # another shape
    merge_tree(rng.normal(size=(4000 // 40, 2)), np.ones(100))  # 100² 2 = 20_000 > the budget: at once
    assert calls == ["numpy", "compiled"]


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
