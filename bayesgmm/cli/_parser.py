"""The command line's arguments: the argparse parser and the parsers of ``--k`` and ``--covariance-types``."""

from __future__ import annotations

import argparse
import re

from bayesgmm.covariance import ALL_TYPES, COVARIANCE_TYPES, MCLUST_MODELS
from bayesgmm.families import FAMILIES

MAX_GRID_KS = 1000  # a --k range wider than this is a typo, not a grid


def parse_ks(text: str) -> list[int]:
    """The numbers of components in ``"1-9"``, ``"2,3,5"`` or ``"1-4,8"``: sorted, distinct, >= 1.

    Examples
    --------
    >>> parse_ks("1-4,8"), parse_ks("5, 2,3")
    ([1, 2, 3, 4, 8], [2, 3, 5])
    """
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
    """``"full,diag"`` as a list of covariance types, in the given order without repeats; "all": mclust's 14."""
    if str(text).strip() == "all":
        return list(MCLUST_MODELS)
    types = [name.strip() for name in str(text).split(",") if name.strip()]
    unknown = [name for name in types if name not in ALL_TYPES and name not in MCLUST_MODELS]
    if unknown or not types:
        raise ValueError(
            f"--covariance-types {text!r}: unknown {unknown or 'empty list'}; give 'all' (mclust's 14 models) "
            f"or a comma-separated list of {', '.join(COVARIANCE_TYPES)} or mclust's {', '.join(MCLUST_MODELS)}."
        )
    return list(dict.fromkeys(types))


def parse_families(text: str) -> list[str]:
    """``"gaussian,student_t"`` as a list of component families, in the given order without repeats.

    Examples
    --------
    >>> parse_families("student_t, gaussian")
    ['student_t', 'gaussian']
    """
    families = [name.strip() for name in str(text).split(",") if name.strip()]
    unknown = [name for name in families if name not in FAMILIES]
    if unknown or not families:
        raise ValueError(
            f"--families {text!r}: unknown {unknown or 'empty list'}; give a comma-separated list of "
            f"{', '.join(FAMILIES)}."
        )
    return list(dict.fromkeys(families))


def parse_dof(text: str | None):
    """``--dof``: None (one per component, estimated), ``"shared"`` (one for all) or a number > 0 (fixed).

    Examples
    --------
    >>> parse_dof(None), parse_dof("shared"), parse_dof("4.5")
    (None, 'shared', 4.5)
    """
    if text is None:
        return None
    if str(text).strip() == "shared":
        return "shared"
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not (value > 0 and value < float("inf")):
        raise ValueError(
            f"--dof {text!r}: give 'shared' (one estimated for all components) or a number > 0 to fix the degrees "
            "of freedom; leave it out to estimate one per component."
        )
    return value


def parse_condition(text: str, names) -> list[int]:
    """The positions of the ``--condition`` columns among ``names``: names, or 0-based positions, comma-separated.

    A name wins over a position (a column named ``"0"`` is that column). The columns must be
    distinct and leave at least one column to predict.

    Examples
    --------
    >>> parse_condition("waiting", ["eruptions", "waiting"]), parse_condition("2,0", ["a", "b", "c"])
    ([1], [2, 0])
    """
    names = list(names)
    given = []
    for part in str(text).split(","):
        token = part.strip()
        if token in names:
            given.append(names.index(token))
        elif re.fullmatch(r"\d+", token) and int(token) < len(names):
            given.append(int(token))
        else:
            raise ValueError(
                f"--condition {text!r}: no column {token!r}; give column names from {names} "
                f"or 0-based positions 0 to {len(names) - 1}, comma-separated."
            )
    repeated = sorted({names[index] for index in given if given.count(index) > 1})
    if repeated:
        raise ValueError(f"--condition {text!r} names the column {repeated[0]!r} twice; list each column once.")
    if len(given) == len(names):
        raise ValueError(
            f"--condition {text!r} names every column, leaving nothing to predict; leave at least one out."
        )
    return given


def build_parser() -> argparse.ArgumentParser:
    """``bayesgmm {demo, fit, select} ...``; the chosen command is ``args.command``."""
    parser = argparse.ArgumentParser(prog="bayesgmm", description="Gaussian mixture models on JAX.")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_demo(commands)
    _add_fit(commands)
    _add_select(commands)
    return parser


_DATA_HELP = "a CSV file with a header line, a 2-D .npy array, or a .parquet table (needs pyarrow)"
_COLUMNS_HELP = "comma-separated column names to use (.npy columns are x0, x1, ...)"
_SELECT_N_INIT_HELP = (
    "EM starts per fit: 1 (default) is mclust's deterministic hierarchical start, more are k-means++ restarts"
)


