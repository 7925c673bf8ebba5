"""Every bad input gets a clear error from jaxconv, before tracing."""

from __future__ import annotations

import inspect
from pathlib import Path

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


# --- one table: every public function, with its bad arguments ---------------------
#
# One row per bad input, at least one per public function (and per public method of
# ConvOperator). Each error must be a TypeError/ValueError raised inside jaxconv,
# before any tracing, whose message starts with the function's name and quotes the
# argument and the value given; `test_every_public_function_has_a_row` fails when a
# public function has no row, so a new one must come with its error rows.

F32 = np.float32
XS = np.zeros((2, 4, 8, 8), F32)          # (N, C_in, H, W)
WS = np.zeros((6, 4, 3, 3), F32)          # (C_out, C_in, kh, kw)
WT = np.zeros((4, 2, 3, 3), F32)          # conv_transpose: (C_in, C_out // groups, kh, kw)
X1, W1 = np.zeros((1, 1, 8), F32), np.zeros((2, 1, 3), F32)
COLS = np.zeros((1, 9, 36), F32)
TOKENS = np.zeros((2, 16, 16), F32)       # patchify(XS, 2)
WINDOWS = np.zeros((8, 4, 4, 4), F32)     # window_partition(XS, 4)
K3 = np.array([1.0, 2.0, 3.0], F32)
SDS = jax.ShapeDtypeStruct(XS.shape, F32)
MESH = jax.make_mesh((1,), ("x",))
OP = jaxconv.conv_operator(W1, (1, 8))    # in_shape (1, 8), out_shape (2, 6)
GEOMETRY = OP.geometry
KEY = jax.random.key(0)
K = jaxconv.kernels
T = jaxconv.testing


def row(fn, call, exc, match, id):
  return pytest.param(fn, call, exc, match, id=f"{fn}:{id}")


