"""Sharding rules of the methods: run a method per device where XLA's SPMD
propagation cannot keep it local.

A method reshapes channels and spatial axes, never the batch, so on a
batch-sharded `x` every device can compute its own examples: the forward pass
needs no collective and the weight gradient all-reduces `|w|` elements. XLA's
propagation gets there by itself on Auto axes for the slice/GEMM methods, but

* on Explicit axes (sharding in types, the `jax.make_mesh` default) the
  methods' reshapes of a sharded array are type errors,
* XLA cannot partition an FFT, so on any mesh the FFT all-gathers the batch,
  and
* on Auto axes the weight gradient is all-reduced where XLA meets the
  replicated operand: the Toeplitz matrices, the kernel broadcast over the
  batch or the kernel spectrum, up to 1000x the size of `w`.

`plan` says when to run the method inside `jax.shard_map` over the batch (and,
for a grouped conv whose channels are sharded along whole groups, over the
channels), and `run` does it. The method then sees its per-device geometry
(`SpmdPlan.local`), which is also what `auto` ranks.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

from ._geometry import Geometry

Axes = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class SpmdPlan:
  """How a method runs per device.

  Attributes:
    batch: mesh axes the batch dim is split over (may be empty).
    channels: mesh axes the channels (of `x`, and `w`'s output channels) are
      split over, along whole groups (may be empty).
    local: the geometry each device computes.
    mesh: the (abstract) mesh of the `shard_map`.
    spatial: `x` is sharded on a spatial dim (Explicit axes): the method
      needs whole rows, so `run` gathers them first (`jaxconv.sharded_conv`
      exchanges halos instead; `auto` picks lax, whose convolution does).
  """

  batch: Axes
  channels: Axes
  local: Geometry
  mesh: Any
  spatial: bool = False

  @property
  def specs(self) -> tuple[P, P, P]:
    """`(x, w, y)` partition specs of the `shard_map`."""
    b = self.batch or None
    c = self.channels or None
    return P(b, c), P(c), P(b, c)


def _entry_axes(entry) -> Axes:
  if entry is None:
    return ()
  return tuple(entry) if isinstance(entry, tuple) else (entry,)


def _size(mesh, axes: Axes) -> int:
  return math.prod(mesh.shape[a] for a in axes)


def plan(x, g: Geometry, *, gspmd_partitions: bool = False) -> SpmdPlan | None:
  """The per-device plan for a method on `x` (traced under a mesh), or None.

  Explicit mesh axes are read from `x`'s type: the batch dim's axes always
  split the work; the channel dim's axes too when they split whole groups
  (`groups % size == 0`, a depthwise conv on channel-sharded `x`). A method
  needs whole spatial rows, so spatial axes are gathered (spatial
  decomposition by halo exchange is `jaxconv.sharded_conv`).
  Auto axes are invisible at trace time: unless XLA partitions the method
  well by itself (`gspmd_partitions`, lax's convolution) the batch is split
  over the Auto axes whose sizes divide it (an `x` that was not split on the
  batch is then sliced, which needs no collective).

  Args:
    x: the input `(N, C_in, *spatial)`, an array or tracer.
    g: the method geometry for the whole (global) input.
    gspmd_partitions: whether XLA's propagation partitions the method on
      Auto axes on its own.

  Returns:
    A `SpmdPlan`, or None when the method should run as it is (no mesh, or
    nothing to split).
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return None
  explicit = {a for a, t in zip(mesh.axis_names, mesh.axis_types) if t == AxisType.Explicit}
  spec = tuple(getattr(jax.typeof(x).sharding, "spec", ())) if explicit else ()
  spec += (None,) * (2 - len(spec))
  batch = tuple(a for a in _entry_axes(spec[0]) if a in explicit)
  channels = tuple(a for a in _entry_axes(spec[1]) if a in explicit)
  spatial = any(a in explicit for entry in spec[2:] for a in _entry_axes(entry))
  if channels and g.groups % _size(mesh, channels):
    channels = ()          # not along whole groups: leave it to XLA
  if not gspmd_partitions and not batch:
    auto = [a for a, t in zip(mesh.axis_names, mesh.axis_types)
            if t == AxisType.Auto and a not in channels]
    for a in auto:
      if g.batch % _size(mesh, batch + (a,)) == 0:
        batch += (a,)
  if not batch and not channels and not spatial:
    return None
  if spatial and gspmd_partitions:
    return None            # lax's convolution exchanges halos itself: leave it to XLA
  nb, nc = _size(mesh, batch), _size(mesh, channels)
  if g.batch % nb:
    return None
  local = g.replace(in_shape=(g.batch // nb, g.in_channels // nc, *g.in_spatial),
                    kernel_shape=(g.out_channels // nc, *g.kernel_shape[1:]),
                    groups=g.groups // nc)
  return SpmdPlan(batch, channels, local, mesh, spatial)


def run(conv, x, w, p: SpmdPlan):
  """`conv(x, w, p.local)` on every device's block, inside `jax.shard_map`.

  The kernel is replicated over the batch axes: it is cast to varying
  (`lax.pcast`) before the method touches it, so the weight gradient is
  summed over the batch axes once, as `|w|` elements, and not as whatever
  the method builds from `w` (Toeplitz matrices, kernel spectra).
  """
  x_spec, w_spec, y_spec = p.specs
  local = p.local
  if p.spatial:
    x = jax.sharding.reshard(x, x_spec)
  if not p.batch and not p.channels:
    return conv(x, w, local)

  def per_device(xs, ws):
    if p.batch:
      ws = jax.lax.pcast(ws, p.batch, to="varying")
    return conv(xs, ws, local)

  return jax.shard_map(per_device, mesh=p.mesh,
                       in_specs=(x_spec, w_spec), out_specs=y_spec,
                       axis_names=frozenset(p.batch + p.channels))(x, w)


def check_out_sharding(sharding, fn: str) -> None:
  """lax's rule for `out_sharding`: a `NamedSharding` or `PartitionSpec` whose
  axes are all Explicit mesh axes (ValueError otherwise, as lax raises)."""
  if isinstance(sharding, jax.sharding.NamedSharding):
    mesh, spec = sharding.mesh, sharding.spec
  elif isinstance(sharding, P):
    mesh, spec = jax.sharding.get_abstract_mesh(), sharding
  else:
    raise TypeError(f"{fn}: `out_sharding` must be None, a NamedSharding or a "
                    f"PartitionSpec; got out_sharding={sharding!r}.")
  types = dict(zip(mesh.axis_names, mesh.axis_types))
  for entry in spec:
    for name in _entry_axes(entry):
      if types.get(name) != AxisType.Explicit:
        raise ValueError(
            f"{fn}: `out_sharding` may name only Explicit mesh axes, as in lax; got "
            f"out_sharding={sharding!r} with axis {name!r} of type "
            f"{types.get(name, 'unknown (not in the mesh)')}.")


def constrain(y, sharding):
  """lax's `out_sharding` (checked by `check_out_sharding`): the result's
  type on the Explicit axes it names."""
  return jax.sharding.reshard(y, sharding)
