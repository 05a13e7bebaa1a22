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
freedom's estimating equation) and ``update_dof``; ``GMMParams`` uses ``log_density``,
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

G. J. McLachlan and D. Peel, Finite Mixture Models, Wiley, 2000, §7.4–7.5 (the ECM algorithm
for t mixtures used by ``em_fit``).

C. Liu and D. B. Rubin, "ML estimation of the t distribution using EM and its extensions,
ECM and ECME", Statistica Sinica 5(1), 19–39, 1995.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.scipy.special
import numpy as np
import scipy.special
from jax import Array, lax

from bayesgmm._arrays import namespace
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
    """The ECM step for the degrees of freedom (McLachlan and Peel 2000, §7.5).

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
