"""Cost-model profiles: which measured coefficients `method="auto"` uses here.

A profile holds, per method and per pass ('fwd', 'dx', 'dw'), the
nanoseconds per unit of each feature of the method's `cost` (see
`jaxconv._methods`), measured on one device by `python -m jaxconv.calibrate`.
Profiles are keyed by the device they were measured on (`device_key`): a
CPU by its model name, the ISA extensions that change XLA's kernels, and its
core count; an accelerator by its platform and device kind.

Lookup (`profile`), first match wins:

1. the user's profile for this exact device, written by
   `python -m jaxconv.calibrate` to `$JAXCONV_CACHE_DIR/cost_model.json`
   (default `$XDG_CACHE_HOME/jaxconv/`, i.e. `~/.cache/jaxconv/`);
2. a profile shipped in the package (`jaxconv/_data/cost_model.json`) for
   this exact device;
3. the *nearest* shipped profile of the same platform (`nearest`: one of
   the same CPU vendor and ISA flags, else the profile marked `"fallback"`
   in the shipped file, the one that ranked best on other machines'
   samples; then the closest core count), with a warning, once per process,
   that names the calibration command; `auto` then demands a larger
   predicted gain before it leaves lax (`Profile.exact` is False);
4. the hand-set generic profile (`GENERIC`), which favours lax.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import json
import os
import platform
import warnings
from pathlib import Path

import jax

from ._methods import METHODS
from ._methods.common import PASSES

VERSION = 2
DATA_FILE = "_data/cost_model.json"
CACHE_ENV = "JAXCONV_CACHE_DIR"
KEY_ENV = "JAXCONV_DEVICE_KEY"
USER_FILE = "cost_model.json"
DEFAULT_CACHE_BYTES = 32 << 20
"""Last-level cache size assumed when a profile does not give `cache_bytes`."""

CALIBRATE_COMMAND = "python -m jaxconv.calibrate"

# ISA extensions that select different XLA:CPU kernels (GEMM and FFT speed).
_ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile",
              "asimd", "sve")

GENERIC = {name: {p: {f: c / len(PASSES) for f, c in m.GENERIC_COEFFICIENTS.items()}
                  for p in PASSES}
           for name, m in METHODS.items() if hasattr(m, "GENERIC_COEFFICIENTS")}
"""The profile for devices without measurements: each method's hand-set
`GENERIC_COEFFICIENTS` (forward+backward), a third per pass (not measured;
they favour lax)."""


@dataclasses.dataclass(frozen=True)
class Profile:
  """The coefficients `auto` ranks methods with, and where they come from.

  Attributes:
    coefficients: `{method: {pass: {feature: ns per unit}}}`.
    cache_bytes: the last-level cache the `_big` features are measured against.
    key: the device key the profile was measured on ('generic' for `GENERIC`).
    source: 'user', 'shipped', 'nearest' or 'generic'.
    exact: whether it was measured on this very device (user or shipped).
    training: `{"share": {method: f}, "mix_share": f}`, how much of the sum of
      its passes' times a fused training step takes (`calibrate.fit_training`);
      empty for profiles measured without training steps.
    time_coefficients: the same features fitted for time alone (least
      relative error, `calibrate.fit`), where `coefficients` are refined for
      each pass's pick (`calibrate.fit_decisions`) and may misstate the time
      of a method that never wins a pass several-fold; `auto` sums these to
      cost a training step (`times`). Empty: `coefficients`.
  """
  coefficients: dict
  cache_bytes: int
  key: str
  source: str
  exact: bool
  training: dict = dataclasses.field(default_factory=dict)
  time_coefficients: dict = dataclasses.field(default_factory=dict)

  @property
  def times(self) -> dict:
    """The coefficients that estimate times: `time_coefficients`, else `coefficients`."""
    return self.time_coefficients or self.coefficients

  def describe(self) -> str:
    """A short phrase for `select_method`'s reasons."""
    if self.source == "generic":
      return "uncalibrated generic model"
    where = {"user": "your calibrated", "shipped": "shipped",
             "nearest": "nearest shipped"}[self.source]
    return f"{where} profile {self.key!r}"


# --- device keys -----------------------------------------------------------------

