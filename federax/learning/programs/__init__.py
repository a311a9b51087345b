"""Training programs (TFF's `tff.learning.programs`): the loop around a `LearningProcess`.

`train_model` runs training rounds with client sampling, periodic federated evaluation,
checkpoints and metrics release, resumable from its program state manager; it is
`fx.program.run_training_process` with learning-specific wiring.
"""

from federax.learning.programs.evaluation import build_evaluation_fn as build_evaluation_fn
from federax.learning.programs.training_program import ClientDataSource as ClientDataSource
from federax.learning.programs.training_program import EvaluationManager as EvaluationManager
from federax.learning.programs.training_program import train_model as train_model

__all__ = ["ClientDataSource", "EvaluationManager", "build_evaluation_fn", "train_model"]
