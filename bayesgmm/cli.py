"""The ``bayesgmm`` command line.

``bayesgmm demo``: fit Old Faithful (shipped in the package) for k = 1..4, print a table
of log-likelihood and BIC, the chosen mixture's parameters, and write a PNG of its
density when matplotlib is installed.  Bad input exits with status 2 and one line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def _format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(cell).rjust(width) for cell, width in zip(cells, widths))  # noqa: E731
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
        lines.append("    mean        " + "  ".join(f"{name}={value:.4f}" for name, value in zip(feature_names, means[component])))
        lines.append("    covariance")
        lines.append(_format_matrix(covariances[component], indent="      "))
    return "\n".join(lines)


def run_demo(args) -> int:
    from bayesgmm import em_fit
    from bayesgmm.datasets import FAITHFUL_COLUMNS, load_faithful

    if args.max_k < 1 or args.n_init < 1:
        raise ValueError(f"--max-k and --n-init must be >= 1, got {args.max_k} and {args.n_init}.")
    X = load_faithful()
    print(f"Old Faithful: {X.shape[0]} eruptions, features {', '.join(FAITHFUL_COLUMNS)}")
    print(f"Fitting full-covariance Gaussian mixtures by EM, k = 1..{args.max_k}, best of {args.n_init} restarts\n")
    fits = {k: em_fit(X, k, n_init=args.n_init, seed=args.seed, max_iter=500) for k in range(1, args.max_k + 1)}
    bics = {k: float(fit.params.bic(X)) for k, fit in fits.items()}
    best_k = min(bics, key=bics.get)
    rows = [
        [k, f"{fit.log_likelihood:.4f}", f"{bics[k]:.2f}", fit.n_iter, "yes" if fit.converged else "no",
         "<- lowest BIC" if k == best_k else ""]
        for k, fit in fits.items()
    ]
    print(_format_table(["k", "mean log-lik", "BIC", "iterations", "converged", ""], rows))
    best = fits[best_k]
    print(f"\nChosen by BIC: k = {best_k}")
    print(describe_params(best.params, FAITHFUL_COLUMNS))
    if args.plot:
        try:
            from bayesgmm.io import atomic_write
            from bayesgmm.plot import plot_density

            ax = plot_density(best.params, X, feature_names=FAITHFUL_COLUMNS)
            path = Path(args.plot)
            atomic_write(path, lambda file: ax.figure.savefig(file, format="png", dpi=120, bbox_inches="tight"))
            print(f"\nWrote the density plot to {path}")
        except ImportError as error:
            print(f"\n(no plot: {error})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bayesgmm", description="Gaussian mixture models on JAX.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="fit the Old Faithful data shipped with the package")
    demo.add_argument("--max-k", type=int, default=4, help="fit k = 1..MAX_K components (default 4)")
    demo.add_argument("--n-init", type=int, default=5, help="EM restarts per k (default 5)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--plot", default="bayesgmm-demo.png",
                      help="PNG file for the density plot (default bayesgmm-demo.png; '' for none)")
    demo.set_defaults(run=run_demo)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:
        print(f"bayesgmm: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
