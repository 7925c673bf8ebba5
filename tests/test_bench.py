"""The benchmark harness runs end to end on tiny cases (so it cannot rot), and
its correctness gate catches a wrong method before timing it."""

from __future__ import annotations

import functools
import json
import os
import types

import jax.numpy as jnp
import pytest

from bench import __main__ as bench_main
from bench import cases, layers, networks, perpass, plots, report, runner, sharding, timing
from bench.cases import Case
from jaxconv._methods import METHODS

ONCE = timing.Policy(fixed=1)
TINY = Case("tiny-3x3", "test", (2, 3, 8, 8), (4, 3, 3, 3), {"padding": ((1, 1), (1, 1))})
TINY_T = Case("tiny-convT", "test", (1, 4, 5, 5), (4, 2, 2, 3),
              {"stride": 2, "padding": ((1, 1), (0, 0)), "output_padding": 1},
              transposed=True)
TINY_1D = Case("tiny-causal-1d", "test", (1, 3, 40), (3, 1, 9),
               {"padding": ((8, 0),), "groups": 3}, peers=("jax.scipy.signal.fftconvolve",
                                                          "scipy.signal.fftconvolve"))

TINY_NETS = {n.name: n for n in (
    networks.Network("tiny-convnext", "test", (2, 3, 16, 16), 3,
                     functools.partial(networks._convnext_init, (4, 8), 1, 3),
                     networks._convnext_apply),
    networks.Network("tiny-resnet", "test", (2, 3, 8, 8), 3,
                     functools.partial(networks._resnet_init, (4, 8), 1, 3),
                     networks._resnet_apply))}

zeros_method = types.SimpleNamespace(
    supports=lambda g, purpose="call": None, temp_bytes=lambda g: 0,
    conv=lambda x, w, g: jnp.zeros(g.out_shape, x.dtype))
refusing_method = types.SimpleNamespace(
    supports=lambda g, purpose="call": "never", temp_bytes=lambda g: 0,
    conv=lambda x, w, g: None)


def _no_input_grad_conv(x, w, g):
  import jax
  return METHODS["lax"].conv(jax.lax.stop_gradient(x), w, g)


# Right forward, zero input gradient.
wrong_grad_method = types.SimpleNamespace(
    supports=lambda g, purpose="call": None, temp_bytes=lambda g: 0,
    conv=_no_input_grad_conv)


def _plan_fixture(*methods, fwd_train=None):
  """A fixture making `auto` run `methods` (fwd, dx, dw), whatever the
  committed cost model says."""
  @pytest.fixture
  def fixture(monkeypatch):
    from jaxconv import _select
    plan = _select.Plan(*methods, tuple(f"test: {m}" for m in methods), fwd_train)
    monkeypatch.setattr(_select, "select", lambda g, backend=None, budget=None, **kw: plan)
    return plan
  return fixture


auto_keeps_lax = _plan_fixture("lax", "lax", "lax")
auto_mixes = _plan_fixture("direct", "lax", "direct")
auto_trains_direct = _plan_fixture("lax", "direct", "direct", fwd_train="direct")


@pytest.fixture
def tiny_table(monkeypatch):
  """Make `--cases` see only the tiny cases."""
  table = (TINY,)
  monkeypatch.setattr(cases, "FULL", table)
  monkeypatch.setattr(cases, "ALL", {c.name: c for c in table})


