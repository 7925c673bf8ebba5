"""The polyphase split of lhs-dilated (transposed) convolutions (`jaxconv._phases`).

The methods that materialise the dilated input run one ordinary correlation
per output phase instead. These cases reach the split's corners, each against
lax (values, both VJPs, JVP, second order) for every method that splits:
taps that meet no phase (kernel dilation sharing a factor with the stride, a
kernel shorter than the stride), phases that read only padding, cropping
padding, and dims left unsplit because they also stride. The shared table
(tests/configs.py) runs the common transposed convolutions on every method.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from jaxconv import testing
from jaxconv._geometry import geometry_of
from jaxconv._methods import METHODS
from jaxconv._phases import by_phases_conv, phases, runs, split_dims
from configs import needs_x64

SPLITTING = ("direct", "im2col", "toeplitz", "fft")

# name -> (lhs shape, rhs shape, lax keyword arguments)
CORNERS = {
    # gcd(d, s) = 2: with odd padding, even phases meet no tap; odd ones every tap, d/2 apart.
    "dilation-shares-stride": ((1, 2, 5), (2, 2, 3), dict(
        window_strides=(1,), padding=((1, 2),), lhs_dilation=(2,), rhs_dilation=(2,))),
    # one tap, stride 3: two of three phases are zeros.
    "kernel-shorter-than-stride": ((2, 2, 4), (3, 2, 1), dict(
        window_strides=(1,), padding=((0, 2),), lhs_dilation=(3,))),
    # phase 1's only tap reads past the input: zeros by padding alone.
    "phase-reads-only-padding": ((1, 1, 1), (1, 1, 2), dict(
        window_strides=(1,), padding=((0, 4),), lhs_dilation=(2,))),
    "cropping-padding-2d": ((1, 2, 4, 5), (3, 2, 3, 2), dict(
        window_strides=(1, 1), padding=((-2, -1), (3, -2)), lhs_dilation=(3, 2))),
    # dim 0 strides too, so only dim 1 is split.
    "strided-dim-unsplit": ((1, 2, 5, 4), (2, 2, 3, 3), dict(
        window_strides=(2, 1), padding=((1, 1), (2, 1)), lhs_dilation=(2, 2))),
    "grouped-3d": ((1, 4, 2, 3, 2), (4, 2, 2, 3, 2), dict(
        window_strides=(1, 1, 1), padding=((1, 1), (0, 2), (1, 0)), lhs_dilation=(2, 3, 2),
        feature_group_count=2)),
}


@needs_x64
@pytest.mark.parametrize("method", SPLITTING)
@pytest.mark.parametrize("case", sorted(CORNERS))
def test_split_agrees_with_lax_at_the_corners(method, case):
  lhs, rhs, kwargs = CORNERS[case]
  results = testing.check_general_against_lax(method, lhs, rhs, jnp.float64, **kwargs)
  assert {r.name for r in results} >= {"value", "vjp_0", "vjp_1", "jvp"}
  assert all(r.ok for r in results)


def _geometry(case):
  lhs, rhs, kw = CORNERS[case]
  return geometry_of(lhs, rhs, stride=kw["window_strides"], padding=kw["padding"],
                     lhs_dilation=kw["lhs_dilation"],
                     dilation=kw.get("rhs_dilation", 1), groups=kw.get("feature_group_count", 1))


def test_the_corners_reach_what_they_name():
  """Each corner case has the phase structure its name promises (so the
  agreement above is not with a split that never happened)."""
  shares = phases(_geometry("dilation-shares-stride"))
  assert [p.geometry is None for p in shares] == [True, False]   # padding 1 is odd
  assert shares[1].geometry.dilation == (1,) and shares[1].geometry.kernel_size == (3,)
  assert [p.geometry is None for p in phases(_geometry("kernel-shorter-than-stride"))] == [
      False, True, True]
  only_padding = phases(_geometry("phase-reads-only-padding"))
  assert only_padding[0].geometry is not None and only_padding[1].geometry is None
  assert only_padding[1].taps == (slice(0, 0),)
  cropping = phases(_geometry("cropping-padding-2d"))
  assert any(lo < 0 or hi < 0 for p in cropping if p.geometry
             for lo, hi in p.geometry.padding)
  assert split_dims(_geometry("strided-dim-unsplit")) == (1,)
  assert all(p.geometry.lhs_dilation == (2, 1) for p in phases(_geometry("strided-dim-unsplit")))
  assert len(phases(_geometry("grouped-3d"))) == 2 * 3 * 2


def test_a_2x2_stride_2_transposed_conv_becomes_one_gemm():
  """U-Net's up-sampling: every phase is a 1x1 correlation of the undilated
  input, a quarter of the dilated definition's multiply-adds in all, and the
  four share one call with 4x the output channels (one GEMM per pass)."""
  g = geometry_of((4, 128, 16, 16), (64, 128, 2, 2), lhs_dilation=(2, 2),
                  padding=((1, 1), (1, 1)))
  split = phases(g)
  assert len(split) == 4
  assert all(p.geometry.kernel_size == (1, 1) and p.geometry.padding == ((0, 0), (0, 0))
             and p.geometry.in_spatial == (16, 16) for p in split)
  assert sum(p.geometry.flops for p in split) * 4 == g.flops
  [(merged, members)] = runs(g)
  assert merged.kernel_shape == (256, 128, 1, 1) and len(members) == 4
  # Each method's cost is that of the call its phases make, not of the zeros.
  for name in SPLITTING:
    assert METHODS[name].cost(g, "dw", cache_bytes=2 ** 25) == METHODS[name].cost(
        merged, "dw", cache_bytes=2 ** 25), name


def test_phases_with_different_taps_run_as_separate_calls():
  """A 3-tap kernel at stride 2 gives phases of 2 and 1 taps: two calls."""
  g = geometry_of((1, 2, 6), (3, 2, 3), lhs_dilation=(2,), padding=((2, 2),))
  assert sorted((m.kernel_size, len(ps)) for m, ps in runs(g)) == [((1,), 1), ((2,), 1)]
  assert sum(m.flops for m, _ in runs(g)) < g.flops


def test_geometries_without_lhs_dilation_are_not_split():
  assert phases(geometry_of((1, 2, 8, 8), (3, 2, 3, 3), stride=2, padding=1)) is None
  assert phases(geometry_of((1, 2, 8), (3, 2, 3), stride=2, lhs_dilation=2)) is None


def test_a_phase_without_taps_is_zeros_of_the_output_dtype():
  g = _geometry("kernel-shorter-than-stride")
  x = np.arange(16.0, dtype=np.float32).reshape(2, 2, 4)
  w = np.ones((3, 2, 1), np.float32)
  y = by_phases_conv(METHODS["direct"].conv)(x, w, g)
  assert y.dtype == jnp.float32 and y.shape == g.out_shape
  np.testing.assert_array_equal(y[..., 1::3], 0)
  np.testing.assert_allclose(y[..., 0:12:3], np.broadcast_to(x.sum(1, keepdims=True), (2, 3, 4)))


@pytest.mark.parametrize("method", SPLITTING)
def test_the_split_sizes_each_phase(method):
  """`temp_bytes` counts the largest call the phases make (and the phases'
  outputs), not the dilated input's patches, windows or matrices."""
  g = geometry_of((2, 8, 32, 32), (8, 8, 4, 4), lhs_dilation=(2, 2), padding=((3, 3), (3, 3)))
  module = METHODS[method]
  largest = max(module.temp_bytes(merged) for merged, _ in runs(g))
  assert module.temp_bytes(g) == largest + 2 * 4 * math.prod(g.out_shape)
  assert module.temp_bytes(g) < module.temp_bytes.__wrapped__(g)


def test_toeplitz_caps_the_call_it_makes():
  """A 2x2 stride-2 up-sampling: the dilated input's block-Toeplitz matrices
  are over the budget, the phases' 1x1 matrices (4x the channels, a quarter
  of the rows and columns) are not."""
  g = geometry_of((4, 48, 64, 64), (64, 48, 2, 2), lhs_dilation=(2, 2),
                  padding=((1, 1), (1, 1)))
  assert "over the budget" in METHODS["toeplitz"].supports.__wrapped__(g)
  assert METHODS["toeplitz"].supports(g) is None
