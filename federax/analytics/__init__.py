"""`fx.analytics`: federated analytics (TFF's `tff.analytics`): heavy hitters, histograms,
distinct counts, as federated computations whose client sketches are array programs."""

from federax.analytics import text as text
from federax.analytics import data_processing as data_processing
from federax.analytics import heavy_hitters as heavy_hitters
