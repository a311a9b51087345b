"""A cohort of client datasets read straight into its stacked, padded arrays.

The vectorized runtime trains on a cohort of `n` client datasets as one `[n, L, B, ...]` array
per feature (`L` the cohort's padded length). Read one client at a time, each client's batches
are gathered into arrays of their own, then copied into the cohort's. For the pipelines that
TFF's tutorials write (`...batch(B).map(fn)`, `masked_batch(B)`, with or without a `map`), this
module gathers every client's rows straight into the cohort's arrays and calls `fn` once per
batch on views of them; results that are still that memory (`fn` renamed, reshaped or selected
features, as `batch_format_fn` does) are kept where they lie, as `_batched_map` keeps them for
one dataset. The data is then copied once in all, and the padding zeroed once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import jax
import numpy as np

from federax.core.datasets import aligned_empty
from federax.data._batched_map import Outputs
from federax.data._elements import frozen, with_key
from federax.data._node import Node
from federax.data._plan import Plan, read, suffix_padded
from federax.data._transforms import Cache, Map


def padded_cohort(nodes: list[Node], padded_length: Callable[[int], int]
                  ) -> Optional[tuple[Any, Optional[np.ndarray], np.ndarray]]:
  """`(stacked, rows, lengths)` of the cohort (`CohortDataset.to_padded_cohort`), or None where a
  client's pipeline is not a batched plan (with or without a final `map`) or the clients'
  batches differ in their sources' structure, dtypes or shapes. `stacked` and `rows` are
  read-only when every read of these datasets gives them (`Node.immutable`)."""
  reads = [_batched_read(node) for node in nodes]
  if any(r is None for r in reads):
    return None
  plans = [plan for plan, _ in reads]
  if not _alike(plans) or len({fn is None for _, fn in reads}) > 1:
    return None  # Some clients' pipelines end with a `map`, others do not.
  longest = max(len(p) for p in plans)
  length = padded_length(longest)
  if length < longest:
    raise ValueError(f"to_padded_cohort(): padded_length({longest}) gave {length}, fewer "
                     "elements than the longest dataset has.")
  counts = [len(p) for p in plans]
  cohort = _read(reads, counts, length)
  if cohort is None:
    return None
  if all(node.immutable() for node in nodes):  # Every read gives these: say so.
    frozen(cohort)
  return cohort + (np.array(counts),)


def _read(reads: list[tuple[Plan, Any]], counts: list[int], length: int
          ) -> Optional[tuple[Any, Optional[np.ndarray]]]:
  """(stacked, rows): the sources gathered, then `map`'s results kept in place or copied."""
  plans = [plan for plan, _ in reads]
  sources, valid, short = _gather(plans, length)
  masked = plans[0].mask_key is not None
  gathered = sources + [valid] if masked else sources  # Where results may lie in place.
  # Batches kept as gathered have the gathered rows (a masked batch: all, and its mask).
  rows = valid if short and not masked else None
  elements = [_element(plan, sources, valid, i) for i, plan in enumerate(plans)]
  if all(fn is None for _, fn in reads):
    stacked = _assemble(elements, gathered, counts, length)
    return None if stacked is None else (stacked, rows)
  outputs = [Outputs(fn, plan, element) for (plan, fn), element in zip(reads, elements)]
  kept = _batch_results(outputs, gathered, length)
  if kept is not None:
    return kept, rows
  laid_out = [out.laid_out() for out in outputs]
  if any(plan is None for plan in laid_out):  # Structures or shapes the one-by-one read judges.
    return None
  stacked = _assemble([read(plan) for plan in laid_out], gathered, counts, length)
  return None if stacked is None else (
      stacked, _cohort_rows([_rows(plan) for plan in laid_out], counts, length))