def test_main_writes_json_markdown_and_readme(tmp_path, tiny_table, auto_mixes, capsys):
  readme = tmp_path / "README.md"
  readme.write_text("intro\n<!-- bench:start -->\nold table\n<!-- bench:end -->\nrest\n")
  code = bench_main.main(["--cases", "tiny-*", "--methods", "direct", "auto", "--repeats",
                          "1", "--out", str(tmp_path), "--readme", str(readme),
                          "--no-peers"])
  assert code == 0
  data = json.loads((tmp_path / "custom.json").read_text())
  for key in ("command", "date", "device", "jax", "jaxlib", "cpu_count", "gemm_peak_gflops",
              "policy", "per_pass_policy"):
    assert key in data["meta"]
  assert data["meta"]["command"].startswith("python -m bench --cases 'tiny-*' --methods direct")
  rows = data["rows"]
  assert [(r["case"], r["method"]) for r in rows] == [
      ("tiny-3x3", "lax"), ("tiny-3x3", "direct"), ("tiny-3x3", "auto")]
  for r in rows:
    assert r["status"] == "ok", r["reason"]
    assert set(r["time"]) == {"fwd", "fwdbwd", "dx", "dw"}
    assert r["time"]["fwd"]["repeats"] == 1 and r["time"]["dw"]["repeats"] == 1
    assert r["ratio"]["fwd"] > 0 and r["gflops"]["fwdbwd"] > 0 and r["ratio"]["dx"] > 0
    assert max(r["error"].values()) <= r["tol"]
  auto = rows[2]
  assert auto["plan"] == ["direct", "lax", "direct"] and auto["choice"] == "direct / lax / direct"
  (view,) = data["per_pass"]
  assert view["case"] == "tiny-3x3" and view["plan"] == auto["plan"]
  assert set(view["fastest"]) == {"fwd", "dx", "dw", "fwdbwd"}
  assert view["combo_s"] == pytest.approx(sum(view["fastest"][p][1] for p in perpass.PASSES))
  assert set(view["ratio"]) == {"fwd/fastest", "dx/fastest", "dw/fastest", "fwd/lax",
                                "fwdbwd/lax", "fwdbwd/single", "fwdbwd/combo",
                                "passes/combo"}
  summary = data["per_pass_summary"]
  assert summary["fwd_near_fastest"][1] == summary["fwdbwd_near_combo"][1] == 1
  assert summary["fwdbwd_lax_cases"] == 1 and summary["fwdbwd_lax_gmean"] > 0
  out = capsys.readouterr().out
  assert "per pass" in out and "- Per pass: `auto`'s forward is within 1.1x" in out
  text = readme.read_text()
  assert text.startswith("intro\n<!-- bench:start -->\nGenerated by `python -m bench")
  assert text.endswith("<!-- bench:end -->\nrest\n") and "old table" not in text
  assert "| `tiny-3x3` | test |" in text and "**Summary**" in text
  assert "**Per pass**" in text and "| `tiny-3x3` | fwd |" in text and "|  | dW |" in text
  assert "best per pass: " in text and "- Per pass: `auto`" in text


def test_fwdbwd_is_a_training_step_forward_included():
  """The fwd+bwd stage returns `y` with both gradients, so XLA cannot drop
  the forward (the gradient of a linear map never reads `y`): its program
  holds the forward's convolution besides the two gradients'."""
  import jax
  from bench import problem
  case = Case("t", "t", (1, 2, 9), (3, 2, 3))
  x, w, ct = problem.inputs(case)
  f = problem.reference_fn(case)
  y, dx, dw = jax.jit(problem.with_grad(f))(x, w, ct)
  assert jnp.allclose(y, f(x, w)) and dx.shape == x.shape and dw.shape == w.shape
  hlo = jax.jit(problem.with_grad(f)).lower(x, w, ct).compile().as_text()
  assert hlo.count("convolution(") == 3


def test_wrong_method_is_flagged_and_not_timed(monkeypatch, tmp_path, tiny_table):
  monkeypatch.setitem(METHODS, "direct", zeros_method)
  readme = tmp_path / "README.md"
  readme.write_text("<!-- bench:start -->\n<!-- bench:end -->\n")
  code = bench_main.main(["--cases", "tiny-3x3", "--methods", "direct", "--repeats", "1",
                          "--out", str(tmp_path), "--readme", str(readme), "--no-peers"])
  assert code == 1
  lax_row, direct_row = json.loads((tmp_path / "custom.json").read_text())["rows"]
  assert lax_row["status"] == "ok" and lax_row["time"]
  assert direct_row["status"] == "FAIL"
  assert "WRONG RESULT in y" in direct_row["reason"]
  assert direct_row["time"] == {} and direct_row["ratio"] == {}
  text = readme.read_text()
  assert "**FAIL**" in text and "WRONG RESULT" in text
  assert "| `tiny-3x3` | fwd | " in text and "**FAIL** | - | - |" in text   # per pass


def test_per_pass_programs_only_after_fwdbwd_passed(monkeypatch):
  monkeypatch.setitem(METHODS, "direct", wrong_grad_method)
  lax_row, bad = runner.run_case(TINY, ["lax", "direct"], ONCE, use_peers=False)
  assert set(lax_row.compile_s) == {"fwd", "fwdbwd", "dx", "dw"}
  assert bad.status == runner.FAIL and "fwdbwd: WRONG RESULT in dx" in bad.reason
  assert set(bad.compile_s) == {"fwd", "fwdbwd"} and bad.time == {}   # dX, dW never built


