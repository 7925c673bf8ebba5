"""Reporting: the rich terminal tables, the JSON file, the markdown tables and
their insertion into README.md between `<!-- bench:start -->` and
`<!-- bench:end -->`. The per-pass numbers come from `bench/perpass.py`."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jaxlib

from . import perpass
from .problem import methods_label
from .runner import ERROR, FAIL, NA, OK, PEER_PREFIX, SKIPPED, Row

README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"
STAGE_TITLES = {"fwd": "Forward", "fwdbwd": "Forward + backward (y and the gradients in x and w)"}


# --- formatting --------------------------------------------------------------

def fmt_time(s: float | None) -> str:
  """Seconds -> '812 µs' / '3.41 ms' / '1.20 s'."""
  if s is None:
    return "-"
  if s < 1e-3:
    return f"{s * 1e6:.0f} µs"
  if s < 1:
    return f"{s * 1e3:.3g} ms"
  return f"{s:.2f} s"


def fmt_ratio(r: float | None) -> str:
  """lax time / method time -> '4.1x' ('-' when unknown)."""
  if r is None:
    return "-"
  return f"{r:.2g}x" if r < 10 else f"{r:.0f}x"


def fmt_bytes(n: int | None) -> str:
  """1536 -> '1.5 KiB'; None -> '-'."""
  if n is None:
    return "-"
  if n < 1024:
    return f"{n} B"
  exp = min(int(math.log(n, 1024)), 4)
  return f"{n / 1024 ** exp:.1f} {['B', 'KiB', 'MiB', 'GiB', 'TiB'][exp]}"


# --- metadata and JSON -------------------------------------------------------

def metadata(argv: Sequence[str], suite: str, *, gemm_peak: float | None,
             notes: Sequence[str] = (), policy: Any = None) -> dict[str, Any]:
  """Where and how the run happened: device, versions, CPUs, date, command."""
  dev = jax.devices()[0]
  try:
    affinity = len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    affinity = os.cpu_count()
  return {
      "command": "python -m bench " + shlex.join(argv),
      "suite": suite,
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "backend": jax.default_backend(),
      "device": _device_name(dev),
      "device_count": jax.device_count(),
      "cpu_count": os.cpu_count(),
      "cpu_affinity": affinity,
      "processor": platform.processor() or platform.machine(),
      "python": platform.python_version(),
      "jax": jax.__version__,
      "jaxlib": jaxlib.__version__,
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "gemm_peak_gflops": gemm_peak,
      "policy": None if policy is None else vars(policy),
      "per_pass_policy": None if policy is None else vars(policy.per_pass()),
      "notes": list(notes),
  }


def _device_name(dev) -> str:
  """'cpu: <model name>' from /proc/cpuinfo on Linux CPUs, else jax's device kind."""
  if dev.platform == "cpu":
    try:
      for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
          return f"cpu: {line.split(':', 1)[1].strip()}"
    except OSError:
      pass
  return f"{dev.platform}: {dev.device_kind}"


def write_json(path: Path, meta: dict[str, Any], rows: Sequence[Row],
               network_rows: Sequence[Row] = ()) -> Path:
  """Write `{"meta", "rows", "per_pass", "per_pass_summary", "networks"}` to
  `path` (parents created); `per_pass` holds a `perpass.CaseView` per case,
  `per_pass_summary` the counts of `perpass.summary`."""
  path.parent.mkdir(parents=True, exist_ok=True)
  vs = perpass.views(rows)
  payload = {"meta": meta, "rows": [r.to_json() for r in rows],
             "per_pass": [v.to_json() for v in vs],
             "per_pass_summary": perpass.summary(vs),
             "networks": [r.to_json() for r in network_rows]}
  path.write_text(json.dumps(payload, indent=1, default=str) + "\n")
  return path


# --- terminal ----------------------------------------------------------------

_STYLE = {OK: "green", NA: "dim", SKIPPED: "yellow", FAIL: "bold red", ERROR: "bold red"}


