"""Bootstrap inference for a fitted mixture, and the bootstrap likelihood-ratio test for its number of components.

- ``bootstrap(X, params, n_boot=999)``: mclust's ``MclustBootstrap``. Each replicate refits EM
  started from ``params`` on the rows resampled with replacement (nonparametric: multinomial
  counts as row weights) or on rows simulated from ``params`` (parametric); the replicates are
  relabelled to ``params``' components (optimal assignment on the means); standard errors and
  percentile intervals of the weights, means and covariances follow.
- ``bootstrap_lrt(X, k, covariance_type, n_boot=999)``: mclust's ``mclustBootstrapLRT``. The
  statistic ``LRTS = 2 (log L_{k+1} − log L_k)`` of the fits to ``X``, and its distribution
  under the ``k``-component fit by the parametric bootstrap: rows simulated from that fit,
  refitted with ``k`` and ``k + 1`` components started from the fits to ``X``.

Every replicate of one call runs in one compiled program (``bayesgmm.em.refit``: mapped on CPU,
vmapped on accelerators).
"""

from __future__ import annotations

import numbers
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayesgmm import _validation
from bayesgmm._errors import ArgumentTypeError, ConvergenceWarning
from bayesgmm.covariance import get_structure
from bayesgmm.em import EMConfig, EMResult, compute_dtype, fit_groups, prepare_data, refit, start_draws
from bayesgmm.inference import relabel
from bayesgmm.params import GMMParams

TYPES = ("nonparametric", "parametric")


class ParameterSummary(NamedTuple):
    """One parameter's bootstrap distribution, its shape ``S`` that of the parameter.

    estimate : (*S) the value in the bootstrapped fit
    se : (*S) standard error: the replicates' standard deviation (``ddof=1``, as mclust's)
    lower, upper : (*S) the percentile interval: the replicates' ``(1 − level) / 2`` and
        ``(1 + level) / 2`` quantiles (linear interpolation, R's default type 7, as mclust's)
    replicates : (n_valid, *S) every replicate's value, relabelled to the fit's components
    """

    estimate: np.ndarray
    se: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    replicates: np.ndarray


class Bootstrap(NamedTuple):
    """Result of ``bootstrap``.

    weights : ParameterSummary, shapes (k,)
    means : ParameterSummary, shapes (k, d)
    covariances : ParameterSummary, in scikit-learn's layout for the covariance type: full
        (k, d, d), tied (d, d), diag (k, d), spherical (k,)
    replicates : GMMParams with a leading (n_valid,) axis, relabelled to the fit's components
    log_likelihood : (n_valid,) each replicate's mean log-likelihood per row of its resample
    converged : (n_valid,) bool, each replicate's EM stopped by ``tol`` within ``max_iter``
    level : float, the intervals' coverage
    type : "nonparametric" or "parametric"
    n_boot : int, replicates asked for
    n_failed : int, replicates whose EM failed (left out: ``n_valid = n_boot − n_failed``)
    """

    weights: ParameterSummary
    means: ParameterSummary
    covariances: ParameterSummary
    replicates: GMMParams
    log_likelihood: np.ndarray
    converged: np.ndarray
    level: float
    type: str
    n_boot: int
    n_failed: int


class BootstrapLRT(NamedTuple):
    """Result of ``bootstrap_lrt``: one test of ``k`` against ``k + 1`` components per entry of ``ks``.

    ks : (m,) int, the numbers of components under the null hypothesis
    covariance_type : str
    statistic : (m,) the observed ``LRTS = 2 (log L_{k+1} − log L_k)`` (total log-likelihoods of the fits to X)
    replicates : (n_boot, m) the statistic on each parametric bootstrap sample (NaN where a refit failed)
    p_values : (m,) ``(1 + #{replicates >= statistic}) / (n_valid + 1)``, mclust's
    fits : dict[int, EMResult], the fits to X for every k in ``ks`` and ``ks + 1``
    n_boot : int
    """

    ks: np.ndarray
    covariance_type: str
    statistic: np.ndarray
    replicates: np.ndarray
    p_values: np.ndarray
    fits: dict
    n_boot: int


