"""`method="auto"`: a static cost model picks the algorithm of each pass.

The time of every method's forward pass, input gradient and weight gradient
is estimated from the geometry alone as a linear combination of the features
the method itself reports (`cost(g, pass_, cache_bytes=...)`, see
`jaxconv._methods`), with coefficients measured per device
(`jaxconv._profiles`, `python -m jaxconv.calibrate`). `select` returns a
`Plan`: the cheapest supported method per pass (or a method's periodic path
for circular padding); `jaxconv._perpass` runs a plan whose passes differ;
`select_method` is the public front end that reports the plan and why.
Nothing here looks at array values, so it runs at trace time under `jit`,
`vmap` and `grad`.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import numpy as np

from . import _budget
from ._geometry import Geometry, dtype_arg, make_geometry, shape_arg
from ._methods import METHODS, SPREAD_TEXT, hook, nonfinite_spread
from ._methods.common import PASSES, check_pass
from ._padding import method_geometry
from . import _profiles
from ._typing import DTypeLike, Shape

LAX_MARGIN = 0.7
"""Another method replaces 'lax' for a pass only if estimated below
`LAX_MARGIN` x lax's time (~1.4x faster), with a profile measured on this
device: a misestimate then rarely makes `auto` slower than lax."""

FALLBACK_MARGIN = 0.4
"""The same with another device's profile or the generic one (`Profile.exact`
False): leaving lax needs a predicted 2.5x gain, since the constants were
measured elsewhere."""

MIX_MARGIN = 0.9
"""Rule 4's hysteresis. A differentiated call is costed as a training step:
the sum of its three pass estimates times the profile's measured share
(`Profile.training`, `calibrate.fit_training`), since one method's fused
forward+backward shares work between its passes (the padded input, im2col's
patches, FFT spectra) that a mix of methods recomputes. The best single
method replaces the per-pass picks (a mix, or one method winning every pass)
only if its step is below `MIX_MARGIN` x theirs: each pick is the fastest of
its pass, ranked by coefficients refined for that pick, while a step sums
rougher time estimates (`step_estimates`). The un-differentiated forward
still runs the fastest forward (`Plan.fwd`)."""

UNMEASURED_MIX_SHARE = 1.17
"""A mix's share in a profile without measured training steps (every method's
share then 1): a mix must be estimated 1.3x cheaper than the best single
method (0.9 / 1.17), the margin first set by hand from the Xeon's full bench
(2026-12-07: single methods' forward+backward a median 0.62x of their passes'
sum, mixes 0.69x)."""

PERIODIC = " (periodic)"
"""Suffix of a candidate that is a method's periodic hook (circular padding)."""

PASS_NAMES = {"fwd": "forward", "dx": "input gradient", "dw": "weight gradient"}

# Kept for callers of the previous API: the generic profile and the default cache.
GENERIC_PROFILE = _profiles.GENERIC
DEFAULT_CACHE_BYTES = _profiles.DEFAULT_CACHE_BYTES


class Plan(NamedTuple):
  """What `method="auto"` runs for each pass of one convolution, and why.

  The forward pass `y = conv(x, w)`, the input gradient (a transposed
  convolution of the output cotangent) and the weight gradient (a
  correlation of `x` with it) are three convolutions of their own, and the
  fastest algorithm differs between them (as in cuDNN's fwd / bwd-data /
  bwd-filter algorithms), so each is chosen on its own.

  But one method's fused forward+backward shares work between its passes, so
  a differentiated call runs one method throughout (`fwd_train`) where its
  step is estimated clearly cheaper than the per-pass picks' (`MIX_MARGIN`),
  while a call without gradients still runs `fwd`.

  Attributes:
    fwd: the method of the forward pass of a call without gradients.
    dx: the method whose transpose computes the input gradient.
    dw: the method whose transpose computes the weight gradient.
    reasons: `(fwd, dx, dw)` sentences with the estimates behind each pick.
    fwd_train: the forward of a differentiated call, when it is not `fwd`:
      then `dx == dw == fwd_train`, one method for the whole training step.

  Example:
    >>> import jaxconv
    >>> plan = jaxconv.select_method((8, 64, 56, 56), (64, 1, 3, 3), padding=1, groups=64)
    >>> plan.methods == (plan.fwd, plan.dx, plan.dw)
    True
    >>> plan.reasons[0].startswith(plan.fwd)
    True
  """
  fwd: str
  dx: str
  dw: str
  reasons: tuple[str, str, str]
  fwd_train: str | None = None

  @property
  def methods(self) -> tuple[str, str, str]:
    """`(fwd, dx, dw)`."""
    return (self.fwd, self.dx, self.dw)

  @property
  def training(self) -> tuple[str, str, str]:
    """The methods of a differentiated call's `(fwd, dx, dw)`."""
    return (self.fwd_train or self.fwd, self.dx, self.dw)

  @property
  def single(self) -> str | None:
    """The method when all three passes use the same one, else None."""
    return self.fwd if self.fwd == self.dx == self.dw else None

  @property
  def reason(self) -> str:
    """The three reasons, one line per pass."""
    return "\n".join(f"{p}: {r}" for p, r in zip(PASSES, self.reasons))

  def __str__(self) -> str:
    head = self.single or f"fwd {self.fwd}, dx {self.dx}, dw {self.dw}"
    if self.fwd_train:
      head += f" (with gradients: {self.fwd_train} throughout)"
    return f"{head}\n{self.reason}"


