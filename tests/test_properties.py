"""Hypothesis properties: linearity, method agreement, translation equivariance,
unfold/fold adjointness — on small random geometries."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxconv
from configs import METHOD_NAMES

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True)


@st.composite
def geometries(draw):
  """A small random (x shape, w shape, conv kwargs) with a non-empty output."""
  rank = draw(st.integers(1, 2))
  groups = draw(st.sampled_from([1, 2]))
  cin = groups * draw(st.integers(1, 2))
  cout = groups * draw(st.integers(1, 2))
  k = tuple(draw(st.integers(1, 3)) for _ in range(rank))
  d = tuple(draw(st.integers(1, 2)) for _ in range(rank))
  s = tuple(draw(st.integers(1, 2)) for _ in range(rank))
  p = tuple(draw(st.integers(0, 2)) for _ in range(rank))
  spatial = tuple(draw(st.integers(dd * (kk - 1) + 1, 7)) for kk, dd in zip(k, d))
  return ((1, cin, *spatial), (cout, cin // groups, *k),
          dict(stride=s, padding=p, dilation=d, groups=groups))


def _rand(shape, seed):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float64)


@SETTINGS
@given(geometries(), st.integers(0, 2**16))
def test_methods_agree_with_each_other(geometry, seed):
  x_shape, w_shape, kw = geometry
  x, w = _rand(x_shape, seed), _rand(w_shape, seed + 1)
  ref = jaxconv.conv(x, w, **kw, method="lax")
  for method in METHOD_NAMES:  # every method handles these small geometries: no declines
    y = jaxconv.conv(x, w, **kw, method=method)
    np.testing.assert_allclose(y, ref, rtol=1e-9, atol=1e-9, err_msg=method)


@SETTINGS
@given(geometries(), st.integers(0, 2**16), st.floats(-3, 3), st.floats(-3, 3))
def test_linear_in_each_argument(geometry, seed, a, b):
  x_shape, w_shape, kw = geometry
  x1, x2 = _rand(x_shape, seed), _rand(x_shape, seed + 1)
  w1, w2 = _rand(w_shape, seed + 2), _rand(w_shape, seed + 3)
  for method in ("direct", "im2col"):
    f = lambda x, w: jaxconv.conv(x, w, **kw, method=method)
    np.testing.assert_allclose(f(a * x1 + b * x2, w1), a * f(x1, w1) + b * f(x2, w1),
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(f(x1, a * w1 + b * w2), a * f(x1, w1) + b * f(x1, w2),
                               rtol=1e-9, atol=1e-9)


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 3), st.integers(0, 2**16), st.sampled_from(METHOD_NAMES))
def test_translation_equivariance_circular(shift_h, shift_w, seed, method):
  """With circular padding and stride 1, shifting the input shifts the output."""
  x, w = _rand((1, 2, 6, 7), seed), _rand((3, 2, 3, 3), seed + 1)
  f = lambda x: jaxconv.conv(x, w, padding=1, padding_mode="circular", method=method)
  shifted = jnp.roll(x, (shift_h, shift_w), axis=(2, 3))
  np.testing.assert_allclose(f(shifted), jnp.roll(f(x), (shift_h, shift_w), axis=(2, 3)),
                             rtol=1e-9, atol=1e-9)


@SETTINGS
@given(geometries(), st.integers(0, 2**16))
def test_unfold_fold_adjoint(geometry, seed):
  x_shape, w_shape, kw = geometry
  k = w_shape[2:]
  args = dict(stride=kw["stride"], padding=kw["padding"], dilation=kw["dilation"])
  x = _rand(x_shape, seed)
  cols = jaxconv.unfold(x, k, **args)
  y = _rand(cols.shape, seed + 1)
  np.testing.assert_allclose(jnp.vdot(cols, y),
                             jnp.vdot(x, jaxconv.fold(y, x_shape[2:], k, **args)), rtol=1e-10)
