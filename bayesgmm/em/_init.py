"""Initialisation of EM: the table ``INIT_METHODS`` (k-means, k-means++, random, data points, hierarchical).

Each method is one ``InitMethod`` record, used by both drivers (in memory and streamed):
its host random draws, how its starting rows are chosen (in the program, or on the host
block by block for streamed rows), whether Lloyd's iterations refine them, and the
``InitialAssignment`` it builds: a function giving the initial responsibilities of a chunk
of rows, and the shift about which the first statistics are accumulated. ``_kernels`` turns
those into parameters with one M-step, exactly as scikit-learn's
``GaussianMixture._initialize`` does.

The "hierarchical" start is deterministic and made from the data on the host
(``hierarchical_draws``: mclust's model-based merge tree, ``_hierarchical``, cut at each
``k``): its draws are the labelled rows themselves, and its first statistics are those of
these rows only (all rows up to ``_hierarchical.MAX_ROWS``, a random subset above: mclust's
M-step on the subset).

Pure functions: the drivers jit and vmap them over restarts. The streamed variants take any
object with ``HostRows``' interface (``blocks``, ``rows``, ``reduce``, ``weights``, ...).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.cluster.vq
from jax import Array, lax

from bayesgmm._arrays import namespace
from bayesgmm.chunks import Rows, accumulate
from bayesgmm.em._hierarchical import MAX_ROWS, hierarchical_partitions

_MAX_TRIALS = 8  # k-means++ candidates drawn per center (more for k > 403); 2 + floor(log k) are used


class InitialAssignment(NamedTuple):
    """How to start EM.

    responsibilities : (x (c, d), row_ids (c,), chunk_index ()) -> (k, c)
    shift : (k, d) means about which the initial statistics are accumulated.
    rows : Rows whose statistics start EM instead of the data's (the "hierarchical" start's
        labelled rows), or None.
    """

    responsibilities: Callable[[Array, Array, Array], Array]
    shift: Array
    rows: Rows | None = None


class LabelledRows(NamedTuple):
    """The "hierarchical" start's draws for one fit: rows, each in one initial cluster."""

    rows: Array  # (S, d) rows of positive weight (all, or a random subset), on the rescaled scale
    weights: Array  # (S,) their weights
    labels: Array  # (S,) int cluster of each row, in 0 .. k − 1 for a fit with k components
    means: Array  # (k_max, d) each cluster's weighted mean (0 for unused components)


def _squared_distances(x: Array, centers: Array) -> Array:
    """(k, c) squared Euclidean distances by direct differences (no cancellation)."""
    diff = x[None, :, :] - centers[:, None, :]
    return namespace(x, centers).sum(diff * diff, axis=-1)


def _n_local_trials(n_centers) -> Array:
    """scikit-learn's number of k-means++ candidates per center, ``2 + floor(log k)``."""
    return 2 + jnp.floor(jnp.log(n_centers)).astype(jnp.int32)


