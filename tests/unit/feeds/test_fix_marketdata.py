"""FIX market data mapping (`feeds.fix.marketdata`): the request we send, W/X/Y into top of book
or a reject, and every kind of message that must be dropped without publishing a wrong price.

Messages are built with QuickFIX and read back through its FIX 4.2 / 4.4 data dictionaries (so
they are what a session hands over), or written as SOH text for what QuickFIX would not build.
"""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.fix import wire
from feeds.fix.marketdata import MdBook, market_data_request, sending_time_ns
from feeds.fix.session import dictionary_path
from feeds.fix.venue import VenueSymbol

qf = pytest.importorskip("quickfix")

VERSIONS = ("FIX.4.2", "FIX.4.4")
SOH = "\x01"
SENT = "20260105-02:00:00.250"
SENT_NS = calendar.timegm((2026, 1, 5, 2, 0, 0)) * 10**9 + 250_000_000

ES = VenueSymbol(instrument="ES", symbol="ESZ6", quote_symbol="ESZ6")
NQ = VenueSymbol(instrument="NQ", symbol="NQ", security_exchange="XCME", quote_symbol="NQZ6")  # wire name differs
EUR = VenueSymbol(instrument="6E", symbol="6EZ6", quote_symbol="6EZ6")


def utc_ns(y: int, mo: int, d: int, h: int, mi: int, s: int, ns: int = 0) -> int:
    return calendar.timegm((y, mo, d, h, mi, s)) * 10**9 + ns


@pytest.fixture
def book() -> MdBook:
    return MdBook("CME", [ES, NQ, EUR], fx=["6E"], first_req_id=7)


_dicts: dict[str, object] = {}


def dictionary(version: str):
    if version not in _dicts:
        _dicts[version] = qf.DataDictionary(str(dictionary_path(version)))
    return _dicts[version]


def _message(version: str, msg_type: str, seq: int, sent: str = SENT, poss_dup: bool = False):
    m = qf.Message()
    h = m.getHeader()
    h.setField(qf.BeginString(version))
    h.setField(qf.MsgType(msg_type))
    h.setField(wire.SENDER_COMP_ID, "VENUE")
    h.setField(wire.TARGET_COMP_ID, "XMC_MD")
    h.setField(wire.MSG_SEQ_NUM, str(seq))
    h.setField(wire.SENDING_TIME, sent)
    if poss_dup:
        h.setField(43, "Y")
        h.setField(122, sent)
    return m


def as_received(m, version: str) -> wire.Fields:
    """What the session hands the actor: the text QuickFIX parses (and validates) with its dictionary."""
    text = m.toString()
    parsed = qf.Message(text, dictionary(version), True)
    dictionary(version).validate(parsed)
    return wire.Fields.parse(parsed.toString())


def snapshot(version: str, seq: int, symbol: str, entries: list[tuple], *, req: str = "", exch: str = "",
             sent: str = SENT, poss_dup: bool = False) -> wire.Fields:
    """W: entries are (side, px, size) or (side, px, size, date, time)."""
    m = _message(version, "W", seq, sent, poss_dup)
    if req:
        m.setField(wire.MD_REQ_ID, req)
    m.setField(wire.SYMBOL, symbol)
    if exch:
        m.setField(wire.SECURITY_EXCHANGE, exch)
    for e in entries:
        g = qf.Group(wire.NO_MD_ENTRIES, wire.MD_ENTRY_TYPE)
        g.setField(wire.MD_ENTRY_TYPE, e[0])
        g.setField(wire.MD_ENTRY_PX, str(e[1]))
        g.setField(wire.MD_ENTRY_SIZE, str(e[2]))
        if len(e) > 3 and e[3]:
            g.setField(272, e[3])
        if len(e) > 4 and e[4]:
            g.setField(273, e[4])
        m.addGroup(g)
    if not entries:
        m.setField(wire.NO_MD_ENTRIES, "0")
    return as_received(m, version)