def _batch_results(outputs: list[Outputs], sources: list[np.ndarray], length: int
                   ) -> Optional[Any]:
  """`map`'s results as the cohort's leaves when every result has its batch's rows (all `B`
  of a masked batch, the real ones of another), one structure, and per leaf one dtype and row
  shape: a source array reinterpreted where every result lies at its batch's place in it, else
  the results copied into a zeroed array. None otherwise (`laid_out` then judges them)."""
  treedef = outputs[0].treedefs[0]
  if any(d != treedef for out in outputs for d in out.treedefs):
    return None
  n, width = len(outputs), outputs[0].width
  leaves = []
  for k in range(treedef.num_leaves):
    first = outputs[0].flats[0][k]
    if first.ndim == 0:
      return None
    tail, dtype = first.shape[1:], first.dtype
    source = _source_at(first, sources, n * length * width)
    owner = None if source is None else source if source.base is None else source.base
    batch = _row_bytes(first) * width  # Bytes between batches in place.
    start = first.ctypes.data
    for i, out in enumerate(outputs):
      for b, (flat, rows) in enumerate(zip(out.flats, out.rows)):
        x = flat[k]
        if len(x) != rows or x.shape[1:] != tail or x.dtype != dtype:
          return None
        if owner is not None and (x.base is not owner or not x.flags.c_contiguous
                                  or x.ctypes.data != start + (i * length + b) * batch):
          owner = None  # Not all in place: copied.
    shape = (n, length, width) + tail
    leaves.append(_reinterpreted(source, shape, dtype) if owner is not None else
                  _results_copied(outputs, k, shape, dtype))
  return treedef.unflatten(leaves)


def _source_at(first: np.ndarray, sources: list[np.ndarray], rows: int
               ) -> Optional[np.ndarray]:
  """The source array that `first` starts, if it holds `rows` rows of `first`'s row shape."""
  start = first.ctypes.data
  source = next((s for s in sources if s.ctypes.data == start), None)
  return source if source is not None and source.nbytes == rows * _row_bytes(first) else None


def _row_bytes(x: np.ndarray) -> int:
  return x.dtype.itemsize * int(np.prod(x.shape[1:], dtype=np.int64))


def _results_copied(outputs: list[Outputs], k: int, shape: tuple, dtype: np.dtype
                    ) -> np.ndarray:
  out = aligned_empty(shape, dtype)
  out[...] = 0
  for i, client in enumerate(outputs):
    for b, flat in enumerate(client.flats):
      out[i, b, :len(flat[k])] = flat[k]
  return out


def _batched_read(node: Node) -> Optional[tuple[Plan, Any]]:
  """(the batched plan a client's batches are gathered from, the `map` function applied to
  them or None), or None when the pipeline ends otherwise."""
  if isinstance(node, Cache):
    return None  # Its read-only arrays, the same every call, stay where the runtime keeps them.
  fn = None
  if isinstance(node, Map):
    node, fn = node.parent, node.fn
  if not node.finite():
    return None
  plan = node.plan((), None)
  if plan is None or plan.laid_out or plan.idx.ndim != 2 or not len(plan) or not plan.leaves:
    return None
  if fn is not None and plan.mask_key is None and not suffix_padded(plan):
    return None  # `Map.plan` reads such batches element by element.
  if any(leaf.dtype.kind not in "biufc" for leaf in plan.leaves):
    return None  # Strings, objects: the host reads those.
  return plan, fn


def _alike(plans: list[Plan]) -> bool:
  first = plans[0]
  layout = lambda p: (p.treedef, p.mask_key, p.idx.shape[1],
                      [(x.dtype, x.shape[1:]) for x in p.leaves])
  return all(layout(p) == layout(first) for p in plans[1:])


def _gather(plans: list[Plan], length: int) -> tuple[list[np.ndarray], np.ndarray, bool]:
  """(every source leaf's batches, `[n, length, B, ...]`: client i's gathered rows in
  `[i, :m]`, zeros in its padding rows and after its batches; the real rows, bool
  `[n, length, B]`; whether a batch has padding rows)."""
  first = plans[0]
  shape = (len(plans), length, first.idx.shape[1])
  sources = [aligned_empty(shape + x.shape[1:], x.dtype) for x in first.leaves]
  valid = aligned_empty(shape, bool)
  any_short = False
  for i, plan in enumerate(plans):
    m = len(plan)
    real = valid[i, :m]
    np.greater_equal(plan.idx, 0, out=real)
    valid[i, m:] = False
    short = not real.all()
    any_short |= short
    rows = np.where(real, plan.idx, 0) if short else plan.idx
    for out, leaf in zip(sources, plan.leaves):
      np.take(leaf, rows, axis=0, out=out[i, :m], mode="clip")  # "clip": written unbuffered.
      if short:
        out[i, :m][~real] = 0
      out[i, m:] = 0
  return sources, valid, any_short


