"""FileProgramStateManager: exact round trips, retention, crash safety, and refusals that teach."""

import collections
import dataclasses
import json
import os
import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from federax import program
from federax.program import _checkpoint


class Inner(NamedTuple):
  weights: list
  count: int


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Server:
  step: np.ndarray
  rng: jax.Array


def rich_state(seed=0):
  rng = np.random.default_rng(seed)
  return collections.OrderedDict(
      inner=Inner([rng.normal(size=(3, 2)).astype(np.float32), np.arange(4, dtype=np.int64)],
                  count=7 + seed),
      server=Server(step=np.int32(3 + seed), rng=jax.random.split(jax.random.key(seed), 2)),
      mixed={"bf16_np": np.asarray(rng.normal(size=5), ml_dtypes.bfloat16),
             "bf16_jax": jnp.asarray(rng.normal(size=(2, 2)), jnp.bfloat16),
             "jax_f32": jnp.asarray(rng.normal(size=3), jnp.float32),
             "np_scalar": np.float32(0.1 + seed), "np_bool": np.bool_(True),
             "py_float": 0.1 + seed, "py_bool": False, "py_str": f"label-{seed}",
             "py_complex": complex(1, seed), "py_bytes": b"\x00\xff",
             "labels": np.array(["a", "bcd"]), "rbg_key": jax.random.key(seed, impl="rbg"),
             "legacy_key": jax.random.PRNGKey(seed)},
      nothing=None, empty=(), empty_dict={})


def assert_same(actual, expected):
  assert jax.tree_util.tree_structure(actual) == jax.tree_util.tree_structure(expected)
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(actual)[0],
                          jax.tree_util.tree_leaves(expected)):
    where = jax.tree_util.keystr(path)
    assert type(a) is type(b) or (isinstance(a, jax.Array) and isinstance(b, jax.Array)), where
    if isinstance(b, jax.Array) and jax.dtypes.issubdtype(b.dtype, jax.dtypes.prng_key):
      assert a.dtype == b.dtype, where
      a, b = jax.random.key_data(a), jax.random.key_data(b)
    if isinstance(b, (np.ndarray, np.generic, jax.Array)):
      assert a.dtype == b.dtype and a.shape == b.shape, where
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=where)
    else:
      assert a == b, where


def test_round_trip_keeps_containers_leaf_types_and_bits(tmp_path):
  manager = program.FileProgramStateManager(tmp_path)
  saved = rich_state(seed=1)
  manager.save(saved, 1)
  loaded = manager.load(1, rich_state(seed=0))
  assert_same(loaded, saved)
  assert isinstance(loaded["mixed"]["bf16_jax"], jax.Array)
  assert isinstance(loaded["mixed"]["bf16_np"], np.ndarray)
  assert type(loaded["inner"].count) is int and type(loaded["mixed"]["py_float"]) is float
  # The typed keys draw the same numbers as the originals.
  np.testing.assert_array_equal(jax.random.uniform(loaded["server"].rng[1], (3,)),
                                jax.random.uniform(saved["server"].rng[1], (3,)))


def test_abstract_structure_from_eval_shape_gives_jax_arrays(tmp_path):
  manager = program.FileProgramStateManager(tmp_path)
  state = {"w": jnp.arange(6.0).reshape(2, 3), "key": jax.random.key(3)}
  manager.save(state, 0)
  loaded = manager.load(0, jax.eval_shape(lambda: state))
  assert isinstance(loaded["w"], jax.Array)
  np.testing.assert_array_equal(loaded["w"], state["w"])
  np.testing.assert_array_equal(jax.random.key_data(loaded["key"]),
                                jax.random.key_data(state["key"]))


def tiny_fed_avg():
  from federax.learning import algorithms, optimizers
  from federax.learning.models import FunctionalModel, ModelWeights

  def predict(weights, x, training):
    kernel, bias = weights.trainable
    return x @ kernel + bias

  def loss(logits, labels, sample_weight):
    per_example = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)[:, 0]
    return jnp.sum(per_example * sample_weight) / jnp.maximum(jnp.sum(sample_weight), 1.0)

  rng = np.random.default_rng(0)
  weights = ModelWeights([rng.normal(size=(3, 2)).astype(np.float32), np.zeros(2, np.float32)], [])
  spec = collections.OrderedDict(x=(np.float32, [4, 3]), y=(np.int32, [4]), mask=(np.bool_, [4]))
  model = FunctionalModel(initial_weights=weights, predict_on_batch_fn=predict, loss_fn=loss,
                          input_spec=spec)
  clients = [[collections.OrderedDict(x=rng.normal(size=(4, 3)).astype(np.float32),
                                      y=rng.integers(0, 2, 4).astype(np.int32),
                                      mask=np.arange(4) < n)] for n in (4, 2)]
  process = algorithms.build_weighted_fed_avg(model, optimizers.build_sgdm(0.1),
                                              optimizers.build_sgdm(1.0, momentum=0.9))
  return process, clients


