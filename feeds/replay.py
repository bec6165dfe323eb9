"""Recorded-data replay: Databento DBN files and CSV top-of-book files.

Both adapters yield ``(due_ns, TopOfBook)`` (see `feeds.adapter`), open and
check their file at construction (a missing, unreadable or corrupt file
raises `ReplayError` naming the path and why) and afterwards never raise on
a bad record: it is skipped and counted in ``stats.skipped`` by reason code.

Instrument mapping (both formats): with a non-empty ``symbols`` map (from
`ReplayCfg.symbols`: venue symbol or instrument id as text -> instrument
key) a record whose symbol is not in it is skipped (``UNMAPPED_SYMBOL``);
with an empty map the recorded symbol itself is the instrument key. Given
the config's `instruments`, a record of a configured instrument carries
that instrument's `InstrumentCfg.symbol` (what the rest of the system knows
it by; otherwise the recorded symbol) and its ``fx`` flag.

DBN (``.dbn.zst``, or uncompressed ``.dbn``): zstd-decompressed with
`zstandard` as a stream and decoded by ``databento_dbn.DBNDecoder``. MBP-1,
TBBO, BBO-1s and BBO-1m records become top-of-book quotes; prices are
fixed-point integers scaled by 1e-9. The raw symbol of a record's
instrument id comes from the file metadata's symbology mappings (by date)
or from `SymbolMappingMsg` records in the stream. The due time is the
record's ``ts_recv`` (Databento's index time: the capture time for MBP-1 and
TBBO, the end of the sampling interval for BBO), falling back to
``ts_event``; the quote's venue time is ``ts_event`` and its ``seq`` the
venue's ``sequence``. Skip reasons: ``UNDEF_PRICE`` (a side's price is the
INT64_MAX sentinel), ``CROSSED_BOOK`` (bid > ask), ``UNMAPPED_SYMBOL``,
``UNSUPPORTED_RECORD`` (other record kinds), ``DECODE_ERROR`` (corrupt data
mid-file: the rest of the file is skipped), ``TRUNCATED`` (bytes left
over at the end).

CSV (``.csv`` or ``.csv.gz``, UTF-8): a header row naming at least the
columns ``ts_event,symbol,bid_px,ask_px,bid_sz,ask_sz`` (any order, extra
columns ignored), then one row per top of book. ``ts_event`` is either an
integer (UTC ns since the epoch) or ISO 8601 with up to 9 fractional
digits and an optional ``Z`` / ``+HH:MM`` offset (no offset means UTC),
e.g. ``2024-07-01T23:58:01.218218853Z``. Prices are decimals > 0, sizes
numbers >= 0. The due time and venue time are ``ts_event``; ``seq`` is the
row's line number. Skip reasons: ``BAD_ROW`` (wrong column count or
unparseable or non-UTF-8 line), ``BAD_TS``, ``BAD_PRICE``, ``BAD_SIZE``,
``CROSSED_BOOK``, ``UNMAPPED_SYMBOL``. Blank lines are ignored.
"""

from __future__ import annotations

import bisect
import calendar
import csv
import datetime as dt
import gzip
import io
import math
import re
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

import databento_dbn as dbn
import zstandard

from configs.schema import InstrumentCfg, ReplayCfg
from feeds.adapter import FeedStats, PacedFeed
from feeds.book import TopOfBook

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
DBN_MAGIC = b"DBN"
GZIP_MAGIC = b"\x1f\x8b"
CSV_COLUMNS = ("ts_event", "symbol", "bid_px", "ask_px", "bid_sz", "ask_sz")
QUOTE_SCHEMAS = frozenset({dbn.Schema.MBP_1, dbn.Schema.TBBO, dbn.Schema.BBO_1S, dbn.Schema.BBO_1M})

_UNDEF_PX = dbn.UNDEF_PRICE
_UNDEF_TS = dbn.UNDEF_TIMESTAMP
_SCALE = float(dbn.FIXED_PRICE_SCALE)
_NS_PER_DAY = 86_400_000_000_000
_CHUNK = 1 << 16


