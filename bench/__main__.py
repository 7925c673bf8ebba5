"""`python -m bench`: check every method against lax, then time it.

Usage:
  python -m bench [--quick | --full | --sharding | --layers] [--cases GLOB ...]
                  [--methods NAME ...]
                  [--out DIR] [--no-readme | --readme PATH] [--plots]
                  [--repeats N] [--max-temp-gb GB] [--no-peers] [--list]
                  [--networks GLOB ... | --no-networks] [--image-size N]

Every method is also timed per pass (forward, input gradient, weight
gradient, each its own program; `bench/perpass.py`): a second table shows
these times, auto's pick per pass, and auto against the fastest single
method, the best per-pass combination and lax, with a summary line.

Besides the single convolutions, one optax training step of each small
network in `bench/networks.py` is timed with lax and auto (`--full` adds
autotune; `--methods` selects among these), in unfiltered runs for every
network, with `--cases` only for those named by `--networks`.

`--sharding` runs `bench/sharding.py` instead, on 8 host CPU devices (in a
child process that sets XLA_FLAGS): the collective bytes of every method on a
batch-sharded input, and `sharded_conv`'s per-device memory; `--cases` and
`--methods` filter it, and it writes `<out>/sharding.json` and
`<out>/sharding.md` (`sharding-custom.*` when filtered), never README.md.

`--layers` runs `bench/layers.py` instead: each training-step network's
distinct convolutions timed per pass with every method, auto's pick, and the
totals for lax, auto and the best per-layer choice (`<out>/layers.json`).

Writes `<out>/<suite>.json` (`custom.json` when `--cases`/`--methods` filter
the run), the markdown table into README.md between `<!-- bench:start -->` and
`<!-- bench:end -->` (unfiltered runs, or any run given `--readme PATH`), and
with `--plots` PNGs under `<out>/`. Exits 1 if any method gave a wrong result
or crashed.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import cases as cases_lib
from . import networks as networks_lib
from . import layers, report, runner, sharding, timing

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
  suite.add_argument("--layers", dest="suite", action="store_const", const="layers",
                     help="per-layer, per-pass times of the training-step networks' "
                          "convolutions (bench/layers.py; --networks filters)")
  suite.add_argument("--sharding", dest="suite", action="store_const", const="sharding",
                     help="collective bytes and per-device memory on 8 host CPU devices "
                          "(bench/sharding.py; `make bench-sharding`)")
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
  nets = p.add_mutually_exclusive_group()
  nets.add_argument("--networks", nargs="+", metavar="GLOB",
                    help="training-step networks to run (default: all, unless "
                         "--cases filters the run)")
  nets.add_argument("--no-networks", action="store_true",
                    help="do not run the training-step networks")
  p.add_argument("--image-size", type=int, default=sharding.IMAGE_SIZE, metavar="N",
                 help="--sharding: side of the sharded_conv image (default "
                      f"{sharding.IMAGE_SIZE}; a multiple of 8)")
  p.add_argument("--list", action="store_true", help="list the cases and exit")
  args = p.parse_args(list(argv))
  if args.repeats is not None and args.repeats < 1:
    p.error(f"--repeats must be positive; got {args.repeats}")
  if args.image_size < 8 or args.image_size % 8:
    p.error(f"--image-size must be a positive multiple of 8; got {args.image_size}")
  return args


def resolve_methods(requested: Sequence[str] | None, suite: str = "quick") -> list[str]:
  """Requested (or the suite's default) method names, validated, 'lax' first.

  Raises:
    ValueError: an unknown method name.
  """
  known = runner.default_methods("full")
  methods = list(requested) if requested else runner.default_methods(suite)
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
  # Time in the malloc state of a long-running process, as the calibration
  # does (see jaxconv/_malloc.py): otherwise ratios depend on case order.
  from jaxconv import _malloc
  _malloc.settle()
  if args.suite == "sharding" and not args.list:
    return sharding.run(argv, args, con)
  if args.suite == "layers" and not args.list:
    return layers.run(select_networks(args), args.out, con)
  if args.list:
    for c in cases_lib.FULL:
      tag = "quick" if c in cases_lib.QUICK else "full"
      con.print(f"{c.name:24s} [{tag}] {c.source}: {c.describe()}", markup=False)
    for n in networks_lib.NETWORKS.values():
      con.print(f"{n.name:24s} [network] {n.source}", markup=False)
    return 0
  selected = cases_lib.select(args.suite, args.cases) if args.cases or not args.networks else []
  nets = select_networks(args)
  methods = resolve_methods(args.methods, args.suite)
  net_methods = [m for m in runner.network_methods("full" if args.methods else args.suite)
                 if not args.methods or m in methods]
  filtered = bool(args.cases or args.methods or args.networks or args.no_networks)
  name = "custom" if filtered else args.suite
  policy = timing.QUICK if args.suite == "quick" else timing.FULL
  if args.repeats is not None:
    policy = timing.Policy(**{**vars(policy), "fixed": args.repeats})

  peak = timing.gemm_peak_gflops()
  notes = runner.peer_notes(selected) if not args.no_peers else ["peers not run (--no-peers)"]
  if "autotune" in methods or (nets and "autotune" in net_methods):
    notes.append(autotune_fresh_cache(args.out))
  rows, net_rows = _run_with_progress(con, selected, methods, policy, peak,
                                      int(args.max_temp_gb * 2**30), not args.no_peers,
                                      nets, net_methods)

  meta = report.metadata(argv, args.suite, gemm_peak=peak, notes=notes, policy=policy)
  if rows:
    con.print(report.rich_table(rows))
    con.print(report.rich_pass_table(rows))
    for line in [*report.auto_summary(rows), *report.pass_summary(rows)]:
      con.print(line, markup=False, highlight=False)
  if net_rows:
    con.print(report.rich_network_table(net_rows))
  for line in [*notes, *report.problems(rows + net_rows)]:
    con.print(f"[{'bold red' if line.startswith(('FAIL', 'error')) else 'yellow'}]"
              f"{line}[/]", highlight=False)
  out = report.write_json(args.out / f"{name}.json", meta, rows, net_rows)
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
    if report.update_readme(readme, report.markdown(meta, rows, net_rows)):
      con.print(f"table written into {readme}")
    else:
      con.print(f"[yellow]{readme}: no {report.README_START} ... {report.README_END} "
                "markers; not written[/]")
  bad = [r for r in rows + net_rows if r.status in (runner.FAIL, runner.ERROR)]
  if bad:
    con.print(f"[bold red]{len(bad)} case x method combination(s) failed the "
              "correctness check or crashed; see above.[/]")
  return 1 if bad else 0


def select_networks(args: argparse.Namespace) -> list:
  """The networks to run: named by `--networks`, else all unless the run is
  filtered by `--cases` or `--no-networks` is given.

  Raises:
    ValueError: a `--networks` pattern that matches no network.
  """
  known = networks_lib.NETWORKS
  if args.no_networks or (args.cases and not args.networks):
    return []
  if not args.networks:
    return list(known.values())
  for p in args.networks:
    if not any(fnmatch.fnmatchcase(n, p) for n in known):
      raise ValueError(f"bench: --networks {p!r} matches no network; known: "
                       f"{', '.join(known)}.")
  return [n for name, n in known.items()
          if any(fnmatch.fnmatchcase(name, p) for p in args.networks)]


def autotune_fresh_cache(out: Path) -> str:
  """Point jaxconv's autotune cache at an emptied file under `out`, so the
  tuning cost shows in the compile column instead of hiding in a warm cache."""
  import jaxconv
  path = out / "autotune_cache.json"
  path.parent.mkdir(parents=True, exist_ok=True)
  os.environ["JAXCONV_AUTOTUNE_CACHE"] = str(path)
  jaxconv.clear_autotune_cache()
  return (f"autotune: cache {path} emptied before the run, so autotune's compile "
          "time includes its tuning")


def _run_with_progress(con, selected, methods, policy, peak, max_temp_bytes, use_peers,
                       nets, net_methods):
  total = runner.count_steps(selected, methods, use_peers) + len(nets) * len(net_methods)
  with progress_steps(con, "bench", total, width=40) as on_step:
    rows = runner.run_suite(selected, methods, policy, max_temp_bytes=max_temp_bytes,
                            gemm_peak=peak, use_peers=use_peers, on_step=on_step)
    net_rows = runner.run_networks(nets, net_methods, policy,
                                   max_temp_bytes=max_temp_bytes, on_step=on_step)
  return rows, net_rows


@contextlib.contextmanager
def progress_steps(con, title: str, total: int, *, width: int):
  """A rich progress bar of `total` steps; yields `on_step(label)`, called
  before each step, and shows 'done' at the end."""
  from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                             TimeElapsedColumn)
  with Progress(TextColumn(f"{{task.description:{width}s}}"), BarColumn(),
                MofNCompleteColumn(), TimeElapsedColumn(), console=con) as progress:
    task = progress.add_task(title, total=total)
    done = [0]

    def on_step(label: str) -> None:
      progress.update(task, description=label, completed=done[0])
      done[0] += 1

    yield on_step
    progress.update(task, description="done", completed=total)


def _plots(rows, out_dir: Path, prefix: str):
  from . import plots
  return plots.write_all(rows, out_dir, prefix)


if __name__ == "__main__":
  sys.exit(main())
