"""`auto`'s per-pass plans: the forward, input-gradient and weight-gradient
passes of one convolution run different methods (`jaxconv._perpass`), and
every derivative stays lax's."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv
from jaxconv import _perpass, _profiles, _select
from jaxconv._geometry import geometry_of
from jaxconv._methods import METHODS, hook
from jaxconv._methods.common import PASSES
from jaxconv.testing import check_against_lax

from configs import CASES as TABLE, needs_x64
from test_methods import check_row


@pytest.fixture
def plan(monkeypatch):
  """`plan(fwd, dx, dw)` makes `method="auto"` run these methods."""
  def use(*methods, fwd_train=None):
    fixed = _select.Plan(*methods, ("test plan",) * 3, fwd_train)
    monkeypatch.setattr(_select, "select", lambda g, backend=None, budget=None, **kw: fixed)
  return use


# (plan, x_shape, w_shape, kwargs): every kind of geometry the passes must
# agree on, each pass with a different method.
CASES = [
    (("direct", "fft", "im2col"), (2, 4, 9, 9), (6, 4, 3, 3), dict(padding=1), False),
    (("fft", "direct", "toeplitz"), (2, 6, 11, 10), (6, 1, 3, 3),
     dict(stride=2, padding="SAME", groups=6), False),
    (("im2col", "lax", "fft"), (2, 4, 7), (4, 3, 3), dict(stride=2, padding=1,
                                                          output_padding=1), True),
    (("toeplitz", "im2col", "direct"), (1, 3, 17), (4, 3, 3),
     dict(dilation=2, padding=2, padding_mode="reflect"), False),
    (("fft (periodic)", "direct", "fft (periodic)"), (1, 4, 12, 12), (4, 1, 5, 5),
     dict(padding=2, groups=4, padding_mode="circular"), False),
    (("lax", "fft (periodic)", "im2col"), (2, 2, 16), (3, 2, 5),
     dict(padding=2, padding_mode="circular", flip=True), False),
]


@needs_x64
@pytest.mark.parametrize("methods,x_shape,w_shape,kwargs,transpose", CASES,
                         ids=["dense", "dw-strided", "transposed", "reflect-dilated",
                              "circular-periodic", "circular-mixed"])
def test_values_and_every_derivative_match_lax(plan, methods, x_shape, w_shape, kwargs,
                                               transpose):
  plan(*methods)
  check_against_lax("auto", x_shape, w_shape, jnp.float64, transpose=transpose,
                    bias=True, **kwargs)


@needs_x64
@pytest.mark.parametrize("methods,fwd_train", [(("direct", "fft", "im2col"), None),
                                               (("lax", "im2col", "im2col"), "im2col")],
                         ids=["mixed", "training-method"])
def test_per_example_gradients_hessian_and_jacfwd(plan, methods, fwd_train):
  plan(*methods, fwd_train=fwd_train)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((3, 2, 10)))
  w = jnp.asarray(rng.standard_normal((4, 2, 3)))

  def loss(method):
    return lambda w, x: jnp.sum(jaxconv.conv(x[None], w, padding=1, method=method) ** 2)
  per_example = jax.vmap(jax.grad(loss("auto")), (None, 0))(w, x)
  np.testing.assert_allclose(per_example, jax.vmap(jax.grad(loss("lax")), (None, 0))(w, x),
                             rtol=1e-10, atol=1e-10)
  hess = jax.hessian(loss("auto"), (0, 1))(w, x[0])
  ref = jax.hessian(loss("lax"), (0, 1))(w, x[0])
  for a, b in zip(jax.tree.leaves(hess), jax.tree.leaves(ref)):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
  jac = jax.jacfwd(lambda x: jaxconv.conv(x, w, method="auto"))(x)
  np.testing.assert_allclose(jac, jax.jacfwd(lambda x: jaxconv.conv(x, w, method="lax"))(x),
                             rtol=1e-10, atol=1e-10)


def _hlo(f, *args) -> str:
  return jax.jit(f).lower(*args).as_text()


def test_a_gradient_in_one_argument_runs_only_its_pass(plan):
  """Symbolic zero tangents: the gradient in `w` alone never runs the dx
  method (here the FFT), the gradient in `x` alone never runs the dw one."""
  x, w = jnp.ones((2, 3, 16)), jnp.ones((4, 3, 3))
  f = lambda x, w: jaxconv.conv(x, w, padding=1).sum()  # noqa: E731
  plan("lax", "fft", "lax")
  assert "fft" not in _hlo(jax.grad(f, 1), x, w)
  assert "fft" in _hlo(jax.grad(f, 0), x, w)
  plan("lax", "lax", "fft")
  assert "fft" not in _hlo(jax.grad(f, 0), x, w)
  assert "fft" in _hlo(jax.grad(f, 1), x, w)
  # Inference runs the forward method only.
  plan("fft", "lax", "lax")
  fwd = _hlo(lambda x, w: jaxconv.conv(x, w, padding=1), x, w)
  assert "fft" in fwd and "convolution" not in fwd


# (forward without gradients, the one method of a differentiated call, ...)
TRAINING_CASES = [
    ("lax", "fft", (2, 4, 9, 9), (6, 4, 3, 3), dict(padding=1), False),
    ("direct", "im2col", (2, 6, 11, 10), (6, 1, 3, 3),
     dict(stride=2, padding="SAME", groups=6), False),
    ("im2col", "lax", (2, 4, 7), (4, 3, 3), dict(stride=2, padding=1, output_padding=1), True),
    ("fft (periodic)", "direct", (1, 4, 12, 12), (4, 1, 5, 5),
     dict(padding=2, groups=4, padding_mode="circular"), False),
]


@needs_x64
@pytest.mark.parametrize("fwd,train,x_shape,w_shape,kwargs,transpose", TRAINING_CASES,
                         ids=["dense", "dw-strided", "transposed", "circular"])
def test_a_training_method_matches_lax_in_every_derivative(plan, fwd, train, x_shape,
                                                           w_shape, kwargs, transpose):
  plan(fwd, train, train, fwd_train=train)
  check_against_lax("auto", x_shape, w_shape, jnp.float64, transpose=transpose,
                    bias=True, **kwargs)


def test_a_training_method_runs_only_under_differentiation(plan):
  """`Plan.fwd_train`: a call without gradients runs the fastest forward (here
  lax's convolution), a differentiated one the training method (the FFT) for
  its forward and both gradients, in one or either argument."""
  x, w = jnp.ones((2, 3, 16)), jnp.ones((4, 3, 3))
  conv = lambda x, w: jaxconv.conv(x, w, padding=1)  # noqa: E731
  plan("lax", "fft", "fft", fwd_train="fft")
  fwd = _hlo(conv, x, w)
  assert "convolution" in fwd and "fft" not in fwd
  for argnums in (0, 1, (0, 1)):
    grad = _hlo(jax.grad(lambda x, w: conv(x, w).sum(), argnums), x, w)
    assert "fft" in grad and "convolution" not in grad, argnums
  value, tangent = jax.jvp(conv, (x, w), (x, w))
  np.testing.assert_allclose(value, jaxconv.conv(x, w, padding=1, method="lax"), rtol=1e-5)
  np.testing.assert_allclose(tangent, 2 * value, rtol=1e-5)


def test_one_method_replaces_the_per_pass_picks_only_by_the_mix_margin():
  """`_select` rule 4 on made-up estimates (seconds per pass), without
  measured shares (a mix's share `UNMEASURED_MIX_SHARE`, 1.17): the best
  single method replaces the per-pass picks only if its step is below
  `MIX_MARGIN` (0.9) x theirs."""
  rule = _select._training_method
  ests = {"fwd": {"lax": 1.0, "direct": 0.5, "fft": 3.0},
          "dx": {"lax": 1.0, "direct": 1.2, "fft": 0.8},
          "dw": {"lax": 1.0, "direct": 1.3, "fft": 0.9}}
  mix = ("direct", "fft", "fft")                    # 2.2 s x 1.17 against lax's 3.0 s
  assert rule(ests, mix, 1.0) is None
  ests["dx"]["fft"] = ests["dw"]["fft"] = 1.4       # 3.3 s x 1.17 against lax's 3.0 s
  one, why = rule(ests, mix, 1.0)
  assert one == "lax" and "1.3x cheaper than the per-pass mix direct / fft / fft's" in why
  # direct's 1.7 s beats lax (3.0 s), but lax stays where direct is not
  # `1 / margin` faster than it.
  ests["dx"]["direct"] = ests["dw"]["direct"] = 0.6
  assert rule(ests, mix, 0.7)[0] == "direct"
  assert rule(ests, mix, 0.5)[0] == "lax"
  # One method picked for every pass stays without measured shares.
  assert rule(ests, ("direct",) * 3, 0.7) is None


def test_measured_shares_cost_a_training_step():
  """With measured shares (`Profile.training`) the sums become training steps:
  fft's fused step (a quarter of its passes' sum here) replaces direct, the
  common winner of the three passes, and a mix that shares little loses."""
  rule = _select._training_method
  ests = {p: {"lax": 1.0, "direct": 0.5, "fft": 0.6} for p in PASSES}
  share = {"lax": 0.7, "direct": 0.9, "fft": 0.25}
  assert rule(ests, ("direct",) * 3, 1.0) is None               # no shares: direct stays
  one, why = rule(ests, ("direct",) * 3, 1.0, share, 0.7)       # 0.45 s against 1.35 s
  assert one == "fft" and "3x cheaper than direct's" in why
  ests["dw"]["direct"] = 0.1                                     # the mix direct/direct/direct
  ests["dw"]["fft"] = 0.05                                       # becomes direct/direct/fft
  assert rule(ests, ("direct", "direct", "fft"), 1.0, share, 0.7)[0] == "fft"
  assert rule(ests, ("direct", "direct", "fft"), 1.0, share, 0.2) is None


def test_training_shares_of_a_profile():
  prof = _profiles.Profile({}, 1, "k", "user", True,
                           {"share": {"lax": 0.7, "fft": 0.5, "im2col": 0.6},
                            "mix_share": 0.8})
  share, mix = _select.training_shares(prof)
  assert share["fft"] == share["fft (periodic)"] == 0.5 and mix == 0.8
  assert share["direct"] == 0.6                                  # the median of the others
  assert _select.training_shares(_profiles.Profile({}, 1, "k", "generic", False)) == (
      {}, _select.UNMEASURED_MIX_SHARE)


def test_a_mix_with_large_temporaries_gets_its_own_share():
  """`training_shares` takes `mix_share_big` for a mix whose methods'
  temporaries (`mix_temp_bytes`, the sum over its distinct methods) exceed
  `mix_big_bytes`, and rule 4 may then run one method throughout: on made-up
  estimates the mix's passes sum to 0.72x direct's, kept at share 0.8, not at 1.1."""
  g = geometry_of((8, 144, 56, 56), (144, 1, 3, 3), padding=1, groups=144)
  mix = ("direct", "direct", "fft")
  temps = _select.mix_temp_bytes(g, mix)
  assert temps == METHODS["direct"].temp_bytes(g) + METHODS["fft"].temp_bytes(g)
  assert _select.mix_temp_bytes(g, ("direct",) * 3) == METHODS["direct"].temp_bytes(g)
  assert _select.mix_temp_bytes(g, ("direct", "fft (periodic)", "fft")) == temps
  prof = _profiles.Profile({}, 1, "k", "user", True,
                           {"share": {"direct": 0.7, "fft": 0.6}, "mix_share": 0.8,
                            "mix_share_big": 1.1, "mix_big_bytes": temps - 1})
  assert _select.training_shares(prof, temps)[1] == 1.1
  assert _select.training_shares(prof, temps - 1)[1] == 0.8
  assert _select.training_shares(prof)[1] == 0.8
  ests = {"fwd": {"direct": 1.0, "fft": 9.0}, "dx": {"direct": 1.0, "fft": 9.0},
          "dw": {"direct": 3.0, "fft": 1.6}}                     # mix 3.6, direct 5.0
  rule = _select._training_method
  assert rule(ests, mix, 1.0, *_select.training_shares(prof, temps - 1)) is None
  assert rule(ests, mix, 1.0, *_select.training_shares(prof, temps))[0] == "direct"


def test_a_training_step_sums_time_fitted_estimates():
  """Rule 4 re-estimates every pass with the profile's `time_coefficients`
  (fitted for time, not for each pass's pick); lax keeps the larger of its
  two estimates, a method without time coefficients (or a periodic candidate
  without the user geometry) its pick estimate, and a profile without any
  keeps them all."""
  g = geometry_of((2, 8, 16, 16), (8, 8, 3, 3), padding=1)
  ests = {p: {"lax": 1e-3, "direct": 1e-3, "fft": 1e-3, "fft (periodic)": 1e-3}
          for p in PASSES}
  times = {m: {p: {"call": 2e6} for p in PASSES} for m in ("direct", "fft")}
  times["lax"] = {p: {"call": 5e5} for p in PASSES}
  prof = _profiles.Profile({}, 1 << 25, "k", "user", True, {}, times)
  out = _select.step_estimates(ests, g, prof)
  for p in PASSES:
    assert out[p]["direct"] == out[p]["fft"] == pytest.approx(2e-3)   # 2e6 ns
    assert out[p]["lax"] == 1e-3                                      # max(1 ms, 0.5 ms)
    assert out[p]["fft (periodic)"] == 1e-3
  # Given the user geometry, the periodic candidate is re-estimated from fft's
  # time coefficients on its own periodic features (`periodic_cost`).
  circ = geometry_of((2, 8, 16, 16), (8, 1, 5, 5), padding=2, groups=8,
                     padding_mode="circular")
  periodic = hook("fft", "periodic")
  times["fft"] = {p: {"call": 2e6, "transform": 1.0} for p in PASSES}
  out = _select.step_estimates(ests, g, prof, circ)
  for p in PASSES:
    feats = periodic.periodic_cost(circ, p, cache_bytes=prof.cache_bytes)
    assert feats["transform"] > 0
    assert out[p]["fft (periodic)"] == pytest.approx(1e-9 * (2e6 + feats["transform"]))
  del times["fft"]["dw"]
  assert _select.step_estimates(ests, g, prof)["dw"]["fft"] == 1e-3
  assert _select.step_estimates(ests, g, prof, circ)["dw"]["fft (periodic)"] == 1e-3
  assert _select.step_estimates(ests, g, _profiles.Profile({}, 1, "k", "user", True)) is ests


def test_one_method_for_all_passes_is_the_method_itself():
  """A plan of one method runs that method's own `conv` (no custom_jvp), so
  its programs are those of `method=<name>`."""
  x, w = jnp.ones((1, 2, 12)), jnp.ones((2, 2, 3))
  f = lambda m: lambda x, w: jaxconv.conv(x, w, method=m)  # noqa: E731
  g = geometry_of(x.shape, w.shape)
  single = _select.select(g).single
  if single is not None and single in METHODS:
    assert _hlo(f("auto"), x, w) == _hlo(f(single), x, w)
  assert "custom_jvp" not in str(jax.make_jaxpr(f("im2col"))(x, w))


def test_per_pass_cache_returns_one_function_per_plan():
  assert _perpass.per_pass("direct", "fft", "im2col") is _perpass.per_pass(
      "direct", "fft", "im2col")
  assert _perpass.per_pass("direct", "fft", "im2col") is not _perpass.per_pass(
      "direct", "fft", "im2col", padded=False)


def test_depthwise_forward_and_weight_gradient_use_different_methods():
  """The shipped CPU profile (pinned by tests/conftest.py) runs a ConvNeXt
  depthwise 7x7 forward by direct summation and its weight gradient by FFT,
  as measured (`bench/results/calibration_samples.json`, 'zoo-convnext-dw7x7':
  direct 12 ms vs fft 80 ms forward, fft 25 ms vs direct 512 ms weight gradient)."""
  x_shape, w_shape, kw = (8, 96, 56, 56), (96, 1, 7, 7), dict(padding=3, groups=96)
  plan = jaxconv.select_method(x_shape, w_shape, **kw, backend="cpu")
  assert (plan.fwd, plan.dw) == ("direct", "fft"), plan.reason
  x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
  w = jax.ShapeDtypeStruct(w_shape, jnp.float32)
  conv = lambda x, w: jaxconv.conv(x, w, **kw)  # noqa: E731
  assert "fft" not in _hlo(conv, x, w)                                   # forward: direct
  assert "fft" in _hlo(jax.grad(lambda x, w: conv(x, w).sum(), 1), x, w)  # dW: the FFT


# Every third row of the shared table (each kind of geometry appears): with
# the shipped profile `auto` runs a plan of several methods on these small
# shapes, which must match lax in values and every derivative like any method.
AUTO_ROWS = TABLE[::3]


@pytest.mark.parametrize("case", AUTO_ROWS, ids=[c.id for c in AUTO_ROWS])
def test_auto_plans_on_the_shared_table(case):
  assert check_row(case, "auto")


def test_the_sampled_table_rows_exercise_mixed_plans(monkeypatch):
  plans = []
  real = _select.select

  def spy(g, backend=None, budget=None, **kw):
    plans.append(real(g, backend, budget, **kw))
    return plans[-1]
  monkeypatch.setattr(_select, "select", spy)
  for case in AUTO_ROWS:
    case.eval_shape("auto")
  mixed = [p for p in plans if p.single is None]
  assert len(mixed) >= len(AUTO_ROWS) // 2, [p.methods for p in plans]
