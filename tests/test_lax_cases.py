"""The convolution cases JAX's own tests give `lax.conv_general_dilated`, run
through `jaxconv.conv_general_dilated` for every method.

The grids follow what `tests/lax_test.py` and `tests/lax_autodiff_test.py` of
the JAX repository cover (written anew here, not copied): 9x10 inputs with 4x5
kernels and batch/channel counts of 2 and 3 under VALID/SAME/SAME_LOWER and
three stride pairs; explicit (lo, hi) pads, negative ones included; lhs and
rhs dilation; feature and batch groups; three layout triples; zero-size
spatial inputs and empty outputs; and the dtype / preferred_element_type
pairs. A fixed-seed sample of the product keeps the file fast; the zero-size
and dtype cases all run. Values, both VJPs and the JVP are compared with lax
at precision HIGHEST, within `jaxconv.testing.tolerance` (per dtype, relative
to the output's scale); integer and bool results must be exact. A method may
decline a case only for its dtype, as it declares (fft: integers and bool).
"""

from __future__ import annotations

import functools
import itertools
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxconv
from jaxconv import testing
from jaxconv._geometry import geometry_of, make_lax_geometry
from jaxconv._methods import METHODS
from jaxconv._select import select
from configs import X64

HIGHEST = lax.Precision.HIGHEST
METHOD_NAMES = jaxconv.method_names()
FLOAT = jnp.float64 if X64 else jnp.float32
LAYOUTS = {  # dimension_numbers -> (lhs, rhs) permutation of the NCHW / OIHW shapes
    ("NCHW", "OIHW", "NCHW"): ((0, 1, 2, 3), (0, 1, 2, 3)),
    ("NHWC", "HWIO", "NHWC"): ((0, 2, 3, 1), (2, 3, 1, 0)),
    ("NHWC", "OIHW", "NCHW"): ((0, 2, 3, 1), (0, 1, 2, 3)),
}


def _case(lhs, rhs, dtype=FLOAT, layout=("NCHW", "OIHW", "NCHW"), **kw):
  """One call: NCHW/OIHW shapes permuted into `layout`, lax's keyword arguments."""
  lp, rp = LAYOUTS[layout]
  kw.setdefault("window_strides", (1, 1))
  kw.setdefault("padding", "VALID")
  if layout != ("NCHW", "OIHW", "NCHW"):
    kw["dimension_numbers"] = layout
  return (tuple(lhs[i] for i in lp), tuple(rhs[i] for i in rp), np.dtype(dtype), kw)


def _plain_grid():
  """lax_test's testConv: padding strings and strides on 9x10 / 4x5."""
  for b, i, j in itertools.product([2, 3], repeat=3):
    for strides in [(1, 1), (1, 2), (2, 1)]:
      for padding in ["VALID", "SAME", "SAME_LOWER"]:
        yield _case((b, i, 9, 10), (j, i, 4, 5), window_strides=strides, padding=padding)


def _general_grid():
  """lax_autodiff_test's testConvGeneralDilatedGrad: explicit pads (negative
  too), both dilations, feature/batch groups, layouts, zero-size inputs."""
  for fgc, bgc in [(1, 1), (2, 1), (1, 2)]:
    for b, i, j in itertools.product([1, 2], repeat=3):
      for lhs in [(b * bgc, i * fgc, 6, 7), (b * bgc, i * fgc, 0, 4)]:
        rhs = (j * bgc * fgc, i, 1, 2)
        pads = [((0, 0), (0, 0)), ((1, 0), (0, 1))] + ([((0, -1), (0, 0))] if lhs[2] else [])
        for strides, lhs_dil, rhs_dil, padding, layout in itertools.product(
            [(1, 1), (1, 2), (2, 1)], [(1, 1), (2, 1)], [(1, 1), (2, 2)], pads, LAYOUTS):
          yield _case(lhs, rhs, layout=layout, window_strides=strides, padding=padding,
                      lhs_dilation=lhs_dil, rhs_dilation=rhs_dil,
                      feature_group_count=fgc, batch_group_count=bgc)


def _sample(cases, k, seed):
  cases = list(cases)
  return random.Random(seed).sample(cases, k)


# The first 12 of a fixed sample of 20 general cases (all 20 passed when this
# was cut): keeps `make test` near 15 minutes on 2 cores.
SAMPLED = _sample(_plain_grid(), 4, 0) + _sample(_general_grid(), 20, 1)[:12]

