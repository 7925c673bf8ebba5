"""`method="im2col"`: patches + one GEMM (seed 000 section 5, seed 001).

The padded input is unfolded into `(N, C_in * prod(kernel), L)` columns in
PyTorch's order, the kernel flattened to `(C_out, C_in/groups * prod(kernel))`,
and the convolution is one batched matrix product per group. Memory is the
patch tensor plus inputs and outputs (XLA temp bytes; tests/test_im2col_memory.py):
the patches are written once, by one fusion (`extract_patches`), and the GEMM
reads them in place. Reverse mode also needs their cotangent `w^T @ dy` to
fold into the input gradient; for a depthwise kernel XLA fuses it into the fold,
otherwise it is a second patch-sized buffer. A 1x1 stride-1 conv needs no
patches at all and is a plain GEMM over channels.
"""

from __future__ import annotations

import math

from .._geometry import Geometry
from .._padding import pad_and_dilate
from .._patches import extract_patches
from .common import broadcast_weights, grouped_matmul, out_dtype


# The patch tensor is materialised: refuse ones that would not fit in memory.
MAX_PATCH_ELEMENTS = 2**28
MAX_TAPS = 1024


def supports(g: Geometry) -> str | None:
  """Any padding, stride, dilation or groups, while the patch tensor is small enough."""
  taps = math.prod(g.kernel_size)
  if taps > MAX_TAPS:
    return f"it unrolls one slice per kernel tap and this kernel has {taps} > {MAX_TAPS}"
  elements = g.batch * g.in_channels * taps * math.prod(g.out_spatial)
  if elements > MAX_PATCH_ELEMENTS:
    return (f"its patch tensor would hold {elements:,} elements "
            f"(> {MAX_PATCH_ELEMENTS:,})")
  return None


def conv(x, w, g: Geometry):
  """`W_row @ unfold(x)` per group, reshaped to the output."""
  n, groups = g.batch, g.groups
  cg, og = g.in_channels_per_group, g.out_channels_per_group
  taps = math.prod(g.kernel_size)
  length = math.prod(g.out_spatial)
  xp = pad_and_dilate(x, g)
  if taps == 1 and all(s == 1 for s in g.stride):
    cols = xp.reshape(n, groups, cg, length)  # 1x1: the input is its own patch matrix
  else:
    patches = extract_patches(xp, g.kernel_size, g.dilation, g.stride, g.out_spatial)
    cols = patches.reshape(n, groups, cg * taps, length)
  wg = w.reshape(groups, og, cg * taps)
  y = grouped_matmul(wg, cols, g, broadcast=broadcast_weights(wg.shape, cols.shape))
  return y.reshape(g.out_shape).astype(out_dtype(g))
