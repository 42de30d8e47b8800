"""Old home of the timing functions and the table printer (kept for ``tune/tuner.py`` and
``tune/command.py`` until they import :mod:`tvmprune.measure.model` / :mod:`tvmprune.reports.tables`)."""

from .measure.model import summarize_ms, time_callable, time_torch, time_vm  # noqa: F401
from .reports.tables import format_table  # noqa: F401
