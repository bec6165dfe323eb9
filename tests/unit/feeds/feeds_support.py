"""Builders shared by the feeds tests: a small simulated-market config built in code, quotes, orders."""

from __future__ import annotations

from typing import Any

import msgspec

from bus.messages import OrderRequest, Side, TimeInForce
from configs.schema import Config, InstrumentCfg
from feeds.book import TopOfBook


def market_config(seed: int = 7, **pair_overrides: Any) -> Config:
    """SHFE au vs COMEX GC through USDCNY, HKEX HSI vs MHI; like the demo, fixed here."""
    au_gc = {"leg_a": "au", "leg_b": "GC", "ratio_a": 3, "currency": "CNY", "unit": "g",
             "sim_basis_vol_bp": 3.0, "sim_basis_reversion": 0.02}
    au_gc.update(pair_overrides)
    raw = {
        "run": {"seed": seed},
        "venues": {"SHFE": {"kind": "sim"}, "COMEX": {"kind": "sim"}, "HKEX": {"kind": "sim"}, "FX": {"kind": "sim"}},
        "instruments": {
            "au": {"venue": "SHFE", "symbol": "au2612", "tick": 0.02, "multiplier": 1000.0, "currency": "CNY",
                   "unit": "g", "sim": {"start": 556.0, "vol_bp": 1.5, "spread_ticks": 2, "size": 30, "interval_ms": 20}},
            "GC": {"venue": "COMEX", "symbol": "GCZ6", "tick": 0.1, "multiplier": 100.0, "currency": "USD",
                   "unit": "oz", "sim": {"start": 2400.0, "vol_bp": 1.5, "spread_ticks": 2, "size": 20, "interval_ms": 20}},
            "HSI": {"venue": "HKEX", "symbol": "HSIZ6", "tick": 1.0, "multiplier": 50.0, "currency": "HKD",
                    "sim": {"start": 25000.0, "vol_bp": 2.0, "size": 15, "interval_ms": 25}},
            "MHI": {"venue": "HKEX", "symbol": "MHIZ6", "tick": 1.0, "multiplier": 10.0, "currency": "HKD",
                    "sim": {"start": 25000.0, "vol_bp": 2.0, "size": 40, "interval_ms": 25}},
            "USDCNY": {"venue": "FX", "symbol": "USDCNY", "tick": 0.0001, "multiplier": 1.0, "currency": "CNY",
                       "unit": "ccy", "fx": True,
                       "sim": {"start": 7.2, "vol_bp": 0.3, "spread_ticks": 2, "size": 1000000, "interval_ms": 100}},
            "USDHKD": {"venue": "FX", "symbol": "USDHKD", "tick": 0.0001, "multiplier": 1.0, "currency": "HKD",
                       "unit": "ccy", "fx": True,
                       "sim": {"start": 7.8, "vol_bp": 0.1, "spread_ticks": 2, "size": 1000000, "interval_ms": 100}},
        },
        "pairs": {
            "au_gc": au_gc,
            "hsi_mhi": {"leg_a": "HSI", "leg_b": "MHI", "ratio_b": 5, "currency": "HKD",
                        "sim_basis_vol_bp": 2.0, "sim_basis_reversion": 0.03},
        },
    }
    return msgspec.convert(raw, Config)


def inst(tick: float = 1.0, hours: list[str] | None = None) -> InstrumentCfg:
    return InstrumentCfg(venue="X", symbol="XZ6", tick=tick, multiplier=10.0, currency="USD", hours=hours or [])


def tob(ts: int, bid: float, ask: float, bid_size: float = 10, ask_size: float = 10, seq: int = 0,
        instrument: str = "XX") -> TopOfBook:
    return TopOfBook(venue="X", instrument=instrument, symbol="XZ6", bid=bid, ask=ask, bid_size=bid_size,
                     ask_size=ask_size, ts_ns=ts, seq=seq)


def order(cl: str, side: Side = Side.BUY, qty: int = 5, price: float | None = 101.0,
          tif: TimeInForce = TimeInForce.DAY, instrument: str = "XX", venue: str = "X") -> OrderRequest:
    return OrderRequest(cl_ord_id=cl, trade_id="T1", account="acct", venue=venue, instrument=instrument, side=side,
                        qty=qty, price=price, tif=tif)


MS = 1_000_000
