"""Composable aggregation factories: `create(value_type[, weight_type]) -> AggregationProcess`."""

from federax.aggregators.concat import concat_factory as concat_factory
from federax.aggregators.deterministic_discretization import (
    DeterministicDiscretizationFactory as DeterministicDiscretizationFactory)
from federax.aggregators.differential_privacy import (
    DifferentiallyPrivateFactory as DifferentiallyPrivateFactory)
from federax.aggregators.distributed_dp import (
    DistributedDpSumFactory as DistributedDpSumFactory)
from federax.aggregators.encoded import EncodedSumFactory as EncodedSumFactory
from federax.aggregators.local_dp import LocalDpFactory as LocalDpFactory
from federax.aggregators.factory import AggregationFactory as AggregationFactory
from federax.aggregators.factory import AggregationProcess as AggregationProcess
from federax.aggregators.factory import (
    UnweightedAggregationFactory as UnweightedAggregationFactory)
from federax.aggregators.factory import WeightedAggregationFactory as WeightedAggregationFactory
from federax.aggregators.mean import MeanFactory as MeanFactory
from federax.aggregators.mean import UnweightedMeanFactory as UnweightedMeanFactory
from federax.aggregators.measurements import add_measurements as add_measurements
from federax.aggregators.modular_clipping import (
    ModularClippingSumFactory as ModularClippingSumFactory)
from federax.aggregators.quantile_estimation import (
    PrivateQuantileEstimationProcess as PrivateQuantileEstimationProcess)
from federax.aggregators.quantile_estimation import (
    QuantileEstimatorQuery as QuantileEstimatorQuery)
from federax.aggregators.robust_rules import GeometricMedianFactory as GeometricMedianFactory
from federax.aggregators.robust_rules import KrumFactory as KrumFactory
from federax.aggregators.robust_rules import MedianFactory as MedianFactory
from federax.aggregators.robust_rules import TrimmedMeanFactory as TrimmedMeanFactory
from federax.aggregators.robust import clipping_factory as clipping_factory
from federax.aggregators.robust import zeroing_factory as zeroing_factory
from federax.aggregators.rotation import (
    DiscreteFourierTransformFactory as DiscreteFourierTransformFactory)
from federax.aggregators.rotation import HadamardTransformFactory as HadamardTransformFactory
from federax.aggregators.sampling import (
    UnweightedReservoirSamplingFactory as UnweightedReservoirSamplingFactory)
from federax.aggregators.secure import SecureModularSumFactory as SecureModularSumFactory
from federax.aggregators.secure import SecureSumFactory as SecureSumFactory
from federax.aggregators.secure import secure_quantized_sum as secure_quantized_sum
from federax.aggregators.stochastic_discretization import (
    StochasticDiscretizationFactory as StochasticDiscretizationFactory)
from federax.aggregators.sum_factory import SumFactory as SumFactory

__all__ = [
    "AggregationFactory", "AggregationProcess", "UnweightedAggregationFactory",
    "WeightedAggregationFactory", "MeanFactory", "UnweightedMeanFactory", "SumFactory",
    "PrivateQuantileEstimationProcess", "UnweightedReservoirSamplingFactory", "add_measurements",
    "clipping_factory", "zeroing_factory",
    "MedianFactory", "TrimmedMeanFactory", "KrumFactory", "GeometricMedianFactory",
    "EncodedSumFactory", "HadamardTransformFactory", "DiscreteFourierTransformFactory",
    "concat_factory", "DeterministicDiscretizationFactory", "StochasticDiscretizationFactory",
    "ModularClippingSumFactory",
    "SecureSumFactory", "SecureModularSumFactory", "secure_quantized_sum",
    "DifferentiallyPrivateFactory", "QuantileEstimatorQuery", "DistributedDpSumFactory",
    "LocalDpFactory",
]
