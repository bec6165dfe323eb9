"""The pre-trade margin what-if (`execution.whatif.MarginWhatIf`) against hand-computed margins,
and through the execution engine.

A small hand-made desk (`desk()`), base currency USD, so that every conversion is visible:

- account ``gb`` (GBP, 100,000) trades venue LDN: EP (percent, EUR), SA and SA2 (scenario, EUR,
  commodity "sa": two months of one contract);
- account ``us`` (USD, 200,000) trades venue CME: UF (fixed, USD), SB (scenario, USD);
- pairs ``pf`` = 2 EP vs 1 UF and ``ss`` = 1 SA vs 1 SB;
- broker add-on 1.25, calendar charge 400 USD per "sa" spread lot, no spread credits (one test
  adds one), what-if limit 0.5;
- FX: EURUSD 1.10, GBPUSD 1.25. A gb figure goes EUR -> USD (x 1.10), x 1.25 add-on, then
  USD -> GBP (/ 1.25): the instrument's currency, the base and the account's currency all differ.

Then the engine over the demo (configs/demo.toml: au_gc = 3 au on cn (CNY, 10 % of notional) vs
1 GC on hk (USD 16,500 a lot), spread credit 0.6, add-on 1.3), with a real write-ahead log in a
temp dir.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from bus.messages import (AccountMargin, ExecType, FxRate, MarginSnapshot, OrderEvent, PairTradeEvent, Side, Signal,
                          SignalLeg, TradeState)
from configs.load import load_config
from configs.schema import (AccountCfg, Config, InstrumentCfg, LimitsCfg, PairCfg, RiskCfg, RunCfg, SpreadCreditCfg,
                            VenueCfg)
from execution.engine import Emit, ExecutionEngine, Log, SendWire
from execution.pairtrade import params_from_config
from execution.positions import PositionBook
from execution.wal import WriteAheadLog
from execution.whatif import PRICE_TOLERANCE, MarginWhatIf
from riskguard.fx import FxTable

DEMO = Path(__file__).resolve().parents[3] / "configs" / "demo.toml"
REASON = re.compile(r"^MARGIN_WHATIF: account=(\w+) utilisation_after=(\d+\.\d{4}) limit=(\S+)$")
MS = 1_000_000
T0 = 1_000_000_000_000


# --- the hand-made desk ---------------------------------------------------------------------


def desk(*, credits: list[SpreadCreditCfg] | None = None, limit: float = 0.5) -> Config:
    def inst(venue: str, ccy: str, mult: float, **kw: object) -> InstrumentCfg:
        return InstrumentCfg(venue=venue, symbol="X", tick=0.25, multiplier=mult, currency=ccy,
                             **kw)  # type: ignore[arg-type]

    return Config(
        run=RunCfg(base_currency="USD"),
        venues={"LDN": VenueCfg(), "CME": VenueCfg()},
        instruments={
            "EP": inst("LDN", "EUR", 10.0, margin_model="percent", margin_pct=0.05),
            "UF": inst("CME", "USD", 50.0, margin_model="fixed", margin_fixed=3000.0),
            "SA": inst("LDN", "EUR", 20.0, margin_model="scenario", scan_range_pct=0.10, commodity="sa"),
            "SA2": inst("LDN", "EUR", 20.0, margin_model="scenario", scan_range_pct=0.10, commodity="sa"),
            "SB": inst("CME", "USD", 5.0, margin_model="scenario", scan_range_pct=0.06, commodity="sb"),
        },
        pairs={"pf": PairCfg(leg_a="EP", leg_b="UF", ratio_a=2, ratio_b=1),
               "ss": PairCfg(leg_a="SA", leg_b="SB")},
        accounts={"gb": AccountCfg(currency="GBP", balance=100_000.0, venues=["LDN"]),
                  "us": AccountCfg(currency="USD", balance=200_000.0, venues=["CME"])},
        risk=RiskCfg(broker_addon=1.25, maintenance_ratio=0.8, calendar_charges={"sa": 400.0},
                     spread_credits=credits or [], limits=LimitsCfg(whatif_utilisation=limit)),
    )


PRICES = {"EP": 4000.0, "UF": 5000.0, "SA": 1000.0, "SA2": 1000.0, "SB": 4000.0}


def rig(cfg: Config) -> tuple[MarginWhatIf, PositionBook, FxTable]:
    w = MarginWhatIf(cfg, params_from_config(cfg))
    fx = FxTable("USD")
    for pair, mid in (("EURUSD", 1.10), ("GBPUSD", 1.25)):
        fx.update(pair, mid, 0)
        w.on_fx(pair, mid)
    for inst, px in PRICES.items():
        w.on_price(inst, px)
    return w, PositionBook({"pf": (2, 1), "ss": (1, 1)}), fx


def snapshot(**equity: tuple[str, float]) -> MarginSnapshot:
    accts = tuple(AccountMargin(account=n, currency=c, equity=e, initial=0.0, maintenance=0.0, utilisation=0.0,
                                headroom=e) for n, (c, e) in equity.items())
    total = AccountMargin(account="total", currency="USD", equity=0.0, initial=0.0, maintenance=0.0, utilisation=0.0,
                          headroom=0.0)
    return MarginSnapshot(base_currency="USD", accounts=accts, total=total, margin_call=False)


# --- utilisation after, model by model --------------------------------------------------------


def test_percent_leg_in_eur_on_a_gbp_account_with_the_book_counted() -> None:
    w, book, fx = rig(desk())
    book.move("gb", "EP", 6)  # already long 6 EP
    # pf BUY 2/1: gb goes to 8 EP, us to -1 UF
    # EP: 8 lots x 4000 x 10 x 5 % = 16,000 EUR; x 1.10 = 17,600 USD; x 1.25 = 22,000 USD; / 1.25 = 17,600 GBP
    #     17,600 / 100,000 = 0.176
    # UF: 1 lot x 3,000 USD = 3,000; x 1.25 = 3,750 USD; / 200,000 = 0.01875
    got = w.utilisation_after("pf", +1, 2, 1, book, fx)
    assert got == pytest.approx({"gb": 0.176, "us": 0.01875})
    assert w.check("pf", +1, 2, 1, book, fx) is None


def test_fixed_leg_nets_against_the_book_and_the_direction_sign_flips_both_legs() -> None:
    w, book, fx = rig(desk())
    book.move("us", "UF", -3)
    # pf SELL 2/1 (sign -1): EP -2 on gb, UF +1 on us -> UF -3 + 1 = -2
    # UF: 2 lots x 3,000 = 6,000 USD; x 1.25 = 7,500; / 200,000 = 0.0375
    # EP: 2 x 4000 x 10 x 5 % = 4,000 EUR; x 1.10 = 4,400 USD; x 1.25 = 5,500 USD; / 1.25 = 4,400 GBP -> 0.044
    got = w.utilisation_after("pf", -1, 2, 1, book, fx)
    assert got == pytest.approx({"gb": 0.044, "us": 0.0375})


def test_scenario_lone_positions_are_charged_the_extreme_move_at_35_percent() -> None:
    w, book, fx = rig(desk())
    # ss BUY 1/1: SA +1 on gb, SB -1 on us; a lone future's worst scenario: 3 scan ranges x 35 % cover
    # SA: 1 x 1000 x 20 x 1.10 (EUR->USD) x 10 % = 2,200 USD scan range; x 3 x 0.35 = 2,310 USD;
    #     x 1.25 = 2,887.5 USD; / 1.25 = 2,310 GBP; / 100,000 = 0.0231
    # SB: 1 x 4000 x 5 x 6 % = 1,200 USD; x 1.05 = 1,260; x 1.25 = 1,575 USD; / 200,000 = 0.007875
    got = w.utilisation_after("ss", +1, 1, 1, book, fx)
    assert got == pytest.approx({"gb": 0.0231, "us": 0.007875})


def test_scenario_nets_a_calendar_spread_in_one_group_plus_the_calendar_charge() -> None:
    w, book, fx = rig(desk())
    book.move("gb", "SA2", -1)
    w.on_price("SA2", 1010.0)
    # ss BUY 1/1: group gb/sa holds SA +1 @1000 and SA2 -1 @1010
    # scan-range exposures (USD): SA +1 x 1000 x 20 x 1.10 x 10 % = +2,200; SA2 -1 x 1010 x 20 x 1.10 x 10 % = -2,222
    # net -22: the worst scenario is the extreme up move, 22 x 3 x 0.35 = 23.1 (one range up: 22 x 1 x 1 = 22)
    # + calendar: min(1 long, 1 short) = 1 spread lot x 400 USD = 423.1 USD; x 1.25 = 528.875 USD
    # / 1.25 = 423.1 GBP; / 100,000 = 0.004231
    got = w.utilisation_after("ss", +1, 1, 1, book, fx)
    assert got["gb"] == pytest.approx(0.004231)
    assert got["us"] == pytest.approx(0.007875)


def test_spread_credit_from_the_pairs_ratio_lowers_both_legs() -> None:
    w, book, fx = rig(desk(credits=[SpreadCreditCfg(a="EP", b="UF", rate=0.5)]))
    # pf BUY 2/1 alone: 1 spread matched in the pair's 2:1 ratio, each leg's charge x (1 - 0.5)
    # EP: 4,400 USD (as above) x 0.5 = 2,200; x 1.25 = 2,750 USD; / 1.25 = 2,200 GBP -> 0.022
    # UF: 3,000 x 0.5 = 1,500; x 1.25 = 1,875 USD -> 0.009375
    assert w.utilisation_after("pf", +1, 2, 1, book, fx) == pytest.approx({"gb": 0.022, "us": 0.009375})


def test_fx_rates_move_the_gbp_figure_through_both_conversions() -> None:
    w, book, fx = rig(desk())
    book.move("gb", "EP", 6)
    fx.update("EURUSD", 1.20, 1)
    # 16,000 EUR x 1.20 = 19,200 USD; x 1.25 = 24,000 USD; / 1.25 = 19,200 GBP -> 0.192
    assert w.utilisation_after("pf", +1, 2, 1, book, fx)["gb"] == pytest.approx(0.192)
    fx.update("GBPUSD", 1.50, 1)
    # 24,000 USD / 1.50 = 16,000 GBP -> 0.16
    assert w.utilisation_after("pf", +1, 2, 1, book, fx)["gb"] == pytest.approx(0.16)


def test_equity_is_marginwatchs_latest_snapshot_in_the_accounts_currency() -> None:
    w, book, fx = rig(desk())
    book.move("gb", "EP", 6)
    w.on_snapshot(snapshot(gb=("GBP", 80_000.0), us=("USD", 150_000.0)))
    # 17,600 GBP / 80,000 = 0.22; 3,750 USD / 150,000 = 0.025
    assert w.utilisation_after("pf", +1, 2, 1, book, fx) == pytest.approx({"gb": 0.22, "us": 0.025})


def test_a_leg_without_price_or_fx_is_left_out_and_never_blocks() -> None:
    w, book, fx = rig(desk())
    fx2 = FxTable("USD")
    fx2.update("GBPUSD", 1.25, 0)  # no EURUSD: the EP leg cannot be converted
    w.on_snapshot(snapshot(gb=("GBP", 1.0)))  # any margin at all would cross
    assert w.utilisation_after("pf", +1, 2, 1, book, fx2)["gb"] == 0.0
    assert w.check("pf", +1, 2, 1, book, fx2) is None


# --- the refusal ------------------------------------------------------------------------------


def test_refusal_reason_names_the_account_its_utilisation_after_and_the_limit() -> None:
    w, book, fx = rig(desk())
    book.move("gb", "EP", 6)
    w.on_snapshot(snapshot(gb=("GBP", 32_000.0)))
    # 17,600 GBP / 32,000 = 0.55 > 0.5
    reason = w.check("pf", +1, 2, 1, book, fx)
    assert reason == "MARGIN_WHATIF: account=gb utilisation_after=0.5500 limit=0.5"
    m = REASON.match(reason or "")
    assert m and m.groups() == ("gb", "0.5500", "0.5")
    # the same trade under the limit: 17,600 / 36,000 = 0.4889
    w.on_snapshot(snapshot(gb=("GBP", 36_000.0)))
    assert w.check("pf", +1, 2, 1, book, fx) is None


def test_refusal_limit_is_risk_limits_whatif_utilisation() -> None:
    w, book, fx = rig(desk(limit=0.1))
    book.move("gb", "EP", 6)
    assert w.check("pf", +1, 2, 1, book, fx) == "MARGIN_WHATIF: account=gb utilisation_after=0.1760 limit=0.1"
    assert LimitsCfg().whatif_utilisation == 0.8  # the default level


# --- the cache --------------------------------------------------------------------------------


def test_verdict_is_cached_until_an_input_changes() -> None:
    w, book, fx = rig(desk())
    book.move("gb", "EP", 6)

    def ask() -> int:
        w.check("pf", +1, 2, 1, book, fx)
        return w.computed

    assert ask() == 1
    assert ask() == 1  # the same question: the cached verdict
    w.check("pf", +1, 4, 2, book, fx)  # another size is another verdict
    assert w.computed == 2 and ask() == 2

    # a price within the tolerance keeps it, one beyond drops it
    w.on_price("EP", 4000.0 * (1 + PRICE_TOLERANCE / 2))
    assert ask() == 2
    w.on_price("EP", 4000.0 * (1 + PRICE_TOLERANCE * 2))
    assert ask() == 3

    # FX the same way
    w.on_fx("EURUSD", 1.10 * (1 + PRICE_TOLERANCE / 2))
    assert ask() == 3
    w.on_fx("EURUSD", 1.10 * (1 + PRICE_TOLERANCE * 2))
    assert ask() == 4

    # a snapshot with the same equity keeps it, new equity drops it
    w.on_snapshot(snapshot(gb=("GBP", 100_000.0), us=("USD", 200_000.0)))
    assert ask() == 4
    w.on_snapshot(snapshot(gb=("GBP", 99_000.0)))
    assert ask() == 5

    # the book moved (the engine calls invalidate on every fill)
    book.move("gb", "EP", 2)
    w.invalidate()
    assert ask() == 6


def test_prime_recomputes_the_verdicts_asked_before_off_the_hot_path() -> None:
    w, book, fx = rig(desk())
    w.check("pf", +1, 2, 1, book, fx)
    w.check("ss", -1, 1, 1, book, fx)
    assert w.computed == 2
    w.prime(book, fx)
    assert w.computed == 2  # nothing dropped: nothing to do
    w.invalidate()
    w.prime(book, fx)
    assert w.computed == 4
    w.check("pf", +1, 2, 1, book, fx)
    w.check("ss", -1, 1, 1, book, fx)
    assert w.computed == 4  # both ready when the signals come


# --- through the engine -------------------------------------------------------------------------

# demo au_gc, 1 unit = 3 au (cn) vs 1 GC (hk) at 556 CNY/g and 2400 USD/oz.
# cn: 3 x 556 x 1000 x 10 % = 166,800 CNY; x (1 - 0.6 credit) x 1.3 add-on = 86,736 CNY a unit
# (CNY -> USD -> CNY through USDCNY: the rate cancels). With cn's equity at 250,000:
# 1 unit 0.346944, 2 units 0.693888; the limit set to 0.5 lets the first in and not the second.
CN_PER_UNIT = 3 * 556.0 * 1000 * 0.10 * 0.4 * 1.3
PX = {"au": 556.0, "GC": 2400.0, "HSI": 25000.0, "MHI": 25000.0}


def demo_cfg() -> Config:
    cfg = load_config(DEMO)
    accounts = {"cn": msgspec.structs.replace(cfg.accounts["cn"], balance=250_000.0),
                "hk": msgspec.structs.replace(cfg.accounts["hk"], balance=4_000_000.0)}
    limits = msgspec.structs.replace(cfg.risk.limits, whatif_utilisation=0.5)
    return msgspec.structs.replace(cfg, accounts=accounts, risk=msgspec.structs.replace(cfg.risk, limits=limits))


def au_gc(n: int, direction: Side, closing: bool, now: int, units: int = 1) -> Signal:
    return Signal(
        signal_id=f"s{n}", pair="au_gc", direction=direction, closing=closing,
        legs=(SignalLeg(instrument="au", side=direction, qty=3 * units, limit_px=PX["au"]),
              SignalLeg(instrument="GC", side=direction.opposite, qty=units, limit_px=PX["GC"])),
        spread=1.0, zscore=2.5, expiry_ns=now + 500 * MS, tick_recv_ns=now - 5_000, signal_ns=now - 1_000)


class Desk:
    """One demo engine over a temp log; every order it sends is acked and filled at its price."""

    def __init__(self, path: Path) -> None:
        self.cfg = demo_cfg()
        self.wal = WriteAheadLog(path)
        self.eng = ExecutionEngine(self.cfg, self.wal)
        self.now = T0
        self.n = 0
        self.exec_n = 0
        for pair, mid in (("USDCNH", 7.2), ("USDCNY", 7.2), ("USDHKD", 7.8)):
            self.eng.on_fx(FxRate(pair=pair, bid=mid, ask=mid, exch_ts_ns=0, recv_ns=0))

    def signal(self, direction: Side, closing: bool = False, units: int = 1) -> list:
        self.n += 1
        self.now += MS
        return self.eng.on_signal(au_gc(self.n, direction, closing, self.now, units), self.now)

    def fill_all(self, effects: list) -> None:
        queue = [e.order for e in effects if isinstance(e, SendWire)]
        while queue:
            o = queue.pop(0)
            for et, cum in ((ExecType.ACK, 0), (ExecType.FILL, o.qty)):
                self.exec_n += 1
                self.now += 1000
                px = o.price if o.price is not None else PX[o.instrument]
                ev = OrderEvent(cl_ord_id=o.cl_ord_id, exec_type=et, venue=o.venue, instrument=o.instrument,
                                side=o.side, order_qty=o.qty, cum_qty=cum, leaves_qty=o.qty - cum, last_qty=cum,
                                last_px=px if cum else 0.0, avg_px=px if cum else 0.0, exec_id=f"x{self.exec_n}",
                                recv_ns=self.now)
                queue += [e.order for e in self.eng.on_report(ev, self.now) if isinstance(e, SendWire)]
        assert not self.eng.open, self.eng.stats

    def rejection(self, effects: list) -> PairTradeEvent | None:
        for e in effects:
            if isinstance(e, Emit) and isinstance(e.event.body, PairTradeEvent) and \
                    e.event.body.state is TradeState.REJECTED:
                return e.event.body
        return None


@pytest.fixture
def dk(tmp_path: Path):  # type: ignore[no-untyped-def]
    d = Desk(tmp_path / "exec.wal")
    yield d
    d.wal.close()


def test_engine_second_entry_is_refused_with_the_whatif_reason(dk: Desk) -> None:
    first = dk.signal(Side.BUY)
    assert sum(isinstance(e, SendWire) for e in first) == 3  # au split over cn-a / cn-b, and GC
    dk.fill_all(first)
    assert (dk.eng.book.lots("cn", "au"), dk.eng.book.lots("hk", "GC")) == (3, -1)

    second = dk.signal(Side.BUY)
    assert not any(isinstance(e, SendWire) for e in second)
    rej = dk.rejection(second)
    assert rej is not None
    # 2 units: 2 x 86,736 = 173,472 CNY / 250,000 = 0.693888
    assert 2 * CN_PER_UNIT / 250_000 == pytest.approx(0.693888)
    assert rej.reason == "MARGIN_WHATIF: account=cn utilisation_after=0.6939 limit=0.5"
    logs = [e for e in second if isinstance(e, Log) and e.event == "signal_rejected"]
    assert [l.fields["reason"] for l in logs] == [rej.reason]
    assert dk.eng.stats["rejected"] == 1 and not dk.eng.open


def test_engine_closing_signal_is_never_refused_for_margin_while_an_opening_one_is(dk: Desk) -> None:
    dk.fill_all(dk.signal(Side.BUY))
    # marginwatch says cn's equity fell to 50,000 CNY: cn is at 86,736 / 50,000 = 1.73 already
    dk.eng.on_margin(snapshot(cn=("CNY", 50_000.0), hk=("HKD", 4_000_000.0)))

    opening = dk.signal(Side.BUY)
    rej = dk.rejection(opening)
    assert rej is not None and rej.reason == "MARGIN_WHATIF: account=cn utilisation_after=3.4694 limit=0.5"
    computed = dk.eng.whatif.computed

    closing = dk.signal(Side.SELL, closing=True)
    assert dk.rejection(closing) is None
    assert sum(isinstance(e, SendWire) for e in closing) == 3
    assert dk.eng.whatif.computed == computed  # a closing signal does not even ask
    dk.fill_all(closing)
    assert (dk.eng.book.position("au"), dk.eng.book.position("GC")) == (0, 0)

    # even a closing signal that adds (the trigger's word is taken) is not asked about margin
    adding = dk.signal(Side.BUY, closing=True, units=2)
    assert dk.rejection(adding) is None and sum(isinstance(e, SendWire) for e in adding) >= 2
    assert dk.eng.whatif.computed == computed


def test_engine_refusal_changes_nothing_and_a_smaller_entry_may_still_go(dk: Desk) -> None:
    dk.fill_all(dk.signal(Side.BUY))
    head = dk.eng.head
    assert dk.rejection(dk.signal(Side.BUY)) is not None
    assert dk.eng.head == head + 1  # only the rejection on the stream
    assert (dk.eng.book.position("au"), dk.eng.book.position("GC"), dk.eng.book.units("au_gc")) == (3, -1, 1)
    # an opening SELL of 1 unit takes cn back to flat: utilisation 0
    assert dk.rejection(dk.signal(Side.SELL)) is None


def test_engine_inputs_drop_the_cached_verdict_and_rehearse_primes_it(dk: Desk) -> None:
    eng = dk.eng
    dk.fill_all(dk.signal(Side.BUY))
    assert eng.whatif.computed == 1

    def rehearse() -> int:
        eng.rehearse(dk.now)
        return eng.whatif.computed

    # the fills dropped the verdict of "au_gc BUY 3/1"; rehearsing computes it again off the hot path,
    # so the next signal finds it ready
    assert rehearse() == 2
    assert dk.rejection(dk.signal(Side.BUY)) is not None
    assert eng.whatif.computed == 2
    assert rehearse() == 2  # nothing moved: nothing to do

    # a fill
    eng.whatif.invalidate()  # (as `_absorb` does with each fill event of the stream)
    assert rehearse() == 3

    # a snapshot: same equity keeps it, new equity drops it
    eng.on_margin(snapshot(cn=("CNY", 250_000.0), hk=("HKD", 4_000_000.0)))
    assert rehearse() == 3
    eng.on_margin(snapshot(cn=("CNY", 249_000.0), hk=("HKD", 4_000_000.0)))
    assert rehearse() == 4

    # the touch: within the tolerance keeps it, beyond drops it
    eng.on_touch("au", 556.2, 556.4)  # mid 556.3: +0.05 %
    assert rehearse() == 4
    eng.on_touch("au", 559.0, 559.2)  # mid 559.1: +0.56 %
    assert rehearse() == 5

    # FX the same way
    eng.on_fx(FxRate(pair="USDCNY", bid=7.205, ask=7.205, exch_ts_ns=0, recv_ns=1))  # +0.07 %
    assert rehearse() == 5
    eng.on_fx(FxRate(pair="USDCNY", bid=7.3, ask=7.3, exch_ts_ns=0, recv_ns=2))  # +1.4 %
    assert rehearse() == 6

    # and the verdict follows the inputs: at 559.1 and 249,000 CNY, 2 units = 2 x 3 x 559.1 x 1000 x 0.1 x 0.4 x 1.3
    # = 174,439.2 CNY / 249,000 = 0.70056
    rej = dk.rejection(dk.signal(Side.BUY))
    assert rej is not None and rej.reason == "MARGIN_WHATIF: account=cn utilisation_after=0.7006 limit=0.5"
    assert eng.whatif.computed == 6


def test_engine_fill_event_invalidates_the_verdict(dk: Desk) -> None:
    eng = dk.eng
    dk.fill_all(dk.signal(Side.BUY))
    eng.rehearse(dk.now)
    n = eng.whatif.computed
    closing = dk.signal(Side.SELL, closing=True)
    dk.fill_all(closing)  # fills come back through the stream: the book moved
    eng.rehearse(dk.now)
    assert eng.whatif.computed == n + 1
    # flat again: the same BUY now fits (0.3469)
    assert dk.rejection(dk.signal(Side.BUY)) is None


def test_engine_counts_an_other_pairs_entry_still_in_flight_on_the_same_account(dk: Desk) -> None:
    # hk (HKD) at 200,000: hsi_mhi 1 unit alone = 65,000 HKD (HSI 125,000 + 5 MHI 125,000, 80 % credit,
    # x 1.3) -> 0.325; au_gc 1 unit alone on hk = GC 16,500 USD x 0.4 x 1.3 x 7.8 = 66,924 HKD -> 0.3346;
    # both: 0.6596 > 0.5
    dk.eng.on_margin(snapshot(cn=("CNY", 10_000_000.0), hk=("HKD", 200_000.0)))
    dk.now += MS
    hsi = Signal(signal_id="h1", pair="hsi_mhi", direction=Side.BUY, closing=False,
                 legs=(SignalLeg(instrument="HSI", side=Side.BUY, qty=1, limit_px=PX["HSI"]),
                       SignalLeg(instrument="MHI", side=Side.SELL, qty=5, limit_px=PX["MHI"])),
                 spread=1.0, zscore=2.5, expiry_ns=dk.now + 500 * MS, tick_recv_ns=dk.now, signal_ns=dk.now)
    in_flight = dk.eng.on_signal(hsi, dk.now)
    assert sum(isinstance(e, SendWire) for e in in_flight) == 2 and dk.eng.open  # sent, nothing filled yet
    second = dk.signal(Side.BUY)
    if dk.rejection(second) is None:  # what happens today: it goes, and once both fill hk is at 0.66
        dk.fill_all(in_flight + second)
        after = dk.eng.whatif.utilisation_after("au_gc", +1, 0, 0, dk.eng.book, dk.eng.fx)["hk"]
        assert after == pytest.approx(0.65962, abs=1e-4)
    rej = dk.rejection(second)
    assert rej is not None and rej.reason.startswith("MARGIN_WHATIF: account=hk utilisation_after=0.6596")
