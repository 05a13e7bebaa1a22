"""JAX's persistent compilation cache, on by default in the user's cache directory.

A first fit in a fresh Python session spends most of its time compiling XLA programs; JAX can
keep the compiled programs on disk and load them in the next session. bayesgmm turns that on
for its users with ``enable()``, which the fitting entry points call before they compile
(``em_fit``, ``select``, ``infer`` and the estimators built on them), never at import:

- the directory is ``platformdirs.user_cache_dir("bayesgmm")/jax`` (``~/.cache/bayesgmm/jax``
  on Linux), or the environment variable ``BAYESGMM_COMPILATION_CACHE`` (a directory; ``0``,
  ``off``, ``false``, ``no`` or empty: no cache);
- a caller's own JAX cache settings win: when ``jax_compilation_cache_dir`` is already set
  (``jax.config.update`` or the ``JAX_COMPILATION_CACHE_DIR`` variable), nothing changes;
- the cache is bounded (``jax_compilation_cache_max_size``, 1 GiB, least recently used entries
  go first, unless the caller set a size), and JAX then guards every read and write with a
  file lock (``filelock``), so processes that share it never read a half-written entry;
- every program is kept (``MIN_COMPILE_SECONDS``; JAX's default keeps only those that took 1 s):
  bayesgmm's compile in 0.01–1.5 s, and loading one from disk costs less than compiling it
  (Old Faithful, second session: SVI 1.7 s -> 1.3 s, MAP 1.4 s -> 0.95 s against a 0.1 s floor).

Loading a cached program means trusting the directory, as JAX's documentation warns: keep it
private to the user (``platformdirs``' default is).

JAX's cache keeps XLA's compiled programs, keyed by the lowered program: a next session still
traces and lowers each program before it finds it there, which for ``infer``'s SVI program is
most of a warm first call (Old Faithful: tracing 0.35 s, lowering 0.16 s, loading 0.16 s).
``lower`` keeps what tracing and lowering make, ``jax.export``'s serialized program (StableHLO
bytecode in a flatbuffer, no pickle), in the ``exported`` folder of the same directory, keyed by
the program's name and configuration, its arguments' shapes, the JAX, jaxlib and NumPyro
versions, JAX's settings that change a trace and a digest of bayesgmm's own source; a next
session deserializes it (0.04 s) instead. Written atomically (a temporary file renamed into
place), so processes sharing the folder never read half an entry.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import tempfile
import threading
from importlib import metadata
from pathlib import Path

import jax
import platformdirs
from jax import export  # already loaded by ``import jax``

ENVIRONMENT_VARIABLE = "BAYESGMM_COMPILATION_CACHE"
MAX_SIZE_BYTES = 1 << 30
MIN_COMPILE_SECONDS = 0.0
_OFF = {"", "0", "off", "false", "no"}
EXPORTED_FOLDER = "exported"
_lock = threading.Lock()
_state = {"checked": False, "directory": None}


def directory() -> str | None:
    """The directory bayesgmm put JAX's cache in (None: disabled, the caller's own, or not yet enabled)."""
    return _state["directory"]


def enable() -> None:
    """Turn on JAX's persistent compilation cache for this process, once (see the module docstring)."""
    if _state["checked"]:
        return
    with _lock:
        if _state["checked"]:
            return
        _state["checked"] = True
        setting = os.environ.get(ENVIRONMENT_VARIABLE)
        if setting is not None and setting.strip().lower() in _OFF:
            return
        if jax.config.jax_compilation_cache_dir is not None or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
            return  # the caller's own cache
        if setting is None:
            setting = os.path.join(platformdirs.user_cache_dir("bayesgmm"), "jax")
        path = os.path.abspath(os.path.expanduser(setting))
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError:
            return  # an unwritable cache directory only costs compilation time
        if jax.config.jax_compilation_cache_max_size == -1:  # JAX's default: unbounded, unlocked
            jax.config.update("jax_compilation_cache_max_size", MAX_SIZE_BYTES)
        if jax.config.jax_persistent_cache_min_compile_time_secs == 1.0:  # JAX's default
            jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
        jax.config.update("jax_compilation_cache_dir", path)
        _state["directory"] = path


def lower(function, name: str, config: tuple, signature: tuple, treedef) -> jax.stages.Lowered:
    """``function`` (jitted) lowered for the arguments ``jax.tree.unflatten(treedef, signature)``
    (``ShapeDtypeStruct`` leaves), through its ``jax.export`` kept in the cache directory.

    ``name`` and ``config`` (a tuple of values with a stable ``repr``) name the program: the
    caller's ``build(*config)``. With bayesgmm's cache on (``directory()``), a program exported
    in an earlier session is deserialized and lowered (no tracing); else it is traced once,
    exported, written, and lowered from the export, so that both sessions compile the same
    program (and JAX's cache finds it). A program JAX cannot export (a host callback, as NUTS's
    progress bar; an empty ``.none`` entry tells later sessions) or a configuration without a
    stable ``repr`` is lowered as it is.
    """
    arguments = jax.tree.unflatten(treedef, signature)
    folder = directory()
    described = repr((name, config, signature, str(treedef)))
    if folder is None or " at 0x" in described:
        return function.lower(*arguments)
    digest = _digest(described)
    path, refused = (Path(folder, EXPORTED_FOLDER, digest + suffix) for suffix in (".jaxexport", ".none"))
    if refused.is_file():  # an earlier session found it cannot be exported
        return function.lower(*arguments)
    exported = None
    if path.is_file():
        try:
            exported = export.deserialize(bytearray(path.read_bytes()))
        except Exception:  # noqa: BLE001 - a damaged or foreign entry (flatbuffers raises struct.error, ...): a miss
            exported = None
    if exported is None:

        def traced_for_export(*leaves):  # named: its trace is what a next session saves (tests count it)
            return function(*jax.tree.unflatten(treedef, leaves))

        try:
            exported = export.export(jax.jit(traced_for_export))(*signature)
            data = exported.serialize()
        except (ValueError, NotImplementedError, TypeError):  # e.g. host callbacks have no serialized form
            _write_atomically(refused, b"")  # later sessions skip the attempt (its trace costs about 0.2 s)
            return function.lower(*arguments)
        _write_atomically(path, data)
    call = exported.call

    def exported_program(*values):
        return call(*jax.tree.leaves(values))

    # named as the program it runs: jit(run), as when lowered without the export (compile logs, profiles)
    exported_program.__name__ = getattr(function, "__name__", exported_program.__name__)
    return jax.jit(exported_program).lower(*arguments)


def _digest(described: str) -> str:
    """The key of an exported program: its description, the versions and settings that change a trace."""
    numpyro = sys.modules.get("numpyro")
    parts = (
        described,
        jax.__version__,
        _jaxlib_version(),
        getattr(numpyro, "__version__", ""),
        jax.default_backend(),
        str(jax.config.jax_enable_x64),
        str(jax.config.jax_default_matmul_precision),
        _source_digest(),
    )
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


@functools.cache
def _jaxlib_version() -> str:
    return metadata.version("jaxlib")


@functools.cache
def _source_digest() -> str:
    """A digest of bayesgmm's Python source: an edited package never loads the programs of another."""
    digest = hashlib.sha256()
    root = Path(__file__).parent
    for source in sorted(root.rglob("*.py")):
        digest.update(str(source.relative_to(root)).encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    """``data`` to ``path`` through a temporary file renamed into place; an unwritable folder only costs time."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".tmp", delete=False) as file:
            file.write(data)
        os.replace(file.name, path)
    except OSError:
        pass
