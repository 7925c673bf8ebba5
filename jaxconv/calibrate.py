"""`python -m jaxconv.calibrate`: measure `method="auto"`'s cost model on this device.

Usage:
  python -m jaxconv.calibrate [--full] [--out FILE] [--cases GLOB ...]

Times every pass (forward, input gradient, weight gradient; `jit`-compiled,
one warm-up call excluded, the minimum over a few runs, methods interleaved
round-robin so the machine's load hits all alike; glibc's malloc first put in
the state of a long-running process, `jaxconv._malloc.settle`) of every registered method
on a designed sample of convolutions (`QUICK`, about 3 minutes on a 2-core
CPU; `--full` adds model-zoo layers at full size, about 6), and the fused
training step of the contending methods and of the fastest per-pass mix
(`measure_training`); fits, per method and pass, the coefficients of the
method's `cost` features by non-negative least squares on the relative error,
refines them for the picks `auto` makes (`fit_decisions`), takes each
method's and the mixes' median training share (`fit_training`), and writes
the profile for this device
(`jaxconv._profiles.device_key`) to `$JAXCONV_CACHE_DIR/cost_model.json`
(default `~/.cache/jaxconv/`): never into the installed package. `auto`
reads it from the next process on (or after `jaxconv._profiles.clear_caches()`).

Before writing it prints how well the current profile and the new one rank
the methods on held-out cases (every fourth case, not used for that fit):
the share of passes where the pick is within 1.1x of the measured fastest,
and the geometric-mean slow-down of the picks. The written profile is then
fitted on all cases.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import fnmatch
import json
import math
import os
import secrets
import shlex
import statistics
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any
from pathlib import Path

import jax
import numpy as np

from . import _budget, _malloc, _profiles, _select
from ._autotune import MIX_SEP, TRAIN, pass_program, step_program, training_contenders
from ._geometry import Geometry, geometry_of, make_transpose_geometry
from ._padding import method_geometry
from ._methods import METHODS
from ._methods.common import PASSES

CUTOFF = 20.0
"""A method whose warm-up is this much slower than the fastest warm-up of the
same pass (and over `SLOW_S`) is timed once only: enough to show it loses."""
SLOW_S = 0.3
ROUNDS = (3, 8)
"""At least 3, at most 8 timed runs per method and pass."""
HOLD_OUT_EVERY = 4


@dataclasses.dataclass(frozen=True)
class Shape:
  """One calibration convolution: shapes and `jaxconv.conv` keywords
  (`transposed`: `jaxconv.conv_transpose`'s, with PyTorch's kernel layout)."""
  name: str
  x_shape: tuple[int, ...]
  w_shape: tuple[int, ...]
  kwargs: tuple[tuple[str, object], ...] = ()
  transposed: bool = False

  def geometry(self) -> Geometry:
    """The method geometry the passes are timed on."""
    kw = dict(self.kwargs)
    if self.transposed:
      spec = lambda s: jax.ShapeDtypeStruct(s, "float32")  # noqa: E731
      return make_transpose_geometry("calibrate", spec(self.x_shape), spec(self.w_shape), **kw)
    return geometry_of(self.x_shape, self.w_shape, fn="calibrate", **kw)


def _s(name, x, w, **kw) -> Shape:
  return Shape(name, x, w, tuple(sorted(kw.items())))


def _quick() -> tuple[Shape, ...]:
  """A designed sample: dense, grouped, depthwise, strided, dilated,
  transposed, 1-D/2-D/3-D, tiny to cache-exceeding, kernels 1 to 2048 taps."""
  p2 = lambda k: ((k // 2, k // 2),) * 2  # noqa: E731
  out = [
      _s("resnet-3x3", (4, 64, 56, 56), (64, 64, 3, 3), padding=p2(3)),
      _s("resnet-1x1", (4, 256, 28, 28), (64, 256, 1, 1)),
      _s("resnet-3x3s2", (2, 128, 56, 56), (128, 128, 3, 3), stride=2, padding=p2(3)),
      _s("deep-3x3", (4, 256, 14, 14), (256, 256, 3, 3), padding=p2(3)),
      _s("stem-7x7s2", (2, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=p2(7)),
      _s("wavenet", (2, 64, 4096), (64, 64, 2), padding=((64, 0),), dilation=64),
      _s("volume", (1, 8, 32, 32, 32), (8, 8, 3, 3, 3), padding=((1, 1),) * 3),
      _s("lenet", (64, 1, 32, 32), (6, 1, 5, 5)),
      Shape("unet-up", (2, 128, 32, 32), (128, 64, 2, 2), (("stride", 2),), True),
      _s("grouped-3x3", (2, 128, 28, 28), (128, 16, 3, 3), padding=p2(3), groups=8),
      _s("dense-1d-k9", (4, 64, 1024), (64, 64, 9), padding=((4, 4),)),
      _s("mbv2-dw3x3", (4, 144, 56, 56), (144, 1, 3, 3), padding=p2(3), groups=144),
      _s("mbv2-dw3x3s2", (4, 144, 56, 56), (144, 1, 3, 3), stride=2, padding=p2(3),
         groups=144),
      _s("convnext-dw7", (4, 96, 56, 56), (96, 1, 7, 7), padding=p2(7), groups=96),
      _s("dense64-k5", (2, 64, 32, 32), (64, 64, 5, 5), padding=p2(5)),
      _s("small-cin", (8, 3, 64, 64), (16, 3, 3, 3), padding=p2(3)),
      _s("volume-dw", (1, 32, 24, 24, 24), (32, 1, 3, 3, 3), padding=((1, 1),) * 3, groups=32),
      _s("short-causal", (4, 256, 1024), (256, 1, 4), padding=((3, 0),), groups=256),
      _s("tiny-3x3", (2, 3, 8, 8), (4, 3, 3, 3), padding=p2(3)),
      _s("tiny-dw-1d", (1, 3, 40), (3, 1, 9), padding=((8, 0),), groups=3),
      _s("small-3x3", (2, 16, 16, 16), (16, 16, 3, 3), padding=p2(3)),
  ]
  for k in (3, 7, 15, 31):
    out.append(_s(f"dense-k{k}", (1, 16, 64, 64), (16, 16, k, k), padding=p2(k)))
    out.append(_s(f"dw-k{k}", (2, 64, 64, 64), (64, 1, k, k), padding=p2(k), groups=64))
  for k in (16, 256, 2048):
    out.append(_s(f"causal-k{k}", (1, 64, 2048), (64, 1, k), padding=((k - 1, 0),),
                  groups=64))
  return tuple(out)


def _zoo() -> tuple[Shape, ...]:
  """Model-zoo layers at the sizes `python -m bench --full` times them."""
  p2 = lambda k: ((k // 2, k // 2),) * 2  # noqa: E731
  return (
      _s("zoo-convnext-dw7x7", (8, 96, 56, 56), (96, 1, 7, 7), padding=p2(7), groups=96),
      _s("zoo-resnet50-1x1", (8, 256, 56, 56), (64, 256, 1, 1)),
      _s("zoo-resnet-3x3", (8, 64, 56, 56), (64, 64, 3, 3), padding=p2(3)),
      _s("zoo-dense-15x15", (4, 16, 128, 128), (16, 16, 15, 15), padding=p2(15)),
      _s("zoo-stem-7x7s2", (8, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=p2(7)),
      _s("zoo-resnet50-3x3s2", (8, 128, 56, 56), (128, 128, 3, 3), stride=2, padding=p2(3)),
      _s("zoo-mbv2-dw3x3", (8, 144, 56, 56), (144, 1, 3, 3), padding=p2(3), groups=144),
      _s("zoo-mbv2-dw3x3s2", (8, 144, 56, 56), (144, 1, 3, 3), stride=2, padding=p2(3),
         groups=144),
      Shape("zoo-unet-up2x2", (4, 128, 64, 64), (128, 64, 2, 2), (("stride", 2),), True),
      _s("zoo-wavenet", (4, 64, 4096), (64, 64, 2), padding=((64, 0),), dilation=64),
      _s("zoo-volume", (1, 8, 64, 64, 64), (8, 8, 3, 3, 3), padding=((1, 1),) * 3),
      _s("zoo-lenet", (64, 1, 32, 32), (6, 1, 5, 5)),
      _s("zoo-dense2d-k7", (2, 16, 64, 64), (16, 16, 7, 7), padding=p2(7)),
      _s("zoo-dw2d-k15", (2, 64, 64, 64), (64, 1, 15, 15), padding=p2(15), groups=64),
      _s("zoo-1d-k64", (1, 64, 4096), (64, 1, 64), padding=((63, 0),), groups=64),
      _s("zoo-1d-k1024", (1, 64, 4096), (64, 1, 1024), padding=((1023, 0),), groups=64),
  )


QUICK: tuple[Shape, ...] = _quick()
FULL: tuple[Shape, ...] = QUICK + _zoo()


# --- measuring -----------------------------------------------------------------

def _progress(done: int, total: int, label: str) -> None:
  width = 30
  fill = width * done // max(total, 1)
  sys.stderr.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {done}/{total} {label:40.40s}")
  sys.stderr.flush()
  if done == total:
    sys.stderr.write("\n")


def _inputs(g: Geometry):
  rng = np.random.default_rng(0)
  draw = lambda s: np.asarray(rng.standard_normal(s), np.float32)  # noqa: E731
  return draw(g.in_shape), draw(g.kernel_shape), draw(g.out_shape)


def _timed(call) -> float:
  t = time.perf_counter()
  jax.block_until_ready(call())
  return time.perf_counter() - t


def _round_robin(calls: dict, warm: dict, budget_s: float) -> dict[str, list[float]]:
  """Timed runs of every call, interleaved: `{label: [seconds]}`. A call whose
  warm-up was `CUTOFF` x slower than the fastest (and over `SLOW_S`) keeps its
  warm-up time only."""
  fastest = min(warm.values())
  slow = {m for m, t in warm.items() if t > SLOW_S and t > CUTOFF * fastest}
  samples = {m: [warm[m]] if m in slow else [] for m in calls}
  spent, rounds = 0.0, 0
  while rounds < ROUNDS[1] and (rounds < ROUNDS[0] or spent < budget_s * len(calls)):
    for m in calls:
      if m not in slow:
        t = _timed(calls[m])
        samples[m].append(t)
        spent += t
    rounds += 1
  return samples


def _compiled(program, x, w, ct) -> tuple:
  """`(call, compile seconds, warm-up seconds)` of a jitted `program`."""
  t0 = time.perf_counter()
  compiled = jax.jit(program).lower(x, w, ct).compile()
  compile_s = time.perf_counter() - t0
  call = lambda: compiled(x, w, ct)  # noqa: E731
  return call, compile_s, _timed(call)


def _sample(case: str, label: str, stage: str, ts: list[float], compile_s: float) -> dict:
  return {"case": case, "method": label, "pass": stage, "seconds": min(ts),
          "median": statistics.median(ts), "repeats": len(ts),
          "compile_s": round(compile_s, 3)}


def measure_shape(shape: Shape, methods: Sequence[str], budget_s: float) -> list[dict]:
  """Seconds of every pass of every method on `shape`, timed round-robin.

  Returns one sample `{case, method, pass, seconds, median, repeats,
  compile_s}` per method and pass; methods that decline `shape` for
  'calibrate', or whose temporaries exceed the memory budget, are skipped.
  """
  g = shape.geometry()
  x, w, ct = _inputs(g)
  budget = _budget.memory_budget()
  out = []
  for p in PASSES:
    calls, compile_s, warm = {}, {}, {}
    for m in methods:
      mod = METHODS[m]
      if mod.supports(g, "calibrate") is not None or _budget.over(mod.temp_bytes(g), budget):
        continue
      calls[m], compile_s[m], warm[m] = _compiled(pass_program(mod.conv, g, p), x, w, ct)
    if not calls:
      continue
    for m, ts in _round_robin(calls, warm, budget_s).items():
      out.append(_sample(shape.name, m, p, ts, compile_s[m]))
  return out


def measure_training(shape: Shape, pass_samples: Sequence[dict], budget_s: float
                     ) -> list[dict]:
  """Seconds of the fused training steps on `shape` that could win one
  (`jaxconv._autotune.training_contenders`: the methods whose passes sum
  close to the least sum, and the per-pass mix of the fastest passes, run as
  `auto` runs a mix), each timed as one program (`training_program`).

  Args:
    shape: a calibration shape.
    pass_samples: `measure_shape`'s samples of `shape` (the methods and their
      pass times).
    budget_s: seconds of timed runs per program, as `measure_shape`.

  Returns:
    One sample per step, as `measure_shape`'s, with `pass` 'train', a mix's
    `method` its three names joined by `MIX_SEP`, and `passes_s`, the sum of
    the separately timed passes it runs (what it would take without sharing
    work between them).
  """
  secs: dict[str, dict[str, float]] = {}
  for s in pass_samples:
    if s["case"] == shape.name and s["pass"] in PASSES:
      secs.setdefault(s["method"], {})[s["pass"]] = s["seconds"]
  steps = training_contenders(secs)
  g = shape.geometry()
  x, w, ct = _inputs(g)
  calls, compile_s, warm = {}, {}, {}
  for label, methods in steps.items():
    calls[label], compile_s[label], warm[label] = _compiled(step_program(methods, g), x, w, ct)
  if not calls:
    return []
  return [dict(_sample(shape.name, label, TRAIN, ts, compile_s[label]),
               passes_s=sum(secs[m][p] for m, p in zip(steps[label], PASSES)))
          for label, ts in _round_robin(calls, warm, budget_s).items()]


def measure(shapes: Sequence[Shape], methods: Sequence[str], budget_s: float = 0.05,
            progress=_progress) -> list[dict]:
  """`measure_shape` and `measure_training` for every shape, with a progress
  bar on stderr, in the malloc state of a long-running process
  (`_malloc.settle`)."""
  _malloc.settle()
  out = []
  for i, shape in enumerate(shapes):
    progress(i, len(shapes), shape.name)
    passes = measure_shape(shape, methods, budget_s)
    out += passes + measure_training(shape, passes, budget_s)
  progress(len(shapes), len(shapes), "done")
  return out


def llc_bytes() -> int:
  """This CPU's last-level cache (bytes) from sysfs, else the default."""
  base = Path("/sys/devices/system/cpu/cpu0/cache")
  sizes = []
  for d in sorted(base.glob("index*")):
    try:
      text = (d / "size").read_text().strip()
    except OSError:
      continue
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    sizes.append(int(text.rstrip("KMG")) * mult)
  return max(sizes) if sizes else _profiles.DEFAULT_CACHE_BYTES


