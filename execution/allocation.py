"""Split a parent order across sub-accounts (分仓), and slice child orders into icebergs.

Rules, per `AccountCfg.allocation`:

- ``single``: everything on the first eligible sub-account (or on the account itself when it
  has no sub-accounts), up to that sub-account's room.
- ``round_robin``: lots dealt one at a time over the eligible sub-accounts, starting one
  further each call, so single-lot orders rotate.
- ``capacity``: shares proportional to ``capacity`` (largest remainder), what a capped
  sub-account cannot take going to the others by the same weights.

A sub-account is eligible for an instrument unless its ``deny`` list has it or its non-empty
``allow`` list lacks it. Its room is ``max_lots`` minus its current position in the order's
direction (a concentration cap that counts what it already holds). An allocation that cannot
place the whole quantity says so in ``reason`` (``ALLOC_CAPACITY: ...``).
"""

from __future__ import annotations

from typing import Mapping

import msgspec

from bus.messages import Side
from configs.schema import AccountCfg, SubAccountCfg


class SubAlloc(msgspec.Struct, frozen=True, kw_only=True):
    account: str
    qty: int


class Allocation(msgspec.Struct, frozen=True, kw_only=True):
    """Where a parent order's lots go; ``placed < wanted`` comes with a reason."""

    instrument: str
    side: Side
    wanted: int
    placed: int
    parts: tuple[SubAlloc, ...]
    reason: str = ""

    @property
    def complete(self) -> bool:
        return self.placed == self.wanted


def eligible(sub: SubAccountCfg, instrument: str) -> bool:
    """Whether a sub-account's compliance lists let it trade `instrument`."""
    if instrument in sub.deny:
        return False
    return not sub.allow or instrument in sub.allow


def room(sub: SubAccountCfg, side: Side, position: int) -> int:
    """Lots `sub` may still take on `side` given its signed `position` (positive long)."""
    return max(0, sub.max_lots - side.sign * position)


class Allocator:
    """Allocation for one account; keeps the round-robin cursor between calls."""

    def __init__(self, name: str, account: AccountCfg) -> None:
        self.name = name
        self.account = account
        self._cursor = 0

    def allocate(self, instrument: str, side: Side, qty: int,
                 positions: Mapping[str, int] | None = None, advance: bool = True) -> Allocation:
        """Split `qty` lots of `instrument`; `positions` are signed lots held per sub-account.
        `advance=False`: what the call would give, the round-robin cursor left where it is."""
        positions = positions or {}
        acct = self.account
        if qty <= 0:
            return Allocation(instrument=instrument, side=side, wanted=qty, placed=0, parts=())
        if not acct.sub_accounts:
            return Allocation(instrument=instrument, side=side, wanted=qty, placed=qty,
                              parts=(SubAlloc(account=self.name, qty=qty),))
        subs = [s for s in acct.sub_accounts if eligible(s, instrument)]
        rooms = [room(s, side, positions.get(s.name, 0)) for s in subs]
        if acct.allocation == "round_robin":
            cursor = self._cursor
            qtys = self._round_robin(qty, rooms)
            if not advance:
                self._cursor = cursor
        elif acct.allocation == "capacity":
            qtys = _by_capacity(qty, [s.capacity for s in subs], rooms)
        else:
            qtys = _single(qty, rooms)
        parts = tuple(SubAlloc(account=s.name, qty=q) for s, q in zip(subs, qtys) if q > 0)
        placed = sum(qtys)
        reason = ""
        if placed < qty:
            reason = (f"ALLOC_CAPACITY: instrument={instrument} wanted={qty} placed={placed} "
                      f"eligible={len(subs)}")
        return Allocation(instrument=instrument, side=side, wanted=qty, placed=placed, parts=parts,
                          reason=reason)

    def _round_robin(self, qty: int, rooms: list[int]) -> list[int]:
        n = len(rooms)
        out = [0] * n
        if n == 0:
            return out
        start = self._cursor % n
        self._cursor += 1
        left = qty
        while left > 0:
            dealt = False
            for k in range(n):
                i = (start + k) % n
                if left > 0 and out[i] < rooms[i]:
                    out[i] += 1
                    left -= 1
                    dealt = True
            if not dealt:
                break
        return out


def _single(qty: int, rooms: list[int]) -> list[int]:
    out = [0] * len(rooms)
    for i, r in enumerate(rooms):
        if r > 0:
            out[i] = min(qty, r)
            break
    return out


def _by_capacity(qty: int, weights: list[float], rooms: list[int]) -> list[int]:
    """Largest-remainder split by weight, capped by room, leftovers re-split among the rest."""
    out = [0] * len(rooms)
    left = qty
    open_ = [i for i, r in enumerate(rooms) if r > 0]
    while left > 0 and open_:
        total = sum(weights[i] for i in open_)
        shares = {i: left * weights[i] / total for i in open_}
        give = {i: int(shares[i]) for i in open_}
        rest = left - sum(give.values())
        # ties go to the earlier sub-account in the config
        for i in sorted(open_, key=lambda i: (-(shares[i] - give[i]), i))[:rest]:
            give[i] += 1
        for i in open_:
            g = min(give[i], rooms[i] - out[i])
            out[i] += g
            left -= g
        open_ = [i for i in open_ if out[i] < rooms[i]]
    return out


def iceberg_slices(qty: int, visible: int) -> tuple[int, ...]:
    """Child quantities of at most `visible` lots (0: no slicing)."""
    if qty <= 0:
        return ()
    if visible <= 0 or qty <= visible:
        return (qty,)
    full, rest = divmod(qty, visible)
    return (visible,) * full + ((rest,) if rest else ())


def slice_allocation(alloc: Allocation, visible: int) -> tuple[SubAlloc, ...]:
    """Each sub-account's part cut into iceberg children, in allocation order."""
    return tuple(SubAlloc(account=p.account, qty=q) for p in alloc.parts for q in iceberg_slices(p.qty, visible))
