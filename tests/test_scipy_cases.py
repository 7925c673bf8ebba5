"""scipy's own test cases for `convolve`, `correlate`, `fftconvolve`,
`oaconvolve` (scipy/signal/tests/test_signaltools.py: TestConvolve,
TestFFTConvolve, TestOAConvolve, TestAllFreqConvolves, TestCorrelateReal,
TestCorrelate, TestCorrelateComplex, TestCorrelate2d's 1-d consistency check,
test_correlation_lags) and `next_fast_len` (scipy/fft/tests/test_helper.py:
TestNextFastLen), re-created against jaxconv.

Each test names the scipy test it re-creates. `scipy.signal` is the oracle
(values and dtypes); scipy's literal expected values are checked as well.
scipy's slow parametrisations (hundreds of lengths) are sampled. Calls go
through `_call`, one compiled program each (`mode`/`method`/`axes` static):
on a fresh shape that is several times cheaper than eager dispatch of the
many small ops.

Documented differences (jaxconv._signal's module docstring), each named where
a test meets it:

- the result dtype is JAX's `jnp.result_type(in1, in2)` (lax's), not numpy's:
  int32/int64/uint* with float16/float32/complex64 stay in the float's
  precision, where numpy widens;
- `fftconvolve`/`oaconvolve` always return the inexact dtype; scipy returns
  the integer dtype when every axis is broadcast (length 1);
- no RuntimeWarning for NaN/inf under `method='fft'`: jaxconv never reads array
  values (it works under `jit`); the NaN propagates as in scipy;
- `next_fast_len` returns 2·3·5·7-smooth lengths for `real` either way.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.fft as sfft
import scipy.signal as ss

from configs import needs_x64
from jaxconv import convolve, correlate, fftconvolve, next_fast_len, oaconvolve

# scipy's cases are float64/int64 cases; the float32 run skips them.
pytestmark = needs_x64

MODES = ("full", "same", "valid")
# scipy's tolerances for fft against direct (test_convolve_method, "found by
# experiment"), by the narrowest float among the inputs; `FFT_ATOL` is the
# absolute tolerance of its literal FFT cases.
TOL = {"float16": dict(rtol=1e-3, atol=1e-3), "float32": dict(rtol=1e-4, atol=1e-6),
       "float64": dict(rtol=1e-5, atol=1e-8)}
FFT_ATOL = 1.5e-6
SCIPY = {"convolve": ss.convolve, "correlate": ss.correlate, "fftconvolve": ss.fftconvolve,
         "oaconvolve": ss.oaconvolve}
OURS = {"convolve": convolve, "correlate": correlate, "fftconvolve": fftconvolve,
        "oaconvolve": oaconvolve}


def _np(x):
  return np.asarray(x)


def _call(fn, a, b, *args, **kwargs):
  """`fn(a, b, *args, **kwargs)` under `jit`, the arguments after `b` static."""
  return jax.jit(lambda x, y: fn(x, y, *args, **kwargs))(a, b)


def _jax_dtype(*arrays):
  return np.dtype(jnp.result_type(*[np.asarray(a).dtype for a in arrays]))


def _tol_class(*dtypes):
  widths = [np.dtype(d).itemsize // (2 if np.dtype(d).kind == "c" else 1)
            for d in dtypes if np.dtype(d).kind in "fc"]
  return {2: "float16", 4: "float32"}.get(min(widths, default=8), "float64")


def _check(got, want, exact, atol=FFT_ATOL, rtol=1e-7):
  got, want = _np(got), _np(want)
  assert got.shape == want.shape, (got.shape, want.shape)
  if exact:
    np.testing.assert_array_equal(got, want)
  else:
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


# --- TestConvolve: literal cases -------------------------------------------------

def _rows_convolve():
  """(id, fn, in1, in2, mode, expected); integer and complex-integer data are exact."""
  sm_a, sm_b = [1, 2, 3, 6, 5, 3], [2, 3, 4, 5, 3, 4, 2, 2, 1]
  c_a, c_b = [1 + 5j, 2 - 1j, 3 + 0j], [2 - 3j, 1 + 0j]
  return [
      ("basic", "convolve", [3, 4, 5, 6, 5, 4], [1, 2, 3], "full", [3, 10, 22, 28, 32, 32, 23, 12]),
      ("same", "convolve", [3, 4, 5], [1, 2, 3, 4], "same", [10, 22, 34]),
      ("same_eq", "convolve", [3, 4, 5], [1, 2, 3], "same", [10, 22, 22]),
      ("complex", "convolve", [1 + 1j, 2 + 1j, 3 + 1j], [1 + 1j, 2 + 1j], "full",
       [2j, 2 + 6j, 5 + 8j, 5 + 5j]),
      ("2d_arrays", "convolve", [[1, 2, 3], [3, 4, 5]], [[2, 3, 4], [4, 5, 6]], "full",
       [[2, 7, 16, 17, 12], [10, 30, 62, 58, 38], [12, 31, 58, 49, 30]]),
      ("valid_mode2", "convolve", sm_a, sm_b, "valid", [70, 78, 73, 65]),
      ("valid_mode2-swapped", "convolve", sm_b, sm_a, "valid", [70, 78, 73, 65]),
      ("valid_mode2-complex", "convolve", c_a, c_b, "valid", [2 - 3j, 8 - 10j]),
      ("valid_mode2-complex-swapped", "convolve", c_b, c_a, "valid", [2 - 3j, 8 - 10j]),
      ("same_mode", "convolve", [1, 2, 3, 3, 1, 2], [1, 4, 3, 4, 5, 6, 7, 4, 3, 2, 1, 1, 3],
       "same", [57, 61, 63, 57, 45, 36]),
      # TestCorrelate.test_numpy_fastpath
      ("numpy_fastpath-same", "correlate", [1, 2, 3], [4, 5], "same", [5, 14, 23]),
      ("numpy_fastpath-same3", "correlate", [1, 2, 3], [4, 5, 6], "same", [17, 32, 23]),
      ("numpy_fastpath-full3", "correlate", [1, 2, 3], [4, 5, 6], "full", [6, 17, 32, 23, 12]),
      ("numpy_fastpath-valid3", "correlate", [1, 2, 3], [4, 5, 6], "valid", [32]),
      # TestCorrelateComplex.test_swap_full / test_swap_same (complex128 here)
      ("swap_full", "correlate", [0j, 1 + 1j, 2 + 2j], [1 + 3j, 2 + 4j, 3 + 5j, 4 + 6j], "full",
       [0j, 10 - 2j, 28 - 6j, 22 - 6j, 16 - 6j, 8 - 4j]),
      ("swap_same", "correlate", [0j, 1 + 1j, 2 + 2j], [1 + 3j, 2 + 4j, 3 + 5j, 4 + 6j], "same",
       [10 - 2j, 28 - 6j, 22 - 6j]),
  ]


ROWS_CONVOLVE = _rows_convolve()


@pytest.mark.parametrize("method", ["auto", "direct", "fft"])
@pytest.mark.parametrize("row", ROWS_CONVOLVE, ids=[r[0] for r in ROWS_CONVOLVE])
def test_convolve_literals(row, method):
  """TestConvolve.test_basic/same/same_eq/complex/2d_arrays/valid_mode2/same_mode,
  TestCorrelate.test_numpy_fastpath, TestCorrelateComplex.test_swap_*: the
  literal values, scipy's dtype, and exactness where scipy's default is exact
  (integer-valued data: 'auto' and 'direct' give the exact sums; 'fft' rounds
  integers back, so it is exact for them too)."""
  _, name, a, b, mode, expected = row
  a, b = np.asarray(a), np.asarray(b)
  got = _call(OURS[name], a, b, mode, method)
  want = SCIPY[name](a, b, mode, "auto" if method == "auto" else method)
  assert got.dtype == want.dtype
  exact = method != "fft" or got.dtype.kind in "iu"
  _check(got, np.asarray(expected, want.dtype), exact)
  _check(got, want, exact)


def test_convolve_input_swapping():
  """TestConvolve.test_input_swapping: int 2x2x2 with complex 3x3x3, both orders,
  every mode, exactly scipy's values ('same' and 'valid' are slices of 'full')."""
  small = np.arange(8).reshape(2, 2, 2)
  big = (1j * np.arange(27, dtype=np.complex128)
         + np.arange(27, dtype=np.complex128)[::-1]).reshape(3, 3, 3)
  full = _np(_call(convolve, small, big))
  np.testing.assert_array_equal(full, ss.convolve(small, big))
  np.testing.assert_array_equal(_np(_call(convolve, big, small)), full)
  inner, outer = (slice(1, 3),) * 3, (slice(0, 3),) * 3
  np.testing.assert_array_equal(_np(_call(convolve, small, big, "same")), full[inner])
  np.testing.assert_array_equal(_np(_call(convolve, big, small, "same")), full[outer])
  np.testing.assert_array_equal(_np(_call(convolve, small, big, "valid")), full[inner])
  np.testing.assert_array_equal(_np(_call(convolve, big, small, "valid")), full[inner])


