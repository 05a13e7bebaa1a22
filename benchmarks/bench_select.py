"""Time the model-selection grid: ``bayesgmm.select`` against looping scikit-learn over the same grid.

What is measured
----------------
Grid: ``k = 1..K`` × the four covariance types, ``max_iter=100``, ``reg_covar=1e-6``,
float64. Data sets: Old Faithful (272 × 2, shipped in the package) and a synthetic mixture
(``--n`` rows, ``--d`` features, 4 components).

- bayesgmm, its defaults: ``bayesgmm.select(X, k=range(1, K + 1), covariance_types=all)``,
  i.e. mclust's hierarchical start (one tree for the grid) and ``tol=1e-4``; and, in the
  same run, the previous defaults ``init="kmeans", n_init=1, tol=1e-3`` (scikit-learn's).
  One compiled program per covariance type (every k and restart in it: one after another
  on CPU, vmapped on GPU). Timed cold
  (first call, compilation included) and warm (median of ``--repeats`` calls on the same
  shapes; a new data set of the same size reuses the compiled programs).
- scikit-learn: ``GaussianMixture(k, covariance_type=t).fit(X)`` (its defaults: k-means start,
  ``tol=1e-3``) for every grid point, one after another, then ``.bic(X)``; median of
  ``--repeats`` sweeps after one untimed warm-up sweep; with default malloc and with ``MALLOC_MMAP_MAX_=0
  MALLOC_TRIM_THRESHOLD_=68719476736`` (fresh processes).

Both pick the (k, type) with the lowest BIC; the table says whether they agree. The two
libraries draw different k-means++ seeds, so their local optima (and BIC values) can differ
slightly at large k.

Results go to the ``bench_select`` section of ``--output`` (benchmarks/RESULTS.md).

How to run::

    python benchmarks/bench_select.py --quick     # check the script
    python benchmarks/bench_select.py
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import cpu_model, exact_command, git_revision, load_average, memory_total, package_version, write_section

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parent.parent
DEFAULT_OUTPUT = SCRIPT.parent / "RESULTS.md"
SECTION_START, SECTION_END = "<!-- bench_select:start -->", "<!-- bench_select:end -->"
RESULT_PREFIX = "BENCH_SELECT_RESULT "
TYPES = ("full", "tied", "diag", "spherical")
TUNED_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736"}


def make_data(name: str, n: int, d: int) -> np.ndarray:
    if name == "faithful":
        sys.path.insert(0, str(REPO_ROOT))
        from bayesgmm.datasets import load_faithful

        return load_faithful()
    rng = np.random.default_rng([n, d])
    means = rng.normal(scale=4.0, size=(4, d))
    labels = rng.choice(4, size=n)
    return means[labels] + rng.normal(size=(n, d))


def worker_bayesgmm(args) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, str(REPO_ROOT))
    import bayesgmm

    X = make_data(args.data, args.n, args.d)
    ks = range(1, args.max_k + 1)

    options = {} if args.variant == "defaults" else dict(init="kmeans", n_init=1, tol=1e-3)

    def run(X):
        return bayesgmm.select(X, k=ks, covariance_types=TYPES, seed=0, **options)

    start = time.perf_counter()
    selection = run(X)
    cold = time.perf_counter() - start
    warm = []
    for repeat in range(args.repeats):
        start = time.perf_counter()
        run(X + 1e-9 * repeat)  # same shapes, (marginally) new data
        warm.append(time.perf_counter() - start)
    return {
        "cold": cold,
        "warm": statistics.median(warm),
        "best": [selection.best_k, selection.best_covariance_type],
        "jax": jax.__version__,
    }


def worker_sklearn(args) -> dict:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    X = make_data(args.data, args.n, args.d)

    def sweep():
        bics = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for covariance_type in TYPES:
                for k in range(1, args.max_k + 1):
                    model = GaussianMixture(k, covariance_type=covariance_type, random_state=0)
                    bics[(k, covariance_type)] = model.fit(X).bic(X)
        return min(bics, key=bics.get)

    sweep()  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        best = sweep()
        times.append(time.perf_counter() - start)
    return {"warm": statistics.median(times), "best": list(best)}


def run_worker(kind: str, args, env_extra=None) -> dict:
    command = [sys.executable, str(SCRIPT), "--worker", kind] + [
        f"--{name.replace('_', '-')}={getattr(args, name)}"
        for name in ("data", "n", "d", "max_k", "variant", "repeats")
    ]
    env = dict(os.environ, **(env_extra or {}))
    completed = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    line = next(line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX))
    return json.loads(line[len(RESULT_PREFIX) :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small grid and one repeat (script check)")
    parser.add_argument("--max-k", type=int, default=9)
    parser.add_argument("--variant", choices=["defaults", "previous"], default="defaults", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=20_000, help="rows of the synthetic data set")
    parser.add_argument("--d", type=int, default=5, help="features of the synthetic data set")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--worker", choices=["bayesgmm", "sklearn"], help=argparse.SUPPRESS)
    parser.add_argument("--data", default="faithful", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = worker_bayesgmm(args) if args.worker == "bayesgmm" else worker_sklearn(args)
        print(RESULT_PREFIX + json.dumps(result))
        return
    if args.quick:
        args.max_k, args.repeats, args.n = 3, 1, 2000
    load_before = load_average()
    rows = []
    for data in ("faithful", "synthetic"):
        args.data = data
        label = "Old Faithful (272 × 2)" if data == "faithful" else f"synthetic ({args.n:_} × {args.d}, 4 clusters)"
        args.variant = "defaults"
        ours = run_worker("bayesgmm", args)
        args.variant = "previous"
        previous = run_worker("bayesgmm", args)
        theirs = run_worker("sklearn", args)
        tuned = run_worker("sklearn", args, TUNED_MALLOC)
        rows.append((label, ours, previous, theirs, tuned))
        print(label, ours, previous, theirs, tuned, flush=True)
    grid = f"k = 1..{args.max_k} × {len(TYPES)} covariance types = {args.max_k * len(TYPES)} fits, one start each"
    lines = [
        SECTION_START,
        "## Model-selection grid: `bayesgmm.select` vs looping scikit-learn",
        "",
        f"- Date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
        f"- Machine: {cpu_model()}, {os.cpu_count()} logical cores, {memory_total()} RAM; load average before / after: "
        f"{load_before} / {load_average()}",
        f"- Versions: jax {package_version('jax')}, numpy {package_version('numpy')}, scikit-learn "
        f"{package_version('scikit-learn')}; bayesgmm commit {git_revision()}",
        f"- Command: `{exact_command()}`",
        f"- Grid: {grid}, max_iter=100, reg_covar=1e-6, float64; medians of {args.repeats} sweeps. bayesgmm: "
        "its defaults (hierarchical start, tol=1e-4) and, in the same run, its previous ones (k-means, tol=1e-3); "
        "scikit-learn: its defaults (k-means, tol=1e-3).",
        "",
        "| data | bayesgmm cold, compile incl. (s) | bayesgmm warm (s) | previous defaults cold / warm (s) "
        "| ratio to previous cold / warm | sklearn loop, default malloc (s) | sklearn loop, tuned malloc (s) "
        "| speed-up warm vs sklearn default / tuned | best (k, type): bayesgmm / previous / sklearn |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, ours, previous, theirs, tuned in rows:
        lines.append(
            f"| {label} | {ours['cold']:.2f} | {ours['warm']:.3f} | {previous['cold']:.2f} / {previous['warm']:.3f} | "
            f"{ours['cold'] / previous['cold']:.2f} / {ours['warm'] / previous['warm']:.2f} | "
            f"{theirs['warm']:.3f} | {tuned['warm']:.3f} | "
            f"{theirs['warm'] / ours['warm']:.1f}× / {tuned['warm'] / ours['warm']:.1f}× | "
            f"{tuple(ours['best'])} / {tuple(previous['best'])} / {tuple(theirs['best'])} |"
        )
    lines += [
        "",
        "Cold = the first call in a fresh process (tracing and XLA compilation of one program per covariance "
        "type, then the fits). Warm = the same grid again on data of the same shape (no compilation). scikit-learn "
        "fits the grid points one after another; bayesgmm runs each covariance type's k values and restarts in "
        "one compiled program (on CPU one after another inside it, on GPU vmapped).",
        SECTION_END,
    ]
    write_section(args.output, "\n".join(lines) + "\n", SECTION_START, SECTION_END)
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
