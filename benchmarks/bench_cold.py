"""First calls in a fresh Python session: bayesgmm against scikit-learn (issue "First calls as fast as scikit-learn's").

What is measured
----------------
Every case runs in its own fresh Python process (this script re-invoked with ``--worker``), with
JAX's defaults as a new user has them: float64 off (``JAX_ENABLE_X64`` and
``JAX_COMPILATION_CACHE_DIR`` are removed from the workers' environment), default threads and
allocator, the CPU backend unless another is installed. Data: Old Faithful (272 × 2,
``bayesgmm.datasets.load_faithful``) and, for NUTS, ``X3``: 1000 × 2 rows drawn from a fixed
3-component mixture (numpy seed ``SEED``). The parent process writes both to ``.npy`` files
that a worker loads after its timed import, so a scikit-learn worker never imports bayesgmm
or JAX. One untimed process imports ``sklearn.mixture`` and ``bayesgmm`` first, so that every
timed import finds its bytecode written and its files in the page cache (a user's second
session, not the first after installing).

- scikit-learn: the time of ``import sklearn.mixture``, then, in one process, the first
  ``GaussianMixture(2).fit(X)``; in another, the first run of the loop
  ``for t in (full, tied, diag, spherical): for k in 1..9: GaussianMixture(k, covariance_type=t).fit(X).bic(X)``
  (scikit-learn's defaults; its warnings are not filtered).
- bayesgmm: the time of ``import bayesgmm`` (JAX and numpy included) and of the function the
  call uses, as ``from bayesgmm import infer`` would load it (``infer`` loads NumPyro, which
  ``import bayesgmm`` leaves out for EM), then the first call of
  one of ``em_fit(X, 2)``, ``select(X)``, ``infer(X, 2, method="svi")``,
  ``infer(X, 2, method="map")``, ``infer(X3, 3, method="nuts")``, all with their defaults
  (NUTS's progress bar included), the result waited for with ``jax.block_until_ready``.
  Each call runs in two processes, one after the other, sharing a folder created for that
  call alone (``BAYESGMM_COMPILATION_CACHE``, the persistent compilation cache bayesgmm turns
  on at the first fit): "empty cache" (the folder is new: a user's first session) and "warm
  cache" (what the first process left there: a user's next session).

Per first call, from ``jax.monitoring`` listeners registered after the import:

- compilations: ``/jax/core/compile/backend_compile_duration`` events (one per XLA program
  compiled or loaded from the persistent cache: JAX's event wraps both) and the sum of their
  durations ("compile s"; for a program loaded from the cache, its load time);
- op-by-op: the compilations of one JAX operation called eagerly, outside any ``jit``: a
  primitive (``dispatch.xla_primitive_callable`` compiles ``jit(iota)``, ...) or a function
  that JAX itself jits (``x + 1`` compiles jnp's ``jit(add)``, ``jnp.where`` ``jit(_where)``,
  ``jax.random.normal`` ``jit(_normal)``). JAX passes only the module name
  (``fun_name="jit(<name>)"``), no flag, so a compilation counts as op-by-op when ``<name>``
  is the name of a ``jax.extend.core.Primitive`` or of a jitted function defined in a ``jax``
  module, and of no jitted function outside JAX (bayesgmm's, NumPyro's), all looked up among
  the process's objects after the call. Heuristic: a bayesgmm program named like a primitive
  would count;
- cache hits: ``/jax/compilation_cache/cache_hits`` events (programs loaded from the
  persistent cache). Programs that compile in under bayesgmm's ``_cache.MIN_COMPILE_SECONDS``
  (0.1 s), or whose entry is under ``jax_persistent_cache_min_entry_size_bytes``, are never
  written, so op-by-op programs compile again in every session;
- in the JSON lines only: cache writes (``/jax/compilation_cache/cache_misses``, recorded by
  JAX when it writes an entry, not at every miss), lowering seconds
  (``jaxpr_to_mlir_module_duration``), tracing seconds (``jaxpr_trace_duration``: nested
  ``jit`` traces overlap, so an upper bound), the programs' names, and the cache folder
  bayesgmm reports (``_cache.directory()``), which must be the one set.

Per program (a second table): each program's compile seconds in the empty-cache session (the
``backend_compile_duration`` event of each, by ``fun_name``), and its kernels, counted in one more
first session of the same call (its own new cache folder) with XLA's dump on
(``--xla_dump_to``): XLA's CPU backend compiles every kernel of a program (a fusion, an op of a
loop's body, a custom call) to its own object file, and the dump keeps one
``module_<n>.jit_<name>.obj-file.*.o`` per kernel (``kernels_per_program``). Compile time grows
with the number of kernels; the dump slows compilation, so that session's times are not used.
Programs compiled in the same second in two threads (``infer`` compiles its sampler in a worker
thread while the caller compiles the small programs after it) share the two cores, so a small
program's seconds there include waiting for a core.

Ratios: bayesgmm's import + first call over scikit-learn's import + first call, for
``em_fit`` against ``GaussianMixture(2).fit`` and for ``select`` against the loop; the warm
ratio uses the same scikit-learn processes (scikit-learn has no compilation cache). The
issue's goals (``GOALS``) are checked on these: the seconds of a goal without a reference are
the first call alone, import excluded. One process per case, no repeats: compare runs on an
idle machine (the load average is reported).

Results go to the ``bench_cold`` section of ``--output`` (benchmarks/RESULTS.md); ``--quick``
measures only ``em_fit`` with an empty cache and the single scikit-learn fit, and writes to a
temporary file unless ``--output`` is given.

How to run::

    python benchmarks/bench_cold.py --quick     # check the script
    python benchmarks/bench_cold.py
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import cpu_model, exact_command, git_revision, load_average, memory_total, package_version, write_section

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parent.parent
DEFAULT_OUTPUT = SCRIPT.parent / "RESULTS.md"
SECTION_START, SECTION_END = "<!-- bench_cold:start -->", "<!-- bench_cold:end -->"
RESULT_PREFIX = "BENCH_COLD_RESULT "
TYPES = ("full", "tied", "diag", "spherical")
MAX_K = 9
SEED = 0
CACHE_VARIABLE = "BAYESGMM_COMPILATION_CACHE"
REMOVED_VARIABLES = ("JAX_ENABLE_X64", "JAX_COMPILATION_CACHE_DIR")
STATES = ("empty", "warm")
SMALL_PROGRAM_S = 0.05  # programs that compile faster are summed in one row of the programs table
BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
LOWERING = "/jax/core/compile/jaxpr_to_mlir_module_duration"
TRACING = "/jax/core/compile/jaxpr_trace_duration"
CACHE_HITS = "/jax/compilation_cache/cache_hits"
CACHE_WRITES = "/jax/compilation_cache/cache_misses"

# The generating mixture of X3 (NUTS): weights, means, covariances.
X3_ROWS = 1000
X3_WEIGHTS = (0.3, 0.3, 0.4)
X3_MEANS = ((-4.0, 0.0), (0.0, 4.0), (4.0, 0.0))
X3_COVARIANCES = (((1.0, 0.3), (0.3, 0.8)), ((0.6, -0.2), (-0.2, 1.2)), ((1.0, 0.0), (0.0, 1.0)))


# ----------------------------------------------------------------------------- the calls


def call_em_fit(bayesgmm, data):
    """``em_fit(X, 2)``."""
    return bayesgmm.em_fit(data["faithful"], 2)


def call_select(bayesgmm, data):
    """``select(X)``: k = 1..9 × the four covariance types, BIC."""
    return bayesgmm.select(data["faithful"])


def call_svi(bayesgmm, data):
    """``infer(X, 2, method="svi")``."""
    return bayesgmm.infer(data["faithful"], 2, method="svi")


def call_map(bayesgmm, data):
    """``infer(X, 2, method="map")``."""
    return bayesgmm.infer(data["faithful"], 2, method="map")


def call_nuts(bayesgmm, data):
    """``infer(X3, 3, method="nuts")`` on 1000 × 2 rows."""
    return bayesgmm.infer(data["x3"], 3, method="nuts")


# name: (label in the table, function, scikit-learn case it is compared with or None)
CALLS = {
    "em_fit": ("`em_fit(X, 2)`", call_em_fit, "sklearn_fit"),
    "select": ("`select(X)`", call_select, "sklearn_loop"),
    "svi": ('`infer(X, 2, method="svi")`', call_svi, None),
    "map": ('`infer(X, 2, method="map")`', call_map, None),
    "nuts": ('`infer(X3, 3, method="nuts")`, 1000 × 2', call_nuts, None),
}
# the function each call uses: its import, as a user writes it (``from bayesgmm import infer``), is timed as the import
CALL_NAMES = {"em_fit": "em_fit", "select": "select", "svi": "infer", "map": "infer", "nuts": "infer"}
SKLEARN_LABELS = {
    "sklearn_fit": "`GaussianMixture(2).fit(X)`",
    "sklearn_loop": f"loop of {MAX_K * len(TYPES)} fits + `bic`",
}

# The goals: (cache state, call, scikit-learn reference or None, limit). With a
# reference the limit bounds the ratio of the imports + first calls; without one it bounds
# the seconds of the first call alone.
GOALS = (
    ("empty", "em_fit", "sklearn_fit", 1.5),
    ("empty", "select", "sklearn_loop", 2.0),
    ("empty", "svi", None, 1.5),
    ("empty", "map", None, 1.5),
    ("empty", "nuts", None, 5.0),
    ("warm", "em_fit", "sklearn_fit", 1.0),
    ("warm", "select", "sklearn_loop", 1.0),
    ("warm", "svi", None, 0.5),
    ("warm", "nuts", None, 3.0),
)


# ----------------------------------------------------------------------------- workers


class CompileRecorder:
    """XLA compilations (by module name), their seconds and the persistent-cache events, via ``jax.monitoring``."""

    def __init__(self):
        import jax

        self.compilations: list[tuple[str, float]] = []  # (fun_name, seconds) of each, in order
        self.seconds = {BACKEND_COMPILE: 0.0, LOWERING: 0.0, TRACING: 0.0}
        self.events = collections.Counter()
        jax.monitoring.register_event_duration_secs_listener(self._duration)
        jax.monitoring.register_event_listener(self._event)

    def _duration(self, event, duration, **kwargs):
        if event in self.seconds:
            self.seconds[event] += duration
        if event == BACKEND_COMPILE:
            self.compilations.append((str(kwargs.get("fun_name", "?")), duration))

    def _event(self, event, **kwargs):
        self.events[event] += 1

    def summary(self) -> dict:
        """The record of everything since the listeners were registered."""
        single = single_operation_names()
        names = [name for name, _ in self.compilations]
        op_by_op = collections.Counter(
            name for name in names if name.startswith("jit(") and name.endswith(")") and name[4:-1] in single
        )
        return {
            "compilations": len(names),
            "compile_seconds": self.seconds[BACKEND_COMPILE],
            "lowering_seconds": self.seconds[LOWERING],
            "tracing_seconds": self.seconds[TRACING],
            "op_by_op": sum(op_by_op.values()),
            "op_by_op_names": dict(op_by_op.most_common()),
            "programs": dict(collections.Counter(names).most_common()),
            "program_seconds": [list(compilation) for compilation in self.compilations],
            "cache_hits": self.events[CACHE_HITS],
            "cache_writes": self.events[CACHE_WRITES],
        }


def single_operation_names() -> set[str]:
    """Names an op-by-op program has: the JAX primitives, and the functions JAX itself jits (``jnp.*``, ...).

    Found among this process's objects (``gc``): every ``Primitive``, and every jitted function
    (``PjitFunction``, ``jnp.ufunc``) by the module it comes from; a name that a jitted function
    outside JAX also has (bayesgmm's, NumPyro's) is left out.
    """
    import gc

    import jax
    import jax.numpy as jnp
    from jax.extend.core import Primitive

    jitted = type(jax.jit(abs))  # jaxlib's PjitFunction, which has no public name
    primitives, in_jax, elsewhere = set(), set(), set()
    for obj in gc.get_objects():
        if isinstance(obj, Primitive):
            primitives.add(obj.name)
        elif isinstance(obj, jitted | jnp.ufunc):
            module, name = str(getattr(obj, "__module__", None)), str(getattr(obj, "__name__", None))
            (in_jax if module == "jax" or module.startswith("jax.") else elsewhere).add(name)
    return primitives | (in_jax - elsewhere)


def kernels_per_program(dump: Path) -> list[list]:
    """``[[name, kernels], ...]`` in compilation order, from an XLA dump folder (``--xla_dump_to``).

    XLA's CPU backend compiles each kernel of a program (a fusion, a loop's body op, a custom
    call) to its own object file, and the dump holds one ``module_<n>.jit_<name>.obj-file.*.o``
    per kernel: their number is the program's kernel count, ``jit_<name>`` its ``jit(<name>)``.
    """
    counts: dict[tuple[int, str], int] = collections.Counter()
    for path in dump.iterdir():
        module, _, rest = path.name.partition(".")
        name, _, kind = rest.partition(".")
        if module.startswith("module_") and kind.startswith("obj-file"):
            counts[(int(module[len("module_") :]), name)] += 1
    return [[f"jit({name[len('jit_') :]})", kernels] for (_, name), kernels in sorted(counts.items())]


def wait(result) -> None:
    """Block until the arrays of a result (a pytree, or an object with attributes) are computed."""
    import jax

    jax.block_until_ready(vars(result) if hasattr(result, "__dict__") else result)


def load_data(folder: Path) -> dict:
    import numpy as np

    return {name: np.load(folder / f"{name}.npy") for name in ("faithful", "x3")}


def worker_sklearn(case: str, folder: Path) -> dict:
    start = time.perf_counter()
    import sklearn.mixture

    import_seconds = time.perf_counter() - start
    X = load_data(folder)["faithful"]
    start = time.perf_counter()
    if case == "sklearn_fit":
        sklearn.mixture.GaussianMixture(2).fit(X)
    else:
        for covariance_type in TYPES:
            for k in range(1, MAX_K + 1):
                sklearn.mixture.GaussianMixture(k, covariance_type=covariance_type).fit(X).bic(X)
    return {"import_seconds": import_seconds, "call_seconds": time.perf_counter() - start}


def worker_bayesgmm(case: str, folder: Path) -> dict:
    start = time.perf_counter()
    import bayesgmm

    getattr(bayesgmm, CALL_NAMES[case])  # ``from bayesgmm import infer`` loads NumPyro (bayesgmm loads it lazily)
    import_seconds = time.perf_counter() - start
    import jax

    from bayesgmm import _cache

    data = load_data(folder)
    recorder = CompileRecorder()
    start = time.perf_counter()
    wait(CALLS[case][1](bayesgmm, data))
    call_seconds = time.perf_counter() - start
    return {
        "import_seconds": import_seconds,
        "call_seconds": call_seconds,
        **recorder.summary(),
        "cache_directory": _cache.directory(),
        "backend": jax.default_backend(),
        "dtype": str(jax.numpy.result_type(float)),
        "bayesgmm_file": bayesgmm.__file__,
    }


def worker_warmup() -> dict:
    """Import both libraries once, untimed: bytecode written, files in the page cache."""
    import sklearn.mixture  # noqa: F401

    import bayesgmm  # noqa: F401

    return {}


# ----------------------------------------------------------------------------- parent


def write_data(folder: Path) -> None:
    """Old Faithful and X3, as ``.npy`` files the workers load."""
    import numpy as np

    sys.path.insert(0, str(REPO_ROOT))
    from bayesgmm.datasets import load_faithful

    rng = np.random.default_rng(SEED)
    labels = rng.choice(len(X3_WEIGHTS), size=X3_ROWS, p=X3_WEIGHTS)
    means, covariances = np.asarray(X3_MEANS), np.asarray(X3_COVARIANCES)
    factors = np.linalg.cholesky(covariances)
    x3 = means[labels] + np.einsum("nij,nj->ni", factors[labels], rng.standard_normal((X3_ROWS, 2)))
    np.save(folder / "faithful.npy", load_faithful())
    np.save(folder / "x3.npy", x3)


def run_worker(case: str, folder: Path, cache: Path | None, timeout: float, dump: Path | None = None) -> dict:
    """Run one case in a fresh process; its JSON record, or ``{"error": ...}``.

    With ``dump`` (a new folder), XLA dumps every program it compiles there and the record holds
    ``kernels`` (``kernels_per_program``): the run that counts kernels, whose times are not used.
    """
    env = {name: value for name, value in os.environ.items() if name not in REMOVED_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    if cache is not None:
        env[CACHE_VARIABLE] = str(cache)
    command = [sys.executable, str(SCRIPT), "--worker", case, "--data-dir", str(folder)]
    if dump is not None:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_dump_to={dump}".strip()
        command += ["--dump-dir", str(dump)]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    except subprocess.CalledProcessError as error:
        tail = error.stderr.strip().splitlines()[-1:] or ["no stderr"]
        return {"error": f"exit {error.returncode}: {tail[0]}"}
    line = next(line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX))
    return json.loads(line[len(RESULT_PREFIX) :])


def total(record: dict | None) -> float | None:
    """Import + first call, in seconds (None when not measured)."""
    if not record or "error" in record:
        return None
    return record["import_seconds"] + record["call_seconds"]


def seconds(record: dict | None, key: str, digits: int = 2) -> str:
    if not record:
        return "—"
    if "error" in record:
        return f"failed ({record['error']})"
    return f"{record[key]:.{digits}f}"


def count(record: dict | None, key: str) -> str:
    return str(record[key]) if record and "error" not in record else "—"


def ratio(record: dict | None, reference: dict | None) -> float | None:
    ours, theirs = total(record), total(reference)
    return None if ours is None or theirs is None else ours / theirs


def goal_row(goal: tuple, results: dict) -> str:
    """One line of the goals table: the goal, what was measured, met or not."""
    state, case, reference, limit = goal
    label = CALLS[case][0]
    record = results.get((case, state))
    if reference is None:
        text = f"{state} cache: first {label} ≤ {limit:g} s (import excluded)"
        value = None if not record or "error" in record else record["call_seconds"]
        measured = "—" if value is None else f"{value:.2f} s"
    else:
        bound = "scikit-learn's" if limit == 1 else f"{limit:g}× scikit-learn's"
        text = f"{state} cache: import + first {label} ≤ {bound} import + {SKLEARN_LABELS[reference]}"
        value = ratio(record, results.get((reference, None)))
        measured = "—" if value is None else f"{value:.2f}×"
    verdict = "not measured" if value is None else ("met" if value <= limit else "**not met**")
    return f"| {text} | {measured} | {verdict} |"


def table_row(case: str, results: dict) -> str:
    """One call's row: import, empty cache, warm cache, scikit-learn, ratios."""
    label, _, reference = CALLS[case]
    empty, warm = results.get((case, "empty")), results.get((case, "warm"))
    sklearn = results.get((reference, None)) if reference else None
    if sklearn and "error" not in sklearn:
        theirs = (
            f"{sklearn['import_seconds']:.2f} + {sklearn['call_seconds']:.2f} = {total(sklearn):.2f} "
            f"({SKLEARN_LABELS[reference]})"
        )
    else:
        theirs = seconds(sklearn, "call_seconds")
    ratios = " / ".join(
        "—" if value is None else f"{value:.2f}×" for value in (ratio(empty, sklearn), ratio(warm, sklearn))
    )
    cells = [
        label,
        f"{seconds(empty, 'import_seconds')} / {seconds(warm, 'import_seconds')}",
        seconds(empty, "call_seconds"),
        count(empty, "compilations"),
        seconds(empty, "compile_seconds"),
        count(empty, "op_by_op"),
        seconds(warm, "call_seconds"),
        count(warm, "compilations"),
        count(warm, "cache_hits"),
        theirs if reference else "—",
        ratios if reference else "—",
    ]
    return "| " + " | ".join(cells) + " |"


