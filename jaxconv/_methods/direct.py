"""`method="direct"`: shift-and-add, the sliding-window definition made fast.

`y = sum over kernel offsets o of  w[:, :, o] (x) x_padded[..., o*d :: stride]`.
Each term is one strided slice of the padded input contracted with one kernel
tap over channels; XLA fuses the sum. Depthwise taps (one input channel per
group) are plain broadcast multiplies, so a depthwise conv costs
`prod(kernel)` fused multiply-adds per output with no GEMM and no patch tensor.
Work is `O(N * C_out * C_in/groups * prod(out) * prod(kernel))`, memory
`O(input + output)`: it wins for depthwise and small channel counts.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from .._geometry import Geometry
from .._padding import pad_and_dilate
from .._patches import window_slices
from .common import acc_dtype, grouped_matmul, out_dtype


# One slice and one multiply-add per tap are unrolled into the program: past
# this many taps compile time (~10 ms a tap on CPU) outweighs any gain.
MAX_TAPS = 1024


def supports(g: Geometry) -> str | None:
  """Any padding, stride, dilation or groups; at most `MAX_TAPS` kernel taps."""
  taps = math.prod(g.kernel_size)
  if taps > MAX_TAPS:
    return f"it unrolls one slice per kernel tap and this kernel has {taps} > {MAX_TAPS}"
  return None


def conv(x, w, g: Geometry):
  """Sum over kernel taps of strided input slices times the tap's weights."""
  n, groups = g.batch, g.groups
  cg, og = g.in_channels_per_group, g.out_channels_per_group
  length = math.prod(g.out_spatial)
  acc = acc_dtype(g)
  xp = pad_and_dilate(x, g)
  # (C_out, Cg, *k) -> (G, Og, Cg, *k): the taps of each group.
  wg = w.reshape(groups, og, cg, *g.kernel_size)
  total = None
  for offset, window in window_slices(xp, g.kernel_size, g.dilation, g.stride,
                                      g.out_spatial):
    tap = wg[(..., *offset)]                              # (G, Og, Cg)
    cols = window.reshape(n, groups, cg, length)          # (N, G, Cg, L)
    if cg == 1:  # depthwise: no contraction, a broadcast multiply
      term = cols.astype(acc) * tap.astype(acc)[None, :, :, :]
    else:
      term = grouped_matmul(tap, cols, g)                 # (N, G, Og, L)
    total = term if total is None else total + term
  return total.reshape(g.out_shape).astype(out_dtype(g))
