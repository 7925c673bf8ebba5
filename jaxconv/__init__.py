"""jaxconv: pure, differentiable convolutions for JAX, computed several ways.

One call, `jaxconv.conv(x, w, ..., method=...)`, computes the same convolution
with XLA's native convolution ('lax'), shift-and-add ('direct'), patches +
GEMM ('im2col'), block-Toeplitz matrices ('toeplitz') or the FFT ('fft'), or
lets `method="auto"` (a cost model) or `"autotune"` (timing) choose; the
methods are listed by `jaxconv.method_names()`. Every method is
differentiable to any order, `jit`/`vmap` safe, and checked against
`jax.lax.conv_general_dilated` (`jaxconv.testing.check_against_lax`).
"""

from . import kernels as kernels
from . import nn as nn
from . import testing as testing
from ._autotune import clear_autotune_cache as clear_autotune_cache
from ._conv import conv as conv
from ._conv import conv_general_dilated as conv_general_dilated
from ._conv import conv_transpose as conv_transpose
from ._conv import method_names as method_names
from ._geometry import output_shape as output_shape
from ._matrices import circulant_matrix as circulant_matrix
from ._matrices import conv_matrix as conv_matrix
from ._matrices import toeplitz_matrix as toeplitz_matrix
from ._operator import ConvOperator as ConvOperator
from ._operator import conv_operator as conv_operator
from ._patches import fold as fold
from ._patches import unfold as unfold
from ._select import select_method as select_method
from ._sharded import sharded_conv as sharded_conv
from ._signal import convolve as convolve
from ._signal import correlate as correlate
from ._signal import fftconvolve as fftconvolve
from ._signal import next_fast_len as next_fast_len
from ._signal import oaconvolve as oaconvolve
from ._windows import patchify as patchify
from ._windows import unpatchify as unpatchify
from ._windows import window_partition as window_partition
from ._windows import window_reverse as window_reverse

__version__ = "0.1.0"

__all__ = [
    "ConvOperator",
    "circulant_matrix",
    "clear_autotune_cache",
    "conv",
    "conv_general_dilated",
    "conv_matrix",
    "conv_operator",
    "conv_transpose",
    "convolve",
    "correlate",
    "fftconvolve",
    "fold",
    "method_names",
    "next_fast_len",
    "oaconvolve",
    "output_shape",
    "patchify",
    "select_method",
    "sharded_conv",
    "toeplitz_matrix",
    "unfold",
    "unpatchify",
    "window_partition",
    "window_reverse",
]
