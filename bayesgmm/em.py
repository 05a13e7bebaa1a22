"""Maximum likelihood for Gaussian mixtures by expectation-maximisation, jitted end to end.

Kernels (pure, unjitted, ``vmap``-safe):

- ``e_step(params, rows, moments)`` -> ``(SufficientStatistics, WorstRow)``: one pass over
  the weighted rows in chunks (``chunks.accumulate``), accumulating sums; never an (n, k, d)
  array. Two formulations give the same statistics: ``"whitened"`` (second moments about
  the current means in whitened coordinates: accurate in float32 far from the origin) and
  ``"raw"`` (moments about the origin of the centred data from quadratic features: one
  matrix product per chunk each way, half the flops; used in float64).
- ``m_step(stats, reg_covar, covariance_type)`` -> ``GMMParams`` (scikit-learn's M-step).
- With ``moments="missing"`` (``em_fit(missing="marginalize")`` on data with NaN), the E-step
  is ``bayesgmm.missing.missing_e_step``: the exact EM for incomplete data.
- ``repair(...)``: what EM does with degenerate components (see ``em_fit``).

Driver: ``em_fit(X, k, ...)`` validates in Python, centres and rescales the data on the
host (float64; the scale is a power of two, so every step is exactly scale-equivariant),
then runs one jitted function over the ``n_init`` restarts (vmapped on accelerators, one
after another on CPU), each a ``lax.while_loop`` of E/M steps, and keeps the best.
Semantics follow ``sklearn.mixture.GaussianMixture`` (same stopping rule, same
``reg_covar``, same initialisations), except that ``log_likelihood`` is that of the
parameters returned.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax

from bayesgmm import _validation
from bayesgmm._errors import ConvergenceWarning, DegenerateComponentWarning, DegenerateFitError
from bayesgmm.chunks import Rows, WorstRow, accumulate, add, chunk_rows, zeros_like_shapes
from bayesgmm.covariance import get_structure, raw_coefficients, whitened_log_joint
from bayesgmm.init import INIT_METHODS, init_draws, initial_assignment
from bayesgmm.params import GMMParams
from bayesgmm.sharding import ShardedRows

MOMENTS = ("auto", "whitened", "raw")
DEGENERATE = ("reseed", "raise")
MISSING = ("raise", "marginalize")

# Elements of the per-chunk working array ((k, d, rows) whitened rows, or (rows, d + p)
# quadratic features): big enough for efficient matrix products, small enough for cache.
_CHUNK_ELEMENTS = 1 << 20
# A component holding less than this fraction of one average row's weight is empty.
_EMPTY_FRACTION = 1e-3


class SufficientStatistics(NamedTuple):
    """Sums over weighted rows for one set of parameters, in data coordinates about ``shift``.

    With responsibilities ``r_ik`` and row weights ``w_i``:
    """

    counts: Array  # (k,) Σ_i w_i r_ik
    first: Array  # (k, d) Σ_i w_i r_ik (x_i − shift_k)
    second: Array  # Σ w r (x − shift)(x − shift)ᵀ: full (k, d, d), tied (d, d) summed, diag (k, d), spherical (k,)
    log_likelihood: Array  # () Σ_i w_i log p(x_i)
    max_log_resp: Array  # () Σ_i w_i max_k log r_ik (the classification term of ICL)
    shift: Array | None = None  # (k, d) the current means ("whitened") or zeros ("raw")


class DegenerateEvents(NamedTuple):
    """What ``repair`` did, per component, over a fit."""

    reseeded: Array  # (k,) int number of times the component was re-seeded
    first_reseed: Array  # (k,) int iteration of the first re-seed, −1 if none
    regularised: Array  # (k,) int number of M-steps whose covariance needed the fallback reg_covar
    first_regularised: Array  # (k,) int iteration of the first, −1 if none

    @classmethod
    def none(cls, k: int) -> DegenerateEvents:
        zeros, never = jnp.zeros((k,), jnp.int32), jnp.full((k,), -1, jnp.int32)
        return cls(zeros, never, zeros, never)

    def record(self, iteration, reseeded, regularised) -> DegenerateEvents:
        def first(previous, now):
            return jnp.where((previous < 0) & now, iteration, previous)

        return DegenerateEvents(
            self.reseeded + reseeded,
            first(self.first_reseed, reseeded),
            self.regularised + regularised,
            first(self.first_regularised, regularised),
        )


class EMResult(NamedTuple):
    """The outcome of ``em_fit``.

    params : GMMParams
        The fitted parameters (after the last M-step).
    log_likelihood : float
        Mean per-row log-likelihood of ``params`` (weighted by ``sample_weight``).
    n_iter : int
        Number of EM iterations (M-steps) of the best restart.
    converged : bool
        Whether the best restart stopped because the change fell below ``tol``.
    log_likelihood_history : ndarray (n_iter + 1,)
        Mean log-likelihood of the parameters before each iteration, then of the
        returned parameters (the last entry equals ``log_likelihood``).
    restart_log_likelihoods : ndarray (n_init,)
        The final mean log-likelihood of every restart (−inf for a failed one).
    """

    params: GMMParams
    log_likelihood: float
    n_iter: int
    converged: bool
    log_likelihood_history: np.ndarray
    restart_log_likelihoods: np.ndarray


# ----------------------------------------------------------------------------- kernels


def resolve_moments(moments: str, dtype) -> str:
    """``"auto"``: ``"raw"`` in float64, ``"whitened"`` in lower precision; ``"missing"`` (internal) as is."""
    if moments == "missing":  # set by em_fit(missing="marginalize") when X has NaN
        return moments
    moments = _validation.check_choice(moments, "moments", MOMENTS)
    if moments == "auto":
        return "raw" if jnp.dtype(dtype) == jnp.float64 else "whitened"
    return moments


def _combine(a, b):
    return add(a[0], b[0]), a[1].merge(b[1])


def _identity_with_worst(shapes):
    sums, worst = shapes
    return zeros_like_shapes(sums), WorstRow.identity(worst)


def e_step(params: GMMParams, rows: Rows, moments: str = "whitened") -> tuple[SufficientStatistics, WorstRow]:
    """Responsibility-weighted sufficient statistics of ``params`` over all rows.

    Parameters
    ----------
    params : GMMParams (unbatched)
    rows : Rows (chunks (m, c, d), weights (m, c))
    moments : {"whitened", "raw", "missing"}
        How the statistics are accumulated (module docstring); both return statistics in
        data coordinates, "whitened" about the current means, "raw" about the origin.
        "missing": rows with NaN entries (``bayesgmm.missing.missing_e_step``), about the means.

    Returns
    -------
    stats : SufficientStatistics
    worst : WorstRow
        The row of lowest log-likelihood (to re-seed an empty component).
    """
    if moments == "missing":
        from bayesgmm.missing import missing_e_step

        return missing_e_step(params, rows)
    structure = params.structure
    d = params.n_features
    log_weights = jnp.log(params.weights)  # −inf for inactive components (weight 0)
    inverse = structure.core.inverse_scale(params.scale)
    half_log_det = structure.core.half_log_det(params.scale, d)

    if moments == "raw":
        coefficients, offsets = raw_coefficients(structure, log_weights, params.means, inverse, half_log_det)

        def chunk_statistics(x, w, row_ids, chunk_index):
            features = jnp.concatenate([x, structure.em.raw_features(x)], axis=1)  # (c, d + p)
            log_joint = jnp.matmul(features, coefficients, precision="highest") + offsets  # (c, k)
            log_norm = jax.nn.logsumexp(log_joint, axis=1)
            resp = jnp.exp(log_joint - log_norm[:, None]) * w[:, None]
            moments_ = jnp.matmul(resp.T, features, precision="highest")  # (k, d + p)
            sums = SufficientStatistics(
                counts=jnp.sum(resp, axis=0),
                first=moments_[:, :d],
                second=structure.em.second_from_raw(moments_[:, d:]),
                log_likelihood=jnp.sum(w * log_norm),
                max_log_resp=jnp.sum(w * (jnp.max(log_joint, axis=1) - log_norm)),
            )
            return sums, WorstRow.of_chunk(log_norm, w, row_ids)

        sums, worst = accumulate(rows, chunk_statistics, _combine, _identity_with_worst)
        return sums._replace(shift=jnp.zeros_like(params.means)), worst

    def chunk_statistics(x, w, row_ids, chunk_index):
        log_joint, y, sq_norm = whitened_log_joint(structure, log_weights, params.means, inverse, half_log_det, x)
        log_norm = jax.nn.logsumexp(log_joint, axis=0)
        resp = jnp.exp(log_joint - log_norm) * w
        sums = SufficientStatistics(
            counts=jnp.sum(resp, axis=1),
            first=jnp.einsum("kc,kdc->kd", resp, y, precision="highest"),
            second=structure.em.second_moment(resp, y, sq_norm),
            log_likelihood=jnp.sum(w * log_norm),
            max_log_resp=jnp.sum(w * (jnp.max(log_joint, axis=0) - log_norm)),
        )
        return sums, WorstRow.of_chunk(log_norm, w, row_ids)

    sums, worst = accumulate(rows, chunk_statistics, _combine, _identity_with_worst)
    first, second = structure.em.unwhiten(sums.first, sums.second, params.scale)
    return sums._replace(first=first, second=second, shift=params.means), worst


def m_step(stats: SufficientStatistics, reg_covar, covariance_type: str, active: Array | None = None) -> GMMParams:
    """New parameters from statistics about ``stats.shift`` (scikit-learn's M-step).

    ``n_k = Σ w r_ik + 10 ε``, ``μ_k = shift_k + Σ w r (x − shift_k) / n_k``, covariance
    about the new means divided by ``n_k`` plus ``reg_covar`` on the diagonal, weights
    ``n_k / Σ n_k``. Components outside ``active`` keep weight exactly 0.
    """
    structure = get_structure(covariance_type)
    nk = stats.counts + 10 * jnp.finfo(stats.counts.dtype).eps
    if active is not None:
        nk = jnp.where(active, nk, 0.0)
    safe_nk = jnp.where(nk > 0, nk, 1.0)
    delta = stats.first / safe_nk[:, None]
    scale = structure.em.scale_from_moments(stats.counts, safe_nk, stats.first, delta, stats.second, reg_covar)
    return GMMParams(nk / jnp.sum(nk), stats.shift + delta, scale, covariance_type)


def repair(
    params: GMMParams, stats: SufficientStatistics, seed_row: Array | None, setting: _Setting
) -> tuple[GMMParams, Array, Array]:
    """Fix degenerate components after an M-step; returns ``(params, reseeded (k,), regularised (k,))``.

    - A covariance that is not positive definite (non-finite Cholesky factor; a component on
      one point or duplicates with ``reg_covar`` 0, a constant feature...) is recomputed with
      ``fallback_reg`` on its diagonal instead of ``reg_covar``.
    - An empty component (``Σ w r < _EMPTY_FRACTION`` of an average row's weight) or one still
      invalid is re-seeded: mean at the worst-fitting row (``seed_row``; one empty component
      per M-step, the first, so that two never restart at the same row; the others wait with
      their tiny weight), covariance the data's (``reseed_scale``) shrunk by ``k^(−2/d)`` (the
      share of the data's volume of one of ``k`` components; tied: the shared covariance is
      kept unless it is itself invalid), weight ``1/k``; then the weights are renormalised.

    Inactive components are left as they are. ``setting`` gives ``reg_covar``,
    ``fallback_reg``, ``reseed_scale`` (in the program's layout), ``mean_row_weight`` and
    ``active``.
    """
    fallback_reg, reseed_scale = setting.fallback_reg, setting.reseed_scale
    mean_row_weight, active = setting.mean_row_weight, setting.active
    structure = params.structure
    k = params.n_components
    valid = structure.core.component_valid(params.scale, k)
    regularised = active & ~valid
    nk = stats.counts + 10 * jnp.finfo(stats.counts.dtype).eps
    safe_nk = jnp.where(active, nk, 1.0)
    delta = stats.first / safe_nk[:, None]
    fallback = structure.em.scale_from_moments(stats.counts, safe_nk, stats.first, delta, stats.second, fallback_reg)
    scale = structure.core.reset_components(regularised, fallback, params.scale)
    still_invalid = active & ~structure.core.component_valid(scale, k)
    empty = active & (stats.counts < _EMPTY_FRACTION * mean_row_weight)
    if seed_row is None:  # initial parameters: nothing to re-seed from yet
        return dataclasses.replace(params, scale=scale), jnp.zeros_like(empty), regularised
    first_empty = jnp.arange(k) == jnp.argmax(empty)
    reseeded = (empty & first_empty) | still_invalid
    n_active = jnp.sum(active)
    means = jnp.where(reseeded[:, None], seed_row, params.means)
    shrink = n_active.astype(scale.dtype) ** (-1.0 / params.n_features)
    scale = structure.core.reset_components(reseeded, reseed_scale * shrink, scale)
    weights = params.weights * jnp.sum(jnp.where(active, nk, 0.0))
    weights = jnp.where(reseeded, jnp.sum(weights) / n_active, weights)
    weights = jnp.where(active, weights, 0.0)
    weights = weights / jnp.sum(weights)
    return GMMParams(weights, means, scale, params.covariance_type), reseeded, regularised


# ----------------------------------------------------------------------------- driver


class _Setting(NamedTuple):
    """Dynamic (traced) inputs of a fit besides the data; all on the centred, rescaled scale."""

    tol: Array  # ()
    reg_covar: Array  # ()
    fallback_reg: Array  # () reg_covar for covariances that are not positive definite
    reseed_scale: Array  # the data covariance's Cholesky factor in the type's layout
    total_weight: Array  # () Σ w
    mean_row_weight: Array  # () Σ w / #{w > 0}
    active: Array  # (k,) bool: the components in use (a prefix; all by default)
    max_iter: Array  # () int; the history holds bucket_size(max_iter + 1) entries (static)


class _LoopState(NamedTuple):
    params: GMMParams
    n_iter: Array  # () int: M-steps done
    last_log_likelihood: Array  # () of the parameters before the last M-step
    change: Array  # () change in mean log-likelihood at the last M-step
    stop: Array  # () bool: the last M-step was the final one; the next E-step only scores
    done: Array  # () bool
    failed: Array  # () bool: a covariance stopped being positive definite ("raise")
    log_likelihood: Array  # () of the returned parameters (set when done)
    max_log_resp: Array  # () Σ_i w_i max_k log r_ik of the returned parameters (set when done)
    history: Array  # (history_size,) mean log-likelihoods; history_size >= max_iter + 1
    events: DegenerateEvents


def _keep_inactive(structure, new: GMMParams, old: GMMParams, active: Array) -> GMMParams:
    """Inactive components keep their (finite, unused) means and scale; their weight stays 0."""
    means = jnp.where(active[:, None], new.means, old.means)
    return dataclasses.replace(new, means=means, scale=structure.core.reset_components(~active, old.scale, new.scale))


def initial_statistics(assignment, rows: Rows, covariance_type: str) -> SufficientStatistics:
    """Statistics of the initial responsibilities, about ``assignment.shift`` (scikit-learn's start)."""
    structure = get_structure(covariance_type)
    k, d = assignment.shift.shape
    dtype = rows.chunks.dtype
    inverse = structure.core.inverse_scale(structure.core.identity_scale(k, d, dtype))

    def chunk_statistics(x, w, row_ids, chunk_index):
        resp = assignment.responsibilities(x, row_ids, chunk_index) * w
        y = structure.core.whiten(x, assignment.shift, inverse)
        return SufficientStatistics(
            counts=jnp.sum(resp, axis=1),
            first=jnp.einsum("kc,kdc->kd", resp, y, precision="highest"),
            second=structure.em.second_moment(resp, y, jnp.sum(y * y, axis=1)),
            log_likelihood=jnp.zeros((), dtype),
            max_log_resp=jnp.zeros((), dtype),
        )

    return accumulate(rows, chunk_statistics)._replace(shift=assignment.shift)


def initial_params(stats: SufficientStatistics, setting: _Setting, user_init, *, covariance_type, degenerate):
    """One M-step from the initial statistics, then the user-given parts; ``(params, regularised (k,))``."""
    structure = get_structure(covariance_type)
    k, d = stats.shift.shape
    params = m_step(stats, setting.reg_covar, covariance_type, setting.active)
    identity = structure.core.identity_scale(k, d, stats.shift.dtype)
    start = GMMParams(params.weights, stats.shift, identity, covariance_type)
    params = _keep_inactive(structure, params, start, setting.active)
    regularised = jnp.zeros((k,), bool)
    if degenerate == "reseed":
        params, _, regularised = repair(params, stats, None, setting)
    weights_init, means_init, scale_init = user_init
    params = GMMParams(
        params.weights if weights_init is None else weights_init,
        params.means if means_init is None else means_init,
        params.scale if scale_init is None else scale_init,
        covariance_type,
    )
    return params, regularised


def _user_params(user_init, covariance_type: str) -> GMMParams | None:
    """The initial parameters when the user gave all three, else None."""
    if any(value is None for value in user_init):
        return None
    return GMMParams(*user_init, covariance_type)


def _all_finite(params: GMMParams) -> Array:
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(params)]))


