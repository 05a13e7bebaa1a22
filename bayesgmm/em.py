"""Maximum likelihood for Gaussian mixtures by expectation-maximisation, jitted end to end.

Kernels (pure, unjitted, ``vmap``-safe):

- ``e_step(params, chunks, mask)`` -> ``SufficientStatistics``: one pass over the rows in
  chunks (``lax.scan``), accumulating sums; never an (n, k, d) array.
- ``m_step(stats, reference, reg_covar)`` -> ``GMMParams``.

Driver: ``em_fit(X, k, ...)`` validates in Python, then runs one jitted function that
vmaps ``n_init`` restarts, each a ``lax.while_loop`` of E/M steps, and keeps the best.
Semantics follow ``sklearn.mixture.GaussianMixture`` (same stopping rule, same
``reg_covar``, same initialisations), except that ``log_likelihood`` is that of the
parameters returned.
"""

from __future__ import annotations

import functools
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax

from bayesgmm import _validation
from bayesgmm.covariance import get_structure, whitened_log_joint
from bayesgmm.init import INIT_METHODS, initial_assignment
from bayesgmm.params import GMMParams

# Elements of the (k, d, chunk) whitened array per chunk: big enough for efficient
# matrix products, small enough to stay in cache-friendly, bounded memory.
_CHUNK_ELEMENTS = 1 << 20


class ConvergenceWarning(UserWarning):
    """EM stopped at ``max_iter`` before the log-likelihood change fell below ``tol``."""


class SufficientStatistics(NamedTuple):
    """Sums over rows for one set of parameters; they add across chunks and devices.

    Moments are taken in whitened coordinates about the current means,
    ``y_ik = L_k⁻¹ (x_i − μ_k)``.
    """

    counts: Array  # (k,) Σ_i r_ik
    first: Array  # (k, d) Σ_i r_ik y_ik
    second: Array  # full (k, d, d), tied (d, d), diag (k, d), spherical (k,): Σ r y yᵀ (by type)
    log_likelihood: Array  # () Σ_i log p(x_i)


class EMResult(NamedTuple):
    """The outcome of ``em_fit``.

    params : GMMParams
        The fitted parameters (after the last M-step).
    log_likelihood : float
        Mean per-row log-likelihood of ``params``.
    n_iter : int
        Number of EM iterations (M-steps) of the best restart.
    converged : bool
        Whether the best restart stopped because the change fell below ``tol``.
    log_likelihood_history : ndarray (n_iter + 1,)
        Mean log-likelihood of the parameters before each iteration, then of the
        returned parameters (the last entry equals ``log_likelihood``).
    """

    params: GMMParams
    log_likelihood: float
    n_iter: int
    converged: bool
    log_likelihood_history: np.ndarray


# ----------------------------------------------------------------------------- kernels