def test_auto_runs_its_per_pass_plan(auto_mixes):
  rows = runner.run_case(TINY, ["lax", "direct", "auto"], ONCE, use_peers=False)
  auto_row = rows[2]
  assert auto_row.status == runner.OK, auto_row.reason
  assert auto_row.plan == ("direct", "lax", "direct")
  assert auto_row.choice == "direct / lax / direct" and "same XLA program" not in auto_row.note
  assert set(auto_row.time) == {"fwd", "fwdbwd", "dx", "dw"}
  # Its forward, dX and dW are its plan's methods' own programs: their timings
  # are shared; its forward+backward (the mix) is timed on its own.
  lax_row, direct_row = rows[0], rows[1]
  assert auto_row.time["fwd"] is direct_row.time["fwd"]
  assert auto_row.time["dx"] is lax_row.time["dx"] and auto_row.time["dw"] is direct_row.time["dw"]
  assert auto_row.time["fwdbwd"] not in (lax_row.time["fwdbwd"], direct_row.time["fwdbwd"])
  assert "fwd is 'direct''s program, dx is 'lax''s program" in auto_row.note
  (line_fwd, line_dx, line_dw, line_fb) = report.pass_lines(rows)
  assert line_fwd[:2] == ["`tiny-3x3`", "fwd"] and line_fwd[-2] == "`direct`"
  assert line_dx[:2] == ["", "dX"] and line_dx[-2] == "`lax`" and line_dw[-2] == "`direct`"
  assert line_fb[1] == "fwd+bwd" and line_fb[-2].startswith("best per pass: ")
  assert line_fb[-1].endswith("x per pass") and " single, " in line_fb[-1]


def test_auto_training_with_one_method_shares_its_fwdbwd_timing(auto_trains_direct):
  """'lax; grad: direct': the forward is lax's program, and the whole
  differentiated call is direct's own (the same XLA program), so all four
  stages take those methods' timings."""
  lax_row, direct_row, auto_row = runner.run_case(TINY, ["lax", "direct", "auto"], ONCE,
                                                  use_peers=False)
  assert auto_row.status == runner.OK and auto_row.choice == "lax; grad: direct"
  assert auto_row.time["fwd"] is lax_row.time["fwd"]
  for stage in ("fwdbwd", "dx", "dw"):
    assert auto_row.time[stage] is direct_row.time[stage], stage
  assert "fwdbwd is 'direct''s program" in auto_row.note


def test_transposed_reference_matches_jaxconv():
  (row,) = runner.run_case(TINY_T, ["lax"], ONCE, use_peers=False)
  assert row.status == runner.OK, row.reason
  assert row.flops["fwd"] == 2 * 1 * 4 * 25 * 2 * 6  # every input pixel x every tap


def test_not_implemented_is_na_with_reason(monkeypatch):
  monkeypatch.setitem(METHODS, "direct", refusing_method)
  _, row = runner.run_case(TINY, ["lax", "direct"], ONCE)
  assert row.status == runner.NA
  assert "does not support" in row.reason and "never" in row.reason
  assert row.time == {} and row.compile_s == {}


def test_case_skip_and_auto_choice(auto_keeps_lax):
  case = Case("tiny-skip", "test", TINY.x_shape, TINY.w_shape, TINY.kwargs,
              skip={"direct": "too slow", "lax": "too slow"})
  rows = runner.run_case(case, ["lax", "direct", "auto"], ONCE, use_peers=False)
  assert [r.status for r in rows] == [runner.SKIPPED] * 3
  assert rows[2].choice == "lax" and rows[2].reason == "auto picks 'lax': too slow"


def test_auto_shares_the_results_of_the_identical_program(auto_keeps_lax):
  lax_row, auto_row = runner.run_case(TINY, ["lax", "auto"], ONCE, use_peers=False)
  assert auto_row.choice == "lax" and "same XLA program as 'lax'" in auto_row.note
  assert auto_row.status == runner.OK and auto_row.time == lax_row.time
  assert auto_row.ratio == {"fwd": 1.0, "fwdbwd": 1.0, "dx": 1.0, "dw": 1.0}


