"""im2col's memory bound: XLA's temp bytes (`compiled.memory_analysis()`) are at
most the patch tensor plus the (padded) input, the output and the kernel.

Buffer sizes are a deterministic function of the program, so these are exact
unit tests; they are skipped on a backend that reports no memory analysis.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import pytest

import jaxconv
from jaxconv._geometry import make_geometry

F32 = 4

CASES = [  # (x shape, w shape, kwargs): patches 1.1 to 10x the input
    ((2, 8, 16, 16), (8, 1, 5, 5), dict(groups=8, padding=2)),  # depthwise
    ((2, 8, 16, 16), (8, 8, 3, 3), dict(padding=1)),
    ((2, 64, 4, 4), (64, 64, 3, 3), dict(padding=1)),  # kernel > output: no broadcast
    ((2, 4, 64), (4, 4, 15), dict(padding=7)),  # > 8 taps on one axis: a concat tree
    ((2, 4, 9, 9), (6, 2, 3, 3), dict(groups=2, stride=2, dilation=2, padding=1)),
    ((1, 2, 6, 6, 6), (2, 2, 3, 3, 3), dict(padding=1)),
]
IDS = ["depthwise-5x5", "dense-3x3", "deep-3x3", "1d-k15", "groups2-stride2-dil2", "3d-3x3x3"]


def _sizes(x_shape, w_shape, kw):
  """Bytes of the patch tensor, the padded input, the output and the kernel."""
  x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
  w = jax.ShapeDtypeStruct(w_shape, jnp.float32)
  g = make_geometry("test", x, w, **kw)
  patch = g.batch * g.in_channels * math.prod(g.kernel_size) * math.prod(g.out_spatial)
  padded = g.batch * g.in_channels * math.prod(g.padded_spatial)
  return (F32 * patch, F32 * padded, F32 * math.prod(g.out_shape),
          F32 * math.prod(w_shape))


def _temp_bytes(fn, *shapes):
  args = [jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes]
  stats = jax.jit(fn).lower(*args).compile().memory_analysis()
  if stats is None:
    pytest.skip("this backend reports no memory analysis")
  return stats.temp_size_in_bytes


def _conv(kw):
  return lambda x, w: jaxconv.conv(x, w, method="im2col", **kw)


@pytest.mark.parametrize("x_shape,w_shape,kw", CASES, ids=IDS)
def test_forward_temp_is_at_most_patches_plus_inputs_and_output(x_shape, w_shape, kw):
  """One patch tensor, written once (not slices + a concatenated copy)."""
  patch, padded, out, kernel = _sizes(x_shape, w_shape, kw)
  temp = _temp_bytes(_conv(kw), x_shape, w_shape)
  assert temp <= patch + padded + out + kernel, (temp, patch)


def _value_and_vjp(kw):
  f = _conv(kw)

  def run(x, w, ct):
    y, vjp = jax.vjp(f, x, w)
    return y, vjp(ct)

  return run


def test_depthwise_forward_and_backward_hold_one_patch_tensor():
  """Depthwise: the patch cotangent is fused into the fold, never materialised."""
  x_shape, w_shape, kw = CASES[0]
  patch, padded, out, kernel = _sizes(x_shape, w_shape, kw)
  x_bytes = F32 * math.prod(x_shape)
  out_shape = (x_shape[0], w_shape[0], *x_shape[2:])
  temp = _temp_bytes(_value_and_vjp(kw), x_shape, w_shape, out_shape)
  assert temp <= patch + padded + x_bytes + out + kernel, (temp, patch)


def test_dense_forward_and_backward_hold_at_most_two_patch_tensors():
  """Dense: the kernel gradient reads the patches, the input gradient folds
  their cotangent `w^T @ dy`; XLA:CPU keeps both alive, but no more."""
  x_shape, w_shape, kw = CASES[1]
  patch, padded, out, kernel = _sizes(x_shape, w_shape, kw)
  x_bytes = F32 * math.prod(x_shape)
  temp = _temp_bytes(_value_and_vjp(kw), x_shape, w_shape, x_shape)
  assert temp <= 2 * patch + padded + x_bytes + out + kernel, (temp, patch)