def _invalid(params: GMMParams, active: Array) -> Array:
    """Some parameter is not finite, or an active component's covariance is not positive definite."""
    valid = params.structure.core.component_valid(params.scale, params.n_components)
    return ~_all_finite(params) | jnp.any(active & ~valid)


def start_state(params: GMMParams, regularised: Array, setting: _Setting, *, history_size: int) -> _LoopState:
    """The loop state before the first E-step, from the initial parameters."""
    dtype = params.dtype
    k = params.n_components
    failed = _invalid(params, setting.active)
    return _LoopState(
        params=params,
        n_iter=jnp.asarray(0),
        last_log_likelihood=jnp.asarray(-jnp.inf, dtype),
        change=jnp.asarray(jnp.inf, dtype),
        stop=setting.max_iter == 0,
        done=failed,
        failed=failed,
        log_likelihood=jnp.asarray(-jnp.inf, dtype),
        max_log_resp=jnp.asarray(0.0, dtype),
        history=jnp.full((history_size,), jnp.nan, dtype),
        events=DegenerateEvents.none(k).record(0, jnp.zeros((k,), bool), regularised),
    )


def advance(
    state: _LoopState,
    stats: SufficientStatistics,
    seed_row: Array,
    setting: _Setting,
    *,
    degenerate: str,
) -> _LoopState:
    """One EM iteration after its E-step: M-step, repair, stopping rule, history.

    ``stats`` are the E-step statistics of ``state.params`` and ``seed_row`` (d,) the row
    with the lowest log-likelihood under them. If the previous iteration was the last
    (``state.stop``), these statistics only score the returned parameters and the state is
    finished; otherwise the M-step runs. Keeping the E-step outside lets the in-memory loop
    (``while_loop``) and the streaming driver (a host loop over blocks) share this.
    """
    params = state.params
    structure = params.structure
    active = setting.active
    dtype = stats.log_likelihood.dtype
    log_likelihood = stats.log_likelihood / setting.total_weight
    history = state.history.at[state.n_iter].set(log_likelihood)
    new = m_step(stats, setting.reg_covar, params.covariance_type, active)
    new = _keep_inactive(structure, new, params, active)
    events = state.events
    if degenerate == "reseed":

        def repaired(new):
            new, reseeded, regularised = repair(new, stats, seed_row, setting)
            return new, events.record(state.n_iter + 1, reseeded, regularised)

        # the repair runs only when needed (a real branch unless vmapped with other fits)
        empty = stats.counts < _EMPTY_FRACTION * setting.mean_row_weight
        needed = jnp.any(active & (empty | ~structure.core.component_valid(new.scale, new.n_components)))
        new, events = lax.cond(needed, repaired, lambda new: (new, events), new)
    change = log_likelihood - state.last_log_likelihood
    n_iter = state.n_iter + 1

    def running():
        failed = _invalid(new, active)
        return _LoopState(
            params=new,
            n_iter=n_iter,
            last_log_likelihood=log_likelihood,
            change=change,
            stop=(jnp.abs(change) < setting.tol) | (n_iter >= setting.max_iter),
            done=failed,
            failed=failed,
            log_likelihood=jnp.where(failed, -jnp.inf, log_likelihood).astype(dtype),
            max_log_resp=state.max_log_resp,
            history=history,
            events=events,
        )

    def finished():  # this E-step scored the returned parameters
        return state._replace(
            done=True, log_likelihood=log_likelihood, max_log_resp=stats.max_log_resp, history=history
        )

    return lax.cond(state.stop, finished, running)


