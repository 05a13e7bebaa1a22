"""Student-t mixture EM: ``em_fit(family="student_t")`` (ECME) vs studenttmixture's ``EMStudentMixture`` (ECM).

What is measured
----------------
For each workload ``(n, d, k)`` every library fits the same rows from the same initial
parameters, with full scale matrices, in float64 and without regularisation (``reg_covar=0``):

- data: a known mixture of multivariate t components, ``ν = 4`` for every component (fixed seed;
  Dirichlet(5) weights, well-separated random locations, random SPD scale matrices), drawn as
  ``μ_k + L_k z / sqrt(g)`` with ``z`` standard normal and ``g ~ χ²_ν / ν``;
- initial parameters (identical for every library): uniform weights, the true locations moved
  by ``START_JITTER`` standard normal noise (a fixed rng), the covariance of ``X`` repeated
  ``k`` times as scale matrices, and ``ν = 4`` for every component (bayesgmm's
  ``families.DOF_START``, studenttmixture's ``df=4.0``); every component's ``ν`` is estimated;
- bayesgmm: ``em_fit(X, k, family="student_t", weights_init=..., means_init=...,
  covariances_init=..., reg_covar=0, tol=..., max_iter=...)``, float64 (``jax_enable_x64``).
  Liu and Rubin's ECME: after each M-step a second pass over the rows sets each ``ν_k`` to the
  value that maximises the observed log-likelihood. Small fits run on its NumPy driver without
  compiling: the table says which driver ran (``n k d (d + 1) <= bayesgmm.em._fit.HOST_MAX_WORK``,
  read from the package, not changed). Every fit ends with one E-step scoring the returned
  parameters;
- studenttmixture (when installed): ``EMStudentMixture(n_components=k, df=4.0, fixed_df=False,
  reg_covar=0, tol=..., max_iter=...)`` with its ``initialize_params`` replaced by one returning the
  shared start (its layout: locations (k, d), scales and their Cholesky factors (d, d, k), weights),
  then ``fit(X)``. Its M-step divides the scales by ``Σ r u`` (Kent, Tyler and Vardi) and takes
  ECM's ``ν`` step (Newton on McLachlan and Peel's estimating equation, with the ``u`` of the
  E-step): other iterates than bayesgmm's, the same fixed point. It does not record its iterations
  (``n_iter_`` stays 0), so the benchmark counts its ``Mstep`` calls through a wrapper;
- scikit-learn (reference, time only; a Gaussian mixture, so another model and another maximum):
  ``GaussianMixture(k, tol=..., max_iter=..., reg_covar=0, weights_init, means_init,
  precisions_init)`` from the same weights, locations and (as covariances) scale matrices.

Two measurements per library and workload, in one fresh Python process per library (this script
re-invokes itself with a hidden ``--worker`` flag and regenerates the data from the seed):

1. **converged fit** (``tol=1e-6``, ``max_iter=1000``). The first call of the process is timed on
   its own (bayesgmm's includes tracing and compiling, or loading the compiled programs from JAX's
   persistent compilation cache, which bayesgmm turns on by default: ``bayesgmm/_cache.py``; the
   cache's entries are counted before and after that call), then ``--repeats`` warm calls.
   Every library's ``tol`` is the same test: stop when the mean log-likelihood per row changes by
   less than ``tol`` between two iterations (bayesgmm's and scikit-learn's rule; studenttmixture's
   ``fitting_restart`` compares ``np.mean(log_prob_norm)`` of successive E-steps the same way).
   A further bayesgmm process (unless ``--no-cold-cache``) makes one first call with the
   persistent cache pointed at an empty directory (``BAYESGMM_COMPILATION_CACHE``): what a user's
   very first session pays;
2. **per iteration**: ``--iters`` iterations exactly (``tol=0``; studenttmixture's constructor
   refuses ``tol=0``, so its attribute is set to 0 after construction: its test
   ``abs(change) < tol`` then never passes), one untimed call first, then ``--repeats`` calls;
   per iteration = median wall time / ``--iters``. bayesgmm's iterations include ECME's second
   pass over the rows, and its fits one final E-step.

A studenttmixture fit that runs longer than ``--baseline-budget`` seconds (default 300) is
stopped (``SIGALRM``) and the workload's studenttmixture cell says so.

CPU time: every timed call also records its CPU time (user + system, all threads). On a shared
machine other processes stretch wall time more than CPU time, but not where BLAS threads spin
while they wait for a core: on a busy 2-core machine SciPy's bundled OpenBLAS (2 threads) took
about 8 ms per ``scipy.linalg.solve_triangular`` call of any size (0.06 ms with
``OPENBLAS_NUM_THREADS=1``), which studenttmixture and scikit-learn call every iteration. Setting
that variable (the command line records it) removes that artefact. bayesgmm's XLA threads and
the BLAS threads may use every core.

Agreement: the driver scores every converged fit's parameters with one independent evaluator,
SciPy's ``scipy.stats.multivariate_t`` (``log Σ_k π_k t_ν_k(x | μ_k, Σ_k)``, mean over rows), and
reports ``|Δ loglik|`` against bayesgmm's and the fitted ``ν``. Both stop on a small change of a
linearly converging sequence, so each stops some way below the maximum: after the timed calls every
process runs one more, untimed fit of its library to ``--reference-tol`` (default 1e-12,
``--reference-max-iter`` 5000), and the table gives each converged fit's distance below the
highest SciPy score of all those t fits (the maximum, as far as the two libraries find it).

Results go to a Markdown section between ``<!-- bench_t:start -->`` and ``<!-- bench_t:end -->``
in ``--output`` (other sections of the file are kept).

How to run (from the repository root)::

    python benchmarks/bench_t.py --workload 2000,2,2 --output /tmp/t.md    # quick check
    python benchmarks/bench_t.py --output benchmarks/RESULTS.md           # 2k x 2, 20k x 5, 200k x 5
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import io
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
from _common import (
    Workload,
    cpu_model,
    cpu_seconds,
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

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parent.parent
DEFAULT_OUTPUT = SCRIPT.parent / "RESULTS.md"

SECTION_START = "<!-- bench_t:start -->"
SECTION_END = "<!-- bench_t:end -->"
RESULT_PREFIX = "BENCH_T_RESULT "  # marks the worker's JSON line on stdout

DEFAULT_SEED = 0
TRUE_DOF = 4.0
START_DOF = 4.0
MIN_MEAN_SEPARATION = 8.0
MEAN_BOX = 10.0
START_JITTER = 0.5
DEFAULT_WORKLOADS = [Workload(2_000, 2, 2), Workload(20_000, 5, 4), Workload(200_000, 5, 4)]
LIBRARIES = ("bayesgmm", "studenttmixture", "sklearn")
MODULES = {"bayesgmm": None, "studenttmixture": "studenttmixture", "sklearn": "sklearn"}


class Problem(NamedTuple):
    X: np.ndarray  # (n, d)
    weights: np.ndarray  # (k,) start
    means: np.ndarray  # (k, d) start
    scales: np.ndarray  # (k, d, d) start
    true_weights: np.ndarray
    true_means: np.ndarray


def make_problem(workload: Workload, seed: int) -> Problem:
    """Deterministic rows of a known t mixture (ν = 4) and the shared initial parameters."""
    n, d, k = workload
    rng = np.random.default_rng([seed, n, d, k])
    true_weights = rng.dirichlet(np.full(k, 5.0))
    true_means = separated_means(rng, k, d, MEAN_BOX, MIN_MEAN_SEPARATION)
    true_chol = np.linalg.cholesky(random_spd(rng, k, d))
    labels = rng.choice(k, size=n, p=true_weights)
    z = rng.standard_normal((n, d))
    g = rng.chisquare(TRUE_DOF, size=n) / TRUE_DOF
    X = true_means[labels] + np.einsum("nij,nj->ni", true_chol[labels], z) / np.sqrt(g)[:, None]
    init_rng = np.random.default_rng([seed, n, d, k, 1])
    start_means = true_means + START_JITTER * init_rng.standard_normal((k, d))
    scales = np.repeat(np.cov(X, rowvar=False)[None], k, axis=0)
    return Problem(X, np.full(k, 1.0 / k), start_means, scales, true_weights, true_means)


def mean_log_likelihood(X: np.ndarray, weights, means, scales, dof) -> float:
    """``mean_i log Σ_k π_k t_ν_k(x_i | μ_k, Σ_k)``, with SciPy's ``multivariate_t`` (independent of both fits)."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_t

    weights, means, scales, dof = (np.asarray(a, np.float64) for a in (weights, means, scales, dof))
    log_joint = np.stack(
        [
            np.log(weights[j]) + multivariate_t(loc=means[j], shape=scales[j], df=dof[j]).logpdf(X)
            for j in range(len(weights))
        ],
        axis=1,
    )
    return float(np.mean(logsumexp(log_joint, axis=1)))