def test_autotune_shares_the_timings_of_the_method_it_runs(monkeypatch):
  from jaxconv import _autotune, _select
  plan = _select.Plan("direct", "direct", "direct", ("direct (autotune)",) * 3)
  # No tuning in tests.
  monkeypatch.setattr(_autotune, "choose", lambda g, budget=None, finite_locality=False: plan)
  monkeypatch.setattr(runner, "_autotuned", lambda case: plan)
  _, direct_row, tuned = runner.run_case(TINY, ["lax", "direct", "autotune"], ONCE,
                                         use_peers=False)
  assert tuned.status == runner.OK and tuned.choice == "direct" and tuned.plan == plan.methods
  assert "its timings are shared" in tuned.note and tuned.time == direct_row.time
  assert set(tuned.compile_s) == {"fwd", "fwdbwd", "dx", "dw"}   # its own, tuning included


def test_memory_limit_skips_before_running():
  _, row = runner.run_case(TINY, ["lax", "im2col"], ONCE, max_temp_bytes=0,
                           use_peers=False)
  assert row.status == runner.SKIPPED and "--max-temp-gb" in row.reason


def test_peers():
  rows = runner.run_case(TINY_1D, [], ONCE)  # peers only
  by = {r.method: r for r in rows}
  jax_peer = by["peer:jax.scipy.signal.fftconvolve"]
  assert jax_peer.status == runner.OK and set(jax_peer.time) == {"fwd", "fwdbwd"}  # no passes
  scipy_peer = by["peer:scipy.signal.fftconvolve"]
  assert scipy_peer.status == runner.OK and set(scipy_peer.time) == {"fwd"}


def _timed_row(case, method, k, seconds, ratio):
  stats = timing.Stats(seconds, seconds, seconds, 1, seconds)
  return runner.Row(case, "sweep: test", "", method, "1d" if case.startswith("s") else None,
                    k, time={"fwd": stats, "fwdbwd": stats},
                    ratio={"fwd": ratio, "fwdbwd": ratio})


def test_plots(tmp_path):
  rows = [_timed_row(f"s{k}", m, k, k * t, 1 / t) for k in (3, 9)
          for m, t in (("lax", 1.0), ("direct", 0.5))]
  rows += [_timed_row("case", "lax", 9, 1.0, 1.0), _timed_row("case", "auto", 9, 0.5, 2.0)]
  written, notes = plots.write_all(rows, tmp_path, "t")
  names = sorted(p.name for p in written)
  assert names == ["t-kernel-1d-fwd.png", "t-kernel-1d-fwdbwd.png", "t-speedup.png"]
  assert all(p.stat().st_size > 0 for p in written)
  assert any("dense2d" in n for n in notes)


def test_round_robin_interleaves_and_rotates():
  order = []
  calls = [(lambda n=n: order.append(n), 0.0) for n in "abc"]
  stats = timing.measure_round_robin(calls, timing.Policy(fixed=3))
  assert [s.repeats for s in stats] == [3, 3, 3]
  assert order == list("abc" "bca" "cab")   # each round starts one further along
  order.clear()
  stats = timing.measure_round_robin(calls, [timing.Policy(fixed=n) for n in (3, 1, 2)])
  assert [s.repeats for s in stats] == [3, 1, 2]
  assert order == list("abc" "ca" "a")


def test_per_pass_policy_is_lighter():
  assert timing.QUICK.per_pass() == timing.Policy(target_s=0.125, max_repeats=7)
  assert timing.FULL.per_pass().max_repeats == 25 and timing.FULL.per_pass().min_repeats == 5
  assert timing.Policy(min_repeats=3, max_repeats=4).per_pass().max_repeats == 3
  assert timing.Policy(fixed=2).per_pass().repeats(1e-6) == 2


def _pass_rows(case, seconds, plan=None):
  """Rows of one case timed `seconds[method] = (fwd, dx, dw, fwdbwd)`."""
  rows = []
  for m, ts in seconds.items():
    stats = {s: timing.Stats(t, t, t, 1, t) for s, t in zip(("fwd", "dx", "dw", "fwdbwd"), ts)}
    rows.append(runner.Row(case, "test", "", m, time=stats, flops=dict.fromkeys(stats, 1),
                           plan=plan if m == "auto" else None))
  runner._derive(rows, None)
  return rows


