"""bayesgmm.select: the batched grid equals separate em_fit calls, and the criteria are the textbook ones."""

import math

import numpy as np
import pytest

import bayesgmm
from bayesgmm.datasets import load_faithful

KS = [1, 2, 3]
TYPES = ["full", "tied", "diag", "spherical"]  # tied pools the components: the switched-off ones must not count


@pytest.fixture(scope="module", params=["numpy", "compiled"])
def selection(request):
    """The grid on each driver: small data are fitted by em's NumPy driver (``GRID_HOST_MAX_WORK``);
    with the limit at 0, by the compiled programs (every k in one)."""
    with pytest.MonkeyPatch.context() as patch:  # for this call only: the fixture lives through the module
        if request.param == "compiled":
            patch.setattr(bayesgmm.em._fit, "GRID_HOST_MAX_WORK", 0)
        return bayesgmm.select(load_faithful(), k=KS, covariance_types=TYPES, n_init=2, seed=3)


def compiled_grid(monkeypatch):
    """``select`` fits its grid in compiled programs, even on small data."""
    monkeypatch.setattr(bayesgmm.em._fit, "GRID_HOST_MAX_WORK", 0)


def test_table_has_one_row_per_fit(selection):
    table = selection.table
    assert list(table.columns) == [
        "k",
        "covariance_type",
        "log_likelihood",
        "n_parameters",
        "bic",
        "aic",
        "icl",
        "n_iter",
        "converged",
        "spurious",  # every restart had a component the data cannot support: criteria NaN, never chosen
        "start",  # the kept fit's initialisation ("kmeans" here: n_init=2)
    ]
    assert [(row.k, row.covariance_type) for row in table.itertuples()] == [(k, t) for t in TYPES for k in KS]
    assert set(selection.fits) == {(k, t) for t in TYPES for k in KS}


def test_each_grid_fit_equals_em_fit(selection, request, monkeypatch):
    """Each grid point's fit is em_fit's with the same seed and driver: the compiled grid batches every
    k in one program (unused components switched off), the NumPy driver fits each k from the grid's draws.

    The compiled grid is compared with em_fit's compiled program (``HOST_MAX_WORK = 0``), not its
    NumPy driver for small data (which equals it to round-off, tests/test_em_host.py, but may then
    prefer the other of two restarts that reach the same maximum in another labelling): only the
    chunking differs (round-off), 1e-9 relative. The NumPy driver's grid is em_fit's NumPy driver
    from the same draws (a restart's first draws do not depend on k): bit for bit.
    """
    numpy_driver = request.node.callspec.params["selection"] == "numpy"
    if not numpy_driver:
        monkeypatch.setattr(bayesgmm.em._fit, "HOST_MAX_WORK", 0)
    X = load_faithful()
    for (k, covariance_type), result in selection.fits.items():
        alone = bayesgmm.em_fit(X, k, covariance_type=covariance_type, n_init=2, seed=3, tol=1e-4)  # select's tol
        if numpy_driver:
            assert result.log_likelihood == alone.log_likelihood, (k, covariance_type)
            np.testing.assert_array_equal(result.params.means, alone.params.means)
        assert result.n_iter == alone.n_iter, (k, covariance_type)
        np.testing.assert_allclose(result.log_likelihood, alone.log_likelihood, rtol=1e-9)
        np.testing.assert_allclose(result.params.means, alone.params.means, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(result.params.covariances, alone.params.covariances, rtol=1e-9, atol=1e-9)


def test_criteria_are_the_closed_forms(selection):
    """BIC/AIC from the log-likelihood and parameter count; ICL = BIC + twice the classification entropy."""
    X = load_faithful()
    n = len(X)
    for row in selection.table.itertuples():
        params = selection.fits[(row.k, row.covariance_type)].params
        assert row.n_parameters == params.n_parameters
        log_likelihood = float(np.sum(params.log_prob(X)))
        np.testing.assert_allclose(row.bic, -2 * log_likelihood + row.n_parameters * math.log(n), rtol=1e-10)
        np.testing.assert_allclose(row.aic, -2 * log_likelihood + 2 * row.n_parameters, rtol=1e-10)
        responsibilities = np.asarray(params.predict_proba(X))
        np.testing.assert_allclose(row.icl, row.bic - 2 * np.sum(np.log(responsibilities.max(axis=1))), rtol=1e-10)
        np.testing.assert_allclose(row.icl, float(params.icl(X)), rtol=1e-10)


def test_best_is_the_minimum_and_faithful_picks_two_full_components(selection):
    table = selection.table
    best = table.loc[table["bic"].idxmin()]
    assert (selection.best_k, selection.best_covariance_type) == (int(best.k), best.covariance_type) == (2, "full")
    assert selection.best is selection.fits[(2, "full")]
    by_icl = bayesgmm.select(load_faithful(), k=KS, covariance_types=TYPES, n_init=2, seed=3, criterion="icl")
    assert by_icl.best_k == int(by_icl.table.loc[by_icl.table["icl"].idxmin()].k)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(k=[]), "at least one number of components"),
        (dict(k=[0, 2]), "k must be an integer >= 1"),
        (dict(covariance_types=["full", "banana"]), "covariance_type must be one of"),
        (dict(criterion="waic"), "criterion must be one of"),
        (dict(k=[300]), "k=300 components need at least 300"),
        (dict(num_samples=10), "criterion='loo' only"),
    ],
)
def test_bad_grid_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bayesgmm.select(load_faithful(), **kwargs)