def cache_check(results: dict) -> list[str]:
    """Warnings for workers in which bayesgmm did not use the folder set for it."""
    return [
        f"- **Warning**: {case} ({state} cache) used the cache folder {record['cache_directory']!r}, "
        f"not {record['cache_expected']!r}."
        for (case, state), record in results.items()
        if state and record and "error" not in record and record["cache_directory"] != record["cache_expected"]
    ]


def program_rows(case: str, results: dict) -> list[str]:
    """The table rows of one call's programs: name, kernels, compile seconds (empty cache)."""
    label = CALLS[case][0]
    timed, counted = results.get((case, "empty")), results.get((case, "kernels"))
    if not timed or "error" in timed:
        return [f"| {label} | — | — | {seconds(timed, 'call_seconds')} |"]
    kernels = collections.defaultdict(list)  # name -> kernel counts in compilation order
    for name, count_ in (counted or {}).get("kernels", []):
        kernels[name].append(count_)
    seen = collections.Counter()
    rows, small = [], [0, 0, 0.0]  # programs, kernels, seconds
    for name, compile_seconds in timed.get("program_seconds", []):
        counts = kernels.get(name, [])
        kernel_count = counts[seen[name]] if seen[name] < len(counts) else None
        seen[name] += 1
        if compile_seconds < SMALL_PROGRAM_S:
            small[0] += 1
            small[1] += kernel_count or 0
            small[2] += compile_seconds
            continue
        rows.append(f"| {label} | `{name}` | {'—' if kernel_count is None else kernel_count} | {compile_seconds:.2f} |")
    if small[0]:
        programs = "1 smaller program" if small[0] == 1 else f"{small[0]} smaller programs"
        rows.append(f"| {label} | {programs} | {small[1]} | {small[2]:.2f} |")
    return rows or [f"| {label} | none: no XLA program (em's NumPy driver) | 0 | 0.00 |"]


