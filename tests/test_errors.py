"""Every bad input gets a clear error from jaxconv, before tracing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv
from jaxconv._methods import METHODS

X = jnp.zeros((2, 4, 8, 8))
W = jnp.zeros((6, 4, 3, 3))

CONV_ERRORS = [
    (dict(x=[[1.0]]), TypeError, r"jaxconv.conv: `x` must be an array .*got list"),
    (dict(x="x"), TypeError, r"jaxconv.conv: `x` must be an array .*got str"),
    (dict(x=jax.ShapeDtypeStruct((2, 4, 8, 8), jnp.float64)), TypeError,
     r"jaxconv.conv: `x` must be an array, not a jax.ShapeDtypeStruct \(for shapes only, "
     r"use jax.eval_shape"),
    (dict(b=jnp.zeros(6, jnp.complex128)), TypeError,
     r"a complex `b` needs complex inputs \(its imaginary part would be dropped\); got "
     r"b.dtype=complex128 and x.dtype=float64"),
    (dict(w=3.0), TypeError, r"`w` must be an array"),
    (dict(x=jnp.zeros((2, 4))), ValueError, r"`x` must be \(N, C_in, \*spatial\)"),
    (dict(w=jnp.zeros((6, 4, 3))), ValueError,
     r"`w` must have the same rank as `x`.*x.shape=\(2, 4, 8, 8\) \(rank 4\)"),
    (dict(w=jnp.zeros((6, 3, 3, 3))), ValueError,
     r"w has 3 input channels per group but x has 4 channels and groups=1"),
    (dict(w=jnp.zeros((6, 4, 3, 3), jnp.float32)), TypeError,
     r"`x` and `w` must have the same dtype; got x.dtype=float64 and w.dtype=float32"),
    (dict(groups=3), ValueError, r"`groups` must divide the input channels; 3 does not divide C_in=4"),
    (dict(groups=4, w=jnp.zeros((6, 1, 3, 3))), ValueError,
     r"`groups` must divide the output channels; 4 does not divide C_out=6"),
    (dict(groups=0), ValueError, r"`groups` must be positive; got groups=0"),
    (dict(groups=2.0), TypeError, r"`groups` must be an int"),
    (dict(stride=(0, 1)), ValueError, r"`stride` must be positive; got stride=\(0, 1\)"),
    (dict(stride=1.5), TypeError, r"`stride` must be an int or a sequence of ints; got stride=1.5"),
    (dict(stride=(1, 2, 3)), ValueError, r"`stride` must have one entry per spatial dimension \(2\)"),
    (dict(dilation=-1), ValueError, r"`dilation` must be positive; got dilation=-1"),
    (dict(dilation=(1, "2")), TypeError, r"`dilation` must be an int or a sequence of ints"),
    (dict(padding="HALF"), ValueError,
     r"unknown `padding` string; got padding='HALF', expected one of 'VALID', 'SAME'"),
    (dict(padding=(1, 1, 1)), ValueError, r"`padding` must have one entry per spatial dimension \(2\)"),
    (dict(padding=((1, 2, 3), 1)), TypeError, r"each entry of `padding` must be an int or a \(lo, hi\) pair"),
    (dict(padding=1.0), TypeError, r"`padding` must be an int, a sequence"),
    (dict(padding_mode="mirror"), ValueError,
     r"unknown `padding_mode`; got padding_mode='mirror', expected one of 'zeros', 'reflect'"),
    (dict(padding_mode="reflect", padding=8), ValueError,
     r"padding_mode='reflect' needs padding smaller than the input size"),
    (dict(padding_mode="circular", padding=9), ValueError,
     r"padding_mode='circular' needs padding at most the input size"),
    (dict(padding_mode="replicate", padding=-1), ValueError, r"needs non-negative padding"),
    (dict(w=jnp.zeros((6, 4, 9, 9))), ValueError,
     r"kernel is larger than the padded input, so the output is empty"),
    (dict(padding=-3), ValueError, r"kernel is larger than the padded input"),
    (dict(flip="yes"), TypeError, r"`flip` must be a bool"),
    (dict(precision="fast"), ValueError, r"jaxconv.conv: `precision` must be None.*got precision='fast'"),
    (dict(x=jnp.zeros((2, 4, 0, 8))), ValueError, r"input spatial sizes must be positive"),
    (dict(method="winograd"), ValueError,
     r"unknown `method`; got method='winograd', expected one of 'auto', 'lax'"),
    (dict(b=jnp.zeros(5)), ValueError, r"`b` must have shape \(C_out,\) = \(6,\); got b.shape=\(5,\)"),
    (dict(b=[0.0] * 6), TypeError, r"`b` must be an array"),
]


@pytest.mark.parametrize("kwargs,exc,match", CONV_ERRORS, ids=[m for *_, m in CONV_ERRORS])
def test_conv_errors(kwargs, exc, match):
  kwargs = dict(kwargs)
  x, w = kwargs.pop("x", X), kwargs.pop("w", W)
  with pytest.raises(exc, match=match):
    jaxconv.conv(x, w, **kwargs)


def test_errors_are_raised_before_tracing():
  """Validation reads static shapes only: the same error comes out under jit."""
  f = jax.jit(lambda x, w: jaxconv.conv(x, w, groups=3))
  with pytest.raises(ValueError, match=r"3 does not divide C_in=4"):
    f(X, W)


TRANSPOSE_ERRORS = [
    (dict(w=jnp.zeros((3, 2, 3, 3))), ValueError, r"w.shape\[0\] must equal the input channels C_in=4"),
    (dict(w=jnp.zeros((4, 2, 3))), ValueError, r"of the same rank"),
    (dict(groups=3), ValueError, r"`groups` must divide the input channels; 3 does not divide C_in=4"),
    (dict(groups=0), ValueError, r"`groups` must be positive; got groups=0"),
    (dict(groups=2.0), TypeError, r"conv_transpose: `groups` must be an int; got groups=2.0"),
    (dict(stride=2, output_padding=2), ValueError,
     r"`output_padding` must be smaller than either the stride or the dilation"),
    (dict(output_padding=-1), ValueError, r"`output_padding` must be >= 0"),
    (dict(padding="SAME"), TypeError, r"conv_transpose: `padding` must be an int"),
    (dict(method="fast"), ValueError, r"conv_transpose: unknown `method`"),
    (dict(padding=5), ValueError, r"kernel is larger than the padded input"),
    (dict(b=jnp.zeros(3)), ValueError, r"`b` must have shape \(C_out,\) = \(2,\)"),
]


@pytest.mark.parametrize("kwargs,exc,match", TRANSPOSE_ERRORS, ids=[m for *_, m in TRANSPOSE_ERRORS])
def test_conv_transpose_errors(kwargs, exc, match):
  kwargs = dict(kwargs)
  w = kwargs.pop("w", jnp.zeros((4, 2, 3, 3)))
  with pytest.raises(exc, match=match):
    jaxconv.conv_transpose(X, w, **kwargs)


GENERAL_ERRORS = [
    (dict(lhs=np.zeros(3).tolist()), TypeError, r"conv_general_dilated: `lhs` must be an array"),
    (dict(rhs=jnp.zeros((6, 4, 3))), ValueError, r"`lhs` and `rhs` must have the same rank"),
    (dict(feature_group_count=2, batch_group_count=2), ValueError,
     r"at most one of `feature_group_count` and `batch_group_count`"),
    (dict(batch_group_count=3, rhs=jnp.zeros((6, 4, 3, 3))), ValueError,
     r"`batch_group_count` must divide the batch size; 3 does not divide 2"),
    (dict(batch_group_count=2, rhs=jnp.zeros((5, 4, 3, 3))), ValueError,
     r"`batch_group_count` must divide the output features; 2 does not divide 5"),
    (dict(feature_group_count=0), ValueError, r"`feature_group_count` must be positive"),
    (dict(batch_group_count=1.5), TypeError, r"`batch_group_count` must be an int; got batch_group_count=1.5"),
    (dict(window_strides=1), TypeError, r"`window_strides` must be a sequence of 2 ints"),
    (dict(padding="bogus"), ValueError, r"unknown `padding` string"),
    (dict(method=None), ValueError, r"unknown `method`; got method=None"),
    (dict(padding="SAME", lhs_dilation=(2, 1)), ValueError,
     r"string `padding` is ambiguous with `lhs_dilation` \(as in lax\)"),
    # lax's padding forms and error classes: no int shorthand (ValueError), one pair
    # per spatial dim (TypeError), crops of at most the whole input (ValueError).
    (dict(padding=1), ValueError, r"`padding` must be 'VALID', .*no int shorthand.*got padding=1\."),
    (dict(padding=(1, 1)), ValueError, r"sequence of \(lo, hi\) pairs of ints.*got padding=\(1, 1\)"),
    (dict(padding=((1.0, 1), (1, 1))), ValueError, r"`padding` must be 'VALID'"),
    (dict(padding=None), ValueError, r"`padding` must be 'VALID'.*got padding=None"),
    (dict(padding=[(1, 1)]), TypeError,
     r"`padding` must have one \(lo, hi\) pair per spatial dimension \(2\), as lax"),
    (dict(padding=((-5, -4), (0, 0))), ValueError,
     r"negative padding crops more than the \(dilated\) input.*padded input spatial \(-1, 8\)"),
    (dict(rhs=jnp.zeros((6, 4, 0, 3))), ValueError, r"kernel spatial sizes must be positive"),
    (dict(precision="foo"), ValueError,
     r"`precision` must be None, a lax.Precision, one of 'highest'.*got precision='foo'\."),
    (dict(precision=(jax.lax.Precision.HIGH,) * 3), ValueError, r"`precision` must be None"),
    (dict(precision=("high", "F32_F32_F32")), ValueError, r"or a pair of lax.Precision values"),
    (dict(preferred_element_type="foo"), TypeError,
     r"`preferred_element_type` must be None or a dtype; got preferred_element_type='foo'"),
    (dict(preferred_element_type=jnp.int32), TypeError,
     r"`preferred_element_type` must be of a kind the inputs can accumulate in.*"
     r"got preferred_element_type=int32 for inputs of dtype float64"),
    (dict(preferred_element_type=jnp.complex128), TypeError, r"must be of a kind"),
    (dict(preferred_element_type=jnp.float32), TypeError,
     r"`preferred_element_type` must not be narrower than the inputs' dtype, as lax; "
     r"got preferred_element_type=float32 for inputs of dtype float64"),
    (dict(lhs=jnp.zeros((2, 4, 8, 8), jnp.int8), rhs=jnp.zeros((6, 4, 3, 3), jnp.int8),
          preferred_element_type=jnp.uint32), TypeError,
     r"`preferred_element_type` must have the signedness of the inputs"),
    (dict(dimension_numbers="NCHW"), TypeError,
     r"`dimension_numbers` must be None, a lax.ConvDimensionNumbers or three layout strings"),
    (dict(dimension_numbers=("NCHW", "OIHW")), TypeError, r"or three layout strings"),
    (dict(dimension_numbers=(1, 2, 3)), TypeError,
     r"`dimension_numbers` must be three layout strings \(lhs, rhs, out\)"),
    (dict(dimension_numbers=("NCH", "OIHW", "NCHW")), TypeError,
     r"must name each of the 4 dims of `lhs` and `rhs` once; the lhs layout 'NCH'"),
    (dict(dimension_numbers=("NCHH", "OIHW", "NCHW")), TypeError, r"the lhs layout 'NCHH'"),
    (dict(dimension_numbers=("XCHW", "OIHW", "NCHW")), TypeError,
     r"the lhs layout in `dimension_numbers` must contain 'N' and 'C'"),
    (dict(dimension_numbers=("NCHW", "OXHW", "NCHW")), TypeError,
     r"the rhs layout in `dimension_numbers` must contain 'O' and 'I'"),
    (dict(dimension_numbers=("NCHW", "OIHW", "NCXW")), TypeError,
     r"must share the same spatial characters"),
]


@pytest.mark.parametrize("kwargs,exc,match", GENERAL_ERRORS, ids=[m for *_, m in GENERAL_ERRORS])
def test_conv_general_dilated_errors(kwargs, exc, match):
  args = dict(lhs=X, rhs=W, window_strides=(1, 1), padding="VALID")
  args.update(kwargs)
  with pytest.raises(exc, match=match):
    jaxconv.conv_general_dilated(**args)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: jaxconv.output_shape((8, 8), (3, 3, 3)), ValueError,
     r"output_shape: `kernel_size` must have one entry per spatial dimension \(2\)"),
    (lambda: jaxconv.output_shape(0, 3), ValueError, r"`input_size` must be positive"),
    (lambda: jaxconv.output_shape(4, 5), ValueError, r"output is empty"),
    (lambda: jaxconv.output_shape(4, 3, stride=0), ValueError, r"`stride` must be positive"),
])
def test_output_shape_errors(call, exc, match):
  with pytest.raises(exc, match=match):
    call()


def test_unsupported_geometry_names_the_methods_that_can(monkeypatch):
  """A method that declines a geometry raises NotImplementedError naming the others."""
  picky = type("Picky", (), {})()
  picky.supports = lambda g, purpose="call": "it only does 1-D" if g.rank != 1 else None
  picky.conv = METHODS["lax"].conv
  picky.temp_bytes = METHODS["lax"].temp_bytes
  monkeypatch.setitem(METHODS, "picky", picky)
  with pytest.raises(NotImplementedError,
                     match=r"method='picky' does not support this convolution \(it only does "
                           r"1-D\); use 'lax', 'direct', 'im2col'.* or 'auto'"):
    jaxconv.conv(X, W, method="picky")
  assert jaxconv.conv(jnp.zeros((1, 1, 5)), jnp.zeros((1, 1, 3)), method="picky").shape == (1, 1, 3)


@pytest.mark.parametrize("method,w_shape,match", [
    ("direct", (1, 1, 1025), r"method='direct' does not support .*1025 > 1024.*use 'lax'"),
    ("im2col", (1, 1, 1025), r"method='im2col' does not support .*1025 > 1024"),
])
def test_unrolled_methods_refuse_huge_kernels(method, w_shape, match):
  x = jax.ShapeDtypeStruct((1, 1, 2048), jnp.float32)
  w = jax.ShapeDtypeStruct(w_shape, jnp.float32)
  with pytest.raises(NotImplementedError, match=match):
    jax.eval_shape(lambda x, w: jaxconv.conv(x, w, method=method), x, w)


def test_im2col_refuses_a_patch_tensor_too_large_for_memory():
  x = jax.ShapeDtypeStruct((64, 64, 256, 256), jnp.float32)
  w = jax.ShapeDtypeStruct((64, 64, 5, 5), jnp.float32)
  with pytest.raises(NotImplementedError, match=r"patch tensor would hold 6,710,886,400 elements"):
    jax.eval_shape(lambda x, w: jaxconv.conv(x, w, method="im2col", padding=2), x, w)


FOLD_ERRORS = [
    (dict(normalize="yes"), TypeError, r"jaxconv.fold: `normalize` must be a bool; got "
                                       r"normalize='yes'"),
    (dict(output_size=8.0), TypeError, r"`output_size` must be an int or a sequence of ints"),
]


@pytest.mark.parametrize("kwargs,exc,match", FOLD_ERRORS, ids=[m for *_, m in FOLD_ERRORS])
def test_fold_errors(kwargs, exc, match):
  cols = jnp.zeros((1, 9, 36))
  with pytest.raises(exc, match=match):
    jaxconv.fold(cols, **{"output_size": (8, 8), "kernel_size": (3, 3), **kwargs})


def test_fold_int_output_size_is_square_for_a_2d_kernel():
  """As torch's fold: an int `output_size` with a 2-D `kernel_size` is square."""
  cols = jnp.ones((1, 9, 36))
  assert jaxconv.fold(cols, 8, (3, 3)).shape == (1, 1, 8, 8)
  np.testing.assert_array_equal(jaxconv.fold(cols, 8, (3, 3)), jaxconv.fold(cols, (8, 8), 3))


def test_output_shape_of_a_float_size_is_a_type_error():
  with pytest.raises(TypeError, match=r"output_shape: `input_size` must be an int or a "
                                      r"sequence of ints; got input_size=8.0"):
    jaxconv.output_shape(8.0, 3)
