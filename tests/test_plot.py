"""Plots against closed forms: ellipse geometry, exact marginals (scipy.stats), criterion tables.

Everything is drawn with the Agg backend on hand-made parameters (no fitting, no sampling), and
every figure is closed.
"""

import types

import jax
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.contour import ContourSet  # noqa: E402

from bayesgmm import GMMParams, Posterior  # noqa: E402
from bayesgmm.plot import (  # noqa: E402
    dr_directions,
    marginal,
    plot_classification,
    plot_criterion,
    plot_density,
    plot_directions,
    plot_ellipses,
    plot_pairs,
    plot_posterior_ellipses,
    plot_uncertainty,
)
from tests._references import COVARIANCE_TYPES, covariances_in_layout, full_covariances, random_spd  # noqa: E402

_log_prob = jax.jit(lambda params, points: params.log_prob(points))  # one compile per shape, not one per op


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _random_params(covariance_type, k=3, d=2, seed=0, batch_shape=()):
    """GMMParams and the (weights, means, dense covariances) it was built from, with the batch axes."""
    rng = np.random.default_rng(seed)
    n_batch = int(np.prod(batch_shape))
    layouts = [
        covariances_in_layout(np.stack([random_spd(rng, d) for _ in range(k)]), covariance_type) for _ in range(n_batch)
    ]
    dense = np.stack([full_covariances(layout, covariance_type, k, d) for layout in layouts])
    weights = rng.dirichlet(np.ones(k), size=n_batch)
    means = rng.normal(scale=3.0, size=(n_batch, k, d))
    layout = np.stack(layouts)
    # the Cholesky factor ("scale") in numpy: no JAX op to compile per shape
    scale = np.linalg.cholesky(layout) if covariance_type in ("full", "tied") else np.sqrt(layout)

    def reshape(array):
        return array.reshape(batch_shape + array.shape[1:])

    params = GMMParams(reshape(weights), reshape(means), reshape(scale), covariance_type)
    return params, (reshape(weights), reshape(means), reshape(dense))


def _mahalanobis_sq(points, mean, covariance):
    """(x − μ)ᵀ Σ⁻¹ (x − μ) for each row of points (n, d), by a linear solve on Σ."""
    centred = points - mean
    return np.einsum("ni,ni->n", centred, np.linalg.solve(covariance, centred.T).T)


def _collection(ax, label_prefix):
    found = [c for c in ax.collections if isinstance(c, LineCollection) and c.get_label().startswith(label_prefix)]
    assert len(found) == 1, [c.get_label() for c in ax.collections]
    return found[0]


# ----------------------------------------------------------------------------- ellipses


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_ellipse_points_lie_on_the_mahalanobis_circle(covariance_type):
    """Every drawn point satisfies (x−μ)ᵀΣ⁻¹(x−μ) = r²: exact up to float64 round-off (1e-9)."""
    params, (_, means, dense) = _random_params(covariance_type)
    radii = (0.5, 1.0, 2.5)
    ax = plot_ellipses(params, radii=radii)
    for radius in radii:
        collection = _collection(ax, f"{radius:g}-sd")
        segments = collection.get_segments()
        assert len(segments) == len(means)
        for component, outline in enumerate(segments):
            np.testing.assert_allclose(
                _mahalanobis_sq(outline, means[component], dense[component]), radius**2, rtol=1e-9
            )
            # equally spaced angles on a closed curve: the centroid of the distinct points is the mean
            np.testing.assert_allclose(outline[:-1].mean(axis=0), means[component], atol=1e-9)
        colours = collection.get_colors()
        assert len(np.unique(colours, axis=0)) == len(means)  # one colour per component
    assert [text.get_text() for text in ax.texts] == ["0", "1", "2"]


def test_plot_ellipses_rejects_wrong_input():
    params_3d, _ = _random_params("full", d=3)
    with pytest.raises(ValueError, match="d=3 features.*marginal"):
        plot_ellipses(params_3d)
    batched, _ = _random_params("diag", batch_shape=(4,))
    with pytest.raises(ValueError, match="batch shape \\(4,\\)"):
        plot_ellipses(batched)
    params, _ = _random_params("full")
    with pytest.raises(ValueError, match="radii must be positive"):
        plot_ellipses(params, radii=(1.0, -2.0))
    with pytest.raises(ValueError, match="one per component \\(3\\)"):
        plot_ellipses(params, colors=["red", "blue"])
    with pytest.raises(TypeError, match="GMMParams"):
        plot_ellipses(np.zeros((3, 2)))


def test_plot_density_keeps_its_contours_points_and_ellipses():
    params, (_, means, dense) = _random_params("tied")
    X = means[np.arange(60) % 3] + np.random.default_rng(3).normal(size=(60, 2))
    ax = plot_density(params, X, feature_names=("a", "b"))
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("a", "b")
    assert len(ax.figure.axes) == 2  # the plot and its colorbar
    np.testing.assert_array_equal(ax.collections[1].get_offsets(), X)  # after the filled contours
    for radius in (1, 2):
        outlines = _collection(ax, f"{radius}-sd").get_segments()
        np.testing.assert_allclose(_mahalanobis_sq(outlines[2], means[2], dense[2]), radius**2, rtol=1e-9)
    assert not [c for c in plot_density(params, ellipses=False).collections if isinstance(c, LineCollection)]
    with pytest.raises(ValueError, match="X has 3 columns"):
        plot_density(params, np.zeros((5, 3)))


