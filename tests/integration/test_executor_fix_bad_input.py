"""The executor against a misbehaving FIX venue, real processes: each bad thing is counted and
logged under a stable event name, the executor keeps running (same pid, no restart, no traceback)
and nothing the venue sent goes unaccounted for.

The executor (`xmc up`, the only actor) holds COMEX's order session as a QuickFIX initiator. The
venue is the test's: a QuickFIX acceptor (`feeds.fix.session.FixEngine`, CompIDs swapped by
`feeds.fix.venue.acceptor_sessions`, in a process of its own: see `Acceptor`) for what a real but
hostile venue says, or `RawVenue`, a plain TCP server for what no FIX engine would send (garbage
bytes, broken frames) and for reading the executor's Logon off the wire. Every wait polls a
condition with a deadline (`helpers.wait_for`).

What the runs showed about QuickFIX (the tests rely on it):
- an acceptor that refuses a Logon (`refuse_logon` -> `RejectLogon`) answers it with a Logout
  ``58=Rejected Logon Attempt: <why>`` and stays enabled: once the refusal is lifted, the
  initiator's next attempt logs on without `Session.logon()` on the acceptor side;
- an acceptor that does not know the CompIDs of a Logon drops the connection without a word;
- the initiator uses up a sequence number or more per logon attempt, even when it cannot connect,
  so a growing next_out_seq counts attempts;
- QuickFIX's dictionary check lets a quantity of any number of digits through (400 nines are
  inf to Python): only xmc's own reading of the message can refuse it.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

import msgspec
import pytest

from bus.messages import Alert, Heartbeat, Severity
from configs.load import load_config
from feeds.fix.venue import acceptor_sessions
from fixpeer import Acceptor, free_port
from helpers import BusTap, actor, started_until_down, status, wait_for, write_config, xmc

qf = pytest.importorskip("quickfix")

pytestmark = pytest.mark.slow

VENUE = "COMEX"
SESSION = "XMC->COMEX"  # the executor's side, as `xmc status` names it
KEY = f"fix.{VENUE}.{SESSION}"  # its heartbeat detail: KEY.state, KEY.next_out_seq, ...
SOH = "\x01"


def config(tmp_path: Path, port: int, *, version: str = "FIX.4.2", extra: str = "") -> Path:
    """COMEX over FIX on `port`, one account trading it, the executor alone (`xmc check`: ok)."""
    return write_config(tmp_path / "fix-bad.toml", f"""
[run]
heartbeat_s = 0.2
restart_backoff_s = 0.1
[venues.{VENUE}]
kind = "fix"
[venues.{VENUE}.fix]
port = {port}
version = "{version}"
sender_comp_id = "XMC"
target_comp_id = "COMEX"
heartbeat_s = 1
reconnect_s = 1
logon_timeout_s = 1
{extra}
[accounts.hk]
currency = "USD"
balance = 1000000
venues = ["{VENUE}"]
[actors.executor]
kind = "executor"
""")


# ---- reading the executor ---------------------------------------------------------------------------


def executor(run_dir: Path) -> dict:
    return actor(run_dir, "executor")


def session(run_dir: Path) -> dict:
    """The executor's order session as `xmc status --json` lists it under fix_sessions."""
    return next(s for s in status(run_dir)["fix_sessions"] if s["actor"] == "executor" and s["session"] == SESSION)


def log_events(run_dir: Path, name: str | None = None) -> list[dict]:
    """The executor's JSON log lines (complete ones only), optionally those of one event."""
    text = (run_dir / "logs" / "executor.jsonl").read_text()
    out = [json.loads(line) for line in text.split("\n")[:-1] if line]  # the last piece may be half written
    return [e for e in out if name is None or e.get("event") == name]


def assert_survived(run_dir: Path, pid: int) -> dict:
    """The executor that started is the one running: no restart, no handler error, no traceback."""
    a = executor(run_dir)
    assert (a["state"], a["restarts"], a["pid"]) == ("running", 0, pid), a
    assert a["detail"].get("handler_errors", 0) == 0, a["detail"]
    assert not log_events(run_dir, "handler_error")
    stderr = (run_dir / "logs" / "executor.stderr").read_text(errors="replace")
    assert "Traceback" not in stderr, stderr[-3000:]
    return a


