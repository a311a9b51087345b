"""Federated learning: models, optimizers, templates, algorithms, programs (TFF's `tff.learning`)."""

from federax.learning import algorithms as algorithms
from federax.learning import metrics as metrics
from federax.learning import models as models
from federax.learning import optimizers as optimizers
from federax.learning import programs as programs
from federax.learning import reconstruction as reconstruction
from federax.learning import sparse as sparse
from federax.learning import templates as templates
from federax.learning._weighting import ClientWeighting as ClientWeighting
from federax.learning.personalization_eval import (
    build_personalization_eval_computation as build_personalization_eval_computation)
from federax.learning.model_update_aggregator import (
    compression_aggregator as compression_aggregator)
from federax.learning.model_update_aggregator import (
    ddp_secure_aggregator as ddp_secure_aggregator)
from federax.learning.model_update_aggregator import dp_aggregator as dp_aggregator
from federax.learning.model_update_aggregator import (
    local_dp_aggregator as local_dp_aggregator)
from federax.learning.model_update_aggregator import robust_aggregator as robust_aggregator
from federax.learning.model_update_aggregator import secure_aggregator as secure_aggregator

__all__ = ["algorithms", "metrics", "models", "optimizers", "programs", "reconstruction", "sparse",
           "templates", "ClientWeighting", "build_personalization_eval_computation",
           "robust_aggregator", "compression_aggregator", "secure_aggregator", "dp_aggregator",
           "ddp_secure_aggregator", "local_dp_aggregator"]
