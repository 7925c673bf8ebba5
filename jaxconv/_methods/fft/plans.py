"""FFT plans: the static half of the FFT engine (plain Python ints, cached).

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

import numpy as np

from ..._geometry import Geometry

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


@dataclasses.dataclass(frozen=True)
class Terms:
  """The work of running a plan, in the units the cost estimates count.

  Attributes:
    transform: real flops of all transforms, `2.5 F log2 F` per real
      transform of `F` points (`5 F log2 F` complex), input and output
      spectra per block and phase, the kernel's pruned (x0.6, its zero rows
      are cheap); x3 when a length is not 7-smooth (XLA's FFT falls back to a
      slower algorithm).
    contract: complex multiply-adds of the per-frequency channel contraction.
    data_spectra: complex samples of the input and output spectra.
    kernel_spectra: complex samples of the kernel spectrum.
  """

  transform: float
  contract: float
  data_spectra: float
  kernel_spectra: float


def terms(plan: Plan) -> Terms:
  """The `Terms` of running `plan` (all zero for a zero plan)."""
  if plan.zero:
    return Terms(0.0, 0.0, 0.0, 0.0)
  f = math.prod(plan.sizes)
  half = plan.spectrum_len
  nb, p = plan.blocks, plan.phases
  per = (2.5 if plan.real else 5.0) * f * max(1.0, math.log2(f))
  if any(fast_len(s) != s for s in plan.sizes):
    per *= 3.0
  n, c, o, i = plan.batch, plan.in_channels, plan.out_channels, plan.in_per_group
  data = (n * c * p + n * o) * nb
  return Terms(transform=data * per + o * i * p * per * 0.6,
               contract=float(n * o * i * p * nb * half),
               data_spectra=float(data * half), kernel_spectra=float(o * i * p * half))


def cost(plan: Plan) -> float:
  """Flop + memory-traffic estimate of running `plan`, for choosing among plans:
  8 flops per complex multiply-add, 16 bytes per data spectrum sample (written
  and read), 8 per kernel spectrum sample."""
  t = terms(plan)
  return t.transform + 8.0 * t.contract + 16.0 * t.data_spectra + 8.0 * t.kernel_spectra


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
