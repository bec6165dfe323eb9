"""One pair trade as an explicit, deterministic state machine (no sockets, no clock).

Lifecycle (``TradeState``; every change is a named ``Tr`` transition, see ``TRANSITIONS``)::

    NEW --both_legs_sent / lead_leg_sent--> WORKING
    WORKING --hedge_leg_sent--> HEDGING              (lead mode: lead leg filled)
    WORKING|HEDGING|RESUBMITTING --leg_<x>_<cause>_resubmit--> RESUBMITTING
    WORKING|HEDGING|RESUBMITTING --both_legs_filled--> COMPLETED
    WORKING|HEDGING|RESUBMITTING --rollback_started / halt_rollback_started--> ROLLING_BACK
    ROLLING_BACK --rollback_filled--> ROLLED_BACK | --cancelled_nothing_filled--> CANCELLED
                 --completed_partial--> COMPLETED | --broken_rollback_exhausted--> BROKEN
    BROKEN --broken_flattened--> ROLLED_BACK | --broken_resolved--> COMPLETED
    COMPLETED|CANCELLED|ROLLED_BACK --late_fill_reopened--> ROLLING_BACK

Rules:

- A leg whose order is rejected, expires (IOC remainder cancelled), fills partially
  or times out resting is resubmitted for its remainder, attempt ``n`` paying
  ``n * payup_ticks`` over the signal's limit, while ``n <= max_resubmits``,
  ``n * payup_ticks <= slippage_budget_ticks`` and before the deadline.
  Otherwise the trade rolls back.
- Rolling back cancels every working entry order and unwinds, with marketable
  IOC orders, whatever cannot be kept *in ratio*: completed ratio units stay
  (the trade then ends COMPLETED with its target scaled down), the excess is
  unwound. A halt (``halt()``) keeps no units unless ``halt_unwinds_all`` is off.
  Unwinds only take out what is excess even if the other leg's still-working
  entry orders fill, so nothing is unwound that could still be matched.
- An order with no answer within ``order_timeout_ns`` is *in doubt*: the machine
  asks for its status (``QueryStatus``) and never resubmits it blindly; it asks
  again every timeout until the venue answers. A resting (DAY) entry order that
  times out after its ACK is cancelled instead.
- Fills are counted from each order's cumulative quantity (high-water mark) and
  deduplicated by ``exec_id``: a duplicate, reordered or status-derived report is
  counted once.
- A trade is never settled while any of its orders is live or in doubt. A fill
  that arrives after it settled reopens it (``late_fill_reopened``) to unwind or
  rebalance, so keep routing reports of a settled trade's orders to it.
- BROKEN (exposure left after ``rollback_attempts`` unwind orders) raises a
  CRITICAL alert and requests a halt once, then sends another FLATTEN order on
  every later timer (one ``order_timeout_ns`` apart) until flat; while an unwind
  is live or in doubt it waits for that order's outcome (querying it as above).

Inputs: ``start``, ``on_report``, ``on_timer``, ``halt`` and, after a restart,
``resume``. Each returns a list of actions for the caller to carry out, order
actions first. Call ``on_timer`` once ``now_ns >= next_deadline_ns()``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Collection, Literal, Mapping, Union

import msgspec

from bus.messages import (
    Alert,
    CancelRequest,
    ExecType,
    LegView,
    OrderEvent,
    OrderPurpose,
    OrderRequest,
    PairTradeEvent,
    RejectCode,
    Severity,
    Side,
    Signal,
    SignalLeg,
    StatusRequest,
    TimeInForce,
    TradeState,
)
from configs.schema import Config, InstrumentCfg, PairCfg
from execution.ids import cl_ord_id

_MS = 1_000_000


# --- parameters ----------------------------------------------------------------


class LegParams(msgspec.Struct, frozen=True, kw_only=True):
    """Where and how one leg trades."""

    instrument: str
    venue: str
    account: str
    tick: float
    ratio: int = 1


class PairParams(msgspec.Struct, frozen=True, kw_only=True):
    """Per-pair execution parameters of the state machine (times in ns)."""

    pair: str
    a: LegParams
    b: LegParams
    send_mode: Literal["both", "lead"] = "both"
    lead_leg: Literal["a", "b"] = "a"
    order_timeout_ns: int = 250 * _MS
    max_resubmits: int = 3
    payup_ticks: int = 1
    slippage_budget_ticks: int = 5
    deadline_ns: int = 2000 * _MS  # after start
    rollback_attempts: int = 5
    entry_tif: TimeInForce = TimeInForce.IOC
    rollback_far_ticks: int = 0  # 0: unwind with price=None (marketable at any price)
    halt_unwinds_all: bool = True  # on halt, unwind completed ratio units too

    @classmethod
    def from_config(
        cls,
        pair: str,
        cfg: PairCfg,
        instruments: Mapping[str, InstrumentCfg],
        account_a: str,
        account_b: str,
        **overrides: object,
    ) -> "PairParams":
        """Parameters of `pair` from its config; `overrides` sets fields not in `PairCfg`."""
        ia, ib = instruments[cfg.leg_a], instruments[cfg.leg_b]
        values: dict[str, object] = dict(
            pair=pair,
            a=LegParams(instrument=cfg.leg_a, venue=ia.venue, account=account_a, tick=ia.tick, ratio=cfg.ratio_a),
            b=LegParams(instrument=cfg.leg_b, venue=ib.venue, account=account_b, tick=ib.tick, ratio=cfg.ratio_b),
            send_mode=cfg.send_mode,
            lead_leg=cfg.lead_leg,
            order_timeout_ns=round(cfg.order_timeout_ms * _MS),
            max_resubmits=cfg.max_resubmits,
            payup_ticks=cfg.payup_ticks,
            slippage_budget_ticks=cfg.slippage_budget_ticks,
            deadline_ns=round(cfg.deadline_ms * _MS),
            rollback_attempts=cfg.rollback_attempts,
            entry_tif=TimeInForce(cfg.entry_tif),
            rollback_far_ticks=cfg.rollback_far_ticks,
            halt_unwinds_all=cfg.halt_unwinds_all,
        )
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def params_from_config(cfg: Config, **overrides: object) -> dict[str, PairParams]:
    """`PairParams` of every configured pair, each leg on the account trading its venue."""
    out: dict[str, PairParams] = {}
    for name, pc in cfg.pairs.items():
        accts: list[str] = []
        for key in (pc.leg_a, pc.leg_b):
            venue = cfg.instruments[key].venue
            acct = cfg.account_for_venue(venue)
            if acct is None:
                raise ValueError(f"CONFIG_ACCOUNT: pair={name} venue={venue}")
            accts.append(acct)
        out[name] = PairParams.from_config(name, pc, cfg.instruments, accts[0], accts[1], **overrides)
    return out


# --- actions -------------------------------------------------------------------


class SendOrder(msgspec.Struct, frozen=True, kw_only=True):
    order: OrderRequest


class CancelOrder(msgspec.Struct, frozen=True, kw_only=True):
    cancel: CancelRequest


class QueryStatus(msgspec.Struct, frozen=True, kw_only=True):
    query: StatusRequest


class Transition(msgspec.Struct, frozen=True, kw_only=True):
    event: PairTradeEvent


class RaiseAlert(msgspec.Struct, frozen=True, kw_only=True):
    alert: Alert


class RequestHalt(msgspec.Struct, frozen=True, kw_only=True):
    reason: str


Action = Union[SendOrder, CancelOrder, QueryStatus, Transition, RaiseAlert, RequestHalt]


# --- states and transitions ----------------------------------------------------


TERMINAL = frozenset({TradeState.COMPLETED, TradeState.CANCELLED, TradeState.ROLLED_BACK, TradeState.BROKEN})
_ENTRY = frozenset({TradeState.WORKING, TradeState.HEDGING, TradeState.RESUBMITTING})
ENTRY_STATES = _ENTRY  # a trade whose entry legs may still fill more
_SETTLED = frozenset({TradeState.COMPLETED, TradeState.CANCELLED, TradeState.ROLLED_BACK})
_ANY = frozenset(TradeState)


class Tr(str, enum.Enum):
    """Names of transitions (the ``transition`` field of a PairTradeEvent)."""

    BOTH_LEGS_SENT = "both_legs_sent"
    LEAD_LEG_SENT = "lead_leg_sent"
    SIGNAL_EXPIRED = "signal_expired"
    HALTED_BEFORE_START = "halted_before_start"
    HEDGE_LEG_SENT = "hedge_leg_sent"
    LEG_A_FILLED = "leg_a_filled"
    LEG_B_FILLED = "leg_b_filled"
    LEG_A_REJECTED_RESUBMIT = "leg_a_rejected_resubmit"
    LEG_B_REJECTED_RESUBMIT = "leg_b_rejected_resubmit"
    LEG_A_EXPIRED_RESUBMIT = "leg_a_expired_resubmit"
    LEG_B_EXPIRED_RESUBMIT = "leg_b_expired_resubmit"
    LEG_A_PARTIAL_RESUBMIT = "leg_a_partial_resubmit"
    LEG_B_PARTIAL_RESUBMIT = "leg_b_partial_resubmit"
    LEG_A_TIMEOUT_RESUBMIT = "leg_a_timeout_resubmit"
    LEG_B_TIMEOUT_RESUBMIT = "leg_b_timeout_resubmit"
    LEG_A_UNKNOWN_RESUBMIT = "leg_a_unknown_resubmit"
    LEG_B_UNKNOWN_RESUBMIT = "leg_b_unknown_resubmit"
    BOTH_LEGS_FILLED = "both_legs_filled"
    ORDER_IN_DOUBT = "order_in_doubt"
    ORDER_RESOLVED = "order_resolved"
    ROLLBACK_STARTED = "rollback_started"
    HALT_ROLLBACK_STARTED = "halt_rollback_started"
    ROLLBACK_ORDER_SENT = "rollback_order_sent"
    ROLLBACK_FILLED = "rollback_filled"
    CANCELLED_NOTHING_FILLED = "cancelled_nothing_filled"
    COMPLETED_PARTIAL = "completed_partial"
    BROKEN_ROLLBACK_EXHAUSTED = "broken_rollback_exhausted"
    BROKEN_FLATTEN_SENT = "broken_flatten_sent"
    BROKEN_FLATTENED = "broken_flattened"
    BROKEN_RESOLVED = "broken_resolved"
    LATE_FILL_REOPENED = "late_fill_reopened"
    RECOVERED = "recovered"


S = TradeState
# transition -> (states it may leave, state it enters; None: the state does not change)
TRANSITIONS: dict[Tr, tuple[frozenset[TradeState], TradeState | None]] = {
    Tr.BOTH_LEGS_SENT: (frozenset({S.NEW}), S.WORKING),
    Tr.LEAD_LEG_SENT: (frozenset({S.NEW}), S.WORKING),
    Tr.SIGNAL_EXPIRED: (frozenset({S.NEW}), S.CANCELLED),
    Tr.HALTED_BEFORE_START: (frozenset({S.NEW}), S.CANCELLED),
    Tr.HEDGE_LEG_SENT: (_ENTRY, S.HEDGING),
    Tr.LEG_A_FILLED: (_ENTRY, None),
    Tr.LEG_B_FILLED: (_ENTRY, None),
    **{t: (_ENTRY, S.RESUBMITTING) for t in Tr if t.value.endswith("_resubmit")},
    Tr.BOTH_LEGS_FILLED: (_ENTRY | {S.ROLLING_BACK}, S.COMPLETED),
    Tr.ORDER_IN_DOUBT: (_ANY - {S.NEW}, None),
    Tr.ORDER_RESOLVED: (_ANY - {S.NEW}, None),
    Tr.ROLLBACK_STARTED: (_ENTRY, S.ROLLING_BACK),
    Tr.HALT_ROLLBACK_STARTED: (_ENTRY, S.ROLLING_BACK),
    Tr.ROLLBACK_ORDER_SENT: (frozenset({S.ROLLING_BACK}), None),
    Tr.ROLLBACK_FILLED: (frozenset({S.ROLLING_BACK}), S.ROLLED_BACK),
    Tr.CANCELLED_NOTHING_FILLED: (_ENTRY | {S.ROLLING_BACK}, S.CANCELLED),
    Tr.COMPLETED_PARTIAL: (frozenset({S.ROLLING_BACK}), S.COMPLETED),
    Tr.BROKEN_ROLLBACK_EXHAUSTED: (frozenset({S.ROLLING_BACK}), S.BROKEN),
    Tr.BROKEN_FLATTEN_SENT: (frozenset({S.BROKEN}), None),
    Tr.BROKEN_FLATTENED: (frozenset({S.BROKEN}), S.ROLLED_BACK),
    Tr.BROKEN_RESOLVED: (frozenset({S.BROKEN}), S.COMPLETED),
    Tr.LATE_FILL_REOPENED: (_SETTLED, S.ROLLING_BACK),
    Tr.RECOVERED: (_ANY - {S.NEW}, None),
}
del S

_RESUBMIT_TR: dict[tuple[str, str], Tr] = {
    (leg, cause): Tr(f"leg_{leg}_{cause}_resubmit")
    for leg in ("a", "b")
    for cause in ("rejected", "expired", "partial", "timeout", "unknown")
}
_CAUSE_CODE = {
    "rejected": "LEG_REJECTED",
    "expired": "LEG_EXPIRED",
    "partial": "LEG_PARTIAL",
    "timeout": "LEG_TIMEOUT",
    "unknown": "LEG_UNKNOWN",
}


class IllegalTransition(RuntimeError):
    """A transition attempted from a state it may not leave: a bug in the machine."""


class SignalInvalid(ValueError):
    """A signal that cannot become a pair trade; ``str(exc)`` is a machine-readable reason."""


class OrderStatus(str, enum.Enum):
    SENT = "SENT"  # sent, no answer yet
    ACKED = "ACKED"  # working at the venue
    IN_DOUBT = "IN_DOUBT"  # outcome unknown: status query outstanding
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"  # cancelled, or IOC remainder expired (maybe after a partial fill)
    REJECTED = "REJECTED"  # rejected, or unknown to the venue


_LIVE = frozenset({OrderStatus.SENT, OrderStatus.ACKED, OrderStatus.IN_DOUBT})
_ENTRY_PURPOSES = frozenset({OrderPurpose.OPEN, OrderPurpose.RESUBMIT})


class OrderView(msgspec.Struct, frozen=True, kw_only=True):
    """Read-only view of one order of a trade."""

    cl_ord_id: str
    leg: str
    purpose: OrderPurpose
    side: Side
    qty: int
    price: float | None
    status: OrderStatus
    filled_qty: int
    cancel_requested: bool
    timer_ns: int


# --- internal bookkeeping ------------------------------------------------------


@dataclass(slots=True)
class _Order:
    req: OrderRequest
    leg: int  # index into the trade's legs (no back-reference: trades stay free of cycles)
    entry: bool
    timer_ns: int
    status: OrderStatus = OrderStatus.SENT
    filled: int = 0
    notional: float = 0.0
    cancel_requested: bool = False
    cause: str = ""  # why it ended: rejected / expired / partial / timeout / unknown / filled
    reason: str = ""

    @property
    def live(self) -> bool:
        return self.status in _LIVE


@dataclass(slots=True)
class _Leg:
    key: str
    p: LegParams
    side: Side
    sign: int  # +1 BUY, -1 SELL
    limit_px: float
    target: int  # scaled down when the trade completes with fewer ratio units
    entry_filled: int = 0
    entry_notional: float = 0.0
    unwound: int = 0  # position removed by unwind orders
    resubmits: int = 0
    n_orders: int = 0
    announced: bool = False
    orders: list[_Order] = field(default_factory=list)

    @property
    def pos(self) -> int:
        """Position along the leg's side (negative would mean over-unwound)."""
        return self.entry_filled - self.unwound

    def live_entry_leaves(self) -> int:
        return sum(o.req.qty - o.filled for o in self.orders if o.entry and o.status in _LIVE)

    def has_live_entry(self) -> bool:
        return any(o.entry and o.status in _LIVE for o in self.orders)

    def has_live_unwind(self) -> bool:
        return any(not o.entry and o.status in _LIVE for o in self.orders)

    def live_unwind_leaves(self) -> int:
        """Live unwind quantity, signed as the reduction of `pos` it would make."""
        return sum((o.req.qty - o.filled) * (1 if o.req.side is not self.side else -1)
                   for o in self.orders if not o.entry and o.status in _LIVE)

    def view(self) -> LegView:
        return LegView(
            instrument=self.p.instrument,
            side=self.side,
            target_qty=self.target,
            filled_qty=self.entry_filled,
            avg_price=self.entry_notional / self.entry_filled if self.entry_filled else 0.0,
            net_qty=self.sign * self.pos,
            sub_accounts=(self.p.account,),
        )


