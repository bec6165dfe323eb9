"""Executor domain-logic benchmark: the pair-trade machine and its write-ahead log, in process.

No sockets: this is the executor's own share of tick-to-trade. Metrics:

- ``executor_sm_signal_to_orders_us``: PairTrade built from a Signal and started until both
  SendOrder actions are returned, p50.
- ``executor_inproc_signal_to_orders_us``: the same plus what the actor does around it on the
  hot path: decode the Signal frame, log TradeOpened and both OrderSent (no fsync), encode both
  OrderRequests, p50.
- ``executor_sm_trades_per_s``: pair trades per second through start, ack and full fill of both legs.
- ``executor_wal_append_us``: one ``append_many`` of two OrderSent records (no fsync), p50.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import msgspec

from bus.messages import ExecType, OrderEvent, OrderRequest, Side, Signal, SignalLeg
from execution.pairtrade import LegParams, PairParams, PairTrade, SendOrder
from execution.wal import OrderSent, TradeOpened, WriteAheadLog

_N = 20_000


def _signal(i: int) -> Signal:
    return Signal(
        signal_id=f"s{i}", pair="au_gc", direction=Side.BUY, closing=False,
        legs=(SignalLeg(instrument="au", side=Side.BUY, qty=3, limit_px=556.0),
              SignalLeg(instrument="GC", side=Side.SELL, qty=1, limit_px=2400.0)),
        spread=1.0, zscore=2.1, expiry_ns=2**62, tick_recv_ns=i, signal_ns=i,
    )


_PARAMS = PairParams(
    pair="au_gc",
    a=LegParams(instrument="au", venue="SHFE", account="cn", tick=0.02, ratio=3),
    b=LegParams(instrument="GC", venue="COMEX", account="hk", tick=0.1, ratio=1),
)


def _report(o: OrderRequest, et: ExecType, cum: int, n: int) -> OrderEvent:
    return OrderEvent(cl_ord_id=o.cl_ord_id, exec_type=et, venue=o.venue, instrument=o.instrument, side=o.side,
                      order_qty=o.qty, cum_qty=cum, leaves_qty=o.qty - cum, last_qty=cum,
                      last_px=o.price or 0.0, avg_px=o.price or 0.0, exec_id=f"e{n}")


def _metric(value: float, unit: str) -> dict:
    return {"value": value, "unit": unit, "baseline": None, "ratio": None}


def bench_executor() -> dict:
    """Run the executor benchmarks; metrics in the `make bench` format."""
    clock = time.perf_counter_ns
    sigs = [_signal(i) for i in range(_N)]

    sm: list[int] = []
    for i, sig in enumerate(sigs):
        t0 = clock()
        acts = PairTrade(f"T{i:06d}", sig, _PARAMS).start(i)
        t1 = clock()
        assert isinstance(acts[0], SendOrder) and isinstance(acts[1], SendOrder)
        sm.append(t1 - t0)

    enc = msgspec.msgpack.Encoder()
    dec = msgspec.msgpack.Decoder(Signal)
    frames = [enc.encode(s) for s in sigs[:5000]]
    inproc: list[int] = []
    wal_us: list[int] = []
    with tempfile.TemporaryDirectory(prefix="xmc-bench-") as tmp:
        with WriteAheadLog(Path(tmp) / "bench.wal") as wal:
            buf = bytearray()
            for i, frame in enumerate(frames):
                t0 = clock()
                sig = dec.decode(frame)
                trade = PairTrade(f"T{i:06d}", sig, _PARAMS)
                wal.append(TradeOpened(trade_id=trade.trade_id, signal=sig, params=_PARAMS, now_ns=i))
                orders = [a.order for a in trade.start(i) if isinstance(a, SendOrder)]
                wal.append_many([OrderSent(order=o) for o in orders])
                for o in orders:
                    enc.encode_into(o, buf)
                inproc.append(clock() - t0)
            for o in orders * 2500:
                rec = [OrderSent(order=o), OrderSent(order=o)]
                t0 = clock()
                wal.append_many(rec)
                wal_us.append(clock() - t0)

    n_trades = 5000
    t0 = clock()
    for i in range(n_trades):
        trade = PairTrade(f"T{i:06d}", sigs[i], _PARAMS)
        a, b = (x.order for x in trade.start(i)[:2])  # type: ignore[union-attr]
        trade.on_report(_report(a, ExecType.ACK, 0, 4 * i), i)
        trade.on_report(_report(b, ExecType.ACK, 0, 4 * i + 1), i)
        trade.on_report(_report(a, ExecType.FILL, a.qty, 4 * i + 2), i)
        trade.on_report(_report(b, ExecType.FILL, b.qty, 4 * i + 3), i)
        assert trade.is_done
    per_s = n_trades / ((clock() - t0) / 1e9)

    return {
        "executor_sm_signal_to_orders_us": _metric(statistics.median(sm[1000:]) / 1000.0, "us"),
        "executor_inproc_signal_to_orders_us": _metric(statistics.median(inproc[500:]) / 1000.0, "us"),
        "executor_sm_trades_per_s": _metric(per_s, "per_s"),
        "executor_wal_append_us": _metric(statistics.median(wal_us[500:]) / 1000.0, "us"),
    }


if __name__ == "__main__":
    for name, m in bench_executor().items():
        print(f"{name:40s} {m['value']:12.2f} {m['unit']}")
