"""The executor's write-ahead log: every input of every pair trade, and every order sent.

File format: an 8-byte magic header, then frames ``<u32 length><u32 crc32> <msgpack record>``
(little-endian; the CRC covers the payload), then, while a writer has the file open or after it
was killed, zero bytes: the writer keeps the file allocated and zero-filled ``AHEAD`` bytes past
its end and writes frames through a shared memory map (a memory copy into the kernel's page
cache, no system call on the hot path), and cuts the zeros off when it closes. A zero length
where a frame would start, with nothing but zeros after it, is the clean end of the log.
Each `append` copies whole frames into the map (nothing is buffered in user space) and, with
``fsync=True``, syncs them (``msync``) before it returns. On open, a torn or corrupt tail (a
crash mid-write) is detected, reported in ``WriteAheadLog.scan``, copied aside to
``<path>.torn-<offset>`` (without the zero fill) and truncated; opening never raises for a
damaged file.

Protocol (`execution.engine.ExecutionEngine` follows it exactly, in its ``_commit``; the
pair-trade machine is deterministic, so replaying the inputs rebuilds every trade bit for bit):

1. One input, one write. An input (a signal that opens a trade, a report, a timer, a halt, a
   restart) is worked out in memory in full, then written with ``append_many`` as, in order:
   its input record (``TradeOpened`` / ``ReportApplied`` / ``TimerFired`` / ``Halted`` /
   ``Resumed``), then, in the order they arose, every ``OrderSent`` (``ChildSent`` for a
   split parent's children), every ``ReportApplied`` of a local answer it caused (an order the
   limits denied comes back as a REJECT), every ``Streamed`` event and ``TradeClosed``.
   Only after that write does anything leave the process: orders, cancels, status queries,
   stream events. Cancels and status queries are not logged: recovery re-derives them.
   A signal sent from its armed entry (`execution.armed`) is written as one compact
   ``EntrySent``, which reading the log expands (`expand`) into exactly the records of 1:
   ``TradeOpened``, the entry orders' ``OrderSent`` and ``ChildSent``, the trade's first
   ``Streamed`` event. Its orders leave after that write; the engine then works the signal
   out the ordinary way and must arrive at those records and orders (else it stops:
   `execution.armed.FastPathDiverged`), so memory and log never differ.
2. ``Streamed`` events are the durable execution stream: fills (once per increase of what a
   trade holds), trade events, the positions after them. ``event.seq`` is 1, 2, 3, ... in log
   order for the life of the file; `compact` keeps every one of them.
3. A trade becomes done (``trade.is_done``): ``TradeClosed(trade_id, state)`` (it lets
   ``compact`` drop the trade's other records).
4. Restart: the engine reads the records (`WriteAheadLog.records`), replays them with
   `recover_records` (open trades), re-reads the ``Streamed`` events (positions, stream), then
   writes ``Resumed(now_ns)`` with what ``state.resume(now_ns)`` decides, as in 1: a status
   query for every order that was sent but whose outcome is unknown, and a SendOrder for every
   order the machine decided on but that never got an ``OrderSent`` record. Trade ids resume at
   ``state.next_trade_n``.

Why this is safe after ``kill -9``: an order leaves only after its OrderSent record is written
(copied into the shared map, i.e. into the kernel's page cache, which survives the process;
``fsync=True`` also survives a power loss), so an order without one was never sent and is sent
now (same cl_ord_id); an order with one may or may not have reached the venue, so it is put in
doubt and its status is asked (an unknown order comes back as ``REJECT ORDER_UNKNOWN`` and is
resubmitted under a new id: no duplicate order).
A report's effects (and the stream events it makes) are never seen outside before its record is
written, so no applied fill is lost or published unlogged; fills the venue sent while the
executor was down come back in the status answers (cumulative quantities). Rebuilt trades resume
rolling back or completing, so no leg is left naked; a stream event published before a crash is
in the log with its seq, so every follower gets it again, under the same number.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Union

import msgspec

from bus.messages import OrderEvent, OrderRequest, Signal, StreamEvent
from execution.ids import trade_number
from execution.pairtrade import Action, PairParams, PairTrade, SendOrder, Transition

MAGIC = b"XMCWAL\x00\x01"
CHILD_SEP = "/"  # <parent cl_ord_id>/<n>: a child order (execution.childorders)
_HEAD = struct.Struct("<II")
MAX_RECORD = 16 * 1024 * 1024
AHEAD = 1024 * 1024  # the writer keeps this much allocated, zero-filled room past the log's end


class _Rec(msgspec.Struct, frozen=True, kw_only=True, tag_field="r", tag=True):
    """Base of every WAL record."""


class TradeOpened(_Rec):
    """A pair trade was created and started at ``now_ns``."""

    trade_id: str
    signal: Signal
    now_ns: int
    params: PairParams | None = None  # None: recovery takes the pair's current params


class OrderSent(_Rec):
    """An order is about to leave (appended before sending)."""

    order: OrderRequest


class ChildSent(_Rec):
    """A child of a split parent order is about to leave (see `execution.childorders`)."""

    parent: OrderRequest
    order: OrderRequest


class ReportApplied(_Rec):
    """An execution report fed to a trade."""

    trade_id: str
    report: OrderEvent
    now_ns: int


class TimerFired(_Rec):
    """`on_timer(now_ns)` of one trade."""

    trade_id: str
    now_ns: int


class Halted(_Rec):
    """`halt` of every trade not ``is_done`` at this point (or of one trade if ``trade_id`` is set)."""

    now_ns: int
    reason: str = ""
    trade_id: str = ""


class Resumed(_Rec):
    """The executor restarted and resumed every open trade at ``now_ns``."""

    now_ns: int


class TradeClosed(_Rec):
    """A trade reached a settled terminal state."""

    trade_id: str
    state: str
    now_ns: int = 0


class Streamed(_Rec):
    """An event of the durable execution stream (a fill, a trade event, the positions after them).

    Written in the same write as the input that caused it, before anything leaves the process;
    its ``event.seq`` is the stream's sequence number (1, 2, ... for the life of the log).
    """

    event: StreamEvent


class EntrySent(_Rec):
    """A signal's trade opened from its armed entry (`execution.armed`) and its entry orders went
    out: the compact form of the records the ordinary path writes for it. Reading the log turns
    it back into exactly those (`expand`): ``TradeOpened``, each entry order's ``OrderSent``
    (``ChildSent`` per sub-account part) and ``Streamed`` with the trade's first event under
    stream seq ``seq``; the pair-trade machine is deterministic, so they follow from the signal."""

    trade_id: str
    signal: Signal
    now_ns: int
    params: PairParams
    seq: int
    parts: tuple[tuple[tuple[str, int], ...] | None, ...]  # per entry order: its sub-account split (None: whole)


class EntrySentOut(_Rec, tag="EntrySent"):
    """`EntrySent` as the executor writes it: the pair's params already encoded (same bytes)."""

    trade_id: str
    signal: Signal
    now_ns: int
    params: msgspec.Raw
    seq: int
    parts: tuple[tuple[tuple[str, int], ...] | None, ...]