def _element(plan: Plan, sources: list[np.ndarray], valid: np.ndarray, i: int) -> Any:
  """Client i's batches as `gather(plan, plan.idx)` gives them, as views of the cohort's (a
  masked plan's mask is the real rows)."""
  m = len(plan)
  tree = plan.treedef.unflatten([x[i, :m] for x in sources])
  return tree if plan.mask_key is None else with_key(tree, plan.mask_key, valid[i, :m])


def _rows(plan: Plan) -> Optional[np.ndarray]:
  """A client's row mask as `to_padded_stacked` gives it: None when no batch is short."""
  if plan.mask_key is None and plan.idx.ndim == 2:
    valid = plan.idx >= 0
    return None if valid.all() else valid
  return None


def _assemble(results: list, sources: list[np.ndarray], counts: list[int],
              length: int) -> Optional[Any]:
  """The clients' stacked results as the cohort's `[n, length, ...]` leaves: a source array
  reinterpreted where every client's result lies at its place in it, else one copy."""
  flats = [jax.tree_util.tree_flatten(stacked) for stacked in results]
  treedef = flats[0][1]
  columns = list(zip(*(leaves for leaves, _ in flats)))
  if any(d != treedef for _, d in flats) or any(
      len({(x.dtype, x.shape[1:]) for x in column}) > 1 for column in columns):
    return None
  leaves = [_in_place(column, sources, length) for column in columns]
  for k, (leaf, column) in enumerate(zip(leaves, columns)):
    if leaf is None:
      first = column[0]
      leaf = leaves[k] = aligned_empty((len(column), length) + first.shape[1:], first.dtype)
      for i, (x, m) in enumerate(zip(column, counts)):
        leaf[i, :m] = x
        leaf[i, m:] = 0
  return treedef.unflatten(leaves)


def _in_place(column: tuple, sources: list[np.ndarray], length: int) -> Optional[np.ndarray]:
  """The source array that holds every client's result of this leaf at its place (client i's at
  the start of `[i]`), reinterpreted as the cohort's leaf; None if there is none."""
  first = column[0]
  n, tail, dtype = len(column), first.shape[1:], first.dtype
  source = _source_at(first, sources, n * length) if first.ndim else None
  if source is None:
    return None
  owner = source if source.base is None else source.base
  start, slot = first.ctypes.data, source.nbytes // n  # Bytes between clients.
  for i, x in enumerate(column):
    if (x.base is not owner or not x.flags.c_contiguous or x.ctypes.data != start + i * slot):
      return None
  return _reinterpreted(source, (n, length) + tail, dtype)


def _reinterpreted(source: np.ndarray, shape: tuple, dtype: np.dtype) -> np.ndarray:
  """`source`'s bytes as an array of `shape` and `dtype` (as many bytes)."""
  return source.reshape(-1).view(np.uint8).view(dtype).reshape(shape)


def _cohort_rows(rows: list[Optional[np.ndarray]], counts: list[int], length: int
                 ) -> Optional[np.ndarray]:
  """`[n, length, B]` row masks: each client's (all True where it padded none), False after
  its batches; None when no client padded a batch."""
  if all(r is None for r in rows):
    return None
  width = max(r.shape[1] for r in rows if r is not None)
  out = aligned_empty((len(rows), length, width), bool)
  out[...] = False
  for i, (r, m) in enumerate(zip(rows, counts)):
    out[i, :m, :width if r is None else r.shape[1]] = True if r is None else r
  return out
