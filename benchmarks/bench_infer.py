"""NUTS efficiency: bayesgmm's ``infer(method="nuts")`` against a plain NumPyro mixture model.

What is measured
----------------
One workload ``(n, d, k)`` (default ``n=1000, d=2, k=3``, full covariances) is sampled by

- bayesgmm: ``bayesgmm.infer(X, k, method="nuts", covariance_type="full", prior=...)``
  (marginalised likelihood on standardised data, chains started near an EM fit, draws
  relabelled to that fit);
- plain NumPyro: the same model written the textbook way on the raw data scale,
  ``MixtureSameFamily(Categorical(weights), MultivariateNormal(means, scale_tril))`` under
  a plate, run by ``MCMC(NUTS(model), chain_method="vectorized")`` with NUTS's default
  initialisation (``init_to_uniform``) and no relabelling.

Both use the same priors with the same explicit hyperparameters, computed from each data
set ``X``: ``weights ~ Dirichlet(1, ..., 1)``, ``means_kj ~ Normal(x̄_j, 2 sd_j)``,
``stds_kj ~ HalfNormal(sd_j)``, ``corr_cholesky_k ~ LKJCholesky(d, 2)``, covariance
``Σ_k = diag(stds_k) C_k diag(stds_k)`` (``sd_j`` the feature standard deviation,
``ddof=0``).  bayesgmm receives them as ``Priors(weight_concentration=1.0, mean_loc=x̄,
mean_scale=2 sd, std_prior="halfnormal", std_scale=sd, lkj_concentration=2.0)``, which it
maps exactly onto its standardised scale, so both target the same posterior.

Data: draws from a fixed generating mixture (``--seed``): means in a box, pairwise at
least ``MIN_MEAN_SEPARATION`` apart, random rotations of covariances with variances in
``[VAR_LOW, VAR_HIGH]`` (moderately separated clusters), weights ``Dirichlet(5)``.
"Replicate" ``r`` is a fresh data set of the same shape drawn from that same mixture.

Timings (wall clock, in a fresh process per measurement, backend started beforehand):

- first call: compile + run, on replicate 0 with seed 0;
- warm calls (``--repeats``, the median is reported):
  bayesgmm: on new data (replicates 1..R, seeds 1..R): it must not recompile;
  NumPyro: the same ``MCMC`` object and the same data array, new PRNG keys (its most
  favourable case: ``MCMC`` caches its sampler by the identity of the arguments, and with
  numpyro 0.22 a vectorised ``MCMC`` object re-run on another data set fails).

The number and duration (MLIR lowering + XLA backend compilation) of the compilations
during each call are recorded with a ``jax.monitoring`` listener.  NumPyro's ``MCMC.run``
re-compiles its sampling loop on every call (``fori_collect`` jits a fresh closure), so
its warm calls still compile; "excl. compilation" subtracts that recorded compile time
(tracing is not subtracted), giving the plain model's best case.

Every call is timed end to end: bayesgmm's includes its EM start, the relabelling and the
per-row log-likelihood; NumPyro's ``mcmc.run`` plus ``block_until_ready`` on the draws.
The conversion to ArviZ and the diagnostics are not timed.

Diagnostics (ArviZ: ``arviz_stats.ess(method="bulk")`` and ``arviz_stats.rhat``, rank-
normalised split r-hat) over every scalar of ``weights``, ``means`` and ``covariances`` (for
NumPyro the covariances implied by the sampled ``stds`` and ``corr_cholesky``):

- bayesgmm: on ``Posterior.to_arviz()``, i.e. relabelled draws (what users get);
- NumPyro "raw": on the draws as sampled (label switching shows up in r-hat);
- NumPyro "relabelled": each draw's components permuted to the generating means by
  optimal assignment on the means (Hungarian algorithm; the same rule bayesgmm applies
  against its EM fit).  Min-bulk-ESS per second compares bayesgmm with this one: on raw
  draws whose chains sit in different labellings the bulk ESS is meaningless.

Min bulk ESS / s = min bulk ESS of a warm call / its wall time (or its wall time minus its
compile time), median over warm calls.  R-hats are the maximum over all calls.  A 2-chain run (first call
only) of both is added when ``--chains`` is not 2, for the r-hat with 2 chains.

Results go to a Markdown section between ``<!-- bench_infer:start -->`` and
``<!-- bench_infer:end -->`` in ``--output`` (other sections of the file are kept).

How to run (from the repository root)::

    python benchmarks/bench_infer.py --quick --output /tmp/bench_infer.md   # check the script
    python benchmarks/bench_infer.py                                        # n=1000, 4 chains, 500+1000
    python benchmarks/bench_infer.py --x64                                  # in float64
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
from _common import (
    Workload,
    cpu_model,
    emit_result,
    exact_command,
    git_revision,
    import_bayesgmm,
    load_average,
    memory_total,
    package_version,
    separated_means,
    worker_result,
    write_section,
)

# ----------------------------------------------------------------------------- constants

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parent.parent
DEFAULT_OUTPUT = SCRIPT.parent / "RESULTS.md"

SECTION_START = "<!-- bench_infer:start -->"
SECTION_END = "<!-- bench_infer:end -->"
RESULT_PREFIX = "BENCH_INFER_RESULT "  # marks the worker's JSON line on stdout

DEFAULT_SEED = 0
MIN_MEAN_SEPARATION = 4.0  # Euclidean distance between generating means
MEAN_BOX = 4.0  # generating means are drawn in [-MEAN_BOX, MEAN_BOX]^d
VAR_LOW, VAR_HIGH = 0.3, 1.5  # eigenvalues of the generating covariances

# Shared prior hyperparameters (the data-dependent ones are computed per data set).
WEIGHT_CONCENTRATION = 1.0
MEAN_SCALE_FACTOR = 2.0  # mean_scale = 2 sd_j
STD_SCALE_FACTOR = 1.0  # HalfNormal scale = sd_j
LKJ_CONCENTRATION = 2.0

FULL = dict(n=1000, num_warmup=500, num_samples=1000, repeats=3)
QUICK = dict(n=300, num_warmup=200, num_samples=200, repeats=1)

# Goals from the issue.
GOAL_SPEEDUP = 3.0
GOAL_RHAT = 1.01
GOAL_FIRST_CALL_S = 10.0

VARIABLES = ("weights", "means", "covariances")


class Mixture(NamedTuple):
    weights: np.ndarray  # (k,)
    means: np.ndarray  # (k, d)
    chol: np.ndarray  # (k, d, d)


class Hyper(NamedTuple):
    """The explicit prior hyperparameters, on the data's scale."""

    mean_loc: np.ndarray  # (d,)
    mean_scale: np.ndarray  # (d,)
    std_scale: np.ndarray  # (d,) HalfNormal scale


