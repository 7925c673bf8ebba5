"""Convolution as a matrix (`toeplitz_matrix`, `circulant_matrix`, `conv_matrix`)
and as a linear operator (`conv_operator`): the seeds' matrices, agreement with
`jax.jacfwd` of the convolution, the transpose, exact singular values for
circular padding, power-iteration spectral norms and their gradients, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
from jax.test_util import check_grads

import jaxconv
from jaxconv import _matrices as mat_mod
from jaxconv import _operator as op_mod
from jaxconv._matrices import circulant_matrix, conv_matrix, toeplitz_matrix
from jaxconv._operator import conv_operator
from jaxconv.testing import reference_conv
from configs import CASES, needs_x64

# Written for float64 (conftest.py turns it on): skipped under JAXCONV_TEST_X64=0.
pytestmark = needs_x64

FORWARD_CASES = [c for c in CASES if c.api == "conv"]


def _rand(shape, seed=0, dtype=np.float64):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape).astype(dtype))


# --- 1-D forms of the seeds ----------------------------------------------------

def test_seed_001_banded_valid_form():
  # Seed 001: y = T x, T rows are the kernel [k0 k1 k2] shifted along a length-5 input.
  k = jnp.array([1, 2, 3])
  expected = np.array([[1, 2, 3, 0, 0],
                       [0, 1, 2, 3, 0],
                       [0, 0, 1, 2, 3]])
  np.testing.assert_array_equal(toeplitz_matrix(k, 5), expected)
  np.testing.assert_array_equal(toeplitz_matrix(k, 5, "valid"), expected)


def test_seed_002_tall_full_convolution_form():
  # Seed 002: y = k * x with columns [k1 ... km] shifted down: (n + m - 1) x n.
  k = jnp.array([1, 2, 3])
  expected = np.array([[1, 0, 0, 0],
                       [2, 1, 0, 0],
                       [3, 2, 1, 0],
                       [0, 3, 2, 1],
                       [0, 0, 3, 2],
                       [0, 0, 0, 3]])
  np.testing.assert_array_equal(toeplitz_matrix(k, 4, "full", flip=True), expected)
  # Toeplitz: constant along diagonals, T[i, j] = k[i - j].
  t = np.asarray(toeplitz_matrix(k, 4, "full", flip=True))
  assert all(t[i, j] == t[i + 1, j + 1] for i in range(5) for j in range(3))


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("mode", ["valid", "full", "same"])
def test_toeplitz_matrix_equals_scipy(mode, flip):
  fn = scipy.signal.convolve if flip else scipy.signal.correlate
  for m, n in [(1, 4), (2, 5), (3, 7), (4, 6), (5, 5), (4, 2)]:  # odd/even, n < m
    if mode == "valid" and n < m:
      continue
    k = np.random.default_rng(m).normal(size=m)
    x = np.random.default_rng(n + 10).normal(size=n)
    t = np.asarray(toeplitz_matrix(k, n, mode, flip=flip))
    np.testing.assert_allclose(t @ x, fn(x, k, mode=mode, method="direct"), rtol=1e-12,
                               atol=1e-12, err_msg=f"m={m} n={n}")


def test_toeplitz_same_odd_kernel_is_conv_same_padding():
  k, x = _rand((3,)), _rand((9,), seed=1)
  y = jaxconv.conv(x[None, None], k[None, None], padding="SAME")[0, 0]
  np.testing.assert_allclose(toeplitz_matrix(k, 9, "same") @ x, y, rtol=1e-12)


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("m,n", [(3, 6), (1, 3), (5, 5), (7, 3)])
def test_circulant_matrix_is_circular_correlation(m, n, flip):
  k, x = _rand((m,)), _rand((n,), seed=2)
  sign = -1 if flip else 1
  expected = np.array([sum(k[t] * x[(i + sign * t) % n] for t in range(m))
                       for i in range(n)])
  np.testing.assert_allclose(circulant_matrix(k, n, flip=flip) @ x, expected, rtol=1e-12)


def test_circulant_matrix_flip_first_column_is_kernel():
  c = np.asarray(circulant_matrix(jnp.array([1, 2, 3]), 5, flip=True))
  np.testing.assert_array_equal(c[:, 0], [1, 2, 3, 0, 0])
  np.testing.assert_array_equal(c[1:, 1:], c[:-1, :-1])  # circulant: shifted rows


def test_circulant_is_conv_matrix_with_circular_padding():
  k = _rand((3,))
  m = conv_matrix(k[None, None], (1, 6), padding=[(0, 2)], padding_mode="circular")
  np.testing.assert_allclose(m, circulant_matrix(k, 6), rtol=1e-15)


# --- 2-D / N-d matrices --------------------------------------------------------

def test_seed_002_doubly_block_toeplitz_2x2_kernel_over_4x4():
  w = jnp.array([[[[1, 2], [3, 4]]]])
  t0 = np.array([[1, 2, 0, 0], [0, 1, 2, 0], [0, 0, 1, 2]])   # kernel row 0
  t1 = np.array([[3, 4, 0, 0], [0, 3, 4, 0], [0, 0, 3, 4]])   # kernel row 1
  z = np.zeros((3, 4), int)
  expected = np.block([[t0, t1, z, z],
                       [z, t0, t1, z],
                       [z, z, t0, t1]])
  m = conv_matrix(w, (1, 4, 4))
  assert m.shape == (9, 16)
  np.testing.assert_array_equal(m, expected)
  # The blocks are the 1-D Toeplitz matrices of the kernel rows.
  np.testing.assert_array_equal(expected[:3, :4], toeplitz_matrix(jnp.array([1, 2]), 4))
  x = jnp.arange(16).reshape(1, 1, 4, 4)
  np.testing.assert_array_equal(m @ x.ravel(), jaxconv.conv(x, w).ravel())


@pytest.mark.parametrize("case", FORWARD_CASES, ids=[c.id for c in FORWARD_CASES])
def test_conv_matrix_equals_jacfwd_of_conv(case):
  in_shape = case.x_shape[1:]

  @jax.jit  # one compilation per case keeps the table fast
  def matrix_and_jacobian(w):
    f = lambda xi: reference_conv(xi[None], w, **case.kwargs)[0]
    jac = jax.jacfwd(f)(jnp.zeros(in_shape, w.dtype))
    m = conv_matrix(w, in_shape, **case.kwargs)
    return m, jac.reshape(m.shape)

  m, jac = matrix_and_jacobian(_rand(case.w_shape, seed=1))
  np.testing.assert_allclose(m, jac, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("flip", [False, True])
def test_conv_matrix_all_padding_modes_strided_dilated(mode, flip):
  kwargs = dict(padding=((2, 1), (1, 2)), stride=(2, 1), dilation=(1, 2), groups=2,
                padding_mode=mode, flip=flip)
  x, w = _rand((2, 4, 6, 5)), _rand((4, 2, 2, 3), seed=3)
  # (N, C, *spatial) is accepted too.
  m, y = jax.jit(lambda x, w: (conv_matrix(w, x.shape, **kwargs),
                               reference_conv(x, w, **kwargs)))(x, w)
  np.testing.assert_allclose(x.reshape(2, -1) @ m.T, y.reshape(2, -1), rtol=1e-12,
                             atol=1e-12)


def test_conv_matrix_lhs_dilation_equals_jacfwd():
  w = _rand((3, 2, 2, 3))
  kwargs = dict(stride=(1, 2), padding=((-1, 2), (2, 1)), lhs_dilation=(2, 3), dilation=(2, 1))
  f = lambda xi: jax.lax.conv_general_dilated(
      xi[None], w, kwargs["stride"], kwargs["padding"], kwargs["lhs_dilation"],
      kwargs["dilation"], precision="highest")[0]
  jac = jax.jacfwd(f)(jnp.zeros((2, 4, 5)))
  m = conv_matrix(w, (2, 4, 5), **kwargs)
  np.testing.assert_allclose(m, jac.reshape(m.shape[0], -1), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("stride,padding,dilation,groups", [
    (1, 0, 1, 1), (2, 1, 1, 1), (3, 2, 2, 2), (2, 0, 1, 4)])
def test_conv_matrix_transpose_is_the_transposed_convolution(stride, padding, dilation,
                                                             groups):
  c_in, c_out, n, k = 4, 8, 9, 3
  w = _rand((c_out, c_in // groups, k, 2), seed=4)
  kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
  m = conv_matrix(w, (c_in, n, n + 1), **kw)
  g = mat_mod.operator_geometry("t", w, (c_in, n, n + 1), lhs_dilation=1,
                                padding_mode="zeros", flip=False, **kw)
  out = g.out_spatial
  # PyTorch's conv_transpose with the conv's own weight is the adjoint; the
  # output_padding restores the input rows the strided conv never read.
  eff = g.effective_kernel_size
  extra = tuple((p - e) % stride for p, e in zip(g.padded_spatial, eff))
  f = lambda y: jaxconv.conv_transpose(y[None], w, stride=stride, padding=padding,
                                       output_padding=extra, dilation=dilation,
                                       groups=groups)[0]
  jac = jax.jit(jax.jacfwd(f))(jnp.zeros((c_out, *out)))
  np.testing.assert_allclose(m.T, jac.reshape(m.shape[1], -1), rtol=1e-13, atol=1e-13)
  # The same matrix, built explicitly: a conv of the stride-dilated output with
  # the flipped, in/out-swapped kernel.
  wt = w.reshape(groups, c_out // groups, c_in // groups, k, 2).swapaxes(1, 2)
  wt = wt.reshape(c_in, c_out // groups, k, 2)
  pads = tuple((e - 1 - lo, e - 1 - hi + r)
               for e, (lo, hi), r in zip(eff, g.padding, extra))
  mt = conv_matrix(wt, (c_out, *out), lhs_dilation=stride, padding=pads,
                   dilation=dilation, groups=groups, flip=True)
  np.testing.assert_allclose(mt, m.T, rtol=1e-13, atol=1e-13)


def test_conv_matrix_3d_multilevel_and_differentiable():
  w = _rand((2, 2, 2, 3, 2))
  x = _rand((1, 2, 3, 4, 3), seed=5)
  kw = dict(padding=1, stride=(1, 2, 1))
  y = reference_conv(x, w, **kw)
  u, v = _rand(x.shape[1:], seed=6), _rand(y.shape[1:], seed=7)

  @jax.jit
  def check(w, x, u, v):
    mx = conv_matrix(w, x.shape[1:], **kw) @ x.ravel()
    # d/dw <v, M u> = d/dw <v, conv(u)>.
    g1 = jax.grad(lambda w: v.ravel() @ conv_matrix(w, x.shape[1:], **kw) @ u.ravel())(w)
    g2 = jax.grad(lambda w: jnp.vdot(v, reference_conv(u[None], w, **kw)[0]))(w)
    return mx, g1, g2

  mx, g1, g2 = check(w, x, u, v)
  np.testing.assert_allclose(mx, y.ravel(), rtol=1e-12)
  np.testing.assert_allclose(g1, g2, rtol=1e-12)


def test_conv_matrix_under_jit():
  w = _rand((2, 1, 3))
  m = jax.jit(lambda w: conv_matrix(w, (1, 5)))(w)
  np.testing.assert_allclose(m, conv_matrix(w, (1, 5)))


# --- linear operator -----------------------------------------------------------

OP_KW = [
    dict(),
    dict(stride=2, padding=1, groups=2),
    dict(padding="SAME", dilation=(2, 1), padding_mode="reflect", flip=True),
    dict(padding=1, padding_mode="circular"),
]


@pytest.mark.parametrize("kw", OP_KW, ids=str)
def test_operator_matvec_rmatvec_as_matrix(kw):
  w = _rand((4, 4 // kw.get("groups", 1), 3, 2))
  op = conv_operator(w, (4, 6, 5), **kw)
  x = _rand((3, 2, 4, 6, 5), seed=1)      # two batch dims
  z = _rand((3, 2, *op.out_shape), seed=2)
  m, y, xt = jax.jit(lambda o, x, z: (o.as_matrix(), o.matvec(x), o.rmatvec(z)))(op, x, z)
  assert m.shape == op.shape
  np.testing.assert_allclose(m, conv_matrix(w, (4, 6, 5), **kw))
  assert y.shape == (3, 2, *op.out_shape)
  np.testing.assert_allclose(y.reshape(6, -1), x.reshape(6, -1) @ m.T, rtol=1e-12, atol=1e-12)
  assert xt.shape == x.shape
  np.testing.assert_allclose(xt.reshape(6, -1), z.reshape(6, -1) @ m, rtol=1e-12, atol=1e-12)
  # Unbatched input, eagerly.
  np.testing.assert_allclose(op.matvec(x[0, 0]), y[0, 0], rtol=1e-12)


def test_operator_is_a_pytree_with_w_as_only_leaf():
  op = conv_operator(_rand((2, 2, 3)), (2, 7), padding=1)
  leaves, treedef = jax.tree_util.tree_flatten(op)
  assert len(leaves) == 1 and leaves[0] is op.w
  doubled = jax.tree_util.tree_map(lambda a: 2 * a, op)
  x = _rand((2, 7), seed=1)
  np.testing.assert_allclose(doubled.matvec(x), 2 * op.matvec(x), rtol=1e-12)
  # vmap over a stack of kernels.
  ws = jnp.stack([op.w, 2 * op.w])
  stacked = jax.tree_util.tree_unflatten(treedef, [ws])
  norms = jax.jit(jax.vmap(lambda o: o.spectral_norm()))(stacked)
  np.testing.assert_allclose(norms[1], 2 * norms[0], rtol=1e-5)


CIRCULAR = [
    ((3, 4), (4, 3, 3), dict(padding=1)),                     # 1-D, C_out > C_in
    ((4, 5, 6), (3, 4, 3, 3), dict(padding=1)),               # 2-D, C_out < C_in
    ((4, 6, 5), (6, 2, 3, 2), dict(padding=[(1, 1), (0, 1)], groups=2)),
    ((2, 6, 6), (2, 2, 3, 3), dict(padding=2, dilation=2, flip=True)),
    ((2, 3, 3), (2, 2, 3, 3), dict(padding=[(2, 2), (1, 1)], dilation=(2, 1))),  # wraps
    ((2, 3, 4, 3), (3, 2, 2, 3, 2), dict(padding=[(1, 0), (1, 1), (0, 1)])),      # 3-D
]


@pytest.mark.parametrize("in_shape,w_shape,kw", CIRCULAR, ids=str)
def test_circular_singular_values_exact(in_shape, w_shape, kw):
  op = conv_operator(_rand(w_shape), in_shape, padding_mode="circular", **kw)
  assert op_mod._is_circulant(op.geometry)
  dense = np.linalg.svd(np.asarray(op.as_matrix()), compute_uv=False)
  s = op.singular_values()
  assert s.shape == dense.shape
  np.testing.assert_allclose(s, dense, rtol=1e-10, atol=1e-10)
  np.testing.assert_allclose(op.spectral_norm(), dense[0], rtol=1e-12)


def test_circular_singular_values_float32_and_jit():
  op = conv_operator(_rand((4, 4, 3, 3), dtype=np.float32), (4, 8, 8), padding=1,
                     padding_mode="circular")
  dense = np.linalg.svd(np.asarray(op.as_matrix(), np.float64), compute_uv=False)
  s = jax.jit(lambda o: o.singular_values())(op)
  assert s.dtype == jnp.float32
  np.testing.assert_allclose(s, dense, rtol=1e-4, atol=1e-4 * dense[0])


def test_singular_values_dense_fallback_for_other_geometries():
  op = conv_operator(_rand((3, 2, 3, 3)), (2, 5, 6), padding=1, stride=(1, 2))
  dense = np.linalg.svd(np.asarray(op.as_matrix()), compute_uv=False)
  np.testing.assert_allclose(op.singular_values(), dense, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kw", [
    dict(padding=1), dict(stride=2, groups=2, padding_mode="reflect", padding=2, dilation=2),
    dict(padding=1, padding_mode="circular", stride=2)], ids=str)
def test_spectral_norm_power_iteration_matches_dense_svd(kw):
  w = _rand((4, 4 // kw.get("groups", 1), 3, 3))
  op = conv_operator(w, (4, 7, 6), **kw)
  dense = np.linalg.svd(np.asarray(op.as_matrix()), compute_uv=False)[0]
  sigma = jax.jit(lambda o: o.spectral_norm())(op)
  assert abs(float(sigma) - dense) <= 1e-4 * dense
  op32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), op)
  assert abs(float(jax.jit(lambda o: o.spectral_norm())(op32)) - dense) <= 1e-4 * dense


# (w_shape, input_shape, kwargs): not circulant, so the iteration runs.
SPECTRAL = [
    ((3, 2, 3, 3), (2, 9, 8), dict(padding=1)),                               # zeros
    ((2, 3, 5), (3, 30), dict(padding=2)),                                    # 1-D
    ((4, 4, 3, 3), (4, 7, 6), dict(padding=1, padding_mode="circular", stride=2)),
    ((4, 4, 3, 2), (4, 8, 6), dict(padding=[(2, 1), (0, 1)], padding_mode="circular")),
    ((4, 2, 3, 3), (4, 7, 6), dict(stride=2, groups=2, padding_mode="reflect", padding=2,
                                   dilation=2)),
    ((3, 3, 3, 3), (3, 8, 7), dict(padding="SAME", padding_mode="replicate", flip=True)),
    ((6, 1, 3, 3), (3, 9, 9), dict(padding=1, groups=3)),                     # 2 per group
    ((4, 1, 3, 3), (4, 8, 8), dict(padding=1, groups=4, stride=(2, 1))),      # depthwise
    ((2, 2, 2, 3, 2), (2, 4, 5, 4), dict(padding=1, dilation=(1, 2, 1))),     # 3-D
    ((3, 2, 3, 3), (2, 5, 6), dict(padding=[(-1, 2), (1, 0)])),               # crops
]


@pytest.mark.parametrize("start", ["circulant", "random"])
@pytest.mark.parametrize("w_shape,in_shape,kw", SPECTRAL, ids=str)
def test_spectral_norm_within_tol_of_dense_svd(w_shape, in_shape, kw, start):
  op = conv_operator(_rand(w_shape, seed=5), in_shape, **kw)
  assert not op_mod._is_circulant(op.geometry)
  if start == "circulant" and not op_mod._circulant_fits(op.geometry):
    pytest.skip("the circulant start is for zero padding at unit stride")
  dense = np.linalg.svd(np.asarray(op.as_matrix()), compute_uv=False)[0]
  compiled = op_mod._top_right_vector._cache_size()
  for tol in (1e-2, 1e-4, 1e-8):
    sigma = float(op.spectral_norm(tol=tol, start=start))
    # ||matvec(v)|| for a unit v: never above the norm, and within tol of it.
    assert dense * (1 - tol) <= sigma <= dense * (1 + 1e-12), (tol, sigma, dense)
  # The loop is compiled once per geometry and start, not per tol.
  assert op_mod._top_right_vector._cache_size() == compiled + 1
  jitted = jax.jit(lambda o: o.spectral_norm(tol=1e-8, start=start))(op)
  np.testing.assert_allclose(jitted, sigma, rtol=1e-12)


def test_spectral_norm_complex_kernel_and_lhs_dilation():
  w = _rand((2, 3, 3, 2)) + 1j * _rand((2, 3, 3, 2), seed=1)
  op = conv_operator(w, (3, 6, 5), padding=1)
  dense = np.linalg.svd(np.asarray(op.as_matrix()), compute_uv=False)[0]
  for start in ("circulant", "random"):
    sigma = op.spectral_norm(tol=1e-8, start=start)
    assert sigma.dtype == jnp.float64
    np.testing.assert_allclose(sigma, dense, rtol=1e-8)
  # Input dilation: 'auto' starts at random; 'circulant' is not defined.
  op = conv_operator(_rand((2, 2, 3, 3)), (2, 4, 5), lhs_dilation=(2, 1), padding=1)
  dense = np.linalg.svd(np.asarray(op.as_matrix()), compute_uv=False)[0]
  np.testing.assert_allclose(op.spectral_norm(tol=1e-8), dense, rtol=1e-8)
  np.testing.assert_allclose(op.spectral_norm(tol=1e-8, start="random"), dense, rtol=1e-8)


def test_circulant_start_is_the_zero_padded_top_vector_on_a_large_grid():
  # 2 channels at 24x24, zero padding: the plane wave at the symbol's peak under
  # a sin window is within O(1/n**2) of the top singular vector, and the
  # symbol's peak bounds the norm from above.
  w = _rand((2, 2, 3, 3), seed=7)
  op = conv_operator(w, (2, 24, 24), padding=1)
  dense = np.linalg.svd(np.asarray(op.as_matrix()), compute_uv=False)[0]
  x0, sigma_inf = op_mod._circulant_start(op.w, op.geometry, 3)
  assert x0.shape == (3, *op.in_shape)
  np.testing.assert_allclose(jnp.linalg.norm(x0.reshape(3, -1), axis=1), 1, rtol=1e-12)
  rq = float(jnp.max(jnp.linalg.norm(op.matvec(x0).reshape(3, -1), axis=1)))
  assert dense * (1 - 2e-3) <= rq <= dense
  assert dense <= float(sigma_inf) <= dense * (1 + 2e-2)
  # sigma_inf is the symbol's peak, as a fine grid finds it.
  f = 2 * np.pi * np.arange(256) / 256
  fine = np.linalg.svd(np.asarray(op_mod._kernel_symbol(op.w, op.geometry, [f, f])),
                       compute_uv=False)[..., 0].max()
  assert fine <= float(sigma_inf) <= fine * (1 + 1e-4)
  # Three steps from it beat three from a random start by far.
  err = lambda start: dense - float(op.spectral_norm(tol=1e-12, max_iters=3, start=start))
  assert err("circulant") <= 2e-4 * dense
  assert err("random") > 1e-2 * dense
  # 'auto' takes it here (the 2 x 2 symbol's SVDs are cheap).
  assert op_mod._search_pays(op.geometry)
  np.testing.assert_allclose(op.spectral_norm(tol=1e-8), dense, rtol=1e-8)


def test_spectral_norm_stopping_rule_and_auto_start():
  op = conv_operator(_rand((3, 2, 3, 3), seed=2), (2, 10, 11), padding=1)
  dense = np.linalg.svd(np.asarray(op.as_matrix()), compute_uv=False)[0]
  # max_iters caps the loop: one step from a random start is far off.
  assert dense - float(op.spectral_norm(max_iters=1, start="random")) > 1e-2 * dense
  # A looser tol stops earlier (fewer steps: a lower value) but within tol.
  values = [float(op.spectral_norm(tol=t, start="random")) for t in (1e-1, 1e-3, 1e-9)]
  assert values[0] <= values[1] <= values[2] <= dense
  assert dense - values[0] <= 1e-1 * dense and dense - values[1] <= 1e-3 * dense
  np.testing.assert_allclose(values[2], dense, rtol=1e-9)
  # 'auto' searches the symbol only where that costs few matvecs.
  assert not op_mod._search_pays(op.geometry)
  big = conv_operator(jnp.ones((64, 64, 3, 3)), (64, 224, 224), padding=1)
  assert op_mod._search_pays(big.geometry)
  wide = conv_operator(jnp.ones((512, 512, 3, 3)), (512, 7, 7), padding=1)
  assert not op_mod._search_pays(wide.geometry)


def test_spectral_norm_loop_runs_a_method_other_than_lax_on_cpu():
  """Inside the loop XLA:CPU's convolution is ~100x slower than outside: the
  loop runs the cheapest other method by auto's estimates (fwd + dx)."""
  from jaxconv import _select
  w = jnp.ones((16, 16, 3, 3), jnp.float32)
  op = conv_operator(w, (16, 32, 32), padding=1)
  block = op_mod.BLOCK
  method = op_mod._loop_method(op.geometry, block, jnp.float32)
  if jax.default_backend() != "cpu":
    assert method == "auto"
    return
  g = op.geometry.replace(in_shape=(block, 16, 32, 32))
  est = {m: _select.estimate(g, pass_="fwd")[m] + _select.estimate(g, pass_="dx")[m]
         for m in _select.estimate(g) if m != "lax"}
  assert method == min(est, key=est.__getitem__)

  def primitives(jaxpr):
    for eqn in jaxpr.eqns:
      yield eqn
      for value in eqn.params.values():
        for sub in value if isinstance(value, (tuple, list)) else (value,):
          sub = getattr(sub, "jaxpr", sub)   # a ClosedJaxpr's Jaxpr
          if hasattr(sub, "eqns"):
            yield from primitives(sub)

  jaxpr = jax.make_jaxpr(lambda o: o.spectral_norm(tol=1e-3))(op).jaxpr
  loops = [e for e in primitives(jaxpr) if e.primitive.name == "while"]
  assert loops
  for loop in loops:
    names = {e.primitive.name for e in primitives(loop.params["body_jaxpr"].jaxpr)}
    assert "conv_general_dilated" not in names, names


