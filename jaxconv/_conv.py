"""The public convolutions: validate -> pad -> dispatch to a method -> bias.

Every public function normalises its arguments into one `Geometry`
(`_geometry.make_geometry`), applies non-zero padding modes and the kernel flip
once, then hands channels-first arrays to the chosen method. Methods never see
layouts, bias or padding modes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec

from . import _autotune, _budget, _perpass, _select, _spmd
from ._geometry import (Geometry, array_arg, make_geometry, make_lax_geometry,
                        make_transpose_geometry, shape_of)
from ._methods import METHODS, hook, supporting
from ._padding import method_geometry, pad_mode
from ._typing import Array, ArrayLike, DTypeLike, Padding, PrecisionLike, Size

AUTO = "auto"
AUTOTUNE = "autotune"


def method_names() -> tuple[str, ...]:
  """Names accepted by `method=` (besides 'auto'), in order of preference.

  Example:
    >>> import jaxconv
    >>> jaxconv.method_names()[:3]
    ('lax', 'direct', 'im2col')
  """
  return tuple(METHODS)


def _check_method(method, fn: str) -> None:
  if not isinstance(method, str) or (method not in (AUTO, AUTOTUNE) and method not in METHODS):
    names = ", ".join(repr(m) for m in (AUTO, *METHODS, AUTOTUNE))
    raise ValueError(f"{fn}: unknown `method`; got method={method!r}, expected one of {names}.")


def _check_supported(method: str, g: Geometry, budget: int, fn: str, *,
                     periodic: bool = False) -> None:
  """Decline (NotImplementedError) a method that cannot compute `g`, or whose
  temporary memory is over `budget`, naming the methods that can."""
  why = (hook(method, "periodic").periodic_supports(g) if periodic
         else METHODS[method].supports(g))
  gm = method_geometry(g)
  if why is None:
    why = _budget.over(METHODS[method].temp_bytes(gm), budget)
  if why is not None:
    others = [m for m in supporting(gm) if m != method
              and _budget.over(METHODS[m].temp_bytes(gm), budget) is None]
    use = (f"use {', '.join(repr(m) for m in others)} or 'auto'" if others else
           "no method fits: raise `memory_budget`")
    raise NotImplementedError(
        f"{fn}: method={method!r} does not support this convolution ({why}); {use}.")


@functools.lru_cache(maxsize=None)
def _compiled(method_conv):
  """A method under `jax.jit` (geometry static): eager callers compile each
  method once per shape instead of op by op; inside an outer `jit`, `grad` or
  `vmap` it is an ordinary nested call."""
  return jax.jit(method_conv, static_argnums=2)


def _check_bias(b, out_channels: int, fn: str, x_dtype=None) -> None:
  if b is None:
    return
  shape = shape_of(b, "b", fn)
  if shape != (out_channels,):
    raise ValueError(
        f"{fn}: `b` must have shape (C_out,) = ({out_channels},); got b.shape={shape}.")
  if (x_dtype is not None and np.dtype(b.dtype).kind == "c"
      and np.dtype(x_dtype).kind != "c"):
    raise TypeError(
        f"{fn}: a complex `b` needs complex inputs (its imaginary part would be "
        f"dropped); got b.dtype={np.dtype(b.dtype)} and x.dtype={np.dtype(x_dtype)}.")


def _check_arrays(fn: str, **arrays) -> None:
  """Array arguments (None: an omitted bias) are arrays, not abstract shapes:
  a clear TypeError instead of numpy's (`_geometry.array_arg`)."""
  for name, a in arrays.items():
    if a is not None:
      array_arg(a, name, fn)


def _add_bias(y, b):
  if b is None:
    return y
  b = jnp.asarray(b).astype(y.dtype)
  return y + b.reshape((1, -1) + (1,) * (y.ndim - 2))


