"""`method="autotune"`: timing once per geometry, the memory + file cache."""

from __future__ import annotations

import itertools
import json
import math
import multiprocessing
import os
import re
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv
from jaxconv import _autotune, _select
from jaxconv._geometry import make_geometry
from jaxconv._methods import METHODS
from jaxconv._methods.common import PASSES

ENV = _autotune.ENV_VAR


@pytest.fixture(autouse=True)
def cache_file(tmp_path, monkeypatch):
  """Every test gets its own cache file and an empty in-memory cache."""
  path = tmp_path / "cache" / "autotune.json"
  monkeypatch.setenv(ENV, str(path))
  monkeypatch.setattr(_autotune, "_warned", set())
  _autotune._memory.clear()
  yield path
  _autotune._memory.clear()


@pytest.fixture
def timings(monkeypatch):
  """Count timing calls; fake the times (`fake[...]`) unless `real` is set."""
  calls = []
  state = {"real": False, "fake": {}}
  real = _autotune.time_candidates

  def counted(g, methods):
    calls.append((g, tuple(methods)))
    if state["real"]:
      return real(g, methods)
    passes = PASSES if np.dtype(g.dtype).kind in "fc" else PASSES[:1]
    fake = state["fake"]
    out = {p: {m: fake.get(p, fake).get(m, 1.0 + i) for i, m in enumerate(methods)}
           for p in passes}
    if _autotune.TRAIN in fake:
      out[_autotune.TRAIN] = fake[_autotune.TRAIN]
    return out
  monkeypatch.setattr(_autotune, "time_candidates", counted)
  state["calls"] = calls
  return state


def _data(shape, seed=0, dtype=np.float32):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape).astype(dtype))


def _geom(x, w, **kwargs):
  return make_geometry("test", x, w, **kwargs)


def test_real_timing_writes_and_reuses_the_file(cache_file, timings):
  timings["real"] = True
  x, w = _data((1, 4, 24)), _data((4, 1, 5), 1)
  y = jaxconv.conv(x, w, padding=2, groups=4, method="autotune")
  ref = jaxconv.conv(x, w, padding=2, groups=4, method="lax")
  np.testing.assert_allclose(np.asarray(y), np.asarray(ref), rtol=1e-4, atol=1e-5)
  assert len(timings["calls"]) == 1
  g, tried = timings["calls"][0]
  assert "lax" in tried and all(METHODS[m].supports(g) is None for m in tried)
  entries = json.loads(cache_file.read_text())["entries"]
  (key, entry), = entries.items()
  assert key == _autotune.cache_key(g)
  assert set(PASSES) <= set(entry["seconds"]) <= {*PASSES, "train"}
  steps = entry["seconds"].get("train", {})
  fastest_step = min(steps, key=steps.get) if steps else None
  for pass_, method in zip(PASSES, entry["plan"]):
    assert method in tried and set(entry["seconds"][pass_]) <= set(tried)
    # The fastest of its pass, or (gradients) the method whose own step was fastest.
    assert (entry["seconds"][pass_][method] == min(entry["seconds"][pass_].values())
            or (pass_ != "fwd" and method == fastest_step))
  # Second call: the in-memory cache, no timing.
  jaxconv.conv(x, w, padding=2, groups=4, method="autotune")
  # A new process (empty memory): the file, no timing.
  _autotune._memory.clear()
  jaxconv.conv(x, w, padding=2, groups=4, method="autotune")
  assert len(timings["calls"]) == 1
  assert _autotune._memory[key].methods == tuple(entry["plan"])


def test_integer_inputs_time_forward_only(timings):
  timings["real"] = True
  x = jnp.asarray(np.arange(24).reshape(1, 2, 12), jnp.int32)
  w = jnp.ones((3, 2, 3), jnp.int32)
  y = jaxconv.conv(x, w, method="autotune")
  np.testing.assert_array_equal(np.asarray(y), np.asarray(jaxconv.conv(x, w, method="lax")))
  _, tried = timings["calls"][0]
  assert "fft" not in tried


