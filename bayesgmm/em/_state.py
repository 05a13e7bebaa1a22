"""The records EM passes between its layers: statistics, settings, loop state, result.

Types only (no computation beyond trivial constructors), so every other module of ``em/``
can import them: the E-steps return ``SufficientStatistics``, the kernels turn them into an
``EMState``, the drivers loop over states and hand the best one to ``EMResult``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import Array

from bayesgmm._arrays import namespace
from bayesgmm.params import GMMParams


class SufficientStatistics(NamedTuple):
    """Sums over weighted rows for one set of parameters, in data coordinates about ``shift``.

    With responsibilities ``r_ik`` and row weights ``w_i``:
    """

    counts: Array  # (k,) Σ_i w_i r_ik
    first: Array  # (k, d) Σ_i w_i r_ik (x_i − shift_k)
    second: Array  # Σ w r (x − shift)(x − shift)ᵀ: full (k, d, d), tied (d, d) summed, diag (k, d), spherical (k,)
    log_likelihood: Array  # () Σ_i w_i log p(x_i)
    max_log_resp: Array  # () Σ_i w_i max_k log r_ik (the classification term of ICL)
    shift: Array | None = None  # (k, d) the current means ("whitened", "missing") or zeros ("raw")
    # Student-t components (None for Gaussian ones): ``first`` and ``second`` are then weighted by
    # u_ik = E[u | x_i, z_i = k] = (ν_k + p_i) / (ν_k + δ²_ik) as well
    weighted_counts: Array | None = None  # (k,) Σ_i w_i r_ik u_ik
    dof_sums: Array | None = None  # (k,) Σ_i w_i r_ik [log u_ik − u_ik + ψ((ν_k + p_i)/2) − log((ν_k + p_i)/2)]
    noise_count: Array | None = None  # () Σ_i w_i r_i0, the noise component's share (None without one)


class DegenerateEvents(NamedTuple):
    """What ``repair`` did, per component, over a fit."""

    reseeded: Array  # (k,) int number of times the component was re-seeded
    first_reseed: Array  # (k,) int iteration of the first re-seed, −1 if none
    regularised: Array  # (k,) int number of M-steps whose covariance needed the fallback reg_covar
    first_regularised: Array  # (k,) int iteration of the first, −1 if none
    last_regularised: Array  # (k,) int iteration of the latest, −1 if none

    @classmethod
    def none(cls, k: int, xp=jnp) -> DegenerateEvents:
        """No events yet, as ``xp`` arrays (``jax.numpy`` or ``numpy``)."""
        zeros, never = xp.zeros((k,), xp.int32), xp.full((k,), -1, xp.int32)
        return cls(zeros, never, zeros, never, never)

    def record(self, iteration, reseeded, regularised) -> DegenerateEvents:
        xp = namespace(self.reseeded, reseeded, regularised)

        def first(previous, now):
            return xp.where((previous < 0) & now, iteration, previous)

        return DegenerateEvents(
            self.reseeded + reseeded,
            first(self.first_reseed, reseeded),
            self.regularised + regularised,
            first(self.first_regularised, regularised),
            xp.where(regularised, iteration, self.last_regularised),
        )


class Settings(NamedTuple):
    """The traced settings of a fit besides the data (a pytree); all on the centred, rescaled scale.

    Built on the host by ``_data.settings``; ``_kernels.device_settings`` turns
    ``reseed_scale`` into the covariance type's Cholesky factor inside the program. Values
    that change between calls without changing shapes live here, so they share one program.
    """

    tol: Array  # ()
    reg_covar: Array  # ()
    fallback_reg: Array  # () reg_covar for covariances that are not positive definite
    reseed_scale: Array  # (d, d) data covariance on the host; the type's Cholesky factor in the program
    total_weight: Array  # () Σ w
    mean_row_weight: Array  # () Σ w / #{w > 0}
    active: Array  # (k,) bool: the components in use (a prefix; all by default)
    max_iter: Array  # () int; the history holds bucket_size(max_iter + 1) entries (static)
    dof_start: Array | None = None  # (k,) Student-t components' initial (or fixed) degrees of freedom
    noise_start: Array | None = None  # () the noise component's initial weight (None: no noise component)
    noise_bounds: Array | None = None  # (2, d) the noise component's box on the rescaled data


class UserInit(NamedTuple):
    """User-given initial parameters on the rescaled data (or Nones), host arrays.

    ``scale`` holds scikit-learn's covariances layout on the host and the Cholesky factors
    in the program (``_kernels.device_user_init``).
    """

    weights: Array | None = None  # (k,)
    means: Array | None = None  # (k, d)
    scale: Array | None = None  # scikit-learn's layout for the type

    @property
    def complete(self) -> bool:
        return all(value is not None for value in self)


class EMState(NamedTuple):
    """The loop state of one EM fit (blackjax-style: ``start_state`` / ``advance`` / ``finish``)."""

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
    spurious: Array  # (k,) bool: components the data cannot support (set by ``finish``)


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
