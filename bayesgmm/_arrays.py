"""Host or device arrays: the array namespace of a computation, at the bottom of the layers.

Also ``bucket_size``, the coarse grid of padded sizes that lets nearby shapes share a compiled
program (rows of a fit, rows of the hierarchical start's tree).

A few table functions (``covariance``) and EM kernels (``em._kernels``) run on both kinds of
arrays: traced or device arrays inside compiled programs (``jax.numpy``), and NumPy arrays on
the host, where calling ``jax.numpy`` would compile a small program per operation
(``infer``'s EM start on small data). ``namespace(*arrays)`` picks the module.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

_HOST_TYPES = (np.ndarray, np.generic, int, float, bool)


def namespace(*arrays):
    """``numpy`` when every argument is a NumPy array or a Python/NumPy scalar, else ``jax.numpy``.

    A loop rather than ``all`` over a generator: the NumPy driver calls this about 20 times per EM
    iteration, and the generator's overhead was a tenth of an iteration on small data."""
    for value in arrays:
        if not isinstance(value, _HOST_TYPES):
            return jnp
    return np


def host_cholesky(symmetric: np.ndarray) -> np.ndarray:
    """NumPy's batched Cholesky factor, NaN for a matrix that is not positive definite (as JAX's)."""
    try:
        return np.linalg.cholesky(symmetric)
    except np.linalg.LinAlgError:
        flat = symmetric.reshape((-1,) + symmetric.shape[-2:])
        factors = np.full_like(flat, np.nan)
        for index, matrix in enumerate(flat):
            try:
                factors[index] = np.linalg.cholesky(matrix)
            except np.linalg.LinAlgError:
                pass
        return factors.reshape(symmetric.shape)


def host_logsumexp(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """``log Σ exp(values)`` along ``axis`` in NumPy: −inf where every value is −inf, +inf where one is.

    ``scipy.special.logsumexp`` computes the same (to round-off) but costs about 0.3 ms per call
    in array-API dispatch on small arrays: the NumPy driver calls this once per E-step.
    """
    largest = np.max(values, axis=axis, keepdims=True)
    shift = np.where(np.isfinite(largest), largest, 0.0)
    with np.errstate(divide="ignore"):
        total = np.log(np.sum(np.exp(values - shift), axis=axis, keepdims=True))
    return np.squeeze(total + shift, axis=axis)


def bucket_size(n: int) -> int:
    """A size >= n from a coarse grid, so that nearby sizes share one compiled program.

    Multiples of 64 up to 1024, then multiples of 2**(b − 5) with 2**b the largest power of
    two <= n: at most 1/16 (6%) more rows, about 16 sizes per doubling.
    """
    step = 64 if n <= 1024 else 1 << (n.bit_length() - 5)
    return -(-n // step) * step
