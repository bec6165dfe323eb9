"""The FIX order gateway: one venue's order session over QuickFIX, in the `OrderGateway` shape.

`send` is a NewOrderSingle, `cancel` an OrderCancelRequest, `status` an
OrderStatusRequest; the venue's answers come back through `on_event` (called
from the executor's loop with what `FixEngine.drain` handed over) as the
`OrderEvent`s `execution.fixorders` maps them to. The gateway never decides
anything about a trade; it adapts to what the venue can do:

- no IOC (``ioc = false``): the order goes out DAY and is cancelled as soon as
  the venue acknowledges it (its answer ends the order like an IOC remainder);
- no OrderStatusRequest (``status_requests = false``): a status query becomes a
  cancel request whose answer tells the order's fate (a *probe*);
- no market orders: refused locally (``xmc check`` makes unwinds marketable
  limits instead, so this only guards a misconfiguration).

While the session is not logged on nothing is sent: an order, cancel or query
gets the same local ``SESSION_DOWN: venue=...`` answer the simulator gives, one
loop turn later (through `take_local`), so the pair trade treats a FIX outage
exactly like a simulated one. A resend of an order after a reconnect never
leaves (the session turns it into a gap fill: see `feeds.fix.session`), so a
ClOrdID is never on the wire twice; a cancel's own ClOrdID carries this
process's start time, so it is new after a restart too.
"""

from __future__ import annotations

import time
from typing import Callable

import msgspec

from bus.messages import CancelRequest, ExecType, OrderEvent, OrderRequest, RejectCode, Side, StatusRequest, TimeInForce
from configs.schema import Config
from execution.fixorders import OrderBookEntry, cancel_reject, execution_report, message_reject
from feeds.fix import wire
from feeds.fix.session import FixEngine, SessionEvent, SessionEventKind, new_message, qf
from feeds.fix.venue import FixSymbols, VenueSymbol
from feeds.fix.wire import Fields, FixError

SEEN_EXEC_KEEP = 50_000


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