def test_plots_leave_rcparams_alone():
    before = dict(matplotlib.rcParams)
    params, _ = _random_params("full", d=3)
    plot_pairs(params, n_grid=40)
    plot_ellipses(marginal(params, (0, 1)))
    assert dict(matplotlib.rcParams) == before


# ----------------------------------------------------------------------------- marginals


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("features", [(2, 0), (3, 1, 2), (1,)], ids=str)
def test_marginal_density_matches_scipy(covariance_type, features):
    """log p(x_F) = logsumexp_k [log π_k + log N(x_F | μ_k[F], Σ_k[F, F])] (scipy), to float64 round-off."""
    params, (weights, means, dense) = _random_params(covariance_type, k=3, d=4, seed=5)
    sub = marginal(params, features)
    assert sub.covariance_type == "full" and sub.n_features == len(features)
    index = list(features)
    points = np.random.default_rng(6).normal(scale=3.0, size=(40, len(features)))
    if len(features) == 1:
        per_component = stats.norm(means[:, index[0]], np.sqrt(dense[:, index[0], index[0]])).logpdf(points)
    else:
        per_component = np.stack(
            [stats.multivariate_normal(m[index], c[np.ix_(index, index)]).logpdf(points) for m, c in zip(means, dense)],
            axis=-1,
        )
    expected = logsumexp(np.log(weights) + per_component, axis=-1)
    np.testing.assert_allclose(np.asarray(_log_prob(sub, points)), expected, rtol=1e-10)


def test_marginal_keeps_batch_axes():
    params, (weights, means, dense) = _random_params("diag", k=2, d=3, batch_shape=(2, 5))
    sub = marginal(params, (2, 1))
    assert sub.batch_shape == (2, 5)
    np.testing.assert_allclose(np.asarray(sub.means), means[..., [2, 1]], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(sub.covariance_matrices), dense[..., [2, 1], :][..., [2, 1]], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(sub.weights), weights, rtol=1e-12)


@pytest.mark.parametrize(
    "features, message",
    [((), "empty"), ((0, 3), "index 3 is out of range"), ((1, 1), "repeat"), ((0.5,), "integer"), ((-1,), "range")],
)
def test_marginal_rejects_bad_features(features, message):
    params, _ = _random_params("spherical", d=3)
    with pytest.raises(ValueError, match=message):
        marginal(params, features)


# ----------------------------------------------------------------------------- posterior clouds


def _posterior_draws(chains=2, draws=30, k=3):
    """A batched GMMParams scattered about one mixture, like relabelled posterior draws."""
    rng = np.random.default_rng(7)
    weights = rng.dirichlet(np.full(k, 20.0), size=(chains, draws))
    means = np.array([[0.0, 0.0], [5.0, 1.0], [1.0, 6.0]])[:k] + 0.2 * rng.normal(size=(chains, draws, k, 2))
    dense = np.stack([random_spd(rng, 2) for _ in range(chains * draws * k)]).reshape(chains, draws, k, 2, 2)
    return GMMParams(weights, means, np.linalg.cholesky(dense), "full"), (weights, means, dense)


def test_posterior_clouds_draw_one_ellipse_per_shown_draw_and_component():
    draws, (_, means, dense) = _posterior_draws()
    flat_means, flat_dense = means.reshape(-1, 3, 2), dense.reshape(-1, 3, 2, 2)
    ax = plot_posterior_ellipses(draws, n_draws=12, radius=1.5, seed=1)
    cloud = _collection(ax, "posterior draws")
    segments = cloud.get_segments()
    assert len(segments) == 12 * 3
    colours = cloud.get_colors()
    for index, outline in enumerate(segments):
        component = index % 3  # draw by draw, component within draw
        np.testing.assert_array_equal(colours[index], colours[component])
        # the ellipse belongs to one draw: its centroid is that draw's mean, its points at radius 1.5 for it
        draw = int(np.argmin(np.abs(flat_means[:, component] - outline[:-1].mean(axis=0)).sum(axis=1)))
        np.testing.assert_allclose(outline[:-1].mean(axis=0), flat_means[draw, component], atol=1e-9)
        np.testing.assert_allclose(
            _mahalanobis_sq(outline, flat_means[draw, component], flat_dense[draw, component]), 1.5**2, rtol=1e-9
        )
    assert len({tuple(np.round(s[:-1].mean(axis=0), 9)) for s in segments}) == 36  # draws without replacement
    mean_outlines = _collection(ax, "posterior mean").get_segments()
    for component, outline in enumerate(mean_outlines):
        mean, covariance = flat_means[:, component].mean(axis=0), flat_dense[:, component].mean(axis=0)
        np.testing.assert_allclose(_mahalanobis_sq(outline, mean, covariance), 1.5**2, rtol=1e-9)
    # asking for more draws than there are shows each draw once
    assert len(_collection(plot_posterior_ellipses(draws, n_draws=500), "posterior draws").get_segments()) == 60 * 3


