"""bayesgmm: Gaussian mixture models on JAX, by EM and by Bayesian inference.

Public API (explicit re-exports; ArviZ and matplotlib load only when used):

- ``em_fit(X, k, ...)`` -> ``EMResult``: maximum likelihood by EM.
- ``infer(X, k, method="nuts" | "svi" | "map", ...)`` -> ``Posterior``; ``Priors``.
- ``select(X, k, covariance_types, criterion=...)`` -> ``Selection``: the model-selection grid
  (BIC, AIC, ICL by batched EM; PSIS-LOO by ``infer``); ``loo_compare(X, ks, ...)``.
- ``shard(X)`` -> ``ShardedRows``: rows placed over all devices, for ``em_fit``.
- ``GMMParams``: the parameter pytree shared by every fit, density and plot.
- ``save(params, path)`` / ``load(path)``: ``.npz`` or ``.json``, never pickle.
- ``ConvergenceWarning``, ``DegenerateComponentWarning``, ``DegenerateFitError`` (a ``ValueError``),
  ``SpuriousComponentWarning``.
- ``GaussianMixture`` (EM) and ``BayesianGMM`` (``infer``): scikit-learn estimators, loaded
  on first use (they need ``pip install 'bayesgmm[sklearn]'``).
"""

import importlib as _importlib

from bayesgmm._errors import (
    ConvergenceWarning,
    DegenerateComponentWarning,
    DegenerateFitError,
    SpuriousComponentWarning,
)
from bayesgmm.em import EMResult, em_fit
from bayesgmm.inference import Posterior, infer
from bayesgmm.io import load, save
from bayesgmm.model import Priors
from bayesgmm.params import GMMParams
from bayesgmm.selection import LooComparison, Selection, loo_compare, select
from bayesgmm.sharding import ShardedRows, shard

__version__ = "0.1.0"

_SKLEARN_ESTIMATORS = ("BayesianGMM", "GaussianMixture")


def __getattr__(name: str):
    """Load the scikit-learn estimators on first use, so ``import bayesgmm`` does not import sklearn."""
    if name in _SKLEARN_ESTIMATORS:
        return getattr(_importlib.import_module("bayesgmm.sklearn"), name)
    raise AttributeError(f"module 'bayesgmm' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SKLEARN_ESTIMATORS))


__all__ = [
    "BayesianGMM",
    "ConvergenceWarning",
    "DegenerateComponentWarning",
    "DegenerateFitError",
    "EMResult",
    "GMMParams",
    "GaussianMixture",
    "LooComparison",
    "Posterior",
    "Priors",
    "Selection",
    "ShardedRows",
    "SpuriousComponentWarning",
    "em_fit",
    "infer",
    "load",
    "loo_compare",
    "save",
    "select",
    "shard",
    "__version__",
]