# Zero-size and empty cases, every one (lax returns an empty or zero result).
DEGENERATE = [
    _case((0, 2, 9, 10), (3, 2, 4, 5), padding="SAME"),                  # zero batch
    _case((2, 0, 9, 10), (3, 0, 4, 5)),                                   # zero in-channels
    _case((2, 2, 9, 10), (0, 2, 4, 5), window_strides=(2, 1)),            # zero out-channels
    _case((2, 2, 0, 4), (3, 2, 1, 2)),                                    # zero-size spatial
    _case((2, 2, 0, 4), (3, 2, 3, 2), padding=((2, 1), (0, 0))),          # ... all padding
    _case((2, 2, 0, 4), (3, 2, 3, 2), padding="SAME", layout=("NHWC", "HWIO", "NHWC")),
    _case((2, 2, 3, 10), (3, 2, 4, 5)),                                   # empty output
    _case((1, 2, 9, 10), (3, 2, 4, 5), padding=((-7, 0), (0, 0))),        # cropped to empty
    _case((1, 2, 5, 5), (3, 2, 3, 3), rhs_dilation=(3, 1)),               # dilated past it
    _case((2, 4, 0, 4), (4, 2, 1, 2), feature_group_count=2, lhs_dilation=(2, 1),
          padding=((1, 0), (0, 1))),
    _case((0, 2, 6, 7), (4, 2, 1, 2), batch_group_count=2),               # zero batch, bgc
    _case((2, 2, 0, 4), (3, 2, 1, 2), jnp.int32),
    _case((2, 0, 9, 10), (3, 0, 4, 5), jnp.int8, preferred_element_type=jnp.int32),
]

# lax_test's testConvPreferredElement pairs (those this backend computes).
PREFERRED = [
    _case((2, 3, 9, 10), (2, 3, 4, 5), dtype, preferred_element_type=preferred)
    for dtype, preferred in [(jnp.int8, jnp.int16), (jnp.int8, jnp.int32),
                             (jnp.int8, jnp.float32), (jnp.int16, jnp.int32),
                             (jnp.int32, None), (jnp.bool_, None),
                             (jnp.float16, jnp.float32), (jnp.bfloat16, None),
                             (jnp.float32, FLOAT)]
]


def _id(case):
  lhs, rhs, dtype, kw = case
  extra = ",".join(f"{k}={v}" for k, v in kw.items()
                   if k not in ("window_strides", "padding") and v is not None)
  return (f"{dtype.name}-lhs{lhs}-rhs{rhs}-s{kw['window_strides']}-p{kw['padding']}"
          + (f"-{extra}" if extra else "")).replace(" ", "")


def _inputs(shape, dtype, rng):
  if dtype == np.bool_:
    return rng.random(shape) < 0.5
  if np.issubdtype(dtype, np.integer):
    return rng.integers(-3, 4, shape).astype(dtype)
  return rng.standard_normal(shape).astype(np.float32).astype(dtype)


def _quantities(f, lhs, rhs, ct, tl, tr):
  """Value, VJP in each argument, JVP."""
  y, vjp = jax.vjp(f, lhs, rhs)
  gl, gr = vjp(ct)
  return {"value": y, "vjp_lhs": gl, "vjp_rhs": gr, "jvp": jax.jvp(f, (lhs, rhs), (tl, tr))[1]}


@functools.lru_cache(maxsize=None)
def _reference(case_index):
  """lax at HIGHEST (float32 for float16/bfloat16 inputs, as `jaxconv.testing`):
  the inputs, the quantities, and their scales (the same on |inputs|)."""
  lhs_shape, rhs_shape, dtype, kw = ALL[case_index]
  rng = np.random.default_rng(case_index)
  lhs, rhs = _inputs(lhs_shape, dtype, rng), _inputs(rhs_shape, dtype, rng)
  ref = functools.partial(lax.conv_general_dilated, **kw, precision=HIGHEST)
  y = jax.eval_shape(ref, lhs, rhs)
  if not jnp.issubdtype(dtype, jnp.inexact):
    return (lhs, rhs), None, {"value": np.asarray(ref(lhs, rhs))}, None, y
  wide = np.float32 if dtype.name in ("float16", "bfloat16") else dtype
  # The cotangent has the output's dtype (preferred_element_type's, if given).
  out = [_inputs(y.shape, y.dtype, rng), _inputs(lhs_shape, dtype, rng),
         _inputs(rhs_shape, dtype, rng)]
  args = [np.asarray(a, wide) for a in (lhs, rhs, out[0], out[1], out[2])]
  args[2] = np.asarray(out[0], jax.eval_shape(ref, args[0], args[1]).dtype)
  want = jax.jit(functools.partial(_quantities, ref))(*args)
  scale = jax.jit(functools.partial(_quantities, ref))(*[np.abs(a) for a in args])
  return (lhs, rhs), out, want, scale, y


def _declines(method, case):
  """Why `method` declines `case`, as the method says (None: it computes it)."""
  lhs, rhs, dtype, kw = case
  g = make_lax_geometry("t", jax.ShapeDtypeStruct(lhs, dtype), jax.ShapeDtypeStruct(rhs, dtype),
                        **kw).geometry
  return METHODS[method].supports(g), g


ALL = SAMPLED + DEGENERATE + PREFERRED


