"""`jaxconv.convolve/correlate/fftconvolve/oaconvolve/next_fast_len` against
`scipy.signal` on random N-d inputs: every mode, real and complex, `axes`
subsets with broadcasting, integer inputs, and every error path.

Calls are jitted (mode/axes/method static) so each case compiles once.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal as ss

from jaxconv import _signal
from jaxconv._signal import convolve, correlate, fftconvolve, next_fast_len, oaconvolve

MODES = ("full", "same", "valid")


def _rand(shape, complex_=False, seed=0):
  rng = np.random.default_rng(seed)
  a = rng.standard_normal(shape)
  return a + 1j * rng.standard_normal(shape) if complex_ else a


def _all_modes(fn, a, b, **kw):
  """`fn` in every mode, one compiled program."""
  f = jax.jit(lambda x, y: tuple(fn(x, y, mode, **kw) for mode in MODES))
  return [np.asarray(v) for v in f(a, b)]


def _close(got, want, atol=1e-10):
  assert got.shape == want.shape, (got.shape, want.shape)
  np.testing.assert_allclose(got, want, atol=atol * max(1.0, np.max(np.abs(want))))


# (in1 shape, in2 shape, axes): larger-first, smaller-first, broadcasting dims,
# length-1 axes (broadcast, not convolved), negative axes.
FFT_CASES = [
    ((40,), (7,), None),
    ((6,), (15,), None),
    ((9, 8), (4, 3), None),
    ((3, 12), (3, 5), [1]),
    ((1, 12), (4, 5), [-1]),
    ((5, 2, 9), (1, 2, 4), [2]),
    ((6, 7, 5), (3, 2, 5), [0, 1]),
    ((7, 1, 6), (1, 4, 3), None),
]


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("case", FFT_CASES, ids=[f"{c[0]}x{c[1]}-axes{c[2]}" for c in FFT_CASES])
def test_fftconvolve_matches_scipy(case, complex_):
  s1, s2, axes = case
  a, b = _rand(s1, complex_), _rand(s2, complex_, seed=1)
  got = _all_modes(fftconvolve, a, b, axes=axes)
  for mode, g in zip(MODES, got):
    _close(g, ss.fftconvolve(a, b, mode, axes=axes))


OA_CASES = [
    ((2000,), (31,), None),
    ((3, 900), (1, 17), [1]),
    ((300, 40), (9, 5), None),
]


@pytest.mark.parametrize("case", OA_CASES, ids=[f"{c[0]}x{c[1]}" for c in OA_CASES])
def test_oaconvolve_matches_scipy_and_blocks(case):
  s1, s2, axes = case
  a, b = _rand(s1), _rand(s2, seed=1)
  got = _all_modes(oaconvolve, a, b, axes=axes)
  for mode, g in zip(MODES, got):
    _close(g, ss.oaconvolve(a, b, mode, axes=axes))


def test_oaconvolve_really_uses_blocks():
  from jaxconv._methods import fft
  from jaxconv._geometry import make_geometry
  x = jax.ShapeDtypeStruct((1, 1, 2000), jnp.float32)
  w = jax.ShapeDtypeStruct((1, 1, 31), jnp.float32)
  assert fft.plan_conv(make_geometry("t", x, w, padding=30), True).blocks > 1


@pytest.mark.parametrize("method", ["direct", "fft", "oa", "auto"])
@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
def test_convolve_and_correlate_match_scipy(method, complex_):
  a, b = _rand((13, 6), complex_), _rand((4, 3), complex_, seed=1)
  got_c = _all_modes(convolve, a, b, method=method)
  got_r = _all_modes(correlate, a, b, method=method)
  ref_method = "direct" if method == "direct" else "fft"
  for mode, gc, gr in zip(MODES, got_c, got_r):
    _close(gc, ss.convolve(a, b, mode, ref_method))
    _close(gr, ss.correlate(a, b, mode, ref_method))


def test_valid_mode_swaps_when_in2_is_larger():
  a, b = _rand((5, 4)), _rand((9, 7), seed=1)
  for fn, ref in [(convolve, ss.convolve), (correlate, ss.correlate)]:
    for method in ("direct", "fft"):
      got = jax.jit(lambda x, y: fn(x, y, "valid", method))(a, b)
      _close(np.asarray(got), ref(a, b, "valid", method))


def test_convolve_with_axes_broadcasts():
  a, b = _rand((3, 20)), _rand((3, 6), seed=1)
  got = jax.jit(lambda x, y: convolve(x, y, "same", axes=1))(a, b)
  _close(np.asarray(got), ss.fftconvolve(a, b, "same", axes=1))
  got = jax.jit(lambda x, y: correlate(x, y, "full", "direct", axes=1))(a, b)
  want = np.stack([ss.correlate(a[i], b[i], "full") for i in range(3)])
  _close(np.asarray(got), want)


def test_integer_inputs_exact_like_scipy():
  rng = np.random.default_rng(0)
  a, b = rng.integers(-50, 50, (30,)), rng.integers(-50, 50, (7,))
  for method in ("auto", "direct", "fft"):
    got = jax.jit(lambda x, y: convolve(x, y, "full", method))(a, b)
    assert got.dtype == jnp.int32 or got.dtype == jnp.int64
    np.testing.assert_array_equal(np.asarray(got), ss.convolve(a, b, "full", method))
  got = jax.jit(lambda x, y: correlate(x, y, "same", "fft"))(a, b)
  np.testing.assert_array_equal(np.asarray(got), ss.correlate(a, b, "same", "fft"))
  got = fftconvolve(a, b)
  assert jnp.issubdtype(got.dtype, jnp.floating)
  _close(np.asarray(got), ss.fftconvolve(a, b))


def test_float32_and_mixed_dtypes():
  a = _rand((50,)).astype(np.float32)
  b = _rand((9,), True, seed=1).astype(np.complex64)
  got = fftconvolve(a, b, "same")
  assert got.dtype == jnp.complex64
  _close(np.asarray(got), ss.fftconvolve(a, b, "same"), atol=1e-5)


def test_scalars_and_empty_inputs():
  assert float(fftconvolve(jnp.array(3.0), jnp.array(2.0))) == 6.0
  assert complex(correlate(jnp.array(2.0), jnp.array(1j))) == -2j
  assert int(convolve(jnp.array(3), jnp.array(2))) == 6
  assert fftconvolve(jnp.zeros((0, 3)), jnp.ones((2, 2))).shape == (0,)
  assert oaconvolve(jnp.ones((4,)), jnp.zeros((0,))).shape == (0,)


def test_gradients_match_direct():
  a, b = _rand((30,)), _rand((5,), seed=1)
  loss = lambda m: lambda x, y: jnp.sum(jnp.sin(convolve(x, y, "same", m)))
  g_fft = jax.jit(jax.grad(loss("fft"), argnums=(0, 1)))(a, b)
  g_dir = jax.jit(jax.grad(loss("direct"), argnums=(0, 1)))(a, b)
  for u, v in zip(g_fft, g_dir):
    _close(np.asarray(u), np.asarray(v))


def test_next_fast_len():
  assert [next_fast_len(n) for n in (0, 1, 7, 11, 13, 97, 1025)] == [0, 1, 7, 12, 14, 98, 1029]
  # The argument is scipy.fft.next_fast_len's `target` (was `n`).
  with pytest.raises(TypeError, match=r"jaxconv.next_fast_len: `target` must be an int; "
                                      r"got target=2.5"):
    next_fast_len(2.5)
  with pytest.raises(TypeError, match="must be an int"):
    next_fast_len(True)
  with pytest.raises(ValueError, match=r"`target` must be non-negative; got target=-1"):
    next_fast_len(-1)


# --- errors ---------------------------------------------------------------------

ALL = [("convolve", convolve), ("correlate", correlate), ("fftconvolve", fftconvolve),
       ("oaconvolve", oaconvolve)]


@pytest.mark.parametrize("name,fn", ALL, ids=[n for n, _ in ALL])
def test_unknown_mode(name, fn):
  with pytest.raises(ValueError, match=rf"jaxconv.{name}: unknown `mode`; got mode='Full'"):
    fn(jnp.ones(5), jnp.ones(2), "Full")


@pytest.mark.parametrize("name,fn", [("convolve", convolve), ("correlate", correlate)])
def test_unknown_method(name, fn):
  with pytest.raises(ValueError, match=rf"jaxconv.{name}: unknown `method`; got method='fast'"):
    fn(jnp.ones(5), jnp.ones(2), method="fast")


@pytest.mark.parametrize("name,fn", ALL, ids=[n for n, _ in ALL])
def test_rank_mismatch(name, fn):
  with pytest.raises(ValueError, match=rf"jaxconv.{name}: `in1` and `in2` must have the same "
                                       "number of dimensions"):
    fn(jnp.ones((5, 2)), jnp.ones(2))


@pytest.mark.parametrize("name,fn", ALL, ids=[n for n, _ in ALL])
def test_bad_axes(name, fn):
  x, y = jnp.ones((4, 5)), jnp.ones((4, 2))
  with pytest.raises(ValueError, match=r"`axes` out of range for inputs of rank 2; got axes=\(2,\)"):
    fn(x, y, axes=[2])
  with pytest.raises(ValueError, match=r"`axes` out of range.*\(-3,\)"):
    fn(x, y, axes=(-3,))
  with pytest.raises(ValueError, match=r"`axes` must not repeat an axis; got axes=\(1, -1\)"):
    fn(x, y, axes=(1, -1))
  with pytest.raises(ValueError, match=r"`axes` must not be empty"):
    fn(x, y, axes=[])
  # ValueError, as scipy.signal.fftconvolve raises for these (was TypeError).
  with pytest.raises(ValueError, match=r"`axes` must be None, an int or a sequence of ints; "
                                       "got axes='1'"):
    fn(x, y, axes="1")
  with pytest.raises(ValueError, match=r"`axes` must be None, an int or a sequence of ints"):
    fn(x, y, axes=[1.0])


@pytest.mark.parametrize("name,fn", ALL, ids=[n for n, _ in ALL])
def test_non_axes_dims_must_broadcast(name, fn):
  with pytest.raises(ValueError, match=rf"jaxconv.{name}: the dimensions that are not "
                                       r"convolved must be equal or 1.*\(3, 5\).*\(2, 4\)"):
    fn(jnp.ones((3, 5)), jnp.ones((2, 4)), axes=1)
  np.testing.assert_raises(ValueError, ss.fftconvolve, np.ones((3, 5)), np.ones((2, 4)),
                           axes=1)


@pytest.mark.parametrize("name,fn", ALL, ids=[n for n, _ in ALL])
def test_valid_needs_one_input_larger_in_every_axis(name, fn):
  with pytest.raises(ValueError, match=rf"jaxconv.{name}: in mode='valid' one input must be at "
                                       r"least as large as the other.*\(5, 3\) and \(3, 5\)"):
    fn(jnp.ones((5, 3)), jnp.ones((3, 5)), "valid")
  np.testing.assert_raises(ValueError, ss.fftconvolve, np.ones((5, 3)), np.ones((3, 5)),
                           "valid")


def test_convolve_valid_checks_length_one_axes_like_scipy():
  # scipy.signal.convolve checks every axis (fftconvolve skips length-1 axes).
  a, b = np.ones((1, 10)), np.ones((3, 5))
  np.testing.assert_raises(ValueError, ss.convolve, a, b, "valid")
  with pytest.raises(ValueError, match="jaxconv.convolve: in mode='valid'"):
    convolve(a, b, "valid")
  _close(np.asarray(fftconvolve(a, b, "valid")), ss.fftconvolve(a, b, "valid"))


def test_public_functions_are_reexported_once_registered():
  import jaxconv
  for name in ("convolve", "correlate", "fftconvolve", "oaconvolve", "next_fast_len"):
    if hasattr(jaxconv, name):
      assert getattr(jaxconv, name) is getattr(_signal, name)