def _round_px(px: float, tick: float) -> float:
    return round(round(px / tick) * tick, 10)


def marketable_limit(side: Side, bid: float, ask: float, ticks: int, tick: float) -> float:
    """An unwind's limit for a venue without market orders: `ticks` through the current touch (ask
    for a buy, bid for a sell). It replaces the trade's own limit, which is anchored on the entry
    price and may be behind a market that has moved since."""
    return _round_px((ask + ticks * tick) if side is Side.BUY else (bid - ticks * tick), tick)


def _find_leg(signal: Signal, lp: LegParams, index: int) -> SignalLeg:
    for leg in signal.legs:
        if leg.instrument == lp.instrument:
            return leg
    if len(signal.legs) == 2:
        return signal.legs[index]
    raise SignalInvalid(f"SIGNAL_LEGS: signal_id={signal.signal_id} legs={len(signal.legs)}")


# --- the machine ---------------------------------------------------------------


class PairTrade:
    """One pair trade; feed it inputs, carry out the actions it returns."""

    def __init__(self, trade_id: str, signal: Signal, params: PairParams) -> None:
        self.trade_id = trade_id
        self.signal = signal
        self.params = params
        sa, sb = _find_leg(signal, params.a, 0), _find_leg(signal, params.b, 1)
        ra, rb = params.a.ratio, params.b.ratio
        if sa.qty <= 0 or sb.qty <= 0 or sa.qty % ra or sb.qty % rb or sa.qty // ra != sb.qty // rb:
            raise SignalInvalid(f"SIGNAL_RATIO: qty_a={sa.qty} qty_b={sb.qty} ratio={ra}:{rb}")
        self._units = sa.qty // ra
        self._legs = (
            _Leg("a", params.a, sa.side, sa.side.sign, sa.limit_px, sa.qty),
            _Leg("b", params.b, sb.side, sb.side.sign, sb.limit_px, sb.qty),
        )
        self.state = TradeState.NEW
        self.halted = False
        self.rollbacks = 0
        self.started_ns = 0
        self.deadline_at_ns = 0
        self._retry_at_ns = 0
        self._unreached = 0  # unwind orders refused SESSION_DOWN: they never reached the venue
        self._unwind_paused = False  # the last unwind found the session down: the next waits a timeout
        self._hedge_sent = params.send_mode == "both"
        self._orders: dict[str, _Order] = {}
        self._exec_ids: set[str] = set()
        self._sends: list[Action] = []  # order actions of the current input, returned first
        self._out: list[Action] = []
        self._events = 0

    # --- queries ---

    @property
    def is_terminal(self) -> bool:
        """COMPLETED, CANCELLED, ROLLED_BACK or BROKEN (BROKEN still works to flatten)."""
        return self.state in TERMINAL

    @property
    def is_done(self) -> bool:
        """Terminal, not BROKEN and nothing live: the caller may forget this trade."""
        return self.state in _SETTLED and not any(o.live for o in self._orders.values())

    @property
    def resubmits(self) -> int:
        return self._legs[0].resubmits + self._legs[1].resubmits

    @property
    def pair(self) -> str:
        return self.params.pair

    def legs_view(self) -> tuple[LegView, LegView]:
        return (self._legs[0].view(), self._legs[1].view())

    def instruments_in_doubt(self) -> frozenset[str]:
        """Instruments with an order of this trade whose outcome is unknown."""
        return frozenset(o.req.instrument for o in self._orders.values() if o.status is OrderStatus.IN_DOUBT)

    def owns(self, cl_ord_id: str) -> bool:
        return cl_ord_id in self._orders

    def live_orders(self) -> tuple[OrderRequest, ...]:
        """Requests of the orders still live or in doubt."""
        return tuple(o.req for o in self._orders.values() if o.live)

    def order_views(self) -> tuple[OrderView, ...]:
        return tuple(
            OrderView(
                cl_ord_id=o.req.cl_ord_id, leg="ab"[o.leg], purpose=o.req.purpose, side=o.req.side,
                qty=o.req.qty, price=o.req.price, status=o.status, filled_qty=o.filled,
                cancel_requested=o.cancel_requested, timer_ns=o.timer_ns,
            )
            for o in self._orders.values()
        )

    def next_deadline_ns(self) -> int | None:
        """Earliest time `on_timer` has something to do; None if nothing is timed."""
        best: int | None = None
        for o in self._orders.values():
            if o.status in _LIVE and (best is None or o.timer_ns < best):
                best = o.timer_ns
        extra: int | None = None
        if self.state in _ENTRY:
            extra = self.deadline_at_ns
        elif (self.state is TradeState.BROKEN or (self.state is TradeState.ROLLING_BACK and self._unwind_paused)) \
                and not self._unwind_live():
            # while an unwind is live its own order timer drives the trade; a due retry would
            # stay in the past (on_timer cannot use it) and hide that timer from the caller
            extra = self._retry_at_ns
        if extra is not None and (best is None or extra < best):
            best = extra
        return best

    def snapshot(self) -> dict:
        """Everything that defines the machine's state, as plain data (for comparisons)."""
        return {
            "state": self.state.value,
            "halted": self.halted,
            "rollbacks": self.rollbacks,
            "resubmits": self.resubmits,
            "started_ns": self.started_ns,
            "retry_at_ns": self._retry_at_ns,
            "unreached": self._unreached,
            "unwind_paused": self._unwind_paused,
            "hedge_sent": self._hedge_sent,
            "legs": [msgspec.to_builtins(v) for v in self.legs_view()],
            "orders": [msgspec.to_builtins(v) for v in self.order_views()],
            "exec_ids": sorted(self._exec_ids),
            "events": self._events,
        }

    # --- inputs ---

    def start(self, now_ns: int) -> list[Action]:
        """Send the entry orders (both legs, or the lead leg)."""
        self._sends, self._out = [], []
        if self.state is not TradeState.NEW:
            return self._actions()
        p = self.params
        self.started_ns = now_ns
        self.deadline_at_ns = now_ns + p.deadline_ns
        if 0 < self.signal.expiry_ns < now_ns:
            self._transition(Tr.SIGNAL_EXPIRED, now_ns,
                             f"SIGNAL_EXPIRED: now_ns={now_ns} expiry_ns={self.signal.expiry_ns}")
            return self._actions()
        if self.halted:
            self._transition(Tr.HALTED_BEFORE_START, now_ns, "RISK_HALT: before_start=1")
            return self._actions()
        if p.send_mode == "both":
            a, b = self._legs
            self._send(a, a.target, a.limit_px, OrderPurpose.OPEN, p.entry_tif, now_ns)
            self._send(b, b.target, b.limit_px, OrderPurpose.OPEN, p.entry_tif, now_ns)
            self._transition(Tr.BOTH_LEGS_SENT, now_ns)
        else:
            lead = self._lead()
            self._send(lead, lead.target, lead.limit_px, OrderPurpose.OPEN, p.entry_tif, now_ns)
            self._transition(Tr.LEAD_LEG_SENT, now_ns, f"LEAD_LEG: leg={lead.key}")
        return self._actions()

    def on_report(self, ev: OrderEvent, now_ns: int) -> list[Action]:
        """Apply an execution report of one of this trade's orders (others are ignored)."""
        self._sends, self._out = [], []
        o = self._orders.get(ev.cl_ord_id)
        if o is None:
            return self._actions()
        if ev.exec_id:
            if ev.exec_id in self._exec_ids:
                return self._actions()
            self._exec_ids.add(ev.exec_id)
        was_live = o.status in _LIVE
        filled_more = self._apply_cum(o, ev)
        et = ev.exec_type
        if was_live:
            if et is ExecType.ACK:
                if o.status is not OrderStatus.ACKED:
                    self._alive(o, now_ns, "ACK")
            elif et is ExecType.REJECT:
                unknown = RejectCode.ORDER_UNKNOWN.of(ev.reason)
                self._end(o, now_ns, OrderStatus.REJECTED, "unknown" if unknown else "rejected", ev.reason)
            elif et is ExecType.CANCEL_REJECT:
                if o.status is not OrderStatus.IN_DOUBT:
                    self._in_doubt(o, now_ns, f"CANCEL_REJECTED: cl_ord_id={o.req.cl_ord_id} {ev.reason}".rstrip())
            elif ev.leaves_qty <= 0 or o.filled >= o.req.qty:  # FILL / CANCELLED / STATUS: done
                if o.filled >= o.req.qty:
                    self._end(o, now_ns, OrderStatus.FILLED, "filled", ev.reason)
                else:
                    cause = "partial" if o.filled else ("timeout" if o.cancel_requested else "expired")
                    self._end(o, now_ns, OrderStatus.CANCELLED, cause, ev.reason)
            else:  # alive with leaves_qty > 0
                if o.status is not OrderStatus.ACKED:
                    self._alive(o, now_ns, et.value)
                if et is ExecType.STATUS and o.cancel_requested:
                    self._cancel(o, now_ns, again=True)
        if filled_more and self.state in _SETTLED:
            self._transition(Tr.LATE_FILL_REOPENED, now_ns,
                             f"LATE_FILL: cl_ord_id={o.req.cl_ord_id} cum_qty={o.filled}")
        self._drive(now_ns, timer=False)
        return self._actions()

    def on_timer(self, now_ns: int) -> list[Action]:
        """Handle order timeouts, the deadline and BROKEN retries due at `now_ns`."""
        self._sends, self._out = [], []
        if self.state is TradeState.NEW:
            return self._actions()
        to = self.params.order_timeout_ns
        for o in list(self._orders.values()):
            if o.status not in _LIVE or o.timer_ns > now_ns:
                continue
            cid = o.req.cl_ord_id
            if o.status is OrderStatus.SENT:
                self._in_doubt(o, now_ns, f"ORDER_TIMEOUT: cl_ord_id={cid} stage=ack")
            elif o.status is OrderStatus.ACKED:
                if o.entry and o.req.tif is TimeInForce.DAY and not o.cancel_requested:
                    self._cancel(o, now_ns)
                else:
                    stage = "cancel" if o.cancel_requested else "fill"
                    self._in_doubt(o, now_ns, f"ORDER_TIMEOUT: cl_ord_id={cid} stage={stage}")
            else:  # still in doubt: ask again
                o.timer_ns = now_ns + to
                self._query(o)
        if self.state in _ENTRY and now_ns >= self.deadline_at_ns:
            self._start_rollback(Tr.ROLLBACK_STARTED, now_ns,
                                 f"DEADLINE_PASSED: now_ns={now_ns} deadline_ns={self.deadline_at_ns}")
        self._drive(now_ns, timer=True)
        return self._actions()

    def halt(self, now_ns: int, reason: str = "RISK_HALT: level=HALTED") -> list[Action]:
        """Risk went REDUCE_ONLY/HALTED: stop completing, cancel entries, roll back what is filled."""
        self._sends, self._out = [], []
        self.halted = True
        if self.state is TradeState.NEW:
            return self._actions()
        if self.state in _ENTRY:
            self._start_rollback(Tr.HALT_ROLLBACK_STARTED, now_ns, reason)
        self._drive(now_ns, timer=False)
        return self._actions()

    def resume(self, now_ns: int, unsent: Collection[str] = ()) -> list[Action]:
        """After a restart: send the orders in `unsent` now, ask for the status of every other live order."""
        self._sends, self._out = [], []
        if self.state is TradeState.NEW:
            return self._actions()
        to = self.params.order_timeout_ns
        n_doubt = n_unsent = 0
        for o in self._orders.values():
            if o.status not in _LIVE:
                continue
            o.timer_ns = now_ns + to
            if o.req.cl_ord_id in unsent:
                n_unsent += 1
                o.req = msgspec.structs.replace(o.req, sent_ns=now_ns)
                o.status = OrderStatus.SENT
                self._sends.append(SendOrder(order=o.req))
            else:
                n_doubt += 1
                o.status = OrderStatus.IN_DOUBT
                self._query(o)
        if self.state is TradeState.BROKEN:
            self._retry_at_ns = now_ns
        self._transition(Tr.RECOVERED, now_ns, f"RECOVERED: in_doubt={n_doubt} unsent={n_unsent}")
        return self._actions()

    def _actions(self) -> list[Action]:
        """The current input's actions: order actions first, so they leave before events are published."""
        if self._sends:
            self._sends.extend(self._out)
            return self._sends
        return self._out

    # --- order helpers ---

    def _lead(self) -> _Leg:
        return self._legs[0] if self.params.lead_leg == "a" else self._legs[1]

    def _send(self, leg: _Leg, qty: int, price: float | None, purpose: OrderPurpose,
              tif: TimeInForce, now_ns: int, side: Side | None = None) -> _Order:
        leg.n_orders += 1
        req = OrderRequest(
            cl_ord_id=cl_ord_id(self.trade_id, leg.key, leg.n_orders),
            trade_id=self.trade_id,
            account=leg.p.account,
            venue=leg.p.venue,
            instrument=leg.p.instrument,
            side=side or leg.side,
            qty=qty,
            price=price,
            tif=tif,
            purpose=purpose,
            tick_recv_ns=self.signal.tick_recv_ns,
            sent_ns=now_ns,
        )
        o = _Order(req=req, leg=0 if leg.key == "a" else 1, entry=purpose in _ENTRY_PURPOSES,
                   timer_ns=now_ns + self.params.order_timeout_ns)
        leg.orders.append(o)
        self._orders[req.cl_ord_id] = o
        self._sends.append(SendOrder(order=req))
        return o

    def _cancel(self, o: _Order, now_ns: int, again: bool = False) -> None:
        if o.cancel_requested and not again:
            return
        o.cancel_requested = True
        if o.status is not OrderStatus.IN_DOUBT:
            o.timer_ns = now_ns + self.params.order_timeout_ns
        self._out.append(CancelOrder(cancel=CancelRequest(
            cl_ord_id=o.req.cl_ord_id, venue=o.req.venue, instrument=o.req.instrument)))

    def _query(self, o: _Order) -> None:
        self._out.append(QueryStatus(query=StatusRequest(cl_ord_id=o.req.cl_ord_id, venue=o.req.venue)))

    def _in_doubt(self, o: _Order, now_ns: int, reason: str) -> None:
        o.status = OrderStatus.IN_DOUBT
        o.timer_ns = now_ns + self.params.order_timeout_ns
        self._query(o)
        self._transition(Tr.ORDER_IN_DOUBT, now_ns, reason)

    def _alive(self, o: _Order, now_ns: int, how: str) -> None:
        if o.status is OrderStatus.IN_DOUBT:
            o.status = OrderStatus.ACKED
            o.timer_ns = now_ns + self.params.order_timeout_ns
            self._transition(Tr.ORDER_RESOLVED, now_ns,
                             f"ORDER_RESOLVED: cl_ord_id={o.req.cl_ord_id} by={how} live=1 cum_qty={o.filled}")
        else:
            o.status = OrderStatus.ACKED

    def _end(self, o: _Order, now_ns: int, status: OrderStatus, cause: str, reason: str) -> None:
        if (status is OrderStatus.REJECTED and RejectCode.SESSION_DOWN.of(reason)
                and o.req.purpose in (OrderPurpose.ROLLBACK, OrderPurpose.FLATTEN)):
            # the unwind never reached the venue: it uses no attempt, and the next one waits a
            # timeout instead of spending every attempt within the outage
            self._unreached += 1
            self._unwind_paused = True
            self._retry_at_ns = now_ns + self.params.order_timeout_ns
        if o.status is OrderStatus.IN_DOUBT:
            self._transition(Tr.ORDER_RESOLVED, now_ns,
                             f"ORDER_RESOLVED: cl_ord_id={o.req.cl_ord_id} by={status.value} live=0 cum_qty={o.filled}")
        o.status = status
        o.cause = cause
        o.reason = reason

    def _apply_cum(self, o: _Order, ev: OrderEvent) -> bool:
        """Count new fills from the report's cumulative quantity; True if there were any."""
        cum = ev.cum_qty
        if cum == 0 and ev.exec_type is ExecType.FILL and ev.last_qty > 0 and ev.exec_id:
            cum = o.filled + ev.last_qty  # a venue that leaves CumQty out; exec_id dedupes it
        cum = min(cum, o.req.qty)
        delta = cum - o.filled
        if delta <= 0:
            return False
        if ev.avg_px > 0.0:
            inc = ev.avg_px * cum - o.notional
        elif ev.last_px > 0.0:
            inc = ev.last_px * delta
        else:
            inc = (o.req.price or 0.0) * delta
        o.filled = cum
        o.notional += inc
        leg = self._legs[o.leg]
        if o.entry:
            leg.entry_filled += delta
            leg.entry_notional += inc
        elif o.req.side is not leg.side:
            leg.unwound += delta
        else:
            leg.unwound -= delta
        return True

    # --- driving the trade ---

    def _drive(self, now_ns: int, timer: bool) -> None:
        for _ in range(8):
            before = self.state
            if before in _ENTRY:
                self._drive_entry(now_ns)
            elif before is TradeState.ROLLING_BACK:
                self._drive_rollback(now_ns)
            elif before is TradeState.BROKEN:
                self._drive_broken(now_ns, timer)
            if self.state is before:
                return

    def _drive_entry(self, now_ns: int) -> None:
        p = self.params
        active = self._legs if self._hedge_sent else (self._lead(),)
        for leg in active:
            if leg.pos > leg.target:
                self._start_rollback(Tr.ROLLBACK_STARTED, now_ns,
                                     f"LEG_OVERFILL: leg={leg.key} filled={leg.pos} target={leg.target}")
                return
        for leg in active:
            if leg.pos >= leg.target or leg.has_live_entry():
                continue
            block = self._resubmit_block(leg, now_ns)
            if block:
                self._start_rollback(Tr.ROLLBACK_STARTED, now_ns, block)
                return
            self._resubmit(leg, now_ns)
        if not self._hedge_sent:
            lead = self._lead()
            if lead.pos >= lead.target and not lead.has_live_entry():
                hedge = self._legs[1] if lead.key == "a" else self._legs[0]
                self._hedge_sent = True
                lead.announced = True
                self._send(hedge, hedge.target, hedge.limit_px, OrderPurpose.OPEN, p.entry_tif, now_ns)
                self._transition(Tr.HEDGE_LEG_SENT, now_ns, f"LEAD_FILLED: leg={lead.key} qty={lead.pos}")
            return
        if all(leg.pos >= leg.target and not leg.has_live_entry() for leg in self._legs):
            self._transition(Tr.BOTH_LEGS_FILLED, now_ns)
            return
        for leg in self._legs:
            if not leg.announced and leg.pos >= leg.target and not leg.has_live_entry():
                leg.announced = True
                self._transition(Tr.LEG_A_FILLED if leg.key == "a" else Tr.LEG_B_FILLED, now_ns)

    def _resubmit_block(self, leg: _Leg, now_ns: int) -> str:
        p = self.params
        n = leg.resubmits + 1
        if n > p.max_resubmits:
            return f"RESUBMIT_EXHAUSTED: leg={leg.key} resubmits={leg.resubmits} max={p.max_resubmits}"
        if n * p.payup_ticks > p.slippage_budget_ticks:
            return (f"SLIPPAGE_BUDGET: leg={leg.key} payup_ticks={n * p.payup_ticks} "
                    f"budget_ticks={p.slippage_budget_ticks}")
        if now_ns >= self.deadline_at_ns:
            return f"DEADLINE_PASSED: leg={leg.key} now_ns={now_ns} deadline_ns={self.deadline_at_ns}"
        return ""

    def _resubmit(self, leg: _Leg, now_ns: int) -> None:
        p = self.params
        last = next(o for o in reversed(leg.orders) if o.entry)
        cause = last.cause if last.cause in _CAUSE_CODE else "expired"
        leg.resubmits += 1
        n = leg.resubmits
        px = _round_px(leg.limit_px + leg.sign * n * p.payup_ticks * leg.p.tick, leg.p.tick)
        qty = leg.target - leg.pos
        o = self._send(leg, qty, px, OrderPurpose.RESUBMIT, p.entry_tif, now_ns)
        why = f" why={last.reason.split(':')[0]}" if last.reason else ""
        self._transition(_RESUBMIT_TR[(leg.key, cause)], now_ns,
                         f"{_CAUSE_CODE[cause]}: leg={leg.key} prev={last.req.cl_ord_id} next={o.req.cl_ord_id} "
                         f"attempt={n} max={p.max_resubmits} qty={qty} px={px}{why}")

    def _start_rollback(self, tr: Tr, now_ns: int, reason: str) -> None:
        if not any(leg.entry_filled for leg in self._legs) and not any(o.live for o in self._orders.values()):
            self._transition(Tr.CANCELLED_NOTHING_FILLED, now_ns, reason)
        else:
            self._transition(tr, now_ns, reason)

    def _excess(self) -> tuple[int, int]:
        """Per leg, the position not kept in ratio (signed along the leg's side)."""
        a, b = self._legs
        cap = 0 if (self.halted and self.params.halt_unwinds_all) else self._units

        def one(x: _Leg, y: _Leg) -> int:
            # keep only units the other leg can surely match, even if its working entries fill
            pot_y = y.pos + y.live_entry_leaves()
            keep = max(0, min(x.pos // x.p.ratio, pot_y // y.p.ratio, cap))
            return x.pos - keep * x.p.ratio

        return one(a, b), one(b, a)

    def _cancel_live_entries(self, now_ns: int) -> None:
        for o in self._orders.values():
            if o.entry and o.status in _LIVE and not o.cancel_requested:
                self._cancel(o, now_ns)

    def _settle_if_flat(self, now_ns: int) -> bool:
        if any(o.live for o in self._orders.values()) or any(self._excess()):
            return False
        a, b = self._legs
        units = a.pos // a.p.ratio
        broken = self.state is TradeState.BROKEN
        if units == 0:
            if broken:
                self._transition(Tr.BROKEN_FLATTENED, now_ns, "FLAT: net_a=0 net_b=0")
            elif a.entry_filled or b.entry_filled:
                self._transition(Tr.ROLLBACK_FILLED, now_ns, "FLAT: net_a=0 net_b=0")
            else:
                self._transition(Tr.CANCELLED_NOTHING_FILLED, now_ns, "NOTHING_FILLED: cancelled=1")
            return True
        a.target, b.target = units * a.p.ratio, units * b.p.ratio
        reason = f"IN_RATIO: units={units} target_units={self._units}"
        if broken:
            self._transition(Tr.BROKEN_RESOLVED, now_ns, reason)
        elif units == self._units:
            self._transition(Tr.BOTH_LEGS_FILLED, now_ns, reason)
        else:
            self._transition(Tr.COMPLETED_PARTIAL, now_ns, reason)
        return True

    def _send_unwinds(self, now_ns: int, purpose: OrderPurpose, limit: int | None, tr: Tr) -> bool:
        """Send unwind orders for the excess not already being unwound; True if the limit blocked one."""
        p = self.params
        blocked = False
        for leg, ex in zip(self._legs, self._excess()):
            need = ex - leg.live_unwind_leaves()
            if need > 0:
                side = leg.side.opposite
            elif ex < 0 and not leg.has_live_unwind():
                side, need = leg.side, -ex
            else:
                continue
            if limit is not None and self.rollbacks - self._unreached >= limit:
                blocked = True
                continue
            self.rollbacks += 1
            price: float | None = None
            if p.rollback_far_ticks > 0:
                ref = leg.entry_notional / leg.entry_filled if leg.entry_filled else leg.limit_px
                price = _round_px(ref + side.sign * p.rollback_far_ticks * leg.p.tick, leg.p.tick)
            o = self._send(leg, need, price, purpose, TimeInForce.IOC, now_ns, side=side)
            lim = "" if limit is None else f" max={limit}"
            self._transition(tr, now_ns, f"UNWIND: leg={leg.key} cl_ord_id={o.req.cl_ord_id} side={side.value} "
                                         f"qty={need} attempt={self.rollbacks}{lim}")
        return blocked

    def _drive_rollback(self, now_ns: int) -> None:
        self._cancel_live_entries(now_ns)
        if self._settle_if_flat(now_ns):
            return
        if self._unwind_paused:
            if now_ns < self._retry_at_ns:
                return
            self._unwind_paused = False
        blocked = self._send_unwinds(now_ns, OrderPurpose.ROLLBACK, self.params.rollback_attempts,
                                     Tr.ROLLBACK_ORDER_SENT)
        if blocked and not self._unwind_live():
            self._go_broken(now_ns)

    def _unwind_live(self) -> bool:
        return any(leg.has_live_unwind() for leg in self._legs)

    def _go_broken(self, now_ns: int) -> None:
        a, b = self._legs
        ex_a, ex_b = self._excess()
        reason = (f"ROLLBACK_EXHAUSTED: attempts={self.rollbacks} max={self.params.rollback_attempts} "
                  f"excess_a={ex_a} excess_b={ex_b} net_a={a.sign * a.pos} net_b={b.sign * b.pos}")
        self._transition(Tr.BROKEN_ROLLBACK_EXHAUSTED, now_ns, reason)
        self._retry_at_ns = now_ns + self.params.order_timeout_ns
        self._out.append(RaiseAlert(alert=Alert(
            severity=Severity.CRITICAL, code="PAIR_BROKEN",
            text=f"pair trade {self.trade_id} ({self.pair}) left exposure after rollback: {reason}",
            actor="executor", trade_id=self.trade_id, ts_ns=now_ns,
        )))
        self._out.append(RequestHalt(reason=f"PAIR_BROKEN: trade_id={self.trade_id} pair={self.pair}"))

    def _drive_broken(self, now_ns: int, timer: bool) -> None:
        self._cancel_live_entries(now_ns)
        if self._settle_if_flat(now_ns):
            return
        if timer and now_ns >= self._retry_at_ns and not self._unwind_live():
            self._retry_at_ns = now_ns + self.params.order_timeout_ns
            self._send_unwinds(now_ns, OrderPurpose.FLATTEN, None, Tr.BROKEN_FLATTEN_SENT)

    def _transition(self, tr: Tr, now_ns: int, reason: str = "") -> None:
        allowed, to = TRANSITIONS[tr]
        prev = self.state
        if prev not in allowed:
            raise IllegalTransition(f"TRANSITION_ILLEGAL: trade_id={self.trade_id} from={prev.value} via={tr.value}")
        if to is not None:
            self.state = to
        self._events += 1
        self._out.append(Transition(event=PairTradeEvent(
            trade_id=self.trade_id,
            pair=self.params.pair,
            state=self.state,
            prev_state=prev,
            transition=tr._value_,
            direction=self.signal.direction,
            legs=self.legs_view(),
            reason=reason,
            resubmits=self.resubmits,
            rollbacks=self.rollbacks,
            signal_id=self.signal.signal_id,
            tick_recv_ns=self.signal.tick_recv_ns,
            ts_ns=now_ns,
        )))