def test_posterior_clouds_take_a_posterior_with_its_data_and_names():
    draws, _ = _posterior_draws(chains=1, draws=8, k=2)
    X = np.random.default_rng(8).normal(size=(25, 2))
    posterior = Posterior(
        params=draws,
        log_likelihood=None,
        method="nuts",
        reference=None,
        sample_stats={},
        permutations=None,
        X=X,
        feature_names=["eruptions", "waiting"],
        priors=None,
    )
    ax = plot_posterior_ellipses(posterior, n_draws=5)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("eruptions", "waiting")
    np.testing.assert_array_equal(ax.collections[0].get_offsets(), X)
    assert len(_collection(ax, "posterior draws").get_segments()) == 5 * 2


def test_posterior_clouds_reject_wrong_input():
    draws, _ = _posterior_draws()
    single, _ = _random_params("full")
    with pytest.raises(ValueError, match="unbatched.*plot_ellipses"):
        plot_posterior_ellipses(single)
    wide, _ = _random_params("full", d=3, batch_shape=(2, 4))
    with pytest.raises(ValueError, match="d=3 features"):
        plot_posterior_ellipses(wide)
    with pytest.raises(ValueError, match="n_draws must be a positive integer"):
        plot_posterior_ellipses(draws, n_draws=0)
    with pytest.raises(ValueError, match="X has 3 columns"):
        plot_posterior_ellipses(draws, np.zeros((4, 3)))
    with pytest.raises(TypeError, match="Posterior"):
        plot_posterior_ellipses({"means": 1})


# ----------------------------------------------------------------------------- criterion curves


def _selection_table():
    """The shape of bayesgmm.select(...).table: one row per fit, rows in no particular order."""
    pandas = pytest.importorskip("pandas")
    rng = np.random.default_rng(9)
    rows = [
        {"k": k, "covariance_type": t, "log_likelihood": -500.0 + 40 * k, "n_parameters": 6 * k - 1}
        for t in COVARIANCE_TYPES
        for k in range(1, 6)
    ]
    table = pandas.DataFrame(rows).sample(frac=1.0, random_state=0).reset_index(drop=True)
    table["bic"] = rng.normal(1000.0, 30.0, size=len(table))
    table["aic"] = rng.normal(1000.0, 30.0, size=len(table))
    table["icl"] = rng.normal(1000.0, 30.0, size=len(table))
    return table


@pytest.mark.parametrize("criterion", ["bic", "aic", "icl"])
def test_criterion_lines_hold_the_table_and_mark_the_argmin(criterion):
    table = _selection_table()
    ax = plot_criterion(types.SimpleNamespace(table=table), criterion)
    lines = {line.get_label(): line for line in ax.get_lines()}
    for covariance_type in COVARIANCE_TYPES:
        expected = table[table.covariance_type == covariance_type].sort_values("k")
        np.testing.assert_array_equal(lines[covariance_type].get_xdata(), expected.k)
        np.testing.assert_array_equal(lines[covariance_type].get_ydata(), expected[criterion])
    best_row = table.loc[table[criterion].idxmin()]
    (best,) = [line for label, line in lines.items() if label.startswith("best")]
    assert best.get_label() == f"best: k={best_row.k}, {best_row.covariance_type}"
    assert (best.get_xdata()[0], best.get_ydata()[0]) == (best_row.k, best_row[criterion])


def test_criterion_accepts_a_dataframe_or_a_mapping_and_skips_failed_fits():
    table = _selection_table()
    columns = {name: table[name].tolist() for name in ("k", "covariance_type", "bic")}
    lowest = int(np.argmin(columns["bic"]))
    columns["bic"][lowest] = float("nan")  # a failed fit is a gap, never the best
    ax = plot_criterion(columns, "BIC")
    best = [line for line in ax.get_lines() if line.get_label().startswith("best")][0]
    assert best.get_ydata()[0] == np.nanmin(columns["bic"])
    assert ax.get_ylabel() == "BIC (lower is better)"
    plot_criterion(table, "aic")  # a DataFrame as it is


def test_criterion_rejects_bad_tables():
    table = _selection_table()
    with pytest.raises(ValueError, match="no column 'icl'"):
        plot_criterion(table.drop(columns="icl"), "icl")
    with pytest.raises(ValueError, match="several rows for k=1"):
        plot_criterion(table.assign(k=1), "bic")
    with pytest.raises(ValueError, match="lower_is_better"):
        plot_criterion(table, "log_likelihood")
    with pytest.raises(ValueError, match="no finite value"):
        plot_criterion(table.assign(bic=np.nan), "bic")
    ax = plot_criterion(table, "log_likelihood", lower_is_better=False)
    best = [line for line in ax.get_lines() if line.get_label().startswith("best")][0]
    assert best.get_ydata()[0] == table.log_likelihood.max()
    with pytest.raises(TypeError, match="table"):
        plot_criterion([1, 2, 3])


def test_criterion_draws_one_curve_per_type_and_family():
    pandas = pytest.importorskip("pandas")
    table = _selection_table()
    both = pandas.concat([table.assign(family="gaussian"), table.assign(family="student_t", bic=table.bic - 5.0)])
    ax = plot_criterion(both, "bic")
    labels = [line.get_label() for line in ax.get_lines()]
    assert sorted(labels[:4]) == [f"{t}, gaussian" for t in sorted(COVARIANCE_TYPES)]  # in table order
    assert sorted(labels[4:-1]) == [f"{t}, student_t" for t in sorted(COVARIANCE_TYPES)]
    best_row = table.loc[table.bic.idxmin()]
    assert labels[-1] == f"best: k={best_row.k}, {best_row.covariance_type}, student_t"
    assert ax.get_legend().get_title().get_text() == "covariance type, family"
    with pytest.raises(ValueError, match="covariance_type, family="):
        plot_criterion(pandas.concat([both, both]), "bic")


