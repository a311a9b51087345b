"""Hierarchical histograms (TFF's `tff.analytics.hierarchical_histogram`): a histogram's tree
of partial sums aggregated over clients with optional differential privacy, and its decoder."""

from federax.analytics.hierarchical_histogram import build_tree_from_leaf as build_tree_from_leaf
from federax.analytics.hierarchical_histogram.clipping_factory import (
    HistogramClippingSumFactory as HistogramClippingSumFactory)
from federax.analytics.hierarchical_histogram.hierarchical_histogram_decoder import (
    HierarchicalHistogramDecoder as HierarchicalHistogramDecoder)
from federax.analytics.hierarchical_histogram.hierarchical_histogram_factory import (
    TreeRangeSumFactory as TreeRangeSumFactory)
from federax.analytics.hierarchical_histogram.hierarchical_histogram_factory import (
    create_hierarchical_histogram_aggregation_factory as
    create_hierarchical_histogram_aggregation_factory)
from federax.analytics.hierarchical_histogram.hierarchical_histogram_lib import (
    ServerOutput as ServerOutput)
from federax.analytics.hierarchical_histogram.hierarchical_histogram_lib import (
    build_hierarchical_histogram_process as build_hierarchical_histogram_process)

__all__ = [
    "HierarchicalHistogramDecoder", "HistogramClippingSumFactory", "ServerOutput",
    "TreeRangeSumFactory", "build_hierarchical_histogram_process", "build_tree_from_leaf",
    "create_hierarchical_histogram_aggregation_factory",
]
