"""`fx.analytics.heavy_hitters`: the most frequent strings of a population, privately
(TFF's `tff.analytics.heavy_hitters`), and central DP for the result."""

from federax.analytics.heavy_hitters import differential_privacy as differential_privacy
from federax.analytics.heavy_hitters import iblt as iblt
from federax.analytics.heavy_hitters.differential_privacy import (
    LaplaceThreshold as LaplaceThreshold)
from federax.analytics.heavy_hitters.differential_privacy import (
    laplace_threshold as laplace_threshold)
from federax.analytics.heavy_hitters.differential_privacy import (
    privatize_heavy_hitters as privatize_heavy_hitters)

__all__ = ["LaplaceThreshold", "differential_privacy", "iblt", "laplace_threshold",
           "privatize_heavy_hitters"]
