"""The measurements' types of TFF 0.87's aggregators in the tuning tutorial, built with the
notebook's constants, for the notebook's model update (a 784x10 kernel and 10 biases) weighted
by a float32: one line `title :: type` per training in the notebook.

    benchmarks/peers/tff/.venv/bin/python \
        tests/tutorials/tff_reference/tuning_recommended_aggregators.py
"""
import collections
import math

import numpy as np
import tensorflow_federated as tff

A = tff.aggregators
MY_ZEROING_CONSTANT = 0.1
MY_SECAGG_BOUND = 10.0
MAX_WEIGHT = 121.0
MY_CLIPPING_CONSTANT = 0.25

median_estimate = A.PrivateQuantileEstimationProcess.no_noise(
    initial_estimate=1.0, target_quantile=0.5, learning_rate=0.2)
zeroing_norm = A.PrivateQuantileEstimationProcess.no_noise(
    initial_estimate=10.0, target_quantile=0.98, learning_rate=math.log(10), multiplier=2.0,
    increment=1.0)
clipping_norm = A.PrivateQuantileEstimationProcess.no_noise(
    initial_estimate=1.0, target_quantile=0.8, learning_rate=0.2)
secagg_bound = A.PrivateQuantileEstimationProcess.no_noise(
    initial_estimate=50.0, target_quantile=0.95, learning_rate=1.0, multiplier=2.0)


def compressed(threshold=20000):
  return A.MeanFactory(A.EncodedSumFactory.quantize_above_threshold(
      quantization_bits=8, threshold=threshold))


aggregators = collections.OrderedDict([
    ('weighted mean', A.MeanFactory()),
    ('clipping to the median norm', A.clipping_factory(median_estimate, A.MeanFactory())),
    ('zeroing at a constant', A.zeroing_factory(MY_ZEROING_CONSTANT, A.MeanFactory())),
    ('adaptive zeroing', A.zeroing_factory(zeroing_norm, A.MeanFactory())),
    ('adaptive clipping', A.clipping_factory(clipping_norm, A.MeanFactory())),
    ('compressed mean', compressed()),
    ('compressed mean, threshold 1000', compressed(1000)),
    ('secure mean, constant bound', A.MeanFactory(A.SecureSumFactory(MY_SECAGG_BOUND))),
    ('secure mean, adaptive bound', A.MeanFactory(A.SecureSumFactory(secagg_bound))),
    ('secure mean and weights', A.MeanFactory(
        value_sum_factory=A.SecureSumFactory(secagg_bound),
        weight_sum_factory=A.SecureSumFactory(upper_bound_threshold=MAX_WEIGHT,
                                              lower_bound_threshold=0.0))),
    ('zeroing, clipping, compressed mean', A.zeroing_factory(
        MY_ZEROING_CONSTANT, A.clipping_factory(MY_CLIPPING_CONSTANT, compressed()))),
    ('fx.learning.robust_aggregator()', tff.learning.robust_aggregator()),
    ('fx.learning.compression_aggregator()', tff.learning.compression_aggregator()),
    ('fx.learning.secure_aggregator()', tff.learning.secure_aggregator()),
])
value_type = tff.to_type([tff.TensorType(np.float32, [784, 10]),
                          tff.TensorType(np.float32, [10])])
for title, factory in aggregators.items():
  process = factory.create(value_type, tff.TensorType(np.float32))
  print(title, '::', process.next.type_signature.result.measurements.member)
