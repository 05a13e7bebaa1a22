"""Plots of fitted mixtures (matplotlib, an optional dependency imported lazily).

===========================  ==========================================================  =======
function                     draws                                                       returns
===========================  ==========================================================  =======
``plot_density``             log-density contours, data, 1- and 2-sd ellipses (d = 2)    Axes
``plot_ellipses``            each component's ellipses at the given radii (d = 2)        Axes
``plot_posterior_ellipses``  posterior ellipse clouds: one ellipse per draw and          Axes
                             component, the posterior-mean ellipses, the data (d = 2)
``plot_criterion``           BIC / AIC / ICL against k, one styled curve per covariance  Axes
                             type (any names, mclust's 14), spurious points as gaps
``plot_classification``      data coloured by MAP component, marginal ellipses (any      Axes
                             pair of features)
``plot_uncertainty``         the same, marker area growing with 1 − max responsibility   Axes
``plot_pairs``               exact 1-D and 2-D marginals of every feature pair (any d),  Figure
                             data plain, by classification or by uncertainty
``plot_directions``          the pair plot on mclust's dimension-reduction directions    Figure
``dr_directions``            those directions (MclustDR, no plot)                        Directions
``marginal``                 the mixture of a subset of the features (no plot)           GMMParams
===========================  ==========================================================  =======

The "r-sd ellipse" of a component is ``{x : (x − μ)ᵀ Σ⁻¹ (x − μ) = r²}``; in two dimensions it
holds ``1 − exp(−r²/2)`` of the component's mass (39 % for r = 1, 86 % for r = 2).

Parameters come as ``GMMParams``; shapes for ``k`` components and ``d`` features:

==========  ============  ============  =======================================
type        weights       means         scale (Cholesky factor of covariance)
==========  ============  ============  =======================================
full        (..., k)      (..., k, d)   (..., k, d, d) lower-triangular
tied        (..., k)      (..., k, d)   (..., d, d) lower-triangular
diag        (..., k)      (..., k, d)   (..., k, d) standard deviations
spherical   (..., k)      (..., k, d)   (..., k) standard deviations
==========  ============  ============  =======================================

Every function except ``plot_posterior_ellipses`` and ``marginal`` needs one mixture (no
batch axes). matplotlib is imported when a plot is drawn, never at ``import bayesgmm``; the
Agg backend is selected only when no display is available, and no rcParams are changed.
"""

from __future__ import annotations

import functools
import itertools
import numbers
import os
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayesgmm import _validation
from bayesgmm.params import GMMParams

CRITERIA = ("bic", "aic", "icl")  # information criteria for which lower is better
_LINESTYLES = ("-", "--", ":", "-.")  # one per ellipse radius, cycled


def _pyplot():
    try:
        import matplotlib

        backend = matplotlib.get_backend().lower()
        # a GUI backend without a display falls back to Agg; "module://" backends (Jupyter's inline) need none
        if backend not in ("agg", "pdf", "svg", "ps", "cairo") and not backend.startswith("module://"):
            if not _has_display():
                matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "Plotting needs matplotlib: pip install 'bayesgmm[plot]' (or pip install matplotlib)."
        ) from None
    return plt


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


# ----------------------------------------------------------------------------- input checks


def _check_params(params, caller: str, *, n_features: int | None = None, batched: bool | None = False) -> GMMParams:
    """``params`` if a GMMParams with batch axes (``batched=True``), without (False) or either (None).

    With ``n_features``, the number of features must match too.
    """
    if not isinstance(params, GMMParams):
        raise TypeError(f"{caller} takes a bayesgmm.GMMParams, got {type(params).__name__}.")
    if batched is True and not params.batch_shape:
        raise ValueError(
            f"{caller} needs posterior draws: a Posterior or a GMMParams with leading (chain, draw) axes; "
            f"got one unbatched mixture. Use plot_ellipses for a single mixture."
        )
    if batched is False and params.batch_shape:
        raise ValueError(
            f"{caller} draws one mixture, got GMMParams with batch shape {params.batch_shape} (posterior draws?). "
            f"Pass one draw or posterior.mean_params(), or use plot_posterior_ellipses for the draws."
        )
    if n_features is not None and params.n_features != n_features:
        raise ValueError(
            f"{caller} draws {n_features}-D mixtures; these parameters have d={params.n_features} features. "
            f"Project first with bayesgmm.plot.marginal(params, (i, j)), or use plot_pairs for every pair."
        )
    return params


def _check_points(X, n_features: int, caller: str) -> np.ndarray | None:
    """``X`` as a float64 (n, n_features) ndarray (or None)."""
    if X is None:
        return None
    X = np.asarray(_validation.check_data(X, name="X"), dtype=np.float64)
    if X.shape[1] != n_features:
        raise ValueError(
            f"{caller}: X has {X.shape[1]} columns but the mixture has {n_features} features; "
            f"pass the columns the mixture was fitted on."
        )
    return X


def _check_radii(radii) -> tuple[float, ...]:
    radii = (radii,) if isinstance(radii, numbers.Real) else tuple(radii)
    if not radii or not all(isinstance(r, numbers.Real) and np.isfinite(r) and r > 0 for r in radii):
        raise ValueError(f"radii must be positive finite numbers (in standard deviations), got {radii!r}.")
    return tuple(float(r) for r in radii)


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _feature_indices(features, n_features: int) -> tuple[int, ...]:
    features = (features,) if isinstance(features, numbers.Integral) else tuple(features)
    if not features:
        raise ValueError("features is empty; choose at least one feature index.")
    bad = [f for f in features if isinstance(f, bool) or not isinstance(f, numbers.Integral)]
    if bad:
        raise ValueError(f"features must be integer column indices, got {bad[0]!r}.")
    out_of_range = [int(f) for f in features if not 0 <= f < n_features]
    if out_of_range:
        raise ValueError(
            f"feature index {out_of_range[0]} is out of range for a mixture with d={n_features} features "
            f"(valid: 0 to {n_features - 1})."
        )
    if len(set(features)) != len(features):
        raise ValueError(f"features {features} repeat an index; the marginal of a repeated feature is singular.")
    return tuple(int(f) for f in features)


# ----------------------------------------------------------------------------- geometry


def marginal(params: GMMParams, features) -> GMMParams:
    """The mixture of a subset of the features: exact marginal of a Gaussian or Student-t mixture.

    Marginalising a Gaussian mixture over some features keeps the weights and, per
    component, the sub-vector of the mean and the sub-matrix of the covariance:
    ``p(x_F) = Σ_k π_k N(x_F | μ_k[F], Σ_k[F, F])``. A multivariate t marginalises the same
    way (sub-vector of the location, sub-matrix of the scale matrix) and keeps its degrees of
    freedom, so the result keeps ``family``, ``dof`` and ``dof_mode``; a uniform noise component
    marginalises to the uniform on the box's sides of those features. Every covariance type is handled
    through the dense matrices (``params.covariance_matrices``), so the result is always
    a ``"full"`` GMMParams (a tied, diag or spherical mixture's marginal is one of the
    same type, but the full form serves every caller).

    Parameters
    ----------
    params : GMMParams
        Any covariance type; leading batch axes (posterior draws) are kept.
        weights (..., k), means (..., k, d).
    features : int or sequence of int
        Indices of the ``m`` features to keep, in the order wanted, each in ``[0, d)``,
        without repeats.

    Returns
    -------
    GMMParams
        ``covariance_type="full"``: weights (..., k), means (..., k, m),
        scale (..., k, m, m) (Cholesky factors of the sub-covariances).

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm import GMMParams
    >>> from bayesgmm.plot import marginal
    >>> covariance = [[4.0, 1.0, 2.0], [1.0, 3.0, 0.0], [2.0, 0.0, 5.0]]
    >>> params = GMMParams.from_covariances([1.0], [[0.0, 1.0, 2.0]], [covariance])
    >>> pair = marginal(params, (0, 2))
    >>> pair.covariance_type, pair.means.shape
    ('full', (1, 2))
    >>> np.asarray(pair.covariance_matrices[0])
    array([[4., 2.],
           [2., 5.]])
    """
    params = _check_params(params, "marginal", batched=None)
    return _marginal(params, _feature_indices(features, params.n_features))


