"""Eight host CPU devices, for the sharded tests, in their own pytest process.

`make test` runs this folder as `pytest tests/sharding` after the main suite
(which ignores it). The flag only takes effect before JAX creates its CPU
backend, so it is set only when this folder is all the run collects: a bare
`pytest tests` keeps one device for the main suite, and the sharded tests
then skip themselves (`test_sharded_conv.py`).
"""

import os
import pathlib

import jax

HERE = pathlib.Path(__file__).resolve().parent
FLAG = "--xla_force_host_platform_device_count=8"


def _only_this_folder(args) -> bool:
  paths = [pathlib.Path(a.split("::")[0]).resolve() for a in args]
  return bool(paths) and all(p == HERE or HERE in p.parents for p in paths)


def pytest_configure(config):
  if _only_this_folder(config.args) and FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FLAG}".strip()
  jax.config.update("jax_enable_x64", True)