def rich_table(rows: Sequence[Row]):
  """A `rich.table.Table`, one line per case x method."""
  from rich.table import Table
  t = Table(title="jaxconv bench (xlax = lax time / method time, same run; "
            "eff GFLOP/s = direct-definition flops / time)",
            show_lines=False)
  for col, just in [("case", "left"), ("method", "left"), ("status", "left"),
                    ("fwd median (min-max)", "right"), ("xlax", "right"),
                    ("fwd+bwd median (min-max)", "right"), ("xlax", "right"),
                    ("compile s", "right"), ("temp fwd/f+b", "right"),
                    ("eff GFLOP/s", "right"), ("%peak", "right"), ("rel err", "right")]:
    t.add_column(col, justify=just)
  last = None
  for r in rows:
    if last is not None and r.case != last:
      t.add_section()
    last = r.case
    style = _STYLE.get(r.status, "")
    t.add_row(
        r.case, r.method + (f" ({r.choice})" if r.choice else ""), f"[{style}]{r.status}[/]",
        _spread(r, "fwd"), fmt_ratio(r.ratio.get("fwd")),
        _spread(r, "fwdbwd"), fmt_ratio(r.ratio.get("fwdbwd")),
        "/".join(f"{r.compile_s[s]:.2f}" for s in STAGE_TITLES if s in r.compile_s) or "-",
        "/".join(fmt_bytes(r.temp_bytes[s]) for s in STAGE_TITLES if s in r.temp_bytes)
        or "-",
        f"{r.gflops['fwd']:.1f}" if "fwd" in r.gflops else "-",
        f"{100 * r.peak_frac['fwd']:.0f}%" if "fwd" in r.peak_frac else "-",
        f"{max(r.error.values()):.1e}" if r.error else "-")
  return t


def rich_pass_table(rows: Sequence[Row]):
  """A `rich.table.Table` of the per-pass times: per case, one line per pass
  and one for the fused forward+backward, a column per method (see
  `pass_lines`)."""
  from rich.table import Table
  methods = _methods(rows)
  t = Table(title="per pass (each pass its own jitted program; xlax in brackets; "
            "bold = fastest single method; auto vs fastest = fastest time / auto time)")
  for col, just in [("case", "left"), ("pass", "left"), *((m, "right") for m in methods),
                    ("auto picks", "left"), ("auto vs fastest", "right")]:
    t.add_column(col, justify=just)
  for line in pass_lines(rows):
    if line[0] and t.row_count:
      t.add_section()
    t.add_row(*map(_rich_cell, line))
  return t


def _rich_cell(text: str) -> str:
  """A markdown cell in rich markup: no backticks, `**x**` bold (red for a
  failure)."""
  text = text.replace("`", "")
  if text in (f"**{FAIL}**", f"**{ERROR}**"):
    return f"[bold red]{text[2:-2]}[/]"
  if text.startswith("**") and text.endswith("**"):
    return f"[bold]{text[2:-2]}[/]"
  return text


def pass_lines(rows: Sequence[Row]) -> list[list[str]]:
  """The per-pass table as cells (markdown emphasis), shared by the terminal
  and the markdown: per case a line per pass (fwd, dX, dW) then fwd+bwd, each
  `[case, pass, *method cells, auto picks, auto vs fastest]`.

  A method cell is its median with the speed-up over lax; `auto picks` is
  auto's method for the pass, and on the fwd+bwd line the best per-pass
  combination and its summed time; `auto vs fastest` is the fastest single
  method's time over auto's, on the fwd+bwd line against the fastest single
  method's fused program and against the best per-pass combination.
  """
  methods = _methods(rows)
  by = {(r.case, r.method): r for r in rows}
  out = []
  for v in perpass.views(rows):
    for i, stage in enumerate((*perpass.PASSES, "fwdbwd")):
      best = v.fastest.get(stage, [None])[0]
      cells = [_cell(by.get((v.case, m)), stage, m == best) for m in methods]
      if stage == "fwdbwd":
        pick = (f"best per pass: {methods_label(v.combo)} (Σ {fmt_time(v.combo_s)})"
                if v.combo else "-")
        vs = (f"{fmt_ratio(v.ratio.get('fwdbwd/single'))} single, "
              f"{fmt_ratio(v.ratio.get('fwdbwd/combo'))} per pass")
      else:
        pick = f"`{v.plan[i]}`" if v.plan else "-"
        vs = fmt_ratio(v.ratio.get(f"{stage}/fastest"))
      out.append([f"`{v.case}`" if i == 0 else "", perpass.PASS_NAMES[stage], *cells,
                  pick, vs])
  return out


