"""TriggerEngine: entry/exit rules and every gate, through the public API the trigger actor uses."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from signals_helpers import MS, fx_rate, make_cfg, quote

from bus.messages import InstrumentStatus, Quote, RiskLevel, Side
from configs.load import load_config
from configs.units import TROY_OUNCE_G
from signals.rules import SIGNAL_NUMBERS, TriggerEngine

T0 = 1_000_000 * MS  # a monotonic time well past zero


def rich(e: TriggerEngine, now: int = T0, *, a_size: float = 10.0, b_size: float = 10.0, exch_ns: int = 0) -> None:
    """A at 101.0/101.1 vs B at 100.0/100.1: selling the spread earns 101.0 - 100.1 = 0.9."""
    e.on_quote(quote("A", 101.0, 101.1, size=a_size, recv_ns=now, exch_ns=exch_ns))
    e.on_quote(quote("B", 100.0, 100.1, size=b_size, recv_ns=now, exch_ns=exch_ns))


def cheap(e: TriggerEngine, now: int = T0) -> None:
    """A at 99.0/99.1 vs B at 100.0/100.1: buying the spread costs 99.1 - 100.0 = -0.9."""
    e.on_quote(quote("A", 99.0, 99.1, recv_ns=now))
    e.on_quote(quote("B", 100.0, 100.1, recv_ns=now))


def flat(e: TriggerEngine, now: int = T0) -> None:
    """A and B at the same prices: buy spread 0.1, sell spread -0.1 (inside exit 0.2)."""
    e.on_quote(quote("A", 100.0, 100.1, recv_ns=now))
    e.on_quote(quote("B", 100.0, 100.1, recv_ns=now))


def test_rich_spread_fires_sell_signal_at_touched_prices() -> None:
    e = TriggerEngine(make_cfg({"ratio_a": 3, "ratio_b": 2, "lots": 2, "expiry_ms": 250.0}))
    rich(e, T0 - 5 * MS)
    [sig] = e.evaluate(T0)
    assert sig.signal_id == "p-1" and sig.pair == "p"
    assert sig.direction is Side.SELL and not sig.closing
    a, b = sig.legs
    assert (a.instrument, a.side, a.qty, a.limit_px) == ("A", Side.SELL, 6, 101.0)
    assert (b.instrument, b.side, b.qty, b.limit_px) == ("B", Side.BUY, 4, 100.1)
    assert sig.spread == pytest.approx(0.9)
    assert sig.expiry_ns == T0 + 250 * MS
    assert sig.tick_recv_ns == T0 - 5 * MS
    assert sig.signal_ns == T0


def test_cheap_spread_fires_buy_signal_lifting_a_and_hitting_b() -> None:
    e = TriggerEngine(make_cfg())
    cheap(e)
    [sig] = e.evaluate(T0)
    assert sig.direction is Side.BUY
    assert [(leg.side, leg.limit_px) for leg in sig.legs] == [(Side.BUY, 99.1), (Side.SELL, 100.0)]
    assert sig.spread == pytest.approx(-0.9)


def test_spread_inside_entry_fires_nothing_and_counts_nothing() -> None:
    e = TriggerEngine(make_cfg())
    flat(e)
    assert e.evaluate(T0) == []
    assert sum(e.suppressed.values()) == 0


def test_tick_recv_ns_is_the_latest_leg_receive_time() -> None:
    e = TriggerEngine(make_cfg())
    e.on_quote(quote("A", 101.0, 101.1, recv_ns=T0 - 9 * MS))
    e.on_quote(quote("B", 100.0, 100.1, recv_ns=T0 - 2 * MS))
    [sig] = e.evaluate(T0)
    assert sig.tick_recv_ns == T0 - 2 * MS


def test_long_inventory_closes_with_sell_when_spread_comes_back_under_exit() -> None:
    e = TriggerEngine(make_cfg({"exit": 0.2}))
    cheap(e)
    [opened] = e.evaluate(T0)
    e.on_trade_done("p", Side.BUY, False, 1, opened.signal_id)
    flat(e, T0 + MS)
    [closed] = e.evaluate(T0 + MS)
    assert closed.direction is Side.SELL and closed.closing
    assert closed.signal_id == "p-2"
    e.on_trade_done("p", Side.SELL, True, 1, closed.signal_id)
    assert e.view("p").position == 0
    flat(e, T0 + 2 * MS)
    assert e.evaluate(T0 + 2 * MS) == []


def test_short_inventory_closes_with_buy() -> None:
    e = TriggerEngine(make_cfg({"exit": 0.2}))
    e.set_position("p", -2)
    flat(e)
    [sig] = e.evaluate(T0)
    assert sig.direction is Side.BUY and sig.closing
    assert [leg.qty for leg in sig.legs] == [1, 1]


def test_close_quantity_is_limited_to_what_is_not_already_being_closed() -> None:
    e = TriggerEngine(make_cfg({"exit": 0.2, "lots": 2}))
    e.set_position("p", 3)
    flat(e)
    [first] = e.evaluate(T0)
    assert first.legs[0].qty == 2
    flat(e, T0 + MS)
    [second] = e.evaluate(T0 + MS)
    assert second.legs[0].qty == 1
    flat(e, T0 + 2 * MS)
    assert e.evaluate(T0 + 2 * MS) == []
    assert e.suppressed["INVENTORY_PENDING"] == 1
    assert e.last_reason["p"].startswith("INVENTORY_PENDING: dir=SELL position=3 pending=3")


def test_exit_zone_without_inventory_fires_nothing() -> None:
    e = TriggerEngine(make_cfg({"exit": 0.2}))
    flat(e)
    assert e.evaluate(T0) == []


def test_short_top_of_book_on_a_leg_suppresses_with_min_size_reason() -> None:
    e = TriggerEngine(make_cfg({"min_size": 2.0, "ratio_a": 3}))
    rich(e, a_size=5.0)  # needs 2 x 3 = 6 on A's bid
    assert e.evaluate(T0) == []
    assert e.suppressed["SIZE_MIN"] == 1
    assert e.last_reason["p"] == "SIZE_MIN: leg=A size=5 need=6"
    rich(e, T0 + MS, a_size=6.0)
    assert len(e.evaluate(T0 + MS)) == 1


def test_min_size_checks_the_side_that_would_be_traded() -> None:
    e = TriggerEngine(make_cfg({"min_size": 2.0}))
    e.on_quote(quote("A", 101.0, 101.1, bid_size=5.0, ask_size=0.0, recv_ns=T0))
    e.on_quote(quote("B", 100.0, 100.1, bid_size=0.0, ask_size=5.0, recv_ns=T0))
    assert len(e.evaluate(T0)) == 1  # selling uses A's bid and B's ask


def test_stale_leg_suppresses_until_its_feed_recovers() -> None:
    e = TriggerEngine(make_cfg())
    e.on_status(InstrumentStatus(venue="VB", symbol="B", stale=True, age_ms=3000.0))
    rich(e)
    assert e.evaluate(T0) == []
    assert e.suppressed["FEED_STALE"] == 1
    assert e.last_reason["p"] == "FEED_STALE: leg=B"
    e.on_status(InstrumentStatus(venue="VB", symbol="B", stale=False, age_ms=0.0))
    rich(e, T0 + MS)
    assert len(e.evaluate(T0 + MS)) == 1


def test_quote_older_than_max_age_at_evaluation_suppresses() -> None:
    e = TriggerEngine(make_cfg({"max_quote_age_ms": 100.0}))
    e.on_quote(quote("A", 101.0, 101.1, recv_ns=T0 - 150 * MS))
    e.on_quote(quote("B", 100.0, 100.1, recv_ns=T0))
    assert e.evaluate(T0) == []
    assert e.suppressed["QUOTE_OLD"] == 1
    assert e.last_reason["p"] == "QUOTE_OLD: leg=A age_ms=150.0 max_ms=100"


def test_outside_trading_hours_suppresses_and_inside_fires() -> None:
    day = 20_000 * 86_400 * 1_000_000_000
    e = TriggerEngine(make_cfg(a={"hours": ["01:00-02:30"]}, b={"hours": ["00:00-23:59"]}))
    rich(e)
    assert e.evaluate(T0, utc_ns=day + 3 * 3600 * 10**9) == []
    assert e.suppressed["HOURS_CLOSED"] == 1
    assert e.last_reason["p"] == "HOURS_CLOSED: leg=A utc=03:00:00"
    rich(e, T0 + MS)
    assert len(e.evaluate(T0 + MS, utc_ns=day + 3600 * 10**9)) == 1


def test_without_wall_clock_each_leg_uses_its_venue_time_for_hours() -> None:
    day = 20_000 * 86_400 * 1_000_000_000
    e = TriggerEngine(make_cfg(a={"hours": ["01:00-02:30"]}))
    rich(e, exch_ns=day + 5 * 3600 * 10**9)
    assert e.evaluate(T0) == []
    rich(e, T0 + MS, exch_ns=day + 2 * 3600 * 10**9)
    assert len(e.evaluate(T0 + MS)) == 1


def test_cooldown_blocks_a_second_signal_until_it_elapses() -> None:
    e = TriggerEngine(make_cfg({"cooldown_ms": 200.0, "max_inventory": 5}))
    rich(e)
    assert len(e.evaluate(T0)) == 1
    rich(e, T0 + 150 * MS)
    assert e.evaluate(T0 + 150 * MS) == []
    assert e.last_reason["p"] == "COOLDOWN_ACTIVE: left_ms=50.0"
    rich(e, T0 + 200 * MS)
    assert len(e.evaluate(T0 + 200 * MS)) == 1


def test_inventory_cap_counts_pending_signals_before_any_fill() -> None:
    e = TriggerEngine(make_cfg({"max_inventory": 2}))
    fired = []
    for k in range(4):
        rich(e, T0 + k * MS)
        fired += e.evaluate(T0 + k * MS)
    assert len(fired) == 2
    assert e.suppressed["INVENTORY_CAP"] == 2
    assert e.last_reason["p"] == "INVENTORY_CAP: dir=SELL worst=3 max=2"
    e.on_trade_done("p", Side.SELL, False, 0, fired[0].signal_id)  # nothing filled: room again
    rich(e, T0 + 10 * MS)
    assert len(e.evaluate(T0 + 10 * MS)) == 1


def _at(sig: object, path: str) -> object:
    for part in path.split("."):
        sig = sig[int(part)] if part.isdigit() else getattr(sig, part)  # type: ignore[index]
    return sig


@pytest.mark.parametrize("market", [rich, cheap])
def test_send_gets_each_signals_shape_and_numbers_as_the_returned_signal_has_them(market: Callable[[TriggerEngine, int], None]) -> None:
    e = TriggerEngine(make_cfg({"ratio_a": 3, "ratio_b": 2, "lots": 2}), id_prefix="7.")
    market(e, T0 - 5 * MS)
    sent: list[tuple] = []
    [sig] = e.evaluate(T0, send=lambda shape, numbers: sent.append((shape, numbers)))
    assert sent == [((sig.pair, sig.direction, sig.closing), tuple(_at(sig, f) for f in SIGNAL_NUMBERS))]


def test_send_that_raises_leaves_no_cooldown_nor_pending_and_the_next_evaluation_fires() -> None:
    e = TriggerEngine(make_cfg({"cooldown_ms": 200.0, "max_inventory": 1}))
    rich(e)

    def refuse(shape: tuple, numbers: tuple) -> None:
        raise OSError("send failed")

    with pytest.raises(OSError):
        e.evaluate(T0, send=refuse)
    assert e.stats()["signals"] == 0 and e.stats()["pending"] == 0
    rich(e, T0 + MS)
    [sig] = e.evaluate(T0 + MS)
    assert sig.signal_id == "p-1"  # the id the unsent signal would have had


def test_inventory_cap_counts_filled_position() -> None:
    e = TriggerEngine(make_cfg({"max_inventory": 2}))
    e.set_position("p", -2)
    rich(e)
    assert e.evaluate(T0) == []
    assert e.suppressed["INVENTORY_CAP"] == 1


def test_pending_signal_stops_counting_after_its_ttl() -> None:
    e = TriggerEngine(make_cfg({"max_inventory": 1}), pending_ttl_ms=1000.0)
    rich(e)
    assert len(e.evaluate(T0)) == 1
    rich(e, T0 + 999 * MS)
    assert e.evaluate(T0 + 999 * MS) == []
    rich(e, T0 + 1000 * MS)
    assert len(e.evaluate(T0 + 1000 * MS)) == 1
    assert e.stats()["pending_expired"] == 1


def test_zscore_mode_waits_for_warmup_ticks() -> None:
    cfg = make_cfg({"mode": "zscore", "entry": 2.0, "exit": 0.5, "warmup_ticks": 30, "ewma_halflife": 50.0})
    e = TriggerEngine(cfg)
    for k in range(20):  # a gently oscillating spread, then a jump
        a = 100.0 + (0.01 if k % 2 else -0.01)
        e.on_quote(quote("A", a, a + 0.01, recv_ns=T0))
        e.on_quote(quote("B", 100.0, 100.01, recv_ns=T0))
        assert e.evaluate(T0) == []
    e.on_quote(quote("A", 101.0, 101.01, recv_ns=T0))
    assert e.evaluate(T0) == []
    assert e.suppressed["WARMUP_TICKS"] >= 1  # early ticks have a tiny sd, so large z: the reason for warm-up
    assert e.last_reason["p"] == "WARMUP_TICKS: ticks=21 need=30"
    for k in range(10):
        a = 100.0 + (0.01 if k % 2 else -0.01)
        e.on_quote(quote("A", a, a + 0.01, recv_ns=T0))
        e.evaluate(T0)
    e.on_quote(quote("A", 101.0, 101.01, recv_ns=T0))
    [sig] = e.evaluate(T0)
    assert sig.direction is Side.SELL and sig.zscore >= 2.0


def test_ratio_mode_fires_on_relative_premium() -> None:
    e = TriggerEngine(make_cfg({"mode": "ratio", "entry": 0.005, "exit": 0.001}))
    e.on_quote(quote("A", 100.6, 100.7, recv_ns=T0))
    e.on_quote(quote("B", 100.0, 100.05, recv_ns=T0))  # 100.6 / 100.05 - 1 = 0.0055
    [sig] = e.evaluate(T0)
    assert sig.direction is Side.SELL
    assert sig.spread == pytest.approx(0.55)


@pytest.mark.parametrize(
    ("level", "opens", "closes"),
    [
        (RiskLevel.NORMAL, True, True),
        (RiskLevel.WARN, False, True),
        (RiskLevel.REDUCE_ONLY, False, True),
        (RiskLevel.HALTED, False, False),
    ],
)
def test_risk_level_gates_opening_and_closing_signals(level: RiskLevel, opens: bool, closes: bool) -> None:
    e = TriggerEngine(make_cfg({"exit": 0.2}))
    e.set_risk(level)
    rich(e)
    assert len(e.evaluate(T0)) == int(opens)
    e2 = TriggerEngine(make_cfg({"exit": 0.2}))
    e2.set_risk(level)
    e2.set_position("p", 1)
    flat(e2)
    assert len(e2.evaluate(T0)) == int(closes)
    if not closes:
        assert e2.last_reason["p"] == f"RISK_STATE: state={level.value} closing=True"


def test_quotes_replaced_before_evaluation_are_counted_as_conflated() -> None:
    e = TriggerEngine(make_cfg())
    for k in range(5):
        e.on_quote(quote("A", 100.0 + k / 100, 100.1 + k / 100, recv_ns=T0))
    e.on_quote(quote("B", 100.0, 100.1, recv_ns=T0))
    e.evaluate(T0)
    e.on_quote(quote("A", 100.0, 100.1, recv_ns=T0))
    stats = e.stats()
    assert stats["quotes"] == 7 and stats["conflated"] == 4
    assert e.view("p").ticks == 1  # five A quotes, one evaluation


def test_unknown_instrument_is_ignored_and_counted() -> None:
    e = TriggerEngine(make_cfg())
    assert not e.on_quote(quote("Z", 1.0, 1.1))
    assert e.stats()["unknown"] == 1
    assert e.evaluate(T0) == []


def test_missing_leg_is_counted_as_no_quote() -> None:
    e = TriggerEngine(make_cfg())
    e.on_quote(quote("A", 101.0, 101.1, recv_ns=T0))
    assert e.evaluate(T0) == []
    assert e.last_reason["p"] == "DATA_NO_QUOTE: leg=B"


def test_fx_update_reprices_pair_in_pair_currency() -> None:
    cfg = make_cfg({"currency": "CNY", "entry": 5.0, "exit": 1.0}, b={"currency": "USD"}, a={"currency": "CNY"},
                   fx=True)
    e = TriggerEngine(cfg)
    e.on_quote(quote("A", 720.0, 720.1, recv_ns=T0))
    e.on_quote(quote("B", 100.0, 100.0, recv_ns=T0))
    assert e.evaluate(T0) == []
    assert e.last_reason["p"] == "DATA_NO_FX: leg=B fx=USDCNY"
    assert e.on_fx(fx_rate("USDCNY", 7.2, recv_ns=T0))
    assert e.evaluate(T0) == []  # 720.0 - 720.0 = 0
    assert e.on_fx(fx_rate("USDCNY", 7.1, recv_ns=T0 + 3 * MS))
    [sig] = e.evaluate(T0 + 3 * MS)
    assert sig.direction is Side.SELL
    assert sig.spread == pytest.approx(720.0 - 710.0)
    assert sig.tick_recv_ns == T0 + 3 * MS


def test_demo_gold_pair_prices_au_against_gc_in_cny_per_gram() -> None:
    e = TriggerEngine(load_config("configs/demo.toml"))
    e.on_quote(Quote(venue="SHFE", symbol="au2612", bid=556.00, ask=556.04, bid_size=30, ask_size=30,
                     exch_ts_ns=0, recv_ns=T0))
    e.on_quote(Quote(venue="COMEX", symbol="GCZ6", bid=2400.0, ask=2400.2, bid_size=20, ask_size=20,
                     exch_ts_ns=0, recv_ns=T0))
    e.on_fx(fx_rate("USDCNY", 7.2, recv_ns=T0))
    e.evaluate(T0)
    v = e.view("au_gc")
    per_g = 7.2 / TROY_OUNCE_G
    assert v.buy == pytest.approx(556.04 - 2400.0 * per_g)
    assert v.sell == pytest.approx(556.00 - 2400.2 * per_g)
    assert v.ticks == 1


def test_same_tape_gives_same_signals() -> None:
    def run() -> list:
        e = TriggerEngine(make_cfg({"max_inventory": 2}), id_prefix="r1:")
        out = []
        for k in range(6):
            (rich if k % 3 else cheap)(e, T0 + k * MS)
            out += e.evaluate(T0 + k * MS)
        return out

    first, second = run(), run()
    assert first == second
    assert [s.signal_id for s in first] == ["r1:p-1", "r1:p-2", "r1:p-3", "r1:p-4"][: len(first)]


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(("rich", "cheap", "flat", "done")), st.integers(0, 2), st.booleans()),
        min_size=1,
        max_size=40,
    ),
    cap=st.integers(1, 3),
    lots=st.integers(1, 2),
)
def test_worst_case_exposure_never_exceeds_the_cap(steps, cap, lots) -> None:
    e = TriggerEngine(make_cfg({"max_inventory": cap, "lots": lots, "exit": 0.2}))
    live: list = []
    now = T0
    for action, fill, first in steps:
        now += MS
        if action == "done":
            if live:
                sig = live.pop(0 if first else -1)
                units = min(fill, sig.legs[0].qty)
                e.on_trade_done("p", sig.direction, sig.closing, units, sig.signal_id)
            continue
        {"rich": rich, "cheap": cheap, "flat": flat}[action](e, now)
        live += e.evaluate(now)
        inv = e.inventory
        for sign in (1, -1):
            assert inv.exposure_if_opened(0, sign, 0) <= cap


def test_config_without_pairs_evaluates_to_nothing() -> None:
    e = TriggerEngine(msgspec.structs.replace(make_cfg(), pairs={}))
    rich(e)
    assert e.evaluate(T0) == []
    assert e.stats()["quotes"] == 2
