"""The feed adapter interface and pure pacing of a recorded feed.

An adapter yields ``(due_ns, TopOfBook)``: the recorded time at which the
record happened (UTC ns) and the normalised record. It never sleeps and
never raises on a bad record; it counts it in `stats` and moves on.

`PacedFeed` turns an adapter into something an actor polls with its own
clock: ``poll(now)`` returns the records released by ``now`` and
``next_due_ns()`` says when to wake up next. The actor does the waiting.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, Protocol

import msgspec

from feeds.book import TopOfBook


class FeedStats:
    """What an adapter yielded and what it skipped, by reason code (``UNDEF_PRICE``, ``BAD_TS``, ...)."""

    __slots__ = ("records", "skipped", "examples")

    def __init__(self) -> None:
        self.records = 0
        self.skipped: dict[str, int] = {}
        self.examples: dict[str, str] = {}  # first `CATEGORY_CONDITION: key=value` seen per reason code

    def skip(self, code: str, detail: str) -> None:
        self.skipped[code] = self.skipped.get(code, 0) + 1
        self.examples.setdefault(code, detail)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def as_dict(self) -> dict[str, float]:
        """Flat counters for a heartbeat's ``detail``."""
        out: dict[str, float] = {"records": float(self.records), "skipped": float(self.skipped_total)}
        for code, n in self.skipped.items():
            out[f"skipped.{code}"] = float(n)
        return out


class FeedAdapter(Protocol):
    """A recorded feed of one venue."""

    venue: str
    path: str
    stats: FeedStats

    def records(self) -> Iterator[tuple[int, TopOfBook]]:
        """One pass over the recording, in file order: (recorded due time UTC ns, record)."""
        ...


class PacedFeed:
    """Releases an adapter's records against the caller's clock: as fast as asked, or at recorded pace.

    ``pace="recorded"``: a record recorded ``d`` ns after the first is released
    ``d / speed`` ns after the first `poll`. ``pace="fast"``: every record is
    due at once and ``max_records`` bounds each batch. ``loop=True`` restarts
    the recording at its end, shifting due and venue times forward by the
    recording's span plus one mean record interval so time keeps increasing.
    """

    def __init__(
        self,
        adapter: FeedAdapter,
        *,
        pace: Literal["recorded", "fast"] = "fast",
        speed: float = 1.0,
        loop: bool = False,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"REPLAY_SPEED_INVALID: speed={speed}")
        self.adapter = adapter
        self.pace = pace
        self.speed = speed
        self.loop = loop
        self.loops = 0
        self._it: Iterator[tuple[int, TopOfBook]] | None = None
        self._next: tuple[int, TopOfBook] | None = None
        self._offset = 0  # added to recorded times on the current loop
        self._first_due: int | None = None  # recorded time of the very first record
        self._pass_first: int | None = None
        self._pass_last = 0
        self._pass_n = 0
        self._anchor_ns: int | None = None
        self._advance()

    @property
    def done(self) -> bool:
        """True once the recording is exhausted (never with ``loop`` unless it holds no record)."""
        return self._next is None

    def next_due_ns(self) -> int | None:
        """Caller-clock time the next record is released (None: exhausted; before the first poll: 0)."""
        if self._next is None:
            return None
        if self.pace == "fast" or self._anchor_ns is None:
            return self._anchor_ns or 0
        return self._release_ns(self._next[0])

    def poll(self, now_ns: int, max_records: int = 1000) -> list[TopOfBook]:
        """Records released at or before `now_ns`, at most `max_records`."""
        if self._anchor_ns is None:
            self._anchor_ns = now_ns
        out: list[TopOfBook] = []
        while self._next is not None and len(out) < max_records:
            due, tob = self._next
            if self.pace == "recorded" and self._release_ns(due) > now_ns:
                break
            out.append(tob)
            self._advance()
        return out

    def _release_ns(self, due: int) -> int:
        assert self._anchor_ns is not None and self._first_due is not None
        return self._anchor_ns + max(0, int((due - self._first_due) / self.speed))

    def _advance(self) -> None:
        while True:
            if self._it is None:
                self._it = self.adapter.records()
                self._pass_first, self._pass_n = None, 0
            item = next(self._it, None)
            if item is not None:
                due, tob = item
                if self._pass_first is None:
                    self._pass_first = due
                    if self._first_due is None:
                        self._first_due = due
                self._pass_last = due
                self._pass_n += 1
                if self._offset:
                    due += self._offset
                    tob = msgspec.structs.replace(tob, ts_ns=tob.ts_ns + self._offset)
                self._next = (due, tob)
                return
            if not self.loop or self._pass_n == 0 or self._pass_first is None:
                self._next = None
                return
            span = self._pass_last - self._pass_first
            gap = span // (self._pass_n - 1) if self._pass_n > 1 else 1_000_000_000
            self._offset += span + max(1, gap)
            self.loops += 1
            self._it = None
