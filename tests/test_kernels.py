"""jaxconv.kernels: exact seed-001 values, seed numbers through a convolution,
the lifting helper, and every error path."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
from jax import lax

import jaxconv
from jaxconv import kernels

# Seed 001, "Common Kernels and Their Effects", verbatim.
SEED_GX = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
SEED_GY = [[-1, -2, -1], [0, 0, 0], [1, 2, 1]]
SEED_LAPLACIAN = [[0, -1, 0], [-1, 4, -1], [0, -1, 0]]
SEED_SHARPEN = [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]
SEED_BLUR_X16 = [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
SEED_IDENTITY = [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
# Seed 001, "PyTorch Implementation": the "Sobel-like" weight put in nn.Conv2d.
SEED_CONV2D_KERNEL = [[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]


def _correlate(x, k):
  """VALID 2-D cross-correlation of an (H, W) image with an (kh, kw) filter."""
  x = jnp.asarray(x)[None, None]
  w = jnp.asarray(k, x.dtype)[None, None]
  return lax.conv_general_dilated(x, w, (1, 1), "VALID",
                                  precision=lax.Precision.HIGHEST)[0, 0]


def _arange16():
  return jnp.arange(1.0, 17.0, dtype=jnp.float32).reshape(4, 4)


# --- exact values --------------------------------------------------------------

@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16, jnp.int32])
def test_seed_values_exact(dtype):
  np.testing.assert_array_equal(kernels.sobel("x", dtype=dtype), SEED_GX)
  np.testing.assert_array_equal(kernels.sobel("y", dtype=dtype), SEED_GY)
  np.testing.assert_array_equal(kernels.laplacian(4, dtype=dtype), SEED_LAPLACIAN)
  np.testing.assert_array_equal(kernels.sharpen(dtype=dtype), SEED_SHARPEN)
  np.testing.assert_array_equal(kernels.identity(3, dtype=dtype), SEED_IDENTITY)
  for k in (kernels.sobel("x", dtype=dtype), kernels.laplacian(dtype=dtype),
            kernels.sharpen(dtype=dtype), kernels.identity(dtype=dtype)):
    assert k.dtype == dtype and k.shape == (3, 3)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_seed_blur_exact(dtype):
  k = kernels.binomial(3, dtype=dtype)
  assert k.dtype == dtype
  # 1/16, 2/16, 4/16 are exact in every float format.
  np.testing.assert_array_equal(np.asarray(k, np.float64) * 16, SEED_BLUR_X16)
  np.testing.assert_array_equal(kernels.binomial(), k.astype(jnp.float32))


def test_other_exact_values():
  np.testing.assert_array_equal(kernels.prewitt("x"), [[-1, 0, 1]] * 3)
  np.testing.assert_array_equal(kernels.prewitt("y"), np.array([[-1, 0, 1]] * 3).T)
  np.testing.assert_array_equal(kernels.laplacian(8),
                                [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]])
  np.testing.assert_array_equal(kernels.box(2), np.full((2, 2), 0.25))
  np.testing.assert_array_equal(kernels.box(3), np.full((3, 3), np.float32(1 / 9)))
  row = np.array([1, 4, 6, 4, 1]) / 16
  np.testing.assert_array_equal(kernels.binomial(5), np.outer(row, row))
  np.testing.assert_array_equal(kernels.binomial(1), [[1.0]])
  np.testing.assert_array_equal(kernels.identity(5, ndim=1), [0, 0, 1, 0, 0])


def test_relations():
  np.testing.assert_array_equal(kernels.sobel("y"), kernels.sobel("x").T)
  np.testing.assert_array_equal(kernels.prewitt("y"), kernels.prewitt("x").T)
  np.testing.assert_array_equal(kernels.sharpen(),
                                kernels.identity() + kernels.laplacian(4))
  # The seed's nn.Conv2d weight is -G_x, i.e. G_x rotated by 180 degrees.
  np.testing.assert_array_equal(-kernels.sobel("x"), SEED_CONV2D_KERNEL)
  np.testing.assert_array_equal(jnp.flip(kernels.sobel("x")), SEED_CONV2D_KERNEL)


@pytest.mark.parametrize("fn", [kernels.sobel, kernels.prewitt])
def test_axis_aliases(fn):
  x = fn("x")
  y = fn("y")
  for alias in ("x", "X", 1, -1, np.int64(1)):
    np.testing.assert_array_equal(fn(alias), x)
  for alias in ("y", "Y", 0, -2, np.int32(0)):
    np.testing.assert_array_equal(fn(alias), y)


def test_gaussian():
  k = kernels.gaussian(5, 1.5)
  assert k.shape == (5, 5) and k.dtype == jnp.float32
  np.testing.assert_allclose(k.sum(), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(k, k.T)
  np.testing.assert_array_equal(k, jnp.flip(k))
  assert int(jnp.argmax(k)) == 12
  # Against scipy's sampled Gaussian window, normalised.
  ref = scipy.signal.windows.gaussian(5, 1.5)
  ref = np.outer(ref, ref) / np.outer(ref, ref).sum()
  np.testing.assert_allclose(k, ref, rtol=1e-6)
  # The seed's integer blur is the 3-tap Gaussian with exp(-1 / (2 s^2)) = 1/2.
  np.testing.assert_allclose(
      kernels.gaussian(3, 1 / math.sqrt(2 * math.log(2))), kernels.binomial(3),
      rtol=1e-6)
  k3 = kernels.gaussian(3, 0.8, ndim=3)
  assert k3.shape == (3, 3, 3)
  np.testing.assert_allclose(k3.sum(), 1.0, rtol=1e-6)
  # Integer and numpy sigmas are accepted.
  np.testing.assert_allclose(kernels.gaussian(3, 1), kernels.gaussian(3, np.float32(1)))


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_normalised_filters_sum_to_one(ndim):
  for k in (kernels.box(4, ndim=ndim), kernels.binomial(4, ndim=ndim),
            kernels.gaussian(3, 2.0, ndim=ndim)):
    assert k.shape == k.shape[:1] * ndim
    np.testing.assert_allclose(k.sum(), 1.0, rtol=1e-6)


def test_complex_dtype():
  k = kernels.gaussian(3, 1.0, dtype=jnp.complex64)
  assert k.dtype == jnp.complex64
  np.testing.assert_allclose(k.real, kernels.gaussian(3, 1.0))


# --- the seed's numbers through a convolution ----------------------------------

def test_seed_arange16_sobel_example():
  """Seed 001: nn.Conv2d(1, 1, 3) with the Sobel-like weight on arange(1, 17)."""
  x = _arange16()
  out = _correlate(x, SEED_CONV2D_KERNEL)
  assert out.shape == (2, 2)
  np.testing.assert_array_equal(out, -8.0 * np.ones((2, 2)))
  # G_x itself responds +8 to intensity growing by 1 per column; under true
  # convolution (flip) G_x gives the seed's -8.
  np.testing.assert_array_equal(_correlate(x, kernels.sobel("x")), 8.0 * np.ones((2, 2)))
  w = kernels.as_conv_weight(kernels.sobel("x"))
  np.testing.assert_array_equal(jaxconv.conv(x[None, None], w, flip=True)[0, 0],
                                -8.0 * np.ones((2, 2)))
  # Rows grow by 4: G_y gives 4 * (1 + 2 + 1) * 2 = 32.
  np.testing.assert_array_equal(_correlate(x, kernels.sobel("y")), 32.0 * np.ones((2, 2)))


def test_seed_5x5_example():
  """Seed 001's drawn 5x5 example: output at (0, 0) is -4."""
  img = jnp.array([[1, 2, 3, 0, 1], [0, 1, 2, 3, 1], [1, 2, 1, 0, 0],
                   [0, 0, 1, 2, 1], [1, 1, 0, 1, 0]], jnp.float32)
  k = -kernels.prewitt("x")                  # [[1, 0, -1]] * 3, as drawn
  out = np.asarray(_correlate(img, k))
  assert out[0, 0] == -4.0
  ref = np.array([[np.sum(np.asarray(img)[i:i + 3, j:j + 3] * np.asarray(k))
                   for j in range(3)] for i in range(3)])
  np.testing.assert_array_equal(out, ref)


