"""The tf.train.Example decoder under hostile bytes: its own parse error, and nothing else, ever.

A seeded fuzz run (random Examples, mutated ones and raw noise) must see only `ExampleParseError`
from `decode_example` and `parse_example`; where protobuf's own parser is installed, it is the
reference: whatever protobuf refuses the decoder refuses too, and where both accept they agree.
"""

import collections
import struct
import time

import numpy as np
import pytest

from federax.simulation.formats import DataFormatError
from federax.simulation.formats import tf_example as tfe

RECORDS = 12_000
TIME_LIMIT_S = 20.0


def _ld(field, payload):  # A length-delimited field, assembled by hand.
  return bytes([field << 3 | 2]) + bytes([len(payload)]) + payload


def _entry(key: bytes, feature: bytes) -> bytes:
  return _ld(1, _ld(1, _ld(1, key) + _ld(2, feature)))


# Each found by the hostile-input run (issue 20) or this file's fuzzing before the fix.
@pytest.mark.parametrize("data, words", [
    (_entry(b"\xff\xfelabel", _ld(3, _ld(1, b"\x07"))), "A feature name is not valid UTF-8"),
    (_entry(b"x", _ld(2, _ld(1, b"\x00\x00\x80"))), "packed float_list holds 3 bytes, not a "
                                                     "multiple of 4"),
    (_entry(b"x", _ld(3, b"\x08" + b"\xff" * 9 + b"\x7f")), None),  # 70 bits: kept to 64.
    (_ld(1, b"\x02\x00"), "Field number 0"),
    (b"\x82\x80\x80\x80\x10\x00", "Field number 536870912"),
], ids=["non_utf8_key", "float_list_of_3_bytes", "varint_of_70_bits", "field_0", "field_2_29"])
def test_found_inputs_give_the_parse_error_or_parse(data, words):
  if words is None:
    assert tfe.decode_example(data)["x"].tolist() == [-1]  # Protobuf keeps the low 64 bits.
    return
  with pytest.raises(tfe.ExampleParseError, match=words):
    tfe.decode_example(data)


def test_parse_example_refuses_bad_text_and_values_its_dtype_cannot_hold():
  data = tfe.encode_example({"s": [b"caf\xe9"], "i": [300, -1]})
  with pytest.raises(tfe.ExampleParseError, match=r"A value of feature 's' is not valid UTF-8"):
    tfe.parse_example(data, {"s": tfe.FixedLenFeature((), np.str_)})
  assert tfe.parse_example(data, {"s": tfe.FixedLenFeature((), np.bytes_)})["s"] == b"caf\xe9"
  with pytest.raises(tfe.ExampleParseError, match=r"Feature 'i': the value 300 does not fit "
                     r"dtype int8 \(\[-128, 127\]\); casting would wrap it"):
    tfe.parse_example(data, {"i": tfe.FixedLenFeature((2,), np.int8)})
  with pytest.raises(tfe.ExampleParseError, match=r"the value -1 does not fit dtype uint16"):
    tfe.parse_example(data, {"i": tfe.FixedLenFeature((2,), np.uint16)})
  np.testing.assert_array_equal(
      tfe.parse_example(data, {"i": tfe.FixedLenFeature((2,), np.int16)})["i"], [300, -1])
  assert issubclass(tfe.ExampleParseError, DataFormatError)


def test_text_instead_of_bytes_is_a_type_error():
  with pytest.raises(TypeError, match="expects the serialized Example as bytes, got a str"):
    tfe.decode_example("\n\x00")


def _random_example(rng):
  features = {}
  for i in range(int(rng.integers(0, 5))):
    n, kind = int(rng.integers(0, 6)), int(rng.integers(3))
    if kind == 0:
      features[f"i{i}"] = rng.integers(-(2**62), 2**62, n)
    elif kind == 1:
      features[f"f{i}"] = rng.standard_normal(n).astype(np.float32)
    else:
      features[f"s{i}"] = [bytes(rng.integers(0, 256, int(rng.integers(0, 6)), dtype=np.uint8))
                           for _ in range(max(n, 1))]
  return features, tfe.encode_example(features, packed=bool(rng.integers(2)))


def _mutate(rng, data):
  data = bytearray(data)
  for _ in range(int(rng.integers(1, 4))):
    op, at = int(rng.integers(5)), int(rng.integers(len(data) + 1))
    if op == 0 and at < len(data):
      data[at] ^= 1 << int(rng.integers(8))
    elif op == 1 and at < len(data):
      data[at] = int(rng.integers(256))
    elif op == 2 and at < len(data):
      del data[at]
    elif op == 3:
      data.insert(at, int(rng.integers(256)))
    else:
      data = data[:at]
  return bytes(data)


def _spec(features, narrow):
  """A spec that reads the features back; `narrow` asks for int16 and UTF-8 text instead."""
  spec = {}
  for name, value in features.items():
    dtype = {"i": np.int16 if narrow else np.int64, "f": np.float32,
             "s": np.str_ if narrow else np.bytes_}[name[0]]
    spec[name] = tfe.FixedLenFeature((len(value),), dtype)
  return spec


def _corpus(seed=0):
  """(bytes, spec) records: a third intact, half mutated, the rest raw noise."""
  rng = np.random.default_rng(seed)
  for i in range(RECORDS):
    features, data = _random_example(rng)
    if i % 6 in (1, 2, 3):
      data = _mutate(rng, data)
    elif i % 6 == 4:
      data = bytes(rng.integers(0, 256, int(rng.integers(0, 40)), dtype=np.uint8))
    yield data, _spec(features, narrow=i % 6 == 3), i % 6 in (0, 5)


