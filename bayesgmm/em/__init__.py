"""Maximum likelihood for Gaussian mixtures by expectation-maximisation, jitted end to end.

Layers (each module imports only from those above it in this list, and from the package's
lower layers: ``_errors``, ``_validation``, ``covariance``, ``params``, ``chunks``,
``sharding``):

- ``_state``: the records (``SufficientStatistics``, ``Settings``, ``EMState``, ``EMResult``);
- ``_hierarchical``: mclust's model-based merge tree (host NumPy), the hierarchical start;
- ``_init``: ``INIT_METHODS``, the table of initialisations (both drivers);
- ``_config``: ``EMConfig`` (validated once at the boundary) and ``Program`` (the static part
  of a compiled fit);
- ``_estep``: ``E_STEPS``, the table of E-steps {whitened, raw, missing, errors}, each with the
  components' family (``bayesgmm.families``) and an optional uniform noise component;
- ``_kernels``: ``m_step``, ``repair``, ``start_state`` / ``advance`` / ``finish``;
- ``_data``: validate, centre and rescale the rows on the host; a fit's ``Settings`` and
  initial draws (``start_draws``);
- drivers: ``_memory`` (rows in memory or sharded, one compiled program), ``_streaming``
  (rows streamed from the host, block by block) and ``_host`` (NumPy, for small data);
- ``_online``: ``em_partial_fit``, stepwise (online) EM over minibatches with the same kernels;
- ``_fit``: ``em_fit``, ``prepare_grid`` / ``fit_groups`` (``select``'s grid; small grids on the
  NumPy driver), ``fit_on_host`` (``infer``'s start) and
  ``refit`` (the bootstrap's replicates: ``_memory.fit_replicates``).

Public: ``em_fit``, ``EMResult``, ``em_partial_fit``, ``OnlineState``;
for ``select``, ``bootstrap`` and tests also ``prepare_grid``, ``fit_groups``, ``refit``,
``prepare_data``, ``start_draws``, ``compute_dtype``, ``EMConfig``, ``e_step``, ``m_step``,
``SufficientStatistics``, the noise guess's ``noise_start`` / ``initial_rows`` and
``kmeans_draws``, ``classified_draws`` and ``numpy_classify`` (``select``'s refits: its close
calls, VVE from EVE's classification).
"""

from bayesgmm.em._config import EMConfig
from bayesgmm.em._data import (
    PreparedData,
    compute_dtype,
    initial_rows,
    noise_start,
    on_host,
    prepare_data,
    start_draws,
)
from bayesgmm.em._estep import E_STEPS, e_step, numpy_classify
from bayesgmm.em._fit import (
    GridFit,
    Notice,
    Refits,
    em_fit,
    fit_groups,
    fit_on_host,
    prepare_grid,
    refit,
)
from bayesgmm.em._init import classified_draws, kmeans_draws
from bayesgmm.em._kernels import m_step
from bayesgmm.em._online import OnlineState, em_partial_fit
from bayesgmm.em._state import EMResult, SufficientStatistics, UserInit

__all__ = [
    "E_STEPS",
    "EMConfig",
    "EMResult",
    "GridFit",
    "Notice",
    "OnlineState",
    "PreparedData",
    "Refits",
    "SufficientStatistics",
    "UserInit",
    "classified_draws",
    "compute_dtype",
    "e_step",
    "em_partial_fit",
    "em_fit",
    "fit_groups",
    "fit_on_host",
    "initial_rows",
    "kmeans_draws",
    "m_step",
    "noise_start",
    "numpy_classify",
    "on_host",
    "prepare_data",
    "prepare_grid",
    "refit",
    "start_draws",
]
