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

The merges run in one compiled loop (``lax.fori_loop``, float64): a merge scores the new
cluster against every other one at once (``O(S d³)`` vectorised over S) and rewrites one row
of the (S, S) cost matrix, so the tree costs ``O(S² d³)`` for ``S`` distinct rows. The data's
transform and the cuts are NumPy on the host.

References
----------
C. Fraley, "Algorithms for model-based Gaussian hierarchical clustering", SIAM J. Sci.
Comput. 20(1), 1998. L. Scrucca and A. E. Raftery, "Improved initialisation of model-based
clustering using Gaussian hierarchical partitions", ADAC 9, 2015 (the SVD transform).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax

from bayesgmm._arrays import bucket_size

# Above this many rows of positive weight the tree is built on a random subset of them (mclust's
# ``subset`` is 2000; the tree's cost grows as the square, and 1000 keeps it a fraction of a second).
MAX_ROWS = 1000
_UNROLL = 8  # dimensions up to which ``_log_dets`` writes the Cholesky factorisation out


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


def _terms(count, trace, log_det, d: int, alpha):
    """``term(l, W)`` from ``l``, ``tr W`` and ``log det W`` (−inf when singular; None: every ``W``
    singular), elementwise; 0 where ``l = 0``."""
    safe = jnp.where(count > 0, count, 1.0)
    base = jnp.log((trace + alpha) / safe)
    with_det = base if log_det is None else jnp.logaddexp(log_det - d * jnp.log(safe), base)
    return jnp.where(count > 0, count * jnp.where(count > d, with_det, base), 0.0)


def _log_dets(W):
    """(m,) log det of (m, d, d) positive semi-definite matrices from Cholesky factors; −inf when singular.

    Up to ``_UNROLL`` dimensions the factorisation is written out over the batch (elementwise
    vector operations, which XLA fuses); above, ``jnp.linalg.cholesky``.
    """
    d = W.shape[-1]
    if d > _UNROLL:
        factor = jnp.linalg.cholesky(W)
        log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(factor, axis1=-2, axis2=-1)), axis=-1)
        return jnp.where(jnp.isfinite(log_det), log_det, -jnp.inf)
    factor = [[None] * d for _ in range(d)]
    half_log_det = jnp.zeros(W.shape[:-2], W.dtype)
    positive = jnp.ones(W.shape[:-2], bool)
    for j in range(d):
        pivot = W[..., j, j] - sum((factor[j][i] ** 2 for i in range(j)), jnp.zeros_like(half_log_det))
        positive = positive & (pivot > 0)
        root = jnp.sqrt(jnp.where(pivot > 0, pivot, 1.0))
        half_log_det = half_log_det + jnp.log(root)
        factor[j][j] = root
        for row in range(j + 1, d):
            below = W[..., row, j] - sum((factor[row][i] * factor[j][i] for i in range(j)), jnp.zeros_like(root))
            factor[row][j] = below / root
    return jnp.where(positive, 2.0 * half_log_det, -jnp.inf)


class _Tree(NamedTuple):
    """The merge loop's state over S (padded) clusters; a merge keeps the lower index of the pair.

    ``cost[i, j]`` is current for the pair when ``version[i] >= version[j]`` (row ``i`` was
    rewritten after cluster ``j`` last changed), else ``cost[j, i]`` is: a merge rewrites one
    row, never a column (a column write would copy the (S, S) matrix in the loop).
    """

    version: Array  # (S,) int step at which each cluster last changed
    count: Array  # (S,) total weight of each cluster (0: merged away, or padding)
    means: Array  # (S, d)
    scatter: Array  # (S, d, d) Σ w (x − mean)(x − mean)ᵀ
    terms: Array  # (S,) term(count, scatter)
    cost: Array  # (S, S) merge costs (see above)
    best: Array  # (S,) int each live cluster's cheapest partner
    best_cost: Array  # (S,) its cost (inf: merged away)
    merges: Array  # (S − 1, 2) int the pairs merged so far


def _initial_costs(means, count, terms, alpha):
    """(S, S) costs of merging two clusters of identical rows: a rank-one scatter (det 0 unless d = 1)."""
    d = means.shape[1]
    others = jnp.arange(count.shape[0])

    def row(i):  # 64 rows at a time: (64, S, d) differences, not (S, S, d)
        pair_count = count[i] + count
        squared = jnp.sum((means[i] - means) ** 2, axis=-1)
        trace = count[i] * count / jnp.where(pair_count > 0, pair_count, 1.0) * squared
        log_det = jnp.log(trace) if d == 1 else None
        costs = _terms(pair_count, trace, log_det, d, alpha) - terms[i] - terms
        return jnp.where((count[i] > 0) & (count > 0) & (others != i), costs, jnp.inf)

    return lax.map(row, others, batch_size=64)


