"""Patches: `unfold` (im2col) and `fold` (its exact adjoint), any spatial rank.

Both follow PyTorch's `nn.Unfold`/`nn.Fold` shapes and ordering: columns are
`(N, C * prod(kernel), L)`, channel-major, kernel offsets row-major, and the `L`
patch positions row-major. Patches are built from one strided slice per kernel
offset (no loop over output pixels, no gather), concatenated so that XLA writes
the patch tensor once, in one fusion; `fold` is `jax.linear_transpose`
of `unfold`, so it is the adjoint by construction: slices transpose to pads and
overlapping patches sum.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._budget import ENV_VAR, human
from ._budget import memory_budget as memory_budget_bytes
from ._geometry import array_shape, is_int, spatial_sizes, unfold_geometry
from ._typing import Array, ArrayLike, Padding, Size


def kernel_offsets(kernel_size: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
  """Kernel offsets in row-major order (PyTorch's order within a patch)."""
  return itertools.product(*(range(k) for k in kernel_size))


def window_slices(xp, kernel_size, dilation, stride, out_spatial):
  """Yield `(offset, slice)` per kernel offset, row-major.

  `xp` is `(N, C, *padded)`, already padded; each slice is `(N, C, *out_spatial)`:
  the input values that kernel tap `offset` meets at every output position.
  """
  n, c = xp.shape[:2]
  for offset in kernel_offsets(tuple(kernel_size)):
    start = [o * d for o, d in zip(offset, dilation)]
    limit = [s + (o - 1) * st + 1 for s, o, st in zip(start, out_spatial, stride)]
    yield offset, lax.slice(xp, (0, 0, *start), (n, c, *limit), (1, 1, *stride))


# XLA:CPU fuses a concatenate with its operands only while it has at most this
# many (`kMaxConcatenateArguments` in cpu_instruction_fusion.cc); a wider one
# first materialises every operand and then copies them all into the result.
_MAX_CONCAT_OPERANDS = 8


def _concatenate(parts, axis):
  """`lax.concatenate(parts, axis)` as a tree with at most 8 operands a node.

  XLA's simplifier merges a concatenate into a parent concatenate along the same
  axis, which would undo the tree; each inner node therefore concatenates along
  an axis of its own (after `level` inserted unit axes) and is reshaped back.
  The reshapes only add or drop unit axes, so they are free (bitcasts).
  """
  level = 0
  while len(parts) > _MAX_CONCAT_OPERANDS:
    level += 1
    groups = -(-len(parts) // _MAX_CONCAT_OPERANDS)
    size = -(-len(parts) // groups)
    merged = []
    for i in range(0, len(parts), size):
      group = [p.reshape(p.shape[:axis] + (1,) * level + p.shape[axis:])
               for p in parts[i:i + size]]
      cat = lax.concatenate(group, axis + level)
      merged.append(cat.reshape(cat.shape[:axis] + cat.shape[axis + level:]))
    parts = merged
  return parts[0] if len(parts) == 1 else lax.concatenate(parts, axis)


def extract_patches(xp, kernel_size, dilation, stride, out_spatial):
  """`(N, C, *padded)` -> `(N, C, prod(kernel), *out_spatial)`, row-major offsets.

  The patch tensor is written once, by one XLA fusion: the strided slices (one
  per kernel offset) are concatenated one kernel axis at a time, each axis a
  concatenate (or a tree of them, `_concatenate`) of at most 8 operands, which
  XLA:CPU fuses with the slices. A flat `jnp.stack` of all `prod(kernel)`
  slices is not fused: every slice is materialised and then copied, so the
  patch tensor exists twice. The transpose (`fold`) is still slices -> pads
  and adds, with no scatter.
  """
  n, c = xp.shape[:2]
  rank = len(kernel_size)
  unit = (1,) * rank
  slices = {offset: s.reshape(n, c, *unit, *out_spatial) for offset, s in
            window_slices(xp, kernel_size, dilation, stride, out_spatial)}

  def build(prefix):  # (N, C, *(1,) * len(prefix), *kernel_size[len(prefix):], *out)
    axis = len(prefix)
    if axis == rank:
      return slices[prefix]
    parts = [build(prefix + (i,)) for i in range(kernel_size[axis])]
    return _concatenate(parts, 2 + axis)

  return build(()).reshape(n, c, math.prod(kernel_size), *out_spatial)


def _pad(x, pads):
  if all(p == (0, 0) for p in pads):
    return x
  return lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (0, 0, 0)] + [(lo, hi, 0) for lo, hi in pads])


def unfold(x: ArrayLike, kernel_size: Size, *, dilation: Size = 1, padding: Padding = 0,
           stride: Size = 1, memory_budget: int | None = None) -> Array:
  """Extract sliding local blocks (im2col), as `torch.nn.functional.unfold`.

  Args:
    x: `(N, C, *spatial)`, any number >= 1 of spatial dims.
    kernel_size: int or per-dim ints.
    dilation: int or per-dim ints. Default 1.
    padding: zero padding: int, per-dim ints, per-dim `(lo, hi)` pairs, or
      'VALID'/'SAME'/'FULL'. Default 0.
    stride: int or per-dim ints. Default 1.
    memory_budget: refuse a result of more bytes. Default:
      `$JAXCONV_MEMORY_BUDGET`, else half the device's memory.

  Returns:
    `(N, C * prod(kernel_size), L)` where `L = prod(out)` and
    `out = floor((n + lo + hi - dilation * (k - 1) - 1) / stride) + 1` per dim.
    Row `c * prod(k) + offset` holds channel `c` at kernel offset `offset`
    (row-major); column `l` is the `l`-th patch position (row-major).

  Raises:
    TypeError: `x` is not an array.
    ValueError: `x` has fewer than 3 dims, `kernel_size` (or another argument)
      has the wrong length or a non-positive entry, there is no patch, or the
      patches would exceed `memory_budget`.

  Example:
    >>> import jax.numpy as jnp, numpy as np, jaxconv
    >>> x = jnp.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    >>> print(np.asarray(jaxconv.unfold(x, 2, stride=2))[0])
    [[ 1.  3.  9. 11.]
     [ 2.  4. 10. 12.]
     [ 5.  7. 13. 15.]
     [ 6.  8. 14. 16.]]
  """
  fn = "jaxconv.unfold"
  shape = array_shape(x, "x", fn, "(N, C, *spatial) with at least one spatial dim",
                      min_rank=3)
  k, d, pads, s, out = unfold_geometry(fn, shape[2:], kernel_size, dilation, padding, stride)
  budget = memory_budget_bytes(memory_budget, fn)
  itemsize = np.dtype(jnp.result_type(x)).itemsize   # canonical, as jnp.asarray(x) will be
  size = math.prod(shape[:2]) * math.prod(k) * math.prod(out) * itemsize
  if size > budget:
    raise ValueError(
        f"{fn}: the patches would take {human(size)}, over the memory budget of "
        f"{human(budget)} (`memory_budget` or ${ENV_VAR}); got x.shape={shape}, "
        f"kernel_size={k}: use jaxconv.conv for a convolution, it need not unfold.")
  x = jnp.asarray(x)
  patches = extract_patches(_pad(x, pads), k, d, s, out)
  return patches.reshape(shape[0], shape[1] * math.prod(k), math.prod(out))


def fold(cols: ArrayLike, output_size: Size, kernel_size: Size, *, dilation: Size = 1,
         padding: Padding = 0, stride: Size = 1, normalize: bool = False) -> Array:
  """Sum sliding local blocks back into an array: the adjoint of `unfold`.

  As `torch.nn.functional.fold`: values of overlapping patches are summed, so
  `fold` is exactly the transpose of `unfold` (`<unfold(x), y> == <x, fold(y)>`).
  With `normalize=True` every output element is divided by the number of
  patches covering it (seed 000, section 4), so `fold(unfold(x), ...,
  normalize=True) == x` wherever every element is covered; uncovered elements
  are 0.

  Args:
    cols: `(N, C * prod(kernel_size), L)`.
    output_size: spatial output shape, a tuple of ints, or an int: the same
      size in every dim of `kernel_size` when that is a tuple (square, as in
      torch), else 1-D.
    kernel_size: int or per-dim ints.
    dilation: int or per-dim ints. Default 1.
    padding: as for `unfold`. Default 0.
    stride: int or per-dim ints. Default 1.
    normalize: divide by the overlap count. Default False.

  Returns:
    `(N, C, *output_size)`.

  Raises:
    TypeError: `cols` is not an array, or `normalize` is not a bool.
    ValueError: `cols` is not 3-D, or its channel count or `L` does not fit
      `output_size` and `kernel_size`.

  Example:
    >>> import jax.numpy as jnp, numpy as np, jaxconv
    >>> x = jnp.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    >>> cols = jaxconv.unfold(x, 2, stride=1)           # overlapping 2x2 patches
    >>> print(np.asarray(jaxconv.fold(cols, (4, 4), 2))[0, 0])   # sums overlaps
    [[ 1.  4.  6.  4.]
     [10. 24. 28. 16.]
     [18. 40. 44. 24.]
     [13. 28. 30. 16.]]
    >>> print(np.asarray(jaxconv.fold(cols, (4, 4), 2, normalize=True))[0, 0])
    [[ 1.  2.  3.  4.]
     [ 5.  6.  7.  8.]
     [ 9. 10. 11. 12.]
     [13. 14. 15. 16.]]
  """
  fn = "jaxconv.fold"
  shape = array_shape(cols, "cols", fn, "(N, C * prod(kernel_size), L)", rank=3)
  if not isinstance(normalize, (bool, np.bool_)):
    raise TypeError(f"{fn}: `normalize` must be a bool; got normalize={normalize!r}.")
  if is_int(output_size) and isinstance(kernel_size, Sequence):
    output_size = (output_size,) * len(kernel_size)   # an int is square, as in torch
  spatial = spatial_sizes(output_size, "output_size", fn)
  k, d, pads, s, out = unfold_geometry(fn, spatial, kernel_size, dilation, padding, stride)
  kk = math.prod(k)
  if shape[1] % kk:
    raise ValueError(
        f"{fn}: `cols` has {shape[1]} rows, not a multiple of prod(kernel_size)={kk} "
        f"(kernel_size={k}); got cols.shape={shape}.")
  if shape[2] != math.prod(out):
    raise ValueError(
        f"{fn}: `cols` has L={shape[2]} patches but output_size={spatial} with "
        f"kernel_size={k}, dilation={d}, padding={pads}, stride={s} gives "
        f"{'x'.join(map(str, out))}={math.prod(out)}; got cols.shape={shape}.")
  n, c = shape[0], shape[1] // kk
  cols = jnp.asarray(cols)
  x_struct = jax.ShapeDtypeStruct((n, c, *spatial), cols.dtype)
  unfold_fn = lambda x: unfold(x, k, dilation=d, padding=pads, stride=s)
  (x,) = jax.linear_transpose(unfold_fn, x_struct)(cols)
  if normalize:
    count = _overlap_count(spatial, k, d, pads, s, out)
    x = x / jnp.asarray(np.maximum(count, 1), dtype=x.dtype)
  return x


def _overlap_count(spatial, k, d, pads, s, out) -> np.ndarray:
  """How many patches cover each element (static: depends on shapes only)."""
  padded = np.zeros([n + lo + hi for n, (lo, hi) in zip(spatial, pads)], np.int64)
  for offset in kernel_offsets(k):
    index = tuple(slice(o * dd, o * dd + (m - 1) * ss + 1, ss)
                  for o, dd, m, ss in zip(offset, d, out, s))
    padded[index] += 1
  crop = tuple(slice(lo, lo + n) for n, (lo, _) in zip(spatial, pads))
  return padded[crop]
