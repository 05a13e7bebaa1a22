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
from jax import Array, lax

INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")


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


def kmeans_plusplus(key: Array, X: Array, weights: Array, k: int) -> Array:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; scikit-learn's variant).

    Parameters
    ----------
    key : PRNG key
    X : (n, d) rows
    weights : (n,) row weights; zero for padding rows, which are never chosen.
    k : number of centers

    Returns
    -------
    indices : (k,) int rows of ``X`` chosen as centers.

    References
    ----------
    D. Arthur and S. Vassilvitskii, "k-means++: the advantages of careful seeding", SODA 2007.
    """
    n_local_trials = 2 + int(math.log(k))
    key_first, key_rest = jax.random.split(key)
    first = jax.random.categorical(key_first, jnp.log(weights))
    closest = jnp.sum((X - X[first]) ** 2, axis=-1) * weights
    indices = jnp.zeros((k,), dtype=jnp.int32).at[0].set(first.astype(jnp.int32))

    def add_center(i, carry):
        indices, closest = carry
        cumulative = jnp.cumsum(closest)
        draws = jax.random.uniform(jax.random.fold_in(key_rest, i), (n_local_trials,), dtype=X.dtype)
        candidates = jnp.clip(jnp.searchsorted(cumulative, draws * cumulative[-1]), 0, X.shape[0] - 1)
        candidate_closest = jnp.minimum(closest, _squared_distances(X, X[candidates]) * weights)
        best = jnp.argmin(jnp.sum(candidate_closest, axis=-1))
        return indices.at[i].set(candidates[best].astype(indices.dtype)), candidate_closest[best]

    indices, _ = lax.fori_loop(1, k, add_center, (indices, closest))
    return indices


def lloyd(chunks: Array, mask: Array, centers: Array, *, max_iter: int = 300, tol: float = 1e-4) -> Array:
    """Lloyd's k-means iterations over chunked rows.

    Stops when the total squared center shift is at most ``tol`` times the mean
    feature variance (scikit-learn's rule) or after ``max_iter`` iterations.
    Empty clusters keep their center.

    Parameters
    ----------
    chunks : (m, c, d) rows in chunks
    mask : (m, c) 1 for real rows, 0 for padding
    centers : (k, d) starting centers

    Returns
    -------
    centers : (k, d)
    """
    k = centers.shape[0]
    n = jnp.sum(mask)
    mean = jnp.einsum("mc,mcd->d", mask, chunks) / n
    variance = jnp.einsum("mc,mcd->d", mask, (chunks - mean) ** 2) / n
    threshold = tol * jnp.mean(variance)

    def sums_and_counts(centers):
        def per_chunk(carry, xs):
            x, m = xs
            labels = jnp.argmin(_squared_distances(x, centers), axis=0)
            one_hot = jax.nn.one_hot(labels, k, axis=0, dtype=x.dtype) * m
            return (carry[0] + one_hot @ x, carry[1] + jnp.sum(one_hot, axis=1)), None

        zeros = (jnp.zeros_like(centers), jnp.zeros((k,), centers.dtype))
        return lax.scan(per_chunk, zeros, (chunks, mask))[0]

    def body(state):
        i, centers, _ = state
        sums, counts = sums_and_counts(centers)
        new = jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1)[:, None], centers)
        return i + 1, new, jnp.sum((new - centers) ** 2)

    def cond(state):
        i, _, shift = state
        return (i < max_iter) & (shift > threshold)

    _, centers, _ = lax.while_loop(cond, body, (0, centers, jnp.asarray(jnp.inf, centers.dtype)))
    return centers


def initial_assignment(
    method: str, key: Array, chunks: Array, mask: Array, k: int, n_samples: int
) -> InitialAssignment:
    """Initial responsibilities for EM by ``method`` (see ``INIT_METHODS``).

    - "kmeans": k-means++ seeding then Lloyd iterations; hard assignments.
    - "k-means++": k-means++ seeds; one point per component (covariance = reg_covar).
    - "random": responsibilities uniform on [0, 1), normalised per row.
    - "random_from_data": k distinct rows; one point per component.
    """
    d = chunks.shape[-1]
    flat = chunks.reshape((-1, d))
    flat_mask = mask.reshape((-1,))

    def from_indices(indices):
        def responsibilities(x, row_ids, chunk_index):
            return (indices[:, None] == row_ids[None, :]).astype(x.dtype)

        return InitialAssignment(responsibilities, flat[indices])

    if method == "kmeans":
        centers = lloyd(chunks, mask, flat[kmeans_plusplus(key, flat, flat_mask, k)])

        def responsibilities(x, row_ids, chunk_index):
            labels = jnp.argmin(_squared_distances(x, centers), axis=0)
            return jax.nn.one_hot(labels, k, axis=0, dtype=x.dtype)

        return InitialAssignment(responsibilities, centers)
    if method == "k-means++":
        return from_indices(kmeans_plusplus(key, flat, flat_mask, k))
    if method == "random_from_data":
        return from_indices(jax.random.choice(key, n_samples, (k,), replace=False))
    if method == "random":

        def responsibilities(x, row_ids, chunk_index):
            draws = jax.random.uniform(jax.random.fold_in(key, chunk_index), (k, x.shape[0]), dtype=x.dtype)
            return draws / jnp.sum(draws, axis=0, keepdims=True)

        return InitialAssignment(responsibilities, jnp.zeros((k, d), chunks.dtype))
    raise ValueError(f"init must be one of {INIT_METHODS}, got {method!r}.")
