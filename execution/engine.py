"""The execution engine: signals become pair trades, reports and timers drive them, nothing leaves unlogged.

Pure: no sockets and no clock (every input carries ``now``). It owns the pair trades, the
child-order router, the pre-trade limits, the position book, the write-ahead log and the
durable execution stream. The executor actor is a thin adapter: it feeds inputs in and
carries out the effects that come back, in order.

One rule, applied in `_commit` and nowhere else (the log's protocol is in `execution.wal`):
an input is worked out in memory in full (the trade's actions, the limits' verdicts, child
orders, stream events), then the input, every order it sends and every stream event it
makes are written to the log **in one write**, and only then are the effects returned.
So an order never leaves and an event is never published without its record; after
``kill -9`` the log replays to the same trades, the same positions and the same stream.
An input that fails halfway (a bug) would leave memory ahead of the log, so it stops the
process instead (`EngineStepFailed`): the restart rebuilds from the log, as after ``kill -9``.

The hot path (`execution.armed`): between inputs, `arm` decides per pair, direction and
closing flag everything about an entry that does not depend on the signal; a signal an armed
entry covers is written as one small record and its orders handed out (`on_signal`'s `send`)
before the trade's bookkeeping, which then runs the ordinary way and must arrive at exactly
what was written and sent.

Effects, in the order the adapter must carry them out: venue requests first (`SendWire`,
`CancelWire`, `QueryWire`), then `Emit` (durable stream events, already logged),
`Publish` (best-effort bus messages) and `RequestHalt`, and last `Log` (the operator's log
lines: formatting them never delays an order).
"""

from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Union

import msgspec

from bus import topics
from bus.messages import (Alert, CancelRequest, ExecType, FxRate, MarginSnapshot, Message, OrderEvent, OrderPurpose, OrderRequest,
                          PairTradeEvent, Positions, RejectCode, RiskLevel, Severity, Side, Signal, StatusRequest,
                          StreamEvent, TradeState)
from configs.schema import Config
from execution.allocation import Allocator
from execution.armed import ArmedEntry, FastPathDiverged, Key, Template, fits, prepare, template
from execution.armed import written as armed_written
from execution.childorders import ChildRouter, parent_of, session_down
from execution.ids import TradeIds, parse_cl_ord_id
from execution.pairtrade import (ENTRY_STATES, Action, CancelOrder, OrderStatus, PairParams, PairTrade, QueryStatus, RaiseAlert,
                                 RequestHalt, SendOrder, SignalInvalid, Transition, marketable_limit, params_from_config)
from execution.positions import PositionBook
from execution.whatif import MarginWhatIf
from execution.wal import (ChildSent, EntrySentOut, Halted, OrderSent, RecoveredState, ReportApplied, Resumed, Streamed,
                           TimerFired, TradeClosed, TradeOpened, WalRecord, WriteAheadLog, encode_frame, recover_records)
from riskguard.fx import FxTable
from riskguard.limits import PreTradeLimits

TRADE_PREFIX = "T"
KEEP_DONE = 5000  # settled trades kept in memory for late reports
STREAM_BATCH = 2000  # events per answer to "everything since N"


class SendWire(msgspec.Struct, frozen=True, kw_only=True):
    """Hand an order to its venue's session (it is in the log)."""

    order: OrderRequest


class CancelWire(msgspec.Struct, frozen=True, kw_only=True):
    req: CancelRequest
    trade_id: str


class QueryWire(msgspec.Struct, frozen=True, kw_only=True):
    req: StatusRequest
    trade_id: str


class Emit(msgspec.Struct, frozen=True, kw_only=True):
    """Publish an event of the durable execution stream (it is in the log)."""

    event: StreamEvent


class Publish(msgspec.Struct, frozen=True, kw_only=True):
    """Publish a best-effort bus message (alerts, denials)."""

    topic: str
    msg: Message


class Log(msgspec.Struct, frozen=True, kw_only=True):
    """A line for the operator's log (structlog: ``level``, stable ``event`` name, ids in ``fields``)."""

    level: str  # info, warning, error
    event: str
    fields: dict[str, Any]


Effect = Union[SendWire, CancelWire, QueryWire, Emit, Publish, RequestHalt, Log]


class EngineStepFailed(BaseException):
    """An input failed halfway (a bug): memory may already hold what the log does not (a trade,
    an order, a stream event). Not an `Exception` on purpose, like `execution.wal.WalWriteFailed`:
    no handler may catch it and carry on; the process stops and is rebuilt from the log."""


def _whole(name: str) -> Callable[[Callable[..., list["Effect"]]], Callable[..., list["Effect"]]]:
    """An engine input that either completes (logged, then its effects) or stops the process
    (`EngineStepFailed`, reason ``EXEC_STEP_FAILED: input=<name> error=...``)."""
    def wrap(fn: Callable[..., list[Effect]]) -> Callable[..., list[Effect]]:
        @functools.wraps(fn)
        def whole(self: "ExecutionEngine", *args: Any) -> list[Effect]:
            try:
                return fn(self, *args)
            except Exception as exc:
                raise EngineStepFailed(f"EXEC_STEP_FAILED: input={name} error={exc!r}") from exc
        return whole
    return wrap