def incremental(version: str, seq: int, entries: list[dict], *, req: str = "", poss_dup: bool = False) -> wire.Fields:
    """X: each entry a dict of tag -> value (279 first)."""
    m = _message(version, "X", seq, poss_dup=poss_dup)
    if req:
        m.setField(wire.MD_REQ_ID, req)
    for e in entries:
        g = qf.Group(wire.NO_MD_ENTRIES, wire.MD_UPDATE_ACTION)
        for tag, value in e.items():
            g.setField(tag, str(value))
        m.addGroup(g)
    return as_received(m, version)


def upd(action: str, side: str, px: float | None = None, size: float | None = None, symbol: str | None = "ESZ6",
        **extra: str) -> dict:
    e: dict = {wire.MD_UPDATE_ACTION: action, wire.MD_ENTRY_TYPE: side}
    if symbol is not None:
        e[wire.SYMBOL] = symbol
    if px is not None:
        e[wire.MD_ENTRY_PX] = px
    if size is not None:
        e[wire.MD_ENTRY_SIZE] = size
    for k, v in extra.items():
        e[int(k.lstrip("t"))] = v
    return e


def text(*fields: str) -> wire.Fields:
    """A message as SOH text (for what QuickFIX's builder or dictionary would not let through)."""
    return wire.Fields.parse(SOH.join(fields) + SOH)


# ---- the request ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_market_data_request_asks_for_both_sides_of_one_symbol_and_validates(version: str) -> None:
    m = market_data_request(version, "CME-NQ-7", NQ, depth=3)
    h = m.getHeader()
    for tag, value in ((wire.SENDER_COMP_ID, "XMC_MD"), (wire.TARGET_COMP_ID, "VENUE"), (wire.MSG_SEQ_NUM, "2"),
                       (wire.SENDING_TIME, SENT)):
        h.setField(tag, value)
    dictionary(version).validate(qf.Message(m.toString(), dictionary(version), True))
    f = wire.Fields.parse(m.toString())
    assert f.msg_type == "V" and f.get(wire.BEGIN_STRING) == version
    assert (f.get(262), f.get(263), f.get(264), f.get(265)) == ("CME-NQ-7", "1", "3", "0")
    assert [e.get(269) for e in f.groups(267, 269)] == ["0", "1"]
    syms = list(f.groups(146, 55))
    assert len(syms) == 1 and (syms[0].get(55), syms[0].get(207)) == ("NQ", "XCME")


def test_request_without_security_exchange_and_unsubscribe() -> None:
    f = wire.Fields.parse(market_data_request("FIX.4.2", "CME-ES-1", ES, subscribe=False).toString())
    assert f.get(263) == "2" and f.get(55) == "ESZ6" and not f.has(207) and f.get(264) == "1"


def test_request_ids_are_fresh_per_subscription_and_name_venue_and_instrument(book: MdBook) -> None:
    ids = [book.subscribe("ES"), book.subscribe("NQ"), book.subscribe("ES")]
    assert ids == ["CME-ES-7", "CME-NQ-8", "CME-ES-9"]
    assert book.instrument_of("CME-NQ-8") == "NQ"
    book.new_logon()
    assert book.instrument_of("CME-ES-9") == "ES"  # answers to the last logon's requests still map
    book.subscribe("ES")
    book.new_logon()
    assert book.instrument_of("CME-ES-9") is None
    with pytest.raises(KeyError, match="FIX_MD_UNKNOWN_INSTRUMENT"):
        book.subscribe("GC")


# ---- W snapshots ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_snapshot_gives_a_full_top_of_book_with_venue_time_and_sequence(book: MdBook, version: str) -> None:
    req = book.subscribe("ES")
    res = book.on_message(snapshot(version, 41, "ESZ6", [("0", 5000.25, 12, "20260105", "01:59:59.125"),
                                                        ("1", 5000.5, 9, "20260105", "01:59:59.500")], req=req))
    assert not res.drops and res.reject is None
    [q] = res.quotes
    assert (q.venue, q.instrument, q.symbol) == ("CME", "ES", "ESZ6")
    assert (q.bid, q.ask, q.bid_size, q.ask_size) == (5000.25, 5000.5, 12.0, 9.0)
    assert q.ts_ns == utc_ns(2026, 1, 5, 1, 59, 59, 500_000_000)  # the latest entry time
    assert q.seq == 41 and not q.fx
    msg = q.to_message(123)
    assert msg.recv_ns == 123 and msg.venue_seq == 41 and msg.exch_ts_ns == q.ts_ns
    assert book.quotes == 1


