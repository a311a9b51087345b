"""Program-state leaves to and from NumPy arrays that `np.savez` stores without pickle."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax
import ml_dtypes
import numpy as np

# Python scalar types a leaf may be, by the manifest's `kind` (bool before int: bool is an int).
_PYTHON_KINDS = {bool: "bool", int: "int", float: "float", complex: "complex", str: "str",
                 bytes: "bytes"}
_SUPPORTED = ("NumPy arrays and scalars, JAX arrays (typed PRNG keys included) and Python "
              "bool/int/float/complex/str/bytes")


@dataclasses.dataclass(frozen=True)
class LeafSpec:
  """What the manifest records about one leaf.

  Attributes:
    path: the leaf's `jax.tree_util.keystr` path, e.g. `.global_model_weights.trainable[0]`.
    dtype: the stored array's dtype name (`float32`, `bfloat16`, `<U5`; `uint32` key data).
    shape: the stored array's shape (for a PRNG key array, its key data's shape).
    kind: `ndarray` (NumPy or JAX array, NumPy scalar), a Python type (`int`, `float`, `bool`,
      `complex`, `str`, `bytes`), or `key<impl>` for a typed PRNG key array (e.g.
      `key<threefry2x32>`), stored as its `jax.random.key_data`.
  """

  path: str
  dtype: str
  shape: tuple[int, ...]
  kind: str

  def to_json(self) -> dict[str, Any]:
    return {"path": self.path, "dtype": self.dtype, "shape": list(self.shape), "kind": self.kind}

  @classmethod
  def from_json(cls, entry: Any) -> LeafSpec:
    """Raises `ValueError` (with the entry) if `entry` is not a well-formed leaf record."""
    try:
      spec = cls(str(entry["path"]), str(entry["dtype"]),
                 tuple(int(d) for d in entry["shape"]), str(entry["kind"]))
    except (KeyError, TypeError, ValueError) as e:
      raise ValueError(f"malformed leaf entry {entry!r} ({e!r})") from None
    resolve_dtype(spec.dtype)
    return spec

  def describe(self) -> str:
    shape = ",".join(map(str, self.shape))
    what = f"{self.dtype}[{shape}]"
    return what if self.kind == "ndarray" else f"{self.kind} stored as {what}"


def resolve_dtype(name: str) -> np.dtype:
  """The NumPy dtype named `name`, including ml_dtypes' (`bfloat16`, `float8_e4m3fn`, `int4`)."""
  try:
    return np.dtype(name)
  except TypeError:
    pass
  dtype = getattr(ml_dtypes, name, None)
  if dtype is None:
    raise ValueError(f"unknown dtype {name!r}")
  return np.dtype(dtype)


def _python_kind(x: Any) -> Optional[str]:
  """`int`, `float`, ... for Python scalars (and subclasses, e.g. `IntEnum`), else `None`."""
  if isinstance(x, np.generic):  # np.float64 subclasses float, np.str_ str: they are NumPy's.
    return None
  kind = _PYTHON_KINDS.get(type(x))
  if kind is None:
    kind = next((k for t, k in _PYTHON_KINDS.items() if isinstance(x, t)), None)
  return kind


def _is_key(x: Any) -> bool:
  dtype = getattr(x, "dtype", None)
  return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _key_impl(x: Any) -> str:
  if isinstance(x, jax.ShapeDtypeStruct):
    # No public accessor gives an abstract key's implementation; `key<fry>` names it briefly.
    impl = getattr(getattr(x.dtype, "_impl", None), "name", None)
    return str(impl) if impl else str(x.dtype)[len("key<"):-1]
  return str(jax.random.key_impl(x))


def encode(path: str, leaf: Any) -> tuple[np.ndarray, LeafSpec]:
  """Returns `(array to store, spec)` for `leaf`.

  Dtypes NumPy cannot store natively (ml_dtypes' `bfloat16`, ...) are stored as their raw bits
  (unsigned integers of the same width) and re-viewed on load.

  Raises:
    TypeError: if `leaf` is not one of the supported leaf types, is an object array, or is a
      Python int outside int64.
  """
  kind = _python_kind(leaf)
  if kind is not None:
    if kind == "int" and not -2**63 <= leaf < 2**63:
      raise TypeError(f"Program state leaf {path} is the Python int {leaf}, outside int64; "
                      "store it as a string or split it.")
    array = np.asarray(leaf)
  elif _is_key(leaf):
    kind = f"key<{_key_impl(leaf)}>"
    array = np.asarray(jax.random.key_data(leaf))
  elif isinstance(leaf, (np.ndarray, np.generic, jax.Array)):
    kind, array = "ndarray", np.asarray(leaf)
  else:
    raise TypeError(f"Program state leaf {path} is a {type(leaf).__module__}."
                    f"{type(leaf).__qualname__}; program state leaves must be {_SUPPORTED}. "
                    "Register custom containers as pytrees, or convert the value to an array.")
  if array.dtype.hasobject:
    raise TypeError(f"Program state leaf {path} is an object array (dtype=object); it cannot be "
                    "saved without pickle. Convert it to a numeric or string dtype.")
  spec = LeafSpec(path, str(array.dtype), tuple(array.shape), kind)
  if not array.flags.c_contiguous:
    array = array.copy(order="C")  # (np.ascontiguousarray would turn a 0-d array into 1-d.)
  if np.dtype(array.dtype.str) != array.dtype:  # Not native to the .npy format.
    array = array.view(f"u{array.dtype.itemsize}")
  return array, spec


