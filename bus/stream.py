"""Following the executor's durable execution stream (the ZeroMQ guide's Clone pattern).

The executor numbers every stream event from its write-ahead log (`StreamEvent.seq`: 1, 2, 3,
... across restarts), publishes each on ``exec.stream`` once it is logged, publishes its head
(`StreamHead`) on a timer, and answers `StreamSince(N)` with the events after N from the log.

A follower keeps one number, the last seq it took (`StreamCursor.last`), and takes an event
only if it is exactly the next one: older ones are duplicates and dropped, newer ones mean
it is behind. Behind (at start, after a lost frame, after either side restarted, or when a
head says so) it asks "everything since last" and takes the answer through the same door.
So every event is taken once, in order, whatever was lost or repeated on the way.
"""

from __future__ import annotations

from bus import topics
from bus.messages import OrderEvent, PairTradeEvent, StreamEvent


class StreamCursor:
    """Where a follower is in the stream; pure (the actor runtime does the asking)."""

    def __init__(self, last: int = 0) -> None:
        self.last = last  # the last seq taken
        self.seen = last  # the highest seq known to exist
        self.dups = 0
        self.ahead = 0  # events dropped because an earlier one was missing

    def offer(self, seq: int) -> bool:
        """True if the event `seq` is the next one (it is then taken)."""
        if seq <= self.last:
            self.dups += 1
            return False
        if seq > self.seen:
            self.seen = seq
        if seq != self.last + 1:
            self.ahead += 1
            return False
        self.last = seq
        return True

    def heard_head(self, head: int) -> None:
        if head > self.seen:
            self.seen = head

    @property
    def behind(self) -> bool:
        return self.seen > self.last


def filed_topic(ev: StreamEvent) -> str:
    """The topic a stream event is filed under in the audit store (`xmc trades` reads these)."""
    body = ev.body
    if isinstance(body, OrderEvent):
        return topics.exec_fill(body.venue)
    if isinstance(body, PairTradeEvent):
        return topics.exec_trade(body.pair)
    return topics.EXEC_POSITIONS
