"""`method="autotune"`: time the candidates once per geometry, remember the winner.

On the first trace of a key (geometry, dtype, precision, backend and device
kind), every candidate method is compiled and timed on random inputs of that
shape, pass by pass (forward, input gradient, weight gradient), outside the
caller's trace (the geometry is static, so this works under `jit`, `vmap` and
`grad`); the fastest method of each pass is kept in memory and in a JSON
file, so later traces, and later processes, cost a dict lookup. The passes
then run as `method="auto"` runs a plan (`jaxconv._perpass`).

The file is `$JAXCONV_AUTOTUNE_CACHE` when that is set, else
`$XDG_CACHE_HOME/jaxconv/autotune.json` (default `~/.cache/jaxconv/...`).
Processes share it safely: a write holds a lock on the sidecar
`autotune.json.lock` (`fcntl.flock`; without `fcntl`, an O_EXCL lock file),
re-reads the file, adds its entry and atomically replaces the file, so no
entry is lost and a reader never sees half a file. A corrupt or unreadable
file is ignored (and rebuilt by the next write), a read-only location keeps
choices in memory only; each problem warns once per process and file, and
autotune never fails because of the file.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import secrets
import statistics
import time
import warnings
from pathlib import Path

try:
  import fcntl
except ImportError:  # not POSIX (Windows): see _locked
  fcntl = None  # type: ignore[assignment]

import jax
import numpy as np

from . import _malloc, _perpass, _select
from ._geometry import Geometry
from ._methods import METHODS, nonfinite_spread
from ._methods.common import PASSES, check_pass, out_dtype

ENV_VAR = "JAXCONV_AUTOTUNE_CACHE"
VERSION = 2

PRUNE = 10.0
"""Candidates estimated by the cost model at more than `PRUNE` x the best
estimate are not timed (lax and auto's choice always are)."""

BUDGET_S = 0.2
"""Seconds of timed runs per candidate (at least 3 runs, at most 10)."""

CUTOFF = 5.0
"""A candidate whose warm-up run is `CUTOFF` x slower than the best time so far
is not timed further."""

TRAIN = "train"
"""The stage that times a forward and both gradients in one program
(`training_program`), next to the passes 'fwd', 'dx', 'dw'."""

TRAIN_CONTENDERS = 3.0
"""`training_contenders`: a method whose passes sum to more than this many
times the least sum cannot win a training step (a fused step takes at least
~0.4x its passes' sum), so its step is not timed."""

MIX_SEP = " / "
"""Joins the per-pass methods of a mix in a training step's label."""

LOCK_STALE_S = 30.0
"""Without `fcntl` only: a lock file older than this is taken as left by a dead
process and removed (a write holds it for milliseconds)."""

_memory: dict[str, _select.Plan] = {}
_warned: set[tuple[str, str]] = set()


# --- the file --------------------------------------------------------------------

def cache_path() -> Path:
  """The cache file: `$JAXCONV_AUTOTUNE_CACHE`, else the user cache dir.

  Raises:
    ValueError: `$JAXCONV_AUTOTUNE_CACHE` names an existing directory.
  """
  env = os.environ.get(ENV_VAR, "")
  if env:
    path = Path(env).expanduser()
    if path.is_dir():
      raise ValueError(
          f"jaxconv autotune: ${ENV_VAR} must name a file, not a directory; got "
          f"{ENV_VAR}={env!r}. Use e.g. {str(path / 'autotune.json')!r}.")
    return path
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
  return Path(base).expanduser() / "jaxconv" / "autotune.json"


def _warn_once(kind: str, path: Path, message: str) -> None:
  """Warn about `kind` ('unreadable', 'corrupt', 'unwritable', ...) of `path` once per process."""
  if (kind, str(path)) in _warned:
    return
  _warned.add((kind, str(path)))
  warnings.warn(message, stacklevel=4)


def _read(path: Path) -> dict[str, dict]:
  """The entries of the cache file; a missing file is empty, a corrupt one too (warned once)."""
  try:
    raw = path.read_bytes()
  except (FileNotFoundError, NotADirectoryError):
    return {}
  except OSError as e:
    _warn_once("unreadable", path,
               f"jaxconv autotune: cannot read the cache {path} ({e}); ignoring it.")
    return {}
  try:
    data = json.loads(raw.decode("utf-8"))
    entries = data["entries"]
    if not isinstance(entries, dict):
      raise TypeError("'entries' is not an object")
  except (ValueError, KeyError, TypeError) as e:  # UnicodeDecodeError is a ValueError
    _warn_once("corrupt", path,
               f"jaxconv autotune: ignoring the corrupt cache file {path} "
               f"({type(e).__name__}: {e}); it will be rewritten.")
    return {}
  return entries


@contextlib.contextmanager
def _locked(path: Path):
  """Hold the sidecar lock `<path>.lock` (created if missing, never removed on POSIX).

  POSIX: `fcntl.flock` on the sidecar, released by the kernel even if the
  process dies. Without `fcntl` (Windows): the sidecar is created with
  O_CREAT|O_EXCL and removed on release; one older than `LOCK_STALE_S` is taken
  as left by a dead process and broken (best effort).

  Raises:
    OSError: the sidecar cannot be created or opened (e.g. a read-only directory).
  """
  lock = path.with_name(path.name + ".lock")
  if fcntl is not None:
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX)
      yield
    finally:
      os.close(fd)  # releases the flock
    return
  while True:
    try:
      fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
      break
    except FileExistsError:
      try:
        if time.time() - os.stat(lock).st_mtime > LOCK_STALE_S:
          os.unlink(lock)
          continue
      except FileNotFoundError:
        continue
      time.sleep(0.002)
  os.close(fd)
  try:
    yield
  finally:
    with contextlib.suppress(OSError):
      os.unlink(lock)