Written = tuple[list[WalRecord], list[OrderRequest]]  # what an armed entry logged (as read back) and sent
WIRE = (SendWire, CancelWire, QueryWire)


@dataclass(slots=True)
class _Step:
    """What one input makes: records to log, then venue requests, then the rest."""

    records: list[WalRecord] = field(default_factory=list)
    wire: list[Effect] = field(default_factory=list)
    after: list[Effect] = field(default_factory=list)
    positions_moved: bool = False


class ExecutionEngine:
    """Pair trades, limits, positions and the stream of one executor, over one write-ahead log."""

    def __init__(self, cfg: Config, wal: WriteAheadLog, *, params: dict[str, PairParams] | None = None,
                 actor: str = "executor") -> None:
        """Rebuild everything the log holds (open trades, positions, the stream); call `resume`
        next to carry on the open trades (and to get what recovery has to say)."""
        self.cfg = cfg
        self.wal = wal
        self.actor = actor
        self._logs: list[Log] = []
        self.params = params if params is not None else params_from_config(cfg)
        self.book = PositionBook({n: (p.a.ratio, p.b.ratio) for n, p in self.params.items()})
        self.limits = PreTradeLimits.from_config(cfg, self.book)
        self.whatif = MarginWhatIf(cfg, self.params)
        self._signal_px: dict[str, float] = {}  # the latest signals' limit prices, for the what-if's marks
        self.fx = FxTable(cfg.run.base_currency, expected=sorted(cfg.fx_instruments()))
        self.router = ChildRouter({n: Allocator(n, a) for n, a in cfg.accounts.items() if a.sub_accounts},
                                  {n: a.iceberg_visible for n, a in cfg.accounts.items()})
        self._level = RiskLevel.NORMAL
        self.gen = 0  # moves with every input that could change an armed entry's verdicts
        self.touch: dict[str, tuple[float, float]] = {}  # instrument -> (bid, ask), for limit unwinds
        self.trades: dict[str, PairTrade] = {}
        self.open: set[str] = set()
        self.done: deque[str] = deque()
        self.signal_seen: set[str] = set()
        self.stream: list[StreamEvent] = []  # stream[i].seq == i + 1
        self.stats = {"signals": 0, "rejected": 0, "reports": 0, "fills": 0, "denied": 0, "orphan_reports": 0,
                      "recovered": 0, "armed_sent": 0}
        self._fill_avg: dict[str, tuple[int, float]] = {}  # cl_ord_id -> (qty, avg price) in the stream
        self.recovered = self._recover()
        self.ids = TradeIds(TRADE_PREFIX, self.recovered.next_trade_n)
        self._templates: dict[Key, Template] = {
            (pair, direction, closing): template(p, direction, closing, cfg.pairs[pair].lots, cfg.instruments)
            for pair, p in self.params.items() if pair in cfg.pairs
            for direction in (Side.BUY, Side.SELL) for closing in (False, True)}
        self._armed: dict[Key, ArmedEntry] = {}
        self.armed_gen = -1  # the generation `_armed` was made under
        self._rehearsals = 0

    # ---- recovery ------------------------------------------------------------------------

    def _recover(self) -> RecoveredState:
        records = self.wal.records
        rec_state = recover_records(records, self.params, self.wal.scan)
        open_ids = rec_state.trades
        self.recovered_orders: list[OrderRequest] = []  # sent orders of open trades (gateways name them)
        for rec in records:
            if isinstance(rec, Streamed):
                self._absorb(rec.event)
            elif isinstance(rec, TradeOpened):  # a signal is traded once, even if it comes again after a restart
                self.signal_seen.add(rec.signal.signal_id)
            elif isinstance(rec, ChildSent) and rec.order.trade_id in open_ids:
                self.router.restore(rec.parent, rec.order)
            elif isinstance(rec, ReportApplied) and rec.trade_id in open_ids and rec.report.exec_type is ExecType.FILL:
                self.router.restore_fill(rec.report)
            if isinstance(rec, (OrderSent, ChildSent)) and rec.order.trade_id in open_ids:
                self.recovered_orders.append(rec.order)
        for trade in open_ids.values():
            for view in trade.order_views():
                if view.cancel_requested:
                    self.router.restore_cancel(view.cl_ord_id)
        self.trades.update(open_ids)
        self.open.update(open_ids)
        return rec_state

    def _absorb(self, ev: StreamEvent) -> bool:
        """A stream event into the engine's state (written now, or read back from the log);
        True if it moved the positions."""
        if ev.seq != len(self.stream) + 1:
            self._log("error", "stream_seq_unexpected", seq=ev.seq, expected=len(self.stream) + 1)
        self.stream.append(ev)
        body = ev.body
        if isinstance(body, OrderEvent):
            self.book.on_fill(body)
            self.whatif.on_price(body.instrument, body.last_px)
            self.whatif.invalidate()
            self._fill_avg[body.cl_ord_id] = (body.cum_qty, body.avg_px if body.avg_px > 0 else body.last_px)
            return True
        if isinstance(body, PairTradeEvent):
            return self.book.on_trade(body)
        return False

    @_whole("resume")
    def resume(self, now: int) -> list[Effect]:
        """Carry on the trades the log left open: in-doubt orders asked about, unsent ones sent."""
        rec = self.recovered
        if not rec.trades:
            return self._take_logs()
        self._log("warning", "executor_recovering", open_trades=len(rec.trades), in_doubt=len(rec.in_doubt),
                  to_send=len(rec.to_send), errors=list(rec.errors), stream_head=self.head)
        step = _Step([Resumed(now_ns=now)])
        for trade_id, action in rec.resume(now):
            self._run(step, self.trades[trade_id], [action], now)
        self.stats["recovered"] = len(rec.trades)
        return self._commit(step)

    # ---- the stream ------------------------------------------------------------------------

    @property
    def head(self) -> int:
        """The newest stream seq (0: nothing yet)."""
        return len(self.stream)

    def since(self, seq: int, limit: int = 0) -> tuple[StreamEvent, ...]:
        """Stream events after `seq`, oldest first, at most `limit` (0: `STREAM_BATCH`)."""
        start = max(0, seq)
        return tuple(self.stream[start:start + (limit or STREAM_BATCH)])

    def positions(self) -> Positions:
        return self.book.view()

    @property
    def level(self) -> RiskLevel:
        """The risk level signals are judged by (the stricter of marginwatch's and the kill switch)."""
        return self._level

    @level.setter
    def level(self, level: RiskLevel) -> None:
        if level is not self._level:
            self._level = level
            self.gen += 1

    # ---- inputs ----------------------------------------------------------------------------

    def on_signal(self, sig: Signal, now: int, venues_down: Iterable[str] = (),
                  send: Callable[[list[Effect]], None] | None = None) -> list[Effect]:
        """A signal from the trigger: a new pair trade and its entry orders, or a refusal.

        With `send`, the venue requests are handed to it as soon as they are logged (before the
        trade's bookkeeping) and the rest is returned; without, everything is returned in order.
        A signal an armed entry fits (`execution.armed`) is logged and sent first, then worked
        out the ordinary way, which must arrive at the same records."""
        if sig.signal_id in self.signal_seen:  # a repeat (the trigger re-sends one it heard nothing about)
            self._log("info", "signal_repeated", signal_id=sig.signal_id, pair=sig.pair)
            return self._take_logs()
        down = tuple(venues_down)
        prepared = self._prepare(sig, now, down)
        if prepared is None:
            effects = self._open(sig, now, down, None)
            if send is None:
                return effects
            send([e for e in effects if isinstance(e, WIRE)])
            return [e for e in effects if not isinstance(e, WIRE)]
        armed, rec, orders = prepared
        self.wal.append(rec)
        self.stats["armed_sent"] += 1
        wire: list[Effect] = [SendWire(order=o) for o in orders]
        try:
            if send is not None:
                send(wire)
                wire = []
        finally:  # logged is done, sent or not: memory follows the log (an unsent order ends in doubt)
            rest = self._open(sig, now, down, (armed_written(armed, rec), orders))
        return wire + rest

    @_whole("signal")
    def _open(self, sig: Signal, now: int, venues_down: tuple[str, ...], written: Written | None) -> list[Effect]:
        """The ordinary path: refusals, the trade, its orders vetted and routed, the one write
        (`written`: the records an armed entry already wrote and the orders it sent, which this
        must arrive at)."""
        self.stats["signals"] += 1
        reason = self._refuse(sig, now, venues_down)
        if reason is not None:
            return self._reject_signal(sig, reason, now, written)
        params = self.params[sig.pair]
        trade_id = self.ids.next()
        try:
            trade = PairTrade(trade_id, sig, params)
        except SignalInvalid as exc:
            return self._reject_signal(sig, str(exc), now, written)
        self.signal_seen.add(sig.signal_id)
        self.trades[trade_id] = trade
        self.open.add(trade_id)
        step = _Step([TradeOpened(trade_id=trade_id, signal=sig, params=params, now_ns=now)])
        self._run(step, trade, trade.start(now), now)
        self._log("info", "trade_opened", trade_id=trade_id, pair=sig.pair, signal_id=sig.signal_id,
                  direction=sig.direction.value, closing=sig.closing, armed=written is not None)
        return self._commit(step, written)

    @_whole("report")
    def on_report(self, ev: OrderEvent, now: int) -> list[Effect]:
        """An execution report from a venue (or a gateway's local answer), `recv_ns` stamped."""
        self.stats["reports"] += 1
        if ev.exec_type is ExecType.FILL and ev.last_qty > 0:
            self.stats["fills"] += 1
        step = _Step()
        parent_id = parent_of(ev.cl_ord_id)
        if parent_id is not None:  # a child: what it means for its parent goes to the trade
            events, more = self.router.on_report(ev)
            trade = self._trade_of(parent_id)
            if trade is None:
                self._orphan(step, ev)
                return self._commit(step)
            self._log("info", "child_report", trade_id=trade.trade_id, cl_ord_id=ev.cl_ord_id,
                      exec_type=ev.exec_type.value, last_qty=ev.last_qty, cum_qty=ev.cum_qty, leaves_qty=ev.leaves_qty,
                      reason=ev.reason)
            parent_req = self.router.parent_request(parent_id)
            if more and parent_req is not None:  # the next iceberg slices
                step.records += [ChildSent(parent=parent_req, order=c) for c in more]
                step.wire += [SendWire(order=c) for c in more]
            for pev in events:
                self._apply_report(step, trade, msgspec.structs.replace(pev, recv_ns=ev.recv_ns), now)
        else:
            trade = self._trade_of(ev.cl_ord_id)
            if trade is None:
                self._orphan(step, ev)
                return self._commit(step)
            if session_down(ev) and self._order_status(trade, ev.cl_ord_id) is not OrderStatus.SENT:
                # a status or cancel that never reached the venue: the order stays in doubt, asked again
                self._log("warning", "answer_session_down", trade_id=trade.trade_id, cl_ord_id=ev.cl_ord_id,
                          reason=ev.reason)
                return self._take_logs()
            self._apply_report(step, trade, ev, now)
        return self._commit(step)

    @_whole("timer")
    def on_timer(self, now: int) -> list[Effect]:
        """Every trade whose deadline is due (one write per trade, so one trade's bug stops no other)."""
        wire: list[Effect] = []
        after: list[Effect] = []
        logs: list[Effect] = []
        for trade_id in sorted(self.open):
            trade = self.trades[trade_id]
            due = trade.next_deadline_ns()
            if due is not None and due <= now:
                step = _Step([TimerFired(trade_id=trade_id, now_ns=now)])
                self._run(step, trade, trade.on_timer(now), now)
                for e in self._commit(step):  # in the order of one input: requests, events, log lines
                    (wire if isinstance(e, WIRE) else logs if isinstance(e, Log) else after).append(e)
        return wire + after + logs

    @_whole("halt")
    def halt(self, now: int, reason: str) -> list[Effect]:
        """Stop every open trade (REDUCE_ONLY, HALTED, kill switch, shutdown): unwinds go out."""
        if not self.open:
            return []
        step = _Step([Halted(now_ns=now, reason=reason)])
        for trade_id in sorted(self.open):
            trade = self.trades[trade_id]
            self._run(step, trade, trade.halt(now, reason), now)
        return self._commit(step)

    @_whole("query_in_doubt")
    def query_in_doubt(self, venue: str, now: int) -> list[Effect]:
        """A session (re)logged on: ask about every order on it whose fate is unknown."""
        step = _Step()
        for trade_id in sorted(self.open):
            trade = self.trades[trade_id]
            for view in trade.order_views():
                if view.status is OrderStatus.IN_DOUBT and getattr(trade.params, view.leg).venue == venue:
                    self._act(step, trade, QueryStatus(query=StatusRequest(cl_ord_id=view.cl_ord_id, venue=venue)), now)
        return self._commit(step)

    def on_fx(self, rate: FxRate) -> None:
        if not self.fx.received_ns(rate.pair):
            self.gen += 1  # a first rate: entries that could not be armed without it can be now
        self.fx.on_fx(rate)
        self.whatif.on_fx(rate.pair, rate.mid)

    def on_touch(self, instrument: str, bid: float, ask: float) -> None:
        """The instrument's top of book (limit unwinds go through it; the what-if marks at it)."""
        self.touch[instrument] = (bid, ask)
        self.whatif.on_price(instrument, (bid + ask) / 2.0)

    def on_margin(self, snap: MarginSnapshot) -> None:
        """Marginwatch's latest view: each account's equity, for the what-if."""
        self.whatif.on_snapshot(snap)

    def fx_recv_ns(self, pair: str) -> int:
        """When the rate of `pair` in use was received (0: none yet)."""
        return self.fx.received_ns(pair)

    def next_deadline(self) -> int | None:
        """The earliest time `on_timer` has work to do (None: no open trade waits on time)."""
        dues = [d for t in self.open if (d := self.trades[t].next_deadline_ns()) is not None]
        return min(dues) if dues else None

    # ---- the one write -----------------------------------------------------------------------

    def _commit(self, step: _Step, written: Written | None = None, moved: bool = True) -> list[Effect]:
        """The one write, then the effects. `written`: the records are already in the log (an armed
        entry's) and its orders already out: this input must have made exactly those. `moved=False`:
        nothing an armed entry depends on changed (a refused signal)."""
        if step.positions_moved:
            self._emit(step, self.book.view())
        if moved:
            self.gen += 1
        if written is not None:
            records, sent = written
            if step.records != records:
                raise FastPathDiverged(_divergence(records, step.records))
            made = [e.order for e in step.wire if isinstance(e, SendWire)]
            if made != sent or len(made) != len(step.wire):
                raise FastPathDiverged(f"EXEC_FAST_PATH_DIVERGED: sent={[o.cl_ord_id for o in sent]} "
                                       f"ordinary={[type(e).__name__ for e in step.wire]}")
            return step.after + self._take_logs()
        if step.records:
            self.wal.append_many(step.records)
        return step.wire + step.after + self._take_logs()

    def _log(self, level: str, event: str, **fields: Any) -> None:
        self._logs.append(Log(level=level, event=event, fields=fields))

    def _take_logs(self) -> list[Effect]:
        logs, self._logs = self._logs, []
        return logs  # type: ignore[return-value]

    def _emit(self, step: _Step, body: OrderEvent | PairTradeEvent | Positions) -> None:
        ev = StreamEvent(seq=len(self.stream) + 1, body=body)
        if self._absorb(ev):
            step.positions_moved = True
        step.records.append(Streamed(event=ev))
        step.after.append(Emit(event=ev))

    # ---- refusals --------------------------------------------------------------------------

    def _refuse(self, sig: Signal, now: int, venues_down: Iterable[str]) -> str | None:
        if sig.pair not in self.params:
            return f"SIGNAL_PAIR_UNKNOWN: pair={sig.pair}"
        if 0 < sig.expiry_ns < now:
            return f"SIGNAL_EXPIRED: age_us={(now - sig.signal_ns) / 1e3:.0f}"
        level = self.level
        if level is RiskLevel.HALTED or (level is not RiskLevel.NORMAL and not sig.closing):
            return f"RISK_STATE: state={level.value} closing={sig.closing}"
        p = self.params[sig.pair]
        legs = sorted(leg.instrument for leg in sig.legs)
        if legs != sorted((p.a.instrument, p.b.instrument)):
            return f"SIGNAL_LEGS: pair={sig.pair} legs={','.join(legs)} want={p.a.instrument},{p.b.instrument}"
        for leg in sig.legs:
            if not (0.0 < leg.limit_px and math.isfinite(leg.limit_px)):
                return f"SIGNAL_PRICE: instrument={leg.instrument} px={leg.limit_px}"
        busy = [t for t in self.open if self.trades[t].pair == sig.pair]
        if busy:
            return f"EXEC_PAIR_BUSY: pair={sig.pair} trade_id={busy[0]}"
        down = set(venues_down)
        for leg in (p.a, p.b):
            if leg.venue in down:
                return f"{RejectCode.SESSION_DOWN}: venue={leg.venue} instrument={leg.instrument}"
        doubt = {i for t in self.open for i in self.trades[t].instruments_in_doubt()}
        for inst in (p.a.instrument, p.b.instrument):
            if inst in doubt:
                return f"EXEC_IN_DOUBT: instrument={inst}"
        qty = {leg.instrument: leg.qty for leg in sig.legs}
        units = qty[p.a.instrument] // max(1, p.a.ratio) * sig.direction.sign
        reason = self.limits.check_pair(sig.pair, units)
        if reason is None and not sig.closing:  # margin never refuses a reduction
            reason = self._whatif(sig, qty[p.a.instrument], qty[p.b.instrument], self._pending_entries())
        return reason

    def _whatif(self, sig: Signal, qty_a: int, qty_b: int, pending: dict[tuple[str, str], int]) -> str | None:
        """The margin what-if's verdict on an opening signal (normally cached, see `rehearse`)."""
        for leg in sig.legs:
            self._signal_px[leg.instrument] = leg.limit_px  # the what-if's marks, taken off the hot path
            if leg.instrument not in self.whatif.price:
                self.whatif.on_price(leg.instrument, leg.limit_px)
        self.whatif.set_pending(pending)
        return self.whatif.check(sig.pair, sig.direction.sign, qty_a, qty_b, self.book, self.fx)

    # ---- armed entries (`execution.armed`) ------------------------------------------------------

    def arm(self, now: int) -> None:
        """Arm every entry whose state-dependent checks pass now (nothing to do if no input moved
        the generation since the last call). The same checks the ordinary path makes, with the
        order rate, prices and FX left to the signal."""
        if self.armed_gen == self.gen:
            return
        armed: dict[Key, ArmedEntry] = {}
        level = self._level
        busy = {self.trades[t].pair for t in self.open}
        doubt = {i for t in self.open for i in self.trades[t].instruments_in_doubt()}
        pending = self._pending_entries()
        verdicts: dict[tuple[str, Side], tuple | None] = {}  # opening and closing entries send the same orders
        for key, t in self._templates.items():
            pair, direction, closing = key
            if level is RiskLevel.HALTED or (level is not RiskLevel.NORMAL and not closing):
                continue
            if (pair, direction) not in verdicts:
                verdicts[(pair, direction)] = self._arm_parts(t, busy, doubt, now)
            parts = verdicts[(pair, direction)]
            if parts is not None:
                p = t.params
                armed[key] = ArmedEntry(gen=self.gen, template=t, parts=parts,
                                        venues=frozenset((p.a.venue, p.b.venue)), pending=pending)
        self._armed = armed
        self.armed_gen = self.gen

    def _arm_parts(self, t: Template, busy: set[str], doubt: set[str], now: int) -> tuple | None:
        """Each entry order's sub-account split if the template passes every check that does not
        depend on the signal (pair busy, in doubt, pair and order limits, allocation); else None."""
        p = t.params
        if p.pair in busy or p.a.instrument in doubt or p.b.instrument in doubt \
                or self.limits.check_pair(p.pair, t.units) is not None:
            return None
        parts = []
        for lo in t.orders:
            fx = self.fx.try_rate(lo.currency, self.cfg.run.base_currency)
            probe = msgspec.structs.replace(lo.order, price=_PROBE_PX)  # every check a price cannot change
            plan = self.router.plan(lo.order)
            if fx is None or self.limits.check(probe, now, _PROBE_PX, fx, dry=True) is not None or plan == ():
                return None
            parts.append(plan)
        return tuple(parts)

    @property
    def armed(self) -> tuple[Key, ...]:
        """The entries armed now (under the current generation)."""
        return tuple(self._armed) if self.armed_gen == self.gen else ()

    def _admits(self, armed: ArmedEntry, sig: Signal, now: int, venues_down: tuple[str, ...]) -> bool:
        """The checks of an armed entry that depend on the signal, but the what-if (no side effects)."""
        t = armed.template
        if 0 < sig.expiry_ns < now or not fits(t, sig):
            return False
        for v in venues_down:
            if v in armed.venues:
                return False
        if self.limits.rate_room(now) < len(t.orders):
            return False
        base, cap = self.cfg.run.base_currency, self.limits.cfg.max_order_notional
        for lo in t.orders:
            fx = self.fx.try_rate(lo.currency, base)
            # the notional exactly as the limits compute it, at the rate in use now
            if fx is None or not (math.isfinite(fx) and fx > 0.0) \
                    or lo.order.qty * sig.legs[lo.signal_leg].limit_px * lo.multiplier * fx > cap:
                return False
        return True

    def _prepare(self, sig: Signal, now: int,
                 venues_down: tuple[str, ...]) -> tuple[ArmedEntry, EntrySentOut, list[OrderRequest]] | None:
        """The entry, its one record and the orders of `sig`, if an armed entry covers it; None:
        the ordinary path decides."""
        armed = self._armed.get((sig.pair, sig.direction, sig.closing))
        if armed is None or armed.gen != self.gen or not self._admits(armed, sig, now, venues_down):
            return None
        if not sig.closing:
            qa, qb = armed.template.legs[0][2], armed.template.legs[1][2]
            if self._whatif(sig, qa, qb, armed.pending) is not None:
                return None
        rec, orders = prepare(armed, sig, now, self.ids.peek(), len(self.stream) + 1)
        return armed, rec, orders

    def _pending_entries(self) -> dict[tuple[str, str], int]:
        """Lots the entry legs of open trades would still add, per (account, instrument)."""
        out: dict[tuple[str, str], int] = {}
        for trade_id in self.open:
            trade = self.trades[trade_id]
            if trade.state not in ENTRY_STATES:
                continue
            for lp, view in zip((trade.params.a, trade.params.b), trade.legs_view()):
                left = max(0, view.target_qty - view.filled_qty)
                if left:
                    k = (lp.account, lp.instrument)
                    out[k] = out.get(k, 0) + view.side.sign * left
        return out

    def _reject_signal(self, sig: Signal, reason: str, now: int, written: Written | None = None) -> list[Effect]:
        self.stats["rejected"] += 1
        self._log("info", "signal_rejected", signal_id=sig.signal_id, pair=sig.pair, reason=reason)
        step = _Step()
        self._emit(step, PairTradeEvent(
            trade_id="", pair=sig.pair, state=TradeState.REJECTED, prev_state=None, transition="signal_rejected",
            direction=sig.direction, legs=(), reason=reason, signal_id=sig.signal_id, tick_recv_ns=sig.tick_recv_ns,
            ts_ns=now))
        return self._commit(step, written, moved=False)

    # ---- reports ----------------------------------------------------------------------------

    @staticmethod
    def _order_status(trade: PairTrade, cl_ord_id: str) -> OrderStatus | None:
        return next((o.status for o in trade.order_views() if o.cl_ord_id == cl_ord_id), None)

    @staticmethod
    def _filled(trade: PairTrade, cl_ord_id: str) -> int:
        return next((o.filled_qty for o in trade.order_views() if o.cl_ord_id == cl_ord_id), 0)

    def _trade_of(self, cl_ord_id: str) -> PairTrade | None:
        parsed = parse_cl_ord_id(cl_ord_id)
        trade = self.trades.get(parsed.trade_id) if parsed is not None else None
        return trade if trade is not None and trade.owns(cl_ord_id) else None

    def _orphan(self, step: _Step, ev: OrderEvent) -> None:
        self.stats["orphan_reports"] += 1
        severity = "error" if ev.exec_type is ExecType.FILL else "warning"
        self._log(severity, "report_orphan", cl_ord_id=ev.cl_ord_id, exec_type=ev.exec_type.value,
                                    last_qty=ev.last_qty, reason=ev.reason)
        if ev.exec_type is ExecType.FILL:
            self._alert(step, Severity.CRITICAL, f"EXEC_ORPHAN_FILL: cl_ord_id={ev.cl_ord_id} qty={ev.last_qty}", "",
                        ev.recv_ns)

    def _apply_report(self, step: _Step, trade: PairTrade, ev: OrderEvent, now: int) -> None:
        """A report of one of the trade's own orders: logged (with the step), applied, fills streamed."""
        self._log("info", "order_report", trade_id=trade.trade_id, cl_ord_id=ev.cl_ord_id, exec_type=ev.exec_type.value,
                  last_qty=ev.last_qty, last_px=ev.last_px, cum_qty=ev.cum_qty, leaves_qty=ev.leaves_qty,
                  reason=ev.reason)
        before = self._filled(trade, ev.cl_ord_id)
        step.records.append(ReportApplied(trade_id=trade.trade_id, report=ev, now_ns=now))
        actions = trade.on_report(ev, now)
        self._fill_event(step, trade, ev, before, self._filled(trade, ev.cl_ord_id))
        self._run(step, trade, actions, now)

    def _fill_event(self, step: _Step, trade: PairTrade, ev: OrderEvent, before: int, after: int) -> None:
        """What the trade now holds more of, however the venue told us (a FILL, or a status or cancel
        answer after a lost report), once: the stream's fills are what positions are made of."""
        if after <= before:
            return
        qty = after - before
        if ev.exec_type is ExecType.FILL and ev.last_qty == qty and ev.last_px > 0:
            px = ev.last_px
        else:  # from the cumulative average and what was already streamed for this order
            prev_qty, prev_avg = self._fill_avg.get(ev.cl_ord_id, (before, ev.avg_px))
            px = (after * ev.avg_px - prev_qty * prev_avg) / qty if ev.avg_px > 0 else ev.last_px
        p = trade.params
        account = p.a.account if ev.instrument == p.a.instrument else p.b.account
        self._emit(step, msgspec.structs.replace(
            ev, exec_type=ExecType.FILL, last_qty=qty, last_px=px, cum_qty=after, exec_id=f"{ev.cl_ord_id}#{after}",
            account=account))

    # ---- actions -------------------------------------------------------------------------------

    def _run(self, step: _Step, trade: PairTrade, actions: list[Action], now: int) -> None:
        """A trade's actions into the step: orders (vetted, routed) first, then the rest."""
        denied: list[tuple[OrderRequest, str]] = []
        unplaced: list[OrderEvent] = []
        for action in actions:
            if not isinstance(action, SendOrder):
                continue
            order, denial = self._vet(trade, action.order, now)
            if denial is not None:
                denied.append((order, denial))
                continue
            step.records.append(OrderSent(order=order))
            children, reject = self.router.route(order)  # sub-accounts and iceberg slices
            if reject is not None:
                unplaced.append(msgspec.structs.replace(reject, recv_ns=now))
            elif children != [order]:
                step.records += [ChildSent(parent=order, order=c) for c in children]
            step.wire += [SendWire(order=c) for c in children]
        for action in actions:
            if not isinstance(action, SendOrder):
                self._act(step, trade, action, now)
        for order, denial in denied:
            self._deny(step, trade, order, denial, now)
        for reject in unplaced:
            self._apply_report(step, trade, reject, now)
        self._settle(step, trade, now)

    def _act(self, step: _Step, trade: PairTrade, action: Action, now: int) -> None:
        """Every action but SendOrder (`_run` sends those)."""
        if isinstance(action, CancelOrder):
            step.wire += [CancelWire(req=c, trade_id=trade.trade_id) for c in self.router.cancel(action.cancel)]
        elif isinstance(action, QueryStatus):
            step.wire += [QueryWire(req=q, trade_id=trade.trade_id) for q in self.router.status(action.query)]
        elif isinstance(action, Transition):
            ev = action.event
            self._emit(step, ev)
            self._log("error" if ev.state is TradeState.BROKEN else "info", "trade_transition", trade_id=ev.trade_id,
                      pair=ev.pair, state=ev.state.value,
                      prev_state=ev.prev_state.value if ev.prev_state is not None else "", transition=ev.transition,
                      reason=ev.reason)
        elif isinstance(action, RaiseAlert):
            step.after.append(Publish(topic=topics.RISK_ALERT, msg=action.alert))
            self._log("error", "trade_alert", trade_id=action.alert.trade_id, code=action.alert.code,
                      text=action.alert.text)
        elif isinstance(action, RequestHalt):
            self._log("error", "halt_requested", trade_id=trade.trade_id, reason=action.reason)
            step.after.append(action)

    def _settle(self, step: _Step, trade: PairTrade, now: int) -> None:
        if trade.trade_id in self.open and trade.is_done:
            self.open.discard(trade.trade_id)
            step.records.append(TradeClosed(trade_id=trade.trade_id, state=trade.state.value, now_ns=now))
            self.done.append(trade.trade_id)
            while len(self.done) > KEEP_DONE:
                old = self.done.popleft()
                if old not in self.open:  # a late fill may have reopened it
                    gone = self.trades.pop(old, None)
                    self.book.forget_settled(old)
                    for view in gone.order_views() if gone is not None else ():
                        self._fill_avg.pop(view.cl_ord_id, None)
        elif trade.trade_id not in self.open and not trade.is_done:
            self.open.add(trade.trade_id)  # a late fill reopened a settled trade

    def _vet(self, trade: PairTrade, order: OrderRequest, now: int) -> tuple[OrderRequest, str | None]:
        """Pre-trade limits and, for a limit unwind, its price; (order as it will leave, denial or None)."""
        leg = next(l for l in trade.signal.legs if l.instrument == order.instrument)
        if order.purpose in (OrderPurpose.OPEN, OrderPurpose.RESUBMIT):
            inst = self.cfg.instruments[order.instrument]
            fx = self.fx.try_rate(inst.currency, self.cfg.run.base_currency)
            denial = self.limits.check(order, now, leg.limit_px, fx)
            if denial is not None:
                return order, denial
        else:
            self.limits.check(order, now, leg.limit_px, None)  # never blocks an unwind; counts in the rate window
            book = self.touch.get(order.instrument) if order.price is not None else None
            if book is not None:  # a limit unwind: `rollback_far_ticks` through the touch as it is now
                tick = self.cfg.instruments[order.instrument].tick
                price = marketable_limit(order.side, book[0], book[1], max(1, trade.params.rollback_far_ticks), tick)
                order = msgspec.structs.replace(order, price=price)
        return order, None

    def _deny(self, step: _Step, trade: PairTrade, order: OrderRequest, denial: str, now: int) -> None:
        """A denied order comes back to its trade as a venue-style REJECT (logged like any report)."""
        self.stats["denied"] += 1
        self._log("warning", "order_denied", trade_id=trade.trade_id, cl_ord_id=order.cl_ord_id, reason=denial)
        step.after.append(Publish(topic=topics.RISK_DENY, msg=Alert(
            severity=Severity.WARNING, code=denial.split(":")[0], text=denial, actor=self.actor,
            trade_id=trade.trade_id, ts_ns=now)))
        reject = OrderEvent(cl_ord_id=order.cl_ord_id, exec_type=ExecType.REJECT, venue=order.venue,
                            instrument=order.instrument, side=order.side, order_qty=order.qty, cum_qty=0,
                            leaves_qty=0, reason=denial, recv_ns=now)
        step.records.append(ReportApplied(trade_id=trade.trade_id, report=reject, now_ns=now))
        self._run(step, trade, trade.on_report(reject, now), now)

    def _alert(self, step: _Step, severity: Severity, text: str, trade_id: str, now: int) -> None:
        step.after.append(Publish(topic=topics.RISK_ALERT, msg=Alert(
            severity=severity, code=text.split(":")[0], text=text, actor=self.actor, trade_id=trade_id, ts_ns=now)))
        self._log("error", "exec_alert", trade_id=trade_id, text=text)

    # ---- keeping the hot path warm -------------------------------------------------------------

    def rehearse(self, now: int) -> None:
        """Between signals: the margin what-if verdicts an input change dropped are computed again,
        the entries are armed again if an input moved the generation, and an armed entry's path
        (one per call, in turn) runs without effects (no write, no send) so its code and data stay
        in the CPU caches between sparse signals (a cold executor takes several times longer to send);
        the log's next pages are faulted in (`WriteAheadLog.ready`)."""
        self.wal.ready()
        for inst, px in self._signal_px.items():
            self.whatif.on_price(inst, px)
        self._signal_px.clear()
        self.whatif.set_pending(self._pending_entries())
        self.whatif.prime(self.book, self.fx)
        self.arm(now)
        if self._armed:  # one entry per call, in turn: the code is the same for all of them
            self._rehearsals += 1
            entries = list(self._armed.values())
            armed = entries[self._rehearsals % len(entries)]
            sig = msgspec.structs.replace(armed.template.signal, expiry_ns=now + 10**9)
            if self._admits(armed, sig, now, ()):
                encode_frame(prepare(armed, sig, now, self.ids.peek(), len(self.stream) + 1)[0])


_PROBE_PX = 1e-9  # arming: a price every price-dependent check passes (band, notional)


def _divergence(written: list[WalRecord], made: list[WalRecord]) -> str:
    """Where an armed entry's records and the ordinary path's first differ."""
    for i, (w, m) in enumerate(zip(written, made)):
        if w != m:
            return f"EXEC_FAST_PATH_DIVERGED: record={i} written={w!r} ordinary={m!r}"
    return f"EXEC_FAST_PATH_DIVERGED: records written={len(written)} ordinary={len(made)}"
