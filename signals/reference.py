"""Plain-Python reference of the spread kernel, one pair at a time; the executable spec tests compare to.

`ReferencePair.update` does what `signals.kernels.update_pairs` does for one
pair, with Python floats and a list ring buffer. `ewma_closed_form` and
`ols_slope` compute the same statistics from the whole history with numpy,
independently of any incremental update.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from signals.kernels import MODE_RATIO, MODE_SPREAD, MODE_ZSCORE, Decision, Gate, ewma_alpha


class LegTop(NamedTuple):
    """A leg's top of book as the reference sees it."""

    bid: float
    ask: float
    bid_size: float
    ask_size: float
    recv_ns: int = 0
    stale: bool = False


class RefResult(NamedTuple):
    buy: float
    sell: float
    mid: float
    ratio_buy: float
    ratio_sell: float
    mean: float
    sd: float
    z: float
    z_buy: float
    z_sell: float
    hedge: float
    conv_a: float
    conv_b: float
    decision: int
    gate: int
    leg: int


_NAN = math.nan


def _unpriced(gate: Gate, leg: int) -> RefResult:
    return RefResult(*([_NAN] * 13), decision=0, gate=int(gate), leg=leg)


class ReferencePair:
    """One pair's state and parameters; `fx_*` None means the leg needs no FX rate."""

    def __init__(self, *, unit_a: float = 1.0, unit_b: float = 1.0, invert_a: bool | None = None,
                 invert_b: bool | None = None, ratio_a: int = 1, ratio_b: int = 1, halflife: float = 200.0,
                 window: int = 200, warmup: int = 0, mode: int = MODE_ZSCORE, entry: float = 2.0,
                 exit: float = 0.5, min_size: float = 1.0, max_age_ms: float = 500.0) -> None:
        self.unit_a, self.unit_b = unit_a, unit_b
        self.invert_a, self.invert_b = invert_a, invert_b
        self.ratio_a, self.ratio_b = ratio_a, ratio_b
        self.alpha = ewma_alpha(halflife)
        self.window, self.warmup, self.mode = window, warmup, mode
        self.entry, self.exit, self.min_size = entry, exit, min_size
        self.max_age_ns = max_age_ms * 1e6
        self.n = 0
        self.mean = 0.0
        self.var = 0.0
        self.position = 0
        self._ring: list[tuple[float, float]] = [(0.0, 0.0)] * window
        self._pos = 0
        self._cnt = 0
        self._shift = (0.0, 0.0)
        self._sums = [0.0, 0.0, 0.0, 0.0]  # sx, sy, sxx, sxy

    @staticmethod
    def _conv(unit: float, invert: bool | None, fx: float | None) -> float:
        if invert is None:
            return unit
        if fx is None or not fx > 0.0:
            return _NAN
        return unit / fx if invert else unit * fx

    def _ols(self, x: float, y: float) -> float:
        w = self.window
        if self._cnt == 0:
            self._shift = (x, y)
        dx, dy = x - self._shift[0], y - self._shift[1]
        s = self._sums
        if self._cnt == w:
            ox, oy = self._ring[self._pos]
            s[0] -= ox
            s[1] -= oy
            s[2] -= ox * ox
            s[3] -= ox * oy
        else:
            self._cnt += 1
        self._ring[self._pos] = (dx, dy)
        s[0] += dx
        s[1] += dy
        s[2] += dx * dx
        s[3] += dx * dy
        self._pos += 1
        if self._pos == w:
            self._pos = 0
            if self._cnt == w:
                mx, my = s[0] / w, s[1] / w
                self._ring = [(rx - mx, ry - my) for rx, ry in self._ring]
                self._shift = (self._shift[0] + mx, self._shift[1] + my)
                s[:] = [0.0, 0.0, 0.0, 0.0]
                for rx, ry in self._ring:
                    s[0] += rx
                    s[1] += ry
                    s[2] += rx * rx
                    s[3] += rx * ry
        if self._cnt < 2:
            return _NAN
        n = float(self._cnt)
        den = n * s[2] - s[0] * s[0]
        if not den > 1e-12 * n * s[2]:
            return _NAN
        return (n * s[3] - s[0] * s[1]) / den

    def update(self, a: LegTop | None, b: LegTop | None, fx_a: float | None, fx_b: float | None,
               now_ns: int) -> RefResult:
        """Price the pair from both legs' tops and FX mids at `now_ns`; advance its statistics."""
        if a is None or b is None:
            return _unpriced(Gate.NO_QUOTE, 0 if a is None else 1)
        conv_a = self._conv(self.unit_a, self.invert_a, fx_a)
        conv_b = self._conv(self.unit_b, self.invert_b, fx_b)
        if not (conv_a > 0.0 and conv_b > 0.0):
            return _unpriced(Gate.NO_FX, 0 if not conv_a > 0.0 else 1)
        for leg, top in ((0, a), (1, b)):
            if not (top.bid > 0.0 and top.ask >= top.bid):
                return _unpriced(Gate.BAD_BOOK, leg)
        a_bid, a_ask = a.bid * conv_a, a.ask * conv_a
        b_bid, b_ask = b.bid * conv_b, b.ask * conv_b
        buy = a_ask - b_bid
        sell = a_bid - b_ask
        a_mid, b_mid = (a_bid + a_ask) / 2.0, (b_bid + b_ask) / 2.0
        mid = a_mid - b_mid
        ratio_buy = a_ask / b_bid - 1.0
        ratio_sell = a_bid / b_ask - 1.0
        if self.n == 0:
            self.mean, self.var = mid, 0.0
        else:
            d = mid - self.mean
            inc = self.alpha * d
            self.mean += inc
            self.var = (1.0 - self.alpha) * (self.var + d * inc)
        self.n += 1
        sd = math.sqrt(self.var)
        if sd > 0.0:
            z, z_buy, z_sell = (mid - self.mean) / sd, (buy - self.mean) / sd, (sell - self.mean) / sd
        else:
            z = z_buy = z_sell = 0.0
        hedge = self._ols(b_mid, a_mid)
        values = {MODE_SPREAD: (buy, sell), MODE_RATIO: (ratio_buy, ratio_sell), MODE_ZSCORE: (z_buy, z_sell)}
        v_buy, v_sell = values[self.mode]
        dec = Decision.NONE
        if self.position > 0 and v_sell > -self.exit:
            dec = Decision.CLOSE_SELL
        elif self.position < 0 and v_buy < self.exit:
            dec = Decision.CLOSE_BUY
        elif v_sell >= self.entry:
            dec = Decision.OPEN_SELL
        elif v_buy <= -self.entry:
            dec = Decision.OPEN_BUY
        gate, leg = Gate.PASS, -1
        if dec != Decision.NONE:
            buying = dec in (Decision.OPEN_BUY, Decision.CLOSE_BUY)
            sizes = (a.ask_size, b.bid_size) if buying else (a.bid_size, b.ask_size)
            needs = (self.min_size * self.ratio_a, self.min_size * self.ratio_b)
            if a.stale or b.stale:
                gate, leg = Gate.STALE, 0 if a.stale else 1
            elif now_ns - a.recv_ns > self.max_age_ns:
                gate, leg = Gate.QUOTE_AGE, 0
            elif now_ns - b.recv_ns > self.max_age_ns:
                gate, leg = Gate.QUOTE_AGE, 1
            elif self.mode == MODE_ZSCORE and self.n < self.warmup:
                gate = Gate.WARMUP
            elif sizes[0] < needs[0]:
                gate, leg = Gate.MIN_SIZE, 0
            elif sizes[1] < needs[1]:
                gate, leg = Gate.MIN_SIZE, 1
        return RefResult(buy, sell, mid, ratio_buy, ratio_sell, self.mean, sd, z, z_buy, z_sell, hedge,
                         conv_a, conv_b, int(dec), int(gate), leg)


