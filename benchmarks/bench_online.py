"""Rows per second of online EM (``em_partial_fit``) against refitting: scikit-learn and bayesgmm's streamed EM.

What is measured
----------------
A stream of ``--n`` rows from a known mixture (``--d`` features, ``--k`` components, full
covariances, fixed seed) arrives in batches of ``--batch`` rows. Each method keeps a fitted
mixture up to date as the batches arrive:

- **online**: ``bayesgmm.em_partial_fit`` once per batch, started from ``em_fit`` on the first
  batch with ``START_RESTARTS`` restarts (timed on its own, "start s", not in the pass). The pass is run twice from the
  same start: the first includes the compilation of the update (reported as "first pass s"),
  the second is the timed one; each ends with ``jax.block_until_ready``.
- **scikit-learn refit**: ``sklearn.mixture.GaussianMixture(warm_start=True)`` refitted after
  every batch on all the rows seen so far (scikit-learn has no ``partial_fit`` for mixtures;
  warm starts continue from the previous fit), its default ``tol`` and ``max_iter``. Its cost
  grows with the rows seen, so it runs on the first ``--sklearn-rows`` rows of the stream only
  (its rows/s over that prefix; a longer prefix only lowers it).
- **em_fit streamed**: ``bayesgmm.em_fit`` on all ``--n`` rows from an ``np.memmap``
  (``stream=True``, the driver for data larger than memory), fitted *once* at the end, default
  settings; its first call (compilation included) and a second, timed call. Refitting it after
  every batch, as scikit-learn does, would cost about ``n / (2 batch)`` times this.

"rows/s" is the rows of the stream taken in per second of updating: rows seen / total time.
"mean log-lik" is the final fit's mean log-likelihood over all ``--n`` rows (bayesgmm's
``GMMParams.score``, float64), "Δ rel" its relative difference from the streamed ``em_fit``.

float64 (``jax_enable_x64``); ``--float32`` runs the online pass in float32 as well. On CPU, one
process, no repeats: compare runs on an idle machine (the load average is printed).

How to run::

    python benchmarks/bench_online.py --quick     # check the script (100 000 rows)
    python benchmarks/bench_online.py             # 1 000 000 rows, batches of 10 000
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
import time
import warnings
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from _common import cpu_model, exact_command, git_revision, load_average, package_version, write_section  # noqa: E402

import bayesgmm  # noqa: E402

# Restarts of the start on the first batch: online EM refines the optimum it starts near, so a start
# in a poorer local optimum of the first batch stays there, and the table would compare optima.
START_RESTARTS = 3
SECTION_START, SECTION_END = "<!-- bench_online:start -->", "<!-- bench_online:end -->"


def make_stream(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    """Rows from a mixture with means spread 4 apart, random SPD covariances and Dirichlet weights."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=4.0, size=(k, d))
    factors = rng.normal(size=(k, d, d)) / np.sqrt(d)
    covariances = factors @ np.swapaxes(factors, 1, 2) + 0.5 * np.eye(d)
    labels = rng.choice(k, size=n, p=rng.dirichlet(np.full(k, 5.0)))
    noise = rng.normal(size=(n, d))
    return means[labels] + np.einsum("nij,nj->ni", np.linalg.cholesky(covariances)[labels], noise)


def online_pass(start, batches):
    state = start
    for batch in batches:
        state = bayesgmm.em_partial_fit(state, batch)
    jax.block_until_ready(state.params)
    return state


def run_online(X, batches, k, dtype_x64: bool):
    with jax.enable_x64(dtype_x64):
        started = time.perf_counter()
        start = bayesgmm.em_fit(batches[0], k, seed=0, n_init=START_RESTARTS)
        start_seconds = time.perf_counter() - started
        started = time.perf_counter()
        online_pass(start, batches)
        first = time.perf_counter() - started
        started = time.perf_counter()
        state = online_pass(start, batches)
        seconds = time.perf_counter() - started
    with jax.enable_x64(True):
        params = jax.tree.map(lambda leaf: np.asarray(leaf, np.float64), state.params)
        score = float(params.score(X))
    name = "online em_partial_fit" + ("" if dtype_x64 else " (float32)")
    return dict(method=name, rows=len(X), seconds=seconds, first=first, start=start_seconds, score=score)