def up(cfg_path: Path, run_dir: Path) -> int:
    """`xmc up` the config; the executor's pid."""
    xmc("up", str(cfg_path), "--detach", run_dir=run_dir, check=True)
    a = wait_for(lambda: (e := executor(run_dir))["state"] == "running" and e, 10, "the executor running")
    return int(a["pid"])


# ---- the venue: a QuickFIX acceptor -------------------------------------------------------------------


# ---- the venue: raw TCP ------------------------------------------------------------------------------


def fix_frame(fields: list[tuple[int, object]], begin: str = "FIX.4.2") -> bytes:
    """A well-formed FIX frame: BeginString, BodyLength, the fields, CheckSum."""
    body = "".join(f"{tag}={value}{SOH}" for tag, value in fields)
    head = f"8={begin}{SOH}9={len(body.encode())}{SOH}"
    checksum = sum((head + body).encode()) % 256
    return (head + body + f"10={checksum:03d}{SOH}").encode()


def utc_now() -> str:
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime())


FRAME_END = re.compile(rb"\x0110=\d{3}\x01")
Script = Callable[[socket.socket, int], None]  # (connection, its index from 0): what the venue sends


class RawVenue:
    """A TCP server on the venue's port that reads the executor's Logon off each connection, then
    runs that connection's script (the last script for every later connection) and holds the
    connection until the executor drops it."""

    def __init__(self, port: int, scripts: list[Script]) -> None:
        self.scripts = scripts
        self.logons: list[bytes] = []  # the executor's Logon on each connection, as it came off the wire
        self.logon_times: list[float] = []  # time.time() when each was read
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._srv = socket.create_server(("127.0.0.1", port))
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def connections(self) -> int:
        with self._lock:
            return len(self.logons)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return  # closed
            with self._lock:
                self._conns.append(conn)
                t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
                self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        n = -1
        try:
            conn.settimeout(30)
            data = b""
            while not FRAME_END.search(data):
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            with self._lock:
                n = len(self.logons)  # scripts go by Logon: the n-th Logon gets the n-th script
                self.logons.append(data)
                self.logon_times.append(time.time())
            self.scripts[min(n, len(self.scripts) - 1)](conn, n)
            while conn.recv(4096):  # whatever the executor still says; it is the one to hang up
                pass
        except ConnectionResetError:  # it hung up on unread garbage (RST): hanging up all the same
            pass
        except OSError as exc:  # a timeout: the executor kept a garbage connection open for 30 s
            with self._lock:
                self.errors.append(f"connection of logon {n}: {exc!r}")
        finally:
            conn.close()

    def close(self) -> None:
        try:
            self._srv.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        except OSError:
            pass
        self._srv.close()
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in [self._accepting, *threads]:
            t.join(5)


@pytest.fixture
def raw_venues(run_dir: Path) -> Iterator[Callable[[int, list[Script]], RawVenue]]:
    yield from started_until_down(run_dir, RawVenue, RawVenue.close)


# ---- 1. wrong CompIDs -------------------------------------------------------------------------------


def test_wrong_comp_id_venue_never_logs_on_and_executor_keeps_running_then_logs_on_to_the_right_one(
        tmp_path: Path, run_dir: Path, acceptors: Callable[..., Acceptor]) -> None:
    port = free_port()
    cfg_path = config(tmp_path, port)
    fx = load_config(cfg_path).venues[VENUE].fix
    right = acceptor_sessions(tmp_path / "venue", VENUE, fx)
    # the venue knows COMEX->OTHERDESK only: the executor's Logon (XMC->COMEX) names no session of it
    wrong = acceptors([msgspec.structs.replace(s, target_comp_id="OTHERDESK") for s in right], fx.version)
    pid = up(cfg_path, run_dir)

    first = session(run_dir)
    # every attempt uses up a sequence number or more: three more, on a venue that listens and never answers
    wait_for(lambda: session(run_dir)["next_out_seq"] >= first["next_out_seq"] + 3, 15,
             "three more logon attempts by the executor")
    s = session(run_dir)
    assert (s["state"], s["logons"]) == ("CONNECTING", 0.0), s
    assert wrong.logons() == 0
    assert not log_events(run_dir, "fix_session_logon")
    a = assert_survived(run_dir, pid)
    assert a["detail"][f"{KEY}.state"] == 0.0

    # the same executor, still retrying, logs on once the venue on that port knows its CompIDs
    wrong.stop()
    good = acceptors(right, fx.version)
    wait_for(lambda: session(run_dir)["state"] == "LOGGED_ON", 15, "the session logged on to the right venue")
    assert good.logons() == 1
    [logon] = log_events(run_dir, "fix_session_logon")
    assert logon["venue"] == VENUE and logon["session"] == f"FIX.4.2:{SESSION}"
    assert_survived(run_dir, pid)


