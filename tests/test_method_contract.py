"""The method contract (`jaxconv/_methods/__init__.py`): every registered
method provides it, its cost features are what the cost model reads, and its
`temp_bytes` estimate bounds what XLA actually allocates."""

from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconv import _select
from jaxconv._geometry import geometry_of, input_gradient_geometry
import jaxconv
from jaxconv._methods import (HOOKS, METHODS, REQUIRED, SPREAD_TEXT, hook, missing,
                              nonfinite_spread, supporting)
from jaxconv._methods.common import PASSES, PURPOSES, UNROLLED_TAP_CAPS
from jaxconv._perpass import per_pass

GEOMETRIES = {
    "dense-3x3": ((4, 16, 32, 32), (16, 16, 3, 3), dict(padding=1)),
    "depthwise-7x7": ((2, 32, 40, 40), (32, 1, 7, 7), dict(padding=3, groups=32)),
    "strided-5x5": ((2, 8, 30, 30), (16, 8, 5, 5), dict(stride=2, padding=2)),
    "1d-long": ((1, 8, 2048), (8, 1, 65), dict(padding="SAME", groups=8)),
    "1x1": ((2, 32, 16, 16), (64, 32, 1, 1), {}),
    "3d": ((2, 4, 12, 12, 12), (4, 4, 3, 3, 3), dict(padding=1)),
}


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_provides_the_contract(name):
  module = METHODS[name]
  assert missing(module) == []
  assert list(inspect.signature(module.supports).parameters) == ["g", "purpose"]
  g = geometry_of((1, 2, 9), (3, 2, 3))
  for purpose in PURPOSES:
    assert module.supports(g, purpose) is None
  for pass_ in PASSES:
    feats = module.cost(g, pass_, cache_bytes=1 << 20)
    assert feats and all(v >= 0 for v in feats.values())
    assert feats.get("call") == 1
  with pytest.raises(ValueError, match=rf"method {name!r} has no cost for pass_='fwd\+bwd'"):
    module.cost(g, "fwd+bwd", cache_bytes=1 << 20)
  assert isinstance(module.temp_bytes(g), int)


def test_missing_names_what_a_module_lacks():
  half = type("Half", (), {"supports": staticmethod(lambda g, purpose="call": None)})
  assert missing(half) == [f for f in REQUIRED if f != "supports"]


def test_hooks_are_declared_by_defining_all_their_functions():
  providers = {name for name in METHODS if hook(name, "periodic") is not None}
  assert providers == {"fft"}
  for name in providers:
    assert all(callable(getattr(METHODS[name], f)) for f in HOOKS["periodic"])


def test_caps_live_with_the_methods_and_depend_on_the_purpose():
  g = geometry_of((1, 1, 4096), (1, 1, 300))          # 300 taps
  # Calibration times every size auto may pick, so the model never extrapolates.
  assert UNROLLED_TAP_CAPS["calibrate"] == UNROLLED_TAP_CAPS["auto"] < 300
  assert 300 <= UNROLLED_TAP_CAPS["call"]
  assert {"direct", "im2col"} <= set(supporting(g, "call"))
  assert not {"direct", "im2col"} & set(supporting(g, "auto"))
  assert "direct" not in _select.estimate(g, "cpu")
  assert "300 > 256 taps for auto" in METHODS["direct"].supports(g, "auto")


@pytest.mark.parametrize("case", list(GEOMETRIES))
def test_temp_bytes_bounds_what_xla_allocates(case):
  """XLA's forward temp bytes (`memory_analysis()`) are at most 2x each
  method's estimate, and the estimate is not far above them (8x + 1 MiB)."""
  if jax.default_backend() != "cpu":
    pytest.skip("the estimates are measured against XLA:CPU's buffer assignment")
  x_shape, w_shape, kw = GEOMETRIES[case]
  g = geometry_of(x_shape, w_shape, **kw)
  x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
  w = jax.ShapeDtypeStruct(w_shape, jnp.float32)
  for name in supporting(g):
    conv = METHODS[name].conv
    compiled = jax.jit(lambda x, w: conv(x, w, g)).lower(x, w).compile()
    actual = compiled.memory_analysis().temp_size_in_bytes
    estimate = METHODS[name].temp_bytes(g)
    assert actual <= 2 * estimate + (64 << 10), (name, actual, estimate)
    assert estimate <= 8 * actual + (1 << 20), (name, actual, estimate)