def _run(x, w, b, g: Geometry, method: str, fn: str, budget: int,
         finite_locality: bool = False):
  """The shared tail: flip, method choice per pass, padding mode, the method(s), bias.

  On a mesh the method may run per device (`_spmd`): then `auto` ranks the
  methods, and the memory budget is checked, by the per-device geometry.
  """
  x, w = jnp.asarray(x), jnp.asarray(w)
  if g.flip:
    w = jnp.flip(w, axis=tuple(range(2, w.ndim)))
  if is_degenerate(g):
    if method in METHODS:   # a method's declines (fft: integers) hold at any size
      _check_supported(method, g, budget, fn)
    return _add_bias(_degenerate_conv(x, w, g), b)
  local = _spmd.plan(x, g)
  per_device = g if local is None else local.local
  fwd_train = None
  if method == AUTO and local is not None and local.spatial:
    passes = ("lax",) * 3  # XLA's convolution exchanges the halos of a spatially sharded x
  elif method in (AUTO, AUTOTUNE):
    choose = _select.select if method == AUTO else _autotune.choose
    plan = choose(per_device, budget=budget, finite_locality=finite_locality)
    passes, fwd_train = plan.methods, plan.fwd_train
  elif g.padding_mode == "circular" and _select.prefers_periodic(method, g):
    passes = (method + _select.PERIODIC,) * 3
  else:
    passes = (method,) * 3
  # Periodic hooks take the unpadded input; the others get the padded copy.
  padded = not any(p.endswith(_select.PERIODIC) for p in passes)
  if padded and g.padding_mode != "zeros":
    x = pad_mode(x, g.padding, g.padding_mode)
    g, per_device = method_geometry(g), method_geometry(per_device)
  for name in dict.fromkeys(passes):
    periodic = name.endswith(_select.PERIODIC)
    base = name[:-len(_select.PERIODIC)] if periodic else name
    gp = per_device if periodic or padded else method_geometry(per_device)
    _check_supported(base, gp, budget, fn, periodic=periodic)
  if len(set(passes)) == 1 and padded:
    conv = METHODS[passes[0]].conv
  elif len(set(passes)) == 1:
    conv = hook(passes[0][:-len(_select.PERIODIC)], "periodic").periodic_conv
  else:
    conv = _perpass.per_pass(*passes, padded=padded, fwd_train=fwd_train)
  gspmd = all(getattr(METHODS.get(p), "GSPMD_PARTITIONS", False) for p in passes)
  return _add_bias(_call(conv, gspmd, x, w, g), b)


def is_degenerate(g: Geometry) -> bool:
  """No work to do: an empty input, kernel or output. The result is then
  empty, or zeros where the contraction (channels x taps, or a zero-size
  input, all padding) is empty."""
  return 0 in (math.prod(g.in_shape), math.prod(g.kernel_shape), math.prod(g.out_shape))


def _degenerate_conv(x, w, g: Geometry):
  """A degenerate convolution (`is_degenerate`), computed by lax itself.

  lax defines these (an empty result, or zeros of lax's output dtype) and their
  derivatives (zero or empty cotangents and tangents of the inputs' shapes), so
  calling `lax.conv_general_dilated` gives exactly lax's answer for every
  method, with no method running on a zero-size array. The padding mode does
  not matter here: no output reads a padded value that is not multiplied by
  an empty contraction, and the output shape depends only on `g.padding`.
  """
  return lax.conv_general_dilated(
      x, w, g.stride, g.padding, lhs_dilation=g.lhs_dilation, rhs_dilation=g.dilation,
      feature_group_count=g.groups, precision=g.precision,
      preferred_element_type=g.preferred_element_type)


def run(x, w, b, g: Geometry, method: str, fn: str):
  """`_run` within the default memory budget: for jaxconv's own callers
  (`ConvOperator`) that hold a validated geometry."""
  return _run(x, w, b, g, method, fn, _budget.memory_budget())


def _call(conv, gspmd: bool, x, w, g: Geometry):
  """`conv(x, w, g)` compiled once per geometry, per device on a mesh (`_spmd`)
  unless XLA's SPMD partitioner splits it alone (`gspmd`, lax's own)."""
  p = _spmd.plan(x, g, gspmd_partitions=gspmd)
  if p is None:
    return _compiled(conv)(x, w, g)
  return _spmd.run(_compiled(conv), x, w, p)


