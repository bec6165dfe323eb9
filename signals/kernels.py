"""The fused spread kernel: executable spreads, EWMA z-score, rolling hedge ratio and data gates.

One call updates every pair touched by the instruments updated since the
previous call. Per pair it does:

1. convert both legs into the pair's currency and unit
   (``conv = unit_factor * fx``, ``fx`` an FX instrument's mid or its inverse);
2. executable spreads: buying the spread = buy A at its ask, sell B at its
   bid; selling = sell A at its bid, buy B at its ask; the mid spread; the
   ratio forms ``A/B - 1``;
3. an EWMA mean/variance of the mid spread, z-scores of the mid and of both
   executable spreads;
4. an OLS hedge ratio of A on B (converted mids) over a ring buffer;
5. a decision (open/close, by the pair's mode, thresholds and position) and
   the first data gate that blocks it (stale, quote age, warm-up, size).

Business gates that need Python objects (trading hours, risk state,
cooldown, pending inventory) are left to the caller, for the few pairs the
kernel lists as busy.

Numba charges ~0.17 us per array argument, so every array lives in one of two
arenas (float64 and int64) and the kernel takes only those; `KernelState`
hands out named 2-D views of them. Column layouts are the constants below.
"""

from __future__ import annotations

import enum
import math
from typing import Any, Callable

import numpy as np
from numba import njit


class Decision(enum.IntEnum):
    """What the kernel would do with a pair, before the caller's gates."""

    NONE = 0
    OPEN_BUY = 1  # cheap spread: buy A, sell B
    OPEN_SELL = 2  # rich spread: sell A, buy B
    CLOSE_BUY = 3  # short inventory and the spread came back: buy it back
    CLOSE_SELL = 4  # long inventory and the spread came back: sell it


class Gate(enum.IntEnum):
    """The first kernel gate that blocked a pair (PASS: none)."""

    PASS = 0
    NO_QUOTE = 1  # a leg has no quote yet
    NO_FX = 2  # an FX rate the conversion needs is missing
    BAD_BOOK = 3  # a leg's book is empty or crossed
    STALE = 4  # a leg is marked stale by its feed
    QUOTE_AGE = 5  # a leg's quote is older than max_quote_age_ms
    WARMUP = 6  # z-score mode before warmup_ticks
    MIN_SIZE = 7  # a leg's top of book is smaller than min_size x ratio


MODE_SPREAD, MODE_RATIO, MODE_ZSCORE = 0, 1, 2
MODES = {"spread": MODE_SPREAD, "ratio": MODE_RATIO, "zscore": MODE_ZSCORE}

# pair integer parameters: pi[p, .]; FX columns are instrument indices, -1: same currency
PI_LEG_A, PI_LEG_B, PI_FX_A, PI_FX_B, PI_FXINV_A, PI_FXINV_B, PI_WINDOW, PI_WARMUP, PI_MODE = range(9)
PI_N = 9
# pair float parameters: pf[p, .]
PF_UNIT_A, PF_UNIT_B, PF_RATIO_A, PF_RATIO_B, PF_ALPHA, PF_ENTRY, PF_EXIT, PF_MIN_SIZE, PF_MAX_AGE_NS = range(9)
PF_N = 9
# instrument prices: px[i, .]
PX_BID, PX_ASK, PX_BID_SZ, PX_ASK_SZ = range(4)
PX_N = 4
# instrument times and flags: tm[i, .]; DIRTY: updated since the last kernel call.
# RECV..DIRTY are adjacent so a quote is stored with one struct.pack_into.
TM_RECV, TM_EXCH, TM_HAS, TM_DIRTY, TM_STALE = range(5)
TM_N = 5
# pair state: ps[p, .] (counters are stored as floats; exact below 2**53)
(S_MEAN, S_VAR, S_N, S_POS, S_SHIFT_X, S_SHIFT_Y, S_SX, S_SY, S_SXX, S_SXY, S_RPOS, S_RN) = range(12)
S_N_COLS = 12
# per pair outputs of the latest call that touched it: out[p, .]
(O_BUY, O_SELL, O_MID, O_RATIO_BUY, O_RATIO_SELL, O_MEAN, O_SD, O_Z, O_Z_BUY, O_Z_SELL, O_HEDGE,
 O_CONV_A, O_CONV_B) = range(13)
