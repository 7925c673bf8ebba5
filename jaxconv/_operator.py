"""Convolution as a matrix and as a linear operator.

A convolution is linear in its input, so it is a matrix: 1-D correlation with a
kernel is a banded Toeplitz matrix whose rows are shifted copies of the kernel
(seed 001), 2-D is doubly-block Toeplitz (a Toeplitz matrix of Toeplitz blocks,
seed 002), N-d is multilevel Toeplitz, and circular padding makes every level
circulant (doubly-block circulant). This module writes those matrices out
explicitly and offers a matrix-free view, `conv_operator`, whose singular
values come exactly from the FFT for circular padding (Sedghi, Gupta & Long,
"The Singular Values of Convolutional Layers", ICLR 2019) and whose spectral
norm comes from power iteration otherwise.

Matrices are built from the kernel's structure, never by differentiating the
convolution: per spatial dim a static 0/1 table says which input index each
(output index, kernel tap) pair reads, and one `einsum` places the kernel
values. Everything is differentiable in the kernel.
"""

from __future__ import annotations

import dataclasses
import math
import string
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._geometry import Geometry, is_int, make_geometry
from ._padding import method_geometry, pad_mode

DEFAULT_MAX_ELEMENTS = 2**26
"""Default element budget of a dense matrix (64 Mi elements: 256 MiB in float32)."""

_TOEPLITZ_MODES = ("valid", "full", "same")


# --- validation helpers -------------------------------------------------------

def _check_budget(fn: str, rows: int, cols: int, max_elements, dtype) -> None:
  if not is_int(max_elements) or max_elements < 1:
    raise ValueError(
        f"{fn}: `max_elements` must be a positive int; got max_elements={max_elements!r}.")
  size = rows * cols
  if size > max_elements:
    mib = size * np.dtype(dtype).itemsize / 2**20
    raise ValueError(
        f"{fn}: the matrix would be {rows} x {cols} = {size} elements ({mib:,.0f} MiB as "
        f"{np.dtype(dtype).name}), over the budget max_elements={max_elements}; pass a "
        "larger `max_elements`, or use `jaxconv.conv_operator` for matrix-free products.")


def _as_kernel_1d(k, fn: str):
  k = jnp.asarray(k)
  if k.ndim != 1 or k.shape[0] < 1:
    raise ValueError(
        f"{fn}: `k` must be a non-empty 1-D kernel; got k.shape={tuple(k.shape)}.")
  return k


def _check_n(n, fn: str) -> int:
  if not is_int(n):
    raise TypeError(f"{fn}: `n` must be an int (the input length); got n={n!r}.")
  if n < 1:
    raise ValueError(f"{fn}: `n` must be positive (the input length); got n={n}.")
  return int(n)


def _check_flip(flip, fn: str) -> None:
  if not isinstance(flip, (bool, np.bool_)):
    raise TypeError(f"{fn}: `flip` must be a bool; got flip={flip!r}.")


# --- 1-D matrices -------------------------------------------------------------