def test_picks_the_fastest(timings, monkeypatch):
  timings["fake"] = {"lax": 3.0, "direct": 2.0, "im2col": 0.5, "toeplitz": 4.0, "fft": 1.0}
  monkeypatch.setattr(_autotune, "candidates", lambda g, budget=None, finite_locality=False: list(timings["fake"]))
  x, w = _data((1, 2, 16)), _data((2, 2, 3), 1)
  assert _autotune.choose(_geom(x, w)).methods == ("im2col",) * 3


def test_picks_the_fastest_per_pass(timings, monkeypatch):
  timings["fake"] = {"fwd": {"lax": 3.0, "direct": 1.0, "fft": 2.0},
                     "dx": {"lax": 3.0, "direct": 2.0, "fft": 1.0},
                     "dw": {"lax": 1.0, "direct": 2.0, "fft": 3.0}}
  monkeypatch.setattr(_autotune, "candidates", lambda g, budget=None, finite_locality=False: ["lax", "direct", "fft"])
  x, w = _data((1, 2, 16)), _data((2, 2, 3), 1)
  assert _autotune.choose(_geom(x, w)).methods == ("direct", "fft", "lax")
  # ... and the call runs that plan, with lax's values and gradients.
  f = lambda m: lambda x, w: jaxconv.conv(x, w, method=m).sum() ** 2  # noqa: E731
  chex.assert_trees_all_close(jax.grad(f("autotune"), (0, 1))(x, w),
                              jax.grad(f("lax"), (0, 1))(x, w), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("step, want", [
    ("fft", (("direct", "fft", "fft"), "fft")),          # fft's own step beats the mix
    ("direct", (("direct", "direct", "direct"), None)),   # the forward's method throughout
    ("direct / fft / lax", (("direct", "fft", "lax"), None))])
def test_a_faster_training_step_replaces_the_mix(cache_file, timings, monkeypatch, step, want):
  timings["fake"] = {"fwd": {"lax": 3.0, "direct": 1.0, "fft": 2.0},
                     "dx": {"lax": 3.0, "direct": 2.0, "fft": 1.0},
                     "dw": {"lax": 1.0, "direct": 2.0, "fft": 3.0},
                     "train": {"direct / fft / lax": 4.0, "fft": 5.0, "direct": 6.0}}
  timings["fake"]["train"][step] = 3.0
  monkeypatch.setattr(_autotune, "candidates", lambda g, budget=None, finite_locality=False: ["lax", "direct", "fft"])
  x, w = _data((1, 2, 16)), _data((2, 2, 3), 1)
  plan = _autotune.choose(_geom(x, w))
  assert (plan.methods, plan.fwd_train) == want
  assert "training step 3e+03 ms" in plan.reasons[1]
  entry = next(iter(json.loads(cache_file.read_text())["entries"].values()))
  assert entry["fwd_train"] == want[1] and entry["seconds"]["train"][step] == 3.0
  _autotune._memory.clear()                           # a later process reads the file
  assert _autotune.choose(_geom(x, w)) == plan and len(timings["calls"]) == 1
  f = lambda m: lambda x, w: jaxconv.conv(x, w, method=m).sum() ** 2  # noqa: E731
  chex.assert_trees_all_close(jax.grad(f("autotune"), (0, 1))(x, w),
                              jax.grad(f("lax"), (0, 1))(x, w), rtol=1e-4, atol=1e-4)


def test_training_steps_are_timed_where_more_than_one_could_win(monkeypatch):
  monkeypatch.setattr(_autotune, "TRAIN_CONTENDERS", math.inf)
  g = _geom(_data((1, 2, 16)), _data((2, 2, 3), 1))
  times = _autotune.time_candidates(g, ["lax", "direct"])
  assert set(times) == {*PASSES, "train"}
  assert {"lax", "direct"} <= set(times["train"]) and all(t > 0 for t in times["train"].values())
  assert set(times["train"]) - {"lax", "direct"} <= {
      " / ".join(p) for p in itertools.product(("lax", "direct"), repeat=3)}
  monkeypatch.setattr(_autotune, "TRAIN_CONTENDERS", 0.0)   # only the mix, if any: not timed
  assert "train" not in _autotune.time_candidates(g, ["lax", "direct"])


def test_pass_programs_compute_each_pass():
  g = _geom(jax.ShapeDtypeStruct((1, 2, 9), jnp.float32), jax.ShapeDtypeStruct((3, 2, 3), jnp.float32))
  x, w, ct = _data((1, 2, 9)), _data((3, 2, 3), 1), _data((1, 3, 7), 2)
  lax_conv = METHODS["lax"].conv
  _, vjp = jax.vjp(lambda x, w: lax_conv(x, w, g), x, w)
  want = dict(zip(PASSES, (lax_conv(x, w, g), *vjp(ct))))
  for pass_ in PASSES:
    got = _autotune.pass_program(METHODS["direct"].conv, g, pass_)(x, w, ct)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want[pass_]), rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match=r"has no cost for pass_='bwd'"):
    _autotune.pass_program(lax_conv, g, "bwd")


