"""Time and peak memory of extreme deconvolution: ``em_fit(measurement_error=S)`` vs astroML's ``XDGMM`` and pygmmis.

What is measured
----------------
For each workload ``(n, d, k)`` every library fits the same noisy rows with the same
per-row error covariances ``S_i`` (n, d, d), from the same initial parameters, for the same
number of iterations ``M``, with full covariances in float64 and no regularisation:

- data: a known mixture (fixed seed; well-separated random means, random SPD covariances)
  observed through heteroscedastic, correlated Gaussian errors ``S_i = s_i² A_i A_iᵀ / d``
  (``A_i`` standard normal, ``s_i`` uniform in [0.2, 1]);
- initial parameters: uniform weights, ``k`` rows of ``X`` chosen with a fixed rng as means,
  the covariance of ``X`` repeated ``k`` times as covariances;
- bayesgmm: ``em_fit(X, k, measurement_error=S, max_iter=M, tol=0, reg_covar=0, weights_init=...,
  means_init=..., covariances_init=...)`` (M E- and M-steps and one final E-step that scores
  the returned parameters). Its first call (tracing + XLA compilation + one run) is timed on
  its own, then ``--repeats`` calls, each ending with ``jax.block_until_ready``;
- astroML (when installed): ``XDGMM`` with ``alpha``, ``mu``, ``V`` set to the initial
  parameters, ``M`` calls of its ``_EMstep`` (Bovy et al.'s update; astroML's ``fit`` would
  first run ten scikit-learn iterations to initialise, and stop on its own ``tol``), then one
  ``logL`` (the final E-step). ``--baseline-repeats`` calls;
- pygmmis (when installed): ``pygmmis.fit(gmm, X, covar=S, init_method="none", tol=0,
  miniter=M, maxiter=M, w=0)`` from the initial parameters (exactly ``M`` iterations: its
  relative-tolerance test never passes with ``tol=0``); it runs its E-step in a
  ``multiprocessing`` pool of one process per core. ``--baseline-repeats`` calls. Its first
  step equals the others' (weights and means to round-off); later ones differ, because its
  covariance sums are taken about the previous means (``_Msums``: ``b_k − μ_k`` before the
  update) where Bovy et al.'s M-step, astroML's and ours take them about the new ones, so its
  ``|Δ loglik|`` is not round-off.

CPU time: every timed call also records its CPU time (user + system, of every thread of the
process and of its child processes once joined: pygmmis's pools), reported per iteration next to
the wall time. On a shared machine other processes stretch wall time but barely CPU time, so the
CPU ratios are the steadier comparison there (bayesgmm's XLA threads and pygmmis's pool can use
every core, astroML one, so on an idle machine the wall ratios are the user's).

Memory: each measurement runs in its own fresh Python process (this script re-invokes itself
with a hidden ``--worker`` flag and regenerates the data from the seed). "Peak RSS" is the
process's maximum resident set size (``getrusage``), "above start" the same less the
resident set just before the first fit (imports, data and errors already in memory): what
fitting added at its peak. pygmmis's pool processes are reported as "children" (the largest
child's peak). On an accelerator, bayesgmm's device peak (``memory_stats``) is given too.

Agreement: the driver scores every library's fitted parameters with one NumPy evaluator (the
mean over rows of ``log Σ_k π_k N(x_i | μ_k, Σ_k + S_i)``), so ``|Δ loglik|`` against bayesgmm
shows whether they did the same computation.

Results go to a Markdown section between ``<!-- bench_xd:start -->`` and ``<!-- bench_xd:end -->``
in ``--output`` (other sections of the file are kept).

How to run (from the repository root)::

    python benchmarks/bench_xd.py --sizes small --output /tmp/xd.md   # quick check (2k x 7)
    python benchmarks/bench_xd.py                                     # 20k x 7 for all, 100k x 7 for bayesgmm
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import resource
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

SECTION_START = "<!-- bench_xd:start -->"
SECTION_END = "<!-- bench_xd:end -->"
RESULT_PREFIX = "BENCH_XD_RESULT "  # marks the worker's JSON line on stdout

DEFAULT_SEED = 0
MIN_MEAN_SEPARATION = 8.0
MEAN_BOX = 10.0


WORKLOADS = {
    "small": [Workload(2_000, 7, 4)],
    "all": [Workload(20_000, 7, 4), Workload(100_000, 7, 4), Workload(1_000_000, 7, 4)],
}
BASELINES_UP_TO = 20_000  # astroML and pygmmis above it take minutes per fit (``--baselines-up-to``)


class Problem(NamedTuple):
    X: np.ndarray  # (n, d) noisy rows
    errors: np.ndarray  # (n, d, d) error covariances
    weights: np.ndarray  # (k,)
    means: np.ndarray  # (k, d)
    covariances: np.ndarray  # (k, d, d)


def make_problem(workload: Workload, seed: int) -> Problem:
    """Deterministic noisy rows of a known mixture, their errors, and the shared initial parameters."""
    n, d, k = workload
    rng = np.random.default_rng([seed, n, d, k])
    true_weights = rng.dirichlet(np.full(k, 5.0))
    means = separated_means(rng, k, d, MEAN_BOX, MIN_MEAN_SEPARATION)
    true_chol = np.linalg.cholesky(random_spd(rng, k, d))
    labels = rng.choice(k, size=n, p=true_weights)
    X = rng.standard_normal((n, d))
    for j in range(k):
        rows = labels == j
        X[rows] = means[j] + X[rows] @ true_chol[j].T
    A = rng.standard_normal((n, d, d))
    size = rng.uniform(0.2, 1.0, n) ** 2
    errors = size[:, None, None] * (A @ np.swapaxes(A, 1, 2)) / d
    X += np.einsum("nij,nj->ni", np.linalg.cholesky(errors), rng.standard_normal((n, d)))
    init_rng = np.random.default_rng([seed, n, d, k, 1])
    start_means = X[np.sort(init_rng.choice(n, size=k, replace=False))].copy()
    covariances = np.repeat(np.cov(X, rowvar=False)[None], k, axis=0)
    return Problem(X, errors, np.full(k, 1.0 / k), start_means, covariances)


def mean_log_likelihood(problem: Problem, weights, means, covariances, block: int = 8192) -> float:
    """``mean_i log Σ_k π_k N(x_i | μ_k, Σ_k + S_i)`` in NumPy (Cholesky per row and component), by blocks."""
    weights, means, covariances = (np.asarray(a, np.float64) for a in (weights, means, covariances))
    d = means.shape[1]
    total = 0.0
    for start in range(0, len(problem.X), block):
        x, s = problem.X[start : start + block], problem.errors[start : start + block]
        chol = np.linalg.cholesky(covariances[None] + s[:, None])  # (b, k, d, d)
        diff = x[:, None, :] - means[None]  # (b, k, d)
        z = np.linalg.solve(chol, diff[..., None])[..., 0]
        log_det = 2 * np.sum(np.log(np.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
        log_joint = np.log(weights) - 0.5 * (d * np.log(2 * np.pi) + log_det + np.sum(z**2, axis=-1))
        top = log_joint.max(axis=1, keepdims=True)
        total += float(np.sum(top[:, 0] + np.log(np.exp(log_joint - top).sum(axis=1))))
    return total / len(problem.X)


# ----------------------------------------------------------------------------- workers


def _rss_mb() -> float:
    """The current resident set size in MiB (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 2**10  # kilobytes on Linux


class Timings(NamedTuple):
    times: list[float]  # wall seconds per timed call
    cpu_times: list[float]  # CPU seconds per timed call (all threads, and child processes once joined)
    first_call: float | None  # wall seconds of the first (compiling) call, when timed apart


def _timed(fit, repeats: int, *, first: bool) -> tuple[Timings, object]:
    first_call = None
    if first:
        start = time.perf_counter()
        result = fit()
        first_call = time.perf_counter() - start
    times, cpu_times = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), cpu_seconds(children=True)
        result = fit()
        times.append(time.perf_counter() - start)
        cpu_times.append(cpu_seconds(children=True) - start_cpu)
    return Timings(times, cpu_times, first_call), result