O_N = 13
# per pair codes of the latest call that touched it: codes[p, .]; C_LEG: 0 leg A, 1 leg B, -1 neither
C_DECISION, C_GATE, C_LEG = range(3)
C_N = 3

# arena header: row 0 of the int arena holds sizes and the first row of each section
H_NP, H_NI, H_W, H_PI, H_TM, H_CODES, H_BUSY, H_PF, H_PX, H_PS, H_RING, H_OUT = range(12)
H_N = 12
IA_W = max(H_N, PI_N, TM_N, C_N)  # int arena width
FA_W = max(PF_N, PX_N, S_N_COLS, O_N, 2)  # float arena width

_OPEN_BUY = int(Decision.OPEN_BUY)
_OPEN_SELL = int(Decision.OPEN_SELL)
_CLOSE_BUY = int(Decision.CLOSE_BUY)
_CLOSE_SELL = int(Decision.CLOSE_SELL)
_G_NO_QUOTE = int(Gate.NO_QUOTE)
_G_NO_FX = int(Gate.NO_FX)
_G_BAD_BOOK = int(Gate.BAD_BOOK)
_G_STALE = int(Gate.STALE)
_G_QUOTE_AGE = int(Gate.QUOTE_AGE)
_G_WARMUP = int(Gate.WARMUP)
_G_MIN_SIZE = int(Gate.MIN_SIZE)


def ewma_alpha(halflife_ticks: float) -> float:
    """Weight of the newest tick for an EWMA whose weights halve every `halflife_ticks`."""
    return 1.0 - 0.5 ** (1.0 / halflife_ticks)


class KernelState:
    """Every array the kernel reads or writes, as named views over two 2-D arenas.

    Callers fill `pi`/`pf` once, write quotes into `px`/`tm` (setting
    ``tm[i, TM_DIRTY] = 1``), keep ``ps[p, S_POS]`` at the pair's filled
    position, then call `run`. After a call, ``busy[:n]`` lists the pairs that
    need attention and ``out[p]``/``codes[p]`` hold their latest results.
    Pair p's hedge window is ``ring[p * max_window : p * max_window + window, :2]``.
    """

    def __init__(self, n_pairs: int, n_inst: int, max_window: int) -> None:
        w = max(int(max_window), 2)
        irows = (n_pairs, n_inst, n_pairs, max(n_pairs, 1))
        frows = (n_pairs, n_inst, n_pairs, n_pairs * w, n_pairs)
        self.ia = np.zeros((1 + sum(irows), IA_W), dtype=np.int64)
        self.fa = np.zeros((sum(frows), FA_W), dtype=np.float64)
        head = self.ia[0]
        head[H_NP], head[H_NI], head[H_W] = n_pairs, n_inst, w
        row = 1
        for h, size in zip((H_PI, H_TM, H_CODES, H_BUSY), irows):
            head[h] = row
            row += size
        row = 0
        for h, size in zip((H_PF, H_PX, H_PS, H_RING, H_OUT), frows):
            head[h] = row
            row += size
        self.n_pairs, self.n_inst, self.max_window = n_pairs, n_inst, w
        pi, tm, codes, busy, pf, px, ps, ring, out = _views.py_func(self.fa, self.ia)
        self.pi, self.tm, self.codes, self.busy = pi[:, :PI_N], tm[:, :TM_N], codes[:, :C_N], busy[:, 0]
        self.pf, self.px, self.ps = pf[:, :PF_N], px[:, :PX_N], ps[:, :S_N_COLS]
        self.ring, self.out = ring[:, :2], out[:, :O_N]
        self.pi[:, PI_FX_A] = -1
        self.pi[:, PI_FX_B] = -1
        self._compiled: Callable[[np.ndarray, np.ndarray, int], int] | None = None

    def run(self, now_ns: int) -> int:
        """Update every pair touched by a dirty instrument; return how many are busy (listed in `busy`)."""
        fn = self._compiled
        if fn is None:
            n = update_pairs(self.fa, self.ia, now_ns)
            self._compiled = _compiled_entry(update_pairs, self.fa, self.ia, now_ns)
            return n
        return fn(self.fa, self.ia, now_ns)


