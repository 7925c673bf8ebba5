"""Every method on a batch-sharded input, on meshes of every axis type: the
same values as lax, an output sharded on the batch like lax's, no collective
in the forward pass and an all-reduce of at most |w| + |b| in the backward."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import jaxconv
from jaxconv.testing import collectives

pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices")

MESH_TYPES = {
    "default": {},
    "auto": dict(axis_types=(AxisType.Auto,)),
    "explicit": dict(axis_types=(AxisType.Explicit,)),
}

# (x shape, w shape, kwargs); batch 8 = one example per device.
GEOMETRIES = {
    "dense-3x3": ((8, 4, 10, 10), (6, 4, 3, 3), dict(padding=1)),
    "1x1": ((8, 8, 6, 6), (4, 8, 1, 1), {}),
    "depthwise": ((8, 4, 10, 10), (4, 1, 3, 3), dict(padding=1, groups=4)),
    "strided": ((8, 4, 11, 11), (6, 4, 3, 3), dict(stride=2, padding=1)),
    "dilated": ((8, 3, 12, 12), (4, 3, 3, 3), dict(dilation=2, padding="SAME")),
    "causal-1d": ((8, 4, 48), (4, 1, 48), dict(padding=((47, 0),), groups=4)),
}


def _mesh(kind):
  return jax.make_mesh((8,), ("data",), **MESH_TYPES[kind])


def _random(shape, seed):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


@functools.lru_cache(maxsize=None)
def _reference(name):
  xs, ws, kw = GEOMETRIES[name]
  x, w, b = _random(xs, 0), _random(ws, 1), _random(ws[:1], 2)
  y = jaxconv.conv(x, w, b, **kw, method="lax")
  return x, w, b, y


def _batch_sharded_grid():
  """(geometry, method, mesh type) rows: lax (XLA's SPMD partitioner) and auto
  on every mesh type; the other methods (one shard_map route for every mesh
  type) as a Latin square, each geometry and each method meeting every mesh
  type: 60 rows instead of 108 compiles of forward and backward."""
  rows = []
  for i, name in enumerate(GEOMETRIES):
    for j, method in enumerate([*jaxconv.method_names(), "auto"]):
      for k, mesh_type in enumerate(MESH_TYPES):
        if method in ("lax", "auto") or (i + j) % len(MESH_TYPES) == k:
          rows.append(pytest.param(name, method, mesh_type, id=f"{name}-{method}-{mesh_type}"))
  return rows


@pytest.mark.parametrize("name,method,mesh_type", _batch_sharded_grid())
def test_batch_sharded_is_local_and_matches_lax(name, method, mesh_type):
  x, w, b, ref = _reference(name)
  kw = GEOMETRIES[name][2]
  mesh = _mesh(mesh_type)
  f = lambda x, w, b: jaxconv.conv(x, w, b, **kw, method=method)   # noqa: E731
  loss = lambda x, w, b: jnp.sum(jnp.sin(f(x, w, b)))               # noqa: E731
  with jax.sharding.set_mesh(mesh):
    xs = jax.device_put(x, NamedSharding(mesh, P("data")))
    ws = jax.device_put(w, NamedSharding(mesh, P()))
    bs = jax.device_put(b, NamedSharding(mesh, P()))
    fwd = jax.jit(f).lower(xs, ws, bs).compile()
    y = fwd(xs, ws, bs)
    bwd = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(xs, ws, bs).compile()
    dx, dw, db = bwd(xs, ws, bs)
  np.testing.assert_allclose(y, ref, rtol=0, atol=1e-9 * float(jnp.abs(ref).max()))
  assert y.sharding.spec[0] == "data", y.sharding
  assert collectives(fwd.as_text()) == []
  reduced = collectives(bwd.as_text())
  assert {c.kind for c in reduced} <= {"all-reduce"}, reduced
  assert sum(c.elements for c in reduced) <= w.size + b.size, reduced
  assert dx.sharding.spec[0] == "data"
  ref_grads = jax.grad(loss, argnums=(0, 1, 2))(x, w, b)
  for got, want in zip((dx, dw, db), ref_grads):
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9 * float(jnp.abs(want).max()))


@pytest.mark.parametrize("mesh_type", ["default", "explicit"])
@pytest.mark.parametrize("method", jaxconv.method_names())
def test_channel_sharded_depthwise_is_local(method, mesh_type):
  x, w = _random((2, 8, 10, 10), 0), _random((8, 1, 3, 3), 1)
  mesh = _mesh(mesh_type)
  f = lambda x, w: jaxconv.conv(x, w, padding=1, groups=8, method=method)   # noqa: E731
  with jax.sharding.set_mesh(mesh):
    xs = jax.device_put(x, NamedSharding(mesh, P(None, "data")))
    ws = jax.device_put(w, NamedSharding(mesh, P("data")))
    fwd = jax.jit(f).lower(xs, ws).compile()
    y = fwd(xs, ws)
  ref = jaxconv.conv(x, w, padding=1, groups=8, method="lax")
  np.testing.assert_allclose(y, ref, rtol=0, atol=1e-9 * float(jnp.abs(ref).max()))
  assert collectives(fwd.as_text()) == []
  assert y.sharding.spec[1] == "data"


@pytest.mark.parametrize("mesh_type", list(MESH_TYPES))
def test_out_sharding_as_lax(mesh_type):
  """`conv_general_dilated(out_sharding=...)` gives lax's output sharding, and
  refuses Auto axes as lax does."""
  x, w = _random((8, 3, 6, 6), 0), _random((8, 3, 3, 3), 1)
  mesh = _mesh(mesh_type)
  kw = dict(window_strides=(1, 1), padding="SAME")
  out = NamedSharding(mesh, P(None, "data"))          # channels, not the batch
  lax_conv = lambda x, w: jax.lax.conv_general_dilated(x, w, **kw, out_sharding=out)  # noqa: E731
  ours = lambda method: lambda x, w: jaxconv.conv_general_dilated(  # noqa: E731
      x, w, **kw, out_sharding=out, method=method)
  with jax.sharding.set_mesh(mesh):
    xs = jax.device_put(x, NamedSharding(mesh, P("data")))
    if mesh_type == "auto":
      with pytest.raises(ValueError, match="Auto"):
        jax.jit(lax_conv)(xs, w)
      with pytest.raises(ValueError, match=r"`out_sharding` may name only Explicit mesh "
                                           r"axes, as in lax; .*axis 'data' of type"):
        jax.jit(ours("im2col"))(xs, w)
      return
    ref = jax.jit(lax_conv)(xs, w)
    for method in ("lax", "im2col", "fft"):
      y = jax.jit(ours(method))(xs, w)
      assert y.sharding.spec == ref.sharding.spec, (method, y.sharding, ref.sharding)
      np.testing.assert_allclose(y, ref, rtol=0, atol=1e-9 * float(jnp.abs(ref).max()))


def test_out_sharding_of_the_wrong_kind():
  with pytest.raises(TypeError, match=r"`out_sharding` must be None, a NamedSharding or a "
                                      r"PartitionSpec; got out_sharding='data'"):
    jaxconv.conv_general_dilated(jnp.ones((1, 1, 4)), jnp.ones((1, 1, 3)), (1,), "VALID",
                                 out_sharding="data")


@pytest.mark.parametrize("method", [*jaxconv.method_names(), "auto"])
def test_spatially_sharded_input_on_an_explicit_mesh(method):
  """A spatially sharded `x` (Explicit axes) gives lax's values: lax (and auto,
  which picks it) exchanges halos, the other methods gather the rows they need
  (`jaxconv.sharded_conv` is the halo-exchanging route for them)."""
  x, w = _random((2, 4, 32, 8), 0), _random((4, 4, 3, 3), 1)
  mesh = _mesh("explicit")
  with jax.sharding.set_mesh(mesh):
    xs = jax.device_put(x, NamedSharding(mesh, P(None, None, "data")))
    fwd = jax.jit(lambda x, w: jaxconv.conv(x, w, padding=1, method=method)).lower(
        xs, w).compile()
    y = fwd(xs, w)
  ref = jaxconv.conv(x, w, padding=1, method="lax")
  np.testing.assert_allclose(y, ref, rtol=0, atol=1e-9 * float(jnp.abs(ref).max()))
  kinds = {c.kind for c in collectives(fwd.as_text())}
  if method in ("lax", "auto"):
    assert kinds == {"collective-permute"}, kinds


def test_chunked_fft_inside_shard_map(monkeypatch):
  """A long filter whose FFT plan scans over block groups (`plans.chunked`)
  inside `sharded_conv`'s shard_map: the scan's carry varies like its input
  (regression: 'scan body function carry input and carry output must have
  equal types', found by `python -m bench --sharding`)."""
  from jaxconv._geometry import geometry_of
  from jaxconv._methods import fft
  from jaxconv._methods.fft import plans
  # Chunk small spectra, so that a small slab takes the scan path.
  monkeypatch.setattr(plans, "_SCAN_ABOVE_BYTES", 1 << 14)
  monkeypatch.setattr(plans, "_CHUNK_BYTES", 1 << 12)
  plans.plan_conv.cache_clear()
  try:
    x, w = _random((1, 2, 1 << 15), 0), _random((2, 1, 33), 1)
    slab = geometry_of((1, 2, (1 << 15) // 8 + 32), (2, 1, 33), "float64", groups=2)
    assert fft.plan(slab).chunk
    mesh = jax.make_mesh((8,), ("s",))
    y = jaxconv.sharded_conv(x, w, mesh=mesh, spatial_axes=("s",), padding="SAME",
                             groups=2, method="fft")
  finally:
    plans.plan_conv.cache_clear()
  ref = jaxconv.conv(x, w, padding="SAME", groups=2, method="lax")
  np.testing.assert_allclose(y, ref, rtol=0, atol=1e-9 * float(jnp.abs(ref).max()))
