"""The memory budget: how many temporary bytes a method may plan to use.

Every method estimates its forward pass's temporary bytes from the geometry
(`temp_bytes`, the method contract) before anything is built. A method named
explicitly whose estimate is over the budget is declined with the numbers and
the methods that fit; `auto` and `autotune` skip it.

The budget is the `memory_budget` argument of the public functions, else
`$JAXCONV_MEMORY_BUDGET` (bytes, or with a K/M/G/T suffix, binary: '512M',
'4G'), else `DEVICE_FRACTION` of the device's memory (an accelerator's
`bytes_limit`, or the host's RAM for the CPU).
"""

from __future__ import annotations

import functools
import os
import re

import jax

from ._geometry import is_int

ENV_VAR = "JAXCONV_MEMORY_BUDGET"
DEVICE_FRACTION = 0.5
"""Share of the device's memory one convolution's temporaries may take."""

_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_BYTES = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?(?:[eE][0-9]+)?)\s*([KMGT]?)(?:i?B)?\s*$",
                    re.IGNORECASE)


def _parse(text: str) -> int:
  m = _BYTES.match(text)
  if m is None or float(m.group(1)) <= 0:
    raise ValueError(
        f"jaxconv: ${ENV_VAR} must be a positive number of bytes, optionally with a "
        f"K/M/G/T suffix (e.g. '4G'); got {ENV_VAR}={text!r}.")
  return int(float(m.group(1)) * _SUFFIX[m.group(2).upper()])


@functools.lru_cache(maxsize=1)
def device_memory_bytes() -> int:
  """The default device's memory: `bytes_limit` if it reports one, else host RAM."""
  try:
    stats = jax.devices()[0].memory_stats() or {}
  except Exception:  # noqa: BLE001 -- backends without memory stats
    stats = {}
  if stats.get("bytes_limit"):
    return int(stats["bytes_limit"])
  try:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError, AttributeError):
    return 8 << 30


def memory_budget(budget=None, fn: str = "jaxconv") -> int:
  """The budget in bytes: `budget` if given, else `$JAXCONV_MEMORY_BUDGET`, else
  `DEVICE_FRACTION` of the device's memory.

  Args:
    budget: None, or a positive int (bytes).
    fn: the public function, for the error message.

  Raises:
    TypeError: `budget` is not None or an int.
    ValueError: `budget` (or the environment variable) is not positive.

  Example:
    >>> from jaxconv._budget import memory_budget
    >>> memory_budget(1 << 20)
    1048576
  """
  if budget is not None:
    if not is_int(budget):
      raise TypeError(f"{fn}: `memory_budget` must be None or an int (bytes); got "
                      f"memory_budget={budget!r}.")
    if budget < 1:
      raise ValueError(f"{fn}: `memory_budget` must be positive; got memory_budget={budget}.")
    return int(budget)
  env = os.environ.get(ENV_VAR, "")
  if env:
    return _parse(env)
  return int(DEVICE_FRACTION * device_memory_bytes())


def human(n: int) -> str:
  """`n` bytes as '1.5 GiB'."""
  for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
    if n >= size:
      return f"{n / size:.3g} {unit}"
  return f"{n} B"


def over(temp: int, budget: int) -> str | None:
  """The decline reason when `temp` bytes exceed `budget`, else None."""
  if temp <= budget:
    return None
  return (f"its forward pass needs ~{human(temp)} of temporary memory, over the budget of "
          f"{human(budget)} (`memory_budget` or ${ENV_VAR})")
