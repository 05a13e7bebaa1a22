"""Plots of fitted mixtures (matplotlib, an optional dependency imported lazily).

Every function takes a ``GMMParams`` (unbatched) and returns the matplotlib Axes.
"""

from __future__ import annotations

import numpy as np


def _pyplot():
    try:
        import matplotlib

        if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo") and not _has_display():
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "Plotting needs matplotlib: pip install 'bayesgmm[plot]' (or pip install matplotlib)."
        ) from None
    return plt


def _has_display() -> bool:
    import os

    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _ellipse_points(mean, covariance, radius, n_points=100):
    """Points on the ellipse {x : (x−μ)ᵀ Σ⁻¹ (x−μ) = radius²} for a 2×2 covariance."""
    angles = np.linspace(0.0, 2.0 * np.pi, n_points)
    circle = np.stack([np.cos(angles), np.sin(angles)])
    return (mean[:, None] + radius * np.linalg.cholesky(covariance) @ circle).T


def plot_density(
    params, X=None, *, ax=None, n_grid: int = 200, n_levels: int = 12, ellipses: bool = True, feature_names=("x1", "x2")
):
    """Contours of the mixture's log density, with the data and 1- and 2-sd component ellipses.

    Parameters
    ----------
    params : GMMParams with 2 features, unbatched
    X : array-like (n, 2), optional
        Points to scatter; also sets the plotted range.
    ax : matplotlib Axes, optional
    n_grid : int
        Grid points per axis for the contours.
    n_levels : int
        Number of contour levels (in log density).
    ellipses : bool
        Draw each component's 1 and 2 standard-deviation ellipses.
    feature_names : pair of str
        Axis labels.

    Returns
    -------
    matplotlib.axes.Axes
    """
    if params.n_features != 2 or params.batch_shape:
        raise ValueError(
            f"plot_density draws one 2-D mixture; got n_features={params.n_features}, "
            f"batch_shape={params.batch_shape}. Select two features or one draw first."
        )
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    means = np.asarray(params.means, dtype=np.float64)
    full = np.asarray(params.covariance_matrices, dtype=np.float64)
    if X is not None:
        X = np.asarray(X, dtype=np.float64)
        low, high = X.min(axis=0), X.max(axis=0)
    else:
        spread = 3.0 * np.sqrt(np.stack([np.diag(c) for c in full]))
        low, high = (means - spread).min(axis=0), (means + spread).max(axis=0)
    pad = 0.1 * (high - low)
    grid_x, grid_y = np.meshgrid(
        np.linspace(low[0] - pad[0], high[0] + pad[0], n_grid), np.linspace(low[1] - pad[1], high[1] + pad[1], n_grid)
    )
    log_density = np.asarray(params.log_prob(np.column_stack([grid_x.ravel(), grid_y.ravel()]))).reshape(grid_x.shape)
    top = log_density.max()
    levels = np.linspace(top - 8.0, top, n_levels)
    contours = ax.contourf(grid_x, grid_y, log_density, levels=levels, cmap="viridis", alpha=0.75, extend="min")
    ax.figure.colorbar(contours, ax=ax, label="log density")
    if X is not None:
        ax.scatter(X[:, 0], X[:, 1], s=8, c="white", edgecolors="black", linewidths=0.4, label="data")
    if ellipses:
        for component, (mean, covariance) in enumerate(zip(means, full)):
            for radius, style in ((1.0, "-"), (2.0, "--")):
                outline = _ellipse_points(mean, covariance, radius)
                ax.plot(outline[:, 0], outline[:, 1], style, color="crimson", linewidth=1.2)
            ax.annotate(f"{component}", mean, color="crimson", fontweight="bold", ha="center", va="center")
    ax.set_xlabel(feature_names[0])
    ax.set_ylabel(feature_names[1])
    ax.set_title(f"{params.n_components}-component {params.covariance_type} Gaussian mixture")
    return ax