def test_convolve_broadcastable():
  """TestConvolve.test_broadcastable: a length-3 kernel along each axis of a
  3x3x3 volume (the other axes length 1): direct and fft agree."""
  a = np.arange(27).reshape(3, 3, 3)
  for i in range(3):
    shape = [1, 1, 1]
    shape[i] = 3
    b = np.arange(3).reshape(shape)
    x, y = _np(_call(convolve, a, b, method="direct")), _np(_call(convolve, a, b, method="fft"))
    np.testing.assert_allclose(x, y, atol=1e-14)
    np.testing.assert_array_equal(x, ss.convolve(a, b, method="direct"))


def test_zero_rank_and_single_element():
  """TestConvolve.test_zero_rank/zero_rank_python_scalars/single_element,
  TestFFTConvolve/TestOAConvolve.test_zero_rank/test_single_element."""
  a, b = np.asarray(1289), np.asarray(4567)
  for fn in (convolve, correlate, oaconvolve):
    got = fn(a, b)
    assert got.shape == () and got.dtype == (a * b).dtype and int(got) == 1289 * 4567
  assert int(convolve(1289, 4567)) == 1289 * 4567
  # scipy.signal.fftconvolve of two 0-d arrays fails on some backends; numpy's is a*b.
  assert float(fftconvolve(np.asarray(4967.0), np.asarray(3920.0))) == 4967.0 * 3920.0
  a1, b1 = np.asarray([4967]), np.asarray([3920])
  got = convolve(a1, b1)
  assert got.dtype == np.int64 and _np(got).tolist() == [4967 * 3920]
  for fn in (fftconvolve, oaconvolve):
    # Documented difference: scipy returns int64 here (every axis broadcasts,
    # so it multiplies); jaxconv's FFT functions always return the inexact dtype.
    got = fn(a1, b1)
    assert got.dtype == np.float64 and _np(got).tolist() == [4967.0 * 3920.0]
    assert SCIPY[fn.__name__](a1, b1).tolist() == [4967 * 3920]


