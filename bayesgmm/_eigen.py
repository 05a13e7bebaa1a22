"""mclust's eigen-decomposition covariance models: their M-steps and parameter counts.

Banfield & Raftery (1993) and Celeux & Govaert (1995) write a component's covariance as
``Σ_k = λ_k D_k A_k D_kᵀ``: volume ``λ_k`` (a scalar), shape ``A_k`` (diagonal, ``|A_k| = 1``)
and orientation ``D_k`` (orthogonal). A model's three letters say which of them are Equal
across components, Variable, or the Identity: EII, VII, EEI, VEI, EVI, VVI, EEE, VEE, EVE,
VVE, EEV, VEV, EVV, VVV (mclust's 14; scikit-learn's spherical, diag, tied and full are VII,
VVI, EEE and VVV).

``MODELS`` maps each name to its ``EigenModel``: the M-step's covariances from the
components' scatter matrices ``W_k = Σ_i w_i r_ik (x_i − μ_k)(x_i − μ_k)ᵀ`` and effective
counts ``n_k = Σ_i w_i r_ik``, mclust's number of covariance parameters, and the fewest rows a
component needs. The M-steps maximise ``−½ Σ_k (n_k log |Σ_k| + tr(Σ_k⁻¹ W_k))``:

- closed form (Celeux & Govaert 1995, table 1): EII, VII, EEI, EVI, VVI, EEE, EEV, EVV, VVV;
- fixed-point iterations (Celeux & Govaert 1995, §4): VEI, VEE and VEV, alternating the
  common shape (and orientation) with the volumes;
- the MM algorithms of Browne & McNicholas (2014) for the common orientation of EVE and VVE
  (the two majorisation steps mclust's Fortran takes, with VVE's scatter weighted by
  ``1/λ_k``, which makes each step a majorisation of VVE's own objective), alternating with
  the closed-form shapes and volumes.

The iterations stop when the relative change of the objective is under ``INNER_TOL`` (or
after ``INNER_MAX_ITER`` steps); each starts from the closed-form fit of a nearby model (the
volumes ``tr(W_k)/(d n_k)``, the orientation of ``Σ_k W_k``), since the M-step keeps no state
between EM iterations. The functions are pure and run on NumPy arrays (the NumPy driver) and
JAX arrays (the compiled programs; the iterations are ``lax.while_loop``\\ s), picking the
array module with ``_arrays.namespace``. Components with ``n_k = 0`` (switched off in
``select``'s grid) get the identity and take no part in the shared parameters.

References: J. D. Banfield and A. E. Raftery, "Model-based Gaussian and non-Gaussian
clustering", Biometrics 49, 1993. G. Celeux and G. Govaert, "Gaussian parsimonious clustering
models", Pattern Recognition 28(5), 1995. R. P. Browne and P. D. McNicholas, "Estimating
common principal components in high dimensions", Advances in Data Analysis and
Classification 8, 2014. L. Scrucca et al., "mclust 5", The R Journal 8(1), 2016 (table 3).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import lax

from bayesgmm._arrays import namespace

# The inner iterations of VEI, VEE, VEV, EVE and VVE: relative change of the objective
# below INNER_TOL (float64), or below ε in float32 (a looser stop, 100 ε, left EM on a worse
# VVE fit of iris, BIC -635.2 against -588.4: an M-step that stops short is no M-step), or
# INNER_MAX_ITER steps.
INNER_TOL = 1e-10
INNER_MAX_ITER = 500


class EigenModel(NamedTuple):
    """One of mclust's covariance models.

    covariances : (scatter (k, d, d), counts (k,)) -> (k, d, d) the M-step's covariance
        matrices (before ``reg_covar``); ``counts`` 0 marks a component switched off
    n_parameters : (k, d) -> int, mclust's number of free covariance parameters
    supported_rows : d -> float, the fewest effective rows a component needs (fewer leave the
        component's own part of the covariance singular; a spurious maximum)
    """

    covariances: Callable
    n_parameters: Callable[[int, int], int]
    supported_rows: Callable[[int], float]


# ----------------------------------------------------------------------------- helpers


def _active(counts, scatter=None):
    """Components that take part in the fit: a positive count (and, given ``scatter``, spread).

    ``counts`` 0: switched off (``select``'s grid, or the repair's fallback M-step, which
    passes them with counts 0 but ``nk`` 1); a component with a count but no spread (every
    row at its mean) would give a zero volume and leave the shared parameters undefined: it
    keeps out of them and gets a unit volume, and EM's repair re-seeds it (it is empty or
    invalid).
    """
    if scatter is None:
        return counts > 0
    return (counts > 0) & (_trace(scatter) > 0)


def _safe(counts):
    xp = namespace(counts)
    return xp.where(counts > 0, counts, 1.0)


def _eye(d: int, like):
    xp = namespace(like)
    return xp.eye(d, dtype=like.dtype)


def _trace(matrices):
    xp = namespace(matrices)
    return xp.trace(matrices, axis1=-2, axis2=-1)


def _diagonal(matrices):
    xp = namespace(matrices)
    return xp.diagonal(matrices, axis1=-2, axis2=-1)


def _geometric_mean(values, axis=-1):
    """``(Π values)^(1/d)`` along ``axis``, in log space."""
    xp = namespace(values)
    return xp.exp(xp.mean(xp.log(values), axis=axis))


def _diag_matrices(values):
    """``(..., d)`` -> ``(..., d, d)`` diagonal matrices."""
    xp = namespace(values)
    return values[..., :, None] * xp.eye(values.shape[-1], dtype=values.dtype)


def _log_det(matrices):
    """``log |M|`` of symmetric positive definite matrices, by their Cholesky factors."""
    xp = namespace(matrices)
    factor = xp.linalg.cholesky(matrices)
    return 2.0 * xp.sum(xp.log(_diagonal(factor)), axis=-1)


def _descending_eigh(matrices):
    """Eigenvalues (descending) and eigenvectors (columns) of symmetric matrices."""
    xp = namespace(matrices)
    values, vectors = xp.linalg.eigh(matrices)
    return values[..., ::-1], vectors[..., ::-1]


def _finish(covariances, counts):
    """The identity for switched-off components; symmetrised."""
    xp = namespace(covariances)
    d = covariances.shape[-1]
    covariances = 0.5 * (covariances + xp.swapaxes(covariances, -1, -2))
    return xp.where(_active(counts)[:, None, None], covariances, _eye(d, covariances))


def _tolerance(dtype) -> float:
    return max(INNER_TOL, float(np.finfo(dtype).eps))


def _iterate(step, state, objective, like):
    """Apply ``state = step(state)`` until ``objective(state)`` changes by under the tolerance (relative).

    ``lax.while_loop`` on JAX arrays, a Python loop on NumPy arrays.
    """
    tol = _tolerance(like.dtype)
    if namespace(like) is np:
        previous = objective(state)
        for _ in range(INNER_MAX_ITER):
            state = step(state)
            current = objective(state)
            if abs(current - previous) <= tol * (1.0 + abs(current)):
                break
            previous = current
        return state

    def condition(carry):
        _, previous, current, count = carry
        return (jnp.abs(current - previous) > tol * (1.0 + jnp.abs(current))) & (count < INNER_MAX_ITER)

    def body(carry):
        state, _, current, count = carry
        state = step(state)
        return state, current, objective(state), count + 1

    first = objective(state)
    state = step(state)
    state, *_ = lax.while_loop(condition, body, (state, first, objective(state), 1))
    return state


def _count(counts, scatter):
    """``Σ n_k`` over the components that take part, and their mask in the counts' dtype."""
    xp = namespace(counts)
    active = _active(counts, scatter)
    return xp.sum(xp.where(active, counts, 0.0)), xp.where(active, 1.0, 0.0).astype(counts.dtype)


