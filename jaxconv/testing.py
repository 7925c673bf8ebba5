"""Check any jaxconv method against `lax.conv_general_dilated`, on any backend.

`check_against_lax` compares a method's values, VJPs in every argument, JVP and
a second-order derivative with XLA's convolution at `precision=HIGHEST`, using
the same random inputs, on whatever device JAX runs on (CPU, GPU, TPU);
`check_general_against_lax` does the same for a call in
`lax.conv_general_dilated`'s own arguments (the drop-in).

Tolerances are relative to the output's *scale*: the same quantity computed
with the absolute values of every input (`conv(|x|, |w|)`, and likewise for
each derivative), i.e. the sum of the magnitudes of the terms each output adds
up. A correct method's rounding error is bounded by a multiple of that, so
cancellation cannot make the check spuriously fail or pass. The multiple is
`rtol(dtype) * sqrt(reduction length)` (rounding errors of a sum grow like the
square root of its length), times `log2` of the transform size for FFT
methods; `tolerance()` gives it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import _conv
from ._geometry import (Geometry, check_bool, dtype_arg, make_geometry,
                        make_lax_geometry, make_transpose_geometry, normalize_padding,
                        ntuple, positive_int, shape_arg)
from ._methods import METHODS
from ._padding import pad_mode
from ._typing import Array, ArrayLike, DTypeLike, Padding, Shape, Size

__all__ = [
    "Collective",
    "Comparison",
    "check_against_lax",
    "check_general_against_lax",
    "collectives",
    "reference_conv",
    "reference_conv_transpose",
    "rounding",
    "tolerance",
]

HIGHEST = lax.Precision.HIGHEST

# rtol per dtype, before the sqrt(reduction length) factor: a few ulps.
RTOL = {
    "float64": 4e-15,
    "float32": 2e-6,
    "float16": 2e-3,
    "bfloat16": 1.6e-2,
}
_LOW = ("float16", "bfloat16")


def rounding(method: str) -> str:
  """How `method`'s rounding error grows: 'sum' (with the reduction length,
  exact on small integers) or 'transform' (also with log2 of the transform
  size: the FFT), as the method declares (`ROUNDING`, default 'sum').

  Raises:
    ValueError: `method` is not 'auto', 'autotune' or a method name.

  Example:
    >>> from jaxconv.testing import rounding
    >>> rounding("fft"), rounding("im2col"), rounding("auto")
    ('transform', 'sum', 'sum')
  """
  _conv._check_method(method, "jaxconv.testing.rounding")
  return getattr(METHODS.get(method), "ROUNDING", "sum")


def tolerance(method: str, dtype: DTypeLike, g: Geometry) -> float:
  """Relative tolerance (against the output scale) for `method` on `dtype`.

  Args:
    method: a method name.
    dtype: the inputs' dtype.
    g: the geometry; gives the reduction lengths and transform sizes.

  Returns:
    `RTOL[dtype] * sqrt(L)`, where `L` is the longest sum in the forward or
    backward pass, times `log2` of the padded size for methods whose rounding
    grows with a transform (`rounding`).

  Raises:
    TypeError: `dtype` is not a dtype, or `g` is not a `Geometry`.
    ValueError: an unknown `method`, or a dtype without a tolerance (`RTOL`).

  Example:
    >>> import jax, jaxconv.testing as t
    >>> from jaxconv._geometry import make_geometry
    >>> x = jax.ShapeDtypeStruct((1, 4, 8, 8), "float32")
    >>> w = jax.ShapeDtypeStruct((4, 4, 3, 3), "float32")
    >>> t.tolerance("direct", "float32", make_geometry("f", x, w)) < 1e-4
    True
  """
  fn = "jaxconv.testing.tolerance"
  _conv._check_method(method, fn)
  name = _tested_dtype(dtype, fn).name
  if not isinstance(g, Geometry):
    raise TypeError(
        f"{fn}: `g` must be a jaxconv Geometry (e.g. from jaxconv._geometry.make_geometry); "
        f"got {type(g).__name__}.")
  taps = math.prod(g.kernel_size)
  reduction = max(g.in_channels_per_group * taps, g.out_channels_per_group * taps,
                  g.batch * math.prod(g.out_spatial))
  rtol = RTOL[name] * math.sqrt(reduction)
  if any(rounding(m) == "transform" for m in _plan_methods(method, g)):
    rtol *= max(1.0, math.log2(max(1, math.prod(g.padded_spatial))))   # 0: empty input
  return rtol


def _tested_dtype(dtype, fn: str) -> np.dtype:
  """`dtype` as a NumPy dtype with a tolerance (`RTOL`): TypeError for a
  non-dtype, ValueError for one without a tolerance (integers, complex)."""
  dt = dtype_arg(dtype, fn)
  if dt.name not in RTOL:
    raise ValueError(
        f"{fn}: no tolerance for dtype={dt.name}; expected one of {', '.join(RTOL)}.")
  return dt


def _plan_methods(method: str, g: Geometry) -> tuple[str, ...]:
  """The methods `method` runs for `g`: `auto`'s (and so `autotune`'s
  estimate of its) per-pass plan, periodic hooks named by their method."""
  if method not in ("auto", "autotune"):
    return (method,)
  from . import _select
  return tuple(m.removesuffix(_select.PERIODIC) for m in _select.select(g).methods)


def reference_conv(x: ArrayLike, w: ArrayLike, b: ArrayLike | None = None, *,
                   stride: Size = 1, padding: Padding = 0, dilation: Size = 1,
                   groups: int = 1, padding_mode: str = "zeros", flip: bool = False) -> Array:
  """`jaxconv.conv`'s meaning, computed by `lax.conv_general_dilated(HIGHEST)`.

  Raises:
    TypeError, ValueError: as `jaxconv.conv`.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from jaxconv.testing import reference_conv
    >>> x = jnp.array([[[1.0, 2.0, 3.0, 4.0]]]); h = jnp.array([[[1.0, 0.0, -1.0]]])
    >>> print(np.asarray(reference_conv(x, h)))
    [[[-2. -2.]]]
  """
  fn = "jaxconv.testing.reference_conv"
  _conv._check_arrays(fn, x=x, w=w, b=b)
  g = make_geometry(fn, x, w, stride=stride, padding=padding, dilation=dilation,
                    groups=groups, padding_mode=padding_mode, flip=flip)
  _conv._check_bias(b, g.out_channels, fn, g.dtype)
  x, w = jnp.asarray(x), jnp.asarray(w)
  pads = g.padding
  if padding_mode != "zeros":
    x = pad_mode(x, pads, padding_mode)
    pads = ((0, 0),) * g.rank
  if flip:
    w = jnp.flip(w, axis=tuple(range(2, w.ndim)))
  y = lax.conv_general_dilated(x, w, g.stride, pads, rhs_dilation=g.dilation,
                               feature_group_count=groups, precision=HIGHEST)
  return y if b is None else y + jnp.reshape(b, (1, -1) + (1,) * g.rank)


def reference_conv_transpose(x: ArrayLike, w: ArrayLike, b: ArrayLike | None = None, *,
                             stride: Size = 1, padding: int | Sequence[int | tuple[int, int]] = 0,
                             output_padding: Size = 0, dilation: Size = 1,
                             groups: int = 1) -> Array:
  """`jaxconv.conv_transpose`'s meaning: the VJP of a lax convolution.

  PyTorch defines the transposed convolution as the gradient of the forward
  convolution with respect to its input; this computes exactly that, with
  `jax.vjp` of `lax.conv_general_dilated(HIGHEST)` for the conv whose output
  has `x`'s shape.

  Raises:
    TypeError, ValueError: as `jaxconv.conv_transpose`.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxconv.testing import reference_conv_transpose
    >>> reference_conv_transpose(jnp.ones((1, 2, 3)), jnp.ones((2, 4, 2)), stride=2).shape
    (1, 4, 6)
  """
  fn = "jaxconv.testing.reference_conv_transpose"
  _conv._check_arrays(fn, x=x, w=w, b=b)
  g = make_transpose_geometry(fn, x, w, stride=stride, padding=padding,
                              output_padding=output_padding, dilation=dilation,
                              groups=groups)
  _conv._check_bias(b, g.out_channels, fn, g.dtype)
  x, w = jnp.asarray(x), jnp.asarray(w)
  rank = x.ndim - 2
  k = w.shape[2:]
  # Validated above by conv_transpose's rules; normalised by their owners.
  s, d = ntuple(stride, rank, "stride", fn), ntuple(dilation, rank, "dilation", fn)
  op = ntuple(output_padding, rank, "output_padding", fn, minimum=0)
  pairs = normalize_padding(padding, x.shape[2:], k, s, d, fn)
  out = [(n - 1) * ss - lo - hi + dd * (kk - 1) + o + 1
         for n, ss, (lo, hi), dd, kk, o in zip(x.shape[2:], s, pairs, d, k, op)]
  cout_g = w.shape[1]
  # Forward conv: (N, C_out, *out) -> (N, C_in, *in) with kernel (C_in, C_out/G, *k).
  forward = lambda z: lax.conv_general_dilated(
      z, w, s, pairs, rhs_dilation=d, feature_group_count=groups, precision=HIGHEST)
  z = jax.ShapeDtypeStruct((x.shape[0], cout_g * groups, *out), x.dtype)
  (y,) = jax.linear_transpose(forward, z)(x)
  return y if b is None else y + jnp.reshape(b, (1, -1) + (1,) * rank)


def _derivatives(f, primals, ct, tangents):
  """Value, VJP in every argument, JVP and a second-order derivative of `f`.

  The second-order term is the directional derivative (along `tangents`) of
  the VJP: a Hessian-vector product of `<ct, f(primals)>`.
  """
  y, vjp = jax.vjp(f, *primals)
  out = {"value": y}
  for i, gi in enumerate(vjp(ct)):
    out[f"vjp_{i}"] = gi
  out["jvp"] = jax.jvp(f, primals, tangents)[1]
  second = jax.jvp(lambda *p: jax.vjp(f, *p)[1](ct), primals, tangents)[1]
  for i, hi in enumerate(second):
    out[f"hvp_{i}"] = hi
  return out


@dataclasses.dataclass(frozen=True)
class Comparison:
  """One compared quantity of a `check_against_lax` run.

  Attributes:
    name: the quantity: 'value', 'vjp_0' (in `x`), 'vjp_1' (in `w`), 'jvp',
      'hvp_0', ...
    error: the largest absolute difference from lax's.
    scale: the output scale it is measured against (the same quantity with
      the absolute values of every input).
    rtol: the relative tolerance, `tolerance(method, dtype, g)`.

  Example:
    >>> from jaxconv.testing import Comparison
    >>> c = Comparison("value", error=1e-7, scale=4.0, rtol=1e-6)
    >>> c.ok, Comparison("value", float("nan"), 4.0, 1e-6).ok
    (True, False)
  """

  name: str
  error: float
  scale: float
  rtol: float

  @property
  def ok(self) -> bool:
    """`error <= rtol * scale`, and the error is finite."""
    return bool(np.isfinite(self.error)) and self.error <= self.rtol * self.scale


def check_against_lax(method: str, x_shape: Shape, w_shape: Shape,
                      dtype: DTypeLike = jnp.float32, *, transpose: bool = False,
                      bias: bool = False, seed: int = 0, raise_on_failure: bool = True,
                      **conv_kwargs: Any) -> list[Comparison]:
  """Compare `method` with `lax.conv_general_dilated(precision=HIGHEST)`.

  Values, the VJP with respect to every argument, the JVP and a second-order
  derivative (the derivative of the VJP along a random direction) are compared
  on random normal inputs, on the default backend. Low-precision inputs
  (float16, bfloat16) are compared with a float32 reference computed from the
  same rounded inputs.

  Args:
    method: a method name ('lax', 'direct', 'im2col', ...) or 'auto'.
    x_shape: input shape `(N, C_in, *spatial)`.
    w_shape: kernel shape: `(C_out, C_in // groups, *kernel)`, or for
      `transpose=True` PyTorch's `(C_in, C_out // groups, *kernel)`.
    dtype: input dtype. Default float32.
    transpose: check `conv_transpose` instead of `conv`. Default False.
    bias: also pass (and differentiate) a bias. Default False.
    seed: PRNG seed for the inputs.
    raise_on_failure: raise AssertionError listing every failed quantity.
    **conv_kwargs: keyword arguments of `jaxconv.conv`/`conv_transpose`.

  Returns:
    A list of `Comparison`s, one per quantity.

  Raises:
    AssertionError: a quantity is outside its tolerance (if `raise_on_failure`).
    TypeError: a shape that is not ints, a dtype, seed or flag of the wrong
      kind, an unknown keyword, or a `TypeError` of `jaxconv.conv`.
    ValueError: an unknown method, a dtype without a tolerance, or a
      `ValueError` of `jaxconv.conv` (`conv_transpose`).

  Example:
    >>> from jaxconv.testing import check_against_lax
    >>> results = check_against_lax("im2col", (2, 4, 9, 9), (6, 2, 3, 3),
    ...                             groups=2, stride=2, padding="SAME")
    >>> all(r.ok for r in results)
    True
  """
  name = "jaxconv.testing.check_against_lax"
  x_shape, w_shape, dtype = _check_run(name, method, x_shape, w_shape, dtype, seed,
                                       raise_on_failure, "x_shape", "w_shape")
  check_bool(transpose, "transpose", name)
  check_bool(bias, "bias", name)
  accepted = _TRANSPOSE_KWARGS if transpose else _CONV_KWARGS
  _check_kwargs(name, conv_kwargs, accepted, "transpose=True" if transpose else "conv")
  structs = (jax.ShapeDtypeStruct(x_shape, dtype), jax.ShapeDtypeStruct(w_shape, dtype))
  (make_transpose_geometry if transpose else make_geometry)(name, *structs, **conv_kwargs)
  dtype, normal = _sampler(dtype, seed)
  x, w = normal(x_shape), normal(w_shape)
  if transpose:
    fn = lambda *a: _conv.conv_transpose(*a, **conv_kwargs, method=method)
    ref = lambda *a: reference_conv_transpose(*a, **conv_kwargs)
    y_struct = jax.eval_shape(fn, x, w)
    # Tolerances from the forward convolution this one is the transpose of.
    fwd = {k: v for k, v in conv_kwargs.items() if k != "output_padding"}
    g = make_geometry(name, y_struct, w, **fwd)
  else:
    fn = lambda *a: _conv.conv(*a, **conv_kwargs, method=method)
    ref = lambda *a: reference_conv(*a, **conv_kwargs)
    g = make_geometry(name, x, w, **conv_kwargs)
    y_struct = jax.eval_shape(fn, x, w)
  primals = [x, w]
  if bias:
    primals.append(normal((y_struct.shape[1],)))
  return _compare(method, fn, ref, primals, y_struct.shape, g, dtype, normal,
                  raise_on_failure,
                  f"x{tuple(x_shape)} w{tuple(w_shape)} {dtype.name} {conv_kwargs}")


def check_general_against_lax(method: str, lhs_shape: Shape, rhs_shape: Shape,
                              dtype: DTypeLike = jnp.float32, *, seed: int = 0,
                              raise_on_failure: bool = True,
                              **lax_kwargs: Any) -> list[Comparison]:
  """Compare `jaxconv.conv_general_dilated(..., method=method)` with lax's.

  The drop-in check: the same quantities and tolerances as
  `check_against_lax`, for a call given in `lax.conv_general_dilated`'s own
  arguments (layouts through `dimension_numbers`, lhs/rhs dilation, feature
  and batch groups).

  Args:
    method: a method name or 'auto'.
    lhs_shape: input shape, in the layout `dimension_numbers` gives.
    rhs_shape: kernel shape, in the layout `dimension_numbers` gives.
    dtype: input dtype. Default float32.
    seed: seed for the random inputs.
    raise_on_failure: raise AssertionError listing every failed quantity.
    **lax_kwargs: `window_strides`, `padding` and the other keyword arguments
      of `lax.conv_general_dilated` (not `precision`: the reference uses HIGHEST).

  Returns and Raises: as `check_against_lax` (with `jaxconv.conv_general_dilated`'s
  errors; `window_strides` and `padding` are required).

  Example:
    >>> from jaxconv.testing import check_general_against_lax
    >>> results = check_general_against_lax(
    ...     "im2col", (2, 9, 9, 4), (3, 3, 2, 6), window_strides=(2, 1), padding="SAME",
    ...     feature_group_count=2, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    >>> all(r.ok for r in results)
    True
  """
  name = "jaxconv.testing.check_general_against_lax"
  lhs_shape, rhs_shape, dtype = _check_run(name, method, lhs_shape, rhs_shape, dtype, seed,
                                           raise_on_failure, "lhs_shape", "rhs_shape")
  _check_kwargs(name, lax_kwargs, _LAX_KWARGS, "lax.conv_general_dilated")
  missing = [k for k in ("window_strides", "padding") if k not in lax_kwargs]
  if missing:
    raise TypeError(f"{name}: missing the keyword argument(s) {', '.join(missing)} of "
                    "lax.conv_general_dilated.")
  structs = (jax.ShapeDtypeStruct(lhs_shape, dtype), jax.ShapeDtypeStruct(rhs_shape, dtype))
  make_lax_geometry(name, *structs, **{k: v for k, v in lax_kwargs.items()
                                     if k != "out_sharding"})
  dtype, normal = _sampler(dtype, seed)
  lhs, rhs = normal(lhs_shape), normal(rhs_shape)
  fn = lambda *a: _conv.conv_general_dilated(*a, **lax_kwargs, method=method)
  ref = lambda *a: lax.conv_general_dilated(*a, **{**lax_kwargs, "precision": HIGHEST})
  y_struct = jax.eval_shape(fn, lhs, rhs)
  lax_args = {k: v for k, v in lax_kwargs.items()
              if k not in ("precision", "preferred_element_type", "out_sharding")}
  g = make_lax_geometry(name, lhs, rhs, **lax_args).geometry
  return _compare(method, fn, ref, [lhs, rhs], y_struct.shape, g, dtype, normal,
                  raise_on_failure,
                  f"lhs{tuple(lhs_shape)} rhs{tuple(rhs_shape)} {dtype.name} {lax_kwargs}")


_CONV_KWARGS = ("stride", "padding", "dilation", "groups", "padding_mode", "flip")
_TRANSPOSE_KWARGS = ("stride", "padding", "output_padding", "dilation", "groups")
_LAX_KWARGS = ("window_strides", "padding", "lhs_dilation", "rhs_dilation",
               "dimension_numbers", "feature_group_count", "batch_group_count", "precision",
               "preferred_element_type", "out_sharding")


def _check_run(fn, method, x_shape, w_shape, dtype, seed, raise_on_failure, x_name, w_name):
  """The arguments the two checks share: `(x_shape, w_shape, dtype)`, checked."""
  _conv._check_method(method, fn)
  x_shape, w_shape = shape_arg(x_shape, x_name, fn), shape_arg(w_shape, w_name, fn)
  dtype = _tested_dtype(dtype, fn)
  positive_int(seed, "seed", fn, minimum=0)
  check_bool(raise_on_failure, "raise_on_failure", fn)
  return x_shape, w_shape, dtype


def _check_kwargs(fn, kwargs, accepted, what):
  unknown = sorted(set(kwargs) - set(accepted))
  if unknown:
    raise TypeError(f"{fn}: unknown keyword argument(s) {', '.join(unknown)}; accepted "
                    f"(those of {what}): {', '.join(accepted)}.")


def _sampler(dtype: DTypeLike, seed: int) -> tuple[np.dtype, Callable[[Shape], np.ndarray]]:
  """`(dtype, normal)`: standard-normal arrays of `dtype` from one NumPy
  generator (jax.random would compile a sampler for every shape)."""
  dtype = np.dtype(dtype)
  rng = np.random.default_rng(seed)
  return dtype, lambda shape: np.asarray(rng.standard_normal(shape), np.float32).astype(dtype)


def _compare(method, fn, ref, primals, out_shape, g, dtype, normal, raise_on_failure,
             what):
  """`_derivatives` of `fn` vs `ref` on `primals`, within `tolerance(method, dtype, g)`."""
  ct = normal(out_shape)
  tangents = [normal(p.shape) for p in primals]
  ref_dtype = np.float32 if dtype.name in _LOW else dtype
  host = lambda t: [np.asarray(a, ref_dtype) for a in t]   # no per-shape device ops
  got = jax.jit(lambda p, c, t: _derivatives(fn, p, c, t))(primals, ct, tangents)
  # One compiled reference serves both the values and (on |inputs|) the scales.
  reference = jax.jit(lambda p, c, t: _derivatives(ref, p, c, t))
  want = reference(host(primals), np.asarray(ct, ref_dtype), host(tangents))
  absh = lambda t: [np.abs(a) for a in host(t)]
  scale = reference(absh(primals), np.abs(np.asarray(ct, ref_dtype)), absh(tangents))
  rtol = tolerance(method, dtype, g)
  results = []
  for name in want:
    # initial=0: empty results (zero-size inputs or outputs, as lax allows) compare equal.
    err = float(np.max(np.abs(np.asarray(got[name], ref_dtype) - np.asarray(want[name])),
                       initial=0.0))
    sc = float(np.max(np.asarray(scale[name]), initial=0.0)) or 1.0
    results.append(Comparison(name, err, sc, rtol))
  bad = [r for r in results if not r.ok]
  if bad and raise_on_failure:
    lines = "; ".join(f"{r.name}: error {r.error:.3g} > {r.rtol:.3g} x scale {r.scale:.3g}"
                      for r in bad)
    raise AssertionError(
        f"method={method!r} disagrees with lax for {what}: {lines}")
  return results


# --- collectives in compiled programs (sharding checks) ----------------------------

COLLECTIVE_KINDS = ("all-gather", "all-reduce", "all-to-all", "collective-permute",
                    "reduce-scatter")
_COLLECTIVE = re.compile(
    r"=\s*(?P<shape>.+?)\s+(?P<kind>" + "|".join(COLLECTIVE_KINDS) + r")(?:-start)?\(")
_ARRAY = re.compile(r"[a-z]+[0-9]*\[([0-9,]*)\]")


@dataclasses.dataclass(frozen=True)
class Collective:
  """One collective of a compiled XLA program.

  Attributes:
    kind: one of `COLLECTIVE_KINDS`.
    elements: elements of its result (all operands of a tuple together).
    line: the HLO instruction, for the error message.

  Example:
    >>> from jaxconv.testing import collectives
    >>> (c,) = collectives("%p = f32[8]{0} collective-permute(f32[8]{0} %x)")
    >>> c.kind, c.elements
    ('collective-permute', 8)
  """

  kind: str
  elements: int
  line: str


def collectives(hlo_text: str) -> list[Collective]:
  """The collectives of a compiled program's HLO text, with their sizes.

  Use it on `jax.jit(f).lower(*args).compile().as_text()` to check that a
  sharded convolution stays local: e.g. no collective at all in a
  data-parallel forward pass, and an all-reduce of at most `|w| + |b|`
  elements in its backward pass. Asynchronous pairs count once (the
  `-start` half).

  Args:
    hlo_text: the text of a compiled (post-SPMD-partitioning) HLO module.

  Returns:
    One `Collective` per collective instruction, in program order.

  Raises:
    TypeError: `hlo_text` is not a str.

  Example:
    >>> from jaxconv.testing import collectives
    >>> hlo = "%ar = f32[4,3]{1,0} all-reduce(f32[4,3]{1,0} %dw), replica_groups={}"
    >>> [(c.kind, c.elements) for c in collectives(hlo)]
    [('all-reduce', 12)]
  """
  if not isinstance(hlo_text, str):
    raise TypeError(f"jaxconv.testing.collectives: `hlo_text` must be a str (the text of "
                    f"a compiled HLO module); got {type(hlo_text).__name__}.")
  out = []
  for line in hlo_text.splitlines():
    m = _COLLECTIVE.search(line)
    if m is None:
      continue
    elements = sum(math.prod(int(d) for d in dims.split(",") if d) if dims else 1
                   for dims in _ARRAY.findall(m.group("shape")))
    out.append(Collective(m.group("kind"), elements, line.strip()))
  return out
