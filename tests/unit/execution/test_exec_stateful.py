"""A pair trade against a venue that answers at random, then eventually behaves.

The venue acks, fills (partially), rejects, expires, loses orders and reports, answers
status queries and cancels, and delivers its reports in any order and sometimes twice;
time jumps fire timers; the executor may halt or crash and recover from its WAL at any step.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from exec_support import MS, T0, FakeVenue, Harness, VOrder, params, sends, signal
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from bus.messages import OrderEvent, TimeInForce
from execution.pairtrade import TradeState
from execution.wal import OrderSent, ReportApplied, Resumed, WriteAheadLog, recover

SETTLED_STATES = {TradeState.COMPLETED, TradeState.CANCELLED, TradeState.ROLLED_BACK}


class PairTradeVsVenue(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="xmc-wal-"))
        self.venue = FakeVenue()
        self.delivered: list[OrderEvent] = []
        self.now = T0
        self.halted = False
        self._seen: set[str] = set()
        self.h: Harness

    @initialize(
        mode=st.sampled_from(["both", "lead"]), lead=st.sampled_from(["a", "b"]),
        ratio_a=st.integers(1, 3), ratio_b=st.integers(1, 2), units=st.integers(1, 2),
        tif=st.sampled_from([TimeInForce.IOC, TimeInForce.DAY]), max_resubmits=st.integers(0, 3),
        payup=st.integers(0, 2), budget=st.integers(0, 5), rollback_attempts=st.integers(1, 3),
        halt_all=st.booleans(),
    )
    def open_trade(self, mode: str, lead: str, ratio_a: int, ratio_b: int, units: int, tif: TimeInForce,
                   max_resubmits: int, payup: int, budget: int, rollback_attempts: int, halt_all: bool) -> None:
        self.p = params(send_mode=mode, lead_leg=lead, ratio_a=ratio_a, ratio_b=ratio_b, entry_tif=tif,
                        max_resubmits=max_resubmits, payup_ticks=payup, slippage_budget_ticks=budget,
                        rollback_attempts=rollback_attempts, halt_unwinds_all=halt_all)
        self.targets = (ratio_a * units, ratio_b * units)
        sig = signal(qty_a=self.targets[0], qty_b=self.targets[1], expiry_ns=T0 + 10 * MS)
        self.h = Harness.open(self.dir / "exec.wal", "T000001", sig, self.p, self.now)
        self.venue.take(self.h.actions)

    # --- venue behaviour ---

    def _pick(self, items: list, i: int):  # type: ignore[no-untyped-def]
        return items[i % len(items)]

    @precondition(lambda self: any(not o.acked for o in self.venue.live()))
    @rule(i=st.integers(0, 10))
    def venue_acks(self, i: int) -> None:
        self.venue.ack(self._pick([o for o in self.venue.live() if not o.acked], i))

    @precondition(lambda self: self.venue.live())
    @rule(i=st.integers(0, 10), k=st.integers(1, 6), expire_rest=st.booleans())
    def venue_fills(self, i: int, k: int, expire_rest: bool) -> None:
        self.venue.fill(self._pick(self.venue.live(), i), k, expire_rest)

    @precondition(lambda self: any(o.cum == 0 for o in self.venue.live()))
    @rule(i=st.integers(0, 10))
    def venue_rejects(self, i: int) -> None:
        self.venue.reject(self._pick([o for o in self.venue.live() if o.cum == 0], i))

    @precondition(lambda self: self.venue.live())
    @rule(i=st.integers(0, 10))
    def venue_expires(self, i: int) -> None:
        self.venue.expire(self._pick(self.venue.live(), i))

    @precondition(lambda self: any(o.cum == 0 for o in self.venue.live()))
    @rule(i=st.integers(0, 10))
    def venue_rejects_at_once(self, i: int) -> None:
        self.venue.reject(self._pick([o for o in self.venue.live() if o.cum == 0], i))
        self._flush()

    @precondition(lambda self: self.venue.live())
    @rule(i=st.integers(0, 10), k=st.integers(1, 6))
    def venue_fills_at_once(self, i: int, k: int) -> None:
        self.venue.fill(self._pick(self.venue.live(), i), k, expire_rest=False)
        self._flush()

    @rule()
    def venue_will_lose_next_order(self) -> None:
        self.venue.drop_next = True

    @precondition(lambda self: self.venue.queries)
    @rule(i=st.integers(0, 10))
    def venue_answers_status(self, i: int) -> None:
        self.venue.answer_query(self.venue.queries.pop(i % len(self.venue.queries)))

    @precondition(lambda self: self.venue.cancels)
    @rule(i=st.integers(0, 10))
    def venue_processes_cancel(self, i: int) -> None:
        self.venue.process_cancel(self.venue.cancels.pop(i % len(self.venue.cancels)))

    @precondition(lambda self: self.venue.outbox)
    @rule(i=st.integers(0, 10))
    def report_delivered(self, i: int) -> None:
        ev = self.venue.outbox.pop(i % len(self.venue.outbox))
        self._deliver(ev)

    @precondition(lambda self: self.venue.outbox)
    @rule()
    def reports_flushed(self) -> None:
        self._flush()

    def _flush(self) -> None:
        while self.venue.outbox:
            self._deliver(self.venue.outbox.pop(0))

    @precondition(lambda self: self.venue.outbox)
    @rule(i=st.integers(0, 10))
    def report_lost(self, i: int) -> None:
        self.venue.outbox.pop(i % len(self.venue.outbox))

    @precondition(lambda self: self.delivered)
    @rule(i=st.integers(0, 30))
    def report_duplicated(self, i: int) -> None:
        self._deliver(self._pick(self.delivered, i))

    # --- executor side ---

    @rule(dt_ms=st.sampled_from([1, 50, 100, 400]))
    def time_passes(self, dt_ms: int) -> None:
        self.now += dt_ms * MS
        due = self.h.trade.next_deadline_ns()
        if due is not None and due <= self.now:
            self._fire_timer()

    def _fire_timer(self) -> None:
        self.venue.take(self.h.timer(self.now))
        # a due time the timer did not consume would leave the executor spinning without progress
        after = self.h.trade.next_deadline_ns()
        assert after is None or after > self.now, (self.h.trade.state, self.h.trade.order_views())

    @precondition(lambda self: not self.halted)
    @rule()
    def risk_halts(self) -> None:
        self.halted = True
        self.now += 1000
        self.venue.take(self.h.halt(self.now))

    @rule()
    def executor_crashes_between_inputs(self) -> None:
        self._recover(lost=[])

    @precondition(lambda self: self.venue.outbox)
    @rule(i=st.integers(0, 10), logged=st.booleans())
    def executor_crashes_while_handling_a_report(self, i: int, logged: bool) -> None:
        """The report is logged and applied; the process dies before (or after logging) its orders."""
        ev = self.venue.outbox.pop(i % len(self.venue.outbox))
        self.delivered.append(ev)
        self.now += 1000
        self.h.wal.append(ReportApplied(trade_id="T000001", report=ev, now_ns=self.now))
        lost = sends(self.h.trade.on_report(ev, self.now))
        if logged:  # OrderSent is on disk but the orders never left
            self.h.wal.append_many([OrderSent(order=o) for o in lost])
            for o in lost:
                self.venue.orders[o.cl_ord_id] = VOrder(o, received=False)
        self._recover(lost=[] if logged else lost)

    def _recover(self, lost: list) -> None:
        before = self.h.trade.snapshot()
        self.h.wal.close()
        state = recover(self.h.wal.path)
        assert state.scan.reason == ""
        assert [o.cl_ord_id for o in state.to_send] == [o.cl_ord_id for o in lost]
        self.h = Harness(self.h.trade, WriteAheadLog(self.h.wal.path))
        if "T000001" not in state.trades:
            assert self.h.trade.is_done
            return
        rebuilt = state.trades["T000001"]
        self._seen.add(f"recovered in {rebuilt.state.value}")
        assert rebuilt.snapshot() == before
        sent = {o.cl_ord_id for o in state.in_doubt}
        assert sent | {o.cl_ord_id for o in lost} == {o.cl_ord_id for o in rebuilt.live_orders()}
        self.now += 1000
        self.h.trade = rebuilt
        self.h.wal.append(Resumed(now_ns=self.now))
        self.venue.take(self.h._carry([a for _, a in state.resume(self.now)]))

    def _note(self) -> None:
        self._seen.add(f"seen {self.h.trade.state.value}")

    def _deliver(self, ev: OrderEvent) -> None:
        self.delivered.append(ev)
        self.now += 1000
        self.venue.take(self.h.report(ev, self.now))

    # --- invariants ---

    @invariant()
    def quantities_stay_within_target(self) -> None:
        self._note()
        for view, target in zip(self.h.trade.legs_view(), self.targets):
            pos = view.side.sign * view.net_qty
            assert 0 <= view.filled_qty <= target
            assert 0 <= pos <= target, (view, self.h.trade.state)

    @invariant()
    def fills_are_never_invented(self) -> None:
        for o in self.h.trade.order_views():
            assert o.filled_qty <= self.venue.orders[o.cl_ord_id].cum

    @invariant()
    def settled_trades_are_flat_or_in_ratio(self) -> None:
        t = self.h.trade
        if t.state not in SETTLED_STATES:
            return
        a, b = t.legs_view()
        pa, pb = a.side.sign * a.net_qty, b.side.sign * b.net_qty
        if t.state is TradeState.COMPLETED:
            assert pa > 0 and pa * self.p.b.ratio == pb * self.p.a.ratio
            assert (pa, pb) == (a.target_qty, b.target_qty)
        else:
            assert pa == pb == 0
        if t.state is TradeState.CANCELLED:
            assert a.filled_qty == b.filled_qty == 0

    def teardown(self) -> None:
        try:
            if hasattr(self, "h"):
                self._venue_behaves()
        finally:
            if hasattr(self, "h"):
                self.h.wal.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def _venue_behaves(self) -> None:
        """From now on every order is answered, filled and every report delivered."""
        v, t = self.venue, self.h.trade
        for _ in range(200):
            if t.is_done:
                break
            progressed = True
            while progressed:
                progressed = False
                while v.queries:
                    v.answer_query(v.queries.pop(0))
                while v.cancels:
                    v.process_cancel(v.cancels.pop(0))
                for o in v.live():
                    v.fill(o, o.req.qty, expire_rest=False)
                while v.outbox:
                    self._deliver(v.outbox.pop(0))
                    progressed = True
            due = t.next_deadline_ns()
            if due is not None:
                self.now = max(self.now + 1000, due)
                self._fire_timer()
        assert t.is_done, (t.state, t.order_views())
        event(f"final {t.state.value}")
        for e in self._seen:
            event(e)
        self.settled_trades_are_flat_or_in_ratio()
        self.quantities_stay_within_target()
        for o in t.order_views():  # no lost fill
            assert o.filled_qty == v.orders[o.cl_ord_id].cum, o
        final = recover(self.h.wal.path)
        assert final.trades == {} and final.closed == {"T000001": t.state.value}


PairTradeVsVenue.TestCase.settings = settings(
    max_examples=150, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_pair_trade_reaches_a_sound_terminal_state_against_a_random_venue = PairTradeVsVenue.TestCase
