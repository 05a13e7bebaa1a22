"""The public EM entry points: ``em_fit``, and ``fit_groups`` for ``select``'s grid.

``em_fit(X, k, ...)`` validates its arguments once into an ``EMConfig``, prepares the data
(``_data.prepare_data``: centred and rescaled on the host, float64), and hands one
``Program`` to a driver: ``_memory.fit_batch`` (rows in memory or sharded: every restart in
one compiled program) or ``_streaming.fit`` (rows streamed from the host). The best restart's
state becomes an ``EMResult`` on the data's scale. Warnings (non-convergence, degenerate
components) are collected as ``Notice``s and raised here, at the API boundary, so that they
point at the caller's line. Semantics follow ``sklearn.mixture.GaussianMixture`` (same
stopping rule, same ``reg_covar``, same initialisations), except that ``log_likelihood`` is
that of the parameters returned.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from bayesgmm import _validation
from bayesgmm._errors import (
    ConvergenceWarning,
    DegenerateComponentWarning,
    DegenerateFitError,
    SpuriousComponentWarning,
)
from bayesgmm._rental import Rental
from bayesgmm.covariance import get_structure
from bayesgmm.em import _host, _memory, _streaming
from bayesgmm.em._config import MISSING, EMConfig, Program
from bayesgmm.em._data import (
    PreparedData,
    bucket_size,
    compute_dtype,
    default_chunk_size,
    initial_rows,
    noise_start,
    on_device,
    on_host,
    prepare_data,
    prepare_host,
    settings,
    start_draws,
    to_device,
)
from bayesgmm.em._init import INIT_METHODS, LabelledRows, restart
from bayesgmm.em._kernels import EMPTY_FRACTION, best_restart, converged, effective_rows, held_up
from bayesgmm.em._state import DegenerateEvents, EMResult, EMState, Settings, UserInit
from bayesgmm.params import GMMParams

_NO_USER_INIT = UserInit()

# em_fit's limit for the NumPy driver, in n k d (d + 1) n_init, for data in memory on a CPU with the
# default chunking: below it the fit in NumPy (milliseconds: Old Faithful, k = 2, 4 ms; 2000 x 5,
# k = 4, 50 ms) costs far less than compiling its program (1-1.5 s), and at most a few
# milliseconds more than the compiled program once compiled (benchmarks/RESULTS.md).
HOST_MAX_WORK = 50_000

# select's grids: each configuration (covariance type, family, noise option) is one compiled program,
# which costs 1.5-2.5 s to compile in a fresh session on 2 cores (0.5 s to trace, lower and load from
# the persistent cache in the next one) and then fits the whole grid fast (Old Faithful's default
# grid: 0.06 s), where em's NumPy driver compiles nothing but takes about 1-5 µs per unit of work
# (n k d (d + 1) n_init max_iter / 100 summed over the grid: its iterations are bounded by max_iter;
# Old Faithful's default grid: 0.5 s; iris's 14 models with max_iter=1000 and tol=1e-8 run
# 23 s in NumPy, 24 s compiling and 2 s compiled, and compile at once). Ski rental: a
# grid runs on the NumPy driver while the work done there for it in this process, this call's
# included, stays within GRID_HOST_MAX_WORK per configuration (about one compilation's worth),
# then on the compiled programs; so a session never spends much more than twice the cheaper way,
# whether it fits the grid once (Old Faithful's default grid: 13 calls on the NumPy driver) or a thousand times.
GRID_HOST_MAX_WORK = 1_000_000
grid_rental = Rental()  # grid -> work done on the NumPy driver in this process


class Notice(NamedTuple):
    """A warning to raise at the API boundary (``warnings.warn(message, category, stacklevel=2)``)."""

    message: str
    category: type[Warning]


class GridFit(NamedTuple):
    """One grid point's fit: the result, ICL's classification term ``Σ_i w_i max_k log r_ik``, and
    whether it has a component the data cannot support (every restart had one)."""

    result: EMResult
    max_log_resp: float
    spurious: bool = False


_DEGENERATE_ERROR = (
    "Fitting the mixture failed: a component's covariance stopped being positive definite (for instance a "
    "component collapsed onto a single point or onto duplicate rows). Increase reg_covar (now {reg_covar:g}), "
    "use fewer components (now {k}), a constrained covariance_type such as 'diag', or degenerate='reseed'."
)


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
    sample_weight=None,
    degenerate: str = "reseed",
    moments: str = "auto",
    chunk_size: int | None = None,
    stream: bool | None = None,
    missing: str = "raise",
    family: str = "gaussian",
    dof=None,
    measurement_error=None,
    noise=False,
) -> EMResult:
    """Fit a Gaussian mixture by maximum likelihood with EM.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Data; lists, int/float arrays and pandas DataFrames are accepted.
    k : int
        Number of components, ``1 <= k <=`` the number of rows of positive weight.
    covariance_type : {"full", "tied", "diag", "spherical"}
        Covariance structure; shapes of the fitted ``covariances`` per type:
        full (k, d, d), tied (d, d), diag (k, d), spherical (k,).
    n_init : int
        Restarts, run in one compiled program (vmapped on accelerators, one
        after another on CPU); the one with the highest final log-likelihood is returned.
    init : {"kmeans", "k-means++", "random", "random_from_data", "hierarchical"}
        "kmeans" is k-means++ seeding followed by Lloyd iterations (scikit-learn's default).
        "hierarchical" is mclust's default: model-based agglomerative hierarchical clustering
        (Fraley 1998; the unconstrained model on mclust's SVD transform of the data), cut at
        ``k`` clusters, then one M-step from that partition. It is deterministic (``n_init``
        must be 1) for up to 1000 rows of positive weight, and clusters a random subset of
        1000 rows above (drawn from ``seed``), as mclust does (with 2000); its cost grows as the
        square of those rows (0.01 s for Old Faithful, 0.5 s for 1000 rows in 5 dimensions,
        once its loop is compiled).
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
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative weight per row: a row of integer weight ``m`` counts as ``m`` copies
        of it, a row of weight 0 is dropped. The log-likelihood is the weighted mean.
    degenerate : {"reseed", "raise"}
        What to do when a component degenerates. "reseed" (default): a covariance that is
        not positive definite gets a larger diagonal term for that M-step, and an empty
        component restarts at one of the worst-fitting rows with the data's covariance;
        each is reported by a ``DegenerateComponentWarning`` naming the component and the
        iteration; the result is never NaN. "raise": a ``DegenerateFitError`` (a
        ``ValueError``, scikit-learn's behaviour).
    moments : {"auto", "whitened", "raw"}
        How the E-step accumulates the statistics (both give the same fit up to round-off):
        "whitened" about the current means in whitened coordinates (accurate in float32),
        "raw" from quadratic features (half the flops; for float64). "auto": "raw" in
        float64, "whitened" otherwise.
    chunk_size : int, optional
        Rows per E-step chunk; by default about ``2**20`` working elements per chunk.
    stream : bool, optional
        Keep ``X`` on the host and stream it to the device block by block in every pass
        (``bayesgmm.em._streaming``: for data larger than device memory; the same result as in
        memory up to summation order). Default: stream an ``np.memmap``, otherwise not.
        ``X`` may also be ``bayesgmm.shard(X)``: rows kept sharded over devices.
    missing : {"raise", "marginalize"}
        What NaN entries of ``X`` mean. "raise" (default): NaN is an error. "marginalize":
        NaN marks a value missing at random; EM maximises the likelihood of the observed
        entries, ``Σ_i w_i log p(x_i,o)``, by the exact EM for incomplete data (Ghahramani and
        Jordan 1994; ``bayesgmm.em._estep``), for every covariance type. Rows entirely NaN and
        features never observed are errors; infinities stay errors. The initialisation uses
        the rows with their NaN replaced by the observed column means. Each iteration costs
        ``O(k d³)`` per row with missing entries (rows without them cost as usual); the rows
        must be in memory (not ``stream`` nor ``shard``), and ``moments`` must be "auto".
        ``log_likelihood`` is then the mean observed-data log-likelihood per row. Without
        NaN in ``X`` the fit is the ordinary one. Fill the gaps afterwards with
        ``result.params.impute(X)``.
    family : {"gaussian", "student_t"}
        The components' distribution (``bayesgmm.families``). "student_t": multivariate t
        components, robust to outliers (Peel and McLachlan 2000), fitted by Liu and Rubin's (1995)
        ECME algorithm: the E-step weights each row by ``u = (ν + d)/(ν + δ²)``, its expected
        precision scale, the M-step updates weights, locations and scales (McLachlan and Peel
        2000, §7.5), and a second pass over the rows chooses the degrees of freedom that
        maximise the log-likelihood itself at the new locations and scales
        (``families.maximise_dof``); every covariance type, ``sample_weight``, missing values,
        streaming and sharding. Streamed rows (``stream``) keep ECM's ν-step instead (McLachlan
        and Peel's estimating equation, which needs no second pass over the file; slower in ``ν``,
        see ``dof``). The fitted ``params.covariances`` are then the scale matrices.
    dof : None, "shared" or float
        Student-t degrees of freedom: None estimates one per component, "shared" one for all
        (each starts at ``families.DOF_START`` = 4 and stays in ``families.DOF_BOUNDS`` = [1, 200]),
        a number > 0 fixes them there. BIC counts ``k``, 1 or 0 parameters for them. ECME reaches
        the maximum in few iterations even where the likelihood is flat in ``ν`` (near-Gaussian
        components, ``ν`` → ∞), where ECM creeps: on 400 rows of two Gaussian clusters, at
        ``tol=1e-3`` / ``1e-4`` / ``1e-6`` ECME stops 0.018 / 0.0014 / < 1e-4 log-likelihood
        units below the maximum after 4 / 6 / 9 iterations, ECM 3.9 / 1.2 / 0.11 units below
        after 12 / 38 / 327 (measured; tests/test_families.py). With streamed rows, use a small
        ``tol`` before comparing a Student-t fit with a Gaussian one.
    noise : bool or float
        True adds a uniform background-noise component (mclust's ``Vinv``; Banfield and Raftery
        1993): the density is ``π_0 / V + (1 − π_0) Σ_k π_k f_k(x)`` with ``V`` the volume of the
        data's bounding box (rows of positive weight), or the given hypervolume (a number > 0,
        in the units of ``X``; the box is then scaled about its centre to it). Rows far from
        every cluster go to the noise. EM starts from a noise guess (``_data.noise_guess``): the
        rows whose 10-nearest-neighbour density estimate is below ``1 / V`` stay out of the
        start's clusters, and ``π_0`` starts at their share of the weight (1% to 50%); from a
        complete user start (weights, means and covariances), at 0.1 (``_data.NOISE_START``).
        ``params.predict`` labels them −1, ``predict_proba`` gets a last column for the noise,
        and BIC counts ``π_0``. Works with every covariance type, both families, weights,
        missing values (the box's volume over a row's observed coordinates), measurement
        errors, streaming and sharding.
    measurement_error : array-like of shape (n_samples, n_features) or (n_samples, n_features, n_features), optional
        Known measurement errors of the rows, for extreme deconvolution (Bovy, Hogg and
        Roweis 2011): each row is a noisy copy ``x_i = v_i + e_i`` of a draw ``v_i`` from the
        mixture, with Gaussian error ``e_i ~ N(0, S_i)``, and EM fits the mixture of the true
        values ``v`` (the deconvolved one), maximising ``Σ_i w_i log Σ_k π_k N(x_i | μ_k,
        Σ_k + S_i)``. Shape (n_samples, n_features): each entry's error **standard
        deviation** ``σ_ij`` (uncorrelated errors, ``S_i = diag(σ_i²)``); shape
        (n_samples, n_features, n_features): each row's error **covariance matrix** ``S_i``
        (astroML's ``XDGMM`` ``Xerr``), symmetric positive semi-definite. In the units of
        ``X``. Rows with zero errors count as in an ordinary fit. Works with every
        ``covariance_type`` (the constraint applies to the deconvolved ``Σ_k``), with
        ``sample_weight`` and with ``missing="marginalize"`` (a NaN coordinate is one of
        infinite error; its entries of ``measurement_error`` are not used and may be NaN).
        Each iteration costs ``O(k d³)`` per row (a Cholesky factor of ``Σ_k + S_i`` per row
        and component), in chunks; the rows must be in memory (not ``stream`` nor
        ``shard``) and ``moments`` must be "auto". The initialisation ignores the errors.
        Evaluate the fit on noisy rows with ``params.log_prob(X, measurement_error=S)`` and
        ``params.predict_proba(X, measurement_error=S)``.

    Returns
    -------
    EMResult
        ``(params, log_likelihood, n_iter, converged, log_likelihood_history,
        restart_log_likelihoods)``.

    Raises
    ------
    ValueError
        On invalid input (``TypeError`` for arguments of the wrong type).
    DegenerateFitError
        With ``degenerate="raise"``, when a covariance stops being positive definite
        (increase ``reg_covar``); a ``ValueError``.

    Warns
    -----
    ConvergenceWarning
        When the best restart did not converge within ``max_iter``.
    DegenerateComponentWarning
        When ``degenerate="reseed"`` had to act on the returned restart.

    Notes
    -----
    Computes in float64 when ``jax_enable_x64`` is on, else float32. The data are
    centred (weighted mean, in float64, on the host) and divided by a power of two near
    their standard deviation before fitting, and the parameters mapped back: the
    rescaling is exact, float32 keeps its digits on data far from the origin, and values
    near the floating-point limits (1e150) stay finite. ``reg_covar`` is on the data's scale.

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

    Z. Ghahramani and M. I. Jordan, "Supervised learning from incomplete data via an EM
    approach", NIPS 6, 1994 (``missing="marginalize"``).

    J. Bovy, D. W. Hogg and S. T. Roweis, "Extreme deconvolution: inferring complete
    distribution functions from noisy, heterogeneous and incomplete observations", Annals of
    Applied Statistics 5(2B):1657-1677, 2011 (``measurement_error``).
    """
    config = EMConfig.validated(
        covariance_type=covariance_type,
        n_init=n_init,
        init=init,
        max_iter=max_iter,
        tol=tol,
        reg_covar=reg_covar,
        degenerate=degenerate,
        moments=moments,
        chunk_size=chunk_size,
        family=family,
        dof=dof,
        noise=noise,
    )
    missing = _validation.check_choice(missing, "missing", MISSING)
    if config.scale_mixture and measurement_error is not None:
        raise ValueError(
            "measurement_error applies to Gaussian components (a Student-t component convolved with Gaussian "
            "errors has no closed-form density); pass family='gaussian', or drop measurement_error."
        )
    data = prepare_data(
        X,
        sample_weight,
        dtype=jnp.result_type(float),
        stream=stream,
        missing=missing,
        measurement_error=measurement_error,
    )
    k = _validation.check_n_components(k, data.n_positive)
    user_init = UserInit(
        *_validation.check_initial_parameters(
            weights_init, means_init, covariances_init, k=k, d=data.n_features, covariance_type=covariance_type
        )
    )
    if _small_for_the_host(data, k, config, user_init, chunk_size=chunk_size, moments=moments):
        result, notices = fit_on_host(X, k, config, seed=seed, sample_weight=sample_weight, user_init=user_init)
    else:
        (fit,), notices = fit_groups(data, [k], config, seed=seed, user_init=user_init)
        result = fit.result
    for notice in notices:
        warnings.warn(notice.message, notice.category, stacklevel=2)
    return result


def _small_for_the_host(data: PreparedData, k: int, config: EMConfig, user_init: UserInit, *, chunk_size, moments):
    """Whether ``em_fit`` runs on the NumPy driver: small complete rows in memory on a CPU (``HOST_MAX_WORK``).

    Explicit ``chunk_size`` or ``moments`` ask for the compiled program's way of computing, and
    ``init="random"`` draws with JAX: those always compile.
    """
    if data.stream or data.mesh is not None or data.has_missing or chunk_size is not None or moments != "auto":
        return False
    if data.has_errors:  # the NumPy driver has no measurement-error E-step
        return False
    entry = INIT_METHODS[config.init]
    if not (entry.from_rows or entry.deterministic or user_init.complete) or not _memory.on_cpu(data.X):
        return False
    d = data.n_features
    return data.n_positive * k * d * (d + 1) * config.n_init <= HOST_MAX_WORK


def prepare_grid(X, sample_weight, ks: list[int], configs: list[EMConfig]) -> PreparedData:
    """``select``'s data: on the host for the NumPy driver (``prepare_data(..., host=True)``) while the
    grid's work there stays within ``GRID_HOST_MAX_WORK``, else on the device as ``prepare_data``'s.

    In-memory rows on a CPU, for starts the NumPy driver draws (not ``init="random"``): there
    ``fit_groups`` fits each ``k`` in NumPy, in milliseconds, where compiling the grid's programs
    would cost seconds in a fresh session. The work (``n k d (d + 1) n_init max_iter / 100``, times the
    covariance type's ``host_cost``: EVE's iterated M-step costs more in NumPy) counts per
    grid (rows, features, ``ks`` and the configurations, messages aside) across the process's calls.
    """
    dtype = jnp.result_type(float)
    data = prepare_data(X, sample_weight, dtype=dtype, host=True)
    if not on_host(data):  # streamed or sharded rows
        return data
    n, d = data.X.shape
    starts = all(INIT_METHODS[config.init].from_rows or INIT_METHODS[config.init].deterministic for config in configs)
    if starts and jax.devices()[0].platform == "cpu":
        rows = data.n_positive * sum(ks) * d * (d + 1)
        work = sum(
            rows * config.n_init * config.max_iter / 100 * get_structure(config.covariance_type).em.host_cost
            for config in configs
        )
        grid = (n, d, tuple(ks), tuple(dataclasses.replace(config, context="") for config in configs))
        if grid_rental.on_host(grid, work, GRID_HOST_MAX_WORK * len(configs)):
            return data
    return on_device(data, dtype)


def fit_groups(
    data: PreparedData,
    ks: list[int],
    config: EMConfig,
    *,
    seed,
    user_init: UserInit = _NO_USER_INIT,
    draws=None,
    k_max: int | None = None,
    keep: int | None = None,
) -> tuple[list[GridFit], list[Notice]]:
    """One fit per number of components in ``ks``, all in one compiled program; and their warnings.

    The fits use ``max(ks)`` components with the extra ones switched off (weight 0), so
    fits with different ``k`` have equal shapes and run in one program (``fit_batch``)
    together with their ``n_init`` restarts; each equals ``em_fit`` with that ``k`` and ``seed`` up to
    round-off (the initial draws of a restart do not depend on ``k``, except for
    ``init="random"``). ``user_init`` (weights, means, covariances in scikit-learn's layout,
    on the data's scale, or Nones) needs a single ``k``; when complete, one restart runs.
    ``draws``: ``start_draws(data, ks, config.init, seed, config.n_init, dtype)``, when the caller
    shares them between fits (``select``: one hierarchical tree for every covariance type).
    ``k_max`` (≥ ``max(ks)``): the components of the program, when the caller reuses the program
    of a wider grid (``select``'s refits of its close calls); ``ks`` may repeat a number.
    ``keep``: the results of the first ``keep`` groups only (the others pad the program's batch).
    Data prepared on the host (``prepare_grid``) are fitted by the NumPy driver instead, one ``k``
    after another (``_fit_groups_on_host``), from the same draws.

    Raises ``DegenerateFitError`` when a fit cannot continue (``degenerate="raise"``).
    """
    dtype = compute_dtype(data)
    n_init = 1 if user_init.complete else config.n_init
    init_weights, noise_share = noise_start(data, config, user_init)
    if draws is None or n_init != config.n_init:
        draws = start_draws(initial_rows(data, init_weights), ks, config.init, seed, n_init, dtype)
    scaled_init = _rescaled(user_init, data, dtype)
    if on_host(data):
        return _fit_groups_on_host(data, ks[:keep], config, draws, scaled_init, seed=seed)
    k_max = max(ks) if k_max is None else k_max
    program = _program(
        config,
        config.covariance_type,
        k_max,
        data.X.shape[0],
        data.n_features,
        batch=n_init * len(ks),
        moments=config.resolved_moments(dtype, data.has_missing, data.has_errors),
        sequential=data.stream or _memory.on_cpu(data.X),
        mesh=data.mesh,
    )
    if data.stream:
        fits, notices = [], []
        for group, k in enumerate(ks):
            group_draws = _first_draws(restart(draws, group), k)  # the streamed fit has k components, not k_max
            fit, fit_notices = _fit_streamed(data, k, program, group_draws, scaled_init, config)
            fits += fit
            notices += fit_notices
        return fits, notices
    fit_settings = settings(data, k_max, config, dtype)
    if init_weights is not None:
        fit_settings = fit_settings._replace(noise_start=np.asarray(noise_share, dtype))
        init_weights = jax.device_put(init_weights.astype(dtype), data.weights.sharding)
    states, log_likelihoods = _memory.fit_batch(
        data.X,
        data.weights,
        draws,
        np.arange(k_max)[None, :] < np.asarray(ks)[:, None],
        fit_settings,
        scaled_init,
        program=program,
        errors=data.errors,
        init_weights=init_weights,
    )
    return _results(data, ks[:keep], states, log_likelihoods, fit_settings, config)


def _fit_groups_on_host(data: PreparedData, ks, config: EMConfig, draws, user_init: UserInit, *, seed):
    """``fit_groups`` by the NumPy driver (``_host.fit``): each group's fit with its own ``k`` components,
    from the group's draws (``_first_draws``; None: ``_host.fit``'s own for ``seed``); results in the
    compute dtype. ``fit_on_host`` is its one group without draws."""
    fits, notices = [], []
    for group, k in enumerate(ks):
        group_draws = None if draws is None else _first_draws(restart(draws, group), k)
        state, log_likelihoods = _host.fit(data, k, config, seed=seed, user_init=user_init, draws=group_draws)
        batched = jax.tree.map(lambda leaf: np.asarray(leaf)[None], state)
        fit_settings = settings(data, k, config, np.float64)
        (fit,), fit_notices = _results(
            data, [k], batched, log_likelihoods[None], fit_settings, config, dtype=jnp.result_type(float)
        )
        fits.append(fit)
        notices += fit_notices
    return fits, notices


def _program(
    config: EMConfig,
    covariance_type: str,
    k: int,
    n_rows: int,
    n_features: int,
    *,
    batch: int,
    moments: str,
    sequential: bool,
    mesh=None,
) -> Program:
    """The static part of a compiled fit of ``batch`` fits at once: ``config``'s chunk size (or the
    default for the working memory of ``batch`` fits of ``k`` components), history and options."""
    chunk_size = min(config.chunk_size, n_rows) if config.chunk_size is not None else None
    return Program(
        k=k,
        covariance_type=covariance_type,
        init=config.init,
        moments=moments,
        degenerate=config.degenerate,
        history_size=bucket_size(config.max_iter + 1),
        chunk_size=chunk_size or default_chunk_size(n_rows, k, n_features, batch, moments),
        sequential=sequential,
        mesh=mesh,
        family=config.family,
        dof_mode=config.dof_mode,
    )


def _rescaled(user_init: UserInit, data: PreparedData, dtype) -> UserInit:
    """User-given initial parameters on the centred, rescaled data, as host arrays."""
    return UserInit(
        None if user_init.weights is None else np.asarray(user_init.weights, dtype),
        None if user_init.means is None else np.asarray((user_init.means - data.center) / data.scale, dtype),
        None if user_init.scale is None else np.asarray(user_init.scale / data.scale**2, dtype),
    )


def fit_on_host(
    X, k: int, config: EMConfig, *, seed, sample_weight=None, user_init: UserInit = _NO_USER_INIT
) -> tuple[EMResult, list[Notice]]:
    """``em_fit`` by the NumPy driver (``_host``): the same fit in float64, nothing compiled.

    For small in-memory data without NaN, where compiling the fit would cost more than running
    it (``em_fit`` below ``HOST_MAX_WORK``, ``infer``'s start). The parameters come back in the
    compute dtype (float32 unless ``jax_enable_x64``), checked to fit in it as ``em_fit``'s.
    ``user_init`` as ``fit_groups``'. Raises ``DegenerateFitError`` as ``em_fit`` does.
    """
    X = _validation.check_data(X)
    data = prepare_host(X, _validation.check_sample_weight(sample_weight, X.shape[0]))
    k = _validation.check_n_components(k, data.n_positive)
    if user_init.complete:
        config = dataclasses.replace(config, n_init=1)
    (fit,), notices = _fit_groups_on_host(data, [k], config, None, _rescaled(user_init, data, np.float64), seed=seed)
    return fit.result, notices


class Refits(NamedTuple):
    """``refit``'s replicate fits on the data's scale: NumPy leaves with a leading (replicates,) axis."""

    params: GMMParams  # batched (replicates,): weights (r, k), means (r, k, d), scale (r, ...)
    log_likelihood: np.ndarray  # (r,) mean log-likelihood per unit of row weight (−inf for a failed fit)
    converged: np.ndarray  # (r,) bool: stopped by ``tol`` within ``max_iter``
    failed: np.ndarray  # (r,) bool: a covariance stopped being positive definite, or a value is not finite


def refit(data: PreparedData, start: GMMParams, config: EMConfig, *, weights=None, rows=None) -> Refits:
    """EM started from ``start`` on every replicate of the data, all in one compiled program (the bootstrap).

    ``weights (r, n)``: each replicate's weights of ``data``'s ``n`` rows (multinomial counts: a
    nonparametric bootstrap). ``rows (r, n, d)``: each replicate's own rows on the data's scale
    (simulated: a parametric bootstrap), with unit weights unless ``weights`` are given.
    ``start`` (unbatched, on the data's scale) gives the number of components and the covariance
    type; ``config.init`` and ``config.n_init`` are not used. The rows must be in memory, complete
    (no NaN), on one device (not ``stream`` nor ``shard``). Warnings are not raised: a failed
    replicate is marked ``failed`` and scores −inf, for the caller to count.
    """
    if data.stream or data.mesh is not None or data.has_missing:
        raise ValueError(
            "The bootstrap needs complete rows in memory on one device: pass X as an array without NaN, "
            "not streamed (np.memmap, stream=True) nor sharded (bayesgmm.shard)."
        )
    dtype = compute_dtype(data)
    k = start.n_components
    if rows is None:
        X = data.X
        weights = np.asarray(weights, dtype)
        weights = np.pad(weights, ((0, 0), (0, X.shape[0] - weights.shape[1])))  # padding rows weigh 0
    else:
        n_replicates, n_rows = rows.shape[:2]
        pad = bucket_size(n_rows) - n_rows
        scaled = (np.asarray(rows, np.float64) - data.center) / data.scale  # on the host: no small programs
        X = to_device(np.pad(scaled, ((0, 0), (0, pad), (0, 0))), dtype)
        unit = np.ones((n_replicates, n_rows), dtype) if weights is None else np.asarray(weights, dtype)
        weights = np.pad(unit, ((0, 0), (0, pad)))
    sequential = _memory.on_cpu(data.X)
    program = _program(
        config,
        start.covariance_type,
        k,
        X.shape[-2],
        data.n_features,
        batch=1 if sequential else weights.shape[0],  # vmapped replicates share each chunk's working memory
        moments=config.resolved_moments(dtype, False),
        sequential=sequential,
    )
    covariances = np.asarray(start.covariances, np.float64)
    user_init = _rescaled(
        UserInit(np.asarray(start.weights, np.float64), np.asarray(start.means, np.float64), covariances), data, dtype
    )
    states = _memory.fit_replicates(
        X, to_device(weights, dtype), settings(data, k, config, dtype), user_init, program=program
    )
    states = jax.device_get(states)
    params = states.params
    means = params.means * data.scale + data.center
    scale = params.scale * data.scale
    log_likelihood = np.asarray(states.log_likelihood, np.float64) - data.n_features * math.log(data.scale)
    finite = np.isfinite(log_likelihood) & np.all(np.isfinite(means.reshape(means.shape[0], -1)), axis=1)
    finite &= np.all(np.isfinite(scale.reshape(scale.shape[0], -1)), axis=1)
    failed = np.asarray(states.failed) | ~finite
    return Refits(
        GMMParams(params.weights, means.astype(dtype), scale.astype(dtype), start.covariance_type),
        np.where(failed, -np.inf, log_likelihood),
        np.asarray(converged(states, config.tol)) & ~failed,
        failed,
    )


def _first_draws(draws, k: int):
    """One group's draws (restarts, ...) for a fit of ``k`` components: the first ``k`` of the grid's
    ``k_max`` (a restart's first draws do not depend on ``k``; ``init_draws``)."""
    if isinstance(draws, LabelledRows):
        return draws._replace(means=draws.means[:, :k])
    return draws[:, :k] if np.ndim(draws) >= 2 else draws  # "random": one seed per restart


def _fit_streamed(data: PreparedData, k: int, program: Program, draws, scaled_init: UserInit, config: EMConfig):
    """One streamed fit (``_streaming``) with ``k`` components; ``draws`` (restarts, ...) its initial draws."""
    dtype = jnp.result_type(float)
    program = dataclasses.replace(program, k=k, history_size=config.max_iter + 1)
    fit_settings = settings(data, k, config, dtype)
    host = _streaming.HostRows.of(data, dtype, program.chunk_size)
    init_weights, noise_share = noise_start(data, config, scaled_init)
    if init_weights is not None:
        fit_settings = fit_settings._replace(noise_start=np.asarray(noise_share, dtype))
    states = _streaming.fit(host, draws, fit_settings, scaled_init, program, init_weights)
    best = int(best_restart(np.asarray(states.log_likelihood), np.any(np.asarray(states.spurious), axis=-1)))
    log_likelihoods = np.asarray(states.log_likelihood)[None]
    best_state = jax.tree.map(lambda leaf: leaf[best][None], states)
    return _results(data, [k], best_state, log_likelihoods, fit_settings, config)


def _results(data: PreparedData, ks, states, log_likelihoods, fit_settings: Settings, config: EMConfig, dtype=None):
    """GridFits (data scale) from the best state of each group, with their notices, or a DegenerateFitError."""
    states, log_likelihoods = jax.device_get((states, log_likelihoods))
    fits, notices = [], []
    for group, k in enumerate(ks):
        state = jax.tree.map(lambda leaf, group=group: leaf[group], states)
        if bool(state.failed) or not np.isfinite(float(state.log_likelihood)):
            raise DegenerateFitError(config.context + _DEGENERATE_ERROR.format(reg_covar=config.reg_covar, k=k))
        state = state._replace(
            params=_first_components(state.params, k),
            events=jax.tree.map(lambda leaf, k=k: leaf[:k], state.events),
            spurious=state.spurious[:k],
        )
        notices += _degenerate_notices(
            state.events, config, fallback_reg=float(fit_settings.fallback_reg) * data.scale**2
        )
        stopped = not bool(converged(state, config.tol)) and config.max_iter > 0  # by max_iter
        notices += _spurious_notices(state, fit_settings, config, stopped)
        result, result_notices = _result(data, state, log_likelihoods[group], config, stopped, dtype)
        notices += result_notices
        fits.append(GridFit(result, float(state.max_log_resp), bool(np.any(state.spurious))))
    # every fit's parameters to the device in one transfer (one per fit costs about 0.5 ms each)
    on_device = jax.device_put([fit.result.params for fit in fits])
    fits = [
        fit._replace(result=fit.result._replace(params=params)) for fit, params in zip(fits, on_device, strict=True)
    ]
    return fits, notices


def _first_components(params: GMMParams, k: int) -> GMMParams:
    """The first ``k`` components (those in use; their weights already sum to 1), NumPy leaves."""
    scale = np.asarray(params.structure.core.permute(params.scale, np.arange(k)))  # NumPy indexing (or tied: as is)
    dof = None if params.dof is None else params.dof[:k]
    return dataclasses.replace(params, weights=params.weights[:k], means=params.means[:k], scale=scale, dof=dof)


def _result(data: PreparedData, state: EMState, restart_log_likelihoods, config: EMConfig, stopped: bool, dtype=None):
    """The EMResult on the data's scale, and a non-convergence notice if EM was ``stopped`` by
    ``max_iter`` before it converged (for a fit with a spurious component, ``_spurious_notices``
    says it: the likelihood had no maximum there to converge to, and more iterations would not help)."""
    context, tol, max_iter = config.context, config.tol, config.max_iter
    notices = []
    n_iter = int(state.n_iter)
    if stopped and not np.any(state.spurious):
        notices.append(
            Notice(
                f"{context}EM did not converge in max_iter={max_iter} iterations: the last change in mean "
                f"log-likelihood was {float(state.change):.3g} (tol={tol:g}). Increase max_iter or "
                "tol, or try other initialisations (n_init, init).",
                ConvergenceWarning,
            )
        )
    params = state.params  # NumPy leaves (device_get), rescaled on the host
    dtype = params.means.dtype if dtype is None else dtype  # the NumPy driver's float64 -> the compute dtype
    d = params.n_features
    means = params.means * data.scale + data.center
    scale = params.scale * data.scale
    covariances = np.asarray(params.structure.core.covariances(scale.astype(dtype)))
    if not (np.all(np.isfinite(means.astype(dtype))) and np.all(np.isfinite(covariances))):
        largest = float(np.max(np.abs(scale.astype(np.float64)))) ** 2  # the order of the largest variance
        raise ValueError(
            f"{context}The fitted means or covariances do not fit in {np.dtype(dtype).name} (variances near "
            f"{largest:.3g}; the largest {np.dtype(dtype).name} is {np.finfo(dtype).max:.3g}). "
            "Enable float64 (jax.config.update('jax_enable_x64', True)) or divide X by a constant first."
        )
    leaves = dict(weights=params.weights, means=means, scale=scale, dof=params.dof, noise_weight=params.noise_weight)
    if params.noise_bounds is not None:
        leaves["noise_bounds"] = params.noise_bounds * data.scale + data.center
    params = dataclasses.replace(
        params, **{name: np.asarray(leaf, dtype) for name, leaf in leaves.items() if leaf is not None}
    )  # host arrays: ``_results`` moves every fit's to the device in one transfer
    # the density of a row's observed entries changes by scale^(−observed features)
    log_scale = (d if data.observed_features is None else data.observed_features) * math.log(data.scale)
    history = np.asarray(state.history)[: n_iter + 1] - log_scale
    return EMResult(
        params,
        float(state.log_likelihood) - log_scale,
        n_iter,
        bool(converged(state, tol)),
        history,
        np.asarray(restart_log_likelihoods) - log_scale,
    ), notices


def _spurious_notices(state: EMState, fit_settings: Settings, config: EMConfig, stopped: bool) -> list[Notice]:
    """One notice per component of the returned fit that the data cannot support (every restart had
    one); ``stopped``: EM stopped at ``max_iter`` before it converged, which the notice says."""
    params = state.params
    d = params.n_features
    rows = np.asarray(effective_rows(params, fit_settings))
    needed = params.structure.em.supported_rows(d)
    held = np.asarray(held_up(state, fit_settings))
    notices = []
    unconverged = ""
    if stopped:
        unconverged = (
            f" EM did not converge in max_iter={config.max_iter} iterations (the last change in mean "
            f"log-likelihood was {float(state.change):.3g}): the likelihood has no maximum where that component "
            "collapses, so more iterations would not help."
        )
    for component in np.flatnonzero(np.asarray(state.spurious)):
        if rows[component] < needed:
            why = (
                f"it holds {rows[component]:.2f} effective rows, fewer than the {needed:g} a "
                f"{config.covariance_type!r} covariance needs in {d} dimension(s)"
            )
        elif held[component]:
            why = (
                f"its covariance is singular without regularisation (reg_covar={config.reg_covar:g}): its rows lie "
                "on a subspace, e.g. they share one value of a feature"
            )
        else:
            why = f"its smallest variance is at the reg_covar floor ({config.reg_covar:g}): only reg_covar holds it up"
        notices.append(
            Notice(
                f"{config.context}Every restart ended with a component the data cannot support, a spurious maximum "
                f"of the likelihood: component {component} of the returned fit ({why}).{unconverged} Use fewer "
                "components, a constrained covariance_type ('tied', 'diag'), a larger reg_covar, more restarts "
                "(n_init), or bayesgmm.infer(..., method='map') with a prior.",
                SpuriousComponentWarning,
            )
        )
    return notices


def _degenerate_notices(events: DegenerateEvents, config: EMConfig, *, fallback_reg: float) -> list[Notice]:
    """What ``repair`` did to the returned restart, one notice per component and kind."""
    context, notices = config.context, []
    for component in np.flatnonzero(np.asarray(events.reseeded)):
        notices.append(
            Notice(
                f"{context}EM re-seeded component {component} {int(events.reseeded[component])} time(s), first at "
                f"iteration {int(events.first_reseed[component])}: it was empty (held under {EMPTY_FRACTION:g} of "
                "an average row's weight) or its covariance could not be made positive definite. It restarted at "
                "the worst-fitting row with the data's covariance. Fewer components (k) may fit these data better.",
                DegenerateComponentWarning,
            )
        )
    for component in np.flatnonzero(np.asarray(events.regularised)):
        notices.append(
            Notice(
                f"{context}EM regularised the covariance of component {component} in "
                f"{int(events.regularised[component])} M-step(s), first at iteration "
                f"{int(events.first_regularised[component])}: with reg_covar={config.reg_covar:g} it was not "
                "positive definite (the component sat on too few distinct points, duplicate rows or a constant "
                f"feature), so reg_covar={fallback_reg:.3g} was added to its diagonal instead. Increase reg_covar, "
                "use fewer components or covariance_type='diag'.",
                DegenerateComponentWarning,
            )
        )
    return notices
