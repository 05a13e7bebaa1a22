"""scikit-learn estimators backed by bayesgmm (optional: ``pip install 'bayesgmm[sklearn]'``).

- ``GaussianMixture``: a drop-in for ``sklearn.mixture.GaussianMixture`` (same parameters,
  defaults, fitted attributes, methods, errors and warnings), fitted by ``bayesgmm.em_fit``;
  also ``partial_fit``, online EM over minibatches (``bayesgmm.em_partial_fit``).
- ``BayesianGMM``: the same methods backed by ``bayesgmm.infer`` (NUTS, SVI or MAP); the
  fitted ``posterior_`` gives posterior-predictive densities and averaged responsibilities.

Both compute in float64 whatever the caller's JAX setting (inside ``jax.enable_x64(True)``,
a scoped context; the global flag is never changed) and store NumPy float64 attributes.

Shapes of the covariance attributes for ``k`` components and ``d`` features:

==========  ====================================================
type        ``covariances_``, ``precisions_``, ``precisions_cholesky_``
==========  ====================================================
full        (k, d, d)
tied        (d, d)
diag        (k, d)
spherical   (k,)
==========  ====================================================
"""

from __future__ import annotations

import functools
import math
import numbers
import time
import warnings

try:
    from sklearn.base import BaseEstimator, DensityMixin, _fit_context
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.utils import check_array, check_random_state
    from sklearn.utils._param_validation import Interval, StrOptions
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data
except ImportError as error:  # scikit-learn missing, or older than 1.6 (no validate_data)
    raise ImportError(
        "bayesgmm.GaussianMixture and bayesgmm.BayesianGMM need scikit-learn >= 1.6 "
        f"({error}); install it with: pip install 'bayesgmm[sklearn]'"
    ) from error

import jax
import jax.numpy as jnp
import numpy as np

from bayesgmm import ConvergenceWarning as _EMConvergenceWarning
from bayesgmm import DegenerateFitError, GMMParams, Priors, em_fit, em_partial_fit, infer
from bayesgmm._validation import check_dof
from bayesgmm.covariance import ALL_TYPES, MCLUST_MODELS, get_structure
from bayesgmm.families import FAMILIES, get_family
from bayesgmm.inference import BAYESIAN_TYPES, GUIDES, METHODS

__all__ = ["BayesianGMM", "GaussianMixture"]

# scikit-learn's own wording, kept verbatim so that code matching on it keeps working.
_NOT_CONVERGED_MESSAGE = (
    "Best performing initialization did not converge. "
    "Try different init parameters, or increase max_iter, "
    "tol, or check for degenerate data."
)
_ILL_DEFINED_MESSAGE = (
    "Fitting the mixture model failed because some components have "
    "ill-defined empirical covariance (for instance caused by singleton "
    "or collapsed samples). Try to decrease the number of components, "
    "increase reg_covar, or scale the input data."
)


def _seed_from(random_state) -> int:
    """``em_fit``/``infer``'s integer seed from scikit-learn's ``random_state``.

    An int is used as is; ``None`` (NumPy's global generator) or a ``RandomState`` gives one
    draw, so consecutive fits with a shared ``RandomState`` differ, as in scikit-learn.
    """
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def _inverse_in_layout(matrices, covariance_type: str) -> np.ndarray:
    """Inverse of SPD covariances or precisions in scikit-learn's layout for the type, by Cholesky.

    ``structure.core.from_covariances`` factors ``A = L Lᵀ`` (or takes ``√a``) and
    ``structure.core.precisions`` returns ``(L Lᵀ)⁻¹`` from triangular solves (or ``1/a``).
    """
    structure = get_structure(covariance_type)
    with jax.enable_x64(True):
        inverse = structure.core.precisions(structure.core.from_covariances(jnp.asarray(matrices, jnp.float64)))
        return np.asarray(inverse, dtype=np.float64)


