"""Convolution as an explicit matrix: Toeplitz, circulant and N-d conv matrices.

A convolution is linear in its input, so it is a matrix: 1-D correlation with a
kernel is a banded Toeplitz matrix whose rows are shifted copies of the kernel
(seed 001), 2-D is doubly-block Toeplitz (a Toeplitz matrix of Toeplitz blocks,
seed 002), N-d is multilevel Toeplitz, and circular padding makes every level
circulant (doubly-block circulant). This module writes those matrices out:
`toeplitz_matrix`, `circulant_matrix` and `conv_matrix`, plus the helpers the
matrix-free view in `_operator` shares with them (`operator_geometry`,
`check_budget`, `dense_matrix`).

Matrices are built from the kernel's structure, never by differentiating the
convolution: per spatial dim a static 0/1 table says which input index each
(output index, kernel tap) pair reads, and one `einsum` places the kernel
values. Everything is differentiable in the kernel.
"""

from __future__ import annotations

import functools
import math
import string
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._geometry import (Geometry, array_arg, as_jax, check_bool, is_int, make_geometry, ntuple,
                        positive_int)
from ._typing import Array, ArrayLike, Padding, Size

DEFAULT_MAX_ELEMENTS = 2**26
"""Default element budget of a dense matrix (64 Mi elements: 256 MiB in float32)."""

_TOEPLITZ_MODES = ("valid", "full", "same")


# --- validation helpers -------------------------------------------------------

def check_budget(fn: str, rows: int, cols: int, max_elements, dtype) -> None:
  """Refuse a dense `rows x cols` matrix over `max_elements`, saying how large it is."""
  positive_int(max_elements, "max_elements", fn)
  size = rows * cols
  if size > max_elements:
    mib = size * np.dtype(dtype).itemsize / 2**20
    raise ValueError(
        f"{fn}: the matrix would be {rows} x {cols} = {size} elements ({mib:,.0f} MiB as "
        f"{np.dtype(dtype).name}), over the budget max_elements={max_elements}; pass a "
        "larger `max_elements`, or use `jaxconv.conv_operator` for matrix-free products.")


def _as_kernel_1d(k: ArrayLike, fn: str) -> Array:
  k = as_jax(array_arg(k, "k", fn, array_like=True))
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
  check_bool(flip, "flip", fn)


# --- 1-D matrices -------------------------------------------------------------

def toeplitz_matrix(k: ArrayLike, n: int, mode: str = "valid", *, flip: bool = False,
                    max_elements: int = DEFAULT_MAX_ELEMENTS) -> Array:
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
    TypeError: `k` not an array (or a list of numbers), `n` or `max_elements`
      not an int, or `flip` not a bool.
    ValueError: `k` not a non-empty 1-D array, `n < 1`, `n < m` for 'valid', an
      unknown `mode`, `max_elements < 1`, or a matrix over `max_elements`.

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
  check_budget(fn, rows, n, max_elements, k.dtype)
  if flip:
    k = k[::-1]
  return _diagonal_constant(k, rows, n, offset, False)


def circulant_matrix(k: ArrayLike, n: int, *, flip: bool = False,
                     max_elements: int = DEFAULT_MAX_ELEMENTS) -> Array:
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
    TypeError: `k` not an array (or a list of numbers), `n` or `max_elements`
      not an int, or `flip` not a bool.
    ValueError: `k` not a non-empty 1-D array, `n < 1`, `max_elements < 1`, or
      over `max_elements`.

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
  check_budget(fn, n, n, max_elements, k.dtype)
  m = k.shape[0]
  # Fold the kernel onto one period: taps t and t + n read the same index.
  periods = -(-m // n)
  folded = jnp.pad(k, (0, periods * n - m)).reshape(periods, n).sum(axis=0)
  return _diagonal_constant(folded[::-1] if flip else folded, n, n, n - 1 if flip else 0,
                            True)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _diagonal_constant(k, rows: int, cols: int, offset: int, periodic: bool):
  """`T[i, j] = k[j - i + offset]`, zero where that index is outside `k` (or
  taken modulo `len(k)` when `periodic`): a Toeplitz matrix.

  The indices come from iotas inside XLA, so the result is the only `rows x
  cols` array: static numpy index tables (int64, twice each) took 8x the
  result's float32 bytes (2 GiB for an 8192 x 8192 matrix).
  """
  m = k.shape[0]
  shape = (rows, cols)
  tap = (lax.broadcasted_iota(jnp.int32, shape, 1) - lax.broadcasted_iota(jnp.int32, shape, 0)
         + offset)
  if periodic:
    return k[tap % m]
  inside = (tap >= 0) & (tap < m)
  return jnp.where(inside, k[jnp.clip(tap, 0, m - 1)], jnp.zeros((), k.dtype))


# --- N-d matrices -------------------------------------------------------------

def operator_geometry(fn: str, w, input_shape, *, stride, padding, dilation,
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
  input_shape = ntuple(input_shape, len(input_shape), "input_shape", fn)
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


def dense_matrix(w, g: Geometry):
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


def conv_matrix(w: ArrayLike, input_shape: Sequence[int], *, stride: Size = 1,
                padding: Padding = 0, dilation: Size = 1, groups: int = 1,
                padding_mode: str = "zeros", flip: bool = False, lhs_dilation: Size = 1,
                max_elements: int = DEFAULT_MAX_ELEMENTS) -> Array:
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
    ValueError: `input_shape` of the wrong rank or channel count or with a size
      < 1, bad convolution arguments (as `jaxconv.conv`), or a matrix over
      `max_elements`.

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
  w = as_jax(array_arg(w, "w", fn, array_like=True))
  g = operator_geometry(fn, w, input_shape, stride=stride, padding=padding,
                        dilation=dilation, lhs_dilation=lhs_dilation, groups=groups,
                        padding_mode=padding_mode, flip=flip)
  check_budget(fn, g.out_channels * math.prod(g.out_spatial),
               g.in_channels * math.prod(g.in_spatial), max_elements, w.dtype)
  return dense_matrix(w, g)
