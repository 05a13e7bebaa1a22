"""EM's kernels: pure functions of (state, statistics, settings), shared by every driver.

They run on JAX arrays inside compiled programs and on NumPy arrays on the host (the NumPy
driver, ``_host``): each picks its array module with ``_arrays.namespace``, so both kinds of
driver apply the same M-step, the same repair rules and the same stopping rule.

blackjax-style: ``start_state`` builds the loop state from initial parameters, ``advance``
makes one EM iteration from an E-step's statistics (M-step, repair, stopping rule,
history), ``finish`` closes a fit. The in-memory driver calls them inside a
``lax.while_loop``; the streaming driver between host passes over blocks of rows. Also here:
``m_step`` (scikit-learn's), ``repair`` (what EM does with degenerate components), and the
initial parameters from an ``InitialAssignment``. Pure, unjitted, ``vmap``-safe.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import Array, lax

from bayesgmm._arrays import namespace
from bayesgmm.chunks import Rows, accumulate
from bayesgmm.covariance import get_structure
from bayesgmm.em._init import InitialAssignment
from bayesgmm.em._state import DegenerateEvents, EMState, Settings, SufficientStatistics, UserInit
from bayesgmm.families import get_family, update_dof
from bayesgmm.params import GMMParams

# A component holding less than this fraction of one average row's weight is empty.
EMPTY_FRACTION = 1e-3
# A smallest variance at most this factor times reg_covar is at the floor: what the rows give is
# no more than reg_covar adds (``spurious``).
SPURIOUS_FLOOR_FACTOR = 2.0
# An EM stopped by max_iter before converging may cycle through a singular covariance (EVV on iris,
# k = 5..7, reg_covar=0: regularised in about every other M-step, the last one or not by round-off):
# a component that needed the fallback regularisation in any of its last this many M-steps is held up
# by it (``held_up``).
HELD_UP_WINDOW = 10
# Final mean log-likelihoods of two restarts closer than this many machine epsilons (relative)
# are equal up to the round-off of summing n rows in another order (``best_restart``).
RESTART_TIE_EPS = 1000.0


def m_step(
    stats: SufficientStatistics,
    reg_covar,
    covariance_type: str,
    active: Array | None = None,
    previous: GMMParams | None = None,
) -> GMMParams:
    """New parameters from statistics about ``stats.shift`` (scikit-learn's M-step).

    ``n_k = Σ w r_ik + 10 ε``, ``μ_k = shift_k + Σ w r (x − shift_k) / n_k``, covariance
    about the new means divided by ``n_k`` plus ``reg_covar`` on the diagonal, weights
    ``n_k / Σ n_k``. Components outside ``active`` keep weight exactly 0.

    Student-t components (statistics with ``weighted_counts``, first and second moments
    weighted by ``u``; McLachlan and Peel 2000, §7.5): ``μ_k = shift_k + Σ w r u (x − shift_k) /
    Σ w r u``, scale ``Σ w r u (x − μ_k)(x − μ_k)ᵀ / n_k``, then the degrees of freedom's ECM
    step (``families.update_dof``; the in-memory and NumPy drivers then replace it by ECME's,
    ``_estep.dof_step``). ``previous``: the parameters the statistics were computed
    under; the new ones continue their family (None: Gaussian), and M-steps that iterate from a
    start (``warm_start``: EVE, VVE) may start there.
    """
    structure = get_structure(covariance_type)
    xp = namespace(stats.counts)
    eps = 10 * xp.finfo(stats.counts.dtype).eps
    nk = stats.counts + eps
    if active is not None:
        nk = xp.where(active, nk, 0.0)
    safe_nk = xp.where(nk > 0, nk, 1.0)
    scatter_counts, safe_scatter = stats.counts, safe_nk
    if stats.weighted_counts is not None:  # a scale mixture: moments weighted by u
        scatter_counts = stats.weighted_counts
        safe_scatter = xp.where(nk > 0, scatter_counts + eps, 1.0)
    delta = stats.first / safe_scatter[:, None]
    moments = (scatter_counts, safe_nk, stats.first, delta, stats.second, reg_covar)
    if structure.em.warm_start and previous is not None:  # EVE, VVE: a generalised EM step from ``previous``
        scale = structure.em.scale_from_moments(*moments, previous.scale)
    else:
        scale = structure.em.scale_from_moments(*moments)
    new = GMMParams(nk / xp.sum(nk), stats.shift + delta, scale, covariance_type)
    return new if previous is None else continue_model(new, previous, stats, active)


def continue_model(new: GMMParams, previous: GMMParams, stats: SufficientStatistics, active) -> GMMParams:
    """``new`` in ``previous``'s family and with its noise component, after their own M-steps: the
    degrees of freedom (Student-t) and the noise weight ``Σ w r_0 / Σ w``."""
    if previous.noise_weight is not None:
        xp = namespace(stats.counts)
        noise_weight = stats.noise_count / (stats.noise_count + xp.sum(stats.counts))
        new = dataclasses.replace(new, noise_weight=noise_weight, noise_bounds=previous.noise_bounds)
    if previous.dof is None:
        return new
    dof = update_dof(previous.dof, stats.dof_sums, stats.counts, active, previous.dof_mode)
    return dataclasses.replace(new, family=previous.family, dof_mode=previous.dof_mode, dof=dof)


def start_model(params: GMMParams, family: str, dof_mode: str, settings: Settings) -> GMMParams:
    """The initial parameters in the fit's family (Student-t components start at ``settings.dof_start``),
    with a noise component of weight ``settings.noise_start`` on ``settings.noise_bounds`` if asked."""
    xp = namespace(params.means)
    if settings.noise_start is not None:
        params = dataclasses.replace(
            params,
            noise_weight=xp.asarray(settings.noise_start, params.dtype),
            noise_bounds=xp.asarray(settings.noise_bounds, params.dtype),
        )
    if get_family(family).e_step_terms is None:
        return params
    dof = xp.asarray(settings.dof_start, params.dtype)
    return dataclasses.replace(params, family=family, dof_mode=dof_mode, dof=dof)


def repair(
    params: GMMParams, stats: SufficientStatistics, seed_row: Array | None, settings: Settings
) -> tuple[GMMParams, Array, Array]:
    """Fix degenerate components after an M-step; returns ``(params, reseeded (k,), regularised (k,))``.

    - A covariance that is not positive definite (non-finite Cholesky factor; a component on
      one point or duplicates with ``reg_covar`` 0, a constant feature...) is recomputed with
      ``fallback_reg`` on its diagonal instead of ``reg_covar``.
    - An empty component (``Σ w r < EMPTY_FRACTION`` of an average row's weight) or one still
      invalid is re-seeded: mean at the worst-fitting row (``seed_row``; one empty component
      per M-step, the first, so that two never restart at the same row; the others wait with
      their tiny weight), covariance the data's (``reseed_scale``) shrunk by ``k^(−2/d)`` (the
      share of the data's volume of one of ``k`` components; tied: the shared covariance is
      kept unless it is itself invalid), weight ``1/k``; then the weights are renormalised.

    Inactive components are left as they are. ``settings`` give ``reg_covar``,
    ``fallback_reg``, ``reseed_scale`` (in the program's layout), ``mean_row_weight`` and
    ``active``.
    """
    fallback_reg, reseed_scale = settings.fallback_reg, settings.reseed_scale
    mean_row_weight, active = settings.mean_row_weight, settings.active
    structure = params.structure
    xp = namespace(stats.counts, params.means)
    k = params.n_components
    valid = structure.core.component_valid(params.scale, k)
    regularised = active & ~valid
    eps = 10 * xp.finfo(stats.counts.dtype).eps
    nk = stats.counts + eps
    safe_nk = xp.where(active, nk, 1.0)
    scatter_counts = stats.counts if stats.weighted_counts is None else stats.weighted_counts
    delta = stats.first / xp.where(active, scatter_counts + eps, 1.0)[:, None]
    fallback = structure.em.scale_from_moments(scatter_counts, safe_nk, stats.first, delta, stats.second, fallback_reg)
    scale = structure.core.reset_components(regularised, fallback, params.scale)
    still_invalid = active & ~structure.core.component_valid(scale, k)
    empty = active & (stats.counts < EMPTY_FRACTION * mean_row_weight)
    if seed_row is None:  # initial parameters: nothing to re-seed from yet
        return dataclasses.replace(params, scale=scale), xp.zeros_like(empty), regularised
    first_empty = xp.arange(k) == xp.argmax(empty)
    reseeded = (empty & first_empty) | still_invalid
    n_active = xp.sum(active)
    means = xp.where(reseeded[:, None], seed_row, params.means)
    shrink = n_active.astype(scale.dtype) ** (-1.0 / params.n_features)
    scale = structure.core.reset_components(reseeded, reseed_scale * shrink, scale)
    weights = params.weights * xp.sum(xp.where(active, nk, 0.0))
    weights = xp.where(reseeded, xp.sum(weights) / n_active, weights)
    weights = xp.where(active, weights, 0.0)
    weights = weights / xp.sum(weights)
    return dataclasses.replace(params, weights=weights, means=means, scale=scale), reseeded, regularised


def keep_inactive(structure, new: GMMParams, old: GMMParams, active: Array) -> GMMParams:
    """Inactive components keep their (finite, unused) means and scale; their weight stays 0."""
    xp = namespace(new.means, old.means, active)
    means = xp.where(active[:, None], new.means, old.means)
    return dataclasses.replace(new, means=means, scale=structure.core.reset_components(~active, old.scale, new.scale))


def initial_statistics(assignment: InitialAssignment, rows: Rows, covariance_type: str) -> SufficientStatistics:
    """Statistics of the initial responsibilities, about ``assignment.shift`` (scikit-learn's start).

    Over ``assignment.rows`` when the start brings its own rows (the hierarchical start), else ``rows``.
    """
    rows = rows if assignment.rows is None else assignment.rows
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


def initial_params(
    stats: SufficientStatistics, settings: Settings, user_init: UserInit, *, covariance_type, degenerate
):
    """One M-step from the initial statistics, then the user-given parts; ``(params, regularised (k,))``."""
    structure = get_structure(covariance_type)
    k, d = stats.shift.shape
    params = m_step(stats, settings.reg_covar, covariance_type, settings.active)
    xp = namespace(stats.counts)
    identity = structure.core.identity_scale(k, d, stats.shift.dtype, xp)
    params = keep_inactive(
        structure, params, GMMParams(params.weights, stats.shift, identity, covariance_type), settings.active
    )
    regularised = xp.zeros((k,), bool)
    if degenerate == "reseed":
        params, _, regularised = repair(params, stats, None, settings)
    weights_init, means_init, scale_init = user_init
    params = GMMParams(
        params.weights if weights_init is None else weights_init,
        params.means if means_init is None else means_init,
        params.scale if scale_init is None else scale_init,
        covariance_type,
    )
    return params, regularised


def user_params(user_init: UserInit, covariance_type: str) -> GMMParams | None:
    """The initial parameters when the user gave all three, else None."""
    if not user_init.complete:
        return None
    return GMMParams(*user_init, covariance_type)


def all_finite(params: GMMParams) -> Array:
    xp = namespace(params.means)
    return xp.all(xp.array([xp.all(xp.isfinite(leaf)) for leaf in jax.tree.leaves(params)]))


def invalid(params: GMMParams, active: Array) -> Array:
    """Some parameter is not finite, or an active component's covariance is not positive definite."""
    valid = params.structure.core.component_valid(params.scale, params.n_components)
    return ~all_finite(params) | namespace(params.means).any(active & ~valid)


def start_state(params: GMMParams, regularised: Array, settings: Settings, *, history_size: int) -> EMState:
    """The loop state before the first E-step, from the initial parameters."""
    xp = namespace(params.means)
    dtype = params.dtype
    k = params.n_components
    failed = invalid(params, settings.active)
    return EMState(
        params=params,
        n_iter=xp.asarray(0),
        last_log_likelihood=xp.asarray(-xp.inf, dtype),
        change=xp.asarray(xp.inf, dtype),
        stop=settings.max_iter == 0,
        done=failed,
        failed=failed,
        log_likelihood=xp.asarray(-xp.inf, dtype),
        max_log_resp=xp.asarray(0.0, dtype),
        history=xp.full((history_size,), xp.nan, dtype),
        events=DegenerateEvents.none(k, xp).record(0, xp.zeros((k,), bool), regularised),
        spurious=xp.zeros((k,), bool),
    )


def advance(
    state: EMState,
    stats: SufficientStatistics,
    seed_row: Array,
    settings: Settings,
    *,
    degenerate: str,
) -> EMState:
    """One EM iteration after its E-step: M-step, repair, stopping rule, history.

    ``stats`` are the E-step statistics of ``state.params`` and ``seed_row`` (d,) the row
    with the lowest log-likelihood under them. If the previous iteration was the last
    (``state.stop``), these statistics only score the returned parameters and the state is
    finished; otherwise the M-step runs. Keeping the E-step outside lets the in-memory loop
    (``while_loop``), the streaming driver (a host loop over blocks) and the NumPy driver
    (``_host``: NumPy arrays, Python branches instead of ``lax.cond``) share this.
    """
    xp = namespace(stats.counts)
    cond = lax.cond if xp is jnp else _host_cond
    params = state.params
    structure = params.structure
    active = settings.active
    dtype = stats.log_likelihood.dtype
    log_likelihood = stats.log_likelihood / settings.total_weight
    history = _set(state.history, state.n_iter, log_likelihood)
    new = m_step(stats, settings.reg_covar, params.covariance_type, active, previous=params)
    new = keep_inactive(structure, new, params, active)
    events = state.events
    if degenerate == "reseed":

        def repaired(new):
            new, reseeded, regularised = repair(new, stats, seed_row, settings)
            return new, events.record(state.n_iter + 1, reseeded, regularised)

        # the repair runs only when needed (a real branch unless vmapped with other fits)
        empty = stats.counts < EMPTY_FRACTION * settings.mean_row_weight
        needed = xp.any(active & (empty | ~structure.core.component_valid(new.scale, new.n_components)))
        new, events = cond(needed, repaired, lambda new: (new, events), new)
    change = log_likelihood - state.last_log_likelihood
    n_iter = state.n_iter + 1

    def running():
        failed = invalid(new, active)
        return EMState(
            params=new,
            n_iter=n_iter,
            last_log_likelihood=log_likelihood,
            change=change,
            stop=(xp.abs(change) < settings.tol) | (n_iter >= settings.max_iter),
            done=failed,
            failed=failed,
            log_likelihood=xp.where(failed, -xp.inf, log_likelihood).astype(dtype),
            max_log_resp=state.max_log_resp,
            history=history,
            events=events,
            spurious=state.spurious,
        )

    def finished():  # this E-step scored the returned parameters
        return state._replace(
            done=True, log_likelihood=log_likelihood, max_log_resp=stats.max_log_resp, history=history
        )

    return cond(state.stop, finished, running)


def finish(state: EMState, settings: Settings) -> EMState:
    """A failed fit scores −inf; the components the data cannot support are marked (``spurious``)."""
    xp = namespace(state.log_likelihood)
    return state._replace(
        log_likelihood=xp.where(xp.isfinite(state.log_likelihood), state.log_likelihood, -xp.inf),
        spurious=spurious(state.params, settings, held_up(state, settings)),
    )


def converged(state: EMState, tol) -> Array:
    """() bool: the last M-step changed the mean log-likelihood by less than ``tol``."""
    return namespace(state.change).abs(state.change) < tol


def held_up(state: EMState, settings: Settings) -> Array:
    """(k,) bool: components whose returned covariance needed the fallback regularisation (``repair``):
    with ``reg_covar`` alone the M-step that gave them was not positive definite. For a fit that did
    not converge, an M-step among the last ``HELD_UP_WINDOW`` counts too: a cycle that passes
    through a singular covariance is held up by the regularisation whichever step it stopped at."""
    xp = namespace(state.change)
    since = state.n_iter - xp.where(converged(state, settings.tol), 0, HELD_UP_WINDOW)
    last = state.events.last_regularised
    return (last >= 0) & (last >= since)


def effective_rows(params: GMMParams, settings: Settings) -> Array:
    """(k,) ``Σ_i w_i r_ik`` in rows of mean weight: how many rows each component holds."""
    share = 1.0 if params.noise_weight is None else 1.0 - params.noise_weight  # what the noise leaves
    return params.weights * share * (settings.total_weight / settings.mean_row_weight)


def spurious(params: GMMParams, settings: Settings, regularised: Array | None = None) -> Array:
    """(k,) bool: active components the data cannot support (a spurious maximum of the likelihood).

    A component is spurious when it holds fewer effective rows than its structure needs
    (``em.supported_rows``: full ``d + 1``, diag and spherical 2, tied 1), when its
    smallest variance (eigenvalue) is within ``SPURIOUS_FLOOR_FACTOR`` of the ``reg_covar``
    floor, or when its covariance needed the fallback regularisation (``regularised``, (k,)
    bool: ``held_up``; a singular scatter, e.g. many rows sharing one value of a feature with
    ``reg_covar=0``): then the likelihood grows without bound as the component shrinks onto a
    few rows or a subspace, and only the regularisation holds it up (McLachlan and Peel 2000,
    §3.10; Hathaway 1985).
    """
    xp = namespace(params.means)
    structure, k, d = params.structure, params.n_components, params.n_features
    covariances = structure.core.covariance_matrices(params.scale, k, d)
    # a failed fit (NaN) is reported as failed, not here; NumPy's eigvalsh raises on NaN
    smallest = xp.linalg.eigvalsh(xp.where(xp.isfinite(covariances), covariances, 0.0))[..., 0]
    too_few_rows = effective_rows(params, settings) < structure.em.supported_rows(d)
    at_floor = smallest <= SPURIOUS_FLOOR_FACTOR * settings.reg_covar
    if regularised is not None:
        at_floor = at_floor | regularised
    return settings.active & (too_few_rows | at_floor)


def best_restart(log_likelihoods: Array, spurious_restarts: Array) -> Array:
    """Index of the restart with the highest log-likelihood among those without a spurious
    component; among all restarts when each has one.

    Restarts within round-off of the best (``RESTART_TIE_EPS`` machine epsilons, relative)
    are ties and the first of them wins, as in scikit-learn (a later restart replaces an
    earlier one only when it is better): two restarts that reach one optimum with their
    components in different orders then give the same fit whichever driver, chunking or
    sharding summed the log-likelihoods.
    """
    xp = namespace(log_likelihoods)
    supported = ~spurious_restarts
    candidates = xp.where(supported | ~xp.any(supported), log_likelihoods, -xp.inf)
    best = xp.max(candidates)
    tolerance = RESTART_TIE_EPS * xp.finfo(candidates.dtype).eps * xp.maximum(1.0, xp.abs(best))
    return xp.argmax(candidates >= best - tolerance)


def _host_cond(predicate, true_fn, false_fn, *operands):
    """``lax.cond`` for NumPy arrays: a Python branch."""
    return true_fn(*operands) if bool(predicate) else false_fn(*operands)


def _set(values, index, value):
    """``values`` with ``values[index] = value``, a new array (NumPy or JAX)."""
    if namespace(values) is jnp:
        return values.at[index].set(value)
    values = values.copy()
    values[int(index)] = value
    return values


def device_settings(settings: Settings, structure, k: int) -> Settings:
    """In the program: the re-seed covariance as the type's Cholesky factor for ``k`` components."""
    return settings._replace(
        reseed_scale=structure.core.from_covariances(structure.core.layout_from_full(settings.reseed_scale, k))
    )


def device_user_init(user_init: UserInit, structure) -> UserInit:
    """In the program: user-given covariances (rescaled, scikit-learn's layout) as Cholesky factors."""
    return user_init._replace(
        scale=None if user_init.scale is None else structure.core.from_covariances(user_init.scale)
    )