def test_learning_algorithm_state_resumes_bit_for_bit(tmp_path):
  process, clients = tiny_fed_avg()
  manager = program.FileProgramStateManager(tmp_path)
  state, _ = process.next(process.initialize(), clients)
  manager.save(state, 1)
  loaded, version = manager.load_latest(process.initialize())
  assert version == 1 and type(loaded) is type(state)
  assert_same(loaded, state)
  assert_same(process.next(loaded, clients)[0], process.next(state, clients)[0])


def test_versions_are_numeric_ascending_and_ignore_everything_else(tmp_path):
  manager = program.FileProgramStateManager(tmp_path, keep_total=0)
  assert manager.get_versions() is None
  assert manager.load_latest({"x": 1}) == (None, 0)
  for version in (10, 2, 0):
    manager.save({"x": version}, version)
  (tmp_path / "program_state_9").write_text("a file, not a version")
  for name in ("program_state_x", "program_state_007", "program_state_-3", "other_5",
               ".tmp-program_state_11-abcdef12"):
    (tmp_path / name).mkdir()
  assert manager.get_versions() == [0, 2, 10]
  assert manager.load_latest({"x": 0}) == ({"x": 10}, 10)


@pytest.mark.parametrize("keep_total, keep_first, expected", [
    (3, True, [1, 5, 6]), (3, False, [4, 5, 6]), (0, True, [1, 2, 3, 4, 5, 6]),
    (-1, False, [1, 2, 3, 4, 5, 6]), (1, False, [6]), (2, True, [1, 6])])
def test_retention_follows_tff(tmp_path, keep_total, keep_first, expected):
  manager = program.FileProgramStateManager(tmp_path, keep_total=keep_total, keep_first=keep_first)
  for version in range(1, 7):
    manager.save({"x": np.float32(version)}, version)
  assert manager.get_versions() == expected
  assert sorted(os.listdir(tmp_path)) == [f"program_state_{v}" for v in sorted(map(str, expected))]


def test_keep_total_one_with_keep_first_is_refused():
  with pytest.raises(ValueError, match=r"keep_total=1 with keep_first=True would keep only the "
                                       r"first version and delete each newly saved one"):
    program.FileProgramStateManager("unused", keep_total=1)


def test_leftover_temp_dirs_are_ignored_then_removed_by_the_next_save(tmp_path):
  manager = program.FileProgramStateManager(tmp_path)
  manager.save({"x": 1}, 1)
  crashed = tmp_path / ".tmp-program_state_2-0badf00d"  # A save killed before its rename.
  crashed.mkdir()
  (crashed / "state.npz").write_bytes(b"partial")
  unrelated = tmp_path / ".tmp-other_2-0badf00d"  # Another prefix's: not ours to remove.
  unrelated.mkdir()
  assert manager.get_versions() == [1]
  assert manager.load_latest({"x": 0}) == ({"x": 1}, 1)
  manager.save({"x": 2}, 2)
  assert not crashed.exists() and unrelated.exists()
  assert manager.load(2, {"x": 0}) == {"x": 2}


def test_a_failed_save_leaves_no_trace(tmp_path, monkeypatch):
  manager = program.FileProgramStateManager(tmp_path)
  manager.save({"x": 1}, 1)
  before = sorted(os.listdir(tmp_path))

  def crash(src, dst):
    raise OSError("simulated crash before the rename")

  monkeypatch.setattr(os, "rename", crash)
  with pytest.raises(OSError, match="simulated crash"):
    manager.save({"x": 2}, 2)
  assert sorted(os.listdir(tmp_path)) == before