# ----------------------------------------------------------------------------- pair plots


@pytest.mark.parametrize("covariance_type", ["full", "spherical"])
def test_pair_plot_panels_show_the_exact_marginals(covariance_type):
    params, (weights, means, dense) = _random_params(covariance_type, k=2, d=3, seed=11)
    X = means[np.arange(80) % 2] + np.random.default_rng(12).normal(size=(80, 3))
    names = ["a", "b", "c"]
    figure = plot_pairs(params, X, feature_names=names, n_grid=40, radii=(1,))
    axes = np.array(figure.axes).reshape(3, 3)
    for i in range(3):
        for j in range(3):
            ax = axes[i, j]
            if i == j:  # 1-D marginal density from scipy.stats.norm, over a histogram
                (line,) = ax.get_lines()
                grid = line.get_xdata()
                expected = weights @ stats.norm(means[:, i, None], np.sqrt(dense[:, i, i, None])).pdf(grid)
                np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-10)
                assert len(ax.patches) == 30
                continue
            # feature j across, feature i up: ellipses of the (j, i) sub-mixture at radius 1
            index = [j, i]
            outlines = _collection(ax, "1-sd").get_segments()
            for component, outline in enumerate(outlines):
                covariance = dense[component][np.ix_(index, index)]
                np.testing.assert_allclose(_mahalanobis_sq(outline, means[component, index], covariance), 1, rtol=1e-9)
            # contour vertices lie on their level of the exact log density (scipy), up to matplotlib's linear
            # interpolation between grid nodes (spacing h ~ range/40; error ~ h²·|curvature|/8, measured <= 0.04
            # nats here); a transposed or mis-ordered panel is off by nats (2.5 when tried)
            (contours,) = [c for c in ax.collections if isinstance(c, ContourSet)]
            for level, path in zip(contours.levels, contours.get_paths()):
                if len(path.vertices) == 0:
                    continue
                log_density = logsumexp(
                    [
                        np.log(w) + stats.multivariate_normal(m[index], c[np.ix_(index, index)]).logpdf(path.vertices)
                        for w, m, c in zip(weights, means, dense)
                    ],
                    axis=0,
                )
                np.testing.assert_allclose(log_density, level, atol=0.15)
            np.testing.assert_array_equal(ax.collections[1].get_offsets(), X[:, index])
    assert [ax.get_xlabel() for ax in axes[-1]] == names
    assert [ax.get_ylabel() for ax in axes[:, 0]] == names


def _student_t(params, dof):
    return GMMParams(params.weights, params.means, params.scale, params.covariance_type, np.asarray(dof), "student_t")


def test_student_t_plots_show_t_densities():
    """marginal keeps the family; the pair plot's 1-D densities and plot_density's contours are t densities."""
    gaussian, (weights, means, dense) = _random_params("full", k=2, d=3, seed=11)
    dof = np.array([2.5, 7.0])
    params = _student_t(gaussian, dof)
    pair = marginal(params, (2, 0))
    assert (pair.family, pair.dof_mode) == ("student_t", "component")
    np.testing.assert_array_equal(np.asarray(pair.dof), dof)
    points = np.random.default_rng(5).normal(scale=3.0, size=(7, 2))
    index = [2, 0]
    expected = logsumexp(
        [
            np.log(w) + stats.multivariate_t(m[index], c[np.ix_(index, index)], df=nu).logpdf(points)
            for w, m, c, nu in zip(weights, means, dense, dof)
        ],
        axis=0,
    )
    np.testing.assert_allclose(np.asarray(_log_prob(pair, points)), expected, rtol=1e-5)

    figure = plot_pairs(params, n_grid=40)
    for i, ax in enumerate(np.array(figure.axes).reshape(3, 3).diagonal()):
        (line,) = ax.get_lines()
        grid = line.get_xdata()
        components = [stats.t(nu, m[i], np.sqrt(c[i, i])).pdf(grid) for m, c, nu in zip(means, dense, dof)]
        np.testing.assert_allclose(line.get_ydata(), weights @ np.array(components), rtol=1e-5)

    gaussian_two, (weights, means, dense) = _random_params("diag", k=2, d=2, seed=3)
    two = _student_t(gaussian_two, [3.0, 3.0])
    X = np.random.default_rng(6).normal(scale=4.0, size=(20, 2))
    ax = plot_density(two, X, n_grid=30)
    assert ax.get_title() == "2-component diag Student-t mixture"
    # the top contour level is the grid's highest log density: the t mixture's (scipy), not the Gaussian's
    low, high = X.min(axis=0), X.max(axis=0)
    pad = 0.1 * (high - low)
    grid = np.stack(np.meshgrid(*(np.linspace(low[a] - pad[a], high[a] + pad[a], 30) for a in range(2))), axis=-1)
    grid = grid.reshape(-1, 2)
    t_density = sum(w * stats.multivariate_t(m, c, df=3.0).pdf(grid) for w, m, c in zip(weights, means, dense))
    (contours,) = [c for c in ax.collections if isinstance(c, ContourSet)]
    assert contours.levels[-1] == pytest.approx(np.log(t_density.max()), rel=1e-5)
    assert contours.levels[-1] != pytest.approx(float(np.max(_log_prob(gaussian_two, grid))), rel=1e-3)