def test_snapshot_without_entry_times_uses_sending_time(book: MdBook) -> None:
    [q] = book.on_message(snapshot("FIX.4.2", 2, "ESZ6", [("0", 10, 1), ("1", 11, 2)])).quotes
    assert q.ts_ns == SENT_NS


def test_entry_time_without_date_takes_the_sending_date_and_wraps_midnight(book: MdBook) -> None:
    [q] = book.on_message(snapshot("FIX.4.4", 2, "ESZ6", [("0", 10, 1, "", "01:00:00.5"), ("1", 11, 2)])).quotes
    assert q.ts_ns == utc_ns(2026, 1, 5, 1, 0, 0, 500_000_000)
    late = snapshot("FIX.4.4", 3, "ESZ6", [("0", 10, 1, "", "23:59:59.999"), ("1", 11, 2)],
                    sent="20260106-00:00:00.001")
    [q] = book.on_message(late).quotes
    assert q.ts_ns == utc_ns(2026, 1, 5, 23, 59, 59, 999_000_000)


def test_snapshot_with_depth_takes_the_best_price_of_each_side(book: MdBook) -> None:
    res = book.on_message(snapshot("FIX.4.2", 5, "ESZ6", [("0", 99, 1), ("0", 100, 4), ("0", 100, 2),
                                                          ("1", 102, 3), ("1", 101, 6), ("2", 100.5, 1)]))
    [q] = res.quotes
    assert (q.bid, q.bid_size, q.ask, q.ask_size) == (100.0, 6.0, 101.0, 6.0)  # trade entry (269=2) ignored


@pytest.mark.parametrize("version", VERSIONS)
def test_security_exchange_and_wire_symbol_map_to_the_configured_symbol(book: MdBook, version: str) -> None:
    [q] = book.on_message(snapshot(version, 3, "NQ", [("0", 20000, 1), ("1", 20001, 1)], exch="XCME")).quotes
    assert (q.instrument, q.symbol) == ("NQ", "NQZ6")
    [q] = book.on_message(snapshot(version, 4, "NQ", [("0", 20000, 1), ("1", 20002, 1)])).quotes  # 207 left out
    assert q.ask == 20002
    res = book.on_message(snapshot(version, 5, "NQ", [("0", 20000, 1), ("1", 20001, 1)], exch="XEUR"))
    assert not res.quotes and [d.code for d in res.drops] == ["FIX_MD_UNKNOWN_SYMBOL"]


def test_fx_instrument_becomes_an_fx_record(book: MdBook) -> None:
    [q] = book.on_message(snapshot("FIX.4.2", 6, "6EZ6", [("0", 1.1, 5), ("1", 1.10005, 5)])).quotes
    assert q.fx and q.instrument == "6E"
    assert type(q.to_message(1)).__name__ == "FxRate"


def test_one_sided_or_empty_snapshot_publishes_nothing(book: MdBook) -> None:
    assert book.on_message(snapshot("FIX.4.2", 2, "ESZ6", [("0", 10, 1)])).quotes == []
    assert book.top("ES") == (10.0, 1.0, None, 0.0)
    res = book.on_message(snapshot("FIX.4.4", 3, "ESZ6", []))
    assert res.quotes == [] and res.drops == [] and book.top("ES") == (None, 0.0, None, 0.0)


