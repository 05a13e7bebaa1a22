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

import contextlib
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
from bayesgmm._arrays import namespace
from bayesgmm._conditional import condition_given, gaussian_log_density, impute_rows, log_joint_with_errors
from bayesgmm.covariance import conditional_type, get_structure, whitened_log_joint
from bayesgmm.families import DOF_MODES, GAUSSIAN, get_family


def _scale_ndim(covariance_type: str) -> int:
    return len(get_structure(covariance_type).core.scale_shape(1, 1))


@functools.lru_cache(maxsize=1024)
def _check_layout(covariance_type: str, family: str, dof_mode: str, absent: tuple, shapes: tuple | None) -> None:
    """``GMMParams``' checks, once per layout: the names, which optional leaves are given, and their
    shapes (``shapes`` None when JAX rebuilds the pytree with placeholder leaves). A GMMParams is
    built hundreds of times per ``select`` (pytree maps and replaces), each with a layout seen before."""
    structure = get_structure(covariance_type)
    family_functions = get_family(family)
    if dof_mode not in DOF_MODES:
        raise ValueError(f"dof_mode must be one of {DOF_MODES}, got {dof_mode!r}.")
    no_dof, no_noise_weight, no_noise_bounds = absent
    if no_dof != (family_functions.e_step_terms is None):
        raise ValueError(
            "dof (degrees of freedom, shape (..., k)) must be given for family='student_t' and only for it "
            f"(family={family!r}, dof={'None' if no_dof else 'given'})."
        )
    if no_noise_weight != no_noise_bounds:
        raise ValueError("A noise component needs both noise_weight (...,) and noise_bounds (..., 2, d), or neither.")
    if shapes is None:
        return
    weights, means, scale, dof, _, noise_bounds = shapes
    if len(means) < 2:
        raise ValueError(f"means must have shape (..., k, d), got shape {means}.")
    k, d = means[-2:]
    expected = structure.core.scale_shape(k, d)
    if weights[-1:] != (k,):
        raise ValueError(f"weights must have shape (..., {k}) to match means {means}, got {weights}.")
    if scale[len(scale) - len(expected) :] != expected or len(scale) < len(expected):
        raise ValueError(
            f"scale for covariance_type={covariance_type!r} must end in shape {expected} (k={k}, d={d}), got {scale}."
        )
    if dof is not None and dof[-1:] != (k,):
        raise ValueError(f"dof must have shape (..., {k}) to match means {means}, got {dof}.")
    if noise_bounds is not None and noise_bounds[-2:] != (2, d):
        raise ValueError(f"noise_bounds must have shape (..., 2, {d}), got {noise_bounds}.")


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["weights", "means", "scale", "dof", "noise_weight", "noise_bounds"],
    meta_fields=["covariance_type", "family", "dof_mode"],
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
    covariance_type : {"full", "tied", "diag", "spherical"} or one of mclust's 14 names
        Static (part of the pytree structure, not a leaf).
    dof : array (..., k), optional
        Degrees of freedom of Student-t components (``family="student_t"``); None for Gaussian ones.
    family : {"gaussian", "student_t"}
        The components' distribution (``bayesgmm.families``), static. For "student_t",
        ``scale`` is the Cholesky factor of the scale matrix ``Σ_k``, whose covariance is
        ``ν_k / (ν_k − 2) Σ_k`` (``ν_k > 2``); ``covariances`` returns the scale matrices.
    dof_mode : {"component", "shared", "fixed"}
        How the degrees of freedom were fitted (static): one per component, one shared, or
        given. It decides the parameter count of ``bic`` and ``aic``; ignored for "gaussian".
    noise_weight : array (...,), optional
        The weight ``π_0`` of a uniform background-noise component (mclust's ``Vinv``;
        ``em_fit(noise=True)``): the density is ``π_0 / V + (1 − π_0) Σ_k π_k f_k(x)``, so
        ``weights`` still sum to one over the ``k`` components. None: no noise component.
    noise_bounds : array (..., 2, d), optional
        Lower and upper corners of the noise component's box (the data's bounding box), of
        volume ``V``. As in mclust, the noise density is ``1 / V`` everywhere (also outside the
        box, where no fitted row lies); ``sample`` draws noise rows inside it. With a noise
        component, ``log_joint`` and ``predict_proba`` have a last column for it (``k + 1``),
        ``predict`` labels rows it explains best ``−1``, and ``n_parameters`` counts ``π_0``.

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
    dof: Array | None = None
    family: str = "gaussian"
    dof_mode: str = "component"
    noise_weight: Array | None = None
    noise_bounds: Array | None = None

    def __post_init__(self):
        optional = (self.dof, self.noise_weight, self.noise_bounds)
        leaves = (self.weights, self.means, self.scale) + optional
        # JAX rebuilds pytrees with placeholder leaves (None, object(), specs); check
        # shapes only when every leaf is array-like.
        shaped = all(leaf is None or (hasattr(leaf, "shape") and hasattr(leaf, "ndim")) for leaf in leaves)
        shapes = tuple(None if leaf is None else tuple(leaf.shape) for leaf in leaves) if shaped else None
        names = (self.covariance_type, self.family, self.dof_mode)
        check = _check_layout if all(isinstance(name, str) for name in names) else _check_layout.__wrapped__
        check(*names, tuple(leaf is None for leaf in optional), shapes)  # unhashable names: their own error

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_covariances(
        cls,
        weights,
        means,
        covariances,
        covariance_type: str = "full",
        *,
        family: str = "gaussian",
        dof=None,
        dof_mode: str = "component",
    ) -> GMMParams:
        """Build from covariances in scikit-learn's layout (``GaussianMixture.covariances_``).

        Parameters
        ----------
        weights : array-like of shape (..., k)
        means : array-like of shape (..., k, d)
        covariances : array-like
            full ``(..., k, d, d)``, tied ``(..., d, d)``, diag ``(..., k, d)``,
            spherical ``(..., k)``.
        covariance_type : str
        family : {"gaussian", "student_t"}
            For "student_t", ``covariances`` are the scale matrices and ``dof`` (k,) the degrees of freedom.
        dof : array-like of shape (..., k), optional
        dof_mode : {"component", "shared", "fixed"}
        """
        structure = get_structure(covariance_type)
        dtype = jnp.result_type(float)
        means = jnp.asarray(means, dtype=dtype)
        covariances = jnp.asarray(covariances, dtype=dtype)
        scale = structure.core.from_covariances(covariances)
        dof = None if dof is None else jnp.asarray(dof, dtype=dtype)
        return cls(jnp.asarray(weights, dtype=dtype), means, scale, covariance_type, dof, family, dof_mode)

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
    def family_functions(self):
        return get_family(self.family)

    @property
    def n_parameters(self) -> int:
        """Free parameters: weights (k − 1), means (k·d), covariances (by type) and the family's
        (Student-t: ``k`` degrees of freedom, 1 when shared, 0 when fixed), and the noise weight."""
        k, d = self.n_components, self.n_features
        extra = self.family_functions.n_parameters(k, self.dof_mode) + (self.noise_weight is not None)
        return (k - 1) + k * d + self.structure.core.n_parameters(k, d) + extra

    # ------------------------------------------------------------------ derived parameters

    @property
    def covariances(self) -> Array:
        """Covariances in scikit-learn's layout for the type (``L Lᵀ`` or ``σ²``)."""
        return _derived(_covariances, self)

    @property
    def covariance_matrices(self) -> Array:
        """Dense covariance matrices for every type, shape (..., k, d, d)."""
        return _derived(_covariance_matrices, self)

    @property
    def precisions(self) -> Array:
        """Inverse covariances in scikit-learn's layout for the type."""
        return _derived(_precisions, self)

    @property
    def precisions_cholesky(self) -> Array:
        """scikit-learn's ``precisions_cholesky_``: ``L⁻ᵀ`` (full, tied) or ``1/σ``."""
        return _derived(_precisions_cholesky, self)

    # ------------------------------------------------------------------ densities

    def log_joint(self, X, measurement_error=None) -> Array:
        """``log π_k + log N(x_i | μ_k, Σ_k)``, shape (..., n, k).

        With ``measurement_error`` (see ``log_prob``): ``log π_k + log N(x_i | μ_k, Σ_k + S_i)``.
        """
        if measurement_error is not None:
            self._check_gaussian("measurement_error", noise=True)
            X, errors = self._with_errors(X, measurement_error)
            return _log_joint_errors(self, X, errors)
        return _log_joint_rows(self, self.as_data(X))

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
        return _logsumexp_rows(self.log_joint(X, measurement_error))

    score_samples = log_prob

    def score(self, X) -> Array:
        """Mean log-likelihood per row, shape (...)."""
        return jnp.mean(self.log_prob(X), axis=-1)

    def predict_proba(self, X, measurement_error=None) -> Array:
        """Posterior component probabilities (responsibilities), shape (..., n, k).

        With ``measurement_error`` (see ``log_prob``): ``r_ik ∝ π_k N(x_i | μ_k, Σ_k + S_i)``.
        """
        return _softmax_rows(self.log_joint(X, measurement_error))

    def predict(self, X, measurement_error=None) -> Array:
        """Most probable component of each row, shape (..., n) (``measurement_error``: see ``log_prob``);
        −1 for rows the noise component explains best."""
        labels = jnp.argmax(self.log_joint(X, measurement_error), axis=-1)
        return labels if self.noise_weight is None else jnp.where(labels == self.n_components, -1, labels)

    def bic(self, X) -> Array:
        """Bayesian information criterion ``−2 log L + p log n`` (lower is better)."""
        return _penalised(self.log_prob(X), self.n_parameters * math.log(jnp.shape(X)[0]))

    def aic(self, X) -> Array:
        """Akaike information criterion ``−2 log L + 2 p`` (lower is better)."""
        return _penalised(self.log_prob(X), 2.0 * self.n_parameters)

    def icl(self, X) -> Array:
        """Integrated completed likelihood ``BIC − 2 Σ_i log max_k r_ik`` (lower is better).

        BIC plus twice the entropy of the hard classification (Biernacki, Celeux and Govaert
        2000; mclust's ICL with the sign flipped): it penalises overlapping components.
        """
        return _icl(self.log_joint(X), self.n_parameters * math.log(jnp.shape(X)[0]))

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
        if self.noise_weight is not None:
            self._check_gaussian("impute")
        if not isinstance(X, jax.core.Tracer):  # concrete input: check it here (under jit only the shape)
            X = _validation.check_data(X, allow_nan=True)  # NaN allowed; infinities and entirely-NaN rows are not
        return _impute(self, self.as_data(X))

    # ------------------------------------------------------------------ conditioning, regression

    def condition(self, given, values) -> GMMParams:
        """The conditional mixture of the other coordinates given the coordinates ``given`` take ``values``.

        For the given coordinates ``g`` with values ``v`` and the others ``o`` (in increasing
        order), component ``k`` of the conditional has

        - weight ``∝ π_k N(v | μ_k,g, Σ_k,gg)`` (the responsibilities of the given marginal),
        - mean ``μ_k,o + Σ_k,og Σ_k,gg⁻¹ (v − μ_k,g)``,
        - covariance ``Σ_k,oo − Σ_k,og Σ_k,gg⁻¹ Σ_k,go`` (the same for every ``v``),

        computed with the Cholesky factors of ``Σ_k,gg`` and triangular solves.

        Parameters
        ----------
        given : int or sequence of int
            Indices of the ``g`` given coordinates (distinct, in ``[0, d)``, fewer than ``d``);
            their order is the order of the columns of ``values``.
        values : array-like of shape (n, g) or (g,)
            Values of the given coordinates, one row per conditional.

        Returns
        -------
        GMMParams
            ``d − g`` features (the other coordinates in increasing order), ``k`` components,
            batch shape ``batch_shape + (n,)`` for 2-D ``values`` (the rows after the parameters'
            own batch axes) or ``batch_shape`` for 1-D ``values``. Its covariance type
            (``bayesgmm.covariance.conditional_type``): full stays full, tied stays tied (the
            conditional covariance is shared too), diag and spherical stay as they are (their
            conditional covariance is ``Σ_oo``; only the weights depend on ``v``), under the
            scikit-learn name for mclust's names of these four; mclust's ten other models give
            ``"full"`` (their constraints do not survive conditioning in general).

        Raises
        ------
        ValueError
            ``given`` out of range, repeated, empty or naming every coordinate; ``values`` of
            the wrong shape or not finite.
        ArgumentTypeError
            ``given`` not integers (a ``TypeError`` and a ``ValueError``).

        See Also
        --------
        predict_mean, predict_cov : the conditional's mean and covariance, for regression.

        References
        ----------
        Z. Ghahramani and M. I. Jordan, "Supervised learning from incomplete data via an EM
        approach", NIPS 6 (1994). H. G. Sung, "Gaussian mixture regression and classification",
        PhD thesis, Rice University (2004).

        Examples
        --------
        >>> import numpy as np
        >>> from bayesgmm import GMMParams
        >>> params = GMMParams.from_covariances([1.0], [[0.0, 1.0]], [[[1.0, 0.5], [0.5, 2.0]]])
        >>> conditional = params.condition([0], [[2.0], [-2.0]])
        >>> conditional.batch_shape, conditional.n_features
        ((2,), 1)
        >>> np.asarray(conditional.means[:, 0, 0]), np.asarray(conditional.covariances[:, 0, 0, 0])
        (array([2., 0.]), array([1.75, 1.75]))
        """
        self._check_gaussian("conditioning")
        given = _validation.check_given(given, self.n_features)
        values, one_row = _given_values(values, len(given), name="values", allow_one_row=True)
        conditional = _condition(self, given, jnp.asarray(values, dtype=self.dtype))
        if one_row:
            axis = len(self.batch_shape)
            conditional = jax.tree.map(lambda leaf: jnp.squeeze(leaf, axis), conditional)
        return conditional

    def predict_mean(self, X, given) -> Array:
        """Mixture regression: ``E[x_o | x_g]`` for each row of given values.

        ``Σ_k w_k(x_g) m_k(x_g)``: the mean of the conditional mixture (``condition``), with
        ``w_k`` its weights and ``m_k`` its components' means.

        Parameters
        ----------
        X : array-like of shape (n_samples, g)
            Values of the ``g`` given coordinates only, columns in the order of ``given`` (from
            full rows ``Z``, pass ``Z[:, given]``).
        given : int or sequence of int
            Indices of the given coordinates (distinct, in ``[0, d)``, fewer than ``d``).

        Returns
        -------
        (..., n_samples, d − g)
            The other coordinates in increasing order, the parameters' batch axes in front.

        Examples
        --------
        >>> import numpy as np
        >>> from bayesgmm import GMMParams
        >>> params = GMMParams.from_covariances(
        ...     [0.5, 0.5], [[0.0, 0.0], [4.0, 8.0]], [[[1.0, 0.5], [0.5, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])
        >>> np.round(np.asarray(params.predict_mean([[0.0], [2.0], [4.0]], given=[0])), 2)
        array([[0. ],
               [4.5],
               [8. ]])
        """
        self._check_gaussian("conditioning")
        given = _validation.check_given(given, self.n_features)
        X, _ = _given_values(X, len(given), name="X", allow_one_row=False)
        mean, _ = _regression(self, given, jnp.asarray(X, dtype=self.dtype), with_covariance=False)
        return mean

    def predict_cov(self, X, given) -> Array:
        """Mixture regression: ``Cov[x_o | x_g]`` for each row of given values (law of total covariance).

        ``Σ_k w_k (C_k + (m_k − m)(m_k − m)ᵀ)`` with ``w_k``, ``m_k``, ``C_k`` the weights,
        means and covariances of the conditional mixture (``condition``) and ``m`` its mean
        (``predict_mean``): the spread within components plus the spread between them.

        Parameters
        ----------
        X : array-like of shape (n_samples, g)
            Values of the ``g`` given coordinates only, columns in the order of ``given``.
        given : int or sequence of int
            Indices of the given coordinates (distinct, in ``[0, d)``, fewer than ``d``).

        Returns
        -------
        (..., n_samples, d − g, d − g)

        Examples
        --------
        >>> import numpy as np
        >>> from bayesgmm import GMMParams
        >>> params = GMMParams.from_covariances([1.0], [[0.0, 1.0]], [[[1.0, 0.5], [0.5, 2.0]]])
        >>> np.asarray(params.predict_cov([[2.0]], given=[0]))
        array([[[1.75]]])
        """
        self._check_gaussian("conditioning")
        given = _validation.check_given(given, self.n_features)
        X, _ = _given_values(X, len(given), name="X", allow_one_row=False)
        _, covariance = _regression(self, given, jnp.asarray(X, dtype=self.dtype), with_covariance=True)
        return covariance

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
        return _sample_batch(self, key, int(n_samples))

    # ------------------------------------------------------------------ helpers

    def _check_gaussian(self, what: str, *, noise: bool = False) -> None:
        """A clear error when ``what`` does not apply to these components (``noise``: it allows a noise component)."""
        if self.noise_weight is not None and not noise:
            raise ValueError(
                f"{what} is implemented for mixtures without a noise component; fit without noise=... for it."
            )
        if self.family != "gaussian":
            raise ValueError(
                f"{what} is implemented for Gaussian components; these are {self.family!r}. Use a mixture "
                "fitted with family='gaussian'."
            )

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
    """Unbatched: (k, n) log joint densities (k + 1 with a noise component, last)."""
    structure = params.structure
    log_joint, _, _ = component_log_joint(
        params,
        log_component_weights(params),
        structure.core.inverse_scale(params.scale),
        structure.core.half_log_det(params.scale, params.n_features),
        X,
    )
    return with_noise(params, log_joint)


