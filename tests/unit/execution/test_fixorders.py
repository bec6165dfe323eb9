"""FIX order messages -> the pair trade's OrderEvents (pure mapping, FIX 4.2 and 4.4)."""

from __future__ import annotations

import pytest

from bus.messages import ExecType, OrderPurpose, OrderRequest, Side, TimeInForce
from execution.fixorders import (OrderBookEntry, cancel_reject, execution_report, fix_time_ns, message_reject,
                                 venue_reason)
from feeds.fix.wire import SOH, Fields, FixError, masked

ORDER = OrderRequest(cl_ord_id="T000001.a1", trade_id="T000001", account="cn", venue="SHFE", instrument="au",
                     side=Side.SELL, qty=3, price=556.02, tif=TimeInForce.IOC, purpose=OrderPurpose.OPEN)


def msg(version: str, msg_type: str, *fields: tuple[int, str]) -> Fields:
    body = [(8, version), (9, "100"), (35, msg_type), (49, "V"), (56, "XMC"), (34, "7"), *fields, (10, "000")]
    return Fields.parse(SOH.join(f"{t}={v}" for t, v in body) + SOH)


def report(version: str, *fields: tuple[int, str]) -> Fields:
    return msg(version, "8", (37, "O1"), (11, "T000001.a1"), (55, "au2612"), (54, "2"), (38, "3"), *fields)


def entry() -> OrderBookEntry:
    return OrderBookEntry(ORDER)


@pytest.mark.parametrize("version,fill_types", [("FIX.4.2", ("1", "2")), ("FIX.4.4", ("F", "F"))])
def test_partial_then_full_fill_map_to_fills_with_cumulative_quantities(version: str, fill_types: tuple[str, str]) -> None:
    part = execution_report(report(version, (17, "E1"), (150, fill_types[0]), (39, "1"), (32, "1"), (31, "556.02"),
                                   (14, "1"), (151, "2"), (6, "556.02"), (60, "20261130-22:32:48.669")),
                            entry(), "SHFE", "au", "T000001.a1")
    assert part is not None and part.exec_type is ExecType.FILL
    assert (part.last_qty, part.last_px, part.cum_qty, part.leaves_qty) == (1, 556.02, 1, 2)
    assert part.exec_id == "T000001.a1:E1" and part.side is Side.SELL
    assert part.venue_ts_ns == fix_time_ns("20261130-22:32:48.669") > 0
    full = execution_report(report(version, (17, "E2"), (150, fill_types[1]), (39, "2"), (32, "2"), (31, "556.04"),
                                   (14, "3"), (151, "0"), (6, "556.0333")), entry(), "SHFE", "au", "T000001.a1")
    assert full is not None and (full.cum_qty, full.leaves_qty, full.exec_id) == (3, 0, "T000001.a1:E2")


def test_new_is_an_ack_and_pending_states_carry_nothing() -> None:
    ack = execution_report(report("FIX.4.2", (17, "0"), (20, "0"), (150, "0"), (39, "0"), (14, "0"), (151, "3"), (6, "0")),
                           entry(), "SHFE", "au", "T000001.a1")
    assert ack is not None and ack.exec_type is ExecType.ACK and ack.exec_id == ""
    for pending in ("A", "6", "E"):
        assert execution_report(report("FIX.4.4", (17, "0"), (150, pending), (39, pending), (14, "0"), (151, "3")),
                                entry(), "SHFE", "au", "T000001.a1") is None


def test_reject_keeps_a_machine_readable_venue_text_and_wraps_free_text() -> None:
    sim = execution_report(report("FIX.4.2", (17, "X"), (150, "8"), (39, "8"), (14, "0"), (151, "0"), (103, "99"),
                                  (58, "VENUE_REJECT: reason=insufficient_margin")), entry(), "SHFE", "au", "T000001.a1")
    assert sim is not None and sim.exec_type is ExecType.REJECT and sim.reason == "VENUE_REJECT: reason=insufficient_margin"
    free = execution_report(report("FIX.4.2", (17, "X"), (150, "8"), (39, "8"), (14, "0"), (151, "0"), (103, "3"),
                                   (58, "Exceeds limit")), entry(), "SHFE", "au", "T000001.a1")
    assert free is not None and free.reason == "VENUE_REJECT: code=3 text=Exceeds_limit"
    unknown = execution_report(report("FIX.4.2", (17, "X"), (150, "8"), (39, "8"), (14, "0"), (151, "0"), (103, "5")),
                               entry(), "SHFE", "au", "T000001.a1")
    assert unknown is not None and unknown.reason == "ORDER_UNKNOWN: cl_ord_id=T000001.a1"


def test_cancelled_expired_and_status_reports() -> None:
    for et in ("4", "C", "3"):
        ev = execution_report(report("FIX.4.4", (17, "X"), (150, et), (39, "4"), (14, "1"), (151, "2")),
                              entry(), "SHFE", "au", "T000001.a1")
        assert ev is not None and ev.exec_type is ExecType.CANCELLED and ev.leaves_qty == 0 and ev.cum_qty == 1
    status = execution_report(report("FIX.4.2", (17, "0"), (150, "I"), (39, "2"), (14, "3"), (151, "0"), (6, "556")),
                              entry(), "SHFE", "au", "T000001.a1")
    assert status is not None and status.exec_type is ExecType.STATUS and status.reason == "ORDER_STATE: state=FILLED"
    live = execution_report(report("FIX.4.2", (17, "0"), (150, "I"), (39, "1"), (14, "1"), (151, "2")),
                            entry(), "SHFE", "au", "T000001.a1")
    assert live is not None and live.leaves_qty == 2