def test_pair_plot_of_chosen_features_and_of_two_features():
    params, _ = _random_params("diag", k=2, d=4)
    figure = plot_pairs(params, features=(3, 1), n_grid=40)
    assert len(figure.axes) == 4
    assert figure.axes[2].get_xlabel() == "x3" and figure.axes[2].get_ylabel() == "x1"
    two, _ = _random_params("tied", k=2, d=2)
    assert len(plot_pairs(two, n_grid=40).axes) == 4


def test_pair_plot_rejects_wrong_input():
    params, _ = _random_params("full", d=3)
    batched, _ = _random_params("full", d=3, batch_shape=(2,))
    with pytest.raises(ValueError, match="batch shape"):
        plot_pairs(batched)
    with pytest.raises(ValueError, match="X has 2 columns"):
        plot_pairs(params, np.zeros((10, 2)))
    with pytest.raises(ValueError, match="2 names"):
        plot_pairs(params, feature_names=["a", "b"])
    with pytest.raises(ValueError, match="out of range"):
        plot_pairs(params, features=(0, 5))


MCLUST_MODELS = ("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV")


def _mclust_table(spurious=()):
    """14 mclust model names x k = 1..4, criterion values from a seeded generator; ``spurious`` rows NaN."""
    rng = np.random.default_rng(13)
    rows = [(k, name) for name in MCLUST_MODELS for k in range(1, 5)]
    bic = rng.normal(1000.0, 30.0, size=len(rows))
    for k, name in spurious:
        bic[rows.index((k, name))] = np.nan
    return {"k": [k for k, _ in rows], "covariance_type": [name for _, name in rows], "bic": bic}


def _style(line):
    return (tuple(np.round(matplotlib.colors.to_rgba(line.get_color()), 6)), line.get_marker(), line.get_linestyle())


def test_criterion_gives_fourteen_model_names_fourteen_distinct_styles():
    table = _mclust_table()
    ax = plot_criterion(table, "bic")
    curves = [line for line in ax.get_lines() if line.get_label() in MCLUST_MODELS]
    assert [line.get_label() for line in curves] == list(MCLUST_MODELS)  # one curve each, in table order
    styles = [_style(line) for line in curves]
    assert len({colour for colour, _, _ in styles}) == 14  # colours alone tell them apart
    assert len({marker for _, marker, _ in styles}) == 14  # and so do markers alone
    assert "*" not in {marker for _, marker, _ in styles}  # the star is the best fit's
    legend_labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend_labels[:14] == list(MCLUST_MODELS)
    # the best fit's curve is the thick one
    best = int(np.nanargmin(table["bic"]))
    widths = {line.get_label(): line.get_linewidth() for line in curves}
    assert widths[table["covariance_type"][best]] > max(
        width for name, width in widths.items() if name != table["covariance_type"][best]
    )


def test_criterion_styles_do_not_depend_on_the_names():
    renamed = _mclust_table()
    renamed["covariance_type"] = [f"model {name.lower()}" for name in renamed["covariance_type"]]
    original = [_style(line) for line in plot_criterion(_mclust_table(), "bic").get_lines()[:14]]
    assert [_style(line) for line in plot_criterion(renamed, "bic").get_lines()[:14]] == original


def test_criterion_shows_spurious_points_as_gaps_with_hollow_marks():
    spurious = [(3, "VVV"), (4, "VVV"), (4, "EEV")]
    table = _mclust_table(spurious)
    ax = plot_criterion(table, "bic")
    lines = {line.get_label(): line for line in ax.get_lines()}
    for name in ("VVV", "EEV"):
        curve = lines[name]
        spurious_ks = [k for k, model in spurious if model == name]
        gaps = np.asarray(curve.get_xdata())[np.isnan(np.asarray(curve.get_ydata(), dtype=float))]
        np.testing.assert_array_equal(gaps, spurious_ks)  # NaN stays in the curve: matplotlib breaks it there
        marks = lines[f"_spurious: {name}"]
        np.testing.assert_array_equal(marks.get_xdata(), spurious_ks)
        assert marks.get_markerfacecolor() == "none" and marks.get_linestyle() == "None"
        assert (marks.get_marker(), marks.get_color()) == (curve.get_marker(), curve.get_color())
        # placed in axes units at the foot, whatever the criterion's range
        assert marks.get_transform().contains_branch_seperately(ax.transData) == (True, False)
        np.testing.assert_array_equal(marks.get_ydata(), 0.03)
    assert not [label for label in lines if label.startswith("_spurious") and label[11:] not in ("VVV", "EEV")]
    legend_labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert any(label.startswith("no value (spurious fit)") for label in legend_labels)
    best = [line for label, line in lines.items() if label.startswith("best")][0]
    assert best.get_ydata()[0] == np.nanmin(table["bic"])
    # without NaN there is no note
    complete = [text.get_text() for text in plot_criterion(_mclust_table(), "bic").get_legend().get_texts()]
    assert not any("spurious" in label for label in complete)


# ----------------------------------------------------------------------------- classification and uncertainty


