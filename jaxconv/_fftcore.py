"""The FFT engine shared by `method="fft"` and the scipy-style functions.

One static *plan* per geometry (hashable, `lru_cache`d, built from Python ints
only) says, for every spatial axis, how the input is cropped/padded, how many
polyphase phases the stride is split into, whether the axis is one circular
transform or overlap-add blocks, the transform length, and where the kernel
sits in its (circular) buffer. `correlate` then runs the plan with `jnp` ops
only, so `jit`, `vmap` and derivatives of any order go through it.

The identity everything rests on, per axis: with the input `x` (length `n`,
zeros beyond) in a circular buffer of length `L` and the (dilated) kernel
`we` placed at `buf[(t - shift) mod L] = we[t]`, the circular correlation
`r[m] = sum_j x[(m + j) mod L] buf[j]` equals the linear one
`sum_t x[m + t - shift] we[t]` (zero padding `shift` in front) for every output
`m` it is used for, as long as `L >= n + shift` (reads before the start wrap
into the zero tail) and `L >= last read + 1` (reads past the end do not wrap
into the data). Zero padding therefore costs nothing but a kernel offset, and
'SAME' needs `n + k/2`, not `n + k - 1`. A stride `s` splits the buffer into
`s` phases `buf[s*j + r]`: the strided correlation is the sum over phases of
length-`L/s` circular correlations, so the phases are extra input channels of
one contraction and nothing computed is thrown away.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math

import jax.numpy as jnp
import numpy as np
from jax import lax

from ._geometry import Geometry

# Overlap-add whose spectra (all blocks together) exceed this many bytes runs
# as a `lax.scan` over groups of blocks of about `_CHUNK_BYTES`.
_SCAN_ABOVE_BYTES = 1 << 24
_CHUNK_BYTES = 1 << 22
# Overlap-add must beat the single transform by this factor to be chosen.
_OA_MARGIN = 0.85


# --- fast lengths -------------------------------------------------------------

@functools.lru_cache(maxsize=4096)
def fast_len(n: int) -> int:
  """The smallest 2·3·5·7-smooth integer >= `n` (`n >= 1`)."""
  if n <= 6:
    return max(int(n), 1)
  best = 1 << (n - 1).bit_length()
  p7 = 1
  while p7 < best:
    p75 = p7
    while p75 < best:
      p753 = p75
      while p753 < best:
        q = -(-n // p753)
        cand = p753 * (1 << (q - 1).bit_length())
        best = min(best, cand)
        p753 *= 3
      p75 *= 5
    p7 *= 7
  return best


def _fast_lens_between(lo: int, hi: int, per_octave: int = 3) -> list[int]:
  """A few fast lengths spread geometrically over `[lo, hi]`."""
  out, v = [], max(lo, 2)
  while v <= hi:
    f = fast_len(v)
    if f <= hi and (not out or f != out[-1]):
      out.append(f)
    v = max(v + 1, int(v * 2 ** (1 / per_octave)))
  return out


# --- dtypes -------------------------------------------------------------------

def compute_dtypes(dtype, preferred=None):
  """`(real, complex, is_complex)` dtypes the transforms run in.

  At least float32/complex64; float64/complex128 when the input or the
  requested output is 64-bit. float16/bfloat16 inputs are computed in float32.
  """
  dts = [np.dtype(dtype)] + ([np.dtype(preferred)] if preferred is not None else [])
  wide = any(d.itemsize >= 8 and d.kind == "f" or d.itemsize >= 16 for d in dts)
  is_complex = np.dtype(dtype).kind == "c"
  if wide:
    return np.dtype(np.float64), np.dtype(np.complex128), is_complex
  return np.dtype(np.float32), np.dtype(np.complex64), is_complex


# --- plans --------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class AxisPlan:
  """How one spatial axis is transformed.

  Attributes:
    crop: `lax.pad` config `(low, high, interior)` applied to the input on this
      axis: crops what no output reads, materialises padding for overlap-add,
      inserts lhs-dilation zeros.
    length: input length after zero-filling, `phases * blocks * hop`.
    phases: polyphase factor (the stride, or 1).
    blocks: overlap-add blocks (1: one circular transform).
    hop: input samples per block and phase.
    size: transform length per phase and block.
    kernel_dilation: rhs dilation.
    shift: circular offset of the kernel in its buffer of `phases * size`.
    out: output length.
    out_start: first kept sample of the overlap-added result.
    take: output indices into the transform for periodic ('circular') axes.
    kind: 'linear' (one transform), 'overlap-add' or 'periodic'.
  """

  crop: tuple[int, int, int]
  length: int
  phases: int
  blocks: int
  hop: int
  size: int
  kernel_dilation: int
  shift: int
  out: int
  out_start: int = 0
  take: tuple[int, ...] | None = None
  kind: str = "linear"

  @property
  def overlap_len(self) -> int:
    """Samples of each block's full correlation: `hop + kernel_taps - 1`."""
    return self.hop + self.out_start


