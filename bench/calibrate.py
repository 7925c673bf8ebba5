"""`python -m bench.calibrate`: measure the constants of `method="auto"`'s cost model.

Usage:
  python -m bench.calibrate [--cases GLOB ...] [--methods NAME ...] [--budget S]
  python -m bench.calibrate --fit-only

Times forward+backward (`jax.grad` of `sum(conv(x, w) * ct)` in `x` and `w`,
jit-compiled, one warm-up call excluded, `block_until_ready`) of every
registered method on `CASES`: smaller-batch versions of the bench's model-zoo
cases and kernel-size sweeps. Each sample is the *minimum* over a few runs
(up to `--budget` seconds per method and case; the median is stored too): on
a CPU shared with other jobs the minimum is the statistic that does not jump
with the neighbours' load. Then, per method, the coefficients of
`jaxconv._select.features` are fitted by non-negative least squares on the
relative error, then refined for the picks `auto` makes (`fit_decisions`:
the expected slow-down of a softened choice, plus a pull to honest times;
`--nnls-only` skips it), and everything (coefficients, samples, fit quality, device,
versions, date, command) is written to `jaxconv/_data/cost_model.json` under
the current JAX backend. Samples of other cases already in the file are kept,
so a few noisy cases can be re-measured alone (`--cases cal-dw-*`);
`--fit-only` refits from the stored samples (after changing `features`).
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import json
import math
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from . import cases as bench_cases
from . import problem
from .cases import Case
from .report import _device_name

ROOT = Path(__file__).resolve().parent.parent
MODEL_FILE = ROOT / "jaxconv" / "_data" / "cost_model.json"

# A method whose warm-up call is this much slower than the best method so far
# (and over SLOW_S) is timed once only: enough to show it loses.
CUTOFF = 20.0
SLOW_S = 0.5
# `fit_decisions`: softness of the pick (in log-time units) and the weight of
# the plain time-fit term; chosen by five-fold cross-validation.
DECISION_TEMPERATURE = 0.3
DECISION_FIT_WEIGHT = 0.1


def _pads(p: int, rank: int):
  return ((p, p),) * rank


def _cases() -> tuple[Case, ...]:
  out = [
      Case("cal-resnet-3x3", "ResNet-50 3x3", (2, 64, 56, 56), (64, 64, 3, 3),
           {"padding": _pads(1, 2)}),
      Case("cal-resnet-1x1", "ResNet-50 1x1", (2, 256, 56, 56), (64, 256, 1, 1)),
      Case("cal-resnet-3x3s2", "ResNet-50 strided 3x3", (2, 128, 56, 56),
           (128, 128, 3, 3), {"stride": 2, "padding": _pads(1, 2)}),
      Case("cal-stem-7x7s2", "ResNet-50 stem", (2, 3, 224, 224), (64, 3, 7, 7),
           {"stride": 2, "padding": _pads(3, 2)}),
      Case("cal-wavenet", "WaveNet dilated", (2, 64, 4096), (64, 64, 2),
           {"padding": ((64, 0),), "dilation": 64}),
      Case("cal-volume", "3-D 3x3x3", (1, 8, 32, 32, 32), (8, 8, 3, 3, 3),
           {"padding": _pads(1, 3)}),
      Case("cal-lenet", "LeNet 5x5", (64, 1, 32, 32), (6, 1, 5, 5)),
      Case("cal-unet-up", "U-Net 2x2/2 transposed", (2, 128, 64, 64), (128, 64, 2, 2),
           {"stride": 2}, transposed=True),
      Case("cal-grouped-3x3", "ResNeXt grouped 3x3", (2, 128, 28, 28), (128, 16, 3, 3),
           {"padding": _pads(1, 2), "groups": 8}),
      Case("cal-dense-1d-k9", "dense 1-D", (4, 64, 1024), (64, 64, 9),
           {"padding": _pads(4, 1)}),
      Case("cal-mbv2-dw3x3s2", "MobileNetV2 depthwise s2", (2, 144, 56, 56),
           (144, 1, 3, 3), {"stride": 2, "padding": _pads(1, 2), "groups": 144}),
      Case("cal-convnext-dw7", "ConvNeXt depthwise 7x7", (4, 96, 56, 56), (96, 1, 7, 7),
           {"padding": _pads(3, 2), "groups": 96}),
      Case("cal-dense64-k5", "dense 5x5, 64 channels", (2, 64, 32, 32), (64, 64, 5, 5),
           {"padding": _pads(2, 2)}),
      Case("cal-dense64-k7", "dense 7x7, 64 channels", (2, 64, 32, 32), (64, 64, 7, 7),
           {"padding": _pads(3, 2)}),
      Case("cal-small-cin", "3 input channels 3x3", (8, 3, 64, 64), (16, 3, 3, 3),
           {"padding": _pads(1, 2)}),
      Case("cal-volume-dw", "3-D depthwise 3x3x3", (1, 32, 32, 32, 32), (32, 1, 3, 3, 3),
           {"padding": _pads(1, 3), "groups": 32}),
      Case("cal-short-causal", "Mamba-style short causal depthwise 1-D", (4, 256, 1024),
           (256, 1, 4), {"padding": ((3, 0),), "groups": 256}),
      Case("cal-dense-1d-k33", "dense 1-D, 33 taps", (4, 64, 1024), (64, 64, 33),
           {"padding": _pads(16, 1)}),
      # Tiny problems pin the fixed per-call costs.
      Case("cal-tiny-3x3", "tiny dense 3x3", (2, 3, 8, 8), (4, 3, 3, 3),
           {"padding": _pads(1, 2)}),
      Case("cal-tiny-dw-1d", "tiny depthwise 1-D", (1, 3, 40), (3, 1, 9),
           {"padding": ((8, 0),), "groups": 3}),
      Case("cal-small-3x3", "small dense 3x3", (2, 16, 16, 16), (16, 16, 3, 3),
           {"padding": _pads(1, 2)}),
      Case("cal-small-dw-5x5", "small depthwise 5x5", (2, 32, 16, 16), (32, 1, 5, 5),
           {"padding": _pads(2, 2), "groups": 32}),
  ]
  for k in (3, 5, 7, 15, 31):
    out.append(Case(f"cal-dense-k{k}", "dense 2-D sweep", (1, 16, 64, 64), (16, 16, k, k),
                    {"padding": _pads(k // 2, 2)}))
  for k in (3, 5, 7, 15, 31):
    n = 2 if k <= 7 else 1
    out.append(Case(f"cal-dw-k{k}", "depthwise 2-D sweep", (n, 64, 64, 64), (64, 1, k, k),
                    {"padding": _pads(k // 2, 2), "groups": 64}))
  for k in (16, 64, 256, 2048):
    out.append(Case(f"cal-causal-k{k}", "causal depthwise 1-D sweep", (1, 64, 2048),
                    (64, 1, k), {"padding": ((k - 1, 0),), "groups": 64}))
  return tuple(out)


# The bench's own model-zoo cases and sweeps, at their sizes (the targets are
# measured on them, and working sets beyond the cache behave differently),
# except the 16k Hyena filter, where lax alone takes minutes.
_FROM_BENCH = tuple(c for c in bench_cases.FULL if c.name != "hyena-causal-1d")
CASES: tuple[Case, ...] = _cases() + _FROM_BENCH
BY_NAME = {c.name: c for c in CASES}


# --- measuring -----------------------------------------------------------------

def _run(call) -> float:
  t = time.perf_counter()
  call()
  return time.perf_counter() - t


def measure_case(case: Case, methods: Sequence[str], budget_s: float,
                 log=print) -> list[dict]:
  """Forward+backward seconds of every method on `case`, timed round-robin.

  All methods are compiled and warmed up first; then each round runs every
  method once, so a change in the machine's load hits all of them alike and
  their ratios stay meaningful. A method whose warm-up is `CUTOFF` x slower
  than the fastest warm-up (and over `SLOW_S`) is timed once only.
  """
  from jaxconv._methods import METHODS
  g = problem.method_geometry(case)
  x, w, ct = problem.inputs(case)
  calls, compile_s, warm = {}, {}, {}
  for m in methods:
    why = METHODS[m].supports(g, "calibrate")
    if why is not None:
      log(f"{case.name:22s} {m:9s} skipped: {why}")
      continue
    fb = problem.with_grad(problem.method_fn(case, m))
    t0 = time.perf_counter()
    compiled = jax.jit(fb).lower(x, w, ct).compile()
    compile_s[m] = time.perf_counter() - t0
    calls[m] = lambda c=compiled: jax.block_until_ready(c(x, w, ct))
    warm[m] = _run(calls[m])
  fastest = min(warm.values())
  slow = {m for m, t in warm.items() if t > SLOW_S and t > CUTOFF * fastest}
  samples = {m: [] for m in calls}
  spent, rounds = 0.0, 0
  while rounds < 15 and (rounds < 3 or spent < budget_s * len(calls)):
    for m in calls:
      if m in slow and samples[m]:
        continue
      t = _run(calls[m])
      samples[m].append(t)
      spent += t
    rounds += 1
    if spent > 30.0:
      break
  out = []
  for m, ts in samples.items():
    s = {"case": case.name, "method": m, "seconds": min(ts),
         "median": statistics.median(ts), "repeats": len(ts),
         "compile_s": round(compile_s[m], 3)}
    out.append(s)
    log(f"{case.name:22s} {m:9s} {s['seconds'] * 1e3:10.2f} ms  (median "
        f"{s['median'] * 1e3:.2f}, {s['repeats']} runs, compile {s['compile_s']:.1f} s)")
  return out


def measure(cases: Sequence[Case], methods: Sequence[str], budget_s: float,
            log=print) -> list[dict]:
  """`measure_case` for every case."""
  out = []
  for case in cases:
    out += measure_case(case, methods, budget_s, log)
  return out


def llc_bytes() -> int | None:
  """This CPU's last-level cache (bytes) from sysfs, or None."""
  from jaxconv._select import DEFAULT_CACHE_BYTES
  base = Path("/sys/devices/system/cpu/cpu0/cache")
  sizes = []
  for d in sorted(base.glob("index*")):
    try:
      text = (d / "size").read_text().strip()
    except OSError:
      continue
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    sizes.append(int(text.rstrip("KMG")) * mult)
  return max(sizes) if sizes else DEFAULT_CACHE_BYTES


