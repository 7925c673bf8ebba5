"""Convolution as a matrix-free linear operator: `ConvOperator`, `conv_operator`.

`matvec` applies the convolution and `rmatvec` its transpose; `as_matrix` is
the dense matrix of `_matrices`. Singular values come exactly from the FFT for
circular padding (Sedghi, Gupta & Long, "The Singular Values of Convolutional
Layers", ICLR 2019) and the spectral norm from power iteration otherwise.
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

from . import _conv
from ._geometry import Geometry, array_arg, as_jax, check_key, positive_int, positive_real
from ._matrices import DEFAULT_MAX_ELEMENTS, check_budget, dense_matrix, operator_geometry
from ._typing import Array, ArrayLike, Padding, PrecisionLike, Size


def _apply_conv(w, g: Geometry, x, precision):
  """`(B, C_in, *in) -> (B, C_out, *out)`: padding mode, flip, and the method
  `auto` picks for this batch size (on XLA:CPU, lax's convolution inside the
  power iteration's `while_loop` is many times slower than a GEMM method)."""
  gb = g.replace(in_shape=(x.shape[0], *g.in_shape[1:]), precision=precision,
                 dtype=np.dtype(x.dtype))
  return _conv.run(x, w, None, gb, "auto", "jaxconv.ConvOperator")


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

  def spectral_norm(self, *, tol: float = 1e-5, max_iters: int = 1000,
                    key: ArrayLike | None = None) -> Array:
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
      TypeError: `tol` not a real number, `max_iters` not an int, or `key` not
        one PRNG key.
      ValueError: `tol` not finite and > 0, or `max_iters` not positive.

    Example:
      >>> import jax.numpy as jnp, numpy as np, jaxconv
      >>> op = jaxconv.conv_operator(jnp.array([[[1.0, 1.0]]]), (1, 8))
      >>> print(f"{float(op.spectral_norm()):.4f}")   # sqrt(2 + 2 cos(pi / 8))
      1.9616
    """
    fn = "jaxconv.ConvOperator.spectral_norm"
    positive_real(tol, "tol", fn)
    positive_int(max_iters, "max_iters", fn)
    if key is not None:
      check_key(key, "key", fn)
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