# --- fitting -------------------------------------------------------------------

def nnls(a: np.ndarray, b: np.ndarray, iters: int = 200) -> np.ndarray:
  """Non-negative least squares `argmin_{x >= 0} |a x - b|` (Lawson-Hanson).

  Example:
    >>> import numpy as np
    >>> from jaxconv.calibrate import nnls
    >>> a = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> np.round(nnls(a, np.array([2.0, -1.0, 1.0])), 6).tolist()
    [1.5, 0.0]
  """
  n = a.shape[1]
  x, passive = np.zeros(n), np.zeros(n, bool)
  for _ in range(iters):
    grad = a.T @ (b - a @ x)
    if passive.all() or grad[~passive].max(initial=-np.inf) <= 1e-12 * max(1.0, abs(grad).max()):
      break
    passive[np.argmax(np.where(passive, -np.inf, grad))] = True
    while True:
      z = np.zeros(n)
      z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
      if (z[passive] > 0).all():
        x = z
        break
      neg = passive & (z <= 0)
      alpha = np.min(x[neg] / (x[neg] - z[neg]))
      x = x + alpha * (z - x)
      passive &= x > 1e-15
  return x


def _features(samples: Sequence[dict], shapes: dict[str, Shape], cache_bytes: int):
  geoms = {name: s.geometry() for name, s in shapes.items()}
  return lambda smp: METHODS[smp["method"]].cost(geoms[smp["case"]], smp["pass"],
                                                 cache_bytes=cache_bytes)