def kmeans_plusplus(draws: Array, X: Array, weights: Array, k: int, n_active=None) -> Array:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; scikit-learn's variant).

    The first center is a row drawn with probability proportional to its weight; each
    next one is the best (lowest potential) of ``2 + floor(log k)`` candidates drawn with
    probability proportional to ``w_i D(x_i)²``.

    Parameters
    ----------
    draws : (k, T) uniforms on [0, 1): row ``i`` draws the candidates for center ``i``
        (``init_draws``; the first center uses ``draws[0, 0]``)
    X : (n, d) rows
    weights : (n,) row weights; zero for padding rows, which are never chosen.
    k : number of centers (static)
    n_active : int array (), optional
        Seed only the first ``n_active <= k`` centers (the rest repeat the first); with the
        same draws, the first ``n_active`` equal those of a run with ``k = n_active``. Used
        to batch fits with different numbers of components.

    Returns
    -------
    indices : (k,) int rows of ``X`` chosen as centers.

    References
    ----------
    D. Arthur and S. Vassilvitskii, "k-means++: the advantages of careful seeding", SODA 2007.
    """
    n_active = jnp.asarray(k if n_active is None else n_active)
    n_trials = _n_local_trials(n_active)
    draws = draws.astype(X.dtype)
    trials = jnp.arange(draws.shape[1])

    def add_center(i, carry):
        indices, closest = carry  # closest: w_i D(x_i)² (the weights before the first center)
        cumulative = jnp.cumsum(closest)
        candidates = jnp.clip(jnp.searchsorted(cumulative, draws[i] * cumulative[-1]), 0, X.shape[0] - 1)
        distances = _squared_distances(X, X[candidates]) * weights  # (T, n)
        candidate_closest = jnp.where(i == 0, distances, jnp.minimum(closest, distances))
        usable = jnp.where(i == 0, trials < 1, trials < n_trials)  # the first center is one plain draw
        best = jnp.argmin(jnp.where(usable, jnp.sum(candidate_closest, axis=-1), jnp.inf))
        chosen = i < n_active
        indices = indices.at[i].set(jnp.where(chosen, candidates[best], indices[0]).astype(indices.dtype))
        return indices, jnp.where(chosen, candidate_closest[best], closest)

    indices = jnp.zeros((k,), dtype=jnp.int32)
    indices, _ = lax.fori_loop(0, k, add_center, (indices, weights.astype(X.dtype)))
    return indices


def nearest(x: Array, centers: Array, active: Array) -> Array:
    """(c,) index of the nearest active center of each row."""
    xp = namespace(x, centers, active)
    return xp.argmin(xp.where(active[:, None], _squared_distances(x, centers), xp.inf), axis=0)


def _one_hot(labels: Array, k: int, dtype) -> Array:
    """(k, c) indicator of each row's label (``jax.nn.one_hot(labels, k, axis=0)``, NumPy or JAX)."""
    xp = namespace(labels)
    return (labels[None, :] == xp.arange(k)[:, None]).astype(dtype)


def lloyd(rows: Rows, centers: Array, active: Array, *, max_iter: int = 300, tol: float = 1e-4) -> Array:
    """Lloyd's k-means iterations over weighted, chunked rows.

    Stops when the total squared center shift is at most ``tol`` times the mean
    feature variance (scikit-learn's rule) or after ``max_iter`` iterations.
    Empty clusters keep their center.

    Parameters
    ----------
    rows : Rows (chunks and row weights)
    centers : (k, d) starting centers
    active : (k,) bool; inactive centers are never assigned rows

    Returns
    -------
    centers : (k, d)
    """
    k = centers.shape[0]
    X, weights = rows.flat()
    total = jnp.sum(weights)
    mean = weights @ X / total
    variance = weights @ (X - mean) ** 2 / total
    threshold = tol * jnp.mean(variance)

    def sums_and_counts(centers):
        def per_chunk(x, w, row_ids, chunk_index):
            one_hot = jax.nn.one_hot(nearest(x, centers, active), k, axis=0, dtype=x.dtype) * w
            return one_hot @ x, jnp.sum(one_hot, axis=1)

        return accumulate(rows, per_chunk)

    def body(state):
        i, centers, _ = state
        sums, counts = sums_and_counts(centers)
        new = jnp.where(counts[:, None] > 0, sums / jnp.where(counts > 0, counts, 1)[:, None], centers)
        return i + 1, new, jnp.sum((new - centers) ** 2)

    def cond(state):
        i, _, shift = state
        return (i < max_iter) & (shift > threshold)

    _, centers, _ = lax.while_loop(cond, body, (0, centers, jnp.asarray(jnp.inf, centers.dtype)))
    return centers


def from_centers(centers: Array, active: Array) -> InitialAssignment:
    """Hard assignments of every row to its nearest active center (the "kmeans" start)."""
    k = centers.shape[0]

    def responsibilities(x, row_ids, chunk_index):
        return _one_hot(nearest(x, centers, active), k, x.dtype)

    return InitialAssignment(responsibilities, centers)


