"""`fx.analytics.heavy_hitters.iblt`: heavy hitters with invertible Bloom lookup tables, under
TFF's names (`tff.analytics.heavy_hitters.iblt`)."""

from federax.analytics.heavy_hitters.iblt.chunkers import CharacterEncoding as CharacterEncoding
from federax.analytics.heavy_hitters.iblt.chunkers import UTF8Chunker as UTF8Chunker
from federax.analytics.heavy_hitters.iblt.chunkers import create_chunker as create_chunker
from federax.analytics.heavy_hitters.iblt.hyperedge_hashers import (
    CoupledHyperEdgeHasher as CoupledHyperEdgeHasher)
from federax.analytics.heavy_hitters.iblt.hyperedge_hashers import (
    RandomHyperEdgeHasher as RandomHyperEdgeHasher)
from federax.analytics.heavy_hitters.iblt.iblt_lib import DEFAULT_FIELD_SIZE as DEFAULT_FIELD_SIZE
from federax.analytics.heavy_hitters.iblt.iblt_lib import (
    DEFAULT_REPETITIONS as DEFAULT_REPETITIONS)
from federax.analytics.heavy_hitters.iblt.iblt_lib import Decoded as Decoded
from federax.analytics.heavy_hitters.iblt.iblt_lib import IbltDecoder as IbltDecoder
from federax.analytics.heavy_hitters.iblt.iblt_lib import IbltEncoder as IbltEncoder
from federax.analytics.heavy_hitters.iblt.iblt_lib import IbltTensorDecoder as IbltTensorDecoder
from federax.analytics.heavy_hitters.iblt.iblt_lib import IbltTensorEncoder as IbltTensorEncoder
from federax.analytics.heavy_hitters.iblt.iblt_lib import decode_iblt as decode_iblt
from federax.analytics.heavy_hitters.iblt.iblt_lib import decode_iblt_tensor as decode_iblt_tensor
from federax.analytics.heavy_hitters.iblt.iblt_tff import ServerOutput as ServerOutput
from federax.analytics.heavy_hitters.iblt.iblt_tff import (
    build_iblt_computation as build_iblt_computation)

# TFF's names for the decoders, which return NumPy arrays here rather than tensors.
decode_iblt_tf = decode_iblt
decode_iblt_tensor_tf = decode_iblt_tensor

__all__ = ["CharacterEncoding", "CoupledHyperEdgeHasher", "DEFAULT_FIELD_SIZE",
           "DEFAULT_REPETITIONS", "Decoded", "IbltDecoder", "IbltEncoder", "IbltTensorDecoder",
           "IbltTensorEncoder", "RandomHyperEdgeHasher", "ServerOutput", "UTF8Chunker",
           "build_iblt_computation", "create_chunker", "decode_iblt", "decode_iblt_tensor",
           "decode_iblt_tensor_tf", "decode_iblt_tf"]
