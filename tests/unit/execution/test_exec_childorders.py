"""Child orders: a parent leg order split across sub-accounts and sliced, folded back into one."""

from __future__ import annotations

from bus.messages import (CancelRequest, ExecType, OrderEvent, OrderPurpose, OrderRequest, Side, StatusRequest,
                          TimeInForce)
from configs.schema import AccountCfg, SubAccountCfg
from execution.allocation import Allocator
from execution.childorders import ChildRouter, parent_of


def router(allocation: str = "round_robin", visible: int = 0, max_lots: int = 5000) -> ChildRouter:
    acct = AccountCfg(currency="CNY", balance=1.0, venues=["SHFE"], allocation=allocation,  # type: ignore[arg-type]
                      sub_accounts=[SubAccountCfg(name="cn-a", max_lots=max_lots), SubAccountCfg(name="cn-b", max_lots=max_lots)])
    return ChildRouter({"cn": Allocator("cn", acct)}, {"cn": visible})


def parent(qty: int = 3, tif: TimeInForce = TimeInForce.IOC) -> OrderRequest:
    return OrderRequest(cl_ord_id="T000001.a1", trade_id="T000001", account="cn", venue="SHFE", instrument="au",
                        side=Side.BUY, qty=qty, price=556.0, tif=tif, purpose=OrderPurpose.OPEN)


def report(child: OrderRequest, et: ExecType, cum: int = 0, leaves: int | None = None, last: int = 0, px: float = 556.0,
           reason: str = "") -> OrderEvent:
    return OrderEvent(cl_ord_id=child.cl_ord_id, exec_type=et, venue="SHFE", instrument="au", side=Side.BUY,
                      order_qty=child.qty, cum_qty=cum, leaves_qty=child.qty - cum if leaves is None else leaves,
                      last_qty=last, last_px=px if last else 0.0, avg_px=px if cum else 0.0,
                      exec_id=f"x{child.cl_ord_id}{cum}" if last else "", reason=reason)


def test_parent_split_round_robin_reports_one_ack_and_fills_summing_to_done() -> None:
    r = router()
    children, reject = r.route(parent())
    assert reject is None and [(c.account, c.qty) for c in children] == [("cn-a", 2), ("cn-b", 1)]
    assert all(parent_of(c.cl_ord_id) == "T000001.a1" for c in children)
    a, b = children
    events, _ = r.on_report(report(a, ExecType.ACK))
    assert [e.exec_type for e in events] == [ExecType.ACK]
    assert r.on_report(report(b, ExecType.ACK))[0] == []
    events, _ = r.on_report(report(a, ExecType.FILL, cum=2, last=2))
    assert [(e.exec_type, e.last_qty, e.cum_qty, e.leaves_qty) for e in events] == [(ExecType.FILL, 2, 2, 1)]
    events, _ = r.on_report(report(b, ExecType.FILL, cum=1, last=1, px=556.1))
    assert [(e.exec_type, e.last_qty, e.cum_qty, e.leaves_qty) for e in events] == [(ExecType.FILL, 1, 3, 0)]
    assert abs(events[0].avg_px - (2 * 556.0 + 556.1) / 3) < 1e-9


def test_resting_parent_is_sliced_and_the_next_slice_goes_when_the_last_is_done() -> None:
    r = router(allocation="single", visible=1)
    children, _ = r.route(parent(qty=3, tif=TimeInForce.DAY))
    assert [(c.account, c.qty) for c in children] == [("cn-a", 1)]
    sent = [children[0]]
    for n in range(1, 4):
        events, nxt = r.on_report(report(sent[-1], ExecType.FILL, cum=1, last=1))
        assert events[0].cum_qty == n and events[0].leaves_qty == (0 if n == 3 else 3 - n)
        sent += nxt
    assert len(sent) == 3 and {parent_of(c.cl_ord_id) for c in sent} == {"T000001.a1"}


def test_one_child_rejected_after_the_other_filled_ends_the_parent_partially_filled() -> None:
    r = router()
    a, b = r.route(parent())[0]
    assert r.on_report(report(a, ExecType.FILL, cum=2, last=2))[0][0].leaves_qty == 1
    events, _ = r.on_report(report(b, ExecType.REJECT, leaves=0, reason="VENUE_REJECT: reason=x"))
    assert [(e.exec_type, e.cum_qty, e.leaves_qty) for e in events] == [(ExecType.CANCELLED, 2, 0)]


