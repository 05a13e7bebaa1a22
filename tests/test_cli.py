"""The command line, end to end on small data: ``bayesgmm fit``, ``select`` and ``demo``.

Each command's numbers are checked against the library call it wraps (``em_fit``, ``select``,
``infer`` with the same arguments and seed: the same compiled programs on the same inputs, so
the results agree to round-off), files are read back with the library's own readers
(``bayesgmm.load``, ``xarray.open_datatree``, pandas) and plots are decoded as PNGs. Bad input
exits with status 2, one line on stderr and no file written. The console script is run in a
subprocess once; everything else calls ``bayesgmm.cli.main`` in-process, so the compiled fits
are shared between tests.
"""

import importlib.util
import io
import re
import subprocess
import sys
import warnings
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest

import bayesgmm
from bayesgmm import em_fit
from bayesgmm import plot as bayesgmm_plot
from bayesgmm.cli import Report, main, parse_condition, parse_covariance_types, parse_ks, read_table
from bayesgmm.covariance import MCLUST_MODELS
from bayesgmm.datasets import FAITHFUL_COLUMNS, load_faithful

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_csv(path, X, names):
    path.write_text(",".join(names) + "\n" + "\n".join(",".join(f"{v:.17g}" for v in row) for row in X) + "\n")
    return path


@pytest.fixture
def faithful_csv(tmp_path):
    return _write_csv(tmp_path / "faithful.csv", load_faithful(), FAITHFUL_COLUMNS)


def _run(capsys, argv):
    capsys.readouterr()
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err.strip().splitlines()


def _assert_png(path, *, min_side=100):
    """A decodable PNG image (not just the magic bytes) of a plausible size."""
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) >= min_side


def _spy(monkeypatch, name):
    """Record the calls of ``bayesgmm.plot.<name>`` (the CLI looks it up at call time)."""
    calls, original = [], getattr(bayesgmm_plot, name)

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(bayesgmm_plot, name, spy)
    return calls


# ----------------------------------------------------------------------------- demo


def test_demo_prints_table_and_writes_png(tmp_path, capsys):
    plot = tmp_path / "demo.png"
    assert main(["demo", "--plot", str(plot), "--no-posterior"]) == 0
    out = capsys.readouterr().out
    for text in ("mean log-lik", "BIC", "Chosen by BIC", "component 0: weight", "covariance", "eruptions="):
        assert text in out
    # Old Faithful's two clusters: the 2-component fit must be the one BIC picks
    assert "Chosen by BIC: k = 2" in out
    _assert_png(plot)
    assert [p.name for p in tmp_path.iterdir()] == ["demo.png"]


def test_demo_numbers_match_a_direct_fit(capsys):
    main(["demo", "--plot", "", "--max-k", "2", "--no-posterior"])
    out = capsys.readouterr().out
    assert "started from mclust's hierarchical clustering" in out
    fit = em_fit(load_faithful(), 2, init="hierarchical", tol=1e-4, max_iter=500)  # select's defaults
    assert f"{fit.log_likelihood:.4f}" in out
    weights = np.sort(np.asarray(fit.params.weights))
    assert all(f"{w:.4f}" in out for w in weights)


