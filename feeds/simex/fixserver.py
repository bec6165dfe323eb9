"""The simulated exchange behind a FIX acceptor: one FIX venue's wire, translated to and from `SimVenue`.

simex serves a venue of ``kind = "fix"`` named in its ``venues`` list as a real
QuickFIX acceptor on the venue's port(s) (this QuickFIX build has no listening-address
setting: it accepts on every interface). This module is the adapter;
the trading logic stays in `SimVenue`:

- inbound (`parse_order`, `parse_cancel`, `parse_status`, `parse_md_request`):
  a FIX message's `wire.Fields` -> `OrderRequest` / `CancelRequest` /
  `StatusRequest` / `MdRequest`, or a `Refusal` naming why it cannot be used;
- outbound (`exec_report`, `cancel_reject`, `md_snapshot`, `md_reject`,
  `business_reject`): an `OrderEvent` or a `TopOfBook` -> `OutMsg` (the message
  type and its fields in order), which `to_quickfix` turns into a QuickFIX message;
- `FixVenueServer`: owns the venue's `FixEngine` (acceptor), the context of each
  order that came over FIX (session, wire symbol, pending cancels), the
  market-data subscriptions and the scheduled-disconnect state.

Wire decisions beyond the shared conventions (documented here, relied on by tests):

- FIX.4.2 has no ExecType ``I`` (an initiator validating with QuickFIX's FIX42
  dictionary refuses it): a status answer there is ``20=3`` (ExecTransType Status)
  with ``150=D`` (Restated), which `execution.fixorders` reads as a status answer too;
  FIX.4.4 sends ``150=I``. OrdStatus (39) carries the order's state either way.
- OrdRejReason ``103``: 5 for ``ORDER_UNKNOWN``, else 0 on FIX.4.2 and 99 on FIX.4.4.
- An ExecutionReport or OrderCancelReject about an order the venue does not know
  echoes the request's Symbol and Side (they are required on the 4.2 report).
- A NewOrderSingle whose ClOrdID is missing, a cancel or status request missing a
  required tag or naming an unknown symbol (for the status request), and any
  unsupported message type get a BusinessMessageReject (``j``): 380=5 missing
  field, 380=2 unknown security, 380=3 unsupported type, 380=0 anything else.
- An OrderCancelRequest naming an unknown symbol gets an OrderCancelReject with
  ``58=VENUE_REJECT: reason=unknown_symbol symbol=...`` and the order's OrdStatus as
  the venue holds it (8 when it does not know the order).
- Fresh ExecIDs (reports that are not fills) are ``<venue>-<simex epoch>.X<n>``: unique
  across simex restarts, like the venue's own order and fill ids.
- Scheduled disconnects: QuickFIX's ``Session.logout`` disables an acceptor session;
  once it is out, the session is enabled again so each Logon while the venue is down
  reaches ``refuse_logon`` and is answered ``Logout 58=Rejected Logon Attempt:
  SESSION_DOWN: venue=... scheduled_disconnect`` (not a bare disconnect). The Logout
  itself leaves on QuickFIX's next 1 s timer tick.
- A MarketDataRequest is all or nothing: one unknown symbol rejects it (``Y``,
  281=0); 263=0 is answered with one snapshot (the next quote's, if no book is
  known yet); 263=2 ends the subscription with that MDReqID on that session;
  any other 263 -> ``Y`` 281=4; 267 entry types other than bid/offer only ->
  ``Y`` 281=8. Bid and offer are always both sent (full refresh, top of book).
- Snapshots go only to a logged-on session (market data is never queued for a
  resend); execution reports go to QuickFIX whatever the session state, which
  persists them, so a client that reconnects gets them by its resend request.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec

from bus.messages import CancelRequest, ExecType, OrderEvent, OrderRequest, RejectCode, Side, StatusRequest, TimeInForce
from configs.schema import Config
from feeds.book import TopOfBook
from feeds.fix import wire
from feeds.fix.session import FixEngine, SessionEvent, SessionEventKind, add_group, new_message, qf
from feeds.fix.venue import FixSymbols, VenueSymbol, acceptor_sessions

FIX42 = "FIX.4.2"
FIX44 = "FIX.4.4"

# tags this module uses beyond feeds.fix.wire's set
BUSINESS_REJECT_REF_ID = 379
MD_ENTRY_DATE = 272
MD_ENTRY_TIME = 273

_TIF_IN = {"0": TimeInForce.DAY, "3": TimeInForce.IOC}
_TIF_OUT = {TimeInForce.DAY: "0", TimeInForce.IOC: "3"}
_STATE_STATUS = {  # SimVenue's OrderState (as in a reason's state=...) -> OrdStatus (39)
    "PENDING_NEW": "A", "NEW": "0", "PARTIALLY_FILLED": "1", "FILLED": "2", "CANCELLED": "4", "REJECTED": "8",
}

# BusinessRejectReason (380)
BR_OTHER = "0"
BR_UNKNOWN_SECURITY = "2"
BR_UNSUPPORTED_TYPE = "3"
BR_MISSING_FIELD = "5"

# MDReqRejReason (281)
MD_REJ_UNKNOWN_SYMBOL = "0"
MD_REJ_SUBSCRIPTION_TYPE = "4"
MD_REJ_ENTRY_TYPE = "8"


# --- inbound ---------------------------------------------------------------------------------


class Refusal(Exception):
    """An inbound message the venue cannot use.

    `kind` names the class of problem (stable, for counting and once-per-kind
    logging), `text` is the `CATEGORY_CONDITION: key=value` answer sent back,
    `answer` says how: ``er`` (ExecutionReport reject), ``cancel_reject``,
    ``md_reject`` (with `code` = MDReqRejReason) or ``business`` (with `code` =
    BusinessRejectReason).
    """

    def __init__(self, kind: str, text: str, *, answer: str = "business", code: str = BR_OTHER) -> None:
        super().__init__(text)
        self.kind = kind
        self.text = text
        self.answer = answer
        self.code = code


class MdRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A MarketDataRequest (35=V) as the venue acts on it."""

    md_req_id: str
    kind: str  # "snapshot" (263=0), "subscribe" (263=1), "unsubscribe" (263=2)
    instruments: tuple[str, ...] = ()


