"""Benchmark: recompute the 16-scenario margin grid of 1,000 positions, numba vs pure Python."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

from configs.schema import InstrumentCfg, RiskCfg, SpreadCreditCfg
from riskguard.margin import MarginCalculator, MarginPosition
from riskguard.scenario import SCENARIO_MOVES, SCENARIO_WEIGHTS, scenario_grid, scenario_grid_py

N_POSITIONS = 1_000
N_GROUPS = 20


def _book(seed: int = 7) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    qty = rng.integers(-50, 51, N_POSITIONS).astype(np.float64)
    price = rng.uniform(1.0, 30_000.0, N_POSITIONS)
    mult = rng.choice([1.0, 10.0, 50.0, 100.0, 1000.0], N_POSITIONS)
    fx = rng.uniform(0.1, 1.5, N_POSITIONS)
    scan = rng.uniform(0.03, 0.15, N_POSITIONS)
    group = rng.integers(0, N_GROUPS, N_POSITIONS).astype(np.int64)
    return qty, price, mult, fx, scan, group


def _median_us(fn: Callable[[], object], reps: int, inner: int) -> float:
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter_ns() - t0) / inner / 1e3)
    return statistics.median(samples)


def bench_margin() -> dict:
    """`margin_recompute_us`: one grid over 1,000 positions x 16 scenarios (median of runs)."""
    qty, price, mult, fx, scan, group = _book()
    args = (qty, price, mult, fx, scan, group, N_GROUPS, SCENARIO_MOVES, SCENARIO_WEIGHTS)
    py_args = (
        qty.tolist(), price.tolist(), mult.tolist(), fx.tolist(), scan.tolist(), group.tolist(),
        N_GROUPS, SCENARIO_MOVES.tolist(), SCENARIO_WEIGHTS.tolist(),
    )
    scenario_grid(*args)  # warm-up: compile or load from cache
    value = _median_us(lambda: scenario_grid(*args), reps=7, inner=200)
    baseline = _median_us(lambda: scenario_grid_py(*py_args), reps=7, inner=3)
    full = _full_compute_us(qty, price, mult, fx, scan, group)
    return {
        "margin_recompute_us": {
            "value": value,
            "unit": "us",
            "baseline": baseline,
            "ratio": value / baseline,
        },
        # the whole MarginCalculator.compute (models, grid, credits) on the same book; no reference
        "margin_compute_full_us": {"value": full, "unit": "us", "baseline": None, "ratio": None},
    }


def _full_compute_us(
    qty: np.ndarray, price: np.ndarray, mult: np.ndarray, fx: np.ndarray, scan: np.ndarray, group: np.ndarray
) -> float:
    insts: dict[str, InstrumentCfg] = {}
    book: list[MarginPosition] = []
    for i in range(N_POSITIONS):
        key = f"i{i}"
        model = ("scenario", "percent", "fixed")[i % 3]
        insts[key] = InstrumentCfg(
            venue="V", symbol=key, tick=0.01, multiplier=float(mult[i]), currency="USD",
            margin_model=model, margin_fixed=5_000.0, scan_range_pct=float(scan[i]), commodity=f"c{group[i]}",
        )
        book.append(MarginPosition(account=f"a{i % 2}", instrument=key, qty=int(qty[i]), price=float(price[i]),
                                   fx_to_base=float(fx[i])))
    credits = [SpreadCreditCfg(a=f"i{i}", b=f"i{i + 1}", rate=0.5) for i in range(0, 40, 2)]
    calc = MarginCalculator(insts, RiskCfg(broker_addon=1.3, spread_credits=credits))
    calc.compute(book)
    return _median_us(lambda: calc.compute(book), reps=5, inner=5)


if __name__ == "__main__":
    for name, m in bench_margin().items():
        ref = "" if m["baseline"] is None else f" (python {m['baseline']:.1f}, ratio {m['ratio']:.4f})"
        print(f"{name}: {m['value']:.2f} {m['unit']}{ref}")