def conv(x: ArrayLike, w: ArrayLike, b: ArrayLike | None = None, *, stride: Size = 1,
         padding: Padding = 0, dilation: Size = 1, groups: int = 1,
         padding_mode: str = "zeros", flip: bool = False, method: str = "auto",
         precision: PrecisionLike = None, memory_budget: int | None = None,
         finite_locality: bool = False) -> Array:
  """N-d convolution (cross-correlation), as `torch.nn.functional.conv{1,2,3}d`.

  Args:
    x: input `(N, C_in, *spatial)`, any number >= 1 of spatial dims.
    w: kernel `(C_out, C_in // groups, *kernel)`.
    b: optional bias `(C_out,)`.
    stride: int or per-dim ints. Default 1.
    padding: int, per-dim ints, per-dim `(lo, hi)` pairs (negative crops), or
      'VALID'/'SAME'/'SAME_LOWER'/'FULL' (case-insensitive; 'SAME' exactly as
      lax computes it). Default 0.
    dilation: kernel dilation, int or per-dim ints. Default 1.
    groups: feature groups; `groups == C_in` is depthwise. Default 1.
    padding_mode: 'zeros', 'reflect', 'replicate' or 'circular', with PyTorch's
      `nn.ConvNd(padding_mode=...)` meaning. Default 'zeros'.
    flip: True computes the true convolution (kernel flipped in every spatial
      dim, seed 001); False the cross-correlation deep learning calls
      convolution. Default False.
    method: 'auto' (a cost model picks a method for the forward pass, the
      input gradient and the weight gradient each; see
      `jaxconv.select_method`), 'autotune' (times the candidates of each
      pass once per shape), or one of `jaxconv.method_names()`: 'lax',
      'direct', 'im2col', 'toeplitz', 'fft', used for every pass. Default
      'auto'.
    precision: as lax's `precision`, passed to every contraction.
    memory_budget: bytes of temporary memory the method may plan for (its
      `temp_bytes` estimate); a named method over it is declined, `auto` skips
      it. Default: `$JAXCONV_MEMORY_BUDGET`, else half the device's memory.
    finite_locality: with `method="auto"` or `"autotune"`, only methods that
      keep a NaN/Inf input local (it reaches only the outputs whose window reads it, as
      with lax): no 'toeplitz' (whole lines) or 'fft' (whole blocks).
      Default False.

  Returns:
    `(N, C_out, *out)` with `out = floor((n + lo + hi - dilation * (k - 1) - 1)
    / stride) + 1` per dim, in the dtype lax returns.

  Raises:
    TypeError: non-array `x`/`w`/`b`, mismatched dtypes, arguments of the wrong kind.
    ValueError: shapes that do not match, bad strides/padding/groups/modes, an
      unknown method or `precision`, or an empty output (as PyTorch; a zero
      batch or zero channels are fine and give lax's empty / zero result).
    NotImplementedError: the chosen method cannot compute this geometry.

  Example:
    >>> import jax.numpy as jnp, numpy as np, jaxconv
    >>> x = jnp.array([[[1.0, 2.0, 3.0, 4.0]]])        # (N=1, C=1, L=4)
    >>> h = jnp.array([[[1.0, 0.0, -1.0]]])            # (C_out=1, C_in=1, K=3)
    >>> print(np.asarray(jaxconv.conv(x, h, method="direct")))
    [[[-2. -2.]]]
  """
  fn = "jaxconv.conv"
  _check_method(method, fn)
  _select.check_finite_locality(finite_locality, fn)
  _check_arrays(fn, x=x, w=w, b=b)
  g = make_geometry(fn, x, w, stride=stride, padding=padding, dilation=dilation,
                    groups=groups, padding_mode=padding_mode, flip=flip,
                    precision=precision)
  _check_bias(b, g.out_channels, fn, g.dtype)
  return _run(x, w, b, g, method, fn, _budget.memory_budget(memory_budget, fn),
              finite_locality)