# ---- 2. logon refused -------------------------------------------------------------------------------


def test_refused_logon_is_retried_until_the_venue_accepts_it_and_executor_keeps_running(
        tmp_path: Path, run_dir: Path, acceptors: Callable[..., Acceptor]) -> None:
    port = free_port()
    cfg_path = config(tmp_path, port)
    fx = load_config(cfg_path).venues[VENUE].fix
    venue = acceptors(acceptor_sessions(tmp_path / "venue", VENUE, fx), fx.version)
    why = "ACCOUNT_SUSPENDED: desk=XMC"
    venue.refuse_logons(why)
    pid = up(cfg_path, run_dir)

    # each refusal is a Logout the venue sends: three of them are three logon attempts refused
    wait_for(lambda: venue.next_out_seq() >= 4, 15, "three logons refused by the venue")
    s = session(run_dir)
    assert (s["state"], s["logons"]) == ("CONNECTING", 0.0), s
    assert venue.logons() == 0 and not log_events(run_dir, "fix_session_logon")
    # each refusal counted and logged with the venue's reason; none is a bad message
    s = wait_for(lambda: (r := session(run_dir)).get("logon_refused", 0) >= 3 and r, 10, "logon_refused >= 3")
    refusals = wait_for(lambda: len(e := log_events(run_dir, "fix_logon_refused")) >= 3 and e, 10,
                        "three fix_logon_refused")
    assert all(e["venue"] == VENUE and why in e["reason"] for e in refusals), refusals
    assert [e["attempts"] for e in refusals[:3]] == [1, 2, 3], refusals
    assert executor(run_dir)["detail"].get(f"fix.{VENUE}.bad_messages", 0) == 0
    assert not log_events(run_dir, "fix_message_dropped")
    assert_survived(run_dir, pid)

    # lifted: the executor's next attempt logs on (the acceptor session needs no re-enabling)
    refused = venue.next_out_seq() - 1
    venue.refuse_logons(None)
    wait_for(lambda: venue.logons() == 1, 15, "the venue to accept the executor's logon")
    wait_for(lambda: session(run_dir)["state"] == "LOGGED_ON", 10, "LOGGED_ON in xmc status")
    [logon] = log_events(run_dir, "fix_session_logon")
    assert logon["venue"] == VENUE
    assert refused >= 3
    s = session(run_dir)
    # (not necessarily every refusal: one that comes after the executor's 1 s logon timeout meets a closed socket)
    assert (s["logons"], s["refused"]) == (1.0, 0.0) and s["logon_refused"] >= 3, s
    assert_survived(run_dir, pid)


# ---- 3. bad messages on a logged-on session -----------------------------------------------------------


UNKNOWN = "NEVER-SENT"  # ClOrdIDs the executor never sent


def exec_report(cl_ord_id: str, exec_id: str, exec_type: str | None, **extra: str) -> list[tuple[int, str]]:
    """A FIX 4.4 ExecutionReport's fields, every required one present (ExecType left out if None);
    `t<tag>=value` adds or overrides a field."""
    fields = {37: "V-1", 11: cl_ord_id, 17: exec_id, 39: "0", 55: "GC", 54: "1", 38: "1", 151: "1", 14: "0", 6: "0"}
    if exec_type is not None:
        fields[150] = exec_type
    fields.update({int(k[1:]): v for k, v in extra.items()})
    return list(fields.items())


