"""jaxconv.nn: PyTorch-default initialisation (shapes, bounds, statistics),
params usable with jaxconv.conv / conv_transpose and optax, and every error path."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats

import jaxconv
from jaxconv import nn


def _bound(fan_in):
  return 1.0 / math.sqrt(fan_in)


# --- shapes ------------------------------------------------------------------

@pytest.mark.parametrize("kernel_size,spatial_dims,k", [
    (3, None, (3, 3)), ((5,), None, (5,)), (3, 1, (3,)), (2, 3, (2, 2, 2)),
    ((3, 5), None, (3, 5)), ([1, 2, 3], 3, (1, 2, 3))])
@pytest.mark.parametrize("groups", [1, 2])
def test_shapes(kernel_size, spatial_dims, k, groups):
  key = jax.random.key(0)
  # eval_shape: shapes and dtypes without compiling a sampler per case.
  p = jax.eval_shape(lambda k_: nn.init_conv(k_, 4, 6, kernel_size, groups=groups,
                                             spatial_dims=spatial_dims), key)
  assert set(p) == {"w", "b"}
  assert p["w"].shape == (6, 4 // groups, *k) and p["w"].dtype == jnp.float32
  assert p["b"].shape == (6,) and p["b"].dtype == jnp.float32
  q = jax.eval_shape(lambda k_: nn.init_conv_transpose(
      k_, 4, 6, kernel_size, groups=groups, spatial_dims=spatial_dims), key)
  assert q["w"].shape == (4, 6 // groups, *k) and q["b"].shape == (6,)


def test_no_bias_and_dtypes():
  key = jax.random.key(1)
  p = nn.init_conv(key, 3, 8, 3, bias=False)
  assert p["b"] is None and jax.tree.leaves(p) == [p["w"]]
  assert jax.eval_shape(
      lambda k: nn.init_conv_transpose(k, 3, 8, 3, bias=False), key)["b"] is None
  dtypes = [jnp.bfloat16, jnp.float16, jnp.float32, np.dtype("float32")]
  if jax.config.jax_enable_x64:
    dtypes.append(jnp.float64)
  for dtype in dtypes:
    p = jax.eval_shape(lambda k: nn.init_conv(k, 3, 8, 3, dtype=dtype), key)
    assert p["w"].dtype == dtype and p["b"].dtype == dtype
  w = nn.init_conv(key, 3, 8, 3, dtype=jnp.bfloat16)["w"]
  assert w.dtype == jnp.bfloat16 and float(jnp.abs(w).max()) <= 1 / math.sqrt(27)


def test_keys_determinism_and_raw_keys():
  a = nn.init_conv(jax.random.key(0), 3, 8, 3)
  b = nn.init_conv(jax.random.key(0), 3, 8, 3)
  c = nn.init_conv(jax.random.key(1), 3, 8, 3)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert not np.array_equal(a["w"], c["w"])
  raw = nn.init_conv(jax.random.PRNGKey(0), 3, 8, 3)
  assert raw["w"].shape == (8, 3, 3, 3)
  # w and b come from different sub-keys.
  assert not np.allclose(a["w"].reshape(-1)[:8], a["b"])


def test_jit():
  f = jax.jit(nn.init_conv, static_argnums=(1, 2, 3),
              static_argnames=("groups", "bias", "spatial_dims", "dtype"))
  jax.tree.map(np.testing.assert_array_equal, f(jax.random.key(3), 3, 8, 3),
               nn.init_conv(jax.random.key(3), 3, 8, 3))


# --- PyTorch's distribution ----------------------------------------------------

def _check_uniform(a, bound, n_min):
  """All samples within the bound; empirical max, mean, variance and the KS
  statistic agree with U(-bound, bound)."""
  a = np.asarray(a, np.float64).reshape(-1)
  assert a.size >= n_min
  assert np.abs(a).max() <= bound
  # P(max |a| < bound * (1 - eps)) = (1 - eps)^n: < e^-9 for the eps below.
  assert np.abs(a).max() >= bound * (1 - 9.0 / a.size)
  se_mean = bound / math.sqrt(3 * a.size)
  assert abs(a.mean()) < 5 * se_mean
  np.testing.assert_allclose(a.var(), bound**2 / 3, rtol=10 / math.sqrt(a.size))
  ks = scipy.stats.kstest(a, scipy.stats.uniform(loc=-bound, scale=2 * bound).cdf)
  assert ks.pvalue > 1e-3


@pytest.mark.parametrize("in_ch,out_ch,k,groups", [
    (16, 64, (3, 3), 1), (32, 64, (5,), 4), (8, 128, (3, 3, 3), 8)])
def test_init_conv_matches_pytorch_distribution(in_ch, out_ch, k, groups):
  p = nn.init_conv(jax.random.key(7), in_ch, out_ch, k, groups=groups)
  bound = _bound(in_ch // groups * math.prod(k))
  _check_uniform(p["w"], bound, 2000)
  b = np.asarray(p["b"])
  assert np.abs(b).max() <= bound and b.std() > 0


def test_bias_distribution():
  """The bias bound is the weight's 1 / sqrt(fan_in), checked on many outputs."""
  p = nn.init_conv(jax.random.key(8), 2, 20000, 1, spatial_dims=1)
  _check_uniform(p["b"], _bound(2), 20000)
  q = nn.init_conv_transpose(jax.random.key(8), 2, 20000, 1, spatial_dims=1)
  _check_uniform(q["b"], _bound(20000), 20000)


