"""`method="auto"`: the cost model, `select` and `select_method`."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv
from jaxconv import _profiles, _select
from jaxconv._geometry import make_geometry
from jaxconv._methods import METHODS, hook
from jaxconv._methods.common import UNROLLED_TAP_CAPS, sizes, working_set_bytes
from jaxconv._padding import method_geometry

from configs import CASE_IDS, CASES


def _geometry_of(case, monkeypatch):
  """The geometry `jaxconv.conv(..., method='auto')` hands to `select`."""
  seen = []
  real = _select.select

  def spy(g, backend=None, budget=None, **kw):
    seen.append(g)
    return real(g, backend, budget, **kw)
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
  """Every test ranks with the shipped CPU profile as if measured on this
  machine (tests/conftest.py pins it by $JAXCONV_DEVICE_KEY)."""
  _select._select.cache_clear()
  _profiles.profile.cache_clear()   # so each fallback warns in its own test
  yield
  _select._select.cache_clear()


# --- every geometry of the shared table -------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_auto_picks_a_supported_method_with_estimates(case, monkeypatch):
  g = _geometry_of(case, monkeypatch)
  plan = _select.select(g)
  for pass_, method, reason in zip(("fwd", "dx", "dw"), plan.methods, plan.reasons):
    if method.endswith(_select.PERIODIC):   # a periodic hook, for circular padding
      name = method[:-len(_select.PERIODIC)]
      assert g.padding_mode == "circular" and hook(name, "periodic") is not None
      assert hook(name, "periodic").periodic_supports(g, "auto") is None
    else:
      assert method in METHODS
      assert METHODS[method].supports(method_geometry(g), "auto") is None
    if np.dtype(g.dtype).kind in "fc":
      assert reason.startswith(f"{method}: est. {pass_} "), reason
    assert " ms" in reason


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16", "complex64", "int32"])
def test_every_dtype_gets_a_supported_method(dtype):
  g = _g((2, 4, 32, 32), (4, 1, 7, 7), dtype, padding=3, groups=4)
  plan = _select.select(g)
  assert all(METHODS[m].supports(g, "auto") is None for m in plan.methods)
  if dtype == "int32":  # the FFT is inexact: never for integers; no gradients: one method
    assert plan.single is not None and plan.single != "fft"
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
  plan = _select.select(_g(x_shape, w_shape, **kwargs), "cpu")
  assert plan.fwd in expected, plan.reason
  assert "shipped profile 'cpu:" in plan.reasons[0]


def test_unrolled_methods_capped_by_taps():
  g = _g((1, 4, 40, 40), (4, 4, 17, 17), padding=8)       # 289 taps
  est = _select.estimate(g, "cpu")
  assert "direct" not in est and "im2col" not in est and "lax" in est
  reason = _select.select(g, "cpu").reasons[0]
  cap = UNROLLED_TAP_CAPS["auto"]
  assert f"declined: direct (it unrolls one slice per kernel tap and this kernel has {17 * 17} > {cap} taps for auto)" in reason
  small = _select.estimate(_g((1, 4, 40, 40), (4, 4, 3, 3), padding=1), "cpu")
  assert {"direct", "im2col"} <= set(small)


def _profile(coefs, exact=True):
  coefs = {m: {p: dict(c) for p in ("fwd", "dx", "dw")} for m, c in coefs.items()}
  return _profiles.Profile(coefs, 1 << 25, "test", "user" if exact else "nearest", exact)


def test_lax_kept_unless_clearly_faster(monkeypatch):
  g = _g((2, 8, 16, 16), (8, 8, 3, 3), padding=1)
  feats = _select.features(g)
  lax_ns = 1e6 / feats["lax"]["call"]
  # 'direct' estimated a little faster than lax: not enough to leave lax.
  coefs = {"lax": {"call": lax_ns}, "direct": {"call": 0.95 * lax_ns}}
  monkeypatch.setattr(_profiles, "profile", lambda backend=None: _profile(coefs))
  plan = _select.select(g, "cpu")
  assert plan.methods == ("lax",) * 3
  assert f"direct (0.95 ms) is not {1 / _select.LAX_MARGIN:.2g}x faster" in plan.reasons[0]
  coefs["direct"]["call"] = 0.5 * lax_ns
  _select._select.cache_clear()
  plan = _select.select(g, "cpu")
  assert plan.single == "direct"
  assert "2x faster than lax" in plan.reasons[1] and "others: lax 1 ms" in plan.reasons[2]
  # Another device's profile: 2x predicted is not enough to leave lax.
  monkeypatch.setattr(_profiles, "profile", lambda backend=None: _profile(coefs, exact=False))
  _select._select.cache_clear()
  plan = _select.select(g, "cpu")
  assert plan.single == "lax"
  assert f"is not {1 / _select.FALLBACK_MARGIN:.2g}x faster" in plan.reasons[0]


def test_each_pass_takes_its_own_cheapest_method(monkeypatch):
  g = _g((2, 8, 16, 16), (8, 1, 3, 3), padding=1, groups=8)
  feats = _select.features(g)
  ns = {m: 1e6 / feats[m]["call"] for m in ("lax", "direct", "im2col", "fft")}
  coefs = {m: {p: {"call": 10 * ns[m]} for p in ("fwd", "dx", "dw")} for m in ns}
  coefs["direct"]["fwd"]["call"] = ns["direct"]      # 1 ms, the others 10 ms
  coefs["fft"]["dx"]["call"] = ns["fft"]
  coefs["im2col"]["dw"]["call"] = ns["im2col"]
  monkeypatch.setattr(_profiles, "profile",
                      lambda backend=None: _profiles.Profile(coefs, 1 << 25, "t", "user", True))
  plan = _select.select(g, "cpu")
  assert plan.methods == ("direct", "fft", "im2col") and plan.single is None
  assert plan.reasons[1].startswith("fft: est. dx 1 ms, 10x faster than lax")
  assert "fwd direct, dx fft, dw im2col" in str(plan)
  # Integers have no gradients: the forward's pick for every pass.
  gi = _g((2, 8, 16, 16), (8, 1, 3, 3), "int32", padding=1, groups=8)
  assert _select.select(gi, "cpu").methods == ("direct",) * 3


def test_finite_locality_keeps_only_window_methods(monkeypatch):
  g = _g((1, 64, 4096), (64, 1, 4096), padding=((4095, 0),), groups=64)
  assert "fft" in _select.select(g, "cpu").methods
  plan = _select.select(g, "cpu", finite_locality=True)
  assert not {"fft", "toeplitz"} & set(plan.methods)
  assert "fft (finite_locality=True: block spread)" in plan.reasons[0]
  assert _select.select_method((1, 64, 4096), (64, 1, 4096), padding=((4095, 0),), groups=64,
                               finite_locality=True) == plan
  with pytest.raises(TypeError, match=r"`finite_locality` must be True or False; got "
                                      r"finite_locality='yes'"):
    _select.select_method((1, 2, 8), (2, 2, 3), finite_locality="yes")


def test_uncalibrated_backend_uses_generic_profile():
  g = _g((8, 64, 56, 56), (64, 64, 3, 3), padding=1)
  with pytest.warns(UserWarning, match="no cost-model profile for tpu:unavailable"):
    plan = _select.select(g, "tpu")
  assert plan.methods == ("lax",) * 3
  assert "tpu, uncalibrated generic model" in plan.reasons[0]
  # The generic profile still leaves lax for an FFT-sized kernel.
  big = _g((1, 64, 4096), (64, 1, 4096), padding=((4095, 0),), groups=64)
  with pytest.warns(UserWarning, match="no cost-model profile for gpu:unavailable"):
    assert _select.select(big, "gpu").fwd == "fft"


def test_profile_without_methods_falls_back_to_lax(monkeypatch):
  monkeypatch.setattr(_profiles, "profile", lambda backend=None: _profile({}))
  plan = _select.select(_g((1, 2, 8), (2, 2, 3)), "cpu")
  assert plan.single == "lax" and "no method has estimates" in plan.reasons[0]


def test_shipped_profiles_are_plain_per_pass_coefficients():
  profiles = _profiles.shipped()
  assert profiles, "the package ships at least one measured profile"
  known = _select.features(_g((1, 2, 8), (2, 2, 3)))
  for key, entry in profiles.items():
    assert key.split(":")[0] in ("cpu", "gpu", "tpu")
    assert set(entry["coefficients"]) <= set(METHODS)
    for method, per_pass in entry["coefficients"].items():
      assert set(per_pass) == {"fwd", "dx", "dw"}, (key, method)
      for coefs in per_pass.values():
        assert set(coefs) <= set(known[method]), (key, method)
        assert all(c > 0 for c in coefs.values())
  json.dumps(profiles)  # plain data


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


def test_im2col_patch_over_the_mmap_ceiling_is_its_own_feature():
  """A patch tensor over glibc's mmap ceiling faults its pages in on every
  call (`jaxconv._malloc`), whatever the cache: batch 8 of a ResNet 3x3 is
  over (57.8 MB), batch 4 under (28.9 MB)."""
  from jaxconv._malloc import CEILING_BYTES
  for batch, over in ((8, True), (4, False)):
    f = _select.features(_g((batch, 64, 56, 56), (64, 64, 3, 3), padding=1))["im2col"]
    assert (4 * f["patch"] > CEILING_BYTES) is over
    assert f["patch_mmap"] == (f["patch"] if over else 0)


def test_direct_merged_windows_over_the_mmap_ceiling_and_thin_contractions():
  """direct's per-tap GEMMs run as one over every tap's window (`temp_bytes`):
  over glibc's mmap ceiling that buffer faults in on every call, as im2col's
  patches (batch 8 of a ResNet 3x3: 57.8 MB; batch 4: 28.9 MB). A depthwise
  kernel has no such buffer, and a contraction over at most
  `THIN_CONTRACTION` input channels per group has its own per-MAC rate."""
  from jaxconv._malloc import CEILING_BYTES
  from jaxconv._methods import direct
  for batch, over in ((8, True), (4, False)):
    f = _select.features(_g((batch, 64, 56, 56), (64, 64, 3, 3), padding=1))["direct"]
    merged = 9 * batch * 64 * 56 * 56
    assert (4 * merged > CEILING_BYTES) is over
    assert f["window_mmap"] == (merged if over else 0)
    assert f["macs_thin"] == 0                                    # 64 channels per group
  dw = _select.features(_g((8, 144, 112, 112), (144, 1, 3, 3), padding=1, groups=144))
  assert dw["direct"]["window_mmap"] == dw["direct"]["macs_thin"] == 0
  for cin, thin in ((3, True), (direct.THIN_CONTRACTION, True),
                    (direct.THIN_CONTRACTION + 1, False), (1, False)):
    f = _select.features(_g((1, cin, 16, 16), (8, cin, 3, 3)))["direct"]
    assert f["macs_thin"] == (f["macs_gemm"] if thin else 0) and (cin == 1 or f["macs_gemm"] > 0)


def test_strided_and_memory_bound_features():
  """A strided conv's slices do not vectorise: direct's `macs_strided` (one
  input channel per group, forward and input gradient; the weight gradient's
  scan has its own features) and im2col's `patch_strided`; direct's
  `io_elems` counts what a depthwise pass streams whatever its tap count."""
  kw = dict(padding=1, groups=144)
  for stride in (1, 2):
    g = _g((8, 144, 56, 56), (144, 1, 3, 3), stride=stride, **kw)
    s = sizes(g)
    for p in ("fwd", "dx"):
      f = METHODS["direct"].cost(g, p, cache_bytes=1 << 25)
      assert f["io_elems"] == s["x"] + s["y"]
      assert f["macs_strided"] == (s["macs"] if stride > 1 else 0)
    dw = METHODS["direct"].cost(g, "dw", cache_bytes=1 << 25)
    assert dw["io_elems"] == dw["macs_strided"] == 0 and dw["scan_elems"] > 0
    f = METHODS["im2col"].cost(g, "fwd", cache_bytes=1 << 25)
    assert f["patch_strided"] == (f["patch"] if stride > 1 else 0) and f["patch"] > 0
  dense = METHODS["direct"].cost(_g((2, 8, 16, 16), (8, 8, 3, 3), stride=2), "fwd",
                                 cache_bytes=1 << 25)
  assert dense["io_elems"] == dense["macs_strided"] == 0


def test_lax_narrow_feature_grows_as_batch_times_out_channels_shrinks():
  """lax's `macs_dense_narrow`: macs x (NARROW / (N x C_out) - 1) below
  `NARROW`, 0 from it on and for grouped convolutions."""
  lax_cost = METHODS["lax"].cost
  narrow = METHODS["lax"].NARROW
  assert narrow == 64
  for n, cout, want in ((1, 16, 3.0), (2, 16, 1.0), (4, 16, 0.0), (2, 64, 0.0)):
    g = _g((n, 16, 32, 32), (cout, 16, 3, 3), padding=1)
    for p in ("fwd", "dx", "dw"):
      assert lax_cost(g, p, cache_bytes=1 << 25)["macs_dense_narrow"] == want * sizes(g)["macs"]
  grouped = _g((1, 16, 32, 32), (16, 1, 3, 3), padding=1, groups=16)
  assert lax_cost(grouped, "dw", cache_bytes=1 << 25)["macs_dense_narrow"] == 0


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
    assert f[name] == module.cost(g, "fwd", cache_bytes=1 << 20)
  with pytest.raises(ValueError, match=r"method 'fft' has no cost for pass_='bwd'"):
    METHODS["fft"].cost(g, "bwd", cache_bytes=1 << 20)


# --- select_method ---------------------------------------------------------------------

def test_select_method_matches_select():
  plan = _select.select_method((2, 8, 16, 16), (8, 8, 3, 3), padding=1)
  assert plan == _select.select(_g((2, 8, 16, 16), (8, 8, 3, 3), padding=1))


def test_select_method_applies_padding_modes():
  plan = _select.select_method((1, 4, 30), (4, 1, 5), "float64", padding=2,
                                padding_mode="reflect", groups=4, backend="cpu")
  assert set(plan.methods) <= set(METHODS)


def test_select_method_dtype_names_and_objects():
  for dtype in ("int8", np.int8, jnp.int8):
    plan = _select.select_method((1, 2, 64), (2, 2, 60), dtype)
    assert "fft" not in plan.methods


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
    ((np.zeros((1, 2, 8), np.float32), (2, 2, 3)), {}, TypeError,
     r"`x_shape` must be a sequence of ints \(pass the array's `\.shape`\); got x_shape=an "
     r"array of shape \(1, 2, 8\) and dtype float32\.$"),
    (((1, 2, 8), (2, 2, 3)), dict(stride=np.array([2.0])), TypeError,
     r"`stride` must be an int or a sequence of ints; got stride=an array of shape \(1,\)"),
    (((1, 4, 8), (2, 2, 3)), dict(groups=3), ValueError,
     r"jaxconv.select_method: `groups` must divide the input channels"),
    (((1, 2, 8), (2, 2, 3, 3)), {}, ValueError,
     r"jaxconv.select_method: `w` must have the same rank as `x`"),
    (((1, 2, 8), (2, 2, 3)), dict(stride=0), ValueError, r"`stride` must be positive"),
])
def test_select_method_errors(args, kwargs, err, match):
  with pytest.raises(err, match=match):
    _select.select_method(*args, **kwargs)
