"""Bayesian inference for Gaussian mixtures: ``infer(X, k, method="nuts" | "svi" | "map")``.

Data flow: validate -> standardise (``z = (x − c) / s``, one scalar ``s``) -> EM fit for an
initial point and a reference labelling -> NUTS / SVI / MAP on ``model.gmm_model`` ->
draws relabelled to the reference by optimal assignment on the means -> ``Posterior``
on the data's own scale.

Compiled runners are cached by shapes and settings (``functools.lru_cache`` on the static
configuration, data passed as arguments), so a second call on new data of the same shape
does not recompile.
"""

from __future__ import annotations

import functools
import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.flatten_util import ravel_pytree
from scipy.optimize import linear_sum_assignment

from bayesgmm import _validation
from bayesgmm.covariance import get_structure
from bayesgmm.em import ConvergenceWarning, em_fit
from bayesgmm.model import Priors, gmm_model, params_from_sites, sites_from_params
from bayesgmm.params import GMMParams

METHODS = ("nuts", "svi", "map")
GUIDES = ("normal", "multivariate_normal", "lowrank_multivariate_normal")
_INIT_JITTER = 0.1  # sd of the per-chain perturbation of the EM start, unconstrained scale


class Standardisation(NamedTuple):
    """``z = (x − center) / scale``; ``scale`` is one number so every covariance type is kept."""

    center: np.ndarray  # (d,)
    scale: float

    @classmethod
    def of(cls, X: np.ndarray) -> Standardisation:
        scale = float(np.sqrt(np.mean(np.var(X, axis=0))))
        return cls(X.mean(axis=0), scale if scale > 0 else 1.0)

    def to_data(self, params: GMMParams) -> GMMParams:
        """Parameters of the standardised data mapped back to the data's scale."""
        return _affine(params, np.asarray(self.center), np.asarray(self.scale))

    def to_standard(self, params: GMMParams) -> GMMParams:
        return _affine(params, -np.asarray(self.center) / self.scale, np.asarray(1.0 / self.scale))


@jax.jit
def _affine(params: GMMParams, shift, factor) -> GMMParams:
    """The mixture of ``factor · x + shift`` for ``x`` from ``params`` (one compile per shape)."""
    dtype = params.dtype
    means = params.means * factor.astype(dtype) + shift.astype(dtype)
    return GMMParams(params.weights, means, params.scale * factor.astype(dtype), params.covariance_type)


# ----------------------------------------------------------------------------- relabelling