def fit(samples: Sequence[dict], shapes: dict[str, Shape], cache_bytes: int
        ) -> tuple[dict, dict]:
  """NNLS per method and pass on the relative error.

  Returns:
    `(coefficients, quality)`: `{method: {pass: {feature: ns}}}` and
    `{method: {pass: {samples, median_abs_log_error, max_abs_log_error}}}`.
  """
  feats = _features(samples, shapes, cache_bytes)
  coefs: dict = {}
  quality: dict = {}
  for m in METHODS:
    for p in PASSES:
      rows = [s for s in samples if s["method"] == m and s["pass"] == p and s["case"] in shapes]
      if not rows:
        continue
      f = [feats(s) for s in rows]
      names = sorted({k for fi in f for k in fi})
      a = np.array([[fi.get(k, 0.0) for k in names] for fi in f], float)
      t = np.array([s["seconds"] * 1e9 for s in rows])
      scale = np.maximum(a.max(axis=0), 1e-30)          # condition the columns
      c = nnls(a / scale / t[:, None], np.ones(len(rows))) / scale
      coefs.setdefault(m, {})[p] = {k: float(f"{v:.4g}") for k, v in zip(names, c) if v > 0}
      err = np.abs(np.log(np.maximum(a @ c, 1e-9) / t))
      quality.setdefault(m, {})[p] = {
          "samples": len(rows), "median_abs_log_error": round(float(np.median(err)), 3),
          "max_abs_log_error": round(float(err.max()), 3),
          "worst_case": rows[int(err.argmax())]["case"]}
  return coefs, quality


