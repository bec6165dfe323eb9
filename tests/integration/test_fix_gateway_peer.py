"""The FIX order gateway against QuickFIX's own example executor: a real, independent FIX peer.

Real QuickFIX sessions on loopback, the peer in its own process; the gateway's events are
what the executor actor feeds its pair trades.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import msgspec
import pytest
import zmq

from bus.messages import CancelRequest, ExecType, OrderEvent, OrderPurpose, OrderRequest, Side, StatusRequest, TimeInForce
from configs.load import load_config
from execution.fixgateway import FixGateway
from feeds.fix.session import FixEngine, SessionEventKind
from feeds.fix.sessionview import sessions_from_detail
from feeds.fix.venue import order_session
from fixpeer import ExamplePeer, free_port
from helpers import wait_for, write_config

CONFIG = """
[venues.COMEX]
kind = "fix"
[venues.COMEX.fix]
port = {port}
version = "{version}"
sender_comp_id = "XMC"
target_comp_id = "EXECUTOR"
heartbeat_s = 5
reconnect_s = 1
account = "ACC1"
symbols = {{ GC = "GC" }}
market_orders = false
status_requests = false
validate = {validate}
[instruments.GC]
sim = {{ start = 2400.0 }}
[accounts.hk]
currency = "USD"
balance = 1e6
venues = ["COMEX"]
[actors.executor]
kind = "executor"
"""


class Harness:
    def __init__(self, tmp: Path, version: str) -> None:
        port = free_port()
        self.peer = ExamplePeer(tmp / "peer", port, begin_string=version)
        # FIX.4.4: the example executor's reports trip a validating initiator (FIX-NOTES.md)
        cfg_path = write_config(tmp / "x.toml", CONFIG.format(port=port, version=version,
                                                              validate="true" if version == "FIX.4.2" else "false"))
        self.cfg = load_config(cfg_path)
        fx = self.cfg.venues["COMEX"].fix
        assert fx is not None
        self.spec = order_session(tmp / "run", "COMEX", fx)
        self.ctx = zmq.Context()
        self.engine = FixEngine("initiator", [self.spec], self.ctx)
        self.gw = FixGateway("COMEX", self.cfg, self.engine, self.spec.session_id, on_local=lambda: None)
        self.events: list[OrderEvent] = []
        self.refused = 0
        self.engine.start()

    def pump(self) -> list[OrderEvent]:
        for sev in self.engine.drain():
            if sev.kind is SessionEventKind.REFUSED:
                self.refused += 1
            self.events += self.gw.on_event(sev)
        self.events += self.gw.take_local()
        return self.events

    def wait_event(self, cond, what: str) -> OrderEvent:
        return wait_for(lambda: next((e for e in self.pump() if cond(e)), None), 10, what)

    def close(self) -> None:
        self.engine.stop()
        self.ctx.term()
        self.peer.stop()


@pytest.fixture(params=["FIX.4.2", "FIX.4.4"])
def harness(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Harness]:
    h = Harness(tmp_path, request.param)
    try:
        yield h
    finally:
        h.close()


def order(cid: str, price: float | None = 2400.5, tif: TimeInForce = TimeInForce.IOC) -> OrderRequest:
    return OrderRequest(cl_ord_id=cid, trade_id=cid.split(".")[0], account="hk", venue="COMEX", instrument="GC",
                        side=Side.BUY, qty=2, price=price, tif=tif, purpose=OrderPurpose.OPEN)


def test_gateway_logs_on_and_a_limit_order_comes_back_filled(harness: Harness) -> None:
    wait_for(lambda: harness.pump() is not None and harness.gw.connected, 15, "logon to the example executor")
    harness.gw.send(order("T000001.b1"))
    fill = harness.wait_event(lambda e: e.exec_type is ExecType.FILL, "the fill")
    assert (fill.cl_ord_id, fill.instrument, fill.side) == ("T000001.b1", "GC", Side.BUY)
    assert (fill.cum_qty, fill.leaves_qty, fill.last_qty, fill.last_px) == (2, 0, 2, 2400.5)
    assert fill.exec_id.startswith("T000001.b1:")
    out_seq, in_seq = harness.engine.seq_nums(harness.spec.session_id)
    assert out_seq >= 3 and in_seq >= 3  # logon + order, logon + report
    detail = harness.gw.detail()
    assert detail["fix.COMEX.XMC->EXECUTOR.state"] == 1.0 and detail["fix.COMEX.orders"] == 1.0
    (row,) = sessions_from_detail("executor", detail)
    assert row["state"] == "LOGGED_ON" and row["session"] == "XMC->EXECUTOR" and row["next_out_seq"] == out_seq


def test_a_market_order_the_venue_refuses_is_rejected_with_its_reason(harness: Harness) -> None:
    harness.gw.fx = msgspec.structs.replace(harness.gw.fx, market_orders=True)  # as if the config allowed them
    wait_for(lambda: harness.pump() is not None and harness.gw.connected, 15, "logon")
    harness.gw.send(order("T000002.b1", price=None))
    rej = harness.wait_event(lambda e: e.cl_ord_id == "T000002.b1", "the reject")
    assert rej.exec_type is ExecType.REJECT
    assert rej.reason.startswith("VENUE_REJECT: msg=session_reject ref_tag=40"), rej.reason


def test_market_order_on_a_venue_without_them_is_refused_locally(harness: Harness) -> None:
    wait_for(lambda: harness.pump() is not None and harness.gw.connected, 15, "logon")
    harness.gw.send(order("T000003.b1", price=None))
    rej = harness.wait_event(lambda e: e.cl_ord_id == "T000003.b1", "the local reject")
    assert rej.exec_type is ExecType.REJECT and rej.reason == "VENUE_UNSUPPORTED: order=market venue=COMEX"
    assert harness.gw.stats["orders"] == 0


def test_status_probe_and_cancel_the_venue_does_not_support_leave_the_order_in_doubt(harness: Harness) -> None:
    wait_for(lambda: harness.pump() is not None and harness.gw.connected, 15, "logon")
    harness.gw.send(order("T000004.b1"))
    harness.wait_event(lambda e: e.exec_type is ExecType.FILL, "the fill")
    harness.gw.status(StatusRequest(cl_ord_id="T000004.b1", venue="COMEX"))  # status_requests = false: a cancel probe
    harness.gw.cancel(CancelRequest(cl_ord_id="T000004.b1", venue="COMEX", instrument="GC"))

    def two_rejects() -> list[OrderEvent] | None:
        got = [e for e in harness.pump() if e.exec_type is ExecType.CANCEL_REJECT]
        return got if len(got) >= 2 else None

    answers = wait_for(two_rejects, 10, "two business rejects")
    assert all(a.cl_ord_id == "T000004.b1" for a in answers)
    assert all(a.reason.startswith("VENUE_UNSUPPORTED: msg_type=F") for a in answers), [a.reason for a in answers]
    assert harness.gw.stats["status_probes"] == 1


def test_orders_while_the_session_is_down_get_session_down_and_nothing_is_sent(harness: Harness) -> None:
    wait_for(lambda: harness.pump() is not None and harness.gw.connected, 15, "logon")
    harness.peer.stop()
    wait_for(lambda: harness.pump() is not None and not harness.gw.connected, 15, "the session to drop")
    harness.gw.send(order("T000005.b1"))
    harness.gw.status(StatusRequest(cl_ord_id="T000005.b1", venue="COMEX"))
    ev = harness.wait_event(lambda e: e.cl_ord_id == "T000005.b1", "the local answer")
    assert ev.exec_type is ExecType.REJECT and ev.reason == "SESSION_DOWN: venue=COMEX"
    assert harness.gw.stats["orders"] == 0 and harness.gw.stats["session_down"] >= 1
