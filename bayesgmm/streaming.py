"""EM on rows streamed from host memory or disk, block by block (data larger than device memory).

``em_fit(X, k, stream=True)`` (automatic for an ``np.memmap``) runs the same algorithm as the
in-memory fit, but every pass over the data is a host loop over blocks of whole chunks:
each block is read (a slice of a memmap reads only those rows), centred and rescaled in
float64 on the host, and copied to the device by a background thread while the device works
on the previous block (transfer and compute overlap). Only the current block, the next one
and the sufficient statistics live on the device.

The passes are those of the in-memory fit, with the same chunks (same ``chunk_size``) and
the same kernels, so the result is the same up to summation order:

- initialisation: k-means++ seeding (two passes per center: candidate potentials, then the
  distances to the chosen one; the ``w D²`` sums stay on the host) and Lloyd iterations (one
  pass each), or the rows drawn by ``init_draws``; then one pass for the initial statistics;
- each EM iteration: one pass (``em.e_step`` per block, statistics combined on the device),
  then ``em.advance`` (M-step, repair, stopping rule) for all restarts at once.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np

from bayesgmm import em, init
from bayesgmm.chunks import Rows, WorstRow, accumulate, add
from bayesgmm.covariance import get_structure

_BLOCK_ELEMENTS = 1 << 24  # rows × features per block copied to the device (128 MiB in float64)


class HostRows:
    """Rows on the host (an ndarray or ``np.memmap``), read in blocks of whole chunks.

    Parameters
    ----------
    X : (n, d) array on the host
    weights : (n,) float64 row weights
    center : (d,) and scale: rows are standardised as ``(x − center) / scale`` when read
    covariance : (d, d) weighted covariance of the standardised rows
    dtype : the compute dtype
    chunk_size : rows per chunk (as ``em_fit``'s)
    block_chunks : chunks per block
    """

    def __init__(self, X, weights, center, scale, covariance, dtype, chunk_size: int, block_chunks: int):
        self.X, self.weights = X, weights
        self.center, self.scale, self.covariance, self.dtype = center, scale, covariance, dtype
        self.chunk_size, self.block_chunks = chunk_size, block_chunks
        self.block_rows = chunk_size * block_chunks
        self.n_blocks = -(-X.shape[0] // self.block_rows)

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    def rows(self, indices) -> np.ndarray:
        """Standardised rows at global ``indices`` (any shape; for seeds and re-seeding), float64."""
        indices = np.minimum(np.asarray(indices), self.n_samples - 1)  # padding rows are never asked for
        rows = (np.asarray(self.X[indices.ravel()], np.float64) - self.center) / self.scale
        return rows.reshape(indices.shape + (-1,))

    def _load(self, start: int) -> Rows:
        stop = min(start + self.block_rows, self.n_samples)
        block = (np.asarray(self.X[start:stop], np.float64) - self.center) / self.scale
        weights = self.weights[start:stop]
        pad = self.block_rows - (stop - start)
        if pad:  # the last block: zero rows of weight 0, so every block has one shape
            block = np.concatenate([block, np.zeros((pad, block.shape[1]))])
            weights = np.concatenate([weights, np.zeros(pad)])
        shape = (self.block_chunks, self.chunk_size)
        chunks = jax.device_put(block.astype(self.dtype).reshape(shape + (-1,)))
        return Rows(chunks, jax.device_put(weights.astype(self.dtype).reshape(shape)), start // self.chunk_size)

    def blocks(self):
        """Yield ``(first_row, Rows)`` per block; the next block is read while this one is used."""
        starts = range(0, self.n_samples, self.block_rows)
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(self._load, starts[0])
            for index, start in enumerate(starts):
                block = pending.result()
                if index + 1 < len(starts):
                    pending = pool.submit(self._load, starts[index + 1])
                yield start, block

    def reduce(self, per_block, combine=add):
        """``combine`` of ``per_block(rows)`` over all blocks (results stay on the device)."""
        total = None
        for _, block in self.blocks():
            result = per_block(block)
            total = result if total is None else combine(total, result)
        return total


def host_moments(X, weights: np.ndarray, block_rows: int = 1 << 16):
    """Weighted total, mean and covariance of host rows in float64, block by block (two passes)."""
    total = float(weights.sum())
    mean = np.zeros(X.shape[1])
    for start in range(0, X.shape[0], block_rows):
        block = np.asarray(X[start : start + block_rows], np.float64)
        if not np.all(np.isfinite(block)):
            bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
            raise ValueError(f"X contains NaN or infinite values (first: row {bad}); drop or impute them.")
        mean += weights[start : start + block_rows] @ block
    mean /= total
    covariance = np.zeros((X.shape[1],) * 2)
    for start in range(0, X.shape[0], block_rows):
        block = np.asarray(X[start : start + block_rows], np.float64) - mean
        covariance += (block * weights[start : start + block_rows, None]).T @ block
    return total, mean, covariance / total


# ----------------------------------------------------------------------------- jitted block passes


@functools.partial(jax.jit, static_argnames="moments")
def _block_e_step(params, rows: Rows, moments: str):
    return jax.vmap(lambda p: em.e_step(p, rows, moments))(params)


@jax.jit
def _combine_e_steps(a, b):
    (stats_a, worst_a), (stats_b, worst_b) = a, b
    return add(stats_a, stats_b), jax.vmap(WorstRow.merge)(worst_a, worst_b)


@functools.partial(jax.jit, static_argnames=("degenerate", "covariance_type"))
def _advance(states, stats, seed_rows, setting, *, degenerate, covariance_type):
    setting = em._device_setting(setting, get_structure(covariance_type), states.params.n_components)
    step = functools.partial(em.advance, setting=setting, degenerate=degenerate)
    return jax.vmap(lambda state, stats, row: step(state, stats, row))(states, stats, seed_rows)


@jax.jit
def _candidate_distances(rows: Rows, candidates, closest_block, first):
    """(R, T, rows) ``w D²`` to each candidate, min with ``closest`` unless it is the first center."""
    x, w = rows.flat()
    distances = jnp.sum((x[None, None, :, :] - candidates[:, :, None, :]) ** 2, axis=-1) * w
    return jnp.where(first, distances, jnp.minimum(closest_block[:, None, :], distances))


@functools.partial(jax.jit, static_argnames="k")
def _lloyd_sums(rows: Rows, *, centers, active, k):
    def per_chunk(centers, x, w):
        one_hot = jax.nn.one_hot(init.nearest(x, centers, active), k, axis=0, dtype=x.dtype) * w
        return one_hot @ x, jnp.sum(one_hot, axis=1)

    return jax.vmap(lambda c: accumulate(rows, lambda x, w, row_ids, index: per_chunk(c, x, w)))(centers)


@functools.partial(jax.jit, static_argnames=("method", "covariance_type"))
def _initial_block_statistics(rows: Rows, shift, indices, seeds, active, method, covariance_type):
    d = rows.n_features

    def one(shift, indices, seed):
        if method == "kmeans":
            assignment = init.from_centers(shift, active)
        elif method == "random":
            assignment = init.from_random(seed, active, d, rows.chunks.dtype)
        else:
            assignment = init.from_rows(indices, shift, active)
        return em.initial_statistics(assignment, rows, covariance_type)

    return jax.vmap(one)(shift, indices, seeds)


@functools.partial(jax.jit, static_argnames=("covariance_type", "degenerate", "history_size"))
def _start(stats, setting, user_init, *, covariance_type, degenerate, history_size):
    structure = get_structure(covariance_type)
    setting = em._device_setting(setting, structure, stats.shift.shape[-2])
    user_init = em._device_user_init(user_init, structure)

    def one(stats):
        params, regularised = em.initial_params(
            stats, setting, user_init, covariance_type=covariance_type, degenerate=degenerate
        )
        return em.start_state(params, regularised, setting, history_size=history_size)

    return jax.vmap(one)(stats)


# ----------------------------------------------------------------------------- initialisation


def _kmeans_plusplus(host: HostRows, draws: np.ndarray, n_active: int) -> np.ndarray:
    """``init.kmeans_plusplus`` for every restart at once: (R, k) row indices.

    The ``w D²`` sums (R, n) stay on the host in float64; each center takes two passes.
    """
    restarts, k, n_trials_max = draws.shape
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
        candidate_rows = jnp.asarray(host.rows(candidates), host.dtype)
        potentials = np.zeros((restarts, n_trials_max))
        for start, block in host.blocks():
            part = _candidate_distances(block, candidate_rows, closest[:, start : start + host.block_rows], i == 0)
            potentials += np.asarray(jnp.sum(part, axis=-1), np.float64)
        usable = np.arange(n_trials_max) < (1 if i == 0 else n_trials)
        best = np.argmin(np.where(usable, potentials, np.inf), axis=1)
        indices[:, i] = candidates[np.arange(restarts), best]
        chosen = candidate_rows[np.arange(restarts), best][:, None, :]
        for start, block in host.blocks():
            part = _candidate_distances(block, chosen, closest[:, start : start + host.block_rows], i == 0)
            closest[:, start : start + host.block_rows] = np.asarray(part[:, 0], np.float64)
    indices[:, n_active:] = indices[:, :1]
    return indices


def _lloyd(host: HostRows, centers: np.ndarray, active, *, max_iter: int = 300, tol: float = 1e-4) -> np.ndarray:
    """``init.lloyd`` for every restart at once, one pass per iteration; (R, k, d) centers."""
    k = centers.shape[1]
    threshold = tol * float(np.mean(np.diag(host.covariance)))
    done = np.zeros(centers.shape[0], bool)
    for _ in range(max_iter):
        current = jnp.asarray(centers, host.dtype)
        sums, counts = host.reduce(functools.partial(_lloyd_sums, centers=current, active=active, k=k))
        sums, counts = np.asarray(sums, np.float64), np.asarray(counts, np.float64)
        new = np.where(counts[..., None] > 0, sums / np.where(counts > 0, counts, 1)[..., None], centers)
        shift = np.sum((new - centers) ** 2, axis=(1, 2))
        centers = np.where(done[:, None, None], centers, new)
        done |= shift <= threshold
        if done.all():
            break
    return centers


def initial_states(host: HostRows, draws, setting, user_init, *, method, covariance_type, degenerate, history_size):
    """The batched loop state of every restart before its first E-step."""
    k = setting.active.shape[0]
    restarts = draws.shape[0]
    dtype = host.dtype
    user = em._user_params(em._device_user_init(user_init, get_structure(covariance_type)), covariance_type)
    if user is not None:
        params = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (restarts,) + leaf.shape), user)
        regularised = jnp.zeros((restarts, k), bool)
        return jax.vmap(lambda p, r: em.start_state(p, r, setting, history_size=history_size))(params, regularised)
    n_active = int(np.sum(setting.active))
    indices = np.zeros((restarts, k), np.int64)
    seeds = np.zeros(restarts, np.uint32)
    if method in ("kmeans", "k-means++"):
        indices = _kmeans_plusplus(host, np.asarray(draws), n_active)
    elif method == "random_from_data":
        indices = np.flatnonzero(host.weights > 0)[np.asarray(draws)]
    else:
        seeds = np.asarray(draws, np.uint32)
    shift = host.rows(indices)
    if method == "kmeans":
        shift = _lloyd(host, shift, setting.active)
    elif method == "random":
        shift = np.zeros((restarts, k, host.X.shape[1]))
    shift = jnp.asarray(shift, dtype)
    stats = host.reduce(
        lambda block: _initial_block_statistics(
            block,
            shift,
            jnp.asarray(indices, jnp.int32),
            jnp.asarray(seeds),
            setting.active,
            method=method,
            covariance_type=covariance_type,
        )
    )
    stats = stats._replace(shift=shift)
    return _start(
        stats, setting, user_init, covariance_type=covariance_type, degenerate=degenerate, history_size=history_size
    )


# ----------------------------------------------------------------------------- the loop


def fit(host: HostRows, draws, setting, user_init, *, method, covariance_type, moments, degenerate, history_size):
    """All restarts of one fit by streaming; returns the batched final states (R,)."""
    states = initial_states(
        host,
        draws,
        setting,
        user_init,
        method=method,
        covariance_type=covariance_type,
        degenerate=degenerate,
        history_size=history_size,
    )
    while not bool(jnp.all(states.done)):
        e_step = functools.partial(_block_e_step, states.params, moments=moments)
        stats, worst = host.reduce(e_step, _combine_e_steps)
        seed_rows = jnp.asarray(host.rows(np.asarray(worst.row)), host.dtype)
        advanced = _advance(states, stats, seed_rows, setting, degenerate=degenerate, covariance_type=covariance_type)
        states = _keep_finished(states.done, advanced, states)
    return jax.vmap(em.finish)(states)


@jax.jit
def _keep_finished(done, advanced, states):
    """Finished restarts keep their state (their E-step in this iteration only cost time)."""
    return jax.tree.map(
        lambda new, old: jnp.where(done.reshape(done.shape + (1,) * (new.ndim - 1)), old, new), advanced, states
    )