def pass_summary(rows: Sequence[Row]) -> list[str]:
  """The per-pass summary line (`perpass.summary`), for the terminal and the
  markdown; empty when auto was not timed."""
  s = perpass.summary(perpass.views(rows))
  if not (s["fwd_near_fastest"][1] or s["fwdbwd_lax_cases"]):
    return []

  def frac(key: str) -> str:
    return f"{s[key][0]}/{s[key][1]}"

  gmean = s["fwdbwd_lax_gmean"]
  return [(f"- Per pass: `auto`'s forward is within {perpass.NEAR}x of the fastest "
           f"forward on {frac('fwd_near_fastest')} cases and at least "
           f"{perpass.LAX_FLOOR}x lax on {frac('fwd_vs_lax')}; its forward+backward is "
           f"within {perpass.NEAR}x of the best per-pass combination (min fwd + min dX "
           f"+ min dW) on {frac('fwdbwd_near_combo')}, at least {perpass.BEATS}x faster "
           f"than the fastest single method on {frac('fwdbwd_beats_single')}, and "
           f"{fmt_ratio(gmean)} lax (geometric mean over {s['fwdbwd_lax_cases']} cases).")]


def rich_network_table(rows: Sequence[Row]):
  """A `rich.table.Table` of the training-step networks, one line per method."""
  from rich.table import Table
  t = Table(title="training step (forward + backward + optax update, jit; "
            "xlax = lax time / method time, same run)")
  for col, just in [("network", "left"), ("method", "left"), ("status", "left"),
                    ("step median (min-max)", "right"), ("xlax", "right"),
                    ("compile s", "right"), ("temp", "right"), ("rel err", "right"),
                    ("convs ran with", "left")]:
    t.add_column(col, justify=just)
  last = None
  for r in rows:
    if last is not None and r.case != last:
      t.add_section()
    last = r.case
    t.add_row(r.case, r.method, f"[{_STYLE.get(r.status, '')}]{r.status}[/]",
              _spread(r, "step"), fmt_ratio(r.ratio.get("step")),
              f"{r.compile_s['step']:.1f}" if "step" in r.compile_s else "-",
              fmt_bytes(r.temp_bytes.get("step")),
              f"{max(r.error.values()):.1e}" if r.error else "-", r.choice or r.method)
  return t


def _spread(r: Row, stage: str) -> str:
  t = r.time.get(stage)
  if t is None:
    return "-"
  return f"{fmt_time(t.median)} ({fmt_time(t.min)}-{fmt_time(t.max)})"


def problems(rows: Sequence[Row]) -> list[str]:
  """One line per row that is not 'ok': case, method, status and reason."""
  return [f"{r.status}: {r.case} / {r.method}: {r.reason}" for r in rows if r.status != OK]


# --- markdown ----------------------------------------------------------------

