"""The Bayesian Gaussian mixture in NumPyro, with the assignments marginalised.

``p(x_i) = Σ_k π_k N(x_i | μ_k, Σ_k)`` is evaluated with ``GMMParams.log_prob`` (a
logsumexp over components), so NUTS and SVI need no enumeration.  The model works on
standardised data ``z = (x − c) / s`` (``c`` the feature means, ``s`` one scalar, so every
covariance structure is preserved); ``Priors`` are stated on the data's own scale and
``Priors.resolve`` moves them to the standardised one.

Sites (``k`` components, ``d`` features; shapes per covariance type from the table in
``covariance.py``):

==================  ==========================================================
``weights``         (k,) ~ Dirichlet(α, ..., α)
``means``           (k, d), each coordinate ~ Normal(m_j, s_j)
``stds``            full/diag (k, d), tied (d,), spherical (k,); LogNormal or HalfNormal
``corr_cholesky``   full (k, d, d), tied (d, d) ~ LKJCholesky(d, η); absent otherwise
``dof``             (k,) ~ Gamma(a, rate b), Student-t components only (``family="student_t"``)
``obs``             (n, d) observed rows, one log-likelihood term per row
==================  ==========================================================

The component family (``bayesgmm.families``) is static: a Gaussian model has no ``dof`` site
and its programs hold none of the Student-t terms. With measurement errors (extreme
deconvolution) row ``i``'s likelihood is ``Σ_k π_k N(x_i | μ_k, Σ_k + S_i)``, ``S_i`` its
known error covariance (Gaussian components only: a t component convolved with a Gaussian
error has no closed-form density).

NUTS works in NumPyro's unconstrained coordinates (stick-breaking for the weights, log
for the stds and the degrees of freedom, ``CorrCholeskyTransform`` for the correlations).  ``unconstrained_log_density``
is the model's log density there, written out by hand: equal to minus NumPyro's
``potential_energy`` of ``gmm_model`` (tested to float64 round-off), but a much smaller
program, which is what the NUTS compile time depends on.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax import Array
from jax.nn import log_sigmoid, softplus
from jax.scipy.special import xlogy
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to
from scipy.special import gammaln, multigammaln

from bayesgmm._conditional import log_joint_with_errors
from bayesgmm.covariance import LOG_2PI, get_structure
from bayesgmm.families import GAUSSIAN, get_family
from bayesgmm.params import GMMParams

STD_PRIORS = ("lognormal", "halfnormal")
DEFAULT_WEIGHT_CONCENTRATION = 1.0  # uniform on the simplex
# A sparse finite mixture's Dirichlet concentration e0: Malsiner-Walli, Frühwirth-Schnatter and Grün's
# (2016) fixed choice. Under Dirichlet(e0) an extra non-empty component costs a prior factor of about
# e0 (Γ(n_k + e0) / Γ(e0) ≈ e0 Γ(n_k)), so 0.01 empties components the data do not need even in small
# samples; any e0 < d_θ / 2 (d_θ parameters per component) empties them asymptotically (Rousseau and
# Mengersen 2011), where e0 = 1 would rather duplicate components.
SPARSE_WEIGHT_CONCENTRATION = 0.01
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class MixtureLikelihood(dist.Distribution):
    """A Gaussian mixture as a NumPyro distribution over one row (event shape (d,)).

    ``log_prob`` marginalises the component (logsumexp); used as the likelihood of
    ``obs`` so that ``numpyro.infer.log_likelihood`` gives one term per row. With
    ``row_weights`` (broadcast against the rows' batch shape) each row's term is
    multiplied by its weight: a row of integer weight ``m`` counts as ``m`` copies, a row of
    weight 0 not at all (``sample_weight``; NumPyro's ``scale`` handler refuses zeros).
    With ``errors`` (the rows' measurement-error variances (n, d) or covariances (n, d, d),
    one per row of ``value``), each row's density is the mixture convolved with its error,
    ``Σ_k π_k N(x_i | μ_k, Σ_k + S_i)``.
    """

    support = constraints.real_vector
    arg_constraints = {}
    pytree_data_fields = ("params", "row_weights", "errors")

    def __init__(self, params: GMMParams, row_weights=None, errors=None, *, validate_args=None):
        self.params = params
        self.row_weights = row_weights
        self.errors = errors
        super().__init__(batch_shape=(), event_shape=(params.n_features,), validate_args=validate_args)

    def log_prob(self, value):
        flat = jnp.reshape(value, (-1, self.params.n_features))
        if self.errors is None:
            log_prob = self.params.log_prob(flat)
        else:
            params = self.params
            log_joint = log_joint_with_errors(
                jnp.log(params.weights), params.means, params.covariance_matrices, flat, self.errors
            )
            log_prob = jax.nn.logsumexp(log_joint, axis=0)
        log_prob = log_prob.reshape(jnp.shape(value)[:-1])
        return log_prob if self.row_weights is None else log_prob * self.row_weights

    def sample(self, key, sample_shape=()):
        n = max(1, math.prod(sample_shape))
        X, _ = self.params.sample(n, key)
        return X.reshape(tuple(sample_shape) + (self.params.n_features,))


class Hyperparameters(NamedTuple):
    """Prior hyperparameters on the standardised scale (arrays, so changing them does not recompile).

    The Dirichlet and LKJ log-normalisers depend only on hyperparameters; they are computed
    on the host (scipy) so that the traced log density holds no ``lgamma`` (each one lowers
    to ~500 XLA operations, and NUTS evaluates the density at several places in its program).
    """

    weight_concentration: Array  # () Dirichlet α
    weight_log_normalizer: Array  # () log Γ(kα) − k log Γ(α)
    mean_loc: Array  # (d,)
    mean_scale: Array  # (d,)
    std_loc: Array  # (d,) LogNormal loc of log σ; unused for HalfNormal
    std_scale: Array  # (d,) LogNormal scale of log σ, or HalfNormal scale
    lkj_concentration: Array  # () LKJ η
    lkj_log_normalizer: Array  # () minus the log normalising constant of LKJCholesky(d, η)
    dof_concentration: Array  # () Gamma shape a of the degrees of freedom (Student-t only)
    dof_rate: Array  # () Gamma rate b
    dof_log_normalizer: Array  # () a log b − log Γ(a)


def _dirichlet_log_normalizer(concentration: float, k: int) -> float:
    """``log Γ(kα) − k log Γ(α)``: the log normaliser of a symmetric Dirichlet(α, ..., α)."""
    return float(gammaln(k * concentration) - k * gammaln(concentration))


def _gamma_log_normalizer(concentration: float, rate: float) -> float:
    """``a log b − log Γ(a)``: the log normaliser of Gamma(a, rate b)."""
    return float(concentration * math.log(rate) - gammaln(concentration))


def _lkj_log_normalizer(concentration: float, d: int) -> float:
    """Minus NumPyro's ``LKJCholesky(d, η)`` normalising term (the same formula, on the host)."""
    if d < 2:
        return 0.0
    alpha = concentration + 0.5 * (d - 1)
    normalize_term = 0.5 * (d - 1) * math.log(math.pi) + multigammaln(alpha - 0.5, d - 1) - (d - 1) * gammaln(alpha)
    return float(-normalize_term)


class _SymmetricDirichlet(dist.Dirichlet):
    """``Dirichlet(α, ..., α)`` with its log-normaliser given (see ``Hyperparameters``)."""

    pytree_data_fields = ("log_normalizer",)

    def __init__(self, concentration: Array, log_normalizer: Array, *, validate_args=None):
        self.log_normalizer = log_normalizer
        super().__init__(concentration, validate_args=validate_args)

    def log_prob(self, value):
        return jnp.sum(xlogy(self.concentration - 1.0, value), axis=-1) + self.log_normalizer


class _LKJCholesky(dist.LKJCholesky):
    """``LKJCholesky(d, η)`` with its log-normaliser given (see ``Hyperparameters``).

    Unnormalised density as NumPyro's: ``Π_{i≥2} L_ii^(2η − 2 + d − i)``.
    """

    pytree_data_fields = ("log_normalizer",)

    def __init__(self, dimension: int, concentration: Array, log_normalizer: Array, *, validate_args=None):
        self.log_normalizer = log_normalizer
        super().__init__(dimension, concentration, validate_args=validate_args)

    def log_prob(self, value):
        rows = jnp.arange(1, self.dimension)
        order = 2.0 * jnp.expand_dims(self.concentration, axis=-1) - ((3 - self.dimension) + rows)
        return jnp.sum(order * jnp.log(value[..., rows, rows]), axis=-1) + self.log_normalizer


@dataclasses.dataclass(frozen=True)
class Priors:
    """Priors of the Bayesian Gaussian mixture, on the data's own scale.

    Every field left as ``None`` gets a weakly informative default derived from the
    data ``X`` (feature means ``x̄_j`` and standard deviations ``sd_j``), stated here:

    Parameters
    ----------
    weight_concentration : float, optional
        ``π ~ Dirichlet(α, ..., α)``; α = 1 is uniform on the simplex. ``None`` (the default)
        means 1.0, or 0.01 under ``infer(..., sparse=True)``: a sparse finite mixture
        (Malsiner-Walli, Frühwirth-Schnatter and Grün 2016), whose α far below 1 puts most
        of the prior mass of each weight near 0, so that components the data do not need
        are emptied and the number of occupied components estimates the number of clusters
        (``Posterior.n_components``). Set a value to override either default.
    mean_loc : array (d,), default ``x̄``
        ``μ_kj ~ Normal(mean_loc_j, mean_scale_j)`` independently.
    mean_scale : array (d,), default ``2 sd_j``
    std_prior : {"lognormal", "halfnormal"}, default "lognormal"
        Prior on each component standard deviation σ (per feature; spherical: one σ
        per component, using the hyperparameters averaged over features).
    std_loc : array (d,), default ``log(sd_j / 2)``
        LogNormal only: ``log σ_kj ~ Normal(std_loc_j, std_scale_j)`` (median ``sd_j / 2``).
    std_scale : array (d,), default 1.0 (LogNormal) or ``sd_j`` (HalfNormal)
        LogNormal: the sd of ``log σ``; HalfNormal: ``σ_kj ~ HalfNormal(std_scale_j)``.
    lkj_concentration : float, default 2.0
        Correlations (full, tied): ``L_corr ~ LKJCholesky(d, η)``; η = 1 is uniform over
        correlation matrices, η > 1 favours weak correlations.
    dof_concentration, dof_rate : float, default 2.0 and 0.1
        Student-t components (``infer(..., family="student_t")``): each component's degrees
        of freedom ``ν_k ~ Gamma(dof_concentration, rate=dof_rate)`` independently, Juárez and
        Steel's (2010) prior: mean 20, mode 10, about 6% of its mass below ``ν = 4`` (heavy
        tails) and 9% above 40 (near Gaussian), so the data decide between them. The degrees
        of freedom do not change under the standardisation ``infer`` applies, so these are
        the same on every scale. Unused for Gaussian components.

    References
    ----------
    G. Malsiner-Walli, S. Frühwirth-Schnatter and B. Grün, "Model-based clustering based on
    sparse finite Gaussian mixtures", Statistics and Computing 26(1–2), 303–324, 2016 (the
    sparse Dirichlet prior on the weights).

    M. A. Juárez and M. F. J. Steel, "Model-based clustering of non-Gaussian panel data based
    on skew-t distributions", Journal of Business & Economic Statistics 28(1), 52–66, 2010
    (the prior of the degrees of freedom).
    """

    weight_concentration: float | None = None
    mean_loc: object = None
    mean_scale: object = None
    std_prior: str = "lognormal"
    std_loc: object = None
    std_scale: object = None
    lkj_concentration: float = 2.0
    dof_concentration: float = 2.0
    dof_rate: float = 0.1

    def __post_init__(self):
        if self.std_prior not in STD_PRIORS:
            raise ValueError(f"std_prior must be one of {STD_PRIORS}, got {self.std_prior!r}.")
        for name in ("weight_concentration", "lkj_concentration", "dof_concentration", "dof_rate"):
            value = getattr(self, name)
            if name == "weight_concentration" and value is None:
                continue
            if not (np.isscalar(value) and np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}.")

    def with_weight_concentration(self, sparse: bool = False) -> Priors:
        """These priors with ``weight_concentration`` set: its default (1.0, or
        ``SPARSE_WEIGHT_CONCENTRATION`` when ``sparse``) where it is ``None``, else unchanged."""
        if self.weight_concentration is not None:
            return self
        default = SPARSE_WEIGHT_CONCENTRATION if sparse else DEFAULT_WEIGHT_CONCENTRATION
        return dataclasses.replace(self, weight_concentration=default)

    def resolve(self, center: np.ndarray, scale: float, feature_std: np.ndarray, n_components: int) -> Hyperparameters:
        """Hyperparameters on the standardised scale ``z = (x − center) / scale``.

        An unset ``weight_concentration`` is 1.0 here (``with_weight_concentration`` first for
        a sparse mixture's default).

        Parameters
        ----------
        center : (d,) the feature means used to standardise
        scale : the scalar used to standardise
        feature_std : (d,) the data's feature standard deviations (for the defaults)
        n_components : int, the number of mixture components ``k``
        """
        d = center.shape[0]
        weight_concentration = self.with_weight_concentration().weight_concentration

        def vector(value, default, name, positive):
            value = default if value is None else np.broadcast_to(np.asarray(value, dtype=np.float64), (d,))
            if value.shape != (d,) or not np.all(np.isfinite(value)) or (positive and np.any(value <= 0)):
                raise ValueError(
                    f"Priors.{name} must be a finite{' positive' if positive else ''} "
                    f"scalar or array of shape ({d},), got {value!r}."
                )
            return value

        mean_loc = vector(self.mean_loc, center, "mean_loc", False)
        mean_scale = vector(self.mean_scale, 2.0 * feature_std, "mean_scale", True)
        if self.std_prior == "lognormal":
            std_loc = vector(self.std_loc, np.log(feature_std / 2.0), "std_loc", False) - np.log(scale)
            std_scale = vector(self.std_scale, np.ones(d), "std_scale", True)
        else:
            std_loc = np.zeros(d)
            std_scale = vector(self.std_scale, feature_std, "std_scale", True) / scale
        dtype = jnp.result_type(float)  # host arrays: jnp.asarray would compile a conversion per call
        return Hyperparameters(
            weight_concentration=np.asarray(weight_concentration, dtype),
            weight_log_normalizer=np.asarray(_dirichlet_log_normalizer(weight_concentration, n_components), dtype),
            mean_loc=np.asarray((mean_loc - center) / scale, dtype),
            mean_scale=np.asarray(mean_scale / scale, dtype),
            std_loc=np.asarray(std_loc, dtype),
            std_scale=np.asarray(std_scale, dtype),
            lkj_concentration=np.asarray(self.lkj_concentration, dtype),
            lkj_log_normalizer=np.asarray(_lkj_log_normalizer(self.lkj_concentration, d), dtype),
            dof_concentration=np.asarray(self.dof_concentration, dtype),
            dof_rate=np.asarray(self.dof_rate, dtype),
            dof_log_normalizer=np.asarray(_gamma_log_normalizer(self.dof_concentration, self.dof_rate), dtype),
        )


def std_distribution(hyper: Hyperparameters, std_prior: str, covariance_type: str, k: int) -> dist.Distribution:
    """The prior on the ``stds`` site, shaped for the covariance type."""
    structure = get_structure(covariance_type)
    shape = structure.prior.std_shape(k, hyper.mean_loc.shape[0])
    if std_prior == "lognormal":
        base = dist.LogNormal(
            structure.prior.std_prior_values(hyper.std_loc, k), structure.prior.std_prior_values(hyper.std_scale, k)
        )
    else:
        base = dist.HalfNormal(structure.prior.std_prior_values(hyper.std_scale, k))
    return base.expand(shape).to_event(len(shape))


def has_dof(family: str) -> bool:
    """Whether components of ``family`` have degrees of freedom (a ``dof`` site): Student-t ones."""
    return get_family(family) is not GAUSSIAN


def params_from_sites(sites: dict, covariance_type: str) -> GMMParams:
    """Assemble ``GMMParams`` from the model's sites (any leading batch axes).

    A ``dof`` site makes Student-t components (``family="student_t"``, one ``ν`` per component).
    """
    structure = get_structure(covariance_type)
    stds = sites["stds"]
    correlation = sites.get("corr_cholesky")
    if correlation is None and structure.prior.correlation_batch(1) is not None:
        correlation = jnp.ones(stds.shape + (1,), stds.dtype)  # d == 1: no correlations
    scale = structure.prior.assemble_scale(stds, correlation)
    dof = sites.get("dof")
    family = "gaussian" if dof is None else "student_t"
    return GMMParams(sites["weights"], sites["means"], scale, covariance_type, dof, family)


def sites_from_params(params: GMMParams) -> dict:
    """The inverse of ``params_from_sites``: initial values for the model's sites."""
    stds, correlation = params.structure.prior.split_scale(params.scale)
    sites = {"weights": params.weights, "means": params.means, "stds": stds}
    if correlation is not None and params.n_features > 1:
        sites["corr_cholesky"] = correlation
    if params.dof is not None:
        sites["dof"] = params.dof
    return sites


# ----------------------------------------------------------------------------- unconstrained coordinates


def _exclusive_cumsum(x: Array) -> Array:
    """``y_j = Σ_{l<j} x_l`` along the last axis, as slices and adds.

    The last axis is short here (k − 1 weights, d features): unrolled, XLA fuses it into
    the neighbouring elementwise code, where ``jnp.cumsum`` lowers to a reduce-window (and
    its gradient to another), each a separately compiled kernel in every place NUTS
    evaluates the density.
    """
    partial = jnp.zeros_like(x[..., :1])
    columns = [partial]
    for j in range(1, x.shape[-1]):
        partial = partial + x[..., j - 1 : j]
        columns.append(partial)
    return jnp.concatenate(columns, axis=-1)


def _to_tril(packed: Array, d: int) -> Array:
    """Packed strictly-lower entries (..., d(d−1)/2) -> (..., d, d), zero on and above the diagonal.

    The packing is NumPyro's ``vec_to_tril_matrix(·, -1)`` (row-major: row ``i`` holds
    entries ``i(i−1)/2 ...``). Built from slices and zeros rather than a gather, whose
    gradient is a scatter: both are kernels of their own, slices and concatenations fuse.
    """
    zeros = jnp.zeros(packed.shape[:-1] + (d,), packed.dtype)
    rows = [
        jnp.concatenate([packed[..., i * (i - 1) // 2 : i * (i + 1) // 2], zeros[..., i:]], axis=-1) for i in range(d)
    ]
    return jnp.stack(rows, axis=-2)


def _log_stick_breaking(unconstrained: Array) -> tuple[Array, Array]:
    """NumPyro's ``StickBreakingTransform`` in log space: ``(k−1,) -> log weights (k,)``, log |J|.

    With ``x_j = u_j − log(k−1−j)`` and ``z_j = σ(x_j)``: ``w_j = z_j Π_{i<j} (1 − z_i)``
    (the last weight takes the rest) and ``log |J| = Σ_{j<k−1} log w_j + log(1 − z_j)``.
    """
    m = unconstrained.shape[-1]
    shifted = unconstrained - np.log(np.arange(m, 0, -1)).astype(unconstrained.dtype)
    log_z, log_rest_fraction = log_sigmoid(shifted), log_sigmoid(-shifted)
    zero = jnp.zeros((1,), unconstrained.dtype)
    log_rest = _exclusive_cumsum(jnp.concatenate([log_rest_fraction, zero]))  # (k,) log Π_{i<j} (1 − z_i)
    log_weights = jnp.concatenate([log_z, zero]) + log_rest
    return log_weights, jnp.sum(log_weights[:-1] + log_rest_fraction)


class _Correlation(NamedTuple):
    """A correlation Cholesky factor ``C = D (I + N)`` from NumPyro's ``CorrCholeskyTransform``."""

    cholesky: Array  # (..., d, d) C, rows of unit length
    log_diagonal: Array  # (..., d) log C_ii = log D_ii
    unit_lower: Array  # (..., d, d) N = D⁻¹ C − I, strictly lower
    log_complement: Array  # (..., d, d) a_ij = log(1 − tanh(u_ij)²) below the diagonal, 0 elsewhere


def _correlation(unconstrained: Array, d: int) -> _Correlation:
    """``CorrCholeskyTransform`` of ``unconstrained (..., d(d−1)/2)``, in log space.

    With ``t_ij = tanh(u_ij)`` and ``a_ij = log(1 − t_ij²)``, the signed stick-breaking gives
    ``C_ij = t_ij exp(½ Σ_{l<j} a_il)`` (j < i) and ``C_ii = exp(½ Σ_{l<i} a_il)``.
    """
    t = _to_tril(jnp.tanh(unconstrained), d)
    a = _to_tril(2.0 * (math.log(2.0) - unconstrained - softplus(-2.0 * unconstrained)), d)
    half_log_rest = 0.5 * _exclusive_cumsum(a)  # ½ Σ_{l<j} a_il
    log_diagonal = 0.5 * jnp.sum(a, axis=-1)
    cholesky = (t + np.eye(d, dtype=t.dtype)) * jnp.exp(half_log_rest)
    unit_lower = t * jnp.exp(half_log_rest - log_diagonal[..., :, None])
    return _Correlation(cholesky, log_diagonal, unit_lower, a)


def _lkj_log_density(log_complement: Array, concentration: Array, jacobian: bool = True) -> Array:
    """Unnormalised ``log LKJCholesky(C | η)`` (``+ log |J|`` of the transform), shape (...).

    The LKJ log density is ``Σ_i (2η − 3 + d − i) log C_ii`` (0-based ``i``) with
    ``log C_ii = ½ Σ_{j<i} a_ij``: ``Σ_{i>j} (η − 2 + (d − i + 1)/2) a_ij``, one coefficient
    per row ``i``. The transform's log |J| is ``Σ_{i>j} a_ij (1 + (i − j − 1)/2)`` (tanh, then
    stick-breaking); with it, ``Σ_{i>j} (η − 1 + (d − j)/2) a_ij``, one coefficient per column ``j``.
    """
    d = log_complement.shape[-1]
    index = jnp.arange(d, dtype=log_complement.dtype)
    eta = jnp.expand_dims(concentration, (-2, -1))
    if jacobian:
        coefficient = (eta - 1.0) + 0.5 * (d - index)  # per column
    else:
        coefficient = (eta - 2.0) + 0.5 * (d - index[:, None] + 1.0)  # per row
    return jnp.sum(coefficient * log_complement, axis=(-2, -1))


def _unit_lower_inverse(unit_lower: Array) -> Array:
    """``(I + N)⁻¹`` for strictly lower-triangular ``N (..., d, d)``, by matrix products only.

    ``N`` is nilpotent (``N^d = 0``), so ``(I + N)⁻¹ = Σ_{m<d} (−N)^m = Π_j (I + (−N)^{2^j})``
    over ``j < ⌈log₂ d⌉``: no triangular solve (which lowers to a loop in XLA), only
    ``2 (⌈log₂ d⌉ − 1)`` products of small matrices.
    """
    d = unit_lower.shape[-1]
    eye = jnp.eye(d, dtype=unit_lower.dtype)
    power = -unit_lower
    inverse = eye + power
    for _ in range(max(0, math.ceil(math.log2(d)) - 1)):  # over doublings of the power, not components
        power = jnp.matmul(power, power, precision="highest")
        inverse = jnp.matmul(inverse, eye + power, precision="highest")
    return inverse


def unconstrained_log_density(
    unconstrained: dict,
    X: Array,
    hyper: Hyperparameters,
    sample_weight: Array | None = None,
    errors: Array | None = None,
    *,
    k: int,
    covariance_type: str,
    std_prior: str,
    family: str = "gaussian",
    jacobian: bool = True,
) -> Array:
    """Log density of ``gmm_model`` in NumPyro's unconstrained coordinates (minus its potential energy).

    ``log p(θ(u)) + log |∂θ/∂u| + Σ_i w_i log p(x_i | θ(u))``, written out: the same value as
    ``-numpyro.infer.util.potential_energy(gmm_model, (X, hyper, None, w), ..., unconstrained)``
    up to round-off, without tracing the model (a smaller program for NUTS and SVI to compile).
    With ``jacobian=False``, without ``log |∂θ/∂u|``: the log joint density of the model's own
    parameters ``θ(u)`` (NumPyro's ``log_density`` of the constrained sites; MAP's objective).

    Parameters
    ----------
    unconstrained : dict
        ``weights`` (k−1,), ``means`` (k, d), ``stds`` (``std_shape``, log σ), for
        full/tied with d > 1 ``corr_cholesky`` (full (k, d(d−1)/2), tied (d(d−1)/2,)), and for
        Student-t components ``dof`` (k,) (log ν).
    X : (n, d) standardised rows
    hyper : Hyperparameters
    sample_weight : (n,), optional
        Per-row weights ``w_i`` (``None``: all 1).
    errors : (n, d) or (n, d, d), optional
        The rows' measurement-error variances or covariances ``S_i`` (standardised scale):
        the likelihood is then ``Σ_k π_k N(x_i | μ_k, Σ_k + S_i)``. Gaussian components only.
    k : int
    covariance_type : str
    std_prior : {"lognormal", "halfnormal"}
    family : {"gaussian", "student_t"}
        The components' family (static). "student_t": the ``dof`` site with its Gamma prior,
        and ``families.STUDENT_T.log_density`` in the likelihood.
    jacobian : bool
        Include the transforms' ``log |∂θ/∂u|`` (default: the density of ``u``).

    Returns
    -------
    () scalar
    """
    structure = get_structure(covariance_type)
    d = X.shape[-1]
    log_weights, log_jacobian = _log_stick_breaking(unconstrained["weights"])
    log_density = log_jacobian if jacobian else jnp.zeros((), log_jacobian.dtype)
    log_density += jnp.sum((hyper.weight_concentration - 1.0) * log_weights) + hyper.weight_log_normalizer
    means = unconstrained["means"]
    log_density += jnp.sum(
        -0.5 * ((means - hyper.mean_loc) / hyper.mean_scale) ** 2 - jnp.log(hyper.mean_scale) - _HALF_LOG_2PI
    )
    log_std = unconstrained["stds"]
    std_scale = structure.prior.std_prior_values(hyper.std_scale, k)
    if std_prior == "lognormal":  # LogNormal(σ) |dσ/du| = Normal(log σ): the Jacobian cancels the 1/σ
        standardised = (log_std - structure.prior.std_prior_values(hyper.std_loc, k)) / std_scale
        log_density += jnp.sum(-0.5 * standardised**2 - jnp.log(std_scale) - _HALF_LOG_2PI)
    else:  # HalfNormal(σ) σ
        log_density += jnp.sum(
            math.log(2.0) - _HALF_LOG_2PI - jnp.log(std_scale) - 0.5 * (jnp.exp(log_std) / std_scale) ** 2 + log_std
        )
    if not jacobian:  # σ = exp(u): log |dσ/du| = u
        log_density -= jnp.sum(log_std)
    batch = structure.prior.correlation_batch(k)
    if batch is None:  # diag, spherical: scale = σ
        inverse = jnp.exp(-log_std)
        half_log_det = structure.core.half_log_det(jnp.exp(log_std), d)
    elif d == 1:  # full, tied in one dimension: no correlations
        inverse = jnp.exp(-log_std)[..., None]
        half_log_det = jnp.sum(log_std, axis=-1)
    else:  # L = diag(σ) C = diag(σ C_ii) (I + N), so L⁻¹ = (I + N)⁻¹ diag(1 / (σ C_ii))
        correlation = _correlation(unconstrained["corr_cholesky"], d)
        concentration = jnp.broadcast_to(hyper.lkj_concentration, batch)
        log_density += jnp.sum(_lkj_log_density(correlation.log_complement, concentration, jacobian))
        log_density += math.prod(batch) * hyper.lkj_log_normalizer
        log_diagonal = log_std + correlation.log_diagonal
        inverse = _unit_lower_inverse(correlation.unit_lower) * jnp.exp(-log_diagonal)[..., None, :]
        half_log_det = jnp.sum(log_diagonal, axis=-1)
    dof = None
    if has_dof(family):  # ν = exp(u): Gamma(ν | a, b) ν = b^a / Γ(a) ν^a e^(−b ν)
        log_dof = unconstrained["dof"]
        dof = jnp.exp(log_dof)
        power = hyper.dof_concentration if jacobian else hyper.dof_concentration - 1.0
        log_density += jnp.sum(power * log_dof - hyper.dof_rate * dof) + k * hyper.dof_log_normalizer
    if errors is not None:  # Σ_k + S_i: the dense covariances, one Cholesky factor per row and component
        if dof is not None:
            raise ValueError(_T_WITH_ERRORS)
        params = params_from_sites(constrain(unconstrained), covariance_type)
        log_joint = log_joint_with_errors(log_weights, means, params.covariance_matrices, X, errors)
        return log_density + _weighted_sum(_log_sum_exp_rows(log_joint), sample_weight)
    family_log_density = None if dof is None else get_family(family).log_density
    return log_density + _mixture_log_likelihood(
        structure, log_weights, means, inverse, half_log_det, X, sample_weight, family_log_density, dof
    )


_T_WITH_ERRORS = (
    "measurement errors apply to Gaussian components (a Student-t component convolved with Gaussian errors has "
    "no closed-form density); pass family='gaussian', or drop measurement_error."
)


def _log_sum_exp_rows(log_joint: Array) -> Array:
    """``log Σ_k exp(log_joint_ki)`` (n,) of (k, n) finite log joint densities (see ``_mixture_log_likelihood``)."""
    peak = jnp.max(jax.lax.stop_gradient(log_joint), axis=0)
    return jnp.log(jnp.sum(jnp.exp(log_joint - peak), axis=0)) + peak


def _weighted_sum(per_row: Array, sample_weight: Array | None) -> Array:
    return jnp.sum(per_row) if sample_weight is None else jnp.dot(sample_weight, per_row)


def _mixture_log_likelihood(
    structure, log_weights, means, inverse, half_log_det, X, sample_weight, family_log_density=None, dof=None
) -> Array:
    """``Σ_i w_i log Σ_k π_k f_k(x_i)`` with as few operations on (k, n) arrays as it takes.

    ``whitened_log_joint`` and ``jax.nn.logsumexp`` with the per-component constants folded
    into one (k,) vector first, and no handling of infinite maxima (the log joint densities
    of finite parameters are finite): each operation on an (n,)-sized array and its
    transpose is code in every place NUTS evaluates the gradient. ``f_k`` is ``N(μ_k, Σ_k)``,
    or with ``family_log_density`` (a ``Family.log_density``) and ``dof (k,)`` that family's
    density of the squared Mahalanobis distances (Student-t).
    """
    k, d = means.shape
    y = structure.core.whiten(X, means, inverse)  # (k, d, n)
    if family_log_density is None:
        constant = log_weights - jnp.broadcast_to(half_log_det, (k,)) - 0.5 * d * LOG_2PI
        log_joint = constant[:, None] - 0.5 * jnp.sum(y * y, axis=1)  # (k, n)
    else:
        constant = log_weights - jnp.broadcast_to(half_log_det, (k,))
        log_joint = constant[:, None] + family_log_density(jnp.sum(y * y, axis=1), d, dof)
    return _weighted_sum(_log_sum_exp_rows(log_joint), sample_weight)


def constrain(unconstrained: dict) -> dict:
    """The model's sites from unconstrained coordinates (the transforms of ``unconstrained_log_density``)."""
    sites = {
        "weights": jnp.exp(_log_stick_breaking(unconstrained["weights"])[0]),
        "means": unconstrained["means"],
        "stds": jnp.exp(unconstrained["stds"]),
    }
    if "corr_cholesky" in unconstrained:
        d = unconstrained["means"].shape[-1]
        sites["corr_cholesky"] = _correlation(unconstrained["corr_cholesky"], d).cholesky
    if "dof" in unconstrained:
        sites["dof"] = jnp.exp(unconstrained["dof"])
    return sites


def unconstrain(sites: dict) -> dict:
    """NumPyro's unconstrained coordinates of the model's sites (the inverse of ``constrain``)."""
    unconstrained = {
        "weights": biject_to(constraints.simplex).inv(sites["weights"]),
        "means": sites["means"],
        "stds": jnp.log(sites["stds"]),
    }
    if "corr_cholesky" in sites:
        unconstrained["corr_cholesky"] = biject_to(constraints.corr_cholesky).inv(sites["corr_cholesky"])
    if "dof" in sites:
        unconstrained["dof"] = jnp.log(sites["dof"])
    return unconstrained


def gmm_model(
    X: Array,
    hyper: Hyperparameters,
    batch_indices: Array | None = None,
    sample_weight: Array | None = None,
    errors: Array | None = None,
    *,
    k: int,
    covariance_type: str,
    std_prior: str = "lognormal",
    family: str = "gaussian",
):
    """The NumPyro model of a ``k``-component mixture for standardised rows ``X (n, d)``.

    Assignments are marginalised: ``obs`` has one log-likelihood term per row. With
    ``batch_indices (b,)`` (distinct row indices), only those rows are observed: the
    ``obs_id`` plate is ``plate("obs_id", n, subsample_size=b)`` with its subsample set to
    them, which scales their log-likelihood by ``n / b`` (for a uniformly random subset, an
    unbiased estimate of the full one: minibatch SVI). With ``sample_weight (n,)`` row i's
    log-likelihood is multiplied by ``w_i`` (integer weights: repeated rows). With ``errors``
    ((n, d) variances or (n, d, d) covariances ``S_i``) row i's density is
    ``Σ_k π_k N(x_i | μ_k, Σ_k + S_i)``. ``family="student_t"``: Student-t components with
    degrees of freedom ``dof ~ Gamma(a, rate b)`` (``Priors.dof_concentration``, ``dof_rate``).
    """
    structure = get_structure(covariance_type)
    if errors is not None and has_dof(family):
        raise ValueError(_T_WITH_ERRORS)
    n, d = X.shape
    sites = {
        "weights": numpyro.sample(
            "weights", _SymmetricDirichlet(jnp.full((k,), hyper.weight_concentration), hyper.weight_log_normalizer)
        ),
        "means": numpyro.sample("means", dist.Normal(hyper.mean_loc, hyper.mean_scale).expand((k, d)).to_event(2)),
        "stds": numpyro.sample("stds", std_distribution(hyper, std_prior, covariance_type, k)),
    }
    batch = structure.prior.correlation_batch(k)
    if batch is not None and d > 1:
        lkj = _LKJCholesky(d, hyper.lkj_concentration, hyper.lkj_log_normalizer)
        sites["corr_cholesky"] = numpyro.sample("corr_cholesky", lkj.expand(batch).to_event(len(batch)))
    if has_dof(family):
        dof_prior = dist.Gamma(hyper.dof_concentration, hyper.dof_rate)
        sites["dof"] = numpyro.sample("dof", dof_prior.expand((k,)).to_event(1))
    params = params_from_sites(sites, covariance_type)
    if batch_indices is None:
        plate = numpyro.plate("obs_id", n)
    else:
        with numpyro.handlers.substitute(data={"obs_id": batch_indices}):  # the plate's subsample
            plate = numpyro.plate("obs_id", n, subsample_size=batch_indices.shape[0])
    with plate:
        row_weights = None if sample_weight is None else numpyro.subsample(sample_weight, event_dim=0)
        row_errors = None if errors is None else numpyro.subsample(errors, event_dim=errors.ndim - 1)
        likelihood = MixtureLikelihood(params, row_weights, row_errors)
        numpyro.sample("obs", likelihood, obs=numpyro.subsample(X, event_dim=1))
