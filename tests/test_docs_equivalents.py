"""The rows of docs/equivalents.md ("lax / torch / scipy equivalents") hold.

One test per row whose other library is installed here (lax, NumPy, SciPy),
with the arguments the row names, on small random float64 inputs.
"""

import jax
import numpy as np
import pytest
import scipy.fft
import scipy.linalg
import scipy.ndimage
import scipy.signal
import jax.numpy as jnp
import jax.scipy.signal
from jax import lax

import jaxconv

from configs import needs_x64

pytestmark = needs_x64


def _rng():
  return np.random.default_rng(0)


def _close(ours, theirs):
  ours, theirs = np.asarray(ours), np.asarray(theirs)
  assert ours.shape == theirs.shape
  np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10)


def test_lax_conv_and_conv_with_general_padding():
  rng = _rng()
  x, w = rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((4, 3, 3, 2))
  _close(jaxconv.conv(x, w, stride=(2, 1), padding="SAME"), lax.conv(x, w, (2, 1), "SAME"))
  pads = [(1, 0), (2, 1)]
  _close(jaxconv.conv(x, w, stride=(1, 2), padding=pads, dilation=(2, 1)),
         lax.conv_with_general_padding(x, w, (1, 2), pads, None, (2, 1)))
  _close(jaxconv.conv_general_dilated(x, w, (1, 1), pads, (2, 1), (1, 1)),
         lax.conv_with_general_padding(x, w, (1, 1), pads, (2, 1), (1, 1)))


@pytest.mark.parametrize("stride, padding", [((2, 2), (0, 0)), ((2, 3), (1, 0)), ((1, 1), (1, 1))])
def test_lax_conv_transpose(stride, padding):
  rng = _rng()
  x, w = rng.standard_normal((2, 4, 5, 6)), rng.standard_normal((4, 3, 3, 2))
  pads = [(k - 1 - p, k - 1 - p) for k, p in zip(w.shape[2:], padding)]
  theirs = lax.conv_transpose(x, w, stride, pads, dimension_numbers=("NCHW", "OIHW", "NCHW"),
                              transpose_kernel=True)
  _close(jaxconv.conv_transpose(x, w, stride=stride, padding=padding), theirs)


@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_numpy_and_scipy_signal(mode):
  rng = _rng()
  u, v = rng.standard_normal(9), rng.standard_normal(4)
  _close(jaxconv.convolve(u, v, mode), np.convolve(u, v, mode))
  _close(jaxconv.correlate(u, v, mode), np.correlate(u, v, mode))
  a, b = rng.standard_normal((5, 7)), rng.standard_normal((3, 4))
  for ours, theirs in [(jaxconv.convolve, scipy.signal.convolve),
                       (jaxconv.correlate, scipy.signal.correlate),
                       (jaxconv.fftconvolve, scipy.signal.fftconvolve),
                       (jaxconv.oaconvolve, scipy.signal.oaconvolve),
                       (jaxconv.convolve, scipy.signal.convolve2d)]:
    _close(ours(a, b, mode), theirs(a, b, mode))
  odd = rng.standard_normal((3, 5))
  _close(jaxconv.correlate(a, odd, mode), scipy.signal.correlate2d(a, odd, mode))
  if mode != "same":  # correlate2d centres even kernels elsewhere (the docs say so)
    _close(jaxconv.correlate(a, b, mode), scipy.signal.correlate2d(a, b, mode))


def test_convolve2d_wrap_is_circular_padding():
  rng = _rng()
  a, k = rng.standard_normal((5, 7)), rng.standard_normal((3, 3))
  ours = jaxconv.conv(a[None, None], k[None, None], padding="SAME", padding_mode="circular",
                      flip=True)[0, 0]
  _close(ours, scipy.signal.convolve2d(a, k, "same", boundary="wrap"))


@pytest.mark.parametrize("mode, padding_mode", [
    ("constant", "zeros"), ("mirror", "reflect"), ("nearest", "replicate"), ("wrap", "circular")])
def test_scipy_ndimage(mode, padding_mode):
  rng = _rng()
  x, k = rng.standard_normal((6, 7)), rng.standard_normal((3, 5))
  conv = lambda flip: jaxconv.conv(x[None, None], k[None, None], padding="SAME",
                                   padding_mode=padding_mode, flip=flip)[0, 0]
  _close(conv(False), scipy.ndimage.correlate(x, k, mode=mode))
  _close(conv(True), scipy.ndimage.convolve(x, k, mode=mode))


@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_scipy_linalg_matrices(mode):
  rng = _rng()
  a = rng.standard_normal(3)
  _close(jaxconv.toeplitz_matrix(a, 6, mode, flip=True),
         scipy.linalg.convolution_matrix(a, 6, mode))
  c = rng.standard_normal(5)
  _close(jaxconv.circulant_matrix(c, len(c), flip=True), scipy.linalg.circulant(c))


def test_next_fast_len_lies_between_scipys_answers():
  for n in (7, 11, 13, 97, 1000, 1001):
    ours = jaxconv.next_fast_len(n, real=True)
    assert scipy.fft.next_fast_len(n, real=False) <= ours <= scipy.fft.next_fast_len(n, real=True)


def test_patchify_is_torch_unfold_transposed():
  x = _rng().standard_normal((2, 3, 8, 6))
  _close(jaxconv.patchify(x, 2), np.transpose(jaxconv.unfold(x, 2, stride=2), (0, 2, 1)))


def test_jax_numpy_and_jax_scipy_signal():
  rng = _rng()
  u, v = rng.standard_normal(9), rng.standard_normal(4)
  _close(jaxconv.convolve(u, v, mode="full"), jnp.convolve(u, v, mode="full"))
  _close(jaxconv.correlate(u, v, mode="valid"), jnp.correlate(u, v, mode="valid"))
  a, b = rng.standard_normal((5, 7)), rng.standard_normal((3, 4))
  for mode in ("full", "same", "valid"):
    _close(jaxconv.convolve(a, b, mode), jax.scipy.signal.convolve(a, b, mode))
    _close(jaxconv.correlate(a, b, mode), jax.scipy.signal.correlate(a, b, mode))
    _close(jaxconv.fftconvolve(a, b, mode), jax.scipy.signal.fftconvolve(a, b, mode))
