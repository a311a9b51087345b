"""`tf.train.Example` protos, encoded and decoded from the protobuf wire format without TensorFlow.

TFF's SQLite data sets store each example as a serialized `tf.train.Example`:

    Example   { Features features = 1; }
    Features  { map<string, Feature> feature = 1; }
    Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                             Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }
    FloatList { repeated float value = 1 [packed = true]; }
    Int64List { repeated int64 value = 1 [packed = true]; }

A map is encoded as repeated entries `{string key = 1; Feature value = 2;}`. Parsers must accept
packed and unpacked repeated scalars alike (protobuf's rule), and int64 is a plain varint in two's
complement (no zigzag). This module decodes that subset, vectorizing the packed arrays with NumPy,
and encodes it (tests build fixtures with it; it is also how to write such files).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Union

import numpy as np

from federax.simulation.formats.errors import DataFormatError

# Wire types.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_UINT64_MASK = (1 << 64) - 1
_MAX_FIELD = (1 << 29) - 1

FeatureValue = Union[list[bytes], np.ndarray]


class FixedLenFeature(NamedTuple):
  """How to read one feature, like `tf.io.FixedLenFeature`: its shape and the dtype wanted.

  `dtype` may be `np.str_` (from a bytes_list, decoded as UTF-8), `np.bytes_` (raw bytes), any
  floating dtype (from a float_list) or any integer or bool dtype (from an int64_list).
  """

  shape: tuple[int, ...]
  dtype: Any


class ExampleParseError(DataFormatError):
  """A byte string is not a valid serialized `tf.train.Example` (or does not fit the parse spec).

  The only error the decoder raises for bad bytes, whatever they are.
  """


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
  result = shift = 0
  while True:
    if pos >= len(data):
      raise ExampleParseError(
          f"Truncated varint at byte {pos} of {len(data)}: the serialized Example is cut short "
          "or is not a tf.train.Example.")
    byte = data[pos]
    pos += 1
    result |= (byte & 0x7F) << shift
    if not byte & 0x80:
      return result, pos
    shift += 7
    if shift >= 70:
      raise ExampleParseError(f"Varint longer than 10 bytes at byte {pos}: corrupt data.")


def _fields(data: bytes):
  """Yields (field_number, wire_type, value) for each field; LEN values are bytes slices."""
  pos, end = 0, len(data)
  while pos < end:
    key, pos = _read_varint(data, pos)
    field, wire = key >> 3, key & 7
    if not 0 < field <= _MAX_FIELD:
      raise ExampleParseError(
          f"Field number {field} at byte {pos} is outside protobuf's 1..{_MAX_FIELD}: the "
          "serialized Example is corrupt.")
    if wire == _VARINT:
      value, pos = _read_varint(data, pos)
    elif wire == _LEN:
      size, pos = _read_varint(data, pos)
      if pos + size > end:
        raise ExampleParseError(
            f"Field {field} claims {size} bytes but only {end - pos} remain: the serialized "
            "Example is truncated.")
      value, pos = data[pos:pos + size], pos + size
    elif wire == _I32:
      value, pos = data[pos:pos + 4], pos + 4
    elif wire == _I64:
      value, pos = data[pos:pos + 8], pos + 8
    else:
      raise ExampleParseError(
          f"Unsupported wire type {wire} for field {field} at byte {pos}: not a tf.train.Example "
          "(groups are not used by it).")
    if pos > end:
      raise ExampleParseError(f"Field {field} runs past the end of the data: truncated Example.")
    yield field, wire, value


def _packed_varints(data: bytes) -> np.ndarray:
  """Decodes concatenated varints to int64 (two's complement), vectorized."""
  raw = np.frombuffer(data, np.uint8)
  if raw.size == 0:
    return np.zeros((0,), np.int64)
  if raw[-1] & 0x80:
    raise ExampleParseError("Packed int64 list ends inside a varint: truncated Example.")
  ends = raw < 0x80
  # Each byte's varint number and its position within that varint.
  varint_id = np.concatenate([[0], np.cumsum(ends[:-1])])
  starts = np.flatnonzero(np.concatenate([[True], ends[:-1]]))
  position = np.arange(raw.size) - starts[varint_id]
  if position.max() >= 10:
    raise ExampleParseError("Varint longer than 10 bytes in a packed int64 list: corrupt data.")
  parts = (raw & 0x7F).astype(np.uint64) << (7 * position).astype(np.uint64)
  return np.add.reduceat(parts, starts).view(np.int64)


class _Kind:
  BYTES, FLOAT, INT64 = 1, 2, 3


def _decode_feature(data: bytes) -> tuple[int, FeatureValue]:
  kind, values = None, None
  for field, wire, payload in _fields(data):
    if wire != _LEN or field not in (1, 2, 3):
      continue  # Unknown fields are skipped, as protobuf parsers do.
    chunks: list = []
    for inner_field, inner_wire, value in _fields(payload):
      if inner_field != 1:
        continue
      if field == _Kind.BYTES and inner_wire == _LEN:
        chunks.append(bytes(value))
      elif field == _Kind.FLOAT and inner_wire == _LEN:
        if len(value) % 4:
          raise ExampleParseError(
              f"A packed float_list holds {len(value)} bytes, not a multiple of 4 (one float32 "
              "is 4 bytes): the serialized Example is corrupt.")
        chunks.append(np.frombuffer(value, "<f4"))
      elif field == _Kind.FLOAT and inner_wire == _I32:
        chunks.append(np.frombuffer(value, "<f4"))
      elif field == _Kind.INT64 and inner_wire == _LEN:
        chunks.append(_packed_varints(value))
      elif field == _Kind.INT64 and inner_wire == _VARINT:
        # A varint may carry up to 70 bits; protobuf keeps the low 64 (two's complement).
        chunks.append(np.array([value & _UINT64_MASK], np.uint64).view(np.int64))
      else:
        # Protobuf's generic parsers would skip it as an unknown field; TensorFlow's Example
        # parser (what TFF's data goes through) refuses it, and so does this one.
        raise ExampleParseError(
            f"Wire type {inner_wire} is not valid for the values of a "
            f"{('', 'bytes_list', 'float_list', 'int64_list')[field]}.")
    if field == _Kind.BYTES:
      new = chunks
    else:
      dtype = np.float32 if field == _Kind.FLOAT else np.int64
      new = np.concatenate(chunks).astype(dtype) if chunks else np.zeros((0,), dtype)
    # Protobuf merge semantics: a repeated occurrence of the same oneof member concatenates,
    # a different member replaces.
    if kind == field and values is not None:
      values = values + new if field == _Kind.BYTES else np.concatenate([values, new])
    else:
      kind, values = field, new
  if kind is None:
    return _Kind.FLOAT, np.zeros((0,), np.float32)  # An empty Feature: no values of any kind.
  return kind, values


def _utf8(value: bytes, what: str) -> str:
  try:
    return bytes(value).decode("utf-8")
  except UnicodeDecodeError as e:
    raise ExampleParseError(
        f"{what} is not valid UTF-8 ({e.reason} at byte {e.start} of {bytes(value)[:32]!r}): "
        "the serialized Example is corrupt.") from None


def decode_example(serialized: bytes) -> dict[str, FeatureValue]:
  """Decodes a serialized `tf.train.Example` into its raw feature lists.

  Args:
    serialized: the bytes of one `tf.train.Example` (e.g. a row of TFF's SQLite files).

  Returns:
    A dict from feature name to its values: a list of `bytes` for a bytes_list, a float32 array
    for a float_list, an int64 array for an int64_list (all one-dimensional).

  Raises:
    ExampleParseError: if `serialized` is not a valid encoding (whatever its bytes are, this is
      the only error they can cause).
    TypeError: if `serialized` is not bytes-like (e.g. a `str`).

  Example:
    >>> decode_example(encode_example({'label': 7, 'name': 'a'}))
    {'label': array([7]), 'name': [b'a']}
  """
  if not isinstance(serialized, (bytes, bytearray, memoryview)):
    raise TypeError(
        f"decode_example expects the serialized Example as bytes, got a "
        f"{type(serialized).__name__}. Pass the raw bytes (e.g. a BLOB read from SQLite), not "
        "text.")
  features: dict[str, FeatureValue] = {}
  for field, wire, payload in _fields(bytes(serialized)):
    if field != 1 or wire != _LEN:
      continue
    for entry_field, entry_wire, entry in _fields(payload):
      if entry_field != 1 or entry_wire != _LEN:
        continue
      key, value = "", (_Kind.FLOAT, np.zeros((0,), np.float32))
      for f, w, v in _fields(entry):
        if f == 1 and w == _LEN:
          key = _utf8(v, "A feature name")
        elif f == 2 and w == _LEN:
          value = _decode_feature(v)
      features[key] = value[1]  # A repeated map key: the last entry wins (protobuf's rule).
  return features


def parse_example(serialized: bytes, spec: Mapping[str, FixedLenFeature]) -> dict[str, np.ndarray]:
  """Parses a serialized `tf.train.Example` like `tf.io.parse_single_example` with fixed lengths.

  Args:
    serialized: the bytes of one `tf.train.Example`.
    spec: feature name -> `FixedLenFeature(shape, dtype)`. The result keeps the spec's order.

  Returns:
    A dict from feature name to a NumPy array of the given shape and dtype (strings as `np.str_`).

  Raises:
    ExampleParseError: if the bytes are invalid, a feature is missing, holds the wrong kind of
      list, a string that is not UTF-8 (for `np.str_`), an integer outside the dtype's range,
      or a number of values that does not fit the shape.

  Example:
    >>> parse_example(encode_example({'label': 7}), {'label': FixedLenFeature((), np.int32)})
    {'label': array(7, dtype=int32)}
  """
  raw = decode_example(serialized)
  result = {}
  for name, (shape, dtype) in spec.items():
    if name not in raw:
      raise ExampleParseError(
          f"Feature {name!r} is missing from the Example; it holds {sorted(raw)}. Check the "
          "feature names in the parse spec.")
    values = raw[name]
    dtype = np.dtype(dtype)
    if dtype.kind in "US":
      if not isinstance(values, list):
        raise ExampleParseError(
            f"Feature {name!r}: expected a bytes_list for dtype {dtype}, got a "
            f"{'float' if values.dtype == np.float32 else 'int64'}_list.")
      if dtype.kind == "U":
        values = np.array([_utf8(v, f"A value of feature {name!r}") for v in values],
                          dtype=np.str_)
      else:
        values = np.array(values, dtype=np.bytes_)
    else:
      want = "float_list" if dtype.kind in "fc" else "int64_list"
      got = ("bytes_list" if isinstance(values, list)
             else "float_list" if values.dtype == np.float32 else "int64_list")
      if want != got:
        raise ExampleParseError(
            f"Feature {name!r}: expected a {want} for dtype {dtype}, got a {got}. Use a dtype "
            f"that matches the stored list.")
      if dtype.kind in "iu" and values.size:
        info = np.iinfo(dtype)
        if values.min() < info.min or values.max() > info.max:
          bad = values[(values < info.min) | (values > info.max)][0]
          raise ExampleParseError(
              f"Feature {name!r}: the value {bad} does not fit dtype {dtype} "
              f"([{info.min}, {info.max}]); casting would wrap it. Use a wider dtype (int64).")
      values = values.astype(dtype)
    size = int(np.prod(shape, dtype=np.int64))
    if values.shape[0] != size:
      raise ExampleParseError(
          f"Feature {name!r}: expected {size} values for shape {tuple(shape)}, got "
          f"{values.shape[0]}.")
    result[name] = values.reshape(shape)
  return result


def _varint(value: int) -> bytes:
  value &= (1 << 64) - 1  # Negative int64 values: ten-byte two's complement.
  out = bytearray()
  while True:
    byte = value & 0x7F
    value >>= 7
    if value:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


def _len_field(field: int, payload: bytes) -> bytes:
  return _varint(field << 3 | _LEN) + _varint(len(payload)) + payload


def _encode_feature(value: Any, packed: bool) -> bytes:
  if isinstance(value, (str, bytes)):
    value = [value]
  array = np.asarray(value)
  if array.dtype.kind in "USO":
    items = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in array.reshape(-1)]
    return _len_field(_Kind.BYTES, b"".join(_len_field(1, v) for v in items))
  if array.dtype.kind in "f":
    floats = array.reshape(-1).astype("<f4")
    if packed:
      body = _len_field(1, floats.tobytes()) if floats.size else b""
    else:
      body = b"".join(_varint(1 << 3 | _I32) + f.tobytes() for f in floats)
    return _len_field(_Kind.FLOAT, body)
  if array.dtype.kind in "iub":
    ints = [int(v) for v in array.reshape(-1).astype(np.int64)]
    if packed:
      body = _len_field(1, b"".join(_varint(v) for v in ints)) if ints else b""
    else:
      body = b"".join(_varint(1 << 3 | _VARINT) + _varint(v) for v in ints)
    return _len_field(_Kind.INT64, body)
  raise TypeError(
      f"Cannot encode a value of dtype {array.dtype} in a tf.train.Example: expected strings or "
      "bytes (bytes_list), floats (float_list), or integers/bools (int64_list).")


