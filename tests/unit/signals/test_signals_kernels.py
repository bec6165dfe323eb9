"""The fused kernel agrees with the plain-Python reference, and the reference with closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from configs.units import TROY_OUNCE_G, unit_factor
from signals import kernels as K
from signals.kernels import Decision, Gate, KernelState, ewma_alpha
from signals.reference import LegTop, ReferencePair, ewma_closed_form, ols_slope

A, B, FX = 0, 1, 2
K_MS = 1_000_000
FIELDS = ("buy", "sell", "mid", "ratio_buy", "ratio_sell", "mean", "sd", "z", "z_buy", "z_sell", "hedge",
          "conv_a", "conv_b")
COLS = (K.O_BUY, K.O_SELL, K.O_MID, K.O_RATIO_BUY, K.O_RATIO_SELL, K.O_MEAN, K.O_SD, K.O_Z, K.O_Z_BUY,
        K.O_Z_SELL, K.O_HEDGE, K.O_CONV_A, K.O_CONV_B)


class Harness:
    """One pair in a KernelState (A, B and an FX instrument), driven like the Book drives it."""

    def __init__(self, ref: ReferencePair, *, invert_a: bool | None, invert_b: bool | None) -> None:
        self.ref = ref
        s = self.st = KernelState(1, 3, ref.window)
        s.pi[0, K.PI_LEG_A], s.pi[0, K.PI_LEG_B] = A, B
        s.pi[0, K.PI_FX_A] = -1 if invert_a is None else FX
        s.pi[0, K.PI_FX_B] = -1 if invert_b is None else FX
        s.pi[0, K.PI_FXINV_A], s.pi[0, K.PI_FXINV_B] = int(bool(invert_a)), int(bool(invert_b))
        s.pi[0, K.PI_WINDOW], s.pi[0, K.PI_WARMUP], s.pi[0, K.PI_MODE] = ref.window, ref.warmup, ref.mode
        s.pf[0, K.PF_UNIT_A], s.pf[0, K.PF_UNIT_B] = ref.unit_a, ref.unit_b
        s.pf[0, K.PF_RATIO_A], s.pf[0, K.PF_RATIO_B] = ref.ratio_a, ref.ratio_b
        s.pf[0, K.PF_ALPHA], s.pf[0, K.PF_ENTRY], s.pf[0, K.PF_EXIT] = ref.alpha, ref.entry, ref.exit
        s.pf[0, K.PF_MIN_SIZE], s.pf[0, K.PF_MAX_AGE_NS] = ref.min_size, ref.max_age_ns
        self.tops: dict[int, LegTop] = {}
        self.fx: float | None = None

    def set_leg(self, i: int, top: LegTop) -> None:
        self.tops[i] = top
        s = self.st
        s.px[i] = (top.bid, top.ask, top.bid_size, top.ask_size)
        s.tm[i, K.TM_RECV], s.tm[i, K.TM_STALE], s.tm[i, K.TM_HAS], s.tm[i, K.TM_DIRTY] = top.recv_ns, top.stale, 1, 1

    def set_fx(self, mid: float) -> None:
        self.fx = mid
        s = self.st
        s.px[FX, K.PX_BID] = s.px[FX, K.PX_ASK] = mid
        s.tm[FX, K.TM_HAS], s.tm[FX, K.TM_DIRTY] = 1, 1

    def set_position(self, units: int) -> None:
        self.ref.position = units
        self.st.ps[0, K.S_POS] = units

    def step(self, now_ns: int) -> tuple[tuple, object] | None:
        """Run kernel and reference; return (kernel row, reference result), None if the pair was not touched."""
        s = self.st
        dirty = s.tm[:, K.TM_DIRTY]
        uses_fx = s.pi[0, K.PI_FX_A] >= 0 or s.pi[0, K.PI_FX_B] >= 0
        touched = bool(dirty[A] or dirty[B] or (uses_fx and dirty[FX]))
        busy = s.run(now_ns)
        if not touched:
            assert busy == 0
            return None
        ref = self.ref.update(self.tops.get(A), self.tops.get(B), self.fx, self.fx, now_ns)
        got = tuple(float(s.out[0, c]) for c in COLS) + tuple(int(c) for c in s.codes[0])
        want_busy = ref.decision != 0 or ref.gate != 0
        assert busy == int(want_busy)
        if busy:
            assert s.busy[0] == 0
        return got, ref


def assert_same(got: tuple, ref: object) -> None:
    for name, g, w in zip(FIELDS, got, ref):
        if math.isnan(w):
            assert math.isnan(g), name
        else:
            assert g == pytest.approx(w, rel=1e-9, abs=1e-9), name
    assert got[13:] == (ref.decision, ref.gate, ref.leg)


prices = st.integers(min_value=1, max_value=200_000)
stale = st.integers(0, 5).map(lambda v: v == 0)
legs = st.tuples(prices, st.integers(0, 5), st.integers(0, 30), st.integers(0, 30), stale)
ticks = st.lists(
    st.tuples(
        st.sampled_from(("ab", "ab", "a", "b", "fx")),
        legs,
        st.integers(50, 150),  # fx rate x 100
        st.integers(0, 800),  # quote age at evaluation, ms
        st.sampled_from((0, 0, 0, 1, -1)),  # position change
    ),
    min_size=1,
    max_size=60,
)
units = st.sampled_from(("g", "kg", "oz", "pt", "bbl"))


@settings(max_examples=120, deadline=None)
@given(
    mode=st.sampled_from((K.MODE_SPREAD, K.MODE_RATIO, K.MODE_ZSCORE)),
    entry=st.floats(0.01, 5.0),
    exit_frac=st.floats(0.0, 0.99),
    halflife=st.floats(1.0, 50.0),
    window=st.integers(2, 12),
    warmup=st.integers(0, 10),
    min_size=st.floats(0.0, 10.0),
    ratios=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    unit_pair=st.tuples(units, units),
    fx_legs=st.sampled_from(((None, None), (None, False), (None, True), (False, None), (True, True))),
    tape=ticks,
)
def test_kernel_matches_reference_for_any_tape(mode, entry, exit_frac, halflife, window, warmup, min_size, ratios,
                                               unit_pair, fx_legs, tape) -> None:
    src_a, src_b = unit_pair
    pair_unit = src_a
    if unit_factor(src_b, pair_unit) is None:
        src_b = src_a
    ref = ReferencePair(unit_a=1.0, unit_b=unit_factor(src_b, pair_unit), invert_a=fx_legs[0],
                        invert_b=fx_legs[1], ratio_a=ratios[0], ratio_b=ratios[1], halflife=halflife,
                        window=window, warmup=warmup, mode=mode, entry=entry, exit=entry * exit_frac,
                        min_size=min_size, max_age_ms=500.0)
    h = Harness(ref, invert_a=fx_legs[0], invert_b=fx_legs[1])
    now = 10_000 * K_MS
    pos = 0
    for which, (px, spread, bsz, asz, stale), fx100, age_ms, dpos in tape:
        now += K_MS
        top = LegTop(px / 10.0, (px + spread) / 10.0, bsz, asz, now - age_ms * K_MS, stale)
        if "a" in which:
            h.set_leg(A, top)
        if "b" in which:
            h.set_leg(B, top._replace(bid=top.bid * 0.999, ask=top.ask * 1.0005))
        if which == "fx":
            h.set_fx(fx100 / 100.0)
        pos += dpos
        h.set_position(pos)
        res = h.step(now)
        if res is not None:
            assert_same(*res)
            event(f"decision={Decision(res[1].decision).name} gate={Gate(res[1].gate).name}")


def test_gold_pair_converts_gc_usd_per_oz_to_cny_per_gram() -> None:
    usdcny = 7.2
    ref = ReferencePair(unit_a=1.0, unit_b=unit_factor("oz", "g"), invert_a=None, invert_b=False, ratio_a=3,
                        window=5, mode=K.MODE_SPREAD, entry=100.0, exit=1.0)
    h = Harness(ref, invert_a=None, invert_b=False)
    h.set_leg(A, LegTop(556.00, 556.04, 30, 30, 0))
    h.set_leg(B, LegTop(2400.0, 2400.2, 20, 20, 0))
    h.set_fx(usdcny)
    got, want = h.step(1)
    assert_same(got, want)
    per_g = usdcny / TROY_OUNCE_G
    assert got[0] == pytest.approx(556.04 - 2400.0 * per_g, rel=1e-12)
    assert got[1] == pytest.approx(556.00 - 2400.2 * per_g, rel=1e-12)
    assert got[FIELDS.index("conv_b")] == pytest.approx(per_g, rel=1e-12)


def test_inverted_fx_divides_by_the_rate() -> None:
    ref = ReferencePair(invert_a=True, mode=K.MODE_SPREAD, entry=1e9, exit=0.0)
    h = Harness(ref, invert_a=True, invert_b=None)
    h.set_leg(A, LegTop(720.0, 721.0, 1, 1))
    h.set_leg(B, LegTop(100.0, 100.0, 1, 1))
    h.set_fx(7.2)
    got, want = h.step(0)
    assert_same(got, want)
    assert got[FIELDS.index("mid")] == pytest.approx(720.5 / 7.2 - 100.0)


def test_missing_fx_rate_leaves_pair_unpriced_and_statistics_untouched() -> None:
    ref = ReferencePair(invert_b=False, mode=K.MODE_ZSCORE)
    h = Harness(ref, invert_a=None, invert_b=False)
    h.set_leg(A, LegTop(1.0, 1.1, 1, 1))
    h.set_leg(B, LegTop(1.0, 1.1, 1, 1))
    got, want = h.step(0)
    assert got[13:] == (0, Gate.NO_FX, 1)
    assert h.st.ps[0, K.S_N] == 0


def test_crossed_book_is_gated_as_bad_book() -> None:
    ref = ReferencePair()
    h = Harness(ref, invert_a=None, invert_b=None)
    h.set_leg(A, LegTop(1.2, 1.1, 1, 1))
    h.set_leg(B, LegTop(1.0, 1.1, 1, 1))
    got, want = h.step(0)
    assert_same(got, want)
    assert got[13:] == (0, Gate.BAD_BOOK, 0)


def test_untouched_pair_is_not_updated() -> None:
    ref = ReferencePair(mode=K.MODE_SPREAD, entry=1e9)
    h = Harness(ref, invert_a=None, invert_b=None)
    h.set_leg(A, LegTop(1.0, 1.1, 1, 1))
    h.set_leg(B, LegTop(1.0, 1.1, 1, 1))
    h.st.run(0)
    assert h.st.run(0) == 0
    assert h.st.ps[0, K.S_N] == 1


@settings(max_examples=60, deadline=None)
@given(xs=st.lists(st.integers(-100_000, 100_000), min_size=1, max_size=80), halflife=st.floats(0.5, 100.0))
def test_reference_ewma_matches_closed_form_weights(xs: list[int], halflife: float) -> None:
    ref = ReferencePair(halflife=halflife, mode=K.MODE_SPREAD, entry=1e12, exit=0.0)
    b = LegTop(2000.0, 2000.0, 1, 1)
    for x in xs:
        mid = x / 100.0
        res = ref.update(LegTop(2000.0 + mid, 2000.0 + mid, 1, 1), b, None, None, 0)
    want_mean, want_var = ewma_closed_form(np.array(xs) / 100.0, ref.alpha)
    assert res.mean == pytest.approx(want_mean, rel=1e-9, abs=1e-9)
    assert res.sd ** 2 == pytest.approx(want_var, rel=1e-7, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    mids=st.lists(st.tuples(st.integers(-500, 500), st.integers(-500, 500)), min_size=3, max_size=90),
    window=st.integers(2, 25),
    level=st.sampled_from((556.0, 25_000.0, 80_000.0)),
)
def test_kernel_ewma_and_hedge_match_numpy_over_the_window(mids, window, level) -> None:
    halflife = 7.0
    ref = ReferencePair(window=window, halflife=halflife, mode=K.MODE_SPREAD, entry=1e12, exit=0.0)
    h = Harness(ref, invert_a=None, invert_b=None)
    xs, ys, spreads = [], [], []
    for k, (ya, xb) in enumerate(mids):
        x = level + xb / 4.0 + 0.37 * k
        y = level + 1.5 * x / (1 + level / 1e4) + ya / 8.0
        h.set_leg(A, LegTop(y - 0.5, y + 0.5, 1, 1))
        h.set_leg(B, LegTop(x - 0.5, x + 0.5, 1, 1))
        got, _ = h.step(0)
        xs.append(x)
        ys.append(y)
        spreads.append(y - x)
        want_hedge = ols_slope(xs[-window:], ys[-window:])
        hedge = got[FIELDS.index("hedge")]
        if len(xs) >= 2 and not math.isnan(want_hedge):
            assert hedge == pytest.approx(want_hedge, rel=1e-6, abs=1e-6)
    want_mean, want_var = ewma_closed_form(np.array(spreads), ewma_alpha(halflife))
    assert got[FIELDS.index("mean")] == pytest.approx(want_mean, rel=1e-9, abs=1e-9)
    assert got[FIELDS.index("sd")] == pytest.approx(math.sqrt(want_var), rel=1e-6, abs=1e-6)


def test_decisions_follow_position_and_thresholds() -> None:
    ref = ReferencePair(mode=K.MODE_SPREAD, entry=0.5, exit=0.1, min_size=0.0)
    h = Harness(ref, invert_a=None, invert_b=None)
    h.set_leg(B, LegTop(100.0, 100.1, 1, 1))
    cases = [  # (A bid, A ask, position) -> decision
        (101.0, 101.1, 0, Decision.OPEN_SELL),  # sell spread 101.0 - 100.1 = 0.9 >= 0.5
        (99.4, 99.5, 0, Decision.OPEN_BUY),  # buy spread 99.5 - 100.0 = -0.5 <= -0.5
        (100.0, 100.1, 0, Decision.NONE),
        (100.05, 100.1, 1, Decision.CLOSE_SELL),  # long and sell spread -0.05 > -exit
        (99.4, 99.5, 1, Decision.OPEN_BUY),  # long and cheaper still: may add
        (100.0, 100.05, -1, Decision.CLOSE_BUY),
    ]
    for bid, ask, pos, want in cases:
        h.set_leg(A, LegTop(bid, ask, 1, 1))
        h.set_position(pos)
        got, ref_res = h.step(0)
        assert_same(got, ref_res)
        assert got[13] == want, (bid, ask, pos)


def test_batch_updates_only_pairs_touched_by_dirty_instruments() -> None:
    s = KernelState(3, 5, 4)  # instruments 0..3, FX at 4
    for p, (a, b, fx_b) in enumerate(((0, 1, -1), (1, 2, -1), (2, 3, 4))):
        s.pi[p, K.PI_LEG_A], s.pi[p, K.PI_LEG_B], s.pi[p, K.PI_FX_B] = a, b, fx_b
        s.pi[p, K.PI_WINDOW], s.pi[p, K.PI_MODE] = 4, K.MODE_SPREAD
        s.pf[p] = 1.0
        s.pf[p, K.PF_ENTRY], s.pf[p, K.PF_EXIT], s.pf[p, K.PF_ALPHA], s.pf[p, K.PF_MAX_AGE_NS] = 0.5, 0.1, 0.5, 1e18
    s.px[:] = (10.0, 10.0, 5.0, 5.0)
    s.px[4] = (1.0, 1.0, 0.0, 0.0)
    s.tm[:, K.TM_HAS] = 1
    s.tm[:, K.TM_DIRTY] = 1
    assert s.run(0) == 0
    assert list(s.ps[:, K.S_N]) == [1, 1, 1]
    s.px[2] = (11.0, 11.0, 5.0, 5.0)  # C rich against B, cheap against D
    s.tm[2, K.TM_DIRTY] = 1
    assert s.run(0) == 2
    assert sorted(s.busy[:2]) == [1, 2]
    assert list(s.ps[:, K.S_N]) == [1, 2, 2]
    assert s.codes[1, K.C_DECISION] == Decision.OPEN_BUY  # pair (B, C): 10 - 11 = -1
    assert s.codes[2, K.C_DECISION] == Decision.OPEN_SELL  # pair (C, D): 11 - 10 = 1
    assert not s.tm[:, K.TM_DIRTY].any()
    s.px[4] = (1.01, 1.01, 0.0, 0.0)  # FX touches only pair 2
    s.tm[4, K.TM_DIRTY] = 1
    s.run(0)
    assert list(s.ps[:, K.S_N]) == [1, 2, 3]