# ----------------------------------------------------------------------------- closed forms


def _eii(scatter, counts):
    d = scatter.shape[-1]
    n, _ = _count(counts, scatter)
    xp = namespace(counts)
    volume = xp.sum(_trace(scatter)) / (n * d)
    return _finish(xp.broadcast_to(volume * _eye(d, scatter), scatter.shape), counts)


def _vii(scatter, counts):
    d = scatter.shape[-1]
    volume = _trace(scatter) / (d * _safe(counts))
    return _finish(volume[:, None, None] * _eye(d, scatter), counts)


def _eei(scatter, counts):
    xp = namespace(counts)
    n, _ = _count(counts, scatter)
    variances = xp.sum(_diagonal(scatter), axis=0) / n
    return _finish(xp.broadcast_to(_diag_matrices(variances), scatter.shape), counts)


def _evi(scatter, counts):
    xp = namespace(counts)
    n, active = _count(counts, scatter)
    diagonal = xp.where(_active(counts, scatter)[:, None], _diagonal(scatter), 1.0)
    size = _geometric_mean(diagonal)  # |diag(W_k)|^(1/d)
    volume = xp.sum(active * size) / n
    return _finish(_diag_matrices(volume * diagonal / size[:, None]), counts)


def _vvi(scatter, counts):
    return _finish(_diag_matrices(_diagonal(scatter) / _safe(counts)[:, None]), counts)


