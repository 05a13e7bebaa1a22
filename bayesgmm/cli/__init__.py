"""The ``bayesgmm`` command line: ``fit``, ``select`` and ``demo``.

- ``bayesgmm fit FILE -k K [--method em|svi|nuts|map] [--covariance-type T] [--columns a,b]
  [--out params.json|params.npz|posterior.nc] [--plot fit.png]``: fit one mixture and print its
  parameters (EM, MAP) or an ArviZ posterior summary and the posterior-mean parameters (NUTS,
  SVI). ``.json`` and ``.npz`` hold the (posterior-mean) ``GMMParams`` (``bayesgmm.save``);
  ``.nc`` holds the posterior's ArviZ ``xarray.DataTree`` (``Posterior.to_arviz()``; EM has no
  posterior, so EM refuses it). ``--plot``: density contours with the component ellipses
  (d = 2), the posterior ellipse clouds (NUTS and SVI, d = 2), or a pair plot of the exact
  marginals (any other d).
- ``bayesgmm select FILE [-k 1-9] [--covariance-types full,tied,diag,spherical]
  [--criterion bic|aic|icl] [--plot bic.png] [--out table.csv]``: the model-selection grid
  (``bayesgmm.select``): print one row per (k, covariance type) and the chosen mixture;
  ``--plot`` draws the criterion against k (``bayesgmm.plot.plot_criterion``).
- ``bayesgmm demo``: Old Faithful (shipped in the package) for k = 1..4: the BIC table, the
  chosen mixture, a NUTS posterior summary and a PNG of the density.

FILE is a CSV file with a header line, a 2-D ``.npy`` array (never unpickled) or a
``.parquet`` table (needs pyarrow).

Output: stage lines and NUTS progress on stdout, as plain text; when rich is installed
(``pip install 'bayesgmm[cli]'``) and stdout is a terminal, tables are drawn by rich and stages
show a spinner. Bad input (or a failed fit) exits with status 2 and one line
``bayesgmm: error: ...`` on stderr; warnings are printed once the command has succeeded, one line
``bayesgmm: warning: ...`` each. Every output file is checked before anything is fitted and
written atomically (a temporary file in the same folder, then renamed), so a failure never leaves
a partial file nor replaces an old one.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")  # as bayesgmm.covariance (not imported: keeps --help fast)
PARAMS_SUFFIXES = (".json", ".npz")  # bayesgmm.save
POSTERIOR_SUFFIX = ".nc"  # the posterior's ArviZ DataTree, netCDF-4
PLOT_SUFFIXES = (".png", ".pdf", ".svg")
TABLE_SUFFIXES = (".csv",)
MAX_GRID_KS = 1000  # a --k range wider than this is a typo, not a grid


# ----------------------------------------------------------------------------- text output


def _one_line(text) -> str:
    return re.sub(r"\s*\n\s*", " ", str(text)).strip()


def _rich_console():
    """A rich Console on stdout when rich is installed and stdout is a terminal, else None."""
    if not getattr(sys.stdout, "isatty", lambda: False)():
        return None
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(file=sys.stdout, markup=False, highlight=False)


class Report:
    """What the commands print: rich tables and spinners on ``console``, plain text without one.

    Parameters
    ----------
    console : rich.console.Console, optional
        None (plain ``print``) unless rich is installed and stdout is a terminal (``for_stdout``).
    """

    def __init__(self, console=None):
        self.console = console

    @classmethod
    def for_stdout(cls) -> Report:
        return cls(_rich_console())

    def line(self, text: str = "") -> None:
        if self.console is None:
            print(text, flush=True)
        else:
            self.console.print(text, soft_wrap=True)

    def table(self, header: list[str], rows: list[list], *, best: int | None = None, why: str = "") -> None:
        """Columns right-aligned; row ``best`` (an index into ``rows``) marked ``<- why``.

        On a rich console the marked row is bold, with a narrow marker and a caption saying ``why``.
        """
        if self.console is None:
            marks = [f"<- {why}" if index == best else "" for index in range(len(rows))]
            self.line(_format_table(header + [""], [row + [mark] for row, mark in zip(rows, marks)]))
            return
        from rich import box
        from rich.table import Table
        from rich.text import Text

        table = Table(
            box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0), caption=f"\u25c0 {why}" if why else None
        )
        for name in header + [""]:
            table.add_column(Text(name), justify="right", no_wrap=True)
        for index, row in enumerate(rows):
            mark = "\u25c0" if index == best else ""
            table.add_row(*(Text(str(cell)) for cell in row + [mark]), style="bold" if index == best else None)
        self.console.print(table)

    @contextlib.contextmanager
    def stage(self, text: str, *, spinner: bool = True):
        """One stage of a long run: ``text ...`` (or a spinner) before, ``text: done in t s`` after."""
        start = time.perf_counter()
        if self.console is not None and spinner:
            with self.console.status(text + " ..."):
                yield
        else:
            self.line(text + " ...")
            yield
        self.line(f"{text}: done in {time.perf_counter() - start:.1f} s")


def _format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(cell).rjust(width) for cell, width in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * width for width in widths])] + [line(row) for row in rows])


def _format_matrix(matrix, indent: str = "    ") -> str:
    return "\n".join(indent + "  ".join(f"{value:10.4f}" for value in row) for row in np.atleast_2d(matrix))


def describe_params(params, feature_names) -> str:
    """A readable block with the weights, means and covariances of a fitted mixture."""
    weights = np.asarray(params.weights)
    means = np.asarray(params.means)
    covariances = np.asarray(params.covariance_matrices)
    lines = []
    for component in range(params.n_components):
        lines.append(f"  component {component}: weight {weights[component]:.4f}")
        lines.append(
            "    mean        "
            + "  ".join(f"{name}={value:.4f}" for name, value in zip(feature_names, means[component]))
        )
        lines.append("    covariance")
        lines.append(_format_matrix(covariances[component], indent="      "))
    return "\n".join(lines)


def _posterior_summary(posterior) -> str:
    import pandas as pd

    table = posterior.summary(var_names=["weights", "means", "covariances"], kind="all")
    with pd.option_context("display.width", 120, "display.max_rows", 200):
        return table.to_string()


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
        from bayesgmm.io import read_npy

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


def _read_csv(file: Path, path: str):
    try:
        with file.open(encoding="utf-8") as handle:
            names = [name.strip().strip('"') for name in handle.readline().strip().split(",")]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "loadtxt: input contained no data", UserWarning)
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
        raise ValueError(f"{path}: not a readable Parquet file ({_one_line(error)}).") from None
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


def parse_ks(text: str) -> list[int]:
    """The numbers of components in ``"1-9"``, ``"2,3,5"`` or ``"1-4,8"``: sorted, distinct, >= 1."""
    ks: set[int] = set()
    for part in str(text).split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None:
            raise ValueError(
                f"--k {text!r}: {part.strip()!r} is not a number or a range; write e.g. 1-9, 2,3,5 or 1-4,8."
            )
        low, high = int(match[1]), int(match[2] or match[1])
        if low < 1 or high < low:
            raise ValueError(f"--k {text!r}: the range {part.strip()!r} must go up from k >= 1, e.g. 1-9.")
        if high - low + 1 + len(ks) > MAX_GRID_KS:
            raise ValueError(f"--k {text!r} asks for more than {MAX_GRID_KS} values of k; give a smaller grid.")
        ks.update(range(low, high + 1))
    return sorted(ks)


def parse_covariance_types(text: str) -> list[str]:
    """``"full,diag"`` as a list of covariance types, in the given order without repeats."""
    types = [name.strip() for name in str(text).split(",") if name.strip()]
    unknown = [name for name in types if name not in COVARIANCE_TYPES]
    if unknown or not types:
        raise ValueError(
            f"--covariance-types {text!r}: unknown {unknown or 'empty list'}; "
            f"give a comma-separated list of {', '.join(COVARIANCE_TYPES)}."
        )
    return list(dict.fromkeys(types))


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


def _netcdf_engine() -> str:
    """The xarray engine that writes netCDF-4 groups (h5netcdf, else netCDF4), or a ValueError."""
    if importlib.util.find_spec("h5netcdf") and importlib.util.find_spec("h5py"):
        return "h5netcdf"
    if importlib.util.find_spec("netCDF4"):
        return "netcdf4"
    raise ValueError("writing a .nc posterior needs h5netcdf: pip install 'bayesgmm[cli]' (or pip install netCDF4).")


def _check_plot(path) -> Path:
    path = check_output(path, "--plot", PLOT_SUFFIXES, " or ".join(PLOT_SUFFIXES))
    if importlib.util.find_spec("matplotlib") is None:
        raise ValueError(f"--plot {path} needs matplotlib: pip install 'bayesgmm[plot]'.")
    return path


def _figure_bytes(figure, path: Path) -> bytes:
    """The figure rendered in the format of ``path``'s extension (then closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format=path.suffix.lower().lstrip("."), dpi=120, bbox_inches="tight")
    finally:
        plt.close(figure)
    return buffer.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    from bayesgmm.io import atomic_write

    atomic_write(path, lambda file: file.write(data))