def _scipy_responsibilities(X, weights, means, dense):
    """r_ik = π_k N(x_i | μ_k, Σ_k) / Σ_j π_j N(x_i | μ_j, Σ_j), from scipy.stats (n, k)."""
    log_joint = np.stack(
        [np.log(w) + stats.multivariate_normal(m, c).logpdf(X) for w, m, c in zip(weights, means, dense)], axis=-1
    )
    return np.exp(log_joint - logsumexp(log_joint, axis=-1, keepdims=True))


def _overlapping_data(means, n=150, seed=14):
    """Rows around the component means and between them, so uncertainties span [0, 1 − 1/k)."""
    rng = np.random.default_rng(seed)
    k, d = means.shape
    centres = means[np.arange(n) % k]
    between = 0.5 * (means[np.arange(n) % k] + means[(np.arange(n) + 1) % k])
    return np.where(rng.random((n, 1)) < 0.4, between, centres) + rng.normal(scale=1.2, size=(n, d))


def _data_points(ax):
    (points,) = [c for c in ax.collections if c.get_label() == "data"]
    return points


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_uncertainty_sizes_grow_with_one_minus_the_largest_responsibility(covariance_type):
    params, (weights, means, dense) = _random_params(covariance_type, k=3, d=3, seed=15)
    X = _overlapping_data(means)
    features = (2, 0)
    ax = plot_uncertainty(params, X, features=features, sizes=(5.0, 125.0), radii=(1,))
    points = _data_points(ax)
    np.testing.assert_array_equal(points.get_offsets(), X[:, list(features)])  # row order kept
    responsibilities = _scipy_responsibilities(X, weights, means, dense)  # on all 3 features
    uncertainty = 1.0 - responsibilities.max(axis=1)
    assert uncertainty.max() > 0.3 and uncertainty.min() < 0.01  # the data span the scale
    sizes = points.get_sizes()
    # the documented map: s_min + (s_max − s_min) · u / (1 − 1/k)
    np.testing.assert_allclose(sizes, 5.0 + 120.0 * uncertainty / (1.0 - 1.0 / 3), rtol=1e-9, atol=1e-9)
    order = np.argsort(uncertainty)
    assert np.all(np.diff(sizes[order]) >= 0) and sizes[order[-1]] > sizes[order[0]]
    # colours: the MAP component (scipy's argmax, and params.predict's) in tab10's colour
    labels = responsibilities.argmax(axis=1)
    np.testing.assert_array_equal(labels, np.asarray(params.predict(X)))
    tab10 = matplotlib.colormaps["tab10"](np.arange(3))
    np.testing.assert_array_equal(points.get_facecolors(), tab10[labels])
    assert len(np.unique(labels)) == 3
    # ellipses: the marginal on (x2, x0) at radius 1, in the components' colours
    outlines = _collection(ax, "1-sd")
    for component, outline in enumerate(outlines.get_segments()):
        covariance = dense[component][np.ix_(features, features)]
        np.testing.assert_allclose(_mahalanobis_sq(outline, means[component, list(features)], covariance), 1, rtol=1e-9)
    np.testing.assert_array_equal(outlines.get_colors(), tab10)
    assert [text.get_text() for text in ax.texts] == ["0", "1", "2"]
    # artists: one LineCollection per radius, one scatter, a three-entry size legend
    assert sum(isinstance(c, LineCollection) for c in ax.collections) == 1
    assert len(ax.collections) == 2
    assert len(ax.get_legend().legend_handles) == 3
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x2", "x0")


def test_uncertainty_of_one_component_is_zero_and_sizes_are_the_smallest():
    params, (_, means, _) = _random_params("full", k=1, d=2)
    X = means[0] + np.random.default_rng(16).normal(size=(20, 2))
    np.testing.assert_array_equal(_data_points(plot_uncertainty(params, X, sizes=(7, 70))).get_sizes(), 7.0)


def test_classification_colours_every_point_by_its_map_component_at_one_size():
    params, (weights, means, dense) = _random_params("diag", k=4, d=2, seed=17)
    X = _overlapping_data(means, n=120)
    colours = ["crimson", "navy", "darkgreen", "orange"]
    ax = plot_classification(params, X, colors=colours, size=9.0, feature_names=("a", "b"))
    points = _data_points(ax)
    labels = _scipy_responsibilities(X, weights, means, dense).argmax(axis=1)
    np.testing.assert_array_equal(points.get_facecolors(), matplotlib.colors.to_rgba_array(colours)[labels])
    np.testing.assert_array_equal(points.get_sizes(), 9.0)
    np.testing.assert_array_equal(points.get_offsets(), X)
    assert sum(isinstance(c, LineCollection) for c in ax.collections) == 2  # radii (1, 2)
    assert ax.get_legend() is None  # no size legend without sizes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("a", "b")


