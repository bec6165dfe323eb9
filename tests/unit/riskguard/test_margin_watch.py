from __future__ import annotations

import msgspec
import pytest

from bus.messages import ExecType, FxRate, KillSwitch, OrderEvent, Quote, RiskLevel, Severity, Side
from riskguard.watch import MarginWatch

MS = 1_000_000
SEC = 1_000 * MS


def quote(venue: str, symbol: str, px: float, t: int = 0) -> Quote:
    return Quote(venue=venue, symbol=symbol, bid=px, ask=px, bid_size=1, ask_size=1, exch_ts_ns=0, recv_ns=t)


def fx(pair: str, mid: float, t: int = 0) -> FxRate:
    return FxRate(pair=pair, bid=mid, ask=mid, exch_ts_ns=0, recv_ns=t)


def fill(venue: str, instrument: str, side: Side, qty: int, px: float, exec_id: str) -> OrderEvent:
    return OrderEvent(
        cl_ord_id="c", exec_type=ExecType.FILL, venue=venue, instrument=instrument, side=side,
        order_qty=qty, cum_qty=qty, leaves_qty=0, last_qty=qty, last_px=px, exec_id=exec_id,
    )


@pytest.fixture
def watch(demo) -> MarginWatch:
    w = MarginWatch(demo)
    w.warm_up()
    return w


def feed_fx(w: MarginWatch, t: int = 0) -> None:
    w.on_fx(fx("USDCNY", 7.2, t))
    w.on_fx(fx("USDHKD", 7.8, t))
    w.on_quote(quote("FX", "USDCNH", 7.2, t))  # an FX instrument's quote feeds the FX table too


def test_before_any_fx_state_is_warn_for_stale_fx(watch):
    ev = watch.evaluate(0)
    assert ev.state.state is RiskLevel.WARN
    assert ev.state.reason == "RISK_FX_STALE: pairs=USDCNH,USDCNY,USDHKD"
    assert ev.changed
    assert {a.code for a in ev.alerts} == {"RISK_STATE_WARN", "RISK_FX_STALE"}


def test_flat_book_with_fx_is_normal_with_balances_as_equity(watch):
    feed_fx(watch)
    ev = watch.evaluate(1)
    assert ev.state.state is RiskLevel.NORMAL
    cn, hk = ev.snapshot.accounts
    assert (cn.account, cn.currency, cn.equity, cn.initial) == ("cn", "CNY", 2_500_000.0, 0.0)
    assert (hk.account, hk.currency, hk.equity) == ("hk", "HKD", 4_000_000.0)
    assert ev.snapshot.total.equity == pytest.approx(2_500_000.0 / 7.2 + 4_000_000.0 / 7.8)
    assert ev.snapshot.base_currency == "USD"


def test_hedged_pair_margin_in_snapshot(watch):
    feed_fx(watch)
    watch.on_quote(quote("SHFE", "au2612", 556.0))
    watch.on_quote(quote("COMEX", "GCZ6", 2400.0))
    watch.on_fill(fill("SHFE", "au", Side.BUY, 3, 556.0, "e1"), account="cn-a")
    watch.on_fill(fill("COMEX", "GC", Side.SELL, 1, 2400.0, "e2"))
    watch.on_fill(fill("COMEX", "GC", Side.SELL, 1, 2400.0, "e2"))  # repeated report
    ev = watch.evaluate(1)
    cn, hk = ev.snapshot.accounts
    # au 3 x 556 x 1000 x 10 % = 166,800 CNY; GC 16,500 USD; credit 60 %; broker add-on 1.3
    assert cn.initial == pytest.approx(166_800.0 * 0.4 * 1.3)
    assert hk.initial == pytest.approx(16_500.0 * 7.8 * 0.4 * 1.3)
    assert hk.maintenance == pytest.approx(hk.initial * 0.8)
    assert ev.snapshot.total.initial == pytest.approx((166_800.0 / 7.2 + 16_500.0) * 0.4 * 1.3)
    assert ev.state.state is RiskLevel.NORMAL
    assert [p.qty for p in watch.positions()] == [3, -1]