def _eee(scatter, counts):
    xp = namespace(counts)
    n, _ = _count(counts, scatter)
    return _finish(xp.broadcast_to(xp.sum(scatter, axis=0) / n, scatter.shape), counts)


def _eev(scatter, counts):
    xp = namespace(counts)
    n, active = _count(counts, scatter)
    values, vectors = _descending_eigh(scatter)  # W_k = D_k Ω_k D_kᵀ
    shape = xp.sum(active[:, None] * values, axis=0) / n  # λ A = Σ_k Ω_k / n
    return _finish(xp.matmul(vectors * shape[None, None, :], xp.swapaxes(vectors, -1, -2)), counts)


def _evv(scatter, counts):
    xp = namespace(counts)
    d = scatter.shape[-1]
    n, active = _count(counts, scatter)
    safe_scatter = xp.where(_active(counts, scatter)[:, None, None], scatter, _eye(d, scatter))
    size = xp.exp(_log_det(safe_scatter) / d)  # |W_k|^(1/d); NaN (JAX) or 0 where W_k is singular
    volume = xp.sum(xp.where(xp.isfinite(size), active * size, 0.0)) / n  # a singular W_k: that component fails alone
    return _finish(volume * safe_scatter / size[:, None, None], counts)


def _vvv(scatter, counts):
    return _finish(scatter / _safe(counts)[:, None, None], counts)


# ----------------------------------------------------------------------------- iterative


def _vei(scatter, counts):
    """Σ_k = λ_k B: B ∝ Σ_k diag(W_k)/λ_k with |B| = 1, λ_k = tr(W_k B⁻¹)/(d n_k)."""
    xp = namespace(counts)
    d = scatter.shape[-1]
    active = _active(counts, scatter)
    safe_counts = _safe(counts)
    diagonal = xp.where(active[:, None], _diagonal(scatter), 0.0)

    def volumes(shape):
        return xp.where(active, xp.sum(diagonal / shape, axis=-1) / (d * safe_counts), 1.0)

    def step(shape):
        weighted = xp.sum(diagonal / volumes(shape)[:, None], axis=0)
        return weighted / _geometric_mean(weighted)

    def objective(shape):  # Σ_k n_k d log λ_k (+ constant d Σ n_k at the fixed point)
        return xp.sum(counts * d * xp.log(volumes(shape)))

    shape = _iterate(step, xp.ones((d,), scatter.dtype), objective, scatter)
    return _finish(volumes(shape)[:, None, None] * _diag_matrices(shape), counts)