DECISION_TEMPERATURE = 0.3
"""`fit_decisions`: softness of the pick, in log-time units. Chosen with
`DECISION_FIT_WEIGHT` and `DECISION_SWEEPS` on the 2026-12-06 Intel Xeon
samples (`bench/results/2026-12-06-xeon/calibration_samples.json`: 48 cases,
every fourth held out; T in 0.2-0.5, weight in 0.01-0.1, 12-60 sweeps):
23/36 held-out passes within 1.1x of the fastest (geo-mean slow-down 1.15x)
against 20/36 (1.22x) for the earlier setting (T 0.5, weight 0.1, 12 sweeps,
chosen on the AMD EPYC samples, which were not kept), and fitted on all
cases 126/144 passes (44/48 of the model-zoo cases) against 111/144 (38/48).
The other settings were 1-5 held-out passes behind."""
DECISION_FIT_WEIGHT = 0.03
"""`fit_decisions`: weight of the plain time fit (keeps the printed estimates honest)."""
DECISION_SWEEPS = 30
"""`fit_decisions`: at most this many coordinate-descent sweeps (it stops
earlier once its step is small)."""
CALL_BOUNDS = (0.5, 1.0)
"""`fit_decisions` keeps each method's per-call constant ('call' feature)
within these fractions of its fastest measured call of the pass."""
PRUNE_SHARE = 1e-3
"""A coefficient whose term is below this share of every sample's time is dropped."""