def test_per_pass_views_and_summary():
  # b is fastest forward and fused, c fastest per gradient; auto runs b / c / c.
  one = _pass_rows("one", {"lax": (4, 4, 4, 10), "b": (1, 3, 3, 6), "c": (2, 1, 1, 5),
                           "auto": (1, 1, 1, 4), "autotune": (0.5, 0.5, 0.5, 1)},
                   plan=("b", "c", "c"))
  # auto is slower than lax forward and far off the best combination.
  two = _pass_rows("two", {"lax": (1, 1, 1, 2), "auto": (2, 3, 3, 8)}, plan=("x",) * 3)
  two.append(runner.Row("two", "test", "", "peer:p", time={
      "fwd": timing.Stats(0.1, 0.1, 0.1, 1, 0.1)}))   # peers never count
  v1, v2 = perpass.views(one + two)
  assert v1.plan == ["b", "c", "c"]
  assert v1.fastest == {"fwd": ["b", 1], "dx": ["c", 1], "dw": ["c", 1], "fwdbwd": ["c", 5]}
  assert v1.combo == ["b", "c", "c"] and v1.combo_s == 3
  assert v1.ratio == {"fwd/fastest": 1, "dx/fastest": 1, "dw/fastest": 1, "fwd/lax": 4,
                      "fwdbwd/lax": 2.5, "fwdbwd/single": 1.25, "fwdbwd/combo": 0.75,
                      "passes/combo": 1}
  assert v2.fastest["fwd"] == ["lax", 1] and v2.ratio["fwdbwd/combo"] == 3 / 8
  s = perpass.summary([v1, v2])
  assert s["fwd_near_fastest"] == [1, 2] and s["fwd_vs_lax"] == [1, 2]
  assert s["fwdbwd_near_combo"] == [0, 2]
  assert s["fwdbwd_beats_single"] == [1, 2]     # one: 5 / 4 = 1.25x; two: 2 / 8
  assert s["fwdbwd_lax_cases"] == 2 and s["fwdbwd_lax_gmean"] == pytest.approx(
      (2.5 * 0.25) ** 0.5)
  (line,) = report.pass_summary(one + two)
  assert "fastest forward on 1/2 cases" in line and "0.95x lax on 1/2" in line
  assert "combination (min fwd + min dX + min dW) on 0/2" in line
  assert "at least 1.2x faster than the fastest single method on 1/2" in line
  assert "0.79x lax (geometric mean over 2 cases)" in line
  # within 1.1x counts the threshold itself; no auto row gives no line
  at = _pass_rows("at", {"lax": (1, 1, 1, 1.1), "auto": (1.1, 1, 1, 3.3)})
  assert perpass.summary(perpass.views(at))["fwd_near_fastest"] == [1, 1]
  assert perpass.summary(perpass.views(at))["fwdbwd_near_combo"] == [1, 1]
  assert report.pass_summary(_pass_rows("x", {"lax": (1, 1, 1, 1)})) == []
  text = report.markdown(report.metadata([], "quick", gemm_peak=None), one)
  assert "| `one` | fwd | 4.00 s | **1.00 s (4x)** | 2.00 s (2x) | 1.00 s (4x) | 500 ms (8x) " \
         "| `b` | 1x |" in text
  assert "|  | fwd+bwd | 10.00 s | 6.00 s (1.7x) | **5.00 s (2x)** | 4.00 s (2.5x) | " \
         "1.00 s (10x) | best per pass: b / c / c (Σ 3.00 s) | 1.2x single, 0.75x per pass |" \
         in text
  table = report.rich_pass_table(one + two)
  assert [c.header for c in table.columns][-3:] == ["autotune", "auto picks",
                                                      "auto vs fastest"]
  assert table.row_count == 8


def test_plots_from_a_saved_run(tmp_path, capsys):
  rows = [_timed_row(f"s{k}", m, k, k * t, 1 / t) for k in (3, 9)
          for m, t in (("lax", 1.0), ("direct", 0.5))]
  saved = tmp_path / "run.json"
  saved.write_text(json.dumps({"rows": [r.to_json() for r in rows]}))
  back = [runner.Row.from_json(r) for r in json.loads(saved.read_text())["rows"]]
  assert back == rows
  assert plots.main([str(saved), "--out", str(tmp_path / "png")]) == 0
  assert (tmp_path / "png" / "run-kernel-1d-fwd.png").stat().st_size > 0
  assert "run-kernel-1d-fwdbwd.png" in capsys.readouterr().out
  (tmp_path / "bad.json").write_text("{}")
  with pytest.raises(SystemExit):
    plots.main([str(tmp_path / "bad.json")])
  assert "cannot read bench rows from" in capsys.readouterr().err


