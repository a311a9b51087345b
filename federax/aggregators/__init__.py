"""Composable aggregation factories: `create(value_type[, weight_type]) -> AggregationProcess`."""

from federax.aggregators.factory import AggregationFactory as AggregationFactory
from federax.aggregators.factory import AggregationProcess as AggregationProcess
from federax.aggregators.factory import (
    UnweightedAggregationFactory as UnweightedAggregationFactory)
from federax.aggregators.factory import WeightedAggregationFactory as WeightedAggregationFactory
from federax.aggregators.mean import MeanFactory as MeanFactory
from federax.aggregators.mean import UnweightedMeanFactory as UnweightedMeanFactory
from federax.aggregators.secure import SecureModularSumFactory as SecureModularSumFactory
from federax.aggregators.secure import SecureSumFactory as SecureSumFactory
from federax.aggregators.secure import secure_quantized_sum as secure_quantized_sum
from federax.aggregators.sum_factory import SumFactory as SumFactory

__all__ = [
    "AggregationFactory", "AggregationProcess", "UnweightedAggregationFactory",
    "WeightedAggregationFactory", "MeanFactory", "UnweightedMeanFactory", "SumFactory",
    "SecureSumFactory", "SecureModularSumFactory", "secure_quantized_sum",
]