def features(g: Geometry, cache_bytes: int = DEFAULT_CACHE_BYTES, pass_: str = PASSES[0]
             ) -> dict[str, dict[str, float]]:
  """`{method: features}`: every registered method's own `cost(g, pass_)`.

  Args:
    g: a method geometry (zero padding).
    cache_bytes: the last-level cache size of the profile.
    pass_: one of `jaxconv._methods.common.PASSES`.

  Returns:
    `{method: {feature: value}}` in registry order (each method's `cost`
    docstring says what its features count).
  """
  return {name: m.cost(g, pass_, cache_bytes=cache_bytes) for name, m in METHODS.items()}


def profile(backend: str | None = None) -> _profiles.Profile:
  """The cost-model profile for `backend` (see `jaxconv._profiles.profile`)."""
  return _profiles.profile(backend or jax.default_backend())


def _seconds(coefs: dict[str, float], feats: dict[str, float]) -> float:
  return 1e-9 * sum(c * feats.get(f, 0.0) for f, c in coefs.items())


def _passes(pass_: str | None) -> tuple[str, ...]:
  if pass_ is None:
    return PASSES
  check_pass(pass_, "auto")
  return (pass_,)


def estimate(g: Geometry, backend: str | None = None, budget: int | None = None,
             pass_: str | None = None) -> dict[str, float]:
  """Estimated seconds of every method the model can rank.

  Args:
    g: a method geometry (zero padding).
    backend: a JAX backend name; default `jax.default_backend()`.
    budget: temporary bytes a method may use (`jaxconv._budget`); default
      `$JAXCONV_MEMORY_BUDGET`, else half the device's memory.
    pass_: 'fwd', 'dx' or 'dw'; default None, the sum of the three (one
      training step of this layer with one method).

  Returns:
    `{method: seconds}` for registered methods that support `g` for 'auto'
    (`supports(g, "auto")`), fit the memory budget (`temp_bytes(g)`) and have
    constants in the profile, in registry order.
  """
  prof = profile(backend)
  budget = _budget.memory_budget(budget)
  passes = _passes(pass_)
  return {name: sum(_seconds(prof.coefficients[name].get(p, {}),
                             m.cost(g, p, cache_bytes=prof.cache_bytes)) for p in passes)
          for name, m in METHODS.items()
          if name in prof.coefficients and _declined(name, g, budget) is None}


def _declined(name: str, g: Geometry, budget: int) -> str | None:
  """Why `auto` may not pick method `name` for `g` within `budget`, or None."""
  module = METHODS[name]
  why = module.supports(g, "auto")
  return why if why is not None else _budget.over(module.temp_bytes(g), budget)


def _periodic_estimate(name: str, g: Geometry, backend: str, purpose: str,
                       passes: tuple[str, ...] = PASSES) -> float | None:
  """Seconds of method `name`'s periodic path for user geometry `g`, or None."""
  provider = hook(name, "periodic")
  prof = profile(backend)
  if (provider is None or name not in prof.coefficients or g.padding_mode != "circular"
      or provider.periodic_supports(g, purpose) is not None):
    return None
  return sum(_seconds(prof.coefficients[name].get(p, {}),
                      provider.periodic_cost(g, p, cache_bytes=prof.cache_bytes))
             for p in passes)