def _write(path: Path, key: str, entry: dict) -> None:
  """Add `entry` under `key`, keeping every other entry, also other processes'.

  Under the lock (`_locked`): read the file, add the entry, write a temp file
  (unique: pid + random) in the same directory, `os.replace` it over the
  file. Readers take no lock: they see the old or the new file, never half of
  one. A location that cannot be written warns once; the choice then lives in
  memory only.
  """
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
      entries = _read(path)
      entries[key] = entry
      tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
      fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
      try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
          f.write(json.dumps({"version": VERSION, "entries": entries}, indent=1) + "\n")
        os.replace(tmp, path)
      except BaseException:
        with contextlib.suppress(OSError):
          os.unlink(tmp)
        raise
  except OSError as e:
    _warn_once("unwritable", path,
               f"jaxconv autotune: cannot write the cache {path} ({e}); choices are kept in "
               f"memory for this process only. Set ${ENV_VAR} to a writable file.")


def clear_autotune_cache() -> None:
  """Forget every autotuned choice: in memory and in the cache file.

  The next `method="autotune"` trace of each geometry times the candidates
  again. The file is `$JAXCONV_AUTOTUNE_CACHE` if set, else
  `~/.cache/jaxconv/autotune.json` (under `$XDG_CACHE_HOME` if set); it is
  removed under the writers' lock, and the empty sidecar `autotune.json.lock`
  stays (removing it could let two writers hold two different locks).

  Raises:
    ValueError: `$JAXCONV_AUTOTUNE_CACHE` names a directory.
    OSError: the file exists but cannot be removed.

  Example:
    >>> import os, tempfile, jax.numpy as jnp, jaxconv
    >>> old = os.environ.get("JAXCONV_AUTOTUNE_CACHE")
    >>> path = os.path.join(tempfile.mkdtemp(), "autotune.json")
    >>> os.environ["JAXCONV_AUTOTUNE_CACHE"] = path
    >>> y = jaxconv.conv(jnp.ones((1, 2, 16)), jnp.ones((2, 2, 3)), method="autotune")
    >>> y.shape, os.path.exists(path)
    ((1, 2, 14), True)
    >>> jaxconv.clear_autotune_cache()
    >>> os.path.exists(path)
    False
    >>> if old is None:
    ...   del os.environ["JAXCONV_AUTOTUNE_CACHE"]
    ... else:
    ...   os.environ["JAXCONV_AUTOTUNE_CACHE"] = old
  """
  _memory.clear()
  path = cache_path()
  with contextlib.ExitStack() as stack:
    try:  # so that a concurrent write does not bring the old entries back
      stack.enter_context(_locked(path))
    except OSError:
      pass  # no directory (nothing to clear), or read-only (the unlink says so)
    with contextlib.suppress(FileNotFoundError):
      path.unlink()