# ----------------------------------------------------------------------------- fit


def _check_fit_out(path, method: str) -> Path:
    choices = "/".join(PARAMS_SUFFIXES) + f" (parameters) or {POSTERIOR_SUFFIX} (posterior)"
    path = check_output(path, "--out", PARAMS_SUFFIXES + (POSTERIOR_SUFFIX,), choices)
    if path.suffix.lower() == POSTERIOR_SUFFIX:
        if method == "em":
            raise ValueError(
                f"--out {path}: a .nc file holds a posterior (ArviZ DataTree) and EM has none; "
                "use --out .json or .npz for the EM parameters, or --method nuts, svi or map."
            )
        _netcdf_engine()
    return path


def _fit_plot(path: Path, params, posterior, X, names) -> bytes:
    from bayesgmm import plot

    if params.n_features != 2:
        figure = plot.plot_pairs(params, X, feature_names=names)
    elif posterior is not None and posterior.method in ("nuts", "svi"):
        figure = plot.plot_posterior_ellipses(posterior, X, feature_names=names).figure
    else:
        figure = plot.plot_density(params, X, feature_names=names).figure
    return _figure_bytes(figure, path)


def _check_finite(params):
    """``params``, or a ValueError when a fit ended with parameters or covariances that are not finite.

    A Cholesky factor can be finite while its covariance overflows (float32 and data spread over
    more than about 1e19): such a mixture can be neither printed nor used, so nothing is written.
    """
    fields = {
        "weights": params.weights,
        "means": params.means,
        "covariances": params.scale,
        "covariance matrices": params.covariance_matrices,
    }
    bad = [name for name, value in fields.items() if not np.all(np.isfinite(np.asarray(value)))]
    if bad:
        precision = "float32" if np.asarray(params.means).dtype == np.float32 else "float64"
        raise ValueError(
            f"Fitting the mixture failed: the fitted {bad[0]} are not finite in {precision}; rescale the columns"
            + (" or set JAX_ENABLE_X64=1 for float64." if precision == "float32" else ".")
        )
    return params


