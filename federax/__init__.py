"""federax: federated learning and analytics on JAX.

    import federax as fx

    @fx.federated_computation(fx.FederatedType(np.float32, fx.CLIENTS))
    def get_average_temperature(sensor_readings):
      return fx.federated_mean(sensor_readings)

    get_average_temperature([68.5, 70.3, 69.8])  # 69.53333
"""

from federax.core import *  # noqa: F401,F403  (the Federated Core's __all__)
from federax.core import __all__ as _core_all
from federax import aggregators as aggregators
from federax import analytics as analytics
from federax import data as data
from federax import learning as learning
from federax import privacy as privacy
from federax import program as program
from federax import runtime as runtime
from federax import simulation as simulation
from federax import templates as templates
from federax import types as types
from federax.core import structure as structure
from federax.runtime import backends as backends

# The default runtime is set here, above the core, so the core needs no runtime to import.
runtime.set_default(runtime.vectorized())

__version__ = "0.1.0.dev0"

__all__ = [*_core_all, "aggregators", "analytics", "backends", "data", "learning", "privacy",
           "program", "runtime", "simulation", "structure", "templates", "types"]
