"""Leg exposure of one pair trade, worked out from its execution-stream events (pure: no I/O, no clock).

A pair trade is *hedged* while its two legs' signed filled positions are in ratio, and
*exposed* (holding unhedged risk) otherwise. With ``net_a``, ``net_b`` the signed lots the
trade holds (every fill event of the trade, unwinds included; + long) and the pair's ratios
``ra:rb``, the trade is in ratio when

- it is flat: ``net_a == 0 and net_b == 0``, or
- the legs have opposite signs, both are whole units (``net_a % ra == 0``,
  ``net_b % rb == 0``) and hold the same number of units: ``|net_a| / ra == |net_b| / rb``.

Anything else is out of ratio: one leg filled and the other not yet, a partial fill, an
overfill, a unit half unwound, ...

Time. Each event is stamped with the executor's monotonic clock: a fill event with
``recv_ns`` (when the executor received the venue's report), a trade event with ``ts_ns``.
Events are taken in stream order (``seq``); a stamp of 0, or one earlier than the event
before it, is taken as the time of the event before it, so time never runs backwards.
Events with the same stamp make one *moment*: the positions of a moment are those after
all of its events, so two legs filled in the same instant were never out of ratio (a window
of length 0 does not count).

Windows. An exposure window opens at the first moment out of ratio and closes at the next
moment back in ratio (or flat). ``exposure_ns`` is the sum of the windows' lengths. A trade
still out of ratio at its last event has an open window (``end`` None), counted up to that
last event, and ``ended`` is ``"open"``.

Peak. At every moment out of ratio, the unhedged notional is, for each leg, the lots beyond
the hedged units (``hedged units = min(|net_a| // ra, |net_b| // rb)`` when the legs have
opposite signs, else 0) times that leg's last fill price times its multiplier times its
currency's rate to the base currency. ``peak_exposure`` is its maximum over the trade (0.0
if never exposed; None if a leg that was unhedged has no known FX rate or multiplier).

How it ended (``ended``), after the last window:

- ``"never"``: never out of ratio (``exposed`` False);
- ``"hedged"``: the last window closed because a leg's position grew into ratio (the other
  leg caught up, a resubmit filled);
- ``"unwound"``: the last window closed flat, or because a fill reduced a leg's position
  (a rollback or flatten unwound the excess);
- ``"open"``: still out of ratio at the trade's last event.
"""

from __future__ import annotations

from typing import Iterable, Literal, Sequence, Union

import msgspec

from bus.messages import ExecType, OrderEvent, PairTradeEvent

Ended = Literal["hedged", "unwound", "open", "never"]
StreamBody = Union[OrderEvent, PairTradeEvent]


class LegSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What the calculation needs of one leg."""

    instrument: str
    ratio: int = 1
    multiplier: float | None = 1.0  # None: unknown (no notional)
    fx: float | None = 1.0  # 1 unit of the instrument's currency in the base currency; None: unknown


class Moment(msgspec.Struct, frozen=True, kw_only=True):
    """The trade's positions after every event stamped `t_ns`."""

    t_ns: int
    last_index: int  # index (in the input) of the moment's last event
    net_a: int
    net_b: int
    unhedged_a: int  # lots beyond the hedged units, unsigned
    unhedged_b: int
    in_ratio: bool
    reduced: bool  # a fill of this moment reduced a leg's absolute position (an unwind)
    notional: float | None  # unhedged notional in the base currency (0.0 when in ratio; None: unknown)


class Exposure(msgspec.Struct, frozen=True, kw_only=True):
    """A pair trade's unhedged exposure over its life (module docstring: the definitions)."""

    exposure_ns: int
    windows: tuple[tuple[int, int | None], ...]  # (start_ns, end_ns or None: still open)
    peak_exposure: float | None  # base currency
    ended: Ended
    exposed: bool
    peak_ns: int = 0  # the moment of the peak (0: never exposed)
    last_ns: int = 0  # the trade's last event

    @property
    def exposure_ms(self) -> float:
        return round(self.exposure_ns / 1e6, 3)


NEVER = Exposure(exposure_ns=0, windows=(), peak_exposure=0.0, ended="never", exposed=False)


