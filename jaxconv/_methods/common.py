"""Small helpers shared by the slice-based methods (dtypes and layouts)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from .._geometry import Geometry

_LOW_PRECISION = (np.dtype(jnp.bfloat16), np.dtype(jnp.float16))


def out_dtype(g: Geometry):
  """The dtype lax returns for these inputs."""
  return g.preferred_element_type if g.preferred_element_type is not None else g.dtype


def acc_dtype(g: Geometry):
  """Accumulate low-precision floats in float32, as XLA's convolution does."""
  if g.preferred_element_type is not None:
    return g.preferred_element_type
  return np.dtype(jnp.float32) if g.dtype in _LOW_PRECISION else g.dtype


def grouped_matmul(wg, cols, g: Geometry, *, broadcast: bool = True):
  """`(G, Og, K) x (N, G, K, L) -> (N, G, Og, L)`, one GEMM per group.

  With `broadcast` (the default) the kernel is broadcast over the batch, a
  `(N, G, Og, K)` copy, so one batched GEMM writes the channels-first result
  directly, with no transpose of the (large) output. Without it the kernel is
  used as it is: one GEMM per group over all `N * L` columns gives
  `(G, Og, N, L)`, transposed once to the output layout. The first costs
  `N * size(wg)` extra memory, the second `size(output)` (and, with several
  groups, a copy of `cols`): `broadcast_weights` chooses.
  """
  acc = acc_dtype(g)
  if broadcast:
    n = cols.shape[0]
    wb = jnp.broadcast_to(wg, (n, *wg.shape))
    return jnp.matmul(wb, cols, precision=g.precision, preferred_element_type=acc)
  y = lax.dot_general(wg, cols, (((2,), (2,)), ((0,), (1,))), precision=g.precision,
                      preferred_element_type=acc)             # (G, Og, N, L)
  return y.transpose(2, 0, 1, 3)


def broadcast_weights(wg_shape, cols_shape) -> bool:
  """Whether `grouped_matmul` should broadcast `wg` over the batch.

  False only for one group (`G == 1`) with `K > L`: deep layers with many
  channels and few positions, where the `(N, Og, K)` broadcast copy of the
  kernel is larger than the `(N, Og, L)` output (for a 512 -> 512 3x3 conv on
  7x7 maps it is 10x the patch tensor, and slower). With several groups the
  unbroadcast GEMM needs `cols` with the group axis leading, which XLA gets by
  copying it, so the broadcast stays.
  """
  return wg_shape[0] > 1 or wg_shape[-1] <= cols_shape[-1]