@pytest.mark.slow
def test_demo_shows_a_posterior_summary(capsys):
    assert main(["demo", "--plot", "", "--n-init", "2", "--max-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "Bayesian fit of k = 2 by NUTS" in out
    for column in ("mean", "sd", "ess_bulk", "r_hat"):
        assert column in out
    assert "weights[0]" in out and "means[0, eruptions]" in out


@pytest.mark.slow
def test_demo_fit_and_posterior_name_the_same_components(capsys):
    """The demo's EM table and its NUTS table label the components alike: component j's weight and
    eruption mean in the EM fit are within the posterior's 3 sd of weights[j] and means[j, eruptions]."""
    assert main(["demo", "--plot", "", "--n-init", "2", "--max-k", "2"]) == 0
    out = capsys.readouterr().out
    em_weights = [float(w) for w in re.findall(r"component \d: weight ([0-9.]+)", out)]
    em_eruptions = [float(m) for m in re.findall(r"mean\s+eruptions=([0-9.]+)", out)]
    assert len(em_weights) == len(em_eruptions) == 2
    for j in range(2):
        weight_mean, weight_sd = map(float, re.search(rf"weights\[{j}\]\s+([0-9.]+)\s+([0-9.]+)", out).groups())
        mean, sd = map(float, re.search(rf"means\[{j}, eruptions\]\s+([0-9.]+)\s+([0-9.]+)", out).groups())
        assert abs(weight_mean - em_weights[j]) < 3 * weight_sd, (j, weight_mean, em_weights)
        assert abs(mean - em_eruptions[j]) < 3 * sd, (j, mean, em_eruptions)


def test_console_script_runs_main_and_bad_arguments_exit_2():
    """The installed ``bayesgmm`` script is ``bayesgmm.cli:main``; the one subprocess of this file."""
    (script,) = entry_points(group="console_scripts", name="bayesgmm")
    assert script.value == "bayesgmm.cli:main"
    executable = Path(sys.executable).with_name("bayesgmm")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "bayesgmm.cli"]
    completed = subprocess.run([*command, "demo", "--max-k", "0"], capture_output=True, text=True)
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr.strip().splitlines() == ["bayesgmm: error: --max-k and --n-init must be >= 1, got 0 and 1."]
    with pytest.raises(SystemExit) as info:
        main(["nonsense"])
    assert info.value.code == 2


# ----------------------------------------------------------------------------- fit


def test_fit_em_from_csv_matches_em_fit_and_plots_the_density(faithful_csv, tmp_path, capsys, monkeypatch):
    density_calls = _spy(monkeypatch, "plot_density")
    out_file, plot_file = tmp_path / "params.json", tmp_path / "fit.png"
    status, out, err = _run(
        capsys, ["fit", str(faithful_csv), "-k", "2", "--out", str(out_file), "--plot", str(plot_file)]
    )
    assert status == 0 and err == []
    fit = em_fit(load_faithful(), 2, n_init=5, seed=0, max_iter=500)
    assert f"mean log-likelihood {fit.log_likelihood:.4f}" in out
    assert "EM: fitting k = 2 (full covariances), best of 5 restarts: done in" in out  # the stage line
    saved = bayesgmm.load(out_file)
    # same compiled fit on the same float64 data: equal to round-off
    np.testing.assert_allclose(np.asarray(saved.weights), np.asarray(fit.params.weights), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(saved.means), np.asarray(fit.params.means), rtol=1e-12)
    assert len(density_calls) == 1  # d = 2, EM: the density plot
    _assert_png(plot_file)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faithful.csv", "fit.png", "params.json"]  # no temporaries


def test_fit_condition_writes_the_conditional_means_of_the_other_columns(faithful_csv, tmp_path, capsys):
    """--condition eruptions: waiting's conditional mean and sd per row, equal to predict_mean / predict_cov
    of the same EM fit; a position names the same column."""
    import pandas as pd

    predictions = tmp_path / "pred.csv"
    argv = ["fit", str(faithful_csv), "-k", "2", "--condition", "eruptions", "--predictions", str(predictions)]
    status, out, err = _run(capsys, argv)
    assert status == 0 and err == []
    assert f"Wrote the conditional means and standard deviations given eruptions to {predictions}" in out
    X = load_faithful()
    params = em_fit(X, 2, n_init=5, seed=0, max_iter=500).params
    written = pd.read_csv(predictions)
    assert list(written.columns) == ["eruptions", "waiting_mean", "waiting_sd"]
    np.testing.assert_array_equal(written["eruptions"], X[:, 0])
    np.testing.assert_allclose(
        written["waiting_mean"], np.asarray(params.predict_mean(X[:, [0]], [0]))[:, 0], rtol=1e-12
    )
    sd = np.sqrt(np.asarray(params.predict_cov(X[:, [0]], [0]))[:, 0, 0])
    np.testing.assert_allclose(written["waiting_sd"], sd, rtol=1e-12)
    # 0-based position 1 is waiting (after --columns, the order given there)
    argv = ["fit", str(faithful_csv), "-k", "2", "--columns", "waiting,eruptions", "--condition", "0"]
    status, _, err = _run(capsys, argv + ["--predictions", str(predictions)])
    assert status == 0 and err == []
    assert list(pd.read_csv(predictions).columns) == ["waiting", "eruptions_mean", "eruptions_sd"]


@pytest.mark.slow  # compiles a MAP fit
def test_fit_map_condition_writes_the_posterior_predictive_means(faithful_csv, tmp_path, capsys):
    """With a posterior (MAP here: one draw) the predictions are Posterior.predict_mean / predict_cov of that run."""
    import pandas as pd

    predictions = tmp_path / "pred.csv"
    argv = ["fit", str(faithful_csv), "-k", "2", "--method", "map", "--num-steps", "300", "--condition", "waiting"]
    status, out, err = _run(capsys, argv + ["--predictions", str(predictions)])
    assert status == 0 and err == []
    assert "Wrote the posterior predictive conditional means and standard deviations given waiting" in out
    X = load_faithful()
    shown = em_fit(X, 2, n_init=5, seed=0, max_iter=500)
    posterior = bayesgmm.infer(
        pd.DataFrame(X, columns=list(FAITHFUL_COLUMNS)), 2, method="map", num_steps=300, seed=0, init=shown
    )
    written = pd.read_csv(predictions)
    assert list(written.columns) == ["waiting", "eruptions_mean", "eruptions_sd"]
    mean = np.asarray(posterior.predict_mean(X[:, [1]], [1]))[:, 0]
    np.testing.assert_allclose(written["eruptions_mean"], mean, rtol=1e-12)
    sd = np.sqrt(np.asarray(posterior.predict_cov(X[:, [1]], [1]))[:, 0, 0])
    np.testing.assert_allclose(written["eruptions_sd"], sd, rtol=1e-12)


def test_parse_condition():
    names = ["a", "b", "c"]
    assert parse_condition("c, a", names) == [2, 0]
    assert parse_condition("1", names) == [1]
    assert parse_condition("0", ["x", "0"]) == [1]  # a column named "0" wins over the position
    with pytest.raises(ValueError, match=r"no column 'd'; give column names from \['a', 'b', 'c'\] or 0-based"):
        parse_condition("a,d", names)
    with pytest.raises(ValueError, match="no column '3'"):
        parse_condition("3", names)
    with pytest.raises(ValueError, match="names the column 'a' twice"):
        parse_condition("a,0", names)
    with pytest.raises(ValueError, match="names every column, leaving nothing to predict"):
        parse_condition("a,b,c", names)


@pytest.mark.slow  # max_iter=1 compiles its own (shorter) history buffer
def test_fit_warnings_are_one_line_each_and_not_errors(faithful_csv, capsys):
    status, out, err = _run(capsys, ["fit", str(faithful_csv), "-k", "2", "--max-iter", "1"])
    assert status == 0 and "converged: False" in out
    assert len(err) == 1 and err[0].startswith("bayesgmm: warning: EM did not converge in max_iter=1"), err


@pytest.mark.slow  # compiles a 3-feature diag EM fit and the pair plot's marginals
def test_fit_npy_with_three_features_writes_npz_and_a_pair_plot(tmp_path, capsys, monkeypatch):
    pairs_calls = _spy(monkeypatch, "plot_pairs")
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(60, 3)), rng.normal(size=(60, 3)) + 4.0])
    np.save(tmp_path / "data.npy", X)
    out_file, plot_file = tmp_path / "params.npz", tmp_path / "pairs.png"
    argv = ["fit", str(tmp_path / "data.npy"), "-k", "2", "--covariance-type", "diag", "--n-init", "1"]
    status, out, err = _run(capsys, argv + ["--out", str(out_file), "--plot", str(plot_file)])
    assert status == 0 and err == []
    assert "features x0, x1, x2" in out
    fit = em_fit(X, 2, covariance_type="diag", n_init=1, seed=0, max_iter=500)
    saved = bayesgmm.load(out_file)
    assert saved.covariance_type == "diag"
    np.testing.assert_allclose(np.asarray(saved.means), np.asarray(fit.params.means), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(saved.covariances), np.asarray(fit.params.covariances), rtol=1e-12)
    assert len(pairs_calls) == 1 and pairs_calls[0][1]["feature_names"] == ["x0", "x1", "x2"]
    _assert_png(plot_file)