def _need(fields: wire.Fields, tag: int) -> str:
    """A tag the message cannot do without: missing, it is answered with a BusinessMessageReject."""
    value = fields.get(tag)
    if value == "":
        raise Refusal("missing_tag", f"FIX_MISSING_TAG: tag={tag} msg_type={fields.msg_type}", code=BR_MISSING_FIELD)
    return value


def _order_refusal(kind: str, detail: str) -> Refusal:
    return Refusal(kind, f"{RejectCode.VENUE_REJECT}: reason={kind} {detail}".rstrip(), answer="er")


def map_symbol(fields: wire.Fields, symbols: FixSymbols) -> VenueSymbol | None:
    """The instrument a message's Symbol (55) and optional SecurityExchange (207) name, if any."""
    vs = symbols.instrument(fields.get(wire.SYMBOL))
    if vs is None:
        return None
    exch = fields.get(wire.SECURITY_EXCHANGE)
    if exch and vs.security_exchange and exch != vs.security_exchange:
        return None
    return vs


def trade_id_of(cl_ord_id: str) -> str:
    """xmc's ClOrdIDs start with the trade id (``T000001.a1``); anything else has none."""
    head, dot, _ = cl_ord_id.partition(".")
    return head if dot else ""


def parse_order(fields: wire.Fields, venue: str, symbols: FixSymbols) -> OrderRequest:
    """NewOrderSingle (35=D) -> OrderRequest. Refusal(answer="er") for anything the venue cannot take;
    Refusal(answer="business") when there is no ClOrdID to answer with."""
    cl_ord_id = _need(fields, wire.CL_ORD_ID)
    symbol = fields.get(wire.SYMBOL)
    if not symbol:
        raise _order_refusal("missing_tag", f"tag={wire.SYMBOL}")
    vs = map_symbol(fields, symbols)
    if vs is None:
        exch = fields.get(wire.SECURITY_EXCHANGE)
        raise _order_refusal("unknown_symbol", f"symbol={symbol}" + (f" security_exchange={exch}" if exch else ""))
    for tag in (wire.SIDE, wire.ORD_TYPE, wire.ORDER_QTY):
        if not fields.get(tag):
            raise _order_refusal("missing_tag", f"tag={tag}")
    side = wire.SIDE_OF_CODE.get(fields.get(wire.SIDE))
    if side is None:
        raise _order_refusal("unsupported_side", f"side={fields.get(wire.SIDE)}")
    try:
        qty_f = fields.num(wire.ORDER_QTY)
    except wire.FixError:
        raise _order_refusal("invalid_qty", f"qty={fields.get(wire.ORDER_QTY)}") from None
    if qty_f != int(qty_f):
        raise _order_refusal("invalid_qty", f"qty={fields.get(wire.ORDER_QTY)}")
    ord_type = fields.get(wire.ORD_TYPE)
    price: float | None
    if ord_type == "1":
        price = None
    elif ord_type == "2":
        if not fields.get(wire.PRICE):
            raise _order_refusal("missing_price", f"tag={wire.PRICE}")
        try:
            price = fields.num(wire.PRICE)
        except wire.FixError:
            raise _order_refusal("invalid_price", f"price={fields.get(wire.PRICE)}") from None
    else:
        raise _order_refusal("unsupported_ord_type", f"ord_type={ord_type}")
    tif_raw = fields.get(wire.TIME_IN_FORCE) or "0"
    tif = _TIF_IN.get(tif_raw)
    if tif is None:
        raise _order_refusal("unsupported_tif", f"tif={tif_raw}")
    return OrderRequest(cl_ord_id=cl_ord_id, trade_id=trade_id_of(cl_ord_id), account=fields.get(wire.ACCOUNT),
                        venue=venue, instrument=vs.instrument, side=side, qty=int(qty_f), price=price, tif=tif)


def parse_cancel(fields: wire.Fields, venue: str, symbols: FixSymbols) -> tuple[str, CancelRequest]:
    """OrderCancelRequest (35=F) -> (the cancel's own ClOrdID, CancelRequest of the order in 41)."""
    cancel_id = _need(fields, wire.CL_ORD_ID)
    orig = _need(fields, wire.ORIG_CL_ORD_ID)
    symbol = _need(fields, wire.SYMBOL)
    vs = map_symbol(fields, symbols)
    if vs is None:
        raise Refusal("unknown_symbol", f"{RejectCode.VENUE_REJECT}: reason=unknown_symbol symbol={symbol}", answer="cancel_reject")
    return cancel_id, CancelRequest(cl_ord_id=orig, venue=venue, instrument=vs.instrument)


