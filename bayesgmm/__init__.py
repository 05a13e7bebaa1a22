"""bayesgmm: Gaussian mixture models on JAX, by EM and by Bayesian inference.

Public API (explicit re-exports; ArviZ and matplotlib load only when used):

- ``em_fit(X, k, ...)`` -> ``EMResult``: maximum likelihood by EM.
- ``infer(X, k, method="nuts" | "svi" | "map", ...)`` -> ``Posterior``; ``Priors``.
- ``GMMParams``: the parameter pytree shared by every fit, density and plot.
- ``save(params, path)`` / ``load(path)``: ``.npz`` or ``.json``, never pickle.
- ``ConvergenceWarning``.
"""

from bayesgmm.em import ConvergenceWarning, EMResult, em_fit
from bayesgmm.infer import Posterior, infer  # rebinds the name ``infer`` from the module to the function
from bayesgmm.io import load, save
from bayesgmm.model import Priors
from bayesgmm.params import GMMParams

__version__ = "0.1.0"

__all__ = ["ConvergenceWarning", "EMResult", "GMMParams", "Posterior", "Priors", "em_fit", "infer", "load", "save",
           "__version__"]
