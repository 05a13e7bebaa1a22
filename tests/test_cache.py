"""The persistent compilation cache bayesgmm turns on (bayesgmm._cache): where, when, opt-out, and two
processes sharing it. Each case runs in fresh Python processes (the setting is per process; the test
session's own cache, conftest.py, is the caller's and is left alone)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

_WORKER = """
import json, sys
import jax
hits = []
jax.monitoring.register_event_listener(
    lambda event, **kwargs: hits.append(1) if event == "/jax/compilation_cache/cache_hits" else None
)
import bayesgmm
from bayesgmm import _cache
at_import = jax.config.jax_compilation_cache_dir
import numpy as np
from bayesgmm.datasets import load_faithful
X = np.tile(load_faithful(), (40, 1))  # above em_fit's NumPy-driver size: its program compiles
result = bayesgmm.em_fit(X, 2, seed=0)
print(json.dumps(dict(
    at_import=at_import,
    directory=_cache.directory(),
    jax_directory=jax.config.jax_compilation_cache_dir,
    log_likelihood=result.log_likelihood,
    cache_hits=len(hits),
)))
"""


def _environment(**variables):
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("JAX_COMPILATION_CACHE_DIR", "BAYESGMM_COMPILATION_CACHE")
    }
    environment["PYTHONPATH"] = str(ROOT)
    environment.update(variables)
    return environment


def _start(**variables):
    return subprocess.Popen(
        [sys.executable, "-c", _WORKER],
        cwd=ROOT,
        env=_environment(**variables),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process):
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "Error reading persistent compilation cache" not in err, err
    return json.loads(out.strip().splitlines()[-1])


def _entries(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*-cache") if path.is_file()]


@pytest.mark.slow
def test_two_processes_share_the_cache_then_a_third_loads_from_it(tmp_path):
    """On at the first fit, not at import, in the chosen folder; two processes at once write it safely
    (JAX's file lock: bounded cache), and a later process loads programs instead of compiling them."""
    folder = tmp_path / "cache"
    first, second = _start(BAYESGMM_COMPILATION_CACHE=str(folder)), _start(BAYESGMM_COMPILATION_CACHE=str(folder))
    results = [_finish(first), _finish(second)]
    for result in results:
        assert result["at_import"] is None  # never at import
        assert result["directory"] == result["jax_directory"] == str(folder)
    assert results[0]["log_likelihood"] == results[1]["log_likelihood"]
    assert _entries(folder)
    third = _finish(_start(BAYESGMM_COMPILATION_CACHE=str(folder)))
    assert third["cache_hits"] > 0
    assert third["log_likelihood"] == results[0]["log_likelihood"]


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["0", "off", ""])
def test_the_environment_variable_turns_it_off(setting):
    result = _finish(_start(BAYESGMM_COMPILATION_CACHE=setting))
    assert result["directory"] is None and result["jax_directory"] is None


@pytest.mark.slow
def test_the_caller_s_own_jax_cache_wins(tmp_path):
    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    result = _finish(_start(JAX_COMPILATION_CACHE_DIR=str(theirs), BAYESGMM_COMPILATION_CACHE=str(ours)))
    assert result["directory"] is None
    assert result["jax_directory"] == str(theirs)
    assert _entries(theirs) and not ours.exists()


@pytest.mark.slow
def test_the_default_folder_is_the_user_cache_directory(tmp_path):
    """platformdirs' user cache directory (XDG_CACHE_HOME on Linux), private to the user."""
    if sys.platform != "linux":
        pytest.skip("XDG_CACHE_HOME moves the user cache directory on Linux only")
    result = _finish(_start(XDG_CACHE_HOME=str(tmp_path)))
    expected = tmp_path / "bayesgmm" / "jax"
    assert result["directory"] == str(expected)
    assert _entries(expected)
    assert expected.stat().st_mode & 0o077 == 0


_SVI_WORKER = """
import json, warnings
from pathlib import Path
import jax
traced = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kwargs: traced.append(kwargs.get("fun_name"))
    if event.endswith("jaxpr_trace_duration") else None
)
import numpy as np
from bayesgmm import _cache, infer
from bayesgmm.datasets import load_faithful
warnings.simplefilter("ignore")
posterior = infer(load_faithful(), 2, method="svi", num_steps=300, num_samples=20, seed=1)
folder = Path(_cache.directory(), _cache.EXPORTED_FOLDER)
print(json.dumps(dict(
    means=np.asarray(posterior.params.means).tolist(),
    traced_svi="traced_for_export" in traced,
    entries=sorted(path.name for path in folder.iterdir()),
)))
"""


def _start_svi(folder: Path):
    return subprocess.Popen(
        [sys.executable, "-c", _SVI_WORKER],
        cwd=ROOT,
        env=_environment(BAYESGMM_COMPILATION_CACHE=str(folder)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_a_next_session_loads_the_exported_svi_program_instead_of_tracing_it(tmp_path):
    """``_cache.lower``: the first sessions (two at once) trace NumPyro's SVI program and write its
    ``jax.export`` (one entry, written atomically; the later of the two may load it); a next session
    deserializes it, traces no SVI program, and draws the same posterior bit for bit. An unreadable
    entry is traced and written again."""
    folder = tmp_path / "cache"
    first, second = _start_svi(folder), _start_svi(folder)  # at once
    first, second = _finish(first), _finish(second)
    assert first["traced_svi"] or second["traced_svi"]  # the other may find the entry already written
    assert first["means"] == second["means"]
    (entry,) = first["entries"]
    assert entry.endswith(".jaxexport") and second["entries"] == [entry]  # no temporary file left
    third = _finish(_start_svi(folder))
    assert not third["traced_svi"]
    assert third["means"] == first["means"]
    (folder / "exported" / entry).write_bytes(b"not a flatbuffer")
    fourth = _finish(_start_svi(folder))
    assert fourth["traced_svi"] and fourth["means"] == first["means"]
    assert (folder / "exported" / entry).stat().st_size > 100  # written again


def test_a_program_that_cannot_be_exported_is_lowered_as_it_is_and_not_tried_again(tmp_path, monkeypatch):
    """A host callback (NUTS's progress bar) has no serialized form: ``_cache.lower`` lowers the program as
    it is and leaves an empty ``.none`` entry, so that a later session does not trace it for export again."""
    import jax
    import numpy as np

    from bayesgmm import _cache

    monkeypatch.setitem(_cache._state, "directory", str(tmp_path))

    @jax.jit
    def reports(x):
        jax.debug.callback(lambda value: None, x)
        return 2 * x

    signature, treedef = jax.tree.flatten((jax.ShapeDtypeStruct((3,), np.float32),))
    lowered = _cache.lower(reports, "tests.reports", (), tuple(signature), treedef)
    assert np.array_equal(lowered.compile()(np.ones(3, np.float32)), 2 * np.ones(3))
    (entry,) = (tmp_path / _cache.EXPORTED_FOLDER).iterdir()
    assert entry.suffix == ".none" and entry.stat().st_size == 0

    def no_export(*args, **kwargs):
        raise AssertionError("tried to export again")

    monkeypatch.setattr(_cache.export, "export", no_export)
    _cache.lower(reports, "tests.reports", (), tuple(signature), treedef).compile()
