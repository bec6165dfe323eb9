"""Trade ids and client order ids."""

from __future__ import annotations

import pytest

from execution.ids import ClOrdId, TradeIds, cl_ord_id, parse_cl_ord_id, trade_number


def test_trade_ids_count_up_from_start_with_zero_padding() -> None:
    ids = TradeIds("X-", start=41)
    assert [ids.next(), ids.next()] == ["X-000041", "X-000042"]
    assert ids.next_n == 43


def test_trade_ids_resume_after_every_seen_id() -> None:
    ids = TradeIds.resume("X-", ["X-000007", "OLD000031", "junk"])
    assert ids.next() == "X-000032"


@pytest.mark.parametrize("prefix", ["a.b", "X7", "with space"])
def test_trade_ids_refuse_ambiguous_prefixes(prefix: str) -> None:
    with pytest.raises(ValueError, match="ID_PREFIX"):
        TradeIds(prefix)


def test_cl_ord_id_round_trips_through_parse() -> None:
    cid = cl_ord_id("X-000042", "b", 3)
    assert cid == "X-000042.b3"
    assert parse_cl_ord_id(cid) == ClOrdId(trade_id="X-000042", leg="b", n=3)


@pytest.mark.parametrize("bad", ["X-000042", "X-000042.c1", "X-000042.a0", "a.b.a1", ""])
def test_parse_cl_ord_id_rejects_foreign_ids(bad: str) -> None:
    assert parse_cl_ord_id(bad) is None


def test_trade_number_reads_trailing_digits() -> None:
    assert (trade_number("X-000042"), trade_number("nodigits")) == (42, None)