def test_bad_messages_on_a_logged_on_session_are_counted_and_logged_and_the_session_stays_up(
        tmp_path: Path, run_dir: Path, acceptors: Callable[..., Acceptor]) -> None:
    port = free_port()
    cfg_path = config(tmp_path, port, version="FIX.4.4")  # 4.4: ExecType H (trade cancel) is in its dictionary
    cfg = load_config(cfg_path)
    fx = cfg.venues[VENUE].fix
    venue = acceptors(acceptor_sessions(tmp_path / "venue", VENUE, fx), fx.version)
    pid = up(cfg_path, run_dir)
    tap = BusTap(cfg, run_dir, {"executor": ["risk.alert", "hb.executor"]})
    try:
        wait_for(lambda: session(run_dir)["state"] == "LOGGED_ON", 15, "the order session logged on")
        # a first logon answered after the 1 s logon timeout is retried: count from the one that held
        logons_before = venue.logons()
        beats: list[Heartbeat] = []
        alerts: list[Alert] = []

        def read_tap() -> None:
            for _, env in tap.read():
                if isinstance(env.body, Alert):
                    alerts.append(env.body)
                elif isinstance(env.body, Heartbeat):
                    beats.append(env.body)

        wait_for(lambda: (read_tap(), beats)[1], 10, "the tap subscribed (a heartbeat through it)")

        # 1. an ExecutionReport of an unknown order without ExecType: QuickFIX refuses it (a Reject back)
        venue.send("8", exec_report(f"{UNKNOWN}-1", "X-1", None))
        # 2. a message type the dictionary knows and the executor has no use for
        venue.send("B", [(148, "exchange notice"), (33, "1"), (58, "all is well")])
        # 3. a trade bust, complete: xmc refuses to guess, drops it and raises a critical alert
        venue.send("8", exec_report(f"{UNKNOWN}-2", "X-2", "H", t19="X-0"))
        # 4. a session-level Reject of a message the executor never sent
        venue.send("3", [(45, "999"), (58, "no such message")])
        # 5. a well-formed report of an order the executor never sent: mapped, counted, an orphan
        venue.send("8", exec_report(f"{UNKNOWN}-3", "X-3", "0"))
        sent_to = venue.next_out_seq()

        def settled() -> dict | None:
            d = executor(run_dir)["detail"]
            done = (d.get(f"{KEY}.refused") == 1.0 and d.get(f"fix.{VENUE}.bad_messages") == 3.0
                    and d.get(f"fix.{VENUE}.reports") == 1.0 and d.get("orphan_reports") == 1.0)
            return d if done else None

        d = wait_for(settled, 15, "1 refused, 3 dropped, 1 orphan report counted")

        [refused] = log_events(run_dir, "fix_message_refused")
        assert refused["venue"] == VENUE and "35=3" in refused["message"] and "371=150" in refused["message"], refused
        dropped = [e["reason"] for e in log_events(run_dir, "fix_message_dropped")]
        assert len(dropped) == 3, dropped
        assert dropped[0] == "FIX_UNEXPECTED: msg_type=B"
        assert dropped[1].startswith("FIX_UNSUPPORTED: exec_type=H") and f"{UNKNOWN}-2" in dropped[1]
        assert dropped[2].startswith("FIX_REJECT_UNMATCHED: msg_type=3 ref_seq=999")
        [orphan] = log_events(run_dir, "report_orphan")
        assert orphan["cl_ord_id"] == f"{UNKNOWN}-3" and orphan["exec_type"] == "ACK"
        [exec_alert] = log_events(run_dir, "exec_alert")
        assert exec_alert["text"].startswith(f"EXEC_FIX_UNSUPPORTED: venue={VENUE} FIX_UNSUPPORTED: exec_type=H")
        wait_for(lambda: (read_tap(), alerts)[1], 10, "the alert on risk.alert")
        [alert] = alerts
        assert (alert.severity, alert.code, alert.actor) == (Severity.CRITICAL, "EXEC_FIX_UNSUPPORTED", "executor")

        # nothing lost: the executor took in every message the venue sent (no gap, no resend pending) and
        # each of the five is accounted for above; the session never dropped
        # (the venue heartbeats every second and status is a heartbeat old: equal at some moment)
        wait_for(lambda: session(run_dir)["next_in_seq"] == venue.next_out_seq() >= sent_to, 10,
                 "the executor's next_in_seq caught up with the venue's next_out_seq")
        s = session(run_dir)
        assert (s["state"], s["logons"]) == ("LOGGED_ON", 1.0), s
        assert not log_events(run_dir, "fix_session_down")
        assert venue.logons() == logons_before
        assert d[f"{KEY}.state"] == 1.0
        assert_survived(run_dir, pid)
    finally:
        tap.close()


