"""Leg exposure of a pair trade (`execution.exposure`) over hand-made execution-stream sequences,
and `xmc trades` / `xmc trace` / `xmc report` reading it back from a real journal file."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from bus.auditstore import STREAM_EPOCH, AuditReader, AuditWriter, row_of
from bus.messages import (
    Envelope,
    ExecType,
    FxRate,
    LegView,
    OrderEvent,
    PairTradeEvent,
    Side,
    StreamEvent,
    TradeState,
)
from bus.stream import filed_topic
from execution.exposure import LegSpec, compute, in_ratio, moments, unhedged_lots

MS = 1_000_000
T0 = 5_000_000_000
AU = LegSpec(instrument="au", ratio=3, multiplier=1000.0, fx=1.0)
GC = LegSpec(instrument="GC", ratio=1, multiplier=100.0, fx=1.0)
HSI = LegSpec(instrument="HSI", ratio=1, multiplier=50.0, fx=1.0)
MHI = LegSpec(instrument="MHI", ratio=5, multiplier=10.0, fx=1.0)
VENUE = {"au": "SHFE", "GC": "COMEX", "HSI": "HKEX", "MHI": "HKEX"}


def fill(inst: str, side: Side, qty: int, px: float, at_ms: float, order: str = "a1", tid: str = "X-000001") -> OrderEvent:
    return OrderEvent(cl_ord_id=f"{tid}.{order}", exec_type=ExecType.FILL, venue=VENUE[inst], instrument=inst, side=side,
                      order_qty=qty, cum_qty=qty, leaves_qty=0, last_qty=qty, last_px=px, avg_px=px,
                      exec_id=f"{tid}.{order}#{qty}", recv_ns=T0 + round(at_ms * MS), account="acct")


def trade(state: TradeState, transition: str, at_ms: float, net: tuple[int, int] = (0, 0), tid: str = "X-000001",
          pair: str = "au_gc", legs: tuple[str, str] = ("au", "GC"), target: tuple[int, int] = (3, 1)) -> PairTradeEvent:
    views = tuple(LegView(instrument=i, side=Side.BUY if k == 0 else Side.SELL, target_qty=t, filled_qty=abs(n),
                          avg_price=0.0, net_qty=n) for k, (i, t, n) in enumerate(zip(legs, target, net)))
    return PairTradeEvent(trade_id=tid, pair=pair, state=state, prev_state=None, transition=transition,
                          direction=Side.BUY, legs=views, ts_ns=T0 + round(at_ms * MS))


BUY, SELL = Side.BUY, Side.SELL
W, C = TradeState.WORKING, TradeState.COMPLETED


# --- the ratio test ------------------------------------------------------------------------


@pytest.mark.parametrize("a, b, ra, rb, ok", [
    (0, 0, 3, 1, True), (3, -1, 3, 1, True), (-6, 2, 3, 1, True), (3, 0, 3, 1, False), (3, 1, 3, 1, False),
    (2, -1, 3, 1, False), (6, -1, 3, 1, False), (1, -5, 1, 5, True), (1, -4, 1, 5, False), (0, -5, 1, 5, False),
])
def test_in_ratio(a: int, b: int, ra: int, rb: int, ok: bool) -> None:
    assert in_ratio(a, b, ra, rb) is ok


def test_unhedged_lots_beyond_the_hedged_units() -> None:
    assert unhedged_lots(7, -2, 3, 1) == (1, 0)
    assert unhedged_lots(2, -1, 3, 1) == (2, 1)  # no whole unit on A: nothing is hedged
    assert unhedged_lots(3, 1, 3, 1) == (3, 1)  # same sign: nothing is hedged


# --- hand-made sequences --------------------------------------------------------------------


def test_both_legs_at_once_ratio_3_to_1() -> None:
    """Both entry orders out together; A's 3 lots fill 0.4 ms before B's 1 lot: one window of 0.4 ms."""
    e = compute([trade(W, "both_legs_sent", 0.0), fill("au", BUY, 3, 556.0, 1.0), fill("GC", SELL, 1, 2400.0, 1.4, "b1"),
                 trade(C, "both_legs_filled", 1.5, (3, -1))], AU, GC)
    assert e.exposed and e.ended == "hedged"
    assert e.windows == ((T0 + 1 * MS, T0 + round(1.4 * MS)),)
    assert e.exposure_ns == round(0.4 * MS) and e.exposure_ms == 0.4
    assert e.peak_exposure == pytest.approx(3 * 556.0 * 1000.0)  # 3 naked lots of au
    assert e.peak_ns == T0 + 1 * MS


def test_both_legs_at_once_ratio_1_to_5_b_first_in_pieces() -> None:
    """1 HSI : 5 MHI; B fills 2 then 3 lots before A: the window runs from B's first fill to A's fill."""
    events = [trade(W, "both_legs_sent", 0.0, pair="hsi_mhi", legs=("HSI", "MHI"), target=(1, 5), tid="X-2"),
              fill("MHI", SELL, 2, 25000.0, 0.8, "b1", tid="X-2"), fill("MHI", SELL, 3, 25001.0, 0.9, "b1", tid="X-2"),
              fill("HSI", BUY, 1, 24999.0, 2.0, tid="X-2")]
    e = compute(events, HSI, MHI)
    assert e.ended == "hedged" and e.exposure_ms == 1.2
    assert e.windows == ((T0 + round(0.8 * MS), T0 + 2 * MS),)
    assert e.peak_exposure == pytest.approx(5 * 25001.0 * 10.0)  # the last fill price of the leg
    steps = moments(events, HSI, MHI)
    assert [(m.net_a, m.net_b, m.in_ratio) for m in steps] == [(0, 0, True), (0, -2, False), (0, -5, False), (1, -5, True)]


def test_lead_leg_window_is_the_time_between_the_legs() -> None:
    e = compute([trade(W, "lead_leg_sent", 0.0), fill("au", BUY, 3, 556.0, 2.0),
                 trade(TradeState.HEDGING, "hedge_leg_sent", 2.1, (3, 0)), fill("GC", SELL, 1, 2400.0, 7.0, "b1"),
                 trade(C, "both_legs_filled", 7.1, (3, -1))], AU, GC)
    assert e.windows == ((T0 + 2 * MS, T0 + 7 * MS),) and e.exposure_ms == 5.0 and e.ended == "hedged"


def test_partial_fills_keep_the_window_open_until_in_ratio() -> None:
    """2 units (6 au : 2 GC). A fills 4 then 2 (resubmit), B 1 then 1: in ratio only at 3 au : 1 GC and at the end."""
    events = [trade(W, "both_legs_sent", 0.0, target=(6, 2)),
              fill("au", BUY, 4, 556.0, 1.0),  # 4 : 0  out
              fill("GC", SELL, 1, 2400.0, 2.0, "b1"),  # 4 : -1 out (1 naked au)
              trade(TradeState.RESUBMITTING, "leg_a_partial_resubmit", 2.5, (4, -1), target=(6, 2)),
              fill("au", BUY, 2, 556.2, 4.0, "a2"),  # 6 : -1 out (3 naked au)
              fill("GC", SELL, 1, 2400.5, 5.0, "b2"),  # 6 : -2 in
              trade(C, "both_legs_filled", 5.1, (6, -2), target=(6, 2))]
    e = compute(events, AU, GC)
    assert e.windows == ((T0 + 1 * MS, T0 + 5 * MS),) and e.exposure_ms == 4.0 and e.ended == "hedged"
    assert e.peak_exposure == pytest.approx(4 * 556.0 * 1000.0)  # 4 naked au beat 3 at 556.2
    steps = moments(events, AU, GC)
    assert [(m.unhedged_a, m.unhedged_b) for m in steps] == [(0, 0), (4, 0), (1, 0), (1, 0), (3, 0), (0, 0), (0, 0)]


def test_partial_fill_passing_through_ratio_makes_two_windows() -> None:
    events = [fill("au", BUY, 3, 556.0, 1.0), fill("GC", SELL, 1, 2400.0, 2.0, "b1"),  # in ratio at 2 ms
              fill("au", BUY, 2, 556.0, 3.0, "a2"), fill("au", BUY, 1, 556.0, 3.5, "a2"),
              fill("GC", SELL, 1, 2400.0, 6.0, "b2")]
    e = compute(events, AU, GC)
    assert e.windows == ((T0 + 1 * MS, T0 + 2 * MS), (T0 + 3 * MS, T0 + 6 * MS)) and e.exposure_ms == 4.0


def test_rollback_a_filled_b_rejected_a_unwound() -> None:
    e = compute([trade(W, "both_legs_sent", 0.0), fill("au", BUY, 3, 556.0, 1.0),
                 trade(TradeState.ROLLING_BACK, "rollback_started", 3.0, (3, 0)),
                 trade(TradeState.ROLLING_BACK, "rollback_order_sent", 3.0, (3, 0)),
                 fill("au", SELL, 3, 555.8, 9.0, "a2"),
                 trade(TradeState.ROLLED_BACK, "rollback_filled", 9.1, (0, 0))], AU, GC)
    assert e.ended == "unwound" and e.windows == ((T0 + 1 * MS, T0 + 9 * MS),) and e.exposure_ms == 8.0
    assert e.peak_exposure == pytest.approx(3 * 556.0 * 1000.0)


def test_rollback_keeping_units_unwinds_the_excess() -> None:
    """A overfilled (6 au for 1 GC): the rollback sells the extra unit of A; in ratio again, not flat: unwound."""
    e = compute([fill("au", BUY, 6, 556.0, 1.0), fill("GC", SELL, 1, 2400.0, 1.2, "b1"),
                 fill("au", SELL, 3, 556.0, 4.0, "a2")], AU, GC)
    assert e.ended == "unwound" and e.exposure_ms == 3.0


def test_late_fill_reopens_a_settled_trade() -> None:
    events = [fill("au", BUY, 3, 556.0, 1.0), fill("GC", SELL, 1, 2400.0, 1.5, "b1"),
              trade(C, "both_legs_filled", 1.6, (3, -1)),
              fill("GC", SELL, 1, 2401.0, 50.0, "b2"),  # the resubmitted GC order fills after all
              trade(TradeState.ROLLING_BACK, "late_fill_reopened", 50.1, (3, -2)),
              fill("GC", BUY, 1, 2401.5, 53.0, "b3"),
              trade(C, "both_legs_filled", 53.1, (3, -1))]
    e = compute(events, AU, GC)
    assert e.windows == ((T0 + 1 * MS, T0 + round(1.5 * MS)), (T0 + 50 * MS, T0 + 53 * MS))
    assert e.exposure_ms == 3.5 and e.ended == "unwound"
    assert e.peak_exposure == pytest.approx(3 * 556.0 * 1000.0)  # 1,668,000 au > 240,100 GC


def test_still_out_of_ratio_at_the_last_event_is_open() -> None:
    e = compute([fill("au", BUY, 3, 556.0, 1.0),
                 trade(TradeState.BROKEN, "broken_rollback_exhausted", 30.0, (3, 0))], AU, GC)
    assert e.ended == "open" and e.windows == ((T0 + 1 * MS, None),) and e.exposure_ms == 29.0


def test_never_exposed_when_both_legs_fill_in_the_same_moment() -> None:
    """Fills stamped with the same time are one moment: a window of length 0 does not count."""
    e = compute([trade(W, "both_legs_sent", 0.0), fill("au", BUY, 3, 556.0, 1.0), fill("GC", SELL, 1, 2400.0, 1.0, "b1"),
                 trade(C, "both_legs_filled", 1.0, (3, -1))], AU, GC)
    assert not e.exposed and e.ended == "never" and e.exposure_ns == 0 and e.windows == () and e.peak_exposure == 0.0


def test_nothing_filled_is_never_exposed() -> None:
    e = compute([trade(W, "both_legs_sent", 0.0), trade(TradeState.CANCELLED, "cancelled_nothing_filled", 3.0)], AU, GC)
    assert not e.exposed and e.ended == "never"
    assert compute([], AU, GC).ended == "never"


def test_time_never_runs_backwards() -> None:
    """An unstamped or earlier-stamped event takes the time of the event before it."""
    unstamped = msgspec.structs.replace(fill("GC", SELL, 1, 2400.0, 0.0, "b1"), recv_ns=0)
    e = compute([fill("au", BUY, 3, 556.0, 2.0), unstamped], AU, GC)
    assert not e.exposed  # same moment as A's fill
    e = compute([fill("au", BUY, 3, 556.0, 2.0), fill("GC", SELL, 1, 2400.0, 1.0, "b1"),
                 trade(C, "both_legs_filled", 4.0, (3, -1))], AU, GC)
    assert not e.exposed


def test_fx_converts_the_peak_to_base_currency() -> None:
    """au in CNY (1 CNY = 1/7.2 USD), GC in USD: the peak is each leg's naked notional in USD."""
    au_cny = LegSpec(instrument="au", ratio=3, multiplier=1000.0, fx=1 / 7.2)
    events = [fill("au", BUY, 3, 556.0, 1.0), fill("GC", SELL, 1, 2400.0, 2.0, "b1")]
    assert compute(events, au_cny, GC).peak_exposure == pytest.approx(3 * 556.0 * 1000.0 / 7.2)
    # B first: 1 naked GC in USD at rate 1
    events = [fill("GC", SELL, 1, 2400.0, 1.0, "b1"), fill("au", BUY, 3, 556.0, 2.0)]
    assert compute(events, au_cny, GC).peak_exposure == pytest.approx(240_000.0)
    # both legs naked at once (3 au and 2 GC short: one unit hedged, one GC naked) sum per leg
    events = [fill("au", BUY, 4, 556.0, 1.0), fill("GC", SELL, 2, 2400.0, 2.0, "b1")]
    e = compute(events, au_cny, GC)
    assert e.peak_exposure == pytest.approx(max(4 * 556_000 / 7.2, 556_000 / 7.2 + 240_000.0)) and e.ended == "open"