# --- keys and candidates ---------------------------------------------------------

def _device_kind() -> str:
  try:
    return jax.devices()[0].device_kind
  except Exception:  # noqa: BLE001 -- informational part of the key only
    return "unknown"


def cache_key(g: Geometry, backend: str | None = None) -> str:
  """A stable string naming everything the timing depends on."""
  backend = backend or jax.default_backend()
  pet = None if g.preferred_element_type is None else np.dtype(g.preferred_element_type).name
  return (f"{backend}/{_device_kind()}/jax-{jax.__version__}|x{g.in_shape}|w{g.kernel_shape}"
          f"|s{g.stride}|p{g.padding}|d{g.dilation}|ld{g.lhs_dilation}|g{g.groups}"
          f"|{np.dtype(g.dtype).name}|prec={g.precision}|pet={pet}").replace(" ", "")


def candidates(g: Geometry, budget: int | None = None, finite_locality: bool = False
               ) -> list[str]:
  """The methods worth timing for `g`, most promising (by the cost model) first.

  Methods that support `g` for 'auto' (`supports(g, "auto")`: e.g. no
  'direct'/'im2col' above their unrolled-tap cap), minus those the model puts
  at more than `PRUNE` x its best estimate of every pass, and those over the
  memory budget; lax and the model's own picks are always kept. With
  `finite_locality`, only methods that keep a NaN/Inf input local.
  """
  per_pass = {p: {m: t for m, t in _select.estimate(g, budget=budget, pass_=p).items()
                  if not finite_locality or nonfinite_spread(m) == "window"}
              for p in PASSES}
  if not per_pass[PASSES[0]]:
    return ["lax"]
  picks = set(_select.select(g, budget=budget, finite_locality=finite_locality).methods)
  keep = [m for m in per_pass[PASSES[0]]
          if m == "lax" or m in picks
          or any(est[m] <= PRUNE * min(est.values()) for est in per_pass.values())]
  total = _select.estimate(g, budget=budget)
  return sorted(keep, key=lambda m: total[m])


# --- timing ----------------------------------------------------------------------

def _inputs(g: Geometry):
  rng = np.random.default_rng(0)
  dt = np.dtype(g.dtype)

  def draw(shape):
    if dt.kind == "c":
      return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dt)
    if dt.kind in "iub":
      return rng.integers(0, 3, size=shape).astype(dt)
    return rng.standard_normal(shape).astype(dt)
  return draw(g.in_shape), draw(g.kernel_shape), draw(g.out_shape)


