from __future__ import annotations

import msgspec
import pytest

from bus.messages import OrderPurpose, OrderRequest, Side
from configs.schema import AccountCfg, LimitsCfg, SubAccountCfg
from execution.positions import PositionBook
from riskguard.limits import PreTradeLimits

MID = 556.0  # au, tick 0.02, multiplier 1000, CNY
CNY_USD = 1 / 7.2
SEC = 1_000_000_000


def order(**kw) -> OrderRequest:
    base = dict(
        cl_ord_id="o1", trade_id="t1", account="cn-a", venue="SHFE", instrument="au",
        side=Side.BUY, qty=5, price=MID,
    )
    base.update(kw)
    return OrderRequest(**base)


@pytest.fixture
def accounts(demo):
    cn = demo.accounts["cn"]
    subs = [
        SubAccountCfg(name="cn-a"),
        SubAccountCfg(name="cn-b", deny=["au"]),
        SubAccountCfg(name="cn-c", allow=["ag"]),
    ]
    return {"cn": msgspec.structs.replace(cn, sub_accounts=subs), "hk": demo.accounts["hk"]}


def limits(demo, accounts, **kw) -> PreTradeLimits:
    return PreTradeLimits(LimitsCfg(**kw), demo.instruments, accounts, book=PositionBook({"au_gc": (3, 1)}))


def held(lim: PreTradeLimits, instrument: str, qty: int) -> None:
    """The position book the limits read now holds `qty` more lots of `instrument`."""
    lim.book.move("cn", instrument, qty)


def held_units(lim: PreTradeLimits, pair: str, units: int) -> None:
    lim.book._units[pair] = lim.book.units(pair) + units


def check(lim: PreTradeLimits, o: OrderRequest, now_ns: int = 0, mid: float | None = MID,
          fx: float | None = CNY_USD, **kw) -> str | None:
    return lim.check(o, now_ns, mid, fx, **kw)


def test_order_within_every_limit_passes(demo, accounts):
    assert check(limits(demo, accounts), order()) is None


def test_order_given_by_venue_symbol_passes(demo, accounts):
    assert check(limits(demo, accounts), order(instrument="au2612")) is None


def test_order_qty_above_max_denied_with_reason(demo, accounts):
    assert check(limits(demo, accounts), order(qty=60)) == "LIMIT_ORDER_QTY: qty=60 max=50"


def test_order_qty_at_max_passes(demo, accounts):
    assert check(limits(demo, accounts), order(qty=50)) is None


def test_order_notional_in_base_above_max_denied(demo, accounts, reason_format):
    lim = limits(demo, accounts, max_order_notional=1_000_000.0)
    # 10 lots = 5.56M CNY = 772k USD passes; 15 lots = 1.158M USD does not
    assert check(lim, order(qty=10)) is None
    reason = check(lim, order(qty=15))
    assert reason == "LIMIT_ORDER_NOTIONAL: notional=1158333.33 max=1000000.00 ccy=USD"
    assert reason_format.match(reason)


def test_market_order_notional_uses_last_mid(demo, accounts):
    lim = limits(demo, accounts, max_order_notional=1_000_000.0)
    assert check(lim, order(qty=15, price=None)).startswith("LIMIT_ORDER_NOTIONAL:")


def test_open_order_without_fx_denied(demo, accounts):
    assert check(limits(demo, accounts), order(), fx=None) == "LIMIT_FX_MISSING: ccy=CNY base=USD"


def test_open_order_without_quote_denied(demo, accounts):
    assert check(limits(demo, accounts), order(), mid=None) == "LIMIT_NO_QUOTE: instrument=au"


def test_position_past_max_denied_and_reduction_passes(demo, accounts):
    lim = limits(demo, accounts, max_position=100)
    held(lim, "au", 95)
    assert check(lim, order(qty=5)) is None  # exactly at max
    held(lim, "au", 5)
    assert check(lim, order(qty=1)) == "LIMIT_POSITION: instrument=au position=100 order=1 max=100"
    assert check(lim, order(side=Side.SELL, qty=10)) is None


def test_position_flip_past_max_denied(demo, accounts):
    lim = limits(demo, accounts, max_position=100, max_order_qty=500)
    held(lim, "au", 10)
    assert check(lim, order(side=Side.SELL, qty=120)).startswith("LIMIT_POSITION: instrument=au position=10 order=-120")


def test_pair_position_past_max_denied_and_unwind_passes(demo, accounts):
    lim = limits(demo, accounts, max_pair_position=20)
    held_units(lim, "au_gc", 20)
    assert lim.check_pair("au_gc", 1) == "LIMIT_PAIR_POSITION: pair=au_gc units=20 delta=1 max=20"
    assert lim.check_pair("au_gc", -1) is None
    assert check(lim, order(), pair="au_gc", pair_delta=1).startswith("LIMIT_PAIR_POSITION:")
    assert check(lim, order(), pair="au_gc", pair_delta=-1) is None


def test_order_rate_over_sliding_second_denied_then_window_slides(demo, accounts):
    lim = limits(demo, accounts, max_orders_per_s=3)
    for t in (0, 1, 2):
        assert check(lim, order(), now_ns=t * 1_000_000) is None
    assert check(lim, order(), now_ns=3_000_000) == "LIMIT_ORDER_RATE: orders=3 window_ms=1000 max=3"
    assert check(lim, order(), now_ns=SEC - 1) is not None
    assert check(lim, order(), now_ns=SEC) is None  # the order at t=0 left the window


