"""Run cases x methods (and peers): check against lax first, then time.

For each case the lax reference (HIGHEST precision) is computed once; every
candidate is compiled (compile time, XLA temp memory), run once (the warm-up,
whose result is checked: forward values, then gradients in `x` and `w` under a
fixed random cotangent) and only if all of that is correct, timed. Ratios are
`lax_time / candidate_time` from the same run (> 1 means faster than lax).

Each method (not the peers) is also timed per pass: its input gradient and
its weight gradient alone (`PASS_STAGES`; the forward pass is the 'fwd'
stage), checked against the same reference gradients, only once its
forward+backward passed, and with fewer repeats (`Policy.per_pass`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax

from . import check, peers, problem
from .cases import Case
from .timing import Compiled, Policy, Stats, compile_jax, measure_round_robin, run_once

# Row.status values.
OK, NA, FAIL, SKIPPED, ERROR = "ok", "n/a", "FAIL", "skipped", "error"
PEER_PREFIX = "peer:"
STAGES = ("fwd", "fwdbwd")  # forward; forward + backward in x and w
PASS_STAGES = ("dx", "dw")   # the vjp in x, and in w, of the cotangent alone


@dataclasses.dataclass
class Row:
  """One case x method (or peer): status, errors, timings and derived numbers.

  Per-stage fields are dicts keyed by `'fwd'`, `'fwdbwd'` and the per-pass
  `'dx'` and `'dw'`; a stage that did not run is absent. `ratio` is lax time
  / this time (same run). `plan` is the method per pass `(fwd, dx, dw)` of
  'auto' and 'autotune'.
  """

  case: str
  source: str
  shapes: str
  method: str
  series: str | None = None
  kernel_taps: int = 0
  status: str = OK
  reason: str = ""
  choice: str | None = None  # auto/autotune: what it ran ('fwd / dx / dw' if mixed)
  plan: tuple[str, str, str] | None = None
  note: str = ""
  flops: dict[str, int] = dataclasses.field(default_factory=dict)
  error: dict[str, float] = dataclasses.field(default_factory=dict)
  tol: float | None = None
  compile_s: dict[str, float] = dataclasses.field(default_factory=dict)
  temp_bytes: dict[str, int | None] = dataclasses.field(default_factory=dict)
  time: dict[str, Stats] = dataclasses.field(default_factory=dict)
  ratio: dict[str, float] = dataclasses.field(default_factory=dict)
  gflops: dict[str, float] = dataclasses.field(default_factory=dict)
  peak_frac: dict[str, float] = dataclasses.field(default_factory=dict)

  @property
  def is_peer(self) -> bool:
    return self.method.startswith(PEER_PREFIX)

  def to_json(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["is_peer"] = self.is_peer
    return d

  @classmethod
  def from_json(cls, d: dict[str, Any]) -> Row:
    """The inverse of `to_json` (for re-plotting a saved run)."""
    names = {f.name for f in dataclasses.fields(cls)}
    row = cls(**{k: v for k, v in d.items() if k in names})
    row.time = {k: Stats(**v) for k, v in row.time.items()}
    return row


@dataclasses.dataclass(frozen=True)
class _Stage:
  """One thing to compile, check and time: forward, or forward+backward."""

  name: str
  build: Callable[[], Compiled | None]  # None: this candidate has no such stage
  args: tuple
  ref: Any
  leaves: tuple[str, ...]


def default_methods(suite: str = "quick") -> list[str]:
  """Every registered method, then 'auto'; `--full` adds 'autotune'."""
  from jaxconv._methods import METHODS
  return [*METHODS, "auto", *(["autotune"] if suite == "full" else [])]


def candidates(case: Case, methods: Sequence[str],
               use_peers: bool = True) -> tuple[list[str], list[str]]:
  """Method names and installed peer names to run on `case`, in order."""
  if not use_peers:
    return list(methods), []
  return list(methods), [p.name for p in peers.peers_for(case) if p.missing() is None]


def peer_notes(cases: Iterable[Case]) -> list[str]:
  """One note per peer that some case wants but that is not installed."""
  notes = {}
  for case in cases:
    for p in peers.peers_for(case):
      why = p.missing()
      if why and p.name not in notes:
        notes[p.name] = f"peer {p.name} skipped: {why}"
  return list(notes.values())


def run_case(case: Case, methods: Sequence[str], policy: Policy, *,
             max_temp_bytes: int | None = None, gemm_peak: float | None = None,
             use_peers: bool = True,
             on_step: Callable[[str], None] | None = None) -> list[Row]:
  """Check and time every method (and installed peer) on `case`.

  Args:
    case: the convolution.
    methods: jaxconv method names; 'lax' should be among them for ratios.
    policy: how many timed repeats.
    max_temp_bytes: skip a candidate whose XLA temp memory exceeds this.
    gemm_peak: this machine's GEMM GFLOP/s, for the fraction-of-peak column.
    use_peers: also run the installed peers of `case`.
    on_step: called with a label before each candidate (progress bars).

  Returns:
    One `Row` per candidate, ratios to lax filled in.
  """
  x, w, ct = problem.inputs(case)
  ref = problem.reference_fn(case)
  step = jax.jit(problem.with_grad(ref))(x, w, ct)
  refs = {"fwd": step[0], "fwdbwd": step, "dx": step[1], "dw": step[2]}
  g = problem.geometry(case)
  flops = {"fwd": g.flops, "fwdbwd": 3 * g.flops, "dx": g.flops, "dw": g.flops}
  method_names, peer_names = candidates(case, methods, use_peers)
  rows, pending, shared, timed_as, stage_twins = [], [], [], [], []
  for name in [*method_names, *(PEER_PREFIX + p for p in peer_names)]:
    if on_step:
      on_step(f"{case.name} / {name}")
    row = Row(case.name, case.source, case.describe(), name, case.series,
              case.kernel_taps, flops=dict(flops))
    if name == "auto":
      row.plan, row.choice, row.note = _auto_choice(case)
    picked = next((m for m in map(_method_of, row.plan or ()) if m in case.skip), None)
    skip = case.skip.get(name) or case.skip.get(picked or "")
    same = next((r for r in rows if r.method == _method_of(row.choice)), None)
    if same is not None and not skip and _same_program(case, name, same.method, x, w):
      shared.append((row, same))   # its results are copied once `same` is timed
    elif skip:
      row.status = SKIPPED
      row.reason = skip if name in case.skip else f"auto picks {picked!r}: {skip}"
    else:
      row.tol = check.tolerance(name, g)
      with reported(row):
        todo = _execute(row, _stages(case, name, (x, w, ct), refs), max_temp_bytes)
        if name == "autotune":
          tuned = _autotuned(case)
          row.plan = tuned and tuned.methods
          row.choice = tuned and problem.plan_label(tuned)[0]
          twin = next((r for r in rows if r.method == row.choice and r.status == OK), None)
          if todo and twin is not None and _same_program(case, name, twin.method, x, w):
            # Timing the same program twice only measures cache and order
            # luck: autotune keeps its compile time (with the tuning) and
            # error, and takes the timings of the method it runs.
            todo, timed_as = [], timed_as + [(row, twin)]
        if name in ("auto", "autotune") and row.plan and todo:
          todo, twins = _split_stage_twins(case, row, todo, rows, (x, w, ct))
          stage_twins += twins
        pending += todo
    rows.append(row)
  _time_all(pending, policy)
  for row, same in shared:
    _share(row, same)
  for row, twin in timed_as:
    row.time = dict(twin.time)
    row.note += f"; same XLA program as {twin.method!r}: its timings are shared"
  for row in {id(r): r for r, _, _ in stage_twins}.values():
    twins = [(stage, twin) for r, stage, twin in stage_twins if r is row]
    for stage, twin in twins:
      if stage in twin.time:
        row.time[stage] = twin.time[stage]
    row.note += "; " + ", ".join(f"{stage} is {twin.method!r}'s program"
                                 for stage, twin in twins) + ": its timing is shared"
  _derive(rows, gemm_peak)
  return rows


@contextlib.contextmanager
def reported(row):
  """The work of one row: a method's decline (NotImplementedError) makes it
  n/a, any other exception an error with its message; the run goes on."""
  try:
    yield
  except NotImplementedError as e:
    row.status, row.reason = NA, str(e)
  except Exception as e:  # noqa: BLE001 -- reported loudly, the run goes on
    row.status, row.reason = ERROR, f"{type(e).__name__}: {e}"[:500]


def _method_of(choice: str | None) -> str | None:
  """The method behind auto's `choice`: 'fft (periodic)' is the fft method's
  periodic hook, which `method="fft"` runs too where it is cheaper (whether the
  programs are the same is then checked by `_same_program`)."""
  from jaxconv import _select
  if choice and choice.endswith(_select.PERIODIC):
    return choice[:-len(_select.PERIODIC)]
  return choice


def _autotuned(case: Case):
  """The `jaxconv._select.Plan` autotune settled on for `case` (looked up,
  never re-tuned), or None."""
  from jaxconv import _autotune
  return _autotune._memory.get(_autotune.cache_key(problem.method_geometry(case)))


def _same_program(case: Case, a: str, b: str, x, w) -> bool:
  """Whether methods `a` and `b` lower to the same XLA program on `case`."""
  lower = lambda m: jax.jit(problem.method_fn(case, m)).lower(x, w).as_text()  # noqa: E731
  try:
    return lower(a) == lower(b)
  except Exception:  # noqa: BLE001 -- then measure `a` on its own
    return False


def _stage_program(case: Case, name: str, stage: str, x, w, ct) -> str:
  """The StableHLO text of one stage ('fwd', 'dx' or 'dw') of `name` on `case`."""
  f = problem.method_fn(case, name)
  if stage == "fwd":
    return jax.jit(f).lower(x, w).as_text()
  if stage == "fwdbwd":
    return jax.jit(problem.with_grad(f)).lower(x, w, ct).as_text()
  return jax.jit(problem.pass_fn(f, stage)).lower(x, w, ct).as_text()


def _split_stage_twins(case: Case, row: Row, todo: list, rows: Sequence[Row], args: tuple
                       ) -> tuple[list, list]:
  """Split `auto`'s (or `autotune`'s) checked stages into those to time and
  those that are the very program of its plan's method for that pass
  (`(row, stage, twin row)`).

  A per-pass plan mixes methods in its forward+backward, which is timed, but
  its forward is `plan.fwd`'s own forward program, and its dX and dW programs
  are those of `plan.dx` and `plan.dw`: timing the same program twice only
  measures noise (up to 20% at a few ms on a shared 2-core machine), so
  those stages take the method's timings. So does its forward+backward
  where that is the program of the method of both gradients (a plan 'fwd;
  grad: m', whose differentiated calls run m throughout).
  """
  x, w, ct = args
  plan = dict(zip(("fwd", *PASS_STAGES), map(_method_of, row.plan)))
  if plan["dx"] == plan["dw"]:
    plan["fwdbwd"] = plan["dx"]
  keep, twins = [], []
  for item in todo:
    stage = item[1]
    twin = next((r for r in rows if r.method == plan.get(stage) and r.status == OK), None)
    try:
      same = twin is not None and (_stage_program(case, row.method, stage, x, w, ct)
                                   == _stage_program(case, twin.method, stage, x, w, ct))
    except Exception:  # noqa: BLE001 -- then time the stage on its own
      same = False
    if same:
      twins.append((row, stage, twin))
    else:
      keep.append(item)
  return keep, twins


def _share(row: Row, same: Row) -> None:
  """Give `row` the results of `same`, which runs the identical program."""
  for f in ("status", "reason", "tol", "error", "compile_s", "temp_bytes", "time"):
    setattr(row, f, getattr(same, f))
  row.note += f"; same XLA program as {same.method!r}: its results are shared"


def _auto_choice(case: Case) -> tuple[tuple[str, str, str] | None, str | None, str]:
  """auto's `(plan, label, reason)` for `case` (see `problem.auto_plan`)."""
  try:
    plan = problem.auto_plan(case)
  except Exception as e:  # noqa: BLE001 -- informational only
    return None, None, f"auto's choice unknown ({type(e).__name__}: {e})"
  return tuple(plan.methods), *problem.plan_label(plan)


def _stages(case: Case, name: str, args: tuple, refs: dict) -> list[_Stage]:
  x, w, ct = args
  if not name.startswith(PEER_PREFIX):
    f = problem.method_fn(case, name)
    traceable, g = True, None
  else:
    peer = peers.PEERS[name[len(PEER_PREFIX):]]
    f, g = peer.build(case)
    traceable = peer.traceable
  if traceable:
    fb = problem.with_grad(f)
    # The per-pass stages come last: `_execute` stops at the first stage that
    # fails or declines, so a method whose forward+backward failed is never
    # compiled per pass. Its forward pass is the 'fwd' stage itself.
    per_pass = [] if name.startswith(PEER_PREFIX) else [
        _Stage(p, lambda p=p: compile_jax(problem.pass_fn(f, p), x, w, ct), (x, w, ct),
               refs[p], (p,)) for p in PASS_STAGES]
    return [_Stage("fwd", lambda: compile_jax(f, x, w), (x, w), refs["fwd"], ("y",)),
            _Stage("fwdbwd", lambda: compile_jax(fb, x, w, ct), (x, w, ct),
                   refs["fwdbwd"], ("y", "dx", "dw")), *per_pass]
  xn, wn, ctn = peers.as_numpy(x, w, ct)
  return [_Stage("fwd", lambda: Compiled(f, 0.0, None), (xn, wn), refs["fwd"], ("y",)),
          _Stage("fwdbwd", lambda: None if g is None else Compiled(g, 0.0, None),
                 (xn, wn, ctn), refs["fwdbwd"], ("y", "dx", "dw"))]


def _execute(row: Row, stages: list[_Stage], max_temp_bytes: int | None) -> list:
  """Compile and check every stage of `row`.

  Returns:
    `[(row, stage, call, warm-up seconds)]` to time, when every stage is
    correct; else `[]` (status and reason say why).
  """
  ready = []
  for st in stages:
    comp = st.build()
    if comp is None:
      continue
    row.compile_s[st.name] = comp.compile_s
    row.temp_bytes[st.name] = comp.temp_bytes
    if max_temp_bytes is not None and (comp.temp_bytes or 0) > max_temp_bytes:
      row.status = SKIPPED
      row.reason = (f"{st.name}: XLA temp memory {comp.temp_bytes / 2**30:.1f} GiB "
                    f"> limit {max_temp_bytes / 2**30:.1f} GiB (--max-temp-gb)")
      return []
    out, t0 = run_once(lambda: comp.call(*st.args))  # noqa: B023 -- called here
    verdict = check.compare(out, st.ref, row.tol, st.leaves)
    del out
    row.error[st.name] = verdict.error
    if not verdict.ok:
      row.status, row.reason = FAIL, f"{st.name}: {verdict.message()}"
      return []
    ready.append((st, comp, t0))
  return [(row, st.name, lambda c=comp, a=st.args: c.call(*a), t0) for st, comp, t0 in ready]


def _time_all(pending: list, policy: Policy) -> None:
  """Time every checked stage of one case (or network), round-robin; the
  per-pass stages with `policy.per_pass()`."""
  policies = [policy.per_pass() if stage in PASS_STAGES else policy
              for _, stage, _, _ in pending]
  stats = measure_round_robin([(call, t0) for _, _, call, t0 in pending], policies)
  for (row, stage, _, _), st in zip(pending, stats):
    row.time[stage] = st


def _derive(rows: list[Row], gemm_peak: float | None) -> None:
  """Fill ratio to lax, GFLOP/s and fraction of GEMM peak from the timings."""
  lax = next((r for r in rows if r.method == "lax" and r.status == OK), None)
  for r in rows:
    for stage, t in r.time.items():
      r.gflops[stage] = r.flops[stage] / t.median / 1e9
      if gemm_peak:
        r.peak_frac[stage] = r.gflops[stage] / gemm_peak
      if lax is not None and stage in lax.time:
        r.ratio[stage] = lax.time[stage].median / t.median


def run_suite(cases: Sequence[Case], methods: Sequence[str], policy: Policy, *,
              max_temp_bytes: int | None = None, gemm_peak: float | None = None,
              use_peers: bool = True,
              on_step: Callable[[str], None] | None = None) -> list[Row]:
  """`run_case` over `cases`; rows in case order."""
  rows = []
  for case in cases:
    rows += run_case(case, methods, policy, max_temp_bytes=max_temp_bytes,
                     gemm_peak=gemm_peak, use_peers=use_peers, on_step=on_step)
  return rows


def count_steps(cases: Sequence[Case], methods: Sequence[str],
                use_peers: bool = True) -> int:
  """Number of `on_step` calls `run_suite` will make (for a progress bar)."""
  return sum(len(m) + len(p)
             for m, p in (candidates(c, methods, use_peers) for c in cases))


# --- end-to-end networks -----------------------------------------------------

def network_methods(suite: str = "quick") -> tuple[str, ...]:
  """What the training-step networks run with: lax everywhere and the cost
  model's pick per conv; `--full` adds the autotuned pick per conv (its tuning
  costs ~35 s on 2 cores, over the quick suite's 3-minute budget)."""
  return ("lax", "auto", *(("autotune",) if suite == "full" else ()))


def run_network(net, methods: Sequence[str], policy: Policy, *,
                max_temp_bytes: int | None = None,
                on_step: Callable[[str], None] | None = None) -> list[Row]:
  """Check and time one optax training step of `net` with every conv on `method`.

  The reference is the same step with every conv computed by lax at HIGHEST
  precision; the loss and every gradient leaf must agree within the sum of
  the per-conv tolerances of the methods actually used (first-order error
  propagation through layers of gain ~1). The step's stage is `'step'`;
  `compile_s` for `autotune` includes the tuning it does on first trace.

  Returns:
    One `Row` per method, ratios to the `lax` row filled in.
  """
  from . import networks
  params, x, labels = networks.inputs(net)
  geoms = networks.conv_geometries(net)
  ref_step, opt = networks.train_step(net, networks.conv_fn(None))
  args = (params, opt.init(params), x, labels)
  ref = jax.jit(ref_step)(*args)[2:]
  paths = jax.tree_util.tree_flatten_with_path(ref[1])[0]
  leaves = ("loss", *(f"d{jax.tree_util.keystr(p)}" for p, _ in paths))
  flops = {"step": 3 * sum(g.flops for g in geoms)}
  shapes = f"x{tuple(net.x_shape)}, {len(geoms)} convs"
  rows, pending = [], []
  for name in methods:
    if on_step:
      on_step(f"{net.name} / {name}")
    row = Row(net.name, net.source, shapes, name, flops=dict(flops))
    step, _ = networks.train_step(net, networks.conv_fn(name))

    def build(row=row, step=step, name=name):
      comp = compile_jax(step, *args)
      picks = _network_picks(name, geoms)
      row.tol = sum(check.tolerance(m, g) for m, g in zip(picks, geoms))
      if name in ("auto", "autotune"):
        row.choice = ", ".join(f"{m} x{picks.count(m)}" for m in dict.fromkeys(picks))
      # Time the whole step; check the loss and gradients it returns.
      return Compiled(lambda *a: comp.call(*a)[2:], comp.compile_s, comp.temp_bytes)

    try:
      pending += _execute(row, [_Stage("step", build, args, ref, leaves)], max_temp_bytes)
    except Exception as e:  # noqa: BLE001 -- reported loudly, the run goes on
      row.status, row.reason = ERROR, f"{type(e).__name__}: {e}"[:500]
    rows.append(row)
  _time_all(pending, policy)
  _derive(rows, None)
  return rows


def _network_picks(method: str, geoms) -> list[str]:
  """The method each conv of a network ran with (after compiling it)."""
  from jaxconv import _autotune, _select
  if method == "auto":
    return [problem.plan_label(_select.select(g))[0] for g in geoms]
  if method == "autotune":  # tuned while compiling: these are memory hits
    return [problem.plan_label(p)[0] for p in map(_autotune.choose, geoms)]
  return [method] * len(geoms)


def run_networks(nets, methods: Sequence[str], policy: Policy, *,
                 max_temp_bytes: int | None = None,
                 on_step: Callable[[str], None] | None = None) -> list[Row]:
  """`run_network` over `nets`; rows in order."""
  rows = []
  for net in nets:
    rows += run_network(net, methods, policy, max_temp_bytes=max_temp_bytes,
                        on_step=on_step)
  return rows
