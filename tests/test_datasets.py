"""The data sets shipped in bayesgmm/data load as documented."""

import numpy as np

from bayesgmm.datasets import FAITHFUL_COLUMNS, STARS_CYG_COLUMNS, STARS_CYG_GIANTS, load_faithful, load_stars_cyg


def test_faithful_loads():
    X = load_faithful()
    assert X.shape == (272, len(FAITHFUL_COLUMNS)) and X.dtype == np.float64


def test_stars_cyg_matches_the_published_table():
    X = load_stars_cyg()
    assert X.shape == (47, len(STARS_CYG_COLUMNS))
    # the four giants of Rousseeuw and Leroy (1987) are the only stars cooler than log Te = 3.6
    assert tuple(np.flatnonzero(X[:, 0] < 3.6)) == STARS_CYG_GIANTS
    np.testing.assert_allclose(X.sum(axis=0), [202.57, 235.57], rtol=1e-12)  # column sums of robustbase's starsCYG
    frame = load_stars_cyg(as_frame=True)
    assert list(frame.columns) == list(STARS_CYG_COLUMNS)
