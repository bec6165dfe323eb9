"""Real FIX peers for tests, on loopback.

`Acceptor`: a test's own FIX venue, xmc's `feeds.fix.session.FixEngine("acceptor", ...)` in a
process of its own driven over a pipe (QuickFIX 1.15's acceptor can crash the process that stops
it: see `_acceptor_process`). No test starts or stops a QuickFIX acceptor in the pytest process.

`ExamplePeer`: QuickFIX's own example executor (Debian's libquickfix-doc). The executor answers a limit NewOrderSingle with a fill of the whole quantity at the
limit price; a market order gets a session-level Reject (35=3), and anything else it
does not handle (OrderCancelRequest, OrderStatusRequest) a BusinessMessageReject (35=j).
`make test` installs the package (`make fix-peer`).
"""

from __future__ import annotations

import gzip
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from helpers import wait_for

if TYPE_CHECKING:
    from feeds.fix.session import SessionSpec

EXECUTOR_GZ = Path("/usr/share/doc/libquickfix-doc/examples/executor/C++/.libs/executor.gz")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class ExamplePeer:
    """QuickFIX's example executor as a running process (`stop()` ends it)."""

    def __init__(self, work: Path, port: int, begin_string: str = "FIX.4.2", sender: str = "EXECUTOR",
                 target: str = "XMC") -> None:
        if not EXECUTOR_GZ.exists():
            raise RuntimeError(f"{EXECUTOR_GZ} is missing: run `make fix-peer` (apt: libquickfix17 libquickfix-doc)")
        work.mkdir(parents=True, exist_ok=True)
        binary = work / "executor"
        with gzip.open(EXECUTOR_GZ) as src, open(binary, "wb") as dst:
            shutil.copyfileobj(src, dst)
        binary.chmod(0o755)
        dictionary = Path(sys.prefix) / "share" / "quickfix" / (begin_string.replace(".", "") + ".xml")
        cfg = work / "executor.cfg"
        cfg.write_text(
            "[DEFAULT]\nConnectionType=acceptor\n"
            f"SocketAcceptPort={port}\nSocketReuseAddress=Y\nStartTime=00:00:00\nEndTime=00:00:00\n"
            f"FileStorePath={work / 'store'}\nUseDataDictionary=Y\nDataDictionary={dictionary}\n"
            f"[SESSION]\nBeginString={begin_string}\nSenderCompID={sender}\nTargetCompID={target}\n")
        self.port = port
        self.log = work / "executor.out"
        self.proc = subprocess.Popen([str(binary), str(cfg)], stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,
                                     cwd=work, env={**os.environ, "LD_LIBRARY_PATH": ""})
        wait_for(lambda: self.proc.poll() is not None or listening(port), 15, "the example executor to listen")
        if self.proc.poll() is not None:
            raise RuntimeError(f"example executor exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)



# ---- a test's own venue: a QuickFIX acceptor in a process of its own ---------------------------------

Fields = Sequence[tuple[int, str]]  # (tag, value) in the order they are set
Group = tuple[int, int, Fields]  # (count tag, delimiter tag, the group's fields): one repeating-group entry
Event = tuple[str, str, str]  # (kind, session, raw) of a `SessionEvent` the acceptor's engine handed over


class Acceptor:
    """A FIX venue for a test: `FixEngine("acceptor", specs, ...)` in a spawned process of its own,
    driven over a pipe; started by the constructor unless `start=False`.

    Its own process because QuickFIX's acceptor can crash the process that stops it (see
    `_acceptor_process`): a crash there must not take the test run with it. `stop()` ends that
    process and `start()` spawns a new one on the same sessions (same port, same file store): a
    venue that goes away and comes back. What the engine reported (`events()`) is kept across both.

    `session` arguments default to the first spec's session. `wake_fd` (while running) is readable
    when the venue has events the test has not fetched yet: register it in a poller to block on
    the venue; `events()` clears it."""

    def __init__(self, specs: list[SessionSpec], version: str, *, start: bool = True) -> None:
        self.specs = list(specs)
        self.version = version
        self.sid = specs[0].session_id
        self.exitcodes: list[int | None] = []  # of every process stopped so far (-11: QuickFIX crashed stopping)
        self._events: list[Event] = []  # fetched from every process so far, in arrival order
        self._fetched = 0  # of the running process's events
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._wake: Connection | None = None
        if start:
            self.start()

    # ---- the process ----

    @property
    def running(self) -> bool:
        return self._proc is not None

    @property
    def wake_fd(self) -> int | None:
        return self._wake.fileno() if self._wake is not None else None

    def start(self) -> None:
        """Spawn the venue's process; back once QuickFIX listens."""
        assert self._proc is None, "the venue is running already"
        mp = multiprocessing.get_context("spawn")  # never fork the test process (threads, QuickFIX, zmq)
        self._conn, child = mp.Pipe()
        self._wake, wake_child = mp.Pipe(duplex=False)  # (read end, write end): a byte per batch of events
        os.set_blocking(self._wake.fileno(), False)
        self._proc = mp.Process(target=_acceptor_process, args=(child, wake_child, self.specs, self.version),
                                daemon=True)
        self._proc.start()
        child.close()
        wake_child.close()
        self._fetched = 0
        self._call("ping", timeout=30)  # QuickFIX is listening once this answers

    def stop(self) -> None:
        """Stop the venue (QuickFIX logs its sessions out first) and end its process; idempotent."""
        if self._proc is None:
            return
        proc, conn, wake = self._proc, self._conn, self._wake
        assert conn is not None and wake is not None
        if proc.is_alive():
            try:
                self.events()  # what it reported before it goes
                conn.send(("stop",))
                if conn.poll(20):
                    conn.recv()
            except (OSError, EOFError, AssertionError):  # it died stopping QuickFIX: the crash this process is for
                pass
        proc.join(20)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        self.exitcodes.append(proc.exitcode)
        conn.close()
        wake.close()
        self._proc = self._conn = self._wake = None

    def _call(self, *cmd: object, timeout: float = 10) -> object:
        if self._conn is None or self._proc is None:
            raise AssertionError(f"the venue is not running ({cmd[0]!r})")
        try:
            self._conn.send(cmd)
            if not self._conn.poll(timeout):
                raise AssertionError(f"the venue process did not answer {cmd[0]!r} within {timeout}s")
            ok, value = self._conn.recv()
        except (OSError, EOFError) as exc:
            self._proc.join(5)
            raise AssertionError(f"the venue process is gone (exit code {self._proc.exitcode}) at "
                                 f"{cmd[0]!r}: {exc!r}") from None
        if not ok:
            raise AssertionError(f"the venue process failed {cmd[0]!r}: {value}")
        return value

    # ---- what it saw ----

    def events(self) -> list[Event]:
        """(kind, session, raw) of every SessionEvent the venue's engine handed over so far (while
        stopped: up to its stop)."""
        if self._proc is not None:
            assert self._wake is not None
            try:
                while os.read(self._wake.fileno(), 4096):  # cleared first: what comes after the fetch wakes again
                    pass
            except BlockingIOError:
                pass
            new = self._call("events", self._fetched)
            assert isinstance(new, list)
            self._fetched += len(new)
            self._events += new
        return list(self._events)

    def logons(self, session: str | None = None) -> int:
        """Logons so far (of `session`; None: of any session)."""
        return sum(1 for kind, sid, _ in self.events() if kind == "LOGON" and session in (None, sid))

    def next_out_seq(self, session: str | None = None) -> int:
        """The next sequence number the venue sends: 1 + every Logon, Logout and message it sent."""
        return int(self._call("next_out_seq", session or self.sid))  # type: ignore[call-overload]

    # ---- what it does ----

    def refuse_logons(self, why: str | None, session: str | None = None) -> None:
        """Refuse every Logon with `why` (`FixEngine.refuse_logon`); None: accept them again."""
        self._call("refuse", session or self.sid, why)

    def send(self, msg_type: str, fields: Fields, groups: Sequence[Group] = (), session: str | None = None) -> None:
        """An application or session message: `fields` in the body, then one repeating-group entry per
        `groups` item; QuickFIX sets the header's sequence number, CompIDs and times."""
        assert self._call("send", session or self.sid, msg_type, list(fields), list(groups)), \
            "QuickFIX did not take the message"

    def drop(self, reason: str, session: str | None = None) -> None:
        """Log the session out with `reason`, then take its logons again (QuickFIX's `Session::logout`
        also disables the session, and a disabled acceptor session refuses the peer's next Logon: the
        venue enables it again once the logout is through)."""
        self._call("drop", session or self.sid, reason)


def _acceptor_process(conn: Connection, wake: Connection, specs: list[SessionSpec], version: str) -> None:
    """The venue's process: the acceptor's events kept as they come, the test's commands answered.

    ``FixEngine.stop`` on an acceptor sometimes dies with SIGSEGV inside QuickFIX (``Acceptor::stop``
    -> ``SocketServer::close`` walking its socket map while the acceptor thread, woken by the closed
    listening socket, closes and frees the same server); here that only ends this process."""
    import quickfix as qf
    import zmq

    from feeds.fix.session import FixEngine, SessionEventKind

    ctx = zmq.Context()
    engine = FixEngine("acceptor", specs, ctx)
    qids = {s.session_id: qf.SessionID(s.begin_string, s.sender_comp_id, s.target_comp_id) for s in specs}
    events: list[Event] = []
    reenable: set[str] = set()  # sessions the test dropped: enabled again once their logout is through
    wake_fd = wake.fileno()
    os.set_blocking(wake_fd, False)
    poller = zmq.Poller()
    poller.register(engine.socket, zmq.POLLIN)
    poller.register(conn.fileno(), zmq.POLLIN)
    engine.start()
    try:
        while True:
            poller.poll()  # QuickFIX's events or a command, whichever comes first
            new = engine.drain()
            for e in new:
                events.append((e.kind.value, e.session, e.raw))
                if e.kind is SessionEventKind.LOGOUT and e.session in reenable:
                    reenable.discard(e.session)  # logged out now: enabling it earlier would cancel the logout
                    qf.Session.lookupSession(qids[e.session]).logon()
            if new:
                try:
                    os.write(wake_fd, b"!")
                except BlockingIOError:  # the pipe is full of wake-ups the test has not read: awake anyway
                    pass
            while conn.poll():
                cmd, *args = conn.recv()
                if cmd == "stop":
                    engine.stop()
                    conn.send((True, None))
                    return
                try:
                    if cmd == "ping":
                        value: object = None
                    elif cmd == "events":
                        value = events[args[0]:]
                    elif cmd == "next_out_seq":
                        value = engine.seq_nums(args[0])[0]
                    elif cmd == "refuse":
                        sid, why = args
                        if why is None:
                            engine.refuse_logon.pop(sid, None)
                        else:
                            engine.refuse_logon[sid] = why
                        value = None
                    elif cmd == "send":
                        sid, msg_type, fields, groups = args
                        m = qf.Message()
                        m.getHeader().setField(qf.BeginString(version))
                        m.getHeader().setField(qf.MsgType(msg_type))
                        for tag, v in fields:
                            m.setField(tag, v)
                        for count_tag, delim, entry in groups:
                            g = qf.Group(count_tag, delim)
                            for tag, v in entry:
                                g.setField(tag, v)
                            m.addGroup(g)
                        value = engine.send(sid, m)
                    elif cmd == "drop":
                        sid, reason = args
                        engine.disconnect(sid, reason)
                        reenable.add(sid)
                        value = None
                    else:
                        raise ValueError(f"unknown command {cmd!r}")
                except Exception as exc:  # noqa: BLE001 - the test hears of it as a failed call
                    conn.send((False, repr(exc)))
                else:
                    conn.send((True, value))
    except EOFError:  # the test process is gone
        engine.stop()
