"""Time EM per iteration: bayesgmm's ``em_fit`` against scikit-learn's ``GaussianMixture``.

What is measured
----------------
For each workload ``(n, d, k)`` (full covariances; float64, except the two float32
columns below) every library fits the same data from the same initial parameters for the
same number of iterations ``M``:

- data: a known mixture (fixed seed) with well-separated random means and random SPD
  covariances;
- initial parameters: uniform weights, ``k`` rows of ``X`` chosen with a fixed rng as
  means, and the covariance of the whole data set repeated ``k`` times as covariances;
- ``tol=0`` so that no library stops early, ``reg_covar=1e-6`` (all but pomegranate).

One call does ``M`` E- and M-steps plus one final E-step in every library
(scikit-learn's ``fit`` re-runs the E-step after the loop; ``em_fit`` evaluates the
log-likelihood of the returned parameters; pomegranate and gmmx are followed by one
log-likelihood pass inside the timed call), plus input checks and set-up.  The
reported time per iteration is ``median(wall time of one call) / M`` for all, so the
final E-step and the fixed costs are spread over the ``M`` iterations in the same way.

- bayesgmm: the first call (tracing + XLA compilation + one run) is timed and reported
  on its own, then ``--repeats`` calls are timed, each ending with
  ``jax.block_until_ready`` on the returned parameters.
- scikit-learn: one untimed warm-up call, then ``--repeats`` timed calls.  glibc's
  malloc settings change its speed markedly (up to ~1.7x), and they only take effect
  when set before the process starts, so it is timed twice, in fresh processes, with
  the default settings and with ``MALLOC_MMAP_MAX_=0
  MALLOC_TRIM_THRESHOLD_=68719476736``.
- pomegranate (torch), when installed: ``GeneralMixtureModel`` of full-covariance
  ``Normal`` components, ``M`` iterations, followed by one log-likelihood evaluation to
  match the final E-step (pomegranate has no ``reg_covar``).
- bayesgmm float32: the bayesgmm worker with ``jax_enable_x64`` off, so ``em_fit`` computes
  in float32 (and then accumulates its E-step statistics "whitened", about the current
  means, its float32 default, where float64 uses "raw" quadratic features); same data
  and initial parameters (float64 arrays, converted by ``em_fit`` inside the call), timed
  like bayesgmm.
- gmmx (JAX, float32 only), when installed: ``GaussianMixtureModelJax.from_squeezed``
  with the initial parameters cast to float32, ``EMFitter(max_iter=M, tol=0,
  reg_covar=1e-6).fit`` on ``X`` cast to float32 (the casts happen once, outside the
  timings), then ``gmm.score(X)`` as the final E-step, with ``jax_enable_x64`` off.  The
  first call (compilation) is timed on its own, then ``--repeats`` calls, each ending
  with ``jax.block_until_ready``.  gmmx's loop runs while ``|Δ mean log-likelihood| >=
  tol``, so ``tol=0`` never stops it early (only a NaN would); its ``reg_covar`` is added
  to the covariance diagonal in every M-step and its ``nk`` gets ``10 eps`` as in
  scikit-learn.  Unlike bayesgmm it works on the raw (uncentred, unscaled) data.  The
  gmmx speed-up column is against bayesgmm float32 (float32 vs float32).

Every measurement runs in its own fresh Python process (this script re-invokes itself
with a hidden ``--worker`` flag; the worker regenerates the data from the seed and
prints its timings as JSON), so thread pools, allocator state and memory of one
library never affect another.  bayesgmm runs with the default malloc settings.

The agreement column is ``|mean log-likelihood (bayesgmm) - mean log-likelihood
(scikit-learn)|`` of the fitted parameters on ``X`` (``EMResult.log_likelihood`` and
``GaussianMixture.score(X)``): tiny values show that both did the same computation.
The pomegranate, bayesgmm float32 and gmmx cells show the same difference against
scikit-learn in brackets; for the two float32 columns (gmmx's ``gmm.score(X)``, computed
in float32) it measures float32 against float64 — round-off in the fit and in the
evaluation — not a different computation, so expect values far above bayesgmm's float64 ones.

Results go to a Markdown section between ``<!-- bench_em:start -->`` and
``<!-- bench_em:end -->`` in ``--output`` (other sections of the file are kept).

How to run (from the repository root)::

    python benchmarks/bench_em.py --sizes small --repeats 2 --iters 5   # quick check
    python benchmarks/bench_em.py                                       # all workloads
    python benchmarks/bench_em.py --skip-sklearn-above 500000           # skip slow sklearn runs
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.metadata
import importlib.util
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
from _common import (
    Workload,
    cpu_model,
    emit_result,
    exact_command,
    git_revision,
    import_bayesgmm,
    load_average,
    memory_total,
    package_version,
    random_spd,
    separated_means,
    worker_result,
    write_section,
)

# ----------------------------------------------------------------------------- constants

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parent.parent
DEFAULT_OUTPUT = SCRIPT.parent / "RESULTS.md"

SECTION_START = "<!-- bench_em:start -->"
SECTION_END = "<!-- bench_em:end -->"
RESULT_PREFIX = "BENCH_EM_RESULT "  # marks the worker's JSON line on stdout

DEFAULT_SEED = 0
REG_COVAR = 1e-6
MIN_MEAN_SEPARATION = 8.0  # Euclidean distance between generating means
MEAN_BOX = 10.0  # generating means are drawn in [-MEAN_BOX, MEAN_BOX]^d

# glibc malloc settings under which scikit-learn is known to run faster.
TUNED_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736"}


WORKLOADS = {
    "small": [Workload(10_000, 2, 3)],
    "all": [
        Workload(10_000, 2, 3),
        Workload(100_000, 16, 8),
        Workload(1_000_000, 8, 16),
        Workload(200_000, 64, 32),
    ],
}


class Problem(NamedTuple):
    """Data and the shared initial parameters."""

    X: np.ndarray  # (n, d)
    weights: np.ndarray  # (k,)
    means: np.ndarray  # (k, d)
    covariances: np.ndarray  # (k, d, d)


# ----------------------------------------------------------------------------- data


def make_problem(workload: Workload, seed: int) -> Problem:
    """Deterministic data from a known mixture, and the initial parameters for both libraries."""
    n, d, k = workload
    rng = np.random.default_rng([seed, n, d, k])
    true_weights = rng.dirichlet(np.full(k, 5.0))
    true_means = separated_means(rng, k, d, MEAN_BOX, MIN_MEAN_SEPARATION)
    true_chol = np.linalg.cholesky(random_spd(rng, k, d))
    labels = rng.choice(k, size=n, p=true_weights)
    X = rng.standard_normal((n, d))
    for j in range(k):  # per component, to avoid an (n, d, d) array of factors
        rows = labels == j
        X[rows] = true_means[j] + X[rows] @ true_chol[j].T

    init_rng = np.random.default_rng([seed, n, d, k, 1])
    means = X[np.sort(init_rng.choice(n, size=k, replace=False))].copy()
    covariances = np.repeat(np.cov(X, rowvar=False)[None], k, axis=0)
    weights = np.full(k, 1.0 / k)
    return Problem(X, weights, means, covariances)


# ----------------------------------------------------------------------------- workers
# Each runs in a fresh process and returns a JSON-serialisable dict with per-call wall
# times (seconds), the mean log-likelihood of the fitted parameters and a few facts
# about the library's runtime.


def time_bayesgmm(problem: Problem, iters: int, repeats: int, *, x64: bool = True) -> dict:
    """bayesgmm's ``em_fit``; in float64, or in float32 with ``x64=False`` (``jax_enable_x64`` off)."""
    import jax

    jax.config.update("jax_enable_x64", x64)
    bayesgmm = import_bayesgmm()

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bayesgmm.ConvergenceWarning)
            result = bayesgmm.em_fit(
                problem.X,
                len(problem.weights),
                covariance_type="full",
                max_iter=iters,
                tol=0.0,
                reg_covar=REG_COVAR,
                weights_init=problem.weights,
                means_init=problem.means,
                covariances_init=problem.covariances,
            )
        jax.block_until_ready(result.params)
        return result

    jax.block_until_ready(jax.numpy.zeros(1))  # start the backend outside the timings
    start = time.perf_counter()
    result = fit()
    first_call = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fit()
        times.append(time.perf_counter() - start)
    if result.n_iter != iters:
        raise RuntimeError(f"bayesgmm ran {result.n_iter} iterations, expected {iters}")
    expected_dtype = "float64" if x64 else "float32"
    if str(result.params.means.dtype) != expected_dtype:
        raise RuntimeError(f"bayesgmm computed in {result.params.means.dtype}, expected {expected_dtype}")
    device = jax.devices()[0]
    return {
        "times": times,
        "first_call": first_call,
        "log_likelihood": float(result.log_likelihood),
        "dtype": str(result.params.means.dtype),
        "runtime": f"bayesgmm {bayesgmm.__version__} ({expected_dtype}), JAX backend {jax.default_backend()} "
        f"({device.device_kind}, {jax.device_count()} device(s))",
    }