@pytest.mark.parametrize("plot", [plot_classification, plot_uncertainty])
def test_classification_views_reject_wrong_input(plot):
    params, _ = _random_params("full", d=3)
    with pytest.raises(ValueError, match="needs the data X"):
        plot(params, None)
    with pytest.raises(ValueError, match="X has 2 columns"):
        plot(params, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="two features"):
        plot(params, np.zeros((5, 3)), features=(0, 1, 2))
    with pytest.raises(ValueError, match="out of range"):
        plot(params, np.zeros((5, 3)), features=(0, 3))
    with pytest.raises(ValueError, match="NaN"):
        plot(params, np.full((5, 3), np.nan))
    batched, _ = _random_params("full", d=3, batch_shape=(2,))
    with pytest.raises(ValueError, match="batch shape"):
        plot(batched, np.zeros((5, 3)))
    with pytest.raises(TypeError, match="GMMParams"):
        plot(np.zeros((3, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="one per component"):
        plot(params, np.zeros((5, 3)), colors=["red", "blue"])
    with pytest.raises(ValueError, match="2 names"):
        plot(params, np.zeros((5, 3)), feature_names=["a", "b"])
    one_feature, _ = _random_params("full", d=1)
    with pytest.raises(ValueError, match="d=1"):
        plot(one_feature, np.zeros((5, 1)))


def test_uncertainty_rejects_bad_sizes():
    params, _ = _random_params("full")
    for sizes in [(10.0, 5.0), (0.0, 5.0), (1.0,), "big", (1.0, np.inf)]:
        with pytest.raises(ValueError, match="sizes must"):
            plot_uncertainty(params, np.zeros((5, 2)), sizes=sizes)


def test_pair_plot_shows_classification_and_uncertainty_of_the_whole_mixture():
    params, (weights, means, dense) = _random_params("full", k=3, d=4, seed=18)
    X = _overlapping_data(means, n=90)
    features = (3, 0, 1)
    figure = plot_pairs(params, X, features=features, points="uncertainty", sizes=(2.0, 50.0), n_grid=30, radii=(1,))
    axes = np.array(figure.axes).reshape(3, 3)
    responsibilities = _scipy_responsibilities(X, weights, means, dense)  # all 4 features, not the panel's 2
    uncertainty = 1.0 - responsibilities.max(axis=1)
    tab10 = matplotlib.colormaps["tab10"](np.arange(3))
    for i in range(3):
        for j in range(3):
            ax = axes[i, j]
            if i == j:  # the marginal density, then each component's share π_k N(x | μ_k, σ_k²) (scipy)
                total, *shares = ax.get_lines()
                assert len(shares) == 3
                f = features[i]
                for component, line in enumerate(shares):
                    expected = weights[component] * stats.norm(
                        means[component, f], np.sqrt(dense[component, f, f])
                    ).pdf(line.get_xdata())
                    np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-10)
                    np.testing.assert_array_equal(matplotlib.colors.to_rgba(line.get_color()), tab10[component])
                np.testing.assert_allclose(sum(line.get_ydata() for line in shares), total.get_ydata(), rtol=1e-10)
                continue
            points = _data_points(ax)
            np.testing.assert_array_equal(points.get_offsets(), X[:, [features[j], features[i]]])
            np.testing.assert_array_equal(points.get_facecolors()[:, :3], tab10[responsibilities.argmax(axis=1), :3])
            np.testing.assert_allclose(points.get_sizes(), 2.0 + 48.0 * uncertainty * 1.5, rtol=1e-9, atol=1e-9)
    classification = plot_pairs(params, X, features=features, points="classification", sizes=(5.0, 50.0), n_grid=30)
    np.testing.assert_array_equal(_data_points(classification.axes[1]).get_sizes(), 5.0)


def test_pair_plot_rejects_unknown_point_views():
    params, _ = _random_params("full", d=3)
    with pytest.raises(ValueError, match="points must be"):
        plot_pairs(params, np.zeros((4, 3)), points="labels")
    with pytest.raises(ValueError, match="needs the data X"):
        plot_pairs(params, points="uncertainty")
    with pytest.raises(ValueError, match="sizes must"):
        plot_pairs(params, np.zeros((4, 3)), sizes=(3.0, 1.0))


# ----------------------------------------------------------------------------- dimension reduction (MclustDR)


def test_dr_direction_of_two_components_with_one_covariance_is_fishers():
    """Shared Σ_w: M_II = 0, M = M_I Σ⁻¹ M_I with M_I = π1 π2 δδᵀ, so the one direction is Σ⁻¹δ ∝ Σ_w⁻¹δ
    with eigenvalue (π1 π2 δᵀΣ⁻¹δ)², Σ = Σ_w + π1 π2 δδᵀ the mixture's covariance."""
    rng = np.random.default_rng(19)
    within = random_spd(rng, 4)
    means = rng.normal(scale=2.0, size=(2, 4))
    weights = np.array([0.3, 0.7])
    params = GMMParams(weights, means, np.linalg.cholesky(within), "tied")
    directions = dr_directions(params)
    assert directions.basis.shape == (4, 1)
    delta = means[0] - means[1]
    product = weights[0] * weights[1]
    total = within + product * np.outer(delta, delta)
    fisher = np.linalg.solve(within, delta)
    fisher = fisher / np.linalg.norm(fisher) * np.sign(fisher[np.abs(fisher).argmax()])
    np.testing.assert_allclose(directions.basis[:, 0], fisher, atol=1e-10)
    q = delta @ np.linalg.solve(total, delta)
    np.testing.assert_allclose(directions.eigenvalues, [(product * q) ** 2], rtol=1e-10)
    np.testing.assert_allclose(directions.center, weights @ means, rtol=1e-12)


def test_dr_direction_of_equal_means_is_the_axis_where_the_spreads_differ():
    """Equal means, covariances that differ on feature 2 only: M_I = 0, M_II is nonzero at (2, 2) alone,
    l = Σ_k π_k (σ_k² − s̄)² / s̄² with s̄ = Σ_k π_k σ_k² (λ = 1/2)."""
    weights = np.array([0.2, 0.5, 0.3])
    variances = np.array([[1.0, 2.0, 0.5], [1.0, 2.0, 3.0], [1.0, 2.0, 8.0]])
    params = GMMParams(weights, np.zeros((3, 3)), np.sqrt(variances), "diag")
    directions = dr_directions(params)
    np.testing.assert_allclose(directions.basis, [[0.0], [0.0], [1.0]], atol=1e-12)
    pooled = weights @ variances[:, 2]
    np.testing.assert_allclose(directions.eigenvalues, [weights @ (variances[:, 2] - pooled) ** 2 / pooled**2])
    centred = np.random.default_rng(20).normal(size=(30, 3))
    centred -= centred.mean(axis=0)  # the data's mean is the components': M_I = 0
    with pytest.raises(ValueError, match="no direction"):  # so the means' part alone sees nothing
        plot_directions(params, centred, mixing=1.0)


def test_dr_directions_from_data_solve_the_generalised_eigenproblem():
    params, (weights, means, dense) = _random_params("full", k=3, d=4, seed=21)
    X = _overlapping_data(means, n=200)
    center, total = X.mean(axis=0), np.cov(X, rowvar=False, bias=True)
    pooled = np.einsum("k,kij->ij", weights, dense)
    between = sum(w * np.outer(m - center, m - center) for w, m in zip(weights, means))
    inverse = np.linalg.inv(total)
    spread = sum(w * (c - pooled) @ inverse @ (c - pooled) for w, c in zip(weights, dense))
    for mixing in (0.5, 0.2):
        kernel = 2 * mixing * between @ inverse @ between + 2 * (1 - mixing) * spread
        directions = dr_directions(params, X, mixing=mixing)
        np.testing.assert_allclose(directions.center, center, rtol=1e-12)
        basis, eigenvalues = directions.basis, directions.eigenvalues
        assert basis.shape == (4, 4) and np.all(np.diff(eigenvalues) <= 0) and eigenvalues[-1] > 0
        np.testing.assert_allclose(kernel @ basis, total @ basis * eigenvalues, atol=1e-9 * np.abs(kernel).max())
        np.testing.assert_allclose(np.linalg.norm(basis, axis=0), 1.0, rtol=1e-12)
        gram = basis.T @ total @ basis  # Σ-orthogonal
        np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0.0, atol=1e-9)
        # the eigenvalues are those of Σ⁻¹ M (numpy's general solver on the explicit product)
        np.testing.assert_allclose(eigenvalues, np.sort(np.linalg.eigvals(inverse @ kernel).real)[::-1], rtol=1e-8)


