"""What a FIX venue's order messages mean to a pair trade: ExecutionReport, OrderCancelReject,
BusinessMessageReject and session-level Reject -> `OrderEvent` (pure, no QuickFIX, no sockets).

The pair-trade machine already understands the simulator's reports; a FIX venue's
answers are mapped onto the same vocabulary:

| FIX | OrderEvent |
|---|---|
| 8, ExecType 0 New / 5 Replaced | ACK |
| 8, ExecType 1/2 (4.2), F Trade (4.4) | FILL (``exec_id`` = ClOrdID:ExecID, so a resent report counts once) |
| 8, ExecType 4 Canceled / C Expired / 3 Done for day | CANCELLED |
| 8, ExecType 8 Rejected | REJECT (OrdRejReason 5 "unknown order" -> ``ORDER_UNKNOWN``) |
| 8, ExecType I Order status / D Restated | STATUS |
| 8, ExecType A/6/E (pending states) | nothing (ignored) |
| 8, ExecType H/G (trade bust or correction), ExecTransType 1/2 | `FixError` ``FIX_UNSUPPORTED`` (the executor alerts) |
| 9 OrderCancelReject | CANCEL_REJECT (filled: cum_qty = order qty at the limit price, an estimate: ``ORDER_NOT_OPEN ... state=FILLED px=limit_estimate``) |
| 9 answering a status probe (venue without OrderStatusRequest) | STATUS for a done order, REJECT ``ORDER_UNKNOWN``, else CANCEL_REJECT (still in doubt) |
| 3 Reject / j BusinessMessageReject of our NewOrderSingle | REJECT ``VENUE_REJECT: msg=...`` |
| 3 / j of our cancel or status request | CANCEL_REJECT ``VENUE_UNSUPPORTED: msg_type=...`` (the order stays in doubt) |

Reasons are ``CATEGORY_CONDITION: key=value``: a venue text already in that form
(the simulator's) is kept, any other text is carried as ``text=...``.
"""

from __future__ import annotations

import re

from bus.messages import ExecType, OrderEvent, OrderRequest, RejectCode, Side
from feeds.fix import wire
from feeds.fix.wire import Fields, FixError

_REASON = re.compile(r"^[A-Z][A-Z0-9_]*: ")
_ORD_STATUS = {"0": "NEW", "1": "PARTIALLY_FILLED", "2": "FILLED", "3": "DONE_FOR_DAY", "4": "CANCELLED",
               "5": "REPLACED", "6": "PENDING_CANCEL", "8": "REJECTED", "A": "PENDING_NEW", "C": "EXPIRED",
               "E": "PENDING_REPLACE"}
_DONE_STATUS = {"2", "3", "4", "8", "C"}
_FILL_TYPES = {"1", "2", "F"}
_ENDED_TYPES = {"3", "4", "C"}
_IGNORED_TYPES = {"6", "A", "E"}


def venue_reason(text: str, category: str, **keys: object) -> str:
    """A machine-readable reason from a venue's text (kept when it already is one)."""
    text = text.strip()
    if _REASON.match(text):
        return text
    parts = [f"{k}={v}" for k, v in keys.items() if v not in ("", None)]
    if text:
        parts.append("text=" + re.sub(r"\s+", "_", text)[:80])
    return f"{category}: {' '.join(parts)}".rstrip(": ") if parts else f"{category}: venue=?"


def fix_time_ns(value: str) -> int:
    """UTC ns of a FIX UTCTimestamp (YYYYMMDD-HH:MM:SS[.sss...]); 0 when absent or malformed (a
    report's time is informational: it never makes a report unusable)."""
    try:
        days, ns = wire.timestamp_days_ns(value, wire.TRANSACT_TIME)
    except FixError:
        return 0
    return days * wire.DAY_NS + ns


def side_of(code: str) -> Side:
    side = wire.SIDE_OF_CODE.get(code)
    if side is None:
        raise FixError(f"FIX_BAD_VALUE: tag={wire.SIDE} value={code!r}")
    return side


