"""CPU schedules for every PrimFunc of a compiled model that is not one of tvmprune's kernels.

:func:`fuse_and_schedule` legalises and fuses the Relax ops left after lowering and schedules the
result (one rule per function, see :mod:`.dispatch`); :func:`loop_facts` reads back what a
scheduled function's loops do.
"""

from .dispatch import KERNEL_ATTR, ScheduleRecord, schedule_remaining
from .fusion import fuse_and_schedule
from .loops import loop_facts

__all__ = ["KERNEL_ATTR", "ScheduleRecord", "fuse_and_schedule", "loop_facts", "schedule_remaining"]
