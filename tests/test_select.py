"""`method="auto"`: the cost model, `select` and `select_method`."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv
from jaxconv import _select
from jaxconv._geometry import make_geometry
from jaxconv._methods import METHODS, hook
from jaxconv._methods.common import UNROLLED_TAP_CAPS, working_set_bytes
from jaxconv._padding import method_geometry

from configs import CASE_IDS, CASES


def _geometry_of(case, monkeypatch):
  """The geometry `jaxconv.conv(..., method='auto')` hands to `select`."""
  seen = []
  real = _select.select

  def spy(g, backend=None, budget=None):
    seen.append(g)
    return real(g, backend, budget)
  monkeypatch.setattr(_select, "select", spy)
  case.eval_shape("auto")
  assert len(seen) == 1
  return seen[0]


def _g(x_shape, w_shape, dtype="float32", **kwargs):
  x = jax.ShapeDtypeStruct(x_shape, dtype)
  w = jax.ShapeDtypeStruct(w_shape, dtype)
  return make_geometry("test", x, w, **kwargs)


@pytest.fixture(autouse=True)
def _fresh_model():
  _select.load_model.cache_clear()
  _select._select.cache_clear()
  yield
  _select.load_model.cache_clear()
  _select._select.cache_clear()


# --- every geometry of the shared table -------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_auto_picks_a_supported_method_with_estimates(case, monkeypatch):
  g = _geometry_of(case, monkeypatch)
  method, reason = _select.select(g)
  if method.endswith(_select.PERIODIC):   # a periodic hook, for circular padding
    name = method[:-len(_select.PERIODIC)]
    assert g.padding_mode == "circular" and hook(name, "periodic") is not None
    assert hook(name, "periodic").periodic_supports(g, "auto") is None
  else:
    assert method in METHODS
    assert METHODS[method].supports(method_geometry(g), "auto") is None
  assert reason.startswith(f"{method}: est. fwd+bwd ")
  assert " ms" in reason


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16", "complex64", "int32"])
def test_every_dtype_gets_a_supported_method(dtype):
  g = _g((2, 4, 32, 32), (4, 1, 7, 7), dtype, padding=3, groups=4)
  method, _ = _select.select(g)
  assert METHODS[method].supports(g, "auto") is None
  if dtype == "int32":  # the FFT is inexact: never for integers
    assert method != "fft"
    assert "fft" not in _select.estimate(g)


def test_auto_result_matches_lax():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((2, 8, 20, 20)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((8, 1, 5, 5)), jnp.float32)
  y = jaxconv.conv(x, w, padding=2, groups=8)
  ref = jaxconv.conv(x, w, padding=2, groups=8, method="lax")
  np.testing.assert_allclose(np.asarray(y), np.asarray(ref), rtol=1e-4, atol=1e-4)


# --- the rules (this CPU's calibrated profile) --------------------------------------

@pytest.mark.parametrize("x_shape,w_shape,kwargs,expected", [
    # RepLKNet 31x31 depthwise: an FFT, not 961 unrolled taps or XLA's grouped conv.
    ((4, 64, 64, 64), (64, 1, 31, 31), dict(padding=15, groups=64), {"fft"}),
    # Hyena: a depthwise causal filter as long as the sequence.
    ((1, 64, 4096), (64, 1, 4096), dict(padding=((4095, 0),), groups=64), {"fft"}),
    # Dense 15x15: the FFT crossover.
    ((4, 16, 128, 128), (16, 16, 15, 15), dict(padding=7), {"fft"}),
    # 1x1: a GEMM over channels.
    ((8, 256, 56, 56), (64, 256, 1, 1), {}, {"im2col", "direct"}),
    # MobileNetV2 depthwise 3x3: never XLA CPU's grouped convolution.
    ((8, 144, 56, 56), (144, 1, 3, 3), dict(padding=1, groups=144),
     {"direct", "im2col", "fft", "toeplitz"}),
])
def test_cpu_rules(x_shape, w_shape, kwargs, expected):
  method, reason = _select.select(_g(x_shape, w_shape, **kwargs), "cpu")
  assert method in expected, reason
  assert "cpu model" in reason


def test_unrolled_methods_capped_by_taps():
  g = _g((1, 4, 40, 40), (4, 4, 17, 17), padding=8)       # 289 taps
  est = _select.estimate(g, "cpu")
  assert "direct" not in est and "im2col" not in est and "lax" in est
  _, reason = _select.select(g, "cpu")
  cap = UNROLLED_TAP_CAPS["auto"]
  assert f"declined: direct (it unrolls one slice per kernel tap and this kernel has {17 * 17} > {cap} taps for auto)" in reason
  small = _select.estimate(_g((1, 4, 40, 40), (4, 4, 3, 3), padding=1), "cpu")
  assert {"direct", "im2col"} <= set(small)


def test_lax_kept_unless_clearly_faster(monkeypatch):
  g = _g((2, 8, 16, 16), (8, 8, 3, 3), padding=1)
  feats = _select.features(g)
  lax_ns = 1e6 / feats["lax"]["call"]
  # 'direct' estimated a little faster than lax: not enough to leave lax.
  coefs = {"lax": {"call": lax_ns}, "direct": {"call": 0.95 * lax_ns}}
  monkeypatch.setattr(_select, "profile", lambda backend: (coefs, True))
  method, reason = _select.select(g, "cpu")
  assert method == "lax"
  assert f"direct (0.95 ms) is not {1 / _select.LAX_MARGIN:.2g}x faster" in reason
  coefs["direct"]["call"] = 0.5 * lax_ns
  _select._select.cache_clear()
  method, reason = _select.select(g, "cpu")
  assert method == "direct"
  assert "2x faster than lax" in reason and "others: lax 1 ms" in reason


def test_uncalibrated_backend_uses_generic_profile():
  g = _g((8, 64, 56, 56), (64, 64, 3, 3), padding=1)
  method, reason = _select.select(g, "tpu")
  assert method == "lax"
  assert "uncalibrated generic model (tpu)" in reason
  # The generic profile still leaves lax for an FFT-sized kernel.
  big = _g((1, 64, 4096), (64, 1, 4096), padding=((4095, 0),), groups=64)
  assert _select.select(big, "gpu")[0] == "fft"


def test_profile_without_methods_falls_back_to_lax(monkeypatch):
  monkeypatch.setattr(_select, "profile", lambda backend: ({}, True))
  method, reason = _select.select(_g((1, 2, 8), (2, 2, 3)), "cpu")
  assert method == "lax" and "no method has estimates" in reason


def test_unreadable_model_warns_and_uses_generic(monkeypatch):
  monkeypatch.setattr(_select, "DATA_FILE", "_data/does-not-exist.json")
  with pytest.warns(UserWarning, match=r"cannot read the cost model .*does-not-exist"):
    model = _select.load_model()
  assert model == {"backends": {}}
  assert _select.profile("cpu") == (_select.GENERIC_PROFILE, False)


def test_model_file_is_calibrated_for_cpu():
  model = _select.load_model()
  cpu = model["backends"]["cpu"]
  assert set(cpu["coefficients"]) <= set(METHODS)
  assert cpu["samples"] and all(s["seconds"] > 0 for s in cpu["samples"])
  known = _select.features(_g((1, 2, 8), (2, 2, 3)))
  for method, coefs in cpu["coefficients"].items():
    assert set(coefs) <= set(known[method]), method
    assert all(c >= 0 for c in coefs.values())
  json.dumps(model)  # plain data


# --- features ------------------------------------------------------------------------

def test_features_count_the_definition():
  g = _g((2, 6, 10, 12), (4, 3, 3, 5), groups=2, stride=(2, 1), padding=1)
  f = _select.features(g)
  macs = g.flops // 2
  assert f["lax"]["macs_grouped"] == macs and f["lax"]["macs_dense"] == 0
  assert f["direct"]["macs_gemm"] == macs and f["direct"]["macs_dw"] == 0
  assert f["im2col"]["patch"] == 2 * 6 * 15 * math.prod(g.out_spatial)
  assert f["fft"]["transform"] > 0 and f["fft"]["contract"] > 0
  assert f["fft"]["contract_dw"] == 0
  one = _select.features(_g((2, 8, 5, 5), (4, 8, 1, 1)))
  assert one["im2col"]["patch"] == 0            # a 1x1 kernel is its own patch matrix
  dw = _select.features(_g((1, 4, 64), (4, 1, 9), groups=4))
  assert dw["fft"]["contract"] == 0 and dw["fft"]["contract_dw"] > 0


def test_big_features_switch_on_above_the_cache():
  g = _g((8, 64, 56, 56), (64, 64, 3, 3), padding=1)
  ws = working_set_bytes(g)
  assert ws == 4 * (8 * 64 * 58 * 58 + 8 * 64 * 56 * 56 + 64 * 64 * 9)
  small, large = _select.features(g, ws + 1), _select.features(g, ws - 1)
  assert small["lax"]["elems_big"] == 0 and small["direct"]["tap_elems_big"] == 0
  assert large["lax"]["elems_big"] == large["lax"]["elems"] > 0
  assert large["direct"]["tap_elems_big"] == large["direct"]["tap_elems"]
  # im2col's patch tensor (9x the input) and the FFT's complex spectra count
  # even when input and output fit.
  patch_bytes = 4 * small["im2col"]["patch"]
  assert patch_bytes > ws
  assert _select.features(g, patch_bytes - 1)["im2col"]["patch_big"] > 0
  assert _select.features(g, patch_bytes + 1)["im2col"]["patch_big"] == 0
  spectra_bytes = 8 * small["fft"]["spectra"]            # complex64
  assert _select.features(g, max(ws, spectra_bytes) - 1)["fft"]["spectra_big"] > 0
  assert _select.features(g, max(ws, spectra_bytes) + 1)["fft"]["spectra_big"] == 0


def test_fft_features_zero_output():
  # Negative padding that leaves only zeros to read: nothing to transform.
  g = _g((1, 1, 4), (1, 1, 3), padding=((-4, 4),))
  assert METHODS["fft"].plan(g).zero
  f = _select.features(g)["fft"]
  assert f["transform"] == f["contract"] == f["spectra"] == 0 and f["call"] == 1


def test_features_are_each_methods_own_cost():
  g = _g((1, 4, 64), (4, 4, 9), padding=4)
  f = _select.features(g, 1 << 20)
  for name, module in METHODS.items():
    assert f[name] == module.cost(g, "fwd+bwd", cache_bytes=1 << 20)
  with pytest.raises(ValueError, match=r"method 'fft' has no cost for pass_='bwd'"):
    METHODS["fft"].cost(g, "bwd", cache_bytes=1 << 20)


# --- select_method ---------------------------------------------------------------------

def test_select_method_matches_select():
  method, reason = _select.select_method((2, 8, 16, 16), (8, 8, 3, 3), padding=1)
  assert (method, reason) == _select.select(_g((2, 8, 16, 16), (8, 8, 3, 3), padding=1))


def test_select_method_applies_padding_modes():
  method, _ = _select.select_method((1, 4, 30), (4, 1, 5), "float64", padding=2,
                                    padding_mode="reflect", groups=4, backend="cpu")
  assert method in METHODS


def test_select_method_dtype_names_and_objects():
  for dtype in ("int8", np.int8, jnp.int8):
    method, _ = _select.select_method((1, 2, 64), (2, 2, 60), dtype)
    assert method != "fft"


@pytest.mark.parametrize("args,kwargs,err,match", [
    (((1, 2, 8), (2, 2, 3), "float33"), {}, TypeError,
     r"jaxconv.select_method: `dtype` must be a NumPy/JAX dtype or its name; got "
     r"dtype='float33'"),
    (((1, 2, 8), (2, 2, 3)), dict(backend=3), TypeError,
     r"`backend` must be a string or None; got backend=3"),
    (((1, 2, 8), (2, 2, 3)), dict(strides=2), TypeError,
     r"unknown keyword argument\(s\) strides; accepted: stride, padding"),
    (("abc", (2, 2, 3)), {}, TypeError, r"`x_shape` must be a sequence of ints; got x_shape='abc'"),
    (((1, 2, 8), (2, 2.0, 3)), {}, TypeError, r"`w_shape` must be a sequence of ints"),
    (((1, 2, 8), 5), {}, TypeError, r"`w_shape` must be a sequence of ints; got w_shape=5"),
    (((1, 4, 8), (2, 2, 3)), dict(groups=3), ValueError,
     r"jaxconv.select_method: `groups` must divide the input channels"),
    (((1, 2, 8), (2, 2, 3, 3)), {}, ValueError,
     r"jaxconv.select_method: `w` must have the same rank as `x`"),
    (((1, 2, 8), (2, 2, 3)), dict(stride=0), ValueError, r"`stride` must be positive"),
])
def test_select_method_errors(args, kwargs, err, match):
  with pytest.raises(err, match=match):
    _select.select_method(*args, **kwargs)