def test_init_conv_transpose_fan_in_is_out_channels():
  """PyTorch's fan-in is weight.shape[1] * prod(k) = out_channels // groups * prod(k)."""
  p = nn.init_conv_transpose(jax.random.key(9), 64, 6, (3, 3), groups=2)
  bound = _bound(6 // 2 * 9)
  _check_uniform(p["w"], bound, 1000)
  # Using in_channels (64 // 2 * 9) would give a bound 3.3x smaller.
  assert np.abs(p["w"]).max() > 3 * _bound(64 // 2 * 9)


# --- use in training code ------------------------------------------------------

@pytest.mark.parametrize("bias", [True, False])
def test_params_feed_conv_and_conv_transpose(bias):
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 8, 8)), jnp.float32)
  p = nn.init_conv(jax.random.key(1), 4, 6, 3, groups=2, bias=bias)
  q = nn.init_conv_transpose(jax.random.key(2), 6, 4, 4, groups=2, bias=bias)

  @jax.jit
  def run(x, p, q):
    y = jaxconv.conv(x, **p, padding=1, groups=2)
    ref = jax.lax.conv_general_dilated(x, p["w"], (1, 1), ((1, 1), (1, 1)),
                                       feature_group_count=2,
                                       precision=jax.lax.Precision.HIGHEST)
    if bias:
      ref = ref + p["b"][None, :, None, None]
    return y, ref, jaxconv.conv_transpose(y, **q, stride=2, padding=1, groups=2)

  y, ref, z = run(x, p, q)
  assert y.shape == (2, 6, 8, 8)
  np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
  assert z.shape == (2, 4, 16, 16)


def test_transpose_layout_is_the_gradient_of_conv():
  """conv_transpose with `(C_in, C_out // groups, *k)` is the VJP of the conv
  whose weight is that same array: the layout init_conv_transpose returns."""
  q = nn.init_conv_transpose(jax.random.key(4), 3, 5, 3, bias=False)
  y = jax.random.normal(jax.random.key(5), (1, 3, 6, 6), jnp.float32)
  z0 = jnp.zeros((1, 5, 8, 8), jnp.float32)
  _, vjp = jax.vjp(lambda z: jaxconv.conv(z, q["w"]), z0)
  np.testing.assert_allclose(jaxconv.conv_transpose(y, **q), vjp(y)[0],
                             rtol=1e-5, atol=1e-5)


def test_optax_training_step():
  bias = True
  keys = jax.random.split(jax.random.key(0), 3)
  params = {"conv1": nn.init_conv(keys[0], 1, 4, 3, bias=bias),
            "conv2": nn.init_conv(keys[1], 4, 1, 3, bias=bias)}
  x = jax.random.normal(keys[2], (4, 1, 8, 8), jnp.float32)
  target = jaxconv.conv(x, jnp.ones((1, 1, 3, 3), jnp.float32) / 9, padding=1)

  def loss(p):
    h = jax.nn.relu(jaxconv.conv(x, **p["conv1"], padding=1))
    return jnp.mean((jaxconv.conv(h, **p["conv2"], padding=1) - target) ** 2)

  opt = optax.adam(1e-2)
  state = opt.init(params)

  @jax.jit
  def step(p, s):
    l, g = jax.value_and_grad(loss)(p)
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s, l

  losses = []
  for _ in range(30):
    params, state, l = step(params, state)
    losses.append(float(l))
  assert losses[-1] < 0.5 * losses[0]


