"""`method="fft"`: convolution by real FFTs over the spatial axes.

Rules (the plan for a geometry is `plan(g)`; `plan(g).describe()` prints it):

* **Transforms.** Real inputs use `rfftn`/`irfftn` over the spatial axes only
  (complex inputs `fftn`/`ifftn`); channel mixing is one contraction per
  frequency, `einsum('bgcf,gocf->bgof', precision=g.precision)`. Groups and
  depthwise are reshapes of the channel axis; one input channel per group is a
  broadcast multiply with no contraction. Transform lengths are 2·3·5·7-smooth
  (`jaxconv.next_fast_len`).
* **Padding is free.** Zero padding is a circular offset of the kernel, not
  zeros in the input: the transform only needs `n + lo` and `last read + 1`
  samples per axis (so 'SAME' costs `n + k/2`, 'VALID' costs `n`). Negative
  padding, and input that no output reads (e.g. the tail a stride skips), is
  cropped before the transform.
* **Stride** is a polyphase split: `s` phases of length `L/s` become extra
  input channels of the same contraction, so the inverse transforms are
  `s`-times smaller and nothing is computed and then discarded.
* **Dilation.** rhs dilation zero-dilates the kernel before its (pruned)
  transform; lhs dilation (transposed convolutions) inserts zeros in the input
  with the same `lax.pad` that crops it.
* **Kernel transform** is done axis by axis, last axis first, so the
  zero rows of the padded kernel are never transformed.
* **Overlap-add** is chosen per axis by a flop/memory-traffic estimate
  (`jaxconv._fftcore.cost`) when the input is much longer than the kernel:
  blocks of `hop` samples, transforms of `hop + taps - 1`, kernel spectrum of
  block size. When all blocks' spectra together would exceed 64 MiB they are
  processed by `lax.map` in groups of about 16 MiB, so temporaries stay
  O(block group) instead of O(input).
* **Dtypes.** Transforms run in float32/complex64, or float64/complex128 for
  64-bit inputs or `preferred_element_type`; float16/bfloat16 are computed in
  float32. The result is cast to lax's output dtype. Integer and bool inputs
  are declined (`supports` gives the reason) since the FFT is not exact.
* **Accuracy.** Rounding error is about `eps * log2(transform size)` times the
  output's scale (`jaxconv.testing.tolerance` uses that factor).
* **Derivatives** are JAX's own through the FFTs: VJP, JVP and higher orders
  are all FFT convolutions of the same cost.
* **Circular padding.** `conv_circular` computes `padding_mode='circular'`
  natively as one periodic transform of the input's own size (kernel folded
  modulo the period, outputs read at `(o * stride) mod n`), when that is
  cheaper than wrap-padding plus a linear transform (`prefers_circular`).

Recipe, causal long convolution (Hyena/S4): a depthwise kernel as long as the
sequence, `conv(x, w, padding=((K - 1, 0),), groups=C, method="fft")`, costs
two length-`2L` real FFTs per channel and is exact to float rounding.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .. import _fftcore
from .._geometry import Geometry


def supports(g: Geometry) -> str | None:
  """Floating-point and complex inputs of any geometry; not integers."""
  dtypes = [g.dtype] + ([g.preferred_element_type]
                        if g.preferred_element_type is not None else [])
  if not all(jnp.issubdtype(d, jnp.inexact) for d in dtypes):
    return (f"the FFT is inexact, so integer/bool dtypes ({np.dtype(g.dtype).name}) "
            "need an exact method")
  return None


def plan(g: Geometry, overlap_add: bool | None = None) -> _fftcore.Plan:
  """The static plan `conv` runs for `g` (see the module docstring).

  Args:
    g: a method geometry (zero padding).
    overlap_add: None picks by cost; True forces overlap-add where an axis has
      more than one block; False never blocks.

  Returns:
    A `jaxconv._fftcore.Plan`; `.describe()` gives one line per axis.

  Example:
    >>> import jax
    >>> from jaxconv._geometry import make_geometry
    >>> from jaxconv._methods import fft
    >>> x = jax.ShapeDtypeStruct((1, 4, 1 << 16), "float32")
    >>> w = jax.ShapeDtypeStruct((4, 1, 33), "float32")
    >>> print(fft.plan(make_geometry("f", x, w, groups=4, padding="SAME")).describe())
    axis 0: overlap-add, 216 blocks of 304 -> FFT 336, 1 phase(s)
  """
  return _fftcore.plan_conv(g, overlap_add)


def conv(x, w, g: Geometry):
  """The correlation of `x` `(N, C_in, *spatial)` with `w` by FFT.

  Args:
    x: `(N, C_in, *spatial)`, float or complex.
    w: `(C_out, C_in // groups, *kernel)`, same dtype.
    g: the method geometry.

  Returns:
    `(N, C_out, *g.out_spatial)` in lax's output dtype.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from jaxconv._geometry import make_geometry
    >>> from jaxconv._methods import fft
    >>> x = jnp.array([[[1.0, 2.0, 3.0, 4.0]]]); h = jnp.array([[[1.0, 0.0, -1.0]]])
    >>> with jnp.printoptions(precision=3, suppress=True):
    ...   print(np.asarray(fft.conv(x, h, make_geometry("f", x, h))))
    [[[-2. -2.]]]
  """
  return _fftcore.run(x, w, g, _fftcore.plan_conv(g))


def prefers_circular(g: Geometry) -> bool:
  """Whether `conv_circular` is cheaper than wrap-padding then `conv`.

  Args:
    g: a user geometry with `padding_mode='circular'`.

  Returns:
    True when the periodic transform of the input's own size wins.
  """
  return _fftcore.periodic_is_cheaper(g)


def conv_circular(x, w, g: Geometry):
  """`padding_mode='circular'` as one periodic FFT of the input's own size.

  Args:
    x: the *unpadded* input `(N, C_in, *spatial)`.
    w: `(C_out, C_in // groups, *kernel)` (already flipped if `g.flip`).
    g: the user geometry: `padding_mode='circular'`, each pad at most the
      input size, no lhs dilation (as `make_geometry` enforces).

  Returns:
    `(N, C_out, *g.out_spatial)`, equal to wrap-padding `x` and a VALID
    correlation.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from jaxconv._geometry import make_geometry
    >>> from jaxconv._methods import fft
    >>> x = jnp.array([[[1.0, 2.0, 3.0, 4.0]]]); h = jnp.array([[[1.0, 0.0, -1.0]]])
    >>> g = make_geometry("f", x, h, padding=1, padding_mode="circular")
    >>> with jnp.printoptions(precision=3, suppress=True):
    ...   print(np.asarray(fft.conv_circular(x, h, g)))
    [[[ 2. -2. -2.  2.]]]
  """
  return _fftcore.run(x, w, g, _fftcore.plan_periodic(g))