PUBLIC_ERRORS = [
    # jaxconv.conv
    row("conv", lambda: jaxconv.conv([[1.0]], WS), TypeError,
        r"`x` must be an array \(jax.Array, np.ndarray or tracer\); got list\.", "x-list"),
    row("conv", lambda: jaxconv.conv(XS, jax.ShapeDtypeStruct(WS.shape, F32)), TypeError,
        r"`w` must be an array, not a jax.ShapeDtypeStruct .*got w=ShapeDtypeStruct", "w-sds"),
    row("conv", lambda: jaxconv.conv(XS, WS, np.zeros(5, F32)), ValueError,
        r"`b` must have shape \(C_out,\) = \(6,\); got b.shape=\(5,\)\.", "b-shape"),
    row("conv", lambda: jaxconv.conv(XS, WS, stride=0), ValueError,
        r"`stride` must be positive; got stride=0\.", "stride-0"),
    row("conv", lambda: jaxconv.conv(XS, WS, stride=True), TypeError,
        r"`stride` must be an int or a sequence of ints; got stride=True\.", "stride-bool"),
    row("conv", lambda: jaxconv.conv(XS, WS, dilation=(1, 1, 1)), ValueError,
        r"`dilation` must have one entry per spatial dimension \(2\); got dilation=\(1, 1, 1\)",
        "dilation-length"),
    row("conv", lambda: jaxconv.conv(XS, WS, padding="HALF"), ValueError,
        r"unknown `padding` string; got padding='HALF'", "padding-string"),
    row("conv", lambda: jaxconv.conv(XS, WS, padding=None), TypeError,
        r"`padding` must be an int, .*; got padding=None\.", "padding-none"),
    row("conv", lambda: jaxconv.conv(XS, WS, groups=3), ValueError,
        r"`groups` must divide the input channels; 3 does not divide C_in=4", "groups-divide"),
    row("conv", lambda: jaxconv.conv(XS, WS, groups=2.0), TypeError,
        r"`groups` must be an int; got groups=2.0\.", "groups-float"),
    row("conv", lambda: jaxconv.conv(XS, WS, padding_mode="mirror"), ValueError,
        r"unknown `padding_mode`; got padding_mode='mirror'", "padding_mode"),
    row("conv", lambda: jaxconv.conv(XS, WS, flip="yes"), TypeError,
        r"`flip` must be a bool; got flip='yes'\.", "flip"),
    row("conv", lambda: jaxconv.conv(XS, WS, method="winograd"), ValueError,
        r"unknown `method`; got method='winograd'", "method"),
    row("conv", lambda: jaxconv.conv(XS, WS, precision="fast"), ValueError,
        r"`precision` must be None, .*; got precision='fast'\.", "precision"),
    row("conv", lambda: jaxconv.conv(XS, WS, memory_budget="1G"), TypeError,
        r"`memory_budget` must be None or an int \(bytes\); got memory_budget='1G'\.",
        "memory_budget"),
    row("conv", lambda: jaxconv.conv(XS, WS, finite_locality="yes"), TypeError,
        r"`finite_locality` must be True or False; got finite_locality='yes'\.",
        "finite_locality"),
    # jaxconv.conv_transpose
    row("conv_transpose", lambda: jaxconv.conv_transpose(SDS, WT), TypeError,
        r"`x` must be an array, not a jax.ShapeDtypeStruct", "x-sds"),
    row("conv_transpose", lambda: jaxconv.conv_transpose(XS, WS), ValueError,
        r"w.shape\[0\] must equal the input channels C_in=4 .*got w.shape=\(6, 4, 3, 3\)",
        "w-layout"),
    row("conv_transpose", lambda: jaxconv.conv_transpose(XS, WT, output_padding=-1), ValueError,
        r"`output_padding` must be >= 0; got output_padding=-1\.", "output_padding-negative"),
    row("conv_transpose", lambda: jaxconv.conv_transpose(XS, WT, stride=2, output_padding=2),
        ValueError, r"`output_padding` must be smaller than either the stride or the "
        r"dilation; got output_padding=\(2, 2\)", "output_padding-large"),
    row("conv_transpose", lambda: jaxconv.conv_transpose(XS, WT, padding="SAME"), TypeError,
        r"`padding` must be an int, per-dim ints or \(lo, hi\) pairs; got padding='SAME'\.",
        "padding-string"),
    row("conv_transpose", lambda: jaxconv.conv_transpose(XS, WT, groups=True), TypeError,
        r"`groups` must be an int; got groups=True\.", "groups-bool"),
    # jaxconv.conv_general_dilated (lax's argument names)
    row("conv_general_dilated", lambda: jaxconv.conv_general_dilated(XS, WS, (0, 1), "VALID"),
        ValueError, r"`window_strides` must be positive; got window_strides=\(0, 1\)\.",
        "window_strides-0"),
    row("conv_general_dilated", lambda: jaxconv.conv_general_dilated(XS, WS, 1, "VALID"),
        TypeError, r"`window_strides` must be a sequence of 2 ints; got window_strides=1\.",
        "window_strides-int"),
    row("conv_general_dilated", lambda: jaxconv.conv_general_dilated(
        XS, WS, (1, 1), "VALID", lhs_dilation=(0, 1)), ValueError,
        r"`lhs_dilation` must be positive; got lhs_dilation=\(0, 1\)\.", "lhs_dilation-0"),
    row("conv_general_dilated", lambda: jaxconv.conv_general_dilated(
        XS, WS, (1, 1), [(0, 0)] * 2, lhs_dilation="x"), TypeError,
        r"`lhs_dilation` must be an int or a sequence of ints; got lhs_dilation='x'\.",
        "lhs_dilation-str"),
    row("conv_general_dilated", lambda: jaxconv.conv_general_dilated(
        XS, WS, (1, 1), "VALID", rhs_dilation=(1.5, 1)), TypeError,
        r"`rhs_dilation` must be an int or a sequence of ints; got rhs_dilation=\(1.5, 1\)\.",
        "rhs_dilation-float"),
    row("conv_general_dilated", lambda: jaxconv.conv_general_dilated(
        XS, WS, (1, 1), np.array([0, 0])), ValueError,
        r"`padding` must be 'VALID', .*; got padding=\[0, 0\]\.", "padding-1d-array"),
    row("conv_general_dilated", lambda: jaxconv.conv_general_dilated(
        XS, WS, (1, 1), "VALID", feature_group_count=True), TypeError,
        r"`feature_group_count` must be an int; got feature_group_count=True\.",
        "feature_group_count"),
    row("conv_general_dilated", lambda: jaxconv.conv_general_dilated(
        XS, WS, (1, 1), "VALID", dimension_numbers="NCHW"), TypeError,
        r"`dimension_numbers` must be None, .*got dimension_numbers='NCHW'\.",
        "dimension_numbers"),
    row("conv_general_dilated", lambda: jaxconv.conv_general_dilated(
        XS, WS, (1, 1), "VALID", preferred_element_type="foo"), TypeError,
        r"`preferred_element_type` must be None or a dtype; got preferred_element_type='foo'\.",
        "preferred_element_type"),
    row("conv_general_dilated", lambda: jaxconv.conv_general_dilated(
        XS, WS, (1, 1), "VALID", out_sharding="x"), TypeError,
        r"`out_sharding` must be None, a NamedSharding or a PartitionSpec; got "
        r"out_sharding='x'\.", "out_sharding"),
    # jaxconv.unfold / fold / output_shape
    row("unfold", lambda: jaxconv.unfold(SDS, 3), TypeError,
        r"`x` must be an array, not a jax.ShapeDtypeStruct", "x-sds"),
    row("unfold", lambda: jaxconv.unfold(XS, 0), ValueError,
        r"`kernel_size` must be positive; got kernel_size=0\.", "kernel_size-0"),
    row("unfold", lambda: jaxconv.unfold(XS, 3, padding=-1), ValueError,
        r"`padding` must be non-negative; got padding=-1\.", "padding-negative"),
    row("unfold", lambda: jaxconv.unfold(XS, 3, memory_budget=0), ValueError,
        r"`memory_budget` must be positive; got memory_budget=0\.", "memory_budget"),
    row("fold", lambda: jaxconv.fold(jax.ShapeDtypeStruct(COLS.shape, F32), (8, 8), 3),
        TypeError, r"`cols` must be an array, not a jax.ShapeDtypeStruct", "cols-sds"),
    row("fold", lambda: jaxconv.fold(COLS, (), 3), ValueError,
        r"`output_size` must name at least one spatial dim; got output_size=\(\)\.",
        "output_size-empty"),
    row("fold", lambda: jaxconv.fold(COLS, (8, 8), 3, normalize=1), TypeError,
        r"`normalize` must be a bool; got normalize=1\.", "normalize"),
    row("fold", lambda: jaxconv.fold(COLS, (8, 8), 3, stride=2), ValueError,
        r"`cols` has L=36 patches but output_size=\(8, 8\) .*stride=\(2, 2\) gives 3x3=9",
        "cols-length"),
    row("output_shape", lambda: jaxconv.output_shape((), 3), ValueError,
        r"`input_size` must name at least one spatial dim; got input_size=\(\)\.",
        "input_size-empty"),
    row("output_shape", lambda: jaxconv.output_shape(8.0, 3), TypeError,
        r"`input_size` must be an int or a sequence of ints; got input_size=8.0\.",
        "input_size-float"),
    row("output_shape", lambda: jaxconv.output_shape([8, 0], 3), ValueError,
        r"`input_size` must be positive; got input_size=\[8, 0\]\.", "input_size-0"),
    row("output_shape", lambda: jaxconv.output_shape((8, 8), 3, padding=None), TypeError,
        r"`padding` must be an int, .*; got padding=None\.", "padding-none"),
    row("output_shape", lambda: jaxconv.output_shape(4, 5), ValueError,
        r"the output is empty; got input_size=\(4,\), kernel_size=\(5,\)", "empty"),
    # ViT patches and Swin windows
    row("patchify", lambda: jaxconv.patchify(SDS, 2), TypeError,
        r"`x` must be an array, not a jax.ShapeDtypeStruct", "x-sds"),
    row("patchify", lambda: jaxconv.patchify(XS, 3), ValueError,
        r"each spatial size must be a multiple of `patch_size`; got spatial shape \(8, 8\) "
        r"and patch_size=\(3, 3\)", "patch_size-divide"),
    row("patchify", lambda: jaxconv.patchify(XS, None), TypeError,
        r"`patch_size` must be an int or a sequence of ints; got patch_size=None\.",
        "patch_size-none"),
    row("unpatchify", lambda: jaxconv.unpatchify(TOKENS, 2, ()), ValueError,
        r"`spatial_shape` must name at least one spatial dim; got spatial_shape=\(\)\.",
        "spatial_shape-empty"),
    row("unpatchify", lambda: jaxconv.unpatchify(TOKENS, 2, (8, 4)), ValueError,
        r"`tokens` has L=16 tokens but spatial_shape=\(8, 4\)", "tokens-length"),
    row("unpatchify", lambda: jaxconv.unpatchify(TOKENS.tolist(), 2, (8, 8)), TypeError,
        r"`tokens` must be an array .*got list\.", "tokens-list"),
    row("window_partition", lambda: jaxconv.window_partition(XS, (2, 2, 2)), ValueError,
        r"`window` must have one entry per spatial dimension \(2\); got window=\(2, 2, 2\)",
        "window-length"),
    row("window_partition", lambda: jaxconv.window_partition(SDS, 2), TypeError,
        r"`x` must be an array, not a jax.ShapeDtypeStruct", "x-sds"),
    row("window_reverse", lambda: jaxconv.window_reverse(WINDOWS, 2, (8, 8)), ValueError,
        r"the windows' spatial shape \(4, 4\) does not match window=\(2, 2\)", "window-shape"),
    row("window_reverse", lambda: jaxconv.window_reverse(WINDOWS, 4, 8.0), TypeError,
        r"`spatial_shape` must be an int or a sequence of ints; got spatial_shape=8.0\.",
        "spatial_shape-float"),
    # matrices and the operator
    row("toeplitz_matrix", lambda: jaxconv.toeplitz_matrix(None, 5), TypeError,
        r"`k` must be an array, a number or a nested list of numbers; got NoneType\.",
        "k-none"),
    row("toeplitz_matrix", lambda: jaxconv.toeplitz_matrix(K3, 5.0), TypeError,
        r"`n` must be an int \(the input length\); got n=5.0\.", "n-float"),
    row("toeplitz_matrix", lambda: jaxconv.toeplitz_matrix(K3, 5, "VALID"), ValueError,
        r"unknown `mode`; got mode='VALID'", "mode"),
    row("toeplitz_matrix", lambda: jaxconv.toeplitz_matrix(K3, 5, max_elements=1.5), TypeError,
        r"`max_elements` must be an int; got max_elements=1.5\.", "max_elements-float"),
    row("toeplitz_matrix", lambda: jaxconv.toeplitz_matrix(K3, 5, flip=1), TypeError,
        r"`flip` must be a bool; got flip=1\.", "flip"),
    row("circulant_matrix", lambda: jaxconv.circulant_matrix("abc", 5), TypeError,
        r"`k` must be an array, a number or a nested list of numbers; got str\.", "k-str"),
    row("circulant_matrix", lambda: jaxconv.circulant_matrix(
        jax.ShapeDtypeStruct((3,), F32), 5), TypeError,
        r"`k` must be an array, not a jax.ShapeDtypeStruct", "k-sds"),
    row("circulant_matrix", lambda: jaxconv.circulant_matrix(K3, 0), ValueError,
        r"`n` must be positive \(the input length\); got n=0\.", "n-0"),
    row("circulant_matrix", lambda: jaxconv.circulant_matrix(K3, 5, max_elements=0), ValueError,
        r"`max_elements` must be positive; got max_elements=0\.", "max_elements-0"),
    row("conv_matrix", lambda: jaxconv.conv_matrix(None, (1, 8)), TypeError,
        r"`w` must be an array, a number or a nested list of numbers; got NoneType\.",
        "w-none"),
    row("conv_matrix", lambda: jaxconv.conv_matrix(W1, (-1, 8)), ValueError,
        r"`input_shape` must be positive; got input_shape=\(-1, 8\)\.", "input_shape-negative"),
    row("conv_matrix", lambda: jaxconv.conv_matrix(W1, "1x8"), TypeError,
        r"`input_shape` must be a tuple of ints, .*got input_shape='1x8'\.", "input_shape-str"),
    row("conv_matrix", lambda: jaxconv.conv_matrix(W1, (1, 8), max_elements=True), TypeError,
        r"`max_elements` must be an int; got max_elements=True\.", "max_elements-bool"),
    row("conv_matrix", lambda: jaxconv.conv_matrix(W1, (1, 8), lhs_dilation=0), ValueError,
        r"`lhs_dilation` must be positive; got lhs_dilation=0\.", "lhs_dilation"),
    row("conv_operator", lambda: jaxconv.conv_operator(jax.ShapeDtypeStruct(W1.shape, F32),
                                                       (1, 8)), TypeError,
        r"`w` must be an array, not a jax.ShapeDtypeStruct", "w-sds"),
    row("conv_operator", lambda: jaxconv.conv_operator(W1, (1, 0)), ValueError,
        r"`input_shape` must be positive; got input_shape=\(1, 0\)\.", "input_shape-0"),
    row("conv_operator", lambda: jaxconv.conv_operator(W1, (1, 8), precision="x"), ValueError,
        r"`precision` must be None, .*got precision='x'\.", "precision"),
    row("ConvOperator.matvec", lambda: OP.matvec(None), TypeError,
        r"`x` must be an array, a number or a nested list of numbers; got NoneType\.", "x-none"),
    row("ConvOperator.matvec", lambda: OP.matvec(np.zeros((1, 7), F32)), ValueError,
        r"`x` must end in shape \(1, 8\); got x.shape=\(1, 7\)\.", "x-shape"),
    row("ConvOperator.rmatvec", lambda: OP.rmatvec("y"), TypeError,
        r"`y` must be an array, a number or a nested list of numbers; got str\.", "y-str"),
    row("ConvOperator.rmatvec", lambda: OP.rmatvec(np.zeros(6, F32)), ValueError,
        r"`y` must end in shape \(2, 6\); got y.shape=\(6,\)\.", "y-shape"),
    row("ConvOperator.as_matrix", lambda: OP.as_matrix(max_elements="x"), TypeError,
        r"`max_elements` must be an int; got max_elements='x'\.", "max_elements-str"),
    row("ConvOperator.as_matrix", lambda: OP.as_matrix(max_elements=3), ValueError,
        r"the matrix would be 12 x 8 = 96 elements .*max_elements=3", "over-budget"),
    row("ConvOperator.singular_values", lambda: OP.singular_values(max_elements=0), ValueError,
        r"`max_elements` must be positive; got max_elements=0\.", "max_elements-0"),
    row("ConvOperator.singular_values", lambda: OP.singular_values(max_elements=3), ValueError,
        r"the matrix would be 12 x 8 = 96 elements .*max_elements=3", "over-budget"),
    row("ConvOperator.spectral_norm", lambda: OP.spectral_norm(tol="1e-3"), TypeError,
        r"`tol` must be a Python or NumPy real number \(it is static\); got tol='1e-3'\.",
        "tol-str"),
    row("ConvOperator.spectral_norm", lambda: OP.spectral_norm(tol=float("nan")), ValueError,
        r"`tol` must be finite and > 0; got tol=nan\.", "tol-nan"),
    row("ConvOperator.spectral_norm", lambda: OP.spectral_norm(max_iters=1.5), TypeError,
        r"`max_iters` must be an int; got max_iters=1.5\.", "max_iters-float"),
    row("ConvOperator.spectral_norm", lambda: OP.spectral_norm(key="k"), TypeError,
        r"`key` must be one PRNG key, .*; got key='k'\.", "key-str"),
    row("ConvOperator.spectral_norm", lambda: OP.spectral_norm(key=np.zeros(2, F32)), TypeError,
        r"`key` must be one PRNG key, .*; got an array of dtype float32 and shape \(2,\)\.",
        "key-float-array"),
    row("ConvOperator.spectral_norm", lambda: OP.spectral_norm(start=1), TypeError,
        r"`start` must be a string; got start=1\.", "start-int"),
    row("ConvOperator.spectral_norm", lambda: OP.spectral_norm(start="power"), ValueError,
        r"unknown `start`; got start='power', expected one of 'auto', 'circulant', 'random'",
        "start-unknown"),
    row("ConvOperator.spectral_norm",
        lambda: jaxconv.conv_operator(W1, (1, 8), lhs_dilation=2).spectral_norm(start="circulant"),
        NotImplementedError, r"start='circulant' does not support input \(lhs\) dilation "
        r"\(lhs_dilation=\(2,\)\); use start='random' or 'auto'\.", "start-circulant-dilated"),
    # scipy.signal-style functions
    row("convolve", lambda: jaxconv.convolve(None, K3), TypeError,
        r"`in1` must be an array, a number or a nested list of numbers; got NoneType\.",
        "in1-none"),
    row("convolve", lambda: jaxconv.convolve(K3, jax.ShapeDtypeStruct((3,), F32)), TypeError,
        r"`in2` must be an array, not a jax.ShapeDtypeStruct", "in2-sds"),
    row("convolve", lambda: jaxconv.convolve(np.array([1, "a"], object), K3), TypeError,
        r"`in1` must hold numbers; got an array of dtype object \(in1.shape=\(2,\)\)\.",
        "in1-object"),
    row("convolve", lambda: jaxconv.convolve(K3, K3, method=None), ValueError,
        r"unknown `method`; got method=None, expected one of 'auto', 'direct', 'fft', 'oa'\.",
        "method-none"),
    row("convolve", lambda: jaxconv.convolve(K3, K3, mode="FULL"), ValueError,
        r"unknown `mode`; got mode='FULL'", "mode"),
    row("convolve", lambda: jaxconv.convolve(K3, K3, axes=5), ValueError,
        r"`axes` out of range for inputs of rank 1; got axes=\(5,\)\.", "axes-range"),
    row("correlate", lambda: jaxconv.correlate("abc", K3), TypeError,
        r"`in1` must be an array, a number or a nested list of numbers; got str\.", "in1-str"),
    row("correlate", lambda: jaxconv.correlate(K3, K3, method="FFT"), ValueError,
        r"unknown `method`; got method='FFT'", "method"),
    row("correlate", lambda: jaxconv.correlate(K3, K3, axes=(0, 0)), ValueError,
        r"`axes` must not repeat an axis; got axes=\(0, 0\)\.", "axes-repeat"),
    row("fftconvolve", lambda: jaxconv.fftconvolve({"a": 1}, K3), TypeError,
        r"`in1` must be an array, a number or a nested list of numbers; got dict\.", "in1-dict"),
    row("fftconvolve", lambda: jaxconv.fftconvolve(K3, K3, mode=None), ValueError,
        r"unknown `mode`; got mode=None", "mode-none"),
    row("fftconvolve", lambda: jaxconv.fftconvolve(K3, K3, axes=1.5), ValueError,
        r"`axes` must be None, an int or a sequence of ints; got axes=1.5\.", "axes-float"),
    row("oaconvolve", lambda: jaxconv.oaconvolve(K3, None), TypeError,
        r"`in2` must be an array, a number or a nested list of numbers; got NoneType\.",
        "in2-none"),
    row("oaconvolve", lambda: jaxconv.oaconvolve(K3, [[1.0], [1.0, 2.0]]), TypeError,
        r"`in2` must be an array or a nested list of numbers of one shape; got a ragged list\.",
        "in2-ragged"),
    row("oaconvolve", lambda: jaxconv.oaconvolve(np.zeros((3, 2), F32), np.zeros((2, 3), F32),
                                                 mode="valid"), ValueError,
        r"in mode='valid' one input must be at least as large as the other .*got shapes "
        r"\(3, 2\) and \(2, 3\)", "valid-sizes"),
    row("next_fast_len", lambda: jaxconv.next_fast_len(1.5), TypeError,
        r"`target` must be an int; got target=1.5\.", "target-float"),
    row("next_fast_len", lambda: jaxconv.next_fast_len(-1), ValueError,
        r"`target` must be non-negative; got target=-1\.", "target-negative"),
    row("next_fast_len", lambda: jaxconv.next_fast_len(8, real=1), TypeError,
        r"`real` must be a bool; got real=1\.", "real"),
    # planning and sharding
    row("select_method", lambda: jaxconv.select_method(SDS, WS.shape), TypeError,
        r"`x_shape` must be a sequence of ints \(pass the array's `\.shape`\); got "
        r"x_shape=ShapeDtypeStruct", "x_shape-sds"),
    row("select_method", lambda: jaxconv.select_method(XS.shape, (6, 4.0, 3, 3)), TypeError,
        r"`w_shape` must be a sequence of ints; got w_shape=\(6, 4.0, 3, 3\)\.",
        "w_shape-float"),
    row("select_method", lambda: jaxconv.select_method(XS.shape, WS.shape, None), TypeError,
        r"`dtype` must be a NumPy/JAX dtype or its name; got dtype=None\.", "dtype-none"),
    row("select_method", lambda: jaxconv.select_method(XS.shape, WS.shape, backend=1),
        TypeError, r"`backend` must be a string or None; got backend=1\.", "backend"),
    row("select_method", lambda: jaxconv.select_method(XS.shape, WS.shape, method="fft"),
        TypeError, r"unknown keyword argument\(s\) method; accepted: stride", "unknown-kwarg"),
    row("select_method", lambda: jaxconv.select_method(XS.shape, WS.shape, stride=0),
        ValueError, r"`stride` must be positive; got stride=0\.", "stride"),
    row("sharded_conv", lambda: jaxconv.sharded_conv(SDS, WS, mesh=MESH), TypeError,
        r"`x` must be an array, not a jax.ShapeDtypeStruct", "x-sds"),
    row("sharded_conv", lambda: jaxconv.sharded_conv(XS, WS, mesh="x"), TypeError,
        r"`mesh` must be a jax.sharding.Mesh, an AbstractMesh or None .*got str\.", "mesh"),
    row("sharded_conv", lambda: jaxconv.sharded_conv(XS, WS, mesh=MESH, batch_axis="y"),
        ValueError, r"`batch_axis` must name an axis of the mesh \('x',\); got batch_axis='y'\.",
        "batch_axis"),
    row("sharded_conv", lambda: jaxconv.sharded_conv(XS, WS, mesh=MESH, spatial_axes=("x",)),
        ValueError, r"`spatial_axes` must have one entry per spatial dim \(2\); got "
        r"spatial_axes=\('x',\) of length 1\.", "spatial_axes-length"),
    row("sharded_conv", lambda: jaxconv.sharded_conv(XS, WS, mesh=MESH, strides=2), TypeError,
        r"unknown keyword argument\(s\) strides; accepted: mesh", "unknown-kwarg"),
    # jaxconv.kernels
    row("kernels.sobel", lambda: K.sobel("z"), ValueError,
        r"`axis` must be 'x' .* or 'y' .*; got axis='z'\.", "axis-name"),
    row("kernels.sobel", lambda: K.sobel(1.0), TypeError,
        r"`axis` must be 'x', 'y' or an int; got axis=1.0\.", "axis-float"),
    row("kernels.sobel", lambda: K.sobel("x", dtype="foo"), TypeError,
        r"`dtype` must be a NumPy/JAX dtype or its name; got dtype='foo'\.", "dtype"),
    row("kernels.prewitt", lambda: K.prewitt(None), TypeError,
        r"`axis` must be 'x', 'y' or an int; got axis=None\.", "axis-none"),
    row("kernels.prewitt", lambda: K.prewitt("y", dtype=1), TypeError,
        r"`dtype` must be a NumPy/JAX dtype or its name; got dtype=1\.", "dtype"),
    row("kernels.laplacian", lambda: K.laplacian(6), ValueError,
        r"`neighbours` must be 4 or 8; got neighbours=6\.", "neighbours"),
    row("kernels.laplacian", lambda: K.laplacian(dtype="foo"), TypeError,
        r"`dtype` must be a NumPy/JAX dtype or its name; got dtype='foo'\.", "dtype"),
    row("kernels.sharpen", lambda: K.sharpen(dtype=None), TypeError,
        r"`dtype` must be a NumPy/JAX dtype or its name; got dtype=None\.", "dtype-none"),
    row("kernels.identity", lambda: K.identity(2), ValueError,
        r"`size` must be odd so the filter has a centre tap; got size=2\.", "size-even"),
    row("kernels.identity", lambda: K.identity(ndim=0), ValueError,
        r"`ndim` must be positive; got ndim=0\.", "ndim-0"),
    row("kernels.box", lambda: K.box(0), ValueError,
        r"`size` must be positive; got size=0\.", "size-0"),
    row("kernels.box", lambda: K.box(3, dtype="int32"), TypeError,
        r"`dtype` must be a floating or complex dtype \(the taps are fractions\); got "
        r"dtype=int32\.", "dtype-int"),
    row("kernels.binomial", lambda: K.binomial(True), TypeError,
        r"`size` must be an int; got size=True\.", "size-bool"),
    row("kernels.binomial", lambda: K.binomial(3, ndim=2.0), TypeError,
        r"`ndim` must be an int; got ndim=2.0\.", "ndim-float"),
    row("kernels.gaussian", lambda: K.gaussian(3, 0), ValueError,
        r"`sigma` must be finite and > 0; got sigma=0\.", "sigma-0"),
    row("kernels.gaussian", lambda: K.gaussian(3, "1"), TypeError,
        r"`sigma` must be a Python or NumPy real number \(it is static\); got sigma='1'\.",
        "sigma-str"),
    row("kernels.gaussian", lambda: K.gaussian(4, 1.0), ValueError,
        r"`size` must be odd so the filter has a centre tap; got size=4\.", "size-even"),
    row("kernels.as_conv_weight", lambda: K.as_conv_weight(jax.ShapeDtypeStruct((3, 3), F32)),
        TypeError, r"`kernel` must be an array, not a jax.ShapeDtypeStruct", "kernel-sds"),
    row("kernels.as_conv_weight", lambda: K.as_conv_weight([[1.0], [1.0, 2.0]]), TypeError,
        r"`kernel` must be an array or a nested list of numbers of one shape; got a ragged "
        r"list\.", "kernel-ragged"),
    row("kernels.as_conv_weight", lambda: K.as_conv_weight(["a", "b"]), TypeError,
        r"`kernel` must hold numbers; got an array of dtype <U1", "kernel-strings"),
    row("kernels.as_conv_weight", lambda: K.as_conv_weight(K3, 0), ValueError,
        r"`in_channels` must be positive; got in_channels=0\.", "in_channels"),
    row("kernels.as_conv_weight", lambda: K.as_conv_weight(K3, 3, depthwise=1), TypeError,
        r"`depthwise` must be a bool; got depthwise=1\.", "depthwise"),
    # jaxconv.nn
    row("nn.init_conv", lambda: jaxconv.nn.init_conv(None, 4, 8, 3), TypeError,
        r"`key` must be one PRNG key, .*; got key=None\.", "key-none"),
    row("nn.init_conv", lambda: jaxconv.nn.init_conv(np.zeros(2, F32), 4, 8, 3), TypeError,
        r"`key` must be one PRNG key, .*; got an array of dtype float32 and shape \(2,\)\.",
        "key-float-array"),
    row("nn.init_conv", lambda: jaxconv.nn.init_conv(KEY, 4, 8, 3, dtype="foo"),
        TypeError, r"`dtype` must be a NumPy/JAX dtype or its name; got dtype='foo'\.", "dtype"),
    row("nn.init_conv", lambda: jaxconv.nn.init_conv(KEY, 4, 8, 3, groups=3),
        ValueError, r"`in_channels` \(=4\) must be divisible by `groups` \(=3\)\.", "groups"),
    row("nn.init_conv", lambda: jaxconv.nn.init_conv(KEY, 4, 8, 3, bias=1),
        TypeError, r"`bias` must be a bool; got bias=1\.", "bias"),
    row("nn.init_conv", lambda: jaxconv.nn.init_conv(KEY, 4, 8, ()), ValueError,
        r"`kernel_size` must have at least one spatial dim; got kernel_size=\(\)\.",
        "kernel_size-empty"),
    row("nn.init_conv_transpose", lambda: jaxconv.nn.init_conv_transpose("k", 4, 8, 3),
        TypeError, r"`key` must be one PRNG key, .*; got key='k'\.", "key-str"),
    row("nn.init_conv_transpose", lambda: jaxconv.nn.init_conv_transpose(
        KEY, 4, 8, (3, 3), spatial_dims=3), ValueError,
        r"`kernel_size` has 2 entries but spatial_dims=3; got kernel_size=\(3, 3\)\.",
        "spatial_dims"),
    row("nn.init_conv_transpose", lambda: jaxconv.nn.init_conv_transpose(
        KEY, 4, 8, 3, dtype="int32"), TypeError,
        r"`dtype` must be a floating dtype; got dtype=int32\.", "dtype-int"),
    # jaxconv.testing
    row("testing.check_against_lax", lambda: T.check_against_lax("x", (1, 1, 8), (1, 1, 3)),
        ValueError, r"unknown `method`; got method='x'", "method"),
    row("testing.check_against_lax", lambda: T.check_against_lax("lax", "abc", (1, 1, 3)),
        TypeError, r"`x_shape` must be a sequence of ints; got x_shape='abc'\.", "x_shape"),
    row("testing.check_against_lax", lambda: T.check_against_lax(
        "lax", (1, 1, 8), (1, 1, 3), "int32"), ValueError,
        r"no tolerance for dtype=int32; expected one of float64, float32", "dtype"),
    row("testing.check_against_lax", lambda: T.check_against_lax(
        "lax", (1, 1, 8), (1, 1, 3), seed="a"), TypeError,
        r"`seed` must be an int; got seed='a'\.", "seed"),
    row("testing.check_against_lax", lambda: T.check_against_lax(
        "lax", (1, 1, 8), (1, 1, 3), transpose=1), TypeError,
        r"`transpose` must be a bool; got transpose=1\.", "transpose"),
    row("testing.check_against_lax", lambda: T.check_against_lax(
        "lax", (1, 1, 8), (1, 1, 3), strides=2), TypeError,
        r"unknown keyword argument\(s\) strides; accepted \(those of conv\): stride",
        "unknown-kwarg"),
    row("testing.check_against_lax", lambda: T.check_against_lax(
        "lax", (1, 1, 8), (1, 1, 3), stride=0), ValueError,
        r"`stride` must be positive; got stride=0\.", "stride"),
    row("testing.check_general_against_lax", lambda: T.check_general_against_lax(
        "x", (1, 1, 8), (1, 1, 3), window_strides=(1,), padding="VALID"), ValueError,
        r"unknown `method`; got method='x'", "method"),
    row("testing.check_general_against_lax", lambda: T.check_general_against_lax(
        "lax", None, (1, 1, 3), window_strides=(1,), padding="VALID"), TypeError,
        r"`lhs_shape` must be a sequence of ints; got lhs_shape=None\.", "lhs_shape"),
    row("testing.check_general_against_lax", lambda: T.check_general_against_lax(
        "lax", (1, 1, 8), (1, 1, 3), padding="VALID"), TypeError,
        r"missing the keyword argument\(s\) window_strides of lax.conv_general_dilated\.",
        "window_strides-missing"),
    row("testing.check_general_against_lax", lambda: T.check_general_against_lax(
        "lax", (1, 1, 8), (1, 1, 3), window_strides=(0,), padding="VALID"), ValueError,
        r"`window_strides` must be positive; got window_strides=\(0,\)\.", "window_strides"),
    row("testing.check_general_against_lax", lambda: T.check_general_against_lax(
        "lax", (1, 1, 8), (1, 1, 3), raise_on_failure=1, window_strides=(1,),
        padding="VALID"), TypeError,
        r"`raise_on_failure` must be a bool; got raise_on_failure=1\.", "raise_on_failure"),
    row("testing.collectives", lambda: T.collectives(None), TypeError,
        r"`hlo_text` must be a str \(the text of a compiled HLO module\); got NoneType\.",
        "hlo_text-none"),
    row("testing.collectives", lambda: T.collectives(b"%ar = f32[4] all-reduce()"), TypeError,
        r"`hlo_text` must be a str .*got bytes\.", "hlo_text-bytes"),
    row("testing.reference_conv", lambda: T.reference_conv(X1, W1, np.zeros(3, F32)),
        ValueError, r"`b` must have shape \(C_out,\) = \(2,\); got b.shape=\(3,\)\.", "b-shape"),
    row("testing.reference_conv", lambda: T.reference_conv(
        jax.ShapeDtypeStruct(X1.shape, F32), W1), TypeError,
        r"`x` must be an array, not a jax.ShapeDtypeStruct", "x-sds"),
    row("testing.reference_conv", lambda: T.reference_conv(X1, W1, padding_mode="x"),
        ValueError, r"unknown `padding_mode`; got padding_mode='x'", "padding_mode"),
    row("testing.reference_conv_transpose", lambda: T.reference_conv_transpose(
        X1, W1.transpose(1, 0, 2), stride=1.5), TypeError,
        r"`stride` must be an int or a sequence of ints; got stride=1.5\.", "stride-float"),
    row("testing.reference_conv_transpose", lambda: T.reference_conv_transpose(
        X1, W1.transpose(1, 0, 2), padding="HALF"), TypeError,
        r"`padding` must be an int, per-dim ints or \(lo, hi\) pairs; got padding='HALF'\.",
        "padding-string"),
    row("testing.reference_conv_transpose", lambda: T.reference_conv_transpose(None, W1),
        TypeError, r"`x` must be an array \(jax.Array, np.ndarray or tracer\); got NoneType\.",
        "x-none"),
    row("testing.reference_conv_transpose", lambda: T.reference_conv_transpose(
        X1, W1.transpose(1, 0, 2), np.zeros((1, 2), F32)), ValueError,
        r"`b` must have shape \(C_out,\) = \(2,\); got b.shape=\(1, 2\)\.", "b-shape"),
    row("testing.reference_conv_transpose", lambda: T.reference_conv_transpose(
        X1, W1.transpose(1, 0, 2), output_padding=5), ValueError,
        r"`output_padding` must be smaller than either the stride or the dilation; got "
        r"output_padding=\(5,\)", "output_padding"),
    row("testing.rounding", lambda: T.rounding("FFT"), ValueError,
        r"unknown `method`; got method='FFT'", "method"),
    row("testing.tolerance", lambda: T.tolerance("lax", "float32", None), TypeError,
        r"`g` must be a jaxconv Geometry .*got NoneType\.", "g-none"),
    row("testing.tolerance", lambda: T.tolerance("lax", "foo", GEOMETRY), TypeError,
        r"`dtype` must be a NumPy/JAX dtype or its name; got dtype='foo'\.", "dtype"),
    row("testing.tolerance", lambda: T.tolerance("lax", "int32", GEOMETRY), ValueError,
        r"no tolerance for dtype=int32", "dtype-int"),
    row("testing.tolerance", lambda: T.tolerance(None, "float32", GEOMETRY), ValueError,
        r"unknown `method`; got method=None", "method"),
]

