"""Batch size and cost-model warm-up per task (tvmprune/tune/search_settings.py): small tasks are
split into several batches so that the model steers all but the first; the warm-up is one batch,
not MetaSchedule's 100 samples (which kept every task of a normal run on random scores)."""

from __future__ import annotations

import pytest

from tvmprune.tune.search_settings import MIN_BATCH, MIN_BATCHES, batch_size, warmup_samples


@pytest.mark.parametrize("remaining,expected", [(96, 16), (200, 16), (48, 16), (30, 10), (12, 4), (8, 4), (4, 4),
                                                (3, 3), (1, 1)])
def test_batch_size(remaining, expected):
    assert batch_size(16, remaining) == expected


def test_small_tasks_get_several_batches_and_a_model_after_the_first():
    for remaining in range(MIN_BATCH * MIN_BATCHES, 200):
        b = batch_size(16, remaining)
        assert -(-remaining // b) >= MIN_BATCHES or b == MIN_BATCH
        assert warmup_samples(b) == b < remaining  # the model is trained before the second batch
    assert batch_size(8, 1000) == 8  # never above the asked batch