def from_rows(indices: Array, rows_at_indices: Array, active: Array) -> InitialAssignment:
    """Component ``j`` holds row ``indices[j]`` alone ("k-means++", "random_from_data")."""

    def responsibilities(x, row_ids, chunk_index):
        return ((indices[:, None] == row_ids[None, :]) & active[:, None]).astype(x.dtype)

    return InitialAssignment(responsibilities, rows_at_indices)


def from_random(seed: Array, active: Array, shift: Array) -> InitialAssignment:
    """Responsibilities uniform on [0, 1), normalised per row; chunk ``i`` draws from ``fold_in(key, i)``.

    ``shift`` (k, d): the point about which the first statistics are accumulated (the origin).
    """
    key = jax.random.key(seed)
    k = active.shape[0]

    def responsibilities(x, row_ids, chunk_index):
        uniform = jax.random.uniform(jax.random.fold_in(key, chunk_index), (k, x.shape[0]), dtype=x.dtype)
        uniform = uniform * active[:, None]
        return uniform / jnp.sum(uniform, axis=0, keepdims=True)

    return InitialAssignment(responsibilities, shift)


def from_labels(draws: LabelledRows, active: Array) -> InitialAssignment:
    """Each labelled row in its cluster; the statistics are those of the labelled rows alone."""
    k = active.shape[0]

    def responsibilities(x, row_ids, chunk_index):
        return _one_hot(draws.labels[row_ids], k, x.dtype) * active[:, None]

    rows = Rows(draws.rows[None], draws.weights[None].astype(draws.rows.dtype))
    return InitialAssignment(responsibilities, draws.means, rows)


def rows_of_ranks(ranks: Array, weights: Array) -> Array:
    """Indices of the rows of the given ranks (0-based) among the rows of positive weight."""
    return jnp.searchsorted(jnp.cumsum(weights > 0), ranks + 1).astype(jnp.int32)


# ----------------------------------------------------------------------------- host draws


def _uniform_trials(stream: np.random.Generator, k: int, n_positive: int) -> np.ndarray:
    """(k, T) uniforms on [0, 1): the k-means++ candidates of every center."""
    return stream.random((k, max(_MAX_TRIALS, 2 + int(math.log(k)))))


def _distinct_ranks(stream: np.random.Generator, k: int, n_positive: int) -> np.ndarray:
    """(k,) int ranks of distinct rows among those of positive weight."""
    return stream.permutation(n_positive)[:k].astype(np.int32)


def _uint32_seed(stream: np.random.Generator, k: int, n_positive: int) -> np.ndarray:
    """() uint32 seed of the responsibilities drawn in the program."""
    return np.asarray(stream.integers(0, 2**32, dtype=np.uint32))


# ----------------------------------------------------------------------------- starting rows in the program


def _kmeans_plusplus_rows(draws: Array, X: Array, weights: Array, k: int, n_active) -> Array:
    return kmeans_plusplus(draws, X, weights, k, n_active)


def _rows_of_draws(draws: Array, X: Array, weights: Array, k: int, n_active) -> Array:
    return rows_of_ranks(draws, weights)


def _no_rows(draws: Array, X: Array, weights: Array, k: int, n_active) -> Array:
    return jnp.zeros((k,), jnp.int32)


# ----------------------------------------------------------------------------- starting rows on the host (streamed)


def _candidate_distances(rows: Rows, candidates, closest_block, first):
    """(R, T, rows) ``w D²`` to each candidate, min with ``closest`` unless it is the first center.

    NumPy rows (the NumPy driver) are computed on the host; device rows by a compiled program.
    """
    if namespace(rows.chunks) is np:
        return _candidate_distances_of(rows, candidates, closest_block, first)
    return _compiled_candidate_distances(rows, candidates, closest_block, first)