@functools.partial(jax.jit, static_argnames="features")
def _marginal(params: GMMParams, features: tuple[int, ...]) -> GMMParams:
    index = np.asarray(features)
    means = params.means[..., index]
    covariances = params.covariance_matrices[..., index[:, None], index[None, :]]
    covariances = 0.5 * (covariances + jnp.swapaxes(covariances, -1, -2))  # exact symmetry for the Cholesky
    scale = jnp.linalg.cholesky(covariances)
    noise_bounds = None if params.noise_bounds is None else params.noise_bounds[..., index]
    return GMMParams(
        params.weights,
        means,
        scale,
        "full",
        params.dof,
        params.family,
        params.dof_mode,
        params.noise_weight,
        noise_bounds,
    )


# One compiled program per covariance type and shape (eager JAX would compile every small op).
_log_prob = jax.jit(lambda params, points: params.log_prob(points))
_log_joint = jax.jit(lambda params, points: params.log_joint(points))
_dense_arrays = jax.jit(lambda params: (params.weights, params.means, params.covariance_matrices))


def _ellipse_points(means, covariances, radius: float, n_points: int = 100) -> np.ndarray:
    """Points on ``{x : (x − μ)ᵀ Σ⁻¹ (x − μ) = radius²}``: ``μ + radius · L (cos t, sin t)``, ``Σ = L Lᵀ``.

    means (..., 2), covariances (..., 2, 2) -> (..., n_points, 2); the first and last point coincide.
    """
    angles = np.linspace(0.0, 2.0 * np.pi, n_points)
    circle = np.stack([np.cos(angles), np.sin(angles)], axis=-1)  # (n_points, 2)
    cholesky = np.linalg.cholesky(np.asarray(covariances, dtype=np.float64))
    return np.asarray(means, dtype=np.float64)[..., None, :] + radius * np.einsum("...ij,pj->...pi", cholesky, circle)