def chunk_rows(X: Array, chunk_size: int) -> tuple[Array, Array]:
    """Pad ``X (n, d)`` to whole chunks: ``chunks (m, c, d)`` and ``mask (m, c)``."""
    n, d = X.shape
    n_chunks = -(-n // chunk_size)
    padded = jnp.pad(X, ((0, n_chunks * chunk_size - n), (0, 0)))
    mask = (jnp.arange(n_chunks * chunk_size) < n).astype(X.dtype)
    return padded.reshape((n_chunks, chunk_size, d)), mask.reshape((n_chunks, chunk_size))


def _weighted_statistics(structure, resp, y, sq_norm, log_norm) -> SufficientStatistics:
    return SufficientStatistics(
        counts=jnp.sum(resp, axis=1),
        first=jnp.einsum("kc,kdc->kd", resp, y, precision="highest"),
        second=structure.second_moment(resp, y, sq_norm),
        log_likelihood=log_norm,
    )


def _accumulate(chunk_statistics, chunks: Array, mask: Array) -> SufficientStatistics:
    """Sum ``chunk_statistics(x, mask, row_ids, chunk_index)`` over all chunks."""
    n_chunks, chunk_size, _ = chunks.shape

    def step(total, inputs):
        index, x, m = inputs
        stats = chunk_statistics(x, m, index * chunk_size + jnp.arange(chunk_size), index)
        return jax.tree.map(jnp.add, total, stats), None

    shapes = jax.eval_shape(chunk_statistics, chunks[0], mask[0], jnp.arange(chunk_size), 0)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    return lax.scan(step, zeros, (jnp.arange(n_chunks), chunks, mask))[0]


def e_step(params: GMMParams, chunks: Array, mask: Array) -> SufficientStatistics:
    """Responsibility-weighted sufficient statistics of ``params`` over all rows.

    Parameters
    ----------
    params : GMMParams (unbatched)
    chunks : (m, c, d) rows, padded
    mask : (m, c) 1 for real rows, 0 for padding
    """
    structure = params.structure
    log_weights = jnp.log(params.weights)
    inverse = structure.inverse_scale(params.scale)
    half_log_det = structure.half_log_det(params.scale, params.n_features)

    def chunk_statistics(x, m, row_ids, chunk_index):
        log_joint, y, sq_norm = whitened_log_joint(structure, log_weights, params.means, inverse, half_log_det, x)
        log_norm = jax.nn.logsumexp(log_joint, axis=0)
        resp = jnp.exp(log_joint - log_norm) * m
        return _weighted_statistics(structure, resp, y, sq_norm, jnp.sum(log_norm * m))

    return _accumulate(chunk_statistics, chunks, mask)


def m_step(stats: SufficientStatistics, reference: GMMParams, reg_covar) -> GMMParams:
    """New parameters from statistics taken about ``reference``'s means and scale.

    As scikit-learn: ``n_k = Σ r_ik + 10 ε``, ``μ_k = Σ r x / n_k``, covariance about the
    new means divided by ``n_k`` plus ``reg_covar`` on the diagonal, weights ``n_k / Σ n_k``.
    """
    structure = reference.structure
    first, second = structure.unwhiten(stats.first, stats.second, reference.scale)
    nk = stats.counts + 10 * jnp.finfo(stats.counts.dtype).eps
    delta = first / nk[:, None]
    scale = structure.scale_from_moments(stats.counts, nk, first, delta, second, reg_covar)
    return GMMParams(nk / jnp.sum(nk), reference.means + delta, scale, reference.covariance_type)


def _initial_params(key, chunks, mask, *, k, n_samples, covariance_type, init, reg_covar, user_init):
    weights_init, means_init, scale_init = user_init
    if weights_init is not None and means_init is not None and scale_init is not None:
        return GMMParams(weights_init, means_init, scale_init, covariance_type)
    structure = get_structure(covariance_type)
    d = chunks.shape[-1]
    assignment = initial_assignment(init, key, chunks, mask, k, n_samples)
    reference = GMMParams(
        jnp.full((k,), 1.0 / k, chunks.dtype),
        assignment.shift,
        structure.identity_scale(k, d, chunks.dtype),
        covariance_type,
    )

    def chunk_statistics(x, m, row_ids, chunk_index):
        resp = assignment.responsibilities(x, row_ids, chunk_index) * m
        y = structure.whiten(x, reference.means, structure.inverse_scale(reference.scale))
        return _weighted_statistics(structure, resp, y, jnp.sum(y * y, axis=1), jnp.zeros((), x.dtype))

    params = m_step(_accumulate(chunk_statistics, chunks, mask), reference, reg_covar)
    return GMMParams(
        params.weights if weights_init is None else weights_init,
        params.means if means_init is None else means_init,
        params.scale if scale_init is None else scale_init,
        covariance_type,
    )


class _LoopState(NamedTuple):
    params: GMMParams
    log_likelihood: Array  # () of the parameters before the last M-step
    change: Array  # () last change in mean log-likelihood
    n_iter: Array  # () int
    failed: Array  # () bool: a covariance stopped being positive definite
    history: Array  # (max_iter + 1,)


def _all_finite(params: GMMParams) -> Array:
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(params)]))


