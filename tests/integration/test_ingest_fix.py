"""FIX market data through a real ingest process: it logs on to a QuickFIX acceptor run by the
test, asks for every instrument of the venue, and publishes what the acceptor answers (W
snapshots, X updates) as quotes on ``md.<venue>.<symbol>``; a MarketDataRequestReject shows in
its heartbeat detail and degrades it; after the venue drops the session (or restarts) it
subscribes again.

The test's acceptor is `feeds.fix.session.FixEngine("acceptor", ...)` on the venue's sessions
(`feeds.fix.venue.acceptor_sessions`) in a process of its own (`fixpeer.Acceptor`: stopping a
QuickFIX acceptor can crash the process that does it), driven over a pipe: the test tells it
what to send, to drop the session, to stop and start again, and reads back what it received.
Every wait blocks on the venue's wake-up pipe and the bus tap with a deadline.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import pytest
import zmq

from bus.messages import Heartbeat, Quote
from configs.load import load_config
from configs.schema import Config
from feeds.fix import wire
from feeds.fix.session import SessionEventKind
from feeds.fix.venue import acceptor_sessions
from fixpeer import Acceptor, Group, free_port
from helpers import BusTap, actor, wait_for, write_config, xmc

pytest.importorskip("quickfix")  # the venue's process runs QuickFIX

ACTOR = "ingest_cme"
MD_SESSION = "CME.XMC_MD->CMEX"  # ingest's side, as its heartbeat detail names it (fix.<venue>.<session>.*)


def config(tmp_path: Path, version: str = "FIX.4.2") -> Path:
    return write_config(tmp_path / "fix.toml", f"""
[run]
heartbeat_s = 0.2
[venues.CME]
kind = "fix"
stale_ms = 60000
[venues.CME.fix]
port = {free_port()}
version = "{version}"
sender_comp_id = "XMC"
target_comp_id = "CMEX"
reconnect_s = 1
heartbeat_s = 5
symbols = {{ NQ = {{ symbol = "NQ", security_exchange = "XCME" }} }}
md = {{ sender_comp_id = "XMC_MD", depth = 1 }}
[actors.{ACTOR}]
kind = "ingest"
venue = "CME"
""")


def actor_when(run_dir: Path, pred: Callable[[dict], bool], what: str, timeout: float = 15) -> dict:
    """The ingest's `xmc status` entry once `pred` holds for it."""
    def cond() -> dict | None:
        a = actor(run_dir, ACTOR)
        return a if pred(a) else None

    return wait_for(cond, timeout, what)