# ---- X incremental updates ----------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_incremental_new_change_delete_keep_the_top_of_book(book: MdBook, version: str) -> None:
    # one side known: nothing yet
    assert book.on_message(incremental(version, 10, [upd("0", "0", 100, 5)])).quotes == []
    [q] = book.on_message(incremental(version, 11, [upd("0", "1", 101, 7)])).quotes
    assert (q.bid, q.bid_size, q.ask, q.ask_size, q.seq) == (100, 5, 101, 7, 11)
    # a change of one side gives a full quote with the other side kept
    [q] = book.on_message(incremental(version, 12, [upd("1", "0", 100.5, 2, t272="20260105", t273="02:00:00.1")])).quotes
    assert (q.bid, q.bid_size, q.ask, q.ask_size) == (100.5, 2, 101, 7)
    assert q.ts_ns == utc_ns(2026, 1, 5, 2, 0, 0, 100_000_000)
    # a delete empties that side: nothing until both are known again
    res = book.on_message(incremental(version, 13, [upd("2", "1")]))
    assert res.quotes == [] and res.drops == []
    assert book.on_message(incremental(version, 14, [upd("1", "0", 100.25, 3)])).quotes == []
    [q] = book.on_message(incremental(version, 15, [upd("0", "1", 100.75, 4)])).quotes
    assert (q.bid, q.ask, q.bid_size, q.ask_size, q.seq) == (100.25, 100.75, 3, 4, 15)


@pytest.mark.parametrize("version", VERSIONS)
def test_one_message_gives_one_quote_per_instrument_after_all_its_entries(book: MdBook, version: str) -> None:
    entries = [upd("0", "0", 100, 1), upd("0", "1", 99, 1),  # crossed half-way, fine at the end
               upd("1", "1", 102, 2), upd("0", "0", 20000, 3, symbol="NQ", t207="XCME"),
               upd("0", "1", 20001, 4, symbol="NQ")]
    res = book.on_message(incremental(version, 20, entries))
    assert not res.drops
    got = {q.instrument: (q.bid, q.ask, q.bid_size, q.ask_size, q.symbol) for q in res.quotes}
    assert got == {"ES": (100, 102, 1, 2, "ESZ6"), "NQ": (20000, 20001, 3, 4, "NQZ6")}


def test_entries_without_symbol_map_through_the_request_id(book: MdBook) -> None:
    req = book.subscribe("NQ")
    res = book.on_message(incremental("FIX.4.4", 3, [upd("0", "0", 10, 1, symbol=None), upd("0", "1", 11, 1, symbol=None)],
                                      req=req))
    [q] = res.quotes
    assert q.instrument == "NQ"
    res = book.on_message(incremental("FIX.4.4", 4, [upd("1", "0", 10.5, 1, symbol=None)], req="SOMEONE-ELSE-1"))
    assert [d.code for d in res.drops] == ["FIX_MD_UNKNOWN_REQ_ID"]
    res = book.on_message(incremental("FIX.4.4", 5, [upd("1", "0", 10.5, 1, symbol=None)]))
    assert [d.code for d in res.drops] == ["FIX_MISSING_TAG"]


def test_deeper_levels_leave_the_top_alone(book: MdBook) -> None:
    book.on_message(snapshot("FIX.4.2", 1, "ESZ6", [("0", 100, 1), ("1", 101, 1)]))
    res = book.on_message(incremental("FIX.4.2", 2, [upd("0", "0", 99, 8, t290="2"), upd("2", "1", t290="3")]))
    assert res.quotes == [] and res.drops == []
    assert book.top("ES") == (100.0, 1.0, 101.0, 1.0)


def test_new_logon_and_reset_forget_the_book(book: MdBook) -> None:
    book.on_message(snapshot("FIX.4.2", 1, "ESZ6", [("0", 100, 1), ("1", 101, 1)]))
    book.new_logon()
    assert book.on_message(incremental("FIX.4.2", 2, [upd("1", "0", 100.5, 1)])).quotes == []


