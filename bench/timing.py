"""Compiling and timing: ahead-of-time compile with XLA's memory analysis,
warm-up, and an adaptive number of repeats around `block_until_ready`, run
round-robin across the candidates of one case.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Policy:
  """How many timed runs, given the time `t` of the first one.

  `repeats = clamp(round(target_s / t), min_repeats, max_repeats)`, except that
  a function slower than `slow_s` gets `slow_repeats` (the lax baseline must
  still be timed, since every ratio is against it). `fixed` overrides all.
  """

  target_s: float = 0.25
  min_repeats: int = 3
  max_repeats: int = 15
  slow_s: float = 1.0
  slow_repeats: int = 1
  fixed: int | None = None

  def repeats(self, t: float) -> int:
    if self.fixed is not None:
      return self.fixed
    if t > self.slow_s:
      return self.slow_repeats
    n = round(self.target_s / max(t, 1e-9))
    return max(self.min_repeats, min(self.max_repeats, n))

  def per_pass(self) -> Policy:
    """The policy of the per-pass programs (a method's dX and dW alone): half
    the target time and half the cap (not below `min_repeats`; `fixed` still
    wins). They double the programs timed per case; their medians feed
    summaries (best per-pass combination), not the headline ratios."""
    return dataclasses.replace(self, target_s=self.target_s / 2,
                               max_repeats=max(self.min_repeats, self.max_repeats // 2))


QUICK = Policy()
FULL = Policy(target_s=1.0, min_repeats=5, max_repeats=50, slow_s=5.0, slow_repeats=3)


@dataclasses.dataclass(frozen=True)
class Stats:
  """Wall-clock seconds of the timed runs; `warmup` is the (excluded) first call."""

  median: float
  min: float
  max: float
  repeats: int
  warmup: float

  @classmethod
  def of(cls, samples: list[float], warmup: float) -> Stats:
    return cls(statistics.median(samples), min(samples), max(samples), len(samples),
               warmup)


@dataclasses.dataclass
class Compiled:
  """An XLA executable with its compile time and temp memory (bytes or None)."""

  call: Callable[..., Any]
  compile_s: float
  temp_bytes: int | None


def compile_jax(fn: Callable, *args) -> Compiled:
  """`jax.jit(fn)` lowered and compiled for `args`, timed.

  Raises whatever tracing raises (e.g. NotImplementedError from a method).
  """
  t = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  compile_s = time.perf_counter() - t
  return Compiled(lambda *a: jax.block_until_ready(compiled(*a)), compile_s,
                  _temp_bytes(compiled))


def _temp_bytes(compiled) -> int | None:
  try:
    stats = compiled.memory_analysis()
  except Exception:  # noqa: BLE001 -- some backends do not implement it
    return None
  return None if stats is None else int(stats.temp_size_in_bytes)


def run_once(call: Callable[[], Any]) -> tuple[Any, float]:
  """Run `call` (which must block until its result is ready); result and seconds."""
  t = time.perf_counter()
  out = call()
  return out, time.perf_counter() - t


def measure_round_robin(calls: Sequence[tuple[Callable[[], Any], float]],
                        policy: Policy | Sequence[Policy]) -> list[Stats]:
  """Time several `(call, warmup seconds)` in rounds: each round runs each once.

  On a machine shared with other jobs the load changes within seconds; timing
  the candidates of one case one after another would charge a busy spell to
  whichever ran then. Interleaved, a spell hits all of them alike, so their
  ratios (the numbers the suite reports) stay meaningful. The order rotates
  from round to round. Each call still gets `policy.repeats(first timed run)`
  samples (`policy` is one for all, or one per call); a call that has its
  count sits out the later rounds.
  """
  policies = [policy] * len(calls) if isinstance(policy, Policy) else list(policy)
  samples = [[run_once(call)[1]] for call, _ in calls]
  want = [p.repeats(s[0]) for p, s in zip(policies, samples)]
  k = len(calls)
  for r in range(1, max(want, default=1)):
    # Each round starts one further along: whoever runs right after a twin
    # (same buffers and code still in cache) or after a memory-hungry
    # neighbour is not always the same call.
    for i in [(r + j) % k for j in range(k)]:
      if len(samples[i]) < want[i]:
        samples[i].append(run_once(calls[i][0])[1])
  return [Stats.of(got, warmup) for (_, warmup), got in zip(calls, samples)]


def gemm_peak_gflops(n: int = 1024, repeats: int = 5) -> float:
  """This machine's f32 GEMM rate: best of `repeats` `n x n @ n x n` products."""
  a = jnp.ones((n, n), jnp.float32)
  f = compile_jax(jnp.matmul, a, a).call
  f(a, a)
  best = min(run_once(lambda: f(a, a))[1] for _ in range(repeats))
  return 2 * n ** 3 / best / 1e9
