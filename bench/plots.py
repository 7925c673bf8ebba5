"""PNG plots (matplotlib, Agg): time vs kernel size per method for each sweep
family (2-D dense, 2-D depthwise, 1-D: where the FFT crosses over), and the
speed-up over lax per case.

`python -m bench --plots` draws them for the run it makes;
`python -m bench.plots RESULTS.json [--out DIR]` redraws them from a saved run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .cases import SERIES
from .runner import Row

_TITLES = {"dense2d": "2-D dense conv", "depthwise2d": "2-D depthwise conv",
           "1d": "1-D causal depthwise conv"}


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def kernel_sweep(rows: Sequence[Row], series: str, path: Path,
                 stage: str = "fwd") -> Path | None:
  """Log-log median time vs kernel taps, one line per method, for `series`.

  Returns:
    The file written, or None when the rows hold fewer than two kernel sizes.
  """
  sel = [r for r in rows if r.series == series and stage in r.time]
  if len({r.kernel_taps for r in sel}) < 2:
    return None
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  for method in dict.fromkeys(r.method for r in sel):
    pts = sorted((r.kernel_taps, r.time[stage].median) for r in sel if r.method == method)
    ax.plot([p[0] for p in pts], [p[1] * 1e3 for p in pts], marker="o", label=method)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("kernel taps (prod of kernel size)")
  ax.set_ylabel(f"{'forward' if stage == 'fwd' else 'forward+backward'} median, ms")
  ax.set_title(f"{_TITLES.get(series, series)}: {sel[0].source.split(': ')[-1]}")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize="small")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def speedup(rows: Sequence[Row], path: Path, stage: str = "fwdbwd") -> Path | None:
  """Grouped bars: speed-up over lax per case, one bar per method (log scale).

  Returns:
    The file written, or None when no row has a ratio.
  """
  sel = [r for r in rows if stage in r.ratio and r.method != "lax" and r.series is None]
  if not sel:
    return None
  plt = _pyplot()
  cases = list(dict.fromkeys(r.case for r in sel))
  methods = list(dict.fromkeys(r.method for r in sel))
  ratio = {(r.case, r.method): r.ratio[stage] for r in sel}
  width = 0.8 / len(methods)
  fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(cases) + 2), 4.6))
  for i, m in enumerate(methods):
    xs = [j + i * width for j, c in enumerate(cases) if (c, m) in ratio]
    ys = [ratio[(c, m)] for c in cases if (c, m) in ratio]
    ax.bar(xs, ys, width, label=m, edgecolor="black" if m == "auto" else None)
  ax.axhline(1.0, color="black", linewidth=0.8)
  ax.set_yscale("log")
  ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cases))])
  ax.set_xticklabels(cases, rotation=35, ha="right", fontsize="small")
  ax.set_ylabel("speed-up over lax (lax time / time)")
  ax.set_title(f"{'forward' if stage == 'fwd' else 'forward+backward'}: "
               "speed-up over lax, same run")
  ax.grid(True, axis="y", which="both", alpha=0.3)
  ax.legend(fontsize="small", ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def write_all(rows: Sequence[Row], out_dir: Path, prefix: str) -> tuple[list[Path], list[str]]:
  """Every plot for `rows` under `out_dir`; the files and notes on what was skipped."""
  out_dir.mkdir(parents=True, exist_ok=True)
  written, notes = [], []
  for series in SERIES:
    for stage in ("fwd", "fwdbwd"):
      p = kernel_sweep(rows, series, out_dir / f"{prefix}-kernel-{series}-{stage}.png", stage)
      if p:
        written.append(p)
      elif stage == "fwd":
        notes.append(f"no plot for the {series} kernel sweep: run the "
                     f"'sweep-*' cases (in --full) to get one")
  p = speedup(rows, out_dir / f"{prefix}-speedup.png")
  if p:
    written.append(p)
  else:
    notes.append("no speed-up plot: no method was timed against lax")
  return written, notes


def main(argv: Sequence[str]) -> int:
  """`python -m bench.plots RESULTS.json [--out DIR]`: plots of a saved run."""
  p = argparse.ArgumentParser(prog="python -m bench.plots", description=main.__doc__)
  p.add_argument("results", type=Path, help="a JSON file written by python -m bench")
  p.add_argument("--out", type=Path, help="folder for the PNGs (default: beside the JSON)")
  args = p.parse_args(list(argv))
  try:
    rows = [Row.from_json(r) for r in json.loads(args.results.read_text())["rows"]]
  except (OSError, ValueError, KeyError, TypeError) as e:
    p.error(f"cannot read bench rows from {args.results}: {e}")
  written, notes = write_all(rows, args.out or args.results.parent, args.results.stem)
  for line in [*map(str, written), *notes]:
    print(line)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