_PACKAGE = Path(jaxconv.__file__).parent
_TRACE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                 "/jax/core/compile/backend_compile_duration")


@pytest.mark.parametrize("fn,call,exc,match", PUBLIC_ERRORS)
def test_public_errors(fn, call, exc, match):
  """jaxconv raises it (not numpy or jax from deep inside), names the function,
  and does so before tracing or compiling anything."""
  traced = []
  listener = lambda event, secs, **kw: traced.append(event) if event in _TRACE_EVENTS else None
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    with pytest.raises(exc, match=match) as info:
      call()
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert str(info.value).startswith(f"jaxconv.{fn}: "), str(info.value)
  assert Path(info.traceback[-1].path).is_relative_to(_PACKAGE), info.traceback[-1]
  assert not traced, f"traced or compiled before the error: {traced}"


# Public names that take no user argument (no row possible), with the reason.
_NO_ARGUMENTS = {
    "ConvOperator": "a class built by jaxconv.conv_operator; its methods have rows",
    "testing.Comparison": "a result record returned by the checks",
    "testing.Collective": "a result record returned by testing.collectives",
    "ConvOperator.tree_flatten": "the pytree protocol, called by JAX",
    "ConvOperator.tree_unflatten": "the pytree protocol, called by JAX",
}


def _public_callables() -> dict[str, object]:
  """Every public function and ConvOperator method, by its name in messages."""
  out = {}
  for module, prefix in ((jaxconv, ""), (jaxconv.kernels, "kernels."),
                         (jaxconv.nn, "nn."), (jaxconv.testing, "testing.")):
    for name in module.__all__:
      out[prefix + name] = getattr(module, name)
  for name, member in inspect.getmembers(jaxconv.ConvOperator):
    if not name.startswith("_") and callable(member):
      out[f"ConvOperator.{name}"] = member
  return out


def test_every_public_function_has_a_row():
  """A new public function (or ConvOperator method) fails here until it has a row
  in PUBLIC_ERRORS, or takes no argument."""
  covered = {p.values[0] for p in PUBLIC_ERRORS}
  needed = set()
  for name, obj in _public_callables().items():
    if name in _NO_ARGUMENTS:
      continue
    params = [p for p in inspect.signature(obj).parameters if p != "self"]
    assert not inspect.isclass(obj), f"{name}: a public class; list it in _NO_ARGUMENTS"
    if params:
      needed.add(name)
  assert sorted(needed - covered) == []
  assert sorted(covered - needed) == []   # no row for a name that is not public
