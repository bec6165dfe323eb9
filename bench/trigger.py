"""Trigger benchmarks: the fused spread kernel vs the pure-Python reference, and the in-process engine."""

from __future__ import annotations

import statistics
import time

import msgspec
import numpy as np

from bus.messages import FxRate, Quote
from configs.schema import Config
from signals import kernels as K
from signals.reference import LegTop, ReferencePair
from signals.rules import TriggerEngine

N_PAIRS = 8
TICKS = 20_000
REPS = 3


def _tape(n_inst: int, ticks: int, seed: int) -> np.ndarray:
    """Random-walk tops of book: (ticks, n_inst, 4) bid, ask, bid size, ask size."""
    rng = np.random.default_rng(seed)
    mids = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 2e-4, (ticks, n_inst)), axis=0))
    out = np.empty((ticks, n_inst, 4))
    out[:, :, 0] = mids - 0.05
    out[:, :, 1] = mids + 0.05
    out[:, :, 2:] = rng.integers(1, 50, (ticks, n_inst, 2))
    return out


def _kernel_state(n_pairs: int) -> K.KernelState:
    st = K.KernelState(n_pairs, 2 * n_pairs + 1, 200)
    fx = 2 * n_pairs
    for p in range(n_pairs):
        st.pi[p] = (2 * p, 2 * p + 1, -1, fx, 0, 0, 200, 50, K.MODE_ZSCORE)
        st.pf[p] = (1.0, 1.0, 1, 1, K.ewma_alpha(200.0), 2.0, 0.5, 1.0, 5e8)
    st.px[fx] = (1.0, 1.0, 0.0, 0.0)
    st.tm[:, K.TM_HAS] = 1
    return st


def _time_kernel(tape: np.ndarray) -> tuple[float, float]:
    """Seconds per tick for (write inputs + kernel call, write inputs only)."""
    st = _kernel_state(N_PAIRS)
    n = 2 * N_PAIRS
    px, dirty, run = st.px, st.tm[:, K.TM_DIRTY], st.run
    rows = [tape[t] for t in range(len(tape))]
    t0 = time.perf_counter()
    for t, row in enumerate(rows):
        px[:n] = row
        dirty[:] = 1
        run(t)
    with_kernel = time.perf_counter() - t0
    t0 = time.perf_counter()
    for row in rows:
        px[:n] = row
        dirty[:] = 1
    inputs = time.perf_counter() - t0
    return with_kernel / len(rows), inputs / len(rows)


def _time_reference(tape: np.ndarray) -> float:
    """Seconds per tick for the reference updating every pair."""
    refs = [ReferencePair(halflife=200.0, window=200, warmup=50, entry=2.0, exit=0.5, invert_b=False)
            for _ in range(N_PAIRS)]
    tops = [[LegTop(*map(float, tape[t, i]), recv_ns=t) for i in range(2 * N_PAIRS)] for t in range(len(tape))]
    t0 = time.perf_counter()
    for t, row in enumerate(tops):
        for p, ref in enumerate(refs):
            ref.update(row[2 * p], row[2 * p + 1], None, 1.0, t)
    return (time.perf_counter() - t0) / len(tops)


def _engine_cfg() -> Config:
    instruments = {}
    pairs = {}
    for p in range(N_PAIRS // 2):
        for leg in ("a", "b"):
            instruments[f"I{p}{leg}"] = {"venue": "V", "symbol": f"I{p}{leg}", "tick": 0.01, "multiplier": 1.0,
                                         "currency": "USD" if leg == "b" else "CNY"}
        pairs[f"p{p}"] = {"leg_a": f"I{p}a", "leg_b": f"I{p}b", "currency": "CNY", "mode": "zscore",
                          "max_inventory": 1_000_000, "cooldown_ms": 0.0}
    instruments["USDCNY"] = {"venue": "V", "symbol": "USDCNY", "tick": 0.0001, "multiplier": 1.0,
                             "currency": "CNY", "unit": "ccy", "fx": True}
    return msgspec.convert({"venues": {"V": {"kind": "replay"}}, "instruments": instruments, "pairs": pairs}, Config)


def _time_engine(n_quotes: int) -> float:
    """Quotes per second through on_quote + evaluate, one evaluation per quote."""
    cfg = _engine_cfg()
    engine = TriggerEngine(cfg)
    legs = [k for k in cfg.instruments if k != "USDCNY"]
    tape = _tape(len(legs), n_quotes // len(legs) + 1, seed=3)
    base = time.monotonic_ns()
    quotes = []
    for t in range(n_quotes):
        i = t % len(legs)
        row = tape[t // len(legs), i]
        scale = 7.2 if legs[i].endswith("a") else 1.0
        quotes.append(Quote(venue="V", symbol=legs[i], bid=float(row[0]) * scale, ask=float(row[1]) * scale,
                            bid_size=float(row[2]), ask_size=float(row[3]), exch_ts_ns=0, recv_ns=base + t))
    engine.on_fx(FxRate(pair="USDCNY", bid=7.2, ask=7.2, exch_ts_ns=0, recv_ns=base))
    on_quote, evaluate = engine.on_quote, engine.evaluate
    t0 = time.perf_counter()
    for t, q in enumerate(quotes):
        on_quote(q)
        for sig in evaluate(base + t):
            engine.on_trade_done(sig.pair, sig.direction, sig.closing, 1, sig.signal_id)
    return n_quotes / (time.perf_counter() - t0)


def bench_trigger() -> dict[str, dict[str, float | str | None]]:
    """`trigger_kernel_ns` (per pair per tick, 8-pair batch) vs the Python reference; engine quotes/s."""
    K.warm_up()
    tape = _tape(2 * N_PAIRS, TICKS, seed=1)
    kern, ref = [], []
    for _ in range(REPS):
        with_kernel, inputs = _time_kernel(tape)
        kern.append(max(with_kernel - inputs, 0.0))
        ref.append(_time_reference(tape[: TICKS // 4]))
    kernel_ns = statistics.median(kern) / N_PAIRS * 1e9
    ref_ns = statistics.median(ref) / N_PAIRS * 1e9
    engine = statistics.median(_time_engine(40_000) for _ in range(REPS))
    return {
        "trigger_kernel_ns": {"value": kernel_ns, "unit": "ns", "baseline": ref_ns, "ratio": kernel_ns / ref_ns},
        "trigger_engine_quotes_per_s": {"value": engine, "unit": "per_s", "baseline": None, "ratio": None},
    }


if __name__ == "__main__":
    for name, m in bench_trigger().items():
        print(f"{name:32s} {m['value']:12.1f} {m['unit']:6s} baseline={m['baseline']} ratio={m['ratio']}")
