"""`method="auto"`: which algorithm computes a given convolution.

For now a simple, documented rule (a measured cost model replaces it later):

1. Depthwise (one input channel per group, groups > 1) -> 'direct': a
   broadcast multiply-add per tap, which XLA's CPU convolution does slowly.
2. A 1x1 kernel at stride 1 without lhs dilation -> 'im2col': a plain GEMM
   over channels.
3. Everything else -> 'lax'.

Only methods whose `supports(g)` is None are ever chosen.
"""

from __future__ import annotations

import math

from ._geometry import Geometry
from ._methods import METHODS


def select(g: Geometry) -> tuple[str, str]:
  """Return `(method, reason)` for geometry `g`."""
  if g.is_depthwise and METHODS["direct"].supports(g) is None:
    return "direct", "depthwise: shift-and-add beats XLA's grouped convolution"
  if (math.prod(g.kernel_size) == 1 and all(s == 1 for s in g.stride)
      and all(d == 1 for d in g.lhs_dilation) and METHODS["im2col"].supports(g) is None):
    return "im2col", "1x1 kernel: the convolution is one GEMM over channels"
  return "lax", "default: XLA's native convolution"