def decode(stored: np.ndarray, spec: LeafSpec) -> np.ndarray:
  """The stored array as `spec` describes it; raises `ValueError` on any disagreement."""
  dtype = resolve_dtype(spec.dtype)
  if stored.dtype != dtype:
    if stored.dtype.kind != "u" or stored.dtype.itemsize != dtype.itemsize:
      raise ValueError(f"leaf {spec.path} is stored as {stored.dtype}, the manifest says "
                       f"{spec.dtype}")
    stored = stored.view(dtype)
  if stored.shape != spec.shape:
    raise ValueError(f"leaf {spec.path} is stored with shape {stored.shape}, the manifest says "
                     f"{spec.shape}")
  return stored


def _category(dtype: np.dtype) -> Optional[str]:
  """The Python scalar kind whose values `dtype` holds (ml_dtypes' `bfloat16` is a float)."""
  if dtype.kind in "US":
    return "str" if dtype.kind == "U" else "bytes"
  for kind, abstract in (("bool", jax.numpy.bool_), ("int", jax.numpy.integer),
                         ("float", jax.numpy.floating), ("complex", jax.numpy.complexfloating)):
    if jax.numpy.issubdtype(dtype, abstract):
      return kind
  return None


def _same_dtype(a: np.dtype, b: np.dtype) -> bool:
  # Strings of any length fit a string leaf: the length of a label is not structure.
  return a == b or (a.kind == b.kind and a.kind in "US")


def _describe_template(template: Any) -> str:
  if _python_kind(template) is not None:
    return f"a Python {type(template).__name__}"
  if _is_key(template):
    return f"key<{_key_impl(template)}>{list(template.shape)}"
  return f"{np.dtype(template.dtype)}[{','.join(map(str, np.shape(template)))}]"


def mismatch(spec: LeafSpec, template: Any) -> Optional[str]:
  """Why the saved leaf `spec` cannot be loaded into `template`'s leaf, or `None` if it can.

  Raises:
    TypeError: if `template` is not a supported leaf type.
  """
  dtype = resolve_dtype(spec.dtype)
  python_kind = _python_kind(template)
  if python_kind is not None:
    ok = (spec.shape == () and not spec.kind.startswith("key")
          and _category(dtype) == python_kind)
  elif _is_key(template):
    data_shape = jax.eval_shape(jax.random.key_data, template).shape
    ok = spec.kind == f"key<{_key_impl(template)}>" and spec.shape == tuple(data_shape)
  elif isinstance(template, (np.ndarray, np.generic, jax.Array, jax.ShapeDtypeStruct)):
    ok = (spec.kind in ("ndarray", *_PYTHON_KINDS.values())
          and _same_dtype(dtype, np.dtype(template.dtype))
          and spec.shape == tuple(np.shape(template)))
  else:
    raise TypeError(f"structure leaf {spec.path} is a {type(template).__module__}."
                    f"{type(template).__qualname__}; structure "
                    f"leaves must be {_SUPPORTED} or jax.ShapeDtypeStruct.")
  if ok:
    return None
  return f"the checkpoint has {spec.describe()}, the structure has {_describe_template(template)}"


def restore(array: np.ndarray, spec: LeafSpec, template: Any) -> Any:
  """`array` as a value of the template leaf's type (checked by `mismatch` beforehand).

  Python scalars come back as the template's Python type, NumPy arrays and scalars as NumPy,
  and JAX arrays (and `jax.ShapeDtypeStruct`s) as JAX arrays with the template's sharding.
  """
  if _python_kind(template) is not None:
    return type(template)(array.item())
  if isinstance(template, np.generic):
    return array[()]
  if isinstance(template, np.ndarray):
    return array if array.flags.writeable else array.copy()
  value = jax.random.wrap_key_data(array, impl=_key_impl(template)) if _is_key(template) else array
  sharding = getattr(template, "sharding", None)
  return jax.device_put(value, sharding) if sharding is not None else jax.numpy.asarray(value)
