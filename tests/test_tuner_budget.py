"""The tuner's run-level behaviour: trial allotment by gain, the time budget, the quiet console,
the best-so-far curve, ``--sparse-only`` and the JSON report.

Fast tests use pure helpers or one tiny kernel; the budget tests tune the six kernels of
``tiny_cnn`` at 32x32 under a 25 s / 60 s budget (slow: lowering and setup add ~30 s).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tvmprune.tune.allot import TaskCost, allot, give_back
from tvmprune.tune.budget import TimeBudget
from tvmprune.tune.console import NATIVE_STDERR, TuneConsole, stderr_to_file
from tvmprune.tune.curve import BestCurve, plot_curve

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------
# allotment
# ----------------------------------------------------------------------------------------


def test_allot_follows_estimated_gain_and_caps_small_spaces():
    costs = [
        TaskCost("big", 1, 4e-3, 5000, False),  # expensive, large space
        TaskCost("shared", 4, 1e-3, 5000, False),  # cheaper but used by 4 layers: same cost
        TaskCost("small_space", 1, 4e-3, 2, True),  # two points: at most 2 trials
        TaskCost("one_point", 3, 9e-3, 1, True),  # nothing to choose: one trial
        TaskCost("cheap", 1, 1e-4, 5000, False),
    ]
    a = allot(200, costs)
    assert sum(a.values()) == 200
    assert a["small_space"] == 2 and a["one_point"] == 1
    assert abs(a["big"] - a["shared"]) <= 1  # equal weight x default time
    assert a["big"] > 10 * a["cheap"] >= 4 * 10  # by gain, with the minimum for cheap tasks
    assert allot(200, costs) == a  # deterministic: a resumed run allots the same


def test_exhausted_task_gives_its_trials_to_later_tasks_by_gain():
    later = [TaskCost("b", 1, 2e-3, 5000, False), TaskCost("c", 1, 1e-3, 5000, False),
             TaskCost("d", 1, 1e-3, 3, True)]
    alloc = {"a": 50, "b": 20, "c": 10, "d": 3}
    out = give_back(alloc, 30, later)
    assert sum(out.values()) - sum(alloc.values()) == 30
    assert out["d"] == 3  # its space is full
    assert out["b"] - 20 > out["c"] - 10 > 0


# ----------------------------------------------------------------------------------------
# time budget bookkeeping
# ----------------------------------------------------------------------------------------


def test_time_budget_keeps_back_retiming_of_tasks_with_records_and_the_callers_reserve():
    b = TimeBudget(deadline=time.time() + 100, extra_s=10)
    b.note_default_timing("a", 2.0)
    b.note_default_timing("b", 2.0)
    assert 86 < b.search_left() <= 87  # no task has records yet: the finish only
    b.with_records.add("a")
    assert 79 < b.search_left() <= 80.5  # and a's re-timing: 2.5 s + 2 x 2 s
    b.note_batch(60.0, 8)
    assert b.may_start_batch()
    b.note_batch(90.0, 8)
    assert not b.may_start_batch()
    assert not b.may_start_task("b")
    assert b.batch_size(16) >= 1
    assert TimeBudget().may_start_batch() and TimeBudget().batch_size(16) == 16


# ----------------------------------------------------------------------------------------
# console
# ----------------------------------------------------------------------------------------

_NATIVE_WRITER = "import os; os.write(2, b'Unroll hint get ignore at CodeGenLLVM backend\\n')"


def test_native_stderr_of_this_process_and_its_children_goes_to_the_log(tmp_path, capfd):
    with stderr_to_file(tmp_path) as terminal:
        os.write(2, b"warning from C++ in this process\n")
        subprocess.run([sys.executable, "-c", _NATIVE_WRITER], check=True)  # a builder worker
        print("python stderr", file=sys.stderr)
        terminal.write("progress bar line\n")
    err = capfd.readouterr().err
    assert "progress bar line" in err
    assert "Unroll hint" not in err and "C++" not in err and "python stderr" not in err
    logged = (tmp_path / "logs" / NATIVE_STDERR).read_text()
    assert "Unroll hint get ignore" in logged and "warning from C++" in logged and "python stderr" in logged
    os.write(2, b"after\n")  # fd 2 is restored
    assert "after" in capfd.readouterr().err


def test_console_modes():
    lines: list[str] = []
    c = TuneConsole(lines.append, stream=io.StringIO())  # not a terminal: one line per task, no bar
    c.start(10, None)
    c.task("1/2 conv", 1, 1e-3, float("inf"))
    c.batch(4, 1e-3, 5e-4)
    c.task_done("  task 1/2 conv: trials 4/4, best 0.5000 ms (2.00x default)")
    c.close()
    assert lines == ["  task 1/2 conv: trials 4/4, best 0.5000 ms (2.00x default)"]
    quiet: list[str] = []
    q = TuneConsole(quiet.append, quiet=True, stream=io.StringIO())
    q.start(10, None)
    q.note("start")
    q.task_done("task line")
    q.warn("warning: something")
    assert quiet == ["warning: something"]
    stream = io.StringIO()
    b = TuneConsole(lambda s: None, stream=stream, bar=True)  # a terminal: the bar
    b.start(8, time.time() + 60)
    b.task("1/1 conv", 1, 1e-3, float("inf"))
    b.batch(8, 1e-3, 2.5e-4)
    b.close()
    text = stream.getvalue()
    assert "8/8" in text and "0.2500 ms" in text and "4.00x" in text and "left" in text


def test_best_so_far_curve_json_and_plot(tmp_path):
    c = BestCurve()
    c.add_task("a", "conv a", 2, 1e-3, float("inf"))
    c.add_task("b", "conv b", 1, 2e-3, 1.5e-3)  # resumed: its best so far counts
    assert c.default_ms == pytest.approx(4.0)
    c.batch("a", 4, 4, 8e-4)
    c.batch("a", 4, 8, 5e-4)
    c.batch("b", 2, 10, 3e-3)  # worse than its best: the curve does not rise
    j = json.loads(c.save(tmp_path).read_text())
    assert [p[0] for p in j["tasks"]["a"]["points"]] == [4, 8]
    assert j["model"][-1] == [10, pytest.approx(2 * 0.5 + 1.5)]
    assert all(x[1] >= y[1] for x, y in zip(j["model"], j["model"][1:]))
    png = plot_curve(j, tmp_path / "curve.png", "t")
    assert png.stat().st_size > 5000


# ----------------------------------------------------------------------------------------
# tuning runs
# ----------------------------------------------------------------------------------------


def _small_model_tasks(shape=(1, 3, 32, 32)):
    pytest.importorskip("tvm")
    from tvmprune.frontend.model_source import load_model
    from tvmprune.target import get_target
    from tvmprune.tune.tasks import extract_tasks, lower_model

    target = get_target("x86")
    return extract_tasks(lower_model(load_model("tiny_cnn"), shape, target)), target


@pytest.mark.slow
def test_time_budget_is_respected_and_the_report_is_json(tmp_path):
    from tvmprune.tune.tuner import tune_tasks

    tasks, target = _small_model_tasks()
    assert len(tasks) >= 4  # dense convs and the linear layer: every kernel is a task
    budget = 25.0
    lines: list[str] = []
    t0 = time.time()
    rep = tune_tasks(tasks, target, tmp_path, 1000, time_budget=budget, trials_per_iter=4, population=16,
                     log=lines.append)
    wall = time.time() - t0
    assert wall <= budget * 1.1 + 10, (wall, lines)
    assert rep.wall_s <= wall
    assert any(r.skipped == "time budget spent" for r in rep.tasks), lines
    j = json.loads(json.dumps(rep.to_json()))
    assert j["time_budget_s"] == budget and len(j["tasks"]) == len(tasks)
    assert Path(j["curve_json"]).is_file() and Path(j["curve_png"]).is_file()
    manifest = json.loads((tmp_path / "tasks.json").read_text())
    assert all(e["points"] >= 1 for e in manifest["tasks"].values())


def test_sparse_only_filters_and_says_so_on_a_dense_model(tmp_path, capsys):
    pytest.importorskip("tvm")
    from tvmprune.cli import main

    rc = main(["tune", "--model", "tiny_cnn", "--input-shape", "1x3x32x32", "--sparse-only", "--log",
               str(tmp_path / "log"), "--no-e2e"])
    assert rc == 2
    assert "--sparse-only: the model has no sparse kernels" in capsys.readouterr().err


def test_sparse_only_kernel_filter():
    pytest.importorskip("tvm")
    sys.path.insert(0, str(REPO))
    from tests.test_tune import _dense_task, _sparse_task
    from tvmprune.tune.command import _is_sparse

    assert not _is_sparse(_dense_task(0)[0].kernel)
    assert _is_sparse(_sparse_task(1)[0].kernel)


@pytest.mark.slow
def test_cli_tune_time_budget_includes_the_end_to_end_build(tmp_path, capsys):
    from tvmprune.cli import main

    budget = 60
    t0 = time.time()
    assert main(["tune", "--model", "tiny_cnn", "--input-shape", "1x3x32x32", "--trials", "1000",
                 "--time-budget", str(budget), "--trials-per-iter", "4", "--population", "16",
                 "--log", str(tmp_path / "log")]) == 0
    wall = time.time() - t0
    out = capsys.readouterr().out
    assert wall <= budget * 1.1 + 5, out
    assert "end to end" in out and "time budget" in out
    rep = json.loads((tmp_path / "log" / "report.json").read_text())
    assert rep["wall_s"] <= budget * 1.1 + 5 and rep["model_tuned_ms"] > 0