@pytest.mark.parametrize("method", METHOD_NAMES)
@pytest.mark.parametrize("index", range(len(ALL)), ids=[_id(c) for c in ALL])
def test_same_as_lax(index, method):
  case = ALL[index]
  lhs_shape, rhs_shape, dtype, kw = case
  (lhs, rhs), extra, want, scale, y = _reference(index)
  ours = functools.partial(jaxconv.conv_general_dilated, **kw, method=method)
  why, g = _declines(method, case)
  if why is not None:
    # Only a dtype decline is allowed, and it must be what the call raises.
    assert not jnp.issubdtype(dtype, jnp.inexact), why
    with pytest.raises(NotImplementedError, match=r"integer/bool dtypes"):
      ours(lhs, rhs)
    return
  got_y = jax.eval_shape(ours, lhs, rhs)
  assert (got_y.shape, got_y.dtype) == (y.shape, y.dtype)
  if extra is None:   # integers and bool: exact
    np.testing.assert_array_equal(np.asarray(ours(lhs, rhs)), want["value"])
    return
  got = jax.jit(functools.partial(_quantities, ours))(lhs, rhs, *extra)
  rtol = testing.tolerance(method, dtype, g)
  for name, w in want.items():
    assert got[name].shape == w.shape, name
    err = float(np.max(np.abs(np.asarray(got[name], w.dtype) - np.asarray(w)), initial=0.0))
    sc = float(np.max(np.asarray(scale[name]), initial=0.0)) or 1.0
    assert err <= rtol * sc, f"{name}: error {err:.3g} > {rtol:.3g} x scale {sc:.3g}"


@pytest.mark.parametrize("index", [0, len(SAMPLED) - 1, len(SAMPLED), len(SAMPLED) + 3])
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_second_order_as_lax(index, method):
  """Order 2, as lax_autodiff_test checks: a Hessian-vector product of each
  argument's VJP, through `jaxconv.testing` (degenerate rows included)."""
  lhs_shape, rhs_shape, dtype, kw = ALL[index]
  testing.check_general_against_lax(method, lhs_shape, rhs_shape, dtype, **kw)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_conv_allows_zero_batch_and_channels_as_torch(method):
  """PyTorch's conv accepts N == 0 and C_in == 0 (not an empty output, which
  test_errors pins): jaxconv.conv returns lax's empty / zero result, plus bias."""
  x0 = jnp.ones((0, 2, 6, 6)); w = jnp.ones((3, 2, 3, 3)); b = jnp.arange(3.0)
  y = jaxconv.conv(x0, w, b, padding=1, method=method)
  assert y.shape == (0, 3, 6, 6)
  xc = jnp.ones((2, 0, 6, 6)); wc = jnp.ones((3, 0, 3, 3))
  y = jaxconv.conv(xc, wc, b, stride=2, padding_mode="reflect", padding=1, method=method)
  np.testing.assert_array_equal(y, jnp.broadcast_to(b[:, None, None], (2, 3, 3, 3)))
  gx, gw, gb = jax.grad(lambda *a: jaxconv.conv(*a, method=method).sum(), (0, 1, 2))(xc, wc, b)
  assert (gx.shape, gw.shape) == (xc.shape, wc.shape)
  np.testing.assert_array_equal(gb, np.full(3, 2 * 4 * 4))   # N x the 4x4 outputs


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.int8, jnp.bool_])
@pytest.mark.parametrize("x_shape,w_shape", [((1, 1, 4096), (1, 1, 1023)),
                                             ((1, 4, 256, 256), (4, 4, 31, 31)),
                                             ((2, 3, 9, 10), (2, 3, 4, 5))])
def test_auto_never_picks_fft_for_integers(dtype, x_shape, w_shape):
  g = geometry_of(x_shape, w_shape, dtype)
  plan = select(g)
  assert plan.single is not None and not plan.single.startswith("fft")


LAX_CLASS_CASES = [
    dict(padding=1), dict(padding=(1, 1)), dict(padding=[(1, 1)]), dict(padding=None),
    dict(padding=((-7, 0), (0, 0))),
    dict(precision="foo"), dict(precision=(HIGHEST,) * 3),
    dict(preferred_element_type=jnp.int32), dict(preferred_element_type=jnp.bfloat16),
    dict(preferred_element_type="foo"),
    dict(dimension_numbers=("NCHW", "OIHW")), dict(dimension_numbers="NCHW"),
    dict(dimension_numbers=("NCHW", "OIHW", "NCXW")), dict(dimension_numbers=("NCHH", "OIHW", "NCHW")),
]


@pytest.mark.parametrize("kw", LAX_CLASS_CASES, ids=repr)
def test_refuses_what_lax_refuses_with_its_error_class(kw):
  lhs, rhs = jnp.ones((1, 2, 5, 5), jnp.float32), jnp.ones((3, 2, 3, 3), jnp.float32)
  args = {"window_strides": (1, 1), "padding": "VALID", **kw}
  with pytest.raises(Exception) as theirs:
    lax.conv_general_dilated(lhs, rhs, **args)
  with pytest.raises(type(theirs.value), match=r"^jaxconv.conv_general_dilated: "):
    jaxconv.conv_general_dilated(lhs, rhs, **args, method="direct")
