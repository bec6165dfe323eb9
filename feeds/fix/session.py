"""A QuickFIX engine (initiator or acceptor) bound to one actor's poll loop.

QuickFIX runs the FIX session layer (logon, heartbeats, sequence numbers kept
in its file store, resend and gap fill) on threads of its own. Its callbacks
here do no trading work: each is turned into a `SessionEvent` and pushed over
an inproc ZeroMQ socket that the actor's poll loop reads, so the loop stays
the only code that touches trade or book state. Sending goes the other way
through `Session.sendToTarget`, which QuickFIX makes safe from any thread.

Protocol of the hand-off (what a reader can check the code against):

1. ``FixEngine(...)`` builds QuickFIX's settings from xmc's config (`settings_text`),
   binds the inproc PULL and creates the engine; ``start()`` starts its threads.
2. QuickFIX thread: ``onLogon``/``onLogout`` -> ``LOGON``/``LOGOUT``; ``fromApp`` -> ``APP``
   with the message text; ``fromAdmin`` of a Reject (35=3), a ResendRequest (35=2) or a
   Logout with text -> ``ADMIN``; ``toAdmin`` of a Reject we send (QuickFIX refused an inbound
   message: garbage, missing tags, a bad value) -> ``REFUSED``. Each is one frame on the PUSH
   socket of the calling OS thread.
3. Loop thread: ``drain()`` returns the events in arrival order; session state
   (`SessionView`) is updated there, never on QuickFIX's threads. A second LOGOUT for one
   disconnect (QuickFIX reports some twice) is not passed on; a Logout that answers our
   Logon becomes ``LOGON_REFUSED``.
4. ``stop()`` is called from the loop thread on every exit path (a QuickFIX engine
   left running at interpreter exit can crash the process).

Nothing is sent twice: an initiator keeps no sent messages (``PersistMessages=N``), so
a ResendRequest of the venue is answered with a gap fill, and ``toApp`` refuses
(``DoNotSend``) any resend of an order, cancel or status request that QuickFIX might
still attempt. The gap fill reaches the owner as ``GAP_FILLED`` (from ``toAdmin``, as it
leaves), so what the owner still needs goes out again *after* it (ingest: its
subscriptions; an order it covered is in doubt and queried like any unanswered one).

Secrets: the logon password (tag 554) is added in ``toAdmin`` from memory; it is
never in the settings file, never stored (nothing sent is), never in an event and
never logged.
"""

from __future__ import annotations

import enum
import itertools
import os
import sys
import threading
import time
from pathlib import Path
from typing import Iterable

import msgspec
import zmq

from actors import secrets
from bus.readiness import NOBLOCK, readable
from feeds.fix import wire
from feeds.fix.sessionview import STATE_CODE, SessionState, SessionView

try:  # the QuickFIX engine (PyPI: quickfix-py); imported here only, so the rest of xmc runs without it
    import quickfix as qf
except ImportError:  # pragma: no cover - the Makefile installs it
    qf = None


class FixUnavailable(RuntimeError):
    """QuickFIX is not installed, or its data dictionaries are missing."""


class SessionEventKind(str, enum.Enum):
    LOGON = "LOGON"
    LOGOUT = "LOGOUT"
    APP = "APP"  # an application message (ExecutionReport, market data, ...)
    ADMIN = "ADMIN"  # a session-level Reject or a Logout with a reason, from the peer
    REFUSED = "REFUSED"  # QuickFIX refused an inbound message (we sent a Reject for it)
    LOGON_REFUSED = "LOGON_REFUSED"  # the venue answered our Logon with a Logout (its reason in `raw`)
    GAP_FILLED = "GAP_FILLED"  # we answered a ResendRequest with a gap fill: what we had sent in it is lost


