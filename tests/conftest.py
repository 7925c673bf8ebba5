"""Test configuration: float64 available for the tight derivative checks."""

import jax

jax.config.update("jax_enable_x64", True)