class ReplayError(Exception):
    """A recording that cannot be replayed at all: missing, unreadable or corrupt."""

    def __init__(self, path: str | Path, why: str) -> None:
        self.path = str(path)
        self.why = why
        super().__init__(f"REPLAY_FILE_INVALID: path={self.path} why={why}")


# --- DBN -----------------------------------------------------------------------


class _Symbology:
    """instrument id -> raw symbol, by date when a mapping changes over the file's span."""

    def __init__(self) -> None:
        self._by_id: dict[int, list[tuple[int, int, str]]] = {}  # (start_day, end_day, raw)
        self._alias: dict[int, str] = {}

    def add_interval(self, iid: int, start_day: int, end_day: int, raw: str) -> None:
        self._by_id.setdefault(iid, []).append((start_day, end_day, raw))
        self._by_id[iid].sort()

    def set_live(self, iid: int, raw: str, alias: str) -> None:
        self._by_id[iid] = [(-(2**40), 2**40, raw)]
        if alias and alias != raw:
            self._alias[iid] = alias

    def names(self, iid: int, ts_ns: int) -> tuple[str, str]:
        """(raw symbol, alias) of an id at a time; the id as text when unmapped."""
        spans = self._by_id.get(iid)
        alias = self._alias.get(iid, "")
        if not spans:
            return str(iid), alias
        if len(spans) == 1:
            return spans[0][2], alias
        day = ts_ns // _NS_PER_DAY
        i = bisect.bisect_right(spans, (day, 2**41, "")) - 1
        if i >= 0 and spans[i][0] <= day < spans[i][1]:
            return spans[i][2], alias
        return spans[0][2], alias

    def single(self, iid: int) -> bool:
        return len(self._by_id.get(iid, ())) <= 1


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def _day(d: dt.date) -> int:
    return d.toordinal() - dt.date(1970, 1, 1).toordinal()


class _Replay:
    """What every recorded-feed adapter holds: the file, the venue, the symbol mapping, its counters."""

    def __init__(self, path: str | Path, venue: str, symbols: Mapping[str, str] | None = None,
                 instruments: Mapping[str, InstrumentCfg] | None = None) -> None:
        self.path = str(path)
        self.venue = venue
        self.symbols = dict(symbols or {})
        self.stats = FeedStats()
        self._cfg_symbol = {k: i.symbol for k, i in (instruments or {}).items()}
        self._cfg_fx = frozenset(k for k, i in (instruments or {}).items() if i.fx)


