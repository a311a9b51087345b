"""`fx.analytics`: federated analytics (TFF's `tff.analytics`): heavy hitters, histograms,
distinct counts, as federated computations whose client sketches are array programs."""

from federax.analytics import count_distinct as count_distinct
from federax.analytics import data_processing as data_processing
from federax.analytics import differential_privacy as differential_privacy
from federax.analytics import heavy_hitters as heavy_hitters
from federax.analytics import hierarchical_histogram as hierarchical_histogram
from federax.analytics import histogram_processing as histogram_processing
from federax.analytics import text as text
from federax.analytics.hierarchical_histogram import (
    HierarchicalHistogramDecoder as HierarchicalHistogramDecoder)
from federax.analytics.hierarchical_histogram import (
    build_hierarchical_histogram_process as build_hierarchical_histogram_process)

__all__ = ["HierarchicalHistogramDecoder", "build_hierarchical_histogram_process",
           "count_distinct", "data_processing", "differential_privacy", "heavy_hitters",
           "hierarchical_histogram", "histogram_processing", "text"]
