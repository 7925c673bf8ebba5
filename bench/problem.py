"""From a `Case` to arrays and functions: inputs, the function under test, the
lax reference, the forward+backward wrapper and the flop count.

The reference is written directly against `jax.lax.conv_general_dilated` at
`precision=HIGHEST` (not through jaxconv), so it is an independent oracle for
every method, `lax` and `auto` included.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .cases import Case

Fn = Callable[[jax.Array, jax.Array], jax.Array]


def inputs(case: Case, seed: int = 0) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Random float32 `(x, w, ct)` for `case`.

  `w` is scaled by `1/sqrt(fan_in)` so outputs are O(1); `ct` is a fixed random
  cotangent of the output's shape (a plain `sum` would give trivial grads).
  """
  rng = np.random.default_rng(seed)
  x = rng.standard_normal(case.x_shape, dtype=np.float32)
  w = rng.standard_normal(case.w_shape, dtype=np.float32)
  if case.transposed:  # each output sums over C_in // groups channels
    fan_in = case.w_shape[0] // case.kwargs.get("groups", 1) * case.kernel_taps
  else:
    fan_in = math.prod(case.w_shape[1:])
  w /= np.float32(math.sqrt(fan_in))
  out = jax.eval_shape(reference_fn(case), jax.ShapeDtypeStruct(x.shape, x.dtype),
                       jax.ShapeDtypeStruct(w.shape, w.dtype))
  ct = rng.standard_normal(out.shape, dtype=np.float32)
  return jnp.asarray(x), jnp.asarray(w), jnp.asarray(ct)


def method_fn(case: Case, method: str) -> Fn:
  """`f(x, w)`: `jaxconv.conv` (or `conv_transpose`) of `case` with `method`."""
  import jaxconv  # imported late so `--help` works without a built package.
  op = jaxconv.conv_transpose if case.transposed else jaxconv.conv
  kwargs = dict(case.kwargs)

  def f(x, w):
    return op(x, w, method=method, **kwargs)
  return f


