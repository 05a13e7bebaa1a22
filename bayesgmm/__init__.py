"""bayesgmm: Gaussian mixture models on JAX, by EM and by Bayesian inference.

Public API (explicit re-exports; ArviZ and matplotlib load only when used):

- ``em_fit(X, k, ...)`` -> ``EMResult``: maximum likelihood by EM.
- ``infer(X, k, method="nuts" | "svi" | "map", ...)`` -> ``Posterior``; ``Priors``.
- ``select(X, k, covariance_types, criterion=...)`` -> ``Selection``: the model-selection grid
  (BIC, AIC, ICL by batched EM; PSIS-LOO by ``infer``); ``loo_compare(X, ks, ...)``.
- ``shard(X)`` -> ``ShardedRows``: rows placed over all devices, for ``em_fit``.
- ``GMMParams``: the parameter pytree shared by every fit, density and plot.
- ``save(params, path)`` / ``load(path)``: ``.npz`` or ``.json``, never pickle.
- ``ConvergenceWarning``, ``DegenerateComponentWarning``.
"""

from bayesgmm.em import ConvergenceWarning, DegenerateComponentWarning, EMResult, em_fit
from bayesgmm.inference import Posterior, infer
from bayesgmm.io import load, save
from bayesgmm.model import Priors
from bayesgmm.params import GMMParams
from bayesgmm.selection import LooComparison, Selection, loo_compare, select
from bayesgmm.sharding import ShardedRows, shard

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "DegenerateComponentWarning",
    "EMResult",
    "GMMParams",
    "LooComparison",
    "Posterior",
    "Priors",
    "Selection",
    "ShardedRows",
    "em_fit",
    "infer",
    "load",
    "loo_compare",
    "save",
    "select",
    "shard",
    "__version__",
]
