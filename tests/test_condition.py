"""Conditioning and mixture regression: ``GMMParams.condition``, ``predict_mean``, ``predict_cov``
and their ``Posterior`` versions, against closed forms, ``scipy.stats`` and the ``gmr`` package.

References: a two-component mixture in two dimensions worked by hand (scalar formulas with
``math``); one Gaussian in five dimensions against the textbook formulas in ``numpy.linalg`` and
against the ratio of ``scipy.stats.multivariate_normal`` densities (joint over marginal); gmr's
``GMM.condition`` and ``GMM.predict`` on the same parameters. All in float64 on well-conditioned
covariances (condition numbers below ~50), so the round-off is ~1e-14 and the tolerances
(1e-10) leave four orders of magnitude of margin while catching any wrong term.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from bayesgmm import GMMParams, Posterior
from bayesgmm._errors import ArgumentTypeError
from bayesgmm.covariance import get_structure
from tests._references import COVARIANCE_TYPES, covariances_in_layout, random_spd

RTOL = 1e-10


def _random_params(covariance_type="full", *, k=3, d=4, seed=0):
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(k))
    means = rng.normal(scale=2.0, size=(k, d))
    covariances = covariances_in_layout(np.stack([random_spd(rng, d) for _ in range(k)]), covariance_type)
    return GMMParams.from_covariances(weights, means, covariances, covariance_type)


def _textbook(weights, means, covariances, given, values):
    """The conditional mixture by numpy.linalg on dense (k, d, d) covariances: weights (n, k),
    means (n, k, o), covariances (k, o, o)."""
    d = means.shape[1]
    other = [j for j in range(d) if j not in given]
    log_weights, conditional_means, conditional_covariances = [], [], []
    for weight, mean, cov in zip(weights, means, covariances):
        gg, go, oo = cov[np.ix_(given, given)], cov[np.ix_(given, other)], cov[np.ix_(other, other)]
        marginal = stats.multivariate_normal(mean[given], gg)
        log_weights.append(np.log(weight) + marginal.logpdf(values).reshape(-1))
        conditional_means.append(mean[other] + np.linalg.solve(gg, (values - mean[given]).T).T @ go)
        conditional_covariances.append(oo - go.T @ np.linalg.solve(gg, go))
    log_weights = np.stack(log_weights, axis=1)
    weights = np.exp(log_weights - log_weights.max(axis=1, keepdims=True))
    return (
        weights / weights.sum(axis=1, keepdims=True),
        np.stack(conditional_means, 1),
        np.stack(conditional_covariances),
    )


# ----------------------------------------------------------------------------- closed forms


def _normal_pdf(x, mean, variance):
    return math.exp(-0.5 * (x - mean) ** 2 / variance) / math.sqrt(2 * math.pi * variance)


def test_two_components_by_hand():
    """weights (0.3, 0.7), means (0, 0) and (2, 1), covariances [[1, .5], [.5, 2]] and [[4, −1], [−1, 1]]."""
    params = GMMParams.from_covariances(
        [0.3, 0.7], [[0.0, 0.0], [2.0, 1.0]], [[[1.0, 0.5], [0.5, 2.0]], [[4.0, -1.0], [-1.0, 1.0]]]
    )
    # given x0 = 1: component 1 has mean 0 + (0.5 / 1)(1 − 0) = 0.5, variance 2 − 0.5² / 1 = 1.75;
    # component 2 has mean 1 + (−1 / 4)(1 − 2) = 1.25, variance 1 − (−1)² / 4 = 0.75
    w1, w2 = 0.3 * _normal_pdf(1.0, 0.0, 1.0), 0.7 * _normal_pdf(1.0, 2.0, 4.0)
    w1, w2 = w1 / (w1 + w2), w2 / (w1 + w2)
    conditional = params.condition([0], [1.0])
    assert conditional.batch_shape == () and conditional.n_features == 1 and conditional.covariance_type == "full"
    np.testing.assert_allclose(conditional.weights, [w1, w2], rtol=RTOL)
    np.testing.assert_allclose(conditional.means[:, 0], [0.5, 1.25], rtol=RTOL)
    np.testing.assert_allclose(conditional.covariances[:, 0, 0], [1.75, 0.75], rtol=RTOL)
    mean = w1 * 0.5 + w2 * 1.25
    variance = w1 * (1.75 + 0.5**2) + w2 * (0.75 + 1.25**2) - mean**2  # E[x²] − E[x]²
    np.testing.assert_allclose(params.predict_mean([[1.0]], [0]), [[mean]], rtol=RTOL)
    np.testing.assert_allclose(params.predict_cov([[1.0]], [0]), [[[variance]]], rtol=RTOL)

    # given x1 = −1 (the second coordinate): means 0 + (0.5 / 2)(−1) = −0.25 and 2 + (−1)(−1 − 1) = 4,
    # variances 1 − 0.25 / 2 = 0.875 and 4 − 1 = 3
    w1, w2 = 0.3 * _normal_pdf(-1.0, 0.0, 2.0), 0.7 * _normal_pdf(-1.0, 1.0, 1.0)
    w1, w2 = w1 / (w1 + w2), w2 / (w1 + w2)
    conditional = params.condition([1], [[-1.0]])
    assert conditional.batch_shape == (1,)
    np.testing.assert_allclose(conditional.weights[0], [w1, w2], rtol=RTOL)
    np.testing.assert_allclose(conditional.means[0, :, 0], [-0.25, 4.0], rtol=RTOL)
    np.testing.assert_allclose(conditional.covariances[0, :, 0, 0], [0.875, 3.0], rtol=RTOL)


@pytest.mark.parametrize("given", [[0], [3, 0], [1, 2, 4]])
def test_one_gaussian_matches_numpy_and_the_scipy_density_ratio(given):
    """One component: the textbook formulas (numpy.linalg), and log N(x_o | x_g) = log N(x) − log N(x_g) by scipy."""
    rng = np.random.default_rng(1)
    d = 5
    mean, cov = rng.normal(size=d), random_spd(rng, d)
    params = GMMParams.from_covariances([1.0], mean[None], cov[None])
    other = [j for j in range(d) if j not in given]
    values = rng.normal(size=(6, len(given)))
    conditional = params.condition(given, values)
    assert (
        conditional.batch_shape == (6,) and conditional.n_components == 1 and conditional.n_features == d - len(given)
    )
    _, means, covariances = _textbook([1.0], mean[None], cov[None], given, values)
    np.testing.assert_allclose(conditional.means, means, rtol=RTOL)
    np.testing.assert_allclose(
        conditional.covariances, np.broadcast_to(covariances, (6, 1) + covariances.shape[1:]), rtol=RTOL
    )
    np.testing.assert_allclose(params.predict_mean(values, given), means[:, 0], rtol=RTOL)
    np.testing.assert_allclose(
        params.predict_cov(values, given), np.broadcast_to(covariances[0], (6,) + covariances.shape[1:]), rtol=RTOL
    )

    # the conditional's density of points x_o, against scipy's joint density over marginal density
    points = rng.normal(size=(6, len(other)))
    joint = np.empty((6, d))
    joint[:, given], joint[:, other] = values, points
    expected = stats.multivariate_normal(mean, cov).logpdf(joint) - stats.multivariate_normal(
        mean[given], cov[np.ix_(given, given)]
    ).logpdf(values).reshape(-1)
    log_prob = jax.vmap(lambda p, x: p.log_prob(x[None])[0])(conditional, jnp.asarray(points))
    np.testing.assert_allclose(log_prob, expected, rtol=RTOL)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES + ("EEE", "VVI", "VEV", "EII"))
def test_every_covariance_type_against_the_textbook_and_its_result_type(covariance_type):
    """Each type against the dense textbook conditional; the result keeps full, tied, diag and spherical
    (under their scikit-learn names) and is full for mclust's constrained models."""
    base = _random_params("full", seed=2)
    dense = np.asarray(base.covariance_matrices)
    name = get_structure(covariance_type).name  # "tied" for "EEE"
    # mclust's other models store full (k, d, d) matrices; these need not meet the model's constraints here
    layout = covariances_in_layout(dense, name) if name in COVARIANCE_TYPES else dense
    params = GMMParams.from_covariances(base.weights, base.means, layout, covariance_type)
    given, values = [2, 0], np.random.default_rng(3).normal(scale=2.0, size=(5, 2))
    weights, means, covariances = _textbook(
        np.asarray(params.weights), np.asarray(params.means), np.asarray(params.covariance_matrices), given, values
    )
    conditional = params.condition(given, values)
    expected_type = {"EEE": "tied", "VVI": "diag", "VEV": "full", "EII": "full"}.get(covariance_type, covariance_type)
    assert conditional.covariance_type == expected_type
    np.testing.assert_allclose(conditional.weights, weights, rtol=RTOL)
    np.testing.assert_allclose(conditional.means, means, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(
        conditional.covariance_matrices, np.broadcast_to(covariances, (5,) + covariances.shape), rtol=RTOL, atol=1e-12
    )


def test_predictions_are_the_conditional_mixtures_moments_and_impute_agrees():
    """predict_mean and predict_cov: the mean and the law of total covariance of ``condition``'s mixture
    (computed in NumPy), and predict_mean equals ``impute`` on rows with NaN at the other coordinates."""
    params = _random_params("full", k=3, d=4, seed=4)
    given, values = [1, 3], np.random.default_rng(5).normal(scale=2.0, size=(7, 2))
    conditional = params.condition(given, values)
    w, m, c = (np.asarray(a) for a in (conditional.weights, conditional.means, conditional.covariance_matrices))
    mean = np.einsum("nk,nko->no", w, m)
    second = np.einsum("nk,nkop->nop", w, c + m[..., :, None] * m[..., None, :])
    np.testing.assert_allclose(params.predict_mean(values, given), mean, rtol=RTOL)
    np.testing.assert_allclose(
        params.predict_cov(values, given), second - mean[:, :, None] * mean[:, None, :], rtol=1e-9, atol=1e-12
    )
    rows = np.full((7, 4), np.nan)
    rows[:, given] = values
    np.testing.assert_allclose(
        params.predict_mean(values, given), np.asarray(params.impute(rows))[:, [0, 2]], rtol=RTOL
    )


# ----------------------------------------------------------------------------- gmr


def test_matches_the_gmr_package():
    gmr = pytest.importorskip("gmr")
    params = _random_params("full", k=3, d=3, seed=6)
    reference = gmr.GMM(
        n_components=3,
        priors=np.asarray(params.weights),
        means=np.asarray(params.means),
        covariances=np.asarray(params.covariance_matrices),
    )
    values = np.random.default_rng(7).normal(scale=2.0, size=(9, 2))
    given = [0, 2]
    np.testing.assert_allclose(
        params.predict_mean(values, given), reference.predict(np.array(given), values), rtol=1e-9
    )
    expected = reference.condition(np.array(given), values[4])
    conditional = params.condition(given, values[4])
    np.testing.assert_allclose(conditional.weights, expected.priors, rtol=1e-9)
    np.testing.assert_allclose(conditional.means, expected.means, rtol=1e-9)
    np.testing.assert_allclose(conditional.covariances, expected.covariances, rtol=1e-9)


# ----------------------------------------------------------------------------- batches, posteriors, jit


def _batched(covariance_type, batch_shape=(2, 3), k=2, d=3):
    """Parameters with leading (chain, draw)-like batch axes, and the list of their unbatched draws."""
    draws = [_random_params(covariance_type, k=k, d=d, seed=10 + s) for s in range(math.prod(batch_shape))]
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves).reshape(batch_shape + leaves[0].shape), *draws)
    return stacked, draws


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_batched_params_condition_each_draw(covariance_type):
    params, draws = _batched(covariance_type)
    values = np.random.default_rng(8).normal(size=(4, 1))
    conditional = params.condition([1], values)
    assert conditional.batch_shape == (2, 3, 4) and conditional.covariance_type == covariance_type
    assert params.predict_mean(values, [1]).shape == (2, 3, 4, 2)
    assert params.predict_cov(values, [1]).shape == (2, 3, 4, 2, 2)
    flat = jax.tree.map(lambda leaf: leaf.reshape((6,) + leaf.shape[2:]), conditional)
    for s, draw in enumerate(draws):
        one = draw.condition([1], values)
        for name in ("weights", "means", "scale"):
            np.testing.assert_allclose(getattr(flat, name)[s], getattr(one, name), rtol=RTOL)
        np.testing.assert_allclose(
            params.predict_mean(values, [1]).reshape(6, 4, 2)[s], draw.predict_mean(values, [1]), rtol=RTOL
        )


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag"])
def test_posterior_conditions_its_predictive_mixture(covariance_type):
    """Posterior.predict_mean: the draws' regression means weighted by p(x_g | θ_s) (scipy marginals);
    predictive_mixture has Posterior.log_prob's density; tied draws pool to a full mixture."""
    params, draws = _batched(covariance_type)
    posterior = Posterior(
        params=params,
        log_likelihood=None,
        method="nuts",
        reference=draws[0],
        sample_stats={},
        permutations=None,
        X=None,
        feature_names=["a", "b", "c"],
        priors=None,
    )
    rows = np.random.default_rng(9).normal(scale=2.0, size=(5, 3))
    pooled = posterior.predictive_mixture()
    assert pooled.n_components == 12 and pooled.covariance_type == (
        "full" if covariance_type == "tied" else covariance_type
    )
    np.testing.assert_allclose(pooled.log_prob(rows), posterior.log_prob(rows), rtol=RTOL)

    given, values = [2], rows[:, [2]]
    marginal = np.stack(
        [
            sum(
                w * stats.norm(m[2], math.sqrt(c[2, 2])).pdf(values[:, 0])
                for w, m, c in zip(
                    np.asarray(draw.weights), np.asarray(draw.means), np.asarray(draw.covariance_matrices)
                )
            )
            for draw in draws
        ]
    )  # (S, n): p(x_g | θ_s)
    draw_weights = marginal / marginal.sum(axis=0)
    per_draw_means = np.stack([np.asarray(draw.predict_mean(values, given)) for draw in draws])  # (S, n, 2)
    expected_mean = np.einsum("sn,sno->no", draw_weights, per_draw_means)
    np.testing.assert_allclose(posterior.predict_mean(values, given), expected_mean, rtol=RTOL)
    per_draw_covs = np.stack([np.asarray(draw.predict_cov(values, given)) for draw in draws])
    spread = per_draw_means - expected_mean
    expected_cov = np.einsum("sn,snop->nop", draw_weights, per_draw_covs + spread[..., :, None] * spread[..., None, :])
    np.testing.assert_allclose(posterior.predict_cov(values, given), expected_cov, rtol=1e-9, atol=1e-12)
    conditional = posterior.condition(given, values)
    assert conditional.batch_shape == (5,) and conditional.n_components == 12