def _covariances(params: GMMParams) -> Array:
    return params.structure.core.covariances(params.scale)


def _covariance_matrices(params: GMMParams) -> Array:
    return map_batch(lambda p: p.structure.core.covariance_matrices(p.scale, p.n_components, p.n_features), params)


def _precisions(params: GMMParams) -> Array:
    return params.structure.core.precisions(params.scale)


def _precisions_cholesky(params: GMMParams) -> Array:
    return params.structure.core.precisions_cholesky(params.scale)


_COMPILED_DERIVED = {
    function: jax.jit(function) for function in (_covariances, _covariance_matrices, _precisions, _precisions_cholesky)
}


def _derived(function: Callable[[GMMParams], Array], params: GMMParams) -> Array:
    """A derived parameter: from NumPy leaves as they are (NumPy paths, nothing compiled), else in one
    compiled program per shape (eagerly, each JAX operation compiled as a program of its own: the first
    ``precisions`` of a fit compiled 8 of them, 0.14 s)."""
    if namespace(*jax.tree.leaves(params)) is np:
        return function(params)
    return _COMPILED_DERIVED[function](params)


def log_component_weights(params: GMMParams) -> Array:
    """(k,) ``log π_k`` of the components in the whole mixture: ``log (1 − π_0) π_k`` with a noise component."""
    xp = namespace(params.weights)
    with _quiet_log(xp):
        log_weights = xp.log(params.weights)  # −inf for inactive components (weight 0)
    return log_weights if params.noise_weight is None else log_weights + xp.log1p(-params.noise_weight)


