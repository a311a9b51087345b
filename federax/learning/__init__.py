"""Federated learning: models, optimizers, templates, algorithms, programs (TFF's `tff.learning`)."""

from federax.learning import algorithms as algorithms
from federax.learning import metrics as metrics
from federax.learning import models as models
from federax.learning import optimizers as optimizers
from federax.learning import programs as programs
from federax.learning import templates as templates
from federax.learning._weighting import ClientWeighting as ClientWeighting

__all__ = ["algorithms", "metrics", "models", "optimizers", "programs", "templates", "ClientWeighting"]
