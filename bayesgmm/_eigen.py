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
volumes ``tr(W_k)/(d n_k)``, the orientation of ``Σ_k W_k``); EVE's and VVE's orientation
also from EM's current covariances when that start is better (the M-step keeps no state of its
own between EM iterations). The functions are pure and run on NumPy arrays (the NumPy driver) and
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
        matrices (before ``reg_covar``); ``counts`` 0 marks a component switched off; a
        ``warm_start`` model's also takes ``previous`` (k, d, d), optional: the covariances the
        scatter was computed under (EM's current parameters), where its iterations may start
    n_parameters : (k, d) -> int, mclust's number of free covariance parameters
    supported_rows : d -> float, the fewest effective rows a component needs (fewer leave the
        component's own part of the covariance singular; a spurious maximum)
    host_cost : float, the M-step's time on em's NumPy driver per unit of ``select``'s work
        estimate relative to a closed-form M-step's (``HOST_COST``)
    warm_start : bool, ``covariances`` takes ``previous`` (EVE and VVE: ``_common_orientation``)
    """

    covariances: Callable
    n_parameters: Callable[[int, int], int]
    supported_rows: Callable[[int], float]
    host_cost: float = 1.0
    warm_start: bool = False


# ----------------------------------------------------------------------------- helpers


def _active(counts, scatter):
    """Components that take part in the shared parameters: a positive count and some spread.

    ``counts`` 0: switched off (``select``'s grid; the repair's fallback M-step passes them
    with counts 0 but ``nk`` 1): they get the identity. A component with a count but no spread
    (its rows all at its mean, or one row: the start of ``init="random_from_data"``) has no
    volume of its own: it keeps out of the shared estimates and gets what the model gives
    it (zero where its own volume enters, as ``VVV``'s ``W_k / n_k``; ``reg_covar`` then
    holds it up, and EM's repair re-seeds it if it stays empty).
    """
    return (counts > 0) & (_trace(scatter) > 0)


def _safe(values):
    """``values`` where positive, else 1: safe to divide by or to take the log of."""
    xp = namespace(values)
    return xp.where(values > 0, values, 1.0)


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
    """``(Π values)^(1/d)`` along ``axis``, in log space; entries that are not positive (a
    direction without spread) count as 1, so a degenerate shape stays finite."""
    xp = namespace(values)
    return xp.exp(xp.mean(xp.log(_safe(values)), axis=axis))


def _diag_matrices(values):
    """``(..., d)`` -> ``(..., d, d)`` diagonal matrices."""
    xp = namespace(values)
    return values[..., :, None] * xp.eye(values.shape[-1], dtype=values.dtype)


def _size(matrices):
    """``|M|^(1/d)`` of symmetric positive semi-definite matrices, 0 where singular."""
    xp = namespace(matrices)
    sign, log_det = xp.linalg.slogdet(matrices)
    return xp.where(sign > 0, xp.exp(log_det / matrices.shape[-1]), 0.0)


def _descending_eigh(matrices):
    """Eigenvalues (descending, round-off negatives set to 0) and eigenvectors (columns)."""
    xp = namespace(matrices)
    values, vectors = xp.linalg.eigh(matrices)
    return xp.maximum(values[..., ::-1], 0.0), vectors[..., ::-1]


def _totals(counts, scatter):
    """``(n, active, weight)``: ``Σ n_k`` over the active components (1 if none), their mask,
    and the mask in the counts' dtype."""
    xp = namespace(counts)
    active = _active(counts, scatter)
    weight = xp.where(active, 1.0, 0.0).astype(counts.dtype)
    return _safe(xp.sum(weight * counts)), active, weight


def _finish(covariances, counts):
    """The identity for switched-off components; symmetrised."""
    xp = namespace(covariances)
    d = covariances.shape[-1]
    covariances = 0.5 * (covariances + xp.swapaxes(covariances, -1, -2))
    return xp.where((counts > 0)[:, None, None], covariances, _eye(d, covariances))


def _quiet(covariances):
    """An M-step on NumPy arrays without NumPy's warnings on degenerate components (their
    NaN or zero covariances are EM's to repair and report), as JAX computes them."""

    def quietly(scatter, counts, *previous):
        if namespace(scatter, counts) is np:
            with np.errstate(divide="ignore", invalid="ignore"):
                return covariances(scatter, counts, *previous)
        return covariances(scatter, counts, *previous)

    quietly.__name__ = quietly.__qualname__ = covariances.__name__
    quietly.__doc__ = covariances.__doc__
    return quietly


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


# ----------------------------------------------------------------------------- closed forms


def _eii(scatter, counts):
    xp = namespace(counts)
    d = scatter.shape[-1]
    n, _, weight = _totals(counts, scatter)
    volume = xp.sum(weight * _trace(scatter)) / (n * d)
    return _finish(xp.broadcast_to(volume * _eye(d, scatter), scatter.shape), counts)


def _vii(scatter, counts):
    d = scatter.shape[-1]
    volume = _trace(scatter) / (d * _safe(counts))
    return _finish(volume[:, None, None] * _eye(d, scatter), counts)


def _eei(scatter, counts):
    xp = namespace(counts)
    n, _, weight = _totals(counts, scatter)
    variances = xp.sum(weight[:, None] * _diagonal(scatter), axis=0) / n
    return _finish(xp.broadcast_to(_diag_matrices(variances), scatter.shape), counts)


def _evi(scatter, counts):
    xp = namespace(counts)
    n, _, weight = _totals(counts, scatter)
    diagonal = _diagonal(scatter)
    size = _geometric_mean(diagonal)  # |diag(W_k)|^(1/d)
    volume = xp.sum(weight * size) / n
    return _finish(_diag_matrices(volume * diagonal / size[:, None]), counts)


def _vvi(scatter, counts):
    return _finish(_diag_matrices(_diagonal(scatter) / _safe(counts)[:, None]), counts)


def _eee(scatter, counts):
    xp = namespace(counts)
    n, _, weight = _totals(counts, scatter)
    return _finish(xp.broadcast_to(xp.sum(weight[:, None, None] * scatter, axis=0) / n, scatter.shape), counts)


def _eev(scatter, counts):
    xp = namespace(counts)
    n, _, weight = _totals(counts, scatter)
    values, vectors = _descending_eigh(scatter)  # W_k = D_k Ω_k D_kᵀ
    shape = xp.sum(weight[:, None] * values, axis=0) / n  # λ A = Σ_k Ω_k / n
    return _finish(xp.matmul(vectors * shape[None, None, :], xp.swapaxes(vectors, -1, -2)), counts)


def _evv(scatter, counts):
    xp = namespace(counts)
    n, _, weight = _totals(counts, scatter)
    size = _size(scatter)  # |W_k|^(1/d); 0 where W_k is singular (that component fails alone)
    volume = xp.sum(weight * size) / n
    return _finish(volume * scatter / _safe(size)[:, None, None], counts)


def _vvv(scatter, counts):
    return _finish(scatter / _safe(counts)[:, None, None], counts)


# ----------------------------------------------------------------------------- iterative


def _common_shape(values, counts, weight):
    """VEI and VEV: ``λ_k A`` with ``A ∝ Σ_k Ω_k / λ_k`` (``|A| = 1``) and ``λ_k = Σ_j Ω_kj / A_j / (d n_k)``.

    ``values (k, d)``: each component's variances along its own axes (VEI: the diagonal of
    ``W_k``; VEV: the eigenvalues of ``W_k``, descending). Returns ``(volumes (k,), shape (d,))``.
    """
    xp = namespace(values)
    d = values.shape[-1]

    def volumes(shape):
        return xp.sum(values / _safe(shape), axis=-1) / (d * _safe(counts))

    def step(shape):
        weighted = xp.sum(weight[:, None] * values / _safe(volumes(shape))[:, None], axis=0)
        return weighted / _geometric_mean(weighted)

    def objective(shape):  # Σ_k n_k d log λ_k (the trace term is d Σ n_k at the fixed point)
        return xp.sum(weight * counts * d * xp.log(_safe(volumes(shape))))

    shape = _iterate(step, xp.ones((d,), values.dtype), objective, values)
    return volumes(shape), shape


def _vei(scatter, counts):
    """Σ_k = λ_k B: B ∝ Σ_k diag(W_k)/λ_k with |B| = 1, λ_k = tr(W_k B⁻¹)/(d n_k)."""
    _, _, weight = _totals(counts, scatter)
    volumes, shape = _common_shape(_diagonal(scatter), counts, weight)
    return _finish(volumes[:, None, None] * _diag_matrices(shape), counts)


def _vev(scatter, counts):
    """Σ_k = λ_k D_k A D_kᵀ: D_k the eigenvectors of W_k, A ∝ Σ_k Ω_k/λ_k, λ_k = tr(Ω_k A⁻¹)/(d n_k)."""
    xp = namespace(counts)
    _, _, weight = _totals(counts, scatter)
    values, vectors = _descending_eigh(scatter)
    volumes, shape = _common_shape(values, counts, weight)
    covariances = xp.matmul(vectors * shape[None, None, :], xp.swapaxes(vectors, -1, -2))
    return _finish(volumes[:, None, None] * covariances, counts)


def _vee(scatter, counts):
    """Σ_k = λ_k C: C ∝ Σ_k W_k/λ_k with |C| = 1, λ_k = tr(C⁻¹ W_k)/(d n_k)."""
    xp = namespace(counts)
    d = scatter.shape[-1]
    _, _, weight = _totals(counts, scatter)

    def volumes(shape):
        precision = xp.linalg.pinv(shape)  # a singular pooled scatter (a direction without spread) stays finite
        return _trace(xp.matmul(precision[None], scatter)) / (d * _safe(counts))

    def normalised(matrix):
        return matrix / _safe(_size(matrix))

    def step(shape):
        return normalised(xp.sum(weight[:, None, None] * scatter / _safe(volumes(shape))[:, None, None], axis=0))

    def objective(shape):
        return xp.sum(weight * counts * d * xp.log(_safe(volumes(shape))))

    pooled = xp.sum(weight[:, None, None] * scatter, axis=0)
    shape = _iterate(step, normalised(pooled), objective, scatter)
    return _finish(volumes(shape)[:, None, None] * shape[None], counts)


def _common_orientation(scatter, counts, previous=None, *, equal_volume: bool):
    """EVE (``equal_volume``) and VVE: ``Σ_k = λ_(k) D A_k Dᵀ`` with one orientation ``D``.

    Given ``D``: ``A_k ∝ diag(Dᵀ W_k D)`` with ``|A_k| = 1``, and the volumes in closed form.
    Given the shapes and volumes, ``D`` minimises ``Σ_k tr(W̃_k D A_k⁻¹ Dᵀ)`` with
    ``W̃_k = W_k / λ_k``: Browne & McNicholas's two majorisation steps, each an SVD of
    ``F₁ = Σ_k A_k⁻¹ Dᵀ W̃_k − ω_k A_k⁻¹ Dᵀ`` (``ω_k`` the largest eigenvalue of ``W̃_k``),
    ``D ← R Pᵀ`` for ``F₁ = P S Rᵀ``, and of ``F₂ = Σ_k W̃_k D A_k⁻¹ − max(A_k⁻¹) W̃_k D``,
    ``D ← P Rᵀ`` for ``F₂ = P S Rᵀ``.

    The iterations start from the orientation of ``Σ_k W_k``, or from that of the ``previous``
    covariances (EM's current ones, ``λ_k D A_k Dᵀ + reg_covar I``: the eigenvectors of their sum
    over the active components are ``D``) where its objective is lower. Each step lowers the
    objective, so the M-step is never worse than EM's current parameters and EM's likelihood
    never decreases (a generalised EM). From ``Σ_k W_k`` alone it did: the objective has local
    minima, and on iris with k = 5 EVE's EM lost 0.03 of mean log-likelihood in one iteration.
    mclust's Fortran (``meeve``, ``mevve``) keeps its orientation between EM iterations too.

    Components whose scatter is singular to working precision (``numpy.linalg.matrix_rank``'s
    tolerance, ``d ε`` times the largest eigenvalue: at most ``d`` rows, or rows in a subspace)
    take no part in estimating ``D``; they get their shapes and volumes given it. With them the
    objective has no minimum (VVE's falls without bound as ``D`` turns a column into a singular
    ``W_k``'s null space) and the iterations followed round-off: on thyroid with k = 7 (clusters
    of 3 and 5 rows in 5 dimensions) the NumPy driver's and the compiled program's first M-steps
    parted (mean log-likelihood −11.213 against −10.708); now both give −10.806. (mclust stops
    there instead: its EVE and VVE return no fit when a scatter matrix has an eigenvalue below √ε.)
    """
    xp = namespace(counts)
    d = scatter.shape[-1]
    n, active, weight = _totals(counts, scatter)
    values = _descending_eigh(scatter)[0]
    largest = values[:, 0]
    steering = weight * (values[:, -1] > d * xp.finfo(scatter.dtype).eps * largest)  # full rank: they estimate D

    def rotated(orientation):
        return _diagonal(xp.matmul(xp.matmul(orientation.T[None], scatter), orientation[None]))  # diag(Dᵀ W_k D)

    def with_shapes(orientation):
        """``(D, A (k, d), λ (k,))``: an orientation with its closed-form shapes and volumes."""
        spread = xp.where(active[:, None], rotated(orientation), 1.0)
        size = _geometric_mean(spread)
        if equal_volume:
            volumes = xp.broadcast_to(xp.sum(weight * size) / n, counts.shape)
        else:
            volumes = size / _safe(counts)
        return orientation, spread / size[:, None], xp.where(active, volumes, 0.0)

    def step(state):
        orientation, shapes, volumes = state
        weighted = scatter / _safe(volumes)[:, None, None]
        omega = largest / _safe(volumes)
        # (k, d); components without full spread add nothing (a zero shape entry of theirs: no NaN)
        inverse_shapes = xp.where(steering[:, None] > 0, 1.0 / _safe(shapes), 0.0)
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
        return with_shapes(xp.matmul(left, right_t))

    def objective(state):
        orientation, shapes, volumes = state
        trace_terms = xp.sum(rotated(orientation) / _safe(shapes), axis=-1) / _safe(volumes)
        return xp.sum(xp.where(steering > 0, counts * d * xp.log(_safe(volumes)) + trace_terms, 0.0))

    pooled = xp.sum(steering[:, None, None] * scatter, axis=0)
    state = with_shapes(_descending_eigh(pooled)[1])
    if previous is not None:
        current = with_shapes(_descending_eigh(xp.sum(steering[:, None, None] * previous, axis=0))[1])
        better = objective(current) < objective(state)
        state = tuple(xp.where(better, new, old) for new, old in zip(current, state))
    orientation, shapes, volumes = _iterate(step, state, objective, scatter)
    covariances = xp.matmul(orientation[None] * (volumes[:, None] * shapes)[:, None, :], orientation.T[None])
    return _finish(covariances, counts)


def _eve(scatter, counts, previous=None):
    return _common_orientation(scatter, counts, previous, equal_volume=True)


def _vve(scatter, counts, previous=None):
    return _common_orientation(scatter, counts, previous, equal_volume=False)


# ----------------------------------------------------------------------------- the table


def _pairs(d: int) -> int:
    return d * (d - 1) // 2


# EVE's and VVE's M-step takes majorisation steps (each two SVDs of d x d matrices) at every EM
# iteration: in NumPy, small calls whose overhead is the cost. Since the steps start from EM's current
# orientation (``_common_orientation``) they take few per iteration. Measured with the NumPy driver
# and compiled (compilation included), one fresh process each, two runs (2026-12-05): thyroid (215 x 5,
# k = 2 and 7, tol=1e-8, max_iter=1000; 5.8e5 units of select's work estimate): EVE 2.3-3.1 s
# against 3.1-3.4 s compiled (4-5 µs a unit), VVE 1.5-2.0 s against 3.0-3.2 s (2.6-3.4 µs), VVV
# 0.44 s (0.8 µs), VEE 0.71 s (1.2 µs); Old Faithful's default grid (k = 1..9; 7.3e4 units): EVE
# 0.94 s against 2.9 s compiled, VVE 0.62 s against 2.9 s. GRID_HOST_MAX_WORK's budget assumes 1-5 µs
# a unit: EVE's work counts twice. (From Σ_k W_k's orientation at every iteration they took about
# 15 µs a unit, and HOST_COST was 6 for both.)
HOST_COST = 2.0

# mclust's nVarParams (R/mclust.R): covariance parameters of each model for G components in d dimensions
MODELS: dict[str, EigenModel] = {
    "EII": EigenModel(_quiet(_eii), lambda k, d: 1, lambda d: 1.0),
    "VII": EigenModel(_quiet(_vii), lambda k, d: k, lambda d: 2.0),
    "EEI": EigenModel(_quiet(_eei), lambda k, d: d, lambda d: 1.0),
    "VEI": EigenModel(_quiet(_vei), lambda k, d: k + (d - 1), lambda d: 2.0),
    "EVI": EigenModel(_quiet(_evi), lambda k, d: 1 + k * (d - 1), lambda d: 2.0),
    "VVI": EigenModel(_quiet(_vvi), lambda k, d: k * d, lambda d: 2.0),
    "EEE": EigenModel(_quiet(_eee), lambda k, d: d + _pairs(d), lambda d: 1.0),
    "VEE": EigenModel(_quiet(_vee), lambda k, d: k + (d - 1) + _pairs(d), lambda d: 2.0),
    "EVE": EigenModel(
        _quiet(_eve), lambda k, d: 1 + k * (d - 1) + _pairs(d), lambda d: 2.0, HOST_COST, warm_start=True
    ),
    "VVE": EigenModel(_quiet(_vve), lambda k, d: k + k * (d - 1) + _pairs(d), lambda d: 2.0, warm_start=True),
    "EEV": EigenModel(_quiet(_eev), lambda k, d: 1 + (d - 1) + k * _pairs(d), lambda d: 1.0),
    "VEV": EigenModel(_quiet(_vev), lambda k, d: k + (d - 1) + k * _pairs(d), lambda d: 2.0),
    "EVV": EigenModel(_quiet(_evv), lambda k, d: 1 + k * (d - 1) + k * _pairs(d), lambda d: d + 1.0),
    "VVV": EigenModel(_quiet(_vvv), lambda k, d: k * (d + _pairs(d)), lambda d: d + 1.0),
}