def time_bayesgmm(problem: Problem, iters: int, repeats: int) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    bayesgmm = import_bayesgmm()

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bayesgmm.ConvergenceWarning)
            warnings.simplefilter("ignore", bayesgmm.SpuriousComponentWarning)
            result = bayesgmm.em_fit(
                problem.X,
                len(problem.weights),
                measurement_error=problem.errors,
                max_iter=iters,
                tol=0.0,
                reg_covar=0.0,
                weights_init=problem.weights,
                means_init=problem.means,
                covariances_init=problem.covariances,
            )
        jax.block_until_ready(result.params)
        return result

    jax.block_until_ready(jax.numpy.zeros(1))  # start the backend outside the timings
    rss_start = _rss_mb()
    timings, result = _timed(fit, repeats, first=True)
    if result.n_iter != iters:
        raise RuntimeError(f"bayesgmm ran {result.n_iter} iterations, expected {iters}")
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    params = result.params
    return {
        **timings._asdict(),
        "peak_rss_mb": _peak_rss_mb(),
        "rss_start_mb": rss_start,
        "device_peak_mb": stats["peak_bytes_in_use"] / 2**20 if stats and "peak_bytes_in_use" in stats else None,
        "params": [np.asarray(a).tolist() for a in (params.weights, params.means, params.covariance_matrices)],
        "runtime": f"bayesgmm {bayesgmm.__version__} (float64), JAX backend {jax.default_backend()} "
        f"({device.device_kind}, {jax.device_count()} device(s))",
    }


