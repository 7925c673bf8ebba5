"""`method="auto"`: a static cost model picks the algorithm for a geometry.

Every method's forward+backward time is estimated from the geometry alone
(`features`: multiply-adds, memory traffic, FFT plan cost, ...) as a linear
combination whose coefficients were measured on this machine by
`python -m bench.calibrate` and committed in `jaxconv/_data/cost_model.json`
(one profile per JAX backend). `select` takes the cheapest supported method;
`select_method` is the public front end that reports the choice and why.
Nothing here looks at array values, so it runs at trace time under `jit`,
`vmap` and `grad`.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
import warnings

import jax
import numpy as np

from ._geometry import Geometry, is_int, make_geometry
from ._methods import METHODS
from ._padding import method_geometry

MAX_UNROLLED_TAPS = 256
"""Kernel taps above which 'direct' and 'im2col' are never chosen: both unroll
one slice per tap, and XLA needs ~10 ms of compile time per tap on a CPU."""

LAX_MARGIN = 0.7
"""Another method replaces 'lax' only if estimated below `LAX_MARGIN` x lax's
time (~1.4x faster): the model's typical error is ~1.35x (median over the
calibration samples), so a misestimate rarely makes `auto` slower than lax.
0.7 gave the fewest cases slower than lax, and of more than 1.1x off the
fastest method, over the calibration samples (0.6 starts to keep lax where
the FFT is 10x faster)."""

UNROLLED = ("direct", "im2col")

DEFAULT_CACHE_BYTES = 32 << 20
"""Last-level cache size assumed when a profile does not give `cache_bytes`."""

DATA_FILE = "_data/cost_model.json"

# Hand-set, NOT measured: the profile for backends without calibrated
# constants (GPU/TPU until someone runs bench/calibrate.py there). Their
# native convolution has no known weak spot, so lax is rated at the same
# speed per multiply-add as a GEMM, every other method at least as slow per
# unit of work, and FFT arithmetic (transforms, small complex contractions)
# at a small fraction of GEMM speed: only a much smaller FFT workload (large
# kernels, long filters) moves the choice away from lax. Units as in the
# JSON: nanoseconds per unit of each feature.
GENERIC_PROFILE = {
    "lax": {"macs_dense": 3.0e-3, "macs_grouped": 3.0e-3, "call": 2.0e4},
    "direct": {"macs_gemm": 3.0e-3, "macs_dw": 3.0e-3, "tap_elems": 1.5e-3, "call": 2.0e4},
    "im2col": {"macs_gemm": 3.0e-3, "macs_gemv": 3.0e-3, "patch": 1.5e-3, "call": 2.0e4},
    "toeplitz": {"band_macs": 3.0e-3, "matrix": 1.5e-3, "call": 2.0e4},
    "fft": {"transform": 2.0e-2, "contract": 0.1, "contract_dw": 0.1,
            "spectra": 2.0e-2, "call": 4.0e4},
}


# --- features ------------------------------------------------------------------

def _sizes(g: Geometry) -> dict[str, int]:
  taps = math.prod(g.kernel_size)
  out = math.prod(g.out_spatial)
  macs = (g.batch * g.groups * g.out_channels_per_group * g.in_channels_per_group
          * taps * out)
  return dict(taps=taps, out=out, macs=macs,
              x=g.batch * g.in_channels * math.prod(g.padded_spatial),
              y=g.batch * g.out_channels * out,
              windows=g.batch * g.in_channels * out)


def working_set_bytes(g: Geometry) -> int:
  """Bytes of the padded input, the output and the kernel: what each pass streams."""
  s = _sizes(g)
  return np.dtype(g.dtype).itemsize * (s["x"] + s["y"] + math.prod(g.kernel_shape))


def _fft_terms(g: Geometry) -> tuple[float, float, float]:
  """`(transform flops, complex multiply-adds, spectrum elements)` of the FFT.

  Read from the fft method's own plan (transform sizes after its cropping,
  polyphase strides and overlap-add blocks) when it exposes `plan`, else the
  textbook estimate for one transform of `P = prod(padded + kernel - 1)`
  points: `2.5 P log2 P` flops per real transform of each of the `N C_in`
  inputs, `N C_out` outputs and (pruned, x0.6) `C_out C_in/G` kernels, one
  complex multiply-add per frequency and channel pair, `P/2 + 1` complex
  samples per spectrum.
  """
  plan_fn = getattr(METHODS.get("fft"), "plan", None)
  n, c, o, i = g.batch, g.in_channels, g.out_channels, g.in_channels_per_group
  if plan_fn is not None:
    plan = plan_fn(g)
    if plan.zero:
      return 0.0, 0.0, 0.0
    size, half = math.prod(plan.sizes), plan.spectrum_len
    phases, blocks = plan.phases, plan.blocks
    per = (2.5 if plan.real else 5.0) * size * max(1.0, math.log2(size))
  else:
    size = math.prod(p + e - 1 for p, e in zip(g.padded_spatial, g.effective_kernel_size))
    half, phases, blocks = size // 2 + 1, 1, 1
    per = 2.5 * size * max(1.0, math.log2(size))
  transform = (n * c * phases + n * o) * blocks * per + o * i * phases * per * 0.6
  contract = n * o * i * phases * blocks * half
  spectra = (n * c * phases + n * o) * blocks * half + o * i * phases * half
  return float(transform), float(contract), float(spectra)


def features(g: Geometry, cache_bytes: int = DEFAULT_CACHE_BYTES
             ) -> dict[str, dict[str, float]]:
  """Per method, the quantities its forward+backward time is linear in.

  `macs` is the multiply-add count of the definition (`g.flops / 2`), `taps`
  the kernel size, `y` the output elements, `windows` = `N * C_in * prod(out)`.

  Features ending in `_big` are non-zero only when the working set
  (`working_set_bytes`; for im2col, or its patch tensor; for fft, or the
  spectra) exceeds
  `cache_bytes`: the same traffic then comes from DRAM instead of the cache,
  at a price of its own.

  Args:
    g: a method geometry (zero padding).
    cache_bytes: the last-level cache size of the profile.

  Returns:
    `{method: {feature: value}}` for every method the model knows:

    * lax: `macs_dense` (groups == 1), `macs_1x1` (dense, stride-1 1x1
      kernels: XLA CPU's convolution is 2-10x slower than the same GEMM
      there), `tap_outs_dense` (taps x y: XLA's
      convolution is slow per multiply-add when channels are few),
      `macs_dense_logk` (macs x log2(taps + 1): its backward slows with the
      kernel size), `macs_3d` (dense, 3 or more spatial dims),
      `macs_lhs_dilated` (transposed convolutions) and `macs_strided` (their
      input gradient is one), `macs_grouped` and `elems_grouped`
      (groups > 1: XLA CPU's slow grouped convolution), `elems` (input +
      output elements), `elems_big`, `call` (1).
    * direct: `macs_gemm` (channel contraction per tap), `macs_dw` (depthwise:
      broadcast multiply-adds), `macs_bcast` (one input channel per group
      but several outputs, e.g. a 1-channel image), `tap_elems` (taps x
      (windows + y): one slice and one accumulation per tap), `tap2_elems`
      (taps x tap_elems: its backward grows faster than the tap count),
      `tap_elems_3d` (3 or more spatial dims), `tap_elems_big`, `call`.
    * im2col: `macs_gemm` (GEMMs with more than one output channel per group),
      `macs_gemv` (one output channel per group: matrix-vector products),
      `patch` (patch tensor elements, 0 for a stride-1 1x1 kernel),
      `patch_taps` (patch x taps), `patch_big`, `elems_big`, `call`.
    * toeplitz: `band_macs` (the GEMMs with the banded matrices, zeros
      included), `matrix` (their elements), `lines` (input lines sliced),
      `lines_big`, `call`.
    * fft: `transform` (FFT flops), `contract` (complex multiply-adds of the
      per-frequency channel contraction) or `contract_dw` (the same, one
      input channel per group: a broadcast multiply), `spectra` (complex
      samples written and read), `spectra_big`, `call` (see `_fft_terms`).
  """
  s = _sizes(g)
  taps, macs = s["taps"], s["macs"]
  dense = g.groups == 1
  elems = s["x"] + s["y"]
  lead, rows = math.prod(g.kernel_size[:-1]), math.prod(g.out_spatial[:-1])
  p_w, o_w = g.padded_spatial[-1], g.out_spatial[-1]
  cg, og = g.in_channels_per_group, g.out_channels_per_group
  i_gt1 = cg > 1
  gemm_1x1 = taps == 1 and all(v == 1 for v in g.stride)
  lhs_dilated = any(d > 1 for d in g.lhs_dilation)
  strided = any(v > 1 for v in g.stride)
  tap_elems = taps * (s["windows"] + s["y"])
  patch = 0 if gemm_1x1 else s["windows"] * taps
  lines = lead * g.batch * g.in_channels * rows * p_w
  transform, contract, spectra = _fft_terms(g)
  ws = working_set_bytes(g)
  big = 1 if ws > cache_bytes else 0
  item = np.dtype(g.dtype).itemsize
  patch_big = 1 if max(ws, patch * item) > cache_bytes else 0
  spectra_big = 1 if max(ws, 2 * spectra * max(item, 4)) > cache_bytes else 0
  return {
      "lax": dict(macs_dense=macs if dense else 0,
                  macs_1x1=macs if dense and gemm_1x1 else 0,
                  tap_outs_dense=taps * s["y"] if dense else 0,
                  macs_dense_logk=macs * math.log2(taps + 1) if dense else 0,
                  macs_3d=macs if dense and g.rank >= 3 else 0,
                  macs_lhs_dilated=macs if lhs_dilated else 0,
                  macs_strided=macs if strided else 0,
                  macs_grouped=0 if dense else macs, elems_grouped=0 if dense else elems,
                  elems=elems, elems_big=big * elems, call=1),
      "direct": dict(macs_gemm=macs if cg > 1 else 0,
                     macs_dw=macs if cg == 1 and og == 1 else 0,
                     macs_bcast=macs if cg == 1 and og > 1 else 0,
                     tap_elems=tap_elems, tap2_elems=taps * tap_elems,
                     tap_elems_3d=tap_elems if g.rank >= 3 else 0,
                     tap_elems_big=big * tap_elems, call=1),
      "im2col": dict(macs_gemm=macs if og > 1 else 0, macs_gemv=macs if og == 1 else 0,
                     patch=patch, patch_taps=patch * taps, patch_big=patch_big * patch,
                     elems_big=patch_big * elems, call=1),
      "toeplitz": dict(band_macs=g.batch * g.groups * cg * og * rows * lead * p_w * o_w,
                       matrix=lead * g.in_channels * p_w * og * o_w,
                       lines=lines, lines_big=big * lines, call=1),
      "fft": dict(transform=transform, contract=contract if i_gt1 else 0,
                  contract_dw=0 if i_gt1 else contract, spectra=spectra,
                  spectra_big=spectra_big * spectra, call=1),
  }


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


def estimate(g: Geometry, backend: str | None = None) -> dict[str, float]:
  """Estimated forward+backward seconds of every method the model can rank.

  Args:
    g: a method geometry (zero padding).
    backend: a JAX backend name; default `jax.default_backend()`.

  Returns:
    `{method: seconds}` for registered methods that support `g`, have
    constants in the profile, and (for 'direct'/'im2col') have at most
    `MAX_UNROLLED_TAPS` kernel taps; in registry order.
  """
  backend = backend or jax.default_backend()
  coefs, _ = profile(backend)
  feats = features(g, profile_cache_bytes(backend))
  taps = math.prod(g.kernel_size)
  out = {}
  for name, module in METHODS.items():
    if name not in coefs or name not in feats or module.supports(g) is not None:
      continue
    if name in UNROLLED and taps > MAX_UNROLLED_TAPS:
      continue
    ns = sum(c * feats[name].get(f, 0.0) for f, c in coefs[name].items())
    out[name] = ns * 1e-9
  return out


def _ms(t: float) -> str:
  return f"{t * 1e3:.3g} ms"


@functools.lru_cache(maxsize=4096)
def _select(g: Geometry, backend: str) -> tuple[str, str]:
  est = estimate(g, backend)
  _, calibrated = profile(backend)
  where = f"{backend} model" if calibrated else f"uncalibrated generic model ({backend})"
  if not est:  # only possible with a profile that lacks 'lax'
    return "lax", f"lax: no method has estimates in the {where}"
  best = min(est, key=est.get)
  others = ", ".join(f"{m} {_ms(t)}" for m, t in sorted(est.items(), key=lambda kv: kv[1])
                     if m != best)
  if "lax" in est and best != "lax" and est[best] > LAX_MARGIN * est["lax"]:
    return "lax", (f"lax: est. fwd+bwd {_ms(est['lax'])} ({where}); {best} "
                   f"({_ms(est[best])}) is not {1 / LAX_MARGIN:.2g}x faster")
  tail = f"; others: {others}" if others else ""
  if best != "lax" and "lax" in est:
    speed = f", {est['lax'] / est[best]:.2g}x faster than lax"
  else:
    speed = ""
  taps = math.prod(g.kernel_size)
  capped = (f"; direct/im2col skipped ({taps} taps > {MAX_UNROLLED_TAPS})"
            if taps > MAX_UNROLLED_TAPS and any(m in METHODS for m in UNROLLED) else "")
  return best, f"{best}: est. fwd+bwd {_ms(est[best])}{speed} ({where}){tail}{capped}"


def select(g: Geometry, backend: str | None = None) -> tuple[str, str]:
  """The method `method="auto"` runs for geometry `g`, and why.

  Rules:

  1. Candidates are the registered methods whose `supports(g)` is None
     (e.g. no 'fft' for integer dtypes, no 'toeplitz' when its matrices would
     be too large), minus 'direct' and 'im2col' above `MAX_UNROLLED_TAPS`
     kernel taps (compile time grows ~10 ms per unrolled tap).
  2. Each candidate's forward+backward time is estimated as
     `sum(coefficient * feature)` (see `features`), with the coefficients
     measured on this backend by `bench/calibrate.py`
     (`jaxconv/_data/cost_model.json`); backends without measurements use
     `GENERIC_PROFILE`, which favours lax.
  3. The cheapest candidate wins, but lax is kept unless the winner is
     estimated at least `1 / LAX_MARGIN` (~1.4x) faster.

  What falls out on the calibrated CPU, where XLA's grouped/depthwise
  convolutions, its backward of strided, transposed, 3-D and large-kernel
  convolutions are slow and GEMMs are fast:

  * large kernels (from ~5x5 depthwise, ~7x7 dense with few channels),
    long 1-D filters and 3-D volumes -> 'fft';
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

  The reason string gives every candidate's estimate, so a surprising pick
  can be checked with `method="autotune"` (which measures instead).

  Args:
    g: a method geometry (zero padding; non-zero padding modes already applied).
    backend: a JAX backend name; default `jax.default_backend()`.

  Returns:
    `(method, reason)`; the reason gives the estimated times.
  """
  return _select(g, backend or jax.default_backend())


# --- the public front end ---------------------------------------------------------

_CONV_KWARGS = ("stride", "padding", "dilation", "groups", "padding_mode", "flip",
                "precision")


def _shape(value, name: str, fn: str) -> tuple[int, ...]:
  if (isinstance(value, (str, bytes)) or not hasattr(value, "__len__")
      or not all(is_int(v) for v in value)):
    raise TypeError(f"{fn}: `{name}` must be a sequence of ints; got {name}={value!r}.")
  return tuple(int(v) for v in value)


def select_method(x_shape, w_shape, dtype="float32", *, backend=None,
                  **conv_kwargs) -> tuple[str, str]:
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
  g = method_geometry(make_geometry(fn, x, w, **conv_kwargs))
  return select(g, backend)
