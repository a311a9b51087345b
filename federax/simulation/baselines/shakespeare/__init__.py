"""Shakespeare baseline task: next-character prediction with TFF's stacked-LSTM model."""

from federax.simulation.baselines.shakespeare import (
    char_prediction_models as char_prediction_models)
from federax.simulation.baselines.shakespeare import (
    char_prediction_preprocessing as char_prediction_preprocessing)
from federax.simulation.baselines.shakespeare.char_prediction_tasks import (
    create_character_prediction_task as create_character_prediction_task)
from federax.simulation.baselines.shakespeare.char_prediction_tasks import (
    create_character_prediction_task_from_datasets as
    create_character_prediction_task_from_datasets)
from federax.simulation.baselines.shakespeare.char_prediction_tasks import load_data as load_data

__all__ = [
    "char_prediction_models", "char_prediction_preprocessing",
    "create_character_prediction_task", "create_character_prediction_task_from_datasets",
    "load_data",
]