def _padded_length(n_rows: int) -> int:
    """Rows padded to one of about 8 sizes per doubling (at most 1/8 extra), at least 64.

    Rows are independent in prediction and sampling, so padding them lets one compiled
    program serve many batch sizes instead of compiling for every new ``n``.
    """
    if n_rows <= 64:
        return 64
    step = 1 << (n_rows.bit_length() - 4)
    return -(-n_rows // step) * step


def _pad_rows(array: np.ndarray) -> np.ndarray:
    return np.pad(array, [(0, _padded_length(array.shape[0]) - array.shape[0])] + [(0, 0)] * (array.ndim - 1))


@functools.partial(jax.jit, static_argnames=("covariance_type", "family"))
def _log_prob_and_log_resp(weights, means, covariances, dof, X, covariance_type, family):
    """``log p(x_i)`` (n,) and log responsibilities (n, k) of the mixture given by attributes
    (``dof`` (k,) for Student-t components, None for Gaussian ones)."""
    params = GMMParams.from_covariances(weights, means, covariances, covariance_type, family=family, dof=dof)
    log_joint = params.log_joint(X)
    log_prob = jax.nn.logsumexp(log_joint, axis=-1)
    return log_prob, log_joint - log_prob[:, None]


@jax.jit  # one program for the three: the properties' own programs, one each, cost 0.035 s more on a first fit
def _derived_attributes(params: GMMParams):
    """``covariances_``, ``precisions_`` and ``precisions_cholesky_`` of fitted parameters."""
    return params.covariances, params.precisions, params.precisions_cholesky


@functools.partial(jax.jit, static_argnames="covariance_type")
def _coloured_noise(covariances, labels, noise, covariance_type):
    """``L_{label_i} z_i`` for each row: standard normal ``noise`` (n, d) given each label's covariance."""
    structure = get_structure(covariance_type)
    return structure.core.colour(structure.core.from_covariances(covariances), labels, noise)


def _checked_sample_weight(sample_weight, X: np.ndarray) -> np.ndarray | None:
    """``fit``'s ``sample_weight`` as non-negative float64 (n_samples,), or None."""
    if sample_weight is None:
        return None
    return _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)


# ----------------------------------------------------------------------------- initial parameters


def _check_shape(param: np.ndarray, expected: tuple, name: str) -> None:
    if param.shape != expected:
        raise ValueError(f"The parameter '{name}' should have the shape of {expected}, but got {param.shape}")


def _check_weights(weights, n_components: int) -> np.ndarray:
    weights = check_array(weights, dtype=[np.float64, np.float32], ensure_2d=False)
    _check_shape(weights, (n_components,), "weights")
    if np.any(weights < 0.0) or np.any(weights > 1.0):
        raise ValueError(
            "The parameter 'weights' should be in the range [0, 1], but got "
            f"max value {np.max(weights):.5f}, min value {np.min(weights):.5f}"
        )
    atol = 1e-6 if weights.dtype == np.float32 else 1e-8
    if not np.allclose(abs(1.0 - float(np.sum(weights))), 0.0, atol=atol):
        raise ValueError(f"The parameter 'weights' should be normalized, but got sum(weights) = {np.sum(weights):.5f}")
    return weights.astype(np.float64)


def _check_means(means, n_components: int, n_features: int) -> np.ndarray:
    means = check_array(means, dtype=[np.float64, np.float32], ensure_2d=False)
    _check_shape(means, (n_components, n_features), "means")
    return means.astype(np.float64)


def _check_positive(precisions: np.ndarray, covariance_type: str) -> None:
    if np.any(precisions <= 0.0):
        raise ValueError(f"'{covariance_type} precision' should be positive")


def _check_symmetric_positive_definite(precisions: np.ndarray, covariance_type: str) -> None:
    matrices = precisions.reshape((-1,) + precisions.shape[-2:])  # tied (d, d) -> (1, d, d)
    symmetric = np.all(np.isclose(matrices, np.swapaxes(matrices, -1, -2)))
    if not (symmetric and np.all(np.linalg.eigvalsh(matrices) > 0.0)):
        raise ValueError(f"'{covariance_type} precision' should be symmetric, positive-definite")


_PRECISION_CHECKS = {
    "full": _check_symmetric_positive_definite,
    "tied": _check_symmetric_positive_definite,
    "diag": _check_positive,
    "spherical": _check_positive,
}


def _check_precisions(precisions, covariance_type: str, n_components: int, n_features: int) -> np.ndarray:
    """Validate ``precisions_init`` with scikit-learn's messages; return it as float64."""
    precisions = check_array(
        precisions, dtype=[np.float64, np.float32], ensure_2d=False, allow_nd=covariance_type == "full"
    ).astype(np.float64)
    expected = get_structure(covariance_type).core.scale_shape(n_components, n_features)
    _check_shape(precisions, expected, f"{covariance_type} precision")
    _PRECISION_CHECKS[covariance_type](precisions, covariance_type)
    return precisions


# ----------------------------------------------------------------------------- shared base