def run_fit(args, report: Report) -> int:
    from bayesgmm import em_fit, infer

    out = _check_fit_out(args.out, args.method) if args.out else None  # refuse bad outputs before the fit
    plot_path = _check_plot(args.plot) if args.plot else None
    X, names = read_table(args.file, args.columns)
    report.line(f"{args.file}: {X.shape[0]} rows, features {', '.join(names)}")
    posterior = None
    if args.method == "em":
        with report.stage(
            f"EM: fitting k = {args.k} ({args.covariance_type} covariances), best of {args.n_init} restarts"
        ):
            result = em_fit(
                X,
                args.k,
                covariance_type=args.covariance_type,
                n_init=args.n_init,
                seed=args.seed,
                max_iter=args.max_iter,
            )
        report.line(
            f"EM: mean log-likelihood {result.log_likelihood:.4f}, BIC {float(result.params.bic(X)):.2f}, "
            f"{result.n_iter} iterations, converged: {result.converged}"
        )
        params = _check_finite(result.params)
    else:
        import pandas as pd

        stages = {
            "nuts": f"NUTS: {args.num_chains} chains x ({args.num_warmup} warm-up + {args.num_samples} draws)",
            "svi": f"SVI: {args.num_steps} optimisation steps, then {args.num_samples} draws from the guide",
            "map": f"MAP: {args.num_steps} optimisation steps",
        }
        # NUTS prints its own progress lines; a spinner would fight with them
        with report.stage(
            f"{stages[args.method]}, k = {args.k} ({args.covariance_type})", spinner=args.method != "nuts"
        ):
            posterior = infer(
                pd.DataFrame(X, columns=names),
                args.k,
                method=args.method,
                covariance_type=args.covariance_type,
                seed=args.seed,
                num_warmup=args.num_warmup,
                num_samples=args.num_samples,
                num_chains=args.num_chains,
                num_steps=args.num_steps,
                progress_bar=args.progress and args.method == "nuts",
            )
        params = _check_finite(posterior.mean_params())
        if args.method == "map":
            report.line("MAP estimate (posterior mode):")
        else:
            report.line(f"{args.method.upper()} posterior summary (components labelled as the EM fit):")
            report.line(_posterior_summary(posterior))
            if args.method == "nuts":
                divergent = int(np.sum(posterior.sample_stats["diverging"]))
                report.line(f"divergent transitions: {divergent}")
            report.line("\nPosterior mean parameters:")
    report.line(describe_params(params, names))
    # everything is rendered before anything is written: a failing plot leaves no --out behind
    figure = _fit_plot(plot_path, params, posterior, X, names) if plot_path else None
    if out is not None:
        if out.suffix.lower() == POSTERIOR_SUFFIX:
            _write_bytes(out, bytes(posterior.to_arviz().to_netcdf(engine=_netcdf_engine())))
            report.line(f"Wrote the posterior (ArviZ DataTree, netCDF-4) to {out}")
        else:
            from bayesgmm.io import save

            save(params, out)
            what = "parameters" if posterior is None else "posterior mean parameters"
            report.line(f"Wrote the {what} to {out}")
    if figure is not None:
        _write_bytes(plot_path, figure)
        report.line(f"Wrote the plot to {plot_path}")
    return 0