def _candidate_distances_of(rows: Rows, candidates, closest_block, first):
    xp = namespace(rows.chunks, candidates)
    x, w = rows.flat()
    distances = xp.sum((x[None, None, :, :] - candidates[:, :, None, :]) ** 2, axis=-1) * w
    return xp.where(first, distances, xp.minimum(closest_block[:, None, :], distances))


_compiled_candidate_distances = jax.jit(_candidate_distances_of)


def _kmeans_plusplus_host_rows(host, draws: np.ndarray, k: int, n_active: int) -> np.ndarray:
    """``kmeans_plusplus`` for every restart at once over streamed rows: (R, k) row indices.

    The ``w D²`` sums (R, n) stay on the host in float64; each center takes two passes.
    """
    restarts, _, n_trials_max = draws.shape
    n_rows = host.n_blocks * host.block_rows  # padded with rows of weight 0, which are never drawn
    weights = np.zeros(n_rows)
    weights[: host.n_samples] = host.weights
    closest = np.broadcast_to(weights, (restarts, n_rows)).copy()
    indices = np.zeros((restarts, k), np.int64)
    n_trials = 2 + int(np.floor(np.log(n_active)))
    for i in range(min(k, n_active)):
        cumulative = np.cumsum(closest, axis=1)
        targets = draws[:, i, :] * cumulative[:, -1:]
        candidates = np.stack([np.searchsorted(c, t) for c, t in zip(cumulative, targets)])
        candidates = np.clip(candidates, 0, n_rows - 1)
        candidate_rows = np.asarray(host.rows(candidates), host.dtype)
        potentials = np.zeros((restarts, n_trials_max))
        for start, block in host.blocks():
            part = _candidate_distances(block, candidate_rows, closest[:, start : start + host.block_rows], i == 0)
            potentials += np.asarray(namespace(part).sum(part, axis=-1), np.float64)
        usable = np.arange(n_trials_max) < (1 if i == 0 else n_trials)
        best = np.argmin(np.where(usable, potentials, np.inf), axis=1)
        indices[:, i] = candidates[np.arange(restarts), best]
        chosen = candidate_rows[np.arange(restarts), best][:, None, :]
        for start, block in host.blocks():
            part = _candidate_distances(block, chosen, closest[:, start : start + host.block_rows], i == 0)
            closest[:, start : start + host.block_rows] = np.asarray(part[:, 0], np.float64)
    indices[:, n_active:] = indices[:, :1]
    return indices


def _host_rows_of_draws(host, draws: np.ndarray, k: int, n_active: int) -> np.ndarray:
    return np.flatnonzero(host.weights > 0)[np.asarray(draws)]


def _no_host_rows(host, draws, k: int, n_active: int) -> np.ndarray:
    return np.zeros((n_restarts(draws), k), np.int64)


def _lloyd_sums(rows: Rows, *, centers, active, k):
    """(R, k, d) sums and (R, k) counts of the rows nearest each center, per restart."""
    if namespace(rows.chunks) is np:
        return _lloyd_sums_of(rows, centers=centers, active=active, k=k)
    return _compiled_lloyd_sums(rows, centers=centers, active=active, k=k)


@functools.partial(jax.jit, static_argnames="k")
def _compiled_lloyd_sums(rows: Rows, *, centers, active, k):
    def per_chunk(centers, x, w):
        one_hot = jax.nn.one_hot(nearest(x, centers, active), k, axis=0, dtype=x.dtype) * w
        return one_hot @ x, jnp.sum(one_hot, axis=1)

    return jax.vmap(lambda c: accumulate(rows, lambda x, w, row_ids, index: per_chunk(c, x, w)))(centers)


def _lloyd_sums_of(rows: Rows, *, centers, active, k):
    """``_lloyd_sums`` of NumPy rows, on the host: per restart the sums and counts of each cluster."""
    x, w = rows.flat()
    one_hot = np.stack([_one_hot(nearest(x, center, np.asarray(active)), k, x.dtype) * w for center in centers])
    return one_hot @ x, np.sum(one_hot, axis=-1)


