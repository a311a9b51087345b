"""Templates for stateful federated processes: `IterativeProcess`, `MeasuredProcess`."""

from federax.templates.iterative_process import IterativeProcess as IterativeProcess
from federax.templates.measured_process import MeasuredProcess as MeasuredProcess
from federax.templates.measured_process import MeasuredProcessOutput as MeasuredProcessOutput

__all__ = ["IterativeProcess", "MeasuredProcess", "MeasuredProcessOutput"]
