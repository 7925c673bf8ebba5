"""The memory budget: named methods over it are declined with the numbers,
`auto`/`autotune` skip them, `unfold` refuses, and bad budgets are errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import jaxconv
from jaxconv import _budget, _select
from jaxconv._geometry import geometry_of
from jaxconv._methods import METHODS

X = jax.ShapeDtypeStruct((4, 16, 32, 32), jnp.float32)
W = jax.ShapeDtypeStruct((16, 16, 3, 3), jnp.float32)
G = geometry_of(X.shape, W.shape, padding=1)


def _trace(method, budget, **kw):
  return jax.eval_shape(lambda x, w: jaxconv.conv(x, w, padding=1, method=method,
                                                  memory_budget=budget, **kw), X, W)


def test_named_method_over_budget_is_declined_with_the_numbers():
  im2col = METHODS["im2col"].temp_bytes(G)            # ~2.3 MiB of patches
  budget = im2col // 2
  assert METHODS["lax"].temp_bytes(G) <= budget
  with pytest.raises(NotImplementedError,
                     match=r"method='im2col' does not support this convolution \(its forward "
                           r"pass needs ~.* MiB of temporary memory, over the budget of .* "
                           r"\(`memory_budget` or \$JAXCONV_MEMORY_BUDGET\)\); use 'lax'"):
    _trace("im2col", budget)
  assert _trace("im2col", im2col).shape == (4, 16, 32, 32)


def test_auto_skips_methods_over_budget():
  fits = {m for m in METHODS if METHODS[m].temp_bytes(G) <= 600_000}
  assert "lax" in fits and "im2col" not in fits
  est = _select.estimate(G, "cpu", budget=600_000)
  assert set(est) <= fits
  plan = _select.select(G, "cpu", budget=600_000)
  assert set(plan.methods) <= fits
  assert all("im2col (its forward pass needs" in r for r in plan.reasons)


def test_environment_variable_sets_the_default(monkeypatch):
  monkeypatch.setenv(_budget.ENV_VAR, "1.5M")
  assert _budget.memory_budget() == int(1.5 * (1 << 20))
  monkeypatch.setenv(_budget.ENV_VAR, "4GiB")
  assert _budget.memory_budget() == 4 << 30
  monkeypatch.setenv(_budget.ENV_VAR, "1000")
  assert _budget.memory_budget() == 1000
  with pytest.raises(NotImplementedError, match=r"over the budget of 1000 B"):
    _trace("toeplitz", None)
  monkeypatch.setenv(_budget.ENV_VAR, "lots")
  with pytest.raises(ValueError, match=r"\$JAXCONV_MEMORY_BUDGET must be a positive number "
                                       r"of bytes.*got JAXCONV_MEMORY_BUDGET='lots'"):
    _budget.memory_budget()


def test_default_is_a_fraction_of_the_device_memory(monkeypatch):
  monkeypatch.delenv(_budget.ENV_VAR, raising=False)
  total = _budget.device_memory_bytes()
  assert total > 0
  assert _budget.memory_budget() == int(_budget.DEVICE_FRACTION * total)


@pytest.mark.parametrize("budget,exc,match", [
    (0, ValueError, r"conv: `memory_budget` must be positive; got memory_budget=0"),
    (1.5e9, TypeError, r"conv: `memory_budget` must be None or an int \(bytes\); got "
                       r"memory_budget=1500000000.0"),
])
def test_bad_budgets(budget, exc, match):
  with pytest.raises(exc, match=match):
    _trace("lax", budget)


def test_unfold_refuses_patches_over_budget():
  x = jnp.zeros((2, 3, 16, 16), jnp.float32)
  assert jaxconv.unfold(x, 3, memory_budget=1 << 20).shape == (2, 27, 196)
  with pytest.raises(ValueError, match=r"unfold: the patches would take 41.3 KiB, over the "
                                       r"memory budget of 1000 B"):
    jaxconv.unfold(x, 3, memory_budget=1000)
