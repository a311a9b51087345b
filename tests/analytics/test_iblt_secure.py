"""`build_iblt_computation(secure_sum_bitwidth=...)` on both runtimes: the secure sums (the
tables modulo the IBLT's field, the counts in bitwidth-checked halves) decode what the plain
sums decode, and a count the bitwidth cannot hold is reported, not wrapped."""

import pytest

import federax as fx
import numpy as np
from tests.analytics.iblt_reference import runtime  # noqa: F401  (module-scoped: compiles once)
from tests.analytics.iblt_reference import as_dicts, heavy_hitters, run, zipf_clients

iblt = fx.analytics.heavy_hitters.iblt
CLIENTS = zipf_clients(1, 16, 200)
BITS = (None, 32)  # (Bitwidths up to 16 take another path: NARROW below.)
COMPUTATIONS = {bits: iblt.build_iblt_computation(capacity=200, string_max_bytes=6,
                                                  secure_sum_bitwidth=bits) for bits in BITS}
NARROW = iblt.build_iblt_computation(capacity=10, secure_sum_bitwidth=4)


@pytest.mark.parametrize("bits", BITS)
def test_secure_and_plain_sums_decode_the_same(runtime, bits):
  unique, total = heavy_hitters(CLIENTS, string_max_bytes=6)
  assert as_dicts(run(COMPUTATIONS[bits], CLIENTS)) == (dict(unique), dict(total))


def test_a_count_above_the_secure_bitwidth_is_reported(runtime):
  # A count per cell must fit 4 bits: 15 does, 16 is refused by the secure sum.
  assert run(NARROW, [[np.array(["a"] * 15)]]).heavy_hitters_counts.tolist() == [15]
  with pytest.raises(Exception, match=r"federated_secure_sum_bitwidth.*16.*outside \[0, 15\]"):
    run(NARROW, [[np.array(["a"] * 16)]])
