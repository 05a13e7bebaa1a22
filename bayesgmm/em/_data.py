"""The data side of a fit, on the host: validate, centre and rescale rows; settings; sizes.

``prepare_data`` turns what the user passed (an array-like, rows with NaN, an ``np.memmap`` to
stream, or ``bayesgmm.shard``'s ``ShardedRows``) into ``PreparedData``: rows centred by
their weighted mean and divided by a power of two near their standard deviation (exact, so
EM on the rescaled data is EM on the data), their moments (float64, on the host), and how to
map results back. ``settings`` builds a fit's traced ``Settings`` from them.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from bayesgmm import _validation
from bayesgmm._arrays import bucket_size
from bayesgmm._cache import enable as enable_compilation_cache
from bayesgmm._errors import ArgumentTypeError
from bayesgmm.em._config import EMConfig
from bayesgmm.em._init import INIT_METHODS, hierarchical_draws, init_draws, subset_rows
from bayesgmm.em._state import Settings
from bayesgmm.sharding import ShardedRows, describe, standardise

# Elements of the per-chunk working array ((k, d, rows) whitened rows, or (rows, d + p)
# quadratic features): big enough for efficient matrix products, small enough for cache.
CHUNK_ELEMENTS = 1 << 20


class PreparedData(NamedTuple):
    """Data centred and rescaled for fitting, their moments, and how to map results back."""

    X: Array  # (n, d) (X − center) / scale in the compute dtype (sharded over mesh, if any)
    weights: Array  # (n,) row weights in the compute dtype
    center: np.ndarray  # (d,) weighted mean, float64
    scale: float  # a power of two near the data's standard deviation
    covariance: np.ndarray  # (d, d) weighted covariance of the rescaled data, float64
    total_weight: float
    n_positive: int  # rows of positive weight
    mesh: object = None
    stream: bool = False  # X and weights are the host rows (NumPy), read block by block
    observed_features: float | None = None  # X has NaN: the weighted mean number of observed features per row
    errors: Array | None = None  # (n, d) error variances or (n, d, d) covariances / scale², rows as X; or None

    @property
    def n_features(self) -> int:
        return self.center.shape[0]

    @property
    def has_missing(self) -> bool:
        return self.observed_features is not None

    @property
    def has_errors(self) -> bool:
        return self.errors is not None


def prepare_data(
    X, sample_weight=None, *, dtype, stream=None, missing=None, measurement_error=None, host=False
) -> PreparedData:
    """Validate ``X`` (array-like, ``ShardedRows`` or rows to stream) and ``sample_weight``; centre and rescale.

    ``stream``: True, False, or None (stream an ``np.memmap``, keep anything else in memory).
    ``missing``: None (NaN is an error), "raise" (an error that names ``missing="marginalize"``)
    or "marginalize" (NaN allowed in memory; the fit then needs ``moments="missing"``).
    ``measurement_error``: per-row error standard deviations (n, d) or covariances (n, d, d)
    (``_validation.check_measurement_error``), kept as variances or covariances on the
    rescaled data, in the order of the rows (in memory only; the fit then needs
    ``moments="errors"``).
    ``host``: rows in memory stay on the host, for the NumPy driver (``prepare_host``: float64, not
    padded; ``on_device`` moves them later); streamed or sharded rows are prepared as without it.
    """
    enable_compilation_cache()  # before the first compilation: JAX keeps the compiled programs across sessions
    streamed = stream is True or (stream is None and isinstance(X, np.memmap))
    if measurement_error is not None and (streamed or isinstance(X, ShardedRows)):
        raise ValueError(
            "measurement_error needs the rows in memory: it supports neither streamed rows (stream=True or an "
            "np.memmap) nor bayesgmm.shard. Pass np.asarray(X) with stream=False."
        )
    if missing == "marginalize" and (streamed or isinstance(X, ShardedRows)):
        raise ValueError(
            "missing='marginalize' needs the rows in memory: it supports neither streamed rows (stream=True or an "
            "np.memmap) nor bayesgmm.shard. Pass np.asarray(X) with stream=False, or drop or impute the NaN first."
        )
    if isinstance(X, ShardedRows):
        if sample_weight is not None:
            raise ValueError("With sharded rows, pass sample_weight to bayesgmm.shard, not to em_fit.")
        if stream:
            raise ValueError("Sharded rows are already on the devices; stream=True needs rows on the host.")
        return _prepare_sharded(X, dtype)
    if stream not in (None, True, False):
        raise ArgumentTypeError(f"stream must be True, False or None (automatic), got {stream!r}.")
    if stream or (stream is None and isinstance(X, np.memmap)):
        return _prepare_stream(X, sample_weight, dtype)
    advice = "drop or impute them before fitting."
    if missing == "raise":
        advice = "drop or impute them, or pass missing='marginalize' to fit the observed entries of those rows."
    X = _validation.check_data(X, allow_nan=missing == "marginalize", nan_advice=advice)
    weights = _validation.check_sample_weight(sample_weight, X.shape[0])
    errors = None if measurement_error is None else _validation.check_measurement_error(measurement_error, X)
    data = prepare_host(X, weights, errors)
    return data if host else on_device(data, dtype)


def _prepare_stream(X, sample_weight, dtype) -> PreparedData:
    """Moments of host rows read block by block (float64); the rows stay on the host."""
    if not (isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype.kind in "iuf" and X.size > 0):
        raise ValueError(
            "stream=True needs X as a non-empty 2-D numeric NumPy array or np.memmap (n_samples, n_features), "
            f"got {type(X).__name__}" + (f" with shape {X.shape} and dtype {X.dtype}." if hasattr(X, "shape") else ".")
        )
    weights = _validation.check_sample_weight(sample_weight, X.shape[0])
    total, center, covariance = host_moments(X, weights)
    scale = power_of_two_scale(float(np.mean(np.diag(covariance))))
    n_positive = int(np.count_nonzero(weights))
    return PreparedData(X, weights, center, scale, covariance / scale**2, total, n_positive, stream=True)


def to_device(values, dtype):
    """Host arrays (an array or a pytree of them) on the default device in ``dtype``, converted on the
    host, in one transfer.

    ``jnp.asarray`` would compile a small program per new shape (tens of milliseconds in a
    fresh process, and seconds while another compilation occupies the cores).
    """
    return jax.device_put(jax.tree.map(lambda leaf: np.asarray(leaf, dtype=np.dtype(dtype)), values))


def prepare_host(X: np.ndarray, weights: np.ndarray, errors: np.ndarray | None = None) -> PreparedData:
    """Centre and rescale in-memory rows on the host (float64 NumPy, not padded): the NumPy driver's data.

    Rows with NaN (``missing="marginalize"``) keep their NaN, and are put after the complete
    rows; the moments are then those of the observed entries (``observed_moments``).
    ``errors`` (n, d) error variances or (n, d, d) covariances, optional: reordered with the
    rows and divided by the squared scale.
    """
    total = float(weights.sum())
    observed_features = None
    if np.isnan(X).any():
        order = complete_rows_first(X)
        X, weights = X[order], weights[order]
        errors = None if errors is None else errors[order]
        center, covariance, observed_features = observed_moments(X, weights)
    else:
        center = weights @ X / total
        centred = X - center
        covariance = (centred * weights[:, None]).T @ centred / total
    scale = power_of_two_scale(float(np.mean(np.diag(covariance))))
    return PreparedData(
        (X - center) / scale,
        weights,
        center,
        scale,
        covariance / scale**2,
        total,
        int(np.count_nonzero(weights)),
        observed_features=observed_features,
        errors=None if errors is None else errors / scale**2,
    )


def on_device(data: PreparedData, dtype) -> PreparedData:
    """Data prepared on the host (``prepare_host``) on the device in ``dtype``, padded to ``bucket_size`` rows.

    Rows of weight 0 up to a bucket size: data sets of nearby sizes share one compiled fit.
    Measurement errors, if any, are padded with zeros.
    """
    n, d = data.X.shape
    pad = bucket_size(n) - n
    data = data._replace(
        X=to_device(np.concatenate([data.X, np.zeros((pad, d))]), dtype),
        weights=to_device(np.concatenate([data.weights, np.zeros(pad)]), dtype),
    )
    if data.errors is None:
        return data
    errors = data.errors
    return data._replace(errors=to_device(np.concatenate([errors, np.zeros((pad,) + errors.shape[1:])]), dtype))


def on_host(data: PreparedData) -> bool:
    """The data were prepared for the NumPy driver (``prepare_data(..., host=True)``): float64 rows on the host."""
    return isinstance(data.X, np.ndarray) and not data.stream


def _prepare_sharded(rows: ShardedRows, dtype) -> PreparedData:
    """Centre and rescale sharded rows on their devices (the rows stay where they are)."""
    total, center, covariance, n_positive = describe(rows)
    scale = power_of_two_scale(float(np.mean(np.diag(covariance))))
    X = standardise(rows.X.astype(dtype), jnp.asarray(center, dtype), jnp.asarray(scale, dtype))
    return PreparedData(
        X, rows.weights.astype(dtype), center, scale, covariance / scale**2, total, n_positive, rows.mesh
    )


def settings(data: PreparedData, k: int, config: EMConfig, dtype) -> Settings:
    """The fit's dynamic settings on the rescaled data, as host arrays (one transfer per call).

    ``reseed_scale`` holds the data covariance (+ regularisation) here; ``_kernels.device_settings``
    turns it into the type's Cholesky factor inside the compiled program.
    """
    reg = config.reg_covar / data.scale**2
    eps = float(jnp.finfo(dtype).eps)
    fallback = max(10.0 * reg, 1e3 * eps * max(1.0, float(np.mean(np.diag(data.covariance)))))
    d = data.covariance.shape[0]
    host = functools.partial(np.asarray, dtype=dtype)
    return Settings(
        tol=host(config.tol),
        reg_covar=host(reg),
        fallback_reg=host(fallback),
        reseed_scale=host(data.covariance + max(reg, fallback) * np.eye(d)),
        total_weight=host(data.total_weight),
        mean_row_weight=host(data.total_weight / data.n_positive),
        active=np.ones((k,), bool),
        max_iter=np.asarray(config.max_iter),
        dof_start=host(np.full((k,), config.dof_start)) if config.scale_mixture else None,
        noise_start=host(NOISE_START) if config.noise else None,
        noise_bounds=host(noise_box(data, config.noise_volume)) if config.noise else None,
    )


# The noise component's weight when EM starts: a guess of the share of background rows. The first
# E-step then gives each row to the noise as far as its density under the start's components falls
# below the noise's 1 / V; 10% lets outliers go to the noise at once without emptying the clusters.
NOISE_START = 0.1


# The noise guess (``noise_guess``): neighbours of the k-nearest-neighbour density estimate, and at
# most this many rows (a random subset, fixed seed) as the neighbours' candidates.
NOISE_NEIGHBOURS = 10
NOISE_REFERENCE_ROWS = 2000


def noise_guess(data: PreparedData, volume: float | None = None) -> tuple[np.ndarray, float]:
    """The rows EM's start leaves to the noise component, as initialisation weights, and their share.

    A row is guessed to be background noise when its k-nearest-neighbour density estimate
    (``k = NOISE_NEIGHBOURS``: ``k / (m c_d r_k^d)`` with ``r_k`` the distance to the k-th
    nearest of ``m`` reference rows and ``c_d`` the unit ball's volume; Byers and Raftery 1998
    use the same distances) is below ``1 / V``, the density of the data spread uniformly over
    the noise component's box: inside a cluster the density is far above it, among background
    rows below it. Returns the row weights with the guessed rows at 0 (the start's clusters are
    seeded and fitted on the others) and their share of the weight, at least 1% (a noise
    weight of 0 would stay 0). Costs ``n × min(n, NOISE_REFERENCE_ROWS)`` distances on the host.
    NaN entries (missing values) count as the observed column mean (0 on the centred rows).
    """
    weights = np.asarray(data.weights, np.float64)
    positive = np.flatnonzero(weights > 0)
    n, d = data.X.shape
    reference = positive
    if positive.size > NOISE_REFERENCE_ROWS:
        reference = np.sort(np.random.default_rng(0).choice(positive, NOISE_REFERENCE_ROWS, replace=False))
    candidates = np.nan_to_num(_rescaled_rows(data, reference))
    k = min(NOISE_NEIGHBOURS, candidates.shape[0] - 1)
    if k < 1:
        return weights, 0.01
    is_reference = np.zeros(n, bool)
    is_reference[reference] = True
    log_radius = np.full(n, np.inf)  # rows of weight 0: never noise (they do not count)
    block = 4096
    for start in range(0, n, block):
        rows = np.nan_to_num(_rescaled_rows(data, slice(start, start + block)))
        squared = np.sum(rows**2, 1)[:, None] - 2 * rows @ candidates.T + np.sum(candidates**2, 1)[None, :]
        ordered = np.sort(np.maximum(squared, 0.0), axis=1)
        index = np.where(is_reference[start : start + block], k, k - 1)  # a reference row is its own nearest
        with np.errstate(divide="ignore"):
            log_radius[start : start + block] = 0.5 * np.log(ordered[np.arange(rows.shape[0]), index])
    log_radius[weights <= 0] = np.inf
    log_unit_ball = 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1)
    log_density = math.log(k) - math.log(candidates.shape[0]) - log_unit_ball - d * log_radius
    box = noise_box(data, volume)
    noise = log_density < -float(np.sum(np.log(box[1] - box[0])))
    share = float(np.sum(weights[noise]) / np.sum(weights))
    return np.where(noise, 0.0, weights), min(max(share, 0.01), 0.5)


def noise_start(data: PreparedData, config: EMConfig, user_init) -> tuple[np.ndarray | None, float]:
    """The noise guess (``_data.noise_guess``) when the fit has a noise component and draws its own start:
    the initialisation's row weights (host, float64) and the noise's starting weight; else ``(None, 0)``."""
    if not config.noise or user_init.complete:
        return None, 0.0
    return noise_guess(data, config.noise_volume)


def initial_rows(data: PreparedData, init_weights: np.ndarray | None) -> PreparedData:
    """The data the start's draws are made from: ``data`` with the initialisation's row weights."""
    return data if init_weights is None else data._replace(weights=init_weights)


def _rescaled_rows(data: PreparedData, index) -> np.ndarray:
    """Rows ``data.X[index]`` on the rescaled scale, float64 on the host (streamed rows are kept raw)."""
    rows = np.asarray(data.X[index], np.float64)
    return (rows - data.center) / data.scale if data.stream else rows


def noise_box(data: PreparedData, volume: float | None = None) -> np.ndarray:
    """(2, d) float64 lower and upper corners of the rows of positive weight (NaN ignored), on the rescaled
    scale: the noise component's box (mclust's ``hypvol`` bounding box). With ``volume`` (on the data's
    scale) the box is scaled about its centre to that hypervolume."""
    lows, highs = [], []
    block = 1 << 20  # rows read to the host at a time (streamed rows, or rows on devices)
    for start in range(0, data.X.shape[0], block):
        rows = _rescaled_rows(data, slice(start, start + block))
        rows = rows[np.asarray(data.weights[start : start + block]) > 0]
        if rows.size:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column in a block
                lows.append(np.nanmin(rows, axis=0))
                highs.append(np.nanmax(rows, axis=0))
    low, high = np.nanmin(lows, axis=0), np.nanmax(highs, axis=0)
    constant = np.flatnonzero(~(high > low))
    if constant.size:
        raise ValueError(
            f"Feature {constant[0]} takes one value on every row, so the data's bounding box has no volume and a "
            "uniform noise component has no density (a given hypervolume does not help: the box has no width along "
            "that feature to scale); drop the constant feature."
        )
    if volume is not None:
        d = low.shape[0]
        target = math.log(volume) - d * math.log(data.scale)  # on the rescaled scale
        factor = math.exp((target - float(np.sum(np.log(high - low)))) / d)
        centre, half = (low + high) / 2, (high - low) / 2 * factor
        low, high = centre - half, centre + half
    return np.stack([low, high])


def compute_dtype(data: PreparedData):
    """The dtype the fit computes in: the rows' (float64 with ``jax_enable_x64``, else float32)."""
    return jnp.result_type(float) if data.stream else data.X.dtype


