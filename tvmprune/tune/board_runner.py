"""MetaSchedule's side of measuring on RPC boards: a runner over a :class:`.board_pool.BoardPool`
and a measure callback that keeps unmeasured candidates out of the database.

MetaSchedule's own ``RPCRunner`` waits without bound (see :mod:`.rpc_session`); this runner
hands each candidate to the pool, whose jobs are bounded and retried. A candidate ends as

* measured (``run_secs``);
* failed (``error_msg``): the board works but the kernel failed or overran its run budget;
  MetaSchedule records it as failed (``1e10`` s) and the search goes on;
* **unmeasured** (``error_msg`` starting with :data:`UNMEASURED`): the board was lost or the
  run interrupted. :class:`KeepMeasured` hides these from the database and the cost model,
  so a rerun measures them again.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, Callable

from ..errors import BoardLostError
from .board_pool import BoardPool, CandidateFailed, Evaluation

UNMEASURED = "tvmprune: not measured: "


def _args_info_json(args_info: Any) -> list[Any]:
    out = []
    for a in args_info:
        j = a.as_json()
        out.append([str(j[0]), str(j[1]), [int(s) for s in j[2]]])
    return out


def make_board_runner(pool: BoardPool, consts_pointer: str, evaluation: Evaluation,
                      run_budget: Callable[[], float]) -> tuple[Any, concurrent.futures.ThreadPoolExecutor]:
    """(runner, its thread pool): a MetaSchedule runner measuring on ``pool``; ``consts_pointer`` names the current task's consts
    (see :func:`.measure.point_to`); ``run_budget()`` is the current task's run budget in seconds."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.runner import PyRunner, PyRunnerFuture, RunnerResult

    @derived_object
    class BoardFuture(PyRunnerFuture):
        def __init__(self, future: concurrent.futures.Future) -> None:
            super().__init__()
            self.future = future

        def done(self) -> bool:
            return self.future.done()

        def result(self) -> Any:
            secs, error = self.future.result()
            return RunnerResult(secs, error)

    def measure(artifact: str, args_info: list[Any], consts_path: str, budget: float) -> tuple[Any, Any]:
        try:
            out = pool.run("measure_artifacts", {
                "artifacts": [artifact], "args_info": args_info, "consts_path": consts_path,
                "number": evaluation.number, "repeat": evaluation.repeat, "min_repeat_ms": evaluation.min_repeat_ms,
                "rounds": 1, "run_budget_s": budget})
            return out[0], None
        except CandidateFailed as e:
            return None, f"tvmprune: failed on the board: {e}"
        except BoardLostError as e:
            return None, UNMEASURED + str(e)
        except Exception as e:  # noqa: BLE001 - never let an error cross into MetaSchedule's C++ loop
            return None, UNMEASURED + f"{type(e).__name__}: {e}"

    threads = concurrent.futures.ThreadPoolExecutor(max_workers=pool.workers, thread_name_prefix="tvmprune-board")

    @derived_object
    class BoardRunner(PyRunner):
        def __init__(self) -> None:
            super().__init__()

        def run(self, runner_inputs: list[Any]) -> list[Any]:
            with open(consts_pointer, encoding="utf-8") as f:
                consts_path = f.read().strip()
            budget = run_budget()
            return [BoardFuture(threads.submit(measure, str(ri.artifact_path), _args_info_json(ri.args_info),
                                               consts_path, budget)) for ri in runner_inputs]

    return BoardRunner(), threads


def make_keep_measured(stock: list[Any], skip: Callable[[], bool]) -> Any:
    """A measure callback that applies ``stock`` (MetaSchedule's default callbacks: add to the
    database, remove build artifacts, update the cost model) to the candidates that were
    measured or failed on their own, dropping the unmeasured ones; everything is dropped
    while ``skip()`` (an interrupt) holds."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

    @derived_object
    class KeepMeasured(PyMeasureCallback):
        def apply(self, task_scheduler: Any, task_id: int, measure_candidates: Any, builder_results: Any,
                  runner_results: Any) -> None:
            keep = [i for i, rr in enumerate(runner_results)
                    if not skip() and not (rr.error_msg and str(rr.error_msg).startswith(UNMEASURED))]
            cands = [measure_candidates[i] for i in keep]
            brs = [builder_results[i] for i in keep]
            rrs = [runner_results[i] for i in keep]
            for cb in stock:
                cb.apply(task_scheduler, task_id, cands, brs, rrs)

    return KeepMeasured()
