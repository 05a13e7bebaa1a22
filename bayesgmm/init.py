"""Initialisation of EM: responsibilities from k-means, k-means++, random or data points.

Each method returns the same thing, an ``InitialAssignment``: a function giving the
initial responsibilities of a chunk of rows, and the shift about which the first
statistics are accumulated.  ``em.py`` turns it into parameters with one M-step,
exactly as scikit-learn's ``GaussianMixture._initialize`` does.

Pure functions: the caller (``em.em_fit``) jits and vmaps them over restarts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax

from bayesgmm.chunks import Rows, accumulate

INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")
_MAX_TRIALS = 8  # k-means++ candidates drawn per center (more for k > 403); 2 + floor(log k) are used


class InitialAssignment(NamedTuple):
    """How to start EM.

    responsibilities : (x (c, d), row_ids (c,), chunk_index ()) -> (k, c)
    shift : (k, d) means about which the initial statistics are accumulated.
    """

    responsibilities: Callable[[Array, Array, Array], Array]
    shift: Array


def _squared_distances(x: Array, centers: Array) -> Array:
    """(k, c) squared Euclidean distances by direct differences (no cancellation)."""
    diff = x[None, :, :] - centers[:, None, :]
    return jnp.sum(diff * diff, axis=-1)


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
    return jnp.argmin(jnp.where(active[:, None], _squared_distances(x, centers), jnp.inf), axis=0)


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


def init_draws(seed, n_init: int, k: int, method: str, n_positive: int):
    """The random numbers every restart's initialisation needs, drawn on the host.

    Drawing them with NumPy (one independent stream per restart, from
    ``SeedSequence(seed).spawn``) keeps the random-number generator out of the compiled
    program, where each call site costs about half a second of XLA compilation; and each
    restart's draws do not depend on ``n_init``, nor their first rows on ``k``.

    Parameters
    ----------
    seed : int, or a JAX PRNG key (its bits seed the streams)
    n_init : int
    k : int
    method : one of ``INIT_METHODS``
    n_positive : int, the number of rows of positive weight

    Returns
    -------
    kmeans, k-means++: (n_init, k, T) uniforms on [0, 1) (``T`` candidates per center);
    random_from_data: (n_init, k) int ranks of distinct rows among those of positive weight
    (so the rows drawn do not depend on padding or on how rows are laid out on devices);
    random: (n_init,) uint32 seeds for the responsibilities drawn in the program.
    """
    if not isinstance(seed, (int, np.integer)):  # a JAX key
        seed = [int(word) for word in np.asarray(jax.random.key_data(seed)).ravel()]
    streams = [np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(n_init)]
    if method in ("kmeans", "k-means++"):
        trials = max(_MAX_TRIALS, 2 + int(math.log(k)))
        return np.stack([stream.random((k, trials)) for stream in streams])
    if method == "random_from_data":
        return np.stack([stream.permutation(n_positive)[:k] for stream in streams]).astype(np.int32)
    if method == "random":
        return np.array([stream.integers(0, 2**32, dtype=np.uint32) for stream in streams])
    raise ValueError(f"init must be one of {INIT_METHODS}, got {method!r}.")


def from_centers(centers: Array, active: Array) -> InitialAssignment:
    """Hard assignments of every row to its nearest active center (the "kmeans" start)."""
    k = centers.shape[0]

    def responsibilities(x, row_ids, chunk_index):
        return jax.nn.one_hot(nearest(x, centers, active), k, axis=0, dtype=x.dtype)

    return InitialAssignment(responsibilities, centers)


def from_rows(indices: Array, rows_at_indices: Array, active: Array) -> InitialAssignment:
    """Component ``j`` holds row ``indices[j]`` alone ("k-means++", "random_from_data")."""

    def responsibilities(x, row_ids, chunk_index):
        return ((indices[:, None] == row_ids[None, :]) & active[:, None]).astype(x.dtype)

    return InitialAssignment(responsibilities, rows_at_indices)


def from_random(seed: Array, active: Array, n_features: int, dtype) -> InitialAssignment:
    """Responsibilities uniform on [0, 1), normalised per row; chunk ``i`` draws from ``fold_in(key, i)``."""
    key = jax.random.key(seed)
    k = active.shape[0]

    def responsibilities(x, row_ids, chunk_index):
        uniform = jax.random.uniform(jax.random.fold_in(key, chunk_index), (k, x.shape[0]), dtype=x.dtype)
        uniform = uniform * active[:, None]
        return uniform / jnp.sum(uniform, axis=0, keepdims=True)

    return InitialAssignment(responsibilities, jnp.zeros((k, n_features), dtype))


def rows_of_ranks(ranks: Array, weights: Array) -> Array:
    """Indices of the rows of the given ranks (0-based) among the rows of positive weight."""
    return jnp.searchsorted(jnp.cumsum(weights > 0), ranks + 1).astype(jnp.int32)


def initial_assignment(method: str, draws: Array, rows: Rows, k: int, active: Array) -> InitialAssignment:
    """Initial responsibilities for EM by ``method`` (see ``INIT_METHODS``).

    - "kmeans": k-means++ seeding then Lloyd iterations; hard assignments.
    - "k-means++": k-means++ seeds; one point per component (covariance = reg_covar).
    - "random": responsibilities uniform on [0, 1), normalised per row.
    - "random_from_data": k distinct rows of positive weight; one point per component.

    ``draws`` are one restart's ``init_draws``. Only the ``active`` components (a (k,)
    bool mask, a prefix) get rows.
    """
    flat, flat_weights = rows.flat()
    n_active = jnp.sum(active)
    if method == "kmeans":
        seeds = flat[kmeans_plusplus(draws, flat, flat_weights, k, n_active)]
        return from_centers(lloyd(rows, seeds, active), active)
    if method == "k-means++":
        indices = kmeans_plusplus(draws, flat, flat_weights, k, n_active)
        return from_rows(indices, flat[indices], active)
    if method == "random_from_data":
        indices = rows_of_ranks(draws, flat_weights)
        return from_rows(indices, flat[indices], active)
    if method == "random":
        return from_random(draws, active, rows.n_features, rows.chunks.dtype)
    raise ValueError(f"init must be one of {INIT_METHODS}, got {method!r}.")
