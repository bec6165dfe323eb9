"""`tradebook.tick_stages_us`: where a trade's tick-to-trade went, from the journal's stamps."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.tradebook import STAGES, tick_stages_us
from bus.auditstore import STREAM_EPOCH, AuditReader, AuditWriter, row_of
from bus.messages import (Envelope, LegView, OrderPurpose, OrderRequest, PairTradeEvent, Side, Signal, SignalLeg,
                          TradeState)

US = 1_000


def _journal(path: Path, *, eval_ns: int) -> None:
    """One trade: tick at 1,000 µs, trigger wake +200, signal +60, executor wake +250, orders +150 / +40."""
    tick = 1_000 * US
    sig = Signal(signal_id="s1", pair="au_gc", direction=Side.BUY, closing=False,
                 legs=(SignalLeg(instrument="au", side=Side.BUY, qty=3, limit_px=556.0),
                       SignalLeg(instrument="GC", side=Side.SELL, qty=1, limit_px=2400.0)),
                 spread=1.0, zscore=2.0, expiry_ns=0, tick_recv_ns=tick, signal_ns=tick + 260 * US,
                 eval_ns=eval_ns)
    opened = PairTradeEvent(trade_id="T000001", pair="au_gc", state=TradeState.WORKING, prev_state=TradeState.NEW,
                            transition="both_legs_sent", direction=Side.BUY,
                            legs=(LegView(instrument="au", side=Side.BUY, target_qty=3, filled_qty=0, avg_price=0.0,
                                          net_qty=0),
                                  LegView(instrument="GC", side=Side.SELL, target_qty=1, filled_qty=0, avg_price=0.0,
                                          net_qty=0)),
                            signal_id="s1", tick_recv_ns=tick, ts_ns=tick + 510 * US)
    orders = [OrderRequest(cl_ord_id=f"T000001.{leg}1", trade_id="T000001", account="cn", venue=v, instrument=i,
                           side=sd, qty=q, price=1.0, purpose=OrderPurpose.OPEN, tick_recv_ns=tick, sent_ns=tick + at)
              for leg, v, i, sd, q, at in (("a", "SHFE", "au", Side.BUY, 3, 660 * US),
                                           ("b", "COMEX", "GC", Side.SELL, 1, 700 * US))]
    w = AuditWriter(path)
    w.add(row_of("sig.au_gc", Envelope(src="trigger", epoch=1, seq=1, ts_ns=0, body=sig)))
    w.add(row_of("exec.trade.au_gc", Envelope(src="executor", epoch=STREAM_EPOCH, seq=1, ts_ns=0, body=opened)))
    for n, o in enumerate(orders, 1):
        w.add(row_of(f"exec.order.{o.venue}", Envelope(src="executor", epoch=1, seq=n, ts_ns=0, body=o)))
    w.close()


def test_tick_stages_of_a_journalled_trade_split_its_tick_to_trade(tmp_path: Path) -> None:
    _journal(tmp_path / "j.sqlite", eval_ns=1_200 * US)
    reader = AuditReader(tmp_path / "j.sqlite")
    (row,) = tick_stages_us(reader)
    reader.close()
    assert [row[s] for s in STAGES] == pytest.approx([200.0, 60.0, 250.0, 150.0, 40.0])
    assert row["tick_to_first_order"] == pytest.approx(660.0) and row["tick_to_trade"] == pytest.approx(700.0)
    assert sum(row[s] for s in STAGES) == pytest.approx(row["tick_to_trade"])


def test_tick_stages_without_the_trigger_wake_stamp_leave_the_trade_out(tmp_path: Path) -> None:
    _journal(tmp_path / "j.sqlite", eval_ns=0)
    reader = AuditReader(tmp_path / "j.sqlite")
    assert tick_stages_us(reader) == []
    reader.close()
