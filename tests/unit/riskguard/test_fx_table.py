from __future__ import annotations

import pytest

from bus.messages import FxRate
from riskguard.fx import FxTable, FxUnavailable

SEC = 1_000_000_000


@pytest.fixture
def fx() -> FxTable:
    t = FxTable("USD")
    t.update("USDCNY", 7.2, 0)
    t.update("USDHKD", 7.8, 0)
    t.update("EURUSD", 1.1, 0)
    return t


def test_rate_same_currency_is_one(fx):
    assert fx.rate("HKD", "HKD") == 1.0


def test_rate_direct_pair(fx):
    assert fx.rate("USD", "CNY") == 7.2


def test_rate_inverse_pair(fx):
    assert fx.rate("CNY", "USD") == pytest.approx(1 / 7.2)


def test_rate_cross_through_usd(fx):
    assert fx.rate("HKD", "CNY") == pytest.approx(7.2 / 7.8)
    assert fx.rate("EUR", "HKD") == pytest.approx(1.1 * 7.8)


def test_convert_amount(fx):
    assert fx.convert(1_000_000.0, "CNY", "HKD") == pytest.approx(1_000_000.0 * 7.8 / 7.2)


def test_unknown_currency_raises_fx_unavailable(fx):
    with pytest.raises(FxUnavailable):
        fx.rate("JPY", "USD")
    assert fx.try_rate("JPY", "USD") is None


def test_cnh_not_aliased_to_cny_unless_configured(fx):
    fx.update("USDCNH", 7.25, 0)
    assert fx.try_rate("EUR", "CNH") == pytest.approx(1.1 * 7.25)
    plain = FxTable("USD")
    plain.update("USDCNH", 7.25, 0)
    assert plain.try_rate("USD", "CNY") is None


def test_configured_equivalence_is_fallback_and_exact_rate_wins():
    t = FxTable("USD", equivalents={"CNY": "CNH"})
    t.update("USDCNH", 7.25, 0)
    assert t.rate("USD", "CNY") == 7.25
    assert t.rate("CNY", "USD") == pytest.approx(1 / 7.25)
    t.update("USDCNY", 7.2, 0)
    assert t.rate("USD", "CNY") == 7.2


def test_fx_message_updates_mid_and_receive_time():
    t = FxTable()
    assert t.on_fx(FxRate(pair="USDHKD", bid=7.79, ask=7.81, exch_ts_ns=5, recv_ns=123))
    assert t.rate("USD", "HKD") == pytest.approx(7.8)
    assert t.age_ns("USDHKD", 200) == 77


def test_unusable_rate_ignored(fx):
    assert not fx.update("USDHKD", 0.0, 1)
    assert not fx.update("USDHKD", float("nan"), 1)
    assert not fx.update("USD", 1.0, 1)
    assert fx.rate("USD", "HKD") == 7.8


def test_stale_lists_old_and_never_received_expected_pairs():
    t = FxTable(expected=["USDCNY", "USDHKD", "USDCNH"])
    t.update("USDCNY", 7.2, 0)
    t.update("USDHKD", 7.8, 4 * SEC)
    assert t.stale(5 * SEC, 5 * SEC) == ["USDCNH"]
    assert t.stale(5 * SEC + 1, 5 * SEC) == ["USDCNH", "USDCNY"]
    t.update("USDCNY", 7.2, 5 * SEC)
    t.update("USDCNH", 7.2, 5 * SEC)
    assert t.stale(6 * SEC, 5 * SEC) == []
