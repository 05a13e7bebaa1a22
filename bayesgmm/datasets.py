"""Small real data sets shipped with the package."""

from __future__ import annotations

from importlib import resources

import numpy as np

FAITHFUL_COLUMNS = ("eruptions", "waiting")
STARS_CYG_COLUMNS = ("log_te", "log_light")
STARS_CYG_GIANTS = (10, 19, 29, 33)  # rows (from 0) of the four red giants, stars 11, 20, 30 and 34 in the book


def load_faithful(*, as_frame: bool = False):
    """Old Faithful geyser eruptions (R's ``datasets::faithful``; public domain).

    272 rows: eruption duration (minutes) and waiting time to the next eruption
    (minutes). The canonical two-cluster example for Gaussian mixtures.

    Parameters
    ----------
    as_frame : bool
        Return a pandas DataFrame (needs pandas) instead of an ndarray.

    Returns
    -------
    ndarray (272, 2) or DataFrame with columns ``eruptions``, ``waiting``.

    Examples
    --------
    >>> from bayesgmm.datasets import load_faithful
    >>> load_faithful().shape
    (272, 2)
    """
    return _load_csv("faithful.csv", FAITHFUL_COLUMNS, as_frame)


def load_stars_cyg(*, as_frame: bool = False):
    """The Hertzsprung–Russell diagram of the star cluster CYG OB1 (47 stars; R's ``robustbase::starsCYG``).

    The logarithm of each star's effective surface temperature and of its light intensity
    (``L / L_0``), from Humphreys (1978), calibrated by C. Doom after Vansina and De Greve
    (1982), as tabulated by Rousseeuw and Leroy (1987, p. 27, table 3), the classic data set
    for robust estimation. Most stars lie on the main sequence, a band where hotter stars are
    brighter; rows 10, 19, 29 and 33 here (the stars numbered 11, 20, 30 and 34 in the book) are
    red giants, cool and bright, the outliers that pull least-squares fits away from the band.
    A published table of measurements, distributed with R's robustbase.

    Parameters
    ----------
    as_frame : bool
        Return a pandas DataFrame (needs pandas) instead of an ndarray.

    Returns
    -------
    ndarray (47, 2) or DataFrame with columns ``log_te``, ``log_light``.

    References
    ----------
    R. M. Humphreys, "Studies of luminous stars in nearby galaxies. I. Supergiants and O stars
    in the Milky Way", Astrophysical Journal Supplement Series 38, 309–350, 1978.

    P. J. Rousseeuw and A. M. Leroy, Robust Regression and Outlier Detection, Wiley, 1987.

    Examples
    --------
    >>> from bayesgmm.datasets import STARS_CYG_GIANTS, load_stars_cyg
    >>> X = load_stars_cyg()
    >>> X.shape, X[list(STARS_CYG_GIANTS), 0].max()
    ((47, 2), np.float64(3.49))
    """
    return _load_csv("stars_cyg.csv", STARS_CYG_COLUMNS, as_frame)


def _load_csv(name: str, columns: tuple[str, ...], as_frame: bool):
    """A CSV of bayesgmm/data with a header of ``columns`` as a float64 ndarray (or a DataFrame)."""
    with resources.files("bayesgmm.data").joinpath(name).open("r") as file:
        header = file.readline().strip().split(",")
        data = np.loadtxt(file, delimiter=",", dtype=np.float64)
    if tuple(header) != columns:
        raise RuntimeError(f"bayesgmm/data/{name} has unexpected columns {header}")
    if as_frame:
        import pandas as pd

        return pd.DataFrame(data, columns=list(columns))
    return data
