"""Strings through federated values and host computations, on both runtimes (TFF's outputs)."""

import warnings

import jax
import numpy as np
import pytest

import federax as fx


@fx.federated_computation
def hello_world():
  return 'Hello, World!'


def test_hello_world_returns_bytes_as_tff(runtime):
  # Custom federated algorithms, part 1: TFF prints b'Hello, World!'.
  assert str(hello_world.type_signature) == "( -> str)"
  result = hello_world()
  assert result == b'Hello, World!' and type(result) is bytes


# --- The federated_select tutorial, ported: tff -> fx, tf.strings ops -> Python on the host ---

list_of_strings_type = fx.TensorType(np.str_, [None])
# We only ever send exactly two values to each client. The number of keys per
# client must be a fixed number across all clients.
number_of_keys_per_client = 2
keys_type = fx.TensorType(np.int32, [number_of_keys_per_client])
get_size = fx.computation(lambda x: np.size(x))
select_fn = fx.computation(lambda val, index: val[index])
client_data_type = np.str_


# A function from our client data to the indices of the values we'd like to
# select from the server. Its result cannot be found by running it on an empty
# string, so it is declared (the tutorial's otherwise unused `keys_type`).
@fx.computation(client_data_type, result=keys_type)
def keys_for_client(client_string):
  # We assume our client data is a single string consisting of exactly three
  # comma-separated integers indicating which values to grab from the server.
  split = client_string.split(',')
  return np.array([int(split[0]), int(split[1])], np.int32)


@fx.computation(fx.SequenceType(np.str_))
def concatenate(values):
  def reduce_fn(acc, item):
    return item if acc == '' else ','.join([acc, item])  # tf.cond, tf.strings.join
  return values.reduce('', reduce_fn)


@fx.federated_computation(fx.FederatedType(list_of_strings_type, fx.SERVER),
                          fx.FederatedType(client_data_type, fx.CLIENTS))
def broadcast_based_on_client_data(list_of_strings_at_server, client_data):
  keys_at_clients = fx.federated_map(keys_for_client, client_data)
  max_key = fx.federated_map(get_size, list_of_strings_at_server)
  values_at_clients = fx.federated_select(keys_at_clients, max_key, list_of_strings_at_server,
                                          select_fn)
  value_at_clients = fx.federated_map(concatenate, values_at_clients)
  return value_at_clients


def test_federated_select_tutorial_serves_strings(runtime):
  assert str(keys_for_client.type_signature) == "(str -> int32[2])"
  assert str(concatenate.type_signature) == "(str* -> str)"
  assert str(broadcast_based_on_client_data.type_signature) == (
      "(<list_of_strings_at_server=str[?]@SERVER,client_data={str}@CLIENTS> -> {str}@CLIENTS)")
  client_data = ['0,1', '1,2', '2,0']
  with warnings.catch_warnings():
    warnings.simplefilter("error", fx.runtime.FallbackWarning)
    result = broadcast_based_on_client_data(['a', 'b', 'c'], client_data)
  assert result == [b'a,b', b'b,c', b'c,a']
  assert all(type(r) is bytes for r in result)


# The tutorial's second part: a random element per client (keys from federated_eval, as
# federax draws randomness from explicit keys; TFF's used tf.random.uniform).
@fx.computation(np.int32, fx.TensorType(np.uint32, [2]))
def get_random_key(max_key, key):
  return jax.random.randint(key, [1], 0, max_key)


@fx.computation(fx.SequenceType(np.str_))
def get_last_element(sequence):
  return sequence.reduce('', lambda _initial_state, val: val)


@fx.federated_computation(fx.FederatedType(list_of_strings_type, fx.SERVER))
def broadcast_random_element(list_of_strings_at_server):
  max_key_at_server = fx.federated_map(get_size, list_of_strings_at_server)
  max_key_at_clients = fx.federated_broadcast(max_key_at_server)
  keys = fx.federated_eval(fx.computation(lambda key: key), fx.CLIENTS)
  key_at_clients = fx.federated_map(get_random_key, (max_key_at_clients, keys))
  random_string_sequence_at_clients = fx.federated_select(
      key_at_clients, max_key_at_server, list_of_strings_at_server, select_fn)
  # Even though we only passed in a single key, `federated_select` returns a
  # sequence for each client. We only care about the last (and only) element.
  random_string_at_clients = fx.federated_map(get_last_element,
                                              random_string_sequence_at_clients)
  return random_string_at_clients


