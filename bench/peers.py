"""Peer implementations timed in the same run as jaxconv's methods, where
installed: `jax.scipy.signal.fftconvolve` and `scipy.signal.fftconvolve` on
causal depthwise 1-D cases, and PyTorch's `torch.nn.functional.conv*` on every
case. A peer that is not installed is reported once as skipped, with a note.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from .cases import Case
from .problem import _pairs, _per_dim


@dataclasses.dataclass(frozen=True)
class Peer:
  """Another library's implementation of a case.

  Attributes:
    name: shown in the method column, prefixed `peer:`.
    module: the module that must be importable.
    traceable: True for a JAX function (jitted, differentiated and
      memory-analysed like a method); False for a host (NumPy/PyTorch) one.
    build: `case -> (forward, forward_backward or None)`; raises
      NotImplementedError for a case the peer cannot express. A traceable
      peer returns `(f, None)`: its backward comes from `jax.vjp`. A host
      peer's callables take and return NumPy arrays: `f(x, w) -> y` and
      `g(x, w, ct) -> (y, dx, dw)`, one training step (forward and both
      gradients).
  """

  name: str
  module: str
  traceable: bool
  build: Callable[[Case], tuple[Callable, Callable | None]]

  def missing(self) -> str | None:
    """Why this peer cannot run here, or None."""
    if importlib.util.find_spec(self.module) is None:
      return f"{self.module} is not installed"
    return None


def _causal_depthwise_1d(case: Case) -> int:
  """Kernel length K of a causal depthwise 1-D case; NotImplementedError otherwise."""
  kw = case.kwargs
  c = case.x_shape[1]
  ok = (case.rank == 1 and not case.transposed and case.w_shape[:2] == (c, 1)
        and kw.get("groups", 1) == c and _per_dim(kw.get("stride", 1), 1) == (1,)
        and _per_dim(kw.get("dilation", 1), 1) == (1,)
        and _pairs(kw.get("padding", 0), 1) == ((case.w_shape[2] - 1, 0),))
  if not ok:
    raise NotImplementedError("fftconvolve peers only express causal depthwise 1-D")
  return case.w_shape[2]


def _jax_fftconvolve(case: Case):
  length = case.x_shape[2]
  _causal_depthwise_1d(case)
  from jax.scipy.signal import fftconvolve

  def f(x, w):  # correlation with the causal pad == first L of the full convolution
    k = jnp.broadcast_to(jnp.flip(w[:, 0, :], -1)[None], (x.shape[0], *w[:, 0].shape))
    return fftconvolve(x, k, axes=(2,))[..., :length]
  return f, None


def _scipy_fftconvolve(case: Case):
  length = case.x_shape[2]
  _causal_depthwise_1d(case)
  from scipy.signal import fftconvolve

  def f(x, w):
    return fftconvolve(x, w[None, :, 0, ::-1], axes=2)[..., :length]
  return f, None


def _torch(case: Case):
  import torch
  import torch.nn.functional as F  # noqa: N812

  rank = case.rank
  if rank not in (1, 2, 3):
    raise NotImplementedError(f"torch has no {rank}-D convolution")
  kw = case.kwargs
  stride = _per_dim(kw.get("stride", 1), rank)
  dilation = _per_dim(kw.get("dilation", 1), rank)
  groups = kw.get("groups", 1)
  pads = _pairs(kw.get("padding", 0), rank)
  if case.transposed:
    if any(lo != hi for lo, hi in pads):
      raise NotImplementedError("torch conv_transpose needs symmetric padding")
    op = getattr(F, f"conv_transpose{rank}d")
    extra = {"padding": tuple(lo for lo, _ in pads),
             "output_padding": _per_dim(kw.get("output_padding", 0), rank)}

    def conv(x, w):
      return op(x, w, stride=stride, groups=groups, dilation=dilation, **extra)
  else:
    op = getattr(F, f"conv{rank}d")
    flat = tuple(v for lo, hi in reversed(pads) for v in (lo, hi))  # F.pad order

    def conv(x, w):
      return op(F.pad(x, flat), w, stride=stride, dilation=dilation, groups=groups)

  def f(x, w):
    with torch.no_grad():
      return conv(torch.from_numpy(x), torch.from_numpy(w)).numpy()

  def g(x, w, ct):
    tx = torch.from_numpy(x).requires_grad_()
    tw = torch.from_numpy(w).requires_grad_()
    y = conv(tx, tw)
    y.backward(torch.from_numpy(ct))
    return y.detach().numpy(), tx.grad.numpy(), tw.grad.numpy()
  return f, g


PEERS: dict[str, Peer] = {p.name: p for p in (
    Peer("jax.scipy.signal.fftconvolve", "jax", True, _jax_fftconvolve),
    Peer("scipy.signal.fftconvolve", "scipy", False, _scipy_fftconvolve),
    Peer("torch", "torch", False, _torch),
)}
"""Name -> peer. `torch` runs on every case; the others where a case lists them."""


def peers_for(case: Case) -> list[Peer]:
  """The peers to try on `case`: those it names, then torch."""
  names = [*case.peers, *(["torch"] if "torch" not in case.peers else [])]
  return [PEERS[n] for n in names]


def as_numpy(*arrays) -> tuple[np.ndarray, ...]:
  """Host copies for host peers (made before timing, not timed)."""
  return tuple(np.asarray(a) for a in arrays)
