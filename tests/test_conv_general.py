"""`jaxconv.conv_general_dilated` is a drop-in for lax's: same arguments, same
result, for every method — layouts, dilations, groups, batch groups, dtypes."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxconv
from configs import METHOD_NAMES

HIGHEST = lax.Precision.HIGHEST

# (lhs shape, rhs shape, kwargs for both functions)
CASES = {
    "NCHW-default": ((2, 3, 7, 6), (4, 3, 3, 2), dict(window_strides=(1, 1), padding="SAME")),
    "NHWC-HWIO": ((2, 7, 6, 3), (3, 2, 3, 4),
                  dict(window_strides=(2, 1), padding="VALID",
                       dimension_numbers=("NHWC", "HWIO", "NHWC"))),
    "NHWC-OIHW-NCHW": ((1, 6, 6, 2), (3, 2, 3, 3),
                       dict(window_strides=(1, 1), padding=((1, 0), (2, 1)),
                            dimension_numbers=("NHWC", "OIHW", "NCHW"))),
    "lhs-dilation": ((1, 2, 4, 5), (3, 2, 3, 3),
                     dict(window_strides=(1, 1), padding=((2, 2), (1, 2)), lhs_dilation=(2, 3))),
    "lhs-and-rhs-dilation-strided": ((1, 2, 5, 5), (2, 2, 3, 2),
                                  dict(window_strides=(2, 1), padding=((1, 2), (0, 3)),
                                       lhs_dilation=(2, 1), rhs_dilation=(1, 2))),
    "SAME-even-kernel-strided-dilated": ((1, 2, 9, 8), (2, 2, 4, 2),
                                         dict(window_strides=(3, 2), padding="SAME",
                                              rhs_dilation=(2, 3))),
    "SAME_LOWER": ((1, 2, 6, 7), (2, 2, 2, 4), dict(window_strides=(1, 2), padding="SAME_LOWER")),
    "feature-groups": ((2, 4, 5, 5), (6, 2, 3, 3),
                       dict(window_strides=(1, 1), padding="VALID", feature_group_count=2)),
    "batch-groups": ((4, 3, 5, 5), (6, 3, 2, 2),
                     dict(window_strides=(1, 1), padding="VALID", batch_group_count=2)),
    "1d-NWC-WIO": ((2, 9, 3), (3, 3, 2),
                   dict(window_strides=(2,), padding="SAME", dimension_numbers=("NWC", "WIO", "NWC"))),
    "3d-NDHWC": ((1, 4, 5, 4, 2), (2, 2, 3, 2, 3),
                 dict(window_strides=(1, 2, 1), padding="VALID",
                      dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))),
}


def _random(shape, seed, dtype=jnp.float32):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


@pytest.mark.parametrize("method", METHOD_NAMES)
@pytest.mark.parametrize("name", list(CASES))
def test_same_result_and_gradients_as_lax(name, method):
  lhs_shape, rhs_shape, kw = CASES[name]
  lhs, rhs = _random(lhs_shape, 0, jnp.float64), _random(rhs_shape, 1, jnp.float64)
  ours = functools.partial(jaxconv.conv_general_dilated, **kw, method=method)
  ref = functools.partial(lax.conv_general_dilated, **kw, precision=HIGHEST)
  try:
    y = ours(lhs, rhs)
  except NotImplementedError as e:
    assert "'lax'" in str(e)
    return
  want = ref(lhs, rhs)
  assert y.shape == want.shape and y.dtype == want.dtype
  np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-10)
  ct = _random(want.shape, 2, jnp.float64)
  got_grads = jax.vjp(ours, lhs, rhs)[1](ct)
  want_grads = jax.vjp(ref, lhs, rhs)[1](ct)
  for g, r in zip(got_grads, want_grads):
    np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-10)


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
  """Flax's nn.Conv accepts jaxconv.conv_general_dilated and gives the same numbers."""
  nn = pytest.importorskip("flax.linen")
  x = _random((2, 9, 9, 3), 0)
  stock = nn.Conv(features=4, kernel_size=(3, 3), strides=(2, 1), padding="SAME",
                  feature_group_count=1)
  ours = nn.Conv(features=4, kernel_size=(3, 3), strides=(2, 1), padding="SAME",
                 conv_general_dilated=functools.partial(jaxconv.conv_general_dilated,
                                                        method=method))
  params = stock.init(jax.random.PRNGKey(0), x)
  try:
    y = ours.apply(params, x)
  except NotImplementedError:
    return
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
  x = _random((2, 9, 9, 3), 0)
  make = lambda **kw: nnx.Conv(3, 4, (3, 3), strides=(2, 1), padding="SAME",
                               rngs=nnx.Rngs(0), **kw)
  stock = make()
  ours = make(conv_general_dilated=functools.partial(jaxconv.conv_general_dilated,
                                                     method=method))
  try:
    y = ours(x)
  except NotImplementedError:
    return
  np.testing.assert_allclose(y, stock(x), rtol=1e-5, atol=1e-5)
  loss = lambda m: jnp.sum(m(x) ** 2)
  g_ours = nnx.grad(loss)(ours)
  g_stock = nnx.grad(loss)(stock)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4),
                         g_ours, g_stock)