# ----------------------------------------------------------------------------- workers


def _timed_call(fit) -> tuple[float, float, object]:
    start, start_cpu = time.perf_counter(), cpu_seconds()
    result = fit()
    return time.perf_counter() - start, cpu_seconds() - start_cpu, result


class FitTimeout(Exception):
    """A baseline fit ran over ``--baseline-budget`` seconds."""


def _measure(fit_converged, fit_fixed, fit_reference, args: argparse.Namespace, describe, after_first=None) -> dict:
    """The first converged call, ``--repeats`` warm converged calls, one untimed and ``--repeats``
    timed fixed-iteration calls, then one untimed reference fit (``--reference-tol``; None: none);
    ``describe(result)`` gives iterations and parameters, ``after_first()`` facts recorded right after the
    first call."""
    out: dict = {}
    wall, cpu, result = _timed_call(fit_converged)
    out["first_call"], out["first_call_cpu"] = wall, cpu
    if after_first is not None:
        out.update(after_first())
    out.update(describe(result))
    if args.first_only:
        return out
    times, cpu_times = [], []
    for _ in range(args.repeats):
        wall, cpu, result = _timed_call(fit_converged)
        times.append(wall)
        cpu_times.append(cpu)
    out["times"], out["cpu_times"] = times, cpu_times
    fit_fixed()  # warm-up (compiles bayesgmm's fixed-iteration program if it differs)
    times, cpu_times, iterations = [], [], []
    for _ in range(args.repeats):
        wall, cpu, result = _timed_call(fit_fixed)
        times.append(wall)
        cpu_times.append(cpu)
        iterations.append(describe(result)["n_iter"])
    if any(count != args.iters for count in iterations):
        raise RuntimeError(f"fixed-iteration fits ran {iterations} iterations, expected {args.iters}")
    out["iter_times"], out["iter_cpu_times"] = times, cpu_times
    if fit_reference is not None and args.reference_tol > 0:
        try:
            out["reference"] = describe(fit_reference())
        except FitTimeout:
            out["reference"] = {"skipped": f"ran over {args.baseline_budget} s"}
    return out


