"""The E-step table: responsibility-weighted sufficient statistics over all rows.

``E_STEPS[moments](params, rows) -> (SufficientStatistics, WorstRow)``: one pass over the
weighted rows in chunks (``chunks.accumulate``), accumulating sums; never an (n, k, d)
array. Three formulations, one per entry:

- ``"whitened"``: second moments about the current means in whitened coordinates (accurate
  in float32 far from the origin);
- ``"raw"``: moments about the origin of the centred data from quadratic features (one
  matrix product per chunk each way, half the flops; used in float64);
- ``"missing"``: rows with NaN entries (``em_fit(missing="marginalize")``), the exact EM for
  incomplete data (Ghahramani and Jordan 1994): a row contributes through the marginal
  density of its observed coordinates ``o``, and the statistics use, per component, the
  conditional expectation of its missing coordinates and their conditional covariance
  (``bayesgmm._conditional``): ``Σ w r``, ``Σ w r (x̂ − μ_k)`` and
  ``Σ w r [(x̂ − μ_k)(x̂ − μ_k)ᵀ + C]`` about the current means, reduced to the covariance
  type's layout. ``O(n k d³)`` per iteration; chunks without missing entries take the
  ordinary ``O(c k d²)`` path (``em_fit`` puts the complete rows first);
- ``"errors"``: rows with known measurement errors (``em_fit(measurement_error=S)``), extreme
  deconvolution (Bovy, Hogg and Roweis 2011): row ``i`` is a noisy copy of a draw from the
  mixture, with density ``Σ_k π_k N(x_i | μ_k, Σ_k + S_i)``, and the statistics are those of
  ``"missing"`` with the moments of the true value given the row (``b_ik − μ_k`` and ``B_ik``,
  ``bayesgmm._conditional``) for the conditional ones; NaN entries of the rows (a missing
  coordinate is one of infinite error) are marginalised at the same time. ``O(n k d³)`` per
  iteration; the errors ride along the rows (``Rows.errors``).

All return statistics in data coordinates ("whitened" and "missing" about the current means,
"raw" about the origin) that feed one M-step (``_kernels.m_step``). Pure, unjitted,
``vmap``-safe.

References
----------
Z. Ghahramani and M. I. Jordan, "Supervised learning from incomplete data via an EM
approach", NIPS 6, 1994.

J. Bovy, D. W. Hogg and S. T. Roweis, "Extreme deconvolution: inferring complete distribution
functions from noisy, heterogeneous and incomplete observations", Annals of Applied
Statistics 5(2B):1657-1677, 2011.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax

from bayesgmm._arrays import host_cholesky, host_logsumexp
from bayesgmm._conditional import conditional_moments, error_covariances
from bayesgmm.chunks import Rows, WorstRow, accumulate, add, zeros_like_shapes
from bayesgmm.covariance import raw_coefficients
from bayesgmm.em._state import SufficientStatistics
from bayesgmm.families import maximise_dof
from bayesgmm.params import (
    GMMParams,
    component_log_joint,
    log_component_weights,
    noise_log_joint,
    observed_log_density,
    with_noise,
)


def _combine(a, b):
    return add(a[0], b[0]), a[1].merge(b[1])


def _identity_with_worst(shapes):
    sums, worst = shapes
    return zeros_like_shapes(sums), WorstRow.identity(worst)


def _density_terms(params: GMMParams):
    """``(log π (k,), the scale's inverse, log |Σ|^{1/2})``, computed once per E-step."""
    log_weights = log_component_weights(params)  # −inf for inactive components (weight 0)
    inverse = params.structure.core.inverse_scale(params.scale)
    return log_weights, inverse, params.structure.core.half_log_det(params.scale, params.n_features)


class Normalised(NamedTuple):
    """A chunk's components' responsibilities and what the noise component (if any) takes."""

    log_norm: Array  # (c,) log p(x_i): over the components and the noise
    resp: Array  # (k, c) w_i r_ik of the components
    max_log_resp: Array  # () Σ_i w_i max log r_i· (the noise component counts as a class)
    noise_sums: dict  # {"noise_count": Σ_i w_i r_i0} with a noise component, else empty


def _normalised(
    params: GMMParams, log_joint: Array, w: Array, observed: Array | None = None, *, rows_first: bool = False
) -> Normalised:
    """Responsibilities of a chunk from the components' log joint densities (k, c), with the noise
    component's (``params.noise_weight``; ``observed`` (c, d) bool for rows with missing entries).

    ``rows_first``: ``log_joint`` and the returned ``resp`` are (c, k) (the raw E-step's layout).
    """
    axis = 1 if rows_first else 0
    every = log_joint
    if params.noise_weight is not None:
        noise = jnp.broadcast_to(noise_log_joint(params, observed), w.shape)
        every = jnp.concatenate([log_joint, jnp.expand_dims(noise, axis)], axis=axis)
    log_norm = jax.nn.logsumexp(every, axis=axis)
    norm = jnp.expand_dims(log_norm, axis)
    resp = jnp.exp(log_joint - norm) * jnp.expand_dims(w, axis)
    max_log_resp = jnp.sum(w * (jnp.max(every, axis=axis) - log_norm))
    noise_sums = {}
    if params.noise_weight is not None:
        noise_sums = dict(noise_count=jnp.sum(w * jnp.exp(noise - log_norm)))
    return Normalised(log_norm, resp, max_log_resp, noise_sums)


def whitened_e_step(params: GMMParams, rows: Rows) -> tuple[SufficientStatistics, WorstRow]:
    """Statistics about the current means, accumulated in whitened coordinates.

    Returns ``(stats, worst)``: ``worst`` is the row of lowest log-likelihood (to re-seed an
    empty component).
    """
    structure = params.structure
    log_weights, inverse, half_log_det = _density_terms(params)
    scale_mixture = params.family_functions.e_step_terms  # None for Gaussian components

    def chunk_statistics(x, w, row_ids, chunk_index):
        log_joint, y, sq_norm = component_log_joint(params, log_weights, inverse, half_log_det, x)
        log_norm, resp, max_log_resp, family_sums = _normalised(params, log_joint, w)
        moment_resp = resp
        if scale_mixture is not None:
            u, dof_terms = scale_mixture(sq_norm, x.shape[-1], params.dof)
            moment_resp = resp * u
            family_sums |= dict(
                weighted_counts=jnp.sum(moment_resp, axis=1), dof_sums=jnp.sum(resp * dof_terms, axis=1)
            )
        sums = SufficientStatistics(
            counts=jnp.sum(resp, axis=1),
            first=jnp.einsum("kc,kdc->kd", moment_resp, y, precision="highest"),
            second=structure.em.second_moment(moment_resp, y, sq_norm),
            log_likelihood=jnp.sum(w * log_norm),
            max_log_resp=max_log_resp,
            **family_sums,
        )
        return sums, WorstRow.of_chunk(log_norm, w, row_ids)

    sums, worst = accumulate(rows, chunk_statistics, _combine, _identity_with_worst)
    first, second = structure.em.unwhiten(sums.first, sums.second, params.scale)
    return sums._replace(first=first, second=second, shift=params.means), worst


def raw_e_step(params: GMMParams, rows: Rows) -> tuple[SufficientStatistics, WorstRow]:
    """Statistics about the origin from quadratic features ``[x, q(x)]`` (float64 on centred data)."""
    structure, d = params.structure, params.n_features
    log_weights, inverse, half_log_det = _density_terms(params)

    coefficients, offsets = raw_coefficients(structure, log_weights, params.means, inverse, half_log_det)

    def chunk_statistics(x, w, row_ids, chunk_index):
        features = jnp.concatenate([x, structure.em.raw_features(x)], axis=1)  # (c, d + p)
        log_joint = jnp.matmul(features, coefficients, precision="highest") + offsets  # (c, k)
        log_norm, resp, max_log_resp, noise_sums = _normalised(params, log_joint, w, rows_first=True)
        moments_ = jnp.matmul(resp.T, features, precision="highest")  # (k, d + p)
        sums = SufficientStatistics(
            counts=jnp.sum(resp, axis=0),
            first=moments_[:, :d],
            second=structure.em.second_from_raw(moments_[:, d:]),
            log_likelihood=jnp.sum(w * log_norm),
            max_log_resp=max_log_resp,
            **noise_sums,
        )
        return sums, WorstRow.of_chunk(log_norm, w, row_ids)

    sums, worst = accumulate(rows, chunk_statistics, _combine, _identity_with_worst)
    return sums._replace(shift=jnp.zeros_like(params.means)), worst


def chunk_statistics(params: GMMParams, x: Array, w: Array, *, complete: bool, errors=None):
    """Sums over one chunk about the current means, in full (k, d, d) second-moment layout.

    ``complete=True`` (static): the chunk has no NaN, and the ordinary whitened densities are
    used (conditional covariances zero, ``x̂ = x``); ``False``: ``conditional_moments``,
    valid for any chunk, with the rows' measurement-error covariances ``errors`` (c, d, d)
    when given (``x̂`` and ``C`` are then the moments of the true values). Returns ``(counts,
    first, second_full, log_likelihood, max_log_resp, weighted_counts, dof_sums, noise_count),
    log_norm (c,)`` (``weighted_counts`` and ``dof_sums`` None for Gaussian components,
    ``noise_count`` without a noise component).

    Student-t components weight each row by ``u = E[u | x_o] = (ν + p)/(ν + δ²_o)``: ``first``
    is ``Σ w r u (x̂ − μ)`` and ``second`` ``Σ w r [u (x̂ − μ)(x̂ − μ)ᵀ + C]`` (given ``u`` the
    missing coordinates have covariance ``C / u``, and ``u`` cancels).
    """
    structure = params.structure
    k, d = params.n_components, params.n_features
    if complete:
        log_weights, inverse, half_log_det = _density_terms(params)
        log_joint, _, sq_norm = component_log_joint(params, log_weights, inverse, half_log_det, x)
        delta = x[None] - params.means[:, None, :]
        conditional_sum = jnp.zeros((k, d, d), x.dtype)
        n_observed = d
    else:
        covariances = structure.core.covariance_matrices(params.scale, k, d)
        moments = conditional_moments(
            log_component_weights(params),
            params.means,
            covariances,
            x,
            log_density=observed_log_density(params),
            errors=errors,
        )
        log_joint, delta, sq_norm, n_observed = moments.log_joint, moments.delta, moments.sq_norm, moments.n_observed
    log_norm, resp, max_log_resp, noise_sums = _normalised(params, log_joint, w, None if complete else ~jnp.isnan(x))
    if not complete:
        conditional_sum = jnp.einsum("kc,kcde->kde", resp, moments.conditional, precision="highest")
    scale_mixture = params.family_functions.e_step_terms
    moment_resp, weighted_counts, dof_sums = resp, None, None
    if scale_mixture is not None:
        u, dof_terms = scale_mixture(sq_norm, n_observed, params.dof)
        moment_resp = resp * u
        weighted_counts, dof_sums = jnp.sum(moment_resp, axis=1), jnp.sum(resp * dof_terms, axis=1)
    weighted = moment_resp[:, :, None] * delta
    sums = (
        jnp.sum(resp, axis=1),
        jnp.sum(weighted, axis=1),
        jnp.einsum("kcd,kce->kde", weighted, delta, precision="highest") + conditional_sum,
        jnp.sum(w * log_norm),
        max_log_resp,
        weighted_counts,
        dof_sums,
        noise_sums.get("noise_count"),
    )
    return sums, log_norm


def missing_e_step(params: GMMParams, rows: Rows) -> tuple[SufficientStatistics, WorstRow]:
    """``e_step`` for rows with NaN entries: statistics of the observed-data likelihood.

    Parameters
    ----------
    params : GMMParams (unbatched)
    rows : Rows (chunks (m, c, d) with NaN at the missing entries, weights (m, c))

    Returns
    -------
    stats : SufficientStatistics
        About ``shift = params.means``; ``log_likelihood`` is ``Σ_i w_i log p(x_i,o)``.
    worst : WorstRow
        The row of lowest observed-data log-likelihood.

    Chunks without NaN take the ordinary path (``lax.cond`` on the data, which stays a branch
    under ``vmap`` over restarts because the data are not batched); a row without missing
    entries gets the same statistics either way, up to round-off.
    """

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

    sums, worst = accumulate(rows, per_chunk, combine, identity)
    return _full_layout_statistics(params, sums), worst


def _full_layout_statistics(params: GMMParams, sums) -> SufficientStatistics:
    """``chunk_statistics``' sums over all rows as statistics about the current means, in the type's layout."""
    counts, first, second_full, log_likelihood, max_log_resp, weighted_counts, dof_sums, noise_count = sums
    return SufficientStatistics(
        counts=counts,
        first=first,
        second=params.structure.em.second_from_full(second_full),
        log_likelihood=log_likelihood,
        max_log_resp=max_log_resp,
        shift=params.means,
        weighted_counts=weighted_counts,
        dof_sums=dof_sums,
        noise_count=noise_count,
    )


def errors_e_step(params: GMMParams, rows: Rows) -> tuple[SufficientStatistics, WorstRow]:
    """``e_step`` for rows with measurement errors (``rows.errors``): extreme deconvolution's E-step.

    Parameters
    ----------
    params : GMMParams (unbatched)
    rows : Rows
        Chunks (m, c, d), NaN at missing entries allowed; weights (m, c); ``errors`` (m, c, d)
        error variances or (m, c, d, d) error covariances, positive semi-definite.

    Returns
    -------
    stats : SufficientStatistics
        About ``shift = params.means``: ``Σ w r``, ``Σ w r (b − μ_k)`` and
        ``Σ w r [(b − μ_k)(b − μ_k)ᵀ + B]`` (Bovy et al. 2011, eqs. 16-18, with ``r_ik ∝
        π_k N(x_i | μ_k, Σ_k + S_i)``) in the type's layout; ``log_likelihood`` is
        ``Σ_i w_i log Σ_k π_k N(x_i | μ_k, Σ_k + S_i)`` (over the observed coordinates).
    worst : WorstRow
        The row of lowest log-likelihood.

    Every chunk takes the conditional path (``O(c k d³)``: a Cholesky factor of ``Σ_k + S_i``
    per row and component), whose working arrays are (k, c, d, d) for one chunk only.
    """

    def per_chunk(x, w, row_ids, chunk_index):
        errors = error_covariances(rows.chunk_errors(chunk_index))
        sums, log_norm = chunk_statistics(params, x, w, complete=False, errors=errors)
        return sums, WorstRow.of_chunk(log_norm, w, row_ids)

    sums, worst = accumulate(rows, per_chunk, _combine, _identity_with_worst)
    return _full_layout_statistics(params, sums), worst


def fill_missing(rows: Rows) -> Rows:
    """The rows with NaN replaced by 0: on ``em_fit``'s centred data, the observed column means.

    Used for the initialisation (k-means++, Lloyd, the first responsibilities) and as the
    rows that re-seed empty components: these need complete rows, and imputing the observed
    column means keeps every row (with 20% of entries missing at random in 10 features, only
    11% of the rows are complete) at the cost of a start pulled towards the centre, which the
    EM iterations then correct.
    """
    return dataclasses.replace(rows, chunks=jnp.where(jnp.isnan(rows.chunks), 0.0, rows.chunks))


E_STEPS: dict[str, Callable[[GMMParams, Rows], tuple[SufficientStatistics, WorstRow]]] = {
    "whitened": whitened_e_step,
    "raw": raw_e_step,
    "missing": missing_e_step,
    "errors": errors_e_step,
}


def e_step(params: GMMParams, rows: Rows, moments: str = "whitened") -> tuple[SufficientStatistics, WorstRow]:
    """``E_STEPS[moments](params, rows)``: the statistics of ``params`` over all rows, and the worst row."""
    return E_STEPS[moments](params, rows)


def dof_step(params: GMMParams, rows: Rows, active: Array, moments: str = "whitened") -> GMMParams:
    """ECME's second pass: the parameters with the degrees of freedom that maximise the observed
    log-likelihood at their locations and scales (``families.maximise_dof``).

    One pass over the chunks keeps each row's ``log π_k − log |Σ_k|^{1/2}`` and ``δ²_ik`` (two
    (k, n) arrays: the search evaluates the likelihood at many ``ν`` without the rows); rows with
    missing entries use their observed coordinates. For rows in memory, on one device or sharded
    (the compiler partitions the pass and the search's sums over the mesh), and not with
    measurement errors, which the Student-t family does not take.
    """
    family = params.family_functions
    d = params.n_features
    log_weights, inverse, half_log_det = _density_terms(params)
    covariances = params.structure.core.covariance_matrices(params.scale, params.n_components, d)

    def complete(x):
        _, _, sq_norm = component_log_joint(params, log_weights, inverse, half_log_det, x)
        base = jnp.broadcast_to(log_weights[:, None] - jnp.reshape(half_log_det, (-1, 1)), sq_norm.shape)
        return base, sq_norm, jnp.full(x.shape[:1], d, x.dtype)

    def incomplete(x):
        found = conditional_moments(
            log_component_weights(params),
            params.means,
            covariances,
            x,
            with_covariances=False,
            log_density=observed_log_density(params),
        )
        n_observed = found.n_observed.astype(x.dtype)
        base = found.log_joint - family.log_density(found.sq_norm, n_observed, params.dof)
        return base, found.sq_norm, n_observed

    def per_chunk(x):
        if moments == "missing":
            pieces = lax.cond(jnp.any(jnp.isnan(x)), incomplete, complete, x)
        else:
            pieces = complete(x)
        if params.noise_weight is None:
            return pieces
        noise = jnp.broadcast_to(noise_log_joint(params, ~jnp.isnan(x)), x.shape[:1])
        return (*pieces, noise)

    found = lax.map(per_chunk, rows.chunks)  # (m, k, c), (m, k, c), (m, c)[, (m, c)]
    k = params.n_components
    base, sq_norm = (jnp.moveaxis(values, 1, 0).reshape((k, -1)) for values in found[:2])
    n_dims = found[2].reshape(-1) if moments == "missing" else d  # a scalar: ψ(ν/2 + p/2) once, not per row
    noise = found[3].reshape(-1) if len(found) > 3 else None
    weights = rows.weights.reshape(-1)
    dof = maximise_dof(family, params.dof, base, sq_norm, n_dims, weights, noise, active, params.dof_mode)
    return dataclasses.replace(params, dof=dof)


def numpy_dof_step(params: GMMParams, X, weights, active) -> GMMParams:
    """``dof_step`` on NumPy arrays (the NumPy driver's complete rows)."""
    base, sq_norm, _ = _numpy_distances(params, X)
    noise = None
    if params.noise_weight is not None:
        noise = np.broadcast_to(noise_log_joint(params), X.shape[:1])
    family = params.family_functions
    dof = maximise_dof(family, params.dof, base, sq_norm, X.shape[1], weights, noise, active, params.dof_mode)
    return dataclasses.replace(params, dof=dof)


def numpy_classify(params: GMMParams, X) -> np.ndarray:
    """(n,) each row's most probable component, on NumPy arrays (``params`` with NumPy leaves, no
    noise component): nothing is traced or compiled (``select``'s starts from another fit)."""
    base, sq_norm, _ = _numpy_distances(params, X)
    return np.argmax(base + params.family_functions.log_density(sq_norm, params.n_features, params.dof), axis=0)


def _numpy_distances(params: GMMParams, X):
    """``(log π_k − log |Σ_k|^{1/2} (k,), δ² (k, n), x − μ (k, n, d))`` on NumPy arrays."""
    k, d = params.n_components, params.n_features
    cholesky = host_cholesky(params.structure.core.covariance_matrices(params.scale, k, d))
    diff = X[None, :, :] - params.means[:, None, :]  # (k, n, d)
    whitened = np.linalg.inv(cholesky) @ np.swapaxes(diff, 1, 2)  # (k, d, n) L⁻¹ (x − μ); a quarter of solve's time
    half_log_det = np.sum(np.log(np.diagonal(cholesky, axis1=-2, axis2=-1)), axis=-1)
    return (log_component_weights(params) - half_log_det)[:, None], np.sum(whitened**2, axis=1), diff


def numpy_e_step(params: GMMParams, X, weights) -> tuple[SufficientStatistics, int]:
    """The E-step on NumPy arrays (the NumPy driver, ``_host``): statistics about the current means.

    ``X`` (n, d) and ``weights`` (n,) are NumPy arrays and ``params`` holds NumPy leaves; the
    densities use the dense covariances' Cholesky factors (``core.covariance_matrices``) and
    the second moments are reduced to the type's layout by ``em.second_from_full``, so one
    function serves every structure; Student-t components and a noise component as in the
    compiled E-steps. Returns the statistics and the index of the row of lowest log-likelihood
    among those of positive weight (``WorstRow``'s rule).
    """
    structure, d = params.structure, params.n_features
    base, sq_norm, diff = _numpy_distances(params, X)
    family = params.family_functions
    log_joint = base + family.log_density(sq_norm, d, params.dof)  # (k, n)
    every = with_noise(params, log_joint)  # and the noise component's row, if any
    log_norm = host_logsumexp(every, axis=0)  # (n,)
    resp = np.exp(log_joint - log_norm) * weights  # (k, n)
    moment_resp, extra = resp, {}
    if family.e_step_terms is not None:  # Student-t: moments weighted by u
        u, dof_terms = family.e_step_terms(sq_norm, d, params.dof)
        moment_resp = resp * u
        extra = dict(weighted_counts=np.sum(moment_resp, axis=1), dof_sums=np.sum(resp * dof_terms, axis=1))
    if params.noise_weight is not None:
        extra["noise_count"] = np.asarray(weights @ np.exp(every[-1] - log_norm))
    stats = SufficientStatistics(
        counts=np.sum(resp, axis=1),
        first=np.matmul(moment_resp[:, None, :], diff)[:, 0],  # matmul: a fifth of einsum's time here
        second=structure.em.second_from_full(np.matmul(np.swapaxes(moment_resp[..., None] * diff, 1, 2), diff)),
        log_likelihood=np.asarray(weights @ log_norm),
        max_log_resp=np.asarray(weights @ (np.max(every, axis=0) - log_norm)),
        shift=params.means,
        **extra,
    )
    return stats, int(np.argmin(np.where(weights > 0, log_norm, np.inf)))