def noise_log_joint(params: GMMParams, observed: Array | None = None) -> Array:
    """``log π_0 − log V``, the noise component's log joint density: () for complete rows, or (c,) for rows
    observed on ``observed`` (c, d) bool only (the box's volume over their observed coordinates)."""
    xp = namespace(params.noise_bounds)
    log_widths = xp.log(params.noise_bounds[1] - params.noise_bounds[0])  # (d,)
    log_volume = xp.sum(log_widths) if observed is None else xp.matmul(observed.astype(log_widths.dtype), log_widths)
    with _quiet_log(xp):
        return xp.log(params.noise_weight) - log_volume


def with_noise(params: GMMParams, log_joint: Array, observed: Array | None = None) -> Array:
    """(k, c) components' log joint densities, with the noise component's as a last row when there is one."""
    if params.noise_weight is None:
        return log_joint
    xp = namespace(log_joint)
    noise = xp.broadcast_to(noise_log_joint(params, observed), log_joint.shape[1:])
    return xp.concatenate([log_joint, noise[None]], axis=0)


def _quiet_log(xp):
    """NumPy's log of a zero weight is −inf on purpose (an inactive component, a noise weight of 0)."""
    return np.errstate(divide="ignore") if xp is np else contextlib.nullcontext()


def observed_log_density(params: GMMParams):
    """The family's log density of ``p`` observed coordinates from their Mahalanobis distances,
    without ``log |Σ_oo|^{1/2}``: ``(sq_norm (k, c), n_observed (c,)) -> (k, c)`` (missing values)."""
    family = params.family_functions
    if family is GAUSSIAN:
        return gaussian_log_density
    return lambda sq_norm, n_observed: family.log_density(sq_norm, n_observed, params.dof)