def test_overloaded_account_alerts_and_suggests_transfer(watch):
    feed_fx(watch)
    watch.on_quote(quote("SHFE", "au2612", 556.0))
    watch.on_fill(fill("SHFE", "au", Side.BUY, 35, 556.0, "e1"))
    ev = watch.evaluate(1)
    # cn IM = 35 x 55,600 x 1.3 = 2,529,800 CNY (101 %); to reach 75 %: 873,067 CNY = 945,822 HKD
    assert ev.snapshot.suggestion == "move 946,000 HKD from hk to cn"
    util = [a for a in ev.alerts if a.code == "RISK_ACCOUNT_UTILISATION"]
    assert len(util) == 1 and util[0].text.endswith("move 946,000 HKD from hk to cn")
    assert not ev.snapshot.margin_call
    assert ev.state.state is RiskLevel.NORMAL  # total utilisation is what drives the state
    again = watch.evaluate(2)
    assert not [a for a in again.alerts if a.code == "RISK_ACCOUNT_UTILISATION"]  # edge-triggered


def test_utilisation_over_halt_threshold_halts(watch):
    feed_fx(watch)
    watch.on_quote(quote("HKEX", "HSIZ6", 25_000.0))
    watch.on_fill(fill("HKEX", "HSI", Side.BUY, 50, 25_000.0, "e1"))
    ev = watch.evaluate(1)
    # 50 x 125,000 x 1.3 = 8.125M HKD = 1.04M USD against 0.86M USD equity
    assert ev.state.state is RiskLevel.HALTED
    assert ev.state.reason.startswith("RISK_UTILISATION_HALTED:")
    assert any(a.code == "RISK_STATE_HALTED" and a.severity is Severity.CRITICAL for a in ev.alerts)


def test_loss_below_maintenance_buffer_is_margin_call(demo):
    cfg = msgspec.structs.replace(
        demo,
        risk=msgspec.structs.replace(demo.risk, warn_utilisation=5.0, reduce_utilisation=6.0, halt_utilisation=7.0),
    )
    w = MarginWatch(cfg)
    feed_fx(w)
    w.on_fill(fill("HKEX", "HSI", Side.BUY, 20, 25_000.0, "e1"))
    w.on_quote(quote("HKEX", "HSIZ6", 22_000.0))
    ev = w.evaluate(1)
    # hk equity 4M - 20 x 3,000 x 50 = 1M HKD; maintenance 20 x 110,000 x 1.3 x 0.8 = 2.288M HKD
    assert ev.snapshot.margin_call
    assert ev.state.state is RiskLevel.REDUCE_ONLY
    assert ev.state.reason.startswith("RISK_MARGIN_CALL: account=hk equity=1000000.00")
    assert any(a.code == "RISK_MARGIN_CALL" for a in ev.alerts)


def test_kill_switch_halts_and_resume_restores(watch):
    feed_fx(watch)
    assert watch.evaluate(1).state.state is RiskLevel.NORMAL
    change = watch.on_kill(KillSwitch(halted=True, reason="desk halt", ts_ns=2))
    assert change.state is RiskLevel.HALTED
    assert watch.on_kill(KillSwitch(halted=True, reason="desk halt", ts_ns=3)) is None
    ev = watch.evaluate(4)
    assert (ev.state.state, ev.state.computed, ev.state.kill) == (RiskLevel.HALTED, RiskLevel.NORMAL, True)
    assert ev.changed
    assert ev.state.reason == "RISK_KILL_SWITCH: reason=desk halt"
    assert any(a.code == "RISK_STATE_HALTED" for a in ev.alerts)
    assert not watch.evaluate(5).changed
    watch.set_kill(False, "", 6)
    ev = watch.evaluate(7)
    assert (ev.state.state, ev.state.kill, ev.changed) == (RiskLevel.NORMAL, False, True)


def test_fx_going_stale_warns_once_then_clears(watch):
    feed_fx(watch, t=0)
    assert watch.evaluate(1).state.state is RiskLevel.NORMAL
    ev = watch.evaluate(6 * SEC)
    assert ev.state.state is RiskLevel.WARN and ev.changed
    assert len([a for a in ev.alerts if a.code == "RISK_FX_STALE"]) == 3
    assert not [a for a in watch.evaluate(6 * SEC + 1).alerts if a.code == "RISK_FX_STALE"]
    feed_fx(watch, t=6 * SEC + 2)
    ev = watch.evaluate(6 * SEC + 3)
    assert ev.state.state is RiskLevel.NORMAL
    assert len([a for a in ev.alerts if a.code == "RISK_FX_STALE_CLEARED"]) == 3