def prefers_periodic(name: str, g: Geometry, backend: str | None = None) -> bool:
  """Whether `method=name` computes circular padding by its periodic hook.

  True when the method has the hook, supports `g` with it, and its estimate
  (forward and both gradients) is at most that of wrap-padding the input and
  running the method's `conv`.

  Args:
    name: a registered method.
    g: the user geometry (`padding_mode='circular'`).
    backend: a JAX backend name; default `jax.default_backend()`.

  Example:
    >>> import jax
    >>> from jaxconv import _select
    >>> from jaxconv._geometry import make_geometry
    >>> x = jax.ShapeDtypeStruct((1, 4, 256, 256), "float32")
    >>> w = jax.ShapeDtypeStruct((4, 1, 31, 31), "float32")
    >>> g = make_geometry("f", x, w, padding=15, groups=4, padding_mode="circular")
    >>> _select.prefers_periodic("fft", g, "cpu"), _select.prefers_periodic("direct", g, "cpu")
    (True, False)
  """
  backend = backend or jax.default_backend()
  periodic = _periodic_estimate(name, g, backend, "call")
  if periodic is None:
    return False
  prof = profile(backend)
  gm = method_geometry(g)
  linear = sum(_seconds(prof.coefficients[name].get(p, {}),
                        METHODS[name].cost(gm, p, cache_bytes=prof.cache_bytes))
               for p in PASSES)
  return periodic <= linear


def _ms(t: float) -> str:
  return f"{t * 1e3:.3g} ms"


def _pick(est: dict[str, float], pass_: str, where: str, margin: float, tail: str
          ) -> tuple[str, str]:
  """The cheapest candidate of one pass (lax unless another beats `margin`), and why."""
  if not est:  # only possible with a profile that lacks 'lax'
    return "lax", f"lax: no method has estimates in the {where}{tail}"
  best = min(est, key=est.__getitem__)
  others = ", ".join(f"{m} {_ms(t)}" for m, t in sorted(est.items(), key=lambda kv: kv[1])
                     if m != best)
  if "lax" in est and best != "lax" and est[best] > margin * est["lax"]:
    return "lax", (f"lax: est. {pass_} {_ms(est['lax'])} ({where}); {best} "
                   f"({_ms(est[best])}) is not {1 / margin:.2g}x faster{tail}")
  speed = (f", {est['lax'] / est[best]:.2g}x faster than lax"
           if best != "lax" and "lax" in est else "")
  others = f"; others: {others}" if others else ""
  spread = nonfinite_spread(best[:-len(PERIODIC)] if best.endswith(PERIODIC) else best)
  return best, (f"{best}: est. {pass_} {_ms(est[best])}{speed} ({where}){others}{tail}; "
                f"{SPREAD_TEXT[spread]}")


@functools.lru_cache(maxsize=4096)
def _select(g: Geometry, backend: str, budget: int, local: bool) -> Plan:
  gm = method_geometry(g)
  prof = profile(backend)
  where = f"{backend}, {prof.describe()}"
  margin = LAX_MARGIN if prof.exact else FALLBACK_MARGIN
  allowed = [m for m in METHODS if not local or nonfinite_spread(m) == "window"]
  declined = [f"{m} ({why})" for m in METHODS
              if (why := _declined(m, gm, budget)) is not None]
  declined += [f"{m} (finite_locality=True: {nonfinite_spread(m)} spread)"
               for m in METHODS if m not in allowed]
  tail = f"; declined: {'; '.join(declined)}" if declined else ""

  def candidates(pass_):
    est = {m: t for m, t in estimate(gm, backend, budget, pass_).items() if m in allowed}
    for name in allowed:
      t = _periodic_estimate(name, g, backend, "auto", (pass_,))
      if t is not None:
        est[name + PERIODIC] = t
    return est

  if np.dtype(g.dtype).kind not in "fc":   # no gradients: one method, by its forward
    method, why = _pick(candidates("fwd"), "fwd", where, margin, tail)
    return Plan(method, method, method, (why, why, why))
  ests = {p: candidates(p) for p in PASSES}
  (f, rf), (dx, rdx), (dw, rdw) = (_pick(ests[p], p, where, margin, tail) for p in PASSES)
  times = step_estimates(ests, gm, prof, g)
  one = _training_method(times, (f, dx, dw), margin,
                         *training_shares(prof, mix_temp_bytes(gm, (f, dx, dw))))
  if one is None:
    return Plan(f, dx, dw, (rf, rdx, rdw))
  m, why = one
  rdx, rdw = (f"{m}: est. {p} {_ms(times[p][m])} ({where}); {why}{tail}" for p in PASSES[1:])
  return Plan(f, m, m, (rf, rdx, rdw), None if m == f else m)