@pytest.mark.parametrize("fn", [fftconvolve, oaconvolve], ids=["fftconvolve", "oaconvolve"])
@pytest.mark.parametrize("a,b", [([], []), ([5, 6], []), ([], [7])], ids=["both", "in2", "in1"])
def test_empty(fn, a, b):
  """TestFFTConvolve/TestOAConvolve.test_empty (regression gh-1745)."""
  got = fn(np.asarray(a), np.asarray(b))
  want = SCIPY[fn.__name__](np.asarray(a), np.asarray(b))
  assert got.shape == want.shape == (0,)
  assert got.dtype == want.dtype == np.float64


# --- TestConvolve.test_convolve_method: every dtype pair ------------------------

# scipy pairs all 14 dtypes; here every pair of one dtype per kind and width
# class, plus the other integer widths with the single-precision floats (where
# the integer operand's compute precision matters).
DTYPES = ["bool", "uint8", "int64", "float16", "float32", "float64", "complex64", "complex128"]
_DTYPE_PAIRS = list(itertools.combinations_with_replacement(DTYPES, 2)) + [
    (i, f) for i in ("int8", "uint16", "int16", "uint32", "int32", "uint64")
    for f in ("float32", "complex64")]


def _method_data(n=100):
  rng = np.random.RandomState(42)
  i, f = rng.choice([0, 1], size=n), rng.randn(n)
  return {"b": i, "u": i, "i": i, "f": f, "c": f + 0.5j * f}


@pytest.mark.parametrize("t1,t2", _DTYPE_PAIRS, ids=[f"{a}-{b}" for a, b in _DTYPE_PAIRS])
def test_convolve_method_every_dtype(t1, t2):
  """TestConvolve.test_convolve_method: fft and direct agree within scipy's
  tolerance and have the same dtype, in every mode, for every dtype pair
  (unordered: convolution commutes; the larger-first order is scipy's too).
  Also against scipy's direct result, and the dtype is JAX's result type
  (numpy's where the two promotion rules agree)."""
  data = _method_data()
  x1, x2 = data[np.dtype(t1).kind].astype(t1), data[np.dtype(t2).kind].astype(t2)
  tol = TOL[_tol_class(t1, t2)]
  for mode in MODES:
    fft, direct = _np(convolve(x1, x2, mode, "fft")), _np(convolve(x1, x2, mode, "direct"))
    assert fft.dtype == direct.dtype == _jax_dtype(x1, x2)
    ref = ss.convolve(x1, x2, mode, "direct")
    if np.result_type(x1, x2) == _jax_dtype(x1, x2):
      assert ref.dtype == fft.dtype
    if t1 == t2 == "bool":
      np.testing.assert_array_equal(fft, direct)
      np.testing.assert_array_equal(direct, ref)
      continue
    np.testing.assert_allclose(fft, direct, **tol)
    np.testing.assert_allclose(direct, ref.astype(direct.dtype), **tol)


def test_convolve_method_large_input():
  """TestConvolve.test_convolve_method_large_input: int64 2**n with itself;
  'fft' equals 'direct', and 2**(2n) while it fits. Beyond float64's 53 bits
  jaxconv's fft still equals direct: the rounded result wraps modulo 2**64 as
  integer arithmetic does (scipy makes no claim there)."""
  for n in [10, 20, 50, 51, 52, 53, 54, 60, 62]:
    z = np.asarray([2 ** n], dtype=np.int64)
    fft, direct = _np(convolve(z, z, method="fft")), _np(convolve(z, z, method="direct"))
    assert fft.dtype == direct.dtype == np.int64
    np.testing.assert_array_equal(fft, direct)
    if n < 50:
      np.testing.assert_array_equal(fft, [2 ** (2 * n)])


AUTO_SHAPES = [((8,), (6,)), ((8, 8), (6, 6)), ((1000,), (64,)), ((64,), (64,)),
               ((40, 40), (5, 5)), ((6, 7, 8), (2, 3, 4))]


@pytest.mark.parametrize("s1,s2", AUTO_SHAPES, ids=[f"{a}x{b}" for a, b in AUTO_SHAPES])
def test_choose_conv_method_direct_is_exact(s1, s2):
  """test_choose_conv_method: where scipy's 'auto' sums directly (8 with 6 in
  1-d and 2-d, and larger 1-d kernels), its integer-valued float and complex
  results are exact, and so are jaxconv's 'auto' ones (it never takes the FFT
  where scipy would not); where scipy takes the FFT, both are close."""
  rng = np.random.default_rng(3)
  x = rng.integers(-9, 9, s1) + 1j * rng.integers(-9, 9, s1)
  h = rng.integers(-9, 9, s2) + 1j * rng.integers(-9, 9, s2)
  for a, b in [(x.real, h.real), (x, h)]:
    for ours, ref, mode in [(convolve, ss.convolve, m) for m in MODES] + [
        (correlate, ss.correlate, "full")]:
      got, want = _np(_call(ours, a, b, mode)), ref(a, b, mode)
      exact = ss.choose_conv_method(a, b, mode) == "direct"
      _check(got, want, exact, atol=1e-9 * np.abs(want).max())


# --- TestFFTConvolve: literal cases over every spelling of `axes` ----------------