class Venue:
    """The test's FIX venue: an acceptor (in its own process) that records MarketDataRequests and
    sends what it is told on the market-data session."""

    def __init__(self, cfg: Config, run_dir: Path) -> None:
        fx = cfg.venues["CME"].fix
        assert fx is not None and fx.md is not None
        self.version = fx.version
        self.specs = acceptor_sessions(run_dir, "CME", fx)
        self.md = next(s.session_id for s in self.specs if s.target_comp_id == fx.md.sender_comp_id)
        self.acceptor = Acceptor(self.specs, self.version, start=False)
        self.requests: list[wire.Fields] = []  # every V, in arrival order
        self.logons = 0
        self._seen = 0  # of the acceptor's events

    @property
    def running(self) -> bool:
        return self.acceptor.running

    def start(self) -> None:
        self.acceptor.start()

    def stop(self) -> None:
        self.acceptor.stop()
        self.handle()  # what it received up to its stop

    def close(self) -> None:
        self.acceptor.stop()

    def drop(self, reason: str) -> None:
        """Log the market-data session out, then take logons again (`Acceptor.drop`)."""
        self.acceptor.drop(reason, session=self.md)

    def handle(self) -> None:
        """Take in what the venue received since the last call."""
        events = self.acceptor.events()
        for kind, session, raw in events[self._seen:]:
            if kind == SessionEventKind.LOGON.value and session == self.md:
                self.logons += 1
            elif kind == SessionEventKind.APP.value:
                f = wire.Fields.parse(raw)
                if f.msg_type == "V":
                    self.requests.append(f)
        self._seen = len(events)

    def request_for(self, symbol: str, after: int = 0) -> wire.Fields | None:
        for f in self.requests[after:]:
            if next(f.groups(wire.NO_RELATED_SYM, wire.SYMBOL)).get(wire.SYMBOL) == symbol:
                return f
        return None

    # ---- what the venue sends ----

    def send(self, msg_type: str, fields: list[tuple[int, str]], groups: list[Group] | None = None) -> None:
        self.acceptor.send(msg_type, fields, groups or [], session=self.md)

    def snapshot(self, req: str, symbol: str, bid: tuple[float, float], ask: tuple[float, float], *, exch: str = "",
                 time_of_day: str = "") -> None:
        fields = [(wire.MD_REQ_ID, req)] if req else []
        fields.append((wire.SYMBOL, symbol))
        if exch:
            fields.append((wire.SECURITY_EXCHANGE, exch))
        groups: list[Group] = []
        for side, (px, size) in (("0", bid), ("1", ask)):
            entry = [(wire.MD_ENTRY_TYPE, side), (wire.MD_ENTRY_PX, repr(px)), (wire.MD_ENTRY_SIZE, repr(size))]
            if time_of_day:
                entry += [(272, "20260105"), (273, time_of_day)]
            groups.append((wire.NO_MD_ENTRIES, wire.MD_ENTRY_TYPE, entry))
        self.send("W", fields, groups)

    def update(self, symbol: str, *entries: tuple) -> None:
        """X: entries are (action, side) for a delete or (action, side, px, size)."""
        groups: list[Group] = []
        for e in entries:
            entry = [(wire.MD_UPDATE_ACTION, e[0]), (wire.MD_ENTRY_TYPE, e[1]), (wire.SYMBOL, symbol)]
            if len(e) > 2:
                entry += [(wire.MD_ENTRY_PX, repr(e[2])), (wire.MD_ENTRY_SIZE, repr(e[3]))]
            groups.append((wire.NO_MD_ENTRIES, wire.MD_UPDATE_ACTION, entry))
        self.send("X", [], groups)

    def reject(self, req: str, reason: str, text: str) -> None:
        self.send("Y", [(wire.MD_REQ_ID, req), (wire.MD_REQ_REJ_REASON, reason), (wire.TEXT, text)])


class Rig:
    """Acceptor + real ingest (`xmc up`) + a bus tap, and one blocking wait over all of them."""

    def __init__(self, tmp_path: Path, run_dir: Path, version: str = "FIX.4.2") -> None:
        self.run_dir = run_dir
        self.cfg_path = config(tmp_path, version)
        self.cfg = load_config(self.cfg_path)
        self.venue = Venue(self.cfg, run_dir)
        self.tap: BusTap | None = None
        self.quotes: list[tuple[str, Quote]] = []
        self.heartbeats = 0

    def up(self) -> None:
        self.venue.start()  # listening before ingest connects
        xmc("up", str(self.cfg_path), "--detach", run_dir=self.run_dir, check=True)
        self.tap = BusTap(self.cfg, self.run_dir, {ACTOR: ["md.CME.", f"hb.{ACTOR}"]})

    def close(self) -> None:
        if self.tap is not None:
            self.tap.close()
        self.venue.close()

    def until(self, cond: Callable[[], object], timeout: float, what: str) -> None:
        """Take in what the venue received and read the tap until `cond()` holds; fail naming `what`
        after `timeout` s."""
        assert self.tap is not None
        poller = zmq.Poller()
        wake = self.venue.acceptor.wake_fd  # readable when the venue received something
        if wake is not None:
            poller.register(wake, zmq.POLLIN)
        for s in self.tap.socks:
            poller.register(s, zmq.POLLIN)
        deadline = time.monotonic() + timeout
        while True:
            if self.venue.running:
                self.venue.handle()
            for topic, env in self.tap.read():
                if isinstance(env.body, Quote):
                    self.quotes.append((topic, env.body))
                elif isinstance(env.body, Heartbeat):
                    self.heartbeats += 1
            if cond():
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                     f"requests={len(self.venue.requests)} quotes={len(self.quotes)}")
            poller.poll(min(left, 0.2) * 1000)

    def subscribed(self, after: int = 0) -> dict[str, wire.Fields]:
        """Wait for one MarketDataRequest per instrument (after the first `after` ones) and a live tap.

        The deadline covers a reconnect: QuickFIX's initiator takes ReconnectInterval only from the
        settings' [DEFAULT] section, so it may wait its own default of 30 s between attempts."""
        want = ("ESZ6", "NQ", "6EZ6")
        self.until(lambda: all(self.venue.request_for(s, after) for s in want) and self.heartbeats > 0, 50,
                   "a MarketDataRequest for every instrument of CME")
        return {s: self.venue.request_for(s, after) for s in want}  # type: ignore[misc]

    def events(self, name: str) -> list[dict]:
        path = self.run_dir / "logs" / f"{ACTOR}.jsonl"
        return [e for e in map(json.loads, path.read_text().splitlines()) if e.get("event") == name]