def parse_status(fields: wire.Fields, venue: str, symbols: FixSymbols) -> StatusRequest:
    """OrderStatusRequest (35=H) -> StatusRequest of the order in 11."""
    cl_ord_id = _need(fields, wire.CL_ORD_ID)
    symbol = _need(fields, wire.SYMBOL)
    if map_symbol(fields, symbols) is None:
        raise Refusal("unknown_symbol", f"{RejectCode.VENUE_REJECT}: reason=unknown_symbol symbol={symbol}",
                      code=BR_UNKNOWN_SECURITY)
    return StatusRequest(cl_ord_id=cl_ord_id, venue=venue)


def parse_md_request(fields: wire.Fields, symbols: FixSymbols) -> MdRequest:
    """MarketDataRequest (35=V) -> MdRequest; Refusal(answer="md_reject") names the MDReqRejReason."""
    md_req_id = _need(fields, wire.MD_REQ_ID)
    sub = fields.get(wire.SUBSCRIPTION_REQUEST_TYPE)
    kind = {"0": "snapshot", "1": "subscribe", "2": "unsubscribe"}.get(sub)
    if kind is None:
        raise Refusal("unsupported_subscription_type", f"MD_UNSUPPORTED: subscription_request_type={sub}",
                      answer="md_reject", code=MD_REJ_SUBSCRIPTION_TYPE)
    if kind == "unsubscribe":
        return MdRequest(md_req_id=md_req_id, kind=kind)
    types = [e.get(wire.MD_ENTRY_TYPE) for e in fields.groups(wire.NO_MD_ENTRY_TYPES, wire.MD_ENTRY_TYPE)]
    if types and not ({"0", "1"} & set(types)):
        raise Refusal("unsupported_entry_type", f"MD_UNSUPPORTED: entry_types={','.join(types)}",
                      answer="md_reject", code=MD_REJ_ENTRY_TYPE)
    instruments: list[str] = []
    entries = list(fields.groups(wire.NO_RELATED_SYM, wire.SYMBOL))
    if not entries:
        raise Refusal("unknown_symbol", "MD_UNKNOWN_SYMBOL: symbol=", answer="md_reject", code=MD_REJ_UNKNOWN_SYMBOL)
    for entry in entries:
        vs = map_symbol(entry, symbols)
        if vs is None:
            raise Refusal("unknown_symbol", f"MD_UNKNOWN_SYMBOL: symbol={entry.get(wire.SYMBOL)}",
                          answer="md_reject", code=MD_REJ_UNKNOWN_SYMBOL)
        if vs.instrument not in instruments:
            instruments.append(vs.instrument)
    return MdRequest(md_req_id=md_req_id, kind=kind, instruments=tuple(instruments))


# --- outbound --------------------------------------------------------------------------------


class OutMsg:
    """An application message to send: its type, body fields in order and at most one repeating group."""

    __slots__ = ("msg_type", "fields", "group", "entries")

    def __init__(self, msg_type: str, fields: list[tuple[int, str]], group: tuple[int, int] | None = None,
                 entries: list[list[tuple[int, str]]] | None = None) -> None:
        self.msg_type = msg_type
        self.fields = fields
        self.group = group  # (count tag, delimiter tag)
        self.entries = entries or []

    def get(self, tag: int, default: str = "") -> str:
        for t, v in self.fields:
            if t == tag:
                return v
        return default

    def has(self, tag: int) -> bool:
        return any(t == tag for t, _ in self.fields)

    def __repr__(self) -> str:
        return f"OutMsg({self.msg_type!r}, {self.fields!r}, {self.entries!r})"


def to_quickfix(out: OutMsg, begin_string: str) -> Any:
    """The QuickFIX message for `out` (sender/target/seq are QuickFIX's, set when it is sent)."""
    m = new_message(begin_string, out.msg_type, out.fields)
    if out.group is not None:
        for entry in out.entries:
            add_group(m, *out.group, entry)
    return m


def fmt_num(x: float) -> str:
    """A price or size as FIX wants it: plain decimal, no exponent, no trailing zeros."""
    s = f"{x:.8f}".rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


def utc_timestamp(ns: int) -> str:
    """UTCTimestamp with milliseconds: YYYYMMDD-HH:MM:SS.sss."""
    secs, rem = divmod(ns, 1_000_000_000)
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(secs)) + f".{rem // 1_000_000:03d}"


def md_date_time(ns: int) -> tuple[str, str]:
    """(MDEntryDate YYYYMMDD, MDEntryTime HH:MM:SS.sss) of a UTC ns time."""
    secs, rem = divmod(ns, 1_000_000_000)
    t = time.gmtime(secs)
    return time.strftime("%Y%m%d", t), time.strftime("%H:%M:%S", t) + f".{rem // 1_000_000:03d}"


def _state_in(reason: str) -> str | None:
    """The OrderState named by a reason's ``state=...`` (ORDER_STATE, ORDER_NOT_OPEN), if any."""
    i = reason.find("state=")
    if i < 0:
        return None
    return reason[i + 6:].split(" ", 1)[0]


