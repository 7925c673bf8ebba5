"""`python -m bench --layers`: where a training step's convolution time goes.

For each training-step network of `bench/networks.py` (`--networks` filters),
every distinct convolution of its forward pass is timed per pass (forward,
input gradient, weight gradient: each its own jitted program, the methods
round-robin, as `python -m jaxconv.calibrate` times them) with every method,
next to what `auto` picks per pass. The totals, weighted by how often each
convolution occurs, show how far `auto`'s convolutions are from lax and from
the best per-layer, per-pass choice. Comparing them with the step's own time
(the network table of `python -m bench`) shows how much of the step is spent
outside the convolutions.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

PASSES = ("fwd", "dx", "dw")
BUDGET_S = 0.2
"""Seconds of timed runs per method and pass (`measure_shape`'s budget)."""


@dataclasses.dataclass
class Layer:
  """One distinct convolution of a network.

  Attributes:
    x_shape, w_shape, kwargs: its `jaxconv.conv` arguments.
    count: how many times the forward pass calls it.
    plan: `auto`'s method per pass `(fwd, dx, dw)`.
    seconds: pass -> method -> median seconds.
  """
  x_shape: tuple[int, ...]
  w_shape: tuple[int, ...]
  kwargs: dict
  count: int
  plan: tuple[str, str, str]
  seconds: dict[str, dict[str, float]]

  def describe(self) -> str:
    kw = " ".join(f"{k}={v}" for k, v in self.kwargs.items())
    return f"{self.count}x x{self.x_shape} w{self.w_shape} {kw}".rstrip()


def measure(net, methods: Sequence[str], budget_s: float = BUDGET_S,
            on_layer=lambda label: None) -> list[Layer]:
  """Time every pass of every method on each distinct conv of `net`."""
  import jaxconv
  from jaxconv import calibrate

  from .networks import conv_calls, conv_geometries
  # Calls that differ only in how they spell a default (stride=1) are one conv.
  calls = dict(zip(conv_geometries(net), conv_calls(net)))
  counts = collections.Counter(conv_geometries(net))
  layers = []
  for g, count in counts.items():
    xs, ws, kw = calls[g]
    on_layer(f"{net.name} x{xs} w{ws}")
    shape = calibrate.Shape(f"x{xs}w{ws}", xs, ws, kw)
    seconds: dict[str, dict[str, float]] = {p: {} for p in PASSES}
    for s in calibrate.measure_shape(shape, methods, budget_s):
      seconds[s["pass"]][s["method"]] = s["median"]
    plan = tuple(jaxconv.select_method(xs, ws, **dict(kw)).methods)
    layers.append(Layer(xs, ws, dict(kw), count, plan, seconds))
  return layers


def totals(layers: Sequence[Layer]) -> dict[str, dict[str, float]]:
  """Count-weighted seconds per pass of 'lax', 'auto' (its plan) and 'best'
  (the fastest method of each layer and pass).

  Example:
    >>> t = totals([Layer((1,), (1,), {}, 2, ("a", "lax", "a"),
    ...                   {p: {"lax": 1.0, "a": 0.5} for p in PASSES})])
    >>> t["lax"]["fwd"], t["auto"]["fwd"], t["auto"]["dx"], t["best"]["dw"]
    (2.0, 1.0, 2.0, 1.0)
  """
  out = {who: dict.fromkeys(PASSES, 0.0) for who in ("lax", "auto", "best")}
  for layer in layers:
    for i, p in enumerate(PASSES):
      t = layer.seconds[p]
      out["lax"][p] += layer.count * t["lax"]
      out["auto"][p] += layer.count * t[layer.plan[i]]
      out["best"][p] += layer.count * min(t.values())
  return out


def _ms(s: float) -> str:
  return f"{s * 1e3:.2f}"


def rich_table(net_name: str, layers: Sequence[Layer], methods: Sequence[str]):
  """One row per layer and pass: each method's ms, auto's pick, the fastest."""
  from rich.table import Table
  table = Table(title=f"{net_name}: convolutions per pass (median ms, each pass "
                      "its own jitted program; auto = its plan's method)")
  table.add_column("layer")
  table.add_column("pass")
  for m in methods:
    table.add_column(m, justify="right")
  table.add_column("auto")
  table.add_column("fastest")
  for layer in layers:
    for i, p in enumerate(PASSES):
      t = layer.seconds[p]
      table.add_row(layer.describe() if i == 0 else "", p,
                    *(_ms(t[m]) if m in t else "-" for m in methods),
                    layer.plan[i], min(t, key=t.__getitem__), end_section=i == 2)
  for who, per in totals(layers).items():
    table.add_row(f"total: {who}", "all", *([""] * len(methods)),
                  f"{_ms(sum(per.values()))} ms",
                  " / ".join(_ms(per[p]) for p in PASSES))
  return table


def run(nets, out_dir: Path, con) -> int:
  """`python -m bench --layers`: a table per network, and `<out_dir>/layers.json`."""
  from jaxconv._methods import METHODS
  methods = list(METHODS)
  result = {}
  for net in nets:
    layers = measure(net, methods, on_layer=lambda label: con.print(f"timing {label}"))
    con.print(rich_table(net.name, layers, methods))
    result[net.name] = {"layers": [dataclasses.asdict(layer) for layer in layers],
                        "totals_s": totals(layers)}
  out = Path(out_dir) / "layers.json"
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=1) + "\n")
  con.print(f"results: {out}")
  return 0
