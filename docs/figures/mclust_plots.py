"""Make docs/figures/mclust-plots.png: mclust's three plots of a model-selection grid on bayesgmm.

Run from the repository root: ``python docs/figures/mclust_plots.py`` (needs scikit-learn for
iris, and matplotlib). Left: the BIC curves of Old Faithful's grid (k = 1..9, four covariance
types; spurious grid points as gaps with hollow marks). Middle: the chosen fit's classification
with marker areas growing with the uncertainty 1 − max responsibility. Right: iris (4 features)
on the first two of mclust's dimension-reduction directions of its BIC-chosen fit.
"""

from pathlib import Path

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402

jax.config.update("jax_enable_x64", True)
import bayesgmm  # noqa: E402
from bayesgmm.datasets import load_faithful  # noqa: E402
from bayesgmm.plot import plot_criterion, plot_directions, plot_uncertainty  # noqa: E402

faithful = load_faithful()
selection = bayesgmm.select(faithful)
figure, axes = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
plot_criterion(selection, "bic", ax=axes[0])
plot_uncertainty(selection.best.params, faithful, ax=axes[1], feature_names=("eruptions", "waiting"))
axes[1].set_title(f"Old Faithful, k={selection.best_k} {selection.best_covariance_type}: uncertainty", fontsize=10)
figure.savefig(Path(__file__).with_name("mclust-plots.png"), dpi=100)

iris = load_iris().data
chosen = bayesgmm.select(iris, k=range(1, 6)).best.params
directions = plot_directions(chosen, iris, n_directions=2, points="uncertainty", figsize=(6, 5.4))
directions.suptitle(f"iris: {chosen.n_components}-component fit on its first two MclustDR directions", fontsize=10)
directions.savefig(Path(__file__).with_name("mclust-directions.png"), dpi=100)
