"""`python -m bench`: check every method against lax, then time it.

Usage:
  python -m bench [--quick | --full] [--cases GLOB ...] [--methods NAME ...]
                  [--out DIR] [--no-readme | --readme PATH] [--plots]
                  [--repeats N] [--max-temp-gb GB] [--no-peers] [--list]

Writes `<out>/<suite>.json` (`custom.json` when `--cases`/`--methods` filter
the run), the markdown table into README.md between `<!-- bench:start -->` and
`<!-- bench:end -->` (unfiltered runs, or any run given `--readme PATH`), and
with `--plots` PNGs under `<out>/`. Exits 1 if any method gave a wrong result
or crashed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import cases as cases_lib
from . import report, runner, timing

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "results"
DEFAULT_README = ROOT / "README.md"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  """The command line (see the module docstring)."""
  p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
  suite = p.add_mutually_exclusive_group()
  suite.add_argument("--quick", dest="suite", action="store_const", const="quick",
                     help="the issue-2 cases and the FFT cases (default; `make bench`)")
  suite.add_argument("--full", dest="suite", action="store_const", const="full",
                     help="adds the model zoo and the kernel-size sweeps")
  p.set_defaults(suite="quick")
  p.add_argument("--cases", nargs="+", metavar="GLOB",
                 help="case names or globs, from the full table (see --list)")
  p.add_argument("--methods", nargs="+", metavar="NAME",
                 help="jaxconv methods (default: every registered one + auto); "
                      "lax is always added, as the baseline")
  p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
  readme = p.add_mutually_exclusive_group()
  readme.add_argument("--no-readme", action="store_true", help="leave README.md alone")
  readme.add_argument("--readme", type=Path, default=None,
                      help="write the table into this file (default README.md, "
                           "unfiltered runs only)")
  p.add_argument("--plots", action="store_true", help="write PNG plots under --out")
  p.add_argument("--repeats", type=int, default=None,
                 help="fixed number of timed runs (default: adaptive)")
  p.add_argument("--max-temp-gb", type=float, default=2.0,
                 help="skip a method whose XLA temp memory exceeds this, in GiB, "
                      "checked after compiling and before running (default 2)")
  p.add_argument("--no-peers", action="store_true", help="do not run peer libraries")
  p.add_argument("--list", action="store_true", help="list the cases and exit")
  args = p.parse_args(list(argv))
  if args.repeats is not None and args.repeats < 1:
    p.error(f"--repeats must be positive; got {args.repeats}")
  return args


def resolve_methods(requested: Sequence[str] | None) -> list[str]:
  """Requested (or all) method names, validated, with 'lax' first.

  Raises:
    ValueError: an unknown method name.
  """
  known = runner.default_methods()
  methods = list(requested) if requested else known
  unknown = [m for m in methods if m not in known]
  if unknown:
    raise ValueError(f"bench: unknown --methods {unknown}; expected some of {known}.")
  return ["lax", *(m for m in dict.fromkeys(methods) if m != "lax")]


def main(argv: Sequence[str] | None = None) -> int:
  """Run the benchmark; returns the process exit code."""
  from rich.console import Console
  argv = sys.argv[1:] if argv is None else list(argv)
  args = parse_args(argv)
  # Wide enough for the table when piped (rich assumes 80 columns off a tty).
  con = Console() if sys.stdout.isatty() else Console(width=200)
  if args.list:
    for c in cases_lib.FULL:
      tag = "quick" if c in cases_lib.QUICK else "full"
      con.print(f"{c.name:24s} [{tag}] {c.source}: {c.describe()}", markup=False)
    return 0
  selected = cases_lib.select(args.suite, args.cases)
  methods = resolve_methods(args.methods)
  filtered = bool(args.cases or args.methods)
  name = "custom" if filtered else args.suite
  policy = timing.QUICK if args.suite == "quick" else timing.FULL
  if args.repeats is not None:
    policy = timing.Policy(**{**vars(policy), "fixed": args.repeats})

  peak = timing.gemm_peak_gflops()
  notes = runner.peer_notes(selected) if not args.no_peers else ["peers not run (--no-peers)"]
  rows = _run_with_progress(con, selected, methods, policy, peak,
                            int(args.max_temp_gb * 2**30), not args.no_peers)

  meta = report.metadata(argv, args.suite, gemm_peak=peak, notes=notes, policy=policy)
  con.print(report.rich_table(rows))
  for line in [*notes, *report.problems(rows)]:
    con.print(f"[{'bold red' if line.startswith(('FAIL', 'error')) else 'yellow'}]"
              f"{line}[/]", highlight=False)
  out = report.write_json(args.out / f"{name}.json", meta, rows)
  con.print(f"results: {out}")
  if args.plots:
    written, plot_notes = _plots(rows, args.out, name)
    meta["notes"] += plot_notes
    for p in written:
      con.print(f"plot: {p}")
    for n in plot_notes:
      con.print(f"[yellow]{n}[/]")
  readme = args.readme or (None if filtered else DEFAULT_README)
  if readme is not None and not args.no_readme:
    if report.update_readme(readme, report.markdown(meta, rows)):
      con.print(f"table written into {readme}")
    else:
      con.print(f"[yellow]{readme}: no {report.README_START} ... {report.README_END} "
                "markers; not written[/]")
  bad = [r for r in rows if r.status in (runner.FAIL, runner.ERROR)]
  if bad:
    con.print(f"[bold red]{len(bad)} case x method combination(s) failed the "
              "correctness check or crashed; see above.[/]")
  return 1 if bad else 0


def _run_with_progress(con, selected, methods, policy, peak, max_temp_bytes, use_peers):
  from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                             TimeElapsedColumn)
  total = runner.count_steps(selected, methods, use_peers)
  with Progress(TextColumn("{task.description:40s}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), console=con) as progress:
    task = progress.add_task("bench", total=total)
    done = [0]

    def on_step(label: str) -> None:
      progress.update(task, description=label, completed=done[0])
      done[0] += 1

    rows = runner.run_suite(selected, methods, policy, max_temp_bytes=max_temp_bytes,
                            gemm_peak=peak, use_peers=use_peers, on_step=on_step)
    progress.update(task, description="done", completed=total)
  return rows


def _plots(rows, out_dir: Path, prefix: str):
  from . import plots
  return plots.write_all(rows, out_dir, prefix)


if __name__ == "__main__":
  sys.exit(main())
