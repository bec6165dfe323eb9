"""`riskguard.capital.capital_view`: what `xmc capital --json` prints, from marginwatch's snapshot.

Per account, in its own currency: equity, initial, maintenance, utilisation, headroom; headroom
again in the base currency (through the FX rate marginwatch holds); the margin-call line
(maintenance x `risk.margin_call_buffer`) and the distance above it; whether the account is near
its threshold (utilisation >= `risk.warn_utilisation`). Then the total (base currency), the
margin-call flag, the suggested transfer and the risk state.
"""

from __future__ import annotations

import json

import msgspec
import pytest

from bus.messages import ExecType, FxRate, OrderEvent, Quote, RiskLevel, RiskState, Side
from configs.schema import Config, RiskCfg
from riskguard.capital import capital_view
from riskguard.fx import FxTable
from riskguard.state import account_margin, margin_snapshot
from riskguard.watch import MarginWatch

FIELDS = {"account", "currency", "equity", "initial", "maintenance", "utilisation", "headroom", "headroom_base",
          "margin_call_line", "above_call_line", "warn_utilisation", "near_threshold"}


def fx_table() -> FxTable:
    fx = FxTable("USD")
    fx.update("USDCNY", 7.2, 0)
    fx.update("USDHKD", 7.8, 0)
    return fx


def hand_snapshot(suggestion: str = "", margin_call: bool = False):  # type: ignore[no-untyped-def]
    cn = account_margin("cn", "CNY", 300_000.0, 120_000.0, 96_000.0)
    hk = account_margin("hk", "HKD", 100_000.0, 85_000.0, 68_000.0)
    total = account_margin("total", "USD", 300_000.0 / 7.2 + 100_000.0 / 7.8, 120_000.0 / 7.2 + 85_000.0 / 7.8,
                           (120_000.0 / 7.2 + 85_000.0 / 7.8) * 0.8)
    return margin_snapshot("USD", [cn, hk], total, margin_call, 123, suggestion)


def test_rows_by_hand_with_fx_call_line_and_threshold() -> None:
    risk = RiskCfg(margin_call_buffer=1.2, warn_utilisation=0.8)
    doc = capital_view(hand_snapshot(), risk, fx_table().try_rate)
    assert doc["base_currency"] == "USD" and doc["ts_ns"] == 123
    cn, hk = doc["accounts"]
    assert set(cn) == FIELDS and set(doc["total"]) == FIELDS
    # cn: 120,000 / 300,000 = 0.4; headroom 180,000 CNY = 25,000 USD at 7.2;
    # call line 96,000 x 1.2 = 115,200; 300,000 - 115,200 = 184,800 above it
    assert cn == {
        "account": "cn", "currency": "CNY", "equity": 300_000.0, "initial": 120_000.0, "maintenance": 96_000.0,
        "utilisation": 0.4, "headroom": 180_000.0, "headroom_base": 25_000.0, "margin_call_line": 115_200.0,
        "above_call_line": 184_800.0, "warn_utilisation": 0.8, "near_threshold": False,
    }
    # hk: 85,000 / 100,000 = 0.85 >= 0.8 (near); headroom 15,000 HKD / 7.8 = 1,923.08 USD;
    # call line 68,000 x 1.2 = 81,600; 18,400 above it
    assert (hk["utilisation"], hk["near_threshold"]) == (0.85, True)
    assert hk["headroom_base"] == 1923.08
    assert (hk["margin_call_line"], hk["above_call_line"]) == (81_600.0, 18_400.0)
    # total, in the base currency: equity 41,666.67 + 12,820.51; initial 16,666.67 + 10,897.44
    t = doc["total"]
    assert t["currency"] == "USD" and t["equity"] == pytest.approx(54_487.18, abs=0.01)
    assert t["initial"] == pytest.approx(27_564.10, abs=0.01)
    assert t["headroom_base"] == t["headroom"] == pytest.approx(26_923.08, abs=0.01)
    assert t["margin_call_line"] == pytest.approx(27_564.10 * 0.8 * 1.2, abs=0.01)
    assert (t["utilisation"], t["near_threshold"]) == (round(27_564.1026 / 54_487.1795, 4), False)
    assert (doc["margin_call"], doc["suggested_transfer"], doc["risk_state"]) == (False, "", None)
    json.dumps(doc)  # one JSON document


def test_buffer_and_warn_level_come_from_the_risk_config() -> None:
    risk = RiskCfg(margin_call_buffer=1.5, warn_utilisation=0.35)
    cn, hk = capital_view(hand_snapshot(), risk, fx_table().try_rate)["accounts"]
    assert (cn["margin_call_line"], cn["above_call_line"]) == (144_000.0, 156_000.0)  # 96,000 x 1.5
    assert (hk["margin_call_line"], hk["above_call_line"]) == (102_000.0, -2_000.0)  # under the line
    assert cn["near_threshold"] and hk["near_threshold"]  # 0.4 and 0.85 >= 0.35
    assert cn["warn_utilisation"] == 0.35


def test_without_a_rate_only_base_currency_rows_have_a_base_headroom() -> None:
    fx = FxTable("USD")
    fx.update("USDCNY", 7.2, 0)  # no HKD rate
    doc = capital_view(hand_snapshot(), RiskCfg(), fx.try_rate)
    cn, hk = doc["accounts"]
    assert cn["headroom_base"] == 25_000.0 and hk["headroom_base"] is None
    assert doc["total"]["headroom_base"] == doc["total"]["headroom"]
    no_rate = capital_view(hand_snapshot(), RiskCfg())  # no rate function at all
    assert [a["headroom_base"] for a in no_rate["accounts"]] == [None, None]
    assert no_rate["total"]["headroom_base"] == no_rate["total"]["headroom"]


