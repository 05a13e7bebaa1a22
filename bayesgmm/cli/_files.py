"""The command line's files: data in (CSV, ``.npy``, Parquet), outputs checked before a fit and written atomically."""

from __future__ import annotations

import importlib.util
import io
import warnings
from pathlib import Path

import numpy as np

from bayesgmm.cli._render import one_line
from bayesgmm.io import atomic_write, read_npy

PARAMS_SUFFIXES = (".json", ".npz")  # bayesgmm.save
POSTERIOR_SUFFIX = ".nc"  # the posterior's ArviZ DataTree, netCDF-4
PLOT_SUFFIXES = (".png", ".pdf", ".svg")
TABLE_SUFFIXES = (".csv",)


# ----------------------------------------------------------------------------- input


def read_table(path: str, columns: str | None):
    """Rows and feature names from a CSV file with a header line, a 2-D .npy file or a .parquet table.

    Parameters
    ----------
    path : str
    columns : str, optional
        Comma-separated names of the columns to keep, in that order (``.npy`` columns are
        named ``x0, x1, ...``).

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    names : list of str, n_features names

    Raises
    ------
    ValueError
        One line naming the file and what is wrong with it.
    """
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{path}: no such file.")
    wanted = [name.strip() for name in columns.split(",")] if columns else None
    suffix = file.suffix.lower()
    if suffix == ".npy":
        X = read_npy(file)  # never unpickles, never opens an .npz, refuses forged headers
        if X.ndim != 2:
            raise ValueError(f"{path}: the array has shape {X.shape}; it must be 2-D (n_samples, n_features).")
        names = [f"x{j}" for j in range(X.shape[1])]
    elif suffix in (".csv", ".txt"):
        X, names = _read_csv(file, path)
    elif suffix == ".parquet":
        return _read_parquet(file, path, wanted)
    else:
        raise ValueError(
            f"{path}: unsupported file type {file.suffix!r}; use .csv (with a header line), .npy or .parquet."
        )
    if wanted:
        _check_columns(path, wanted, names)
        X = X[:, [names.index(name) for name in wanted]]
        names = wanted
    return X, names


def read_errors(path: str, X: np.ndarray, names: list[str]) -> np.ndarray:
    """``--errors``: the rows' measurement errors for the fitted columns ``names`` of ``X``.

    Either a table read like the data (CSV, ``.npy``, Parquet) of error standard deviations,
    one row per data row: its columns named as the fitted ones are taken (in that order), and a
    table without those names must have exactly ``d`` columns, taken in order; or a 3-D ``.npy``
    array ``(n_samples, d, d)``: each row's error covariance over the fitted columns.

    Returns
    -------
    ndarray of shape (n_samples, d) or (n_samples, d, d)
        Checked here for its shape only; ``em_fit`` checks the values (finite, >= 0, positive
        semi-definite) and names the rows at fault.
    """
    n_samples, n_features = X.shape
    file = Path(path)
    if file.suffix.lower() == ".npy" and file.is_file():
        errors = read_npy(file)
        if errors.ndim == 3:
            if errors.shape != (n_samples, n_features, n_features):
                raise ValueError(
                    f"--errors {path}: a 3-D array holds one error covariance per row and must have shape "
                    f"({n_samples}, {n_features}, {n_features}) for these data (columns {', '.join(names)}), "
                    f"got {errors.shape}."
                )
            return errors.astype(np.float64)
    errors, error_names = read_table(path, None)
    if all(name in error_names for name in names):
        errors = errors[:, [error_names.index(name) for name in names]]
    elif errors.shape[1] != n_features:
        raise ValueError(
            f"--errors {path}: {errors.shape[1]} column(s) ({', '.join(error_names)}); give one error standard "
            f"deviation per fitted column ({', '.join(names)}): columns with those names, or exactly "
            f"{n_features} columns in that order."
        )
    if errors.shape[0] != n_samples:
        raise ValueError(f"--errors {path}: {errors.shape[0]} rows; it needs one per data row ({n_samples}).")
    return errors


def _read_csv(file: Path, path: str):
    try:
        with file.open(encoding="utf-8") as handle:
            names = [name.strip().strip('"') for name in handle.readline().strip().split(",")]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # loadtxt's "no data" warning: X.size == 0 says it below
            X = np.loadtxt(file, delimiter=",", skiprows=1, ndmin=2, encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error}).") from None
    except ValueError as error:
        raise ValueError(f"{path}: every value after the header line must be a number ({error}).") from None
    if X.size == 0:
        raise ValueError(f"{path}: no data rows; the file needs a header line and at least one row of numbers.")
    if X.shape[1] != len(names):
        raise ValueError(f"{path}: the header names {len(names)} column(s) but the rows have {X.shape[1]} values.")
    return X, names


