"""One validated configuration per fit, built once at the API boundary.

``EMConfig`` holds what the user chose (validated here and nowhere else); ``Program`` holds
the static (compile-time) part of one compiled fit, hashable so that it is the single static
argument of the jitted drivers. The traced part (tolerances, regularisation, the data's
scale) is ``_state.Settings``. Nothing here computes on data.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from bayesgmm import _validation
from bayesgmm.covariance import get_structure
from bayesgmm.em._init import INIT_METHODS
from bayesgmm.families import DOF_START, GAUSSIAN, get_family

MOMENTS = ("auto", "whitened", "raw")
DEGENERATE = ("reseed", "raise")
MISSING = ("raise", "marginalize")


@dataclasses.dataclass(frozen=True)
class EMConfig:
    """The user's settings of an EM fit, validated (see ``em_fit`` for their meaning).

    Build it with ``EMConfig.validated(...)``; fields are then known to be of the right type
    and range, so drivers read them without checking again.
    """

    covariance_type: str = "full"
    n_init: int = 1
    init: str = "kmeans"
    max_iter: int = 100
    tol: float = 1e-3
    reg_covar: float = 1e-6
    degenerate: str = "reseed"
    moments: str = "auto"
    chunk_size: int | None = None
    context: str = ""  # prefixed to every message (select names its grid point)
    family: str = "gaussian"
    dof_mode: str = "component"  # Student-t: "component", "shared" or "fixed"
    dof_start: float = DOF_START  # Student-t: the initial degrees of freedom (the value, when fixed)
    noise: bool = False  # a uniform background-noise component (mclust's Vinv)
    noise_volume: float | None = None  # its hypervolume V on the data's scale; None: the data's bounding box

    @property
    def scale_mixture(self) -> bool:
        """The components are scale mixtures (Student-t): their E-step weights rows by ``u``."""
        return get_family(self.family) is not GAUSSIAN

    @classmethod
    def validated(
        cls,
        *,
        covariance_type="full",
        n_init=1,
        init="kmeans",
        max_iter=100,
        tol=1e-3,
        reg_covar=1e-6,
        degenerate="reseed",
        moments="auto",
        chunk_size=None,
        context="",
        family="gaussian",
        dof=None,
        noise=False,
    ) -> EMConfig:
        get_structure(covariance_type)  # a clear error listing the valid types
        family = _validation.check_choice(family, "family", ("gaussian", "student_t"))
        dof_mode, dof_start = _validation.check_dof(dof, family)
        noise, noise_volume = _validation.check_noise(noise)
        if family != "gaussian" and moments == "raw":
            raise ValueError(
                "moments='raw' computes Gaussian densities from quadratic features; Student-t components need each "
                "row's Mahalanobis distance. Leave moments='auto' (or 'whitened')."
            )
        init = _validation.check_choice(init, "init", tuple(INIT_METHODS))
        n_init = _validation.check_int_at_least(n_init, "n_init", 1)
        if INIT_METHODS[init].deterministic and n_init > 1:
            raise ValueError(
                f"init={init!r} is deterministic: its {n_init} restarts would all be the same fit. Pass n_init=1, "
                "or init='kmeans' for random restarts."
            )
        return cls(
            covariance_type=covariance_type,
            n_init=n_init,
            init=init,
            max_iter=_validation.check_int_at_least(max_iter, "max_iter", 0),
            tol=_validation.check_nonnegative_float(tol, "tol"),
            reg_covar=_validation.check_nonnegative_float(reg_covar, "reg_covar"),
            degenerate=_validation.check_choice(degenerate, "degenerate", DEGENERATE),
            moments=_validation.check_choice(moments, "moments", MOMENTS),
            chunk_size=None if chunk_size is None else _validation.check_int_at_least(chunk_size, "chunk_size", 1),
            context=context,
            family=family,
            dof_mode=dof_mode,
            dof_start=dof_start,
            noise=noise,
            noise_volume=noise_volume,
        )

    def resolved_moments(self, dtype, has_missing: bool, has_errors: bool = False) -> str:
        """The E-step to run: "errors" for rows with measurement errors, "missing" for data with
        NaN, else "raw" (float64) or "whitened".

        An ``EMConfig`` built directly (not ``validated``) may force ``moments="missing"``, the
        incomplete-data E-step, on complete rows (tests compare the two formulations).
        """
        if has_errors:
            if self.moments != "auto":
                raise ValueError(
                    f"moments={self.moments!r} does not apply with measurement_error (the E-step deconvolves each "
                    "row with its own error covariance); leave moments='auto'."
                )
            return "errors"
        if self.moments == "missing":
            return "missing"
        if has_missing:
            if self.moments != "auto":
                raise ValueError(
                    f"moments={self.moments!r} does not apply with missing='marginalize' on data with NaN (the "
                    "E-step marginalises each row's missing entries in its own way); leave moments='auto'."
                )
            return "missing"
        if self.moments == "auto":
            if self.scale_mixture:  # the E-step needs each row's Mahalanobis distance
                return "whitened"
            return "raw" if jnp.dtype(dtype) == jnp.float64 else "whitened"
        return self.moments


def uses_observed_dof_step(family: str, dof_mode: str) -> bool:
    """The family has degrees of freedom and they are estimated (ECME's ν-step applies)."""
    return get_family(family).dof_derivatives is not None and dof_mode != "fixed"


@dataclasses.dataclass(frozen=True)
class Program:
    """The static part of one compiled fit (hashable: the jitted drivers' one static argument)."""

    k: int
    covariance_type: str
    init: str
    moments: str  # "whitened", "raw", "missing" or "errors"
    degenerate: str
    history_size: int
    chunk_size: int
    sequential: bool = False  # restarts and groups one after another (CPU) instead of vmapped
    mesh: object = None  # jax.sharding.Mesh of sharded rows, or None
    family: str = "gaussian"
    dof_mode: str = "component"

    @property
    def structure(self):
        return get_structure(self.covariance_type)

    @property
    def observed_dof_step(self) -> bool:
        """ECME's ν-step (``_estep.dof_step``, a second pass per iteration) rather than ECM's: for
        estimated degrees of freedom (the Student-t family takes no measurement errors)."""
        return uses_observed_dof_step(self.family, self.dof_mode) and self.moments != "errors"
