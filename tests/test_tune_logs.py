"""MetaSchedule's logging during tuning: files in the log directory, caller's logging untouched,
repeatable in one process even when the caller put an unnamed handler on MetaSchedule's logger."""

from __future__ import annotations

import logging

from tvmprune.tune.logs import MS_LOGGER, metaschedule_logs


def test_logs_go_to_files_and_the_loggers_are_restored(tmp_path):
    ms = logging.getLogger(MS_LOGGER)
    foreign = logging.Handler()  # no name: what made MetaSchedule's dictConfig crash
    ms.addHandler(foreign)
    try:
        for run in range(2):  # twice in one process
            with metaschedule_logs(tmp_path / f"run{run}") as logs:
                logging.getLogger(MS_LOGGER + ".builder").info("builder line %d", run)
                logs.task_logger("conv 1x8 #3").info("task line %d", run)
                assert foreign not in ms.handlers and ms.propagate is False
            text = (tmp_path / f"run{run}" / "logs" / "task_scheduler.log").read_text()
            assert f"builder line {run}" in text
            assert f"task line {run}" in (tmp_path / f"run{run}" / "logs" / "conv_1x8__3.log").read_text()
            assert ms.handlers == [foreign] and ms.propagate is True
    finally:
        ms.removeHandler(foreign)
