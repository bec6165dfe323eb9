from __future__ import annotations

import pytest

from riskguard.fx import FxTable
from riskguard.state import account_margin
from riskguard.transfer import suggest_transfer


@pytest.fixture
def fx() -> FxTable:
    t = FxTable()
    t.update("USDCNY", 7.2, 0)
    t.update("USDHKD", 7.8, 0)
    return t


def test_overloaded_account_gets_transfer_from_account_with_surplus(fx):
    cn = account_margin("cn", "CNY", 1_000_000.0, 950_000.0, 760_000.0)
    hk = account_margin("hk", "HKD", 4_000_000.0, 100_000.0, 80_000.0)
    s = suggest_transfer([cn, hk], fx.rate, "USD", 0.75)
    # cn needs 950,000 / 0.75 - 1,000,000 = 266,666.67 CNY = 288,888.89 HKD -> 289,000 HKD
    assert s.text == "move 289,000 HKD from hk to cn"
    assert (s.src, s.dst, s.amount, s.currency, s.dst_currency, s.covers) == ("hk", "cn", 289_000.0, "HKD", "CNY", True)
    assert s.amount_dst == pytest.approx(289_000.0 * 7.2 / 7.8)


def test_transfer_restores_target_utilisation(fx):
    cn = account_margin("cn", "CNY", 2_000_000.0, 2_300_000.0, 1_840_000.0)
    hk = account_margin("hk", "HKD", 9_000_000.0, 0.0, 0.0)
    s = suggest_transfer([cn, hk], fx.rate, "USD", 0.75, round_to=100_000.0)
    assert s.text == "move 1,200,000 HKD from hk to cn"
    assert 2_300_000.0 / (2_000_000.0 + s.amount_dst) <= 0.75


def test_no_suggestion_when_every_account_is_below_trigger(fx):
    cn = account_margin("cn", "CNY", 1_000_000.0, 700_000.0, 0.0)
    hk = account_margin("hk", "HKD", 1_000_000.0, 0.0, 0.0)
    assert suggest_transfer([cn, hk], fx.rate, "USD", 0.75, trigger=0.8) is None


def test_no_suggestion_without_a_donor(fx):
    cn = account_margin("cn", "CNY", 1_000_000.0, 950_000.0, 0.0)
    hk = account_margin("hk", "HKD", 1_000_000.0, 900_000.0, 0.0)
    assert suggest_transfer([cn, hk], fx.rate, "USD", 0.75) is None


def test_small_donor_gives_partial_transfer(fx):
    cn = account_margin("cn", "CNY", 1_000_000.0, 1_500_000.0, 0.0)
    hk = account_margin("hk", "HKD", 300_000.0, 150_000.0, 0.0)  # surplus 100,000 HKD at 0.75
    s = suggest_transfer([cn, hk], fx.rate, "USD", 0.75)
    assert (s.amount, s.covers) == (100_000.0, False)


def test_neediest_account_in_base_currency_is_served_first(fx):
    a = account_margin("a", "CNY", 100_000.0, 90_000.0, 0.0)
    b = account_margin("b", "HKD", 1_000_000.0, 900_000.0, 0.0)  # bigger shortfall in USD
    c = account_margin("c", "USD", 10_000_000.0, 0.0, 0.0)
    s = suggest_transfer([a, b, c], fx.rate, "USD", 0.75)
    assert (s.src, s.dst, s.currency) == ("c", "b", "USD")