class OrderBookEntry:
    """What the gateway knows of one order it sent (or restored): enough to name it on the wire."""

    __slots__ = ("order", "probe_cancels")

    def __init__(self, order: OrderRequest) -> None:
        self.order = order
        self.probe_cancels: set[str] = set()  # cancel ids sent to learn its status (venue has no 35=H)


def execution_report(f: Fields, entry: OrderBookEntry | None, venue: str, instrument: str,
                     cl_ord_id: str, probe: bool = False) -> OrderEvent | None:
    """An ExecutionReport (35=8) of order `cl_ord_id` (already resolved from 11/41); None when it
    carries nothing for the pair trade (pending states)."""
    trans = f.get(wire.EXEC_TRANS_TYPE, "0")
    if trans in ("1", "2"):
        raise FixError(f"FIX_UNSUPPORTED: exec_trans_type={trans} cl_ord_id={cl_ord_id}")
    et = f.get(wire.EXEC_TYPE)
    if not et:
        raise FixError(f"FIX_MISSING_TAG: tag={wire.EXEC_TYPE} msg_type=8")
    if et in _IGNORED_TYPES:
        return None
    if et in ("H", "G"):
        raise FixError(f"FIX_UNSUPPORTED: exec_type={et} cl_ord_id={cl_ord_id}")
    order = entry.order if entry is not None else None
    side = side_of(f.get(wire.SIDE)) if f.has(wire.SIDE) else (order.side if order else Side.BUY)
    order_qty = f.qty(wire.ORDER_QTY, order.qty if order else 0)
    cum = f.qty(wire.CUM_QTY)
    leaves = f.qty(wire.LEAVES_QTY, max(0, order_qty - cum))
    text = f.get(wire.TEXT)
    status = f.get(wire.ORD_STATUS)
    exec_id = ""
    last_qty, last_px = 0, 0.0
    if et in ("0", "5"):
        kind, reason = ExecType.ACK, ""
    elif et in _FILL_TYPES:
        kind = ExecType.FILL
        last_qty = f.qty(wire.LAST_QTY)
        last_px = f.num(wire.LAST_PX)
        exec_id = f"{cl_ord_id}:{f.need(wire.EXEC_ID)}"
        reason = text if _REASON.match(text) else ""
    elif et in _ENDED_TYPES:
        kind = ExecType.STATUS if probe else ExecType.CANCELLED
        leaves = 0
        reason = venue_reason(text, "ORDER_STATE" if probe else "VENUE_CANCELLED",
                              state=_ORD_STATUS.get(status, status))
    elif et == "8":
        kind = ExecType.REJECT
        leaves = 0
        if f.get(wire.ORD_REJ_REASON) == "5" and not _REASON.match(text):
            reason = f"{RejectCode.ORDER_UNKNOWN}: cl_ord_id={cl_ord_id}"
        else:
            reason = venue_reason(text, RejectCode.VENUE_REJECT, code=f.get(wire.ORD_REJ_REASON))
    elif et in ("I", "D"):
        kind = ExecType.STATUS
        if status in _DONE_STATUS:
            leaves = 0
        reason = venue_reason(text, "ORDER_STATE", state=_ORD_STATUS.get(status, status))
    else:
        raise FixError(f"FIX_UNSUPPORTED: exec_type={et} cl_ord_id={cl_ord_id}")
    return OrderEvent(
        cl_ord_id=cl_ord_id, exec_type=kind, venue=venue, instrument=instrument, side=side, order_qty=order_qty,
        cum_qty=cum, leaves_qty=leaves, last_qty=last_qty, last_px=last_px, avg_px=f.num(wire.AVG_PX),
        exec_id=exec_id, venue_order_id=f.get(wire.ORDER_ID), reason=reason,
        venue_ts_ns=fix_time_ns(f.get(wire.TRANSACT_TIME)),
    )