def report(results: dict, args, load_before: str, cases: list[str]) -> str:
    runtime = next((record for record in results.values() if record and "backend" in record), {})
    lines = [
        SECTION_START,
        "## First calls in a fresh session: bayesgmm vs scikit-learn",
        "",
        f"- Date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
        f"- Machine: {cpu_model()}, {os.cpu_count()} logical cores, {memory_total()} RAM; load average before / after: "
        f"{load_before} / {load_average()}",
        f"- Versions: Python {sys.version.split()[0]}, jax {package_version('jax')}, jaxlib "
        f"{package_version('jaxlib')}, numpyro {package_version('numpyro')}, numpy {package_version('numpy')}, "
        f"scikit-learn {package_version('scikit-learn')}; bayesgmm commit {git_revision()}",
        f"- Command: `{exact_command()}`" + (" (quick: `em_fit` with an empty cache only)" if args.quick else ""),
        f"- JAX as a new user has it: backend {runtime.get('backend', '?')}, default dtype "
        f"{runtime.get('dtype', '?')} (x64 off); one fresh process per cell; data Old Faithful (272 × 2), "
        f"X3 = {X3_ROWS} × 2 from a fixed 3-component mixture.",
        "",
        "| call | import (s), empty / warm | empty cache: first call (s) | compilations | compile (s) | op-by-op "
        "| warm cache: first call (s) | compilations | cache hits | scikit-learn: import + first call (s) "
        "| import + first call vs scikit-learn, empty / warm |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [table_row(case, results) for case in cases]
    lines += [
        "",
        "Empty cache: the first session, `BAYESGMM_COMPILATION_CACHE` a new folder; warm cache: the next session, "
        "same folder. Compilations: XLA programs compiled or loaded from the persistent cache (JAX's "
        "`backend_compile_duration` event covers both; compile (s) is their sum); op-by-op: those of one JAX "
        "operation called eagerly (a primitive or a jnp/lax/random function), recognised by their name; cache "
        "hits: programs loaded from the cache (programs under 0.1 s of compilation are not cached, so they compile "
        "in every session).",
        "",
        "| goal (issue) | measured | status |",
        "|---|---|---|",
    ]
    lines += [goal_row(goal, results) for goal in GOALS]
    lines += [
        "",
        "The programs of each first call with an empty cache: compile seconds from that session's "
        "`backend_compile_duration` events, kernels from one more first session with XLA's dump on "
        "(`--xla_dump_to`: the CPU backend compiles each kernel, a fusion or an op of a loop's body, to its "
        "own object file; compile time grows with their number). Programs are matched by name and order; "
        f"programs under {SMALL_PROGRAM_S:g} s are summed in one row.",
        "",
        "| call | program | kernels | compile (s), empty cache |",
        "|---|---|---|---|",
    ]
    lines += [row for case in cases for row in program_rows(case, results)]
    lines += cache_check(results)
    lines.append(SECTION_END)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="em_fit (empty cache) and one sklearn fit (script check)")
    parser.add_argument("--output", type=Path, help="default: benchmarks/RESULTS.md (--quick: a temporary file)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per worker process")
    parser.add_argument("--worker", choices=["warmup", "sklearn_fit", "sklearn_loop", *CALLS], help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--dump-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        if args.worker == "warmup":
            result = worker_warmup()
        elif args.worker.startswith("sklearn"):
            result = worker_sklearn(args.worker, args.data_dir)
        else:
            result = worker_bayesgmm(args.worker, args.data_dir)
            if args.dump_dir is not None:
                result["kernels"] = kernels_per_program(args.dump_dir)
        print(RESULT_PREFIX + json.dumps(result))
        return
    if args.output is None:
        args.output = Path(tempfile.mkstemp(prefix="bench_cold_", suffix=".md")[1]) if args.quick else DEFAULT_OUTPUT
    cases = ["em_fit"] if args.quick else list(CALLS)
    states = ("empty",) if args.quick else STATES
    references = ["sklearn_fit"] if args.quick else ["sklearn_fit", "sklearn_loop"]
    load_before = load_average()
    results: dict[tuple[str, str | None], dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench_cold_") as temporary:
        folder = Path(temporary)
        write_data(folder)
        run_worker("warmup", folder, None, args.timeout)
        for reference in references:
            results[(reference, None)] = run_worker(reference, folder, None, args.timeout)
            print(reference, json.dumps(results[(reference, None)]), flush=True)
        for case in cases:
            cache = folder / f"cache_{case}"  # one new folder per call: no program shared between calls
            cache.mkdir()
            for state in states:
                record = run_worker(case, folder, cache, args.timeout)
                record["cache_expected"] = str(cache)
                results[(case, state)] = record
                print(case, state, json.dumps(record), flush=True)
            dump, cache = folder / f"dump_{case}", folder / f"cache_{case}_kernels"  # kernels: one more first session
            dump.mkdir()
            cache.mkdir()
            record = run_worker(case, folder, cache, args.timeout, dump)
            record["cache_expected"] = str(cache)
            results[(case, "kernels")] = record
            print(case, "kernels", json.dumps(record.get("kernels", record)), flush=True)
    section = report(results, args, load_before, cases)
    write_section(args.output, section, SECTION_START, SECTION_END)
    print(section)
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
