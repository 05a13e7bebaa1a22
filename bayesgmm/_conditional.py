"""Conditional moments of a Gaussian mixture given some coordinates of each row.

Two cases of the same formulas. For coordinates ``g`` given with values ``v`` and the other
ones ``o``, component ``k`` contributes its marginal density ``π_k N(v | μ_k,g, Σ_k,gg)`` (the
conditional's weight, once normalised), its conditional mean
``μ_k,o + Σ_k,og Σ_k,gg⁻¹ (v − μ_k,g)`` and its conditional covariance
``Σ_k,oo − Σ_k,og Σ_k,gg⁻¹ Σ_k,go``, computed from the Cholesky factor ``L`` of ``Σ_k,gg`` as
``A = L⁻¹ Σ_k,go`` and ``z = L⁻¹ (v − μ_k,g)``: mean ``μ_k,o + Aᵀ z``, covariance
``Σ_k,oo − Aᵀ A``, log density ``−½ (|g| log 2π + ‖z‖²) − Σ log diag L``.

- The same ``g`` for every row (``condition_given``: ``GMMParams.condition``, mixture
  regression): static blocks, one factor per component.
- Each row its own ``g`` (``conditional_moments``: rows with NaN entries, ``GMMParams.impute``
  and EM's missing-data E-step), below.

For rows with NaN entries (the missing coordinates ``m``; the observed ones ``o``), each
component's marginal density of ``x_o`` and its conditional mean and covariance of ``x_m``
given ``x_o``. Static shapes: each row's observed block is embedded in a full matrix,
``Σ̃_ik = M Σ_k M + (I − M)`` with ``M = diag(o_i)``, which equals ``Σ_k,oo`` on the observed
coordinates and the identity elsewhere. Its Cholesky factor ``L̃`` gives the marginal
(``log N(x_o | μ_o, Σ_oo) = −½ (|o| log 2π + ‖L̃⁻¹ M (x − μ)‖²) − Σ log diag L̃``),
``v = Σ̃⁻¹ M (x − μ)`` (zero on the missing coordinates), ``x̂ − μ = Σ v`` and
``C = Σ − (L̃⁻¹ M Σ)ᵀ (L̃⁻¹ M Σ)`` (masked to the missing block).

With measurement errors (extreme deconvolution, Bovy, Hogg and Roweis 2011) each row is a
noisy copy ``x_i = v_i + e_i`` of a draw ``v_i`` from the mixture, with known error covariance
``S_i``: its density under component ``k`` is ``N(x_i | μ_k, T_ik)``, ``T_ik = Σ_k + S_i``, and
the moments of the true value given the row are ``b_ik = μ_k + Σ_k T_ik⁻¹ (x_i − μ_k)`` and
``B_ik = Σ_k − Σ_k T_ik⁻¹ Σ_k``. These are the formulas above with ``T̃ = M (Σ + S) M + (I − M)``
in place of ``Σ̃`` (a missing coordinate is one of infinite error: it drops out of ``T``), so one
function serves both, and rows with NaN and errors together.

Used by ``GMMParams.impute`` (conditional means), ``GMMParams.log_prob(X, measurement_error=S)``
and by EM's missing-data and measurement-error E-steps (``em._estep``). Pure functions on
arrays; no ``jit``.

References
----------
J. Bovy, D. W. Hogg and S. T. Roweis, "Extreme deconvolution: inferring complete distribution
functions from noisy, heterogeneous and incomplete observations", Annals of Applied
Statistics 5(2B):1657-1677, 2011.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax
from jax.scipy.linalg import solve_triangular

from bayesgmm.covariance import LOG_2PI

# Elements of the largest per-chunk working array, (k, c, d, d), for ``impute_rows``.
CHUNK_ELEMENTS = 1 << 20


class ConditionalMoments(NamedTuple):
    """Per component and row of a chunk: the observed marginal and the missing coordinates' moments."""

    log_joint: Array  # (k, c) log π_k + log f_k(x_o) (Gaussian: log N(x_o | μ_ko, Σ_k,oo))
    delta: Array  # (k, c, d) E_k[x | x_o] − μ_k: x − μ_k on the observed coordinates
    conditional: Array | None  # (k, c, d, d) Cov_k[x | x_o] (Gaussian), zero outside the (missing, missing) block
    sq_norm: Array  # (k, c) (x − μ_k)_oᵀ Σ_k,oo⁻¹ (x − μ_k)_o, the observed Mahalanobis distances
    n_observed: Array  # (c,) observed coordinates per row


def gaussian_log_density(sq_norm: Array, n_observed: Array) -> Array:
    """``log N`` of the observed coordinates from their Mahalanobis distances, without ``log |Σ_oo|^{1/2}``."""
    return -0.5 * (n_observed * LOG_2PI + sq_norm)


