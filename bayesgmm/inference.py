"""Bayesian inference for Gaussian mixtures: ``infer(X, k, method="nuts" | "svi" | "map")``.

Student-t components (``family="student_t"``: a ``dof`` site, static in every program) and
Gaussian components observed with known measurement errors (``measurement_error``: an
argument of the programs, standardised with the data) use the same path.

Data flow: validate -> standardise (``z = (x − c) / s``, one scalar ``s``) -> EM fit for an
initial point and a reference labelling -> NUTS / SVI / MAP on ``model.gmm_model`` ->
draws relabelled to the reference by optimal assignment on the means -> ``Posterior``
on the data's own scale.

The methods are the table ``INFERENCE_METHODS``: each entry's ``prepare`` starts what can
overlap the EM start (every method compiles its one program in a worker thread: NUTS's
sampler here, SVI's and MAP's optimisation in ``_variational``), its ``run`` turns the start
into draws; both take one ``InferenceRequest``. The programs make their PRNG key from the
seed inside, so a call runs no JAX operation op by op.

Compiled runners are cached by shapes and settings (``functools.lru_cache`` on the static
configuration, data passed as arguments), so a second call on new data of the same shape
does not recompile.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.flatten_util import ravel_pytree
from numpyro.infer.hmc import hmc
from scipy.optimize import linear_sum_assignment

from bayesgmm import _validation, _variational
from bayesgmm._cache import enable as enable_compilation_cache
from bayesgmm._cache import lower as lower_through_export
from bayesgmm._conditional import log_joint_with_errors
from bayesgmm._errors import ArgumentTypeError, ConvergenceWarning, DegenerateFitError
from bayesgmm._threads import host_cores, thread_map
from bayesgmm.convert import to_datatree
from bayesgmm.covariance import COVARIANCE_TYPES, get_structure, permute_components, pooled_type
from bayesgmm.em import EMConfig, EMResult, em_fit, fit_on_host
from bayesgmm.families import FAMILIES
from bayesgmm.model import (
    Priors,
    constrain,
    has_dof,
    params_from_sites,
    sites_from_params,
    unconstrain,
    unconstrained_log_density,
)
from bayesgmm.params import GMMParams, map_batch

BAYESIAN_TYPES = COVARIANCE_TYPES  # the covariance types with a prior (model.gmm_model)
GUIDES = tuple(name for name in _variational.GUIDES if name != "map")  # SVI's guides; "map" is method="map"
_INIT_JITTER = 0.1  # sd of the per-chain perturbation of the EM start, unconstrained scale


class Standardisation(NamedTuple):
    """``z = (x − center) / scale``; ``scale`` is one number so every covariance type is kept."""

    center: np.ndarray  # (d,)
    scale: float

    @classmethod
    def of(cls, center: np.ndarray, variance: np.ndarray) -> Standardisation:
        """From the (weighted) feature means and variances: the root mean variance as scale."""
        scale = float(np.sqrt(np.mean(variance)))
        return cls(center, scale if scale > 0 else 1.0)

    def to_data(self, params: GMMParams) -> GMMParams:
        """Parameters of the standardised data mapped back to the data's scale."""
        return _affine(params, np.asarray(self.center), np.asarray(self.scale))

    def to_standard(self, params: GMMParams) -> GMMParams:
        return _affine(params, -np.asarray(self.center) / self.scale, np.asarray(1.0 / self.scale))

    def errors_to_standard(self, errors: np.ndarray) -> np.ndarray:
        """Measurement-error variances (n, d) or covariances (n, d, d) of ``x`` as those of ``z``.

        ``z = (x − c) / s`` divides each error by ``s`` (one number), so its variances and
        covariances by ``s²`` (``D⁻¹ S D⁻¹`` with ``D = s I``).
        """
        return errors / self.scale**2


def _affine(params: GMMParams, shift, factor) -> GMMParams:
    """The mixture of ``factor · x + shift`` for ``x`` from ``params``, as host (NumPy) arrays.

    NumPy, not a compiled program: two products over the draws, where compiling one per shape
    took 0.05-0.45 s of a first ``infer`` call. Degrees of freedom (Student-t) do not change
    under an affine map.
    """
    params = jax.tree.map(np.asarray, params)
    dtype = params.dtype
    means = params.means * factor.astype(dtype) + shift.astype(dtype)
    return dataclasses.replace(params, means=means, scale=params.scale * factor.astype(dtype))


class InferenceRequest(NamedTuple):
    """What an inference method's ``prepare`` and ``run`` need: the data, validated settings.

    ``Z``, ``w`` and ``hyper`` are on the device (``jax.device_put``: ``jnp.asarray`` would
    compile per shape), ``Z_host`` the same standardised rows on the host.
    """

    seed: np.uint32  # the inference's PRNG seed; the programs make their key from it
    Z: Array  # (n, d) standardised rows, float dtype of jax
    w: Array  # (n,) row weights, same dtype
    hyper: dict  # the prior's hyperparameters on the standardised scale (Priors.resolve)
    errors: Array | None  # (n, d) error variances or (n, d, d) covariances, standardised scale; None: no errors
    Z_host: np.ndarray  # (n, d) as Z
    errors_host: np.ndarray | None  # as errors
    standard: Standardisation
    k: int
    covariance_type: str
    family: str  # the components' family (static in the compiled programs)
    prior: Priors  # on the data's scale; its std_prior is static in the compiled programs
    num_warmup: int  # NUTS
    num_samples: int  # NUTS: per chain; SVI: draws from the guide
    num_chains: int  # NUTS
    num_steps: int  # SVI / MAP
    chain_method: str  # NUTS, resolved (not "auto")
    progress_bar: bool  # NUTS
    guide: str  # SVI, one of GUIDES
    batch_size: int | None  # SVI: rows per minibatch, None for every row


# ----------------------------------------------------------------------------- relabelling


def relabel(params: GMMParams, reference_means: np.ndarray) -> tuple[GMMParams, np.ndarray]:
    """Permute the components of every draw to best match ``reference_means (k, d)``.

    For each draw, the permutation minimising ``Σ_k ‖μ_{p(k)} − m_k‖²`` is found by
    optimal assignment (Hungarian algorithm) and applied to weights, means, scales and
    (Student-t) degrees of freedom together.

    Returns
    -------
    params : GMMParams with the same batch shape, relabelled
    permutations : (..., k) int, ``new component k = old component permutations[..., k]``
    """
    means = np.asarray(params.means, dtype=np.float64)
    batch_shape, (k, _) = means.shape[:-2], means.shape[-2:]
    flat = means.reshape((-1, k, means.shape[-1]))
    cost = np.sum((reference_means[None, :, None, :] - flat[:, None, :, :]) ** 2, axis=-1)  # (S, ref k, draw k)
    permutations = np.stack([linear_sum_assignment(c)[1] for c in cost]).reshape(batch_shape + (k,))
    return _permute_components(params, permutations), permutations


def _permute_components(params: GMMParams, permutations: np.ndarray) -> GMMParams:
    """Reorder the components of draws ``params`` (batch axes ``B``) by ``permutations (*B, k)``, as host
    (NumPy) arrays: indexing, where compiling a program per shape took 0.1-0.25 s of a first ``infer`` call."""
    params = jax.tree.map(np.asarray, params)
    return dataclasses.replace(
        params,
        weights=permute_components(params.weights, permutations),
        means=permute_components(params.means, permutations),
        scale=params.structure.core.permute(params.scale, permutations),
        dof=None if params.dof is None else permute_components(params.dof, permutations),
    )


