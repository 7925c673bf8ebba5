"""Every worked example of the seed texts (shared/seeds/), reproduced exactly."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

import jaxconv
from configs import METHOD_NAMES, assert_exact

ARANGE_4x4 = jnp.arange(1.0, 17.0, dtype=jnp.float32).reshape(1, 1, 4, 4)


# --- seed 000: unfold / fold ------------------------------------------------

def test_seed000_unfold_4x4_2x2_stride2():
  patches = jaxconv.unfold(ARANGE_4x4, (2, 2), stride=2)
  assert patches.shape == (1, 4, 4)
  np.testing.assert_array_equal(patches[0], [[1, 3, 9, 11], [2, 4, 10, 12],
                                             [5, 7, 13, 15], [6, 8, 14, 16]])
  # Transposed: each row is one flattened patch.
  np.testing.assert_array_equal(patches[0].T, [[1, 2, 5, 6], [3, 4, 7, 8],
                                               [9, 10, 13, 14], [11, 12, 15, 16]])


def test_seed000_fold_reconstructs_without_overlap():
  patches = jaxconv.unfold(ARANGE_4x4, (2, 2), stride=2)
  np.testing.assert_array_equal(jaxconv.fold(patches, (4, 4), (2, 2), stride=2), ARANGE_4x4)


def test_seed000_overlap_normalisation_mask():
  """stride < kernel: fold sums overlaps; dividing by fold(unfold(ones)) averages."""
  patches = jaxconv.unfold(ARANGE_4x4, 3, stride=1)
  summed = jaxconv.fold(patches, (4, 4), 3, stride=1)
  mask = jaxconv.fold(jaxconv.unfold(jnp.ones_like(ARANGE_4x4), 3), (4, 4), 3)
  np.testing.assert_array_equal(mask[0, 0], [[1, 2, 2, 1], [2, 4, 4, 2],
                                             [2, 4, 4, 2], [1, 2, 2, 1]])
  np.testing.assert_allclose(summed / mask, ARANGE_4x4)
  np.testing.assert_allclose(jaxconv.fold(patches, (4, 4), 3, normalize=True), ARANGE_4x4)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_seed000_3x3_image_kernel_1_0_0_minus1(method):
  img = jnp.arange(1.0, 10.0, dtype=jnp.float32).reshape(1, 1, 3, 3)
  kernel = jnp.array([[1.0, 0.0], [0.0, -1.0]], jnp.float32)
  patches = jaxconv.unfold(img, (2, 2))
  np.testing.assert_array_equal(patches[0], [[1, 2, 4, 5], [2, 3, 5, 6],
                                             [4, 5, 7, 8], [5, 6, 8, 9]])
  out = kernel.reshape(1, -1) @ patches
  np.testing.assert_array_equal(out, [[[-4, -4, -4, -4]]])
  np.testing.assert_array_equal(out.reshape(1, 1, 2, 2), -4 * np.ones((1, 1, 2, 2)))
  y = jaxconv.conv(img, kernel[None, None], method=method)
  assert_exact(method, y, -4 * np.ones((1, 1, 2, 2)))


def test_seed000_conv_is_w_times_unfold():
  """Y = W @ unfold(X): 3 -> 8 channels, 3x3, then reshape (sections 5 and 9)."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((2, 3, 7, 6)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((8, 3, 3, 3)), jnp.float32)
  cols = jaxconv.unfold(x, 3)
  assert cols.shape == (2, 27, 5 * 4)
  y = jnp.einsum("nkl,ok->nol", cols, w.reshape(8, -1)).reshape(2, 8, 5, 4)
  np.testing.assert_allclose(y, jaxconv.conv(x, w, method="lax"), rtol=1e-5, atol=1e-5)


# --- seed 001: definitions, kernels, parameter counts, backprop --------------

IMG_5x5 = jnp.array([[1, 2, 3, 0, 1], [0, 1, 2, 3, 1], [1, 2, 1, 0, 0],
                     [0, 0, 1, 2, 1], [1, 1, 0, 1, 0]], jnp.float32)
EDGE_3x3 = jnp.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], jnp.float32)
SOBEL = jnp.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], jnp.float32)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_seed001_5x5_image_output_at_origin_is_minus4(method):
  y = jaxconv.conv(IMG_5x5[None, None], EDGE_3x3[None, None], method=method)
  assert y.shape == (1, 1, 3, 3)
  assert_exact(method, y[0, 0, 0, 0], -4.0)
  # The sliding-window definition, element by element.
  manual = [[float(jnp.sum(IMG_5x5[i:i + 3, j:j + 3] * EDGE_3x3)) for j in range(3)]
            for i in range(3)]
  assert_exact(method, y[0, 0], manual)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_seed001_sobel_on_arange16(method):
  y = jaxconv.conv(ARANGE_4x4, SOBEL[None, None], method=method)
  assert y.shape == (1, 1, 2, 2)
  assert_exact(method, y[0, 0], [[-8, -8], [-8, -8]])


