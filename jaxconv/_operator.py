"""Convolution as a matrix-free linear operator: `ConvOperator`, `conv_operator`.

`matvec` applies the convolution and `rmatvec` its transpose; `as_matrix` is
the dense matrix of `_matrices`. Singular values come exactly from the FFT for
circular padding (Sedghi, Gupta & Long, "The Singular Values of Convolutional
Layers", ICLR 2019) and the spectral norm from block LOBPCG otherwise, started
from the top singular vector of the circulant operator of the same kernel.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import string
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import _conv, _select
from ._geometry import Geometry, array_arg, as_jax, check_key, positive_int, positive_real
from ._matrices import DEFAULT_MAX_ELEMENTS, check_budget, dense_matrix, operator_geometry
from ._padding import method_geometry
from ._typing import Array, ArrayLike, Padding, PrecisionLike, Size


def _apply_conv(w, g: Geometry, x, precision, method: str = "auto"):
  """`(B, C_in, *in) -> (B, C_out, *out)`: padding mode, flip, and `method`
  (default the one `auto` picks for this batch size; `spectral_norm`'s loop
  passes `_loop_method`'s)."""
  gb = g.replace(in_shape=(x.shape[0], *g.in_shape[1:]), precision=precision,
                 dtype=np.dtype(x.dtype))
  return _conv.run(x, w, None, gb, method, "jaxconv.ConvOperator")


def _is_circulant(g: Geometry) -> bool:
  """Circular padding, unit stride, no lhs dilation and `out == in`: a circulant."""
  return (g.padding_mode == "circular" and all(s == 1 for s in g.stride)
          and all(d == 1 for d in g.lhs_dilation) and g.out_spatial == g.in_spatial)


def _kernel_symbol(w, g: Geometry, freqs):
  """The kernel's symbol `sum_t w_t exp(i f . pos_t)` at the given frequencies.

  `pos_t` are the (dilated) tap positions, after the flip if `g.flip`. An
  input plane wave `exp(i f . p) v` leaves the convolution (before stride and
  borders) as `exp(i f . p) symbol(f) v`, so for circular padding the symbol's
  singular values are the operator's (Sedghi et al. 2019).

  Args:
    w: kernel `(C_out, C_in // groups, *kernel)`.
    g: the geometry.
    freqs: per spatial dim, radians of shape `(F_d,)` (all groups) or
      `(G, F_d)` (per group); NumPy arrays are turned into phases on the host
      in float64, traced ones in the kernel's precision.

  Returns:
    `(G, *F, C_out/G, C_in/G)` complex array.
  """
  if g.flip:
    w = jnp.flip(w, axis=tuple(range(2, w.ndim)))
  cdtype = jnp.result_type(w.dtype, np.complex64)
  groups, og, cg = g.groups, g.out_channels_per_group, g.in_channels_per_group
  r = g.rank
  letters = iter(string.ascii_letters)
  G, E, C = (next(letters) for _ in range(3))
  K = [next(letters) for _ in range(r)]
  F = [next(letters) for _ in range(r)]
  spec = (f"{G}{E}{C}{''.join(K)}," + ",".join(f"{G}{k}{f}" for k, f in zip(K, F))
          + f"->{G}{''.join(F)}{E}{C}")
  dfts = []
  for dim, f in enumerate(freqs):
    pos = np.arange(g.kernel_size[dim]) * g.dilation[dim]
    if isinstance(f, np.ndarray):
      f = np.broadcast_to(f, (groups, f.shape[-1]))
      dft = jnp.asarray(np.exp(1j * pos[None, :, None] * f[:, None, :]), cdtype)
    else:
      f = jnp.broadcast_to(f, (groups, f.shape[-1]))
      dft = jnp.exp(1j * (jnp.asarray(pos, f.dtype)[None, :, None] * f[:, None, :]))
    dfts.append(dft.astype(cdtype))
  wg = w.reshape(groups, og, cg, *g.kernel_size).astype(cdtype)
  return jnp.einsum(spec, wg, *dfts, precision=lax.Precision.HIGHEST)


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
  real = not jnp.iscomplexobj(w)
  r = g.rank
  freqs = []
  for dim in range(r):
    n = g.in_spatial[dim]
    freqs.append(2 * np.pi * np.arange(n // 2 + 1 if real and dim == r - 1 else n) / n)
  count = np.ones([f.shape[0] for f in freqs], np.int64)
  if real:
    n = g.in_spatial[-1]
    last = np.arange(n // 2 + 1)
    count[..., (last > 0) & (2 * last != n)] = 2   # f and -f are distinct there
  return _kernel_symbol(w, g, freqs), count


START_MODES = ("auto", "circulant", "random")
"""Values of `spectral_norm(start=...)`."""

SAFETY = 30.0
"""`spectral_norm` stops when `SAFETY` times its estimate of the remaining
error is below `tol` on `_CONFIRM` steps in a row. The geometric-series
estimate is 2-3x low when the top of the spectrum is a continuum (a large
grid), and low by up to the gap to the 2nd singular value while the block
has yet to find the top one. `SAFETY`, `_RATIOS` and `_CONFIRM` were chosen
on block histories of 10 small geometries x 30 random kernels x 3 tolerances
(every run within `tol`) and checked on 30 other kernels (all within `tol`)."""

_GRID_ELEMENTS = 2 ** 22
"""Symbol entries (`prod(M) * C_out * C_in/G`) of the coarse frequency grid."""

_PEAKS = 4
"""Local maxima of the coarse grid refined per group (distinct up to the
`f -> -f` symmetry of a real kernel's symbol)."""

_ZOOMS = 12
"""Halvings of the step of the local refinement (a 3-point grid per dim)."""

_SEARCH_MATVECS = 64
"""'auto' starts at random where the frequency search would cost more than
this many `matvec`s (an SVD of an `m x n` symbol, `m >= n`, counted as
`100 m n**2` multiply-adds of the convolution: measured on a 2-core CPU)."""

_RATIOS = 6
"""The remaining-error estimate takes the largest of this many last ratios of
successive increases: one small increase does not end the loop."""

_CONFIRM = 3
"""Steps in a row on which the estimate must be below `tol`."""

BLOCK = 4
"""Vectors of `spectral_norm`'s LOBPCG block: the top Ritz value converges at
a rate set by the gap to the 5th singular value, and a start poor in the top
singular vector (it settles first on the 2nd: a single vector's estimate then
stalls and its stopping rule is fooled) is much rarer."""


def _loop_method(g: Geometry, batch: int, dtype) -> str:
  """The method of the spectral-norm iteration's `matvec` and `rmatvec`.

  The iteration runs in a `lax.while_loop`, where XLA:CPU runs lax's
  convolution many times slower than outside one (64 channels at 224x224,
  3x3: 12.5 s per `rmatvec(matvec(v))` instead of 0.1 s) while the GEMM and
  FFT methods keep their speed. So on CPU it is the method with the smallest
  estimated forward plus input-gradient time (one `matvec` and one
  `rmatvec`) other than lax, by `auto`'s cost model; on other backends, `auto`.
  """
  if jax.default_backend() != "cpu":
    return "auto"
  gm = method_geometry(g.replace(in_shape=(batch, *g.in_shape[1:]), dtype=np.dtype(dtype)))
  fwd = _select.estimate(gm, pass_="fwd")
  dx = _select.estimate(gm, pass_="dx")
  est = {m: fwd[m] + dx[m] for m in fwd if m in dx and m != "lax"}
  return min(est, key=est.__getitem__) if est else "lax"


def _search_grid(g: Geometry) -> list[int]:
  """Points per spatial dim of the coarse frequency grid: 8 per unit of the
  (dilated) kernel extent, at most 32, one where the kernel is one tap wide,
  fewer where the symbol would exceed `_GRID_ELEMENTS` entries."""
  ext = [(k - 1) * d for k, d in zip(g.kernel_size, g.dilation)]
  m = [1 if e == 0 else min(32, 8 * e) for e in ext]
  per = g.out_channels * g.in_channels_per_group
  while math.prod(m) * per > _GRID_ELEMENTS and max(m) > 2:
    m = [max(2, v // 2) if v == max(m) else v for v in m]
  return m


def _circulant_fits(g: Geometry) -> bool:
  """Zero padding at unit stride, no input dilation: where the circulant
  operator's top singular vector is near the operator's (`O(1/n**2)`). With
  other padding modes or strides the operator's top singular vector can be
  far from it (a wrapped row counted twice, aliased frequencies), and the
  iteration may settle on a lower singular value first."""
  return (g.padding_mode == "zeros" and all(s == 1 for s in g.stride)
          and all(d == 1 for d in g.lhs_dilation))


def _search_pays(g: Geometry) -> bool:
  """Whether the frequency search costs at most `_SEARCH_MATVECS` `matvec`s."""
  og, cg = g.out_channels_per_group, g.in_channels_per_group
  evals = math.prod(_search_grid(g)) + _PEAKS * _ZOOMS * 3 ** g.rank + 1
  svd = 100 * g.groups * max(og, cg) * min(og, cg) ** 2
  matvec = g.out_channels * cg * math.prod(g.kernel_size) * math.prod(g.out_spatial)
  return evals * svd <= _SEARCH_MATVECS * matvec


def _top_singular(symbol):
  """Largest singular value of each trailing matrix."""
  return jnp.linalg.svd(symbol, compute_uv=False)[..., 0]


def _local_peaks(s, m: list[int], real: bool):
  """Flat indices `(G, _PEAKS)` of the largest local maxima of `s` (`(G, *m)`,
  periodic); for a real kernel only those with last frequency in `[0, pi]`
  (the others mirror them). Fewer maxima: the rest are other grid points."""
  peak = jnp.ones(s.shape, bool)
  for shift in np.ndindex(*(3,) * len(m)):
    if any(v != 1 for v in shift):
      peak &= s >= jnp.roll(s, [v - 1 for v in shift], axis=tuple(range(1, s.ndim)))
  if real:
    peak &= (np.arange(m[-1]) <= m[-1] // 2)
  flat = jnp.where(peak, s, -1.0).reshape(s.shape[0], -1)
  return lax.top_k(flat, min(_PEAKS, flat.shape[1]))[1]


def _circulant_start(w, g: Geometry, count: int):
  """The 'circulant' start vectors of `spectral_norm` and the search's `sigma_inf`.

  Per group, the frequencies `f` where the top singular value of the
  kernel's symbol peaks: the `_PEAKS` largest local maxima on a grid of
  `_search_grid` points, each refined by `_ZOOMS` halvings of a 3-point
  local grid per dim (snapped to the input's DFT grid for circular
  padding); the `count` highest are kept, with their values `sigma_g` and
  right singular vectors `v`. Start vector `k` (of `count`, `(count,
  *in_shape)`) is, per group, the plane wave `exp(i f . p) v` at the
  group's `k`-th peak (its real part for a real kernel, with the phase of
  `v` that maximises it), times `prod(sin(pi (p + 1) / (n + 1)))` for zero
  padding (the lowest mode of a wave packet confined to the grid), weighted
  by `(sigma_g / max_g sigma_g)**2`, normalised (more than one peak: on a
  finite grid a slightly lower but flatter peak can hold the top singular
  vector). For zero padding `sigma_inf = max_g sigma_g` bounds the operator
  norm from above (the operator is a restriction of the convolution on the
  infinite grid, whose norm is the symbol's supremum) as far as the search
  found the supremum. Costs `O(G * S * C_out/G * (C_in/G)**2)` with
  `S = prod(_search_grid) + _PEAKS * _ZOOMS * 3**rank` symbol SVDs.
  """
  r, groups, og, cg = g.rank, g.groups, g.out_channels_per_group, g.in_channels_per_group
  real = not jnp.iscomplexobj(w)
  rdtype = jnp.finfo(jnp.result_type(w.dtype, np.float32)).dtype
  tiny = jnp.finfo(rdtype).tiny
  m = _search_grid(g)
  grid = [2 * np.pi * np.arange(k) / k for k in m]
  s = _top_singular(_kernel_symbol(w, g, grid))                 # (G, *m)
  idx = jnp.unravel_index(_local_peaks(s, m, real), m)           # r arrays (G, K)
  f = jnp.stack([jnp.asarray(grid[d], rdtype)[idx[d]] for d in range(r)], axis=-1)
  offsets = jnp.asarray([-1.0, 0.0, 1.0], rdtype)

  def zoom(z, f):                                                # f: (G, K, r)
    step = jnp.asarray([2 * np.pi / k for k in m], rdtype) / 2 ** z
    local = f[..., None] + step[:, None] * offsets               # (G, K, r, 3)
    s = jax.vmap(lambda fk: _top_singular(_kernel_symbol(
        w, g, [fk[:, d] for d in range(r)])), in_axes=1, out_axes=1)(local)
    pick = jnp.unravel_index(jnp.argmax(s.reshape(*s.shape[:2], -1), axis=-1), (3,) * r)
    return jnp.stack([jnp.take_along_axis(local[:, :, d], pick[d][..., None],
                                          axis=-1)[..., 0] for d in range(r)], axis=-1)

  f = lax.fori_loop(0, _ZOOMS, zoom, f)
  at_peaks = lambda fn: jax.vmap(lambda fk: fn(_kernel_symbol(
      w, g, [fk[:, d, None] for d in range(r)]).reshape(groups, og, cg)),
      in_axes=1, out_axes=1)
  peaks = at_peaks(_top_singular)(f)                             # (G, K)
  count = min(count, f.shape[1])
  f = jnp.take_along_axis(f, jnp.argsort(-peaks, axis=1)[:, :count, None], axis=1)
  if g.padding_mode == "circular":
    sizes = jnp.asarray(g.in_spatial, rdtype)
    f = 2 * np.pi * jnp.round(f * sizes / (2 * np.pi)) / sizes
  _, sv, vh = at_peaks(lambda a: jnp.linalg.svd(a, full_matrices=False))(f)
  sigma, v = sv[..., 0], jnp.conj(vh[..., 0, :])                 # (G, k), (G, k, C_in/G)
  if real:  # exp(-i phi) v with phi = angle(sum v**2) / 2 has the largest real part
    v = v * jnp.exp(-0.5j * jnp.angle(jnp.sum(v * v, axis=-1, keepdims=True)))
  wave = jnp.ones((groups, count), v.dtype)
  for d, n in enumerate(g.in_spatial):
    p = np.arange(n)
    e = jnp.exp(1j * f[..., d, None] * jnp.asarray(p, rdtype)).astype(v.dtype)
    if g.padding_mode == "zeros":
      e = e * jnp.asarray(np.sin(np.pi * (p + 1) / (n + 1)), rdtype)
    wave = wave[..., None] * e.reshape(groups, count, *(1,) * d, n)
  x = v.reshape(*v.shape, *(1,) * r) * wave[:, :, None]         # (G, k, C_in/G, *n)
  if real:
    x = jnp.real(x)
  top = jnp.max(sigma, axis=0)                                   # (k,)
  weight = jnp.where(top > 0, (sigma / jnp.where(top > 0, top, 1)) ** 2, 1)
  norms = jnp.sqrt(jnp.sum(jnp.abs(x.reshape(groups, count, -1)) ** 2, axis=-1))
  x = x * (weight / jnp.maximum(norms, tiny)).reshape(groups, count, *(1,) * (r + 1))
  x = jnp.swapaxes(x, 0, 1).reshape(count, *g.in_shape[1:]).astype(w.dtype)
  norms = jnp.sqrt(jnp.sum(jnp.abs(x.reshape(count, -1)) ** 2, axis=-1))
  x = x / jnp.maximum(norms, tiny).reshape(-1, *(1,) * (r + 1))
  return x, jnp.max(sigma).astype(rdtype)


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

  def tree_flatten(self) -> tuple[tuple[Any], Geometry]:
    return (self.w,), self.geometry

  @classmethod
  def tree_unflatten(cls, geometry: Geometry, children: Sequence[Any]) -> ConvOperator:
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

  def _batched(self, x: ArrayLike, expected: tuple[int, ...],
               name: str) -> tuple[Array, tuple[int, ...]]:
    fn, arg = f"jaxconv.ConvOperator.{name}", {"matvec": "x", "rmatvec": "y"}[name]
    x = as_jax(array_arg(x, arg, fn, array_like=True))
    r = len(expected)
    if x.ndim < r or tuple(x.shape[x.ndim - r:]) != expected:
      raise ValueError(
          f"{fn}: `{arg}` must end in shape {expected}; got {arg}.shape="
          f"{tuple(x.shape)}.")
    return x, tuple(x.shape[:x.ndim - r])

  def matvec(self, x: ArrayLike) -> Array:
    """Apply the convolution: `(*batch, C_in, *in) -> (*batch, C_out, *out)`.

    Args:
      x: input with trailing shape `in_shape`; leading dims are batch dims.

    Returns:
      The convolution, trailing shape `out_shape`.

    Raises:
      TypeError: `x` is not an array (or a nested list of numbers).
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

  def rmatvec(self, y: ArrayLike) -> Array:
    """Apply the transpose: `(*batch, C_out, *out) -> (*batch, C_in, *in)`.

    This is the transposed convolution (the VJP of `matvec` in its input,
    seed 001's "backward pass is multiplication by the transpose"), computed
    as `jax.linear_transpose` of `matvec`.

    Args:
      y: array with trailing shape `out_shape`; leading dims are batch dims.

    Returns:
      `M.T @ y`, trailing shape `in_shape`.

    Raises:
      TypeError: `y` is not an array (or a nested list of numbers).
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

  def as_matrix(self, *, max_elements: int = DEFAULT_MAX_ELEMENTS) -> Array:
    """The dense matrix, as `jaxconv.conv_matrix` with this operator's arguments.

    Args:
      max_elements: refuse to build a matrix with more elements. Default 2**26.

    Returns:
      `(C_out * prod(out), C_in * prod(in))` array in `w`'s dtype.

    Raises:
      TypeError: `max_elements` is not an int.
      ValueError: `max_elements` is not positive, or the matrix would have more
        elements.

    Example:
      >>> import jax.numpy as jnp, numpy as np, jaxconv
      >>> op = jaxconv.conv_operator(jnp.array([[[1, 2]]]), (1, 3))
      >>> print(np.asarray(op.as_matrix()))
      [[1 2 0]
       [0 1 2]]
    """
    check_budget("jaxconv.ConvOperator.as_matrix", *self.shape, max_elements,
                 self.w.dtype)
    return dense_matrix(self.w, self.geometry)

  def singular_values(self, *, max_elements: int = DEFAULT_MAX_ELEMENTS) -> Array:
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
      TypeError: `max_elements` is not an int.
      ValueError: `max_elements` is not positive, or the dense fallback would be
        over it.

    Example:
      >>> import jax.numpy as jnp, numpy as np, jaxconv
      >>> w = jnp.array([[[1.0, 1.0]]])                  # circular moving sum
      >>> op = jaxconv.conv_operator(w, (1, 4), padding=[(0, 1)],
      ...                            padding_mode="circular")
      >>> with jnp.printoptions(precision=3, suppress=True):
      ...   print(op.singular_values())
      [2.    1.414 1.414 0.   ]
    """
    fn = "jaxconv.ConvOperator.singular_values"
    positive_int(max_elements, "max_elements", fn)
    g = self.geometry
    if _is_circulant(g):
      symbol, count = _circulant_symbol(self.w, g)
      s = jnp.linalg.svd(symbol, compute_uv=False)          # (G, *freqs, min)
      s = jnp.repeat(s.reshape(g.groups, -1, s.shape[-1]), count.ravel(), axis=1,
                     total_repeat_length=int(count.sum()))
    else:
      check_budget(fn, *self.shape, max_elements, self.w.dtype)
      s = jnp.linalg.svd(self.as_matrix(max_elements=max_elements), compute_uv=False)
    return -jnp.sort(-s.ravel())

  def spectral_norm(self, *, tol: float = 1e-6, max_iters: int = 1000,
                    key: ArrayLike | None = None, start: str = "auto") -> Array:
    """The largest singular value (the operator's Lipschitz constant in l2).

    For the circulant case (see `singular_values`) it is exact, from the FFT.
    Otherwise it is the square root of the largest eigenvalue of
    `rmatvec(matvec(.))`, by block LOBPCG in a `lax.while_loop`: a block of
    `BLOCK` (4) vectors; per step one batched `matvec`/`rmatvec` of the
    block's residuals and a Rayleigh-Ritz step on the block, its residuals
    and its last step. The loop runs the fastest method for a batch of 4
    (on CPU not lax, whose convolution is ~100x slower inside a loop).

    `tol` is the relative accuracy asked of the value. The loop stops when
    (a) on 3 steps in a row, `SAFETY` (30) times the remaining error that the
    last increases of the top Ritz value extrapolate to (a geometric series
    with the largest of their last 6 ratios) is below `tol` times the value;
    (b) for zero padding, the value is within `tol` of `sigma_inf`, the
    supremum of the kernel's symbol (below), an upper bound of the norm; (c)
    the value no longer increases (rounding: a `tol` under ~1e-6 in float32,
    ~1e-15 in float64, means "to working precision"); or (d) after
    `max_iters` steps. The result is `||matvec(v)||` for a unit `v`, so not
    above the norm (but for rounding). (b) holds as far as the frequency
    search found the supremum; (a) is an estimate: it was within `tol` in all
    of 2520 runs (10 small geometries x 60 random kernels x tol 1e-2, 1e-4,
    1e-8 from a random start; the 4 with zero padding at unit stride also
    from the circulant one), but a top singular value the block has not yet
    seen (a start poor in it, the 2nd singular value close) can end the loop
    early by up to their gap.

    `start='circulant'` puts into the block the top singular vector of the
    same kernel's circulant operator: per group, the plane wave at the
    frequency where the top singular value of the kernel's symbol (its
    `C_out/G x C_in/G` DFT over the taps) is largest, times that matrix's top
    right singular vector, under a `sin` window for zero padding; the other
    3 vectors are random. For zero padding at unit stride it is within
    `O(1/n**2)` of the top singular vector (64 channels at 224x224, 3x3: 1e-4
    relative in the value), so `tol=1e-3` is met at once by (b). Elsewhere
    (other padding modes, strides) it can settle on a lower singular value
    first.

    The loop runs on a stop-gradient copy of `w`; the result is then
    `||matvec(v)||` with the final unit vector `v`, so its gradient in `w` is
    `u v^T`, the exact gradient of the top singular value to first order in
    the error of `v` (about `sqrt(tol)` relative when the top singular value
    is separated). It is jit-able, vmap-able and differentiable, e.g. as a
    Lipschitz regulariser in training; `tol` and `max_iters` are traced (no
    recompilation when they change).

    Args:
      tol: relative accuracy of the value, see above. Default 1e-6.
      max_iters: cap on the loop's steps (each `BLOCK` `matvec`/`rmatvec`
        pairs). Default 1000.
      key: optional PRNG key for the random vectors of the start; by default
        fixed pseudo-random vectors (the same on every call).
      start: 'circulant', 'random', or 'auto' (default): 'circulant' for zero
        padding at unit stride without input dilation where the frequency
        search costs at most `_SEARCH_MATVECS` (64) `matvec`s (large grids,
        where the top of the spectrum is a continuum and a random start is
        slow), else 'random'.

    Returns:
      Scalar, in `w`'s real dtype.

    Raises:
      TypeError: `tol` not a real number, `max_iters` not an int, `key` not
        one PRNG key, or `start` not a string.
      ValueError: `tol` not finite and > 0, `max_iters` not positive, or an
        unknown `start`.
      NotImplementedError: `start='circulant'` with input (lhs) dilation.

    Example:
      >>> import jax.numpy as jnp, numpy as np, jaxconv
      >>> op = jaxconv.conv_operator(jnp.array([[[1.0, 1.0]]]), (1, 8))
      >>> print(f"{float(op.spectral_norm()):.4f}")   # sqrt(2 + 2 cos(pi / 8))
      1.9616
      >>> w = jnp.ones((2, 2, 3, 3)) / 9              # 2 x 2 ones (x) a 3x3 box
      >>> op = jaxconv.conv_operator(w, (2, 64, 64), padding=1)
      >>> exact = 2 * ((1 + 2 * np.cos(np.pi / 65)) / 3) ** 2
      >>> sigma = float(op.spectral_norm(tol=1e-3))
      >>> bool(abs(sigma - exact) <= 1e-3 * exact)
      True
    """
    fn = "jaxconv.ConvOperator.spectral_norm"
    positive_real(tol, "tol", fn)
    positive_int(max_iters, "max_iters", fn)
    if key is not None:
      check_key(key, "key", fn)
    if not isinstance(start, str):
      raise TypeError(f"{fn}: `start` must be a string; got start={start!r}.")
    if start not in START_MODES:
      raise ValueError(f"{fn}: unknown `start`; got start={start!r}, expected one of "
                       f"{', '.join(repr(m) for m in START_MODES)}.")
    g = self.geometry
    dilated = any(d != 1 for d in g.lhs_dilation)
    if start == "circulant" and dilated:
      raise NotImplementedError(
          f"{fn}: start='circulant' does not support input (lhs) dilation "
          f"(lhs_dilation={g.lhs_dilation}); use start='random' or 'auto'.")
    if _is_circulant(g):
      return jnp.max(jnp.linalg.svd(_circulant_symbol(self.w, g)[0], compute_uv=False))
    dtype = jnp.result_type(self.w.dtype, np.float32)
    real = jnp.finfo(dtype).dtype
    block = (min(BLOCK, math.prod(self.in_shape)),)
    if key is None:  # fixed vectors, built on the host: nothing to compile
      noise = jnp.asarray(
          np.random.default_rng(0).standard_normal(block + self.in_shape), dtype)
    else:
      noise = jax.random.normal(key, block + self.in_shape, dtype)
    if start == "auto":
      start = "circulant" if _circulant_fits(g) and _search_pays(g) else "random"
    v = _top_right_vector(lax.stop_gradient(self.w).astype(dtype), noise,
                          jnp.asarray(tol, real), jnp.asarray(max_iters, jnp.int32),
                          g=g, method=_loop_method(g, block[0], dtype), start=start)
    u = self.matvec(lax.stop_gradient(v))
    tiny = jnp.finfo(real).tiny
    return jnp.sqrt(jnp.maximum(jnp.sum(jnp.abs(u) ** 2), tiny)).astype(real)


@functools.partial(jax.jit, static_argnames=("g", "method", "start"))
def _top_right_vector(w, noise, tol, max_iters, *, g: Geometry, method: str, start: str):
  """`spectral_norm`'s unit vector: its start block, then block LOBPCG
  (compiled once per geometry, method and start: eager calls do not trace the
  loop again). `noise` is `(BLOCK, *in_shape)`, the random start block."""
  real = jnp.finfo(w.dtype).dtype
  block = noise.shape[0]
  gb = g.replace(in_shape=(block, *g.in_shape[1:]))
  matvec = lambda x: _apply_conv(w, gb, x, g.precision, method)
  transpose = jax.linear_transpose(matvec, jax.ShapeDtypeStruct(noise.shape, w.dtype))

  def gram(x):  # A^H A x per vector of the block, as conj(A^T conj(A x))
    (z,) = transpose(jnp.conj(matvec(x)))
    return jnp.conj(z)

  x0, sigma_inf = noise, jnp.full((), jnp.inf, real)
  if start == "circulant":  # the top peak's wave; random vectors for the rest
    x0_circ, sigma_circ = _circulant_start(w, g, 1)
    x0 = x0.at[:1].set(x0_circ)
    if g.padding_mode == "zeros":
      sigma_inf = sigma_circ
  return _lobpcg_top(gram, x0, sigma_inf, tol, max_iters)


def _inner(a, b):
  """`(k, *n), (l, *n) -> (k, l)`: the inner products `a_i^H b_j`."""
  axes = tuple(range(1, a.ndim))
  return jnp.tensordot(jnp.conj(a), b, axes=(axes, axes), precision=lax.Precision.HIGHEST)


def _combine(c, s):
  """`(k, l), (k, *n) -> (l, *n)`: the combinations `sum_i c_ij s_i`."""
  return jnp.tensordot(c.T, s, axes=1, precision=lax.Precision.HIGHEST)


def _rayleigh_ritz(s, bs, count: int):
  """The top `count` Ritz pairs of `A^H A` on the span of `s` (images `bs`):
  `(theta, c)`, Ritz values descending and coefficients `(len(s), count)`
  whose combinations of `s` are orthonormal. Directions of `s` that its Gram
  matrix cannot resolve (a previous step already in the span) are dropped."""
  eps = jnp.finfo(jnp.finfo(s.dtype).dtype).eps
  ev, u = jnp.linalg.eigh(_inner(s, s))
  keep = ev > 64 * eps * ev[-1]
  t = u * jnp.where(keep, lax.rsqrt(jnp.where(keep, ev, 1)), 0)
  h = _inner(s, bs)
  theta, y = jnp.linalg.eigh(jnp.conj(t.T) @ ((h + jnp.conj(h.T)) / 2) @ t)
  return theta[::-1][:count], t @ y[:, ::-1][:, :count]


def _lobpcg_top(gram, x0, sigma_inf, tol, max_iters):
  """The unit vector at which `spectral_norm` stops (see its rules): block
  LOBPCG, one Rayleigh-Ritz step on the block, its residuals and its last
  step per iteration, watching the top Ritz value."""
  real = sigma_inf.dtype
  tiny = jnp.finfo(real).tiny
  block = x0.shape[0]
  to_sigma = lambda theta: jnp.sqrt(jnp.maximum(theta[0], 0)).astype(real)

  def unit(v, bv):  # columns of v to unit length, bv alike
    norm = jnp.sqrt(jnp.sum(jnp.abs(v.reshape(block, -1)) ** 2, axis=1))
    scale = (1 / jnp.maximum(norm, tiny)).reshape(-1, *(1,) * (v.ndim - 1))
    return v * scale, bv * scale

  def cond(state):
    i, *_, stop = state
    return (i < max_iters) & ~stop

  def body(state):
    i, x, bx, theta, p, bp, sigma, step, ratios, confirmed, _ = state
    r = bx - theta.reshape(-1, *(1,) * (x.ndim - 1)) * x
    r = r - _combine(_inner(x, r), x)
    r, _ = unit(r, r)
    s = jnp.concatenate([x, r, p])
    bs = jnp.concatenate([bx, gram(r), bp])
    theta, c = _rayleigh_ritz(s, bs, block)
    x, bx = _combine(c, s), _combine(c, bs)
    c = c.at[:block].set(0)                       # the step: r and p parts only
    p, bp = unit(_combine(c, s), _combine(c, bs))
    sigma_new = to_sigma(theta)
    step_new = sigma_new - sigma
    ratio = jnp.where(jnp.isfinite(step) & (step > 0), step_new / step, 1)
    ratios = jnp.concatenate([ratios[1:], ratio[None]])
    rho = jnp.max(ratios)
    left = jnp.where(rho < 1, step_new * rho / (1 - jnp.where(rho < 1, rho, 0)), jnp.inf)
    confirmed = jnp.where(SAFETY * left <= tol * sigma_new, confirmed + 1, 0)
    stop = ((confirmed >= _CONFIRM) | (step_new <= 0)
            | (sigma_new * (1 + tol) >= sigma_inf))
    return i + 1, x, bx, theta, p, bp, sigma_new, step_new, ratios, confirmed, stop

  x0, _ = unit(x0, x0)
  bx0 = gram(x0)
  theta, c = _rayleigh_ritz(x0, bx0, block)
  x, bx = _combine(c, x0), _combine(c, bx0)
  sigma0 = to_sigma(theta)
  zero = jnp.zeros_like(x0)
  init = (jnp.zeros((), jnp.int32), x, bx, theta, zero, zero, sigma0,
          jnp.full((), jnp.inf, real), jnp.ones((_RATIOS,), real),
          jnp.zeros((), jnp.int32), sigma0 * (1 + tol) >= sigma_inf)
  x = lax.while_loop(cond, body, init)[1][0]
  return x / jnp.maximum(jnp.linalg.norm(x), tiny)


def conv_operator(w: ArrayLike, input_shape: Sequence[int], *, stride: Size = 1,
                  padding: Padding = 0, dilation: Size = 1, groups: int = 1,
                  padding_mode: str = "zeros", flip: bool = False, lhs_dilation: Size = 1,
                  precision: PrecisionLike = None) -> ConvOperator:
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
  w = as_jax(array_arg(w, "w", fn, array_like=True))
  g = operator_geometry(fn, w, input_shape, stride=stride, padding=padding,
                        dilation=dilation, lhs_dilation=lhs_dilation, groups=groups,
                        padding_mode=padding_mode, flip=flip, precision=precision)
  return ConvOperator(w, g)