def test_margin_call_suggestion_and_state_are_carried() -> None:
    state = RiskState(state=RiskLevel.WARN, computed=RiskLevel.WARN, kill=False, reason="x", utilisation=0.5, ts_ns=1)
    doc = capital_view(hand_snapshot("move 946,000 HKD from hk to cn", True), RiskCfg(), fx_table().try_rate, state)
    assert (doc["margin_call"], doc["suggested_transfer"], doc["risk_state"]) == (
        True, "move 946,000 HKD from hk to cn", "WARN")


# --- from marginwatch's own evaluation -----------------------------------------------------------


def _fill(venue: str, inst: str, side: Side, qty: int, px: float, exec_id: str) -> OrderEvent:
    return OrderEvent(cl_ord_id="c", exec_type=ExecType.FILL, venue=venue, instrument=inst, side=side, order_qty=qty,
                      cum_qty=qty, leaves_qty=0, last_qty=qty, last_px=px, exec_id=exec_id)


def _quote(venue: str, symbol: str, px: float) -> Quote:
    return Quote(venue=venue, symbol=symbol, bid=px, ask=px, bid_size=1, ask_size=1, exch_ts_ns=0, recv_ns=0)


def test_view_of_a_marginwatch_evaluation_matches_the_hand_computed_margins(demo: Config) -> None:
    w = MarginWatch(demo)
    w.warm_up()
    for pair, mid in (("USDCNY", 7.2), ("USDHKD", 7.8), ("USDCNH", 7.2)):
        w.on_fx(FxRate(pair=pair, bid=mid, ask=mid, exch_ts_ns=0, recv_ns=0))
    w.on_quote(_quote("SHFE", "au2612", 556.0))
    w.on_quote(_quote("COMEX", "GCZ6", 2400.0))
    w.on_fill(_fill("SHFE", "au", Side.BUY, 3, 556.0, "e1"), account="cn")
    w.on_fill(_fill("COMEX", "GC", Side.SELL, 1, 2400.0, "e2"))
    ev = w.evaluate(1)
    doc = capital_view(ev.snapshot, demo.risk, w.fx.try_rate, ev.state)
    cn, hk = doc["accounts"]
    # cn: 3 x 556 x 1000 x 10 % = 166,800 CNY, 60 % spread credit, x 1.3 add-on = 86,736 CNY
    # equity 2,500,000 CNY (the test balances; marks at the fill prices: no P&L)
    assert (cn["account"], cn["currency"], cn["equity"], cn["initial"]) == ("cn", "CNY", 2_500_000.0, 86_736.0)
    assert cn["maintenance"] == pytest.approx(86_736.0 * 0.8)
    assert cn["utilisation"] == round(86_736.0 / 2_500_000.0, 4)
    assert cn["margin_call_line"] == pytest.approx(86_736.0 * 0.8 * demo.risk.margin_call_buffer, abs=0.01)
    assert cn["headroom_base"] == pytest.approx((2_500_000.0 - 86_736.0) / 7.2, abs=0.01)
    # hk: 16,500 USD x 0.4 x 1.3 = 8,580 USD = 66,924 HKD
    assert hk["initial"] == pytest.approx(66_924.0, abs=0.01)
    assert hk["headroom_base"] == pytest.approx((4_000_000.0 - 66_924.0) / 7.8, abs=0.01)
    assert doc["total"]["initial"] == pytest.approx(86_736.0 / 7.2 + 8_580.0, abs=0.01)
    assert doc["risk_state"] == "NORMAL" and doc["suggested_transfer"] == ""


def test_view_carries_marginwatchs_suggested_transfer(demo: Config) -> None:
    w = MarginWatch(demo)
    for pair, mid in (("USDCNY", 7.2), ("USDHKD", 7.8), ("USDCNH", 7.2)):
        w.on_fx(FxRate(pair=pair, bid=mid, ask=mid, exch_ts_ns=0, recv_ns=0))
    w.on_quote(_quote("SHFE", "au2612", 556.0))
    w.on_fill(_fill("SHFE", "au", Side.BUY, 35, 556.0, "e1"))
    ev = w.evaluate(1)
    doc = capital_view(ev.snapshot, demo.risk, w.fx.try_rate, ev.state)
    cn = doc["accounts"][0]
    # 35 x 55,600 x 1.3 = 2,529,800 CNY against 2,500,000: over 100 %, near its threshold, headroom negative
    assert cn["utilisation"] == round(2_529_800.0 / 2_500_000.0, 4) and cn["near_threshold"]
    assert cn["headroom"] == pytest.approx(-29_800.0)
    assert cn["headroom_base"] == pytest.approx(-29_800.0 / 7.2, abs=0.01)
    assert doc["suggested_transfer"] == "move 946,000 HKD from hk to cn" == ev.snapshot.suggestion


def test_round_trip_through_json_keeps_every_field() -> None:
    doc = capital_view(hand_snapshot("s"), RiskCfg(), fx_table().try_rate)
    back = json.loads(json.dumps(doc))
    assert back == doc
    assert msgspec.json.decode(msgspec.json.encode(doc)) == doc
