"""The benchmark cases: named convolutions taken from real networks.

A `Case` is pure data (shapes and keyword arguments of `jaxconv.conv` or
`jaxconv.conv_transpose`); `bench/problem.py` turns it into arrays and
functions. `QUICK` is what `make bench` runs (the cases of issue 2 and the FFT
cases); `FULL` adds the model zoo of issue 5 and the kernel-size sweeps that
feed the time-vs-kernel-size plots.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from collections.abc import Iterable, Sequence
from typing import Any

# Families of the kernel-size sweeps, one plot each (see bench/plots.py).
SERIES = ("dense2d", "depthwise2d", "1d")


@dataclasses.dataclass(frozen=True)
class Case:
  """One named convolution.

  Attributes:
    name: unique id, used by `--cases` (glob patterns allowed).
    source: the network (and layer) it comes from, shown in every table.
    x_shape: input `(N, C_in, *spatial)`.
    w_shape: `(C_out, C_in // groups, *kernel)` for a conv, or
      `(C_in, C_out // groups, *kernel)` (PyTorch's layout) when `transposed`.
    kwargs: keyword arguments of `jaxconv.conv` / `jaxconv.conv_transpose`:
      `stride`, `dilation`, `groups` (ints) and `padding` (an int or per-dim
      `(lo, hi)` pairs), `output_padding` for transposed convs.
    transposed: True for `jaxconv.conv_transpose`.
    series: a kernel-size sweep family in `SERIES` (plotted), or None.
    peers: names of peer implementations to run on this case besides the
      methods (see bench/peers.py); `torch` is tried on every case.
    skip: method -> reason, for combinations known to be infeasible on a
      small CPU (e.g. an unrolled loop over 16384 kernel taps). Shown as
      "skipped" with the reason, never silently dropped.
  """

  name: str
  source: str
  x_shape: tuple[int, ...]
  w_shape: tuple[int, ...]
  kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
  transposed: bool = False
  series: str | None = None
  peers: tuple[str, ...] = ()
  skip: dict[str, str] = dataclasses.field(default_factory=dict)

  @property
  def rank(self) -> int:
    """Number of spatial dimensions."""
    return len(self.x_shape) - 2

  @property
  def kernel_size(self) -> tuple[int, ...]:
    return tuple(self.w_shape[2:])

  @property
  def padding_mode(self) -> str:
    """`jaxconv.conv`'s `padding_mode` ('zeros' unless the case gives one)."""
    return self.kwargs.get("padding_mode", "zeros")

  @property
  def kernel_taps(self) -> int:
    """Number of kernel positions, the x-axis of the sweep plots."""
    return math.prod(self.kernel_size)

  def describe(self) -> str:
    """A one-line summary: shapes and non-default arguments."""
    args = " ".join(f"{k}={_short(v)}" for k, v in self.kwargs.items())
    kind = "convT " if self.transposed else ""
    return f"{kind}x{_dims(self.x_shape)} w{_dims(self.w_shape)} {args}".strip()


def _dims(shape: Sequence[int]) -> str:
  return "(" + ",".join(str(s) for s in shape) + ")"


def _short(v) -> str:
  """Padding pairs as `3` when symmetric and equal, else as given."""
  if isinstance(v, tuple) and v and all(isinstance(p, tuple) for p in v):
    if len({p for p in v}) == 1 and v[0][0] == v[0][1]:
      return str(v[0][0])
    return ",".join(f"{lo}:{hi}" for lo, hi in v)
  return str(v)


def _pads(p: int, rank: int) -> tuple[tuple[int, int], ...]:
  return ((p, p),) * rank


# --- the cases ---------------------------------------------------------------

_FFT_PEERS = ("jax.scipy.signal.fftconvolve", "scipy.signal.fftconvolve")

# Methods that decline a case say why themselves (`supports`: e.g. 'direct'
# and 'im2col' above 1024 kernel taps); the runner reports their reason.
# `skip` holds only what the bench measured and chose not to repeat:
# Measured (bench/results/quick.json, 2026-11-22): 43 s to compile, then its
# backward needs 3.7 GiB of XLA temp memory, over the default --max-temp-gb.
_DIRECT_961 = ("not attempted: 961 unrolled kernel taps; measured 43 s to compile and "
               "3.7 GiB XLA temp memory for forward+backward (> 2 GiB limit)")

_QUICK = (
    Case("convnext-dw7x7", "ConvNeXt-T stage 1, depthwise 7x7",
         (8, 96, 56, 56), (96, 1, 7, 7), {"padding": _pads(3, 2), "groups": 96}),
    Case("resnet50-1x1", "ResNet-50 bottleneck 1x1 reduce",
         (8, 256, 56, 56), (64, 256, 1, 1)),
    Case("resnet-3x3", "ResNet-50 conv2_x 3x3",
         (8, 64, 56, 56), (64, 64, 3, 3), {"padding": _pads(1, 2)}),
    Case("replknet-dw31x31", "RepLKNet-31B, depthwise 31x31",
         (4, 64, 64, 64), (64, 1, 31, 31), {"padding": _pads(15, 2), "groups": 64},
         skip={"direct": _DIRECT_961}),
    Case("dense-15x15", "large dense kernel 15x15 (FFT crossover)",
         (4, 16, 128, 128), (16, 16, 15, 15), {"padding": _pads(7, 2)}),
    Case("hyena-causal-1d-4k", "Hyena long causal filter, depthwise 1-D (4k)",
         (1, 64, 4096), (64, 1, 4096), {"padding": ((4095, 0),), "groups": 64},
         peers=_FFT_PEERS),
    # Circular padding: auto may run a method's periodic hook (fft: one
    # transform of the input's own size, no wrap-padded copy).
    Case("circular-dw15x15", "periodic depthwise 15x15 (circular padding)",
         (4, 32, 64, 64), (32, 1, 15, 15),
         {"padding": 7, "groups": 32, "padding_mode": "circular"}),
)

_ZOO = (
    # XLA's CPU depthwise conv runs it at ~0.6 GFLOP/s: lax alone (reference +
    # timed runs, forward and backward) takes ~8 minutes, so it is not in QUICK.
    Case("hyena-causal-1d", "Hyena long causal filter, depthwise 1-D (16k)",
         (1, 64, 16384), (64, 1, 16384), {"padding": ((16383, 0),), "groups": 64},
         peers=_FFT_PEERS),
    Case("resnet50-stem-7x7s2", "ResNet-50 stem 7x7 stride 2",
         (8, 3, 224, 224), (64, 3, 7, 7), {"stride": 2, "padding": _pads(3, 2)}),
    Case("resnet50-3x3s2", "ResNet-50 conv3_x strided 3x3",
         (8, 128, 56, 56), (128, 128, 3, 3), {"stride": 2, "padding": _pads(1, 2)}),
    Case("mobilenetv2-dw3x3", "MobileNetV2 depthwise 3x3",
         (8, 144, 56, 56), (144, 1, 3, 3), {"padding": _pads(1, 2), "groups": 144}),
    Case("mobilenetv2-dw3x3s2", "MobileNetV2 depthwise 3x3 stride 2",
         (8, 144, 56, 56), (144, 1, 3, 3),
         {"stride": 2, "padding": _pads(1, 2), "groups": 144}),
    Case("unet-up2x2", "U-Net decoder 2x2/2 transposed conv",
         (4, 128, 64, 64), (128, 64, 2, 2), {"stride": 2}, transposed=True),
    Case("wavenet-dilated-1d", "WaveNet dilated causal 1-D (k=2, d=64)",
         (4, 64, 4096), (64, 64, 2), {"padding": ((64, 0),), "dilation": 64}),
    Case("volume-3x3x3", "3-D volume conv 3x3x3 on 64^3 (8 channels)",
         (1, 8, 64, 64, 64), (8, 8, 3, 3, 3), {"padding": _pads(1, 3)}),
    Case("lenet-5x5", "LeNet-5 C1 5x5 (MNIST 32x32)",
         (64, 1, 32, 32), (6, 1, 5, 5)),
)


def _sweeps() -> tuple[Case, ...]:
  """Kernel-size sweeps at fixed input shapes: where does each method win?"""
  out = []
  for k in (3, 7, 15, 31):
    out.append(Case(f"sweep-dense2d-k{k}", "sweep: dense 2-D, 16->16, 64x64",
                    (2, 16, 64, 64), (16, 16, k, k), {"padding": _pads(k // 2, 2)},
                    series="dense2d"))
  for k in (3, 7, 15, 31):
    out.append(Case(f"sweep-dw2d-k{k}", "sweep: depthwise 2-D, C=64, 64x64",
                    (2, 64, 64, 64), (64, 1, k, k),
                    {"padding": _pads(k // 2, 2), "groups": 64}, series="depthwise2d"))
  for k in (16, 64, 256, 1024, 4096):
    out.append(Case(f"sweep-1d-k{k}", "sweep: causal depthwise 1-D, C=64, L=4096",
                    (1, 64, 4096), (64, 1, k), {"padding": ((k - 1, 0),), "groups": 64},
                    series="1d"))
  return tuple(out)


QUICK: tuple[Case, ...] = _QUICK
FULL: tuple[Case, ...] = _QUICK + _ZOO + _sweeps()
ALL: dict[str, Case] = {c.name: c for c in FULL}


def select(suite: str, patterns: Iterable[str] | None = None) -> list[Case]:
  """The cases of `suite` ('quick' or 'full'), filtered by name patterns.

  Args:
    suite: 'quick' or 'full'.
    patterns: `fnmatch` globs on case names (e.g. `'resnet*'`). When given,
      they select from every case of the full table, whatever `suite` says.

  Returns:
    The matching cases, in table order.

  Raises:
    ValueError: an unknown suite, or a pattern that matches no case.
  """
  if suite not in ("quick", "full"):
    raise ValueError(f"bench: unknown suite {suite!r}; expected 'quick' or 'full'.")
  if not patterns:
    return list(QUICK if suite == "quick" else FULL)
  patterns = list(patterns)
  for p in patterns:
    if not any(fnmatch.fnmatchcase(name, p) for name in ALL):
      raise ValueError(
          f"bench: --cases {p!r} matches no case; known cases: {', '.join(ALL)}.")
  return [c for c in FULL if any(fnmatch.fnmatchcase(c.name, p) for p in patterns)]
