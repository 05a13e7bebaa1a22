"""``GMMParams``: the parameters of a Gaussian mixture, shared by EM and the posterior.

A frozen dataclass registered as a JAX pytree (``covariance_type`` is static), so it
passes through ``jit``, ``vmap`` and ``lax`` loops.  Leading batch axes are allowed
(a posterior is a ``GMMParams`` with ``(chain, draw)`` axes in front); every method
maps over them.

Shapes for ``k`` components and ``d`` features, per covariance type:

==========  ============  ============  =======================================
type        weights       means         scale (Cholesky factor of covariance)
==========  ============  ============  =======================================
full        (..., k)      (..., k, d)   (..., k, d, d) lower-triangular
tied        (..., k)      (..., k, d)   (..., d, d) lower-triangular
diag        (..., k)      (..., k, d)   (..., k, d) standard deviations
spherical   (..., k)      (..., k, d)   (..., k) standard deviations
==========  ============  ============  =======================================
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from bayesgmm import _validation
from bayesgmm._conditional import impute_rows, log_joint_with_errors
from bayesgmm.covariance import get_structure, whitened_log_joint


def _scale_ndim(covariance_type: str) -> int:
    return len(get_structure(covariance_type).core.scale_shape(1, 1))


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["weights", "means", "scale"],
    meta_fields=["covariance_type"],
)
@dataclasses.dataclass(frozen=True)
class GMMParams:
    """Parameters of a Gaussian mixture with ``k`` components in ``d`` dimensions.

    Parameters
    ----------
    weights : array (..., k)
        Mixing weights, non-negative, summing to one.
    means : array (..., k, d)
        Component means.
    scale : array
        Cholesky factor of the covariance in the layout of ``covariance_type``:
        full ``(..., k, d, d)``, tied ``(..., d, d)``, diag ``(..., k, d)`` (standard
        deviations), spherical ``(..., k)`` (standard deviations).
    covariance_type : {"full", "tied", "diag", "spherical"}
        Static (part of the pytree structure, not a leaf).

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm import GMMParams
    >>> params = GMMParams.from_covariances(
    ...     weights=[0.3, 0.7], means=[[0.0], [3.0]], covariances=[1.0, 0.25],
    ...     covariance_type="spherical")
    >>> params.n_components, params.n_features, params.n_parameters
    (2, 1, 5)
    >>> np.round(np.asarray(params.predict_proba([[0.0], [3.0]])), 3)
    array([[1.   , 0.   ],
           [0.002, 0.998]])
    """

    weights: Array
    means: Array
    scale: Array
    covariance_type: str = "full"

    def __post_init__(self):
        structure = get_structure(self.covariance_type)
        leaves = (self.weights, self.means, self.scale)
        # JAX rebuilds pytrees with placeholder leaves (None, object(), specs); check
        # shapes only when every leaf is array-like.
        if not all(hasattr(leaf, "shape") and hasattr(leaf, "ndim") for leaf in leaves):
            return
        if self.means.ndim < 2:
            raise ValueError(f"means must have shape (..., k, d), got shape {self.means.shape}.")
        k, d = self.means.shape[-2:]
        expected = structure.core.scale_shape(k, d)
        if self.weights.shape[-1:] != (k,):
            raise ValueError(
                f"weights must have shape (..., {k}) to match means {self.means.shape}, got {self.weights.shape}."
            )
        if self.scale.shape[self.scale.ndim - len(expected) :] != expected or self.scale.ndim < len(expected):
            raise ValueError(
                f"scale for covariance_type={self.covariance_type!r} must end in shape {expected} "
                f"(k={k}, d={d}), got {self.scale.shape}."
            )

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_covariances(cls, weights, means, covariances, covariance_type: str = "full") -> GMMParams:
        """Build from covariances in scikit-learn's layout (``GaussianMixture.covariances_``).

        Parameters
        ----------
        weights : array-like of shape (..., k)
        means : array-like of shape (..., k, d)
        covariances : array-like
            full ``(..., k, d, d)``, tied ``(..., d, d)``, diag ``(..., k, d)``,
            spherical ``(..., k)``.
        covariance_type : str
        """
        structure = get_structure(covariance_type)
        dtype = jnp.result_type(float)
        means = jnp.asarray(means, dtype=dtype)
        covariances = jnp.asarray(covariances, dtype=dtype)
        scale = structure.core.from_covariances(covariances)
        return cls(jnp.asarray(weights, dtype=dtype), means, scale, covariance_type)

    # ------------------------------------------------------------------ shape facts

    @property
    def structure(self):
        return get_structure(self.covariance_type)

    @property
    def n_components(self) -> int:
        return self.means.shape[-2]

    @property
    def n_features(self) -> int:
        return self.means.shape[-1]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.means.shape[:-2])

    @property
    def dtype(self):
        return self.means.dtype

    @property
    def n_parameters(self) -> int:
        """Free parameters: weights (k − 1), means (k·d) and covariances (by type)."""
        k, d = self.n_components, self.n_features
        return (k - 1) + k * d + self.structure.core.n_parameters(k, d)

    # ------------------------------------------------------------------ derived parameters

    @property
    def covariances(self) -> Array:
        """Covariances in scikit-learn's layout for the type (``L Lᵀ`` or ``σ²``)."""
        return self.structure.core.covariances(self.scale)

    @property
    def covariance_matrices(self) -> Array:
        """Dense covariance matrices for every type, shape (..., k, d, d)."""
        return map_batch(lambda p: p.structure.core.covariance_matrices(p.scale, p.n_components, p.n_features), self)

    @property
    def precisions(self) -> Array:
        """Inverse covariances in scikit-learn's layout for the type."""
        return self.structure.core.precisions(self.scale)

    @property
    def precisions_cholesky(self) -> Array:
        """scikit-learn's ``precisions_cholesky_``: ``L⁻ᵀ`` (full, tied) or ``1/σ``."""
        return self.structure.core.precisions_cholesky(self.scale)

    # ------------------------------------------------------------------ densities

    def log_joint(self, X, measurement_error=None) -> Array:
        """``log π_k + log N(x_i | μ_k, Σ_k)``, shape (..., n, k).

        With ``measurement_error`` (see ``log_prob``): ``log π_k + log N(x_i | μ_k, Σ_k + S_i)``.
        """
        if measurement_error is not None:
            X, errors = self._with_errors(X, measurement_error)
            return _log_joint_errors(self, X, errors)
        X = self.as_data(X)
        return map_batch(lambda p: _log_joint(p, X).T, self)

    def log_prob(self, X, measurement_error=None) -> Array:
        """Log density of each row under the mixture, shape (..., n).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        measurement_error : array-like of shape (n_samples, n_features) or (n_samples, n_features, n_features), optional
            Known Gaussian measurement errors of the rows, as in ``em_fit``: (n, d) error
            standard deviations (uncorrelated, ``S_i = diag(σ_i²)``) or (n, d, d) error
            covariances ``S_i``. The density of a noisy row is then that of the mixture
            convolved with its error, ``Σ_k π_k N(x_i | μ_k, Σ_k + S_i)`` (extreme
            deconvolution's likelihood, Bovy, Hogg and Roweis 2011), and NaN entries of ``X``
            mark missing coordinates, marginalised out (the density of the observed ones).
            Checked when concrete; under ``jit`` only the shape.

        Examples
        --------
        >>> import numpy as np
        >>> from bayesgmm import GMMParams
        >>> params = GMMParams.from_covariances([1.0], [[0.0]], [[[1.0]]])
        >>> # a row measured with error standard deviation 1: the density of N(0, 1 + 1) at 0
        >>> float(np.round(params.log_prob([[0.0]], measurement_error=[[1.0]])[0], 4))
        -1.2655
        """
        return jax.nn.logsumexp(self.log_joint(X, measurement_error), axis=-1)

    score_samples = log_prob

    def score(self, X) -> Array:
        """Mean log-likelihood per row, shape (...)."""
        return jnp.mean(self.log_prob(X), axis=-1)

    def predict_proba(self, X, measurement_error=None) -> Array:
        """Posterior component probabilities (responsibilities), shape (..., n, k).

        With ``measurement_error`` (see ``log_prob``): ``r_ik ∝ π_k N(x_i | μ_k, Σ_k + S_i)``.
        """
        return jax.nn.softmax(self.log_joint(X, measurement_error), axis=-1)

    def predict(self, X, measurement_error=None) -> Array:
        """Most probable component of each row, shape (..., n) (``measurement_error``: see ``log_prob``)."""
        return jnp.argmax(self.log_joint(X, measurement_error), axis=-1)

    def bic(self, X) -> Array:
        """Bayesian information criterion ``−2 log L + p log n`` (lower is better)."""
        n = jnp.shape(X)[0]
        return -2.0 * n * self.score(X) + self.n_parameters * math.log(n)

    def aic(self, X) -> Array:
        """Akaike information criterion ``−2 log L + 2 p`` (lower is better)."""
        n = jnp.shape(X)[0]
        return -2.0 * n * self.score(X) + 2.0 * self.n_parameters

    def icl(self, X) -> Array:
        """Integrated completed likelihood ``BIC − 2 Σ_i log max_k r_ik`` (lower is better).

        BIC plus twice the entropy of the hard classification (Biernacki, Celeux and Govaert
        2000; mclust's ICL with the sign flipped): it penalises overlapping components.
        """
        log_joint = self.log_joint(X)
        log_resp = log_joint - jax.nn.logsumexp(log_joint, axis=-1, keepdims=True)
        return self.bic(X) - 2.0 * jnp.sum(jnp.max(log_resp, axis=-1), axis=-1)

    def impute(self, X) -> Array:
        """``X`` with every NaN replaced by its conditional mean under the mixture.

        For a row with observed coordinates ``o`` and missing ones ``m``:
        ``E[x_m | x_o] = Σ_k r_k(x_o) (μ_km + Σ_k,mo Σ_k,oo⁻¹ (x_o − μ_ko))`` with
        ``r_k(x_o) ∝ π_k N(x_o | μ_ko, Σ_k,oo)`` the responsibilities from the observed
        marginal (``bayesgmm._conditional``); observed entries are returned unchanged.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            NaN marks a missing entry; rows entirely NaN and infinities are errors (checked
            when ``X`` is concrete; under ``jit`` an entirely-NaN row gets the mixture mean).

        Returns
        -------
        (..., n_samples, n_features)
            With the batch axes of the parameters in front.

        Examples
        --------
        >>> import numpy as np
        >>> from bayesgmm import GMMParams
        >>> params = GMMParams.from_covariances([1.0], [[0.0, 0.0]], [[[1.0, 0.5], [0.5, 1.0]]])
        >>> np.asarray(params.impute([[2.0, np.nan], [np.nan, -1.0]]))
        array([[ 2. ,  1. ],
               [-0.5, -1. ]])
        """
        if not isinstance(X, jax.core.Tracer):  # concrete input: check it here (under jit only the shape)
            X = _validation.check_data(X, allow_nan=True)  # NaN allowed; infinities and entirely-NaN rows are not
        return _impute(self, self.as_data(X))

    def sample(self, n_samples: int, seed: int | Array = 0) -> tuple[Array, Array]:
        """Draw ``n_samples`` rows from the mixture.

        Parameters
        ----------
        n_samples : int
            Static: the number of rows.
        seed : int or PRNG key

        Returns
        -------
        X : (..., n_samples, d)
        labels : (..., n_samples) int
        """
        if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}.")
        key = jax.random.key(seed) if isinstance(seed, (int, np.integer)) else seed
        keys = jax.random.split(key, math.prod(self.batch_shape)).reshape(self.batch_shape)
        return map_batch(lambda p, k: _sample(p, k, int(n_samples)), self, keys)

    # ------------------------------------------------------------------ helpers

    def _with_errors(self, X, measurement_error) -> tuple[Array, Array]:
        """``X`` (n, d) and its errors as variances (n, d) or covariances (n, d, d), in the parameters' dtype."""
        if not isinstance(X, jax.core.Tracer) and not isinstance(measurement_error, jax.core.Tracer):
            X = _validation.check_data(X, allow_nan=True)
            errors = _validation.check_measurement_error(measurement_error, X)
        else:  # under jit: the shapes only; standard deviations squared
            errors = jnp.asarray(measurement_error, dtype=self.dtype)
            n, d = jnp.shape(X)
            if errors.shape not in ((n, d), (n, d, d)):
                raise ValueError(
                    f"measurement_error has shape {errors.shape}; pass ({n}, {d}) standard deviations or "
                    f"({n}, {d}, {d}) covariance matrices, one per row of X."
                )
            errors = errors**2 if errors.ndim == 2 else errors
        return self.as_data(X), jnp.asarray(errors, dtype=self.dtype)

    def as_data(self, X) -> Array:
        X = jnp.asarray(X, dtype=self.dtype)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"X must have shape (n_samples, {self.n_features}) to match these parameters, got shape {X.shape}."
            )
        return X


