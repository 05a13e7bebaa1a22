"""The ``bayesgmm`` command line: ``fit``, ``select`` and ``demo``.

- ``bayesgmm fit FILE -k K [--method em|svi|nuts|map] [--covariance-type T] [--columns a,b]
  [--out params.json|params.npz|posterior.nc] [--plot fit.png]``: fit one mixture and print its
  parameters (EM, MAP) or an ArviZ posterior summary and the posterior-mean parameters (NUTS,
  SVI). ``.json`` and ``.npz`` hold the (posterior-mean) ``GMMParams`` (``bayesgmm.save``);
  ``.nc`` holds the posterior's ArviZ ``xarray.DataTree`` (``Posterior.to_arviz()``; EM has no
  posterior, so EM refuses it). ``--plot``: density contours with the component ellipses
  (d = 2), the posterior ellipse clouds (NUTS and SVI, d = 2), or a pair plot of the exact
  marginals (any other d). ``--condition COLS --predictions pred.csv``: mixture regression;
  for each data row, the COLS columns (names, or 0-based positions among the fitted columns)
  and the conditional mean and standard deviation of every other column (``NAME_mean``,
  ``NAME_sd``; ``GMMParams.predict_mean`` and ``predict_cov``, or the posterior predictive
  ``Posterior.predict_mean`` and ``predict_cov`` for NUTS, SVI and MAP). ``--family student_t
  [--dof shared|FLOAT]`` (EM): Student-t components, printed with their degrees of freedom.
  ``--errors FILE`` (EM, Gaussian): extreme deconvolution with the rows' known measurement
  errors: a table read like the data, one row per data row, of error standard deviations (the
  columns named as the fitted ones, or exactly as many columns in the same order), or a 3-D
  ``.npy`` array ``(n_samples, d, d)`` of error covariances over the fitted columns.
- ``bayesgmm select FILE [-k 1-9] [--covariance-types full,tied,diag,spherical]
  [--criterion bic|aic|icl] [--families gaussian,student_t] [--plot bic.png] [--out table.csv]``:
  the model-selection grid (``bayesgmm.select``): print one row per (k, covariance type[,
  family]) and the chosen mixture;
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

The package, each module importing only those listed before it: ``_render`` (plain or rich
text), ``_files`` (data readers, output checks, atomic writes), ``_parser`` (argparse),
``_commands`` (``fit``, ``select``, ``demo``) and this module (``main``).
"""

from __future__ import annotations

import sys
import warnings

from bayesgmm.cli._commands import COMMANDS
from bayesgmm.cli._files import check_output, read_table
from bayesgmm.cli._parser import build_parser, parse_condition, parse_covariance_types, parse_ks
from bayesgmm.cli._render import Report, describe_params, one_line

__all__ = [
    "Report",
    "build_parser",
    "check_output",
    "describe_params",
    "main",
    "parse_condition",
    "parse_covariance_types",
    "parse_ks",
    "read_table",
]


def main(argv=None) -> int:
    """Run ``bayesgmm`` with the arguments ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Warnings raised during a command are held back and printed once it succeeds, one line each;
    a command that fails prints only its error, so a failure is always one line on stderr.
    """
    args = build_parser().parse_args(argv)
    report = Report.for_stdout()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default", UserWarning)  # fit warnings (convergence, degenerate) are not errors here
            status = COMMANDS[args.command](args, report)
    except (ValueError, OSError, ImportError) as error:  # bad input, a missing extra, an output that cannot be written
        print(f"bayesgmm: error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bayesgmm: interrupted", file=sys.stderr)
        return 130
    for message in dict.fromkeys(one_line(warning.message) for warning in caught):
        print(f"bayesgmm: warning: {message}", file=sys.stderr)
    return status
