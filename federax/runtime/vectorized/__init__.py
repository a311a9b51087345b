"""The vectorized runtime: a whole federated computation compiled into one XLA program.

Clients are the leading axis of every client value (`clients`); the intrinsics are array
operations on that axis (`execution`); client data enters stacked and padded, or streamed a
chunk at a time for large cohorts (`stacking`, `streaming`); how a call runs is one frozen
`Plan` decided in one place (`plan`); `runtime` holds the programs and the call's steps.
"""

from federax.runtime.vectorized.execution import VectorizedExecution as VectorizedExecution
from federax.runtime.vectorized.plan import CLIENT_LOOPS as CLIENT_LOOPS
from federax.runtime.vectorized.plan import MAP_FLOPS as MAP_FLOPS
from federax.runtime.vectorized.plan import SEQUENCE_LOOPS as SEQUENCE_LOOPS
from federax.runtime.vectorized.plan import Plan as Plan
from federax.runtime.vectorized.runtime import FallbackWarning as FallbackWarning
from federax.runtime.vectorized.runtime import VectorizedRuntime as VectorizedRuntime
from federax.runtime.vectorized.stacking import STREAM_BYTES as STREAM_BYTES

__all__ = ["VectorizedRuntime", "VectorizedExecution", "FallbackWarning", "Plan",
           "CLIENT_LOOPS", "SEQUENCE_LOOPS", "MAP_FLOPS", "STREAM_BYTES"]
