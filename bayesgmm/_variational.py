"""SVI and MAP for ``gmm_model``: one compiled program per configuration, nothing traced op by op.

NumPyro's ``SVI`` with an autoguide traces the model and the guide for ``svi.init``, again for
every step and again for ``Predictive``; a first ``infer(method="svi")`` compiled them as four
programs, the largest of its first call. Here the guide is a distribution over the flat vector
``u`` of the model's unconstrained sites (``model.unconstrain``, raveled), as NumPyro's
autoguides define it, and the model enters through its log density in those coordinates
(``model.unconstrained_log_density``, the potential NUTS uses, written out without tracing
the model). One jitted ``run`` starts the guide at the EM fit, takes every optimisation step
(``lax.scan``) and draws from the fitted guide:

- SVI: the one-particle reparameterised ELBO, ``loss = log q(u) − log p(x, θ(u)) − log |∂θ/∂u|``
  with ``u ~ q``: NumPyro's ``Trace_ELBO`` for an autoguide, whose guide density carries the
  same Jacobian. Draws: ``u ~ q``, constrained.
- MAP (NumPyro's ``AutoDelta``): a point ``u``, ``loss = −log p(x, θ(u))``, the log joint
  density of the model's own parameters (no Jacobian): the posterior mode in ``θ``.

``GUIDES`` is the table of guides: their parameters, each with its initial value and NumPyro
constraint (stored unconstrained and optimised there, as ``numpyro.param`` does), and the
distribution they define; the parameterisations and initial scales are NumPyro's
``AutoNormal``, ``AutoMultivariateNormal``, ``AutoLowRankMultivariateNormal`` and ``AutoDelta``.
The optimiser is Adam with its step size decaying exponentially from 1e-2 to 1e-4.

Minibatches follow random reshuffling: each epoch draws a permutation of the rows (the rows'
key folded with the epoch number) and steps through it ``batch_size`` rows at a time (the
last ``n mod batch_size`` rows of each permutation are left out); the rows' log-likelihood is
scaled by ``n / batch_size`` (an unbiased estimate of the full one, as NumPyro's subsampled
``plate``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from numpyro import distributions as dist
from numpyro import optim
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to

from bayesgmm.model import constrain, sites_from_params, unconstrain, unconstrained_log_density

# NumPyro's autoguides' ``init_scale``: the guide's scale around the EM start
INIT_SCALE = 0.1
FIRST_STEP_SIZE, LAST_STEP_SIZE = 1e-2, 1e-4


class Guide(NamedTuple):
    """One variational family over the flat unconstrained vector ``u`` (``D`` entries).

    parameters : loc (D,) -> {name: (initial value, NumPyro constraint)}, started at ``loc``
    distribution : {name: constrained value} -> the NumPyro distribution ``q(u)``; ``None``
        for a point mass at ``loc`` (MAP)
    """

    parameters: Callable[[jax.Array], dict]
    distribution: Callable[[dict], dist.Distribution] | None


def _location(loc):
    return {"loc": (loc, constraints.real_vector)}


def _normal_parameters(loc):
    return {**_location(loc), "scale": (jnp.full_like(loc, INIT_SCALE), constraints.softplus_positive)}


def _normal(params):
    return dist.Normal(params["loc"], params["scale"]).to_event(1)


def _multivariate_normal_parameters(loc):
    scale_tril = INIT_SCALE * jnp.eye(loc.shape[0], dtype=loc.dtype)
    return {**_location(loc), "scale_tril": (scale_tril, constraints.scaled_unit_lower_cholesky)}


def _multivariate_normal(params):
    return dist.MultivariateNormal(params["loc"], scale_tril=params["scale_tril"])


def _lowrank_parameters(loc):
    rank = int(round(loc.shape[0] ** 0.5))  # NumPyro's default rank
    return {
        **_normal_parameters(loc),
        "cov_factor": (jnp.zeros((loc.shape[0], rank), loc.dtype), constraints.real),
    }


def _lowrank_multivariate_normal(params):
    scale = params["scale"]
    return dist.LowRankMultivariateNormal(params["loc"], params["cov_factor"] * scale[:, None], scale * scale)


GUIDES: dict[str, Guide] = {
    "normal": Guide(_normal_parameters, _normal),  # AutoNormal: independent normals
    "multivariate_normal": Guide(_multivariate_normal_parameters, _multivariate_normal),  # AutoMultivariateNormal
    "lowrank_multivariate_normal": Guide(_lowrank_parameters, _lowrank_multivariate_normal),
    "map": Guide(_location, None),  # AutoDelta
}


@functools.lru_cache(maxsize=16)
def program(k, covariance_type, std_prior, family, guide_name, num_steps, num_samples, batch_size):
    """The jitted ``run(seed, start, Z, w, hyper, errors) -> (draws, losses)`` of one configuration.

    ``seed`` a uint32 scalar (the key is made inside: no eager random operations), ``start``
    the EM fit (``GMMParams``, standardised scale), ``Z (n, d)``, ``w (n,)``, ``hyper`` the
    prior's hyperparameters, ``errors`` the rows' measurement-error variances (n, d) or
    covariances (n, d, d), or None; ``family`` the components' (static). ``draws``: the
    model's sites with leading (chain, draw) axes, ``(1, num_samples)`` (MAP: ``(1, 1)``, the
    mode); ``losses (num_steps,)``: each step's loss (the negative ELBO, or MAP's negative log
    joint density). ``batch_size``: rows per step, ``None`` for all.
    """
    guide = GUIDES[guide_name]
    settings = dict(k=k, covariance_type=covariance_type, std_prior=std_prior, family=family)
    decay = LAST_STEP_SIZE / FIRST_STEP_SIZE
    adam = optim.Adam(lambda step: FIRST_STEP_SIZE * decay ** (step / num_steps))

    @jax.jit
    def run(seed, start, Z, w, hyper, errors):
        key_steps, key_rows, key_draws = jax.random.split(jax.random.key(seed), 3)
        loc, unravel = ravel_pytree(unconstrain(sites_from_params(start)))
        initial = guide.parameters(loc)
        transforms = {name: biject_to(constraint) for name, (_, constraint) in initial.items()}
        n = Z.shape[0]

        def constrained(stored):
            return {name: transforms[name](value) for name, value in stored.items()}

        def log_joint(u, rows):
            Z_rows, w_rows, errors_rows = (Z, w, errors)
            if rows is not None:
                Z_rows, w_rows = Z[rows], w[rows] * (n / batch_size)
                errors_rows = None if errors is None else errors[rows]
            jacobian = guide.distribution is not None
            return unconstrained_log_density(
                unravel(u), Z_rows, hyper, w_rows, errors_rows, jacobian=jacobian, **settings
            )

        def loss(stored, key, rows):
            params = constrained(stored)
            if guide.distribution is None:
                return -log_joint(params["loc"], rows)
            q = guide.distribution(params)
            u = q.rsample(key)
            return q.log_prob(u) - log_joint(u, rows)

        def step(carry, index):
            state, order = carry
            rows = None
            if batch_size is not None:
                steps_per_epoch = n // batch_size
                position = index % steps_per_epoch
                order = jax.lax.cond(
                    position == 0,
                    lambda: jax.random.permutation(jax.random.fold_in(key_rows, index // steps_per_epoch), n),
                    lambda: order,
                )
                rows = jax.lax.dynamic_slice_in_dim(order, position * batch_size, batch_size)
            key = jax.random.fold_in(key_steps, index)
            value, gradient = jax.value_and_grad(loss)(adam.get_params(state), key, rows)
            return (adam.update(gradient, state), order), value

        stored = {name: transforms[name].inv(value) for name, (value, _) in initial.items()}
        order = None if batch_size is None else jnp.arange(n)
        (state, _), losses = jax.lax.scan(step, (adam.init(stored), order), jnp.arange(num_steps))
        params = constrained(adam.get_params(state))
        if guide.distribution is None:
            return jax.tree.map(lambda site: site[None, None], constrain(unravel(params["loc"]))), losses
        u = guide.distribution(params).sample(key_draws, (num_samples,))
        return jax.tree.map(lambda site: site[None], jax.vmap(lambda u: constrain(unravel(u)))(u)), losses

    return run
