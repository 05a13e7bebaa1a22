"""Model-based agglomerative hierarchical clustering (Fraley 1998): mclust's default EM start.

``merge_tree`` makes mclust's merges: those of its Fortran ``hcvvv`` as ``Mclust`` and
``mclustBIC`` call it (``hc(data, "VVV", use = "SVD")`` passes no ``partition``, so ``hcVVV``
starts from one cluster per row, identical rows included). One pair at a time it merges the two
clusters whose merge costs least in the classification likelihood of the unconstrained
("VVV") Gaussian model, regularised as ``hcVVV`` (alpha = trace of the data's scatter over
``n d``, beta = 1). A cluster of total weight ``l``, scatter trace ``tr W`` and scatter factor
``G`` scores

    term(l, W) = l log( det(G / l) [l > d] + (tr W + alpha) / l ),

and a merge costs ``term(merged) − (term(a) + term(b))``. Three details of ``hcvvv`` decide
which pair merges, and this module keeps them:

* two single rows score by the trace alone, even when ``d = 1`` (its first scan);
* ``G`` is exact only for the cluster just made: ``hcvvv`` keeps a cluster's triangular factor
  by copying the factor's first row into every row it keeps (``min(l − 1, d)`` of them), so an
  older cluster enters a merge with ``G = (r rᵀ) ∘ min(i, j, l − 1)``, ``r`` the first row of its
  factor (``r = G₀ / sqrt(G₀₀)``, ``G₀`` the first row of the factor's ``G``). The trace is
  exact (kept apart). A merge scores the cluster just made with its own ``G``, and each
  other cluster with its kept one; a cost is scored once, when the younger cluster of the pair
  is made, and the merged cluster's ``G`` is that sum (the kept ones of both when neither is
  the newest);
* ties (the pairs of identical rows all cost ``−2 log 2``) go to the last pair in its scan
  order over the clusters' positions: merging positions ``i < j`` keeps the merged cluster at
  ``i`` and moves the cluster at the last position to ``j``.

Its arithmetic is followed too (the scaled sums it keeps instead of means, its ``v``, ``ddot``'s
order of sums without FMA, ``vvvtij``'s formula, alpha summed as ``mcltrw`` does), so that pairs
whose costs are equal but for rounding (mirror images) mostly break as in mclust; the
determinant comes from a Cholesky factor, not its Givens rotations. Checked against mclust
6.1.1's Fortran compiled: the same merges on Old Faithful, iris, wine, thyroid, crabs,
diabetes, penguins, galaxies and random data with identical rows.

``partitions`` cuts the tree at the requested numbers of clusters. ``svd_transform`` is
mclust's default transform of the data before clustering (``hcUse = "SVD"``: standardised,
rotated to the principal axes, each axis divided by the square root of its singular value).
The clustering is deterministic; above ``MAX_ROWS`` rows it runs on a random subset of that
many rows, as mclust does.

The merges run in one compiled loop (``lax.fori_loop``, float64): a merge scores the new
cluster against every other one at once (``O(S d³)`` vectorised over S) and rewrites one row
of the (S, S) cost matrix, so the tree costs ``O(S² d³)`` for ``S`` rows. The data's
transform and the cuts are NumPy on the host.

References
----------
C. Fraley, "Algorithms for model-based Gaussian hierarchical clustering", SIAM J. Sci.
Comput. 20(1), 1998. L. Scrucca and A. E. Raftery, "Improved initialisation of model-based
clustering using Gaussian hierarchical partitions", ADAC 9, 2015 (the SVD transform).
mclust 6.1.1, ``src/mclust.f`` (subroutines ``hcvvv``, ``vvvtij``, ``mclrup``, ``wardsw``) and
``R/mbahc.R`` (``hc``, ``hcVVV``, ``hclass``).
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


def _terms(count, trace, det_log, d: int, alpha):
    """``term(l, W)`` as hcvvv's ``vvvtij`` computes it, elementwise; 0 where ``l = 0``.

    ``det_log`` is ``log det(G / l)`` (−inf where a pivot is zero; None: every ``G`` singular).
    """
    safe = jnp.where(count > 0, count, 1.0)
    share = (trace + alpha) / safe
    base = jnp.log(share)
    if det_log is None:
        with_det = base
    else:
        # vvvtij's log(det + share), written so that neither exponential overflows
        small = jnp.log(jnp.exp(jnp.minimum(det_log, 0.0)) + share)
        large = jnp.log(1.0 + jnp.exp(-jnp.maximum(det_log, 0.0)) * share) + det_log
        with_det = jnp.where(jnp.isfinite(det_log), jnp.where(det_log <= 0, small, large), base)
    return jnp.where(count > 0, count * jnp.where(count > d, with_det, base), 0.0)


def _dot(u, v):
    """Σ_k u_k v_k over the last axis in the order k = 1 .. d, each product rounded, as BLAS ``ddot`` adds.

    Mirror-image pairs (``v`` and ``−v`` up to rounding) then tie, or not, as in mclust. The barrier
    keeps XLA from fusing a product and a sum into one FMA, which rounds once.
    """
    products = lax.optimization_barrier(u * v)
    total = products[..., 0]
    for k in range(1, u.shape[-1]):
        total = total + products[..., k]
    return total


def _between(count_a, sums_a, count_b, sums_b, single):
    """hcvvv's ``v`` for merging clusters a and b (up to its sign): ``sqrt(n_a n_b / n) (mean_a − mean_b)``
    from the scaled sums ``x = sum / sqrt(n)`` it keeps, ``x_b sqrt(n_a / n) − x_a sqrt(n_b / n)``, and
    ``(x_a − x_b) sqrt(1/2)`` for two single rows (``single``); broadcasts over leading axes."""
    share = 1.0 / (count_a + count_b)
    first, second = lax.optimization_barrier(
        (jnp.sqrt(count_a * share)[..., None] * sums_b, jnp.sqrt(count_b * share)[..., None] * sums_a)
    )
    general = first - second
    return jnp.where(single[..., None], (sums_a - sums_b) * jnp.sqrt(0.5), general)


def _log_dets(W, scale):
    """(m,) ``2 Σ_k log(scale R_kk)`` of (m, d, d) positive semi-definite ``W = RᵀR`` (Cholesky), hcvvv's
    ``det2mc``: ``log det(scale² W)``; −inf when singular.

    Up to ``_UNROLL`` dimensions the factorisation is written out over the batch (elementwise
    vector operations, which XLA fuses); above, ``jnp.linalg.cholesky``.
    """
    d = W.shape[-1]
    if d > _UNROLL:
        factor = jnp.linalg.cholesky(W)
        roots = jnp.abs(jnp.diagonal(factor, axis1=-2, axis2=-1) * scale[..., None])
        log_det = 2.0 * jnp.sum(jnp.log(roots), axis=-1)
        return jnp.where(jnp.isfinite(log_det), log_det, -jnp.inf)
    factor = [[None] * d for _ in range(d)]
    half_log_det = jnp.zeros(W.shape[:-2], W.dtype)
    positive = jnp.ones(W.shape[:-2], bool)
    for j in range(d):
        pivot = W[..., j, j] - sum((factor[j][i] ** 2 for i in range(j)), jnp.zeros_like(half_log_det))
        positive = positive & (pivot > 0)
        root = jnp.sqrt(jnp.where(pivot > 0, pivot, 1.0))
        half_log_det = half_log_det + jnp.log(root * scale)
        factor[j][j] = root
        for row in range(j + 1, d):
            below = W[..., row, j] - sum((factor[row][i] * factor[j][i] for i in range(j)), jnp.zeros_like(root))
            factor[row][j] = below / root
    return jnp.where(positive, 2.0 * half_log_det, -jnp.inf)


def _kept(gram, count):
    """(d, d) the factor ``hcvvv`` keeps of a cluster of weight ``count`` made with factor ``gram``.

    After a merge it copies the first row of the cluster's triangular factor into each of the
    ``min(count − 1, d)`` rows it keeps (``call dcopy(p, r(1,1), p, x(l,1), n)``), and reads row
    ``k`` back from column ``k`` on: ``(r rᵀ) ∘ min(i, j, count − 1)`` with ``r = G₀ / sqrt(G₀₀)``,
    exact for a pair (one row) and for ``d = 1``. (A zero first column keeps nothing here.)
    """
    d = gram.shape[-1]
    top = gram[0, 0]
    first = jnp.where(top > 0, gram[0] / jnp.sqrt(jnp.where(top > 0, top, 1.0)), 0.0)
    index = jnp.arange(1, d + 1, dtype=gram.dtype)
    rows = jnp.clip(count - 1.0, 0.0, d)
    return jnp.outer(first, first) * jnp.minimum(jnp.minimum(index[:, None], index), rows)


def _last_of_ties(row, slot, valid):
    """A row's cheapest partner and its cost; of equal costs, the one at the highest position
    (``hcvvv`` keeps the last minimum of its scan, ``dij .le. dopt``)."""
    row = jnp.where(valid, row, jnp.inf)
    low = jnp.min(row)
    return jnp.argmax(jnp.where(row == low, slot, -1)), low


class _Tree(NamedTuple):
    """The merge loop's state over S (padded) clusters; a merge keeps the lower index of the pair.

    ``cost[i, j]`` is current for the pair when ``version[i] >= version[j]`` (row ``i`` was
    rewritten after cluster ``j`` last changed), else ``cost[j, i]`` is: a merge rewrites one
    row, never a column (a column write would copy the (S, S) matrix in the loop).
    """

    version: Array  # (S,) int step at which each cluster last changed (0: a row not merged yet)
    slot: Array  # (S,) int each cluster's position in hcvvv's scan (which decides ties)
    at_slot: Array  # (S,) int the cluster at each position (the live ones first)
    count: Array  # (S,) total weight of each cluster (0: merged away, or padding)
    sums: Array  # (S, d) Σ w x / sqrt(count), the scaled sums hcvvv keeps instead of means
    kept: Array  # (S, d, d) the factor hcvvv keeps of each cluster (``_kept``)
    trace: Array  # (S,) tr W, W = Σ w (x − mean)(x − mean)ᵀ
    terms: Array  # (S,) term(count, W)
    newest: Array  # () int the cluster the last merge made (−1 before the first)
    newest_gram: Array  # (d, d) the factor it was made with, exact where its kept one is not
    cost: Array  # (S, S) merge costs (see above)
    best: Array  # (S,) int each live cluster's cheapest partner (ties: ``_last_of_ties``); stale: a guess
    best_cost: Array  # (S,) its cost (inf: merged away); stale: a lower bound of it
    stale: Array  # (S,) bool clusters whose cheapest partner merged or moved since they last looked
    merges: Array  # (S − 1, 2) int the pairs merged so far


def _initial_costs(rows, count, terms, slot, alpha):
    """(S, S) costs of merging two rows (rank-one scatter: det 0 unless d = 1), and each row's best partner."""
    d = rows.shape[1]
    others = jnp.arange(count.shape[0])
    sums = jnp.sqrt(count)[:, None] * rows

    def row(i):  # 64 rows at a time: (64, S, d) differences, not (S, S, d)
        single = (count[i] == 1.0) & (count == 1.0)
        pair_count = jnp.where(count > 0, count[i] + count, 1.0)
        v = _between(count[i], sums[i], count, sums, single)
        trace = _dot(v, v)
        # hcvvv's first scan scores two single rows by the trace alone, even when d = 1
        det_log = (
            None if d > 1 else jnp.where(single, -jnp.inf, _log_dets(v[:, :, None] ** 2, jnp.sqrt(1 / pair_count)))
        )
        costs = _terms(count[i] + count, trace, det_log, d, alpha) - (terms[i] + terms)
        return jnp.where((count[i] > 0) & (count > 0) & (others != i), costs, jnp.inf)

    cost = lax.map(row, others, batch_size=64)
    low = jnp.min(cost, axis=1)
    return cost, jnp.argmax(jnp.where(cost == low[:, None], slot, -1), axis=1), low


