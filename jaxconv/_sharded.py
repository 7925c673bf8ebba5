"""`sharded_conv`: spatial domain decomposition by halo exchange.

The input is split over mesh axes along its spatial dims (and optionally its
batch); each shard fetches only the rows its outputs read from its neighbours
(`jax.lax.ppermute` inside `jax.shard_map`), then runs `jaxconv.conv` on its
slab. The planning step (`_plan_axis`) works on plain ints and is separate
from the step that touches arrays (`_halo`).

Per split dim, with `P` shards, global input size `n = P * m`, global output
size `O = P * o`, stride `s`, padding `(lo, hi)` and dilated kernel extent
`e`: shard `j` computes outputs `[j*o, (j+1)*o)` and so reads input rows
`[j*o*s - lo, j*o*s - lo + need)` with `need = (o - 1) * s + e`. It holds rows
`[j*m, (j+1)*m)`, so it lacks `L_j = lo + j * (m - o*s)` rows on the left and
`R_j = need - lo - m - j * (m - o*s)` on the right. Both are linear in `j`;
every shard fetches the largest, `left = max(0, L_j)` and `right = max(0,
R_j)` over `j` (equal for all shards when `o*s == m`), into a window of
`left + m + right` rows, and slices its own `need` rows out of it at offset
`left - L_j` (a `dynamic_slice` on `lax.axis_index`). Rows outside the global
input come from the padding mode: zeros, the ring (circular: the
`ppermute` wraps around), or reflect/replicate rows computed on the border
shard from its own rows and sent on when a halo spans more than one shard.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import AbstractMesh, Mesh, NamedSharding, PartitionSpec

from ._conv import _check_arrays, _check_bias, _check_method, conv
from ._geometry import Geometry, make_geometry
from ._padding import pad_mode
from ._typing import Array, ArrayLike

_FN = "jaxconv.sharded_conv"
CONV_KWARGS = ("stride", "padding", "dilation", "groups", "padding_mode", "flip",
               "method", "precision")


@dataclasses.dataclass(frozen=True)
class AxisPlan:
  """The halo exchange of one split spatial dim (plain ints: static under `jit`).

  Attributes:
    dim: the array axis (2 + spatial index).
    axis: the mesh axis name it is split over.
    shards: `P`, the size of that mesh axis.
    block: `m`, the input rows each shard holds.
    lo: the global padding before the first row (negative crops).
    hi: the global padding after the last row.
    left: rows every shard fetches before its block.
    right: rows every shard fetches after its block.
    need: the input rows (padding included) each shard's outputs read.
    step: `m - o * s`; shard `j`'s slab starts at `left - lo - j * step` in
      its window.
  """

  dim: int
  axis: str
  shards: int
  block: int
  lo: int
  hi: int
  left: int
  right: int
  need: int
  step: int


def _plan_axis(i: int, g: Geometry, axis: str, shards: int) -> AxisPlan:
  """The halo plan of spatial dim `i` split over `shards` shards of mesh axis `axis`.

  Example:
    >>> from jaxconv._geometry import geometry_of
    >>> from jaxconv._sharded import _plan_axis
    >>> p = _plan_axis(0, geometry_of((1, 1, 16), (1, 1, 3), padding=1), "x", 4)
    >>> p.block, p.left, p.right, p.need
    (4, 1, 1, 6)
  """
  n, out, (lo, hi) = g.in_spatial[i], g.out_spatial[i], g.padding[i]
  s, e = g.stride[i], g.effective_kernel_size[i]
  where = (f"spatial dim {i} (x.shape[{2 + i}]) split over the {shards} shards of "
           f"mesh axis {axis!r}")
  if n % shards:
    raise ValueError(
        f"{_FN}: the input size must be divisible by the shard count along {where}; "
        f"got input size {n}, which leaves {n % shards} rows over.")
  if out % shards:
    raise ValueError(
        f"{_FN}: the output size must be divisible by the shard count along {where}; "
        f"got output size {out} (input {n}, padding {(lo, hi)}, stride {s}, dilated "
        f"kernel {e}), which leaves {out % shards} outputs over.")
  m, o = n // shards, out // shards
  need, step = (o - 1) * s + e, m - o * s
  lefts = [lo + j * step for j in (0, shards - 1)]
  rights = [need - lo - m - j * step for j in (0, shards - 1)]
  if g.padding_mode == "reflect" and max(lo, hi) >= m:
    raise ValueError(
        f"{_FN}: padding_mode='reflect' needs the padding smaller than each shard's "
        f"input rows along {where}; got padding {(lo, hi)} and {m} rows per shard "
        f"(input size {n}). Use fewer shards or padding_mode='replicate'.")
  return AxisPlan(dim=2 + i, axis=axis, shards=shards, block=m, lo=lo, hi=hi,
                  left=max(0, *lefts), right=max(0, *rights), need=need, step=step)


def _take(a, start: int, size: int, dim: int):
  return lax.slice_in_dim(a, start, start + size, axis=dim)


def _zeros_like_rows(a, size: int, dim: int):
  shape = list(a.shape)
  shape[dim] = size
  return jnp.zeros(shape, a.dtype)


def _border_rows(a, p: AxisPlan, mode: str, side: str):
  """The padding-mode rows beyond the global border, as the border shard sees them.

  'left': rows `[-p.left, 0)`; 'right': rows `[n, n + p.right)`. Rows the
  convolution never reads (beyond `lo`/`hi`) are zeros. Only the border
  shard's result is used.
  """
  size, pad = (p.left, p.lo) if side == "left" else (p.right, p.hi)
  used = min(max(pad, 0), size)
  pads = [(0, 0)] * (a.ndim - 2)
  pads[p.dim - 2] = (used, 0) if side == "left" else (0, used)
  rows = pad_mode(a, tuple(pads), mode)
  rows = _take(rows, 0 if side == "left" else p.block, used, p.dim)
  fill = _zeros_like_rows(a, size - used, p.dim)
  return jnp.concatenate([fill, rows] if side == "left" else [rows, fill], axis=p.dim)


def _chunk(a, p: AxisPlan, mode: str, side: str, hop: int, border):
  """Rows of the neighbour `hop` shards away on `side`, as one `ppermute`.

  Shard `j` receives the last (left) or first (right) rows of shard `j - hop`
  (left) or `j + hop` (right). Beyond the global border they come from the
  padding mode: the ring for 'circular', zeros for 'zeros', else the border
  shard's `border` rows, sent on by one `ppermute` per receiving shard.
  """
  P, m = p.shards, p.block
  halo = p.left if side == "left" else p.right
  size = min(m, halo - (hop - 1) * m)
  src = _take(a, m - size if side == "left" else 0, size, p.dim)
  sign = 1 if side == "left" else -1
  if mode == "circular":
    if hop % P == 0:
      return src
    return lax.ppermute(src, p.axis, [(i, (i + sign * hop) % P) for i in range(P)])
  pairs = [(i, i + sign * hop) for i in range(P) if 0 <= i + sign * hop < P]
  chunk = (lax.ppermute(src, p.axis, pairs) if pairs
           else _zeros_like_rows(a, size, p.dim))
  if mode == "zeros":
    return chunk
  me = lax.axis_index(p.axis)
  edge = 0 if side == "left" else P - 1
  for j in range(P):  # the shards whose chunk lies beyond the global border
    beyond = hop - j if side == "left" else j + hop - (P - 1)
    if beyond <= 0:
      continue
    # Rows of virtual block -beyond (left) or P - 1 + beyond (right) in `border`.
    start = halo - beyond * m + m - size if side == "left" else (beyond - 1) * m
    if (side == "left" and start + size <= halo - max(p.lo, 0)) or (
        side == "right" and start >= max(p.hi, 0)):
      continue  # beyond the padding: never read, zeros already
    rows = _take(border, start, size, p.dim)
    if j == edge:
      chunk = chunk + jnp.where(me == edge, rows, jnp.zeros_like(rows))
    else:
      chunk = chunk + lax.ppermute(rows, p.axis, [(edge, j)])
  return chunk


def _halo(a, p: AxisPlan, mode: str):
  """Shard `a`'s slab along `p.dim`: its block, its neighbours' halo rows and
  the padding beyond the global borders, cut to the `p.need` rows it reads."""
  m = p.block
  parts = []
  for side, halo in (("left", p.left), ("right", p.right)):
    border = (_border_rows(a, p, mode, side)
              if mode in ("reflect", "replicate") and halo else None)
    hops = -(-halo // m)
    chunks = [_chunk(a, p, mode, side, h, border) for h in range(1, hops + 1)]
    parts.append(chunks[::-1] if side == "left" else chunks)
  window = jnp.concatenate([*parts[0], a, *parts[1]], axis=p.dim)
  start = p.left - p.lo - lax.axis_index(p.axis) * p.step
  return lax.dynamic_slice_in_dim(window, start, p.need, axis=p.dim)


def _mesh_of(mesh):
  if mesh is None:
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
      raise ValueError(
          f"{_FN}: no mesh; got mesh=None outside a mesh context. Pass "
          "mesh=jax.make_mesh(...) or enter one with jax.sharding.set_mesh(mesh).")
    return mesh
  if not isinstance(mesh, (jax.sharding.Mesh, jax.sharding.AbstractMesh)):
    raise TypeError(
        f"{_FN}: `mesh` must be a jax.sharding.Mesh, an AbstractMesh or None (the "
        f"current mesh); got {type(mesh).__name__}.")
  return mesh


def _check_axes(mesh, batch_axis, spatial_axes, rank: int) -> tuple:
  names = tuple(mesh.axis_names)
  if spatial_axes is None:
    spatial_axes = (None,) * rank
  if isinstance(spatial_axes, str) or not isinstance(spatial_axes, Sequence):
    raise TypeError(
        f"{_FN}: `spatial_axes` must be a sequence with one mesh axis name or None per "
        f"spatial dim; got spatial_axes={spatial_axes!r}.")
  spatial_axes = tuple(spatial_axes)
  if len(spatial_axes) != rank:
    raise ValueError(
        f"{_FN}: `spatial_axes` must have one entry per spatial dim ({rank}); got "
        f"spatial_axes={spatial_axes!r} of length {len(spatial_axes)}.")
  for arg, value in (("batch_axis", batch_axis),
                     *((f"spatial_axes[{i}]", a) for i, a in enumerate(spatial_axes))):
    if value is not None and not isinstance(value, str):
      raise TypeError(
          f"{_FN}: `{arg}` must be a mesh axis name (str) or None; got {arg}={value!r}.")
    if value is not None and value not in names:
      raise ValueError(
          f"{_FN}: `{arg}` must name an axis of the mesh {names}; got {arg}={value!r}.")
  used = [a for a in (batch_axis, *spatial_axes) if a is not None]
  if len(set(used)) != len(used):
    raise ValueError(
        f"{_FN}: each mesh axis may split one dim only; got batch_axis={batch_axis!r} "
        f"and spatial_axes={spatial_axes!r}.")
  return spatial_axes


def _reshard(a, mesh, spec: PartitionSpec):
  """Lay `a` out as `spec` on the mesh's Explicit axes (shard_map requires it);
  Auto axes are left to shard_map's own resharding."""
  explicit = {n for n, t in zip(mesh.axis_names, mesh.axis_types)
              if t == jax.sharding.AxisType.Explicit}
  if not explicit:
    return a
  spec = PartitionSpec(*(s if s in explicit else None for s in spec))
  target = NamedSharding(mesh, spec) if isinstance(mesh, jax.sharding.Mesh) else spec
  return jax.reshard(a, target)