def test_readme_without_markers_is_left_alone(tmp_path):
  path = tmp_path / "README.md"
  path.write_text("no markers\n")
  assert not report.update_readme(path, "table")
  assert path.read_text() == "no markers\n"
  assert not report.update_readme(tmp_path / "missing.md", "table")


def test_quick_suite_has_the_issue_cases():
  quick = {c.name: c for c in cases.select("quick")}
  assert quick["convnext-dw7x7"].x_shape == (8, 96, 56, 56)
  assert quick["convnext-dw7x7"].kwargs["groups"] == 96
  assert quick["resnet50-1x1"].w_shape == (64, 256, 1, 1)
  assert quick["resnet-3x3"].w_shape == (64, 64, 3, 3)
  assert quick["replknet-dw31x31"].w_shape == (64, 1, 31, 31)
  assert quick["dense-15x15"].x_shape == (4, 16, 128, 128)
  assert quick["hyena-causal-1d-4k"].kwargs["padding"] == ((4095, 0),)
  assert cases.ALL["hyena-causal-1d"].w_shape == (64, 1, 16384)
  assert len(cases.select("full")) > len(quick)
  assert [c.name for c in cases.select("quick", ["resnet*"])][:2] == [
      "resnet50-1x1", "resnet-3x3"]


def test_bad_arguments():
  with pytest.raises(ValueError, match="--cases 'nope' matches no case"):
    cases.select("quick", ["nope"])
  with pytest.raises(ValueError, match="unknown suite 'medium'"):
    cases.select("medium")
  with pytest.raises(ValueError, match=r"unknown --methods \['fast'\]"):
    bench_main.resolve_methods(["fast"])
  assert bench_main.resolve_methods(["direct", "lax"]) == ["lax", "direct"]
  with pytest.raises(SystemExit):
    bench_main.parse_args(["--repeats", "0"])


def test_formatting():
  assert report.fmt_time(2.5e-4) == "250 µs"
  assert report.fmt_time(0.0123) == "12.3 ms"
  assert report.fmt_time(3.0) == "3.00 s"
  assert report.fmt_ratio(4.123) == "4.1x" and report.fmt_ratio(12.7) == "13x"
  assert report.fmt_bytes(1536) == "1.5 KiB" and report.fmt_bytes(None) == "-"
  assert timing.Policy().repeats(10.0) == 1
  assert timing.Policy().repeats(1e-6) == 15
  assert timing.Policy(fixed=2).repeats(1e-6) == 2


def test_networks_train_step_end_to_end(monkeypatch, tmp_path):
  monkeypatch.setattr(networks, "NETWORKS", TINY_NETS)
  monkeypatch.setattr(bench_main.networks_lib, "NETWORKS", TINY_NETS)
  readme = tmp_path / "README.md"
  readme.write_text("<!-- bench:start -->\n<!-- bench:end -->\n")
  # autotune (tested in test_autotune.py) would add ~30 s of tuning here.
  code = bench_main.main(["--networks", "tiny-convnext", "--methods", "auto", "--repeats",
                          "1", "--out", str(tmp_path), "--readme", str(readme)])
  assert code == 0
  data = json.loads((tmp_path / "custom.json").read_text())
  assert data["rows"] == []  # --networks alone runs no single-conv case
  rows = data["networks"]
  assert [(r["case"], r["method"]) for r in rows] == [
      ("tiny-convnext", "lax"), ("tiny-convnext", "auto")]
  for r in rows:
    assert r["status"] == "ok", r["reason"]
    assert r["time"]["step"]["repeats"] == 1 and r["ratio"]["step"] > 0
    assert r["error"]["step"] <= r["tol"]
  auto = rows[1]
  assert auto["choice"] and "x" in auto["choice"]  # e.g. "im2col x4, fft x1"
  text = readme.read_text()
  assert "**Training step, end to end**" in text and "`tiny-convnext`: test" in text


def test_network_check_catches_a_wrong_conv(monkeypatch):
  monkeypatch.setitem(METHODS, "direct", zeros_method)
  lax_row, bad = runner.run_network(TINY_NETS["tiny-resnet"], ["lax", "direct"], ONCE)
  assert lax_row.status == runner.OK and lax_row.error["step"] == 0.0
  assert bad.status == runner.FAIL and "WRONG RESULT in d[" in bad.reason
  assert bad.time == {}


