"""`method="im2col"`: patches + one GEMM (seed 000 section 5, seed 001).

The padded input is unfolded into `(N, C_in * prod(kernel), L)` columns in
PyTorch's order, the kernel flattened to `(C_out, C_in/groups * prod(kernel))`,
and the convolution is one batched matrix product per group. Memory is the
patch tensor plus inputs and outputs (XLA temp bytes; tests/test_im2col_memory.py):
the patches are written once, by one fusion (`extract_patches`), and the GEMM
reads them in place. Reverse mode also needs their cotangent `w^T @ dy` to
fold into the input gradient; for a depthwise kernel XLA fuses it into the fold,
otherwise it is a second patch-sized buffer. A 1x1 stride-1 conv needs no
patches at all and is a plain GEMM over channels. A transposed convolution
runs as its phases (`jaxconv._phases`): a 2x2 stride-2 one is four such GEMMs
on the undilated input, with no patches of its zeros.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from .._geometry import Geometry
from .._malloc import CEILING_BYTES
from .._phases import by_phases_conv, by_phases_cost, by_phases_supports, by_phases_temp_bytes
from .._padding import pad_and_dilate
from .._patches import extract_patches
from .common import (acc_dtype, bilinear_conv, broadcast_for_weight_gradient,
                     broadcast_weights, check_pass, grouped_matmul, itemsize, out_dtype,
                     padded_input_bytes, sizes, unrolled_taps_reason, working_set_bytes)


# The patch tensor is materialised: refuse ones that would not fit in memory.
MAX_PATCH_ELEMENTS = 2**28


def _is_gemm_1x1(g: Geometry) -> bool:
  """A stride-1 1x1 kernel: the input is its own patch matrix."""
  return math.prod(g.kernel_size) == 1 and all(s == 1 for s in g.stride)


def patch_elements(g: Geometry) -> int:
  """Elements of the patch tensor `conv` writes (0 for a stride-1 1x1 kernel)."""
  return 0 if _is_gemm_1x1(g) else sizes(g)["windows"] * math.prod(g.kernel_size)


GENERIC_COEFFICIENTS = {"macs_gemm": 3.0e-3, "macs_gemv": 3.0e-3, "patch": 1.5e-3, "call": 2.0e4}
"""Hand-set, NOT measured: nanoseconds per unit of each `cost` feature on
backends without a calibrated profile (GPU/TPU until someone runs
`python -m jaxconv.calibrate` there): at least as slow per unit of work as lax's convolution."""


NONFINITE_SPREAD = "window"
"""How far a NaN/Inf input spreads in the forward pass: each output's GEMM row reads only its own patch."""

@by_phases_supports
def supports(g: Geometry, purpose: str = "call") -> str | None:
  """Any padding, stride, dilation or groups, while the patch tensor is small
  enough; capped in kernel taps (`common.UNROLLED_TAP_CAPS`, by purpose)."""
  reason = unrolled_taps_reason(g, purpose)
  if reason is not None:
    return reason
  elements = patch_elements(g)
  if elements > MAX_PATCH_ELEMENTS:
    return (f"its patch tensor would hold {elements:,} elements "
            f"(> {MAX_PATCH_ELEMENTS:,})")
  return None