# scipy's spellings of `axes`, one of each kind (None, int, list, negative,
# permuted, mixed signs); scipy lists every combination.
AXES_1D = [None, 0, [-1]]
AXES_1D_TILED = [1, [-1]]
AXES_2D = [None, [1, 0], [0, -1], [-2, 1], [-1, -2]]
AXES_2D_TILED = [[1, 2], [2, 1], [-2, -1], [-1, 1]]


def _rows_fft():
  """(id, in1, in2, mode, expected, axes-spellings, tiled)."""
  c1 = [1 + 1j, 2 + 2j, 3 + 3j]
  c2 = [[1 + 2j, 3 + 4j, 5 + 6j], [2 + 1j, 4 + 3j, 6 + 5j]]
  c2_full = [[-3 + 4j, -10 + 20j, -21 + 56j, -18 + 76j, -11 + 60j],
             [10j, 44j, 118j, 156j, 122j],
             [3 + 4j, 10 + 20j, 21 + 56j, 18 + 76j, 11 + 60j]]
  r2 = [[1.0, 2, 3], [4, 5, 6]]
  r2_full = [[1.0, 4, 10, 12, 9], [8, 26, 56, 54, 36], [16, 40, 73, 60, 36]]
  long = [3, 3, 5, 6, 8, 7, 9, 0, 1]
  va, vb = [3 - 1j, 2 + 7j, 1 + 0j], [3 + 2j, 3 - 3j, 5 + 0j, 6 - 1j, 8 + 0j]
  rows = [
      ("real", [1, 2, 3], [1, 2, 3], "full", [1, 4, 10, 12, 9.0]),
      ("complex", c1, c1, "full", [2j, 8j, 20j, 24j, 18j]),
      ("real_same_mode", [1, 2, 3], long, "same", [35.0, 41, 47]),
      ("real_same_mode-swapped", long, [1, 2, 3], "same", [9.0, 20, 25, 35, 41, 47, 39, 28, 2]),
      ("valid_mode_real", [3, 2, 1], long, "valid", [24.0, 31, 41, 43, 49, 25, 12]),
      ("valid_mode_real-swapped", long, [3, 2, 1], "valid", [24.0, 31, 41, 43, 49, 25, 12]),
      ("valid_mode_complex", va, vb, "valid", [45 + 12j, 30 + 23j, 48 + 32j]),
      ("valid_mode_complex-swapped", vb, va, "valid", [45 + 12j, 30 + 23j, 48 + 32j]),
      ("2d_real_same", r2, r2, "full", r2_full),
      ("2d_complex_same", c2, c2, "full", c2_full),
  ]
  out = []
  for name, a, b, mode, want in rows:
    two_d = np.ndim(a) == 2
    for axes in AXES_2D if two_d else AXES_1D:
      out.append((f"{name}-axes{axes}", a, b, mode, want, axes, False))
    for axes in AXES_2D_TILED if two_d else AXES_1D_TILED:
      out.append((f"{name}_axes-axes{axes}", a, b, mode, want, axes, True))
  return out


ROWS_FFT = _rows_fft()


@pytest.mark.parametrize("row", ROWS_FFT, ids=[r[0] for r in ROWS_FFT])
def test_fftconvolve_literals(row):
  """TestFFTConvolve.test_real/complex/2d_*_same/real_same_mode/valid_mode_* and
  their *_axes forms (inputs stacked twice along a leading axis)."""
  _, a, b, mode, want, axes, tiled = row
  a, b, want = np.asarray(a), np.asarray(b), np.asarray(want)
  if tiled:
    a, b, want = (np.stack([v, v]) for v in (a, b, want))
  got = _call(fftconvolve, a, b, mode, axes=axes)
  ref = ss.fftconvolve(a, b, mode, axes=axes)
  assert got.dtype == ref.dtype
  _check(got, want, exact=False)
  _check(got, ref, exact=False)


def test_fftconvolve_valid_mode_ignore_nonaxes():
  """TestFFTConvolve.test_valid_mode_ignore_nonaxes: (2, 3) with (1, 9) over
  axis 1, 'valid': the length-1 axis broadcasts and the inputs swap."""
  a = np.tile([3, 2, 1], (2, 1))
  b = np.asarray([[3, 3, 5, 6, 8, 7, 9, 0, 1]])
  want = np.tile([24.0, 31, 41, 43, 49, 25, 12], (2, 1))
  for fn in (fftconvolve, oaconvolve):
    _check(fn(a, b, "valid", axes=1), want, exact=False)
  _check(fftconvolve(a, b, "valid", axes=1), ss.fftconvolve(a, b, "valid", axes=1), exact=False)


def _complex_random(n, seed):
  rng = np.random.default_rng(seed)
  return rng.random(n) + 1j * rng.random(n)


@pytest.mark.parametrize("axes", [None, 0, [-1], "tiled1", "tiled[-1]"])
def test_fftconvolve_random_data(axes):
  """TestFFTConvolve.test_random_data(_axes): complex 1233 with 1321, rtol 1e-10."""
  a, b = _complex_random(1233, 1), _complex_random(1321, 2)
  want = np.convolve(a, b, "full")
  if isinstance(axes, str):
    axes = eval(axes[len("tiled"):])  # noqa: S307 -- the id carries the axes literal
    a, b, want = np.tile(a, (2, 1)), np.tile(b, (2, 1)), np.tile(want, (2, 1))
  np.testing.assert_allclose(_np(_call(fftconvolve, a, b, "full", axes=axes)), want, rtol=1e-10)