def test_real_networks_are_well_formed():
  import jax
  for net in networks.NETWORKS.values():
    geoms = networks.conv_geometries(net)
    params, x, labels = networks.inputs(net)
    logits = jax.eval_shape(lambda p, x: net.apply(p, x, networks.conv_fn("lax")),
                            params, x)
    assert logits.shape == (net.x_shape[0], net.classes)
    assert len(geoms) >= 10 and labels.shape == (net.x_shape[0],)
  kernels = {g.kernel_size for g in networks.conv_geometries(networks.NETWORKS[
      "convnext-small"])}
  assert (7, 7) in kernels and (1, 1) in kernels
  with pytest.raises(ValueError, match="--networks 'nope' matches no network"):
    bench_main.select_networks(bench_main.parse_args(["--networks", "nope"]))


def test_layers_breakdown_of_a_network(monkeypatch, tmp_path, capsys):
  """`--layers`: each distinct conv once, with its count, auto's plan and the
  totals (the timings are faked: `measure_shape` is calibrate's, tested there)."""
  from jaxconv import calibrate
  ms = {"lax": 4e-3, "direct": 2e-3, "im2col": 3e-3, "toeplitz": 5e-3, "fft": 1e-3}
  timed = []

  def fake_measure_shape(shape, methods, budget_s):
    timed.append(shape)
    return [{"case": shape.name, "method": m, "pass": p, "median": ms[m]}
            for p in layers.PASSES for m in methods]
  monkeypatch.setattr(calibrate, "measure_shape", fake_measure_shape)
  calls = networks.conv_calls(networks.NETWORKS["convnext-small"])  # 14 convs, 8 distinct
  assert bench_main.main(["--layers", "--networks", "convnext-small", "--out",
                          str(tmp_path)]) == 0
  data = json.loads((tmp_path / "layers.json").read_text())["convnext-small"]
  distinct = set(networks.conv_geometries(networks.NETWORKS["convnext-small"]))
  assert len(timed) == len(distinct) == len(data["layers"]) < len(calls)
  assert sum(layer["count"] for layer in data["layers"]) == len(calls)
  n = len(calls)
  assert data["totals_s"]["lax"] == pytest.approx(dict.fromkeys(layers.PASSES, n * 4e-3))
  assert data["totals_s"]["best"] == pytest.approx(dict.fromkeys(layers.PASSES, n * 1e-3))
  for layer in data["layers"]:
    assert len(layer["plan"]) == 3 and set(layer["plan"]) <= set(ms)
  assert "total: auto" in capsys.readouterr().out


# --- python -m bench --sharding ----------------------------------------------

TINY_SHARD = Case("tiny-shard", "test", (8, 3, 8, 8), (4, 3, 3, 3),
                  {"padding": ((1, 1), (1, 1))})


def test_sharding_tables(tmp_path, monkeypatch):
  """In-process on 8 devices; else (the usual 1-device test process) the
  child-process path of `python -m bench --sharding`, on its smallest case."""
  import jax
  if jax.device_count() >= sharding.DEVICES:
    rows = sharding.run_collectives([TINY_SHARD], ["lax", "im2col"])
    mem = sharding.run_memory(32, splits=(((2,), ("h", None)), ((2, 2), ("h", "w"))),
                              methods=("lax",))
    js, md = sharding.write(tmp_path, "sharding-custom",
                            report.metadata(["--sharding"], "sharding", gemm_peak=None),
                            rows, mem)
    data = json.loads(js.read_text())
    case = "tiny-shard"
  else:
    # A flag already in XLA_FLAGS would make main() run here, on 1 device.
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", "").replace(sharding.FLAG, ""))
    code = bench_main.main(["--sharding", "--cases", "resnet-1x1", "--methods", "im2col",
                            "--image-size", "32", "--out", str(tmp_path)])
    assert code == 0
    data = json.loads((tmp_path / "sharding-custom.json").read_text())
    assert data["meta"]["device_count"] == 8 and sharding.FLAG in data["meta"]["xla_flags"]
    md, case = tmp_path / "sharding-custom.md", "resnet-1x1"
  rows = data["collectives"]
  assert [(r["mesh"], r["method"]) for r in rows] == [
      ("default", "lax"), ("default", "im2col"), ("auto", "lax"), ("auto", "im2col")]
  for r in rows:
    assert r["status"] == "ok", r["reason"]
    assert r["fwd"] == {}                                 # data parallel: local forward
    assert set(r["bwd"]) == {"all-reduce"} and r["bwd"]["all-reduce"] <= r["params_bytes"]
  mem = {(r["shards"], r["name"]): r for r in data["memory"]}
  single, *split = data["memory"]
  assert single["name"] == "conv, 1 device" and single["permute_bytes"] == 0
  for r in split:
    assert r["status"] == "ok", r["reason"]
    assert (r["permute_bytes"] > 0) == (r["shards"] > 1)   # the halo exchange
    assert r["output_bytes"] * r["shards"] == single["output_bytes"]
  assert len(mem) == len(data["memory"])
  text = md.read_text()
  assert f"| `{case}` |" in text and "| conv, 1 device | 1 | lax |" in text