def _merge(step, tree: _Tree, alpha) -> _Tree:
    """Merge the cheapest pair (b into a < b), score the new cluster against all, keep every ``best`` current
    or, for a stale cluster, its ``best_cost`` a lower bound (it looks again when it reaches the minimum)."""
    (
        version,
        slot,
        at_slot,
        count,
        sums,
        kept,
        trace,
        terms,
        newest,
        newest_gram,
        cost,
        best,
        best_cost,
        stale,
        merges,
    ) = tree
    S, d = sums.shape
    live = count > 0

    def unsettled(carry):  # a stale cluster at the minimum: its bound may be its cost, or below it
        stale, _, best_cost = carry
        return jnp.any(stale & (best_cost == jnp.min(best_cost)))

    def look_again(carry):
        stale, best, best_cost = carry
        r = jnp.argmax(stale & (best_cost == jnp.min(best_cost)))
        row = jnp.where(version[r] >= version, cost[r], cost[:, r])
        partner, partner_cost = _last_of_ties(row, slot, live & (jnp.arange(S) != r))
        return stale.at[r].set(False), best.at[r].set(partner), best_cost.at[r].set(partner_cost)

    stale, best, best_cost = lax.while_loop(unsettled, look_again, (stale, best, best_cost))
    # the cheapest pair; of equal costs hcvvv's scan ends on the pair whose higher position is highest,
    # then whose lower one is
    low, high = jnp.minimum(slot, slot[best]), jnp.maximum(slot, slot[best])
    key = high.astype(jnp.int64) * S + low
    first = jnp.argmax(jnp.where(best_cost == jnp.min(best_cost), key, -1))
    pair_cost = best_cost[first]
    a, b = jnp.minimum(first, best[first]), jnp.maximum(first, best[first])
    n = count[a] + count[b]
    single = (version[a] == 0) & (version[b] == 0) & (count[a] == 1.0) & (count[b] == 1.0)
    v = _between(count[a], sums[a], count[b], sums[b], single)
    # the cluster the last merge made brings the factor it was made with, an older one the factor kept of it
    gram = jnp.where(a == newest, newest_gram, kept[a]) + jnp.where(b == newest, newest_gram, kept[b])
    gram = gram + jnp.outer(v, v)
    merged_trace = (trace[a] + trace[b]) + _dot(v, v)
    share = 1.0 / n  # hcvvv: sqrt(n_a (1 / n)), not sqrt(n_a / n)
    scaled_a, scaled_b = lax.optimization_barrier(
        (jnp.sqrt(count[a] * share) * sums[a], jnp.sqrt(count[b] * share) * sums[b])
    )
    merged_sum = scaled_a + scaled_b
    term = pair_cost + (terms[a] + terms[b])
    # positions: the merged cluster takes the pair's lower one, the cluster at the last position the higher
    mover = at_slot[jnp.sum(live) - 1]
    lower, higher = jnp.minimum(slot[a], slot[b]), jnp.maximum(slot[a], slot[b])
    slot = slot.at[mover].set(higher).at[a].set(lower)
    at_slot = at_slot.at[higher].set(mover).at[lower].set(a.astype(at_slot.dtype))
    count = count.at[a].set(n).at[b].set(0.0)
    sums, kept = sums.at[a].set(merged_sum), kept.at[a].set(_kept(gram, n))
    trace, terms = trace.at[a].set(merged_trace), terms.at[a].set(term)
    live = count > 0
    others = live & (jnp.arange(S) != a)
    # the cost of merging the new cluster with every other one: its factor with theirs as kept
    pair_count = jnp.where(live, n + count, 1.0)
    v = _between(n, merged_sum, count, sums, jnp.zeros(S, bool))
    pair_gram = gram + kept + v[:, :, None] * v[:, None, :]
    det_log = jnp.where(pair_count > d, _log_dets(pair_gram, jnp.sqrt(1.0 / pair_count)), -jnp.inf)
    pair_trace = (merged_trace + trace) + _dot(v, v)
    new = jnp.where(others, _terms(pair_count, pair_trace, det_log, d, alpha) - (term + terms), jnp.inf)
    cost, version = cost.at[a].set(new), version.at[a].set(step + 1)
    # clusters whose cheapest partner was a or b, or moved down (it may now lose a tie), are stale: their cost
    # to the new cluster lowers their bound, and they look again only when they reach the minimum (most merge
    # first); the others compare with the new cluster
    stale = others & (stale | (best == a) | (best == b) | (best == mover))
    closer = others & ~stale & ((new < best_cost) | ((new == best_cost) & (slot[a] > slot[best])))
    partner, partner_cost = _last_of_ties(new, slot, others)
    best = jnp.where(closer, a, best).at[a].set(partner)
    best_cost = jnp.where(closer, new, jnp.where(stale, jnp.minimum(best_cost, new), best_cost))
    best_cost = best_cost.at[a].set(partner_cost).at[b].set(jnp.inf)
    merges = merges.at[step].set(jnp.stack([a, b]).astype(merges.dtype))
    newest = a.astype(newest.dtype)
    return _Tree(
        version, slot, at_slot, count, sums, kept, trace, terms, newest, gram, cost, best, best_cost, stale, merges
    )


