"""Sequenced PUB/SUB: a publisher stamps (src, epoch, per-topic seq, ts); a subscriber
detects gaps, duplicates, publisher restarts and undecodable frames.

The socket objects are passed in (created by the actor runtime) so that this
module holds the bookkeeping, not the I/O policy.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from typing import Callable

import zmq

from bus import topics
from bus.codec import SEP, Codec, FrameError
from bus.frames import FrameTemplate, template
from bus.messages import Envelope, Message


_WARM_FRAME = topics.WARM.encode() + SEP


class Publisher:
    """Stamps and sends messages on a bound PUB socket; keeps a bounded replay buffer per topic."""

    def __init__(self, sock: zmq.Socket, src: str, epoch: int, replay_depth: int = 0) -> None:
        self.sock = sock
        self.src = src
        self.epoch = epoch
        self.sent = 0
        self._seq: dict[str, int] = {}
        self._codec = Codec()
        self._depth = replay_depth
        self._replay: dict[str, deque[tuple[int, bytes]]] = {}

    def publish(self, topic: str, msg: Message) -> int:
        seq = self._seq.get(topic, 0) + 1
        env = Envelope(src=self.src, epoch=self.epoch, seq=seq, ts_ns=time.monotonic_ns(), body=msg)
        return self._send(topic, seq, self._codec.encode_frame(topic, env))

    def template(self, topic: str, body: Message, fields: tuple[str, ...]) -> FrameTemplate:
        """A frame for `body` on `topic`, encoded once; `publish_template` writes `fields` per send."""
        return template(self._codec, topic, self.src, self.epoch, body, fields)

    def publish_template(self, t: FrameTemplate, values: tuple) -> int:
        """Publish `t`'s message with `values` for its fields: the same frame `publish` would send."""
        seq = self._seq.get(t.topic, 0) + 1
        return self._send(t.topic, seq, t.frame(seq, time.monotonic_ns(), values))

    def warm(self) -> None:
        """Send a frame on `topics.WARM`, which no subscription matches: the socket drops it before
        any pipe, so nothing reaches the wire and no sequence moves. What it does is run the send
        path (pyzmq, libzmq's send and subscription match), so the next real send finds it in the
        CPU caches: on this VM a send after 4 ms idle takes ~32 µs, one within 1 ms of such a
        frame ~13 (a throwaway microbenchmark: ipc, median of 1,400 sends)."""
        self.sock.send(_WARM_FRAME)

    def _send(self, topic: str, seq: int, frame: bytes | bytearray) -> int:
        self._seq[topic] = seq
        try:
            self.sock.send(frame)  # small frames: copying is cheaper than zero-copy bookkeeping
            self.sent += 1
        finally:  # kept for replay after the send (off the tick's path), whatever the send did
            if self._depth:
                buf = self._replay.get(topic)
                if buf is None:
                    buf = self._replay[topic] = deque(maxlen=self._depth)
                buf.append((seq, bytes(frame)))
        return seq

    def seqs(self, prefix: str) -> dict[str, int]:
        """The last seq published per topic under `prefix`."""
        return {t: n for t, n in self._seq.items() if t.startswith(prefix)}

    def replay(self, topic: str, first: int, last: int) -> list[bytes]:
        """Frames of `topic` with first <= seq <= last still held in the replay buffer."""
        return [f for s, f in self._replay.get(topic, ()) if first <= s <= last]

    def replay_since(self, prefix: str, since: dict[str, int], epoch: int) -> list[bytes]:
        """Buffered frames of topics under `prefix` newer than `since` (all of them for another epoch)."""
        out: list[bytes] = []
        for topic, buf in self._replay.items():
            if not topic.startswith(prefix):
                continue
            last = since.get(topic, 0) if epoch == self.epoch else 0
            newer = []
            for s, f in reversed(buf):  # only the new tail is walked
                if s <= last:
                    break
                newer.append(f)
            out.extend(reversed(newer))
        return out


class SeqStatus(enum.Enum):
    OK = "ok"
    FIRST = "first"  # first frame seen from this (src, topic)
    GAP = "gap"
    DUP = "dup"
    RESTART = "restart"  # the publisher's epoch changed


class SeqTracker:
    """Per (src, topic) sequence tracking."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, str], tuple[int, int]] = {}  # (src, topic) -> (epoch, last seq)
        self.gaps = 0  # frames missed
        self.dups = 0

    def check(self, topic: str, env: Envelope) -> tuple[SeqStatus, int]:
        """Return the status and, for a gap, the first missing seq."""
        key = (env.src, topic)
        prev = self.last.get(key)
        if prev is None:
            self.last[key] = (env.epoch, env.seq)
            return SeqStatus.FIRST, 0
        epoch, last = prev
        if env.epoch != epoch:
            self.last[key] = (env.epoch, env.seq)
            if env.seq > 1:  # the restarted publisher's first frames never reached us
                self.gaps += env.seq - 1
                return SeqStatus.GAP, 1
            return SeqStatus.RESTART, 0
        if env.seq == last + 1:
            self.last[key] = (epoch, env.seq)
            return SeqStatus.OK, 0
        if env.seq <= last:
            self.dups += 1
            return SeqStatus.DUP, 0
        self.gaps += env.seq - last - 1
        self.last[key] = (epoch, env.seq)
        return SeqStatus.GAP, last + 1


BadFrameHook = Callable[[str, str, int], None]  # (source, reason, count so far)


class Inbound:
    """Decodes frames from one SUB socket, tracking sequences and counting bad frames.

    `on_bad` is called for the first bad frame from each source (and every
    1000th after) so an actor logs once per source instead of once per frame.
    """

    def __init__(self, name: str, on_bad: BadFrameHook) -> None:
        self.name = name
        self.codec = Codec()
        self.seq = SeqTracker()
        self.received = 0
        self.decode_errors = 0
        self._bad_by_source: dict[str, int] = {}
        self._on_bad = on_bad

    def decode(self, frame: bytes) -> tuple[str, Envelope] | None:
        self.received += 1
        try:
            return self.codec.decode_frame(frame)
        except FrameError as exc:
            self.bad(self._source_of(frame), str(exc))
            return None

    def bad(self, source: str, reason: str) -> None:
        self.decode_errors += 1
        n = self._bad_by_source.get(source, 0) + 1
        self._bad_by_source[source] = n
        if n == 1 or n % 1000 == 0:
            self._on_bad(source, reason, n)

    def _source_of(self, frame: bytes) -> str:
        cut = frame.find(b"|")
        topic = frame[:cut][:64].decode("utf-8", "replace") if cut > 0 else "?"
        return f"{self.name}:{topic}"
