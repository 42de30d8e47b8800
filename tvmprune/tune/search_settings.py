"""How big one task's search batches are and when its cost model starts to steer, from its trial count.

MetaSchedule's defaults are sized for thousands of trials per task; ours get tens to a few
hundred (a 2000-trial resnet18 run is ~100 per task, small layers 4-30). Two of them then make
the evolutionary search degenerate into random search:

- ``XGBModel(num_warmup_samples=100)``: until the model has seen 100 measurements *of this run*
  (a new model per task, nothing loaded from the database), ``predict`` returns uniform random
  scores. The evolution then ranks its mutants by noise and the 16 it sends for measurement are
  a random pick from random samples and random mutants: a task with <= 100 trials is never
  guided by the model at all;
- a task's whole trial count in one batch (``trials <= trials_per_iter``) is one random batch.

:func:`batch_size` splits a task into at least :data:`MIN_BATCHES` batches where it can (never
below :data:`MIN_BATCH`), and :func:`warmup_samples` lets the model steer from the second
batch on.
"""

from __future__ import annotations

import math

#: batches a task is split into when its trial count allows (the first is random, the rest model-guided)
MIN_BATCHES = 3

#: smallest batch worth the per-batch overhead (evolution, feature extraction, builder start)
MIN_BATCH = 4


def batch_size(trials_per_iter: int, remaining: int) -> int:
    """Candidates per batch for a task with ``remaining`` trials in this run: ``trials_per_iter``,
    smaller so that there are :data:`MIN_BATCHES` batches, never below :data:`MIN_BATCH`."""
    if remaining <= 0:
        return max(1, trials_per_iter)
    want = max(MIN_BATCH, math.ceil(remaining / MIN_BATCHES))
    return max(1, min(trials_per_iter, want, remaining))


def warmup_samples(batch: int) -> int:
    """Measurements before the cost model's predictions are used: one batch (MetaSchedule's 100
    would keep it random for every task of a normal run)."""
    return max(1, batch)
