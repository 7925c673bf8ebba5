"""`method="fft"`: FFT-specific geometries against lax, the plan's choices
(padding as a kernel offset, polyphase strides, overlap-add, `lax.map`
chunks), native circular padding, low-precision and complex inputs,
transformations, and the tolerance rule.

The shared geometry table runs for 'fft' in tests/test_methods.py (the method
is registered in `METHODS`); here are the cases that exercise what is
particular to the FFT: long kernels, long inputs, strides with big kernels.

FFT tolerance (`jaxconv.testing.tolerance`): `RTOL[dtype] * sqrt(reduction)
* log2(prod(padded_spatial))` times the output scale `conv(|x|, |w|)`; the
rounding of a length-`F` FFT grows like `eps * log2(F)`.
"""

from __future__ import annotations

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.test_util import check_grads

import jaxconv
from jaxconv import _select, testing
from jaxconv._geometry import make_geometry
from jaxconv._methods import fft
from jaxconv._padding import method_geometry
from jaxconv._methods.fft import engine, plans

HIGHEST = lax.Precision.HIGHEST


def _rand(shape, dtype=jnp.float64, seed=0):
  """Normal inputs from numpy (no per-shape XLA compile)."""
  rng = np.random.default_rng(seed)
  a = rng.standard_normal(shape)
  if np.dtype(dtype).kind == "c":
    a = a + 1j * rng.standard_normal(shape)
  return jnp.asarray(a.astype(np.float32 if np.dtype(dtype) == jnp.bfloat16 else dtype)
                     ).astype(dtype)


def _lax(x, w, g):
  return lax.conv_general_dilated(x, w, g.stride, g.padding, lhs_dilation=g.lhs_dilation,
                                  rhs_dilation=g.dilation, feature_group_count=g.groups,
                                  precision=HIGHEST)


def _jrun(g, plan):
  return jax.jit(lambda a, b: engine.run(a, b, g, plan))


def _jconv(g):
  return jax.jit(lambda a, b: fft.conv(a, b, g))


def _assert_close(y, ref, g, dtype):
  y, ref = np.asarray(y), np.asarray(ref)
  scale = float(np.max(np.abs(ref))) or 1.0
  name = (np.dtype(dtype).name if np.dtype(dtype).kind == "f"
          else "float64" if np.dtype(dtype).itemsize == 16 else "float32")
  tol = testing.tolerance("fft", name, g)
  err = float(np.max(np.abs(y - ref)))
  assert err <= tol * scale, (err, tol * scale)


# --- FFT-specific geometries: values and every derivative vs lax ---------------

FFT_CASES = [
    ("1d-long-kernel-same", (2, 3, 40), (4, 3, 17), dict(padding="SAME")),
    ("1d-causal-depthwise", (1, 4, 64), (4, 1, 64), dict(padding=((63, 0),), groups=4)),
    ("1d-stride4-kernel9", (2, 2, 37), (3, 2, 9), dict(stride=4, padding=3)),
    ("1d-stride3-dilation2-negpad", (1, 2, 30), (2, 2, 5),
     dict(stride=3, dilation=2, padding=((-2, 4),))),
    ("1d-huge-padding", (1, 1, 3), (1, 1, 2), dict(padding=((9, 7),))),
    ("2d-replknet-like", (1, 4, 16, 16), (4, 1, 9, 9), dict(groups=4, padding=4)),
    ("2d-dense-7x7-stride2", (2, 3, 15, 14), (4, 3, 7, 7), dict(stride=2, padding="SAME")),
    ("2d-even-kernel-full", (1, 2, 9, 8), (2, 2, 6, 4), dict(padding="FULL")),
    ("2d-multiplier-dilation3", (1, 2, 12, 11), (4, 1, 3, 3), dict(groups=2, dilation=3)),
    ("3d-stride(1,2,3)", (1, 2, 7, 8, 9), (2, 2, 3, 4, 5),
     dict(stride=(1, 2, 3), padding=((1, 2), (0, 3), (2, 2)))),
    ("T1d-stride3-big-kernel", (1, 2, 9), (2, 3, 8), dict(stride=3, padding=2)),
    ("T2d-stride2", (1, 2, 5, 6), (2, 2, 5, 5), dict(stride=2, output_padding=1)),
]


