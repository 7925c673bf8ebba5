"""Settle glibc's malloc before timing, so that a timing does not depend on
what the process happened to allocate before.

XLA:CPU allocates its buffers and temporaries with `malloc` on every call.
glibc serves a request above its *mmap threshold* with a fresh `mmap`, whose
pages fault in (and are zeroed) on first touch, on every call: 25 MB of
output costs ~10 ms more that way on a 2-core Xeon. The threshold starts at
128 KiB and only grows: freeing an mmapped chunk raises it to that chunk's
size, up to a ceiling of 32 MiB (64-bit). So the same compiled convolution
runs 1.7x slower in a young process than in one that has freed a large
buffer (measured: ResNet-50 stem, lax forward, 27.6 ms then 16.2 ms).

`settle()` frees one chunk just under the ceiling, putting malloc in the state
every long-running process (a training loop) reaches. `python -m
jaxconv.calibrate`, `autotune` and `python -m bench` call it before they time
anything, so that profiles, tuned choices and benchmark ratios describe that
state. Elsewhere it does nothing: other C libraries have no such threshold.
"""

from __future__ import annotations

import ctypes
import functools
import platform

CEILING_BYTES = 32 << 20
"""glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: the dynamic threshold's limit."""

_CHUNK_BYTES = CEILING_BYTES - (64 << 10)
"""Requested size: its chunk (header and page rounding included) must not
exceed the ceiling, or glibc leaves the threshold where it is."""


@functools.lru_cache(maxsize=None)
def _libc():
  if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
    return None
  libc = ctypes.CDLL(None)
  libc.malloc.restype = ctypes.c_void_p
  libc.malloc.argtypes = [ctypes.c_size_t]
  libc.free.argtypes = [ctypes.c_void_p]
  return libc


def settle() -> bool:
  """Raise glibc's dynamic mmap threshold to its ceiling, as a long-running
  process would; idempotent and cheap (one untouched `mmap`/`munmap`).

  Returns:
    True where the C library is glibc (the threshold is now 32 MiB), False
    elsewhere (nothing done).

  Example:
    >>> from jaxconv import _malloc
    >>> _malloc.settle() in (True, False)
    True
  """
  libc = _libc()
  if libc is None:
    return False
  chunk = libc.malloc(_CHUNK_BYTES)
  if chunk:
    libc.free(chunk)
  return True