def lloyd_host(host, centers: np.ndarray, active, *, max_iter: int = 300, tol: float = 1e-4) -> np.ndarray:
    """``lloyd`` for every restart at once over streamed rows, one pass per iteration; (R, k, d) centers."""
    k = centers.shape[1]
    threshold = tol * float(np.mean(np.diag(host.covariance)))
    done = np.zeros(centers.shape[0], bool)
    for _ in range(max_iter):
        current = np.asarray(centers, host.dtype)
        sums, counts = host.reduce(functools.partial(_lloyd_sums, centers=current, active=active, k=k))
        sums, counts = np.asarray(sums, np.float64), np.asarray(counts, np.float64)
        new = np.where(counts[..., None] > 0, sums / np.where(counts > 0, counts, 1)[..., None], centers)
        shift = np.sum((new - centers) ** 2, axis=(1, 2))
        centers = np.where(done[:, None, None], centers, new)
        done |= shift <= threshold
        if done.all():
            break
    return centers


# ----------------------------------------------------------------------------- assignments


def _nearest_center(shift: Array, indices: Array, draws: Array, active: Array) -> InitialAssignment:
    return from_centers(shift, active)


def _one_row_each(shift: Array, indices: Array, draws: Array, active: Array) -> InitialAssignment:
    return from_rows(indices, shift, active)


def _random_responsibilities(shift: Array, indices: Array, draws: Array, active: Array) -> InitialAssignment:
    return from_random(draws, active, shift)


def _labelled_clusters(shift: Array, indices: Array, draws: LabelledRows, active: Array) -> InitialAssignment:
    return from_labels(draws, active)


def _from_the_data(stream: np.random.Generator, k: int, n_positive: int):
    raise ValueError("The hierarchical start is built from the data (hierarchical_draws), not drawn.")


class InitMethod(NamedTuple):
    """One initialisation method, for both drivers.

    draw : (stream np.random.Generator, k, n_positive) -> one restart's host draws
    seed_rows : (draws, X (n, d), weights (n,), k, n_active) -> (k,) int starting rows, in the program
    seed_host_rows : (host, draws (R, ...), k, n_active) -> (R, k) int starting rows of streamed rows
    from_rows : bool, the start is made of the starting rows (False: about the origin, no rows)
    refine : bool, Lloyd's iterations move the starting rows (``lloyd`` / ``lloyd_host``)
    assignment : (shift (k, d), indices (k,), draws, active (k,)) -> InitialAssignment
    deterministic : bool, the draws are ``hierarchical_draws`` of the data (one restart), not ``draw``'s
    """

    draw: Callable
    seed_rows: Callable
    seed_host_rows: Callable
    from_rows: bool
    refine: bool
    assignment: Callable
    deterministic: bool = False


_KMEANS_PLUSPLUS_SEEDS = dict(
    draw=_uniform_trials, seed_rows=_kmeans_plusplus_rows, seed_host_rows=_kmeans_plusplus_host_rows, from_rows=True
)

_NO_STARTING_ROWS = dict(seed_rows=_no_rows, seed_host_rows=_no_host_rows, from_rows=False, refine=False)

