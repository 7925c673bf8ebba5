"""Correctness before timing: compare a result with the lax reference,
relative to the reference's scale (`max|ref|`), with jaxconv's own float32
tolerances (`jaxconv.testing.tolerance`: a few ulps x sqrt(reduction length),
x log2(size) for FFT)."""

from __future__ import annotations

import dataclasses
import re

import jax
import numpy as np

def tolerance(name: str, g) -> float:
  """Float32 relative tolerance for the method or peer `name` on geometry `g`.

  Peers whose name mentions 'fft' get the FFT tolerance; a per-pass plan
  ('lax / im2col / fft' or 'lax; grad: im2col', an auto pick,
  `problem.plan_label`) the loosest of its methods'.
  """
  from jaxconv.testing import tolerance as jaxconv_tolerance
  parts = re.split(r" / |; grad: ", name)
  if len(parts) > 1:
    return max(tolerance(part, g) for part in parts)
  return jaxconv_tolerance("fft" if "fft" in name else name, np.float32, g)


def rel_error(got, ref) -> float:
  """`max|got - ref| / max|ref|` (NaN/inf or a shape mismatch -> inf)."""
  got = np.asarray(got, dtype=np.float64)
  ref = np.asarray(ref, dtype=np.float64)
  if got.shape != ref.shape:
    return float("inf")
  scale = float(np.max(np.abs(ref))) if ref.size else 0.0
  err = float(np.max(np.abs(got - ref))) if ref.size else 0.0
  if not np.isfinite(err):
    return float("inf")
  return err / scale if scale > 0 else err


@dataclasses.dataclass(frozen=True)
class Verdict:
  """The worst relative error over the compared arrays, and whether it passed."""

  error: float
  tol: float
  what: str = ""

  @property
  def ok(self) -> bool:
    return self.error <= self.tol

  def message(self) -> str:
    where = f" in {self.what}" if self.what else ""
    return (f"WRONG RESULT{where}: relative error {self.error:.2e} > "
            f"tolerance {self.tol:.0e}")


def compare(got, ref, tol: float, names: tuple[str, ...] | None = None) -> Verdict:
  """Compare two pytrees of arrays leaf by leaf; report the worst leaf.

  Args:
    got, ref: pytrees with the same structure (e.g. `y`, or `(dx, dw)`).
    tol: relative tolerance.
    names: a label per leaf for the message (e.g. `('dx', 'dw')`).
  """
  got_leaves = jax.tree_util.tree_leaves(got)
  ref_leaves = jax.tree_util.tree_leaves(ref)
  names = names or tuple(f"leaf {i}" for i in range(len(ref_leaves)))
  if len(got_leaves) != len(ref_leaves):
    return Verdict(float("inf"), tol, "structure")
  worst = Verdict(0.0, tol)
  for g, r, n in zip(got_leaves, ref_leaves, names):
    v = Verdict(rel_error(g, r), tol, n)
    if v.error > worst.error or not worst.what:
      worst = v
  return worst
