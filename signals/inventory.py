"""Per-pair inventory in ratio units (positive: long the spread), counting in-flight signals conservatively.

An opening signal is counted against the cap as if it will fill; a closing
signal is counted as if it will fill too, so it is never closed twice. A
signal stays pending until the actor reports its pair trade done, or until
its time-to-live passes (a signal lost on the bus must not block a pair
forever); expiries are counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class Pending(NamedTuple):
    pair: int
    sign: int  # +1 BUY the spread, -1 SELL
    closing: bool
    units: int
    deadline_ns: int


class Inventory:
    """Filled positions and pending signals of `n_pairs` pairs."""

    def __init__(self, max_inventory: Sequence[int]) -> None:
        n = len(max_inventory)
        self.max_inventory = list(max_inventory)
        self.position = [0] * n
        self.pending: dict[str, Pending] = {}
        self._open = [{1: 0, -1: 0} for _ in range(n)]
        self._close = [{1: 0, -1: 0} for _ in range(n)]
        self._next_deadline: int | None = None
        self.expired = 0
        self.unmatched = 0  # trade-done reports that matched no pending signal

    def exposure_if_opened(self, p: int, sign: int, units: int) -> int:
        """Worst-case exposure in direction `sign` if `units` more were opened: every pending trade in
        that direction fills, closing ones included, and none in the other (a close whose position
        another trade flattened first opens exposure)."""
        return max(0, sign * self.position[p] + self._open[p][sign] + self._close[p][sign] + units)

    def closable(self, p: int, sign: int) -> int:
        """Units a closing trade in direction `sign` may still take (pending closes counted as filled)."""
        return max(0, -sign * self.position[p] - self._close[p][sign])

    def pending_units(self, p: int, sign: int, closing: bool) -> int:
        return (self._close if closing else self._open)[p][sign]

    def add(self, signal_id: str, p: int, sign: int, closing: bool, units: int, deadline_ns: int) -> None:
        """Count an emitted signal as pending until `done` or `deadline_ns`."""
        self.pending[signal_id] = Pending(p, sign, closing, units, deadline_ns)
        (self._close if closing else self._open)[p][sign] += units
        if self._next_deadline is None or deadline_ns < self._next_deadline:
            self._next_deadline = deadline_ns

    def _release(self, signal_id: str) -> Pending:
        pend = self.pending.pop(signal_id)
        (self._close if pend.closing else self._open)[pend.pair][pend.sign] -= pend.units
        return pend

    def done(self, p: int, sign: int, closing: bool, units_filled: int, signal_id: str | None = None) -> None:
        """A pair trade ended with `units_filled` ratio units filled in direction `sign`.

        Releases the signal `signal_id` if pending, else the oldest pending
        signal of the same pair, direction and kind.
        """
        key = signal_id if signal_id in self.pending else None
        if key is None:
            key = next((k for k, v in self.pending.items()
                        if v.pair == p and v.sign == sign and v.closing == closing), None)
        if key is None:
            self.unmatched += 1
        else:
            self._release(key)
        self.position[p] += sign * units_filled

    def expire(self, now_ns: int) -> int:
        """Release pending signals whose deadline passed; return how many."""
        if self._next_deadline is None or now_ns < self._next_deadline:
            return 0
        gone = [k for k, v in self.pending.items() if v.deadline_ns <= now_ns]
        for k in gone:
            self._release(k)
        self.expired += len(gone)
        self._next_deadline = min((v.deadline_ns for v in self.pending.values()), default=None)
        return len(gone)
