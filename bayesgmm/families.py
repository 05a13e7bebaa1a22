"""Component families: the density of a component as a function of its Mahalanobis distances.

A component has a location ``μ_k``, a scale matrix ``Σ_k`` (its Cholesky factor in the
covariance structure's layout, ``covariance.py``) and a family:

==============  ===========================================  ======================  ============
family          density of ``x`` in component ``k``            extra parameters        ``dof``
==============  ===========================================  ======================  ============
"gaussian"      ``N(μ_k, Σ_k)``                                none                    None
"student_t"     multivariate t, ``ν_k`` degrees of freedom      ``ν_k`` (..., k)        (..., k)
==============  ===========================================  ======================  ============

The Student-t component is a scale mixture of Gaussians, ``x | u ~ N(μ_k, Σ_k / u)`` with
``u ~ Gamma(ν_k / 2, rate ν_k / 2)``; its covariance is ``ν_k / (ν_k − 2) Σ_k`` for ``ν_k > 2``.
Rows far from a component get a small ``E[u | x] = (ν + p) / (ν + δ²)`` and pull less on its
location and scale: the mixture is robust to outliers (Peel and McLachlan 2000).

Each family is a ``Family`` record of small pure functions of the squared Mahalanobis
distances ``δ²_ik = (x_i − μ_k)ᵀ Σ_k⁻¹ (x_i − μ_k)`` (k, c) and the number of observed
coordinates ``p`` (a scalar, or per row when entries are missing); the covariance structure
supplies ``δ²`` and ``log |Σ_k|^{1/2}``, so every structure works with every family. EM uses
``e_step_terms`` (the weights ``u`` of the scale mixture and the terms of the degrees of
freedom's estimating equation), ``dof_derivatives`` and ``maximise_dof`` (ECME's ν-step) or
``update_dof`` (ECM's, for streamed rows); ``GMMParams`` uses ``log_density``,
``n_parameters`` and ``mixing`` (sampling).

How the degrees of freedom are fitted (``dof_mode``, static in ``GMMParams``):
"component" (one ``ν_k`` per component), "shared" (one ``ν`` for all) or "fixed" (kept at the
given value). The parameter count of BIC follows it.

All functions are pure, unbatched and ``vmap``-safe; none of them jit. They take JAX or NumPy
arrays alike (``_arrays.namespace``; SciPy's special functions for NumPy), so the NumPy driver
(``em._host``) fits Student-t components with the compiled drivers' formulas.

References
----------
D. Peel and G. J. McLachlan, "Robust mixture modelling using the t distribution", Statistics
and Computing 10(4), 339–348, 2000.

G. J. McLachlan and D. Peel, Finite Mixture Models, Wiley, 2000, §7.4–7.5 (the E-step and
CM-steps for t mixtures; their ν-step, ``update_dof``, is the streaming driver's).

C. Liu and D. B. Rubin, "ML estimation of the t distribution using EM and its extensions,
ECM and ECME", Statistica Sinica 5(1), 19–39, 1995 (the ν-step of ``em_fit``, ``maximise_dof``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.scipy.special
import numpy as np
import scipy.special
from jax import Array, lax

from bayesgmm._arrays import host_logsumexp, namespace
from bayesgmm.covariance import LOG_2PI

LOG_PI = 1.1447298858494002  # log(π)

DOF_MODES = ("component", "shared", "fixed")

# The degrees of freedom EM starts from when it estimates them: studenttmixture's default
# start (and fixed value), heavy enough tails that outliers of a k-means start are down-weighted
# from the first iteration.
DOF_START = 4.0

# Estimated degrees of freedom stay in [1, 200]: below 1 the component's location is not a mean
# (the Cauchy distribution has none); above 200 the t density differs from the Gaussian by less
# than float32 resolves, and the estimating equation's terms cancel to O(1/ν) (its root is then
# round-off). A fit at the upper bound means "Gaussian" for that component.
DOF_BOUNDS = (1.0, 200.0)

# Bisection steps of the degrees-of-freedom equation on log ν over DOF_BOUNDS: the bracket
# (log 200 = 5.3 wide) shrinks to 5.3 / 2^40 ≈ 5e-12, below float64's resolution of ν.
DOF_BISECTION_STEPS = 40


class Family(NamedTuple):
    """One component family: named pure functions of squared Mahalanobis distances."""

    name: str
    log_density: Callable  # (sq_norm (k, c), n_dims () | (c,), dof (k,) | None) -> (k, c), without −log|Σ|^{1/2}
    e_step_terms: Callable | None  # (sq_norm, n_dims, dof) -> (u (k, c), dof_terms (k, c)); None: u = 1
    n_parameters: Callable[[int, str], int]  # (k, dof_mode) -> free parameters beyond weights, means, scales
    mixing: Callable | None  # (key, dof (k,), labels (n,), dtype) -> u (n,) the scale mixture's draws; None: 1
    dof_derivatives: Callable | None = None  # (sq_norm, n_dims, dof) -> ∂/∂ν, ∂²/∂ν² of log_density (k, c); None: no ν


def _special(*arrays):
    """``(gammaln, digamma)`` for the arrays' module: SciPy's on NumPy arrays, JAX's otherwise."""
    if namespace(*arrays) is np:
        return scipy.special.gammaln, scipy.special.digamma
    return jax.scipy.special.gammaln, jax.scipy.special.digamma