def step_estimates(ests: dict[str, dict[str, float]], g: Geometry, prof: _profiles.Profile,
                   user_g: Geometry | None = None) -> dict[str, dict[str, float]]:
  """The pass estimates rule 4 sums into training steps: `ests` (per pass,
  from the profile's `coefficients`) re-estimated with its
  `time_coefficients`, fitted for time alone.

  `coefficients` are refined for each pass's pick (`calibrate.fit_decisions`),
  which leaves the time of a pass a method never wins free to drift
  several-fold (on MobileNetV2's strided dw3x3: direct's dW estimated 22 ms,
  10.7 measured, im2col's 3.0 against 8.6), and a step sums every pass. For
  'lax' the larger of the two: its time features miss how its dense dW
  scales (3.5x apart per multiply-add between layers of equal MACs), which
  the refined ones correct where lax loses that pass. A periodic candidate
  is re-estimated from its method's time coefficients and its `periodic_cost`
  on `user_g` (the user geometry, circular padding): left at its pick
  estimate, it was compared with time-fitted linear ones, and on a 2-core
  AMD EPYC's own calibration the FFT's linear path (17.7 ms est.) then
  displaced the periodic one (23.4 ms) in training, measured 0.42x as fast.
  Without `user_g`, and in profiles without time coefficients, `ests` stay.

  Example:
    >>> from jaxconv import _profiles, _select
    >>> from jaxconv._geometry import geometry_of
    >>> g = geometry_of((1, 4, 8, 8), (4, 4, 3, 3), padding=1)
    >>> times = {"fft": {p: {"call": 2e6} for p in ("fwd", "dx", "dw")}}
    >>> prof = _profiles.Profile({}, 1 << 25, "k", "user", True, {}, times)
    >>> _select.step_estimates({"fwd": {"fft": 1e-3}}, g, prof)
    {'fwd': {'fft': 0.002}}
  """
  if not prof.time_coefficients:
    return ests
  out: dict[str, dict[str, float]] = {}
  for p, by_m in ests.items():
    out[p] = {}
    for m, t in by_m.items():
      periodic = m.endswith(PERIODIC)
      name = m[:-len(PERIODIC)] if periodic else m
      coefs = prof.time_coefficients.get(name, {}).get(p)
      provider = hook(name, "periodic") if periodic else None
      if coefs is None or (periodic and (user_g is None or provider is None)):
        out[p][m] = t
        continue
      if provider is not None:
        feats = provider.periodic_cost(user_g, p, cache_bytes=prof.cache_bytes)
      else:
        feats = METHODS[m].cost(g, p, cache_bytes=prof.cache_bytes)
      timed = _seconds(coefs, feats)
      out[p][m] = max(t, timed) if m == "lax" else timed
  return out


def mix_temp_bytes(g: Geometry, picks: tuple[str, ...]) -> int:
  """Temporary bytes of a per-pass mix's training step, estimated as the sum
  of its distinct methods' `temp_bytes` on the method geometry `g` (each
  method keeps its own padded input, patches or spectra, which one method's
  fused step would share)."""
  names = {m[:-len(PERIODIC)] if m.endswith(PERIODIC) else m for m in picks}
  return sum(METHODS[m].temp_bytes(g) for m in sorted(names))


def training_shares(prof: _profiles.Profile, mix_bytes: int = 0
                    ) -> tuple[dict[str, float], float]:
  """`(share per candidate, share of a mix)` of `prof` for rule 4: measured
  ones (a method without its own gets the median of the others), else 1 and
  `UNMEASURED_MIX_SHARE`.

  A profile may measure a second share for mixes whose temporaries
  (`mix_temp_bytes`) exceed `mix_big_bytes` (`calibrate.fit_training`): on
  the 2-core Xeon a mix's step takes 0.69 of its passes' sum up to 64 MiB
  and 1.19 above (the model-zoo mixes, e.g. MobileNetV2's dw3x3 at batch 8:
  direct / direct / fft 39 ms, its passes 29 ms, where direct alone takes 26 ms).

  Example:
    >>> from jaxconv import _profiles, _select
    >>> prof = _profiles.Profile({}, 1, "k", "user", True, {"share": {"lax": 0.7},
    ...     "mix_share": 0.8, "mix_share_big": 1.1, "mix_big_bytes": 1 << 26})
    >>> _select.training_shares(prof, 1 << 20)[1], _select.training_shares(prof, 1 << 27)[1]
    (0.8, 1.1)
  """
  measured = prof.training.get("share", {})
  if not measured:
    return {}, UNMEASURED_MIX_SHARE
  default = float(np.median(list(measured.values())))
  share = {m: measured.get(m, default) for m in METHODS}
  share |= {m + PERIODIC: share[m] for m in METHODS}
  mix = prof.training.get("mix_share", max(measured.values()))
  if "mix_share_big" in prof.training and mix_bytes > prof.training["mix_big_bytes"]:
    mix = prof.training["mix_share_big"]
  return share, mix


