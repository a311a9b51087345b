"""`PaddedTensor`: a padded batch's tensor as a reduce function sees it (federax.core.rows)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from federax.core import rows
from federax.core.type_conversions import to_type
from federax.core.rows import PaddedTensor, RowMasked, RowMaskNotHonoured
from federax.core.sequences import _on_padded_batch

MASK = np.array([True, True, False, False])


MASK_ARRAY = jnp.asarray(MASK)  # One batch's mask: its tensors share it.


def padded(value=None, mask=MASK_ARRAY):
  value = np.arange(8.0).reshape(4, 2) if value is None else value
  return PaddedTensor(jnp.asarray(value), mask)


@pytest.mark.parametrize("use", [
    np.asarray, bool, len, iter, lambda x: x[0], lambda x: x == 1, lambda x: x + 1.0, float,
    jnp.sum, jnp.asarray, lambda x: jnp.ones([2]) * x, lambda x: np.sum(x)])
def test_numpy_jax_and_python_refuse_it(use):
  with pytest.raises(TypeError):
    use(padded())


def test_its_leading_dimension_is_its_real_rows():
  x = padded()
  assert int(x.shape[0]) == 2 and x.shape[1:] == (2,) and int(jnp.shape(x)[0]) == 2
  assert x.ndim == 2 and x.dtype == jnp.float32
  assert "float32[4, 2]" in repr(x)


def test_padded_tensors_wraps_the_row_leaves_of_an_element():
  element_type = to_type([(np.float32, [None, 2]), (np.int32, [3])])
  value = (jnp.zeros([4, 2]), jnp.arange(3))
  x, labels = rows.padded_tensors(RowMasked(value, jnp.asarray(MASK)), element_type)
  assert isinstance(x, PaddedTensor) and not isinstance(labels, PaddedTensor)
  assert x.mask is not None and np.array_equal(labels, np.arange(3))


def test_unpad_and_repad_keep_the_batch():
  x, y = padded(), padded(np.ones([4]))
  (a, b), padding = rows.unpad((x, y))
  np.testing.assert_array_equal(a, np.arange(8.0).reshape(4, 2))
  np.testing.assert_array_equal(padding.mask, MASK)
  again = rows.repad({"p": a * 2}, padding)["p"]
  assert isinstance(again, PaddedTensor) and again.mask is x.mask
  assert rows.unpad([1.0, None]) == ([1.0, None], None)


def test_unpad_refuses_two_batches_and_tensors_no_longer_rows():
  with pytest.raises(TypeError, match="different padded batches"):
    rows.unpad((padded(), padded(mask=jnp.asarray(MASK))))
  for fn in (jnp.sum, jnp.ones_like, lambda a: a[::-1]):  # Over its leaves: the mask too.
    changed = jax.tree.map(fn, padded())
    assert isinstance(changed, PaddedTensor)
    with pytest.raises(TypeError, match="no longer has its batch's row mask"):
      rows.unpad(changed)


def test_it_passes_through_a_gradients_auxiliary_output():
  x = padded()

  def loss(w):
    values, padding = rows.unpad(x)
    predictions = values * w
    return jnp.sum(jnp.where(padding.mask[:, None], predictions, 0.0)), rows.repad(
        predictions, padding)

  grad, aux = jax.grad(loss, has_aux=True)(2.0)
  assert grad == pytest.approx(0 + 1 + 2 + 3)
  assert isinstance(aux, PaddedTensor) and rows.holds_padded({"a": [aux]})
  np.testing.assert_array_equal(rows.unpad(aux)[0], np.arange(8.0).reshape(4, 2) * 2)


def test_a_reduce_function_on_a_padded_batch():
  batch = (padded(),)
  with pytest.raises(RowMaskNotHonoured, match=r"does not mask padded rows \(TypeError at "
                     r".*test_padded_tensor.py:\d+: _on_padded_batch\(lambda"):
    _on_padded_batch(lambda s, b: s + jnp.sum(b[0]), 0.0, batch)
  with pytest.raises(RowMaskNotHonoured, match="keeps a padded batch's tensor in its state"):
    _on_padded_batch(lambda s, b: b[0], 0.0, batch)
  assert _on_padded_batch(lambda s, b: s + b[0].shape[0], 1, batch) == 3
