"""Time the model-selection grid: ``bayesgmm.select`` against looping scikit-learn over the same grid.

What is measured
----------------
Grid: ``k = 1..K`` × the four covariance types, ``max_iter=100``, ``reg_covar=1e-6``,
float64. Data sets: Old Faithful (272 × 2, shipped in the package) and a synthetic mixture
(``--n`` rows, ``--d`` features, 4 components).

- bayesgmm, its defaults: ``bayesgmm.select(X, k=range(1, K + 1), covariance_types=all)``,
  i.e. mclust's hierarchical start (one tree for the grid; the close calls refitted from
  k-means starts, ``select``'s ``close_call_starts``) and ``tol=1e-4``; and, in the
  same run, the previous defaults ``init="kmeans", n_init=1, tol=1e-3`` (scikit-learn's).
  One compiled program per covariance type (every k and restart in it: one after another
  on CPU, vmapped on GPU). Timed cold
  (first call, compilation included) and warm (median of ``--repeats`` calls on the same
  shapes; a new data set of the same size reuses the compiled programs). These workers keep
  the environment's persistent compilation cache (by default the user's, which an earlier run
  may have filled: then "cold" loads programs instead of compiling them); the second table's
  do not.
- scikit-learn: ``GaussianMixture(k, covariance_type=t).fit(X)`` (its defaults: k-means start,
  ``tol=1e-3``) for every grid point, one after another, then ``.bic(X)``; median of
  ``--repeats`` sweeps after one untimed warm-up sweep; with default malloc and with ``MALLOC_MMAP_MAX_=0
  MALLOC_TRIM_THRESHOLD_=68719476736`` (fresh processes).

Both pick the (k, type) with the lowest BIC; the table says whether they agree. The two
libraries draw different k-means++ seeds, so their local optima (and BIC values) can differ
slightly at large k.

The 14-model grid (second table, section ``bench_select_mclust``)
------------------------------------------------------------------
Grid: ``k = 1..K`` × mclust's 14 covariance models (``bayesgmm.covariance.MCLUST_MODELS``,
EII ... VVV; VII, VVI, EEE and VVV are scikit-learn's spherical, diag, tied and full) =
``14 K`` fits, same data sets, float64, ``select``'s defaults otherwise (as the bayesgmm
column of the first table), beside the same scikit-learn loop over its four types on the
same k (the first table's processes, both malloc settings). Fresh processes, each with
bayesgmm's persistent compilation cache (``BAYESGMM_COMPILATION_CACHE``) in a new folder of
its own, so that a cold call compiles every program whatever the user's own cache holds:

- the whole grid, ``select(X, k=range(1, K + 1), covariance_types="all")``: cold (the first
  call of a process whose cache folder is empty: a user's first session, compilation
  included), warm (median of ``--repeats`` calls on the same shapes, as above) and, in a
  second process given the folder the first one left, cold again (a user's next session:
  the programs loaded from the cache);
- per model, in one more process: ``select(X, k=range(1, K + 1), covariance_types=[model])``
  for each model in turn, cold (its first call) then warm (median of ``--repeats``). The
  first model's cold call also compiles what every model shares (the hierarchical start's
  program), and every per-model call builds the start's tree again, which the grid builds
  once: the per-model times add up to more than the grid's;
- the XLA programs compiled by each cold call: ``/jax/core/compile/backend_compile_duration``
  events (``bench_cold.CompileRecorder``; one per program compiled or loaded from the
  persistent cache), by module name, and the cache hits of the next session. The issue's
  goal: one compiled program per covariance structure or fewer;
- scikit-learn: the loop of the first table (4 types × k, its defaults, median of
  ``--repeats`` sweeps after a warm-up sweep) in total and per type, set beside the model of
  the same structure.

``--tables four`` or ``--tables mclust`` measures and writes one of the two tables (the
scikit-learn processes run for both); ``--models EII,VEV`` times some models only.

Called again and again (section ``bench_select_rental``)
--------------------------------------------------------
``--tables rental``: Old Faithful's four-type grid (``select``'s defaults) called
``RENTAL_CALLS`` times in one fresh process with an empty compilation cache: each call's
seconds and drivers. Small grids start on em's NumPy driver, nothing compiled, and move to the
compiled programs once the session's NumPy work on that grid reaches about a compilation's
worth (``bayesgmm.em._fit.GRID_HOST_MAX_WORK``); the hierarchical start's merge tree likewise
(``bayesgmm.em._hierarchical.HOST_MAX_WORK``). The table shows both costs and the switches,
beside scikit-learn's loop.

Against an earlier tree (third table, section ``bench_select_baseline``)
-------------------------------------------------------------------------
``--baseline PATH`` (a checkout of an earlier bayesgmm, e.g. ``git worktree add --detach
/tmp/before fffb05c``, the tree before the right-answers issue changed ``select``'s defaults)
times that tree's ``select(X, k=range(1, K + 1), covariance_types=<four types>, seed=0)``
against this tree's, each with its own defaults: ``--rounds`` pairs of fresh processes per
data set, this tree's first (with a new, empty persistent compilation cache, so its cold call
compiles), cold and warm (median of ``BASELINE_REPEATS`` calls), and the median of the
pairs' ratios. It writes only this table.

Results go to the ``bench_select``, ``bench_select_mclust`` and ``bench_select_baseline`` sections of ``--output``
(benchmarks/RESULTS.md). ``--quick`` (k = 1..3, one repeat, 2000 synthetic rows, the models
``QUICK_MODELS`` unless ``--models`` is given) checks the script and writes to a temporary
file unless ``--output`` is given.

How to run::

    python benchmarks/bench_select.py --quick     # check the script (both tables)
    python benchmarks/bench_select.py             # both tables: 4 types and the 14 models
    python benchmarks/bench_select.py --tables mclust   # the 14-model table only
    python benchmarks/bench_select.py --tables rental   # Old Faithful's grid, 16 calls in one session
    python benchmarks/bench_select.py --baseline /tmp/before --rounds 5   # against an earlier tree
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import cpu_model, exact_command, git_revision, load_average, memory_total, package_version, write_section

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parent.parent
DEFAULT_OUTPUT = SCRIPT.parent / "RESULTS.md"
SECTION_START, SECTION_END = "<!-- bench_select:start -->", "<!-- bench_select:end -->"
MCLUST_START, MCLUST_END = "<!-- bench_select_mclust:start -->", "<!-- bench_select_mclust:end -->"
BASELINE_START, BASELINE_END = "<!-- bench_select_baseline:start -->", "<!-- bench_select_baseline:end -->"
RENTAL_START, RENTAL_END = "<!-- bench_select_rental:start -->", "<!-- bench_select_rental:end -->"
RENTAL_CALLS = 16  # --tables rental: calls per process (Old Faithful's grid moves to the compiled programs at 14)
BASELINE_REPEATS = 15  # warm calls per process against --baseline (a 272-row grid takes 40-70 ms: noisy)
RESULT_PREFIX = "BENCH_SELECT_RESULT "
TYPES = ("full", "tied", "diag", "spherical")
TUNED_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736"}
CACHE_VARIABLE = "BAYESGMM_COMPILATION_CACHE"
DATA_SETS = ("faithful", "synthetic")
# --quick's models: a closed-form M-step, a fixed point (VEV) and a minorise-maximise one (VVE)
QUICK_MODELS = ("EII", "VEV", "VVE")
FIT_PROGRAM = "jit(fit_batch)"  # the module name of em's fitting program (one per structure and shape)


def make_data(name: str, n: int, d: int) -> np.ndarray:
    if name == "faithful":
        sys.path.insert(0, str(REPO_ROOT))
        from bayesgmm.datasets import load_faithful

        return load_faithful()
    rng = np.random.default_rng([n, d])
    means = rng.normal(scale=4.0, size=(4, d))
    labels = rng.choice(4, size=n)
    return means[labels] + rng.normal(size=(n, d))


def time_calls(run, X: np.ndarray, repeats: int, after_first=lambda: None):
    """``run(X)`` once (cold), ``after_first()``, then ``repeats`` warm calls on data of the same shape.

    Returns ``(first result, cold seconds, warm seconds (list), after_first's value)``.
    """
    start = time.perf_counter()
    first = run(X)
    cold = time.perf_counter() - start
    noted = after_first()
    warm = []
    for repeat in range(repeats):
        start = time.perf_counter()
        run(X + 1e-9 * repeat)  # same shapes, (marginally) new data
        warm.append(time.perf_counter() - start)
    return first, cold, warm, noted


def worker_bayesgmm(args) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, str(args.baseline if args.variant == "baseline" else REPO_ROOT))
    import bayesgmm

    X = make_data(args.data, args.n, args.d)
    ks = range(1, args.max_k + 1)

    options = dict(init="kmeans", n_init=1, tol=1e-3) if args.variant == "previous" else {}  # baseline: its defaults

    def run(X):
        return bayesgmm.select(X, k=ks, covariance_types=TYPES, seed=0, **options)

    fit_module = getattr(getattr(bayesgmm, "em", None), "_fit", None)
    rental = getattr(fit_module, "grid_rental", None)  # None in trees before the rental
    before = rental.total() if rental else 0.0
    selection, cold, warm, _ = time_calls(run, X, args.repeats)
    result = {
        "cold": cold,
        "warm": statistics.median(warm),
        "numpy": bool(rental) and rental.total() > before,
        "best": [selection.best_k, selection.best_covariance_type],
        "jax": jax.__version__,
        "bayesgmm": str(Path(bayesgmm.__file__).parent.parent),
    }
    if result["numpy"]:  # and once the session has moved to the compiled programs (grid and tree)
        bayesgmm.em._fit.GRID_HOST_MAX_WORK = bayesgmm.em._hierarchical.HOST_MAX_WORK = 0
        _, _, compiled, _ = time_calls(run, X, args.repeats)
        result["compiled_warm"] = statistics.median(compiled)
    return result


def worker_rental(args) -> dict:
    """``RENTAL_CALLS`` calls of the four-type grid in one fresh process (its own empty compilation cache): the
    seconds of each and the driver ``select`` chose for it (``em._fit.GRID_HOST_MAX_WORK``: NumPy, then
    compiled once the session's NumPy work on the grid reaches about a compilation's worth)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, str(REPO_ROOT))
    import bayesgmm
    from bayesgmm.em import _fit, _hierarchical

    X = make_data(args.data, args.n, args.d)
    calls = []
    for call in range(RENTAL_CALLS):
        before, tree_before = _fit.grid_rental.total(), _hierarchical.tree_rental.total()
        start = time.perf_counter()
        bayesgmm.select(X + 1e-9 * call, k=range(1, args.max_k + 1), covariance_types=TYPES, seed=0)
        seconds = time.perf_counter() - start
        numpy, tree_numpy = _fit.grid_rental.total() > before, _hierarchical.tree_rental.total() > tree_before
        calls.append(dict(seconds=seconds, numpy=numpy, tree_numpy=tree_numpy))
    return {"calls": calls, "limit": _fit.GRID_HOST_MAX_WORK, "tree_limit": _hierarchical.HOST_MAX_WORK}