def _cache_entries(path: str | None) -> int | None:
    if path is None or not os.path.isdir(path):
        return None
    # JAX's bounded cache keeps a "<key>-cache" file and a "<key>-atime" file per program.
    return sum(not name.endswith(("-atime", ".lock")) for _, _, files in os.walk(path) for name in files)


def time_bayesgmm(problem: Problem, args: argparse.Namespace) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    bayesgmm = import_bayesgmm()
    import platformdirs

    from bayesgmm.em import _fit

    k = len(problem.weights)

    def fit(tol: float, max_iter: int):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bayesgmm.ConvergenceWarning)
            result = bayesgmm.em_fit(
                problem.X,
                k,
                family="student_t",
                weights_init=problem.weights,
                means_init=problem.means,
                covariances_init=problem.scales,
                tol=tol,
                max_iter=max_iter,
                reg_covar=0.0,
            )
        jax.block_until_ready(result.params)
        return result

    def describe(result) -> dict:
        params = result.params
        return {
            "n_iter": int(result.n_iter),
            "converged": bool(result.converged),
            "own_log_likelihood": float(result.log_likelihood),
            "params": [np.asarray(a).tolist() for a in (params.weights, params.means, params.covariances, params.dof)],
        }

    # The cache directory bayesgmm will use (bayesgmm._cache.enable); counted before the first call.
    setting = os.environ.get("BAYESGMM_COMPILATION_CACHE")
    expected = setting if setting is not None else os.path.join(platformdirs.user_cache_dir("bayesgmm"), "jax")
    entries_before = _cache_entries(os.path.abspath(os.path.expanduser(expected)) if expected else None)
    jax.block_until_ready(jax.numpy.zeros(1))  # start the backend outside the timings
    n, d = problem.X.shape

    def after_first() -> dict:  # the cache as the first call left it
        directory = bayesgmm._cache.directory()
        return {
            "cache_directory": directory,
            "cache_entries_before": entries_before,
            "cache_entries_after": _cache_entries(directory),
        }

    out = _measure(
        lambda: fit(args.tol, args.max_iter),
        lambda: fit(0.0, args.iters),
        lambda: fit(args.reference_tol, args.reference_max_iter),
        args,
        describe,
        after_first,
    )
    work = n * k * d * (d + 1)
    device = jax.devices()[0]
    out.update(
        driver="NumPy" if work <= _fit.HOST_MAX_WORK else "compiled (XLA)",
        work=work,
        host_max_work=_fit.HOST_MAX_WORK,
        runtime=f"bayesgmm {bayesgmm.__version__} (float64), JAX backend {jax.default_backend()} "
        f"({device.device_kind}, {jax.device_count()} device(s)); em_fit's NumPy driver for "
        f"n k d (d + 1) <= HOST_MAX_WORK = {_fit.HOST_MAX_WORK:_}",
    )
    return out