class FixGateway:
    """`OrderGateway` over one FIX order session (see the module docstring)."""

    def __init__(self, venue: str, cfg: Config, engine: FixEngine, session: str,
                 on_local: Callable[[], None]) -> None:
        fx = cfg.venues[venue].fix
        assert fx is not None
        self.venue = venue
        self.fx = fx
        self.engine = engine
        self.session = session
        self.symbols = FixSymbols(cfg, venue)
        self._on_local = on_local
        self._begin = fx.version
        self._tag = _base36(time.time_ns() // 1_000_000)[-7:]  # cancel ids unique across restarts
        self._cancel_n = 0
        self.book: dict[str, OrderBookEntry] = {}
        self.cancel_ids: dict[str, str] = {}  # a cancel's ClOrdID -> the order's ClOrdID
        self._seen_exec: dict[str, None] = {}
        self.local: list[OrderEvent] = []
        self._templates: dict[tuple[str, Side], "qf.Message"] = {}
        self.stats = {"orders": 0, "cancels": 0, "status_requests": 0, "status_probes": 0, "emulated_ioc": 0,
                      "reports": 0, "dup_reports": 0, "bad_messages": 0, "unsupported": 0, "session_down": 0}

    # ---- OrderGateway ------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.engine.logged_on(self.session)

    def remember(self, order: OrderRequest) -> None:
        """An order sent before a restart (from the write-ahead log): so it can be queried or cancelled."""
        self.book.setdefault(order.cl_ord_id, OrderBookEntry(order))

    def send(self, order: OrderRequest) -> None:
        entry = self.book.setdefault(order.cl_ord_id, OrderBookEntry(order))
        entry.order = order
        vs = self.symbols.wire(order.instrument)
        if vs is None:
            return self._local_reject(order, f"{RejectCode.VENUE_REJECT}: reason=no_venue_symbol instrument={order.instrument}")
        if order.price is None and not self.fx.market_orders:
            return self._local_reject(order, f"VENUE_UNSUPPORTED: order=market venue={self.venue}")
        if not self.connected:
            return self._local_reject(order, f"{RejectCode.SESSION_DOWN}: venue={self.venue}")
        ioc = order.tif is TimeInForce.IOC
        if ioc and not self.fx.ioc:
            self.stats["emulated_ioc"] += 1
            entry.probe_cancels.add("")  # marker: cancel it on its acknowledgement
            ioc = False
        m = qf.Message(self._order_template(order.instrument, vs, order.side))  # only what changes is set
        m.setField(wire.CL_ORD_ID, order.cl_ord_id)
        m.setField(qf.TransactTime())
        m.setField(wire.ORDER_QTY, str(order.qty))
        if order.price is None:
            m.setField(wire.ORD_TYPE, "1")
        else:
            m.setField(wire.ORD_TYPE, "2")
            m.setField(wire.PRICE, _px(order.price))
        m.setField(wire.TIME_IN_FORCE, "3" if ioc else "0")
        if not self.engine.send(self.session, m):
            return self._local_reject(order, f"{RejectCode.SESSION_DOWN}: venue={self.venue}")
        self.stats["orders"] += 1

    def cancel(self, req: CancelRequest) -> None:
        self._cancel(req.cl_ord_id, probe=False)

    def status(self, req: StatusRequest) -> None:
        entry = self.book.get(req.cl_ord_id)
        if entry is None:
            return self._local_answer(req.cl_ord_id, ExecType.CANCEL_REJECT,
                                      f"GATEWAY_ORDER_UNKNOWN: cl_ord_id={req.cl_ord_id} venue={self.venue}")
        if not self.fx.status_requests:
            self.stats["status_probes"] += 1
            return self._cancel(req.cl_ord_id, probe=True)
        if not self.connected:
            return self._local_answer(req.cl_ord_id, ExecType.REJECT, f"{RejectCode.SESSION_DOWN}: venue={self.venue}")
        vs = self.symbols.wire(entry.order.instrument)
        m = self._message("H")
        m.setField(wire.CL_ORD_ID, req.cl_ord_id)
        if vs is not None:
            self._instrument(m, vs)
        m.setField(wire.SIDE, wire.SIDE_CODE[entry.order.side])
        if not self.engine.send(self.session, m):
            return self._local_answer(req.cl_ord_id, ExecType.REJECT, f"{RejectCode.SESSION_DOWN}: venue={self.venue}")
        self.stats["status_requests"] += 1

    def _cancel(self, cl_ord_id: str, probe: bool) -> None:
        entry = self.book.get(cl_ord_id)
        if entry is None:
            return self._local_answer(cl_ord_id, ExecType.CANCEL_REJECT,
                                      f"GATEWAY_ORDER_UNKNOWN: cl_ord_id={cl_ord_id} venue={self.venue}")
        if not self.connected:
            kind = ExecType.REJECT if probe else ExecType.CANCEL_REJECT  # as the simulator answers each
            return self._local_answer(cl_ord_id, kind, f"{RejectCode.SESSION_DOWN}: venue={self.venue}")
        order = entry.order
        self._cancel_n += 1
        cancel_id = f"{cl_ord_id}~{self._tag}{self._cancel_n}"
        vs = self.symbols.wire(order.instrument)
        m = self._message("F")
        m.setField(wire.CL_ORD_ID, cancel_id)
        m.setField(wire.ORIG_CL_ORD_ID, cl_ord_id)
        if vs is not None:
            self._instrument(m, vs)
        m.setField(wire.SIDE, wire.SIDE_CODE[order.side])
        m.setField(wire.ORDER_QTY, str(order.qty))
        m.setField(qf.TransactTime())
        self.cancel_ids[cancel_id] = cl_ord_id
        if probe:
            entry.probe_cancels.add(cancel_id)
        if not self.engine.send(self.session, m):
            kind = ExecType.REJECT if probe else ExecType.CANCEL_REJECT
            return self._local_answer(cl_ord_id, kind, f"{RejectCode.SESSION_DOWN}: venue={self.venue}")
        self.stats["cancels"] += 1

    # ---- answers -----------------------------------------------------------------------

    def on_event(self, ev: SessionEvent) -> list[OrderEvent]:
        """The order events in one message QuickFIX handed over (APP or ADMIN); bad ones raise FixError."""
        if ev.kind not in (SessionEventKind.APP, SessionEventKind.ADMIN):
            return []
        f = Fields.parse(ev.raw)
        mt = f.msg_type
        if ev.kind is SessionEventKind.ADMIN and mt != "3":
            return []  # a Logout's reason (in the session view) or a ResendRequest: nothing for an order
        if mt == "8":
            return self._exec_report(f)
        if mt == "9":
            cid, entry, probe = self._resolve(f)
            return [cancel_reject(f, entry, self.venue, self._instrument_of(entry, f), cid, probe)]
        if mt in ("3", "j"):
            ref = self.engine.sent.get((self.session, int(f.num(wire.REF_SEQ_NUM, 0))))
            ref_type = f.get(wire.REF_MSG_TYPE) or (ref[0] if ref else "")
            cid = ref[1] if ref else ""
            self.stats["unsupported"] += 1
            if not cid or ref_type not in ("D", "F", "H"):
                raise FixError(f"FIX_REJECT_UNMATCHED: msg_type={mt} ref_seq={f.get(wire.REF_SEQ_NUM)} "
                               f"ref_msg_type={ref_type or '?'}")
            probe = False
            order_id = self.cancel_ids.get(cid, cid)
            entry = self.book.get(order_id)
            if ref_type == "F" and entry is not None:
                probe = cid in entry.probe_cancels
            out = message_reject(f, ref_type, entry, self.venue, self._instrument_of(entry, f), order_id)
            if probe and ref_type == "F":  # the probe itself is unsupported: still in doubt, nothing learnt
                out = msgspec.structs.replace(out, exec_type=ExecType.CANCEL_REJECT)
            return [out]
        raise FixError(f"FIX_UNEXPECTED: msg_type={mt}")

    def _exec_report(self, f: Fields) -> list[OrderEvent]:
        cid, entry, probe = self._resolve(f)
        ev = execution_report(f, entry, self.venue, self._instrument_of(entry, f), cid, probe)
        if ev is None:
            return []
        if ev.exec_type is ExecType.FILL:  # marked seen only once usable: a corrected resend still counts
            if ev.exec_id in self._seen_exec:
                self.stats["dup_reports"] += 1
                return []
            self._seen_exec[ev.exec_id] = None
            if len(self._seen_exec) > SEEN_EXEC_KEEP:
                for old in list(self._seen_exec)[: SEEN_EXEC_KEEP // 2]:
                    del self._seen_exec[old]
        self.stats["reports"] += 1
        if (ev.exec_type is ExecType.ACK and entry is not None and "" in entry.probe_cancels
                and ev.leaves_qty > 0):
            entry.probe_cancels.discard("")
            self._cancel(cid, probe=False)  # emulated IOC: what did not fill at once is cancelled now
        return [ev]

    def _resolve(self, f: Fields) -> tuple[str, OrderBookEntry | None, bool]:
        """The order a report is about (a cancel's answer names the cancel: 11 -> 41), and whether
        it answers a status probe."""
        cid = f.need(wire.CL_ORD_ID)
        order_id = self.cancel_ids.get(cid)
        if order_id is None:
            orig = f.get(wire.ORIG_CL_ORD_ID)
            order_id = orig if orig and cid not in self.book and orig in self.book else cid
        entry = self.book.get(order_id)
        probe = entry is not None and cid in entry.probe_cancels
        return order_id, entry, probe

    def _instrument_of(self, entry: OrderBookEntry | None, f: Fields) -> str:
        if entry is not None:
            return entry.order.instrument
        vs = self.symbols.instrument(f.get(wire.SYMBOL))
        return vs.instrument if vs is not None else ""

    def take_local(self) -> list[OrderEvent]:
        """Answers the gateway gave without the venue (session down, unknown order), oldest first."""
        out, self.local = self.local, []
        return out

    def _local_reject(self, order: OrderRequest, reason: str) -> None:
        if RejectCode.SESSION_DOWN.of(reason):
            self.stats["session_down"] += 1
        self.local.append(OrderEvent(cl_ord_id=order.cl_ord_id, exec_type=ExecType.REJECT, venue=self.venue,
                                     instrument=order.instrument, side=order.side, order_qty=order.qty, cum_qty=0,
                                     leaves_qty=0, reason=reason))
        self._on_local()

    def _local_answer(self, cl_ord_id: str, kind: ExecType, reason: str) -> None:
        entry = self.book.get(cl_ord_id)
        order = entry.order if entry is not None else None
        if RejectCode.SESSION_DOWN.of(reason):
            self.stats["session_down"] += 1
        self.local.append(OrderEvent(cl_ord_id=cl_ord_id, exec_type=kind, venue=self.venue,
                                     instrument=order.instrument if order else "",
                                     side=order.side if order else Side.BUY, order_qty=order.qty if order else 0,
                                     cum_qty=0, leaves_qty=0, reason=reason))
        self._on_local()

    # ---- building --------------------------------------------------------------------

    def _order_template(self, instrument: str, vs: VenueSymbol, side: Side) -> "qf.Message":
        """A NewOrderSingle with the fields that never change for an instrument and side (copied per order)."""
        key = (instrument, side)
        m = self._templates.get(key)
        if m is None:
            m = self._message("D")
            m.setField(wire.HANDL_INST, "1")
            self._instrument(m, vs)
            m.setField(wire.SIDE, wire.SIDE_CODE[side])
            if self.fx.account:
                m.setField(wire.ACCOUNT, self.fx.account)
            self._templates[key] = m
        return m

    def _message(self, msg_type: str) -> "qf.Message":
        return new_message(self._begin, msg_type)

    @staticmethod
    def _instrument(m: "qf.Message", vs: VenueSymbol) -> None:
        m.setField(wire.SYMBOL, vs.symbol)
        if vs.security_exchange:
            m.setField(wire.SECURITY_EXCHANGE, vs.security_exchange)

    def detail(self) -> dict[str, float]:
        d = self.engine.status_detail(self.venue)
        for k, n in self.stats.items():
            if n:
                d[f"fix.{self.venue}.{k}"] = float(n)
        return d


def _px(price: float) -> str:
    return f"{price:.10f}".rstrip("0").rstrip(".")
