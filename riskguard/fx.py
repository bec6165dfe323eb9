"""Live FX rates: a table of currency pairs fed by `FxRate` messages.

A pair "USDCNH" with mid 7.2 means 1 USD = 7.2 CNH. A rate between two
currencies is found directly, as the inverse of the reverse pair, or through
the pivot currency (USD). CNH and CNY are different currencies unless an
equivalence is configured (`equivalents={"CNY": "CNH"}` lets a missing CNY
rate fall back to CNH).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from bus.messages import FxRate


class FxUnavailable(KeyError):
    """No rate (direct, inverse or through the pivot) converts the two currencies."""


class FxTable:
    """Last mid and receive time of each pair; conversions between any two currencies."""

    def __init__(
        self,
        pivot: str = "USD",
        *,
        expected: Iterable[str] = (),
        equivalents: Mapping[str, str] | None = None,
    ) -> None:
        """`expected` pairs count as stale until their first rate arrives."""
        self.pivot = pivot
        self._mid: dict[str, float] = {}
        self._ts: dict[str, int] = {}
        self._expected = tuple(expected)
        self._equiv = dict(equivalents or {})

    def update(self, pair: str, mid: float, ts_ns: int) -> bool:
        """Record `pair` at `mid` (quote ccy per base ccy); False if the rate is unusable."""
        if len(pair) != 6 or not math.isfinite(mid) or mid <= 0.0:
            return False
        self._mid[pair] = mid
        self._ts[pair] = ts_ns
        return True

    def on_fx(self, msg: FxRate) -> bool:
        """Feed one `FxRate`; its monotonic receive time is what staleness is measured on."""
        return self.update(msg.pair, msg.mid, msg.recv_ns)

    def received_ns(self, pair: str) -> int:
        """The monotonic receive time of `pair`'s rate in use (0: none yet)."""
        return self._ts.get(pair, 0)

    def pairs(self) -> dict[str, float]:
        """Every known pair and its mid."""
        return dict(self._mid)

    def _direct(self, src: str, dst: str) -> float | None:
        if src == dst:
            return 1.0
        mid = self._mid.get(src + dst)
        if mid is not None:
            return mid
        mid = self._mid.get(dst + src)
        if mid is not None:
            return 1.0 / mid
        return None

    def _hop(self, src: str, dst: str) -> float | None:
        r = self._direct(src, dst)
        if r is not None:
            return r
        # an equivalence is only a fallback: an exact rate always wins
        s2, d2 = self._equiv.get(src, src), self._equiv.get(dst, dst)
        if (s2, d2) != (src, dst):
            return self._direct(s2, d2)
        return None

    def try_rate(self, from_ccy: str, to_ccy: str) -> float | None:
        """Units of `to_ccy` per unit of `from_ccy`, or None when no rate path exists."""
        r = self._hop(from_ccy, to_ccy)
        if r is not None:
            return r
        a = self._hop(from_ccy, self.pivot)
        b = self._hop(self.pivot, to_ccy)
        if a is None or b is None:
            return None
        return a * b

    def rate(self, from_ccy: str, to_ccy: str) -> float:
        """Units of `to_ccy` per unit of `from_ccy`; raises `FxUnavailable`."""
        r = self.try_rate(from_ccy, to_ccy)
        if r is None:
            raise FxUnavailable(f"FX_UNAVAILABLE: from={from_ccy} to={to_ccy}")
        return r

    def convert(self, amount: float, from_ccy: str, to_ccy: str) -> float:
        """`amount` of `from_ccy` expressed in `to_ccy`; raises `FxUnavailable`."""
        return amount * self.rate(from_ccy, to_ccy)

    def age_ns(self, pair: str, now_ns: int) -> int | None:
        """Time since `pair` was last updated, None if never."""
        ts = self._ts.get(pair)
        return None if ts is None else now_ns - ts

    def stale(self, now_ns: int, max_age_ns: int) -> list[str]:
        """Pairs older than `max_age_ns`, and expected pairs never received, sorted."""
        out = {p for p, ts in self._ts.items() if now_ns - ts > max_age_ns}
        out.update(p for p in self._expected if p not in self._ts)
        return sorted(out)