def test_federated_select_tutorial_sends_each_client_a_random_element():
  draws = {}
  runtimes = {"vectorized": fx.backends.native.create_sync_local_cpp_execution_context(
      default_num_clients=3), "sequential": fx.runtime.sequential(default_num_clients=3)}
  for name, runtime in runtimes.items():
    with runtime, warnings.catch_warnings():
      warnings.simplefilter("error", fx.runtime.FallbackWarning)
      draws[name] = broadcast_random_element(np.array(['foo', 'bar', 'baz']))
  assert draws["vectorized"] == draws["sequential"]  # The same keys on both runtimes.
  assert len(draws["vectorized"]) == 3
  assert set(draws["vectorized"]) <= {b'foo', b'bar', b'baz'}


def test_federated_select_of_strings_gives_each_client_its_sequence(runtime):
  @fx.federated_computation(fx.FederatedType(list_of_strings_type, fx.SERVER),
                            fx.FederatedType(keys_type, fx.CLIENTS))
  def select(values, keys):
    return fx.federated_select(keys, fx.federated_map(get_size, values), values, select_fn)

  assert str(select.type_signature) == (
      "(<values=str[?]@SERVER,keys={int32[2]}@CLIENTS> -> {str*}@CLIENTS)")
  result = select(np.array([b'x', b'yy', b'zzz'], object), [[2, 0], [1, 1]])
  assert result == [[b'zzz', b'x'], [b'yy', b'yy']]


# --- Host computations typed like the others, inside federated maps ---


@fx.computation(np.str_)
def length(word):
  return len(word)


@fx.computation(np.int32)
def stars(count):
  return '*' * int(count)


@fx.federated_computation(fx.FederatedType(np.str_, fx.CLIENTS))
def word_lengths(words):
  return fx.federated_map(length, words)


@fx.federated_computation(fx.FederatedType(np.int32, fx.CLIENTS))
def star_rows(counts):
  return fx.federated_map(stars, counts)


def test_host_computations_are_typed_and_run_in_federated_maps(runtime):
  assert str(length.type_signature) == "(str -> int32)"
  assert str(stars.type_signature) == "(int32 -> str)"
  assert str(word_lengths.type_signature) == "({str}@CLIENTS -> {int32}@CLIENTS)"
  with warnings.catch_warnings():
    warnings.simplefilter("error", fx.runtime.FallbackWarning)
    lengths = word_lengths(['federated', b'jax', np.str_('')])
    rows = star_rows([3, 0, 1])
  assert [int(x) for x in lengths] == [9, 3, 0]
  assert all(np.asarray(x).dtype == np.int32 for x in lengths)
  assert rows == [b'***', b'', b'*']


def test_a_host_computation_called_on_its_own_returns_bytes(runtime):
  assert length('abcd') == 4
  assert stars(2) == b'**'


def test_strings_flow_through_placement_broadcast_zip_and_eval(runtime):
  @fx.federated_computation(fx.FederatedType(np.str_, fx.SERVER),
                            fx.FederatedType(np.int32, fx.CLIENTS))
  def tag(label, counts):
    labels = fx.federated_broadcast(label)
    constant = fx.federated_value('c', fx.CLIENTS)
    evaluated = fx.federated_eval(fx.computation(lambda: 'e'), fx.CLIENTS)
    return fx.federated_zip((labels, counts, constant, evaluated))

  assert str(tag.type_signature) == (
      "(<label=str@SERVER,counts={int32}@CLIENTS> -> {<str,int32,str,str>}@CLIENTS)")
  result = tag(b'round', [1, 2])
  assert [tuple(r) for r in result] == [(b'round', 1, b'c', b'e'), (b'round', 2, b'c', b'e')]


def test_string_tensors_come_back_as_object_arrays_of_bytes(runtime):
  split = fx.computation(np.str_, result=(np.str_, [None]))(lambda s: np.array(s.split(' ')))

  @fx.federated_computation(fx.FederatedType(np.str_, fx.CLIENTS))
  def words(sentences):
    return fx.federated_map(split, sentences)

  assert str(words.type_signature) == "({str}@CLIENTS -> {str[?]}@CLIENTS)"
  first, second = words(np.array([b'a bc', b'd'], object))
  assert first.dtype == object and first.tolist() == [b'a', b'bc']
  assert second.tolist() == [b'd']