def time_studenttmixture(problem: Problem, args: argparse.Namespace) -> dict:
    import studenttmixture

    k = len(problem.weights)
    scales = np.moveaxis(problem.scales, 0, -1)  # studenttmixture's (d, d, k)
    cholesky = np.moveaxis(np.linalg.cholesky(problem.scales), 0, -1)

    def fit(tol: float, max_iter: int):
        model = studenttmixture.EMStudentMixture(
            n_components=k, tol=max(tol, 1e-300), max_iter=max_iter, df=START_DOF, fixed_df=False, reg_covar=0.0
        )
        model.tol = tol  # the constructor refuses 0; with 0, abs(change) < tol never holds
        model.initialize_params = lambda X, seed, init: (
            problem.means.copy(),
            scales.copy(),
            problem.weights.copy(),
            cholesky.copy(),
        )
        model.m_steps = 0
        m_step = model.Mstep

        def counted(*a, **kw):
            model.m_steps += 1
            return m_step(*a, **kw)

        model.Mstep = counted
        with contextlib.redirect_stdout(io.StringIO()):  # it prints "did not converge" rather than warning
            model.fit(problem.X)
        return model

    def describe(model) -> dict:
        out = {"n_iter": model.m_steps, "converged": bool(model.converged_)}
        if model.converged_:  # otherwise fit() leaves the parameters unset
            out["own_log_likelihood"] = float(model.score(problem.X))
            out["params"] = [
                np.asarray(a).tolist()
                for a in (model.mix_weights_, model.location_, np.moveaxis(model.scale_, -1, 0), model.df_)
            ]
        return out

    def on_alarm(signum, frame):
        raise FitTimeout

    signal.signal(signal.SIGALRM, on_alarm)

    def guarded(fit_call):
        def run():
            signal.alarm(args.baseline_budget)
            try:
                return fit_call()
            finally:
                signal.alarm(0)

        return run

    try:
        out = _measure(
            guarded(lambda: fit(args.tol, args.max_iter)),
            guarded(lambda: fit(0.0, args.iters)),
            guarded(lambda: fit(args.reference_tol, args.reference_max_iter)),
            args,
            describe,
        )
    except FitTimeout:
        return {"skipped": f"a fit ran over {args.baseline_budget} s"}
    out["runtime"] = f"studenttmixture {package_version('studenttmixture')} (NumPy {np.__version__})"
    return out