# ----------------------------------------------------------------------------- select


def _selection_rows(selection) -> tuple[list[str], list[list], int]:
    """Header, formatted rows and the index of the chosen row of a ``Selection.table``."""
    table = selection.table
    header = ["k", "covariance", "mean log-lik", "params", "BIC", "AIC", "ICL", "iterations", "converged"]
    rows, chosen = [], 0
    for index, row in enumerate(table.itertuples(index=False)):
        best = int(row.k) == selection.best_k and row.covariance_type == selection.best_covariance_type
        chosen = index if best else chosen
        rows.append(
            [
                int(row.k),
                row.covariance_type,
                f"{row.log_likelihood:.4f}",
                int(row.n_parameters),
                f"{row.bic:.2f}",
                f"{row.aic:.2f}",
                f"{row.icl:.2f}",
                int(row.n_iter),
                "yes" if row.converged else "no",
            ]
        )
    return header, rows, chosen


def run_select(args, report: Report) -> int:
    from bayesgmm import select
    from bayesgmm._errors import ConvergenceWarning

    ks = parse_ks(args.k)
    types = parse_covariance_types(args.covariance_types)
    _check_at_least_one(args)
    out = check_output(args.out, "--out", TABLE_SUFFIXES, ".csv") if args.out else None
    plot_path = _check_plot(args.plot) if args.plot else None
    X, names = read_table(args.file, args.columns)
    report.line(f"{args.file}: {X.shape[0]} rows, features {', '.join(names)}")
    n_fits = len(ks) * len(types)
    with report.stage(
        f"EM: fitting {n_fits} mixtures (k in {_format_ks(ks)} x {', '.join(types)}), best of {args.n_init} restarts"
    ):
        with warnings.catch_warnings():  # the table's "converged" column reports it, once per fit
            warnings.simplefilter("ignore", ConvergenceWarning)
            selection = select(
                X, ks, types, criterion=args.criterion, n_init=args.n_init, max_iter=args.max_iter, seed=args.seed
            )
    header, rows, chosen = _selection_rows(selection)
    report.line()
    report.table(header, rows, best=chosen, why=f"lowest {args.criterion.upper()}")
    not_converged = int((~selection.table["converged"].astype(bool)).sum())
    if not_converged:
        warnings.warn(
            f"{not_converged} of {n_fits} fits did not converge in --max-iter {args.max_iter} iterations "
            "(converged: no); raise --max-iter.",
            stacklevel=1,
        )
    report.line(
        f"\nChosen by {args.criterion.upper()}: k = {selection.best_k}, "
        f"covariance type {selection.best_covariance_type}"
    )
    report.line(describe_params(selection.best.params, names))
    figure = None
    if plot_path:
        from bayesgmm.plot import plot_criterion

        figure = _figure_bytes(plot_criterion(selection, args.criterion).figure, plot_path)
    if out is not None:
        _write_bytes(out, selection.table.to_csv(index=False).encode())
        report.line(f"Wrote the table to {out}")
    if figure is not None:
        _write_bytes(plot_path, figure)
        report.line(f"Wrote the {args.criterion.upper()} plot to {plot_path}")
    return 0


