"""The command line: the demo prints the fitted mixture and writes its plot."""

import subprocess
import sys

import numpy as np
import pytest

from bayesgmm import em_fit
from bayesgmm.cli import main
from bayesgmm.datasets import load_faithful


def test_demo_prints_table_and_writes_png(tmp_path, capsys):
    plot = tmp_path / "demo.png"
    assert main(["demo", "--plot", str(plot), "--n-init", "3", "--no-posterior"]) == 0
    out = capsys.readouterr().out
    for text in ("mean log-lik", "BIC", "Chosen by BIC", "component 0: weight", "covariance", "eruptions="):
        assert text in out
    # Old Faithful's two clusters: the 2-component fit must be the one BIC picks
    assert "Chosen by BIC: k = 2" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["demo.png"]


def test_demo_numbers_match_a_direct_fit(capsys):
    main(["demo", "--plot", "", "--n-init", "3", "--max-k", "2", "--no-posterior"])
    out = capsys.readouterr().out
    fit = em_fit(load_faithful(), 2, n_init=3, seed=0, max_iter=500)
    assert f"{fit.log_likelihood:.4f}" in out
    weights = np.sort(np.asarray(fit.params.weights))
    assert all(f"{w:.4f}" in out for w in weights)


def test_bad_arguments_exit_2():
    completed = subprocess.run(
        [sys.executable, "-m", "bayesgmm.cli", "demo", "--max-k", "0"], capture_output=True, text=True
    )
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr.strip().splitlines() == ["bayesgmm: error: --max-k and --n-init must be >= 1, got 0 and 5."]
    with pytest.raises(SystemExit) as info:
        main(["nonsense"])
    assert info.value.code == 2


@pytest.mark.slow
def test_demo_shows_a_posterior_summary(capsys):
    assert main(["demo", "--plot", "", "--n-init", "2", "--max-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "Bayesian fit of k = 2 by NUTS" in out
    for column in ("mean", "sd", "ess_bulk", "r_hat"):
        assert column in out
    assert "weights[0]" in out and "means[0, eruptions]" in out


def _write_csv(path, X, names):
    path.write_text(",".join(names) + "\n" + "\n".join(",".join(f"{v:.17g}" for v in row) for row in X) + "\n")
    return path


def test_fit_em_from_csv_matches_em_fit(tmp_path, capsys):
    X = load_faithful()
    csv = _write_csv(tmp_path / "faithful.csv", X, ["eruptions", "waiting"])
    out_file = tmp_path / "params.json"
    assert main(["fit", str(csv), "-k", "2", "--out", str(out_file)]) == 0
    out = capsys.readouterr().out
    fit = em_fit(X, 2, n_init=5, seed=0, max_iter=500)
    assert f"mean log-likelihood {fit.log_likelihood:.4f}" in out
    from bayesgmm import load

    np.testing.assert_allclose(np.sort(np.asarray(load(out_file).weights)), np.sort(np.asarray(fit.params.weights)))


@pytest.mark.slow
def test_fit_nuts_prints_a_posterior_summary(tmp_path, capsys):
    csv = _write_csv(tmp_path / "data.csv", load_faithful(), ["eruptions", "waiting"])
    assert (
        main(
            [
                "fit",
                str(csv),
                "-k",
                "2",
                "--method",
                "nuts",
                "--num-warmup",
                "200",
                "--num-samples",
                "200",
                "--num-chains",
                "2",
                "--columns",
                "waiting,eruptions",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "NUTS posterior summary" in out and "r_hat" in out and "ess_bulk" in out
    assert "means[0, waiting]" in out and "means[1, eruptions]" in out


@pytest.mark.parametrize(
    "content, args, message",
    [
        ("a,b\n1,2\n3,x\n", [], "every value after the header line must be a number"),
        ("a,b\n1,2\n3,4\n", ["--columns", "c"], r"no column\(s\) \['c'\]"),
        ("a,b\n1,2\n3,4\n", ["-k", "5"], "k=5 components need at least 5 samples"),
    ],
)
def test_fit_bad_input_exits_2_with_one_line(tmp_path, content, args, message):
    import re

    csv = tmp_path / "bad.csv"
    csv.write_text(content)
    argv = ["fit", str(csv)] + (args if "-k" in args else ["-k", "1"] + args)
    completed = subprocess.run([sys.executable, "-m", "bayesgmm.cli", *argv], capture_output=True, text=True)
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), completed.stderr