def run_sklearn(X, batches, k, max_rows: int):
    from sklearn.mixture import GaussianMixture

    model = GaussianMixture(k, warm_start=True, random_state=0)
    seen, started = 0, time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning of early, small refits
        for batch in batches:
            if seen + len(batch) > max_rows:
                break
            seen += len(batch)
            model.fit(X[:seen])
    seconds = time.perf_counter() - started
    score = float(model.score(X))
    return dict(
        method="scikit-learn refit (warm_start)", rows=seen, seconds=seconds, first=None, start=None, score=score
    )


def run_streamed(X, k, folder: Path):
    path = folder / "stream.npy"
    np.save(path, X)
    mapped = np.load(path, mmap_mode="r")
    started = time.perf_counter()
    bayesgmm.em_fit(mapped, k, seed=0, stream=True)
    first = time.perf_counter() - started
    started = time.perf_counter()
    result = bayesgmm.em_fit(mapped, k, seed=0, stream=True)
    seconds = time.perf_counter() - started
    return (
        dict(
            method=f"em_fit streamed, once ({result.n_iter} it.)",
            rows=len(X),
            seconds=seconds,
            first=first,
            start=None,
            score=float(result.params.score(X)),
        ),
        result.log_likelihood,
    )


def table(rows, reference: float) -> str:
    lines = [
        "| method | rows | seconds | first pass s | start s | rows/s | mean log-lik | Δ rel vs em_fit |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        first = "" if row["first"] is None else f"{row['first']:.2f}"
        start = "" if row["start"] is None else f"{row['start']:.2f}"
        rate = row["rows"] / row["seconds"]
        relative = abs(row["score"] - reference) / abs(reference)
        lines.append(
            f"| {row['method']} | {row['rows']:,} | {row['seconds']:.2f} | {first} | {start} | {rate:,.0f} | "
            f"{row['score']:.5f} | {relative:.1e} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 000 rows, scikit-learn on 20 000 (script check)")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=5)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--sklearn-rows", type=int, default=200_000, help="prefix of the stream scikit-learn refits on")
    parser.add_argument("--float32", action="store_true", help="also the online pass in float32")
    parser.add_argument("--output", type=Path, help="write the table to this file's bench_online section")
    args = parser.parse_args()
    if args.quick:
        args.n, args.sklearn_rows, args.batch = 100_000, 20_000, 5_000
    load_before = load_average()
    X = make_stream(args.n, args.d, args.k)
    batches = [X[start : start + args.batch] for start in range(0, args.n, args.batch)]
    with tempfile.TemporaryDirectory() as folder:
        streamed, reference = run_streamed(X, args.k, Path(folder))
    rows = [run_online(X, batches, args.k, True)]
    if args.float32:
        rows.append(run_online(X, batches, args.k, False))
    rows += [run_sklearn(X, batches, args.k, args.sklearn_rows), streamed]
    header = (
        f"{args.n:,} rows × {args.d} features, k={args.k} (full), batches of {args.batch:,}; "
        f"{datetime.date.today()}, {cpu_model()}, load {load_before} → {load_average()}, bayesgmm {git_revision()}, "
        f"jax {package_version('jax')}, scikit-learn {package_version('scikit-learn')}"
    )
    output = f"{header}\n\n{table(rows, reference)}\n\nCommand: `{exact_command()}`"
    print(output)
    if args.output:
        section = f"{SECTION_START}\n## Online EM (bench_online.py)\n\n{output}\n{SECTION_END}\n"
        write_section(args.output, section, SECTION_START, SECTION_END)


if __name__ == "__main__":
    main()