def _dense(params: GMMParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """weights (..., k), means (..., k, d), covariance matrices (..., k, d, d) as float64 ndarrays."""
    return tuple(np.asarray(array, dtype=np.float64) for array in _dense_arrays(params))


def _full_mixture(weights, means, covariances, dtype, family=None) -> GMMParams:
    """A full GMMParams from float64 ndarrays weights (k,), means (k, m), covariances (k, m, m).

    ``family``: a GMMParams whose family and degrees of freedom the result takes (None: Gaussian).
    """
    scale = np.linalg.cholesky(covariances)
    arrays = (jnp.asarray(array, dtype=dtype) for array in (weights, means, scale))
    if family is None or family.dof is None:
        return GMMParams(*arrays, "full")
    return GMMParams(*arrays, "full", jnp.asarray(family.dof, dtype), family.family, family.dof_mode)


def _title(params: GMMParams, view: str = "") -> str:
    """``"<k>-component <type> Gaussian mixture[: view]"`` (Student-t for t components)."""
    name = {"gaussian": "Gaussian", "student_t": "Student-t"}.get(params.family, params.family)
    return f"{params.n_components}-component {params.covariance_type} {name} mixture" + (f": {view}" if view else "")


def _component_colors(n_components: int, colors=None) -> np.ndarray:
    """(k, 4) RGBA: matplotlib's tab10 cycle by component, or ``colors`` (one colour or k of them)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_rgba_array

    if colors is None:
        return colormaps["tab10"](np.arange(n_components) % 10)
    rgba = to_rgba_array(colors)
    if len(rgba) == 1:
        return np.repeat(rgba, n_components, axis=0)
    if len(rgba) != n_components:
        raise ValueError(f"colors must be one colour or one per component ({n_components}), got {len(rgba)}.")
    return rgba


_predict_proba = jax.jit(lambda params, points: params.predict_proba(points))

NOISE_COLOUR = (0.6, 0.6, 0.6, 1.0)  # rows of a noise component (``em_fit(noise=True)``), in classification views


def _classify(params: GMMParams, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MAP labels (n,) and uncertainties ``1 − max_k r_ik`` (n,) of the rows of X (n, d) under the whole mixture
    (with a noise component, label ``k`` is the noise's: its responsibility is the last column)."""
    responsibilities = np.asarray(_predict_proba(params, X), dtype=np.float64)  # (n, k)
    return responsibilities.argmax(axis=1), 1.0 - responsibilities.max(axis=1)


def _check_sizes(sizes) -> tuple[float, float]:
    try:
        smallest, largest = (float(size) for size in sizes)
    except (TypeError, ValueError):
        raise ValueError(
            f"sizes must be a pair (smallest, largest) of marker areas in points², got {sizes!r}."
        ) from None
    if not (np.isfinite(smallest) and np.isfinite(largest) and 0 < smallest <= largest):
        raise ValueError(f"sizes must satisfy 0 < smallest <= largest (marker areas in points²), got {sizes!r}.")
    return smallest, largest


def _uncertainty_sizes(uncertainty: np.ndarray, n_components: int, sizes: tuple[float, float]) -> np.ndarray:
    """Marker areas ``s_min + (s_max − s_min) · u / (1 − 1/k)``: affine in the uncertainty ``u``.

    ``1 − 1/k`` is the largest value ``1 − max_k r_ik`` can take (all ``k`` responsibilities equal),
    so the scale is the same for every data set with ``k`` components; ``k = 1`` gives ``s_min``.
    """
    smallest, largest = sizes
    ceiling = 1.0 - 1.0 / n_components
    scaled = np.zeros_like(uncertainty) if ceiling == 0 else np.clip(uncertainty / ceiling, 0.0, 1.0)
    return smallest + (largest - smallest) * scaled


# what the points of a classification view show: MAP colours, and equal sizes or sizes by uncertainty
_POINT_VIEWS = ("classification", "uncertainty")


def _point_style(params: GMMParams, X: np.ndarray, view: str, sizes, colors) -> tuple[np.ndarray, np.ndarray]:
    """Face colours (n, 4) by MAP component and marker areas (n,) of the rows of X (n, d) for ``view``.

    "classification": every area ``sizes[0]``; "uncertainty": ``_uncertainty_sizes``.
    """
    labels, uncertainty = _classify(params, X)
    # rows the noise component explains best (label k, its column) are grey
    palette = np.concatenate([_component_colors(params.n_components, colors), [NOISE_COLOUR]])
    colours = palette[labels]
    if view == "classification":
        return colours, np.full(len(X), sizes[0])
    return colours, _uncertainty_sizes(uncertainty, params.n_components, sizes)


# ----------------------------------------------------------------------------- plots


def plot_ellipses(
    params: GMMParams,
    ax=None,
    radii=(1, 2),
    *,
    colors=None,
    linestyles=_LINESTYLES,
    linewidth: float = 1.2,
    alpha: float = 1.0,
    annotate: bool = True,
    label: str = "{radius:g}-sd ellipses",
    n_points: int = 100,
):
    """Each component's ellipses ``{x : (x − μ_k)ᵀ Σ_k⁻¹ (x − μ_k) = r²}`` for every radius ``r``.

    One ``LineCollection`` per radius holds the ``k`` ellipses (component order), labelled
    ``label.format(radius=r)``.

    Parameters
    ----------
    params : GMMParams
        One 2-D mixture (no batch axes), any covariance type: means (k, 2). For more
        features, pass ``marginal(params, (i, j))``.
    ax : matplotlib Axes, optional
        Drawn on a new figure when omitted.
    radii : float or sequence of float
        Mahalanobis radii ("standard deviations"), positive.
    colors : colour or sequence of k colours, optional
        Default: matplotlib's tab10 cycle, one colour per component.
    linestyles : sequence of str
        Line style per radius, cycled.
    linewidth, alpha : float
        Line width and opacity.
    annotate : bool
        Write each component's index at its mean.
    label : str
        Collection label (legend entry), formatted with ``radius``.
    n_points : int
        Points per ellipse.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from bayesgmm import GMMParams
    >>> from bayesgmm.plot import plot_ellipses
    >>> params = GMMParams.from_covariances([0.4, 0.6], [[0.0, 0.0], [3.0, 1.0]], [1.0, 0.5], "spherical")
    >>> ax = plot_ellipses(params, radii=(1, 2))
    >>> [len(collection.get_segments()) for collection in ax.collections]  # k ellipses per radius
    [2, 2]
    >>> import matplotlib.pyplot as plt
    >>> plt.close(ax.figure)
    """
    params = _check_params(params, "plot_ellipses", n_features=2)
    radii = _check_radii(radii)
    n_points = _check_positive_int(n_points, "n_points")
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    _, means, covariances = _dense(params)
    return _draw_ellipses(
        ax,
        means,
        covariances,
        radii,
        colors=colors,
        linestyles=linestyles,
        linewidth=linewidth,
        alpha=alpha,
        annotate=annotate,
        label=label,
        n_points=n_points,
    )


def _draw_ellipses(
    ax,
    means,
    covariances,
    radii,
    *,
    colors=None,
    linestyles=_LINESTYLES,
    linewidth=1.2,
    alpha=1.0,
    annotate=True,
    label="{radius:g}-sd ellipses",
    n_points=100,
    zorder=2,
):
    """``plot_ellipses`` on checked float64 ndarrays: means (k, 2), covariances (k, 2, 2)."""
    from matplotlib.collections import LineCollection

    rgba = _component_colors(len(means), colors)
    for radius, style in zip(radii, itertools.cycle(linestyles)):
        outlines = _ellipse_points(means, covariances, radius, n_points)  # (k, n_points, 2)
        ax.add_collection(
            LineCollection(
                outlines,
                colors=rgba,
                linestyles=style,
                linewidths=linewidth,
                alpha=alpha,
                label=label.format(radius=radius),
                zorder=zorder,
            )
        )
    if annotate:  # text artists, one per component
        for component, mean in enumerate(means):
            ax.annotate(f"{component}", mean, color=rgba[component], fontweight="bold", ha="center", va="center")
    ax.autoscale_view()
    return ax


def plot_density(
    params, X=None, *, ax=None, n_grid: int = 200, n_levels: int = 12, ellipses: bool = True, feature_names=("x1", "x2")
):
    """Contours of the mixture's log density, with the data and 1- and 2-sd component ellipses.

    Parameters
    ----------
    params : GMMParams
        One 2-D mixture (no batch axes), any covariance type: means (k, 2).
    X : array-like (n, 2), optional
        Points to scatter; also sets the plotted range.
    ax : matplotlib Axes, optional
    n_grid : int
        Grid points per axis for the contours.
    n_levels : int
        Number of contour levels (in log density, spanning 8 nats below the maximum).
    ellipses : bool
        Draw each component's 1 and 2 standard-deviation ellipses (``plot_ellipses``).
        For Student-t components, the ellipses of the scale matrices (the density's level sets).
    feature_names : pair of str
        Axis labels.

    Returns
    -------
    matplotlib.axes.Axes
    """
    params = _check_params(params, "plot_density", n_features=2)
    X = _check_points(X, 2, "plot_density")
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    _, means, full = _dense(params)
    if X is not None:
        low, high = X.min(axis=0), X.max(axis=0)
    else:
        spread = 3.0 * np.sqrt(np.diagonal(full, axis1=-2, axis2=-1))
        low, high = (means - spread).min(axis=0), (means + spread).max(axis=0)
    pad = 0.1 * (high - low)
    grid_x, grid_y = np.meshgrid(
        np.linspace(low[0] - pad[0], high[0] + pad[0], n_grid), np.linspace(low[1] - pad[1], high[1] + pad[1], n_grid)
    )
    log_density = np.asarray(_log_prob(params, np.column_stack([grid_x.ravel(), grid_y.ravel()]))).reshape(grid_x.shape)
    top = log_density.max()
    levels = np.linspace(top - 8.0, top, n_levels)
    contours = ax.contourf(grid_x, grid_y, log_density, levels=levels, cmap="viridis", alpha=0.75, extend="min")
    ax.figure.colorbar(contours, ax=ax, label="log density")
    if X is not None:
        ax.scatter(X[:, 0], X[:, 1], s=8, c="white", edgecolors="black", linewidths=0.4, label="data")
    if ellipses:
        plot_ellipses(params, ax=ax, radii=(1.0, 2.0), colors="crimson")
    ax.set_xlabel(feature_names[0])
    ax.set_ylabel(feature_names[1])
    ax.set_title(_title(params))
    return ax


def plot_posterior_ellipses(
    posterior_or_params,
    X=None,
    n_draws: int = 100,
    *,
    radius: float = 1.0,
    ax=None,
    seed=0,
    alpha: float | None = None,
    feature_names=None,
    n_points: int = 60,
):
    """Posterior ellipse clouds: the r-sd ellipse of every component for a random subset of draws.

    Each shown draw contributes ``k`` translucent ellipses coloured by component (the
    components are consistently labelled across draws, as ``bayesgmm.infer`` returns them),
    drawn in one ``LineCollection`` labelled ``"posterior draws"`` whose segments are
    ordered draw by draw, component within draw. On top: the ellipses of the posterior
    mean (mean of the means and of the covariance matrices over all draws; label
    ``"posterior mean"``) and the data.

    Parameters
    ----------
    posterior_or_params : bayesgmm.Posterior or GMMParams
        A ``Posterior`` (its ``.params`` has (chain, draw) batch axes; its ``X`` and
        ``feature_names`` are the defaults below), or a GMMParams with any leading batch
        axes: means (..., k, 2). For more features, pass
        ``marginal(posterior.params, (i, j))`` with ``X[:, [i, j]]``.
    X : array-like (n, 2), optional
        Points to scatter; default the posterior's data, if any.
    n_draws : int
        Draws to show, chosen without replacement (all when there are fewer).
    radius : float
        Mahalanobis radius of the ellipses.
    ax : matplotlib Axes, optional
    seed : int or numpy Generator
        Chooses the shown draws.
    alpha : float, optional
        Opacity of each drawn ellipse; default ``clip(8 / n_shown, 0.05, 0.6)``.
    feature_names : pair of str, optional
        Axis labels; default the posterior's, else ``("x0", "x1")``.
    n_points : int
        Points per ellipse.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm import GMMParams
    >>> from bayesgmm.plot import plot_posterior_ellipses
    >>> rng = np.random.default_rng(0)
    >>> means = np.array([[0.0, 0.0], [4.0, 1.0]]) + 0.1 * rng.normal(size=(2, 50, 2, 2))  # (chain, draw, k, d)
    >>> draws = GMMParams.from_covariances(np.full((2, 50, 2), 0.5), means, np.ones((2, 50, 2)), "spherical")
    >>> ax = plot_posterior_ellipses(draws, n_draws=20)
    >>> len(ax.collections[0].get_segments())  # 20 draws x 2 components
    40
    >>> import matplotlib.pyplot as plt
    >>> plt.close(ax.figure)
    """
    if isinstance(posterior_or_params, GMMParams):
        draws, data, names = posterior_or_params, None, None
    elif isinstance(getattr(posterior_or_params, "params", None), GMMParams):  # a bayesgmm.Posterior
        draws = posterior_or_params.params
        data = getattr(posterior_or_params, "X", None)
        names = getattr(posterior_or_params, "feature_names", None)
    else:
        raise TypeError(
            f"plot_posterior_ellipses takes a bayesgmm.Posterior or a batched GMMParams, "
            f"got {type(posterior_or_params).__name__}."
        )
    draws = _check_params(draws, "plot_posterior_ellipses", n_features=2, batched=True)
    X = _check_points(data if X is None else X, 2, "plot_posterior_ellipses")
    if feature_names is None:
        feature_names = ("x0", "x1") if names is None else names
    n_draws = _check_positive_int(n_draws, "n_draws")
    (radius,) = _check_radii(radius)
    n_points = _check_positive_int(n_points, "n_points")
    plt = _pyplot()
    from matplotlib.collections import LineCollection

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    k = draws.n_components
    _, means, covariances = _dense(draws)
    means, covariances = means.reshape(-1, k, 2), covariances.reshape(-1, k, 2, 2)  # (draws, k, ...)
    n_total = means.shape[0]
    shown = np.sort(np.random.default_rng(seed).choice(n_total, size=min(n_draws, n_total), replace=False))
    rgba = _component_colors(k)
    if X is not None:
        ax.scatter(X[:, 0], X[:, 1], s=6, c="0.35", alpha=0.6, linewidths=0, label="data", zorder=1)
    outlines = _ellipse_points(means[shown], covariances[shown], radius, n_points).reshape(-1, n_points, 2)
    alpha = float(np.clip(8.0 / shown.size, 0.05, 0.6)) if alpha is None else alpha
    ax.add_collection(
        LineCollection(
            outlines,
            colors=np.tile(rgba, (shown.size, 1)),
            linewidths=0.8,
            alpha=alpha,
            label=f"posterior draws ({radius:g} sd)",
            zorder=2,
        )
    )
    # the posterior mean of the means and of the covariance matrices, over all draws
    _draw_ellipses(
        ax,
        means.mean(axis=0),
        covariances.mean(axis=0),
        (radius,),
        colors=rgba,
        linewidth=2.2,
        label="posterior mean ({radius:g} sd)",
        zorder=3,
    )
    ax.set_xlabel(feature_names[0])
    ax.set_ylabel(feature_names[1])
    ax.set_title(f"{k}-component posterior: {shown.size} of {n_total} draws")
    return ax


def plot_classification(
    params: GMMParams,
    X,
    ax=None,
    features=(0, 1),
    *,
    radii=(1, 2),
    size: float = 14.0,
    colors=None,
    feature_names=None,
    annotate: bool = True,
):
    """The data coloured by their most probable component, with the components' ellipses.

    mclust's ``plot(model, what = "classification")``. Row ``i`` gets the colour of its MAP
    component ``argmax_k r_ik`` (``params.predict``, computed on all ``d`` features); the
    ellipses are the components' marginals on the two shown features (``marginal``), in the same
    colours. ``plot_uncertainty`` draws the same view with point sizes growing with uncertainty.

    Parameters
    ----------
    params : GMMParams
        One mixture (no batch axes), any covariance type: means (k, d), d ≥ 2.
    X : array-like (n, d)
        The points to classify and show (all d columns).
    ax : matplotlib Axes, optional
    features : pair of int
        The features across and up (default the first two); any pair for d > 2.
    radii : float or sequence of float
        Ellipse radii in standard deviations, as in ``plot_ellipses``.
    size : float
        Marker area of every point (points²).
    colors : colour or sequence of k colours, optional
        Component colours; default matplotlib's tab10 cycle.
    feature_names : sequence of d str, optional
        Axis labels; default ``x0, x1, ...``.
    annotate : bool
        Write each component's index at its mean.

    Returns
    -------
    matplotlib.axes.Axes
        The points are one collection labelled ``"data"``, in the row order of ``X``.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm import GMMParams
    >>> from bayesgmm.plot import plot_classification
    >>> params = GMMParams.from_covariances([0.5, 0.5], [[0.0, 0.0], [4.0, 0.0]], [1.0, 1.0], "spherical")
    >>> ax = plot_classification(params, [[-1.0, 0.0], [5.0, 1.0]], colors=["red", "blue"])
    >>> ax.collections[-1].get_facecolors()[:, :3]  # row 0 in component 0's colour, row 1 in component 1's
    array([[1., 0., 0.],
           [0., 0., 1.]])
    >>> import matplotlib.pyplot as plt
    >>> plt.close(ax.figure)
    """
    return _classification_view(
        "plot_classification",
        "classification",
        params,
        X,
        ax,
        features,
        radii,
        (float(size), float(size)),
        colors,
        feature_names,
        annotate,
    )


def plot_uncertainty(
    params: GMMParams,
    X,
    ax=None,
    features=(0, 1),
    *,
    radii=(1, 2),
    sizes=(4.0, 120.0),
    colors=None,
    feature_names=None,
    annotate: bool = True,
):
    """The classification view with each point's size growing with its uncertainty ``1 − max_k r_ik``.

    mclust's ``plot(model, what = "uncertainty")``: points coloured by their most probable
    component, larger where the mixture is less sure of it. The uncertainty of row ``i`` is
    ``u_i = 1 − max_k r_ik`` with ``r_ik`` the responsibilities (``params.predict_proba``, on all
    ``d`` features); it lies in ``[0, 1 − 1/k]``. The marker area (points²) is affine in it:

        ``area_i = s_min + (s_max − s_min) · u_i / (1 − 1/k)``,  ``(s_min, s_max) = sizes``,

    so a point its component is certain of has area ``s_min`` and a point on an equal split
    between all ``k`` components ``s_max``, on the same scale for every data set with ``k``
    components (mclust uses three sizes, cut at the 75 % and 95 % quantiles of the uncertainty).
    A legend shows three reference sizes. The ellipses are the components' marginals on the two
    shown features, in the points' colours.

    Parameters
    ----------
    params : GMMParams
        One mixture (no batch axes), any covariance type: means (k, d), d ≥ 2.
    X : array-like (n, d)
        The points to classify and show (all d columns).
    ax : matplotlib Axes, optional
    features : pair of int
        The features across and up (default the first two); any pair for d > 2.
    radii : float or sequence of float
        Ellipse radii in standard deviations, as in ``plot_ellipses``.
    sizes : pair of float
        ``(s_min, s_max)``: marker areas (points²) at uncertainty 0 and ``1 − 1/k``.
    colors : colour or sequence of k colours, optional
        Component colours; default matplotlib's tab10 cycle.
    feature_names : sequence of d str, optional
        Axis labels; default ``x0, x1, ...``.
    annotate : bool
        Write each component's index at its mean.

    Returns
    -------
    matplotlib.axes.Axes
        The points are one collection labelled ``"data"``, in the row order of ``X``
        (``get_sizes()`` holds the areas).

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm import GMMParams
    >>> from bayesgmm.plot import plot_uncertainty
    >>> params = GMMParams.from_covariances([0.5, 0.5], [[0.0, 0.0], [4.0, 0.0]], [1.0, 1.0], "spherical")
    >>> ax = plot_uncertainty(params, [[-2.0, 0.0], [2.0, 0.0]], sizes=(10, 110))
    >>> ax.collections[-1].get_sizes().round(1)  # 3 sd closer to component 0: s_min; halfway: s_max
    array([ 10., 110.])
    >>> import matplotlib.pyplot as plt
    >>> plt.close(ax.figure)
    """
    return _classification_view(
        "plot_uncertainty", "uncertainty", params, X, ax, features, radii, sizes, colors, feature_names, annotate
    )


def _classification_view(caller, view, params, X, ax, features, radii, sizes, colors, feature_names, annotate):
    """``plot_classification`` (view "classification") or ``plot_uncertainty`` (view "uncertainty")."""
    params = _check_params(params, caller)
    d = params.n_features
    if X is None:
        raise ValueError(f"{caller} needs the data X, shape (n, {d}): it shows how the mixture classifies them.")
    X = _check_points(X, d, caller)
    if d < 2:
        raise ValueError(f"{caller} draws two features; this mixture has d=1. Use plot_pairs for one feature.")
    shown = _feature_indices(features, d)
    if len(shown) != 2:
        raise ValueError(f"{caller} shows two features; got features={shown}. Use plot_pairs for more.")
    feature_names = _check_feature_names(feature_names, d)
    radii = _check_radii(radii)
    sizes = _check_sizes(sizes)
    rgba = _component_colors(params.n_components, colors)
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    colours, areas = _point_style(params, X, view, sizes, rgba)
    _, means, covariances = _dense(marginal(params, shown))
    _draw_ellipses(ax, means, covariances, radii, colors=rgba, linewidth=1.2, annotate=annotate)
    ax.scatter(
        X[:, shown[0]], X[:, shown[1]], s=areas, c=colours, edgecolors="white", linewidths=0.3, label="data", zorder=1
    )
    if view == "uncertainty":
        _size_legend(ax, params.n_components, sizes)
    ax.set_xlabel(feature_names[shown[0]])
    ax.set_ylabel(feature_names[shown[1]])
    ax.set_title(_title(params, view))
    return ax


def _size_legend(ax, n_components: int, sizes: tuple[float, float]) -> None:
    """A legend of three reference areas: uncertainty 0, half its ceiling, its ceiling ``1 − 1/k``."""
    from matplotlib.lines import Line2D

    ceiling = 1.0 - 1.0 / n_components
    references = np.array([0.0, ceiling / 2, ceiling]) if ceiling > 0 else np.array([0.0])
    handles = [
        Line2D([], [], linestyle="none", marker="o", color="0.4", markersize=float(np.sqrt(area)))
        for area in _uncertainty_sizes(references, n_components, sizes)
    ]
    ax.legend(handles, [f"{u:.2g}" for u in references], title="1 − max responsibility", loc="best", fontsize="small")


def _check_feature_names(feature_names, n_features: int) -> list[str]:
    if feature_names is None:
        return [f"x{j}" for j in range(n_features)]
    feature_names = [str(name) for name in feature_names]
    if len(feature_names) != n_features:
        raise ValueError(f"feature_names has {len(feature_names)} names for a mixture with d={n_features} features.")
    return feature_names


def _table_columns(selection) -> dict[str, np.ndarray]:
    """The columns of a selection result's ``.table``, a DataFrame or a mapping, as ndarrays."""
    table = selection
    if not (isinstance(table, Mapping) or hasattr(table, "columns")) and hasattr(table, "table"):
        table = table.table
    if hasattr(table, "columns") and not isinstance(table, Mapping):  # pandas / polars DataFrame
        return {str(name): np.asarray(table[name]) for name in table.columns}
    if isinstance(table, Mapping):
        return {str(name): np.asarray(column) for name, column in table.items()}
    raise TypeError(
        f"plot_criterion takes a selection result with a .table, a DataFrame or a mapping of columns, "
        f"got {type(selection).__name__}."
    )


def plot_criterion(selection, criterion: str = "bic", ax=None, *, lower_is_better: bool | None = None):
    """An information criterion against the number of components, one curve per covariance type.

    A table with a ``family`` column (``select(..., families=...)``) gets one curve per
    (covariance type, family), labelled ``"<type>, <family>"``.

    Each covariance type found in the table gets its own colour, marker and line style (mclust's
    ``plot.mclustBIC`` uses a symbol per model), whatever the names: scikit-learn's four, mclust's
    fourteen (EII ... VVV) or any other; types are styled in the order they first appear in the
    table, so ``select``'s grid order fixes them. The first 14 types get 14 distinct markers and
    colours (matplotlib's tab20: its ten dark shades solid, then its light shades dashed). A grid
    point with no value (NaN: a spurious fit, which ``select`` never chooses, or a failed one) is
    a gap in its curve and a hollow marker in the curve's style at the foot of the axes, explained
    by one legend entry. The best fit of the plotted criterion (lowest for BIC, AIC and ICL) is
    marked with a star, a line labelled ``"best: k=…, <type>"``, and its curve is drawn thicker.
    With more than six types the legend sits beside the axes.

    Parameters
    ----------
    selection : object with a ``.table``, pandas DataFrame, or mapping of columns
        One row per fit, with at least the columns ``k`` (int), ``covariance_type`` (str) and
        ``criterion``; e.g. the ``.table`` of ``bayesgmm.select`` (columns k, covariance_type,
        log_likelihood, n_parameters, bic, aic, icl, ..., spurious), optionally ``family``. Each
        (k, covariance_type[, family]) appears once; NaN marks a spurious or failed fit (a gap in
        the curve).
    criterion : str
        The column to plot: ``"bic"``, ``"aic"``, ``"icl"`` or any other numeric column.
    ax : matplotlib Axes, optional
    lower_is_better : bool, optional
        Direction of the criterion; needed only for columns other than bic, aic and icl
        (for which it is True).

    Returns
    -------
    matplotlib.axes.Axes
        ``ax.get_lines()``: one curve per type labelled with the type (x: k sorted, y: the
        criterion, NaN kept), then the star; the hollow markers of NaN points are lines labelled
        ``"_spurious: <type>"`` (hidden from the legend).

    Examples
    --------
    >>> from bayesgmm.plot import plot_criterion
    >>> table = {"k": [1, 2, 3, 1, 2, 3], "covariance_type": ["full"] * 3 + ["diag"] * 3,
    ...          "bic": [110.0, 95.0, 99.0, 120.0, 101.0, 97.0]}
    >>> ax = plot_criterion(table, "bic")
    >>> [line.get_label() for line in ax.get_lines()]
    ['full', 'diag', 'best: k=2, full']
    >>> import matplotlib.pyplot as plt
    >>> plt.close(ax.figure)
    """
    columns = _table_columns(selection)
    criterion = str(criterion)
    if criterion not in columns and criterion.lower() in columns:
        criterion = criterion.lower()
    missing = [name for name in ("k", "covariance_type", criterion) if name not in columns]
    if missing:
        raise ValueError(
            f"the table has no column {missing[0]!r} (columns: {sorted(columns)}); it needs k, covariance_type "
            f"and the criterion column, one row per fit."
        )
    if lower_is_better is None:
        if criterion.lower() not in CRITERIA:
            raise ValueError(
                f"say whether lower {criterion!r} is better: pass lower_is_better=True or False "
                f"(known: {', '.join(CRITERIA)}, lower is better)."
            )
        lower_is_better = True
    ks = columns["k"]
    types = columns["covariance_type"].astype(str)
    by_family = "family" in columns
    if by_family:  # one curve per (type, family): the label stands for the pair
        if columns["family"].shape != types.shape:
            raise ValueError("columns 'covariance_type' and 'family' must have one length.")
        types = np.asarray([f"{kind}, {family}" for kind, family in zip(types, columns["family"].astype(str))])
    try:
        values = columns[criterion].astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"column {criterion!r} must be numeric, got dtype {columns[criterion].dtype}.") from None
    if not (ks.ndim == types.ndim == values.ndim == 1 and ks.size == types.size == values.size and ks.size):
        raise ValueError(f"k, covariance_type and {criterion!r} must be 1-D columns of one non-empty length.")
    if ks.dtype.kind not in "iuf" or not np.all(np.isfinite(ks.astype(np.float64)) & (ks == np.round(ks))):
        raise ValueError(f"column 'k' must hold integers, got {ks.tolist()}.")
    ks = ks.astype(np.int64)
    fits = list(zip(types.tolist(), ks.tolist()))
    if len(set(fits)) != len(fits):
        repeated = next(fit for fit in fits if fits.count(fit) > 1)
        raise ValueError(
            f"the table has several rows for k={repeated[1]}, "
            f"{'covariance_type, family' if by_family else 'covariance_type'}={repeated[0]!r}; "
            f"keep one row per fit (e.g. the best restart)."
        )
    if not np.isfinite(values).any():
        raise ValueError(f"column {criterion!r} has no finite value; every fit failed?")
    scores = np.where(np.isfinite(values), values, np.inf if lower_is_better else -np.inf)
    best = int(np.argmin(scores) if lower_is_better else np.argmax(scores))
    plt = _pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator
    from matplotlib.transforms import blended_transform_factory

    _, first_rows = np.unique(types, return_index=True)
    curve_types = types[np.sort(first_rows)]  # in table order
    many = len(curve_types) > 6
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4.5) if many else (6, 4), layout="constrained")
    at_the_foot = blended_transform_factory(ax.transData, ax.transAxes)  # x in data, y in axes units
    styles = _curve_styles(len(curve_types))
    for covariance_type, style in zip(curve_types, styles):
        rows = np.flatnonzero(types == covariance_type)
        rows = rows[np.argsort(ks[rows], kind="stable")]
        is_best = covariance_type == types[best]
        ax.plot(
            ks[rows],
            values[rows],
            **style,
            markersize=6,
            linewidth=2.4 if is_best else 1.2,
            zorder=2.5 if is_best else 2,
            label=covariance_type,
        )
        missing_rows = rows[~np.isfinite(values[rows])]
        if missing_rows.size:
            ax.plot(
                ks[missing_rows],
                np.full(missing_rows.size, 0.03),
                transform=at_the_foot,
                color=style["color"],
                marker=style["marker"],
                markerfacecolor="none",
                markersize=7,
                linestyle="none",
                clip_on=False,
                label=f"_spurious: {covariance_type}",
            )
    ax.plot(
        [ks[best]],
        [values[best]],
        linestyle="none",
        marker="*",
        markersize=16,
        color="black",
        zorder=3,
        label=f"best: k={ks[best]}, {types[best]}",
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("k (components)")
    ax.set_ylabel(
        f"{criterion.upper() if criterion.lower() in CRITERIA else criterion} "
        f"({'lower' if lower_is_better else 'higher'} is better)"
    )
    handles, labels = ax.get_legend_handles_labels()
    if not np.isfinite(values).all():
        handles.append(Line2D([], [], color="0.3", marker="o", markerfacecolor="none", linestyle="none"))
        labels.append("no value (spurious fit):\nhollow marks at the foot")
    title = "covariance type, family" if by_family else "covariance type"
    if many:  # beside the axes, where 14 entries do not hide the curves
        ax.legend(handles, labels, title=title, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    else:
        ax.legend(handles, labels, title=title)
    return ax


# Filled markers (hollow versions mark missing points): 14, one per mclust model, '*' kept for the best.
_CURVE_MARKERS = ("o", "s", "^", "v", "D", "<", ">", "p", "h", "X", "P", "d", "8", "H")


def _curve_styles(n_curves: int) -> list[dict]:
    """``color``, ``marker`` and ``linestyle`` for curve 0, 1, ...: all three distinct pairwise up to 14 curves.

    Colours run through tab20's dark shades (tab10's colours), then its light ones (dashed);
    markers through ``_CURVE_MARKERS``; both cycle beyond 20 and 14 curves.
    """
    from matplotlib import colormaps

    tab20 = colormaps["tab20"]
    styles = []
    for index in range(n_curves):
        shade = (index // 10) % 2  # 0: dark shades, 1: light shades
        styles.append(
            dict(
                color=tab20(2 * (index % 10) + shade),
                marker=_CURVE_MARKERS[index % len(_CURVE_MARKERS)],
                linestyle=("-", "--")[shade],
            )
        )
    return styles


def plot_pairs(
    params: GMMParams,
    X=None,
    feature_names=None,
    *,
    features=None,
    points: str = "data",
    radii=(1, 2),
    sizes=(3.0, 60.0),
    n_grid: int = 80,
    n_levels: int = 8,
    bins: int = 30,
    figsize=None,
):
    """Pair plot of the mixture's exact marginals on every pair of features.

    Panel (i, j) of the m × m grid (feature j across, feature i up): for ``i ≠ j`` the
    log-density contours of the 2-D marginal mixture on features (j, i) (``marginal``),
    the data and that marginal's component ellipses; for ``i = j`` the 1-D marginal
    density over a density histogram of feature i. Works for any d ≥ 1.

    ``points`` chooses how the data are drawn: ``"data"`` in grey; ``"classification"``
    coloured by their most probable component (as ``plot_classification``); ``"uncertainty"``
    coloured so and sized by their uncertainty ``1 − max_k r_ik`` (the area map of
    ``plot_uncertainty``). Responsibilities come from the whole d-feature mixture, so a point
    keeps its colour and size in every panel; with these two, the diagonal panels also show
    each component's weighted density ``π_k N(x | μ_k, σ_k²)`` in its colour.

    Parameters
    ----------
    params : GMMParams
        One mixture (no batch axes), any covariance type: means (k, d).
    X : array-like (n, d), optional
        Points to scatter and histogram (all d columns); also sets the plotted ranges.
        Needed for ``points="classification"`` and ``"uncertainty"``.
    feature_names : sequence of d str, optional
        Axis labels; default ``x0, x1, ...``.
    features : sequence of int, optional
        The m features to show, in order (default all d).
    points : {"data", "classification", "uncertainty"}
        How the data are drawn (above).
    radii : float or sequence of float
        Ellipse radii in standard deviations, as in ``plot_ellipses``.
    sizes : pair of float
        Marker areas (points²): ``sizes[0]`` for every point, or ``(s_min, s_max)`` for
        ``points="uncertainty"``.
    n_grid : int
        Grid points per axis for the densities.
    n_levels : int
        Contour levels per panel (in log density, spanning 8 nats below its maximum).
    bins : int
        Histogram bins on the diagonal.
    figsize : pair of float, optional
        Default 2.4 inches per panel.

    Returns
    -------
    matplotlib.figure.Figure
        ``figure.axes`` holds the m × m panels row by row.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm import GMMParams
    >>> from bayesgmm.plot import plot_pairs
    >>> params = GMMParams.from_covariances([0.5, 0.5], np.array([[0.0, 0.0, 0.0], [3.0, 1.0, -2.0]]),
    ...                                     np.ones((2, 3)), "diag")
    >>> figure = plot_pairs(params, feature_names=["a", "b", "c"])
    >>> len(figure.axes)
    9
    >>> import matplotlib.pyplot as plt
    >>> plt.close(figure)
    """
    params = _check_params(params, "plot_pairs")
    d = params.n_features
    X = _check_points(X, d, "plot_pairs")
    features = tuple(range(d)) if features is None else _feature_indices(features, d)
    feature_names = _check_feature_names(feature_names, d)
    points = _check_point_view(points, X, "plot_pairs")
    radii = _check_radii(radii)
    sizes = _check_sizes(sizes)
    n_grid = _check_positive_int(n_grid, "n_grid")
    style = None if points == "data" else _point_style(params, X, points, sizes, None)
    weights, means, covariances = _dense(marginal(params, features))
    return _pairs_figure(
        weights,
        means,
        covariances,
        None if X is None else X[:, list(features)],
        [feature_names[f] for f in features],
        params.dtype,
        style=style,
        radii=radii,
        n_grid=n_grid,
        n_levels=n_levels,
        bins=bins,
        figsize=figsize,
        title=_title(params, "marginals"),
        family=params,
    )


def _check_point_view(points, X, caller: str) -> str:
    if points not in ("data", *_POINT_VIEWS):
        raise ValueError(f"points must be 'data', 'classification' or 'uncertainty', got {points!r}.")
    if points != "data" and X is None:
        raise ValueError(f"{caller}(points={points!r}) needs the data X to classify; pass X or points='data'.")
    return points


def _pairs_figure(
    weights, means, covariances, X, names, dtype, *, style, radii, n_grid, n_levels, bins, figsize, title, family=None
):
    """The m × m pair plot of the mixture weights (k,), means (k, m), covariances (k, m, m) (float64).

    X (n, m) or None: the shown columns of the data; style: None (grey points) or per-row face
    colours (n, 4) and marker areas (n,); names: the m axis labels; family: None (Gaussian) or
    a GMMParams whose family and degrees of freedom the components have.
    """
    plt = _pyplot()
    m = means.shape[1]
    if X is not None:
        low, high = X.min(axis=0), X.max(axis=0)
    else:
        spread = 3.0 * np.sqrt(np.diagonal(covariances, axis1=-2, axis2=-1))
        low, high = (means - spread).min(axis=0), (means + spread).max(axis=0)
    pad = 0.05 * np.maximum(high - low, 1e-12)
    low, high = low - pad, high + pad
    grids = [np.linspace(low[a], high[a], n_grid) for a in range(m)]
    figure, axes = plt.subplots(m, m, figsize=figsize or (2.4 * m + 0.6, 2.4 * m + 0.4), squeeze=False)
    rgba = _component_colors(len(weights))

    for a in range(m):  # diagonal: 1-D marginals
        ax = axes[a, a]
        if X is not None:
            ax.hist(X[:, a], bins=bins, density=True, color="0.82", edgecolor="white", label="data")
        one = _full_mixture(weights, means[:, [a]], covariances[:, [a]][:, :, [a]], dtype, family)
        shares = np.exp(np.asarray(_log_joint(one, grids[a][:, None]), dtype=np.float64)).T  # (k, n_grid)
        ax.plot(grids[a], shares.sum(axis=0), color="black", linewidth=1.4, label="marginal density")
        if style is not None:  # each component's share π_k p_k(x), in its colour
            for component, share in enumerate(shares):
                ax.plot(grids[a], share, color=rgba[component], linewidth=1.0, label=f"component {component}")
        ax.set_xlim(low[a], high[a])
        ax.set_yticks([])

    for a, b in itertools.combinations(range(m), 2):  # off-diagonal: 2-D marginals, one density per pair
        along_a, along_b = np.meshgrid(grids[a], grids[b], indexing="ij")
        grid_points = np.column_stack([along_a.ravel(), along_b.ravel()])
        pair = _full_mixture(weights, means[:, [a, b]], covariances[:, [a, b]][:, :, [a, b]], dtype, family)
        log_density = np.asarray(_log_prob(pair, grid_points), dtype=np.float64).reshape(n_grid, n_grid)
        top = log_density.max()
        levels = np.linspace(top - 8.0, top, n_levels)
        # panel (row, col) shows feature col across and feature row up: z[row index, col index]
        for row, col, z in ((a, b, log_density), (b, a, log_density.T)):
            ax = axes[row, col]
            ax.contour(grids[col], grids[row], z, levels=levels, cmap="Greys", linewidths=0.8)
            if X is not None and style is None:
                ax.scatter(X[:, col], X[:, row], s=4, c="0.3", alpha=0.5, linewidths=0, label="data")
            elif X is not None:
                colours, areas = style
                ax.scatter(X[:, col], X[:, row], s=areas, c=colours, alpha=0.8, linewidths=0, label="data")
            index = [col, row]  # this panel's 2-D marginal: x = feature col, y = feature row
            sub_covariances = covariances[:, index][:, :, index]
            _draw_ellipses(ax, means[:, index], sub_covariances, radii, linewidth=1.0, annotate=False)
            ax.set_xlim(low[col], high[col])
            ax.set_ylim(low[row], high[row])

    for row, col in itertools.product(range(m), range(m)):
        ax = axes[row, col]
        if row == m - 1:
            ax.set_xlabel(names[col])
        else:
            ax.tick_params(labelbottom=False)
        if col == 0:
            ax.set_ylabel(names[row] if m > 1 else "density")
        elif row != col:
            ax.tick_params(labelleft=False)
    figure.suptitle(title)
    return figure


# ----------------------------------------------------------------------------- dimension reduction


class Directions(NamedTuple):
    """Result of ``dr_directions``: the directions that show a mixture's clusters, best first.

    basis : ndarray (d, m)
        Unit-norm columns ``β_1 … β_m``; the data's coordinates are ``(X − center) @ basis``.
    eigenvalues : ndarray (m,)
        Generalised eigenvalues ``l_1 ≥ … ≥ l_m > 0`` of the kernel (how much of the clusters'
        separation each direction carries).
    center : ndarray (d,)
        Where the coordinates are measured from: the data's mean (or the mixture's).
    """

    basis: np.ndarray
    eigenvalues: np.ndarray
    center: np.ndarray


def dr_directions(params: GMMParams, X=None, *, mixing: float = 0.5) -> Directions:
    """Dimension-reduction directions of a mixture: mclust's ``MclustDR`` (Scrucca 2010).

    With weights ``π_k``, means ``μ_k`` and covariances ``Σ_k``, the overall mean ``μ`` and
    covariance ``Σ`` (of the data ``X``, divisor n, when given; else of the mixture,
    ``Σ = S + M_I``), and the pooled covariance ``S = Σ_k π_k Σ_k``, the kernel

        ``M = 2λ M_I Σ⁻¹ M_I + 2(1 − λ) M_II``,
        ``M_I = Σ_k π_k (μ_k − μ)(μ_k − μ)ᵀ``,  ``M_II = Σ_k π_k (Σ_k − S) Σ⁻¹ (Σ_k − S)``

    collects the variation of the means (``M_I``) and of the covariances (``M_II``). The
    directions solve the generalised eigenproblem ``M β = l Σ β``; those with ``l`` above
    ``sqrt(machine epsilon)`` are kept, largest first, scaled to unit norm and signed so that
    their largest entry is positive. For two components with one shared covariance the only
    direction is Fisher's discriminant ``Σ⁻¹ (μ_1 − μ_2)``. Computed in float64 on the host
    through the Cholesky factor of ``Σ`` (no inverse): ``L⁻¹ M L⁻ᵀ`` is symmetric.

    Parameters
    ----------
    params : GMMParams
        One mixture (no batch axes), any covariance type: means (k, d).
    X : array-like (n, d), optional
        The data: their mean and covariance (divisor n) are ``μ`` and ``Σ``, as in mclust.
    mixing : float
        ``λ`` in [0, 1], the weight of the means' part (mclust's ``lambda``; 0.5 weighs both equally).

    Returns
    -------
    Directions
        basis (d, m), eigenvalues (m,), center (d,), with ``m ≤ d``.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm import GMMParams
    >>> from bayesgmm.plot import dr_directions
    >>> params = GMMParams.from_covariances([0.5, 0.5], [[0.0, 0.0, 0.0], [0.0, 4.0, 0.0]],
    ...                                     np.eye(3), "tied")
    >>> directions = dr_directions(params)  # the means differ along the second feature only
    >>> directions.basis.round(6).T, directions.eigenvalues.round(6)
    (array([[0., 1., 0.]]), array([0.64]))

    References
    ----------
    L. Scrucca, "Dimension reduction for model-based clustering", Statistics and Computing 20(4),
    471–484, 2010.
    """
    params = _check_params(params, "dr_directions")
    X = _check_points(X, params.n_features, "dr_directions")
    if isinstance(mixing, bool) or not isinstance(mixing, numbers.Real) or not 0.0 <= mixing <= 1.0:
        raise ValueError(f"mixing (mclust's lambda) must be a number in [0, 1], got {mixing!r}.")
    weights, means, covariances = _dense(params)
    center = weights @ means if X is None else X.mean(axis=0)
    deviations = means - center  # (k, d)
    between = np.einsum("k,ki,kj->ij", weights, deviations, deviations)  # M_I
    pooled = np.einsum("k,kij->ij", weights, covariances)  # S
    total = pooled + between if X is None else np.cov(X, rowvar=False, bias=True).reshape(len(center), -1)
    try:
        cholesky = np.linalg.cholesky(total)
    except np.linalg.LinAlgError:
        raise ValueError(
            "the data's covariance is singular (a constant or collinear column?); drop the redundant columns."
        ) from None

    def whiten(matrix):  # L⁻¹ A L⁻ᵀ for symmetric A (..., d, d), by two solves against the factor
        half = np.linalg.solve(cholesky, matrix)  # L⁻¹ A
        return np.swapaxes(np.linalg.solve(cholesky, np.swapaxes(half, -1, -2)), -1, -2)

    between_white = whiten(between)
    spread_white = whiten(covariances - pooled)  # (k, d, d)
    kernel = 2.0 * mixing * between_white @ between_white + 2.0 * (1.0 - mixing) * np.einsum(
        "k,kij,kjl->il", weights, spread_white, spread_white
    )
    eigenvalues, vectors = np.linalg.eigh(0.5 * (kernel + kernel.T))
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues = np.maximum(eigenvalues[order], 0.0)
    keep = eigenvalues > np.sqrt(np.finfo(np.float64).eps)
    basis = np.linalg.solve(cholesky.T, vectors[:, order][:, keep])  # β = L⁻ᵀ u
    basis = basis / np.linalg.norm(basis, axis=0)
    signs = np.sign(basis[np.abs(basis).argmax(axis=0), np.arange(basis.shape[1])])
    return Directions(basis * signs, eigenvalues[keep], center)


def plot_directions(
    params: GMMParams,
    X,
    n_directions: int | None = 2,
    *,
    points: str = "uncertainty",
    mixing: float = 0.5,
    radii=(1, 2),
    sizes=(3.0, 60.0),
    n_grid: int = 80,
    n_levels: int = 8,
    bins: int = 30,
    figsize=None,
):
    """Pair plot of the data and the mixture on its dimension-reduction directions (``dr_directions``).

    mclust's ``plot(MclustDR(model))``: a projection view for any d. The data's coordinates are
    ``Z = (X − center) @ basis`` and each component projects exactly to
    ``N((μ_k − center) @ basis, basisᵀ Σ_k basis)``; the panels are those of ``plot_pairs``
    on the projected mixture ("Dir1", "Dir2", ...: contours, ellipses, 1-D densities), with the
    points coloured (and sized) by the responsibilities of the whole d-feature mixture.

    Parameters
    ----------
    params : GMMParams
        One mixture (no batch axes), any covariance type: means (k, d).
    X : array-like (n, d)
        The data: they set the directions' centre and covariance (as in mclust) and are shown.
    n_directions : int or None
        How many of the leading directions to show (default 2, mclust's scatterplot; all kept
        directions when None or when fewer are kept).
    points : {"uncertainty", "classification", "data"}
        How the data are drawn, as in ``plot_pairs``.
    mixing : float
        ``λ`` of ``dr_directions``.
    radii, sizes, n_grid, n_levels, bins, figsize
        As in ``plot_pairs``.

    Returns
    -------
    matplotlib.figure.Figure
        ``figure.axes`` holds the m × m panels row by row, on the first m columns of
        ``dr_directions(params, X, mixing=mixing).basis``.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm import GMMParams
    >>> from bayesgmm.plot import plot_directions
    >>> params = GMMParams.from_covariances([0.5, 0.5], [[0.0, 0.0, 0.0], [3.0, 1.0, 0.0]],
    ...                                     [[1.0, 1.0, 1.0], [1.0, 1.0, 4.0]], "diag")
    >>> X = np.random.default_rng(0).normal(size=(40, 3)) + [1.5, 0.5, 0.0]
    >>> figure = plot_directions(params, X)
    >>> len(figure.axes), figure.axes[2].get_xlabel()
    (4, 'Dir1')
    >>> import matplotlib.pyplot as plt
    >>> plt.close(figure)
    """
    params = _check_params(params, "plot_directions")
    if X is None:
        raise ValueError("plot_directions needs the data X: they set the directions' centre and covariance.")
    X = _check_points(X, params.n_features, "plot_directions")
    directions = dr_directions(params, X, mixing=mixing)
    if n_directions is not None:
        n_directions = _check_positive_int(n_directions, "n_directions")
        directions = directions._replace(
            basis=directions.basis[:, :n_directions], eigenvalues=directions.eigenvalues[:n_directions]
        )
    if directions.basis.shape[1] == 0:
        raise ValueError(
            "the mixture has no direction that separates its components (all eigenvalues 0: one component, or "
            "identical components); use plot_pairs on the features instead."
        )
    points = _check_point_view(points, X, "plot_directions")
    radii = _check_radii(radii)
    sizes = _check_sizes(sizes)
    n_grid = _check_positive_int(n_grid, "n_grid")
    style = None if points == "data" else _point_style(params, X, points, sizes, None)
    weights, means, covariances = _dense(params)
    basis = directions.basis
    projected_covariances = np.einsum("im,kij,jn->kmn", basis, covariances, basis)
    return _pairs_figure(
        weights,
        (means - directions.center) @ basis,
        0.5 * (projected_covariances + np.swapaxes(projected_covariances, -1, -2)),
        (X - directions.center) @ basis,
        [f"Dir{index + 1}" for index in range(basis.shape[1])],
        params.dtype,
        style=style,
        radii=radii,
        n_grid=n_grid,
        n_levels=n_levels,
        bins=bins,
        figsize=figsize,
        title=_title(params, "MclustDR directions"),
    )
