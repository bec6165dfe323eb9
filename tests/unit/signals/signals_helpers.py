"""Helpers for the signals tests: small configs built in code, quotes and FX rates."""

from __future__ import annotations

from typing import Any

import msgspec

from bus.messages import FxRate, Quote
from configs.schema import Config

MS = 1_000_000


def make_cfg(pair: dict[str, Any] | None = None, *, a: dict[str, Any] | None = None,
             b: dict[str, Any] | None = None, fx: bool = False) -> Config:
    """Pair `p` of instrument A (venue VA, symbol A) and B (venue VB, symbol B), spread mode, USD/pt."""
    pair_cfg: dict[str, Any] = {
        "leg_a": "A", "leg_b": "B", "mode": "spread", "entry": 0.5, "exit": 0.1, "currency": "USD",
        "unit": "pt", "min_size": 1.0, "max_quote_age_ms": 500.0, "cooldown_ms": 0.0, "max_inventory": 3,
        "warmup_ticks": 0, "expiry_ms": 500.0, "deadline_ms": 2000.0, "lots": 1,
    }
    pair_cfg.update(pair or {})
    inst_a = {"venue": "VA", "symbol": "A", "tick": 0.1, "multiplier": 1.0, "currency": "USD", "unit": "pt"}
    inst_b = {"venue": "VB", "symbol": "B", "tick": 0.1, "multiplier": 1.0, "currency": "USD", "unit": "pt"}
    inst_a.update(a or {})
    inst_b.update(b or {})
    instruments = {"A": inst_a, "B": inst_b}
    venues: dict[str, Any] = {"VA": {"kind": "replay"}, "VB": {"kind": "replay"}}
    if fx:
        venues["FX"] = {"kind": "replay"}
        instruments["USDCNY"] = {"venue": "FX", "symbol": "USDCNY", "tick": 0.0001, "multiplier": 1.0,
                                 "currency": "CNY", "unit": "ccy", "fx": True}
    return msgspec.convert({"venues": venues, "instruments": instruments, "pairs": {"p": pair_cfg}}, Config)


def quote(sym: str, bid: float, ask: float, *, size: float = 10.0, recv_ns: int = 0, exch_ns: int = 0,
          bid_size: float | None = None, ask_size: float | None = None) -> Quote:
    return Quote(venue="V" + sym, symbol=sym, bid=bid, ask=ask,
                 bid_size=size if bid_size is None else bid_size, ask_size=size if ask_size is None else ask_size,
                 exch_ts_ns=exch_ns, recv_ns=recv_ns)


def fx_rate(pair: str, mid: float, *, recv_ns: int = 0) -> FxRate:
    return FxRate(pair=pair, bid=mid, ask=mid, exch_ts_ns=0, recv_ns=recv_ns)
