"""bayesgmm.GaussianMixture / BayesianGMM against scikit-learn, scipy.stats and known mixtures.

scikit-learn's own test suites (estimator checks, test_gaussian_mixture.py) run in
test_sklearn_suite.py. Every GaussianMixture here fits the same (300, 3) data with k = 3, so
EM compiles once per covariance type and setting.
"""

import re
import subprocess
import sys
import warnings

import jax
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

pytest.importorskip("sklearn")

from sklearn import mixture  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402
from sklearn.utils._param_validation import InvalidParameterError  # noqa: E402

import bayesgmm  # noqa: E402
from bayesgmm.sklearn import BayesianGMM, GaussianMixture, _seed_from  # noqa: E402
from tests._references import (  # noqa: E402
    COVARIANCE_TYPES,
    covariances_in_layout,
    full_covariances,
    make_mixture_data,
    precisions_from_covariances,
)

K, D = 3, 3
ATTRIBUTES = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")


def _shapes(covariance_type, k=K, d=D):
    matrices = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}[covariance_type]
    return {"weights_": (k,), "means_": (k, d), **dict.fromkeys(ATTRIBUTES[2:], matrices)}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X, labels = make_mixture_data(rng, 300, D, K, separation=3.0)
    X_new, _ = make_mixture_data(rng, 50, D, K, separation=3.0)
    return X, labels, X_new


def _start(X, labels, covariance_type):
    """A deliberately rough start (perturbed class moments), so EM takes several iterations."""
    rng = np.random.default_rng(1)
    weights = np.bincount(labels, minlength=K) + 20.0
    means = np.stack([X[labels == j].mean(axis=0) for j in range(K)]) + rng.normal(scale=0.5, size=(K, D))
    covariances = 2.0 * np.stack([np.cov(X[labels == j].T) for j in range(K)])
    precisions = precisions_from_covariances(covariances_in_layout(covariances, covariance_type), covariance_type)
    return dict(weights_init=weights / weights.sum(), means_init=means, precisions_init=precisions)


# ----------------------------------------------------------------------------- GaussianMixture


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_matches_sklearn_from_the_same_start(data, covariance_type):
    X, labels, X_new = data
    settings = dict(covariance_type=covariance_type, tol=1e-6, max_iter=300, **_start(X, labels, covariance_type))
    ours = GaussianMixture(K, **settings).fit(X)
    reference = mixture.GaussianMixture(K, **settings).fit(X)

    assert ours.converged_ and reference.converged_
    assert ours.n_iter_ == reference.n_iter_ > 3
    for name, shape in _shapes(covariance_type).items():
        value = getattr(ours, name)
        assert value.shape == shape and value.dtype == np.float64, name
        # float64 round-off, amplified over the iterations (observed ~1e-14): 1e-8 is far
        # below any difference of algorithm (a changed step moves these by > 1e-4).
        np.testing.assert_allclose(value, getattr(reference, name), rtol=1e-8, atol=1e-10, err_msg=name)
    np.testing.assert_allclose(ours.lower_bounds_, reference.lower_bounds_, rtol=1e-10)
    assert ours.lower_bound_ == ours.lower_bounds_[-1]
    np.testing.assert_allclose(ours.lower_bound_, reference.lower_bound_, rtol=1e-10)
    np.testing.assert_allclose(ours.score_samples(X_new), reference.score_samples(X_new), rtol=1e-9)
    np.testing.assert_allclose(ours.predict_proba(X_new), reference.predict_proba(X_new), atol=1e-9)
    np.testing.assert_array_equal(ours.predict(X_new), reference.predict(X_new))
    assert ours._n_parameters() == reference._n_parameters()
    np.testing.assert_allclose([ours.bic(X_new), ours.aic(X_new)], [reference.bic(X_new), reference.aic(X_new)])


def test_scores_are_the_mixture_density(data):
    """score_samples against scipy.stats.multivariate_normal, from the fitted attributes."""
    X, labels, X_new = data
    model = GaussianMixture(K, covariance_type="diag", **_start(X, labels, "diag")).fit(X)
    covariances = full_covariances(model.covariances_, "diag", K, D)
    densities = np.stack(
        [stats.multivariate_normal(m, c).logpdf(X_new) for m, c in zip(model.means_, covariances)], axis=1
    )
    log_joint = densities + np.log(model.weights_)
    np.testing.assert_allclose(model.score_samples(X_new), logsumexp(log_joint, axis=1), rtol=1e-12)
    np.testing.assert_allclose(model.predict_proba(X_new), np.exp(log_joint - logsumexp(log_joint, 1, keepdims=True)))
    assert model.score(X_new) == pytest.approx(np.mean(logsumexp(log_joint, axis=1)), rel=1e-12)