def _compiled_entry(dispatcher: Any, *args: Any) -> Any:
    """The compiled function `dispatcher` runs for `args` (these arrays' types never change), called
    without the dispatcher's type resolution: on a cold CPU cache that halves a kernel call.
    Falls back to the dispatcher if numba does not expose it."""
    try:
        sig = dispatcher.typeof_pyval  # numba's own typing of the arguments
        types = tuple(sig(a) for a in args)
        return dispatcher.overloads[types].entry_point
    except (AttributeError, KeyError, TypeError):
        return dispatcher


@njit(cache=True, inline="always")
def _views(fa: np.ndarray, ia: np.ndarray):  # type: ignore[no-untyped-def]
    # Full-width row slices keep numba's contiguous 'C' layout; a reshape
    # (~0.1 us each) or a column slice (layout 'A') would be slower.
    h = ia[0]
    np_, ni, w = h[H_NP], h[H_NI], h[H_W]
    pi = ia[h[H_PI]:h[H_PI] + np_]
    tm = ia[h[H_TM]:h[H_TM] + ni]
    codes = ia[h[H_CODES]:h[H_CODES] + np_]
    busy = ia[h[H_BUSY]:h[H_BUSY] + max(np_, 1)]
    pf = fa[h[H_PF]:h[H_PF] + np_]
    px = fa[h[H_PX]:h[H_PX] + ni]
    ps = fa[h[H_PS]:h[H_PS] + np_]
    ring = fa[h[H_RING]:h[H_RING] + np_ * w]
    out = fa[h[H_OUT]:h[H_OUT] + np_]
    return pi, tm, codes, busy, pf, px, ps, ring, out


@njit(cache=True, inline="always")
def _conv(unit: float, fx_i: int, fx_inv: int, px: np.ndarray) -> float:
    if fx_i < 0:
        return unit
    rate = 0.5 * (px[fx_i, PX_BID] + px[fx_i, PX_ASK])
    if not rate > 0.0:  # never received, or nonsense
        return math.nan
    if fx_inv != 0:
        return unit / rate
    return unit * rate


@njit(cache=True)
def _ols_push(p: int, x: float, y: float, window: int, base: int, ps: np.ndarray, ring: np.ndarray) -> float:
    """Push (x, y) into pair p's ring (rows base..base+window); return the OLS slope of y on x (NaN if undefined).

    Values are stored shifted by a per-pair reference point so the running sums
    keep their precision; each time the ring wraps the sums are recomputed
    exactly and the reference moves to the window's mean, so drift stays bounded.
    """
    cnt = int(ps[p, S_RN])
    pos = int(ps[p, S_RPOS])
    if cnt == 0:
        ps[p, S_SHIFT_X] = x
        ps[p, S_SHIFT_Y] = y
    dx = x - ps[p, S_SHIFT_X]
    dy = y - ps[p, S_SHIFT_Y]
    if cnt == window:
        ox = ring[base + pos, 0]
        oy = ring[base + pos, 1]
        ps[p, S_SX] -= ox
        ps[p, S_SY] -= oy
        ps[p, S_SXX] -= ox * ox
        ps[p, S_SXY] -= ox * oy
    else:
        cnt += 1
    ring[base + pos, 0] = dx
    ring[base + pos, 1] = dy
    ps[p, S_SX] += dx
    ps[p, S_SY] += dy
    ps[p, S_SXX] += dx * dx
    ps[p, S_SXY] += dx * dy
    pos += 1
    if pos == window:
        pos = 0
        if cnt == window:
            mx = ps[p, S_SX] / cnt
            my = ps[p, S_SY] / cnt
            sx = 0.0
            sy = 0.0
            sxx = 0.0
            sxy = 0.0
            for k in range(cnt):
                rx = ring[base + k, 0] - mx
                ry = ring[base + k, 1] - my
                ring[base + k, 0] = rx
                ring[base + k, 1] = ry
                sx += rx
                sy += ry
                sxx += rx * rx
                sxy += rx * ry
            ps[p, S_SHIFT_X] += mx
            ps[p, S_SHIFT_Y] += my
            ps[p, S_SX] = sx
            ps[p, S_SY] = sy
            ps[p, S_SXX] = sxx
            ps[p, S_SXY] = sxy
    ps[p, S_RN] = cnt
    ps[p, S_RPOS] = pos
    if cnt < 2:
        return math.nan
    n = float(cnt)
    den = n * ps[p, S_SXX] - ps[p, S_SX] * ps[p, S_SX]
    if not den > 1e-12 * n * ps[p, S_SXX]:
        return math.nan
    return (n * ps[p, S_SXY] - ps[p, S_SX] * ps[p, S_SY]) / den


