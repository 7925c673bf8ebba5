"""A toy method for the tests: the convolution's definition, one output position
at a time.

`y[n, o, p] = sum over c, t of x_padded[n, g(o) * Cg + c, p * stride + t * dilation]
* w[o, c, t]`: a loop (`lax.map`, compiled once, whatever the output size) over
output positions `p`, each an einsum of one dilated window with the kernel,
vectorised over batch and channels. Slow, and meant to be: it shares no code
with the real methods beyond the contract, so registering it
(`monkeypatch.setitem(METHODS, "loop", reference_loop_method)`) shows what a new
method gets checked against. `jnp`/`lax` only, so every transformation works.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv._geometry import Geometry
from jaxconv._padding import pad_and_dilate

_LOW_PRECISION = (np.dtype(jnp.bfloat16), np.dtype(jnp.float16))


def supports(g: Geometry, purpose: str = "call") -> str | None:
  """Every geometry when asked for by name; never a candidate for 'auto'."""
  del g
  if purpose != "call":
    return "it is a reference loop for tests, never picked by 'auto' or calibrated"
  return None


def conv(x, w, g: Geometry):
  """Cross-correlation of `x` (zero padding not applied) with `w` (already flipped)."""
  n, groups = g.batch, g.groups
  cg, og = g.in_channels_per_group, g.out_channels_per_group
  out_dtype = g.dtype if g.preferred_element_type is None else g.preferred_element_type
  acc = out_dtype
  if g.preferred_element_type is None and g.dtype in _LOW_PRECISION:
    acc = np.dtype(jnp.float32)                # accumulate as XLA's convolution does
  xp = pad_and_dilate(x, g)                                  # (N, C_in, *padded)
  span = g.effective_kernel_size                             # window before dilation
  taps = tuple(slice(None, None, d) for d in g.dilation)
  wg = w.reshape(groups, og, cg, math.prod(g.kernel_size))   # (G, Og, Cg, K)
  # Start of every output position's window, row-major over g.out_spatial.
  starts = np.stack(np.meshgrid(*(np.arange(o) * s for o, s in zip(g.out_spatial, g.stride)),
                                indexing="ij"), -1).reshape(-1, g.rank).astype(np.int32)

  def at(start):                                             # one output position
    corner = jnp.concatenate([jnp.zeros(2, start.dtype), start])    # (0, 0, *start)
    window = lax.dynamic_slice(xp, corner, (n, g.in_channels, *span))
    cols = window[(..., *taps)].reshape(n, groups, cg, -1)   # (N, G, Cg, K)
    return jnp.einsum("ngck,gock->ngo", cols, wg, precision=g.precision,
                      preferred_element_type=acc)            # (N, G, Og)

  ys = lax.map(at, jnp.asarray(starts))                      # (P, N, G, Og)
  y = jnp.moveaxis(ys.reshape(-1, n, groups * og), 0, -1)   # (N, C_out, P)
  return y.reshape(g.out_shape).astype(out_dtype)


def cost(g: Geometry, pass_: str, *, cache_bytes: int = 0) -> dict[str, float]:
  """One feature: a call (the toy is never ranked)."""
  del g, pass_, cache_bytes
  return {"call": 1.0}


def temp_bytes(g: Geometry) -> int:
  """The padded input plus the stacked per-position outputs."""
  itemsize = np.dtype(g.dtype if g.preferred_element_type is None
                      else g.preferred_element_type).itemsize
  return itemsize * (g.batch * g.in_channels * math.prod(g.padded_spatial)
                     + math.prod(g.out_shape))
