"""simex serving a `kind = "fix"` venue as a real QuickFIX acceptor, driven by a QuickFIX initiator
in the test process (`feeds.fix.session.FixEngine`, the engine xmc's executor and ingest use):
logon, market data snapshots, orders with the venue's faults, cancels, status queries, bad input,
scheduled disconnects and a kill -9 of simex."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
import zmq

from configs.load import load_config
from configs.schema import Config
from feeds.fix import wire
from feeds.fix.session import SessionEvent, SessionEventKind, SessionSpec
from feeds.fix.venue import md_session, order_session
from helpers import BusTap, actor, wait_for, write_config, xmc

qf = pytest.importorskip("quickfix")
from feeds.fix.session import FixEngine  # noqa: E402 - needs quickfix

VENUE = "COMEX"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fix_config(tmp_path: Path, *, version: str, sim: str, port: int | None = None) -> Path:
    port = port or free_port()
    return write_config(tmp_path / "fix.toml", f"""
[run]
heartbeat_s = 0.2
restart_backoff_s = 0.1
[venues.{VENUE}]
kind = "fix"
sim = {{ {sim} }}
[venues.{VENUE}.fix]
port = {port}
version = "{version}"
sender_comp_id = "XMC"
target_comp_id = "SIMEX"
heartbeat_s = 2
reconnect_s = 1
logon_timeout_s = 2
symbols = {{ GC = {{ symbol = "GC", security_exchange = "XCEC" }} }}
md = {{ sender_comp_id = "XMCMD" }}
[instruments.GC]
hours = []
sim = {{ start = 2400.0, vol_bp = 1.5, spread_ticks = 2, size = 20, interval_ms = 20 }}
[actors.simex]
kind = "simex"
venues = ["{VENUE}"]
""")


class Client:
    """xmc's side of the venue: the order and market-data sessions as one QuickFIX initiator."""

    def __init__(self, cfg: Config, store_root: Path) -> None:
        fx = cfg.venues[VENUE].fix
        assert fx is not None
        self.version = fx.version
        self.order: SessionSpec = order_session(store_root, VENUE, fx)
        md = md_session(store_root, VENUE, fx)
        assert md is not None
        self.md: SessionSpec = md
        self.engine = FixEngine("initiator", [self.order, self.md], zmq.Context.instance())
        self.events: list[SessionEvent] = []
        self.engine.start()
        self._n = 0

    def close(self) -> None:
        self.engine.stop()

    def _read(self, timeout_s: float) -> None:
        if self.engine.socket.poll(max(1, int(timeout_s * 1000))):
            self.events.extend(self.engine.drain())

    def take(self, pred: Callable[[SessionEvent], bool], timeout: float, what: str) -> SessionEvent:
        """The first event (consumed) matching `pred`, waiting up to `timeout` s for it."""
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if pred(ev):
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                kinds = [(e.kind.value, e.session, e.raw.replace("\x01", "|")[:160]) for e in self.events[-8:]]
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; last events: {kinds}")
            self._read(min(left, 0.2))

    def app(self, msg_type: str, timeout: float = 10, what: str = "", **match: str) -> wire.Fields:
        """The next application message of `msg_type` whose fields equal `match` (tag numbers as t<N>)."""
        want = {int(k[1:]): v for k, v in match.items()}

        def ok(ev: SessionEvent) -> bool:
            if ev.kind is not SessionEventKind.APP:
                return False
            f = wire.Fields.parse(ev.raw)
            return f.msg_type == msg_type and all(f.get(t) == v for t, v in want.items())

        ev = self.take(ok, timeout, what or f"35={msg_type} {want}")
        return wire.Fields.parse(ev.raw)

    def logon(self, spec: SessionSpec, timeout: float = 15) -> SessionEvent:
        return self.take(lambda e: e.kind is SessionEventKind.LOGON and e.session == spec.session_id, timeout,
                         f"logon of {spec.session_id}")

    def send(self, spec: SessionSpec, msg_type: str, *fields: tuple[int, object],
             groups: list[tuple[int, int, list[list[tuple[int, object]]]]] | None = None) -> None:
        m = qf.Message()
        m.getHeader().setField(qf.BeginString(self.version))
        m.getHeader().setField(qf.MsgType(msg_type))
        for tag, value in fields:
            m.setField(tag, str(value))
        for count, delim, entries in groups or []:
            for entry in entries:
                g = qf.Group(count, delim)
                for tag, value in entry:
                    g.setField(tag, str(value))
                m.addGroup(g)
        assert self.engine.send(spec.session_id, m), f"QuickFIX did not take 35={msg_type}"

    def next_id(self, prefix: str = "T000001") -> str:
        self._n += 1
        return f"{prefix}.a{self._n}"

    def order_single(self, cl_ord_id: str, side: str, qty: int, price: float | None, tif: str = "3",
                     symbol: str = "GC") -> None:
        fields: list[tuple[int, object]] = [(11, cl_ord_id), (21, 1), (55, symbol), (54, side), (60, now_utc()),
                                            (40, 2 if price is not None else 1), (38, qty), (59, tif)]
        if price is not None:
            fields.append((44, f"{price:.1f}"))
        self.send(self.order, "D", *fields)

    def subscribe(self, md_req_id: str, *symbols: str, kind: int = 1) -> None:
        self.send(self.md, "V", (262, md_req_id), (263, kind), (264, 1),
                  groups=[(267, 269, [[(269, 0)], [(269, 1)]]), (146, 55, [[(55, s)] for s in symbols])])


