"""The four covariance structures of a Gaussian mixture, in one table.

Every place that depends on the covariance type looks it up here
(``STRUCTURES[covariance_type]``); no other module branches on the type.
Each structure stores the Cholesky factor of the covariance ("scale", the
NumPyro ``scale_tril`` convention) in the layout of its type:

==========  ===================  ==========================  ==================
type        scale                covariances (scikit-learn)   second moments
==========  ===================  ==========================  ==================
full        (k, d, d) lower L_k  (k, d, d)  L_k L_kᵀ          (k, d, d)
tied        (d, d) lower L       (d, d)     L Lᵀ              (d, d) summed
diag        (k, d) std devs      (k, d)     variances         (k, d)
spherical   (k,) std devs        (k,)       variances         (k,) summed over d
==========  ===================  ==========================  ==================

Each structure is a ``CovarianceStructure(name, core, em, prior)`` of three records of named
functions, so a traceback names the function (``_full_whiten``):

- ``core`` (``CoreFunctions``): what every user of a fitted mixture needs: shapes, densities
  (``whiten``, ``half_log_det``), covariances and precisions in scikit-learn's layout,
  sampling, parameter counts, relabelling and validity of components;
- ``em`` (``EMFunctions``): EM's sufficient statistics, whitened and raw, and the M-step;
- ``prior`` (``PriorFunctions``): the scale as standard deviations and LKJ correlations, for
  the priors of the NumPyro model.

The kernels work in a ``(component, feature, row)`` layout: ``core.whiten`` maps a
chunk of rows ``x (c, d)`` to ``y[k, :, i] = L_k⁻¹ (x_i − μ_k)``, shape
``(k, d, c)``.  The squared norm of ``y`` is the Mahalanobis distance for the
E-step, and the responsibility-weighted second moments of ``y`` are the
M-step's sufficient statistics *about the current means* in whitened
coordinates; ``em.unwhiten`` maps them back once per iteration
(``S_k = L_k W_k L_kᵀ``).  Accumulating about the current means is what keeps
float32 accurate when components sit far from the origin or from each other.

A second formulation ("raw" moments, used in float64) writes the log density as a linear
function of quadratic features of the rows, ``log N(x | μ_k, Σ_k) = c_k + xᵀ P_k μ_k
− ½ q(x)·Q_k`` with ``q(x)`` the distinct products ``x_i x_j`` (full, tied), ``x_j²`` (diag) or
``‖x‖²`` (spherical); then the E-step is one matrix product ``[x, q(x)] W`` per chunk and the
M-step's statistics one more, ``rᵀ [x, q(x)]``: half the flops of the whitened form, at the
price of moments about the origin (fine in float64 on centred data, not in float32).

All functions are pure, unbatched and ``vmap``-safe; none of them jit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.scipy.linalg import solve_triangular

from bayesgmm._arrays import host_cholesky, namespace
from bayesgmm._eigen import MODELS as EIGEN_MODELS
from bayesgmm._eigen import EigenModel
from bayesgmm._errors import ArgumentTypeError

HIGHEST = "highest"


class CoreFunctions(NamedTuple):
    """What every user of a fitted mixture needs: parameters, densities, sampling, plots, files.

    Attributes
    ----------
    scale_shape : (k, d) -> tuple
        Shape of the Cholesky factor ("scale") for ``k`` components, ``d`` features.
    inverse_scale : scale -> inverse
        ``L⁻¹`` (full, tied) or ``1/σ`` (diag, spherical); computed once per iteration.
    whiten : (x (c, d), means (k, d), inverse) -> y (k, d, c)
    half_log_det : (scale, n_features) -> (k,) or ()
        ``log |Σ_k|^{1/2} = Σ_j log L_k[j, j]`` (a scalar for tied).
    colour : (scale, labels (n,), noise (n, d)) -> (n, d)
        ``L_{z_i} ε_i``, used for sampling.
    covariances : scale -> covariances in scikit-learn's layout
    covariance_matrices : (scale, k, d) -> (k, d, d)
        Dense covariance matrices for every type (for plots and ArviZ).
    precisions : scale -> precisions in scikit-learn's layout
    precisions_cholesky : scale -> scikit-learn's ``precisions_cholesky_``
        (``L⁻ᵀ`` for full/tied, ``1/σ`` for diag/spherical).
    from_covariances : covariances -> scale
    n_parameters : (k, d) -> int
        Free parameters of the covariances alone.
    identity_scale : (k, d, dtype, xp=jax.numpy) -> scale
        Unit covariance, used to accumulate raw moments at initialisation.
    permute : (scale, permutation (*B, k)) -> scale
        Reorder components, of each of a batch ``B`` of draws (tied: unchanged).
    component_valid : (scale, k) -> (k,) bool
        Each component's Cholesky factor is finite with a positive diagonal.
    reset_components : (mask (k,) bool, new scale, old scale) -> scale
        ``new`` for the components in ``mask``, ``old`` elsewhere (tied: the shared
        factor is replaced only if every component is in ``mask``).
    layout_from_full : (covariance (d, d), k) -> covariances in scikit-learn's layout
        One covariance matrix given to all ``k`` components (diag: its diagonal,
        spherical: the mean variance).
    layout_from_matrices : matrices (k, d, d) -> covariances in scikit-learn's layout
        The inverse of ``covariance_matrices`` on matrices of the type's form: full as they are,
        tied their mean over components, diag their diagonals, spherical the mean of each
        diagonal (conditional covariances, ``bayesgmm._conditional``).
    """

    scale_shape: Callable[[int, int], tuple]
    inverse_scale: Callable
    whiten: Callable
    half_log_det: Callable
    colour: Callable
    covariances: Callable
    covariance_matrices: Callable
    precisions: Callable
    precisions_cholesky: Callable
    from_covariances: Callable
    n_parameters: Callable[[int, int], int]
    identity_scale: Callable
    permute: Callable
    component_valid: Callable
    reset_components: Callable
    layout_from_full: Callable
    layout_from_matrices: Callable


class EMFunctions(NamedTuple):
    """The EM statistics (whitened and raw) and the M-step.

    Attributes
    ----------
    second_moment : (resp (k, c), y (k, d, c), sq_norm (k, c)) -> W
        Whitened second moments; shape in the module table.
    unwhiten : (first_w (k, d), W, scale) -> (first (k, d), second)
        Statistics about the shift in data coordinates.
    scale_from_moments : (counts (k,), nk (k,), first (k, d), delta (k, d), second, reg_covar) -> scale
        The scatter ``Σ r (x − μ)(x − μ)ᵀ`` about ``μ = shift + delta`` from ``counts`` and the moments
        about the shift, divided by ``nk`` (Student-t: ``counts`` and moments weighted by ``u``).
        M-step: the Cholesky factor of the covariance about the new means
        ``shift + delta``, plus ``reg_covar`` on the diagonal.
    raw_features : x (c, d) -> q (c, p)
        Quadratic features of the rows: full/tied ``x_i x_j`` for ``i <= j``
        (p = d(d+1)/2), diag ``x_j²`` (p = d), spherical ``‖x‖²`` (p = 1).
    quadratic_coefficients : (inverse, k) -> Q (k, p)
        ``q(x) · Q_k = xᵀ P_k x`` with ``P_k = Σ_k⁻¹``.
    precision_mean : (inverse, means (k, d)) -> (k, d)
        ``P_k μ_k``.
    second_from_raw : S (k, p) -> second moments in the type's layout
        From ``S_k = Σ_i r_ik q(x_i)`` (tied: summed over components).
    supported_rows : d -> float
        The fewest effective rows (``Σ_i w_i r_ik`` over the mean row weight) that can
        support one component's covariance: full ``d + 1`` (fewer leave it singular but for
        ``reg_covar``), diag and spherical 2 (a variance needs two rows), tied 1 (the shared
        covariance is estimated from every row; a component still needs a row for its mean).
        A fit with a component below it is a spurious maximum (``em._kernels.spurious``).
    second_from_full : S (k, d, d) -> second moments in the type's layout
        From dense per-component second moments: full as is, tied summed over components,
        diag the diagonals, spherical the traces (EM's missing-value E-step).
    host_cost : float
        The M-step's cost on em's NumPy driver per unit of ``select``'s work estimate, relative
        to a closed-form M-step's (``em._fit.prepare_grid``): 1 but for mclust's EVE, whose
        M-step iterates steps with a high price in NumPy (``_eigen.EigenModel.host_cost``).
    warm_start : bool
        ``scale_from_moments`` takes a last argument ``previous_scale``, the scale the statistics
        were computed under (EM's current parameters), where its iterations may start: mclust's
        EVE and VVE (``_eigen._common_orientation``), so that EM's likelihood never decreases.
    """

    second_moment: Callable
    unwhiten: Callable
    scale_from_moments: Callable
    raw_features: Callable
    quadratic_coefficients: Callable
    precision_mean: Callable
    second_from_raw: Callable
    second_from_full: Callable
    supported_rows: Callable[[int], float]
    host_cost: float = 1.0
    warm_start: bool = False


class PriorFunctions(NamedTuple):
    """The scale as standard deviations and correlations, for the priors of the NumPyro model.

    Attributes
    ----------
    std_shape : (k, d) -> tuple
        Shape of the standard deviations in the Bayesian model: full/diag (k, d),
        tied (d,), spherical (k,).
    correlation_batch : (k,) -> tuple or None
        Batch shape of the LKJ correlation Cholesky factors: full (k,), tied (),
        diag/spherical None (no correlations).
    assemble_scale : (std, correlation_cholesky or None) -> scale
        ``diag(σ) L_corr`` (full, tied) or ``σ`` (diag, spherical).
    split_scale : scale -> (std, correlation_cholesky or None)
        The inverse of ``assemble_scale``.
    std_prior_values : (values (d,), k) -> array of ``std_shape``
        Spread a per-feature prior hyperparameter over the standard deviations
        (spherical: the mean over features).
    """

    std_shape: Callable[[int, int], tuple]
    correlation_batch: Callable
    assemble_scale: Callable
    split_scale: Callable
    std_prior_values: Callable


class CovarianceStructure(NamedTuple):
    """One covariance type: its name and the small pure functions that define it.

    Attributes
    ----------
    name : str
        ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``.
    core : CoreFunctions
        Shared by everything: parameters, densities, sampling, plots, files.
    em : EMFunctions
        EM's sufficient statistics and M-step.
    prior : PriorFunctions
        The Bayesian model's parametrisation of the scale.
    """

    name: str
    core: CoreFunctions
    em: EMFunctions
    prior: PriorFunctions


# ----------------------------------------------------------------------------- helpers


def _eye_like(matrix: Array) -> Array:
    xp = namespace(matrix)
    return xp.broadcast_to(xp.eye(matrix.shape[-1], dtype=matrix.dtype), matrix.shape)


def _triangular_inverse(scale_tril: Array) -> Array:
    """``L⁻¹`` for a lower-triangular ``L`` of shape (..., d, d), by a triangular solve."""
    return solve_triangular(scale_tril, _eye_like(scale_tril), lower=True)


def _cholesky(covariance: Array) -> Array:
    """The Cholesky factor of the symmetrised matrix; NaN where it is not positive definite."""
    xp = namespace(covariance)
    symmetric = 0.5 * (covariance + xp.swapaxes(covariance, -1, -2))
    return jnp.linalg.cholesky(symmetric) if xp is jnp else host_cholesky(symmetric)


def _gram(scale_tril: Array) -> Array:
    if isinstance(scale_tril, np.ndarray):  # host results: NumPy, nothing to compile
        return scale_tril @ np.swapaxes(scale_tril, -1, -2)
    return jnp.matmul(scale_tril, jnp.swapaxes(scale_tril, -1, -2), precision=HIGHEST)


def _outer_scatter(counts, first, delta, second):
    """Σ r (x−μ)(x−μ)ᵀ per component from moments about a shift m, with μ = m + δ."""
    xp = namespace(counts, first, second)
    cross = first[:, :, None] * delta[:, None, :]
    return second - cross - xp.swapaxes(cross, -1, -2) + counts[:, None, None] * delta[:, :, None] * delta[:, None, :]


def _diag_scatter(counts, first, delta, second):
    """Σ r (x−μ)² per component and feature, from moments about a shift."""
    return second - 2.0 * first * delta + counts[:, None] * delta**2


def _sym_pair_count(d: int) -> int:
    return d * (d + 1) // 2


def _split_tril(scale_tril):
    """A Cholesky factor as row standard deviations and a correlation Cholesky factor."""
    std = jnp.sqrt(jnp.sum(scale_tril**2, axis=-1))
    return std, scale_tril / std[..., :, None]


def _keep_std(scale):
    return scale, None


def _upper_indices(d: int):
    """Row and column indices of the entries ``i <= j`` of a (d, d) matrix."""
    return np.triu_indices(d)


def _pair_features(x):
    rows, cols = _upper_indices(x.shape[-1])
    return x[:, rows] * x[:, cols]


def _pair_coefficients(precision):
    """Coefficients of ``x_i x_j`` (i <= j) in ``xᵀ P x``: ``P_ii`` and ``2 P_ij``."""
    d = precision.shape[-1]
    rows, cols = _upper_indices(d)
    return precision[..., rows, cols] * np.where(rows == cols, 1.0, 2.0)


def _symmetric_from_pairs(pairs, d: int):
    """(..., d(d+1)/2) upper-triangular entries -> (..., d, d) symmetric matrices."""
    rows, cols = _upper_indices(d)
    upper = jnp.zeros(pairs.shape[:-1] + (d, d), pairs.dtype).at[..., rows, cols].set(pairs)
    return upper + jnp.swapaxes(upper, -1, -2) - upper * jnp.eye(d, dtype=pairs.dtype)


def _precision_from_inverse(inverse):
    """``P = L⁻ᵀ L⁻¹`` from ``L⁻¹`` (..., d, d)."""
    return jnp.matmul(jnp.swapaxes(inverse, -1, -2), inverse, precision=HIGHEST)


def _valid_tril(scale):
    xp = namespace(scale)
    diagonal = xp.diagonal(scale, axis1=-2, axis2=-1)
    return xp.all(xp.isfinite(scale), axis=(-2, -1)) & xp.all(diagonal > 0, axis=-1)


def _reset_per_component(mask, new, old):
    xp = namespace(mask, new, old)
    return xp.where(mask.reshape(mask.shape + (1,) * (xp.ndim(new) - 1)), new, old)


def _sqrt_pairs(d: int) -> int:
    """d from d(d+1)/2."""
    return int(round((np.sqrt(8 * d + 1) - 1) / 2))


def permute_components(scale, permutation):
    """``scale``'s components reordered by ``permutation (*B, k)``: the axis after ``B`` (a batch of draws)."""
    index = permutation.reshape(permutation.shape + (1,) * (scale.ndim - permutation.ndim))
    return namespace(scale, permutation).take_along_axis(scale, index, axis=permutation.ndim - 1)


def _correlated_scale(std, correlation):
    """``diag(σ) L_corr``: row ``j`` of the correlation Cholesky factor times ``σ_j``."""
    return std[..., :, None] * correlation


def _std_only(std, correlation):
    return std


def _uncorrelated(k):
    return None


def _per_component_std_values(values, k):
    return jnp.broadcast_to(values, (k,) + values.shape)


def _std_from_variances(variances):
    """Standard deviations from variances (diag, spherical): the "Cholesky factor" of those layouts."""
    return namespace(variances).sqrt(variances)


def _reciprocal(scale):
    return 1.0 / scale


def _square(scale):
    return scale**2


def _reciprocal_square(scale):
    return 1.0 / scale**2


# ----------------------------------------------------------------------------- full


def _full_scale_shape(k, d):
    return (k, d, d)


def _full_whiten(x, means, inverse):
    projected = jnp.einsum("ked,cd->kec", inverse, x, precision=HIGHEST)
    offsets = jnp.einsum("ked,kd->ke", inverse, means, precision=HIGHEST)
    return projected - offsets[:, :, None]


def _full_half_log_det(scale, d):
    return jnp.sum(jnp.log(jnp.diagonal(scale, axis1=-2, axis2=-1)), axis=-1)


def _full_colour(scale, labels, noise):
    return jnp.einsum("nde,ne->nd", scale[labels], noise, precision=HIGHEST)


def _full_covariance_matrices(scale, k, d):
    return _gram(scale)


def _full_precisions(scale):
    return _gram(jnp.swapaxes(_triangular_inverse(scale), -1, -2))


def _full_precisions_cholesky(scale):
    return jnp.swapaxes(_triangular_inverse(scale), -1, -2)


def _full_n_parameters(k, d):
    return k * _sym_pair_count(d)


def _full_identity_scale(k, d, dtype, xp=jnp):
    return xp.broadcast_to(xp.eye(d, dtype=dtype), (k, d, d))


def _full_component_valid(scale, k):
    return _valid_tril(scale)


def _full_layout_from_full(covariance, k):
    xp = namespace(covariance)
    return xp.broadcast_to(covariance, (k,) + covariance.shape)


def _full_layout_from_matrices(matrices):
    return matrices


def _full_second_moment(resp, y, sq_norm):
    return jnp.einsum("kdc,kec->kde", y * resp[:, None, :], y, precision=HIGHEST)


def _full_unwhiten(first_w, second_w, scale):
    first = jnp.einsum("kde,ke->kd", scale, first_w, precision=HIGHEST)
    second = jnp.matmul(jnp.matmul(scale, second_w, precision=HIGHEST), jnp.swapaxes(scale, -1, -2), precision=HIGHEST)
    return first, second


def _full_scale_from_moments(counts, nk, first, delta, second, reg_covar):
    covariance = _outer_scatter(counts, first, delta, second) / nk[:, None, None]
    return _cholesky(covariance + reg_covar * _eye_like(covariance))


def _full_quadratic_coefficients(inverse, k):
    return _pair_coefficients(_precision_from_inverse(inverse))


def _full_precision_mean(inverse, means):
    """``L⁻ᵀ (L⁻¹ μ_k)`` per component."""
    return jnp.einsum(
        "kji,kj->ki", inverse, jnp.einsum("kij,kj->ki", inverse, means, precision=HIGHEST), precision=HIGHEST
    )


def _full_second_from_raw(pairs):
    return _symmetric_from_pairs(pairs, _sqrt_pairs(pairs.shape[-1]))


def _full_second_from_full(second):
    return second


def _full_supported_rows(d):
    return d + 1.0


def _tied_supported_rows(d):
    return 1.0


def _two_rows(d):
    return 2.0


_diag_supported_rows = _spherical_supported_rows = _two_rows


def _full_std_shape(k, d):
    return (k, d)


def _full_correlation_batch(k):
    return (k,)


FULL = CovarianceStructure(
    name="full",
    core=CoreFunctions(
        scale_shape=_full_scale_shape,
        inverse_scale=_triangular_inverse,
        whiten=_full_whiten,
        half_log_det=_full_half_log_det,
        colour=_full_colour,
        covariances=_gram,
        covariance_matrices=_full_covariance_matrices,
        precisions=_full_precisions,
        precisions_cholesky=_full_precisions_cholesky,
        from_covariances=_cholesky,
        n_parameters=_full_n_parameters,
        identity_scale=_full_identity_scale,
        permute=permute_components,
        component_valid=_full_component_valid,
        reset_components=_reset_per_component,
        layout_from_full=_full_layout_from_full,
        layout_from_matrices=_full_layout_from_matrices,
    ),
    em=EMFunctions(
        second_moment=_full_second_moment,
        unwhiten=_full_unwhiten,
        scale_from_moments=_full_scale_from_moments,
        raw_features=_pair_features,
        quadratic_coefficients=_full_quadratic_coefficients,
        precision_mean=_full_precision_mean,
        second_from_raw=_full_second_from_raw,
        second_from_full=_full_second_from_full,
        supported_rows=_full_supported_rows,
    ),
    prior=PriorFunctions(
        std_shape=_full_std_shape,
        correlation_batch=_full_correlation_batch,
        assemble_scale=_correlated_scale,
        split_scale=_split_tril,
        std_prior_values=_per_component_std_values,
    ),
)


# ----------------------------------------------------------------------------- tied


def _tied_scale_shape(k, d):
    return (d, d)


def _tied_whiten(x, means, inverse):
    projected = jnp.matmul(inverse, x.T, precision=HIGHEST)  # (d, c)
    offsets = jnp.matmul(means, inverse.T, precision=HIGHEST)  # (k, d)
    return projected[None, :, :] - offsets[:, :, None]


def _tied_half_log_det(scale, d):
    return jnp.sum(jnp.log(jnp.diagonal(scale)))


def _tied_colour(scale, labels, noise):
    return jnp.matmul(noise, scale.T, precision=HIGHEST)


def _tied_covariance_matrices(scale, k, d):
    xp = namespace(scale)
    return xp.broadcast_to(_gram(scale), (k,) + scale.shape)


def _tied_precisions(scale):
    return _gram(_triangular_inverse(scale).T)


def _tied_precisions_cholesky(scale):
    return _triangular_inverse(scale).T


def _tied_n_parameters(k, d):
    return _sym_pair_count(d)


def _tied_identity_scale(k, d, dtype, xp=jnp):
    return xp.eye(d, dtype=dtype)


def _tied_permute(scale, permutation):
    """The shared factor belongs to every component: nothing to reorder."""
    return scale


def _tied_component_valid(scale, k):
    xp = namespace(scale)
    return xp.broadcast_to(_valid_tril(scale), (k,))


def _tied_reset_components(mask, new, old):
    xp = namespace(mask, new, old)
    return xp.where(xp.all(mask), new, old)


def _tied_layout_from_full(covariance, k):
    return covariance


def _tied_layout_from_matrices(matrices):
    xp = namespace(matrices)
    return xp.mean(matrices, axis=-3)


def _tied_second_moment(resp, y, sq_norm):
    return jnp.einsum("kdc,kec->de", y * resp[:, None, :], y, precision=HIGHEST)


def _tied_unwhiten(first_w, second_w, scale):
    first = jnp.matmul(first_w, scale.T, precision=HIGHEST)
    second = jnp.matmul(jnp.matmul(scale, second_w, precision=HIGHEST), scale.T, precision=HIGHEST)
    return first, second


def _tied_scale_from_moments(counts, nk, first, delta, second, reg_covar):
    xp = namespace(counts, first, second)
    zero = xp.zeros_like(second)
    correction = _outer_scatter(counts, first, delta, xp.broadcast_to(zero, (counts.shape[0],) + zero.shape))
    # Σ nk over the components that hold rows: ``nk`` is 1 for those switched off (select's grid), and
    # ``counts`` are Σ r u, not Σ r, for Student-t components (the scale divides by Σ r)
    covariance = (second + xp.sum(correction, axis=0)) / xp.sum(xp.where(counts > 0, nk, 0.0))
    return _cholesky(covariance + reg_covar * _eye_like(covariance))


def _tied_quadratic_coefficients(inverse, k):
    return jnp.broadcast_to(
        _pair_coefficients(_precision_from_inverse(inverse)), (k, _sym_pair_count(inverse.shape[-1]))
    )


def _tied_precision_mean(inverse, means):
    return jnp.matmul(means, _precision_from_inverse(inverse), precision=HIGHEST)


def _tied_second_from_raw(pairs):
    return _symmetric_from_pairs(jnp.sum(pairs, axis=0), _sqrt_pairs(pairs.shape[-1]))


def _tied_second_from_full(second):
    xp = namespace(second)
    return xp.sum(second, axis=0)


def _tied_std_shape(k, d):
    return (d,)


def _tied_correlation_batch(k):
    return ()


def _tied_std_prior_values(values, k):
    return values


TIED = CovarianceStructure(
    name="tied",
    core=CoreFunctions(
        scale_shape=_tied_scale_shape,
        inverse_scale=_triangular_inverse,
        whiten=_tied_whiten,
        half_log_det=_tied_half_log_det,
        colour=_tied_colour,
        covariances=_gram,
        covariance_matrices=_tied_covariance_matrices,
        precisions=_tied_precisions,
        precisions_cholesky=_tied_precisions_cholesky,
        from_covariances=_cholesky,
        n_parameters=_tied_n_parameters,
        identity_scale=_tied_identity_scale,
        permute=_tied_permute,
        component_valid=_tied_component_valid,
        reset_components=_tied_reset_components,
        layout_from_full=_tied_layout_from_full,
        layout_from_matrices=_tied_layout_from_matrices,
    ),
    em=EMFunctions(
        second_moment=_tied_second_moment,
        unwhiten=_tied_unwhiten,
        scale_from_moments=_tied_scale_from_moments,
        raw_features=_pair_features,
        quadratic_coefficients=_tied_quadratic_coefficients,
        precision_mean=_tied_precision_mean,
        second_from_raw=_tied_second_from_raw,
        second_from_full=_tied_second_from_full,
        supported_rows=_tied_supported_rows,
    ),
    prior=PriorFunctions(
        std_shape=_tied_std_shape,
        correlation_batch=_tied_correlation_batch,
        assemble_scale=_correlated_scale,
        split_scale=_split_tril,
        std_prior_values=_tied_std_prior_values,
    ),
)


# ----------------------------------------------------------------------------- diag


def _diag_scale_shape(k, d):
    return (k, d)


def _diag_whiten(x, means, inverse):
    return (x.T[None, :, :] - means[:, :, None]) * inverse[:, :, None]


def _diag_half_log_det(scale, d):
    return jnp.sum(jnp.log(scale), axis=-1)


def _diag_colour(scale, labels, noise):
    return scale[labels] * noise


def _diag_covariance_matrices(scale, k, d):
    xp = namespace(scale)
    return (scale**2)[:, :, None] * xp.eye(d, dtype=scale.dtype)


def _diag_n_parameters(k, d):
    return k * d


def _diag_identity_scale(k, d, dtype, xp=jnp):
    return xp.ones((k, d), dtype=dtype)


def _diag_component_valid(scale, k):
    xp = namespace(scale)
    return xp.all(xp.isfinite(scale) & (scale > 0), axis=-1)


def _diag_layout_from_full(covariance, k):
    xp = namespace(covariance)
    return xp.broadcast_to(xp.diagonal(covariance), (k, covariance.shape[-1]))


def _diag_layout_from_matrices(matrices):
    xp = namespace(matrices)
    return xp.diagonal(matrices, axis1=-2, axis2=-1)


def _diag_second_moment(resp, y, sq_norm):
    return jnp.einsum("kc,kdc->kd", resp, y * y, precision=HIGHEST)


def _diag_unwhiten(first_w, second_w, scale):
    return scale * first_w, scale**2 * second_w


def _diag_scale_from_moments(counts, nk, first, delta, second, reg_covar):
    xp = namespace(counts, first, second)
    variance = xp.maximum(_diag_scatter(counts, first, delta, second) / nk[:, None], 0.0)
    return xp.sqrt(variance + reg_covar)


def _diag_raw_features(x):
    return x * x


def _diag_quadratic_coefficients(inverse, k):
    return inverse**2


def _diag_precision_mean(inverse, means):
    return means * inverse**2


def _diag_second_from_raw(squares):
    return squares


def _diag_second_from_full(second):
    xp = namespace(second)
    return xp.diagonal(second, axis1=-2, axis2=-1)


def _diag_std_shape(k, d):
    return (k, d)


DIAG = CovarianceStructure(
    name="diag",
    core=CoreFunctions(
        scale_shape=_diag_scale_shape,
        inverse_scale=_reciprocal,
        whiten=_diag_whiten,
        half_log_det=_diag_half_log_det,
        colour=_diag_colour,
        covariances=_square,
        covariance_matrices=_diag_covariance_matrices,
        precisions=_reciprocal_square,
        precisions_cholesky=_reciprocal,
        from_covariances=_std_from_variances,
        n_parameters=_diag_n_parameters,
        identity_scale=_diag_identity_scale,
        permute=permute_components,
        component_valid=_diag_component_valid,
        reset_components=_reset_per_component,
        layout_from_full=_diag_layout_from_full,
        layout_from_matrices=_diag_layout_from_matrices,
    ),
    em=EMFunctions(
        second_moment=_diag_second_moment,
        unwhiten=_diag_unwhiten,
        scale_from_moments=_diag_scale_from_moments,
        raw_features=_diag_raw_features,
        quadratic_coefficients=_diag_quadratic_coefficients,
        precision_mean=_diag_precision_mean,
        second_from_raw=_diag_second_from_raw,
        second_from_full=_diag_second_from_full,
        supported_rows=_diag_supported_rows,
    ),
    prior=PriorFunctions(
        std_shape=_diag_std_shape,
        correlation_batch=_uncorrelated,
        assemble_scale=_std_only,
        split_scale=_keep_std,
        std_prior_values=_per_component_std_values,
    ),
)


# ----------------------------------------------------------------------------- spherical


def _spherical_scale_shape(k, d):
    return (k,)


def _spherical_whiten(x, means, inverse):
    return (x.T[None, :, :] - means[:, :, None]) * inverse[:, None, None]


def _spherical_half_log_det(scale, d):
    return d * jnp.log(scale)


def _spherical_colour(scale, labels, noise):
    return scale[labels][:, None] * noise


def _spherical_covariance_matrices(scale, k, d):
    xp = namespace(scale)
    return (scale**2)[:, None, None] * xp.eye(d, dtype=scale.dtype)


def _spherical_n_parameters(k, d):
    return k


def _spherical_identity_scale(k, d, dtype, xp=jnp):
    return xp.ones((k,), dtype=dtype)


def _spherical_component_valid(scale, k):
    xp = namespace(scale)
    return xp.isfinite(scale) & (scale > 0)


def _spherical_layout_from_full(covariance, k):
    xp = namespace(covariance)
    return xp.full((k,), xp.mean(xp.diagonal(covariance)), covariance.dtype)


def _spherical_layout_from_matrices(matrices):
    xp = namespace(matrices)
    return xp.mean(xp.diagonal(matrices, axis1=-2, axis2=-1), axis=-1)


def _spherical_second_moment(resp, y, sq_norm):
    return jnp.sum(resp * sq_norm, axis=-1)


def _spherical_unwhiten(first_w, second_w, scale):
    return scale[:, None] * first_w, scale**2 * second_w


def _spherical_scale_from_moments(counts, nk, first, delta, second, reg_covar):
    xp = namespace(counts, first, second)
    n_features = first.shape[-1]
    scatter = second - 2.0 * xp.sum(first * delta, axis=-1) + counts * xp.sum(delta**2, axis=-1)
    variance = xp.maximum(scatter / (nk * n_features), 0.0)
    return xp.sqrt(variance + reg_covar)


def _spherical_raw_features(x):
    return jnp.sum(x * x, axis=-1, keepdims=True)


def _spherical_quadratic_coefficients(inverse, k):
    return (inverse**2)[:, None]


def _spherical_precision_mean(inverse, means):
    return means * (inverse**2)[:, None]


def _spherical_second_from_raw(squares):
    return squares[:, 0]


def _spherical_second_from_full(second):
    xp = namespace(second)
    return xp.trace(second, axis1=-2, axis2=-1)


def _spherical_std_shape(k, d):
    return (k,)


def _spherical_std_prior_values(values, k):
    """One standard deviation per component: the prior's mean over features."""
    return jnp.broadcast_to(jnp.mean(values), (k,))


SPHERICAL = CovarianceStructure(
    name="spherical",
    core=CoreFunctions(
        scale_shape=_spherical_scale_shape,
        inverse_scale=_reciprocal,
        whiten=_spherical_whiten,
        half_log_det=_spherical_half_log_det,
        colour=_spherical_colour,
        covariances=_square,
        covariance_matrices=_spherical_covariance_matrices,
        precisions=_reciprocal_square,
        precisions_cholesky=_reciprocal,
        from_covariances=_std_from_variances,
        n_parameters=_spherical_n_parameters,
        identity_scale=_spherical_identity_scale,
        permute=permute_components,
        component_valid=_spherical_component_valid,
        reset_components=_reset_per_component,
        layout_from_full=_spherical_layout_from_full,
        layout_from_matrices=_spherical_layout_from_matrices,
    ),
    em=EMFunctions(
        second_moment=_spherical_second_moment,
        unwhiten=_spherical_unwhiten,
        scale_from_moments=_spherical_scale_from_moments,
        raw_features=_spherical_raw_features,
        quadratic_coefficients=_spherical_quadratic_coefficients,
        precision_mean=_spherical_precision_mean,
        second_from_raw=_spherical_second_from_raw,
        second_from_full=_spherical_second_from_full,
        supported_rows=_spherical_supported_rows,
    ),
    prior=PriorFunctions(
        std_shape=_spherical_std_shape,
        correlation_batch=_uncorrelated,
        assemble_scale=_std_only,
        split_scale=_keep_std,
        std_prior_values=_spherical_std_prior_values,
    ),
)


# ----------------------------------------------------------------------------- mclust's models


def _eigen_structure(name: str, model: EigenModel) -> CovarianceStructure:
    """One of mclust's constrained models (``_eigen``) in the full layout: (k, d, d) Cholesky factors.

    Everything but the M-step, the parameter count and the rows a component needs is the
    full structure's (densities, E-steps, sampling, files); the M-step fits the model's
    covariances to the components' scatter matrices and adds ``reg_covar`` to their
    diagonals. No Bayesian parametrisation (``prior`` is None: ``infer`` supports the four
    scikit-learn types).
    """

    def scale_from_moments(counts, nk, first, delta, second, reg_covar, *previous_scale):
        previous = [_gram(scale) for scale in previous_scale]  # a warm_start model's start, when given
        covariance = model.covariances(_outer_scatter(counts, first, delta, second), nk, *previous)  # nk 0: off
        return _cholesky(covariance + reg_covar * _eye_like(covariance))

    scale_from_moments.__name__ = scale_from_moments.__qualname__ = f"_{name.lower()}_scale_from_moments"
    return CovarianceStructure(
        name=name,
        core=FULL.core._replace(n_parameters=model.n_parameters),
        em=FULL.em._replace(
            scale_from_moments=scale_from_moments,
            supported_rows=model.supported_rows,
            host_cost=model.host_cost,
            warm_start=model.warm_start,
        ),
        prior=None,
    )


# mclust's names of scikit-learn's four types: the same structures (same layouts and results)
MCLUST_NAMES: dict[str, str] = {"VII": "spherical", "VVI": "diag", "EEE": "tied", "VVV": "full"}

STRUCTURES: dict[str, CovarianceStructure] = {structure.name: structure for structure in (FULL, TIED, DIAG, SPHERICAL)}
COVARIANCE_TYPES: tuple[str, ...] = tuple(STRUCTURES)  # scikit-learn's four
for _name, _model in EIGEN_MODELS.items():
    STRUCTURES[_name] = STRUCTURES[MCLUST_NAMES[_name]] if _name in MCLUST_NAMES else _eigen_structure(_name, _model)
MCLUST_MODELS: tuple[str, ...] = tuple(EIGEN_MODELS)  # mclust's 14, in mclust's order (EII ... VVV)
ALL_TYPES: tuple[str, ...] = COVARIANCE_TYPES + tuple(name for name in MCLUST_MODELS if name not in MCLUST_NAMES)


def get_structure(covariance_type: str) -> CovarianceStructure:
    """Look up a covariance type (scikit-learn's four names or mclust's 14), with an error that lists the valid ones."""
    try:
        return STRUCTURES[covariance_type]
    except (KeyError, TypeError):
        error = ValueError if isinstance(covariance_type, str) else ArgumentTypeError
        raise error(
            f"covariance_type must be one of scikit-learn's {COVARIANCE_TYPES} or mclust's {MCLUST_MODELS}, "
            f"got {covariance_type!r}."
        ) from None


def conditional_type(covariance_type: str) -> str:
    """The covariance type of a mixture's conditional given some of its coordinates.

    scikit-learn's four types are closed under conditioning: the conditional covariance
    ``Σ_oo − Σ_og Σ_gg⁻¹ Σ_go`` of a full covariance is full, of a tied one is the same for
    every component (tied), and of a diagonal or spherical one is ``Σ_oo`` itself (``Σ_og = 0``).
    Their mclust names give the same type under its scikit-learn name (``"EEE"`` -> ``"tied"``).
    The constraints of mclust's other ten models (equal volume, equal shape, ...) do not survive
    conditioning in general; their conditionals are ``"full"``.
    """
    name = get_structure(covariance_type).name
    return name if name in COVARIANCE_TYPES else "full"


def pooled_type(covariance_type: str) -> str:
    """The covariance type of one mixture whose components are those of several mixtures of a type.

    A posterior's draws pooled into its predictive mixture (``Posterior.predictive_mixture``):
    full, diag and spherical components keep their type (each component has its own
    covariance); tied draws share a covariance within a draw, not across draws, and mclust's
    constrained models' constraints hold within a draw only, so both pool to ``"full"``.
    """
    name = conditional_type(covariance_type)
    return "full" if name == "tied" else name


LOG_2PI = 1.8378770664093453  # log(2π)


def whitened_log_joint(structure, log_weights, means, inverse, half_log_det, x):
    """Per-component log joint densities of a chunk of rows, and its whitened rows.

    ``log p(x_i, z_i = k) = log π_k − ½ (d log 2π + ‖y_ki‖²) − log |Σ_k|^{1/2}``
    with ``y_ki = L_k⁻¹ (x_i − μ_k)``.

    Parameters
    ----------
    structure : CovarianceStructure
    log_weights : (k,)
    means : (k, d)
    inverse : ``structure.core.inverse_scale(scale)``
    half_log_det : (k,) or ()
    x : (c, d)

    Returns
    -------
    log_joint : (k, c)
    y : (k, d, c)
    sq_norm : (k, c)
        Squared Mahalanobis distances ``‖y_ki‖²``.
    """
    n_features = x.shape[-1]
    y = structure.core.whiten(x, means, inverse)
    sq_norm = jnp.sum(y * y, axis=1)
    log_density = -0.5 * (n_features * LOG_2PI + sq_norm) - jnp.reshape(half_log_det, (-1, 1))
    return log_weights[:, None] + log_density, y, sq_norm


def raw_coefficients(structure, log_weights, means, inverse, half_log_det):
    """``W (d + p, k)`` and ``b (k,)`` with ``log π_k + log N(x | μ_k, Σ_k) = [x, q(x)] W_k + b_k``.

    ``q = structure.em.raw_features``; ``W = [P_k μ_k ; −½ Q_k]`` and
    ``b_k = log π_k − log |Σ_k|^{1/2} − ½ (d log 2π + μ_kᵀ P_k μ_k)``.
    """
    k, d = means.shape
    linear = structure.em.precision_mean(inverse, means)
    quadratic = structure.em.quadratic_coefficients(inverse, k)
    coefficients = jnp.concatenate([linear, -0.5 * quadratic], axis=1).T
    offsets = log_weights - jnp.broadcast_to(half_log_det, (k,)) - 0.5 * (d * LOG_2PI + jnp.sum(means * linear, axis=1))
    return coefficients, offsets
