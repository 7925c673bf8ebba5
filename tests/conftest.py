"""Test configuration: float64 on for the tight derivative checks, unless
JAXCONV_TEST_X64=0 asks for JAX's default float32 mode (the second run of
`make test`; tests that need float64 then skip, see configs.needs_x64)."""

import os

import jax

jax.config.update("jax_enable_x64", os.environ.get("JAXCONV_TEST_X64", "1") != "0")