def condition_given(log_weights: Array, means: Array, covariances: Array, given, other, values: Array):
    """Each component's marginal log density of the given coordinates and its conditional moments of the others.

    Parameters
    ----------
    log_weights : (k,)
    means : (k, d)
    covariances : (k, d, d) dense covariance matrices (``covariance_matrices`` of any type)
    given : tuple of int (static)
        The ``g`` given coordinates, in the order of the columns of ``values``.
    other : tuple of int (static)
        The ``o`` other coordinates, in the order of the outputs.
    values : (n, g) values of the given coordinates

    Returns
    -------
    log_joint : (k, n)
        ``log π_k + log N(v_i | μ_k,g, Σ_k,gg)``; a softmax over components gives the
        conditional's weights.
    conditional_means : (k, n, o)
        ``μ_k,o + Σ_k,og Σ_k,gg⁻¹ (v_i − μ_k,g)``.
    conditional_covariances : (k, o, o)
        ``Σ_k,oo − Σ_k,og Σ_k,gg⁻¹ Σ_k,go`` (the same for every row).
    """
    given_index, other_index = np.asarray(given), np.asarray(other)
    block_gg = covariances[:, given_index[:, None], given_index[None, :]]  # (k, g, g)
    block_go = covariances[:, given_index[:, None], other_index[None, :]]  # (k, g, o)
    block_oo = covariances[:, other_index[:, None], other_index[None, :]]  # (k, o, o)
    chol = jnp.linalg.cholesky(block_gg)
    residual = values.T[None] - means[:, given_index, None]  # (k, g, n)  v − μ_g
    z = solve_triangular(chol, residual, lower=True)  # (k, g, n)  L⁻¹ (v − μ_g)
    projected = solve_triangular(chol, block_go, lower=True)  # (k, g, o)  A = L⁻¹ Σ_go
    conditional_means = means[:, None, other_index] + jnp.einsum("kgo,kgn->kno", projected, z, precision="highest")
    explained = jnp.einsum("kgo,kgp->kop", projected, projected, precision="highest")
    half_log_det = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)  # (k,)
    sq_norm = jnp.sum(z**2, axis=1)  # (k, n)
    log_joint = log_weights[:, None] - 0.5 * (len(given) * LOG_2PI + sq_norm) - half_log_det[:, None]
    return log_joint, conditional_means, block_oo - explained


def conditional_moments(
    log_weights: Array,
    means: Array,
    covariances: Array,
    x: Array,
    *,
    with_covariances=True,
    log_density: Callable[[Array, Array], Array] = gaussian_log_density,
    errors: Array | None = None,
) -> ConditionalMoments:
    """Observed-marginal log joint densities, conditional means and covariances of a chunk of rows.

    Parameters
    ----------
    log_weights : (k,)
    means : (k, d)
    covariances : (k, d, d) dense covariance (or scale) matrices (``covariance_matrices`` of any type)
    x : (c, d) rows, NaN at the missing entries (no row entirely NaN)
    with_covariances : bool (static)
        Also return the conditional covariances (the E-step needs them, imputation does not).
    log_density : (sq_norm (k, c), n_observed (c,)) -> (k, c)
        The component family's log density of the observed coordinates without
        ``log |Σ_oo|^{1/2}`` (an elliptical family's marginal has the same form in the observed
        dimensions; Student-t: ``families.STUDENT_T.log_density`` with its ``dof``).
    errors : (c, d, d), optional
        Each row's measurement-error covariance ``S_i`` (positive semi-definite; its entries
        on missing coordinates are not used). The results are then those of the true value
        ``v`` given the noisy row: ``T = Σ + S`` replaces ``Σ`` in the density; ``delta`` is
        ``E_k[v | x_o] − μ_k = Σ_k,·o T_k,oo⁻¹ (x_o − μ_ko)`` on every coordinate (Bovy et al.'s
        ``b_ik − μ_k``) and ``conditional`` ``Σ_k − Σ_k,·o T_k,oo⁻¹ Σ_k,o·`` (their ``B_ik``).

    Returns
    -------
    ConditionalMoments
    """
    d = means.shape[-1]
    observed = ~jnp.isnan(x)
    mask = observed.astype(x.dtype)  # (c, d)
    residual = (jnp.where(observed, x, 0.0)[None] - means[:, None, :]) * mask  # (k, c, d) M (x − μ)
    eye = jnp.eye(d, dtype=x.dtype)
    # Σ̃ = M Σ M + (I − M): the observed block, the identity on the missing coordinates
    observed_block = covariances[:, None] if errors is None else covariances[:, None] + errors[None]  # Σ or Σ + S
    embedded = observed_block * (mask[:, :, None] * mask[:, None, :]) + eye * (1.0 - mask)[:, None, :]
    chol = jnp.linalg.cholesky(embedded)  # (k, c, d, d)
    z = solve_triangular(chol, residual[..., None], lower=True)  # (k, c, d, 1) L̃⁻¹ M (x − μ)
    v = solve_triangular(chol, z, lower=True, trans="T")[..., 0]  # Σ̃⁻¹ M (x − μ), 0 on missing
    delta = jnp.einsum("kde,kce->kcd", covariances, v, precision="highest")
    half_log_det = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)  # (k, c)
    sq_norm = jnp.sum(z[..., 0] ** 2, axis=-1)
    n_observed = jnp.sum(mask, axis=-1)  # (c,)
    log_joint = log_weights[:, None] + log_density(sq_norm, n_observed) - half_log_det
    if not with_covariances:
        return ConditionalMoments(log_joint, delta, None, sq_norm, n_observed)
    projected = solve_triangular(chol, mask[None, :, :, None] * covariances[:, None], lower=True)  # L̃⁻¹ M Σ
    explained = jnp.matmul(jnp.swapaxes(projected, -1, -2), projected, precision="highest")
    if errors is not None:  # the true values are uncertain on every coordinate
        return ConditionalMoments(log_joint, delta, covariances[:, None] - explained, sq_norm, n_observed)
    unobserved = 1.0 - mask
    conditional = (covariances[:, None] - explained) * (unobserved[:, :, None] * unobserved[:, None, :])
    return ConditionalMoments(log_joint, delta, conditional, sq_norm, n_observed)