def test_float64_whatever_the_jax_setting(data):
    X, labels, X_new = data
    start = _start(X, labels, "full")
    expected = GaussianMixture(K, **start).fit(X)
    with jax.enable_x64(False):
        model = GaussianMixture(K, **start).fit(X)
        scores = model.score_samples(X_new)
        samples, _ = model.sample(10)
    assert jax.config.jax_enable_x64  # the caller's setting (conftest: on) is left as it was
    assert scores.dtype == samples.dtype == np.float64
    for name in ATTRIBUTES:
        assert getattr(model, name).dtype == np.float64
        np.testing.assert_allclose(getattr(model, name), getattr(expected, name), rtol=1e-12, atol=1e-14)
    # float32 input is computed (and stored) in float64 too: the same fit as float64 input,
    # up to the rounding of the data to float32 (relative 6e-8)
    model32 = GaussianMixture(K, **start).fit(X.astype(np.float32))
    assert model32.means_.dtype == np.float64
    np.testing.assert_allclose(model32.means_, expected.means_, rtol=1e-5)


def test_random_state_maps_to_em_seed(data):
    X, _, _ = data
    assert _seed_from(7) == 7
    assert _seed_from(np.random.RandomState(3)) == np.random.RandomState(3).randint(np.iinfo(np.int32).max)
    rng = np.random.RandomState(0)
    assert _seed_from(rng) != _seed_from(rng)  # a shared generator advances, as in scikit-learn
    first = GaussianMixture(K, random_state=5).fit(X)
    again = GaussianMixture(K, random_state=5).fit(X)
    direct = bayesgmm.em_fit(X, K, seed=5)
    np.testing.assert_array_equal(first.means_, again.means_)
    np.testing.assert_allclose(first.means_, np.asarray(direct.params.means), rtol=1e-12)


