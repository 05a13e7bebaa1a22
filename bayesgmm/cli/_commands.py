"""The commands ``fit``, ``select`` and ``demo``: each checks its outputs, fits, prints, then writes."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from bayesgmm import ConvergenceWarning, em_fit, infer, plot, select
from bayesgmm.cli._files import (
    POSTERIOR_SUFFIX,
    TABLE_SUFFIXES,
    check_fit_output,
    check_output,
    check_plot,
    figure_bytes,
    netcdf_engine,
    read_errors,
    read_table,
    write_bytes,
)
from bayesgmm.cli._parser import parse_condition, parse_covariance_types, parse_dof, parse_families, parse_ks
from bayesgmm.cli._render import Report, describe_params, format_ks, posterior_summary, selection_rows
from bayesgmm.datasets import FAITHFUL_COLUMNS, load_faithful
from bayesgmm.io import save
from bayesgmm.selection import CLOSE_CALL_STARTS

# ----------------------------------------------------------------------------- fit


def run_fit(args, report: Report) -> int:
    """``bayesgmm fit``: one mixture by EM, NUTS, SVI or MAP; its parameters, plot and posterior."""
    out = check_fit_output(args.out, args.method) if args.out else None  # refuse bad outputs before the fit
    plot_path = check_plot(args.plot) if args.plot else None
    predictions = _check_predictions(args)
    dof = _check_family(args)
    X, names = read_table(args.file, args.columns)
    given = parse_condition(args.condition, names) if args.condition else None  # before the fit too
    errors = read_errors(args.errors, X, names) if args.errors else None
    report.line(f"{args.file}: {X.shape[0]} rows, features {', '.join(names)}")
    if errors is not None:
        layout = "covariance matrices" if errors.ndim == 3 else "standard deviations"
        report.line(f"{args.errors}: measurement errors ({layout}) of the {X.shape[0]} rows")
    if args.method == "em":
        params, posterior = _fit_em(args, X, report, dof, errors), None
    else:  # the EM fit first, shown: the posterior starts there and is labelled as it
        posterior = _fit_posterior(args, X, names, report, _fit_em(args, X, report, dof, errors))
        params = check_finite(posterior.mean_params())
        _report_posterior(args.method, posterior, report)
    report.line(describe_params(params, names))
    # everything is rendered before anything is written: a failing plot leaves no --out behind
    figure = fit_plot(plot_path, params, posterior, X, names) if plot_path else None
    table = regression_table(posterior or params, X, names, given) if given else None
    if out is not None:
        if out.suffix.lower() == POSTERIOR_SUFFIX:
            write_bytes(out, bytes(posterior.to_arviz().to_netcdf(engine=netcdf_engine())))
            report.line(f"Wrote the posterior (ArviZ DataTree, netCDF-4) to {out}")
        else:
            save(params, out)
            what = "parameters" if posterior is None else "posterior mean parameters"
            report.line(f"Wrote the {what} to {out}")
    if figure is not None:
        write_bytes(plot_path, figure)
        report.line(f"Wrote the plot to {plot_path}")
    if table is not None:
        write_bytes(predictions, table.encode())
        what = "conditional" if posterior is None else "posterior predictive conditional"
        given_names = ", ".join(names[index] for index in given)
        report.line(f"Wrote the {what} means and standard deviations given {given_names} to {predictions}")
    return 0


def _check_family(args):
    """``--family``, ``--dof`` and ``--errors`` against each other and ``--method``; the parsed ``--dof``."""
    if args.dof is not None and args.family != "student_t":
        raise ValueError(f"--dof {args.dof} applies to Student-t components; add --family student_t, or drop --dof.")
    if args.method != "em" and (args.family != "gaussian" or args.errors or args.noise):
        option = f"--family {args.family}" if args.family != "gaussian" else ("--errors" if args.errors else "--noise")
        raise ValueError(
            f"{option} is fitted by EM only; use --method em (the Bayesian model has Gaussian components "
            "without measurement errors)."
        )
    if args.errors and args.family != "gaussian":
        raise ValueError(
            "--errors (extreme deconvolution) needs Gaussian components: a Student-t component convolved with "
            "Gaussian errors has no closed form. Drop --family student_t or --errors."
        )
    if args.noise and args.condition:
        raise ValueError("--condition (mixture regression) needs a fit without --noise; drop one of them.")
    return parse_dof(args.dof)


def _check_predictions(args):
    """``--predictions``: a writable .csv path, given exactly when ``--condition`` is."""
    if args.condition and not args.predictions:
        raise ValueError("--condition needs --predictions FILE.csv, the file to write the conditional means to.")
    if args.predictions and not args.condition:
        raise ValueError("--predictions needs --condition COLS, the columns to predict the others from.")
    return check_output(args.predictions, "--predictions", TABLE_SUFFIXES, ".csv") if args.predictions else None


def regression_table(model, X, names, given) -> str:
    """CSV text: for each row of ``X``, its ``given`` columns, then the conditional mean (``NAME_mean``) and
    standard deviation (``NAME_sd``) of every other column under ``model`` (a ``GMMParams`` or a ``Posterior``:
    ``predict_mean``, ``predict_cov``)."""
    import pandas as pd

    other = [index for index in range(len(names)) if index not in given]
    values = X[:, given]
    mean = np.asarray(model.predict_mean(values, given))
    sd = np.sqrt(np.diagonal(np.asarray(model.predict_cov(values, given)), axis1=-2, axis2=-1))
    columns = {names[index]: values[:, j] for j, index in enumerate(given)}
    for j, index in enumerate(other):
        columns[f"{names[index]}_mean"] = mean[:, j]
        columns[f"{names[index]}_sd"] = sd[:, j]
    return pd.DataFrame(columns).to_csv(index=False)  # floats as Python writes them: shortest round trip


def _fit_em(args, X, report: Report, dof=None, errors=None):
    """The EM fit's parameters (checked finite), after its log-likelihood, BIC and convergence line.

    ``dof``: the parsed ``--dof``; ``errors``: the rows' measurement errors (``--errors``) or None.
    """
    what = f"{args.covariance_type} covariances"
    if args.family != "gaussian":
        degrees = _DOF_WORDS[dof] if dof is None or dof == "shared" else f" with {dof:g} degrees of freedom"
        what += f", Student-t components{degrees}"
    if errors is not None:
        what += ", deconvolving the measurement errors"
    if args.noise:
        what += ", with a uniform noise component"
    with report.stage(f"EM: fitting k = {args.k} ({what}), best of {args.n_init} restarts"):
        result = em_fit(
            X,
            args.k,
            covariance_type=args.covariance_type,
            n_init=args.n_init,
            seed=args.seed,
            max_iter=args.max_iter,
            family=args.family,
            dof=dof,
            measurement_error=errors,
            noise=args.noise,
        )
    params = result.params
    if errors is None:
        bic = float(params.bic(X))
    else:  # the likelihood of the observed rows, each with its errors
        log_likelihood = float(np.sum(np.asarray(params.log_prob(X, measurement_error=errors))))
        bic = -2.0 * log_likelihood + params.n_parameters * np.log(X.shape[0])
    report.line(
        f"EM: mean log-likelihood {result.log_likelihood:.4f}, BIC {bic:.2f}, "
        f"{result.n_iter} iterations, converged: {result.converged}"
    )
    return check_finite(params)


_DOF_WORDS = {None: " (degrees of freedom per component)", "shared": " (one shared degrees of freedom)"}


_POSTERIOR_STAGES = {
    "nuts": "NUTS: {args.num_chains} chains x ({args.num_warmup} warm-up + {args.num_samples} draws)",
    "svi": "SVI: {args.num_steps} optimisation steps, then {args.num_samples} draws from the guide",
    "map": "MAP: {args.num_steps} optimisation steps",
}


def _fit_posterior(args, X, names, report: Report, start):
    """``infer`` with the command's settings, from the EM fit ``start`` (its labelling): a ``Posterior``
    whose features carry the column names."""
    import pandas as pd

    stage = _POSTERIOR_STAGES[args.method].format(args=args)
    # NUTS prints its own progress lines; a spinner would fight with them
    with report.stage(f"{stage}, k = {args.k} ({args.covariance_type})", spinner=args.method != "nuts"):
        return infer(
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
            init=start,
        )


def _report_posterior(method: str, posterior, report: Report) -> None:
    """What comes before the parameters: the MAP heading, or the posterior summary (and NUTS's divergences)."""
    if method == "map":
        report.line("MAP estimate (posterior mode):")
        return
    report.line(f"{method.upper()} posterior summary (components labelled as the EM fit):")
    report.line(posterior_summary(posterior))
    if method == "nuts":
        divergent = int(np.sum(posterior.sample_stats["diverging"]))
        report.line(f"divergent transitions: {divergent}")
    report.line("\nPosterior mean parameters:")


def fit_plot(path: Path, params, posterior, X, names) -> bytes:
    """The fit's plot in ``path``'s format: pair plot (d != 2), posterior ellipses (NUTS, SVI) or density."""
    if params.n_features != 2:
        figure = plot.plot_pairs(params, X, feature_names=names)
    elif posterior is not None and posterior.method in ("nuts", "svi"):
        figure = plot.plot_posterior_ellipses(posterior, X, feature_names=names).figure
    else:
        figure = plot.plot_density(params, X, feature_names=names).figure
    return figure_bytes(figure, path)


def check_finite(params):
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


# ----------------------------------------------------------------------------- select


def run_select(args, report: Report) -> int:
    """``bayesgmm select``: the (k, covariance type) grid by EM, its table, the chosen mixture, the plot."""
    ks = parse_ks(args.k)
    types = parse_covariance_types(args.covariance_types)
    families = parse_families(args.families)
    _check_at_least_one(args)
    out = check_output(args.out, "--out", TABLE_SUFFIXES, ".csv") if args.out else None
    plot_path = check_plot(args.plot) if args.plot else None
    X, names = read_table(args.file, args.columns)
    report.line(f"{args.file}: {X.shape[0]} rows, features {', '.join(names)}")
    n_fits = len(ks) * len(types) * len(families)
    grid = f"k in {format_ks(ks)} x {', '.join(types)}" + (f" x {', '.join(families)}" if len(families) > 1 else "")
    if families != ["gaussian"] and len(families) == 1:
        grid += f", {families[0]} components"
    with report.stage(f"EM: fitting {n_fits} mixtures ({grid}), {_starts(args)}"):
        with warnings.catch_warnings():  # the table's "converged" column reports it, once per fit
            warnings.simplefilter("ignore", ConvergenceWarning)
            selection = select(
                X,
                ks,
                types,
                criterion=args.criterion,
                n_init=args.n_init,
                max_iter=args.max_iter,
                seed=args.seed,
                families=families,
                noise=args.noise,
                close_call_starts=args.close_call_starts,
            )
    header, rows, chosen = selection_rows(selection)
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
        + (f", family {selection.best_family}" if families != ["gaussian"] else "")
    )
    report.line(describe_params(selection.best.params, names))
    figure = figure_bytes(plot.plot_criterion(selection, args.criterion).figure, plot_path) if plot_path else None
    if out is not None:
        write_bytes(out, selection.table.to_csv(index=False).encode())
        report.line(f"Wrote the table to {out}")
    if figure is not None:
        write_bytes(plot_path, figure)
        report.line(f"Wrote the {args.criterion.upper()} plot to {plot_path}")
    return 0