def test_optax_accepts_absent_bias():
  """`"b": None` is an empty pytree node: optax keeps it as None."""
  params = nn.init_conv(jax.random.key(0), 2, 3, 3, bias=False)
  grads = {"w": jnp.ones_like(params["w"]), "b": None}
  opt = optax.adam(1e-2)
  updates, _ = opt.update(grads, opt.init(params), params)
  new = optax.apply_updates(params, updates)
  assert new["b"] is None and new["w"].shape == params["w"].shape
  assert float(jnp.abs(new["w"] - params["w"]).max()) > 0


# --- errors ------------------------------------------------------------------

FNS = [(nn.init_conv, "init_conv"), (nn.init_conv_transpose, "init_conv_transpose")]


@pytest.mark.parametrize("fn,name", FNS)
def test_errors(fn, name):
  key = jax.random.key(0)
  pre = rf"jaxconv\.nn\.{name}: "
  with pytest.raises(TypeError, match=pre + r"`in_channels` must be an int; got in_channels='3'"):
    fn(key, "3", 8, 3)
  with pytest.raises(ValueError, match=pre + r"`in_channels` must be positive; got in_channels=0"):
    fn(key, 0, 8, 3)
  with pytest.raises(TypeError, match=pre + r"`out_channels` must be an int; got out_channels=8\.0"):
    fn(key, 3, 8.0, 3)
  with pytest.raises(ValueError, match=pre + r"`out_channels` must be positive"):
    fn(key, 3, -8, 3)
  with pytest.raises(TypeError, match=pre + r"`groups` must be an int; got groups=None"):
    fn(key, 4, 8, 3, groups=None)
  with pytest.raises(ValueError, match=pre + r"`groups` must be positive; got groups=0"):
    fn(key, 4, 8, 3, groups=0)
  with pytest.raises(ValueError, match=pre + r"`in_channels` \(=3\) must be divisible by "
                     r"`groups` \(=2\)"):
    fn(key, 3, 8, 3, groups=2)
  with pytest.raises(ValueError, match=pre + r"`out_channels` \(=9\) must be divisible by "
                     r"`groups` \(=2\)"):
    fn(key, 6, 9, 3, groups=2)
  with pytest.raises(TypeError, match=pre + r"`bias` must be a bool; got bias=1"):
    fn(key, 4, 8, 3, bias=1)
  with pytest.raises(TypeError, match=pre + r"`spatial_dims` must be an int or None; "
                     r"got spatial_dims='2'"):
    fn(key, 4, 8, 3, spatial_dims="2")
  with pytest.raises(ValueError, match=pre + r"`spatial_dims` must be positive; got "
                     r"spatial_dims=0"):
    fn(key, 4, 8, 3, spatial_dims=0)
  with pytest.raises(ValueError, match=pre + r"`kernel_size` must have at least one spatial "
                     r"dim; got kernel_size=\(\)"):
    fn(key, 4, 8, ())
  with pytest.raises(ValueError, match=pre + r"`kernel_size` has 2 entries but spatial_dims=3"):
    fn(key, 4, 8, (3, 3), spatial_dims=3)
  with pytest.raises(TypeError, match=pre + r"`kernel_size` must be an int or a tuple of ints; "
                     r"got kernel_size=3\.0"):
    fn(key, 4, 8, 3.0)
  with pytest.raises(TypeError, match=pre + r"`kernel_size` must be an int or a sequence of "
                     r"ints; got kernel_size=\(3, 2\.0\)"):
    fn(key, 4, 8, (3, 2.0))
  with pytest.raises(ValueError, match=pre + r"`kernel_size` must be positive; got "
                     r"kernel_size=\(3, 0\)"):
    fn(key, 4, 8, (3, 0))
  with pytest.raises(TypeError, match=pre + r"`dtype` must be a floating dtype; got dtype=int32"):
    fn(key, 4, 8, 3, dtype=jnp.int32)