# --- fitting -------------------------------------------------------------------

def fit(samples: Sequence[dict], cache_bytes: int) -> tuple[dict, dict]:
  """NNLS per method on relative error: `(coefficients in ns, fit quality)`."""
  from scipy.optimize import nnls

  from jaxconv import _select
  geoms = {name: problem.method_geometry(c) for name, c in BY_NAME.items()}
  feats = {name: _select.features(g, cache_bytes) for name, g in geoms.items()}
  coefs, quality = {}, {}
  for m in sorted({s["method"] for s in samples}):
    rows = [s for s in samples if s["method"] == m and s["case"] in feats]
    names = sorted({f for s in rows for f in feats[s["case"]][m]})
    a = np.array([[feats[s["case"]][m].get(f, 0.0) for f in names] for s in rows])
    t = np.array([s["seconds"] * 1e9 for s in rows])
    scale = np.maximum(a.max(axis=0), 1e-30)          # condition the columns
    sol, _ = nnls(a / scale / t[:, None], np.ones(len(rows)))
    c = sol / scale
    coefs[m] = {f: float(f"{v:.4g}") for f, v in zip(names, c)}
    err = np.abs(np.log((a @ c) / t))
    quality[m] = {"samples": len(rows), "median_abs_log_error": round(float(np.median(err)), 3),
                  "max_abs_log_error": round(float(err.max()), 3),
                  "worst_case": rows[int(err.argmax())]["case"]}
  return coefs, quality


