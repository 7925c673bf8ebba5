"""`method="direct"`: shift-and-add, the sliding-window definition made fast.

`y = sum over kernel offsets o of  w[:, :, o] (x) x_padded[..., o*d :: stride]`.
Each term is one strided slice of the padded input contracted with one kernel
tap over channels; XLA fuses the sum. Depthwise taps (one input channel per
group) are plain broadcast multiplies, so a depthwise conv costs
`prod(kernel)` fused multiply-adds per output with no GEMM and no patch tensor.
Work is `O(N * C_out * C_in/groups * prod(out) * prod(kernel))`, memory
`O(input + output)`: it wins for depthwise and small channel counts. A
transposed convolution runs as its phases (`jaxconv._phases`), so no tap
multiplies the zeros of the dilated input.

Its depthwise input gradient is written by hand too (`input_term`): autodiff
of the unrolled sum gives one padded copy of `dy` per tap, 4-6x slower than
the forward; the input gradient is instead this method's own correlation of
`dy` with the flipped kernel, one strided slice per tap.

Its depthwise weight gradient is written by hand (`weight_term`): autodiff of
the unrolled sum gives one reduction per tap, which XLA:CPU merges into one
reduction over every tap's window at once, a `taps x input` temporary (32 GB
for a 31x31 kernel on 32x512x512). A `lax.scan` over the taps instead reduces
one window at a time, in `O(input)` memory.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._fusion import fusion_boundary
from .._geometry import Geometry, input_gradient_geometry
from .._malloc import CEILING_BYTES
from .._phases import by_phases_conv, by_phases_cost, by_phases_supports, by_phases_temp_bytes
from .._padding import pad_and_dilate
from .._patches import kernel_offsets, window_slices
from .common import (acc_dtype, bilinear_conv, check_pass, grouped_matmul, itemsize, out_dtype,
                     padded_input_bytes, sizes, unrolled_taps_reason, working_set_bytes,
                     zeros_varying_like)


THIN_CONTRACTION = 16
"""`cost`'s `macs_thin`: a GEMM contracting over at most this many input
channels per group runs well below the per-multiply-add rate of wide ones."""

GENERIC_COEFFICIENTS = {"macs_gemm": 3.0e-3, "macs_dw": 3.0e-3, "tap_elems": 1.5e-3, "call": 2.0e4}
"""Hand-set, NOT measured: nanoseconds per unit of each `cost` feature on
backends without a calibrated profile (GPU/TPU until someone runs
`python -m jaxconv.calibrate` there): at least as slow per unit of work as lax's convolution."""


NONFINITE_SPREAD = "window"
"""How far a NaN/Inf input spreads in the forward pass: each output sums the taps of its own window."""

@by_phases_supports
def supports(g: Geometry, purpose: str = "call") -> str | None:
  """Any padding, stride, dilation or groups; capped in kernel taps
  (`common.UNROLLED_TAP_CAPS`, by purpose)."""
  return unrolled_taps_reason(g, purpose)