@pytest.mark.parametrize("axes", [[1, 4], [4, 1], [1, -1], [-1, 1], [-4, 4], [4, -4],
                                  [-4, -1], [-1, -4]])
def test_fftconvolve_random_data_multidim_axes(axes):
  """TestFFTConvolve.test_random_data_multidim_axes: a 2-d convolution over
  axes 1 and 4 of 5-d inputs whose other axes broadcast (3 against 1, 1
  against 4), against `scipy.signal.convolve2d`."""
  a = _complex_random(40 * 9, 3).reshape(40, 9)
  b = _complex_random(43 * 5, 4).reshape(43, 5)
  want2 = ss.convolve2d(a, b, "full")
  a5 = np.broadcast_to(a[None, :, None, None, :], (2, 40, 3, 1, 9))
  b5 = np.broadcast_to(b[None, :, None, None, :], (2, 43, 1, 4, 5))
  want = np.broadcast_to(want2[None, :, None, None, :], (2, 82, 3, 4, 13))
  got = _np(_call(fftconvolve, a5, b5, "full", axes=axes))
  np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 47, 97, 1000, 1021])
def test_fftconvolve_many_sizes(n):
  """TestFFTConvolve.test_many_sizes (scipy's slow test, sampled): complex n
  with complex n, atol 1e-10, without and with axes=(0,)."""
  a, b = _complex_random(n, 5), _complex_random(n, 6)
  want = np.convolve(a, b, "full")
  np.testing.assert_allclose(_np(_call(fftconvolve, a, b, "full")), want, atol=1e-10)
  np.testing.assert_allclose(_np(_call(fftconvolve, a, b, "full", axes=(0,))), want, atol=1e-10)


def test_fft_nan_propagates_without_warning():
  """TestFFTConvolve.test_fft_nan: scipy warns (RuntimeWarning) when the FFT
  result starts with NaN/inf. Documented difference: jaxconv never reads
  array values (it works under `jit`), so it cannot warn; the NaN/inf still
  propagates through the FFT as in scipy."""
  rng = np.random.default_rng(43876432987)
  coeffs = ss.firwin(200, 0.2)
  for val in (np.nan, np.inf):
    sig = rng.standard_normal(1000)
    sig[100] = val
    got = _np(convolve(sig, coeffs, "same", "fft"))
    assert not np.all(np.isfinite(got))
    np.testing.assert_array_equal(np.isfinite(_np(convolve(sig, coeffs, "same", "direct"))),
                                  np.isfinite(ss.convolve(sig, coeffs, "same", "direct")))
  pytest.skip("documented difference: no RuntimeWarning for NaN/inf with method='fft' "
              "(jaxconv never inspects array values, so it works under jit)")


@pytest.mark.parametrize("dtype", ["longdouble", "clongdouble"])
def test_convolve_longdtype_input(dtype):
  """test_convolve_longdtype_input: JAX has no long double; documented
  difference: the inputs become float64/complex128, so does the result."""
  rng = np.random.default_rng(7)
  x = rng.random((27, 27)).astype(dtype)
  y = rng.random((4, 4)).astype(dtype)
  if np.iscomplexobj(x):
    x, y = x + 0.1j, y - 0.1j
  x64, y64 = x.astype(np.complex128 if np.iscomplexobj(x) else np.float64), y.astype(
      np.complex128 if np.iscomplexobj(x) else np.float64)
  res = _call(fftconvolve, x64, y64)
  np.testing.assert_allclose(_np(res), _np(_call(convolve, x64, y64, method="direct")),
                             rtol=1e-12)
  assert res.dtype == x64.dtype
  np.testing.assert_allclose(_np(res), ss.fftconvolve(x, y).astype(x64.dtype), rtol=1e-12)


# --- TestOAConvolve (sampled) -----------------------------------------------------

def _oa_shapes(sizes):
  return [(a, b) for a, b in itertools.product(sizes, repeat=2) if abs(a - b) > 3]


OA_1D = _oa_shapes([50, 47, 6, 4, 1])
# A deterministic sample of scipy's 1-d-with-axes and 2-d grids (scipy runs them all).
OA_ND = [((50, 3), (6, 1), 0), ((1, 50), (3, 6), 1), ((6, 3), (47, 3), 0),
         ((50, 47), (6, 4), None), ((47, 6), (4, 50), None),
         ((3, 50, 47), (1, 6, 4), (1, 2)), ((50, 1, 6), (4, 3, 47), (0, 2))]


def _rand(shape, complex_, seed):
  rng = np.random.default_rng(seed)
  a = rng.random(shape)
  return a + 1j * rng.random(shape) if complex_ else a


def _oa_check(s1, s2, axes):
  """Every mode, real and complex, in one compiled program (overlap-add is many
  small ops: eager dispatch would dominate)."""
  modes = []
  for mode in MODES:
    try:
      ss.fftconvolve(np.ones(s1), np.ones(s2), mode, axes=axes)
      modes.append(mode)
    except ValueError:  # 'valid' with neither input larger: both raise
      with pytest.raises(ValueError, match="in mode='valid' one input must be at least"):
        oaconvolve(np.ones(s1), np.ones(s2), mode, axes=axes)
  a, b = _rand(s1, False, 0), _rand(s2, False, 1)
  ac, bc = a + 1j * _rand(s1, False, 2), b + 1j * _rand(s2, False, 3)
  run = jax.jit(lambda a, b, ac, bc: [oaconvolve(x, y, m, axes=axes)
                                      for x, y in ((a, b), (ac, bc)) for m in modes])
  got = iter(run(a, b, ac, bc))
  for x, y in ((a, b), (ac, bc)):
    for mode in modes:
      g, want = next(got), ss.fftconvolve(x, y, mode, axes=axes)
      assert g.dtype == want.dtype
      np.testing.assert_array_almost_equal(_np(g), want)   # scipy's decimal=6
      np.testing.assert_array_almost_equal(_np(g), ss.oaconvolve(x, y, mode, axes=axes))