@pytest.mark.parametrize("kw", [dict(padding=1), dict(padding=1, padding_mode="circular")],
                         ids=str)
def test_spectral_norm_gradient_matches_finite_differences(kw):
  # A separated top singular value (ratio ~0.84): the derivative is smooth there.
  w = _rand((3, 2, 3, 3), seed=11) + 0.5
  # tol is the relative accuracy of the value; the gradient u v^T is then
  # accurate to about sqrt(tol): 1e-15 asks for float64 working precision.
  f = jax.jit(lambda w: conv_operator(w, (2, 5, 5), **kw).spectral_norm(tol=1e-15))
  grad = jax.grad(f)(w)
  assert np.all(np.isfinite(grad))
  check_grads(f, (w,), order=1, modes=("rev", "fwd"), atol=1e-5, rtol=1e-5)
  # d sigma_max / dW = u v^T, read off the dense matrix's SVD.
  op = conv_operator(w, (2, 5, 5), **kw)
  u, _, vt = np.linalg.svd(np.asarray(op.as_matrix()))
  want = jax.grad(lambda w: u[:, 0] @ conv_operator(w, (2, 5, 5), **kw).as_matrix()
                  @ vt[0])(w)
  np.testing.assert_allclose(grad, want, rtol=1e-7, atol=1e-9)


