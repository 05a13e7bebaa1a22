"""bayesgmm: Gaussian mixture models on JAX, by EM and by Bayesian inference.

Public API (explicit re-exports; NumPyro, ArviZ and matplotlib load only when used):

- ``em_fit(X, k, ...)`` -> ``EMResult``: maximum likelihood by EM.
- ``em_partial_fit(start, X_batch)`` -> ``OnlineState``: online (stepwise) EM, one minibatch per call.
- ``infer(X, k, method="nuts" | "svi" | "map", ...)`` -> ``Posterior``; ``Priors``: loaded on
  first use (NumPyro's import).
- ``select(X, k, covariance_types, criterion=...)`` -> ``Selection``: the model-selection grid
  (BIC, AIC, ICL by batched EM; PSIS-LOO by ``infer``); ``loo_compare(X, ks, ...)``.
- ``bootstrap(X, params, n_boot=...)`` -> ``Bootstrap``: standard errors and percentile intervals;
  ``bootstrap_lrt(X, k, covariance_type)`` -> ``BootstrapLRT``: the bootstrap likelihood-ratio test
  of k vs k + 1 components (mclust's); loaded on first use.
- ``shard(X)`` -> ``ShardedRows``: rows placed over all devices, for ``em_fit``.
- ``GMMParams``: the parameter pytree shared by every fit, density and plot.
- ``save(params, path)`` / ``load(path)``: ``.npz`` or ``.json``, never pickle.
- ``ConvergenceWarning``, ``DegenerateComponentWarning``, ``DegenerateFitError`` (a ``ValueError``),
  ``SpuriousComponentWarning``.
- ``GaussianMixture`` (EM) and ``BayesianGMM`` (``infer``): scikit-learn estimators, loaded
  on first use (they need ``pip install 'bayesgmm[sklearn]'``).
"""

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING

from bayesgmm._errors import (
    ConvergenceWarning,
    DegenerateComponentWarning,
    DegenerateFitError,
    SpuriousComponentWarning,
)
from bayesgmm.em import EMResult, OnlineState, em_fit, em_partial_fit
from bayesgmm.io import load, save
from bayesgmm.params import GMMParams
from bayesgmm.selection import LooComparison, Selection, loo_compare, select
from bayesgmm.sharding import ShardedRows, shard

if _TYPE_CHECKING:  # loaded on first use (``__getattr__``); seen by type checkers and the API reference
    from bayesgmm.inference import Posterior, infer
    from bayesgmm.model import Priors

__version__ = "0.1.0"

_SKLEARN_ESTIMATORS = ("BayesianGMM", "GaussianMixture")
_BOOTSTRAP = ("Bootstrap", "BootstrapLRT", "bootstrap", "bootstrap_lrt")
_BAYESIAN = {"infer": "bayesgmm.inference", "Posterior": "bayesgmm.inference", "Priors": "bayesgmm.model"}
_LAZY = {
    **dict.fromkeys(_SKLEARN_ESTIMATORS, "bayesgmm.sklearn"),
    **dict.fromkeys(_BOOTSTRAP, "bayesgmm.resampling"),
    **_BAYESIAN,
}


def __getattr__(name: str):
    """Load the scikit-learn estimators, the bootstrap and Bayesian inference (NumPyro: about a third
    of ``import bayesgmm``'s time) on first use, so that ``import bayesgmm`` and ``em_fit`` stay light."""
    if name in _LAZY:
        return getattr(_importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bayesgmm' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BayesianGMM",
    "Bootstrap",
    "BootstrapLRT",
    "ConvergenceWarning",
    "DegenerateComponentWarning",
    "DegenerateFitError",
    "EMResult",
    "GMMParams",
    "GaussianMixture",
    "LooComparison",
    "OnlineState",
    "Posterior",
    "Priors",
    "Selection",
    "ShardedRows",
    "SpuriousComponentWarning",
    "bootstrap",
    "bootstrap_lrt",
    "em_fit",
    "em_partial_fit",
    "infer",
    "load",
    "loo_compare",
    "save",
    "select",
    "shard",
    "__version__",
]
