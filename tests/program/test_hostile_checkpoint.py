"""A checkpoint tampered so that a PRNG key's stored data has the wrong dtype is refused."""

import json
import re

import jax
import numpy as np
import pytest

from federax import program


@pytest.mark.parametrize("dtype", ["int32", "float32"])
def test_a_key_leaf_with_the_wrong_dtype_is_the_checkpoint_error(tmp_path, dtype):
  manager = program.FileProgramStateManager(tmp_path)
  state = {"w": np.arange(3, dtype=np.float32), "k": jax.random.key(0)}
  manager.save(state, 1)
  manifest_path = tmp_path / "program_state_1" / "manifest.json"
  manifest = json.loads(manifest_path.read_text())
  # uint32 key data re-viewed as another 4-byte dtype: the file still matches its sha256.
  (key_leaf,) = [leaf for leaf in manifest["leaves"] if leaf["path"] == "['k']"]
  assert key_leaf["dtype"] == "uint32"
  key_leaf["dtype"] = dtype
  manifest_path.write_text(json.dumps(manifest))
  before = {p.name: p.read_bytes() for p in (tmp_path / "program_state_1").iterdir()}
  with pytest.raises(program.ProgramStateError) as info:
    manager.load(1, state)
  message = str(info.value)
  assert str(tmp_path / "program_state_1") in message and "['k']" in message
  assert re.search(rf"key<threefry2x32> stored as {dtype}\[2\].*uint32", message), message
  after = {p.name: p.read_bytes() for p in (tmp_path / "program_state_1").iterdir()}
  assert after == before  # Left as it is.
  # An abstract structure (what `resume` passes) is refused the same way.
  with pytest.raises(program.ProgramStateError, match=re.escape("['k']")):
    manager.load(1, jax.eval_shape(lambda: state))