# values only xmc's own reading of a message can refuse: QuickFIX's dictionary check lets a quantity of
# 400 digits through (it becomes inf), and with `validate = false` there is no dictionary check at all
BAD_VALUES = {
    "dictionary_on": ("true", [
        (exec_report(f"{UNKNOWN}-1", "X-1", "F", t32="9" * 400, t31="2400.5"), "FIX_BAD_VALUE: tag=32"),
    ]),
    "dictionary_off": ("false", [
        (exec_report(f"{UNKNOWN}-1", "X-1", None), "FIX_MISSING_TAG: tag=150 msg_type=8"),
        (exec_report(f"{UNKNOWN}-2", "X-2", "F", t32="nan", t31="2400.5"), "FIX_BAD_VALUE: tag=32"),
        (exec_report(f"{UNKNOWN}-3", "X-3", "F", t32="1", t31="2400.5", t14="1e999"), "FIX_BAD_VALUE: tag=14"),
        (exec_report(f"{UNKNOWN}-4", "X-4", "0", t54="Z"), "FIX_BAD_VALUE: tag=54"),
    ]),
}


@pytest.mark.parametrize("validate,bad", list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_execution_reports_with_unusable_values_are_dropped_and_the_next_report_still_counts(
        tmp_path: Path, run_dir: Path, acceptors: Callable[..., Acceptor], validate: str,
        bad: list[tuple[list[tuple[int, str]], str]]) -> None:
    port = free_port()
    cfg_path = config(tmp_path, port, version="FIX.4.4", extra=f"validate = {validate}")
    fx = load_config(cfg_path).venues[VENUE].fix
    venue = acceptors(acceptor_sessions(tmp_path / "venue", VENUE, fx), fx.version)
    pid = up(cfg_path, run_dir)
    wait_for(lambda: session(run_dir)["state"] == "LOGGED_ON", 15, "the order session logged on")

    for fields, _ in bad:
        venue.send("8", fields)
    venue.send("8", exec_report(f"{UNKNOWN}-9", "X-9", "0"))  # and then a good one
    sent_to = venue.next_out_seq()

    def settled_or_dead() -> dict | None:
        a = executor(run_dir)
        d = a["detail"]
        counted = d.get(f"fix.{VENUE}.bad_messages") == len(bad) and d.get(f"fix.{VENUE}.reports") == 1.0
        return a if counted or a["restarts"] or a["pid"] != pid else None

    wait_for(settled_or_dead, 15, "every report handled, or the executor gone")
    assert_survived(run_dir, pid)
    dropped = [e["reason"] for e in log_events(run_dir, "fix_message_dropped")]
    assert len(dropped) == len(bad), dropped
    for reason, (_, want) in zip(dropped, bad):
        assert reason.startswith(want), (reason, want)
    [orphan] = log_events(run_dir, "report_orphan")
    assert orphan["cl_ord_id"] == f"{UNKNOWN}-9"
    wait_for(lambda: session(run_dir)["next_in_seq"] == venue.next_out_seq() >= sent_to, 10,
             "the executor's next_in_seq caught up with the venue's next_out_seq")
    s = session(run_dir)
    assert (s["state"], s["logons"], s["refused"]) == ("LOGGED_ON", 1.0, 0.0), s
    assert_survived(run_dir, pid)


# ---- 4. garbage on the wire ---------------------------------------------------------------------------


def garbage(conn: socket.socket, n: int) -> None:
    """Bytes that are no FIX at all: every byte value, NULs, a torn BeginString."""
    conn.sendall(bytes(range(256)) * 2 + b"\x00\xff8=FI" + b"\x00" * 64 + b"=\x01=\x01\x01")


def bad_checksum(conn: socket.socket, n: int) -> None:
    frame = fix_frame([(35, "A"), (34, 1), (49, "COMEX"), (52, utc_now()), (56, "XMC"), (98, 0), (108, 1)])
    conn.sendall(frame[:-4] + b"999\x01")


def endless_body(conn: socket.socket, n: int) -> None:
    """A header announcing 99,999,999 bytes of body, then a little: the frame never ends."""
    conn.sendall(b"8=FIX.4.2\x019=99999999\x0135=A\x0134=1\x01" + b"x" * 200)


def stranger_logon(conn: socket.socket, n: int) -> None:
    """A well-formed Logon from CompIDs that are not the venue's."""
    conn.sendall(fix_frame([(35, "A"), (34, 1), (49, "EVIL"), (52, utc_now()), (56, "XMC"), (98, 0), (108, 1)]))


def logon_then_garbage(conn: socket.socket, n: int) -> None:
    """The venue's proper Logon, then only garbage: no Heartbeat, no answer to a TestRequest."""
    conn.sendall(fix_frame([(35, "A"), (34, 1), (49, "COMEX"), (52, utc_now()), (56, "XMC"), (98, 0), (108, 1)]))
    garbage(conn, n)


def hang_up(conn: socket.socket, n: int) -> None:
    conn.shutdown(socket.SHUT_RDWR)


def test_garbage_on_the_wire_never_logs_on_or_drops_the_session_and_executor_keeps_running(
        tmp_path: Path, run_dir: Path, raw_venues: Callable[[int, list[Script]], RawVenue]) -> None:
    port = free_port()
    venue = raw_venues(port, [garbage, bad_checksum, endless_body, stranger_logon, logon_then_garbage, hang_up])
    pid = up(config(tmp_path, port), run_dir)

    # four connections of garbage: the executor drops each (logon timeout, bad frame) and tries again
    wait_for(lambda: venue.connections() >= 4, 20, "the executor's fourth connection")
    assert_survived(run_dir, pid)

    # the fifth logs on, then hears nothing but garbage: the executor drops the session itself
    wait_for(lambda: log_events(run_dir, "fix_session_logon"), 20, "the logon on the fifth connection")
    wait_for(lambda: session(run_dir)["state"] == "DOWN", 15, "the session dropped (DOWN)")
    [down] = log_events(run_dir, "fix_session_down")
    assert down["venue"] == VENUE
    wait_for(lambda: venue.connections() >= 6, 15, "the executor connecting again after the drop")

    # one logon only, and on the fifth connection (the first where the venue said a proper Logon)
    [logon] = log_events(run_dir, "fix_session_logon")
    logged_on_at = datetime.fromisoformat(logon["ts"].replace("Z", "+00:00")).timestamp()
    assert venue.logon_times[4] < logged_on_at < venue.logon_times[5], (venue.logon_times, logon)
    assert all(b"35=A\x01" in m and b"49=XMC\x01" in m for m in venue.logons), venue.logons
    s = session(run_dir)
    assert (s["state"], s["logons"], s["refused"]) == ("DOWN", 1.0, 0.0), s
    assert_survived(run_dir, pid)
    assert not venue.errors, venue.errors


# ---- 5. the logon password ----------------------------------------------------------------------------


def test_logon_password_is_on_the_wire_only_never_in_a_file_or_status(
        tmp_path: Path, run_dir: Path, raw_venues: Callable[[int, list[Script]], RawVenue],
        monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"pw-{uuid.uuid4().hex}"
    monkeypatch.setenv("XMC_TEST_FIX_PASSWORD", secret)  # the `xmc up` subprocess inherits it
    port = free_port()

    def refuse(conn: socket.socket, n: int) -> None:
        conn.sendall(fix_frame([(35, "5"), (34, n + 1), (49, "COMEX"), (52, utc_now()), (56, "XMC"),
                                (58, "Rejected Logon Attempt: BAD_PASSWORD")]))
        conn.shutdown(socket.SHUT_WR)

    venue = raw_venues(port, [refuse])
    cfg_path = config(tmp_path, port, extra='username = "desk"\npassword_env = "XMC_TEST_FIX_PASSWORD"')
    assert secret not in cfg_path.read_text()
    pid = up(cfg_path, run_dir)
    wait_for(lambda: venue.connections() >= 2, 15, "two logon attempts")
    # it does go out: tag 554 of the Logon on the wire
    assert all(f"553=desk{SOH}554={secret}{SOH}".encode() in logon for logon in venue.logons), venue.logons
    views = [xmc("status", "--json", run_dir=run_dir, check=True).stdout,
             xmc("logs", "executor", run_dir=run_dir, check=True).stdout]
    assert_survived(run_dir, pid)
    xmc("down", run_dir=run_dir, check=True)

    store = run_dir / "state" / "fix" / VENUE / "orders"  # QuickFIX's file store of the session: scanned too
    assert any(p.name.endswith(".seqnums") for p in store.iterdir()), sorted(store.iterdir())
    leaks = [str(p) for root in (run_dir, tmp_path) for p in sorted(root.rglob("*"))
             if p.is_file() and secret.encode() in p.read_bytes()]
    leaks += [f"CLI output {i}" for i, out in enumerate(views) if secret in out]
    assert not leaks, f"the password is in {leaks}"