def test_dr_directions_reject_wrong_input():
    params, _ = _random_params("full", d=3)
    with pytest.raises(ValueError, match="mixing"):
        dr_directions(params, mixing=1.5)
    with pytest.raises(ValueError, match="singular"):
        dr_directions(params, np.ones((10, 3)))
    with pytest.raises(ValueError, match="X has 2 columns"):
        dr_directions(params, np.zeros((10, 2)))
    with pytest.raises(ValueError, match="needs the data X"):
        plot_directions(params, None)


def test_direction_plot_projects_the_data_and_the_components_exactly():
    params, (weights, means, dense) = _random_params("full", k=3, d=4, seed=22)
    X = _overlapping_data(means, n=100)
    figure = plot_directions(params, X, n_directions=3, sizes=(2.0, 50.0), n_grid=30, radii=(1,))
    basis = dr_directions(params, X).basis[:, :3]
    Z = (X - X.mean(axis=0)) @ basis
    axes = np.array(figure.axes).reshape(3, 3)
    assert [ax.get_xlabel() for ax in axes[-1]] == ["Dir1", "Dir2", "Dir3"]
    responsibilities = _scipy_responsibilities(X, weights, means, dense)  # the whole 4-feature mixture
    uncertainty = 1.0 - responsibilities.max(axis=1)
    tab10 = matplotlib.colormaps["tab10"](np.arange(3))
    for i, j in [(0, 1), (2, 0), (1, 2)]:
        ax = axes[i, j]
        points = _data_points(ax)
        np.testing.assert_allclose(points.get_offsets(), Z[:, [j, i]], rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(points.get_facecolors()[:, :3], tab10[responsibilities.argmax(axis=1), :3])
        np.testing.assert_allclose(points.get_sizes(), 2.0 + 48.0 * uncertainty * 1.5, rtol=1e-9, atol=1e-9)
        # each ellipse: radius 1 for the component's projection N((μ − x̄) B, Bᵀ Σ B) on directions (j, i)
        panel = basis[:, [j, i]]
        for component, outline in enumerate(_collection(ax, "1-sd").get_segments()):
            mean = (means[component] - X.mean(axis=0)) @ panel
            covariance = panel.T @ dense[component] @ panel
            np.testing.assert_allclose(_mahalanobis_sq(outline, mean, covariance), 1.0, rtol=1e-8)
    with pytest.raises(ValueError, match="points must be"):
        plot_directions(params, X, points="labels")