def ord_status(ev: OrderEvent) -> str:
    """OrdStatus (39) of the order an event is about, from its state (or cum/leaves)."""
    state = _state_in(ev.reason)
    if state in _STATE_STATUS:
        return _STATE_STATUS[state]  # type: ignore[index]
    kind = ev.exec_type
    if kind is ExecType.REJECT:
        return "8"
    if kind is ExecType.CANCELLED:
        return "4"
    if ev.cum_qty > 0:
        return "2" if ev.leaves_qty == 0 and ev.cum_qty >= ev.order_qty else "1"
    return "0"


def exec_type_code(ev: OrderEvent, version: str) -> str:
    """ExecType (150) of an event (see the module notes for the 4.2 status answer)."""
    kind = ev.exec_type
    if kind is ExecType.ACK:
        return "0"
    if kind is ExecType.FILL:
        if version == FIX42:
            return "2" if ev.leaves_qty == 0 else "1"
        return "F"
    if kind is ExecType.CANCELLED:
        return "4"
    if kind is ExecType.REJECT:
        return "8"
    if kind is ExecType.STATUS:
        return "D" if version == FIX42 else "I"
    raise ValueError(f"FIX_NO_EXEC_TYPE: exec_type={kind.value}")


def ord_rej_reason(reason: str, version: str) -> str:
    if RejectCode.ORDER_UNKNOWN.of(reason):
        return "5"
    return "0" if version == FIX42 else "99"


def cxl_rej_status(reason: str) -> str:
    """OrdStatus (39) on an OrderCancelReject, from the reason."""
    if RejectCode.ORDER_UNKNOWN.of(reason):
        return "8"
    state = _state_in(reason)
    return {"FILLED": "2", "CANCELLED": "4", "REJECTED": "8"}.get(state or "", "0")


def exec_report(ev: OrderEvent, version: str, *, symbol: str, exec_id: str, security_exchange: str = "",
                side: Side | None = None, cancel_id: str = "", account: str = "", now_ns: int = 0) -> OutMsg:
    """ExecutionReport (35=8) of one OrderEvent (not a CANCEL_REJECT: see `cancel_reject`).

    `symbol` (and `security_exchange`) are the wire names of the order's instrument; `side`
    overrides the event's (for unknown orders, whose event carries a placeholder); `cancel_id`
    is the ClOrdID of the cancel this report answers, if it does.
    """
    f: list[tuple[int, str]] = []
    if account:
        f.append((wire.ACCOUNT, account))
    f.append((wire.AVG_PX, fmt_num(ev.avg_px)))
    f.append((wire.CL_ORD_ID, cancel_id or ev.cl_ord_id))
    f.append((wire.CUM_QTY, str(ev.cum_qty)))
    f.append((wire.EXEC_ID, exec_id))
    if version == FIX42:
        f.append((wire.EXEC_TRANS_TYPE, "3" if ev.exec_type is ExecType.STATUS else "0"))
    if ev.exec_type is ExecType.FILL:
        f.append((wire.LAST_PX, fmt_num(ev.last_px)))
        f.append((wire.LAST_QTY, str(ev.last_qty)))
    f.append((wire.ORDER_ID, ev.venue_order_id or "NONE"))
    f.append((wire.ORDER_QTY, str(ev.order_qty)))
    f.append((wire.ORD_STATUS, ord_status(ev)))
    if cancel_id:
        f.append((wire.ORIG_CL_ORD_ID, ev.cl_ord_id))
    f.append((wire.SIDE, wire.SIDE_CODE[side or ev.side]))
    f.append((wire.SYMBOL, symbol))
    if ev.reason:
        f.append((wire.TEXT, ev.reason))
    f.append((wire.TRANSACT_TIME, utc_timestamp(ev.venue_ts_ns or now_ns or time.time_ns())))
    if ev.exec_type is ExecType.REJECT:
        f.append((wire.ORD_REJ_REASON, ord_rej_reason(ev.reason, version)))
    f.append((wire.EXEC_TYPE, exec_type_code(ev, version)))
    f.append((wire.LEAVES_QTY, str(ev.leaves_qty)))
    if security_exchange:
        f.append((wire.SECURITY_EXCHANGE, security_exchange))
    return OutMsg("8", f)


def cancel_reject(ev: OrderEvent, *, cancel_id: str = "", account: str = "", now_ns: int = 0,
                  status: str = "") -> OutMsg:
    """OrderCancelReject (35=9) of a CANCEL_REJECT event (same fields on FIX.4.2 and 4.4); `status`
    overrides the OrdStatus read from the reason."""
    f: list[tuple[int, str]] = []
    if account:
        f.append((wire.ACCOUNT, account))
    f.append((wire.CL_ORD_ID, cancel_id or ev.cl_ord_id))
    f.append((wire.ORDER_ID, ev.venue_order_id or "NONE"))
    f.append((wire.ORD_STATUS, status or cxl_rej_status(ev.reason)))
    f.append((wire.ORIG_CL_ORD_ID, ev.cl_ord_id))
    if ev.reason:
        f.append((wire.TEXT, ev.reason))
    f.append((wire.TRANSACT_TIME, utc_timestamp(ev.venue_ts_ns or now_ns or time.time_ns())))
    f.append((wire.CXL_REJ_REASON, "1" if RejectCode.ORDER_UNKNOWN.of(ev.reason) else "0"))
    f.append((wire.CXL_REJ_RESPONSE_TO, "1"))
    return OutMsg("9", f)


