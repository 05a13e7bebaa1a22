"""Make docs/figures/messy-student-t.png, messy-deconvolution.png and messy-noise.png (docs/messy.md).

Run from the repository root: ``python docs/figures/messy_data.py`` (needs matplotlib).

messy-student-t.png: two clusters in 2-D, 300 rows, with 5% of the rows replaced by gross
errors (uniform over a wide box). Left: two Gaussian components, stretched by the outliers.
Right: two Student-t components, which keep the clusters' shapes; the rows whose expected
precision scale ``u`` is below 0.3 are marked (the fit treats them as outliers).

messy-deconvolution.png: 1-D values from a mixture of two narrow components, each seen through
its own Gaussian measurement error (standard deviations 0.2 to 1.2). The histogram of the
observed values; the density of an ordinary fit to them; the deconvolved density of
``em_fit(..., measurement_error=sigma)``; and the true density.

messy-noise.png: three clusters in 2-D (300 rows) and 60 rows of background noise, uniform over a
box around them. Left: three Gaussian components, which take the noise in and widen. Right:
three Gaussian components and a uniform noise component (``em_fit(..., noise=True)``); rows that
``predict`` labels −1 are grey. The script also prints what ``select`` picks with and without
the noise component.
"""

from pathlib import Path

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)
import bayesgmm  # noqa: E402
from bayesgmm.plot import plot_classification, plot_ellipses  # noqa: E402

FIGURES = Path(__file__).parent


def expected_precision_scale(params, X):
    """Each row's ``u_i = Σ_k r_ik (ν_k + d) / (ν_k + δ²_ik)`` under a full-covariance Student-t fit."""
    means, scales, dof = (np.asarray(a) for a in (params.means, params.covariances, params.dof))
    difference = X[:, None, :] - means[None]  # (n, k, d)
    solved = np.stack([np.linalg.solve(scales[j], difference[:, j].T).T for j in range(len(dof))], axis=1)
    squared = np.einsum("nkd,nkd->nk", difference, solved)  # δ²_ik, Mahalanobis under the scale matrix
    responsibilities = np.asarray(params.predict_proba(X))
    return np.sum(responsibilities * (dof + X.shape[1]) / (dof + squared), axis=1)


# ----------------------------------------------------------------------------- Student-t

rng = np.random.default_rng(4)
n = 300
labels = rng.integers(0, 2, n)
centres = np.array([[0.0, 0.0], [5.0, 2.0]])
shapes = np.array([[[1.0, 0.6], [0.6, 1.0]], [[1.0, -0.5], [-0.5, 0.6]]])
X = centres[labels] + np.einsum("nij,nj->ni", np.linalg.cholesky(shapes)[labels], rng.normal(size=(n, 2)))
outliers = rng.choice(n, size=15, replace=False)
X[outliers] = rng.uniform([-8.0, -8.0], [13.0, 10.0], size=(15, 2))

gaussian = bayesgmm.em_fit(X, 2, n_init=5, seed=0).params
student_t = bayesgmm.em_fit(X, 2, n_init=5, seed=0, family="student_t").params
u = expected_precision_scale(student_t, X)
flagged = u < 0.3

figure, axes = plt.subplots(1, 2, figsize=(10, 4.4), sharex=True, sharey=True, layout="constrained")
for axis, params, title in [(axes[0], gaussian, "Gaussian components"), (axes[1], student_t, "Student-t components")]:
    axis.scatter(*X.T, s=10, c="0.55", linewidths=0, label="rows")
    plot_ellipses(params, ax=axis, radii=(1.0, 2.0))
    bic = float(params.bic(X))
    axis.set_title(f"{title}: BIC {bic:.0f}", fontsize=10)
    axis.set_xlabel("x0")
nu = ", ".join(f"{value:.1f}" for value in np.asarray(student_t.dof))
axes[1].scatter(*X[flagged].T, s=40, marker="x", color="crimson", label=f"u < 0.3 ({flagged.sum()} rows)")
axes[1].set_title(f"Student-t components (ν = {nu}): BIC {float(student_t.bic(X)):.0f}", fontsize=10)
axes[1].legend(loc="lower center", fontsize=8)
axes[0].set_ylabel("x1")
figure.savefig(FIGURES / "messy-student-t.png", dpi=100)

# ----------------------------------------------------------------------------- measurement errors