# ----------------------------------------------------------------------------- Gaussian


def _gaussian_log_density(sq_norm, n_dims, dof):
    return -0.5 * (n_dims * LOG_2PI + sq_norm)


def _no_parameters(k, dof_mode):
    return 0


GAUSSIAN = Family(
    name="gaussian",
    log_density=_gaussian_log_density,
    e_step_terms=None,
    n_parameters=_no_parameters,
    mixing=None,
)


# ----------------------------------------------------------------------------- Student-t


def _student_t_log_density(sq_norm, n_dims, dof):
    """``log Γ((ν+p)/2) − log Γ(ν/2) − (p/2) log(νπ) − ((ν+p)/2) log(1 + δ²/ν)``."""
    xp, (gammaln, _) = namespace(sq_norm, dof), _special(sq_norm, dof)
    nu = dof[:, None]
    half_total = 0.5 * (nu + n_dims)
    normaliser = gammaln(half_total) - gammaln(0.5 * nu) - 0.5 * n_dims * (xp.log(nu) + LOG_PI)
    return normaliser - half_total * xp.log1p(sq_norm / nu)


def _student_t_e_step_terms(sq_norm, n_dims, dof):
    """``u = E[u | x, z = k] = (ν + p) / (ν + δ²)`` and the terms of the degrees-of-freedom equation,
    ``log u − u + ψ((ν + p)/2) − log((ν + p)/2)`` (McLachlan and Peel 2000, eq. 7.29's summand,
    with the conditional expectation of ``log u``)."""
    xp, (_, digamma) = namespace(sq_norm, dof), _special(sq_norm, dof)
    nu = dof[:, None]
    half_total = 0.5 * (nu + n_dims)
    u = (nu + n_dims) / (nu + sq_norm)
    return u, xp.log(u) - u + digamma(half_total) - xp.log(half_total)


def _student_t_dof_derivatives(sq_norm, n_dims, dof):
    """The first and second derivatives in ``ν`` of ``_student_t_log_density`` (k, c) each:
    ``s = ½ [ψ((ν+p)/2) − ψ(ν/2) − p/ν − log(1 + δ²/ν) + (ν + p) δ² / (ν (ν + δ²))]`` and
    ``s' = ¼ [ψ'((ν+p)/2) − ψ'(ν/2)] + p/(2ν²) + δ²/(ν (ν + δ²)) − (ν + p) δ² (2ν + δ²) / (2 [ν (ν + δ²)]²)``."""
    xp = namespace(sq_norm, dof)
    _, digamma = _special(sq_norm, dof)
    trigamma = _trigamma(sq_norm, dof)
    nu = dof[:, None]
    half, half_total = 0.5 * nu, 0.5 * (nu + n_dims)
    spread = nu * (nu + sq_norm)
    score = 0.5 * (
        digamma(half_total) - digamma(half) - n_dims / nu - xp.log1p(sq_norm / nu)
        + (nu + n_dims) * sq_norm / spread
    )  # fmt: skip
    curvature = (
        0.25 * (trigamma(half_total) - trigamma(half)) + 0.5 * n_dims / nu**2 + sq_norm / spread
        - 0.5 * (nu + n_dims) * sq_norm * (2.0 * nu + sq_norm) / spread**2
    )  # fmt: skip
    return score, curvature


