"""The field's data formats, read natively: TFF's HDF5 and SQLite files, tf.train.Example, LEAF."""

from federax.simulation.formats.errors import DataFormatError as DataFormatError
from federax.simulation.formats.hdf5 import HDF5ClientSource as HDF5ClientSource
from federax.simulation.formats.hdf5 import hdf5_client_data as hdf5_client_data
from federax.simulation.formats.hdf5 import write_hdf5 as write_hdf5
from federax.simulation.formats.leaf import LeafClientSource as LeafClientSource
from federax.simulation.formats.leaf import load_leaf as load_leaf
from federax.simulation.formats.leaf import read_leaf_splits as read_leaf_splits
from federax.simulation.formats.leaf import write_leaf_shard as write_leaf_shard
from federax.simulation.formats.sqlite import DatabaseFormatError as DatabaseFormatError
from federax.simulation.formats.sqlite import SQLiteClientSource as SQLiteClientSource
from federax.simulation.formats.sqlite import sql_client_data as sql_client_data
from federax.simulation.formats.sqlite import write_sqlite as write_sqlite
from federax.simulation.formats.tf_example import ExampleParseError as ExampleParseError
from federax.simulation.formats.tf_example import FixedLenFeature as FixedLenFeature
from federax.simulation.formats.tf_example import decode_example as decode_example
from federax.simulation.formats.tf_example import encode_example as encode_example
from federax.simulation.formats.tf_example import encode_examples as encode_examples
from federax.simulation.formats.tf_example import parse_example as parse_example

__all__ = [
    "DataFormatError",
    "DatabaseFormatError",
    "ExampleParseError",
    "FixedLenFeature",
    "HDF5ClientSource",
    "LeafClientSource",
    "SQLiteClientSource",
    "decode_example",
    "encode_example",
    "encode_examples",
    "hdf5_client_data",
    "load_leaf",
    "parse_example",
    "read_leaf_splits",
    "sql_client_data",
    "write_hdf5",
    "write_leaf_shard",
    "write_sqlite",
]
