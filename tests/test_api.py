"""The public surface is pinned: what `jaxconv` exports, and nothing private."""

import inspect

import jax
import jaxconv


def test_public_surface():
  # Exact: adding or removing a public name fails here until this list is updated.
  assert sorted(jaxconv.__all__) == [
      "ConvOperator", "circulant_matrix", "clear_autotune_cache", "conv",
      "conv_general_dilated", "conv_matrix", "conv_operator", "conv_transpose", "convolve",
      "correlate", "fftconvolve", "fold", "method_names", "next_fast_len", "oaconvolve",
      "output_shape", "patchify", "select_method", "sharded_conv", "toeplitz_matrix", "unfold",
      "unpatchify", "window_partition", "window_reverse"]
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