def _trigamma(*arrays):
    """``ψ'`` for the arrays' module (SciPy's ``polygamma(1, ·)`` on NumPy arrays, JAX's otherwise)."""
    if namespace(*arrays) is np:
        return lambda x: scipy.special.polygamma(1, x)
    return lambda x: jax.scipy.special.polygamma(1, x)


def _student_t_n_parameters(k, dof_mode):
    return {"component": k, "shared": 1, "fixed": 0}[dof_mode]


def _student_t_mixing(key, dof, labels, dtype):  # JAX only (sampling)
    nu = dof[labels]
    return jax.random.gamma(key, 0.5 * nu, dtype=dtype) / (0.5 * nu)


STUDENT_T = Family(
    name="student_t",
    log_density=_student_t_log_density,
    e_step_terms=_student_t_e_step_terms,
    n_parameters=_student_t_n_parameters,
    mixing=_student_t_mixing,
    dof_derivatives=_student_t_dof_derivatives,
)


FAMILIES: dict[str, Family] = {family.name: family for family in (GAUSSIAN, STUDENT_T)}


def get_family(name: str) -> Family:
    """Look up a family by name, with an error that lists the valid ones."""
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"family must be one of {tuple(FAMILIES)}, got {name!r}.") from None


# ----------------------------------------------------------------------------- degrees of freedom


def solve_dof(constant: Array) -> Array:
    """The root in ``ν`` of ``log(ν/2) − ψ(ν/2) + 1 + constant = 0``, clipped to ``DOF_BOUNDS``.

    ``constant`` (any shape) is the responsibility-weighted mean of ``e_step_terms``' second
    output. The left side decreases in ``ν`` (``log x − ψ(x)`` does) from +∞ to ``1 + constant``,
    so the root is unique when ``1 + constant < 0`` and the upper bound otherwise; found by
    bisection on ``log ν`` (``DOF_BISECTION_STEPS``: branch-free, the same steps under ``vmap``).
    """
    xp, (_, digamma) = namespace(constant), _special(constant)
    low, high = xp.log(xp.asarray(DOF_BOUNDS[0], constant.dtype)), xp.log(xp.asarray(DOF_BOUNDS[1], constant.dtype))

    def equation(log_nu):
        half = 0.5 * xp.exp(log_nu)
        return xp.log(half) - digamma(half) + 1.0 + constant

    def bisect(_, bracket):
        low, high = bracket
        middle = 0.5 * (low + high)
        positive = equation(middle) > 0  # the root lies above the middle
        return xp.where(positive, middle, low), xp.where(positive, high, middle)

    bracket = (xp.full_like(constant, low), xp.full_like(constant, high))
    if xp is np:  # the NumPy driver: a Python loop
        for step in range(DOF_BISECTION_STEPS):
            bracket = bisect(step, bracket)
    else:
        bracket = lax.fori_loop(0, DOF_BISECTION_STEPS, bisect, bracket)
    low, high = bracket
    return xp.exp(0.5 * (low + high))


def update_dof(dof: Array, dof_sums: Array, counts: Array, active: Array | None, dof_mode: str) -> Array:
    """The ECM step for the degrees of freedom (McLachlan and Peel 2000, §7.5): the streaming
    driver's (ECME's ``maximise_dof`` replaces it where the rows are in memory).

    Parameters
    ----------
    dof : (k,) the current degrees of freedom
    dof_sums : (k,) ``Σ_i w_i r_ik [log u_ik − u_ik + ψ((ν_k + p_i)/2) − log((ν_k + p_i)/2)]``
    counts : (k,) ``Σ_i w_i r_ik``
    active : (k,) bool or None (all): inactive components keep their value
    dof_mode : {"component", "shared", "fixed"} (static)
    """
    if dof_mode == "fixed":
        return dof
    xp = namespace(dof, dof_sums, counts)
    in_use = xp.ones_like(counts, bool) if active is None else active
    if dof_mode == "shared":
        total = xp.sum(xp.where(in_use, counts, 0.0))
        constant = xp.sum(xp.where(in_use, dof_sums, 0.0)) / xp.where(total > 0, total, 1.0)
        new = xp.broadcast_to(solve_dof(xp.asarray(constant)), dof.shape)
    else:
        constant = dof_sums / xp.where(counts > 0, counts, 1.0)
        new = solve_dof(constant)
    return xp.where(in_use & (counts > 0), new, dof).astype(dof.dtype)