def _training_method(ests: dict[str, dict[str, float]], picks: tuple[str, str, str],
                     margin: float, share: dict[str, float] | None = None,
                     mix_share: float = UNMEASURED_MIX_SHARE) -> tuple[str, str] | None:
  """The one method a differentiated call runs instead of the per-pass
  `picks` (rule 4, `MIX_MARGIN`), and why; None to keep the picks.

  `share` (default 1 for every method) and `mix_share` scale the sum of the
  three pass estimates to a training step's (`training_shares`).
  """
  share = share or {}
  total = {m: share.get(m, 1.0) * sum(ests[p][m] for p in PASSES) for m in ests[PASSES[0]]
           if all(m in ests[p] for p in PASSES)}
  if not total:
    return None
  best = min(total, key=total.__getitem__)
  if "lax" in total and best != "lax" and total[best] > margin * total["lax"]:
    best = "lax"
  head = f"one method for all passes of a differentiated call: its est. training step " \
         f"{_ms(total[best])}"
  if len(set(picks)) == 1:
    current, what = total.get(picks[0]), picks[0]
  else:
    current = mix_share * sum(ests[p][m] for p, m in zip(PASSES, picks))
    what = f"the per-pass mix {' / '.join(picks)}"
  if current is None or total[best] >= MIX_MARGIN * current:
    return None
  return best, f"{head} is {current / total[best]:.2g}x cheaper than {what}'s ({_ms(current)})"


def select(g: Geometry, backend: str | None = None, budget: int | None = None, *,
           finite_locality: bool = False) -> Plan:
  """The methods `method="auto"` runs for geometry `g`, per pass, and why.

  Rules, for each pass (forward, input gradient, weight gradient) on its own:

  1. Candidates are the registered methods whose `supports(g, "auto")` is
     None (e.g. no 'fft' for integer dtypes, no 'toeplitz' when its matrices
     would be too large, no 'direct'/'im2col' above 256 kernel taps since
     their compile time grows ~10 ms per unrolled tap) and whose temporary
     memory (`temp_bytes`) fits the budget (`jaxconv._budget`), on the
     geometry after the padding mode; for `padding_mode='circular'` also
     every method's periodic hook (named `'<method> (periodic)'`), which
     needs no padded copy. With `finite_locality`, only methods whose
     non-finite spread is 'window' (a NaN reaches only the outputs whose
     window reads it, as with lax).
  2. Each candidate's time for the pass is estimated as
     `sum(coefficient * feature)` over the features of the method's own
     `cost(g, pass_)`, with the coefficients of the device's profile
     (`jaxconv._profiles`: measured by `python -m jaxconv.calibrate`).
  3. The cheapest candidate wins, but lax is kept unless the winner is
     estimated at least `1 / LAX_MARGIN` (~1.4x) faster, or
     `1 / FALLBACK_MARGIN` (2.5x) with another device's or the generic
     profile.
  4. A differentiated call is costed as a training step: the sum of the
     three passes' time estimates (`step_estimates`: the profile's time
     coefficients) times the profile's measured share of one method's, or
     of a mix's, fused forward+backward (`training_shares`). The best single
     method (chosen as in 3, over the steps) runs all three passes of a
     differentiated call (`Plan.fwd_train`) if its step is below
     `MIX_MARGIN` x that of the passes' winners (a mix, or one method);
     otherwise the per-pass winners run.

  Integer and bool inputs have no gradients: one method for all passes,
  chosen by its forward estimate. The input-gradient method is the one whose
  *transpose* (as JAX derives it) computes the gradient, so its cost is
  measured as that transpose.

  Args:
    g: the user geometry (any padding mode) or a method geometry.
    backend: a JAX backend name; default `jax.default_backend()`.
    budget: temporary bytes a method may use; default as `estimate`.
    finite_locality: only methods that keep NaN/Inf local (see above).

  Returns:
    A `Plan`: `fwd`, `dx`, `dw` are registered names, or
    `'<name> (periodic)'` for a periodic hook; `reasons` give the estimates.
  """
  return _select(g, backend or jax.default_backend(), _budget.memory_budget(budget),
                 bool(finite_locality))