class SessionEvent(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    kind: SessionEventKind
    session: str  # QuickFIX's SessionID text: FIX.4.2:SENDER->TARGET
    raw: str = ""  # the message, SOH-separated (never a Logon: it may hold the password)
    ts_ns: int = 0  # monotonic ns when QuickFIX handed it over


class SessionSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One FIX session as QuickFIX needs it (our side's view: sender is us)."""

    begin_string: str
    sender_comp_id: str
    target_comp_id: str
    host: str
    port: int
    store_dir: str
    heartbeat_s: int = 30
    reconnect_s: int = 5
    logon_timeout_s: int = 10
    reset_on_logon: bool = False
    validate: bool = True

    @property
    def session_id(self) -> str:
        return f"{self.begin_string}:{self.sender_comp_id}->{self.target_comp_id}"


def new_message(begin_string: str, msg_type: str, fields: Iterable[tuple[int, str]] = ()) -> "qf.Message":
    """An application message with these body fields (QuickFIX adds sender, target and sequence number
    when it sends it)."""
    if qf is None:
        raise FixUnavailable("FIX_ENGINE_MISSING: the quickfix module is not installed (pip install quickfix-py)")
    m = qf.Message()
    header = m.getHeader()
    header.setField(qf.BeginString(begin_string))
    header.setField(qf.MsgType(msg_type))
    for tag, value in fields:
        m.setField(tag, value)
    return m


def add_group(m: "qf.Message", count_tag: int, first_tag: int, fields: Iterable[tuple[int, str]]) -> None:
    """One entry of the repeating group counted by `count_tag` (its first field `first_tag`)."""
    g = qf.Group(count_tag, first_tag)
    for tag, value in fields:
        g.setField(tag, value)
    m.addGroup(g)


def dictionary_path(begin_string: str) -> Path:
    """QuickFIX's data dictionary for a FIX version (shipped with the quickfix-py wheel)."""
    name = begin_string.replace(".", "") + ".xml"  # FIX.4.2 -> FIX42.xml
    for base in (Path(sys.prefix) / "share" / "quickfix", Path("/usr/share/quickfix")):
        if (base / name).exists():
            return base / name
    raise FixUnavailable(f"FIX_DICTIONARY_MISSING: file={name} looked_in={sys.prefix}/share/quickfix,/usr/share/quickfix")


def settings_text(role: str, sessions: list[SessionSpec]) -> str:
    """QuickFIX settings for an initiator or acceptor running these sessions (no secrets in it)."""
    if role not in ("initiator", "acceptor"):
        raise ValueError(f"FIX_ROLE: role={role}")
    lines = ["[DEFAULT]", f"ConnectionType={role}", "StartTime=00:00:00", "EndTime=00:00:00",
             "PersistMessages=Y", "ValidateUserDefinedFields=N", "ValidateFieldsOutOfOrder=N",
             "SocketNodelay=Y"]  # without it Nagle holds the second of two back-to-back orders ~40 ms
    if role == "initiator" and sessions:  # QuickFIX's initiator reads this from [DEFAULT] only
        lines.append(f"ReconnectInterval={min(s.reconnect_s for s in sessions)}")
        # what xmc sends (orders, cancels, queries, subscriptions) is never resent after a reconnect (a
        # gap fill instead), so storing it would only cost file writes on the hot path
        lines[lines.index("PersistMessages=Y")] = "PersistMessages=N"
    if role == "acceptor":  # a client's Logon may carry fields its FIX version does not define (553/554 on 4.2)
        lines.append("AllowUnknownMsgFields=Y")
    for s in sessions:
        Path(s.store_dir).mkdir(parents=True, exist_ok=True)
        lines += ["", "[SESSION]", f"BeginString={s.begin_string}", f"SenderCompID={s.sender_comp_id}",
                  f"TargetCompID={s.target_comp_id}", f"FileStorePath={s.store_dir}",
                  f"HeartBtInt={s.heartbeat_s}", f"LogonTimeout={s.logon_timeout_s}",
                  f"ResetOnLogon={'Y' if s.reset_on_logon else 'N'}"]
        if s.validate:
            lines += ["UseDataDictionary=Y", f"DataDictionary={dictionary_path(s.begin_string)}"]
        else:
            lines += ["UseDataDictionary=N"]
        if role == "initiator":
            lines += [f"SocketConnectHost={s.host}", f"SocketConnectPort={s.port}"]
        else:
            lines += [f"SocketAcceptHost={s.host}", f"SocketAcceptPort={s.port}"]
    return "\n".join(lines) + "\n"


def read_secret(env: str, file: str) -> str:
    """A password from an environment variable or a file; '' when neither is configured.

    The value is registered with `actors.secrets` (masked in every log line and traceback of this
    process). Raises FixUnavailable naming the variable or file (never the value) when it is
    configured but absent.
    """
    try:
        return secrets.read(env, file)
    except secrets.SecretMissing as exc:
        raise FixUnavailable(str(exc).replace("SECRET_MISSING", "FIX_SECRET_MISSING", 1)) from None


_instances = itertools.count(1)
SENT_KEEP = 20_000  # our sent messages remembered for RefSeqNum lookups
NOT_LOGGED_ON_WARN_S = 5.0  # a session not logged on for this long is logged by its owner, again every as long


class FixEngine:
    """A QuickFIX initiator or acceptor whose callbacks reach the owner's loop as `SessionEvent`s.

    `socket` is the inproc PULL to register in the owner's poller; call `drain()` when it is
    readable. `logon_fields` go into every Logon we send (username, password).
    """

    def __init__(self, role: str, sessions: list[SessionSpec], ctx: zmq.Context, *,
                 logon_fields: dict[int, str] | None = None) -> None:
        if qf is None:
            raise FixUnavailable("FIX_ENGINE_MISSING: the quickfix module is not installed (pip install quickfix-py)")
        self.role = role
        self.sessions = sessions
        self.views = {s.session_id: SessionView(s.session_id) for s in sessions}
        self._ids = {s.session_id: qf.SessionID(s.begin_string, s.sender_comp_id, s.target_comp_id) for s in sessions}
        self._ctx = ctx
        self._addr = f"inproc://fix-{os.getpid()}-{next(_instances)}"
        self.socket = ctx.socket(zmq.PULL)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(self._addr)
        self._more = readable(self.socket)
        self._pushes: dict[int, zmq.Socket] = {}
        self._closed = False
        self._push_lock = threading.Lock()
        self._enc = msgspec.msgpack.Encoder()
        self._dec = msgspec.msgpack.Decoder(SessionEvent)
        self.settings = settings_text(role, sessions)
        qsettings = qf.SessionSettings()
        qsettings.setFromString(self.settings)
        self._app = _Bridge(self, logon_fields or {})
        self._store = qf.FileStoreFactory(qsettings)
        self._logs = qf.ScreenLogFactory(False, False, False)  # nothing printed; xmc logs what matters itself
        kind = qf.SocketInitiator if role == "initiator" else qf.SocketAcceptor
        self._engine = kind(self._app, self._store, qsettings, self._logs)
        self._qsettings = qsettings
        self._running = False
        self.last_admin_ns: dict[str, int] = {}  # session -> last session-level message (heartbeat, ...)
        self.refuse_logon: dict[str, str] = {}  # acceptor: session -> why its Logon is refused now
        self.sent: dict[tuple[str, int], tuple[str, str]] = {}  # (session, our MsgSeqNum) -> (msg type, ClOrdID)

    # ---- QuickFIX threads ------------------------------------------------------------

    def _push(self, kind: SessionEventKind, session: str, raw: str = "") -> None:
        # one PUSH per QuickFIX thread, keyed by the OS thread id: QuickFIX's threads are not Python's,
        # so each callback may come with a fresh Python thread state (threading.local would leak a
        # socket per message)
        tid = threading.get_ident()
        sock = self._pushes.get(tid)
        if sock is None:
            with self._push_lock:
                if self._closed:
                    return
                sock = self._ctx.socket(zmq.PUSH)
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.SNDHWM, 0)  # never drop a report: the loop drains it
                sock.connect(self._addr)
                self._pushes[tid] = sock
        try:
            sock.send(self._enc.encode(SessionEvent(kind=kind, session=session, raw=raw, ts_ns=time.monotonic_ns())))
        except zmq.ZMQError:  # the owner is closing: nothing reads this any more
            pass

    # ---- loop thread ------------------------------------------------------------------

    def start(self) -> None:
        self._engine.start()
        self._running = True

    def stop(self) -> None:
        """Log out and stop QuickFIX's threads (idempotent); close the hand-off sockets."""
        if self._running:
            self._running = False
            try:
                self._engine.stop()
            except Exception:  # noqa: BLE001 - stopping must never raise on an exit path
                pass
        # drop the engine now: its sessions leave QuickFIX's process-wide registry with it, so a
        # later engine for the same SessionID (a test, a restarted gateway) is the one that sends
        self._engine = None
        self._store = None
        with self._push_lock:
            self._closed = True
            for sock in self._pushes.values():
                sock.close(0)
            self._pushes.clear()
        self.socket.close(0)

    def drain(self, limit: int = 2000) -> list[SessionEvent]:
        """The events QuickFIX handed over since the last call, session views updated."""
        out: list[SessionEvent] = []
        more = self._more
        for i in range(limit):
            if i and not more():
                break
            try:
                frame = self.socket.recv(NOBLOCK)
            except zmq.Again:
                break
            ev = self._dec.decode(frame)
            view = self.views.get(ev.session)
            if view is not None:
                if ev.kind is SessionEventKind.APP or ev.kind is SessionEventKind.ADMIN:
                    view.last_in_ns = ev.ts_ns  # a message from the venue (not a state change of ours)
                if ev.kind is SessionEventKind.LOGON:
                    view.state = SessionState.LOGGED_ON
                    view.since_ns = ev.ts_ns
                    view.logons += 1
                elif ev.kind is SessionEventKind.LOGOUT:
                    if view.state is not SessionState.LOGGED_ON:
                        continue  # QuickFIX reports one disconnect twice; the owner hears it once
                    view.logouts += 1
                    view.state = SessionState.DOWN
                    view.since_ns = ev.ts_ns
                elif ev.kind is SessionEventKind.REFUSED:
                    view.refused += 1
                elif ev.kind is SessionEventKind.ADMIN:
                    fields = _safe_fields(ev.raw)
                    if fields is not None and fields.msg_type == "3":
                        view.admin_rejects += 1
                    if fields is not None and fields.get(wire.TEXT):
                        view.last_reason = secrets.redact(fields.get(wire.TEXT))[:120]  # masked, then cut
                    if fields is not None and fields.msg_type == "5" and view.state is not SessionState.LOGGED_ON:
                        view.logon_refused += 1
                        ev = msgspec.structs.replace(ev, kind=SessionEventKind.LOGON_REFUSED)
            out.append(ev)
        return out

    def not_logged_on(self, for_s: float) -> list[SessionView]:
        """Sessions that have not been logged on for at least `for_s` seconds (for a periodic warning:
        a wrong CompID, garbage or a silent venue leave no other trace)."""
        now = time.monotonic_ns()
        return [v for v in self.views.values()
                if v.state is not SessionState.LOGGED_ON and now - v.since_ns >= for_s * 1e9]

    def logged_on(self, session: str) -> bool:
        view = self.views.get(session)
        return view is not None and view.state is SessionState.LOGGED_ON

    def send(self, session: str, message: object) -> bool:
        """Hand an application message to QuickFIX for `session`; False if it could not take it."""
        if self._engine is None:
            return False
        try:
            return bool(qf.Session.sendToTarget(message, self._ids[session]))
        except qf.SessionNotFound:
            return False

    def seq_nums(self, session: str) -> tuple[int, int]:
        """(next sequence number we send, next we expect), from QuickFIX's store."""
        s = qf.Session.lookupSession(self._ids[session])
        if s is None:
            return 0, 0
        return int(s.getExpectedSenderNum()), int(s.getExpectedTargetNum())

    def disconnect(self, session: str, reason: str) -> None:
        """Log the session out (acceptor side: the simulator's scheduled disconnects)."""
        s = qf.Session.lookupSession(self._ids[session])
        if s is not None and s.isLoggedOn():
            s.logout(reason)

    def status_detail(self, venue: str) -> dict[str, float]:
        """Per-session figures for a heartbeat's detail, keyed ``fix.<venue>.<SENDER->TARGET>.<field>``
        (`sessions_from_detail` reads them back for `xmc status`)."""
        now = time.monotonic_ns()
        d: dict[str, float] = {}
        for sid, v in self.views.items():
            key = f"fix.{venue}.{sid.split(':', 1)[1]}"
            out_seq, in_seq = self.seq_nums(sid)
            d[f"{key}.state"] = STATE_CODE[v.state]
            d[f"{key}.next_out_seq"] = float(out_seq)
            d[f"{key}.next_in_seq"] = float(in_seq)
            d[f"{key}.logons"] = float(v.logons)
            d[f"{key}.refused"] = float(v.refused)
            d[f"{key}.logon_refused"] = float(v.logon_refused)
            last_in = max(v.last_in_ns, self.last_admin_ns.get(sid, 0))  # any message from the venue
            if last_in:
                d[f"{key}.last_in_age_s"] = round((now - last_in) / 1e9, 2)
        return d


def _safe_fields(raw: str) -> wire.Fields | None:
    try:
        return wire.Fields.parse(raw)
    except wire.FixError:
        return None


if qf is not None:

    class _Bridge(qf.Application):
        """QuickFIX's callbacks: each becomes one SessionEvent for the owner's loop, nothing more."""

        def __init__(self, engine: FixEngine, logon_fields: dict[int, str]) -> None:
            super().__init__()
            self._engine = engine
            self._logon_fields = logon_fields

        def onCreate(self, sid):  # noqa: N802 - QuickFIX's names
            pass

        def onLogon(self, sid):  # noqa: N802
            self._engine._push(SessionEventKind.LOGON, sid.toString())

        def onLogout(self, sid):  # noqa: N802
            self._engine._push(SessionEventKind.LOGOUT, sid.toString())

        def toAdmin(self, message, sid):  # noqa: N802
            msg_type = message.getHeader().getField(wire.MSG_TYPE)
            if msg_type == "A":
                for tag, value in self._logon_fields.items():
                    message.setField(tag, value)
            elif msg_type == "3":  # QuickFIX is refusing something the peer sent
                self._engine._push(SessionEventKind.REFUSED, sid.toString(), message.toString())
            elif msg_type == "4":  # a gap fill we send: the owner re-sends what it still needs, after it
                self._engine._push(SessionEventKind.GAP_FILLED, sid.toString(), message.toString())

        def fromAdmin(self, message, sid):  # noqa: N802
            msg_type = message.getHeader().getField(wire.MSG_TYPE)
            self._engine.last_admin_ns[sid.toString()] = time.monotonic_ns()  # heartbeats too (one store, GIL)
            if msg_type == "A":
                why = self._engine.refuse_logon.get(sid.toString())
                if why:
                    raise qf.RejectLogon(why)
            # a Reject, a Logout with its reason, and a ResendRequest (we keep no sent messages: the
            # owner sends again what it still needs, e.g. market-data subscriptions)
            if msg_type in ("2", "3") or (msg_type == "5" and message.isSetField(wire.TEXT)):
                self._engine._push(SessionEventKind.ADMIN, sid.toString(), message.toString())

        def toApp(self, message, sid):  # noqa: N802
            # MsgSeqNum is set by now: a session-level Reject or BusinessMessageReject names it (RefSeqNum)
            header = message.getHeader()
            msg_type = header.getField(wire.MSG_TYPE)
            if msg_type in ("D", "F", "H") and header.isSetField(wire.POSS_DUP) and header.getField(wire.POSS_DUP) == "Y":
                # a resend after a reconnect: an order request is never repeated (it would be a second
                # order, or act on an order whose fate was settled meanwhile); QuickFIX gap-fills it
                raise qf.DoNotSend()
            seq = int(header.getField(wire.MSG_SEQ_NUM))
            cl_ord_id = message.getField(wire.CL_ORD_ID) if message.isSetField(wire.CL_ORD_ID) else ""
            sent = self._engine.sent
            sent[(sid.toString(), seq)] = (msg_type, cl_ord_id)
            if len(sent) > SENT_KEEP:
                for old in list(sent)[: len(sent) - SENT_KEEP // 2]:  # oldest first (insertion order)
                    sent.pop(old, None)

        def fromApp(self, message, sid):  # noqa: N802
            self._engine._push(SessionEventKind.APP, sid.toString(), message.toString())
else:  # pragma: no cover
    _Bridge = None  # type: ignore[assignment,misc]
