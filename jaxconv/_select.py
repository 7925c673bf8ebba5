"""`method="auto"`: a static cost model picks the algorithm for a geometry.

Every method's forward+backward time is estimated from the geometry alone as
a linear combination of the features the method itself reports
(`cost(g, "fwd+bwd", cache_bytes=...)`, see `jaxconv._methods`), with
coefficients measured on this machine by `python -m bench.calibrate` and
committed in `jaxconv/_data/cost_model.json` (one profile per JAX backend).
`select` takes the cheapest supported method (or a method's periodic path
for circular padding); `select_method` is the public front end that reports
the choice and why. Nothing here looks at array values, so it runs at trace
time under `jit`, `vmap` and `grad`.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import warnings
from typing import Any

import jax
import numpy as np

from . import _budget
from ._geometry import Geometry, is_int, make_geometry
from ._methods import METHODS, SPREAD_TEXT, hook, nonfinite_spread
from ._methods.common import PASSES
from ._padding import method_geometry
from ._typing import DTypeLike, Shape

LAX_MARGIN = 0.7
"""Another method replaces 'lax' only if estimated below `LAX_MARGIN` x lax's
time (~1.4x faster): the model's typical error is ~1.35x (median over the
calibration samples), so a misestimate rarely makes `auto` slower than lax.
0.7 gave the fewest cases slower than lax, and of more than 1.1x off the
fastest method, over the calibration samples (0.6 starts to keep lax where
the FFT is 10x faster)."""

DEFAULT_CACHE_BYTES = 32 << 20
"""Last-level cache size assumed when a profile does not give `cache_bytes`."""

DATA_FILE = "_data/cost_model.json"

PERIODIC = " (periodic)"
"""Suffix of a candidate that is a method's periodic hook (circular padding)."""

GENERIC_PROFILE = {name: m.GENERIC_COEFFICIENTS for name, m in METHODS.items()
                   if hasattr(m, "GENERIC_COEFFICIENTS")}
"""The profile for backends without calibrated constants: each method's own
hand-set `GENERIC_COEFFICIENTS` (not measured; they favour lax)."""


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


# --- the calibrated profiles -----------------------------------------------------

@functools.lru_cache(maxsize=1)
def load_model() -> dict:
  """The committed cost model (`jaxconv/_data/cost_model.json`), parsed once.

  An unreadable file (a broken install) gives a warning and an empty model,
  so every backend falls back to `GENERIC_PROFILE`.
  """
  try:
    text = importlib.resources.files("jaxconv").joinpath(DATA_FILE).read_text()
    model = json.loads(text)
    if not isinstance(model.get("backends"), dict):
      raise ValueError("no 'backends' table")
    return model
  except (OSError, ValueError) as e:
    warnings.warn(f"jaxconv: cannot read the cost model {DATA_FILE} ({e}); "
                  "method='auto' uses the uncalibrated generic profile.", stacklevel=2)
    return {"backends": {}}


def profile(backend: str) -> tuple[dict[str, dict[str, float]], bool]:
  """`(coefficients, calibrated)` for `backend` ('cpu', 'gpu', 'tpu', ...)."""
  backends = load_model()["backends"]
  if backend in backends:
    return backends[backend]["coefficients"], True
  return GENERIC_PROFILE, False


def profile_cache_bytes(backend: str) -> int:
  """The profile's last-level cache size (bytes), for the `_big` features."""
  entry = load_model()["backends"].get(backend, {})
  return int(entry.get("cache_bytes", DEFAULT_CACHE_BYTES))


def _seconds(coefs: dict[str, float], feats: dict[str, float]) -> float:
  return 1e-9 * sum(c * feats.get(f, 0.0) for f, c in coefs.items())


def estimate(g: Geometry, backend: str | None = None, budget: int | None = None
             ) -> dict[str, float]:
  """Estimated forward+backward seconds of every method the model can rank.

  Args:
    g: a method geometry (zero padding).
    backend: a JAX backend name; default `jax.default_backend()`.
    budget: temporary bytes a method may use (`jaxconv._budget`); default
      `$JAXCONV_MEMORY_BUDGET`, else half the device's memory.

  Returns:
    `{method: seconds}` for registered methods that support `g` for 'auto'
    (`supports(g, "auto")`), fit the memory budget (`temp_bytes(g)`) and have
    constants in the profile, in registry order.
  """
  backend = backend or jax.default_backend()
  budget = _budget.memory_budget(budget)
  coefs, _ = profile(backend)
  cache = profile_cache_bytes(backend)
  return {name: _seconds(coefs[name], m.cost(g, PASSES[0], cache_bytes=cache))
          for name, m in METHODS.items()
          if name in coefs and _declined(name, g, budget) is None}


