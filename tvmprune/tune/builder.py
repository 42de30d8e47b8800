"""A MetaSchedule builder whose worker processes live across batches.

MetaSchedule's ``LocalBuilder`` starts a fresh process pool for every batch (against a slow
memory leak of long-lived workers); each fresh worker imports TVM, which on a busy 2-core
machine costs 10-30 s per batch -- more than building the batch. :class:`WarmBuilder` keeps
one pool and replaces it every :data:`RESTART_EVERY` batches (the leak stays bounded); a new
pool is warmed at once (its workers import TVM while the main process does other work, e.g.
sampling the tuning spaces; not while it times anything: the imports would distort the times). Candidates are built with :func:`.measure.build_module` and
exported with :class:`.measure.ExportSO`, as with the LocalBuilder before.
"""

from __future__ import annotations

import os
from typing import Any

from .measure import build_candidate, warm_worker

#: batches built by one pool before it is replaced
RESTART_EVERY = 20


def make_warm_builder(cross_compiler: str | None, timeout_sec: float = 300.0, max_workers: int | None = None) -> Any:
    """A ``PyBuilder`` with persistent, pre-warmed workers (see the module docstring)."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.support.popen_pool import PopenPoolExecutor, StatusKind

    n_workers = max_workers or max(1, min(os.cpu_count() or 1, 4))

    @derived_object
    class WarmBuilder(PyBuilder):
        def __init__(self) -> None:
            super().__init__()
            self.pool: Any = None
            self.batches = 0

        def warm(self) -> None:
            """Start the workers now (they import TVM in the background); idempotent."""
            if self.pool is None:
                self._renew()

        def _renew(self) -> None:
            if self.pool is not None:
                self.pool.shutdown(wait=False)
            self.pool = PopenPoolExecutor(max_workers=n_workers, timeout=timeout_sec)
            self.batches = 0
            for _ in range(n_workers):  # start the workers now: they import TVM in the background
                self.pool.submit(warm_worker)

        def build(self, build_inputs: list[Any]) -> list[Any]:
            if self.pool is None or self.batches >= RESTART_EVERY:
                self._renew()
            self.batches += 1
            jobs = [(b.mod, b.target, cross_compiler) for b in build_inputs]
            out = []
            for r in self.pool.map_with_error_catching(lambda x: build_candidate(*x), jobs):
                if r.status == StatusKind.COMPLETE:
                    out.append(BuilderResult(r.value, None))
                elif r.status == StatusKind.TIMEOUT:
                    out.append(BuilderResult(None, f"build timed out after {timeout_sec:.0f} s"))
                else:
                    out.append(BuilderResult(None, f"build failed: {r.value}"))
            return out

        def shutdown(self) -> None:
            if self.pool is not None:
                self.pool.shutdown(wait=False)
                self.pool = None

    return WarmBuilder()