def test_fit_student_t_prints_the_degrees_of_freedom_and_saves_them(faithful_csv, tmp_path, capsys):
    out_file = tmp_path / "t.json"
    argv = ["fit", str(faithful_csv), "-k", "2", "--n-init", "1", "--family", "student_t", "--dof", "shared"]
    status, out, err = _run(capsys, argv + ["--out", str(out_file)])
    assert status == 0 and err == []
    fit = em_fit(load_faithful(), 2, n_init=1, seed=0, max_iter=500, family="student_t", dof="shared")
    assert "Student-t components (one shared degrees of freedom)" in out
    assert f"BIC {float(fit.params.bic(load_faithful())):.2f}" in out  # counts the one shared dof
    for component, nu in enumerate(np.asarray(fit.params.dof)):
        assert (
            f"component {component}: weight {float(fit.params.weights[component]):.4f}, degrees of freedom "
            f"ν {nu:.4g}" in out
        )
    assert out.count("scale matrix") == 2 and "covariance\n" not in out
    saved = bayesgmm.load(out_file)
    assert (saved.family, saved.dof_mode) == ("student_t", "shared")
    np.testing.assert_allclose(np.asarray(saved.dof), np.asarray(fit.params.dof), rtol=1e-12)


def test_fit_and_select_with_a_noise_component(tmp_path, capsys):
    """--noise: em_fit's and select's noise=True; the table and the saved file carry the noise component."""
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(-3, 0.5, (150, 2)), rng.normal(3, 0.5, (150, 2)), rng.uniform(-15, 15, (30, 2))])
    data = _write_csv(tmp_path / "noisy.csv", X, ["a", "b"])
    out_file = tmp_path / "noise.json"
    status, out, err = _run(capsys, ["fit", str(data), "-k", "2", "--n-init", "1", "--noise", "--out", str(out_file)])
    assert status == 0 and err == []
    fit = em_fit(X, 2, n_init=1, seed=0, max_iter=500, noise=True)
    volume = float(np.prod(X.max(0) - X.min(0)))
    assert "with a uniform noise component" in out
    assert f"noise: weight {float(fit.params.noise_weight):.4f}, uniform on a box of volume {volume:.4g}" in out
    saved = bayesgmm.load(out_file)
    np.testing.assert_allclose(float(saved.noise_weight), float(fit.params.noise_weight), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(saved.noise_bounds), [X.min(0), X.max(0)], rtol=1e-12)
    status, out, err = _run(capsys, ["select", str(data), "-k", "1-3", "--covariance-types", "spherical", "--noise"])
    selection = bayesgmm.select(X, [1, 2, 3], ["spherical"], max_iter=500, noise=True)
    assert status == 0 and f"k = {selection.best_k}" in out and selection.best_k == 2
    status, out, err = _run(capsys, ["fit", str(data), "-k", "2", "--noise", "--method", "map"])
    assert status != 0


