"""Laws of the covariance table (``bayesgmm.covariance``), one row per structure.

Every law compares a table entry with an independent computation in NumPy, SciPy or
scikit-learn on dense ``(k, d, d)`` matrices, in float64 (the conftest enables x64), on random
well-conditioned parameters from a fixed seed. Condition numbers stay below ~50 and values
O(10), so float64 round-off is ~1e-13: the tolerances (1e-10, 1e-12 for round trips) leave
orders of magnitude of margin and still catch any wrong term.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from sklearn.mixture import GaussianMixture
from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky

from bayesgmm.covariance import COVARIANCE_TYPES, get_structure, raw_coefficients, whitened_log_joint
from tests._references import covariances_in_layout, full_covariances, random_spd

K, D, N_ROWS = 3, 4, 11
PERMUTATION = np.array([2, 0, 1])


class Case(NamedTuple):
    covariances: np.ndarray  # scikit-learn's layout for the type
    dense: np.ndarray  # (k, d, d)
    means: np.ndarray  # (k, d)
    weights: np.ndarray  # (k,)
    x: np.ndarray  # (c, d)
    resp: np.ndarray  # (k, c), positive, not normalised


def _case(covariance_type, seed=0) -> Case:
    rng = np.random.default_rng(seed)
    covariances = covariances_in_layout(np.stack([random_spd(rng, D) for _ in range(K)]), covariance_type)
    return Case(
        covariances=covariances,
        dense=full_covariances(covariances, covariance_type, K, D),
        means=rng.normal(scale=2.0, size=(K, D)),
        weights=rng.dirichlet(np.ones(K)),
        x=rng.normal(scale=3.0, size=(N_ROWS, D)),
        resp=rng.uniform(0.05, 1.0, size=(K, N_ROWS)),
    )


def _random_scale(covariance_type, seed=1):
    """A Cholesky factor in the type's layout, drawn directly (lower, positive diagonal)."""
    rng = np.random.default_rng(seed)
    shape = get_structure(covariance_type).core.scale_shape(K, D)
    if covariance_type in ("full", "tied"):
        lower = np.tril(rng.normal(scale=0.3, size=shape), k=-1)
        return lower + np.eye(D) * rng.uniform(0.5, 2.0, size=shape[:-1])[..., None, :]
    return rng.uniform(0.5, 2.0, size=shape)


def _second_in_layout(dense, covariance_type):
    """Dense per-component second moments (k, d, d) reduced to the type's layout, in NumPy."""
    if covariance_type == "full":
        return dense
    if covariance_type == "tied":
        return dense.sum(axis=0)
    diagonals = np.diagonal(dense, axis1=-2, axis2=-1)
    return diagonals if covariance_type == "diag" else diagonals.sum(axis=-1)


