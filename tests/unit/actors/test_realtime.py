"""`run.realtime_priority`: what an actor process does when the system refuses SCHED_FIFO."""

from __future__ import annotations

import os

from actors.run import realtime


def test_realtime_off_leaves_the_scheduler_alone() -> None:
    before = os.sched_getscheduler(0)
    assert realtime(0) is None
    assert os.sched_getscheduler(0) == before


def test_realtime_refused_by_the_system_says_why_and_leaves_the_scheduler_alone() -> None:
    before = os.sched_getscheduler(0)
    reason = realtime(150)  # beyond SCHED_FIFO's range: refused, as without CAP_SYS_NICE
    assert reason is not None and reason.startswith("REALTIME_UNAVAILABLE: priority=150 error=")
    assert os.sched_getscheduler(0) == before
