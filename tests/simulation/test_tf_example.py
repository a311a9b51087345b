"""Tests for the tf.train.Example wire-format codec, against hand-assembled protobuf bytes."""

import struct

import numpy as np
import pytest

from federax.simulation.formats import tf_example as tfe


def varint(n):
  n &= (1 << 64) - 1
  out = b""
  while True:
    out += bytes([(n & 0x7F) | (0x80 if n >> 7 else 0)])
    n >>= 7
    if not n:
      return out


def ld(field, payload):  # A length-delimited field, assembled by hand from the spec.
  return bytes([field << 3 | 2]) + varint(len(payload)) + payload


def example(*entries):
  return ld(1, b"".join(ld(1, ld(1, k.encode()) + ld(2, feature)) for k, feature in entries))


def test_decodes_hand_built_packed_int64():
  data = example(("label", ld(3, ld(1, varint(7) + varint(300)))))
  assert data == b"\n\x12\n\x10\n\x05label\x12\x07\x1a\x05\n\x03\x07\xac\x02"
  out = tfe.decode_example(data)
  np.testing.assert_array_equal(out["label"], [7, 300])
  assert out["label"].dtype == np.int64


def test_decodes_unpacked_int64_and_negative_two_complement():
  # Unpacked: one `08 <varint>` per value; -1 is a ten-byte varint (no zigzag in Int64List).
  body = b"\x08" + varint(-1) + b"\x08" + varint(-(2**63)) + b"\x08" + varint(2**63 - 1)
  assert varint(-1) == b"\xff" * 9 + b"\x01"
  out = tfe.decode_example(example(("v", ld(3, body))))
  np.testing.assert_array_equal(out["v"], np.array([-1, -(2**63), 2**63 - 1], np.int64))


def test_decodes_packed_and_unpacked_floats():
  values = [1.5, -2.25, 3e-8]
  packed = ld(1, struct.pack("<3f", *values))
  unpacked = b"".join(b"\x0d" + struct.pack("<f", v) for v in values)
  for body in (packed, unpacked):
    out = tfe.decode_example(example(("p", ld(2, body))))
    np.testing.assert_array_equal(out["p"], np.array(values, np.float32))
    assert out["p"].dtype == np.float32


def test_decodes_bytes_list_and_skips_unknown_fields():
  feature = ld(1, ld(1, "héllo".encode()) + ld(1, b"") + b"\x10\x05")  # unknown varint field 2
  data = example(("s", feature)) + b"\x38\x01"  # unknown field 7 on Example
  assert tfe.decode_example(data) == {"s": ["héllo".encode(), b""]}


def test_repeated_map_key_last_wins_and_repeated_list_concatenates():
  data = example(("a", ld(3, ld(1, varint(1)))), ("a", ld(3, ld(1, varint(2)))))
  np.testing.assert_array_equal(tfe.decode_example(data)["a"], [2])
  twice = ld(3, ld(1, varint(1))) + ld(3, ld(1, varint(2)))
  np.testing.assert_array_equal(tfe.decode_example(example(("a", twice)))["a"], [1, 2])


def test_encoder_matches_hand_built_bytes():
  assert tfe.encode_example({"label": [7, 300]}) == example(
      ("label", ld(3, ld(1, varint(7) + varint(300)))))
  assert tfe.encode_example({"s": "ab"}) == example(("s", ld(1, ld(1, b"ab"))))
  assert tfe.encode_example({"f": np.float32(1.5)}) == example(
      ("f", ld(2, ld(1, struct.pack("<f", 1.5)))))


@pytest.mark.parametrize("packed", [True, False])
def test_round_trip(packed):
  rng = np.random.default_rng(0)
  ints = np.concatenate([rng.integers(-(2**63), 2**63 - 1, 500, dtype=np.int64),
                         [0, 1, -1, 127, 128, 2**63 - 1, -(2**63)]])
  floats = rng.standard_normal((28, 28)).astype(np.float32)
  data = tfe.encode_example({"i": ints, "f": floats, "s": ["x", "ÿ" * 300], "e": []}, packed)
  out = tfe.decode_example(data)
  np.testing.assert_array_equal(out["i"], ints)
  np.testing.assert_array_equal(out["f"], floats.reshape(-1))
  assert out["s"] == [b"x", ("ÿ" * 300).encode()]
  assert out["e"].size == 0


