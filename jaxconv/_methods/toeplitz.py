"""`method="toeplitz"`: GEMMs with block-Toeplitz matrices along the last axis.

Seeds 001/002: a 1-D correlation is a product with a banded Toeplitz matrix
whose rows are shifted copies of the kernel. Here that matrix is built along
the *last* spatial axis only, with channels folded in: for every tap `t` of the
leading kernel axes, `T_t` maps one padded input line `(C_in/G * W_pad)` to one
output line `(C_out/G * W_out)`,

    T_t[c, p, e, o] = w[e, c, t, j]  where  p = o * stride + j * dilation,

(zero elsewhere; strides and rhs dilation live in where the kernel values
sit). The leading axes are handled by strided slices of the padded input, one
per leading tap, exactly as the sliding-window definition reads them:

    y[n, e, o_lead, o] = sum_t sum_{c, p} x_pad[n, c, o_lead * s + t * d, p] T_t[c, p, e, o].

For 2-D that is one block-Toeplitz matrix per kernel row, summed over kernel
rows; for 1-D a single GEMM; for 3-D one matrix per `(k_d, k_h)` pair. Groups
are a batch dimension of the GEMM (the dense matrix would be block diagonal).
Zero padding and lhs dilation are applied first with one `lax.pad`.

Memory is `O(prod(k_lead) * C_in * W_pad * C_out * W_out / G)` for the
matrices, never the dense `(C_out * prod(out)) x (C_in * prod(in))` matrix.
Work is `W_pad / k_w` times the direct count (the band is mostly zeros), so it
pays when lines are short and channels many (a GEMM beats a sliding window),
or for depthwise convolutions on backends with slow grouped convolutions.

Exclusions: a geometry whose matrices would exceed `MAX_MATRIX_ELEMENTS`
elements (`supports` says so, with the size); use another method there.
"""

from __future__ import annotations

import itertools
import math

import jax.numpy as jnp
import numpy as np
from jax import lax

from .._geometry import Geometry
from .._padding import pad_and_dilate
from ._common import acc_dtype, out_dtype

MAX_MATRIX_ELEMENTS = 2**26
"""Largest total size (elements) of the block-Toeplitz matrices `conv` builds."""


def matrix_elements(g: Geometry) -> int:
  """Total elements of the block-Toeplitz matrices for geometry `g`."""
  return (math.prod(g.kernel_size[:-1]) * g.in_channels * g.padded_spatial[-1]
          * g.out_channels_per_group * g.out_spatial[-1])


def supports(g: Geometry) -> str | None:
  """Every geometry whose block-Toeplitz matrices fit `MAX_MATRIX_ELEMENTS`."""
  size = matrix_elements(g)
  if size > MAX_MATRIX_ELEMENTS:
    return (f"its block-Toeplitz matrices would have {size} elements, over the "
            f"budget of {MAX_MATRIX_ELEMENTS}")
  return None


def row_matrices(w, g: Geometry):
  """`(G, prod(k_lead), C_in/G, W_pad, C_out/G, W_out)` block-Toeplitz matrices.

  Built by one static gather from `w` (each `(p, o)` pair reads at most one
  tap), so it is exact and differentiable in `w`.
  """
  groups, og, cg = g.groups, g.out_channels_per_group, g.in_channels_per_group
  k, s, d = g.kernel_size[-1], g.stride[-1], g.dilation[-1]
  p_len, o_len = g.padded_spatial[-1], g.out_spatial[-1]
  lead = math.prod(g.kernel_size[:-1])
  offset = np.arange(p_len)[:, None] - np.arange(o_len)[None, :] * s   # (P, O)
  tap = offset // d
  inside = (offset % d == 0) & (tap >= 0) & (tap < k)
  wg = w.reshape(groups, og, cg, lead, k)
  t = jnp.take(wg, np.clip(tap, 0, k - 1).ravel(), axis=-1)
  t = jnp.where(inside.ravel(), t, jnp.zeros((), w.dtype))
  t = t.reshape(groups, og, cg, lead, p_len, o_len)
  return jnp.transpose(t, (0, 3, 2, 4, 1, 5))


def conv(x, w, g: Geometry):
  """Sum over leading kernel taps of (strided input lines) @ (block-Toeplitz matrix)."""
  n, groups = g.batch, g.groups
  cg = g.in_channels_per_group
  xp = pad_and_dilate(x, g)                       # (N, C_in, *padded)
  mats = row_matrices(w, g)                       # (G, lead, Cg, P, Og, O)
  p_len = g.padded_spatial[-1]
  out_lead = g.out_spatial[:-1]
  rows = math.prod(out_lead)
  acc = acc_dtype(g)
  total = None
  for i, taps in enumerate(itertools.product(*(range(k) for k in g.kernel_size[:-1]))):
    start = [t * d for t, d in zip(taps, g.dilation[:-1])]
    limit = [st + (o - 1) * s + 1 for st, o, s in zip(start, out_lead, g.stride[:-1])]
    lines = lax.slice(xp, (0, 0, *start, 0), (n, g.in_channels, *limit, p_len),
                      (1, 1, *g.stride[:-1], 1))
    lines = lines.reshape(n, groups, cg, rows, p_len)
    term = jnp.einsum("ngcmp,gcpeo->ngemo", lines, mats[:, i], precision=g.precision,
                      preferred_element_type=acc)
    total = term if total is None else total + term
  return total.reshape(g.out_shape).astype(out_dtype(g))