def test_unsavable_leaves_are_refused_by_path_before_writing(tmp_path):
  manager = program.FileProgramStateManager(tmp_path)
  with pytest.raises(TypeError, match=r"leaf \['b'\]\[1\] is an object array \(dtype=object\)"):
    manager.save({"a": 1, "b": [np.zeros(2), np.array([1, "x"], dtype=object)]}, 1)
  with pytest.raises(TypeError, match=r"leaf \['c'\] is a builtins.object; program state leaves "
                                      r"must be NumPy arrays"):
    manager.save({"c": object()}, 1)
  with pytest.raises(TypeError, match=r"leaf \['big'\] is the Python int 36893488147419103232, "
                                      r"outside int64"):
    manager.save({"big": 2**65}, 1)
  assert os.listdir(tmp_path) == []


def test_an_existing_version_is_never_overwritten(tmp_path):
  manager = program.FileProgramStateManager(tmp_path)
  manager.save({"x": 1}, 3)
  before = (tmp_path / "program_state_3" / "state.npz").read_bytes()
  with pytest.raises(program.ProgramStateExistsError,
                     match=r"Program state for version 3 is already saved at .*program_state_3; "
                           r"saved versions are never overwritten"):
    manager.save({"x": 2}, 3)
  assert (tmp_path / "program_state_3" / "state.npz").read_bytes() == before


@pytest.mark.parametrize("version, error, text", [
    (-1, ValueError, "expects a non-negative int, got -1"),
    (1.5, TypeError, "expects a non-negative int, got 1.5 (a float)"),
    (True, TypeError, "expects a non-negative int, got the bool True")])
def test_bad_versions_are_refused(tmp_path, version, error, text):
  with pytest.raises(error, match=re.escape(text)):
    program.FileProgramStateManager(tmp_path).save({"x": 1}, version)


def test_missing_version_names_the_saved_ones(tmp_path):
  manager = program.FileProgramStateManager(tmp_path)
  manager.save({"x": 1}, 4)
  with pytest.raises(program.ProgramStateNotFoundError,
                     match=r"No program state saved for version 5 in .*; saved versions: 4\."):
    manager.load(5, {"x": 0})


def saved_manager(tmp_path, versions=(1, 2)):
  manager = program.FileProgramStateManager(tmp_path)
  for version in versions:
    manager.save({"w": np.arange(64, dtype=np.float32) * version}, version)
  return manager


