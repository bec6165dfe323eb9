"""FIX market data: the subscription we send and the top of book we keep from the answers.

Pure: no sockets, no QuickFIX session. The ingest actor hands `MdBook.on_message`
the text QuickFIX received (parsed by `wire.Fields`) and publishes what comes back.

Request (`market_data_request`, MarketDataRequest 35=V), one per instrument on
every logon: 262 MDReqID ``<venue>-<instrument>-<n>``, 263=1 (snapshot and
updates), 264 MarketDepth, 265=0, a 267 group asking for bids (269=0) and
offers (269=1), a 146 group with the instrument's 55 Symbol (and 207
SecurityExchange when the venue wants it).

Answers, per instrument (the config's key; `TopOfBook.symbol` is the instrument's
configured symbol, which names the ``md.<venue>.<symbol>`` topic):

- W (snapshot) replaces both sides: the best bid (highest 270) and the best offer
  (lowest 270), each with the summed 271 size at that price. No entries of a side:
  that side is unknown.
- X (incremental): each entry (279 MDUpdateAction 0 new / 1 change / 2 delete,
  269 side, 55 (+207) or else the message's 262 for the instrument) sets or
  empties one side. Entries with MDEntryPositionNo (290) beyond 1 are deeper
  levels and do not touch the top. One message gives at most one record per
  instrument, after all its entries are applied.
- A record goes out only when both sides are known and the book is not crossed
  (bid > ask; a locked book, bid == ask, goes out).
- Venue time: 272 MDEntryDate + 273 MDEntryTime of the entries (the latest of
  those applied), with 52 SendingTime standing in for a missing date or time.
  `TopOfBook.seq` is the message's 34 MsgSeqNum.
- Y (MarketDataRequestReject), a BusinessMessageReject (j) of a V, or a
  session-level Reject (3) of a V: an `MdReject`.
- A message resent after a gap (43 PossDupFlag=Y) is old market data: dropped.

What does not map is dropped with a stable reason code (`MdDrop.code`) and the
book stays safe: a bad entry leaves its side unknown, a bad snapshot leaves the
instrument's book empty, so no stale or half-applied price is ever published.
Other application messages (news, status, ...) are ignored, not errors.

The book keeps the top only. Asking for depth > 1 works when the venue's
updates carry MDEntryPositionNo (or only touch the top).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Iterable, TypeVar

import msgspec

from feeds.book import TopOfBook
from feeds.fix import wire
from feeds.fix.venue import FixSymbols, VenueSymbol

if TYPE_CHECKING:
    from configs.schema import Config

_T = TypeVar("_T")

POSS_DUP_FLAG = 43
MD_ENTRY_DATE = 272
MD_ENTRY_TIME = 273
MD_ENTRY_POSITION_NO = 290
BUSINESS_REJECT_REF_ID = 379
BID, OFFER = "0", "1"
NEW, CHANGE, DELETE = "0", "1", "2"

# 281 MDReqRejReason (FIX 4.2 and 4.4)
REJECT_REASONS = {
    "0": "UNKNOWN_SYMBOL",
    "1": "DUPLICATE_MDREQID",
    "2": "INSUFFICIENT_BANDWIDTH",
    "3": "INSUFFICIENT_PERMISSIONS",
    "4": "UNSUPPORTED_SUBSCRIPTION_REQUEST_TYPE",
    "5": "UNSUPPORTED_MARKET_DEPTH",
    "6": "UNSUPPORTED_MD_UPDATE_TYPE",
    "7": "UNSUPPORTED_AGGREGATED_BOOK",
    "8": "UNSUPPORTED_MD_ENTRY_TYPE",
    "9": "UNSUPPORTED_TRADING_SESSION_ID",
    "A": "UNSUPPORTED_SCOPE",
    "B": "UNSUPPORTED_OPEN_CLOSE_SETTLE_FLAG",
    "C": "UNSUPPORTED_MD_IMPLICIT_DELETE",
}

_DAY_NS = wire.DAY_NS


class MdReject(msgspec.Struct, frozen=True, kw_only=True):
    """The venue refused a market-data subscription (Y, or a reject of our V)."""

    venue: str
    md_req_id: str  # "" when the reject does not name it (session-level Reject)
    instrument: str  # config key; "" when the request id is not one of ours
    symbol: str  # the wire symbol (55) asked for; "" when unknown
    reason_code: str  # 281 (Y), 380 (j) or 373 (3); "" when absent
    reason: str  # UNKNOWN_SYMBOL, ..., BUSINESS_REJECT_<n>, SESSION_REJECT_<n>, UNSPECIFIED
    text: str  # 58 Text, cut to 200 characters

    def describe(self) -> str:
        return (f"FIX_MD_REJECTED: venue={self.venue} instrument={self.instrument or '?'} "
                f"symbol={self.symbol or '?'} md_req_id={self.md_req_id or '?'} reason={self.reason}"
                + (f" text={self.text!r}" if self.text else ""))


class MdDrop(msgspec.Struct, frozen=True, kw_only=True):
    """A message (or one entry of it) that did not map, with a stable reason code."""

    code: str  # FIX_MD_UNKNOWN_SYMBOL, FIX_MISSING_TAG, FIX_MD_CROSSED, ...
    detail: str  # `CODE: key=value ...`


class MdResult(msgspec.Struct, kw_only=True):
    """What one inbound message gave."""

    quotes: list[TopOfBook] = []
    drops: list[MdDrop] = []
    reject: MdReject | None = None
    ignored: bool = False  # not market data (news, status, ...): nothing to do


class _Bad(wire.FixError):
    """An entry or message that does not map; `code` is the reason counted."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


