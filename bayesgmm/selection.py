"""Model selection over the number of components, the covariance type and the component family.

- ``select(X, k=range(1, 10), covariance_types=..., criterion="bic", families=("gaussian",))``:
  the mclust-style grid. For each covariance type (and family), the fits for every ``k`` (and
  their ``n_init`` restarts) run as one compiled program (``bayesgmm.em.fit_groups``: equal
  shapes, unused components switched off), then BIC, AIC and ICL rank them; ``criterion="loo"``
  ranks Bayesian fits by PSIS-LOO instead.
- ``loo_compare(X, ks, ...)``: fits ``infer`` for each k and ranks the fits with ArviZ's
  ``compare`` (expected log pointwise predictive density, estimated by Pareto-smoothed
  importance sampling leave-one-out cross-validation).
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from bayesgmm import _validation
from bayesgmm._errors import SpuriousComponentWarning
from bayesgmm.covariance import COVARIANCE_TYPES, MCLUST_MODELS, get_structure
from bayesgmm.em import (
    EMConfig,
    UserInit,
    compute_dtype,
    fit_groups,
    initial_rows,
    noise_start,
    prepare_data,
    start_draws,
)
from bayesgmm.families import FAMILIES
from bayesgmm.inference import infer

CRITERIA = ("bic", "aic", "icl", "loo")


class Selection(NamedTuple):
    """Result of ``select``.

    table : pandas.DataFrame
        One row per (k, covariance_type), in grid order: ``k, covariance_type,
        log_likelihood`` (mean per row), ``n_parameters, bic, aic, icl, n_iter, converged,
        spurious`` (EM criteria, lower is better; NaN, as mclust's NA, where every restart
        ended with a component the data cannot support: never chosen) or, for
        ``criterion="loo"``, ``elpd_loo, se, p_loo`` (higher elpd is better). When ``select``
        was given other ``families`` than ``("gaussian",)``: one row per (k, covariance_type,
        family), with a ``family`` column after ``covariance_type``; likewise a ``noise`` column
        when ``noise`` was a sequence of options.
    criterion : str
    best_k : int
    best_covariance_type : str
    best : EMResult or Posterior
        The chosen fit.
    fits : dict[(int, str), EMResult or Posterior]
        Every fit of the grid; keyed by ``(k, covariance_type, family)`` when the table has a
        ``family`` column.
    best_family : str
        The chosen fit's component family ("gaussian" unless ``families`` said otherwise).
    """

    table: object
    criterion: str
    best_k: int
    best_covariance_type: str
    best: object
    fits: dict
    best_family: str = "gaussian"


def select(
    X,
    k=range(1, 10),
    covariance_types=COVARIANCE_TYPES,
    *,
    criterion: str = "bic",
    n_init: int = 1,
    init: str | None = None,
    max_iter: int = 100,
    tol: float = 1e-4,
    reg_covar: float = 1e-6,
    seed: int = 0,
    sample_weight=None,
    families=("gaussian",),
    dof=None,
    noise=False,
    **infer_kwargs,
) -> Selection:
    """Fit a grid of mixtures and pick the best by BIC, AIC, ICL or PSIS-LOO.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    k : int or iterable of int
        Numbers of components to try.
    covariance_types : str or iterable of str
        scikit-learn's "full", "tied", "diag", "spherical" (default) and mclust's 14
        models "EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE", "VVE", "EEV",
        "VEV", "EVV", "VVV" (VII, VVI, EEE and VVV are spherical, diag, tied and full by
        mclust's names); "all": mclust's 14, as ``mclustBIC`` compares them.
    criterion : {"bic", "aic", "icl", "loo"}
        ``bic = −2 log L + p log n``, ``aic = −2 log L + 2 p``, ``icl = bic − 2 Σ_i log max_k
        r_ik`` (penalises overlapping components; mclust's ICL with the sign flipped), all
        lower-is-better with ``n`` the total row weight; "loo": the Bayesian fit
        (``bayesgmm.infer``) with the highest PSIS-LOO elpd.
    n_init, init, max_iter, tol, reg_covar, seed, sample_weight
        As in ``em_fit``; each fit of the grid equals ``em_fit`` with the same arguments
        (up to round-off; except ``init="random"``, whose draws depend on ``k``). Two
        defaults differ from ``em_fit``'s, as in mclust: ``init=None`` means "hierarchical"
        (mclust's model-based hierarchical clustering, one deterministic start per grid point;
        one tree serves every k and type) when ``n_init=1``, and "kmeans" restarts when
        ``n_init > 1``; and ``tol=1e-4`` (scikit-learn's 1e-3 lets EM stop while it still
        climbs, which misranks the fits: on Old Faithful the tied 3-component fit stops 13
        log-likelihood units short of its maximum and loses to (2, "full")). Chosen by
        measurement on five classic data sets (benchmarks/defaults.py, RESULTS.md).
    families : str or iterable of str
        Component families to compare (``em_fit``'s ``family``): "gaussian" (default) and
        "student_t". Every (k, covariance_type) is fitted once per family, from the same starts,
        and the criteria compare them all: a Student-t fit counts its degrees of freedom as
        parameters (``k``, 1 for ``dof="shared"``, 0 when fixed), so it wins only when heavy
        tails or outliers buy more likelihood than they cost. With other families than
        ``("gaussian",)`` the table gains a ``family`` column and ``fits`` are keyed by
        ``(k, covariance_type, family)``. EM criteria only (not ``criterion="loo"``). The
        Student-t fits' ECME reaches their maximum to about 1e-3 log-likelihood units at
        ``tol=1e-4`` even on near-Gaussian data (``em_fit``); streamed rows keep ECM, which stops
        short there (about 1.2 units on 400 rows) and makes the comparison conservative for
        Student-t: lower ``tol`` to remove it.
    dof : None, "shared" or float
        The Student-t fits' degrees of freedom, as in ``em_fit``.
    noise : bool, float or a sequence of them
        Every fit gets a uniform background-noise component, as in ``em_fit`` (mclust's
        ``Mclust(..., initialization = list(noise = ...))``): the start's clusters leave out the
        rows guessed to be noise (one guess and one hierarchical tree for the whole grid), and
        BIC counts the noise weight. A sequence, e.g. ``(False, True)``, fits the grid once per
        option and compares them all: the table gains a ``noise`` column and ``fits`` keys end
        with the option. EM criteria only.
    **infer_kwargs
        For ``criterion="loo"``: passed to ``bayesgmm.infer`` (method, num_samples, prior...).

    Returns
    -------
    Selection

    Examples
    --------
    >>> import bayesgmm
    >>> from bayesgmm.datasets import load_faithful
    >>> selection = bayesgmm.select(load_faithful())
    >>> selection.best_k, selection.best_covariance_type
    (3, 'tied')

    Gaussian or Student-t components, by BIC:

    >>> by_family = bayesgmm.select(load_faithful(), k=[2, 3], covariance_types="tied",
    ...                             families=("gaussian", "student_t"))
    >>> by_family.best_k, by_family.best_covariance_type, by_family.best_family
    (3, 'tied', 'gaussian')

    References
    ----------
    C. Biernacki, G. Celeux and G. Govaert, "Assessing a mixture model for clustering with the
    integrated completed likelihood", IEEE TPAMI 22(7), 2000. L. Scrucca, M. Fop, T. B. Murphy
    and A. E. Raftery, "mclust 5", The R Journal 8(1), 2016.
    """
    import pandas as pd

    criterion = _validation.check_choice(criterion, "criterion", CRITERIA)
    ks = _grid_ks(k)
    if isinstance(covariance_types, str):
        types = list(MCLUST_MODELS) if covariance_types == "all" else [covariance_types]
    else:
        types = list(covariance_types)
    if not types:
        raise ValueError("covariance_types must name at least one covariance type.")
    for covariance_type in types:
        get_structure(covariance_type)
    families = _grid_families(families)
    by_family = families != ["gaussian"]  # the table gains a family column; fits keyed with it
    if dof is not None and "student_t" not in families:
        raise ValueError(f"dof={dof!r} applies to Student-t fits; add 'student_t' to families, or leave dof=None.")
    noise_options = list(dict.fromkeys(noise)) if isinstance(noise, (list, tuple)) else [noise]
    if not noise_options:
        raise ValueError("noise must be True, False, a hypervolume, or a non-empty sequence of them.")
    by_noise = len(noise_options) > 1
    if criterion == "loo":
        if any(noise_options):
            raise ValueError("criterion='loo' compares Bayesian fits, which have no noise component; use 'bic'.")
        if by_family:
            raise ValueError(
                f"criterion='loo' compares Bayesian fits, which have Gaussian components only; got families="
                f"{families}. Use families=('gaussian',), or an EM criterion ('bic', 'aic', 'icl')."
            )
        return _select_by_loo(X, ks, types, seed=seed, **infer_kwargs)
    if infer_kwargs:
        raise ValueError(f"Unexpected arguments {sorted(infer_kwargs)}; they apply to criterion='loo' only.")
    if init is None:
        init = "hierarchical" if n_init == 1 else "kmeans"
    configs = [
        EMConfig.validated(
            covariance_type=covariance_type,
            n_init=n_init,
            init=init,
            max_iter=max_iter,
            tol=tol,
            reg_covar=reg_covar,
            context=f"select, covariance_type={covariance_type!r}{f', family={family!r}' if by_family else ''}"
            f"{f', noise={option!r}' if by_noise else ''}: ",
            family=family,
            dof=dof if family != "gaussian" else None,
            noise=option,
        )
        for covariance_type in types
        for family in families
        for option in noise_options
    ]
    data = prepare_data(X, sample_weight, dtype=jnp.result_type(float))
    _validation.check_n_components(max(ks), data.n_positive)
    total = data.total_weight
    draws = {}  # one start per kind of fit (with or without the noise guess's rows), shared by the grid
    for config in configs:
        if config.noise not in draws:
            init_weights, _ = noise_start(data, config, UserInit())  # the noise guess's rows stay out of the start
            start = initial_rows(data, init_weights)
            draws[config.noise] = start_draws(start, ks, config.init, seed, config.n_init, compute_dtype(data))
    rows, fits = [], {}
    for config, option in zip(configs, noise_options * (len(configs) // len(noise_options)), strict=True):
        covariance_type, family = config.covariance_type, config.family
        grid, notices = fit_groups(data, ks, config, seed=seed, draws=draws[config.noise])
        for notice in notices:  # spurious grid points are marked in the table instead
            if notice.category is not SpuriousComponentWarning:
                warnings.warn(notice.message, notice.category, stacklevel=2)
        for n_components, (result, max_log_resp, spurious) in zip(ks, grid):
            log_likelihood = total * result.log_likelihood
            p = result.params.n_parameters
            bic = math.nan if spurious else -2.0 * log_likelihood + p * math.log(total)
            key = (n_components, covariance_type) + ((family,) if by_family else ()) + ((option,) if by_noise else ())
            rows.append(
                dict(
                    k=n_components,
                    covariance_type=covariance_type,
                    **({"family": family} if by_family else {}),
                    **({"noise": option} if by_noise else {}),
                    log_likelihood=result.log_likelihood,
                    n_parameters=p,
                    bic=bic,
                    aic=math.nan if spurious else -2.0 * log_likelihood + 2.0 * p,
                    icl=bic - 2.0 * max_log_resp,
                    n_iter=result.n_iter,
                    converged=result.converged,
                    spurious=spurious,
                )
            )
            fits[key] = result
    table = pd.DataFrame(rows)
    if table[criterion].isna().all():
        raise ValueError(
            "Every fit of the grid has a component the data cannot support (a spurious maximum; the table marks "
            "them spurious=True, their criteria NaN). Use fewer components, constrained covariance types, a larger "
            "reg_covar or more restarts (n_init)."
        )
    best = table.loc[table[criterion].idxmin()]
    best_key = (int(best["k"]), str(best["covariance_type"])) + ((str(best["family"]),) if by_family else ())
    best_family = best_key[2] if by_family else "gaussian"
    if by_noise:
        best_key += (best["noise"],)
    return Selection(table, criterion, *best_key[:2], fits[best_key], fits, best_family)


def _grid_families(families) -> list[str]:
    """``families`` as a list of distinct known family names, in the order given."""
    values = [families] if isinstance(families, str) else list(families)
    if not values:
        raise ValueError("families must name at least one component family, e.g. ('gaussian', 'student_t').")
    for family in values:
        _validation.check_choice(family, "family", tuple(FAMILIES))
    return list(dict.fromkeys(values))


def _grid_ks(k) -> list[int]:
    values = [k] if np.isscalar(k) else list(k)
    if not values:
        raise ValueError("k must hold at least one number of components.")
    ks = sorted({_validation.check_int_at_least(value, "k", 1) for value in values})
    return ks


def _select_by_loo(X, ks, types, *, seed, **infer_kwargs) -> Selection:
    import arviz_stats
    import pandas as pd

    rows, fits = [], {}
    for covariance_type in types:
        for n_components in ks:
            posterior = infer(X, n_components, covariance_type=covariance_type, seed=seed, **infer_kwargs)
            loo = arviz_stats.loo(posterior.to_arviz())
            rows.append(
                dict(
                    k=n_components,
                    covariance_type=covariance_type,
                    log_likelihood=float(np.mean(posterior.log_likelihood)),
                    elpd_loo=float(loo.elpd),
                    se=float(loo.se),
                    p_loo=float(loo.p),
                )
            )
            fits[(n_components, covariance_type)] = posterior
    table = pd.DataFrame(rows)
    best = table.loc[table["elpd_loo"].idxmax()]
    best_key = (int(best["k"]), str(best["covariance_type"]))
    return Selection(table, "loo", *best_key, fits[best_key], fits)


class LooComparison(NamedTuple):
    """Result of ``loo_compare``.

    table : pandas.DataFrame
        ``arviz_stats.compare`` output indexed by ``"k=<k>"``: elpd_loo, se, elpd_diff, dse,
        weight, p_loo, warning..., best first.
    best_k : int
        The number of components with the highest elpd_loo.
    posteriors : dict[int, Posterior]
    """

    table: object
    best_k: int
    posteriors: dict


def loo_compare(X, ks, *, method: str = "nuts", covariance_type: str = "full", **infer_kwargs) -> LooComparison:
    """Compare mixtures with each number of components in ``ks`` by PSIS-LOO.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    ks : iterable of int
        Numbers of components to compare.
    method : {"nuts", "svi"}
        Posterior approximation for each k (MAP has no spread to cross-validate with).
    covariance_type : str
    **infer_kwargs
        Passed to ``bayesgmm.infer`` (num_warmup, num_samples, num_chains, prior, seed...).

    Returns
    -------
    LooComparison

    References
    ----------
    A. Vehtari, A. Gelman and J. Gabry, "Practical Bayesian model evaluation using
    leave-one-out cross-validation and WAIC", Statistics and Computing 27, 2017.
    """
    import arviz_stats

    ks = sorted({int(k) for k in ks})
    if not ks:
        raise ValueError("ks must hold at least one number of components.")
    if method not in ("nuts", "svi"):
        raise ValueError(f"method must be 'nuts' or 'svi' for LOO, got {method!r}.")
    posteriors = {k: infer(X, k, method=method, covariance_type=covariance_type, **infer_kwargs) for k in ks}
    table = arviz_stats.compare({f"k={k}": posterior.to_arviz() for k, posterior in posteriors.items()})
    best_k = int(str(table.index[0]).removeprefix("k="))
    return LooComparison(table, best_k, posteriors)
