"""Helpers shared by the methods: dtypes, the grouped GEMM, the sizes their
cost features and memory estimates are built from, and the tap caps of the
methods that unroll one slice per kernel tap."""

from __future__ import annotations

import functools
import math
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

from .._geometry import Geometry

_LOW_PRECISION = (np.dtype(jnp.bfloat16), np.dtype(jnp.float16))


def out_dtype(g: Geometry):
  """The dtype lax returns for these inputs."""
  return g.preferred_element_type if g.preferred_element_type is not None else g.dtype


def acc_dtype(g: Geometry):
  """Accumulate low-precision floats in float32, as XLA's convolution does."""
  if g.preferred_element_type is not None:
    return g.preferred_element_type
  return np.dtype(jnp.float32) if g.dtype in _LOW_PRECISION else g.dtype


def grouped_matmul(wg, cols, g: Geometry, *, broadcast: bool = True):
  """`(G, Og, K) x (N, G, K, L) -> (N, G, Og, L)`, one GEMM per group.

  With `broadcast` (the default) the kernel is broadcast over the batch, a
  `(N, G, Og, K)` copy, so one batched GEMM writes the channels-first result
  directly, with no transpose of the (large) output. Without it the kernel is
  used as it is: one GEMM per group over all `N * L` columns gives
  `(G, Og, N, L)`, transposed once to the output layout. The first costs
  `N * size(wg)` extra memory, the second `size(output)` (and, with several
  groups, a copy of `cols`): `broadcast_weights` chooses.
  """
  acc = acc_dtype(g)
  if broadcast:
    n = cols.shape[0]
    wb = jnp.broadcast_to(wg, (n, *wg.shape))
    return jnp.matmul(wb, cols, precision=g.precision, preferred_element_type=acc)
  y = lax.dot_general(wg, cols, (((2,), (2,)), ((0,), (1,))), precision=g.precision,
                      preferred_element_type=acc)             # (G, Og, N, L)
  return y.transpose(2, 0, 1, 3)


def broadcast_weights(wg_shape, cols_shape) -> bool:
  """Whether `grouped_matmul` should broadcast `wg` over the batch.

  False only for one group (`G == 1`) with `K > L`: deep layers with many
  channels and few positions, where the `(N, Og, K)` broadcast copy of the
  kernel is larger than the `(N, Og, L)` output (for a 512 -> 512 3x3 conv on
  7x7 maps it is 10x the patch tensor, and slower). With several groups the
  unbroadcast GEMM needs `cols` with the group axis leading, which XLA gets by
  copying it, so the broadcast stays.
  """
  return wg_shape[0] > 1 or wg_shape[-1] <= cols_shape[-1]


def broadcast_for_weight_gradient(wg_shape, cols_shape) -> bool:
  """`broadcast_weights` for the weight gradient alone (im2col's `weight_term`).

  Broadcast, the weight gradient is one `(Og, L) x (L, K)` GEMM per batch
  element, summed over the batch; unbroadcast, one GEMM contracting `N * L`
  after transposing `dy` and `cols`. The per-element GEMMs are slow where
  their `(Og, K)` results are large against their inputs, and the transposes
  cost more elsewhere: unbroadcast where `4 * Og * K > (Og + K) * L` (one
  group), whatever the forward does. On a 2-core Xeon: ConvNeXt's 1x1 MLP at
  16x16 (batch 16, 96 -> 384) 5.6 ms broadcast, 1.9 ms not; a ResNet-50
  stage-2 3x3 (batch 8, 128 channels, 28x28; the forward unbroadcast, K > L)
  16 ms broadcast, 25 ms not; 256 -> 256 1x1 at 32x32, below the bound, 14
  against 21 ms; 3x3 at 14x14 with 256 channels, above it, 30 against 11 ms.
  """
  g, og, k = wg_shape
  return g > 1 or 4 * og * k <= (og + k) * cols_shape[-1]


# --- sizes (cost features and memory estimates) ----------------------------------

def sizes(g: Geometry) -> dict[str, int]:
  """Element counts every method's cost features are built from.

  `taps` kernel taps, `out` output positions per channel, `macs` multiply-adds
  of the definition (`g.flops / 2`), `x` padded input, `y` output, `windows`
  = `N * C_in * out` (one window per input channel and output position).
  """
  taps = math.prod(g.kernel_size)
  out = math.prod(g.out_spatial)
  return dict(taps=taps, out=out, macs=g.flops // 2,
              x=g.batch * g.in_channels * math.prod(g.padded_spatial),
              y=g.batch * g.out_channels * out,
              windows=g.batch * g.in_channels * out)


def itemsize(g: Geometry) -> int:
  """Bytes per element of the inputs."""
  return np.dtype(g.dtype).itemsize


