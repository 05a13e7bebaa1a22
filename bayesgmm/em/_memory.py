"""The in-memory (and sharded) driver: every restart's EM loop in one compiled program.

``fit_batch`` chunks the rows (``chunks.chunk_rows``: on one device, or each device its
own rows when sharded over a mesh), initialises each restart (``_init.INIT_METHODS``), runs
``_kernels.advance`` in a ``lax.while_loop`` after each E-step (``_estep.E_STEPS``; for
estimated Student-t degrees of freedom, ECME's second pass ``_estep.dof_step`` after it), and
keeps each group's best restart. Restarts and groups run one after another on CPU
(``lax.map``) and vmapped on accelerators. The program's static part is one ``Program``.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import Array, lax

from bayesgmm.chunks import Rows, chunk_rows
from bayesgmm.em._config import Program
from bayesgmm.em._estep import dof_step, e_step, fill_missing
from bayesgmm.em._init import initial_assignment
from bayesgmm.em._kernels import (
    advance,
    best_restart,
    device_settings,
    device_user_init,
    finish,
    initial_params,
    initial_statistics,
    start_model,
    start_state,
    user_params,
)
from bayesgmm.em._state import EMState, Settings, UserInit


def fit_one(
    draws: Array, rows: Rows, settings: Settings, user_init: UserInit, program: Program, init_rows: Rows | None = None
) -> EMState:
    """One restart: initialise (from ``init_rows``, by default ``rows``), then E/M steps in a
    ``while_loop`` (one E-step in the program)."""
    params = user_params(user_init, program.covariance_type)
    regularised = jnp.zeros((program.k,), bool)
    with_nan = program.moments in ("missing", "errors")  # rows may hold NaN
    complete_rows = fill_missing(rows) if with_nan else rows  # init and re-seeding need them
    if init_rows is None:
        complete_init_rows = complete_rows
    else:
        complete_init_rows = fill_missing(init_rows) if with_nan else init_rows
    if params is None:
        assignment = initial_assignment(program.init, draws, complete_init_rows, program.k, settings.active)
        stats = initial_statistics(assignment, complete_init_rows, program.covariance_type)
        params, regularised = initial_params(
            stats, settings, user_init, covariance_type=program.covariance_type, degenerate=program.degenerate
        )
    params = start_model(params, program.family, program.dof_mode, settings)
    X_flat, _ = complete_rows.flat()

    def body(state: EMState) -> EMState:
        stats, worst = e_step(state.params, rows, program.moments)
        previous = state.params.dof
        state = advance(state, stats, X_flat[worst.row], settings, degenerate=program.degenerate)
        if program.observed_dof_step:  # ECME: from the previous ν, the ν that maximise the likelihood

            def with_dof(state):  # at the new weights, locations and scales (in place of ECM's ν-step)
                params = dataclasses.replace(state.params, dof=previous)
                return state._replace(params=dof_step(params, rows, settings.active, program.moments))

            state = lax.cond(state.done, lambda state: state, with_dof, state)
        return state

    start = start_state(params, regularised, settings, history_size=program.history_size)
    return finish(lax.while_loop(lambda state: ~state.done, body, start), settings)


@functools.partial(jax.jit, static_argnames="program")
def fit_batch(
    X,
    weights,
    draws,
    active,
    settings: Settings,
    user_init: UserInit,
    *,
    program: Program,
    errors=None,
    init_weights=None,
):
    """Fits of one data set, in groups of restarts; the best restart of each group.

    Parameters
    ----------
    X, weights : (n, d), (n,) rescaled rows and their weights (sharded over ``program.mesh``, if any)
    draws : (groups, restarts, ...) each fit's ``init_draws`` (a ``LabelledRows`` for the hierarchical start)
    active : (groups, k) bool, the components each group uses (a prefix: a group's number
        of components is ``active.sum()``; the others keep weight 0)
    settings : Settings (its ``active`` is replaced per group)
    user_init : UserInit, user-given initial parameters (or Nones), shared by all fits
    program : Program (static)
        With ``program.sequential`` the fits run one after another (``lax.map``; for CPUs)
        instead of vmapped (for accelerators, where batched fits share each kernel launch).
        On a CPU the vmapped program is slower to compile and to run: its ``lax.cond``s
        become selects that run both branches, and its loop runs until the slowest fit has
        converged.
    errors : (n, d) or (n, d, d), optional
        Per-row measurement-error variances or covariances on the rescaled data (for
        ``program.moments == "errors"``; not with a mesh).
    init_weights : (n,), optional
        The row weights of the initialisation (``_data.noise_guess``: 0 for the rows guessed to be
        background noise, which the start's clusters leave out); by default ``weights``.

    Returns
    -------
    best : EMState with a leading (groups,) axis
    log_likelihoods : (groups, restarts) every fit's final mean log-likelihood
    """
    rows = chunk_rows(X, weights, program.chunk_size, program.mesh, errors=errors)
    init_rows = None if init_weights is None else chunk_rows(X, init_weights, program.chunk_size, program.mesh)
    structure = program.structure
    settings = device_settings(settings, structure, program.k)
    user_init = device_user_init(user_init, structure)

    def one(draws, active):
        return fit_one(draws, rows, settings._replace(active=active), user_init, program, init_rows)

    if jax.tree.leaves(draws)[0].shape[:2] == (1, 1):  # one fit: no batching
        first = jax.tree.map(lambda leaf: leaf[0, 0], draws)
        states = jax.tree.map(lambda leaf: leaf[None, None], one(first, active[0]))
    elif program.sequential:
        states = lax.map(lambda group: lax.map(lambda draw: one(draw, group[1]), group[0]), (draws, active))
    else:
        states = jax.vmap(jax.vmap(one, in_axes=(0, None)))(draws, active)  # (groups, restarts)
    best = jax.vmap(best_restart)(states.log_likelihood, jnp.any(states.spurious, axis=-1))
    pick = jax.vmap(lambda group, index: jax.tree.map(lambda leaf: leaf[index], group))
    return pick(states, best), states.log_likelihood


def on_cpu(X: Array) -> bool:
    """The rows are on CPU devices (where ``fit_batch`` runs its fits one after another)."""
    return all(device.platform == "cpu" for device in X.devices())


@functools.partial(jax.jit, static_argnames="program")
def fit_replicates(X, weights, settings: Settings, user_init: UserInit, *, program: Program) -> EMState:
    """Refits of one start on many resamples of the rows (the bootstrap), in one compiled program.

    Parameters
    ----------
    X : (n, d) rescaled rows shared by every replicate (a nonparametric bootstrap: the replicates
        differ in their weights), or (replicates, n, d) each replicate's own rows (a parametric one)
    weights : (replicates, n) each replicate's row weights (multinomial counts; 0 for padding)
    settings : Settings; ``total_weight`` and ``mean_row_weight`` are replaced by each replicate's
    user_init : UserInit, complete: every replicate starts from these parameters
    program : Program (static)
        With ``program.sequential`` the replicates run one after another (``lax.map``; for
        CPUs), otherwise vmapped (accelerators), as the restarts of ``fit_batch``.

    Returns
    -------
    EMState with a leading (replicates,) axis
    """
    structure = program.structure
    settings = device_settings(settings, structure, program.k)
    user_init = device_user_init(user_init, structure)

    def one(rows, row_weights):
        total = jnp.sum(row_weights)
        count = jnp.count_nonzero(row_weights).astype(total.dtype)
        replicate = settings._replace(total_weight=total, mean_row_weight=total / count)
        chunks = chunk_rows(rows, row_weights, program.chunk_size)
        return fit_one(None, chunks, replicate, user_init, program)  # a complete user_init: no draws

    shared = X.ndim == 2
    if program.sequential:
        if shared:
            return lax.map(lambda row_weights: one(X, row_weights), weights)
        return lax.map(lambda replicate: one(*replicate), (X, weights))
    return jax.vmap(one, in_axes=(None if shared else 0, 0))(X, weights)
