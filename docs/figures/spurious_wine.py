"""Make docs/figures/spurious-wine.png: a spurious maximum on standardised wine, and the guarded fit.

Run from the repository root: ``python docs/figures/spurious_wine.py`` (needs scikit-learn and
matplotlib). Left: one restart (seed 8) that ends with a component on 4 rows in 13 dimensions,
held up by ``reg_covar``; bayesgmm returns it only with a ``SpuriousComponentWarning``. Right:
``em_fit``'s best of 10 restarts, where the guard lets the highest supported restart win.
"""

import warnings
from pathlib import Path

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_wine  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

jax.config.update("jax_enable_x64", True)
import bayesgmm  # noqa: E402

data = load_wine()
X = StandardScaler().fit_transform(data.data)
settings = dict(reg_covar=1e-6, tol=1e-6, max_iter=1000)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", bayesgmm.SpuriousComponentWarning)
    spurious = bayesgmm.em_fit(X, 3, n_init=1, seed=8, **settings)
guarded = bayesgmm.em_fit(X, 3, n_init=10, seed=0, **settings)

_, _, directions = np.linalg.svd(X - X.mean(axis=0), full_matrices=False)
projected = X @ directions[:2].T  # the first two principal components
figure, axes = plt.subplots(1, 2, figsize=(9, 4), sharex=True, sharey=True)
for axis, result, title in [(axes[0], spurious, "one restart: spurious"), (axes[1], guarded, "best supported restart")]:
    labels = np.asarray(result.params.predict_proba(X)).argmax(axis=1)
    rows = np.asarray(result.params.weights) * len(X)
    axis.scatter(*projected.T, c=labels, cmap="viridis", s=14)
    axis.set_title(
        f"{title}\nmean log-lik {result.log_likelihood:.2f}, ARI {adjusted_rand_score(data.target, labels):.2f}, "
        f"smallest component {rows.min():.0f} rows",
        fontsize=9,
    )
    axis.set_xlabel("principal component 1")
axes[0].set_ylabel("principal component 2")
figure.tight_layout()
figure.savefig(Path(__file__).with_name("spurious-wine.png"), dpi=110)