def bootstrap(
    X,
    params,
    n_boot: int = 999,
    *,
    type: str = "nonparametric",
    level: float = 0.95,
    seed: int = 0,
    max_iter: int = 1000,
    tol: float = 1e-5,
    reg_covar: float = 1e-6,
) -> Bootstrap:
    """Bootstrap standard errors and percentile intervals of a fitted mixture's parameters.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The data ``params`` were fitted to (complete rows, in memory).
    params : GMMParams or EMResult
        The fit (one, not a batch): each replicate's EM starts from it, and the replicates'
        components are relabelled to its components (optimal assignment on the means, as
        posterior draws are; components with nearly equal means are told apart by their means
        only).
    n_boot : int
        Number of replicates (>= 2), all fitted in one compiled program.
    type : {"nonparametric", "parametric"}
        "nonparametric" (mclust's "bs"): the ``n_samples`` rows resampled with replacement,
        passed to EM as multinomial counts (``sample_weight``). "parametric" (mclust's "pb"):
        ``n_samples`` rows simulated from ``params``.
    level : float
        Coverage of the percentile intervals, in (0, 1).
    seed : int
    max_iter, tol, reg_covar
        As in ``em_fit``, for every replicate. The replicates start at the fit, so a loose
        ``tol`` would stop them near it and understate the spread: the default is ``1e-5``.

    Returns
    -------
    Bootstrap

    Examples
    --------
    >>> import numpy as np
    >>> import bayesgmm
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-3, 1, (200, 1)), rng.normal(3, 1, (300, 1))])
    >>> fit = bayesgmm.em_fit(X, 2, seed=0)
    >>> boot = bayesgmm.bootstrap(X, fit.params, n_boot=99, seed=0)
    >>> boot.means.se.shape, boot.means.lower.shape
    ((2, 1), (2, 1))
    >>> bool(np.all(boot.means.se < 0.1))  # about 1/sqrt(200) and 1/sqrt(300)
    True

    References
    ----------
    B. Efron and R. J. Tibshirani, "An Introduction to the Bootstrap", Chapman & Hall, 1993.
    K. E. Basford, D. R. Greenway, G. J. McLachlan and D. Peel, "Standard errors of fitted
    component means of normal mixtures", Computational Statistics 12, 1997. L. Scrucca, M. Fop,
    T. B. Murphy and A. E. Raftery, "mclust 5", The R Journal 8(1), 2016.
    """
    params = _check_params(params)
    n_boot = _validation.check_int_at_least(n_boot, "n_boot", 2)
    type = _validation.check_choice(type, "type", TYPES)
    level = _check_probability(level, "level")
    seed = _check_seed(seed)
    config = EMConfig.validated(covariance_type=params.covariance_type, max_iter=max_iter, tol=tol, reg_covar=reg_covar)
    data = prepare_data(X, dtype=jnp.result_type(float), stream=False)
    _check_features(params, data.n_features)
    _validation.check_n_components(params.n_components, data.n_positive)
    n_samples = data.n_positive
    if type == "nonparametric":
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(n_samples, np.full(n_samples, 1.0 / n_samples), size=n_boot)
        fits = refit(data, params, config, weights=counts)
    else:
        rows = _simulate(params, n_boot, n_samples, jax.random.key(seed))
        fits = refit(data, params, config, rows=rows)
    _warn_unconverged(fits, config, "bootstrap replicates")
    valid = ~fits.failed
    if not np.any(valid):
        raise ValueError(
            f"EM failed on all {n_boot} bootstrap replicates (covariances that stopped being positive definite). "
            "Increase reg_covar, or bootstrap a fit with fewer components or a constrained covariance_type."
        )
    replicates = jax.tree.map(lambda leaf: leaf[valid], fits.params)
    replicates, _ = relabel(replicates, np.asarray(params.means, np.float64))
    replicates = jax.tree.map(np.asarray, replicates)
    quantiles = ((1.0 - level) / 2, (1.0 + level) / 2)
    return Bootstrap(
        weights=_summary(params.weights, replicates.weights, quantiles),
        means=_summary(params.means, replicates.means, quantiles),
        covariances=_summary(params.covariances, np.asarray(replicates.covariances), quantiles),
        replicates=replicates,
        log_likelihood=fits.log_likelihood[valid],
        converged=fits.converged[valid],
        level=level,
        type=type,
        n_boot=n_boot,
        n_failed=int(np.sum(fits.failed)),
    )