def best_fit(samples: Sequence[dict], llc: int) -> tuple[int, dict, dict]:
  """`fit` with the `_big` threshold that fits best: the last-level cache
  `llc`, or 1/2, 1/4, 1/8 of it (the cache is shared with other processes).

  Returns `(cache_bytes, coefficients, quality)`; the score is the sum over
  methods of the median absolute log error.
  """
  best = None
  for div in (1, 2, 4, 8):
    cache = llc // div
    coefs, quality = fit(samples, cache)
    score = sum(q["median_abs_log_error"] for q in quality.values())
    print(f"  cache_bytes {cache >> 20} MiB: summed median |log error| {score:.3f}")
    if best is None or score < best[0]:
      best = (score, cache, coefs, quality)
  return best[1:]


def _candidates(g, coefs: dict) -> list[str]:
  """The methods `_select.estimate` would rank for `g` (supported for 'auto',
  with coefficients)."""
  from jaxconv._methods import METHODS
  return [m for m, mod in METHODS.items() if m in coefs and mod.supports(g, "auto") is None]


def fit_decisions(samples: Sequence[dict], cache_bytes: int, start: dict,
                  temperature: float = DECISION_TEMPERATURE,
                  fit_weight: float = DECISION_FIT_WEIGHT) -> tuple[dict, dict]:
  """Refine `start` (the NNLS fit) for the choices `auto` makes, not the times.

  The NNLS fit minimises each method's relative time error on its own, but
  `auto` only needs the *order* of the methods of a case right, and mostly
  among the near-fastest ones: a 1.5x error on a method 10x off the best
  costs nothing, on one 1.2x off it costs a wrong pick. So the coefficients
  (as logs, hence positive) minimise, over the calibration cases,

    sum_case  sum_m softmin_m(log est / temperature) * log(t_m / t_best)
              + fit_weight * mean_m (log est_m - log t_m)^2,

  the expected slow-down of a softened pick plus a pull towards honest
  times (so the reasons `select_method` prints stay meaningful), by Powell's
  method from `start`. Five-fold cross-validation on the 63 cases of
  2026-12-02 (fit on four fifths, pick on the rest): 8 held-out cases more
  than 1.1x off the fastest and a summed log slow-down of 2.9, against 14
  and 7.6 for the NNLS fit alone; but 3 held-out cases more than 1.1x
  slower than lax, against none (temperature 0.1: 13, 5.9 and 2).

  Returns:
    `(coefficients, quality)` as `fit`.
  """
  from scipy.optimize import minimize

  from jaxconv import _select
  times: dict[str, dict[str, float]] = {}
  for smp in samples:
    times.setdefault(smp["case"], {})[smp["method"]] = smp["seconds"] * 1e9
  methods = sorted(start)
  names = {m: sorted(start[m]) for m in methods}
  feats, cases = {}, []
  for case, t in times.items():
    if case not in BY_NAME:
      continue
    g = problem.method_geometry(BY_NAME[case])
    ms = [m for m in _candidates(g, start) if m in t]
    if len(ms) > 1:
      f = _select.features(g, cache_bytes)
      feats[case] = {m: np.array([f[m].get(k, 0.0) for k in names[m]]) for m in ms}
      cases.append(case)
  slots = [(m, k) for m in methods for k in names[m]]
  top = {m: max(max(start[m].values()), 1e-30) for m in methods}
  theta0 = np.log([max(start[m][k], 1e-6 * top[m]) for m, k in slots])
  where = {m: [i for i, (mm, _) in enumerate(slots) if mm == m] for m in methods}

  def coefficients(theta):
    return {m: np.exp(theta[where[m]]) for m in methods}

  def loss(theta):
    c, total = coefficients(theta), 0.0
    for case in cases:
      ms = list(feats[case])
      le = np.log([max(feats[case][m] @ c[m], 1e-30) for m in ms])
      lt = np.log([times[case][m] for m in ms])
      p = np.exp(-(le - le.min()) / temperature)
      p /= p.sum()
      total += float(p @ (lt - lt.min())) + fit_weight * float(np.mean((le - lt) ** 2))
    return total

  res = minimize(loss, theta0, method="Powell",
                 options=dict(maxiter=4000, xtol=1e-2, ftol=1e-4))
  c = coefficients(res.x)
  coefs = {m: {k: float(f"{v:.4g}") for k, v in zip(names[m], c[m])} for m in methods}
  quality = {}
  for m in methods:
    rows = [(case, feats[case][m] @ c[m], times[case][m]) for case in cases if m in feats[case]]
    if rows:
      err = np.abs(np.log([e / t for _, e, t in rows]))
      quality[m] = {"samples": len(rows), "median_abs_log_error": round(float(np.median(err)), 3),
                    "max_abs_log_error": round(float(err.max()), 3),
                    "worst_case": rows[int(err.argmax())][0]}
  quality["decision_fit"] = {"cases": len(cases), "loss_start": round(float(loss(theta0)), 3),
                             "loss": round(float(res.fun), 3), "temperature": temperature,
                             "fit_weight": fit_weight}
  return coefs, quality


