"""Frames encoded once and patched per send: a hot message without a Struct built and encoded per tick.

A `FrameTemplate` holds one topic's frame for one message shape (a pair's signal in one
direction, an instrument's quote) and writes only the fields that change. The protocol, which
the code below can be checked against:

- Build: the one codec (`bus.codec.Codec.encode_frame`) encodes the sample envelope with a
  unique sentinel in the envelope's ``seq`` and ``ts_ns`` and in every body field named in
  `fields` (dotted paths into the body: ``"bid"``, ``"legs.0.qty"``). Each sentinel must occur
  exactly once in the frame, and the fields must be named in the order the frame holds them.
- Widths: an ``int`` field is written as msgpack int64 (``0xd3`` and 8 bytes) and a ``float``
  field as float64 (``0xcb`` and 8 bytes), so every value has the sentinel's width. At most one
  ``str`` field, whose length may change; its msgpack header is written for its length.
- Fill: `frame(seq, ts_ns, values)` is the frame with `values` in `fields` order. Everything else
  is the sample's bytes. A frame decodes, through the same codec, to the sample envelope with
  those values; the build checks this once with the sample's own values (tests check it for
  arbitrary values).
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

from bus.codec import Codec
from bus.messages import Envelope, Message

_INT, _FLOAT = b"\xd3", b"\xcb"  # msgpack int64, float64


class TemplateError(ValueError):
    """A message shape a template cannot hold; the reason says which field and why."""


def _get(obj: Any, path: list[str]) -> Any:
    for part in path:
        obj = obj[int(part)] if isinstance(obj, tuple) else getattr(obj, part)
    return obj


def _set(obj: Any, path: list[str], value: Any) -> Any:
    """`obj` with the value at `path` replaced (frozen Structs and tuples are rebuilt)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(obj, tuple):
        i = int(head)
        return obj[:i] + (_set(obj[i], rest, value),) + obj[i + 1:]
    return msgspec.structs.replace(obj, **{head: _set(getattr(obj, head), rest, value)})


def _kind(obj: Any, path: list[str], where: str) -> type:
    """The declared type of the Struct field at the end of `path`."""
    try:
        owner = _get(obj, path[:-1])
    except (AttributeError, IndexError, ValueError):
        owner = None
    types = {f.name: f.type for f in msgspec.structs.fields(owner)} if isinstance(owner, msgspec.Struct) else {}
    if path[-1] not in types:
        raise TemplateError(f"TEMPLATE_FIELD_UNKNOWN: field={where} not a field of the message")
    kind = types[path[-1]]
    if kind not in (int, float, str):
        raise TemplateError(f"TEMPLATE_FIELD_TYPE: field={where} type={kind!r} not int, float or str")
    return kind


def _str_bytes(s: str) -> bytes:
    b = s.encode()
    n = len(b)
    if n < 32:
        return bytes((0xA0 | n,)) + b
    if n < 0x100:
        return b"\xd9" + bytes((n,)) + b
    if n < 0x10000:
        return b"\xda" + n.to_bytes(2, "big") + b
    return b"\xdb" + n.to_bytes(4, "big") + b


class _Segment:
    """Constant bytes and fixed-width values, packed by one precompiled Struct."""

    def __init__(self, consts: list[bytes], codes: str) -> None:
        fmt = ">" + "".join(f"{len(c)}s{k}" for c, k in zip(consts, codes)) + f"{len(consts[-1])}s"
        self.pack = struct.Struct(fmt).pack
        self.args: list[Any] = []
        for c in consts[:-1]:
            self.args += [c, 0]
        self.args.append(consts[-1])


class FrameTemplate:
    """One topic's frame for one message shape; `frame` writes the values that change."""

    def __init__(self, codec: Codec, topic: str, sample: Envelope, fields: tuple[str, ...]) -> None:
        self.topic = topic
        self.fields = fields
        paths = [["seq"], ["ts_ns"]] + [["body", *f.split(".")] for f in fields]
        names = ["seq", "ts_ns", *fields]
        env: Any = sample
        marks: list[tuple[bytes, str]] = []  # (the sentinel's encoding, struct code or "" for str)
        n_str = 0
        for i, (path, name) in enumerate(zip(paths, names)):
            kind = _kind(sample, path, name)
            if kind is int:
                value: Any = 0x7E5E_0000_0000_0000 + i
                marks.append((b"\xcf" + value.to_bytes(8, "big"), "q"))
            elif kind is float:
                raw = b"\x01\x23XMC" + bytes((i, 0x5A, 0xA5))
                value = struct.unpack(">d", raw)[0]
                marks.append((_FLOAT + raw, "d"))
            else:
                n_str += 1
                value = f"\x7fXMC-template-{i}\x7f"
                marks.append((_str_bytes(value), ""))
            env = _set(env, path, value)
        if n_str > 1:
            raise TemplateError(f"TEMPLATE_FIELD_TYPE: fields={','.join(fields)} more than one str field")
        frame = bytes(codec.encode_frame(topic, env))
        at = []
        for (pattern, _), name in zip(marks, names):
            pos = frame.find(pattern)
            if pos < 0 or frame.find(pattern, pos + 1) >= 0:
                raise TemplateError(f"TEMPLATE_FIELD_UNPLACED: field={name} sentinel found {frame.count(pattern)} times")
            at.append(pos)
        if at != sorted(at):
            order = [n for _, n in sorted(zip(at, names))]
            raise TemplateError(f"TEMPLATE_FIELD_ORDER: fields={','.join(names)} frame order={','.join(order)}")
        # cut the frame into constant bytes around the values (a value's type byte stays in the
        # constant before it, as int64 for every int); a str value splits it into two segments
        segments: list[tuple[list[bytes], str]] = [([], "")]
        self._str_at: int | None = None
        pos = 0
        for k, ((pattern, code), start) in enumerate(zip(marks, at)):
            consts, codes = segments[-1]
            if code:
                consts.append(frame[pos:start] + (_INT if code == "q" else _FLOAT))
                segments[-1] = (consts, codes + code)
            else:
                consts.append(frame[pos:start])
                segments.append(([], ""))
                self._str_at = k
            pos = start + len(pattern)
        segments[-1][0].append(frame[pos:])
        self._head = _Segment(*segments[0])
        self._tail = _Segment(*segments[1]) if len(segments) > 1 else None
        own = tuple(_get(sample, p) for p in paths[2:])
        if codec.decode_frame(self.frame(sample.seq, sample.ts_ns, own)) != (topic, sample):
            raise TemplateError(f"TEMPLATE_ROUND_TRIP: topic={topic} the filled sample decodes differently")

    def frame(self, seq: int, ts_ns: int, values: tuple) -> bytes:
        """The frame for envelope `seq`/`ts_ns` and body `values` (in `fields` order)."""
        vals = (seq, ts_ns) + values
        k = self._str_at
        head = self._head
        if k is None:
            args = head.args.copy()
            args[1::2] = vals
            return head.pack(*args)
        tail = self._tail
        assert tail is not None
        a = head.args.copy()
        a[1::2] = vals[:k]
        b = tail.args.copy()
        b[1::2] = vals[k + 1:]
        return b"".join((head.pack(*a), _str_bytes(vals[k]), tail.pack(*b)))


def template(codec: Codec, topic: str, src: str, epoch: int, body: Message, fields: tuple[str, ...]) -> FrameTemplate:
    """A template for `body` on `topic` from publisher `src`/`epoch` (seq and time are filled per frame)."""
    return FrameTemplate(codec, topic, Envelope(src=src, epoch=epoch, seq=1, ts_ns=1, body=body), fields)