def pass_program(conv, g: Geometry, pass_: str):
  """`(x, w, ct) -> result` of one pass of `conv(x, w, g)`, as JAX derives it.

  'fwd' is the convolution; 'dx' the transpose of its linear map in `x`
  applied to the cotangent `ct`, 'dw' that in `w` (what `jax.grad` runs for
  each gradient; the unused forward output is dead code XLA removes).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxconv._autotune import pass_program
    >>> from jaxconv._geometry import geometry_of
    >>> from jaxconv._methods import direct
    >>> g = geometry_of((1, 2, 8), (3, 2, 3))
    >>> x, w, ct = jnp.ones((1, 2, 8)), jnp.ones((3, 2, 3)), jnp.ones((1, 3, 6))
    >>> [jax.jit(pass_program(direct.conv, g, p))(x, w, ct).shape for p in ("fwd", "dx", "dw")]
    [(1, 3, 6), (1, 2, 8), (3, 2, 3)]
  """
  check_pass(pass_, "autotune")
  if pass_ == "fwd":
    return lambda x, w, ct: conv(x, w, g)
  if pass_ == "dx":
    return lambda x, w, ct: jax.vjp(lambda x: conv(x, w, g), x)[1](ct)[0]
  return lambda x, w, ct: jax.vjp(lambda w: conv(x, w, g), w)[1](ct)[0]


def training_program(conv, g: Geometry):
  """`(x, w, ct) -> (y, dx, dw)`: the forward and both gradients of
  `conv(x, w, g)` in one program, as a training step runs them (the passes
  share work there, e.g. the padded input or FFT spectra, which `pass_program`
  times apart).

  Example (the step's weight gradient is the 'dw' pass's):
    >>> import jax.numpy as jnp
    >>> from jaxconv import _autotune, _geometry, _methods
    >>> fft = _methods.METHODS["fft"].conv
    >>> g = _geometry.geometry_of((1, 2, 8), (3, 2, 3))
    >>> args = (jnp.arange(16.0).reshape(1, 2, 8), jnp.ones((3, 2, 3)), jnp.ones((1, 3, 6)))
    >>> y, dx, dw = _autotune.training_program(fft, g)(*args)
    >>> bool(jnp.allclose(dw, _autotune.pass_program(fft, g, "dw")(*args), atol=1e-3))
    True
  """
  def run(x, w, ct):
    y, vjp = jax.vjp(lambda x, w: conv(x, w, g), x, w)
    return (y, *vjp(ct))
  return run


def _median_time(program, x, w, ct, best: float) -> float:
  """Median seconds of the jitted `program`; its warm-up alone when that is
  `CUTOFF` x slower than `best`, the best time so far."""
  compiled = jax.jit(program).lower(x, w, ct).compile()
  run = lambda: jax.block_until_ready(compiled(x, w, ct))  # noqa: E731
  t0 = time.perf_counter()
  run()
  samples = [time.perf_counter() - t0]
  if samples[0] < CUTOFF * best:
    samples = []
    while len(samples) < 10 and (len(samples) < 3 or sum(samples) < BUDGET_S):
      t0 = time.perf_counter()
      run()
      samples.append(time.perf_counter() - t0)
  return statistics.median(samples)


def training_contenders(seconds: dict[str, dict[str, float]]) -> dict[str, tuple[str, ...]]:
  """The training steps worth timing, from each method's pass times.

  Args:
    seconds: `{method: {pass: seconds}}`.

  Returns:
    `{label: (fwd, dx, dw)}`: every method whose three passes sum to at most
    `TRAIN_CONTENDERS` x the least sum, and the mix of the fastest method of
    each pass where that is not one method (its label the names joined by
    `MIX_SEP`).

  Example:
    >>> from jaxconv._autotune import training_contenders
    >>> training_contenders({"lax": {"fwd": 1, "dx": 2, "dw": 2},
    ...                      "fft": {"fwd": 2, "dx": 1, "dw": 1},
    ...                      "toeplitz": {"fwd": 9, "dx": 9, "dw": 9}})
    {'lax': ('lax', 'lax', 'lax'), 'fft': ('fft', 'fft', 'fft'), 'lax / fft / fft': ('lax', 'fft', 'fft')}
  """
  sums = {m: sum(t[p] for p in PASSES) for m, t in seconds.items()
          if all(p in t for p in PASSES)}
  if not sums:
    return {}
  least = min(sums.values())
  out = {m: (m,) * len(PASSES) for m, t in sums.items() if t <= TRAIN_CONTENDERS * least}
  mix = tuple(min((seconds[m][p], m) for m in sums)[1] for p in PASSES)
  if len(set(mix)) > 1:
    out[MIX_SEP.join(mix)] = mix
  return out


