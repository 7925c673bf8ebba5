"""`method="toeplitz"`: a GEMM with block-Toeplitz matrices along the last axis.

Seeds 001/002: a 1-D correlation is a product with a banded Toeplitz matrix
whose rows are shifted copies of the kernel. Here that matrix is built along
the *last* spatial axis only, with channels folded in: for every tap `t` of the
leading kernel axes, `T_t` maps one padded input line `(C_in/G * W_pad)` to one
output line `(W_out * C_out/G)`,

    T_t[c, p, o, e] = w[e, c, t, j]  where  p = o * stride + j * dilation,

(zero elsewhere; strides and rhs dilation live in where the kernel values
sit). The leading axes are handled by strided slices of the padded input, one
per leading tap, exactly as the sliding-window definition reads them:

    y[n, e, o_lead, o] = sum_t sum_{c, p} x_pad[n, c, o_lead * s + t * d, p] T_t[c, p, o, e].

For 2-D that is one block-Toeplitz matrix per kernel row, summed over kernel
rows; for 1-D a single matrix; for 3-D one per `(k_d, k_h)` pair. The sum over
leading taps is folded into the GEMM's contraction (the slices are stacked,
which measured ~3x faster on CPU than one GEMM per tap plus adds), and groups
are its batch dimension (the dense matrix would be block diagonal). Zero
padding and lhs dilation are applied first with one `lax.pad`; a transposed
convolution (lhs dilation at window stride 1) runs as its phases instead
(`jaxconv._phases`), so its matrices never hold the inserted zeros.

Memory: the matrices take `prod(k_lead) * C_in * W_pad * W_out * C_out / G`
elements and the stacked slices `prod(k_lead)` times the padded input (an
im2col over the leading axes only) -- never the dense
`(C_out * prod(out)) x (C_in * prod(in))` matrix. Work is `W_pad / k_w` times
the direct count (the band is mostly zeros) and the matrices are rebuilt from
`w` on every call, so it pays only when lines are short, or for depthwise
convolutions, where XLA's CPU grouped convolution is slow.

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
from .._phases import by_phases_conv, by_phases_cost, by_phases_supports, by_phases_temp_bytes
from .._padding import pad_and_dilate
from .common import (acc_dtype, check_pass, itemsize, out_dtype, padded_input_bytes,
                     sizes, working_set_bytes)

MAX_MATRIX_ELEMENTS = 2**26
"""Largest total size (elements) of the block-Toeplitz matrices `conv` builds."""


def matrix_elements(g: Geometry) -> int:
  """Total elements of the block-Toeplitz matrices for geometry `g`."""
  return (math.prod(g.kernel_size[:-1]) * g.in_channels * g.padded_spatial[-1]
          * g.out_channels_per_group * g.out_spatial[-1])


GENERIC_COEFFICIENTS = {"band_macs": 3.0e-3, "matrix": 1.5e-3, "call": 2.0e4}
"""Hand-set, NOT measured: nanoseconds per unit of each `cost` feature on
backends without a calibrated profile (GPU/TPU until someone runs
`python -m jaxconv.calibrate` there): at least as slow per unit of work as lax's convolution."""


NONFINITE_SPREAD = "line"
"""How far a NaN/Inf input spreads in the forward pass: the banded matrices multiply every input of a line, zeros included
(0 * inf = NaN), so a non-finite input reaches every output of the lines
that read its line."""

@by_phases_supports
def supports(g: Geometry, purpose: str = "call") -> str | None:
  """Every geometry whose block-Toeplitz matrices fit `MAX_MATRIX_ELEMENTS`,
  for every purpose."""
  del purpose
  size = matrix_elements(g)
  if size > MAX_MATRIX_ELEMENTS:
    return (f"its block-Toeplitz matrices would have {size} elements, over the "
            f"budget of {MAX_MATRIX_ELEMENTS}")
  return None


def _lines(g: Geometry) -> int:
  """Elements of the input lines sliced for all leading taps (the stacked GEMM operand)."""
  return (math.prod(g.kernel_size[:-1]) * g.batch * g.in_channels
          * math.prod(g.out_spatial[:-1]) * g.padded_spatial[-1])