def _cpu_info() -> tuple[str, tuple[str, ...]]:
  """`(model name, ISA flags)` of this host's CPU (Linux /proc/cpuinfo, else `platform`)."""
  name, flags = "", set[str]()
  try:
    text = Path("/proc/cpuinfo").read_text(errors="replace")
  except OSError:
    text = ""
  for line in text.splitlines():
    key, _, value = line.partition(":")
    key = key.strip().lower()
    if key in ("model name", "cpu model", "hardware") and not name:
      name = value.strip()
    elif key in ("flags", "features") and not flags:
      flags = set(value.split())
  name = " ".join((name or platform.processor() or platform.machine() or "unknown").split())
  return name, tuple(f for f in _ISA_FLAGS if f in flags)


@functools.lru_cache(maxsize=None)
def device_key(backend: str | None = None) -> str:
  """The key profiles are stored under for `backend`'s first device.

  'cpu:<model>|<isa flags>|<n> cores' for a CPU (XLA:CPU uses every core, and
  its GEMM/FFT kernels depend on the ISA); '<platform>:<device kind>' for an
  accelerator. `$JAXCONV_DEVICE_KEY`, when it names a key of the same
  platform, replaces it: to use a profile measured on a sibling machine as
  this one's (the test suite pins the shipped CPU profile this way).

  Example:
    >>> from jaxconv._profiles import device_key
    >>> device_key("cpu").startswith("cpu:")
    True
  """
  try:
    dev = jax.devices(backend)[0]
  except RuntimeError:   # asked about a backend this process does not have
    return f"{backend}:unavailable"
  override = os.environ.get(KEY_ENV, "")
  if override.partition(":")[0] == dev.platform:
    return override
  if dev.platform == "cpu":
    name, flags = _cpu_info()
    return f"cpu:{name}|{'+'.join(flags) or '-'}|{os.cpu_count() or 1} cores"
  return f"{dev.platform}:{dev.device_kind}"


def _parts(key: str) -> tuple[str, str, str, int]:
  """`(platform, model, flags, cores)` of a device key."""
  plat, _, rest = key.partition(":")
  model, flags, cores = (rest.split("|") + ["", "", ""])[:3]
  try:
    n = int(cores.split()[0])
  except (ValueError, IndexError):
    n = 0
  return plat, model, flags, n


def _vendor(model: str) -> str:
  low = model.lower()
  for v in ("amd", "intel", "apple", "arm", "graviton", "ampere"):
    if v in low:
      return v
  return low.split(" ")[0] if low else ""


def nearest(key: str, keys, fallback=()) -> str | None:
  """The key in `keys` of the same platform most like `key`, or None.

  A profile of the same CPU vendor and ISA flags comes first; otherwise one
  in `fallback` (the shipped file marks the profile that ranked methods best
  on other machines' calibration samples: measured on a 2-core AMD EPYC
  with avx2 only, the Xeon (avx512 + AMX) profile picked training steps
  within 1.1x of the fastest on 33 / 48 cases, the other AMD's (avx512)
  on 30 / 48); then the same vendor, the same flags, and the closest core
  count (by ratio).

  Example:
    >>> from jaxconv._profiles import nearest
    >>> shipped = ["cpu:AMD EPYC 7B13|avx2+fma|2 cores", "cpu:Intel Xeon|avx2+fma+avx512f|2 cores"]
    >>> nearest("cpu:AMD EPYC 9B14|avx2+fma|4 cores", shipped)
    'cpu:AMD EPYC 7B13|avx2+fma|2 cores'
    >>> nearest("cpu:AMD EPYC 9B14|avx2+fma+avx512f|4 cores", shipped)
    'cpu:AMD EPYC 7B13|avx2+fma|2 cores'
    >>> nearest("cpu:AMD EPYC 9B14|avx2+fma+avx512f|4 cores", shipped, fallback=shipped[1:])
    'cpu:Intel Xeon|avx2+fma+avx512f|2 cores'
    >>> nearest("gpu:NVIDIA H100", shipped) is None
    True
  """
  plat, model, flags, cores = _parts(key)
  same = [k for k in keys if _parts(k)[0] == plat]
  if not same:
    return None

  def score(k):
    _, m, f, n = _parts(k)
    vendor, isa = _vendor(m) == _vendor(model), f == flags
    ratio = max(n, cores, 1) / max(min(n, cores), 1)
    return (not (vendor and isa), k not in fallback, not vendor, not isa, ratio, k)
  return min(same, key=score)