def test_spectral_norm_of_zero_kernel_is_zero_and_finite_gradient():
  f = lambda w: conv_operator(w, (1, 6), padding=1).spectral_norm()
  value, grad = jax.jit(jax.value_and_grad(f))(jnp.zeros((1, 1, 3)))
  assert float(value) < 1e-100
  assert np.all(np.isfinite(grad))


# --- errors --------------------------------------------------------------------

def test_conv_matrix_over_budget_says_how_large():
  w = jnp.ones((64, 64, 3, 3), jnp.float32)
  with pytest.raises(ValueError, match=r"conv_matrix: the matrix would be 65536 x 65536 = "
                     r"4294967296 elements \(16,384 MiB as float32\), over the budget "
                     r"max_elements=67108864"):
    conv_matrix(w, (64, 32, 32), padding=1)
  with pytest.raises(ValueError, match="would be 4 x 5 = 20 elements.*max_elements=19"):
    conv_matrix(jnp.ones((1, 1, 2)), (1, 5), max_elements=19)
  assert conv_matrix(jnp.ones((1, 1, 2)), (1, 5), max_elements=20).shape == (4, 5)
  with pytest.raises(ValueError, match="as_matrix: the matrix would be 4 x 5"):
    conv_operator(jnp.ones((1, 1, 2)), (1, 5)).as_matrix(max_elements=3)
  with pytest.raises(ValueError, match="toeplitz_matrix: the matrix would be 99999 x 100000"):
    toeplitz_matrix(jnp.ones(2), 100_000)
  with pytest.raises(ValueError, match="circulant_matrix: the matrix would be 9 x 9"):
    circulant_matrix(jnp.ones(2), 9, max_elements=80)
  with pytest.raises(ValueError, match=r"`max_elements` must be positive; got "
                     r"max_elements=0"):
    toeplitz_matrix(jnp.ones(2), 4, max_elements=0)
  with pytest.raises(TypeError, match=r"`max_elements` must be an int; got "
                     r"max_elements=1.5"):
    toeplitz_matrix(jnp.ones(2), 4, max_elements=1.5)


