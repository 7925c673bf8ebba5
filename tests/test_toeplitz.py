"""`method="toeplitz"`: the block-Toeplitz matrices it builds (the seeds' forms),
agreement with lax on random geometries (values, VJPs in both arguments, JVP),
jit/vmap, low precision, and its documented exclusion (the size budget).

The shared geometry table (tests/configs.py) runs over every registered method,
this one included, in tests/test_methods.py."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import jaxconv
from jaxconv import testing
from jaxconv._geometry import make_geometry
from jaxconv._methods import METHODS, toeplitz
from jaxconv._matrices import conv_matrix, toeplitz_matrix
from configs import needs_x64

# Written for float64 (conftest.py turns it on): skipped under JAXCONV_TEST_X64=0.
pytestmark = needs_x64


def _rand(shape, seed=0, dtype=np.float64):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape).astype(dtype))


def _geometry(x_shape, w_shape, **kw):
  x = jax.ShapeDtypeStruct(x_shape, jnp.float64)
  w = jax.ShapeDtypeStruct(w_shape, jnp.float64)
  return make_geometry("test", x, w, **kw)


def test_registered():
  assert METHODS["toeplitz"] is toeplitz
  assert "toeplitz" in jaxconv.method_names()


# --- the matrices ----------------------------------------------------------------

def test_1d_row_matrix_is_the_seed_001_toeplitz_matrix():
  k = jnp.array([1.0, 2.0, 3.0])
  g = _geometry((1, 1, 5), (1, 1, 3))
  mats = toeplitz.row_matrices(k[None, None], g)
  assert mats.shape == (1, 1, 1, 5, 3, 1)           # (G, lead, Cg, W_pad, W_out, Og)
  np.testing.assert_array_equal(mats[0, 0, 0, :, :, 0].T, toeplitz_matrix(k, 5))


def test_2d_row_matrices_are_the_blocks_of_the_seed_002_doubly_block_matrix():
  w = jnp.array([[[[1.0, 2.0], [3.0, 4.0]]]])
  g = _geometry((1, 1, 4, 4), (1, 1, 2, 2))
  mats = toeplitz.row_matrices(w, g)                 # one per kernel row
  dense = np.asarray(conv_matrix(w, (1, 4, 4)))      # 9 x 16, blocks of 3 x 4
  for row in range(2):
    np.testing.assert_array_equal(mats[0, row, 0, :, :, 0].T, dense[:3, 4 * row:4 * row + 4])
  x = jnp.arange(16.0).reshape(1, 1, 4, 4)
  np.testing.assert_array_equal(toeplitz.conv(x, w, g).ravel(), dense @ x.ravel())


@pytest.mark.parametrize("stride,dilation,groups", [(1, 1, 1), (2, 1, 1), (3, 2, 2),
                                                    (1, 3, 4)])
def test_1d_channels_row_matrix_is_the_dense_matrix(stride, dilation, groups):
  # In 1-D there is one matrix, the whole conv matrix (transposed), block
  # diagonal over groups.
  w = _rand((4, 4 // groups, 3))
  g = _geometry((1, 4, 11), w.shape, stride=stride, dilation=dilation, groups=groups)
  mats = toeplitz.row_matrices(w, g)[:, 0]           # (G, Cg, P, O, Og)
  dense = np.asarray(conv_matrix(w, (4, 11), stride=stride, dilation=dilation,
                                 groups=groups))
  cg, og, p, o = 4 // groups, 4 // groups, 11, g.out_spatial[0]
  for gi in range(groups):
    block = dense[gi * og * o:(gi + 1) * og * o, gi * cg * p:(gi + 1) * cg * p]
    rows = jnp.swapaxes(mats[gi], -1, -2).reshape(cg * p, og * o)   # columns (Og, O)
    np.testing.assert_array_equal(rows.T, block)


# --- values and derivatives against lax -----------------------------------------

@st.composite
def geometries(draw):
  rank = draw(st.integers(1, 3))
  groups = draw(st.sampled_from([1, 2]))
  cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
  kernel = tuple(draw(st.integers(1, 3)) for _ in range(rank))
  dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank))
  lhs = tuple(draw(st.integers(1, 2)) for _ in range(rank))
  stride = tuple(draw(st.integers(1, 3)) for _ in range(rank))
  spatial, padding = [], []
  for k, d, ld in zip(kernel, dilation, lhs):
    n = draw(st.integers(1, 6 if rank < 3 else 4))
    lo, hi = draw(st.integers(-1, 2)), draw(st.integers(-1, 2))
    need = d * (k - 1) + 1 - (ld * (n - 1) + 1 + lo + hi)
    if need > 0:
      hi += need                         # keep the output non-empty
    spatial.append(n)
    padding.append((lo, hi))
  x_shape = (draw(st.integers(1, 2)), groups * cg, *spatial)
  w_shape = (groups * og, cg, *kernel)
  return x_shape, w_shape, dict(stride=stride, padding=tuple(padding), dilation=dilation,
                                lhs_dilation=lhs, groups=groups)


@settings(max_examples=15, deadline=None)
@given(geometries())
def test_random_geometries_match_lax_values_vjp_jvp(args):
  x_shape, w_shape, kw = args
  g = _geometry(x_shape, w_shape, **kw)
  x, w = _rand(x_shape, 1), _rand(w_shape, 2)
  ref = lambda x, w: jax.lax.conv_general_dilated(
      x, w, g.stride, g.padding, g.lhs_dilation, g.dilation, feature_group_count=g.groups,
      precision=jax.lax.Precision.HIGHEST)
  got = lambda x, w: toeplitz.conv(x, w, g)

  @jax.jit
  def derivatives(x, w, ct, tx, tw):
    out = []
    for f in (got, ref):
      y, vjp = jax.vjp(f, x, w)
      out.append((y, *vjp(ct), jax.jvp(f, (x, w), (tx, tw))[1]))
    return out

  ct = _rand(g.out_shape, 3)
  mine, want = derivatives(x, w, ct, _rand(x_shape, 4), _rand(w_shape, 5))
  for name, a, b in zip(("value", "vjp_x", "vjp_w", "jvp"), mine, want):
    assert a.shape == b.shape and a.dtype == b.dtype, name
    np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11, err_msg=name)


@pytest.mark.parametrize("x_shape,w_shape,kw", [
    ((2, 4, 6, 7), (6, 2, 3, 3), dict(groups=2, stride=2, padding="SAME")),
    ((2, 3, 9), (4, 3, 3), dict(dilation=2, padding=2, padding_mode="reflect")),
    ((1, 2, 4, 3, 5), (2, 2, 2, 2, 3), dict(padding=1, flip=True)),
], ids=["2d-groups-stride-same", "1d-dilated-reflect", "3d-flip"])
def test_public_conv_float64_second_order(x_shape, w_shape, kw):
  results = testing.check_against_lax("toeplitz", x_shape, w_shape, jnp.float64, **kw)
  assert all(r.ok for r in results)


def test_transposed_conv_goes_through_lhs_dilation():
  results = testing.check_against_lax("toeplitz", (2, 4, 5, 5), (4, 3, 3, 3),
                                      transpose=True, stride=2, padding=1,
                                      output_padding=1, groups=2)
  assert all(r.ok for r in results)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_accumulates_like_lax(dtype):
  results = testing.check_against_lax("toeplitz", (2, 8, 6, 10), (8, 8, 3, 3), dtype,
                                      padding=1)
  assert all(r.ok for r in results)


def test_preferred_element_type_and_dtype_match_lax():
  x = _rand((1, 3, 5, 6)).astype(jnp.bfloat16)
  w = _rand((2, 3, 3, 3), 1).astype(jnp.bfloat16)
  args = dict(window_strides=(1, 1), padding="SAME", preferred_element_type=jnp.float32)
  y = jaxconv.conv_general_dilated(x, w, **args, method="toeplitz")
  ref = jax.lax.conv_general_dilated(x, w, **args, precision="highest")
  assert y.dtype == ref.dtype == jnp.float32
  np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
  assert jaxconv.conv(x, w, method="toeplitz").dtype == jnp.bfloat16


def test_jit_vmap_grad_through_public_conv():
  x, w = _rand((3, 4, 5, 9), dtype=np.float32), _rand((4, 1, 3, 3), 1, np.float32)
  call = lambda x, w: jaxconv.conv(x, w, groups=4, padding=1, method="toeplitz")
  ref = lambda x, w: jaxconv.conv(x, w, groups=4, padding=1, method="lax")
  y = jax.jit(call)(x, w)
  np.testing.assert_allclose(y, ref(x, w), rtol=1e-5, atol=1e-5)
  # vmap over an extra leading axis, and per-example gradients.
  ys = jax.jit(jax.vmap(call, in_axes=(0, None)))(x[:, None], w)
  np.testing.assert_allclose(ys[:, 0], y, rtol=1e-5, atol=1e-5)
  loss = lambda f: (lambda w, xi: jnp.sum(jnp.tanh(f(xi[None], w))))
  per_example = jax.jit(jax.vmap(jax.grad(loss(call)), in_axes=(None, 0)))(w, x)
  want = jax.vmap(jax.grad(loss(ref)), in_axes=(None, 0))(w, x)
  np.testing.assert_allclose(per_example, want, rtol=1e-4, atol=1e-5)


# --- the exclusion --------------------------------------------------------------

def test_supports_and_matrix_size():
  g = _geometry((2, 6, 10, 12), (4, 3, 3, 5), groups=2, padding=1, stride=(1, 2))
  # prod(k_lead)=3, C_in=6, W_pad=14, C_out/G=2, W_out=5.
  assert toeplitz.matrix_elements(g) == 3 * 6 * 14 * 2 * 5
  assert toeplitz.supports(g) is None
  big = _geometry((1, 512, 8, 512), (512, 512, 3, 3))
  assert toeplitz.matrix_elements(big) > toeplitz.MAX_MATRIX_ELEMENTS
  assert "block-Toeplitz matrices would have" in toeplitz.supports(big)


def test_over_budget_raises_not_implemented_naming_other_methods(monkeypatch):
  monkeypatch.setattr(toeplitz, "MAX_MATRIX_ELEMENTS", 100)
  x, w = jnp.ones((1, 2, 6, 6)), jnp.ones((3, 2, 3, 3))
  elements = 3 * 2 * 6 * 3 * 4
  with pytest.raises(NotImplementedError, match=(
      r"jaxconv.conv: method='toeplitz' does not support this convolution \(its "
      rf"block-Toeplitz matrices would have {elements} elements, over the budget of 100\); "
      r"use 'lax', 'direct', 'im2col'")):
    jaxconv.conv(x, w, method="toeplitz")
  assert math.prod(jaxconv.conv(x, w, method="lax").shape) == 3 * 16


@pytest.mark.parametrize("build", [
    lambda k: jaxconv.toeplitz_matrix(k, 1024, "same"),
    lambda k: jaxconv.circulant_matrix(k, 1024, flip=True),
], ids=["toeplitz", "circulant"])
def test_dense_matrices_hold_no_index_table(build):
  """The indices come from iotas inside XLA: the program carries no constant
  index table (static int64 tables took 8x the float32 result when called
  eagerly, 2 GiB at n=8192), and compiles to no temporary near the result."""
  k = jnp.arange(3.0)
  closed = jax.make_jaxpr(build)(k)
  assert sum(np.size(c) for c in closed.consts) <= 3, [np.shape(c) for c in closed.consts]
  if jax.default_backend() == "cpu":
    temp = jax.jit(build).lower(k).compile().memory_analysis().temp_size_in_bytes
    assert temp < 1024 * 1024, temp   # a quarter of the 4 MiB float32 result