@by_phases_cost
def cost(g: Geometry, pass_: str, *, cache_bytes: int) -> dict[str, float]:
  """Features of the cost model (`jaxconv._select`), for any `pass_`
  ('fwd', 'dx', 'dw': the same features, with a coefficient per pass).

  `band_macs` (the GEMMs with the banded matrices, zeros included), `matrix`
  (their elements), `lines` (input lines sliced), `lines_big` (the same when
  the working set exceeds `cache_bytes`), `call`.

  Example:
    >>> from jaxconv._geometry import geometry_of
    >>> from jaxconv._methods import toeplitz
    >>> g = geometry_of((1, 2, 6, 6), (4, 2, 3, 3))
    >>> toeplitz.cost(g, "fwd", cache_bytes=1 << 20)["matrix"] == toeplitz.matrix_elements(g)
    True
  """
  check_pass(pass_, "toeplitz")
  lines = _lines(g)
  big = working_set_bytes(g) > cache_bytes
  band_macs = (g.batch * g.in_channels * g.out_channels_per_group
               * math.prod(g.out_spatial[:-1]) * math.prod(g.kernel_size[:-1])
               * g.padded_spatial[-1] * g.out_spatial[-1])
  return dict(band_macs=band_macs, matrix=matrix_elements(g), lines=lines,
              lines_big=lines if big else 0, call=1)


@by_phases_temp_bytes
def temp_bytes(g: Geometry) -> int:
  """The matrices, the stacked input lines, the padded input and the GEMM's result."""
  acc = np.dtype(acc_dtype(g)).itemsize
  return (itemsize(g) * (matrix_elements(g) + _lines(g)) + padded_input_bytes(g)
          + acc * sizes(g)["y"])


def row_matrices(w, g: Geometry):
  """`(G, prod(k_lead), C_in/G, W_pad, W_out, C_out/G)` block-Toeplitz matrices.

  `T[g, t, c, p, o, e] = w[g * C_out/G + e, c, t, j]` where `p = o * stride +
  j * dilation` (zero elsewhere): for each leading tap `t`, reshaped to
  `(C_in/G * W_pad, W_out * C_out/G)`, the matrix that maps one padded input
  line to one output line. Built by one static gather from `w` (each `(p, o)`
  pair reads at most one tap), so it is exact and differentiable in `w`, and
  laid out so that the GEMM needs no transpose of it.
  """
  groups, og, cg = g.groups, g.out_channels_per_group, g.in_channels_per_group
  k, s, d = g.kernel_size[-1], g.stride[-1], g.dilation[-1]
  p_len, o_len = g.padded_spatial[-1], g.out_spatial[-1]
  lead = math.prod(g.kernel_size[:-1])
  offset = np.arange(p_len)[:, None] - np.arange(o_len)[None, :] * s   # (P, O)
  tap = offset // d
  inside = (offset % d == 0) & (tap >= 0) & (tap < k)
  # (C_out, Cg, *k) -> (G, lead, Cg, k, Og): the gathered axis before Og.
  wt = jnp.transpose(w.reshape(groups, og, cg, lead, k), (0, 3, 2, 4, 1))
  t = jnp.take(wt, np.clip(tap, 0, k - 1), axis=3)            # (G, lead, Cg, P, O, Og)
  return jnp.where(inside[:, :, None], t, jnp.zeros((), w.dtype))


@by_phases_conv
def conv(x, w, g: Geometry):
  """One (batched over groups) GEMM: input lines of all leading taps @ block-Toeplitz."""
  n, groups = g.batch, g.groups
  cg, og = g.in_channels_per_group, g.out_channels_per_group
  r = g.rank
  p_len, o_len = g.padded_spatial[-1], g.out_spatial[-1]
  out_lead = g.out_spatial[:-1]
  lead = math.prod(g.kernel_size[:-1])
  xp = pad_and_dilate(x, g)                                    # (N, C_in, *padded)
  # (N, G, Cg, *P_lead, P) -> (G, N, *P_lead, Cg, P): a line is (Cg, P), contiguous.
  xg = xp.reshape(n, groups, cg, *g.padded_spatial)
  xg = jnp.transpose(xg, (1, 0, *range(3, 3 + r - 1), 2, 2 + r))
  lines = []
  for taps in itertools.product(*(range(k) for k in g.kernel_size[:-1])):
    start = [t * d for t, d in zip(taps, g.dilation[:-1])]
    limit = [st + (o - 1) * s + 1 for st, o, s in zip(start, out_lead, g.stride[:-1])]
    lines.append(lax.slice(xg, (0, 0, *start, 0, 0), (groups, n, *limit, cg, p_len),
                           (1, 1, *g.stride[:-1], 1, 1)))
  # (G, N, *O_lead, lead, Cg, P) -> (G, N * prod(O_lead), lead * Cg * P).
  cols = jnp.stack(lines, axis=r + 1).reshape(groups, n * math.prod(out_lead),
                                          lead * cg * p_len)
  mats = row_matrices(w, g).reshape(groups, lead * cg * p_len, o_len * og)
  y = jnp.matmul(cols, mats, precision=g.precision, preferred_element_type=acc_dtype(g))
  # (G, N, *O_lead, O, Og) -> (N, G, Og, *O_lead, O).
  y = y.reshape(groups, n, *out_lead, o_len, og)
  y = jnp.transpose(y, (1, 0, r + 2, *range(2, r + 2)))
  return y.reshape(g.out_shape).astype(out_dtype(g))
