"""Non-overlapping patches for models: ViT tokens and Swin local windows.

All four functions are pure reshapes and transposes (no gathers, no copies
beyond one transpose), N-d over the spatial dims, channels-first, and safe
under `jit`, `vmap` and `grad`. They validate only static shapes.

`patchify` is `unfold(x, p, stride=p)` transposed to tokens, so a token is laid
out as PyTorch's `unfold` lays out a column: channel-major, then the offsets
inside the patch in row-major order. Tokens (and windows) are numbered
row-major over the grid of patches.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from ._geometry import array_shape, spatial_sizes, ntuple
from ._typing import Array, ArrayLike, Size


def _block_grid(fn: str, x, block, name: str):
  """Check `(N, C, *spatial)` `x` against `block`: `(x.shape, grid, block)` as ints."""
  shape = array_shape(x, "x", fn, "(N, C, *spatial) with at least one spatial dim",
                      min_rank=3)
  block = ntuple(block, len(shape) - 2, name, fn)
  return shape, _grid(fn, shape[2:], block, name), block


def _grid(fn: str, spatial: tuple[int, ...], block: tuple[int, ...],
          name: str) -> tuple[int, ...]:
  """Blocks per dim, checking each spatial size is a multiple of the block."""
  bad = [i for i, (n, b) in enumerate(zip(spatial, block)) if n % b]
  if bad:
    raise ValueError(
        f"{fn}: each spatial size must be a multiple of `{name}`; got spatial "
        f"shape {spatial} and {name}={block} (dims {bad} do not divide). Pad the "
        f"input first, e.g. with jnp.pad, to a multiple of {name}.")
  return tuple(n // b for n, b in zip(spatial, block))


def _split(x: jnp.ndarray, grid: tuple[int, ...], block: tuple[int, ...]):
  """(N, C, *spatial) -> (N, *grid, C, *block): blocks first, channel-major inside."""
  n, c = x.shape[:2]
  r = len(grid)
  interleaved = [d for g, b in zip(grid, block) for d in (g, b)]
  y = x.reshape(n, c, *interleaved)          # (N, C, g1, b1, g2, b2, ...)
  grid_axes = [2 + 2 * i for i in range(r)]
  block_axes = [3 + 2 * i for i in range(r)]
  return y.transpose(0, *grid_axes, 1, *block_axes)


def _merge(y: jnp.ndarray, grid: tuple[int, ...], block: tuple[int, ...]):
  """(N, *grid, C, *block) -> (N, C, *spatial): the inverse of `_split`."""
  r = len(grid)
  n, c = y.shape[0], y.shape[1 + r]
  axes = [0, 1 + r]
  for i in range(r):
    axes += [1 + i, 2 + r + i]               # g_i, b_i interleaved
  z = y.transpose(*axes)
  return z.reshape(n, c, *(g * b for g, b in zip(grid, block)))


def patchify(x: ArrayLike, patch_size: Size) -> Array:
  """Cut `x` into non-overlapping patches and flatten each into a ViT token.

  Equal to `jaxconv.unfold(x, patch_size, stride=patch_size).transpose(0, 2,
  1)`, done with one reshape and one transpose. Inside a token the features
  run channel-major, then over the patch offsets in row-major order (PyTorch's
  `unfold` ordering): feature `c * prod(p) + i * p[1] + j` holds channel `c` at
  offset `(i, j)` for 2-D patches. Tokens are numbered row-major over the patch
  grid.

  Args:
    x: `(N, C, *spatial)`, any number of spatial dims.
    patch_size: an int (the same for every spatial dim) or one int per dim;
      each spatial size must be a multiple of it.

  Returns:
    Tokens `(N, L, C * prod(patch_size))` with `L = prod(spatial // patch_size)`.

  Raises:
    TypeError: `x` is not an array, or `patch_size` is not ints.
    ValueError: `x` has no spatial dim, `patch_size` has the wrong length or
      a non-positive entry, or does not divide the spatial shape.

  Example:
    >>> import numpy as np
    >>> import jax.numpy as jnp
    >>> import jaxconv
    >>> x = jnp.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    >>> tokens = jaxconv.patchify(x, 2)
    >>> print(np.asarray(tokens[0]))
    [[ 1.  2.  5.  6.]
     [ 3.  4.  7.  8.]
     [ 9. 10. 13. 14.]
     [11. 12. 15. 16.]]
    >>> bool((jaxconv.unpatchify(tokens, 2, (4, 4)) == x).all())
    True
  """
  shape, grid, p = _block_grid("jaxconv.patchify", x, patch_size, "patch_size")
  y = _split(jnp.asarray(x), grid, p)
  return y.reshape(shape[0], math.prod(grid), shape[1] * math.prod(p))


def unpatchify(tokens: ArrayLike, patch_size: Size, spatial_shape: Size) -> Array:
  """Reassemble ViT tokens into an image: the exact inverse of `patchify`.

  Args:
    tokens: `(N, L, C * prod(patch_size))`, laid out as `patchify` returns them.
    patch_size: an int or one int per spatial dim, as given to `patchify`.
    spatial_shape: the image's spatial shape `(H, W)` (an int for 1-D); each
      size a multiple of `patch_size`.

  Returns:
    `(N, C, *spatial_shape)` with `C = tokens.shape[2] // prod(patch_size)`.

  Raises:
    TypeError: `tokens` is not an array, or `patch_size` / `spatial_shape` is
      not ints.
    ValueError: `tokens` is not 3-D, `patch_size` does not divide
      `spatial_shape`, `L` is not the number of patches, or the token width is
      not a multiple of `prod(patch_size)`.

  Example:
    >>> import jax
    >>> import jaxconv
    >>> x = jax.random.normal(jax.random.key(0), (2, 3, 8, 12))
    >>> tokens = jaxconv.patchify(x, (4, 3))
    >>> tokens.shape
    (2, 8, 36)
    >>> bool((jaxconv.unpatchify(tokens, (4, 3), (8, 12)) == x).all())
    True
  """
  fn = "jaxconv.unpatchify"
  shape = array_shape(tokens, "tokens", fn, "(N, L, C * prod(patch_size))", rank=3)
  spatial = spatial_sizes(spatial_shape, "spatial_shape", fn)
  p = ntuple(patch_size, len(spatial), "patch_size", fn)
  grid = _grid(fn, spatial, p, "patch_size")
  n, length, width = shape
  if length != math.prod(grid):
    raise ValueError(
        f"{fn}: `tokens` has L={length} tokens but spatial_shape={spatial} with "
        f"patch_size={p} makes {math.prod(grid)} patches {grid}.")
  if width % math.prod(p):
    raise ValueError(
        f"{fn}: the token width must be C * prod(patch_size); {width} is not a "
        f"multiple of prod(patch_size)={math.prod(p)} (tokens.shape={shape}).")
  c = width // math.prod(p)
  y = jnp.asarray(tokens).reshape(n, *grid, c, *p)
  return _merge(y, grid, p)


def window_partition(x: ArrayLike, window: Size) -> Array:
  """Split `x` into non-overlapping local windows (Swin), channels-first.

  Windows of one image are consecutive, numbered row-major over the window
  grid; image `b`'s window `j` is row `b * num_windows + j`. Unlike Swin's
  channels-last original, the result keeps the library's `(batch, C, *spatial)`
  layout, so each window is itself an image for `jaxconv.conv`.

  Args:
    x: `(N, C, *spatial)`, any number of spatial dims.
    window: an int (the same for every spatial dim) or one int per dim; each
      spatial size must be a multiple of it.

  Returns:
    `(N * num_windows, C, *window)` with `num_windows = prod(spatial // window)`.

  Raises:
    TypeError, ValueError: as `patchify`, with `window` for `patch_size`.

  Example:
    >>> import numpy as np, jax.numpy as jnp, jaxconv
    >>> jaxconv.window_partition(jnp.zeros((2, 3, 8, 8)), 4).shape   # 4 windows each
    (8, 3, 4, 4)
    >>> windows = jaxconv.window_partition(jnp.arange(1.0, 17.0).reshape(1, 1, 4, 4), 2)
    >>> print(np.asarray(windows[1, 0]))                           # top right
    [[3. 4.]
     [7. 8.]]
  """
  shape, grid, win = _block_grid("jaxconv.window_partition", x, window, "window")
  y = _split(jnp.asarray(x), grid, win)
  return y.reshape(shape[0] * math.prod(grid), shape[1], *win)


def window_reverse(windows: ArrayLike, window: Size, spatial_shape: Size) -> Array:
  """Stitch local windows back into images: the exact inverse of `window_partition`.

  Args:
    windows: `(N * num_windows, C, *window)`, ordered as `window_partition`
      returns them.
    window: an int or one int per spatial dim, as given to `window_partition`.
    spatial_shape: the images' spatial shape (an int for 1-D); each size a
      multiple of `window`.

  Returns:
    `(N, C, *spatial_shape)`.

  Raises:
    TypeError: `windows` is not an array, or `window` / `spatial_shape` is not
      ints.
    ValueError: `windows` does not have the rank or window shape that
      `spatial_shape` and `window` imply, `window` does not divide
      `spatial_shape`, or the leading dim is not a multiple of `num_windows`.

  Example:
    >>> import jax
    >>> import jaxconv
    >>> x = jax.random.normal(jax.random.key(0), (2, 3, 8, 8))
    >>> w = jaxconv.window_partition(x, 4)
    >>> w.shape
    (8, 3, 4, 4)
    >>> bool((jaxconv.window_reverse(w, 4, (8, 8)) == x).all())
    True
  """
  fn = "jaxconv.window_reverse"
  spatial = spatial_sizes(spatial_shape, "spatial_shape", fn)
  rank = len(spatial)
  shape = array_shape(windows, "windows", fn,
                      "(N * num_windows, C, *window) with at least one spatial dim",
                      min_rank=3)
  if len(shape) != rank + 2:
    raise ValueError(
        f"{fn}: `windows` must be (N * num_windows, C, *window) with "
        f"{rank} spatial dims to match spatial_shape={spatial}; got "
        f"windows.shape={shape}.")
  win = ntuple(window, rank, "window", fn)
  if shape[2:] != win:
    raise ValueError(
        f"{fn}: the windows' spatial shape {shape[2:]} does not match "
        f"window={win} (windows.shape={shape}).")
  grid = _grid(fn, spatial, win, "window")
  num = math.prod(grid)
  if shape[0] % num:
    raise ValueError(
        f"{fn}: `windows` has {shape[0]} windows, not a multiple of the "
        f"{num} windows {grid} per image that spatial_shape={spatial} and "
        f"window={win} make.")
  y = jnp.asarray(windows).reshape(shape[0] // num, *grid, shape[1], *win)
  return _merge(y, grid, win)