def test_smoothing_and_laplacian_on_a_ramp():
  x = _arange16()                            # a linear ramp: 4 * row + col + 1
  centre = x[1:3, 1:3]
  np.testing.assert_array_equal(_correlate(x, kernels.laplacian(4)), np.zeros((2, 2)))
  np.testing.assert_array_equal(_correlate(x, kernels.laplacian(8)), np.zeros((2, 2)))
  np.testing.assert_array_equal(_correlate(x, kernels.sharpen()), centre)
  np.testing.assert_array_equal(_correlate(x, kernels.identity()), centre)
  np.testing.assert_allclose(_correlate(x, kernels.box(3)), centre, rtol=1e-6)
  np.testing.assert_array_equal(_correlate(x, kernels.binomial(3)), centre)
  np.testing.assert_allclose(_correlate(x, kernels.gaussian(3, 0.7)), centre, rtol=1e-6)


@pytest.mark.parametrize("method", jaxconv.method_names())
def test_identity_same_padding_every_method(method):
  x = jax.random.normal(jax.random.key(0), (2, 3, 6, 7), jnp.float32)
  w = kernels.as_conv_weight(kernels.identity(5), 3, depthwise=True)
  try:
    y = jaxconv.conv(x, w, padding="SAME", groups=3, method=method)
  except NotImplementedError as e:       # a method without grouped convs
    pytest.skip(str(e))
  np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-5)