@jax.jit
def _merges(rows, count, slot, alpha, n_merges):
    """(S − 1, 2) the first ``n_merges`` of mclust's merges of the rows ``rows`` (S, d) of weight ``count``,
    at positions ``slot`` (those of positive weight first)."""
    S, d = rows.shape
    zeros = jnp.zeros_like(count)
    terms = _terms(count, zeros, None, d, alpha)
    cost, best, best_cost = _initial_costs(rows, count, terms, slot, alpha)
    tree = _Tree(
        jnp.zeros((S,), jnp.int32),
        slot,
        jnp.argsort(slot).astype(slot.dtype),
        count,
        jnp.sqrt(count)[:, None] * rows,
        jnp.zeros((S, d, d), rows.dtype),
        zeros,
        terms,
        jnp.asarray(-1, jnp.int32),
        jnp.zeros((d, d), rows.dtype),
        cost,
        best,
        best_cost,
        jnp.zeros((S,), bool),
        jnp.zeros((max(S - 1, 1), 2), jnp.int32),
    )
    return lax.fori_loop(0, n_merges, lambda step, tree: _merge(step, tree, alpha), tree).merges


def _alpha(Z: np.ndarray, weights: np.ndarray) -> float:
    """hcVVV's ``alpha = traceW(Z / sqrt(n p))`` (the scatter's trace over ``n p``, at least the machine
    epsilon), summed in mclust's order (``mcltrw``: row after row, then column after column), so
    that the costs of mirror-image pairs tie, or not, as in mclust; weighted."""
    total = weights.sum()
    x = Z / np.sqrt(total * Z.shape[1])
    scale = 1.0 / np.sqrt(total)
    centre = np.cumsum(scale * weights[:, None] * x, axis=0)[-1]  # cumsum adds in order, as daxpy does
    centred = x + -scale * centre
    trace = 0.0
    for column in (weights[:, None] * centred * centred).T:
        trace = trace + np.cumsum(column)[-1]
    return max(float(trace), np.finfo(np.float64).eps)


