"""A fusion boundary around a method's program: XLA:CPU's YNNPACK fusions
must not absorb its elementwise tail.

XLA:CPU (jaxlib 0.10) hands a reduction and the elementwise ops that feed it
to one YNNPACK fusion. When the reduction follows a convolution written as a
sum of shifted slices (`direct`'s taps, the transposes of the other methods'
pads and slices) — a LayerNorm or a BatchNorm after the convolution, or
their backward — the tap sum moves into that fusion, and every slice it reads,
which YNNPACK cannot take, is materialised on its own: measured on a 7x7
depthwise `direct` of (16, 48, 32, 32), 1.4 ms alone, 18 ms followed by a
LayerNorm over channels, one `(16, 48, 32, 32)` window per tap.

`lax.reduce_precision` to the array's own format is the identity, bit for
bit (denormals, infinities and NaNs included), and linear (its derivatives
are itself), but no YNNPACK fusion takes it, so the sum stays in XLA's own
loop fusion with its slices: 1.7 ms with the LayerNorm. Applied to the
method's input it bounds the input gradient, the transpose, the same way.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax


def fusion_boundary(a):
  """`a` unchanged, but no XLA:CPU YNNPACK fusion reaches across it.

  Real floating-point arrays pass through `lax.reduce_precision` to their own
  exponent and mantissa widths, an exact identity that XLA keeps as a loop
  op; other dtypes (integers, complex) are returned as they are.

  Args:
    a: a JAX array.

  Returns:
    `a`, bit for bit.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxconv._fusion import fusion_boundary
    >>> x = jnp.array([1e-40, 3.25, jnp.inf, jnp.nan], jnp.float32)
    >>> bool(jnp.array_equal(fusion_boundary(x), x, equal_nan=True))
    True
  """
  dtype = np.dtype(a.dtype)
  if not jnp.issubdtype(dtype, jnp.floating):
    return a
  info = jnp.finfo(dtype)
  return lax.reduce_precision(a, exponent_bits=info.nexp, mantissa_bits=info.nmant)
