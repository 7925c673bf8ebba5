"""`method="fft"`: convolution by real FFTs over the spatial axes.

The engine is two modules: `plans` (static plans from Python ints: lengths,
crops, phases, overlap-add blocks, and `terms`, the one cost estimate of the
FFT) and `engine` (runs a plan on arrays). The scipy-style functions
(`jaxconv._signal`) use the same engine through `fast_len`, `plan_conv` and
`run` re-exported here.

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
  transform. lhs dilation (transposed convolutions) at window stride 1 is
  split into phases first (`jaxconv._phases`: one transform per phase of the
  undilated input); with a stride too it inserts zeros in the input with the
  same `lax.pad` that crops it.
* **Kernel transform** is done axis by axis, last axis first, so the
  zero rows of the padded kernel are never transformed.
* **Overlap-add** is chosen per axis by a flop/memory-traffic estimate
  (`plans.cost`) when the input is much longer than the kernel:
  blocks of `hop` samples, transforms of `hop + taps - 1`, kernel spectrum of
  block size. When all blocks' spectra together would exceed 16 MiB they are
  processed by a `lax.scan` over groups of about 4 MiB (`plans.chunked`), so
  temporaries stay O(block group) instead of O(input).
* **Dtypes.** Transforms run in float32/complex64, or float64/complex128 for
  64-bit inputs or `preferred_element_type`; float16/bfloat16 are computed in
  float32. The result is cast to lax's output dtype. Integer and bool inputs
  are declined (`supports` gives the reason) since the FFT is not exact.
* **Accuracy.** Rounding error is about `eps * log2(transform size)` times the
  output's scale (`jaxconv.testing.tolerance` uses that factor).
* **Derivatives** are JAX's own through the FFTs: VJP, JVP and higher orders
  are all FFT convolutions of the same cost.
* **Circular padding** (the method's `periodic` hook): `periodic_conv`
  computes `padding_mode='circular'` natively as one periodic transform of
  the input's own size (kernel folded modulo the period, outputs read at
  `(o * stride) mod n`). `jaxconv._select.prefers_periodic` runs it, for
  `method="fft"` and `method="auto"` alike, when its estimate
  (`periodic_cost`) beats wrap-padding plus a linear transform.

Recipe, causal long convolution (Hyena/S4): a depthwise kernel as long as the
sequence, `conv(x, w, padding=((K - 1, 0),), groups=C, method="fft")`, costs
two length-`2L` real FFTs per channel and is exact to float rounding.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from ..._geometry import Geometry
from ..._phases import by_phases_conv, by_phases_cost, by_phases_supports, by_phases_temp_bytes
from ..common import check_pass, itemsize, working_set_bytes
from .engine import run
from .plans import Plan, Terms, compute_dtypes, fast_len, plan_conv, plan_periodic, terms

__all__ = ["supports", "conv", "cost", "temp_bytes", "plan", "periodic_supports",
           "periodic_conv", "periodic_cost", "fast_len", "plan_conv", "run", "Plan"]


GENERIC_COEFFICIENTS = {"transform": 2.0e-2, "contract": 0.1, "contract_dw": 0.1,
                        "spectra": 2.0e-2, "call": 4.0e4}
"""Hand-set, NOT measured: nanoseconds per unit of each `cost` feature on
backends without a calibrated profile (GPU/TPU until someone runs
`python -m jaxconv.calibrate` there): transforms and small complex contractions at a small fraction of GEMM
speed, so only a much smaller FFT workload (large kernels, long filters) wins."""

ROUNDING = "transform"
"""Rounding error grows with log2 of the transform size, not only with the
reduction length (`jaxconv.testing.tolerance`); inexact even on small integers."""


NONFINITE_SPREAD = "block"
"""How far a NaN/Inf input spreads in the forward pass: a transform mixes every sample of its block, so a non-finite input
reaches every output of that block (the whole example's channels when there
is one block)."""

@by_phases_supports
def supports(g: Geometry, purpose: str = "call") -> str | None:
  """Floating-point and complex inputs of any geometry; not integers."""
  del purpose
  dtypes = [g.dtype] + ([g.preferred_element_type]
                        if g.preferred_element_type is not None else [])
  if not all(jnp.issubdtype(d, jnp.inexact) for d in dtypes):
    return (f"the FFT is inexact, so integer/bool dtypes ({np.dtype(g.dtype).name}) "
            "need an exact method")
  return None


def plan(g: Geometry, overlap_add: bool | None = None) -> Plan:
  """The static plan `conv` runs for `g` (see the module docstring).

  Args:
    g: a method geometry (zero padding).
    overlap_add: None picks by cost; True forces overlap-add where an axis has
      more than one block; False never blocks.

  Returns:
    A `plans.Plan`; `.describe()` gives one line per axis.

  Example:
    >>> import jax
    >>> from jaxconv._geometry import make_geometry
    >>> from jaxconv._methods import fft
    >>> x = jax.ShapeDtypeStruct((1, 4, 1 << 16), "float32")
    >>> w = jax.ShapeDtypeStruct((4, 1, 33), "float32")
    >>> print(fft.plan(make_geometry("f", x, w, groups=4, padding="SAME")).describe())
    axis 0: overlap-add, 216 blocks of 304 -> FFT 336, 1 phase(s)
  """
  return plan_conv(g, overlap_add)


@by_phases_conv
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
  return run(x, w, g, plan_conv(g))


def _features(g: Geometry, t: Terms, cache_bytes: int) -> dict[str, float]:
  spectra = t.data_spectra + t.kernel_spectra
  big = max(working_set_bytes(g), 2 * spectra * max(itemsize(g), 4)) > cache_bytes
  depthwise = g.in_channels_per_group == 1
  return dict(transform=t.transform, contract=0 if depthwise else t.contract,
              contract_dw=t.contract if depthwise else 0, spectra=spectra,
              spectra_big=spectra if big else 0, call=1)


@by_phases_cost
def cost(g: Geometry, pass_: str, *, cache_bytes: int) -> dict[str, float]:
  """Features of the cost model (`jaxconv._select`), for any `pass_`
  ('fwd', 'dx', 'dw': the same features, with a coefficient per pass).

  Read from the plan `conv` runs (`plans.terms`): `transform` (FFT flops),
  `contract` (complex multiply-adds of the per-frequency channel contraction)
  or `contract_dw` (the same with one input channel per group: a broadcast
  multiply), `spectra` (complex samples written and read), `spectra_big`
  (the same when the spectra or the working set exceed `cache_bytes`), `call`.

  Example:
    >>> import jax
    >>> from jaxconv._geometry import make_geometry
    >>> from jaxconv._methods import fft
    >>> g = make_geometry("f", jax.ShapeDtypeStruct((1, 1, 60), "float32"),
    ...                   jax.ShapeDtypeStruct((1, 1, 5), "float32"))
    >>> fft.cost(g, "fwd", cache_bytes=1 << 20)["spectra"]   # 3 spectra of 60 // 2 + 1
    93.0
  """
  check_pass(pass_, "fft")
  return _features(g, terms(plan_conv(g)), cache_bytes)


@by_phases_temp_bytes
def temp_bytes(g: Geometry) -> int:
  """The input, kernel and output spectra of one step, and the real input and
  output buffers they are transformed from (in the compute dtypes)."""
  p = plan_conv(g)
  if p.zero:
    return 0
  t = terms(p)
  real, cplx, _ = compute_dtypes(g.dtype, g.preferred_element_type)
  steps = p.axes[p.chunk_axis].blocks // p.chunk if p.chunk else 1
  data = t.data_spectra / steps
  real_elems = data / max(1, p.spectrum_len) * math.prod(p.sizes)
  return int(np.dtype(cplx).itemsize * (data + t.kernel_spectra)
             + np.dtype(real).itemsize * real_elems)


# --- the periodic hook: padding_mode='circular' without a padded copy ---------------

def periodic_supports(g: Geometry, purpose: str = "call") -> str | None:
  """The periodic path computes any 'circular' geometry `supports` accepts.

  Args:
    g: the user geometry (`padding_mode='circular'`, unpadded input).
    purpose: as `supports`.
  """
  if g.padding_mode != "circular":
    return "it wraps the input periodically, so it needs padding_mode='circular'"
  return supports(g, purpose)


def periodic_cost(g: Geometry, pass_: str, *, cache_bytes: int) -> dict[str, float]:
  """`cost`'s features for `periodic_conv` (the same coefficients apply).

  Example:
    >>> import jax
    >>> from jaxconv._geometry import make_geometry
    >>> from jaxconv._methods import fft
    >>> g = make_geometry("f", jax.ShapeDtypeStruct((1, 1, 60), "float32"),
    ...                   jax.ShapeDtypeStruct((1, 1, 5), "float32"), padding=2,
    ...                   padding_mode="circular")
    >>> fft.periodic_cost(g, "fwd", cache_bytes=1 << 20)["spectra"]
    93.0
  """
  check_pass(pass_, "fft")
  return _features(g, terms(plan_periodic(g)), cache_bytes)


def periodic_conv(x, w, g: Geometry):
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
    ...   print(np.asarray(fft.periodic_conv(x, h, g)))
    [[[ 2. -2. -2.  2.]]]
  """
  return run(x, w, g, plan_periodic(g))
