"""``--time-budget``: when the search must stop so that the whole run ends within it.

The run's wall time is the search plus what comes after it: re-timing every task's best
record next to its default schedule, and (``tvmprune tune``) building and timing the tuned
model. :class:`TimeBudget` keeps those costs back from the deadline: the search stops when the
next measurement batch -- as long as the last one (a slower earlier one fading out) -- would end after
``deadline - reserve``. The reserve is estimated from what was measured on the way:

* re-timing one task (only tasks with records are re-timed) costs about two default timings (one compile + timing each) plus the
  side-by-side rounds (:data:`RETIME_ROUNDS_S`);
* the plot and the shutdown of the workers take :data:`FINISH_S`;
* the caller adds its own (``extra_s``: the end-to-end build, measured on the default build).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

#: side-by-side re-timing: 3 rounds x 2 schedules x 5 repeats x >= 50 ms, and the replay (measured: 2-3 s)
RETIME_ROUNDS_S = 2.5
#: the end of a run: the curve's plot (importing matplotlib), stopping the workers
FINISH_S = 3.0
#: per task, when its default timing was not measured in this run (resumed)
RETIME_FALLBACK_S = 3.0


@dataclass
class TimeBudget:
    """The deadline of one run and what must be kept back from it (seconds, ``time.time()`` clock)."""

    deadline: float | None = None
    extra_s: float = 0.0  # kept back for the caller's work after tuning (end-to-end build)
    retime_s: dict[str, float] = field(default_factory=dict)  # per task key
    batch_s: float = 0.0  # expected length of the next measurement batch
    cand_s: float = 0.0  # per candidate, in the last batch

    with_records: set[str] = field(default_factory=set)  # tasks that will be re-timed (have a record)

    @property
    def reserve_s(self) -> float:
        """The caller's reserve and the re-timing of every task that has a record or is being searched."""
        return FINISH_S + self.extra_s + sum(v for k, v in self.retime_s.items() if k in self.with_records)

    def search_left(self) -> float:
        """Seconds the search may still use (inf without a budget)."""
        if self.deadline is None:
            return float("inf")
        return self.deadline - self.reserve_s - time.time()

    def note_default_timing(self, key: str, took_s: float | None) -> None:
        self.retime_s[key] = RETIME_ROUNDS_S + 2.0 * took_s if took_s else RETIME_FALLBACK_S

    def note_batch(self, took_s: float, n: int) -> None:
        self.batch_s = max(took_s, 0.5 * self.batch_s)  # the last batch, a slow earlier one fading
        if n:
            self.cand_s = took_s / n

    def may_start_batch(self) -> bool:
        """Whether one more batch fits before the search has to stop."""
        return self.search_left() > self.batch_s

    def may_start_task(self, key: str) -> bool:
        """Whether a first batch of task ``key`` fits, with the re-timing it will then need."""
        extra = 0.0 if key in self.with_records else self.retime_s.get(key, RETIME_FALLBACK_S)
        return self.search_left() - extra > self.batch_s

    def batch_size(self, wanted: int) -> int:
        """``wanted``, smaller when the time left would not fit that many candidates."""
        left = self.search_left()
        if self.deadline is None or not self.cand_s or left == float("inf"):
            return wanted
        return max(1, min(wanted, int(left / self.cand_s / 2)))