def test_fit_errors_file_deconvolves_like_em_fit(tmp_path, capsys):
    """Standard deviations in a CSV (columns found by name, in another order) or covariances in a 3-D .npy."""
    rng = np.random.default_rng(1)
    sd = rng.uniform(0.1, 0.5, size=(120, 2))
    X = np.concatenate([rng.normal(size=(60, 2)), rng.normal(size=(60, 2)) + 4.0]) + sd * rng.normal(size=(120, 2))
    data = _write_csv(tmp_path / "data.csv", X, ["a", "b"])
    errors_csv = _write_csv(tmp_path / "sd.csv", sd[:, ::-1], ["b", "a"])
    covariances = np.einsum("ni,ij->nij", sd**2, np.eye(2))
    np.save(tmp_path / "cov.npy", covariances)
    fit = em_fit(X, 2, n_init=1, seed=0, max_iter=500, measurement_error=sd)
    log_likelihood = float(np.sum(np.asarray(fit.params.log_prob(X, measurement_error=sd))))
    bic = -2 * log_likelihood + fit.params.n_parameters * np.log(len(X))
    for errors in (errors_csv, tmp_path / "cov.npy"):
        out_file = tmp_path / "p.npz"
        argv = ["fit", str(data), "-k", "2", "--n-init", "1", "--errors", str(errors), "--out", str(out_file)]
        status, out, err = _run(capsys, argv)
        assert status == 0 and err == []
        assert "deconvolving the measurement errors" in out and f"BIC {bic:.2f}" in out
        saved = bayesgmm.load(out_file)
        np.testing.assert_allclose(np.asarray(saved.covariances), np.asarray(fit.params.covariances), rtol=1e-9)


