"""unfold/fold: PyTorch ordering (vs lax's patches), adjointness, normalisation, N-d."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxconv

GEOMETRIES = [  # (x shape, kernel, dilation, padding, stride)
    ((2, 3, 9), 3, 1, 0, 1),
    ((1, 2, 10), 4, 2, 1, 3),
    ((2, 3, 6, 7), (2, 3), 1, 0, 1),
    ((1, 2, 8, 9), 3, (2, 1), (1, 2), (2, 3)),
    ((1, 1, 7, 6), 2, 1, "SAME", 2),
    ((1, 2, 4, 5, 6), (2, 2, 3), 1, 1, (1, 2, 2)),
]
IDS = [f"{len(g[0]) - 2}d-k{g[1]}-d{g[2]}-p{g[3]}-s{g[4]}" for g in GEOMETRIES]


def _random(shape, seed=0, dtype=jnp.float64):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


@pytest.mark.parametrize("shape,k,d,p,s", GEOMETRIES, ids=IDS)
def test_unfold_equals_lax_patches_reordered(shape, k, d, p, s):
  """lax.conv_general_dilated_patches has the same (C, *kernel) row order."""
  x = _random(shape)
  rank = len(shape) - 2
  cols = jaxconv.unfold(x, k, dilation=d, padding=p, stride=s)
  kk = (k,) * rank if isinstance(k, int) else k
  dd = (d,) * rank if isinstance(d, int) else d
  ss = (s,) * rank if isinstance(s, int) else s
  if isinstance(p, str):
    pads = p
  else:
    pp = (p,) * rank if isinstance(p, int) else p
    pads = [(q, q) for q in pp]
  ref = lax.conv_general_dilated_patches(x, kk, ss, pads, rhs_dilation=dd,
                                         precision=lax.Precision.HIGHEST)
  np.testing.assert_allclose(cols, ref.reshape(cols.shape), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape,k,d,p,s", GEOMETRIES, ids=IDS)
def test_fold_is_the_adjoint_of_unfold(shape, k, d, p, s):
  x = _random(shape, 1)
  cols = jaxconv.unfold(x, k, dilation=d, padding=p, stride=s)
  y = _random(cols.shape, 2)
  folded = jaxconv.fold(y, shape[2:], k, dilation=d, padding=p, stride=s)
  assert folded.shape == shape
  np.testing.assert_allclose(jnp.vdot(cols, y), jnp.vdot(x, folded), rtol=1e-12)


@pytest.mark.parametrize("shape,k,d,p,s", GEOMETRIES, ids=IDS)
def test_fold_normalize_inverts_unfold_where_covered(shape, k, d, p, s):
  x = _random(shape, 3)
  kw = dict(dilation=d, padding=p, stride=s)
  back = jaxconv.fold(jaxconv.unfold(x, k, **kw), shape[2:], k, **kw, normalize=True)
  covered = jaxconv.fold(jaxconv.unfold(jnp.ones(shape), k, **kw), shape[2:], k, **kw) > 0
  np.testing.assert_allclose(jnp.where(covered, back, 0), jnp.where(covered, x, 0),
                             rtol=1e-12, atol=1e-12)
  np.testing.assert_array_equal(jnp.where(covered, 0, back), 0)


def test_unfold_fold_jit_vmap_grad():
  x = _random((3, 2, 6, 6))
  f = jax.jit(lambda x: jaxconv.unfold(x, 3, stride=2, padding=1))
  np.testing.assert_allclose(f(x), jaxconv.unfold(x, 3, stride=2, padding=1))
  v = jax.vmap(lambda xi: jaxconv.unfold(xi[None], 3)[0])(x)
  np.testing.assert_allclose(v, jaxconv.unfold(x, 3))
  # unfold is linear: its VJP is fold.
  cols = _random((3, 2 * 9, 16), 4)
  _, vjp = jax.vjp(lambda x: jaxconv.unfold(x, 3), x)
  np.testing.assert_allclose(vjp(cols)[0], jaxconv.fold(cols, (6, 6), 3), rtol=1e-12)
  g = jax.grad(lambda c: jnp.sum(jaxconv.fold(c, (6, 6), 3, normalize=True) ** 2))(cols)
  assert g.shape == cols.shape


def test_fold_has_no_scatter():
  """fold is built from pads and adds (the transpose of slices), no scatter."""
  cols = jnp.ones((1, 9, 16))
  hlo = jax.jit(lambda c: jaxconv.fold(c, (6, 6), 3)).lower(cols).as_text()
  assert "scatter" not in hlo and "pad" in hlo


def test_unfold_shapes_and_length():
  x = jnp.zeros((2, 3, 32, 32))
  cols = jaxconv.unfold(x, 3, padding=1)
  assert cols.shape == (2, 27, 32 * 32)
  assert jaxconv.unfold(jnp.zeros((1, 2, 9)), 4, stride=2).shape == (1, 8, 3)
  assert math.prod(jaxconv.output_shape((32, 32), 3, padding=1)) == 1024


@pytest.mark.parametrize("call,exc,match", [
    (lambda: jaxconv.unfold([[1.0]], 2), TypeError, r"unfold: `x` must be an array"),
    (lambda: jaxconv.unfold(jnp.zeros((4, 4)), 2), ValueError, r"at least one spatial dim"),
    (lambda: jaxconv.unfold(jnp.zeros((1, 1, 4, 4)), (2, 2, 2)), ValueError,
     r"`kernel_size` must have one entry per spatial dimension \(2\)"),
    (lambda: jaxconv.unfold(jnp.zeros((1, 1, 4, 4)), 0), ValueError,
     r"`kernel_size` must be positive"),
    (lambda: jaxconv.unfold(jnp.zeros((1, 1, 4, 4)), 2.5), TypeError,
     r"`kernel_size` must be an int"),
    (lambda: jaxconv.unfold(jnp.zeros((1, 1, 4, 4)), 5), ValueError,
     r"kernel is larger than the padded input"),
    (lambda: jaxconv.unfold(jnp.zeros((1, 1, 4, 4)), 2, padding=-1), ValueError,
     r"`padding` must be non-negative"),
    (lambda: jaxconv.fold([1.0], (4, 4), 2), TypeError, r"fold: `cols` must be an array"),
    (lambda: jaxconv.fold(jnp.zeros((1, 4)), (4, 4), 2), ValueError,
     r"`cols` must be \(N, C \* prod\(kernel_size\), L\)"),
    (lambda: jaxconv.fold(jnp.zeros((1, 5, 9)), (4, 4), 2), ValueError,
     r"5 rows, not a multiple of prod\(kernel_size\)=4"),
    (lambda: jaxconv.fold(jnp.zeros((1, 4, 8)), (4, 4), 2), ValueError,
     r"L=8 patches but output_size=\(4, 4\).*gives 3x3=9"),
    (lambda: jaxconv.fold(jnp.zeros((1, 4, 9)), "4x4", 2), TypeError,
     r"`output_size` must be an int or a sequence"),
])
def test_patch_errors(call, exc, match):
  with pytest.raises(exc, match=match):
    call()
