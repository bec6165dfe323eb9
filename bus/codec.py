"""The one codec: MessagePack frames of `Envelope`, topic first.

A PUB/SUB frame is ``<topic>|<msgpack Envelope>`` in one ZeroMQ frame (one
frame is faster than multipart on this hardware; ZeroMQ's prefix filter still
works on the topic). A command frame is the bare msgpack Envelope.
"""

from __future__ import annotations

import msgspec

from bus.messages import Envelope, Message

SEP = b"|"


class FrameError(ValueError):
    """A frame that does not decode into an Envelope; the reason says why."""


class Codec:
    """Encoder/decoder pair; one per socket owner (they keep reusable buffers)."""

    def __init__(self) -> None:
        self._enc = msgspec.msgpack.Encoder()
        self._dec = msgspec.msgpack.Decoder(Envelope)

    @property
    def decoder(self) -> msgspec.msgpack.Decoder:
        """The Envelope decoder (a receive loop that splits frames itself calls it directly)."""
        return self._dec

    def encode(self, env: Envelope) -> bytes:
        return self._enc.encode(env)

    def encode_frame(self, topic: str, env: Envelope) -> bytearray:
        buf = bytearray(topic.encode())
        buf += SEP
        self._enc.encode_into(env, buf, len(buf))
        return buf

    def decode(self, data: bytes | memoryview) -> Envelope:
        try:
            return self._dec.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise FrameError(str(exc)) from None

    def decode_frame(self, frame: bytes) -> tuple[str, Envelope]:
        cut = frame.find(SEP)
        if cut <= 0:
            raise FrameError("no topic separator")
        try:
            topic = frame[:cut].decode()
        except UnicodeDecodeError:
            raise FrameError("topic is not utf-8") from None
        return topic, self.decode(memoryview(frame)[cut + 1 :])


def to_builtins(msg: Message) -> dict:
    """A message as plain JSON-able Python objects (with its kind under 'k')."""
    return msgspec.to_builtins(msg)
