"""Baseline tasks for simulations (TFF's `tff.simulation.baselines`): data, preprocessing, model.

    from federax.simulation import baselines

    task = baselines.create_task('emnist', baselines.ClientSpec(num_epochs=1, batch_size=20),
                                 data_dir='../shared/data/femnist-leaf')
    model = task.model_fn()                                   # a FunctionalModel
    clients = task.datasets.sample_train_clients(10, random_seed=round_num)

Every task batches with `Dataset.masked_batch` (fixed shapes plus a bool 'mask'), and its
preprocessing functions take a `seed` so that runs can be replayed bit for bit.
"""

from federax.simulation.baselines import emnist as emnist
from federax.simulation.baselines import shakespeare as shakespeare
from federax.simulation.baselines import synthetic as synthetic
from federax.simulation.baselines._preprocessing import derive_seed as derive_seed
from federax.simulation.baselines.baseline_task import BaselineTask as BaselineTask
from federax.simulation.baselines.client_spec import ClientSpec as ClientSpec
from federax.simulation.baselines.registry import TASKS as TASKS
from federax.simulation.baselines.registry import TaskFactory as TaskFactory
from federax.simulation.baselines.registry import create_task as create_task
from federax.simulation.baselines.task_data import BaselineTaskDatasets as BaselineTaskDatasets
from federax.simulation.baselines.task_data import PreprocessFn as PreprocessFn

__all__ = [
    "BaselineTask", "BaselineTaskDatasets", "ClientSpec", "PreprocessFn", "TASKS",
    "TaskFactory", "create_task", "derive_seed", "emnist", "shakespeare", "synthetic",
]