@pytest.fixture
def rig(tmp_path: Path, run_dir: Path):
    r = Rig(tmp_path, run_dir)
    try:
        yield r
    finally:
        r.close()


@pytest.mark.parametrize("version", ["FIX.4.2", "FIX.4.4"])
def test_snapshots_and_updates_become_quotes_on_the_instrument_topic(tmp_path: Path, run_dir: Path, version: str) -> None:
    rig = Rig(tmp_path, run_dir, version)
    try:
        rig.up()
        reqs = rig.subscribed()
        es, nq, eur = reqs["ESZ6"], reqs["NQ"], reqs["6EZ6"]
        for f, inst in ((es, "ES"), (nq, "NQ"), (eur, "6E")):
            assert f.get(wire.BEGIN_STRING) == version
            assert f.get(wire.MD_REQ_ID).startswith(f"CME-{inst}-")
            assert (f.get(263), f.get(264), f.get(265)) == ("1", "1", "0")
            assert [e.get(269) for e in f.groups(267, 269)] == ["0", "1"]
        assert next(nq.groups(146, 55)).get(207) == "XCME"
        assert len({f.get(wire.MD_REQ_ID) for f in reqs.values()}) == 3

        v = rig.venue
        v.snapshot(es.get(262), "ESZ6", (5000.25, 12), (5000.5, 9), time_of_day="14:30:00.250")
        v.snapshot(nq.get(262), "NQ", (21000.0, 3), (21000.25, 4), exch="XCME")
        v.update("ESZ6", ("1", "0", 5000.0, 20))  # bid changes: full quote with the kept offer
        v.update("ESZ6", ("2", "1"))  # offer deleted: nothing
        v.update("ESZ6", ("0", "1", 5000.75, 2))  # offer back: quote
        rig.until(lambda: len(rig.quotes) >= 4, 15, "4 quotes")
        es_quotes = [(q.bid, q.bid_size, q.ask, q.ask_size) for t, q in rig.quotes if t == "md.CME.ESZ6"]
        assert es_quotes == [(5000.25, 12, 5000.5, 9), (5000.0, 20, 5000.5, 9), (5000.0, 20, 5000.75, 2)]
        [nq_q] = [q for t, q in rig.quotes if t == "md.CME.NQZ6"]
        assert (nq_q.venue, nq_q.symbol, nq_q.bid, nq_q.ask) == ("CME", "NQZ6", 21000.0, 21000.25)
        first = rig.quotes[0][1]
        assert first.symbol == "ESZ6" and first.exch_ts_ns == 1767623400250000000  # 2026-01-05 14:30:00.250 UTC
        assert all(q.recv_ns > 0 and q.venue_seq > 0 for _, q in rig.quotes)
        es_seqs = [q.venue_seq for t, q in rig.quotes if t == "md.CME.ESZ6"]
        assert es_seqs == sorted(es_seqs) and len(set(es_seqs)) == 3

        [logon] = rig.events("fix_md_logon")
        assert (logon["venue"], logon["session"]) == ("CME", f"{version}:XMC_MD->CMEX")
        assert len(rig.events("fix_md_subscribed")) == 3
        a = actor_when(run_dir, lambda a: a["detail"].get("fix_md_quotes", 0) >= 3, "quotes counted in the heartbeat detail")
        assert a["state"] == "running", a
        assert a["detail"][f"fix.{MD_SESSION}.state"] == 1.0
        assert a["detail"]["fix_md_requests"] == 3.0 and a["detail"]["fix_md_rejected"] == 0.0
    finally:
        rig.close()