def test_unknown_fx_leaves_the_peak_unknown_but_the_time_known() -> None:
    e = compute([fill("au", BUY, 3, 556.0, 1.0), fill("GC", SELL, 1, 2400.0, 2.0, "b1")],
                LegSpec(instrument="au", ratio=3, multiplier=1000.0, fx=None), GC)
    assert e.peak_exposure is None and e.exposure_ms == 1.0 and e.peak_ns == T0 + 1 * MS
    # a leg without FX that was never naked does not matter
    e = compute([fill("GC", SELL, 1, 2400.0, 1.0, "b1"), fill("au", BUY, 3, 556.0, 2.0)],
                LegSpec(instrument="au", ratio=3, multiplier=1000.0, fx=None), GC)
    assert e.peak_exposure == pytest.approx(240_000.0)


def test_sell_the_spread_is_in_ratio_too() -> None:
    e = compute([fill("au", SELL, 3, 556.0, 1.0), fill("GC", BUY, 1, 2400.0, 3.0, "b1")], AU, GC)
    assert e.ended == "hedged" and e.exposure_ms == 2.0


# --- read back from a journal file -------------------------------------------------------------


def _journal(path: Path, bodies: list, fx: list[FxRate] = ()) -> None:
    """File stream events exactly as the journal's `_on_stream` does, plus FX rates as bus frames."""
    store = AuditWriter(path)
    for seq, body in enumerate(bodies, start=1):
        ev = StreamEvent(seq=seq, body=body)
        env = Envelope(src="executor", epoch=STREAM_EPOCH, seq=ev.seq, ts_ns=T0 + seq * 1000, body=ev.body)
        store.add(row_of(filed_topic(ev), env))
    for n, rate in enumerate(fx, start=1):
        store.add(row_of(f"md.FX.{rate.pair}", Envelope(src="ingest", epoch=7, seq=n, ts_ns=rate.recv_ns, body=rate)))
    store.close()