def now_utc() -> str:
    t = time.time()
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}"


@pytest.fixture
def client_factory(tmp_path: Path) -> Iterator[Callable[[Config], Client]]:
    made: list[Client] = []

    def make(cfg: Config) -> Client:
        c = Client(cfg, tmp_path / "client")
        made.append(c)
        return c

    yield make
    for c in made:  # before the run dir's teardown stops simex
        c.close()


def simex_detail(run_dir: Path) -> dict:
    a = actor(run_dir, "simex")
    return a["detail"] if a["state"] in ("running", "ready", "degraded") else {}


@pytest.mark.slow
@pytest.mark.parametrize("version", ["FIX.4.2", "FIX.4.4"])
def test_fix_venue_serves_market_data_orders_cancels_status_and_refuses_bad_input(
        version: str, tmp_path: Path, run_dir: Path, client_factory: Callable[[Config], Client]) -> None:
    cfg_path = fix_config(tmp_path, version=version, sim="ack_latency_ms = 1.0, fill_latency_ms = 2.0, partial_rate = 1.0")
    cfg = load_config(cfg_path)
    xmc("up", str(cfg_path), "--detach", run_dir=run_dir, check=True)
    tap = BusTap(cfg, run_dir, {"simex": ["venue.fill.", "raw.COMEX."]})
    c = client_factory(cfg)
    try:
        c.logon(c.order)
        c.logon(c.md)

        # market data: snapshots on every quote, from the venue's clock
        c.subscribe("m1", "GC")
        snaps = [c.app("W", t262="m1", t55="GC") for _ in range(5)]
        for w in snaps:
            assert w.get(207) == "XCEC" and w.get(268) == "2"
            (bid, ask) = list(w.groups(268, 269))
            assert (bid.get(269), ask.get(269)) == ("0", "1")
            assert 0 < float(bid.get(270)) < float(ask.get(270)) and float(bid.get(271)) > 0
            assert re.fullmatch(r"\d{8}", bid.get(272)) and re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", bid.get(273))
            assert bid.get(272) in {time.strftime("%Y%m%d", time.gmtime(time.time() - d)) for d in (0, 60)}
        ask = float(list(snaps[-1].groups(268, 269))[1].get(270))

        # a marketable limit IOC buy of 2 with partial_rate = 1: 1 fills, the remainder expires
        oid = c.next_id()
        c.order_single(oid, "1", 2, round(ask + 1.0, 1))
        ack = c.app("8", t11=oid, t150="0")
        assert (ack.get(39), ack.get(55), ack.get(207), ack.get(54), ack.get(38)) == ("0", "GC", "XCEC", "1", "2")
        venue_order_id = ack.get(37)
        assert venue_order_id.startswith("COMEX-")
        fill = c.app("8", t11=oid, t150="1" if version == "FIX.4.2" else "F")
        assert (fill.get(39), fill.get(32), fill.get(14), fill.get(151), fill.get(37)) == ("1", "1", "1", "1", venue_order_id)
        assert float(fill.get(31)) <= round(ask + 1.0, 1) and fill.get(17).startswith("COMEX-")
        expired = c.app("8", t11=oid, t150="4")
        assert (expired.get(39), expired.get(58), expired.get(14), expired.get(151)) == (
            "4", "IOC_REMAINDER: leaves_qty=1", "1", "0")
        if version == "FIX.4.2":
            assert ack.get(20) == fill.get(20) == "0"

        # the venue's fill is on the bus (beside its raw quotes) and in the drop copy
        frames: list = []

        def fill_on_bus() -> bool:
            frames.extend(tap.read())
            return any(t == "venue.fill.COMEX" and env.body.cl_ord_id == oid for t, env in frames)

        wait_for(fill_on_bus, 10, "venue.fill.COMEX of the FIX order")
        assert any(t == "raw.COMEX.GC" for t, _ in frames)
        drop = [json.loads(line) for line in (run_dir / "state" / "simex-fills.jsonl").read_text().splitlines()]
        assert any(d["cl_ord_id"] == oid and d["last_qty"] == 1 for d in drop)

        # status of that order
        c.send(c.order, "H", (11, oid), (55, "GC"), (54, 1))
        st = c.app("8", t11=oid, t39="4", t58="ORDER_STATE: state=CANCELLED")
        assert st.get(150) == ("D" if version == "FIX.4.2" else "I")
        if version == "FIX.4.2":
            assert st.get(20) == "3"
        assert (st.get(14), st.get(37)) == ("1", venue_order_id)

        # cancel of an order the venue never saw
        c.send(c.order, "F", (11, "T000001.c1"), (41, "T000001.nope"), (55, "GC"), (54, 1), (60, now_utc()))
        rej = c.app("9", t11="T000001.c1")
        assert (rej.get(41), rej.get(39), rej.get(102), rej.get(434), rej.get(37)) == ("T000001.nope", "8", "1", "1", "NONE")
        assert rej.get(58) == "ORDER_UNKNOWN: cl_ord_id=T000001.nope"

        # bad input: an unknown symbol, an unsupported message type, an unknown md symbol
        bad = c.next_id()
        c.order_single(bad, "2", 1, 2400.0, symbol="ZZZ")
        r = c.app("8", t11=bad, t150="8")
        assert (r.get(39), r.get(58), r.get(55)) == ("8", "VENUE_REJECT: reason=unknown_symbol symbol=ZZZ", "ZZZ")
        c.send(c.order, "G", (11, "T000001.r1"), (41, oid), (21, 1), (55, "GC"), (54, 1), (60, now_utc()), (40, 2),
               (38, 1), (44, "2400.0"))
        j = c.app("j", t372="G")
        assert (j.get(380), j.get(58)) == ("3", "FIX_UNSUPPORTED: msg_type=G")
        c.subscribe("m2", "ZZZ")
        y = c.app("Y", t262="m2")
        assert (y.get(281), y.get(58)) == ("0", "MD_UNKNOWN_SYMBOL: symbol=ZZZ")

        # simex keeps running and serving; the refusals are counted and logged
        c.app("W", t262="m1")
        oid2 = c.next_id()
        c.order_single(oid2, "2", 1, None, tif="0")  # a market DAY sell
        c.app("8", t11=oid2, t150="2" if version == "FIX.4.2" else "F", t39="2")
        detail = wait_for(lambda: (d := simex_detail(run_dir)).get("COMEX.fix_reports", 0) >= 7 and d, 10,
                          "COMEX.fix_reports in simex's status detail")
        assert detail["COMEX.fix_bad"] == 3 and detail["COMEX.fix_md_sent"] >= 5
        assert detail["fix.COMEX.SIMEX->XMC.state"] == detail["fix.COMEX.SIMEX->XMCMD.state"] == 1.0
        log = [json.loads(line) for line in (run_dir / "logs" / "simex.jsonl").read_text().splitlines()]
        refused = [e for e in log if e["event"] == "fix_message_refused"]
        assert {(e["msg_type"], e["kind"]) for e in refused} == {("D", "unknown_symbol"), ("G", "unsupported_msg_type"),
                                                                ("V", "unknown_symbol")}
        assert actor(run_dir, "simex")["restarts"] == 0
    finally:
        tap.close()


