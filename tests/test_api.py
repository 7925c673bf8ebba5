"""The public surface is pinned: what `jaxconv` exports, and nothing private."""

import inspect

import jax
import jaxconv


def test_public_surface():
  assert set(jaxconv.__all__) >= {
      "conv", "conv_transpose", "conv_general_dilated", "unfold", "fold", "output_shape",
      "patchify", "unpatchify", "window_partition", "window_reverse", "method_names",
      "conv_matrix", "conv_operator", "toeplitz_matrix", "circulant_matrix", "convolve",
      "correlate", "fftconvolve", "oaconvolve", "next_fast_len", "select_method",
      "clear_autotune_cache", "sharded_conv"}
  for name in jaxconv.__all__:
    assert not name.startswith("_")
    assert getattr(jaxconv, name).__doc__, name
  for sub in ("kernels", "nn", "testing"):
    assert inspect.ismodule(getattr(jaxconv, sub))


def test_conv_general_dilated_has_lax_signature():
  ours = inspect.signature(jaxconv.conv_general_dilated).parameters
  lax_params = inspect.signature(jax.lax.conv_general_dilated).parameters
  assert list(ours)[:len(lax_params)] == list(lax_params)
  assert ours["method"].kind is inspect.Parameter.KEYWORD_ONLY


def test_method_names_lists_the_registry():
  assert {"lax", "direct", "im2col"} <= set(jaxconv.method_names())