def _declined(name: str, g: Geometry, budget: int) -> str | None:
  """Why `auto` may not pick method `name` for `g` within `budget`, or None."""
  module = METHODS[name]
  why = module.supports(g, "auto")
  return why if why is not None else _budget.over(module.temp_bytes(g), budget)


def _periodic_estimate(name: str, g: Geometry, backend: str, purpose: str) -> float | None:
  """Seconds of method `name`'s periodic path for user geometry `g`, or None."""
  provider = hook(name, "periodic")
  coefs, _ = profile(backend)
  if (provider is None or name not in coefs or g.padding_mode != "circular"
      or provider.periodic_supports(g, purpose) is not None):
    return None
  feats = provider.periodic_cost(g, PASSES[0], cache_bytes=profile_cache_bytes(backend))
  return _seconds(coefs[name], feats)


def prefers_periodic(name: str, g: Geometry, backend: str | None = None) -> bool:
  """Whether `method=name` computes circular padding by its periodic hook.

  True when the method has the hook, supports `g` with it, and its estimate
  is at most that of wrap-padding the input and running the method's `conv`.

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
  coefs, _ = profile(backend)
  gm = method_geometry(g)
  linear = _seconds(coefs[name], METHODS[name].cost(
      gm, PASSES[0], cache_bytes=profile_cache_bytes(backend)))
  return periodic <= linear


def _ms(t: float) -> str:
  return f"{t * 1e3:.3g} ms"


@functools.lru_cache(maxsize=4096)
def _select(g: Geometry, backend: str, budget: int) -> tuple[str, str]:
  gm = method_geometry(g)
  est = estimate(gm, backend, budget)
  for name in METHODS:
    t = _periodic_estimate(name, g, backend, "auto")
    if t is not None:
      est[name + PERIODIC] = t
  _, calibrated = profile(backend)
  where = f"{backend} model" if calibrated else f"uncalibrated generic model ({backend})"
  declined = [f"{m} ({why})" for m in METHODS
              if (why := _declined(m, gm, budget)) is not None]
  tail = f"; declined: {'; '.join(declined)}" if declined else ""
  if not est:  # only possible with a profile that lacks 'lax'
    return "lax", f"lax: no method has estimates in the {where}{tail}"
  best = min(est, key=est.get)
  others = ", ".join(f"{m} {_ms(t)}" for m, t in sorted(est.items(), key=lambda kv: kv[1])
                     if m != best)
  if "lax" in est and best != "lax" and est[best] > LAX_MARGIN * est["lax"]:
    return "lax", (f"lax: est. fwd+bwd {_ms(est['lax'])} ({where}); {best} "
                   f"({_ms(est[best])}) is not {1 / LAX_MARGIN:.2g}x faster{tail}")
  if best != "lax" and "lax" in est:
    speed = f", {est['lax'] / est[best]:.2g}x faster than lax"
  else:
    speed = ""
  others = f"; others: {others}" if others else ""
  spread = nonfinite_spread(best[:-len(PERIODIC)] if best.endswith(PERIODIC) else best)
  return best, (f"{best}: est. fwd+bwd {_ms(est[best])}{speed} ({where}){others}{tail}; "
                f"{SPREAD_TEXT[spread]}")


def select(g: Geometry, backend: str | None = None, budget: int | None = None
           ) -> tuple[str, str]:
  """The method `method="auto"` runs for geometry `g`, and why.

  Rules:

  1. Candidates are the registered methods whose `supports(g, "auto")` is
     None (e.g. no 'fft' for integer dtypes, no 'toeplitz' when its matrices
     would be too large, no 'direct'/'im2col' above 256 kernel taps since
     their compile time grows ~10 ms per unrolled tap) and whose temporary
     memory (`temp_bytes`) fits the budget (`jaxconv._budget`), on the geometry after
     the padding mode; for `padding_mode='circular'` also every method's
     periodic hook (named `'<method> (periodic)'`), which needs no padded copy.
  2. Each candidate's forward+backward time is estimated as
     `sum(coefficient * feature)` over the features of the method's own
     `cost(g, "fwd+bwd")`, with the coefficients measured on this backend by
     `bench/calibrate.py` (`jaxconv/_data/cost_model.json`); backends without
     measurements use `GENERIC_PROFILE`, which favours lax.
  3. The cheapest candidate wins, but lax is kept unless the winner is
     estimated at least `1 / LAX_MARGIN` (~1.4x) faster.

  What falls out on the calibrated CPU, where XLA's grouped/depthwise
  convolutions, its backward of strided, transposed, 3-D and large-kernel
  convolutions are slow and GEMMs are fast:

  * large kernels (from ~5x5 depthwise, ~7x7 dense with few channels),
    long 1-D filters and 3-D volumes -> 'fft'; with circular padding its
    periodic path;
  * depthwise and grouped 3x3 -> 'direct' or 'im2col' (XLA CPU's grouped
    convolution is 5-300x slower);
  * 1x1 kernels, dilated 1-D (WaveNet) and dense 3x3 with many channels
    (ResNet, also strided) -> 'direct' (one GEMM per tap, no patch tensor);
    a 7x7/2 stem with 3 input channels -> 'im2col' (one GEMM);
  * lax where no other method is estimated ~1.4x faster: on GPU/TPU (the
    generic profile) all but FFT-sized kernels; on the 2026-12-02 Intel Xeon
    profile e.g. dense 64->64 5x5/7x7 on 32x32. Its known miss there: a
    dense 1-D 64->64 k=9 convolution, where it picks 'direct', 1.36x slower
    than lax.

  The coefficients are fitted for these choices, not just for the times
  (`bench.calibrate.fit_decisions`), so an estimate can be off by ~1.4x
  (median) while the order it gives is right.

  The reason string gives every candidate's estimate and every declined
  method's reason, so a surprising pick can be checked with
  `method="autotune"` (which measures instead).

  Args:
    g: the user geometry (any padding mode) or a method geometry.
    backend: a JAX backend name; default `jax.default_backend()`.
    budget: temporary bytes a method may use; default as `estimate`.

  Returns:
    `(method, reason)`; `method` is a registered name, or `'<name> (periodic)'`
    for a periodic hook; the reason gives the estimated times.
  """
  return _select(g, backend or jax.default_backend(), _budget.memory_budget(budget))


# --- the public front end ---------------------------------------------------------

_CONV_KWARGS = ("stride", "padding", "dilation", "groups", "padding_mode", "flip",
                "precision")


def _shape(value, name: str, fn: str) -> tuple[int, ...]:
  if (isinstance(value, (str, bytes)) or not hasattr(value, "__len__")
      or not all(is_int(v) for v in value)):
    raise TypeError(f"{fn}: `{name}` must be a sequence of ints; got {name}={value!r}.")
  return tuple(int(v) for v in value)


def select_method(x_shape: Shape, w_shape: Shape, dtype: DTypeLike = "float32", *,
                  backend: str | None = None, **conv_kwargs: Any) -> tuple[str, str]:
  """Which method `jaxconv.conv(..., method="auto")` runs for these shapes, and why.

  Auto estimates each method's forward+backward time with a cost model
  measured on a CPU (`python -m bench.calibrate`; see
  `jaxconv._select.select` for the rules) and takes the fastest method that
  supports the convolution, keeping lax unless another method is estimated
  ~1.4x faster. Typical picks on a CPU: 'fft' for large kernels, long 1-D
  filters and 3-D volumes, 'direct'/'im2col' for depthwise 3x3, 1x1 and
  dense 3x3 with many channels. For an exact answer on your
  device, `method="autotune"` times the candidates instead.

  Args:
    x_shape: input shape `(N, C_in, *spatial)`.
    w_shape: kernel shape `(C_out, C_in // groups, *kernel)`.
    dtype: the dtype of `x` and `w`. Default 'float32'.
    backend: a JAX backend name ('cpu', 'gpu', 'tpu'); default
      `jax.default_backend()`. Backends without measured constants use a
      generic profile that favours lax.
    **conv_kwargs: `jaxconv.conv`'s `stride`, `padding`, `dilation`, `groups`,
      `padding_mode`, `flip`, `precision`.

  Returns:
    `(method, reason)`: a method name of `jaxconv.method_names()` and a
    sentence with the estimated times behind the choice.

  Raises:
    TypeError: shapes that are not int sequences, an unknown dtype or keyword,
      a backend that is not a string.
    ValueError: shapes or arguments that do not make a convolution (as
      `jaxconv.conv` raises them).

  Example:
    >>> import jaxconv
    >>> method, reason = jaxconv.select_method(
    ...     (8, 96, 56, 56), (96, 1, 7, 7), padding=3, groups=96, backend="cpu")
    >>> method in jaxconv.method_names(), reason.startswith(method)
    (True, True)
  """
  fn = "jaxconv.select_method"
  unknown = sorted(set(conv_kwargs) - set(_CONV_KWARGS))
  if unknown:
    raise TypeError(
        f"{fn}: unknown keyword argument(s) {', '.join(unknown)}; accepted: "
        f"{', '.join(_CONV_KWARGS)}, backend.")
  try:
    dt = np.dtype(dtype)
  except TypeError:
    raise TypeError(
        f"{fn}: `dtype` must be a NumPy/JAX dtype or its name; got dtype={dtype!r}."
    ) from None
  if backend is not None and not isinstance(backend, str):
    raise TypeError(f"{fn}: `backend` must be a string or None; got backend={backend!r}.")
  x = jax.ShapeDtypeStruct(_shape(x_shape, "x_shape", fn), dt)
  w = jax.ShapeDtypeStruct(_shape(w_shape, "w_shape", fn), dt)
  return select(make_geometry(fn, x, w, **conv_kwargs), backend)
