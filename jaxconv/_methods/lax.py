"""`method="lax"`: XLA's native convolution, `lax.conv_general_dilated`."""

from __future__ import annotations

import math

import numpy as np
from jax import lax

from .._geometry import Geometry
from .common import acc_dtype, check_pass, padded_input_bytes, sizes, working_set_bytes


GENERIC_COEFFICIENTS = {"macs_dense": 3.0e-3, "macs_grouped": 3.0e-3, "call": 2.0e4}
"""Hand-set, NOT measured: nanoseconds per unit of each `cost` feature on
backends without a calibrated profile (GPU/TPU until someone runs
`python -m jaxconv.calibrate` there): its native convolution has no known weak spot off the CPU: as fast per
multiply-add as a GEMM."""


GSPMD_PARTITIONS = True
"""XLA's SPMD partitioner splits its own convolution along the batch with a
weight-gradient all-reduce of `|w|`: on Auto mesh axes it needs no help."""


NARROW = 64
"""XLA:CPU's dense weight gradient is slow per multiply-add when the batch
times the output channels is below this: measured 0.07-0.15 ns per
multiply-add for 16 -> 16 channels at batch 1 (64x64, 3x3 to 31x31 kernels),
0.04-0.08 at batch 2, 0.008-0.05 from N x C_out = 64 on (a 2-core Xeon and
two 2-core EPYCs, `bench/results/2026-12-07-*/calibration_samples.json`).
With the feature `macs_dense_narrow` the held-out error of lax's fitted
weight-gradient time fell from 1.5-3x to 1.3-1.5x on those samples' fits
(median |log error| 0.46-1.11 -> 0.32-0.41); 32, 128 and 256, or C_in
instead of C_out, fitted worse."""


NONFINITE_SPREAD = "window"
"""How far a NaN/Inf input spreads in the forward pass: XLA's convolution sums each output's window only."""

def supports(g: Geometry, purpose: str = "call") -> str | None:
  """XLA's convolution handles every geometry, for every purpose."""
  del g, purpose
  return None


def cost(g: Geometry, pass_: str, *, cache_bytes: int) -> dict[str, float]:
  """Features of the cost model (`jaxconv._select`), for any `pass_`
  ('fwd', 'dx', 'dw': the same features, with a coefficient per pass).

  `macs_dense` (groups == 1), `macs_1x1` (dense, stride-1 1x1 kernels: XLA
  CPU's convolution is 2-10x slower than the same GEMM there),
  `tap_outs_dense` (taps x y: XLA's convolution is slow per multiply-add when
  channels are few), `macs_dense_logk` (macs x log2(taps + 1)) and
  `macs_dense_taps` (macs x taps): its time per multiply-add grows with the
  kernel size, slowly up to 3x3 and steeply beyond (a 31x31 weight gradient
  runs ~50x slower per multiply-add than a 3x3 one on a 2-core EPYC),
  `macs_dense_narrow` (macs x `max(0, NARROW / (N x C_out) - 1)`: few batch
  elements times output channels, see `NARROW`), `macs_3d` (dense, 3 or more spatial dims),
  `macs_lhs_dilated` (transposed convolutions) and `macs_strided` (their input
  gradient is one), `macs_grouped` and `elems_grouped` (groups > 1: XLA CPU's
  slow grouped convolution), `elems` (input + output elements), `elems_big`
  (the same when the working set exceeds `cache_bytes`), `call` (1).

  Example:
    >>> from jaxconv._geometry import geometry_of
    >>> from jaxconv._methods import lax as lax_method
    >>> g = geometry_of((1, 2, 6, 6), (4, 2, 3, 3))
    >>> lax_method.cost(g, "fwd", cache_bytes=1 << 20)["macs_dense"]
    1152
  """
  check_pass(pass_, "lax")
  s = sizes(g)
  taps, macs = s["taps"], s["macs"]
  dense = g.groups == 1
  elems = s["x"] + s["y"]
  gemm_1x1 = taps == 1 and all(v == 1 for v in g.stride)
  big = working_set_bytes(g) > cache_bytes
  narrow = max(0.0, NARROW / (g.batch * g.out_channels) - 1)
  return dict(macs_dense=macs if dense else 0,
              macs_1x1=macs if dense and gemm_1x1 else 0,
              macs_dense_narrow=macs * narrow if dense else 0,
              tap_outs_dense=taps * s["y"] if dense else 0,
              macs_dense_logk=macs * math.log2(taps + 1) if dense else 0,
              macs_dense_taps=macs * taps if dense else 0,
              macs_3d=macs if dense and g.rank >= 3 else 0,
              macs_lhs_dilated=macs if any(d > 1 for d in g.lhs_dilation) else 0,
              macs_strided=macs if any(v > 1 for v in g.stride) else 0,
              macs_grouped=0 if dense else macs, elems_grouped=0 if dense else elems,
              elems=elems, elems_big=elems if big else 0, call=1)


def temp_bytes(g: Geometry) -> int:
  """At most the padded input and an output-sized buffer (XLA:CPU writes a
  1x1 convolution's GEMM result in its own layout, then transposes it)."""
  acc = np.dtype(acc_dtype(g)).itemsize
  return padded_input_bytes(g) + acc * sizes(g)["y"]


def conv(x, w, g: Geometry):
  """Channels-first `lax.conv_general_dilated` with `g`'s arguments."""
  return lax.conv_general_dilated(
      x, w, window_strides=g.stride, padding=g.padding, lhs_dilation=g.lhs_dilation,
      rhs_dilation=g.dilation, feature_group_count=g.groups, precision=g.precision,
      preferred_element_type=g.preferred_element_type)
