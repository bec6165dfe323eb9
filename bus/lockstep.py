"""Lockstep steps as the feeds deliver them (pure; no sockets).

simex ends every market step with one `Step` marker per venue stream, and a
stream is ordered, so once every feed's marker for step k has arrived, every
quote of step k has too. `StepBarrier` collects markers from the feeds (the
ingest actors) and hands out complete steps in order:

    barrier = StepBarrier(feeds)
    barrier.on_marker(src, step)          # each Step from a feed
    step = barrier.complete()             # the lowest complete step not yet finished, or None
    ...act on it...
    barrier.finish(step.step)

A step 0 marker after the market has moved means simex restarted and its
market starts over: the barrier forgets everything (`on_marker` says so).
"""

from __future__ import annotations

from collections.abc import Iterable

from bus.messages import Step


class StepBarrier:
    """Which market steps every feed has delivered; `done` is the last step finished (-1: none)."""

    def __init__(self, feeds: Iterable[str]) -> None:
        self.feeds = frozenset(feeds)
        self.done = -1
        self._seen: dict[int, set[str]] = {}
        self._steps: dict[int, Step] = {}

    def on_marker(self, src: str, step: Step) -> bool:
        """Record feed `src`'s marker; True if it restarted the market (state was reset)."""
        restarted = step.step == 0 and self.done > 0
        if restarted:
            self.reset()
        if step.step > self.done:
            self._seen.setdefault(step.step, set()).add(src)
            self._steps[step.step] = step
        return restarted

    def complete(self) -> Step | None:
        """The lowest step above `done` that every feed has delivered, or None."""
        ready = [k for k, srcs in self._seen.items() if srcs >= self.feeds]
        return self._steps[min(ready)] if ready else None

    def finish(self, k: int) -> None:
        """Step `k` is dealt with; it and every earlier step are forgotten."""
        self.done = max(self.done, k)
        for old in [s for s in self._seen if s <= self.done]:
            del self._seen[old]
            del self._steps[old]

    def reset(self) -> None:
        self.done = -1
        self._seen.clear()
        self._steps.clear()
