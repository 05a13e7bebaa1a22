"""Model-based agglomerative hierarchical clustering (Fraley 1998): mclust's default EM start.

Starting from one cluster per distinct row, ``merge_tree`` merges, one pair at a time, the
two clusters whose merge costs least in the classification likelihood of the unconstrained
("VVV") Gaussian model, regularised as mclust's ``hcVVV`` (alpha = trace of the data's
scatter over ``n d``, beta = 1). A cluster of total weight ``l`` and scatter matrix ``W``
(about its mean) scores

    term(l, W) = l log( det(W / l) [l > d] + (tr W + alpha) / l ),

and a merge costs ``term(merged) − term(a) − term(b)``. ``partitions`` cuts the tree at the
requested numbers of clusters. ``svd_transform`` is mclust's default transform of the data
before clustering (``hcUse = "SVD"``: standardised, rotated to the principal axes, each axis
divided by the square root of its singular value). The clustering is deterministic; above
``MAX_ROWS`` rows it runs on a random subset of that many rows, as mclust does.

Host NumPy in float64, nothing compiled: a merge updates one row of the (S, S) cost matrix
(``O(S d³)``), so the tree costs ``O(S² d³)`` for ``S`` distinct rows.

References
----------
C. Fraley, "Algorithms for model-based Gaussian hierarchical clustering", SIAM J. Sci.
Comput. 20(1), 1998. L. Scrucca and A. E. Raftery, "Improved initialisation of model-based
clustering using Gaussian hierarchical partitions", ADAC 9, 2015 (the SVD transform).
"""

from __future__ import annotations

import numpy as np

MAX_ROWS = 2000  # mclust's default ``subset``: above it, the tree is built on a random subset of rows
_BLOCK = 256  # rows per block of the initial (S, S) cost matrix


