"""Armed entries: a pair trade's opening orders, decided before the signal that sends them.

The engine's one rule (`execution.engine`) is that an input is worked out in full, written to
the log in one write, and only then carried out. For a signal that opens a trade, most of
that work does not depend on the signal: whether the pair may trade at all (risk level, a
trade of the pair still open, orders in doubt, the pair and position limits, the accounts'
lists), how each leg is split across sub-accounts, and what the orders look like. `arm`
does that work off the hot path, per pair, direction and closing flag, for signals of the
pair's configured size, and keeps it as an `ArmedEntry` stamped with the engine's input
generation (`gen`: every input that could change one of those verdicts moves it: a report,
a timer, a halt, a restart, a new trade, the risk level, a first FX rate).

A signal whose entry is armed under the current generation then only checks what depends on
it (its id not seen, not expired, legs and sizes as armed, prices finite and positive,
notional at the current FX rate, the order-rate window, the margin what-if's cached verdict,
no venue session down), patches ids, prices and times into the armed orders (`prepare`) and
writes one small record, `execution.wal.EntrySent`, which reads back as exactly the records
the ordinary path writes (`execution.wal.expand`); then the orders leave. The engine then
runs the ordinary path for the same signal (trade, limits, router, stream, positions), which
must arrive at exactly those records and orders (`written`); if it did not, memory and log
disagree and the process stops (`FastPathDiverged`), so the supervisor restarts it from the
log, which holds what was sent.

Anything else (another size, a check that fails, an entry not armed) takes the ordinary path,
which decides and explains. So no check is skipped and no order leaves without its record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from bus.messages import OrderRequest, Side, Signal, SignalLeg
from configs.schema import InstrumentCfg
from execution.ids import cl_ord_id
from execution.pairtrade import PairParams, PairTrade, SendOrder
from execution.wal import EntrySent, EntrySentOut, WalRecord, child_order, expand

Key = tuple[str, Side, bool]  # pair, direction, closing
_TEMPLATE_ID = "ARMED0"


class FastPathDiverged(BaseException):
    """The ordinary path did not arrive at the records an armed entry wrote: the process must
    stop (its memory and its log disagree); a restart rebuilds it from the log."""


@dataclass(frozen=True, slots=True)
class LegOrder:
    """One entry order of an armed trade, as `PairTrade.start` makes it (ids, price, times to patch)."""

    order: OrderRequest
    leg: str  # "a" or "b": which cl_ord_id it gets
    signal_leg: int  # index of the signal leg whose limit price it carries
    multiplier: float
    currency: str


@dataclass(frozen=True, slots=True)
class Template:
    """What an entry of (pair, direction) of the configured size sends, whatever the state."""

    key: Key
    params: PairParams
    legs: tuple[tuple[str, Side, int], ...]  # the signal's legs as armed: (instrument, side, qty)
    orders: tuple[LegOrder, ...]
    signal: Signal  # the stand-in signal it was made from (prices 1.0): rehearsals use it
    params_raw: msgspec.Raw  # `params` encoded once

    @property
    def units(self) -> int:
        """Signed ratio units the trade asks for (+ buys leg A)."""
        return self.legs[0][2] // max(1, self.params.a.ratio) * self.key[1].sign


@dataclass(frozen=True, slots=True)
class ArmedEntry:
    """A template whose state-dependent checks passed under generation `gen`."""

    gen: int
    template: Template
    parts: tuple[tuple[tuple[str, int], ...] | None, ...]  # per order: the sub-account split (None: sent whole)
    venues: frozenset[str]
    pending: dict[tuple[str, str], int]  # what-if: the entries of trades in flight


def template(params: PairParams, direction: Side, closing: bool, lots: int,
             instruments: Mapping[str, InstrumentCfg]) -> Template:
    """The entry orders of `lots` ratio units, from a trade started on a stand-in signal (the
    ordinary machine makes them; only ids, prices and times are patched)."""
    other = Side.SELL if direction is Side.BUY else Side.BUY
    legs = ((params.a.instrument, direction, lots * params.a.ratio), (params.b.instrument, other, lots * params.b.ratio))
    sig = Signal(signal_id="", pair=params.pair, direction=direction, closing=closing,
                 legs=tuple(SignalLeg(instrument=i, side=s, qty=q, limit_px=1.0) for i, s, q in legs),
                 spread=0.0, zscore=0.0, expiry_ns=0, tick_recv_ns=0, signal_ns=0)
    trade = PairTrade(_TEMPLATE_ID, sig, params)
    orders = []
    for action in trade.start(0):
        if isinstance(action, SendOrder):
            o = action.order
            leg = "a" if o.instrument == params.a.instrument else "b"
            inst = instruments[o.instrument]
            orders.append(LegOrder(order=o, leg=leg, signal_leg=0 if leg == "a" else 1, multiplier=inst.multiplier,
                                   currency=inst.currency))
    return Template(key=(params.pair, direction, closing), params=params, legs=legs, orders=tuple(orders),
                    signal=sig, params_raw=msgspec.Raw(msgspec.msgpack.encode(params)))


def prepare(armed: ArmedEntry, sig: Signal, now: int, trade_id: str, seq: int) -> tuple[EntrySentOut, list[OrderRequest]]:
    """The one record an entry of `sig` writes (it reads back as the ordinary path's records,
    `execution.wal.expand`) and the orders that go out (children where an order is split), for
    trade `trade_id` whose first event gets stream seq `seq`. The caller has checked that `sig`
    fits `armed` (`fits`)."""
    t = armed.template
    wire: list[OrderRequest] = []
    replace = msgspec.structs.replace
    for lo, parts in zip(t.orders, armed.parts):
        order = replace(lo.order, cl_ord_id=cl_ord_id(trade_id, lo.leg, 1), trade_id=trade_id,
                        price=sig.legs[lo.signal_leg].limit_px, tick_recv_ns=sig.tick_recv_ns, sent_ns=now)
        if parts is None:
            wire.append(order)
        else:
            wire += [child_order(order, n, account, qty) for n, (account, qty) in enumerate(parts, 1)]
    rec = EntrySentOut(trade_id=trade_id, signal=sig, now_ns=now, params=t.params_raw, seq=seq, parts=armed.parts)
    return rec, wire


def written(armed: ArmedEntry, rec: EntrySentOut) -> list[WalRecord]:
    """What `rec` reads back as: the records the ordinary path must arrive at."""
    t = armed.template
    return expand(EntrySent(trade_id=rec.trade_id, signal=rec.signal, now_ns=rec.now_ns, params=t.params, seq=rec.seq,
                            parts=rec.parts))


def fits(t: Template, sig: Signal) -> bool:
    """`sig` has the legs, sides and sizes `t` was armed for, with finite positive prices."""
    legs = sig.legs
    if len(legs) != len(t.legs):
        return False
    for leg, (inst, side, qty) in zip(legs, t.legs):
        px = leg.limit_px
        if leg.instrument != inst or leg.side is not side or leg.qty != qty or not (0.0 < px and math.isfinite(px)):
            return False
    return True
