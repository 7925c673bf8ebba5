"""`method="lax"`: XLA's native convolution, `lax.conv_general_dilated`."""

from __future__ import annotations

from jax import lax

from .._geometry import Geometry


def supports(g: Geometry) -> str | None:
  """XLA's convolution handles every geometry."""
  del g
  return None


def conv(x, w, g: Geometry):
  """Channels-first `lax.conv_general_dilated` with `g`'s arguments."""
  return lax.conv_general_dilated(
      x, w, window_strides=g.stride, padding=g.padding, lhs_dilation=g.lhs_dilation,
      rhs_dilation=g.dilation, feature_group_count=g.groups, precision=g.precision,
      preferred_element_type=g.preferred_element_type)