@by_phases_cost
def cost(g: Geometry, pass_: str, *, cache_bytes: int) -> dict[str, float]:
  """Features of the cost model (`jaxconv._select`), for any `pass_`
  ('fwd', 'dx', 'dw': the same features, with a coefficient per pass).

  `macs_gemm` (GEMMs with more than one output channel per group),
  `macs_gemv` (one output channel per group: matrix-vector products), `patch`
  (patch tensor elements, 0 for a stride-1 1x1 kernel), `patch_taps`
  (patch x taps), `patch_strided` (the patch tensor of a strided conv: its
  strided slices do not vectorise, ~2x the cost per element on a 2-core
  Xeon), `patch_big` and `elems_big` (the patch tensor or the working
  set over `cache_bytes`), `patch_mmap` (the patch tensor where it is over
  glibc's mmap ceiling, `jaxconv._malloc`: its pages fault in on every call),
  `call`.

  Example:
    >>> from jaxconv._geometry import geometry_of
    >>> from jaxconv._methods import im2col
    >>> g = geometry_of((1, 2, 6, 6), (4, 2, 3, 3))
    >>> im2col.cost(g, "fwd", cache_bytes=1 << 20)["patch"]
    288
  """
  check_pass(pass_, "im2col")
  s = sizes(g)
  macs, og, patch = s["macs"], g.out_channels_per_group, patch_elements(g)
  big = max(working_set_bytes(g), patch * itemsize(g)) > cache_bytes
  return dict(macs_gemm=macs if og > 1 else 0, macs_gemv=macs if og == 1 else 0,
              patch=patch, patch_taps=patch * s["taps"],
              patch_strided=patch if any(st > 1 for st in g.stride) else 0,
              patch_big=patch if big else 0,
              elems_big=s["x"] + s["y"] if big else 0,
              patch_mmap=patch if patch * itemsize(g) > CEILING_BYTES else 0, call=1)


@by_phases_temp_bytes
def temp_bytes(g: Geometry) -> int:
  """The patch tensor, the padded input and the GEMM's result (accumulation dtype)."""
  acc = np.dtype(acc_dtype(g)).itemsize
  return (itemsize(g) * patch_elements(g) + padded_input_bytes(g)
          + acc * sizes(g)["y"])


def _weight_shapes(g: Geometry) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """The shapes `conv` hands to `grouped_matmul`: `(G, Og, K)` and `(N, G, K, L)`."""
  k = g.in_channels_per_group * math.prod(g.kernel_size)
  return ((g.groups, g.out_channels_per_group, k),
          (g.batch, g.groups, k, math.prod(g.out_spatial)))


def _own_weight_gradient(g: Geometry) -> bool:
  """Whether the weight gradient's GEMM broadcasts the kernel where the forward's
  does not, or the reverse (`common.broadcast_for_weight_gradient`)."""
  shapes = _weight_shapes(g)
  return (jnp.issubdtype(g.dtype, jnp.inexact)
          and broadcast_weights(*shapes) != broadcast_for_weight_gradient(*shapes))


@by_phases_conv
def conv(x, w, g: Geometry):
  """`W_row @ unfold(x)` per group, reshaped to the output; the weight
  gradient through `weight_term` where its GEMM differs (`_own_weight_gradient`)."""
  if _own_weight_gradient(g):
    return _SPLIT_WEIGHT_GRADIENT(x, w, g)
  return _gemm_conv(x, w, g)


@by_phases_conv
def weight_term(x, w, g: Geometry):
  """`conv(x, w, g)` written for its transpose in `w`, the weight gradient
  (the method contract's optional `weight_term`): the GEMM left unbroadcast
  where `common.broadcast_for_weight_gradient` says so, one GEMM over every
  batch element's positions instead of one per element summed."""
  return _weight_gemm(x, w, g)


def _weight_gemm(x, w, g: Geometry):
  return _gemm_conv(x, w, g, weight_gradient=True)


def _gemm_conv(x, w, g: Geometry, weight_gradient: bool = False):
  """`W_row @ unfold(x)` per group, reshaped to the output."""
  n, groups = g.batch, g.groups
  cg, og = g.in_channels_per_group, g.out_channels_per_group
  taps = math.prod(g.kernel_size)
  length = math.prod(g.out_spatial)
  xp = pad_and_dilate(x, g)
  if _is_gemm_1x1(g):
    cols = xp.reshape(n, groups, cg, length)  # 1x1: the input is its own patch matrix
  else:
    patches = extract_patches(xp, g.kernel_size, g.dilation, g.stride, g.out_spatial)
    cols = patches.reshape(n, groups, cg * taps, length)
  wg = w.reshape(groups, og, cg * taps)
  rule = broadcast_for_weight_gradient if weight_gradient else broadcast_weights
  y = grouped_matmul(wg, cols, g, broadcast=rule(wg.shape, cols.shape))
  return y.reshape(g.out_shape).astype(out_dtype(g))


_SPLIT_WEIGHT_GRADIENT = bilinear_conv(_gemm_conv, _gemm_conv, _weight_gemm)
