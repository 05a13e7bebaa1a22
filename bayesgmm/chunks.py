"""Rows in chunks, and the one primitive that passes over them: ``accumulate``.

Every pass over the data in EM (E-step, k-means, initial statistics) is a sum of per-chunk
results, so it can run chunk by chunk (``lax.scan``: bounded memory, no (n, k, d) array),
across devices (each device scans its own rows, then the results are combined) and, in
EM's streaming driver (``em._streaming``), over chunks read from disk. This module owns the layout:

- ``Rows.chunks (m, c, d)``: the rows, padded to whole chunks;
- ``Rows.weights (m, c)``: one non-negative weight per row (``sample_weight``; 1 by default),
  0 for padding, so padding never counts;
- ``Rows.errors (m, c, d)`` or ``(m, c, d, d)``, optional: each row's measurement-error
  variances or covariances (``em_fit(measurement_error=...)``), 0 for padding.

Pure functions, no ``jit``: callers jit and vmap them.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array, lax
from jax.sharding import PartitionSpec

ROW_AXIS = "rows"  # the mesh axis that rows are sharded over (bayesgmm.sharding)


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["chunks", "weights", "first_chunk", "errors"],
    meta_fields=["mesh"],
)
@dataclasses.dataclass(frozen=True)
class Rows:
    """Weighted rows in chunks, optionally sharded over devices.

    chunks : (m, c, d) rows, padded with zeros to whole chunks
    weights : (m, c) row weights; 0 for padding
    first_chunk : int array ()
        The number of the first chunk: row and chunk numbers given to ``accumulate``'s
        function are global (a block of a stream is one ``Rows``; 0 in memory).
    mesh : jax.sharding.Mesh or None (static)
        When set, the chunk axis is sharded over the mesh axis ``ROW_AXIS``: each device
        holds ``m / n_devices`` whole chunks and ``accumulate`` runs on every device over
        its own chunks, then combines the per-device results.
    errors : (m, c, d) or (m, c, d, d), or None
        Per-row measurement-error variances or covariances, chunked as the rows (zeros for
        padding); rows in memory on one device only (``mesh`` None). A chunk function reads
        its chunk's as ``rows.chunk_errors(chunk_index)``.
    """

    chunks: Array
    weights: Array
    first_chunk: Any = 0
    mesh: Any = None
    errors: Any = None

    @property
    def chunk_size(self) -> int:
        return self.chunks.shape[1]

    @property
    def n_features(self) -> int:
        return self.chunks.shape[2]

    def chunk_errors(self, chunk_index) -> Array:
        """The measurement errors of chunk ``chunk_index`` (a global chunk number, as ``accumulate`` gives)."""
        return lax.dynamic_index_in_dim(self.errors, chunk_index - self.first_chunk, keepdims=False)

    def flat(self) -> tuple[Array, Array]:
        """``(rows (m c, d), weights (m c,))``, padding included (weight 0)."""
        return self.chunks.reshape((-1, self.n_features)), self.weights.reshape((-1,))


def _pad_to_chunks(X: Array, weights: Array, chunk_size: int) -> tuple[Array, Array]:
    n, d = X.shape
    n_chunks = -(-n // chunk_size)
    pad = n_chunks * chunk_size - n
    chunks = jnp.pad(X, ((0, pad), (0, 0))).reshape((n_chunks, chunk_size, d))
    return chunks, jnp.pad(weights.astype(X.dtype), (0, pad)).reshape((n_chunks, chunk_size))


def chunk_rows(X: Array, weights: Array, chunk_size: int, mesh=None, errors=None) -> Rows:
    """Pad ``X (n, d)`` and ``weights (n,)`` to whole chunks of ``chunk_size`` rows.

    With a ``mesh``, ``X`` and ``weights`` are sharded over ``ROW_AXIS`` (``n`` a multiple of
    the number of devices) and each device pads and chunks its own rows, so nothing moves
    between devices. ``errors`` (n, d) or (n, d, d), optional: per-row measurement errors,
    padded with zeros and chunked alike (without a mesh only).
    """
    if errors is not None:
        if mesh is not None:
            raise ValueError("Measurement errors need the rows on one device; they cannot be sharded over a mesh.")
        n_chunks = -(-X.shape[0] // chunk_size)
        pad = ((0, n_chunks * chunk_size - X.shape[0]),) + ((0, 0),) * (errors.ndim - 1)
        chunked_errors = jnp.pad(errors, pad).reshape((n_chunks, chunk_size) + errors.shape[1:])
        return Rows(*_pad_to_chunks(X, weights, chunk_size), errors=chunked_errors)
    if mesh is None:
        return Rows(*_pad_to_chunks(X, weights, chunk_size))
    local_rows = X.shape[0] // mesh.shape[ROW_AXIS]
    spec = PartitionSpec(ROW_AXIS)
    chunks, chunk_weights = jax.shard_map(
        functools.partial(_pad_to_chunks, chunk_size=min(chunk_size, local_rows)),
        mesh=mesh,
        in_specs=(spec, spec),
        out_specs=(spec, spec),
    )(X, weights)
    return Rows(chunks, chunk_weights, 0, mesh)


def add(a, b):
    """Combine two partial sums (the default for ``accumulate``)."""
    return jax.tree.map(jnp.add, a, b)


def zeros_like_shapes(shapes) -> Any:
    """Zeros shaped like ``jax.eval_shape`` output: the identity of ``add``."""
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def accumulate(
    rows: Rows,
    chunk_fn: Callable[..., Any],
    combine: Callable[[Any, Any], Any] = add,
    identity: Callable[[Any], Any] = zeros_like_shapes,
) -> Any:
    """Combine ``chunk_fn(x, w, row_ids, chunk_index)`` over all chunks.

    Parameters
    ----------
    rows : Rows
    chunk_fn : (x (c, d), w (c,), row_ids (c,) int, chunk_index () int) -> pytree
        The contribution of one chunk; ``row_ids`` index ``rows.flat()``.
    combine : (pytree, pytree) -> pytree
        Associative and commutative (sums: ``add``; running minima: a merge).
    identity : shapes -> pytree
        The neutral element of ``combine``, from the ``jax.eval_shape`` of one chunk's result.

    Returns
    -------
    The combination over all chunks (and devices), replicated.
    """

    def scan_chunks(chunks, weights, first_chunk):
        n_chunks, chunk_size, _ = chunks.shape
        offsets = jnp.arange(chunk_size)

        def step(total, inputs):
            index, x, w = inputs
            return combine(total, chunk_fn(x, w, index * chunk_size + offsets, index)), None

        shapes = jax.eval_shape(chunk_fn, chunks[0], weights[0], offsets, 0)
        indices = first_chunk + jnp.arange(n_chunks)
        return lax.scan(step, identity(shapes), (indices, chunks, weights))[0]

    if rows.mesh is None:
        return scan_chunks(rows.chunks, rows.weights, rows.first_chunk)
    n_devices = rows.mesh.shape[ROW_AXIS]
    local_chunks = rows.chunks.shape[0] // n_devices

    def per_device(chunks, weights):
        local = scan_chunks(chunks, weights, rows.first_chunk + lax.axis_index(ROW_AXIS) * local_chunks)
        gathered = lax.all_gather(local, ROW_AXIS)  # (n_devices, ...) on every device
        total = jax.tree.map(lambda leaf: leaf[0], gathered)
        for device in range(1, n_devices):  # fixed order: every device gets the same bits
            total = combine(total, jax.tree.map(lambda leaf, device=device: leaf[device], gathered))
        return total

    spec = PartitionSpec(ROW_AXIS)
    return jax.shard_map(per_device, mesh=rows.mesh, in_specs=(spec, spec), out_specs=PartitionSpec(), check_vma=False)(
        rows.chunks, rows.weights
    )


class WorstRow(NamedTuple):
    """The row with the lowest log-likelihood seen so far (to re-seed empty components).

    log_prob : () +inf while no row of positive weight was seen
    row : () int global row number
    """

    log_prob: Array
    row: Array

    @classmethod
    def of_chunk(cls, log_prob: Array, weights: Array, row_ids: Array) -> WorstRow:
        """The worst row of one chunk; rows of weight 0 never count."""
        values = jnp.where(weights > 0, log_prob, jnp.inf)
        index = jnp.argmin(values)
        return cls(values[index], row_ids[index])

    @classmethod
    def identity(cls, shapes: WorstRow) -> WorstRow:
        return cls(jnp.full(shapes.log_prob.shape, jnp.inf, shapes.log_prob.dtype), jnp.zeros((), shapes.row.dtype))

    def merge(self, other: WorstRow) -> WorstRow:
        better = other.log_prob < self.log_prob
        return WorstRow(jnp.where(better, other.log_prob, self.log_prob), jnp.where(better, other.row, self.row))