def rental_section(data_rows, args, load_before: str) -> str:
    lines = header_lines(
        "## select's first calls and later ones: the NumPy driver, then the compiled grid", RENTAL_START, load_before
    )
    lines += [
        f"- Setting: `select(X, k=range(1, {args.max_k + 1}), covariance_types=<four types>, seed=0)` (its defaults: "
        f"the hierarchical start, close calls refitted), {RENTAL_CALLS} calls in one fresh process with an empty "
        "compilation cache, float64; scikit-learn: the loop of the first table (median sweep, default malloc).",
        "",
        "| data | call | fits | start's tree | seconds | seconds so far | scikit-learn loop (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, rental, theirs in data_rows:
        total = 0.0
        for index, call in enumerate(rental["calls"], start=1):
            total += call["seconds"]
            driver = "NumPy" if call["numpy"] else "compiled"
            tree = "NumPy" if call["tree_numpy"] else "compiled"
            seconds = f"{call['seconds']:.3f} | {total:.2f} | {theirs['warm']:.3f}"
            lines.append(f"| {label} | {index} | {driver} | {tree} | {seconds} |")
    lines += [
        "",
        f"The grid stays on em's NumPy driver while the session's work on it (n k d (d + 1) n_init max_iter / 100 over "
        "its fits) "
        f"is within GRID_HOST_MAX_WORK = {data_rows[0][1]['limit']:_} per covariance type, then compiles its programs "
        "(the first compiled call pays the compilation) and runs compiled. The start's merge tree does the same "
        f"with its own budget: NumPy while the session's S² d over trees of its shape is within "
        f"em._hierarchical.HOST_MAX_WORK = {data_rows[0][1]['tree_limit']:_}, then the compiled loop.",
        RENTAL_END,
    ]
    return "\n".join(lines) + "\n"


def worker_sklearn(args) -> dict:
    """scikit-learn's loop over its four types; the sweep's median, and per type the median of its share."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    X = make_data(args.data, args.n, args.d)

    def sweep():
        bics, seconds = {}, {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for covariance_type in TYPES:
                start = time.perf_counter()
                for k in range(1, args.max_k + 1):
                    model = GaussianMixture(k, covariance_type=covariance_type, random_state=0)
                    bics[(k, covariance_type)] = model.fit(X).bic(X)
                seconds[covariance_type] = time.perf_counter() - start
        return min(bics, key=bics.get), seconds

    sweep()  # warm-up
    times, per_type = [], {covariance_type: [] for covariance_type in TYPES}
    for _ in range(args.repeats):
        start = time.perf_counter()
        best, seconds = sweep()
        times.append(time.perf_counter() - start)
        for covariance_type, value in seconds.items():
            per_type[covariance_type].append(value)
    return {
        "warm": statistics.median(times),
        "best": list(best),
        "per_type": {covariance_type: statistics.median(values) for covariance_type, values in per_type.items()},
    }


def start_mclust_worker(args):
    """float64 JAX, bayesgmm, the data, the grid's k and models, and a compilation recorder (``bench_cold``'s)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, str(REPO_ROOT))
    from bench_cold import CompileRecorder

    import bayesgmm

    X = make_data(args.data, args.n, args.d)
    models = "all" if args.models == "all" else args.models.split(",")
    named = list(bayesgmm.covariance.MCLUST_MODELS) if models == "all" else models
    return bayesgmm, X, range(1, args.max_k + 1), models, named, CompileRecorder()


