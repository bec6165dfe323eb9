from __future__ import annotations

import os
from pathlib import Path

import databento_dbn as dbn
import pytest
import zstandard

from feeds.replay import DbnReplay, ReplayError

DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "databento"
DBN_FILES = sorted(DATA.glob("*.dbn.zst"))
MBP1 = DATA / "ESU4.glbx-mdp3.mbp-1.2024-07-01T2358.dbn.zst"
BBO1M = DATA / "ESZ5-ESH6.glbx-mdp3.bbo-1m.2025-12-19T1425.dbn.zst"


def decode_directly(path: Path) -> list:
    raw = zstandard.ZstdDecompressor().stream_reader(path.open("rb")).read()
    dec = dbn.DBNDecoder()
    dec.write(raw)
    return dec.decode()


def direct_quotes(path: Path) -> list:
    return [r for r in decode_directly(path)
            if isinstance(r, (dbn.MBP1Msg, dbn.BBOMsg))
            and r.bid_px_00 != dbn.UNDEF_PRICE and r.ask_px_00 != dbn.UNDEF_PRICE]


def write_dbn(path: Path, records: list, meta: dbn.Metadata | None = None) -> Path:
    meta = meta or decode_directly(MBP1)[0]
    body = meta.encode() + b"".join(bytes(r) for r in records)
    path.write_bytes(zstandard.ZstdCompressor().compress(body))
    return path


def mbp1(iid: int, ts: int, bid: int, ask: int, bid_sz: int = 1, ask_sz: int = 2) -> dbn.MBP1Msg:
    lv = dbn.BidAskPair(bid_px=bid, ask_px=ask, bid_sz=bid_sz, ask_sz=ask_sz)
    return dbn.MBP1Msg(publisher_id=1, instrument_id=iid, ts_event=ts, price=0, size=0, action=dbn.Action.ADD,
                       side=dbn.Side.BID, depth=0, ts_recv=ts + 10, levels=lv)


def test_recorded_data_is_present() -> None:
    assert MBP1 in DBN_FILES and BBO1M in DBN_FILES


@pytest.mark.parametrize("path", DBN_FILES, ids=lambda p: p.name)
def test_dbn_replay_matches_direct_decode_or_refuses_files_without_quotes(path: Path) -> None:
    expected = direct_quotes(path)
    if not expected:
        with pytest.raises(ReplayError, match="carries no top of book") as err:
            DbnReplay(path, "CME")
        assert err.value.path == str(path)
        return
    rp = DbnReplay(path, "CME")
    got = list(rp.records())
    assert len(got) == len(expected) == rp.stats.records
    assert rp.stats.skipped == {}
    for (due, q), r in ((got[0], expected[0]), (got[-1], expected[-1])):
        assert due == r.ts_recv and q.ts_ns == r.ts_event
        assert q.bid == r.levels[0].bid_px / 1e9 and q.ask == r.levels[0].ask_px / 1e9
        assert q.bid == r.pretty_bid_px_00 and q.ask == r.pretty_ask_px_00
        assert (q.bid_size, q.ask_size) == (r.bid_sz_00, r.ask_sz_00)
        assert q.seq == r.sequence and q.venue == "CME"
    assert [due for due, _ in got] == [r.ts_recv for r in expected]


def test_dbn_replay_mbp1_known_values() -> None:
    got = list(DbnReplay(MBP1, "CME").records())
    assert len(got) == 2288
    first, last = got[0][1], got[-1][1]
    assert (first.instrument, first.symbol, first.bid, first.ask, first.bid_size, first.ask_size) == (
        "ESU4", "ESU4", 5528.5, 5528.75, 29.0, 6.0)
    assert (last.bid, last.ask) == (5529.0, 5529.25)


def test_dbn_replay_maps_raw_symbols_and_instrument_ids_through_the_config() -> None:
    rp = DbnReplay(BBO1M, "CME", {"ESZ5": "es_front", "42140878": "es_next"})
    got = [q for _, q in rp.records()]
    assert {q.instrument for q in got} == {"es_front", "es_next"}
    assert {q.symbol for q in got} == {"ESZ5", "ESH6"}
    assert len(got) == 20


def test_dbn_replay_counts_unmapped_symbols_instead_of_yielding_them() -> None:
    rp = DbnReplay(BBO1M, "CME", {"ESZ5": "es_front"})
    got = [q for _, q in rp.records()]
    assert {q.instrument for q in got} == {"es_front"}
    assert rp.stats.skipped == {"UNMAPPED_SYMBOL": 10}
    assert rp.stats.examples["UNMAPPED_SYMBOL"] == "UNMAPPED_SYMBOL: symbol=ESH6 instrument_id=42140878"