# Elements of the (draws, k, d, rows) whitened array formed per block of rows when the per-row
# log-likelihood is computed: bounds memory (256 MiB in float64) whatever the number of rows.
_LOG_LIKELIHOOD_BLOCK_ELEMENTS = 1 << 25


@functools.partial(jax.jit, static_argnames="covariance_type")
def _params_and_block_log_likelihood(
    draws: dict, Z_block: Array, errors_block: Array | None, covariance_type: str
) -> tuple[GMMParams, Array]:
    """Draws of the model's sites as ``GMMParams`` and ``log p(z_i | θ_s)`` for a block of rows.

    ``errors_block``: the rows' error variances or covariances (``log p(z_i | θ_s, S_i)``), or None.
    """
    params = params_from_sites(draws, covariance_type)
    if errors_block is None:
        return params, params.log_prob(Z_block)

    def per_draw(draw: GMMParams) -> Array:
        log_joint = log_joint_with_errors(
            jnp.log(draw.weights), draw.means, draw.covariance_matrices, Z_block, errors_block
        )
        return jax.nn.logsumexp(log_joint, axis=0)

    return params, map_batch(per_draw, params)


def _log_likelihood_block(means_shape: tuple, n: int, with_errors: bool = False) -> int:
    """Rows per block of ``_params_and_log_likelihood`` for draws of means of shape ``(*B, k, d)``.

    With errors the working array is ``(draws, k, rows, d, d)``: ``d`` times fewer rows.
    """
    elements = math.prod(means_shape) * (means_shape[-1] if with_errors else 1)
    return min(n, max(1, _LOG_LIKELIHOOD_BLOCK_ELEMENTS // elements))


def _params_and_log_likelihood(
    draws: dict, Z: np.ndarray, covariance_type: str, errors: np.ndarray | None = None
) -> tuple[GMMParams, np.ndarray]:
    """Draws as ``GMMParams`` (batch ``B``) and the per-row log-likelihood ``(*B, n)`` of every row.

    Rows go through in blocks sized so that the whitened ``(draws, k, d, rows)`` array (with
    ``errors``, the ``(draws, k, rows, d, d)`` covariances) stays under
    ``_LOG_LIKELIHOOD_BLOCK_ELEMENTS`` (the last block is padded, so one compilation
    serves all blocks); only the ``(*B, n)`` result is ever whole, on the host. The
    log-likelihood does not depend on the labelling, so it is taken before relabelling.
    """
    n, d = Z.shape
    leaf = draws["means"]
    batch_shape = leaf.shape[:-2]
    block = _log_likelihood_block(leaf.shape, n, errors is not None)
    if block == n:
        params, log_likelihood = _params_and_block_log_likelihood(draws, Z, errors, covariance_type)
        return params, np.asarray(log_likelihood)
    log_likelihood = np.empty(batch_shape + (n,), dtype=leaf.dtype)
    for start, size, rows, row_errors in _row_blocks(Z, errors, block):
        params, values = _params_and_block_log_likelihood(draws, rows, row_errors, covariance_type)
        log_likelihood[..., start : start + size] = np.asarray(values)[..., :size]
    return params, log_likelihood


def _row_blocks(X: np.ndarray, errors: np.ndarray | None, block: int):
    """``(start, size, rows (block, d), errors (block, ...) or None)`` for consecutive blocks of rows.

    The last block is padded with zero rows (and zero errors: their densities are finite) to
    ``block`` rows, so one compilation serves every block; ``size`` counts its real rows.
    """
    n, d = X.shape
    for start in range(0, n, block):
        rows = X[start : start + block]
        row_errors = None if errors is None else errors[start : start + block]
        size = rows.shape[0]
        if size < block:
            rows = np.concatenate([rows, np.zeros((block - size, d), X.dtype)])
            if row_errors is not None:
                row_errors = np.concatenate([row_errors, np.zeros((block - size,) + errors.shape[1:], errors.dtype)])
        yield start, size, rows, row_errors


# ----------------------------------------------------------------------------- occupied components


ALLOCATIONS = ("sampled", "map")  # Posterior.n_occupied's rules for the rows' components


@functools.partial(jax.jit, static_argnames="allocation")
def _occupied_block(
    params: GMMParams, X_block: Array, errors_block: Array | None, valid: Array, key: Array, allocation: str
) -> Array:
    """Which components hold at least one of the rows ``X_block (b, d)`` under each draw's allocation.

    ``params``: draws with one batch axis (S,); ``errors_block``: the rows' error standard
    deviations (b, d) or covariances (b, d, d), or None; ``valid (b,)``: False on padding
    rows. ``allocation="sampled"``: each row's component drawn from its responsibilities
    under the draw, ``"map"``: its most probable component. Returns (S, k) bool.
    """
    log_joint = params.log_joint(X_block, errors_block)  # (S, b, k)
    if allocation == "sampled":
        labels = jax.random.categorical(key, log_joint, axis=-1)
    else:
        labels = jnp.argmax(log_joint, axis=-1)
    one_hot = (labels[..., None] == jnp.arange(params.n_components)) & valid[:, None]
    return jnp.any(one_hot, axis=-2)


def _occupied(params: GMMParams, X: np.ndarray, errors: np.ndarray | None, allocation: str, seed: int) -> np.ndarray:
    """``(chain, draw)`` counts of the components holding at least one row (see ``Posterior.n_occupied``).

    One chain at a time, rows in blocks (the last padded and masked, so one compilation
    serves every block) sized as the per-row log-likelihood's: whatever the number of rows,
    only the ``(draw, k)`` flags of a chain are whole.
    """
    n = X.shape[0]
    block = _log_likelihood_block(params.means.shape[1:], n, errors is not None)
    key = jax.random.key(seed)
    counts = []
    for chain in range(params.batch_shape[0]):
        draws = jax.tree.map(operator.itemgetter(chain), params)
        occupied = np.zeros(draws.batch_shape + (params.n_components,), dtype=bool)
        for start, size, rows, row_errors in _row_blocks(X, errors, block):
            valid = np.arange(block) < size
            block_key = jax.random.fold_in(jax.random.fold_in(key, chain), start)
            occupied |= np.asarray(_occupied_block(draws, rows, row_errors, valid, block_key, allocation))
        counts.append(occupied.sum(axis=-1))
    return np.stack(counts)


# ----------------------------------------------------------------------------- runners


CHAIN_METHODS = ("auto", "sequential", "vectorized", "threads")


def resolve_chain_method(chain_method: str) -> str:
    """``"auto"``: on CPU, chains split over the cores ("threads", or "sequential" on one core);
    vectorised (``vmap``) on accelerators.

    On CPU the unbatched NUTS program traces and compiles about twice as fast and runs
    faster than the vectorised one (a vmapped tree builder waits for every chain's longest
    trajectory), and one chain's program keeps one core busy, so the chains run one per
    call on as many host threads as there are cores; on a GPU, vectorised chains share each
    kernel launch.
    """
    chain_method = _validation.check_choice(chain_method, "chain_method", CHAIN_METHODS)
    if chain_method == "auto":
        if jax.default_backend() != "cpu":
            return "vectorized"
        return "threads" if host_cores() > 1 else "sequential"
    return chain_method


def _chain_groups(chain_method: str, num_chains: int) -> tuple[int, tuple[int, ...]]:
    """``(chains per call, first chain of each call)`` of the compiled NUTS program.

    "threads": one chain per call (a program without a loop over chains: fewer kernels to
    compile), the calls spread over one host thread per core; otherwise one call for all.
    """
    if chain_method != "threads":
        return num_chains, (0,)
    return 1, tuple(range(num_chains))


def _identity_params(k: int, d: int, covariance_type: str, dtype=None, family: str = "gaussian") -> GMMParams:
    """Placeholder parameters of the right shapes (uniform weights, zero means, unit covariances;
    Student-t: ``dof`` of ones)."""
    dtype = jnp.result_type(float) if dtype is None else dtype
    return GMMParams(
        jnp.full((k,), 1.0 / k, dtype),
        jnp.zeros((k, d), dtype),
        get_structure(covariance_type).core.identity_scale(k, d, dtype),
        covariance_type,
        jnp.ones((k,), dtype) if has_dof(family) else None,
        family,
    )


# the NUTS state fields recorded per draw, in the order of the program's stats columns
_NUTS_STATS = ("diverging", "energy", "num_steps", "accept_prob", "potential_energy")


@functools.lru_cache(maxsize=16)
def _nuts_program(
    k,
    covariance_type,
    std_prior,
    family,
    num_warmup,
    num_samples,
    num_chains,
    chain_method,
    progress_bar,
    chains_per_call,
):
    """One compiled NUTS program per configuration: data and hyperparameters are arguments.

    ``run(seed, start, Z, w, hyper, errors, first_chain) -> (constrained draws (chain, draw, ...), stats)``,
    ``stats (chain, draw, len(_NUTS_STATS))`` in the draws' dtype
    takes the start as ``GMMParams``, unconstrains it, jitters it for each of the
    ``num_chains`` chains, runs warm-up and sampling for the ``chains_per_call`` chains from
    ``first_chain`` on (one after another, or vectorised), and constrains the draws, all in
    one jitted function (no eager ops, one compilation). A chain's keys and start depend on
    its index only, so the same chain gives the same draws whichever call runs it.

    Built from NumPyro's functional ``hmc`` with a potential that takes the model's
    arguments, because ``MCMC.run`` recompiles its sampling loop for every new data set.
    What the compile time depends on is kept small: the potential is
    ``model.unconstrained_log_density`` (the model's density written out in NumPyro's
    unconstrained coordinates; with its gradient less than half the program that tracing
    the model gives), jitted so that it is traced once for the places where NUTS evaluates
    it (its start and the tree builder); NUTS moves one flat
    vector of unconstrained values (``ravel_pytree`` order, the order NumPyro's mass matrix
    uses for a dict of sites) rather than a dict, so its integrator and tree builder handle
    one array instead of one per site; warm-up and sampling are one ``lax.scan``.
    """

    settings = dict(k=k, covariance_type=covariance_type, std_prior=std_prior, family=family)
    total = num_warmup + num_samples

    def report(chain, step):
        if progress_bar:
            every = max(1, total // 10)
            jax.lax.cond(
                (step % every == 0) | (step == total - 1),
                lambda: jax.debug.callback(_print_progress, chain, step, total, ordered=False),
                lambda: None,
            )

    @jax.jit
    def run(seed, start: GMMParams, Z, w, hyper, errors, first_chain):
        key = jax.random.key(seed)  # inside the program: no eager random operations
        flat_start, unravel = ravel_pytree(unconstrain(sites_from_params(start)))
        potential = jax.jit(
            lambda flat, Z, w, hyper, errors: -unconstrained_log_density(unravel(flat), Z, hyper, w, errors, **settings)
        )
        init_kernel, sample_kernel = hmc(
            potential_fn_gen=lambda Z, w, hyper, errors: functools.partial(
                potential, Z=Z, w=w, hyper=hyper, errors=errors
            ),
            algo="NUTS",
        )

        def one_chain(chain, key, init_params):
            args = (Z, w, hyper, errors)
            state = init_kernel(init_params, num_warmup, target_accept_prob=0.8, model_args=args, rng_key=key)

            def step(state, index):
                report(chain, index)
                state = sample_kernel(state, model_args=args)
                # one row per step: fewer outputs for the scan to stack and for the slice below
                stats = [getattr(state, name).astype(state.z.dtype) for name in _NUTS_STATS]
                return state, jnp.concatenate([state.z, jnp.stack(stats)])

            _, trace = jax.lax.scan(step, state, jnp.arange(total))
            trace = trace[num_warmup:]
            draws = jax.vmap(lambda draw: constrain(unravel(draw)))(trace[:, : flat_start.shape[0]])
            return draws, trace[:, flat_start.shape[0] :]

        key_jitter, key_chains = jax.random.split(key)
        jitter = _INIT_JITTER * jax.random.normal(key_jitter, (num_chains,) + flat_start.shape, flat_start.dtype)
        chains = (jnp.arange(num_chains), jax.random.split(key_chains, num_chains), flat_start + jitter)
        chains = jax.tree.map(lambda leaf: jax.lax.dynamic_slice_in_dim(leaf, first_chain, chains_per_call), chains)
        if chain_method == "vectorized":
            return jax.vmap(one_chain)(*chains)
        if chains_per_call == 1:
            return jax.tree.map(lambda leaf: leaf[None], one_chain(*jax.tree.map(lambda leaf: leaf[0], chains)))
        return jax.lax.map(lambda chain: one_chain(*chain), chains)

    return run


def _print_progress(chain, step, total):
    print(f"NUTS: chain {int(chain) + 1}, step {int(step) + 1}/{total}", flush=True)


@jax.jit
def _unconstrained_start(start: GMMParams) -> dict:
    """NumPyro's unconstrained coordinates of the EM start (one compilation per shape)."""
    return unconstrain(sites_from_params(start))


@functools.lru_cache(maxsize=32)
def _lowered(build: Callable, config: tuple, signature: tuple, treedef):
    """The program ``build(*config)`` traced and lowered for one argument signature.

    ``build``: ``_nuts_program`` or ``_variational.program``; ``config`` its arguments;
    ``signature`` the ``ShapeDtypeStruct`` leaves of the program's arguments and ``treedef``
    their structure. Through ``_cache.lower`` (``lower_through_export``): a next session loads the traced and lowered
    program (its ``jax.export``) instead of tracing NumPyro's model again.
    """
    name = f"{build.__module__}.{build.__qualname__}"
    return lower_through_export(build(*config), name, config, signature, treedef)


@functools.lru_cache(maxsize=32)
def _executable(build: Callable, config: tuple, signature: tuple, treedef):
    """``_lowered`` compiled by XLA (cached: a second call on new data does not recompile)."""
    return _lowered(build, config, signature, treedef).compile()


class _Compilation(NamedTuple):
    """The program of one ``infer`` call, being compiled while the EM start is fitted."""

    lowered: jax.stages.Lowered  # traced and lowered in the caller's thread; its out_info gives the draws' shapes
    executable: Future  # of the jax.stages.Compiled program, compiled in the worker thread


def _compile(pool: ThreadPoolExecutor, request: InferenceRequest, build: Callable, config: tuple, *extra):
    """Lower ``build(*config)`` here for ``(seed, start, Z, w, hyper, errors, *extra)``, compile it in ``pool``.

    It needs only shapes. Tracing and lowering hold the GIL, XLA's compilation does not:
    lowering first and then compiling in the worker lets the caller fit the EM start and
    compile the small program that follows (``_compile_finish``) meanwhile.
    """
    Z = request.Z
    abstract_start = jax.eval_shape(
        lambda: _identity_params(request.k, Z.shape[1], request.covariance_type, Z.dtype, request.family)
    )
    abstract_args = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(jnp.shape(leaf), leaf.dtype),
        (request.seed, abstract_start, Z, request.w, request.hyper, request.errors, *extra),
    )
    signature, treedef = jax.tree.flatten(abstract_args)
    signature = tuple(signature)
    return _Compilation(
        _lowered(build, config, signature, treedef), pool.submit(_executable, build, config, signature, treedef)
    )


def _nuts_config(request: InferenceRequest) -> tuple:
    """``_nuts_program``'s arguments for ``request``."""
    return (
        request.k,
        request.covariance_type,
        request.prior.std_prior,
        request.family,
        request.num_warmup,
        request.num_samples,
        request.num_chains,
        request.chain_method,
        request.progress_bar,
        _chain_groups(request.chain_method, request.num_chains)[0],
    )


def _compile_nuts(pool: ThreadPoolExecutor, request: InferenceRequest) -> _Compilation:
    """The NUTS program (its ``first_chain`` argument last), compiling in ``pool``."""
    return _compile(pool, request, _nuts_program, _nuts_config(request), np.int32(0))


def _run_nuts(request: InferenceRequest, start: GMMParams, compilation: _Compilation) -> tuple[dict, dict]:
    """Run the compiled NUTS program: in one call or (``"threads"``) one call per chain.

    While the worker still compiles it, the post-NUTS program compiles here (``_compile_finish``).
    """
    draws_info, _ = compilation.lowered.out_info
    _compile_finish(draws_info, request, request.num_chains)
    executable = compilation.executable.result()
    _, first_chains = _chain_groups(request.chain_method, request.num_chains)

    def call(first_chain):
        args = (request.seed, start, request.Z, request.w, request.hyper, request.errors, np.int32(first_chain))
        return jax.block_until_ready(executable(*args))

    if len(first_chains) == 1:
        draws, stats = call(first_chains[0])
    else:  # the calls hold no GIL while they run: one host thread per core
        outputs = thread_map(call, first_chains)
        draws, stats = jax.tree.map(lambda *chains: np.concatenate([np.asarray(chain) for chain in chains]), *outputs)
    return draws, _nuts_sample_stats(np.asarray(stats))


def _nuts_sample_stats(stats: np.ndarray) -> dict:
    """The program's stats columns ``(chain, draw, len(_NUTS_STATS))`` as ``Posterior.sample_stats``."""
    stats = dict(zip(_NUTS_STATS, np.moveaxis(stats, -1, 0)))
    num_steps = stats["num_steps"].astype(int)  # exact: at most 2^max_tree_depth steps
    return {
        "diverging": stats["diverging"].astype(bool),
        "energy": stats["energy"],
        "n_steps": num_steps,
        "tree_depth": np.floor(np.log2(np.maximum(num_steps, 1))).astype(int) + 1,
        "acceptance_rate": stats["accept_prob"],
        "lp": -stats["potential_energy"],
    }


def _variational_config(request: InferenceRequest, guide: str) -> tuple:
    """``_variational.program``'s arguments for ``request`` with ``guide`` (one of ``GUIDES``, or "map")."""
    return (
        request.k,
        request.covariance_type,
        request.prior.std_prior,
        request.family,
        guide,
        request.num_steps,
        request.num_samples,
        request.batch_size,
    )


def _compile_svi(pool: ThreadPoolExecutor, request: InferenceRequest) -> _Compilation:
    """SVI with ``request.guide``: one program (optimisation and draws), compiling in ``pool``."""
    return _compile(pool, request, _variational.program, _variational_config(request, request.guide))


def _compile_map(pool: ThreadPoolExecutor, request: InferenceRequest) -> _Compilation:
    """MAP (a point-mass guide): one program, compiling in ``pool``."""
    return _compile(pool, request, _variational.program, _variational_config(request, "map"))


def _run_variational(request: InferenceRequest, start: GMMParams, compilation: _Compilation) -> tuple[dict, dict]:
    """Run the compiled SVI or MAP program from ``start``: its draws and ``{"loss": (num_steps,)}``.

    While the worker still compiles it, the program that follows compiles here (``_compile_finish``).
    """
    draws_info, _ = compilation.lowered.out_info
    _compile_finish(draws_info, request, num_chains=1)
    executable = compilation.executable.result()
    draws, losses = executable(request.seed, start, request.Z, request.w, request.hyper, request.errors)
    return jax.device_get(draws), {"loss": np.asarray(losses)}


class InferenceMethod(NamedTuple):
    """One way to get a posterior.

    prepare : (pool, request) -> a handle of what is started before the EM start (the
        method's program, compiling in ``pool``'s worker thread)
    run : (request, start, handle) -> (draws, sample_stats); ``draws`` the model's sites with
        leading (chain, draw) axes, standardised scale; ``start`` the EM fit (GMMParams)
    minibatches : bool, takes ``batch_size``
    """

    prepare: Callable[[ThreadPoolExecutor, InferenceRequest], object]
    run: Callable[[InferenceRequest, GMMParams, object], tuple[dict, dict]]
    minibatches: bool


INFERENCE_METHODS: dict[str, InferenceMethod] = {
    # multi-chain NUTS from the jittered EM start; compiled while EM runs
    "nuts": InferenceMethod(_compile_nuts, _run_nuts, minibatches=False),
    # SVI with the guide ``guide``, its location at the EM start; draws from the fitted guide
    "svi": InferenceMethod(_compile_svi, _run_variational, minibatches=True),
    # the posterior mode: SVI with a point mass (AutoDelta) from the EM start; one draw
    "map": InferenceMethod(_compile_map, _run_variational, minibatches=False),
}
METHODS = tuple(INFERENCE_METHODS)


# ----------------------------------------------------------------------------- Posterior


class Posterior:
    """Posterior draws of a Gaussian mixture, relabelled to one labelling.

    Attributes
    ----------
    params : GMMParams
        The draws with leading (chain, draw) axes, on the data's scale.
    log_likelihood : ndarray (chain, draw, n)
        ``log p(x_i | θ_s)`` per row and draw (data scale).
    method : str
    reference : GMMParams
        The fit used as starting point and reference labelling (data scale): ``infer``'s
        ``init`` when given, else its EM fit.
    sample_stats : dict of ndarray (chain, draw)
        NUTS: diverging, energy, n_steps, tree_depth, acceptance_rate, lp.
        SVI/MAP: ``loss`` (num_steps,) instead.
    permutations : ndarray (chain, draw, k)
        The relabelling applied to each draw.
    X : ndarray (n, d)
    feature_names : list of str
    priors : Priors
    measurement_error : ndarray (n, d) or (n, d, d), or None
        The rows' measurement-error variances or covariances (data scale) the posterior was
        inferred with (``infer``'s ``measurement_error``, variances for standard deviations);
        ``log_likelihood`` is that of the noisy rows, ``p(x_i | θ, S_i)``. ``params`` are the
        deconvolved mixture's, and ``log_prob`` and ``sample`` are those of noise-free rows.
    sparse : bool
        Inferred as a sparse finite mixture (``infer(..., sparse=True)``): ``to_arviz`` then
        carries ``n_occupied()`` as the variable ``n_occupied`` of its posterior group.
    """

    def __init__(
        self,
        *,
        params,
        log_likelihood,
        method,
        reference,
        sample_stats,
        permutations,
        X,
        feature_names,
        priors,
        measurement_error=None,
        sparse=False,
    ):
        self.params = params
        self.log_likelihood = log_likelihood
        self.method = method
        self.reference = reference
        self.sample_stats = sample_stats
        self.permutations = permutations
        self.X = X
        self.feature_names = feature_names
        self.priors = priors
        self.measurement_error = measurement_error
        self.sparse = sparse

    @property
    def num_chains(self) -> int:
        return self.params.batch_shape[0]

    @property
    def num_draws(self) -> int:
        return self.params.batch_shape[1]

    def mean_params(self) -> GMMParams:
        """Posterior means of the weights, means and covariance matrices (Student-t: scale matrices
        and degrees of freedom), as one GMMParams."""
        axes = (0, 1)
        structure = self.params.structure
        weights = jnp.mean(self.params.weights, axis=axes)
        covariances = jnp.mean(self.params.covariances, axis=axes)
        return dataclasses.replace(
            self.params,
            weights=weights / jnp.sum(weights),
            means=jnp.mean(self.params.means, axis=axes),
            scale=structure.core.from_covariances(covariances),
            dof=None if self.params.dof is None else jnp.mean(self.params.dof, axis=axes),
        )

    def log_prob(self, X) -> Array:
        """Posterior predictive log density ``log (1/S) Σ_s p(x | θ_s)``, shape (n,)."""
        per_draw = self.params.log_prob(X).reshape((-1, np.shape(X)[0]))
        return jax.nn.logsumexp(per_draw, axis=0) - math.log(per_draw.shape[0])

    def predict_proba(self, X) -> Array:
        """Responsibilities averaged over draws (meaningful because draws are relabelled), (n, k)."""
        return jnp.mean(self.params.predict_proba(X), axis=(0, 1))

    def predict(self, X) -> Array:
        return jnp.argmax(self.predict_proba(X), axis=-1)

    def sample(self, n_samples: int, seed: int = 0) -> tuple[Array, Array]:
        """Posterior predictive rows: each from a draw chosen uniformly at random."""
        key_draws, key_rows = jax.random.split(jax.random.key(seed))
        flat = jax.tree.map(lambda leaf: leaf.reshape((-1,) + leaf.shape[2:]), self.params)
        chosen = jax.random.randint(key_draws, (n_samples,), 0, self.num_chains * self.num_draws)
        per_row = jax.tree.map(lambda leaf: leaf[chosen], flat)
        X, labels = jax.vmap(lambda p, key: p.sample(1, key))(per_row, jax.random.split(key_rows, n_samples))
        return X[:, 0], labels[:, 0]

    def predictive_mixture(self) -> GMMParams:
        """The posterior predictive distribution as one mixture: every component of every draw.

        ``p(x | data) ≈ (1/S) Σ_s Σ_k π_sk N(x | μ_sk, Σ_sk)`` over the ``S = chain × draw``
        draws: ``S·k`` components with weights ``π_sk / S``, the mixture that ``log_prob`` and
        ``sample`` use. Covariance type ``bayesgmm.covariance.pooled_type``: full, diag and
        spherical as the draws, ``"full"`` for tied draws (each draw has its own shared covariance).

        Returns
        -------
        GMMParams
            Unbatched, ``S·k`` components (draw-major: draw ``s``'s components are
            ``s·k ... s·k + k − 1``).
        """
        pooled = get_structure(pooled_type(self.params.covariance_type))
        n_draws, d = self.num_chains * self.num_draws, self.params.n_features
        matrices = self.params.covariance_matrices.reshape((-1, d, d))
        return GMMParams(
            self.params.weights.reshape(-1) / n_draws,
            self.params.means.reshape((-1, d)),
            pooled.core.from_covariances(pooled.core.layout_from_matrices(matrices)),
            pooled.name,
            None if self.params.dof is None else self.params.dof.reshape(-1),
            self.params.family,
        )

    def condition(self, given, values) -> GMMParams:
        """The posterior predictive conditional of the other coordinates given ``values`` of the coordinates ``given``.

        ``p(x_o | x_g, data) = Σ_s p(x_g | θ_s) p(x_o | x_g, θ_s) / Σ_s p(x_g | θ_s)``: the
        conditional (``GMMParams.condition``) of ``predictive_mixture``, so each draw counts
        with the density it gives the given values (near uniform when the data hold many rows).

        Parameters
        ----------
        given : int or sequence of int
            Indices of the ``g`` given coordinates, in the order of the columns of ``values``.
        values : array-like of shape (n, g) or (g,)

        Returns
        -------
        GMMParams
            ``S·k`` components on the ``d − g`` other coordinates (increasing order), batch
            shape ``(n,)`` for 2-D ``values``; its type is ``conditional_type`` of
            ``predictive_mixture``'s. Holds ``n·S·k`` covariances: for long ``values`` and many
            draws prefer ``predict_mean`` and ``predict_cov``.
        """
        return self.predictive_mixture().condition(given, values)

    def predict_mean(self, X, given) -> Array:
        """Posterior predictive regression ``E[x_o | x_g, data]`` for each row, shape (n_samples, d − g).

        The mean of ``condition``: the draws' regression functions ``E[x_o | x_g, θ_s]`` averaged
        with weights ``∝ p(x_g | θ_s)``. For a credible band of the regression function itself,
        take quantiles over draws of ``posterior.params.predict_mean(X, given)`` (chain, draw, n, d − g).

        Parameters
        ----------
        X : array-like of shape (n_samples, g)
            Values of the ``g`` given coordinates only, columns in the order of ``given``.
        given : int or sequence of int
        """
        return self.predictive_mixture().predict_mean(X, given)

    def predict_cov(self, X, given) -> Array:
        """Posterior predictive ``Cov[x_o | x_g, data]`` for each row, shape (n_samples, d − g, d − g).

        The covariance of ``condition`` (law of total covariance over draws and components):
        the noise of the data and the uncertainty about the parameters together.

        Parameters
        ----------
        X : array-like of shape (n_samples, g)
            Values of the ``g`` given coordinates only, columns in the order of ``given``.
        given : int or sequence of int
        """
        return self.predictive_mixture().predict_cov(X, given)

    def n_occupied(self, *, allocation: str = "sampled", seed: int = 0) -> np.ndarray:
        """The number of occupied components in each draw, shape (chain, draw).

        The model marginalises the rows' components, so occupancy is defined through an
        allocation of the rows ``X`` under each draw ``θ_s``: a component is occupied in a
        draw when at least one row is allocated to it.

        Parameters
        ----------
        allocation : {"sampled", "map"}
            "sampled" (default): each row's component drawn from its responsibilities
            ``p(z_i = k | x_i, θ_s)``. With the draws of ``θ`` this is a draw of ``(θ, z)``
            from their joint posterior, so the count is distributed as the number of non-empty
            components ``K+`` of a sampler that draws ``z`` (Malsiner-Walli et al.'s Gibbs
            sampler). "map": each row's most probable component under ``θ_s``
            (deterministic; a component whose rows all lean to others counts as empty).
        seed : int
            The seed of the sampled allocations (the same seed gives the same counts).

        Notes
        -----
        Each row counts once, whatever its ``sample_weight`` in ``infer``. With measurement
        errors the responsibilities are those of the noisy rows (``Σ_k + S_i``).
        """
        allocation = _validation.check_choice(allocation, "allocation", ALLOCATIONS)
        errors = self.measurement_error
        if errors is not None and errors.ndim == 2:  # stored as variances; log_joint takes standard deviations
            errors = np.sqrt(errors)
        X = np.asarray(self.X, dtype=self.params.dtype)
        errors = None if errors is None else np.asarray(errors, dtype=self.params.dtype)
        return _occupied(self.params, X, errors, allocation, seed)

    def n_components(self, *, allocation: str = "sampled", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The posterior of the number of clusters: the distribution of ``n_occupied`` over draws.

        Meaningful for a sparse finite mixture (``infer(X, k_max, sparse=True)``), whose prior
        empties the components the data do not need: the number of occupied components then
        estimates the number of clusters, its posterior mode being the usual point estimate
        (Malsiner-Walli, Frühwirth-Schnatter and Grün 2016). Under ``Priors``' default
        Dirichlet(1) the superfluous components are not emptied but share rows.

        Parameters
        ----------
        allocation, seed : see ``n_occupied``

        Returns
        -------
        values : ndarray of int
            The numbers of occupied components seen in the draws, increasing.
        probabilities : ndarray of float
            Their fractions of the draws (summing to 1).

        Examples
        --------
        Not run as a doctest (it compiles NUTS); tests/test_sparse.py runs it.

        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = np.concatenate([rng.normal(-5.0, 1.0, (75, 2)), rng.normal(5.0, 1.0, (75, 2))])
        >>> posterior = infer(  # doctest: +SKIP
        ...     X, 6, sparse=True, num_warmup=150, num_samples=150, num_chains=2, progress_bar=False
        ... )
        >>> values, probabilities = posterior.n_components()  # doctest: +SKIP
        >>> int(values[np.argmax(probabilities)])  # doctest: +SKIP
        2
        """
        counts = self.n_occupied(allocation=allocation, seed=seed)
        values, frequencies = np.unique(counts, return_counts=True)
        return values, frequencies / counts.size

    def to_arviz(self, *, posterior_predictive: bool = False):
        """An ArviZ ``xarray.DataTree`` (see ``bayesgmm.convert.to_datatree``)."""

        return to_datatree(self, posterior_predictive=posterior_predictive)

    def summary(self, **kwargs):
        """ArviZ's summary table (r-hat, ESS, means, HDIs) of weights, means and covariances."""
        import arviz_stats

        return arviz_stats.summary(self.to_arviz(), **kwargs)


# ----------------------------------------------------------------------------- infer


def _finish(draws: dict, Z: np.ndarray, errors: np.ndarray | None, start: GMMParams, covariance_type: str):
    """Draws as relabelled ``GMMParams`` (standardised scale), their per-row log-likelihood, the permutations."""
    params, log_likelihood = _params_and_log_likelihood(draws, Z, covariance_type, errors)
    params, permutations = relabel(params, np.asarray(start.means))
    return params, log_likelihood, permutations


def _compile_finish(draws_info: dict, request: InferenceRequest, num_chains: int) -> None:
    """Compile, without running it, the program ``infer`` runs after the sampler, for the draws' shapes.

    ``draws_info``: the sampler program's draws (its lowered ``out_info``, one call's chains);
    ``num_chains`` of all its calls together. Run while the worker compiles the sampler (the
    cores are not all busy then), not after it: the parameters and per-row log-likelihood of the
    draws (relabelling and rescaling are NumPy). It is called with the same kinds of arguments as
    in ``_finish`` (host arrays, static arguments in the same places), so that call finds it in
    ``jax.jit``'s cache.
    """
    Z, covariance_type = request.Z_host, request.covariance_type
    errors = request.errors_host
    draws = {
        name: jax.ShapeDtypeStruct((num_chains,) + info.shape[1:], info.dtype) for name, info in draws_info.items()
    }
    n, d = Z.shape
    block = _log_likelihood_block(draws["means"].shape, n, errors is not None)
    rows = jax.ShapeDtypeStruct((block, d), Z.dtype)
    row_errors = None if errors is None else jax.ShapeDtypeStruct((block,) + errors.shape[1:], errors.dtype)
    _params_and_block_log_likelihood.lower(draws, rows, row_errors, covariance_type).compile()


# The NumPy driver's limit, in n * k * d * (d + 1): below it an EM fit in NumPy takes well under the
# seconds that compiling em_fit's program costs (benchmarks/RESULTS.md), above it the compiled fit wins.
HOST_EM_MAX_WORK = 500_000


def _em_start(
    Z: np.ndarray,
    w: np.ndarray,
    k: int,
    covariance_type: str,
    seed: int,
    family: str = "gaussian",
    errors: np.ndarray | None = None,
) -> GMMParams:
    """The EM fit that starts the chains and sets the reference labelling (standardised scale).

    ``em_fit``'s algorithm, best of 5 restarts, with ``family`` (Student-t: one ``ν`` per
    component) and ``errors`` (variances (n, d) or covariances (n, d, d) of the standardised
    rows: extreme deconvolution). Small Gaussian data sets without errors (``n k d (d + 1) <=
    HOST_EM_MAX_WORK``): its NumPy driver (``bayesgmm.em.fit_on_host``: the same kernels and
    rules, nothing to compile while the sampler compiles). Otherwise: ``em_fit``, tried with
    ``degenerate="raise"`` first (that program compiles faster, and where no component
    degenerates the fit is the same), again with ``degenerate="reseed"`` if it fails.
    Re-seeded components are reported (``DegenerateComponentWarning``); non-convergence is not.
    """
    n, d = Z.shape
    plain = not has_dof(family) and errors is None  # what the NumPy driver fits
    if plain and n * k * d * (d + 1) <= HOST_EM_MAX_WORK:
        config = EMConfig.validated(covariance_type=covariance_type, n_init=5, max_iter=500)
        result, notices = fit_on_host(Z, k, config, seed=seed, sample_weight=w)
        for notice in notices:
            if notice.category is not ConvergenceWarning:
                warnings.warn(notice.message, notice.category, stacklevel=3)
        return result.params
    settings = dict(n_init=5, max_iter=500, seed=seed, covariance_type=covariance_type, sample_weight=w)
    if has_dof(family):
        settings["family"] = family
    if errors is not None:  # em_fit takes standard deviations (n, d) or covariances (n, d, d)
        settings["measurement_error"] = np.sqrt(errors) if errors.ndim == 2 else errors
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            return em_fit(Z, k, degenerate="raise", **settings).params
        except DegenerateFitError:
            return em_fit(Z, k, degenerate="reseed", **settings).params


def _given_start(init, k: int, d: int, covariance_type: str, family: str) -> GMMParams:
    """``infer``'s ``init`` checked: one set of parameters of ``k`` components over ``d`` features."""
    params = init.params if isinstance(init, EMResult) else init
    if not isinstance(params, GMMParams):
        raise ArgumentTypeError(
            f"init must be a bayesgmm.GMMParams or EMResult (the fit to start from and label the draws by), "
            f"got {type(init).__name__}."
        )
    if params.batch_shape:
        raise ValueError(
            f"init must be one set of parameters, got a batch of shape {params.batch_shape}; pick one, for "
            "instance posterior.mean_params()."
        )
    if params.covariance_type != covariance_type:
        raise ValueError(
            f"init has covariance_type={params.covariance_type!r} but infer was asked for "
            f"covariance_type={covariance_type!r}; pass the same type to both."
        )
    if params.family != family:
        raise ValueError(
            f"init has family={params.family!r} components but infer was asked for family={family!r}; pass the "
            "same family to both (em_fit(..., family=...))."
        )
    if params.noise_weight is not None:
        raise ValueError(
            "init has a noise component, which the Bayesian model does not have; start infer from a fit of "
            "em_fit(X, k) without noise (or drop init)."
        )
    if (params.n_components, params.n_features) != (k, d):
        raise ValueError(
            f"init has {params.n_components} components over {params.n_features} features, but infer was asked "
            f"for k={k} over X's {d} features; fit init on the same data with the same k."
        )
    if not all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree.leaves(params)):
        raise ValueError("init has parameters that are not finite; start from a fit that succeeded.")
    return params


def _on_standard_scale(params: GMMParams, standard: Standardisation, dtype) -> GMMParams:
    """``params`` of the data mapped to the standardised data, on the host (nothing compiled)."""
    means = (np.asarray(params.means, np.float64) - standard.center) / standard.scale
    scale = np.asarray(params.scale, np.float64) / standard.scale
    dof = None if params.dof is None else np.asarray(params.dof, dtype)
    return GMMParams(
        np.asarray(params.weights, dtype),
        means.astype(dtype),
        scale.astype(dtype),
        params.covariance_type,
        dof,
        params.family,
    )


def _check_batch_size(batch_size, method: str, n: int) -> int | None:
    """``None`` for full batches, else the validated minibatch size."""
    if batch_size is None:
        return None
    if not INFERENCE_METHODS[method].minibatches:
        takers = " or ".join(f"method={name!r}" for name, entry in INFERENCE_METHODS.items() if entry.minibatches)
        raise ValueError(
            f"batch_size (minibatches) is for {takers} only, got method={method!r}; "
            f"use {takers} or leave batch_size=None."
        )
    batch_size = _validation.check_int_at_least(batch_size, "batch_size", 1)
    if batch_size > n:
        raise ValueError(
            f"batch_size={batch_size} is larger than the {n} rows of X; use 1 <= batch_size <= {n}, "
            "or batch_size=None for full batches."
        )
    return None if batch_size == n else batch_size


def infer(
    X,
    k: int,
    *,
    method: str = "nuts",
    covariance_type: str = "full",
    prior: Priors | None = None,
    num_warmup: int = 500,
    num_samples: int = 1000,
    num_chains: int = 4,
    num_steps: int = 5000,
    guide: str = "normal",
    seed: int = 0,
    progress_bar: bool = True,
    chain_method: str = "auto",
    batch_size: int | None = None,
    sample_weight=None,
    init: GMMParams | EMResult | None = None,
    family: str = "gaussian",
    measurement_error=None,
    sparse: bool = False,
) -> Posterior:
    """Posterior inference for a ``k``-component Gaussian (or Student-t) mixture.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features); a DataFrame's column names become feature names.
    k : int
    method : {"nuts", "svi", "map"}
        "nuts": multi-chain NUTS on one device (see ``chain_method``), started near the EM fit.
        "svi": variational inference with the guide ``guide``, started at the EM fit; on
        minibatches with ``batch_size``.
        "map": the posterior mode (AutoDelta), started at the EM fit; one draw.
    covariance_type : {"full", "tied", "diag", "spherical"}
    prior : Priors, optional
        On the data's scale; defaults in ``Priors``.
    num_warmup, num_samples, num_chains : int
        NUTS settings (``num_samples`` is also the number of SVI draws from the guide).
    num_steps : int
        SVI/MAP optimisation steps (Adam, step size decaying from 1e-2 to 1e-4).
    guide : {"normal", "multivariate_normal", "lowrank_multivariate_normal"}
    seed : int
    progress_bar : bool
    chain_method : {"auto", "sequential", "vectorized", "threads"}
        How NUTS runs its chains: "sequential" (``lax.map``, one compiled chain),
        "vectorized" (``vmap``) or "threads" (one chain per call of the compiled program,
        the calls on one host thread per CPU core at the same time). All run the same sampler: the
        same seed gives the same draws. "auto" picks threads on a multi-core CPU
        (sequential on one core), where the unbatched chain compiles about twice as fast
        and runs faster than vectorised ones, and vectorized on GPU/TPU.
    batch_size : int, optional
        ``method="svi"`` only: each optimisation step uses a random minibatch of this many
        rows (without replacement; the ``obs_id`` plate scales its log-likelihood by
        ``n / batch_size``), for data sets too large for full-batch steps. The per-row
        log-likelihood of the result still covers every row (computed in blocks of rows).
        ``None`` (default) or ``n``: every row in every step.
    sample_weight : array-like (n_samples,), optional
        Non-negative weight per row: row i's log-likelihood term is multiplied by ``w_i``,
        so a row of integer weight ``m`` counts as ``m`` copies of it and a row of weight 0
        not at all (the posterior is that of the rows repeated; the EM start, the
        standardisation and the data-derived prior defaults are weighted the same way).
        ``Posterior.log_likelihood`` stays the unweighted ``log p(x_i | θ)`` of every row,
        so LOO treats each row as one observation.
    init : GMMParams or EMResult, optional
        The fit to start from and to label the draws by, on the data's scale: ``k``
        components of ``covariance_type`` over ``X``'s features (for instance the
        ``em_fit`` result a user has looked at). The chains (or the guide) start there,
        every draw is relabelled to its components, and ``Posterior.reference`` is it, so
        tables and plots of the fit and of the posterior name the same components. Default:
        ``em_fit``'s algorithm, best of 5 restarts (see Notes).
    family : {"gaussian", "student_t"}
        The components' distribution (``bayesgmm.families``). "student_t": multivariate t
        components, each with its own degrees of freedom ``ν_k ~ Gamma(2, rate 0.1)``
        (``Priors.dof_concentration``, ``Priors.dof_rate``; Juárez and Steel 2010), the
        likelihood the t density with the assignments marginalised; started from
        ``em_fit(..., family="student_t")``. The draws carry ``dof`` (chain, draw, k).
    measurement_error : array-like of shape (n_samples, n_features) or (n_samples, n_features, n_features), optional
        Known Gaussian measurement errors of the rows, as in ``em_fit``: (n, d) standard
        deviations or (n, d, d) covariances ``S_i``. The likelihood of row ``i`` is then
        ``Σ_k π_k N(x_i | μ_k, Σ_k + S_i)`` (extreme deconvolution, Bovy, Hogg and Roweis
        2011): the posterior is that of the noise-free mixture. Gaussian components only (a t
        component convolved with a Gaussian error has no closed-form density). Each NUTS
        step factors ``k·n`` matrices of ``d × d``: slower than without errors.
    sparse : bool
        A sparse finite mixture (Malsiner-Walli, Frühwirth-Schnatter and Grün 2016): ``k`` is
        an upper bound ``k_max`` on the number of clusters, the weights' prior is
        ``Dirichlet(e0, ..., e0)`` with ``e0 = 0.01`` unless ``prior.weight_concentration``
        sets another (``bayesgmm.model.SPARSE_WEIGHT_CONCENTRATION``), which empties the
        components the data do not need; ``Posterior.n_components()`` is then the posterior
        of the number of clusters (occupied components), and ``to_arviz`` carries
        ``n_occupied``. The same compiled programs as ``sparse=False`` (the concentration is
        an argument of them). Not with ``method="map"``: under ``e0 < 1`` the posterior
        density is unbounded as a weight goes to 0, so there is no mode. NUTS does not move
        well between numbers of occupied components (see the docs' "Sparse mixtures").

    Returns
    -------
    Posterior

    Raises
    ------
    ValueError
        Bad settings (each message says what to change), ``family="student_t"`` with
        ``measurement_error``, an ``init`` of another family, shape or type.
    ArgumentTypeError
        ``prior`` not a ``Priors``, ``init`` not a ``GMMParams``, non-numeric errors.

    Notes
    -----
    Draws are relabelled to the start's components (``init``, or the EM fit) by optimal
    assignment on the means, so per-component summaries, r-hat and ESS are meaningful. ``Posterior.log_likelihood`` has
    ``num_chains × num_samples × n`` entries (SVI: ``num_samples × n``); for millions of rows
    keep ``num_samples`` modest.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-4.0, 1.0, (60, 2)), rng.normal(4.0, 1.0, (40, 2))])
    >>> posterior = infer(X, 2, method="map", num_steps=300, progress_bar=False)
    >>> posterior.params.batch_shape  # (chain, draw): MAP is one draw
    (1, 1)
    >>> np.round(np.sort(np.asarray(posterior.params.means)[0, 0, :, 0]))
    array([-4.,  4.])
    """
    enable_compilation_cache()  # before the first compilation: JAX keeps the compiled programs across sessions
    feature_names = [str(c) for c in X.columns] if hasattr(X, "columns") else None
    X = _validation.check_data(X)
    n, d = X.shape
    k = _validation.check_n_components(k, n)
    if get_structure(covariance_type).prior is None:
        raise ValueError(
            f"infer supports the covariance types {BAYESIAN_TYPES} (mclust's VVV, EEE, VVI, VII), got "
            f"{covariance_type!r}: mclust's other models have no prior here. Use em_fit or select for "
            f"{covariance_type!r}, or one of {BAYESIAN_TYPES} for a posterior."
        )
    method = _validation.check_choice(method, "method", METHODS)
    guide = _validation.check_choice(guide, "guide", GUIDES)
    family = _validation.check_choice(family, "family", tuple(FAMILIES))
    errors_data = None
    if measurement_error is not None:
        if has_dof(family):
            raise ValueError(
                "measurement_error applies to Gaussian components (a Student-t component convolved with Gaussian "
                "errors has no closed-form density); pass family='gaussian', or drop measurement_error."
            )
        errors_data = _validation.check_measurement_error(measurement_error, X)  # variances or covariances
    chain_method = resolve_chain_method(chain_method)
    num_warmup = _validation.check_int_at_least(num_warmup, "num_warmup", 1)
    num_samples = _validation.check_int_at_least(num_samples, "num_samples", 1)
    num_chains = _validation.check_int_at_least(num_chains, "num_chains", 1)
    num_steps = _validation.check_int_at_least(num_steps, "num_steps", 1)
    batch_size = _check_batch_size(batch_size, method, n)
    w_host = _validation.check_sample_weight(sample_weight, n)
    if np.count_nonzero(w_host) < k:
        raise ValueError(
            f"sample_weight leaves {np.count_nonzero(w_host)} rows with a positive weight, fewer than "
            f"k={k} components; give more rows a positive weight or use fewer components."
        )
    prior = Priors() if prior is None else prior
    if not isinstance(prior, Priors):
        raise ArgumentTypeError(f"prior must be a bayesgmm.Priors, got {type(prior).__name__}.")
    if not isinstance(sparse, bool | np.bool_):
        raise ArgumentTypeError(f"sparse must be True or False, got {sparse!r}.")
    if sparse and method == "map":
        raise ValueError(
            "sparse=True has no posterior mode: the Dirichlet(e0 < 1) density of the weights grows without bound as "
            "a weight goes to 0. Use method='nuts' (or 'svi') for a sparse mixture, or sparse=False for MAP."
        )
    prior = prior.with_weight_concentration(sparse=bool(sparse))
    feature_names = feature_names or [f"x{j}" for j in range(d)]

    center = np.average(X, axis=0, weights=w_host)
    variance = np.average((X - center) ** 2, axis=0, weights=w_host)
    standard = Standardisation.of(center, variance)
    dtype = jnp.result_type(float)
    Z_host = ((X - standard.center) / standard.scale).astype(dtype)
    Z, w = jax.device_put(Z_host), jax.device_put(w_host.astype(dtype))  # jnp.asarray would compile per shape
    errors_host = None if errors_data is None else standard.errors_to_standard(errors_data).astype(dtype)
    errors = None if errors_host is None else jax.device_put(errors_host)
    hyper = prior.resolve(center, standard.scale, np.maximum(np.sqrt(variance), 1e-12), k)
    request = InferenceRequest(
        seed=np.uint32(seed),
        Z=Z,
        w=w,
        hyper=hyper,
        errors=errors,
        Z_host=Z_host,
        errors_host=errors_host,
        standard=standard,
        k=k,
        covariance_type=covariance_type,
        family=family,
        prior=prior,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        num_steps=num_steps,
        chain_method=chain_method,
        progress_bar=progress_bar,
        guide=guide,
        batch_size=batch_size,
    )
    given = None if init is None else _given_start(init, k, d, covariance_type, family)
    entry = INFERENCE_METHODS[method]
    with ThreadPoolExecutor(max_workers=1) as pool:  # leaving the block waits for its tasks
        handle = entry.prepare(pool, request)
        if given is None:
            start = _em_start(Z_host, w_host, k, covariance_type, seed, family, errors_host)
        else:
            start = _on_standard_scale(given, standard, dtype)
        draws, sample_stats = entry.run(request, start, handle)
    params_standard, log_likelihood, permutations = _finish(draws, Z_host, errors_host, start, covariance_type)
    log_likelihood = log_likelihood - d * math.log(standard.scale)  # a new array: the block result is read-only
    return Posterior(
        params=standard.to_data(params_standard),
        log_likelihood=log_likelihood,
        method=method,
        reference=standard.to_data(start) if given is None else given,
        sample_stats=sample_stats,
        permutations=permutations,
        X=X,
        feature_names=feature_names,
        priors=prior,
        measurement_error=errors_data,
        sparse=bool(sparse),
    )
