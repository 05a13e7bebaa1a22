"""EM over two local processes (``jax.distributed``, CPU collectives) equals the one-process fit.

The test starts two worker processes (``run_worker`` below, run with ``python -c``) that meet
at a coordinator on a free localhost port. Worker ``i`` holds only its own part of a fixed
data set (rows and sample weights; the parts are of unequal size, so each process pads its
block), passes it to ``bayesgmm.shard`` and fits every covariance type with ``em_fit``. The
test process fits all rows without sharding and compares.
"""

import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import bayesgmm
from tests._references import make_mixture_data

N_PROCESSES = 2
N_SAMPLES, N_FEATURES, N_COMPONENTS = 400, 3, 3
SPLIT = 190  # process 0 holds rows [0, 190), process 1 rows [190, 400)
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
FIT_OPTIONS = dict(n_init=2, seed=3, tol=1e-8, max_iter=300)
TIMEOUT_S = 300


def make_data():
    """The fixed data set ``(X (400, 3), sample_weight (400,))``; some weights are 0."""
    X, _ = make_mixture_data(np.random.default_rng(40), N_SAMPLES, N_FEATURES, N_COMPONENTS, separation=2.0)
    sample_weight = np.random.default_rng(41).integers(0, 3, size=N_SAMPLES).astype(float)
    return X, sample_weight


def local_part(process_id: int):
    """The rows (and their weights) that process ``process_id`` holds."""
    X, sample_weight = make_data()
    rows = slice(0, SPLIT) if process_id == 0 else slice(SPLIT, N_SAMPLES)
    return X[rows], sample_weight[rows]


def summary(result) -> dict:
    """What the test compares, as JSON-ready lists."""
    return {
        "log_likelihood": float(result.log_likelihood),
        "weights": np.asarray(result.params.weights).tolist(),
        "means": np.asarray(result.params.means).tolist(),
        "covariances": np.asarray(result.params.covariances).tolist(),
        "n_iter": int(result.n_iter),
    }


def run_worker(process_id: int, port: int) -> None:
    """One process of the pair: join the coordinator, shard this process's rows, fit, print JSON."""
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"localhost:{port}", num_processes=N_PROCESSES, process_id=process_id
    )
    X_local, weights_local = local_part(process_id)
    rows = bayesgmm.shard(X_local, sample_weight=weights_local)
    out = {"n_samples": rows.n_samples, "n_processes": jax.process_count(), "fits": {}}
    for covariance_type in COVARIANCE_TYPES:
        result = bayesgmm.em_fit(rows, N_COMPONENTS, covariance_type=covariance_type, **FIT_OPTIONS)
        out["fits"][covariance_type] = summary(result)
    print("RESULT" + json.dumps(out), flush=True)
    jax.distributed.shutdown()


def _has_cpu_collectives() -> bool:
    """Whether this jaxlib can run collectives across CPU processes (gloo)."""
    if "jax_cpu_collectives_implementation" not in jax.config.values:
        return False
    for name in ("jaxlib._jax", "jaxlib.xla_extension"):
        try:
            module = __import__(name, fromlist=["_"])
        except ImportError:
            continue
        if hasattr(module, "make_gloo_tcp_collectives"):
            return True
    return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _start_workers(port: int) -> list[subprocess.Popen]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    flags = env.get("XLA_FLAGS", "").split()  # conftest's compile flags stay; one CPU device per process
    env["XLA_FLAGS"] = " ".join(flag for flag in flags if "force_host_platform_device_count" not in flag)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    code = "import sys; from tests.test_multiprocess import run_worker; run_worker(int(sys.argv[1]), int(sys.argv[2]))"
    return [
        subprocess.Popen(
            [sys.executable, "-c", code, str(process_id), str(port)],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for process_id in range(N_PROCESSES)
    ]


def _collect(workers: list[subprocess.Popen]) -> list[dict]:
    """Each worker's RESULT, or a failure showing every worker's stderr."""
    outputs = []
    deadline = time.monotonic() + TIMEOUT_S  # for the pair: a worker whose peer died waits for it
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=max(1.0, deadline - time.monotonic())))
    except subprocess.TimeoutExpired:
        for worker in workers:
            worker.kill()
        outputs = [worker.communicate() for worker in workers]
        pytest.fail(f"the workers ran past {TIMEOUT_S} s:\n" + _stderr_report(outputs))
    if any(worker.returncode != 0 for worker in workers):
        codes = [worker.returncode for worker in workers]
        pytest.fail(f"a worker failed (exit codes {codes}):\n" + _stderr_report(outputs))
    results = []
    for stdout, _ in outputs:
        line = next((line for line in stdout.splitlines() if line.startswith("RESULT")), None)
        assert line is not None, "a worker printed no RESULT line:\n" + _stderr_report(outputs)
        results.append(json.loads(line[len("RESULT") :]))
    return results


def _stderr_report(outputs) -> str:
    return "\n".join(
        f"--- process {process_id} stderr (last 3000 characters):\n{stderr[-3000:]}"
        for process_id, (_, stderr) in enumerate(outputs)
    )


@pytest.mark.slow
def test_two_processes_equal_one_process_fit():
    """Same rows, weights, seed and start: equal to float64 round-off (1e-9, as for sharded devices).

    Only the order of summation differs (per-process partial sums, other chunks).
    """
    if not _has_cpu_collectives():
        pytest.skip("this jaxlib has no CPU collectives (gloo), so jax.distributed cannot run on CPU processes")
    workers = _start_workers(_free_port())  # they compile while the reference fits run here
    assert jax.config.jax_enable_x64  # set for the session by conftest.py

    X, sample_weight = make_data()
    reference = {
        covariance_type: summary(
            bayesgmm.em_fit(
                X, N_COMPONENTS, sample_weight=sample_weight, covariance_type=covariance_type, **FIT_OPTIONS
            )
        )
        for covariance_type in COVARIANCE_TYPES
    }

    for process_id, result in enumerate(_collect(workers)):
        assert result["n_processes"] == N_PROCESSES
        assert result["n_samples"] == N_SAMPLES
        for covariance_type in COVARIANCE_TYPES:
            expected, actual = reference[covariance_type], result["fits"][covariance_type]
            case = f"process {process_id}, {covariance_type}"
            np.testing.assert_allclose(actual["log_likelihood"], expected["log_likelihood"], rtol=1e-9, err_msg=case)
            for name in ("weights", "means", "covariances"):
                np.testing.assert_allclose(
                    actual[name], expected[name], rtol=1e-9, atol=1e-9, err_msg=f"{case}, {name}"
                )
            assert actual["n_iter"] == expected["n_iter"], case
