"""EMNIST baseline tasks: character recognition (62 classes) and digit recognition (10)."""

from federax.simulation.baselines.emnist import emnist_models as emnist_models
from federax.simulation.baselines.emnist import emnist_preprocessing as emnist_preprocessing
from federax.simulation.baselines.emnist.char_recognition_tasks import (
    CharacterRecognitionModel as CharacterRecognitionModel)
from federax.simulation.baselines.emnist.char_recognition_tasks import (
    create_character_recognition_task as create_character_recognition_task)
from federax.simulation.baselines.emnist.char_recognition_tasks import (
    create_character_recognition_task_from_datasets as
    create_character_recognition_task_from_datasets)
from federax.simulation.baselines.emnist.char_recognition_tasks import (
    create_digit_recognition_task as create_digit_recognition_task)
from federax.simulation.baselines.emnist.char_recognition_tasks import (
    get_character_recognition_model as get_character_recognition_model)
from federax.simulation.baselines.emnist.char_recognition_tasks import load_data as load_data

__all__ = [
    "CharacterRecognitionModel", "create_character_recognition_task",
    "create_character_recognition_task_from_datasets", "create_digit_recognition_task",
    "emnist_models", "emnist_preprocessing", "get_character_recognition_model", "load_data",
]
