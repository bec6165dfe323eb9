from __future__ import annotations

import pytest

from bus.messages import ExecType, OrderEvent, Quote, Side
from riskguard.fx import FxTable, FxUnavailable
from riskguard.ledger import Ledger, PositionView


def fill(instrument: str, side: Side, qty: int, px: float, venue: str = "HKEX", exec_id: str = "",
         exec_type: ExecType = ExecType.FILL) -> OrderEvent:
    return OrderEvent(
        cl_ord_id="c", exec_type=exec_type, venue=venue, instrument=instrument, side=side,
        order_qty=qty, cum_qty=qty, leaves_qty=0, last_qty=qty, last_px=px, exec_id=exec_id,
    )


def quote(venue: str, symbol: str, bid: float, ask: float) -> Quote:
    return Quote(venue=venue, symbol=symbol, bid=bid, ask=ask, bid_size=1, ask_size=1, exch_ts_ns=0, recv_ns=0)


@pytest.fixture
def fx() -> FxTable:
    t = FxTable()
    t.update("USDHKD", 7.8, 0)
    t.update("USDCNY", 7.2, 0)
    return t


@pytest.fixture
def ledger(demo) -> Ledger:
    return Ledger.from_config(demo)


def test_buys_average_the_price(ledger):
    ledger.on_fill(fill("HSI", Side.BUY, 2, 25000.0))
    ledger.on_fill(fill("HSI", Side.BUY, 1, 25003.0))
    p = ledger.position("hk", "HSI")
    assert (p.qty, p.avg_price, p.realised) == (3, 25001.0, 0.0)


def test_sell_against_long_realises_pnl_and_keeps_average(ledger):
    ledger.on_fill(fill("HSI", Side.BUY, 3, 25000.0))
    realised = ledger.on_fill(fill("HSI", Side.SELL, 2, 25010.0))
    assert realised == 10.0 * 2 * 50.0
    p = ledger.position("hk", "HSI")
    assert (p.qty, p.avg_price, p.realised) == (1, 25000.0, 1000.0)


def test_flip_realises_closed_part_and_opens_rest_at_fill_price(ledger):
    ledger.on_fill(fill("HSI", Side.BUY, 2, 25000.0))
    ledger.on_fill(fill("HSI", Side.SELL, 5, 24990.0))
    p = ledger.position("hk", "HSI")
    assert (p.qty, p.avg_price, p.realised) == (-3, 24990.0, -10.0 * 2 * 50.0)


def test_close_to_flat_resets_average(ledger):
    ledger.on_fill(fill("HSI", Side.SELL, 2, 25000.0))
    ledger.on_fill(fill("HSI", Side.BUY, 2, 24990.0))
    p = ledger.position("hk", "HSI")
    assert (p.qty, p.avg_price, p.realised) == (0, 0.0, 1000.0)


def test_repeated_exec_id_and_non_fills_ignored(ledger):
    assert ledger.on_fill(fill("HSI", Side.BUY, 1, 25000.0, exec_id="x1")) == 0.0
    assert ledger.on_fill(fill("HSI", Side.BUY, 1, 25000.0, exec_id="x1")) is None
    assert ledger.on_fill(fill("HSI", Side.BUY, 1, 25000.0, exec_type=ExecType.ACK)) is None
    assert ledger.position("hk", "HSI").qty == 1


def test_fill_by_venue_symbol_and_sub_account_books_to_parent(ledger):
    ledger.on_fill(fill("au2612", Side.BUY, 3, 556.0, venue="SHFE"), account="cn-a")
    assert ledger.position("cn", "au").qty == 3


def test_unknown_instrument_ignored(ledger):
    assert ledger.on_fill(fill("XX", Side.BUY, 1, 1.0)) is None
    assert ledger.positions() == []


def test_quote_mid_marks_unrealised(ledger):
    ledger.on_fill(fill("HSI", Side.SELL, 2, 25000.0))
    assert ledger.on_quote(quote("HKEX", "HSIZ6", 24989.0, 24991.0)) == "HSI"
    p = ledger.position("hk", "HSI")
    assert p.mark == 24990.0
    assert p.unrealised == (24990.0 - 25000.0) * -2 * 50.0


def test_one_sided_quote_does_not_mark(ledger):
    assert ledger.on_quote(quote("HKEX", "HSI", 0.0, 25001.0)) is None
    assert ledger.mark("HSI") is None


def test_equity_converts_foreign_pnl_into_account_currency(ledger, fx):
    # hk (HKD) holds GC (USD) and HSI (HKD)
    ledger.on_fill(fill("GC", Side.BUY, 1, 2400.0, venue="COMEX"))
    ledger.on_quote(quote("COMEX", "GCZ6", 2409.9, 2410.1))
    ledger.on_fill(fill("HSI", Side.BUY, 1, 25000.0))
    ledger.on_fill(fill("HSI", Side.SELL, 1, 25002.0))
    gc_pnl_usd = 10.0 * 100.0
    hsi_pnl_hkd = 2.0 * 50.0
    expected = 4_000_000.0 + gc_pnl_usd * 7.8 + hsi_pnl_hkd
    assert ledger.equity("hk", fx) == pytest.approx(expected)
    assert ledger.equity_base("hk", fx, "USD") == pytest.approx(expected / 7.8)


def test_equity_without_needed_fx_raises(ledger):
    ledger.on_fill(fill("GC", Side.BUY, 1, 2400.0, venue="COMEX"))
    ledger.on_fill(fill("GC", Side.SELL, 1, 2401.0, venue="COMEX"))
    with pytest.raises(FxUnavailable):
        ledger.equity("hk", FxTable())


def test_restore_from_positions_snapshot(ledger, demo):
    ledger.on_fill(fill("HSI", Side.BUY, 2, 25000.0))
    ledger.on_fill(fill("HSI", Side.SELL, 1, 25010.0))
    snap = ledger.positions()
    other = Ledger.from_config(demo)
    other.restore(snap)
    assert other.positions() == snap
    assert all(isinstance(v, PositionView) for v in snap)
