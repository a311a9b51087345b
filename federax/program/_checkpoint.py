"""One checkpoint directory: `state.npz` (the leaves) and `manifest.json` (what they are)."""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import sys
import zipfile
from typing import Any

import jax
import numpy as np

from federax.program import _leaves
from federax.program.program_state_manager import ProgramStateError

FORMAT = "federax.program_state"
FORMAT_VERSIONS = (1, 1)  # The oldest and newest format versions this federax reads.
STATE_FILE = "state.npz"
MANIFEST_FILE = "manifest.json"
_MAX_LISTED = 8


def write(directory: str, program_state: Any, version: int) -> None:
  """Writes `program_state` into the existing, empty `directory`, each file fsync'ed.

  Raises:
    TypeError: if a leaf cannot be saved (see `_leaves.encode`); nothing is written then.
  """
  flat, treedef = jax.tree_util.tree_flatten_with_path(program_state)
  arrays, specs = {}, []
  for i, (path, leaf) in enumerate(flat):
    array, spec = _leaves.encode(jax.tree_util.keystr(path), leaf)
    arrays[f"leaf_{i}"] = array
    specs.append(spec)
  state_path = os.path.join(directory, STATE_FILE)
  with open(state_path, "wb") as f:
    np.savez(f, **arrays)  # No object arrays reach here (`encode` refuses them): no pickle.
    f.flush()
    os.fsync(f.fileno())
  digest, size = _digest(state_path)
  manifest = {
      "format": FORMAT,
      "format_version": FORMAT_VERSIONS[1],
      "version": version,
      "federax_version": getattr(sys.modules.get("federax"), "__version__", "unknown"),
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "treedef": str(treedef),
      "leaves": [spec.to_json() for spec in specs],
      "size": size,
      "sha256": digest,
  }
  with open(os.path.join(directory, MANIFEST_FILE), "w", encoding="utf-8") as f:
    f.write(_manifest_text(manifest))
    f.flush()
    os.fsync(f.fileno())


def read(directory: str, structure: Any) -> Any:
  """Reads the checkpoint in `directory` into `structure`'s containers and leaf types.

  Raises:
    ProgramStateError: if the checkpoint is incomplete, damaged, of an unknown format or format
      version, or does not match `structure`. Nothing on disk is changed.
  """
  manifest = _read_manifest(directory)
  try:
    specs = [_leaves.LeafSpec.from_json(entry) for entry in manifest["leaves"]]
  except (TypeError, ValueError) as e:
    raise ProgramStateError(f"Checkpoint {directory}: {MANIFEST_FILE} is damaged: {e}.") from None
  stored = _read_state(directory, manifest, specs)
  flat, treedef = jax.tree_util.tree_flatten_with_path(structure)
  paths = [jax.tree_util.keystr(path) for path, _ in flat]
  _check_paths(directory, manifest, [spec.path for spec in specs], paths)
  problems = [(spec.path, _leaves.mismatch(spec, leaf) or _key_data_mismatch(spec, leaf))
              for spec, (_, leaf) in zip(specs, flat)]
  problems = [(path, why) for path, why in problems if why]
  if problems:
    lines = [f"Checkpoint {directory} does not match `structure` at leaf {problems[0][0]}: "
             f"{problems[0][1]}."]
    lines += [f"  also at {path}: {why}" for path, why in problems[1:_MAX_LISTED]]
    if len(problems) > _MAX_LISTED:
      lines.append(f"  ... and {len(problems) - _MAX_LISTED} more leaves")
    lines.append("  hint: pass a structure like the saved state (e.g. `process.initialize()` of "
                 "the process that saved it).")
    raise ProgramStateError("\n".join(lines))
  leaves = []
  for array, spec, (_, leaf) in zip(stored, specs, flat):
    try:
      leaves.append(_leaves.restore(array, spec, leaf))
    except (TypeError, ValueError) as e:  # Whatever the checks above missed: still ours.
      raise ProgramStateError(
          f"Checkpoint {directory}: leaf {spec.path} ({spec.describe()}) cannot be restored "
          f"into the structure's {_leaves._describe_template(leaf)}: {e}. The checkpoint is "
          "left as it is.") from None
  return jax.tree_util.tree_unflatten(treedef, leaves)


def _key_data_mismatch(spec: _leaves.LeafSpec, template: Any) -> str | None:
  """Why a PRNG key leaf's stored data cannot be the template key's data (its dtype), or None.

  `_leaves.mismatch` compares a key's implementation and shape; a manifest edited to another
  dtype of the same width (int32 for uint32) passes both and would reach JAX's own TypeError.
  """
  if not _leaves._is_key(template):
    return None
  wanted = np.dtype(jax.eval_shape(jax.random.key_data, template).dtype)
  if _leaves.resolve_dtype(spec.dtype) == wanted:
    return None
  return (f"the checkpoint has {spec.describe()}, the structure's "
          f"{_leaves._describe_template(template)} holds {wanted} key data")


def _manifest_text(manifest: dict[str, Any]) -> str:
  """JSON with one line per field and per leaf: readable, and diffable between versions."""
  lines = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in manifest.items() if k != "leaves"]
  leaves = [f"  {json.dumps(leaf)}" for leaf in manifest["leaves"]]
  return "{\n" + "\n".join(lines) + '\n "leaves": [\n' + ",\n".join(leaves) + "\n ]\n}\n"


