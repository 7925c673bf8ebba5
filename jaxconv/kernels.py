"""Classic image-processing filters, as arrays ready for `jaxconv.conv`.

Every function returns a plain 2-D (or, where it takes `ndim`, N-d) filter of
shape `(kh, kw)`; lift it to a convolution weight `(C_out, C_in, kh, kw)` (or a
depthwise `(C, 1, kh, kw)` for `groups=C`) with `as_conv_weight`. The values are
the textbook ones of seed 001 exactly:

================  ===========================================================
`sobel("x")`      `[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]` (G_x); `"y"`: its transpose
`prewitt("x")`    `[[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]]`; `"y"`: its transpose
`laplacian(4)`    `[[0, -1, 0], [-1, 4, -1], [0, -1, 0]]`
`laplacian(8)`    `[[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]`
`sharpen()`       `[[0, -1, 0], [-1, 5, -1], [0, -1, 0]]`
`binomial(3)`     `[[1, 2, 1], [2, 4, 2], [1, 2, 1]] / 16` (the seed's "Gaussian blur")
`identity(3)`     `[[0, 0, 0], [0, 1, 0], [0, 0, 0]]`
`box(3)`          `ones((3, 3)) / 9`
`gaussian(5, 1.)` sampled, normalised Gaussian
================  ===========================================================

Orientation: a 2-D filter indexes `[row, column]` = `[y, x]`, with `y` growing
downwards, as the last two axes of an `(N, C, H, W)` image. The derivative
filters are oriented for *cross-correlation*, which is what `jaxconv.conv`
computes by default (`flip=False`, like PyTorch and `lax`): `sobel("x")` gives a
positive response where intensity grows with the column index. Under true
convolution (`flip=True`) the filter is rotated by 180 degrees, which negates
every antisymmetric filter (Sobel, Prewitt) and leaves the symmetric ones
unchanged.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from ._geometry import (array_arg, as_jax, check_bool, dtype_arg, is_int, positive_int,
                        positive_real)
from ._typing import Array, ArrayLike, DTypeLike

__all__ = [
    "as_conv_weight",
    "binomial",
    "box",
    "gaussian",
    "identity",
    "laplacian",
    "prewitt",
    "sharpen",
    "sobel",
]

_AXES = {"x": 1, "y": 0, 1: 1, -1: 1, 0: 0, -2: 0}


# --- validation helpers (static Python values only) --------------------------

def _axis(fn: str, axis) -> int:
  """'x'/'y' or an axis of a 2-D array -> 1 (columns, x) or 0 (rows, y)."""
  key = axis.lower() if isinstance(axis, str) else axis
  if isinstance(axis, str) or is_int(axis):
    if key in _AXES:
      return _AXES[key]
    raise ValueError(
        f"{fn}: `axis` must be 'x' (or 1, -1: along columns) or 'y' (or 0, -2: "
        f"along rows); got axis={axis!r}.")
  raise TypeError(f"{fn}: `axis` must be 'x', 'y' or an int; got axis={axis!r}.")


def _size(fn: str, size, *, odd: bool) -> int:
  size = positive_int(size, "size", fn)
  if odd and size % 2 == 0:
    raise ValueError(
        f"{fn}: `size` must be odd so the filter has a centre tap; got size={size}.")
  return int(size)


def _ndim(fn: str, ndim) -> int:
  return positive_int(ndim, "ndim", fn)


def _inexact(fn: str, dtype) -> np.dtype:
  dt = dtype_arg(dtype, fn)
  if not jnp.issubdtype(dt, jnp.inexact):
    raise TypeError(
        f"{fn}: `dtype` must be a floating or complex dtype (the taps are "
        f"fractions); got dtype={dt}.")
  return dt


def _derivative(fn: str, axis, smooth, dtype) -> jnp.ndarray:
  """3x3 `[-1, 0, 1]` difference along `axis`, smoothed by `smooth` across it."""
  gx = np.outer(smooth, [-1, 0, 1])
  return _array(fn, gx if _axis(fn, axis) == 1 else gx.T, dtype)


def _fractional(fn: str, size, ndim, dtype) -> tuple[int, int, np.dtype]:
  """Validate the arguments of a filter of fractional taps summing to 1 (any size)."""
  return _size(fn, size, odd=False), _ndim(fn, ndim), _inexact(fn, dtype)


def _outer(taps: np.ndarray, ndim: int) -> np.ndarray:
  """Separable N-d filter: the outer product of `ndim` copies of 1-D `taps`."""
  out = taps
  for _ in range(ndim - 1):
    out = np.multiply.outer(out, taps)
  return out


def _array(fn: str, values: np.ndarray, dtype) -> jnp.ndarray:
  return jnp.asarray(values, dtype=dtype_arg(dtype, fn))


# --- filters -----------------------------------------------------------------

def sobel(axis: int | str, *, dtype: DTypeLike = jnp.float32) -> Array:
  """The 3x3 Sobel derivative filter along one axis.

  `sobel("x")` is seed 001's `G_x = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]`: a
  derivative along columns (x, the last image axis) smoothed along rows, so it
  responds to *vertical* edges. `sobel("y")` is its transpose `G_y`, a
  derivative along rows (y, the second-to-last axis, growing downwards) that
  responds to *horizontal* edges. Signs are for cross-correlation
  (`jaxconv.conv`'s default): the response is positive where intensity grows
  with the index. The seed's `nn.Conv2d` example uses `-G_x`, which is also
  `G_x` under true convolution (`flip=True`).

  Args:
    axis: `"x"` (or `1`, `-1`) for `G_x`; `"y"` (or `0`, `-2`) for `G_y`.
    dtype: any dtype (the taps are integers). Default float32.

  Returns:
    A `(3, 3)` array.

  Raises:
    ValueError: an unknown `axis`.
    TypeError: `axis` is neither a string nor an int, or `dtype` is not a dtype.

  Example:
    >>> import numpy as np
    >>> from jaxconv import kernels
    >>> print(np.asarray(kernels.sobel("x")))
    [[-1.  0.  1.]
     [-2.  0.  2.]
     [-1.  0.  1.]]
    >>> print(np.asarray(kernels.sobel("y", dtype="int32")))
    [[-1 -2 -1]
     [ 0  0  0]
     [ 1  2  1]]
  """
  return _derivative("jaxconv.kernels.sobel", axis, [1, 2, 1], dtype)


def prewitt(axis: int | str, *, dtype: DTypeLike = jnp.float32) -> Array:
  """The 3x3 Prewitt derivative filter along one axis.

  Like `sobel` with uniform (`[1, 1, 1]`) instead of `[1, 2, 1]` smoothing:
  `prewitt("x") = [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]]`, `prewitt("y")` its
  transpose. Same axis and sign conventions as `sobel`.

  Args:
    axis, dtype: as `sobel` (`"x"`: derivative along columns). Default dtype
      float32.

  Returns:
    A `(3, 3)` array.

  Raises:
    ValueError, TypeError: as `sobel`.

  Example:
    >>> import numpy as np
    >>> from jaxconv import kernels
    >>> print(np.asarray(kernels.prewitt("y")))
    [[-1. -1. -1.]
     [ 0.  0.  0.]
     [ 1.  1.  1.]]
  """
  return _derivative("jaxconv.kernels.prewitt", axis, [1, 1, 1], dtype)


def laplacian(neighbours: int = 4, *, dtype: DTypeLike = jnp.float32) -> Array:
  """The 3x3 discrete Laplacian edge filter (positive centre, as in seed 001).

  `neighbours=4`: `[[0, -1, 0], [-1, 4, -1], [0, -1, 0]]`;
  `neighbours=8`: `[[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]`.
  This is the sign convention of the seed (and of most edge-detection texts):
  the *negative* of the finite-difference Laplacian operator, so it is zero on
  any linear ramp and positive on a bright isolated point.

  Args:
    neighbours: 4 (edge-adjacent) or 8 (also diagonal). Default 4.
    dtype: any dtype. Default float32.

  Returns:
    A `(3, 3)` array.

  Raises:
    ValueError: `neighbours` is not 4 or 8.
    TypeError: `dtype` is not a dtype.

  Example:
    >>> import numpy as np
    >>> from jaxconv import kernels
    >>> print(np.asarray(kernels.laplacian(4)))
    [[ 0. -1.  0.]
     [-1.  4. -1.]
     [ 0. -1.  0.]]
  """
  fn = "jaxconv.kernels.laplacian"
  if not (is_int(neighbours) and neighbours in (4, 8)):
    raise ValueError(f"{fn}: `neighbours` must be 4 or 8; got neighbours={neighbours!r}.")
  if neighbours == 4:
    k = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]])
  else:
    k = np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]])
  return _array(fn, k, dtype)


def sharpen(*, dtype: DTypeLike = jnp.float32) -> Array:
  """The 3x3 sharpening filter `[[0, -1, 0], [-1, 5, -1], [0, -1, 0]]`.

  Equal to `identity(3) + laplacian(4)`: the image plus its edges.

  Args:
    dtype: any dtype. Default float32.

  Returns:
    A `(3, 3)` array.

  Raises:
    TypeError: `dtype` is not a dtype.

  Example:
    >>> import numpy as np
    >>> from jaxconv import kernels
    >>> print(np.asarray(kernels.sharpen()))
    [[ 0. -1.  0.]
     [-1.  5. -1.]
     [ 0. -1.  0.]]
  """
  return _array("jaxconv.kernels.sharpen", np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
                dtype)


def identity(size: int = 3, *, ndim: int = 2, dtype: DTypeLike = jnp.float32) -> Array:
  """The identity filter: a single 1 at the centre of a `size`-wide cube of zeros.

  With `padding=size // 2` (or `"SAME"`) the convolution returns its input.

  Args:
    size: odd, positive filter width. Default 3.
    ndim: number of spatial dims. Default 2.
    dtype: any dtype. Default float32.

  Returns:
    An array of shape `(size,) * ndim`.

  Raises:
    TypeError: `size` or `ndim` is not an int, or `dtype` is not a dtype.
    ValueError: `size` is not positive or not odd, or `ndim` is not positive.

  Example:
    >>> import numpy as np
    >>> from jaxconv import kernels
    >>> print(np.asarray(kernels.identity()))
    [[0. 0. 0.]
     [0. 1. 0.]
     [0. 0. 0.]]
  """
  fn = "jaxconv.kernels.identity"
  n = _size(fn, size, odd=True)
  d = _ndim(fn, ndim)
  taps = np.zeros(n, dtype=np.int64)
  taps[n // 2] = 1
  return _array(fn, _outer(taps, d), dtype)


def box(size: int = 3, *, ndim: int = 2, dtype: DTypeLike = jnp.float32) -> Array:
  """The box (moving-average) filter: `ones((size,) * ndim) / size**ndim`.

  Args:
    size: positive filter width (even sizes are allowed). Default 3.
    ndim: number of spatial dims. Default 2.
    dtype: a floating or complex dtype. Default float32.

  Returns:
    An array of shape `(size,) * ndim` summing to 1.

  Raises:
    TypeError: `size` or `ndim` is not an int, or `dtype` is not inexact.
    ValueError: `size` or `ndim` is not positive.

  Example:
    >>> import numpy as np
    >>> from jaxconv import kernels
    >>> print(np.asarray(kernels.box(2)))
    [[0.25 0.25]
     [0.25 0.25]]
  """
  fn = "jaxconv.kernels.box"
  n, d, dt = _fractional(fn, size, ndim, dtype)
  return _array(fn, np.full((n,) * d, 1.0 / n**d), dt)


def binomial(size: int = 3, *, ndim: int = 2, dtype: DTypeLike = jnp.float32) -> Array:
  """The binomial blur: outer products of Pascal's-triangle rows, normalised.

  `binomial(3)` is seed 001's "Gaussian blur" `[[1, 2, 1], [2, 4, 2], [1, 2, 1]]
  / 16` exactly; larger sizes approach a Gaussian of variance `(size - 1) / 4`.

  Args:
    size, ndim, dtype: as `box`. Defaults 3, 2, float32.

  Returns:
    An array of shape `(size,) * ndim` summing to 1.

  Raises:
    TypeError, ValueError: as `box`.

  Example:
    >>> import numpy as np
    >>> from jaxconv import kernels
    >>> print(np.asarray(kernels.binomial(3) * 16))
    [[1. 2. 1.]
     [2. 4. 2.]
     [1. 2. 1.]]
  """
  fn = "jaxconv.kernels.binomial"
  n, d, dt = _fractional(fn, size, ndim, dtype)
  taps = np.array([math.comb(n - 1, i) for i in range(n)], dtype=np.float64)
  return _array(fn, _outer(taps / taps.sum(), d), dt)


def gaussian(size: int, sigma: float, *, ndim: int = 2,
             dtype: DTypeLike = jnp.float32) -> Array:
  """A sampled Gaussian filter, normalised to sum to 1.

  Taps are `exp(-(i - size // 2)**2 / (2 * sigma**2))` along each axis (a
  separable outer product), divided by their sum. For the seed's integer
  "Gaussian blur" use `binomial(3)`; `gaussian(3, 1 / sqrt(2 ln 2))` equals it
  up to rounding.

  Args:
    size: odd, positive filter width (the filter is centred).
    sigma: standard deviation in pixels, a finite number > 0.
    ndim: number of spatial dims. Default 2.
    dtype: a floating or complex dtype. Default float32.

  Returns:
    An array of shape `(size,) * ndim` summing to 1.

  Raises:
    TypeError: `size`, `ndim` not ints, `sigma` not a Python/NumPy real
      number, or `dtype` not inexact.
    ValueError: `size` not odd or not positive, `sigma` not finite and > 0, or
      `ndim` not positive.

  Example:
    >>> import numpy as np
    >>> from jaxconv import kernels
    >>> k = kernels.gaussian(3, 1.0)
    >>> with np.printoptions(precision=3):
    ...   print(np.asarray(k))
    [[0.075 0.124 0.075]
     [0.124 0.204 0.124]
     [0.075 0.124 0.075]]
  """
  fn = "jaxconv.kernels.gaussian"
  n = _size(fn, size, odd=True)
  sigma = positive_real(sigma, "sigma", fn)
  d = _ndim(fn, ndim)
  dt = _inexact(fn, dtype)
  r = np.arange(n, dtype=np.float64) - n // 2
  taps = np.exp(-(r**2) / (2.0 * sigma ** 2))
  return _array(fn, _outer(taps / taps.sum(), d), dt)


# --- lifting a filter to a convolution weight --------------------------------

def as_conv_weight(kernel: ArrayLike, in_channels: int = 1, out_channels: int | None = None, *,
                   depthwise: bool = False) -> Array:
  """Lift one spatial filter to a convolution weight for `jaxconv.conv`.

  The same filter is placed in every `(output, input)` channel slot:

  * `depthwise=False` -> `(C_out, C_in, *k)` for `groups=1`. Each output
    channel sums the filter's response over all input channels (e.g. a
    grayscale edge map of an RGB image with `out_channels=1`).
  * `depthwise=True` -> `(C_out, 1, *k)` for `groups=in_channels`, filtering
    every channel on its own (e.g. blur each of R, G, B). `out_channels` must
    be a multiple of `in_channels` (a channel multiplier); default
    `in_channels`.

  Args:
    kernel: a filter of shape `k = (kh, kw)` (any rank >= 1 works), array-like.
    in_channels: `C_in`, the channels of the input image. Default 1.
    out_channels: `C_out`. Default 1, or `in_channels` when `depthwise`.
    depthwise: build a `groups=in_channels` weight. Default False.

  Returns:
    `(C_out, C_in, *k)`, or `(C_out, 1, *k)` when `depthwise`, in `kernel`'s dtype.

  Raises:
    TypeError: `kernel` is not an array or a nested list of numbers (a
      `jax.ShapeDtypeStruct`, a ragged list), a channel count is not an int, or
      `depthwise` is not a bool.
    ValueError: `kernel` is a scalar, a channel count is not positive, or
      `out_channels` is not a multiple of `in_channels` when `depthwise`.

  Example:
    >>> import jax.numpy as jnp
    >>> from jax import lax
    >>> from jaxconv import kernels
    >>> w = kernels.as_conv_weight(kernels.sobel("x"))
    >>> w.shape
    (1, 1, 3, 3)
    >>> x = jnp.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    >>> print(lax.conv(x, w, (1, 1), "VALID")[0, 0])
    [[8. 8.]
     [8. 8.]]
    >>> kernels.as_conv_weight(kernels.binomial(3), 3, depthwise=True).shape
    (3, 1, 3, 3)
  """
  fn = "jaxconv.kernels.as_conv_weight"
  if not hasattr(kernel, "shape") and not isinstance(kernel, (list, tuple)):
    raise TypeError(
        f"{fn}: `kernel` must be an array (or nested list) of filter taps; "
        f"got {type(kernel).__name__}.")
  k = as_jax(array_arg(kernel, "kernel", fn, array_like=True))
  if k.ndim < 1:
    raise ValueError(
        f"{fn}: `kernel` must have at least one spatial dim; got kernel.shape="
        f"{tuple(k.shape)}.")
  positive_int(in_channels, "in_channels", fn)
  if out_channels is not None:
    positive_int(out_channels, "out_channels", fn)
  check_bool(depthwise, "depthwise", fn)
  if depthwise:
    c_out = in_channels if out_channels is None else int(out_channels)
    if c_out % in_channels:
      raise ValueError(
          f"{fn}: with depthwise=True `out_channels` must be a multiple of "
          f"`in_channels` (groups=in_channels); got out_channels={c_out}, "
          f"in_channels={in_channels}.")
    return jnp.broadcast_to(k, (c_out, 1, *k.shape))
  c_out = 1 if out_channels is None else int(out_channels)
  return jnp.broadcast_to(k, (c_out, int(in_channels), *k.shape))