@pytest.mark.parametrize("name", list(METHODS))
def test_nonfinite_spread_is_what_the_method_declares(name):
  """A NaN at one input position reaches exactly the outputs the method's
  `NONFINITE_SPREAD` says: its window's outputs, its line's, or its block's."""
  x = jnp.zeros((1, 2, 12, 12)).at[0, 1, 6, 6].set(jnp.nan)
  w = jnp.ones((3, 2, 3, 3))
  y = jaxconv.conv(x, w, padding=1, method=name)
  bad = np.isnan(np.asarray(y))
  window = np.zeros_like(bad)
  window[:, :, 5:8, 5:8] = True                      # outputs whose 3x3 window reads (6, 6)
  line = np.zeros_like(bad)
  line[:, :, 5:8, :] = True                          # every output of rows 5..7
  expected = {"window": window, "line": line, "block": np.ones_like(bad)}
  np.testing.assert_array_equal(bad, expected[nonfinite_spread(name)])


def test_select_method_reports_the_nonfinite_spread():
  plan = jaxconv.select_method((1, 8, 4096), (8, 1, 1024), padding="SAME",
                               groups=8, backend="cpu")
  assert plan.fwd == "fft" and plan.reasons[0].endswith(SPREAD_TEXT["block"]), plan.reason


def test_direct_depthwise_weight_gradient_needs_no_window_per_tap():
  """direct's depthwise weight gradient reduces one tap's window at a time:
  its temporaries stay near one input, not `taps x input` (98 MiB here, the
  size autodiff of the unrolled sum gave; 32 GB for 31x31 on 32x512x512)."""
  if jax.default_backend() != "cpu":
    pytest.skip("measured against XLA:CPU's buffer assignment")
  x = jax.ShapeDtypeStruct((1, 32, 128, 128), jnp.float32)
  w = jax.ShapeDtypeStruct((32, 1, 7, 7), jnp.float32)
  g = geometry_of(x.shape, w.shape, padding=3, groups=32)
  conv = METHODS["direct"].conv
  dw = jax.jit(jax.grad(lambda x, w: conv(x, w, g).sum(), argnums=1))
  temp = dw.lower(x, w).compile().memory_analysis().temp_size_in_bytes
  one_input = 4 * 32 * 134 * 134
  assert temp <= 4 * one_input, (temp, one_input)