def bootstrap_lrt(
    X,
    k: int = 1,
    covariance_type: str = "full",
    n_boot: int = 999,
    *,
    max_k: int | None = None,
    level: float = 0.05,
    seed: int = 0,
    init: str = "hierarchical",
    n_init: int = 1,
    max_iter: int = 1000,
    tol: float = 1e-5,
    reg_covar: float = 1e-6,
) -> BootstrapLRT:
    """The bootstrap likelihood-ratio test of ``k`` against ``k + 1`` components (mclust's ``mclustBootstrapLRT``).

    The statistic is ``LRTS = 2 (log L_{k+1} − log L_k)``, with ``log L`` the total
    log-likelihood of the maximum-likelihood fit to ``X``. Its null distribution is not the
    chi-squared of regular models (the null sits on the boundary of the larger model), so it is
    estimated by the parametric bootstrap: ``n_boot`` samples of ``n_samples`` rows simulated
    from the ``k``-component fit, each refitted with ``k`` and with ``k + 1`` components (EM
    started from the fits to ``X``, as mclust does). The p-value is
    ``(1 + #{LRTS_b >= LRTS}) / (n_boot + 1)``, never below ``1 / (n_boot + 1)``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    k : int
        Components under the null hypothesis (the first one tested, with ``max_k``).
    covariance_type : {"full", "tied", "diag", "spherical"}
        mclust's VVV, EEE, VVI and VII.
    n_boot : int
        Bootstrap samples per test; the replicates of one test run in one compiled program
        per number of components.
    max_k : int, optional
        Test ``k`` vs ``k + 1``, ``k + 1`` vs ``k + 2``, ..., up to ``max_k`` vs ``max_k + 1``,
        stopping after the first p-value above ``level`` (mclust's sequential procedure;
        ``level=1`` runs every test). By default only ``k`` vs ``k + 1``.
    level : float
        Significance level that stops the sequence (with ``max_k``).
    seed : int
    init, n_init, max_iter, tol, reg_covar
        As in ``em_fit``, for the fits to ``X`` (by default mclust's hierarchical start, as
        ``select``) and, except ``init`` and ``n_init``, for the bootstrap refits.

    Returns
    -------
    BootstrapLRT

    Examples
    --------
    >>> import numpy as np
    >>> import bayesgmm
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-3, 1, (100, 1)), rng.normal(3, 1, (100, 1))])
    >>> test = bayesgmm.bootstrap_lrt(X, 1, "full", n_boot=19, seed=0)
    >>> float(test.p_values[0])  # no bootstrap statistic reaches the observed one: 1 / (19 + 1)
    0.05

    References
    ----------
    G. J. McLachlan, "On bootstrapping the likelihood ratio test statistic for the number of
    components in a normal mixture", Applied Statistics 36(3), 1987. L. Scrucca, M. Fop,
    T. B. Murphy and A. E. Raftery, "mclust 5", The R Journal 8(1), 2016.
    """
    get_structure(covariance_type)
    k = _validation.check_int_at_least(k, "k", 1)
    last = k if max_k is None else _validation.check_int_at_least(max_k, "max_k", k)
    n_boot = _validation.check_int_at_least(n_boot, "n_boot", 1)
    level = _check_probability(level, "level", closed=True)
    seed = _check_seed(seed)
    config = EMConfig.validated(
        covariance_type=covariance_type, n_init=n_init, init=init, max_iter=max_iter, tol=tol, reg_covar=reg_covar
    )
    data = prepare_data(X, dtype=jnp.result_type(float), stream=False)
    ks = list(range(k, last + 2))
    _validation.check_n_components(ks[-1], data.n_positive)
    draws = start_draws(data, ks, config.init, seed, config.n_init, compute_dtype(data))
    grid, notices = fit_groups(data, ks, config, seed=seed, draws=draws)
    for notice in notices:
        warnings.warn(notice.message, notice.category, stacklevel=2)
    fits: dict[int, EMResult] = {n_components: fit.result for n_components, fit in zip(ks, grid)}
    n_samples, total = data.n_positive, data.total_weight
    keys = jax.random.split(jax.random.key(seed), len(ks) - 1)
    tested, statistics, replicates, p_values = [], [], [], []
    for null_k, key in zip(ks[:-1], keys):
        null, alternative = fits[null_k], fits[null_k + 1]
        statistic = 2.0 * total * (alternative.log_likelihood - null.log_likelihood)
        rows = _simulate(null.params, n_boot, n_samples, key)
        under_null = refit(data, null.params, config, rows=rows)
        under_alternative = refit(data, alternative.params, config, rows=rows)
        _warn_unconverged(under_null, config, f"bootstrap refits with k={null_k}")
        _warn_unconverged(under_alternative, config, f"bootstrap refits with k={null_k + 1}")
        boot = 2.0 * n_samples * (under_alternative.log_likelihood - under_null.log_likelihood)
        boot = np.where(under_null.failed | under_alternative.failed, np.nan, boot)
        valid = boot[np.isfinite(boot)]
        p_value = (1.0 + np.sum(valid >= statistic)) / (valid.size + 1.0)
        tested.append(null_k)
        statistics.append(statistic)
        replicates.append(boot)
        p_values.append(p_value)
        if p_value > level:
            break
    used = set(tested) | {null_k + 1 for null_k in tested}
    return BootstrapLRT(
        ks=np.asarray(tested),
        covariance_type=covariance_type,
        statistic=np.asarray(statistics),
        replicates=np.stack(replicates, axis=1),
        p_values=np.asarray(p_values),
        fits={n_components: fit for n_components, fit in fits.items() if n_components in used},
        n_boot=n_boot,
    )


