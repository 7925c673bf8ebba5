"""Every method over the shared geometry table: values and derivatives vs lax,
float64 numerical gradients to second order, jit/eager, vmap, per-example
gradients, and no retracing."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxconv
from jaxconv import testing
from jaxconv._methods import METHODS
from configs import CASE_IDS, CASES, METHOD_NAMES


def _call(case, method):
  fn = jaxconv.conv_transpose if case.transpose else jaxconv.conv
  return functools.partial(fn, **case.kwargs, method=method)


def _unsupported_reason(case, method):
  """The method's own reason for declining this case, or None."""
  try:
    jax.eval_shape(_call(case, method), jax.ShapeDtypeStruct(case.x_shape, jnp.float32),
                   jax.ShapeDtypeStruct(case.w_shape, jnp.float32))
  except NotImplementedError as e:
    return str(e)
  return None


def _inputs(case, dtype=jnp.float32, seed=0):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.standard_normal(case.x_shape), dtype),
          jnp.asarray(rng.standard_normal(case.w_shape), dtype))


@pytest.mark.parametrize("method", METHOD_NAMES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_values_and_derivatives_match_lax(case, method):
  reason = _unsupported_reason(case, method)
  if reason is not None:
    # A documented exclusion must name the methods that can do it.
    assert "use 'lax'" in reason or "'lax'" in reason, reason
    return
  results = testing.check_against_lax(method, case.x_shape, case.w_shape, jnp.float32,
                                      transpose=case.transpose, bias=case.bias,
                                      **case.kwargs)
  assert {r.name for r in results} >= {"value", "vjp_0", "vjp_1", "jvp", "hvp_0", "hvp_1"}


# Numerical second-order checks are costly (many evaluations per compile): a
# subset of the table that still covers every feature once.
GRAD_CASES = [c for c in CASES if c.id in {
    "1d-stride3-pad2", "1d-causal-dilated-depthwise", "1d-reflect", "1d-negative-pad",
    "2d-same-even-kernel-stride2", "2d-groups2", "2d-circular", "2d-flip-stride2",
    "3d-depthwise", "T1d-stride2", "T2d-pad1-outpad1-groups2"}]


@pytest.mark.parametrize("method", METHOD_NAMES)
@pytest.mark.parametrize("case", GRAD_CASES, ids=[c.id for c in GRAD_CASES])
def test_numerical_gradients_second_order_float64(case, method):
  if _unsupported_reason(case, method):
    return
  x, w = _inputs(case, jnp.float64)
  f = jax.jit(_call(case, method))
  check_grads(f, (x, w), order=2, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("method", METHOD_NAMES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_jit_eager_vmap_per_example_grads_no_retrace(case, method):
  if _unsupported_reason(case, method):
    return
  x, w = _inputs(case)
  x2, w2 = _inputs(case, seed=1)
  call = _call(case, method)
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

  # Per-example gradients: vmap(grad) over the batch equals grads of single examples.
  loss = lambda w, xi: jnp.sum(jnp.sin(call(xi[None], w)))
  per_example = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(w, x)
  single = jax.jit(jax.grad(loss))
  for i in range(x.shape[0]):
    np.testing.assert_allclose(per_example[i], single(w, x[i]), **tol)


def test_check_against_lax_catches_a_wrong_method(monkeypatch):
  """The comparison can fail: a method off by a tap is reported."""
  broken = type("Broken", (), {})()
  broken.supports = lambda g: None
  broken.conv = lambda x, w, g: METHODS["lax"].conv(x, w, g) * 1.001
  monkeypatch.setitem(METHODS, "broken", broken)
  with pytest.raises(AssertionError, match="method='broken' disagrees with lax.*value"):
    testing.check_against_lax("broken", (1, 2, 6, 6), (2, 2, 3, 3))
