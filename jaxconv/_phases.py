"""Transposed convolutions without their zeros: the polyphase split of an
lhs-dilated geometry.

A transposed convolution with stride `s` correlates the input dilated by `s`
(`s - 1` zeros between samples) with the kernel. Of the kernel's taps, the
output at position `o` meets non-zero inputs only on those with
`(o + d*k - lo) % s == 0`, so the outputs of one residue `r = o % s` form an
ordinary correlation of the *undilated* input with every `s`-th tap
(`w[k0::s]`), and the result is the `s` phases interleaved. Computing it that
way skips the `(s - 1) / s` of multiply-adds that meet inserted zeros, per
spatial dim: 3/4 of a 2-D stride-2 transposed convolution's, and its
gradients (which autodiff derives from the phases) skip them too.

For one spatial dim with lhs dilation `s`, window stride 1, kernel dilation
`d`, `K` taps, zero padding `(lo, hi)` (negative crops) and `N` inputs, the
taps meeting phase `r` solve `d*k == lo - r (mod s)`: with `c = gcd(d, s)`
they exist when `c` divides `lo - r` and then are `k0, k0 + s/c, ...`, and
consecutive ones read inputs `d/c` apart. Output `q` of the phase reads input
`q + (r + d*k0 - lo) / s` at its first tap, which fixes the phase's padding.
Dims with a window stride too keep their dilation (the phases of a strided
output are not a plain correlation); dims without lhs dilation are not split.

`by_phases` applies this to a method's `conv`, `cost`, `temp_bytes` and
`supports`, so the methods that materialise the dilated input (direct,
im2col, toeplitz, fft) run, cost and cap the phases instead; lax's own
convolution takes the geometry as it is.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Any, Callable, TypeVar, cast

import jax.numpy as jnp
from jax import lax

from ._geometry import Geometry
from ._methods.common import out_dtype, zeros_varying_like


F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class Phase:
  """One output phase of a split geometry.

  Attributes:
    residues: the output residue `o % s` in each split dim.
    taps: the kernel's slice per spatial dim (`slice(None)` where not split).
    geometry: the phase's correlation of the undilated input, or None where
      no tap meets an input (the phase's outputs are zeros).
    out_spatial: the phase's output shape.
  """

  residues: tuple[int, ...]
  taps: tuple[slice, ...]
  geometry: Geometry | None
  out_spatial: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class _DimPhase:
  taps: slice
  count: int          # taps in the phase (0: none meets an input)
  dilation: int
  padding: tuple[int, int]
  out: int


def split_dims(g: Geometry) -> tuple[int, ...]:
  """The spatial dims `by_phases` splits: lhs dilation > 1 and window stride 1.

  Example:
    >>> from jaxconv._geometry import geometry_of
    >>> split_dims(geometry_of((1, 1, 5, 5), (1, 1, 2, 2), lhs_dilation=(2, 1)))
    (0,)
  """
  return tuple(i for i, (ld, s) in enumerate(zip(g.lhs_dilation, g.stride))
               if ld > 1 and s == 1)


def _dim_phase(r: int, n: int, k: int, s: int, d: int, pad: tuple[int, int],
               out: int) -> _DimPhase:
  """Phase `r` of one split dim (module docstring for the arithmetic)."""
  lo = pad[0]
  count_out = max(0, -(-(out - r) // s))
  c = math.gcd(d, s)
  step = s // c
  k0 = next((t for t in range(step) if (r + d * t - lo) % s == 0), None)
  if k0 is None or k0 >= k or count_out == 0:
    return _DimPhase(slice(0, 0), 0, 1, (0, 0), count_out)
  taps = len(range(k0, k, step))
  first = (r + d * k0 - lo) // s                 # input read by output 0, tap k0
  last = first + count_out - 1 + (d // c) * (taps - 1)
  if first > n - 1 or last < 0:                  # reads only padding
    return _DimPhase(slice(0, 0), 0, 1, (0, 0), count_out)
  return _DimPhase(slice(k0, k, step), taps, d // c, (-first, last - (n - 1)), count_out)


@functools.lru_cache(maxsize=None)
def phases(g: Geometry) -> tuple[Phase, ...] | None:
  """The phases of `g`, or None when no dim is split (`split_dims`).

  Example:
    >>> from jaxconv._geometry import geometry_of
    >>> g = geometry_of((1, 1, 4), (1, 1, 2), lhs_dilation=(2,), padding=((1, 1),))
    >>> [(p.taps[0], p.geometry.padding, p.out_spatial) for p in phases(g)]
    [(slice(1, 2, 2), ((0, 0),), (4,)), (slice(0, 2, 2), ((0, 0),), (4,))]
  """
  dims = split_dims(g)
  if not dims:
    return None
  per_dim = [
      [_dim_phase(r, g.in_spatial[i], g.kernel_size[i], g.lhs_dilation[i], g.dilation[i],
                  g.padding[i], g.out_spatial[i]) for r in range(g.lhs_dilation[i])]
      for i in dims]
  out = []
  for residues in itertools.product(*(range(g.lhs_dilation[i]) for i in dims)):
    chosen = dict(zip(dims, (per_dim[j][r] for j, r in enumerate(residues))))
    taps = tuple(chosen[i].taps if i in chosen else slice(None) for i in range(g.rank))
    out_spatial = tuple(chosen[i].out if i in chosen else o
                        for i, o in enumerate(g.out_spatial))
    if any(p.count == 0 for p in chosen.values()):
      out.append(Phase(residues, taps, None, out_spatial))
      continue
    kernel = tuple(chosen[i].count if i in chosen else kk
                   for i, kk in enumerate(g.kernel_size))
    sub = g.replace(
        kernel_shape=(*g.kernel_shape[:2], *kernel),
        padding=tuple(chosen[i].padding if i in chosen else p
                      for i, p in enumerate(g.padding)),
        dilation=tuple(chosen[i].dilation if i in chosen else d
                       for i, d in enumerate(g.dilation)),
        lhs_dilation=tuple(1 if i in chosen else d for i, d in enumerate(g.lhs_dilation)))
    out.append(Phase(residues, taps, sub, out_spatial))
  return tuple(out)


def _interleave(parts, axis: int, size: int):
  """`parts[r]` holding outputs `r, r + s, ...` along `axis` -> all `size`."""
  s = len(parts)
  q = -(-size // s)
  padded = []
  for p in parts:
    widths = [(0, 0)] * p.ndim
    widths[axis] = (0, q - p.shape[axis])
    padded.append(jnp.pad(p, widths))
  y = jnp.stack(padded, axis=axis + 1)
  y = y.reshape(*y.shape[:axis], q * s, *y.shape[axis + 2:])
  return lax.slice_in_dim(y, 0, size, axis=axis)


@functools.lru_cache(maxsize=None)
def runs(g: Geometry) -> tuple[tuple[Geometry, tuple[Phase, ...]], ...]:
  """The calls a split `g` makes: phases with the same geometry (taps, padding,
  dilation) run as one correlation whose output channels hold every phase's
  (the sub-pixel convolution), so they share the input's patches, windows or
  transform and make one wider GEMM; its gradients are one GEMM each too.
  Empty for a geometry that does not split or whose phases are all zeros.

  Example:
    >>> from jaxconv._geometry import geometry_of
    >>> g = geometry_of((1, 8, 5, 5), (4, 8, 2, 2), lhs_dilation=(2, 2), padding=1)
    >>> [(geometry.kernel_shape, len(members)) for geometry, members in runs(g)]
    [((16, 8, 1, 1), 4)]
  """
  groups: dict[Geometry, list[Phase]] = {}
  for p in phases(g) or ():
    if p.geometry is not None:
      groups.setdefault(p.geometry, []).append(p)
  out = []
  for geometry, members in groups.items():
    merged = geometry.replace(kernel_shape=(len(members) * g.out_channels,
                                            *geometry.kernel_shape[1:]))
    out.append((merged, tuple(members)))
  return tuple(out)


def _phase_kernels(w, g: Geometry, members: tuple[Phase, ...]):
  """The members' taps of `w` as one kernel, output channels `(G, phase, Og)`
  (each group's phases side by side, so the groups stay contiguous)."""
  parts = [w[(slice(None), slice(None), *p.taps)] for p in members]
  if len(parts) == 1:
    return parts[0]
  k = jnp.stack(parts)                                   # (P, C_out, Cg, *k)
  k = k.reshape(len(parts), g.groups, g.out_channels_per_group, *k.shape[2:])
  return k.swapaxes(0, 1).reshape(-1, *k.shape[3:])


def by_phases_conv(conv: F) -> F:
  """`conv(x, w, g)` computed phase by phase where `g` splits (module docstring).

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxconv._geometry import geometry_of
    >>> from jaxconv._methods import lax as lax_method
    >>> from jaxconv._methods.direct import conv
    >>> g = geometry_of((1, 1, 3), (1, 1, 2), lhs_dilation=(2,), padding=((1, 1),))
    >>> x, w = jnp.array([[[1., 2., 3.]]]), jnp.array([[[10., 1.]]])
    >>> conv(x, w, g), lax_method.conv(x, w, g)
    (Array([[[ 1., 10.,  2., 20.,  3., 30.]]], dtype=float32), Array([[[ 1., 10.,  2., 20.,  3., 30.]]], dtype=float32))
  """
  @functools.wraps(conv)
  def split_conv(x, w, g: Geometry):
    split = phases(g)
    if split is None:
      return conv(x, w, g)
    outs = {}
    for geometry, members in runs(g):
      y = conv(x, _phase_kernels(w, g, members), geometry)
      y = y.reshape(g.batch, g.groups, len(members), g.out_channels_per_group, *y.shape[2:])
      for i, p in enumerate(members):
        outs[p.residues] = y[:, :, i].reshape(g.batch, g.out_channels, *y.shape[4:])
    for p in split:
      if p.geometry is None:
        shape = (g.batch, g.out_channels, *p.out_spatial)
        outs[p.residues] = zeros_varying_like(shape, out_dtype(g), x, w)
    dims = split_dims(g)
    # Interleave the last split dim first: each step merges one residue axis.
    for j in reversed(range(len(dims))):
      dim, s = dims[j], g.lhs_dilation[dims[j]]
      size = g.out_spatial[dim]
      merged = {}
      for prefix in itertools.product(*(range(g.lhs_dilation[i]) for i in dims[:j])):
        merged[prefix] = _interleave([outs[(*prefix, r)] for r in range(s)], 2 + dim, size)
      outs = merged
    return outs[()]

  return cast(F, split_conv)


def by_phases_cost(cost: F) -> F:
  """A method's `cost` summed over the calls its phases make (`runs`)."""
  @functools.wraps(cost)
  def split_cost(g: Geometry, pass_: str, *, cache_bytes: int) -> dict[str, float]:
    if phases(g) is None:
      return cost(g, pass_, cache_bytes=cache_bytes)
    total: dict[str, float] = {}
    for geometry, _ in runs(g):
      for name, value in cost(geometry, pass_, cache_bytes=cache_bytes).items():
        total[name] = total.get(name, 0.0) + value
    return total

  return cast(F, split_cost)


def by_phases_temp_bytes(temp_bytes: F) -> F:
  """A method's `temp_bytes`: its largest call's (`runs`) plus the phases' outputs."""
  @functools.wraps(temp_bytes)
  def split_temp_bytes(g: Geometry) -> int:
    split = phases(g)
    if split is None:
      return temp_bytes(g)
    item = jnp.dtype(out_dtype(g)).itemsize
    outputs = sum(g.batch * g.out_channels * math.prod(p.out_spatial) for p in split)
    return max((temp_bytes(geometry) for geometry, _ in runs(g)), default=0) + 2 * item * outputs

  return cast(F, split_temp_bytes)


def by_phases_supports(supports: F) -> F:
  """A method's `supports`, asked of each call its phases make (`runs`)."""
  @functools.wraps(supports)
  def split_supports(g: Geometry, purpose: str = "call") -> str | None:
    if phases(g) is None:
      return supports(g, purpose)
    for geometry, _ in runs(g):
      if (why := supports(geometry, purpose)) is not None:
        return why
    return None

  return cast(F, split_supports)
