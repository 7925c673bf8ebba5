"""The per-pass view of a run: how `auto`'s per-pass plan compares with the
methods it chose among.

Each method's forward, input gradient (dX: the vjp in `x` of the cotangent)
and weight gradient (dW: the vjp in `w`) are timed as programs of their own
(`runner.PASS_STAGES`, besides the forward and the fused forward+backward).
Here, per case: the fastest single method of each pass, the best per-pass
combination (min fwd + min dX + min dW over the methods: what a perfect
per-pass chooser would cost, summed over separate programs), and `auto`'s
ratios to them and to lax. A ratio is the other's time over auto's (as the
`xlax` columns: > 1 means auto is faster). For the forward pass alone the
best per-pass combination is the fastest forward. `auto` and `autotune` are
choosers, not candidates: they never count as the fastest method.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from .runner import OK, Row

PASSES = ("fwd", "dx", "dw")
PASS_NAMES = {"fwd": "fwd", "dx": "dX", "dw": "dW", "fwdbwd": "fwd+bwd"}
CHOOSERS = ("auto", "autotune")
NEAR = 1.1        # "within 1.1x of the best"
LAX_FLOOR = 0.95  # "auto's forward at least 0.95x lax"
BEATS = 1.2       # "auto's forward+backward at least 1.2x faster than the best single method"


@dataclasses.dataclass
class CaseView:
  """One case, per pass.

  Attributes:
    case: the case name.
    plan: auto's method per pass `(fwd, dx, dw)`, or None without an auto row.
    fastest: stage ('fwd', 'dx', 'dw', 'fwdbwd') -> `[method, median s]` of
      the fastest single method timed on it.
    combo: `[fwd, dx, dw]` methods of the best per-pass combination, and
      `combo_s` its summed seconds (None unless every pass was timed).
    lax_s, auto_s: stage -> median seconds of lax and of auto.
    ratio: other time / auto time for 'fwd/fastest', 'fwd/lax', 'dx/fastest',
      'dw/fastest', 'fwdbwd/single' (the fastest single method's fused
      forward+backward), 'fwdbwd/combo', 'fwdbwd/lax', and 'passes/combo'
      (auto's own three passes summed, against the same sum for the best
      combination: the quality of the picks without the fused program's
      savings); absent where a time is missing.
  """

  case: str
  plan: list[str] | None = None
  fastest: dict[str, list] = dataclasses.field(default_factory=dict)
  combo: list[str] | None = None
  combo_s: float | None = None
  lax_s: dict[str, float] = dataclasses.field(default_factory=dict)
  auto_s: dict[str, float] = dataclasses.field(default_factory=dict)
  ratio: dict[str, float] = dataclasses.field(default_factory=dict)

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def _median(r: Row | None, stage: str) -> float | None:
  if r is None or r.status != OK or stage not in r.time:
    return None
  return r.time[stage].median


def case_view(rows: Sequence[Row]) -> CaseView:
  """The `CaseView` of one case's rows (peers are ignored)."""
  by = {r.method: r for r in rows if not r.is_peer}
  auto = by.get("auto")
  v = CaseView(rows[0].case, list(auto.plan) if auto is not None and auto.plan else None)
  for stage in (*PASSES, "fwdbwd"):
    timed = [(t, m) for m, r in by.items()
             if m not in CHOOSERS and (t := _median(r, stage)) is not None]
    if timed:
      t, m = min(timed)
      v.fastest[stage] = [m, t]
    for name, into in (("lax", v.lax_s), ("auto", v.auto_s)):
      if (t := _median(by.get(name), stage)) is not None:
        into[stage] = t
  if all(p in v.fastest for p in PASSES):
    v.combo = [v.fastest[p][0] for p in PASSES]
    v.combo_s = sum(v.fastest[p][1] for p in PASSES)
  others = {f"{p}/fastest": v.fastest[p][1] for p in PASSES if p in v.fastest}
  others |= {f"{s}/lax": v.lax_s[s] for s in ("fwd", "fwdbwd") if s in v.lax_s}
  if "fwdbwd" in v.fastest:
    others["fwdbwd/single"] = v.fastest["fwdbwd"][1]
  if v.combo_s is not None:
    others["fwdbwd/combo"] = others["passes/combo"] = v.combo_s
  auto_passes = (sum(v.auto_s[p] for p in PASSES)
                 if all(p in v.auto_s for p in PASSES) else None)
  for key, t in others.items():
    stage = key.split("/")[0]
    mine = auto_passes if stage == "passes" else v.auto_s.get(stage)
    if mine:
      v.ratio[key] = t / mine
  return v


def views(rows: Sequence[Row]) -> list[CaseView]:
  """One `CaseView` per case of `rows`, in order."""
  cases = list(dict.fromkeys(r.case for r in rows))
  return [case_view([r for r in rows if r.case == c]) for c in cases]


def summary(vs: Sequence[CaseView]) -> dict[str, Any]:
  """Counts over the cases: `[hits, cases]` for 'fwd_near_fastest' (auto's
  forward within `NEAR` of the fastest forward), 'fwd_vs_lax' (auto's
  forward at least `LAX_FLOOR` x lax), 'fwdbwd_near_combo' (auto's
  forward+backward within `NEAR` of the best per-pass combination),
  'fwdbwd_beats_single' (auto's forward+backward at least `BEATS` x faster
  than the fastest single method's), and 'fwdbwd_lax_gmean', the geometric mean of auto's forward+backward speed-up
  over lax (None without cases), over 'fwdbwd_lax_cases' cases."""
  def count(key: str, floor: float) -> list[int]:
    got = [v.ratio[key] for v in vs if key in v.ratio]
    return [sum(_at_least(r, floor) for r in got), len(got)]

  lax = [v.ratio["fwdbwd/lax"] for v in vs if "fwdbwd/lax" in v.ratio]
  return {
      "fwd_near_fastest": count("fwd/fastest", 1 / NEAR),
      "fwd_vs_lax": count("fwd/lax", LAX_FLOOR),
      "fwdbwd_near_combo": count("fwdbwd/combo", 1 / NEAR),
      "fwdbwd_beats_single": count("fwdbwd/single", BEATS),
      "fwdbwd_lax_gmean": (math.exp(sum(map(math.log, lax)) / len(lax)) if lax else None),
      "fwdbwd_lax_cases": len(lax),
  }


def _at_least(ratio: float, floor: float) -> bool:
  # A last-bit slack: a time exactly at the threshold gives a ratio that
  # may round below `floor` (1 / 1.1 is not exact in binary).
  return ratio >= floor * (1 - 1e-12)
