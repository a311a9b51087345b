"""Host computations in the runtimes: a local computation on strings, called in Python.

Its argument is handed over as host values (`federax.core.host.user_value`); its output is
checked against its result type and converted back exactly as a call's arguments are
(`_convert.argument`), so a string may come back as `str` or `bytes`, a sequence as a list or
a dataset, and a value that does not fit names the computation.
"""

from __future__ import annotations

from typing import Any

from federax.core.computations import ConcreteLocal
from federax.runtime import _convert


def call(concrete: ConcreteLocal, payload: Any, rep: _convert.Representation) -> Any:
  """`concrete` applied to `payload` on the host: the result's payload in `rep`'s form."""
  output = concrete.call_user(payload)
  return _convert.argument(output, concrete.result, rep, "result", concrete.name, {})