def _format_ks(ks: list[int]) -> str:
    if ks == list(range(ks[0], ks[-1] + 1)) and len(ks) > 2:
        return f"{ks[0]}..{ks[-1]}"
    return ",".join(map(str, ks))


def _check_at_least_one(args) -> None:
    if args.n_init < 1 or args.max_iter < 1:
        raise ValueError(f"--n-init and --max-iter must be >= 1, got {args.n_init} and {args.max_iter}.")


# ----------------------------------------------------------------------------- demo


def run_demo(args, report: Report) -> int:
    from bayesgmm import select
    from bayesgmm.datasets import FAITHFUL_COLUMNS, load_faithful

    if args.max_k < 1 or args.n_init < 1:
        raise ValueError(f"--max-k and --n-init must be >= 1, got {args.max_k} and {args.n_init}.")
    X = load_faithful()
    report.line(f"Old Faithful: {X.shape[0]} eruptions, features {', '.join(FAITHFUL_COLUMNS)}")
    report.line(
        f"Fitting full-covariance Gaussian mixtures by EM, k = 1..{args.max_k}, best of {args.n_init} restarts\n"
    )
    selection = select(X, range(1, args.max_k + 1), "full", n_init=args.n_init, seed=args.seed, max_iter=500)
    best_k = selection.best_k
    rows = [
        [
            int(row.k),
            f"{row.log_likelihood:.4f}",
            f"{row.bic:.2f}",
            int(row.n_iter),
            "yes" if row.converged else "no",
        ]
        for row in selection.table.itertuples(index=False)
    ]
    report.table(["k", "mean log-lik", "BIC", "iterations", "converged"], rows, best=best_k - 1, why="lowest BIC")
    best = selection.best
    report.line(f"\nChosen by BIC: k = {best_k}")
    report.line(describe_params(best.params, FAITHFUL_COLUMNS))
    if args.posterior:
        from bayesgmm import infer

        report.line(
            f"\nBayesian fit of k = {best_k} by NUTS (2 chains, 500 warm-up + 500 draws), "
            "components labelled as the EM fit:"
        )
        posterior = infer(
            load_faithful(as_frame=True),
            best_k,
            method="nuts",
            num_warmup=500,
            num_samples=500,
            num_chains=2,
            seed=args.seed,
            progress_bar=False,
        )
        report.line(_posterior_summary(posterior))
        divergent = int(posterior.sample_stats["diverging"].sum())
        report.line(f"divergent transitions: {divergent}; r_hat near 1 and large ess_bulk mean the chains agree.")
    if args.plot:
        try:
            from bayesgmm.plot import plot_density

            path = Path(args.plot)
            _write_bytes(path, _figure_bytes(plot_density(best.params, X, feature_names=FAITHFUL_COLUMNS).figure, path))
            report.line(f"\nWrote the density plot to {path}")
        except ImportError as error:
            report.line(f"\n(no plot: {error})")
    return 0