def _check_columns(path: str, wanted: list[str], names: list[str]) -> None:
    missing = [name for name in wanted if name not in names]
    if missing:
        raise ValueError(f"{path}: no column(s) {missing}; the columns are {names}.")


def _read_parquet(file: Path, path: str, wanted: list[str] | None):
    """Integer and floating columns of a Parquet file as float64 (nulls become NaN, which check_data reports)."""
    try:
        import pyarrow
        import pyarrow.parquet as parquet
    except ImportError:
        raise ValueError(
            f"{path}: reading .parquet needs pyarrow: pip install pyarrow (or save the data as .csv)."
        ) from None
    try:
        names = list(parquet.read_schema(file).names)
        if wanted:
            _check_columns(path, wanted, names)
        table = parquet.read_table(file, columns=wanted or names)
    except (pyarrow.ArrowException, OSError) as error:  # ArrowInvalid is also a ValueError: keep its text
        raise ValueError(f"{path}: not a readable Parquet file ({one_line(error)}).") from None
    names = wanted or names
    if not names:
        raise ValueError(f"{path}: the table has no columns.")
    if table.num_rows == 0:
        raise ValueError(f"{path}: no data rows.")
    types = pyarrow.types
    not_numeric = [
        f"{name} ({table.schema.field(name).type})"
        for name in names
        if not (types.is_integer(table.schema.field(name).type) or types.is_floating(table.schema.field(name).type))
    ]
    if not_numeric:
        raise ValueError(
            f"{path}: column(s) {', '.join(not_numeric)} are not numbers; pick numeric columns with --columns."
        )
    X = np.column_stack(
        [np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64) for name in names]
    )
    return X, names


# ----------------------------------------------------------------------------- output files


def check_output(path, option: str, suffixes, what: str) -> Path:
    """``path`` as a Path if a file with one of ``suffixes`` can be written there, else a ValueError.

    Checked before any fit: the extension, that the folder exists and that ``path`` is not a folder.
    """
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"Unknown file extension {path.suffix!r} for {option} {path}; use {what}.")
    if not path.parent.is_dir():
        raise ValueError(f"Cannot write {path}: the folder {str(path.parent)!r} does not exist; create it first.")
    if path.is_dir():
        raise ValueError(f"Cannot write {path}: it is a folder; give a file name ending in {suffixes[0]}.")
    return path


def check_fit_output(path, method: str) -> Path:
    """``fit --out``: parameters (.json, .npz) for any method, a posterior (.nc) for NUTS, SVI and MAP."""
    choices = "/".join(PARAMS_SUFFIXES) + f" (parameters) or {POSTERIOR_SUFFIX} (posterior)"
    path = check_output(path, "--out", PARAMS_SUFFIXES + (POSTERIOR_SUFFIX,), choices)
    if path.suffix.lower() == POSTERIOR_SUFFIX:
        if method == "em":
            raise ValueError(
                f"--out {path}: a .nc file holds a posterior (ArviZ DataTree) and EM has none; "
                "use --out .json or .npz for the EM parameters, or --method nuts, svi or map."
            )
        netcdf_engine()
    return path


def check_plot(path) -> Path:
    """``--plot``: a writable .png, .pdf or .svg path, and matplotlib installed."""
    path = check_output(path, "--plot", PLOT_SUFFIXES, " or ".join(PLOT_SUFFIXES))
    if importlib.util.find_spec("matplotlib") is None:
        raise ValueError(f"--plot {path} needs matplotlib: pip install 'bayesgmm[plot]'.")
    return path


def netcdf_engine() -> str:
    """The xarray engine that writes netCDF-4 groups (h5netcdf, else netCDF4), or a ValueError."""
    if importlib.util.find_spec("h5netcdf") and importlib.util.find_spec("h5py"):
        return "h5netcdf"
    if importlib.util.find_spec("netCDF4"):
        return "netcdf4"
    raise ValueError("writing a .nc posterior needs h5netcdf: pip install 'bayesgmm[cli]' (or pip install netCDF4).")


def figure_bytes(figure, path: Path) -> bytes:
    """The figure rendered in the format of ``path``'s extension (then closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format=path.suffix.lower().lstrip("."), dpi=120, bbox_inches="tight")
    finally:
        plt.close(figure)
    return buffer.getvalue()


def write_bytes(path: Path, data: bytes) -> None:
    """``data`` to ``path`` atomically: a temporary file in the same folder, then renamed."""
    atomic_write(path, lambda file: file.write(data))