def test_candidates_pruned_by_the_model():
  x = jax.ShapeDtypeStruct((1, 64, 4096), jnp.float32)
  w = jax.ShapeDtypeStruct((64, 1, 1024), jnp.float32)
  g = _geom(x, w, groups=64, padding=((1023, 0),))
  est = _select.estimate(g)
  cands = _autotune.candidates(g)
  assert cands[0] == min(est, key=est.get) and "lax" in cands
  assert all(est[m] <= _autotune.PRUNE * min(est.values()) or m == "lax" for m in cands)


def test_jit_vmap_grad(timings):
  x, w = _data((2, 3, 12, 12)), _data((4, 3, 3, 3), 1)
  kw = dict(padding=1)

  def f(m):
    return lambda x, w: jaxconv.conv(x, w, method=m, **kw)
  ref = f("lax")(x, w)
  y = jax.jit(f("autotune"))(x, w)
  np.testing.assert_allclose(np.asarray(y), np.asarray(ref), rtol=1e-4, atol=1e-4)
  assert len(timings["calls"]) == 1
  # grad: forward and backward are one trace, so one choice (already cached).
  loss = lambda m: lambda x, w: jnp.sum(f(m)(x, w) ** 2)  # noqa: E731
  gx, gw = jax.grad(loss("autotune"), argnums=(0, 1))(x, w)
  rx, rw = jax.grad(loss("lax"), argnums=(0, 1))(x, w)
  np.testing.assert_allclose(np.asarray(gx), np.asarray(rx), rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(np.asarray(gw), np.asarray(rw), rtol=1e-4, atol=1e-3)
  assert len(timings["calls"]) == 1
  # vmap over a leading axis: the per-example geometry is tuned once.
  xs = jnp.stack([x, 2 * x])
  ys = jax.vmap(f("autotune"), in_axes=(0, None))(xs, w)
  np.testing.assert_allclose(np.asarray(ys[1]), 2 * np.asarray(ref), rtol=1e-4, atol=1e-3)
  assert len(timings["calls"]) == 1


def test_choice_fixed_within_one_grad_call(timings):
  """Even with a new choice per timing, one grad call times exactly once."""
  x, w = _data((1, 2, 20)), _data((2, 2, 5), 1)
  val, (gx, gw) = jax.value_and_grad(
      lambda x, w: jnp.sum(jaxconv.conv(x, w, method="autotune") ** 2), argnums=(0, 1))(x, w)
  assert len(timings["calls"]) == 1
  rv, (rx, rw) = jax.value_and_grad(
      lambda x, w: jnp.sum(jaxconv.conv(x, w, method="lax") ** 2), argnums=(0, 1))(x, w)
  np.testing.assert_allclose(np.asarray(gx), np.asarray(rx), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(float(val), float(rv), rtol=1e-5)


def test_no_retrace_on_second_call(timings):
  x, w = _data((1, 2, 16)), _data((2, 2, 3), 1)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def f(x, w):
    return jaxconv.conv(x, w, method="autotune")
  f(x, w)
  f(x + 1, w)
  assert len(timings["calls"]) == 1


def test_conv_transpose_and_general_accept_autotune(timings):
  x, w = _data((1, 4, 6, 6)), _data((4, 2, 2, 2), 1)
  y = jaxconv.conv_transpose(x, w, stride=2, method="autotune")
  np.testing.assert_allclose(
      np.asarray(y), np.asarray(jaxconv.conv_transpose(x, w, stride=2, method="lax")),
      rtol=1e-4, atol=1e-4)
  lhs, rhs = _data((1, 5, 5, 2)), _data((3, 3, 2, 4), 1)
  y = jaxconv.conv_general_dilated(lhs, rhs, (1, 1), "SAME",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                   method="autotune")
  assert y.shape == (1, 5, 5, 4)


def test_candidates_are_supported_and_ranked():
  x = jax.ShapeDtypeStruct((1, 8, 256), jnp.int32)
  w = jax.ShapeDtypeStruct((8, 1, 9), jnp.int32)
  g = _geom(x, w, groups=8, padding=4)
  cands = _autotune.candidates(g)
  assert "lax" in cands and "fft" not in cands
  assert all(METHODS[m].supports(g) is None for m in cands)


CORRUPT = {
    "bad-json": b"{not json",
    "non-utf8": b'{"version": 1, "entries": {"\xff\xfe": {}}}',
    "no-entries": b'{"version": 1}',
    "entries-not-object": b'{"entries": [1, 2]}',
    "not-object": b"[]",
}


def _three_convs():
  """Autotune three geometries (three would-be writes)."""
  w = _data((2, 2, 3), 1)
  for n in (16, 17, 18):
    jaxconv.conv(_data((1, 2, n)), w, method="autotune")


def _count(record, pattern):
  return sum(bool(re.search(pattern, str(r.message))) for r in record)


@pytest.mark.parametrize("content", list(CORRUPT.values()), ids=list(CORRUPT))
def test_corrupt_cache_warns_once_and_is_rebuilt(cache_file, timings, content):
  cache_file.parent.mkdir(parents=True)
  cache_file.write_bytes(content)
  with pytest.warns(UserWarning, match=r"ignoring the corrupt cache file .*autotune.json") as rec:
    _three_convs()
    _autotune._memory.clear()   # the file again; still no second warning
    _three_convs()
  assert _count(rec, "corrupt cache") == 1
  assert len(timings["calls"]) == 3
  assert len(json.loads(cache_file.read_text("utf-8"))["entries"]) == 3


@pytest.mark.parametrize("content", list(CORRUPT.values()), ids=list(CORRUPT))
def test_read_of_a_corrupt_cache_is_empty(cache_file, content):
  cache_file.parent.mkdir(parents=True)
  cache_file.write_bytes(content)
  with pytest.warns(UserWarning, match="corrupt cache") as rec:
    assert _autotune._read(cache_file) == {}
    assert _autotune._read(cache_file) == {}
  assert len(rec) == 1


def test_stale_entry_is_retimed(cache_file, timings):
  x, w = _data((1, 2, 16), dtype=np.float32), _data((2, 2, 3), 1)
  g = _geom(x, w)
  cache_file.parent.mkdir(parents=True)
  cache_file.write_text(json.dumps(
      {"version": 1, "entries": {_autotune.cache_key(g): {"method": "winograd"}}}))
  assert set(_autotune.choose(g).methods) <= set(METHODS)
  assert len(timings["calls"]) == 1


def test_entries_of_other_keys_are_kept(cache_file, timings):
  a, b = _data((1, 2, 16)), _data((1, 2, 17))
  w = _data((2, 2, 3), 1)
  jaxconv.conv(a, w, method="autotune")
  _autotune._memory.clear()
  jaxconv.conv(b, w, method="autotune")
  assert len(json.loads(cache_file.read_text())["entries"]) == 2


def test_clear_autotune_cache(cache_file, timings):
  x, w = _data((1, 2, 16)), _data((2, 2, 3), 1)
  jaxconv.conv(x, w, method="autotune")
  assert cache_file.exists() and _autotune._memory
  _autotune.clear_autotune_cache()
  assert not cache_file.exists() and not _autotune._memory
  _autotune.clear_autotune_cache()  # nothing to clear: fine
  jaxconv.conv(x, w, method="autotune")
  assert len(timings["calls"]) == 2


def test_env_var_naming_a_directory(tmp_path, monkeypatch, timings):
  monkeypatch.setenv(ENV, str(tmp_path))
  x, w = _data((1, 2, 16)), _data((2, 2, 3), 1)
  with pytest.raises(ValueError, match=r"JAXCONV_AUTOTUNE_CACHE must name a file, not a "
                                       r"directory; got JAXCONV_AUTOTUNE_CACHE="):
    jaxconv.conv(x, w, method="autotune")
  with pytest.raises(ValueError, match="must name a file"):
    _autotune.clear_autotune_cache()


def test_unwritable_cache_warns_and_keeps_the_choice(tmp_path, monkeypatch, timings):
  blocker = tmp_path / "a-file"
  blocker.write_text("")
  monkeypatch.setenv(ENV, str(blocker / "autotune.json"))   # parent is a file
  x, w = _data((1, 2, 16)), _data((2, 2, 3), 1)
  with pytest.warns(UserWarning, match=r"cannot write the cache .*in memory for this process") \
      as rec:
    y = jaxconv.conv(x, w, method="autotune")
    _three_convs()
  assert y.shape == (1, 2, 14) and _count(rec, "cannot write") == 1
  jaxconv.conv(x, w, method="autotune")
  assert len(timings["calls"]) == 3   # x is the first of the three: timed once


def test_unreadable_cache_warns(tmp_path, monkeypatch):
  path = tmp_path / "dir.json"
  path.mkdir()
  with pytest.warns(UserWarning, match=r"cannot read the cache") as rec:
    assert _autotune._read(path) == {}
    assert _autotune._read(path) == {}
  assert len(rec) == 1


def test_default_cache_path(tmp_path, monkeypatch):
  monkeypatch.delenv(ENV)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert _autotune.cache_path() == tmp_path / "jaxconv" / "autotune.json"
  monkeypatch.setenv(ENV, "")
  assert _autotune.cache_path() == tmp_path / "jaxconv" / "autotune.json"
  monkeypatch.delenv("XDG_CACHE_HOME")
  assert _autotune.cache_path().parts[-3:] == (".cache", "jaxconv", "autotune.json")


def test_failing_candidate_is_skipped(monkeypatch):
  def broken(x, w, g):
    raise RuntimeError("boom")
  monkeypatch.setattr(METHODS["direct"], "conv", broken)
  x = jax.ShapeDtypeStruct((1, 2, 12), jnp.float32)
  w = jax.ShapeDtypeStruct((2, 2, 3), jnp.float32)
  g = _geom(x, w)
  with pytest.warns(UserWarning,
                    match=r"'direct' failed on the fwd pass of .*RuntimeError: boom") as rec:
    times = _autotune.time_candidates(g, ["lax", "direct"])
  assert set(times) == set(PASSES) and all(set(t) == {"lax"} for t in times.values())
  assert len(rec) == 1


def test_key_names_the_geometry():
  x = jax.ShapeDtypeStruct((1, 2, 12), jnp.float32)
  w = jax.ShapeDtypeStruct((2, 2, 3), jnp.float32)
  a = _autotune.cache_key(_geom(x, w))
  b = _autotune.cache_key(_geom(x, w, stride=2))
  assert a != b and " " not in a and "float32" in a and a.startswith(jax.default_backend())


def test_unknown_method_error_lists_autotune():
  with pytest.raises(ValueError, match=r"expected one of 'auto', 'lax', .*'autotune'\."):
    jaxconv.conv(jnp.ones((1, 1, 4)), jnp.ones((1, 1, 2)), method="tune")


def test_when_every_candidate_fails_auto_decides_and_nothing_is_cached(monkeypatch, cache_file):
  monkeypatch.setattr(_autotune, "time_candidates", lambda g, methods: {})
  x = jax.ShapeDtypeStruct((1, 2, 12), jnp.float32)
  w = jax.ShapeDtypeStruct((2, 2, 3), jnp.float32)
  g = _geom(x, w)
  with pytest.warns(UserWarning, match=r"no candidate could be timed .*nothing is cached"):
    assert _autotune.choose(g).methods == _select.select(g).methods
  assert _autotune.cache_key(g) not in _autotune._memory
  assert not cache_file.exists() or _autotune.cache_key(g) not in json.loads(
      cache_file.read_text())


def test_under_a_mesh_autotune_uses_auto_and_leaves_the_cache(monkeypatch, cache_file):
  monkeypatch.setattr(_autotune, "time_candidates",
                      lambda g, methods: pytest.fail("must not time under a mesh"))
  x = jax.ShapeDtypeStruct((2, 2, 12), jnp.float32)
  w = jax.ShapeDtypeStruct((2, 2, 3), jnp.float32)
  g = _geom(x, w)
  mesh = jax.make_mesh((1,), ("data",))
  with jax.sharding.set_mesh(mesh):
    assert _autotune.choose(g).methods == _select.select(g).methods
  assert _autotune.cache_key(g) not in _autotune._memory
  assert not cache_file.exists()


def _simulate_read_only(monkeypatch, directory):
  """What a read-only `directory` does to the writer (for root, whom chmod does not stop)."""
  real_open, real_replace = os.open, os.replace

  def no_create(path, flags, *args, **kwargs):
    if (os.path.dirname(os.path.abspath(path)) == str(directory) and flags & os.O_CREAT
        and not os.path.exists(path)):
      raise PermissionError(13, "Permission denied (simulated)", str(path))
    return real_open(path, flags, *args, **kwargs)

  def no_replace(src, dst, *args, **kwargs):
    if os.path.dirname(os.path.abspath(dst)) == str(directory):
      raise PermissionError(13, "Permission denied (simulated)", str(dst))
    return real_replace(src, dst, *args, **kwargs)
  monkeypatch.setattr(os, "open", no_create)
  monkeypatch.setattr(os, "replace", no_replace)


@pytest.mark.parametrize("how", ["chmod", "simulated"])
def test_read_only_directory_keeps_choices_in_memory(cache_file, timings, monkeypatch, how):
  x, w = _data((1, 2, 20)), _data((2, 2, 3), 1)
  jaxconv.conv(x, w, method="autotune")            # one entry, written while writable
  before = cache_file.read_bytes()
  _autotune._memory.clear()
  if how == "chmod":
    if not hasattr(os, "geteuid") or os.geteuid() == 0:
      pytest.skip("chmod does not stop root (or there is no POSIX uid); see 'simulated'")
    cache_file.parent.chmod(0o555)
  else:
    _simulate_read_only(monkeypatch, cache_file.parent)
  try:
    with pytest.warns(UserWarning, match=r"cannot write the cache .*in memory") as rec:
      jaxconv.conv(x, w, method="autotune")        # from the file: no timing, no write
      _three_convs()
      _three_convs()                               # from memory
    assert _count(rec, "cannot write") == 1
    assert len(timings["calls"]) == 1 + 3
    assert cache_file.read_bytes() == before
    assert sorted(p.name for p in cache_file.parent.iterdir()) == [
        "autotune.json", "autotune.json.lock"]     # no temp file left behind
  finally:
    cache_file.parent.chmod(0o755)


def test_failed_replace_leaves_the_file_and_no_temp_file(cache_file, monkeypatch):
  _autotune._write(cache_file, "a", {"method": "lax"})
  before = cache_file.read_bytes()

  def broken(src, dst):
    raise OSError(28, "No space left on device (simulated)")
  monkeypatch.setattr(os, "replace", broken)
  with pytest.warns(UserWarning, match=r"cannot write the cache .*No space left"):
    _autotune._write(cache_file, "b", {"method": "lax"})
  assert cache_file.read_bytes() == before
  assert not list(cache_file.parent.glob("*.tmp"))


def _write_many(path, worker, n, barrier):
  barrier.wait()
  for i in range(n):
    _autotune._write(path, f"worker{worker}/key{i}", {"method": "lax", "i": i})


@pytest.mark.parametrize("lock", ["flock", "lock-file"])
@pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")
def test_concurrent_writers_lose_no_entry(cache_file, monkeypatch, lock):
  if "fork" not in multiprocessing.get_all_start_methods():
    pytest.skip("needs the 'fork' start method (the workers do no JAX work)")
  if lock == "lock-file":
    monkeypatch.setattr(_autotune, "fcntl", None)   # the path taken without fcntl
  elif _autotune.fcntl is None:
    pytest.skip("no fcntl on this platform")
  procs, n = 4, 50
  ctx = multiprocessing.get_context("fork")
  barrier = ctx.Barrier(procs)
  workers = [ctx.Process(target=_write_many, args=(cache_file, k, n, barrier))
             for k in range(procs)]
  t0 = time.perf_counter()
  for p in workers:
    p.start()
  for p in workers:
    p.join(timeout=60)
  for p in workers:
    if p.is_alive():
      p.kill()
  assert [p.exitcode for p in workers] == [0] * procs
  entries = json.loads(cache_file.read_text("utf-8"))["entries"]
  assert len(entries) == procs * n
  assert not list(cache_file.parent.glob("*.tmp"))
  assert time.perf_counter() - t0 < 10


def test_lock_file_left_by_a_dead_process_is_broken(cache_file, monkeypatch):
  monkeypatch.setattr(_autotune, "fcntl", None)
  monkeypatch.setattr(_autotune, "LOCK_STALE_S", 0.2)
  cache_file.parent.mkdir(parents=True)
  lock = cache_file.with_name("autotune.json.lock")
  lock.write_text("")
  t0 = time.perf_counter()
  _autotune._write(cache_file, "a", {"method": "lax"})
  assert time.perf_counter() - t0 > 0.1   # waited for the lock to turn stale
  assert list(json.loads(cache_file.read_text("utf-8"))["entries"]) == ["a"]
  assert not lock.exists()


def test_clear_takes_the_lock_and_keeps_it(cache_file):
  _autotune._write(cache_file, "a", {"method": "lax"})
  _autotune.clear_autotune_cache()
  assert not cache_file.exists() and cache_file.with_name("autotune.json.lock").exists()


def test_finite_locality_times_only_local_methods(timings):
  x = jnp.ones((1, 4, 64)).at[0, 0, 5].set(jnp.nan)
  w = jnp.ones((4, 1, 9))
  y = jaxconv.conv(x, w, groups=4, method="autotune", finite_locality=True)
  _, tried = timings["calls"][0]
  assert not {"fft", "toeplitz"} & set(tried)
  assert int(jnp.isnan(y).sum()) == 6   # outputs 0..5: the windows that read x[5]