def test_singular_values_dense_fallback_over_budget():
  op = conv_operator(jnp.ones((1, 1, 3, 3)), (1, 8, 8), padding=1)
  with pytest.raises(ValueError, match="singular_values: the matrix would be 64 x 64"):
    op.singular_values(max_elements=100)


@pytest.mark.parametrize("fn", [toeplitz_matrix, circulant_matrix])
def test_invalid_n(fn):
  name = fn.__name__
  with pytest.raises(ValueError, match=rf"{name}: `n` must be positive .*got n=0"):
    fn(jnp.ones(3), 0)
  with pytest.raises(ValueError, match=rf"{name}: `n` must be positive .*got n=-2"):
    fn(jnp.ones(3), -2)
  with pytest.raises(TypeError, match=rf"{name}: `n` must be an int .*got n=4.0"):
    fn(jnp.ones(3), 4.0)
  with pytest.raises(TypeError, match=rf"{name}: `n` must be an int .*got n=True"):
    fn(jnp.ones(3), True)
  with pytest.raises(ValueError, match=rf"{name}: `k` must be a non-empty 1-D kernel; "
                     r"got k.shape=\(2, 2\)"):
    fn(jnp.ones((2, 2)), 4)
  with pytest.raises(ValueError, match=rf"{name}: `k` must be a non-empty 1-D kernel; "
                     r"got k.shape=\(0,\)"):
    fn(jnp.ones((0,)), 4)
  with pytest.raises(TypeError, match=rf"{name}: `flip` must be a bool; got flip=1"):
    fn(jnp.ones(3), 4, flip=1)