def test_jit_and_vmap_give_the_same_conditional():
    params = _random_params("full", seed=11)
    values = jnp.asarray(np.random.default_rng(12).normal(size=(3, 2)))
    eager = params.condition([0, 1], values)
    jitted = jax.jit(lambda p, v: p.condition([0, 1], v))(params, values)
    mapped = jax.vmap(lambda v: params.condition([0, 1], v))(values)  # one 1-D row per call
    for name in ("weights", "means", "scale"):
        np.testing.assert_allclose(getattr(jitted, name), getattr(eager, name), rtol=RTOL)
        np.testing.assert_allclose(getattr(mapped, name), getattr(eager, name), rtol=RTOL)
    mean = jax.jit(lambda p, x: p.predict_mean(x, [0, 1]))(params, values)
    np.testing.assert_allclose(mean, params.predict_mean(values, [0, 1]), rtol=RTOL)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "given, values, error, message",
    [
        ([3], [[0.0]], ValueError, r"given has index 3, but the mixture has 3 features: use indices 0 to 2"),
        ([-1], [[0.0]], ValueError, r"negative indices are not accepted"),
        ([0, 0], [[0.0, 0.0]], ValueError, r"given names feature 0 more than once"),
        ([0, 1, 2], [[0.0, 0.0, 0.0]], ValueError, r"given names all 3 features, leaving nothing to predict"),
        ([], np.zeros((1, 0)), ValueError, r"given is empty"),
        ([0.5], [[0.0]], ArgumentTypeError, r"given must be a list of feature indices \(ints\)"),
        ("0", [[0.0]], ArgumentTypeError, r"given must be a list of feature indices"),
        ([True], [[0.0]], ArgumentTypeError, r"given must be a list of feature indices"),
        ([0, 1], [[0.0]], ValueError, r"values has 1 column\(s\) but 2 coordinate\(s\) are given"),
        ([0], [0.0, 1.0], ValueError, r"values has shape \(2,\).*values.reshape\(-1, 1\)"),
        ([0], np.zeros((2, 1, 1)), ValueError, r"values must have shape \(n, 1\) or \(1,\)"),
        ([0], [[np.nan]], ValueError, r"values contains NaN in 1 row\(s\) \(first: row 0\); conditioning needs"),
        ([0], [["a"]], ArgumentTypeError, r"values has dtype <U1; it must be numeric"),
    ],
)
def test_bad_input_says_what_to_change(given, values, error, message):
    params = _random_params("full", d=3)
    with pytest.raises(error, match=message):
        params.condition(given, values)


def test_predict_wants_2d_rows_of_the_given_coordinates():
    params = _random_params("full", d=3)
    with pytest.raises(
        ValueError, match=r"X must have shape \(n, 1\).*for one given coordinate use X.reshape\(-1, 1\)"
    ):
        params.predict_mean([0.0, 1.0], [0])
    with pytest.raises(ValueError, match=r"X has 3 column\(s\) but 1 coordinate\(s\) are given.*X\[:, given\]"):
        params.predict_cov(np.zeros((4, 3)), [0])
    with pytest.raises(ValueError, match=r"given has index 7"):
        params.predict_mean(np.zeros((4, 1)), [7])
