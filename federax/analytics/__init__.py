"""`fx.analytics`: federated analytics (TFF's `tff.analytics`): heavy hitters, histograms,
distinct counts, as federated computations whose client sketches are array programs."""

from federax.analytics import count_distinct as count_distinct
