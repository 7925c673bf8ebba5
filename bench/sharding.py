"""`python -m bench --sharding`: what a sharded convolution communicates and
what it holds per device, on 8 host CPU devices.

Two tables, every number read from the compiled XLA program:

1. Data parallelism. Each method (and `auto`, and `lax` as the baseline) on
   a batch-sharded input, on a `jax.make_mesh((8,), ("data",))` mesh (the
   default axis type) and on an Auto-axes mesh: the bytes of the collectives
   of the forward pass and of the backward pass (grads in x, w and b), by
   kind (`jaxconv.testing.collectives`, elements x itemsize), next to
   `|w| + |b|`, which is all a data-parallel backward pass has to all-reduce.
   Every row's forward value and gradients are checked against
   `lax.conv_general_dilated(precision=HIGHEST)` on one device first; a row
   that disagrees is FAIL and reports no bytes.
2. Spatial decomposition. `jaxconv.sharded_conv` of one large image over
   1, 2, 4 and 8 shards (1-D and 2-D splits) against `jaxconv.conv` on one
   device: XLA's per-device temp, argument and output bytes
   (`compiled.memory_analysis()`), and the collective-permute bytes of the
   halo exchange in the forward pass. Each configuration is compiled, and run
   once to check its value against lax; it is not timed (the 8 "devices"
   share the machine's cores, so times would say nothing about real devices).

The 8 devices need `XLA_FLAGS=--xla_force_host_platform_device_count=8`
before JAX creates its CPU backend; `run` re-executes the command in a child
process with that flag (see `run` for why).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import check, problem, report
from .cases import Case
from .runner import ERROR, FAIL, NA, OK, reported

FLAG = "--xla_force_host_platform_device_count=8"
DEVICES = 8
MESH_TYPES = ("default", "auto")
KIND_ABBREV = {"all-gather": "AG", "all-reduce": "AR", "all-to-all": "A2A",
               "collective-permute": "CP", "reduce-scatter": "RS"}
_ITEMSIZE = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s16": 2, "u16": 2,
             "f32": 4, "s32": 4, "u32": 4, "f64": 8, "s64": 8, "u64": 8, "c64": 8,
             "c128": 16}
_DTYPE = re.compile(r"=\s*\(?\s*([a-z]+[0-9]*)\[")

# Batch 8: one example per device. Small enough to compile in about a second
# per method and stage; `direct` unrolls the causal filter's 256 taps.
CASES = (
    Case("resnet-3x3", "ResNet-ish dense 3x3", (8, 32, 28, 28), (32, 32, 3, 3),
         {"padding": ((1, 1), (1, 1))}),
    Case("resnet-1x1", "ResNet-ish bottleneck 1x1", (8, 64, 28, 28), (32, 64, 1, 1)),
    Case("convnext-dw7x7", "ConvNeXt-ish depthwise 7x7", (8, 48, 28, 28), (48, 1, 7, 7),
         {"padding": ((3, 3), (3, 3)), "groups": 48}),
    Case("causal-1d", "long causal depthwise 1-D (L=2048, K=256)", (8, 16, 2048),
         (16, 1, 256), {"padding": ((255, 0),), "groups": 16}),
)

# The spatial-decomposition image: 1 example, CHANNELS -> CHANNELS, KERNEL x KERNEL.
IMAGE_SIZE, CHANNELS, KERNEL = 4096, 4, 5
# (mesh shape, which spatial dim each mesh axis splits): H only, then H x W.
SPLITS = (((1,), ("h", None)), ((2,), ("h", None)), ((4,), ("h", None)),
          ((8,), ("h", None)), ((2, 2), ("h", "w")), ((4, 2), ("h", "w")))
MEMORY_METHODS = ("lax", "auto")


@dataclasses.dataclass
class CollectiveRow:
  """One case x mesh x method: collective bytes by kind, per pass.

  `fwd` / `bwd` map a collective kind to bytes (absent: none of that kind);
  they are empty unless the values were checked (`status == OK`).
  """

  case: str
  source: str
  shapes: str
  mesh: str
  method: str
  status: str = OK
  reason: str = ""
  choice: str | None = None
  tol: float | None = None
  error: dict[str, float] = dataclasses.field(default_factory=dict)
  fwd: dict[str, int] = dataclasses.field(default_factory=dict)
  bwd: dict[str, int] = dataclasses.field(default_factory=dict)
  params_bytes: int = 0  # |w| + |b|, in bytes

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass
class MemoryRow:
  """One spatial split (or the single-device conv) x method: XLA's per-device
  memory and the forward pass's collective-permute bytes."""

  name: str
  mesh: tuple[int, ...]
  method: str
  status: str = OK
  reason: str = ""
  choice: str | None = None
  tol: float | None = None
  error: float | None = None
  compile_s: float | None = None
  temp_bytes: int | None = None
  argument_bytes: int | None = None
  output_bytes: int | None = None
  permute_bytes: int = 0

  @property
  def shards(self) -> int:
    return math.prod(self.mesh)

  def to_json(self) -> dict[str, Any]:
    return {**dataclasses.asdict(self), "shards": self.shards}


