"""The one table of convolution geometries, used by every method's tests.

Each `Case` is one call of a public convolution, small enough for a 2-core CPU:
`api` says which one and what `kwargs` mean:

- "conv": `jaxconv.conv(x, w[, b], **kwargs)`, PyTorch's argument names;
- "transpose": `jaxconv.conv_transpose(x, w[, b], **kwargs)`, PyTorch's
  `(C_in, C_out // groups, *kernel)` weight layout;
- "lax": `jaxconv.conv_general_dilated(lhs, rhs, **kwargs)`, lax's argument
  names and layouts (`x_shape`/`w_shape` are then lhs/rhs in their layouts).

`Case.call(method)` is the call, `Case.reference()` the same meaning computed by
`lax.conv_general_dilated(precision=HIGHEST)`, `Case.lax_form()` the row as
`conv_general_dilated` arguments (for every row that has one). Ids read as the
geometry.

A method runs every row, or declines it with a reason pinned in
`EXPECTED_DECLINES`; `expect_decline` enforces both directions.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import pytest
from jax import lax

import jaxconv
from jaxconv import testing
from jaxconv._methods import METHODS

HIGHEST = lax.Precision.HIGHEST
APIS = ("conv", "transpose", "lax")
# Padding strings lax understands itself (case-insensitive); others become pairs.
_LAX_PADDING_STRINGS = ("VALID", "SAME", "SAME_LOWER")

# float64 is on unless JAXCONV_TEST_X64=0 (conftest.py); the float32 run of
# `make test` checks the table in JAX's default mode.
X64 = bool(jax.config.jax_enable_x64)
needs_x64 = pytest.mark.skipif(
    not X64, reason="needs float64; JAXCONV_TEST_X64=0 runs in JAX's default float32 mode")


def _ints(v, rank: int) -> tuple[int, ...]:
  return (v,) * rank if isinstance(v, int) else tuple(v)


def _pairs(padding, rank: int) -> tuple[tuple[int, int], ...]:
  """int, per-dim ints or per-dim (lo, hi) pairs -> per-dim (lo, hi) pairs."""
  if isinstance(padding, int):
    return ((padding, padding),) * rank
  return tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)


@dataclasses.dataclass(frozen=True)
class Case:
  id: str
  x_shape: tuple[int, ...]
  w_shape: tuple[int, ...]
  kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
  api: str = "conv"
  bias: bool = False

  def __post_init__(self):
    assert self.api in APIS, self.api
    assert not (self.bias and self.api == "lax"), "lax rows have no bias"

  @property
  def rank(self) -> int:
    return len(self.x_shape) - 2

  def call(self, method: str) -> Callable:
    """`f(x, w[, b])`: the row through jaxconv's public function for `api`."""
    fn = {"conv": jaxconv.conv, "transpose": jaxconv.conv_transpose,
          "lax": jaxconv.conv_general_dilated}[self.api]
    return functools.partial(fn, **self.kwargs, method=method)

  def reference(self) -> Callable:
    """`f(x, w[, b])`: the row's meaning by `lax.conv_general_dilated(HIGHEST)`."""
    if self.api == "lax":
      return functools.partial(lax.conv_general_dilated, **self.kwargs, precision=HIGHEST)
    fn = {"conv": testing.reference_conv,
          "transpose": testing.reference_conv_transpose}[self.api]
    return functools.partial(fn, **self.kwargs)

  def check(self, method: str, dtype=jnp.float32, seed: int = 0):
    """Values and derivatives of `call(method)` vs lax: `jaxconv.testing`'s checkers."""
    if self.api == "lax":
      return testing.check_general_against_lax(method, self.x_shape, self.w_shape, dtype,
                                               seed=seed, **self.kwargs)
    return testing.check_against_lax(method, self.x_shape, self.w_shape, dtype,
                                     transpose=self.api == "transpose", bias=self.bias,
                                     seed=seed, **self.kwargs)

  @property
  def batch_independent(self) -> bool:
    """Whether each example's output depends on that example alone (batch axis 0)."""
    if self.api != "lax":
      return True
    dn = lax.conv_dimension_numbers(self.x_shape, self.w_shape,
                                    self.kwargs.get("dimension_numbers"))
    return dn.lhs_spec[0] == 0 and self.kwargs.get("batch_group_count", 1) == 1

  @property
  def no_lax_form(self) -> str | None:
    """Why `conv_general_dilated` cannot express this row, or None."""
    if self.bias:
      return "a bias"
    if self.kwargs.get("padding_mode", "zeros") != "zeros":
      return f"padding_mode={self.kwargs['padding_mode']!r}"
    if self.kwargs.get("flip", False):
      return "flip=True"
    return None

  def lax_form(self) -> tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]]:
    """`(lhs shape, rhs shape, kwargs)` of `conv_general_dilated` for this row.

    Random weights make the translation a matter of shapes: a transposed row
    becomes the lhs-dilated convolution `conv_transpose` computes, with its
    `(C_out, C_in // groups, *kernel)` kernel.
    """
    assert self.no_lax_form is None, self.no_lax_form
    if self.api == "lax":
      return self.x_shape, self.w_shape, dict(self.kwargs)
    kw, r = self.kwargs, self.rank
    kernel = self.w_shape[2:]
    dilation = _ints(kw.get("dilation", 1), r)
    groups = kw.get("groups", 1)
    stride = _ints(kw.get("stride", 1), r)
    padding = kw.get("padding", 0)
    if self.api == "transpose":
      out_pad = _ints(kw.get("output_padding", 0), r)
      pads = tuple((d * (k - 1) - lo, d * (k - 1) - hi + o) for (lo, hi), k, d, o
                   in zip(_pairs(padding, r), kernel, dilation, out_pad))
      cin_g = self.x_shape[1] // groups
      w_shape = (groups * self.w_shape[1], cin_g, *kernel)
      return self.x_shape, w_shape, dict(
          window_strides=(1,) * r, padding=pads, lhs_dilation=stride,
          rhs_dilation=dilation, feature_group_count=groups)
    if isinstance(padding, str):
      if padding.upper() == "FULL":
        padding = tuple((d * (k - 1),) * 2 for k, d in zip(kernel, dilation))
      else:
        assert padding.upper() in _LAX_PADDING_STRINGS, padding
    else:
      padding = _pairs(padding, r)
    return self.x_shape, self.w_shape, dict(
        window_strides=stride, padding=padding, rhs_dilation=dilation,
        feature_group_count=groups)

  def eval_shape(self, method: str, dtype=jnp.float32, *, lax_form: bool = False):
    """Trace the row (no compile): a method that declines raises here."""
    if lax_form:
      x_shape, w_shape, kw = self.lax_form()
      fn = functools.partial(jaxconv.conv_general_dilated, **kw, method=method)
    else:
      x_shape, w_shape, fn = self.x_shape, self.w_shape, self.call(method)
    return jax.eval_shape(fn, jax.ShapeDtypeStruct(x_shape, dtype),
                          jax.ShapeDtypeStruct(w_shape, dtype))


