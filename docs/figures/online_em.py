"""Make docs/figures/online-em.png: mean log-likelihood against rows processed, online EM and batch EM.

Run from the repository root: ``python docs/figures/online_em.py`` (needs matplotlib). 200 000
rows of a 5-component mixture in 5 dimensions (full covariances). Both fits start from the same
parameters (``em_fit`` on the first 300 rows, 3 restarts). Online: ``em_partial_fit`` on batches of
2 000 rows, scored on all rows after each batch. Batch: ``em_fit`` on all rows from that start,
its log-likelihood before each iteration (every iteration reads all 200 000 rows). The dashed
line is the batch fit's final mean log-likelihood, the dotted one the start's.
"""

import sys
from pathlib import Path

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_online import make_stream  # noqa: E402

import bayesgmm  # noqa: E402

N, D, K, BATCH = 200_000, 5, 5, 2_000
X = make_stream(N, D, K, seed=1)
start = bayesgmm.em_fit(X[:300], K, seed=0, n_init=3).params

state, online_rows, online_scores = start, [0], [float(start.score(X))]
for begin in range(0, N, BATCH):
    state = bayesgmm.em_partial_fit(state, X[begin : begin + BATCH])
    online_rows.append(state.rows_seen)
    online_scores.append(float(state.params.score(X)))

batch = bayesgmm.em_fit(
    X,
    K,
    weights_init=np.asarray(start.weights),
    means_init=np.asarray(start.means),
    covariances_init=np.asarray(start.covariances),
    tol=1e-6,
    max_iter=500,
)
batch_rows = N * np.arange(len(batch.log_likelihood_history))

figure, axis = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
axis.plot(online_rows[1:], online_scores[1:], label=f"online EM, batches of {BATCH:,}")
axis.plot(batch_rows[1:], batch.log_likelihood_history[1:], marker="o", markersize=3, label="batch EM (em_fit)")
axis.axhline(batch.log_likelihood, color="grey", linestyle="--", linewidth=1)
axis.set_xscale("log")
axis.axhline(online_scores[0], color="grey", linestyle=":", linewidth=1)
axis.annotate("start", (online_rows[1], online_scores[0]), xytext=(0, 3), textcoords="offset points", color="grey")
lowest = min(online_scores[0], *online_scores[1:], *batch.log_likelihood_history[1:])
axis.set_ylim(lowest - 0.02, batch.log_likelihood + 0.02)
axis.set_xlabel("rows processed")
axis.set_ylabel("mean log-likelihood (all rows)")
axis.set_title(f"{N:,} rows, {D} features, k = {K}, same start", fontsize=10)
axis.legend(loc="lower right")
output = Path(__file__).with_name("online-em.png")
figure.savefig(output, dpi=120)
gap = abs(online_scores[-1] - batch.log_likelihood) / abs(batch.log_likelihood)
print(f"{output}: online after one pass {online_scores[-1]:.5f}, batch {batch.log_likelihood:.5f} ({gap:.1e} rel)")
print(f"batch EM: {batch.n_iter} iterations = {batch.n_iter * N:,} rows processed")
