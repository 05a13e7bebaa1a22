"""The documentation site builds with ``mkdocs build --strict`` (mkdocs.yml at the repository root).

Strict mode turns every warning into an error: a broken link or anchor, a page missing from the nav,
a docstring that mkdocstrings cannot parse as numpydoc, an API object that no longer exists. The
build runs in a subprocess into a temporary site folder, so the checkout is left untouched.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site_dir = tmp_path_factory.mktemp("site")
    environment = dict(
        os.environ,
        BAYESGMM_DOCS_CACHE=str(tmp_path_factory.mktemp("mkdocs-jupyter-cache")),
        NO_MKDOCS_2_WARNING="1",  # material's banner about MkDocs 2; noise in a failure report
    )
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", "mkdocs.yml"]
    completed = subprocess.run(
        [*command, "--site-dir", str(site_dir)],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if completed.returncode != 0:
        output = completed.stdout + completed.stderr
        pytest.fail(f"mkdocs build --strict failed (exit {completed.returncode}):\n{output}")
    return site_dir


@pytest.mark.slow
def test_strict_build_renders_every_page(site):
    for page in ("index.html", "em/index.html", "bayes/index.html", "diagnostics/index.html", "api/index.html"):
        assert (site / page).is_file(), f"{page} missing from the built site"


@pytest.mark.slow
def test_api_reference_documents_the_public_api(site):
    html = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("em_fit", "EMResult", "GMMParams", "infer", "Posterior", "Priors", "loo_compare", "save", "load"):
        assert f'id="bayesgmm.{name}"' in html, f"bayesgmm.{name} has no entry in the API reference"
    # numpydoc sections were parsed into mkdocstrings' sections, not shown as raw text
    assert '<span class="doc-section-title">Parameters:</span>' in html
    assert "----------" not in html, "a numpydoc section underline was rendered as text (docstring_style?)"


@pytest.mark.slow
def test_notebooks_are_rendered_with_their_stored_outputs(site):
    for notebook in ("quickstart", "bayesian_diagnostics"):
        html = (site / "notebooks" / notebook / "index.html").read_text(encoding="utf-8")
        assert "data:image/png;base64," in html, f"{notebook}: no plot in the rendered page (stored without outputs?)"
        assert (site / "notebooks" / notebook / f"{notebook}.ipynb").is_file(), "no download link target"