def test_toeplitz_matrix_bad_mode_and_short_valid_input():
  with pytest.raises(ValueError, match=r"mode='valid' needs n >= len\(k\); got n=2 and "
                     r"len\(k\)=3"):
    toeplitz_matrix(jnp.ones(3), 2)
  with pytest.raises(ValueError, match=r"unknown `mode`; got mode='VALID', expected one "
                     r"of 'valid', 'full', 'same'"):
    toeplitz_matrix(jnp.ones(3), 4, "VALID")


@pytest.mark.parametrize("fn", [conv_matrix, conv_operator])
def test_conv_matrix_and_operator_bad_input_shape(fn):
  name = fn.__name__
  w = jnp.ones((2, 3, 3, 3))
  with pytest.raises(ValueError, match=rf"{name}: `input_shape` must be \(C_in, \*spatial\) "
                     r"with 2 spatial dims to match w.shape=\(2, 3, 3, 3\).*got input_shape="
                     r"\(3, 8\) of length 2"):
    fn(w, (3, 8))
  with pytest.raises(ValueError, match=r"got input_shape=\(1, 1, 3, 8, 8\) of length 5"):
    fn(w, (1, 1, 3, 8, 8))
  with pytest.raises(TypeError, match=rf"{name}: `input_shape` must be a tuple of ints.*"
                     r"got input_shape=\(3, 8.0, 8\)"):
    fn(w, (3, 8.0, 8))
  with pytest.raises(TypeError, match=rf"{name}: `input_shape` must be a tuple of ints"):
    fn(w, "3x8x8")
  with pytest.raises(ValueError, match=rf"{name}: w has 3 input channels per group but x "
                     r"has 4 channels"):
    fn(w, (4, 8, 8))
  with pytest.raises(ValueError, match=rf"{name}: `w` must be \(C_out, C_in // groups, "
                     r"\*kernel\) with at least one spatial dim; got w.shape=\(2, 3\)"):
    fn(jnp.ones((2, 3)), (3,))
  with pytest.raises(TypeError, match=rf"{name}: `w` must be an array; got str"):
    mat_mod.operator_geometry(f"jaxconv.{name}", "w", (3, 8), stride=1, padding=0,
                              dilation=1, lhs_dilation=1, groups=1,
                              padding_mode="zeros", flip=False)
  with pytest.raises(ValueError, match=rf"{name}: `stride` must be positive"):
    fn(w, (3, 8, 8), stride=0)


