"""The algorithms. Each module exports `supports(g) -> str | None` and
`conv(x, w, g) -> Array` (see DESIGN.md, "The contract of a method").

A method receives channels-first `x` `(N, C_in, *spatial)` (already padded for
non-zero padding modes) and `w` `(C_out, C_in // groups, *kernel)` (already
flipped when `g.flip`), and returns `(N, C_out, *g.out_spatial)` computing the
cross-correlation with `g`'s zero padding, strides, dilations and groups.
"""

from . import direct, fft, im2col, toeplitz
from . import lax as lax_method

# name -> module; order is the order of preference in error messages.
METHODS = {
    "lax": lax_method,
    "direct": direct,
    "im2col": im2col,
    "toeplitz": toeplitz,
    "fft": fft,
}