def merge_tree(Z: np.ndarray, weights: np.ndarray, n_clusters: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """mclust's greedy merges of the rows of ``Z``, one cluster per row to start, down to ``n_clusters``.

    Parameters
    ----------
    Z : (n, p) rows (``svd_transform``'s)
    weights : (n,) positive row weights: a row of weight ``m`` starts as a cluster of ``m``
        identical rows (mclust's rows all weigh 1; identical rows start apart, as in ``hc``)
    n_clusters : merge until this many clusters are left

    Returns
    -------
    initial : (n,) int, each row's initial cluster (its own index)
    merges : (m, 2) int, the clusters merged at each step (the second joins the first; a cluster is
        named by its first row, as mclust's ``hcPairs`` less one)

    Notes
    -----
    One compiled loop in float64 (``jax.enable_x64`` inside), compiled once per bucket of
    rows (padded with clusters of weight 0) and dimension.
    """
    Z = np.asarray(Z, np.float64)
    n = Z.shape[0]
    count = np.asarray(weights, np.float64)
    alpha = _alpha(Z, count)
    n_merges = max(int(np.count_nonzero(count > 0)) - max(n_clusters, 1), 0)
    padded = bucket_size(n)
    # positions in hcvvv's scan: the rows in order, those of weight 0 and the padding after
    order = np.concatenate([np.flatnonzero(count > 0), np.flatnonzero(count <= 0), np.arange(n, padded)])
    slot = np.empty(padded, np.int32)
    slot[order] = np.arange(padded, dtype=np.int32)
    with jax.enable_x64(True):
        merges = _merges(
            np.pad(Z, ((0, padded - n), (0, 0))),
            np.pad(count, (0, padded - n)),
            slot,
            np.float64(alpha),
            np.int32(n_merges),
        )
        return np.arange(n), np.asarray(merges)[:n_merges].astype(np.int64)


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
