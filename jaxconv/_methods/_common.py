"""Small helpers shared by the slice-based methods (dtypes and layouts)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

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


def grouped_matmul(wg, cols, g: Geometry):
  """`(G, Og, K) x (N, G, K, L) -> (N, G, Og, L)`, one batched GEMM.

  The kernel is broadcast over the batch so the GEMM writes the channels-first
  result directly, with no transpose of the (large) output.
  """
  n = cols.shape[0]
  wb = jnp.broadcast_to(wg, (n, *wg.shape))
  return jnp.matmul(wb, cols, precision=g.precision, preferred_element_type=acc_dtype(g))
