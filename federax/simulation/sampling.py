"""Client samplers under their former path: they moved to `federax.program.sampling`."""

from federax.program.sampling import PoissonSampler as PoissonSampler
from federax.program.sampling import UniformSampler as UniformSampler
from federax.program.sampling import (
    build_uniform_client_sampling_fn as build_uniform_client_sampling_fn)
from federax.program.sampling import build_uniform_sampling_fn as build_uniform_sampling_fn

__all__ = ["UniformSampler", "PoissonSampler", "build_uniform_sampling_fn",
           "build_uniform_client_sampling_fn"]