def test_seed001_parameter_counts():
  assert 64 * 32 * 3 * 3 + 64 == 18_496
  params = jaxconv.nn.init_conv(jax.random.PRNGKey(0), 32, 64, 3)
  assert sum(p.size for p in jax.tree_util.tree_leaves(params)) == 18_496
  params = jaxconv.nn.init_conv(jax.random.PRNGKey(0), 3, 64, 3)
  assert sum(p.size for p in jax.tree_util.tree_leaves(params)) == 1_792
  x = jnp.zeros((4, 3, 32, 32), jnp.float32)
  assert jaxconv.conv(x, **params, padding=1).shape == (4, 64, 32, 32)


def test_seed001_convolution_vs_cross_correlation():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((1, 1, 5, 5)), jnp.float32)
  asym = jnp.arange(1.0, 10.0, dtype=jnp.float32).reshape(1, 1, 3, 3)
  sym = jnp.array([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]], jnp.float32).reshape(1, 1, 3, 3)
  conv_true = jaxconv.conv(x, asym, flip=True)
  xcorr = jaxconv.conv(x, asym)
  assert float(jnp.abs(conv_true - xcorr).max()) > 1.0
  np.testing.assert_allclose(conv_true[0, 0], scipy.signal.convolve2d(x[0, 0], asym[0, 0],
                                                                      "valid"), rtol=1e-5)
  np.testing.assert_allclose(xcorr[0, 0], scipy.signal.correlate2d(x[0, 0], asym[0, 0],
                                                                   "valid"), rtol=1e-5)
  np.testing.assert_allclose(jaxconv.conv(x, sym, flip=True), jaxconv.conv(x, sym), rtol=1e-6)


def test_seed001_translation_equivariance():
  rng = np.random.default_rng(2)
  kernel = jnp.asarray(rng.standard_normal((1, 1, 3, 3)), jnp.float32)
  img = jnp.zeros((1, 1, 10, 10), jnp.float32).at[0, 0, 2:5, 2:5].set(1.0)
  shifted = jnp.zeros((1, 1, 10, 10), jnp.float32).at[0, 0, 4:7, 4:7].set(1.0)
  out1 = jaxconv.conv(img, kernel, padding=1)
  out2 = jaxconv.conv(shifted, kernel, padding=1)
  np.testing.assert_allclose(out2[..., 2:, 2:], out1[..., :-2, :-2], atol=1e-6)


def test_seed001_im2col_function_matches_conv():
  """conv2d_via_im2col (seed 001): padding=1, bias, 3 -> 16 channels."""
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.standard_normal((2, 3, 8, 8)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((16, 3, 3, 3)), jnp.float32)
  b = jnp.asarray(rng.standard_normal(16), jnp.float32)
  ref = jaxconv.conv(x, w, b, padding=1, method="lax")
  np.testing.assert_allclose(jaxconv.conv(x, w, b, padding=1, method="im2col"), ref,
                             rtol=1e-5, atol=1e-5)


def test_seed001_backprop_as_convolutions():
  """dL/dX: full conv of dL/dY with flipped weights (a transposed conv);
  dL/dW: correlation of X with dL/dY; dL/db: sum of dL/dY."""
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.standard_normal((2, 3, 7, 7)), jnp.float64)
  w = jnp.asarray(rng.standard_normal((4, 3, 3, 3)), jnp.float64)
  b = jnp.asarray(rng.standard_normal(4), jnp.float64)
  gy = jnp.asarray(rng.standard_normal((2, 4, 5, 5)), jnp.float64)
  _, vjp = jax.vjp(lambda x, w, b: jaxconv.conv(x, w, b), x, w, b)
  gx, gw, gb = vjp(gy)
  # Input gradient: a transposed convolution, and equally a FULL conv with flipped,
  # in/out-swapped weights.
  np.testing.assert_allclose(gx, jaxconv.conv_transpose(gy, w), rtol=1e-12)
  w_t = jnp.swapaxes(w, 0, 1)
  np.testing.assert_allclose(gx, jaxconv.conv(gy, w_t, padding="FULL", flip=True), rtol=1e-12)
  # Weight gradient: correlate the input with the output gradient (batch as channels).
  gw_corr = jaxconv.conv(jnp.swapaxes(x, 0, 1), jnp.swapaxes(gy, 0, 1))
  np.testing.assert_allclose(gw, jnp.swapaxes(gw_corr, 0, 1), rtol=1e-12)
  np.testing.assert_allclose(gb, gy.sum(axis=(0, 2, 3)), rtol=1e-12)


# --- seed 002: shape formula, im2col 2x2 on 4x4, transposed, dilation -------

@pytest.mark.parametrize("n,k,p,d,s", [(4, 2, 0, 1, 1), (32, 3, 1, 1, 1), (224, 7, 3, 1, 2),
                                       (10, 3, 2, 2, 3), (7, 4, 0, 1, 2)])
