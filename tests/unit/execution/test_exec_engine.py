"""The execution engine alone: signals, reports, timers, halts and restarts in; effects out.

No sockets: a small deterministic venue in this file takes the engine's venue requests and
answers them as hypothesis draws say (acks, partial and full fills, rejects, expiries, status
answers, ``ORDER_UNKNOWN`` for orders it never got, lost reports and lost orders), keeping a
drop copy of every fill. The engine writes a real write-ahead log under a temporary directory;
restarts reopen it and build a new engine from it.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from bus.messages import (ExecType, FxRate, OrderEvent, OrderPurpose, OrderRequest, PairTradeEvent, Positions,
                          RiskLevel, Side, Signal, SignalLeg, StreamEvent, TimeInForce, TradeState)
from configs.load import load_config
from configs.schema import Config
from execution.engine import WIRE, CancelWire, Effect, Emit, ExecutionEngine, Log, QueryWire, SendWire
from execution.positions import units_held
from execution.wal import (ChildSent, OrderSent, Streamed, TradeOpened, WalRecord, WriteAheadLog, encode_frame,
                           read_records)

DEMO = Path(__file__).resolve().parents[3] / "configs" / "demo.toml"
MS = 1_000_000
T0 = 1_000_000_000_000
REF_PX = {"au": 556.0, "GC": 2400.0, "HSI": 25000.0, "MHI": 25000.0}  # the signals' limits, the venue's fill prices
FX = (("USDCNH", 7.2), ("USDCNY", 7.2), ("USDHKD", 7.8))
PAIRS = ("au_gc", "hsi_mhi")


@lru_cache(maxsize=1)
def demo_config() -> Config:
    return load_config(DEMO)


@pytest.fixture(scope="module")
def demo() -> Config:
    return demo_config()


def make_signal(cfg: Config, pair: str, signal_id: str, now: int, *, direction: Side = Side.BUY, units: int = 1,
                closing: bool = False, qty: tuple[int, int] | None = None, expiry_ns: int | None = None) -> Signal:
    """A trigger signal for `units` ratio units of `pair` (BUY: buy leg A, sell leg B)."""
    pc = cfg.pairs[pair]
    qa, qb = qty if qty is not None else (units * pc.ratio_a, units * pc.ratio_b)
    return Signal(
        signal_id=signal_id, pair=pair, direction=direction, closing=closing,
        legs=(SignalLeg(instrument=pc.leg_a, side=direction, qty=qa, limit_px=REF_PX[pc.leg_a]),
              SignalLeg(instrument=pc.leg_b, side=direction.opposite, qty=qb, limit_px=REF_PX[pc.leg_b])),
        spread=1.0, zscore=2.5, expiry_ns=now + 500 * MS if expiry_ns is None else expiry_ns,
        tick_recv_ns=now - 5_000, signal_ns=now - 1_000)


# --- a deterministic venue -------------------------------------------------------------------


@dataclass
class VOrder:
    req: OrderRequest
    cum: int = 0
    alive: bool = True
    acked: bool = False

    @property
    def px(self) -> float:
        return self.req.price if self.req.price is not None else REF_PX[self.req.instrument]


@dataclass
class Venue:
    """The truth of every order that reached it; reports wait in `outbox` until delivered or lost.

    Pure and deterministic: it only does what it is told (by the test's draws). `drop_copy`
    holds every fill it made (instrument, side, qty), like a broker's drop copy.
    """

    orders: dict[str, VOrder] = field(default_factory=dict)
    meta: dict[str, OrderRequest] = field(default_factory=dict)  # every order seen on a wire, reached or not
    outbox: list[OrderEvent] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)
    drop_copy: list[tuple[str, Side, int]] = field(default_factory=list)
    lose_next_order: bool = False
    lost_orders: int = 0
    dropped_reports: int = 0
    n_exec: int = 0

    def take(self, effects: list[Effect]) -> None:
        """The engine's venue requests arrive (an order may be lost on the way if told so)."""
        for e in effects:
            if isinstance(e, SendWire):
                cid = e.order.cl_ord_id
                assert cid not in self.orders, f"VENUE_DUPLICATE_ORDER: cl_ord_id={cid}"
                self.meta[cid] = e.order
                if self.lose_next_order:
                    self.lose_next_order = False
                    self.lost_orders += 1
                else:
                    self.orders[cid] = VOrder(e.order)
            elif isinstance(e, CancelWire):
                self.cancels.append(e.req.cl_ord_id)
            elif isinstance(e, QueryWire):
                self.queries.append(e.req.cl_ord_id)

    def never_reached(self, effects: list[Effect]) -> None:
        """Requests the executor made but never carried out (it died first)."""
        for e in effects:
            if isinstance(e, SendWire):
                self.meta.setdefault(e.order.cl_ord_id, e.order)

    def live(self) -> list[VOrder]:
        return [o for o in self.orders.values() if o.alive]

    def net(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for inst, side, qty in self.drop_copy:
            out[inst] = out.get(inst, 0) + side.sign * qty
        return out

    def _emit(self, o: VOrder, et: ExecType, *, last: int = 0, reason: str = "", leaves: int | None = None) -> None:
        self.n_exec += 1
        self.outbox.append(OrderEvent(
            cl_ord_id=o.req.cl_ord_id, exec_type=et, venue=o.req.venue, instrument=o.req.instrument,
            side=o.req.side, order_qty=o.req.qty, cum_qty=o.cum,
            leaves_qty=(o.req.qty - o.cum if o.alive else 0) if leaves is None else leaves,
            last_qty=last, last_px=o.px if last else 0.0, avg_px=o.px if o.cum else 0.0,
            exec_id=f"v{self.n_exec}", venue_order_id=f"V-{o.req.cl_ord_id}", reason=reason))

    def _unknown(self, cid: str, et: ExecType) -> None:
        self.n_exec += 1
        req = self.meta.get(cid)
        self.outbox.append(OrderEvent(
            cl_ord_id=cid, exec_type=et, venue=req.venue if req else "", instrument=req.instrument if req else "",
            side=req.side if req else Side.BUY, order_qty=req.qty if req else 0, cum_qty=0, leaves_qty=0,
            exec_id=f"v{self.n_exec}", reason=f"ORDER_UNKNOWN: cl_ord_id={cid}"))

    def ack(self, o: VOrder) -> None:
        o.acked = True
        self._emit(o, ExecType.ACK)

    def fill(self, o: VOrder, k: int, expire_rest: bool = False) -> None:
        """Fill `k` lots (at most what is left); an IOC remainder (or any, if told) expires."""
        k = max(1, min(k, o.req.qty - o.cum))
        o.cum += k
        self.drop_copy.append((o.req.instrument, o.req.side, k))
        if o.cum >= o.req.qty:
            o.alive = False
        self._emit(o, ExecType.FILL, last=k)
        if o.alive and (expire_rest or o.req.tif is TimeInForce.IOC):
            self.expire(o)

    def reject(self, o: VOrder) -> None:
        o.alive = False
        self._emit(o, ExecType.REJECT, reason="VENUE_REJECT: why=test")

    def expire(self, o: VOrder) -> None:
        o.alive = False
        self._emit(o, ExecType.CANCELLED)

    def answer_query(self, cid: str) -> None:
        o = self.orders.get(cid)
        if o is None:
            self._unknown(cid, ExecType.REJECT)
        else:
            self._emit(o, ExecType.STATUS)

    def process_cancel(self, cid: str) -> None:
        o = self.orders.get(cid)
        if o is None:
            self._unknown(cid, ExecType.CANCEL_REJECT)
        elif o.alive:
            o.alive = False
            self._emit(o, ExecType.CANCELLED)
        else:
            self._emit(o, ExecType.CANCEL_REJECT, reason="CANCEL_TOO_LATE: done=1", leaves=0)

    def work_everything(self) -> None:
        """Answer every query and cancel, fill every live order in full."""
        while self.queries:
            self.answer_query(self.queries.pop(0))
        while self.cancels:
            self.process_cancel(self.cancels.pop(0))
        for o in self.live():
            self.fill(o, o.req.qty - o.cum)


# --- checks on the engine --------------------------------------------------------------------


def wire_first(effects: list[Effect], logs_last: bool = True) -> bool:
    """Venue requests before every stream event, bus message and halt request; log lines last."""
    ranks = [0 if isinstance(e, WIRE) else 2 if isinstance(e, Log) and logs_last else 1 for e in effects]
    return ranks == sorted(ranks)


def acts(effects: list[Effect]) -> list[Effect]:
    """The effects that do something (log lines left out)."""
    return [e for e in effects if not isinstance(e, Log)]


def stream_fills(stream: list[StreamEvent]) -> dict[str, int]:
    out: dict[str, int] = {}
    for ev in stream:
        b = ev.body
        if isinstance(b, OrderEvent):
            assert b.exec_type is ExecType.FILL and b.last_qty > 0, b
            out[b.instrument] = out.get(b.instrument, 0) + b.side.sign * b.last_qty
    return out


def last_trade_events(stream: list[StreamEvent]) -> dict[str, PairTradeEvent]:
    out: dict[str, PairTradeEvent] = {}
    for ev in stream:
        if isinstance(ev.body, PairTradeEvent) and ev.body.trade_id:
            out[ev.body.trade_id] = ev.body
    return out


def units_from_stream(cfg: Config, stream: list[StreamEvent]) -> dict[str, int]:
    """Ratio units per pair, worked out from the trade events alone (last event of each trade)."""
    out = {p: 0 for p in cfg.pairs}
    for ev in last_trade_events(stream).values():
        if ev.state.terminal:
            pc = cfg.pairs[ev.pair]
            out[ev.pair] += units_held(ev, pc.ratio_a, pc.ratio_b)
    return out


def assert_book_consistent(cfg: Config, eng: ExecutionEngine) -> None:
    """(a) positions are the stream's fills, (b) units the stream's trades, (c) the limits read them,
    (d) the stream is 1..head."""
    stream = eng.stream
    # (d) the stream is numbered 1..head, and `since` pages it
    assert [ev.seq for ev in stream] == list(range(1, eng.head + 1))
    for n in sorted({-1, 0, 1, eng.head // 2, max(0, eng.head - 1), eng.head, eng.head + 3}):
        got = eng.since(n)
        assert list(got) == stream[max(0, n):]
        assert [ev.seq for ev in got] == list(range(max(0, n) + 1, eng.head + 1))
    # (a) lots per instrument are the signed sum of the stream's fills
    fills = stream_fills(stream)
    for inst in REF_PX:
        assert eng.book.position(inst) == fills.get(inst, 0), inst
    # (b) units per pair are what the trades' last events hold, and what the last Positions says
    units = units_from_stream(cfg, stream)
    for pair in cfg.pairs:
        assert eng.book.units(pair) == units[pair], (pair, units)
    view = eng.book.view()
    last_pos = next((ev.body for ev in reversed(stream) if isinstance(ev.body, Positions)), None)
    if last_pos is not None:
        assert last_pos == view
    else:
        assert all(p.units == 0 for p in view.pairs) and all(i.qty == 0 for i in view.instruments)
    # (c) the limits judge with the same book
    assert eng.limits.book is eng.book
    cap = cfg.risk.limits.max_pair_position
    for pair in cfg.pairs:
        u = units[pair]
        for delta in (-cap - 1, -1, 0, 1, cap - u, cap - u + 1, -cap - u - 1):
            after = u + delta
            denied = abs(after) > cap and abs(after) > abs(u)
            assert (eng.limits.check_pair(pair, delta) is not None) == denied, (pair, u, delta)


def assert_replays(cfg: Config, path: Path, eng: ExecutionEngine) -> None:
    """(e) a fresh engine on a copy of the log (no resume: the log has one writer) holds the same state."""
    copy = path.with_name(path.name + ".replay")
    shutil.copyfile(path, copy)
    with WriteAheadLog(copy) as wal:
        assert wal.scan.reason == ""
        fresh = ExecutionEngine(cfg, wal, params=eng.params)
        assert fresh.book.view() == eng.book.view()
        assert fresh.stream == eng.stream
        assert fresh.open == eng.open
        for tid in eng.open:
            assert fresh.trades[tid].snapshot() == eng.trades[tid].snapshot(), tid


def assert_logged_before_return(path: Path, effects: list[Effect], eng: ExecutionEngine) -> list[WalRecord]:
    """Every order handed out is in the log as sent, and the log holds the whole stream."""
    recs, scan = read_records(path)
    assert scan.reason == ""
    sent = [r.order for r in recs if isinstance(r, (OrderSent, ChildSent))]
    for e in effects:
        if isinstance(e, SendWire):
            assert e.order in sent, e.order.cl_ord_id
    assert [r.event for r in recs if isinstance(r, Streamed)] == eng.stream
    return recs


# --- the property: any sequence of inputs ----------------------------------------------------


class EngineVsVenue(RuleBasedStateMachine):
    """The engine against the venue above, with time, halts, risk levels and restarts."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg = demo_config()
        self.dir = Path(tempfile.mkdtemp(prefix="xmc-engine-"))
        self.path = self.dir / "exec.wal"
        self.venue = Venue()
        self.now = T0
        self.level = RiskLevel.NORMAL
        self.n_signals = 0
        self.last_signal: Signal | None = None
        self.delivered: list[OrderEvent] = []
        self.writes = 0
        self.restarts = 0
        self.timer_groups = 0  # timer calls with several trades due at once
        self.eng = self._open_engine()

    # --- plumbing ---

    def _open_engine(self) -> ExecutionEngine:
        self.wal = WriteAheadLog(self.path)
        write = self.wal._write

        def counted(*parts: bytes) -> None:
            self.writes += 1
            write(*parts)

        self.wal._write = counted  # type: ignore[method-assign]
        eng = ExecutionEngine(self.cfg, self.wal)
        eng.level = self.level
        for pair, mid in FX:
            eng.on_fx(FxRate(pair=pair, bid=mid, ask=mid, exch_ts_ns=0, recv_ns=self.now))
        return eng

    def _tick(self) -> int:
        self.now += 1_000
        return self.now

    def _call(self, effects_of, *, max_writes: int = 1, carry: bool = True) -> list[Effect]:
        head, writes = self.eng.head, self.writes
        effects = effects_of()
        assert self.writes - writes <= max_writes, "one write per input"
        # several trades due at one timer: see test_engine_timer_with_two_trades_due_returns_log_lines_last
        assert wire_first(effects, logs_last=max_writes <= 1), [type(e).__name__ for e in effects]
        # every event the input made is emitted (and only those), in seq order
        assert [e.event for e in effects if isinstance(e, Emit)] == self.eng.stream[head:]
        assert_logged_before_return(self.path, effects, self.eng)
        if self.writes == writes:
            assert not [e for e in effects if isinstance(e, (SendWire, Emit))]
        if carry:
            self.venue.take(effects)
        else:
            self.venue.never_reached(effects)
        return effects

    def _deliver(self, ev: OrderEvent, carry: bool = True) -> None:
        self.delivered.append(ev)
        now = self._tick()
        ev = msgspec.structs.replace(ev, recv_ns=now)
        self._call(lambda: self.eng.on_report(ev, now), carry=carry)

    def _timer(self) -> None:
        eng, now = self.eng, self.now
        due = [t for t in eng.open if (d := eng.trades[t].next_deadline_ns()) is not None and d <= now]
        if len(due) > 1:
            self.timer_groups += 1
        self._call(lambda: eng.on_timer(now), max_writes=len(due))
        after = eng.next_deadline()
        assert after is None or after > now, "a due timer the engine did not consume"

    def _restart(self) -> None:
        self.wal.close()
        head = self.eng.head
        self.eng = self._open_engine()
        assert self.eng.head == head
        self.restarts += 1
        now = self._tick()
        effects = self._call(lambda: self.eng.resume(now))
        emitted = [e.event.seq for e in effects if isinstance(e, Emit)]
        assert emitted == list(range(head + 1, head + 1 + len(emitted)))

    # --- signals and the executor's other inputs ---

    @initialize(au=st.integers(0, 3), hsi=st.integers(0, 3), au_dir=st.sampled_from(Side),
                hsi_dir=st.sampled_from(Side))
    def trades_open(self, au: int, hsi: int, au_dir: Side, hsi_dir: Side) -> None:
        """Most runs start with a trade on each pair (0: none), so there is something to break."""
        for pair, units, direction in (("au_gc", au, au_dir), ("hsi_mhi", hsi, hsi_dir)):
            if units:
                self._signal(make_signal(self.cfg, pair, self._signal_id(), self.now, direction=direction,
                                         units=units))

    @rule(pair=st.sampled_from(PAIRS), direction=st.sampled_from(Side), units=st.integers(1, 3),
          closing=st.booleans(),
          kind=st.sampled_from(["fresh", "fresh", "fresh", "fresh", "repeat", "expired", "bad_ratio", "venue_down"]),
          armed=st.booleans())
    def signal_arrives(self, pair: str, direction: Side, units: int, closing: bool, kind: str, armed: bool) -> None:
        """`armed`: the executor armed its entries after the last input (as the actor does)."""
        now = self._tick()
        if armed:
            self.eng.arm(now)
        if kind == "repeat" and self.last_signal is not None:
            sig = msgspec.structs.replace(self.last_signal, expiry_ns=now + 500 * MS)
        else:
            pc = self.cfg.pairs[pair]
            qty = (units * pc.ratio_a + 1, units * pc.ratio_b) if kind == "bad_ratio" else None
            expiry = now - 1 if kind == "expired" else None
            sig = make_signal(self.cfg, pair, self._signal_id(), now, direction=direction, units=units,
                              closing=closing, qty=qty, expiry_ns=expiry)
        down = (self.cfg.instruments[sig.legs[1].instrument].venue,) if kind == "venue_down" else ()
        self._signal(sig, down)

    def _signal_sent_early(self, sig: Signal, now: int, down: tuple[str, ...]) -> list[Effect]:
        """`on_signal` as the actor calls it: the venue requests handed over first, when logged."""
        sent: list[Effect] = []

        def send(wire: list[Effect]) -> None:
            logged = [r.order for r in read_records(self.path)[0] if isinstance(r, (OrderSent, ChildSent))]
            assert all(e.order in logged for e in wire if isinstance(e, SendWire)), "an order out before its record"
            sent.extend(wire)

        rest = self.eng.on_signal(sig, now, down, send=send)
        return sent + rest

    def _signal_id(self) -> str:
        self.n_signals += 1
        return f"sig-{self.n_signals}"

    def _signal(self, sig: Signal, down: tuple[str, ...] = ()) -> None:
        now = self.now
        seen = sig.signal_id in self.eng.signal_seen
        writes, head = self.writes, self.eng.head
        armed_before = self.eng.stats["armed_sent"]
        effects = self._call(lambda: self._signal_sent_early(sig, now, down))
        new = self.eng.stream[head:]
        if self.eng.stats["armed_sent"] > armed_before:
            event("signal sent from its armed entry")
        if seen:  # a repeat is traded once: nothing happens, nothing is written
            assert acts(effects) == [] and self.writes == writes and not new
        elif isinstance(new[0].body, PairTradeEvent) and new[0].body.state is TradeState.REJECTED:
            # a refusal: one event, in one write, and nothing else
            assert acts(effects) == [Emit(event=new[0])] and self.writes == writes + 1
            assert new[0].body.trade_id == "" and new[0].body.signal_id == sig.signal_id
            event(f"signal refused {new[0].body.reason.split(':')[0]}")
        else:
            event("signal opened a trade")
        self.last_signal = sig

    @rule(dt_ms=st.sampled_from([1, 60, 250, 400, 900]))
    def time_passes(self, dt_ms: int) -> None:
        self.now += dt_ms * MS
        due = self.eng.next_deadline()
        if due is not None and due <= self.now:
            self._timer()

    @rule()
    def risk_halts(self) -> None:
        now = self._tick()
        self._call(lambda: self.eng.halt(now, "RISK_HALTED: test=1"))

    @rule(level=st.sampled_from([RiskLevel.NORMAL, RiskLevel.NORMAL, RiskLevel.WARN, RiskLevel.REDUCE_ONLY,
                                 RiskLevel.HALTED]))
    def risk_level_changes(self, level: RiskLevel) -> None:
        self.level = self.eng.level = level

    @rule(venue=st.sampled_from(["SHFE", "COMEX", "HKEX"]))
    def session_logs_on(self, venue: str) -> None:
        now = self._tick()
        self._call(lambda: self.eng.query_in_doubt(venue, now))

    @rule()
    def executor_arms_its_entries(self) -> None:
        """The executor's rehearsal between inputs: what-if primed, entries armed, their path run dry."""
        head, writes = self.eng.head, self.writes
        self.eng.rehearse(self.now)
        assert self.eng.head == head and self.writes == writes, "a rehearsal changes nothing"

    @rule()
    def executor_restarts(self) -> None:
        self._restart()

    @rule(what=st.sampled_from(["report", "timer", "halt", "signal"]), i=st.integers(0, 20),
          pair=st.sampled_from(PAIRS))
    def executor_dies_after_logging_an_input(self, what: str, i: int, pair: str) -> None:
        """The input is handled and logged; the process dies before carrying out any effect."""
        now = self._tick()
        if what == "report" and self.venue.outbox:
            self._deliver(self.venue.outbox.pop(i % len(self.venue.outbox)), carry=False)
        elif what == "timer":
            self.now = now = max(now, self.eng.next_deadline() or now)
            self._call(lambda: self.eng.on_timer(now), max_writes=len(self.eng.open), carry=False)
        elif what == "halt":
            self._call(lambda: self.eng.halt(now, "RISK_HALTED: test=1"), carry=False)
        else:
            sig = make_signal(self.cfg, pair, self._signal_id(), now, units=1 + i % 3)
            if i % 2:
                self.eng.arm(now)  # the entry may go out from its armed entry
            self._call(lambda: self.eng.on_signal(sig, now), carry=False)
        self._restart()

    # --- the venue ---

    def _pick(self, items: list, i: int):  # type: ignore[no-untyped-def]
        return items[i % len(items)]

    @precondition(lambda self: any(not o.acked for o in self.venue.live()))
    @rule(i=st.integers(0, 20))
    def venue_acks(self, i: int) -> None:
        self.venue.ack(self._pick([o for o in self.venue.live() if not o.acked], i))

    @precondition(lambda self: self.venue.live())
    @rule(i=st.integers(0, 20), k=st.integers(1, 6), expire_rest=st.booleans())
    def venue_fills(self, i: int, k: int, expire_rest: bool) -> None:
        self.venue.fill(self._pick(self.venue.live(), i), k, expire_rest)

    @precondition(lambda self: any(o.cum == 0 for o in self.venue.live()))
    @rule(i=st.integers(0, 20))
    def venue_rejects(self, i: int) -> None:
        self.venue.reject(self._pick([o for o in self.venue.live() if o.cum == 0], i))

    @precondition(lambda self: self.venue.live())
    @rule(i=st.integers(0, 20))
    def venue_expires(self, i: int) -> None:
        self.venue.expire(self._pick(self.venue.live(), i))

    @rule()
    def venue_will_lose_next_order(self) -> None:
        self.venue.lose_next_order = True

    @precondition(lambda self: self.venue.queries)
    @rule(i=st.integers(0, 20))
    def venue_answers_status(self, i: int) -> None:
        self.venue.answer_query(self.venue.queries.pop(i % len(self.venue.queries)))

    @precondition(lambda self: self.venue.cancels)
    @rule(i=st.integers(0, 20))
    def venue_processes_cancel(self, i: int) -> None:
        self.venue.process_cancel(self.venue.cancels.pop(i % len(self.venue.cancels)))

    @rule()
    def venue_works_everything_and_reports(self) -> None:
        self.venue.work_everything()
        self._flush()

    @precondition(lambda self: self.venue.outbox)
    @rule(i=st.integers(0, 20))
    def report_delivered(self, i: int) -> None:
        self._deliver(self.venue.outbox.pop(i % len(self.venue.outbox)))

    @precondition(lambda self: self.venue.outbox)
    @rule()
    def reports_flushed(self) -> None:
        self._flush()

    @precondition(lambda self: self.venue.outbox)
    @rule(i=st.integers(0, 20))
    def report_lost(self, i: int) -> None:
        self.venue.outbox.pop(i % len(self.venue.outbox))
        self.venue.dropped_reports += 1

    @precondition(lambda self: self.delivered)
    @rule(i=st.integers(0, 50))
    def report_duplicated(self, i: int) -> None:
        self._deliver(self._pick(self.delivered, i))

    def _flush(self) -> None:
        while self.venue.outbox:
            self._deliver(self.venue.outbox.pop(0))

    # --- invariants ---

    @invariant()
    def book_stream_and_limits_agree(self) -> None:
        assert_book_consistent(self.cfg, self.eng)

    @invariant()
    def positions_match_the_drop_copy_when_every_report_arrived(self) -> None:
        if self.venue.dropped_reports or self.venue.outbox:
            return
        net = self.venue.net()
        for inst in REF_PX:
            assert self.eng.book.position(inst) == net.get(inst, 0), (inst, net)

    @invariant()
    def log_replays_to_the_same_state(self) -> None:
        assert_replays(self.cfg, self.path, self.eng)

    # --- the end: the venue behaves until every trade settles ---

    def teardown(self) -> None:
        try:
            self._settle()
        finally:
            self.wal.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def _settle(self) -> None:
        v, eng = self.venue, self.eng
        for _ in range(300):
            if not eng.open and not v.outbox and not v.queries and not v.cancels:
                break
            v.work_everything()
            if v.outbox:
                self._flush()
                continue
            due = eng.next_deadline()
            assert due is not None or not eng.open, ("open trades wait on nothing", sorted(eng.open))
            if due is not None:
                self.now = max(self.now + 1_000, due)
                self._timer()
        assert not eng.open, [(t, eng.trades[t].state, eng.trades[t].order_views()) for t in sorted(eng.open)]
        # (a) exact: every fill the venue made is in the book, once
        net = v.net()
        for inst in REF_PX:
            assert eng.book.position(inst) == net.get(inst, 0), (inst, net, stream_fills(eng.stream))
        assert_book_consistent(self.cfg, eng)
        assert_replays(self.cfg, self.path, eng)
        # every settled trade is flat or in ratio, and its legs are what the stream's fills hold
        held: dict[str, int] = {}
        for ev in last_trade_events(eng.stream).values():
            pc = self.cfg.pairs[ev.pair]
            a, b = ev.legs
            assert ev.state in (TradeState.COMPLETED, TradeState.CANCELLED, TradeState.ROLLED_BACK), ev
            if ev.state is TradeState.COMPLETED:
                assert a.net_qty * b.net_qty < 0 and abs(a.net_qty) * pc.ratio_b == abs(b.net_qty) * pc.ratio_a
            else:
                assert a.net_qty == b.net_qty == 0
            for leg in ev.legs:
                held[leg.instrument] = held.get(leg.instrument, 0) + leg.net_qty
        for inst in REF_PX:
            assert held.get(inst, 0) == net.get(inst, 0), (inst, held, net)
        for state in sorted({ev.state.value for ev in last_trade_events(eng.stream).values()}):
            event(f"a trade ended {state}")
        if any(ev.transition == "late_fill_reopened" for ev in (e.body for e in eng.stream)
               if isinstance(ev, PairTradeEvent)):
            event("a late fill reopened a trade")
        event(f"restarts={min(self.restarts, 3)}")
        event(f"trades={min(len(last_trade_events(eng.stream)), 4)}")
        if self.timer_groups:
            event("several trades due at one timer")


EngineVsVenue.TestCase.settings = settings(
    max_examples=60, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_engine_any_input_sequence_keeps_book_stream_limits_and_log_in_agreement = EngineVsVenue.TestCase


# --- plain unit tests ------------------------------------------------------------------------


@dataclass
class Rig:
    """One engine over a log file, the venue, and the adapter's side of the effects."""

    cfg: Config
    path: Path
    venue: Venue = field(default_factory=Venue)
    now: int = T0
    n: int = 0

    def __post_init__(self) -> None:
        self.open()

    def open(self) -> None:
        self.wal = WriteAheadLog(self.path)
        self.eng = ExecutionEngine(self.cfg, self.wal)
        for pair, mid in FX:
            self.eng.on_fx(FxRate(pair=pair, bid=mid, ask=mid, exch_ts_ns=0, recv_ns=0))

    def restart(self) -> list[Effect]:
        self.wal.close()
        self.open()
        self.now += MS
        return self.carry(self.eng.resume(self.now))

    def carry(self, effects: list[Effect]) -> list[Effect]:
        assert wire_first(effects), [type(e).__name__ for e in effects]
        assert_logged_before_return(self.path, effects, self.eng)
        self.venue.take(effects)
        return effects

    def signal(self, pair: str, units: int = 1, **kw: object) -> list[Effect]:
        self.n += 1
        self.now += MS
        sig = make_signal(self.cfg, pair, f"sig-{self.n}", self.now, units=units, **kw)  # type: ignore[arg-type]
        return self.carry(self.eng.on_signal(sig, self.now))

    def flush(self) -> None:
        while self.venue.outbox:
            self.now += 1_000
            ev = self.venue.outbox.pop(0)
            self.carry(self.eng.on_report(msgspec.structs.replace(ev, recv_ns=self.now), self.now))

    def orders(self, prefix: str) -> list[VOrder]:
        return [o for cid, o in self.venue.orders.items() if cid.startswith(prefix) and o.alive]

    def trade_events(self) -> list[PairTradeEvent]:
        return [ev.body for ev in self.eng.stream if isinstance(ev.body, PairTradeEvent)]


@pytest.fixture
def rig(demo: Config, tmp_path: Path):  # type: ignore[no-untyped-def]
    r = Rig(demo, tmp_path / "exec.wal")
    yield r
    r.wal.close()


def test_engine_ratio_3_to_1_trade_for_2_units_completing_with_1_books_1_unit(rig: Rig) -> None:
    effects = rig.signal("au_gc", units=2)  # au 6 (split over cn-a / cn-b), GC 2
    assert sorted((e.order.instrument, e.order.qty) for e in effects if isinstance(e, SendWire)) == \
        [("GC", 2), ("au", 3), ("au", 3)]
    a1 = rig.orders("T000001.a1/")
    rig.venue.fill(a1[0], 3)  # one child fills, the other's IOC expires: au holds 3 of 6
    rig.venue.expire(a1[1])
    rig.venue.fill(rig.orders("T000001.b1")[0], 2)  # GC fills in full
    rig.flush()
    for _ in range(10):  # every au resubmit is rejected until the trade gives up and rolls back
        live = [o for o in rig.venue.live() if o.req.instrument == "au"]
        if not live:
            break
        for o in live:
            rig.venue.reject(o)
        rig.flush()
    unwind = [o for o in rig.venue.live() if o.req.purpose is OrderPurpose.ROLLBACK]
    assert [(o.req.instrument, o.req.side, o.req.qty) for o in unwind] == [("GC", Side.BUY, 1)]
    rig.venue.fill(unwind[0], 1)
    rig.flush()

    final = rig.trade_events()[-1]
    assert (final.state, final.transition) == (TradeState.COMPLETED, "completed_partial")
    assert rig.eng.book.units("au_gc") == 1  # not the 2 the signal asked for
    assert (rig.eng.book.position("au"), rig.eng.book.position("GC")) == (3, -1)
    last_pos = [ev.body for ev in rig.eng.stream if isinstance(ev.body, Positions)][-1]
    assert [(p.pair, p.units) for p in last_pos.pairs] == [("au_gc", 1)]
    cap = rig.cfg.risk.limits.max_pair_position
    assert rig.eng.limits.check_pair("au_gc", cap - 1) is None
    denial = rig.eng.limits.check_pair("au_gc", cap)
    assert denial is not None and "units=1 " in denial
    assert not rig.eng.open
    assert_replays(rig.cfg, rig.path, rig.eng)


@pytest.mark.parametrize("why", ["EXEC_PAIR_BUSY", "RISK_STATE", "SIGNAL_EXPIRED", "SIGNAL_RATIO"])
def test_engine_refused_signal_emits_one_rejected_event_in_one_streamed_record(rig: Rig, why: str) -> None:
    if why == "EXEC_PAIR_BUSY":
        rig.signal("hsi_mhi")
    elif why == "RISK_STATE":
        rig.eng.level = RiskLevel.REDUCE_ONLY
    before, _ = read_records(rig.path)
    head = rig.eng.head
    rig.now += MS
    kw: dict[str, object] = {"expiry_ns": rig.now - 1} if why == "SIGNAL_EXPIRED" else {}
    if why == "SIGNAL_RATIO":
        kw["qty"] = (1, 4)
    sig = make_signal(rig.cfg, "hsi_mhi", "sig-refused", rig.now, **kw)  # type: ignore[arg-type]
    effects = rig.eng.on_signal(sig, rig.now)

    after, _ = read_records(rig.path)
    new = after[len(before):]
    assert len(new) == 1 and isinstance(new[0], Streamed)
    assert rig.eng.head == head + 1 and new[0].event == rig.eng.stream[-1]
    assert acts(effects) == [Emit(event=new[0].event)]
    body = new[0].event.body
    assert isinstance(body, PairTradeEvent)
    assert (body.state, body.trade_id, body.signal_id) == (TradeState.REJECTED, "", "sig-refused")
    assert body.reason.startswith(why), body.reason
    assert rig.eng.book.units("hsi_mhi") == 0


def test_engine_closing_signal_in_reduce_only_is_traded(rig: Rig) -> None:
    rig.eng.level = RiskLevel.REDUCE_ONLY
    effects = rig.signal("hsi_mhi", closing=True)
    assert sum(isinstance(e, SendWire) for e in effects) == 2


def test_engine_repeated_signal_is_traded_once_and_writes_nothing(rig: Rig) -> None:
    rig.signal("hsi_mhi")
    end = rig.wal.end
    sig = make_signal(rig.cfg, "hsi_mhi", "sig-1", rig.now)
    assert acts(rig.eng.on_signal(sig, rig.now + 1)) == []
    assert rig.wal.end == end


def test_engine_signal_logs_every_order_before_returning_its_effects(rig: Rig) -> None:
    head = rig.eng.head
    rig.now += MS
    sig = make_signal(rig.cfg, "au_gc", "sig-x", rig.now, units=2)
    effects = rig.eng.on_signal(sig, rig.now)
    recs, _ = read_records(rig.path)  # right after the call, before anything is carried out
    wires = [e.order for e in effects if isinstance(e, SendWire)]
    assert len(wires) == 3
    assert isinstance(recs[0], TradeOpened)
    logged = [r.order for r in recs if isinstance(r, (OrderSent, ChildSent))]
    assert all(o in logged for o in wires)
    parents = [r.order.cl_ord_id for r in recs if isinstance(r, OrderSent)]
    assert parents == ["T000001.a1", "T000001.b1"]
    assert [r.event for r in recs if isinstance(r, Streamed)] == list(rig.eng.since(head))
    assert wire_first(effects)


def test_engine_resubmit_after_a_report_is_logged_before_its_effects_return(rig: Rig) -> None:
    rig.signal("hsi_mhi")
    rig.venue.reject(rig.orders("T000001.a1")[0])
    ev = rig.venue.outbox.pop()
    rig.now += MS
    effects = rig.eng.on_report(ev, rig.now)
    recs, _ = read_records(rig.path)
    sent = [e.order for e in effects if isinstance(e, SendWire)]
    assert [o.cl_ord_id for o in sent] == ["T000001.a2"] and sent[0].purpose is OrderPurpose.RESUBMIT
    assert OrderSent(order=sent[0]) in recs
    assert wire_first(effects)


def test_engine_halt_with_both_pairs_open_returns_venue_requests_first(rig: Rig) -> None:
    rig.signal("au_gc")
    rig.signal("hsi_mhi")
    for o in rig.venue.live():
        rig.venue.ack(o)
    rig.venue.fill(rig.orders("T000002.a1")[0], 1)  # HSI filled, MHI still working
    rig.flush()
    rig.now += MS
    effects = rig.carry(rig.eng.halt(rig.now, "RISK_HALTED: test=1"))
    assert any(isinstance(e, CancelWire) for e in effects)
    unwinds = [e.order for e in effects if isinstance(e, SendWire)]
    assert [(o.instrument, o.side, o.purpose) for o in unwinds] == [("HSI", Side.SELL, OrderPurpose.ROLLBACK)]
    assert any(isinstance(e, Emit) for e in effects)
    assert wire_first(effects)


def test_engine_timer_with_two_trades_due_returns_venue_requests_first(rig: Rig) -> None:
    rig.signal("au_gc")
    rig.signal("hsi_mhi")  # no answers: both trades' orders time out together
    rig.now += 250 * MS  # every order's ack timeout, before the trades' deadline
    effects = rig.eng.on_timer(rig.now)
    asked = sorted(e.req.cl_ord_id for e in effects if isinstance(e, QueryWire))
    assert asked == ["T000001.a1/1", "T000001.a1/2", "T000001.b1", "T000002.a1", "T000002.b1"]
    assert wire_first(effects, logs_last=False), [type(e).__name__ for e in effects]


def test_engine_timer_with_two_trades_due_returns_log_lines_last(rig: Rig) -> None:
    rig.signal("au_gc")
    rig.signal("hsi_mhi")
    rig.now += 250 * MS
    effects = rig.eng.on_timer(rig.now)
    assert any(isinstance(e, Log) for e in effects)
    assert wire_first(effects), [type(e).__name__ for e in effects]


def test_engine_restart_mid_trade_queries_in_doubt_orders_and_stream_continues(rig: Rig) -> None:
    rig.signal("au_gc", units=2)
    a1 = rig.orders("T000001.a1/")
    rig.venue.ack(a1[0])
    rig.venue.fill(a1[1], 1, expire_rest=False)  # IOC: the rest of this child expires
    rig.flush()
    rig.venue.fill(a1[0], 3)  # filled at the venue while the executor is down (report lost)
    rig.venue.outbox.clear()
    head, book = rig.eng.head, rig.eng.book.view()

    effects = rig.restart()
    assert rig.eng.head > head
    assert rig.eng.book.view() == book  # rebuilt from the log's stream
    emitted = [e.event for e in effects if isinstance(e, Emit)]
    assert [ev.seq for ev in emitted] == list(range(head + 1, rig.eng.head + 1))
    assert isinstance(emitted[0].body, PairTradeEvent) and emitted[0].body.transition == "recovered"
    asked = sorted(e.req.cl_ord_id for e in effects if isinstance(e, QueryWire))
    assert asked == ["T000001.a1/1", "T000001.a1/2", "T000001.b1"]  # a split parent is asked child by child
    assert not [e for e in effects if isinstance(e, SendWire)]

    rig.venue.work_everything()  # status answers bring the lost fill back, then everything fills
    rig.flush()
    for _ in range(20):
        if not rig.eng.open:
            break
        rig.venue.work_everything()
        rig.flush()
        due = rig.eng.next_deadline()
        if due is not None and not rig.venue.outbox:
            rig.now = max(rig.now, due)
            rig.carry(rig.eng.on_timer(rig.now))
    assert not rig.eng.open
    net = rig.venue.net()
    assert (rig.eng.book.position("au"), rig.eng.book.position("GC")) == (net.get("au", 0), net.get("GC", 0))
    assert rig.eng.book.units("au_gc") == units_from_stream(rig.cfg, rig.eng.stream)["au_gc"]
    assert_replays(rig.cfg, rig.path, rig.eng)


def test_engine_restart_after_a_torn_write_sends_the_unsent_orders(rig: Rig) -> None:
    """The signal's write was cut after its TradeOpened frame: its orders never left (effects come
    after the write), so the restart sends them under the same ids."""
    size = rig.wal.end
    rig.now += MS
    sig = make_signal(rig.cfg, "hsi_mhi", "sig-torn", rig.now)
    effects = rig.eng.on_signal(sig, rig.now)  # crash: nothing is carried out
    first = read_records(rig.path)[0][0]
    assert isinstance(first, TradeOpened)
    rig.wal.close()
    with open(rig.path, "r+b") as fh:
        fh.truncate(size + len(encode_frame(first)) + 5)
    sent_before = sorted(e.order.cl_ord_id for e in effects if isinstance(e, SendWire))

    rig.open()
    assert rig.wal.scan.reason.startswith("WAL_TORN_TAIL")
    assert rig.eng.head == 0 and rig.eng.open == {"T000001"}  # the torn write's stream events never left
    rig.now += MS
    resumed = rig.carry(rig.eng.resume(rig.now))
    resent = sorted(e.order.cl_ord_id for e in resumed if isinstance(e, SendWire))
    assert resent == sent_before == ["T000001.a1", "T000001.b1"]
    assert [e.event.seq for e in resumed if isinstance(e, Emit)][:1] == [1]
    rig.venue.work_everything()
    rig.flush()
    assert not rig.eng.open and rig.eng.book.units("hsi_mhi") == 1
    assert_book_consistent(rig.cfg, rig.eng)
    assert_replays(rig.cfg, rig.path, rig.eng)
