"""Pure layer helpers for training code: PyTorch-default parameter initialisation.

No classes: a layer's parameters are a plain dict `{"w": ..., "b": ...}` (a
pytree), ready for `jaxconv.conv(x, **params, ...)` (or `conv_transpose`),
`jax.grad` and optax. `"b"` is `None` when `bias=False`, so the dict keeps the
same keys and `conv`'s `b=None` default applies.

Initialisation is PyTorch's `nn.ConvNd.reset_parameters`:
`kaiming_uniform_(w, a=sqrt(5))`, whose gain `sqrt(2 / (1 + a**2)) = sqrt(1/3)`
makes the bound `sqrt(3) * gain / sqrt(fan_in) = 1 / sqrt(fan_in)`, so
`w ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))`; the bias is drawn from the same
`U(-1/sqrt(fan_in), 1/sqrt(fan_in))`. PyTorch takes `fan_in` from the weight
tensor as `weight.shape[1] * prod(kernel_size)`:

* convolution, weight `(C_out, C_in // groups, *k)`:
  `fan_in = C_in // groups * prod(k)` (PyTorch's docs: `k = groups / (C_in *
  prod(kernel_size))`, bound `sqrt(k)`);
* transposed convolution, weight `(C_in, C_out // groups, *k)`:
  `fan_in = C_out // groups * prod(k)` (PyTorch's ConvTransposeNd docs:
  `k = groups / (C_out * prod(kernel_size))`).

The random streams differ from PyTorch's (JAX keys), the distributions match.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._geometry import check_bool, check_key, dtype_arg, is_int, ntuple, positive_int
from ._typing import ArrayLike, DTypeLike, Size

__all__ = ["init_conv", "init_conv_transpose"]


def _check(fn: str, in_channels, out_channels, kernel_size, groups, bias,
           spatial_dims, dtype) -> tuple[tuple[int, ...], np.dtype]:
  for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                      ("groups", groups)):
    positive_int(value, name, fn)
  if in_channels % groups:
    raise ValueError(
        f"{fn}: `in_channels` (={in_channels}) must be divisible by `groups` "
        f"(={groups}).")
  if out_channels % groups:
    raise ValueError(
        f"{fn}: `out_channels` (={out_channels}) must be divisible by `groups` "
        f"(={groups}).")
  check_bool(bias, "bias", fn)
  if spatial_dims is not None:
    if not is_int(spatial_dims):
      raise TypeError(
          f"{fn}: `spatial_dims` must be an int or None; got "
          f"spatial_dims={spatial_dims!r}.")
    positive_int(spatial_dims, "spatial_dims", fn)
  if is_int(kernel_size):
    rank = 2 if spatial_dims is None else int(spatial_dims)
  elif isinstance(kernel_size, (tuple, list)):
    rank = len(kernel_size)
    if rank == 0:
      raise ValueError(
          f"{fn}: `kernel_size` must have at least one spatial dim; got "
          f"kernel_size={kernel_size!r}.")
    if spatial_dims is not None and spatial_dims != rank:
      raise ValueError(
          f"{fn}: `kernel_size` has {rank} entries but spatial_dims={spatial_dims}; "
          f"got kernel_size={tuple(kernel_size)!r}.")
  else:
    raise TypeError(
        f"{fn}: `kernel_size` must be an int or a tuple of ints; got "
        f"kernel_size={kernel_size!r}.")
  k = ntuple(kernel_size, rank, "kernel_size", fn)
  dt = dtype_arg(dtype, fn)
  if not jnp.issubdtype(dt, jnp.floating):
    raise TypeError(
        f"{fn}: `dtype` must be a floating dtype; got dtype={dt}.")
  return k, dt


def _init(fn: str, key, in_channels, out_channels, kernel_size, groups, bias,
          spatial_dims, dtype, *, transpose: bool) -> dict[str, Any]:
  """Check the arguments, then draw `w` (and `b`) from `U(-1/sqrt(fan_in), ...)`."""
  k, dt = _check(fn, in_channels, out_channels, kernel_size, groups, bias,
                 spatial_dims, dtype)
  check_key(key, "key", fn)
  if transpose:
    w_shape = (in_channels, out_channels // groups, *k)
  else:
    w_shape = (out_channels, in_channels // groups, *k)
  # PyTorch takes fan_in from the weight's dim 1, in either layout.
  bound = 1.0 / math.sqrt(math.prod(w_shape[1:]))
  kw, kb = jax.random.split(key)
  w = jax.random.uniform(kw, w_shape, dt, minval=-bound, maxval=bound)
  b = (jax.random.uniform(kb, (out_channels,), dt, minval=-bound, maxval=bound)
       if bias else None)
  return {"w": w, "b": b}


def init_conv(key: ArrayLike, in_channels: int, out_channels: int, kernel_size: Size, *,
              groups: int = 1, bias: bool = True, spatial_dims: int | None = None,
              dtype: DTypeLike = jnp.float32) -> dict[str, Any]:
  """Parameters of a convolution layer, initialised as PyTorch's `nn.ConvNd`.

  `w ~ U(-bound, bound)` (kaiming-uniform with `a = sqrt(5)`) and
  `b ~ U(-bound, bound)` with `bound = 1 / sqrt(fan_in)`,
  `fan_in = in_channels // groups * prod(kernel_size)`.

  Args:
    key: a `jax.random` key (typed or raw `uint32[2]`).
    in_channels: `C_in`, a positive int divisible by `groups`.
    out_channels: `C_out`, a positive int divisible by `groups`.
    kernel_size: a tuple of ints (its length is the number of spatial dims), or
      an int for a cube of `spatial_dims` dims (2 when `spatial_dims` is None).
    groups: feature groups, as `jaxconv.conv`'s `groups`. Default 1.
    bias: whether to draw a bias; if False, `"b"` is None. Default True.
    spatial_dims: number of spatial dims; needed only with an int
      `kernel_size` for other than 2-D. Default None.
    dtype: a floating dtype. Default float32.

  Returns:
    `{"w": (C_out, C_in // groups, *kernel_size), "b": (C_out,) or None}`.

  Raises:
    TypeError: a channel count, `groups`, `spatial_dims` or `kernel_size` is
      not an int (tuple), `bias` is not a bool, `dtype` is not a floating
      dtype, or `key` is not one PRNG key.
    ValueError: a non-positive size, `groups` not dividing both channel
      counts, or `kernel_size` and `spatial_dims` disagreeing.

  Example:
    >>> import jax
    >>> from jaxconv import nn
    >>> params = nn.init_conv(jax.random.key(0), 3, 16, 3)
    >>> params["w"].shape, params["b"].shape
    ((16, 3, 3, 3), (16,))
    >>> bool(abs(params["w"]).max() <= 1 / (3 * 3 * 3) ** 0.5)
    True
    >>> nn.init_conv(jax.random.key(0), 4, 8, 5, groups=4, bias=False,
    ...              spatial_dims=1)["w"].shape
    (8, 1, 5)
  """
  return _init("jaxconv.nn.init_conv", key, in_channels, out_channels, kernel_size,
               groups, bias, spatial_dims, dtype, transpose=False)


def init_conv_transpose(key: ArrayLike, in_channels: int, out_channels: int,
                        kernel_size: Size, *, groups: int = 1, bias: bool = True,
                        spatial_dims: int | None = None,
                        dtype: DTypeLike = jnp.float32) -> dict[str, Any]:
  """Parameters of a transposed convolution, initialised as PyTorch's `ConvTransposeNd`.

  The weight has PyTorch's transposed layout `(C_in, C_out // groups, *k)`, as
  `jaxconv.conv_transpose` takes it. PyTorch computes the fan-in from that
  tensor's dim 1, so here `fan_in = out_channels // groups * prod(kernel_size)`
  and `w, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))`.

  Args:
    key: a `jax.random` key (typed or raw `uint32[2]`).
    in_channels: `C_in` of the transposed convolution's input, divisible by
      `groups`.
    out_channels: `C_out` it produces, divisible by `groups`.
    kernel_size: a tuple of ints, or an int for a cube of `spatial_dims` dims
      (2 when `spatial_dims` is None).
    groups: feature groups. Default 1.
    bias: whether to draw a bias; if False, `"b"` is None. Default True.
    spatial_dims: number of spatial dims for an int `kernel_size`. Default None.
    dtype: a floating dtype. Default float32.

  Returns:
    `{"w": (C_in, C_out // groups, *kernel_size), "b": (C_out,) or None}`.

  Raises:
    TypeError, ValueError: as `init_conv`.

  Example:
    >>> import jax
    >>> from jaxconv import nn
    >>> params = nn.init_conv_transpose(jax.random.key(0), 16, 8, (4, 4), groups=2)
    >>> params["w"].shape, params["b"].shape
    ((16, 4, 4, 4), (8,))
    >>> bool(abs(params["w"]).max() <= 1 / (8 // 2 * 4 * 4) ** 0.5)
    True
  """
  return _init("jaxconv.nn.init_conv_transpose", key, in_channels, out_channels,
               kernel_size, groups, bias, spatial_dims, dtype, transpose=True)
