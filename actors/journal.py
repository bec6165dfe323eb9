"""The journal actor: every bus message into the run's SQLite audit store.

It never slows the hot path: it is only a subscriber, it takes market data,
signals and orders in batches from the publishers' replay buffers (`PULLED`),
so it never wakes between a tick and the orders, and it commits in batches.
Gaps are recorded as incidents and filled from the publisher's replay buffer,
so a run's journal is complete even when a PUB queue overflowed.

The executor's fills and trade events come from its durable execution stream
(`bus.stream`): the journal resumes after the last stream seq it filed, so what
happened while it or the executor was down is filed when both are back, once.
The journal is audit only: no actor reads its file to rebuild state.
"""

from __future__ import annotations

from pathlib import Path

from bus import topics
from bus.auditstore import STREAM_EPOCH, AuditWriter, row_of
from bus.codec import Codec, FrameError
from bus.command import CommandClient
from bus.messages import CmdAck, ControlAudit, Envelope, ReplayRequest, ReplaySince, Replayed, StreamEvent
from bus.pubsub import Inbound
from bus.stream import StreamCursor, filed_topic
from actors.runtime import Actor

FLUSH_S = 0.1
PULL_S = 0.1
# taken as they are published; the execution stream is followed
EVENT_PREFIXES = (topics.RISK, topics.HB, topics.CTL, topics.ALERT, topics.VENUE)
# pulled every PULL_S from the replay buffers of the actors (by kind) that publish them, so the
# journal never wakes on the tick-to-trade path: market data, and the signals and orders of the
# hot path (a process woken beside the executor takes one of the 2 vCPUs while it sends)
PULLED = ((topics.MD, "ingest"), (topics.RAW, "simex"), (topics.SIG, "trigger"), (topics.EXEC_ORDER, "executor"),
          (topics.EXEC_REPORT, "executor"))
FLUSH_ROWS = 2000


def audit_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "journal.sqlite"


class JournalActor(Actor):
    kind = "journal"
    replay_depth = 0

    def setup(self) -> None:
        self.store = AuditWriter(audit_path(self.run_dir))
        self.codec = Codec()
        # disabled actors too: something else may stand in for them on their endpoint
        publishers = [n for n in self.cfg.actors if n != self.name]
        self.inbound: Inbound = self.subscribe(publishers, list(EVENT_PREFIXES), self._on_frame, name="events")
        bulk = []
        for prefix, kind in PULLED:
            sources = [n for n in publishers if self.cfg.actors[n].kind == kind]
            if sources:
                bulk.append(self.pull(sources, prefix, PULL_S, self._on_frame, name=f"pull{prefix}"))
        for key, last in self.store.last_seqs().items():
            for inbound in (self.inbound, *bulk):
                inbound.seq.last[key] = last
        self._replay_clients: dict[str, CommandClient] = {}
        self._pending_replays: dict[tuple[str, int], int] = {}  # (publisher, req id) -> incident id
        self.gap_incidents = 0
        self.replayed = 0
        self._epochs: dict[str, int] = {}  # publisher -> the epoch whose buffered frames were fetched
        self.streams: dict[str, StreamCursor] = {}
        for ex in (n for n, a in self.cfg.actors.items() if a.kind == "executor"):
            since = self.store.stream_head(ex)
            self.streams[ex] = self.follow_stream(ex, lambda ev, ts, ex=ex: self._on_stream(ex, ev, ts), since=since,
                                                  name=f"stream:{ex}")
            self.log.info("stream_following", executor=ex, since=since)
        self.every(FLUSH_S, self.store.flush)

    def _on_stream(self, src: str, ev: StreamEvent, ts_ns: int) -> None:
        env = Envelope(src=src, epoch=STREAM_EPOCH, seq=ev.seq, ts_ns=ts_ns, body=ev.body)
        self.store.add(row_of(filed_topic(ev), env))

    def _on_frame(self, topic: str, env: Envelope) -> None:
        self.store.add(row_of(topic, env))
        if self._epochs.get(env.src) != env.epoch and env.src in self.cfg.actors:
            # a publisher seen for the first time, or restarted: what it sent before we (re)connected
            # is fetched from its replay buffer, whether or not a later frame would reveal a gap
            self._epochs[env.src] = env.epoch
            incident = self.store.incident("catch_up", env.src, "*", None, None, detail=f"epoch={env.epoch}")
            req = self._client(env.src).send(ReplaySince(prefix="", since={}, epoch=0))
            self._pending_replays[(env.src, req)] = incident

    def on_control_audit(self, audit: ControlAudit) -> None:
        """A control command and who sent it, filed (seq: its UTC time, unique per command)."""
        env = Envelope(src="supervisor", epoch=0, seq=audit.ts_ns, ts_ns=audit.ts_ns, body=audit)
        self.store.add(row_of(topics.CTL_AUDIT, env))
        self.store.flush()

    def _client(self, src: str) -> CommandClient:
        client = self._replay_clients.get(src)
        if client is None:
            client = self._replay_clients[src] = self.connect_command(src, lambda env, s=src: self._on_replay(s, env))
        return client

    def after_drain(self) -> None:
        if self.store.pending >= FLUSH_ROWS:
            self.store.flush()

    def on_gap(self, src: str, topic: str, first: int, last: int) -> None:
        self.gap_incidents += 1
        # first == 1: frames sent before we saw this publisher epoch (late join or restart)
        incident = self.store.incident("catch_up" if first == 1 else "gap", src, topic, first, last)
        if src not in self.cfg.actors:
            return
        req = self._client(src).send(ReplayRequest(topic=topic, first=first, last=last))
        self._pending_replays[(src, req)] = incident

    def _on_replay(self, src: str, env: Envelope) -> None:
        body = env.body
        if (src, env.seq) not in self._pending_replays:
            return  # an answer to a pull on the same channel
        if isinstance(body, Replayed):
            try:
                topic, inner = self.codec.decode_frame(body.frame)
            except FrameError as exc:
                self.log.warning("replay_frame_dropped", source=src, reason=str(exc))
                return
            if topic == topics.EXEC_STREAM:
                return  # the stream is followed on its own
            self.store.add(row_of(topic, inner, replayed=True))
            self.replayed += 1
        elif isinstance(body, CmdAck):
            incident = self._pending_replays.pop((src, env.seq), None)
            if incident is not None:
                n = int(body.data.get("replayed", "0"))
                self.store.flush()
                self.store.recovered(incident, n)
                self.log.info("gap_filled", src=src, incident=incident, recovered=n)

    def detail(self) -> dict[str, float]:
        d = {"rows": float(self.store.written), "pending": float(self.store.pending),
             "gap_incidents": float(self.gap_incidents), "replayed": float(self.replayed)}
        for ex, cursor in self.streams.items():
            d[f"stream.{ex}"] = float(cursor.last)
        return d

    def teardown(self) -> None:
        self.store.close()