# --- the public front end ---------------------------------------------------------

_CONV_KWARGS = ("stride", "padding", "dilation", "groups", "padding_mode", "flip",
                "precision")


def select_method(x_shape: Shape, w_shape: Shape, dtype: DTypeLike = "float32", *,
                  backend: str | None = None, finite_locality: bool = False,
                  **conv_kwargs: Any) -> Plan:
  """Which methods `jaxconv.conv(..., method="auto")` runs for these shapes, and why.

  Auto estimates the time of each method for each pass (forward, input
  gradient, weight gradient) with a cost model measured on the device
  (`python -m jaxconv.calibrate`; see `jaxconv._select.select` for the
  rules) and takes the fastest supported method per pass, keeping lax unless
  another method is estimated ~1.4x faster. Typical picks on a CPU: 'fft'
  for large kernels, long 1-D filters and 3-D volumes, 'direct'/'im2col' for
  depthwise 3x3 and 1x1. Inference runs only `plan.fwd`. A differentiated call
  is costed as a training step, with the share of its passes' sum that a
  fused forward+backward takes as measured by the calibration: where one
  method's step is clearly cheaper than the per-pass winners' (`MIX_MARGIN`),
  that method runs its own whole forward+backward (`plan.fwd_train`), sharing
  work between the passes. For an exact
  answer on your device, `method="autotune"` times the candidates instead.

  Args:
    x_shape: input shape `(N, C_in, *spatial)`.
    w_shape: kernel shape `(C_out, C_in // groups, *kernel)`.
    dtype: the dtype of `x` and `w`. Default 'float32'.
    backend: a JAX backend name ('cpu', 'gpu', 'tpu'); default
      `jax.default_backend()`. Devices without a measured profile use the
      nearest shipped one or a generic profile that favours lax.
    finite_locality: as `jaxconv.conv`'s: only methods that keep a NaN/Inf
      input local to the outputs whose window reads it.
    **conv_kwargs: `jaxconv.conv`'s `stride`, `padding`, `dilation`, `groups`,
      `padding_mode`, `flip`, `precision`.

  Returns:
    A `Plan` with the method of each pass (`plan.fwd`, `plan.dx`,
    `plan.dw`, names of `jaxconv.method_names()` or `'fft (periodic)'`) and
    `plan.reasons`, a sentence per pass with the estimates behind it.

  Raises:
    TypeError: shapes that are not int sequences, an unknown dtype or keyword,
      a backend that is not a string, a `finite_locality` that is not a bool.
    ValueError: shapes or arguments that do not make a convolution (as
      `jaxconv.conv` raises them).

  Example:
    >>> import jaxconv
    >>> plan = jaxconv.select_method(
    ...     (8, 96, 56, 56), (96, 1, 7, 7), padding=3, groups=96, backend="cpu")
    >>> all(m in jaxconv.method_names() for m in plan.methods)
    True
    >>> plan.reasons[0].startswith(plan.fwd)
    True
  """
  fn = "jaxconv.select_method"
  unknown = sorted(set(conv_kwargs) - set(_CONV_KWARGS))
  if unknown:
    raise TypeError(
        f"{fn}: unknown keyword argument(s) {', '.join(unknown)}; accepted: "
        f"{', '.join(_CONV_KWARGS)}, backend, finite_locality.")
  dt = dtype_arg(dtype, fn)
  if backend is not None and not isinstance(backend, str):
    raise TypeError(f"{fn}: `backend` must be a string or None; got backend={backend!r}.")
  check_finite_locality(finite_locality, fn)
  x = jax.ShapeDtypeStruct(shape_arg(x_shape, "x_shape", fn), dt)
  w = jax.ShapeDtypeStruct(shape_arg(w_shape, "w_shape", fn), dt)
  return select(make_geometry(fn, x, w, **conv_kwargs), backend,
                finite_locality=finite_locality)


def check_finite_locality(value, fn: str) -> None:
  """`finite_locality` must be a bool (a clear TypeError, not a truthy string)."""
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{fn}: `finite_locality` must be True or False; got "
                    f"finite_locality={value!r}.")