def time_astroml(problem: Problem, iters: int, repeats: int) -> dict:
    from astroML.density_estimation import XDGMM

    def fit():
        model = XDGMM(len(problem.weights), max_iter=iters)
        model.alpha, model.mu, model.V = problem.weights.copy(), problem.means.copy(), problem.covariances.copy()
        for _ in range(iters):
            model._EMstep(problem.X, problem.errors)
        model.logL(problem.X, problem.errors)  # the final E-step
        return model

    rss_start = _rss_mb()
    timings, model = _timed(fit, repeats, first=False)
    return {
        **timings._asdict(),
        "peak_rss_mb": _peak_rss_mb(),
        "rss_start_mb": rss_start,
        "params": [np.asarray(a).tolist() for a in (model.alpha, model.mu, model.V)],
        "runtime": f"astroML {package_version('astroML')} (NumPy {np.__version__})",
    }


def time_pygmmis(problem: Problem, iters: int, repeats: int) -> dict:
    import pygmmis

    k, d = problem.means.shape

    def fit():
        gmm = pygmmis.GMM(K=k, D=d)
        gmm.amp[:], gmm.mean[:], gmm.covar[:] = problem.weights, problem.means, problem.covariances
        pygmmis.fit(
            gmm,
            problem.X,
            covar=problem.errors,
            init_method="none",
            w=0.0,
            tol=0.0,
            miniter=iters,
            maxiter=iters,
            rng=np.random.RandomState(0),
        )
        return gmm

    rss_start = _rss_mb()
    timings, gmm = _timed(fit, repeats, first=False)
    return {
        **timings._asdict(),
        "peak_rss_mb": _peak_rss_mb(),
        "rss_start_mb": rss_start,
        "children_peak_rss_mb": _peak_rss_mb(resource.RUSAGE_CHILDREN),
        "params": [np.asarray(a).tolist() for a in (gmm.amp, gmm.mean, gmm.covar)],
        "runtime": f"pygmmis {package_version('pygmmis')} ({os.cpu_count()} pool processes)",
    }