# --- as_conv_weight ----------------------------------------------------------

def test_as_conv_weight_shapes_and_values():
  k = kernels.sobel("x")
  assert kernels.as_conv_weight(k).shape == (1, 1, 3, 3)
  w = kernels.as_conv_weight(k, 3, 2)
  assert w.shape == (2, 3, 3, 3) and w.dtype == k.dtype
  for o in range(2):
    for i in range(3):
      np.testing.assert_array_equal(w[o, i], k)
  assert kernels.as_conv_weight(k, 3, depthwise=True).shape == (3, 1, 3, 3)
  assert kernels.as_conv_weight(k, 3, 6, depthwise=True).shape == (6, 1, 3, 3)
  assert kernels.as_conv_weight(kernels.gaussian(3, 1.0, ndim=1), 2).shape == (1, 2, 3)
  assert kernels.as_conv_weight([[1, 2], [3, 4]]).shape == (1, 1, 2, 2)
  assert kernels.as_conv_weight(np.ones((3, 3)), np.int64(2)).shape == (1, 2, 3, 3)
  assert kernels.as_conv_weight(k.astype(jnp.bfloat16)).dtype == jnp.bfloat16


def test_as_conv_weight_rgb():
  """Depthwise = each channel filtered alone; dense = channel sum filtered."""
  rgb = jax.random.uniform(jax.random.key(1), (1, 3, 8, 8), jnp.float32)
  k = kernels.binomial(3)
  dw = jaxconv.conv(rgb, kernels.as_conv_weight(k, 3, depthwise=True), groups=3)
  for c in range(3):
    np.testing.assert_allclose(dw[0, c], _correlate(rgb[0, c], k), rtol=1e-5, atol=1e-6)
  dense = jaxconv.conv(rgb, kernels.as_conv_weight(kernels.sobel("x"), 3))
  np.testing.assert_allclose(dense[0, 0], _correlate(rgb[0].sum(0), kernels.sobel("x")),
                             rtol=1e-5, atol=1e-5)


def test_as_conv_weight_under_jit_and_grad():
  f = jax.jit(lambda k: kernels.as_conv_weight(k, 2, 3))
  np.testing.assert_array_equal(f(kernels.laplacian()),
                                kernels.as_conv_weight(kernels.laplacian(), 2, 3))
  g = jax.grad(lambda k: kernels.as_conv_weight(k, 2, 3).sum())(kernels.sharpen())
  np.testing.assert_array_equal(g, 6.0 * np.ones((3, 3)))


# --- errors ------------------------------------------------------------------

@pytest.mark.parametrize("fn,name", [(kernels.sobel, "sobel"), (kernels.prewitt, "prewitt")])
def test_axis_errors(fn, name):
  with pytest.raises(ValueError, match=rf"kernels\.{name}: `axis` must be 'x'.*got axis=2"):
    fn(2)
  with pytest.raises(ValueError, match=r"got axis='z'"):
    fn("z")
  with pytest.raises(TypeError, match=rf"kernels\.{name}: `axis` must be .*got axis=1\.0"):
    fn(1.0)
  with pytest.raises(TypeError, match=r"got axis=True"):
    fn(True)


