"""Model selection: compare numbers of components by PSIS-LOO on Bayesian fits.

``loo_compare(X, ks, ...)`` fits ``infer`` for each k and ranks the fits with ArviZ's
``compare`` (expected log pointwise predictive density, estimated by Pareto-smoothed
importance sampling leave-one-out cross-validation).
"""

from __future__ import annotations

from typing import NamedTuple


class LooComparison(NamedTuple):
    """Result of ``loo_compare``.

    table : pandas.DataFrame
        ``arviz_stats.compare`` output indexed by ``"k=<k>"``: elpd_loo, se, elpd_diff, dse,
        weight, p_loo, warning..., best first.
    best_k : int
        The number of components with the highest elpd_loo.
    posteriors : dict[int, Posterior]
    """

    table: object
    best_k: int
    posteriors: dict


def loo_compare(X, ks, *, method: str = "nuts", covariance_type: str = "full", **infer_kwargs) -> LooComparison:
    """Compare mixtures with each number of components in ``ks`` by PSIS-LOO.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    ks : iterable of int
        Numbers of components to compare.
    method : {"nuts", "svi"}
        Posterior approximation for each k (MAP has no spread to cross-validate with).
    covariance_type : str
    **infer_kwargs
        Passed to ``bayesgmm.infer`` (num_warmup, num_samples, num_chains, prior, seed...).

    Returns
    -------
    LooComparison

    References
    ----------
    A. Vehtari, A. Gelman and J. Gabry, "Practical Bayesian model evaluation using
    leave-one-out cross-validation and WAIC", Statistics and Computing 27, 2017.
    """
    import arviz_stats

    from bayesgmm.inference import infer

    ks = sorted({int(k) for k in ks})
    if not ks:
        raise ValueError("ks must hold at least one number of components.")
    if method not in ("nuts", "svi"):
        raise ValueError(f"method must be 'nuts' or 'svi' for LOO, got {method!r}.")
    posteriors = {k: infer(X, k, method=method, covariance_type=covariance_type, **infer_kwargs) for k in ks}
    table = arviz_stats.compare({f"k={k}": posterior.to_arviz() for k, posterior in posteriors.items()})
    best_k = int(str(table.index[0]).removeprefix("k="))
    return LooComparison(table, best_k, posteriors)
