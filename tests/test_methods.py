"""Every method over the one table (tests/configs.py), each row through its own
public function (`conv`, `conv_transpose` or `conv_general_dilated`): values and
derivatives vs lax, float64 numerical gradients to second order, jit/eager, vmap,
per-example gradients, and no retracing. A method runs every row or declines it
as pinned in `EXPECTED_DECLINES`; a new method runs the same checks (the last
test)."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxconv import testing
from jaxconv._methods import METHODS
import reference_loop_method
from configs import (CASE_IDS, CASES, CASES_BY_ID, EXPECTED_DECLINES, METHOD_NAMES, X64,
                     expect_decline, half_grid, needs_x64)


def _inputs(case, dtype=jnp.float32, seed=0):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.standard_normal(case.x_shape), dtype),
          jnp.asarray(rng.standard_normal(case.w_shape), dtype))


def check_row(case, method, dtype=jnp.float32):
  """The value check of one row: shape and dtype as lax's, then values, VJPs in
  every argument, JVP and a second-order derivative vs lax (`Case.check`).
  Returns False when the method declines the row as pinned."""
  if expect_decline(case, method):
    return False
  struct = lambda shape: jax.ShapeDtypeStruct(shape, dtype)
  ours = jax.eval_shape(case.call(method), struct(case.x_shape), struct(case.w_shape))
  want = jax.eval_shape(case.reference(), struct(case.x_shape), struct(case.w_shape))
  assert (ours.shape, ours.dtype) == (want.shape, want.dtype)
  results = case.check(method, dtype)
  assert {r.name for r in results} >= {"value", "vjp_0", "vjp_1", "jvp", "hvp_0", "hvp_1"}
  return True


# The whole grid in the float64-enabled run; the float32 re-run (JAX's default
# mode, JAXCONV_TEST_X64=0 in `make test`) checks half of it, the other half
# of each row's methods than the jit/vmap test below.
VALUE_GRID = ([pytest.param(c, m, id=f"{c.id}-{m}") for c in CASES for m in METHOD_NAMES]
              if X64 else half_grid(CASES, parity=1))


@pytest.mark.parametrize("case,method", VALUE_GRID)
def test_values_and_derivatives_match_lax(case, method):
  check_row(case, method)


# Numerical second-order checks are costly (many evaluations per compile): a
# subset of the table that still covers every feature once.
GRAD_CASES = [CASES_BY_ID[i] for i in (
    "1d-stride3-pad2", "1d-causal-dilated-depthwise", "1d-reflect", "1d-negative-pad",
    "2d-same-even-kernel-stride2", "2d-groups2", "2d-circular", "2d-flip-stride2",
    "3d-depthwise", "T1d-stride2", "T2d-pad1-outpad1-groups2", "L2d-batch-groups")]


@needs_x64
@pytest.mark.parametrize("case,method", half_grid(GRAD_CASES, parity=0))
def test_numerical_gradients_second_order_float64(case, method):
  if expect_decline(case, method):
    return
  x, w = _inputs(case, jnp.float64)
  f = jax.jit(case.call(method))
  check_grads(f, (x, w), order=2, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("case,method", half_grid(CASES, parity=0))
def test_jit_eager_vmap_per_example_grads_no_retrace(case, method):
  if expect_decline(case, method):
    return
  x, w = _inputs(case)
  x2, w2 = _inputs(case, seed=1)
  call = case.call(method)
  tol = dict(atol=1e-5 * float(jnp.abs(x).max() * jnp.abs(w).sum()), rtol=0)
  chex.clear_trace_counter()

  def traced(x, w):
    return call(x, w)

  jitted = jax.jit(chex.assert_max_traces(traced, n=1))
  y = jitted(x, w)
  jitted(x2, w2)  # same shapes: must not trace again
  np.testing.assert_allclose(call(x, w), y, **tol)  # eager == jit

  # vmap over an extra leading axis equals the calls one by one.
  ys = jax.jit(jax.vmap(call, in_axes=(0, None)))(jnp.stack([x, x2]), w)
  np.testing.assert_allclose(ys[1], jitted(x2, w), **tol)

  if not case.batch_independent:  # batch groups: an example's output needs the others
    return
  # Per-example gradients: vmap(grad) over the batch equals grads of single examples.
  loss = lambda w, xi: jnp.sum(jnp.sin(call(xi[None], w)))
  per_example = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(w, x)
  single = jax.jit(jax.grad(loss))
  for i in range(x.shape[0]):
    np.testing.assert_allclose(per_example[i], single(w, x[i]), **tol)


def test_expected_declines_name_real_rows():
  """Every pinned decline names a registered method and a row of the table."""
  for method, case_id in EXPECTED_DECLINES:
    assert method in METHODS, method
    assert case_id in CASES_BY_ID, case_id


def test_unpinned_and_stale_declines_fail(monkeypatch):
  """The decline table is exact: a method declining an unpinned row fails, and
  so does a pinned decline that no longer happens."""
  case = CASES_BY_ID["1d-valid"]
  picky = type("Picky", (), {})()
  picky.supports = lambda g, purpose="call": "it only does 2-D" if g.rank != 2 else None
  picky.conv, picky.temp_bytes = METHODS["lax"].conv, METHODS["lax"].temp_bytes
  monkeypatch.setitem(METHODS, "picky", picky)
  with pytest.raises(pytest.fail.Exception, match="declines row '1d-valid'.*only does 2-D"):
    expect_decline(case, "picky")
  monkeypatch.setitem(EXPECTED_DECLINES, ("picky", "1d-valid"), "only does 2-D")
  assert expect_decline(case, "picky")
  monkeypatch.setitem(EXPECTED_DECLINES, ("picky", "2d-valid"), "only does 2-D")
  with pytest.raises(pytest.fail.Exception, match="DID NOT RAISE"):
    expect_decline(CASES_BY_ID["2d-valid"], "picky")


def test_check_against_lax_catches_a_wrong_method(monkeypatch):
  """The comparison can fail: a method off by a tap is reported."""
  broken = type("Broken", (), {})()
  broken.supports = lambda g, purpose="call": None
  broken.conv = lambda x, w, g: METHODS["lax"].conv(x, w, g) * 1.001
  broken.temp_bytes = METHODS["lax"].temp_bytes
  monkeypatch.setitem(METHODS, "broken", broken)
  with pytest.raises(AssertionError, match="method='broken' disagrees with lax.*value"):
    testing.check_against_lax("broken", (1, 2, 6, 6), (2, 2, 3, 3))
  with pytest.raises(AssertionError, match="method='broken' disagrees with lax.*value"):
    testing.check_general_against_lax("broken", (1, 6, 6, 2), (3, 3, 2, 2),
                                      window_strides=(1, 1), padding="SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def test_a_new_method_runs_the_whole_table(monkeypatch):
  """Registering a method is one line; it then runs every row through the same
  check as the registered methods (values and derivatives vs lax)."""
  monkeypatch.setitem(METHODS, "loop", reference_loop_method)
  checked = [case.id for case in CASES if check_row(case, "loop")]
  declined = {i for m, i in EXPECTED_DECLINES if m == "loop"}
  assert set(checked) == set(CASE_IDS) - declined


def test_im2col_weight_gradient_runs_one_gemm_where_the_batched_ones_are_slow():
  """`common.broadcast_for_weight_gradient`: one group, `4 * Og * K > (Og + K)
  * L` (large per-element results) leaves the weight gradient's GEMM
  unbroadcast while the forward keeps its batched GEMM, and below that bound
  it broadcasts where the forward does not (K > L); im2col's `conv` then
  takes its weight gradient from `weight_term`, in every derivative."""
  from jaxconv._geometry import geometry_of
  from jaxconv._methods import common, im2col
  assert not common.broadcast_for_weight_gradient((1, 384, 96), (16, 1, 96, 256))
  assert common.broadcast_weights((1, 384, 96), (16, 1, 96, 256))
  assert common.broadcast_for_weight_gradient((1, 256, 256), (16, 1, 256, 1024))
  assert common.broadcast_for_weight_gradient((2, 384, 96), (16, 2, 96, 256))  # groups
  assert not common.broadcast_weights((1, 128, 1152), (8, 1, 1152, 784))     # ResNet 3x3
  assert common.broadcast_for_weight_gradient((1, 128, 1152), (8, 1, 1152, 784))
  assert not common.broadcast_for_weight_gradient((1, 256, 2304), (8, 1, 2304, 196))
  assert im2col._own_weight_gradient(geometry_of((1, 16, 3, 3), (2, 16, 1, 1)))  # K 16 > L 9
  x_shape, w_shape = (2, 18, 6, 6), (40, 18, 1, 1)            # Og 40, K 18, L 36
  g = geometry_of(x_shape, w_shape)
  assert im2col._own_weight_gradient(g)
  assert not im2col._own_weight_gradient(geometry_of(x_shape, (8, 18, 1, 1)))
  x, w = jnp.ones(x_shape), jnp.ones(w_shape)
  dw = jax.make_jaxpr(jax.grad(lambda w: METHODS["im2col"].conv(x, w, g).sum()))(w)
  shapes = [e.outvars[0].aval.shape for e in dw.eqns if e.primitive.name == "dot_general"]
  assert shapes == [(1, 40, 18)]                  # not (2, 1, 40, 18): one per element
  testing.check_against_lax("im2col", x_shape, w_shape, jnp.float64 if X64 else jnp.float32)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "int32", "complex64"])
def test_fusion_boundary_is_the_identity_in_value_and_derivatives(dtype):
  """`_fusion.fusion_boundary` returns its input bit for bit (denormals,
  infinities, NaN), and its derivatives are the identity in both modes."""
  from jaxconv._fusion import fusion_boundary
  dt = np.dtype(dtype) if dtype != "bfloat16" else jnp.bfloat16
  if np.issubdtype(dt, np.integer):
    x = jnp.arange(-3, 4, dtype=dt)
  else:
    tiny = float(jnp.finfo(dt).tiny) if dtype != "complex64" else 1e-38
    x = jnp.array([0.0, -0.0, tiny / 4, 1.5, -7e3, jnp.inf, -jnp.inf, jnp.nan], dt)
  y = jax.jit(fusion_boundary)(x)
  assert y.dtype == x.dtype
  assert np.array_equal(np.asarray(y).view(np.uint8), np.asarray(x).view(np.uint8))
  if np.issubdtype(dt, np.floating) or dtype == "bfloat16":
    t = jnp.linspace(-1, 1, x.size).astype(dt)
    assert np.array_equal(jax.jvp(fusion_boundary, (x,), (t,))[1], t)
    assert np.array_equal(jax.vjp(fusion_boundary, x)[1](t)[0], t)


def _entry_fusions(fn, *args) -> int:
  """Fusion instructions in the entry computation of `fn`'s compiled program."""
  text = jax.jit(fn).lower(*args).compile().as_text()
  entry = text[text.index("\nENTRY"):]
  entry = entry[:entry.index("\n}")]
  return entry.count(" fusion(")