def test_a_truncated_state_file_is_refused_named_and_left_untouched(tmp_path):
  manager = saved_manager(tmp_path)
  state_file = tmp_path / "program_state_2" / "state.npz"
  size = state_file.stat().st_size
  state_file.write_bytes(state_file.read_bytes()[:size // 2])
  damaged = state_file.read_bytes()
  message = (rf"Checkpoint file {re.escape(str(state_file))} is {size // 2} bytes, its manifest "
             rf"says {size} bytes \(truncated\?\): sha256 [0-9a-f]{{64}}, expected [0-9a-f]{{64}}")
  with pytest.raises(program.ProgramStateError, match=message):
    manager.load(2, {"w": np.zeros(64, np.float32)})
  with pytest.raises(program.ProgramStateError, match=message):  # No silent fallback to 1.
    manager.load_latest({"w": np.zeros(64, np.float32)})
  with pytest.raises(program.ProgramStateExistsError):
    manager.save({"w": np.zeros(64, np.float32)}, 2)
  assert state_file.read_bytes() == damaged
  assert manager.get_versions() == [1, 2]
  np.testing.assert_array_equal(manager.load(1, {"w": np.zeros(64, np.float32)})["w"],
                                np.arange(64, dtype=np.float32))


def test_changed_contents_of_the_same_size_are_refused(tmp_path):
  manager = saved_manager(tmp_path, versions=(1,))
  state_file = tmp_path / "program_state_1" / "state.npz"
  data = bytearray(state_file.read_bytes())
  data[-100] ^= 0xFF
  state_file.write_bytes(bytes(data))
  with pytest.raises(program.ProgramStateError, match=r"has the expected size \(\d+ bytes\) but "
                                                      r"other contents: sha256"):
    manager.load(1, {"w": np.zeros(64, np.float32)})


def edit_manifest(tmp_path, version, **changes):
  path = tmp_path / f"program_state_{version}" / "manifest.json"
  manifest = json.loads(path.read_text())
  manifest.update(changes)
  path.write_text(json.dumps(manifest))


def test_a_later_format_version_is_refused_with_upgrade_advice(tmp_path):
  manager = saved_manager(tmp_path, versions=(1,))
  edit_manifest(tmp_path, 1, format_version=7)
  expected = (f"checkpoint {tmp_path / 'program_state_1'} has format version 7; this federax "
              "reads versions 1..1 (upgrade federax)")
  with pytest.raises(program.ProgramStateError, match=re.escape(expected)):
    manager.load(1, {"w": np.zeros(64, np.float32)})
  edit_manifest(tmp_path, 1, format_version=0)
  with pytest.raises(program.ProgramStateError, match=r"has format version 0; this federax "
                                                      r"reads versions 1\.\.1$"):
    manager.load(1, {"w": np.zeros(64, np.float32)})


def test_foreign_or_damaged_manifests_are_refused(tmp_path):
  manager = saved_manager(tmp_path, versions=(1, 2, 3))
  template = {"w": np.zeros(64, np.float32)}
  edit_manifest(tmp_path, 1, format="orbax")
  with pytest.raises(program.ProgramStateError, match=r"manifest.json has format 'orbax', "
                                                      r"expected 'federax.program_state'"):
    manager.load(1, template)
  (tmp_path / "program_state_2" / "manifest.json").write_text('{"format": ')
  with pytest.raises(program.ProgramStateError, match=r"manifest.json is not valid JSON"):
    manager.load(2, template)
  (tmp_path / "program_state_3" / "manifest.json").unlink()
  with pytest.raises(program.ProgramStateError, match=r"program_state_3 has no manifest.json: "
                                                      r"it is incomplete"):
    manager.load(3, template)


def test_a_different_structure_names_the_first_differing_leaf(tmp_path):
  manager = program.FileProgramStateManager(tmp_path)
  manager.save({"a": np.zeros((4, 3), np.float32), "b": [np.int32(1), 2.0]}, 1)
  with pytest.raises(program.ProgramStateError) as info:
    manager.load(1, {"a": np.zeros((4, 3), np.float32), "b": [np.int32(1), 2.0, 3.0]})
  message = str(info.value)
  assert ("the checkpoint has 3 leaves, the structure has 4; the first difference is leaf 3: "
          "(no more leaves) in the checkpoint, ['b'][2] in the structure.") in message
  assert "only in the structure: ['b'][2]" in message
  assert "the checkpoint's structure: PyTreeDef({'a': *, 'b': [*, *]})" in message
  with pytest.raises(program.ProgramStateError, match=re.escape(
      "does not match `structure` at leaf ['a']: the checkpoint has float32[4,3], the structure "
      "has float32[3,4].")):
    manager.load(1, {"a": np.zeros((3, 4), np.float32), "b": [np.int32(1), 2.0]})
  with pytest.raises(program.ProgramStateError, match=re.escape(
      "at leaf ['b'][0]: the checkpoint has int32[], the structure has int64[]")):
    manager.load(1, {"a": np.zeros((4, 3), np.float32), "b": [np.int64(1), 2.0]})
  with pytest.raises(program.ProgramStateError, match=re.escape(
      "at leaf ['b'][1]: the checkpoint has float stored as float64[], the structure has a "
      "Python int")):
    manager.load(1, {"a": np.zeros((4, 3), np.float32), "b": [np.int32(1), 2]})


def test_python_scalars_load_from_numpy_of_their_kind(tmp_path):
  manager = program.FileProgramStateManager(tmp_path)
  manager.save({"round": np.int32(5), "lr": np.float32(0.5)}, 1)
  loaded = manager.load(1, {"round": 0, "lr": 0.0})
  assert loaded == {"round": 5, "lr": 0.5}
  assert type(loaded["round"]) is int and type(loaded["lr"]) is float


def test_structure_leaves_of_unknown_types_are_refused(tmp_path):
  manager = program.FileProgramStateManager(tmp_path)
  manager.save({"x": 1}, 1)
  with pytest.raises(TypeError, match=r"structure leaf \['x'\] is a builtins.object; "
                                      r"structure leaves must be NumPy arrays"):
    manager.load(1, {"x": object()})


def test_on_disk_format(tmp_path):
  manager = program.FileProgramStateManager(tmp_path, prefix="ckpt_")
  manager.save({"w": jnp.ones(2, jnp.bfloat16), "k": jax.random.key(0)}, 12)
  directory = tmp_path / "ckpt_12"
  assert sorted(os.listdir(directory)) == ["manifest.json", "state.npz"]
  manifest = json.loads((directory / "manifest.json").read_text())
  assert manifest["format"] == "federax.program_state" and manifest["format_version"] == 1
  assert manifest["version"] == 12 and manifest["size"] == (directory / "state.npz").stat().st_size
  assert manifest["leaves"] == [
      {"path": "['k']", "dtype": "uint32", "shape": [2], "kind": "key<threefry2x32>"},
      {"path": "['w']", "dtype": "bfloat16", "shape": [2], "kind": "ndarray"}]
  with np.load(directory / "state.npz", allow_pickle=False) as npz:  # Readable without federax.
    assert npz["leaf_1"].dtype == np.uint16  # bfloat16's raw bits.
  assert _checkpoint.FORMAT_VERSIONS == (1, 1)


def test_jax_leaves_come_back_with_the_structure_leafs_sharding(tmp_path):
  if jax.device_count() < 2:
    pytest.skip("needs several devices (tests/conftest.py asks for four CPU devices)")
  mesh = jax.make_mesh((jax.device_count(),), ("clients",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("clients"))
  state = {"w": jax.device_put(jnp.arange(8.0 * jax.device_count()), sharding)}
  manager = program.FileProgramStateManager(tmp_path)
  manager.save(state, 1)
  loaded = manager.load(1, state)
  assert loaded["w"].sharding == sharding
  np.testing.assert_array_equal(loaded["w"], state["w"])


def test_a_version_saved_below_the_latest_survives_its_own_retention(tmp_path):
  manager = program.FileProgramStateManager(tmp_path, keep_total=2, keep_first=False)
  for version in (5, 6, 3):
    manager.save({"x": version}, version)
  assert manager.get_versions() == [3, 5, 6]
  manager.save({"x": 7}, 7)
  assert manager.get_versions() == [6, 7]
  manager.remove_all()
  assert manager.get_versions() is None and os.listdir(tmp_path) == []


def damage_leaf(tmp_path, **changes):
  manifest = json.loads((tmp_path / "program_state_1" / "manifest.json").read_text())
  manifest["leaves"][0].update(changes)
  return {"leaves": manifest["leaves"]}


@pytest.mark.parametrize("damage, message", [
    (lambda d: {"sha256": None}, r"manifest.json lacks a valid 'sha256' \(expected a str, found "
                                 r"None\)"),
    (lambda d: {"leaves": []}, r"state.npz matches its manifest's sha256 but cannot be read back: "
                               r"it holds 1 arrays, the manifest lists 0 leaves"),
    (lambda d: damage_leaf(d, shape="x"), r"manifest.json is damaged: malformed leaf entry "),
    (lambda d: damage_leaf(d, dtype="float99"), r"manifest.json is damaged: unknown dtype "
                                                r"'float99'"),
    (lambda d: damage_leaf(d, dtype="int64"), r"cannot be read back: leaf \['w'\] is stored as "
                                              r"float32, the manifest says int64"),
    (lambda d: damage_leaf(d, shape=[8, 8]), r"cannot be read back: leaf \['w'\] is stored with "
                                             r"shape \(64,\), the manifest says \(8, 8\)")])
def test_damaged_manifests_are_refused(tmp_path, damage, message):
  manager = saved_manager(tmp_path, versions=(1,))
  edit_manifest(tmp_path, 1, **damage(tmp_path))
  with pytest.raises(program.ProgramStateError, match=message):
    manager.load(1, {"w": np.zeros(64, np.float32)})


def test_a_missing_state_file_is_refused(tmp_path):
  manager = saved_manager(tmp_path, versions=(1,))
  (tmp_path / "program_state_1" / "state.npz").unlink()
  with pytest.raises(program.ProgramStateError, match=r"program_state_1 has no state.npz; the "
                                                      r"checkpoint is incomplete"):
    manager.load(1, {"w": np.zeros(64, np.float32)})


def test_constructor_arguments_are_checked(tmp_path):
  with pytest.raises(ValueError, match="`root_dir` must not be empty"):
    program.FileProgramStateManager("")
  with pytest.raises(ValueError, match=r"`prefix` must be a non-empty file name part, got 'a/b'"):
    program.FileProgramStateManager(tmp_path, prefix="a/b")
  (tmp_path / "file").write_text("")
  with pytest.raises(NotADirectoryError, match=r"root_dir .*file exists and is not a directory"):
    program.FileProgramStateManager(tmp_path / "file")