# ----------------------------------------------------------------------------- families


def _two_clusters(rng, n=400, nu=None):
    """Two clusters in 2-D, multivariate t with ``nu`` degrees of freedom (Gaussian for None)."""
    centres = np.array([[0.0, 0.0], [6.0, 3.0]])
    u = np.ones(n) if nu is None else rng.gamma(nu / 2, 2 / nu, n)  # the t's scale mixture
    return centres[rng.integers(0, 2, n)] + rng.normal(size=(n, 2)) / np.sqrt(u)[:, None]


@pytest.fixture(scope="module")
def by_family():
    """The same grid on t data (ν = 2.5: its tails are the outliers) and on Gaussian data.

    The choice is not close either way. Gaussian data: the Student-t fits' degrees of freedom
    grow large (26 and 33 at k = 2: nearly Gaussian components; the likelihood is flat in ν, so
    EM stops short of the bound), they gain no likelihood (here they stop 2-3 nats below the
    Gaussian fits) and pay k log n ≈ 12 more BIC units at k = 2. t data: Gaussian components need wide ones
    for the outliers, and the best t fit (k = 2) beat the best Gaussian one by 27 to 70 BIC
    units at each of the seeds 0-7 of this generator.
    """
    rng = np.random.default_rng(0)
    grid = dict(k=KS, covariance_types="full", families=("gaussian", "student_t"))
    heavy = bayesgmm.select(_two_clusters(rng, nu=2.5), **grid)
    light = bayesgmm.select(_two_clusters(rng), **grid)
    return heavy, light


def test_select_picks_student_t_for_heavy_tails_and_gaussian_otherwise(by_family):
    heavy, light = by_family
    assert (heavy.best_k, heavy.best_covariance_type, heavy.best_family) == (2, "full", "student_t")
    assert (light.best_k, light.best_covariance_type, light.best_family) == (2, "full", "gaussian")
    assert heavy.best is heavy.fits[(2, "full", "student_t")] and heavy.best.params.family == "student_t"
    table = light.table
    assert list(table.columns[:3]) == ["k", "covariance_type", "family"]
    assert [(row.k, row.family) for row in table.itertuples()] == [
        (k, family) for family in ("gaussian", "student_t") for k in KS
    ]
    gaussian, student_t = table[table.family == "gaussian"], table[table.family == "student_t"]
    np.testing.assert_array_equal(student_t.n_parameters.to_numpy(), gaussian.n_parameters.to_numpy() + KS)
    # Gaussian data: nearly Gaussian t components, no better than the Gaussian ones
    assert np.all(np.asarray(light.fits[(2, "full", "student_t")].params.dof) > 10)
    gain = 400 * (student_t.log_likelihood.to_numpy() - gaussian.log_likelihood.to_numpy())  # total, in nats
    assert np.all(gain < 1.0)


def test_families_default_leaves_the_table_and_keys_unchanged(selection):
    assert "family" not in selection.table.columns and selection.best_family == "gaussian"
    assert all(len(key) == 2 for key in selection.fits)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(families=["gaussian", "cauchy"]), "family must be one of"),
        (dict(families=[]), "at least one component family"),
        (dict(dof="shared"), "add 'student_t' to families"),
        (dict(families=("student_t",), criterion="loo"), "Gaussian components only"),
    ],
)
def test_bad_families_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bayesgmm.select(load_faithful(), k=[1], **kwargs)