def child_order(parent: OrderRequest, n: int, account: str, qty: int) -> OrderRequest:
    """The `n`-th child (1-based) of a parent split across sub-accounts (`execution.childorders`)."""
    return msgspec.structs.replace(parent, cl_ord_id=f"{parent.cl_ord_id}{CHILD_SEP}{n}", account=account, qty=qty)


def expand(rec: EntrySent) -> list["WalRecord"]:
    """The ordinary records an `EntrySent` stands for, in the order the ordinary path writes them."""
    trade = PairTrade(rec.trade_id, rec.signal, rec.params)
    out: list[WalRecord] = [TradeOpened(trade_id=rec.trade_id, signal=rec.signal, now_ns=rec.now_ns, params=rec.params)]
    actions = trade.start(rec.now_ns)
    orders = [a.order for a in actions if isinstance(a, SendOrder)]
    for order, parts in zip(orders, rec.parts):
        out.append(OrderSent(order=order))
        for n, (account, qty) in enumerate(parts or (), 1):
            out.append(ChildSent(parent=order, order=child_order(order, n, account, qty)))
    out += [Streamed(event=StreamEvent(seq=rec.seq, body=a.event)) for a in actions if isinstance(a, Transition)]
    return out


class IdFloor(_Rec):
    """Trade numbers below ``next_n`` are taken (written by `compact`)."""

    next_n: int


WalRecord = Union[TradeOpened, OrderSent, ChildSent, ReportApplied, TimerFired, Halted, Resumed, TradeClosed, Streamed,
                  IdFloor, EntrySent]

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(WalRecord)


class ScanReport(msgspec.Struct, frozen=True, kw_only=True):
    """What reading a log found: ``reason`` is empty for a clean file."""

    records: int
    valid_bytes: int
    dropped_bytes: int = 0
    reason: str = ""  # e.g. "WAL_TORN_TAIL: offset=812 dropped_bytes=9 why=crc"