def _logsumexp(xp, values, axis):
    if xp is np:
        return host_logsumexp(values, axis=axis)
    return jax.nn.logsumexp(values, axis=axis)


# Newton steps of ECME's search (``_newton_log_dof``): from the previous iteration's ν the search
# converges quadratically, in 3 to 5 steps; the bound is for the steps that fall back to bisection.
DOF_NEWTON_STEPS = 40
# Newton's steps stop when one moves log ν by less than this (float64; float32: 64 ε = 8e-6, the
# resolution its sums of derivatives over many rows allow), below the resolution of the maximum.
DOF_NEWTON_TOL = 1e-11


def _newton_log_dof(xp, derivatives, start):
    """The maximum over ``log ν ∈ log DOF_BOUNDS`` of a function with ``derivatives(ν) -> (L', L'')``
    (scalars), from ``start``: Newton's steps on ``log ν`` kept inside a bracket of the root of ``L'``
    (the last points where it was positive and negative), bisecting the bracket when a step would leave
    it or ``L`` is not concave there; a step beyond a bound lands on it while ``L'`` has not changed
    sign on that side (the maximum is then the bound)."""
    bounds = np.log(DOF_BOUNDS)
    dtype = start.dtype

    def step(carry):
        log_nu, low, high, count, _ = carry
        nu = xp.exp(log_nu)
        slope, curvature = derivatives(nu)
        rising = slope > 0
        low, high = xp.where(rising, log_nu, low), xp.where(rising, high, log_nu)
        newton = xp.clip(log_nu - slope / (nu * xp.where(curvature < 0, curvature, -1.0)), bounds[0], bounds[1])
        # a step stays in the bracket, or lands on a bound on a side where L' never changed sign
        inside = (newton > low) | ((newton == bounds[0]) & (low == bounds[0]))
        inside &= (newton < high) | ((newton == bounds[1]) & (high == bounds[1]))
        inside &= (curvature < 0) & xp.isfinite(newton)
        following = xp.where(inside, newton, 0.5 * (low + high))
        return following, low, high, count + 1, xp.abs(following - log_nu)

    tolerance = max(DOF_NEWTON_TOL, 64 * float(np.finfo(dtype).eps))

    def going(carry):
        return (carry[3] < DOF_NEWTON_STEPS) & (carry[4] > tolerance)

    start = xp.clip(xp.log(start), bounds[0], bounds[1])
    carry = (start, xp.asarray(bounds[0], dtype), xp.asarray(bounds[1], dtype), 0, xp.asarray(np.inf, dtype))
    if xp is np:
        while going(carry):
            carry = step(carry)
    else:
        carry = lax.while_loop(going, step, carry)
    return xp.exp(carry[0]).astype(dtype)