def test_dbn_replay_skips_and_counts_undefined_prices(tmp_path: Path) -> None:
    undef = dbn.UNDEF_PRICE
    recs = [mbp1(118, 1, 5000_000000000, 5000_250000000), mbp1(118, 2, undef, 5000_250000000),
            mbp1(118, 3, 5000_000000000, undef), mbp1(118, 4, 5000_250000000, 5000_500000000, 7, 8)]
    rp = DbnReplay(write_dbn(tmp_path / "undef.dbn.zst", recs), "CME")
    got = list(rp.records())
    assert [(due, q.bid, q.ask, q.bid_size, q.ask_size) for due, q in got] == [
        (11, 5000.0, 5000.25, 1.0, 2.0), (14, 5000.25, 5000.5, 7.0, 8.0)]
    assert rp.stats.skipped == {"UNDEF_PRICE": 2}
    assert got[0][1].symbol == "ESU4"  # id 118 through the file's metadata mappings


def test_dbn_replay_counts_crossed_books(tmp_path: Path) -> None:
    rp = DbnReplay(write_dbn(tmp_path / "x.dbn.zst", [mbp1(118, 1, 5001_000000000, 5000_000000000)]), "CME")
    assert list(rp.records()) == [] and rp.stats.skipped == {"CROSSED_BOOK": 1}


def test_dbn_replay_learns_symbols_from_symbol_mapping_records(tmp_path: Path) -> None:
    meta = dbn.Metadata(dataset="GLBX.MDP3", start=0, stype_in=dbn.SType.RAW_SYMBOL,
                        stype_out=dbn.SType.INSTRUMENT_ID, schema=dbn.Schema.MBP_1)
    mapping = dbn.SymbolMappingMsg(publisher_id=1, instrument_id=4358, ts_event=0, stype_in=dbn.SType.RAW_SYMBOL,
                                   stype_in_symbol="NQU4", stype_out=dbn.SType.INSTRUMENT_ID,
                                   stype_out_symbol="4358", start_ts=0, end_ts=0)
    path = write_dbn(tmp_path / "live.dbn.zst", [mbp1(77, 1, 1_000000000, 2_000000000), mapping,
                                                 mbp1(4358, 2, 20000_000000000, 20000_250000000)], meta)
    got = [q for _, q in DbnReplay(path, "CME").records()]
    assert [(q.instrument, q.symbol) for q in got] == [("77", "77"), ("NQU4", "NQU4")]


def test_dbn_replay_reads_uncompressed_dbn(tmp_path: Path) -> None:
    raw = zstandard.ZstdDecompressor().stream_reader(BBO1M.open("rb")).read()
    path = tmp_path / "plain.dbn"
    path.write_bytes(raw)
    assert len(list(DbnReplay(path, "CME").records())) == 20


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "not a DBN file"),
        (b"hello, this is not market data", "not a DBN file"),
        (zstandard.ZstdCompressor().compress(b"garbage" * 50), "corrupt DBN data"),
        (b"\x28\xb5\x2f\xfd" + os.urandom(64), "corrupt zstd data"),
        (zstandard.ZstdCompressor().compress(b"DBN\x03\x00"), "truncated"),
    ],
    ids=["empty", "text", "zstd-of-garbage", "bad-zstd-frame", "truncated-header"],
)
def test_corrupt_dbn_file_raises_replay_error_at_open(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "bad.dbn.zst"
    path.write_bytes(content)
    with pytest.raises(ReplayError, match=why) as err:
        DbnReplay(path, "CME")
    assert err.value.path == str(path)
    assert str(path) in str(err.value)


def test_missing_dbn_file_raises_replay_error(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="cannot open"):
        DbnReplay(tmp_path / "nope.dbn.zst", "CME")


def test_dbn_file_corrupt_mid_stream_is_counted_not_raised(tmp_path: Path) -> None:
    raw = zstandard.ZstdDecompressor().stream_reader(MBP1.open("rb")).read()
    cut = len(raw) // 2
    bad = raw[:cut] + b"\xff" * 200 + raw[cut:]
    path = tmp_path / "mid.dbn.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(bad))
    rp = DbnReplay(path, "CME")
    got = list(rp.records())
    assert 0 < len(got) < 2288
    assert rp.stats.skipped.get("DECODE_ERROR") == 1


def test_dbn_file_truncated_mid_record_counts_the_leftover(tmp_path: Path) -> None:
    raw = zstandard.ZstdDecompressor().stream_reader(MBP1.open("rb")).read()
    path = tmp_path / "cut.dbn.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(raw[:-7]))
    rp = DbnReplay(path, "CME")
    assert len(list(rp.records())) == 2287
    assert rp.stats.skipped == {"TRUNCATED": 1}
