"""Learning tests run Keras on the JAX backend (set before anything imports keras)."""

import os

# Keras reads the backend once, at its first import; federax runs Keras models only on JAX.
os.environ["KERAS_BACKEND"] = "jax"