def test_convergence_warning_is_sklearns_and_carries_the_numbers(data):
    X, labels, _ = data
    model = GaussianMixture(K, max_iter=1, **_start(X, labels, "full"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", bayesgmm.ConvergenceWarning)  # em_fit's own is not leaked
        with pytest.warns(ConvergenceWarning, match=r"did not converge.*1 iterations.*tol=0\.001"):
            model.fit(X)
    assert not model.converged_ and model.n_iter_ == 1


def test_max_iter_zero_returns_the_start_like_sklearn(data):
    X, labels, _ = data
    start = _start(X, labels, "tied")
    ours = GaussianMixture(K, covariance_type="tied", max_iter=0, **start).fit(X)
    np.testing.assert_allclose(ours.weights_, start["weights_init"], rtol=1e-12)
    np.testing.assert_allclose(ours.means_, start["means_init"], rtol=1e-12)
    np.testing.assert_allclose(ours.precisions_, start["precisions_init"], rtol=1e-10)
    # scikit-learn with precisions_init and max_iter=0 fails (no covariances_), so compare with means_init only
    reference = mixture.GaussianMixture(K, covariance_type="tied", max_iter=0, means_init=start["means_init"]).fit(X)
    for name in ("n_iter_", "converged_", "lower_bound_", "lower_bounds_"):
        assert getattr(ours, name) == getattr(reference, name), name


def test_warm_start_continues_like_sklearn(data):
    """One-iteration warm fits follow sklearn's, which detects convergence at a warm fit's first change."""
    X, labels, _ = data
    settings = dict(max_iter=1, warm_start=True, tol=1e-4, **_start(X, labels, "spherical"))
    ours = GaussianMixture(K, covariance_type="spherical", **settings)
    reference = mixture.GaussianMixture(K, covariance_type="spherical", **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(100):
            ours.fit(X)
            reference.fit(X)
            assert ours.n_iter_ == reference.n_iter_ == 1 and ours.converged_ == reference.converged_
            np.testing.assert_allclose(ours.means_, reference.means_, rtol=1e-8)
            np.testing.assert_allclose(ours.lower_bound_, reference.lower_bound_, rtol=1e-10)
            if reference.converged_:
                break
    assert ours.converged_


def test_warm_start_with_other_features_says_what_to_change(data):
    X, _, _ = data
    model = GaussianMixture(K, warm_start=True, random_state=0).fit(X)
    with pytest.raises(ValueError, match="warm_start=True continues the previous fit.*set warm_start=False"):
        model.fit(X[:, :2])


def test_verbose_prints_sklearn_lines_from_the_history(data, capsys):
    X, labels, _ = data
    model = GaussianMixture(K, verbose=2, verbose_interval=1, **_start(X, labels, "full")).fit(X)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Initialization 0"
    changes = [float(m.group(1)) for m in map(re.compile(r"  Iteration \d+\t ll change (\S+)").match, lines) if m]
    assert len(changes) == model.n_iter_
    np.testing.assert_allclose(changes[1:], np.diff(model.lower_bounds_), atol=1e-5)  # printed with 5 decimals
    assert lines[-1].startswith("Initialization converged. time lapse")
    assert lines[-1].endswith(f"lower bound {model.lower_bound_:.5f}.")


def test_errors_say_what_is_wrong(data):
    X, labels, _ = data
    with pytest.raises(ValueError, match=r"Expected n_samples >= n_components but got n_components = 4, n_samples = 3"):
        GaussianMixture(4).fit(X[:3])
    with pytest.raises(ValueError, match=re.escape("should be in the range [0, 1], but got max value 1.20000, min")):
        GaussianMixture(3, weights_init=[1.2, -0.1, -0.1]).fit(X)
    with pytest.raises(ValueError, match="should be normalized"):
        GaussianMixture(3, weights_init=[0.2, 0.2, 0.2]).fit(X)
    with pytest.raises(ValueError, match=re.escape("The parameter 'means' should have the shape of (3, 3)")):
        GaussianMixture(3, means_init=np.zeros((3, 2))).fit(X)
    with pytest.raises(InvalidParameterError, match="covariance_type"):
        GaussianMixture(covariance_type="banded").fit(X)
    with pytest.raises(NotFittedError):
        GaussianMixture().predict(X)
    # a degenerate fit gets scikit-learn's message (code may match on it) with em_fit's advice
    two_points = np.repeat(X[:2], len(X) // 2, axis=0)  # the shape of X: no new compilation
    with pytest.raises(ValueError, match=r"ill-defined empirical covariance.*\(bayesgmm: .*reg_covar"):
        GaussianMixture(K, reg_covar=0.0, random_state=0).fit(two_points)


def test_sample_groups_rows_by_component(data):
    X, labels, _ = data
    model = GaussianMixture(K, random_state=3, **_start(X, labels, "full")).fit(X)
    X_sampled, y = model.sample(4000)
    assert X_sampled.shape == (4000, D) and y.dtype == np.int64
    assert np.all(np.diff(y) >= 0)  # grouped, as scikit-learn returns them
    np.testing.assert_array_equal(model.sample(4000)[0], X_sampled)  # int random_state: reproducible
    # component means within 5 Monte Carlo standard errors
    for j in range(K):
        rows = X_sampled[y == j]
        standard_error = np.sqrt(np.diag(model.covariances_[j]) / len(rows))
        assert np.all(np.abs(rows.mean(axis=0) - model.means_[j]) < 5 * standard_error)
    with pytest.raises(ValueError, match="Invalid value for 'n_samples'"):
        model.sample(0)


def test_sample_weight_equals_repeated_rows(data):
    X, labels, _ = data
    counts = np.random.default_rng(2).integers(0, 4, size=len(X))
    start = _start(X, labels, "full")
    weighted = GaussianMixture(K, tol=1e-8, **start).fit(X, sample_weight=counts)
    repeated = GaussianMixture(K, tol=1e-8, **start).fit(np.repeat(X, counts, axis=0))
    for name in ATTRIBUTES:  # the same sums in another order: round-off only
        np.testing.assert_allclose(getattr(weighted, name), getattr(repeated, name), rtol=1e-8, atol=1e-10)


def _em_fit_like_the_estimator(X, **options):
    """em_fit with GaussianMixture's defaults and random_state=0, in float64."""
    with jax.enable_x64(True):
        return bayesgmm.em_fit(X, K, seed=0, degenerate="raise", **options)


@pytest.mark.parametrize("dof, n_dof_parameters", [(None, K), ("shared", 1), (5.0, 0)])
def test_student_t_estimator_equals_em_fit_and_counts_dof_in_bic(data, dof, n_dof_parameters):
    X, _, X_new = data
    model = GaussianMixture(K, family="student_t", dof=dof, random_state=0).fit(X)
    result = _em_fit_like_the_estimator(X, family="student_t", dof=dof)
    with jax.enable_x64(True):
        np.testing.assert_array_equal(model.dof_, np.asarray(result.params.dof))
        np.testing.assert_array_equal(model.means_, np.asarray(result.params.means))
        np.testing.assert_array_equal(model.covariances_, np.asarray(result.params.covariances))
        np.testing.assert_allclose(model.score_samples(X_new), np.asarray(result.params.log_prob(X_new)), rtol=1e-12)
        np.testing.assert_allclose(
            model.predict_proba(X_new), np.asarray(result.params.predict_proba(X_new)), atol=1e-12
        )
        np.testing.assert_allclose(model.bic(X_new), float(result.params.bic(X_new)), rtol=1e-12)
    gaussian_count = GaussianMixture(K).fit(X)._n_parameters()
    assert model._n_parameters() == gaussian_count + n_dof_parameters == result.params.n_parameters
    n = len(X_new)
    assert model.aic(X_new) == pytest.approx(-2 * n * model.score(X_new) + 2 * model._n_parameters(), rel=1e-12)


def test_student_t_scores_are_scipy_multivariate_t(data):
    X, _, X_new = data
    model = GaussianMixture(K, family="student_t", random_state=0).fit(X)
    densities = np.stack(
        [
            stats.multivariate_t(m, c, df=nu).logpdf(X_new)
            for m, c, nu in zip(model.means_, model.covariances_, model.dof_)
        ],
        axis=1,
    )
    log_joint = densities + np.log(model.weights_)
    np.testing.assert_allclose(model.score_samples(X_new), logsumexp(log_joint, axis=1), rtol=1e-10)
    np.testing.assert_array_equal(model.predict(X_new), np.argmax(log_joint, axis=1))


def test_student_t_sample_has_t_distances(data):
    """Per component, δ²/d of sampled rows follows F(d, ν): a KS test at a fixed seed."""
    X, _, _ = data
    model = GaussianMixture(K, family="student_t", dof=5.0, random_state=0).fit(X)
    X_sampled, y = model.sample(3000)
    for j in range(K):
        rows = X_sampled[y == j] - model.means_[j]
        squared = np.einsum("nd,de,ne->n", rows, model.precisions_[j], rows)
        assert stats.kstest(squared / D, stats.f(D, 5.0).cdf).pvalue > 1e-3


def test_family_options_are_checked_and_dof_follows_the_family(data):
    X, _, _ = data
    with pytest.raises(InvalidParameterError, match="family"):
        GaussianMixture(family="cauchy").fit(X)
    with pytest.raises(ValueError, match="family='student_t'"):
        GaussianMixture(K, dof=3.0).fit(X)
    model = GaussianMixture(K, family="student_t", dof="shared", random_state=0).fit(X)
    assert model.dof_.shape == (K,) and np.all(model.dof_ == model.dof_[0])
    model.set_params(family="gaussian", dof=None).fit(X)
    assert not hasattr(model, "dof_")  # a Gaussian fit has no degrees of freedom


def test_measurement_error_in_fit_equals_em_fit(data):
    X, _, X_new = data
    errors = np.random.default_rng(4).uniform(0.1, 0.5, size=X.shape)
    model = GaussianMixture(K, covariance_type="diag", random_state=0).fit(X, measurement_error=errors)
    result = _em_fit_like_the_estimator(X, covariance_type="diag", measurement_error=errors)
    np.testing.assert_array_equal(model.covariances_, np.asarray(result.params.covariances))
    with jax.enable_x64(True):
        np.testing.assert_allclose(model.score_samples(X_new), np.asarray(result.params.log_prob(X_new)), rtol=1e-12)


def test_import_bayesgmm_leaves_sklearn_unloaded():
    code = """
import sys
import bayesgmm
assert "sklearn" not in sys.modules, "import bayesgmm imported sklearn"
assert "GaussianMixture" in bayesgmm.__all__ and "BayesianGMM" in dir(bayesgmm)
sys.modules["sklearn"] = None  # as if scikit-learn were not installed
try:
    bayesgmm.GaussianMixture
except ImportError as error:
    print("ImportError:", error)
del sys.modules["sklearn"]
from bayesgmm import BayesianGMM, GaussianMixture
print(GaussianMixture.__module__, "sklearn" in sys.modules)
"""
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert "ImportError:" in completed.stdout and "pip install 'bayesgmm[sklearn]'" in completed.stdout
    assert completed.stdout.splitlines()[-1] == "bayesgmm.sklearn True"


# ----------------------------------------------------------------------------- BayesianGMM
# Each first fit compiles EM and the sampler or optimiser (tens of seconds on a loaded 2-core
# machine), so there is one MAP and one tiny NUTS fit, both marked slow.


def _posterior_predictive_reference(posterior, X):
    """log (1/S) Σ_s Σ_k π_sk N(x | μ_sk, Σ_sk) with scipy.stats, draw by draw."""
    params = posterior.params
    weights = np.asarray(params.weights).reshape(-1, params.n_components)
    means = np.asarray(params.means).reshape(-1, params.n_components, params.n_features)
    matrices = np.asarray(params.covariance_matrices).reshape(means.shape + (params.n_features,))
    per_draw = [
        logsumexp([np.log(w) + stats.multivariate_normal(m, c).logpdf(X) for w, m, c in zip(*draw)], axis=0)
        for draw in zip(weights, means, matrices)
    ]
    return logsumexp(per_draw, axis=0) - np.log(len(per_draw))


def _check_bayesian_fit(model, X, labels, true_means):
    order = np.argsort(model.means_ @ [1.0, 10.0])  # the same order for the fitted and true means
    np.testing.assert_allclose(model.means_[order], true_means[np.argsort(true_means @ [1.0, 10.0])], atol=0.4)
    assert adjusted_rand_score(labels, model.predict(X)) > 0.98
    np.testing.assert_allclose(model.predict_proba(X).sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(model.score_samples(X[:20]), _posterior_predictive_reference(model.posterior_, X[:20]))
    np.testing.assert_allclose(model.weights_, np.asarray(model.posterior_.params.weights).mean(axis=(0, 1)))
    np.testing.assert_allclose(model.covariances_, np.asarray(model.posterior_.params.covariances).mean(axis=(0, 1)))
    k, d = true_means.shape
    for name, shape in _shapes(model.covariance_type, k=k, d=d).items():
        assert getattr(model, name).shape == shape and getattr(model, name).dtype == np.float64, name


@pytest.mark.slow
@pytest.mark.extended  # compiles EM and SVI for three data sizes: beyond CI's budget
def test_bayesian_map_docstring_example():
    """The BayesianGMM docstring example (not run as a doctest: it compiles an optimiser), checked in full."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-4, 1, (100, 2)), rng.normal(4, 1, (100, 2))])
    model = BayesianGMM(2, method="map", num_steps=200, random_state=0).fit(X)
    np.testing.assert_array_equal(np.round(np.sort(model.means_[:, 0])), [-4.0, 4.0])
    assert model.posterior_.params.batch_shape == (1, 1)
    # within 0.4 of the generating means: about 4 standard errors of a mean of 100 unit-variance rows
    _check_bayesian_fit(model, X, np.repeat([0, 1], 100), np.array([[-4.0, -4.0], [4.0, 4.0]]))
    X_sampled, y = model.sample(50)
    assert X_sampled.shape == (50, 2) and y.shape == (50,)
    assert model.bic(X) == pytest.approx(-2 * 200 * model.score(X) + model._n_parameters() * np.log(200))
    # sample_weight reaches infer: the same fit as infer's with those weights (same shapes: no recompile)
    w = np.r_[np.zeros(30), np.full(170, 2.0)]
    weighted = BayesianGMM(2, method="map", num_steps=200, random_state=0).fit(X, sample_weight=w)
    with jax.enable_x64(True):
        expected = bayesgmm.infer(X, 2, method="map", num_steps=200, seed=_seed_from(0), sample_weight=w)
    np.testing.assert_allclose(weighted.means_, np.asarray(expected.params.means)[0, 0], rtol=1e-12)
    assert np.abs(weighted.means_ - model.means_).max() > 1e-3


@pytest.mark.slow
def test_bayesian_nuts_recovers_separated_clusters():
    true_means = np.array([[-6.0, 0.0], [0.0, 6.0], [6.0, 0.0]])
    rng = np.random.default_rng(4)
    labels = rng.choice(3, size=300, p=[0.3, 0.3, 0.4])
    X = true_means[labels] + rng.normal(size=(300, 2))
    model = BayesianGMM(3, covariance_type="diag", num_warmup=100, num_samples=50, num_chains=1, random_state=0)
    model.fit(X)
    assert model.posterior_.params.batch_shape == (1, 50)
    _check_bayesian_fit(model, X, labels, true_means)


def test_bayesian_api_before_fitting():
    model = BayesianGMM(2, method="svi")
    assert model.get_params()["method"] == "svi"
    with pytest.raises(NotFittedError):
        model.predict(np.zeros((3, 2)))
    with pytest.raises(InvalidParameterError, match="method"):
        BayesianGMM(method="gibbs").fit(np.zeros((3, 2)))
