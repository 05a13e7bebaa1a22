"""Simulation-based calibration of infer(method="nuts") (Talts et al. 2018).

For each replication: draw parameters from the prior, simulate data, run NUTS, and record
the rank of each true label-invariant quantity among (thinned) posterior draws. If the
sampler targets the right posterior, the ranks are uniform on {0, ..., L}.

References
----------
S. Talts, M. Betancourt, D. Simpson, A. Vehtari and A. Gelman, "Validating Bayesian
inference algorithms with simulation-based calibration", arXiv:1804.06788, 2018.
"""

import numpy as np
import pytest
from scipy import stats

import bayesgmm
from bayesgmm import GMMParams
from bayesgmm.model import Priors

REPLICATIONS = 100
N_ROWS = 40
THIN = 4  # 2 chains x 200 draws -> 100 draws, thinned to reduce autocorrelation
PRIOR = Priors(
    weight_concentration=2.0, mean_loc=0.0, mean_scale=3.0, std_prior="lognormal", std_loc=0.0, std_scale=0.5
)


def _label_invariant(weights, means, stds):
    """Quantities that do not depend on the component labels; arrays (..., k)."""
    overall_mean = np.sum(weights * means, axis=-1)
    overall_variance = np.sum(weights * (stds**2 + means**2), axis=-1) - overall_mean**2
    return {
        "overall_mean": overall_mean,
        "overall_variance": overall_variance,
        "smaller_mean": np.min(means, axis=-1),
        "larger_mean": np.max(means, axis=-1),
    }


@pytest.mark.slow
def test_nuts_ranks_are_uniform():
    rng = np.random.default_rng(2018)
    ranks = {name: [] for name in ("overall_mean", "overall_variance", "smaller_mean", "larger_mean")}
    n_draws = None
    for replication in range(REPLICATIONS):
        weights = rng.dirichlet([2.0, 2.0])
        means = rng.normal(0.0, 3.0, size=2)
        stds = np.exp(rng.normal(0.0, 0.5, size=2))
        truth = GMMParams(weights, means[:, None], stds[:, None], "diag")
        X, _ = truth.sample(N_ROWS, seed=replication)
        posterior = bayesgmm.infer(
            np.asarray(X),
            2,
            method="nuts",
            covariance_type="diag",
            prior=PRIOR,
            num_warmup=300,
            num_samples=200,
            num_chains=2,
            seed=replication,
            progress_bar=False,
        )
        draws = _label_invariant(
            np.asarray(posterior.params.weights).reshape(-1, 2)[::THIN],
            np.asarray(posterior.params.means).reshape(-1, 2)[::THIN],
            np.asarray(posterior.params.scale).reshape(-1, 2)[::THIN],
        )
        true_values = _label_invariant(weights, means, stds)
        n_draws = len(draws["overall_mean"])
        for name in ranks:
            ranks[name].append(int(np.sum(draws[name] < true_values[name])))
    L = n_draws
    uniform_mean, uniform_variance = L / 2.0, ((L + 1) ** 2 - 1) / 12.0
    for name, values in ranks.items():
        values = np.asarray(values)
        # 1. chi-square over 10 equal bins of the scaled ranks; 4 quantities at p > 0.001 each
        counts, _ = np.histogram(values / (L + 1), bins=10, range=(0.0, 1.0))
        assert stats.chisquare(counts).pvalue > 1e-3, (name, counts)
        # 2. mean rank within 3.5 Monte Carlo standard errors of L/2
        z_mean = (values.mean() - uniform_mean) / np.sqrt(uniform_variance / REPLICATIONS)
        assert abs(z_mean) < 3.5, (name, values.mean(), z_mean)
        # 3. spread: rank variance within 3.5 standard errors of the uniform's. For a discrete
        # uniform the variance estimator's variance is (μ4 − σ⁴)/R with μ4 = (L+1)^4 / 80 approx.
        se_variance = np.sqrt(((L + 1) ** 4 / 80.0 - uniform_variance**2) / REPLICATIONS)
        assert abs(values.var() - uniform_variance) < 3.5 * se_variance, (name, values.var(), uniform_variance)
