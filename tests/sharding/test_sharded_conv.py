"""`jaxconv.sharded_conv` on 8 host devices: values, derivatives, sharding, HLO, errors.

Every case is checked against the unsharded `jaxconv.conv` at float64: the
forward values, `jax.grad` in `x`, `w` (and `b`), the output's sharding, and
the compiled forward's collectives (collective-permutes, no all-gather).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

import jaxconv

pytestmark = pytest.mark.skipif(
    jax.device_count() < 8,
    reason="needs 8 devices: run `pytest tests/sharding` in its own process")

TOL = dict(rtol=1e-12, atol=1e-12)

# id -> (x shape, w shape, mesh axes {name: size}, batch_axis, spatial_axes,
#        conv kwargs, bias)
CASES = {
    # 1-D halos: kernels 3, 4 (even), 5; padding forms; 2, 4 and 8 shards.
    "k3-pad1-P2": ((2, 2, 8), (3, 2, 3), {"x": 2}, None, ("x",), dict(padding=1), False),
    "k4-SAME-P4": ((1, 2, 16), (3, 2, 4), {"x": 4}, None, ("x",), dict(padding="SAME"), True),
    "k5-VALID-P4": ((1, 2, 16), (2, 2, 5), {"x": 4}, None, ("x",), dict(padding="VALID"), False),
    "k3-pairs-P8": ((1, 1, 16), (2, 1, 3), {"x": 8}, None, ("x",),
                    dict(padding=((2, 0),)), False),
    "k3-negpad-P8": ((1, 1, 16), (2, 1, 3), {"x": 8}, None, ("x",),
                     dict(padding=((-2, 4),)), False),
    # Strides: o*s == m, and o*s != m (slabs start at different offsets).
    "k3-SAME-s2-P4": ((1, 2, 16), (2, 2, 3), {"x": 4}, None, ("x",),
                      dict(padding="SAME", stride=2), False),
    "k4-SAME-s2-P2": ((1, 2, 16), (2, 2, 4), {"x": 2}, None, ("x",),
                      dict(padding="SAME", stride=2), False),
    "k5-VALID-s2-groups2-P2": ((1, 2, 16), (2, 1, 5), {"x": 2}, None, ("x",),
                               dict(padding="VALID", stride=2, groups=2), False),
    "k4-d2-VALID-s3-P2": ((1, 1, 16), (1, 1, 4), {"x": 2}, None, ("x",),
                          dict(padding="VALID", stride=3, dilation=2), False),
    # Dilation 2 and padding modes.
    "k3-d2-SAME-P8": ((1, 2, 16), (2, 2, 3), {"x": 8}, None, ("x",),
                      dict(padding="SAME", dilation=2), False),
    "circular-k3-P8": ((1, 2, 16), (2, 2, 3), {"x": 8}, None, ("x",),
                       dict(padding=1, padding_mode="circular"), True),
    "circular-k4-SAME-d2-P4": ((1, 1, 16), (2, 1, 4), {"x": 4}, None, ("x",),
                               dict(padding="SAME", dilation=2, padding_mode="circular"), False),
    "reflect-k5-P4": ((1, 2, 16), (2, 2, 5), {"x": 4}, None, ("x",),
                      dict(padding=2, padding_mode="reflect"), False),
    "replicate-k4-SAME-P8": ((1, 2, 16), (2, 2, 4), {"x": 8}, None, ("x",),
                             dict(padding="SAME", padding_mode="replicate"), False),
    # Halos wider than one shard: several hops; border rows sent on.
    "wide-zeros-k3-d3-P8": ((1, 1, 16), (2, 1, 3), {"x": 8}, None, ("x",),
                            dict(padding=((10, 4),), dilation=3), False),
    "wide-circular-k5-P8": ((1, 1, 16), (2, 1, 5), {"x": 8}, None, ("x",),
                            dict(padding=((9, 3),), padding_mode="circular"), False),
    "wide-replicate-k5-P8": ((1, 1, 16), (2, 1, 5), {"x": 8}, None, ("x",),
                             dict(padding=((5, 7),), padding_mode="replicate"), False),
    "wide-reflect-k7-d2-P4": ((1, 1, 16), (1, 1, 7), {"x": 4}, None, ("x",),
                              dict(padding=((3, 1),), dilation=2, padding_mode="reflect"),
                              False),  # shard 1 reads a reflected row: shard 0 sends it
    # Flip, method, batch over a second mesh axis.
    "flip-direct-batch-2x4": ((4, 2, 8), (2, 2, 3), {"b": 2, "x": 4}, "b", ("x",),
                              dict(padding=1, flip=True, method="direct"), True),
    # 2-D: both dims split over a (2, 4) mesh; one dim split.
    "2d-SAME-2x4": ((1, 2, 8, 16), (3, 2, 3, 3), {"h": 2, "w": 4}, None, ("h", "w"),
                    dict(padding="SAME"), True),
    "2d-circular-k4x3-s2-2x4": ((1, 1, 8, 16), (2, 1, 4, 3), {"h": 2, "w": 4}, None,
                                ("h", "w"),
                                dict(padding=((1, 2), (1, 1)), stride=2,
                                     padding_mode="circular"), False),
    "2d-reflect-W-only-P4": ((1, 1, 6, 16), (2, 1, 3, 3), {"w": 4}, None, (None, "w"),
                             dict(padding=1, padding_mode="reflect"), False),
}


def _arrays(x_shape, w_shape, bias, seed=0):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=x_shape))
  w = jnp.asarray(rng.normal(size=w_shape))
  b = jnp.asarray(rng.normal(size=w_shape[:1])) if bias else None
  return x, w, b


def _mesh(axes: dict, axis_types=None):
  return jax.make_mesh(tuple(axes.values()), tuple(axes), axis_types=axis_types)


@pytest.mark.parametrize("case", list(CASES))
def test_against_conv(case):
  """Values, gradients in x, w (and b), output sharding and forward HLO."""
  x_shape, w_shape, axes, batch_axis, spatial_axes, kwargs, bias = CASES[case]
  x, w, b = _arrays(x_shape, w_shape, bias)
  mesh = _mesh(axes)
  ref = jaxconv.conv(x, w, b, **kwargs)
  cot = jnp.asarray(np.random.default_rng(1).normal(size=ref.shape))

  def sharded(x, w, b):
    return jaxconv.sharded_conv(x, w, b, mesh=mesh, batch_axis=batch_axis,
                                spatial_axes=spatial_axes, **kwargs)

  with jax.sharding.set_mesh(mesh):
    compiled = jax.jit(sharded).lower(x, w, b).compile()
    y = compiled(x, w, b)
    grads = jax.jit(jax.grad(lambda *a: jnp.sum(sharded(*a) * cot),
                             argnums=(0, 1, 2) if bias else (0, 1)))(x, w, b)
  np.testing.assert_allclose(y, ref, **TOL)
  spec = P(batch_axis, None, *spatial_axes)
  assert y.sharding.is_equivalent_to(NamedSharding(mesh, spec), y.ndim), y.sharding
  hlo = compiled.as_text()
  assert "collective-permute" in hlo
  assert "all-gather" not in hlo

  ref_grads = jax.grad(lambda *a: jnp.sum(jaxconv.conv(*a, **kwargs) * cot),
                       argnums=(0, 1, 2) if bias else (0, 1))(x, w, b)
  for got, want in zip(grads, ref_grads):
    np.testing.assert_allclose(got, want, **TOL)


def test_second_order():
  """Second order in x and w, forward and reverse, across a multi-hop halo."""
  x, w, _ = _arrays((1, 1, 8), (1, 1, 5), False)
  mesh = _mesh({"x": 4})  # 2 rows per shard, 3 rows of left padding: two hops
  f = jax.jit(lambda x, w: jaxconv.sharded_conv(
      x, w, mesh=mesh, spatial_axes=("x",), padding=((3, 5),), padding_mode="replicate"))
  with jax.sharding.set_mesh(mesh):
    check_grads(f, (x, w), order=2, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("axis_type", ["Explicit", "Auto"])
def test_current_mesh(axis_type):
  """mesh=None reads the mesh entered with set_mesh, of either axis type."""
  x, w, _ = _arrays((2, 1, 16), (1, 1, 3), False)
  mesh = _mesh({"b": 2, "x": 4}, axis_types=(getattr(jax.sharding.AxisType, axis_type),) * 2)
  with jax.sharding.set_mesh(mesh):
    y = jax.jit(lambda x, w: jaxconv.sharded_conv(
        x, w, batch_axis="b", spatial_axes=("x",), padding=1))(x, w)
  np.testing.assert_allclose(y, jaxconv.conv(x, w, padding=1), **TOL)
  assert y.sharding.is_equivalent_to(NamedSharding(mesh, P("b", None, "x")), 3)


def test_temp_memory_falls_with_shards():
  """Per-device temporary and argument bytes fall about linearly with shards."""
  x, w, _ = _arrays((1, 4, 4096), (4, 4, 5), False)

  def sizes(shards):
    mesh = _mesh({"x": shards})
    f = jax.jit(lambda x, w: jaxconv.sharded_conv(
        x, w, mesh=mesh, spatial_axes=("x",), padding=2, method="lax"))
    with jax.sharding.set_mesh(mesh):
      m = f.lower(x, w).compile().memory_analysis()
    return m.temp_size_in_bytes, m.argument_size_in_bytes

  (t2, a2), (t8, a8) = sizes(2), sizes(8)
  assert a8 < a2 / 3
  assert t8 < t2 / 3, (t2, t8)


X = jnp.zeros((2, 2, 16))
W = jnp.zeros((3, 2, 3))

ERRORS = [
    (dict(mesh=None), ValueError, r"no mesh; got mesh=None outside a mesh context"),
    (dict(mesh="x"), TypeError, r"`mesh` must be a jax.sharding.Mesh.*got str"),
    (dict(spatial_axes="x"), TypeError, r"`spatial_axes` must be a sequence.*got spatial_axes='x'"),
    (dict(spatial_axes=("x", None)), ValueError,
     r"`spatial_axes` must have one entry per spatial dim \(1\); got .* of length 2"),
    (dict(spatial_axes=(0,)), TypeError, r"`spatial_axes\[0\]` must be a mesh axis name"),
    (dict(spatial_axes=("y",)), ValueError,
     r"`spatial_axes\[0\]` must name an axis of the mesh \('b', 'x'\); got spatial_axes\[0\]='y'"),
    (dict(batch_axis="q"), ValueError, r"`batch_axis` must name an axis of the mesh"),
    (dict(batch_axis="x"), ValueError, r"each mesh axis may split one dim only"),
    (dict(x=jnp.zeros((3, 2, 16)), batch_axis="b"), ValueError,
     r"batch must be divisible.*got batch 3 \(x.shape\[0\]\) and axis size 2"),
    (dict(x=jnp.zeros((2, 2, 18))), ValueError,
     r"input size must be divisible by the shard count along spatial dim 0 \(x.shape\[2\]\) "
     r"split over the 4 shards of mesh axis 'x'; got input size 18"),
    (dict(padding="VALID"), ValueError,
     r"output size must be divisible .* got output size 14 \(input 16, padding \(0, 0\), "
     r"stride 1, dilated kernel 3\)"),
    (dict(padding=4, padding_mode="reflect", w=jnp.zeros((3, 2, 9))), ValueError,
     r"padding_mode='reflect' needs the padding smaller than each shard's input rows.*"
     r"got padding \(4, 4\) and 4 rows per shard \(input size 16\)"),
    (dict(strides=2), TypeError, r"unknown keyword argument\(s\) strides; accepted"),
    (dict(method="winograd"), ValueError, r"jaxconv.sharded_conv: unknown `method`"),
    (dict(w=jnp.zeros((3, 1, 3))), ValueError,
     r"jaxconv.sharded_conv: w has 1 input channels per group"),
    (dict(b=jnp.zeros(2)), ValueError, r"jaxconv.sharded_conv: `b` must have shape \(C_out,\)"),
]


@pytest.mark.parametrize("kwargs,exc,match", ERRORS, ids=[m[:40] for *_, m in ERRORS])
def test_errors(kwargs, exc, match):
  args = dict(x=X, w=W, b=None, mesh=_mesh({"b": 2, "x": 4}), spatial_axes=("x",), padding=1)
  args.update(kwargs)
  with pytest.raises(exc, match=match):
    jaxconv.sharded_conv(args.pop("x"), args.pop("w"), args.pop("b"), **args)
