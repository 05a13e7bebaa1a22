"""bayesgmm: Gaussian mixture models on JAX, by EM and by Bayesian inference.

Public API (explicit re-exports; heavy optional parts are imported lazily):

- ``em_fit(X, k, ...)`` -> ``EMResult``: maximum likelihood by EM.
- ``GMMParams``: the parameter pytree shared by every fit, density and plot.
- ``save(params, path)`` / ``load(path)``: ``.npz`` or ``.json``, never pickle.
- ``ConvergenceWarning``.
"""

from bayesgmm.em import ConvergenceWarning, EMResult, em_fit
from bayesgmm.io import load, save
from bayesgmm.params import GMMParams

__version__ = "0.1.0"

__all__ = ["ConvergenceWarning", "EMResult", "GMMParams", "em_fit", "load", "save", "__version__"]