def component_log_joint(params: GMMParams, log_weights, inverse, half_log_det, x):
    """``log π_k + log f_k(x_i)`` (k, c) for the family's density, the whitened rows (k, d, c) and
    ``δ²`` (k, c), from the scale's inverse and ``log |Σ_k|^{1/2}`` (``covariance.whitened_log_joint``,
    whose Gaussian densities are kept as they are for the Gaussian family)."""
    log_joint, y, sq_norm = whitened_log_joint(params.structure, log_weights, params.means, inverse, half_log_det, x)
    family = params.family_functions
    if family is not GAUSSIAN:
        log_density = family.log_density(sq_norm, x.shape[-1], params.dof) - jnp.reshape(half_log_det, (-1, 1))
        log_joint = log_weights[:, None] + log_density
    return log_joint, y, sq_norm


def _sample(params: GMMParams, key: Array, n_samples: int) -> tuple[Array, Array]:
    key_labels, key_noise = jax.random.split(key)
    labels = jax.random.categorical(key_labels, jnp.log(params.weights), shape=(n_samples,))
    noise = jax.random.normal(key_noise, (n_samples, params.n_features), dtype=params.dtype)
    mixing = params.family_functions.mixing
    if mixing is not None:  # a scale mixture of Gaussians: x = μ + L z / √u
        key_mixing = jax.random.fold_in(key_noise, 1)
        noise = noise / jnp.sqrt(mixing(key_mixing, params.dof, labels, params.dtype))[:, None]
    X = params.means[labels] + params.structure.core.colour(params.scale, labels, noise)
    if params.noise_weight is not None:  # rows of the noise component: uniform in its box, label −1
        key_background, key_uniform = jax.random.split(jax.random.fold_in(key_labels, 1))
        background = jax.random.bernoulli(key_background, params.noise_weight, (n_samples,))
        low, high = params.noise_bounds[0], params.noise_bounds[1]
        uniform = low + (high - low) * jax.random.uniform(key_uniform, X.shape, dtype=params.dtype)
        X = jnp.where(background[:, None], uniform, X)
        labels = jnp.where(background, -1, labels)
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


