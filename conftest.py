"""Test configuration shared by tests/ and the doctests in bayesgmm/.

Tests compare against float64 references (scikit-learn, scipy), so they run with
``jax_enable_x64``; float32 behaviour is tested inside ``jax.enable_x64(False)``.
The package itself never changes this flag.
"""

import jax

jax.config.update("jax_enable_x64", True)