# ----------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bayesgmm", description="Gaussian mixture models on JAX.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="fit the Old Faithful data shipped with the package")
    demo.add_argument("--max-k", type=int, default=4, help="fit k = 1..MAX_K components (default 4)")
    demo.add_argument("--n-init", type=int, default=5, help="EM restarts per k (default 5)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--plot",
        default="bayesgmm-demo.png",
        help="PNG file for the density plot (default bayesgmm-demo.png; '' for none)",
    )
    demo.add_argument(
        "--no-posterior", dest="posterior", action="store_false", help="skip the Bayesian (NUTS) part of the demo"
    )
    demo.set_defaults(run=run_demo)

    data_help = "a CSV file with a header line, a 2-D .npy array, or a .parquet table (needs pyarrow)"
    fit = commands.add_parser("fit", help="fit one mixture to a data file (EM, NUTS, SVI or MAP)")
    fit.add_argument("file", help=data_help)
    fit.add_argument("-k", "--k", type=int, required=True, help="number of components")
    fit.add_argument("--method", choices=["em", "nuts", "svi", "map"], default="em")
    fit.add_argument("--covariance-type", choices=COVARIANCE_TYPES, default="full")
    fit.add_argument("--columns", help="comma-separated column names to use (.npy columns are x0, x1, ...)")
    fit.add_argument("--n-init", type=int, default=5, help="EM restarts (default 5)")
    fit.add_argument("--max-iter", type=int, default=500, help="EM iterations at most (default 500)")
    fit.add_argument("--num-warmup", type=int, default=500, help="NUTS warm-up steps per chain (default 500)")
    fit.add_argument("--num-samples", type=int, default=1000, help="NUTS draws per chain, SVI draws (default 1000)")
    fit.add_argument("--num-chains", type=int, default=4, help="NUTS chains (default 4)")
    fit.add_argument("--num-steps", type=int, default=5000, help="SVI/MAP optimisation steps (default 5000)")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument(
        "--out",
        help="write the (posterior-mean) parameters to .json or .npz, or the posterior (NUTS, SVI, MAP) to .nc",
    )
    fit.add_argument("--plot", help="write a plot of the fit (.png, .pdf or .svg)")
    fit.add_argument("--no-progress", dest="progress", action="store_false", help="no NUTS progress lines")
    fit.set_defaults(run=run_fit)

    select = commands.add_parser("select", help="pick k and the covariance type by BIC, AIC or ICL (EM grid)")
    select.add_argument("file", help=data_help)
    select.add_argument("-k", "--k", default="1-9", help="numbers of components: 1-9, 2,3,5 or 1-4,8 (default 1-9)")
    select.add_argument(
        "--covariance-types",
        default=",".join(COVARIANCE_TYPES),
        help=f"comma-separated covariance types (default {','.join(COVARIANCE_TYPES)})",
    )
    select.add_argument("--criterion", choices=["bic", "aic", "icl"], default="bic", help="lower is better")
    select.add_argument("--columns", help="comma-separated column names to use (.npy columns are x0, x1, ...)")
    select.add_argument("--n-init", type=int, default=5, help="EM restarts per fit (default 5)")
    select.add_argument("--max-iter", type=int, default=500, help="EM iterations at most (default 500)")
    select.add_argument("--seed", type=int, default=0)
    select.add_argument("--out", help="write the table to a .csv file")
    select.add_argument("--plot", help="write the criterion against k (.png, .pdf or .svg)")
    select.set_defaults(run=run_select)
    return parser


def main(argv=None) -> int:
    """Run ``bayesgmm`` with the arguments ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Warnings raised during a command are held back and printed once it succeeds, one line each;
    a command that fails prints only its error, so a failure is always one line on stderr.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    report = Report.for_stdout()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default", UserWarning)  # fit warnings (convergence, degenerate) are not errors here
            status = args.run(args, report)
    except (ValueError, OSError, ImportError) as error:  # bad input, a missing extra, an output that cannot be written
        print(f"bayesgmm: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bayesgmm: interrupted", file=sys.stderr)
        return 130
    for message in dict.fromkeys(_one_line(warning.message) for warning in caught):
        print(f"bayesgmm: warning: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