def maximise_dof(
    family: Family,
    dof: Array,
    base: Array,
    sq_norm: Array,
    n_dims,
    weights: Array,
    noise: Array | None,
    active: Array,
    dof_mode: str,
) -> Array:
    """ECME's step for the degrees of freedom: the ``ν`` that maximise the observed log-likelihood.

    Liu and Rubin (1995) replace ECM's ν-step, which solves the expected complete-data
    equation with the weights ``u`` of the previous E-step, by a conditional maximisation of the
    actual log-likelihood ``L(ν) = Σ_i w_i log [Σ_k exp(b_ik + log t(δ²_ik; ν_k, p_i)) + noise_i]``
    at the new locations and scales: far fewer iterations, most of all when ν is large, where ECM
    creeps. With one ``ν_k`` per component the maximisation is coordinatewise, component after
    component (each a one-dimensional search with the others held), which is still a conditional
    maximisation, so the log-likelihood never decreases.

    Each search is Newton's method on ``log ν`` from the current value (``_newton_log_dof``) with
    ``L' = Σ_i w_i r_ik s_ik`` and ``L'' = Σ_i w_i [r_ik s'_ik + r_ik (1 − r_ik) s_ik²]``
    (``s, s'``: ``family.dof_derivatives``; ``r`` the responsibilities at that ``ν``); its result
    replaces the current value only when it raises ``L``. Inactive components and components
    holding no weight keep their value.

    Parameters
    ----------
    family : Family with ``dof_derivatives``
    dof : (k,) the current degrees of freedom
    base : (k, N) ``log π_k − log |Σ_k|^{1/2}`` per row (over its observed coordinates)
    sq_norm : (k, N) the rows' squared Mahalanobis distances at the new locations and scales
    n_dims : () or (N,) observed coordinates per row
    weights : (N,) row weights (0 for padding)
    noise : (N,) the noise component's log joint density per row, or None
    active : (k,) bool
    dof_mode : "component" or "shared" ("fixed": ``dof`` unchanged)
    """
    if dof_mode == "fixed":
        return dof
    xp = namespace(dof, base, sq_norm)
    log_density, dof_derivatives = family.log_density, family.dof_derivatives
    joint = base + log_density(sq_norm, n_dims, dof)  # (k, N)
    others = [] if noise is None else [noise[None]]

    def total(joint):
        return xp.sum(weights * _logsumexp(xp, xp.concatenate([joint, *others], axis=0), 0))

    if dof_mode == "shared":

        def at(nu):
            return base + log_density(sq_norm, n_dims, xp.broadcast_to(nu, dof.shape))

        def derivatives(nu):
            joint = at(nu)
            resp = xp.exp(joint - _logsumexp(xp, xp.concatenate([joint, *others], axis=0), 0))
            score, curvature = dof_derivatives(sq_norm, n_dims, xp.broadcast_to(nu, dof.shape))
            held = resp > 0  # inactive components: distances of no meaning, weight 0
            row_score = xp.sum(xp.where(held, resp * score, 0.0), axis=0)
            row_curvature = xp.sum(xp.where(held, resp * (curvature + score**2), 0.0), axis=0) - row_score**2
            return xp.sum(weights * row_score), xp.sum(weights * row_curvature)

        start = xp.sum(xp.where(active, dof, 0.0)) / xp.maximum(xp.sum(active), 1)
        candidate = _newton_log_dof(xp, derivatives, start)
        better = total(at(candidate)) > total(joint)
        return xp.where(better & xp.any(active), xp.broadcast_to(candidate, dof.shape), dof).astype(dof.dtype)

    def one(k, carry):
        dof, joint = carry
        held = xp.where((xp.arange(joint.shape[0]) == k)[:, None], -xp.inf, joint)
        rest = _logsumexp(xp, xp.concatenate([held, *others], 0), 0)  # (N,) the other components' and the noise's
        base_k, sq_k = base[k][None], sq_norm[k][None]

        def own(nu):
            return base_k + log_density(sq_k, n_dims, xp.reshape(nu, (1,)))

        def derivatives(nu):
            joint_k = own(nu)
            resp = xp.exp(joint_k - xp.logaddexp(rest, joint_k))
            score, curvature = dof_derivatives(sq_k, n_dims, xp.reshape(nu, (1,)))
            held = resp > 0
            slope = xp.where(held, resp * score, 0.0)
            bend = xp.where(held, resp * curvature + resp * (1.0 - resp) * score**2, 0.0)
            return xp.sum(weights * slope), xp.sum(weights * bend)

        def value(joint_k):
            return xp.sum(weights * xp.logaddexp(rest, joint_k))

        candidate = _newton_log_dof(xp, derivatives, dof[k])
        joint_k = own(candidate)
        better = active[k] & (value(joint_k) > value(joint[k][None]))
        new_k = xp.where(better, candidate, dof[k]).astype(dof.dtype)
        new_row = xp.where(better, joint_k[0], joint[k])
        if xp is np:
            dof, joint = dof.copy(), joint.copy()
            dof[k], joint[k] = new_k, new_row
            return dof, joint
        return dof.at[k].set(new_k), joint.at[k].set(new_row)

    carry = (dof, joint)
    if xp is np:
        for k in range(dof.shape[0]):
            carry = one(k, carry)
    else:
        carry = lax.fori_loop(0, dof.shape[0], one, carry)
    return carry[0]