def conv_transpose(x: ArrayLike, w: ArrayLike, b: ArrayLike | None = None, *,
                   stride: Size = 1, padding: Padding = 0, output_padding: Size = 0,
                   dilation: Size = 1, groups: int = 1, method: str = "auto",
                   precision: PrecisionLike = None,
                   memory_budget: int | None = None,
                   finite_locality: bool = False) -> Array:
  """N-d transposed convolution, as `torch.nn.functional.conv_transpose{1,2,3}d`.

  The gradient of `conv` with respect to its input (seed 001: the backward
  pass is multiplication by the transposed matrix): a convolution of the
  stride-dilated input with the spatially flipped, in/out-swapped kernel.

  Args:
    x: input `(N, C_in, *spatial)`.
    w: kernel `(C_in, C_out // groups, *kernel)` (PyTorch's layout).
    b: optional bias `(C_out,)`.
    stride: int or per-dim ints. Default 1.
    padding: int, per-dim ints or per-dim `(lo, hi)` pairs: how much is cropped
      from each side of the full output (`dilation * (k - 1) - padding` zeros
      are added around the dilated input). Default 0.
    output_padding: extra size added to the high side of each dim; must be
      smaller than the stride or the dilation. Default 0.
    dilation: kernel dilation. Default 1.
    groups: feature groups. Default 1.
    method: as for `conv`. Default 'auto'.
    precision: as lax's `precision`.
    memory_budget: as for `conv`.
    finite_locality: as for `conv`.

  Returns:
    `(N, C_out, *out)`, `out = (n - 1) * stride - lo - hi + dilation * (k - 1)
    + output_padding + 1` per dim.

  Raises:
    TypeError: non-array inputs or arguments of the wrong kind.
    ValueError: mismatched shapes, bad arguments, `output_padding` too large.

  Example:
    >>> import jax.numpy as jnp, numpy as np, jaxconv
    >>> x = jnp.array([[[[1.0, 2.0], [3.0, 4.0]]]])    # (1, 1, 2, 2)
    >>> w = jnp.ones((1, 1, 2, 2))
    >>> print(np.asarray(jaxconv.conv_transpose(x, w, stride=2))[0, 0])
    [[1. 1. 2. 2.]
     [1. 1. 2. 2.]
     [3. 3. 4. 4.]
     [3. 3. 4. 4.]]
  """
  fn = "jaxconv.conv_transpose"
  _check_method(method, fn)
  _select.check_finite_locality(finite_locality, fn)
  _check_arrays(fn, x=x, w=w, b=b)
  g = make_transpose_geometry(fn, x, w, stride=stride, padding=padding,
                              output_padding=output_padding, dilation=dilation,
                              groups=groups, precision=precision)
  _check_bias(b, g.out_channels, fn, g.dtype)
  # (C_in, C_out/G, *k) -> (C_out, C_in/G, *k): swap in/out within each group.
  cin_g, cout_g = g.in_channels_per_group, g.out_channels_per_group
  w_conv = jnp.asarray(w).reshape(g.groups, cin_g, cout_g, *g.kernel_size)
  w_conv = jnp.swapaxes(w_conv, 1, 2).reshape(g.kernel_shape)
  return _run(x, w_conv, b, g, method, fn, _budget.memory_budget(memory_budget, fn),
              finite_locality)


