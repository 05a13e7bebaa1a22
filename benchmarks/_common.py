"""Helpers shared by the benchmark scripts: machine facts, versions, the exact command,
and the atomic replacement of one script's section of RESULTS.md."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import resource  # Unix: CPU times and peak memory
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


def git_revision(root=REPO_ROOT) -> str:
    """``git describe --always --dirty`` of the checkout at ``root`` (this one by default)."""
    try:
        completed = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty"], capture_output=True, text=True
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


def emit_result(prefix: str, result) -> None:
    """A worker's result on stdout: one line, ``prefix`` then the JSON (``worker_result`` reads it)."""
    print(prefix + json.dumps(result), flush=True)


def worker_result(command: list[str], prefix: str, label: str, env=None) -> dict:
    """Run a worker process; its result (the last stdout line starting with ``prefix``, as JSON), or
    ``{"error": its last line of stderr}`` with the whole stderr printed under ``label``."""
    completed = subprocess.run(command, capture_output=True, text=True, env=env)
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith(prefix):
            return json.loads(line[len(prefix) :])
    message = (completed.stderr.strip().splitlines() or ["no output"])[-1]
    print(f"  {label} failed (exit {completed.returncode}):\n{completed.stderr}", file=sys.stderr)
    return {"error": message}


def cpu_seconds(children: bool = False) -> float:
    """CPU time (user + system) of this process, and of its finished children (pool processes) if asked."""
    total = 0.0
    for who in (resource.RUSAGE_SELF,) + ((resource.RUSAGE_CHILDREN,) if children else ()):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def separated_means(rng, k: int, d: int, box: float, separation: float):
    """``k`` points drawn uniformly in ``[-box, box]^d``, pairwise at least ``separation`` apart (rejection)."""
    import numpy as np

    means: list = []
    while len(means) < k:
        candidate = rng.uniform(-box, box, size=d)
        if all(np.linalg.norm(candidate - m) >= separation for m in means):
            means.append(candidate)
    return np.array(means)


def random_spd(rng, k: int, d: int):
    """``k`` random SPD matrices ``A Aᵀ / d + 0.1 I`` (eigenvalues roughly in [0.1, 4])."""
    import numpy as np

    factors = rng.standard_normal((k, d, d))
    return factors @ np.swapaxes(factors, -1, -2) / d + 0.1 * np.eye(d)


def import_bayesgmm():
    """``bayesgmm``, installed or from this checkout (a worker run without installing)."""
    try:
        import bayesgmm
    except ImportError:
        sys.path.insert(0, str(REPO_ROOT))
        import bayesgmm
    return bayesgmm
