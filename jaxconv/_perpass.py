"""One convolution whose forward pass, input gradient and weight gradient run
different methods (a `jaxconv._select.Plan`).

The convolution is bilinear, so its tangent is
`conv(dx, w) + conv(x, dw)`. A `jax.custom_jvp` computes the primal with the
forward method and the two tangent terms with the input-gradient and the
weight-gradient methods. Reverse mode linearises this rule and transposes
each term: the first becomes the dx method's transposed convolution of the
cotangent, the second its dw correlation. Forward mode (`jvp`, `jacfwd`)
evaluates the rule as it is, and higher orders differentiate the rule, which
is made of ordinary method calls, so every order of differentiation works.
A tangent JAX knows to be zero (`symbolic_zeros`) costs nothing: the
gradient in `w` alone never runs the dx method.

A plan whose differentiated calls run one method (`Plan.fwd_train`, where
mixing is not estimated to pay) keeps its fastest forward for calls without
gradients: a `custom_jvp` whose primal is that forward and whose rule is the
training method's own jvp.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from ._geometry import Geometry
from ._methods import METHODS, hook
from ._methods.common import PASSES, bilinear_conv, conv_with_jvp
from ._padding import method_geometry, pad_mode

PERIODIC = " (periodic)"


def pass_conv(name: str, padded: bool, pass_: str = "fwd"):
  """The `(x, w, g) -> y` function of candidate `name` for a pass.

  Args:
    name: a registered method, or `'<method> (periodic)'` for its periodic
      hook (which takes the unpadded input and the user geometry).
    padded: True when the caller already applied the padding mode (`g` is a
      method geometry); False when `x` is unpadded and `g` the user geometry,
      so a non-periodic method pads first.
    pass_: 'dx' takes the method's `input_term` and 'dw' its `weight_term`
      where it has them: the same convolution, written so that its transpose
      in `x` (in `w`) is a good dX (dW) pass.
  """
  if name.endswith(PERIODIC):
    return hook(name[:-len(PERIODIC)], "periodic").periodic_conv
  module = METHODS[name]
  term = {"dx": "input_term", "dw": "weight_term"}.get(pass_)
  conv = getattr(module, term, module.conv) if term else module.conv
  if padded:
    return conv
  return functools.partial(_pad_then, conv)


def _pad_then(conv, x, w, g: Geometry):
  if g.padding_mode != "zeros":
    x = pad_mode(x, g.padding, g.padding_mode)
  return conv(x, w, method_geometry(g))


@functools.lru_cache(maxsize=None)
def per_pass(fwd: str, dx: str, dw: str, padded: bool = True, fwd_train: str | None = None):
  """`(x, w, g) -> y` running `fwd` forward and `dx`/`dw` for the gradients.

  Args:
    fwd, dx, dw: candidate names (see `pass_conv`).
    padded: as `pass_conv`; False when any of them is a periodic hook.
    fwd_train: a candidate that then runs the whole of a differentiated call
      (its forward and its own derivatives, `jax.jvp` of it), while `fwd`
      serves calls without gradients (`jaxconv._select.Plan.fwd_train`).

  Returns:
    A function of `(x, w, g)` (`g` static and hashable), with a `custom_jvp`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxconv._geometry import geometry_of
    >>> from jaxconv._methods import lax as lax_method
    >>> from jaxconv._perpass import per_pass
    >>> g = geometry_of((1, 2, 8), (3, 2, 3))
    >>> f = per_pass("direct", "fft", "im2col")
    >>> x, w = jnp.ones((1, 2, 8)), jnp.ones((3, 2, 3))
    >>> dx, dw = jax.grad(lambda x, w: f(x, w, g).sum(), (0, 1))(x, w)
    >>> rx, rw = jax.grad(lambda x, w: lax_method.conv(x, w, g).sum(), (0, 1))(x, w)
    >>> bool(jnp.allclose(dx, rx, atol=1e-5) and jnp.allclose(dw, rw, atol=1e-5))
    True
  """
  f_fwd, f_dx, f_dw = (pass_conv(m, padded, p) for m, p in zip((fwd, dx, dw), PASSES))
  if fwd_train is not None:
    return _forward_only(f_fwd, pass_conv(fwd_train, padded))
  return bilinear_conv(f_fwd, f_dx, f_dw)


def _forward_only(fwd, train):
  """`fwd(x, w, g)` without gradients; under differentiation `train`, with
  its own derivatives (its jvp, which reverse mode transposes as usual), so
  that its forward and gradients share work in one program."""
  def rule(conv, g, x, w, tx, tw):
    del conv
    if isinstance(tx, SymbolicZero) and isinstance(tw, SymbolicZero):
      y = train(x, w, g)
      return y, jnp.zeros_like(y)
    if isinstance(tx, SymbolicZero):
      return jax.jvp(lambda w: train(x, w, g), (w,), (tw,))
    if isinstance(tw, SymbolicZero):
      return jax.jvp(lambda x: train(x, w, g), (x,), (tx,))
    return jax.jvp(lambda x, w: train(x, w, g), (x, w), (tx, tw))

  return conv_with_jvp(fwd, rule)