@by_phases_cost
def cost(g: Geometry, pass_: str, *, cache_bytes: int) -> dict[str, float]:
  """Features of the cost model (`jaxconv._select`), for any `pass_`
  ('fwd', 'dx', 'dw'), with a coefficient per pass.

  `macs_gemm` (channel contraction per tap), `macs_thin` (the same where
  the contraction is over at most `THIN_CONTRACTION` input channels per
  group: 2-5x slower per multiply-add on a 2-core Xeon), `macs_dw` (depthwise:
  broadcast multiply-adds), `macs_bcast` (one input channel per group but
  several outputs, e.g. a 1-channel image), `tap_elems` (taps x (windows +
  y): one slice and one accumulation per tap), `tap2_elems` (taps x
  tap_elems: the unrolled sum's program grows faster than the tap count),
  `tap_elems_3d` (3 or more spatial dims), `tap_elems_big` (working set over
  `cache_bytes`), `io_elems` (one input channel per group: the padded input
  and the output, streamed whatever the tap count; MobileNetV2's 3x3 over 144
  channels is bound by it), `macs_strided` (the same with a stride > 1: the
  strided slices do not vectorise, 3-5x slower per multiply-add on a 2-core
  Xeon), `window_mmap` (with a channel contraction XLA:CPU merges
  the taps' GEMMs into one over every tap's window, `temp_bytes`: those
  `taps x windows` elements where they exceed glibc's mmap ceiling and fault
  in on every call, `jaxconv._malloc`), `call`.

  The weight gradient with one input channel per group is `weight_term`'s
  scan, linear in the taps: `scan_steps` (one loop step per tap) and
  `scan_elems` (each step slices the input over the strided window extent,
  stride^d x the window for a strided conv), `scan_elems_1d` for 1-D inputs,
  in place of the unrolled sum's features.

  Example:
    >>> from jaxconv._geometry import geometry_of
    >>> from jaxconv._methods import direct
    >>> g = geometry_of((1, 8, 16), (8, 1, 3), groups=8)
    >>> direct.cost(g, "fwd", cache_bytes=1 << 20)["macs_dw"]
    336
    >>> direct.cost(g, "dw", cache_bytes=1 << 20)["scan_steps"]
    3
  """
  check_pass(pass_, "direct")
  s = sizes(g)
  taps, macs = s["taps"], s["macs"]
  cg, og = g.in_channels_per_group, g.out_channels_per_group
  scan = pass_ == "dw" and cg == 1
  tap_elems = 0 if scan else taps * (s["windows"] + s["y"])
  extent = math.prod((o - 1) * st + 1 for o, st in zip(g.out_spatial, g.stride))
  scan_elems = taps * g.batch * g.in_channels * extent if scan else 0
  big = working_set_bytes(g) > cache_bytes
  merged = taps * s["windows"] if cg > 1 and not scan else 0
  one = cg == 1 and not scan
  return dict(io_elems=s["x"] + s["y"] if one else 0,
              macs_strided=macs if one and any(st > 1 for st in g.stride) else 0,
              window_mmap=merged if merged * itemsize(g) > CEILING_BYTES else 0,
              macs_thin=macs if 1 < cg <= THIN_CONTRACTION else 0,
              macs_gemm=macs if cg > 1 else 0,
              macs_dw=macs if cg == 1 and og == 1 else 0,
              macs_bcast=macs if cg == 1 and og > 1 else 0,
              tap_elems=tap_elems, tap2_elems=taps * tap_elems,
              tap_elems_3d=tap_elems if g.rank >= 3 else 0,
              tap_elems_big=tap_elems if big else 0,
              scan_steps=taps if scan else 0,
              scan_elems=scan_elems if g.rank > 1 else 0,
              scan_elems_1d=scan_elems if g.rank == 1 else 0, call=1)


@by_phases_temp_bytes
def temp_bytes(g: Geometry) -> int:
  """The padded input, the running sum and one tap's term (accumulation dtype);
  with a channel contraction also every tap's window: XLA:CPU merges the
  per-tap GEMMs into one over the concatenated windows (measured with
  `memory_analysis()`, tests/test_method_contract.py)."""
  s = sizes(g)
  acc = np.dtype(acc_dtype(g)).itemsize
  windows = s["windows"] * s["taps"] if g.in_channels_per_group > 1 else 0
  return padded_input_bytes(g) + 2 * acc * s["y"] + itemsize(g) * windows


@by_phases_conv
def conv(x, w, g: Geometry):
  """Sum over kernel taps of strided input slices times the tap's weights."""
  if g.in_channels_per_group == 1:
    # Depthwise (and 1-channel broadcast) kernels: reverse mode transposes
    # `weight_term`'s scan into one window reduction per tap, never all taps'
    # windows at once.
    return _ONE_CHANNEL_PER_GROUP(x, w, g)
  return _unrolled(x, w, g)


@by_phases_conv
def input_term(x, w, g: Geometry):
  """`conv(x, w, g)` written for its transpose in `x`, the input gradient
  (the method contract's optional `input_term`; `_perpass` uses it for the
  dX pass).

  With one input channel per group, the transpose (`jax.linear_transpose`)
  of this method's correlation of an output-shaped array with the flipped,
  group-transposed kernel (`input_gradient_geometry`). Reverse mode
  transposes it back, so the input gradient is that correlation, one strided
  slice of `dy` per tap, instead of autodiff's sum of one padded copy of `dy`
  per tap (measured 4-6x slower on depthwise kernels: 5.0 against 0.8 ms
  for a 64-tap causal 1-D filter on 64 x 4096). Forward mode evaluates the
  padded copies, as autodiff of `conv` would. Otherwise (channel
  contractions, where autodiff's transpose is the faster one; lhs dilation;
  integers or a `preferred_element_type`) `conv`'s unrolled sum.
  """
  if (g.in_channels_per_group != 1 or any(d != 1 for d in g.lhs_dilation)
      or not jnp.issubdtype(g.dtype, jnp.inexact) or g.preferred_element_type is not None):
    return _unrolled(x, w, g)
  gt = input_gradient_geometry(g)
  # (G * Og, 1, *k) -> (G, 1 * Og, *k): in/out swapped per group, then flipped.
  wt = w.reshape(gt.kernel_shape)
  wt = lax.rev(wt, tuple(range(2, wt.ndim)))
  correlate = functools.partial(conv, w=wt, g=gt)
  # The example cotangent varies over x's manual mesh axes (inside shard_map),
  # so the transpose is typed as per-device and needs no collective.
  example = zeros_varying_like(g.out_shape, g.dtype, x)
  return jax.linear_transpose(correlate, example)(x)[0]


