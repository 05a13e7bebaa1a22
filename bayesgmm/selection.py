"""Model selection over the number of components, the covariance type and the component family.

- ``select(X, k=range(1, 10), covariance_types=..., criterion="bic", families=("gaussian",))``:
  the mclust-style grid. For each covariance type (and family), the fits for every ``k`` (and
  their ``n_init`` restarts) run as one compiled program (``bayesgmm.em.fit_groups``: equal
  shapes, unused components switched off), or, for small grids until a session has spent about
  a compilation's worth of work on them, on em's NumPy driver (``bayesgmm.em.prepare_grid``);
  then BIC, AIC and ICL rank them; ``criterion="loo"`` ranks Bayesian fits by PSIS-LOO instead.
- ``loo_compare(X, ks, ...)``: fits ``infer`` for each k and ranks the fits with ArviZ's
  ``compare`` (expected log pointwise predictive density, estimated by Pareto-smoothed
  importance sampling leave-one-out cross-validation).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import NamedTuple

import jax
import numpy as np

from bayesgmm import _validation
from bayesgmm._errors import DegenerateFitError, SpuriousComponentWarning
from bayesgmm._threads import thread_map
from bayesgmm.covariance import COVARIANCE_TYPES, MCLUST_MODELS, get_structure
from bayesgmm.em import (
    EMConfig,
    UserInit,
    classified_draws,
    compute_dtype,
    fit_groups,
    initial_rows,
    kmeans_draws,
    noise_start,
    numpy_classify,
    on_host,
    prepare_grid,
    start_draws,
)
from bayesgmm.families import FAMILIES

CRITERIA = ("bic", "aic", "icl", "loo")

# The hierarchical start's close calls (``select``'s ``close_call_starts``): the grid points whose
# criterion is within CLOSE_CALL_MARGIN of the best, at most CLOSE_CALL_LIMIT of them, each
# refitted from CLOSE_CALL_STARTS k-means partitions. Chosen by measurement on five classic
# data sets (benchmarks/defaults.py, RESULTS.md): on standardised wine the hierarchical start's
# (4, diag) fit sits 24 BIC units behind the grid's best, (7, tied), at a maximum 57 units below
# the best one; a k-means partition reaches that one about a third of the time, so 5 starts
# (wine's choice right for seeds 0-9; 2 starts: 2 of 5). At most 3 close calls × 5 starts keep
# the refits within 15 fits (a 36-fit grid's 4 types × 9 k).
CLOSE_CALL_MARGIN = 30.0
CLOSE_CALL_LIMIT = 3
CLOSE_CALL_STARTS = 5

# With the hierarchical start, a model also starts from the classification by the fit of a model
# nested in it (select's ``_refit_from_nested``), when the grid has both: VVE from EVE (EVE is VVE
# with equal volumes) and EVV from EEV (EEV is EVV with equal shapes). Measured on mclust's printed
# tables (mclust's sign, BIC): mclust's VVE EM takes its orientation from EVE's unweighted step, and
# from the tree alone VVE's own M-steps end far below the maxima that path reaches (iris with 5
# components −666.68 against mclust's −632.21; thyroid with 2 and 7 short by 49.7 and 8.6); from
# EVE's classification they end at or above mclust's. From the tree, EVV's EM on iris runs 1000
# iterations along a component whose rows share a value of a feature (spurious with 6 components;
# with 7, spurious or not depending on round-off); from EEV's classification it ends at a
# supported fit at or above mclust's (7, 8, 9 components).
NESTED_STARTS = {"VVE": "EVE", "EVV": "EEV"}


@dataclasses.dataclass(frozen=True, eq=False)
class Selection:
    """Result of ``select``.

    table : pandas.DataFrame
        Built, and pandas imported, when first read: ``select`` itself does not need pandas, whose
        import (0.16 s on 2 cores) is most of what Old Faithful's grid takes to fit (0.25 s). One
        row per (k, covariance_type), in grid order: ``k, covariance_type, log_likelihood`` (mean
        per row), ``n_parameters, bic, aic, icl, n_iter, converged,
        spurious`` (EM criteria, lower is better; NaN, as mclust's NA, where every restart
        ended with a component the data cannot support: never chosen), ``start`` (the kept
        fit's initialisation: ``init``, "kmeans" for a close call's refit, or the nested model
        whose classification started it, e.g. "EVE": ``NESTED_STARTS``) or, for
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

    _rows: list = dataclasses.field(repr=False)  # the table's rows, dicts in grid order
    criterion: str
    best_k: int
    best_covariance_type: str
    best: object
    fits: dict
    best_family: str = "gaussian"

    @functools.cached_property
    def table(self):
        import pandas as pd

        return pd.DataFrame(self._rows)


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
    close_call_starts: int = CLOSE_CALL_STARTS,
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
        (up to round-off; except ``init="random"``, whose draws depend on ``k``, and the close
        calls' refits below). Two defaults differ from ``em_fit``'s, as in mclust:
        ``init=None`` means "hierarchical" (mclust's model-based hierarchical clustering, one
        deterministic start per grid point; one tree serves every k and type) when
        ``n_init=1``, and "kmeans" restarts when ``n_init > 1``; and ``tol=1e-4``
        (scikit-learn's 1e-3 lets EM stop while it still climbs, which misranks the fits: on
        Old Faithful the tied 3-component fit stops 13 log-likelihood units short of its
        maximum and loses to (2, "full")). Chosen by measurement on five classic data sets
        (benchmarks/defaults.py, RESULTS.md).
    close_call_starts : int, default 5
        With the hierarchical start, the grid points whose criterion is within
        ``CLOSE_CALL_MARGIN`` (30) of the best (at most ``CLOSE_CALL_LIMIT``, 3, the closest;
        the best itself only when another overtook it) are fitted again from this many k-means
        partitions of the start's rows (``_init.kmeans_partition``), in the grid's own
        compiled programs; a refit replaces a grid point's fit when its mean log-likelihood is
        higher by more than ``tol`` (another maximum, not the same one reached from elsewhere)
        and it has no spurious component.
        One deterministic start can sit in a poor local maximum: on standardised wine the
        hierarchical start's (4, diag) fit is 57 BIC units below the maximum the refits reach,
        which then is the best model (the best of 50 k-means starts per grid point agrees). 0
        turns the refits off (every fit is then ``em_fit``'s with ``init="hierarchical"``). The
        table's ``n_iter`` is the kept fit's. The CLI's ``select --close-call-starts`` sets it.
        With the hierarchical start, VVE and EVV also start from the classification by the fits of
        EVE and EEV (models nested in them) when the grid has those (``NESTED_STARTS``; as with
        ``covariance_types="all"``), and the better supported fit is kept: from the tree alone
        VVE's EM ends below mclust's printed maxima (iris with 5 components by 34 BIC units).
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
    close_call_starts = _validation.check_int_at_least(close_call_starts, "close_call_starts", 0)
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
    data = prepare_grid(X, sample_weight, ks, configs)  # small grids stay on the host: the NumPy driver
    _validation.check_n_components(max(ks), data.n_positive)
    total = data.total_weight
    draws = {}  # one start per kind of fit (with or without the noise guess's rows), shared by the grid
    for config in configs:
        if config.noise not in draws:
            init_weights, _ = noise_start(data, config, UserInit())  # the noise guess's rows stay out of the start
            start = initial_rows(data, init_weights)
            draws[config.noise] = start_draws(start, ks, config.init, seed, config.n_init, compute_dtype(data))
    rows, fits = [], {}
    grids = _each(data, lambda config: fit_groups(data, ks, config, seed=seed, draws=draws[config.noise]), configs)
    for index, ((grid, notices), config, option) in enumerate(
        zip(grids, configs, noise_options * (len(configs) // len(noise_options)), strict=True)
    ):
        covariance_type, family = config.covariance_type, config.family
        _warn(notices)
        for n_components, grid_fit in zip(ks, grid):
            labels = dict(
                k=n_components,
                covariance_type=covariance_type,
                **({"family": family} if by_family else {}),
                **({"noise": option} if by_noise else {}),
            )
            rows.append(labels | _criteria(grid_fit, total) | dict(start=config.init, config=index))
            fits[tuple(labels.values())] = grid_fit.result
    if init == "hierarchical":
        _refit_from_nested(rows, fits, configs, data, ks, seed, draws)
    if init == "hierarchical" and close_call_starts > 0:
        _refit_close_calls(rows, fits, configs, data, ks, criterion, close_call_starts, seed, draws)
    rows = [{name: value for name, value in row.items() if name != "config"} for row in rows]
    ranked = [i for i, row in enumerate(rows) if not math.isnan(row[criterion])]
    if not ranked:
        raise ValueError(
            "Every fit of the grid has a component the data cannot support (a spurious maximum; the table marks "
            "them spurious=True, their criteria NaN). Use fewer components, constrained covariance types, a larger "
            "reg_covar or more restarts (n_init)."
        )
    best = rows[min(ranked, key=lambda i: rows[i][criterion])]  # the first of equal minima
    best_key = (int(best["k"]), str(best["covariance_type"])) + ((str(best["family"]),) if by_family else ())
    best_family = best_key[2] if by_family else "gaussian"
    if by_noise:
        best_key += (best["noise"],)
    return Selection(rows, criterion, *best_key[:2], fits[best_key], fits, best_family)


def _each(data, fit, configs) -> list:
    """``[fit(config) for config in configs]``, in one host thread per core for data in memory.

    Each configuration is its own compiled program, and XLA compiles and runs without the GIL:
    one program runs while Python prepares or reads back another. Streamed rows (a reader
    thread each), sharded data (collectives across devices) and data on the host for em's NumPy
    driver (Python and small NumPy calls, which hold the lock) are fitted one after another.
    """
    if data.stream or data.mesh is not None or on_host(data):
        return [fit(config) for config in configs]
    return thread_map(fit, configs)


def _warn(notices, stacklevel: int = 3) -> None:
    """Raise the notices at ``select``'s caller (``stacklevel``: 3 from ``select`` itself)."""
    for notice in notices:  # spurious grid points are marked in the table instead
        if notice.category is not SpuriousComponentWarning:
            warnings.warn(notice.message, notice.category, stacklevel=stacklevel)


def _criteria(grid_fit, total: float) -> dict:
    """A grid point's row of the table after its labels: likelihood, criteria, convergence."""
    result, max_log_resp, spurious = grid_fit
    log_likelihood = total * result.log_likelihood
    p = result.params.n_parameters
    bic = math.nan if spurious else -2.0 * log_likelihood + p * math.log(total)
    return dict(
        log_likelihood=result.log_likelihood,
        n_parameters=p,
        bic=bic,
        aic=math.nan if spurious else -2.0 * log_likelihood + 2.0 * p,
        icl=bic - 2.0 * max_log_resp,
        n_iter=result.n_iter,
        converged=result.converged,
        spurious=spurious,
    )


def _refit_close_calls(rows, fits, configs, data, ks, criterion, starts, seed, draws) -> None:
    """Refit the close calls of a hierarchical grid from k-means partitions, in place (``select``'s
    ``close_call_starts``).

    The challengers (the close calls after the best) are refitted first; the best only when one
    of them overtook it (a better maximum for the best cannot change the choice otherwise). Each
    configuration's refits × ``starts`` run in its grid's program (the same groups and components;
    groups left over fit one component, which costs little; the configurations' calls in one host
    thread per core, ``_each``); the partitions for a ``k`` serve every configuration, and a
    partition drawn twice is fitted once.
    """
    values = np.array([row[criterion] for row in rows], dtype=float)
    if not np.isfinite(values).any():
        return
    close = np.flatnonzero(np.isfinite(values) & (values <= np.nanmin(values) + CLOSE_CALL_MARGIN))
    close = close[np.argsort(values[close], kind="stable")][:CLOSE_CALL_LIMIT]
    total, k_max, dtype = data.total_weight, max(ks), compute_dtype(data)
    partitions = {}  # (noise option, k, repeat) -> LabelledRows of one group

    def partition(noise, k, repeat):
        if (noise, k, repeat) not in partitions:
            partitions[noise, k, repeat] = kmeans_draws(draws[noise], [(k, repeat)], seed, dtype)
        return partitions[noise, k, repeat]

    def start(noise, slots):
        return jax.tree.map(lambda *groups: np.concatenate(groups), *(partition(noise, *slot) for slot in slots))

    def distinct(noise, k):
        """The repeats whose partitions differ (a partition drawn twice would give the same fit twice)."""
        seen, kept = set(), []
        for repeat in range(starts):
            labels = np.asarray(partition(noise, k, repeat).labels).reshape(-1)
            _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
            key = np.argsort(np.argsort(first))[inverse.reshape(-1)].tobytes()  # numbered by first row
            if key not in seen:
                seen.add(key)
                kept.append(repeat)
        return kept

    def refit(indices):
        jobs = []  # (configuration index, [(k, repeat, row index)], slots): one program call each
        for index, config in enumerate(configs):
            wanted = [
                (rows[i]["k"], repeat, i)
                for i in indices
                if rows[i]["config"] == index
                for repeat in distinct(config.noise, rows[i]["k"])
            ]
            for first in range(0, len(wanted), len(ks)):  # the grid's groups, as many at a time
                batch = wanted[first : first + len(ks)]
                slots = [(k, repeat) for k, repeat, _ in batch]
                slots += [(1, 0)] * (0 if data.stream else len(ks) - len(batch))  # left over: one component
                jobs.append((index, batch, slots, start(configs[index].noise, slots)))

        def fit(job):
            index, batch, slots, job_draws = job
            group_ks = [k for k, _ in slots]
            return _another_start(
                data, group_ks, configs[index], seed=seed, draws=job_draws, k_max=k_max, keep=len(batch)
            )

        for (index, batch, _, _), (refits, notices) in zip(jobs, _each(data, fit, jobs), strict=True):
            _warn(notices, stacklevel=5)
            for (_, _, i), grid_fit in zip(batch, refits):  # none when the refit failed (``_another_start``)
                _keep_better(rows[i], fits, grid_fit, configs[index].tol, total, "kmeans")

    refit(close[1:])
    values = np.array([row[criterion] for row in rows], dtype=float)
    if np.nanargmin(values) != close[0]:
        refit(close[:1])


def _another_start(*args, **kwargs) -> tuple[list, list]:
    """``fit_groups`` for another start of grid points that already have a fit: when one of its fits fails
    (``DegenerateFitError``), none of them is kept (the grid's fits stand) and ``select`` goes on."""
    try:
        return fit_groups(*args, **kwargs)
    except DegenerateFitError:
        return [], []


def _keep_better(row: dict, fits: dict, grid_fit, tol: float, total: float, start: str) -> None:
    """Replace a grid point's fit (its table ``row`` and its entry in ``fits``) by ``grid_fit`` from
    another start when that has no spurious component and is another maximum: higher by more than
    EM's stopping tolerance (the same one, reached from elsewhere, differs by about that much and
    keeps the deterministic fit), or the grid point's fit was spurious."""
    if grid_fit.spurious:
        return
    if not row["spurious"] and grid_fit.result.log_likelihood <= row["log_likelihood"] + tol:
        return
    row |= _criteria(grid_fit, total) | dict(start=start)
    fits[_key(row)] = grid_fit.result


def _key(row: dict) -> tuple:
    """A table row's key in ``Selection.fits``: its labels (k, covariance type, family and noise when given)."""
    return tuple(row[name] for name in ("k", "covariance_type", "family", "noise") if name in row)


def _refit_from_nested(rows, fits, configs, data, ks, seed, draws) -> None:
    """Fit each configuration whose model has an entry in ``NESTED_STARTS`` again from the
    classification (of the start's rows) by the nested model's fits with the same ``k`` and family
    (fits without a noise component), in its grid's program (the configurations in one host thread
    per core, ``_each``); keep the better fit of each grid point (``_keep_better``)."""
    total, dtype = data.total_weight, compute_dtype(data)
    jobs = []  # (configuration index, its rows' indices, draws)
    for index, config in enumerate(configs):
        if config.noise:  # a noise fit's classification leaves rows to the noise, which the start has not
            continue
        source = NESTED_STARTS.get(config.covariance_type)
        sources = [
            other
            for other, candidate in enumerate(configs)
            if candidate.covariance_type == source and candidate.family == config.family and not candidate.noise
        ]
        if not sources:
            continue
        start = draws[config.noise]
        start_rows = np.asarray(start.rows[0, 0], np.float64) * data.scale + data.center  # the data's scale
        targets = [i for i, row in enumerate(rows) if row["config"] == index]
        by_k = {rows[i]["k"]: i for i, row in enumerate(rows) if row["config"] == sources[0]}
        labels = []
        for i in targets:  # on the host: eager JAX would compile a few programs per k
            source_fit = fits[_key(rows[by_k[rows[i]["k"]]])]
            labels.append(numpy_classify(jax.device_get(source_fit.params), start_rows))
        jobs.append((index, targets, classified_draws(start, np.stack(labels), dtype)))

    def fit(job):
        index, _, job_draws = job
        return _another_start(data, ks, configs[index], seed=seed, draws=job_draws)

    for (index, targets, _), (refits, notices) in zip(jobs, _each(data, fit, jobs), strict=True):
        _warn(notices, stacklevel=5)
        source = NESTED_STARTS[configs[index].covariance_type]
        for i, grid_fit in zip(targets, refits):  # none when the refit failed (``_another_start``)
            _keep_better(rows[i], fits, grid_fit, configs[index].tol, total, source)


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

    from bayesgmm.inference import infer  # NumPyro: loaded by the calls that need it (LAZY_MODULES)

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
    ranked = [i for i, row in enumerate(rows) if not math.isnan(row["elpd_loo"])]
    best = rows[max(ranked, key=lambda i: rows[i]["elpd_loo"])]  # the first of equal maxima
    best_key = (int(best["k"]), str(best["covariance_type"]))
    return Selection(rows, "loo", *best_key, fits[best_key], fits)


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

    from bayesgmm.inference import infer  # NumPyro: loaded by the calls that need it (LAZY_MODULES)

    ks = sorted({int(k) for k in ks})
    if not ks:
        raise ValueError("ks must hold at least one number of components.")
    if method not in ("nuts", "svi"):
        raise ValueError(f"method must be 'nuts' or 'svi' for LOO, got {method!r}.")
    posteriors = {k: infer(X, k, method=method, covariance_type=covariance_type, **infer_kwargs) for k in ks}
    table = arviz_stats.compare({f"k={k}": posterior.to_arviz() for k, posterior in posteriors.items()})
    best_k = int(str(table.index[0]).removeprefix("k="))
    return LooComparison(table, best_k, posteriors)