def _fit_one(key, chunks, mask, tol, reg_covar, user_init, *, k, n_samples, covariance_type, init, max_iter):
    params = _initial_params(
        key,
        chunks,
        mask,
        k=k,
        n_samples=n_samples,
        covariance_type=covariance_type,
        init=init,
        reg_covar=reg_covar,
        user_init=user_init,
    )
    dtype = chunks.dtype

    def body(state: _LoopState) -> _LoopState:
        stats = e_step(state.params, chunks, mask)
        log_likelihood = stats.log_likelihood / n_samples
        new_params = m_step(stats, state.params, reg_covar)
        return _LoopState(
            params=new_params,
            log_likelihood=log_likelihood,
            change=log_likelihood - state.log_likelihood,
            n_iter=state.n_iter + 1,
            failed=~_all_finite(new_params),
            history=state.history.at[state.n_iter].set(log_likelihood),
        )

    def cond(state: _LoopState) -> Array:
        return (state.n_iter < max_iter) & ~(jnp.abs(state.change) < tol) & ~state.failed

    start = _LoopState(
        params=params,
        log_likelihood=jnp.asarray(-jnp.inf, dtype),
        change=jnp.asarray(jnp.inf, dtype),
        n_iter=jnp.asarray(0),
        failed=~_all_finite(params),
        history=jnp.full((max_iter + 1,), jnp.nan, dtype),
    )
    state = lax.while_loop(cond, body, start)
    final = e_step(state.params, chunks, mask).log_likelihood / n_samples
    final = jnp.where(state.failed | ~jnp.isfinite(final), -jnp.inf, final)
    return state._replace(log_likelihood=final, history=state.history.at[state.n_iter].set(final))


@functools.partial(jax.jit, static_argnames=("k", "n_samples", "covariance_type", "init", "max_iter", "chunk_size"))
def _fit_restarts(X, keys, tol, reg_covar, user_init, *, k, n_samples, covariance_type, init, max_iter, chunk_size):
    chunks, mask = chunk_rows(X, chunk_size)
    fit = functools.partial(
        _fit_one, k=k, n_samples=n_samples, covariance_type=covariance_type, init=init, max_iter=max_iter
    )
    states = jax.vmap(fit, in_axes=(0, None, None, None, None, None))(keys, chunks, mask, tol, reg_covar, user_init)
    best = jnp.argmax(states.log_likelihood)
    return jax.tree.map(lambda leaf: leaf[best], states), states.log_likelihood


def default_chunk_size(n_samples: int, k: int, d: int, n_init: int = 1) -> int:
    """Rows per chunk so that the (k, d, rows) whitened array holds about 2**20 elements."""
    rows = _CHUNK_ELEMENTS // max(1, k * d * n_init)
    return int(min(n_samples, max(256, rows)))


