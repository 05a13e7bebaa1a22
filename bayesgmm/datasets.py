"""Small real data sets shipped with the package."""

from __future__ import annotations

from importlib import resources

import numpy as np

FAITHFUL_COLUMNS = ("eruptions", "waiting")


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
    with resources.files("bayesgmm.data").joinpath("faithful.csv").open("r") as file:
        header = file.readline().strip().split(",")
        data = np.loadtxt(file, delimiter=",", dtype=np.float64)
    if tuple(header) != FAITHFUL_COLUMNS:
        raise RuntimeError(f"bayesgmm/data/faithful.csv has unexpected columns {header}")
    if as_frame:
        import pandas as pd

        return pd.DataFrame(data, columns=list(FAITHFUL_COLUMNS))
    return data