def sharded_conv(x: ArrayLike, w: ArrayLike, b: ArrayLike | None = None, *,
                 mesh: Mesh | AbstractMesh | None = None, batch_axis: str | None = None,
                 spatial_axes: Sequence[str | None] | None = None,
                 **conv_kwargs: Any) -> Array:
  """`jaxconv.conv` with the input split over a device mesh along its spatial dims.

  Spatial domain decomposition: each device holds one slab of `x`, receives
  only the halo rows its outputs read from its neighbours (`jax.lax.ppermute`
  inside `jax.shard_map`; a halo wider than one shard is fetched from shards
  further away), and runs `jaxconv.conv` on the slab with the requested
  `method` ('auto' picks by the local shape). Circular padding wraps around
  the ring of shards; zero, reflect and replicate padding apply at the global
  borders only. Differentiable to any order; works under `jit`.

  Args:
    x: input `(N, C_in, *spatial)`.
    w: kernel `(C_out, C_in // groups, *kernel)`, replicated on every device.
    b: optional bias `(C_out,)`.
    mesh: a `jax.sharding.Mesh` (or `AbstractMesh`); None (default) means the
      current one, entered with `jax.sharding.set_mesh`.
    batch_axis: mesh axis name that splits the batch, or None (default).
    spatial_axes: one entry per spatial dim: the mesh axis name that splits
      it, or None. Default None: no spatial split.
    **conv_kwargs: `jaxconv.conv`'s keyword arguments: stride, padding,
      dilation, groups, padding_mode, flip, method, precision.

  Returns:
    `jaxconv.conv(x, w, b, **conv_kwargs)`, sharded as
    `P(batch_axis, None, *spatial_axes)` on the mesh.

  Raises:
    TypeError: an unknown keyword argument, a mesh or axis name of the wrong
      kind, or any `TypeError` of `jaxconv.conv`.
    ValueError: no mesh, an unknown or repeated axis name, a batch or a
      spatial input or output size not divisible by its mesh axis size, a
      reflect padding as wide as a shard, or any `ValueError` of
      `jaxconv.conv`.

  Example:
    >>> import jax, jax.numpy as jnp, numpy as np, jaxconv
    >>> mesh = jax.make_mesh((1,), ("x",))    # 8 host devices would give ("x": 8)
    >>> x = jnp.arange(8.0).reshape(1, 1, 8); w = jnp.ones((1, 1, 3))
    >>> y = jaxconv.sharded_conv(x, w, mesh=mesh, spatial_axes=("x",),
    ...                          padding=1, padding_mode="circular")
    >>> print(np.asarray(y))
    [[[ 8.  3.  6.  9. 12. 15. 18. 13.]]]
    >>> y.sharding.spec
    P(None, None, 'x')
  """
  unknown = sorted(set(conv_kwargs) - set(CONV_KWARGS))
  if unknown:
    raise TypeError(
        f"{_FN}: unknown keyword argument(s) {', '.join(unknown)}; accepted: mesh, "
        f"batch_axis, spatial_axes and jaxconv.conv's {', '.join(CONV_KWARGS)}.")
  method = conv_kwargs.get("method", "auto")
  _check_method(method, _FN)
  _check_arrays(_FN, x=x, w=w, b=b)
  geo = {k: v for k, v in conv_kwargs.items() if k != "method"}
  g = make_geometry(_FN, x, w, **geo)
  _check_bias(b, g.out_channels, _FN, g.dtype)
  mesh = _mesh_of(mesh)
  spatial_axes = _check_axes(mesh, batch_axis, spatial_axes, g.rank)
  sizes = dict(mesh.shape)
  if batch_axis is not None and g.batch % sizes[batch_axis]:
    raise ValueError(
        f"{_FN}: the batch must be divisible by the size of mesh axis "
        f"batch_axis={batch_axis!r}; got batch {g.batch} (x.shape[0]) and axis size "
        f"{sizes[batch_axis]}.")
  plans = tuple(_plan_axis(i, g, a, sizes[a])
                for i, a in enumerate(spatial_axes) if a is not None)
  # Split dims are padded by the exchange; the others by conv on each shard.
  pads = tuple((0, 0) if a is not None else pair
               for a, pair in zip(spatial_axes, g.padding))
  local = dict(conv_kwargs, padding=pads)
  spec = PartitionSpec(batch_axis, None, *spatial_axes)
  args = [_reshard(jnp.asarray(x), mesh, spec), _reshard(jnp.asarray(w), mesh, PartitionSpec())]
  if b is not None:
    args.append(_reshard(jnp.asarray(b), mesh, PartitionSpec()))
  body = functools.partial(_shard_body, plans=plans, mode=g.padding_mode, local=local)
  return jax.shard_map(body, mesh=mesh, in_specs=(spec,) + (PartitionSpec(),) * (len(args) - 1),
                       out_specs=spec)(*args)


def _shard_body(x, w, b=None, *, plans, mode, local):
  """On one shard: the halo of each split dim in turn (the second exchanges the
  first's halo too, so corners arrive), then `conv` on the slab."""
  for p in plans:
    x = _halo(x, p, mode)
  return conv(x, w, b, **local)