@pytest.mark.parametrize("name", [m for m in METHODS if hasattr(METHODS[m], "weight_term")])
def test_weight_term_is_the_same_convolution(name):
  """A method's optional `weight_term` computes its `conv`, on depthwise,
  broadcast (one input channel, several outputs per group) and dense kernels."""
  rng = np.random.default_rng(0)
  for x_shape, w_shape, kw in [((2, 4, 9, 8), (4, 1, 3, 2), dict(groups=4, padding=1)),
                               ((2, 2, 9, 8), (6, 1, 3, 3), dict(groups=2, stride=2)),
                               ((1, 3, 7, 7), (2, 3, 2, 2), dict(dilation=2))]:
    g = geometry_of(x_shape, w_shape, "float64", **kw)
    x, w = jnp.asarray(rng.normal(size=x_shape)), jnp.asarray(rng.normal(size=w_shape))
    np.testing.assert_allclose(METHODS[name].weight_term(x, w, g),
                               METHODS[name].conv(x, w, g), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", [m for m in METHODS if hasattr(METHODS[m], "input_term")])
def test_input_term_is_the_same_convolution(name):
  """A method's optional `input_term` computes its `conv` (depthwise,
  broadcast, dense, strided, dilated, transposed), and so does its jvp."""
  rng = np.random.default_rng(1)
  for x_shape, w_shape, kw in [((2, 4, 9, 8), (4, 1, 3, 2), dict(groups=4, padding=1)),
                               ((2, 2, 9, 8), (6, 1, 3, 3), dict(groups=2, stride=2)),
                               ((1, 3, 11), (3, 1, 2), dict(groups=3, dilation=3,
                                                            padding=((4, 5),))),
                               ((1, 3, 7, 7), (2, 3, 2, 2), dict(dilation=2)),
                               ((1, 2, 5), (2, 1, 3), dict(groups=2, lhs_dilation=2))]:
    g = geometry_of(x_shape, w_shape, "float64", **kw)
    x, w = jnp.asarray(rng.normal(size=x_shape)), jnp.asarray(rng.normal(size=w_shape))
    term = functools.partial(METHODS[name].input_term, g=g)
    conv = functools.partial(METHODS[name].conv, g=g)
    np.testing.assert_allclose(term(x, w), conv(x, w), rtol=1e-12, atol=1e-12)
    tx = jnp.asarray(rng.normal(size=x_shape))
    np.testing.assert_allclose(jax.jvp(lambda x: term(x, w), (x,), (tx,))[1],
                               conv(tx, w), rtol=1e-12, atol=1e-12)


def _growing_pads(jaxpr) -> int:
  """`pad`s that add elements (positive edge padding), in `jaxpr` and the
  jaxprs nested in its equations (a crop is a `pad` with negative edges)."""
  count = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "pad":
      count += any(lo > 0 or hi > 0 for lo, hi, _ in eqn.params["padding_config"])
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          count += _growing_pads(inner)
  return count


@pytest.mark.parametrize("plan", [("fft", "direct", "fft"), ("direct", "direct", "direct")])
def test_depthwise_dx_is_a_correlation_of_dy(plan):
  """Direct's depthwise input gradient pads `dy` once and slices (crops) it
  per tap (`input_term`): one pad more than the forward's, where autodiff of the unrolled sum pads one copy of `dy`
  per tap (49 for this 7x7 kernel, 4-6x slower)."""
  g = geometry_of((1, 8, 16, 16), (8, 1, 7, 7), padding=3, groups=8)
  x, w = jnp.ones(g.in_shape, jnp.float32), jnp.ones(g.kernel_shape, jnp.float32)
  conv = per_pass(*plan) if plan[0] != "direct" else METHODS["direct"].conv
  forward = jax.make_jaxpr(lambda x: conv(x, w, g).sum())(x)
  dx = jax.make_jaxpr(jax.grad(lambda x: conv(x, w, g).sum()))(x)
  assert _growing_pads(dx.jaxpr) == _growing_pads(forward.jaxpr) + 1
  unrolled = METHODS["direct"]._unrolled
  autodiff = jax.make_jaxpr(jax.grad(lambda x: unrolled(x, w, g).sum()))(x)
  assert _growing_pads(autodiff.jaxpr) >= 49


def test_input_gradient_geometry_recovers_the_input_shape():
  """The correlation of the cotangent has the input's shape, also where the
  strided windows leave inputs unread, padding exceeds the kernel, or groups
  and channel multipliers change the channel counts."""
  for x_shape, w_shape, kw in [((2, 6, 9), (4, 3, 3), dict(stride=2, padding=1, groups=2)),
                               ((1, 2, 10, 7), (6, 1, 3, 2), dict(stride=(3, 2), groups=2)),
                               ((1, 1, 8), (1, 1, 2), dict(padding=((3, 4),), dilation=3)),
                               ((1, 4, 6, 6), (4, 4, 1, 1), dict(stride=4))]:
    g = geometry_of(x_shape, w_shape, **kw)
    t = input_gradient_geometry(g)
    assert t.out_shape == g.in_shape and t.in_shape == g.out_shape, (g, t)


def test_per_pass_dw_uses_the_weight_term():
  """A plan whose dW pass is direct gets direct's depthwise weight gradient
  (one window at a time), not autodiff's of the unrolled sum."""
  if jax.default_backend() != "cpu":
    pytest.skip("measured against XLA:CPU's buffer assignment")
  x = jax.ShapeDtypeStruct((1, 32, 128, 128), jnp.float32)
  w = jax.ShapeDtypeStruct((32, 1, 7, 7), jnp.float32)
  g = geometry_of(x.shape, w.shape, padding=3, groups=32)
  conv = per_pass("fft", "fft", "direct")
  dw = jax.jit(jax.grad(lambda x, w: conv(x, w, g).sum(), argnums=1))
  temp = dw.lower(x, w).compile().memory_analysis().temp_size_in_bytes
  assert temp <= 4 * (4 * 32 * 134 * 134), temp
