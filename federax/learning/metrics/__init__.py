"""Metric aggregation across clients: `sum_then_finalize` (TFF's default)."""

from federax.learning.metrics.aggregators import sum_then_finalize as sum_then_finalize

__all__ = ["sum_then_finalize"]
