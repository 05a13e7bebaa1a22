"""What the commands print: plain text, or rich tables and spinners on a terminal (rich is optional)."""

from __future__ import annotations

import contextlib
import re
import sys
import time

import numpy as np


def one_line(text) -> str:
    """``text`` (an error, a warning's message) on one line: newlines and their indents become one space."""
    return re.sub(r"\s*\n\s*", " ", str(text)).strip()


def rich_console():
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
        return cls(rich_console())

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
            self.line(format_table(header + [""], [row + [mark] for row, mark in zip(rows, marks)]))
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


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """A plain-text table: right-aligned columns, a rule of dashes under the header.

    Examples
    --------
    >>> print(format_table(["k", "BIC"], [[1, "10.00"], [12, "8.50"]]))
     k    BIC
    --  -----
     1  10.00
    12   8.50
    """
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = [header, ["-" * width for width in widths], *rows]
    return "\n".join(_format_row(cells, widths) for cells in lines)


def _format_row(cells: list, widths: list[int]) -> str:
    return "  ".join(str(cell).rjust(width) for cell, width in zip(cells, widths)).rstrip()


def _format_matrix(matrix, indent: str = "    ") -> str:
    return "\n".join(indent + "  ".join(f"{value:10.4f}" for value in row) for row in np.atleast_2d(matrix))


def describe_params(params, feature_names) -> str:
    """A readable block with the weights, means and covariances of a fitted mixture.

    Student-t components show their degrees of freedom ``ν`` and their scale matrix (the
    covariance is ``ν / (ν − 2)`` times it, for ``ν > 2``); a noise component its weight and volume.
    """
    weights = np.asarray(params.weights)
    means = np.asarray(params.means)
    covariances = np.asarray(params.covariance_matrices)
    dof = None if params.dof is None else np.asarray(params.dof)
    lines = []
    for component in range(params.n_components):
        degrees = "" if dof is None else f", degrees of freedom ν {dof[component]:.4g}"
        lines.append(f"  component {component}: weight {weights[component]:.4f}{degrees}")
        lines.append(
            "    mean        "
            + "  ".join(f"{name}={value:.4f}" for name, value in zip(feature_names, means[component]))
        )
        lines.append("    covariance" if dof is None else "    scale matrix")
        lines.append(_format_matrix(covariances[component], indent="      "))
    if params.noise_weight is not None:
        volume = float(np.prod(np.diff(np.asarray(params.noise_bounds), axis=0)))
        lines.append(f"  noise: weight {float(params.noise_weight):.4f}, uniform on a box of volume {volume:.4g}")
    return "\n".join(lines)


def posterior_summary(posterior) -> str:
    """The ArviZ summary of the weights, means and covariances of a ``Posterior``, as text."""
    import pandas as pd

    table = posterior.summary(var_names=["weights", "means", "covariances"], kind="all")
    with pd.option_context("display.width", 120, "display.max_rows", 200):
        return table.to_string()


def selection_rows(selection) -> tuple[list[str], list[list], int]:
    """Header, formatted rows and the index of the chosen row of a ``Selection.table``."""
    by_family = "family" in selection.table.columns
    header = ["k", "covariance"] + (["family"] if by_family else [])
    header += ["mean log-lik", "params", "BIC", "AIC", "ICL", "iterations", "converged", "start"]
    rows, chosen = [], 0
    for index, row in enumerate(selection.table.itertuples(index=False)):
        best = int(row.k) == selection.best_k and row.covariance_type == selection.best_covariance_type
        best = best and (not by_family or row.family == selection.best_family)
        chosen = index if best else chosen
        rows.append(
            [
                int(row.k),
                row.covariance_type,
                *([row.family] if by_family else []),
                f"{row.log_likelihood:.4f}",
                int(row.n_parameters),
                f"{row.bic:.2f}",
                f"{row.aic:.2f}",
                f"{row.icl:.2f}",
                int(row.n_iter),
                "yes" if row.converged else "no",
                row.start,
            ]
        )
    return header, rows, chosen


def format_ks(ks: list[int]) -> str:
    """``1..9`` for a run of three or more consecutive k, else ``2,3,5``.

    Examples
    --------
    >>> format_ks([1, 2, 3, 4]), format_ks([2, 3]), format_ks([1, 2, 5])
    ('1..4', '2,3', '1,2,5')
    """
    if ks == list(range(ks[0], ks[-1] + 1)) and len(ks) > 2:
        return f"{ks[0]}..{ks[-1]}"
    return ",".join(map(str, ks))