class _MixtureEstimator(DensityMixin, BaseEstimator):
    """What ``GaussianMixture`` and ``BayesianGMM`` share: checks, evaluation methods, BIC and AIC.

    A subclass fits in ``_fit(X, sample_weight)``, which returns the checked float64 ``X``, and
    evaluates checked float64 rows in ``_score_samples`` (n,), ``_predict_proba`` (n, k) and
    ``_predict`` (n,); ``_sample(n_samples)`` draws ``(X, labels)``. The public methods validate
    their input (fitted, same features as ``fit``) and call these.
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(numbers.Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions(set(ALL_TYPES) | set(MCLUST_MODELS))],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    # ------------------------------------------------------------------ fitting

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return the most probable component of each row of ``X``, shape (n_samples,)."""
        return self._predict(self._fit(X, sample_weight))

    def _validated_for_fit(self, X) -> np.ndarray:
        """``fit``'s ``X`` as float64 (n_samples, n_features), at least 2 and ``n_components`` rows."""
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2).astype(np.float64)
        if X.shape[0] < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components but got "
                f"n_components = {self.n_components}, n_samples = {X.shape[0]}"
            )
        return X

    def _set_fitted_attributes(self, params: GMMParams) -> None:
        """``weights_``, ``means_``, ``covariances_``, ``precisions_``, ``precisions_cholesky_`` (float64)."""
        with jax.enable_x64(True):
            self.weights_ = np.asarray(params.weights, dtype=np.float64)
            self.means_ = np.asarray(params.means, dtype=np.float64)
            covariances, precisions, precisions_cholesky = _derived_attributes(params)
            self.covariances_ = np.asarray(covariances, dtype=np.float64)
            self.precisions_ = np.asarray(precisions, dtype=np.float64)
            self.precisions_cholesky_ = np.asarray(precisions_cholesky, dtype=np.float64)

    # ------------------------------------------------------------------ evaluation

    def _validated(self, X) -> np.ndarray:
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=[np.float64, np.float32]).astype(np.float64)

    def score_samples(self, X):
        """Log density of each row, shape (n_samples,)."""
        return self._score_samples(self._validated(X))

    def score(self, X, y=None):
        """Mean log density per row (float): the mean of ``score_samples``."""
        return float(np.mean(self.score_samples(X)))

    def predict(self, X):
        """Most probable component of each row, shape (n_samples,)."""
        return self._predict(self._validated(X))

    def predict_proba(self, X):
        """Responsibilities, shape (n_samples, n_components); rows sum to one."""
        return self._predict_proba(self._validated(X))

    def sample(self, n_samples=1):
        """Draw rows from the fitted model; ``random_state`` seeds the draws.

        Returns
        -------
        X : ndarray (n_samples, n_features)
        y : ndarray of int (n_samples,)
            The component each row came from.
        """
        check_is_fitted(self)
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"Invalid value for 'n_samples': {n_samples} . The sampling requires at least one sample.")
        return self._sample(int(n_samples))

    def _n_parameters(self) -> int:
        """Free parameters: weights (k − 1), means (k d), covariances (by type) and the family's."""
        k, n_features = self.n_components, self.means_.shape[1]
        covariance = get_structure(self.covariance_type).core.n_parameters(k, n_features)
        return int(k - 1 + k * n_features + covariance + self._n_family_parameters())

    def _n_family_parameters(self) -> int:
        """Parameters of the component family beyond weights, means and covariances (Gaussian: 0)."""
        return 0

    def bic(self, X):
        """Bayesian information criterion ``−2 n score + p log n`` (lower is better)."""
        n = np.shape(X)[0]
        return -2 * self.score(X) * n + self._n_parameters() * math.log(n)

    def aic(self, X):
        """Akaike information criterion ``−2 n score + 2 p`` (lower is better)."""
        return -2 * self.score(X) * np.shape(X)[0] + 2 * self._n_parameters()


# ----------------------------------------------------------------------------- GaussianMixture