def test_every_child_rejected_rejects_the_parent_with_the_venue_reason() -> None:
    r = router()
    a, b = r.route(parent())[0]
    assert r.on_report(report(a, ExecType.REJECT, leaves=0, reason="VENUE_REJECT: reason=x"))[0] == []
    events, _ = r.on_report(report(b, ExecType.REJECT, leaves=0, reason="VENUE_REJECT: reason=y"))
    assert [(e.exec_type, e.reason) for e in events] == [(ExecType.REJECT, "VENUE_REJECT: reason=x")]


def test_parent_status_asks_every_child_and_answers_once_with_the_sum() -> None:
    r = router()
    a, b = r.route(parent())[0]
    queries = r.status(StatusRequest(cl_ord_id="T000001.a1", venue="SHFE"))
    assert [q.cl_ord_id for q in queries] == [a.cl_ord_id, b.cl_ord_id]
    events, _ = r.on_report(report(a, ExecType.STATUS, cum=2, leaves=0))
    assert [(e.exec_type, e.cum_qty) for e in events] == [(ExecType.FILL, 2)]  # a fill whose report was lost
    events, _ = r.on_report(report(b, ExecType.REJECT, leaves=0, reason="ORDER_UNKNOWN: cl_ord_id=x"))
    assert [(e.exec_type, e.cum_qty, e.leaves_qty) for e in events] == [(ExecType.STATUS, 2, 0)]


def test_unknown_children_make_an_unknown_parent() -> None:
    r = router()
    a, b = r.route(parent())[0]
    r.status(StatusRequest(cl_ord_id="T000001.a1", venue="SHFE"))
    r.on_report(report(a, ExecType.REJECT, leaves=0, reason="ORDER_UNKNOWN: cl_ord_id=a"))
    events, _ = r.on_report(report(b, ExecType.REJECT, leaves=0, reason="ORDER_UNKNOWN: cl_ord_id=b"))
    assert events[-1].exec_type is ExecType.REJECT and events[-1].reason.startswith("ORDER_UNKNOWN")


def test_cancel_reaches_every_live_child_and_drops_waiting_slices() -> None:
    r = router(allocation="single", visible=1)
    (a,), _ = r.route(parent(qty=3, tif=TimeInForce.DAY))
    cancels = r.cancel(CancelRequest(cl_ord_id="T000001.a1", venue="SHFE", instrument="au"))
    assert [c.cl_ord_id for c in cancels] == [a.cl_ord_id]
    events, nxt = r.on_report(report(a, ExecType.CANCELLED, cum=0, leaves=0))
    assert nxt == [] and [(e.exec_type, e.leaves_qty) for e in events] == [(ExecType.CANCELLED, 0)]


def test_quantity_past_every_sub_account_cap_rejects_the_parent_at_once() -> None:
    children, reject = router(max_lots=1).route(parent(qty=3))
    assert children == [] and reject is not None and reject.reason.startswith("ALLOC_CAPACITY")


def test_account_without_sub_accounts_sends_the_order_itself() -> None:
    order = parent()
    order = OrderRequest(**{**{f: getattr(order, f) for f in order.__struct_fields__}, "account": "hk"})
    assert router().route(order) == ([order], None)


def test_restored_children_answer_a_status_query_after_a_restart() -> None:
    r = router()
    a, b = r.route(parent())[0]
    fresh = router()
    for child in (a, b):
        fresh.restore(parent(), child)
    assert len(fresh.status(StatusRequest(cl_ord_id="T000001.a1", venue="SHFE"))) == 2


def test_session_down_answer_to_a_status_query_leaves_the_child_in_doubt() -> None:
    r = router()
    a, b = r.route(parent())[0]
    r.on_report(report(a, ExecType.ACK))
    r.status(StatusRequest(cl_ord_id="T000001.a1", venue="SHFE"))
    events, _ = r.on_report(report(a, ExecType.REJECT, leaves=0, reason="SESSION_DOWN: venue=SHFE"))
    assert events == []
    events, _ = r.on_report(report(a, ExecType.FILL, cum=2, last=2))  # it was alive all along
    assert [(e.exec_type, e.cum_qty) for e in events] == [(ExecType.FILL, 2)]