rng = np.random.default_rng(1)
n = 1000
true_weights, true_means, true_sds = np.array([0.6, 0.4]), np.array([-1.0, 1.5]), np.array([0.3, 0.4])
component = rng.choice(2, size=n, p=true_weights)
values = rng.normal(true_means[component], true_sds[component])
sigma = rng.uniform(0.2, 1.2, size=n)
observed = values + sigma * rng.normal(size=n)
X1, sigma1 = observed[:, None], sigma[:, None]

ordinary = bayesgmm.em_fit(X1, 2, n_init=5, seed=0).params
deconvolved = bayesgmm.em_fit(X1, 2, n_init=5, seed=0, measurement_error=sigma1).params
grid = np.linspace(-5.0, 5.5, 400)
true_density = sum(
    w * np.exp(-0.5 * ((grid - m) / s) ** 2) / (s * np.sqrt(2 * np.pi))
    for w, m, s in zip(true_weights, true_means, true_sds)
)

figure, axis = plt.subplots(figsize=(7, 4), layout="constrained")
axis.hist(observed, bins=60, density=True, color="0.85", edgecolor="white", label="observed values")
axis.plot(grid, np.exp(np.asarray(ordinary.log_prob(grid[:, None]))), color="tab:orange", label="ordinary fit")
axis.plot(
    grid, np.exp(np.asarray(deconvolved.log_prob(grid[:, None]))), color="tab:blue", lw=2, label="deconvolved fit"
)
axis.plot(grid, true_density, color="black", linestyle="--", label="true density")
axis.set_xlabel("value")
axis.set_ylabel("density")
axis.set_title("1000 values, each seen through its own error (sd 0.2 to 1.2)", fontsize=10)
axis.legend(fontsize=8)
figure.savefig(FIGURES / "messy-deconvolution.png", dpi=100)

print("Student-t dof", np.asarray(student_t.dof), "flagged", int(flagged.sum()), "of 15 outliers:", end=" ")
print(int(np.isin(np.flatnonzero(flagged), outliers).sum()))
print("BIC gaussian", float(gaussian.bic(X)), "student_t", float(student_t.bic(X)))
print("ordinary sds", np.sqrt(np.asarray(ordinary.covariances)).ravel(), "means", np.asarray(ordinary.means).ravel())
print("deconvolved sds", np.sqrt(np.asarray(deconvolved.covariances)).ravel(), np.asarray(deconvolved.means).ravel())

# ----------------------------------------------------------------------------- background noise

rng = np.random.default_rng(7)
n_clustered, n_background = 300, 60
centres = np.array([[0.0, 0.0], [6.0, 1.0], [2.5, 6.0]])
shapes = np.array([[[1.0, 0.5], [0.5, 0.8]], [[0.6, -0.3], [-0.3, 1.0]], [[1.2, 0.0], [0.0, 0.4]]])
labels = rng.integers(0, 3, n_clustered)
clustered = centres[labels] + np.einsum(
    "nij,nj->ni", np.linalg.cholesky(shapes)[labels], rng.normal(size=(n_clustered, 2))
)
background = rng.uniform([-6.0, -6.0], [12.0, 12.0], size=(n_background, 2))
X = np.concatenate([clustered, background])
planted = np.arange(n_clustered, n_clustered + n_background)

plain = bayesgmm.em_fit(X, 3, n_init=5, seed=0).params
with_noise = bayesgmm.em_fit(X, 3, n_init=5, seed=0, noise=True).params
noise_rows = np.flatnonzero(np.asarray(with_noise.predict(X)) == -1)
caught = int(np.isin(noise_rows, planted).sum())

figure, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharex=True, sharey=True, layout="constrained")
plot_classification(plain, X, ax=axes[0], size=10)
axes[0].set_title(f"Three Gaussian components: BIC {float(plain.bic(X)):.0f}", fontsize=10)
plot_classification(with_noise, X, ax=axes[1], size=10)
axes[1].set_title(
    f"With a noise component (π₀ = {float(with_noise.noise_weight):.2f}): BIC {float(with_noise.bic(X)):.0f}\n"
    f"{noise_rows.size} rows labelled −1 (grey), {caught} of the {n_background} planted",
    fontsize=10,
)
figure.savefig(FIGURES / "messy-noise.png", dpi=100)

selection_plain = bayesgmm.select(X, k=range(1, 7), covariance_types=("full",))
selection_noise = bayesgmm.select(X, k=range(1, 7), covariance_types=("full",), noise=True)
print("noise: π0", float(with_noise.noise_weight), "labelled -1", noise_rows.size, "of them planted", caught)
print("BIC plain", float(plain.bic(X)), "with noise", float(with_noise.bic(X)))
print("select without noise: k =", selection_plain.best_k, "with noise: k =", selection_noise.best_k)