def _cfg():
    from configs.load import load_config

    return load_config(str(Path(__file__).resolve().parents[3] / "configs" / "demo.toml"))


def test_trades_and_trace_over_a_journal_file(tmp_path: Path) -> None:
    from actors import runreport, tradebook

    path = tmp_path / "journal.sqlite"
    x1 = [trade(W, "both_legs_sent", 0.0, tid="X-000001"), fill("au", BUY, 3, 556.0, 1.0, tid="X-000001"),
          fill("GC", SELL, 1, 2400.0, 1.25, "b1", tid="X-000001"), trade(C, "both_legs_filled", 1.3, (3, -1), tid="X-000001")]
    x2 = [trade(W, "both_legs_sent", 10.0, tid="X-000002"), fill("au", BUY, 3, 556.0, 11.0, tid="X-000002"),
          trade(TradeState.ROLLING_BACK, "rollback_started", 12.0, (3, 0), tid="X-000002"),
          fill("au", SELL, 3, 555.0, 19.0, "a2", tid="X-000002"),
          trade(TradeState.ROLLED_BACK, "rollback_filled", 19.5, (0, 0), tid="X-000002")]
    x3 = [trade(W, "both_legs_sent", 30.0, tid="X-000003"), trade(TradeState.CANCELLED, "cancelled_nothing_filled", 31.0,
                                                                  tid="X-000003")]
    usdcnh = FxRate(pair="USDCNH", bid=7.19, ask=7.21, exch_ts_ns=0, recv_ns=T0)
    usdcny = FxRate(pair="USDCNY", bid=7.19, ask=7.21, exch_ts_ns=0, recv_ns=T0)
    _journal(path, x1 + x2 + x3, [usdcnh, usdcny])
    reader = AuditReader(path)
    cfg = _cfg()
    rows = {t["trade_id"]: t for t in tradebook.trades(reader, cfg)}
    assert rows["X-000001"]["exposure_ms"] == 0.25 and rows["X-000001"]["exposure_ended"] == "hedged"
    assert rows["X-000001"]["peak_exposure"] == round(3 * 556.0 * 1000.0 / 7.2, 2)  # au is in CNY, base USD
    assert rows["X-000002"]["exposure_ms"] == 8.0 and rows["X-000002"]["exposure_ended"] == "unwound"
    assert rows["X-000003"]["exposure_ms"] == 0.0 and rows["X-000003"]["peak_exposure"] == 0.0
    assert not rows["X-000003"]["exposed"] and rows["X-000003"]["exposure_ended"] == "never"
    assert all(isinstance(t["utc_day"], str) for t in rows.values())
    # every existing field is still there (shared/CONTRACTS.md)
    assert {"trade_id", "pair", "state", "legs", "realised_pnl_base", "fills"} <= set(rows["X-000001"])
    # without the run's config: time from the trades' own targets, no notional
    bare = {t["trade_id"]: t for t in tradebook.trades(reader)}
    assert bare["X-000002"]["exposure_ms"] == 8.0 and bare["X-000002"]["peak_exposure"] is None

    doc = tradebook.trace(reader, "X-000002", cfg)
    assert doc is not None and doc["exposure_ms"] == 8.0 and doc["exposure_ended"] == "unwound"
    marks = [e for e in doc["events"] if e["kind"] == "Exposure"]
    assert [m["event"] for m in marks] == ["exposure_start", "exposure_end"]
    names = [e["event"] for e in doc["events"]]
    assert names.index("exposure_start") == names.index("FILL") + 1  # right after A's fill
    assert marks[1]["window_ms"] == 8.0 and marks[1]["ended"] == "unwound"
    assert doc["exposure"]["windows"] == [{"start_ns": T0 + 11 * MS, "end_ns": T0 + 19 * MS, "ms": 8.0}]

    report = runreport.exposure_summary(tradebook.trades(reader, cfg), "USD")
    pair = report["by_pair"]["au_gc"]
    assert pair["trades"] == 3 and pair["exposed"] == 2 and pair["exposed_share"] == round(2 / 3, 4)
    assert pair["exposure_ms"]["max"] == 8.0 and pair["exposure_ms"]["p50"] == 0.25
    assert [w["trade_id"] for w in pair["worst"]] == ["X-000002", "X-000001"]
    assert pair["worst"][0]["ended"] == "unwound"
    assert len(report["by_pair_day"]) == 1 and report["by_pair_day"][0]["pair"] == "au_gc"
    reader.close()


def test_tables_render_exposure(tmp_path: Path) -> None:
    """The trades, trace and report tables print the new columns without error."""
    from io import StringIO

    from rich.console import Console

    from actors import runreport, tables, tradebook

    path = tmp_path / "journal.sqlite"
    _journal(path, [trade(W, "lead_leg_sent", 0.0), fill("au", BUY, 3, 556.0, 1.0)])  # still open
    reader = AuditReader(path)
    out = StringIO()
    console = Console(file=out, width=250)
    rows = tradebook.trades(reader, _cfg())
    tables.trades_table(rows, console)
    doc = tradebook.trace(reader, "X-000001", _cfg())
    tables.trace_table(doc, console)
    tables.exposure_tables(runreport.exposure_summary(rows, "USD"), console)
    text = out.getvalue()
    assert "expo ms" in text and "exposure_start" in text and "open" in text and "worst 1 trades" in text
    reader.close()
