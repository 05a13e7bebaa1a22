"""Rows placed over devices: ``shard(X)`` for ``em_fit`` on many devices (and many hosts).

``shard`` puts the rows of ``X`` over a 1-D device mesh (axis ``"rows"``) with a
``NamedSharding``; each device holds a contiguous block. ``em_fit`` keeps them there: every
pass over the data runs on each device over its own rows (``jax.shard_map``) and only the
sufficient statistics (a few (k, d, d) arrays) travel between devices. The same code runs
on one CPU, one GPU, all GPUs of a host, or many hosts after ``jax.distributed.initialize()``.

Several processes: every process calls ``shard`` with its own rows (any number, not
necessarily the same on every process), then ``em_fit`` with the same arguments; both are
collective, so every process makes the same calls in the same order. The global array holds
the processes' rows one after the other (in the mesh's device order: process order for the
default mesh), each process's rows padded with weight-0 rows so that every device holds the
same number; the fit equals the single-process fit of all rows stacked in that order, and
its parameters are replicated on every process.

Testing without accelerators: ``XLA_FLAGS=--xla_force_host_platform_device_count=4``;
several local processes: ``tests/test_multiprocess.py`` (CPU collectives over gloo).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from bayesgmm import _validation
from bayesgmm._errors import ArgumentTypeError
from bayesgmm.chunks import ROW_AXIS


class ShardedRows(NamedTuple):
    """Rows sharded over a mesh, as made by ``shard``; pass it to ``em_fit`` in place of ``X``.

    X : (n_padded, d) jax.Array sharded over ``mesh``'s ``"rows"`` axis (global: with several
        processes, every process's rows, each process's block padded)
    weights : (n_padded,) jax.Array, the row weights (``sample_weight``, 1 by default), 0 for
        the padding that makes every device's block the same size
    mesh : jax.sharding.Mesh
    n_samples : int, rows before padding, all processes together
    """

    X: Array
    weights: Array
    mesh: Mesh
    n_samples: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_samples, self.X.shape[1])


def row_mesh(mesh: Mesh | None = None) -> Mesh:
    """A 1-D mesh with axis ``"rows"`` (automatic sharding): over all devices, or over ``mesh``'s devices.

    The axis is of type ``Auto``: outside the explicit per-device passes, XLA decides how
    intermediate results are laid out (as for any jitted function of sharded arrays).
    """
    if mesh is not None and not isinstance(mesh, Mesh):
        raise ArgumentTypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}.")
    devices = jax.devices() if mesh is None else list(np.asarray(mesh.devices).reshape(-1))
    return Mesh(np.asarray(devices), (ROW_AXIS,), axis_types=(AxisType.Auto,))


def shard(X, mesh: Mesh | None = None, *, sample_weight=None, dtype=None) -> ShardedRows:
    """Place the rows of ``X`` over the devices of ``mesh`` (all devices by default).

    Each device gets a contiguous block of rows; the blocks are padded with weight-0 rows to
    one size (``ceil(max rows of a process / devices of a process)`` rows), which the fit
    ignores exactly.

    With several processes (after ``jax.distributed.initialize()``), ``shard`` is collective:
    every process calls it with **its own rows** (``X`` and ``sample_weight`` of the rows it
    holds; the counts may differ between processes) and then calls ``em_fit`` with the same
    arguments. The rows are not gathered anywhere: each process places its rows on its own
    devices (``jax.make_array_from_process_local_data``), and the moments used to centre and
    scale are computed over all processes' rows. The result equals the fit of all rows
    stacked in the order of the mesh's devices (for the default mesh, in process order,
    ``jax.process_index()``) on one process.

    Parameters
    ----------
    X : array-like of shape (n_local_samples, n_features)
        The rows this process holds (all rows with one process).
    mesh : jax.sharding.Mesh, optional
        Its devices are used as one axis named ``"rows"`` (default: ``jax.devices()``, all
        processes' devices); every process must hold at least one of them.
    sample_weight : array-like of shape (n_local_samples,), optional
        Per-row weights of this process's rows, as in ``em_fit``.
    dtype : optional
        The compute dtype (default: float64 when ``jax_enable_x64`` is on, else float32).

    Returns
    -------
    ShardedRows
        Accepted by ``em_fit`` in place of ``X``.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesgmm
    >>> X = np.random.default_rng(0).normal(size=(1000, 2))
    >>> rows = bayesgmm.shard(X)
    >>> bayesgmm.em_fit(rows, 2, seed=0).params.means.shape
    (2, 2)
    """
    X = _validation.check_data(X)
    weights = _validation.check_sample_weight(sample_weight, X.shape[0])
    mesh = row_mesh(mesh)
    dtype = jnp.result_type(float) if dtype is None else dtype
    local_devices = [device for device in mesh.devices.reshape(-1) if device.process_index == jax.process_index()]
    n_local = X.shape[0]
    if not local_devices:
        raise ValueError(
            f"The mesh has no device of process {jax.process_index()}; every process that calls shard() needs at "
            "least one device in the mesh (the default mesh, jax.devices(), has all of them)."
        )
    n_per_process = _rows_per_process(n_local)
    block = -(-max(n_per_process) // len(local_devices))  # rows per device, the same on every device
    pad = block * len(local_devices) - n_local
    X = np.concatenate([X, np.zeros((pad, X.shape[1]))]).astype(dtype)
    weights = np.concatenate([weights, np.zeros(pad)]).astype(dtype)
    row_sharding = NamedSharding(mesh, PartitionSpec(ROW_AXIS))
    n_padded = block * mesh.devices.size
    X_sharded = jax.make_array_from_process_local_data(row_sharding, X, (n_padded, X.shape[1]))
    weights_sharded = jax.make_array_from_process_local_data(row_sharding, weights, (n_padded,))
    return ShardedRows(X_sharded, weights_sharded, mesh, sum(n_per_process))


def _rows_per_process(n_local: int) -> list[int]:
    """Every process's number of rows (a collective: all processes call it), in process order."""
    if jax.process_count() == 1:
        return [n_local]
    words = np.array(divmod(n_local, 2**31), np.int32)  # int32: the collective also runs without jax_enable_x64
    return [int(high) * 2**31 + int(low) for high, low in multihost_utils.process_allgather(words)]


@jax.jit
def _moments(X: Array, weights: Array):
    """Weighted total, mean, covariance and finiteness of sharded rows (two passes)."""
    total = jnp.sum(weights)
    mean = weights @ X / total
    centred = (X - mean) * (weights > 0)[:, None]
    covariance = (centred * weights[:, None]).T @ centred / total
    finite = jnp.all(jnp.isfinite(X))
    return total, mean, covariance, finite, jnp.sum(weights > 0)


@jax.jit
def standardise(X: Array, center: Array, scale: Array) -> Array:
    return (X - center) / scale


def describe(rows: ShardedRows):
    """``(total weight, mean (d,), covariance (d, d), n positive rows)`` as float64 NumPy, or a ValueError."""
    total, mean, covariance, finite, positive = _moments(rows.X, rows.weights)
    if not bool(finite):
        raise ValueError("The sharded X contains NaN or infinite values; drop or impute them before shard().")
    return float(total), np.asarray(mean, np.float64), np.asarray(covariance, np.float64), int(positive)