@pytest.mark.parametrize("case", FFT_CASES, ids=[c[0] for c in FFT_CASES])
def test_fft_specific_geometries_match_lax(case):
  name, xs, ws, kw = case
  results = testing.check_against_lax("fft", xs, ws, jnp.float32,
                                      transpose=name.startswith("T"), **kw)
  assert {r.name for r in results} >= {"value", "vjp_0", "vjp_1", "jvp", "hvp_0"}


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex64, jnp.complex128])
def test_complex_and_float64_values(dtype):
  x, w = _rand((2, 4, 19, 7), dtype), _rand((6, 2, 5, 3), dtype, seed=1)
  g = make_geometry("t", x, w, stride=(2, 1), padding=((2, 1), (1, 1)), groups=2)
  y = _jconv(g)(x, w)
  assert y.dtype == dtype
  _assert_close(y, _lax(x, w, g), g, dtype)


def test_preferred_element_type_float64_from_float32():
  x, w = _rand((1, 2, 20), jnp.float32), _rand((3, 2, 5), jnp.float32, seed=1)
  y = jaxconv.conv_general_dilated(x, w, (1,), "SAME", preferred_element_type=jnp.float64,
                                   method="fft")
  ref = lax.conv_general_dilated(x, w, (1,), "SAME", preferred_element_type=jnp.float64,
                                 precision=HIGHEST)
  assert y.dtype == jnp.float64
  np.testing.assert_allclose(y, ref, atol=1e-12)


@pytest.mark.parametrize("dtype,rtol", [(jnp.bfloat16, 1e-2), (jnp.float16, 1e-3)])
def test_low_precision_inputs_accurate_to_dtype(dtype, rtol):
  x, w = _rand((2, 4, 24, 24), jnp.float32), _rand((4, 1, 7, 7), jnp.float32, seed=1)
  x, w = x.astype(dtype), w.astype(dtype)
  y = jaxconv.conv(x, w, padding=3, groups=4, method="fft")
  assert y.dtype == dtype
  ref = jaxconv.conv(x.astype(jnp.float32), w.astype(jnp.float32), padding=3, groups=4,
                     method="lax", precision=HIGHEST)
  # Computed in float32, so the only error is the final rounding to `dtype`.
  y, ref = np.asarray(y.astype(jnp.float32)), np.asarray(ref)
  assert np.max(np.abs(y - ref)) <= rtol * np.max(np.abs(ref))


def test_integer_inputs_declined_with_reason():
  g = make_geometry("t", jnp.ones((1, 1, 5), jnp.int32), jnp.ones((1, 1, 3), jnp.int32))
  assert "inexact" in fft.supports(g)
  with pytest.raises(NotImplementedError, match="method='fft' does not support.*inexact"):
    jaxconv.conv(jnp.ones((1, 1, 5), jnp.int32), jnp.ones((1, 1, 3), jnp.int32),
                 method="fft")


def test_preferred_integer_output_declined():
  g = make_geometry("t", jnp.ones((1, 1, 5), jnp.int8), jnp.ones((1, 1, 3), jnp.int8),
                    preferred_element_type=jnp.int32)
  assert "integer/bool dtypes" in fft.supports(g)
  # A float input with an integer output is refused before any method, as by lax.
  with pytest.raises(TypeError, match=r"`preferred_element_type` must be of a kind"):
    make_geometry("t", jnp.ones((1, 1, 5)), jnp.ones((1, 1, 3)),
                  preferred_element_type=jnp.int32)


# --- the plan -----------------------------------------------------------------

def _geom(xs, ws, dtype=jnp.float32, **kw):
  return make_geometry("t", jax.ShapeDtypeStruct(xs, dtype), jax.ShapeDtypeStruct(ws, dtype),
                       **kw)


def test_next_fast_len_is_smallest_7_smooth():
  def smooth(n):
    for p in (2, 3, 5, 7):
      while n % p == 0:
        n //= p
    return n == 1
  for n in range(1, 3000):
    f = plans.fast_len(n)
    assert f >= n and smooth(f)
    assert not any(smooth(m) for m in range(n, f))