def fit_decisions(samples: Sequence[dict], shapes: dict[str, Shape], cache_bytes: int,
                  start: dict, sweeps: int = DECISION_SWEEPS) -> dict:
  """Refine `start` (the NNLS fit) for the picks `auto` makes, per pass.

  NNLS minimises each method's relative time error on its own, but `auto`
  needs the *order* of the methods of a case right, mostly among the
  near-fastest: a 1.5x error on a method 10x off the best costs nothing, on
  one 1.2x off it costs a wrong pick. So, per pass, the coefficients (as
  logs, hence positive) minimise over the cases

    sum_case  sum_m softmin_m(log est / T) * log(t_m / t_best)
              + DECISION_FIT_WEIGHT * mean_m (log est_m - log t_m)^2,

  the expected slow-down of a softened pick plus a pull towards honest
  times, by coordinate descent on multiplicative steps (numpy only). Then
  terms below `PRUNE_SHARE` of every sample's time are dropped.

  Returns:
    `{method: {pass: {feature: ns}}}`.
  """
  feats = _features(samples, shapes, cache_bytes)
  out: dict = {m: {} for m in start}
  for p in PASSES:
    rows: dict = {}
    for s in samples:
      if s["pass"] == p and s["case"] in shapes and s["method"] in start:
        rows.setdefault(s["case"], {})[s["method"]] = s
    methods = [m for m in start if p in start[m]]
    names = {m: sorted({k for by in rows.values() if m in by for k in feats(by[m])})
             for m in methods}
    slots = [(m, k) for m in methods for k in names[m]]
    cases = [c for c, by in rows.items() if len(by) > 1]
    # Per case: the methods present, their feature rows and log times.
    data = []
    for c in cases:
      ms = [m for m in methods if m in rows[c]]
      idx = [[slots.index((m, k)) for k in names[m]] for m in ms]
      f = [np.array([feats(rows[c][m]).get(k, 0.0) for k in names[m]]) for m in ms]
      lt = np.log([rows[c][m]["seconds"] * 1e9 for m in ms])
      data.append((idx, f, lt, lt - lt.min()))
    top = {m: max(list(start[m][p].values()) + [1e-30]) for m in methods}
    theta = np.log([max(start[m][p].get(k, 0.0), 1e-6 * top[m]) for m, k in slots])
    # The per-call constant lies within CALL_BOUNDS of the method's fastest
    # measured call: free, the descent trades it against the size terms and
    # mis-ranks tiny convolutions (e.g. lax at 190 us against 36 measured).
    fastest = {m: min(by[m]["seconds"] * 1e9 for by in rows.values() if m in by)
               for m in methods}
    lo = np.array([np.log(CALL_BOUNDS[0] * fastest[m]) if k == "call" else -np.inf
                   for m, k in slots])
    hi = np.array([np.log(CALL_BOUNDS[1] * fastest[m]) if k == "call" else np.inf
                   for m, k in slots])
    theta = np.clip(theta, lo, hi)

    def loss(th):
      c, total = np.exp(th), 0.0
      for idx, f, lt, slow in data:
        le = np.log([max(fi @ c[ii], 1e-30) for ii, fi in zip(idx, f)])
        w = np.exp(-(le - le.min()) / DECISION_TEMPERATURE)
        total += float(w @ slow) / float(w.sum())
        total += DECISION_FIT_WEIGHT * float(np.mean((le - lt) ** 2))
      return total

    best = loss(theta)
    step = 1.0
    for _ in range(sweeps):
      improved = False
      for i in range(len(theta)):
        for d in (-step, step, -3 * step, 3 * step):
          trial = theta.copy()
          trial[i] = np.clip(trial[i] + d, lo[i], hi[i])
          val = loss(trial)
          if val < best - 1e-9:
            theta, best, improved = trial, val, True
            break
      if not improved:
        step /= 2
        if step < 0.05:
          break
    coefs = np.exp(theta)
    for m in methods:
      keep = {}
      for k in names[m]:
        v = coefs[slots.index((m, k))]
        share = max((v * feats(by[m]).get(k, 0.0) / (by[m]["seconds"] * 1e9)
                     for by in rows.values() if m in by), default=0.0)
        if share >= PRUNE_SHARE:
          keep[k] = float(f"{v:.4g}")
      out[m][p] = keep
  return out


def fit_quality(samples, shapes, coefs: dict, cache_bytes: int) -> dict:
  """`{method: {pass: {samples, median_abs_log_error, max_abs_log_error, worst_case}}}`."""
  feats = _features(samples, shapes, cache_bytes)
  out: dict = {}
  for m, per in coefs.items():
    for p, c in per.items():
      rows = [s for s in samples if s["method"] == m and s["pass"] == p and s["case"] in shapes]
      if not rows:
        continue
      err = [abs(math.log(max(_select._seconds(c, feats(s)), 1e-12) / s["seconds"])) for s in rows]
      out.setdefault(m, {})[p] = {
          "samples": len(rows), "median_abs_log_error": round(statistics.median(err), 3),
          "max_abs_log_error": round(max(err), 3),
          "worst_case": rows[int(np.argmax(err))]["case"]}
  return out


def rank_quality(samples: Sequence[dict], shapes: dict[str, Shape], coefs: dict,
                 cache_bytes: int, margin: float = _select.LAX_MARGIN) -> dict:
  """How well `coefs` picks per pass on `shapes`: `{within_1.1x, passes, geomean_slowdown}`.

  The pick is `auto`'s rule: the cheapest estimate among the measured
  methods, lax unless another is estimated `margin` x lax or less.
  """
  feats = _features(samples, shapes, cache_bytes)
  times: dict = {}
  for s in samples:
    if s["case"] in shapes and s["pass"] in PASSES:
      times.setdefault((s["case"], s["pass"]), {})[s["method"]] = s
  near, slow = 0, []
  for (_, p), by_m in times.items():
    est = {m: _select._seconds(coefs.get(m, {}).get(p, {}), feats(s)) for m, s in by_m.items()
           if m in coefs}
    if not est:
      continue
    pick = min(est, key=est.__getitem__)
    if "lax" in est and pick != "lax" and est[pick] > margin * est["lax"]:
      pick = "lax"
    best = min(s["seconds"] for s in by_m.values())
    ratio = by_m[pick]["seconds"] / best
    near += ratio <= 1.1
    slow.append(math.log(ratio))
  n = len(slow)
  return {"passes": n, "within_1.1x": near,
          "geomean_slowdown": round(math.exp(statistics.mean(slow)), 3) if n else None}


