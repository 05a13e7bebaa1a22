"""Input checks run in Python before anything is traced.

Every error names what is wrong and what to change.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from bayesgmm._errors import ArgumentTypeError
from bayesgmm.covariance import get_structure
from bayesgmm.families import DOF_START


def check_data(
    X, *, name: str = "X", allow_nan: bool = False, nan_advice: str = "drop or impute them before fitting."
) -> np.ndarray:
    """Return ``X`` as a 2-D float ndarray, or raise a ValueError that says why not.

    Accepts lists, integer and float arrays (read-only too), and pandas DataFrames.
    ``allow_nan``: NaN marks missing entries (infinities and rows entirely NaN are still
    errors); otherwise NaN is an error whose message ends with ``nan_advice``.
    """
    if hasattr(X, "to_numpy") and hasattr(X, "columns"):  # pandas / polars DataFrame
        X = X.to_numpy()
    try:
        array = np.asarray(X)
    except Exception as error:  # ragged lists and the like
        raise ValueError(f"{name} could not be read as a 2-D numeric array: {error}") from None
    if array.dtype == object:
        try:
            array = array.astype(np.float64)
        except OverflowError:  # Python ints beyond the float range
            raise ValueError(f"{name} contains integers too large for float64; rescale the data.") from None
        except (TypeError, ValueError):
            raise ArgumentTypeError(
                f"{name} contains non-numeric values; convert or drop those columns first."
            ) from None
    if np.iscomplexobj(array):
        raise ArgumentTypeError(f"{name} is complex; Gaussian mixtures need real data (take .real or abs).")
    if array.dtype.kind == "b" or array.dtype.kind not in "biuf":
        raise ArgumentTypeError(f"{name} has dtype {array.dtype}; it must be numeric (int or float).")
    if array.ndim == 1:
        raise ValueError(
            f"{name} is 1-D with shape {array.shape}; pass a 2-D array (n_samples, n_features). "
            f"For a single feature use X.reshape(-1, 1)."
        )
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {array.shape}.")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}); it needs at least one row and one column.")
    if array.dtype not in (np.float32, np.float64):  # ints, float16, long double: JAX takes neither of the last two
        with np.errstate(over="ignore"):  # long doubles beyond float64 become inf, reported below
            array = array.astype(np.float64)
    finite = np.isfinite(array)
    if not finite.all():
        infinite = np.isinf(array)
        if allow_nan and infinite.any():
            bad_rows = np.flatnonzero(infinite.any(axis=1))
            raise ValueError(
                f"{name} contains infinite values in {bad_rows.size} row(s) (first: row {bad_rows[0]}); only NaN "
                "marks a missing entry: drop those rows or replace the infinities by NaN."
            )
        if not allow_nan:
            bad_rows = np.flatnonzero(~finite.all(axis=1))
            kind = "NaN" if np.isnan(array).any() else "infinite values"
            raise ValueError(
                f"{name} contains {kind} in {bad_rows.size} row(s) (first: row {bad_rows[0]}); "
                + (nan_advice if kind == "NaN" else "drop or impute them before fitting.")
            )
        empty_rows = np.flatnonzero(np.isnan(array).all(axis=1))
        if empty_rows.size:
            raise ValueError(
                f"{name} has {empty_rows.size} row(s) with every entry NaN (first: row {empty_rows[0]}); "
                "they carry no information: drop them."
            )
    _check_spread(array, name)
    return array


def _check_spread(array: np.ndarray, name: str) -> None:
    """Raise when the squared deviations from the column means would overflow float64.

    EM and the Bayesian model sum squared deviations over all ``n d`` entries, so each
    deviation must stay below ``sqrt(max_float64 / (n d))`` (with a safety factor of 10).
    """
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns when NaN is allowed
        center = np.nanmean(array, axis=0, dtype=np.float64)
        spread = np.nanmax(np.maximum(np.nanmax(array, axis=0) - center, center - np.nanmin(array, axis=0)))
    limit = math.sqrt(np.finfo(np.float64).max / array.size) / 10
    if not spread <= limit and not np.isnan(spread):
        raise ValueError(
            f"{name} has values up to {spread:.3g} away from their column means; their squares overflow "
            f"float64 (limit {limit:.3g} for this size). Rescale the data, for instance divide by {spread:.0e}."
        )


def check_n_components(k, n_samples: int) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ArgumentTypeError(f"k (n_components) must be a positive integer, got {k!r}.")
    if k < 1:
        raise ValueError(f"k (n_components) must be >= 1, got {k}.")
    if k > n_samples:
        raise ValueError(
            f"k={k} components need at least {k} samples, but X has {n_samples}; use fewer components or more data."
        )
    return int(k)


def check_int_at_least(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_nonnegative_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be a finite number >= 0, got {value!r}.")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
    return float(value)


def check_choice(value, name: str, choices) -> str:
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be one of {tuple(choices)}, got {value!r}.")
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}.")
    return value


def check_dof(dof, family: str) -> tuple[str, float]:
    """``em_fit``'s ``dof`` as ``(dof_mode, start)``: None (one per component, estimated), "shared"
    (one for all, estimated) or a number > 0 (fixed there). Only Student-t components have one."""
    if family == "gaussian":
        if dof is not None:
            raise ValueError(
                f"dof={dof!r} applies to Student-t components only; pass family='student_t', or leave dof=None."
            )
        return "component", DOF_START
    if dof is None:
        return "component", DOF_START
    if isinstance(dof, str):
        if dof != "shared":
            raise ValueError(f"dof must be None (one per component), 'shared' or a number > 0, got {dof!r}.")
        return "shared", DOF_START
    if isinstance(dof, bool) or not isinstance(dof, (int, float, np.integer, np.floating)):
        raise ArgumentTypeError(f"dof must be None, 'shared' or a number > 0, got {type(dof).__name__}.")
    if not (np.isfinite(dof) and dof > 0):
        raise ValueError(
            f"dof (degrees of freedom) must be a finite number > 0 to fix them, got {dof!r}; pass dof=None to "
            "estimate one per component."
        )
    return "fixed", float(dof)


def check_noise(noise) -> tuple[bool, float | None]:
    """``em_fit``'s ``noise`` as ``(with a noise component, its hypervolume or None for the data's box)``."""
    if noise is None or noise is False:
        return False, None
    if noise is True:
        return True, None
    if isinstance(noise, bool) or not isinstance(noise, (int, float, np.integer, np.floating)):
        raise ArgumentTypeError(
            f"noise must be True (a uniform component on the data's bounding box), False, or a hypervolume > 0, "
            f"got {type(noise).__name__}."
        )
    if not (np.isfinite(noise) and noise > 0):
        raise ValueError(f"noise as a hypervolume must be a finite number > 0, got {noise!r}; or pass noise=True.")
    return True, float(noise)


def _as_float_array(value, name: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} must be an array of numbers, got {type(value).__name__}.") from None


def check_initial_parameters(weights, means, covariances, *, k: int, d: int, covariance_type: str):
    """Validate user-given initial parameters; return float64 arrays (or None).

    Covariances are in scikit-learn's layout for the type and must be positive definite.
    """
    structure = get_structure(covariance_type)
    if weights is not None:
        weights = _as_float_array(weights, "weights_init")
        if weights.shape != (k,):
            raise ValueError(f"weights_init must have shape ({k},), got {weights.shape}.")
        if not np.all(np.isfinite(weights)) or np.any(weights < 0) or np.any(weights > 1):
            raise ValueError("weights_init must be finite and in [0, 1].")
        if not np.isclose(weights.sum(), 1.0, rtol=0, atol=1e-6):
            raise ValueError(f"weights_init must sum to 1, got sum {weights.sum():.8g}; normalise it.")
    if means is not None:
        means = _as_float_array(means, "means_init")
        if means.shape != (k, d):
            raise ValueError(f"means_init must have shape ({k}, {d}), got {means.shape}.")
        if not np.all(np.isfinite(means)):
            raise ValueError("means_init contains NaN or infinite values.")
    if covariances is not None:
        covariances = _as_float_array(covariances, "covariances_init")
        expected = structure.core.scale_shape(k, d)
        if covariances.shape != expected:
            raise ValueError(
                f"covariances_init for covariance_type={covariance_type!r} must have shape "
                f"{expected} (scikit-learn's layout), got {covariances.shape}."
            )
        if not np.all(np.isfinite(covariances)):
            raise ValueError("covariances_init contains NaN or infinite values.")
        # matrices (full, tied and mclust's ten: d × d per component or shared), else variances
        if structure.core.scale_shape(2, 3)[-2:] == (3, 3):
            matrices = covariances.reshape((-1, d, d))
            if not np.allclose(matrices, np.swapaxes(matrices, -1, -2), rtol=1e-8, atol=1e-12):
                raise ValueError("covariances_init must be symmetric.")
            if np.any(np.linalg.eigvalsh(matrices)[..., 0] <= 0):
                raise ValueError("covariances_init must be positive definite (all eigenvalues > 0).")
        elif np.any(covariances <= 0):
            raise ValueError("covariances_init must be positive (variances > 0).")
    return weights, means, covariances


def check_sample_weight(sample_weight, n_samples: int) -> np.ndarray:
    """Per-row weights as a float64 (n_samples,) array (ones when ``None``)."""
    if sample_weight is None:
        return np.ones(n_samples)
    try:
        weights = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise ArgumentTypeError("sample_weight must be numeric, one non-negative weight per row of X.") from None
    if weights.shape != (n_samples,):
        raise ValueError(f"sample_weight must have shape ({n_samples},), one weight per row of X; got {weights.shape}.")
    if not np.all(np.isfinite(weights)):
        raise ValueError("sample_weight contains NaN or infinite values; weights must be finite and >= 0.")
    if np.any(weights < 0):
        raise ValueError(f"sample_weight must be >= 0; it has {int(np.sum(weights < 0))} negative value(s).")
    if not weights.sum() > 0:
        raise ValueError("sample_weight is zero for every row; at least one row needs a positive weight.")
    return weights


def check_given(given, n_features: int) -> tuple[int, ...]:
    """The given coordinates of a conditional as a tuple of distinct indices in ``[0, n_features)``.

    ``given`` is an int or a sequence of ints; at least one coordinate must be left over.
    """
    if isinstance(given, numbers.Integral) and not isinstance(given, bool):
        given = [given]
    if isinstance(given, (str, bytes)) or not hasattr(given, "__iter__"):
        raise ArgumentTypeError(
            f"given must be a list of feature indices (ints), e.g. given=[0], got {type(given).__name__} {given!r}."
        )
    given = list(np.asarray(given).ravel()) if isinstance(given, np.ndarray) else list(given)
    not_integers = [index for index in given if isinstance(index, bool) or not isinstance(index, numbers.Integral)]
    if not_integers:
        raise ArgumentTypeError(
            f"given must be a list of feature indices (ints), got {not_integers[0]!r} in it; "
            "pass column positions, e.g. given=[0]."
        )
    given = [int(index) for index in given]
    if not given:
        raise ValueError("given is empty; name at least one feature index to condition on, e.g. given=[0].")
    out_of_range = [index for index in given if not 0 <= index < n_features]
    if out_of_range:
        raise ValueError(
            f"given has index {out_of_range[0]}, but the mixture has {n_features} features: use indices "
            f"0 to {n_features - 1} (negative indices are not accepted)."
        )
    repeated = sorted({index for index in given if given.count(index) > 1})
    if repeated:
        raise ValueError(f"given names feature {repeated[0]} more than once; list each feature index once.")
    if len(given) == n_features:
        raise ValueError(
            f"given names all {n_features} features, leaving nothing to predict; leave at least one out "
            "(for the density of complete rows use log_prob)."
        )
    return tuple(given)


def check_given_values(values, n_given: int, *, name: str = "values", allow_one_row: bool = True):
    """Values of the given coordinates as a float (n, n_given) array, and whether one row was given as 1-D.

    ``allow_one_row``: accept a 1-D array of shape (n_given,) as one row.
    """
    shapes = f"(n, {n_given})" + (f" or ({n_given},)" if allow_one_row else "")
    array = values.to_numpy() if hasattr(values, "to_numpy") and hasattr(values, "columns") else values
    try:
        array = np.asarray(array)
    except Exception as error:  # ragged lists and the like
        raise ValueError(f"{name} could not be read as a numeric array of shape {shapes}: {error}") from None
    one_row = array.ndim == 1 and allow_one_row
    if one_row:
        if array.shape != (n_given,):
            raise ValueError(
                f"{name} has shape {array.shape}, but {n_given} coordinate(s) are given: pass shape {shapes}"
                + (" (for several rows of one coordinate use values.reshape(-1, 1))." if n_given == 1 else ".")
            )
        array = array.reshape(1, -1)
    elif array.ndim != 2:
        raise ValueError(
            f"{name} must have shape {shapes}, one column per given coordinate, got shape {array.shape}"
            + ("; for one given coordinate use X.reshape(-1, 1)." if array.ndim == 1 and n_given == 1 else ".")
        )
    if array.shape[1] != n_given:
        raise ValueError(
            f"{name} has {array.shape[1]} column(s) but {n_given} coordinate(s) are given: pass shape {shapes}, "
            "the values of the given coordinates in the order of given (from full rows: X[:, given])."
        )
    array = check_data(array, name=name, nan_advice="conditioning needs every given value: drop those rows.")
    return array, one_row


def check_measurement_error(measurement_error, X: np.ndarray, *, name: str = "measurement_error") -> np.ndarray:
    """Per-row measurement errors as float64 error variances (n, d) or covariances (n, d, d).

    Parameters
    ----------
    measurement_error : array-like of shape (n, d) or (n, d, d)
        (n, d): each entry's standard deviation ``σ_ij >= 0`` (uncorrelated errors,
        ``S_i = diag(σ_i²)``); returned squared, as variances. (n, d, d): each row's error
        covariance ``S_i``, symmetric positive semi-definite; returned symmetrised.
    X : (n, d) the validated rows; NaN marks a missing entry, whose errors are not used (they
        may be NaN too) and are returned as 0.

    Raises
    ------
    ArgumentTypeError
        Not numeric.
    ValueError
        A wrong shape, NaN (outside the missing entries of ``X``) or infinite values,
        negative standard deviations, covariances that are not symmetric or not positive
        semi-definite; the message says what to change.
    """
    n, d = X.shape
    shapes = f"({n}, {d}) standard deviations or ({n}, {d}, {d}) covariance matrices, one per row of X"
    if hasattr(measurement_error, "to_numpy") and hasattr(measurement_error, "columns"):
        measurement_error = measurement_error.to_numpy()
    try:
        errors = np.array(measurement_error, dtype=np.float64)  # a copy: zeroed below where X is missing
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"{name} must be numeric: {shapes}.") from None
    if errors.shape not in ((n, d), (n, d, d)):
        raise ValueError(f"{name} has shape {errors.shape}; pass {shapes}.")
    missing = np.isnan(X)  # (n, d)
    unused = missing if errors.ndim == 2 else missing[:, :, None] | missing[:, None, :]
    errors = np.where(unused, 0.0, errors)
    finite = np.isfinite(errors)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.reshape(n, -1).all(axis=1))
        raise ValueError(
            f"{name} contains NaN or infinite values in {bad_rows.size} row(s) (first: row {bad_rows[0]}); every "
            "error must be finite (NaN is allowed only where X itself is NaN). A coordinate with no useful "
            "measurement is a missing one: set it to NaN in X and pass missing='marginalize'."
        )
    if errors.ndim == 2:
        negative = np.flatnonzero((errors < 0).any(axis=1))
        if negative.size:
            raise ValueError(
                f"{name} of shape (n, d) holds standard deviations, which must be >= 0; {negative.size} row(s) have "
                f"negative ones (first: row {negative[0]}). Pass their absolute values, or (n, d, d) covariances."
            )
        return errors**2
    magnitude = np.max(np.abs(errors), axis=(1, 2))  # (n,)
    asymmetry = np.max(np.abs(errors - np.swapaxes(errors, 1, 2)), axis=(1, 2))
    asymmetric = np.flatnonzero(asymmetry > 1e-8 * magnitude)
    if asymmetric.size:
        raise ValueError(
            f"{name} must hold symmetric covariance matrices; {asymmetric.size} row(s) are not (first: row "
            f"{asymmetric[0]}, largest difference {asymmetry[asymmetric[0]]:.3g}). Pass (S + S.swapaxes(1, 2)) / 2 "
            "if the asymmetry is round-off."
        )
    errors = 0.5 * (errors + np.swapaxes(errors, 1, 2))
    smallest = np.linalg.eigvalsh(errors)[:, 0]
    indefinite = np.flatnonzero(smallest < -1e-10 * magnitude)
    if indefinite.size:
        first = indefinite[0]
        raise ValueError(
            f"{name} must hold positive semi-definite covariance matrices; {indefinite.size} row(s) are not (first: "
            f"row {first}, smallest eigenvalue {smallest[first]:.3g}). Check the signs and sizes of the "
            "off-diagonal terms (a covariance is σ_i σ_j ρ_ij with |ρ_ij| <= 1), or pass (n, d) standard "
            "deviations for uncorrelated errors."
        )
    return errors