def test_laplacian_errors():
  for bad in (6, 4.0, "4", True):
    with pytest.raises(ValueError, match=r"kernels\.laplacian: `neighbours` must be 4 or 8"):
      kernels.laplacian(bad)


@pytest.mark.parametrize("fn,name,odd", [
    (kernels.identity, "identity", True), (kernels.box, "box", False),
    (kernels.binomial, "binomial", False),
    (lambda size, **kw: kernels.gaussian(size, 1.0, **kw), "gaussian", True)])
def test_size_and_ndim_errors(fn, name, odd):
  with pytest.raises(TypeError, match=rf"kernels\.{name}: `size` must be an int; got size=3\.0"):
    fn(3.0)
  with pytest.raises(ValueError, match=rf"kernels\.{name}: `size` must be positive; got size=0"):
    fn(0)
  with pytest.raises(ValueError, match=r"must be positive; got size=-3"):
    fn(-3)
  if odd:
    with pytest.raises(ValueError, match=rf"kernels\.{name}: `size` must be odd.*got size=4"):
      fn(4)
  else:
    assert fn(4).shape == (4, 4)
  with pytest.raises(TypeError, match=rf"kernels\.{name}: `ndim` must be an int; got ndim='2'"):
    fn(3, ndim="2")
  with pytest.raises(ValueError, match=rf"kernels\.{name}: `ndim` must be positive; got ndim=0"):
    fn(3, ndim=0)


@pytest.mark.parametrize("fn,name", [
    (kernels.box, "box"), (kernels.binomial, "binomial"),
    (lambda size, **kw: kernels.gaussian(size, 1.0, **kw), "gaussian")])
def test_fractional_filters_reject_integer_dtypes(fn, name):
  with pytest.raises(TypeError,
                     match=rf"kernels\.{name}: `dtype` must be a floating .*got dtype=int32"):
    fn(3, dtype=jnp.int32)


def test_gaussian_sigma_errors():
  for bad in (0, -1.0, float("inf"), float("nan")):
    with pytest.raises(ValueError, match=r"kernels\.gaussian: `sigma` must be finite and > 0"):
      kernels.gaussian(3, bad)
  for bad in ("1", True, None, jnp.float32(1.0)):
    with pytest.raises(TypeError, match=r"kernels\.gaussian: `sigma` must be a Python or NumPy real number"):
      kernels.gaussian(3, bad)


def test_as_conv_weight_errors():
  k = kernels.sobel("x")
  fn = r"kernels\.as_conv_weight"
  with pytest.raises(TypeError, match=rf"{fn}: `kernel` must be an array .*got int"):
    kernels.as_conv_weight(3)
  with pytest.raises(ValueError, match=rf"{fn}: `kernel` must have at least one spatial dim"):
    kernels.as_conv_weight(jnp.float32(1.0))
  with pytest.raises(TypeError, match=rf"{fn}: `in_channels` must be an int; got in_channels=3\.0"):
    kernels.as_conv_weight(k, 3.0)
  with pytest.raises(ValueError, match=rf"{fn}: `in_channels` must be positive; got in_channels=0"):
    kernels.as_conv_weight(k, 0)
  with pytest.raises(TypeError, match=rf"{fn}: `out_channels` must be an int; got out_channels='2'"):
    kernels.as_conv_weight(k, 1, "2")
  with pytest.raises(ValueError, match=rf"{fn}: `out_channels` must be positive"):
    kernels.as_conv_weight(k, 1, -1)
  with pytest.raises(TypeError, match=rf"{fn}: `depthwise` must be a bool; got depthwise=1"):
    kernels.as_conv_weight(k, 3, depthwise=1)
  with pytest.raises(ValueError, match=rf"{fn}: with depthwise=True `out_channels` must be a "
                     r"multiple of `in_channels`.*out_channels=4, in_channels=3"):
    kernels.as_conv_weight(k, 3, 4, depthwise=True)