def test_fuzzed_records_only_ever_raise_the_parse_error():
  start, outcomes = time.perf_counter(), collections.Counter()
  for data, spec, intact in _corpus():
    try:
      decoded = tfe.decode_example(data)
      outcomes["decoded"] += 1
    except tfe.ExampleParseError:
      outcomes["refused"] += 1
      assert not intact, data.hex()
      continue
    try:
      tfe.parse_example(data, spec)
      outcomes["parsed"] += 1
    except tfe.ExampleParseError:
      assert not intact, data.hex()
      outcomes["parse refused"] += 1
    assert all(isinstance(v, list) or v.ndim == 1 for v in decoded.values())
    assert time.perf_counter() - start < TIME_LIMIT_S, f"slow after {sum(outcomes.values())}"
  assert outcomes["decoded"] + outcomes["refused"] == RECORDS
  assert min(outcomes.values()) > 200, outcomes  # Every path is exercised many times.


def _protobuf_example_class():
  """tf.train.Example's message class, built from its .proto definition (no TensorFlow)."""
  descriptor_pb2 = pytest.importorskip("google.protobuf.descriptor_pb2")
  from google.protobuf import descriptor_pool  # pylint: disable=g-import-not-at-top
  from google.protobuf import message_factory  # pylint: disable=g-import-not-at-top
  proto = descriptor_pb2.FileDescriptorProto(name="example.proto", package="t", syntax="proto3")
  field = descriptor_pb2.FieldDescriptorProto
  for name, kind in (("BytesList", field.TYPE_BYTES), ("FloatList", field.TYPE_FLOAT),
                     ("Int64List", field.TYPE_INT64)):
    proto.message_type.add(name=name).field.add(name="value", number=1, type=kind,
                                                label=field.LABEL_REPEATED)
  feature = proto.message_type.add(name="Feature")
  feature.oneof_decl.add(name="kind")
  for number, name in enumerate(("bytes_list", "float_list", "int64_list"), 1):
    feature.field.add(name=name, number=number, type=field.TYPE_MESSAGE, oneof_index=0,
                      label=field.LABEL_OPTIONAL, type_name=f".t.{name.title().replace('_', '')}")
  features = proto.message_type.add(name="Features")
  entry = features.nested_type.add(name="FeatureEntry")
  entry.options.map_entry = True
  entry.field.add(name="key", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
  entry.field.add(name="value", number=2, type=field.TYPE_MESSAGE, label=field.LABEL_OPTIONAL,
                  type_name=".t.Feature")
  features.field.add(name="feature", number=1, type=field.TYPE_MESSAGE,
                     label=field.LABEL_REPEATED, type_name=".t.Features.FeatureEntry")
  proto.message_type.add(name="Example").field.add(
      name="features", number=1, type=field.TYPE_MESSAGE, label=field.LABEL_OPTIONAL,
      type_name=".t.Features")
  pool = descriptor_pool.DescriptorPool()
  pool.Add(proto)
  return message_factory.GetMessageClass(pool.FindMessageTypeByName("t.Example"))


def _protobuf_features(example_class, data):
  message = example_class.FromString(data)
  out = {}
  for key, feature in message.features.feature.items():
    kind = feature.WhichOneof("kind")
    if kind == "bytes_list":
      out[key] = list(feature.bytes_list.value)
    elif kind == "int64_list":
      out[key] = np.array(feature.int64_list.value, np.int64)
    else:
      out[key] = np.array(feature.float_list.value if kind else [], np.float32)
  return out


def _same(ours, reference):
  if isinstance(reference, list):
    return ours == reference
  # Bitwise, so that NaN payloads from mutated floats compare too.
  return (not isinstance(ours, list) and ours.dtype == reference.dtype
          and ours.tobytes() == reference.tobytes())


def test_fuzzed_records_against_protobufs_parser():
  example_class = _protobuf_example_class()
  from google.protobuf import message  # pylint: disable=g-import-not-at-top
  outcomes = collections.Counter()
  for data, _, _ in _corpus(seed=1):
    try:
      reference = _protobuf_features(example_class, data)
    except message.DecodeError:
      reference = None
    try:
      ours = tfe.decode_example(data)
    except tfe.ExampleParseError:
      ours = None
    if reference is None:  # What protobuf refuses, the decoder refuses.
      assert ours is None, data.hex()
      outcomes["both refuse"] += 1
    elif ours is None:
      # Stricter than protobuf only as TensorFlow's parser is: a list holding the wrong wire
      # type (protobuf would skip it as an unknown field).
      outcomes["only we refuse"] += 1
    else:
      # upb drops a map entry holding an unknown field; the decoder keeps it (protobuf's C++
      # parser does the same). Every entry protobuf keeps is identical.
      assert set(reference) <= set(ours), data.hex()
      assert all(_same(ours[k], v) for k, v in reference.items()), data.hex()
      outcomes["both accept"] += 1
  assert outcomes["only we refuse"] < RECORDS // 1000, outcomes
  assert min(outcomes["both refuse"], outcomes["both accept"]) > 2000, outcomes


def test_float_bits_survive_decoding():
  values = struct.pack("<3I", 0x7FC00001, 0xFF800000, 0x00000001)  # NaN payload, -inf, denormal.
  decoded = tfe.decode_example(_entry(b"f", _ld(2, _ld(1, values))))["f"]
  assert decoded.tobytes() == values