def test_select_compares_families(faithful_csv, tmp_path, capsys):
    import pandas as pd

    table_file = tmp_path / "table.csv"
    argv = ["select", str(faithful_csv), "--k", "2-3", "--covariance-types", "tied", "--families", "gaussian,student_t"]
    status, out, err = _run(capsys, argv + ["--out", str(table_file)])
    assert status == 0 and err == []
    reference = bayesgmm.select(
        load_faithful(), [2, 3], ["tied"], max_iter=500, seed=0, families=("gaussian", "student_t")
    )
    written = pd.read_csv(table_file)
    assert list(written.columns) == list(reference.table.columns) and "family" in written.columns
    np.testing.assert_allclose(written["bic"], reference.table["bic"], rtol=1e-12)
    assert "4 mixtures (k in 2,3 x tied x gaussian, student_t)" in out
    chosen = f"Chosen by BIC: k = {reference.best_k}, covariance type tied, family {reference.best_family}"
    assert chosen in out
    for row in reference.table.itertuples():
        assert re.search(rf"\b{row.k}\s+tied\s+{row.family}\s+{row.log_likelihood:.4f}\s+.*{row.bic:.2f}", out)


@pytest.mark.slow  # one tiny NUTS run (2 chains x 100 + 100), then the same run through infer (no recompilation)
def test_fit_nuts_writes_a_netcdf_posterior_and_posterior_ellipses(faithful_csv, tmp_path, capsys, monkeypatch):
    import arviz_stats
    import pandas as pd
    import xarray as xr

    ellipse_calls = _spy(monkeypatch, "plot_posterior_ellipses")
    out_file, plot_file = tmp_path / "posterior.nc", tmp_path / "posterior.png"
    sampler = ["--num-warmup", "100", "--num-samples", "100", "--num-chains", "2", "--no-progress"]
    argv = ["fit", str(faithful_csv), "-k", "2", "--method", "nuts", "--columns", "waiting,eruptions", *sampler]
    status, out, err = _run(capsys, argv + ["--out", str(out_file), "--plot", str(plot_file)])
    assert status == 0 and err == []
    assert "NUTS posterior summary" in out and "r_hat" in out and "ess_bulk" in out
    assert "means[0, waiting]" in out and "means[1, eruptions]" in out
    assert "divergent transitions:" in out and "Posterior mean parameters:" in out

    tree = xr.open_datatree(out_file)
    assert {"posterior", "log_likelihood", "observed_data", "sample_stats"} <= set(tree.children)
    assert dict(tree.posterior.sizes) == {"chain": 2, "draw": 100, "component": 2, "feature": 2, "feature_bis": 2}
    assert list(tree.posterior["feature"].values) == ["waiting", "eruptions"]
    X = load_faithful()[:, [1, 0]]
    shown = em_fit(X, 2, n_init=5, seed=0, max_iter=500)  # the EM fit the command shows and starts from
    assert f"EM: mean log-likelihood {shown.log_likelihood:.4f}" in out
    direct = bayesgmm.infer(
        pd.DataFrame(X, columns=["waiting", "eruptions"]),
        2,
        method="nuts",
        num_warmup=100,
        num_samples=100,
        num_chains=2,
        seed=0,
        progress_bar=False,
        init=shown,
    )
    # the file holds the draws of that very run (deterministic on CPU), and ArviZ reads them as they were
    for name in ("weights", "means", "covariances"):
        np.testing.assert_allclose(tree.posterior[name].values, direct.to_arviz().posterior[name].values, rtol=1e-12)
    np.testing.assert_array_equal(tree.observed_data["obs"].values, X)
    with warnings.catch_warnings():  # 200 draws: some Pareto k-hat above 0.57 is expected, and beside the point here
        warnings.simplefilter("ignore", UserWarning)
        np.testing.assert_allclose(arviz_stats.loo(tree).elpd, arviz_stats.loo(direct.to_arviz()).elpd, rtol=1e-12)
    assert len(ellipse_calls) == 1  # NUTS on d = 2: the posterior ellipse clouds
    _assert_png(plot_file)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faithful.csv", "posterior.nc", "posterior.png"]


# ----------------------------------------------------------------------------- select