def svd_transform(X: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """mclust's "SVD" transform: ``Z = standardised(X) V diag(1/sqrt(s))`` (weighted); (n, p) float64.

    Columns that are constant are dropped, and so are directions of zero singular value.
    """
    total = weights.sum()
    centred = X - weights @ X / total
    sd = np.sqrt(weights @ centred**2 / max(total - 1.0, 1e-300))  # R's sd (n − 1) with unit weights
    Z = centred[:, sd > 0] / sd[sd > 0]
    _, singular, vt = np.linalg.svd(np.sqrt(weights)[:, None] * Z, full_matrices=False)
    keep = singular > singular[:1] * Z.shape[1] * np.finfo(np.float64).eps if singular.size else singular > 0
    return Z @ vt[keep].T / np.sqrt(singular[keep])


def _terms(count, trace, log_det, d: int, alpha: float) -> np.ndarray:
    """``term(l, W)`` from ``l``, ``tr W`` and ``log det W`` (−inf when singular), elementwise."""
    base = np.log((trace + alpha) / count)
    with_det = np.logaddexp(log_det - d * np.log(count), base)
    return count * np.where(count > d, with_det, base)


def _log_dets(W: np.ndarray) -> np.ndarray:
    """(m,) log det of (m, d, d) symmetric positive semi-definite matrices; −inf when singular."""
    sign, log_det = np.linalg.slogdet(W)
    return np.where(sign > 0, log_det, -np.inf)


def merge_tree(Z: np.ndarray, weights: np.ndarray, n_clusters: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Greedy merges of the distinct rows of ``Z`` down to ``n_clusters`` clusters.

    Parameters
    ----------
    Z : (n, p) rows (``svd_transform``'s)
    weights : (n,) positive row weights: a row of weight ``m`` counts as ``m`` identical rows
    n_clusters : merge until this many clusters are left

    Returns
    -------
    initial : (n,) int, each row's initial cluster (identical rows share one)
    merges : (m, 2) int, the clusters merged at each step (the second joins the first)
    """
    distinct, initial = np.unique(Z, axis=0, return_inverse=True)
    initial = initial.reshape(-1)
    S, d = distinct.shape
    count = np.bincount(initial, weights, minlength=S)
    total = count.sum()
    alpha = max(float(weights @ np.sum((Z - weights @ Z / total) ** 2, axis=1)) / (total * d), np.finfo(float).eps)
    means = distinct.copy()
    scatter = np.zeros((S, d, d))
    traces = np.zeros(S)  # tr W of each cluster
    terms = _terms(count, 0.0, -np.inf, d, alpha)
    cost = np.empty((S, S))
    for start in range(0, S, _BLOCK):  # two clusters of identical rows merge into a rank-one scatter
        block = slice(start, start + _BLOCK)
        pair_count = count[block, None] + count[None, :]
        squared = np.sum((means[block, None, :] - means[None, :, :]) ** 2, axis=-1)
        trace = count[block, None] * count[None, :] / pair_count * squared
        with np.errstate(divide="ignore"):  # a cluster with itself (the diagonal, set to inf below)
            log_det = np.log(trace) if d == 1 else np.full_like(trace, -np.inf)
        cost[block] = _terms(pair_count, trace, log_det, d, alpha) - terms[block, None] - terms[None, :]
    np.fill_diagonal(cost, np.inf)
    best = np.argmin(cost, axis=1)
    best_cost = cost[np.arange(S), best]
    live = np.arange(S)
    merges = []
    for _ in range(S - max(n_clusters, 1)):
        a = int(np.argmin(best_cost))
        a, b = sorted((a, int(best[a])))
        n_a, n_b = count[a], count[b]
        n = n_a + n_b
        delta = means[a] - means[b]
        scatter[a] += scatter[b] + (n_a * n_b / n) * (delta[:, None] * delta[None, :])
        means[a] = (n_a * means[a] + n_b * means[b]) / n
        count[a] = n
        traces[a] = np.trace(scatter[a])
        terms[a] += cost[a, b] + terms[b]
        merges.append((a, b))
        cost[b, :] = cost[:, b] = np.inf
        best_cost[b] = np.inf
        live = live[live != b]
        others = live[live != a]
        if not others.size:
            break
        # the cost of merging the new cluster with every other one: term(merged) − term(a) − term(other)
        pair_count = n + count[others]
        delta = means[a] - means[others]
        between = n * count[others] / pair_count
        pair_trace = traces[a] + traces[others] + between * np.einsum("ij,ij->i", delta, delta)
        base = np.log((pair_trace + alpha) / pair_count)
        new = pair_count * base
        full_rank = np.flatnonzero(pair_count > d)  # the determinant counts only then
        if full_rank.size:
            delta = delta[full_rank]
            pair_scatter = scatter[a] + scatter[others[full_rank]]
            pair_scatter += between[full_rank, None, None] * (delta[:, :, None] * delta[:, None, :])
            log_det = _log_dets(pair_scatter) - d * np.log(pair_count[full_rank])
            new[full_rank] = pair_count[full_rank] * np.logaddexp(log_det, base[full_rank])
        new -= terms[a] + terms[others]
        cost[a, others] = cost[others, a] = new
        cheapest = int(np.argmin(new))
        best[a], best_cost[a] = others[cheapest], new[cheapest]
        # clusters whose cheapest partner was a or b look again; the others compare with the new cluster
        partner = best[others]
        stale = others[(partner == a) | (partner == b)]
        if stale.size:
            best[stale] = np.argmin(cost[stale], axis=1)
            best_cost[stale] = cost[stale, best[stale]]
        closer = others[(new < best_cost[others]) & (partner != a) & (partner != b)]
        best[closer] = a
        best_cost[closer] = cost[closer, a]
    return initial, np.asarray(merges, np.int64).reshape(-1, 2)


def partitions(initial: np.ndarray, merges: np.ndarray, ks) -> dict[int, np.ndarray]:
    """Each row's cluster (0 .. k − 1, numbered by first row) when ``k`` clusters are left, for ``k`` in ``ks``.

    ``k`` larger than the number of initial clusters gets the initial clusters.
    """
    n_initial = int(initial.max()) + 1
    owner = np.arange(n_initial)
    cuts = {}
    wanted = sorted(set(ks), reverse=True)
    for step in range(len(merges) + 1):
        left = n_initial - step
        while wanted and wanted[0] >= left:
            _, first_row, labels = np.unique(owner[initial], return_index=True, return_inverse=True)
            cuts[wanted.pop(0)] = np.argsort(np.argsort(first_row))[labels.reshape(-1)]
        if step < len(merges):
            a, b = merges[step]
            owner[owner == b] = a
    for k in wanted:
        raise ValueError(f"The tree was not merged down to {k} clusters.")
    return cuts


def hierarchical_partitions(X: np.ndarray, weights: np.ndarray, ks) -> dict[int, np.ndarray]:
    """mclust's start: the VVV merge tree on ``svd_transform(X)``, cut at each ``k`` in ``ks``; {k: (n,) labels}."""
    Z = svd_transform(X, weights)
    initial, merges = merge_tree(Z, weights, min(ks))
    return partitions(initial, merges, ks)