def _log_joint(params: GMMParams, X: Array) -> Array:
    """Unbatched: (k, n) log joint densities."""
    structure = params.structure
    log_joint, _, _ = whitened_log_joint(
        structure,
        jnp.log(params.weights),
        params.means,
        structure.core.inverse_scale(params.scale),
        structure.core.half_log_det(params.scale, params.n_features),
        X,
    )
    return log_joint


def _sample(params: GMMParams, key: Array, n_samples: int) -> tuple[Array, Array]:
    key_labels, key_noise = jax.random.split(key)
    labels = jax.random.categorical(key_labels, jnp.log(params.weights), shape=(n_samples,))
    noise = jax.random.normal(key_noise, (n_samples, params.n_features), dtype=params.dtype)
    X = params.means[labels] + params.structure.core.colour(params.scale, labels, noise)
    return X, labels


def map_batch(fn: Callable[..., Any], params: GMMParams, *batched_args) -> Any:
    """Apply an unbatched ``fn(params, *args)`` over the leading batch axes of ``params``.

    ``batched_args`` carry the same batch axes as ``params``.
    """
    batch_shape = params.batch_shape
    if not batch_shape:
        return fn(params, *batched_args)
    flat = jax.tree.map(lambda leaf: leaf.reshape((-1,) + leaf.shape[len(batch_shape) :]), (params, batched_args))
    out = jax.vmap(lambda p, a: fn(p, *a))(*flat)
    return jax.tree.map(lambda leaf: leaf.reshape(batch_shape + leaf.shape[1:]), out)


@jax.jit  # one compiled program per shape, not a retrace of the chunk loop at every call
def _log_joint_errors(params: GMMParams, X: Array, errors: Array) -> Array:
    """(..., n, k) log joint densities of noisy rows: ``log π_k + log N(x_i | μ_k, Σ_k + S_i)``."""

    def unbatched(p: GMMParams) -> Array:
        return log_joint_with_errors(jnp.log(p.weights), p.means, p.covariance_matrices, X, errors).T

    return map_batch(unbatched, params)


@jax.jit  # one compiled program per shape, not a retrace of the chunk loop at every call
def _impute(params: GMMParams, X: Array) -> Array:
    def unbatched(p: GMMParams) -> Array:
        return impute_rows(jnp.log(p.weights), p.means, p.covariance_matrices, X)

    return map_batch(unbatched, params)
