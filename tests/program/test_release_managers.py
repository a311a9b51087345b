"""flatten, and the memory, logging, filtering and grouping release managers."""

import collections
import dataclasses
import logging
import subprocess
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax import program


class Metrics(NamedTuple):
  loss: float
  accuracy: float


@dataclasses.dataclass
class Counts:
  examples: int
  batches: int


def round_metrics():
  return collections.OrderedDict(
      distributor=(),
      client_work=collections.OrderedDict(train={"loss": np.float32(1.25),
                                                 "num_examples": np.int32(22)}),
      finalizer=collections.OrderedDict(update_non_finite=jnp.int32(0)))


def test_flatten_names_leaves_by_path():
  value = {"client_work": {"train": {"loss": 1.0}}, "m": Metrics(0.5, 0.75), "c": Counts(3, 1),
           "seq": [jnp.ones((1, 1), jnp.float32), np.arange(3)], "none": None,
           "struct": fx.Struct([("named", 1), (None, 2)])}
  flat = program.flatten(value)
  assert list(flat) == ["client_work/train/loss", "m/loss", "m/accuracy", "c/examples",
                        "c/batches", "seq/0", "seq/1", "struct/named", "struct/1"]
  assert type(flat["seq/0"]) is np.float32 and flat["seq/0"] == 1.0  # One element: a scalar.
  np.testing.assert_array_equal(flat["seq/1"], np.arange(3))
  assert program.flatten(np.float32(2.5)) == {"value": np.float32(2.5)}


def test_flatten_refuses_two_leaves_with_one_name():
  with pytest.raises(ValueError, match=r"two leaves of the released value are both named 'a/b'"):
    program.flatten({"a/b": 1, "a": {"b": 2}})


def test_memory_release_manager_keeps_copies():
  manager = program.MemoryReleaseManager()
  weights = np.zeros(3)
  manager.release({"w": weights}, 1)
  weights[0] = 5.0
  manager.values()[1]["w"][1] = 7.0
  manager.release({"loss": 0.5}, 2)
  manager.release({"loss": 0.25}, 2)
  values = manager.values()
  assert list(values) == [1, 2] and values[2] == {"loss": 0.25}
  np.testing.assert_array_equal(values[1]["w"], np.zeros(3))
  manager.remove_all()
  assert manager.values() == {}


def test_logging_release_manager_logs_one_info_line_per_release(caplog):
  manager = program.LoggingReleaseManager()
  with caplog.at_level(logging.INFO, logger="federax.program"):
    manager.release(round_metrics(), 3)
    manager.release({"w": np.arange(3.0), "name": "x"}, 4)
  assert [r.levelno for r in caplog.records] == [logging.INFO, logging.INFO]
  assert caplog.records[0].getMessage() == (
      "Released key=3: client_work/train/loss=1.25, client_work/train/num_examples=22, "
      "finalizer/update_non_finite=0")
  assert caplog.records[1].getMessage() == "Released key=4: w=[0.,1.,2.], name='x'"


def test_filtering_keeps_the_leaves_filter_fn_accepts():
  memory = program.MemoryReleaseManager()
  seen = []

  def keep(path):
    seen.append(path)
    return path[-1] in ("loss", 1)

  manager = program.FilteringReleaseManager(memory, keep)
  manager.release({"train": collections.OrderedDict(loss=1.0, acc=0.5), "eval": {"acc": 0.1},
                   "seq": [10, 11, 12], "struct": fx.Struct([("a", 1), ("loss", 2)])}, 1)
  assert ("train", "acc") in seen and ("seq", 2) in seen
  released = memory.values()[1]
  assert released == {"train": collections.OrderedDict(loss=1.0), "seq": [11],
                      "struct": released["struct"]}
  assert type(released["train"]) is collections.OrderedDict
  assert released["struct"].items() == (("loss", 2),)
  manager.release({"eval": {"acc": 0.1}}, 2)  # Nothing kept: nothing released.
  assert list(memory.values()) == [1]


def test_filtering_keeps_whole_namedtuples_and_refuses_to_split_them():
  memory = program.MemoryReleaseManager()
  program.FilteringReleaseManager(memory, lambda path: path[0] == "m").release(
      {"m": Metrics(0.5, 0.75), "other": 1}, 1)
  assert memory.values()[1] == {"m": Metrics(0.5, 0.75)}
  splitter = program.FilteringReleaseManager(memory, lambda path: path[-1] == "loss")
  with pytest.raises(program.NotFilterableError,
                     match=r"keeps only some fields of the Metrics at \('m',\), which cannot lose "
                           r"fields; dropped: accuracy"):
    splitter.release({"m": Metrics(0.5, 0.75)}, 2)


def test_filtering_validates_its_arguments():
  with pytest.raises(TypeError, match="`release_manager` must be a ReleaseManager, got list"):
    program.FilteringReleaseManager([], lambda path: True)
  with pytest.raises(TypeError, match="`filter_fn` must be callable, got str"):
    program.FilteringReleaseManager(program.MemoryReleaseManager(), "loss")


class Failing(program.ReleaseManager):

  def release(self, value, key):
    raise RuntimeError(f"disk full at {key}")


def test_grouping_releases_to_all_even_after_a_failure():
  first, last = program.MemoryReleaseManager(), program.MemoryReleaseManager()
  manager = program.GroupingReleaseManager([first, Failing(), last, Failing()])
  with pytest.raises(RuntimeError, match="disk full at 5") as info:
    manager.release({"loss": 1.0}, 5)
  assert info.value.__notes__ == ["Failing also failed: RuntimeError('disk full at 5')"]
  assert first.values() == last.values() == {5: {"loss": 1.0}}


def test_grouping_validates_its_managers():
  with pytest.raises(ValueError, match="`release_managers` must not be empty"):
    program.GroupingReleaseManager([])
  with pytest.raises(TypeError, match=r"release_managers\[1\] must be a ReleaseManager, got dict"):
    program.GroupingReleaseManager([program.MemoryReleaseManager(), {}])


def test_package_imports_without_tensorboardx():
  code = ("import sys; sys.modules['tensorboardX'] = None\n"
          "import federax.program as p\n"
          "try:\n  p.TensorBoardReleaseManager('unused')\n"
          "except ImportError as e:\n  print(e)\n")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={"JAX_PLATFORMS": "cpu", "PATH": ""})
  assert result.stdout.strip() == (
      "TensorBoardReleaseManager needs tensorboardX, which is not installed: "
      "`pip install tensorboardX` (or `pip install federax[tensorboard]`).")


def test_release_managers_accept_jax_pytrees():
  memory = program.MemoryReleaseManager()
  program.FilteringReleaseManager(memory, lambda path: True).release(
      jax.tree.map(jnp.asarray, {"a": [1.0, 2.0]}), 1)
  assert program.flatten(memory.values()[1]) == {"a/0": np.float32(1.0), "a/1": np.float32(2.0)}