def test_padding_is_a_kernel_offset_not_zeros():
  # RepLKNet: 64x64, 31x31, pad 15. Zero-padded input would need 64+30=94 -> 96;
  # the offset needs only n + lo = 79 -> 80.
  p = fft.plan(_geom((4, 64, 64, 64), (64, 1, 31, 31), groups=64, padding=15))
  assert p.sizes == (80, 80) and p.blocks == 1
  # VALID needs only the input length.
  assert fft.plan(_geom((1, 1, 100), (1, 1, 9))).sizes == (100,)


def test_stride_is_polyphase():
  p = fft.plan(_geom((1, 2, 64), (2, 2, 9), stride=4, padding=4))
  assert p.phases == 4 and p.sizes[0] * 4 < 64 + 2 * 4 + 8
  assert "4 phase(s)" in p.describe()


def test_overlap_add_chosen_for_long_inputs_only():
  long_ = fft.plan(_geom((1, 4, 1 << 15), (4, 1, 33), groups=4, padding="SAME"))
  assert long_.blocks > 1 and "overlap-add" in long_.describe()
  causal = fft.plan(_geom((1, 4, 4096), (4, 1, 4096), groups=4, padding=((4095, 0),)))
  assert causal.blocks == 1 and causal.sizes == (8192,)


def test_overlap_add_2d_blocks_both_axes():
  p = fft.plan(_geom((1, 1, 1024, 1024), (1, 1, 5, 5), padding=2))
  assert all(a.blocks > 1 for a in p.axes)


def test_zero_output_when_no_output_reads_the_input():
  x, w = _rand((1, 1, 5)), _rand((1, 1, 1), seed=1)
  g = make_geometry("t", x, w, padding=((-5, 5),))
  assert fft.plan(g).zero
  y, vjp = jax.vjp(_jconv(g), x, w)
  np.testing.assert_array_equal(y, _lax(x, w, g))
  gx, gw = vjp(jnp.ones_like(y))
  assert not jnp.any(gx) and not jnp.any(gw)


# --- overlap-add == one transform ---------------------------------------------

OA_CASES = [
    ("1d-same", (2, 3, 700), (4, 3, 21), dict(padding="SAME")),
    ("1d-depthwise-stride3", (1, 4, 900), (4, 1, 17), dict(groups=4, stride=3, padding=8)),
    ("1d-dilated-lhs2", (1, 2, 300), (2, 2, 7), dict(dilation=2, lhs_dilation=2, padding=5)),
    ("2d-mixed", (1, 2, 200, 40), (3, 2, 5, 9), dict(stride=(2, 1), padding=((2, 2), (-1, 3)))),
]


@pytest.mark.parametrize("case", OA_CASES, ids=[c[0] for c in OA_CASES])
def test_overlap_add_equals_single_transform_and_lax(case):
  _, xs, ws, kw = case
  x, w = _rand(xs), _rand(ws, seed=1)
  g = make_geometry("t", x, w, **kw)
  oa, one = plans.plan_conv(g, True), plans.plan_conv(g, False)
  assert oa.blocks > 1 and one.blocks == 1
  y_oa = _jrun(g, oa)(x, w)
  y_one = _jrun(g, one)(x, w)
  np.testing.assert_allclose(y_oa, y_one, atol=1e-11)
  _assert_close(y_oa, _lax(x, w, g), g, jnp.float64)
  # Chunked over blocks with lax.map: same numbers.
  chunked = plans.chunked(oa, 3)
  assert chunked.chunk == 3
  np.testing.assert_allclose(_jrun(g, chunked)(x, w), y_oa, atol=1e-11)


def test_overlap_add_derivatives_second_order():
  x, w = _rand((1, 2, 40)), _rand((2, 2, 5), seed=1)
  g = make_geometry("t", x, w, stride=2, padding=3)
  oa = plans.plan_conv(g, True)
  assert oa.blocks > 2
  f = _jrun(g, oa)
  check_grads(lambda a: f(a, w), (x,), order=2, modes=("rev",))
  check_grads(lambda b: f(x, b), (w,), order=2, modes=("fwd",))
  # The chunked scan: first order in both arguments.
  fc = _jrun(g, plans.chunked(oa, 2))
  check_grads(fc, (x, w), order=1, modes=("rev",))