class _Top:
    __slots__ = ("bid", "bid_size", "ask", "ask_size")

    def __init__(self) -> None:
        self.bid: float | None = None
        self.bid_size = 0.0
        self.ask: float | None = None
        self.ask_size = 0.0

    def clear(self) -> None:
        self.bid = self.ask = None
        self.bid_size = self.ask_size = 0.0


def market_data_request(begin_string: str, md_req_id: str, symbol: VenueSymbol, depth: int = 1, *,
                        subscribe: bool = True) -> object:
    """A MarketDataRequest (35=V) for one instrument, as a `quickfix.Message` ready to send.

    `subscribe=False` builds the unsubscribe (263=2) of an earlier request id.
    """
    from feeds.fix.session import add_group, new_message  # only here: the mapping below runs without QuickFIX

    m = new_message(begin_string, "V", [(wire.MD_REQ_ID, md_req_id),
                                        (wire.SUBSCRIPTION_REQUEST_TYPE, "1" if subscribe else "2"),
                                        (wire.MARKET_DEPTH, str(int(depth))), (wire.MD_UPDATE_TYPE, "0")])
    for side in (BID, OFFER):
        add_group(m, wire.NO_MD_ENTRY_TYPES, wire.MD_ENTRY_TYPE, [(wire.MD_ENTRY_TYPE, side)])
    sym = [(wire.SYMBOL, symbol.symbol)]
    if symbol.security_exchange:
        sym.append((wire.SECURITY_EXCHANGE, symbol.security_exchange))
    add_group(m, wire.NO_RELATED_SYM, wire.SYMBOL, sym)
    return m


def _code(exc: wire.FixError) -> str:
    """The reason code of a FixError (`CATEGORY_CONDITION: ...` -> `CATEGORY_CONDITION`)."""
    return getattr(exc, "code", "") or str(exc).split(":", 1)[0] or "FIX_MALFORMED"


def _md_time(parse: Callable[[str, int], _T], value: str, tag: int) -> _T:
    """A FIX time field read by `parse` (feeds.fix.wire); a bad one is this feed's FIX_MD_BAD_TIME drop."""
    try:
        return parse(value, tag)
    except wire.FixError as exc:
        raise _Bad("FIX_MD_BAD_TIME", str(exc).replace("FIX_BAD_TIME", "FIX_MD_BAD_TIME", 1)) from None