def toeplitz_matrix(k, n, mode="valid", *, flip=False,
                    max_elements=DEFAULT_MAX_ELEMENTS):
  """The Toeplitz matrix of a 1-D correlation (or convolution) with kernel `k`.

  `T @ x` equals `scipy.signal.correlate(x, k, mode)` (or, with `flip=True`,
  `scipy.signal.convolve(x, k, mode)`) for every `x` of length `n`. Entry
  `T[i, j]` depends only on `j - i`: the 'valid' matrix is the banded form of
  seed 001 whose rows are shifted copies of the kernel, and the 'full' matrix
  with `flip=True` is the tall form of seed 002 whose columns are shifted
  copies of the kernel.

  Args:
    k: kernel, shape `(m,)`.
    n: input length, a positive int (`n >= m` for 'valid').
    mode: 'valid' (`n - m + 1` rows), 'full' (`n + m - 1` rows) or 'same' (`n`
      rows, centred as scipy does; for odd `m` this is `conv(padding='SAME')`).
      Default 'valid'.
    flip: True for true convolution (kernel reversed), False for the
      cross-correlation deep learning calls convolution. Default False.
    max_elements: refuse to build a matrix with more elements. Default 2**26.

  Returns:
    `(rows, n)` matrix in `k`'s dtype.

  Raises:
    TypeError: `n` not an int, or `flip` not a bool.
    ValueError: `k` not a non-empty 1-D array, `n < 1`, `n < m` for 'valid', an
      unknown `mode`, or a matrix over `max_elements`.

  Example:
    >>> import jax.numpy as jnp, numpy as np, jaxconv
    >>> print(np.asarray(jaxconv.toeplitz_matrix(jnp.array([1, 2, 3]), 5)))
    [[1 2 3 0 0]
     [0 1 2 3 0]
     [0 0 1 2 3]]
    >>> print(np.asarray(jaxconv.toeplitz_matrix(jnp.array([1, 2, 3]), 3, "full",
    ...                                          flip=True)))
    [[1 0 0]
     [2 1 0]
     [3 2 1]
     [0 3 2]
     [0 0 3]]
  """
  fn = "jaxconv.toeplitz_matrix"
  k = _as_kernel_1d(k, fn)
  n = _check_n(n, fn)
  _check_flip(flip, fn)
  m = k.shape[0]
  if not isinstance(mode, str) or mode not in _TOEPLITZ_MODES:
    raise ValueError(
        f"{fn}: unknown `mode`; got mode={mode!r}, expected one of "
        f"{', '.join(repr(s) for s in _TOEPLITZ_MODES)}.")
  if mode == "valid" and n < m:
    raise ValueError(
        f"{fn}: mode='valid' needs n >= len(k); got n={n} and len(k)={m}.")
  # Correlation: y[i] = sum_t k[t] x[i + t - offset]; 'same' keeps the centre of
  # 'full' as scipy does (start (m - 1) // 2 into the full output).
  rows, offset = {"valid": (n - m + 1, 0), "full": (n + m - 1, m - 1),
                  "same": (n, m - 1 - (m - 1) // 2)}[mode]
  _check_budget(fn, rows, n, max_elements, k.dtype)
  if flip:
    k = k[::-1]
  tap = np.arange(n)[None, :] - np.arange(rows)[:, None] + offset  # static
  inside = (tap >= 0) & (tap < m)
  return jnp.where(inside, k[np.clip(tap, 0, m - 1)], jnp.zeros((), k.dtype))


def circulant_matrix(k, n, *, flip=False, max_elements=DEFAULT_MAX_ELEMENTS):
  """The `n x n` circulant matrix of a circular correlation with kernel `k`.

  `(C @ x)[i] = sum_t k[t] * x[(i + t) % n]` (circular cross-correlation, as
  `conv(..., padding=(0, m - 1), padding_mode='circular')`); with `flip=True`,
  `(C @ x)[i] = sum_t k[t] * x[(i - t) % n]`, the classical circulant matrix
  whose first column is `k` zero-padded to `n`. Taps that wrap onto the same
  index (`m > n`) are summed. Every circulant matrix is diagonalised by the
  DFT; its eigenvalues are the DFT of the (folded) kernel.

  Args:
    k: kernel, shape `(m,)`; any `m >= 1`.
    n: input length, a positive int.
    flip: True for circular convolution, False for circular correlation.
      Default False.
    max_elements: refuse to build a matrix with more elements. Default 2**26.

  Returns:
    `(n, n)` matrix in `k`'s dtype.

  Raises:
    TypeError: `n` not an int, or `flip` not a bool.
    ValueError: `k` not a non-empty 1-D array, `n < 1`, or over `max_elements`.

  Example:
    >>> import jax.numpy as jnp, numpy as np, jaxconv
    >>> print(np.asarray(jaxconv.circulant_matrix(jnp.array([1, 2, 3]), 4)))
    [[1 2 3 0]
     [0 1 2 3]
     [3 0 1 2]
     [2 3 0 1]]
  """
  fn = "jaxconv.circulant_matrix"
  k = _as_kernel_1d(k, fn)
  n = _check_n(n, fn)
  _check_flip(flip, fn)
  _check_budget(fn, n, n, max_elements, k.dtype)
  m = k.shape[0]
  # Fold the kernel onto one period: taps t and t + n read the same index.
  periods = -(-m // n)
  folded = jnp.pad(k, (0, periods * n - m)).reshape(periods, n).sum(axis=0)
  i, j = np.arange(n)[:, None], np.arange(n)[None, :]
  return folded[(i - j) % n if flip else (j - i) % n]


# --- N-d matrices -------------------------------------------------------------

def _operator_geometry(fn: str, w, input_shape, *, stride, padding, dilation,
                       lhs_dilation, groups, padding_mode, flip, precision=None):
  """Validate `input_shape` against `w` and build the Geometry (batch 1)."""
  w_shape = getattr(w, "shape", None)
  if w_shape is None or getattr(w, "dtype", None) is None:
    raise TypeError(f"{fn}: `w` must be an array; got {type(w).__name__}.")
  rank = len(w_shape) - 2
  if rank < 1:
    raise ValueError(
        f"{fn}: `w` must be (C_out, C_in // groups, *kernel) with at least one spatial "
        f"dim; got w.shape={tuple(w_shape)}.")
  if (isinstance(input_shape, str) or not isinstance(input_shape, Sequence)
      or not all(is_int(s) for s in input_shape)):
    raise TypeError(
        f"{fn}: `input_shape` must be a tuple of ints, (C_in, *spatial) or "
        f"(N, C_in, *spatial); got input_shape={input_shape!r}.")
  input_shape = tuple(int(s) for s in input_shape)
  if len(input_shape) == rank + 2:
    input_shape = input_shape[1:]  # the batch size does not change the matrix
  elif len(input_shape) != rank + 1:
    raise ValueError(
        f"{fn}: `input_shape` must be (C_in, *spatial) with {rank} spatial dims to match "
        f"w.shape={tuple(w_shape)} (or (N, C_in, *spatial)); got input_shape="
        f"{input_shape} of length {len(input_shape)}.")
  x = jax.ShapeDtypeStruct((1, *input_shape), w.dtype)
  return make_geometry(fn, x, w, stride=stride, padding=padding, dilation=dilation,
                       lhs_dilation=lhs_dilation, groups=groups,
                       padding_mode=padding_mode, flip=flip, precision=precision)


def _source_index(g: Geometry, dim: int) -> np.ndarray:
  """`(out, k)` table: the input index output `o` reads at tap `t`, or -1 (a zero).

  Position `o * stride + t * dilation` of the padded (and lhs-dilated) input is
  mapped back to the unpadded input by the padding mode.
  """
  n = g.in_spatial[dim]
  lo, _ = g.padding[dim]
  ld = g.lhs_dilation[dim]
  out, k = g.out_spatial[dim], g.kernel_size[dim]
  q = (np.arange(out)[:, None] * g.stride[dim] + np.arange(k)[None, :] * g.dilation[dim]
       - lo)
  mode = g.padding_mode
  if mode == "zeros":
    i = np.floor_divide(q, ld)
    return np.where((q % ld == 0) & (i >= 0) & (i < n), i, -1)
  if mode == "circular":
    return q % n
  if mode == "replicate":
    return np.clip(q, 0, n - 1)
  # reflect (edge excluded); make_geometry keeps the padding below n.
  q = np.abs(q)
  return np.where(q >= n, 2 * (n - 1) - q, q)


def _one_hot_tables(g: Geometry, dtype) -> list[np.ndarray]:
  """Per spatial dim, the static `(out, k, n)` 0/1 table of `_source_index`."""
  tables = []
  for dim in range(g.rank):
    src = _source_index(g, dim)
    tables.append((src[:, :, None] == np.arange(g.in_spatial[dim])).astype(dtype))
  return tables


def _dense_matrix(w, g: Geometry):
  """Build the `(C_out * prod(out), C_in * prod(in))` matrix of geometry `g`."""
  if g.flip:
    w = jnp.flip(w, axis=tuple(range(2, w.ndim)))
  groups, og, cg = g.groups, g.out_channels_per_group, g.in_channels_per_group
  r = g.rank
  letters = iter(string.ascii_letters)
  G, H, E, C = (next(letters) for _ in range(4))
  K = [next(letters) for _ in range(r)]
  O = [next(letters) for _ in range(r)]
  I = [next(letters) for _ in range(r)]
  spec = (f"{G}{E}{C}{''.join(K)},{G}{H},"
          + ",".join(f"{o}{k}{i}" for o, k, i in zip(O, K, I))
          + f"->{G}{E}{''.join(O)}{H}{C}{''.join(I)}")
  wg = w.reshape(groups, og, cg, *g.kernel_size)
  eye = np.eye(groups, dtype=w.dtype)  # groups make the matrix block diagonal
  m = jnp.einsum(spec, wg, eye, *_one_hot_tables(g, w.dtype),
                 precision=lax.Precision.HIGHEST)
  return m.reshape(g.out_channels * math.prod(g.out_spatial),
                   g.in_channels * math.prod(g.in_spatial))


def conv_matrix(w, input_shape, *, stride=1, padding=0, dilation=1, groups=1,
                padding_mode="zeros", flip=False, lhs_dilation=1,
                max_elements=DEFAULT_MAX_ELEMENTS):
  """The dense matrix `M` of a convolution: `conv(x).reshape(N, -1) == x.reshape(N, -1) @ M.T`.

  Rows are ordered `(C_out, *out)` and columns `(C_in, *in)`, each row-major,
  so `M @ x[n].ravel() == conv(x)[n].ravel()`. For one channel in 1-D, `M` is
  the banded Toeplitz matrix of seed 001; in 2-D it is doubly-block Toeplitz
  (a block-Toeplitz matrix whose blocks are the Toeplitz matrices of the kernel
  rows, seed 002); in N-d multilevel Toeplitz; with `padding_mode='circular'`
  and an output as large as the input, doubly-block circulant. Channels make a
  `C_out x C_in` grid of such blocks, and groups make it block diagonal.

  The matrix is assembled from the kernel's structure (a static 0/1 table per
  spatial dim saying which input index each output index reads at each tap,
  contracted with `w` in one `einsum`), not by differentiating the
  convolution; it is differentiable in `w`.

  Args:
    w: kernel `(C_out, C_in // groups, *kernel)`.
    input_shape: `(C_in, *spatial)`, or `(N, C_in, *spatial)` whose batch size
      is ignored; its rank must match `w`'s.
    stride: int or per-dim ints. Default 1.
    padding: as `jaxconv.conv`: int, per-dim ints, `(lo, hi)` pairs or
      'VALID'/'SAME'/'SAME_LOWER'/'FULL'. Default 0.
    dilation: kernel dilation. Default 1.
    groups: feature groups. Default 1.
    padding_mode: 'zeros', 'reflect', 'replicate' or 'circular'. Default 'zeros'.
    flip: True for true convolution. Default False.
    lhs_dilation: input dilation (the matrix of a transposed convolution).
      Default 1.
    max_elements: refuse to build a matrix with more elements (the error says
      how large it would be). Default 2**26.

  Returns:
    `(C_out * prod(out), C_in * prod(in))` array in `w`'s dtype.

  Raises:
    TypeError: `w` not an array, `input_shape` not a tuple of ints, or an
      argument of the wrong kind.
    ValueError: `input_shape` of the wrong rank or channel count, bad
      convolution arguments (as `jaxconv.conv`), or a matrix over `max_elements`.

  Example:
    >>> import jax.numpy as jnp, numpy as np, jaxconv
    >>> w = jnp.array([[[[1, 2], [3, 4]]]])            # 2x2 kernel (seed 002)
    >>> m = jaxconv.conv_matrix(w, (1, 4, 4))          # over a 4x4 input
    >>> m.shape
    (9, 16)
    >>> print(np.asarray(m)[:4])
    [[1 2 0 0 3 4 0 0 0 0 0 0 0 0 0 0]
     [0 1 2 0 0 3 4 0 0 0 0 0 0 0 0 0]
     [0 0 1 2 0 0 3 4 0 0 0 0 0 0 0 0]
     [0 0 0 0 1 2 0 0 3 4 0 0 0 0 0 0]]
  """
  fn = "jaxconv.conv_matrix"
  w = jnp.asarray(w)
  g = _operator_geometry(fn, w, input_shape, stride=stride, padding=padding,
                         dilation=dilation, lhs_dilation=lhs_dilation, groups=groups,
                         padding_mode=padding_mode, flip=flip)
  _check_budget(fn, g.out_channels * math.prod(g.out_spatial),
                g.in_channels * math.prod(g.in_spatial), max_elements, w.dtype)
  return _dense_matrix(w, g)


# --- the linear-operator view -------------------------------------------------

def _apply_conv(w, g: Geometry, x, precision):
  """`(B, C_in, *in) -> (B, C_out, *out)`: padding mode, flip, lax convolution."""
  if g.padding_mode != "zeros":
    x = pad_mode(x, g.padding, g.padding_mode)
    g = method_geometry(g)
  if g.flip:
    w = jnp.flip(w, axis=tuple(range(2, w.ndim)))
  return lax.conv_general_dilated(
      x, w, window_strides=g.stride, padding=g.padding, lhs_dilation=g.lhs_dilation,
      rhs_dilation=g.dilation, feature_group_count=g.groups, precision=precision)


def _is_circulant(g: Geometry) -> bool:
  """Circular padding, unit stride, no lhs dilation and `out == in`: a circulant."""
  return (g.padding_mode == "circular" and all(s == 1 for s in g.stride)
          and all(d == 1 for d in g.lhs_dilation) and g.out_spatial == g.in_spatial)


def _circulant_symbol(w, g: Geometry):
  """Per frequency, the `C_out/G x C_in/G` matrix of kernel DFTs, and multiplicities.

  Returns `(symbol, count)`: `symbol` is `(G, *freqs, C_out/G, C_in/G)` and
  `count` a static int array of shape `freqs` saying how many frequencies of
  the full spectrum each one stands for. The DFT is taken over the input's
  spatial size at the (dilated) tap positions only, costing
  `O(C_out * C_in/G * k * prod(n))`; taps that wrap around a period add up, as
  they do in the circulant matrix. For a real kernel the symbol at `-f` is the
  conjugate of the one at `f` (same singular values), so only the
  non-negative half of the last axis is formed, as `rfft` does, and every
  frequency without a partner inside that half counts twice.
  """
  if g.flip:
    w = jnp.flip(w, axis=tuple(range(2, w.ndim)))
  real = not jnp.iscomplexobj(w)
  cdtype = jnp.result_type(w.dtype, np.complex64)
  groups, og, cg = g.groups, g.out_channels_per_group, g.in_channels_per_group
  r = g.rank
  letters = iter(string.ascii_letters)
  G, E, C = (next(letters) for _ in range(3))
  K = [next(letters) for _ in range(r)]
  F = [next(letters) for _ in range(r)]
  spec = (f"{G}{E}{C}{''.join(K)}," + ",".join(f"{k}{f}" for k, f in zip(K, F))
          + f"->{G}{''.join(F)}{E}{C}")
  dfts = []
  for dim in range(r):
    n = g.in_spatial[dim]
    freqs = np.arange(n // 2 + 1 if real and dim == r - 1 else n)
    pos = np.arange(g.kernel_size[dim]) * g.dilation[dim]
    dfts.append(jnp.asarray(np.exp(2j * np.pi * np.outer(pos, freqs) / n), cdtype))
  count = np.ones([d.shape[1] for d in dfts], np.int64)
  if real:
    n = g.in_spatial[-1]
    last = np.arange(n // 2 + 1)
    count[..., (last > 0) & (2 * last != n)] = 2   # f and -f are distinct there
  wg = w.reshape(groups, og, cg, *g.kernel_size).astype(cdtype)
  return jnp.einsum(spec, wg, *dfts, precision=lax.Precision.HIGHEST), count


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, eq=False)
class ConvOperator:
  """A convolution as a linear operator (a pytree: `w` is the only leaf).

  Build it with `jaxconv.conv_operator`. `matvec` applies the convolution,
  `rmatvec` its transpose (the transposed convolution, i.e. the input VJP);
  `as_matrix` is `jaxconv.conv_matrix`; `singular_values` and `spectral_norm`
  are exact via the FFT for circular padding at unit stride with `out == in`.
  The geometry is static, so the operator passes through `jit`, `grad` and
  `vmap` like any pytree.

  Attributes:
    w: kernel `(C_out, C_in // groups, *kernel)`.
    geometry: the static `Geometry` (batch 1).
  """

  w: Any
  geometry: Geometry

  def tree_flatten(self):
    return (self.w,), self.geometry

  @classmethod
  def tree_unflatten(cls, geometry, children):
    return cls(children[0], geometry)

  @property
  def in_shape(self) -> tuple[int, ...]:
    """`(C_in, *spatial)` of one input."""
    return tuple(self.geometry.in_shape[1:])

  @property
  def out_shape(self) -> tuple[int, ...]:
    """`(C_out, *out_spatial)` of one output."""
    return tuple(self.geometry.out_shape[1:])

  @property
  def shape(self) -> tuple[int, int]:
    """`(C_out * prod(out), C_in * prod(in))`, the shape of `as_matrix()`."""
    return (math.prod(self.out_shape), math.prod(self.in_shape))

  def _batched(self, x, expected, name):
    x = jnp.asarray(x)
    r = len(expected)
    if x.ndim < r or tuple(x.shape[x.ndim - r:]) != expected:
      raise ValueError(
          f"jaxconv.ConvOperator.{name}: the input must end in shape {expected}; got "
          f"shape {tuple(x.shape)}.")
    return x, tuple(x.shape[:x.ndim - r])

  def matvec(self, x):
    """Apply the convolution: `(*batch, C_in, *in) -> (*batch, C_out, *out)`.

    Args:
      x: input with trailing shape `in_shape`; leading dims are batch dims.

    Returns:
      The convolution, trailing shape `out_shape`.

    Raises:
      ValueError: the trailing shape of `x` is not `in_shape`.

    Example:
      >>> import jax.numpy as jnp, numpy as np, jaxconv
      >>> op = jaxconv.conv_operator(jnp.array([[[1.0, -1.0]]]), (1, 4))
      >>> print(np.asarray(op.matvec(jnp.array([[1.0, 2.0, 4.0, 8.0]]))))
      [[-1. -2. -4.]]
    """
    x, batch = self._batched(x, self.in_shape, "matvec")
    dtype = jnp.result_type(x.dtype, self.w.dtype)
    xb = x.reshape(-1, *self.in_shape).astype(dtype)
    y = _apply_conv(self.w.astype(dtype), self.geometry, xb, self.geometry.precision)
    return y.reshape(*batch, *self.out_shape)

  def rmatvec(self, y):
    """Apply the transpose: `(*batch, C_out, *out) -> (*batch, C_in, *in)`.

    This is the transposed convolution (the VJP of `matvec` in its input,
    seed 001's "backward pass is multiplication by the transpose"), computed
    as `jax.linear_transpose` of `matvec`.

    Args:
      y: array with trailing shape `out_shape`; leading dims are batch dims.

    Returns:
      `M.T @ y`, trailing shape `in_shape`.

    Raises:
      ValueError: the trailing shape of `y` is not `out_shape`.

    Example:
      >>> import jax.numpy as jnp, numpy as np, jaxconv
      >>> op = jaxconv.conv_operator(jnp.array([[[1.0, -1.0]]]), (1, 4))
      >>> print(np.asarray(op.rmatvec(jnp.array([[1.0, 0.0, 0.0]]))))
      [[ 1. -1.  0.  0.]]
    """
    y, batch = self._batched(y, self.out_shape, "rmatvec")
    dtype = jnp.result_type(y.dtype, self.w.dtype)
    yb = y.reshape(-1, *self.out_shape).astype(dtype)
    w = self.w.astype(dtype)
    primal = jax.ShapeDtypeStruct((yb.shape[0], *self.in_shape), dtype)
    transpose = jax.linear_transpose(
        lambda x: _apply_conv(w, self.geometry, x, self.geometry.precision), primal)
    (x,) = transpose(yb)
    return x.reshape(*batch, *self.in_shape)

  def as_matrix(self, *, max_elements=DEFAULT_MAX_ELEMENTS):
    """The dense matrix, as `jaxconv.conv_matrix` with this operator's arguments.

    Args:
      max_elements: refuse to build a matrix with more elements. Default 2**26.

    Returns:
      `(C_out * prod(out), C_in * prod(in))` array in `w`'s dtype.

    Raises:
      ValueError: the matrix would have more than `max_elements` elements.

    Example:
      >>> import jax.numpy as jnp, numpy as np, jaxconv
      >>> op = jaxconv.conv_operator(jnp.array([[[1, 2]]]), (1, 3))
      >>> print(np.asarray(op.as_matrix()))
      [[1 2 0]
       [0 1 2]]
    """
    _check_budget("jaxconv.ConvOperator.as_matrix", *self.shape, max_elements,
                  self.w.dtype)
    return _dense_matrix(self.w, self.geometry)

  def singular_values(self, *, max_elements=DEFAULT_MAX_ELEMENTS):
    """All singular values of the operator, in descending order.

    Exact and matrix-free for circular padding at unit stride with an output
    as large as the input (the operator is then block circulant, and the
    singular values are, per frequency, those of the `C_out x C_in` matrix of
    kernel DFTs: Sedghi, Gupta & Long, ICLR 2019), costing
    `O(prod(n) * C_out * C_in * min(C_out, C_in))`. Any other geometry falls
    back to the SVD of the dense matrix, subject to `max_elements`.

    Args:
      max_elements: budget of the dense fallback. Default 2**26.

    Returns:
      `(min(C_out * prod(out), C_in * prod(in)),)` real array, descending
      (for the circulant case `prod(n) * min(C_out, C_in)` values).

    Raises:
      ValueError: the dense fallback would be over `max_elements`.

    Example:
      >>> import jax.numpy as jnp, numpy as np, jaxconv
      >>> w = jnp.array([[[1.0, 1.0]]])                  # circular moving sum
      >>> op = jaxconv.conv_operator(w, (1, 4), padding=[(0, 1)],
      ...                            padding_mode="circular")
      >>> with jnp.printoptions(precision=3, suppress=True):
      ...   print(op.singular_values())
      [2.    1.414 1.414 0.   ]
    """
    g = self.geometry
    if _is_circulant(g):
      symbol, count = _circulant_symbol(self.w, g)
      s = jnp.linalg.svd(symbol, compute_uv=False)          # (G, *freqs, min)
      s = jnp.repeat(s.reshape(g.groups, -1, s.shape[-1]), count.ravel(), axis=1,
                     total_repeat_length=int(count.sum()))
    else:
      s = jnp.linalg.svd(self.as_matrix(max_elements=max_elements), compute_uv=False)
    return -jnp.sort(-s.ravel())

  def spectral_norm(self, *, tol=1e-5, max_iters=1000, key=None):
    """The largest singular value (the operator's Lipschitz constant in l2).

    For the circulant case (see `singular_values`) it is exact, from the FFT.
    Otherwise it is estimated by power iteration on `rmatvec(matvec(v))` in a
    `lax.while_loop`, stopping when the unit vector `v` moves by less than
    `tol` (in l2) in one step, or after `max_iters` steps. The value's relative
    error is then about `tol**2` (its gradient's about `tol`) unless the top
    singular values nearly coincide, where convergence of `v` is slow but the
    value is still accurate; lower `max_iters` bounds the cost, e.g. inside a
    training step. The loop runs on a
    stop-gradient copy of `w`; the result is then `||matvec(v)||` with the
    converged unit vector `v`, so its gradient in `w` is the exact gradient
    `u v^T` of the top singular value (first order in the convergence error).
    It is jit-able, vmap-able and differentiable, e.g. as a Lipschitz
    regulariser in training.

    Args:
      tol: tolerance on the step of the unit iterate `v`. Default 1e-5.
      max_iters: iteration cap. Default 1000.
      key: optional PRNG key for the random start; by default a fixed
        pseudo-random start (the same on every call).

    Returns:
      Scalar, in `w`'s real dtype.

    Raises:
      ValueError: `tol` not positive or `max_iters` not a positive int.

    Example:
      >>> import jax.numpy as jnp, numpy as np, jaxconv
      >>> op = jaxconv.conv_operator(jnp.array([[[1.0, 1.0]]]), (1, 8))
      >>> print(f"{float(op.spectral_norm()):.4f}")   # sqrt(2 + 2 cos(pi / 8))
      1.9616
    """
    fn = "jaxconv.ConvOperator.spectral_norm"
    if (not isinstance(tol, (float, int, np.floating, np.integer))
        or isinstance(tol, bool) or not tol > 0):
      raise ValueError(f"{fn}: `tol` must be a positive number; got tol={tol!r}.")
    if not is_int(max_iters) or max_iters < 1:
      raise ValueError(
          f"{fn}: `max_iters` must be a positive int; got max_iters={max_iters!r}.")
    g = self.geometry
    if _is_circulant(g):
      return jnp.max(jnp.linalg.svd(_circulant_symbol(self.w, g)[0], compute_uv=False))
    w = self.w
    dtype = jnp.result_type(w.dtype, np.float32)
    real = jnp.finfo(dtype).dtype
    frozen = ConvOperator(lax.stop_gradient(w), g)
    if key is None:  # a fixed start, built on the host: nothing to compile
      v0 = jnp.asarray(np.random.default_rng(0).standard_normal(self.in_shape), dtype)
    else:
      v0 = jax.random.normal(key, self.in_shape, dtype)
    v0 = v0 / jnp.linalg.norm(v0)
    tiny = jnp.finfo(real).tiny

    def cond(state):
      i, _, step = state
      return (i < max_iters) & (step > tol)

    def body(state):
      i, v_old, _ = state
      z = frozen.rmatvec(frozen.matvec(v_old))  # A^T A is PSD: no sign flips
      v = z / jnp.maximum(jnp.linalg.norm(z), tiny)
      return i + 1, v, jnp.linalg.norm(v - v_old).astype(real)

    init = (jnp.zeros((), jnp.int32), v0, jnp.full((), jnp.inf, real))
    _, v, _ = lax.while_loop(cond, body, init)
    v = lax.stop_gradient(v)
    u = self.matvec(v)
    return jnp.sqrt(jnp.maximum(jnp.sum(jnp.abs(u) ** 2), tiny)).astype(real)


def conv_operator(w, input_shape, *, stride=1, padding=0, dilation=1, groups=1,
                  padding_mode="zeros", flip=False, lhs_dilation=1, precision=None):
  """A convolution as a linear operator: matvec, transpose, matrix, spectrum.

  Args:
    w: kernel `(C_out, C_in // groups, *kernel)`; the operator's only pytree leaf.
    input_shape: `(C_in, *spatial)`, or `(N, C_in, *spatial)` whose batch size
      is ignored; its rank must match `w`'s.
    stride, padding, dilation, groups, padding_mode, flip: as `jaxconv.conv`.
    lhs_dilation: input dilation. Default 1.
    precision: as lax's, for `matvec`/`rmatvec`. Default None.

  Returns:
    A `ConvOperator` with `matvec`, `rmatvec`, `as_matrix`, `singular_values`
    and `spectral_norm`.

  Raises:
    TypeError, ValueError: as `jaxconv.conv_matrix`.

  Example:
    >>> import jax, jax.numpy as jnp, numpy as np, jaxconv
    >>> w = jax.random.normal(jax.random.key(0), (4, 3, 3, 3))
    >>> op = jaxconv.conv_operator(w, (3, 8, 8), padding=1, padding_mode="circular")
    >>> s = op.singular_values()          # exact, via the FFT
    >>> s.shape
    (192,)
    >>> dense = np.linalg.svd(np.asarray(op.as_matrix()), compute_uv=False)
    >>> bool(np.allclose(s, dense, rtol=1e-4, atol=1e-4))
    True
  """
  fn = "jaxconv.conv_operator"
  w = jnp.asarray(w)
  g = _operator_geometry(fn, w, input_shape, stride=stride, padding=padding,
                         dilation=dilation, lhs_dilation=lhs_dilation, groups=groups,
                         padding_mode=padding_mode, flip=flip, precision=precision)
  return ConvOperator(w, g)