def test_session_down_answer_to_a_new_child_is_a_real_reject() -> None:
    r = router()
    a, b = r.route(parent())[0]
    r.on_report(report(a, ExecType.REJECT, leaves=0, reason="SESSION_DOWN: venue=SHFE"))
    events, _ = r.on_report(report(b, ExecType.REJECT, leaves=0, reason="SESSION_DOWN: venue=SHFE"))
    assert [e.exec_type for e in events] == [ExecType.REJECT]


def test_late_child_fill_after_the_parent_was_done_is_reported_as_a_fill() -> None:
    r = router()
    a, b = r.route(parent())[0]
    r.on_report(report(a, ExecType.CANCELLED, cum=0, leaves=0))
    events, _ = r.on_report(report(b, ExecType.CANCELLED, cum=0, leaves=0))
    assert [e.exec_type for e in events] == [ExecType.CANCELLED]
    events, _ = r.on_report(report(b, ExecType.STATUS, cum=1, leaves=0))
    assert [(e.exec_type, e.last_qty, e.cum_qty, e.leaves_qty) for e in events] == [(ExecType.FILL, 1, 1, 0)]


def test_parent_finishing_during_a_status_round_still_tells_the_trade() -> None:
    r = router()
    a, b = r.route(parent())[0]
    r.on_report(report(b, ExecType.FILL, cum=1, last=1))
    r.status(StatusRequest(cl_ord_id="T000001.a1", venue="SHFE"))
    events, _ = r.on_report(report(a, ExecType.STATUS, cum=0, leaves=0))  # a expired unfilled; b not answered yet
    assert events and events[-1].exec_type in (ExecType.STATUS, ExecType.CANCELLED) and events[-1].leaves_qty == 0
    assert events[-1].cum_qty == 1


def test_unwind_is_routed_to_the_sub_accounts_that_hold_the_fills() -> None:
    r = router()
    a, b = r.route(parent(qty=3))[0]  # round robin: cn-a 2, cn-b 1
    r.on_report(report(a, ExecType.FILL, cum=2, last=2))
    r.on_report(report(b, ExecType.FILL, cum=1, last=1))
    unwind = OrderRequest(cl_ord_id="T000001.a2", trade_id="T000001", account="cn", venue="SHFE", instrument="au",
                          side=Side.SELL, qty=3, price=None, tif=TimeInForce.IOC, purpose=OrderPurpose.ROLLBACK)
    children, _ = r.route(unwind)
    assert sorted((c.account, c.qty) for c in children) == [("cn-a", 2), ("cn-b", 1)]


def test_restored_iceberg_parent_keeps_its_unsent_slices() -> None:
    r = router(allocation="single", visible=1)
    (a,), _ = r.route(parent(qty=3, tif=TimeInForce.DAY))
    fresh = router(allocation="single", visible=1)
    fresh.restore(parent(qty=3, tif=TimeInForce.DAY), a)
    events, nxt = fresh.on_report(report(a, ExecType.FILL, cum=1, last=1))
    assert [(c.account, c.qty) for c in nxt] == [("cn-a", 1)] and events[0].leaves_qty == 2


def test_restored_child_fills_from_the_log_make_a_status_round_after_restart_lose_and_repeat_nothing() -> None:
    r = router()
    a, b = r.route(parent())[0]  # a: 2 lots on cn-a, b: 1 lot on cn-b
    r.on_report(report(a, ExecType.ACK))
    (before_crash,), _ = r.on_report(report(b, ExecType.FILL, cum=1, last=1, px=556.1))
    fresh = router()
    for child in (a, b):
        fresh.restore(parent(), child)
    fresh.restore_fill(before_crash)  # what the trade had applied, replayed from the write-ahead log
    fresh.status(StatusRequest(cl_ord_id="T000001.a1", venue="SHFE"))
    events, _ = fresh.on_report(report(a, ExecType.STATUS, cum=2, leaves=0))
    assert [(e.exec_type, e.last_qty, e.cum_qty) for e in events] == [(ExecType.FILL, 2, 3)]
    assert events[0].exec_id != before_crash.exec_id
    events, _ = fresh.on_report(report(b, ExecType.STATUS, cum=1, leaves=0))
    assert events == []  # b's fill was already the trade's: no second FILL under its exec id
    assert abs(fresh._finished["T000001.a1"].avg() - (2 * 556.0 + 556.1) / 3) < 1e-9