def test_threaded_grid_equals_the_grid_fitted_one_type_at_a_time(monkeypatch):
    """``select`` fits its covariance types' programs in host threads (``_threads.thread_map``); each fit
    is the one ``select`` gives for that type alone (its own call, one program, no thread), bit for bit."""
    compiled_grid(monkeypatch)
    X = load_faithful()
    together = bayesgmm.select(X, k=KS, covariance_types=TYPES, close_call_starts=0)
    for covariance_type in TYPES:
        alone = bayesgmm.select(X, k=KS, covariance_types=covariance_type, close_call_starts=0)
        for k in KS:
            np.testing.assert_array_equal(
                together.fits[k, covariance_type].params.means, alone.fits[k, covariance_type].params.means
            )
            assert together.fits[k, covariance_type].log_likelihood == alone.fits[k, covariance_type].log_likelihood


def test_threads_trace_in_the_caller_s_float_width(monkeypatch):
    """``jax.enable_x64`` is a thread-local context: a select inside ``enable_x64(True)`` while the global
    setting is off fits float64 in every thread (a worker on the global setting would take the float64
    rows as float32), and inside ``enable_x64(False)`` float32; as the same type fitted alone."""
    import jax

    compiled_grid(monkeypatch)

    X = load_faithful()
    for context, dtype in ((True, np.float64), (False, np.float32)):
        jax.config.update("jax_enable_x64", not context)
        try:
            with jax.enable_x64(context):
                threaded = bayesgmm.select(X, k=[2, 3], covariance_types=["full", "tied"], close_call_starts=0)
                alone = bayesgmm.select(X, k=[2, 3], covariance_types="tied", close_call_starts=0)
        finally:
            jax.config.update("jax_enable_x64", True)  # the suite's setting (conftest.py)
        assert threaded.fits[3, "tied"].params.means.dtype == dtype
        np.testing.assert_array_equal(threaded.fits[3, "tied"].params.means, alone.fits[3, "tied"].params.means)


def test_thread_map_keeps_order_and_raises_the_first_error(monkeypatch):
    from bayesgmm import _threads

    monkeypatch.setattr(_threads, "host_cores", lambda: 2)
    assert _threads.thread_map(lambda x: x * x, range(7)) == [x * x for x in range(7)]

    def fail(x):
        if x in (2, 5):
            raise ValueError(f"item {x}")
        return x

    with pytest.raises(ValueError, match="item 2"):
        _threads.thread_map(fail, range(7))


