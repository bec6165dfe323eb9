"""The command channel: DEALER/ROUTER for what must not be dropped.

Orders, control and replay requests travel here, never on lossy PUB/SUB. A
request is an `Envelope` whose `seq` is the request id; the answer (a `CmdAck`
or any message) carries the same id. ROUTER is created with
``ROUTER_MANDATORY`` so an unroutable reply raises instead of vanishing.
"""

from __future__ import annotations

import time

import zmq

from bus.codec import Codec, FrameError
from bus.readiness import NOBLOCK
from bus.messages import Envelope, Message


class CommandTimeout(Exception):
    """No answer within the deadline."""


class CommandServer:
    """A bound ROUTER; peers are DEALERs identified by their routing id."""

    def __init__(self, sock: zmq.Socket, src: str, epoch: int, authenticated: bool = False) -> None:
        """`authenticated`: the socket is a CURVE server; each request's sender is then known."""
        self.sock = sock
        self.src = src
        self.epoch = epoch
        self.codec = Codec()
        self.authenticated = authenticated
        self.user_id: str | None = None

    def recv(self) -> tuple[bytes, Envelope]:
        """One request; raises FrameError for a frame that is not [identity, envelope].

        `user_id` is then the sender's authenticated identity (its CURVE public key, z85), or
        None on a socket without authentication."""
        self.user_id = None
        # a frame's User-Id property needs the frame itself (copy=False), so only when it is asked for
        frames = self.sock.recv_multipart(NOBLOCK, copy=not self.authenticated)
        if len(frames) != 2:
            raise FrameError(f"expected [identity, payload], got {len(frames)} parts")
        if not self.authenticated:
            return frames[0], self.codec.decode(frames[1])
        try:
            self.user_id = frames[1].get("User-Id")
        except zmq.ZMQError:  # no ZAP answer on this connection
            pass
        return frames[0].bytes, self.codec.decode(frames[1].bytes)

    def send(self, peer: bytes, req_id: int, msg: Message) -> bool:
        """Send to a peer; False if the peer is not connected (the message is not queued)."""
        env = Envelope(src=self.src, epoch=self.epoch, seq=req_id, ts_ns=time.monotonic_ns(), body=msg)
        try:
            self.sock.send_multipart([peer, self.codec.encode(env)], NOBLOCK)
            return True
        except zmq.ZMQError as exc:
            if exc.errno in (zmq.EHOSTUNREACH, zmq.EAGAIN):
                return False
            raise


class CommandClient:
    """A connected DEALER with request ids; answers are read by the owner's poll loop."""

    def __init__(self, sock: zmq.Socket, src: str, epoch: int) -> None:
        self.sock = sock
        self.src = src
        self.epoch = epoch
        self.codec = Codec()
        self._next_id = 0

    def send(self, msg: Message, req_id: int | None = None, flags: int = 0) -> int:
        if req_id is None:
            self._next_id += 1
            req_id = self._next_id
        env = Envelope(src=self.src, epoch=self.epoch, seq=req_id, ts_ns=time.monotonic_ns(), body=msg)
        self.sock.send(self.codec.encode(env), flags)  # small: a copy is cheaper than zero-copy bookkeeping
        return req_id

    def recv(self) -> Envelope:
        return self.codec.decode(self.sock.recv(NOBLOCK))


def call(ctx: zmq.Context, endpoint: str, msg: Message, timeout_s: float, src: str = "cli",
         curve: tuple[bytes, bytes, bytes] | None = None) -> Message:
    """One synchronous request/answer on a fresh DEALER; raises CommandTimeout.

    `curve`: (server public key, own public key, own secret key) to connect as a CURVE client."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        sock.setsockopt(zmq.CURVE_SERVERKEY, curve[0])
        sock.setsockopt(zmq.CURVE_PUBLICKEY, curve[1])
        sock.setsockopt(zmq.CURVE_SECRETKEY, curve[2])
    sock.connect(endpoint)
    try:
        client = CommandClient(sock, src, time.monotonic_ns())
        req_id = client.send(msg)
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sock.poll(int(left * 1000) + 1):
                raise CommandTimeout(f"no answer from {endpoint} within {timeout_s:.1f}s")
            try:
                env = client.recv()
            except FrameError:
                continue
            if env.seq == req_id:
                return env.body
    finally:
        sock.close(0)
