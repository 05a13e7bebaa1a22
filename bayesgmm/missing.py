"""Missing values: the exact EM for incomplete data, and imputation by conditional means.

``em_fit(X, k, missing="marginalize")`` fits rows with NaN entries (missing at random) by the
EM of Ghahramani and Jordan (1994): in the E-step a row contributes through the marginal
density of its observed coordinates ``o``, and the M-step uses, per component, the conditional
expectation of its missing coordinates ``m`` and their conditional covariance:

- ``r_ik ∝ π_k N(x_o | μ_ko, Σ_k,oo)``,
- ``x̂_ik = E_k[x | x_o]``: ``x_o`` on ``o``, ``μ_km + Σ_k,mo Σ_k,oo⁻¹ (x_o − μ_ko)`` on ``m``,
- ``C_ik = Cov_k[x | x_o]``: ``Σ_k,mm − Σ_k,mo Σ_k,oo⁻¹ Σ_k,om`` on the (m, m) block, 0 elsewhere,

and the statistics ``Σ w r``, ``Σ w r (x̂ − μ_k)`` and ``Σ w r [(x̂ − μ_k)(x̂ − μ_k)ᵀ + C]``
(about the current means, reduced to the covariance type's layout by
``CovarianceStructure.em.second_from_full``) feed the ordinary M-step (``em.m_step``).

Static shapes: each row's observed block is embedded in a full matrix,
``Σ̃_ik = M Σ_k M + (I − M)`` with ``M = diag(o_i)``, which equals ``Σ_k,oo`` on the observed
coordinates and the identity elsewhere. Its Cholesky factor ``L̃`` gives the marginal
(``log N(x_o | μ_o, Σ_oo) = −½ (|o| log 2π + ‖L̃⁻¹ M (x − μ)‖²) − Σ log diag L̃``),
``v = Σ̃⁻¹ M (x − μ)`` (zero on the missing coordinates), ``x̂ − μ = Σ v`` and
``C = Σ − (L̃⁻¹ M Σ)ᵀ (L̃⁻¹ M Σ)`` (masked to the missing block). This costs one (d, d)
Cholesky factorisation and solve per row and component, ``O(n k d³)`` per iteration for every
covariance type, and (c, k, d, d) working arrays per chunk of ``c`` rows; chunks without
missing entries take the ordinary ``O(c k d²)`` path (``em_fit`` puts the complete rows
first, so they fill whole chunks).

Pure functions, no ``jit``: ``em.py`` calls ``missing_e_step`` inside its loop.

References
----------
Z. Ghahramani and M. I. Jordan, "Supervised learning from incomplete data via an EM
approach", NIPS 6, 1994.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax
from jax.scipy.linalg import solve_triangular

from bayesgmm import _validation
from bayesgmm.chunks import Rows, WorstRow, accumulate, add, zeros_like_shapes
from bayesgmm.covariance import LOG_2PI, whitened_log_joint
from bayesgmm.params import GMMParams, map_batch

# Elements of the largest per-chunk working array, (k, c, d, d), for ``impute``.
_CHUNK_ELEMENTS = 1 << 20


def conditional_moments(log_weights: Array, means: Array, covariances: Array, x: Array, *, with_covariances=True):
    """Observed-marginal log joint densities, conditional means and covariances of a chunk of rows.

    Parameters
    ----------
    log_weights : (k,)
    means : (k, d)
    covariances : (k, d, d) dense covariance matrices (``covariance_matrices`` of any type)
    x : (c, d) rows, NaN at the missing entries (no row entirely NaN)
    with_covariances : bool (static)
        Also return the conditional covariances (the E-step needs them, imputation does not).

    Returns
    -------
    log_joint : (k, c)
        ``log π_k + log N(x_o | μ_ko, Σ_k,oo)``.
    delta : (k, c, d)
        ``E_k[x | x_o] − μ_k``: ``x − μ_k`` on the observed coordinates.
    conditional : (k, c, d, d) or None
        ``Cov_k[x | x_o]``, zero outside the (missing, missing) block.
    """
    d = means.shape[-1]
    observed = ~jnp.isnan(x)
    mask = observed.astype(x.dtype)  # (c, d)
    residual = (jnp.where(observed, x, 0.0)[None] - means[:, None, :]) * mask  # (k, c, d) M (x − μ)
    eye = jnp.eye(d, dtype=x.dtype)
    # Σ̃ = M Σ M + (I − M): the observed block, the identity on the missing coordinates
    embedded = covariances[:, None] * (mask[:, :, None] * mask[:, None, :]) + eye * (1.0 - mask)[:, None, :]
    chol = jnp.linalg.cholesky(embedded)  # (k, c, d, d)
    z = solve_triangular(chol, residual[..., None], lower=True)  # (k, c, d, 1) L̃⁻¹ M (x − μ)
    v = solve_triangular(chol, z, lower=True, trans="T")[..., 0]  # Σ̃⁻¹ M (x − μ), 0 on missing
    delta = jnp.einsum("kde,kce->kcd", covariances, v, precision="highest")
    half_log_det = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)  # (k, c)
    sq_norm = jnp.sum(z[..., 0] ** 2, axis=-1)
    n_observed = jnp.sum(mask, axis=-1)  # (c,)
    log_joint = log_weights[:, None] - 0.5 * (n_observed * LOG_2PI + sq_norm) - half_log_det
    if not with_covariances:
        return log_joint, delta, None
    projected = solve_triangular(chol, mask[None, :, :, None] * covariances[:, None], lower=True)  # L̃⁻¹ M Σ
    explained = jnp.matmul(jnp.swapaxes(projected, -1, -2), projected, precision="highest")
    unobserved = 1.0 - mask
    conditional = (covariances[:, None] - explained) * (unobserved[:, :, None] * unobserved[:, None, :])
    return log_joint, delta, conditional


def chunk_statistics(params: GMMParams, x: Array, w: Array, *, complete: bool):
    """Sums over one chunk about the current means, in full (k, d, d) second-moment layout.

    ``complete=True`` (static): the chunk has no NaN, and the ordinary whitened densities are
    used (conditional covariances zero, ``x̂ = x``); ``False``: ``conditional_moments``,
    valid for any chunk. Returns ``(counts, first, second_full, log_likelihood, max_log_resp),
    log_norm (c,)``.
    """
    structure = params.structure
    k, d = params.n_components, params.n_features
    log_weights = jnp.log(params.weights)  # −inf for inactive components (weight 0)
    if complete:
        inverse = structure.core.inverse_scale(params.scale)
        half_log_det = structure.core.half_log_det(params.scale, d)
        log_joint, _, _ = whitened_log_joint(structure, log_weights, params.means, inverse, half_log_det, x)
        delta = x[None] - params.means[:, None, :]
        conditional_sum = jnp.zeros((k, d, d), x.dtype)
    else:
        covariances = structure.core.covariance_matrices(params.scale, k, d)
        log_joint, delta, conditional = conditional_moments(log_weights, params.means, covariances, x)
    log_norm = jax.nn.logsumexp(log_joint, axis=0)
    resp = jnp.exp(log_joint - log_norm) * w  # (k, c)
    if not complete:
        conditional_sum = jnp.einsum("kc,kcde->kde", resp, conditional, precision="highest")
    weighted = resp[:, :, None] * delta
    sums = (
        jnp.sum(resp, axis=1),
        jnp.sum(weighted, axis=1),
        jnp.einsum("kcd,kce->kde", weighted, delta, precision="highest") + conditional_sum,
        jnp.sum(w * log_norm),
        jnp.sum(w * (jnp.max(log_joint, axis=0) - log_norm)),
    )
    return sums, log_norm


def missing_e_step(params: GMMParams, rows: Rows):
    """``em.e_step`` for rows with NaN entries: statistics of the observed-data likelihood.

    Parameters
    ----------
    params : GMMParams (unbatched)
    rows : Rows (chunks (m, c, d) with NaN at the missing entries, weights (m, c))

    Returns
    -------
    stats : em.SufficientStatistics
        About ``shift = params.means``; ``log_likelihood`` is ``Σ_i w_i log p(x_i,o)``.
    worst : WorstRow
        The row of lowest observed-data log-likelihood.

    Chunks without NaN take the ordinary path (``lax.cond`` on the data, which stays a branch
    under ``vmap`` over restarts because the data are not batched); a row without missing
    entries gets the same statistics either way, up to round-off.
    """
    from bayesgmm.em import SufficientStatistics

    def per_chunk(x, w, row_ids, chunk_index):
        def branch(complete):
            def run(x, w):
                sums, log_norm = chunk_statistics(params, x, w, complete=complete)
                return sums, WorstRow.of_chunk(log_norm, w, row_ids)

            return run

        return lax.cond(jnp.any(jnp.isnan(x)), branch(False), branch(True), x, w)

    def combine(a, b):
        return add(a[0], b[0]), a[1].merge(b[1])

    def identity(shapes):
        return zeros_like_shapes(shapes[0]), WorstRow.identity(shapes[1])

    (counts, first, second_full, log_likelihood, max_log_resp), worst = accumulate(rows, per_chunk, combine, identity)
    stats = SufficientStatistics(
        counts=counts,
        first=first,
        second=params.structure.em.second_from_full(second_full),
        log_likelihood=log_likelihood,
        max_log_resp=max_log_resp,
        shift=params.means,
    )
    return stats, worst


def fill_missing(rows: Rows) -> Rows:
    """The rows with NaN replaced by 0: on ``em_fit``'s centred data, the observed column means.

    Used for the initialisation (k-means++, Lloyd, the first responsibilities) and as the
    rows that re-seed empty components: these need complete rows, and imputing the observed
    column means keeps every row (with 20% of entries missing at random in 10 features, only
    11% of the rows are complete) at the cost of a start pulled towards the centre, which the
    EM iterations then correct.
    """
    return dataclasses.replace(rows, chunks=jnp.where(jnp.isnan(rows.chunks), 0.0, rows.chunks))


def complete_rows_first(X: np.ndarray) -> np.ndarray:
    """A stable row order with the complete rows first (so they fill whole chunks of the fast path)."""
    return np.argsort(np.isnan(X).any(axis=1), kind="stable")


def observed_moments(X: np.ndarray, weights: np.ndarray):
    """Weighted mean and covariance of rows with NaN, from the observed entries (float64, on the host).

    The mean and variance of each feature are over the rows where it is observed (unbiased
    when values are missing completely at random); the correlations are those of the rows with
    the missing entries replaced by the observed column means (shrunk towards 0, but the
    matrix stays positive semi-definite, unlike pairwise-complete covariances). Used to
    centre and rescale the data and for ``em_fit``'s fallback regularisation and re-seeding.

    Returns
    -------
    center : (d,)
    covariance : (d, d)
    observed_features : float
        The weighted mean number of observed features per row (for the log-likelihood's
        change of scale).
    """
    observed = ~np.isnan(X)
    observed_weight = weights @ observed  # (d,)
    unobserved = np.flatnonzero(observed_weight <= 0)
    if unobserved.size:
        raise ValueError(
            f"Feature {unobserved[0]} of X is NaN in every row of positive weight "
            f"({unobserved.size} such feature(s)); nothing can be learnt about it: drop that column."
        )
    filled = np.where(observed, X, 0.0)
    center = weights @ filled / observed_weight
    centred = np.where(observed, X - center, 0.0)
    variances = weights @ centred**2 / observed_weight
    imputed = (centred * weights[:, None]).T @ centred / weights.sum()
    imputed_std = np.sqrt(np.diag(imputed))
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = imputed / np.outer(imputed_std, imputed_std)
    correlation = np.where(np.isfinite(correlation), correlation, 0.0)
    np.fill_diagonal(correlation, 1.0)
    std = np.sqrt(variances)
    observed_features = float(weights @ observed.sum(axis=1) / weights.sum())
    return center, correlation * np.outer(std, std), observed_features


def impute(params: GMMParams, X) -> Array:
    """``X`` with each NaN replaced by its conditional mean ``E[x_m | x_o]`` under the mixture.

    See ``GMMParams.impute``.
    """
    if not isinstance(X, jax.core.Tracer):  # concrete input: check it here (under jit only the shape)
        X = _validation.check_data(X, allow_nan=True)  # NaN allowed; infinities and entirely-NaN rows are not
    return _impute(params, params.as_data(X))


@jax.jit  # one compiled program per shape, not a retrace of the chunk loop at every call
def _impute(params: GMMParams, X: Array) -> Array:
    return map_batch(lambda p: _impute_unbatched(p, X), params)


def _impute_unbatched(params: GMMParams, X: Array) -> Array:
    k, d = params.n_components, params.n_features
    n = X.shape[0]
    chunk_size = int(min(n, max(1, _CHUNK_ELEMENTS // (k * d * d))))
    n_chunks = -(-n // chunk_size)
    chunks = jnp.pad(X, ((0, n_chunks * chunk_size - n), (0, 0))).reshape((n_chunks, chunk_size, d))
    log_weights = jnp.log(params.weights)
    covariances = params.covariance_matrices

    def incomplete(x):
        log_joint, delta, _ = conditional_moments(log_weights, params.means, covariances, x, with_covariances=False)
        resp = jax.nn.softmax(log_joint, axis=0)  # (k, c)
        expected = jnp.einsum("kc,kcd->cd", resp, params.means[:, None, :] + delta, precision="highest")
        return jnp.where(jnp.isnan(x), expected, x)

    def per_chunk(x):
        return lax.cond(jnp.any(jnp.isnan(x)), incomplete, lambda x: x, x)

    return lax.map(per_chunk, chunks).reshape((-1, d))[:n]