def md_snapshot(tob: TopOfBook, md_req_id: str, vs: VenueSymbol) -> OutMsg:
    """MarketDataSnapshotFullRefresh (35=W): bid and offer of one top of book (same on 4.2 and 4.4)."""
    date, tod = md_date_time(tob.ts_ns)
    f: list[tuple[int, str]] = [(wire.SYMBOL, vs.symbol)]
    if vs.security_exchange:
        f.append((wire.SECURITY_EXCHANGE, vs.security_exchange))
    f.append((wire.MD_REQ_ID, md_req_id))
    entries = [
        [(wire.MD_ENTRY_TYPE, "0"), (wire.MD_ENTRY_PX, fmt_num(tob.bid)), (wire.MD_ENTRY_SIZE, fmt_num(tob.bid_size)),
         (MD_ENTRY_DATE, date), (MD_ENTRY_TIME, tod)],
        [(wire.MD_ENTRY_TYPE, "1"), (wire.MD_ENTRY_PX, fmt_num(tob.ask)), (wire.MD_ENTRY_SIZE, fmt_num(tob.ask_size)),
         (MD_ENTRY_DATE, date), (MD_ENTRY_TIME, tod)],
    ]
    return OutMsg("W", f, (wire.NO_MD_ENTRIES, wire.MD_ENTRY_TYPE), entries)


def md_reject(md_req_id: str, code: str, text: str) -> OutMsg:
    """MarketDataRequestReject (35=Y)."""
    return OutMsg("Y", [(wire.TEXT, text), (wire.MD_REQ_ID, md_req_id), (wire.MD_REQ_REJ_REASON, code)])


def business_reject(ref_msg_type: str, code: str, text: str, *, ref_seq: str = "", ref_id: str = "") -> OutMsg:
    """BusinessMessageReject (35=j)."""
    f: list[tuple[int, str]] = []
    if ref_seq:
        f.append((wire.REF_SEQ_NUM, ref_seq))
    f.append((wire.TEXT, text))
    f.append((wire.REF_MSG_TYPE, ref_msg_type or "?"))
    if ref_id:
        f.append((BUSINESS_REJECT_REF_ID, ref_id))
    f.append((wire.BUSINESS_REJECT_REASON, code))
    return OutMsg("j", f)


# --- the server ------------------------------------------------------------------------------


class OrderCtx:
    """What the adapter remembers of an order that came over FIX (or was asked about over FIX)."""

    __slots__ = ("session", "symbol", "security_exchange", "side", "account", "placed", "cancels")

    def __init__(self, session: str, symbol: str, security_exchange: str, side: Side | None, account: str,
                 placed: bool) -> None:
        self.session = session
        self.symbol = symbol
        self.security_exchange = security_exchange
        self.side = side
        self.account = account
        self.placed = placed  # a NewOrderSingle made it (else only a cancel or status request named it)
        self.cancels: deque[str] = deque()  # ClOrdIDs of cancels not answered yet, oldest first


VenueRequest = OrderRequest | CancelRequest | StatusRequest


