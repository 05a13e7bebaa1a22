"""Online EM: stepwise updates of running sufficient statistics, one minibatch at a time.

``em_partial_fit(start, X_batch)`` is stepwise EM (Cappé and Moulines 2009; Liang and Klein
2009). It keeps the running statistics ``s`` per unit of row weight and, for each batch,

    ŝ = statistics of the batch under the current parameters, divided by its total weight,
    s ← (1 − η_t) s + η_t ŝ,        η_t = (t + 2)^(−κ),
    parameters = M-step(s)

with the kernels of the batch fit: the E-step table (``_estep.E_STEPS``), ``_kernels.m_step``
(every covariance structure, mclust's 14 through their ``em.scale_from_moments``) and
``_kernels.repair`` for degenerate components. The first batch initialises ``s`` from the
given parameters (``η = 1``); the ``t``-th batch after it (``t = 0, 1, ...``) takes
``η_t = (t + 2)^(−κ)``, so the ``n``-th batch overall takes ``(n + 1)^(−κ)``.

Coordinates. As ``em_fit`` does, the rows are centred and divided by a power of two on the
host, in float64, before they reach the device; here the centre and the power of two are
fixed once, from the starting parameters (the mixture's mean and overall variance), and kept
in the state, so every batch is standardised alike and float32 keeps its digits on data far
from the origin.

Shifts. ``SufficientStatistics`` hold second moments about a shift. The running statistics are
kept about the current (standardised) means: after each M-step they are re-centred exactly to
the new means (``recentre``: ``Σ r (x − c')(x − c')ᵀ = S − f δᵀ − δ fᵀ + n δ δᵀ`` with
``δ = c' − c`` and ``f = Σ r (x − c)``, the same identity the M-step itself uses to get the
scatter about the new means), so the next batch's statistics, taken about those same means by
the whitened E-step, mix with them without any change of shift; the raw E-step (float64) gives
moments about the origin, re-centred the same way before mixing. The correction is
``−f fᵀ / n`` when the shift moves to the mean of the statistics, the round-off of the batch
M-step, so mixing adds no error of its own in float32.

One compiled program per batch shape: a batch is padded with rows of weight 0 to
``_arrays.bucket_size`` rows (about 16 sizes per doubling), or to the previous batch's padded
length when it fits in it (at most 8 times larger), so a stream of equal batches and its
shorter last batch run one program.

References
----------
O. Cappé and E. Moulines, "On-line expectation-maximization algorithm for latent data models",
JRSS B 71(3), 2009.

P. Liang and D. Klein, "Online EM for unsupervised models", NAACL-HLT 2009.
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
from bayesgmm._arrays import bucket_size
from bayesgmm._errors import ArgumentTypeError, DegenerateComponentWarning, DegenerateFitError
from bayesgmm.chunks import Rows
from bayesgmm.em._config import DEGENERATE
from bayesgmm.em._data import default_chunk_size, power_of_two_scale, to_device
from bayesgmm.em._estep import e_step
from bayesgmm.em._kernels import EMPTY_FRACTION, device_settings, invalid, m_step, repair
from bayesgmm.em._state import DegenerateEvents, EMResult, Settings, SufficientStatistics
from bayesgmm.params import GMMParams

# κ: the step sizes' exponent. Cappé and Moulines (2009) need κ ∈ (1/2, 1] for convergence; the
# smaller κ, the faster the statistics of the early batches (under poor parameters) are forgotten,
# and the noisier the late steps. Liang and Klein (2009) found κ from 0.5 to 0.7 best with
# minibatches; 0.6 is in that range, away from the boundary 1/2 where convergence is lost.
STEP_EXPONENT = 0.6
# A batch reuses the previous batch's padded length when that is at most this many times its own
# bucket: a stream's short last batch runs the same program, a tiny batch after a huge one does not.
REUSE_FACTOR = 8


class OnlineOptions(NamedTuple):
    """The settings of an online fit (see ``em_partial_fit``), kept in its state."""

    step_exponent: float  # κ
    reg_covar: float  # on the data's scale
    degenerate: str  # "reseed" or "raise"


class Frame(NamedTuple):
    """The standardised coordinates of an online fit, fixed by its start (host float64)."""

    center: np.ndarray  # (d,) rows are standardised as (x − center) / scale
    scale: float  # a power of two near the start mixture's standard deviation
    covariance: np.ndarray  # (d, d) the start mixture's covariance, standardised (re-seeding)


class OnlineState(NamedTuple):
    """The state of an online EM fit, returned and taken back by ``em_partial_fit``.

    params : GMMParams
        The current parameters on the data's scale, in the compute dtype: feed them to
        ``log_prob``, ``predict``, ``save``...
    statistics : SufficientStatistics
        The running statistics per unit of row weight (``counts`` sum to 1), on the
        standardised scale (``frame``), about their ``shift``: the current standardised means.
    n_steps : int
        Batches seen (updates made).
    rows_seen : float
        Total row weight of the batches seen (their number of rows, with unit weights).
    log_likelihood : Array ()
        Mean log-likelihood per row of the last batch under the parameters *before* its update
        (progressive validation: each batch is scored before it is learnt from).
    events : DegenerateEvents
        What the re-seeding did, per component, counted in batches.
    options : OnlineOptions
    frame : Frame
    padded_rows : int
        The padded length of the last batch (the shape of its compiled update).
    """

    params: GMMParams
    statistics: SufficientStatistics
    n_steps: int
    rows_seen: float
    log_likelihood: Array
    events: DegenerateEvents
    options: OnlineOptions
    frame: Frame
    padded_rows: int


def step_size(n_steps: int, step_exponent: float) -> float:
    """``η`` of the batch after ``n_steps`` updates: 1 for the first, then ``(n_steps + 1)^(−κ)``."""
    return float((n_steps + 1) ** -step_exponent)


def recentre(stats: SufficientStatistics, shift: Array, structure) -> SufficientStatistics:
    """The same statistics about another ``shift (k, d)``, exactly (any covariance layout).

    ``f' = f − n δ`` and ``S' = S − f δᵀ − δ fᵀ + n δ δᵀ`` with ``δ = shift − stats.shift``;
    the correction is built per component (k, d, d) and reduced to the type's layout by
    ``em.second_from_full`` (linear: tied sums, diag the diagonals, spherical the traces).
    """
    delta = shift - stats.shift
    cross = stats.first[:, :, None] * delta[:, None, :]
    outer = delta[:, :, None] * delta[:, None, :]
    correction = stats.counts[:, None, None] * outer - cross - jnp.swapaxes(cross, -1, -2)
    return stats._replace(
        first=stats.first - stats.counts[:, None] * delta,
        second=stats.second + structure.em.second_from_full(correction),
        shift=shift,
    )


def _mix(running: SufficientStatistics, batch: SufficientStatistics, eta) -> SufficientStatistics:
    """``(1 − η) s + η ŝ`` over the sums; both about the same shift."""

    def mix(old, new):
        return (1.0 - eta) * old + eta * new

    return SufficientStatistics(
        counts=mix(running.counts, batch.counts),
        first=mix(running.first, batch.first),
        second=mix(running.second, batch.second),
        log_likelihood=mix(running.log_likelihood, batch.log_likelihood),
        max_log_resp=mix(running.max_log_resp, batch.max_log_resp),
        shift=batch.shift,
    )


@functools.partial(jax.jit, static_argnames=("moments", "degenerate"))
def update(
    params: GMMParams,
    running: SufficientStatistics,
    events: DegenerateEvents,
    rows: Rows,
    batch_weight,
    eta,
    n_steps,
    center,
    scale,
    settings: Settings,
    *,
    moments: str,
    degenerate: str,
):
    """One stepwise-EM update (jitted; one program per batch shape, covariance type and options).

    ``params`` on the data's scale and ``running`` about its standardised means; ``rows`` the
    standardised batch (weight 0 for padding) of total weight ``batch_weight``; ``settings``
    on the standardised scale. Returns ``(params, running, events, log_likelihood, failed)``:
    the new parameters (data scale), the new statistics about their standardised means, the
    re-seeding events, the batch's mean log-likelihood under the old parameters (data
    scale), and whether a covariance stopped being positive definite.
    """
    structure = params.structure
    k, d = params.n_components, params.n_features
    settings = device_settings(settings, structure, k)
    current = GMMParams(params.weights, running.shift, params.scale / scale, params.covariance_type)
    batch, worst = e_step(current, rows, moments)
    # per unit of row weight, then about the current means (the raw E-step's are about the origin)
    per_weight = jax.tree.map(lambda total: total / batch_weight, batch._replace(shift=None))
    batch = recentre(per_weight._replace(shift=batch.shift), current.means, structure)
    mixed = _mix(running, batch, eta)
    new = m_step(mixed, settings.reg_covar, params.covariance_type)
    if degenerate == "reseed":
        seed_row = rows.flat()[0][worst.row]

        def repaired(new):
            new, reseeded, regularised = repair(new, mixed, seed_row, settings)
            return new, events.record(n_steps + 1, reseeded, regularised)

        empty = mixed.counts < EMPTY_FRACTION * settings.mean_row_weight
        needed = jnp.any(empty | ~structure.core.component_valid(new.scale, k))
        new, events = lax.cond(needed, repaired, lambda new: (new, events), new)
    failed = invalid(new, settings.active)
    mixed = recentre(mixed, new.means, structure)
    data_params = GMMParams(new.weights, center + scale * new.means, new.scale * scale, params.covariance_type)
    log_likelihood = batch.log_likelihood - d * jnp.log(scale)
    return data_params, mixed, events, log_likelihood, failed


# ----------------------------------------------------------------------------- host side


def em_partial_fit(
    start,
    X,
    *,
    sample_weight=None,
    step_exponent: float | None = None,
    reg_covar: float | None = None,
    degenerate: str | None = None,
) -> OnlineState:
    """Update a Gaussian mixture with one minibatch of rows by stepwise (online) EM.

    Each call computes the batch's responsibility-weighted statistics under the current
    parameters, per unit of row weight (``ŝ``), mixes them into the running statistics,
    ``s ← (1 − η) s + η ŝ``, and sets the parameters to the M-step of ``s``. The first call
    initialises ``s`` from the starting parameters on its batch (``η = 1``); the ``t``-th call
    after it (``t = 0, 1, ...``) takes ``η_t = (t + 2)^(−κ)``. One pass over a large data set in
    batches of thousands of rows reaches the batch EM's fit (tested to 1e-2 relative in mean
    log-likelihood) without ever holding the data.

    Parameters
    ----------
    start : OnlineState, GMMParams or EMResult
        The state returned by the previous call, or the parameters to start from (an
        ``em_fit`` result, for instance on the first batch); unbatched, any covariance type
        (scikit-learn's four, mclust's 14).
    X : array-like of shape (n_samples, n_features)
        One batch of rows, finite, with the start's ``n_features``.
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative weight per row (a row of weight ``m`` counts as ``m`` copies within its
        batch); the step size does not depend on the batch's weight.
    step_exponent : float in (0.5, 1], optional
        ``κ``. Smaller forgets the early batches (fitted under poorer parameters) faster and
        keeps the late steps noisier; 1 averages all batches equally (slow to forget). Default
        0.6, in the range Liang and Klein (2009) found best with minibatches.
    reg_covar : float, optional
        Added to the covariance diagonal in every M-step, on the data's scale (default 1e-6).
    degenerate : {"reseed", "raise"}, optional
        As ``em_fit``'s (default "reseed": an empty component restarts at the batch's
        worst-fitting row, with a ``DegenerateComponentWarning``).

    Returns
    -------
    OnlineState
        ``params`` (the current ``GMMParams`` on the data's scale), the running
        ``statistics``, ``n_steps``, ``rows_seen``, ``log_likelihood`` (the batch's mean
        log-likelihood under the parameters before this update), ``events``, ``options``,
        ``frame`` and ``padded_rows``. Pass it back with the next batch.

    Raises
    ------
    ValueError
        On invalid input: NaN or infinite values in ``X``, a batch whose number of features
        differs from the start's, invalid starting parameters or options (``TypeError`` for
        arguments of the wrong type).
    DegenerateFitError
        When a covariance stops being positive definite (with ``degenerate="raise"``, or when
        re-seeding cannot repair it); increase ``reg_covar``.

    Warns
    -----
    DegenerateComponentWarning
        When ``degenerate="reseed"`` re-seeded or regularised a component in this update.

    Notes
    -----
    The three options default to the state's (to 0.6, 1e-6 and "reseed" at the start); a value
    given applies from this call on and is kept in the state.

    Computes in float64 when ``jax_enable_x64`` is on, else float32 (the state's dtype is
    kept). Rows are centred and rescaled on the host in float64 by a centre and a power of
    two fixed from the starting parameters. The update is jitted once per padded batch
    shape: a batch is padded with rows of weight 0 to one of about 16 sizes per doubling, or
    to the previous batch's padded length when it fits (at most 8 times larger), so a stream
    of equal batches and its shorter last batch share one compiled program. Each call waits
    for its update (to raise or warn), so batches are best thousands of rows or more.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm import em_fit, em_partial_fit
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-3, 1, (20_000, 2)), rng.normal(3, 1, (20_000, 2))])
    >>> X = rng.permutation(X)
    >>> state = em_fit(X[:500], 2, seed=0)  # a start from the first rows
    >>> for batch in np.array_split(X, 20):
    ...     state = em_partial_fit(state, batch)
    >>> state.n_steps, state.params.means.shape
    (20, (2, 2))
    >>> np.sort(np.round(np.asarray(state.params.means[:, 0])))
    array([-3.,  3.])

    References
    ----------
    O. Cappé and E. Moulines, "On-line expectation-maximization algorithm for latent data
    models", JRSS B 71(3), 2009.

    P. Liang and D. Klein, "Online EM for unsupervised models", NAACL-HLT 2009.
    """
    if isinstance(start, OnlineState):
        state = start
        options = _checked_options(state.options, step_exponent, reg_covar, degenerate)
    elif isinstance(start, (GMMParams, EMResult)):
        params = start.params if isinstance(start, EMResult) else start
        if params.family != "gaussian" or params.noise_weight is not None:
            raise ValueError(
                f"em_partial_fit updates Gaussian components without a noise component; this mixture has "
                f"family={params.family!r}{' and a noise component' if params.noise_weight is not None else ''}. "
                "Refit it with em_fit on the rows seen so far, or start online EM from a Gaussian fit."
            )
        options = _checked_options(OnlineOptions(STEP_EXPONENT, 1e-6, "reseed"), step_exponent, reg_covar, degenerate)
        state = initial_state(params, options, jnp.result_type(float))
    else:
        raise ArgumentTypeError(
            "em_partial_fit starts from an OnlineState (the previous call's result), a GMMParams or an EMResult, "
            f"got {type(start).__name__}."
        )
    params = state.params
    k, d = params.n_components, params.n_features
    X = _validation.check_data(X, nan_advice="drop or impute them before the update.")
    if X.shape[1] != d:
        raise ValueError(
            f"X has {X.shape[1]} features, but the mixture has {d}; pass batches with the same columns as the start."
        )
    weights = _validation.check_sample_weight(sample_weight, X.shape[0])
    dtype = params.means.dtype
    moments = "raw" if dtype == jnp.float64 else "whitened"
    frame = state.frame
    padded, chunk_size = padded_shape(X.shape[0], state.padded_rows, k, d, moments)
    rows = _standardised_rows(X, weights, frame, padded, chunk_size, dtype)
    batch_weight = float(weights.sum())
    new_params, statistics, events, log_likelihood, failed = update(
        params,
        state.statistics,
        state.events,
        rows,
        np.asarray(batch_weight, dtype),
        np.asarray(step_size(state.n_steps, options.step_exponent), dtype),
        np.asarray(state.n_steps, np.int32),
        np.asarray(frame.center, dtype),
        np.asarray(frame.scale, dtype),
        _settings(frame, options, k, int(np.count_nonzero(weights)), dtype),
        moments=moments,
        degenerate=options.degenerate,
    )
    failed, old_events, new_events = jax.device_get((failed, state.events, events))
    if failed:
        raise DegenerateFitError(
            f"Online EM failed at batch {state.n_steps + 1}: a component's covariance stopped being positive "
            f"definite. Increase reg_covar (now {options.reg_covar:g}), use fewer components (now {k}), a "
            "constrained covariance_type such as 'diag', larger batches, or degenerate='reseed'."
        )
    _warn_events(old_events, new_events, options, state.n_steps + 1)
    return OnlineState(
        params=new_params,
        statistics=statistics,
        n_steps=state.n_steps + 1,
        rows_seen=state.rows_seen + batch_weight,
        log_likelihood=log_likelihood,
        events=events,
        options=options,
        frame=frame,
        padded_rows=padded,
    )


def _checked_options(options: OnlineOptions, step_exponent, reg_covar, degenerate) -> OnlineOptions:
    if step_exponent is not None:
        if isinstance(step_exponent, bool) or not isinstance(step_exponent, (int, float, np.floating, np.integer)):
            raise ArgumentTypeError(f"step_exponent must be a number in (0.5, 1], got {step_exponent!r}.")
        if not 0.5 < step_exponent <= 1.0:
            raise ValueError(
                f"step_exponent must be in (0.5, 1] (online EM converges only there), got {step_exponent!r}; "
                f"the default is {STEP_EXPONENT}."
            )
        options = options._replace(step_exponent=float(step_exponent))
    if reg_covar is not None:
        options = options._replace(reg_covar=_validation.check_nonnegative_float(reg_covar, "reg_covar"))
    if degenerate is not None:
        options = options._replace(degenerate=_validation.check_choice(degenerate, "degenerate", DEGENERATE))
    return options


def initial_state(params: GMMParams, options: OnlineOptions, dtype) -> OnlineState:
    """The state before the first batch: the frame from ``params``, empty statistics about its means."""
    if params.batch_shape:
        raise ValueError(
            f"em_partial_fit starts from one mixture, got parameters batched with shape {params.batch_shape} "
            "(posterior draws?); pick one, for instance posterior.mean_params()."
        )
    structure = params.structure
    k, d = params.n_components, params.n_features
    weights = np.asarray(params.weights, np.float64)
    means = np.asarray(params.means, np.float64)
    scale = np.asarray(params.scale, np.float64)
    if not (np.all(np.isfinite(weights)) and np.all(np.isfinite(means)) and np.all(np.isfinite(scale))):
        raise ValueError("The starting parameters contain NaN or infinite values; start from a valid fit.")
    if np.any(weights < 0) or not np.isclose(weights.sum(), 1.0, rtol=0, atol=1e-4):
        raise ValueError(f"The starting weights must be >= 0 and sum to 1, got sum {weights.sum():.6g}.")
    if not np.all(structure.core.component_valid(scale, k)):
        raise ValueError("The starting covariances must be positive definite; start from a valid fit.")
    covariances = np.asarray(structure.core.covariance_matrices(scale, k, d))
    center = weights @ means
    spread = means - center
    covariance = np.einsum("k,kij->ij", weights, covariances) + (spread * weights[:, None]).T @ spread
    power = power_of_two_scale(float(np.mean(np.diag(covariance))))
    statistics = SufficientStatistics(
        counts=to_device(np.zeros(k), dtype),
        first=to_device(np.zeros((k, d)), dtype),
        second=to_device(np.array(structure.em.second_from_full(np.zeros((k, d, d)))), dtype),
        log_likelihood=to_device(np.zeros(()), dtype),
        max_log_resp=to_device(np.zeros(()), dtype),
        shift=to_device(spread / power, dtype),
    )
    start = GMMParams(
        to_device(weights, dtype), to_device(means, dtype), to_device(scale, dtype), params.covariance_type
    )
    return OnlineState(
        params=start,
        statistics=statistics,
        n_steps=0,
        rows_seen=0.0,
        log_likelihood=to_device(np.asarray(np.nan), dtype),
        events=jax.tree.map(jax.device_put, DegenerateEvents.none(k, np)),
        options=options,
        frame=Frame(center, power, covariance / power**2),
        padded_rows=0,
    )


def padded_shape(n_rows: int, previous: int, k: int, d: int, moments: str) -> tuple[int, int]:
    """``(padded rows, chunk size)`` of a batch of ``n_rows``: ``bucket_size`` rows, or ``previous`` when it
    holds them and is at most ``REUSE_FACTOR`` times larger; then whole chunks of ``default_chunk_size``."""
    bucket = bucket_size(n_rows)
    target = previous if bucket <= previous <= REUSE_FACTOR * bucket else bucket
    chunk_size = default_chunk_size(target, k, d, 1, moments)
    return -(-target // chunk_size) * chunk_size, chunk_size


def _standardised_rows(X: np.ndarray, weights: np.ndarray, frame: Frame, padded: int, chunk_size: int, dtype) -> Rows:
    """The batch as ``(x − center) / scale`` (float64 on the host), padded with rows of weight 0, chunked."""
    n, d = X.shape
    block = np.zeros((padded, d), np.dtype(dtype))
    block[:n] = (X - frame.center) / frame.scale
    padded_weights = np.zeros(padded, np.dtype(dtype))
    padded_weights[:n] = weights
    shape = (padded // chunk_size, chunk_size)
    return Rows(to_device(block.reshape(shape + (d,)), dtype), to_device(padded_weights.reshape(shape), dtype))


def _settings(frame: Frame, options: OnlineOptions, k: int, n_positive: int, dtype) -> Settings:
    """The update's settings on the standardised scale, per unit of row weight (as ``_data.settings``)."""
    reg = options.reg_covar / frame.scale**2
    eps = float(jnp.finfo(dtype).eps)
    fallback = max(10.0 * reg, 1e3 * eps * max(1.0, float(np.mean(np.diag(frame.covariance)))))
    d = frame.covariance.shape[0]
    host = functools.partial(np.asarray, dtype=np.dtype(dtype))
    return Settings(
        tol=host(0.0),
        reg_covar=host(reg),
        fallback_reg=host(fallback),
        reseed_scale=host(frame.covariance + max(reg, fallback) * np.eye(d)),
        total_weight=host(1.0),
        mean_row_weight=host(1.0 / n_positive),  # one average row of the batch, per unit weight
        active=np.ones((k,), bool),
        max_iter=np.asarray(0),
    )


def _warn_events(old: DegenerateEvents, new: DegenerateEvents, options: OnlineOptions, batch: int) -> None:
    """A ``DegenerateComponentWarning`` for each component re-seeded or regularised by this update."""
    reseeded = np.flatnonzero(np.asarray(new.reseeded) > np.asarray(old.reseeded))
    regularised = np.flatnonzero(np.asarray(new.regularised) > np.asarray(old.regularised))
    if reseeded.size:
        warnings.warn(
            f"Online EM re-seeded component(s) {reseeded.tolist()} at batch {batch}: empty (under "
            f"{EMPTY_FRACTION:g} of an average row's weight) or with a covariance that could not be made positive "
            "definite; they restarted at the batch's worst-fitting row. Fewer components may fit these data better.",
            DegenerateComponentWarning,
            stacklevel=3,
        )
    if regularised.size:
        warnings.warn(
            f"Online EM regularised the covariance of component(s) {regularised.tolist()} at batch {batch}: with "
            f"reg_covar={options.reg_covar:g} it was not positive definite, so a larger term was added to its "
            "diagonal. Increase reg_covar, use fewer components or covariance_type='diag'.",
            DegenerateComponentWarning,
            stacklevel=3,
        )
