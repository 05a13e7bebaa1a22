"""Helpers shared by the benchmark scripts: machine facts, versions, the exact command,
and the atomic replacement of one script's section of RESULTS.md."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

REPO_ROOT = Path(__file__).resolve().parent.parent

TIMING_VARIABLES = (
    "PYTHONPATH",
    "XLA_FLAGS",
    "JAX_PLATFORMS",
    "JAX_ENABLE_X64",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "MALLOC_MMAP_MAX_",
    "MALLOC_TRIM_THRESHOLD_",
)


class Workload(NamedTuple):
    """A benchmark's data shape: ``n`` rows, ``d`` features, ``k`` components (``--workload n,d,k``)."""

    n: int
    d: int
    k: int

    @property
    def label(self) -> str:
        return f"n={self.n:_}, d={self.d}, k={self.k}"

    def to_arg(self) -> str:
        return f"{self.n},{self.d},{self.k}"

    @classmethod
    def from_arg(cls, text: str) -> Workload:
        n, d, k = (int(part) for part in text.split(","))
        return cls(n, d, k)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def load_average() -> str:
    """1-minute load average: timings on a busy machine are not comparable."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def git_revision() -> str:
    try:
        completed = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return completed.stdout.strip() or "unknown"


def exact_command() -> str:
    """The command line, prefixed by the environment variables that affect the timings."""
    env = [f"{name}={shlex.quote(os.environ[name])}" for name in TIMING_VARIABLES if name in os.environ]
    return " ".join(env + [shlex.join(sys.orig_argv)])


def write_section(path: Path, section: str, start_marker: str, end_marker: str) -> None:
    """Replace the section between the markers in ``path`` (or append it), atomically."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    start, end = text.find(start_marker), text.find(end_marker)
    if start != -1 and end > start:
        text = text[:start] + section + text[end + len(end_marker) :].removeprefix("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644  # temp files are created 0600
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(text)
    os.chmod(handle.name, mode)
    os.replace(handle.name, path)