def test_parse_example_shapes_dtypes_and_order():
  data = tfe.encode_example({"pixels": np.arange(784) / 784, "label": 3, "t": "héllo"})
  spec = {"label": tfe.FixedLenFeature((), np.int32),
          "pixels": tfe.FixedLenFeature((28, 28), np.float32),
          "t": tfe.FixedLenFeature((), np.str_)}
  out = tfe.parse_example(data, spec)
  assert list(out) == ["label", "pixels", "t"]
  assert out["label"].dtype == np.int32 and out["label"].shape == () and out["label"] == 3
  np.testing.assert_allclose(out["pixels"][1, 0], 28 / 784, rtol=1e-6)
  assert out["t"].dtype.kind == "U" and out["t"] == "héllo"
  raw = tfe.parse_example(data, {"t": tfe.FixedLenFeature((), np.bytes_)})
  assert raw["t"] == "héllo".encode()


def test_parse_example_errors():
  data = tfe.encode_example({"label": 3, "name": "a"})
  with pytest.raises(tfe.ExampleParseError, match=r"Feature 'pixels' is missing .*\['label', "
                     r"'name'\]"):
    tfe.parse_example(data, {"pixels": tfe.FixedLenFeature((2,), np.float32)})
  with pytest.raises(tfe.ExampleParseError, match="expected a float_list for dtype float32, "
                     "got a int64_list"):
    tfe.parse_example(data, {"label": tfe.FixedLenFeature((), np.float32)})
  with pytest.raises(tfe.ExampleParseError, match="expected a bytes_list for dtype <U0, got a "
                     "int64_list"):
    tfe.parse_example(data, {"label": tfe.FixedLenFeature((), np.str_)})
  with pytest.raises(tfe.ExampleParseError, match=r"expected a int64_list .*got a bytes_list"):
    tfe.parse_example(data, {"name": tfe.FixedLenFeature((), np.int64)})
  with pytest.raises(tfe.ExampleParseError, match=r"expected 4 values for shape \(2, 2\), got 1"):
    tfe.parse_example(data, {"label": tfe.FixedLenFeature((2, 2), np.int64)})


def test_corrupt_data_errors():
  data = tfe.encode_example({"label": [1, 2, 3]})
  with pytest.raises(tfe.ExampleParseError, match="claims .* bytes but only .* remain"):
    tfe.decode_example(data[:-2])
  with pytest.raises(tfe.ExampleParseError, match="Truncated varint"):
    tfe.decode_example(b"\x0a\x80")
  with pytest.raises(tfe.ExampleParseError, match="Field 1 runs past the end of the data"):
    tfe.decode_example(b"\x0d\x01")  # A fixed32 field with one byte of its four.
  with pytest.raises(tfe.ExampleParseError, match="Unsupported wire type 3"):
    tfe.decode_example(b"\x0b")
  with pytest.raises(tfe.ExampleParseError, match="Varint longer than 10 bytes at"):
    tfe.decode_example(b"\x08" + b"\xff" * 11)
  with pytest.raises(tfe.ExampleParseError, match="Varint longer than 10 bytes in a packed"):
    tfe.decode_example(example(("a", ld(3, ld(1, b"\xff" * 10 + b"\x01")))))
  with pytest.raises(tfe.ExampleParseError, match="ends inside a varint"):
    tfe.decode_example(example(("a", ld(3, ld(1, b"\x01\x80")))))
  with pytest.raises(tfe.ExampleParseError, match="Wire type 0 is not valid for the values of a "
                     "float_list"):
    tfe.decode_example(example(("a", ld(2, b"\x08\x01"))))


def test_encode_errors():
  with pytest.raises(TypeError, match="Cannot encode a value of dtype complex128"):
    tfe.encode_example({"c": np.array([1j])})
  with pytest.raises(ValueError, match=r"same number of rows, got \{'a': 2, 'b': 1\}"):
    tfe.encode_examples({"a": [1, 2], "b": [1]})
  rows = tfe.encode_examples({"a": [1, 2], "b": ["x", "y"]})
  assert [tfe.decode_example(r)["b"] for r in rows] == [[b"x"], [b"y"]]