def impute_rows(
    log_weights: Array,
    means: Array,
    covariances: Array,
    X: Array,
    log_density: Callable[[Array, Array], Array] = gaussian_log_density,
) -> Array:
    """``X`` (n, d) with each NaN replaced by its conditional mean ``E[x_m | x_o]`` under the mixture.

    ``covariances`` are the dense (k, d, d) matrices; ``log_density`` the family's (see
    ``conditional_moments``: for Student-t components the conditional mean of the missing
    coordinates is the Gaussian one, weighted by the t marginal's responsibilities). Rows are processed in chunks of
    about ``CHUNK_ELEMENTS`` working elements; chunks without NaN are returned as they are.
    """
    k, d = means.shape
    n = X.shape[0]
    chunk_size = int(min(n, max(1, CHUNK_ELEMENTS // (k * d * d))))
    n_chunks = -(-n // chunk_size)
    chunks = jnp.pad(X, ((0, n_chunks * chunk_size - n), (0, 0))).reshape((n_chunks, chunk_size, d))

    def incomplete(x):
        moments = conditional_moments(
            log_weights, means, covariances, x, with_covariances=False, log_density=log_density
        )
        resp = jax.nn.softmax(moments.log_joint, axis=0)  # (k, c)
        expected = jnp.einsum("kc,kcd->cd", resp, means[:, None, :] + moments.delta, precision="highest")
        return jnp.where(jnp.isnan(x), expected, x)

    def per_chunk(x):
        return lax.cond(jnp.any(jnp.isnan(x)), incomplete, lambda x: x, x)

    return lax.map(per_chunk, chunks).reshape((-1, d))[:n]


def error_covariances(errors: Array) -> Array:
    """Measurement-error covariances (..., d, d) from variances (..., d) (uncorrelated errors) or as given.

    ``errors`` with one axis fewer than a stack of matrices would have are the diagonals: a
    chunk's (c, d) variances become (c, d, d) diagonal matrices; (c, d, d) pass through.
    """
    if errors.ndim == 2:
        return errors[..., :, None] * jnp.eye(errors.shape[-1], dtype=errors.dtype)
    return errors


def log_joint_with_errors(log_weights: Array, means: Array, covariances: Array, X: Array, errors: Array) -> Array:
    """(k, n) ``log π_k + log N(x_i | μ_k, Σ_k + S_i)``, over the observed coordinates of rows with NaN.

    ``covariances`` are the dense (k, d, d) matrices, ``errors`` (n, d) error variances or
    (n, d, d) error covariances. Rows are processed in chunks of about ``CHUNK_ELEMENTS``
    working elements (never a (k, n, d, d) array).
    """
    k, d = means.shape
    n = X.shape[0]
    chunk_size = int(min(n, max(1, CHUNK_ELEMENTS // (k * d * d))))
    n_chunks = -(-n // chunk_size)

    def chunked(values):
        padded = jnp.pad(values, ((0, n_chunks * chunk_size - n),) + ((0, 0),) * (values.ndim - 1))
        return padded.reshape((n_chunks, chunk_size) + values.shape[1:])

    def per_chunk(inputs):
        x, s = inputs
        moments = conditional_moments(
            log_weights, means, covariances, x, with_covariances=False, errors=error_covariances(s)
        )
        return moments.log_joint.T  # (c, k)

    return lax.map(per_chunk, (chunked(X), chunked(errors))).reshape((-1, k))[:n].T