def _digest(path: str) -> tuple[str, int]:
  sha, size = hashlib.sha256(), 0
  with open(path, "rb") as f:
    while chunk := f.read(1 << 20):
      sha.update(chunk)
      size += len(chunk)
  return sha.hexdigest(), size


def _read_manifest(directory: str) -> dict[str, Any]:
  path = os.path.join(directory, MANIFEST_FILE)
  try:
    with open(path, encoding="utf-8") as f:
      manifest = json.load(f)
  except FileNotFoundError:
    raise ProgramStateError(
        f"Checkpoint {directory} has no {MANIFEST_FILE}: it is incomplete, or was not written by "
        "federax's FileProgramStateManager. It is left as it is.") from None
  except (ValueError, UnicodeDecodeError) as e:
    raise ProgramStateError(f"Checkpoint {directory}: {MANIFEST_FILE} is not valid JSON ({e}); "
                            "the checkpoint is damaged. It is left as it is.") from None
  if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
    found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
    raise ProgramStateError(f"Checkpoint {directory}: {MANIFEST_FILE} has format {found!r}, "
                            f"expected {FORMAT!r}.")
  oldest, newest = FORMAT_VERSIONS
  format_version = manifest.get("format_version")
  if (not isinstance(format_version, int) or isinstance(format_version, bool)
      or not oldest <= format_version <= newest):
    advice = " (upgrade federax)" if isinstance(format_version, int) and format_version > newest \
        else ""
    raise ProgramStateError(f"checkpoint {directory} has format version {format_version!r}; this "
                            f"federax reads versions {oldest}..{newest}{advice}")
  for field, kind in (("leaves", list), ("size", int), ("sha256", str)):
    if not isinstance(manifest.get(field), kind):
      raise ProgramStateError(f"Checkpoint {directory}: {MANIFEST_FILE} lacks a valid {field!r} "
                              f"(expected a {kind.__name__}, found {manifest.get(field)!r}).")
  return manifest


def _read_state(directory: str, manifest: dict[str, Any],
                specs: list[_leaves.LeafSpec]) -> list[np.ndarray]:
  path = os.path.join(directory, STATE_FILE)
  try:
    with open(path, "rb") as f:
      data = f.read()
  except FileNotFoundError:
    raise ProgramStateError(f"Checkpoint {directory} has no {STATE_FILE}; the checkpoint is "
                            "incomplete. It is left as it is.") from None
  digest = hashlib.sha256(data).hexdigest()
  expected_size, expected_digest = manifest["size"], manifest["sha256"]
  if len(data) != expected_size or digest != expected_digest:
    what = (f"is {len(data)} bytes, its manifest says {expected_size} bytes (truncated?)"
            if len(data) != expected_size else f"has the expected size ({expected_size} bytes) "
            "but other contents")
    raise ProgramStateError(
        f"Checkpoint file {path} {what}: sha256 {digest}, expected {expected_digest}. The "
        "checkpoint is damaged and left as it is; load an older version (`get_versions()`) or "
        "remove this one.")
  try:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
      names = sorted(npz.files)
      expected = sorted(f"leaf_{i}" for i in range(len(specs)))
      if names != expected:
        raise ValueError(f"it holds {len(names)} arrays, the manifest lists {len(specs)} leaves")
      return [_leaves.decode(npz[f"leaf_{i}"], spec) for i, spec in enumerate(specs)]
  except (ValueError, OSError, zipfile.BadZipFile) as e:
    raise ProgramStateError(f"Checkpoint file {path} matches its manifest's sha256 but cannot be "
                            f"read back: {e}.") from None


def _check_paths(directory: str, manifest: dict[str, Any], saved: list[str],
                 wanted: list[str]) -> None:
  if saved == wanted:
    return
  first = next((i for i, (a, b) in enumerate(zip(saved, wanted)) if a != b),
               min(len(saved), len(wanted)))
  at = lambda paths: paths[first] if first < len(paths) else "(no more leaves)"  # noqa: E731
  only_saved = [p for p in saved if p not in set(wanted)]
  only_wanted = [p for p in wanted if p not in set(saved)]
  lines = [f"Checkpoint {directory} does not match `structure`: the checkpoint has {len(saved)} "
           f"leaves, the structure has {len(wanted)}; the first difference is leaf {first}: "
           f"{at(saved)} in the checkpoint, {at(wanted)} in the structure."]
  if only_saved:
    lines.append(f"  only in the checkpoint: {', '.join(only_saved[:_MAX_LISTED])}"
                 + (" ..." if len(only_saved) > _MAX_LISTED else ""))
  if only_wanted:
    lines.append(f"  only in the structure: {', '.join(only_wanted[:_MAX_LISTED])}"
                 + (" ..." if len(only_wanted) > _MAX_LISTED else ""))
  treedef = str(manifest.get("treedef", "?"))
  treedef = treedef if len(treedef) <= 400 else treedef[:400] + "..."
  lines.append(f"  the checkpoint's structure: {treedef}")
  lines.append("  hint: pass a structure like the saved state (e.g. `process.initialize()` of the "
               "process that saved it).")
  raise ProgramStateError("\n".join(lines))