@njit(cache=True, inline="always")
def _update_pair(p: int, pi: np.ndarray, pf: np.ndarray, px: np.ndarray, tm: np.ndarray, ps: np.ndarray,
                 ring: np.ndarray, max_window: int, now_ns: int, out: np.ndarray, codes: np.ndarray) -> bool:
    """Update pair p; return True when it is busy (a decision, or a data gate that kept it unpriced)."""
    for c in range(O_N):
        out[p, c] = math.nan
    codes[p, C_DECISION] = 0
    codes[p, C_GATE] = 0
    codes[p, C_LEG] = -1
    a = pi[p, PI_LEG_A]
    b = pi[p, PI_LEG_B]
    if tm[a, TM_HAS] == 0 or tm[b, TM_HAS] == 0:
        codes[p, C_GATE] = _G_NO_QUOTE
        codes[p, C_LEG] = 0 if tm[a, TM_HAS] == 0 else 1
        return True
    conv_a = _conv(pf[p, PF_UNIT_A], pi[p, PI_FX_A], pi[p, PI_FXINV_A], px)
    conv_b = _conv(pf[p, PF_UNIT_B], pi[p, PI_FX_B], pi[p, PI_FXINV_B], px)
    if not (conv_a > 0.0 and conv_b > 0.0):
        codes[p, C_GATE] = _G_NO_FX
        codes[p, C_LEG] = 0 if not conv_a > 0.0 else 1
        return True
    a_bid = px[a, PX_BID]
    a_ask = px[a, PX_ASK]
    b_bid = px[b, PX_BID]
    b_ask = px[b, PX_ASK]
    if not (a_bid > 0.0 and a_ask >= a_bid):
        codes[p, C_GATE] = _G_BAD_BOOK
        codes[p, C_LEG] = 0
        return True
    if not (b_bid > 0.0 and b_ask >= b_bid):
        codes[p, C_GATE] = _G_BAD_BOOK
        codes[p, C_LEG] = 1
        return True
    ca_bid = a_bid * conv_a
    ca_ask = a_ask * conv_a
    cb_bid = b_bid * conv_b
    cb_ask = b_ask * conv_b
    buy = ca_ask - cb_bid
    sell = ca_bid - cb_ask
    ca_mid = 0.5 * (ca_bid + ca_ask)
    cb_mid = 0.5 * (cb_bid + cb_ask)
    mid = ca_mid - cb_mid
    ratio_buy = ca_ask / cb_bid - 1.0
    ratio_sell = ca_bid / cb_ask - 1.0

    alpha = pf[p, PF_ALPHA]
    n = ps[p, S_N]
    if n == 0.0:
        mean = mid
        var = 0.0
    else:
        mean = ps[p, S_MEAN]
        var = ps[p, S_VAR]
        d = mid - mean
        inc = alpha * d
        mean = mean + inc
        var = (1.0 - alpha) * (var + d * inc)
    n += 1.0
    ps[p, S_MEAN] = mean
    ps[p, S_VAR] = var
    ps[p, S_N] = n
    sd = math.sqrt(var)
    if sd > 0.0:
        z = (mid - mean) / sd
        z_buy = (buy - mean) / sd
        z_sell = (sell - mean) / sd
    else:
        z = 0.0
        z_buy = 0.0
        z_sell = 0.0
    hedge = _ols_push(p, cb_mid, ca_mid, pi[p, PI_WINDOW], p * max_window, ps, ring)

    out[p, O_BUY] = buy
    out[p, O_SELL] = sell
    out[p, O_MID] = mid
    out[p, O_RATIO_BUY] = ratio_buy
    out[p, O_RATIO_SELL] = ratio_sell
    out[p, O_MEAN] = mean
    out[p, O_SD] = sd
    out[p, O_Z] = z
    out[p, O_Z_BUY] = z_buy
    out[p, O_Z_SELL] = z_sell
    out[p, O_HEDGE] = hedge
    out[p, O_CONV_A] = conv_a
    out[p, O_CONV_B] = conv_b

    mode = pi[p, PI_MODE]
    if mode == MODE_SPREAD:
        v_buy = buy
        v_sell = sell
    elif mode == MODE_RATIO:
        v_buy = ratio_buy
        v_sell = ratio_sell
    else:
        v_buy = z_buy
        v_sell = z_sell
    entry = pf[p, PF_ENTRY]
    exit_ = pf[p, PF_EXIT]
    pos = ps[p, S_POS]
    dec = 0
    if pos > 0.0 and v_sell > -exit_:
        dec = _CLOSE_SELL
    elif pos < 0.0 and v_buy < exit_:
        dec = _CLOSE_BUY
    elif v_sell >= entry:
        dec = _OPEN_SELL
    elif v_buy <= -entry:
        dec = _OPEN_BUY
    if dec == 0:
        return False
    codes[p, C_DECISION] = dec
    if tm[a, TM_STALE] != 0 or tm[b, TM_STALE] != 0:
        codes[p, C_GATE] = _G_STALE
        codes[p, C_LEG] = 0 if tm[a, TM_STALE] != 0 else 1
        return True
    max_age = pf[p, PF_MAX_AGE_NS]
    if now_ns - tm[a, TM_RECV] > max_age:
        codes[p, C_GATE] = _G_QUOTE_AGE
        codes[p, C_LEG] = 0
        return True
    if now_ns - tm[b, TM_RECV] > max_age:
        codes[p, C_GATE] = _G_QUOTE_AGE
        codes[p, C_LEG] = 1
        return True
    if mode == MODE_ZSCORE and n < pi[p, PI_WARMUP]:
        codes[p, C_GATE] = _G_WARMUP
        return True
    buying = dec == _OPEN_BUY or dec == _CLOSE_BUY
    size_a = px[a, PX_ASK_SZ] if buying else px[a, PX_BID_SZ]
    size_b = px[b, PX_BID_SZ] if buying else px[b, PX_ASK_SZ]
    if size_a < pf[p, PF_MIN_SIZE] * pf[p, PF_RATIO_A]:
        codes[p, C_GATE] = _G_MIN_SIZE
        codes[p, C_LEG] = 0
    elif size_b < pf[p, PF_MIN_SIZE] * pf[p, PF_RATIO_B]:
        codes[p, C_GATE] = _G_MIN_SIZE
        codes[p, C_LEG] = 1
    return True