def _dense_from_layout(layout, covariance_type):
    return full_covariances(np.asarray(layout), covariance_type, K, D)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_covariances_round_trip(covariance_type):
    """covariances(from_covariances(C)) == C, from_covariances(covariances(L)) == L, against NumPy's factors."""
    core = get_structure(covariance_type).core
    case = _case(covariance_type)
    scale = core.from_covariances(jnp.asarray(case.covariances))
    np.testing.assert_allclose(core.covariances(scale), case.covariances, rtol=1e-12)
    matrices = covariance_type in ("full", "tied")
    expected_scale = np.linalg.cholesky(case.covariances) if matrices else np.sqrt(case.covariances)
    np.testing.assert_allclose(scale, expected_scale, rtol=1e-12, atol=1e-12)

    factor = _random_scale(covariance_type)
    covariances = core.covariances(jnp.asarray(factor))
    if covariance_type in ("full", "tied"):
        np.testing.assert_allclose(covariances, factor @ np.swapaxes(factor, -1, -2), rtol=1e-12)
    else:
        np.testing.assert_allclose(covariances, factor**2, rtol=1e-12)
    np.testing.assert_allclose(core.from_covariances(covariances), factor, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_dense_covariances_and_precisions(covariance_type):
    """covariance_matrices, precisions and precisions_cholesky against NumPy inverses and scikit-learn."""
    core = get_structure(covariance_type).core
    case = _case(covariance_type)
    scale = core.from_covariances(jnp.asarray(case.covariances))
    np.testing.assert_allclose(core.covariance_matrices(scale, K, D), case.dense, rtol=1e-12)

    precisions = np.asarray(core.precisions(scale))
    np.testing.assert_allclose(_dense_from_layout(precisions, covariance_type), np.linalg.inv(case.dense), rtol=1e-10)

    precisions_cholesky = np.asarray(core.precisions_cholesky(scale))
    expected = _compute_precision_cholesky(case.covariances, covariance_type)
    np.testing.assert_allclose(precisions_cholesky, expected, rtol=1e-10)
    if covariance_type in ("full", "tied"):  # P = U Uᵀ with U upper triangular
        np.testing.assert_array_equal(np.tril(precisions_cholesky, k=-1), 0.0)
        gram = precisions_cholesky @ np.swapaxes(precisions_cholesky, -1, -2)
        np.testing.assert_allclose(gram, np.linalg.inv(case.covariances), rtol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_layout_from_matrices_inverts_covariance_matrices(covariance_type):
    """layout_from_matrices(covariance_matrices(L)) == covariances(L): the dense matrices back in the type's layout."""
    core = get_structure(covariance_type).core
    scale = jnp.asarray(_random_scale(covariance_type))
    dense = core.covariance_matrices(scale, K, D)
    np.testing.assert_allclose(core.layout_from_matrices(dense), core.covariances(scale), rtol=1e-12)
    np.testing.assert_allclose(core.layout_from_matrices(np.asarray(dense)), core.covariances(scale), rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_second_moments_whitened_raw_and_dense_agree(covariance_type):
    """Σ r (x−μ)(x−μ)ᵀ in the type's layout by the whitened, raw and dense routes, against NumPy."""
    structure = get_structure(covariance_type)
    core, em = structure.core, structure.em
    case = _case(covariance_type)
    scale = core.from_covariances(jnp.asarray(case.covariances))
    x, shift, resp = case.x, case.means, case.resp
    centred = x[None, :, :] - shift[:, None, :]  # (k, c, d)
    dense = np.einsum("kc,kci,kcj->kij", resp, centred, centred)
    expected = _second_in_layout(dense, covariance_type)
    expected_first = np.einsum("kc,kcd->kd", resp, centred)

    # (a) whitened about the shift, mapped back
    y = core.whiten(jnp.asarray(x), jnp.asarray(shift), core.inverse_scale(scale))
    assert y.shape == (K, D, N_ROWS)
    second_w = em.second_moment(jnp.asarray(resp), y, jnp.sum(y * y, axis=1))
    first_w = jnp.einsum("kc,kdc->kd", resp, y)
    first, second = em.unwhiten(first_w, second_w, scale)
    np.testing.assert_allclose(first, expected_first, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(second, expected, rtol=1e-10, atol=1e-10)

    # (b) raw features about the origin, shifted by Σ r (x−μ)(x−μ)ᵀ = Σ r x xᵀ − m μᵀ − μ mᵀ + N μ μᵀ
    about_origin = em.second_from_raw(jnp.asarray(resp) @ em.raw_features(jnp.asarray(x)))
    counts, sums = resp.sum(axis=1), resp @ x
    cross = sums[:, :, None] * shift[:, None, :]
    correction = -cross - np.swapaxes(cross, -1, -2) + counts[:, None, None] * shift[:, :, None] * shift[:, None, :]
    shifted = np.asarray(about_origin) + _second_in_layout(correction, covariance_type)
    np.testing.assert_allclose(shifted, expected, rtol=1e-10, atol=1e-10)

    # (c) dense per-component moments reduced to the layout
    np.testing.assert_allclose(em.second_from_full(jnp.asarray(dense)), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("use_jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_density_whitened_and_raw_match_scipy(covariance_type, use_jit):
    """whitened_log_joint and raw_coefficients, minus log weights, equal scipy's logpdf per component."""
    structure = get_structure(covariance_type)
    case = _case(covariance_type)
    expected = np.stack(
        [stats.multivariate_normal(mean, covariance).logpdf(case.x) for mean, covariance in zip(case.means, case.dense)]
    )  # (k, c)
    log_weights = jnp.log(jnp.asarray(case.weights))

    def both_routes(covariances, means, x):
        scale = structure.core.from_covariances(covariances)
        inverse = structure.core.inverse_scale(scale)
        half_log_det = structure.core.half_log_det(scale, D)
        whitened, _, _ = whitened_log_joint(structure, log_weights, means, inverse, half_log_det, x)
        coefficients, offsets = raw_coefficients(structure, log_weights, means, inverse, half_log_det)
        features = jnp.concatenate([x, structure.em.raw_features(x)], axis=1)
        return whitened, (features @ coefficients + offsets).T, half_log_det

    route = jax.jit(both_routes) if use_jit else both_routes
    whitened, raw, half_log_det = route(jnp.asarray(case.covariances), jnp.asarray(case.means), jnp.asarray(case.x))
    np.testing.assert_allclose(whitened - log_weights[:, None], expected, rtol=1e-10)
    np.testing.assert_allclose(raw - log_weights[:, None], expected, rtol=1e-10)
    expected_half_log_det = 0.5 * np.linalg.slogdet(case.dense)[1]
    np.testing.assert_allclose(jnp.broadcast_to(half_log_det, (K,)), expected_half_log_det, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_split_and_assemble_scale_round_trip(covariance_type):
    """split_scale inverts assemble_scale; the parts are NumPy's standard deviations and correlations."""
    prior, core = get_structure(covariance_type).prior, get_structure(covariance_type).core
    rng = np.random.default_rng(3)
    std = rng.uniform(0.5, 2.0, size=prior.std_shape(K, D))
    batch = prior.correlation_batch(K)
    if batch is None:
        correlation = None
    else:
        spd = np.stack([random_spd(rng, D) for _ in range(int(np.prod(batch, dtype=int)))]).reshape(batch + (D, D))
        root = np.sqrt(np.diagonal(spd, axis1=-2, axis2=-1))
        correlation = np.linalg.cholesky(spd / (root[..., :, None] * root[..., None, :]))
    scale = prior.assemble_scale(jnp.asarray(std), None if correlation is None else jnp.asarray(correlation))
    assert scale.shape == core.scale_shape(K, D)

    dense = np.asarray(core.covariance_matrices(scale, K, D))
    if correlation is None:
        std_per_feature = np.broadcast_to(std.reshape(std.shape + (1,) * (2 - std.ndim)), (K, D))
        np.testing.assert_allclose(np.diagonal(dense, axis1=-2, axis2=-1), std_per_feature**2, rtol=1e-12)
    else:  # Σ = diag(σ) R diag(σ)
        corr_matrix = correlation @ np.swapaxes(correlation, -1, -2)
        expected = std[..., :, None] * corr_matrix * std[..., None, :]
        np.testing.assert_allclose(dense, np.broadcast_to(expected, (K, D, D)), rtol=1e-12)

    std_back, correlation_back = prior.split_scale(scale)
    np.testing.assert_allclose(std_back, std, rtol=1e-12)
    if correlation is None:
        assert correlation_back is None
    else:
        np.testing.assert_allclose(correlation_back, correlation, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_permute_and_colour(covariance_type):
    """permute reorders the dense covariance matrices; colour applies each row's NumPy Cholesky factor."""
    core = get_structure(covariance_type).core
    case = _case(covariance_type)
    scale = core.from_covariances(jnp.asarray(case.covariances))
    permuted = core.permute(scale, jnp.asarray(PERMUTATION))
    np.testing.assert_allclose(core.covariance_matrices(permuted, K, D), case.dense[PERMUTATION], rtol=1e-12)

    rng = np.random.default_rng(4)
    labels = rng.integers(0, K, size=7)
    noise = rng.normal(size=(7, D))
    expected = np.einsum("nij,nj->ni", np.linalg.cholesky(case.dense)[labels], noise)
    coloured = core.colour(scale, jnp.asarray(labels), jnp.asarray(noise))
    np.testing.assert_allclose(coloured, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_identity_layout_validity_and_reset(covariance_type):
    """identity_scale, layout_from_full, component_valid and reset_components on dense expectations."""
    core = get_structure(covariance_type).core
    case = _case(covariance_type)
    identity = core.identity_scale(K, D, jnp.float64)
    np.testing.assert_array_equal(core.covariance_matrices(identity, K, D), np.broadcast_to(np.eye(D), (K, D, D)))

    one = random_spd(np.random.default_rng(5), D)
    if covariance_type in ("full", "tied"):
        expected = one
    elif covariance_type == "diag":
        expected = np.diag(np.diag(one))
    else:
        expected = np.mean(np.diag(one)) * np.eye(D)
    spread = core.from_covariances(core.layout_from_full(jnp.asarray(one), K))
    np.testing.assert_allclose(core.covariance_matrices(spread, K, D), np.broadcast_to(expected, (K, D, D)), rtol=1e-12)

    scale = core.from_covariances(jnp.asarray(case.covariances))
    assert np.all(core.component_valid(scale, K))
    broken = np.array(scale)
    if covariance_type == "tied":
        broken[0, 0] = np.nan
        expected_valid = np.zeros(K, bool)
    else:
        broken[1] = np.nan
        expected_valid = np.array([True, False, True])
    np.testing.assert_array_equal(core.component_valid(jnp.asarray(broken), K), expected_valid)

    mask = np.array([True, False, True])
    reset = core.covariance_matrices(core.reset_components(jnp.asarray(mask), identity, scale), K, D)
    if covariance_type == "tied":  # the shared factor changes only when every component asks
        expected_reset = case.dense
        np.testing.assert_array_equal(
            core.covariance_matrices(core.reset_components(jnp.ones(K, bool), identity, scale), K, D),
            np.broadcast_to(np.eye(D), (K, D, D)),
        )
    else:
        expected_reset = np.where(mask[:, None, None], np.eye(D), case.dense)
    np.testing.assert_allclose(reset, expected_reset, rtol=1e-12)


@pytest.mark.parametrize("k, d", [(1, 1), (3, 4), (5, 2)])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_n_parameters_matches_sklearn(covariance_type, k, d):
    """The covariances' free parameters: scikit-learn's count less the means and the weights."""
    model = GaussianMixture(k, covariance_type=covariance_type)
    model.means_ = np.zeros((k, d))
    expected = model._n_parameters() - k * d - (k - 1)
    assert get_structure(covariance_type).core.n_parameters(k, d) == expected