@pytest.mark.parametrize("s1,s2", OA_1D, ids=[f"{a}x{b}" for a, b in OA_1D])
def test_oaconvolve_1d_noaxes(s1, s2):
  """TestOAConvolve.test_1d_noaxes: every shape pair, real and complex, every mode."""
  _oa_check((s1,), (s2,), None)


@pytest.mark.parametrize("s1,s2,axes", OA_ND, ids=[f"{a}x{b}-axes{c}" for a, b, c in OA_ND])
def test_oaconvolve_nd(s1, s2, axes):
  """TestOAConvolve.test_1d_axes/test_2d_noaxes/test_2d_axes, sampled: broadcast
  extra axes (1 or 3), both orders, real and complex, every mode."""
  _oa_check(s1, s2, axes)


# --- TestAllFreqConvolves, TestConvolve/TestCorrelate error cases -----------------

@pytest.mark.parametrize("name", ["convolve", "correlate", "fftconvolve", "oaconvolve"])
def test_errors_like_scipy(name):
  """TestAllFreqConvolves.test_invalid_shapes/_axes/mismatched_dims/invalid_flags,
  TestConvolve/TestCorrelate.test_invalid_params/invalid_shapes/mismatched_dims:
  the same error class as scipy, with jaxconv's message."""
  fn, ref = OURS[name], SCIPY[name]
  fq = f"jaxconv.{name}"
  a, b = np.arange(1, 7).reshape(2, 3), np.arange(-6, 0).reshape(3, 2)
  for x, y in [(a, b), (b, a)]:
    pytest.raises(ValueError, ref, x, y, "valid")
    with pytest.raises(ValueError, match=rf"{fq}: in mode='valid' one input must be at least"):
      fn(x, y, "valid")
  for x, y in [([1], 2), (1, [2]), ([3], [[2]]), ([1], [[2]])]:
    pytest.raises(ValueError, ref, x, y)
    with pytest.raises(ValueError, match=rf"{fq}: `in1` and `in2` must have the same number"):
      fn(np.asarray(x), np.asarray(y))
  for mode in ("spam", "chips"):
    pytest.raises(ValueError, ref, [1], [2], mode)
    with pytest.raises(ValueError, match=rf"{fq}: unknown `mode`; got mode='{mode}'"):
      fn(np.asarray([1]), np.asarray([2]), mode)
  if name in ("convolve", "correlate"):
    for mode, method in [("eggs", "fft"), ("ham", "direct")]:
      pytest.raises(ValueError, ref, [3, 4, 5], [1, 2, 3], mode, method)
      with pytest.raises(ValueError, match=rf"{fq}: unknown `mode`; got mode='{mode}'"):
        fn(np.asarray([3, 4, 5]), np.asarray([1, 2, 3]), mode, method)
    for mode in ("full", "same"):
      pytest.raises(ValueError, ref, [3, 4, 5], [1, 2, 3], mode, "bacon")
      with pytest.raises(ValueError, match=rf"{fq}: unknown `method`; got method='bacon'"):
        fn(np.asarray([3, 4, 5]), np.asarray([1, 2, 3]), mode, "bacon")
    return
  x, y = np.zeros([5, 6, 2, 1]), np.zeros([5, 6, 3, 1])
  pytest.raises(ValueError, ref, x, y, axes=[0, 1])
  with pytest.raises(ValueError, match=rf"{fq}: the dimensions that are not convolved must be "
                                       r"equal or 1.*\(5, 6, 2, 1\).*\(5, 6, 3, 1\)"):
    fn(x, y, axes=[0, 1])
  one, two = np.asarray([1.0]), np.asarray([2.0])
  bad_axes = [([], r"`axes` must not be empty when given; got axes=\[\]"),
              ([[1, 2], [3, 4]], r"`axes` must be None, an int or a sequence of ints; "
                                 r"got axes=\[\[1, 2\], \[3, 4\]\]"),
              ([1.0, 2.0, 3.0, 4.0], r"`axes` must be None, an int or a sequence of ints"),
              ([1], r"`axes` out of range for inputs of rank 1; got axes=\(1,\)"),
              ([-2], r"`axes` out of range for inputs of rank 1; got axes=\(-2,\)"),
              ([0, 0], r"`axes` must not repeat an axis; got axes=\(0, 0\)")]
  for axes, msg in bad_axes:
    pytest.raises(ValueError, ref, [1.0], [2.0], axes=axes)
    with pytest.raises(ValueError, match=rf"{fq}: {msg}"):
      fn(one, two, axes=axes)


# --- TestCorrelateReal ----------------------------------------------------------

REAL_DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
               "float32", "float64"]


def _decimal(dt):
  """scipy's `equal_tolerance`: half the float's decimal resolution; 6 for ints."""
  dt = np.dtype(dt)
  return int(-0.5 * np.log10(np.finfo(dt).resolution)) if dt.kind == "f" else 6


