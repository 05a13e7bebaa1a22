"""Test-session settings shared by tests/ and the doctests in bayesgmm/.

float64: tests compare against float64 references (scikit-learn, scipy), so they run with
``jax_enable_x64``; float32 behaviour is tested inside ``jax.enable_x64(False)``. The
package itself never changes this flag.

Compilation: the suite is compile-bound (it fits hundreds of small mixtures of different
shapes and runs each compiled program for milliseconds). So, for the test process and the
subprocesses it starts (the CLI, the notebooks' kernels, the docs build):

- XLA's CPU backend compiles at optimisation level 0, without LLVM's expensive passes:
  about half the compile time. Floating-point semantics are the same (no fast-math either
  way), so results agree to round-off and the tests' tolerances hold as they are. Speed is
  measured in ``benchmarks/``, never under these settings.
- JAX's persistent compilation cache lives in one temporary directory for the session: a
  program compiled once (the EM fit of Old Faithful, say) is loaded, not compiled again, by
  the CLI subprocesses, the notebooks and the tests after a cache clear (below). It starts
  empty and is removed at exit.

Tests marked ``sampling`` run the other way round: each in a fresh pytest process at XLA's default
optimisation (``_run_at_default_optimisation``). Their NUTS samplers run for tens of seconds, and
at level 0 a step costs about 3x more (a sparse NUTS fit of Old Faithful: 22.8 s warm against
3.6 s), more than the compile time level 0 saves and the new process costs: test_sparse's two
NUTS tests took 37.1 s and 22.3 s in the test process, 16.6 s and 15.1 s so (alone, 2 cores).
Most sampling tests compile more than they run and lose so (the Student-t deconvolution test
25 s -> 40 s, the LOO comparison 11 s -> 16 s): mark a test only when it measures faster.

BLAS threads: one. OpenBLAS's threads busy-wait after each call, taking the cores from XLA's
compiler threads, and the tests' matrices are small (scikit-learn's reference fits of a few
hundred rows ran 3.5x faster single-threaded on the 2-core CI machine). Round-off only.

Memory mappings: every program XLA compiles for the CPU lives in its own few memory mappings
(about three each), and JAX keeps every compiled program while its cache holds it. One pytest
process compiles many thousands of programs, and at Linux's default ``vm.max_map_count`` of
65530 the next compilation fails inside LLVM with a segmentation fault, not an exception (CI
crashed so). So, before each test, when the process holds more than ``_MAX_MAPPINGS``
mappings, JAX's caches and bayesgmm's own caches of compiled programs are dropped; the tests
after it load or recompile what they need.
"""

from __future__ import annotations

import atexit
import gc
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # read when NumPy (imported by jax below) loads its BLAS
_FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
_DEFAULT_OPTIMISATION = "BAYESGMM_TEST_DEFAULT_OPTIMISATION"  # set in the process of a ``sampling`` test
_flags = os.environ.get("XLA_FLAGS", "").replace(_FAST_COMPILE, "").strip()  # as inherited from the parent
if os.environ.get(_DEFAULT_OPTIMISATION) != "1":  # pytest-xdist workers inherit it
    _flags = f"{_flags} {_FAST_COMPILE}".strip()
os.environ["XLA_FLAGS"] = _flags
if "BAYESGMM_TEST_JAX_CACHE" not in os.environ:  # the first process of the session makes the cache
    os.environ["BAYESGMM_TEST_JAX_CACHE"] = tempfile.mkdtemp(prefix="bayesgmm-test-jax-cache-")
    atexit.register(shutil.rmtree, os.environ["BAYESGMM_TEST_JAX_CACHE"], ignore_errors=True)
os.environ["JAX_COMPILATION_CACHE_DIR"] = os.environ["BAYESGMM_TEST_JAX_CACHE"]  # read when jax is imported
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.1"

import jax  # noqa: E402  (after the environment it reads)

jax.config.update("jax_enable_x64", True)

_MAX_MAPPINGS = 30_000  # under half the default limit; a single test compiles far fewer programs


def _mappings() -> int:
    try:
        with open("/proc/self/maps", "rb") as maps:
            return sum(1 for _ in maps)
    except OSError:  # not Linux: no such limit to keep under
        return 0


def _clear_compiled_programs() -> None:
    for name, module in list(sys.modules.items()):
        if name == "bayesgmm" or name.startswith("bayesgmm."):
            for value in vars(module).values():
                if callable(getattr(value, "cache_clear", None)) and hasattr(value, "cache_info"):
                    value.cache_clear()  # functools.lru_cache holding compiled samplers
    jax.clear_caches()
    gc.collect()


@pytest.fixture(autouse=True)
def _fresh_rentals():
    """Each test starts as a fresh session for the choice between NumPy and compiled programs: the
    work select's grids and the merge trees did in NumPy in earlier tests does not count
    (``em._fit.GRID_HOST_MAX_WORK``, ``em._hierarchical.HOST_MAX_WORK``)."""
    import bayesgmm.em._fit
    import bayesgmm.em._hierarchical

    bayesgmm.em._fit.grid_rental.clear()
    bayesgmm.em._hierarchical.tree_rental.clear()
    yield


@pytest.fixture(autouse=True)
def _bounded_mappings():
    if _mappings() > _MAX_MAPPINGS:
        _clear_compiled_programs()
    yield


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """A ``sampling`` test runs in a fresh pytest process at XLA's default optimisation (see above)."""
    if pyfuncitem.get_closest_marker("sampling") is None or os.environ.get(_DEFAULT_OPTIMISATION) == "1":
        return None  # pytest runs it here
    _run_at_default_optimisation(pyfuncitem)
    return True


def _run_at_default_optimisation(item) -> None:
    command = [sys.executable, "-m", "pytest", item.nodeid, "-q", "-p", "no:cacheprovider", "-n", "0"]
    environment = dict(os.environ, **{_DEFAULT_OPTIMISATION: "1"})
    completed = subprocess.run(command, cwd=item.config.rootpath, env=environment, capture_output=True, text=True)
    if completed.returncode != 0:
        pytest.fail(f"{item.nodeid} failed in its own process:\n{completed.stdout[-6000:]}{completed.stderr[-3000:]}")