def test_sharding_rows_flag_a_wrong_method(monkeypatch):
  """The row builder on a 1-device mesh: a wrong method is FAIL, with no bytes."""
  monkeypatch.setattr(sharding, "DEVICES", 1)
  monkeypatch.setitem(METHODS, "direct", zeros_method)
  lax_row, bad = sharding.run_collectives([TINY_SHARD], ["lax", "direct"],
                                          meshes=("default",))
  assert lax_row.status == runner.OK and lax_row.error["bwd"] <= lax_row.tol
  assert bad.status == runner.FAIL and "fwd: WRONG RESULT in y" in bad.reason
  assert bad.fwd == {} and bad.bwd == {}
  assert "**FAIL**" in sharding.markdown(
      report.metadata([], "sharding", gemm_peak=None), [lax_row, bad], [])


def test_sharding_errors(monkeypatch):
  import jax
  monkeypatch.setattr(sharding, "DEVICES", jax.device_count() + 1)
  with pytest.raises(RuntimeError, match=r"bench --sharding: needs \d+ devices; got "
                                         r"jax.device_count\(\)=\d+\. XLA_FLAGS="):
    sharding.run_collectives([TINY_SHARD], ["lax"])
  with pytest.raises(RuntimeError, match="needs"):
    sharding.run_memory(16)
  with pytest.raises(ValueError, match="--cases 'nope' matches no sharding case; known: "
                                       "resnet-3x3"):
    sharding.select_cases(["nope"])
  assert [c.name for c in sharding.select_cases(["*1d"])] == ["causal-1d"]
  with pytest.raises(SystemExit):
    bench_main.parse_args(["--sharding", "--image-size", "12"])


def test_collective_bytes():
  hlo = "\n".join([
      "%ar = f32[4,3]{1,0} all-reduce(f32[4,3]{1,0} %dw), replica_groups={}",
      "%cp = bf16[2,8]{1,0} collective-permute(bf16[2,8]{1,0} %x), pairs={{0,1}}",
      "%cp2 = bf16[2]{0} collective-permute(bf16[2]{0} %y), pairs={{0,1}}"])
  assert sharding.collective_bytes(hlo) == {"all-reduce": 48, "collective-permute": 36}
  assert sharding.fmt_collectives({}) == "0"
  assert sharding.fmt_collectives({"all-reduce": 2048}) == "2.0 KiB AR"
  assert sharding.fmt_collectives({"all-gather": 1024, "all-reduce": 1024}) == (
      "2.0 KiB (1.0 KiB AG + 1.0 KiB AR)")


def test_auto_periodic_choice_shares_the_fft_row():
  """auto's 'fft (periodic)' is the fft method's hook: the runner compares it
  with the fft row (and shares its results when the programs are the same)."""
  assert runner._method_of("fft (periodic)") == "fft"
  assert runner._method_of("im2col") == "im2col" and runner._method_of(None) is None


def test_tolerance_of_a_per_pass_plan_is_its_loosest_method():
  """auto's network picks are plans ('lax / im2col / fft'): the check uses the
  loosest tolerance of their methods (regression: the plan string was passed
  to jaxconv.testing.tolerance as a method name)."""
  from bench import check
  from jaxconv._geometry import geometry_of
  g = geometry_of((2, 8, 16, 16), (8, 8, 3, 3), padding=1)
  assert check.tolerance("lax / im2col / fft", g) == check.tolerance("fft", g)
  assert check.tolerance("lax / im2col / im2col", g) == max(
      check.tolerance("lax", g), check.tolerance("im2col", g))
  # A plan whose differentiated calls run one method (`Plan.fwd_train`).
  from bench import problem
  from jaxconv import _select
  label, _ = problem.plan_label(_select.Plan("lax", "fft", "fft", ("test",) * 3, "fft"))
  assert label == "lax; grad: fft"
  assert check.tolerance(label, g) == check.tolerance("fft", g)
