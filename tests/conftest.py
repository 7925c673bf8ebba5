"""Test configuration: float64 on for the tight derivative checks, unless
JAXCONV_TEST_X64=0 asks for JAX's default float32 mode (the second run of
`make test`; tests that need float64 then skip, see configs.needs_x64)."""

import os

import jax

jax.config.update("jax_enable_x64", os.environ.get("JAXCONV_TEST_X64", "1") != "0")


def _pin_shipped_cpu_profile() -> None:
  """Rank with the shipped CPU profile as if it were measured on this machine:
  CI runs on other CPUs, where `auto` would fall back to it with a warning
  and a larger margin (tests/test_profiles.py tests that fallback)."""
  import json
  from pathlib import Path
  data = json.loads((Path(__file__).parent.parent / "jaxconv" / "_data" /
                     "cost_model.json").read_text())
  # The profile marked as the CPU fallback first: the suite was written against it.
  cpu = sorted((not e.get("fallback"), k) for k, e in data["profiles"].items()
               if k.startswith("cpu:"))
  if cpu:
    os.environ.setdefault("JAXCONV_DEVICE_KEY", cpu[0][1])


_pin_shipped_cpu_profile()
