"""scipy.signal-style `convolve`, `correlate`, `fftconvolve`, `oaconvolve`.

Same meaning as `scipy.signal`'s functions of the same names: N-d inputs of
equal rank, modes 'full'/'same'/'valid', complex inputs, and (for the FFT
functions, and here also `convolve`/`correlate` with `axes`) broadcasting over
the dimensions that are not convolved. They are computed by the engine behind
`method="fft"` (`jaxconv._methods.fft`: `plan_conv`, `run`, `fast_len`): the broadcast dimensions become the batch,
the groups and the output channels of one grouped correlation, so a stack of
signals sharing a filter (or a filter bank applied to one signal) is one FFT
per signal and per filter, not a Python loop.

scipy's rules, kept here: axes where either input has length 1 are broadcast,
not transformed; in 'valid' mode the inputs are swapped when `in2` is the
larger one, and it is an error if neither is at least as large as the other in
every convolved axis; in 'same' mode the output is the centre of the full
result with `in1`'s shape (in every dimension); two 0-d inputs multiply; an
empty input gives an empty result; 'auto' sums directly wherever scipy's
`choose_conv_method` would (so integer-valued data stays exact where scipy's
is), and takes the FFT only where the fft method's cost also says so; with
'fft'/'oa', integer results are rounded and wrap modulo `2**bits` like
scipy's cast; bad `axes` raise ValueError, as scipy's.

Deliberate differences from scipy (tests/test_scipy_cases.py names each):

- the result dtype is JAX's `result_type(in1, in2)` (lax's), not numpy's:
  int32/int64/uint* with float16/float32/complex64 keep the float's precision
  where numpy widens to 64 bits. The FFT still transforms an integer operand
  in JAX's default float (float64 under x64), so its rounding is not the
  single-precision one where scipy's is not;
- `fftconvolve`/`oaconvolve` always return the inexact dtype (scipy returns
  the integer one when every axis broadcasts);
- no RuntimeWarning for NaN/inf under 'fft': array values are never read
  (everything works under `jit`); the NaN/inf propagates as in scipy;
- `next_fast_len` answers 2·3·5·7-smooth lengths whatever `real` is (scipy:
  11-smooth, or 5-smooth for `real=True`), and rejects bool targets;
- long double inputs are float64/complex128 (JAX has no long double).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._geometry import array_arg, as_jax, check_bool, is_int, make_geometry
from ._methods import fft
from ._typing import Array, ArrayLike

_MODES = ("full", "same", "valid")
_METHODS = ("auto", "direct", "fft", "oa")


def next_fast_len(target: int, real: bool = False) -> int:
  """The smallest 2·3·5·7-smooth integer `>= target`: a fast FFT length.

  `scipy.fft.next_fast_len`'s signature, with the lengths jaxconv's FFT
  engine uses: XLA's FFTs (DUCC on CPU, cuFFT on GPU) are fast for the
  radices 2, 3, 5 and 7, for real and complex transforms alike, so `real`
  does not change the answer. scipy answers 11-smooth lengths for complex
  (`real=False`) and 5-smooth ones for real transforms, so jaxconv's length
  lies between scipy's two, and equals both where `target` is 5-smooth.

  Args:
    target: length to start from, a non-negative int (0 gives 0).
    real: accepted for scipy compatibility (a bool); default False.

  Returns:
    An int `>= target` whose only prime factors are 2, 3, 5 and 7.

  Raises:
    TypeError: `target` is not an int (bools included); `real` is not a bool.
    ValueError: `target` is negative.

  Example:
    >>> import jaxconv
    >>> jaxconv.next_fast_len(97), jaxconv.next_fast_len(1000), jaxconv.next_fast_len(1025)
    (98, 1000, 1029)
    >>> jaxconv.next_fast_len(11, real=True)
    12
  """
  fn = "jaxconv.next_fast_len"
  if not is_int(target):
    raise TypeError(f"{fn}: `target` must be an int; got target={target!r}.")
  check_bool(real, "real", fn)
  if target < 0:
    raise ValueError(f"{fn}: `target` must be non-negative; got target={target}.")
  return 0 if target == 0 else fft.fast_len(int(target))


# --- argument handling --------------------------------------------------------

_NO_METHOD = object()


def _check_args(fn: str, in1, in2, mode, method=_NO_METHOD) -> tuple[Array, Array]:
  """The inputs as arrays (scipy's array-likes: numbers, nested lists), a known
  `mode` and, for `convolve`/`correlate` (`method` given), a known `method`."""
  in1 = array_arg(in1, "in1", fn, array_like=True)
  in2 = array_arg(in2, "in2", fn, array_like=True)
  if not isinstance(mode, str) or mode not in _MODES:
    raise ValueError(f"{fn}: unknown `mode`; got mode={mode!r}, expected one of "
                     f"{', '.join(repr(m) for m in _MODES)}.")
  if method is not _NO_METHOD and (not isinstance(method, str) or method not in _METHODS):
    raise ValueError(f"{fn}: unknown `method`; got method={method!r}, expected one of "
                     f"{', '.join(repr(m) for m in _METHODS)}.")
  return as_jax(in1), as_jax(in2)


def _normalize_axes(axes, ndim: int, fn: str) -> list[int]:
  if axes is None:
    return list(range(ndim))
  seq = [axes] if is_int(axes) else axes
  if not isinstance(seq, Sequence) or isinstance(seq, str) or not all(
      is_int(a) for a in seq):
    # ValueError, as scipy's (a bad value of the `axes` argument).
    raise ValueError(f"{fn}: `axes` must be None, an int or a sequence of ints; "
                     f"got axes={axes!r}.")
  if not seq:
    raise ValueError(f"{fn}: `axes` must not be empty when given; got axes={axes!r}.")
  if any(a < -ndim or a >= ndim for a in seq):
    raise ValueError(f"{fn}: `axes` out of range for inputs of rank {ndim}; "
                     f"got axes={tuple(seq)!r}.")
  out = [int(a) % ndim for a in seq]
  if len(set(out)) != len(out):
    raise ValueError(f"{fn}: `axes` must not repeat an axis; got axes={tuple(seq)!r}.")
  return out


def _valid_swap(s1, s2, axes, fn: str) -> bool:
  """scipy's 'valid' rule: True if the inputs must be swapped."""
  ok1 = all(s1[a] >= s2[a] for a in axes)
  ok2 = all(s2[a] >= s1[a] for a in axes)
  if not (ok1 or ok2):
    raise ValueError(
        f"{fn}: in mode='valid' one input must be at least as large as the other in "
        f"every convolved axis; got shapes {tuple(s1)} and {tuple(s2)} over axes "
        f"{tuple(axes)}.")
  return not ok1


def _inexact(dtype):
  dtype = np.dtype(dtype)
  return dtype if jnp.issubdtype(dtype, jnp.inexact) else np.dtype(jnp.result_type(dtype, float))


def _fft_dtype(dt1, dt2):
  """The FFT's compute dtype: each integer/bool operand as JAX's default float
  (float64 under x64), as scipy transforms integers in float64, then promoted.

  An integer operand carries no float precision of its own: `int x complex64`
  is computed in complex128 (x64) and cast back to lax's complex64, so the
  FFT's rounding is not the single-precision one where scipy's is not.
  """
  return np.dtype(jnp.result_type(_inexact(dt1), _inexact(dt2)))


# scipy.signal.choose_conv_method's static rule (scipy PR 11031): fitted
# seconds per FFT operation and per direct multiply-add, and an offset, by
# mode; one table for 1-d inputs, one for N-d.
_SCIPY_COST_1D = {"full": (1.7649070e-9, 2.1414831e-10, -1e-3),
                  "valid": (1.89095737e-9, 2.1364985e-10, -1e-3),
                  "same": (3.2646654e-9, 2.8478277e-10, -1e-3)}
_SCIPY_COST_1D_SAME_LONG_IN2 = (3.21635404e-9, 1.1773253e-8, -1e-5)
_SCIPY_COST_ND = {"full": (1.99817e-9, 1.66174e-8, -1e-4),
                  "valid": (1.85927e-9, 2.11242e-8, -1e-4),
                  "same": (2.04735e-9, 1.55367e-8, -1e-4)}


def _scipy_prefers_fft(s1, s2, mode: str) -> bool:
  """True where `scipy.signal.choose_conv_method` (shapes only) picks 'fft'.

  FFT operations are `3 N log N` for the full output size `N`; direct ones
  are the multiply-adds of the mode (1-d: the overlaps actually summed).
  """
  full = [a + b - 1 for a, b in zip(s1, s2)]
  n = math.prod(full)
  fft_ops = 3 * n * math.log(n)
  if len(s1) == 1:
    a, b = s1[0], s2[0]
    direct = {"full": a * b, "valid": (abs(a - b) + 1) * min(a, b),
              "same": a * b if a < b else a * b - (b // 2) * ((b + 1) // 2)}[mode]
    c_fft, c_direct, offset = (_SCIPY_COST_1D_SAME_LONG_IN2 if mode == "same" and b > a
                               else _SCIPY_COST_1D[mode])
  else:
    p1, p2 = math.prod(s1), math.prod(s2)
    out = {"full": n, "valid": math.prod(abs(a - b) + 1 for a, b in zip(s1, s2)),
           "same": p1}[mode]
    direct = p1 * p2 if mode == "same" else min(p1, p2) * out
    c_fft, c_direct, offset = _SCIPY_COST_ND[mode]
  return c_fft * fft_ops < c_direct * direct + offset


def _reverse_conj(x):
  x = jnp.flip(x)
  return jnp.conj(x) if jnp.iscomplexobj(x) else x


# --- the shared core ----------------------------------------------------------

def _convolve(in1, in2, mode, method, axes, fn, *, all_axes_swap=False):
  """Convolution of `in1` with `in2` over `axes`; `method` in direct/fft/oa/auto.

  `all_axes_swap` applies `scipy.signal.convolve`'s 'valid' check over every
  axis (before length-1 axes are set aside), as scipy does when no `axes`.
  """
  in1, in2 = jnp.asarray(in1), jnp.asarray(in2)
  if in1.ndim == 0 and in2.ndim == 0:
    return in1 * in2
  if in1.ndim != in2.ndim:
    raise ValueError(f"{fn}: `in1` and `in2` must have the same number of dimensions; "
                     f"got in1.shape={in1.shape} and in2.shape={in2.shape}.")
  given_axes = axes is not None
  axes = _normalize_axes(axes, in1.ndim, fn)
  rt = np.dtype(jnp.result_type(in1, in2))
  if in1.size == 0 or in2.size == 0:
    return jnp.zeros((0,), rt if method == "direct" else _inexact(rt))
  if all_axes_swap and mode == "valid" and _valid_swap(in1.shape, in2.shape, axes, fn):
    in1, in2 = in2, in1
  s1, s2 = in1.shape, in2.shape
  conv_axes = [a for a in axes if s1[a] != 1 and s2[a] != 1]
  other = [a for a in range(in1.ndim) if a not in conv_axes]
  if not all(s1[a] == s2[a] or s1[a] == 1 or s2[a] == 1 for a in other):
    raise ValueError(
        f"{fn}: the dimensions that are not convolved must be equal or 1 (they "
        f"broadcast); got in1.shape={tuple(s1)} and in2.shape={tuple(s2)} with axes="
        f"{tuple(axes) if given_axes else None}.")
  if mode == "valid" and _valid_swap(s1, s2, conv_axes, fn):
    in1, in2 = in2, in1
    s1, s2 = s2, s1
  if method == "auto" and not _scipy_prefers_fft(s1, s2, mode):
    method = "direct"  # where scipy sums directly (exactly, for integer-valued data)
  if mode == "same":
    # scipy centres the full result to in1's shape in *every* dimension: a
    # broadcast dim where only in2 is longer keeps in2's centre element.
    idx = tuple(slice((s2[a] - 1) // 2, (s2[a] - 1) // 2 + 1)
                if a in other and s1[a] == 1 and s2[a] > 1 else slice(None)
                for a in range(in1.ndim))
    in2 = in2[idx]
    s2 = in2.shape
  if method == "auto" and (not jnp.issubdtype(rt, jnp.inexact) or not conv_axes):
    method = "direct"  # exact for integers; nothing to transform
  return _grouped(in1, in2, conv_axes, other, mode, fn, rt, method)


def _layout(s1, s2, other):
  """Split the broadcast dims into batch (in1 only), groups (both), channels (in2 only)."""
  n_dims = [a for a in other if s1[a] > 1 and s2[a] == 1]
  g_dims = [a for a in other if s1[a] > 1 and s2[a] > 1]
  o_dims = [a for a in other if s1[a] == 1 and s2[a] > 1]
  ones = [a for a in other if s1[a] == 1 and s2[a] == 1]
  return n_dims, g_dims, o_dims, ones


def _pads(s2, conv_axes, mode):
  pads = []
  for a in conv_axes:
    k = s2[a]
    if mode == "full":
      pads.append((k - 1, k - 1))
    elif mode == "same":
      st = (k - 1) // 2
      pads.append((k - 1 - st, st))
    else:
      pads.append((0, 0))
  return tuple(pads)


_ENGINE_OA = {"fft": False, "oa": True, "auto": None}


def _grouped(in1, in2, conv_axes, other, mode, fn, rt, engine):
  """The broadcast convolution as one grouped correlation `(N, G, *s) x (G*O, 1, *k)`.

  Broadcast dims where only `in1` varies are the batch, where both vary the
  groups, where only `in2` varies the output channels per group; the kernel is
  flipped (convolution is correlation with the reversed kernel) and padded
  for the mode. `engine` 'auto' takes the FFT when the fft method's plan
  costs less (`fft.plans.cost`) than the direct multiply-adds.
  """
  s1, s2 = in1.shape, in2.shape
  out_dtype = rt if engine == "direct" else _inexact(rt)
  dtype = rt if engine == "direct" else _fft_dtype(in1.dtype, in2.dtype)
  in1, in2 = in1.astype(dtype), in2.astype(dtype)
  if not conv_axes:  # every axis broadcasts: a plain product
    return (in1 * in2).astype(out_dtype)
  n_dims, g_dims, o_dims, ones = _layout(s1, s2, other)
  nn = math.prod(s1[a] for a in n_dims)
  gg = math.prod(s1[a] for a in g_dims)
  oo = math.prod(s2[a] for a in o_dims)
  order = n_dims + g_dims + o_dims + ones + conv_axes
  x = jnp.transpose(in1, order).reshape(nn, gg, *[s1[a] for a in conv_axes])
  w = jnp.transpose(in2, [*g_dims, *o_dims, *n_dims, *ones, *conv_axes])
  w = w.reshape(gg * oo, 1, *[s2[a] for a in conv_axes])
  w = jnp.flip(w, axis=tuple(range(2, w.ndim)))
  g = make_geometry(fn, x, w, padding=_pads(s2, conv_axes, mode), groups=gg,
                    precision=lax.Precision.HIGHEST)
  if engine == "auto" and fft.plans.cost(fft.plan_conv(g)) >= g.flops:
    engine = "direct"
  if engine == "direct":
    y = lax.conv_general_dilated(x.astype(out_dtype), w.astype(out_dtype), g.stride,
                                 g.padding, feature_group_count=gg, precision=g.precision)
  else:
    y = fft.run(x, w, g, fft.plan_conv(g, _ENGINE_OA[engine])).astype(out_dtype)
  shape = ([s1[a] for a in n_dims] + [s1[a] for a in g_dims] + [s2[a] for a in o_dims]
           + [1] * len(ones) + list(y.shape[2:]))
  return jnp.transpose(y.reshape(shape), [int(a) for a in np.argsort(order)])


def _round_to(out, rt):
  """scipy.signal.convolve's rule: FFT results of integer inputs are rounded back.

  Integers wrap modulo `2**bits`, as the direct (integer) sums and scipy's
  cast do, rather than saturate as XLA's float-to-int conversion does: the
  rounded value is reduced into the widest signed integer's range in floating
  point (exact: both terms are multiples of the value's ulp), converted to
  that integer, then narrowed (integer narrowing wraps). bool is `!= 0`.
  """
  if rt.kind in "iub":
    out = jnp.round(out.real if jnp.iscomplexobj(out) else out)
  if rt.kind in "iu":
    wide = jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.int64))   # int32 without x64
    half = float(2 ** (8 * wide.itemsize - 1))
    turns = jnp.floor((out + half) / (2 * half))
    out = jnp.where(jnp.abs(out) < half, out, out - turns * (2 * half))
    out = out.astype(wide)
  return out.astype(rt)


# --- public functions ---------------------------------------------------------

def convolve(in1: ArrayLike, in2: ArrayLike, mode: str = "full", method: str = "auto",
             axes: int | Sequence[int] | None = None) -> Array:
  """Convolve two N-d arrays, as `scipy.signal.convolve`.

  `out[n] = sum_k in1[n - k] * in2[k]` over the convolved axes.

  Args:
    in1: first input, any shape.
    in2: second input, same number of dimensions as `in1`.
    mode: 'full' (every overlap, `s1 + s2 - 1` per axis), 'same' (the centre
      with `in1`'s shape) or 'valid' (full overlaps only, `|s1 - s2| + 1`).
      Default 'full'.
    method: 'auto' (direct, or the FFT where both scipy's
      `choose_conv_method` shape rule and the fft method's cost estimate
      prefer it; always direct for integer and bool inputs), 'direct' (`lax.conv_general_dilated` at
      HIGHEST precision), 'fft' (one transform per axis) or 'oa' (overlap-add).
      Default 'auto'. With 'fft'/'oa', integer results are rounded back to
      their dtype and wrap modulo `2**bits`, as scipy's do.
    axes: axes to convolve over (default all); the other dimensions must be
      equal or 1 and broadcast, as in `fftconvolve`.

  Returns:
    The convolution, dtype `result_type(in1, in2)`.

  Raises:
    TypeError: an input that is not an array, a number or a nested list of
      numbers (None, a string, a `jax.ShapeDtypeStruct`, a ragged list).
    ValueError: unknown `mode` or `method`; ranks differ; `axes` not an int
      or a sequence of ints (ValueError, as scipy), out of range, repeated or
      empty; non-convolved dimensions that do not broadcast;
      `mode='valid'` where neither input is at least as large as the other in
      every convolved axis.

  Example:
    >>> import jax.numpy as jnp, numpy as np, jaxconv
    >>> print(np.asarray(jaxconv.convolve(jnp.array([1, 2, 3]), jnp.array([0, 1, 2]))))
    [0 1 4 7 6]
  """
  fn = "jaxconv.convolve"
  in1, in2 = _check_args(fn, in1, in2, mode, method)
  rt = np.dtype(jnp.result_type(in1, in2))
  out = _convolve(in1, in2, mode, method, axes, fn, all_axes_swap=axes is None)
  return _round_to(out, rt) if method in ("fft", "oa") or out.dtype != rt else out


def correlate(in1: ArrayLike, in2: ArrayLike, mode: str = "full", method: str = "auto",
              axes: int | Sequence[int] | None = None) -> Array:
  """Cross-correlate two N-d arrays, as `scipy.signal.correlate`.

  `out[n] = sum_k in1[n + k] * conj(in2[k])`, i.e.
  `convolve(in1, conj(in2[::-1, ...]))`; the 'full' output's index 0 is lag
  `-(len(in2) - 1)`.

  Args:
    in1: first input.
    in2: second input, same number of dimensions.
    mode: 'full', 'same' or 'valid', as `convolve`. Default 'full'.
    method: 'auto', 'direct', 'fft' or 'oa', as `convolve`. Default 'auto'.
    axes: axes to correlate over (default all); others broadcast.

  Returns:
    The cross-correlation, dtype `result_type(in1, in2)`.

  Raises:
    TypeError, ValueError: as `convolve`.

  Example:
    >>> import jax.numpy as jnp, numpy as np, jaxconv
    >>> x, h = jnp.array([1, 2, 3]), jnp.array([0, 1, 2])
    >>> print(np.asarray(jaxconv.correlate(x, h)))     # lags -2 .. 2
    [2 5 8 3 0]
    >>> print(np.asarray(jaxconv.correlate(x, h, mode="same")))
    [5 8 3]
  """
  fn = "jaxconv.correlate"
  in1, in2 = _check_args(fn, in1, in2, mode, method)
  if in1.ndim == 0 and in2.ndim == 0:
    return in1 * (jnp.conj(in2) if jnp.iscomplexobj(in2) else in2)
  if in1.ndim != in2.ndim:
    raise ValueError(f"{fn}: `in1` and `in2` must have the same number of dimensions; "
                     f"got in1.shape={in1.shape} and in2.shape={in2.shape}.")
  ax = _normalize_axes(axes, in2.ndim, fn)
  rev = jnp.flip(in2, axis=ax)
  rev = jnp.conj(rev) if jnp.iscomplexobj(rev) else rev
  rt = np.dtype(jnp.result_type(in1, in2))
  out = _convolve(in1, rev, mode, method, axes, fn, all_axes_swap=axes is None)
  return _round_to(out, rt) if method in ("fft", "oa") or out.dtype != rt else out


def fftconvolve(in1: ArrayLike, in2: ArrayLike, mode: str = "full",
                axes: int | Sequence[int] | None = None) -> Array:
  """Convolve two N-d arrays by FFT, as `scipy.signal.fftconvolve`.

  One real (or complex) transform per convolved axis, of a 2·3·5·7-smooth
  length; 'same' and 'valid' transform only what they need.

  Args:
    in1: first input.
    in2: second input, same number of dimensions.
    mode: 'full', 'same' or 'valid'. Default 'full'.
    axes: axes to convolve over (default all); the other dimensions must be
      equal or 1 and broadcast.

  Returns:
    The convolution, in the inexact dtype of `result_type(in1, in2)`.

  Raises:
    TypeError, ValueError: as `convolve`.

  Example:
    >>> import jax.numpy as jnp, numpy as np, jaxconv
    >>> x = jnp.array([1.0, 2.0, 3.0]); h = jnp.array([0.0, 1.0, 0.5])
    >>> y = jaxconv.fftconvolve(x, h)  # FFT rounding: ~1e-7 where exact is 0
    >>> print(np.round(np.asarray(y), 3) + 0.0)  # + 0.0 turns -0. into 0.
    [0.  1.  2.5 4.  1.5]
  """
  fn = "jaxconv.fftconvolve"
  in1, in2 = _check_args(fn, in1, in2, mode)
  return _convolve(in1, in2, mode, "fft", axes, fn)


def oaconvolve(in1: ArrayLike, in2: ArrayLike, mode: str = "full",
               axes: int | Sequence[int] | None = None) -> Array:
  """Convolve two N-d arrays by overlap-add, as `scipy.signal.oaconvolve`.

  The longer input is cut into blocks along each convolved axis where that
  is cheaper (block size by a cost estimate), each block is convolved by FFT
  with the other input, and the blocks' results are added at their offsets.
  Falls back to one transform where a single block is best, as scipy does.

  Args:
    in1, in2, mode, axes: as `fftconvolve` (mode default 'full', axes default
      all, the others broadcast).

  Returns:
    As `fftconvolve`.

  Raises:
    TypeError, ValueError: as `convolve`.

  Example:
    >>> import jax.numpy as jnp, numpy as np, jaxconv
    >>> x = jnp.ones(1000); h = jnp.ones(3) / 3      # a moving average
    >>> y = jaxconv.oaconvolve(x, h, mode="valid")
    >>> with jnp.printoptions(precision=3, suppress=True):
    ...   print(y.shape, np.asarray(y)[:4])
    (998,) [1. 1. 1. 1.]
  """
  fn = "jaxconv.oaconvolve"
  in1, in2 = _check_args(fn, in1, in2, mode)
  return _convolve(in1, in2, mode, "oa", axes, fn)