CASES = [
    # --- 1-D -------------------------------------------------------------
    Case("1d-valid", (2, 3, 10), (4, 3, 3), bias=True),
    Case("1d-seed-[-2,-2]", (1, 1, 4), (1, 1, 3)),
    Case("1d-stride3-pad2", (2, 2, 11), (3, 2, 4), dict(stride=3, padding=2)),
    Case("1d-same-even-kernel", (1, 2, 8), (2, 2, 4), dict(padding="SAME")),
    Case("1d-full", (1, 2, 6), (3, 2, 3), dict(padding="full")),
    Case("1d-causal-dilated-depthwise", (2, 4, 12), (4, 1, 3),
         dict(groups=4, dilation=2, padding=((4, 0),))),
    Case("1d-negative-pad", (1, 2, 9), (2, 2, 3), dict(padding=((-2, 1),))),
    Case("1d-reflect", (1, 2, 7), (2, 2, 3), dict(padding=2, padding_mode="reflect")),
    Case("1d-circular", (1, 2, 6), (2, 2, 3), dict(padding=3, padding_mode="circular")),
    Case("1d-flip", (1, 2, 8), (2, 2, 3), dict(flip=True, padding=1)),
    Case("1d-kernel-1", (2, 3, 5), (2, 3, 1)),
    # --- 2-D -------------------------------------------------------------
    Case("2d-valid", (2, 3, 6, 6), (4, 3, 3, 3), bias=True),
    Case("2d-sobel-4x4", (1, 1, 4, 4), (1, 1, 3, 3)),
    Case("2d-same", (2, 3, 7, 6), (5, 3, 3, 3), dict(padding="SAME")),
    Case("2d-same-even-kernel-stride2", (1, 2, 7, 8), (3, 2, 2, 4),
         dict(padding="SAME", stride=2)),
    Case("2d-same-lower", (1, 2, 6, 5), (2, 2, 4, 2), dict(padding="same_lower")),
    Case("2d-full", (1, 2, 4, 5), (2, 2, 3, 2), dict(padding="FULL")),
    Case("2d-stride2-pad1", (2, 3, 9, 8), (4, 3, 3, 3), dict(stride=2, padding=1)),
    Case("2d-stride(3,2)-asym-pad", (1, 2, 10, 9), (3, 2, 3, 2),
         dict(stride=(3, 2), padding=((1, 0), (2, 1)))),
    Case("2d-dilation2", (1, 2, 9, 9), (2, 2, 3, 3), dict(dilation=2)),
    Case("2d-dilation(1,3)-same", (1, 2, 8, 10), (3, 2, 3, 3),
         dict(dilation=(1, 3), padding="SAME")),
    Case("2d-groups2", (2, 4, 6, 6), (6, 2, 3, 3), dict(groups=2, padding=1)),
    Case("2d-depthwise", (2, 4, 7, 7), (4, 1, 3, 3), dict(groups=4, padding=1), bias=True),
    Case("2d-depthwise-multiplier2-stride2", (1, 3, 8, 8), (6, 1, 3, 3),
         dict(groups=3, stride=2, padding=1)),
    Case("2d-1x1", (2, 8, 5, 5), (4, 8, 1, 1)),
    Case("2d-1x1-stride2", (2, 4, 6, 6), (3, 4, 1, 1), dict(stride=2)),
    Case("2d-even-kernel-2x2", (1, 2, 7, 7), (2, 2, 2, 2)),
    Case("2d-negative-pad", (1, 2, 8, 8), (2, 2, 3, 3), dict(padding=((-1, -1), (0, -2)))),
    Case("2d-batch1-kernel-eq-input", (1, 2, 4, 4), (3, 2, 4, 4)),
    Case("2d-reflect", (1, 2, 6, 6), (2, 2, 3, 3), dict(padding=2, padding_mode="reflect")),
    Case("2d-replicate", (1, 2, 5, 6), (2, 2, 3, 3),
         dict(padding=(1, 2), padding_mode="replicate")),
    Case("2d-circular", (1, 2, 5, 5), (2, 2, 3, 3), dict(padding=1, padding_mode="circular")),
    Case("2d-flip-stride2", (1, 2, 7, 7), (2, 2, 3, 2), dict(flip=True, stride=2)),
    # --- 3-D -------------------------------------------------------------
    Case("3d-valid", (1, 2, 5, 5, 5), (3, 2, 3, 3, 3)),
    Case("3d-stride2-pad1", (1, 2, 6, 5, 7), (2, 2, 3, 2, 3), dict(stride=2, padding=1)),
    Case("3d-depthwise", (1, 3, 4, 4, 4), (3, 1, 2, 2, 2), dict(groups=3)),
    Case("3d-same-dilated", (1, 2, 5, 6, 5), (2, 2, 2, 3, 2), dict(padding="SAME", dilation=2)),
    # --- transposed (PyTorch weight layout (C_in, C_out // groups, *k)) ----
    Case("T1d-stride2", (2, 3, 5), (3, 2, 3), dict(stride=2), api="transpose"),
    Case("T2d-unet-2x2/2", (1, 4, 4, 4), (4, 2, 2, 2), dict(stride=2), api="transpose",
         bias=True),
    Case("T2d-pad1-outpad1-groups2", (2, 4, 5, 5), (4, 3, 3, 3),
         dict(stride=2, padding=1, output_padding=1, groups=2), api="transpose"),
    Case("T2d-dilation2-stride3-outpad2", (1, 2, 4, 4), (2, 2, 3, 3),
         dict(dilation=2, stride=3, output_padding=2), api="transpose"),
    Case("T3d-stride2", (1, 2, 3, 3, 3), (2, 2, 2, 2, 2), dict(stride=2), api="transpose"),
    # --- lax-style (jaxconv.conv_general_dilated; lax's names and layouts) ---
    Case("L2d-NCHW-default", (2, 3, 7, 6), (4, 3, 3, 2),
         dict(window_strides=(1, 1), padding="SAME"), api="lax"),
    Case("L2d-NHWC-HWIO", (2, 7, 6, 3), (3, 2, 3, 4),
         dict(window_strides=(2, 1), padding="VALID",
              dimension_numbers=("NHWC", "HWIO", "NHWC")), api="lax"),
    Case("L2d-NHWC-OIHW-NCHW", (1, 6, 6, 2), (3, 2, 3, 3),
         dict(window_strides=(1, 1), padding=((1, 0), (2, 1)),
              dimension_numbers=("NHWC", "OIHW", "NCHW")), api="lax"),
    Case("L2d-lhs-dilation", (1, 2, 4, 5), (3, 2, 3, 3),
         dict(window_strides=(1, 1), padding=((2, 2), (1, 2)), lhs_dilation=(2, 3)),
         api="lax"),
    Case("L2d-lhs-and-rhs-dilation-strided", (1, 2, 5, 5), (2, 2, 3, 2),
         dict(window_strides=(2, 1), padding=((1, 2), (0, 3)), lhs_dilation=(2, 1),
              rhs_dilation=(1, 2)), api="lax"),
    Case("L2d-SAME-even-kernel-strided-dilated", (1, 2, 9, 8), (2, 2, 4, 2),
         dict(window_strides=(3, 2), padding="SAME", rhs_dilation=(2, 3)), api="lax"),
    Case("L2d-SAME_LOWER", (1, 2, 6, 7), (2, 2, 2, 4),
         dict(window_strides=(1, 2), padding="SAME_LOWER"), api="lax"),
    Case("L2d-feature-groups", (2, 4, 5, 5), (6, 2, 3, 3),
         dict(window_strides=(1, 1), padding="VALID", feature_group_count=2), api="lax"),
    Case("L2d-batch-groups", (4, 3, 5, 5), (6, 3, 2, 2),
         dict(window_strides=(1, 1), padding="VALID", batch_group_count=2), api="lax"),
    Case("L1d-NWC-WIO", (2, 9, 3), (3, 3, 2),
         dict(window_strides=(2,), padding="SAME", dimension_numbers=("NWC", "WIO", "NWC")),
         api="lax"),
    Case("L3d-NDHWC", (1, 4, 5, 4, 2), (2, 2, 3, 2, 3),
         dict(window_strides=(1, 2, 1), padding="VALID",
              dimension_numbers=("NDHWC", "DHWIO", "NDHWC")), api="lax"),
    # The geometry Flax's nn.Conv(4, (3, 3), strides=(2, 1), padding="SAME") hands
    # over for a (2, 9, 9, 3) input: the flax drop-in tests' row.
    Case("L2d-flax-NHWC-SAME-stride(2,1)", (2, 9, 9, 3), (3, 3, 3, 4),
         dict(window_strides=(2, 1), padding="SAME",
              dimension_numbers=("NHWC", "HWIO", "NHWC")), api="lax"),
]