def step_program(methods: tuple[str, ...], g: Geometry):
  """`training_program` of one method, or of a per-pass mix as `auto` runs it."""
  conv = (METHODS[methods[0]].conv if len(set(methods)) == 1
          else _perpass.per_pass(*methods))
  return training_program(conv, g)


def time_candidates(g: Geometry, methods: list[str]) -> dict[str, dict[str, float]]:
  """Median seconds of each pass of each method: `{pass: {method: seconds}}`,
  and of the training steps worth timing: `{"train": {label: seconds}}`.

  The passes are 'fwd', 'dx' and 'dw' (`pass_program`); integer inputs have
  no gradients, so only 'fwd'. Where more than one training step could win
  (`training_contenders`: the close methods and the per-pass mix), each is
  timed as one program (`training_program`), since one method's fused
  forward+backward shares work that a mix recomputes. Runs eagerly on
  concrete arrays even when called during a trace. A method that fails to
  compile or run a pass is left out of every pass (with one warning); a step
  that fails is left out of the steps.
  """
  differentiable = np.dtype(g.dtype).kind in "fc"
  _malloc.settle()   # time as a long-running process runs (see `_malloc`)
  x, w, ct = _inputs(g)
  ct = ct.astype(out_dtype(g))
  times: dict[str, dict[str, float]] = {}
  failed: set[str] = set()
  with jax.ensure_compile_time_eval():
    for p in PASSES if differentiable else PASSES[:1]:
      times[p] = {}
      for m in methods:
        if m in failed:
          continue
        try:
          best = min(times[p].values(), default=math.inf)
          times[p][m] = _median_time(pass_program(METHODS[m].conv, g, p), x, w, ct, best)
        except Exception as e:  # noqa: BLE001 -- one failing candidate must not stop tuning
          failed.add(m)
          warnings.warn(f"jaxconv autotune: {m!r} failed on the {p} pass of {cache_key(g)} "
                        f"({type(e).__name__}: {e}); not a candidate.", stacklevel=2)
    times = {p: {m: t for m, t in ts.items() if m not in failed}
             for p, ts in times.items() if set(ts) - failed}
    if differentiable and len(times) == len(PASSES):
      steps = training_contenders({m: {p: times[p][m] for p in PASSES}
                                   for m in times[PASSES[0]]
                                   if all(m in times[p] for p in PASSES)})
      if len(steps) > 1:
        times[TRAIN] = {}
        for label, ms in steps.items():
          try:
            best = min(times[TRAIN].values(), default=math.inf)
            times[TRAIN][label] = _median_time(step_program(ms, g), x, w, ct, best)
          except Exception as e:  # noqa: BLE001
            warnings.warn(f"jaxconv autotune: the training step of {label} failed on "
                          f"{cache_key(g)} ({type(e).__name__}: {e}); not timed.",
                          stacklevel=2)
  return times


def _valid(entry, g: Geometry, budget) -> bool:
  """A cache entry whose methods are all still candidates for `g`."""
  if not isinstance(entry, dict) or not isinstance(entry.get("plan"), list):
    return False
  plan = entry["plan"] + ([entry["fwd_train"]] if entry.get("fwd_train") else [])
  est = _select.estimate(g, budget=budget)
  return len(entry["plan"]) == len(PASSES) and all(m in METHODS and m in est for m in plan)