def worker_mclust_grid(args) -> dict:
    """The models' grid in one ``select`` call: the first call (cold), its compilations, then warm calls."""
    bayesgmm, X, ks, models, named, recorder = start_mclust_worker(args)

    def run(X):
        return bayesgmm.select(X, k=ks, covariance_types=models, seed=0)

    selection, cold, warm, compiled = time_calls(run, X, args.repeats, recorder.summary)
    return {
        "models": named,
        "cold": cold,
        "warm": statistics.median(warm) if warm else None,
        "compilations": compiled["compilations"],
        "compile_seconds": compiled["compile_seconds"],
        "programs": compiled["programs"],
        "cache_hits": compiled["cache_hits"],
        "best": [selection.best_k, selection.best_covariance_type],
    }


def worker_mclust_models(args) -> dict:
    """Each model alone, one after another: its first ``select`` call (cold) and its compilations, then warm calls."""
    bayesgmm, X, ks, _, named, recorder = start_mclust_worker(args)
    rows = []
    for model in named:
        compiled_before = len(recorder.names)
        _, cold, warm, programs = time_calls(
            lambda X, model=model: bayesgmm.select(X, k=ks, covariance_types=[model], seed=0),
            X,
            args.repeats,
            lambda start=compiled_before: recorder.names[start:],
        )
        rows.append(
            {
                "model": model,
                "sklearn_name": bayesgmm.covariance.MCLUST_NAMES.get(model),
                "cold": cold,
                "warm": statistics.median(warm),
                "programs": programs,
            }
        )
    return {"rows": rows}