def markdown(meta: dict[str, Any], rows: Sequence[Row],
             network_rows: Sequence[Row] = ()) -> str:
  """Markdown: a header line, per-stage pivot tables (case x method), a temp
  memory table, peers, the training-step networks, and the reasons behind
  every n/a, skip or failure."""
  methods = _unique(r.method for r in rows if not r.is_peer)
  cases = _unique(r.case for r in rows)
  by = {(r.case, r.method): r for r in rows}
  first = {c: next(r for r in rows if r.case == c) for c in cases}
  peak = meta.get("gemm_peak_gflops")
  lines = [
      f"Generated by `{meta['command']}` on {meta['date']} — {meta['device']}, "
      f"{meta['cpu_affinity']} CPU cores, jax {meta['jax']}"
      + (f", f32 GEMM peak {peak:.0f} GFLOP/s" if peak else "") + ".",
      "Median wall time of the jitted function, the methods of a case timed "
      "round-robin (so a busy spell on this shared machine hits them alike); in "
      "brackets the speed-up over `lax` from the same run (lax time / method "
      "time, >1 = faster than lax). Every "
      "method was checked against `lax.conv_general_dilated(precision=HIGHEST)` "
      "(values and both gradients) before it was timed; **bold** = fastest. "
      "Where a pass of `auto` (or `autotune`) is the very XLA program of the "
      "method its plan runs for it, it takes that method's timing (timing one "
      "program twice only measures noise); its forward+backward is timed. "
      "Effective GFLOP/s (JSON) count the direct definition's flops, so FFT-based "
      "methods can exceed the GEMM peak.",
      ""]
  for stage, title in STAGE_TITLES.items():
    lines += [f"**{title}**", "",
              "| case | source | " + " | ".join(f"`{m}`" for m in methods) + " |",
              "|---|---|" + "---:|" * len(methods)]
    for c in cases:
      best = _best(by, c, methods, stage)
      cells = [_cell(by.get((c, m)), stage, m == best) for m in methods]
      lines.append(f"| `{c}` | {first[c].source} | " + " | ".join(cells) + " |")
    lines.append("")
  lines += ["**Summary** (best = fastest method timed, with its forward rate as a "
            "fraction of this machine's f32 GEMM peak; auto's pick and its speed-up "
            "over lax)", "",
            "| case | best forward (% GEMM peak) | best forward+backward | `auto` picks | "
            "auto vs lax, fwd | auto vs lax, fwd+bwd |", "|---|---|---|---|---:|---:|"]
  for c in cases:
    auto = by.get((c, "auto"))
    names = [_best(by, c, methods, s) for s in STAGE_TITLES]
    best = [f"`{b}`" if b else "-" for b in names]
    frac = by[(c, names[0])].peak_frac.get("fwd") if names[0] else None
    if frac is not None:
      best[0] += f" ({100 * frac:.0f}%)"
    pick = f"`{auto.choice}`" if auto is not None and auto.choice else "-"
    ratios = [fmt_ratio(auto.ratio.get(s)) if auto is not None else "-" for s in STAGE_TITLES]
    lines.append(f"| `{c}` | {best[0]} | {best[1]} | {pick} | {ratios[0]} | {ratios[1]} |")
  lines += ["", *auto_summary(rows), ""]
  lines += _pass_markdown(rows)
  lines += ["**XLA temp memory** (forward / forward+backward, "
            "`compiled.memory_analysis().temp_size_in_bytes`)", "",
            "| case | shapes | " + " | ".join(f"`{m}`" for m in methods) + " |",
            "|---|---|" + "---:|" * len(methods)]
  for c in cases:
    cells = [" / ".join(fmt_bytes(by[(c, m)].temp_bytes[s]) for s in STAGE_TITLES
                        if s in by[(c, m)].temp_bytes) or "-"
             if (c, m) in by else "" for m in methods]
    lines.append(f"| `{c}` | {first[c].shapes} | " + " | ".join(cells) + " |")
  lines.append("")
  peer_rows = [r for r in rows if r.is_peer]
  if peer_rows:
    lines += ["**Peers** (same run, same correctness check)", "",
              "| case | peer | forward | forward+backward |", "|---|---|---:|---:|"]
    lines += [f"| `{r.case}` | `{r.method[len(PEER_PREFIX):]}` | {_cell(r, 'fwd', False)} | "
              f"{_cell(r, 'fwdbwd', False)} |" for r in peer_rows]
    lines.append("")
  lines += _network_markdown(network_rows)
  notes = [*meta.get("notes", []), *problems([*rows, *network_rows])]
  if notes:
    lines += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
  return "\n".join(lines)


def _pass_markdown(rows: Sequence[Row]) -> list[str]:
  methods = _methods(rows)
  if not any(s in r.time for r in rows for s in perpass.PASSES[1:]):
    return []
  return [("**Per pass** (each method's forward, input gradient dX and weight gradient "
           "dW, each timed alone as its own jitted program, after checking it against "
           "lax's; fwd+bwd is the fused program of the table above; **bold** = fastest "
           "single method, `auto` and `autotune` not counted. `auto picks`: its method "
           "for the pass; on the fwd+bwd line the best per-pass combination (min fwd + "
           "min dX + min dW) and its summed time. `auto vs fastest`: the fastest time "
           "over auto's (>1 = auto faster); on the fwd+bwd line, against the fastest "
           "single method's fused program and against that combination)"), "",
          "| case | pass | " + " | ".join(f"`{m}`" for m in methods)
          + " | `auto` picks | auto vs fastest |",
          "|---|---|" + "---:|" * len(methods) + "---|---:|",
          *("| " + " | ".join(line) + " |" for line in pass_lines(rows)),
          "", *pass_summary(rows), ""]