def _add_demo(commands) -> None:
    demo = commands.add_parser("demo", help="fit the Old Faithful data shipped with the package")
    demo.add_argument("--max-k", type=int, default=4, help="fit k = 1..MAX_K components (default 4)")
    demo.add_argument("--n-init", type=int, default=1, help=_SELECT_N_INIT_HELP)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--plot",
        default="bayesgmm-demo.png",
        help="PNG file for the density plot (default bayesgmm-demo.png; '' for none)",
    )
    demo.add_argument(
        "--no-posterior", dest="posterior", action="store_false", help="skip the Bayesian (NUTS) part of the demo"
    )


def _add_fit(commands) -> None:
    fit = commands.add_parser("fit", help="fit one mixture to a data file (EM, NUTS, SVI or MAP)")
    fit.add_argument("file", help=_DATA_HELP)
    fit.add_argument("-k", "--k", type=int, required=True, help="number of components")
    fit.add_argument("--method", choices=["em", "nuts", "svi", "map"], default="em")
    fit.add_argument(
        "--covariance-type",
        choices=ALL_TYPES + tuple(name for name in MCLUST_MODELS if name not in ALL_TYPES),
        default="full",
        metavar="TYPE",
        help="full, tied, diag, spherical or one of mclust's 14 models (EII ... VVV; EM only for the 10 "
        "beyond scikit-learn's four) (default full)",
    )
    fit.add_argument("--columns", help=_COLUMNS_HELP)
    fit.add_argument(
        "--family",
        choices=tuple(FAMILIES),
        default="gaussian",
        help="the components' distribution: gaussian (default) or student_t (multivariate t, robust to outliers; "
        "EM only)",
    )
    fit.add_argument(
        "--dof",
        metavar="shared|FLOAT",
        help="with --family student_t: 'shared' estimates one degrees of freedom for all components, a number "
        "fixes them (default: one estimated per component)",
    )
    fit.add_argument(
        "--errors",
        metavar="FILE",
        help="known measurement errors of the rows, for extreme deconvolution (EM, Gaussian components): a file "
        "read like the data with one row per data row, holding each value's error standard deviation (columns "
        "named as the fitted ones, or exactly as many columns in the same order), or a 3-D .npy array "
        "(n_samples, d, d) of each row's error covariance over the fitted columns",
    )
    fit.add_argument(
        "--noise",
        action="store_true",
        help="add a uniform background-noise component on the data's bounding box (mclust's noise; EM only): "
        "rows far from every cluster are labelled noise",
    )
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
    fit.add_argument(
        "--condition",
        metavar="COLS",
        help="mixture regression: predict the other columns from these (names or 0-based positions among the "
        "fitted columns, comma-separated); needs --predictions",
    )
    fit.add_argument(
        "--predictions",
        metavar="FILE",
        help="with --condition: write, for each data row, the given columns and the conditional mean and "
        "standard deviation of every other column (NAME_mean, NAME_sd) to a .csv file",
    )
    fit.add_argument("--no-progress", dest="progress", action="store_false", help="no NUTS progress lines")


def _add_select(commands) -> None:
    select = commands.add_parser(
        "select", help="pick k, the covariance type (and the family) by BIC, AIC or ICL (EM grid)"
    )
    select.add_argument("file", help=_DATA_HELP)
    select.add_argument("-k", "--k", default="1-9", help="numbers of components: 1-9, 2,3,5 or 1-4,8 (default 1-9)")
    select.add_argument(
        "--covariance-types",
        default=",".join(COVARIANCE_TYPES),
        help=f"comma-separated covariance types, or all for mclust's 14 models (default {','.join(COVARIANCE_TYPES)})",
    )
    select.add_argument("--criterion", choices=["bic", "aic", "icl"], default="bic", help="lower is better")
    select.add_argument(
        "--families",
        default="gaussian",
        help="comma-separated component families to compare, e.g. gaussian,student_t (default gaussian)",
    )
    select.add_argument(
        "--noise", action="store_true", help="every fit gets a uniform background-noise component (as fit --noise)"
    )
    select.add_argument("--columns", help=_COLUMNS_HELP)
    select.add_argument("--n-init", type=int, default=1, help=_SELECT_N_INIT_HELP)
    select.add_argument(
        "--close-call-starts",
        type=int,
        default=5,
        help="with the hierarchical start, k-means restarts for the (at most 3) fits within 30 of the best "
        "criterion (default 5; 0: none)",
    )
    select.add_argument("--max-iter", type=int, default=500, help="EM iterations at most (default 500)")
    select.add_argument("--seed", type=int, default=0)
    select.add_argument("--out", help="write the table to a .csv file")
    select.add_argument("--plot", help="write the criterion against k (.png, .pdf or .svg)")