def hedged_units(net_a: int, net_b: int, ratio_a: int, ratio_b: int) -> int:
    """Whole ratio units both legs hold in opposite directions (unsigned)."""
    if net_a == 0 or net_b == 0 or (net_a > 0) == (net_b > 0):
        return 0
    return min(abs(net_a) // max(1, ratio_a), abs(net_b) // max(1, ratio_b))


def unhedged_lots(net_a: int, net_b: int, ratio_a: int, ratio_b: int) -> tuple[int, int]:
    """Per leg, the lots beyond the hedged units (unsigned)."""
    n = hedged_units(net_a, net_b, ratio_a, ratio_b)
    return abs(net_a) - n * max(1, ratio_a), abs(net_b) - n * max(1, ratio_b)


def in_ratio(net_a: int, net_b: int, ratio_a: int, ratio_b: int) -> bool:
    """Flat, or both legs whole, opposite and equal in units."""
    return unhedged_lots(net_a, net_b, ratio_a, ratio_b) == (0, 0)


def event_ns(ev: StreamBody) -> int:
    """An event's executor time: a fill's receive time, a trade event's stamp."""
    return ev.recv_ns if isinstance(ev, OrderEvent) else ev.ts_ns


def _leg_notional(lots: int, px: float, leg: LegSpec) -> float | None:
    if lots == 0:
        return 0.0
    if leg.fx is None or leg.multiplier is None:
        return None
    return lots * abs(px) * leg.multiplier * leg.fx


def moments(events: Iterable[StreamBody], a: LegSpec, b: LegSpec) -> list[Moment]:
    """The trade's positions moment by moment (one per distinct time), from its events in seq order.

    Fill events (exec_type FILL, ``last_qty`` > 0) of either leg's instrument move the positions;
    other events only mark time.
    """
    out: list[Moment] = []
    net = [0, 0]
    px = [0.0, 0.0]
    t = 0
    reduced = False
    started = False
    last_index = -1

    def close() -> None:
        ua, ub = unhedged_lots(net[0], net[1], a.ratio, b.ratio)
        na, nb = _leg_notional(ua, px[0], a), _leg_notional(ub, px[1], b)
        notional = None if na is None or nb is None else na + nb
        out.append(Moment(t_ns=t, last_index=last_index, net_a=net[0], net_b=net[1], unhedged_a=ua, unhedged_b=ub,
                          in_ratio=ua == 0 and ub == 0, reduced=reduced, notional=notional))

    for i, ev in enumerate(events):
        stamp = event_ns(ev)
        at = stamp if stamp > t else t
        if started and at != t:
            close()
            reduced = False
        t, started, last_index = at, True, i
        if not isinstance(ev, OrderEvent) or ev.exec_type is not ExecType.FILL or ev.last_qty <= 0:
            continue
        if ev.instrument == a.instrument:
            leg = 0
        elif ev.instrument == b.instrument:
            leg = 1
        else:
            continue
        before = net[leg]
        net[leg] += ev.side.sign * ev.last_qty
        if abs(net[leg]) < abs(before):
            reduced = True
        if ev.last_px:
            px[leg] = ev.last_px
    if started:
        close()
    return out


def closed_by(m: Moment) -> Ended:
    """How a window that closes at moment `m` (back in ratio) ended: "unwound" or "hedged"."""
    return "unwound" if (m.net_a == 0 and m.net_b == 0) or m.reduced else "hedged"


def exposure_of(steps: Sequence[Moment]) -> Exposure:
    """Fold a trade's moments into its `Exposure`."""
    if not steps:
        return NEVER
    windows: list[tuple[int, int | None]] = []
    start: int | None = None
    total = 0
    ended: Ended = "never"
    unknown = False
    peak, peak_ns = 0.0, 0  # largest known notional and its moment
    lots, lots_ns = 0, 0  # largest unhedged lot count and its moment (the peak's moment when FX is unknown)
    for m in steps:
        if not m.in_ratio:
            if start is None:
                start = m.t_ns
            if m.notional is None:
                unknown = True
            elif m.notional > peak or peak_ns == 0:
                peak, peak_ns = m.notional, m.t_ns
            if m.unhedged_a + m.unhedged_b > lots:
                lots, lots_ns = m.unhedged_a + m.unhedged_b, m.t_ns
        elif start is not None:
            windows.append((start, m.t_ns))
            total += m.t_ns - start
            ended = closed_by(m)
            start = None
    last = steps[-1].t_ns
    if start is not None:
        windows.append((start, None))
        total += last - start
        ended = "open"
    if not windows:
        return msgspec.structs.replace(NEVER, last_ns=last)
    return Exposure(exposure_ns=total, windows=tuple(windows), peak_exposure=None if unknown else peak,
                    ended=ended, exposed=True, peak_ns=lots_ns if unknown else peak_ns, last_ns=last)


def compute(events: Iterable[StreamBody], a: LegSpec, b: LegSpec) -> Exposure:
    """The exposure of one pair trade from its stream events (fills and trade events) in seq order."""
    return exposure_of(moments(events, a, b))
