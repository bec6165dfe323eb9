from __future__ import annotations

import msgspec
import pytest

from configs.schema import RiskCfg, SpreadCreditCfg
from riskguard.margin import (
    MarginCalculator,
    MarginPosition,
    SpreadCredit,
    credits_from_config,
    fixed_margin,
    percent_margin,
)

USD_PER_CNY = 1 / 7.2
USD_PER_HKD = 1 / 7.8
PLAIN = RiskCfg(broker_addon=1.0, maintenance_ratio=0.8)


def pos(instrument: str, qty: int, price: float, fx: float = 1.0, account: str = "a") -> MarginPosition:
    return MarginPosition(account=account, instrument=instrument, qty=qty, price=price, fx_to_base=fx)


def scen(demo, *keys: str, **over) -> dict:
    """The demo catalogue with `keys` switched to the scenario model."""
    insts = dict(demo.instruments)
    for k in keys:
        insts[k] = msgspec.structs.replace(insts[k], margin_model="scenario", **over)
    return insts


def test_hsi_percent_margin_textbook_example():
    assert percent_margin(1, 25_000.0, 50.0, 0.10) == 125_000.0


def test_hsi_one_lot_initial_and_maintenance(demo):
    r = MarginCalculator(demo.instruments, PLAIN).compute([pos("HSI", 1, 25_000.0)])
    assert r.initial == pytest.approx(125_000.0)
    assert r.maintenance == pytest.approx(100_000.0)
    assert r.account("a").initial == pytest.approx(125_000.0)


def test_broker_addon_scales_initial_and_maintenance(demo):
    risk = RiskCfg(broker_addon=1.3, maintenance_ratio=0.8)
    r = MarginCalculator(demo.instruments, risk).compute([pos("HSI", -2, 25_000.0)])
    assert r.initial == pytest.approx(2 * 125_000.0 * 1.3)
    assert r.maintenance == pytest.approx(2 * 125_000.0 * 1.3 * 0.8)


def test_percent_margin_converted_to_base(demo):
    r = MarginCalculator(demo.instruments, PLAIN).compute([pos("HSI", 1, 25_000.0, USD_PER_HKD)])
    assert r.initial == pytest.approx(125_000.0 / 7.8)


def test_fixed_margin_per_lot(demo):
    assert fixed_margin(-3, 16_500.0) == 49_500.0
    r = MarginCalculator(demo.instruments, PLAIN).compute([pos("GC", -3, 2400.0)])
    assert r.initial == pytest.approx(49_500.0)
    assert r.positions[0].model == "fixed"


def test_flat_positions_need_no_margin(demo):
    r = MarginCalculator(demo.instruments, PLAIN).compute([pos("HSI", 0, 25_000.0)])
    assert (r.initial, r.positions, r.accounts) == (0.0, (), {})


def test_margin_summed_per_account(demo):
    r = MarginCalculator(demo.instruments, PLAIN).compute(
        [pos("HSI", 1, 25_000.0, account="hk"), pos("GC", 1, 2400.0, account="hk"), pos("GC", 1, 2400.0, account="x")]
    )
    assert r.account("hk").initial == pytest.approx(125_000.0 + 16_500.0)
    assert r.account("x").initial == pytest.approx(16_500.0)
    assert r.account("nobody").initial == 0.0


def test_credit_ratio_taken_from_pair_config(demo):
    credits = credits_from_config(demo)
    assert credits[0] == SpreadCredit(a="au", b="GC", rate=0.6, ratio_a=3, ratio_b=1)
    assert credits[1] == SpreadCredit(a="HSI", b="MHI", rate=0.8, ratio_a=1, ratio_b=5)


def test_spread_credit_lowers_margin_of_hedged_pair(demo):
    calc = MarginCalculator.from_config(demo)
    calc.risk = PLAIN
    au = 3 * 556.0 * 1000.0 * 0.10 * USD_PER_CNY  # 23,166.67 USD
    gc = 16_500.0
    hedged = calc.compute([pos("au", 3, 556.0, USD_PER_CNY, "cn"), pos("GC", -1, 2400.0, 1.0, "hk")])
    same_way = calc.compute([pos("au", 3, 556.0, USD_PER_CNY, "cn"), pos("GC", 1, 2400.0, 1.0, "hk")])
    assert same_way.initial == pytest.approx(au + gc)
    assert hedged.initial == pytest.approx((au + gc) * 0.4)
    assert hedged.account("cn").initial == pytest.approx(au * 0.4)
    assert hedged.account("hk").initial == pytest.approx(gc * 0.4)


def test_spread_credit_only_on_matched_part(demo):
    credits = [SpreadCredit(a="au", b="GC", rate=0.6, ratio_a=3, ratio_b=1)]
    calc = MarginCalculator(demo.instruments, PLAIN, credits=credits)
    au6 = 6 * 556.0 * 1000.0 * 0.10 * USD_PER_CNY
    r = calc.compute([pos("au", 6, 556.0, USD_PER_CNY), pos("GC", -1, 2400.0)])
    by = {p.instrument: p for p in r.positions}
    assert by["au"].credit == pytest.approx(0.6 * au6 * 3 / 6)  # one 3:1 spread out of 6 lots
    assert by["GC"].credit == pytest.approx(0.6 * 16_500.0)