class FixVenueServer:
    """One FIX venue served by simex: its acceptor engine, order contexts and market-data subscriptions.

    The owner (simex's loop) calls, all on its one thread:

    - `start()` once, `stop()` on every exit path (register it with `Actor.on_close`);
    - `poll()` when `socket` is readable: the requests to hand to the venue's
      `SimVenue.handle`, in arrival order (bad messages are answered here);
    - `owns(cl_ord_id)` / `report(ev)` for each `OrderEvent` of the venue: the
      reports of orders that came over FIX go back over FIX;
    - `on_quote(tob)` for each quote of the venue (snapshots to subscribers);
    - `set_up(connected)` with `SimVenue.connected(now)`: scheduled disconnects;
    - `detail()` for the actor's status figures.
    """

    def __init__(self, cfg: Config, venue: str, run_dir: str | Path, ctx: Any, *, log: Any = None,
                 clock: Callable[[], int] = time.time_ns, id_prefix: str = "",
                 order_state: Callable[[str], Any] | None = None, engine: Any = None, orders: bool = True) -> None:
        fx = cfg.venues[venue].fix
        if fx is None:
            raise ValueError(f"FIX_VENUE_UNCONFIGURED: venue={venue}")
        self.venue = venue
        self.version = fx.version
        self.symbols = FixSymbols(cfg, venue)
        self.log = log
        self.clock = clock
        self.order_state = order_state  # cl_ord_id -> the venue's OrderState (None: unknown)
        self._ids = f"{venue}-{id_prefix}X"
        self._exec_n = itertools.count(1)
        if engine is None:
            engine = FixEngine("acceptor", acceptor_sessions(run_dir, venue, fx, orders=orders), ctx)
        self.engine = engine
        self.sessions: list[str] = [s.session_id for s in engine.sessions]  # ours first: FIX.4.2:SIMEX->XMC
        self.orders: dict[str, OrderCtx] = {}
        self.books: dict[str, TopOfBook] = {}  # instrument -> latest quote
        self.subs: dict[str, dict[str, tuple[str, ...]]] = {}  # session -> MDReqID -> instruments
        self._once: set[tuple[str, str]] = set()  # (session, MDReqID) of snapshot-only requests still owed
        self._by_inst: dict[str, list[tuple[str, str]]] = {}  # instrument -> [(session, MDReqID)]
        self.up = True
        self._refused_kinds: dict[tuple[str, str], int] = {}
        self.stats = {"fix_in": 0, "fix_bad": 0, "fix_reports": 0, "fix_undeliverable": 0, "fix_md_sent": 0,
                      "fix_logons": 0, "fix_logouts": 0, "fix_quickfix_refused": 0, "fix_scheduled_drops": 0}

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def socket(self) -> Any:
        return self.engine.socket

    def start(self) -> None:
        self.engine.start()

    def stop(self) -> None:
        self.engine.stop()

    # --- inbound -------------------------------------------------------------------------

    def poll(self) -> list[VenueRequest]:
        """Drain the engine's events; returns the requests for the venue, in arrival order."""
        return self.handle(self.engine.drain())

    def handle(self, events: Iterable[SessionEvent]) -> list[VenueRequest]:
        out: list[VenueRequest] = []
        for ev in events:
            try:
                self._event(ev, out)
            except Exception as exc:  # noqa: BLE001 - bad input must never take simex down
                self._refused(ev.session, "?", "internal", f"INTERNAL_ERROR: error={type(exc).__name__}: {exc}")
        return out

    def _event(self, ev: SessionEvent, out: list[VenueRequest]) -> None:
        kind = ev.kind
        if kind is SessionEventKind.APP:
            self.stats["fix_in"] += 1
            self._app(ev.session, ev.raw, out)
        elif kind is SessionEventKind.LOGON:
            self.stats["fix_logons"] += 1
            self._info("fix_logon", session=ev.session)
        elif kind is SessionEventKind.LOGOUT:
            self.stats["fix_logouts"] += 1
            dropped = self._drop_session_subs(ev.session)
            self._info("fix_logout", session=ev.session, md_subscriptions_dropped=dropped)
            if not self.up and ev.session in self.sessions:
                # our logout disabled the session in QuickFIX; enabled again, its next Logon reaches the
                # refusal (`refuse_logon`), which answers with the reason instead of a bare disconnect
                self._enable(ev.session)
        elif kind is SessionEventKind.REFUSED:  # QuickFIX answered it with a session-level Reject
            self.stats["fix_quickfix_refused"] += 1
            self.stats["fix_bad"] += 1
            fields = _try_parse(ev.raw)
            text = fields.get(wire.TEXT) if fields is not None else ""
            ref = fields.get(372) if fields is not None else ""
            self._log_once(ev.session, ref or "?", "session_reject", f"SESSION_REJECT: text={text}", by="quickfix")
        elif kind is SessionEventKind.ADMIN:
            fields = _try_parse(ev.raw)
            self._info("fix_admin", session=ev.session, msg_type=fields.msg_type if fields else "",
                       text=fields.get(wire.TEXT) if fields else "")

    def _app(self, session: str, raw: str, out: list[VenueRequest]) -> None:
        try:
            fields = wire.Fields.parse(raw)
        except wire.FixError as exc:
            self._refused(session, "?", "malformed", str(exc))
            return
        msg_type = fields.msg_type
        seq = fields.get(wire.MSG_SEQ_NUM)
        try:
            if msg_type == "D":
                self._on_order(session, fields, out)
            elif msg_type == "F":
                self._on_cancel(session, fields, out)
            elif msg_type == "H":
                req = parse_status(fields, self.venue, self.symbols)
                self._remember(req.cl_ord_id, session, fields)
                out.append(req)
            elif msg_type == "V":
                self._on_md_request(session, fields)
            else:
                raise Refusal("unsupported_msg_type", f"FIX_UNSUPPORTED: msg_type={msg_type}", code=BR_UNSUPPORTED_TYPE)
        except Refusal as r:
            self._refused(session, msg_type, r.kind, r.text)
            self._answer_refusal(session, fields, r, seq)

    def _on_order(self, session: str, fields: wire.Fields, out: list[VenueRequest]) -> None:
        req = parse_order(fields, self.venue, self.symbols)
        ctx = self.orders.get(req.cl_ord_id)
        vs = self.symbols.wire(req.instrument)
        if ctx is None or not ctx.placed:  # a duplicate ClOrdID keeps the first order's context
            self.orders[req.cl_ord_id] = OrderCtx(session, vs.symbol if vs else fields.get(wire.SYMBOL),
                                                  vs.security_exchange if vs else "", req.side, req.account, True)
        out.append(req)

    def _on_cancel(self, session: str, fields: wire.Fields, out: list[VenueRequest]) -> None:
        cancel_id, req = parse_cancel(fields, self.venue, self.symbols)
        ctx = self._remember(req.cl_ord_id, session, fields)
        ctx.cancels.append(cancel_id)
        out.append(req)

    def _remember(self, cl_ord_id: str, session: str, fields: wire.Fields) -> OrderCtx:
        """The context of an order a cancel or status request names (made from the request if unknown)."""
        ctx = self.orders.get(cl_ord_id)
        if ctx is None:
            vs = map_symbol(fields, self.symbols)
            ctx = OrderCtx(session, vs.symbol if vs else fields.get(wire.SYMBOL),
                           vs.security_exchange if vs else "", wire.SIDE_OF_CODE.get(fields.get(wire.SIDE)),
                           fields.get(wire.ACCOUNT), False)
            self.orders[cl_ord_id] = ctx
        return ctx

    def _on_md_request(self, session: str, fields: wire.Fields) -> None:
        req = parse_md_request(fields, self.symbols)
        subs = self.subs.setdefault(session, {})
        if req.kind == "unsubscribe":
            subs.pop(req.md_req_id, None)
            self._once.discard((session, req.md_req_id))
            self._reindex()
            self._info("fix_md_unsubscribed", session=session, md_req_id=req.md_req_id)
            return
        subs[req.md_req_id] = req.instruments
        key = (session, req.md_req_id)
        if req.kind == "snapshot":
            self._once.add(key)
        else:
            self._once.discard(key)
        self._reindex()
        self._info("fix_md_subscribed", session=session, md_req_id=req.md_req_id, kind=req.kind,
                   instruments=",".join(req.instruments))
        for inst in req.instruments:  # a snapshot now for every book already known
            tob = self.books.get(inst)
            if tob is not None:
                self._send_snapshot(session, req.md_req_id, tob)

    def _answer_refusal(self, session: str, fields: wire.Fields, r: Refusal, seq: str) -> None:
        msg_type = fields.msg_type
        cl_ord_id = fields.get(wire.CL_ORD_ID)
        now = self.clock()
        if r.answer == "er" and cl_ord_id:
            side = wire.SIDE_OF_CODE.get(fields.get(wire.SIDE), Side.BUY)
            try:
                qty = fields.qty(wire.ORDER_QTY)
            except wire.FixError:
                qty = 0
            ev = OrderEvent(cl_ord_id=cl_ord_id, exec_type=ExecType.REJECT, venue=self.venue, instrument="",
                            side=side, order_qty=qty, cum_qty=0, leaves_qty=0, reason=r.text, venue_ts_ns=now)
            vs = map_symbol(fields, self.symbols)
            out = exec_report(ev, self.version, symbol=fields.get(wire.SYMBOL) or "NONE",
                              security_exchange=vs.security_exchange if vs else "", exec_id=self._exec_id(),
                              account=fields.get(wire.ACCOUNT))
        elif r.answer == "cancel_reject" and cl_ord_id:
            orig = fields.get(wire.ORIG_CL_ORD_ID)
            ev = OrderEvent(cl_ord_id=orig, exec_type=ExecType.CANCEL_REJECT, venue=self.venue, instrument="",
                            side=Side.BUY, order_qty=0, cum_qty=0, leaves_qty=0, reason=r.text, venue_ts_ns=now)
            out = cancel_reject(ev, cancel_id=cl_ord_id, account=fields.get(wire.ACCOUNT),
                                status=self._status_of(orig))
        elif r.answer == "md_reject" and fields.get(wire.MD_REQ_ID):
            out = md_reject(fields.get(wire.MD_REQ_ID), r.code, r.text)
        else:
            out = business_reject(msg_type, r.code if r.answer == "business" else BR_OTHER, r.text,
                                  ref_seq=seq, ref_id=cl_ord_id or fields.get(wire.MD_REQ_ID))
        self._send(session, out)

    # --- outbound ------------------------------------------------------------------------

    def owns(self, cl_ord_id: str) -> bool:
        """True when reports about this order go back over FIX (it came, or was asked about, over FIX)."""
        return cl_ord_id in self.orders

    def report(self, ev: OrderEvent) -> bool:
        """Send the report of one of the venue's events to the session its order came from."""
        ctx = self.orders.get(ev.cl_ord_id)
        if ctx is None:
            return False
        cancel_id = ""
        if ev.exec_type is ExecType.CANCEL_REJECT or (
                ev.exec_type is ExecType.CANCELLED and ev.reason.startswith("CANCEL_REQUESTED")):
            cancel_id = ctx.cancels.popleft() if ctx.cancels else ""
        now = self.clock()
        if ev.exec_type is ExecType.CANCEL_REJECT:
            out = cancel_reject(ev, cancel_id=cancel_id, account=ctx.account, now_ns=now)
        else:
            out = exec_report(ev, self.version, symbol=ctx.symbol or self._wire_symbol(ev.instrument),
                              security_exchange=ctx.security_exchange, exec_id=ev.exec_id or self._exec_id(),
                              side=ctx.side, cancel_id=cancel_id, account=ctx.account, now_ns=now)
        ok = self._send(ctx.session, out)
        if ok:
            self.stats["fix_reports"] += 1
        return ok

    def on_quote(self, tob: TopOfBook) -> int:
        """Remember the venue's book and send a snapshot to each subscriber of it; returns how many."""
        self.books[tob.instrument] = tob
        subscribers = self._by_inst.get(tob.instrument)
        if not subscribers:
            return 0
        n = 0
        for session, md_req_id in list(subscribers):
            if self._send_snapshot(session, md_req_id, tob):
                n += 1
        return n

    def _send_snapshot(self, session: str, md_req_id: str, tob: TopOfBook) -> bool:
        if not self.engine.logged_on(session):
            return False  # market data is never queued for a resend
        vs = self.symbols.wire(tob.instrument)
        if vs is None:
            return False
        ok = self._send(session, md_snapshot(tob, md_req_id, vs))
        if ok:
            self.stats["fix_md_sent"] += 1
            if (session, md_req_id) in self._once:  # snapshot-only request: answered
                self._once.discard((session, md_req_id))
                self.subs.get(session, {}).pop(md_req_id, None)
                self._reindex()
        return ok

    def _send(self, session: str, out: OutMsg) -> bool:
        try:
            ok = bool(self.engine.send(session, to_quickfix(out, self.version)))
        except Exception as exc:  # noqa: BLE001 - a message QuickFIX will not take is counted, not fatal
            self._log_once(session, out.msg_type, "send_failed", f"FIX_SEND_FAILED: error={exc!r}", by="simex")
            ok = False
        if not ok:
            self.stats["fix_undeliverable"] += 1
        return ok

    # --- scheduled disconnects ---------------------------------------------------------

    def set_up(self, up: bool) -> bool:
        """Follow the venue's session schedule: going down logs every session out and refuses logons
        until it is up again. Returns True when the state changed."""
        if up == self.up:
            return False
        self.up = up
        if not up:
            why = f"{RejectCode.SESSION_DOWN}: venue={self.venue} scheduled_disconnect"
            self.stats["fix_scheduled_drops"] += 1
            for sid in self.sessions:
                self.engine.refuse_logon[sid] = why
                self.engine.disconnect(sid, why)
            for ctx in self.orders.values():  # their answers fall due while down: lost with the session
                ctx.cancels.clear()
            self._info("fix_session_scheduled_down", reason=why)
        else:
            for sid in self.sessions:
                self.engine.refuse_logon.pop(sid, None)
                self._enable(sid)
            self._info("fix_session_scheduled_up")
        return True

    def _enable(self, sid: str) -> None:
        """Let QuickFIX accept the session's Logon again (`Session.logout` disables an acceptor session
        until `Session.logon` is called)."""
        enable = getattr(self.engine, "enable", None)
        if enable is not None:
            enable(sid)
            return
        if qf is None:
            return
        try:
            begin, comp_ids = sid.split(":", 1)
            sender, target = comp_ids.split("->", 1)
            session = qf.Session.lookupSession(qf.SessionID(begin, sender, target))
            if session is not None:
                session.logon()
        except Exception as exc:  # noqa: BLE001 - never fatal; logged
            self._log_once(sid, "A", "enable_failed", f"FIX_ENABLE_FAILED: error={exc!r}", by="simex")

    # --- figures and logs --------------------------------------------------------------

    def detail(self) -> dict[str, float]:
        v = self.venue
        d = {f"{v}.{k}": float(n) for k, n in self.stats.items() if n}
        d[f"{v}.fix_bad"] = float(self.stats["fix_bad"])
        d[f"{v}.fix_up"] = 1.0 if self.up else 0.0
        d[f"{v}.fix_md_subscriptions"] = float(sum(len(s) for s in self.subs.values()))
        try:
            d.update(self.engine.status_detail(v))  # fix.<venue>.<SENDER->TARGET>.<field>
        except Exception:  # noqa: BLE001 - figures are best effort
            pass
        return d

    def _status_of(self, cl_ord_id: str) -> str:
        """OrdStatus of an order as the venue holds it ("8": the venue does not know it)."""
        state = self.order_state(cl_ord_id) if self.order_state is not None else None
        if state is None:
            return "8"
        return _STATE_STATUS.get(getattr(state, "value", str(state)), "0")

    def _exec_id(self) -> str:
        return f"{self._ids}{next(self._exec_n)}"

    def _wire_symbol(self, instrument: str) -> str:
        vs = self.symbols.wire(instrument)
        return vs.symbol if vs is not None else (instrument or "NONE")

    def _drop_session_subs(self, session: str) -> int:
        dropped = len(self.subs.pop(session, {}))
        self._once = {k for k in self._once if k[0] != session}
        self._reindex()
        return dropped

    def _reindex(self) -> None:
        by: dict[str, list[tuple[str, str]]] = {}
        for session, reqs in self.subs.items():
            for md_req_id, insts in reqs.items():
                for inst in insts:
                    by.setdefault(inst, []).append((session, md_req_id))
        self._by_inst = by

    def _refused(self, session: str, msg_type: str, kind: str, text: str) -> None:
        self.stats["fix_bad"] += 1
        self._log_once(session, msg_type, kind, text, by="simex")

    def _log_once(self, session: str, msg_type: str, kind: str, text: str, *, by: str) -> None:
        """`fix_message_refused`, logged the first time a (message type, kind) is seen and every 1000th."""
        key = (msg_type, kind)
        n = self._refused_kinds.get(key, 0) + 1
        self._refused_kinds[key] = n
        if self.log is not None and (n == 1 or n % 1000 == 0):
            self.log.warning("fix_message_refused", venue=self.venue, session=session, msg_type=msg_type, kind=kind,
                             reason=text[:200], count=n, by=by)

    def _info(self, event: str, **kw: Any) -> None:
        if self.log is not None:
            self.log.info(event, venue=self.venue, **kw)


def _try_parse(raw: str) -> wire.Fields | None:
    try:
        return wire.Fields.parse(raw)
    except wire.FixError:
        return None
