"""A simulated venue: order session, matching against the simulated book, seeded misbehaviour.

Driving it (all times are venue time, ns, from the caller's clock)::

    venue.on_quote(tob)              # every quote of its instruments, in time order
    early = venue.submit(req, now)   # or cancel()/status()/handle(); None: accepted
    reports = venue.due(now)         # execution reports due by `now`

The caller feeds every quote up to `now` before calling `due(now)`.

Timing. A request reaching the venue at ``t`` (``now_ns``, or the optional
``priced_ts_ns``: the venue time of the quote the order was priced against)
is acknowledged or rejected at ``t + ack_latency_ms``; it reaches the
matching engine at ``t + max(ack, fill_latency_ms)``, where it takes the top
of book in effect at that venue time (quotes stamped at or before it).
Fill, expiry and cancel reports are due at the venue time they happen. A
resting order's fill is due at the time of the quote that crossed it.
Cancel and status requests take effect at ``t + ack_latency_ms``. An event
whose time is already behind the venue's clock happens at the clock.

Seeded per-order behaviour: every `submit` draws four numbers (reject,
partial, partial size, drop) from a `random.Random` seeded with the venue's
seed and the order's client order id, so an order's fate does not depend on
what other orders reached the venue before it: the same seed, config, quote
sequence and requests (with their times) give the same reports, trade for
trade, however two sessions' requests interleave.

- ``reject_rate``: rejected at ack time, ``VENUE_REJECT: reason=insufficient_margin``.
- ``partial_rate``: the first match fills at most a random part (1..qty-1)
  of the order; an IOC remainder is cancelled, a DAY remainder rests.
- ``drop_rate``: the order reaches the venue and lives normally there
  (acknowledged, filled, expired) but none of its unsolicited reports (ACK,
  REJECT, FILL, IOC expiry) is delivered. Replies to explicit requests about
  it (cancel, status) are delivered, so a STATUS query tells the truth and
  its fills are in `fills()`.

Session: with ``disconnect_every_s > 0`` the session is down for
``disconnect_for_s`` at every multiple of ``disconnect_every_s`` after
``start_ns``. While it is down, reports falling due are lost (as on a
dropped session; orders keep living and filling on the venue), and new
requests do not reach the venue: `submit`/`cancel`/`status` return an
immediate local ``SESSION_DOWN: venue=...`` answer for the gateway to
deliver. Resting orders survive a disconnect (no cancel-on-disconnect).

Trading hours: venue time is read as UTC ns against the instrument's
``hours``; outside them orders are rejected ``reason=market_closed``.

Reports for an unknown order (CANCEL_REJECT, REJECT to a status query) carry
``order_qty=0`` and a placeholder side of BUY.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Mapping

import msgspec

from bus.messages import CancelRequest, ExecType, OrderEvent, OrderRequest, RejectCode, Side, StatusRequest, TimeInForce
from configs.schema import InstrumentCfg, SimVenueCfg
from feeds.book import TopOfBook
from configs.hours import is_open, parse_sessions
from feeds.simex.matching import (
    BookState,
    OrderState,
    OrderTransition,
    SimOrder,
    match_incoming,
    match_resting,
    on_tick,
)
from feeds.simex.seeds import sub_seed

DEFAULT_BAND_TICKS = 100

_ACK, _MATCH, _CANCEL, _STATUS, _REPLY = range(5)


def venue_seed(run_seed: int, venue: str) -> int:
    """The seed a venue should use for a run: stable, distinct per venue."""
    return sub_seed(run_seed, "venue", venue)


class SimVenue:
    """One simulated venue's order session and matching engine (pure; driven by the caller's clock).

    `instruments` are the venue's instruments keyed by config key (an
    `OrderRequest.instrument`); `band_ticks` is the price band around the
    mid outside which limit orders are rejected; `session` goes into its
    order and exec ids, so a restarted venue never repeats an id.
    """

    def __init__(
        self,
        name: str,
        cfg: SimVenueCfg,
        instruments: Mapping[str, InstrumentCfg],
        seed: int,
        *,
        start_ns: int | None = None,
        band_ticks: int = DEFAULT_BAND_TICKS,
        session: str = "",
    ) -> None:
        self.name = name
        self._ids = f"{name}-{session}"  # order and exec ids: <venue>-<session>O<n> / E<n>
        self.cfg = cfg
        self._instruments = {k: i for k, i in instruments.items() if i.venue == name}
        self._sessions = {k: parse_sessions(i.hours) for k, i in self._instruments.items()}
        self._seed = seed
        self._band_ticks = band_ticks
        self._ack_ns = round(cfg.ack_latency_ms * 1e6)
        self._match_ns = round(max(cfg.ack_latency_ms, cfg.fill_latency_ms) * 1e6)
        self._every_ns = round(cfg.disconnect_every_s * 1e9)
        self._down_ns = round(cfg.disconnect_for_s * 1e9)
        self._start_ns = start_ns
        self._clock = start_ns if start_ns is not None else -(2**62)
        self._books: dict[str, BookState] = {}
        self._orders: dict[str, SimOrder] = {}
        self._resting: dict[str, list[SimOrder]] = {}
        self._events: list[tuple[int, int, int, object]] = []
        self._out: list[tuple[int, int, OrderEvent]] = []
        self._fills: list[OrderEvent] = []
        self._n = 0  # scheduling sequence: ties at equal times resolve in arrival order
        self._exec_n = 0
        self.stats: dict[str, int] = {
            "orders": 0, "rejected": 0, "dropped_orders": 0, "fills": 0, "lost_reports": 0, "session_down_requests": 0,
        }

    # --- public API ----------------------------------------------------------

    def connected(self, venue_time_ns: int) -> bool:
        """True unless the session is in one of its scheduled disconnects at `venue_time_ns`."""
        self._anchor(venue_time_ns)
        if self._every_ns <= 0 or self._down_ns <= 0:
            return True
        since = venue_time_ns - (self._start_ns or 0)
        k = since // self._every_ns
        return k < 1 or since - k * self._every_ns >= self._down_ns

    def on_quote(self, tob: TopOfBook) -> None:
        """Feed one quote (in venue-time order); resting orders it crosses fill."""
        if tob.instrument not in self._instruments:
            return
        self._anchor(tob.ts_ns)
        self._run_until(tob.ts_ns, inclusive=False)
        self._clock = max(self._clock, tob.ts_ns)
        book = BookState(tob)
        self._books[tob.instrument] = book
        for order in list(self._resting.get(tob.instrument, ())):
            qty, px = match_resting(order, book)
            if qty:
                self._fill(order, qty, px, self._clock)

    def submit(self, req: OrderRequest, now_ns: int, priced_ts_ns: int | None = None) -> OrderEvent | None:
        """Send an order; None when it reached the venue, else the local SESSION_DOWN reject."""
        self._anchor(now_ns)
        rng = random.Random(f"{self._seed}:{req.cl_ord_id}")
        u_reject, u_partial, u_size, u_drop = (rng.random() for _ in range(4))
        if not self.connected(now_ns):
            self.stats["session_down_requests"] += 1
            return self._report_for(req, ExecType.REJECT, now_ns, reason=f"{RejectCode.SESSION_DOWN}: venue={self.name}")
        t = now_ns if priced_ts_ns is None else priced_ts_ns
        if req.cl_ord_id in self._orders:
            ev = self._report_for(req, ExecType.REJECT, 0, reason=f"ORDER_DUPLICATE: cl_ord_id={req.cl_ord_id}")
            self._schedule(t + self._ack_ns, _REPLY, ev)
            return None
        partial_cap = None
        if u_partial < self.cfg.partial_rate and req.qty >= 2:
            partial_cap = 1 + int(u_size * (req.qty - 1))
        self._n += 1
        order = SimOrder(req, f"{self._ids}O{len(self._orders) + 1}", t, self._n,
                         dropped=u_drop < self.cfg.drop_rate, partial_cap=partial_cap, u_reject=u_reject)
        self._orders[req.cl_ord_id] = order
        self.stats["orders"] += 1
        if order.dropped:
            self.stats["dropped_orders"] += 1
        self._schedule(t + self._ack_ns, _ACK, order)
        self._schedule(t + self._match_ns, _MATCH, order)
        return None

    def cancel(self, req: CancelRequest, now_ns: int) -> OrderEvent | None:
        """Ask to cancel; None when it reached the venue, else the local SESSION_DOWN cancel reject."""
        self._anchor(now_ns)
        if not self.connected(now_ns):
            self.stats["session_down_requests"] += 1
            return self._unknown(req.cl_ord_id, req.instrument, ExecType.CANCEL_REJECT, now_ns,
                                 f"{RejectCode.SESSION_DOWN}: venue={self.name}")
        self._schedule(now_ns + self._ack_ns, _CANCEL, req)
        return None

    def status(self, req: StatusRequest, now_ns: int) -> OrderEvent | None:
        """Ask for an order's status; None when it reached the venue, else the local SESSION_DOWN reject."""
        self._anchor(now_ns)
        if not self.connected(now_ns):
            self.stats["session_down_requests"] += 1
            return self._unknown(req.cl_ord_id, "", ExecType.REJECT, now_ns, f"{RejectCode.SESSION_DOWN}: venue={self.name}")
        self._schedule(now_ns + self._ack_ns, _STATUS, req.cl_ord_id)
        return None

    def handle(self, msg: OrderRequest | CancelRequest | StatusRequest, now_ns: int) -> OrderEvent | None:
        """Dispatch any order-session request (see `submit`, `cancel`, `status`)."""
        if isinstance(msg, OrderRequest):
            return self.submit(msg, now_ns)
        if isinstance(msg, CancelRequest):
            return self.cancel(msg, now_ns)
        return self.status(msg, now_ns)

    def due(self, now_ns: int) -> list[OrderEvent]:
        """Every report due at or before `now_ns` and not lost, in venue-time order."""
        self._anchor(now_ns)
        self._run_until(now_ns, inclusive=True)
        self._clock = max(self._clock, now_ns)
        out: list[OrderEvent] = []
        while self._out and self._out[0][0] <= now_ns:
            out.append(heapq.heappop(self._out)[2])
        return out

    def next_due_ns(self) -> int | None:
        """Venue time of the next scheduled event or report (None: nothing pending)."""
        times = [h[0][0] for h in (self._events, self._out) if h]
        return min(times) if times else None

    def fills(self) -> list[OrderEvent]:
        """Every fill the venue made, delivered or not, in order."""
        return list(self._fills)

    def order_state(self, cl_ord_id: str) -> OrderState | None:
        """The venue's view of an order (None: never received)."""
        order = self._orders.get(cl_ord_id)
        return None if order is None else order.state

    # --- event processing ------------------------------------------------------

    def _anchor(self, t: int) -> None:
        if self._start_ns is None:
            self._start_ns = t
            self._clock = t

    def _schedule(self, t: int, kind: int, payload: object) -> None:
        self._n += 1
        heapq.heappush(self._events, (max(t, self._clock), self._n, kind, payload))

    def _run_until(self, t: int, *, inclusive: bool) -> None:
        ev = self._events
        while ev and (ev[0][0] <= t if inclusive else ev[0][0] < t):
            when, _, kind, payload = heapq.heappop(ev)
            self._clock = max(self._clock, when)
            if kind == _ACK:
                self._on_ack(payload, when)  # type: ignore[arg-type]
            elif kind == _MATCH:
                self._on_match(payload, when)  # type: ignore[arg-type]
            elif kind == _CANCEL:
                self._on_cancel(payload, when)  # type: ignore[arg-type]
            elif kind == _STATUS:
                self._on_status(payload, when)  # type: ignore[arg-type]
            else:
                rep: OrderEvent = payload  # type: ignore[assignment]
                self._emit(_stamp(rep, when), when, deliver=True)

    def _reject_reason(self, order: SimOrder, t: int) -> str | None:
        req = order.req
        inst = self._instruments.get(req.instrument)
        if req.venue != self.name:
            return f"{RejectCode.VENUE_REJECT}: reason=wrong_venue venue={req.venue}"
        if inst is None:
            return f"{RejectCode.VENUE_REJECT}: reason=unknown_instrument instrument={req.instrument}"
        if req.qty <= 0:
            return f"{RejectCode.VENUE_REJECT}: reason=invalid_qty qty={req.qty}"
        if not is_open(self._sessions[req.instrument], t):
            return f"{RejectCode.VENUE_REJECT}: reason=market_closed instrument={req.instrument}"
        book = self._books.get(req.instrument)
        if req.price is not None:
            if not req.price > 0.0:
                return f"{RejectCode.VENUE_REJECT}: reason=invalid_price price={req.price}"
            if not on_tick(req.price, inst.tick):
                return f"{RejectCode.VENUE_REJECT}: reason=price_not_on_tick price={req.price} tick={inst.tick}"
            if book is not None:
                band = self._band_ticks * inst.tick
                mid = book.tob.mid
                if abs(req.price - mid) > band + 1e-9 * mid:
                    return f"{RejectCode.VENUE_REJECT}: reason=price_out_of_band price={req.price} low={mid - band:g} high={mid + band:g}"
        elif book is None:
            return f"{RejectCode.VENUE_REJECT}: reason=no_market instrument={req.instrument}"
        if order.u_reject < self.cfg.reject_rate:
            return f"{RejectCode.VENUE_REJECT}: reason=insufficient_margin"
        return None

    def _on_ack(self, order: SimOrder, t: int) -> None:
        if order.state is not OrderState.PENDING_NEW:
            return
        reason = self._reject_reason(order, t)
        if reason is not None:
            order.apply(OrderTransition.REJECT)
            self.stats["rejected"] += 1
            self._emit(self._report(order, ExecType.REJECT, t, reason=reason), t, deliver=not order.dropped)
            return
        order.apply(OrderTransition.ACK)
        self._emit(self._report(order, ExecType.ACK, t), t, deliver=not order.dropped)

    def _on_match(self, order: SimOrder, t: int) -> None:
        if not order.state.working:
            return
        qty, px = match_incoming(order, self._books.get(order.req.instrument))
        order.partial_cap = None
        if qty:
            self._fill(order, qty, px, t)
        if order.state.terminal:
            return
        if order.req.tif is TimeInForce.IOC:
            leaves = order.leaves_qty
            order.apply(OrderTransition.CANCEL)
            self._emit(self._report(order, ExecType.CANCELLED, t, reason=f"IOC_REMAINDER: leaves_qty={leaves}"),
                       t, deliver=not order.dropped)
        else:
            self._resting.setdefault(order.req.instrument, []).append(order)

    def _on_cancel(self, req: CancelRequest, t: int) -> None:
        order = self._orders.get(req.cl_ord_id)
        if order is None:
            self._emit(self._unknown(req.cl_ord_id, req.instrument, ExecType.CANCEL_REJECT, t,
                                     f"{RejectCode.ORDER_UNKNOWN}: cl_ord_id={req.cl_ord_id}"), t, deliver=True)
            return
        if order.state.terminal:
            reason = f"ORDER_NOT_OPEN: cl_ord_id={req.cl_ord_id} state={order.state.value}"
            self._emit(self._report(order, ExecType.CANCEL_REJECT, t, reason=reason), t, deliver=True)
            return
        order.apply(OrderTransition.CANCEL)
        self._unrest(order)
        self._emit(self._report(order, ExecType.CANCELLED, t, reason="CANCEL_REQUESTED: by=client"), t, deliver=True)

    def _on_status(self, cl_ord_id: str, t: int) -> None:
        order = self._orders.get(cl_ord_id)
        if order is None:
            self._emit(self._unknown(cl_ord_id, "", ExecType.REJECT, t, f"{RejectCode.ORDER_UNKNOWN}: cl_ord_id={cl_ord_id}"),
                       t, deliver=True)
            return
        reason = f"ORDER_STATE: state={order.state.value}"
        self._emit(self._report(order, ExecType.STATUS, t, reason=reason), t, deliver=True)

    def _fill(self, order: SimOrder, qty: int, px: float, t: int) -> None:
        order.fill(qty, px)
        if order.state.terminal:
            self._unrest(order)
        self._exec_n += 1
        ev = self._report(order, ExecType.FILL, t, last_qty=qty, last_px=px, exec_id=f"{self._ids}E{self._exec_n}")
        self._fills.append(ev)
        self.stats["fills"] += 1
        self._emit(ev, t, deliver=not order.dropped)

    def _unrest(self, order: SimOrder) -> None:
        resting = self._resting.get(order.req.instrument)
        if resting and order in resting:
            resting.remove(order)

    def _emit(self, ev: OrderEvent, t: int, *, deliver: bool) -> None:
        """Queue a report due at `t`, unless it is lost (dropped order, session down at `t`)."""
        if not deliver or not self.connected(t):
            self.stats["lost_reports"] += 1
            return
        self._n += 1
        heapq.heappush(self._out, (t, self._n, ev))

    # --- report construction ---------------------------------------------------

    def _report(self, order: SimOrder, kind: ExecType, t: int, *, reason: str = "", last_qty: int = 0,
                last_px: float = 0.0, exec_id: str = "") -> OrderEvent:
        req = order.req
        return OrderEvent(
            cl_ord_id=req.cl_ord_id, exec_type=kind, venue=self.name, instrument=req.instrument, side=req.side,
            order_qty=req.qty, cum_qty=order.cum_qty, leaves_qty=order.leaves_qty, last_qty=last_qty,
            last_px=last_px, avg_px=order.avg_px, exec_id=exec_id, venue_order_id=order.venue_order_id,
            reason=reason, venue_ts_ns=t,
        )

    def _report_for(self, req: OrderRequest, kind: ExecType, t: int, *, reason: str) -> OrderEvent:
        return OrderEvent(
            cl_ord_id=req.cl_ord_id, exec_type=kind, venue=self.name, instrument=req.instrument, side=req.side,
            order_qty=req.qty, cum_qty=0, leaves_qty=0, reason=reason, venue_ts_ns=t,
        )

    def _unknown(self, cl_ord_id: str, instrument: str, kind: ExecType, t: int, reason: str) -> OrderEvent:
        return OrderEvent(
            cl_ord_id=cl_ord_id, exec_type=kind, venue=self.name, instrument=instrument, side=Side.BUY,
            order_qty=0, cum_qty=0, leaves_qty=0, reason=reason, venue_ts_ns=t,
        )


def _stamp(ev: OrderEvent, t: int) -> OrderEvent:
    return msgspec.structs.replace(ev, venue_ts_ns=t)