def start_draws(data: PreparedData, ks, init: str, seed, n_init: int, dtype):
    """Every fit's initial draws, with (groups, restarts) leading axes, one group per ``k`` in ``ks``.

    ``init_draws`` (shared by all groups: a restart's draws do not depend on ``k``), or for the
    deterministic "hierarchical" start the labelled rows of one merge tree built from the data.
    """
    k_max = max(ks)
    if not INIT_METHODS[init].deterministic:
        draws = init_draws(seed, n_init, k_max, init, data.n_positive)
        return np.broadcast_to(draws, (len(ks),) + draws.shape)
    weights = np.asarray(data.weights, np.float64)
    subset = subset_rows(seed, weights)
    if data.stream:  # the raw host rows
        rows = (np.asarray(data.X[subset], np.float64) - data.center) / data.scale
    else:
        rows = np.asarray(data.X, np.float64)[subset]
    rows = np.where(np.isnan(rows), 0.0, rows)  # the observed column means, as the other starts
    return hierarchical_draws(rows, weights[subset], ks, k_max, dtype)


def default_chunk_size(n_samples: int, k: int, d: int, n_init: int = 1, moments: str = "whitened") -> int:
    """Rows per chunk so that the per-chunk working array holds about 2**20 elements.

    "whitened": the (k, d, rows) whitened rows; "raw": the (rows, d + p + k) features and
    log-densities, with ``p`` quadratic features (d(d+1)/2 for full covariances); "missing"
    and "errors": the (k, rows, d, d) Cholesky factors of the observed blocks.
    """
    width = {"whitened": k * d, "missing": k * d * d, "errors": k * d * d}.get(moments, d + d * (d + 1) // 2 + k)
    rows = CHUNK_ELEMENTS // max(1, width * n_init)
    return int(min(n_samples, max(256, rows)))


def power_of_two_scale(variance: float) -> float:
    """``2^round(log2 sd)``: dividing by it is exact, so EM on the rescaled data is EM on the data."""
    if not np.isfinite(variance) or variance <= 0:
        return 1.0
    return float(2.0 ** np.round(0.5 * np.log2(variance)))


def host_moments(X, weights: np.ndarray, block_rows: int = 1 << 16):
    """Weighted total, mean and covariance of host rows in float64, block by block (two passes)."""
    total = float(weights.sum())
    mean = np.zeros(X.shape[1])
    for start in range(0, X.shape[0], block_rows):
        block = np.asarray(X[start : start + block_rows], np.float64)
        if not np.all(np.isfinite(block)):
            bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
            raise ValueError(f"X contains NaN or infinite values (first: row {bad}); drop or impute them.")
        mean += weights[start : start + block_rows] @ block
    mean /= total
    covariance = np.zeros((X.shape[1],) * 2)
    for start in range(0, X.shape[0], block_rows):
        block = np.asarray(X[start : start + block_rows], np.float64) - mean
        covariance += (block * weights[start : start + block_rows, None]).T @ block
    return total, mean, covariance / total


def complete_rows_first(X: np.ndarray) -> np.ndarray:
    """A stable row order with the complete rows first (so they fill whole chunks of the fast path)."""
    return np.argsort(np.isnan(X).any(axis=1), kind="stable")


def observed_moments(X: np.ndarray, weights: np.ndarray):
    """Weighted mean and covariance of rows with NaN, from the observed entries (float64, on the host).

    The mean and variance of each feature are over the rows where it is observed (unbiased
    when values are missing completely at random); the correlations are those of the rows with
    the missing entries replaced by the observed column means (shrunk towards 0, but the
    matrix stays positive semi-definite, unlike pairwise-complete covariances). Used to
    centre and rescale the data and for ``em_fit``'s fallback regularisation and re-seeding.

    Returns
    -------
    center : (d,)
    covariance : (d, d)
    observed_features : float
        The weighted mean number of observed features per row (for the log-likelihood's
        change of scale).
    """
    observed = ~np.isnan(X)
    observed_weight = weights @ observed  # (d,)
    unobserved = np.flatnonzero(observed_weight <= 0)
    if unobserved.size:
        raise ValueError(
            f"Feature {unobserved[0]} of X is NaN in every row of positive weight "
            f"({unobserved.size} such feature(s)); nothing can be learnt about it: drop that column."
        )
    filled = np.where(observed, X, 0.0)
    center = weights @ filled / observed_weight
    centred = np.where(observed, X - center, 0.0)
    variances = weights @ centred**2 / observed_weight
    imputed = (centred * weights[:, None]).T @ centred / weights.sum()
    imputed_std = np.sqrt(np.diag(imputed))
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = imputed / np.outer(imputed_std, imputed_std)
    correlation = np.where(np.isfinite(correlation), correlation, 0.0)
    np.fill_diagonal(correlation, 1.0)
    std = np.sqrt(variances)
    observed_features = float(weights @ observed.sum(axis=1) / weights.sum())
    return center, correlation * np.outer(std, std), observed_features
