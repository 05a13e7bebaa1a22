"""Test-session hygiene: keep the process under the kernel's limit on memory mappings.

Every program XLA compiles for the CPU lives in its own few memory mappings (about three
each), and JAX keeps every compiled program while its cache holds it. One pytest process
compiles many thousands of programs (each test's shapes, eager operations, sklearn's
estimator checks), and at Linux's default ``vm.max_map_count`` of 65530 the next compilation
fails inside LLVM with a segmentation fault, not an exception. So, before each test, when the
process holds more than ``_MAX_MAPPINGS`` mappings, drop JAX's caches and bayesgmm's own
caches of compiled programs; the tests after it recompile what they need.
"""

from __future__ import annotations

import gc
import sys

import pytest

_MAX_MAPPINGS = 30_000  # half the default limit: a single test compiles far fewer programs


def _mappings() -> int:
    try:
        with open("/proc/self/maps", "rb") as maps:
            return sum(1 for _ in maps)
    except OSError:  # not Linux: no such limit to keep under
        return 0


def _clear_compiled_programs() -> None:
    import jax

    for name, module in list(sys.modules.items()):
        if name == "bayesgmm" or name.startswith("bayesgmm."):
            for value in vars(module).values():
                if callable(getattr(value, "cache_clear", None)) and hasattr(value, "cache_info"):
                    value.cache_clear()  # functools.lru_cache holding compiled samplers
    jax.clear_caches()
    gc.collect()


@pytest.fixture(autouse=True)
def _bounded_mappings():
    if _mappings() > _MAX_MAPPINGS:
        _clear_compiled_programs()
    yield
