"""The package's warnings and typed errors, at the bottom of the layers (imports nothing of ours).

Callers catch these by type, never by message text:

- ``ArgumentTypeError(TypeError, ValueError)``: an argument of the wrong type.
- ``DegenerateFitError(ValueError)``: a fit that cannot continue (a covariance stopped being
  positive definite with ``degenerate="raise"``, or every restart failed).
- ``ConvergenceWarning``: EM stopped at ``max_iter`` before the change fell below ``tol``.
- ``SpuriousComponentWarning``: the returned fit has a component the data cannot support
  (too few effective rows for its covariance, a covariance at the ``reg_covar`` floor, or one
  singular without the fallback regularisation).
- ``DegenerateComponentWarning``: EM re-seeded an empty component or regularised a singular
  covariance.

Wrong argument *types* are ``TypeError``; wrong *values* are ``ValueError``; both say what to change.
"""

from __future__ import annotations


class DegenerateFitError(ValueError):
    """A fit that cannot continue: a component's covariance stopped being positive definite.

    A ``ValueError``, so code written for scikit-learn's ``GaussianMixture`` (which raises one)
    still catches it.
    """


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a string for ``n_init``, text in ``X``, a dict for ``prior``).

    A ``TypeError``; also a ``ValueError``, so code that caught the ``ValueError`` these raised
    before still does (scikit-learn's ``InvalidParameterError`` is both for the same reason).
    """


class ConvergenceWarning(UserWarning):
    """EM stopped at ``max_iter`` before the log-likelihood change fell below ``tol``."""


class SpuriousComponentWarning(UserWarning):
    """Every restart ended with a component the data cannot support (a spurious maximum; see ``em_fit``)."""


class DegenerateComponentWarning(UserWarning):
    """EM re-seeded an empty component or regularised a singular covariance (see ``em_fit``)."""