class GaussianMixture(_MixtureEstimator):
    """Gaussian mixture fitted by EM on JAX: a drop-in for ``sklearn.mixture.GaussianMixture``.

    Same constructor parameters and defaults, fitted attributes and methods as
    scikit-learn's class, computed by ``bayesgmm.em_fit`` (jitted, float64). From the same
    initial parameters (``weights_init``, ``means_init``, ``precisions_init``) the fit agrees
    with scikit-learn's to float64 round-off; random initialisations use JAX's generator, so
    they differ from scikit-learn's draws for the same ``random_state``.

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    tol : float, default=1e-3
        Stop when the mean log-likelihood changes by less than ``tol``.
    reg_covar : float, default=1e-6
        Added to the covariance diagonal in every M-step.
    max_iter : int, default=100
    n_init : int, default=1
        Restarts, run in one compiled program; the one with the highest final log-likelihood is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
    weights_init : array-like (k,), default=None
    means_init : array-like (k, d), default=None
    precisions_init : array-like, default=None
        Inverse covariances in the layout of the type: full (k, d, d), tied (d, d),
        diag (k, d), spherical (k,).
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation (an int directly; otherwise one draw from the generator)
        and ``sample``.
    warm_start : bool, default=False
        Continue from the previous fit's parameters (``n_init`` is then ignored).
    verbose : int, default=0
        1: restarts and iterations; 2: also the change per iteration and the fit's time.
        EM runs jitted in one call, so the lines are printed after it from the
        log-likelihood history, with the total time rather than per-iteration times.
    verbose_interval : int, default=10
    family : {"gaussian", "student_t"}, default="gaussian"
        The components' distribution (``bayesgmm.em_fit``'s ``family``): "student_t" fits
        multivariate t components, robust to outliers. Then ``covariances_`` are the scale
        matrices ``Σ_k`` (a component's covariance is ``ν_k / (ν_k − 2) Σ_k``), ``score``,
        ``predict``, ``predict_proba`` and ``sample`` use t densities, and ``bic`` and ``aic``
        count the degrees of freedom as parameters.
    dof : None, "shared" or float, default=None
        Student-t degrees of freedom (``family="student_t"`` only): None estimates one per
        component, "shared" one for all, a number > 0 fixes them.

    Attributes
    ----------
    weights_ : ndarray (k,)
    means_ : ndarray (k, d)
    covariances_, precisions_, precisions_cholesky_ : ndarray
        full (k, d, d), tied (d, d), diag (k, d), spherical (k,); ``precisions_cholesky_``
        is scikit-learn's upper-triangular ``U`` with ``precision = U Uᵀ``. For Student-t
        components, of the scale matrices.
    dof_ : ndarray (k,)
        Degrees of freedom of the components; only when ``family="student_t"``.
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Mean log-likelihood before the last M-step (scikit-learn's definition).
    lower_bounds_ : list of float (n_iter_,)
    online_state_ : bayesgmm.OnlineState
        After ``partial_fit``: the online fit's state (``n_steps``, ``rows_seen``...).
    n_features_in_ : int
    feature_names_in_ : ndarray of str (n_features_in_,)
        Only when ``X`` had string column names.

    Notes
    -----
    Differences from scikit-learn: restarts are compared by the log-likelihood of the
    parameters returned (scikit-learn: before the last M-step); ``fit`` accepts
    ``sample_weight``; attributes are float64 even for float32 input; predictions read
    ``weights_``, ``means_`` and ``covariances_`` (scikit-learn: ``precisions_cholesky_``);
    messages that scikit-learn gets wrong (the weights range error swaps its min and max)
    are corrected. A warm-started fit measures its first change from the previous
    ``lower_bound_`` and stops there when it is below ``tol``, as scikit-learn does. A
    warm-started Student-t fit continues from the weights, means and scales, while its
    estimated degrees of freedom start again from ``bayesgmm.families.DOF_START``.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm import GaussianMixture
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> gm = GaussianMixture(n_components=2, random_state=0).fit(X)
    >>> np.sort(gm.means_[:, 0])
    array([ 1., 10.])
    >>> gm.predict([[0, 0], [12, 3]]).tolist() == gm.predict([[1, 2], [10, 2]]).tolist()
    True
    """

    _parameter_constraints: dict = {
        **_MixtureEstimator._parameter_constraints,
        "tol": [Interval(numbers.Real, 0.0, None, closed="left")],
        "reg_covar": [Interval(numbers.Real, 0.0, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 0, None, closed="left")],
        "n_init": [Interval(numbers.Integral, 1, None, closed="left")],
        "init_params": [StrOptions({"kmeans", "random", "random_from_data", "k-means++"})],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
        "warm_start": ["boolean"],
        "verbose_interval": [Interval(numbers.Integral, 1, None, closed="left")],
        "family": [StrOptions(set(FAMILIES))],
        "dof": [None, StrOptions({"shared"}), Interval(numbers.Real, 0.0, None, closed="neither")],
    }

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        family="gaussian",
        dof=None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.family = family
        self.dof = dof

    # ------------------------------------------------------------------ fitting

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None, measurement_error=None):
        """Estimate the parameters with EM.

        Parameters
        ----------
        X : array-like (n_samples, n_features)
        y : ignored
        sample_weight : array-like (n_samples,), optional
            Non-negative row weights, equivalent to repeating rows.
        measurement_error : array-like (n_samples, n_features) or (n_samples, n_features, n_features), optional
            Known Gaussian measurement errors of the rows of ``X``: standard deviations per
            entry, or a covariance matrix per row (``bayesgmm.em_fit``'s ``measurement_error``,
            extreme deconvolution; Gaussian components only). The fitted attributes then
            describe the deconvolved mixture (of the error-free values), which ``score``,
            ``predict`` and ``sample`` evaluate, as for error-free rows.

        Returns
        -------
        self

        Warns
        -----
        sklearn.exceptions.ConvergenceWarning
            When the kept restart did not converge within ``max_iter`` (``max_iter > 0``).
        """
        self._fit(X, sample_weight, measurement_error)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the fit with one batch of rows by online (stepwise) EM (``bayesgmm.em_partial_fit``).

        The first call on an unfitted estimator fits its batch with ``fit`` (EM with the
        estimator's settings), then starts ``em_partial_fit`` from that fit on the same batch;
        later calls (and a call after ``fit``) update the current parameters with their batch:
        the batch's statistics are mixed into running ones with step ``(t + 2)^(−0.6)`` and the
        parameters set to their M-step. ``fit`` starts over.

        Parameters
        ----------
        X : array-like (n_samples, n_features)
            One batch; thousands of rows or more (each call runs one jitted update, compiled
            once per padded batch size).
        y : ignored
        sample_weight : array-like (n_samples,), optional
            Non-negative row weights within the batch.

        Returns
        -------
        self
            With ``online_state_`` (the ``bayesgmm.OnlineState``), the fitted attributes of the
            updated parameters, and ``lower_bound_`` the batch's mean log-likelihood under the
            parameters before the update.
        """
        if self.family != "gaussian":
            raise ValueError(
                f"partial_fit (online EM) updates Gaussian components, not family={self.family!r}; call fit on the "
                "rows seen so far instead."
            )
        if not hasattr(self, "converged_"):
            X = self._fit(X, sample_weight)
            start = None
        else:
            X = self._validated(X)
            start = getattr(self, "online_state_", None)
            if start is not None and (
                start.params.n_components != self.n_components or start.params.covariance_type != self.covariance_type
            ):
                raise ValueError(
                    f"partial_fit continues the online fit of {start.params.n_components} components with "
                    f"covariance_type={start.params.covariance_type!r}, not n_components={self.n_components} and "
                    f"covariance_type={self.covariance_type!r}; call fit to start over, or keep those settings."
                )
        sample_weight = _checked_sample_weight(sample_weight, X)
        if start is None:
            structure = get_structure(self.covariance_type)
            scale = structure.core.from_covariances(np.asarray(self.covariances_, np.float64))
            start = GMMParams(self.weights_, self.means_, np.asarray(scale, np.float64), self.covariance_type)
        try:
            with jax.enable_x64(True):
                state = em_partial_fit(
                    start, X, sample_weight=sample_weight, reg_covar=float(self.reg_covar), degenerate="raise"
                )
                self._set_fitted_attributes(state.params)
                self.lower_bound_ = float(state.log_likelihood)
        except DegenerateFitError as error:
            raise ValueError(f"{_ILL_DEFINED_MESSAGE} (bayesgmm: {error})") from error
        self.online_state_ = state
        return self

    def _fit(self, X, sample_weight, measurement_error=None) -> np.ndarray:
        X = self._validated_for_fit(X)
        check_dof(self.dof, self.family)  # dof without family="student_t" is an error, before any work
        self.__dict__.pop("online_state_", None)  # fit starts over; partial_fit then starts from its result
        n_samples, n_features = X.shape
        k = self.n_components
        weights_init = None if self.weights_init is None else _check_weights(self.weights_init, k)
        means_init = None if self.means_init is None else _check_means(self.means_init, k, n_features)
        covariances_init = None
        if self.precisions_init is not None:
            precisions = _check_precisions(self.precisions_init, self.covariance_type, k, n_features)
            covariances_init = _inverse_in_layout(precisions, self.covariance_type)
        sample_weight = _checked_sample_weight(sample_weight, X)
        fit_options = {} if sample_weight is None else {"sample_weight": sample_weight}
        if measurement_error is not None:  # checked by em_fit, with messages naming the rows
            fit_options["measurement_error"] = measurement_error

        do_init = not (self.warm_start and hasattr(self, "converged_"))
        n_init, max_iter = (self.n_init, self.max_iter) if do_init else (1, self.max_iter)
        previous_lower_bound = -np.inf  # what the first iteration's change is measured from
        converged_at_first = False
        if not do_init:
            weights_init, means_init, covariances_init = self._warm_start_parameters(n_features)
            previous_lower_bound = self.lower_bound_
            if max_iter > 0:
                # scikit-learn measures the first change from the previous fit's lower bound
                # (em_fit from -inf) and stops there when it is below tol: so does this.
                if measurement_error is None:
                    log_prob = self._log_prob_and_log_resp(X)[0]
                else:
                    with jax.enable_x64(True):
                        log_prob = np.asarray(self._fitted_params().log_prob(X, measurement_error=measurement_error))
                first = float(np.average(log_prob, weights=fit_options.get("sample_weight")))
                converged_at_first = abs(first - previous_lower_bound) < self.tol
                max_iter = 1 if converged_at_first else max_iter

        start = time.perf_counter()
        seed = _seed_from(self.random_state)
        result = self._em_fit(X, n_init, max_iter, seed, weights_init, means_init, covariances_init, fit_options)
        elapsed = time.perf_counter() - start
        n_iter = int(result.n_iter)
        lower_bounds = np.asarray(result.log_likelihood_history, dtype=np.float64)[:n_iter]
        changes = np.diff(np.concatenate([[previous_lower_bound], lower_bounds]))  # (n_iter,)
        self._set_fitted_attributes(result.params)
        if self.family == "gaussian":
            self.__dict__.pop("dof_", None)  # from an earlier Student-t fit
        else:
            self.dof_ = np.asarray(result.params.dof, dtype=np.float64)
        self.converged_ = max_iter > 0 and (bool(result.converged) or converged_at_first)
        self.n_iter_ = n_iter
        self.lower_bound_ = lower_bounds[-1] if n_iter > 0 else -np.inf
        self.lower_bounds_ = list(lower_bounds)
        if self.verbose:
            self._print_progress(n_init, changes, elapsed)
        if not self.converged_ and self.max_iter > 0:
            warnings.warn(
                f"{_NOT_CONVERGED_MESSAGE} (bayesgmm: {n_iter} iterations, last change in mean "
                f"log-likelihood {changes[-1]:.3g}, tol={self.tol:g})",
                ConvergenceWarning,
                stacklevel=4,  # the caller of fit / fit_predict
            )
        return X

    def _em_fit(self, X, n_init, max_iter, seed, weights_init, means_init, covariances_init, fit_options):
        try:
            with jax.enable_x64(True), warnings.catch_warnings():
                warnings.simplefilter("ignore", _EMConvergenceWarning)  # re-issued as scikit-learn's class
                return em_fit(
                    X,
                    self.n_components,
                    covariance_type=self.covariance_type,
                    n_init=n_init,
                    init=self.init_params,
                    max_iter=max_iter,
                    tol=float(self.tol),
                    reg_covar=float(self.reg_covar),
                    seed=seed,
                    weights_init=weights_init,
                    means_init=means_init,
                    covariances_init=covariances_init,
                    degenerate="raise",  # scikit-learn's behaviour: a singular covariance is an error
                    family=self.family,
                    dof=self.dof,
                    **fit_options,
                )
        except DegenerateFitError as error:
            raise ValueError(f"{_ILL_DEFINED_MESSAGE} (bayesgmm: {error})") from error

    def _warm_start_parameters(self, n_features: int):
        """The current parameters as em_fit's initial (weights, means, covariances)."""
        expected = get_structure(self.covariance_type).core.scale_shape(self.n_components, n_features)
        if self.means_.shape != (self.n_components, n_features) or self.covariances_.shape != expected:
            raise ValueError(
                f"warm_start=True continues the previous fit (means_ {self.means_.shape}, covariances_ "
                f"{self.covariances_.shape}), which does not match n_components={self.n_components}, "
                f"covariance_type={self.covariance_type!r} and {n_features} features; set warm_start=False "
                "or keep those settings."
            )
        return self.weights_, self.means_, self.covariances_

    def _print_progress(self, n_init: int, changes: np.ndarray, elapsed: float) -> None:
        """scikit-learn's progress lines, printed after the jitted fit from its history."""
        print(f"Initialization {0 if n_init == 1 else f'(best of {n_init}, run batched)'}")
        if self.max_iter == 0:
            return
        for iteration in range(self.verbose_interval, self.n_iter_ + 1, self.verbose_interval):
            if self.verbose == 1:
                print(f"  Iteration {iteration}")
            else:
                print(f"  Iteration {iteration}\t ll change {changes[iteration - 1]:.5f}")
        status = "converged" if self.converged_ else "did not converge"
        if self.verbose == 1:
            print(f"Initialization {status}.")
        else:
            print(f"Initialization {status}. time lapse {elapsed:.5f}s\t lower bound {self.lower_bound_:.5f}.")

    # ------------------------------------------------------------------ evaluation

    def _n_family_parameters(self) -> int:
        """Student-t: k degrees of freedom, 1 when shared, 0 when fixed."""
        dof_mode, _ = check_dof(self.dof, self.family)
        return get_family(self.family).n_parameters(self.n_components, dof_mode)

    def _log_prob_and_log_resp(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``log p(x_i)`` (n,) and log responsibilities (n, k) from the fitted attributes."""
        n_rows = X.shape[0]
        with jax.enable_x64(True):
            log_prob, log_resp = _log_prob_and_log_resp(
                jnp.asarray(self.weights_, jnp.float64),
                jnp.asarray(self.means_, jnp.float64),
                jnp.asarray(self.covariances_, jnp.float64),
                self._fitted_dof(),
                jnp.asarray(_pad_rows(X), jnp.float64),
                covariance_type=self.covariance_type,
                family=self.family,
            )
            # sliced on the host: a device array's slice compiles a program per shape
            return np.asarray(log_prob, dtype=np.float64)[:n_rows], np.asarray(log_resp, dtype=np.float64)[:n_rows]

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        return self._log_prob_and_log_resp(X)[0]

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return np.argmax(self._log_prob_and_log_resp(X)[1], axis=1)

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.exp(self._log_prob_and_log_resp(X)[1])

    def _fitted_params(self) -> GMMParams:
        """The fitted attributes as float64 ``GMMParams`` (call inside ``jax.enable_x64(True)``)."""
        dof_mode, _ = check_dof(self.dof, self.family)
        return GMMParams.from_covariances(
            self.weights_,
            self.means_,
            self.covariances_,
            self.covariance_type,
            family=self.family,
            dof=self._fitted_dof(),
            dof_mode=dof_mode,
        )

    def _fitted_dof(self):
        """``dof_`` as a float64 array for Student-t components; None for Gaussian ones."""
        if self.family == "gaussian":
            return None
        if not hasattr(self, "dof_"):
            raise ValueError(
                "family='student_t' but this estimator was fitted with Gaussian components (it has no dof_); "
                "fit it again after changing family."
            )
        return jnp.asarray(self.dof_, jnp.float64)

    def _sample(self, n_samples: int):
        """Rows grouped by component (labels sorted), as in scikit-learn.

        A Student-t row is ``μ + L z / √u`` with ``u ~ Gamma(ν/2, rate ν/2)``, its scale mixture.
        """
        rng = check_random_state(self.random_state)
        weights = np.asarray(self.weights_, dtype=np.float64)
        means = np.asarray(self.means_, dtype=np.float64)
        counts = rng.multinomial(n_samples, weights / weights.sum())
        labels = np.repeat(np.arange(weights.shape[0]), counts)
        noise = rng.standard_normal((n_samples, means.shape[1]))
        with jax.enable_x64(True):
            coloured = _coloured_noise(
                jnp.asarray(self.covariances_, jnp.float64),
                jnp.asarray(_pad_rows(labels)),
                jnp.asarray(_pad_rows(noise)),
                covariance_type=self.covariance_type,
            )
        deviations = np.asarray(coloured, dtype=np.float64)[: labels.shape[0]]
        if self.family != "gaussian":
            dof = np.asarray(self._fitted_dof(), dtype=np.float64)[labels]
            deviations = deviations / np.sqrt(rng.gamma(0.5 * dof, 2.0 / dof))[:, None]
        return means[labels] + deviations, labels.astype(np.int64)


# ----------------------------------------------------------------------------- BayesianGMM


class BayesianGMM(_MixtureEstimator):
    """Bayesian Gaussian mixture (``bayesgmm.infer``) with the scikit-learn estimator API.

    Predictions come from the posterior: ``score_samples`` is the posterior-predictive log
    density ``log (1/S) Σ_s p(x | θ_s)``, ``predict_proba`` the responsibilities averaged over
    draws (meaningful because every draw is relabelled to the EM fit's components), ``bic`` and
    ``aic`` use that posterior-predictive ``score`` in place of the maximum, and ``sample`` draws
    each row from a posterior draw chosen at random.

    Parameters
    ----------
    n_components : int, default=1
    method : {"nuts", "svi", "map"}, default="nuts"
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    prior : bayesgmm.Priors, default=None
        ``None``: the defaults of ``bayesgmm.Priors``.
    num_warmup, num_samples, num_chains : int, default=500, 1000, 4
        NUTS settings (``num_samples`` is also the number of SVI draws from the guide).
    num_steps : int, default=5000
        SVI/MAP optimisation steps.
    guide : {"normal", "multivariate_normal", "lowrank_multivariate_normal"}, default="normal"
    random_state : int, RandomState instance or None, default=None
        Seeds the inference (an int directly; otherwise one draw) and ``sample``.
    verbose : int, default=0
        Non-zero shows NUTS progress.

    Attributes
    ----------
    posterior_ : bayesgmm.Posterior
        Draws with (chain, draw) axes, ``to_arviz()``, ``summary()``.
    weights_ : ndarray (k,)
        Posterior mean (renormalised).
    means_ : ndarray (k, d)
        Posterior mean.
    covariances_ : ndarray
        Posterior mean of the covariances: full (k, d, d), tied (d, d), diag (k, d),
        spherical (k,).
    precisions_, precisions_cholesky_ : ndarray
        Of ``covariances_`` (not posterior means of precisions).
    n_features_in_ : int
    feature_names_in_ : ndarray of str (n_features_in_,)

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm import BayesianGMM
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-4, 1, (100, 2)), rng.normal(4, 1, (100, 2))])
    >>> model = BayesianGMM(2, method="map", num_steps=200, random_state=0).fit(X)  # doctest: +SKIP
    >>> np.round(np.sort(model.means_[:, 0]))  # doctest: +SKIP
    array([-4.,  4.])
    """

    _parameter_constraints: dict = {
        **_MixtureEstimator._parameter_constraints,
        "method": [StrOptions(set(METHODS))],
        "prior": [Priors, None],
        "num_warmup": [Interval(numbers.Integral, 1, None, closed="left")],
        "num_samples": [Interval(numbers.Integral, 1, None, closed="left")],
        "num_chains": [Interval(numbers.Integral, 1, None, closed="left")],
        "num_steps": [Interval(numbers.Integral, 1, None, closed="left")],
        "guide": [StrOptions(set(GUIDES))],
        "covariance_type": [StrOptions(set(BAYESIAN_TYPES) | {"VVV", "EEE", "VVI", "VII"})],
    }

    def __init__(
        self,
        n_components=1,
        *,
        method="nuts",
        covariance_type="full",
        prior=None,
        num_warmup=500,
        num_samples=1000,
        num_chains=4,
        num_steps=5000,
        guide="normal",
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.method = method
        self.covariance_type = covariance_type
        self.prior = prior
        self.num_warmup = num_warmup
        self.num_samples = num_samples
        self.num_chains = num_chains
        self.num_steps = num_steps
        self.guide = guide
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None):
        """Run the inference; sets ``posterior_`` and the posterior-mean attributes. Returns self.

        ``sample_weight`` (n_samples,), non-negative: row i's log-likelihood counts ``w_i``
        times (``bayesgmm.infer``'s ``sample_weight``).
        """
        self._fit(X, sample_weight)
        return self

    def _fit(self, X, sample_weight=None) -> np.ndarray:
        X = self._validated_for_fit(X)
        sample_weight = _checked_sample_weight(sample_weight, X)
        with jax.enable_x64(True):
            posterior = infer(
                X,
                self.n_components,
                method=self.method,
                covariance_type=self.covariance_type,
                prior=self.prior,
                num_warmup=self.num_warmup,
                num_samples=self.num_samples,
                num_chains=self.num_chains,
                num_steps=self.num_steps,
                guide=self.guide,
                seed=_seed_from(self.random_state),
                progress_bar=bool(self.verbose),
                sample_weight=sample_weight,
            )
            if hasattr(self, "feature_names_in_"):
                posterior.feature_names = [str(name) for name in self.feature_names_in_]
            params = posterior.mean_params()
        self._set_fitted_attributes(params)
        self.posterior_ = posterior
        return X

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        """Posterior-predictive log density ``log (1/S) Σ_s p(x | θ_s)`` of each row."""
        with jax.enable_x64(True):
            return np.asarray(self.posterior_.log_prob(jnp.asarray(X, jnp.float64)), dtype=np.float64)

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Responsibilities averaged over the posterior draws."""
        with jax.enable_x64(True):
            return np.asarray(self.posterior_.predict_proba(jnp.asarray(X, jnp.float64)), dtype=np.float64)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return np.argmax(self._predict_proba(X), axis=1)

    def _sample(self, n_samples: int):
        """Posterior-predictive rows, each from a posterior draw chosen at random, and their components."""
        with jax.enable_x64(True):
            X, labels = self.posterior_.sample(n_samples, seed=_seed_from(self.random_state))
            return np.asarray(X, dtype=np.float64), np.asarray(labels, dtype=np.int64)