def _rank3(dt):
  a = np.linspace(0, 39, 40).reshape((2, 4, 5), order="F")
  b = np.linspace(0, 23, 24).reshape((2, 3, 4), order="F")
  # scipy's literal y_r is the float64 correlation cast to dt (integers wrap).
  return a.astype(dt), b.astype(dt), ss.correlate(a, b, method="direct").astype(dt)


@pytest.mark.parametrize("dt", REAL_DTYPES)
def test_correlate_real(dt):
  """TestCorrelateReal.test_rank1_*/test_rank3_*/test_method: values (wrapped
  like numpy's cast for narrow integers), scipy's decimal, and the input
  dtype kept, for 'auto', 'direct' and 'fft'."""
  dec = _decimal(dt)
  a = np.linspace(0, 3, 4).astype(dt)
  b = np.linspace(1, 2, 2).astype(dt)
  y_r = np.asarray([0, 2, 5, 8, 3]).astype(dt)
  np.testing.assert_array_equal(y_r, ss.correlate(a, b).astype(dt))
  for x, y, mode, want in [(a, b, "valid", y_r[1:4]), (b, a, "valid", y_r[1:4][::-1]),
                           (a, b, "same", y_r[:-1]), (a, b, "full", y_r)]:
    got = _call(correlate, x, y, mode)
    assert got.dtype == dt
    np.testing.assert_array_almost_equal(_np(got), want, decimal=dec)
  a3, b3, y3 = _rank3(dt)
  for x, y, mode, want in [(a3, b3, "valid", y3[1:2, 2:4, 3:5]),
                           (b3, a3, "valid", y3[1:2, 2:4, 3:5][::-1, ::-1, ::-1]),
                           (a3, b3, "same", y3[0:-1, 1:-1, 1:-2]), (a3, b3, "full", y3)]:
    got = _call(correlate, x, y, mode)
    assert got.dtype == dt
    np.testing.assert_array_almost_equal(_np(got), want, decimal=dec)
  for method in ("direct", "fft"):   # test_method
    got = _call(correlate, a3, b3, method=method)
    assert got.dtype == dt
    np.testing.assert_array_almost_equal(_np(got), y3, decimal=dec)
    np.testing.assert_array_almost_equal(_np(got), ss.correlate(a3, b3, method=method),
                                         decimal=dec)


def test_correlate_fft_wraps_narrow_integers_like_scipy():
  """The integer 'fft' result is rounded and wraps modulo 2**bits, as scipy's
  cast does and as the direct (integer) sums do; it does not saturate."""
  a3, b3, _ = _rank3("int8")
  assert np.abs(ss.correlate(a3.astype(float), b3.astype(float))).max() > 127
  for dt in ("int8", "uint8", "int16"):
    a3, b3, _ = _rank3(dt)
    want = ss.correlate(a3, b3, method="fft")
    np.testing.assert_array_equal(_np(_call(correlate, a3, b3, method="fft")), want)
    np.testing.assert_array_equal(_np(_call(correlate, a3, b3, method="direct")), want)


# --- TestCorrelateComplex, TestCorrelate2d (1-d), test_correlation_lags ------------

def _complex_decimal(dt):
  return int(2 * {"complex64": 6, "complex128": 15}[dt] / 3)


@pytest.mark.parametrize("dt", ["complex64", "complex128"])
def test_correlate_complex(dt):
  """TestCorrelateComplex.test_rank1_*/test_rank3/test_rank0: against scipy's
  real-part composition (here scipy.signal.correlate itself), scipy's
  decimals, dtype kept; the 0-d and 1-element forms of mixed complex inputs."""
  rng = np.random.default_rng(9)
  dec = _complex_decimal(dt)
  a = (rng.standard_normal(10) + 1j * rng.standard_normal(10)).astype(dt)
  b = (rng.standard_normal(8) + 1j * rng.standard_normal(8)).astype(dt)
  for mode in MODES:
    want = ss.correlate(a.astype(np.complex128), b.astype(np.complex128), mode)
    got = _call(correlate, a, b, mode)
    assert got.dtype == dt
    np.testing.assert_array_almost_equal(_np(got), want, decimal=dec)
    if mode == "valid":
      got = _call(correlate, b, a, "valid")
      np.testing.assert_array_almost_equal(_np(got), np.conj(want[::-1]), decimal=dec)
  a3 = (rng.standard_normal((10, 8, 6)) + 1j * rng.standard_normal((10, 8, 6))).astype(dt)
  b3 = (rng.standard_normal((8, 6, 4)) + 1j * rng.standard_normal((8, 6, 4))).astype(dt)
  got = _call(correlate, a3, b3, "full")
  assert got.dtype == dt
  np.testing.assert_array_almost_equal(
      _np(got), ss.correlate(a3.astype(np.complex128), b3.astype(np.complex128)),
      decimal=dec - 1)
  a0, b0 = np.asarray(1.5 - 0.5j, dt), np.asarray(-0.25 + 2j, dt)
  got = correlate(a0, b0)
  assert got.dtype == dt and got.shape == ()
  np.testing.assert_array_almost_equal(_np(got), ss.correlate(a0, b0), decimal=dec - 1)
  for x, y, want in [(1, 2j, -2j), (2j, 3j, 6 + 0j), (3j, 4, 12j)]:
    assert complex(correlate(np.asarray(x), np.asarray(y))) == want
    assert _np(correlate(np.asarray([x]), np.asarray([y]))).tolist() == [want]
    assert complex(ss.correlate(x, y)) == want