def collective_bytes(hlo_text: str) -> dict[str, int]:
  """Bytes moved by each kind of collective in a compiled program's HLO text:
  `elements * itemsize` of `jaxconv.testing.collectives`, summed per kind.

  Example:
    >>> hlo = "%ar = f32[4,3]{1,0} all-reduce(f32[4,3]{1,0} %dw), replica_groups={}"
    >>> collective_bytes(hlo)
    {'all-reduce': 48}
  """
  from jaxconv.testing import collectives
  out: dict[str, int] = {}
  for c in collectives(hlo_text):
    m = _DTYPE.search(c.line)
    size = _ITEMSIZE.get(m.group(1), 4) if m else 4
    out[c.kind] = out.get(c.kind, 0) + c.elements * size
  return out


def fmt_collectives(by_kind: dict[str, int]) -> str:
  """`{'all-reduce': 37000}` -> '36.1 KiB AR'; several kinds: total (parts); none: '0'."""
  if not by_kind:
    return "0"
  parts = [f"{report.fmt_bytes(b)} {KIND_ABBREV.get(k, k)}" for k, b in by_kind.items()]
  if len(parts) == 1:
    return parts[0]
  return f"{report.fmt_bytes(sum(by_kind.values()))} ({' + '.join(parts)})"


def select_cases(patterns: Sequence[str] | None) -> list[Case]:
  """The sharding cases whose names match `patterns` (fnmatch globs), all if None.

  Raises:
    ValueError: a pattern that matches no sharding case.
  """
  import fnmatch
  if not patterns:
    return list(CASES)
  for p in patterns:
    if not any(fnmatch.fnmatchcase(c.name, p) for c in CASES):
      raise ValueError(f"bench --sharding: --cases {p!r} matches no sharding case; "
                       f"known: {', '.join(c.name for c in CASES)}.")
  return [c for c in CASES if any(fnmatch.fnmatchcase(c.name, p) for p in patterns)]


def _need_devices() -> None:
  import jax
  if jax.device_count() < DEVICES:
    raise RuntimeError(
        f"bench --sharding: needs {DEVICES} devices; got jax.device_count()="
        f"{jax.device_count()}. XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r} must hold "
        f"{FLAG} before JAX creates its CPU backend: run `python -m bench --sharding` as "
        "its own process.")


def _mesh(kind: str):
  import jax
  from jax.sharding import AxisType
  types = {"default": {}, "auto": dict(axis_types=(AxisType.Auto,))}[kind]
  return jax.make_mesh((DEVICES,), ("data",), **types)


def _bias_ref(case: Case):
  ref = problem.reference_fn(case)

  def f(x, w, b):
    return ref(x, w) + b.reshape((1, -1) + (1,) * case.rank)
  return f


def _with_grads(f):
  import jax
  import jax.numpy as jnp
  return jax.grad(lambda x, w, b, ct: jnp.sum(f(x, w, b) * ct), argnums=(0, 1, 2))