def test_sequences_of_strings_reduce_on_the_host(runtime):
  @fx.computation(np.str_, np.str_)
  def longer(acc, word):
    return word if len(word) > len(acc) else acc

  @fx.federated_computation(fx.FederatedType(fx.SequenceType(np.str_), fx.CLIENTS))
  def longest(words):
    return fx.sequence_reduce(words, '', longer)

  assert longest([['a', 'abc', 'ab'], [], [b'xy']]) == [b'abc', b'', b'xy']


# --- Mixing host and compiled parts on the vectorized runtime ---


@fx.computation(np.int32)
def square(x):
  return x * x


@fx.federated_computation(fx.FederatedType(np.int32, fx.CLIENTS))
def sum_of_squares(values):
  return fx.federated_sum(fx.federated_map(square, values))


@fx.federated_computation(fx.FederatedType(np.str_, fx.CLIENTS))
def sum_of_squared_lengths(words):
  lengths = fx.federated_map(length, words)  # On the host: JAX cannot hold strings.
  return sum_of_squares(lengths)  # String-free: one compiled program.


def test_a_round_mixes_host_and_compiled_parts_without_falling_back():
  runtime = fx.runtime.vectorized()
  words = ['a', 'bb', 'ccc', 'dddd']
  with runtime, warnings.catch_warnings():
    warnings.simplefilter("error", fx.runtime.FallbackWarning)
    assert sum_of_squared_lengths(words) == 1 + 4 + 9 + 16
    traced = runtime.programs_traced
    assert sum_of_squared_lengths(['xyz', '', 'q', 'hello']) == 9 + 0 + 1 + 25
  assert traced == 1  # The string-free part was compiled ...
  assert runtime.programs_traced == traced  # ... once: the next round reuses its program.
  with fx.runtime.sequential():
    assert sum_of_squared_lengths(words) == 30


def test_a_federated_map_of_a_jax_computation_in_a_host_body_runs_compiled():
  @fx.federated_computation(fx.FederatedType(np.str_, fx.CLIENTS))
  def squared_lengths(words):
    return fx.federated_map(square, fx.federated_map(length, words))

  runtime = fx.runtime.vectorized()
  with runtime:
    assert squared_lengths(['ab', 'abc']) == [4, 9]
    traced = runtime.programs_traced
    assert squared_lengths(['abcd', '']) == [16, 0]
    explained = fx.runtime.explain(squared_lengths, ['ab', 'abc'])
  assert traced == 1 and runtime.programs_traced == 1
  assert "host" in explained and "compiled" in explained


def test_a_body_that_makes_strings_inside_runs_on_the_host_and_its_numbers_compiled():
  @fx.federated_computation(fx.FederatedType(np.int32, fx.CLIENTS))
  def labelled_total(values):  # No string in its type: found when its program is traced.
    label = fx.federated_value('total', fx.SERVER)
    return fx.federated_zip((fx.federated_map(length, label), sum_of_squares(values)))

  assert str(labelled_total.type_signature) == "({int32}@CLIENTS -> <int32,int32>@SERVER)"
  runtime = fx.runtime.vectorized()
  with runtime, warnings.catch_warnings():
    warnings.simplefilter("error", fx.runtime.FallbackWarning)
    assert tuple(labelled_total([1, 2, 3])) == (5, 14)
    assert tuple(labelled_total([2, 2, 2])) == (5, 12)
  assert runtime.programs_traced == 1  # sum_of_squares; the abandoned trace is not a program.


# --- Errors ---


def test_a_host_result_that_cannot_be_inferred_asks_for_a_declaration():
  with pytest.raises(fx.FederatedTypeError, match=r"(?s)parse.*running it once on example "
                     r"values.*ValueError.*hint: declare the result type.*result="):
    @fx.computation(np.str_)
    def parse(text):
      return np.int32(int(text))


