"""EM on rows sharded over 4 (fake CPU) devices equals the single-device fit.

The device count is fixed when JAX starts, so the sharded fits run in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys, warnings
    from unittest import mock
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import bayesgmm
    import bayesgmm.em._fit
    from tests._references import make_mixture_data

    def single_device(X, weights, **kwargs):
        # the reference on em's NumPy driver (equal to the compiled fit to round-off, tests/test_em_host.py):
        # only the sharded fits compile
        with mock.patch.object(bayesgmm.em._fit, "HOST_MAX_WORK", float("inf")):
            return bayesgmm.em_fit(X, 3, sample_weight=weights, **kwargs)


    assert jax.device_count() == 4, jax.devices()
    X, _ = make_mixture_data(np.random.default_rng(40), 1003, 3, 3)  # 1003: uneven blocks, padding
    weights = np.random.default_rng(41).integers(0, 3, size=len(X)).astype(float)
    out = {}
    # every covariance type, two of mclust's, both initialisations (each case compiles one fit on 4 devices)
    for covariance_type, init in [
        ("full", "kmeans"), ("tied", "random_from_data"), ("diag", "kmeans"), ("spherical", "random_from_data"),
        ("EEV", "kmeans"), ("VEV", "random_from_data"),  # mclust's: closed form, fixed-point M-step
    ]:
        kwargs = dict(covariance_type=covariance_type, init=init, n_init=2, seed=3, tol=1e-8, max_iter=300)
        single = single_device(X, weights, **kwargs)
        rows = bayesgmm.shard(X, sample_weight=weights)
        assert len(rows.X.sharding.device_set) == 4
        sharded = bayesgmm.em_fit(rows, 3, chunk_size=64, **kwargs)
        out[covariance_type + "/" + init] = [
            [float(single.log_likelihood), float(sharded.log_likelihood)],
            [np.asarray(single.params.means).tolist(), np.asarray(sharded.params.means).tolist()],
            [np.asarray(single.params.covariances).tolist(), np.asarray(sharded.params.covariances).tolist()],
            [single.n_iter, sharded.n_iter],
        ]
    # Student-t components: the E-step's u-weighted sums and the degrees of freedom's sums are summed over devices too
    kwargs = dict(family="student_t", n_init=2, seed=3, tol=1e-8, max_iter=300)
    single = single_device(X, weights, **kwargs)
    sharded = bayesgmm.em_fit(bayesgmm.shard(X, sample_weight=weights), 3, chunk_size=64, **kwargs)
    out["full/student_t"] = [
        [float(single.log_likelihood), float(sharded.log_likelihood)],
        [np.asarray(single.params.means).tolist(), np.asarray(sharded.params.means).tolist()],
        [np.asarray(single.params.dof).tolist(), np.asarray(sharded.params.dof).tolist()],
        [single.n_iter, sharded.n_iter],
    ]
    print("RESULT" + json.dumps(out))
    """
)


@pytest.mark.slow
def test_sharded_fit_equals_single_device_fit():
    """Same data, weights, seeds and initialisation: equal to float64 round-off (spec: 1e-9 relative).

    Only the order of summation differs (per-device partial sums against em's NumPy driver's sums).
    """
    flags = os.environ.get("XLA_FLAGS", "")  # conftest's compile flags stay (the fits compile at level 0)
    env = dict(os.environ, XLA_FLAGS=f"{flags} --xla_force_host_platform_device_count=4".strip(), JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, cwd=root, capture_output=True, text=True, timeout=900
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT"))
    for case, (log_likelihoods, means, covariances, n_iter) in json.loads(line[len("RESULT") :]).items():
        np.testing.assert_allclose(log_likelihoods[1], log_likelihoods[0], rtol=1e-9, err_msg=case)
        np.testing.assert_allclose(means[1], means[0], rtol=1e-9, atol=1e-9, err_msg=case)
        np.testing.assert_allclose(covariances[1], covariances[0], rtol=1e-9, atol=1e-9, err_msg=case)
        assert n_iter[0] == n_iter[1], case