def time_sklearn(problem: Problem, args: argparse.Namespace) -> dict:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    k = len(problem.weights)
    precisions = np.linalg.inv(problem.scales)

    def fit(tol: float, max_iter: int):
        model = GaussianMixture(
            k,
            covariance_type="full",
            tol=tol,
            max_iter=max_iter,
            reg_covar=0.0,
            weights_init=problem.weights,
            means_init=problem.means,
            precisions_init=precisions,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(problem.X)
        return model

    def describe(model) -> dict:
        return {
            "n_iter": int(model.n_iter_),
            "converged": bool(model.converged_),
            "own_log_likelihood": float(model.score(problem.X)),
        }

    out = _measure(lambda: fit(args.tol, args.max_iter), lambda: fit(0.0, args.iters), None, args, describe)
    out["runtime"] = f"scikit-learn {package_version('scikit-learn')} GaussianMixture (NumPy {np.__version__})"
    return out


WORKERS = {"bayesgmm": time_bayesgmm, "studenttmixture": time_studenttmixture, "sklearn": time_sklearn}


def run_worker_main(args: argparse.Namespace) -> None:
    problem = make_problem(args.workload[0], args.seed)
    result = WORKERS[args.worker](problem, args)
    emit_result(RESULT_PREFIX, result)


# ----------------------------------------------------------------------------- driver


def run_worker(library: str, workload: Workload, args: argparse.Namespace, *, cold_cache: str | None = None) -> dict:
    """Time ``library`` in a fresh process; return its result, or ``{"error": ...}``."""
    command = [sys.executable, str(SCRIPT), "--worker", library, "--workload", workload.to_arg()]
    command += ["--seed", str(args.seed), "--repeats", str(args.repeats), "--iters", str(args.iters)]
    command += ["--tol", repr(args.tol), "--max-iter", str(args.max_iter)]
    command += ["--baseline-budget", str(args.baseline_budget)]
    command += ["--reference-tol", repr(args.reference_tol), "--reference-max-iter", str(args.reference_max_iter)]
    env = None
    if cold_cache is not None:
        command.append("--first-only")
        env = {**os.environ, "BAYESGMM_COMPILATION_CACHE": cold_cache}
    return worker_result(command, RESULT_PREFIX, library, env=env)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _ok(result: dict | None) -> bool:
    return bool(result) and "error" not in result and "skipped" not in result


def first_call_cell(result: dict, cold: dict | None) -> str:
    text = f"{result['first_call']:.2f}"
    notes = []
    if result.get("driver") == "NumPy":
        notes.append("no compilation")
    elif "cache_entries_after" in result:
        before, after = result["cache_entries_before"], result["cache_entries_after"]
        if after is None:
            notes.append("no persistent cache")
        else:
            before = before or 0
            written = after - before
            notes.append(f"{written} programs compiled and cached" if written > 0 else "loaded from the cache")
    if cold is not None and "first_call" in cold:
        notes.append(f"empty cache {cold['first_call']:.2f}")
    return text + (f" ({'; '.join(notes)})" if notes else "")


def row_cells(
    library: str, result: dict | None, ours: dict | None, ours_loglik: float | None, maximum: float | None, args
) -> list[str]:
    """Cells after workload and library: driver, first call, warm, iterations, per iter, loglik, Δ, below the
    maximum, ν, ratios."""
    if result is None:
        return ["—", "not installed"] + ["—"] * 8
    if "skipped" in result:
        return ["—", f"skipped ({result['skipped']})"] + ["—"] * 8
    if "error" in result:
        return ["—", f"failed: {result['error']}"] + ["—"] * 8
    driver = result.get("driver", "NumPy")
    warm = _median(result["times"])
    warm_cpu = _median(result["cpu_times"])
    per_iter = 1000 * _median(result["iter_times"]) / args.iters
    per_iter_cpu = 1000 * _median(result["iter_cpu_times"]) / args.iters
    iterations = f"{result['n_iter']}" + ("" if result["converged"] else " (not converged)")
    loglik = result.get("log_likelihood")
    loglik_cell = "—" if loglik is None else f"{loglik:.8f}"
    if library == "sklearn":
        loglik_cell = f"(Gaussian: {result['own_log_likelihood']:.5f})"
    delta = (
        "—" if loglik is None or ours_loglik is None or library == "bayesgmm" else f"{abs(loglik - ours_loglik):.1e}"
    )
    below = "—" if loglik is None or maximum is None else f"{maximum - loglik:.1e}"
    dof = "—" if "params" not in result else ", ".join(f"{v:.3f}" for v in result["params"][3])
    if library == "bayesgmm" or not _ok(ours):
        ratio = "—"
    else:
        ratio = (
            f"{warm / _median(ours['times']):.1f}× (CPU {warm_cpu / _median(ours['cpu_times']):.1f}×); "
            f"per iter {per_iter / (1000 * _median(ours['iter_times']) / args.iters):.1f}×"
        )
    return [
        driver,
        first_call_cell(result, result.get("cold")),
        f"{warm:.3g} (CPU {warm_cpu:.3g})",
        iterations,
        f"{per_iter:.3g} (CPU {per_iter_cpu:.3g})",
        loglik_cell,
        delta,
        below,
        dof,
        ratio,
    ]


NAMES = {"bayesgmm": "bayesgmm (ECME)", "studenttmixture": "studenttmixture (ECM)", "sklearn": "sklearn"}


def reference_note(workload: Workload, results: dict, maximum: float | None) -> str:
    """One line on the reference fits of ``workload``: iterations, their scores below the maximum, ν."""
    parts = []
    for library in ("bayesgmm", "studenttmixture"):
        result = results.get(library)
        reference = result.get("reference") if _ok(result) else None
        if reference is None:
            continue
        if "skipped" in reference:
            parts.append(f"{NAMES[library]} {reference['skipped']}")
        elif "log_likelihood" not in reference:
            parts.append(f"{NAMES[library]} did not converge in {reference['n_iter']} iterations")
        else:
            dof = ", ".join(f"{v:.4f}" for v in reference["params"][3])
            parts.append(
                f"{NAMES[library]} {reference['n_iter']} it., {maximum - reference['log_likelihood']:.1e} below, "
                f"ν {dof}"
            )
    top = "—" if maximum is None else f"{maximum:.10f}"
    return f"- {workload.label}: maximum {top}; " + "; ".join(parts)


def run_benchmarks(args: argparse.Namespace) -> None:
    load = load_average()
    rows, runtimes, notes = [], {}, []
    for workload in args.workload:
        print(f"{workload.label}:", file=sys.stderr, flush=True)
        problem = make_problem(workload, args.seed)
        results: dict[str, dict | None] = {}
        for library in LIBRARIES:
            module = MODULES[library]
            if module is not None and importlib.util.find_spec(module) is None:
                results[library] = None
                continue
            if library == "studenttmixture" and workload.n > args.baselines_up_to:
                results[library] = {"skipped": f"above --baselines-up-to {args.baselines_up_to:_} rows"}
                continue
            result = results[library] = run_worker(library, workload, args)
            if not _ok(result):
                print(f"  {library}: {result}", file=sys.stderr, flush=True)
                continue
            if library == "bayesgmm" and args.cold_cache:
                with tempfile.TemporaryDirectory(prefix="bench_t_cache_") as folder:
                    result["cold"] = run_worker(library, workload, args, cold_cache=folder)
            for fit in (result, result.get("reference", {})):
                if "params" in fit:
                    fit["log_likelihood"] = mean_log_likelihood(problem.X, *fit["params"])
            runtimes.setdefault(library, result["runtime"])
            print(
                f"  {library:15s} first {result['first_call']:.3f} s, warm "
                f"{', '.join(f'{t:.3f}' for t in result['times'])} s, {result['n_iter']} it., per iter "
                f"{1000 * _median(result['iter_times']) / args.iters:.3g} ms, loglik "
                f"{result.get('log_likelihood', result['own_log_likelihood']):.10f} (own "
                f"{result['own_log_likelihood']:.10f})"
                + (f", dof {result['params'][3]}" if "params" in result else ""),
                file=sys.stderr,
                flush=True,
            )
        ours = results["bayesgmm"]
        ours_loglik = ours.get("log_likelihood") if _ok(ours) else None
        # The maximum: the highest SciPy score of every t fit, the tight reference fits included.
        t_fits = [results[name] for name in ("bayesgmm", "studenttmixture") if _ok(results[name])]
        t_fits += [fit["reference"] for fit in t_fits if "reference" in fit]
        scores = [fit["log_likelihood"] for fit in t_fits if "log_likelihood" in fit]
        maximum = max(scores) if scores else None
        for library in LIBRARIES:
            cells = [workload.label, NAMES[library]]
            cells += row_cells(library, results[library], ours, ours_loglik, maximum, args)
            rows.append("| " + " | ".join(cells) + " |")
        notes.append(reference_note(workload, results, maximum))
    versions = ", ".join(
        f"{name} {package_version(name)}"
        for name in ("jax", "jaxlib", "numpy", "scipy", "studenttmixture", "scikit-learn")
    )
    lines = [
        SECTION_START,
        '## Student-t mixtures: em_fit(family="student_t") (ECME) vs studenttmixture EMStudentMixture (ECM)',
        "",
        f"- Date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
        f"- Machine: {cpu_model()}, {os.cpu_count()} logical cores, {memory_total()} RAM ({platform.platform()}); "
        f"load average before / after the run: {load} / {load_average()}",
        f"- Versions: Python {platform.python_version()}, {versions}; bayesgmm commit {git_revision()}",
        *(f"- {library}: {text}" for library, text in runtimes.items()),
        f"- Command: `{exact_command()}`",
        f"- Setting: data from a known mixture of t components (ν = {TRUE_DOF:g} each, data seed {args.seed}); full "
        f"scale matrices, float64, reg_covar = 0, every ν estimated from ν = {START_DOF:g}; the same start for "
        f"every library (uniform weights, true locations + N(0, {START_JITTER}²) noise, the data covariance as "
        f"every scale matrix). Converged: tol = {args.tol:g} on the change of the mean log-likelihood per row "
        f"(the same test in the three libraries), max_iter = {args.max_iter}; first call of a fresh process, "
        f"then the median of {args.repeats} calls. Per iter: {args.iters} iterations (tol = 0), median of "
        f"{args.repeats} calls after one untimed. studenttmixture fits are stopped after "
        f"{args.baseline_budget} s.",
        "",
        "| workload | library | driver | first call (s) | converged fit, warm (s) | iterations | per iter (ms) "
        "| mean loglik (SciPy) | \\|Δ loglik\\| vs bayesgmm | below the maximum | fitted ν | time / bayesgmm |",
        "|" + "---|" * 12,
        *rows,
        "",
        f"Reference fits (tol = {args.reference_tol:g}, max_iter = {args.reference_max_iter}, untimed; the "
        "maximum is the highest SciPy score of all the t fits of a workload):",
        "",
        *notes,
        "",
        "First call = wall time of the process's first converged fit (bayesgmm: tracing and compiling, or "
        "loading the programs from JAX's persistent compilation cache, which bayesgmm enables by default; "
        '"compiled and cached": the entries that call added to the cache (a process sharing the cache could add '
        'some too), "loaded from the cache": it added none; "empty cache": the same first call in another '
        "process with the cache pointed at an empty directory). Converged fit, warm = median wall time of the "
        "following calls, with the median CPU time (user + system, every thread) in brackets. Per iter = median "
        f"wall (CPU) time of a {args.iters}-iteration fit / {args.iters}; bayesgmm's iterations include ECME's "
        "second pass over the rows for ν. Mean loglik = mean over rows of log Σ_k π_k t_ν_k(x | μ_k, Σ_k) of "
        "the fitted parameters by scipy.stats.multivariate_t, one evaluator for both t fits; below the maximum = "
        "the highest such score of the workload's t fits (the reference fits below included) − this fit's; "
        "sklearn fits a "
        "Gaussian mixture (a reference for time only; its own mean log-likelihood in brackets). "
        "Time / bayesgmm = warm converged time (CPU) and per-iteration time against bayesgmm's.",
        SECTION_END,
    ]
    section = "\n".join(lines) + "\n"
    if args.output is not None:
        write_section(args.output, section, SECTION_START, SECTION_END)
        print(f"Wrote {args.output}", file=sys.stderr)
    print(section)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workload",
        type=Workload.from_arg,
        action="append",
        metavar="N,D,K",
        help="n rows, d features, k components (repeatable; default: 2000,2,2 20000,5,4 200000,5,4)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (default 3)")
    parser.add_argument("--iters", type=int, default=20, help="iterations of the per-iteration fits (default 20)")
    parser.add_argument("--tol", type=float, default=1e-6, help="tol of the converged fits (default 1e-6)")
    parser.add_argument("--max-iter", type=int, default=1000, help="max_iter of the converged fits (default 1000)")
    parser.add_argument(
        "--reference-tol",
        type=float,
        default=1e-12,
        help="tol of the reference fits that locate the maximum (default 1e-12; 0: none)",
    )
    parser.add_argument(
        "--reference-max-iter", type=int, default=5000, help="max_iter of the reference fits (default 5000)"
    )
    parser.add_argument(
        "--baseline-budget",
        type=int,
        default=300,
        metavar="S",
        help="stop a studenttmixture fit after S seconds and skip it on that workload (default 300)",
    )
    parser.add_argument(
        "--baselines-up-to",
        type=int,
        default=10**9,
        metavar="N",
        help="time studenttmixture on workloads up to N rows only",
    )
    parser.add_argument(
        "--no-cold-cache",
        dest="cold_cache",
        action="store_false",
        help="skip bayesgmm's first call with an empty compilation cache",
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="Markdown file to update (e.g. benchmarks/RESULTS.md)"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"data seed (default {DEFAULT_SEED})")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--first-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.repeats, args.iters, args.max_iter, args.baseline_budget) < 1:
        parser.error("--repeats, --iters, --max-iter and --baseline-budget must be at least 1")
    if args.tol < 0:
        parser.error("--tol must be >= 0")
    if args.workload is None:
        args.workload = list(DEFAULT_WORKLOADS)
    if args.worker and len(args.workload) != 1:
        parser.error("--worker needs exactly one --workload")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        run_worker_main(args)
    else:
        run_benchmarks(args)


if __name__ == "__main__":
    main()