def test_a_host_result_that_does_not_fit_its_type_names_the_computation(runtime):
  split = fx.computation(np.str_, result=(np.str_, [2]))(lambda s: np.array(s.split(',')))

  @fx.federated_computation(fx.FederatedType(np.str_, fx.CLIENTS))
  def pairs(texts):
    return fx.federated_map(split, texts)

  assert [r.tolist() for r in pairs(['a,b'])] == [[b'a', b'b']]
  with pytest.raises(fx.FederatedTypeError, match=r"(?s)<lambda>: result: the shape does not "
                     r"fit.*expected: str\[2\].*actual:   str\[3\]"):
    pairs(['a,b,c'])


def test_strings_are_refused_where_arithmetic_is_needed():
  with pytest.raises(fx.FederatedTypeError, match="federated_sum: the value must hold only "
                     "numeric tensors"):
    @fx.federated_computation(fx.FederatedType(np.str_, fx.CLIENTS))
    def total(words):
      return fx.federated_sum(words)


RAGGED_FALLBACK = (r"(?s)total: running on the sequential runtime because add_batch reduces "
                   r"over the rows of a batch.*masked_batch")


def labelled_ragged_sum():
  """A host body (a string label) around a string-free part whose clients' batches differ in
  size and whose reduction does not mask padded rows: `labelled(label, data)` and its data
  (the label and the sum 6.0)."""
  batch = fx.TensorType(np.float32, [None])

  @fx.computation(np.float32, batch)
  def add_batch(acc, b):
    return acc + b.sum()  # Not masked: padded rows would count.

  @fx.federated_computation(fx.FederatedType(fx.SequenceType(batch), fx.CLIENTS))
  def total(data):
    return fx.federated_sum(fx.sequence_reduce(data, np.float32(0), add_batch))

  @fx.federated_computation(fx.FederatedType(np.str_, fx.SERVER),
                            fx.FederatedType(fx.SequenceType(batch), fx.CLIENTS))
  def labelled(label, data):
    return fx.federated_zip((label, total(data)))

  data = [[np.ones(3, np.float32), np.ones(1, np.float32)], [np.ones(2, np.float32)]]
  return labelled, data


def test_a_nested_call_whose_elements_differ_in_shape_runs_on_the_host_and_says_so():
  labelled, data = labelled_ragged_sum()
  with fx.runtime.vectorized():
    with pytest.warns(fx.runtime.FallbackWarning, match=RAGGED_FALLBACK + r"\(3\)"):
      assert tuple(labelled('sum', data)) == (b'sum', 6.0)


def test_a_number_where_a_string_is_expected_is_named(runtime):
  with pytest.raises(fx.FederatedTypeError, match=r"word_lengths: argument\[client 1\]: expected "
                     r"strings.\n  expected: str\n  actual:   int64 3"):
    word_lengths(['a', 3])


def test_host_computations_call_computations_as_python_calls(runtime):
  @fx.computation(np.str_)
  def shout(word):
    return word.upper() + '!'

  @fx.computation(np.str_)
  def squared_shout_length(word):
    return square(length(shout(word)))  # Host, host, then JAX (inlined).

  assert str(squared_shout_length.type_signature) == "(str -> int32)"

  @fx.federated_computation(fx.FederatedType(np.str_, fx.CLIENTS))
  def shouts(words):
    return fx.federated_zip((fx.federated_map(shout, words),
                             fx.federated_map(squared_shout_length, words)))

  assert [tuple(r) for r in shouts(['hi', 'abc'])] == [(b'HI!', 9), (b'ABC!', 16)]


def test_a_local_computation_iterating_a_dataset_runs_on_the_host_in_a_host_body(runtime):
  cd = fx.simulation.ClientData.from_dict({"a": {"v": np.arange(3, dtype=np.int32)},
                                           "b": {"v": np.arange(5, dtype=np.int32)}})

  @fx.computation(fx.SequenceType({"v": np.int32}))
  def count(elements):
    n = np.int32(0)
    for _ in elements:  # Exact only in Python: the compiled part hands it back to the host.
      n = n + 1
    return n

  @fx.federated_computation(fx.FederatedType(np.str_, fx.CLIENTS))
  def sizes(client_ids):
    return fx.federated_map(count, fx.federated_map(cd.dataset_computation, client_ids))

  with warnings.catch_warnings():
    warnings.simplefilter("error", fx.runtime.FallbackWarning)
    assert [int(n) for n in sizes(["b", "a"])] == [5, 3]