def evaluate(samples: Sequence[dict], log=print) -> list[dict]:
  """In-sample check: auto's pick vs the measured best and lax, per case."""
  from jaxconv import _select
  _select.load_model.cache_clear()
  _select._select.cache_clear()
  out = []
  for name, case in BY_NAME.items():
    times = {s["method"]: s["seconds"] for s in samples if s["case"] == name}
    if not times:
      continue
    pick, _ = _select.select(problem.method_geometry(case))
    best = min(times, key=times.get)
    got = times.get(pick)
    row = {"case": name, "best": best, "auto": pick,
           "auto_vs_best": None if got is None else round(got / times[best], 2),
           "lax_vs_auto": None if got is None or "lax" not in times
           else round(times["lax"] / got, 2)}
    out.append(row)
    log(f"{name:22s} best {best:9s} auto {pick:9s} auto/best "
        f"{row['auto_vs_best']}  lax/auto {row['lax_vs_auto']}")
  ratios = [r["lax_vs_auto"] for r in out if r["lax_vs_auto"]]
  if ratios:
    log(f"geometric-mean speed-up of auto over lax: "
        f"{math.exp(statistics.mean(math.log(r) for r in ratios)):.2f}x")
  far = [r["case"] for r in out if r["auto_vs_best"] and r["auto_vs_best"] > 1.1]
  slow = [r["case"] for r in out if r["lax_vs_auto"] and r["lax_vs_auto"] < 1 / 1.1]
  log(f"auto > 1.1x the best: {len(far)} of {len(out)} {far}")
  log(f"auto > 1.1x slower than lax: {len(slow)} {slow}")
  return out


