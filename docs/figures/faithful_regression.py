"""Make docs/figures/faithful-regression.png: waiting time given eruption duration on Old Faithful.

Run from the repository root: ``python docs/figures/faithful_regression.py`` (needs matplotlib).
Left: the EM fit's conditional mean ``E[waiting | eruptions]`` (``GMMParams.predict_mean``) and its
± 2 sd predictive band (``predict_cov``). Right: a NUTS posterior's predictive mean and band
(``Posterior.predict_mean``, ``predict_cov``) and the 90% credible band of the regression
function, the 5% and 95% quantiles over draws of each draw's conditional mean.
"""

from pathlib import Path

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)
import bayesgmm  # noqa: E402
from bayesgmm.datasets import load_faithful  # noqa: E402

X = load_faithful()
fit = bayesgmm.em_fit(X, 2, n_init=5, seed=0)
posterior = bayesgmm.infer(
    load_faithful(as_frame=True), 2, method="nuts", num_warmup=500, num_samples=500, num_chains=2, seed=0, init=fit
)

durations = np.linspace(1.4, 5.3, 200)[:, None]  # the given coordinate (eruptions, column 0)
given = [0]
em_mean = np.asarray(fit.params.predict_mean(durations, given))[:, 0]
em_sd = np.sqrt(np.asarray(fit.params.predict_cov(durations, given))[:, 0, 0])
mean = np.asarray(posterior.predict_mean(durations, given))[:, 0]
sd = np.sqrt(np.asarray(posterior.predict_cov(durations, given))[:, 0, 0])
per_draw = np.asarray(posterior.params.predict_mean(durations, given))[..., 0].reshape(-1, len(durations))
low, high = np.quantile(per_draw, [0.05, 0.95], axis=0)

figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True, sharey=True)
for axis in axes:
    axis.scatter(X[:, 0], X[:, 1], s=8, color="0.55", label="eruptions")
    axis.set_xlabel("eruptions (minutes)")
axes[0].plot(durations[:, 0], em_mean, color="C0", label="E[waiting | eruptions]")
axes[0].fill_between(durations[:, 0], em_mean - 2 * em_sd, em_mean + 2 * em_sd, color="C0", alpha=0.2, label="± 2 sd")
axes[0].set_title("EM fit (k = 2): conditional mean and predictive band", fontsize=10)
axes[0].set_ylabel("waiting (minutes)")
axes[1].plot(durations[:, 0], mean, color="C1", label="posterior predictive mean")
axes[1].fill_between(durations[:, 0], mean - 2 * sd, mean + 2 * sd, color="C1", alpha=0.15, label="± 2 sd")
axes[1].fill_between(durations[:, 0], low, high, color="C3", alpha=0.5, label="90% band of the mean (draws)")
axes[1].set_title("NUTS (2 x 500 draws): predictive and credible bands", fontsize=10)
for axis in axes:
    axis.legend(loc="upper left", fontsize=8)
figure.tight_layout()
figure.savefig(Path(__file__).with_name("faithful-regression.png"), dpi=110)
print(
    f"largest width of the 90% band of the mean: {np.max(high - low):.2f} minutes at eruptions "
    f"{durations[np.argmax(high - low), 0]:.2f}; predictive sd {sd.min():.2f} to {sd.max():.2f} minutes"
)
print(
    f"largest difference between the predictive mean and the unweighted mean of the draws' means: "
    f"{np.max(np.abs(mean - per_draw.mean(axis=0))):.3f} minutes"
)