# --- the stored profiles -----------------------------------------------------------

def user_file() -> Path:
  """Where `python -m jaxconv.calibrate` writes: `$JAXCONV_CACHE_DIR/cost_model.json`,
  else `$XDG_CACHE_HOME/jaxconv/cost_model.json` (default `~/.cache/...`)."""
  env = os.environ.get(CACHE_ENV, "")
  if env:
    return Path(env).expanduser() / USER_FILE
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
  return Path(base).expanduser() / "jaxconv" / USER_FILE


def _check(model, where: str) -> dict:
  if not isinstance(model, dict) or not isinstance(model.get("profiles"), dict):
    raise ValueError(f"{where} has no 'profiles' table")
  if model.get("version") != VERSION:
    raise ValueError(f"{where} is version {model.get('version')!r}, expected {VERSION}")
  return model["profiles"]


@functools.lru_cache(maxsize=1)
def shipped() -> dict[str, dict]:
  """The profiles committed in the package, `{device key: profile entry}`.

  An unreadable file (a broken install) gives a warning and no profiles.
  """
  try:
    text = importlib.resources.files("jaxconv").joinpath(DATA_FILE).read_text()
    return _check(json.loads(text), DATA_FILE)
  except (OSError, ValueError) as e:
    warnings.warn(f"jaxconv: cannot read the cost model {DATA_FILE} ({e}); "
                  "method='auto' uses the uncalibrated generic profile.", stacklevel=2)
    return {}


@functools.lru_cache(maxsize=1)
def user() -> dict[str, dict]:
  """The profiles of `user_file()`, `{device key: entry}`; a missing file has
  none, an unreadable or corrupt one none with a warning."""
  path = user_file()
  try:
    return _check(json.loads(path.read_text()), str(path))
  except FileNotFoundError:
    return {}
  except (OSError, ValueError) as e:
    warnings.warn(f"jaxconv: ignoring the calibrated profiles in {path} ({e}); re-run "
                  f"`{CALIBRATE_COMMAND}` to rewrite them.", stacklevel=2)
    return {}


def clear_caches() -> None:
  """Forget the parsed profile files and device keys (after
  `jaxconv.calibrate` writes a profile, or `$JAXCONV_DEVICE_KEY` changes)."""
  device_key.cache_clear()
  shipped.cache_clear()
  user.cache_clear()
  profile.cache_clear()


def _from_entry(entry: dict, key: str, source: str, exact: bool) -> Profile:
  return Profile(entry["coefficients"], int(entry.get("cache_bytes", DEFAULT_CACHE_BYTES)),
                 key, source, exact, entry.get("training", {}),
                 entry.get("time_coefficients", {}))


@functools.lru_cache(maxsize=None)
def profile(backend: str | None = None) -> Profile:
  """The profile `auto` uses on `backend` (default `jax.default_backend()`).

  See the module docstring for the order; a fallback to another device's
  profile or to the generic one warns once per process and backend.
  """
  backend = backend or jax.default_backend()
  key = device_key(backend)
  if key in user():
    return _from_entry(user()[key], key, "user", True)
  if key in shipped():
    return _from_entry(shipped()[key], key, "shipped", True)
  near = nearest(key, shipped(), [k for k, e in shipped().items() if e.get("fallback")])
  if near is not None:
    warnings.warn(
        f"jaxconv: no cost-model profile for this device ({key}); method='auto' uses "
        f"the nearest shipped one ({near}) and keeps lax unless another method is "
        f"predicted much faster. Run `{CALIBRATE_COMMAND}` (2-5 minutes) to measure "
        f"this device.", stacklevel=3)
    return _from_entry(shipped()[near], near, "nearest", False)
  if backend != "cpu":
    warnings.warn(
        f"jaxconv: no cost-model profile for {key}; method='auto' uses the generic "
        f"profile, which keeps lax except for FFT-sized kernels. Run "
        f"`{CALIBRATE_COMMAND}` to measure this device.", stacklevel=3)
  return Profile(GENERIC, DEFAULT_CACHE_BYTES, "generic", "generic", False)
