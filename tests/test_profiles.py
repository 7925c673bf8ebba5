"""Cost-model profiles keyed by device: lookup order, the fallback to the
nearest shipped profile, and `python -m jaxconv.calibrate`."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxconv import _malloc, _profiles, _select, calibrate
from jaxconv._methods.common import PASSES

SHIPPED = os.environ["JAXCONV_DEVICE_KEY"]   # tests/conftest.py pins the shipped CPU profile


@pytest.fixture(autouse=True)
def fresh(tmp_path, monkeypatch):
  """A private user cache dir; profiles and picks re-read in every test."""
  monkeypatch.setenv(_profiles.CACHE_ENV, str(tmp_path / "cache"))
  _profiles.clear_caches()
  _select._select.cache_clear()
  yield
  monkeypatch.undo()
  _profiles.clear_caches()
  _select._select.cache_clear()


def test_the_test_suite_ranks_with_the_shipped_profile_as_exact():
  prof = _profiles.profile("cpu")
  assert prof.key == SHIPPED and prof.source == "shipped" and prof.exact
  assert set(prof.coefficients["lax"]) == set(PASSES)


def test_device_key_names_the_cpu(monkeypatch):
  monkeypatch.delenv(_profiles.KEY_ENV)
  _profiles.clear_caches()
  key = _profiles.device_key("cpu")
  plat, model, flags, cores = _profiles._parts(key)
  assert plat == "cpu" and model and cores == os.cpu_count()
  assert all(f in _profiles._ISA_FLAGS for f in flags.split("+") if f != "-")
  # An override of another platform does not apply to the CPU.
  monkeypatch.setenv(_profiles.KEY_ENV, "gpu:NVIDIA H100")
  _profiles.clear_caches()
  assert _profiles.device_key("cpu") == key


def test_another_cpu_falls_back_to_the_nearest_with_one_warning(monkeypatch):
  monkeypatch.setenv(_profiles.KEY_ENV, "cpu:Some Future CPU|avx2+fma|64 cores")
  _profiles.clear_caches()
  with pytest.warns(UserWarning, match=r"no cost-model profile for this device \(cpu:Some "
                                       r"Future CPU.*Run `python -m jaxconv.calibrate`") as rec:
    prof = _profiles.profile("cpu")
    _profiles.profile("cpu")
  assert len(rec) == 1
  assert prof.source == "nearest" and not prof.exact and prof.key == SHIPPED
  # ... and auto then needs a 1 / FALLBACK_MARGIN predicted gain to leave lax.
  plan = _select.select_method((2, 8, 16, 16), (8, 8, 3, 3), padding=1)
  assert "nearest shipped profile" in plan.reasons[0]


def test_unknown_platform_uses_the_generic_profile():
  with pytest.warns(UserWarning, match="no cost-model profile for tpu:unavailable"):
    prof = _profiles.profile("tpu")
  assert prof.source == "generic" and prof.coefficients is _profiles.GENERIC


def test_nearest_prefers_vendor_then_isa_then_cores():
  keys = ["cpu:Intel Xeon|avx2+fma|2 cores", "cpu:AMD EPYC 7B13|avx2+fma|2 cores",
          "cpu:AMD EPYC 9B14|avx2+fma+avx512f|8 cores", "gpu:NVIDIA A100"]
  assert _profiles.nearest("cpu:AMD EPYC 9654|avx2+fma+avx512f|4 cores", keys) == keys[2]
  assert _profiles.nearest("cpu:AMD EPYC 9654|avx2+fma|16 cores", keys) == keys[1]
  assert _profiles.nearest("cpu:Intel Core i9|avx2+fma+avx512f|8 cores", keys) == keys[0]
  assert _profiles.nearest("gpu:NVIDIA H100", keys) == keys[3]
  assert _profiles.nearest("tpu:v5e", keys) is None


def test_nearest_takes_the_fallback_unless_vendor_and_isa_match():
  amd, xeon = "cpu:AMD EPYC|avx2+fma+avx512f|2 cores", "cpu:Intel Xeon|avx2+fma+avx512f+amx_tile|2 cores"
  keys, fallback = [amd, xeon], [xeon]
  assert _profiles.nearest("cpu:AMD EPYC 9B14|avx2+fma+avx512f|8 cores", keys, fallback) == amd
  assert _profiles.nearest("cpu:AMD EPYC 7B13|avx2+fma|2 cores", keys, fallback) == xeon
  assert _profiles.nearest("cpu:AMD EPYC 7B13|avx2+fma|2 cores", keys) == amd   # no fallback
  assert _profiles.nearest("cpu:Intel Core|avx2+fma|8 cores", keys, fallback) == xeon


def test_the_shipped_file_marks_one_cpu_fallback_and_the_suite_pins_it():
  marked = [k for k, e in _profiles.shipped().items() if e.get("fallback")]
  assert [k for k in marked if k.startswith("cpu:")] == [SHIPPED]
  for key, entry in _profiles.shipped().items():
    assert key == entry["device"] and entry["command"].startswith(_profiles.CALIBRATE_COMMAND)


def _user_profile(coefs_scale=1.0):
  shipped = _profiles.shipped()[SHIPPED]
  coefs = {m: {p: {f: c * coefs_scale for f, c in fc.items()} for p, fc in per.items()}
           for m, per in shipped["coefficients"].items()}
  return {"coefficients": coefs, "cache_bytes": shipped.get("cache_bytes", 1 << 25)}


def test_a_user_profile_for_this_device_comes_first():
  calibrate.write_profile(_profiles.user_file(), SHIPPED, _user_profile(2.0))
  calibrate.write_profile(_profiles.user_file(), "cpu:other|-|1 cores", _user_profile())
  _profiles.clear_caches()
  prof = _profiles.profile("cpu")
  assert prof.source == "user" and prof.exact
  assert set(json.loads(_profiles.user_file().read_text())["profiles"]) == {
      SHIPPED, "cpu:other|-|1 cores"}
  plan = _select.select_method((2, 8, 16, 16), (8, 8, 3, 3), padding=1)
  assert "your calibrated profile" in plan.reasons[0]


@pytest.mark.parametrize("text", ["{not json", json.dumps({"version": 1, "backends": {}}),
                                  json.dumps([1, 2])])
def test_a_corrupt_user_file_warns_and_is_ignored(text):
  path = _profiles.user_file()
  path.parent.mkdir(parents=True)
  path.write_text(text)
  with pytest.warns(UserWarning, match=r"ignoring the calibrated profiles in .*re-run "
                                       r"`python -m jaxconv.calibrate`"):
    prof = _profiles.profile("cpu")
  assert prof.source == "shipped"


def test_the_user_file_follows_the_environment(tmp_path, monkeypatch):
  assert _profiles.user_file() == tmp_path / "cache" / "cost_model.json"
  monkeypatch.delenv(_profiles.CACHE_ENV)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert _profiles.user_file() == tmp_path / "xdg" / "jaxconv" / "cost_model.json"


# --- python -m jaxconv.calibrate -----------------------------------------------

def test_nnls_matches_scipy():
  from scipy.optimize import nnls as scipy_nnls
  rng = np.random.default_rng(0)
  for _ in range(5):
    a, b = rng.standard_normal((30, 6)), rng.standard_normal(30)
    np.testing.assert_allclose(calibrate.nnls(a, b), scipy_nnls(a, b)[0], atol=1e-8)


def _synthetic_samples(shapes, coefs, cache):
  """Exact times from known coefficients: what a perfect machine would measure."""
  out = []
  for s in shapes:
    g = s.geometry()
    for m, per in coefs.items():
      for p in PASSES:
        f = calibrate.METHODS[m].cost(g, p, cache_bytes=cache)
        t = 1e-9 * sum(c * f.get(k, 0.0) for k, c in per[p].items())
        out.append({"case": s.name, "method": m, "pass": p, "seconds": t})
  return out


def test_fit_recovers_the_times_of_a_linear_machine():
  shapes = {s.name: s for s in calibrate.QUICK}
  cache = 1 << 25
  coefs = {"lax": {p: {"call": 5e4, "elems": 2.0 + i, "tap_outs_dense": 1.0}
                   for i, p in enumerate(PASSES)},
           "direct": {p: {"call": 2e4, "macs_gemm": 0.02, "macs_dw": 0.5 + i, "tap_elems": 0.1}
                      for i, p in enumerate(PASSES)}}
  samples = _synthetic_samples(shapes.values(), coefs, cache)
  fitted, quality = calibrate.fit(samples, shapes, cache)
  for m in coefs:
    for p in PASSES:
      assert quality[m][p]["median_abs_log_error"] < 1e-3, (m, p, quality[m][p])
      assert all(c > 0 for c in fitted[m][p].values())
  q = calibrate.rank_quality(samples, shapes, fitted, cache, margin=1.0)   # no lax bias
  assert q["within_1.1x"] == q["passes"] and q["geomean_slowdown"] == pytest.approx(1.0, abs=1e-3)


def test_decision_fit_keeps_the_call_constant_near_the_fastest_call():
  """`CALL_BOUNDS`: a per-call constant far above the fastest measured call
  (here a start 100x too high) is brought within the bounds."""
  shapes = {s.name: s for s in calibrate.QUICK}
  cache = 1 << 25
  coefs = {m: {p: {"call": 3e4, "elems": 1.0} if m == "lax" else
               {"call": 2e4, "macs_gemm": 0.02, "macs_dw": 0.5, "tap_elems": 0.1}
               for p in PASSES} for m in ("lax", "direct")}
  samples = _synthetic_samples(shapes.values(), coefs, cache)
  start = {m: {p: dict(c, call=c["call"] * 100) for p, c in per.items()}
           for m, per in coefs.items()}
  fitted = calibrate.fit_decisions(samples, shapes, cache, start, sweeps=3)
  lo, hi = calibrate.CALL_BOUNDS
  for m in coefs:
    for p in PASSES:
      fastest = min(s["seconds"] for s in samples if s["method"] == m and s["pass"] == p) * 1e9
      assert lo * fastest * 0.999 <= fitted[m][p]["call"] <= hi * fastest * 1.001, (m, p)


def test_training_quality_scores_the_training_rule():
  """`training_quality` on made-up steps: picking the mix where one method's
  fused step is twice as fast is a 2x slow-down."""
  shapes = {s.name: s for s in calibrate.QUICK if s.name == "dense-k3"}
  cache = 1 << 25
  coefs = {"lax": {p: {"call": 1e5} for p in PASSES},
           "fft": {"fwd": {"call": 2e5}, "dx": {"call": 1e4}, "dw": {"call": 1e4}}}
  samples = _synthetic_samples(shapes.values(), coefs, cache)
  step = lambda m, t: {"case": "dense-k3", "method": m, "pass": "train", "seconds": t,  # noqa: E731
                       "passes_s": 1.0}
  samples += [step("lax / fft / fft", 2e-4), step("fft", 1e-4), step("lax", 3e-4)]
  keep_mix = {"share": {"lax": 1.0, "fft": 1.0}, "mix_share": 0.1}
  q = calibrate.training_quality(samples, shapes, coefs, cache, keep_mix, margin=1.0)
  assert q == {"cases": 1, "within_1.1x": 0, "geomean_slowdown": 2.0}
  one_method = {"share": {"lax": 1.0, "fft": 0.2}, "mix_share": 1.0}
  q = calibrate.training_quality(samples, shapes, coefs, cache, one_method, margin=1.0)
  assert q == {"cases": 1, "within_1.1x": 1, "geomean_slowdown": 1.0}


def test_fit_training_splits_the_mixes_by_their_temporaries():
  """Mixes whose temporaries exceed a multiple of the mmap ceiling get a share
  of their own where two medians describe them better than one (the least
  candidate that does); shares that do not depend on size keep one."""
  from jaxconv._malloc import CEILING_BYTES
  mib = 1 << 20
  small = [(10 * mib, r) for r in (0.7, 0.8, 0.9)]
  big = [(100 * mib, r) for r in (1.1, 1.2, 1.3)]
  assert calibrate._split_mixes(small + big) == {
      "mix_share": 0.8, "mix_share_big": 1.2, "mix_big_bytes": CEILING_BYTES}
  assert calibrate._split_mixes(small + [(100 * mib, r) for r in (0.7, 0.8, 0.9)]) == {}
  assert calibrate._split_mixes(small + big[:2]) == {}           # too few big mixes
  # From samples: a mix on every QUICK shape, at a share that grows with size
  # (direct's and fft's temporaries; over twice the ceiling on three shapes).
  shapes = {s.name: s for s in calibrate.QUICK}
  mixes = [{"case": name, "method": "direct / direct / fft", "pass": calibrate.TRAIN,
            "passes_s": 1.0} for name in shapes]
  for s in mixes:
    s["seconds"] = 1.2 if calibrate._mix_bytes(s, shapes) > 2 * CEILING_BYTES else 0.8
  fitted = calibrate.fit_training(mixes, shapes)
  assert fitted["mix_share"] == 0.8 and fitted["mix_share_big"] == 1.2
  assert fitted["mix_big_bytes"] == 2 * CEILING_BYTES
  assert "mix_share_big" not in calibrate.fit_training(mixes)     # no shapes: one median


def test_main_fits_saved_samples_and_writes_the_user_profile(tmp_path, capsys):
  shapes = calibrate.QUICK
  cache = calibrate.llc_bytes()
  coefs = {m: _profiles.shipped()[SHIPPED]["coefficients"][m] for m in ("lax", "direct", "fft")}
  saved = tmp_path / "samples.json"
  saved.write_text(json.dumps(_synthetic_samples(shapes, coefs, cache)))
  assert calibrate.main(["--from-samples", str(saved)]) == 0
  out = capsys.readouterr().out
  assert "held-out cases" in out and "before (shipped profile" in out
  assert f"wrote the profile for {SHIPPED}" in out
  entry = json.loads(_profiles.user_file().read_text())["profiles"][SHIPPED]
  assert set(entry["coefficients"]) == {"lax", "direct", "fft"}
  # The NNLS fit is kept for the training rule's sums (`_select.step_estimates`).
  assert set(entry["time_coefficients"]) == {"lax", "direct", "fft"}
  assert entry["held_out"]["after"]["passes"] > 0
  assert entry["training"] == {"share": {}, "steps": 0}     # no training steps saved
  assert _profiles.profile("cpu").source == "user"
  assert _profiles.profile("cpu").time_coefficients == entry["time_coefficients"]


@pytest.mark.parametrize("exact", [True, False])
def test_main_judges_the_profile_in_use_by_its_margin_and_says_when_it_ranks_better(
    tmp_path, capsys, monkeypatch, exact):
  """`before` is scored with the margin `auto` applies to the profile in use
  (the fallback margin for another device's profile), and a fit that ranks
  the held-out cases no better than it is written with a note saying so."""
  saved = tmp_path / "samples.json"
  coefs = {m: _profiles.shipped()[SHIPPED]["coefficients"][m] for m in ("lax", "direct")}
  saved.write_text(json.dumps(_synthetic_samples(calibrate.QUICK, coefs, calibrate.llc_bytes())))
  if not exact:   # this "device" has no profile: the shipped one is its nearest
    monkeypatch.setenv(_profiles.KEY_ENV, SHIPPED.replace("cores", "cores (other)"))
    _profiles.clear_caches()
  margins = []

  def rank(samples, shapes, coefs, cache_bytes, margin=_select.LAX_MARGIN):
    margins.append(margin)
    return {"passes": 9, "within_1.1x": 9 if len(margins) == 1 else 6,
            "geomean_slowdown": 1.0}
  monkeypatch.setattr(calibrate, "rank_quality", rank)
  assert calibrate.main(["--from-samples", str(saved)]) == 0
  assert margins[:2] == [_select.LAX_MARGIN if exact else _select.FALLBACK_MARGIN,
                         _select.LAX_MARGIN]
  out = capsys.readouterr().out
  assert "note: this calibration ranks the held-out cases no better" in out
  assert calibrate._no_better({"within_1.1x": 6}, {"within_1.1x": 9}, {}, {}) is False


def test_measure_times_every_pass_of_every_method():
  shape = next(s for s in calibrate.QUICK if s.name == "tiny-3x3")
  samples = calibrate.measure_shape(shape, ["lax", "direct"], budget_s=0.0)
  assert {(s["method"], s["pass"]) for s in samples} == {
      (m, p) for m in ("lax", "direct") for p in PASSES}
  assert all(s["seconds"] > 0 and s["repeats"] >= calibrate.ROUNDS[0] for s in samples)


def test_measure_training_times_the_fused_steps_of_contenders_and_the_mix():
  """The training step of each method within `_autotune.TRAIN_CONTENDERS` of the least
  pass sum, and of the per-pass mix of the fastest passes (made up here:
  lax forward, direct gradients; fft far behind)."""
  shape = next(s for s in calibrate.QUICK if s.name == "tiny-3x3")
  fake = {"lax": (1.0, 2.0, 2.0), "direct": (2.0, 1.0, 1.0), "fft": (9.0, 9.0, 9.0)}
  passes = [{"case": shape.name, "method": m, "pass": p, "seconds": t * 1e-3}
            for m, ts in fake.items() for p, t in zip(PASSES, ts)]
  steps = calibrate.measure_training(shape, passes, budget_s=0.0)
  by = {s["method"]: s for s in steps}
  assert set(by) == {"lax", "direct", "lax / direct / direct"}
  assert all(s["pass"] == calibrate.TRAIN and s["seconds"] > 0 for s in steps)
  assert by["lax"]["passes_s"] == pytest.approx(5e-3)
  assert by["lax / direct / direct"]["passes_s"] == pytest.approx(3e-3)
  fitted = calibrate.fit_training(steps * calibrate.MIN_TRAINING_SAMPLES)
  assert set(fitted["share"]) == {"lax", "direct"} and fitted["mix_share"] > 0


def test_list_and_bad_cases(capsys):
  assert calibrate.main(["--list"]) == 0
  assert "resnet-3x3" in capsys.readouterr().out
  with pytest.raises(SystemExit):
    calibrate.main(["--cases", "nope-*"])
  assert "matches no calibration case" in capsys.readouterr().err


_MMAP_PROBE = """
import ctypes, sys
from jaxconv import _malloc
libc = ctypes.CDLL(None)
class Info(ctypes.Structure):
  _fields_ = [(n, ctypes.c_size_t) for n in
              "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc.mallinfo2.restype = Info
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
settled = _malloc.settle() if sys.argv[1] == "settle" else None
before = libc.mallinfo2().hblks
chunk = libc.malloc(24 << 20)
print(settled, libc.mallinfo2().hblks - before)
libc.free(chunk)
"""


@pytest.mark.skipif(not _malloc.settle(), reason="settle() acts only on glibc")
def test_settle_serves_large_buffers_from_the_heap():
  """A young process mmaps (and page-faults) a 24 MiB buffer on every call; after
  `settle()` glibc serves it from the heap, as in a long-running process."""
  if not hasattr(ctypes.CDLL(None), "mallinfo2"):
    pytest.skip("glibc < 2.33 has no mallinfo2 to count mmapped chunks")

  def mmapped(arg):
    return subprocess.run([sys.executable, "-c", _MMAP_PROBE, arg], capture_output=True,
                          text=True, check=True).stdout.split()

  assert mmapped("young") == ["None", "1"]
  assert mmapped("settle") == ["True", "0"]