def test_overlap_add_cuts_xla_temp_memory():
  x = jax.ShapeDtypeStruct((1, 4, 1 << 16), jnp.float32)
  w = jax.ShapeDtypeStruct((4, 1, 257), jnp.float32)
  g = make_geometry("t", x, w, groups=4, padding="SAME")

  def temp(plan):
    f = jax.jit(lambda a, b: engine.run(a, b, g, plan))
    return f.lower(x, w).compile().memory_analysis().temp_size_in_bytes

  one = temp(plans.plan_conv(g, False))
  assert temp(plans.chunked(plans.plan_conv(g, True), 4)) < 0.6 * one


# --- native circular padding ----------------------------------------------------

CIRC_CASES = [
    ("1d", (2, 3, 12), (4, 3, 5), dict(padding=2)),
    ("1d-kernel-longer-than-input", (1, 2, 4), (2, 2, 7), dict(padding=4)),
    ("1d-stride-divides", (1, 2, 12), (2, 2, 3), dict(padding=(1,), stride=3)),
    ("1d-stride-not-dividing", (1, 2, 10), (2, 2, 3), dict(padding=((2, 1),), stride=3)),
    ("1d-asymmetric-dilated", (1, 1, 9), (1, 1, 3), dict(padding=((4, 0),), dilation=2)),
    ("2d-depthwise", (1, 3, 8, 6), (3, 1, 3, 3), dict(padding=1, groups=3)),
    ("2d-large-pad", (1, 2, 5, 5), (2, 2, 3, 3), dict(padding=5, stride=2)),
]


@pytest.mark.parametrize("case", CIRC_CASES, ids=[c[0] for c in CIRC_CASES])
def test_circular_native_equals_wrap_pad_then_valid_lax(case):
  _, xs, ws, kw = case
  x, w = _rand(xs), _rand(ws, seed=1)
  g = make_geometry("t", x, w, padding_mode="circular", **kw)
  xp = jnp.pad(x, ((0, 0), (0, 0), *g.padding), mode="wrap")
  ref = lax.conv_general_dilated(xp, w, g.stride, "VALID", rhs_dilation=g.dilation,
                                 feature_group_count=g.groups, precision=HIGHEST)
  f = jax.jit(lambda a, b: fft.periodic_conv(a, b, g))
  np.testing.assert_allclose(f(x, w), ref, atol=1e-11)
  check_grads(lambda a: f(a, w), (x,), order=1, modes=("rev",))


def test_circular_prefers_native_for_smooth_sizes():
  g = _geom((1, 2, 64, 64), (2, 2, 7, 7), padding=3, padding_mode="circular")
  assert _select.prefers_periodic("fft", g, "cpu")
  # A prime period is transformed by XLA's slow path: wrap-padding to a fast
  # length wins (the x3 of `plans.terms`).
  prime = _geom((1, 2, 97, 97), (2, 2, 7, 7), padding=3, padding_mode="circular")
  assert plans.terms(plans.plan_periodic(prime)).transform > plans.terms(
      plans.plan_conv(method_geometry(prime))).transform


def test_auto_takes_the_periodic_path_for_circular_padding():
  """`auto` sees the fft method's periodic hook: a large circular kernel runs
  one transform of the input's own size, and the result is the wrap-padded conv."""
  x, w = _rand((1, 4, 64, 64)), _rand((4, 1, 15, 15), seed=1)
  kw = dict(padding=7, groups=4, padding_mode="circular")
  plan = jaxconv.select_method(x.shape, w.shape, **kw, backend="cpu")
  assert plan.single == "fft (periodic)", plan.reason
  if jax.default_backend() == "cpu":
    y = jax.jit(lambda a, b: jaxconv.conv(a, b, **kw))(x, w)
    ref = jaxconv.conv(x, w, **kw, method="lax")
    np.testing.assert_allclose(y, ref, atol=1e-9 * float(jnp.abs(ref).max()))
    hlo = jax.jit(lambda a, b: jaxconv.conv(a, b, **kw)).lower(x, w).as_text()
    assert "64x64" in hlo and "78x78" not in hlo   # no wrap-padded copy of the input