def ewma_closed_form(xs: np.ndarray, alpha: float) -> tuple[float, float]:
    """EWMA mean and variance of `xs` (first value seeds the mean) from explicit weights.

    mean_n = (1-a)^(n-1) x_1 + sum_{i>=2} a (1-a)^(n-i) x_i; the variance is the
    same recursion's closed form, evaluated by direct iteration on exact weights.
    """
    xs = np.asarray(xs, dtype=float)
    n = len(xs)
    w = alpha * (1.0 - alpha) ** (n - 1 - np.arange(n))
    w[0] = (1.0 - alpha) ** (n - 1)
    mean = float(np.dot(w, xs))
    # var_n = (1-a) (var_{n-1} + a d_n^2), d_n = x_n - mean_{n-1}
    means = np.empty(n)
    for k in range(n):
        wk = alpha * (1.0 - alpha) ** (k - np.arange(k + 1))
        wk[0] = (1.0 - alpha) ** k
        means[k] = np.dot(wk, xs[: k + 1])
    d = xs[1:] - means[:-1]
    terms = alpha * d * d * (1.0 - alpha) ** (n - 1 - np.arange(1, n) + 1)
    return mean, float(terms.sum())


def ols_slope(xs: np.ndarray, ys: np.ndarray) -> float:
    """Least-squares slope of ys on xs (two-pass, centred)."""
    xs = np.asarray(xs, dtype=float)
    ys = np.asarray(ys, dtype=float)
    dx = xs - xs.mean()
    den = float(np.dot(dx, dx))
    if den == 0.0:
        return _NAN
    return float(np.dot(dx, ys - ys.mean()) / den)