MIN_TRAINING_SAMPLES = 3
"""`fit_training` reports a share only from at least this many training steps."""


MIX_BIG_CANDIDATES = (1, 2, 4)
"""`fit_training` tries these multiples of glibc's mmap ceiling
(`jaxconv._malloc.CEILING_BYTES`) as the temporaries above which a mix gets a
share of its own."""


def _mix_bytes(sample: dict, shapes: dict[str, Shape]) -> int:
  g = method_geometry(shapes[sample["case"]].geometry())
  return _select.mix_temp_bytes(g, tuple(sample["method"].split(MIX_SEP)))


def _split_mixes(mixes: list[tuple[int, float]]) -> dict:
  """The threshold among `MIX_BIG_CANDIDATES` that splits `(bytes, share)`
  mixes into two groups best described by their medians (least total
  absolute log deviation), if it beats one median: `{mix_share_big,
  mix_big_bytes}`, else `{}`."""
  def deviation(group):
    logs = [math.log(r) for _, r in group]
    mid = statistics.median(logs)
    return sum(abs(v - mid) for v in logs)
  if len(mixes) < 2 * MIN_TRAINING_SAMPLES:
    return {}
  best, out = deviation(mixes), {}
  for k in MIX_BIG_CANDIDATES:
    limit = k * _malloc.CEILING_BYTES
    big = [m for m in mixes if m[0] > limit]
    small = [m for m in mixes if m[0] <= limit]
    if min(len(big), len(small)) < MIN_TRAINING_SAMPLES:
      continue
    dev = deviation(big) + deviation(small)
    if dev < best:
      best = dev
      out = {"mix_share": round(statistics.median(r for _, r in small), 3),
             "mix_share_big": round(statistics.median(r for _, r in big), 3),
             "mix_big_bytes": limit}
  return out


def fit_training(samples: Sequence[dict], shapes: dict[str, Shape] | None = None) -> dict:
  """How much of the sum of its separately timed passes a fused training step
  takes, per method and for mixes: `auto`'s training rule
  (`jaxconv._select.MIX_MARGIN`) scales its estimates by these shares.

  Args:
    samples: calibration samples; the training steps among them count.
    shapes: the calibration shapes by name; given, the mixes may be split by
      their temporaries (`jaxconv._select.mix_temp_bytes`) at one of
      `MIX_BIG_CANDIDATES`, where two medians describe them better than one.

  Returns:
    `{"share": {method: median of step / sum of passes}, "mix_share": the same
    over mixes, "steps": number of training steps}`, with `mix_share_big`
    and `mix_big_bytes` where the mixes split (`mix_share` then the median of
    the mixes at or below `mix_big_bytes`); a method (or the mixes, or
    either group of them) with fewer than `MIN_TRAINING_SAMPLES` steps is
    left out.

  Example:
    >>> steps = [{"pass": "train", "method": m, "seconds": t, "passes_s": 1.0}
    ...          for m, t in [("fft", 0.5), ("fft", 0.6), ("fft", 0.4),
    ...                       ("lax", 0.7), ("lax / fft / fft", 0.8)]]
    >>> fit_training(steps)
    {'share': {'fft': 0.5}, 'steps': 5}
  """
  ratios: dict[str, list[float]] = {}
  mixes: list[tuple[int, float]] = []
  for s in samples:
    if s["pass"] == TRAIN and s.get("passes_s"):
      key = "mix" if MIX_SEP in s["method"] else s["method"]
      ratios.setdefault(key, []).append(s["seconds"] / s["passes_s"])
      if key == "mix" and shapes is not None and s["case"] in shapes:
        mixes.append((_mix_bytes(s, shapes), ratios[key][-1]))
  share = {k: round(statistics.median(r), 3) for k, r in ratios.items()
           if len(r) >= MIN_TRAINING_SAMPLES}
  out: dict[str, Any] = {"share": {k: v for k, v in share.items() if k != "mix"}}
  if "mix" in share:
    out["mix_share"] = share["mix"]
    out |= _split_mixes(mixes)
  out["steps"] = sum(map(len, ratios.values()))
  return out


