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
- each EM iteration: one pass (``_estep.e_step`` per block, statistics combined on the
  device), then ``_kernels.advance`` (M-step, repair, stopping rule) for all restarts at once.

The initialisation methods are ``_init.INIT_METHODS``' entries (their host-side seeding); the
kernels are ``_kernels``'; only the loops over blocks are this module's.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np

from bayesgmm.chunks import Rows, WorstRow, add
from bayesgmm.em._config import Program
from bayesgmm.em._data import PreparedData
from bayesgmm.em._estep import e_step
from bayesgmm.em._init import INIT_METHODS, lloyd_host, n_restarts
from bayesgmm.em._kernels import (
    advance,
    device_settings,
    device_user_init,
    finish,
    initial_params,
    initial_statistics,
    start_model,
    start_state,
    user_params,
)
from bayesgmm.em._state import EMState, Settings, UserInit

BLOCK_ELEMENTS = 1 << 24  # rows × features per block copied to the device (128 MiB in float64)


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

    @classmethod
    def of(cls, data: PreparedData, dtype, chunk_size: int) -> HostRows:
        """The prepared host rows in blocks of about ``BLOCK_ELEMENTS`` elements (whole chunks)."""
        block_chunks = max(1, BLOCK_ELEMENTS // (chunk_size * data.n_features))
        block_chunks = min(block_chunks, -(-data.X.shape[0] // chunk_size))
        return cls(data.X, data.weights, data.center, data.scale, data.covariance, dtype, chunk_size, block_chunks)

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


# ----------------------------------------------------------------------------- jitted block passes


@functools.partial(jax.jit, static_argnames="moments")
def _block_e_step(params, rows: Rows, moments: str):
    return jax.vmap(lambda p: e_step(p, rows, moments))(params)


@jax.jit
def _combine_e_steps(a, b):
    (stats_a, worst_a), (stats_b, worst_b) = a, b
    return add(stats_a, stats_b), jax.vmap(WorstRow.merge)(worst_a, worst_b)


@functools.partial(jax.jit, static_argnames="program")
def _advance(states, stats, seed_rows, settings: Settings, *, program: Program):
    settings = device_settings(settings, program.structure, program.k)
    step = functools.partial(advance, settings=settings, degenerate=program.degenerate)
    return jax.vmap(lambda state, stats, row: step(state, stats, row))(states, stats, seed_rows)


@functools.partial(jax.jit, static_argnames="program")
def _initial_block_statistics(rows: Rows, shift, indices, draws, active, *, program: Program):
    assign = INIT_METHODS[program.init].assignment

    def one(shift, indices, draws):
        return initial_statistics(assign(shift, indices, draws, active), rows, program.covariance_type)

    return jax.vmap(one)(shift, indices, draws)


@functools.partial(jax.jit, static_argnames="program")
def _start(stats, settings: Settings, user_init: UserInit, *, program: Program):
    structure = program.structure
    settings = device_settings(settings, structure, program.k)
    user_init = device_user_init(user_init, structure)

    def one(stats):
        params, regularised = initial_params(
            stats, settings, user_init, covariance_type=program.covariance_type, degenerate=program.degenerate
        )
        params = start_model(params, program.family, program.dof_mode, settings)
        return start_state(params, regularised, settings, history_size=program.history_size)

    return jax.vmap(one)(stats)


@functools.partial(jax.jit, static_argnames=("restarts", "program"))
def _user_states(user_init: UserInit, settings: Settings, restarts: int, *, program: Program):
    user = user_params(device_user_init(user_init, program.structure), program.covariance_type)
    user = start_model(user, program.family, program.dof_mode, settings)
    params = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (restarts,) + leaf.shape), user)
    regularised = jnp.zeros((restarts, program.k), bool)
    return jax.vmap(lambda p, r: start_state(p, r, settings, history_size=program.history_size))(params, regularised)


# ----------------------------------------------------------------------------- the loop


def initial_states(host: HostRows, draws, settings: Settings, user_init: UserInit, program: Program) -> EMState:
    """The batched loop state of every restart before its first E-step."""
    restarts = n_restarts(draws)
    if user_init.complete:
        return _user_states(user_init, settings, restarts, program=program)
    entry = INIT_METHODS[program.init]
    n_active = int(np.sum(settings.active))
    indices = entry.seed_host_rows(host, jax.tree.map(np.asarray, draws), program.k, n_active)
    shift = host.rows(indices) if entry.from_rows else np.zeros(indices.shape + (host.X.shape[1],))
    if entry.refine:
        shift = lloyd_host(host, shift, settings.active)
    shift = jnp.asarray(shift, host.dtype)
    indices, draws = jnp.asarray(indices, jnp.int32), jax.tree.map(jnp.asarray, draws)
    if entry.deterministic:  # the statistics of the start's own rows (no pass over the stream), about their means
        stats = _initial_block_statistics(None, shift, indices, draws, settings.active, program=program)
    else:
        stats = host.reduce(
            lambda block: _initial_block_statistics(block, shift, indices, draws, settings.active, program=program)
        )._replace(shift=shift)
    return _start(stats, settings, user_init, program=program)


def fit(host: HostRows, draws, settings: Settings, user_init: UserInit, program: Program, init_weights=None) -> EMState:
    """All restarts of one fit by streaming; returns the batched final states (R,).

    ``init_weights`` (n,): the row weights of the initialisation (the noise guess), by default the rows'.
    """
    init_host = host
    if init_weights is not None:
        init_host = HostRows(
            host.X, init_weights, host.center, host.scale, host.covariance, host.dtype, host.chunk_size,
            host.block_chunks,
        )  # fmt: skip
    states = initial_states(init_host, draws, settings, user_init, program)
    while not bool(jnp.all(states.done)):
        block_e_step = functools.partial(_block_e_step, states.params, moments=program.moments)
        stats, worst = host.reduce(block_e_step, _combine_e_steps)
        seed_rows = jnp.asarray(host.rows(np.asarray(worst.row)), host.dtype)
        advanced = _advance(states, stats, seed_rows, settings, program=program)
        states = _keep_finished(states.done, advanced, states)
    return jax.vmap(lambda state: finish(state, settings))(states)


@jax.jit
def _keep_finished(done, advanced, states):
    """Finished restarts keep their state (their E-step in this iteration only cost time)."""
    return jax.tree.map(
        lambda new, old: jnp.where(done.reshape(done.shape + (1,) * (new.ndim - 1)), old, new), advanced, states
    )