def working_set_bytes(g: Geometry) -> int:
  """Bytes of the padded input, the output and the kernel: what each pass streams."""
  s = sizes(g)
  return itemsize(g) * (s["x"] + s["y"] + math.prod(g.kernel_shape))


def padded_input_bytes(g: Geometry) -> int:
  """Bytes of the zero-padded, lhs-dilated copy of `x` (0 when there is none)."""
  if all(p == (0, 0) for p in g.padding) and all(d == 1 for d in g.lhs_dilation):
    return 0
  return itemsize(g) * sizes(g)["x"]


# --- passes and purposes -----------------------------------------------------------

PASSES = ("fwd", "dx", "dw")
"""What `cost(g, pass_)` is asked for: the forward pass, the input gradient
and the weight gradient, each computed as JAX derives it from the method's
`conv` (the transpose of its linear map in `x`, resp. `w`). `method="auto"`
picks a method per pass (`jaxconv._select.Plan`); the cost model has a
coefficient per method, pass and feature."""

PURPOSES = ("call", "auto", "calibrate")
"""What `supports(g, purpose)` is asked for: 'call' (an explicit `method=`),
'auto' (may `method="auto"`/`"autotune"` pick it), 'calibrate' (is it timed
when fitting the cost model)."""


def check_pass(pass_: str, method: str) -> None:
  """Raise for a pass the cost model has no features for."""
  if pass_ not in PASSES:
    raise ValueError(f"jaxconv: method {method!r} has no cost for pass_={pass_!r}; "
                     f"expected one of {PASSES}.")


# One slice and one multiply-add per tap are unrolled into the program, at
# ~10 ms of CPU compile time a tap: the cap depends on who pays for that.
UNROLLED_TAP_CAPS = {"call": 1024, "auto": 256, "calibrate": 256}
"""Kernel taps 'direct' and 'im2col' accept, by purpose: 1024 when asked for
by name (compile time outweighs any gain past that), 256 for `auto` and
`autotune` (users did not choose that compile time), and as many when timed
for calibration: the cost model must have seen every size `auto` ranks (with
a cap of 64 it extrapolated a 15x15 'direct' at half its time)."""


def unrolled_taps_reason(g: Geometry, purpose: str) -> str | None:
  """Why an unrolling method declines `g` for `purpose`, or None."""
  taps, cap = math.prod(g.kernel_size), UNROLLED_TAP_CAPS[purpose]
  if taps > cap:
    why = "" if purpose == "call" else f" for {purpose}"
    return f"it unrolls one slice per kernel tap and this kernel has {taps} > {cap} taps{why}"
  return None


def zeros_varying_like(shape, dtype, *operands):
  """Zeros that vary over the same manual mesh axes as `operands`: the initial
  carry of a `lax.scan` whose step mixes them in (inside `shard_map` a scan's
  carry must keep one type, and the step's output varies wherever an operand
  does)."""
  axes: set[str] = set()
  for a in operands:
    manual = getattr(jax.typeof(a), "manual_axis_type", None)
    axes |= set(getattr(manual, "varying", ()))
  zeros = jnp.zeros(shape, dtype)
  return lax.pcast(zeros, tuple(sorted(axes)), to="varying") if axes else zeros


def conv_with_jvp(fwd, rule):
  """`fwd(x, w, g)` as a `jax.custom_jvp` whose rule is
  `rule(conv, g, x, w, tx, tw) -> (y, ty)`, `conv` being the result itself;
  a tangent JAX knows to be zero arrives as a `SymbolicZero`. `g` (a
  hashable Geometry) is static."""
  @functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
  def conv(x, w, g):
    return fwd(x, w, g)

  conv.defjvp(lambda g, primals, tangents: rule(conv, g, *primals, *tangents),
              symbolic_zeros=True)
  return conv


def bilinear_conv(fwd, dx, dw):
  """`fwd(x, w, g)` with the tangent rule of a bilinear map: `dx(tx, w, g) +
  dw(x, tw, g)`, each term written by the caller so that its transpose (the
  input or the weight gradient) is the one wanted.

  Reverse mode linearises the rule and transposes each term; forward mode
  evaluates it; a tangent JAX knows to be zero (`symbolic_zeros`) costs
  nothing. The rule's primal calls the result itself, so higher orders keep
  these terms too. `g` (a hashable Geometry) is static.
  """
  def rule(conv, g, x, w, tx, tw):
    y = conv(x, w, g)
    terms = []
    if not isinstance(tx, SymbolicZero):
      terms.append(dx(tx, w, g))
    if not isinstance(tw, SymbolicZero):
      terms.append(dw(x, tw, g))
    if not terms:
      return y, jnp.zeros_like(y)
    return y, functools.reduce(jnp.add, terms).astype(y.dtype)

  return conv_with_jvp(fwd, rule)
