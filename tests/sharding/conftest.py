"""Sharding tests: their own process, 8 host CPU devices (`make test` runs
`pytest tests/sharding` separately, since XLA reads the device count once)."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=8").strip()

import jax  # noqa: E402  (after XLA_FLAGS)

jax.config.update("jax_enable_x64", True)