def training_quality(samples: Sequence[dict], shapes: dict[str, Shape], coefs: dict,
                     cache_bytes: int, training: dict, margin: float = _select.LAX_MARGIN,
                     times: dict | None = None) -> dict:
  """How well `coefs`, `times` (time coefficients, `_select.step_estimates`)
  and `training` (shares) pick a differentiated call's methods on `shapes`
  (`auto`'s rules 3 and 4) against the measured training steps: `{cases,
  within_1.1x, geomean_slowdown}`.

  A plan whose step was not timed (a mix other than the fastest passes', or
  a method off `training_contenders`) is charged the sum of its measured
  passes times its share.
  """
  feats = _features(samples, shapes, cache_bytes)
  passes: dict = {}
  steps: dict = {}
  for s in samples:
    if s["case"] not in shapes:
      continue
    if s["pass"] in PASSES and s["method"] in coefs:
      passes.setdefault(s["case"], {}).setdefault(s["method"], {})[s["pass"]] = s
    elif s["pass"] == TRAIN:
      steps.setdefault(s["case"], {})[s["method"]] = s["seconds"]
  prof = _profiles.Profile({}, cache_bytes, "", "", True, training, times or {})
  near, slow = 0, []
  for case, by_m in passes.items():
    if case not in steps:
      continue
    ests = {p: {m: _select._seconds(coefs[m].get(p, {}), feats(t[p]))
                for m, t in by_m.items() if p in t} for p in PASSES}
    f, dx, dw = (_select._pick(ests[p], p, "", margin, "")[0] for p in PASSES)
    picks = (f, dx, dw)
    g = method_geometry(shapes[case].geometry())
    share, mix_share = _select.training_shares(prof, _select.mix_temp_bytes(g, picks))
    one = _select._training_method(_select.step_estimates(ests, g, prof), picks, margin,
                                   share, mix_share)
    plan = (one[0],) * 3 if one else picks
    label = plan[0] if len(set(plan)) == 1 else MIX_SEP.join(plan)
    seconds = steps[case].get(label)
    if seconds is None:
      factor = share.get(plan[0], 1.0) if len(set(plan)) == 1 else mix_share
      seconds = factor * sum(by_m[m][p]["seconds"] for m, p in zip(plan, PASSES))
    ratio = seconds / min(steps[case].values())
    near += ratio <= 1.1
    slow.append(math.log(max(ratio, 1.0)))
  n = len(slow)
  return {"cases": n, "within_1.1x": near,
          "geomean_slowdown": round(math.exp(statistics.mean(slow)), 3) if n else None}


def best_fit(samples, shapes, llc: int) -> tuple[int, dict, dict]:
  """`fit` with the `_big` threshold that fits best: `llc`, 1/2, 1/4 of it
  (the cache is shared with other processes). Returns `(cache_bytes, coefs, quality)`."""
  fits = []
  for div in (1, 2, 4):
    cache = llc // div
    coefs, quality = fit(samples, shapes, cache)
    score = sum(q["median_abs_log_error"] for per in quality.values() for q in per.values())
    fits.append((score, cache, coefs, quality))
  _, cache, coefs, quality = min(fits, key=lambda f: f[0])
  return cache, coefs, quality


# --- writing -------------------------------------------------------------------

def write_profile(path: Path, key: str, entry: dict) -> None:
  """Add `entry` under `key` to the profile file `path` (temp file + rename),
  keeping the other devices' profiles."""
  path.parent.mkdir(parents=True, exist_ok=True)
  try:
    model = json.loads(path.read_text())
    if model.get("version") != _profiles.VERSION or not isinstance(model.get("profiles"), dict):
      raise ValueError
  except (OSError, ValueError):
    model = {"version": _profiles.VERSION, "profiles": {}}
  model["units"] = ("estimate of a pass = sum(coefficient * feature) nanoseconds, features "
                    "from each method's cost(g, pass_); fitted by python -m jaxconv.calibrate")
  model["profiles"][key] = entry
  tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
  tmp.write_text(json.dumps(model, indent=1) + "\n")
  os.replace(tmp, path)


def _no_better(before: dict, after: dict, steps_before: dict, steps_after: dict) -> bool:
  """Whether a fresh fit (`after`, `steps_after`) ranks the held-out passes and
  training steps no better than the profile in use: fewer of either within
  1.1x of the fastest, or neither more. On a 2-core AMD EPYC (2026-12-07,
  noisier timings than the Xeon's) the fresh fit ranked passes better but
  training steps no better than the Xeon's shipped profile.

  Example:
    >>> q = lambda n: {"within_1.1x": n}
    >>> _no_better(q(20), q(25), q(5), q(5)), _no_better(q(20), q(25), q(6), q(5))
    (False, True)
  """
  passes = after["within_1.1x"] - before["within_1.1x"]
  steps = steps_after.get("within_1.1x", 0) - steps_before.get("within_1.1x", 0)
  return passes < 0 or steps < 0 or (passes == 0 and steps == 0)


def _describe_steps(q: dict) -> str:
  return (f"{q['within_1.1x']}/{q['cases']} within 1.1x of the fastest, "
          f"geo-mean slow-down {q['geomean_slowdown']}x")


def _describe(q: dict) -> str:
  return (f"{q['within_1.1x']}/{q['passes']} passes within 1.1x of the fastest, "
          f"geo-mean slow-down {q['geomean_slowdown']}x")


