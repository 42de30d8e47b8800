"""The whole model, default schedules vs tuned ones, built and timed by ``tvmprune tune``.

The default build is made *before* tuning: its build time is what the tuned build will take
too, so a time budget can keep that much back (:attr:`EndToEnd.build_s`). After tuning the
tuned build is made and both are timed in alternating rounds (a busy machine's load then hits
both alike), best round each.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

#: alternating timing rounds x repeats of each build
ROUNDS, REPEAT = 3, 7


class EndToEnd:
    """Default build of ``planned`` (made on construction); :meth:`compare` builds the tuned one."""

    def __init__(self, planned: Any, say: Callable[[str], None]) -> None:
        self.planned, self.say = planned, say
        t0 = time.time()
        self.default_vm = self._vm(None)
        self.build_s = time.time() - t0
        self.time_s = self._time_once(self.default_vm)

    def _vm(self, source: Any) -> Any:
        import tvm
        from tvm import relax

        from ..compiler import build, schedule

        cm = build(schedule(self.planned, source))
        return relax.VirtualMachine(cm.executable, tvm.cpu())

    def _time_once(self, vm: Any) -> float:
        import tvm

        from ..measure.model import time_vm

        t0 = time.time()
        time_vm(vm, tvm.cpu(), self.planned.lowered.input_shape, warmup=3, repeat=REPEAT)
        return time.time() - t0

    @property
    def reserve_s(self) -> float:
        """Seconds the comparison after tuning will take (one build, the timing rounds of both)."""
        return self.build_s + 2 * ROUNDS * self.time_s

    def compare(self, log_dir: Path) -> tuple[float, float]:
        """(default ms, tuned ms): median per round, best of :data:`ROUNDS` alternating rounds."""
        import tvm

        from ..measure.model import time_vm
        from .apply import schedule_source_for

        tuned_vm = self._vm(schedule_source_for(log_dir, self.planned.target, use_shipped=False, log=None))
        best = [float("inf"), float("inf")]
        for _ in range(ROUNDS):
            for i, vm in enumerate((self.default_vm, tuned_vm)):
                ms = time_vm(vm, tvm.cpu(), self.planned.lowered.input_shape, warmup=2, repeat=REPEAT)["median_ms"]
                best[i] = min(best[i], ms)
        self.say(f"  end to end: default schedules {best[0]:.3f} ms, tuned {best[1]:.3f} ms "
                 f"(best of {ROUNDS} alternating rounds)")
        return best[0], best[1]