@njit(cache=True)
def update_pairs(fa: np.ndarray, ia: np.ndarray, now_ns: int) -> int:
    """Update each pair with a dirty leg or FX instrument, clear the dirty flags; return the busy count.

    Busy pairs (a decision, or a data gate that kept them unpriced) are listed
    in ``busy[:count, 0]``. Pairs that cannot be priced do not advance their
    EWMA, tick count or hedge window.
    """
    pi, tm, codes, busy, pf, px, ps, ring, out = _views(fa, ia)
    n_busy = 0
    for p in range(pi.shape[0]):
        touched = tm[pi[p, PI_LEG_A], TM_DIRTY] != 0 or tm[pi[p, PI_LEG_B], TM_DIRTY] != 0
        if not touched:
            fa_i = pi[p, PI_FX_A]
            fb_i = pi[p, PI_FX_B]
            touched = (fa_i >= 0 and tm[fa_i, TM_DIRTY] != 0) or (fb_i >= 0 and tm[fb_i, TM_DIRTY] != 0)
        if touched and _update_pair(p, pi, pf, px, tm, ps, ring, ia[0, H_W], now_ns, out, codes):
            busy[n_busy, 0] = p
            n_busy += 1
    for i in range(tm.shape[0]):
        tm[i, TM_DIRTY] = 0
    return n_busy


def warm_up() -> None:
    """Compile (or load from cache) the kernels on tiny inputs with the production dtypes."""
    st = KernelState(1, 3, 2)
    st.pi[0, PI_LEG_A], st.pi[0, PI_LEG_B], st.pi[0, PI_FX_B], st.pi[0, PI_WINDOW] = 0, 1, 2, 2
    st.pi[0, PI_MODE] = MODE_ZSCORE
    st.pf[0] = 1.0
    st.pf[0, PF_ALPHA], st.pf[0, PF_MAX_AGE_NS] = 0.5, 1e18
    st.px[:] = [1.0, 1.1, 5.0, 5.0]
    st.tm[:, TM_HAS] = 1
    for k in range(3):
        st.px[0, PX_BID] = 1.0 + 0.01 * k
        st.tm[:, TM_DIRTY] = 1
        st.run(k)
