"""Federated learning: models, optimizers, templates and algorithms (TFF's `tff.learning`)."""

from federax.learning import algorithms as algorithms
from federax.learning import metrics as metrics
from federax.learning import models as models
from federax.learning import optimizers as optimizers
from federax.learning import templates as templates
from federax.learning._weighting import ClientWeighting as ClientWeighting

__all__ = ["algorithms", "metrics", "models", "optimizers", "templates", "ClientWeighting"]