def cancel_reject(f: Fields, entry: OrderBookEntry | None, venue: str, instrument: str, cl_ord_id: str,
                  probe: bool) -> OrderEvent:
    """An OrderCancelReject (35=9) of order `cl_ord_id`. `probe`: the cancel was sent to learn the
    order's status (the venue takes no OrderStatusRequest), so a done order's answer ends it."""
    order = entry.order if entry is not None else None
    qty = order.qty if order is not None else 0
    side = order.side if order is not None else Side.BUY
    status = f.get(wire.ORD_STATUS)
    state = _ORD_STATUS.get(status, status or "?")
    text = f.get(wire.TEXT)
    unknown = f.get(wire.CXL_REJ_REASON) == "1" or RejectCode.ORDER_UNKNOWN.of(text)
    filled = status == "2"
    cum = qty if filled else 0
    # a cancel reject says "filled" but not at what price: the order's limit is the worst it can have
    # filled at, so positions and margin stay sound (the reason says the price is an estimate)
    est_px = order.price if filled and order is not None and order.price else 0.0
    base = dict(cl_ord_id=cl_ord_id, venue=venue, instrument=instrument, side=side, order_qty=qty, avg_px=est_px,
                venue_order_id=f.get(wire.ORDER_ID), venue_ts_ns=fix_time_ns(f.get(wire.TRANSACT_TIME)))
    if probe:
        if unknown:
            return OrderEvent(exec_type=ExecType.REJECT, cum_qty=0, leaves_qty=0,
                              reason=f"{RejectCode.ORDER_UNKNOWN}: cl_ord_id={cl_ord_id}", **base)
        if status in _DONE_STATUS:
            return OrderEvent(exec_type=ExecType.STATUS, cum_qty=cum, leaves_qty=0,
                              reason=f"ORDER_STATE: state={state} by=cancel_probe"
                                     + (" px=limit_estimate" if est_px else ""), **base)
        return OrderEvent(exec_type=ExecType.CANCEL_REJECT, cum_qty=cum, leaves_qty=0,
                          reason=venue_reason(text, "STATUS_UNRESOLVED", cl_ord_id=cl_ord_id, state=state), **base)
    if unknown:
        reason = venue_reason(text, RejectCode.ORDER_UNKNOWN, cl_ord_id=cl_ord_id)
    elif filled and not _REASON.match(text):
        reason = f"ORDER_NOT_OPEN: cl_ord_id={cl_ord_id} state=FILLED px=limit_estimate"
    else:
        reason = venue_reason(text, "CANCEL_REJECTED", cl_ord_id=cl_ord_id, state=state)
    return OrderEvent(exec_type=ExecType.CANCEL_REJECT, cum_qty=cum, leaves_qty=0, reason=reason, **base)


def message_reject(f: Fields, ref_msg_type: str, entry: OrderBookEntry | None, venue: str, instrument: str,
                   cl_ord_id: str) -> OrderEvent:
    """A session-level Reject (35=3) or BusinessMessageReject (35=j) of one of our messages about
    order `cl_ord_id`: a refused order is rejected; a refused cancel or status query leaves the
    order in doubt (CANCEL_REJECT) with the reason the venue gave."""
    order = entry.order if entry is not None else None
    side = order.side if order is not None else Side.BUY
    qty = order.qty if order is not None else 0
    msg = "session_reject" if f.msg_type == "3" else "business_reject"
    text = f.get(wire.TEXT)
    ref_tag = f.get(wire.REF_TAG_ID)
    if ref_msg_type == "D":
        reason = venue_reason(text, RejectCode.VENUE_REJECT, msg=msg, ref_tag=ref_tag)
        kind = ExecType.REJECT
    else:
        reason = venue_reason(text, "VENUE_UNSUPPORTED", msg_type=ref_msg_type, msg=msg, ref_tag=ref_tag)
        if _REASON.match(text):
            reason = f"VENUE_UNSUPPORTED: msg_type={ref_msg_type} {text}"
        kind = ExecType.CANCEL_REJECT
    return OrderEvent(cl_ord_id=cl_ord_id, exec_type=kind, venue=venue, instrument=instrument, side=side,
                      order_qty=qty, cum_qty=0, leaves_qty=0, reason=reason)