def relabel(params: GMMParams, reference_means: np.ndarray) -> tuple[GMMParams, np.ndarray]:
    """Permute the components of every draw to best match ``reference_means (k, d)``.

    For each draw, the permutation minimising ``Σ_k ‖μ_{p(k)} − m_k‖²`` is found by
    optimal assignment (Hungarian algorithm) and applied to weights, means and scales
    together.

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
    flat_params = jax.tree.map(lambda leaf: jnp.reshape(leaf, (-1,) + leaf.shape[len(batch_shape) :]), params)
    permuted = _permute_components(flat_params, jnp.asarray(permutations.reshape((-1, k))))
    return jax.tree.map(lambda leaf: leaf.reshape(batch_shape + leaf.shape[1:]), permuted), permutations


@jax.jit
def _permute_components(params: GMMParams, permutations: Array) -> GMMParams:
    """Reorder the components of draws ``params`` (leading axis S) by ``permutations (S, k)``."""
    structure = params.structure

    def permute(draw: GMMParams, permutation: Array) -> GMMParams:
        scale = structure.permute(draw.scale, permutation)
        return GMMParams(draw.weights[permutation], draw.means[permutation], scale, draw.covariance_type)

    return jax.vmap(permute)(params, permutations)


@functools.partial(jax.jit, static_argnames="covariance_type")
def _params_and_log_likelihood(draws: dict, Z: Array, covariance_type: str) -> tuple[GMMParams, Array]:
    """Draws of the model's sites as ``GMMParams`` and ``log p(z_i | θ_s)`` per draw and row.

    The log-likelihood does not depend on the labelling, so it is taken before relabelling.
    """
    params = params_from_sites(draws, covariance_type)
    return params, params.log_prob(Z)


# ----------------------------------------------------------------------------- runners


def _model(k, covariance_type, std_prior):
    return functools.partial(gmm_model, k=k, covariance_type=covariance_type, std_prior=std_prior)


CHAIN_METHODS = ("auto", "sequential", "vectorized")


def resolve_chain_method(chain_method: str) -> str:
    """``"auto"``: chains one after another on CPU, vectorised (``vmap``) on accelerators.

    On CPU the unbatched NUTS program traces and compiles about twice as fast and runs
    faster than the vectorised one (a vmapped tree builder waits for every chain's longest
    trajectory); on a GPU, vectorised chains share each kernel launch.
    """
    chain_method = _validation.check_choice(chain_method, "chain_method", CHAIN_METHODS)
    if chain_method == "auto":
        return "sequential" if jax.default_backend() == "cpu" else "vectorized"
    return chain_method


@functools.lru_cache(maxsize=16)
def _nuts_program(k, covariance_type, std_prior, num_warmup, num_samples, num_chains, chain_method, progress_bar):
    """One compiled NUTS program per configuration: data and hyperparameters are arguments.

    ``run(key, start_sites, Z, hyper) -> (constrained draws (chain, draw, ...), stats)``
    unconstrains the start, jitters it per chain, runs warm-up and sampling, and
    constrains the draws, all in one jitted function (no eager ops, one compilation).

    Built from NumPyro's functional ``hmc`` with a potential that takes the model's
    arguments, because ``MCMC.run`` recompiles its sampling loop for every new data set.
    The potential is itself jitted, so the model is traced once rather than at every place
    NUTS evaluates it; warm-up and sampling are one ``lax.scan``.
    """
    from numpyro.infer.hmc import hmc
    from numpyro.infer.util import constrain_fn, potential_energy, unconstrain_fn

    model = _model(k, covariance_type, std_prior)
    potential = jax.jit(lambda unconstrained, Z, hyper: potential_energy(model, (Z, hyper), {}, unconstrained))
    init_kernel, sample_kernel = hmc(
        potential_fn_gen=lambda Z, hyper: functools.partial(potential, Z=Z, hyper=hyper), algo="NUTS"
    )
    total = num_warmup + num_samples

    def report(chain, step):
        if progress_bar:
            every = max(1, total // 10)
            jax.lax.cond(
                (step % every == 0) | (step == total - 1),
                lambda: jax.debug.callback(_print_progress, chain, step, total, ordered=False),
                lambda: None,
            )

    def one_chain(chain, key, init_params, Z, hyper):
        args = (Z, hyper)
        state = init_kernel(init_params, num_warmup, target_accept_prob=0.8, model_args=args, rng_key=key)

        def step(state, index):
            report(chain, index)
            state = sample_kernel(state, model_args=args)
            return state, (
                state.z,
                state.diverging,
                state.energy,
                state.num_steps,
                state.accept_prob,
                state.potential_energy,
            )

        _, trace = jax.lax.scan(step, state, jnp.arange(total))
        trace = jax.tree.map(lambda leaf: leaf[num_warmup:], trace)
        unconstrained, diverging, energy, num_steps, accept_prob, potential_energy_ = trace
        constrained = jax.vmap(lambda z: constrain_fn(model, args, {}, z))(unconstrained)
        stats = dict(
            diverging=diverging,
            energy=energy,
            num_steps=num_steps,
            accept_prob=accept_prob,
            potential_energy=potential_energy_,
        )
        return constrained, stats

    @jax.jit
    def run(key, start_sites, Z, hyper):
        key_jitter, key_chains = jax.random.split(key)
        flat, unravel = ravel_pytree(unconstrain_fn(model, (Z, hyper), {}, start_sites))
        jitter = _INIT_JITTER * jax.random.normal(key_jitter, (num_chains,) + flat.shape, flat.dtype)
        chains = (jnp.arange(num_chains), jax.random.split(key_chains, num_chains), jax.vmap(unravel)(flat + jitter))
        if chain_method == "vectorized":
            return jax.vmap(one_chain, in_axes=(0, 0, 0, None, None))(*chains, Z, hyper)
        return jax.lax.map(lambda chain: one_chain(*chain, Z, hyper), chains)

    return run


def _print_progress(chain, step, total):
    print(f"NUTS: chain {int(chain) + 1}, step {int(step) + 1}/{total}", flush=True)


@functools.lru_cache(maxsize=16)
def _unconstrainer(k, covariance_type, std_prior):
    """Jitted ``(Z, hyper, sites) -> unconstrained sites`` for one model configuration."""
    from numpyro.infer.util import unconstrain_fn

    model = _model(k, covariance_type, std_prior)
    return jax.jit(lambda Z, hyper, sites: unconstrain_fn(model, (Z, hyper), {}, sites))


@functools.lru_cache(maxsize=16)
def _nuts_executable(config: tuple, signature: tuple, treedef):
    """The NUTS program compiled ahead of time for one configuration and argument signature.

    ``config`` are ``_nuts_program``'s arguments; ``signature`` the ``ShapeDtypeStruct`` leaves
    of ``(key, start_sites, Z, hyper)`` and ``treedef`` their structure. Compiling needs
    only shapes, so ``infer`` runs this in a worker thread while the EM start is fitted.
    """
    abstract_args = jax.tree.unflatten(treedef, signature)
    return _nuts_program(*config).lower(*abstract_args).compile()


def _compile_nuts_async(pool, config: tuple, key, Z, hyper, k: int, covariance_type: str):
    """Start compiling the NUTS program in ``pool``; returns a future of the executable."""
    d = Z.shape[1]
    dummy_start = jax.eval_shape(
        lambda: sites_from_params(
            GMMParams(
                jnp.ones((k,), Z.dtype),
                jnp.zeros((k, d), Z.dtype),
                get_structure(covariance_type).identity_scale(k, d, Z.dtype),
                covariance_type,
            )
        )
    )
    abstract_args = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(jnp.shape(leaf), leaf.dtype), (key, dummy_start, Z, hyper)
    )
    signature, treedef = jax.tree.flatten(abstract_args)
    x64 = jax.config.jax_enable_x64  # a thread does not inherit the caller's enable_x64 context

    def compile_in_thread():
        with jax.enable_x64(x64):
            return _nuts_executable(config, tuple(signature), treedef)

    return pool.submit(compile_in_thread)


def _run_nuts(key, Z, hyper, start: GMMParams, executable):
    start_sites = sites_from_params(start)
    draws, stats = executable(key, start_sites, Z, hyper)
    num_steps = np.asarray(stats["num_steps"])
    sample_stats = {
        "diverging": np.asarray(stats["diverging"]),
        "energy": np.asarray(stats["energy"]),
        "n_steps": num_steps,
        "tree_depth": np.floor(np.log2(np.maximum(num_steps, 1))).astype(int) + 1,
        "acceptance_rate": np.asarray(stats["accept_prob"]),
        "lp": -np.asarray(stats["potential_energy"]),
    }
    return {name: draws[name] for name in start_sites}, sample_stats


class _Optimiser(NamedTuple):
    svi: object
    guide: object
    run: object  # jitted (state, Z, hyper) -> (state, losses)
    draw: object  # jitted (key, params, Z, hyper) -> draws from the guide


@functools.lru_cache(maxsize=16)
def _optimiser(k, covariance_type, std_prior, guide_name, num_steps, num_samples):
    from numpyro import optim
    from numpyro.infer import SVI, Predictive, Trace_ELBO, autoguide

    model = _model(k, covariance_type, std_prior)
    guide = {
        "map": autoguide.AutoDelta,
        "normal": autoguide.AutoNormal,
        "multivariate_normal": autoguide.AutoMultivariateNormal,
        "lowrank_multivariate_normal": autoguide.AutoLowRankMultivariateNormal,
    }[guide_name](model)
    # Adam with the step size decaying exponentially from 1e-2 to 1e-4 over the run
    schedule = lambda step: 1e-2 * 0.01 ** (step / num_steps)  # noqa: E731
    svi = SVI(model, guide, optim.Adam(schedule), Trace_ELBO())

    @jax.jit
    def run(state, Z, hyper):
        return jax.lax.scan(lambda s, _: svi.update(s, Z, hyper), state, None, length=num_steps)

    @jax.jit
    def draw(key, params, Z, hyper):
        return Predictive(guide, params=params, num_samples=num_samples)(key, Z, hyper)

    return _Optimiser(svi, guide, run, draw)


def _start_state(optimiser: _Optimiser, key, Z, hyper, start_values: dict):
    """A fresh SVI state whose guide location sits at ``start_values`` (unconstrained)."""
    from numpyro.infer.svi import SVIState

    svi = optimiser.svi
    state = svi.init(key, Z, hyper)
    params = svi.optim.get_params(state.optim_state)  # unconstrained
    if "auto_loc" in params:  # AutoMultivariateNormal / AutoLowRankMultivariateNormal
        # The guide packs sites in its own order; unpacking is a linear split-and-reshape,
        # so its transpose is the exact packing.
        unpack = optimiser.guide._unpack_latent
        (packed,) = jax.linear_transpose(unpack, params["auto_loc"])(
            {name: jnp.asarray(value, params["auto_loc"].dtype) for name, value in start_values.items()}
        )
        params = {**params, "auto_loc": packed}
    else:  # AutoNormal / AutoDelta: one loc per site
        params = {**params, **{f"{name}_auto_loc": value for name, value in start_values.items()}}
    return SVIState(svi.optim.init(params), state.mutable_state, state.rng_key)


def _run_optimiser(
    key, Z, hyper, start: GMMParams, *, k, covariance_type, std_prior, guide_name, num_steps, num_samples
):
    optimiser = _optimiser(k, covariance_type, std_prior, guide_name, num_steps, num_samples)
    key_init, key_draws = jax.random.split(key)
    start_values = _unconstrainer(k, covariance_type, std_prior)(Z, hyper, sites_from_params(start))
    state, losses = optimiser.run(_start_state(optimiser, key_init, Z, hyper, start_values), Z, hyper)
    params = optimiser.svi.get_params(state)
    if guide_name == "map":
        values = optimiser.guide.median(params)
        draws = {name: value[None, None] for name, value in values.items()}
    else:
        draws = {
            name: value[None]
            for name, value in optimiser.draw(key_draws, params, Z, hyper).items()
            if name in ("weights", "means", "stds", "corr_cholesky")
        }
    return draws, {"loss": np.asarray(losses)}


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
        The EM fit used as starting point and reference labelling (data scale).
    sample_stats : dict of ndarray (chain, draw)
        NUTS: diverging, energy, n_steps, tree_depth, acceptance_rate, lp.
        SVI/MAP: ``loss`` (num_steps,) instead.
    permutations : ndarray (chain, draw, k)
        The relabelling applied to each draw.
    X : ndarray (n, d)
    feature_names : list of str
    priors : Priors
    """

    def __init__(
        self, *, params, log_likelihood, method, reference, sample_stats, permutations, X, feature_names, priors
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

    @property
    def num_chains(self) -> int:
        return self.params.batch_shape[0]

    @property
    def num_draws(self) -> int:
        return self.params.batch_shape[1]

    def mean_params(self) -> GMMParams:
        """Posterior means of the weights, means and covariance matrices (as one GMMParams)."""
        axes = (0, 1)
        structure = self.params.structure
        weights = jnp.mean(self.params.weights, axis=axes)
        covariances = jnp.mean(self.params.covariances, axis=axes)
        return GMMParams(
            weights / jnp.sum(weights),
            jnp.mean(self.params.means, axis=axes),
            structure.from_covariances(covariances),
            self.params.covariance_type,
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

    def to_arviz(self, *, posterior_predictive: bool = False):
        """An ArviZ ``xarray.DataTree`` (see ``bayesgmm.convert.to_datatree``)."""
        from bayesgmm.convert import to_datatree

        return to_datatree(self, posterior_predictive=posterior_predictive)

    def summary(self, **kwargs):
        """ArviZ's summary table (r-hat, ESS, means, HDIs) of weights, means and covariances."""
        import arviz_stats

        return arviz_stats.summary(self.to_arviz(), **kwargs)


# ----------------------------------------------------------------------------- infer


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
) -> Posterior:
    """Posterior inference for a ``k``-component Gaussian mixture.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features); a DataFrame's column names become feature names.
    k : int
    method : {"nuts", "svi", "map"}
        "nuts": multi-chain NUTS (chains vectorised on one device), started near the EM fit.
        "svi": variational inference with the guide ``guide``, started at the EM fit.
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
    chain_method : {"auto", "sequential", "vectorized"}
        How NUTS runs its chains: "sequential" (``lax.map``, one compiled chain) or
        "vectorized" (``vmap``). "auto" picks sequential on CPU, where it compiles about
        twice as fast and runs faster, and vectorized on GPU/TPU.

    Returns
    -------
    Posterior

    Notes
    -----
    Draws are relabelled to the EM fit's components by optimal assignment on the means, so
    per-component summaries, r-hat and ESS are meaningful.
    """
    feature_names = [str(c) for c in X.columns] if hasattr(X, "columns") else None
    X = _validation.check_data(X)
    n, d = X.shape
    k = _validation.check_n_components(k, n)
    get_structure(covariance_type)
    method = _validation.check_choice(method, "method", METHODS)
    guide = _validation.check_choice(guide, "guide", GUIDES)
    chain_method = resolve_chain_method(chain_method)
    num_warmup = _validation.check_int_at_least(num_warmup, "num_warmup", 1)
    num_samples = _validation.check_int_at_least(num_samples, "num_samples", 1)
    num_chains = _validation.check_int_at_least(num_chains, "num_chains", 1)
    num_steps = _validation.check_int_at_least(num_steps, "num_steps", 1)
    prior = Priors() if prior is None else prior
    if not isinstance(prior, Priors):
        raise ValueError(f"prior must be a bayesgmm.Priors, got {type(prior).__name__}.")
    feature_names = feature_names or [f"x{j}" for j in range(d)]

    standard = Standardisation.of(X)
    dtype = jnp.result_type(float)
    Z = jnp.asarray((X - standard.center) / standard.scale, dtype)
    hyper = prior.resolve(standard.center, standard.scale, np.maximum(X.std(axis=0), 1e-12), k)
    key = jax.random.key(seed)
    settings = dict(k=k, covariance_type=covariance_type, std_prior=prior.std_prior)
    with ThreadPoolExecutor(max_workers=1) as pool:  # leaving the block waits for the compilation
        if method == "nuts":  # compile the sampler (it needs only shapes) while EM finds the start
            config = (
                k,
                covariance_type,
                prior.std_prior,
                num_warmup,
                num_samples,
                num_chains,
                chain_method,
                progress_bar,
            )
            executable = _compile_nuts_async(pool, config, key, Z, hyper, k, covariance_type)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = em_fit(np.asarray(Z), k, covariance_type=covariance_type, n_init=5, seed=seed, max_iter=500).params
    if method == "nuts":
        draws, sample_stats = _run_nuts(key, Z, hyper, start, executable.result())
    else:
        guide_name = "map" if method == "map" else guide
        draws, sample_stats = _run_optimiser(
            key, Z, hyper, start, guide_name=guide_name, num_steps=num_steps, num_samples=num_samples, **settings
        )
    params_standard, log_likelihood = _params_and_log_likelihood(draws, Z, covariance_type)
    params_standard, permutations = relabel(params_standard, np.asarray(start.means))
    log_likelihood = np.asarray(log_likelihood) - d * math.log(standard.scale)
    return Posterior(
        params=standard.to_data(params_standard),
        log_likelihood=np.asarray(log_likelihood),
        method=method,
        reference=standard.to_data(start),
        sample_stats=sample_stats,
        permutations=permutations,
        X=X,
        feature_names=feature_names,
        priors=prior,
    )