WORKERS = {"bayesgmm": time_bayesgmm, "astroML": time_astroml, "pygmmis": time_pygmmis}
MODULES = {"bayesgmm": None, "astroML": "astroML", "pygmmis": "pygmmis"}


def run_worker_main(args: argparse.Namespace) -> None:
    problem = make_problem(Workload.from_arg(args.workload), args.seed)
    result = WORKERS[args.worker](problem, args.iters, args.repeats)
    emit_result(RESULT_PREFIX, result)


# ----------------------------------------------------------------------------- driver


def run_worker(library: str, workload: Workload, args: argparse.Namespace, repeats: int) -> dict:
    """Time ``library`` in a fresh process; return its result, or ``{"error": ...}``."""
    command = [sys.executable, str(SCRIPT), "--worker", library, "--workload", workload.to_arg()]
    command += ["--seed", str(args.seed), "--iters", str(args.iters), "--repeats", str(repeats)]
    return worker_result(command, RESULT_PREFIX, library)


CPU = "cpu_times"  # per_iteration_ms's key for CPU rather than wall time


def per_iteration_ms(result: dict, iters: int, key: str = "times") -> float:
    """Median wall (``key="times"``) or CPU (``"cpu_times"``) milliseconds per iteration."""
    return 1000.0 * statistics.median(result[key]) / iters


def cell(result: dict | None, iters: int, reference: float | None, missing: str) -> str:
    """Per iteration (ms); CPU per iteration (ms); peak RSS and above start (MiB); |Δ loglik| against bayesgmm;
    first call."""
    if result is None:
        return missing
    if "error" in result:
        return "failed"
    notes = [f"CPU {per_iteration_ms(result, iters, CPU):.3g}"]
    notes.append(f"peak {result['peak_rss_mb']:.0f} MiB, +{result['peak_rss_mb'] - result['rss_start_mb']:.0f}")
    if result.get("children_peak_rss_mb"):
        notes.append(f"children {result['children_peak_rss_mb']:.0f} MiB")
    if result.get("device_peak_mb") is not None:
        notes.append(f"device {result['device_peak_mb']:.0f} MiB")
    if reference is not None and "log_likelihood" in result:
        notes.append(f"Δ {abs(result['log_likelihood'] - reference):.1e}")
    if result.get("first_call") is not None:
        notes.append(f"first call {result['first_call']:.2f} s")
    return f"{per_iteration_ms(result, iters):.3g} ({'; '.join(notes)})"