def _vee(scatter, counts):
    """Σ_k = λ_k C: C ∝ Σ_k W_k/λ_k with |C| = 1, λ_k = tr(C⁻¹ W_k)/(d n_k)."""
    xp = namespace(counts)
    d = scatter.shape[-1]
    active = _active(counts, scatter)
    safe_counts = _safe(counts)
    scatter = xp.where(active[:, None, None], scatter, 0.0)

    def volumes(shape):
        precision = xp.linalg.inv(shape)
        return xp.where(active, _trace(xp.matmul(precision[None], scatter)) / (d * safe_counts), 1.0)

    def step(shape):
        weighted = xp.sum(scatter / volumes(shape)[:, None, None], axis=0)
        return weighted / xp.exp(_log_det(weighted) / d)

    def objective(shape):
        return xp.sum(counts * d * xp.log(volumes(shape)))

    pooled = xp.sum(scatter, axis=0)
    shape = _iterate(step, pooled / xp.exp(_log_det(pooled) / d), objective, scatter)
    return _finish(volumes(shape)[:, None, None] * shape[None], counts)


def _vev(scatter, counts):
    """Σ_k = λ_k D_k A D_kᵀ: D_k the eigenvectors of W_k, A ∝ Σ_k Ω_k/λ_k, λ_k = tr(Ω_k A⁻¹)/(d n_k)."""
    xp = namespace(counts)
    d = scatter.shape[-1]
    active = _active(counts, scatter)
    safe_counts = _safe(counts)
    values, vectors = _descending_eigh(scatter)
    values = xp.where(active[:, None], values, 0.0)

    def volumes(shape):
        return xp.where(active, xp.sum(values / shape, axis=-1) / (d * safe_counts), 1.0)

    def step(shape):
        weighted = xp.sum(values / volumes(shape)[:, None], axis=0)
        return weighted / _geometric_mean(weighted)

    def objective(shape):
        return xp.sum(counts * d * xp.log(volumes(shape)))

    shape = _iterate(step, xp.ones((d,), scatter.dtype), objective, scatter)
    covariances = xp.matmul(vectors * shape[None, None, :], xp.swapaxes(vectors, -1, -2))
    return _finish(volumes(shape)[:, None, None] * covariances, counts)


def _common_orientation(scatter, counts, *, equal_volume: bool):
    """EVE (``equal_volume``) and VVE: ``Σ_k = λ_(k) D A_k Dᵀ`` with one orientation ``D``.

    Given ``D``: ``A_k ∝ diag(Dᵀ W_k D)`` with ``|A_k| = 1``, and the volumes in closed form.
    Given the shapes and volumes, ``D`` minimises ``Σ_k tr(W̃_k D A_k⁻¹ Dᵀ)`` with
    ``W̃_k = W_k / λ_k``: Browne & McNicholas's two majorisation steps, each an SVD of
    ``F₁ = Σ_k A_k⁻¹ Dᵀ W̃_k − ω_k A_k⁻¹ Dᵀ`` (``ω_k`` the largest eigenvalue of ``W̃_k``),
    ``D ← R Pᵀ`` for ``F₁ = P S Rᵀ``, and of ``F₂ = Σ_k W̃_k D A_k⁻¹ − max(A_k⁻¹) W̃_k D``,
    ``D ← P Rᵀ`` for ``F₂ = P S Rᵀ``.
    """
    xp = namespace(counts)
    d = scatter.shape[-1]
    active = _active(counts, scatter)
    safe_counts = _safe(counts)
    n, active_float = _count(counts, scatter)
    scatter = xp.where(active[:, None, None], scatter, 0.0)
    largest = _descending_eigh(scatter)[0][:, 0]

    def shapes_and_volumes(orientation):
        rotated = _diagonal(xp.matmul(xp.matmul(orientation.T[None], scatter), orientation[None]))  # diag(Dᵀ W_k D)
        rotated = xp.where(active[:, None], rotated, 1.0)
        size = _geometric_mean(rotated)
        shapes = rotated / size[:, None]
        if equal_volume:
            volume = xp.sum(active_float * size) / n
            volumes = xp.broadcast_to(volume, counts.shape)
        else:
            volumes = size / safe_counts
        return shapes, xp.where(active, volumes, 1.0)

    def step(orientation):
        shapes, volumes = shapes_and_volumes(orientation)
        weighted = scatter / volumes[:, None, None]
        omega = largest / volumes
        inverse_shapes = active_float[:, None] / shapes  # (k, d); switched-off components add nothing
        # MM 1: F = Σ_k A_k⁻¹ Dᵀ W̃_k − ω_k A_k⁻¹ Dᵀ
        scaled = inverse_shapes[:, :, None] * orientation.T[None]  # A_k⁻¹ Dᵀ
        first = xp.sum(xp.matmul(scaled, weighted) - omega[:, None, None] * scaled, axis=0)
        left, _, right_t = xp.linalg.svd(first)
        orientation = xp.matmul(right_t.T, left.T)
        # MM 2: F = Σ_k W̃_k D A_k⁻¹ − max(A_k⁻¹) W̃_k D
        projected = xp.matmul(weighted, orientation[None])  # W̃_k D
        second = xp.sum(
            projected * inverse_shapes[:, None, :] - xp.max(inverse_shapes, axis=-1)[:, None, None] * projected,
            axis=0,
        )
        left, _, right_t = xp.linalg.svd(second)
        return xp.matmul(left, right_t)

    def objective(orientation):
        shapes, volumes = shapes_and_volumes(orientation)
        return xp.sum(counts * (d * xp.log(volumes))) + xp.sum(
            active_float
            * xp.sum(_diagonal(xp.matmul(xp.matmul(orientation.T[None], scatter), orientation[None])) / shapes, axis=-1)
            / volumes
        )

    orientation = _iterate(step, _descending_eigh(xp.sum(scatter, axis=0))[1], objective, scatter)
    shapes, volumes = shapes_and_volumes(orientation)
    covariances = xp.matmul(orientation[None] * (volumes[:, None] * shapes)[:, None, :], orientation.T[None])
    return _finish(covariances, counts)