# --- the command ---------------------------------------------------------------

def _load(path: Path) -> dict:
  if path.exists():
    return json.loads(path.read_text())
  return {"version": 1, "backends": {}}


def main(argv: Sequence[str]) -> int:
  p = argparse.ArgumentParser(prog="python -m bench.calibrate",
                              description=__doc__.split("\n")[0])
  p.add_argument("--cases", nargs="+", metavar="GLOB", help="calibration cases to (re)measure")
  p.add_argument("--methods", nargs="+", metavar="NAME", help="methods to (re)measure")
  p.add_argument("--budget", type=float, default=0.4,
                 help="seconds of timed runs per method and case (default 0.4)")
  p.add_argument("--fit-only", action="store_true", help="refit from the stored samples")
  p.add_argument("--nnls-only", action="store_true",
                 help="keep the per-method NNLS time fit (skip fit_decisions)")
  p.add_argument("--out", type=Path, default=MODEL_FILE, help="the cost model JSON")
  p.add_argument("--list", action="store_true", help="list the calibration cases")
  args = p.parse_args(list(argv))
  if args.list:
    for c in CASES:
      print(f"{c.name:22s} {c.describe()}")
    return 0
  from jaxconv._methods import METHODS
  backend = jax.default_backend()
  model = _load(args.out)
  entry = model["backends"].get(backend, {})
  samples = entry.get("samples", [])
  if not args.fit_only:
    cases = [c for c in CASES
             if not args.cases or any(fnmatch.fnmatchcase(c.name, g) for g in args.cases)]
    if not cases:
      p.error(f"--cases {args.cases} matches no calibration case (see --list)")
    methods = list(args.methods or METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
      p.error(f"unknown method(s) {unknown}; registered: {list(METHODS)}")
    new = measure(cases, methods, args.budget)
    done = {(s["case"], s["method"]) for s in new}
    samples = [s for s in samples if (s["case"], s["method"]) not in done] + new
  cache, coefs, quality = best_fit(samples, llc_bytes())
  if not args.nnls_only:
    coefs, quality = fit_decisions(samples, cache, coefs)
  dev = jax.devices()[0]
  model.setdefault("version", 1)
  model["units"] = ("estimate = sum(coefficient * feature) nanoseconds of forward+backward "
                    "(jaxconv._select.features); fitted by python -m bench.calibrate")
  model["backends"][backend] = {
      "coefficients": coefs,
      "device": _device_name(dev),
      "cache_bytes": cache,
      "jax": jax.__version__,
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "command": "python -m bench.calibrate " + shlex.join(argv),
      "statistic": "min over runs of jit(grad) forward+backward, warm-up excluded",
      "fit": quality,
      "samples": sorted(samples, key=lambda s: (s["case"], s["method"])),
  }
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(model, indent=1) + "\n")
  print(f"wrote {args.out}")
  for m, q in quality.items():
    print(f"  {m:9s} {coefs.get(m, '')}  fit {q}")
  evaluate(samples)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
