"""`jaxconv.conv_general_dilated` is a drop-in for lax's: same arguments, same
result, for every method — over every row of the one table (tests/configs.py)
that lax's arguments can express (layouts, dilations, groups, batch groups,
transposed rows as lhs dilation), and dtypes."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxconv
from jaxconv import testing
from configs import CASES, CASES_BY_ID, METHOD_NAMES, X64, expect_decline, half_grid

HIGHEST = lax.Precision.HIGHEST
# float64 where it is on (the default), else JAX's float32 (JAXCONV_TEST_X64=0).
DTYPE = jnp.float64 if X64 else jnp.float32
# Rows with a bias, a non-zero padding mode or flip have no lax form: declared
# skips (Case.no_lax_form), reported with their reason.
# Half of the (row, method) grid (`half_grid`): the pairs the jit/vmap test of
# test_methods.py leaves out, so between them every pair runs through a second
# public entry point; test_methods.py checks the whole grid's values.
LAX_GRID = half_grid(CASES, parity=1, marks=lambda c: [pytest.mark.skip(
    reason=f"conv_general_dilated cannot express {c.no_lax_form}")] if c.no_lax_form else [])
FLAX_ROW = CASES_BY_ID["L2d-flax-NHWC-SAME-stride(2,1)"]


def _random(shape, seed, dtype=jnp.float32):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


@pytest.mark.parametrize("case,method", LAX_GRID)
def test_same_result_and_gradients_as_lax(case, method):
  if expect_decline(case, method, lambda: case.eval_shape(method, DTYPE, lax_form=True)):
    return
  lhs_shape, rhs_shape, kw = case.lax_form()
  struct = lambda shape: jax.ShapeDtypeStruct(shape, DTYPE)
  ours = jax.eval_shape(functools.partial(jaxconv.conv_general_dilated, **kw, method=method),
                        struct(lhs_shape), struct(rhs_shape))
  want = jax.eval_shape(functools.partial(lax.conv_general_dilated, **kw),
                        struct(lhs_shape), struct(rhs_shape))
  assert (ours.shape, ours.dtype) == (want.shape, want.dtype)
  testing.check_general_against_lax(method, lhs_shape, rhs_shape, DTYPE, **kw)


@pytest.mark.parametrize("method", ["direct", "im2col"])
@pytest.mark.parametrize("dtype,preferred", [(jnp.bfloat16, None), (jnp.float16, None),
                                             (jnp.bfloat16, jnp.float32),
                                             (jnp.float32, jnp.float64)])
def test_dtypes_and_preferred_element_type_match_lax(method, dtype, preferred):
  lhs, rhs = _random((1, 3, 6, 6), 0, dtype), _random((2, 3, 3, 3), 1, dtype)
  kw = dict(window_strides=(1, 1), padding="SAME", preferred_element_type=preferred)
  y = jaxconv.conv_general_dilated(lhs, rhs, **kw, method=method)
  want = lax.conv_general_dilated(lhs, rhs, **kw)
  assert y.dtype == want.dtype
  exact = lax.conv_general_dilated(lhs.astype(jnp.float64), rhs.astype(jnp.float64), **{
      **kw, "preferred_element_type": None})
  scale = float(jnp.abs(exact).max())
  eps = float(jnp.finfo(y.dtype).eps)
  np.testing.assert_allclose(y.astype(jnp.float64), exact, atol=4 * eps * scale, rtol=0)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_flax_linen_conv_drop_in(method):
  """Flax's nn.Conv accepts jaxconv.conv_general_dilated and gives the same numbers
  (the table's flax row: its declines are pinned like any row's)."""
  nn = pytest.importorskip("flax.linen")
  x = _random(FLAX_ROW.x_shape, 0)
  stock = nn.Conv(features=4, kernel_size=(3, 3), strides=(2, 1), padding="SAME",
                  feature_group_count=1)
  ours = nn.Conv(features=4, kernel_size=(3, 3), strides=(2, 1), padding="SAME",
                 conv_general_dilated=functools.partial(jaxconv.conv_general_dilated,
                                                        method=method))
  params = stock.init(jax.random.PRNGKey(0), x)
  if expect_decline(FLAX_ROW, method, lambda: ours.apply(params, x)):
    return
  y = ours.apply(params, x)
  np.testing.assert_allclose(y, stock.apply(params, x), rtol=1e-5, atol=1e-5)
  loss = lambda m: lambda p: jnp.sum(m.apply(p, x) ** 2)
  g_ours = jax.grad(loss(ours))(params)
  g_stock = jax.grad(loss(stock))(params)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4),
                         g_ours, g_stock)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_flax_nnx_conv_drop_in(method):
  """flax.nnx.Conv accepts jaxconv.conv_general_dilated: same outputs and gradients."""
  nnx = pytest.importorskip("flax.nnx")
  x = _random(FLAX_ROW.x_shape, 0)
  make = lambda **kw: nnx.Conv(3, 4, (3, 3), strides=(2, 1), padding="SAME",
                               rngs=nnx.Rngs(0), **kw)
  stock = make()
  ours = make(conv_general_dilated=functools.partial(jaxconv.conv_general_dilated,
                                                     method=method))
  if expect_decline(FLAX_ROW, method, lambda: ours(x)):
    return
  y = ours(x)
  np.testing.assert_allclose(y, stock(x), rtol=1e-5, atol=1e-5)
  loss = lambda m: jnp.sum(m(x) ** 2)
  g_ours = nnx.grad(loss)(ours)
  g_stock = nnx.grad(loss)(stock)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4),
                         g_ours, g_stock)