# ---- Y and other refusals -------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_market_data_request_reject_names_instrument_reason_and_text(book: MdBook, version: str) -> None:
    req = book.subscribe("6E")
    m = _message(version, "Y", 8)
    m.setField(wire.MD_REQ_ID, req)
    m.setField(wire.MD_REQ_REJ_REASON, "0")
    m.setField(wire.TEXT, "no such contract")
    res = book.on_message(as_received(m, version))
    rej = res.reject
    assert rej is not None and not res.quotes and not res.drops
    assert (rej.venue, rej.instrument, rej.symbol, rej.md_req_id) == ("CME", "6E", "6EZ6", req)
    assert (rej.reason_code, rej.reason, rej.text) == ("0", "UNKNOWN_SYMBOL", "no such contract")
    assert rej.describe().startswith("FIX_MD_REJECTED: venue=CME instrument=6E symbol=6EZ6")
    assert book.rejected == 1


def test_reject_without_reason_or_of_a_foreign_request() -> None:
    book = MdBook("CME", [ES])
    rej = book.on_message(text("8=FIX.4.2", "35=Y", "34=2", "52=" + SENT, "262=OTHER-1")).reject
    assert rej is not None and (rej.instrument, rej.reason, rej.text) == ("", "UNSPECIFIED", "")


def test_business_and_session_rejects_of_our_request_are_rejects(book: MdBook) -> None:
    req = book.subscribe("ES")
    rej = book.on_message(text("8=FIX.4.4", "35=j", "34=3", "52=" + SENT, "45=2", "58=market data not offered",
                               "372=V", "379=" + req, "380=3")).reject
    assert rej is not None and (rej.instrument, rej.reason, rej.text) == ("ES", "BUSINESS_REJECT_3", "market data not offered")
    rej = book.on_message(text("8=FIX.4.2", "35=3", "34=4", "52=" + SENT, "45=2", "58=Required tag missing",
                               "371=264", "372=V", "373=1")).reject
    assert rej is not None and (rej.instrument, rej.reason) == ("", "SESSION_REJECT_1")
    res = book.on_message(text("8=FIX.4.2", "35=j", "34=5", "52=" + SENT, "372=D", "380=3"))
    assert res.ignored and res.reject is None


def test_other_application_messages_are_ignored(book: MdBook) -> None:
    res = book.on_message(text("8=FIX.4.2", "35=B", "34=2", "52=" + SENT, "148=headline"))
    assert res.ignored and not res.quotes and not res.drops and book.ignored == 1


# ---- what does not map ------------------------------------------------------------------------


def _drop_codes(res) -> list[str]:
    return [d.code for d in res.drops]


def test_unknown_symbol_is_dropped_and_counted(book: MdBook) -> None:
    res = book.on_message(snapshot("FIX.4.2", 2, "GCZ6", [("0", 10, 1), ("1", 11, 1)]))
    assert _drop_codes(res) == ["FIX_MD_UNKNOWN_SYMBOL"] and "symbol=GCZ6" in res.drops[0].detail
    res = book.on_message(incremental("FIX.4.2", 3, [upd("0", "0", 10, 1, symbol="GCZ6"), upd("0", "0", 10, 1),
                                                     upd("0", "1", 11, 1)]))
    assert _drop_codes(res) == ["FIX_MD_UNKNOWN_SYMBOL"] and [q.instrument for q in res.quotes] == ["ES"]
    assert book.bad == {"FIX_MD_UNKNOWN_SYMBOL": 2}


@pytest.mark.parametrize("px,code", [("0", "FIX_MD_BAD_PRICE"), ("-5", "FIX_MD_BAD_PRICE"), ("abc", "FIX_BAD_VALUE")])
def test_bad_price_in_a_snapshot_drops_it_and_empties_the_book(book: MdBook, px: str, code: str) -> None:
    book.on_message(snapshot("FIX.4.2", 1, "ESZ6", [("0", 100, 1), ("1", 101, 1)]))
    bad = text("8=FIX.4.2", "35=W", "34=2", "52=" + SENT, "55=ESZ6", "268=2", "269=0", f"270={px}", "271=1",
               "269=1", "270=101", "271=1")
    res = book.on_message(bad)
    assert _drop_codes(res) == [code] and not res.quotes
    assert book.top("ES") == (None, 0.0, None, 0.0)
    assert book.on_message(incremental("FIX.4.2", 3, [upd("1", "1", 101.5, 1)])).quotes == []  # bid still unknown


