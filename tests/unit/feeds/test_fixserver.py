"""simex's FIX adapter: FIX fields <-> venue requests and reports, on FIX.4.2 and FIX.4.4.

Every outbound message is also checked against QuickFIX's own data dictionary
(what xmc's initiators validate with).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from bus.messages import CancelRequest, ExecType, OrderEvent, OrderRequest, Side, StatusRequest, TimeInForce
from configs.schema import Config
from feeds.book import TopOfBook
from feeds.fix import wire
from feeds.fix.session import SessionEvent, SessionEventKind, SessionSpec, dictionary_path
from feeds.fix.venue import FixSymbols
from feeds.simex import fixserver as fs
from feeds.simex.matching import OrderState

qf = pytest.importorskip("quickfix")

VERSIONS = ["FIX.4.2", "FIX.4.4"]
SOH = "\x01"
T0 = 1_767_578_400_123_456_789  # 2026-01-05T02:00:00.123456789Z


def config(version: str = "FIX.4.2") -> Config:
    raw = {
        "venues": {"COMEX": {"kind": "fix", "fix": {
            "port": 19876, "version": version, "sender_comp_id": "XMC", "target_comp_id": "SIMEX",
            "symbols": {"GC": {"symbol": "GC", "security_exchange": "XCEC"}},
            "md": {"sender_comp_id": "XMCMD"}}}},
        "instruments": {
            "GC": {"venue": "COMEX", "symbol": "GCZ6", "tick": 0.1, "multiplier": 100.0, "currency": "USD",
                   "sim": {"start": 2400.0}},
            "SI": {"venue": "COMEX", "symbol": "SIZ6", "tick": 0.005, "multiplier": 5000.0, "currency": "USD",
                   "sim": {"start": 30.0}},
        },
        "actors": {"simex": {"kind": "simex", "venues": ["COMEX"]}},
    }
    return msgspec.convert(raw, Config)


def raw(msg_type: str, *pairs: tuple[int, object], version: str = "FIX.4.2", seq: int = 7) -> str:
    """A message as QuickFIX hands it over (header, body in the given order, trailer)."""
    head = [(8, version), (9, 0), (35, msg_type), (34, seq), (49, "XMC"), (56, "SIMEX")]
    return "".join(f"{t}={v}{SOH}" for t, v in [*head, *pairs, (10, "000")])


def fields(msg_type: str, *pairs: tuple[int, object], version: str = "FIX.4.2", seq: int = 7) -> wire.Fields:
    return wire.Fields.parse(raw(msg_type, *pairs, version=version, seq=seq))


_DICTS: dict[str, Any] = {}


def validated(out: fs.OutMsg, version: str) -> wire.Fields:
    """Serialise through QuickFIX, re-parse with its data dictionary and validate; the fields as sent."""
    dd = _DICTS.get(version)
    if dd is None:
        dd = _DICTS[version] = qf.DataDictionary(str(dictionary_path(version)))
    m = fs.to_quickfix(out, version)
    h = m.getHeader()
    h.setField(49, "SIMEX")
    h.setField(56, "XMC")
    h.setField(34, "1")
    h.setField(52, "20260105-02:00:00.000")
    text = m.toString()
    dd.validate(qf.Message(text, dd, True))
    return wire.Fields.parse(text)


def event(kind: ExecType, **kw: Any) -> OrderEvent:
    base = dict(cl_ord_id="T000001.a1", exec_type=kind, venue="COMEX", instrument="GC", side=Side.SELL, order_qty=5,
                cum_qty=0, leaves_qty=5, venue_order_id="COMEX-000001.O1", venue_ts_ns=T0)
    base.update(kw)
    return OrderEvent(**base)


def tob(bid: float = 2400.1, ask: float = 2400.3, instrument: str = "GC", ts: int = T0) -> TopOfBook:
    return TopOfBook(venue="COMEX", instrument=instrument, symbol="GCZ6", bid=bid, ask=ask, bid_size=12, ask_size=7,
                     ts_ns=ts, seq=1)


# --- inbound -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_new_order_single_becomes_an_order_request(version: str) -> None:
    syms = FixSymbols(config(version), "COMEX")
    f = fields("D", (1, "ACC1"), (11, "T000042.a1"), (21, 1), (38, 3), (40, 2), (44, "2400.5"), (54, 2), (55, "GC"),
               (59, 3), (60, "20260105-02:00:00"), (207, "XCEC"), version=version)
    req = fs.parse_order(f, "COMEX", syms)
    assert req == OrderRequest(cl_ord_id="T000042.a1", trade_id="T000042", account="ACC1", venue="COMEX",
                               instrument="GC", side=Side.SELL, qty=3, price=2400.5, tif=TimeInForce.IOC)


def test_market_day_order_without_account_or_trade_id() -> None:
    syms = FixSymbols(config(), "COMEX")
    req = fs.parse_order(fields("D", (11, "X1"), (38, 1), (40, 1), (54, 1), (55, "GC")), "COMEX", syms)
    assert (req.price, req.tif, req.side, req.account, req.trade_id) == (None, TimeInForce.DAY, Side.BUY, "", "")


@pytest.mark.parametrize("pairs, kind, text", [
    (((11, "X1"), (38, 1), (40, 2), (44, 1), (54, 1), (55, "ZZ")), "unknown_symbol",
     "VENUE_REJECT: reason=unknown_symbol symbol=ZZ"),
    (((11, "X1"), (38, 1), (40, 2), (44, 1), (54, 1), (55, "GC"), (207, "XNYM")), "unknown_symbol",
     "VENUE_REJECT: reason=unknown_symbol symbol=GC security_exchange=XNYM"),
    (((11, "X1"), (40, 2), (44, 1), (54, 1), (55, "GC")), "missing_tag", "VENUE_REJECT: reason=missing_tag tag=38"),
    (((11, "X1"), (38, 1), (40, 2), (54, 1), (55, "GC")), "missing_price", "VENUE_REJECT: reason=missing_price tag=44"),
    (((11, "X1"), (38, 1), (40, 3), (54, 1), (55, "GC")), "unsupported_ord_type",
     "VENUE_REJECT: reason=unsupported_ord_type ord_type=3"),
    (((11, "X1"), (38, 1), (40, 1), (54, 5), (55, "GC")), "unsupported_side",
     "VENUE_REJECT: reason=unsupported_side side=5"),
    (((11, "X1"), (38, 1), (40, 1), (54, 1), (55, "GC"), (59, 1)), "unsupported_tif",
     "VENUE_REJECT: reason=unsupported_tif tif=1"),
    (((11, "X1"), (38, "1.5"), (40, 1), (54, 1), (55, "GC")), "invalid_qty", "VENUE_REJECT: reason=invalid_qty qty=1.5"),
    (((11, "X1"), (38, "abc"), (40, 1), (54, 1), (55, "GC")), "invalid_qty", "VENUE_REJECT: reason=invalid_qty qty=abc"),
])
def test_orders_that_do_not_map_are_refused_with_an_execution_report_reason(pairs: tuple, kind: str, text: str) -> None:
    with pytest.raises(fs.Refusal) as exc:
        fs.parse_order(fields("D", *pairs), "COMEX", FixSymbols(config(), "COMEX"))
    assert (exc.value.kind, exc.value.text, exc.value.answer) == (kind, text, "er")


def test_an_order_without_client_order_id_is_a_business_reject() -> None:
    with pytest.raises(fs.Refusal) as exc:
        fs.parse_order(fields("D", (38, 1), (40, 1), (54, 1), (55, "GC")), "COMEX", FixSymbols(config(), "COMEX"))
    assert (exc.value.answer, exc.value.code, exc.value.text) == ("business", "5", "FIX_MISSING_TAG: tag=11 msg_type=D")


def test_cancel_and_status_requests() -> None:
    syms = FixSymbols(config(), "COMEX")
    cancel_id, req = fs.parse_cancel(fields("F", (11, "T1.c1"), (41, "T1.a1"), (54, 1), (55, "GC")), "COMEX", syms)
    assert cancel_id == "T1.c1" and req == CancelRequest(cl_ord_id="T1.a1", venue="COMEX", instrument="GC")
    assert fs.parse_status(fields("H", (11, "T1.a1"), (54, 1), (55, "GC")), "COMEX", syms) == StatusRequest(
        cl_ord_id="T1.a1", venue="COMEX")
    with pytest.raises(fs.Refusal) as exc:
        fs.parse_cancel(fields("F", (11, "T1.c1"), (41, "T1.a1"), (54, 1), (55, "ZZ")), "COMEX", syms)
    assert exc.value.answer == "cancel_reject" and exc.value.text == "VENUE_REJECT: reason=unknown_symbol symbol=ZZ"
    with pytest.raises(fs.Refusal) as exc:
        fs.parse_cancel(fields("F", (11, "T1.c1"), (54, 1), (55, "GC")), "COMEX", syms)
    assert (exc.value.answer, exc.value.code) == ("business", "5")
    with pytest.raises(fs.Refusal) as exc:
        fs.parse_status(fields("H", (11, "T1.a1"), (54, 1), (55, "ZZ")), "COMEX", syms)
    assert (exc.value.answer, exc.value.code) == ("business", "2")


def test_market_data_requests() -> None:
    syms = FixSymbols(config(), "COMEX")
    req = fs.parse_md_request(fields("V", (146, 2), (55, "GC"), (207, "XCEC"), (55, "SIZ6"), (262, "m1"), (263, 1),
                                     (264, 1), (267, 2), (269, 0), (269, 1)), syms)
    assert req == fs.MdRequest(md_req_id="m1", kind="subscribe", instruments=("GC", "SI"))
    assert fs.parse_md_request(fields("V", (262, "m1"), (263, 2)), syms).kind == "unsubscribe"
    assert fs.parse_md_request(fields("V", (146, 1), (55, "GC"), (262, "m2"), (263, 0)), syms).kind == "snapshot"
    for pairs, code, text in (
        (((146, 2), (55, "GC"), (55, "ZZ"), (262, "m1"), (263, 1)), "0", "MD_UNKNOWN_SYMBOL: symbol=ZZ"),
        (((146, 1), (55, "GC"), (262, "m1"), (263, 7)), "4", "MD_UNSUPPORTED: subscription_request_type=7"),
        (((146, 1), (55, "GC"), (262, "m1"), (263, 1), (267, 1), (269, 2)), "8", "MD_UNSUPPORTED: entry_types=2"),
    ):
        with pytest.raises(fs.Refusal) as exc:
            fs.parse_md_request(fields("V", *pairs), syms)
        assert (exc.value.answer, exc.value.code, exc.value.text) == ("md_reject", code, text)


# --- outbound ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_ack_partial_fill_and_ioc_expiry_reports(version: str) -> None:
    ack = validated(fs.exec_report(event(ExecType.ACK), version, symbol="GC", exec_id="X1",
                                   security_exchange="XCEC", account="ACC1"), version)
    assert [ack.get(t) for t in (35, 11, 37, 17, 150, 39, 55, 207, 54, 38, 151, 14, 6, 1)] == [
        "8", "T000001.a1", "COMEX-000001.O1", "X1", "0", "0", "GC", "XCEC", "2", "5", "5", "0", "0", "ACC1"]
    assert ack.get(60) == "20260105-02:00:00.123" and not ack.has(58) and not ack.has(41)
    assert ack.get(20) == ("0" if version == "FIX.4.2" else "")
    fill = validated(fs.exec_report(event(ExecType.FILL, cum_qty=2, leaves_qty=3, last_qty=2, last_px=2400.3,
                                          avg_px=2400.3, exec_id="COMEX-000001.E4"), version,
                                    symbol="GC", exec_id="COMEX-000001.E4"), version)
    assert [fill.get(t) for t in (150, 39, 32, 31, 14, 151, 6, 17)] == [
        "1" if version == "FIX.4.2" else "F", "1", "2", "2400.3", "2", "3", "2400.3", "COMEX-000001.E4"]
    done = validated(fs.exec_report(event(ExecType.FILL, cum_qty=5, leaves_qty=0, last_qty=3, last_px=2400.4,
                                          avg_px=2400.36), version, symbol="GC", exec_id="E5"), version)
    assert [done.get(t) for t in (150, 39, 6)] == ["2" if version == "FIX.4.2" else "F", "2", "2400.36"]
    ioc = validated(fs.exec_report(event(ExecType.CANCELLED, cum_qty=2, leaves_qty=0, avg_px=2400.3,
                                         reason="IOC_REMAINDER: leaves_qty=3"), version, symbol="GC",
                                   exec_id="X2"), version)
    assert [ioc.get(t) for t in (150, 39, 58, 11)] == ["4", "4", "IOC_REMAINDER: leaves_qty=3", "T000001.a1"]
    assert not ioc.has(41)


@pytest.mark.parametrize("version", VERSIONS)
def test_reject_reports_carry_the_reason_verbatim(version: str) -> None:
    rej = validated(fs.exec_report(event(ExecType.REJECT, leaves_qty=0, reason="VENUE_REJECT: reason=insufficient_margin"),
                                   version, symbol="GC", exec_id="X3"), version)
    assert [rej.get(t) for t in (150, 39, 58, 103, 151)] == [
        "8", "8", "VENUE_REJECT: reason=insufficient_margin", "0" if version == "FIX.4.2" else "99", "0"]
    unknown = validated(fs.exec_report(event(ExecType.REJECT, order_qty=0, leaves_qty=0, venue_order_id="",
                                             side=Side.BUY, reason="ORDER_UNKNOWN: cl_ord_id=T000001.a1"),
                                       version, symbol="GC", side=Side.SELL, exec_id="X4"), version)
    assert [unknown.get(t) for t in (150, 39, 103, 37, 54)] == ["8", "8", "5", "NONE", "2"]


@pytest.mark.parametrize("version", VERSIONS)
def test_status_answer(version: str) -> None:
    st = validated(fs.exec_report(event(ExecType.STATUS, cum_qty=5, leaves_qty=0, avg_px=2400.3,
                                        reason="ORDER_STATE: state=FILLED"), version, symbol="GC", exec_id="X5"),
                   version)
    assert st.get(39) == "2" and st.get(58) == "ORDER_STATE: state=FILLED"
    if version == "FIX.4.2":  # no ExecType I in 4.2: ExecTransType Status, ExecType Restated
        assert (st.get(20), st.get(150)) == ("3", "D")
    else:
        assert st.get(150) == "I"
    pending = validated(fs.exec_report(event(ExecType.STATUS, reason="ORDER_STATE: state=PENDING_NEW"), version,
                                       symbol="GC", exec_id="X6"), version)
    assert pending.get(39) == "A"
    if version == "FIX.4.2":  # why not I on 4.2: QuickFIX's FIX42 dictionary has no such ExecType
        bad = fs.exec_report(event(ExecType.STATUS, reason="ORDER_STATE: state=NEW"), version, symbol="GC",
                             exec_id="X7")
        bad.fields = [(t, "I" if t == 150 else v) for t, v in bad.fields]
        with pytest.raises(qf.FIXException, match="150"):
            validated(bad, version)


@pytest.mark.parametrize("version", VERSIONS)
def test_cancel_answers(version: str) -> None:
    done = validated(fs.exec_report(event(ExecType.CANCELLED, leaves_qty=0, reason="CANCEL_REQUESTED: by=client"),
                                    version, symbol="GC", exec_id="X7", cancel_id="T000001.c1"), version)
    assert [done.get(t) for t in (150, 39, 11, 41)] == ["4", "4", "T000001.c1", "T000001.a1"]
    for reason, status, why in (
        ("ORDER_UNKNOWN: cl_ord_id=T000001.a1", "8", "1"),
        ("ORDER_NOT_OPEN: cl_ord_id=T000001.a1 state=FILLED", "2", "0"),
        ("ORDER_NOT_OPEN: cl_ord_id=T000001.a1 state=CANCELLED", "4", "0"),
        ("ORDER_NOT_OPEN: cl_ord_id=T000001.a1 state=REJECTED", "8", "0"),
        ("SESSION_DOWN: venue=COMEX", "0", "0"),
    ):
        ev = event(ExecType.CANCEL_REJECT, reason=reason, venue_order_id="" if status == "8" else "COMEX-000001.O1")
        rej = validated(fs.cancel_reject(ev, cancel_id="T000001.c1"), version)
        assert [rej.get(t) for t in (35, 11, 41, 39, 434, 102, 58)] == [
            "9", "T000001.c1", "T000001.a1", status, "1", why, reason]
        assert rej.get(37) == ("NONE" if status == "8" else "COMEX-000001.O1")
    own = validated(fs.cancel_reject(event(ExecType.CANCEL_REJECT, reason="SESSION_DOWN: venue=COMEX")), version)
    assert own.get(11) == own.get(41) == "T000001.a1"


@pytest.mark.parametrize("version", VERSIONS)
def test_market_data_messages(version: str) -> None:
    syms = FixSymbols(config(version), "COMEX")
    w = validated(fs.md_snapshot(tob(), "m1", syms.wire("GC")), version)  # type: ignore[arg-type]
    assert [w.get(t) for t in (35, 262, 55, 207, 268)] == ["W", "m1", "GC", "XCEC", "2"]
    entries = [[e.get(t) for t in (269, 270, 271, 272, 273)] for e in w.groups(268, 269)]
    assert entries == [["0", "2400.1", "12", "20260105", "02:00:00.123"], ["1", "2400.3", "7", "20260105", "02:00:00.123"]]
    y = validated(fs.md_reject("m2", "0", "MD_UNKNOWN_SYMBOL: symbol=ZZ"), version)
    assert [y.get(t) for t in (35, 262, 281, 58)] == ["Y", "m2", "0", "MD_UNKNOWN_SYMBOL: symbol=ZZ"]
    j = validated(fs.business_reject("G", "3", "FIX_UNSUPPORTED: msg_type=G", ref_seq="9", ref_id="T1.r1"), version)
    assert [j.get(t) for t in (35, 45, 372, 379, 380, 58)] == ["j", "9", "G", "T1.r1", "3", "FIX_UNSUPPORTED: msg_type=G"]


def test_number_and_time_formats() -> None:
    assert [fs.fmt_num(x) for x in (2400.0, 2400.1, 0.0001, 7.20010000001, 0.0, 1e6, 2400.0333333333)] == [
        "2400", "2400.1", "0.0001", "7.2001", "0", "1000000", "2400.03333333"]
    assert fs.utc_timestamp(T0) == "20260105-02:00:00.123"
    assert fs.md_date_time(T0) == ("20260105", "02:00:00.123")


# --- the server, with a stand-in engine ------------------------------------------------------


class FakeEngine:
    def __init__(self, version: str) -> None:
        self.sessions = [SessionSpec(begin_string=version, sender_comp_id="SIMEX", target_comp_id="XMC",
                                     host="127.0.0.1", port=1, store_dir="/nonexistent"),
                         SessionSpec(begin_string=version, sender_comp_id="SIMEX", target_comp_id="XMCMD",
                                     host="127.0.0.1", port=1, store_dir="/nonexistent")]
        self.ids = [s.session_id for s in self.sessions]
        self.sent: list[tuple[str, wire.Fields]] = []
        self.on: set[str] = set(self.ids)
        self.refuse_logon: dict[str, str] = {}
        self.disconnected: list[str] = []
        self.enabled: list[str] = []
        self.version = version

    def send(self, session: str, message: Any) -> bool:
        self.sent.append((session, wire.Fields.parse(message.toString())))
        return True

    def logged_on(self, session: str) -> bool:
        return session in self.on

    def disconnect(self, session: str, reason: str) -> None:
        self.disconnected.append(session)
        self.on.discard(session)

    def enable(self, session: str) -> None:
        self.enabled.append(session)

    def status_detail(self, venue: str) -> dict[str, float]:
        return {f"fix.{venue}.SIMEX->XMC.state": 1.0}

    def take(self) -> list[tuple[str, wire.Fields]]:
        out, self.sent = self.sent, []
        return out


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict]] = []

    def warning(self, event: str, **kw: Any) -> None:
        self.lines.append(("warning", event, kw))

    def info(self, event: str, **kw: Any) -> None:
        self.lines.append(("info", event, kw))


def server(version: str, states: dict[str, OrderState] | None = None) -> tuple[fs.FixVenueServer, FakeEngine, Log]:
    eng = FakeEngine(version)
    log = Log()
    srv = fs.FixVenueServer(config(version), "COMEX", Path("/nonexistent"), None, log=log, clock=lambda: T0,
                            id_prefix="000001.", engine=eng, order_state=(states or {}).get)
    return srv, eng, log


def app(session: str, msg_type: str, *pairs: tuple[int, object], version: str, seq: int = 7) -> SessionEvent:
    return SessionEvent(kind=SessionEventKind.APP, session=session, raw=raw(msg_type, *pairs, version=version, seq=seq))


@pytest.mark.parametrize("version", VERSIONS)
def test_server_routes_reports_of_its_orders_and_pairs_cancel_answers(version: str) -> None:
    srv, eng, _ = server(version)
    order_s, _md = eng.ids
    reqs = srv.handle([
        app(order_s, "D", (11, "T9.a1"), (21, 1), (38, 2), (40, 2), (44, "2400.3"), (54, 1), (55, "GC"), (59, 3),
            (60, "20260105-02:00:00"), version=version),
        app(order_s, "F", (11, "T9.c1"), (41, "T9.a1"), (54, 1), (55, "GC"), (60, "20260105-02:00:00"),
            version=version),
        app(order_s, "F", (11, "T9.c2"), (41, "NOPE"), (54, 2), (55, "GC"), (60, "20260105-02:00:00"),
            version=version),
        app(order_s, "H", (11, "GONE"), (54, 2), (55, "GC"), version=version),
    ])
    assert [type(r).__name__ for r in reqs] == ["OrderRequest", "CancelRequest", "CancelRequest", "StatusRequest"]
    assert srv.owns("T9.a1") and srv.owns("NOPE") and srv.owns("GONE") and not srv.owns("bus-order")
    assert srv.report(event(ExecType.CANCELLED, cl_ord_id="T9.a1", side=Side.BUY, leaves_qty=0,
                            reason="CANCEL_REQUESTED: by=client"))
    assert srv.report(event(ExecType.CANCEL_REJECT, cl_ord_id="NOPE", side=Side.BUY, order_qty=0, leaves_qty=0,
                            venue_order_id="", reason="ORDER_UNKNOWN: cl_ord_id=NOPE"))
    assert srv.report(event(ExecType.REJECT, cl_ord_id="GONE", side=Side.BUY, order_qty=0, leaves_qty=0,
                            venue_order_id="", reason="ORDER_UNKNOWN: cl_ord_id=GONE"))
    (s1, cancelled), (s2, cxl_rej), (s3, status_rej) = eng.take()
    assert s1 == s2 == s3 == order_s
    assert [cancelled.get(t) for t in (150, 11, 41, 55, 207, 54)] == ["4", "T9.c1", "T9.a1", "GC", "XCEC", "1"]
    assert [cxl_rej.get(t) for t in (35, 11, 41, 39, 102)] == ["9", "T9.c2", "NOPE", "8", "1"]
    # the venue's placeholder side is replaced by the side the request named
    assert [status_rej.get(t) for t in (35, 150, 11, 54, 55, 103)] == ["8", "8", "GONE", "2", "GC", "5"]
    assert srv.detail()["COMEX.fix_reports"] == 3 and srv.detail()["COMEX.fix_bad"] == 0
    assert srv.detail()["fix.COMEX.SIMEX->XMC.state"] == 1.0


@pytest.mark.parametrize("version", VERSIONS)
def test_server_answers_bad_input_counts_it_and_logs_each_kind_once(version: str) -> None:
    srv, eng, log = server(version, states={"T9.a1": OrderState.PARTIALLY_FILLED})
    order_s, _ = eng.ids
    bad = [
        app(order_s, "D", (11, "T9.b1"), (21, 1), (38, 2), (40, 2), (44, 1), (54, 1), (55, "ZZ"), version=version),
        app(order_s, "D", (11, "T9.b2"), (21, 1), (38, 2), (40, 2), (44, 1), (54, 1), (55, "ZZ"), version=version),
        app(order_s, "F", (11, "T9.c3"), (41, "T9.a1"), (54, 1), (55, "ZZ"), version=version),
        app(order_s, "G", (11, "T9.r1"), (41, "T9.a1"), (54, 1), (55, "GC"), version=version, seq=12),
        app(order_s, "H", (54, 1), (55, "GC"), version=version, seq=13),
        SessionEvent(kind=SessionEventKind.APP, session=order_s, raw="garbage"),
    ]
    assert srv.handle(bad) == []
    sent = eng.take()
    assert [m.msg_type for _, m in sent] == ["8", "8", "9", "j", "j"]
    er = sent[0][1]
    assert [er.get(t) for t in (150, 39, 11, 55, 58)] == [
        "8", "8", "T9.b1", "ZZ", "VENUE_REJECT: reason=unknown_symbol symbol=ZZ"]
    cxl = sent[2][1]
    assert [cxl.get(t) for t in (11, 41, 39, 58)] == ["T9.c3", "T9.a1", "1", "VENUE_REJECT: reason=unknown_symbol symbol=ZZ"]
    assert [sent[3][1].get(t) for t in (372, 380, 45, 379)] == ["G", "3", "12", "T9.r1"]
    assert [sent[4][1].get(t) for t in (372, 380, 45, 58)] == ["H", "5", "13", "FIX_MISSING_TAG: tag=11 msg_type=H"]
    assert srv.detail()["COMEX.fix_bad"] == 6
    refused = [kw for level, name, kw in log.lines if name == "fix_message_refused"]
    assert [(r["msg_type"], r["kind"]) for r in refused] == [
        ("D", "unknown_symbol"), ("F", "unknown_symbol"), ("G", "unsupported_msg_type"), ("H", "missing_tag"),
        ("?", "malformed")]


@pytest.mark.parametrize("version", VERSIONS)
def test_server_market_data_subscriptions(version: str) -> None:
    srv, eng, _ = server(version)
    _, md_s = eng.ids
    srv.on_quote(tob(2400.0, 2400.2))  # a book before anyone subscribes
    assert eng.take() == []
    srv.handle([app(md_s, "V", (146, 1), (55, "GC"), (262, "m1"), (263, 1), (264, 1), (267, 2), (269, 0), (269, 1),
                    version=version)])
    (s, snap), = eng.take()  # at once, from the known book
    assert s == md_s and snap.get(262) == "m1" and [e.get(270) for e in snap.groups(268, 269)] == ["2400", "2400.2"]
    assert srv.on_quote(tob(2400.1, 2400.3)) == 1
    (_, snap), = eng.take()
    assert [e.get(270) for e in snap.groups(268, 269)] == ["2400.1", "2400.3"]
    srv.handle([app(md_s, "V", (146, 1), (55, "ZZ"), (262, "m2"), (263, 1), version=version)])
    (_, y), = eng.take()
    assert [y.get(t) for t in (35, 262, 281, 58)] == ["Y", "m2", "0", "MD_UNKNOWN_SYMBOL: symbol=ZZ"]
    srv.handle([app(md_s, "V", (146, 1), (55, "SIZ6"), (262, "s1"), (263, 0), version=version)])  # snapshot only
    assert eng.take() == []  # no SI book yet: owed on the next quote, once
    assert srv.on_quote(tob(30.0, 30.01, instrument="SI")) == 1
    assert srv.on_quote(tob(30.0, 30.02, instrument="SI")) == 0
    assert [m.get(262) for _, m in eng.take()] == ["s1"]
    eng.on.discard(md_s)  # not logged on: nothing queued
    assert srv.on_quote(tob(2400.1, 2400.4)) == 0 and eng.take() == []
    eng.on.add(md_s)
    srv.handle([SessionEvent(kind=SessionEventKind.LOGOUT, session=md_s)])
    assert srv.on_quote(tob(2400.1, 2400.5)) == 0 and srv.detail()["COMEX.fix_md_subscriptions"] == 0
    srv.handle([app(md_s, "V", (146, 1), (55, "GC"), (262, "m3"), (263, 1), version=version)])
    srv.handle([app(md_s, "V", (262, "m3"), (263, 2), version=version)])
    eng.take()
    assert srv.on_quote(tob()) == 0


def test_server_scheduled_disconnect_drops_and_refuses_every_session() -> None:
    srv, eng, _ = server("FIX.4.2")
    assert not srv.set_up(True)
    assert srv.set_up(False)
    assert eng.disconnected == eng.ids and set(eng.refuse_logon) == set(eng.ids)
    assert all(why.startswith("SESSION_DOWN: venue=COMEX") for why in eng.refuse_logon.values())
    assert srv.detail()["COMEX.fix_up"] == 0.0
    assert not srv.set_up(False)
    srv.handle([SessionEvent(kind=SessionEventKind.LOGOUT, session=eng.ids[0])])  # logged out: logons refused
    assert eng.enabled == [eng.ids[0]]  # with the reason, by the engine (not a bare disconnect by QuickFIX)
    assert srv.set_up(True) and eng.refuse_logon == {} and srv.detail()["COMEX.fix_up"] == 1.0
    assert eng.enabled == [eng.ids[0]] + eng.ids