def time_sklearn(problem: Problem, iters: int, repeats: int) -> dict:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_info

    precisions = np.linalg.inv(problem.covariances)

    def fit():
        model = GaussianMixture(
            len(problem.weights),
            covariance_type="full",
            max_iter=iters,
            tol=0.0,
            reg_covar=REG_COVAR,
            weights_init=problem.weights,
            means_init=problem.means,
            precisions_init=precisions,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return model.fit(problem.X)

    fit()  # warm-up: lazy imports, page faults, thread-pool start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model = fit()
        times.append(time.perf_counter() - start)
    if model.n_iter_ != iters:
        raise RuntimeError(f"scikit-learn ran {model.n_iter_} iterations, expected {iters}")
    blas = [
        f"{pool['internal_api']} {pool.get('version') or ''} ({pool['num_threads']} threads)".replace("  ", " ")
        for pool in threadpool_info()
    ]
    return {
        "times": times,
        "log_likelihood": float(model.score(problem.X)),
        "runtime": "thread pools: " + ", ".join(blas),
    }


def time_pomegranate(problem: Problem, iters: int, repeats: int) -> dict:
    import torch
    from pomegranate.distributions import Normal
    from pomegranate.gmm import GeneralMixtureModel

    torch.set_default_dtype(torch.float64)  # pomegranate allocates some buffers with the default
    X = torch.from_numpy(problem.X)

    def fit():
        components = [
            Normal(means=torch.from_numpy(mean.copy()), covs=torch.from_numpy(cov.copy()), covariance_type="full")
            for mean, cov in zip(problem.means, problem.covariances)
        ]
        # tol=-inf: never stop early (pomegranate stops when the improvement < tol).
        model = GeneralMixtureModel(
            components, priors=torch.from_numpy(problem.weights.copy()), max_iter=iters, tol=float("-inf")
        )
        model.fit(X)
        return model, float(model.log_probability(X).mean())  # the final E-step

    fit()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _, log_likelihood = fit()
        times.append(time.perf_counter() - start)
    return {
        "times": times,
        "log_likelihood": log_likelihood,
        "runtime": f"torch {torch.__version__} ({torch.get_num_threads()} threads)",
    }


def time_gmmx(problem: Problem, iters: int, repeats: int) -> dict:
    """gmmx's ``EMFitter`` in float32, its only dtype, from the shared initial parameters.

    ``X`` and the initial parameters are cast to float32 once, before the timings. Each call
    moves ``X`` to the device, builds the model (``GaussianMixtureModelJax.from_squeezed``),
    runs ``EMFitter(max_iter=iters, tol=0, reg_covar=REG_COVAR).fit`` (``iters`` E- and
    M-steps in one ``lax.while_loop``) and then ``gmm.score(X)``, the final E-step: the
    log-likelihood in ``EMFitterResult`` is that of the parameters before the last M-step.
    The reported log-likelihood is that float32 ``score``, so its difference from
    scikit-learn's float64 value mixes float32 round-off of the fit and of the evaluation.
    """
    import jax

    jax.config.update("jax_enable_x64", False)  # gmmx insists on float32 parameters
    from gmmx import EMFitter, GaussianMixtureModelJax

    X = problem.X.astype(np.float32)
    weights, means, covariances = (a.astype(np.float32) for a in problem[1:])
    # The loop runs while n_iter < max_iter and |Δ mean log-likelihood| >= tol: tol=0 never stops it early.
    fitter = EMFitter(max_iter=iters, tol=0.0, reg_covar=REG_COVAR)

    def fit():
        x = jax.device_put(X)
        gmm = GaussianMixtureModelJax.from_squeezed(
            means=means, covariances=covariances, weights=weights, covariance_type="full"
        )
        result = fitter.fit(x, gmm)
        log_likelihood = result.gmm.score(x)  # the final E-step
        jax.block_until_ready((result.gmm, log_likelihood))
        return result, log_likelihood

    jax.block_until_ready(jax.numpy.zeros(1))  # start the backend outside the timings
    start = time.perf_counter()
    result, log_likelihood = fit()
    first_call = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result, log_likelihood = fit()
        times.append(time.perf_counter() - start)
    if int(result.n_iter) != iters:
        raise RuntimeError(f"gmmx ran {int(result.n_iter)} iterations, expected {iters}")
    device = jax.devices()[0]
    return {
        "times": times,
        "first_call": first_call,
        "log_likelihood": float(log_likelihood),
        "dtype": str(result.gmm.means.dtype),
        "runtime": f"gmmx {importlib.metadata.version('gmmx')}, JAX backend {jax.default_backend()} "
        f"({device.device_kind}, {jax.device_count()} device(s))",
    }


WORKERS = {
    "bayesgmm": time_bayesgmm,
    "bayesgmm_float32": functools.partial(time_bayesgmm, x64=False),
    "sklearn": time_sklearn,
    "pomegranate": time_pomegranate,
    "gmmx": time_gmmx,
}


def run_worker_main(args: argparse.Namespace) -> None:
    """Entry point of a worker process: time one library on one workload, print JSON."""
    problem = make_problem(Workload.from_arg(args.workload), args.seed)
    result = WORKERS[args.worker](problem, args.iters, args.repeats)
    emit_result(RESULT_PREFIX, result)


# ----------------------------------------------------------------------------- driver


def worker_environment(malloc: str) -> dict[str, str]:
    """This process's environment with glibc's malloc settings left default or tuned."""
    env = {name: value for name, value in os.environ.items() if name not in TUNED_MALLOC}
    if malloc == "tuned":
        env.update(TUNED_MALLOC)
    return env


def run_worker(library: str, malloc: str, workload: Workload, args: argparse.Namespace) -> dict:
    """Time ``library`` in a fresh process; return its result, or ``{"error": ...}``."""
    command = [
        sys.executable,
        str(SCRIPT),
        "--worker",
        library,
        "--malloc",
        malloc,
        "--workload",
        workload.to_arg(),
        "--seed",
        str(args.seed),
        "--iters",
        str(args.iters),
        "--repeats",
        str(args.repeats),
    ]
    return worker_result(command, RESULT_PREFIX, f"{library} ({malloc} malloc)", env=worker_environment(malloc))


def per_iteration_ms(result: dict | None, iters: int) -> float | None:
    if not result or "error" in result:
        return None
    return 1000.0 * statistics.median(result["times"]) / iters


def format_ms(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def format_cell(result: dict | None, iters: int, missing: str) -> str:
    if result is None:
        return missing
    if "error" in result:
        return "failed"
    return format_ms(per_iteration_ms(result, iters))


def format_speedup(baseline_ms: float | None, ours_ms: float | None) -> str:
    if baseline_ms is None or ours_ms is None:
        return "—"
    return f"{baseline_ms / ours_ms:.2f}×"


def table_row(workload: Workload, results: dict[str, dict | None], iters: int) -> str:
    bayes = results["bayesgmm"]
    ours = per_iteration_ms(bayes, iters)
    default_ms = per_iteration_ms(results["sklearn_default"], iters)
    tuned_ms = per_iteration_ms(results["sklearn_tuned"], iters)
    reference = next(
        (r for r in (results["sklearn_default"], results["sklearn_tuned"]) if r and "error" not in r), None
    )
    delta = (
        f"{abs(bayes['log_likelihood'] - reference['log_likelihood']):.1e}" if reference and ours is not None else "—"
    )

    def peer_cell(name: str, missing: str) -> str:
        """Per iteration, then in brackets |Δ loglik| against sklearn and the first (compiling) call."""
        result = results[name]
        cell = format_cell(result, iters, missing)
        if result and "error" not in result:
            notes = []
            if reference:
                notes.append(f"Δ {abs(result['log_likelihood'] - reference['log_likelihood']):.1e}")
            if "first_call" in result:
                notes.append(f"first call {result['first_call']:.2f} s")
            if notes:
                cell += f" ({'; '.join(notes)})"
        return cell

    float32_ms = per_iteration_ms(results["bayesgmm_float32"], iters)
    gmmx_ms = per_iteration_ms(results["gmmx"], iters)
    cells = [
        workload.label,
        "failed" if ours is None else f"{bayes['first_call']:.2f}",
        format_cell(bayes, iters, "—"),
        format_cell(results["sklearn_default"], iters, "skipped"),
        format_cell(results["sklearn_tuned"], iters, "skipped"),
        format_speedup(default_ms, ours),
        format_speedup(tuned_ms, ours),
        delta,
        peer_cell("pomegranate", "not installed"),
        peer_cell("bayesgmm_float32", "—"),
        peer_cell("gmmx", "not installed"),
        format_speedup(gmmx_ms, float32_ms),
    ]
    return "| " + " | ".join(cells) + " |"


def render_section(args: argparse.Namespace, rows: list[str], runtimes: dict[str, str], load: str) -> str:
    versions = ", ".join(
        f"{label} {package_version(name)}"
        for label, name in [
            ("jax", "jax"),
            ("jaxlib", "jaxlib"),
            ("numpy", "numpy"),
            ("scikit-learn", "scikit-learn"),
            ("pomegranate", "pomegranate"),
            ("torch", "torch"),
            ("gmmx", "gmmx"),
        ]
        if not (label in ("pomegranate", "torch", "gmmx") and package_version(name) == "not installed")
    )
    header = (
        "| workload | bayesgmm compile+first call (s) | bayesgmm per iter (ms) "
        "| sklearn per iter default malloc (ms) | sklearn per iter tuned malloc (ms) "
        "| speed-up vs default | speed-up vs tuned | \\|Δ loglik\\| | pomegranate per iter (ms) "
        "| bayesgmm float32 per iter (ms) | gmmx float32 per iter (ms) | speed-up vs gmmx (float32) |"
    )
    lines = [
        SECTION_START,
        "## EM per iteration: bayesgmm vs scikit-learn (and pomegranate, gmmx)",
        "",
        f"- Date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
        f"- Machine: {cpu_model()}, {os.cpu_count()} logical cores, {memory_total()} RAM ({platform.platform()}); "
        f"load average before the run: {load}",
        f"- Versions: Python {platform.python_version()}, {versions}; bayesgmm commit {git_revision()}",
        *(f"- {library}: {text}" for library, text in runtimes.items()),
        f"- Command: `{exact_command()}`",
        f"- Setting: full covariances, float64 (float32 for bayesgmm float32 and gmmx), {args.iters} iterations "
        f"(tol=0, reg_covar={REG_COVAR:g}), "
        f"median of {args.repeats} calls, data seed {args.seed}; identical data and initial parameters "
        "(uniform weights, means = k rows of X, covariances = data covariance) for every library.",
        "",
        header,
        "|" + "---|" * 12,
        *rows,
        "",
        f"Per iter = median wall time of one fit / {args.iters}; every fit also runs one final E-step "
        "(and input checks), in all libraries alike. Speed-up = sklearn per iter / bayesgmm per iter. "
        "bayesgmm is timed after a first (compiling) call, with default malloc; sklearn after one warm-up call, "
        f"in fresh processes with default malloc and with `{' '.join(f'{k}={v}' for k, v in TUNED_MALLOC.items())}`. "
        "|Δ loglik| = |mean log-likelihood per row of bayesgmm − of sklearn| for the fitted parameters. "
        "pomegranate (when installed): GeneralMixtureModel of full-covariance Normals, tol=-inf, then one "
        "log_probability pass; its |Δ loglik| against sklearn in brackets (pomegranate has no reg_covar). "
        "bayesgmm float32: the same em_fit call with jax_enable_x64 off (float32, whitened E-step statistics). "
        "gmmx (when installed; float32 only): GaussianMixtureModelJax.from_squeezed of the initial parameters "
        "and X cast to float32, EMFitter(tol=0, reg_covar) for the same iterations, then gmm.score(X) as the "
        "final E-step; timed after a first (compiling) call like bayesgmm. In brackets for both float32 columns: "
        "|Δ loglik| against sklearn — float32 vs float64 round-off, not a different computation — and the "
        "first call. Speed-up vs gmmx = gmmx per iter / bayesgmm float32 per iter (float32 vs float32; "
        "the other speed-ups are bayesgmm float64).",
        SECTION_END,
    ]
    return "\n".join(lines) + "\n"


def run_benchmarks(args: argparse.Namespace) -> None:
    pomegranate_available = importlib.util.find_spec("pomegranate") is not None
    gmmx_available = importlib.util.find_spec("gmmx") is not None
    load = load_average()
    rows, runtimes = [], {}
    for workload in WORKLOADS[args.sizes]:
        print(f"{workload.label}:", file=sys.stderr, flush=True)
        run_sklearn = args.skip_sklearn_above is None or workload.n <= args.skip_sklearn_above
        jobs = {
            "bayesgmm": ("bayesgmm", "default", True),
            "sklearn_default": ("sklearn", "default", run_sklearn),
            "sklearn_tuned": ("sklearn", "tuned", run_sklearn),
            "pomegranate": ("pomegranate", "default", pomegranate_available),
            "bayesgmm_float32": ("bayesgmm_float32", "default", True),
            "gmmx": ("gmmx", "default", gmmx_available),
        }
        results: dict[str, dict | None] = {}
        for name, (library, malloc, enabled) in jobs.items():
            results[name] = run_worker(library, malloc, workload, args) if enabled else None
            result = results[name]
            if result and "error" not in result:
                runtimes.setdefault(library, result["runtime"])
                first = f", first call {result['first_call']:.2f} s" if "first_call" in result else ""
                print(
                    f"  {name:16s} per iter {format_ms(per_iteration_ms(result, args.iters))} ms "
                    f"(calls: {', '.join(f'{t:.3f}' for t in result['times'])} s{first}), "
                    f"mean loglik {result['log_likelihood']:.10f}",
                    file=sys.stderr,
                    flush=True,
                )
        rows.append(table_row(workload, results, args.iters))
    section = render_section(args, rows, runtimes, load)
    write_section(args.output, section, SECTION_START, SECTION_END)
    print(section)
    print(f"Wrote {args.output}", file=sys.stderr)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        choices=sorted(WORKLOADS),
        default="all",
        help="'small': one quick workload; 'all' (default): every workload",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per library and workload (default 5)")
    parser.add_argument("--iters", type=int, default=20, help="EM iterations per call (default 20)")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="Markdown file to update (default benchmarks/RESULTS.md)"
    )
    parser.add_argument(
        "--skip-sklearn-above",
        type=int,
        default=None,
        metavar="N",
        help="do not time scikit-learn on workloads with more than N rows",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"data seed (default {DEFAULT_SEED})")
    # Hidden: used when the script re-invokes itself to time one library in a fresh process.
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--malloc", choices=("default", "tuned"), default="default", help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.iters < 1:
        parser.error("--repeats and --iters must be at least 1")
    if args.worker and not args.workload:
        parser.error("--worker needs --workload")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        run_worker_main(args)
    else:
        run_benchmarks(args)


if __name__ == "__main__":
    main()
