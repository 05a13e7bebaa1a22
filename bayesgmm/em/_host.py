"""The NumPy driver: EM on the host for small data, with the compiled drivers' kernels and rules.

On a few thousand rows, compiling ``_memory.fit_batch`` costs seconds while the fit itself
takes milliseconds (``infer`` starts its chains at an EM fit, and compiles its sampler at the
same time). This driver runs the same fit in NumPy and compiles nothing:

- the same data preparation (``_data.prepare_host``), settings and random draws
  (``_data.start_draws``);
- the same initialisation: ``INIT_METHODS``' host seeding (k-means++ over the rows as one
  block, Lloyd's iterations) and assignments, one M-step (``_kernels.initial_params``);
- the same kernels: ``start_state`` / ``advance`` / ``finish``, hence the same M-step,
  repair of degenerate components (re-seeding at the worst row) and stopping rule, running on
  NumPy arrays (``_arrays.namespace``);
- its own passes only (``_estep.numpy_e_step``: dense Cholesky factors in NumPy; and for
  estimated Student-t degrees of freedom ECME's ``_estep.numpy_dof_step``, whose search is
  ``families.maximise_dof`` on NumPy arrays, as the compiled driver's ``dof_step``).

So its fit equals ``em_fit``'s (float64) up to round-off, for every covariance structure, both
component families and with a noise component (tests/test_em_host.py). Rows must be in memory,
without NaN; ``init="random"`` draws its responsibilities with JAX and is not offered here.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bayesgmm.chunks import Rows, add
from bayesgmm.covariance import get_structure
from bayesgmm.em._config import EMConfig, uses_observed_dof_step
from bayesgmm.em._data import PreparedData, initial_rows, noise_start, settings, start_draws
from bayesgmm.em._estep import numpy_dof_step, numpy_e_step
from bayesgmm.em._init import INIT_METHODS, lloyd_host, restart
from bayesgmm.em._kernels import (
    advance,
    best_restart,
    device_settings,
    device_user_init,
    finish,
    initial_params,
    start_model,
    start_state,
    user_params,
)
from bayesgmm.em._state import EMState, SufficientStatistics, UserInit


class NumpyRows:
    """Prepared in-memory rows as one block of NumPy arrays, with ``HostRows``' interface."""

    def __init__(self, data: PreparedData):
        self.X, self.weights, self.covariance = data.X, data.weights, data.covariance
        self.dtype = data.X.dtype
        self.n_samples = self.block_rows = data.X.shape[0]
        self.n_blocks = 1

    def rows(self, indices) -> np.ndarray:
        return self.X[np.minimum(np.asarray(indices), self.n_samples - 1)]

    def blocks(self):
        yield 0, Rows(self.X[None], self.weights[None], 0)

    def reduce(self, per_block, combine=add):
        return per_block(Rows(self.X[None], self.weights[None], 0))


def _initial_statistics(assignment, X: np.ndarray, weights: np.ndarray, structure) -> SufficientStatistics:
    """The statistics of the initial responsibilities about ``assignment.shift`` (dense, then the type's layout).

    Over ``assignment.rows`` when the start brings its own rows (the hierarchical start).
    """
    if assignment.rows is not None:
        X, weights = (np.asarray(leaf) for leaf in assignment.rows.flat())
    resp = assignment.responsibilities(X, np.arange(X.shape[0]), 0) * weights  # (k, n)
    diff = X[None, :, :] - assignment.shift[:, None, :]
    zero = np.zeros((), X.dtype)
    return SufficientStatistics(
        counts=np.sum(resp, axis=1),
        first=np.einsum("kn,knd->kd", resp, diff),
        second=structure.em.second_from_full(np.einsum("kn,kni,knj->kij", resp, diff, diff)),
        log_likelihood=zero,
        max_log_resp=zero,
        shift=assignment.shift,
    )


def _initial_params(data: PreparedData, k: int, config: EMConfig, fit_settings, user_init: UserInit, *, seed, draws):
    """``(params, regularised)`` of every restart: the user's, or from ``INIT_METHODS`` and one M-step."""
    params = user_params(user_init, config.covariance_type)
    if params is not None:
        return [(params, np.zeros((k,), bool))]
    entry = INIT_METHODS[config.init]
    structure = get_structure(config.covariance_type)
    host = NumpyRows(data)
    if draws is None:
        draws = restart(start_draws(data, [k], config.init, seed, config.n_init, np.float64), 0)
    indices = entry.seed_host_rows(host, draws, k, k)
    shifts = host.rows(indices)
    if entry.refine:
        shifts = lloyd_host(host, shifts, fit_settings.active)
    starts = []
    for index, (rows, shift) in enumerate(zip(indices, shifts)):
        assignment = entry.assignment(shift, rows, restart(draws, index), fit_settings.active)
        stats = _initial_statistics(assignment, data.X, data.weights, structure)
        starts.append(
            initial_params(
                stats, fit_settings, user_init, covariance_type=config.covariance_type, degenerate=config.degenerate
            )
        )
    return starts


def fit(
    data: PreparedData, k: int, config: EMConfig, *, seed, user_init: UserInit, draws=None
) -> tuple[EMState, np.ndarray]:
    """Every restart of one fit on the host: ``(best state, final mean log-likelihood of each restart)``.

    ``user_init``: initial parameters on the rescaled data (covariances in scikit-learn's
    layout) or Nones, as ``_memory.fit_batch``'s. ``draws``: the restarts' initial draws
    (restarts, ...) for ``k`` components, when the caller made them (``select``'s grid shares one
    hierarchical tree, or starts from other partitions); by default ``start_draws``' for ``seed``.
    """
    entry = INIT_METHODS[config.init]
    if not (entry.from_rows or entry.deterministic or user_init.complete):
        raise ValueError(f"init={config.init!r} draws its responsibilities with JAX; the NumPy driver needs rows.")
    structure = get_structure(config.covariance_type)
    fit_settings = device_settings(settings(data, k, config, np.float64), structure, k)
    init_weights, noise_share = noise_start(data, config, user_init)  # the noise guess's rows stay out of the start
    if init_weights is not None:
        fit_settings = fit_settings._replace(noise_start=np.asarray(noise_share))
    user_init = device_user_init(user_init, structure)
    ecme = uses_observed_dof_step(config.family, config.dof_mode)
    states = []
    starts = _initial_params(
        initial_rows(data, init_weights), k, config, fit_settings, user_init, seed=seed, draws=draws
    )
    for params, regularised in starts:
        params = start_model(params, config.family, config.dof_mode, fit_settings)
        state = start_state(params, regularised, fit_settings, history_size=config.max_iter + 1)
        while not bool(state.done):
            stats, worst = numpy_e_step(state.params, data.X, data.weights)
            previous = state.params.dof
            state = advance(state, stats, data.X[worst], fit_settings, degenerate=config.degenerate)
            if ecme and not bool(state.done):  # ECME's ν-step from the previous ν, in place of ECM's
                params = dataclasses.replace(state.params, dof=previous)
                state = state._replace(params=numpy_dof_step(params, data.X, data.weights, fit_settings.active))
        states.append(finish(state, fit_settings))
    log_likelihoods = np.array([float(state.log_likelihood) for state in states])
    spurious_restarts = np.array([bool(np.any(state.spurious)) for state in states])
    return states[int(best_restart(log_likelihoods, spurious_restarts))], log_likelihoods