def test_denied_orders_do_not_use_rate_budget(demo, accounts):
    lim = limits(demo, accounts, max_orders_per_s=1)
    assert check(lim, order(qty=60)) is not None
    assert check(lim, order()) is None


def test_price_outside_band_denied_and_edge_of_band_passes(demo, accounts, reason_format):
    lim = limits(demo, accounts, price_band_ticks=50)  # 50 x 0.02 = 1.0
    assert check(lim, order(price=MID + 1.0)) is None
    assert check(lim, order(price=MID - 1.0)) is None
    reason = check(lim, order(price=MID + 1.04))
    assert reason == "LIMIT_PRICE_BAND: instrument=au px=557.04 mid=556 ticks=52.0 max=50"
    assert reason_format.match(reason)


def test_market_order_passes_price_band(demo, accounts):
    assert check(limits(demo, accounts), order(price=None)) is None


def test_sub_account_deny_list_denies_instrument(demo, accounts):
    reason = check(limits(demo, accounts), order(account="cn-b"))
    assert reason == "LIMIT_INSTRUMENT_DENIED: account=cn-b instrument=au"


def test_sub_account_allow_list_denies_other_instruments(demo, accounts):
    reason = check(limits(demo, accounts), order(account="cn-c"))
    assert reason == "LIMIT_INSTRUMENT_NOT_ALLOWED: account=cn-c instrument=au"


def test_parent_account_name_passes(demo, accounts):
    assert check(limits(demo, accounts), order(account="cn")) is None


def test_unknown_account_denied(demo, accounts):
    assert check(limits(demo, accounts), order(account="zz")) == "LIMIT_ACCOUNT_UNKNOWN: account=zz"


def test_unknown_instrument_and_wrong_venue_denied(demo, accounts):
    lim = limits(demo, accounts)
    assert check(lim, order(instrument="xx")).startswith("LIMIT_INSTRUMENT_UNKNOWN:")
    assert check(lim, order(venue="COMEX")).startswith("LIMIT_VENUE_MISMATCH: instrument=au")


@pytest.mark.parametrize("purpose", [OrderPurpose.ROLLBACK, OrderPurpose.FLATTEN])
def test_reducing_order_passes_every_exposure_limit(demo, accounts, purpose):
    lim = limits(demo, accounts, max_position=10, max_orders_per_s=1, max_order_notional=1.0)
    held(lim, "au", 10)
    assert check(lim, order(purpose=purpose, side=Side.SELL)) is None  # uses the whole rate budget
    o = order(purpose=purpose, qty=60, price=MID + 50.0, account="cn-b")
    assert check(lim, o, mid=None, fx=None) is None
    assert check(lim, o, pair="au_gc", pair_delta=99) is None


def test_reducing_orders_count_in_rate_window(demo, accounts):
    lim = limits(demo, accounts, max_orders_per_s=2)
    assert check(lim, order(purpose=OrderPurpose.ROLLBACK)) is None
    assert check(lim, order(purpose=OrderPurpose.ROLLBACK)) is None
    assert check(lim, order()).startswith("LIMIT_ORDER_RATE:")


def test_malformed_reducing_order_denied(demo, accounts):
    lim = limits(demo, accounts)
    assert check(lim, order(purpose=OrderPurpose.ROLLBACK, qty=0)) == "LIMIT_ORDER_QTY: qty=0 min=1"
    assert check(lim, order(purpose=OrderPurpose.FLATTEN, price=float("nan"))) == "LIMIT_ORDER_PRICE: px=nan"


def test_resubmit_is_checked_like_open(demo, accounts):
    lim = limits(demo, accounts)
    assert check(lim, order(purpose=OrderPurpose.RESUBMIT, qty=60)) == "LIMIT_ORDER_QTY: qty=60 max=50"


def test_every_denial_reason_has_category_condition_format(demo, accounts, reason_format):
    lim = limits(demo, accounts, max_orders_per_s=1, max_position=1, max_pair_position=1)
    held_units(lim, "au_gc", 1)
    reasons = [
        check(lim, order(qty=60)),
        check(lim, order(qty=2)),
        check(lim, order(), pair="au_gc", pair_delta=1),
        check(lim, order(price=600.0)),
        check(lim, order(account="cn-b")),
        check(lim, order(account="cn-c")),
        check(lim, order(account="zz")),
        check(lim, order(instrument="xx")),
        check(lim, order(), fx=None),
        check(lim, order(), mid=None),
        check(lim, order(qty=0)),
        check(lim, order(qty=1)),  # passes, fills the rate budget
        check(lim, order(qty=1)),
    ]
    assert reasons[11] is None
    denied = [r for r in reasons if r is not None]
    assert len(denied) == 12
    for r in denied:
        assert reason_format.match(r), r


def test_from_config_uses_risk_limits(demo):
    lim = PreTradeLimits.from_config(demo, PositionBook({}))
    assert lim.cfg == demo.risk.limits
    assert lim.check(order(account="cn"), 0, MID, CNY_USD) is None


def test_accounts_without_sub_accounts(demo):
    accounts = {"cn": AccountCfg(currency="CNY", balance=1.0, venues=["SHFE"])}
    lim = PreTradeLimits(LimitsCfg(), demo.instruments, accounts, book=PositionBook({}))
    assert lim.check(order(account="cn"), 0, MID, CNY_USD) is None