def test_seed002_output_shape_formula(n, k, p, d, s):
  expected = (n + 2 * p - d * (k - 1) - 1) // s + 1
  assert jaxconv.output_shape((n, n), k, stride=s, padding=p, dilation=d) == (expected,) * 2
  x = jnp.zeros((1, 1, n, n))
  w = jnp.zeros((1, 1, k, k))
  assert jaxconv.conv(x, w, stride=s, padding=p, dilation=d).shape[2:] == (expected,) * 2


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_seed002_im2col_2x2_kernel_on_4x4_gives_9_patches(method):
  x = ARANGE_4x4
  k = jnp.array([[1.0, 2.0], [3.0, 4.0]], jnp.float32)
  patches = jaxconv.unfold(x, 2)
  assert patches.shape == (1, 4, 9)
  y = (k.reshape(1, 4) @ patches[0]).reshape(3, 3)
  assert_exact(method, jaxconv.conv(x, k[None, None], method=method)[0, 0], y)
  # e.g. the top-left patch [[1, 2], [5, 6]] -> 1 + 4 + 15 + 24 = 44.
  assert float(y[0, 0]) == 44.0


def test_seed002_transposed_conv_is_full_padding_conv_with_flipped_kernel():
  """'No padding, no strides, transposed' == 'full padding' convolution."""
  rng = np.random.default_rng(5)
  x = jnp.asarray(rng.standard_normal((1, 2, 4, 4)), jnp.float64)
  w = jnp.asarray(rng.standard_normal((2, 3, 3, 3)), jnp.float64)   # (C_in, C_out, k)
  full = jaxconv.conv(x, jnp.swapaxes(w, 0, 1), padding="FULL", flip=True)
  np.testing.assert_allclose(jaxconv.conv_transpose(x, w), full, rtol=1e-12)
  assert full.shape == (1, 3, 6, 6)


def test_seed002_dilation_grows_the_receptive_field():
  """Two stacked 3x3 convs see 5x5; with dilation 2 on the second, 7x7."""
  x = jnp.zeros((1, 1, 11, 11))
  w = jnp.ones((1, 1, 3, 3))
  def field(dilation):
    f = lambda x: jaxconv.conv(jaxconv.conv(x, w), w, dilation=dilation)[0, 0, 0, 0]
    return int(jnp.sum(jax.grad(f)(x) != 0))
  assert field(1) == 25
  assert field(2) == 49


# --- seed 003: 1-D, 2-channel 4x4 -> 3 channels, 1x1 ------------------------

@pytest.mark.parametrize("method", METHOD_NAMES)
def test_seed003_1d(method):
  x = jnp.array([[[1.0, 2.0, 3.0, 4.0]]], jnp.float32)
  h = jnp.array([[[1.0, 0.0, -1.0]]], jnp.float32)
  assert_exact(method, jaxconv.conv(x, h, method=method), [[[-2.0, -2.0]]])
  assert jaxconv.output_shape(4, 3) == (2,)


SEED3_X = jnp.stack([
    jnp.array([[1, 5, 9, 13], [2, 6, 10, 14], [3, 7, 11, 15], [4, 8, 12, 16]]),
    jnp.array([[1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3], [4, 4, 4, 4]]),
]).astype(jnp.float32)[None]
SEED3_W = jnp.array([
    [[[1, 0], [0, 1]], [[1, 1], [1, 1]]],
    [[[0, 1], [1, 0]], [[0, 0], [0, 1]]],
    [[[1, 1], [1, 1]], [[-1, -1], [-1, -1]]],
], jnp.float32)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_seed003_two_channel_input_three_output_channels(method):
  y = jaxconv.conv(SEED3_X, SEED3_W, method=method)
  assert y.shape == (1, 3, 3, 3)
  assert_exact(method, y[0, 0], [[13, 21, 29], [19, 27, 35], [25, 33, 41]])
  assert_exact(method, y[0, 1], [[9, 17, 25], [12, 20, 28], [15, 23, 31]])
  assert_exact(method, y[0, 2], [[8, 24, 40], [8, 24, 40], [8, 24, 40]])
  # The per-input-channel partial results of the text.
  a = jaxconv.conv(SEED3_X[:, :1], SEED3_W[:1, :1], method=method)
  assert_exact(method, a[0, 0], [[7, 15, 23], [9, 17, 25], [11, 19, 27]])
  b = jaxconv.conv(SEED3_X[:, 1:], SEED3_W[:1, 1:], method=method)
  assert_exact(method, b[0, 0], [[6, 6, 6], [10, 10, 10], [14, 14, 14]])


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_seed003_1x1_conv_mixes_channels_only(method):
  x = jnp.array([[[[1, 2], [3, 4]], [[10, 20], [30, 40]]]], jnp.float32)
  w = jnp.array([[1, 0], [0, 1], [1, -1]], jnp.float32).reshape(3, 2, 1, 1)
  y = jaxconv.conv(x, w, method=method)
  assert y.shape == (1, 3, 2, 2)
  assert_exact(method, y[0, 0], [[1, 2], [3, 4]])
  assert_exact(method, y[0, 1], [[10, 20], [30, 40]])
  assert_exact(method, y[0, 2], [[-9, -18], [-27, -36]])