def encode_frame(rec: WalRecord) -> bytes:
    """One record as a length- and CRC-prefixed frame."""
    payload = _encoder.encode(rec)
    return _HEAD.pack(len(payload), zlib.crc32(payload)) + payload


def scan_bytes(data: bytes) -> tuple[list[WalRecord], ScanReport]:
    """Decode every whole, valid frame; stop at the first torn or corrupt one."""
    if not data:
        return [], ScanReport(records=0, valid_bytes=0)
    if len(data) < len(MAGIC):
        if MAGIC.startswith(data):
            return [], ScanReport(records=0, valid_bytes=0, dropped_bytes=len(data),
                                  reason=f"WAL_TORN_HEADER: bytes={len(data)}")
        return [], ScanReport(records=0, valid_bytes=0, dropped_bytes=len(data),
                              reason=f"WAL_BAD_HEADER: bytes={len(data)}")
    if not data.startswith(MAGIC):
        return [], ScanReport(records=0, valid_bytes=0, dropped_bytes=len(data),
                              reason=f"WAL_BAD_HEADER: bytes={len(data)}")
    out: list[WalRecord] = []
    pos, end = len(MAGIC), len(data)
    why = ""
    while pos < end:
        if end - pos < _HEAD.size:
            why = "short_header"
            break
        length, crc = _HEAD.unpack_from(data, pos)
        if length == 0 or length > MAX_RECORD:
            why = "bad_length"
            break
        body = pos + _HEAD.size
        if body + length > end:
            why = "short_record"
            break
        payload = data[body:body + length]
        if zlib.crc32(payload) != crc:
            why = "crc"
            break
        try:
            rec = _decoder.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            why = "undecodable"
            break
        if isinstance(rec, EntrySent):
            out += expand(rec)
        else:
            out.append(rec)
        pos = body + length
    if why:
        end = len(data.rstrip(b"\0"))  # a writer's zero fill is not damage
        if end <= pos:
            return out, ScanReport(records=len(out), valid_bytes=pos)
        return out, ScanReport(records=len(out), valid_bytes=pos, dropped_bytes=end - pos,
                               reason=f"WAL_TORN_TAIL: offset={pos} dropped_bytes={end - pos} why={why}")
    return out, ScanReport(records=len(out), valid_bytes=pos)