def test_bad_entry_in_an_update_makes_its_side_unknown(book: MdBook) -> None:
    book.on_message(snapshot("FIX.4.2", 1, "ESZ6", [("0", 100, 1), ("1", 101, 1)]))
    res = book.on_message(incremental("FIX.4.2", 2, [upd("1", "0", 0, 1)]))
    assert _drop_codes(res) == ["FIX_MD_BAD_PRICE"] and not res.quotes
    assert book.top("ES")[0] is None
    res = book.on_message(incremental("FIX.4.2", 3, [upd("1", "0", 100, -1)]))
    assert _drop_codes(res) == ["FIX_MD_BAD_SIZE"]
    res = book.on_message(incremental("FIX.4.2", 4, [upd("1", "0", 100)]))
    assert _drop_codes(res) == ["FIX_MISSING_TAG"] and "271" in res.drops[0].detail
    [q] = book.on_message(incremental("FIX.4.2", 5, [upd("1", "0", 100.25, 2)])).quotes
    assert (q.bid, q.ask) == (100.25, 101)


def test_crossed_book_is_not_published_and_locked_is(book: MdBook) -> None:
    res = book.on_message(snapshot("FIX.4.4", 1, "ESZ6", [("0", 102, 1), ("1", 101, 1)]))
    assert _drop_codes(res) == ["FIX_MD_CROSSED"] and not res.quotes
    res = book.on_message(incremental("FIX.4.4", 2, [upd("1", "0", 101, 1)]))
    [q] = res.quotes
    assert q.bid == q.ask == 101


def test_bad_action_time_and_missing_side(book: MdBook) -> None:
    bad_action = text("8=FIX.4.2", "35=X", "34=2", "52=" + SENT, "268=1", "279=7", "269=0", "55=ESZ6", "270=1", "271=1")
    assert _drop_codes(book.on_message(bad_action)) == ["FIX_MD_BAD_ACTION"]
    bad_time = text("8=FIX.4.2", "35=X", "34=3", "52=" + SENT, "268=1", "279=0", "269=0", "55=ESZ6", "270=1",
                    "271=1", "273=25:00:00")
    assert _drop_codes(book.on_message(bad_time)) == ["FIX_MD_BAD_TIME"]
    bad_sent = text("8=FIX.4.2", "35=W", "34=4", "52=yesterday", "55=ESZ6", "268=0")
    assert _drop_codes(book.on_message(bad_sent)) == ["FIX_MD_BAD_TIME"]
    no_side = text("8=FIX.4.2", "35=X", "34=5", "52=" + SENT, "268=1", "279=0", "55=ESZ6", "270=1", "271=1")
    assert _drop_codes(book.on_message(no_side)) == ["FIX_MISSING_TAG"]
    no_entries = text("8=FIX.4.2", "35=W", "34=6", "52=" + SENT, "55=ESZ6")
    assert _drop_codes(book.on_message(no_entries)) == ["FIX_MISSING_TAG"]
    assert book.bad == {"FIX_MD_BAD_ACTION": 1, "FIX_MD_BAD_TIME": 2, "FIX_MISSING_TAG": 2}


def test_nonsense_numbers_in_counts_and_sequence_numbers_are_dropped(book: MdBook) -> None:
    res = book.on_message(text("8=FIX.4.2", "35=W", "34=inf", "52=" + SENT, "55=ESZ6", "268=0"))
    assert _drop_codes(res) == ["FIX_BAD_VALUE"]
    res = book.on_message(text("8=FIX.4.2", "35=X", "34=2", "52=" + SENT, "268=nan", "279=0"))
    assert _drop_codes(res) == ["FIX_BAD_VALUE"]


def test_resent_market_data_is_old_and_dropped(book: MdBook) -> None:
    res = book.on_message(snapshot("FIX.4.2", 9, "ESZ6", [("0", 10, 1), ("1", 11, 1)], poss_dup=True))
    assert _drop_codes(res) == ["FIX_MD_POSS_DUP"] and not res.quotes
    res = book.on_message(incremental("FIX.4.4", 10, [upd("0", "0", 10, 1)], poss_dup=True))
    assert _drop_codes(res) == ["FIX_MD_POSS_DUP"]


