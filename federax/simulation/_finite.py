"""Non-finite features in in-memory client data: refused, naming the client, or dropped.

A NaN or Inf in a client's features does not always reach its update: max pooling never picks
a -inf, a ReLU turns it into 0, and the client would train as if its data were clean. So
`ClientData.from_dict` and `from_arrays` look at the data they are given, once, where the
client is known (the file readers refuse such values in files: `formats.DataFormatError`).
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import jax
import numpy as np

from federax.core.errors import error

POLICIES = ("raise", "drop")
HINT = ('fix the data, or pass non_finite="drop" to leave the examples that hold them out '
        "(with a warning naming their clients)")


class NonFiniteWarning(UserWarning):
  """Examples with a NaN or Inf feature were dropped (`non_finite="drop"`)."""


def check_policy(where: str, non_finite: Any) -> None:
  if non_finite not in POLICIES:
    raise error(ValueError, where, "non_finite must say what to do with a NaN or Inf feature.",
                expected=" or ".join(map(repr, POLICIES)), actual=repr(non_finite))


def _float_leaves(features: Any) -> list[tuple[str, np.ndarray]]:
  return [(jax.tree_util.keystr(path) or "<element>", np.asarray(leaf))
          for path, leaf in jax.tree_util.tree_leaves_with_path(features)
          if np.issubdtype(np.asarray(leaf).dtype, np.inexact) and np.ndim(leaf) >= 1]


def bad_rows(features: Any) -> tuple[Optional[np.ndarray], list[str]]:
  """(`bool[n]`, True for each example with a NaN or Inf in a floating-point feature, and the
  features holding them), or (None, []) when every value is finite: one pass, no per-row loop.
  """
  bad, names = None, []
  for name, leaf in _float_leaves(features):
    if leaf.size and not np.isfinite(leaf).all():
      rows = ~np.isfinite(leaf).reshape(leaf.shape[0], -1).all(axis=1)
      bad = rows if bad is None else bad | rows
      names.append(name)
  return bad, names


def refuse(where: str, client_id: str, bad: np.ndarray, names: list[str]) -> Exception:
  count, first = int(bad.sum()), int(np.flatnonzero(bad)[0])
  return error(ValueError, where, f"client {client_id!r} has {count} of {bad.size} examples "
               f"with a NaN or Inf in {', '.join(names)} (the first: example {first}).",
               expected="finite floating-point features", hint=HINT)


def warn_dropped(where: str, dropped: list[tuple[str, int, int]]) -> None:
  """One warning for all clients that lost examples: `(client_id, dropped, of)` each."""
  if not dropped:
    return
  shown = ", ".join(f"{cid!r} ({k} of {n})" for cid, k, n in dropped[:10])
  more = f" and {len(dropped) - 10} more" if len(dropped) > 10 else ""
  total = sum(k for _, k, _ in dropped)
  warnings.warn(f"{where}: dropped {total} examples with a NaN or Inf feature from "
                f"{len(dropped)} clients: {shown}{more}.", NonFiniteWarning, stacklevel=3)


def keep_rows(features: Any, keep: np.ndarray) -> Any:
  return jax.tree_util.tree_map(lambda a: np.asarray(a)[keep], features)