@dataclasses.dataclass(frozen=True)
class Plan:
  """A whole convolution: one `AxisPlan` per spatial axis plus channel sizes."""

  axes: tuple[AxisPlan, ...]
  batch: int
  in_channels: int
  out_channels: int
  in_per_group: int
  groups: int
  real: bool
  zero: bool = False
  chunk: int = 0
  chunk_axis: int = -1

  @property
  def phases(self) -> int:
    return math.prod(a.phases for a in self.axes)

  @property
  def blocks(self) -> int:
    return math.prod(a.blocks for a in self.axes)

  @property
  def sizes(self) -> tuple[int, ...]:
    return tuple(a.size for a in self.axes)

  @property
  def spectrum_len(self) -> int:
    """Complex samples per transform (half the last axis for real input)."""
    f = self.sizes
    return math.prod(f[:-1]) * (f[-1] // 2 + 1 if self.real else f[-1])

  def describe(self) -> str:
    """One line per axis: what `correlate` will do."""
    lines = []
    for i, a in enumerate(self.axes):
      if a.kind == "overlap-add":
        lines.append(f"axis {i}: overlap-add, {a.blocks} blocks of {a.hop} -> FFT {a.size}, "
                     f"{a.phases} phase(s)")
      else:
        lines.append(f"axis {i}: {a.kind}, FFT {a.size}, {a.phases} phase(s)")
    return "\n".join(lines)


def _axis_info(g: Geometry, d: int):
  n0, ld = g.in_spatial[d], g.lhs_dilation[d]
  nd = (n0 - 1) * ld + 1
  lo, hi = g.padding[d]
  e = g.effective_kernel_size[d]
  return nd, ld, lo, hi, e, g.stride[d], g.dilation[d], g.out_spatial[d]


def _linear_axis(g: Geometry, d: int) -> AxisPlan | None:
  """One circular transform, zero padding as a kernel offset; None: all zeros."""
  nd, ld, lo, hi, e, s, kd, out = _axis_info(g, d)
  del hi
  a = max(0, -lo)                          # leading input nobody reads
  b = min(nd, (out - 1) * s + e - lo)      # end of what the last output reads
  if b <= a:
    return None
  lo_c, n = lo + a, b - a
  need = max(n + lo_c, (out - 1) * s + e - lo_c, e)
  size = fast_len(max(-(-need // s), out))   # outputs must not wrap either
  return AxisPlan(crop=(-a, -(nd - b), ld - 1), length=s * size, phases=s, blocks=1,
                  hop=size, size=size, kernel_dilation=kd, shift=lo_c, out=out)


def _overlap_add_axis(g: Geometry, d: int, size: int) -> AxisPlan | None:
  """Overlap-add blocks with transforms of length `size`; None if one block."""
  nd, ld, lo, hi, e, s, kd, out = _axis_info(g, d)
  del hi
  taps = -(-e // s)                        # kernel taps per phase
  hop = size - taps + 1
  if hop < 1:
    return None
  span = out + taps - 1                    # input samples per phase the outputs read
  blocks = -(-span // hop)
  if blocks < 2:
    return None
  length = s * blocks * hop
  return AxisPlan(crop=(lo, length - nd - lo, ld - 1), length=length, phases=s,
                  blocks=blocks, hop=hop, size=size, kernel_dilation=kd,
                  shift=s * (taps - 1), out=out, out_start=taps - 1, kind="overlap-add")


def _overlap_add_options(g: Geometry, d: int, linear: AxisPlan) -> list[AxisPlan]:
  e, s = g.effective_kernel_size[d], g.stride[d]
  taps = -(-e // s)
  opts = []
  for size in _fast_lens_between(2 * taps, linear.size // 2):
    p = _overlap_add_axis(g, d, size)
    if p is not None:
      opts.append(p)
  return opts


def cost(plan: Plan) -> float:
  """Rough flop + memory-traffic estimate of running `plan`."""
  if plan.zero:
    return 0.0
  f = math.prod(plan.sizes)
  half = plan.spectrum_len
  nb, p = plan.blocks, plan.phases
  logf = max(1.0, math.log2(f))
  per = (2.5 if plan.real else 5.0) * f * logf
  n, c, o, i = plan.batch, plan.in_channels, plan.out_channels, plan.in_per_group
  transforms = (n * c * p + n * o) * nb * per
  kernel = o * i * p * per * 0.6          # pruned: zero rows are cheap
  contract = n * o * i * p * nb * half * 8.0
  traffic = (n * c * p + n * o) * nb * half * 16.0 + o * i * p * half * 8.0
  return transforms + kernel + contract + traffic


def _make_plan(g: Geometry, axes, real: bool) -> Plan:
  plan = Plan(axes=tuple(axes), batch=g.batch, in_channels=g.in_channels,
              out_channels=g.out_channels, in_per_group=g.in_channels_per_group,
              groups=g.groups, real=real)
  if plan.blocks > 1:
    item = 16 if _wide(g) else 8
    per_block = (g.batch * (g.in_channels * plan.phases + g.out_channels)
                 * plan.spectrum_len * item)
    if per_block * plan.blocks > _SCAN_ABOVE_BYTES:
      d0 = next(d for d, a in enumerate(plan.axes) if a.blocks > 1)
      per_step = per_block * plan.blocks // plan.axes[d0].blocks
      plan = chunked(plan, max(1, _CHUNK_BYTES // per_step))
  return plan


def chunked(plan: Plan, chunk: int) -> Plan:
  """`plan` run as a `lax.scan` over groups of `chunk` blocks of its first blocked axis.

  Each step gathers its own input blocks (zero-filled where the input has
  padding, no padded copy of the input is made), transforms them and passes
  the overlapping tail of its output to the next step, so temporaries are
  O(chunk) and only the output is O(input). The axis's block count is rounded
  up to a multiple of the chunk (the extra blocks read only zeros). Returns
  `plan` unchanged if one step would hold every block.
  """
  d0 = next((d for d, a in enumerate(plan.axes) if a.blocks > 1), None)
  if d0 is None:
    return plan
  a = plan.axes[d0]
  chunk = max(chunk, -(-a.out_start // a.hop), 1)   # the carried tail fits one step
  if chunk >= a.blocks:
    return dataclasses.replace(plan, chunk=0, chunk_axis=-1)
  blocks = -(-a.blocks // chunk) * chunk
  length = a.phases * blocks * a.hop
  lo, hi, interior = a.crop
  nd = a.length - lo - hi
  axis = dataclasses.replace(a, blocks=blocks, length=length,
                             crop=(lo, length - nd - lo, interior))
  axes = plan.axes[:d0] + (axis,) + plan.axes[d0 + 1:]
  return dataclasses.replace(plan, axes=axes, chunk=chunk, chunk_axis=d0)


def _wide(g: Geometry) -> bool:
  return compute_dtypes(g.dtype, g.preferred_element_type)[1] == np.complex128


@functools.lru_cache(maxsize=1024)
def plan_conv(g: Geometry, overlap_add: bool | None = None) -> Plan:
  """The plan for a zero-padded correlation with geometry `g`.

  Args:
    g: the method geometry (zero padding, strides, both dilations, groups).
    overlap_add: None chooses per axis by `cost`; True takes the cheapest plan
      with overlap-add on at least one axis when any axis has more than one
      block; False never blocks.

  Returns:
    A `Plan`.
  """
  real = np.dtype(g.dtype).kind != "c"
  linear = [_linear_axis(g, d) for d in range(g.rank)]
  if any(p is None for p in linear):
    return dataclasses.replace(_make_plan(g, [], real), zero=True)
  base = _make_plan(g, linear, real)
  if overlap_add is False:
    return base
  options = [[lin] + _overlap_add_options(g, d, lin) for d, lin in enumerate(linear)]
  best, best_cost = None, math.inf
  for combo in itertools.product(*options):
    if all(a.blocks == 1 for a in combo):
      continue
    c = cost(_make_plan(g, combo, real))
    if c < best_cost:
      best, best_cost = combo, c
  if best is None:
    return base
  if overlap_add is None and best_cost > _OA_MARGIN * cost(base):
    return base
  return _make_plan(g, best, real)


@functools.lru_cache(maxsize=256)
def plan_periodic(g: Geometry) -> Plan:
  """The plan for `padding_mode='circular'`: a transform of the input's own size.

  With wrap padding `(lo, hi)` (each at most the input size `n`), the padded
  input is the periodic extension of `x`, so
  `y[o] = sum_t x[(o*s + t - lo) mod n] * w_dil[t]`: one circular correlation
  of length `n`, kernel at offset `lo` (folded if longer than `n`), outputs
  read at `(o*s) mod n`. With `s | n` the stride becomes `s` polyphase phases.
  """
  real = np.dtype(g.dtype).kind != "c"
  axes = []
  for d in range(g.rank):
    n, (lo, _), s, out = g.in_spatial[d], g.padding[d], g.stride[d], g.out_spatial[d]
    phases = s if n % s == 0 else 1
    size = n // phases
    idx = tuple((o * s // phases) % size for o in range(out))
    axes.append(AxisPlan(crop=(0, 0, 0), length=n, phases=phases, blocks=1, hop=size,
                         size=size, kernel_dilation=g.dilation[d], shift=lo, out=out,
                         take=idx, kind="periodic"))
  return _make_plan(g, axes, real)


def periodic_is_cheaper(g: Geometry) -> bool:
  """Whether the periodic transform beats wrap-padding + a linear plan.

  Transform lengths that are not 7-smooth cost about three times as much
  (XLA's FFT falls back to a slower algorithm).
  """
  per = plan_periodic(g)
  c_per = cost(per) * (1.0 if all(fast_len(s) == s for s in per.sizes) else 3.0)
  spatial = tuple(n + lo + hi for n, (lo, hi) in zip(g.in_spatial, g.padding))
  padded = g.replace(in_shape=(*g.in_shape[:2], *spatial), padding=((0, 0),) * g.rank,
                     padding_mode="zeros")
  return c_per <= cost(plan_conv(padded))


# --- execution ----------------------------------------------------------------

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
  _, ys = lax.scan(step, jnp.zeros(shape, x.dtype), jnp.arange(steps))
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