INIT_METHODS: dict[str, InitMethod] = {
    # k-means++ seeding then Lloyd iterations; hard assignments to the nearest center
    "kmeans": InitMethod(**_KMEANS_PLUSPLUS_SEEDS, refine=True, assignment=_nearest_center),
    # k-means++ seeds; one point per component (covariance = reg_covar)
    "k-means++": InitMethod(**_KMEANS_PLUSPLUS_SEEDS, refine=False, assignment=_one_row_each),
    # responsibilities uniform on [0, 1), normalised per row
    "random": InitMethod(**_NO_STARTING_ROWS, draw=_uint32_seed, assignment=_random_responsibilities),
    # k distinct rows of positive weight; one point per component
    "random_from_data": InitMethod(
        draw=_distinct_ranks,
        seed_rows=_rows_of_draws,
        seed_host_rows=_host_rows_of_draws,
        from_rows=True,
        refine=False,
        assignment=_one_row_each,
    ),
    # mclust's model-based hierarchical clustering (VVV, SVD transform), cut at k; one restart
    "hierarchical": InitMethod(
        **_NO_STARTING_ROWS, draw=_from_the_data, assignment=_labelled_clusters, deterministic=True
    ),
}


def seed_sequence(seed) -> np.random.SeedSequence:
    """The host random streams' root for ``seed``, an int or a JAX PRNG key (its bits)."""
    if not isinstance(seed, (int, np.integer)):  # a JAX key
        seed = [int(word) for word in np.asarray(jax.random.key_data(seed)).ravel()]
    return np.random.SeedSequence(seed)


def n_restarts(draws) -> int:
    """The number of restarts of one fit's draws (an array or ``LabelledRows`` with a leading restart axis)."""
    return jax.tree.leaves(draws)[0].shape[0]


def restart(draws, index: int):
    """One restart's draws."""
    return jax.tree.map(lambda leaf: leaf[index], draws)


def init_draws(seed, n_init: int, k: int, method: str, n_positive: int) -> np.ndarray:
    """The random numbers every restart's initialisation needs, drawn on the host: (n_init, ...).

    Drawing them with NumPy (one independent stream per restart, from
    ``SeedSequence(seed).spawn``) keeps the random-number generator out of the compiled
    program, where each call site costs about half a second of XLA compilation; and each
    restart's draws do not depend on ``n_init``, nor their first rows on ``k``.

    ``seed`` is an int or a JAX PRNG key (its bits seed the streams). Per restart:
    kmeans, k-means++: (k, T) uniforms; random_from_data: (k,) int ranks of distinct rows
    among those of positive weight (so the rows drawn do not depend on padding or on how
    rows are laid out on devices); random: a uint32 seed.
    """
    streams = [np.random.default_rng(child) for child in seed_sequence(seed).spawn(n_init)]
    draw = INIT_METHODS[method].draw
    return np.stack([draw(stream, k, n_positive) for stream in streams])


def initial_assignment(method: str, draws: Array, rows: Rows, k: int, active: Array) -> InitialAssignment:
    """Initial responsibilities for EM in the program by ``method`` (see ``INIT_METHODS``).

    ``draws`` are one restart's ``init_draws``. Only the ``active`` components (a (k,)
    bool mask, a prefix) get rows.
    """
    entry = INIT_METHODS[method]
    flat, flat_weights = rows.flat()
    indices = entry.seed_rows(draws, flat, flat_weights, k, jnp.sum(active))
    shift = flat[indices] if entry.from_rows else jnp.zeros((k, rows.n_features), flat.dtype)
    if entry.refine:
        shift = lloyd(rows, shift, active)
    return entry.assignment(shift, indices, draws, active)


def subset_rows(seed, weights: np.ndarray) -> np.ndarray:
    """Indices of the rows the hierarchical start clusters: those of positive weight, at most ``MAX_ROWS``.

    Above ``MAX_ROWS`` a random subset (mclust's ``subset``), drawn from ``seed``; sorted.
    """
    positive = np.flatnonzero(weights > 0)
    if positive.size <= MAX_ROWS:
        return positive
    stream = np.random.default_rng(seed_sequence(seed).spawn(1)[0])
    return np.sort(stream.choice(positive, MAX_ROWS, replace=False))