def test_correlate_consistency_with_numpy():
  """TestCorrelate2d.test_consistency_correlate_funcs: `np.correlate`, every mode;
  'valid' also with the inputs swapped (gh-5897)."""
  a, b = np.arange(5), np.asarray([3.2, 1.4, 3])
  for mode in MODES:
    np.testing.assert_array_almost_equal(_np(correlate(a, b, mode)), np.correlate(a, b, mode))
  np.testing.assert_array_almost_equal(_np(correlate(b, a, "valid")),
                                       np.correlate(b, a, "valid"))


@pytest.mark.parametrize("input_size", [100, 101, 1000, 1001])
@pytest.mark.parametrize("behind", [True, False], ids=["behind", "ahead"])
def test_correlation_lags(behind, input_size):
  """test_correlation_lags: the peak of `correlate` sits at the shift, read
  with `scipy.signal.correlation_lags` (jaxconv's lag convention is scipy's)."""
  rng = np.random.RandomState(0)
  in1 = rng.standard_normal(input_size)
  offset = input_size // 10
  if behind:
    in2, expected = np.concatenate([rng.standard_normal(offset), in1]), -offset
  else:
    in2, expected = in1[offset:], offset
  for mode in MODES:
    corr = _np(_call(correlate, in1, in2, mode))
    lags = ss.correlation_lags(in1.size, in2.size, mode)
    assert lags.shape == corr.shape
    assert lags[np.argmax(corr)] == expected


# --- TestNextFastLen --------------------------------------------------------------

def _smooth(n, primes=(2, 3, 5, 7)):
  for p in primes:
    while n % p == 0:
      n //= p
  return n == 1


def test_next_fast_len_smooth_numbers():
  """test_next_fast_len: 5-smooth targets are their own fast length (both agree)."""
  for n in [2, 3, 4, 5, 6, 8, 9, 10, 2 * 3 * 5, 2**3 * 3**5, 2**3 * 3**3 * 5**2]:
    assert next_fast_len(n) == n == sfft.next_fast_len(n)
    assert next_fast_len(n, True) == n == sfft.next_fast_len(n, True)


def test_next_fast_len_between_scipys_two_answers():
  """TestNextFastLen.test_next_fast_len: 1..999 and 2**5*3**5*4**5+1. jaxconv's
  length is the smallest 2·3·5·7-smooth one, for `real` either way (documented
  difference: XLA's FFT is fast for radix 7 in real transforms too), so it
  lies between scipy's 11-smooth (complex) and 5-smooth (real) answers."""
  for n in itertools.chain(range(1, 1000), [2**5 * 3**5 * 4**5 + 1]):
    m = next_fast_len(n)
    assert m == next_fast_len(n, False) == next_fast_len(n, real=True)
    assert _smooth(m) and not any(_smooth(k) for k in range(n, m))
    assert sfft.next_fast_len(n) <= m <= sfft.next_fast_len(n, True)


def test_next_fast_len_numpy_integers_and_keywords():
  """TestNextFastLen.test_np_integers/test_keyword_args."""
  for ityp in (np.int16, np.int32, np.int64, np.uint16, np.uint32, np.uint64):
    assert next_fast_len(ityp(12345)) == next_fast_len(12345) == 12348
  assert next_fast_len(11, real=True) == 12 == sfft.next_fast_len(11, real=True)
  assert next_fast_len(target=7, real=False) == 7 == sfft.next_fast_len(target=7, real=False)
  assert next_fast_len(0) == 0 == sfft.next_fast_len(0)


@pytest.mark.parametrize("target,ham", [
    (1, 1), (7, 8), (14, 15), (17, 18), (1021, 1024), (1536, 1536), (51200000, 51200000),
    (510183360 + 1, 512000000), (854296875 + 1, 859963392), (196608000000 + 1, 196830000000),
    (11920928955078125 - 1, 11920928955078125), (18014398509481984 - 1, 18014398509481984),
    (288230376151711744 + 1, 288325195312500000)])
def test_next_fast_len_hamming(target, ham):
  """TestNextFastLen.testnext_fast_len_small/_big: scipy's 5-smooth (real=True)
  answers bound jaxconv's 7-smooth one from above, equal where the target is
  already 5-smooth."""
  m = next_fast_len(target, real=True)
  assert sfft.next_fast_len(target, True) == ham
  assert target <= m <= ham and _smooth(m)
  if target == ham:
    assert m == ham


def test_next_fast_len_errors():
  """scipy's classes: negative -> ValueError, non-integer -> TypeError. bool
  targets (scipy reads True as 1) and a non-bool `real` are TypeErrors here."""
  pytest.raises(ValueError, sfft.next_fast_len, -1)
  with pytest.raises(ValueError, match=r"jaxconv.next_fast_len: `target` must be non-negative; "
                                       r"got target=-1"):
    next_fast_len(-1)
  for bad in (2.5, "5", np.float64(3.0)):
    pytest.raises(TypeError, sfft.next_fast_len, bad)
    with pytest.raises(TypeError, match=r"jaxconv.next_fast_len: `target` must be an int; "
                                        r"got target="):
      next_fast_len(bad)
  with pytest.raises(TypeError, match=r"`target` must be an int; got target=True"):
    next_fast_len(True)
  with pytest.raises(TypeError, match=r"jaxconv.next_fast_len: `real` must be a bool; "
                                      r"got real='x'"):
    next_fast_len(11, "x")