CASE_IDS = [c.id for c in CASES]
CASES_BY_ID = {c.id: c for c in CASES}
assert len(CASES_BY_ID) == len(CASES), "duplicate case ids"
METHOD_NAMES = list(METHODS)


def half_grid(cases, parity: int, marks=lambda case: ()):
  """Half of the (case, method) grid, sampled as a checkerboard: the pairs whose
  row index plus method index has `parity`.

  For the costly transformation checks (jit/vmap/per-example gradients,
  `conv_general_dilated`'s layouts, numerical second order), which run on top
  of `test_values_and_derivatives_match_lax`'s full grid: every method still
  meets every other row, so each feature of the table (a rank, padding form,
  transpose, group layout) reaches several methods, and tests sampled with
  opposite parities cover every pair between them, at half the compile time
  on 2 cores. Ids are `case-method`, as stacked parametrize decorators give.
  """
  return [pytest.param(case, method, id=f"{case.id}-{method}", marks=marks(case))
          for i, case in enumerate(cases)
          for j, method in enumerate(METHOD_NAMES) if (i + j) % 2 == parity]

# (method, case id) -> a substring of the NotImplementedError the method raises
# for that row. Exact both ways: a decline not listed here fails, and so does a
# listed one that no longer happens. Empty: every method runs every row.
EXPECTED_DECLINES: dict[tuple[str, str], str] = {}


