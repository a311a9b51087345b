"""Templates for stateful federated processes: `IterativeProcess`, `MeasuredProcess`,
`AggregationProcess`."""

from federax.templates.aggregation_process import AggregationProcess as AggregationProcess
from federax.templates.iterative_process import IterativeProcess as IterativeProcess
from federax.templates.measured_process import MeasuredProcess as MeasuredProcess
from federax.templates.measured_process import MeasuredProcessOutput as MeasuredProcessOutput

__all__ = ["AggregationProcess", "IterativeProcess", "MeasuredProcess", "MeasuredProcessOutput"]