def _plan(fwd: str, dx: str, dw: str, fwd_train: str | None, times: dict) -> _select.Plan:
  """The `_select.Plan` of autotuned methods, its reasons the measured times."""
  def why(m, p):
    t = times.get(p, {}).get(m)
    return f"{m}: measured {p} {t * 1e3:.3g} ms (autotune)" if t else f"{m} (autotune)"
  reasons = [why(m, p) for m, p in zip((fwd, dx, dw), PASSES)]
  label = fwd_train or (dx if fwd == dx == dw else MIX_SEP.join((fwd, dx, dw)))
  step = times.get(TRAIN, {}).get(label)
  if step:
    reasons[1] = reasons[2] = (f"{label}: measured training step {step * 1e3:.3g} ms, "
                               f"the fastest timed (autotune)")
  return _select.Plan(fwd, dx, dw, tuple(reasons), fwd_train)


def choose(g: Geometry, budget: int | None = None, finite_locality: bool = False
           ) -> _select.Plan:
  """The autotuned plan of `g`: from memory, else the file, else by timing
  each pass of each candidate, and the training steps that could win.

  The forward is the fastest timed forward. The gradients are the fastest
  input and weight gradients, unless one method's own training step (fused
  forward and gradients, which share work) was timed faster than that mix's:
  then that method runs the whole of a differentiated call
  (`Plan.fwd_train`, as with `auto`).

  A failed candidate is never recorded; when no candidate can be timed, or
  under a mesh (where the eager timing would not be the per-device program),
  it returns `auto`'s plan and writes nothing. `g` is the per-device
  geometry on a mesh (`jaxconv._spmd`), so a tune made on one device serves
  the same per-device shape under a mesh. Integer inputs use one method
  (the fastest forward) for all passes. `finite_locality` times only the
  methods that keep a NaN/Inf input local (a separate cache entry).

  Returns:
    A `jaxconv._select.Plan` (its reasons the measured times).

  Raises:
    ValueError: `$JAXCONV_AUTOTUNE_CACHE` names a directory.
  """
  key = cache_key(g) + ("|finite_locality" if finite_locality else "")
  hit = _memory.get(key)
  if hit is not None:
    return hit
  path = cache_path()
  entry = _read(path).get(key)
  if entry is not None and _valid(entry, g, budget):
    fwd, dx, dw = entry["plan"]
    _memory[key] = _plan(fwd, dx, dw, entry.get("fwd_train"), entry.get("seconds", {}))
    return _memory[key]
  if not jax.sharding.get_abstract_mesh().empty:
    # On a mesh (set_mesh, inside shard_map) the eager timing would run the
    # global program, or not at all: use auto's choice and leave the cache alone.
    return _select.select(g, budget=budget, finite_locality=finite_locality)
  times = time_candidates(g, candidates(g, budget, finite_locality))
  passes = [p for p in PASSES if p in times]
  if not passes or (len(passes) > 1 and len(passes) < len(PASSES)):
    plan = _select.select(g, budget=budget, finite_locality=finite_locality)
    warnings.warn(f"jaxconv autotune: no candidate could be timed for every pass on {key}; "
                  f"using method='auto''s plan {plan.methods}, nothing is cached.",
                  stacklevel=2)
    return plan
  fwd_train = None
  if len(passes) == 1:   # no gradients (integers): one method
    fwd = dx = dw = min(times["fwd"], key=times["fwd"].__getitem__)
  else:
    fwd, dx, dw = (min(times[p], key=times[p].__getitem__) for p in PASSES)
    steps = times.get(TRAIN, {})
    step = min(steps, key=steps.__getitem__) if steps else None
    if step is not None and MIX_SEP not in step and (fwd, dx, dw) != (step,) * 3:
      dx = dw = step
      fwd_train = None if step == fwd else step
  plan = _plan(fwd, dx, dw, fwd_train, times)
  _memory[key] = plan
  _write(path, key, {
      "plan": [fwd, dx, dw], "fwd_train": fwd_train,
      "seconds": {p: {m: float(f"{t:.4g}") for m, t in ts.items()} for p, ts in times.items()},
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
  return plan
