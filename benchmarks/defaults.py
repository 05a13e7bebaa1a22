"""Measure ``select``'s default initialisation on classic data: does it choose the best model?

What is measured
----------------
For each data set, the grid ``k = 1..9`` × the four covariance types, BIC, float64:

- the reference: the (k, type) of lowest BIC with ``init="kmeans", n_init=50, tol=1e-4`` (the
  best of 50 k-means++ starts at every grid point, at select's default tolerance);
- each candidate default (``CANDIDATES``): its choice, its BIC, and whether the choice is
  the reference's;
- the warm time of select's default (the hierarchical start with its close calls' k-means
  refits) against the hierarchical start alone (``close_call_starts=0``), same process.

Data sets: Old Faithful (272 × 2), iris (150 × 4), wine standardised (178 × 13), MASS
crabs (200 × 5), Palmer penguins (342 × 4); tests/data has the last two with provenance.
Writes the ``defaults`` section of ``--output`` (benchmarks/RESULTS.md). Cold times are
bench_select's (fresh processes).

How to run::

    python benchmarks/defaults.py --quick   # two data sets, n_init=5 reference (script check)
    python benchmarks/defaults.py
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from _common import cpu_model, exact_command, git_revision, memory_total, package_version, write_section

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parent.parent
DATA = REPO_ROOT / "tests" / "data"
SECTION_START, SECTION_END = "<!-- defaults:start -->", "<!-- defaults:end -->"
TYPES = ("full", "tied", "diag", "spherical")
CANDIDATES = {
    "kmeans, tol=1e-3 (previous default)": dict(init="kmeans", n_init=1, tol=1e-3),
    "kmeans, tol=1e-4": dict(init="kmeans", n_init=1, tol=1e-4),
    "kmeans, n_init=5, tol=1e-4": dict(init="kmeans", n_init=5, tol=1e-4),
    "hierarchical alone, tol=1e-4 (previous default)": dict(init="hierarchical", tol=1e-4, close_call_starts=0),
    "hierarchical + close calls, tol=1e-4 (default)": dict(init="hierarchical", tol=1e-4),
    "hierarchical + close calls, tol=1e-5": dict(init="hierarchical", tol=1e-5),
}
# the warm time of select (median of WARM_REPEATS calls after one) for these two: the close calls' cost
TIMED = ("hierarchical alone, tol=1e-4 (previous default)", "hierarchical + close calls, tol=1e-4 (default)")
WARM_REPEATS = 15


def load(name: str) -> np.ndarray:
    import pandas as pd

    if name == "Old Faithful":
        from bayesgmm.datasets import load_faithful

        return load_faithful()
    if name == "iris":
        from sklearn.datasets import load_iris

        return load_iris().data
    if name == "wine (standardised)":
        from sklearn.datasets import load_wine
        from sklearn.preprocessing import StandardScaler

        return StandardScaler().fit_transform(load_wine().data)
    if name == "crabs":
        return pd.read_csv(DATA / "crabs.csv", comment="#")[["FL", "RW", "CL", "CW", "BD"]].to_numpy(float)
    if name == "penguins":
        return pd.read_csv(DATA / "penguins.csv", comment="#").iloc[:, 1:].to_numpy(float)
    raise ValueError(name)


def warm_times(bayesgmm, X, *, max_k: int) -> dict[str, float]:
    """Median warm time of each ``TIMED`` candidate, their calls interleaved (A B A B ...) so that a
    drift of the machine's speed falls on both alike."""
    times = {label: [] for label in TIMED}
    for label in TIMED:
        choose(bayesgmm, X, max_k=max_k, **CANDIDATES[label])
    for _ in range(WARM_REPEATS):
        for label in TIMED:
            start = time.perf_counter()
            choose(bayesgmm, X, max_k=max_k, **CANDIDATES[label])
            times[label].append(time.perf_counter() - start)
    return {label: float(np.median(values)) for label, values in times.items()}


def choose(bayesgmm, X, *, max_k: int, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-convergence and re-seeding at large k are expected here
        selection = bayesgmm.select(X, k=range(1, max_k + 1), covariance_types=TYPES, seed=0, **kwargs)
    best = selection.table.loc[selection.table["bic"].idxmin()]
    return (selection.best_k, selection.best_covariance_type), float(best["bic"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reference-n-init", type=int, default=50)
    parser.add_argument("--max-k", type=int, default=9)
    parser.add_argument("--output", type=Path, default=SCRIPT.parent / "RESULTS.md")
    args = parser.parse_args()
    import jax

    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, str(REPO_ROOT))
    import bayesgmm

    names = ["Old Faithful", "iris", "wine (standardised)", "crabs", "penguins"]
    if args.quick:
        names, args.reference_n_init = names[:2], 5
    rows = []
    for name in names:
        X = load(name)
        start = time.perf_counter()
        reference = choose(bayesgmm, X, max_k=args.max_k, init="kmeans", n_init=args.reference_n_init, tol=1e-4)
        print(name, "reference", reference, f"{time.perf_counter() - start:.1f} s", flush=True)
        found = {label: choose(bayesgmm, X, max_k=args.max_k, **kwargs) for label, kwargs in CANDIDATES.items()}
        print(name, found, flush=True)
        warm = warm_times(bayesgmm, X, max_k=args.max_k)
        print(name, warm, flush=True)
        rows.append((name, X.shape, reference, found, warm))
    header = " | ".join(CANDIDATES)
    lines = [
        SECTION_START,
        "## Default initialisation of `select`: does it find the best model?",
        "",
        f"- Date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
        f"- Machine: {cpu_model()}, {os.cpu_count()} logical cores, {memory_total()} RAM",
        f"- Versions: jax {package_version('jax')}, numpy {package_version('numpy')}; bayesgmm commit {git_revision()}",
        f"- Command: `{exact_command()}`",
        f"- Grid: k = 1..{args.max_k} × {len(TYPES)} covariance types, BIC (lower is better), "
        f"max_iter=100, reg_covar=1e-6, seed=0, float64. Reference: `init='kmeans', n_init="
        f"{args.reference_n_init}, tol=1e-4`. A cell gives the candidate's choice and BIC; ✓ when the choice is "
        "the reference's.",
        "",
        f"| data | n × d | reference (BIC) | {header} |",
        "|---|---|---|" + "---|" * len(CANDIDATES),
    ]
    for name, shape, (best, bic), found, _ in rows:
        cells = [
            f"{'✓' if choice == best else '✗'} ({choice[0]}, {choice[1]}) {value:.1f}"
            for choice, value in found.values()
        ]
        lines.append(
            f"| {name} | {shape[0]} × {shape[1]} | ({best[0]}, {best[1]}) {bic:.1f} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        f"Warm time of the grid, same process (median of {WARM_REPEATS} calls after a first one, the two "
        "candidates' calls interleaved), s: "
        f"{TIMED[0]} / {TIMED[1]}, and their ratio.",
        "",
        "| data | hierarchical alone (s) | with close calls (s) | ratio |",
        "|---|---|---|---|",
    ]
    for name, _, _, _, warm in rows:
        alone, default = (warm[label] for label in TIMED)
        lines.append(f"| {name} | {alone:.3f} | {default:.3f} | {default / alone:.2f}× |")
    lines.append(SECTION_END)
    write_section(args.output, "\n".join(lines) + "\n", SECTION_START, SECTION_END)
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