def finish(state: _LoopState) -> _LoopState:
    """A failed fit scores −inf."""
    return state._replace(log_likelihood=jnp.where(jnp.isfinite(state.log_likelihood), state.log_likelihood, -jnp.inf))


def _fit_one(
    draws, rows: Rows, setting: _Setting, user_init, *, k, covariance_type, init, history_size, moments, degenerate
):
    """One restart: initialise, then E/M steps in a ``while_loop`` (one E-step in the program)."""
    params = _user_params(user_init, covariance_type)
    regularised = jnp.zeros((k,), bool)
    complete_rows = rows  # initialisation and re-seeding need complete rows
    if moments == "missing":
        from bayesgmm.missing import fill_missing

        complete_rows = fill_missing(rows)
    if params is None:
        assignment = initial_assignment(init, draws, complete_rows, k, setting.active)
        stats = initial_statistics(assignment, complete_rows, covariance_type)
        params, regularised = initial_params(
            stats, setting, user_init, covariance_type=covariance_type, degenerate=degenerate
        )
    X_flat, _ = complete_rows.flat()

    def body(state: _LoopState) -> _LoopState:
        stats, worst = e_step(state.params, rows, moments)
        return advance(state, stats, X_flat[worst.row], setting, degenerate=degenerate)

    start = start_state(params, regularised, setting, history_size=history_size)
    return finish(lax.while_loop(lambda state: ~state.done, body, start))