@by_phases_conv
def weight_term(x, w, g: Geometry):
  """`conv(x, w, g)` written for its transpose in `w`, the weight gradient
  (the method contract's optional `weight_term`; `_perpass` uses it for the
  dW pass).

  With one input channel per group, a `lax.scan` over the taps: each step
  slices one tap's window (a `dynamic_slice` at the tap's offset) and
  accumulates it times the tap's weights, so the transpose reduces `window *
  dy` one tap at a time. Otherwise the unrolled sum, as `conv`.
  """
  if g.in_channels_per_group != 1:
    return _unrolled(x, w, g)
  n, groups, og = g.batch, g.groups, g.out_channels_per_group
  acc = acc_dtype(g)
  xp = pad_and_dilate(x, g)
  starts = np.array([[0, 0, *(o * d for o, d in zip(offset, g.dilation))]
                     for offset in kernel_offsets(g.kernel_size)], np.int32)
  extent = [(o - 1) * s + 1 for o, s in zip(g.out_spatial, g.stride)]
  taps = w.reshape(groups, og, -1).transpose(2, 0, 1)       # (T, G, Og)
  # The output's own spatial shape, as `_unrolled`'s depthwise sum: with the
  # length flattened here, a training step copies between the two layouts
  # (MobileNetV2's dw3x3 forward+backward 18 -> 31 ms).
  out = (n, groups, og, *g.out_spatial)
  tap_shape = (1, groups, og) + (1,) * len(g.out_spatial)

  def step(total, tap_and_start):
    tap, start = tap_and_start
    window = lax.dynamic_slice(xp, tuple(start), (n, groups, *extent))
    window = lax.slice(window, (0,) * window.ndim, window.shape, (1, 1, *g.stride))
    cols = window.reshape(n, groups, 1, *g.out_spatial).astype(acc)
    return total + cols * tap.astype(acc).reshape(tap_shape), None

  # Rematerialised: otherwise linearising the scan keeps every window for the
  # transpose, the very `taps x input` residual this avoids.
  step = jax.checkpoint(step, prevent_cse=False)
  total, _ = lax.scan(step, zeros_varying_like(out, acc, xp, w), (taps, starts))
  return total.reshape(g.out_shape).astype(out_dtype(g))


def _unrolled(x, w, g: Geometry):
  """Sum over kernel taps of strided input slices times the tap's weights."""
  n, groups = g.batch, g.groups
  cg, og = g.in_channels_per_group, g.out_channels_per_group
  length = math.prod(g.out_spatial)
  acc = acc_dtype(g)
  xp = pad_and_dilate(x, g)
  # (C_out, Cg, *k) -> (G, Og, Cg, *k): the taps of each group.
  wg = w.reshape(groups, og, cg, *g.kernel_size)
  spatial_ones = (1,) * len(g.out_spatial)
  total = None
  for offset, window in window_slices(xp, g.kernel_size, g.dilation, g.stride,
                                      g.out_spatial):
    tap = wg[(..., *offset)]                              # (G, Og, Cg)
    if cg == 1:  # depthwise: no contraction, a broadcast multiply
      # Kept in the output's own shape: an elementwise op after it (a fusion
      # boundary, a bias) then keeps XLA's loop over it vectorised, where
      # one over the flattened length divides every index (7x slower).
      cols = window.reshape(n, groups, 1, *g.out_spatial)
      term = cols.astype(acc) * tap.astype(acc).reshape(1, groups, og, *spatial_ones)
    else:
      cols = window.reshape(n, groups, cg, length)        # (N, G, Cg, L)
      term = grouped_matmul(tap, cols, g)                 # (N, G, Og, L)
    total = term if total is None else total + term
  if cg == 1:
    # Else a reduction after the conv (a LayerNorm, a BatchNorm) takes the
    # tap sum into its YNNPACK fusion and materialises every window (12x).
    total = fusion_boundary(total)
  return total.reshape(g.out_shape).astype(out_dtype(g))


_ONE_CHANNEL_PER_GROUP = bilinear_conv(_unrolled, input_term, weight_term)