def run_collectives(cases: Sequence[Case], methods: Sequence[str], *,
                    meshes: Sequence[str] = MESH_TYPES,
                    on_step: Callable[[str], None] | None = None) -> list[CollectiveRow]:
  """Every case x mesh x method on a batch-sharded input: check, then count.

  Args:
    cases: convolutions whose batch the 8 devices divide.
    methods: method names ('lax' first, as the baseline).
    meshes: mesh kinds among `MESH_TYPES`.
    on_step: called with a label before each row (progress bars).

  Returns:
    One `CollectiveRow` per case x mesh x method, in that order.
  """
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  import jaxconv
  _need_devices()
  rows = []
  for case in cases:
    x, w, ct = problem.inputs(case)
    b = jnp.asarray(np.random.default_rng(1).standard_normal(case.w_shape[:1],
                                                             dtype=np.float32))
    ref = _bias_ref(case)
    refs = {"fwd": jax.jit(ref)(x, w, b), "bwd": jax.jit(_with_grads(ref))(x, w, b, ct)}
    g = problem.geometry(case)
    local = dataclasses.replace(case, x_shape=(case.x_shape[0] // DEVICES, *case.x_shape[1:]))
    params = (w.size + b.size) * w.dtype.itemsize
    for kind in meshes:
      mesh = _mesh(kind)
      for name in methods:
        if on_step:
          on_step(f"{case.name} / {kind} / {name}")
        row = CollectiveRow(case.name, case.source, case.describe(), kind, name,
                            params_bytes=params)
        if name == "auto":
          row.choice = problem.auto_choice(local)[0]
        row.tol = check.tolerance(name, g)

        def f(x, w, b, name=name):
          return jaxconv.conv(x, w, b, method=name, **case.kwargs)
        with reported(row):
          with jax.sharding.set_mesh(mesh):
            args = (jax.device_put(x, NamedSharding(mesh, P("data"))),
                    jax.device_put(w, NamedSharding(mesh, P())),
                    jax.device_put(b, NamedSharding(mesh, P())),
                    jax.device_put(ct, NamedSharding(mesh, P("data"))))
            stages = {"fwd": (jax.jit(f).lower(*args[:3]).compile(), args[:3], ("y",)),
                      "bwd": (jax.jit(_with_grads(f)).lower(*args).compile(), args,
                              ("dx", "dw", "db"))}
            counts = {}
            for stage, (comp, a, leaves) in stages.items():
              verdict = check.compare(comp(*a), refs[stage], row.tol, leaves)
              row.error[stage] = verdict.error
              if not verdict.ok:
                row.status, row.reason = FAIL, f"{stage}: {verdict.message()}"
                break
              counts[stage] = collective_bytes(comp.as_text())
            else:
              row.fwd, row.bwd = counts["fwd"], counts["bwd"]
        rows.append(row)
  return rows


def run_memory(size: int = IMAGE_SIZE, *, channels: int = CHANNELS, kernel: int = KERNEL,
               splits=SPLITS, methods: Sequence[str] = MEMORY_METHODS,
               on_step: Callable[[str], None] | None = None) -> list[MemoryRow]:
  """`jaxconv.conv` on one device, then `jaxconv.sharded_conv` per split, of a
  `(1, channels, size, size)` image with a `kernel x kernel` 'same' conv.

  Returns:
    One `MemoryRow` per configuration x method, the single-device conv first.
  """
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  import jaxconv
  _need_devices()
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((1, channels, size, size), dtype=np.float32))
  w = jnp.asarray(rng.standard_normal((channels, channels, kernel, kernel),
                                      dtype=np.float32) / np.float32(channels * kernel))
  kw = {"padding": ((kernel // 2, kernel // 2),) * 2}
  case = Case("image", "", x.shape, w.shape, kw)
  ref = jax.jit(problem.reference_fn(case))(x, w)
  tol = check.tolerance("fft", problem.geometry(case))   # the loosest method's
  configs: list[tuple[str, tuple[int, ...], Any]] = [("conv, 1 device", (1,), None)]
  configs += [(f"sharded_conv {'x'.join(map(str, shape))} "
               f"({' x '.join(a.upper() for a in axes if a)})", shape, axes)
              for shape, axes in splits]
  rows = []
  for label, shape, axes in configs:
    for method in methods:
      if on_step:
        on_step(f"memory / {label} / {method}")
      row = MemoryRow(label, shape, method, tol=tol)
      with reported(row):
        if axes is None:
          args = (x, w)
          fn = lambda x, w, m=method: jaxconv.conv(x, w, method=m, **kw)  # noqa: E731
          local = case
        else:
          names = tuple(a for a in axes if a)
          mesh = jax.make_mesh(shape, names)
          args = (jax.device_put(x, NamedSharding(mesh, P(None, None, *axes))),
                  jax.device_put(w, NamedSharding(mesh, P())))
          fn = lambda x, w, m=method, mesh=mesh, axes=axes: jaxconv.sharded_conv(  # noqa: E731
              x, w, mesh=mesh, spatial_axes=axes, method=m, **kw)
          # What each shard's conv sees: its block plus the halo, unpadded
          # along the split dims.
          sizes, pad = dict(zip(names, shape)), kernel // 2
          local = dataclasses.replace(
              case, x_shape=(1, channels, *(size // sizes[a] + 2 * pad if a else size
                                            for a in axes)),
              kwargs={"padding": tuple((0, 0) if a else (pad, pad) for a in axes)})
        if method == "auto":
          row.choice = problem.auto_choice(local)[0]
        t = time.perf_counter()
        comp = jax.jit(fn).lower(*args).compile()
        row.compile_s = time.perf_counter() - t
        mem = comp.memory_analysis()
        row.temp_bytes = int(mem.temp_size_in_bytes)
        row.argument_bytes = int(mem.argument_size_in_bytes)
        row.output_bytes = int(mem.output_size_in_bytes)
        row.permute_bytes = collective_bytes(comp.as_text()).get("collective-permute", 0)
        verdict = check.compare(comp(*args), ref, tol, ("y",))
        row.error = verdict.error
        if not verdict.ok:
          row.status, row.reason = FAIL, verdict.message()
          row.temp_bytes = row.argument_bytes = row.output_bytes = None
      rows.append(row)
  return rows


# --- reporting ---------------------------------------------------------------

def _vs_lax(rows: Sequence[CollectiveRow]) -> dict[tuple[str, str, str], str]:
  """(case, mesh, method) -> this row's backward bytes over lax's, same run."""
  lax = {(r.case, r.mesh): sum(r.bwd.values()) for r in rows
         if r.method == "lax" and r.status == OK}
  out = {}
  for r in rows:
    base = lax.get((r.case, r.mesh))
    if r.status != OK or base is None:
      out[(r.case, r.mesh, r.method)] = "-"
    elif base == 0:
      out[(r.case, r.mesh, r.method)] = "=" if not r.bwd else "lax: 0"
    else:
      out[(r.case, r.mesh, r.method)] = f"{sum(r.bwd.values()) / base:.2g}x"
  return out


def _method_label(r) -> str:
  return r.method + (f" ({r.choice})" if r.choice else "")


def rich_tables(rows: Sequence[CollectiveRow], mem_rows: Sequence[MemoryRow]):
  """The two `rich.table.Table`s (either may be None when it has no rows)."""
  from rich.table import Table
  style = {OK: "green", NA: "dim", FAIL: "bold red", ERROR: "bold red"}
  t1 = None
  if rows:
    t1 = Table(title="bench --sharding: collective bytes on a batch-sharded input, "
               f"{DEVICES} host devices (AG all-gather, AR all-reduce, CP "
               "collective-permute; bwd vs lax = bwd bytes / lax's, same run)")
    for col, just in [("case", "left"), ("mesh", "left"), ("method", "left"),
                      ("status", "left"), ("fwd", "right"), ("bwd", "right"),
                      ("bwd vs lax", "right"), ("|w|+|b|", "right"), ("rel err", "right")]:
      t1.add_column(col, justify=just)
    vs, last = _vs_lax(rows), None
    for r in rows:
      if last is not None and (r.case, r.mesh) != last:
        t1.add_section()
      last = (r.case, r.mesh)
      ok = r.status == OK
      t1.add_row(r.case, r.mesh, _method_label(r), f"[{style.get(r.status, '')}]{r.status}[/]",
                 fmt_collectives(r.fwd) if ok else "-", fmt_collectives(r.bwd) if ok else "-",
                 vs[(r.case, r.mesh, r.method)], report.fmt_bytes(r.params_bytes),
                 f"{max(r.error.values()):.1e}" if r.error else "-")
  t2 = None
  if mem_rows:
    t2 = Table(title="bench --sharding: sharded_conv vs conv on one device, per-device "
               "XLA memory (compiled, checked once; not timed: the host devices share "
               "the cores)")
    for col, just in [("configuration", "left"), ("shards", "right"), ("method", "left"),
                      ("status", "left"), ("temp", "right"), ("arguments", "right"),
                      ("output", "right"), ("fwd collective-permute", "right"),
                      ("compile s", "right"), ("rel err", "right")]:
      t2.add_column(col, justify=just)
    for r in mem_rows:
      t2.add_row(r.name, str(r.shards), _method_label(r),
                 f"[{style.get(r.status, '')}]{r.status}[/]",
                 report.fmt_bytes(r.temp_bytes), report.fmt_bytes(r.argument_bytes),
                 report.fmt_bytes(r.output_bytes), report.fmt_bytes(r.permute_bytes),
                 f"{r.compile_s:.2f}" if r.compile_s is not None else "-",
                 f"{r.error:.1e}" if r.error is not None else "-")
  return t1, t2


def problems(rows: Sequence[CollectiveRow], mem_rows: Sequence[MemoryRow]) -> list[str]:
  """One line per row that is not OK: FAIL / error / n/a with its reason."""
  out = [f"{r.status}: {r.case} / {r.mesh} / {r.method}: {r.reason}"
         for r in rows if r.status != OK]
  out += [f"{r.status}: {r.name} / {r.method}: {r.reason}" for r in mem_rows if r.status != OK]
  return out


def markdown(meta: dict[str, Any], rows: Sequence[CollectiveRow],
             mem_rows: Sequence[MemoryRow]) -> str:
  """The results as markdown: one collectives table per mesh, then the memory table."""
  ncpu = meta.get("cpu_affinity") or meta.get("cpu_count")
  lines = [f"Generated by `{meta['command']}` on {meta['date']} — {meta['device']}, "
           f"{meta['device_count']} host devices on {ncpu} CPU cores, jax {meta['jax']}.", ""]
  if rows:
    methods = list(dict.fromkeys(r.method for r in rows))
    by = {(r.case, r.mesh, r.method): r for r in rows}
    vs = _vs_lax(rows)
    lines += ["Collective bytes per call on a batch-sharded input (`P('data')`, one "
              "example per device; `w`, `b` replicated), forward / backward (grads in "
              "x, w and b), from the compiled HLO (`jaxconv.testing.collectives`, "
              "elements x itemsize); AG all-gather, AR all-reduce, CP "
              "collective-permute. In brackets: backward bytes over lax's, same run; "
              "*size of w, b*: |w| + |b| in bytes, all a data-parallel backward pass "
              "needs to all-reduce. "
              "Each row's value and gradients were checked against "
              "`lax.conv_general_dilated(precision=HIGHEST)` on one device first. "
              "`auto (m)`: auto ran method m on the per-device geometry.", ""]
    for kind in dict.fromkeys(r.mesh for r in rows):
      title = {"default": "`jax.make_mesh((8,), ('data',))` (default axis type: Explicit)",
               "auto": "`jax.make_mesh((8,), ('data',), axis_types=(AxisType.Auto,))`"}
      lines += [f"**Mesh {title.get(kind, kind)}**", "",
                "| case | size of w, b | " + " | ".join(f"`{m}`" for m in methods) + " |",
                "|---|---:|" + "---:|" * len(methods)]
      for c in dict.fromkeys(r.case for r in rows):
        cells = []
        for m in methods:
          r = by.get((c, kind, m))
          if r is None:
            cells.append("")
          elif r.status != OK:
            cells.append(f"**{r.status}**" if r.status in (FAIL, ERROR) else r.status)
          else:
            cell = f"{fmt_collectives(r.fwd)} / {fmt_collectives(r.bwd)}"
            if m != "lax":
              cell += f" ({vs[(c, kind, m)]})"
            if r.choice:
              cell = f"({r.choice}) {cell}"
            cells.append(cell)
        params = next(r.params_bytes for r in rows if r.case == c)
        lines.append(f"| `{c}` | {report.fmt_bytes(params)} | " + " | ".join(cells) + " |")
      lines.append("")
    shapes = {r.case: r.shapes for r in rows}
    lines += ["Cases: " + "; ".join(f"`{c}` {s}" for c, s in shapes.items()) + ".", ""]
  if mem_rows:
    lines += ["**Spatial decomposition** (`jaxconv.sharded_conv` vs `jaxconv.conv` on "
              "one device): per-device XLA memory from `compiled.memory_analysis()` "
              "(temp / arguments / output) and the collective-permute bytes of the "
              "forward pass (the halo exchange; summed over the program, one device's "
              "view). Compiled and run once to check the value against lax; not timed: "
              f"the {meta['device_count']} host devices share {ncpu} cores, so times "
              "would not be meaningful.", "",
              "| configuration | shards | method | temp | arguments | output | "
              "fwd collective-permute |", "|---|---:|---|---:|---:|---:|---:|"]
    for r in mem_rows:
      if r.status != OK:
        cells = [f"**{r.status}**"] + [""] * 3
      else:
        cells = [report.fmt_bytes(b) for b in (r.temp_bytes, r.argument_bytes,
                                               r.output_bytes, r.permute_bytes)]
      lines.append(f"| {r.name} | {r.shards} | {_method_label(r)} | " + " | ".join(cells)
                   + " |")
    lines.append("")
  notes = [*meta.get("notes", []), *problems(rows, mem_rows)]
  if notes:
    lines += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
  return "\n".join(lines)


def write(out: Path, name: str, meta: dict[str, Any], rows: Sequence[CollectiveRow],
          mem_rows: Sequence[MemoryRow]) -> tuple[Path, Path]:
  """Write `<out>/<name>.json` and `<out>/<name>.md`; returns their paths."""
  out.mkdir(parents=True, exist_ok=True)
  js, md = out / f"{name}.json", out / f"{name}.md"
  payload = {"meta": meta, "collectives": [r.to_json() for r in rows],
             "memory": [r.to_json() for r in mem_rows]}
  js.write_text(json.dumps(payload, indent=1, default=str) + "\n")
  md.write_text(markdown(meta, rows, mem_rows))
  return js, md


# --- the command -------------------------------------------------------------

def run(argv: Sequence[str], args, con) -> int:
  """`python -m bench --sharding ...`: in this process when XLA_FLAGS already
  holds the 8-device flag, else in a child process that has it.

  Why a child process and not `os.environ["XLA_FLAGS"] = ...` at the top of
  `bench/__main__.py`: the flag is read once, when JAX creates its CPU backend.
  Setting it before `import jax` works for `python -m bench --sharding`, but
  not when `bench.__main__.main([...])` is called from a process whose
  backend already exists (tests, notebooks, another tool): that run would
  get 1 device, silently. A child started with the flag always gets 8
  devices, whoever calls; the cost is one interpreter start (~2 s). The
  child's environment keeps the flag, so it runs the tables itself.
  """
  if FLAG not in os.environ.get("XLA_FLAGS", ""):
    env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {FLAG}".strip())
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "bench", *argv], env=env,
                          cwd=root, check=False).returncode
  return _run_here(argv, args, con)


def _run_here(argv: Sequence[str], args, con) -> int:
  from . import __main__ as bench_main
  _need_devices()
  cases = select_cases(args.cases)
  methods = bench_main.resolve_methods(args.methods)
  mem_methods = [m for m in MEMORY_METHODS if m in methods]
  size = args.image_size
  total = len(cases) * len(MESH_TYPES) * len(methods) + (len(SPLITS) + 1) * len(mem_methods)
  with bench_main.progress_steps(con, "sharding", total, width=48) as on_step:
    rows = run_collectives(cases, methods, on_step=on_step)
    mem_rows = run_memory(size, methods=mem_methods, on_step=on_step)
  notes = [f"memory table: a (1, {CHANNELS}, {size}, {size}) float32 image, "
           f"{CHANNELS} -> {CHANNELS} channels, {KERNEL}x{KERNEL} kernel, 'same' "
           "zero padding; shards split H (1-D) or H x W (2-D)"]
  meta = report.metadata(argv, "sharding", gemm_peak=None, notes=notes)
  for table in rich_tables(rows, mem_rows):
    if table is not None:
      con.print(table)
  for line in problems(rows, mem_rows):
    con.print(f"[{'bold red' if line.startswith((FAIL, ERROR)) else 'yellow'}]{line}[/]",
              highlight=False)
  filtered = bool(args.cases or args.methods or size != IMAGE_SIZE)
  for p in write(args.out, "sharding-custom" if filtered else "sharding", meta, rows,
                 mem_rows):
    con.print(f"results: {p}")
  bad = [r for r in [*rows, *mem_rows] if r.status in (FAIL, ERROR)]
  if bad:
    con.print(f"[bold red]{len(bad)} row(s) failed the correctness check or crashed; "
              "see above.[/]")
  return 1 if bad else 0