@pytest.mark.slow
def test_scheduled_disconnects_drop_the_fix_sessions_and_refuse_logons_until_up(
        tmp_path: Path, run_dir: Path, client_factory: Callable[[Config], Client]) -> None:
    every, down = 5.0, 2.5
    cfg_path = fix_config(tmp_path, version="FIX.4.2", sim=f"reject_rate = 1.0, disconnect_every_s = {every}, "
                                                           f"disconnect_for_s = {down}")
    cfg = load_config(cfg_path)
    xmc("up", str(cfg_path), "--detach", run_dir=run_dir, check=True)
    c = client_factory(cfg)
    on = c.logon(c.order)
    c.logon(c.md)
    oid = c.next_id()
    c.order_single(oid, "1", 1, None)
    rej = c.app("8", t11=oid, t150="8")
    assert rej.get(58) == "VENUE_REJECT: reason=insufficient_margin" and rej.get(39) == "8"

    def down_notice(session: str) -> Callable[[SessionEvent], bool]:
        return lambda e: e.kind is SessionEventKind.ADMIN and e.session == session and \
            "SESSION_DOWN: venue=COMEX" in e.raw

    # the scheduled disconnect logs both sessions out, with the reason ...
    off = c.take(lambda e: e.kind is SessionEventKind.LOGOUT and e.session == c.order.session_id, every + 3,
                 "logout of the order session")
    c.take(down_notice(c.order.session_id), 1, "the order session's logout reason")
    c.take(lambda e: e.kind is SessionEventKind.LOGOUT and e.session == c.md.session_id, 3, "logout of the md session")
    assert (off.ts_ns - on.ts_ns) / 1e9 > every - 1.0
    # ... a logon while it lasts is refused with that reason (the initiator retries every second) ...
    refused = c.take(lambda e: e.session == c.order.session_id and (
        e.kind is SessionEventKind.LOGON or (e.kind is SessionEventKind.LOGON_REFUSED and "Rejected Logon" in e.raw)),
        down + 1, "a refused logon")
    assert refused.kind is SessionEventKind.LOGON_REFUSED and "SESSION_DOWN: venue=COMEX" in refused.raw
    # ... and accepted once the venue is up again
    back = c.logon(c.order, timeout=down + 5)
    assert refused.ts_ns < back.ts_ns
    # QuickFIX sends the Logout on its next 1 s timer tick, so the drop lags the schedule by up to 1 s
    assert (back.ts_ns - off.ts_ns) / 1e9 > down - 1.2, "a logon was accepted while the venue was down"
    c.logon(c.md, timeout=5)
    oid2 = c.next_id()
    c.order_single(oid2, "1", 1, None)
    c.app("8", t11=oid2, t150="8")
    detail = wait_for(lambda: (d := simex_detail(run_dir)).get("COMEX.fix_scheduled_drops", 0) >= 1 and d, 10,
                      "COMEX.fix_scheduled_drops")
    assert detail["COMEX.fix_up"] == 1.0
    log = (run_dir / "logs" / "simex.jsonl").read_text()
    assert "fix_session_scheduled_down" in log and "fix_session_scheduled_up" in log