def encode_example(features: Mapping[str, Any], packed: bool = True) -> bytes:
  """Serializes a dict of values as a `tf.train.Example`, as `tf.train.Example.SerializeToString`.

  Args:
    features: feature name -> value. Strings and bytes become a bytes_list; floating values a
      float_list (as float32); integers and bools an int64_list. Arrays are flattened.
    packed: write repeated numbers packed (what TensorFlow writes) or one field per value (also
      valid protobuf; used to test the decoder).

  Returns:
    The serialized bytes.

  Raises:
    TypeError: if a value has a dtype an Example cannot hold.

  Example:
    >>> encode_example({'label': 7})
    b'\\n\\x10\\n\\x0e\\n\\x05label\\x12\\x05\\x1a\\x03\\n\\x01\\x07'
  """
  entries = []
  for name, value in features.items():
    entry = _len_field(1, name.encode("utf-8")) + _len_field(2, _encode_feature(value, packed))
    entries.append(_len_field(1, entry))
  return _len_field(1, b"".join(entries))


def encode_examples(columns: Mapping[str, Sequence[Any]], packed: bool = True) -> list[bytes]:
  """Serializes the rows of a dict of equal-length columns (one Example per row)."""
  lengths = {name: len(column) for name, column in columns.items()}
  if len(set(lengths.values())) > 1:
    raise ValueError(f"All columns must have the same number of rows, got {lengths}.")
  n = next(iter(lengths.values()), 0)
  return [encode_example({k: c[i] for k, c in columns.items()}, packed) for i in range(n)]
