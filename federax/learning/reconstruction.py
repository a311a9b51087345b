"""Federated Reconstruction's dataset split (TFF's `ReconstructionModel.build_dataset_split_fn`)."""

from federax.learning.models._recon_split import DatasetSplitFn as DatasetSplitFn
from federax.learning.models._recon_split import build_dataset_split_fn as build_dataset_split_fn
from federax.learning.models._reconstruction import ReconstructionModel as ReconstructionModel

__all__ = ["DatasetSplitFn", "ReconstructionModel", "build_dataset_split_fn"]
