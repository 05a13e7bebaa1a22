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

The merges run in one loop (float64): a merge scores the new cluster against every other one
at once (``O(S d³)`` vectorised over S) and rewrites one row of the (S, S) cost matrix, so the
tree costs ``O(S² d³)`` for ``S`` rows. The loop's functions take JAX or NumPy arrays
(``_arrays.namespace``; ``_set``, ``_while``, ``_fori``, ``_map`` and ``_barrier`` stand for
``lax``'s): small trees run in NumPy, where compiling the loop would cost seconds in a fresh
session, larger ones and small ones met again and again compiled (``lax.fori_loop``; ski rental,
``HOST_MAX_WORK``). The data's transform and the cuts are NumPy on the host.

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

from bayesgmm._arrays import bucket_size, host_cholesky, namespace
from bayesgmm._rental import Rental

# Above this many rows of positive weight the tree is built on a random subset of them (mclust's
# ``subset`` is 2000; the tree's cost grows as the square, and 1000 keeps it a fraction of a second).
MAX_ROWS = 1000
_UNROLL = 8  # dimensions up to which ``_log_dets`` writes the Cholesky factorisation out
# Ski rental (``_rental``): trees of one shape (S rows padded to their bucket, d dimensions) are merged
# in NumPy while the work done there for that shape in this process, S² d summed over its trees this
# one included, stays within this budget, then in the compiled loop; the same merges either way
# (tests/test_hierarchical.py). The budget is about one compilation's worth: the loop compiles in
# 1.1-2.2 s in a fresh session on 2 cores (about 0.5 s to trace and load from the persistent cache),
# where NumPy takes 0.4-0.7 µs per unit (Old Faithful, S² d = 1.5e5: 0.065-0.10 s; wine, 178 x 13:
# 0.31 s; 1000 x 5: 1.4 s) and the compiled loop several times less (Old Faithful 0.008-0.014 s,
# 1000 x 5 0.27 s). So a tree over 2e6 compiles at once, and Old Faithful's is merged in NumPy
# 13 times in a session, then compiled.
HOST_MAX_WORK = 2_000_000
tree_rental = Rental()  # (bucket of rows, d) -> NumPy work done in this process


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


def _barrier(values):
    """``lax.optimization_barrier`` inside a compiled program; NumPy arrays as they are (NumPy fuses nothing)."""
    return values if namespace(*jax.tree.leaves(values)) is np else lax.optimization_barrier(values)


def _set(array, index, value):
    """``array`` with ``array[index] = value``: a NumPy array in place (the loop owns its state), a JAX one as
    ``.at[index].set``."""
    if isinstance(array, np.ndarray):
        array[index] = value
        return array
    return array.at[index].set(value)


def _while(condition, body, carry):
    """``lax.while_loop``, or a Python loop on NumPy arrays."""
    if namespace(*jax.tree.leaves(carry)) is not np:
        return lax.while_loop(condition, body, carry)
    while condition(carry):
        carry = body(carry)
    return carry


def _fori(lower: int, upper, body, carry):
    """``lax.fori_loop``, or a Python loop on NumPy arrays."""
    if namespace(*jax.tree.leaves(carry)) is not np:
        return lax.fori_loop(lower, upper, body, carry)
    for step in range(lower, int(upper)):
        carry = body(step, carry)
    return carry


def _map(function, values, batch_size: int):
    """``lax.map`` over the leading axis, or a Python loop on NumPy arrays."""
    if namespace(values) is not np:
        return lax.map(function, values, batch_size=batch_size)
    return np.stack([function(value) for value in values])


def _terms(count, trace, det_log, d: int, alpha):
    """``term(l, W)`` as hcvvv's ``vvvtij`` computes it, elementwise; 0 where ``l = 0``.

    ``det_log`` is ``log det(G / l)`` (−inf where a pivot is zero; None: every ``G`` singular).
    """
    xp = namespace(count, trace)
    safe = xp.where(count > 0, count, 1.0)
    share = (trace + alpha) / safe
    base = xp.log(share)
    if det_log is None:
        with_det = base
    else:
        # vvvtij's log(det + share), written so that neither exponential overflows
        small = xp.log(xp.exp(xp.minimum(det_log, 0.0)) + share)
        large = xp.log(1.0 + xp.exp(-xp.maximum(det_log, 0.0)) * share) + det_log
        with_det = xp.where(xp.isfinite(det_log), xp.where(det_log <= 0, small, large), base)
    return xp.where(count > 0, count * xp.where(count > d, with_det, base), 0.0)


def _dot(u, v):
    """Σ_k u_k v_k over the last axis in the order k = 1 .. d, each product rounded, as BLAS ``ddot`` adds.

    Mirror-image pairs (``v`` and ``−v`` up to rounding) then tie, or not, as in mclust. The barrier
    keeps XLA from fusing a product and a sum into one FMA, which rounds once.
    """
    products = _barrier(u * v)
    total = products[..., 0]
    for k in range(1, u.shape[-1]):
        total = total + products[..., k]
    return total


def _between(count_a, sums_a, count_b, sums_b, single):
    """hcvvv's ``v`` for merging clusters a and b (up to its sign): ``sqrt(n_a n_b / n) (mean_a − mean_b)``
    from the scaled sums ``x = sum / sqrt(n)`` it keeps, ``x_b sqrt(n_a / n) − x_a sqrt(n_b / n)``, and
    ``(x_a − x_b) sqrt(1/2)`` for two single rows (``single``); broadcasts over leading axes."""
    xp = namespace(count_a, count_b, sums_a, sums_b)
    share = 1.0 / (count_a + count_b)
    first, second = _barrier(
        (xp.sqrt(count_a * share)[..., None] * sums_b, xp.sqrt(count_b * share)[..., None] * sums_a)
    )
    general = first - second
    return xp.where(single[..., None], (sums_a - sums_b) * xp.sqrt(0.5), general)


def _log_dets(W, scale):
    """(m,) ``2 Σ_k log(scale R_kk)`` of (m, d, d) positive semi-definite ``W = RᵀR`` (Cholesky), hcvvv's
    ``det2mc``: ``log det(scale² W)``; −inf when singular.

    Up to ``_UNROLL`` dimensions the factorisation is written out over the batch (elementwise
    vector operations, which XLA fuses); above, ``linalg.cholesky``.
    """
    d = W.shape[-1]
    xp = namespace(W, scale)
    if d > _UNROLL:
        factor = host_cholesky(W) if xp is np else jnp.linalg.cholesky(W)
        roots = xp.abs(xp.diagonal(factor, axis1=-2, axis2=-1) * scale[..., None])
        log_det = 2.0 * xp.sum(xp.log(roots), axis=-1)
        return xp.where(xp.isfinite(log_det), log_det, -xp.inf)
    factor = [[None] * d for _ in range(d)]
    half_log_det = xp.zeros(W.shape[:-2], W.dtype)
    positive = xp.ones(W.shape[:-2], bool)
    for j in range(d):
        pivot = W[..., j, j] - sum((factor[j][i] ** 2 for i in range(j)), xp.zeros_like(half_log_det))
        positive = positive & (pivot > 0)
        root = xp.sqrt(xp.where(pivot > 0, pivot, 1.0))
        half_log_det = half_log_det + xp.log(root * scale)
        factor[j][j] = root
        for row in range(j + 1, d):
            below = W[..., row, j] - sum((factor[row][i] * factor[j][i] for i in range(j)), xp.zeros_like(root))
            factor[row][j] = below / root
    return xp.where(positive, 2.0 * half_log_det, -xp.inf)


def _kept(gram, count):
    """(d, d) the factor ``hcvvv`` keeps of a cluster of weight ``count`` made with factor ``gram``.

    After a merge it copies the first row of the cluster's triangular factor into each of the
    ``min(count − 1, d)`` rows it keeps (``call dcopy(p, r(1,1), p, x(l,1), n)``), and reads row
    ``k`` back from column ``k`` on: ``(r rᵀ) ∘ min(i, j, count − 1)`` with ``r = G₀ / sqrt(G₀₀)``,
    exact for a pair (one row) and for ``d = 1``. (A zero first column keeps nothing here.)
    """
    d = gram.shape[-1]
    xp = namespace(gram, count)
    top = gram[0, 0]
    first = xp.where(top > 0, gram[0] / xp.sqrt(xp.where(top > 0, top, 1.0)), 0.0)
    index = xp.arange(1, d + 1, dtype=gram.dtype)
    rows = xp.clip(count - 1.0, 0.0, d)
    return xp.outer(first, first) * xp.minimum(xp.minimum(index[:, None], index), rows)


def _last_of_ties(row, slot, valid):
    """A row's cheapest partner and its cost; of equal costs, the one at the highest position
    (``hcvvv`` keeps the last minimum of its scan, ``dij .le. dopt``)."""
    xp = namespace(row, slot)
    row = xp.where(valid, row, xp.inf)
    low = xp.min(row)
    return xp.argmax(xp.where(row == low, slot, -1)), low


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
    xp = namespace(rows, count)
    others = xp.arange(count.shape[0])
    sums = xp.sqrt(count)[:, None] * rows

    def row(i):  # 64 rows at a time: (64, S, d) differences, not (S, S, d)
        single = (count[i] == 1.0) & (count == 1.0)
        pair_count = xp.where(count > 0, count[i] + count, 1.0)
        v = _between(count[i], sums[i], count, sums, single)
        trace = _dot(v, v)
        # hcvvv's first scan scores two single rows by the trace alone, even when d = 1
        det_log = None if d > 1 else xp.where(single, -xp.inf, _log_dets(v[:, :, None] ** 2, xp.sqrt(1 / pair_count)))
        costs = _terms(count[i] + count, trace, det_log, d, alpha) - (terms[i] + terms)
        return xp.where((count[i] > 0) & (count > 0) & (others != i), costs, xp.inf)

    cost = _map(row, others, 64)
    low = xp.min(cost, axis=1)
    return cost, xp.argmax(xp.where(cost == low[:, None], slot, -1), axis=1), low


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
    xp = namespace(sums, count)
    live = count > 0

    def unsettled(carry):  # a stale cluster at the minimum: its bound may be its cost, or below it
        stale, _, best_cost = carry
        return xp.any(stale & (best_cost == xp.min(best_cost)))

    def look_again(carry):
        stale, best, best_cost = carry
        r = xp.argmax(stale & (best_cost == xp.min(best_cost)))
        row = xp.where(version[r] >= version, cost[r], cost[:, r])
        partner, partner_cost = _last_of_ties(row, slot, live & (xp.arange(S) != r))
        return _set(stale, r, False), _set(best, r, partner), _set(best_cost, r, partner_cost)

    stale, best, best_cost = _while(unsettled, look_again, (stale, best, best_cost))
    # the cheapest pair; of equal costs hcvvv's scan ends on the pair whose higher position is highest,
    # then whose lower one is
    low, high = xp.minimum(slot, slot[best]), xp.maximum(slot, slot[best])
    key = high.astype(xp.int64) * S + low
    first = xp.argmax(xp.where(best_cost == xp.min(best_cost), key, -1))
    pair_cost = best_cost[first]
    a, b = xp.minimum(first, best[first]), xp.maximum(first, best[first])
    n = count[a] + count[b]
    single = (version[a] == 0) & (version[b] == 0) & (count[a] == 1.0) & (count[b] == 1.0)
    v = _between(count[a], sums[a], count[b], sums[b], single)
    # the cluster the last merge made brings the factor it was made with, an older one the factor kept of it
    gram = xp.where(a == newest, newest_gram, kept[a]) + xp.where(b == newest, newest_gram, kept[b])
    gram = gram + xp.outer(v, v)
    merged_trace = (trace[a] + trace[b]) + _dot(v, v)
    share = 1.0 / n  # hcvvv: sqrt(n_a (1 / n)), not sqrt(n_a / n)
    scaled_a, scaled_b = _barrier((xp.sqrt(count[a] * share) * sums[a], xp.sqrt(count[b] * share) * sums[b]))
    merged_sum = scaled_a + scaled_b
    term = pair_cost + (terms[a] + terms[b])
    # positions: the merged cluster takes the pair's lower one, the cluster at the last position the higher
    mover = at_slot[xp.sum(live) - 1]
    lower, higher = xp.minimum(slot[a], slot[b]), xp.maximum(slot[a], slot[b])
    slot = _set(_set(slot, mover, higher), a, lower)
    at_slot = _set(_set(at_slot, higher, mover), lower, a.astype(at_slot.dtype))
    count = _set(_set(count, a, n), b, 0.0)
    sums, kept = _set(sums, a, merged_sum), _set(kept, a, _kept(gram, n))
    trace, terms = _set(trace, a, merged_trace), _set(terms, a, term)
    live = count > 0
    others = live & (xp.arange(S) != a)
    # the cost of merging the new cluster with every other one: its factor with theirs as kept
    pair_count = xp.where(live, n + count, 1.0)
    v = _between(n, merged_sum, count, sums, xp.zeros(S, bool))
    pair_gram = gram + kept + v[:, :, None] * v[:, None, :]
    det_log = xp.where(pair_count > d, _log_dets(pair_gram, xp.sqrt(1.0 / pair_count)), -xp.inf)
    pair_trace = (merged_trace + trace) + _dot(v, v)
    new = xp.where(others, _terms(pair_count, pair_trace, det_log, d, alpha) - (term + terms), xp.inf)
    cost, version = _set(cost, a, new), _set(version, a, step + 1)
    # clusters whose cheapest partner was a or b, or moved down (it may now lose a tie), are stale: their cost
    # to the new cluster lowers their bound, and they look again only when they reach the minimum (most merge
    # first); the others compare with the new cluster
    stale = others & (stale | (best == a) | (best == b) | (best == mover))
    closer = others & ~stale & ((new < best_cost) | ((new == best_cost) & (slot[a] > slot[best])))
    partner, partner_cost = _last_of_ties(new, slot, others)
    best = _set(xp.where(closer, a, best), a, partner)
    best_cost = xp.where(closer, new, xp.where(stale, xp.minimum(best_cost, new), best_cost))
    best_cost = _set(_set(best_cost, a, partner_cost), b, xp.inf)
    merges = _set(merges, step, xp.stack([a, b]).astype(merges.dtype))
    newest = a.astype(newest.dtype)
    return _Tree(
        version, slot, at_slot, count, sums, kept, trace, terms, newest, gram, cost, best, best_cost, stale, merges
    )


def _merge_loop(rows, count, slot, alpha, n_merges):
    """(S − 1, 2) the first ``n_merges`` of mclust's merges of the rows ``rows`` (S, d) of weight ``count``,
    at positions ``slot`` (those of positive weight first)."""
    S, d = rows.shape
    xp = namespace(rows, count)
    zeros = xp.zeros_like(count)
    terms = _terms(count, zeros, None, d, alpha)
    cost, best, best_cost = _initial_costs(rows, count, terms, slot, alpha)
    tree = _Tree(
        xp.zeros((S,), xp.int32),
        slot,
        xp.argsort(slot).astype(slot.dtype),
        count,
        xp.sqrt(count)[:, None] * rows,
        xp.zeros((S, d, d), rows.dtype),
        zeros,
        terms,
        xp.asarray(-1, xp.int32),
        xp.zeros((d, d), rows.dtype),
        cost,
        best,
        best_cost,
        xp.zeros((S,), bool),
        xp.zeros((max(S - 1, 1), 2), xp.int32),
    )
    return _fori(0, n_merges, lambda step, tree: _merge(step, tree, alpha), tree).merges


_merges = jax.jit(_merge_loop)


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


def merge_tree(
    Z: np.ndarray, weights: np.ndarray, n_clusters: int = 1, *, on_host: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
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

    on_host : run the loop in NumPy (True) or compiled (False); by default NumPy for small trees
        until their shape has done about a compilation's worth of work in NumPy (``HOST_MAX_WORK``)

    Notes
    -----
    The same loop (``_merge_loop``) in float64 either way: compiled (``jax.enable_x64`` inside),
    once per bucket of rows (padded with clusters of weight 0) and dimension, or on NumPy arrays,
    where it compiles nothing.
    """
    Z = np.asarray(Z, np.float64)
    n = Z.shape[0]
    count = np.asarray(weights, np.float64)
    alpha = _alpha(Z, count)
    n_merges = max(int(np.count_nonzero(count > 0)) - max(n_clusters, 1), 0)
    if on_host is None:
        on_host = tree_rental.on_host((bucket_size(n), Z.shape[1]), n * n * Z.shape[1], HOST_MAX_WORK)
    padded = n if on_host else bucket_size(n)
    # positions in hcvvv's scan: the rows in order, those of weight 0 and the padding after
    order = np.concatenate([np.flatnonzero(count > 0), np.flatnonzero(count <= 0), np.arange(n, padded)])
    slot = np.empty(padded, np.int32)
    slot[order] = np.arange(padded, dtype=np.int32)
    rows, count = np.pad(Z, ((0, padded - n), (0, 0))), np.pad(count, (0, padded - n))
    if on_host:
        with np.errstate(all="ignore"):  # −inf log-determinants of singular factors, as in the compiled loop
            merges = _merge_loop(rows, count, slot, np.float64(alpha), n_merges)
    else:
        with jax.enable_x64(True):
            merges = np.asarray(_merges(rows, count, slot, np.float64(alpha), np.int32(n_merges)))
    return np.arange(n), merges[:n_merges].astype(np.int64)


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