def expect_decline(case: Case, method: str, call: Callable[[], Any] | None = None) -> bool:
  """Whether `method` declines `case` as pinned in `EXPECTED_DECLINES`.

  `call` runs the row (default: `case.eval_shape(method)`, tracing only). A
  pinned decline must raise `NotImplementedError` containing the pinned reason
  (then True: the caller has nothing more to check); an unpinned row must not
  raise it (False).
  """
  call = call or (lambda: case.eval_shape(method))
  pinned = EXPECTED_DECLINES.get((method, case.id))
  if pinned is not None:
    with pytest.raises(NotImplementedError, match=re.escape(pinned)):
      call()
    return True
  try:
    call()
  except NotImplementedError as e:
    pytest.fail(f"method={method!r} declines row {case.id!r} and (method, id) is not in "
                f"tests/configs.py EXPECTED_DECLINES: {e}")
  return False


def assert_exact(method, actual, desired):
  """Equal to the last bit for exact methods; to float rounding for methods
  whose rounding grows with a transform (`jaxconv.testing.rounding`)."""
  import numpy as np
  from jaxconv.testing import rounding
  desired = np.asarray(desired, np.float64)
  if rounding(method) == "transform":   # the method declares it rounds (the FFT)
    scale = max(float(np.abs(desired).max()), 1.0)
    np.testing.assert_allclose(np.asarray(actual, np.float64), desired, rtol=0,
                               atol=1e-5 * scale)
  else:
    np.testing.assert_array_equal(actual, desired)