def test_operator_shape_errors_and_bad_spectral_norm_arguments():
  op = conv_operator(jnp.ones((2, 3, 3)), (3, 8))
  with pytest.raises(ValueError, match=r"ConvOperator.matvec: `x` must end in shape "
                     r"\(3, 8\); got x.shape=\(3, 7\)"):
    op.matvec(jnp.ones((3, 7)))
  with pytest.raises(ValueError, match=r"ConvOperator.rmatvec: `y` must end in shape "
                     r"\(2, 6\); got y.shape=\(6,\)"):
    op.rmatvec(jnp.ones(6))
  with pytest.raises(ValueError, match=r"spectral_norm: `tol` must be finite and > 0; "
                     r"got tol=0"):
    op.spectral_norm(tol=0)
  with pytest.raises(TypeError, match=r"spectral_norm: `tol` must be a Python or NumPy real "
                     r"number \(it is static\); got tol='1e-3'"):
    op.spectral_norm(tol="1e-3")
  with pytest.raises(ValueError, match=r"spectral_norm: `max_iters` must be positive; "
                     r"got max_iters=0"):
    op.spectral_norm(max_iters=0)
  with pytest.raises(ValueError, match=r"spectral_norm: unknown `start`; got "
                     r"start='fft', expected one of 'auto', 'circulant', 'random'"):
    op.spectral_norm(start="fft")
  with pytest.raises(TypeError, match=r"spectral_norm: `start` must be a string; got "
                     r"start=None"):
    op.spectral_norm(start=None)
  dilated = conv_operator(jnp.ones((2, 3, 3)), (3, 8), lhs_dilation=2)
  with pytest.raises(NotImplementedError, match=r"spectral_norm: start='circulant' does "
                     r"not support input \(lhs\) dilation \(lhs_dilation=\(2,\)\); use "
                     r"start='random' or 'auto'"):
    dilated.spectral_norm(start="circulant")


