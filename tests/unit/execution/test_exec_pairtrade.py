"""Table-driven paths of the pair-trade state machine."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
import pytest
from exec_support import (
    MS,
    T0,
    ack,
    cancels,
    expired,
    fill,
    params,
    queries,
    reject,
    report,
    sends,
    signal,
    status,
    transitions,
    unknown,
)

from bus.messages import ExecType, OrderPurpose, OrderRequest, Severity, Side, TimeInForce
from execution.pairtrade import (
    TRANSITIONS,
    Action,
    PairTrade,
    RaiseAlert,
    RequestHalt,
    SignalInvalid,
    TradeState,
    Tr,
)

# A script step: (verb, order suffix or None, kwargs). Verbs: ack, fill, reject, expire,
# status, unknown, cancel_reject, timer (kwargs: at=ms after start), halt, dup (repeat the last
# report as is).


@dataclass
class Run:
    trade: PairTrade
    orders: dict[str, OrderRequest] = field(default_factory=dict)
    actions: list[Action] = field(default_factory=list)
    now: int = T0
    last_report: object = None

    def carry(self, acts: list[Action]) -> None:
        for o in sends(acts):
            self.orders[o.cl_ord_id.split(".")[1]] = o
        self.actions.extend(acts)

    @property
    def trs(self) -> list[str]:
        return transitions(self.actions)


def run(script: list[tuple], p: dict | None = None, s: dict | None = None) -> Run:
    trade = PairTrade("T000007", signal(**(s or {})), params(**(p or {})))
    r = Run(trade)
    r.carry(trade.start(T0))
    for verb, who, *rest in script:
        kw = rest[0] if rest else {}
        r.now += 1_000
        o = r.orders.get(who) if who else None
        if verb == "timer":
            r.now = T0 + kw["at"] * MS
            r.carry(trade.on_timer(r.now))
            continue
        if verb == "halt":
            r.carry(trade.halt(r.now))
            continue
        if verb == "dup":
            r.carry(trade.on_report(r.last_report, r.now))
            continue
        assert o is not None, f"no order {who}; have {sorted(r.orders)}"
        ev = {
            "ack": lambda: ack(o),
            "fill": lambda: fill(o, **kw),
            "reject": lambda: reject(o),
            "expire": lambda: expired(o, **kw),
            "status": lambda: status(o, **kw),
            "unknown": lambda: unknown(o),
            "cancel_reject": lambda: report(o, ExecType.CANCEL_REJECT, reason="CANCEL_TOO_LATE: state=FILLED"),
        }[verb]()
        r.last_report = ev
        r.carry(trade.on_report(ev, r.now))
    return r


@dataclass(frozen=True)
class Case:
    name: str
    script: list[tuple]
    state: TradeState
    trs: tuple[str, ...]  # these transitions, in this order (others may be interleaved)
    net: tuple[int, int]
    p: dict = field(default_factory=dict)
    s: dict = field(default_factory=dict)
    orders: tuple[str, ...] = ()  # every order the trade sent, by leg suffix


CASES = [
    Case("both_legs_fill_completes",
         [("fill", "a1"), ("fill", "b1")],
         TradeState.COMPLETED, ("both_legs_sent", "leg_a_filled", "both_legs_filled"), (1, -1),
         orders=("a1", "b1")),
    Case("leg_b_rejected_then_filled_on_resubmit_completes",
         [("fill", "a1"), ("reject", "b1"), ("fill", "b2")],
         TradeState.COMPLETED, ("leg_b_rejected_resubmit", "both_legs_filled"), (1, -1),
         orders=("a1", "b1", "b2")),
    Case("leg_b_rejected_until_budget_rolls_back_leg_a",
         [("fill", "a1"), ("reject", "b1"), ("reject", "b2"), ("reject", "b3"), ("fill", "a2")],
         TradeState.ROLLED_BACK,
         ("leg_b_rejected_resubmit", "leg_b_rejected_resubmit", "rollback_started", "rollback_order_sent",
          "rollback_filled"), (0, 0), orders=("a1", "a2", "b1", "b2", "b3")),
    Case("partial_fills_on_both_legs_resubmit_remainders_and_complete",
         [("fill", "a1", {"cum": 2, "leaves": 0}), ("expire", "b1", {"cum": 1}),
          ("fill", "a2"), ("fill", "b2")],
         TradeState.COMPLETED, ("leg_a_partial_resubmit", "leg_b_partial_resubmit", "both_legs_filled"), (3, -3),
         s={"qty_a": 3, "qty_b": 3}, orders=("a1", "a2", "b1", "b2")),
    Case("ack_timeout_puts_orders_in_doubt_and_status_filled_completes",
         [("timer", None, {"at": 100}), ("status", "a1", {"cum": 1, "leaves": 0}),
          ("status", "b1", {"cum": 1, "leaves": 0})],
         TradeState.COMPLETED, ("order_in_doubt", "order_in_doubt", "order_resolved", "both_legs_filled"), (1, -1),
         orders=("a1", "b1")),
    Case("ack_timeout_status_unknown_resubmits_the_leg",
         [("fill", "b1"), ("timer", None, {"at": 100}), ("unknown", "a1"), ("fill", "a2")],
         TradeState.COMPLETED, ("order_in_doubt", "order_resolved", "leg_a_unknown_resubmit", "both_legs_filled"),
         (1, -1), orders=("a1", "a2", "b1")),
    Case("in_doubt_order_status_live_then_filled_completes",
         [("fill", "b1"), ("timer", None, {"at": 100}), ("status", "a1", {"cum": 0, "leaves": 1}),
          ("fill", "a1")],
         TradeState.COMPLETED, ("order_in_doubt", "order_resolved", "both_legs_filled"), (1, -1),
         orders=("a1", "b1")),
    Case("rollback_order_rejected_is_retried_until_flat",
         [("fill", "a1"), ("reject", "b1"), ("reject", "b2"), ("reject", "b3"), ("reject", "a2"),
          ("fill", "a3")],
         TradeState.ROLLED_BACK, ("rollback_started", "rollback_order_sent", "rollback_order_sent", "rollback_filled"),
         (0, 0), orders=("a1", "a2", "a3", "b1", "b2", "b3")),
    Case("rollback_budget_exhausted_goes_broken_then_flattens_on_timer",
         [("fill", "a1"), ("reject", "b1"), ("reject", "b2"), ("reject", "b3"), ("reject", "a2"),
          ("reject", "a3"), ("reject", "a4"), ("timer", None, {"at": 300}), ("fill", "a5")],
         TradeState.ROLLED_BACK, ("rollback_started", "broken_rollback_exhausted", "broken_flatten_sent",
                                  "broken_flattened"), (0, 0)),
    Case("lead_mode_sends_hedge_after_lead_fills",
         [("fill", "b1"), ("fill", "a1")],
         TradeState.COMPLETED, ("lead_leg_sent", "hedge_leg_sent", "both_legs_filled"), (1, -1),
         p={"send_mode": "lead", "lead_leg": "b"}, orders=("a1", "b1")),
    Case("lead_mode_lead_rejected_to_budget_cancels_without_hedge",
         [("reject", "a1"), ("reject", "a2"), ("reject", "a3")],
         TradeState.CANCELLED, ("lead_leg_sent", "leg_a_rejected_resubmit", "cancelled_nothing_filled"), (0, 0),
         p={"send_mode": "lead"}, orders=("a1", "a2", "a3")),
    Case("lead_mode_hedge_exhausted_rolls_back_lead",
         [("fill", "a1"), ("reject", "b1"), ("reject", "b2"), ("reject", "b3"), ("fill", "a2")],
         TradeState.ROLLED_BACK, ("hedge_leg_sent", "rollback_started", "rollback_filled"), (0, 0),
         p={"send_mode": "lead"}),
    Case("halt_mid_trade_cancels_working_leg_and_rolls_back_filled_leg",
         [("fill", "a1"), ("ack", "b1"), ("halt", None), ("expire", "b1"), ("fill", "a2")],
         TradeState.ROLLED_BACK, ("halt_rollback_started", "rollback_order_sent", "rollback_filled"), (0, 0),
         p={"entry_tif": TimeInForce.DAY}),
    Case("halt_with_nothing_filled_cancels",
         [("ack", "a1"), ("ack", "b1"), ("halt", None), ("expire", "a1"), ("expire", "b1")],
         TradeState.CANCELLED, ("halt_rollback_started", "cancelled_nothing_filled"), (0, 0)),
    Case("duplicate_fill_report_is_counted_once",
         [("fill", "a1", {"cum": 1, "leaves": 1}), ("dup", None), ("fill", "a1", {"cum": 2, "leaves": 0}),
          ("status", "a1", {"cum": 2, "leaves": 0}), ("fill", "b1")],
         TradeState.COMPLETED, ("both_legs_filled",), (2, -2), s={"qty_a": 2, "qty_b": 2}),
    Case("deadline_with_nothing_filled_cancels",
         [("ack", "a1"), ("ack", "b1"), ("timer", None, {"at": 1000}), ("expire", "a1"), ("expire", "b1")],
         TradeState.CANCELLED, ("rollback_started", "cancelled_nothing_filled"), (0, 0),
         p={"entry_tif": TimeInForce.DAY, "order_timeout_ns": 5000 * MS}),
    Case("ratio_partial_keeps_completed_units_and_unwinds_the_excess",
         # 3:1, two units: A fills 4 of 6, B 2 of 2, A's remainder is rejected to the budget
         [("fill", "a1", {"cum": 4, "leaves": 0}), ("fill", "b1"), ("reject", "a2"), ("reject", "a3"),
          ("fill", "a4"), ("fill", "b2")],
         TradeState.COMPLETED, ("rollback_started", "rollback_order_sent", "rollback_order_sent", "completed_partial"),
         (3, -1), p={"ratio_a": 3}, s={"qty_a": 6, "qty_b": 2}),
    Case("ratio_a_two_of_three_unwinds_everything",
         [("fill", "a1", {"cum": 2, "leaves": 0}), ("fill", "b1"), ("reject", "a2"), ("reject", "a3"),
          ("fill", "a4"), ("fill", "b2")],
         TradeState.ROLLED_BACK, ("rollback_started", "rollback_filled"), (0, 0),
         p={"ratio_a": 3}, s={"qty_a": 3, "qty_b": 1}),
    Case("resting_day_order_timeout_is_cancelled_and_resubmitted",
         [("fill", "b1"), ("ack", "a1"), ("timer", None, {"at": 100}), ("expire", "a1"), ("fill", "a2")],
         TradeState.COMPLETED, ("leg_a_timeout_resubmit", "both_legs_filled"), (1, -1),
         p={"entry_tif": TimeInForce.DAY}),
    Case("cancel_reject_puts_order_in_doubt_and_status_resolves",
         [("fill", "b1"), ("ack", "a1"), ("timer", None, {"at": 100}), ("cancel_reject", "a1"),
          ("status", "a1", {"cum": 1, "leaves": 0})],
         TradeState.COMPLETED, ("order_in_doubt", "order_resolved", "both_legs_filled"), (1, -1),
         p={"entry_tif": TimeInForce.DAY}),
    Case("slippage_budget_blocks_resubmit_before_max_resubmits",
         [("fill", "a1"), ("reject", "b1"), ("reject", "b2"), ("fill", "a2")],
         TradeState.ROLLED_BACK, ("leg_b_rejected_resubmit", "rollback_started", "rollback_filled"), (0, 0),
         p={"payup_ticks": 3, "slippage_budget_ticks": 5, "max_resubmits": 5}),
    Case("late_fill_after_rollback_reopens_and_unwinds",
         [("fill", "a1"), ("reject", "b1"), ("reject", "b2"), ("reject", "b3"), ("fill", "a2"),
          ("status", "b3", {"cum": 1, "leaves": 0}), ("fill", "b4")],
         TradeState.ROLLED_BACK, ("rollback_filled", "late_fill_reopened", "rollback_order_sent", "rollback_filled"),
         (0, 0)),
]


def _subsequence(want: tuple[str, ...], got: list[str]) -> bool:
    it = iter(got)
    return all(any(g == w for g in it) for w in want)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_pair_trade_path(case: Case) -> None:
    r = run(case.script, case.p, case.s)
    assert r.trade.state is case.state, r.trs
    assert _subsequence(case.trs, r.trs), r.trs
    assert tuple(v.net_qty for v in r.trade.legs_view()) == case.net
    assert r.trade.live_orders() == ()
    assert r.trade.next_deadline_ns() is None
    if case.orders:
        assert tuple(sorted(r.orders)) == case.orders


def test_leg_b_resubmit_pays_up_one_tick_per_attempt() -> None:
    r = run([("fill", "a1"), ("reject", "b1"), ("reject", "b2")])
    b2, b3 = r.orders["b2"], r.orders["b3"]
    assert (b2.price, b3.price) == (2399.9, 2399.8)  # SELL leg: paying up is selling lower
    assert (b2.purpose, b3.qty) == (OrderPurpose.RESUBMIT, 1)
    assert r.trade.resubmits == 2


def test_rollback_order_is_marketable_ioc_opposite_side() -> None:
    r = run([("fill", "a1"), ("reject", "b1"), ("reject", "b2"), ("reject", "b3")])
    unwind = r.orders["a2"]
    assert (unwind.side, unwind.qty, unwind.price, unwind.tif, unwind.purpose) == (
        Side.SELL, 1, None, TimeInForce.IOC, OrderPurpose.ROLLBACK)
    assert r.trade.state is TradeState.ROLLING_BACK
    assert r.trade.rollbacks == 1


def test_rollback_far_ticks_prices_unwind_past_the_fill() -> None:
    r = run([("fill", "a1", {"px": 556.1}), ("reject", "b1"), ("reject", "b2"), ("reject", "b3")],
            p={"rollback_far_ticks": 10})
    assert r.orders["a2"].price == pytest.approx(555.9)


def test_broken_raises_critical_alert_and_requests_halt_once() -> None:
    r = run([("fill", "a1"), ("reject", "b1"), ("reject", "b2"), ("reject", "b3"), ("reject", "a2"),
             ("reject", "a3"), ("reject", "a4")])
    assert r.trade.state is TradeState.BROKEN and r.trade.is_terminal and not r.trade.is_done
    alerts = [a.alert for a in r.actions if isinstance(a, RaiseAlert)]
    halts = [a.reason for a in r.actions if isinstance(a, RequestHalt)]
    assert [a.severity for a in alerts] == [Severity.CRITICAL]
    assert alerts[0].code == "PAIR_BROKEN" and halts == ["PAIR_BROKEN: trade_id=T000007 pair=au_gc"]
    assert r.trade.legs_view()[0].net_qty == 1
    assert r.trade.next_deadline_ns() == r.now + 100 * MS  # the next FLATTEN attempt


def test_broken_flatten_rejected_waits_for_next_timer() -> None:
    r = run([("fill", "a1"), ("reject", "b1"), ("reject", "b2"), ("reject", "b3"), ("reject", "a2"),
             ("reject", "a3"), ("reject", "a4"), ("timer", None, {"at": 300}), ("reject", "a5")])
    assert r.trade.state is TradeState.BROKEN
    assert sends(r.trade.on_report(reject(r.orders["a5"]), r.now + 1)) == []
    due = r.trade.next_deadline_ns()
    assert due is not None
    flatten = sends(r.trade.on_timer(due))
    assert [(o.purpose, o.qty) for o in flatten] == [(OrderPurpose.FLATTEN, 1)]


def test_rollback_refused_session_down_waits_a_timeout_and_uses_no_attempt() -> None:
    r = run([("fill", "a1"), ("reject", "b1"), ("reject", "b2"), ("reject", "b3")])
    down = "SESSION_DOWN: venue=SHFE"
    for k in range(2, 9):  # an outage longer than every attempt allows
        acts = r.trade.on_report(reject(r.orders[f"a{k}"], reason=down), r.now + k)
        assert sends(acts) == [] and r.trade.state is TradeState.ROLLING_BACK
        due = r.trade.next_deadline_ns()
        assert due == r.now + k + 100 * MS  # the next unwind after one order timeout
        (again,) = sends(r.trade.on_timer(due))
        r.orders[f"a{k + 1}"] = again
        r.now = due
        assert again.purpose is OrderPurpose.ROLLBACK
    r.trade.on_report(fill(r.orders["a9"]), r.now + 1)
    assert r.trade.state is TradeState.ROLLED_BACK and r.trade.next_deadline_ns() is None


def test_ack_timeout_marks_instruments_in_doubt_until_resolved() -> None:
    r = run([("fill", "b1"), ("timer", None, {"at": 100})])
    assert r.trade.instruments_in_doubt() == frozenset({"au"})
    assert queries(r.actions) == ["T000007.a1"]
    assert sends(r.actions[-3:]) == []  # no blind resubmit
    r2 = r.trade.on_report(status(r.orders["a1"], cum=1, leaves=0), r.now + 1)
    assert r.trade.instruments_in_doubt() == frozenset()
    assert transitions(r2)[0] == "order_resolved"


def test_unanswered_status_query_is_repeated_each_timeout() -> None:
    r = run([("timer", None, {"at": 100})])
    again = r.trade.on_timer(T0 + 200 * MS)
    assert sorted(queries(again)) == ["T000007.a1", "T000007.b1"]
    assert "order_in_doubt" not in transitions(again)


def test_deadline_with_leg_a_filled_and_leg_b_working_cancels_b_before_unwinding() -> None:
    r = run([("fill", "a1"), ("ack", "b1"), ("timer", None, {"at": 1000})],
            p={"entry_tif": TimeInForce.DAY, "order_timeout_ns": 5000 * MS})
    assert cancels(r.actions) == ["T000007.b1"]
    assert "a2" not in r.orders  # b1 may still fill: nothing is surely excess yet
    acts = r.trade.on_report(expired(r.orders["b1"]), r.now + 1)
    assert [(o.cl_ord_id, o.qty) for o in sends(acts)] == [("T000007.a2", 1)]


def test_leg_b_late_fill_while_cancelling_completes_instead_of_unwinding() -> None:
    r = run([("fill", "a1"), ("ack", "b1"), ("timer", None, {"at": 1000}), ("fill", "b1")],
            p={"entry_tif": TimeInForce.DAY, "order_timeout_ns": 5000 * MS})
    assert r.trade.state is TradeState.COMPLETED
    assert "a2" not in r.orders


def test_signal_expired_before_start_cancels_without_orders() -> None:
    trade = PairTrade("T1", signal(expiry_ns=T0 - 1), params())
    acts = trade.start(T0)
    assert sends(acts) == [] and transitions(acts) == ["signal_expired"]
    assert trade.state is TradeState.CANCELLED


def test_signal_out_of_ratio_is_refused() -> None:
    with pytest.raises(SignalInvalid, match="SIGNAL_RATIO"):
        PairTrade("T1", signal(qty_a=2, qty_b=1), params(ratio_a=3))


def test_report_for_unknown_order_is_ignored() -> None:
    r = run([])
    foreign = msgspec.structs.replace(r.orders["a1"], cl_ord_id="OTHER.a1")
    assert r.trade.on_report(fill(foreign), r.now) == []


def test_every_transition_event_carries_the_tick_time_and_legs() -> None:
    r = run([("fill", "a1"), ("reject", "b1"), ("fill", "b2")])
    events = [a.event for a in r.actions if hasattr(a, "event")]
    assert events and all(e.tick_recv_ns == T0 - 5_000 and len(e.legs) == 2 for e in events)
    assert events[-1].state == "COMPLETED" and events[-1].resubmits == 1


def test_transition_table_covers_every_transition() -> None:
    assert set(TRANSITIONS) == set(Tr)


def test_next_deadline_is_earliest_order_timeout_then_trade_deadline() -> None:
    r = run([("ack", "a1"), ("ack", "b1")], p={"entry_tif": TimeInForce.DAY})
    assert r.trade.next_deadline_ns() == T0 + 100 * MS
    r.trade.on_timer(T0 + 100 * MS)  # both cancelled: cancel timers
    assert r.trade.next_deadline_ns() == T0 + 200 * MS


def test_params_from_demo_config_take_legs_ticks_accounts_and_times() -> None:
    from pathlib import Path

    from configs.load import load_config
    from execution.pairtrade import params_from_config

    cfg = load_config(Path(__file__).resolve().parents[3] / "configs" / "demo.toml")
    p = params_from_config(cfg)["au_gc"]
    assert (p.a.instrument, p.a.venue, p.a.account, p.a.tick, p.a.ratio) == ("au", "SHFE", "cn", 0.02, 3)
    assert (p.b.instrument, p.b.venue, p.b.account, p.b.tick, p.b.ratio) == ("GC", "COMEX", "hk", 0.1, 1)
    assert (p.order_timeout_ns, p.deadline_ns, p.max_resubmits) == (250 * MS, 2000 * MS, 3)


# --- a BROKEN trade whose venue starts behaving settles -------------------------------------

_TO_BROKEN = [("fill", "a1"), ("reject", "b1"), ("reject", "b2"), ("reject", "b3"), ("reject", "a2"),
              ("reject", "a3"), ("reject", "a4")]  # rollback_attempts=3 unwinds rejected: BROKEN
# 3:1, two units: A fills 4 of 6, B 2 of 2; one unit is kept, the unwinds of A's and B's excess are rejected
_RATIO_TO_BROKEN = [("fill", "a1", {"cum": 4, "leaves": 0}), ("fill", "b1"), ("reject", "a2"), ("reject", "a3"),
                    ("reject", "a4"), ("reject", "b2"), ("reject", "a5")]


@dataclass(frozen=True)
class BrokenCase:
    name: str
    script: list[tuple]  # the venue misbehaves: reaches BROKEN, then what happens to the FLATTENs
    lost: tuple[str, ...]  # orders the venue never received (a status query answers ORDER_UNKNOWN)
    state: TradeState
    trs: tuple[str, ...]
    net: tuple[int, int]
    p: dict = field(default_factory=dict)
    s: dict = field(default_factory=dict)


BROKEN_CASES = [
    # the shrunk stateful failure: the FLATTEN is lost, its ack times out, the status answer is lost too
    BrokenCase("flatten_lost_and_status_answer_lost_is_queried_again_then_reflattened",
               [*_TO_BROKEN, ("timer", None, {"at": 200}), ("timer", None, {"at": 300})], ("a5",),
               TradeState.ROLLED_BACK,
               ("broken_flatten_sent", "order_in_doubt", "order_resolved", "broken_flatten_sent", "broken_flattened"),
               (0, 0)),
    BrokenCase("flatten_rejected_is_resent_on_the_next_timer",
               [*_TO_BROKEN, ("timer", None, {"at": 200}), ("reject", "a5")], (),
               TradeState.ROLLED_BACK, ("broken_flatten_sent", "broken_flatten_sent", "broken_flattened"), (0, 0)),
    BrokenCase("flatten_in_doubt_but_received_resolves_by_status",
               [*_TO_BROKEN, ("timer", None, {"at": 200}), ("timer", None, {"at": 300})], (),
               TradeState.ROLLED_BACK, ("broken_flatten_sent", "order_in_doubt", "order_resolved", "broken_flattened"),
               (0, 0)),
    BrokenCase("ratio_excess_one_flatten_lost_one_in_doubt_resolves_in_ratio",
               [*_RATIO_TO_BROKEN, ("timer", None, {"at": 200}), ("timer", None, {"at": 300})], ("a6",),
               TradeState.COMPLETED,
               ("broken_flatten_sent", "broken_flatten_sent", "order_in_doubt", "order_in_doubt", "order_resolved",
                "order_resolved", "broken_flatten_sent", "broken_resolved"),
               (3, -1), p={"ratio_a": 3}, s={"qty_a": 6, "qty_b": 2}),
]


def _venue_behaves(r: Run, lost: tuple[str, ...]) -> None:
    """From now on the venue answers every query and fills every new order; timers fire when due.

    What was outstanding before (unanswered queries, lost reports) stays lost.
    """
    gone = {f"{r.trade.trade_id}.{k}" for k in lost}
    pending: list[Action] = []
    for _ in range(50):
        r.carry(pending)
        if r.trade.is_done:
            return
        by_id = {o.cl_ord_id: o for o in r.orders.values()}
        reports = [fill(o) for o in sends(pending)]
        reports += [unknown(by_id[c]) if c in gone else status(by_id[c], cum=by_id[c].qty, leaves=0)
                    for c in queries(pending)]
        pending = []
        for ev in reports:
            r.now += 1_000
            pending += r.trade.on_report(ev, r.now)
        if reports:
            continue
        due = r.trade.next_deadline_ns()
        assert due is not None, r.trs
        r.now = max(r.now + 1_000, due)
        pending = r.trade.on_timer(r.now)
        # a due time on_timer did not consume would leave the caller spinning without progress
        after = r.trade.next_deadline_ns()
        assert after is None or after > r.now, (r.trade.state, r.trade.order_views())
    raise AssertionError(f"not settled: {r.trade.state} {r.trs}")


@pytest.mark.parametrize("case", BROKEN_CASES, ids=lambda c: c.name)
def test_broken_trade_settles_once_the_venue_behaves(case: BrokenCase) -> None:
    r = run(case.script, case.p, case.s)
    assert r.trade.state is TradeState.BROKEN, r.trs
    _venue_behaves(r, case.lost)
    assert r.trade.state is case.state and r.trade.is_done, r.trs
    assert _subsequence(case.trs, r.trs[r.trs.index("broken_rollback_exhausted"):]), r.trs
    assert tuple(v.net_qty for v in r.trade.legs_view()) == case.net
    assert r.trade.next_deadline_ns() is None


def test_broken_with_flatten_in_doubt_next_deadline_is_the_requery_not_the_past_retry() -> None:
    r = run([*_TO_BROKEN, ("timer", None, {"at": 200}), ("timer", None, {"at": 300})])
    assert queries(r.actions)[-1] == "T000007.a5" and r.trade.state is TradeState.BROKEN
    assert r.trade.next_deadline_ns() == T0 + 400 * MS  # a5's re-query; the FLATTEN retry waits for a5
    again = r.trade.on_timer(T0 + 400 * MS)
    assert queries(again) == ["T000007.a5"] and sends(again) == []