def _merge(step, tree: _Tree, alpha) -> _Tree:
    """Merge the cheapest pair (b into a < b), score the new cluster against all, keep every ``best`` current."""
    version, count, means, scatter, terms, cost, best, best_cost, merges = tree
    S, d = means.shape
    first = jnp.argmin(best_cost)
    pair_cost = best_cost[first]
    a, b = jnp.minimum(first, best[first]), jnp.maximum(first, best[first])
    n = count[a] + count[b]
    delta = means[a] - means[b]
    merged = scatter[a] + scatter[b] + (count[a] * count[b] / n) * jnp.outer(delta, delta)
    mean = (count[a] * means[a] + count[b] * means[b]) / n
    term = terms[a] + terms[b] + pair_cost
    count = count.at[a].set(n).at[b].set(0.0)
    means, scatter, terms = means.at[a].set(mean), scatter.at[a].set(merged), terms.at[a].set(term)
    live = count > 0
    others = live & (jnp.arange(S) != a)
    # the cost of merging the new cluster with every other one: term(merged) − term(a) − term(other)
    pair_count = n + count
    delta = mean - means
    between = n * count / pair_count
    pair_scatter = merged + scatter + between[:, None, None] * (delta[:, :, None] * delta[:, None, :])
    log_det = jnp.where(pair_count > d, _log_dets(pair_scatter), -jnp.inf)
    trace = jnp.trace(pair_scatter, axis1=1, axis2=2)
    new = jnp.where(others, _terms(pair_count, trace, log_det, d, alpha) - term - terms, jnp.inf)
    cost, version = cost.at[a].set(new), version.at[a].set(step + 1)
    # clusters whose cheapest partner was a or b look again; the others compare with the new cluster
    stale = others & ((best == a) | (best == b))
    closer = others & ~stale & (new < best_cost)
    best = jnp.where(closer, a, best).at[a].set(jnp.argmin(new))
    best_cost = jnp.where(closer, new, best_cost).at[a].set(jnp.min(new)).at[b].set(jnp.inf)

    def look_again(carry):
        stale, best, best_cost = carry
        r = jnp.argmax(stale)
        row = jnp.where(version[r] >= version, cost[r], cost[:, r])
        row = jnp.where(live & (jnp.arange(S) != r), row, jnp.inf)
        return stale.at[r].set(False), best.at[r].set(jnp.argmin(row)), best_cost.at[r].set(jnp.min(row))

    _, best, best_cost = lax.while_loop(lambda carry: jnp.any(carry[0]), look_again, (stale, best, best_cost))
    merges = merges.at[step].set(jnp.stack([a, b]).astype(merges.dtype))
    return _Tree(version, count, means, scatter, terms, cost, best, best_cost, merges)


@jax.jit
def _merges(distinct, count, alpha, n_merges):
    """(S − 1, 2) the first ``n_merges`` greedy merges of the clusters ``distinct`` (S, d) of weight ``count``."""
    S, d = distinct.shape
    terms = _terms(count, jnp.zeros_like(count), None, d, alpha)
    cost = _initial_costs(distinct, count, terms, alpha)
    tree = _Tree(
        jnp.zeros((S,), jnp.int32),
        count,
        distinct,
        jnp.zeros((S, d, d), distinct.dtype),
        terms,
        cost,
        jnp.argmin(cost, axis=1),
        jnp.min(cost, axis=1),
        jnp.zeros((max(S - 1, 1), 2), jnp.int32),
    )
    return lax.fori_loop(0, n_merges, lambda step, tree: _merge(step, tree, alpha), tree).merges


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

    Notes
    -----
    One compiled loop in float64 (``jax.enable_x64`` inside), compiled once per bucket of
    distinct rows (padded with clusters of weight 0) and dimension.
    """
    distinct, initial = np.unique(Z, axis=0, return_inverse=True)
    initial = initial.reshape(-1)
    S = distinct.shape[0]
    count = np.bincount(initial, weights, minlength=S)
    total = count.sum()
    alpha = max(float(weights @ np.sum((Z - weights @ Z / total) ** 2, axis=1)) / (total * Z.shape[1]), 1e-300)
    n_merges = max(S - max(n_clusters, 1), 0)
    padded = bucket_size(S)
    with jax.enable_x64(True):
        merges = _merges(
            np.pad(distinct, ((0, padded - S), (0, 0))),
            np.pad(count, (0, padded - S)),
            np.float64(alpha),
            np.int32(n_merges),
        )
        return initial, np.asarray(merges)[:n_merges].astype(np.int64)


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