def hierarchical_draws(rows: np.ndarray, weights: np.ndarray, ks, k_max: int, dtype) -> LabelledRows:
    """The "hierarchical" start of every fit: (groups, 1, ...) ``LabelledRows``, the tree cut at each ``k``.

    ``rows`` (S, d) and ``weights`` (S,) are ``subset_rows``' rows on the rescaled scale, NaN
    replaced by 0 (the observed column means); one tree serves every ``k``.
    """
    rows, weights = np.asarray(rows, np.float64), np.asarray(weights, np.float64)
    cuts = hierarchical_partitions(rows, weights, ks)
    return labelled_draws(rows, weights, np.stack([cuts[k] for k in ks]), k_max, dtype)


def labelled_draws(rows: np.ndarray, weights: np.ndarray, labels: np.ndarray, k_max: int, dtype) -> LabelledRows:
    """(groups, 1, ...) ``LabelledRows``: one partition of the same rows per group (``labels`` (groups, S))."""
    one_hot = (labels[:, None, :] == np.arange(k_max)[None, :, None]) * weights  # (groups, k_max, S)
    counts = one_hot.sum(axis=-1, keepdims=True)
    means = one_hot @ rows / np.where(counts > 0, counts, 1.0)
    groups = len(labels)
    return LabelledRows(
        np.broadcast_to(rows.astype(dtype), (groups, 1) + rows.shape),
        np.broadcast_to(weights.astype(dtype), (groups, 1) + weights.shape),
        labels[:, None].astype(np.int32),
        means[:, None].astype(dtype),
    )


# Tries of ``kmeans_partition`` for a partition that uses every cluster.
KMEANS_TRIES = 5


def kmeans_partition(rows: np.ndarray, weights: np.ndarray, k: int, stream: np.random.Generator) -> np.ndarray:
    """(S,) a k-means partition of the start's rows (those of positive weight), from k-means++ seeds.

    SciPy's ``kmeans2`` (``minit="++"``, 10 Lloyd iterations; it does not weigh rows, which a start
    need not); a partition with an empty cluster is drawn again (up to ``KMEANS_TRIES`` times)
    and kept when none uses every cluster. Rows of weight 0 join their nearest cluster.
    """
    positive = weights > 0
    for _ in range(KMEANS_TRIES):
        with warnings.catch_warnings():  # an empty cluster: drawn again below
            warnings.simplefilter("ignore", UserWarning)
            centres, _ = scipy.cluster.vq.kmeans2(rows[positive], k, minit="++", rng=stream)
        labels, _ = scipy.cluster.vq.vq(rows, centres)
        if np.unique(labels[positive]).size == k:
            break
    return labels.astype(np.int32)


def kmeans_draws(draws: LabelledRows, starts: list[tuple[int, int]], seed, dtype) -> LabelledRows:
    """(len(starts), 1, ...) ``LabelledRows`` on the rows of a hierarchical start's ``draws``: for each
    ``(k, repeat)`` in ``starts`` a ``kmeans_partition`` into ``k`` clusters, its random stream
    ``(seed, k, repeat)``'s (so a start does not depend on the others asked for)."""
    rows, weights = np.asarray(draws.rows[0, 0], np.float64), np.asarray(draws.weights[0, 0], np.float64)
    root = seed_sequence(seed)
    labels = [
        kmeans_partition(
            rows, weights, k, np.random.default_rng(np.random.SeedSequence(root.entropy, spawn_key=(k, repeat)))
        )
        for k, repeat in starts
    ]
    return labelled_draws(rows, weights, np.stack(labels), draws.means.shape[-2], dtype)


def classified_draws(draws: LabelledRows, labels: np.ndarray, dtype) -> LabelledRows:
    """(groups, 1, ...) ``LabelledRows`` on the rows of a hierarchical start's ``draws``, partitioned
    by ``labels`` ((groups, S): for each group, every start row's cluster, e.g. another fit's
    classification of them)."""
    rows, weights = np.asarray(draws.rows[0, 0], np.float64), np.asarray(draws.weights[0, 0], np.float64)
    return labelled_draws(rows, weights, np.asarray(labels, np.int32), draws.means.shape[-2], dtype)