def read_records(path: str | os.PathLike[str]) -> tuple[list[WalRecord], ScanReport]:
    """Every valid record of a log, without modifying it (a missing file is empty)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return [], ScanReport(records=0, valid_bytes=0)
    return scan_bytes(data)


class WalWriteFailed(BaseException):
    """A record could not be written. Not an `Exception` on purpose: no handler may catch it and
    carry on, since the process's trades are now ahead of its log; the process must die and be
    restarted from the log (the supervisor does that)."""


class WriteAheadLog:
    """An append-only log file; open it once per executor process (see the module's file format)."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        """Open (or create) the log, read it, set a damaged tail aside. Raises `WalWriteFailed`
        (``WAL_LOCKED``) if another writer has it open: two writers would overwrite each other."""
        self.path = Path(path)
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._fd)
            raise WalWriteFailed(f"WAL_LOCKED: path={self.path} another writer has it open ({exc.strerror})") from exc
        self._map: mmap.mmap | None = None
        self._size = 0
        try:
            self.records, self.scan = read_records(self.path)
            if self.scan.dropped_bytes:
                self._set_aside()
            self.end = self.scan.valid_bytes  # where the next frame goes
            if self.end == 0:
                os.ftruncate(self._fd, 0)
                os.pwrite(self._fd, MAGIC, 0)
                self.end = len(MAGIC)
            self._room(0)
        except OSError as exc:
            os.close(self._fd)
            raise WalWriteFailed(f"WAL_WRITE_FAILED: path={self.path} error={exc!r}") from exc
        self.appended = 0

    def _set_aside(self) -> None:
        """Copy the damaged tail to a side file for forensics, then cut it off."""
        valid, dropped = self.scan.valid_bytes, self.scan.dropped_bytes
        data = self.path.read_bytes()
        Path(f"{self.path}.torn-{valid}").write_bytes(data[valid:valid + dropped])
        with open(self.path, "r+b") as fh:
            fh.truncate(valid)
            fh.flush()
            os.fsync(fh.fileno())

    def _room(self, n: int) -> None:
        """At least `n` bytes past the end, allocated (no write through the map can then fail
        for want of disk) and zero-filled, and AHEAD more."""
        if self._map is not None and self.end + n <= self._size:
            return
        size = self.end + n + AHEAD
        if self._map is not None:
            self._map.close()
            self._map = None
        os.posix_fallocate(self._fd, 0, size)  # zeros from the old end on: cut at close or never written
        os.ftruncate(self._fd, size)
        if self.fsync:
            os.fsync(self._fd)
        self._map = mmap.mmap(self._fd, size)
        self._size = size

    def ready(self) -> None:
        """Fault in, for writing, the pages the next frames go to (call it between inputs): the first
        write to a page of the map, and the first after the kernel wrote it back, is a page fault."""
        m, end = self._map, self.end
        if m is None:
            return
        page = end - end % mmap.PAGESIZE
        for off in (end, page + mmap.PAGESIZE):
            if off < self._size:
                m[off] = m[off]  # the byte it holds: a zero past the end, a frame's own byte before it

    def append(self, rec: WalRecord) -> None:
        """Write one record; it is in the kernel (and on disk with fsync) when this returns."""
        payload = _encoder.encode(rec)
        self._write(_HEAD.pack(len(payload), zlib.crc32(payload)), payload)
        self.appended += 1

    def append_many(self, recs: Iterable[WalRecord]) -> None:
        """Write several records at once."""
        frames = [encode_frame(r) for r in recs]
        if frames:
            self._write(b"".join(frames))
            self.appended += len(frames)

    def _write(self, head: bytes, payload: bytes = b"") -> None:
        """Copy `head` and then `payload` (one frame, or whole frames in `head`) to the end."""
        n = len(head) + len(payload)
        try:
            if self.end + n > self._size:
                self._room(n)
            start = self.end
            m = self._map
            m[start:start + len(head)] = head
            if payload:
                m[start + len(head):start + n] = payload
            if self.fsync:
                page = start - start % mmap.PAGESIZE
                m.flush(page, start + n - page)
            self.end = start + n
        except (OSError, ValueError) as exc:
            raise WalWriteFailed(f"WAL_WRITE_FAILED: path={self.path} error={exc!r}") from exc

    def close(self) -> None:
        """Unmap and cut the zero fill off: a closed log ends with its last frame."""
        if self._fd < 0:
            return
        try:
            if self._map is not None:
                if self.fsync:
                    self._map.flush()
                self._map.close()
                self._map = None
            os.ftruncate(self._fd, self.end)
            if self.fsync:
                os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "WriteAheadLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- recovery ------------------------------------------------------------------

ParamsLookup = Union[Mapping[str, PairParams], Callable[[str], PairParams | None], None]


@dataclass
class RecoveredState:
    """The result of replaying a log: open trades and what to do about their orders."""

    trades: dict[str, PairTrade]  # open trades (BROKEN included), by trade id
    next_trade_n: int
    in_doubt: tuple[OrderRequest, ...]  # sent, outcome unknown: ask their status
    to_send: tuple[OrderRequest, ...]  # decided but never logged as sent: send them now
    closed: dict[str, str] = field(default_factory=dict)  # settled trades: id -> state
    scan: ScanReport = ScanReport(records=0, valid_bytes=0)
    errors: tuple[str, ...] = ()
    halted: bool = False  # a Halted record was replayed
    sent_ids: frozenset[str] = frozenset()  # every cl_ord_id with an OrderSent record

    def resume(self, now_ns: int) -> list[tuple[str, Action]]:
        """Resume every open trade (log ``Resumed(now_ns)`` first); (trade_id, action) pairs."""
        out: list[tuple[str, Action]] = []
        for trade_id, trade in self.trades.items():
            unsent = {r.cl_ord_id for r in trade.live_orders() if r.cl_ord_id not in self.sent_ids}
            out.extend((trade_id, a) for a in trade.resume(now_ns, unsent))
        return out


def _lookup(params_for_pair: ParamsLookup, pair: str) -> PairParams | None:
    if params_for_pair is None:
        return None
    if callable(params_for_pair):
        return params_for_pair(pair)
    return params_for_pair.get(pair)


def recover(path: str | os.PathLike[str], params_for_pair: ParamsLookup = None) -> RecoveredState:
    """Rebuild the open pair trades of the log at `path` (which is not modified)."""
    records, scan = read_records(path)
    return recover_records(records, params_for_pair, scan)


def recover_records(records: Iterable[WalRecord], params_for_pair: ParamsLookup = None,
                    scan: ScanReport | None = None) -> RecoveredState:
    """Replay `records` through fresh machines, order actions suppressed.

    Logged params win over `params_for_pair`, which is only used for records without them.
    """
    trades: dict[str, PairTrade] = {}
    sent: set[str] = set()
    errors: list[str] = []
    closed: dict[str, str] = {}
    next_n = 1
    halted = False
    for rec in records:
        if isinstance(rec, OrderSent):
            sent.add(rec.order.cl_ord_id)
        elif isinstance(rec, ReportApplied):
            t = trades.get(rec.trade_id)
            if t is not None:
                t.on_report(rec.report, rec.now_ns)
        elif isinstance(rec, TimerFired):
            t = trades.get(rec.trade_id)
            if t is not None:
                t.on_timer(rec.now_ns)
        elif isinstance(rec, TradeOpened):
            n = trade_number(rec.trade_id)
            if n is not None:
                next_n = max(next_n, n + 1)
            params = rec.params or _lookup(params_for_pair, rec.signal.pair)
            if params is None:
                errors.append(f"WAL_NO_PARAMS: trade_id={rec.trade_id} pair={rec.signal.pair}")
                continue
            try:
                t = PairTrade(rec.trade_id, rec.signal, params)
            except ValueError as exc:
                errors.append(f"WAL_BAD_TRADE: trade_id={rec.trade_id} why={exc}")
                continue
            t.start(rec.now_ns)
            trades[rec.trade_id] = t
        elif isinstance(rec, Halted):
            halted = True
            for tid, t in trades.items():
                if not t.is_done and (not rec.trade_id or rec.trade_id == tid):
                    t.halt(rec.now_ns, rec.reason or "RISK_HALT: level=HALTED")
        elif isinstance(rec, Resumed):
            for t in trades.values():
                if not t.is_done:
                    unsent = {r.cl_ord_id for r in t.live_orders() if r.cl_ord_id not in sent}
                    t.resume(rec.now_ns, unsent)
        elif isinstance(rec, TradeClosed):
            closed[rec.trade_id] = rec.state
        elif isinstance(rec, IdFloor):
            next_n = max(next_n, rec.next_n)
    open_trades = {tid: t for tid, t in trades.items() if not t.is_done}
    for tid, t in trades.items():
        if t.is_done:
            closed[tid] = t.state.value
    live = [r for t in open_trades.values() for r in t.live_orders()]
    return RecoveredState(
        trades=open_trades,
        next_trade_n=next_n,
        in_doubt=tuple(r for r in live if r.cl_ord_id in sent),
        to_send=tuple(r for r in live if r.cl_ord_id not in sent),
        closed=closed,
        scan=scan or ScanReport(records=0, valid_bytes=0),
        errors=tuple(errors),
        halted=halted,
        sent_ids=frozenset(sent),
    )


def _trade_of(rec: WalRecord) -> str:
    if isinstance(rec, (OrderSent, ChildSent)):
        return rec.order.trade_id
    if isinstance(rec, (TradeOpened, ReportApplied, TimerFired, TradeClosed)):
        return rec.trade_id
    if isinstance(rec, Halted):
        return rec.trade_id
    return ""


def compact(path: str | os.PathLike[str], params_for_pair: ParamsLookup = None) -> ScanReport:
    """Rewrite the log keeping only the records of open trades, and every stream event (call
    before opening it).

    The result replays to the same open trades, the same next trade number and the same
    execution stream (a follower may ask for any of it). The file is
    replaced atomically; a damaged tail is dropped (and copied aside) as on open.
    """
    path = Path(path)
    records, scan = read_records(path)
    state = recover_records(records, params_for_pair, scan)
    keep_ids = set(state.trades)
    kept: list[WalRecord] = [IdFloor(next_n=state.next_trade_n)]
    for rec in records:
        if isinstance(rec, IdFloor):
            continue
        tid = _trade_of(rec)
        if tid == "" or tid in keep_ids:
            kept.append(rec)
    if scan.dropped_bytes:
        data = path.read_bytes()
        Path(f"{path}.torn-{scan.valid_bytes}").write_bytes(data[scan.valid_bytes:])
    tmp = path.with_name(path.name + ".compact")
    with open(tmp, "wb") as fh:
        fh.write(MAGIC)
        for rec in kept:
            fh.write(encode_frame(rec))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return ScanReport(records=len(kept), valid_bytes=path.stat().st_size)
