"""Property-based tests (hypothesis): EM's invariants, densities against scipy, exact save/load.

em_fit compiles once per (n, d, k, covariance_type, static options), about 1-4 s on a 2-core
CPU, so every em_fit here uses the same fixed shapes and options (``_EM_OPTIONS``) and
always passes all three initial parameters: the monotonicity, row-order and affine tests
share one compiled program per covariance type, and hypothesis varies only values (data,
seeds, initial points, permutations, transforms), never shapes.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats
from scipy.special import logsumexp

import bayesgmm
from bayesgmm import GMMParams
from bayesgmm.covariance import get_structure
from tests._references import COVARIANCE_TYPES, covariances_in_layout

N, D, K = 120, 2, 3  # the one em_fit shape: three clusters of 40 points in the plane
MAX_ITER = 30
# tol=0 runs exactly MAX_ITER iterations: no stopping decision that round-off could flip
# between two fits that should agree, so n_iter and the whole history are comparable.
_EM_OPTIONS = dict(max_iter=MAX_ITER, tol=0.0, chunk_size=32)  # 32: four chunks, the last one padded
_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])

seeds = st.integers(0, 2**32 - 1)


# ----------------------------------------------------------------------------- em_fit


def _separated_mixture(seed, separation):
    """Three clusters of N/K points with random SPD covariances (eigenvalues 0.25..4) around
    means ``separation`` apart; exact counts so that no component is starved."""
    rng = np.random.default_rng(seed)
    angles = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(K) / K
    centres = separation * np.column_stack([np.cos(angles), np.sin(angles)])
    labels = np.repeat(np.arange(K), N // K)
    rotations = [np.linalg.qr(rng.normal(size=(D, D)))[0] for _ in range(K)]
    stds = rng.uniform(0.5, 2.0, size=(K, D))
    chol = np.stack([q * s for q, s in zip(rotations, stds)])
    X = centres[labels] + np.einsum("nij,nj->ni", chol[labels], rng.normal(size=(N, D)))
    return X, labels


def _initial(X, labels, covariance_type, seed):
    """A rough but sane start: one random row of each cluster as a mean, the overall data
    covariance for every component, random weights."""
    rng = np.random.default_rng(seed)
    means = np.stack([X[rng.choice(np.flatnonzero(labels == j))] for j in range(K)])
    weights = rng.dirichlet(np.full(K, 5.0))
    full = np.repeat(np.cov(X.T)[None], K, axis=0)
    return weights, means, full


def _fit(X, covariance_type, weights, means, full, reg_covar=0.0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesgmm.ConvergenceWarning)  # tol=0 never "converges"
        return bayesgmm.em_fit(
            X,
            K,
            covariance_type=covariance_type,
            reg_covar=reg_covar,
            weights_init=weights,
            means_init=means,
            covariances_init=covariances_in_layout(full, covariance_type),
            **_EM_OPTIONS,
        )


@pytest.mark.slow  # the first em_fit per covariance type compiles (1-4 s); the next two tests reuse it
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@settings(max_examples=8, **_SETTINGS)
@given(seed=seeds, init_seed=seeds, separation=st.floats(4.0, 12.0))
def test_em_log_likelihood_never_decreases(covariance_type, seed, init_seed, separation):
    """Dempster et al.: each EM iteration cannot lower the likelihood (reg_covar=0 keeps it exact EM)."""
    X, labels = _separated_mixture(seed, separation)
    result = _fit(X, covariance_type, *_initial(X, labels, covariance_type, init_seed))
    history = result.log_likelihood_history
    assert history.shape == (MAX_ITER + 1,) and result.n_iter == MAX_ITER
    assert np.all(np.isfinite(history)) and history[-1] == result.log_likelihood
    # Only round-off may lower it: the mean log-likelihood (|ll| ~ 5) is a sum of N = 120
    # terms, each accurate to ~1e-15, so a step may dip by ~1e-13 once EM has converged;
    # 1e-10 is far above that and far below any real decrease (a wrong M-step loses >1e-4).
    assert np.min(np.diff(history)) >= -1e-10, np.diff(history)
    assert history[-1] > history[0]  # and it did climb from the rough start


def _assert_same_fit(a, b, *, atol_means, rtol_covariances, atol_log_likelihood):
    """``a`` and ``b`` agree: weights and means absolutely, covariances relatively, same n_iter."""
    np.testing.assert_allclose(np.asarray(a.params.weights), np.asarray(b.params.weights), rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.asarray(a.params.means), np.asarray(b.params.means), rtol=0, atol=atol_means)
    expected = np.asarray(b.params.covariance_matrices)
    # relative to each matrix's largest entry: zeros off the diagonal (diag, spherical) come
    # out of A Σ Aᵀ as round-off of that size, not as exact zeros
    atol = rtol_covariances * np.abs(expected).max(axis=(-2, -1), keepdims=True)
    assert np.all(np.abs(np.asarray(a.params.covariance_matrices) - expected) <= atol), (
        np.asarray(a.params.covariance_matrices),
        expected,
    )
    np.testing.assert_allclose(a.log_likelihood, b.log_likelihood, rtol=0, atol=atol_log_likelihood)
    assert a.n_iter == b.n_iter


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@settings(max_examples=6, **_SETTINGS)
@given(seed=seeds, init_seed=seeds, permutation_seed=seeds)
def test_em_is_invariant_to_row_order(covariance_type, seed, init_seed, permutation_seed):
    """Same initial parameters, rows shuffled (across chunks and the padded last chunk): the same fit."""
    X, labels = _separated_mixture(seed, 6.0)
    start = _initial(X, labels, covariance_type, init_seed)
    permutation = np.random.default_rng(permutation_seed).permutation(N)
    result, shuffled = _fit(X, covariance_type, *start), _fit(X[permutation], covariance_type, *start)
    # Only the order of floating-point sums differs (relative ~1e-15 per iteration; EM
    # contracts towards its fixed point, so 30 iterations do not amplify it much): 1e-9 on
    # O(1..10) means and relative 1e-8 on covariances leave three orders of magnitude.
    _assert_same_fit(shuffled, result, atol_means=1e-9, rtol_covariances=1e-8, atol_log_likelihood=1e-11)
    np.testing.assert_allclose(shuffled.log_likelihood_history, result.log_likelihood_history, rtol=0, atol=1e-11)


def _random_orthogonal(rng):
    q, r = np.linalg.qr(rng.normal(size=(D, D)))
    return q * np.sign(np.diag(r))  # Haar-distributed, reflections included


def _transform(covariance_type, rng, scale_factors):
    """An invertible A that maps the covariance family of the type onto itself.

    full, tied: any A = Q1 diag(s) Q2.  diag: A = P diag(s) (a feature permutation with
    per-feature scalings and sign flips) keeps covariances diagonal.  spherical: A = c Q
    keeps them isotropic.
    """
    s = scale_factors * rng.choice([-1.0, 1.0], size=D)
    if covariance_type in ("full", "tied"):
        return _random_orthogonal(rng) @ np.diag(s) @ _random_orthogonal(rng)
    if covariance_type == "diag":
        return np.eye(D)[rng.permutation(D)] @ np.diag(s)
    return abs(s[0]) * _random_orthogonal(rng)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@settings(max_examples=6, **_SETTINGS)
@given(
    seed=seeds,
    init_seed=seeds,
    transform_seed=seeds,
    scale_factors=hnp.arrays(np.float64, D, elements=st.floats(0.1, 10.0)),
    shift=hnp.arrays(np.float64, D, elements=st.floats(-1e3, 1e3)),
)
def test_em_is_equivariant_to_affine_maps(covariance_type, seed, init_seed, transform_seed, scale_factors, shift):
    """Fit x and y = A x + b from correspondingly transformed starts: means map to A μ + b,
    covariances to A Σ Aᵀ, weights stay, and the mean log-likelihood drops by log|det A|.

    reg_covar: the M-step returns Σ + r I. Under the map that becomes A Σ Aᵀ + r A Aᵀ, which is
    of the form A Σ Aᵀ + r' I only when A Aᵀ = c² I, i.e. for the spherical family A = c Q,
    with r' = c² r. So the spherical case is tested with a non-zero reg_covar transformed to
    c² r, and the others with reg_covar = 0, where EM is exactly equivariant (a diagonal A with
    unequal scales would need a per-feature regulariser, which scikit-learn's rule is not).
    """
    X, labels = _separated_mixture(seed, 6.0)
    weights, means, full = _initial(X, labels, covariance_type, init_seed)
    A = _transform(covariance_type, np.random.default_rng(transform_seed), scale_factors)
    reg_covar = 1e-3 if covariance_type == "spherical" else 0.0
    reg_covar_y = reg_covar * abs(np.linalg.det(A)) ** (2 / D)  # c² for A = c Q

    fit_x = _fit(X, covariance_type, weights, means, full, reg_covar)
    fit_y = _fit(X @ A.T + shift, covariance_type, weights, means @ A.T + shift, A @ full @ A.T, reg_covar_y)

    mapped = fit_x._replace(
        params=GMMParams.from_covariances(
            fit_x.params.weights,
            np.asarray(fit_x.params.means) @ A.T + shift,
            A @ np.asarray(fit_x.params.covariance_matrices) @ A.T,
            "full",
        ),
        log_likelihood=fit_x.log_likelihood - np.log(abs(np.linalg.det(A))),
        log_likelihood_history=fit_x.log_likelihood_history - np.log(abs(np.linalg.det(A))),
    )
    # The two fits do the same arithmetic on numbers that differ by A (condition number up
    # to 100) and by b (|b| up to 1e3, which em_fit removes by centring in float64): relative
    # round-off ~1e-13, amplified ≤ 100× by A. Means are compared on the scale of y (|A x + b|
    # ≲ 2e3) to 1e-7, covariances relatively to 1e-7, log-likelihood to 1e-9: orders of
    # magnitude above round-off, orders below any mistake in a transformation.
    y_scale = 1.0 + np.abs(shift).max() + np.abs(A).max() * np.abs(X).max()
    _assert_same_fit(fit_y, mapped, atol_means=1e-9 * y_scale, rtol_covariances=1e-7, atol_log_likelihood=1e-9)
    np.testing.assert_allclose(fit_y.log_likelihood_history, mapped.log_likelihood_history, rtol=0, atol=1e-9)


# ----------------------------------------------------------------------------- GMMParams


# Each (covariance type, k, d, batch) compiles ``_densities`` once (~0.75 s; eager op-by-op
# dispatch costs 2-4 s per new shape), so shapes come from a short list with the edge cases
# k = 1 and d = 1; test_params.py covers the eager path at a fixed shape.
_SHAPES = ((1, 1), (3, 2), (2, 3))


@jax.jit
def _densities(params, X):
    return params.log_prob(X), params.predict_proba(X), params.predict(X)


@st.composite
def mixtures(draw, *, batch_shapes=((),), far=False):
    """(params, X, (weights, means, dense covariances)) for any covariance type and a shape of ``_SHAPES``.

    Covariances are B Bᵀ + 0.05 I (entries of B in [-2, 2]), so their condition number stays
    below ~500: the regime where two float64 algorithms agree to round-off.
    """
    covariance_type = draw(st.sampled_from(COVARIANCE_TYPES))
    batch = draw(st.sampled_from(batch_shapes))
    k, d = draw(st.sampled_from(_SHAPES if batch == () else _SHAPES[1:2]))
    raw_weights = draw(hnp.arrays(np.float64, batch + (k,), elements=st.floats(1e-3, 1.0)))
    weights = raw_weights / raw_weights.sum(axis=-1, keepdims=True)
    means = draw(hnp.arrays(np.float64, batch + (k, d), elements=st.floats(-10.0, 10.0)))
    B = draw(hnp.arrays(np.float64, batch + (k, d, d), elements=st.floats(-2.0, 2.0)))
    dense = B @ np.swapaxes(B, -1, -2) + 0.05 * np.eye(d)
    if covariance_type == "tied":
        dense = np.broadcast_to(dense[..., :1, :, :], dense.shape)
    elif covariance_type == "diag":
        dense = np.diagonal(dense, axis1=-2, axis2=-1)[..., None] * np.eye(d)
    elif covariance_type == "spherical":
        dense = np.mean(np.diagonal(dense, axis1=-2, axis2=-1), axis=-1)[..., None, None] * np.eye(d)
    # the Cholesky factor in the type's layout, built in numpy (eager JAX ops would compile per shape)
    if covariance_type in ("full", "tied"):
        scale = np.linalg.cholesky(dense[..., 0, :, :] if covariance_type == "tied" else dense)
    else:
        std = np.sqrt(np.diagonal(dense, axis1=-2, axis2=-1))
        scale = std if covariance_type == "diag" else std[..., 0]
    params = GMMParams(jnp.asarray(weights), jnp.asarray(means), jnp.asarray(scale), covariance_type)
    spread = 1e3 if far else 15.0
    X = draw(hnp.arrays(np.float64, (16, d), elements=st.floats(-spread, spread)))
    return params, X, (weights, means, dense)


def _scipy_log_joint(weights, means, dense, X):
    return np.stack(
        [
            np.log(w) + stats.multivariate_normal(m, c).logpdf(X).reshape(len(X))
            for w, m, c in zip(weights, means, dense)
        ],
        axis=-1,
    )


@pytest.mark.slow  # one _densities compile per (type, shape): 12-16 of them
@settings(max_examples=40, **_SETTINGS)
@given(case=mixtures(far=True))
def test_log_prob_equals_a_scipy_mixture(case):
    """log p(x) = logsumexp_k(log π_k + log N(x | μ_k, Σ_k)) with scipy.stats, all four types."""
    params, X, (weights, means, dense) = case
    expected = logsumexp(_scipy_log_joint(weights, means, dense, X), axis=-1)
    # scipy uses an eigendecomposition, bayesgmm Cholesky factors; both are backward stable,
    # so they agree to ~cond(Σ)·eps ≈ 1e-13 relatively on the quadratic form, which reaches
    # ~1e8 for points 1e3 away: relative 1e-10 plus absolute 1e-10 covers that with margin.
    np.testing.assert_allclose(np.asarray(_densities(params, X)[0]), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.slow  # one _densities compile per (type, shape): 12-16 of them
@settings(max_examples=40, **_SETTINGS)
@given(case=mixtures(far=True, batch_shapes=((), (2,))))
def test_predict_proba_rows_are_probabilities(case):
    """Responsibilities lie in [0, 1] and each row sums to 1, even for points far from every component."""
    params, X, _ = case
    _, proba, labels = (np.asarray(value) for value in _densities(params, X))
    assert proba.shape == params.batch_shape + (len(X), params.n_components)
    assert np.all((proba >= 0) & (proba <= 1))
    # a softmax normalises by a sum of ≤ 4 terms: the row sums are 1 to a few float64 ulps
    np.testing.assert_allclose(proba.sum(axis=-1), 1.0, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(np.take_along_axis(proba, labels[..., None], -1)[..., 0], proba.max(axis=-1))


# ----------------------------------------------------------------------------- save / load


def _bits(array):
    array = np.asarray(array)
    return array.dtype, array.shape, array.view(np.uint32 if array.dtype == np.float32 else np.uint64).tobytes()


@st.composite
def savable_params(draw):
    """Valid parameters with extreme but finite values: huge, subnormal, negative zero."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    covariance_type = draw(st.sampled_from(COVARIANCE_TYPES))
    batch = draw(st.sampled_from([(), (2,), (2, 3)]))
    k, d = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    width = np.finfo(dtype).bits
    finite = st.floats(allow_nan=False, allow_infinity=False, width=width)
    positive = st.floats(min_value=0.0, exclude_min=True, allow_infinity=False, width=width)
    raw_weights = draw(hnp.arrays(dtype, batch + (k,), elements=st.floats(0.0, 1.0, width=width)))
    raw_weights = raw_weights + dtype(1e-3)
    weights = (raw_weights / raw_weights.sum(axis=-1, keepdims=True)).astype(dtype)
    means = draw(hnp.arrays(dtype, batch + (k, d), elements=finite))
    scale_shape = batch + get_structure(covariance_type).core.scale_shape(k, d)
    if covariance_type in ("full", "tied"):
        lower = draw(hnp.arrays(dtype, scale_shape, elements=finite))
        diagonal = draw(hnp.arrays(dtype, scale_shape[:-1], elements=positive))
        scale = np.tril(lower, -1) + diagonal[..., None] * np.eye(d, dtype=dtype)
    else:
        scale = draw(hnp.arrays(dtype, scale_shape, elements=positive))
    return GMMParams(jnp.asarray(weights), jnp.asarray(means), jnp.asarray(scale.astype(dtype)), covariance_type)


@pytest.mark.parametrize("suffix", [".npz", ".json"])
@settings(max_examples=40, **_SETTINGS)
@given(params=savable_params())
def test_save_load_round_trips_bit_for_bit(tmp_path_factory, suffix, params):
    path = tmp_path_factory.mktemp("round_trip") / f"params{suffix}"
    bayesgmm.save(params, path)
    loaded = bayesgmm.load(path)
    assert loaded.covariance_type == params.covariance_type
    for name in ("weights", "means", "scale"):
        assert _bits(getattr(loaded, name)) == _bits(getattr(params, name)), name
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def test_float32_round_trip_without_x64(tmp_path):
    """float32 files load as float32 when jax_enable_x64 is off (the package default)."""
    with jax.enable_x64(False):
        params = GMMParams.from_covariances([0.25, 0.75], [[0.1, -3.0], [1e30, 1e-40]], [0.5, 2.0], "spherical")
        assert params.dtype == jnp.float32
        for suffix in (".npz", ".json"):
            bayesgmm.save(params, tmp_path / f"p{suffix}")
            loaded = bayesgmm.load(tmp_path / f"p{suffix}")
            for name in ("weights", "means", "scale"):
                assert _bits(getattr(loaded, name)) == _bits(getattr(params, name))