def test_a_cancel_probe_answered_cancelled_is_a_status() -> None:
    ev = execution_report(report("FIX.4.2", (17, "X"), (150, "4"), (39, "4"), (14, "0"), (151, "0")),
                          entry(), "SHFE", "au", "T000001.a1", probe=True)
    assert ev is not None and ev.exec_type is ExecType.STATUS and ev.leaves_qty == 0


@pytest.mark.parametrize("fields", [((150, "H"),), ((150, "G"),), ((20, "1"), (150, "2")), ((20, "2"), (150, "2"))])
def test_trade_busts_and_corrections_are_refused_loudly(fields: tuple[tuple[int, str], ...]) -> None:
    with pytest.raises(FixError, match="FIX_UNSUPPORTED"):
        execution_report(report("FIX.4.2", (17, "X"), (39, "2"), (14, "3"), (151, "0"), *fields),
                         entry(), "SHFE", "au", "T000001.a1")


def test_a_report_missing_exec_type_or_exec_id_is_a_fix_error_naming_the_tag() -> None:
    with pytest.raises(FixError, match="tag=150"):
        execution_report(report("FIX.4.2", (39, "2")), entry(), "SHFE", "au", "T000001.a1")
    with pytest.raises(FixError, match="tag=17"):
        execution_report(report("FIX.4.4", (150, "F"), (39, "2"), (32, "3"), (31, "556"), (14, "3"), (151, "0")),
                         entry(), "SHFE", "au", "T000001.a1")


def test_cancel_reject_of_a_filled_order_reports_its_fill() -> None:
    f = msg("FIX.4.2", "9", (37, "O1"), (11, "T000001.a1~x1"), (41, "T000001.a1"), (39, "2"), (434, "1"), (102, "0"))
    ev = cancel_reject(f, entry(), "SHFE", "au", "T000001.a1", probe=False)
    assert ev.exec_type is ExecType.CANCEL_REJECT and ev.cum_qty == 3
    assert ev.avg_px == ORDER.price  # the price is not in a cancel reject: the limit, the worst it can be
    assert ev.reason == "ORDER_NOT_OPEN: cl_ord_id=T000001.a1 state=FILLED px=limit_estimate"


def test_cancel_probe_answers_end_a_done_order_or_leave_it_in_doubt() -> None:
    def probe(*fields: tuple[int, str]):
        f = msg("FIX.4.4", "9", (37, "O1"), (11, "T000001.a1~x1"), (41, "T000001.a1"), (434, "1"), *fields)
        return cancel_reject(f, entry(), "SHFE", "au", "T000001.a1", probe=True)

    filled = probe((39, "2"), (102, "0"))
    assert filled.exec_type is ExecType.STATUS and (filled.cum_qty, filled.leaves_qty) == (3, 0)
    assert filled.avg_px == ORDER.price and filled.reason.endswith("px=limit_estimate")
    unknown = probe((39, "8"), (102, "1"))
    assert unknown.exec_type is ExecType.REJECT and unknown.reason.startswith("ORDER_UNKNOWN")
    pending = probe((39, "6"), (102, "0"), (58, "pending"))
    assert pending.exec_type is ExecType.CANCEL_REJECT and pending.reason.startswith("STATUS_UNRESOLVED")


def test_session_and_business_rejects_map_by_what_they_refused() -> None:
    sess = msg("FIX.4.2", "3", (45, "5"), (371, "40"), (372, "D"), (58, "Value is incorrect (out of range) for this tag"))
    ev = message_reject(sess, "D", entry(), "SHFE", "au", "T000001.a1")
    assert ev.exec_type is ExecType.REJECT
    assert ev.reason == "VENUE_REJECT: msg=session_reject ref_tag=40 text=Value_is_incorrect_(out_of_range)_for_this_tag"
    biz = msg("FIX.4.2", "j", (45, "6"), (372, "F"), (380, "3"), (58, "Unsupported Message Type"))
    ev = message_reject(biz, "F", entry(), "SHFE", "au", "T000001.a1")
    assert ev.exec_type is ExecType.CANCEL_REJECT
    assert ev.reason == "VENUE_UNSUPPORTED: msg_type=F msg=business_reject text=Unsupported_Message_Type"


def test_venue_reason_and_time_helpers() -> None:
    assert venue_reason("IOC_REMAINDER: leaves_qty=1", "X") == "IOC_REMAINDER: leaves_qty=1"
    assert venue_reason("", "VENUE_REJECT", code="") == "VENUE_REJECT: venue=?"
    assert fix_time_ns("20260105-02:00:00") == 1767578400 * 10**9
    assert fix_time_ns("garbage") == 0


def test_fields_parse_refuses_garbage_and_masks_the_password() -> None:
    with pytest.raises(FixError, match="FIX_MALFORMED"):
        Fields.parse("not a fix message")
    with pytest.raises(FixError, match="no_begin_string"):
        Fields.parse(f"35=D{SOH}")
    raw = SOH.join(["8=FIX.4.2", "35=A", "553=user", "554=hunter2"]) + SOH
    assert "hunter2" not in masked(raw) and "554=***" in masked(raw) and masked(raw, 10) == "8=FIX.4.2|"


def test_marketable_limit_goes_ticks_through_the_current_touch() -> None:
    from execution.pairtrade import marketable_limit

    assert marketable_limit(Side.BUY, 2410.0, 2410.5, 20, 0.1) == 2412.5
    assert marketable_limit(Side.SELL, 2410.0, 2410.5, 20, 0.1) == 2408.0
    assert marketable_limit(Side.SELL, 556.02, 556.06, 3, 0.02) == 555.96