def _lax_form(case: Case) -> tuple[Callable[[jax.Array], jax.Array], dict[str, Any]]:
  """`case` as one `lax.conv_general_dilated` call: a kernel transform and kwargs.

  A conv maps directly. A transposed conv (PyTorch's semantics, `w` is
  `(C_in, C_out//groups, *k)`) is the correlation of the stride-dilated input,
  padded by `dilation * (k - 1) - padding` (plus `output_padding` on the high
  side), with the kernel regrouped to `(C_out, C_in//groups, *k)` and flipped.
  """
  rank, kw, k = case.rank, case.kwargs, case.kernel_size
  stride = _per_dim(kw.get("stride", 1), rank)
  dilation = _per_dim(kw.get("dilation", 1), rank)
  pads = _pairs(kw.get("padding", 0), rank)
  groups = kw.get("groups", 1)
  if not case.transposed:
    return (lambda w: w), dict(window_strides=stride, padding=pads, lhs_dilation=(1,) * rank,
                               rhs_dilation=dilation, feature_group_count=groups)
  out_pad = _per_dim(kw.get("output_padding", 0), rank)
  t_pads = tuple((d * (kk - 1) - lo, d * (kk - 1) - hi + op)
                 for d, kk, (lo, hi), op in zip(dilation, k, pads, out_pad))

  def kernel(w):
    c_in, c_out_g = w.shape[:2]
    wt = w.reshape(groups, c_in // groups, c_out_g, *k)
    wt = jnp.swapaxes(wt, 1, 2).reshape(groups * c_out_g, c_in // groups, *k)
    return jnp.flip(wt, axis=tuple(range(2, 2 + rank)))
  return kernel, dict(window_strides=(1,) * rank, padding=t_pads, lhs_dilation=stride,
                      rhs_dilation=dilation, feature_group_count=groups)


# PyTorch's padding modes as `jnp.pad` modes, for the reference.
_JNP_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def reference_fn(case: Case) -> Fn:
  """`f(x, w)` computed by `lax.conv_general_dilated` at HIGHEST precision
  (a non-zero padding mode: `jnp.pad` first, then a VALID convolution)."""
  kernel, kwargs = _lax_form(case)
  mode = case.padding_mode
  pads = kwargs["padding"]
  if mode != "zeros":
    kwargs = {**kwargs, "padding": ((0, 0),) * case.rank}

  def f(x, w):
    if mode != "zeros":
      x = jnp.pad(x, ((0, 0), (0, 0), *pads), mode=_JNP_PAD_MODES[mode])
    return lax.conv_general_dilated(x, kernel(w), precision=lax.Precision.HIGHEST,
                                    **kwargs)
  return f


def with_grad(f: Fn) -> Callable[[jax.Array, jax.Array, jax.Array], tuple]:
  """`(x, w, ct) -> (y, dx, dw)`: the forward output and the cotangent `ct`
  pulled back to both arguments, as one training step computes them (`y`
  feeds the next layer).

  `jax.grad` of `sum(f(x, w) * ct)` alone would let XLA drop the forward of
  a linear map (its gradient never reads `y`), timing the backward only.
  """
  def step(x, w, ct):
    y, pullback = jax.vjp(f, x, w)
    return (y, *pullback(ct))
  return step


def geometry(case: Case):
  """jaxconv's `Geometry` of `case`, or for a transposed conv that of the
  forward conv it is the adjoint of (input: the transposed conv's output).

  It gives the flop count (`.flops`: a transposed conv does as many as that
  forward conv) and the reduction lengths behind the tolerance.
  """
  from jaxconv._geometry import make_geometry
  kwargs = {k: v for k, v in case.kwargs.items() if k != "output_padding"}
  x = _spec(case.x_shape)
  if case.transposed:
    x = jax.eval_shape(reference_fn(case), x, _spec(case.w_shape))
  return make_geometry("bench", x, _spec(case.w_shape), **kwargs)


def user_geometry(case: Case):
  """The `Geometry` jaxconv's public function builds for `case` (for a
  transposed conv: the lhs-dilated correlation with the flipped kernel),
  padding mode included."""
  from jaxconv._geometry import make_geometry
  kernel, kw = _lax_form(case)
  w = jax.eval_shape(kernel, _spec(case.w_shape))
  return make_geometry("bench", _spec(case.x_shape), w, stride=kw["window_strides"],
                       padding=kw["padding"], dilation=kw["rhs_dilation"],
                       lhs_dilation=kw["lhs_dilation"], groups=kw["feature_group_count"],
                       flip=case.transposed, padding_mode=case.padding_mode)


def method_geometry(case: Case):
  """The `Geometry` a jaxconv method's `conv` is handed for `case` (after the
  padding mode, if any, padded the input)."""
  from jaxconv._padding import method_geometry as after_padding_mode
  return after_padding_mode(user_geometry(case))


def auto_plan(case: Case):
  """The `jaxconv._select.Plan` `method="auto"` runs for `case`."""
  from jaxconv import _select
  return _select.select(user_geometry(case))


def auto_choice(case: Case) -> tuple[str, str]:
  """`(methods, reason)`: what `method="auto"` runs for `case`; `methods` is
  one name when every pass uses it, else 'fwd / dx / dw' names."""
  return plan_label(auto_plan(case))


def plan_label(plan) -> tuple[str, str]:
  """`(label, reason)` of a `jaxconv._select.Plan` for the tables; a plan
  whose differentiated calls run one method reads 'fwd; grad: method'."""
  if getattr(plan, "fwd_train", None):
    return f"{plan.fwd}; grad: {plan.fwd_train}", plan.reason
  return methods_label(plan.methods), plan.reason


def methods_label(methods) -> str:
  """`(fwd, dx, dw)` method names as one name when they agree, else
  'fwd / dx / dw'."""
  return methods[0] if len(set(methods)) == 1 else " / ".join(methods)


def pass_fn(f: Fn, pass_: str) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
  """`(x, w, ct) -> result` of one pass of `f`: 'fwd' is `f(x, w)`, 'dx' the
  vjp of `ct` in `x` and 'dw' that in `w`, as `jax.grad` runs each gradient
  (`jaxconv._autotune.pass_program`, the programs autotune times)."""
  from jaxconv._autotune import pass_program
  return pass_program(lambda x, w, _: f(x, w), None, pass_)


def _spec(shape) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(tuple(shape), jnp.float32)


def _per_dim(v, rank: int) -> tuple[int, ...]:
  return (v,) * rank if isinstance(v, int) else tuple(v)


def _pairs(p, rank: int) -> tuple[tuple[int, int], ...]:
  if isinstance(p, int):
    return ((p, p),) * rank
  return tuple((q, q) if isinstance(q, int) else tuple(q) for q in p)
