"""The robust aggregation rules as pure JAX functions of stacked client values.

Each takes a pytree whose leaves are `[n, ...]` floating arrays (client `i`'s value is row `i`
of every leaf, as `fx.federated_stack` gives them) and returns one value of the same structure
and dtypes, computed on the client axis as array programs (no per-client Python). Internal
arithmetic runs in at least float32. `n` is static (a traced shape), so rules whose parameters
depend on it (how many to trim, select, or compare with) resolve them while tracing.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp


def _leaves(stacked: Any) -> tuple[list, Any, int]:
  leaves, treedef = jax.tree_util.tree_flatten(stacked)
  return leaves, treedef, leaves[0].shape[0]


def _compute_dtype(leaves: list) -> Any:
  return jnp.result_type(jnp.float32, *[x.dtype for x in leaves])


def _per_client(mask: jax.Array, like: jax.Array) -> jax.Array:
  """A `[n]` mask broadcastable against the `[n, ...]` leaf `like`."""
  return mask.reshape(mask.shape + (1,) * (like.ndim - 1))


def _finite_clients(leaves: list) -> jax.Array:
  """`bool[n]`: the clients whose every value is finite (no NaN, no infinity)."""
  finite = jnp.ones(leaves[0].shape[0], bool)
  for x in leaves:
    finite &= jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1)
  return finite


def coordinate_median(stacked: Any) -> Any:
  """The coordinate-wise median over the client axis, NaN entries ignored (`jnp.nanmedian`):
  a coordinate where every client holds NaN is NaN. An even count averages the middle two."""
  def median(x):
    return jnp.nanmedian(x.astype(_compute_dtype([x])), axis=0).astype(x.dtype)

  return jax.tree_util.tree_map(median, stacked)


def trimmed_mean(stacked: Any, beta: float) -> Any:
  """The coordinate-wise mean after dropping, from each end, `int(beta * m)` of the `m` values
  that are not NaN (Flower's `FedTrimmedAvg` when no value is NaN, where `m = n`)."""
  def leaf(x):
    n = x.shape[0]
    # int(beta * m) in Python for every possible count m, so the cut is Flower's exactly.
    cuts = jnp.asarray([int(beta * m) for m in range(n + 1)], jnp.int32)
    ordered = jnp.sort(x.astype(_compute_dtype([x])), axis=0)  # NaNs sort last.
    real = jnp.sum(~jnp.isnan(ordered), axis=0)
    cut = cuts[real]
    rank = jnp.arange(n).reshape((n,) + (1,) * (x.ndim - 1))
    kept = (rank >= cut) & (rank < real - cut)
    total = jnp.sum(jnp.where(kept, ordered, 0), axis=0)
    return (total / (real - 2 * cut)).astype(x.dtype)  # 0 / 0 = NaN when every value is NaN.

  return jax.tree_util.tree_map(leaf, stacked)


def krum_neighbors(n: int, num_byzantine: int) -> int:
  """How many nearest neighbours a Krum score sums: `n - f - 2`, at least 1 (Flower's clamp
  for `n <= f + 2`), at most the `n - 1` other clients."""
  return min(max(1, n - num_byzantine - 2), n - 1)


def squared_distances(leaves: list, finite: jax.Array) -> jax.Array:
  """`float[n, n]`: squared Euclidean distances between the clients' flattened values, through
  their Gram matrix (one matmul per leaf, summed), `inf` on the diagonal and for any pair with
  a non-finite client or a distance too large for the dtype.

  Values are first centred on the finite clients' coordinate-wise median, so the cancellation
  in `|a|^2 + |b|^2 - 2 a.b` is relative to the spread of the honest majority, not to the size
  of the values (or of an attacker's)."""
  n = leaves[0].shape[0]
  dtype = _compute_dtype(leaves)
  gram = jnp.zeros((n, n), dtype)
  for x in leaves:
    flat = x.reshape(n, -1).astype(dtype)
    center = jnp.nanmedian(jnp.where(finite[:, None], flat, jnp.nan), axis=0)
    centred = jnp.where(finite[:, None], flat - center, 0)
    # HIGHEST: an accelerator's default float32 matmul may round inputs to TF32.
    gram += jnp.matmul(centred, centred.T, precision=jax.lax.Precision.HIGHEST)
  norms = jnp.diagonal(gram)
  distances = jnp.maximum(norms[:, None] + norms[None, :] - 2 * gram, 0)
  usable = finite[:, None] & finite[None, :] & ~jnp.eye(n, dtype=bool)
  return jnp.where(usable & ~jnp.isnan(distances), distances, jnp.inf)


def krum(stacked: Any, num_byzantine: int, num_selected: int) -> tuple[Any, dict]:
  """(Multi-)Krum: the mean of the `num_selected` clients with the lowest scores, a score being
  the sum of squared distances to the client's `krum_neighbors(n, f)` nearest others.

  Ties go to the lower client index. Returns (the aggregate, `{num_neighbors, num_selected}`
  as used after clamping: `num_selected` is at most `n`)."""
  leaves, treedef, n = _leaves(stacked)
  finite = _finite_clients(leaves)
  distances = squared_distances(leaves, finite)
  neighbors = krum_neighbors(n, num_byzantine)
  if neighbors:
    nearest = -jax.lax.top_k(-distances, neighbors)[0]
    scores = jnp.sum(nearest, axis=1)
  else:  # One client: no one to compare with.
    scores = jnp.zeros(n, distances.dtype)
  scores = jnp.where(finite, scores, jnp.inf)
  selected = min(num_selected, n)
  chosen = jax.lax.top_k(-scores, selected)[1]  # Lowest scores; ties to the lower index.
  dtype = _compute_dtype(leaves)
  means = [jnp.mean(x[chosen].astype(dtype), axis=0).astype(x.dtype) for x in leaves]
  return (jax.tree_util.tree_unflatten(treedef, means),
          {"num_neighbors": jnp.int32(neighbors), "num_selected": jnp.int32(selected)})


def _distances_to(leaves: list, point: list) -> jax.Array:
  """`float[n]`: each client's Euclidean distance to `point` over all leaves, scaled by its
  largest difference first so that large values do not overflow the squares."""
  n = leaves[0].shape[0]
  diffs = [(x - p).reshape(n, -1) for x, p in zip(leaves, point)]
  scale = jnp.zeros(n, leaves[0].dtype)
  for d in diffs:
    scale = jnp.maximum(scale, jnp.max(jnp.abs(d), axis=1, initial=0))
  safe = jnp.where(scale > 0, scale, 1)
  squares = sum(jnp.sum(jnp.square(d / safe[:, None]), axis=1) for d in diffs)
  return scale * jnp.sqrt(squares)


def geometric_median(stacked: Any, weights: Optional[jax.Array], max_iterations: int,
                     eps: float, ftol: float) -> tuple[Any, dict]:
  """RFA's smoothed Weiszfeld algorithm (Pillutla, Kakade and Harchaoui): the (weighted)
  geometric median of the clients' flattened values.

  From the weighted mean `v = sum_i a_i x_i` (`a_i = w_i / sum_j w_j`), each iteration sets
  `b_i = a_i / max(eps, |v - x_i|)` and `v = sum_i b_i x_i / sum_i b_i`, and stops after
  `max_iterations` or once the objective `g(v) = sum_i a_i |v - x_i|` changes by at most
  `ftol * g(v)`. A client with a non-finite value or weight gets `a_i = 0`.

  Returns (the median, `{num_iterations}`: the Weiszfeld iterations run)."""
  leaves, treedef, n = _leaves(stacked)
  dtype = _compute_dtype(leaves)
  finite = _finite_clients(leaves)
  weights = jnp.ones(n, dtype) if weights is None else weights.astype(dtype)
  finite &= jnp.isfinite(weights)
  alphas = jnp.where(finite, weights, 0)
  alphas = alphas / jnp.sum(alphas)
  points = [jnp.where(_per_client(finite, x), x.astype(dtype), 0) for x in leaves]

  def average(betas):
    betas = betas / jnp.sum(betas)
    # HIGHEST: an accelerator's default float32 dot may round inputs to TF32 (10-bit mantissa).
    return [jnp.tensordot(betas, x, axes=1, precision=jax.lax.Precision.HIGHEST) for x in points]

  def objective(distances):
    return jnp.sum(alphas * distances)

  def unconverged(carry):
    _, _, value, previous, iteration = carry
    return (iteration < max_iterations) & ~(jnp.abs(previous - value) <= ftol * value)

  def weiszfeld(carry):
    _, distances, value, _, iteration = carry
    median = average(alphas / jnp.maximum(eps, distances))
    distances = _distances_to(points, median)
    return median, distances, objective(distances), value, iteration + 1

  median = average(alphas)
  distances = _distances_to(points, median)
  start = (median, distances, objective(distances), jnp.asarray(jnp.inf, dtype), jnp.int32(0))
  median, _, _, _, iterations = jax.lax.while_loop(unconverged, weiszfeld, start)
  out = [m.astype(x.dtype) for m, x in zip(median, leaves)]
  return jax.tree_util.tree_unflatten(treedef, out), {"num_iterations": iterations}


__all__ = ["coordinate_median", "trimmed_mean", "krum", "krum_neighbors", "geometric_median",
           "squared_distances"]