def _starts(args) -> str:
    """How select starts EM for ``--n-init``."""
    if args.n_init == 1:
        close_calls = getattr(args, "close_call_starts", CLOSE_CALL_STARTS)  # the demo: select's default
        if close_calls:
            return (
                f"started from mclust's hierarchical clustering, the closest calls rechecked from {close_calls} "
                "k-means starts"
            )
        return "started from mclust's hierarchical clustering"
    return f"best of {args.n_init} k-means++ restarts"


def _check_at_least_one(args) -> None:
    if args.n_init < 1 or args.max_iter < 1:
        raise ValueError(f"--n-init and --max-iter must be >= 1, got {args.n_init} and {args.max_iter}.")


# ----------------------------------------------------------------------------- demo


def run_demo(args, report: Report) -> int:
    """``bayesgmm demo``: Old Faithful's BIC table for k = 1..max_k, the chosen fit, NUTS, a density plot."""
    if args.max_k < 1 or args.n_init < 1:
        raise ValueError(f"--max-k and --n-init must be >= 1, got {args.max_k} and {args.n_init}.")
    X = load_faithful()
    report.line(f"Old Faithful: {X.shape[0]} eruptions, features {', '.join(FAITHFUL_COLUMNS)}")
    report.line(f"Fitting full-covariance Gaussian mixtures by EM, k = 1..{args.max_k}, {_starts(args)}\n")
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
        _demo_posterior(best, args.seed, report)
    if args.plot:
        try:
            path = Path(args.plot)
            figure = plot.plot_density(best.params, X, feature_names=FAITHFUL_COLUMNS).figure
            write_bytes(path, figure_bytes(figure, path))
            report.line(f"\nWrote the density plot to {path}")
        except ImportError as error:
            report.line(f"\n(no plot: {error})")
    return 0


def _demo_posterior(fit, seed: int, report: Report) -> None:
    """NUTS from the EM fit shown above, its draws labelled as that fit's components."""
    k = fit.params.n_components
    report.line(
        f"\nBayesian fit of k = {k} by NUTS (2 chains, 500 warm-up + 500 draws), components labelled as the EM fit:"
    )
    posterior = infer(
        load_faithful(as_frame=True),
        k,
        method="nuts",
        num_warmup=500,
        num_samples=500,
        num_chains=2,
        seed=seed,
        progress_bar=False,
        init=fit,
    )
    report.line(posterior_summary(posterior))
    divergent = int(posterior.sample_stats["diverging"].sum())
    report.line(f"divergent transitions: {divergent}; r_hat near 1 and large ess_bulk mean the chains agree.")


COMMANDS = {"demo": run_demo, "fit": run_fit, "select": run_select}  # argparse's args.command -> its function