def test_reject_and_bad_messages_show_in_the_heartbeat_and_the_actor_keeps_running(rig: Rig) -> None:
    rig.up()
    reqs = rig.subscribed()
    v = rig.venue
    v.reject(reqs["6EZ6"].get(262), "0", "6EZ6 is not offered on this session")
    for _ in range(2):  # dropped, counted twice, logged once
        v.snapshot("nobody", "GCZ6", (2000.0, 1), (2000.1, 1))
    v.snapshot(reqs["ESZ6"].get(262), "ESZ6", (5001.0, 1), (5000.0, 1))  # crossed
    v.snapshot(reqs["ESZ6"].get(262), "ESZ6", (5000.0, 1), (5000.25, 1))
    rig.until(lambda: rig.quotes, 15, "the good quote after the bad ones")
    assert [(t, q.bid) for t, q in rig.quotes] == [("md.CME.ESZ6", 5000.0)]

    a = actor_when(rig.run_dir, lambda a: a["state"] == "degraded" and a["detail"].get("fix_md_bad") == 3.0,
                   "ingest degraded by the reject, the bad messages counted")
    d = a["detail"]
    assert d["fix_md_bad.FIX_MD_UNKNOWN_SYMBOL"] == 2.0 and d["fix_md_bad.FIX_MD_CROSSED"] == 1.0
    assert d["fix_md_rejected"] == 1.0 and d["fix_md_rejected_now"] == 1.0 and d["fix_md_quotes"] == 1.0
    [rej] = rig.events("fix_md_rejected")
    assert (rej["venue"], rej["instrument"], rej["symbol"], rej["reason"]) == ("CME", "6E", "6EZ6", "UNKNOWN_SYMBOL")
    assert rej["md_req_id"] == reqs["6EZ6"].get(262) and "not offered" in rej["text"] and rej["level"] == "error"
    assert [e["reason"] for e in rig.events("fix_md_dropped")] == ["FIX_MD_UNKNOWN_SYMBOL", "FIX_MD_CROSSED"]
    [deg] = rig.events("actor_degraded")
    assert "FIX_MD_REJECTED" in deg["reason"] and "instrument=6E" in deg["reason"]

    # the instrument quotes after all (a later subscription worked): the actor recovers
    v.snapshot("", "6EZ6", (1.1, 5), (1.10005, 5))
    wait_for(lambda: actor(rig.run_dir, ACTOR)["state"] == "running", 15, "ingest running again")
    assert actor(rig.run_dir, ACTOR)["detail"]["fix_md_rejected"] == 1.0


@pytest.mark.slow
def test_after_the_venue_drops_the_session_or_restarts_ingest_subscribes_again(rig: Rig) -> None:
    rig.up()
    first = rig.subscribed()
    v = rig.venue
    v.snapshot(first["ESZ6"].get(262), "ESZ6", (5000.0, 1), (5000.25, 1))
    rig.until(lambda: len(rig.quotes) == 1, 15, "the first quote")

    # 1. the venue logs the session out; ingest reconnects and asks again with fresh request ids
    n = len(v.requests)
    v.drop("test drops the session")
    second = rig.subscribed(after=n)
    assert {f.get(262) for f in second.values()}.isdisjoint({f.get(262) for f in first.values()})
    assert v.logons == 2
    # an update of one side alone does not complete a book that was forgotten at the logout
    v.update("ESZ6", ("1", "0", 5000.5, 2))
    v.snapshot(second["ESZ6"].get(262), "ESZ6", (5000.5, 2), (5000.75, 3))
    rig.until(lambda: len(rig.quotes) == 2, 15, "a quote after the first reconnect")
    assert (rig.quotes[-1][1].bid, rig.quotes[-1][1].ask) == (5000.5, 5000.75)

    # 2. the venue goes away entirely and comes back on the same port
    v.stop()
    wait_for(lambda: len(rig.events("fix_md_logout")) == 2, 15, "ingest logged out twice")
    v.start()
    n = len(v.requests)
    third = rig.subscribed(after=n)
    v.snapshot(third["NQ"].get(262), "NQ", (21000.0, 1), (21000.5, 1), exch="XCME")
    rig.until(lambda: len(rig.quotes) == 3, 15, "a quote after the venue came back")
    assert rig.quotes[-1][0] == "md.CME.NQZ6"

    # every instrument again after each logon, and after each ResendRequest of the venue (what it
    # missed of ours is gap-filled, never resent, so the subscriptions go out anew)
    rounds = len(rig.events("fix_md_logon")) + len(rig.events("fix_md_resubscribe"))
    assert len(rig.events("fix_md_logon")) == 3 and len(rig.events("fix_md_subscribed")) == 3 * rounds
    a = actor_when(rig.run_dir, lambda a: a["detail"].get(f"fix.{MD_SESSION}.logons") == 3.0,
                   "three logons in the heartbeat detail")
    assert a["detail"][f"fix.{MD_SESSION}.state"] == 1.0 and a["detail"]["fix_md_requests"] == 3.0 * rounds
    assert a["restarts"] == 0