def _eve(scatter, counts):
    return _common_orientation(scatter, counts, equal_volume=True)


def _vve(scatter, counts):
    return _common_orientation(scatter, counts, equal_volume=False)


# ----------------------------------------------------------------------------- the table


def _pairs(d: int) -> int:
    return d * (d - 1) // 2


# mclust's nVarParams (R/mclust.R): covariance parameters of each model for G components in d dimensions
MODELS: dict[str, EigenModel] = {
    "EII": EigenModel(_eii, lambda k, d: 1, lambda d: 1.0),
    "VII": EigenModel(_vii, lambda k, d: k, lambda d: 2.0),
    "EEI": EigenModel(_eei, lambda k, d: d, lambda d: 1.0),
    "VEI": EigenModel(_vei, lambda k, d: k + (d - 1), lambda d: 2.0),
    "EVI": EigenModel(_evi, lambda k, d: 1 + k * (d - 1), lambda d: 2.0),
    "VVI": EigenModel(_vvi, lambda k, d: k * d, lambda d: 2.0),
    "EEE": EigenModel(_eee, lambda k, d: d + _pairs(d), lambda d: 1.0),
    "VEE": EigenModel(_vee, lambda k, d: k + (d - 1) + _pairs(d), lambda d: 2.0),
    "EVE": EigenModel(_eve, lambda k, d: 1 + k * (d - 1) + _pairs(d), lambda d: 2.0),
    "VVE": EigenModel(_vve, lambda k, d: k + k * (d - 1) + _pairs(d), lambda d: 2.0),
    "EEV": EigenModel(_eev, lambda k, d: 1 + (d - 1) + k * _pairs(d), lambda d: 1.0),
    "VEV": EigenModel(_vev, lambda k, d: k + (d - 1) + k * _pairs(d), lambda d: 2.0),
    "EVV": EigenModel(_evv, lambda k, d: 1 + k * (d - 1) + k * _pairs(d), lambda d: d + 1.0),
    "VVV": EigenModel(_vvv, lambda k, d: k * (d + _pairs(d)), lambda d: d + 1.0),
}