# ----------------------------------------------------------------------------- data


def generating_mixture(d: int, k: int, seed: int) -> Mixture:
    """The fixed mixture every replicate is drawn from (depends on ``seed, d, k`` only)."""
    rng = np.random.default_rng([seed, d, k])
    weights = rng.dirichlet(np.full(k, 5.0))
    means = separated_means(rng, k, d, MEAN_BOX, MIN_MEAN_SEPARATION)
    chol = []
    for _ in range(k):
        rotation, _ = np.linalg.qr(rng.standard_normal((d, d)))
        variances = rng.uniform(VAR_LOW, VAR_HIGH, size=d)
        chol.append(np.linalg.cholesky(rotation @ np.diag(variances) @ rotation.T))
    return Mixture(weights, means, np.array(chol))


def make_data(workload: Workload, seed: int, replicate: int) -> np.ndarray:
    """Replicate ``replicate``: ``n`` rows from the generating mixture, float64."""
    n, d, k = workload
    mixture = generating_mixture(d, k, seed)
    rng = np.random.default_rng([seed, n, d, k, replicate])
    labels = rng.choice(k, size=n, p=mixture.weights)
    noise = rng.standard_normal((n, d))
    return mixture.means[labels] + np.einsum("nij,nj->ni", mixture.chol[labels], noise)