def run_benchmarks(args: argparse.Namespace) -> None:
    load = load_average()
    rows, runtimes = [], {}
    for workload in WORKLOADS[args.sizes]:
        print(f"{workload.label}:", file=sys.stderr, flush=True)
        problem = make_problem(workload, args.seed)
        results: dict[str, dict | None] = {}
        for library, module in MODULES.items():
            if library != "bayesgmm" and (
                workload.n > args.baselines_up_to or importlib.util.find_spec(module) is None
            ):
                results[library] = None
                continue
            repeats = args.repeats if library == "bayesgmm" else args.baseline_repeats
            result = results[library] = run_worker(library, workload, args, repeats)
            if "error" in result:
                continue
            result["log_likelihood"] = mean_log_likelihood(problem, *result.pop("params"))
            runtimes.setdefault(library, result["runtime"])
            print(
                f"  {library:9s} per iter {per_iteration_ms(result, args.iters):.3g} ms "
                f"(calls: {', '.join(f'{t:.3f}' for t in result['times'])} s), peak RSS "
                f"{result['peak_rss_mb']:.0f} MiB, CPU per iter {per_iteration_ms(result, args.iters, CPU):.3g} ms, "
                f"mean loglik {result['log_likelihood']:.10f}",
                file=sys.stderr,
                flush=True,
            )
        ours = results["bayesgmm"]
        reference = ours.get("log_likelihood") if ours else None
        speedups = [
            f"{per_iteration_ms(results[name], args.iters) / per_iteration_ms(ours, args.iters):.1f}× (CPU "
            f"{per_iteration_ms(results[name], args.iters, CPU) / per_iteration_ms(ours, args.iters, CPU):.1f}×)"
            if results[name] and "error" not in results[name] and "error" not in ours
            else "—"
            for name in ("astroML", "pygmmis")
        ]
        cells = [workload.label]
        cells += [cell(results[name], args.iters, reference, "skipped") for name in ("bayesgmm", "astroML", "pygmmis")]
        rows.append("| " + " | ".join(cells + speedups) + " |")
    versions = ", ".join(f"{name} {package_version(name)}" for name in ("jax", "jaxlib", "numpy", "astroML", "pygmmis"))
    lines = [
        SECTION_START,
        "## Extreme deconvolution: em_fit(measurement_error=S) vs astroML XDGMM and pygmmis",
        "",
        f"- Date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
        f"- Machine: {cpu_model()}, {os.cpu_count()} logical cores, {memory_total()} RAM ({platform.platform()}); "
        f"load average before / after the run: {load} / {load_average()}",
        f"- Versions: Python {platform.python_version()}, {versions}; bayesgmm commit {git_revision()}",
        *(f"- {library}: {text}" for library, text in runtimes.items()),
        f"- Command: `{exact_command()}`",
        f"- Setting: full covariances, float64, per-row (n, d, d) error covariances, {args.iters} iterations "
        f"(tol=0, no regularisation) from the same start, data seed {args.seed}; median of {args.repeats} calls "
        f"(bayesgmm, after its first, compiling call) or {args.baseline_repeats} (astroML, pygmmis); baselines "
        f"on workloads up to {args.baselines_up_to:_} rows.",
        "",
        "| workload | bayesgmm per iter (ms) | astroML per iter (ms) | pygmmis per iter (ms) "
        "| astroML / bayesgmm | pygmmis / bayesgmm |",
        "|" + "---|" * 6,
        *rows,
        "",
        f"Per iter = median wall time of one fit / {args.iters} (every fit also runs one final E-step). In "
        "brackets: CPU = median CPU time (user + system, every thread, and pygmmis's pool processes) of one fit / "
        f"{args.iters}, less sensitive than wall time to other processes on a shared machine; the ratios in "
        "brackets are of CPU times; the process's peak resident set and how much of it fitting added above the "
        "resident set "
        "just before the first fit (imports, rows and errors already loaded); pygmmis's largest pool process; "
        "bayesgmm's device peak on an accelerator; |Δ loglik| = |mean log Σ_k π_k N(x_i | μ_k, Σ_k + S_i) of "
        "the library's fitted parameters − of bayesgmm's|, both scored by one NumPy evaluator.",
        SECTION_END,
    ]
    section = "\n".join(lines) + "\n"
    write_section(args.output, section, SECTION_START, SECTION_END)
    print(section)
    print(f"Wrote {args.output}", file=sys.stderr)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", choices=sorted(WORKLOADS), default="all", help="'small' (2k x 7) or 'all'")
    parser.add_argument("--repeats", type=int, default=3, help="timed bayesgmm calls per workload (default 3)")
    parser.add_argument("--baseline-repeats", type=int, default=1, help="timed astroML/pygmmis calls (default 1)")
    parser.add_argument("--iters", type=int, default=20, help="EM iterations per call (default 20)")
    parser.add_argument(
        "--baselines-up-to",
        type=int,
        default=BASELINES_UP_TO,
        metavar="N",
        help="time astroML and pygmmis up to N rows",
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="Markdown file to update (default benchmarks/RESULTS.md)"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"data seed (default {DEFAULT_SEED})")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.repeats, args.baseline_repeats, args.iters) < 1:
        parser.error("--repeats, --baseline-repeats and --iters must be at least 1")
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
