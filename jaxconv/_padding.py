"""Padding: the non-zero modes (applied once, before any method) and the zero
padding + lhs dilation step that the slice-based methods share."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from ._geometry import Geometry, Pairs

# PyTorch's nn.ConvNd(padding_mode=...) names -> jnp.pad modes.
_JNP_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def pad_mode(x: jnp.ndarray, pads: Pairs, mode: str) -> jnp.ndarray:
  """Pad the spatial dims of `(N, C, *spatial)` `x` with a non-zero mode.

  `mode` is one of 'reflect', 'replicate', 'circular' (PyTorch's semantics:
  reflect excludes the edge, replicate repeats it, circular wraps around).
  """
  return jnp.pad(x, ((0, 0), (0, 0), *pads), mode=_JNP_MODES[mode])


def pad_and_dilate(x: jnp.ndarray, g: Geometry) -> jnp.ndarray:
  """Apply `g`'s zero padding (negative crops) and lhs dilation to `x`.

  One `lax.pad`: interior padding `lhs_dilation - 1` inserts the zeros of a
  transposed convolution, edge padding `(lo, hi)` pads or crops. The result has
  spatial shape `g.padded_spatial`, ready for a 'VALID' strided correlation.
  """
  if all(p == (0, 0) for p in g.padding) and all(d == 1 for d in g.lhs_dilation):
    return x
  config = [(0, 0, 0), (0, 0, 0)] + [
      (lo, hi, d - 1) for (lo, hi), d in zip(g.padding, g.lhs_dilation)]
  return lax.pad(x, jnp.zeros((), x.dtype), config)


def method_geometry(g: Geometry) -> Geometry:
  """The geometry a method sees once a non-zero padding mode has been applied:
  the padded input, no padding left, `padding_mode='zeros'`."""
  if g.padding_mode == "zeros":
    return g
  spatial = tuple(n + lo + hi for n, (lo, hi) in zip(g.in_spatial, g.padding))
  return g.replace(in_shape=(*g.in_shape[:2], *spatial),
                   padding=((0, 0),) * g.rank, padding_mode="zeros")