def em_fit(
    X,
    k: int,
    *,
    covariance_type: str = "full",
    n_init: int = 1,
    init: str = "kmeans",
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    seed: int | Array = 0,
    weights_init=None,
    means_init=None,
    covariances_init=None,
    chunk_size: int | None = None,
) -> EMResult:
    """Fit a Gaussian mixture by maximum likelihood with EM.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Data; lists, int/float arrays and pandas DataFrames are accepted.
    k : int
        Number of components, ``1 <= k <= n_samples``.
    covariance_type : {"full", "tied", "diag", "spherical"}
        Covariance structure; shapes of the fitted ``covariances`` per type:
        full (k, d, d), tied (d, d), diag (k, d), spherical (k,).
    n_init : int
        Restarts, run batched with ``vmap``; the one with the highest final
        log-likelihood is returned.
    init : {"kmeans", "k-means++", "random", "random_from_data"}
        "kmeans" is k-means++ seeding followed by Lloyd iterations.
    max_iter : int
        Maximum number of EM iterations (M-steps) per restart.
    tol : float
        Stop when the mean log-likelihood changes by less than ``tol`` between
        iterations (scikit-learn's rule).
    reg_covar : float
        Added to the covariance diagonal in every M-step.
    seed : int or PRNG key
    weights_init : array-like of shape (k,), optional
    means_init : array-like of shape (k, d), optional
    covariances_init : array-like, optional
        In scikit-learn's layout for ``covariance_type``. When all three are given,
        no random initialisation runs (and restarts would be identical, so one runs).
    chunk_size : int, optional
        Rows per E-step chunk; by default about ``2**20 / (k d n_init)``.

    Returns
    -------
    EMResult
        ``(params, log_likelihood, n_iter, converged, log_likelihood_history)``.

    Raises
    ------
    ValueError
        On invalid input, or when a covariance stops being positive definite
        (increase ``reg_covar``).

    Warns
    -----
    ConvergenceWarning
        When the best restart did not converge within ``max_iter``.

    Notes
    -----
    Computes in float64 when ``jax_enable_x64`` is on, else float32. The data are
    centred (in float64, on the host) before fitting and the means shifted back, so
    float32 keeps its digits on data far from the origin.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm import em_fit
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-3, 1, (200, 2)), rng.normal(3, 1, (200, 2))])
    >>> result = em_fit(X, 2, seed=0)
    >>> bool(result.converged), result.params.means.shape
    (True, (2, 2))
    >>> np.sort(np.round(np.asarray(result.params.means[:, 0])))
    array([-3.,  3.])

    References
    ----------
    A. P. Dempster, N. M. Laird and D. B. Rubin, "Maximum likelihood from incomplete
    data via the EM algorithm", JRSS B 39(1), 1977.
    """
    X = _validation.check_data(X)
    n_samples, n_features = X.shape
    k = _validation.check_n_components(k, n_samples)
    structure = get_structure(covariance_type)
    n_init = _validation.check_int_at_least(n_init, "n_init", 1)
    max_iter = _validation.check_int_at_least(max_iter, "max_iter", 0)
    tol = _validation.check_nonnegative_float(tol, "tol")
    reg_covar = _validation.check_nonnegative_float(reg_covar, "reg_covar")
    init = _validation.check_choice(init, "init", INIT_METHODS)
    weights_init, means_init, covariances_init = _validation.check_initial_parameters(
        weights_init, means_init, covariances_init, k=k, d=n_features, covariance_type=covariance_type
    )
    if chunk_size is not None:
        chunk_size = min(_validation.check_int_at_least(chunk_size, "chunk_size", 1), n_samples)
    if all(value is not None for value in (weights_init, means_init, covariances_init)):
        n_init = 1
    chunk_size = chunk_size or default_chunk_size(n_samples, k, n_features, n_init)

    dtype = jnp.result_type(float)
    center = X.mean(axis=0)
    X_centered = jnp.asarray(X - center, dtype=dtype)
    user_init = (
        None if weights_init is None else jnp.asarray(weights_init, dtype),
        None if means_init is None else jnp.asarray(means_init - center, dtype),
        None if covariances_init is None else structure.from_covariances(jnp.asarray(covariances_init, dtype)),
    )
    key = jax.random.key(seed) if isinstance(seed, (int, np.integer)) else seed
    state, _ = _fit_restarts(  # the second value: every restart's final log-likelihood
        X_centered,
        jax.random.split(key, n_init),
        jnp.asarray(tol, dtype),
        jnp.asarray(reg_covar, dtype),
        user_init,
        k=k,
        n_samples=n_samples,
        covariance_type=covariance_type,
        init=init,
        max_iter=max_iter,
        chunk_size=chunk_size,
    )
    if bool(state.failed) or not np.isfinite(float(state.log_likelihood)):
        raise ValueError(
            "Fitting the mixture failed: a component's covariance stopped being positive "
            "definite (for instance a component collapsed onto a single point or onto "
            f"duplicate rows). Increase reg_covar (now {reg_covar:g}), use fewer components "
            f"(now {k}), or use a constrained covariance_type such as 'diag'."
        )
    n_iter = int(state.n_iter)
    converged = bool(jnp.abs(state.change) < tol)
    if not converged and max_iter > 0:
        warnings.warn(
            f"EM did not converge in max_iter={max_iter} iterations: the last change in mean "
            f"log-likelihood was {float(state.change):.3g} (tol={tol:g}). Increase max_iter or "
            "tol, or try other initialisations (n_init, init).",
            ConvergenceWarning,
            stacklevel=2,
        )
    params = state.params
    params = GMMParams(params.weights, params.means + jnp.asarray(center, dtype), params.scale, covariance_type)
    history = np.asarray(state.history)[: n_iter + 1]
    return EMResult(params, float(state.log_likelihood), n_iter, converged, history)