def auto_summary(rows: Sequence[Row]) -> list[str]:
  """One line per stage: auto's geometric-mean speed-up over lax, and on how
  many cases it is within 1.1x of the fastest method timed."""
  methods = _unique(r.method for r in rows if not r.is_peer)
  by = {(r.case, r.method): r for r in rows}
  out = []
  for stage, title in STAGE_TITLES.items():
    ratios, near = [], []
    for c in _unique(r.case for r in rows):
      auto, best = by.get((c, "auto")), _best(by, c, methods, stage)
      if auto is None or stage not in auto.ratio or best is None:
        continue
      ratios.append(auto.ratio[stage])
      near.append(auto.time[stage].median <= 1.1 * by[(c, best)].time[stage].median)
    if ratios:
      gmean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
      out.append(f"- {title}: `auto` is {fmt_ratio(gmean)} lax (geometric mean over "
                 f"{len(ratios)} cases), within 1.1x of the fastest method on "
                 f"{sum(near)}/{len(near)}.")
  return out


def _network_markdown(rows: Sequence[Row]) -> list[str]:
  if not rows:
    return []
  methods = _unique(r.method for r in rows)
  by = {(r.case, r.method): r for r in rows}
  choosers = [m for m in methods if m != "lax"]
  tuning = "; autotune's compile time includes its tuning" if "autotune" in methods else ""
  lines = ["**Training step, end to end** (one jitted `optax.adamw` step: forward, "
           "backward, update; every conv through `jaxconv.conv(method=...)`; loss and "
           f"all gradients checked against the same network on lax at HIGHEST{tuning})", "",
           "| network | " + " | ".join(f"`{m}`" for m in methods)
           + f" | compile s ({' / '.join(methods)}) | convs ran with ({' / '.join(choosers)}) |",
           "|---|" + "---:|" * len(methods) + "---:|---|"]
  for net in _unique(r.case for r in rows):
    best = _best(by, net, methods, "step")
    cells = [_cell(by.get((net, m)), "step", m == best) for m in methods]
    compile_s = " / ".join(f"{by[(net, m)].compile_s['step']:.1f}" for m in methods
                           if "step" in by[(net, m)].compile_s)
    picks = " / ".join(by[(net, m)].choice or "-" for m in methods if m != "lax")
    source = by[(net, methods[0])].source
    lines.append(f"| `{net}`: {source} | " + " | ".join(cells)
                 + f" | {compile_s} | {picks} |")
  return lines + [""]


def _unique(items) -> list:
  return list(dict.fromkeys(items))


def _methods(rows: Sequence[Row]) -> list[str]:
  """The jaxconv methods of `rows` (no peers), in order."""
  return _unique(r.method for r in rows if not r.is_peer)


def _best(by: dict, case: str, methods: Sequence[str], stage: str) -> str | None:
  timed = [(by[(case, m)].time[stage].median, m) for m in methods
           if (case, m) in by and stage in by[(case, m)].time]
  return min(timed)[1] if timed else None


def _cell(r: Row | None, stage: str, best: bool) -> str:
  if r is None:
    return ""
  if r.status in (FAIL, ERROR):
    return f"**{r.status}**"
  if stage not in r.time:
    return r.status if r.status != OK else "n/a"
  text = fmt_time(r.time[stage].median)
  ratio = r.ratio.get(stage)
  if ratio is not None and r.method != "lax":
    text += f" ({fmt_ratio(ratio)})"
  return f"**{text}**" if best else text


def update_readme(path: Path, text: str) -> bool:
  """Replace what lies between the bench markers in `path` with `text`.

  Returns:
    True if written; False (file untouched) when the file or a marker is missing.
  """
  if not path.is_file():
    return False
  old = path.read_text()
  start, end = old.find(README_START), old.find(README_END)
  if start < 0 or end < start:
    return False
  new = old[:start + len(README_START)] + "\n" + text.strip() + "\n" + old[end:]
  path.write_text(new)
  return True
