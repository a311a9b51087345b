"""Learning templates: the four blocks of a learning algorithm and how they compose (TFF's)."""

from federax.learning.templates.client_state_process import (
    ClientStateLearningProcess as ClientStateLearningProcess)
from federax.learning.templates.client_state_process import (
    ClientStateLearningProcessOutput as ClientStateLearningProcessOutput)
from federax.learning.templates.client_works import ClientResult as ClientResult
from federax.learning.templates.client_works import ClientWorkProcess as ClientWorkProcess
from federax.learning.templates.composers import LearningAlgorithmState as LearningAlgorithmState
from federax.learning.templates.composers import (
    compose_learning_process as compose_learning_process)
from federax.learning.templates.distributors import DistributionProcess as DistributionProcess
from federax.learning.templates.distributors import (
    build_broadcast_process as build_broadcast_process)
from federax.learning.templates.finalizers import FinalizerProcess as FinalizerProcess
from federax.learning.templates.finalizers import (
    build_apply_optimizer_finalizer as build_apply_optimizer_finalizer)
from federax.learning.templates.learning_process import LearningProcess as LearningProcess
from federax.learning.templates.learning_process import (
    LearningProcessOutput as LearningProcessOutput)
from federax.learning.templates.model_delta_client_work import (
    build_model_delta_client_work as build_model_delta_client_work)

__all__ = [
    "ClientResult", "ClientStateLearningProcess", "ClientStateLearningProcessOutput",
    "ClientWorkProcess", "LearningAlgorithmState", "compose_learning_process",
    "DistributionProcess", "build_broadcast_process", "FinalizerProcess",
    "build_apply_optimizer_finalizer", "LearningProcess", "LearningProcessOutput",
    "build_model_delta_client_work",
]