def _simulate(params: GMMParams, n_boot: int, n_samples: int, key) -> np.ndarray:
    """(n_boot, n_samples, d) rows drawn from ``params`` (one draw of ``n_boot · n_samples`` rows, split)."""
    rows, _ = params.sample(n_boot * n_samples, seed=key)
    return np.asarray(rows, np.float64).reshape(n_boot, n_samples, params.n_features)


def _warn_unconverged(fits, config: EMConfig, what: str) -> None:
    """A ``ConvergenceWarning`` (at the caller's caller) when some replicates stopped at ``max_iter``."""
    unconverged = int(np.sum(~fits.converged & ~fits.failed))
    if unconverged and config.max_iter > 0:
        warnings.warn(
            f"EM did not converge within max_iter={config.max_iter} iterations in {unconverged} of "
            f"{fits.converged.size} {what} (tol={config.tol:g}); they are kept as they stopped. Increase max_iter.",
            ConvergenceWarning,
            stacklevel=3,
        )


def _summary(estimate, replicates: np.ndarray, quantiles) -> ParameterSummary:
    replicates = np.asarray(replicates, np.float64)
    se = np.std(replicates, axis=0, ddof=1) if replicates.shape[0] > 1 else np.full(replicates.shape[1:], np.nan)
    lower, upper = np.quantile(replicates, quantiles, axis=0)
    return ParameterSummary(np.asarray(estimate, np.float64), se, lower, upper, replicates)


def _check_params(params) -> GMMParams:
    if isinstance(params, EMResult):
        params = params.params
    if not isinstance(params, GMMParams):
        raise ArgumentTypeError(
            f"params must be a GMMParams (or the EMResult of em_fit), got {type(params).__name__}: pass "
            "bayesgmm.em_fit(X, k).params."
        )
    if params.batch_shape:
        raise ValueError(
            f"params must be one fit, not a batch of them (batch shape {params.batch_shape}): bootstrap one "
            "set of parameters, for instance em_fit(X, k).params."
        )
    if params.family != "gaussian" or params.noise_weight is not None:
        raise ValueError(
            "The bootstrap refits Gaussian mixtures without a noise component; these parameters have "
            f"family={params.family!r}{' and a noise component' if params.noise_weight is not None else ''}. "
            "Bootstrap a fit of em_fit(X, k) with the default family and noise=False."
        )
    return params


def _check_features(params: GMMParams, n_features: int) -> None:
    if params.n_features != n_features:
        raise ValueError(
            f"params have {params.n_features} feature(s) but X has {n_features}: pass the data the parameters "
            "were fitted to."
        )


def _check_probability(value, name: str, *, closed: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be a number in (0, 1), got {value!r}.")
    if not (0.0 < value < 1.0 or (closed and value == 1.0)):
        interval = "(0, 1]" if closed else "(0, 1)"
        raise ValueError(f"{name} must be in {interval}, got {value!r}.")
    return float(value)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ArgumentTypeError(f"seed must be a non-negative integer, got {seed!r}.")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    return int(seed)
