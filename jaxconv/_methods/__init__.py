"""The algorithms, and the registry that is the one place listing them.

The contract of a method (DESIGN.md, "The contract of a method"). A method is
a module (or package) in this folder, registered below in `METHODS`; the rest
of jaxconv (`_conv`, `_select`, `_autotune`, `bench`) knows methods only
through this registry and these names. Every method provides:

* `supports(g, purpose="call") -> str | None`: None if it can compute
  geometry `g`, else why not (shown in errors, so a clause such as "its patch
  tensor would hold ... elements"). `purpose` is one of `common.PURPOSES`:
  'call' (asked for by name), 'auto' (may `method="auto"`/`"autotune"` pick
  it), 'calibrate' (is it timed when fitting the cost model). Every cap a
  method has (taps, matrix or patch sizes) lives here and nowhere else.
* `conv(x, w, g) -> Array`: channels-first `x` `(N, C_in, *spatial)` (already
  padded for non-zero padding modes) and `w` `(C_out, C_in // groups,
  *kernel)` (already flipped when `g.flip`) -> `(N, C_out, *g.out_spatial)`,
  the cross-correlation with `g`'s zero padding, strides, dilations and
  groups, in lax's output dtype. Written with `jnp`/`lax` only, so every
  transformation of JAX goes through it. It never re-validates.
* `cost(g, pass_, *, cache_bytes) -> dict[str, float]`: the features its time
  is linear in for `pass_` (one of `common.PASSES`); the cost model
  (`jaxconv._select`) multiplies them by coefficients measured per device.
  `cache_bytes` is the profile's last-level cache, for features that count
  traffic from DRAM.
* `temp_bytes(g) -> int`: an estimate of the peak temporary bytes of its
  forward pass (what it materialises besides inputs and outputs).

Optional attributes:

* `GENERIC_COEFFICIENTS`: hand-set coefficients of its features for backends
  without a calibrated profile (without them `auto` ranks it only where a
  profile was measured).
* `GSPMD_PARTITIONS`: True when XLA's SPMD propagation alone keeps it local
  on a batch-sharded input on Auto mesh axes, with a weight-gradient
  all-reduce of `|w|` (only lax's own convolution). Default False: jaxconv
  runs the method per device (`jaxconv._spmd`) on every mesh, since XLA
  cannot split an FFT and all-reduces whatever a method builds from `w`
  (Toeplitz matrices, broadcast kernels, spectra) instead of `dw`.
* `NONFINITE_SPREAD`: how far a NaN/Inf input spreads in the forward pass:
  'window' (default: only the outputs whose window reads it), 'line' (every
  output of the lines that read its line) or 'block' (every output of its
  transform block). `select_method` reports it; see `nonfinite_spread`.
* `weight_term(x, w, g)`: `conv(x, w, g)` written for its transpose in `w`,
  where autodiff of `conv` makes a poor weight gradient. Per-pass plans
  (`jaxconv._perpass`) use it for their dW pass; the method's own `conv`
  should use it in its `custom_jvp` too (direct: depthwise dW one tap at a
  time instead of every tap's window at once).
* `input_term(x, w, g)`: the same for the transpose in `x`, the input
  gradient (direct: a depthwise dX as its own correlation of `dy` with the
  flipped kernel, the transpose of a `jax.linear_transpose`, instead of one
  padded copy of `dy` per tap).
* `ROUNDING`: 'sum' (default: error grows with the reduction length, exact on
  small integers) or 'transform' (also with log2 of the transform size); read
  by `jaxconv.testing.tolerance`.

Optional hooks, declared by defining all the functions of the hook:

* periodic (`padding_mode='circular'` without a wrap-padded copy):
  `periodic_supports(g, purpose="call")`, `periodic_conv(x, w, g)` (the
  unpadded input and the user geometry) and `periodic_cost(g, pass_, *,
  cache_bytes)` (features on the same coefficients as `cost`). Whether it runs
  is decided from the estimates by `jaxconv._select.prefers_periodic`.

Adding a method: write its module with these four functions and add one line
to `METHODS`. The shared test table (`tests/configs.py`) then runs it on
every geometry; `auto` considers it once the device profile has coefficients
for its features (`python -m jaxconv.calibrate`).
"""

from __future__ import annotations

from types import ModuleType

from . import direct, fft, im2col, toeplitz
from . import lax as lax_method

# name -> module; order is the order of preference in error messages.
METHODS: dict[str, ModuleType] = {
    "lax": lax_method,
    "direct": direct,
    "im2col": im2col,
    "toeplitz": toeplitz,
    "fft": fft,
}

REQUIRED = ("supports", "conv", "cost", "temp_bytes")
HOOKS = {"periodic": ("periodic_supports", "periodic_conv", "periodic_cost")}


def missing(module) -> list[str]:
  """The contract's required functions that `module` lacks (empty when it complies).

  Example:
    >>> from jaxconv._methods import METHODS, missing
    >>> [name for name, m in METHODS.items() if missing(m)]
    []
  """
  return [f for f in REQUIRED if not callable(getattr(module, f, None))]


def hook(name: str, hook_name: str):
  """The registered method `name` as a provider of hook `hook_name`, or None.

  Example:
    >>> from jaxconv._methods import hook
    >>> hook("fft", "periodic") is not None, hook("direct", "periodic")
    (True, None)
  """
  module = METHODS[name]
  if all(callable(getattr(module, f, None)) for f in HOOKS[hook_name]):
    return module
  return None


SPREAD_TEXT = {
    "window": "a NaN/Inf input reaches only the outputs whose window reads it",
    "line": "a NaN/Inf input reaches every output of the lines that read its line",
    "block": "a NaN/Inf input reaches every output of its transform block",
}


def nonfinite_spread(name: str) -> str:
  """How far method `name` spreads a NaN/Inf input ('window', 'line', 'block').

  Example:
    >>> from jaxconv._methods import nonfinite_spread
    >>> nonfinite_spread("direct"), nonfinite_spread("toeplitz"), nonfinite_spread("fft")
    ('window', 'line', 'block')
  """
  return getattr(METHODS[name], "NONFINITE_SPREAD", "window")


def reason(name: str, g, purpose: str = "call") -> str | None:
  """Why method `name` declines `g` for `purpose`, or None (it supports it)."""
  return METHODS[name].supports(g, purpose)


def supporting(g, purpose: str = "call") -> list[str]:
  """The registered methods that support `g` for `purpose`, in registry order."""
  return [m for m in METHODS if reason(m, g, purpose) is None]
