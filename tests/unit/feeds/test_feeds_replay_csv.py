from __future__ import annotations

import calendar
import gzip
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.replay import CsvReplay, ReplayError, parse_ts_ns

T0 = 1_719_878_281_218_218_853  # 2024-07-01T23:58:01.218218853Z

GOOD = f"""ts_event,symbol,bid_px,ask_px,bid_sz,ask_sz
{T0},ESU4,5528.5,5528.75,29,6
2024-07-01T23:58:01.5Z,ESU4,5528.75,5529.0,3,4
2024-07-02T01:58:02.000000001+02:00,NQU4,19900.25,19900.5,1,1
"""


def write(tmp_path: Path, text: str, name: str = "tob.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_csv_replay_yields_normalised_quotes_with_ns_and_iso_timestamps(tmp_path: Path) -> None:
    rp = CsvReplay(write(tmp_path, GOOD), "CME")
    got = list(rp.records())
    assert [due for due, _ in got] == [T0, 1_719_878_281_500_000_000, 1_719_878_282_000_000_001]
    first = got[0][1]
    assert (first.venue, first.instrument, first.symbol, first.bid, first.ask, first.bid_size, first.ask_size) == (
        "CME", "ESU4", "ESU4", 5528.5, 5528.75, 29.0, 6.0)
    assert first.ts_ns == T0 and first.seq == 2
    assert rp.stats.records == 3 and rp.stats.skipped == {}


def test_csv_replay_columns_in_any_order_with_extras(tmp_path: Path) -> None:
    text = "venue_note,ask_sz,bid_sz,ask_px,bid_px,symbol,ts_event\nx,6,29,5528.75,5528.5,ESU4,5\n"
    (due, q), = CsvReplay(write(tmp_path, text), "CME").records()
    assert (due, q.bid, q.ask, q.bid_size, q.ask_size) == (5, 5528.5, 5528.75, 29.0, 6.0)


def test_csv_replay_maps_symbols_and_counts_unmapped(tmp_path: Path) -> None:
    rp = CsvReplay(write(tmp_path, GOOD), "CME", {"ESU4": "ES"})
    got = [q for _, q in rp.records()]
    assert [q.instrument for q in got] == ["ES", "ES"]
    assert rp.stats.skipped == {"UNMAPPED_SYMBOL": 1}


def test_csv_replay_reads_gzip(tmp_path: Path) -> None:
    p = tmp_path / "tob.csv.gz"
    p.write_bytes(gzip.compress(GOOD.encode()))
    assert len(list(CsvReplay(p, "CME").records())) == 3


def test_csv_bad_rows_are_counted_by_reason_not_raised(tmp_path: Path) -> None:
    text = "\n".join([
        "ts_event,symbol,bid_px,ask_px,bid_sz,ask_sz",
        "1,ESU4,10,11,1,1",
        "2,ESU4,10,11,1",  # short row
        "yesterday,ESU4,10,11,1,1",
        "2024-13-01T00:00:00Z,ESU4,10,11,1,1",  # no 13th month
        "4,ESU4,abc,11,1,1",
        "5,ESU4,nan,11,1,1",
        "6,ESU4,0,11,1,1",
        "7,ESU4,10,11,-1,1",
        "8,ESU4,10,11,1,lots",
        "9,ESU4,12,11,1,1",  # crossed
        "",
        "10,ESU4,10,11,1,1,extra",
        "11,ESU4,10.5,11,2,3",
    ]) + "\n"
    rp = CsvReplay(write(tmp_path, text), "CME")
    got = list(rp.records())
    assert [due for due, _ in got] == [1, 11]
    assert rp.stats.skipped == {"BAD_ROW": 2, "BAD_TS": 2, "BAD_PRICE": 3, "BAD_SIZE": 2, "CROSSED_BOOK": 1}
    assert rp.stats.examples["BAD_ROW"] == "BAD_ROW: line=3 columns=5 want=6"
    assert rp.stats.as_dict()["skipped"] == 10.0


def test_csv_with_stray_binary_bytes_in_a_row_counts_it(tmp_path: Path) -> None:
    p = tmp_path / "tob.csv"
    p.write_bytes(GOOD.encode() + b"12,ES\xff\xfe,1,2,1,1\n")
    rp = CsvReplay(p, "CME")
    assert len(list(rp.records())) == 3 and rp.stats.skipped == {"BAD_ROW": 1}
    assert rp.stats.examples["BAD_ROW"] == "BAD_ROW: line=5 why=not_utf8"


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "empty file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\xfd", "not UTF-8 text"),
        (b"time,sym,bid,ask\n1,ES,1,2\n", "header must name ts_event,symbol,bid_px,ask_px,bid_sz,ask_sz"),
        (b"\x1f\x8b\x08\x00garbage-not-deflate", "cannot read"),
    ],
    ids=["empty", "binary", "wrong-header", "corrupt-gzip"],
)
def test_corrupt_csv_raises_replay_error_at_open(tmp_path: Path, content: bytes, why: str) -> None:
    p = tmp_path / "bad.csv"
    p.write_bytes(content)
    with pytest.raises(ReplayError, match=why) as err:
        CsvReplay(p, "CME")
    assert err.value.path == str(p)


def test_missing_csv_raises_replay_error(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="cannot open"):
        CsvReplay(tmp_path / "nope.csv", "CME")


@settings(max_examples=100, deadline=None)
@given(
    when=st.datetimes(min_value=__import__("datetime").datetime(1971, 1, 1),
                      max_value=__import__("datetime").datetime(2200, 1, 1)),
    ns=st.integers(0, 999_999_999),
)
def test_parse_ts_ns_iso_and_integer_agree(when, ns: int) -> None:  # type: ignore[no-untyped-def]
    whole = calendar.timegm(when.replace(microsecond=0).timetuple()) * 1_000_000_000 + ns
    iso = when.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns:09d}Z"
    assert parse_ts_ns(iso) == whole
    assert parse_ts_ns(str(whole)) == whole
    assert parse_ts_ns(iso.replace("Z", "+00:00")) == whole


def test_parse_ts_ns_rejects_garbage() -> None:
    assert parse_ts_ns("2024-02-30T00:00:00Z") is None
    assert parse_ts_ns("1.5e18") is None
    assert parse_ts_ns("2024-07-01 23:58:01") == calendar.timegm((2024, 7, 1, 23, 58, 1, 0, 0, 0)) * 10**9


def test_csv_header_with_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert len(list(CsvReplay(p, "CME").records())) == 3
