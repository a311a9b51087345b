"""Models as weights plus pure functions (TFF's `tff.learning.models`), and Keras/Flax wrappers.

    from federax.learning import models

    model = models.from_keras_model(keras_model, keras.losses.SparseCategoricalCrossentropy(),
                                    input_spec=dataset.element_spec,
                                    metrics=[keras.metrics.SparseCategoricalAccuracy()])
    out = model.forward_pass(model.initial_weights, batch, training=True, key=key)

Keras (JAX backend) and Flax are optional extras, imported only when a wrapper is called.
"""

from federax.learning.models import metrics as metrics
from federax.learning.models._flax_linen import from_linen_module as from_linen_module
from federax.learning.models._flax_nnx import from_nnx_module as from_nnx_module
from federax.learning.models._common import BatchOutput as BatchOutput
from federax.learning.models._functional import FunctionalModel as FunctionalModel
from federax.learning.models._functional import PredictOutput as PredictOutput
from federax.learning.models._keras import from_keras_model as from_keras_model
from federax.learning.models._keras_functional import (
    functional_model_from_keras as functional_model_from_keras)
from federax.learning.models._recon_split import DatasetSplitFn as DatasetSplitFn
from federax.learning.models._reconstruction import (
    ReconstructionBatchOutput as ReconstructionBatchOutput)
from federax.learning.models._reconstruction import ReconstructionModel as ReconstructionModel
from federax.learning.models._weights import ModelWeights as ModelWeights

__all__ = [
    "BatchOutput", "DatasetSplitFn", "FunctionalModel", "ModelWeights", "PredictOutput",
    "ReconstructionBatchOutput", "ReconstructionModel", "from_keras_model",
    "from_linen_module", "functional_model_from_keras", "from_nnx_module", "metrics",
]