def test_status_query_of_a_finished_parent_is_asked_of_its_children_and_answered() -> None:
    r = router()
    a, b = r.route(parent())[0]
    r.on_report(report(a, ExecType.FILL, cum=2, last=2))
    r.on_report(report(b, ExecType.FILL, cum=1, last=1))
    asked = r.status(StatusRequest(cl_ord_id="T000001.a1", venue="SHFE"))
    assert sorted(q.cl_ord_id for q in asked) == [a.cl_ord_id, b.cl_ord_id]  # never the parent's own id
    assert r.on_report(report(a, ExecType.STATUS, cum=2, leaves=0))[0] == []
    events, _ = r.on_report(report(b, ExecType.STATUS, cum=1, leaves=0))
    assert [(e.exec_type, e.cum_qty, e.leaves_qty) for e in events] == [(ExecType.STATUS, 3, 0)]


def test_session_down_answer_to_a_status_query_of_a_restored_child_leaves_it_in_doubt() -> None:
    r = router()
    a, b = r.route(parent())[0]
    fresh = router()
    for child in (a, b):
        fresh.restore(parent(), child)  # sent before the restart; never answered since
    fresh.status(StatusRequest(cl_ord_id="T000001.a1", venue="SHFE"))
    down = "SESSION_DOWN: venue=SHFE"
    assert fresh.on_report(report(a, ExecType.REJECT, leaves=0, reason=down))[0] == []
    assert fresh.on_report(report(b, ExecType.REJECT, leaves=0, reason=down))[0] == []
    fresh.status(StatusRequest(cl_ord_id="T000001.a1", venue="SHFE"))  # asked again once the session is back
    assert fresh.on_report(report(a, ExecType.STATUS, cum=2, leaves=0))[0][0].cum_qty == 2
    events, _ = fresh.on_report(report(b, ExecType.STATUS, cum=1, leaves=0))
    assert [(e.exec_type, e.cum_qty) for e in events] == [(ExecType.FILL, 3)]


def test_session_down_answer_to_the_first_status_query_of_an_unanswered_child_leaves_it_in_doubt() -> None:
    r = router()
    a, b = r.route(parent())[0]  # a dropped order: the venue never said anything about a
    r.on_report(report(b, ExecType.FILL, cum=1, last=1))
    r.status(StatusRequest(cl_ord_id="T000001.a1", venue="SHFE"))
    assert r.on_report(report(a, ExecType.REJECT, leaves=0, reason="SESSION_DOWN: venue=SHFE"))[0] == []
    events, _ = r.on_report(report(a, ExecType.FILL, cum=2, last=2))  # it was filled all along
    assert [(e.exec_type, e.cum_qty) for e in events] == [(ExecType.FILL, 3)]


def test_refused_cancel_that_reports_a_child_fill_counts_it() -> None:
    r = router()
    a, b = r.route(parent())[0]
    r.on_report(report(a, ExecType.FILL, cum=2, last=2))
    r.cancel(CancelRequest(cl_ord_id="T000001.a1", venue="SHFE", instrument="au"))
    # b's own FILL report was lost; the venue says so when refusing the cancel
    events, _ = r.on_report(report(b, ExecType.CANCEL_REJECT, cum=1, leaves=0,
                                   reason="ORDER_NOT_OPEN: cl_ord_id=T000001.a1/2 state=FILLED"))
    assert [(e.exec_type, e.last_qty, e.cum_qty, e.leaves_qty) for e in events] == [(ExecType.FILL, 1, 3, 0)]


def test_restored_parent_the_trade_had_cancelled_sends_no_new_slice() -> None:
    r = router(allocation="round_robin", visible=1)
    a, b = r.route(parent(qty=4, tif=TimeInForce.DAY))[0]  # 2 lots each, sliced 1 + 1
    r.cancel(CancelRequest(cl_ord_id="T000001.a1", venue="SHFE", instrument="au"))
    fresh = router(allocation="round_robin", visible=1)
    for child in (a, b):
        fresh.restore(parent(qty=4, tif=TimeInForce.DAY), child)
    fresh.restore_cancel("T000001.a1")  # the trade's replayed state says it asked to cancel
    fresh.status(StatusRequest(cl_ord_id="T000001.a1", venue="SHFE"))
    _, sent_a = fresh.on_report(report(a, ExecType.STATUS, cum=0, leaves=0))
    events, sent_b = fresh.on_report(report(b, ExecType.STATUS, cum=0, leaves=0))
    assert sent_a == [] and sent_b == []
    assert [e.leaves_qty for e in events] == [0]