def conv_general_dilated(lhs: ArrayLike, rhs: ArrayLike, window_strides: Sequence[int],
                         padding: str | Sequence[tuple[int, int]],
                         lhs_dilation: Sequence[int] | None = None,
                         rhs_dilation: Sequence[int] | None = None,
                         dimension_numbers: lax.ConvGeneralDilatedDimensionNumbers = None,
                         feature_group_count: int = 1, batch_group_count: int = 1,
                         precision: PrecisionLike = None,
                         preferred_element_type: DTypeLike | None = None,
                         out_sharding: NamedSharding | PartitionSpec | None = None, *,
                         method: str = "auto", memory_budget: int | None = None,
                         finite_locality: bool = False) -> Array:
  """A drop-in for `jax.lax.conv_general_dilated` that can pick the algorithm.

  Same arguments and same result as lax's function (layouts through
  `dimension_numbers`, lhs/rhs dilation, feature and batch groups, precision,
  preferred_element_type); `method` chooses how it is computed. Use it wherever
  lax's function is accepted, e.g. Flax's
  `nn.Conv(..., conv_general_dilated=functools.partial(
  jaxconv.conv_general_dilated, method="im2col"))`.

  Args:
    lhs: input, layout given by `dimension_numbers` (default `NC...`).
    rhs: kernel, layout given by `dimension_numbers` (default `OI...`).
    window_strides: per-dim strides.
    padding: 'VALID', 'SAME', 'SAME_LOWER', 'FULL' or per-dim `(lo, hi)` pairs.
    lhs_dilation: per-dim input dilation (transposed convolutions).
    rhs_dilation: per-dim kernel dilation (atrous convolutions).
    dimension_numbers: as lax's: None, a `ConvDimensionNumbers`, or a tuple of
      layout strings such as `('NHWC', 'HWIO', 'NHWC')`.
    feature_group_count: feature groups.
    batch_group_count: batch groups (used by grouped weight gradients).
    precision: as lax's.
    preferred_element_type: accumulation and output dtype, as lax's.
    out_sharding: as lax's: the result's sharding, naming Explicit mesh axes
      only.
    method: 'auto' or a method name. Keyword only.
    memory_budget: as for `conv`. Keyword only.
    finite_locality: as for `conv`. Keyword only.

  Returns:
    The convolution, in the layout `dimension_numbers` gives for the output.

  Zero-size inputs and empty outputs are computed as lax computes them (an
  empty result, or zeros where the contraction is empty), by lax itself, for
  every method; their derivatives are lax's too.

  Raises:
    TypeError: as `conv`, plus (as lax) bad `dimension_numbers`, the wrong
      number of `padding` pairs, a `preferred_element_type` lax refuses
      (narrower than, or of another kind than, the inputs).
    ValueError: as `conv` (but not for an empty output), naming lax's argument
      names, plus (as lax) a `padding` that is neither a string nor (lo, hi)
      pairs (no int shorthand), an unknown `precision`, padding that crops
      more than the whole input.
    NotImplementedError: the chosen method cannot compute this call.

  Example:
    >>> import jax, jax.numpy as jnp, numpy as np, jaxconv
    >>> x = jnp.ones((1, 5, 5, 2)); w = jnp.ones((3, 3, 2, 4))
    >>> y = jaxconv.conv_general_dilated(x, w, (1, 1), "SAME",
    ...     dimension_numbers=("NHWC", "HWIO", "NHWC"), method="im2col")
    >>> ref = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
    ...     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    >>> y.shape, bool(jnp.allclose(y, ref))
    ((1, 5, 5, 4), True)
  """
  fn = "jaxconv.conv_general_dilated"
  _check_method(method, fn)
  _select.check_finite_locality(finite_locality, fn)
  _check_arrays(fn, lhs=lhs, rhs=rhs)
  if out_sharding is not None:
    _spmd.check_out_sharding(out_sharding, fn)
  call = make_lax_geometry(fn, lhs, rhs, window_strides, padding, lhs_dilation,
                           rhs_dilation, dimension_numbers, feature_group_count,
                           batch_group_count, precision, preferred_element_type)
  dnums, g = call.dimension_numbers, call.geometry
  x = jnp.transpose(jnp.asarray(lhs), dnums.lhs_spec)
  w = jnp.transpose(jnp.asarray(rhs), dnums.rhs_spec)
  if call.batch_group_count > 1:
    x = _batch_groups_to_feature_groups(x, call.batch_group_count)
  budget = _budget.memory_budget(memory_budget, fn)
  y = jnp.transpose(_run(x, w, None, g, method, fn, budget, finite_locality),
                    [int(a) for a in np.argsort(dnums.out_spec)])
  if out_sharding is not None:
    y = _spmd.constrain(y, out_sharding)
  return y


def _batch_groups_to_feature_groups(x, count: int):
  """lax's batch groups as feature groups: `(B*N', C, ...) -> (N', B*C, ...)`.

  Output channels of batch group `b` see only batch slice `b`; stacking the
  slices along channels turns that into `count` ordinary feature groups
  (`_geometry.make_lax_geometry` checked that `count` divides both).
  """
  n, c = x.shape[:2]
  x = x.reshape(count, n // count, c, *x.shape[2:])
  return jnp.swapaxes(x, 0, 1).reshape(n // count, count * c, *x.shape[3:])
