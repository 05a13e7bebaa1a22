"""Rows placed over devices: ``shard(X)`` for ``em_fit`` on many devices (and many hosts).

``shard`` puts the rows of ``X`` over a 1-D device mesh (axis ``"rows"``) with a
``NamedSharding``; each device holds a contiguous block. ``em_fit`` keeps them there: every
pass over the data runs on each device over its own rows (``jax.shard_map``) and only the
sufficient statistics (a few (k, d, d) arrays) travel between devices. The same code runs
on one CPU, one GPU, all GPUs of a host, or many hosts after ``jax.distributed.initialize()``
(each process passes its own rows).

Testing without accelerators: ``XLA_FLAGS=--xla_force_host_platform_device_count=4``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from bayesgmm import _validation
from bayesgmm.chunks import ROW_AXIS


class ShardedRows(NamedTuple):
    """Rows sharded over a mesh, as made by ``shard``; pass it to ``em_fit`` in place of ``X``.

    X : (n_padded, d) jax.Array sharded over ``mesh``'s ``"rows"`` axis
    weights : (n_padded,) jax.Array, the row weights (``sample_weight``, 1 by default), 0 for
        the padding that makes every device's block the same size
    mesh : jax.sharding.Mesh
    n_samples : int, rows of ``X`` before padding (all processes together)
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
        raise ValueError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}.")
    devices = jax.devices() if mesh is None else list(np.asarray(mesh.devices).reshape(-1))
    return Mesh(np.asarray(devices), (ROW_AXIS,), axis_types=(AxisType.Auto,))


def shard(X, mesh: Mesh | None = None, *, sample_weight=None, dtype=None) -> ShardedRows:
    """Place the rows of ``X`` over the devices of ``mesh`` (all devices by default).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        With several processes (``jax.distributed``), each passes its own rows.
    mesh : jax.sharding.Mesh, optional
        Its devices are used as one axis named ``"rows"``.
    sample_weight : array-like of shape (n_samples,), optional
        Per-row weights, as in ``em_fit``.
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
    block = -(-n_local // len(local_devices))
    pad = block * len(local_devices) - n_local
    X = np.concatenate([X, np.zeros((pad, X.shape[1]))]).astype(dtype)
    weights = np.concatenate([weights, np.zeros(pad)]).astype(dtype)
    row_sharding = NamedSharding(mesh, PartitionSpec(ROW_AXIS))
    X_sharded = jax.make_array_from_process_local_data(row_sharding, X)
    weights_sharded = jax.make_array_from_process_local_data(row_sharding, weights)
    n_samples = n_local * jax.process_count() if jax.process_count() == 1 else int(_global_count(weights_sharded))
    return ShardedRows(X_sharded, weights_sharded, mesh, n_samples)


@jax.jit
def _global_count(weights: Array) -> Array:
    return jnp.sum(weights > 0)


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