WORKERS = {
    "bayesgmm": worker_bayesgmm,
    "sklearn": worker_sklearn,
    "mclust_grid": worker_mclust_grid,
    "mclust_models": worker_mclust_models,
    "rental": worker_rental,
}


def run_worker(kind: str, args, env_extra=None, *, cache: Path | None = None, repeats: int | None = None) -> dict:
    """Run one worker in a fresh process; ``cache``: its own persistent-cache folder (None: the environment's)."""
    options = dict(vars(args), repeats=args.repeats if repeats is None else repeats)
    command = [sys.executable, str(SCRIPT), "--worker", kind] + [
        f"--{name.replace('_', '-')}={options[name]}"
        for name in ("data", "n", "d", "max_k", "variant", "repeats", "models", "baseline")
        if options[name] is not None
    ]
    env = dict(os.environ, **(env_extra or {}))
    if cache is not None:
        env.pop("JAX_COMPILATION_CACHE_DIR", None)  # a caller's own JAX cache would win over bayesgmm's
        env[CACHE_VARIABLE] = str(cache)
    completed = subprocess.run(command, capture_output=True, text=True, env=env)
    if completed.returncode != 0:
        raise RuntimeError(f"worker {kind} failed ({completed.returncode}):\n{completed.stderr[-4000:]}")
    line = next(line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX))
    return json.loads(line[len(RESULT_PREFIX) :])