def test_lots_are_not_credited_twice(demo):
    credits = [SpreadCredit(a="GC", b="HSI", rate=0.5), SpreadCredit(a="GC", b="MHI", rate=0.5)]
    calc = MarginCalculator(demo.instruments, PLAIN, credits=credits)
    r = calc.compute([pos("GC", 1, 2400.0), pos("HSI", -1, 25_000.0), pos("MHI", -1, 25_000.0)])
    by = {p.instrument: p for p in r.positions}
    assert by["GC"].credit == pytest.approx(0.5 * 16_500.0)
    assert by["MHI"].credit == 0.0


def test_cross_account_credit_can_be_disabled(demo):
    calc = MarginCalculator.from_config(demo, cross_account_credits=False)
    r = calc.compute([pos("au", 3, 556.0, USD_PER_CNY, "cn"), pos("GC", -1, 2400.0, 1.0, "hk")])
    assert all(p.credit == 0.0 for p in r.positions)


def test_scenario_single_position_is_extreme_move_at_35_percent(demo):
    calc = MarginCalculator(scen(demo, "HSI"), PLAIN)
    r = calc.compute([pos("HSI", 1, 25_000.0, account="hk")])
    # scan range 10 % of 25,000 x 50 = 125,000; extreme 3 x range x 0.35 = 131,250
    assert r.initial == pytest.approx(131_250.0)
    g = r.groups[0]
    assert (g.account, g.commodity, g.worst_scenario) == ("hk", "hsi", 15)
    assert r.positions[0].group == "hk/hsi"


def test_scenario_short_position_worst_case_is_extreme_up(demo):
    r = MarginCalculator(scen(demo, "HSI"), PLAIN).compute([pos("HSI", -2, 25_000.0)])
    assert r.initial == pytest.approx(2 * 131_250.0)
    assert r.groups[0].worst_scenario == 14


def test_scenario_offsetting_positions_in_one_commodity_net_plus_calendar_charge(demo):
    calc = MarginCalculator(scen(demo, "HSI", "MHI"), PLAIN, calendar_charge={"hsi": 5_000.0})
    # +1 HSI (HKD 50/pt) against -5 MHI (HKD 10/pt): equal exposure, scan risk 0
    r = calc.compute([pos("HSI", 1, 25_000.0), pos("MHI", -5, 25_000.0)])
    g = r.groups[0]
    assert g.scan_risk == pytest.approx(0.0, abs=1e-6)
    assert (g.spread_lots, g.calendar_charge) == (1.0, 5_000.0)
    assert r.initial == pytest.approx(5_000.0)


def test_scenario_positions_in_different_accounts_do_not_net(demo):
    calc = MarginCalculator(scen(demo, "HSI", "MHI"), PLAIN)
    r = calc.compute([pos("HSI", 1, 25_000.0, account="a"), pos("MHI", -5, 25_000.0, account="b")])
    assert r.initial == pytest.approx(2 * 131_250.0)
    assert len(r.groups) == 2


def test_scenario_groups_of_different_commodities_add(demo):
    calc = MarginCalculator(scen(demo, "HSI", "ES"), PLAIN)
    r = calc.compute([pos("HSI", 1, 25_000.0), pos("ES", -1, 5_000.0)])
    es = 5_000.0 * 50.0 * 0.06 * 1.05
    assert r.initial == pytest.approx(131_250.0 + es)


def test_spread_credit_between_scenario_groups(demo):
    credits = [SpreadCredit(a="ES", b="NQ", rate=0.5)]
    calc = MarginCalculator(scen(demo, "ES", "NQ"), PLAIN, credits=credits)
    es = 5_000.0 * 50.0 * 0.06 * 1.05
    nq = 18_000.0 * 20.0 * 0.08 * 1.05
    r = calc.compute([pos("ES", 1, 5_000.0), pos("NQ", -1, 18_000.0)])
    assert r.initial == pytest.approx(0.5 * (es + nq))


def test_no_credit_inside_one_scenario_group(demo):
    credits = [SpreadCredit(a="HSI", b="MHI", rate=0.8)]
    calc = MarginCalculator(scen(demo, "HSI", "MHI"), PLAIN, credits=credits)
    r = calc.compute([pos("HSI", 2, 25_000.0), pos("MHI", -5, 25_000.0)])
    assert all(p.credit == 0.0 for p in r.positions)
    assert r.initial == pytest.approx(131_250.0)  # one net HSI lot of exposure


def test_maintenance_is_initial_times_ratio(demo):
    risk = RiskCfg(maintenance_ratio=0.75, broker_addon=1.0, spread_credits=[SpreadCreditCfg(a="au", b="GC", rate=0.5)])
    r = MarginCalculator(demo.instruments, risk).compute([pos("GC", 2, 2400.0)])
    assert r.maintenance == pytest.approx(0.75 * r.initial)
