"""TFF's `tff.backends` setters, mapped to federax runtimes (`fx.backends.native`, `.test`).

TFF code chooses where computations run with
`tff.backends.native.set_sync_local_cpp_execution_context(default_num_clients=...)`; here the
same call makes a vectorized runtime the default. `default_num_clients` means what it means in
TFF: the number of clients of a call with no argument placed at CLIENTS to count them from.
"""

from federax.runtime.backends import native as native
from federax.runtime.backends import test as test

__all__ = ["native", "test"]