@pytest.mark.slow  # compiles the batched grid for two covariance types
def test_select_prints_the_grid_and_writes_csv_and_plot(faithful_csv, tmp_path, capsys, monkeypatch):
    import pandas as pd

    table_file, plot_file = tmp_path / "table.csv", tmp_path / "bic.png"
    argv = ["select", str(faithful_csv), "--k", "1-3", "--covariance-types", "full,diag", "--n-init", "2"]
    status, out, err = _run(capsys, argv + ["--out", str(table_file), "--plot", str(plot_file)])
    assert status == 0 and err == []
    reference = bayesgmm.select(load_faithful(), range(1, 4), ["full", "diag"], n_init=2, max_iter=500, seed=0)
    written = pd.read_csv(table_file)
    assert list(written.columns) == list(reference.table.columns)
    assert (
        written[["k", "covariance_type"]].values.tolist() == reference.table[["k", "covariance_type"]].values.tolist()
    )
    for column in ("log_likelihood", "bic", "aic", "icl"):
        # to_csv writes floats by their shortest repr: read back to the same bits, same compiled fits
        np.testing.assert_allclose(written[column], reference.table[column], rtol=1e-12)
    # Old Faithful: BIC picks two full-covariance components (the select docstring's example too)
    assert (reference.best_k, reference.best_covariance_type) == (2, "full")
    assert "Chosen by BIC: k = 2, covariance type full" in out
    for row in reference.table.itertuples():
        assert re.search(rf"\b{row.k}\s+{row.covariance_type}\s+{row.log_likelihood:.4f}\s+.*{row.bic:.2f}", out)
    assert out.count("<- lowest BIC") == 1
    _assert_png(plot_file)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bic.png", "faithful.csv", "table.csv"]

    # with rich on a terminal the same table is drawn by rich, with the same numbers
    if importlib.util.find_spec("rich") is not None:
        from rich.console import Console

        with monkeypatch.context() as patch:
            patch.setattr("bayesgmm.cli._render.rich_console", lambda: Console(file=sys.stdout, width=150))
            status, drawn, err = _run(capsys, argv)
        assert status == 0 and err == []
        assert "─" in drawn and "─" not in out  # rich's rule under the header
        # the table's numbers: everything before the chosen model, without the stage's timing
        numbers = lambda text: re.findall(r"-?\d+\.\d+", re.sub(r"done in \S+ s", "", text.split("Chosen by")[0]))  # noqa: E731
        assert numbers(drawn) == numbers(out) and len(numbers(out)) == 6 * 4
        assert "Chosen by BIC: k = 2, covariance type full" in drawn and "\u25c0 lowest BIC" in drawn

    # another criterion on the same grid (no recompilation): the argmin of that column
    status, out, err = _run(capsys, argv + ["--criterion", "icl", "--max-iter", "1"])
    assert status == 0
    assert len(err) == 1 and re.match(r"bayesgmm: warning: \d of 6 fits did not converge in --max-iter 1", err[0])
    with pytest.warns(bayesgmm.ConvergenceWarning):
        short = bayesgmm.select(load_faithful(), range(1, 4), ["full", "diag"], n_init=2, max_iter=1, seed=0)
    best = short.table.loc[short.table["icl"].idxmin()]
    assert f"Chosen by ICL: k = {best['k']}, covariance type {best['covariance_type']}" in out


def test_report_stage_and_table_on_a_rich_console():
    console = pytest.importorskip("rich.console")
    buffer = io.StringIO()
    report = Report(console.Console(file=buffer, width=100))
    with report.stage("EM: fitting"):
        pass
    report.table(["k", "BIC"], [[1, "10.00"], [2, "8.50"]], best=1, why="lowest BIC")
    text = buffer.getvalue()
    assert re.search(r"EM: fitting: done in \d+\.\d s", text)
    assert re.search(r"k\s+BIC", text) and re.search(r"1\s+10\.00\s*\n", text)
    assert re.search(r"2\s+8\.50\s+\u25c0", text) and "\u25c0 lowest BIC" in text  # the marked row, the caption


