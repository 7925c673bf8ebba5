"""FFT execution: the array half of the engine, running a `plans.Plan`.

`run` casts to the compute dtype and runs a plan; `correlate` runs it on
arrays already in that dtype. Only `jnp`/`lax` ops, so `jit`, `vmap` and
derivatives of any order go through it.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..._geometry import Geometry
from ..common import zeros_varying_like
from .plans import AxisPlan, Plan, compute_dtypes

def _pad(x, config):
  if all(c == (0, 0, 0) for c in config):
    return x
  return lax.pad(x, jnp.zeros((), x.dtype), config)


def _embed(k, axis: int, length: int, shift: int):
  """`buf[(t - shift) mod length] += k[t]` along `axis` (folding long kernels)."""
  e = k.shape[axis]
  reps = -(-e // length)
  cfg = [(0, 0, 0)] * k.ndim
  cfg[axis] = (0, reps * length - e, 0)
  k = _pad(k, cfg)
  if reps > 1:
    k = k.reshape(k.shape[:axis] + (reps, length) + k.shape[axis + 1:]).sum(axis)
  shift %= length
  return jnp.roll(k, -shift, axis=axis) if shift else k


def _shift_ramp(size: int, shift: int, n_freq: int, dtype, axis: int, ndim: int):
  """`exp(2 pi i f shift / size)` for `f < n_freq`, shaped to broadcast along
  `axis`: the DFT of a buffer rolled by `-shift` is the DFT times this ramp.
  Computed in float64 at trace time (a constant), so it adds one rounding."""
  f = np.arange(n_freq, dtype=np.float64)
  ramp = np.exp(2j * np.pi * ((f * shift) % size) / size).astype(dtype)
  shape = [1] * ndim
  shape[axis] = n_freq
  return ramp.reshape(shape)


def kernel_spectrum(w, plan: Plan, *, conj: bool):
  """The kernel's transform, `(G, Og, Cg * phases, *spectrum)`.

  Axis by axis, last first: dilate, place in the circular buffer at the plan's
  offset, split into phases, transform. Axes not yet transformed are still
  kernel-sized, so the zero rows of the buffer cost almost nothing.

  Args:
    w: `(C_out, C_in // groups, *kernel)` in the compute dtype.
    plan: the plan.
    conj: return the spectrum for a correlation, `conj(DFT(conj(buf)))`,
      rather than for a convolution, `DFT(buf)`.
  """
  r = len(plan.axes)
  o, i = w.shape[:2]
  k = jnp.conj(w) if conj and not plan.real else w
  for d in reversed(range(r)):
    a, ax = plan.axes[d], 2 + d
    if a.kernel_dilation > 1:
      cfg = [(0, 0, 0)] * k.ndim
      cfg[ax] = (0, 0, a.kernel_dilation - 1)
      k = _pad(k, cfg)
    # One phase: shift after the transform, as a phase ramp that fuses into the
    # spectral product, instead of a roll (a concatenate copy of the buffer).
    ramp = a.phases == 1 and a.shift % a.size != 0
    k = _embed(k, ax, a.phases * a.size, 0 if ramp else a.shift)
    k = k.reshape(k.shape[:ax] + (a.size, a.phases) + k.shape[ax + 1:])
    if plan.real and d == r - 1:
      k = jnp.fft.rfft(k, axis=ax)
    else:
      k = jnp.fft.fft(k, axis=ax)
    if ramp:
      k = k * _shift_ramp(a.size, a.shift, k.shape[ax], k.dtype, ax, k.ndim)
  # Now (O, I, F_0, s_0, F_1, s_1, ...): earlier axes were still one axis each
  # while a later one was split, so axis d always sat at 2 + d.
  k = k.transpose((0, 1, *[3 + 2 * d for d in range(r)], *[2 + 2 * d for d in range(r)]))
  if conj:
    k = jnp.conj(k)
  g = plan.groups
  return k.reshape(g, o // g, i * plan.phases, -1)


def _contract(xs, ks, precision, cdtype):
  """`(B, G, C, F) x (G, Og, C, F) -> (B, G, Og, F)`: channel mixing per frequency."""
  if xs.shape[2] == 1:
    return xs * ks[None, :, :, 0, :]
  return jnp.einsum("bgcf,gocf->bgof", xs, ks, precision=precision,
                    preferred_element_type=cdtype)


def _overlap_add(y, axis: int, hop: int):
  """`(..., blocks, L, ...)` at `axis` (blocks), `axis + 1` (L) -> `(..., blocks*hop + L - hop, ...)`."""
  nb, length = y.shape[axis], y.shape[axis + 1]
  m = -(-length // hop)
  cfg = [(0, 0, 0)] * y.ndim
  cfg[axis + 1] = (0, m * hop - length, 0)
  y = _pad(y, cfg)
  y = y.reshape(y.shape[:axis] + (nb, m, hop) + y.shape[axis + 2:])
  total = None
  for j in range(m):
    piece = lax.index_in_dim(y, j, axis + 1, keepdims=False)   # (..., nb, hop, ...)
    cfg = [(0, 0, 0)] * piece.ndim
    cfg[axis] = (j, m - 1 - j, 0)
    piece = _pad(piece, cfg)
    total = piece if total is None else total + piece
  total = total.reshape(total.shape[:axis] + ((nb + m - 1) * hop,) + total.shape[axis + 2:])
  return lax.slice_in_dim(total, 0, nb * hop + length - hop, axis=axis)


def _blocks(x, ks, plan: Plan, precision):
  """Transform, contract and invert `x` cut into the plan's blocks and phases.

  Args:
    x: `(N, C, *length)`, already cropped, padded and zero-filled per axis.
    ks: the kernel spectrum.

  Returns:
    `(N, O, [blocks_d, L_d]...)` where `L_d` is the block's full correlation
    (overlap-add axes) or the final output (other axes, `blocks_d == 1`).
  """
  r = len(plan.axes)
  n, c = x.shape[:2]
  g = plan.groups
  o = ks.shape[0] * ks.shape[1]
  cdtype = jnp.result_type(x.dtype, np.complex64)
  nbt, p = plan.blocks, plan.phases
  x = x.reshape(n, c, *itertools.chain.from_iterable(
      (a.blocks, a.hop, a.phases) for a in plan.axes))
  # (N, C, [nb, B, s]...) -> (nb..., N, C, s..., B...)
  perm = ([2 + 3 * d for d in range(r)] + [0, 1] + [4 + 3 * d for d in range(r)]
          + [3 + 3 * d for d in range(r)])
  if perm != sorted(perm):
    x = x.transpose(perm)
  x = x.reshape(nbt * n, g, (c // g) * p, *[a.hop for a in plan.axes])
  sizes, fft_axes = plan.sizes, tuple(range(-r, 0))
  if plan.real:
    xf = jnp.fft.rfftn(x, s=sizes, axes=fft_axes)
  else:
    xf = jnp.fft.fftn(x, s=sizes, axes=fft_axes)
  spec = xf.shape[-r:]
  yf = _contract(xf.reshape(nbt * n, g, xf.shape[2], -1), ks, precision, cdtype)
  yf = yf.reshape(nbt * n, o, *spec)
  if plan.real:
    y = jnp.fft.irfftn(yf, s=sizes, axes=fft_axes)
  else:
    y = jnp.fft.ifftn(yf, s=sizes, axes=fft_axes)
  for d, a in enumerate(plan.axes):
    ax = 2 + d
    if a.kind == "periodic":
      if a.take != tuple(range(y.shape[ax])):
        y = jnp.take(y, np.asarray(a.take), axis=ax)
    else:
      stop = a.overlap_len if a.kind == "overlap-add" else a.out
      if stop != y.shape[ax]:
        y = lax.slice_in_dim(y, 0, stop, axis=ax)
  if nbt == 1:
    return y.reshape(n, o, *itertools.chain.from_iterable(
        (1, s) for s in y.shape[2:]))
  # (nb..., N, O, L...) -> (N, O, [nb, L]...)
  y = y.reshape(*[a.blocks for a in plan.axes], n, o, *y.shape[2:])
  perm = [r, r + 1] + list(itertools.chain.from_iterable((d, r + 2 + d) for d in range(r)))
  return y.transpose(perm)


def _finish(y, plan: Plan, *, keep_axis: int = -1):
  """`(N, O, [nb, L]...)` -> `(N, O, *out)`: overlap-add and slice each axis.

  The axis `keep_axis` is overlap-added but neither sliced nor merged with
  its neighbours' final slicing (the chunked scan finishes it).
  """
  r = len(plan.axes)
  for d in reversed(range(r)):   # earlier axes are still (nb, L) pairs
    a, ax = plan.axes[d], 2 + 2 * d
    if a.kind == "overlap-add":
      y = _overlap_add(y, ax, a.hop)
      if d != keep_axis:
        y = lax.slice_in_dim(y, a.out_start, a.out_start + a.out, axis=ax)
    else:
      y = lax.index_in_dim(y, 0, ax, keepdims=False)
  return y


def _prepare(x, plan: Plan, skip_axis: int = -1):
  """Crop / pad / lhs-dilate, then zero-fill every axis to `phases * blocks * hop`."""
  crop = [(0, 0, 0) if d == skip_axis else a.crop for d, a in enumerate(plan.axes)]
  x = _pad(x, [(0, 0, 0)] * 2 + crop)
  fill = [(0, 0 if d == skip_axis else a.length - x.shape[2 + d], 0)
          for d, a in enumerate(plan.axes)]
  return _pad(x, [(0, 0, 0)] * 2 + fill)


def _gather_positions(x, a: AxisPlan, axis: int, start, count: int):
  """Samples `start .. start+count` of the padded, lhs-dilated axis, zero-filled."""
  lo, hi, interior = a.crop
  ld = interior + 1
  nd = a.length - lo - hi
  n0 = x.shape[axis]
  pos = start + jnp.arange(count) - lo
  ok = (pos >= 0) & (pos < nd) & (pos % ld == 0)
  idx = jnp.where(ok, pos // ld, n0)
  return jnp.take(x, idx, axis=axis, mode="fill", fill_value=0)


def _correlate_chunked(x, ks, plan: Plan, precision, out_dtype):
  """The scan over groups of `plan.chunk` blocks of axis `plan.chunk_axis`."""
  d0, c = plan.chunk_axis, plan.chunk
  a = plan.axes[d0]
  steps = a.blocks // c
  step_len = a.phases * c * a.hop
  tail = a.out_start                                  # taps - 1 samples carried
  sub = dataclasses.replace(a, blocks=c, length=step_len)
  subplan = dataclasses.replace(plan, axes=plan.axes[:d0] + (sub,) + plan.axes[d0 + 1:],
                                chunk=0, chunk_axis=-1)
  ax = 2 + d0

  def step(carry, i):
    xs = _gather_positions(x, a, ax, i * step_len, step_len)
    xs = _prepare(xs, subplan, skip_axis=d0)
    y = _finish(_blocks(xs, ks, subplan, precision), subplan, keep_axis=d0)
    # y has c*hop + tail samples on axis d0; its first `tail` overlap the last step.
    if tail:
      head = lax.slice_in_dim(y, 0, tail, axis=ax) + carry
      y = lax.concatenate([head, lax.slice_in_dim(y, tail, y.shape[ax], axis=ax)], ax)
      carry = lax.slice_in_dim(y, c * a.hop, c * a.hop + tail, axis=ax)
    return carry, lax.slice_in_dim(y, 0, c * a.hop, axis=ax).astype(out_dtype)

  shape = [x.shape[0], ks.shape[0] * ks.shape[1]] + [
      tail if d == d0 else b.out for d, b in enumerate(plan.axes)]
  _, ys = lax.scan(step, zeros_varying_like(shape, x.dtype, x, ks), jnp.arange(steps))
  ys = jnp.moveaxis(ys, 0, ax)                        # (N, O, ..., steps, c*hop, ...)
  ys = ys.reshape(ys.shape[:ax] + (steps * c * a.hop,) + ys.shape[ax + 2:])
  return lax.slice_in_dim(ys, a.out_start, a.out_start + a.out, axis=ax)


def correlate(x, w, plan: Plan, *, precision=None, out_dtype=None, conj: bool = True):
  """Run `plan`: the strided, dilated, grouped correlation of `x` with `w`.

  Args:
    x: `(N, C_in, *spatial)` in the compute dtype (real or complex).
    w: `(C_out, C_in // groups, *kernel)` in the same dtype.
    plan: from `plan_conv` or `plan_periodic` (not a zero plan).
    precision: for the channel contraction.
    out_dtype: dtype of the result (default: `x.dtype`).
    conj: True computes a correlation (the method contract); False a
      convolution with the kernel unflipped.

  Returns:
    `(N, C_out, *out)`.
  """
  out_dtype = x.dtype if out_dtype is None else out_dtype
  ks = kernel_spectrum(w, plan, conj=conj)
  if plan.chunk:
    return _correlate_chunked(x, ks, plan, precision, out_dtype)
  y = _blocks(_prepare(x, plan), ks, plan, precision)
  return _finish(y, plan).astype(out_dtype)


def run(x, w, g: Geometry, plan: Plan, *, conj: bool = True, precision=None):
  """Cast to the compute dtype, run `plan`, cast to lax's output dtype.

  Args:
    x, w: as `correlate`, any float or complex dtype.
    g: the geometry the plan was made for (dtypes, output shape).
    plan: from `plan_conv` or `plan_periodic`.
    conj: as `correlate`.
    precision: for the channel contraction (default `g.precision`).

  Returns:
    `(N, C_out, *g.out_spatial)` in `g.preferred_element_type` or `x.dtype`.
  """
  out_dtype = g.preferred_element_type if g.preferred_element_type is not None else g.dtype
  real, cplx, is_complex = compute_dtypes(g.dtype, g.preferred_element_type)
  if plan.zero:
    return jnp.zeros(g.out_shape, out_dtype)
  cd = cplx if is_complex else real
  return correlate(jnp.asarray(x).astype(cd), jnp.asarray(w).astype(cd), plan,
                   precision=g.precision if precision is None else precision,
                   out_dtype=out_dtype, conj=conj)
