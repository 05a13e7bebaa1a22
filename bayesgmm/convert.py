"""``Posterior`` -> ArviZ 1.x ``xarray.DataTree`` (arviz-base imported lazily).

Groups and variables (dims in brackets; ``chain, draw`` lead every posterior variable):

- posterior: ``weights[component]``, ``means[component, feature]``,
  ``covariances[component, feature, feature_bis]`` (dense matrices for every type; Student-t
  components: the scale matrices), for Student-t components ``dof[component]``, and for a
  sparse mixture (``infer(..., sparse=True)``) ``n_occupied`` (no dims beyond chain and draw:
  the number of components holding at least one row under a sampled allocation,
  ``Posterior.n_occupied()``)
- log_likelihood: ``obs[obs_id]`` (per-row log-likelihood, for LOO/WAIC)
- observed_data: ``obs[obs_id, feature]``
- sample_stats: NUTS ``diverging, energy, n_steps, tree_depth, acceptance_rate, lp``
- posterior_predictive (on request): ``obs[obs_id, feature]``, one replicate per draw; with
  measurement errors (``Posterior.measurement_error``) each replicate row gets its row's error
  added, so that it compares with the observed (noisy) rows
"""

from __future__ import annotations

import jax
import numpy as np

# arviz-base 1.3 with numpyro 0.22 breaks from_numpyro when arviz is imported first unless this
# module is loaded; it is loaded with this one (numpyro is a dependency), so import order never matters.
import numpyro.infer.initialization  # noqa: F401


def _arviz_base():
    try:
        import arviz_base
    except ImportError:
        raise ImportError("Posterior.to_arviz needs ArviZ 1.x: pip install arviz-base arviz-stats.") from None
    return arviz_base


def _error_draws(errors: np.ndarray, shape: tuple, seed: int) -> np.ndarray:
    """Draws ``(draws, n, d)`` of each row's measurement error: variances (n, d) or covariances (n, d, d).

    Covariances may be singular (a coordinate without error): their square roots come from
    ``eigh``, not Cholesky.
    """
    noise = np.random.default_rng(seed).standard_normal(shape)
    if errors.ndim == 2:
        return noise * np.sqrt(errors)
    values, vectors = np.linalg.eigh(errors)
    roots = vectors * np.sqrt(np.maximum(values, 0.0))[:, None, :]  # (n, d, d): roots roots' = S_i
    return np.einsum("nij,snj->sni", roots, noise)


def to_datatree(posterior, *, posterior_predictive: bool = False):
    """Convert a ``bayesgmm.Posterior`` to an ``xarray.DataTree`` with named dims."""
    arviz_base = _arviz_base()
    params = posterior.params
    k, d = params.n_components, params.n_features
    n = posterior.X.shape[0]
    coords = {
        "component": np.arange(k),
        "feature": list(posterior.feature_names),
        "feature_bis": list(posterior.feature_names),
        "obs_id": np.arange(n),
    }
    dims = {
        "weights": ["component"],
        "means": ["component", "feature"],
        "covariances": ["component", "feature", "feature_bis"],
        "dof": ["component"],
        # log_likelihood's obs has no feature axis: from_dict skips trailing event dims there
        "obs": ["obs_id", "feature"],
    }
    groups = {
        "posterior": {
            "weights": np.asarray(params.weights),
            "means": np.asarray(params.means),
            "covariances": np.asarray(params.covariance_matrices),
        },
        "log_likelihood": {"obs": np.asarray(posterior.log_likelihood)},
        "observed_data": {"obs": posterior.X},
    }
    if params.dof is not None:
        groups["posterior"]["dof"] = np.asarray(params.dof)
    if getattr(posterior, "sparse", False):
        groups["posterior"]["n_occupied"] = posterior.n_occupied()
    stats = {name: value for name, value in posterior.sample_stats.items() if np.ndim(value) >= 2}
    if stats:
        groups["sample_stats"] = stats
    if posterior_predictive:
        keys = jax.random.split(jax.random.key(0), posterior.num_chains * posterior.num_draws)
        flat = jax.tree.map(lambda leaf: leaf.reshape((-1,) + leaf.shape[2:]), params)
        replicates = np.asarray(jax.vmap(lambda p, key: p.sample(n, key)[0])(flat, keys))
        errors = getattr(posterior, "measurement_error", None)
        if errors is not None:
            replicates = replicates + _error_draws(errors, replicates.shape, seed=1)
        groups["posterior_predictive"] = {"obs": replicates.reshape((posterior.num_chains, posterior.num_draws, n, d))}
    return arviz_base.from_dict(
        groups,
        coords=coords,
        dims=dims,
        sample_dims=["chain", "draw"],
        attrs={"posterior": {"inference_library": "bayesgmm", "method": posterior.method}},
    )