class DbnReplay(_Replay):
    """Top-of-book replay of a Databento DBN file (MBP-1, TBBO, BBO-1s, BBO-1m)."""

    def __init__(self, path: str | Path, venue: str, symbols: Mapping[str, str] | None = None,
                 instruments: Mapping[str, InstrumentCfg] | None = None) -> None:
        super().__init__(path, venue, symbols, instruments)
        with self._open_stream() as stream:
            meta, _ = self._read_metadata(stream, dbn.DBNDecoder())
        self.metadata: dbn.Metadata = meta
        self.schema: str = str(meta.schema) if meta.schema is not None else "mixed"
        if meta.schema is not None and meta.schema not in QUOTE_SCHEMAS:
            supported = ", ".join(sorted(str(s) for s in QUOTE_SCHEMAS))
            raise ReplayError(self.path, f"schema {meta.schema} carries no top of book (supported: {supported})")

    def records(self) -> Iterator[tuple[int, TopOfBook]]:
        """One pass over the file: (ts_recv, quote) per usable record."""
        stats = self.stats
        venue = self.venue
        symbols = self.symbols
        symbology = self._symbology()
        cfg_symbol, cfg_fx = self._cfg_symbol, self._cfg_fx
        resolved: dict[int, tuple[str, str | None]] = {}  # id -> (raw, instrument) for single-mapped ids
        mbp1, bbo, mapping_msg, metadata_cls = dbn.MBP1Msg, dbn.BBOMsg, dbn.SymbolMappingMsg, dbn.Metadata
        with self._open_stream() as stream:
            decoder = dbn.DBNDecoder()
            first = True
            while True:
                try:
                    if first:
                        _, recs = self._read_metadata(stream, decoder)
                        first = False
                    else:
                        chunk = stream.read(_CHUNK)
                        if not chunk:
                            break
                        decoder.write(chunk)
                        recs = decoder.decode()
                except (dbn.DBNError, zstandard.ZstdError, OSError, ValueError, ReplayError) as exc:
                    stats.skip("DECODE_ERROR", f"DECODE_ERROR: path={self.path} why={exc}")
                    return
                for r in recs:
                    cls = type(r)
                    if cls is mbp1 or cls is bbo:
                        bpx = r.bid_px_00
                        apx = r.ask_px_00
                        if bpx == _UNDEF_PX or apx == _UNDEF_PX:
                            stats.skip("UNDEF_PRICE", f"UNDEF_PRICE: instrument_id={r.instrument_id} ts={r.ts_event}")
                            continue
                        if bpx > apx:
                            stats.skip("CROSSED_BOOK", f"CROSSED_BOOK: instrument_id={r.instrument_id} ts={r.ts_event}")
                            continue
                        iid = r.instrument_id
                        hit = resolved.get(iid)
                        ts_event = r.ts_event
                        if hit is None:
                            raw, alias = symbology.names(iid, ts_event)
                            inst = _instrument(symbols, raw, alias, iid)
                            hit = (raw, inst)
                            if symbology.single(iid):
                                resolved[iid] = hit
                        raw, inst = hit
                        if inst is None:
                            stats.skip("UNMAPPED_SYMBOL", f"UNMAPPED_SYMBOL: symbol={raw} instrument_id={iid}")
                            continue
                        sym = cfg_symbol.get(inst, raw)
                        due = r.ts_recv
                        if due == _UNDEF_TS:
                            due = ts_event
                        stats.records += 1
                        yield due, TopOfBook(
                            venue=venue, instrument=inst, symbol=sym, bid=bpx / _SCALE, ask=apx / _SCALE,
                            bid_size=float(r.bid_sz_00), ask_size=float(r.ask_sz_00), ts_ns=ts_event,
                            seq=r.sequence, fx=inst in cfg_fx,
                        )
                    elif cls is mapping_msg:
                        out_sym, in_sym = r.stype_out_symbol, r.stype_in_symbol
                        if r.stype_out == dbn.SType.INSTRUMENT_ID:
                            out_sym, in_sym = in_sym, ""
                        symbology.set_live(r.instrument_id, out_sym, in_sym)
                        resolved.pop(r.instrument_id, None)
                    elif cls is not metadata_cls:
                        stats.skip("UNSUPPORTED_RECORD", f"UNSUPPORTED_RECORD: kind={cls.__name__}")
            leftover = len(decoder.buffer())
            if leftover:
                stats.skip("TRUNCATED", f"TRUNCATED: path={self.path} bytes={leftover}")

    # --- helpers ---

    def _open_stream(self) -> IO[bytes]:
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - closed by the returned stream
        except OSError as exc:
            raise ReplayError(self.path, f"cannot open: {exc.strerror or exc}") from None
        head = fh.read(4)
        fh.seek(0)
        if head.startswith(ZSTD_MAGIC):
            return zstandard.ZstdDecompressor().stream_reader(fh, closefd=True, read_across_frames=True)
        if head.startswith(DBN_MAGIC):
            return fh
        fh.close()
        raise ReplayError(self.path, f"not a DBN file: starts with {head!r}, neither zstd nor DBN magic")

    def _read_metadata(self, stream: IO[bytes], decoder: dbn.DBNDecoder) -> tuple[dbn.Metadata, list]:
        """Feed the decoder the DBN header and metadata only; (metadata, [metadata])."""
        try:
            head = _read_exact(stream, 8)
            if len(head) < 8:
                raise ReplayError(self.path, "truncated: the file ends before its DBN metadata")
            if not head.startswith(DBN_MAGIC):
                raise ReplayError(self.path, f"corrupt DBN data: no DBN header (starts with {head[:4]!r})")
            length = int.from_bytes(head[4:8], "little")
            body = _read_exact(stream, length)
            if len(body) < length:
                raise ReplayError(self.path, "truncated: the file ends inside its DBN metadata")
            decoder.write(head + body)
            recs = decoder.decode()
        except zstandard.ZstdError as exc:
            raise ReplayError(self.path, f"corrupt zstd data: {exc}") from None
        except dbn.DBNError as exc:
            raise ReplayError(self.path, f"corrupt DBN data: {exc}") from None
        except OSError as exc:
            raise ReplayError(self.path, f"cannot read: {exc}") from None
        if not recs or not isinstance(recs[0], dbn.Metadata):
            raise ReplayError(self.path, "corrupt DBN data: no metadata at the start")
        return recs[0], recs

    def _symbology(self) -> _Symbology:
        sym = _Symbology()
        meta = self.metadata
        out_is_id = meta.stype_out == dbn.SType.INSTRUMENT_ID
        for raw, intervals in (meta.mappings or {}).items():
            for iv in intervals:
                target = iv["symbol"]
                if out_is_id and target.isdigit():
                    sym.add_interval(int(target), _day(iv["start_date"]), _day(iv["end_date"]), raw)
                elif raw.isdigit():
                    sym.add_interval(int(raw), _day(iv["start_date"]), _day(iv["end_date"]), target)
        return sym


