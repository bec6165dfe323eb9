"""The actor runtime: lifecycle, one blocking poll loop over sockets and timers,
heartbeats, the ready handshake with the supervisor, clean shutdown.

An actor subclasses `Actor`, declares its sockets in `setup()` and its
hot-path work in handlers. It never spins: the loop blocks in `poll` until a
socket is readable or the next timer is due (these hosts have 2 cores).
"""

from __future__ import annotations

import gc
import heapq
import math
import os
import signal
import time
import traceback
from pathlib import Path
from typing import Any, Callable, ClassVar

import msgspec
import zmq

from actors.logs import AT_NS, setup_logging
from actors.secrets import register as register_secret, register_config as register_config_secrets
from bus.codec import SEP, FrameError
from bus.command import CommandClient, CommandServer
from bus.endpoints import Endpoints
from bus.readiness import NOBLOCK, POLLIN, readable
from bus.messages import (ActorState, CmdAck, Control, ControlAudit, Envelope, Heartbeat, KillSwitch, Message, ReplayRequest,
                          ReplaySince, Replayed,
                          StreamBatch, StreamEvent, StreamHead, StreamSince)
from bus.pubsub import Inbound, Publisher, SeqStatus
from bus.security import SUPERVISOR, BusSecurity, RefusalWatch
from bus.stream import StreamCursor
from bus import topics
from configs.schema import TICK_PATH, ActorCfg, Config

MAX_DRAIN = 2000  # frames read from one socket before the loop looks at the others
# hot-path log lines wait this long (stamped with when they happened): a line formatted and
# written right after a signal or an order competes for the 2 vCPUs with the process it woke
LOG_DEFER_S = 0.002
LOG_SLICE = 2  # deferred lines written per loop turn
PULLER_LIVE_S = 2.0  # a puller asking less often than this is not waited for at shutdown
SCHED_REFUSED = "XMC_SCHED_REFUSED"  # set by actors.run when run.realtime_priority could not be applied


Lifecycle = ActorState  # the runtime's name for it


SubHandler = Callable[[str, Envelope], None]
StreamHandler = Callable[[StreamEvent, int], None]  # (event, ts_ns of the frame that carried it)
STREAM_ASK_TIMEOUT_S = 2.0  # an unanswered "since N" is asked again (the executor may have died)
STREAM_CHECK_S = 0.5


class Timer:
    """A scheduled callback of the poll loop; set `cancelled` to drop it."""

    __slots__ = ("due", "interval", "fn", "seq", "cancelled")

    def __init__(self, due: float, interval: float, fn: Callable[[], None], seq: int) -> None:
        self.due = due
        self.interval = interval
        self.fn = fn
        self.seq = seq
        self.cancelled = False

    def __lt__(self, other: "Timer") -> bool:
        return (self.due, self.seq) < (other.due, other.seq)