@pytest.mark.slow
def test_simex_killed_mid_session_is_restarted_and_the_client_logs_on_again(
        tmp_path: Path, run_dir: Path, client_factory: Callable[[Config], Client]) -> None:
    cfg_path = fix_config(tmp_path, version="FIX.4.4", sim="ack_latency_ms = 1.0, fill_latency_ms = 2.0")
    cfg = load_config(cfg_path)
    xmc("up", str(cfg_path), "--detach", run_dir=run_dir, check=True)
    c = client_factory(cfg)
    c.logon(c.order)
    c.logon(c.md)
    pid = actor(run_dir, "simex")["pid"]
    os.kill(pid, signal.SIGKILL)
    c.take(lambda e: e.kind is SessionEventKind.LOGOUT and e.session == c.order.session_id, 10, "logout after kill -9")
    wait_for(lambda: (a := actor(run_dir, "simex"))["pid"] not in (None, pid) and a["state"] == "running", 20,
             "simex restarted")
    c.logon(c.order, timeout=15)
    c.logon(c.md, timeout=15)
    c.subscribe("m1", "GC")
    c.app("W", t262="m1")
    oid = c.next_id()
    c.order_single(oid, "2", 1, None)
    c.app("8", t11=oid, t150="F", t39="2")
    assert actor(run_dir, "simex")["restarts"] == 1

    # a clean stop with the client still logged on: it is logged out, simex stops without a trace
    pid = actor(run_dir, "simex")["pid"]
    xmc("down", run_dir=run_dir, check=True)
    c.take(lambda e: e.kind is SessionEventKind.LOGOUT and e.session == c.order.session_id, 10, "logout at stop")
    log = [json.loads(line) for line in (run_dir / "logs" / "simex.jsonl").read_text().splitlines()]
    assert any(e["event"] == "actor_stopped" and e["pid"] == pid for e in log)
    stderr = (run_dir / "logs" / "simex.stderr").read_text()
    assert "Traceback" not in stderr and "Segmentation" not in stderr
