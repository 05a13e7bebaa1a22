"""Where the test suite's time goes: XLA compilations, tracing and lowering per test and per program.

CI's budget (issue "First calls as fast as scikit-learn's": a clean clone's ``.ci/run`` within 8
minutes on 2 cores) is spent mostly by JAX, not by the tests' arithmetic. This file is both a
pytest plugin and the script that summarises what it recorded:

    PYTHONPATH=benchmarks .venv/bin/python -m pytest -n auto -m "not extended" -p no:cacheprovider \\
        -p profile_suite                        # every worker writes <folder>/<pid>.jsonl
    .venv/bin/python benchmarks/profile_suite.py [folder]   # the tables, as markdown

The folder is ``$BAYESGMM_SUITE_PROFILE`` or ``<tmp>/bayesgmm-suite-profile`` (emptied by the
first process that starts). Per test (its setup, call and teardown together): wall seconds,
and from ``jax.monitoring`` listeners in the test's own process: XLA compilations (count and
seconds, per ``fun_name``, the jitted function's name), tracing and lowering seconds. Work in
the processes a test starts (the notebooks' kernels, the CLI, ``sampling`` tests, sharding)
counts in its wall time only, except a ``sampling`` test's own pytest process (conftest.py), which
records its compilations too. Compilations in a worker thread (``infer`` and ``select`` compile
beside the caller) count in full, so a test's compile seconds can exceed its wall time.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pytest

FOLDER = Path(os.environ.get("BAYESGMM_SUITE_PROFILE", Path(tempfile.gettempdir(), "bayesgmm-suite-profile")))
SMALL_SECONDS = 0.08  # a compilation this short is one jnp operation run eagerly, or as small


# ----------------------------------------------------------------------------- the pytest plugin

_counts: collections.Counter = collections.Counter()
_programs: dict = collections.defaultdict(lambda: [0.0, 0])
_output = None
_nested = False
OWNER = "BAYESGMM_SUITE_PROFILE_OWNER"


def _listen(event: str, duration: float, **kwargs) -> None:
    if event.endswith("backend_compile_duration"):
        _counts["compile"] += duration
        _counts["compilations"] += 1
        program = _programs[kwargs.get("fun_name", "?")]
        program[0] += duration
        program[1] += 1
    elif event.endswith("jaxpr_trace_duration"):
        _counts["trace"] += duration
    elif event.endswith("jaxpr_to_mlir_module_duration"):
        _counts["lower"] += duration


def pytest_configure(config) -> None:
    global _output
    import jax.monitoring

    global _nested
    FOLDER.mkdir(parents=True, exist_ok=True)
    if OWNER not in os.environ:  # the run's first process (xdist's controller) starts afresh
        os.environ[OWNER] = str(os.getpid())  # inherited by the workers and by the pytest processes they start
        for old in FOLDER.glob("*.jsonl"):
            old.unlink()
    else:  # a pytest process a test started (conftest's ``sampling`` tests): its test's record is the parent's
        _nested = not hasattr(config, "workerinput")
    jax.monitoring.register_event_duration_secs_listener(_listen)
    _output = open(FOLDER / f"{os.getpid()}.jsonl", "a", encoding="utf-8")  # noqa: SIM115 - open for the session


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _counts.clear()
    _programs.clear()
    start = time.perf_counter()
    yield
    record = {"test": item.nodeid, "wall": time.perf_counter() - start, **_counts, "programs": dict(_programs)}
    if _nested:  # its compilations count, its wall time is in the parent's record
        record.update(wall=0.0, nested=True)
    _output.write(json.dumps(record) + "\n")
    _output.flush()


# ----------------------------------------------------------------------------- the summary


def _load(folder: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(folder.glob("*.jsonl")) for line in path.open(encoding="utf-8")]


def _table(header: tuple, rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def summary(records: list[dict], top: int = 15) -> str:
    """Markdown: totals, the programs that cost most to compile, the tests that cost most."""
    total = collections.Counter()
    programs = collections.defaultdict(lambda: [0.0, 0])
    tests = collections.defaultdict(collections.Counter)  # parametrisations together
    files = collections.defaultdict(collections.Counter)
    for record in records:
        name = record["test"].split("[")[0]
        for key in ("wall", "compile", "compilations", "trace", "lower"):
            value = record.get(key, 0)
            total[key] += value
            tests[name][key] += value
            files[name.split("::")[0]][key] += value
        for program, (seconds, count) in record["programs"].items():
            programs[program][0] += seconds
            programs[program][1] += count
            if seconds / count < SMALL_SECONDS:
                total["small"] += seconds
                total["small_count"] += count
    tests_run = sum(not record.get("nested") for record in records)
    parts = [
        f"{tests_run} tests, {total['wall']:.0f} s of test time in all (setup, call and teardown, "
        f"summed over the workers); in the tests' own processes {total['compile']:.0f} s of XLA compilation "
        f"({total['compilations']:.0f} programs; {total['small']:.0f} s in {total['small_count']:.0f} "
        f"compilations under {SMALL_SECONDS} s each: eager operations), {total['trace']:.0f} s of tracing "
        f"and {total['lower']:.0f} s of lowering.",
        "",
        _table(
            ("program (jit fun_name)", "compilations", "compile s", "s each"),
            [
                (f"`{name}`", count, f"{seconds:.1f}", f"{seconds / count:.2f}")
                for name, (seconds, count) in sorted(programs.items(), key=lambda item: -item[1][0])[:top]
            ],
        ),
        "",
        _table(
            ("test file", "wall s", "compile s", "compilations", "trace + lower s"),
            [
                (
                    f"`{name}`",
                    f"{c['wall']:.0f}",
                    f"{c['compile']:.0f}",
                    f"{c['compilations']:.0f}",
                    f"{c['trace'] + c['lower']:.0f}",
                )  # fmt: skip
                for name, c in sorted(files.items(), key=lambda item: -item[1]["wall"])[:top]
            ],
        ),
        "",
        _table(
            ("test (all parametrisations)", "wall s", "compile s", "compilations"),
            [
                (
                    f"`{name.split('::')[-1]}` ({name.split('::')[0].removeprefix('tests/')})",
                    f"{c['wall']:.1f}",
                    f"{c['compile']:.1f}",
                    f"{c['compilations']:.0f}",
                )  # fmt: skip
                for name, c in sorted(tests.items(), key=lambda item: -item[1]["wall"])[:top]
            ],
        ),
    ]
    return "\n".join(parts)


SECTION_START, SECTION_END = "<!-- profile_suite:start -->", "<!-- profile_suite:end -->"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=FOLDER)
    parser.add_argument("--top", type=int, default=15, help="rows per table")
    parser.add_argument("--write", type=Path, help="also replace this script's section of this file (RESULTS.md)")
    parser.add_argument("--note", default="", help="a line on the run (its command, wall time) for --write")
    args = parser.parse_args(argv)
    records = _load(args.folder)
    if not records:
        sys.exit(f"no records in {args.folder}: run the suite with -p profile_suite first (see the docstring)")
    text = summary(records, args.top)
    print(text)
    if args.write:
        from _common import cpu_model, git_revision, memory_total, package_version, write_section

        section = "\n".join(
            [
                SECTION_START,
                "## The test suite's time: where CI's minutes go (profile_suite.py)",
                "",
                f"- Machine: {cpu_model()}, {os.cpu_count()} logical cores, {memory_total()} RAM",
                f"- Versions: Python {sys.version.split()[0]}, jax {package_version('jax')}, "
                f"numpyro {package_version('numpyro')}; bayesgmm commit {git_revision()}",
                *([f"- Run: {args.note}"] if args.note else []),
                "",
                text,
                SECTION_END,
                "",
            ]
        )
        write_section(args.write, section, SECTION_START, SECTION_END)


if __name__ == "__main__":
    main()
