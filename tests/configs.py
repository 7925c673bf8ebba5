"""The shared table of convolution geometries, used by every method's tests.

Each `Case` is one call of `jaxconv.conv` (or `conv_transpose` when
`transpose`), small enough for a 2-core CPU. Ids read as the geometry.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxconv._methods import METHODS


@dataclasses.dataclass(frozen=True)
class Case:
  id: str
  x_shape: tuple[int, ...]
  w_shape: tuple[int, ...]
  kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
  transpose: bool = False
  bias: bool = False


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
    Case("T1d-stride2", (2, 3, 5), (3, 2, 3), dict(stride=2), transpose=True),
    Case("T2d-unet-2x2/2", (1, 4, 4, 4), (4, 2, 2, 2), dict(stride=2), transpose=True,
         bias=True),
    Case("T2d-pad1-outpad1-groups2", (2, 4, 5, 5), (4, 3, 3, 3),
         dict(stride=2, padding=1, output_padding=1, groups=2), transpose=True),
    Case("T2d-dilation2-stride3-outpad2", (1, 2, 4, 4), (2, 2, 3, 3),
         dict(dilation=2, stride=3, output_padding=2), transpose=True),
    Case("T3d-stride2", (1, 2, 3, 3, 3), (2, 2, 2, 2, 2), dict(stride=2), transpose=True),
]

CASE_IDS = [c.id for c in CASES]
METHOD_NAMES = list(METHODS)
# Methods whose arithmetic is not exact on small integers (transforms round).
INEXACT_METHODS = ("fft",)


def assert_exact(method, actual, desired):
  """Equal to the last bit for exact methods; to float rounding for FFT."""
  import numpy as np
  desired = np.asarray(desired, np.float64)
  if method in INEXACT_METHODS:
    scale = max(float(np.abs(desired).max()), 1.0)
    np.testing.assert_allclose(np.asarray(actual, np.float64), desired, rtol=0,
                               atol=1e-5 * scale)
  else:
    np.testing.assert_array_equal(actual, desired)