def data_label(data: str, args) -> str:
    return "Old Faithful (272 × 2)" if data == "faithful" else f"synthetic ({args.n:_} × {args.d}, 4 clusters)"


def header_lines(title: str, start_marker: str, load_before: str) -> list[str]:
    """A section's first lines: its marker, title, date, machine, versions and command."""
    return [
        start_marker,
        title,
        "",
        f"- Date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
        f"- Machine: {cpu_model()}, {os.cpu_count()} logical cores, {memory_total()} RAM; load average before / after: "
        f"{load_before} / {load_average()}",
        f"- Versions: jax {package_version('jax')}, numpy {package_version('numpy')}, scikit-learn "
        f"{package_version('scikit-learn')}; bayesgmm commit {git_revision()}",
        f"- Command: `{exact_command()}`",
    ]


def four_type_section(rows, args, load_before: str) -> str:
    """The first table: ``select`` over the four types (defaults and previous defaults) against scikit-learn."""
    grid = f"k = 1..{args.max_k} × {len(TYPES)} covariance types = {args.max_k * len(TYPES)} fits, one start each"
    lines = header_lines(
        "## Model-selection grid: `bayesgmm.select` vs looping scikit-learn", SECTION_START, load_before
    )
    lines += [
        f"- Grid: {grid}, max_iter=100, reg_covar=1e-6, float64; medians of {args.repeats} sweeps. bayesgmm: "
        "its defaults (hierarchical start, its close calls rechecked from k-means starts, tol=1e-4) and, in the same "
        "run, its previous ones (k-means, tol=1e-3); "
        "scikit-learn: its defaults (k-means, tol=1e-3).",
        "",
        "| data | bayesgmm cold, compile incl. (s) | bayesgmm warm (s) | previous defaults cold / warm (s) "
        "| ratio to previous cold / warm | sklearn loop, default malloc (s) | sklearn loop, tuned malloc (s) "
        "| speed-up warm vs sklearn default / tuned | best (k, type): bayesgmm / previous / sklearn |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, ours, previous, theirs, tuned in rows:
        warm = f"{ours['warm']:.3f}"
        if ours.get("numpy"):
            warm += f" (NumPy driver; compiled {ours['compiled_warm']:.3f})"
        lines.append(
            f"| {label} | {ours['cold']:.2f} | {warm} | {previous['cold']:.2f} / {previous['warm']:.3f} | "
            f"{ours['cold'] / previous['cold']:.2f} / {ours['warm'] / previous['warm']:.2f} | "
            f"{theirs['warm']:.3f} | {tuned['warm']:.3f} | "
            f"{theirs['warm'] / ours['warm']:.1f}× / {tuned['warm'] / ours['warm']:.1f}× | "
            f"{tuple(ours['best'])} / {tuple(previous['best'])} / {tuple(theirs['best'])} |"
        )
    lines += [
        "",
        "Cold = the first call in a fresh process (tracing and XLA compilation of one program per covariance "
        "type, then the fits, or none on em's NumPy driver). Warm = the same grid again on data of the same shape "
        "(no compilation). scikit-learn fits the grid points one after another; bayesgmm runs each covariance "
        "type's k values and restarts in one compiled program (on CPU one after another inside it, on GPU "
        "vmapped), or, for a small grid (`GRID_HOST_MAX_WORK`), on em's NumPy driver for about a compilation's "
        "worth of calls in a session: then the warm column says so and gives in brackets the median of as many "
        "calls again after the session moved to the compiled programs (grid and the start's tree; the speed-ups "
        "are of the first figure).",
        SECTION_END,
    ]
    return "\n".join(lines) + "\n"


def program_counts(programs: dict[str, int]) -> str:
    """``{"jit(fit_batch)": 14, "jit(_merges)": 1}`` as "15: `jit(fit_batch)` × 14, `jit(_merges)` × 1"."""
    names = ", ".join(f"`{name}` × {count}" for name, count in programs.items())
    return f"{sum(programs.values())}: {names}" if programs else "0"


def mclust_section(rows, args, load_before: str) -> str:
    """The second table: the models' grid in one call and model by model, against scikit-learn's four-type loop."""
    models = rows[0][1]["models"]
    n_fits = args.max_k * len(models)
    n_sklearn = args.max_k * len(TYPES)
    everything = (
        "mclust's 14 models" if len(models) == 14 else f"{len(models)} of mclust's models ({', '.join(models)})"
    )
    call = 'covariance_types="all"' if args.models == "all" else f"covariance_types={models}"
    lines = header_lines(
        '## The 14-model grid: `bayesgmm.select(covariance_types="all")` vs scikit-learn\'s four-type loop',
        MCLUST_START,
        load_before,
    )
    lines += [
        f"- Grid: k = 1..{args.max_k} × {everything} = {n_fits} fits, `select(X, k=range(1, {args.max_k + 1}), "
        f"{call})` with its defaults (hierarchical start, one start per fit, tol=1e-4), max_iter=100, "
        f"reg_covar=1e-6, float64; warm = medians of {args.repeats} calls. scikit-learn: k = 1..{args.max_k} × its "
        f"4 types = {n_sklearn} fits with its defaults (k-means, tol=1e-3), median of {args.repeats} sweeps after a "
        "warm-up sweep, default and tuned malloc (the four-type table's processes when a run measures both).",
        "",
        "| data | bayesgmm cold, empty cache (s) | cold, next session (s) | warm (s) | warm per fit (ms) "
        "| XLA programs compiled (cold) | cache hits (next session) | sklearn loop, default / tuned malloc (s) "
        "| sklearn per fit, default malloc (ms) | speed-up warm grid vs sklearn loop, default / tuned "
        "| best (k, model): bayesgmm / sklearn |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, grid, next_session, _, theirs, tuned in rows:
        lines.append(
            f"| {label} | {grid['cold']:.2f} | {next_session['cold']:.2f} | {grid['warm']:.3f} | "
            f"{1e3 * grid['warm'] / n_fits:.1f} | {program_counts(grid['programs'])} | {next_session['cache_hits']} | "
            f"{theirs['warm']:.3f} / {tuned['warm']:.3f} | {1e3 * theirs['warm'] / n_sklearn:.1f} | "
            f"{theirs['warm'] / grid['warm']:.1f}× / {tuned['warm'] / grid['warm']:.1f}× | "
            f"{tuple(grid['best'])} / {tuple(theirs['best'])} |"
        )
    labels = [row[0] for row in rows]
    header = "| model | scikit-learn's name | " + " | ".join(
        f"{label}: cold / warm (s) | programs | sklearn same type, default malloc (s)" for label in labels
    )
    lines += ["", f"Model by model, `select(X, k=range(1, {args.max_k + 1}), covariance_types=[model])`:", ""]
    lines += [header + " |", "|---|---|" + "---|---|---|" * len(labels)]
    per_model = [{row["model"]: row for row in models_result["rows"]} for _, _, _, models_result, _, _ in rows]
    for model in models:
        cells = []
        for (*_, theirs, _), by_model in zip(rows, per_model):
            row = by_model[model]
            same_type = f"{theirs['per_type'][row['sklearn_name']]:.3f}" if row["sklearn_name"] else "—"
            cells.append(f"{row['cold']:.2f} / {row['warm']:.3f} | {len(row['programs'])} | {same_type}")
        sklearn_name = by_model[model]["sklearn_name"] or "—"
        lines.append(f"| {model} | {sklearn_name} | " + " | ".join(cells) + " |")
    sums = []
    for (*_, theirs, _), by_model in zip(rows, per_model):
        cold, warm = sum(row["cold"] for row in by_model.values()), sum(row["warm"] for row in by_model.values())
        programs = sum(len(row["programs"]) for row in by_model.values())
        sums.append(f"{cold:.2f} / {warm:.3f} | {programs} | {theirs['warm']:.3f} (4 types)")
    lines.append("| sum of the calls above | | " + " | ".join(sums) + " |")
    lines += [
        "",
        "Every cold figure comes from a fresh process whose persistent compilation cache "
        f"(`{CACHE_VARIABLE}`) is a new, empty folder: a user's first session, compilation included. "
        "Next session = the grid's first call in another fresh process given the folder the first one left (its "
        "programs loaded from disk: the cache hits). Warm = the same call again on data of the same shape (no "
        "compilation). Programs = XLA compilations during the cold call (`jax.monitoring`'s "
        f"`backend_compile_duration` events, by module name): `{FIT_PROGRAM}` is one covariance model's fitting "
        "program (every k and restart in it); the others are shared by every model (the hierarchical start), "
        "compiled by the first call of a process, so the first model of the per-model table carries them. Each "
        "per-model call also builds the start's tree again, which the grid builds once. The grid also runs what "
        "a per-model call cannot: VVE again from EVE's classification and EVV from EEV's (`select`'s "
        "`NESTED_STARTS`, in their own programs: no compilation, one more run of each), so its warm time is more "
        "than the per-model calls' share of it. The sklearn columns are "
        "its loop over k for the type of the same structure (VII = spherical, VVI = diag, EEE = tied, VVV = full); "
        "scikit-learn has no other of mclust's models. A row with 0 programs ran on em's NumPy driver: `select` "
        "keeps a grid there until about one compilation's worth of work (`GRID_HOST_MAX_WORK` per model) has been "
        "spent on it in the session, then compiles (Old Faithful's 14-model grid: at its 13th call), so its cold "
        "and warm calls cost the same and the warm speed-up against scikit-learn is that of the NumPy driver.",
        MCLUST_END,
    ]
    return "\n".join(lines) + "\n"


def baseline_rows(args) -> list:
    """Per data set, ``--rounds`` pairs of fresh processes: this tree's select (a new, empty persistent cache:
    its cold call compiles) then the baseline's, each cold and warm (median of ``BASELINE_REPEATS`` calls)."""
    rows = []
    for data in DATA_SETS:
        args.data = data
        pairs = []
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="bench_select_cache_") as folder:
                args.variant = "defaults"
                ours = run_worker("bayesgmm", args, cache=Path(folder), repeats=BASELINE_REPEATS)
            args.variant = "baseline"
            before = run_worker("bayesgmm", args, repeats=BASELINE_REPEATS)
            pairs.append((ours, before))
            print(data, ours, before, flush=True)
        args.variant = "defaults"
        rows.append((data_label(data, args), pairs))
    return rows


def baseline_section(rows, args, load_before: str) -> str:
    """The third table: this tree's select against an earlier tree's, pair by pair."""
    lines = header_lines(
        "## `select` against an earlier tree: cold and warm, fresh processes in alternation",
        BASELINE_START,
        load_before,
    )
    lines += [
        f"- Baseline: `{args.baseline}` (commit {git_revision(args.baseline)}), its `select` defaults; this tree: its "
        "defaults. Grid: k = 1..9 × the four types, seed=0, float64.",
        f"- Each round: this tree's process (a new, empty persistent compilation cache), then the baseline's; cold = "
        f"the first call (compilation included), warm = the median of {BASELINE_REPEATS} more calls.",
        "",
        "| data | round | this tree cold / warm (s) | baseline cold / warm (s) | ratio cold / warm | best (k, type): "
        "this tree / baseline |",
        "|---|---|---|---|---|---|",
    ]
    for label, pairs in rows:
        for index, (ours, before) in enumerate(pairs, 1):
            lines.append(
                f"| {label} | {index} | {ours['cold']:.2f} / {ours['warm']:.3f} | {before['cold']:.2f} / "
                f"{before['warm']:.3f} | {ours['cold'] / before['cold']:.2f} / {ours['warm'] / before['warm']:.2f} | "
                f"{tuple(ours['best'])} / {tuple(before['best'])} |"
            )
        cold = statistics.median(ours["cold"] / before["cold"] for ours, before in pairs)
        warm = statistics.median(ours["warm"] / before["warm"] for ours, before in pairs)
        lines.append(f"| {label} | median of the ratios | | | **{cold:.2f} / {warm:.2f}** | |")
    lines.append(BASELINE_END)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small grid and one repeat (script check)")
    parser.add_argument("--max-k", type=int, default=9)
    parser.add_argument(
        "--variant", choices=["defaults", "previous", "baseline"], default="defaults", help=argparse.SUPPRESS
    )
    parser.add_argument("--n", type=int, default=20_000, help="rows of the synthetic data set")
    parser.add_argument("--d", type=int, default=5, help="features of the synthetic data set")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--tables",
        choices=["all", "four", "mclust", "rental"],
        default="all",
        help="the four-type table, the 14-model one, or both; or 'rental': Old Faithful's grid called again and "
        "again in one session (the NumPy driver, then the compiled programs)",
    )
    parser.add_argument(
        "--models",
        help="the second table's models, comma-separated, or 'all' (default; --quick: " + ",".join(QUICK_MODELS) + ")",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of an earlier bayesgmm (e.g. `git worktree add --detach /tmp/before fffb05c`): time its "
        "select's defaults against this tree's, fresh processes in alternation (the third table only)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="--baseline: alternations per data set")
    parser.add_argument("--output", type=Path, help="default: benchmarks/RESULTS.md (--quick: a temporary file)")
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", default="faithful", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(RESULT_PREFIX + json.dumps(WORKERS[args.worker](args)))
        return
    if args.quick:
        args.max_k, args.repeats, args.n = 3, 1, 2000
    if args.models is None:
        args.models = ",".join(QUICK_MODELS) if args.quick else "all"
    if args.output is None:
        args.output = Path(tempfile.mkdtemp(prefix="bench_select_"), "RESULTS.md") if args.quick else DEFAULT_OUTPUT
    if args.baseline is not None:
        load_before = load_average()
        rows = baseline_rows(args)
        write_section(args.output, baseline_section(rows, args, load_before), BASELINE_START, BASELINE_END)
        print(f"Wrote {args.output}")
        return
    if args.tables == "rental":
        load_before = load_average()
        args.data = "faithful"
        with tempfile.TemporaryDirectory(prefix="bench_select_cache_") as folder:
            rental = run_worker("rental", args, cache=Path(folder))
        theirs = run_worker("sklearn", args)
        section = rental_section([(data_label("faithful", args), rental, theirs)], args, load_before)
        write_section(args.output, section, RENTAL_START, RENTAL_END)
        print(f"Wrote {args.output}")
        return
    four, mclust = args.tables in ("all", "four"), args.tables in ("all", "mclust")
    load_before = load_average()
    four_rows, mclust_rows = [], []
    for data in DATA_SETS:
        args.data = data
        label = data_label(data, args)
        if four:
            args.variant = "defaults"
            ours = run_worker("bayesgmm", args)
            args.variant = "previous"
            previous = run_worker("bayesgmm", args)
            args.variant = "defaults"
        theirs = run_worker("sklearn", args)
        tuned = run_worker("sklearn", args, TUNED_MALLOC)
        if four:
            four_rows.append((label, ours, previous, theirs, tuned))
            print(label, ours, previous, theirs, tuned, flush=True)
        if mclust:
            with tempfile.TemporaryDirectory(prefix="bench_select_cache_") as folder:
                grid = run_worker("mclust_grid", args, cache=Path(folder, "grid"))
                next_session = run_worker("mclust_grid", args, cache=Path(folder, "grid"), repeats=0)
                per_model = run_worker("mclust_models", args, cache=Path(folder, "models"))
            mclust_rows.append((label, grid, next_session, per_model, theirs, tuned))
            print(label, grid, next_session, per_model, flush=True)
    if four:
        write_section(args.output, four_type_section(four_rows, args, load_before), SECTION_START, SECTION_END)
    if mclust:
        write_section(args.output, mclust_section(mclust_rows, args, load_before), MCLUST_START, MCLUST_END)
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