def test_spectral_norm_with_a_prng_key_start():
  w = _rand((2, 2, 3), seed=4) + 0.5
  op = conv_operator(w, (2, 9), padding=1)
  exact = np.linalg.svd(np.asarray(op.as_matrix()), compute_uv=False)[0]
  sigma = jax.jit(lambda o, k: o.spectral_norm(key=k))(op, jax.random.key(3))
  np.testing.assert_allclose(sigma, exact, rtol=1e-8)


def test_circular_singular_values_complex_kernel_uses_the_full_spectrum():
  w = _rand((2, 3, 3, 2)) + 1j * _rand((2, 3, 3, 2), seed=1)
  op = conv_operator(w, (3, 4, 5), padding=[(1, 1), (0, 1)], padding_mode="circular")
  dense = np.linalg.svd(np.asarray(op.as_matrix()), compute_uv=False)
  np.testing.assert_allclose(op.singular_values(), dense, rtol=1e-10, atol=1e-10)


def test_matvec_runs_the_method_auto_picks():
  """The operator (and so the power iteration) runs `auto`'s method, not always
  lax's convolution (XLA:CPU's is many times slower inside `while_loop`)."""
  import jaxconv
  from jaxconv import _select
  w = jnp.ones((16, 16, 3, 3), jnp.float32)
  op = jaxconv.conv_operator(w, (16, 32, 32), padding=1)
  g = op.geometry.replace(in_shape=(1, 16, 32, 32))
  method = _select.select(g).fwd   # a matvec is a forward pass
  hlo = jax.jit(op.matvec).lower(jnp.ones((16, 32, 32), jnp.float32)).as_text()
  assert ("convolution" in hlo) == (method == "lax"), method