def main(argv: Sequence[str] | None = None) -> int:
  """The command line; see the module docstring."""
  argv = list(sys.argv[1:] if argv is None else argv)
  p = argparse.ArgumentParser(prog="python -m jaxconv.calibrate",
                              description=__doc__.split("\n")[0])
  p.add_argument("--full", action="store_true", help="add model-zoo layers at full size")
  p.add_argument("--cases", nargs="+", metavar="GLOB", help="only these calibration cases")
  p.add_argument("--budget", type=float, default=0.05,
                 help="seconds of timed runs per method and pass (default 0.05)")
  p.add_argument("--out", type=Path, default=None,
                 help="profile file (default $JAXCONV_CACHE_DIR or ~/.cache/jaxconv)")
  p.add_argument("--samples", type=Path, help="also write the raw samples here (JSON)")
  p.add_argument("--from-samples", type=Path, help="fit from saved samples, time nothing")
  p.add_argument("--list", action="store_true", help="list the calibration cases")
  args = p.parse_args(argv)
  shapes = FULL if args.full else QUICK
  if args.cases:
    shapes = tuple(s for s in FULL if any(fnmatch.fnmatchcase(s.name, g) for g in args.cases))
    if not shapes:
      p.error(f"--cases {args.cases} matches no calibration case (see --list)")
  if args.list:
    for s in shapes:
      print(f"{s.name:22s} x{s.x_shape} w{s.w_shape} {dict(s.kwargs)}"
            f"{' transposed' if s.transposed else ''}")
    return 0
  key = _profiles.device_key()
  print(f"calibrating {len(shapes)} cases x {len(METHODS)} methods x {len(PASSES)} passes "
        f"on {key}")
  t0 = time.perf_counter()
  if args.from_samples:
    samples = json.loads(args.from_samples.read_text())
  else:
    samples = measure(shapes, list(METHODS), args.budget)
  if args.samples:
    args.samples.write_text(json.dumps(samples, indent=1) + "\n")
  by_name = {s.name: s for s in shapes}
  held = {n: s for i, (n, s) in enumerate(by_name.items()) if i % HOLD_OUT_EVERY == 1}
  train = {n: s for n, s in by_name.items() if n not in held}
  llc = llc_bytes()
  with warnings.catch_warnings():   # "run the calibration": we are running it
    warnings.simplefilter("ignore")
    old = _profiles.profile()
  # The profile in use is judged by the margin `auto` applies to it: another
  # device's (or the generic) one leaves lax only for a larger predicted gain.
  old_margin = _select.LAX_MARGIN if old.exact else _select.FALLBACK_MARGIN
  before = rank_quality(samples, held, old.coefficients, old.cache_bytes, old_margin)
  cache, times, _ = best_fit(samples, train, llc)
  coefs = fit_decisions(samples, train, cache, times)
  after = rank_quality(samples, held, coefs, cache)
  print(f"held-out cases ({len(held)}): before ({old.describe()}): {_describe(before)}")
  print(f"held-out cases ({len(held)}): after (this calibration):  {_describe(after)}")
  training = fit_training([x for x in samples if x["case"] in train], train)
  steps_before = training_quality(samples, held, old.coefficients, old.cache_bytes,
                                  old.training, old_margin, times=old.time_coefficients)
  steps_after = training_quality(samples, held, coefs, cache, training, times=times)
  if steps_after["cases"]:
    print(f"held-out training steps: before {_describe_steps(steps_before)}; "
          f"after {_describe_steps(steps_after)}")
  if _no_better(before, after, steps_before, steps_after):
    print(f"note: this calibration ranks the held-out cases no better than the profile in "
          f"use ({old.describe()}); timings on a busy machine are noisy (a larger --budget "
          f"or an idle machine helps). It is written all the same; delete the entry for "
          f"{key} from the profile file to go back.")
  cache, times, _ = best_fit(samples, by_name, llc)
  coefs = fit_decisions(samples, by_name, cache, times)
  quality = fit_quality(samples, by_name, coefs, cache)
  training = fit_training(samples, by_name)
  if training["steps"]:
    shares = ", ".join(f"{m} {v}" for m, v in training["share"].items())
    print(f"training step / sum of its passes (median over {training['steps']} steps): "
          f"{shares}; mixes {training.get('mix_share', '-')}"
          + (f", mixes over {training['mix_big_bytes'] >> 20} MiB of temporaries "
             f"{training['mix_share_big']}" if "mix_share_big" in training else ""))
  entry = {
      "coefficients": coefs, "time_coefficients": times, "cache_bytes": cache, "training": training, "device": key,
      "jax": jax.__version__,
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "command": "python -m jaxconv.calibrate " + shlex.join(argv),
      "statistic": "min over runs of each jit-compiled pass, warm-up excluded, malloc settled",
      "held_out": {"cases": sorted(held), "before": before, "after": after},
      "fit": quality, "samples": len(samples)}
  out = args.out or _profiles.user_file()
  write_profile(out, key, entry)
  _profiles.clear_caches()
  _select._select.cache_clear()
  print(f"wrote the profile for {key} to {out} ({time.perf_counter() - t0:.0f} s)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