def sending_time_ns(value: str) -> tuple[int, int]:
    """52 SendingTime ``YYYYMMDD-HH:MM:SS[.fff]`` -> (days since epoch, ns since midnight)."""
    return _md_time(wire.timestamp_days_ns, value, wire.SENDING_TIME)


def _ns(day_and_time: tuple[int, int]) -> int:
    return day_and_time[0] * _DAY_NS + day_and_time[1]


class MdBook:
    """Top of book per instrument of one FIX venue, kept from W/X messages; MDReqIDs we issued.

    `symbols`: the venue's instruments as the wire names them; `fx`: instrument keys that are
    currency pairs (published as `FxRate`). `first_req_id`: the first `<n>` of the request ids
    (the ingest actor starts from the wall clock in ms, so ids never repeat across restarts).
    """

    def __init__(self, venue: str, symbols: Iterable[VenueSymbol], *, fx: Iterable[str] = (),
                 first_req_id: int = 1) -> None:
        self.venue = venue
        self.by_instrument: dict[str, VenueSymbol] = {vs.instrument: vs for vs in symbols}
        self._by_symbol: dict[str, list[VenueSymbol]] = {}
        for vs in self.by_instrument.values():
            self._by_symbol.setdefault(vs.symbol, []).append(vs)
        self.fx = frozenset(fx)
        self._next_req = first_req_id
        self.requests: dict[str, str] = {}  # MDReqID -> instrument (this logon's and the previous one's)
        self._older: dict[str, str] = {}
        self._tops: dict[str, _Top] = {k: _Top() for k in self.by_instrument}
        # counters (the actor's `detail()` shows them)
        self.quotes = 0
        self.rejected = 0
        self.ignored = 0
        self.bad: dict[str, int] = {}

    @classmethod
    def from_config(cls, cfg: "Config", venue: str, *, first_req_id: int = 1) -> "MdBook":
        syms = FixSymbols(cfg, venue)
        fx = [k for k, i in cfg.venue_instruments(venue).items() if i.fx]
        return cls(venue, syms.by_instrument.values(), fx=fx, first_req_id=first_req_id)

    # ---- requests ------------------------------------------------------------------

    def new_logon(self) -> None:
        """A (re)logon: every book starts empty; request ids of the logon before last are forgotten."""
        self._older = self.requests
        self.requests = {}
        self.reset()

    def subscribe(self, instrument: str) -> str:
        """A fresh MDReqID for `instrument` (remembered, so answers that carry only 262 map)."""
        if instrument not in self.by_instrument:
            raise KeyError(f"FIX_MD_UNKNOWN_INSTRUMENT: venue={self.venue} instrument={instrument}")
        req = f"{self.venue}-{instrument}-{self._next_req}"
        self._next_req += 1
        self.requests[req] = instrument
        return req

    def instrument_of(self, md_req_id: str) -> str | None:
        return self.requests.get(md_req_id) or self._older.get(md_req_id)

    def reset(self, instrument: str | None = None) -> None:
        """Forget the top of book (all instruments, or one): nothing is published until both sides return."""
        for key, top in self._tops.items():
            if instrument is None or key == instrument:
                top.clear()

    def top(self, instrument: str) -> tuple[float | None, float, float | None, float]:
        """(bid, bid size, ask, ask size) as kept now; None for an unknown side."""
        t = self._tops[instrument]
        return t.bid, t.bid_size, t.ask, t.ask_size

    # ---- answers -----------------------------------------------------------------

    def on_message(self, msg: wire.Fields) -> MdResult:
        """Map one inbound message; never raises on what the venue sent."""
        mt = msg.msg_type
        try:
            if mt == "W":
                res = self._snapshot(msg)
            elif mt == "X":
                res = self._incremental(msg)
            elif mt == "Y":
                res = MdResult(reject=self._reject_y(msg))
            elif mt in ("j", "3") and msg.get(wire.REF_MSG_TYPE) == "V":
                res = MdResult(reject=self._reject_of_request(msg))
            else:
                self.ignored += 1
                return MdResult(ignored=True)
        except wire.FixError as exc:
            detail = str(exc) if isinstance(exc, _Bad) else f"{exc} msg_type={mt}"
            res = MdResult(drops=[MdDrop(code=_code(exc), detail=detail)])
        except (ValueError, OverflowError) as exc:  # a count or sequence number such as "nan" or "inf"
            res = MdResult(drops=[MdDrop(code="FIX_BAD_VALUE", detail=f"FIX_BAD_VALUE: msg_type={mt} error={exc}")])
        for d in res.drops:
            self.count_bad(d.code)
        self.quotes += len(res.quotes)
        if res.reject is not None:
            self.rejected += 1
        return res

    def count_bad(self, code: str) -> None:
        """Count a dropped message by reason code (also for what the owner dropped before mapping)."""
        self.bad[code] = self.bad.get(code, 0) + 1

    def _resolve(self, symbol: str, exchange: str, md_req_id: str) -> VenueSymbol:
        if symbol:
            found = [vs for vs in self._by_symbol.get(symbol, ())
                     if vs.security_exchange == exchange or not vs.security_exchange or not exchange]
            exact = [vs for vs in found if vs.security_exchange == exchange]
            pick = exact if len(exact) == 1 else found
            if len(pick) == 1:
                return pick[0]
            raise _Bad("FIX_MD_UNKNOWN_SYMBOL", f"FIX_MD_UNKNOWN_SYMBOL: venue={self.venue} symbol={symbol[:40]}"
                       + (f" security_exchange={exchange[:16]}" if exchange else ""))
        if md_req_id:
            inst = self.instrument_of(md_req_id)
            if inst is None:
                raise _Bad("FIX_MD_UNKNOWN_REQ_ID", f"FIX_MD_UNKNOWN_REQ_ID: venue={self.venue} md_req_id={md_req_id[:60]}")
            return self.by_instrument[inst]
        raise _Bad("FIX_MISSING_TAG", f"FIX_MISSING_TAG: tag={wire.SYMBOL} why=no_symbol_and_no_md_req_id")

    def _check_fresh(self, msg: wire.Fields) -> None:
        if msg.get(POSS_DUP_FLAG) == "Y":
            raise _Bad("FIX_MD_POSS_DUP", f"FIX_MD_POSS_DUP: msg_type={msg.msg_type} seq={msg.get(wire.MSG_SEQ_NUM)} "
                                          "why=resent market data is old")

    def _entries(self, msg: wire.Fields, first_tag: int) -> list[wire.Fields]:
        msg.need(wire.NO_MD_ENTRIES)
        out = []
        for e in msg.groups(wire.NO_MD_ENTRIES, first_tag):
            seen: set[int] = set()
            for tag, _ in e.pairs:
                if tag in seen and tag != wire.TEXT:
                    # QuickFIX without a data dictionary flattens groups: entries cannot be told apart
                    raise _Bad("FIX_MD_BAD_GROUP", f"FIX_MD_BAD_GROUP: msg_type={msg.msg_type} tag={tag} "
                                                   "why=repeated tag in one entry")
                seen.add(tag)
            out.append(e)
        n = int(msg.num(wire.NO_MD_ENTRIES))
        if n != len(out):
            raise _Bad("FIX_MD_BAD_GROUP", f"FIX_MD_BAD_GROUP: msg_type={msg.msg_type} count={n} entries={len(out)}")
        return out

    def _entry_ts(self, e: wire.Fields, sent: tuple[int, int]) -> int:
        """The entry's venue time (UTC ns); 0 when it carries neither 272 nor 273."""
        date, tod = e.get(MD_ENTRY_DATE), e.get(MD_ENTRY_TIME)
        if not date and not tod:
            return 0
        days = _md_time(wire.date_days, date, MD_ENTRY_DATE) if date else sent[0]
        ns = _md_time(wire.time_ns, tod, MD_ENTRY_TIME) if tod else sent[1]
        ts = days * _DAY_NS + ns
        if not date and ts > sent[0] * _DAY_NS + sent[1] + _DAY_NS // 2:
            ts -= _DAY_NS  # a venue time just before midnight, sent just after it
        return ts

    @staticmethod
    def _px(e: wire.Fields) -> float:
        if not e.get(wire.MD_ENTRY_PX):
            raise _Bad("FIX_MISSING_TAG", f"FIX_MISSING_TAG: tag={wire.MD_ENTRY_PX} side={e.get(wire.MD_ENTRY_TYPE)}")
        px = e.num(wire.MD_ENTRY_PX)
        if not math.isfinite(px) or px <= 0.0:
            raise _Bad("FIX_MD_BAD_PRICE", f"FIX_MD_BAD_PRICE: px={e.get(wire.MD_ENTRY_PX)[:24]} "
                                           f"side={e.get(wire.MD_ENTRY_TYPE)}")
        return px

    @staticmethod
    def _size(e: wire.Fields) -> float:
        if not e.get(wire.MD_ENTRY_SIZE):
            raise _Bad("FIX_MISSING_TAG", f"FIX_MISSING_TAG: tag={wire.MD_ENTRY_SIZE} side={e.get(wire.MD_ENTRY_TYPE)}")
        sz = e.num(wire.MD_ENTRY_SIZE)
        if not math.isfinite(sz) or sz < 0.0:
            raise _Bad("FIX_MD_BAD_SIZE", f"FIX_MD_BAD_SIZE: size={e.get(wire.MD_ENTRY_SIZE)[:24]} "
                                          f"side={e.get(wire.MD_ENTRY_TYPE)}")
        return sz

    def _emit(self, vs: VenueSymbol, ts: int, seq: int) -> TopOfBook | MdDrop | None:
        t = self._tops[vs.instrument]
        if t.bid is None or t.ask is None:
            return None
        if t.bid > t.ask:
            return MdDrop(code="FIX_MD_CROSSED", detail=f"FIX_MD_CROSSED: instrument={vs.instrument} "
                                                        f"bid={t.bid} ask={t.ask} seq={seq}")
        return TopOfBook(venue=self.venue, instrument=vs.instrument, symbol=vs.quote_symbol or vs.symbol,
                         bid=t.bid, ask=t.ask, bid_size=t.bid_size, ask_size=t.ask_size, ts_ns=ts, seq=seq,
                         fx=vs.instrument in self.fx)

    def _snapshot(self, msg: wire.Fields) -> MdResult:
        vs = self._resolve(msg.get(wire.SYMBOL), msg.get(wire.SECURITY_EXCHANGE), msg.get(wire.MD_REQ_ID))
        top = self._tops[vs.instrument]
        try:
            self._check_fresh(msg)
            seq = int(msg.num(wire.MSG_SEQ_NUM))
            sent = sending_time_ns(msg.need(wire.SENDING_TIME))
            best: dict[str, tuple[float, float]] = {}
            ts = 0
            for e in self._entries(msg, wire.MD_ENTRY_TYPE):
                side = e.get(wire.MD_ENTRY_TYPE)
                if side not in (BID, OFFER):
                    continue  # trades, settlement, ...: asked for neither
                px, sz = self._px(e), self._size(e)
                ts = max(ts, self._entry_ts(e, sent))
                have = best.get(side)
                if have is None or (px > have[0] if side == BID else px < have[0]):
                    best[side] = (px, sz)
                elif px == have[0]:
                    best[side] = (px, have[1] + sz)
        except wire.FixError:
            top.clear()  # the snapshot is the truth and we could not read it: nothing known
            raise
        top.clear()
        if BID in best:
            top.bid, top.bid_size = best[BID]
        if OFFER in best:
            top.ask, top.ask_size = best[OFFER]
        out = self._emit(vs, ts or _ns(sent), seq)
        if isinstance(out, MdDrop):
            return MdResult(drops=[out])
        return MdResult(quotes=[out] if out is not None else [])

    def _incremental(self, msg: wire.Fields) -> MdResult:
        self._check_fresh(msg)
        seq = int(msg.num(wire.MSG_SEQ_NUM))
        sent = sending_time_ns(msg.need(wire.SENDING_TIME))
        req = msg.get(wire.MD_REQ_ID)
        drops: list[MdDrop] = []
        touched: dict[str, tuple[VenueSymbol, int]] = {}
        for e in self._entries(msg, wire.MD_UPDATE_ACTION):
            vs: VenueSymbol | None = None
            side = ""
            try:
                action = e.need(wire.MD_UPDATE_ACTION)
                side = e.need(wire.MD_ENTRY_TYPE)
                if side not in (BID, OFFER):
                    continue
                vs = self._resolve(e.get(wire.SYMBOL), e.get(wire.SECURITY_EXCHANGE), req)
                pos = e.get(MD_ENTRY_POSITION_NO)
                if pos and pos != "1":
                    continue  # a deeper level: the top is unchanged
                top = self._tops[vs.instrument]
                ts = self._entry_ts(e, sent)
                if action == DELETE:
                    px, sz = None, 0.0
                elif action in (NEW, CHANGE):
                    px, sz = self._px(e), self._size(e)
                else:
                    raise _Bad("FIX_MD_BAD_ACTION", f"FIX_MD_BAD_ACTION: {wire.MD_UPDATE_ACTION}={action[:8]}")
                if side == BID:
                    top.bid, top.bid_size = px, sz
                else:
                    top.ask, top.ask_size = px, sz
                prev = touched.get(vs.instrument)
                touched[vs.instrument] = (vs, ts if prev is None else max(prev[1], ts))
            except wire.FixError as exc:
                drops.append(MdDrop(code=_code(exc), detail=f"{exc} msg_type=X seq={seq}"))
                if vs is not None and side in (BID, OFFER):  # that side is no longer known
                    top = self._tops[vs.instrument]
                    if side == BID:
                        top.bid, top.bid_size = None, 0.0
                    else:
                        top.ask, top.ask_size = None, 0.0
        quotes: list[TopOfBook] = []
        for vs, ts in touched.values():
            out = self._emit(vs, ts or _ns(sent), seq)
            if isinstance(out, MdDrop):
                drops.append(out)
            elif out is not None:
                quotes.append(out)
        return MdResult(quotes=quotes, drops=drops)

    def _reject_y(self, msg: wire.Fields) -> MdReject:
        req = msg.need(wire.MD_REQ_ID)
        code = msg.get(wire.MD_REQ_REJ_REASON)
        reason = REJECT_REASONS.get(code, f"REASON_{code[:8]}") if code else "UNSPECIFIED"
        return self._reject(req, code, reason, msg.get(wire.TEXT))

    def _reject_of_request(self, msg: wire.Fields) -> MdReject:
        if msg.msg_type == "j":
            code = msg.get(wire.BUSINESS_REJECT_REASON)
            return self._reject(msg.get(BUSINESS_REJECT_REF_ID), code, f"BUSINESS_REJECT_{code or 'UNSPECIFIED'}",
                                msg.get(wire.TEXT))
        code = msg.get(wire.SESSION_REJECT_REASON)
        return self._reject("", code, f"SESSION_REJECT_{code or 'UNSPECIFIED'}", msg.get(wire.TEXT))

    def _reject(self, req: str, code: str, reason: str, text: str) -> MdReject:
        inst = self.instrument_of(req) if req else None
        vs = self.by_instrument.get(inst) if inst else None
        return MdReject(venue=self.venue, md_req_id=req, instrument=inst or "", symbol=vs.symbol if vs else "",
                        reason_code=code, reason=reason, text=text[:200])
