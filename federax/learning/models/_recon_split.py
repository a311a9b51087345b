"""`DatasetSplitFn`: which of a client's batches reconstruct and which train afterwards (TFF's)."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

from federax.core.errors import error


class DatasetSplitFn(NamedTuple):
  """TFF's `ReconstructionDatasetSplitFn`, as data: the algorithms compile it into their loops.

  A client's batches `b0, b1, ...` are split as TFF's `build_dataset_split_fn` does: with
  `split_dataset`, even-indexed batches reconstruct and odd-indexed ones train after
  reconstruction (or are evaluated); otherwise both stages see every batch. Each stage then
  repeats its batches `*_epochs` times and stops after `*_steps_max` steps (over all epochs).
  Called on a list of batches (or a `Dataset`), it returns the two lists, on the host.

  Attributes:
    recon_epochs, recon_steps_max, post_recon_epochs, post_recon_steps_max, split_dataset:
      see `build_dataset_split_fn`.

  Example:
    >>> split = fx.learning.reconstruction.build_dataset_split_fn(split_dataset=True)
    >>> split([0, 1, 2, 3, 4])
    ([0, 2, 4], [1, 3])
  """
  recon_epochs: int = 1
  recon_steps_max: Optional[int] = None
  post_recon_epochs: int = 1
  post_recon_steps_max: Optional[int] = None
  split_dataset: bool = False

  def __call__(self, client_dataset: Any) -> tuple[list, list]:
    batches = list(client_dataset)
    recon = batches[0::2] if self.split_dataset else batches
    post = batches[1::2] if self.split_dataset else batches

    def stage(part: list, epochs: int, steps_max: Optional[int]) -> list:
      repeated = part * epochs
      return repeated if steps_max is None else repeated[:steps_max]

    return (stage(recon, self.recon_epochs, self.recon_steps_max),
            stage(post, self.post_recon_epochs, self.post_recon_steps_max))


def build_dataset_split_fn(recon_epochs: int = 1, recon_steps_max: Optional[int] = None,
                           post_recon_epochs: int = 1, post_recon_steps_max: Optional[int] = None,
                           split_dataset: bool = False) -> DatasetSplitFn:
  """TFF's `ReconstructionModel.build_dataset_split_fn`, with its arguments and defaults.

  Args:
    recon_epochs: passes over the reconstruction batches (>= 1).
    recon_steps_max: at most this many reconstruction steps over all passes (None: no limit).
    post_recon_epochs: passes over the post-reconstruction batches (>= 1).
    post_recon_steps_max: at most this many post-reconstruction steps (None: no limit).
    split_dataset: even-indexed batches reconstruct, odd-indexed ones come after; else both
      stages use every batch.

  Returns:
    A `DatasetSplitFn`.

  Raises:
    ValueError: if an epoch count is below 1 or a step limit below 0.

  Example:
    >>> split = fx.learning.reconstruction.build_dataset_split_fn(
    ...     recon_epochs=2, post_recon_steps_max=1)
    >>> split(['a', 'b'])
    (['a', 'b', 'a', 'b'], ['a'])
  """
  where = "build_dataset_split_fn"
  for name, value in (("recon_epochs", recon_epochs), ("post_recon_epochs", post_recon_epochs)):
    if not (isinstance(value, int) and value >= 1):
      raise error(ValueError, where, f"{name} must be an integer >= 1.", expected=">= 1",
                  actual=repr(value))
  for name, value in (("recon_steps_max", recon_steps_max),
                      ("post_recon_steps_max", post_recon_steps_max)):
    if value is not None and not (isinstance(value, int) and value >= 0):
      raise error(ValueError, where, f"{name} must be None or an integer >= 0.",
                  expected="None or >= 0", actual=repr(value))
  return DatasetSplitFn(recon_epochs, recon_steps_max, post_recon_epochs, post_recon_steps_max,
                        bool(split_dataset))


def as_split_fn(dataset_split_fn: Any, where: str) -> DatasetSplitFn:
  """`dataset_split_fn`, or TFF's default (`split_dataset=True`) for None.

  Raises:
    TypeError: for anything but a `DatasetSplitFn` (a Python function of a dataset cannot run
      inside the compiled client loop).
  """
  if dataset_split_fn is None:
    return build_dataset_split_fn(split_dataset=True)
  if not isinstance(dataset_split_fn, DatasetSplitFn):
    raise error(TypeError, where, "dataset_split_fn must be built by build_dataset_split_fn: the "
                "split runs inside the compiled client loop, not as a function of a dataset.",
                expected="fx.learning.reconstruction.build_dataset_split_fn(...)",
                actual=f"{dataset_split_fn!r}",
                hint="its arguments cover TFF's splits: epochs, step limits, even/odd batches")
  return dataset_split_fn