@functools.partial(
    jax.jit,
    static_argnames=(
        "k",
        "covariance_type",
        "init",
        "history_size",
        "chunk_size",
        "moments",
        "degenerate",
        "mesh",
        "sequential",
    ),
)
def fit_batch(X, weights, draws, active, setting, user_init, *, chunk_size, mesh, sequential, **static):
    """Fits of one data set, in groups of restarts; the best restart of each group.

    Parameters
    ----------
    X, weights : (n, d), (n,) rescaled rows and their weights (sharded over ``mesh``, if any)
    draws : (groups, restarts, ...) each fit's ``init_draws``
    active : (groups, k) bool, the components each group uses (a prefix: a group's number
        of components is ``active.sum()``; the others keep weight 0)
    setting : _Setting (its ``active`` is replaced per group)
    user_init : user-given initial parameters (or Nones), shared by all fits
    sequential : bool
        Run the fits one after another (``lax.map``; for CPUs) instead of vmapped (for
        accelerators, where batched fits share each kernel launch). On a CPU the vmapped
        program is slower to compile and to run: its ``lax.cond``s become selects that run
        both branches, and its loop runs until the slowest fit has converged.

    Returns
    -------
    best : _LoopState with a leading (groups,) axis
    log_likelihoods : (groups, restarts) every fit's final mean log-likelihood
    """
    rows = chunk_rows(X, weights, chunk_size, mesh)
    structure = get_structure(static["covariance_type"])
    setting = _device_setting(setting, structure, static["k"])
    user_init = _device_user_init(user_init, structure)
    fit = functools.partial(_fit_one, **static)

    def one(draws, active):
        return fit(draws, rows, setting._replace(active=active), user_init)

    if draws.shape[:2] == (1, 1):  # one fit: no batching
        states = jax.tree.map(lambda leaf: leaf[None, None], one(draws[0, 0], active[0]))
    elif sequential:
        states = lax.map(lambda group: lax.map(lambda draw: one(draw, group[1]), group[0]), (draws, active))
    else:
        states = jax.vmap(jax.vmap(one, in_axes=(0, None)))(draws, active)  # (groups, restarts)
    best = jnp.argmax(states.log_likelihood, axis=1)
    pick = jax.vmap(lambda group, index: jax.tree.map(lambda leaf: leaf[index], group))
    return pick(states, best), states.log_likelihood


def _on_cpu(X: Array) -> bool:
    """The rows are on CPU devices (where ``fit_batch`` runs its fits one after another)."""
    return all(device.platform == "cpu" for device in X.devices())