def _given_values(values, n_given: int, *, name: str, allow_one_row: bool):
    """The values of the given coordinates as (n, g), and whether one row came 1-D; under ``jit`` only the shape."""
    if not isinstance(values, jax.core.Tracer):
        return _validation.check_given_values(values, n_given, name=name, allow_one_row=allow_one_row)
    one_row = allow_one_row and values.ndim == 1
    values = values[None] if one_row else values
    if values.ndim != 2 or values.shape[1] != n_given:
        raise ValueError(f"{name} must have shape (n, {n_given}), one column per given coordinate, got {values.shape}.")
    return values, one_row


def _other(n_features: int, given: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(j for j in range(n_features) if j not in given)


@functools.partial(jax.jit, static_argnames="given")
def _condition(params: GMMParams, given: tuple[int, ...], values: Array) -> GMMParams:
    other = _other(params.n_features, given)
    result = get_structure(conditional_type(params.covariance_type))

    def unbatched(p: GMMParams) -> GMMParams:
        log_joint, means, covariances = condition_given(
            jnp.log(p.weights), p.means, p.covariance_matrices, given, other, values
        )
        scale = result.core.from_covariances(result.core.layout_from_matrices(covariances))
        n = values.shape[0]
        return GMMParams(
            jax.nn.softmax(log_joint, axis=0).T,  # (n, k)
            jnp.swapaxes(means, 0, 1),  # (n, k, o)
            jnp.broadcast_to(scale, (n,) + scale.shape),
            result.name,
        )

    return map_batch(unbatched, params)


@functools.partial(jax.jit, static_argnames=("given", "with_covariance"))
def _regression(params: GMMParams, given: tuple[int, ...], X: Array, with_covariance: bool):
    """The conditional mixture's mean (..., n, o) and, with ``with_covariance``, covariance (..., n, o, o)."""
    other = _other(params.n_features, given)

    def unbatched(p: GMMParams):
        log_joint, means, covariances = condition_given(
            jnp.log(p.weights), p.means, p.covariance_matrices, given, other, X
        )
        weights = jax.nn.softmax(log_joint, axis=0)  # (k, n)
        mean = jnp.einsum("kn,kno->no", weights, means, precision="highest")
        if not with_covariance:
            return mean, None
        spread = means - mean[None]  # (k, n, o)  m_k − m
        within = jnp.einsum("kn,kop->nop", weights, covariances, precision="highest")
        between = jnp.einsum("kn,kno,knp->nop", weights, spread, spread, precision="highest")
        return mean, within + between

    return map_batch(unbatched, params)


# jax.nn's logsumexp and softmax are not jitted as a whole: called eagerly, each compiles a dozen programs
_logsumexp_rows = jax.jit(lambda log_joint: jax.nn.logsumexp(log_joint, axis=-1))
_softmax_rows = jax.jit(lambda log_joint: jax.nn.softmax(log_joint, axis=-1))


@jax.jit
def _penalised(log_prob: Array, penalty) -> Array:
    """(...) ``−2 log L + penalty`` from the rows' log densities (..., n): BIC's and AIC's."""
    return -2.0 * log_prob.shape[-1] * jnp.mean(log_prob, axis=-1) + penalty


@jax.jit
def _icl(log_joint: Array, penalty) -> Array:
    """(...) ICL, ``BIC − 2 Σ_i max_k log r_ik``, from the log joint densities (..., n, k) and BIC's penalty."""
    log_prob = jax.nn.logsumexp(log_joint, axis=-1)
    log_resp = log_joint - log_prob[..., None]
    return _penalised(log_prob, penalty) - 2.0 * jnp.sum(jnp.max(log_resp, axis=-1), axis=-1)


@functools.partial(jax.jit, static_argnames="n_samples")  # eagerly: 20 random and indexing programs
def _sample_batch(params: GMMParams, key: Array, n_samples: int) -> tuple[Array, Array]:
    """``n_samples`` rows from each mixture of the batch, each from its own split of ``key``."""
    keys = jax.random.split(key, math.prod(params.batch_shape)).reshape(params.batch_shape)
    return map_batch(lambda p, k: _sample(p, k, n_samples), params, keys)


@jax.jit  # one compiled program per shape: eagerly, its operations compiled one by one (40, 0.5 s on a first call)
def _log_joint_rows(params: GMMParams, X: Array) -> Array:
    """(..., n, k) log joint densities ``log π_k + log f_k(x_i)`` (and the noise component's, last)."""
    return map_batch(lambda p: _log_joint(p, X).T, params)


@jax.jit  # one compiled program per shape, not a retrace of the chunk loop at every call
def _log_joint_errors(params: GMMParams, X: Array, errors: Array) -> Array:
    """(..., n, k) log joint densities of noisy rows: ``log π_k + log N(x_i | μ_k, Σ_k + S_i)``."""

    def unbatched(p: GMMParams) -> Array:
        log_joint = log_joint_with_errors(log_component_weights(p), p.means, p.covariance_matrices, X, errors)
        return with_noise(p, log_joint, ~jnp.isnan(X)).T

    return map_batch(unbatched, params)


@jax.jit  # one compiled program per shape, not a retrace of the chunk loop at every call
def _impute(params: GMMParams, X: Array) -> Array:
    def unbatched(p: GMMParams) -> Array:
        return impute_rows(jnp.log(p.weights), p.means, p.covariance_matrices, X, observed_log_density(p))

    return map_batch(unbatched, params)
