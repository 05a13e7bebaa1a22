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
    assert main(["demo", "--plot", str(plot), "--n-init", "3"]) == 0
    out = capsys.readouterr().out
    for text in ("mean log-lik", "BIC", "Chosen by BIC", "component 0: weight", "covariance", "eruptions="):
        assert text in out
    # Old Faithful's two clusters: the 2-component fit must be the one BIC picks
    assert "Chosen by BIC: k = 2" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["demo.png"]


def test_demo_numbers_match_a_direct_fit(capsys):
    main(["demo", "--plot", "", "--n-init", "3", "--max-k", "2"])
    out = capsys.readouterr().out
    fit = em_fit(load_faithful(), 2, n_init=3, seed=0, max_iter=500)
    assert f"{fit.log_likelihood:.4f}" in out
    weights = np.sort(np.asarray(fit.params.weights))
    assert all(f"{w:.4f}" in out for w in weights)


def test_bad_arguments_exit_2():
    completed = subprocess.run([sys.executable, "-m", "bayesgmm.cli", "demo", "--max-k", "0"],
                               capture_output=True, text=True)
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr.strip().splitlines() == ["bayesgmm: error: --max-k and --n-init must be >= 1, got 0 and 5."]
    with pytest.raises(SystemExit) as info:
        main(["nonsense"])
    assert info.value.code == 2
