"""The Ray runtime: the same intrinsics with the clients sharded over Ray worker processes.

`data` (`ClientIds`: client data loaded on the workers; scheduling by examples), `runtime`
(the `RayRuntime`: connecting, the workers, a call), `execution` (the driver's hooks and how
partial aggregates combine), `worker` (a worker's block of clients, run through the vectorized
runtime). Importing this package does not import Ray; making a runtime does.
"""

from federax.runtime.distributed.data import ClientIds as ClientIds
from federax.runtime.distributed.runtime import RayRuntime as RayRuntime

__all__ = ["ClientIds", "RayRuntime"]