# --- transformations --------------------------------------------------------------

def test_jit_vmap_and_no_retrace():
  x, w = _rand((3, 2, 2, 40), jnp.float32), _rand((4, 2, 9), jnp.float32, seed=1)
  f = functools.partial(jaxconv.conv, padding="SAME", stride=2, method="fft")
  per = jax.vmap(f, in_axes=(0, None))(x, w)
  ref = jax.vmap(functools.partial(jaxconv.conv, padding="SAME", stride=2, method="lax",
                                   precision=HIGHEST), in_axes=(0, None))(x, w)
  np.testing.assert_allclose(per, ref, atol=1e-4)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def jf(a, b):
    return f(a, b)

  jf(x[0], w)
  np.testing.assert_allclose(jf(x[1], w), f(x[1], w), atol=1e-5)


def test_per_example_grads_with_vmap_of_grad():
  x, w = _rand((3, 1, 2, 30)), _rand((2, 2, 7), seed=1)
  loss = lambda ww, xx, m: jnp.sum(jnp.sin(jaxconv.conv(xx, ww, padding=3, method=m)))
  got = jax.vmap(jax.grad(loss), in_axes=(None, 0, None))(w, x, "fft")
  want = jax.vmap(jax.grad(loss), in_axes=(None, 0, None))(w, x, "lax")
  np.testing.assert_allclose(got, want, atol=1e-10)


@pytest.mark.parametrize("kw", [dict(padding=((6, 0),), groups=2),
                                dict(stride=2, padding=1, dilation=2),
                                dict(lhs_dilation=2, padding=2)],
                         ids=["causal-depthwise", "stride-dilation", "lhs-dilation"])
def test_second_order_numerical_float64(kw):
  x = _rand((1, 2, 11))
  w = _rand((2, 1 if kw.get("groups") else 2, 4), seed=1)
  g = make_geometry("t", x, w, **kw)
  f = _jconv(g)
  check_grads(lambda a: f(a, w), (x,), order=2, modes=("rev",))
  check_grads(lambda b: f(x, b), (w,), order=2, modes=("fwd",))


# --- causal long convolution (the README recipe) ---------------------------------

def test_causal_long_conv_recipe_matches_lax():
  c, length = 4, 2048
  x, w = _rand((1, c, length), jnp.float32), _rand((c, 1, length), jnp.float32, seed=1)
  y = jaxconv.conv(x, w, padding=((length - 1, 0),), groups=c, method="fft")
  ref = jaxconv.conv(x, w, padding=((length - 1, 0),), groups=c, method="lax",
                     precision=HIGHEST)
  g = make_geometry("t", x, w, padding=((length - 1, 0),), groups=c)
  assert y.shape == (1, c, length)
  _assert_close(y, ref, g, jnp.float32)
  # Causality: the first output sees only x[0].
  np.testing.assert_allclose(y[0, :, 0], x[0, :, 0] * w[:, 0, -1], rtol=1e-4, atol=1e-4)


# --- the tolerance rule grows with log(size) --------------------------------------

@pytest.mark.parametrize("n", [64, 1024, 16384])
def test_float32_error_within_log_size_tolerance(n):
  x, w = _rand((1, 1, n), jnp.float32), _rand((1, 1, 31), jnp.float32, seed=1)
  g = make_geometry("t", x, w, padding="SAME")
  y = _jconv(g)(x, w)
  ref = _lax(x.astype(jnp.float64), w.astype(jnp.float64), g)
  err = float(np.max(np.abs(np.asarray(y) - np.asarray(ref))))
  scale = float(np.max(_lax(jnp.abs(x).astype(jnp.float64),
                             jnp.abs(w).astype(jnp.float64), g)))
  eps = float(jnp.finfo(jnp.float32).eps)
  assert err <= 4 * eps * math.log2(n) * scale * math.sqrt(31)
  assert err <= testing.tolerance("fft", "float32", g) * scale
