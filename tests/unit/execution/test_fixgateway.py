"""The FIX order gateway's own decisions, with a stand-in for the QuickFIX engine: what it sends
for each capability, what a duplicate report or a session-down answer becomes."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from bus.messages import CancelRequest, ExecType, OrderEvent, OrderPurpose, OrderRequest, Side, StatusRequest, TimeInForce
from configs.load import load_config
from execution.fixgateway import FixGateway
from feeds.fix.session import SessionEvent, SessionEventKind
from feeds.fix.wire import SOH, Fields

ROOT = Path(__file__).resolve().parents[3]
SESSION = "FIX.4.4:XMC->COMEX"


class FakeEngine:
    """Records what the gateway hands to QuickFIX; `up` says whether the session is logged on."""

    def __init__(self) -> None:
        self.up = True
        self.sent: dict[tuple[str, int], tuple[str, str]] = {}
        self.out: list[Fields] = []

    def logged_on(self, session: str) -> bool:
        return self.up

    def send(self, session: str, message: object) -> bool:
        f = Fields.parse(message.toString())  # type: ignore[attr-defined]
        self.out.append(f)
        self.sent[(session, len(self.out) + 1)] = (f.msg_type, f.get(11))
        return True

    def status_detail(self, venue: str) -> dict[str, float]:
        return {}


def gateway(**caps: bool) -> tuple[FixGateway, FakeEngine, list[int]]:
    cfg = load_config(ROOT / "configs" / "demo-fix.toml")
    fx = cfg.venues["COMEX"].fix
    assert fx is not None
    cfg = msgspec.structs.replace(cfg, venues={**cfg.venues, "COMEX": msgspec.structs.replace(
        cfg.venues["COMEX"], fix=msgspec.structs.replace(fx, **caps))})
    engine = FakeEngine()
    wakes: list[int] = []
    gw = FixGateway("COMEX", cfg, engine, SESSION, on_local=lambda: wakes.append(1))  # type: ignore[arg-type]
    return gw, engine, wakes


def order(cid: str = "T000001.b1", price: float | None = 2400.5, tif: TimeInForce = TimeInForce.IOC) -> OrderRequest:
    return OrderRequest(cl_ord_id=cid, trade_id="T000001", account="hk", venue="COMEX", instrument="GC", side=Side.SELL,
                        qty=2, price=price, tif=tif, purpose=OrderPurpose.OPEN)


def app(*fields: tuple[int, str], msg_type: str = "8") -> SessionEvent:
    body = [(8, "FIX.4.4"), (9, "99"), (35, msg_type), (34, "9"), (49, "COMEX"), (56, "XMC"), *fields, (10, "000")]
    return SessionEvent(kind=SessionEventKind.APP, session=SESSION, raw=SOH.join(f"{t}={v}" for t, v in body) + SOH)


def fill(exec_id: str, cum: int, *extra: tuple[int, str]) -> SessionEvent:
    return app((37, "O1"), (11, "T000001.b1"), (17, exec_id), (150, "F"), (39, "2" if cum == 2 else "1"), (55, "GC"),
               (54, "2"), (38, "2"), (32, "1"), (31, "2400.5"), (14, str(cum)), (151, str(2 - cum)), (6, "2400.5"), *extra)


def test_new_order_single_carries_symbol_exchange_account_and_tif() -> None:
    gw, engine, _ = gateway(ioc=True)
    gw.send(order())
    (nos,) = engine.out
    assert nos.msg_type == "D"
    assert [nos.get(t) for t in (11, 55, 207, 54, 38, 40, 44, 59, 1)] == [
        "T000001.b1", "GC", "CMX", "2", "2", "2", "2400.5", "3", "hk"]


def test_a_resent_fill_with_the_same_exec_id_counts_once() -> None:
    gw, _, _ = gateway()
    gw.send(order())
    first = gw.on_event(fill("E1", 1))
    again = gw.on_event(fill("E1", 1, (43, "Y")))
    assert len(first) == 1 and first[0].exec_type is ExecType.FILL and again == []
    assert gw.stats["dup_reports"] == 1
    assert gw.on_event(fill("E2", 2))[0].cum_qty == 2


def test_without_ioc_an_order_goes_day_and_is_cancelled_when_acknowledged() -> None:
    gw, engine, _ = gateway(ioc=False)
    gw.send(order())
    assert engine.out[0].get(59) == "0"
    (ack,) = gw.on_event(app((37, "O1"), (11, "T000001.b1"), (17, "A1"), (150, "0"), (39, "0"), (55, "GC"), (54, "2"),
                             (38, "2"), (14, "0"), (151, "2"), (6, "0")))
    assert ack.exec_type is ExecType.ACK
    cancel = engine.out[-1]
    assert cancel.msg_type == "F" and cancel.get(41) == "T000001.b1" and cancel.get(11).startswith("T000001.b1~")
    (done,) = gw.on_event(app((37, "O1"), (11, cancel.get(11)), (41, "T000001.b1"), (17, "C1"), (150, "4"), (39, "4"),
                              (55, "GC"), (54, "2"), (38, "2"), (14, "0"), (151, "0"), (6, "0")))
    assert done.cl_ord_id == "T000001.b1" and done.exec_type is ExecType.CANCELLED and done.leaves_qty == 0


def test_without_status_requests_a_query_is_a_cancel_probe_whose_answer_settles_the_order() -> None:
    gw, engine, _ = gateway(status_requests=False)
    gw.send(order())
    gw.status(StatusRequest(cl_ord_id="T000001.b1", venue="COMEX"))
    probe = engine.out[-1]
    assert probe.msg_type == "F" and gw.stats["status_probes"] == 1
    (ev,) = gw.on_event(app((37, "O1"), (11, probe.get(11)), (41, "T000001.b1"), (39, "2"), (434, "1"), (102, "0"),
                            msg_type="9"))
    assert ev.exec_type is ExecType.STATUS and (ev.cum_qty, ev.leaves_qty, ev.avg_px) == (2, 0, 2400.5)


def test_with_status_requests_a_query_is_an_order_status_request() -> None:
    gw, engine, _ = gateway(status_requests=True)
    gw.send(order())
    gw.status(StatusRequest(cl_ord_id="T000001.b1", venue="COMEX"))
    h = engine.out[-1]
    assert h.msg_type == "H" and (h.get(11), h.get(55), h.get(54)) == ("T000001.b1", "GC", "2")


def test_session_down_answers_locally_like_the_simulator_and_sends_nothing() -> None:
    gw, engine, wakes = gateway()
    engine.up = False
    gw.send(order())
    gw.cancel(CancelRequest(cl_ord_id="T000001.b1", venue="COMEX", instrument="GC"))
    gw.status(StatusRequest(cl_ord_id="T000001.b1", venue="COMEX"))
    answers = gw.take_local()
    assert engine.out == [] and len(wakes) == 3
    assert [(a.exec_type, a.reason) for a in answers] == [
        (ExecType.REJECT, "SESSION_DOWN: venue=COMEX"), (ExecType.CANCEL_REJECT, "SESSION_DOWN: venue=COMEX"),
        (ExecType.REJECT, "SESSION_DOWN: venue=COMEX")]
    assert gw.take_local() == []


def test_a_market_order_on_a_venue_without_them_is_refused_locally() -> None:
    gw, engine, _ = gateway(market_orders=False)
    gw.send(order(price=None))
    (rej,) = gw.take_local()
    assert engine.out == [] and rej.reason == "VENUE_UNSUPPORTED: order=market venue=COMEX"


def test_a_business_reject_of_a_cancel_leaves_the_order_in_doubt() -> None:
    gw, engine, _ = gateway()
    gw.send(order())
    gw.cancel(CancelRequest(cl_ord_id="T000001.b1", venue="COMEX", instrument="GC"))
    seq = max(s for _, s in engine.sent)
    (ev,) = gw.on_event(app((45, str(seq)), (372, "F"), (380, "3"), (58, "Unsupported Message Type"), msg_type="j"))
    assert ev.cl_ord_id == "T000001.b1" and ev.exec_type is ExecType.CANCEL_REJECT
    assert ev.reason.startswith("VENUE_UNSUPPORTED: msg_type=F")


def test_a_status_query_for_an_order_the_gateway_never_saw_keeps_it_in_doubt() -> None:
    gw, engine, _ = gateway()
    gw.status(StatusRequest(cl_ord_id="T000009.a1", venue="COMEX"))
    (ev,) = gw.take_local()
    assert engine.out == [] and ev.exec_type is ExecType.CANCEL_REJECT and ev.reason.startswith("GATEWAY_ORDER_UNKNOWN")
    gw.remember(order("T000009.a1"))  # restored from the write-ahead log after a restart
    gw.status(StatusRequest(cl_ord_id="T000009.a1", venue="COMEX"))
    assert engine.out[-1].msg_type == "F" and engine.out[-1].get(41) == "T000009.a1"  # COMEX: a cancel probe


@pytest.mark.parametrize("raw", ["garbage", f"8=FIX.4.4{SOH}35=8{SOH}11=T000001.b1{SOH}"])
def test_unusable_messages_raise_fix_errors_for_the_executor_to_count(raw: str) -> None:
    from feeds.fix.wire import FixError

    gw, _, _ = gateway()
    with pytest.raises(FixError):
        gw.on_event(SessionEvent(kind=SessionEventKind.APP, session=SESSION, raw=raw))


def test_order_event_type_is_what_the_executor_expects() -> None:
    gw, _, _ = gateway()
    gw.send(order())
    (ev,) = gw.on_event(fill("E1", 2))
    assert isinstance(ev, OrderEvent) and ev.instrument == "GC" and ev.exec_id == "T000001.b1:E1"