def _instrument(symbols: Mapping[str, str], raw: str, alias: str, iid: int) -> str | None:
    if not symbols:
        return raw
    inst = symbols.get(raw)
    if inst is None and alias:
        inst = symbols.get(alias)
    if inst is None:
        inst = symbols.get(str(iid))
    return inst


# --- CSV -----------------------------------------------------------------------

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_ts_ns(text: str) -> int | None:
    """UTC ns from integer ns or ISO 8601 (see module doc); None if unparseable."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    m = _ISO.match(text)
    if m is None:
        return None
    y, mo, d, h, mi, s, frac, tz = m.groups()
    try:
        dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s))
    except ValueError:
        return None
    secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        secs -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return secs * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0)


def _number(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


class CsvReplay(_Replay):
    """Top-of-book replay of a CSV file ``ts_event,symbol,bid_px,ask_px,bid_sz,ask_sz``."""

    def __init__(self, path: str | Path, venue: str, symbols: Mapping[str, str] | None = None,
                 instruments: Mapping[str, InstrumentCfg] | None = None) -> None:
        super().__init__(path, venue, symbols, instruments)
        try:
            with self._open_binary() as fh:
                head = fh.read(_CHUNK)
        except (OSError, EOFError, zlib.error) as exc:
            raise ReplayError(self.path, f"cannot read: {exc}") from None
        first, _, rest = head.partition(b"\n")
        try:
            header_line = first.decode("utf-8").lstrip("\ufeff")
        except UnicodeDecodeError as exc:
            raise ReplayError(self.path, f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
        # a stray bad byte is one bad row; a binary file is an error
        if b"\x00" in head or rest.decode("utf-8", errors="replace").count("\ufffd") > max(8, len(rest) // 100):
            raise ReplayError(self.path, "not a text file: NUL or many non-UTF-8 bytes in its first rows")
        if not header_line.strip():
            raise ReplayError(self.path, "empty file: no header row")
        header = [c.strip() for c in next(csv.reader([header_line]))]
        missing = [c for c in CSV_COLUMNS if c not in header]
        if missing:
            raise ReplayError(
                self.path,
                f"header must name {','.join(CSV_COLUMNS)}: missing {','.join(missing)} (got {','.join(header)})",
            )
        self._cols = tuple(header.index(c) for c in CSV_COLUMNS)
        self._width = len(header)

    def records(self) -> Iterator[tuple[int, TopOfBook]]:
        """One pass over the file: (ts_event, quote) per good row."""
        stats = self.stats
        venue, symbols = self.venue, self.symbols
        i_ts, i_sym, i_bid, i_ask, i_bsz, i_asz = self._cols
        width = self._width
        with self._open_text(errors="replace") as fh:
            reader = csv.reader(fh)
            try:
                next(reader)
            except (StopIteration, csv.Error, OSError, EOFError, zlib.error):
                return
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    stats.skip("BAD_ROW", f"BAD_ROW: line={reader.line_num} why={exc}")
                    continue
                except (OSError, EOFError, zlib.error) as exc:
                    stats.skip("DECODE_ERROR", f"DECODE_ERROR: line={reader.line_num} why={exc}")
                    return
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != width:
                    stats.skip("BAD_ROW", f"BAD_ROW: line={line} columns={len(row)} want={width}")
                    continue
                if any("\ufffd" in f for f in row):
                    stats.skip("BAD_ROW", f"BAD_ROW: line={line} why=not_utf8")
                    continue
                ts = parse_ts_ns(row[i_ts])
                if ts is None:
                    stats.skip("BAD_TS", f"BAD_TS: line={line} ts_event={row[i_ts][:40]}")
                    continue
                bid, ask = _number(row[i_bid]), _number(row[i_ask])
                if bid is None or ask is None or bid <= 0.0 or ask <= 0.0:
                    stats.skip("BAD_PRICE", f"BAD_PRICE: line={line} bid_px={row[i_bid][:20]} ask_px={row[i_ask][:20]}")
                    continue
                bsz, asz = _number(row[i_bsz]), _number(row[i_asz])
                if bsz is None or asz is None or bsz < 0.0 or asz < 0.0:
                    stats.skip("BAD_SIZE", f"BAD_SIZE: line={line} bid_sz={row[i_bsz][:20]} ask_sz={row[i_asz][:20]}")
                    continue
                if bid > ask:
                    stats.skip("CROSSED_BOOK", f"CROSSED_BOOK: line={line} bid_px={bid} ask_px={ask}")
                    continue
                sym = row[i_sym].strip()
                inst = symbols.get(sym) if symbols else sym
                if not inst:
                    stats.skip("UNMAPPED_SYMBOL", f"UNMAPPED_SYMBOL: line={line} symbol={sym[:40]}")
                    continue
                stats.records += 1
                yield ts, TopOfBook(
                    venue=venue, instrument=inst, symbol=self._cfg_symbol.get(inst, sym), bid=bid, ask=ask,
                    bid_size=bsz, ask_size=asz, ts_ns=ts, seq=line, fx=inst in self._cfg_fx,
                )

    def _open_binary(self) -> IO[bytes]:
        try:
            with open(self.path, "rb") as probe:
                gz = probe.read(2) == GZIP_MAGIC
            return gzip.open(self.path, "rb") if gz else open(self.path, "rb")  # noqa: SIM115
        except OSError as exc:
            raise ReplayError(self.path, f"cannot open: {exc.strerror or exc}") from None

    def _open_text(self, *, errors: str) -> IO[str]:
        return io.TextIOWrapper(self._open_binary(), encoding="utf-8", errors=errors, newline="")


# --- config entry points -----------------------------------------------------------


def open_replay(venue: str, cfg: ReplayCfg, base_dir: str | Path | None = None,
                instruments: Mapping[str, InstrumentCfg] | None = None) -> DbnReplay | CsvReplay:
    """The adapter a venue's `ReplayCfg` describes; a relative path is taken from `base_dir`.

    Pass ``Config.instruments`` as `instruments` so quotes carry the configured venue symbols.
    """
    path = Path(cfg.path)
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if cfg.format == "csv":
        return CsvReplay(path, venue, cfg.symbols, instruments)
    return DbnReplay(path, venue, cfg.symbols, instruments)


def replay_feed(venue: str, cfg: ReplayCfg, base_dir: str | Path | None = None,
                instruments: Mapping[str, InstrumentCfg] | None = None) -> PacedFeed:
    """`open_replay` wrapped in a `PacedFeed` with the config's pace, speed and loop."""
    return PacedFeed(open_replay(venue, cfg, base_dir, instruments), pace=cfg.pace, speed=cfg.speed, loop=cfg.loop)