def test_groups_flattened_by_a_session_without_dictionary_are_refused(book: MdBook) -> None:
    # QuickFIX without a data dictionary keeps a group's fields sorted by tag: entries are lost
    flat = text("8=FIX.4.2", "35=W", "34=2", "52=" + SENT, "55=ESZ6", "268=2", "269=0", "269=1", "270=10", "270=11",
                "271=3", "271=4")
    assert _drop_codes(book.on_message(flat)) == ["FIX_MD_BAD_GROUP"]
    short = text("8=FIX.4.2", "35=W", "34=3", "52=" + SENT, "55=ESZ6", "268=3", "269=0", "270=10", "271=3")
    assert _drop_codes(book.on_message(short)) == ["FIX_MD_BAD_GROUP"]


# ---- a property: any sequence of top-of-book updates ------------------------------------------

_update = st.tuples(st.sampled_from(["0", "1", "2"]), st.sampled_from(["0", "1"]),
                    st.integers(min_value=0, max_value=8), st.integers(min_value=0, max_value=5))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(_update, min_size=1, max_size=4), min_size=1, max_size=25))
def test_incremental_updates_match_a_reference_top_of_book(batches: list[list[tuple[str, str, int, int]]]) -> None:
    book = MdBook("CME", [ES])
    ref: dict[str, tuple[float, float] | None] = {"0": None, "1": None}
    for seq, batch in enumerate(batches, start=1):
        fields = ["8=FIX.4.2", "35=X", f"34={seq}", "52=" + SENT, f"268={len(batch)}"]
        bad = False
        for action, side, px, size in batch:
            fields += [f"279={action}", f"269={side}", "55=ESZ6"]
            if action != "2":
                fields += [f"270={px}", f"271={size}"]
                if px <= 0:
                    ref[side], bad = None, True
                else:
                    ref[side] = (float(px), float(size))
            else:
                ref[side] = None
        res = book.on_message(text(*fields))
        bid, ask = ref["0"], ref["1"]
        if bid is None or ask is None:
            assert res.quotes == []
        elif bid[0] > ask[0]:
            assert res.quotes == [] and "FIX_MD_CROSSED" in _drop_codes(res)
        else:
            [q] = res.quotes
            assert (q.bid, q.bid_size, q.ask, q.ask_size, q.seq) == (bid[0], bid[1], ask[0], ask[1], seq)
        assert ("FIX_MD_BAD_PRICE" in _drop_codes(res)) == bad


# ---- from a config --------------------------------------------------------------------------


def test_from_config_uses_the_venue_symbols_and_fx_flags(tmp_path: Path) -> None:
    from configs.load import load_config
    from helpers import write_config

    path = write_config(tmp_path / "fix.toml", """
[venues.CME]
kind = "fix"
[venues.CME.fix]
port = 9878
sender_comp_id = "XMC"
target_comp_id = "CMEX"
symbols = { NQ = { symbol = "NQ", security_exchange = "XCME" } }
md = { sender_comp_id = "XMC_MD" }
[actors.ingest_cme]
kind = "ingest"
venue = "CME"
""")
    book = MdBook.from_config(load_config(path), "CME")
    assert set(book.by_instrument) >= {"ES", "NQ"}
    assert book.by_instrument["NQ"] == VenueSymbol(instrument="NQ", symbol="NQ", security_exchange="XCME", quote_symbol="NQZ6")
    [q] = book.on_message(snapshot("FIX.4.2", 2, "NQ", [("0", 1, 1), ("1", 2, 1)], exch="XCME")).quotes
    assert q.symbol == "NQZ6"


def test_sending_time_parses_seconds_millis_and_nanos() -> None:
    assert sending_time_ns("20260105-02:00:00") == (SENT_NS // 86_400_000_000_000, 7_200_000_000_000)
    assert sending_time_ns("20260105-02:00:00.000000123")[1] == 7_200_000_000_123