class Actor:
    """Base of every actor process."""

    kind: ClassVar[str] = ""
    replay_depth: ClassVar[int] = 4096  # frames per topic kept for ReplayRequest (journal gap fill)

    def __init__(self, name: str, cfg: Config, run_dir: str | Path) -> None:
        self.name = name
        self.cfg = cfg
        self.spec: ActorCfg = cfg.actors[name]
        self.run_dir = Path(run_dir)
        (self.run_dir / "state").mkdir(parents=True, exist_ok=True)
        self.eps = Endpoints(cfg, run_dir)
        self.epoch = time.time_ns()
        self.log = setup_logging(run_dir, name, cfg.run.log_level)
        register_config_secrets(cfg)  # masked in this actor's logs even if it never reads them
        self.state = Lifecycle.STARTING
        self.kill = KillSwitch(halted=False, reason="", ts_ns=0)
        self.ctx = zmq.Context.instance()
        # the loop's zmq_poll items, hot subscriptions first (their handlers run first on a shared wake-up)
        self._poll_items: list[tuple[zmq.Socket, int]] = []
        self._hot = 0
        self._handlers: dict[zmq.Socket, Callable[[], None]] = {}
        self._inbounds: list[Inbound] = []
        self._pulls: dict[str, Callable[[], None]] = {}  # pull name -> ask its publishers now
        self._timers: list[Timer] = []
        self._timer_seq = 0
        self._stop = False
        self.handler_errors = 0
        self.msgs_in = 0
        self.cmd_decode_errors = 0
        self._ctl_dropped = 0
        self._cmd_bad: dict[str, int] = {}
        self._cmd_channels: dict[str, tuple[CommandClient, list[Callable[[Envelope], None]]]] = {}
        self._closers: list[Callable[[], None]] = []
        self._later_logs: list[tuple[str, str, dict]] = []
        # (puller, prefix) -> (when it last asked, how long since its previous request, the seqs it
        # then had): a stopping actor waits for its periodic pullers (the journal) to take the rest
        self._pullers: dict[tuple[bytes, str], tuple[float, float, dict[str, int]]] = {}
        self._log_timer: Timer | None = None

        # who may talk to this actor: CURVE on tcp (bus.security), the run dir's private folder on ipc
        self.security = BusSecurity(cfg, name)
        if self.security.enabled:
            register_secret(self.security.secret_text)
            self.security.start(self.ctx)
        self._refusals: list[RefusalWatch] = []

        hwm = cfg.endpoints.hwm
        # XPUB, so the actor sees who subscribes (a replay waits for its audience)
        self.pub_sock = self._socket(zmq.XPUB, hwm)
        self.pub_sock.setsockopt(zmq.XPUB_VERBOSE, 1)
        self._listen(self.pub_sock, self.eps.pub(name), "pub")
        self.pub = Publisher(self.pub_sock, name, self.epoch, self.replay_depth)
        self.subscriptions: list[str] = []
        self._subscriptions_more = readable(self.pub_sock)
        self._register(self.pub_sock, self._drain_subscriptions)

        self.cmd_sock = self._socket(zmq.ROUTER, hwm)
        self.cmd_sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # a restarted peer takes over its routing id; not with CURVE, where a routing id is bound
        # to its key and another key's peer must never take over a channel
        self.cmd_sock.setsockopt(zmq.ROUTER_HANDOVER, 0 if self.security.enabled else 1)
        self._listen(self.cmd_sock, self.eps.cmd(name), "cmd")
        self.cmd = CommandServer(self.cmd_sock, name, self.epoch, authenticated=self.security.enabled)
        self._cmd_more = readable(self.cmd_sock)
        self._register(self.cmd_sock, self._drain_cmd)

        self.ctl_sock = self._socket(zmq.DEALER, hwm)
        self.ctl_sock.setsockopt(zmq.ROUTING_ID, name.encode())
        self.security.client(self.ctl_sock, SUPERVISOR)
        self.ctl_sock.connect(self.eps.supervisor_ctl())
        self.ctl = CommandClient(self.ctl_sock, name, self.epoch)
        self._register(self.ctl_sock, self._drain_ctl)

    # ---- building blocks for subclasses ------------------------------------

    def _socket(self, kind: int, hwm: int) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 500)
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.RCVHWM, hwm)
        return sock

    def _listen(self, sock: zmq.Socket, endpoint: str, label: str) -> None:
        """Bind a socket others connect to: a CURVE server on tcp with keys, its refusals counted."""
        self.security.server(sock)
        if self.security.enabled:
            watch = RefusalWatch(sock, label)
            self._refusals.append(watch)
            self._register(watch.monitor, lambda: self.security.log_refusals(watch, self.log))
        sock.bind(self.eps.bindable(endpoint))

    def _register(self, sock: zmq.Socket, fn: Callable[[], None], hot: bool = False) -> None:
        self._handlers[sock] = fn
        if hot:
            self._poll_items.insert(self._hot, (sock, POLLIN))
            self._hot += 1
        else:
            self._poll_items.append((sock, POLLIN))

    def watch(self, sock: zmq.Socket, fn: Callable[[], None]) -> None:
        """Call `fn` from the loop whenever `sock` is readable (e.g. a FIX engine's hand-off socket);
        an exception in it is logged and counted (`handler_error`), never fatal."""
        self._register(sock, lambda: self._guarded(fn))

    def on_close(self, fn: Callable[[], None]) -> None:
        """Run `fn` when the actor closes, on every exit path (failed setup included), before its
        sockets and context go: engines with threads of their own (QuickFIX) are stopped here."""
        self._closers.append(fn)

    def subscribe(self, publishers: list[str], prefixes: list[str], handler: SubHandler, name: str = "sub",
                  hot: bool = False) -> Inbound:
        """Connect one SUB socket to the publishers' PUB endpoints with these topic prefixes.
        `hot`: the tick-to-trade path; its frames are handled before any other socket's."""
        for p in prefixes:
            if not topics.subscribable(p):
                raise ValueError(f"TOPIC_PREFIX_WARM: prefix={p!r} why=it would match {topics.WARM}, "
                                 "the keep-warm frames no one may hear")
        sock = self._socket(zmq.SUB, self.cfg.endpoints.hwm)
        for p in prefixes:
            sock.setsockopt(zmq.SUBSCRIBE, p.encode())
        for pub in publishers:
            self.security.client(sock, pub)  # each publisher's own server key, set before its connect
            sock.connect(self.eps.pub(pub))
        inbound = Inbound(f"{self.name}.{name}", self._on_bad_frame)
        self._inbounds.append(inbound)

        recv, more, decode, last = sock.recv, readable(sock), inbound.codec.decoder.decode, inbound.seq.last

        def drain() -> None:
            # every frame's path is inlined for the common case (a frame in sequence): each Python
            # layer costs several microseconds on the cold CPU cache a mostly idle actor wakes to.
            # Readable when called; then as long as `more` says so (bus.readiness: far cheaper than
            # a read past the end)
            for _ in range(MAX_DRAIN):
                try:
                    frame = recv(NOBLOCK)
                except zmq.Again:
                    return
                cut = frame.find(SEP)
                try:
                    env = decode(memoryview(frame)[cut + 1:]) if cut > 0 else None
                    topic = frame[:cut].decode() if env is not None else ""
                except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
                    env = None
                if env is None:
                    inbound.decode(frame)  # fails the same way: counted, and the reason logged
                else:
                    inbound.received += 1
                    key = (env.src, topic)
                    prev = last.get(key)
                    if prev is not None and prev[0] == env.epoch and env.seq == prev[1] + 1:
                        last[key] = (prev[0], env.seq)
                        self.msgs_in += 1
                        try:
                            handler(topic, env)
                        except Exception as exc:  # as `_guarded`: counted, logged, never fatal
                            self._handler_failed(exc)
                    else:  # first, gap, duplicate, restart
                        self._deliver(inbound, handler, topic, env)
                if not more():
                    return

        self._register(sock, drain, hot)
        return inbound

    def pull(self, publishers: list[str], prefix: str, interval_s: float, handler: SubHandler, name: str = "pull") -> Inbound:
        """Take the publishers' frames under `prefix` in batches every `interval_s` (from their replay
        buffers) instead of subscribing: this actor then does not wake on every tick. Frames go through
        the same sequence checks as a subscription."""
        inbound = Inbound(f"{self.name}.{name}", self._on_bad_frame)
        self._inbounds.append(inbound)
        held: dict[str, dict[str, int]] = {p: {} for p in publishers}  # publisher -> topic -> last seq
        epochs: dict[str, int] = {p: 0 for p in publishers}
        asked: dict[str, tuple[int, float]] = {}  # publisher -> (request id, when) of the request in flight

        def on_answer(src: str, env: Envelope) -> None:
            body = env.body
            if src not in asked or asked[src][0] != env.seq:
                return  # an answer to another request on this channel
            if isinstance(body, CmdAck):
                asked.pop(src, None)
                return
            if not isinstance(body, Replayed):
                return
            decoded = inbound.decode(body.frame)
            if decoded is None:
                return
            topic, inner = decoded
            if inner.epoch != epochs[src]:
                epochs[src] = inner.epoch
                held[src] = {}
            held[src][topic] = inner.seq
            self._deliver(inbound, handler, topic, inner)

        clients = {p: self.connect_command(p, lambda env, p=p: on_answer(p, env)) for p in publishers}

        def ask(force: bool = False) -> None:
            now = time.monotonic()
            for p, client in clients.items():
                # one request in flight, unless forced (its publisher may have died with it)
                if force or now - asked.get(p, (0, 0.0))[1] > max(2.0, 4 * interval_s):
                    req = client.send(ReplaySince(prefix=prefix, since=dict(held[p]), epoch=epochs[p]))
                    asked[p] = (req, now)

        self.every(interval_s, ask)
        self._pulls[name] = lambda: ask(force=True)
        return inbound

    def follow_stream(self, executor: str, handler: StreamHandler, since: int = 0, name: str = "stream") -> StreamCursor:
        """Take `executor`'s execution stream after seq `since`: every event once, in order, to
        `handler` (`bus.stream` states the protocol). Live frames when in step, "since N" from the
        executor's log when behind: at start, after a lost frame, after a restart of either side."""
        cursor = StreamCursor(since)
        asked: list[tuple[int, float]] = []  # the request in flight: (request id, when)

        def take(ev: StreamEvent, ts_ns: int) -> None:
            if cursor.offer(ev.seq):
                self._guarded(handler, ev, ts_ns)

        def ask(force: bool = False) -> None:
            now = time.monotonic()
            if asked and not force and now - asked[0][1] < STREAM_ASK_TIMEOUT_S:
                return
            asked[:] = [(client.send(StreamSince(since=cursor.last)), now)]

        def on_answer(env: Envelope) -> None:
            body = env.body
            if not asked or env.seq != asked[0][0] or not isinstance(body, StreamBatch):
                return
            asked.clear()
            for ev in body.events:
                take(ev, env.ts_ns)
            cursor.heard_head(body.head)
            if cursor.behind:
                ask()

        def on_live(topic: str, env: Envelope) -> None:
            body = env.body
            if isinstance(body, StreamEvent):
                take(body, env.ts_ns)
            elif isinstance(body, StreamHead):
                cursor.heard_head(body.head)
            if cursor.behind:
                ask()

        def check() -> None:
            if cursor.behind or asked:
                ask()

        client = self.connect_command(executor, on_answer)
        self.subscribe([executor], [topics.EXEC_STREAM], on_live, name=name)
        self.every(STREAM_CHECK_S, check)
        ask(force=True)
        return cursor

    def pull_now(self, name: str) -> None:
        """Ask the publishers of pull `name` at once (e.g. after a gap on a live subscription)."""
        self._pulls[name]()

    def _deliver(self, inbound: Inbound, handler: SubHandler, topic: str, env: Envelope) -> None:
        status, first_missing = inbound.seq.check(topic, env)
        if status is SeqStatus.DUP:
            return
        if status is SeqStatus.GAP:
            self.log.warning("bus_gap", src=env.src, topic=topic, first_missing=first_missing, last_missing=env.seq - 1)
            self._guarded(self.on_gap, env.src, topic, first_missing, env.seq - 1)
        elif status is SeqStatus.RESTART:
            self.log.info("publisher_restarted", src=env.src, topic=topic)
        self.msgs_in += 1
        self._guarded(handler, topic, env)

    def connect_command(self, actor: str, handler: Callable[[Envelope], None]) -> CommandClient:
        """A DEALER to another actor's command ROUTER; answers go to `handler`.

        One channel per peer (the routing id is this actor's name): a second call
        adds its handler to the same channel; handlers match answers by request id.
        """
        if actor in self._cmd_channels:
            client, handlers = self._cmd_channels[actor]
            handlers.append(handler)
            return client
        handlers = [handler]
        sock = self._socket(zmq.DEALER, self.cfg.endpoints.hwm)
        sock.setsockopt(zmq.ROUTING_ID, self.name.encode())
        self.security.client(sock, actor)
        sock.connect(self.eps.cmd(actor))
        client = CommandClient(sock, self.name, self.epoch)
        source = f"{self.name}.cmd<-{actor}"

        more = readable(sock)

        def drain() -> None:
            for _ in range(MAX_DRAIN):
                try:
                    env = client.recv()
                except zmq.Again:
                    return
                except FrameError as exc:
                    self._bad_command(source, str(exc))
                else:
                    self.msgs_in += 1
                    for h in handlers:
                        self._guarded(h, env)
                if not more():
                    return

        self._register(sock, drain)
        self._cmd_channels[actor] = (client, handlers)
        return client

    def every(self, interval_s: float, fn: Callable[[], None]) -> Timer:
        return self._add_timer(time.monotonic() + interval_s, interval_s, fn)

    def after(self, delay_s: float, fn: Callable[[], None]) -> Timer:
        return self._add_timer(time.monotonic() + delay_s, 0.0, fn)

    def _add_timer(self, due: float, interval: float, fn: Callable[[], None]) -> Timer:
        self._timer_seq += 1
        t = Timer(due, interval, fn, self._timer_seq)
        heapq.heappush(self._timers, t)
        return t

    def log_soon(self, level: str, event: str, fields: dict) -> None:
        """Log a hot-path line LOG_DEFER_S from now, with the time of now (`fields` becomes the line's
        own dict). Lines still waiting are written when the actor closes."""
        fields[AT_NS] = time.time_ns()
        self._later_logs.append((level, event, fields))
        if self._log_timer is None:
            self._log_timer = self.after(LOG_DEFER_S, self._flush_some_logs)

    def _flush_some_logs(self) -> None:
        """A few deferred lines per loop turn: a signal arriving meanwhile waits for one slice, not all."""
        self._log_timer = None
        lines = self._later_logs
        for level, event, fields in lines[:LOG_SLICE]:
            getattr(self.log, level)(event, **fields)
        del lines[:LOG_SLICE]
        if lines:
            self._log_timer = self.after(0.0, self._flush_some_logs)

    def flush_logs(self) -> None:
        """Write the deferred log lines now, in the order they were made."""
        if self._log_timer is not None:
            self._log_timer.cancelled = True
            self._log_timer = None
        lines, self._later_logs = self._later_logs, []
        for level, event, fields in lines:
            getattr(self.log, level)(event, **fields)

    def publish(self, topic: str, msg: Message) -> None:
        self.pub.publish(topic, msg)

    def set_degraded(self, degraded: bool, reason: str = "") -> None:
        if self.state in (Lifecycle.RUNNING, Lifecycle.DEGRADED):
            new = Lifecycle.DEGRADED if degraded else Lifecycle.RUNNING
            if new is not self.state:
                self.state = new
                self.log.warning("actor_degraded" if degraded else "actor_recovered", reason=reason)
                self._heartbeat()

    # ---- hooks ---------------------------------------------------------------

    def setup(self) -> None:
        """Declare sockets and timers."""

    def warm(self) -> None:
        """Compile/warm hot paths before reporting ready."""

    def after_hot(self) -> None:
        """Called once per loop turn in which a hot subscription had frames, after those and before
        any other socket's (the tick's path goes first)."""

    def after_drain(self) -> None:
        """Called once per loop turn after every readable socket was drained (conflation point)."""

    def on_command(self, peer: bytes, env: Envelope) -> Message | None:
        """A request on this actor's command ROUTER; the return value is sent back."""
        return CmdAck(ok=False, reason=f"COMMAND_UNSUPPORTED: kind={type(env.body).__name__} actor={self.name}")

    def on_control(self, ctl: Control) -> CmdAck:
        return CmdAck(ok=False, reason=f"CONTROL_UNKNOWN: cmd={ctl.cmd}")

    def on_control_audit(self, audit: ControlAudit) -> None:
        """A control command the supervisor carried out, and who sent it (the journal files these)."""

    def on_kill(self, kill: KillSwitch) -> None:
        """The operator's kill switch changed (delivered by the supervisor)."""

    def on_gap(self, src: str, topic: str, first: int, last: int) -> None:
        """Frames first..last of (src, topic) were missed."""

    def detail(self) -> dict[str, float]:
        """Actor-specific figures for `xmc status` (e.g. quote rates)."""
        return {}

    def teardown(self) -> None:
        """Release resources; flush what must not be lost."""

    # ---- loop ------------------------------------------------------------------

    def _guarded(self, fn: Callable[..., object], *args: object) -> None:
        try:
            fn(*args)
        except Exception as exc:  # a bug in one handler must not kill the actor silently
            self._handler_failed(exc)

    def _handler_failed(self, exc: Exception) -> None:
        """From an `except` block: count and log a handler's exception."""
        self.handler_errors += 1
        self.log.error("handler_error", error=repr(exc), tb=traceback.format_exc(limit=8))

    def _on_bad_frame(self, source: str, reason: str, count: int) -> None:
        self.log.warning("frame_dropped", source=source, reason=reason, count=count)

    def _bad_command(self, source: str, reason: str) -> None:
        self.cmd_decode_errors += 1
        n = self._cmd_bad.get(source, 0) + 1
        self._cmd_bad[source] = n
        if n == 1 or n % 1000 == 0:
            self._on_bad_frame(source, reason, n)

    def _drain_subscriptions(self) -> None:
        more = self._subscriptions_more
        for _ in range(MAX_DRAIN):
            try:
                frame = self.pub_sock.recv(NOBLOCK)
            except zmq.Again:
                return
            if frame[:1] == b"\x01":
                prefix = frame[1:].decode("utf-8", "replace")
                self.subscriptions.append(prefix)
                self._guarded(self.on_subscribe, prefix)
            if not more():
                return

    def on_subscribe(self, prefix: str) -> None:
        """A subscriber connected to this actor's PUB with this topic prefix."""

    def _drain_cmd(self) -> None:
        more = self._cmd_more
        for _ in range(MAX_DRAIN):
            try:
                self._serve_command()
            except zmq.Again:
                return
            if not more():
                return

    def _serve_command(self) -> None:
        """Read one request from the command socket and answer it (zmq.Again if there is none)."""
        try:
            peer, env = self.cmd.recv()
        except FrameError as exc:
            self._bad_command(f"{self.name}.cmd", str(exc))
            return
        self.msgs_in += 1
        body = env.body
        if not self._identity_holds(peer, self.cmd.user_id):
            return
        if isinstance(body, Control) and not self._may_command(self.cmd.user_id):
            reply: Message | None = CmdAck(ok=False, reason=f"AUTH_NOT_OPERATOR: sender={self.security.who(self.cmd.user_id)}")
            self.log.warning("control_refused", cmd=body.cmd, sender=self.security.who(self.cmd.user_id))
        elif isinstance(body, Control):
            try:
                reply = self.on_control(body)
            except Exception as exc:
                self._handler_failed(exc)
                reply = CmdAck(ok=False, reason=f"INTERNAL_ERROR: error={type(exc).__name__}")
        elif isinstance(body, ReplaySince):
            frames = self.pub.replay_since(body.prefix, body.since, body.epoch)
            for frame in frames:
                self.cmd.send(peer, env.seq, Replayed(topic="", frame=frame))
            reply = CmdAck(ok=True, data={"replayed": str(len(frames))})
            now = time.monotonic()
            last = self._pullers.get((peer, body.prefix))
            period = now - last[0] if last is not None else PULLER_LIVE_S
            self._pullers[(peer, body.prefix)] = (now, period, self.pub.seqs(body.prefix))
        elif isinstance(body, ReplayRequest):
            frames = self.pub.replay(body.topic, body.first, body.last)
            for frame in frames:
                self.cmd.send(peer, env.seq, Replayed(topic=body.topic, frame=frame))
            reply = CmdAck(ok=True, data={"replayed": str(len(frames))})
        else:
            try:
                reply = self.on_command(peer, env)
            except Exception as exc:
                self._handler_failed(exc)
                reply = CmdAck(ok=False, reason=f"INTERNAL_ERROR: error={type(exc).__name__}")
        if reply is not None:
            self.cmd.send(peer, env.seq, reply)

    def _identity_holds(self, peer: bytes, user_id: str | None) -> bool:
        """With CURVE, a routing id that names an actor must come with that actor's key (operators'
        tools use anonymous ids); a mismatch is dropped, counted and logged."""
        if not self.security.enabled:
            return True
        claimed = peer.decode("utf-8", "replace")
        if claimed not in self.cfg.actors and claimed != SUPERVISOR:
            return True
        who = self.security.who(user_id)
        if who == claimed:
            return True
        self._cmd_bad["identity"] = self._cmd_bad.get("identity", 0) + 1
        n = self._cmd_bad["identity"]
        if n == 1 or n % 1000 == 0:
            self.log.warning("bus_identity_mismatch", socket="cmd", claimed=claimed, sender=who, count=n)
        return False

    def _may_command(self, user_id: str | None) -> bool:
        """Control on the command socket: from an operator or the supervisor (ipc: the run dir's owner)."""
        if not self.security.enabled:
            return True
        who = self.security.who(user_id)
        return who.startswith("operator:") or who == SUPERVISOR

    def _drain_ctl(self) -> None:
        for _ in range(MAX_DRAIN):
            try:
                env = self.ctl.recv()
            except zmq.Again:
                return
            except FrameError as exc:
                self._bad_command(f"{self.name}.ctl", str(exc))
                continue
            body = env.body
            if isinstance(body, KillSwitch):
                if (body.halted, body.reason) != (self.kill.halted, self.kill.reason):
                    self.kill = body
                    self.log.warning("kill_switch", halted=body.halted, reason=body.reason)
                    self._guarded(self.on_kill, body)
            elif isinstance(body, ControlAudit):
                self._guarded(self.on_control_audit, body)
            elif isinstance(body, Control):
                if body.cmd == "stop":
                    self._stop = True
                else:
                    try:
                        self.tell_supervisor(self.on_control(body))
                    except Exception as exc:
                        self._handler_failed(exc)

    def counters(self) -> Heartbeat:
        decode_errors = self.cmd_decode_errors + sum(i.decode_errors for i in self._inbounds)
        gaps = sum(i.seq.gaps for i in self._inbounds)
        dups = sum(i.seq.dups for i in self._inbounds)
        try:
            detail = dict(self.detail())
        except Exception as exc:  # a half-built actor (failed setup) still reports its state
            detail = {}
            self.log.error("detail_failed", error=repr(exc))
        detail["handler_errors"] = float(self.handler_errors)
        detail["realtime_priority"] = float(self.realtime_priority())
        for watch in self._refusals:
            detail[f"refused.{watch.name}"] = float(watch.total)
        return Heartbeat(
            actor=self.name,
            pid=os.getpid(),
            state=self.state.value,
            msgs_in=self.msgs_in,
            msgs_out=self.pub.sent,
            decode_errors=decode_errors,
            gaps=gaps,
            dups=dups,
            detail=detail,
            ts_ns=time.monotonic_ns(),
        )

    @staticmethod
    def realtime_priority() -> int:
        """This process's SCHED_FIFO priority (0: the normal scheduler)."""
        try:
            return os.sched_getparam(0).sched_priority if os.sched_getscheduler(0) == os.SCHED_FIFO else 0
        except OSError:
            return 0

    def _heartbeat(self) -> None:
        hb = self.counters()
        self.tell_supervisor(hb)
        self.pub.publish(topics.hb(self.name), hb)

    def tell_supervisor(self, msg: Message) -> None:
        """Best effort: an actor never blocks on an absent or stalled supervisor."""
        try:
            self.ctl.send(msg, flags=NOBLOCK)
        except zmq.Again:
            self._ctl_dropped += 1

    def _request_stop(self, signum: int, _frame: object) -> None:
        self._stop = True

    def run(self) -> int:
        """Run until SIGTERM/SIGINT or a stop command; returns the exit code."""
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        self.log.info("actor_starting", kind=self.kind, realtime=self.realtime_priority())
        if os.environ.get(SCHED_REFUSED):
            self.log.warning("realtime_unavailable", reason=os.environ[SCHED_REFUSED])
        try:
            self.setup()
            self.warm()
        except BaseException as exc:  # e.g. WAL_LOCKED: another process still writes this actor's log
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            self.state = Lifecycle.FAULTED
            self.log.error("actor_start_failed", error=repr(exc), tb=traceback.format_exc(limit=8))
            self._heartbeat()
            self._close()
            return 1
        gc.collect()
        gc.freeze()  # start-up objects leave the collector's view: fewer, shorter pauses on the hot path
        self.state = Lifecycle.READY
        self._heartbeat()
        self.log.info("actor_ready")
        self.state = Lifecycle.RUNNING
        self.every(self.cfg.run.heartbeat_s, self._heartbeat)
        if self.kind in TICK_PATH and self.cfg.run.keep_warm_ms > 0:
            self.every(self.cfg.run.keep_warm_ms / 1e3, self.pub.warm)
        try:
            self._loop()
        except BaseException as exc:  # e.g. one meant to stop the process (a torn log, a half-done step)
            if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
                self.log.error("actor_fatal", error=repr(exc)[:4000], tb=traceback.format_exc(limit=8))
            raise
        finally:
            self.state = Lifecycle.STOPPING
            self.flush_logs()
            self.log.info("actor_stopping")
            try:
                self.teardown()
            finally:
                self.state = Lifecycle.STOPPED
                self._heartbeat()
                self.log.info("actor_stopped", msgs_in=self.msgs_in, msgs_out=self.pub.sent)
                self._close()
        return 0

    def finishing(self) -> bool:
        """After a stop request: True while the actor still has work it must finish (e.g. open trades)."""
        return False

    def _pullers_behind(self) -> bool:
        """A periodic puller (it asks at least every PULLER_LIVE_S) that should ask again soon (within
        two of its periods) has not yet had what was published since; one that stopped asking,
        or is stopping too, is not waited for longer than that."""
        now = time.monotonic()
        return any(period < PULLER_LIVE_S and now - asked < 2 * period and self.pub.seqs(prefix) != had
                   for (_, prefix), (asked, period, had) in self._pullers.items())

    def on_stop_requested(self) -> None:
        """A stop was requested; begin winding down (the loop keeps running while `finishing()`)."""

    def _loop(self) -> None:
        items = self._poll_items
        hot = {sock for sock, _ in items[:self._hot]}
        zmq_poll = zmq.zmq_poll
        grace_until: float | None = None
        while True:
            if self._stop:
                if grace_until is None:
                    grace_until = time.monotonic() + max(0.5, self.cfg.run.stop_timeout_s - 1.0)
                    self.state = Lifecycle.STOPPING
                    self._guarded(self.on_stop_requested)
                if not (self.finishing() or self._pullers_behind()) or time.monotonic() >= grace_until:
                    return
            now = time.monotonic()
            timeout_ms = 100.0
            if self._timers:
                timeout_ms = min(timeout_ms, max(0.0, (self._timers[0].due - now) * 1000.0))
            # whole milliseconds, rounded up: rounding down polled with 0 for the last
            # millisecond before every timer, a busy spin (a timer may run up to 1 ms late)
            events = zmq_poll(items, math.ceil(timeout_ms))
            if events:
                self._serve(events, hot)
            self._run_timers()

    def _serve(self, events: list[tuple[Any, int]], hot: set[Any]) -> None:
        """One wake-up's readable sockets, in poll order (hot ones first): the hot handlers and
        `after_hot` with the garbage collector held off (a collection, up to a millisecond here,
        then runs after the tick's path, not in it), then the others, then `after_drain`."""
        handlers = self._handlers
        n_hot = 0
        while n_hot < len(events) and events[n_hot][0] in hot:
            n_hot += 1
        if n_hot:
            collecting = gc.isenabled()
            gc.disable()
            try:
                for sock, _ in events[:n_hot]:
                    handlers[sock]()
                self._guarded(self.after_hot)
            finally:
                if collecting:
                    gc.enable()
        for sock, _ in events[n_hot:]:
            handlers[sock]()
        self._guarded(self.after_drain)

    def _run_timers(self) -> None:
        now = time.monotonic()
        timers = self._timers
        while timers and timers[0].due <= now:
            t = heapq.heappop(timers)
            if t.cancelled:
                continue
            self._guarded(t.fn)
            if t.interval > 0:
                t.due = max(t.due + t.interval, now)
                heapq.heappush(timers, t)

    def _close(self) -> None:
        try:
            self.flush_logs()
        except Exception:  # noqa: BLE001 - closing must go on
            pass
        for fn in reversed(self._closers):
            try:
                fn()
            except Exception as exc:  # closing must go on: the sockets and the context still need it
                self.log.error("close_failed", error=repr(exc))
        self._closers.clear()
        for sock in list(self._handlers):
            sock.close()
        self.security.stop()  # the authenticator's socket lives in the same context
        self.ctx.term()
