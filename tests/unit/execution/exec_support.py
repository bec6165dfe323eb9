"""Builders, a scripted venue and a WAL-protocol harness for the execution tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bus.messages import ExecType, OrderEvent, OrderRequest, Side, Signal, SignalLeg, TimeInForce
from execution.pairtrade import (
    Action,
    CancelOrder,
    LegParams,
    PairParams,
    PairTrade,
    QueryStatus,
    SendOrder,
    Transition,
)
from execution.wal import Halted, OrderSent, ReportApplied, TimerFired, TradeOpened, WriteAheadLog

MS = 1_000_000
T0 = 1_000_000_000


def params(**kw: object) -> PairParams:
    ratio_a = int(kw.pop("ratio_a", 1))  # type: ignore[arg-type]
    ratio_b = int(kw.pop("ratio_b", 1))  # type: ignore[arg-type]
    base: dict[str, object] = dict(
        pair="au_gc",
        a=LegParams(instrument="au", venue="SHFE", account="cn", tick=0.02, ratio=ratio_a),
        b=LegParams(instrument="GC", venue="COMEX", account="hk", tick=0.1, ratio=ratio_b),
        order_timeout_ns=100 * MS,
        max_resubmits=2,
        payup_ticks=1,
        slippage_budget_ticks=5,
        deadline_ns=1000 * MS,
        rollback_attempts=3,
    )
    base.update(kw)
    return PairParams(**base)  # type: ignore[arg-type]


def signal(qty_a: int = 1, qty_b: int = 1, direction: Side = Side.BUY, expiry_ns: int = T0 + 500 * MS) -> Signal:
    return Signal(
        signal_id="sig-1",
        pair="au_gc",
        direction=direction,
        closing=False,
        legs=(
            SignalLeg(instrument="au", side=direction, qty=qty_a, limit_px=556.0),
            SignalLeg(instrument="GC", side=direction.opposite, qty=qty_b, limit_px=2400.0),
        ),
        spread=1.5,
        zscore=2.5,
        expiry_ns=expiry_ns,
        tick_recv_ns=T0 - 5_000,
        signal_ns=T0 - 1_000,
    )


def sends(actions: list[Action]) -> list[OrderRequest]:
    return [a.order for a in actions if isinstance(a, SendOrder)]


def cancels(actions: list[Action]) -> list[str]:
    return [a.cancel.cl_ord_id for a in actions if isinstance(a, CancelOrder)]


def queries(actions: list[Action]) -> list[str]:
    return [a.query.cl_ord_id for a in actions if isinstance(a, QueryStatus)]


def transitions(actions: list[Action]) -> list[str]:
    return [a.event.transition for a in actions if isinstance(a, Transition)]


_exec_n = [0]


def report(order: OrderRequest, et: ExecType, cum: int = 0, leaves: int | None = None, px: float | None = None,
           reason: str = "", exec_id: str | None = None, last: int = 0) -> OrderEvent:
    if leaves is None:
        leaves = order.qty - cum if et in (ExecType.ACK, ExecType.FILL, ExecType.STATUS) else 0
    if exec_id is None:
        _exec_n[0] += 1
        exec_id = f"x{_exec_n[0]}"
    fill_px = px if px is not None else (order.price if order.price is not None else 100.0)
    return OrderEvent(
        cl_ord_id=order.cl_ord_id, exec_type=et, venue=order.venue, instrument=order.instrument,
        side=order.side, order_qty=order.qty, cum_qty=cum, leaves_qty=leaves, last_qty=last,
        last_px=fill_px if last else 0.0, avg_px=fill_px if cum else 0.0, exec_id=exec_id, reason=reason,
    )


def ack(o: OrderRequest) -> OrderEvent:
    return report(o, ExecType.ACK)


def fill(o: OrderRequest, cum: int | None = None, leaves: int | None = None, px: float | None = None,
         exec_id: str | None = None) -> OrderEvent:
    cum = o.qty if cum is None else cum
    return report(o, ExecType.FILL, cum=cum, leaves=leaves, px=px, exec_id=exec_id, last=cum)


def reject(o: OrderRequest, reason: str = "RISK_PRICE_BAND: px=1 band=0") -> OrderEvent:
    return report(o, ExecType.REJECT, reason=reason)


def expired(o: OrderRequest, cum: int = 0) -> OrderEvent:
    return report(o, ExecType.CANCELLED, cum=cum, leaves=0)


def status(o: OrderRequest, cum: int, leaves: int) -> OrderEvent:
    return report(o, ExecType.STATUS, cum=cum, leaves=leaves)


def unknown(o: OrderRequest) -> OrderEvent:
    return report(o, ExecType.REJECT, reason=f"ORDER_UNKNOWN: cl_ord_id={o.cl_ord_id}")


# --- the executor's side of the WAL protocol ---------------------------------------


@dataclass
class Harness:
    """Drives one trade the way the executor actor must: log each input, then feed it."""

    trade: PairTrade
    wal: WriteAheadLog
    sent: list[OrderRequest] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)

    @classmethod
    def open(cls, path: Path, trade_id: str, sig: Signal, p: PairParams, now_ns: int) -> "Harness":
        wal = WriteAheadLog(path)
        trade = PairTrade(trade_id, sig, p)
        wal.append(TradeOpened(trade_id=trade_id, signal=sig, params=p, now_ns=now_ns))
        h = cls(trade, wal)
        h._carry(trade.start(now_ns))
        return h

    def _carry(self, actions: list[Action]) -> list[Action]:
        out = sends(actions)
        if out:
            self.wal.append_many([OrderSent(order=o) for o in out])
            self.sent.extend(out)
        self.actions = actions
        return actions

    def report(self, ev: OrderEvent, now_ns: int) -> list[Action]:
        self.wal.append(ReportApplied(trade_id=self.trade.trade_id, report=ev, now_ns=now_ns))
        return self._carry(self.trade.on_report(ev, now_ns))

    def timer(self, now_ns: int) -> list[Action]:
        self.wal.append(TimerFired(trade_id=self.trade.trade_id, now_ns=now_ns))
        return self._carry(self.trade.on_timer(now_ns))

    def halt(self, now_ns: int) -> list[Action]:
        self.wal.append(Halted(now_ns=now_ns, reason="RISK_HALT: level=HALTED"))
        return self._carry(self.trade.halt(now_ns, "RISK_HALT: level=HALTED"))


# --- a scripted venue that keeps the truth -------------------------------------------


@dataclass
class VOrder:
    req: OrderRequest
    received: bool
    cum: int = 0
    alive: bool = True
    acked: bool = False


@dataclass
class FakeVenue:
    """Truth of every order; reports wait in `outbox` until delivered (in any order) or lost."""

    orders: dict[str, VOrder] = field(default_factory=dict)
    outbox: list[OrderEvent] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)
    drop_next: bool = False
    n_exec: int = 0

    def take(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, SendOrder):
                cid = a.order.cl_ord_id
                assert cid not in self.orders, f"duplicate order {cid}"
                self.orders[cid] = VOrder(a.order, received=not self.drop_next)
                self.drop_next = False
            elif isinstance(a, CancelOrder):
                self.cancels.append(a.cancel.cl_ord_id)
            elif isinstance(a, QueryStatus):
                self.queries.append(a.query.cl_ord_id)

    def live(self) -> list[VOrder]:
        return [o for o in self.orders.values() if o.received and o.alive]

    def _ev(self, o: VOrder, et: ExecType, last: int = 0, reason: str = "", leaves: int | None = None) -> None:
        self.n_exec += 1
        px = o.req.price if o.req.price is not None else 100.0
        if leaves is None:
            leaves = o.req.qty - o.cum if o.alive else 0
        self.outbox.append(OrderEvent(
            cl_ord_id=o.req.cl_ord_id, exec_type=et, venue=o.req.venue, instrument=o.req.instrument,
            side=o.req.side, order_qty=o.req.qty, cum_qty=o.cum, leaves_qty=leaves, last_qty=last,
            last_px=px if last else 0.0, avg_px=px if o.cum else 0.0, exec_id=f"v{self.n_exec}", reason=reason))

    def ack(self, o: VOrder) -> None:
        o.acked = True
        self._ev(o, ExecType.ACK)

    def fill(self, o: VOrder, k: int, expire_rest: bool) -> None:
        k = max(1, min(k, o.req.qty - o.cum))
        o.cum += k
        if o.cum >= o.req.qty:
            o.alive = False
        self._ev(o, ExecType.FILL, last=k)
        if o.alive and (expire_rest or o.req.tif is TimeInForce.IOC):
            o.alive = False
            self._ev(o, ExecType.CANCELLED)

    def reject(self, o: VOrder) -> None:
        o.alive = False
        self._ev(o, ExecType.REJECT, reason="VENUE_REJECT: why=test")

    def expire(self, o: VOrder) -> None:
        o.alive = False
        self._ev(o, ExecType.CANCELLED)

    def answer_query(self, cid: str) -> None:
        o = self.orders[cid]
        if not o.received:
            self.n_exec += 1
            self.outbox.append(OrderEvent(
                cl_ord_id=cid, exec_type=ExecType.REJECT, venue=o.req.venue, instrument=o.req.instrument,
                side=o.req.side, order_qty=o.req.qty, cum_qty=0, leaves_qty=0, exec_id=f"v{self.n_exec}",
                reason=f"ORDER_UNKNOWN: cl_ord_id={cid}"))
        else:
            self._ev(o, ExecType.STATUS)

    def process_cancel(self, cid: str) -> None:
        o = self.orders[cid]
        if o.received and o.alive:
            o.alive = False
            self._ev(o, ExecType.CANCELLED)
        else:
            why = "CANCEL_TOO_LATE: done=1" if o.received else f"ORDER_UNKNOWN: cl_ord_id={cid}"
            self._ev(o, ExecType.CANCEL_REJECT, reason=why, leaves=0)
