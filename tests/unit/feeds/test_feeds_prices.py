from __future__ import annotations

import math

import numpy as np
import pytest
from feeds_support import market_config
from hypothesis import given, settings
from hypothesis import strategies as st

from configs.units import unit_factor
from feeds.book import TopOfBook
from feeds.simex.prices import PriceProcess, stationary_sd_bp

MS = 1_000_000


def run(pp: PriceProcess, seconds: float, step_ms: int = 20) -> list[TopOfBook]:
    out: list[TopOfBook] = []
    for k in range(0, int(seconds * 1000) + 1, step_ms):
        out.extend(pp.step(k * MS))
    return out


def au_gc_basis(quotes: list[TopOfBook]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observed au/GC basis (bp, in CNY per g) at each GC quote, with both legs' log levels."""
    last: dict[str, TopOfBook] = {}
    basis, la, lb = [], [], []
    oz_to_g = unit_factor("oz", "g")
    assert oz_to_g is not None
    for q in quotes:
        last[q.instrument] = q
        if q.instrument == "GC" and "au" in last and "USDCNY" in last:
            a = last["au"].mid
            b = q.mid * last["USDCNY"].mid * oz_to_g
            basis.append((b / a - 1.0) * 1e4)
            la.append(math.log(a))
            lb.append(math.log(b))
    return np.array(basis), np.array(la), np.array(lb)


def test_price_process_same_seed_gives_identical_quotes() -> None:
    a = run(PriceProcess(market_config(seed=11), start_ns=0), 3.0)
    b = run(PriceProcess(market_config(seed=11), start_ns=0), 3.0)
    assert a == b
    assert len(a) > 500


def test_price_process_different_seed_gives_different_quotes() -> None:
    a = run(PriceProcess(market_config(seed=11), start_ns=0), 1.0)
    b = run(PriceProcess(market_config(seed=12), start_ns=0), 1.0)
    assert [(q.bid, q.ask) for q in a] != [(q.bid, q.ask) for q in b]


def test_price_process_seed_argument_overrides_run_seed() -> None:
    a = run(PriceProcess(market_config(seed=1), seed=99, start_ns=0), 0.5)
    b = run(PriceProcess(market_config(seed=99), start_ns=0), 0.5)
    assert a == b


def test_price_process_path_does_not_depend_on_step_call_pattern() -> None:
    fine = run(PriceProcess(market_config(), start_ns=0), 2.0, step_ms=1)
    coarse = PriceProcess(market_config(), start_ns=0).step(2000 * MS)
    assert fine == coarse


def test_price_process_anchors_grid_at_first_step_without_start() -> None:
    pp = PriceProcess(market_config())
    assert pp.next_due_ns() is None
    first = pp.step(5 * 10**9)
    assert {q.ts_ns for q in first} == {5 * 10**9}
    assert pp.next_due_ns() == 5 * 10**9 + 20 * MS


def test_price_process_each_instrument_emits_every_interval() -> None:
    quotes = run(PriceProcess(market_config(), start_ns=0), 1.0)
    times: dict[str, list[int]] = {}
    for q in quotes:
        times.setdefault(q.instrument, []).append(q.ts_ns)
    assert np.all(np.diff(times["au"]) == 20 * MS)
    assert np.all(np.diff(times["HSI"]) == 25 * MS)
    assert np.all(np.diff(times["USDCNY"]) == 100 * MS)
    assert len(times["au"]) == 51
    assert all(np.all(np.diff(t) > 0) for t in times.values())


def test_price_process_venue_seq_increments_per_venue() -> None:
    quotes = run(PriceProcess(market_config(), start_ns=0), 0.5)
    hkex = [q.seq for q in quotes if q.venue == "HKEX"]
    assert hkex == list(range(1, len(hkex) + 1))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_price_process_quotes_are_on_tick_with_bid_below_ask_and_sizes_near_size(seed: int) -> None:
    cfg = market_config(seed=seed)
    for q in run(PriceProcess(cfg, start_ns=0), 1.0, step_ms=100):
        ic = cfg.instruments[q.instrument]
        assert ic.sim is not None
        assert 0 < q.bid < q.ask
        assert math.isclose(q.ask - q.bid, ic.sim.spread_ticks * ic.tick, rel_tol=1e-6)
        assert abs(q.bid / ic.tick - round(q.bid / ic.tick)) < 1e-6
        for size in (q.bid_size, q.ask_size):
            assert 0.5 * ic.sim.size - 1 <= size <= 1.5 * ic.sim.size + 1
        assert q.fx == ic.fx
        assert q.symbol == ic.symbol


def test_price_process_venue_subset_emits_only_its_venue_with_same_prices() -> None:
    full = [q for q in run(PriceProcess(market_config(), start_ns=0), 1.0) if q.venue == "COMEX"]
    only = run(PriceProcess(market_config(), ["COMEX"], start_ns=0), 1.0)
    assert only == full
    assert {q.instrument for q in only} == {"GC"}


def test_price_process_outer_leg_tracks_inner_leg_through_fx_and_units() -> None:
    pp = PriceProcess(market_config(sim_basis_vol_bp=0.0), start_ns=0, jump_every_s=0)
    basis, _, _ = au_gc_basis(run(pp, 2.0))
    # with no basis noise only tick rounding (under 1 bp a leg) separates the legs
    assert np.all(np.abs(basis) < 2.0)


def test_pair_legs_stay_correlated_and_basis_mean_reverts() -> None:
    pp = PriceProcess(market_config(seed=3), start_ns=0)
    basis, la, lb = au_gc_basis(run(pp, 120.0))
    centred = basis - basis.mean()
    slope = np.polyfit(centred[:-1], np.diff(basis), 1)[0]
    assert -0.1 < slope < -0.005  # AR(1) pull back to the mean
    sd = stationary_sd_bp(3.0, 0.02)
    assert np.max(np.abs(centred)) < 8 * sd  # never wanders off like a random walk
    every_10s = 500
    ra, rb = np.diff(la[::every_10s]), np.diff(lb[::every_10s])
    assert np.corrcoef(ra, rb)[0, 1] > 0.5


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pair_basis_opens_past_two_stdev_within_seconds(seed: int) -> None:
    """A trigger-like EWMA z-score (half-life 200 ticks, 50 warm-up ticks) crosses 2 within 5 s."""
    pp = PriceProcess(market_config(seed=seed), start_ns=0)
    basis, _, _ = au_gc_basis(run(pp, 5.0))
    alpha = 1.0 - 0.5 ** (1 / 200)
    mean, var = basis[0], 1.0
    zs = []
    for x in basis[1:]:
        d = x - mean
        mean += alpha * d
        var = (1 - alpha) * (var + alpha * d * d)
        zs.append((x - mean) / math.sqrt(var))
    assert max(abs(z) for z in zs[50:]) > 2.0


def test_pair_basis_jump_opens_latent_basis_past_two_stationary_sd() -> None:
    pp = PriceProcess(market_config(seed=5), start_ns=0)
    sd = stationary_sd_bp(3.0, 0.02)
    widest = 0.0
    for k in range(0, 10_001, 20):
        pp.step(k * MS)
        widest = max(widest, abs(pp.basis_bp("au_gc")))
    assert widest > 2 * sd


def test_set_drift_makes_a_falling_market_that_the_outer_leg_follows() -> None:
    pp = PriceProcess(market_config(), start_ns=0)
    start = run(pp, 0.0)
    au0 = next(q for q in start if q.instrument == "au").mid
    gc0 = next(q for q in start if q.instrument == "GC").mid
    pp.set_drift("au", -5.0)
    quotes = pp.step(2000 * MS)  # 100 steps x -5 bp: about -5 %
    au1 = [q for q in quotes if q.instrument == "au"][-1].mid
    gc1 = [q for q in quotes if q.instrument == "GC"][-1].mid
    assert au1 < au0 * 0.97
    assert gc1 < gc0 * 0.98


def test_shock_moves_an_instrument_at_once() -> None:
    pp = PriceProcess(market_config(), start_ns=0)
    pp.step(0)
    before = pp.mid("HSI")
    pp.shock("HSI", -100.0)
    assert math.isclose(pp.mid("HSI"), before * math.exp(-0.01))


def test_set_basis_forces_the_spread_then_it_reverts() -> None:
    pp = PriceProcess(market_config(sim_basis_vol_bp=0.0), start_ns=0, jump_every_s=0)
    quotes = pp.step(0)
    pp.set_basis("au_gc", 50.0)
    basis, _, _ = au_gc_basis(quotes + pp.step(40 * MS))
    assert abs(basis[0]) < 2.0
    assert 45.0 < basis[-1] < 52.0
    pp.step(5000 * MS)
    assert abs(pp.basis_bp("au_gc")) < 1.0


def test_set_basis_unknown_pair_raises_key_error() -> None:
    with pytest.raises(KeyError, match="no simulated basis"):
        PriceProcess(market_config()).set_basis("nope", 1.0)