@pytest.mark.parametrize(
    "text, expected",
    [("1-9", list(range(1, 10))), ("3", [3]), ("2,3,5", [2, 3, 5]), (" 1-3 , 8,2", [1, 2, 3, 8]), ("4-4", [4])],
)
def test_parse_ks(text, expected):
    assert parse_ks(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("0-3", "must go up from k >= 1"),
        ("5-2", "must go up from k >= 1"),
        ("a", "'a' is not a number or a range"),
        ("", "'' is not a number or a range"),
        ("1-3,", "'' is not a number or a range"),
        ("1.5", "not a number or a range"),
        ("1-100000", "more than 1000 values of k"),
    ],
)
def test_parse_ks_rejects(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_ks(text)


def test_parse_covariance_types():
    assert parse_covariance_types("diag, full,diag") == ["diag", "full"]
    assert parse_covariance_types("all") == list(MCLUST_MODELS)
    assert parse_covariance_types("VEV,full") == ["VEV", "full"]
    with pytest.raises(ValueError, match=r"unknown \['banana'\]; give 'all' \(mclust's 14 models\) or a comma-sep"):
        parse_covariance_types("full,banana")


@pytest.mark.slow  # compiles two of mclust's models
def test_select_takes_mclusts_model_names(faithful_csv, tmp_path, capsys):
    """``--covariance-types EEE,VEV``: mclust's names through the command line, the same table
    as ``bayesgmm.select`` with those models (EEE with 3 components: mclust's choice)."""
    import pandas as pd

    table_file = tmp_path / "table.csv"
    argv = ["select", str(faithful_csv), "--k", "2-3", "--covariance-types", "EEE,VEV", "--out", str(table_file)]
    status, out, err = _run(capsys, argv)
    assert status == 0 and err == []
    reference = bayesgmm.select(load_faithful(), [2, 3], ["EEE", "VEV"], max_iter=500, seed=0)
    written = pd.read_csv(table_file)
    assert written["covariance_type"].tolist() == reference.table["covariance_type"].tolist()
    np.testing.assert_allclose(written["bic"], reference.table["bic"], rtol=1e-12)
    assert (reference.best_k, reference.best_covariance_type) == (3, "EEE")
    assert "Chosen by BIC: k = 3, covariance type EEE" in out


# ----------------------------------------------------------------------------- bad input


_ROWS = "a,b\n" + "".join(f"{i % 7 * 0.5:.1f},{(i * 3) % 11 * 0.25:.2f}\n" for i in range(30))  # 30 rows


@pytest.mark.parametrize(
    "content, argv, message",
    [
        ("a,b\n1,2\n3,x\n", ["fit", "{data}", "-k", "1"], "every value after the header line must be a number"),
        (_ROWS, ["fit", "{data}", "-k", "1", "--columns", "c"], r"no column\(s\) \['c'\]"),
        ("a,b\n1,2\n3,4\n", ["fit", "{data}", "-k", "5", "--out", "{tmp}/p.json"], "k=5 components need at least 5"),
        (_ROWS, ["fit", "{data}", "-k", "1", "--out", "{tmp}/p.nc"], "a .nc file holds a posterior .* EM has none"),
        (_ROWS, ["fit", "{data}", "-k", "1", "--out", "{tmp}/p.txt"], r"Unknown file extension '\.txt' for --out"),
        (_ROWS, ["fit", "{data}", "-k", "1", "--plot", "{tmp}/p.jpg"], r"Unknown file extension '\.jpg' for --plot"),
        (_ROWS, ["fit", "{data}", "-k", "1", "--plot", "{tmp}/no/p.png"], "does not exist; create it first"),
        (_ROWS, ["fit", "{data}", "-k", "1", "--condition", "a"], "--condition needs --predictions FILE.csv"),
        (_ROWS, ["fit", "{data}", "-k", "1", "--predictions", "{tmp}/p.csv"], "--predictions needs --condition"),
        (_ROWS, ["fit", "{data}", "-k", "1", "--condition", "a", "--predictions", "{tmp}/p.txt"], "for --predictions"),
        (
            _ROWS,
            ["fit", "{data}", "-k", "1", "--condition", "a,b", "--predictions", "{tmp}/p.csv"],
            "nothing to predict",
        ),
        (_ROWS, ["fit", "{data}", "-k", "1", "--condition", "z", "--predictions", "{tmp}/p.csv"], "no column 'z'"),
        (_ROWS, ["fit", "{data}", "-k", "1", "--dof", "3"], "--dof 3 applies to Student-t components"),
        (_ROWS, ["fit", "{data}", "-k", "1", "--family", "student_t", "--dof", "x"], "--dof 'x': give 'shared'"),
        (_ROWS, ["fit", "{data}", "-k", "1", "--family", "student_t", "--method", "map"], "fitted by EM only"),
        (_ROWS, ["fit", "{data}", "-k", "1", "--errors", "{data}", "--method", "svi"], "--errors is fitted by EM"),
        (_ROWS, ["fit", "{data}", "-k", "1", "--errors", "{data}", "--family", "student_t"], "needs Gaussian"),
        (_ROWS, ["fit", "{data}", "-k", "1", "--errors", "{tmp}/absent.csv"], "absent.csv: no such file"),
        (_ROWS, ["select", "{data}", "--families", "gaussian,cauchy"], r"--families .* unknown \['cauchy'\]"),
        (_ROWS, ["select", "{data}", "--k", "0-3"], "must go up from k >= 1"),
        (_ROWS, ["select", "{data}", "--k", "2-x"], "is not a number or a range"),
        (_ROWS, ["select", "{data}", "--covariance-types", "full,banana"], r"unknown \['banana'\]"),
        (_ROWS, ["select", "{data}", "--out", "{tmp}/t.json"], r"Unknown file extension '\.json' for --out"),
        (_ROWS, ["select", "{data}", "--plot", "{tmp}/b.txt"], r"Unknown file extension '\.txt' for --plot"),
        (_ROWS, ["select", "{data}", "--n-init", "0"], "--n-init and --max-iter must be >= 1"),
        (_ROWS, ["select", "{data}", "--k", "1-40", "--out", "{tmp}/t.csv"], "k=40 components need at least 40"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, content, argv, message):
    data = tmp_path / "data.csv"
    data.write_text(content)
    argv = [part.format(data=data, tmp=tmp_path) for part in argv]
    status, _, err = _run(capsys, argv)
    assert status == 2
    assert len(err) == 1 and err[0].startswith("bayesgmm: error: ") and re.search(message, err[0]), err
    assert [p.name for p in tmp_path.iterdir()] == ["data.csv"]


def test_output_checks_come_before_reading_the_data(tmp_path, capsys):
    """A bad --out is refused before the (possibly large) file is read: nothing on stdout."""
    status, out, err = _run(capsys, ["select", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "t.xlsx")])
    assert status == 2 and out == "" and "Unknown file extension '.xlsx'" in err[0]


# ----------------------------------------------------------------------------- parquet


def test_parquet_without_pyarrow_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    path = tmp_path / "data.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    status, _, err = _run(capsys, ["fit", str(path), "-k", "1"])
    assert status == 2 and err == [
        f"bayesgmm: error: {path}: reading .parquet needs pyarrow: pip install pyarrow (or save the data as .csv)."
    ]


def test_parquet_columns_are_read_as_float64(tmp_path):
    pa = pytest.importorskip("pyarrow")
    parquet = pytest.importorskip("pyarrow.parquet")
    X = load_faithful()
    path = tmp_path / "faithful.parquet"
    table = pa.table(
        {
            "eruptions": X[:, 0],
            "waiting": X[:, 1].astype(np.int32),  # integer minutes in the original data
            "station": ["old faithful"] * len(X),
        }
    )
    parquet.write_table(table, path)
    values, names = read_table(str(path), "waiting,eruptions")
    assert names == ["waiting", "eruptions"] and values.dtype == np.float64
    np.testing.assert_array_equal(values, X[:, [1, 0]])  # waiting times are whole minutes: exact
    with pytest.raises(ValueError, match=r"column\(s\) station \(string\) are not numbers; pick numeric columns"):
        read_table(str(path), None)
    with pytest.raises(ValueError, match=r"no column\(s\) \['depth'\]"):
        read_table(str(path), "depth")
    parquet.write_table(pa.table({"a": pa.array([1.0, None, 3.0])}), tmp_path / "nulls.parquet")
    values, _ = read_table(str(tmp_path / "nulls.parquet"), None)
    assert np.isnan(values[1, 0])  # a null is NaN, which check_data then reports by row
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ValueError, match="not a readable Parquet file"):
        read_table(str(tmp_path / "broken.parquet"), None)


def test_errors_file_must_fit_the_data(tmp_path, capsys):
    data = tmp_path / "data.csv"
    data.write_text(_ROWS)
    cases = [
        ("short.csv", "a,b\n0.1,0.1\n", r"1 rows; it needs one per data row \(30\)"),
        ("wide.csv", "x,y,z\n" + "0.1,0.1,0.1\n" * 30, r"3 column\(s\) \(x, y, z\); give one error standard deviation"),
    ]
    for name, content, message in cases:
        (tmp_path / name).write_text(content)
        status, _, err = _run(capsys, ["fit", str(data), "-k", "1", "--errors", str(tmp_path / name)])
        assert status == 2 and re.search(message, err[0]), err
    np.save(tmp_path / "cov.npy", np.zeros((30, 3, 3)))
    status, _, err = _run(capsys, ["fit", str(data), "-k", "1", "--errors", str(tmp_path / "cov.npy")])
    assert status == 2 and "must have shape (30, 2, 2)" in err[0]