def hyperparameters(X: np.ndarray) -> Hyper:
    sd = X.std(axis=0)
    return Hyper(X.mean(axis=0), MEAN_SCALE_FACTOR * sd, STD_SCALE_FACTOR * sd)


# ----------------------------------------------------------------------------- diagnostics


def relabel_to(means: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per draw, the permutation ``perm`` (new k = old perm[k]) minimising Σ‖μ_perm(k) − ref_k‖²."""
    from scipy.optimize import linear_sum_assignment

    batch, (k, d) = means.shape[:-2], means.shape[-2:]
    flat = means.reshape((-1, k, d))
    cost = np.sum((reference[None, :, None, :] - flat[:, None, :, :]) ** 2, axis=-1)
    return np.stack([linear_sum_assignment(c)[1] for c in cost]).reshape(batch + (k,))


def permute_draws(draws: dict[str, np.ndarray], permutations: np.ndarray) -> dict[str, np.ndarray]:
    """Apply per-draw component permutations to (chain, draw, k, ...) arrays."""
    out = {}
    for name, value in draws.items():
        index = permutations.reshape(permutations.shape + (1,) * (value.ndim - 3))
        out[name] = np.take_along_axis(value, np.broadcast_to(index, value.shape), axis=2)
    return out


def datatree(draws: dict[str, np.ndarray]):
    import arviz_base  # from_dict: the arviz-base 1.3 / numpyro 0.22 import-order pitfall is from_numpyro's

    return arviz_base.from_dict(
        {"posterior": draws},
        dims={
            "weights": ["component"],
            "means": ["component", "feature"],
            "covariances": ["component", "feature", "feature_bis"],
        },
        sample_dims=["chain", "draw"],
    )


def diagnostics(tree) -> dict:
    """Min bulk ESS and max r-hat over every scalar of weights, means and covariances."""
    import arviz_stats

    ess = arviz_stats.ess(tree, group="posterior", var_names=list(VARIABLES), method="bulk")
    rhat = arviz_stats.rhat(tree, group="posterior", var_names=list(VARIABLES))
    values = lambda result, names: np.concatenate(  # noqa: E731
        [np.ravel(np.asarray(result[name])) for name in names]
    )
    ess_all, rhat_all = values(ess, VARIABLES), values(rhat, VARIABLES)
    rhat_means = values(rhat, ["means"])
    return {
        "min_bulk_ess": float(np.nanmin(ess_all)),
        "max_rhat": float(np.nanmax(rhat_all)),
        "max_rhat_means": float(np.nanmax(rhat_means)),
        "nan": int(np.isnan(ess_all).sum() + np.isnan(rhat_all).sum()),
    }


# ----------------------------------------------------------------------------- workers
# Each runs in a fresh process and returns a JSON-serialisable dict: one record per call
# (role, wall time, compilations during it, diagnostics, divergences) and runtime facts.


class CompileCounter:
    """Counts XLA backend compilations, and the seconds of lowering + compiling, via ``jax.monitoring``."""

    def __init__(self):
        import jax

        self.count, self.seconds = 0, 0.0
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            self.count += 1
            self.seconds += duration
        elif event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
            self.seconds += duration

    def snapshot(self) -> tuple[int, float]:
        return self.count, self.seconds


def setup_jax(x64: bool):
    import jax

    jax.config.update("jax_enable_x64", x64)
    jax.block_until_ready(jax.numpy.zeros(1))  # start the backend outside the timings
    return jax


def runtime_string(jax, library: str) -> str:
    device = jax.devices()[0]
    return (
        f"{library}, JAX backend {jax.default_backend()} ({device.device_kind}, "
        f"{jax.device_count()} device(s)), dtype {jax.numpy.result_type(float)}"
    )


def timed_calls(plan, call, counter) -> list[dict]:
    """Run ``call(replicate, seed)`` for each ``(role, replicate, seed)`` in ``plan``, timing each."""
    records = []
    for role, replicate, seed in plan:
        compiles_before, seconds_before = counter.snapshot()
        start = time.perf_counter()
        result = call(replicate, seed)
        elapsed = time.perf_counter() - start
        compiles_after, seconds_after = counter.snapshot()
        records.append(
            {
                "role": role,
                "replicate": replicate,
                "seed": seed,
                "time": elapsed,
                "compilations": compiles_after - compiles_before,
                "compile_seconds": seconds_after - seconds_before,
                **result(),  # diagnostics, computed after the timing
            }
        )
    return records


def time_bayesgmm(workload: Workload, args: argparse.Namespace) -> dict:
    jax = setup_jax(args.x64)
    bayesgmm = import_bayesgmm()
    counter = CompileCounter()

    def call(replicate, seed):
        X = make_data(workload, args.seed, replicate)
        hyper = hyperparameters(X)
        prior = bayesgmm.Priors(
            weight_concentration=WEIGHT_CONCENTRATION,
            mean_loc=hyper.mean_loc,
            mean_scale=hyper.mean_scale,
            std_prior="halfnormal",
            std_scale=hyper.std_scale,
            lkj_concentration=LKJ_CONCENTRATION,
        )
        post = bayesgmm.infer(
            X,
            workload.k,
            method="nuts",
            covariance_type="full",
            prior=prior,
            num_warmup=args.num_warmup,
            num_samples=args.num_samples,
            num_chains=args.chains,
            seed=seed,
            progress_bar=False,
        )
        jax.block_until_ready(post.params)

        def result():
            return {
                **diagnostics(post.to_arviz()),
                "divergences": int(np.sum(post.sample_stats["diverging"])),
                "draws_shape": list(np.shape(post.params.weights)),
            }

        return result

    plan = [("first", 0, 0)] + [("warm", r, r) for r in range(1, args.repeats + 1)]
    return {
        "calls": timed_calls(plan, call, counter),
        "runtime": runtime_string(jax, f"bayesgmm {bayesgmm.__version__}"),
    }


def plain_model(X, hyper, *, k: int):
    """The textbook NumPyro mixture on the raw data scale, with the same priors as bayesgmm."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    d = X.shape[-1]
    mean_loc, mean_scale, std_scale = hyper
    weights = numpyro.sample("weights", dist.Dirichlet(jnp.full((k,), WEIGHT_CONCENTRATION, X.dtype)))
    with numpyro.plate("component", k):
        means = numpyro.sample("means", dist.Normal(mean_loc, mean_scale).to_event(1))
        stds = numpyro.sample("stds", dist.HalfNormal(std_scale).to_event(1))
        corr_cholesky = numpyro.sample("corr_cholesky", dist.LKJCholesky(d, LKJ_CONCENTRATION))
    scale_tril = stds[..., :, None] * corr_cholesky
    with numpyro.plate("obs_id", X.shape[0]):
        components = dist.MultivariateNormal(means, scale_tril=scale_tril)
        numpyro.sample("obs", dist.MixtureSameFamily(dist.Categorical(probs=weights), components), obs=X)


def time_numpyro(workload: Workload, args: argparse.Namespace) -> dict:
    jax = setup_jax(args.x64)
    import functools

    import jax.numpy as jnp
    import numpyro
    from numpyro.infer import MCMC, NUTS

    counter = CompileCounter()
    reference = generating_mixture(workload.d, workload.k, args.seed).means
    mcmc = MCMC(
        NUTS(functools.partial(plain_model, k=workload.k)),
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=args.chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    data: dict[int, tuple] = {}  # replicate -> (X, hyper) as device arrays, kept alive: MCMC caches by id()

    def call(replicate, seed):
        if replicate not in data:
            X = make_data(workload, args.seed, replicate)
            dtype = jnp.result_type(float)
            hyper = tuple(jnp.asarray(value, dtype) for value in hyperparameters(X))
            data[replicate] = (jnp.asarray(X, dtype), hyper)
        X, hyper = data[replicate]
        mcmc.run(jax.random.key(seed), X, hyper)
        samples = mcmc.get_samples(group_by_chain=True)
        jax.block_until_ready(samples)

        def result():
            scale_tril = np.asarray(samples["stds"])[..., :, None] * np.asarray(samples["corr_cholesky"])
            draws = {
                "weights": np.asarray(samples["weights"], np.float64),
                "means": np.asarray(samples["means"], np.float64),
                "covariances": np.asarray(scale_tril @ np.swapaxes(scale_tril, -1, -2), np.float64),
            }
            raw = diagnostics(datatree(draws))
            relabelled = diagnostics(datatree(permute_draws(draws, relabel_to(draws["means"], reference))))
            return {
                **{f"raw_{name}": value for name, value in raw.items()},
                **relabelled,
                "divergences": int(np.sum(mcmc.get_extra_fields(group_by_chain=True)["diverging"])),
                "draws_shape": list(draws["weights"].shape),
            }

        return result

    plan = [("first", 0, 0)] + [("warm", 0, r) for r in range(1, args.repeats + 1)]
    return {
        "calls": timed_calls(plan, call, counter),
        "runtime": runtime_string(jax, f"numpyro {numpyro.__version__}"),
    }


WORKERS = {"bayesgmm": time_bayesgmm, "numpyro": time_numpyro}


def run_worker_main(args: argparse.Namespace) -> None:
    """Entry point of a worker process: time one library, print JSON."""
    warnings.simplefilter("ignore", FutureWarning)
    result = WORKERS[args.worker](Workload.from_arg(args.workload), args)
    emit_result(RESULT_PREFIX, result)


# ----------------------------------------------------------------------------- driver


def run_worker(library: str, chains: int, repeats: int, workload: Workload, args: argparse.Namespace) -> dict:
    """Time ``library`` in a fresh process; return its result, or ``{"error": ...}``."""
    command = [
        sys.executable,
        str(SCRIPT),
        "--worker",
        library,
        "--workload",
        workload.to_arg(),
        "--seed",
        str(args.seed),
        "--chains",
        str(chains),
        "--repeats",
        str(repeats),
        "--num-warmup",
        str(args.num_warmup),
        "--num-samples",
        str(args.num_samples),
    ] + (["--x64"] if args.x64 else [])
    return worker_result(command, RESULT_PREFIX, f"{library} ({chains} chains)")


def calls_of(result: dict, *roles: str) -> list[dict]:
    return [call for call in result.get("calls", []) if call["role"] in roles]


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarise(result: dict) -> dict:
    """The numbers of one table row (``raw_*`` only for NumPyro)."""
    first = calls_of(result, "first")[0]
    warm = calls_of(result, "warm")
    everything = result["calls"]
    net = lambda call: max(call["time"] - call["compile_seconds"], 1e-9)  # noqa: E731
    summary = {
        "first_call": first["time"],
        "warm": median_or_none([c["time"] for c in warm]),
        "warm_net": median_or_none([net(c) for c in warm]),
        "warm_compilations": median_or_none([c["compilations"] for c in warm]),
        "warm_compile_seconds": median_or_none([c["compile_seconds"] for c in warm]),
        "divergences": [c["divergences"] for c in everything],
        "nan": sum(c["nan"] + c.get("raw_nan", 0) for c in everything),
    }
    for prefix in ("", "raw_") if "raw_min_bulk_ess" in first else ("",):
        summary.update(
            {
                f"{prefix}min_ess": (
                    median_or_none([c[f"{prefix}min_bulk_ess"] for c in warm])
                    if warm
                    else first[f"{prefix}min_bulk_ess"]
                ),
                f"{prefix}ess_per_s": median_or_none([c[f"{prefix}min_bulk_ess"] / c["time"] for c in warm]),
                f"{prefix}ess_per_net_s": median_or_none([c[f"{prefix}min_bulk_ess"] / net(c) for c in warm]),
                f"{prefix}max_rhat": max(c[f"{prefix}max_rhat"] for c in everything),
                f"{prefix}max_rhat_means": max(c[f"{prefix}max_rhat_means"] for c in everything),
            }
        )
    return summary


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


def fmt_rhat(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


COLUMNS = (
    "method",
    "chains",
    "first call, compile incl. (s)",
    "warm call (s) [compiles, compile s]",
    "warm call excl. compilation (s)",
    "min bulk ESS",
    "min bulk ESS/s",
    "min bulk ESS/s excl. compilation",
    "max r-hat",
    "max r-hat, means",
    "divergences per call",
)


def table_row(label: str, chains: int, result: dict) -> str:
    if "error" in result:
        return f"| {label} | {chains} | failed: {result['error']} |" + " |" * (len(COLUMNS) - 3)
    s = summarise(result)
    raw = "raw_min_ess" in s

    def pair(name, formatter):  # NumPyro: relabelled / raw
        return f"{formatter(s[name])} / {formatter(s['raw_' + name])}" if raw else formatter(s[name])

    warm_cell = fmt(s["warm"])
    if s["warm"] is not None:
        warm_cell += f" [{s['warm_compilations']:g}, {s['warm_compile_seconds']:.1f}]"
    cells = [
        label,
        str(chains),
        fmt(s["first_call"]),
        warm_cell,
        fmt(s["warm_net"]),
        pair("min_ess", lambda v: fmt(v, 0)),
        pair("ess_per_s", lambda v: fmt(v, 1)),
        pair("ess_per_net_s", lambda v: fmt(v, 1)),
        pair("max_rhat", fmt_rhat),
        pair("max_rhat_means", fmt_rhat),
        ", ".join(str(v) for v in s["divergences"]),
    ]
    return "| " + " | ".join(cells) + " |"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def goals(ours: dict | None, baseline: dict | None) -> list[str]:
    if not ours or "error" in ours or not baseline or "error" in baseline:
        return ["- Goals: not evaluated (a run failed)."]
    o, b = summarise(ours), summarise(baseline)
    lines = []
    if o["ess_per_s"] is not None and b["ess_per_net_s"]:
        ratio = o["ess_per_s"] / b["ess_per_net_s"]
        lines.append(
            f"- Min-bulk-ESS/s, bayesgmm (wall time) / plain NumPyro (relabelled, excl. compilation): "
            f"{ratio:.2f}× (goal ≥ {GOAL_SPEEDUP:g}×: {verdict(ratio >= GOAL_SPEEDUP)}); "
            f"against plain NumPyro's wall time: {o['ess_per_s'] / b['ess_per_s']:.2f}×; "
            f"against its raw draws excl. compilation: {o['ess_per_s'] / b['raw_ess_per_net_s']:.2f}×."
        )
    else:
        lines.append("- Min-bulk-ESS/s ratio: needs --repeats ≥ 1.")
    lines.append(
        f"- bayesgmm max r-hat {o['max_rhat']:.4f} "
        f"(goal < {GOAL_RHAT:g}: {verdict(o['max_rhat'] < GOAL_RHAT)}); "
        f"first call {o['first_call']:.1f} s (goal < {GOAL_FIRST_CALL_S:g} s: "
        f"{verdict(o['first_call'] < GOAL_FIRST_CALL_S)}); plain NumPyro first call {b['first_call']:.1f} s, "
        f"max r-hat on the means {b['raw_max_rhat_means']:.3f} raw, {b['max_rhat_means']:.3f} relabelled."
    )
    if o["warm_compilations"]:
        lines.append(
            f"- Warning: bayesgmm compiled during its warm calls (median {o['warm_compilations']:g} "
            "programs per call); new data of the same shape should not recompile."
        )
    if o["nan"] or b["nan"]:
        lines.append(f"- Warning: NaN ESS / r-hat values (bayesgmm {o['nan']}, plain NumPyro {b['nan']}) were skipped.")
    return lines


def render_section(
    args: argparse.Namespace,
    workload: Workload,
    rows: list[str],
    runtimes: dict[str, str],
    goal_lines: list[str],
    load_before: str,
    load_after: str,
) -> str:
    versions = ", ".join(
        f"{name} {package_version(name)}"
        for name in ("jax", "jaxlib", "numpyro", "numpy", "scipy", "arviz-base", "arviz-stats")
    )
    mixture = generating_mixture(workload.d, workload.k, args.seed)
    separation = (
        min(np.linalg.norm(a - b) for i, a in enumerate(mixture.means) for b in mixture.means[i + 1 :])
        if workload.k > 1
        else float("nan")
    )
    header = "| " + " | ".join(COLUMNS) + " |"
    lines = [
        SECTION_START,
        '## NUTS: bayesgmm `infer(method="nuts")` vs a plain NumPyro mixture model',
        "",
        f"- Date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
        f"- Machine: {cpu_model()}, {os.cpu_count()} logical cores, {memory_total()} RAM "
        f"({platform.platform()}); load average before / after the run: {load_before} / {load_after}",
        f"- Versions: Python {platform.python_version()}, {versions}; bayesgmm commit {git_revision()}",
        *(f"- {library}: {text}" for library, text in runtimes.items()),
        f"- Command: `{exact_command()}`",
        f"- Setting: {workload.label}, full covariances, {args.num_warmup} warm-up + {args.num_samples} "
        f"draws per chain, {args.chains} chains (vectorised), {args.repeats} warm call(s), "
        f"data seed {args.seed}; "
        f"generating mixture: weights {np.round(mixture.weights, 2).tolist()}, closest means "
        f"{separation:.1f} apart, component variances in [{VAR_LOW:g}, {VAR_HIGH:g}].",
        f"- Priors (both): weights ~ Dirichlet({WEIGHT_CONCENTRATION:g}), means_kj ~ Normal(x̄_j, "
        f"{MEAN_SCALE_FACTOR:g} sd_j), stds_kj ~ HalfNormal({STD_SCALE_FACTOR:g} sd_j), "
        f"corr_cholesky_k ~ LKJCholesky(d, {LKJ_CONCENTRATION:g}); x̄, sd of each data set.",
        "",
        header,
        "|" + "---|" * len(COLUMNS),
        *rows,
        "",
        *goal_lines,
        "",
        "Each row is one fresh process. First call = compile + run on replicate 0. Warm call = median "
        "wall time; bayesgmm: on new data of the same shape (replicates 1..R, new seeds); plain NumPyro: "
        "the same `MCMC` object and data array with new PRNG keys (its most favourable case). In "
        "brackets: XLA compilations per warm call and their seconds (lowering + backend compile, "
        "`jax.monitoring`); NumPyro's `MCMC.run` recompiles its sampling loop on every call. Excl. "
        "compilation = wall time minus those seconds (tracing not subtracted): the plain model's best "
        "case. ESS and r-hat over every scalar of weights, means and covariances (ArviZ bulk ESS, rank-"
        "normalised split r-hat). For plain NumPyro `a / b` = relabelled / raw draws (relabelled: each "
        "draw's components matched to the generating means by optimal assignment on the means; raw: as "
        "sampled, where label switching inflates r-hat and deflates ESS); bayesgmm's draws are relabelled"
        " by `infer` itself (to its EM fit). Min bulk ESS and ESS/s: medians over the warm calls (ESS of "
        "the first call when there are none); r-hats: maxima over all calls. The goals' ratio divides "
        "bayesgmm's ESS/s by the relabelled, compilation-excluded NumPyro figure.",
        SECTION_END,
    ]
    return "\n".join(lines) + "\n"


def log_result(name: str, chains: int, result: dict) -> None:
    if "error" in result:
        return
    for call in result["calls"]:
        extra = (
            f", raw: ESS {call['raw_min_bulk_ess']:.0f}, r-hat {call['raw_max_rhat']:.3f}"
            if "raw_min_bulk_ess" in call
            else ""
        )
        print(
            f"  {name:9s} {chains} chains {call['role']:8s} {call['time']:7.2f} s "
            f"({call['compilations']} compiles, {call['compile_seconds']:.1f} s): min bulk ESS "
            f"{call['min_bulk_ess']:.0f}, max r-hat {call['max_rhat']:.3f} "
            f"(means {call['max_rhat_means']:.3f}), "
            f"divergences {call['divergences']}{extra}",
            file=sys.stderr,
            flush=True,
        )


def run_benchmarks(args: argparse.Namespace) -> None:
    workload = Workload(args.n, args.d, args.k)
    load_before = load_average()
    print(f"{workload.label}, {args.num_warmup}+{args.num_samples} per chain:", file=sys.stderr, flush=True)
    jobs = [("bayesgmm", args.chains, args.repeats), ("numpyro", args.chains, args.repeats)]
    if args.chains != 2:
        jobs += [("bayesgmm", 2, 0), ("numpyro", 2, 0)]
    labels = {"bayesgmm": "bayesgmm `infer`", "numpyro": "plain NumPyro"}
    results, rows, runtimes = {}, [], {}
    for library, chains, repeats in jobs:
        result = run_worker(library, chains, repeats, workload, args)
        results[(library, chains)] = result
        log_result(library, chains, result)
        if "error" not in result:
            runtimes.setdefault(library, result["runtime"])
        rows.append(table_row(labels[library], chains, result))
    goal_lines = goals(results.get(("bayesgmm", args.chains)), results.get(("numpyro", args.chains)))
    section = render_section(args, workload, rows, runtimes, goal_lines, load_before, load_average())
    write_section(args.output, section, SECTION_START, SECTION_END)
    print(section)
    print(f"Wrote {args.output}", file=sys.stderr)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="check the script: n={n}, {num_warmup}+{num_samples} per chain, {repeats} warm "
        "call (explicit options still win)".format(**QUICK),
    )
    parser.add_argument("--n", type=int, default=None, help=f"rows (default {FULL['n']})")
    parser.add_argument("--d", type=int, default=2, help="features (default 2)")
    parser.add_argument("--k", type=int, default=3, help="components (default 3)")
    parser.add_argument("--num-warmup", type=int, default=None, help=f"default {FULL['num_warmup']}")
    parser.add_argument("--num-samples", type=int, default=None, help=f"default {FULL['num_samples']}")
    parser.add_argument("--chains", type=int, default=4, help="chains (default 4)")
    parser.add_argument("--repeats", type=int, default=None, help=f"warm calls per method (default {FULL['repeats']})")
    parser.add_argument("--x64", action="store_true", help="run both in float64 (default: JAX's float32)")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="Markdown file to update (default benchmarks/RESULTS.md)"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"data seed (default {DEFAULT_SEED})")
    # Hidden: used when the script re-invokes itself to time one library in a fresh process.
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.worker:
        if not args.workload:
            parser.error("--worker needs --workload")
        if args.repeats < 0:
            parser.error("--repeats must be at least 0")
    elif args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if min(args.num_warmup, args.num_samples, args.chains, args.d, args.k) < 1 or args.n <= args.k:
        parser.error("need num-warmup, num-samples, chains, d, k >= 1 and n > k")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        run_worker_main(args)
    else:
        run_benchmarks(args)


if __name__ == "__main__":
    main()
