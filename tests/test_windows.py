"""patchify / unpatchify (ViT tokens) and window_partition / window_reverse
(Swin windows): seed 000's numbers, exact round trips, agreement with unfold,
jit / vmap / grad, and every error path."""

from __future__ import annotations

import itertools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxconv
from jaxconv._windows import patchify, unpatchify, window_partition, window_reverse

SETTINGS = settings(max_examples=20, deadline=None)


@st.composite
def blocked_inputs(draw):
  """(x as numpy, block) with every spatial size a multiple of its block."""
  rank = draw(st.integers(1, 3))
  block = tuple(draw(st.integers(1, 3)) for _ in range(rank))
  grid = tuple(draw(st.integers(1, 3)) for _ in range(rank))
  n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
  shape = (n, c, *(g * b for g, b in zip(grid, block)))
  x = np.arange(math.prod(shape), dtype=np.float32).reshape(shape)
  as_int = draw(st.booleans()) and len(set(block)) == 1
  return x, (block[0] if as_int else block)


def _tokens_by_loops(x: np.ndarray, p: tuple[int, ...]) -> np.ndarray:
  """Independent oracle: walk the patch grid row-major, flatten each patch C-major."""
  n, c, *spatial = x.shape
  grid = [s // q for s, q in zip(spatial, p)]
  out = []
  for b in range(n):
    toks = []
    for g in itertools.product(*(range(k) for k in grid)):
      sl = tuple(slice(gi * q, (gi + 1) * q) for gi, q in zip(g, p))
      toks.append(x[(b, slice(None), *sl)].reshape(-1))   # (C, *p) flattened C-major
    out.append(np.stack(toks))
  return np.stack(out)


# --- seed 000 ------------------------------------------------------------------

def test_seed_vit_tokens():
  """Seed 000: unfold(arange(1, 17), 2x2, stride 2) transposed, one patch a row."""
  x = jnp.arange(1.0, 17.0).reshape(1, 1, 4, 4)
  tokens = patchify(x, 2)
  np.testing.assert_array_equal(
      tokens[0], [[1, 2, 5, 6], [3, 4, 7, 8], [9, 10, 13, 14], [11, 12, 15, 16]])
  np.testing.assert_array_equal(unpatchify(tokens, 2, (4, 4)), x)
  # The seed's unfold output, patches as columns.
  np.testing.assert_array_equal(
      tokens[0].T, [[1, 3, 9, 11], [2, 4, 10, 12], [5, 7, 13, 15], [6, 8, 14, 16]])


def test_seed_torch_unfold_recipe():
  """Seed 000's `x.unfold(2, p, p).unfold(3, p, p).view(B, C, -1, p*p)` is the
  same data: per channel, patch j of token j, row-major offsets."""
  x = np.random.default_rng(0).normal(size=(2, 3, 8, 12)).astype(np.float32)
  p = 4
  tokens = np.asarray(patchify(x, p))                      # (B, L, C*p*p)
  b, c = x.shape[:2]
  recipe = tokens.reshape(b, -1, c, p * p).transpose(0, 2, 1, 3)  # (B, C, L, p*p)
  for i, j in itertools.product(range(2), range(3)):
    np.testing.assert_array_equal(recipe[:, :, i * 3 + j],
                                  x[:, :, i * p:(i + 1) * p, j * p:(j + 1) * p]
                                  .reshape(b, c, p * p))


def test_token_layout_channel_major():
  x = np.arange(2 * 2 * 4 * 6, dtype=np.float32).reshape(2, 2, 4, 6)
  np.testing.assert_array_equal(patchify(x, (2, 3)), _tokens_by_loops(x, (2, 3)))
  # feature c * prod(p) + i * p[1] + j holds channel c at offset (i, j)
  t = patchify(x, (2, 3))
  assert t[0, 0, 1 * 6 + 1 * 3 + 2] == x[0, 1, 1, 2]


# --- properties ----------------------------------------------------------------

@SETTINGS
@given(blocked_inputs())
def test_patchify_round_trip_and_oracle(case):
  x, p = case
  spatial = x.shape[2:]
  pt = (p,) * len(spatial) if isinstance(p, int) else p

  @jax.jit
  def run(v):
    tokens = patchify(v, p)
    back = unpatchify(tokens, p, spatial)
    return tokens, back, patchify(back, p)

  tokens, back, again = map(np.asarray, run(x))
  grid = [s // q for s, q in zip(spatial, pt)]
  assert tokens.shape == (x.shape[0], math.prod(grid), x.shape[1] * math.prod(pt))
  np.testing.assert_array_equal(tokens, _tokens_by_loops(x, pt))
  np.testing.assert_array_equal(back, x)
  np.testing.assert_array_equal(again, tokens)


@settings(max_examples=8, deadline=None)
@given(blocked_inputs())
def test_patchify_is_strided_unfold(case):
  x, p = case
  spatial = x.shape[2:]

  @jax.jit
  def run(v):
    cols = jaxconv.unfold(v, p, stride=p)
    tokens = jnp.swapaxes(cols, 1, 2)
    return (patchify(v, p), tokens, unpatchify(tokens, p, spatial),
            jaxconv.fold(cols, spatial, p, stride=p))

  mine, ref, back, ref_back = map(np.asarray, run(x))
  np.testing.assert_array_equal(mine, ref)
  np.testing.assert_array_equal(back, ref_back)


@SETTINGS
@given(blocked_inputs())
def test_window_round_trip_and_content(case):
  x, win = case
  spatial = x.shape[2:]
  wt = (win,) * len(spatial) if isinstance(win, int) else win
  grid = [s // q for s, q in zip(spatial, wt)]

  @jax.jit
  def run(v):
    windows = window_partition(v, win)
    back = window_reverse(windows, win, spatial)
    return windows, back, window_partition(back, win), patchify(v, win)

  windows, back, again, tokens = map(np.asarray, run(x))
  nw = math.prod(grid)
  assert windows.shape == (x.shape[0] * nw, x.shape[1], *wt)
  for b in range(x.shape[0]):
    for j, g in enumerate(itertools.product(*(range(k) for k in grid))):
      sl = tuple(slice(gi * q, (gi + 1) * q) for gi, q in zip(g, wt))
      np.testing.assert_array_equal(windows[b * nw + j], x[(b, slice(None), *sl)])
  np.testing.assert_array_equal(back, x)
  np.testing.assert_array_equal(again, windows)
  # A token is a flattened window.
  np.testing.assert_array_equal(windows.reshape(x.shape[0], nw, -1), tokens)


def test_int_spatial_shape_for_1d():
  x = jnp.arange(12.0).reshape(1, 2, 6)
  np.testing.assert_array_equal(unpatchify(patchify(x, 3), 3, 6), x)
  np.testing.assert_array_equal(window_reverse(window_partition(x, 2), 2, 6), x)


# --- transformations -----------------------------------------------------------

def test_jit_vmap_grad():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(2, 3, 4, 6)), jnp.float32)
  xs = jnp.asarray(rng.normal(size=(5, 2, 3, 4, 6)), jnp.float32)
  w = window_partition(x, 2)
  t = jnp.asarray(rng.normal(size=(2, 6, 12)), jnp.float32)

  @jax.jit
  def run(x, xs, w, t):
    out = {
        "patch": patchify(x, (2, 3)),
        "reverse": window_reverse(w, 2, (4, 6)),
        "vmap_patch": jax.vmap(lambda v: patchify(v, 2))(xs),
        "vmap_win": jax.vmap(lambda v: window_partition(v, 2))(xs),
    }
    # A permutation: its transpose (the VJP) is its inverse.
    _, vjp = jax.vjp(lambda v: patchify(v, 2), x)
    out["vjp"] = vjp(t)[0]
    out["grad"] = jax.grad(lambda v: (window_partition(v, 2) * w).sum())(x)
    out["jvp"] = jax.jvp(lambda v: window_reverse(v, 2, (4, 6)), (w,), (w,))[1]
    return out

  out = jax.tree.map(np.asarray, run(x, xs, w, t))
  np.testing.assert_array_equal(out["patch"], patchify(x, (2, 3)))
  np.testing.assert_array_equal(out["reverse"], x)
  for i in range(5):
    np.testing.assert_array_equal(out["vmap_patch"][i], patchify(xs[i], 2))
    np.testing.assert_array_equal(out["vmap_win"][i], window_partition(xs[i], 2))
  np.testing.assert_array_equal(out["vjp"], unpatchify(t, 2, (4, 6)))
  np.testing.assert_array_equal(out["grad"], x)
  np.testing.assert_array_equal(out["jvp"], x)


def test_no_retrace():
  @jax.jit
  @chex.assert_max_traces(n=1)
  def f(v):
    return unpatchify(patchify(v, 2), 2, (4, 4))

  for seed in range(3):
    x = np.random.default_rng(seed).normal(size=(1, 2, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(f(x), x)


def test_bfloat16_and_int_preserved():
  for dtype in (jnp.bfloat16, jnp.int32):
    x = jnp.arange(32).reshape(1, 2, 4, 4).astype(dtype)
    assert patchify(x, 2).dtype == dtype
    assert window_partition(x, 2).dtype == dtype


# --- errors ------------------------------------------------------------------

def test_patchify_errors():
  x = jnp.zeros((1, 2, 4, 6))
  with pytest.raises(TypeError, match=r"jaxconv\.patchify: `x` must be an array .*got list"):
    patchify([[1.0]], 2)
  with pytest.raises(ValueError, match=r"jaxconv\.patchify: `x` must be \(N, C, \*spatial\) "
                     r"with at least one spatial dim; got x\.shape=\(4, 6\)"):
    patchify(jnp.zeros((4, 6)), 2)
  with pytest.raises(ValueError, match=r"jaxconv\.patchify: each spatial size must be a "
                     r"multiple of `patch_size`; got spatial shape \(4, 6\) and "
                     r"patch_size=\(4, 4\) \(dims \[1\] do not divide\)"):
    patchify(x, 4)
  with pytest.raises(ValueError, match=r"jaxconv\.patchify: `patch_size` must have one entry "
                     r"per spatial dimension \(2\)"):
    patchify(x, (2, 2, 2))
  with pytest.raises(ValueError, match=r"jaxconv\.patchify: `patch_size` must be positive"):
    patchify(x, 0)
  with pytest.raises(TypeError, match=r"jaxconv\.patchify: `patch_size` must be an int or a "
                     r"sequence of ints; got patch_size=2\.0"):
    patchify(x, 2.0)


def test_unpatchify_errors():
  t = jnp.zeros((1, 6, 8))                 # from (1, 2, 4, 6) with patch 2
  assert unpatchify(t, 2, (4, 6)).shape == (1, 2, 4, 6)
  with pytest.raises(TypeError, match=r"jaxconv\.unpatchify: `tokens` must be an array"):
    unpatchify(np.zeros((1, 6, 8)).tolist(), 2, (4, 6))
  with pytest.raises(ValueError, match=r"jaxconv\.unpatchify: `tokens` must be "
                     r"\(N, L, C \* prod\(patch_size\)\); got tokens\.shape=\(6, 8\)"):
    unpatchify(jnp.zeros((6, 8)), 2, (4, 6))
  with pytest.raises(ValueError, match=r"got tokens\.shape=\(1, 6, 8, 1\)"):
    unpatchify(jnp.zeros((1, 6, 8, 1)), 2, (4, 6))
  with pytest.raises(ValueError, match=r"jaxconv\.unpatchify: `tokens` has L=6 tokens but "
                     r"spatial_shape=\(4, 8\) with patch_size=\(2, 2\) makes 8 patches"):
    unpatchify(t, 2, (4, 8))
  with pytest.raises(ValueError, match=r"jaxconv\.unpatchify: the token width must be "
                     r"C \* prod\(patch_size\); 8 is not a multiple of prod\(patch_size\)=3"):
    unpatchify(jnp.zeros((1, 4, 8)), (1, 3), (2, 6))
  with pytest.raises(ValueError, match=r"jaxconv\.unpatchify: each spatial size must be a "
                     r"multiple of `patch_size`"):
    unpatchify(t, 2, (5, 6))
  with pytest.raises(TypeError, match=r"jaxconv\.unpatchify: `spatial_shape` must be an int "
                     r"or a sequence of ints; got spatial_shape='4x6'"):
    unpatchify(t, 2, "4x6")
  with pytest.raises(TypeError, match=r"jaxconv\.unpatchify: `spatial_shape` must be an int "
                     r"or a sequence of ints; got spatial_shape=4\.0"):
    unpatchify(t, 2, 4.0)
  with pytest.raises(TypeError, match=r"jaxconv\.unpatchify: `spatial_shape` must be an int "
                     r"or a sequence of ints; got spatial_shape=\(4, 6\.0\)"):
    unpatchify(t, 2, (4, 6.0))
  with pytest.raises(ValueError, match=r"jaxconv\.unpatchify: `spatial_shape` must name at "
                     r"least one spatial dim; got spatial_shape=\(\)"):
    unpatchify(t, 2, ())
  with pytest.raises(ValueError, match=r"jaxconv\.unpatchify: `spatial_shape` must be "
                     r"positive; got spatial_shape=\(0, 6\)"):
    unpatchify(t, 2, (0, 6))
  with pytest.raises(ValueError, match=r"jaxconv\.unpatchify: `patch_size` must have one entry"):
    unpatchify(t, (2, 2, 2), (4, 6))


def test_window_partition_errors():
  with pytest.raises(TypeError, match=r"jaxconv\.window_partition: `x` must be an array"):
    window_partition(None, 2)
  with pytest.raises(ValueError, match=r"jaxconv\.window_partition: `x` must be \(N, C, "
                     r"\*spatial\)"):
    window_partition(jnp.zeros((2, 4)), 2)
  with pytest.raises(ValueError, match=r"jaxconv\.window_partition: each spatial size must be "
                     r"a multiple of `window`; got spatial shape \(7, 7\) and window=\(7, 2\) "
                     r"\(dims \[1\] do not divide\)\. Pad the input first"):
    window_partition(jnp.zeros((1, 1, 7, 7)), (7, 2))
  with pytest.raises(ValueError, match=r"jaxconv\.window_partition: `window` must be positive"):
    window_partition(jnp.zeros((1, 1, 4, 4)), (2, -2))


def test_window_reverse_errors():
  w = jnp.zeros((8, 3, 2, 2))              # from (2, 3, 4, 4) with window 2
  assert window_reverse(w, 2, (4, 4)).shape == (2, 3, 4, 4)
  with pytest.raises(TypeError, match=r"jaxconv\.window_reverse: `windows` must be an array"):
    window_reverse("w", 2, (4, 4))
  with pytest.raises(ValueError, match=r"jaxconv\.window_reverse: `windows` must be "
                     r"\(N \* num_windows, C, \*window\) with at least one spatial dim; "
                     r"got windows\.shape=\(8, 3\)"):
    window_reverse(jnp.zeros((8, 3)), 2, (4, 4))
  with pytest.raises(ValueError, match=r"jaxconv\.window_reverse: `windows` must be .* with 3 "
                     r"spatial dims to match spatial_shape=\(4, 4, 4\); got "
                     r"windows\.shape=\(8, 3, 2, 2\)"):
    window_reverse(w, 2, (4, 4, 4))
  with pytest.raises(ValueError, match=r"jaxconv\.window_reverse: the windows' spatial shape "
                     r"\(2, 2\) does not match window=\(2, 1\)"):
    window_reverse(w, (2, 1), (4, 4))
  with pytest.raises(ValueError, match=r"jaxconv\.window_reverse: each spatial size must be a "
                     r"multiple of `window`"):
    window_reverse(w, 2, (4, 5))
  with pytest.raises(ValueError, match=r"jaxconv\.window_reverse: `windows` has 8 windows, not "
                     r"a multiple of the 6 windows \(2, 3\) per image"):
    window_reverse(w, 2, (4, 6))
  with pytest.raises(TypeError, match=r"jaxconv\.window_reverse: `spatial_shape` must be an "
                     r"int or a sequence of ints"):
    window_reverse(w, 2, None)
  with pytest.raises(TypeError, match=r"jaxconv\.window_reverse: `window` must be an int or a "
                     r"sequence of ints"):
    window_reverse(w, "2", (4, 4))
