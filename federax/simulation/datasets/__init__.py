"""Federated data sets of the field, loaded natively: EMNIST, Shakespeare, Stack Overflow, ..."""

from federax.simulation.datasets import cifar100 as cifar100
from federax.simulation.datasets import download as download
from federax.simulation.datasets import emnist as emnist
from federax.simulation.datasets import femnist as femnist
from federax.simulation.datasets import movielens as movielens
from federax.simulation.datasets import shakespeare as shakespeare
from federax.simulation.datasets import stackoverflow as stackoverflow
from federax.simulation.datasets import synthetic as synthetic

__all__ = [
    "cifar100",
    "download",
    "emnist",
    "femnist",
    "movielens",
    "shakespeare",
    "stackoverflow",
    "synthetic",
]