def test_direct_depthwise_tap_sum_stays_out_of_a_following_reduction():
  """A LayerNorm over channels after a depthwise `direct` conv: XLA:CPU's
  YNNPACK fusion of the reduction must not take the tap sum, which would
  materialise one window per tap (18 fusions here, measured 12x slower on
  ConvNeXt's 7x7); `direct` ends the sum at a fusion boundary, so the tap
  sum stays one loop fusion. Dense `direct` (a GEMM per tap) needs none.
  (XLA takes small arrays into no YNNPACK fusion: 32K elements do.)"""
  from jaxconv._geometry import geometry_of
  x_shape, w_shape = (1, 8, 64, 64), (8, 1, 3, 3)
  rng = np.random.default_rng(0)
  x, w = (jnp.asarray(rng.standard_normal(s), jnp.float32) for s in (x_shape, w_shape))
  g = geometry_of(x_shape, w_shape, padding=((1, 1), (1, 1)), groups=8)
  conv = lambda x, w: METHODS["direct"].conv(x, w, g)          # noqa: E731

  def layer_norm_after(conv, x, w):
    y = conv(x, w)
    mean = y.mean(axis=1, keepdims=True)
    return (y - mean) * jax.lax.rsqrt(jnp.square(y - mean).mean(axis=1, keepdims=True) + 1e-6)

  lowered = lambda f, *args: jax.jit(f).lower(*args).as_text()  # noqa: E731
  assert "reduce_precision" in lowered(conv, x, w)
  dense = geometry_of(x_shape, (4, 8, 3, 3))
  assert "reduce_precision" not in lowered(
      lambda x, w: METHODS["direct"].conv(x, w, dense), x, jnp.ones((4, 8, 3, 3), x.dtype))
  if jax.default_backend() == "cpu":
    assert _entry_fusions(functools.partial(layer_norm_after, conv), x, w) <= 6
  reference = lambda x, w: METHODS["lax"].conv(x, w, g)        # noqa: E731
  np.testing.assert_allclose(layer_norm_after(conv, x, w), layer_norm_after(reference, x, w),
                             rtol=1e-5, atol=1e-5)