def default_chunk_size(n_samples: int, k: int, d: int, n_init: int = 1, moments: str = "whitened") -> int:
    """Rows per chunk so that the per-chunk working array holds about 2**20 elements.

    "whitened": the (k, d, rows) whitened rows; "raw": the (rows, d + p + k) features and
    log-densities, with ``p`` quadratic features (d(d+1)/2 for full covariances); "missing":
    the (k, rows, d, d) Cholesky factors of the observed blocks.
    """
    width = {"whitened": k * d, "missing": k * d * d}.get(moments, d + d * (d + 1) // 2 + k)
    rows = _CHUNK_ELEMENTS // max(1, width * n_init)
    return int(min(n_samples, max(256, rows)))


def _power_of_two_scale(variance: float) -> float:
    """``2^round(log2 sd)``: dividing by it is exact, so EM on the rescaled data is EM on the data."""
    if not np.isfinite(variance) or variance <= 0:
        return 1.0
    return float(2.0 ** np.round(0.5 * np.log2(variance)))


def _warn_degenerate(events: DegenerateEvents, *, reg_covar, fallback_reg, context="", stacklevel=5):
    for component in np.flatnonzero(np.asarray(events.reseeded)):
        warnings.warn(
            f"{context}EM re-seeded component {component} {int(events.reseeded[component])} time(s), first at "
            f"iteration {int(events.first_reseed[component])}: it was empty (held under {_EMPTY_FRACTION:g} of an "
            "average row's weight) or its covariance could not be made positive definite. It restarted at the "
            "worst-fitting row with the data's covariance. Fewer components (k) may fit these data better.",
            DegenerateComponentWarning,
            stacklevel=stacklevel,
        )
    for component in np.flatnonzero(np.asarray(events.regularised)):
        warnings.warn(
            f"{context}EM regularised the covariance of component {component} in {int(events.regularised[component])} "
            f"M-step(s), first at iteration {int(events.first_regularised[component])}: with reg_covar={reg_covar:g} "
            "it was not positive definite (the component sat on too few distinct points, duplicate rows or a "
            f"constant feature), so reg_covar={fallback_reg:.3g} was added to its diagonal instead. Increase "
            "reg_covar, use fewer components or covariance_type='diag'.",
            DegenerateComponentWarning,
            stacklevel=stacklevel,
        )


_DEGENERATE_ERROR = (
    "Fitting the mixture failed: a component's covariance stopped being positive definite (for instance a "
    "component collapsed onto a single point or onto duplicate rows). Increase reg_covar (now {reg_covar:g}), "
    "use fewer components (now {k}), a constrained covariance_type such as 'diag', or degenerate='reseed'."
)


def em_fit(
    X,
    k: int,
    *,
    covariance_type: str = "full",
    n_init: int = 1,
    init: str = "kmeans",
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    seed: int | Array = 0,
    weights_init=None,
    means_init=None,
    covariances_init=None,
    sample_weight=None,
    degenerate: str = "reseed",
    moments: str = "auto",
    chunk_size: int | None = None,
    stream: bool | None = None,
    missing: str = "raise",
) -> EMResult:
    """Fit a Gaussian mixture by maximum likelihood with EM.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Data; lists, int/float arrays and pandas DataFrames are accepted.
    k : int
        Number of components, ``1 <= k <=`` the number of rows of positive weight.
    covariance_type : {"full", "tied", "diag", "spherical"}
        Covariance structure; shapes of the fitted ``covariances`` per type:
        full (k, d, d), tied (d, d), diag (k, d), spherical (k,).
    n_init : int
        Restarts, run in one compiled program (``fit_batch``: vmapped on accelerators, one
        after another on CPU); the one with the highest final log-likelihood is returned.
    init : {"kmeans", "k-means++", "random", "random_from_data"}
        "kmeans" is k-means++ seeding followed by Lloyd iterations.
    max_iter : int
        Maximum number of EM iterations (M-steps) per restart.
    tol : float
        Stop when the mean log-likelihood changes by less than ``tol`` between
        iterations (scikit-learn's rule).
    reg_covar : float
        Added to the covariance diagonal in every M-step.
    seed : int or PRNG key
    weights_init : array-like of shape (k,), optional
    means_init : array-like of shape (k, d), optional
    covariances_init : array-like, optional
        In scikit-learn's layout for ``covariance_type``. When all three are given,
        no random initialisation runs (and restarts would be identical, so one runs).
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative weight per row: a row of integer weight ``m`` counts as ``m`` copies
        of it, a row of weight 0 is dropped. The log-likelihood is the weighted mean.
    degenerate : {"reseed", "raise"}
        What to do when a component degenerates. "reseed" (default): a covariance that is
        not positive definite gets a larger diagonal term for that M-step, and an empty
        component restarts at one of the worst-fitting rows with the data's covariance;
        each is reported by a ``DegenerateComponentWarning`` naming the component and the
        iteration; the result is never NaN. "raise": a ``ValueError`` (scikit-learn's
        behaviour).
    moments : {"auto", "whitened", "raw"}
        How the E-step accumulates the statistics (both give the same fit up to round-off):
        "whitened" about the current means in whitened coordinates (accurate in float32),
        "raw" from quadratic features (half the flops; for float64). "auto": "raw" in
        float64, "whitened" otherwise.
    chunk_size : int, optional
        Rows per E-step chunk; by default about ``2**20`` working elements per chunk.
    stream : bool, optional
        Keep ``X`` on the host and stream it to the device block by block in every pass
        (``bayesgmm.streaming``: for data larger than device memory; the same result as in
        memory up to summation order). Default: stream an ``np.memmap``, otherwise not.
        ``X`` may also be ``bayesgmm.shard(X)``: rows kept sharded over devices.
    missing : {"raise", "marginalize"}
        What NaN entries of ``X`` mean. "raise" (default): NaN is an error. "marginalize":
        NaN marks a value missing at random; EM maximises the likelihood of the observed
        entries, ``Σ_i w_i log p(x_i,o)``, by the exact EM for incomplete data (Ghahramani and
        Jordan 1994; ``bayesgmm.missing``), for every covariance type. Rows entirely NaN and
        features never observed are errors; infinities stay errors. The initialisation uses
        the rows with their NaN replaced by the observed column means. Each iteration costs
        ``O(k d³)`` per row with missing entries (rows without them cost as usual); the rows
        must be in memory (not ``stream`` nor ``shard``), and ``moments`` must be "auto".
        ``log_likelihood`` is then the mean observed-data log-likelihood per row. Without
        NaN in ``X`` the fit is the ordinary one. Fill the gaps afterwards with
        ``result.params.impute(X)``.

    Returns
    -------
    EMResult
        ``(params, log_likelihood, n_iter, converged, log_likelihood_history,
        restart_log_likelihoods)``.

    Raises
    ------
    ValueError
        On invalid input, or with ``degenerate="raise"`` when a covariance stops being
        positive definite (increase ``reg_covar``).

    Warns
    -----
    ConvergenceWarning
        When the best restart did not converge within ``max_iter``.
    DegenerateComponentWarning
        When ``degenerate="reseed"`` had to act on the returned restart.

    Notes
    -----
    Computes in float64 when ``jax_enable_x64`` is on, else float32. The data are
    centred (weighted mean, in float64, on the host) and divided by a power of two near
    their standard deviation before fitting, and the parameters mapped back: the
    rescaling is exact, float32 keeps its digits on data far from the origin, and values
    near the floating-point limits (1e150) stay finite. ``reg_covar`` is on the data's scale.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm import em_fit
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-3, 1, (200, 2)), rng.normal(3, 1, (200, 2))])
    >>> result = em_fit(X, 2, seed=0)
    >>> bool(result.converged), result.params.means.shape
    (True, (2, 2))
    >>> np.sort(np.round(np.asarray(result.params.means[:, 0])))
    array([-3.,  3.])

    References
    ----------
    A. P. Dempster, N. M. Laird and D. B. Rubin, "Maximum likelihood from incomplete
    data via the EM algorithm", JRSS B 39(1), 1977.

    Z. Ghahramani and M. I. Jordan, "Supervised learning from incomplete data via an EM
    approach", NIPS 6, 1994 (``missing="marginalize"``).
    """
    reg_covar = _validation.check_nonnegative_float(reg_covar, "reg_covar")
    missing = _validation.check_choice(missing, "missing", MISSING)
    data = prepare_data(X, sample_weight, dtype=jnp.result_type(float), stream=stream, missing=missing)
    if data.has_missing:
        if _validation.check_choice(moments, "moments", MOMENTS) != "auto":
            raise ValueError(
                f"moments={moments!r} does not apply with missing='marginalize' on data with NaN (the E-step "
                "marginalises each row's missing entries in its own way); leave moments='auto'."
            )
        moments = "missing"
    k = _validation.check_n_components(k, data.n_positive)
    weights_init, means_init, covariances_init = _validation.check_initial_parameters(
        weights_init, means_init, covariances_init, k=k, d=data.n_features, covariance_type=covariance_type
    )
    user_init = (weights_init, means_init, covariances_init)
    if all(value is not None for value in user_init):
        n_init = 1
    ((result, _),) = fit_groups(
        data,
        [k],
        covariance_type=covariance_type,
        n_init=n_init,
        init=init,
        max_iter=max_iter,
        tol=tol,
        reg_covar=reg_covar,
        seed=seed,
        user_init=user_init,
        degenerate=degenerate,
        moments=moments,
        chunk_size=chunk_size,
    )
    return result


def prepare_data(X, sample_weight=None, *, dtype, stream=None, missing=None) -> _Prepared:
    """Validate ``X`` (array-like, ``ShardedRows`` or rows to stream) and ``sample_weight``; centre and rescale.

    ``stream``: True, False, or None (stream an ``np.memmap``, keep anything else in memory).
    ``missing``: None (NaN is an error), "raise" (an error that names ``missing="marginalize"``)
    or "marginalize" (NaN allowed in memory; the fit then needs ``moments="missing"``).
    """
    streamed = stream is True or (stream is None and isinstance(X, np.memmap))
    if missing == "marginalize" and (streamed or isinstance(X, ShardedRows)):
        raise ValueError(
            "missing='marginalize' needs the rows in memory: it supports neither streamed rows (stream=True or an "
            "np.memmap) nor bayesgmm.shard. Pass np.asarray(X) with stream=False, or drop or impute the NaN first."
        )
    if isinstance(X, ShardedRows):
        if sample_weight is not None:
            raise ValueError("With sharded rows, pass sample_weight to bayesgmm.shard, not to em_fit.")
        if stream:
            raise ValueError("Sharded rows are already on the devices; stream=True needs rows on the host.")
        return _prepare_sharded(X, dtype)
    if stream not in (None, True, False):
        raise ValueError(f"stream must be True, False or None (automatic), got {stream!r}.")
    if stream or (stream is None and isinstance(X, np.memmap)):
        return _prepare_stream(X, sample_weight, dtype)
    advice = "drop or impute them before fitting."
    if missing == "raise":
        advice = "drop or impute them, or pass missing='marginalize' to fit the observed entries of those rows."
    X = _validation.check_data(X, allow_nan=missing == "marginalize", nan_advice=advice)
    return _prepare(X, _validation.check_sample_weight(sample_weight, X.shape[0]), dtype)


def _prepare_stream(X, sample_weight, dtype) -> _Prepared:
    """Moments of host rows read block by block (float64); the rows stay on the host."""
    from bayesgmm.streaming import host_moments

    if not (isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype.kind in "iuf" and X.size > 0):
        raise ValueError(
            "stream=True needs X as a non-empty 2-D numeric NumPy array or np.memmap (n_samples, n_features), "
            f"got {type(X).__name__}" + (f" with shape {X.shape} and dtype {X.dtype}." if hasattr(X, "shape") else ".")
        )
    weights = _validation.check_sample_weight(sample_weight, X.shape[0])
    total, center, covariance = host_moments(X, weights)
    scale = _power_of_two_scale(float(np.mean(np.diag(covariance))))
    n_positive = int(np.count_nonzero(weights))
    return _Prepared(X, weights, center, scale, covariance / scale**2, total, n_positive, stream=True)


def fit_groups(
    data: _Prepared,
    ks: list[int],
    *,
    covariance_type: str,
    n_init: int,
    init: str,
    max_iter: int,
    tol: float,
    reg_covar: float,
    seed,
    user_init=(None, None, None),
    degenerate: str = "reseed",
    moments: str = "auto",
    chunk_size: int | None = None,
    context: str = "",
) -> list[tuple[EMResult, float]]:
    """One ``EMResult`` per number of components in ``ks``, all fitted in one compiled program.

    The fits use ``max(ks)`` components with the extra ones switched off (weight 0), so
    fits with different ``k`` have equal shapes and run in one program (``fit_batch``)
    together with their ``n_init`` restarts; each equals ``em_fit`` with that ``k`` and ``seed`` up to
    round-off (the initial draws of a restart do not depend on ``k``, except for
    ``init="random"``). ``user_init`` (weights, means, covariances in scikit-learn's layout,
    on the data's scale, or Nones) needs a single ``k``.

    Returns ``(result, Σ_i w_i max_k log r_ik)`` pairs; the second is ICL's classification term.
    """
    structure = get_structure(covariance_type)
    dtype = jnp.result_type(float) if data.stream else data.X.dtype
    n_init = _validation.check_int_at_least(n_init, "n_init", 1)
    max_iter = _validation.check_int_at_least(max_iter, "max_iter", 0)
    tol = _validation.check_nonnegative_float(tol, "tol")
    init = _validation.check_choice(init, "init", INIT_METHODS)
    degenerate = _validation.check_choice(degenerate, "degenerate", DEGENERATE)
    moments = resolve_moments(moments, dtype)
    k_max = max(ks)
    n_rows = data.X.shape[0]
    if chunk_size is not None:
        chunk_size = min(_validation.check_int_at_least(chunk_size, "chunk_size", 1), n_rows)
    chunk_size = chunk_size or default_chunk_size(n_rows, k_max, data.n_features, n_init * len(ks), moments)
    weights_init, means_init, covariances_init = user_init
    scaled_init = (  # host arrays; the covariances become Cholesky factors in the program
        None if weights_init is None else np.asarray(weights_init, dtype),
        None if means_init is None else np.asarray((means_init - data.center) / data.scale, dtype),
        None if covariances_init is None else np.asarray(covariances_init / data.scale**2, dtype),
    )
    if data.stream:
        return [
            result
            for k in ks
            for result in _fit_streaming(
                data,
                k,
                structure,
                scaled_init,
                dict(
                    n_init=n_init,
                    init=init,
                    max_iter=max_iter,
                    tol=tol,
                    reg_covar=reg_covar,
                    seed=seed,
                    degenerate=degenerate,
                    moments=moments,
                    chunk_size=chunk_size,
                    context=context,
                ),
            )
        ]
    setting = _setting(data, k_max, reg_covar, tol, max_iter, dtype)
    draws = init_draws(seed, n_init, k_max, init, data.n_positive)
    states, log_likelihoods = fit_batch(
        data.X,
        data.weights,
        np.broadcast_to(draws, (len(ks),) + draws.shape),
        np.arange(k_max)[None, :] < np.asarray(ks)[:, None],
        setting,
        scaled_init,
        k=k_max,
        covariance_type=covariance_type,
        init=init,
        history_size=bucket_size(max_iter + 1),
        chunk_size=chunk_size,
        moments=moments,
        degenerate=degenerate,
        mesh=data.mesh,
        sequential=_on_cpu(data.X),
    )
    return _results(
        data, ks, states, log_likelihoods, setting, reg_covar=reg_covar, tol=tol, max_iter=max_iter, context=context
    )


def _fit_streaming(data: _Prepared, k: int, structure, scaled_init, options: dict):
    """One streamed fit (``bayesgmm.streaming``) with ``k`` components."""
    from bayesgmm import streaming

    dtype = jnp.result_type(float)
    chunk_size = options["chunk_size"]
    setting = _setting(data, k, options["reg_covar"], options["tol"], options["max_iter"], dtype)
    block_chunks = max(1, streaming._BLOCK_ELEMENTS // (chunk_size * data.n_features))
    block_chunks = min(block_chunks, -(-data.X.shape[0] // chunk_size))
    host = streaming.HostRows(
        data.X, data.weights, data.center, data.scale, data.covariance, dtype, chunk_size, block_chunks
    )
    states = streaming.fit(
        host,
        init_draws(options["seed"], options["n_init"], k, options["init"], data.n_positive),
        setting,
        scaled_init,
        method=options["init"],
        covariance_type=structure.name,
        moments=options["moments"],
        degenerate=options["degenerate"],
        history_size=options["max_iter"] + 1,
    )
    best = int(np.argmax(np.asarray(states.log_likelihood)))
    log_likelihoods = np.asarray(states.log_likelihood)[None]
    best_state = jax.tree.map(lambda leaf: leaf[best][None], states)
    return _results(
        data,
        [k],
        best_state,
        log_likelihoods,
        setting,
        reg_covar=options["reg_covar"],
        tol=options["tol"],
        max_iter=options["max_iter"],
        context=options["context"],
        depth=1,
    )


def _results(data, ks, states, log_likelihoods, setting, *, reg_covar, tol, max_iter, context, depth=0):
    """EMResults (data scale) from the best state of each group, with their warnings or errors."""
    states, log_likelihoods = jax.device_get((states, log_likelihoods))
    results = []
    for group, k in enumerate(ks):
        state = jax.tree.map(lambda leaf, group=group: leaf[group], states)
        if bool(state.failed) or not np.isfinite(float(state.log_likelihood)):
            raise DegenerateFitError(context + _DEGENERATE_ERROR.format(reg_covar=reg_covar, k=k))
        state = state._replace(
            params=_first_components(state.params, k), events=jax.tree.map(lambda leaf, k=k: leaf[:k], state.events)
        )
        _warn_degenerate(
            state.events,
            reg_covar=reg_covar,
            fallback_reg=float(setting.fallback_reg) * data.scale**2,
            context=context,
            stacklevel=5 + depth,
        )
        result = data.result(
            state, log_likelihoods[group], tol=tol, max_iter=max_iter, context=context, stacklevel=5 + depth
        )
        results.append((result, float(state.max_log_resp)))
    return results


def _first_components(params: GMMParams, k: int) -> GMMParams:
    """The first ``k`` components (those in use; their weights already sum to 1), NumPy leaves."""
    scale = np.asarray(params.structure.core.permute(params.scale, np.arange(k)))  # NumPy indexing (or tied: as is)
    return GMMParams(params.weights[:k], params.means[:k], scale, params.covariance_type)


class _Prepared(NamedTuple):
    """Data centred and rescaled for fitting, their moments, and how to map results back."""

    X: Array  # (n, d) (X − center) / scale in the compute dtype (sharded over mesh, if any)
    weights: Array  # (n,) row weights in the compute dtype
    center: np.ndarray  # (d,) weighted mean, float64
    scale: float  # a power of two near the data's standard deviation
    covariance: np.ndarray  # (d, d) weighted covariance of the rescaled data, float64
    total_weight: float
    n_positive: int  # rows of positive weight
    mesh: object = None
    stream: bool = False  # X and weights are the host rows (NumPy), read block by block
    observed_features: float | None = None  # X has NaN: the weighted mean number of observed features per row

    @property
    def n_features(self) -> int:
        return self.center.shape[0]

    @property
    def has_missing(self) -> bool:
        return self.observed_features is not None

    def result(
        self, state: _LoopState, restart_log_likelihoods, *, tol: float, max_iter: int, context="", stacklevel=5
    ) -> EMResult:
        """The EMResult on the data's scale; warns on non-convergence."""
        n_iter = int(state.n_iter)
        converged = bool(abs(float(state.change)) < tol)
        if not converged and max_iter > 0:
            warnings.warn(
                f"{context}EM did not converge in max_iter={max_iter} iterations: the last change in mean "
                f"log-likelihood was {float(state.change):.3g} (tol={tol:g}). Increase max_iter or "
                "tol, or try other initialisations (n_init, init).",
                ConvergenceWarning,
                stacklevel=stacklevel,
            )
        params = state.params  # NumPy leaves (device_get), rescaled on the host
        dtype = params.means.dtype
        d = params.n_features
        means = params.means * self.scale + self.center
        scale = params.scale * self.scale
        covariances = np.asarray(params.structure.core.covariances(scale.astype(dtype)))
        if not (np.all(np.isfinite(means.astype(dtype))) and np.all(np.isfinite(covariances))):
            largest = float(np.max(np.abs(scale.astype(np.float64)))) ** 2  # the order of the largest variance
            raise ValueError(
                f"{context}The fitted means or covariances do not fit in {np.dtype(dtype).name} (variances near "
                f"{largest:.3g}; the largest {np.dtype(dtype).name} is {np.finfo(dtype).max:.3g}). "
                "Enable float64 (jax.config.update('jax_enable_x64', True)) or divide X by a constant first."
            )
        params = GMMParams(
            _to_device(params.weights, dtype),
            _to_device(means, dtype),
            _to_device(scale, dtype),
            params.covariance_type,
        )
        # the density of a row's observed entries changes by scale^(−observed features)
        log_scale = (d if self.observed_features is None else self.observed_features) * math.log(self.scale)
        history = np.asarray(state.history)[: n_iter + 1] - log_scale
        return EMResult(
            params,
            float(state.log_likelihood) - log_scale,
            n_iter,
            converged,
            history,
            np.asarray(restart_log_likelihoods) - log_scale,
        )


def _to_device(values: np.ndarray, dtype) -> Array:
    """A host array on the default device in ``dtype``, converted on the host.

    ``jnp.asarray`` would compile a small program per new shape (tens of milliseconds in a
    fresh process, and seconds while another compilation occupies the cores).
    """
    return jax.device_put(np.asarray(values, dtype=np.dtype(dtype)))


def _prepare(X: np.ndarray, weights: np.ndarray, dtype) -> _Prepared:
    """Centre and rescale in-memory rows (float64, on the host), padded to ``bucket_size`` rows.

    Rows with NaN (``missing="marginalize"``) keep their NaN, and are put after the complete
    rows; the moments are then those of the observed entries (``missing.observed_moments``).
    """
    total = float(weights.sum())
    observed_features = None
    if np.isnan(X).any():
        from bayesgmm.missing import complete_rows_first, observed_moments

        order = complete_rows_first(X)
        X, weights = X[order], weights[order]
        center, covariance, observed_features = observed_moments(X, weights)
        centred = X - center
    else:
        center = weights @ X / total
        centred = X - center
        covariance = (centred * weights[:, None]).T @ centred / total
    scale = _power_of_two_scale(float(np.mean(np.diag(covariance))))
    # rows of weight 0 up to a bucket size: data sets of nearby sizes share one compiled fit
    pad = bucket_size(X.shape[0]) - X.shape[0]
    return _Prepared(
        _to_device(np.concatenate([centred / scale, np.zeros((pad, X.shape[1]))]), dtype),
        _to_device(np.concatenate([weights, np.zeros(pad)]), dtype),
        center,
        scale,
        covariance / scale**2,
        total,
        int(np.count_nonzero(weights)),
        observed_features=observed_features,
    )


def _prepare_sharded(rows: ShardedRows, dtype) -> _Prepared:
    """Centre and rescale sharded rows on their devices (the rows stay where they are)."""
    from bayesgmm.sharding import standardise, describe

    total, center, covariance, n_positive = describe(rows)
    scale = _power_of_two_scale(float(np.mean(np.diag(covariance))))
    X = standardise(rows.X.astype(dtype), jnp.asarray(center, dtype), jnp.asarray(scale, dtype))
    return _Prepared(X, rows.weights.astype(dtype), center, scale, covariance / scale**2, total, n_positive, rows.mesh)


def _setting(data: _Prepared, k: int, reg_covar: float, tol: float, max_iter: int, dtype) -> _Setting:
    """The fit's dynamic settings on the rescaled data, as host arrays (one transfer per call).

    ``reseed_scale`` holds the data covariance (+ regularisation) here; ``_device_setting``
    turns it into the type's Cholesky factor inside the compiled program.
    """
    reg = reg_covar / data.scale**2
    eps = float(jnp.finfo(dtype).eps)
    fallback = max(10.0 * reg, 1e3 * eps * max(1.0, float(np.mean(np.diag(data.covariance)))))
    d = data.covariance.shape[0]
    host = functools.partial(np.asarray, dtype=dtype)
    return _Setting(
        tol=host(tol),
        reg_covar=host(reg),
        fallback_reg=host(fallback),
        reseed_scale=host(data.covariance + max(reg, fallback) * np.eye(d)),
        total_weight=host(data.total_weight),
        mean_row_weight=host(data.total_weight / data.n_positive),
        active=np.ones((k,), bool),
        max_iter=np.asarray(max_iter),
    )


def _device_setting(setting: _Setting, structure, k: int) -> _Setting:
    """In the program: the re-seed covariance as the type's Cholesky factor for ``k`` components."""
    return setting._replace(
        reseed_scale=structure.core.from_covariances(structure.core.layout_from_full(setting.reseed_scale, k))
    )


def _device_user_init(user_init, structure):
    """In the program: user-given covariances (rescaled, scikit-learn's layout) as Cholesky factors."""
    weights, means, covariances = user_init
    return weights, means, None if covariances is None else structure.core.from_covariances(covariances)


def bucket_size(n: int) -> int:
    """A size >= n from a coarse grid, so that nearby sizes share one compiled program.

    Multiples of 64 up to 1024, then multiples of 2**(b − 5) with 2**b the largest power of
    two <= n: at most 1/16 (6%) more rows, about 16 sizes per doubling.
    """
    step = 64 if n <= 1024 else 1 << (n.bit_length() - 5)
    return -(-n // step) * step