def test_a_failed_refit_leaves_the_grid_s_fits(monkeypatch):
    """``select``'s other starts (EVV from EEV's classification, the close calls' k-means partitions)
    refit grid points that already have a fit: when such a refit cannot continue (``DegenerateFitError``)
    the grid's fits stand and ``select`` returns them (on Old Faithful EVV with 3 components is
    otherwise refitted from EEV's classification, 7.0 BIC units better)."""
    import bayesgmm.selection as selection_module

    X = load_faithful()
    options = dict(k=[1, 2, 3], covariance_types=["EEV", "EVV"], close_call_starts=0)
    with_refits = bayesgmm.select(X, **options)
    nested = (with_refits.table["start"] == "EEV").to_numpy()
    assert nested.any()
    calls = []
    fit_groups = selection_module.fit_groups

    def failing_refits(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2:  # the grid's two programs ran; every later call is another start
            raise bayesgmm.DegenerateFitError("a refit's covariance stopped being positive definite")
        return fit_groups(*args, **kwargs)

    monkeypatch.setattr(selection_module, "fit_groups", failing_refits)
    refitted = bayesgmm.select(X, **(options | dict(close_call_starts=5)))
    assert len(calls) > 2  # the refits ran (and failed)
    assert set(refitted.table["start"]) == {"hierarchical"}
    bic, refitted_bic = with_refits.table["bic"].to_numpy(), refitted.table["bic"].to_numpy()
    np.testing.assert_array_equal(refitted_bic[~nested], bic[~nested])  # the grid's own fits
    assert np.all(refitted_bic[nested] > bic[nested])  # the tree's fits, where the refit would have won


@pytest.mark.parametrize(
    "X, options",
    [
        (load_faithful(), dict()),  # the default grid: 4 types x k = 1..9, three close calls refitted
        (load_faithful(), dict(k=[1, 2, 3], covariance_types=["EEV", "EVV", "VVE", "EVE"])),  # nested starts
        (load_faithful(), dict(k=[2, 3], covariance_types="tied", families=("gaussian", "student_t"))),
        (load_faithful(), dict(k=[1, 2, 3], covariance_types=["full", "diag"], noise=(False, True))),
    ],
    ids=["default", "nested", "families", "noise"],
)
def test_the_numpy_driver_s_grid_is_the_compiled_grid(X, options, monkeypatch):
    """Small grids run on em's NumPy driver (``prepare_grid``): no program is compiled, and every grid
    point, refits included (close calls, nested starts), is the compiled grid's fit to round-off
    (float64 both; the compiled fits sum in chunks): the same table, the same choice."""
    import warnings

    assert bayesgmm.em.on_host(bayesgmm.em.prepare_grid(X, None, [1, 2, 3], [bayesgmm.em.EMConfig.validated()]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        numpy = bayesgmm.select(X, **options)
        compiled_grid(monkeypatch)
        compiled = bayesgmm.select(X, **options)
    left, right = numpy.table, compiled.table
    assert list(left.columns) == list(right.columns)
    for column in ("k", "covariance_type", "n_parameters", "n_iter", "converged", "spurious", "start"):
        assert left[column].tolist() == right[column].tolist(), column
    for column in ("log_likelihood", "bic", "aic", "icl"):
        np.testing.assert_allclose(left[column].to_numpy(), right[column].to_numpy(), rtol=1e-9, err_msg=column)
    assert (numpy.best_k, numpy.best_covariance_type, numpy.best_family) == (
        compiled.best_k,
        compiled.best_covariance_type,
        compiled.best_family,
    )
    for key, fit in numpy.fits.items():
        np.testing.assert_allclose(fit.params.means, compiled.fits[key].params.means, rtol=1e-8, atol=1e-9)


def test_a_grid_fitted_again_and_again_moves_to_the_compiled_programs(monkeypatch):
    """Ski rental (``GRID_HOST_MAX_WORK``): a grid runs on the NumPy driver while the work done there for
    it in this process, the call's own included, stays within the limit per configuration; then on the
    compiled programs. Another grid (other ks) keeps its own count."""
    from bayesgmm.em import EMConfig, on_host, prepare_grid

    X = load_faithful()
    configs = [EMConfig.validated(covariance_type=t) for t in ("full", "diag")]
    work = 272 * (1 + 2 + 3) * 2 * 3 * len(configs)  # n (Σ k) d (d + 1) n_init max_iter / 100, over the configurations
    monkeypatch.setattr(bayesgmm.em._fit, "GRID_HOST_MAX_WORK", 3 * work // len(configs))
    drivers = [on_host(prepare_grid(X, None, [1, 2, 3], configs)) for _ in range(5)]
    assert drivers == [True, True, True, False, False]
    assert on_host(prepare_grid(X, None, [1, 2], configs))  # another grid
    assert not on_host(prepare_grid(X, None, [1, 2, 3], configs))
    monkeypatch.setattr(bayesgmm.em._fit, "GRID_HOST_MAX_WORK", work // len(configs) - 1)  # one call's work
    assert on_host(prepare_grid(X[:200], None, [1, 2, 3], configs))  # fewer rows: within the limit
    assert not on_host(prepare_grid(np.vstack([X, X]), None, [1, 2, 3], configs))  # too big at once
    longer = [EMConfig.validated(covariance_type=t, max_iter=200) for t in ("full", "diag")]
    assert not on_host(prepare_grid(X[:200], None, [1, 2, 3], longer))  # twice the iterations: too much work


def test_eve_grids_count_their_costlier_m_step(monkeypatch):
    """EVE's iterated M-step costs about twice as much per unit of work on the NumPy driver as the
    budget assumes (``host_cost``, measured in _eigen.py): at the limit where another model's grid
    stays on NumPy, EVE's compiles; Old Faithful's default grids of EVE and VVE (where NumPy is three
    times faster than compiling) stay."""
    from bayesgmm.covariance import get_structure
    from bayesgmm.em import EMConfig, on_host, prepare_grid

    assert [get_structure(name).em.host_cost for name in ("full", "VVV", "VEV", "EVE", "VVE")] == [1, 1, 1, 2, 1]
    X = load_faithful()
    work = 272 * (1 + 2 + 3) * 2 * 3  # n (Σ k) d (d + 1) n_init max_iter / 100 of one configuration
    monkeypatch.setattr(bayesgmm.em._fit, "GRID_HOST_MAX_WORK", 1.5 * work)
    for name, stays in (("VVV", True), ("VEV", True), ("EVE", False), ("VVE", True)):
        assert on_host(prepare_grid(X, None, [1, 2, 3], [EMConfig.validated(covariance_type=name)])) is stays, name
    monkeypatch.undo()
    for name in ("EVE", "VVE"):
        assert on_host(prepare_grid(X, None, list(range(1, 10)), [EMConfig.validated(covariance_type=name)]))
