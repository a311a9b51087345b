"""Templates for stateful federated processes: `IterativeProcess`, `MeasuredProcess`,
`AggregationProcess`, `EstimationProcess`, and their compositions."""

from federax.templates.aggregation_process import AggregationProcess as AggregationProcess
from federax.templates.composition import (
    chain_measured_processes as chain_measured_processes)
from federax.templates.composition import (
    concatenate_measured_processes as concatenate_measured_processes)
from federax.templates.estimation_process import EstimationProcess as EstimationProcess
from federax.templates.iterative_process import IterativeProcess as IterativeProcess
from federax.templates.measured_process import MeasuredProcess as MeasuredProcess
from federax.templates.measured_process import MeasuredProcessOutput as MeasuredProcessOutput

__all__ = [
    "AggregationProcess", "EstimationProcess", "IterativeProcess", "MeasuredProcess",
    "MeasuredProcessOutput", "chain_measured_processes", "concatenate_measured_processes",
]
