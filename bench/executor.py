"""Executor benchmarks: the pair-trade machine, the execution engine and its write-ahead log in
process, and the execution stream served to a follower over real ZeroMQ sockets.

In process (no sockets), the executor's own share of tick-to-trade:

- ``executor_sm_signal_to_orders_us``: PairTrade built from a Signal and started until both
  SendOrder actions are returned, p50 (the state machine alone: no limits, no routing, no log).
- ``executor_engine_signal_to_orders_us``: ``ExecutionEngine.on_signal(sig, now, send=...)``
  until it hands the orders to ``send`` (as the actor calls it), p50. The engine is the real one,
  built from configs/demo.toml (au_gc: SHFE leg split over the two sub-accounts, so 3 orders; FX
  rates fed first so the notional limits pass), over a real WriteAheadLog file in a temp dir (no
  fsync). The entry is armed (`execution.armed`): timed are the checks that depend on the
  signal, the one ``EntrySent`` record written, the orders patched. Extra ``total_us``: the whole
  call, the trade's bookkeeping after the orders included (the ordinary path, which must arrive
  at the records written; its log lines come back as `Log` effects, built but not formatted).
  Each iteration is a fresh signal (new signal_id, direction alternating so positions stay
  flat, ``now`` one second on so the order-rate window never fills) that opens a trade; between
  iterations, untimed, every order it sent gets an ACK and a full FILL through
  ``engine.on_report`` so the trade completes and the pair is free again. Baseline: the
  ``executor_sm_signal_to_orders_us`` figure of the same run.
  Before each signal, untimed, ``engine.rehearse`` runs as the live actor runs it every
  ``REHEARSE_S``: it primes the margin what-if's verdicts the fills dropped (so the timed call
  finds its verdict cached, as a live signal normally does) and warms the signal path.
- ``executor_whatif_check_us``: the pre-trade margin what-if's cost per entry on the hot path,
  p50 per call: what ``ExecutionEngine._refuse`` does for an opening signal (the legs' quantities,
  the "price known?" test per leg, ``MarginWhatIf.check``) with the verdict cached, on a warm demo
  engine holding one unit of each pair (au_gc, hsi_mhi). Timed in batches of 100 calls (the clock's
  own cost is not in the figure). Baseline: the ``executor_engine_signal_to_orders_us`` figure of
  the same run (so the ratio is the what-if's share of the engine's signal -> orders). Extras, from
  engine loops like the one above on the holding engine (each mode 1/3 of its signals, run in two
  interleaved halves, the first 200 of each half left out; the au_gc entries alternate direction,
  so the book goes between 1 and 2 au_gc units beside 1 hsi_mhi unit): ``primed_us`` = on_signal
  p50 with ``engine.rehearse`` called (untimed) before each signal, as the actor does every ``REHEARSE_S``
  (it primes the verdicts the fills dropped, then warms the signal path); ``off_us`` = the same
  with ``whatif.check`` stubbed out (returns None, computes nothing);
  ``delta_us`` = primed - off: what the what-if moves the engine's signal -> orders p50 by (noisy:
  a difference of two medians); ``unprimed_us`` = the loop without the rehearsal, a recompute on
  every signal (a signal within ``REHEARSE_S`` of a fill);
  ``unprimed_delta_us`` = that minus the same loop with the what-if stubbed out (what the what-if
  adds to ``executor_engine_signal_to_orders_us``'s kind of loop).
- ``executor_whatif_compute_us``: a full what-if recompute (cache miss: ``invalidate`` then
  ``check``), p50, over the demo pairs in both directions (1 unit each), on the same warm engine:
  every position of the book plus the trade's legs through ``MarginCalculator.compute`` (demo
  models: percent and fixed, spread credits), FX into the base and back into each account's
  currency. Extras: p50 per pair, ``p99_us``. No baseline.
- ``executor_inproc_signal_to_orders_us``: the PairTrade machine plus what the old actor did
  around it on the hot path: decode the Signal frame, log TradeOpened and both OrderSent (no
  fsync), encode both OrderRequests, p50.
- ``executor_sm_trades_per_s``: pair trades per second through start, ack and full fill of both legs.
- ``executor_wal_append_us``: one ``append_many`` of two OrderSent records (no fsync), p50.

Over sockets (`bench_stream`, section "stream"):

- ``stream_catchup_per_s``: stream events per second a follower is served "everything since N",
  from 0 until it holds the whole stream, over ipc. Two forked processes, each freezing its
  start-up objects out of the garbage collector as ``Actor.run`` does. The executor's side fills
  a real engine's stream first (demo trades run through it over its own log; each adds 9 events:
  3 trade events, 3 fills, 3 positions), then serves it the way the executor actor does: its
  command ROUTER bound at ``Endpoints(cfg, run_dir).cmd("executor")`` with the actor's socket
  options, `CommandServer`, a poll loop draining like ``Actor._drain_cmd`` and the real
  ``ExecutorActor.on_command`` answering each `StreamSince` with a `StreamBatch` of up to
  ``STREAM_BATCH`` events from ``engine.since``. The follower's side is a DEALER as
  ``Actor.connect_command`` makes it (`CommandClient`) doing what ``Actor.follow_stream`` does:
  ask since its cursor, decode the answer (`Codec`), offer each event to a `StreamCursor`, ask
  again while behind (the handler is a counter: what a journal or marginwatch then does with an
  event is not timed). Timed: first request sent -> last event taken; the median over the
  repetitions. ``follower_ms``: of that, the follower decoding and taking (the rest is the
  executor's side and the sockets). Baseline: raw pyzmq in the same two processes, a DEALER
  asking a second, raw ROUTER, which answers with pre-built frames of the same sizes (request
  and each reply) as the xmc round trips, as many of them, nothing encoded or decoded; events/s
  counted the same way; raw repetitions alternate with the xmc ones.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import msgspec
import zmq

from bench.stats import percentiles
from bus.codec import Codec
from bus.command import CommandClient, CommandServer
from bus.endpoints import Endpoints
from bus.messages import (Control, Envelope, ExecType, FxRate, OrderEvent, OrderRequest, Side, Signal, SignalLeg,
                          StreamBatch, StreamSince)
from bus.readiness import readable
from bus.stream import StreamCursor
from configs.load import load_config
from execution.engine import STREAM_BATCH, Effect, Emit, ExecutionEngine, SendWire
from execution.pairtrade import LegParams, PairParams, PairTrade, SendOrder
from execution.wal import OrderSent, TradeOpened, WriteAheadLog

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo.toml"
EXECUTOR = "executor"  # the demo's executor actor: its command endpoint serves the stream
FOLLOWER = "journal"  # the routing id the bench's follower takes (a follower's actor name)
_N = 20_000
_N_ENGINE = 5000
_SECOND = 10**9
_T0 = 10**15  # engine time (ns) of the first signal
_TIMEOUT_MS = 30_000


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


def _report(o: OrderRequest, et: ExecType, cum: int, n: int, now: int = 0) -> OrderEvent:
    return OrderEvent(cl_ord_id=o.cl_ord_id, exec_type=et, venue=o.venue, instrument=o.instrument, side=o.side,
                      order_qty=o.qty, cum_qty=cum, leaves_qty=o.qty - cum, last_qty=cum,
                      last_px=o.price or 0.0, avg_px=o.price or 0.0, exec_id=f"e{n}", recv_ns=now)


def _metric(value: float, unit: str, baseline: float | None = None, **extra: object) -> dict:
    return {"value": value, "unit": unit, "baseline": baseline,
            "ratio": value / baseline if baseline else None, **extra}


# --- the execution engine ----------------------------------------------------------------------


def _engine_signal(i: int, now: int) -> Signal:
    """A fresh au_gc entry signal; the direction alternates so the positions stay flat."""
    d = Side.BUY if i % 2 == 0 else Side.SELL
    other = Side.SELL if d is Side.BUY else Side.BUY
    return Signal(
        signal_id=f"e{i}", pair="au_gc", direction=d, closing=False,
        legs=(SignalLeg(instrument="au", side=d, qty=3, limit_px=556.0),
              SignalLeg(instrument="GC", side=other, qty=1, limit_px=2400.0)),
        spread=1.0, zscore=2.1, expiry_ns=now + _SECOND, tick_recv_ns=now, signal_ns=now,
    )


def demo_engine(wal_path: Path) -> ExecutionEngine:
    """The real engine of configs/demo.toml's executor over a fresh log (no fsync), FX rates known."""
    engine = ExecutionEngine(load_config(DEMO), WriteAheadLog(wal_path), actor=EXECUTOR)
    for pair, px in (("USDCNH", 7.2), ("USDCNY", 7.2), ("USDHKD", 7.8)):
        engine.on_fx(FxRate(pair=pair, bid=px, ask=px + 0.0002, exch_ts_ns=_T0, recv_ns=_T0))
    return engine


def fill_all(engine: ExecutionEngine, effects: list[Effect], now: int) -> list[Effect]:
    """ACK and fully FILL every order the effects send (and any they lead to); `effects` and every
    effect the reports made, in order."""
    out = list(effects)
    queue = [e.order for e in effects if isinstance(e, SendWire)]
    n = 0
    while queue:
        o = queue.pop(0)
        for et, cum in ((ExecType.ACK, 0), (ExecType.FILL, o.qty)):
            n += 1
            more = engine.on_report(_report(o, et, cum, n, now), now)
            out += more
            queue += [e.order for e in more if isinstance(e, SendWire)]
    return out


def run_trades(engine: ExecutionEngine, n: int, first: int = 0) -> None:
    """`n` demo trades through the engine, each opened by a signal and completed by its fills."""
    for i in range(first, first + n):
        now = _T0 + i * _SECOND
        fill_all(engine, engine.on_signal(_engine_signal(i, now), now), now)
        if engine.open:
            raise RuntimeError(f"engine trade left open: {sorted(engine.open)} stats={engine.stats}")


def _engine_signal_to_orders(tmp: Path, n: int) -> tuple[list[int], list[int], int]:
    """ns of each `on_signal` that opens a trade, to its orders handed out and to its return
    (completed untimed in between); orders per signal."""
    clock = time.perf_counter_ns
    engine = demo_engine(tmp / "engine.wal")
    sigs = [_engine_signal(i, _T0 + i * _SECOND) for i in range(n)]
    to_send: list[int] = []
    total: list[int] = []
    n_orders = 0
    sent: list[tuple[int, list[Effect]]] = []

    def send(wire: list[Effect]) -> None:
        sent.append((clock(), wire))

    try:
        for i, sig in enumerate(sigs):
            now = _T0 + i * _SECOND
            engine.rehearse(now)  # untimed, as the actor does every REHEARSE_S between signals
            sent.clear()
            t0 = clock()
            rest = engine.on_signal(sig, now, send=send)
            t1 = clock()
            (t_sent, wire), = sent
            to_send.append(t_sent - t0)
            total.append(t1 - t0)
            if not wire or not any(isinstance(e, Emit) for e in rest) or not engine.stats["armed_sent"]:
                raise RuntimeError(f"on_signal sent no armed orders: {wire!r} {rest!r} stats={engine.stats}")
            n_orders = len(wire)
            fill_all(engine, wire + rest, now)
            if engine.open:
                raise RuntimeError(f"engine trade left open: {sorted(engine.open)}")
    finally:
        engine.wal.close()
    return to_send, total, n_orders


# --- the pre-trade margin what-if ------------------------------------------------------------------

_WHATIF_BATCH = 100


def _hsi_signal(i: int, now: int, d: Side) -> Signal:
    return Signal(
        signal_id=f"h{i}", pair="hsi_mhi", direction=d, closing=False,
        legs=(SignalLeg(instrument="HSI", side=d, qty=1, limit_px=25000.0),
              SignalLeg(instrument="MHI", side=d.opposite, qty=5, limit_px=25000.0)),
        spread=1.0, zscore=2.1, expiry_ns=now + _SECOND, tick_recv_ns=now, signal_ns=now,
    )


def _holding_engine(wal_path: Path) -> tuple[ExecutionEngine, int]:
    """A warm demo engine (201 au_gc trades run through it) holding 1 unit of au_gc and of hsi_mhi;
    the next signal index."""
    engine = demo_engine(wal_path)
    run_trades(engine, 201)  # BUY, SELL, ..., BUY: long 1 au_gc unit
    now = _T0 + 201 * _SECOND
    fill_all(engine, engine.on_signal(_hsi_signal(0, now, Side.BUY), now), now)
    if engine.open or engine.book.units("au_gc") != 1 or engine.book.units("hsi_mhi") != 1:
        raise RuntimeError(f"holding engine not as built: {engine.positions()} stats={engine.stats}")
    return engine, 202


def _whatif_hot(engine: ExecutionEngine, sig: Signal) -> str | None:
    """What `ExecutionEngine._refuse` does for the what-if of an opening signal."""
    p = engine.params[sig.pair]
    qty = {leg.instrument: leg.qty for leg in sig.legs}
    for leg in sig.legs:
        if leg.instrument not in engine.whatif.price:
            engine.whatif.on_price(leg.instrument, leg.limit_px)
    return engine.whatif.check(sig.pair, sig.direction.sign, qty[p.a.instrument], qty[p.b.instrument], engine.book,
                               engine.fx)


def _whatif_costs(tmp: Path, n: int) -> dict:
    """ns per cached check (batches), ns per full recompute per pair."""
    clock = time.perf_counter_ns
    engine, _ = _holding_engine(tmp / "whatif.wal")
    try:
        now = _T0 + 10**6 * _SECOND
        sigs = [_engine_signal(0, now), _engine_signal(1, now), _hsi_signal(1, now, Side.BUY),
                _hsi_signal(2, now, Side.SELL)]
        verdicts = [_whatif_hot(engine, s) for s in sigs]
        if any(v is not None for v in verdicts):
            raise RuntimeError(f"what-if refused a bench signal: {verdicts}")
        sig = sigs[1]  # au_gc SELL: the verdict is cached now
        computed = engine.whatif.computed
        batches: list[float] = []
        for _ in range(n // _WHATIF_BATCH):
            t0 = clock()
            for _ in range(_WHATIF_BATCH):
                _whatif_hot(engine, sig)
            batches.append((clock() - t0) / _WHATIF_BATCH)
        if engine.whatif.computed != computed:
            raise RuntimeError("the cached what-if verdict was computed again")
        miss: dict[str, list[int]] = {"au_gc": [], "hsi_mhi": []}
        for i in range(n // 4):
            s = sigs[i % 4]
            engine.whatif.invalidate()
            t0 = clock()
            _whatif_hot(engine, s)
            miss[s.pair].append(clock() - t0)
        if engine.whatif.computed != computed + n // 4:
            raise RuntimeError("a what-if cache miss did not compute")
    finally:
        engine.wal.close()
    return {"hit": batches, "miss": miss}


def _engine_loop(tmp: Path, n: int, mode: str, run: int) -> list[int]:
    """ns of each `on_signal` (demo au_gc entries, completed untimed in between) on a holding engine;
    mode "unprimed": as `_engine_signal_to_orders`; "primed": `engine.rehearse` before each signal
    (untimed; it primes the what-if's verdicts, then warms the signal path), as the actor does every
    `REHEARSE_S`; "off": the same rehearsal, with the what-if stubbed out; "unprimed_off":
    as "unprimed", with the what-if stubbed out."""
    clock = time.perf_counter_ns
    engine, first = _holding_engine(tmp / f"loop-{run}-{mode}.wal")  # a fresh log each time
    if mode in ("off", "unprimed_off"):
        engine.whatif.check = lambda *a, **k: None  # type: ignore[method-assign]
    out: list[int] = []
    try:
        for i in range(first, first + n):
            now = _T0 + i * _SECOND
            sig = _engine_signal(i, now)
            if mode in ("primed", "off"):
                engine.rehearse(now)
            t0 = clock()
            effects = engine.on_signal(sig, now)
            out.append(clock() - t0)
            if not any(isinstance(e, SendWire) for e in effects):
                raise RuntimeError(f"on_signal ({mode}) made no orders: {effects!r} stats={engine.stats}")
            fill_all(engine, effects, now)
    finally:
        engine.wal.close()
    return out


def bench_whatif(tmp: Path, engine_p50_us: float, n: int = 20_000, n_engine: int = _N_ENGINE // 3) -> dict:
    """`executor_whatif_check_us` and `executor_whatif_compute_us` (see the module docstring)."""
    costs = _whatif_costs(tmp, n)
    hit = statistics.median(costs["hit"][10:]) / 1000.0
    loops: dict[str, list[int]] = {}
    for run, mode in enumerate(("off", "primed", "unprimed", "unprimed_off") * 2):  # two halves each, interleaved
        loops.setdefault(mode, []).extend(_engine_loop(tmp, n_engine // 2, mode, run)[200:])
    p50 = {m: statistics.median(v) / 1000.0 for m, v in loops.items()}
    every = [x for v in costs["miss"].values() for x in v[50:]]
    miss = percentiles(every)
    return {
        "executor_whatif_check_us": _metric(
            hit, "us", engine_p50_us, primed_us=round(p50["primed"], 2), off_us=round(p50["off"], 2),
            delta_us=round(p50["primed"] - p50["off"], 2), unprimed_us=round(p50["unprimed"], 2),
            unprimed_delta_us=round(p50["unprimed"] - p50["unprimed_off"], 2),
            calls=len(costs["hit"]) * _WHATIF_BATCH, signals=sum(len(v) for v in loops.values())),
        "executor_whatif_compute_us": _metric(
            miss["p50"] / 1000.0, "us", None, p99_us=round(miss["p99"] / 1000.0, 2),
            **{f"{pair}_us": round(statistics.median(v[50:]) / 1000.0, 2) for pair, v in costs["miss"].items()},
            computes=len(every)),
    }


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
        engine_ns, engine_total_ns, engine_orders = _engine_signal_to_orders(Path(tmp), _N_ENGINE)
        eng = percentiles(engine_ns[500:])
        whatif = bench_whatif(Path(tmp), eng["p50"] / 1000.0)

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

    sm_us = statistics.median(sm[1000:]) / 1000.0
    return {
        "executor_sm_signal_to_orders_us": _metric(sm_us, "us"),
        "executor_engine_signal_to_orders_us": _metric(
            eng["p50"] / 1000.0, "us", sm_us, p99_us=round(eng["p99"] / 1000.0, 2), orders=engine_orders,
            signals=len(engine_ns) - 500, total_us=round(statistics.median(engine_total_ns[500:]) / 1000.0, 2)),
        "executor_inproc_signal_to_orders_us": _metric(statistics.median(inproc[500:]) / 1000.0, "us"),
        "executor_sm_trades_per_s": _metric(per_s, "per_s"),
        "executor_wal_append_us": _metric(statistics.median(wal_us[500:]) / 1000.0, "us"),
        **whatif,
    }


# --- the execution stream, served over the command channel --------------------------------------


def _actor_socket(ctx: zmq.Context, kind: int, hwm: int) -> zmq.Socket:
    """A socket with the options `Actor._socket` gives every actor socket."""
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 500)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    return sock


def _server(events: int, run_dir: Path, raw_ep: str, info: "mp.Queue[tuple]") -> None:
    """The executor's side, in its own process: an engine whose stream holds >= `events` events
    (demo trades run through it, over its own log), then its command ROUTER (as `Actor.__init__`
    binds it, with `CommandServer`) answering `StreamSince` with the real `ExecutorActor.on_command`,
    in a poll loop draining as `Actor._drain_cmd` does. Beside it, a raw ROUTER that answers request
    k (its first 4 bytes, big-endian) with a frame as long as the xmc side's k-th answer. Anything
    else than a StreamSince on the command ROUTER, or b"stop" on the raw one, ends the process."""
    import gc

    from actors.executor import ExecutorActor
    from actors.runtime import MAX_DRAIN

    cfg = load_config(DEMO)
    try:
        engine = demo_engine(run_dir / "state" / f"{EXECUTOR}.wal")
        run_trades(engine, -(-events // 9))  # one demo trade: 3 trade events, 3 fills, 3 positions
    except BaseException as exc:
        info.put(("error", repr(exc)))
        raise
    head = engine.head
    codec = Codec()
    ask = codec.encode(Envelope(src=FOLLOWER, epoch=time.time_ns(), seq=1, ts_ns=time.monotonic_ns(),
                                body=StreamSince(since=head)))
    sizes = [len(codec.encode(Envelope(src=EXECUTOR, epoch=time.time_ns(), seq=k + 1, ts_ns=time.monotonic_ns(),
                                       body=StreamBatch(events=engine.since(since), head=head))))
             for k, since in enumerate(range(0, head, STREAM_BATCH))]
    replies = [b"r" * n for n in sizes]
    ctx = zmq.Context()
    started = False
    try:
        sock = _actor_socket(ctx, zmq.ROUTER, cfg.endpoints.hwm)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        eps = Endpoints(cfg, run_dir)
        sock.bind(eps.bindable(eps.cmd(EXECUTOR)))
        server = CommandServer(sock, EXECUTOR, time.time_ns())
        raw = ctx.socket(zmq.ROUTER)
        raw.bind(raw_ep)
        actor = SimpleNamespace(engine=engine, stats={"orders": 0, "stream_served": 0})
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(raw, zmq.POLLIN)
        more = readable(sock)
        gc.collect()
        gc.freeze()  # as Actor.run does after setup (which recovers the engine from the log)
        info.put((head, len(ask), sizes))
        started = True
        while True:
            ready = dict(poller.poll(_TIMEOUT_MS * 4))
            if not ready:
                return
            if sock in ready:
                for _ in range(MAX_DRAIN):
                    try:
                        peer, env = server.recv()
                    except zmq.Again:
                        break
                    if not isinstance(env.body, StreamSince):
                        return
                    reply = ExecutorActor.on_command(actor, peer, env)  # type: ignore[arg-type]
                    if reply is not None:
                        server.send(peer, env.seq, reply)
                    if not more():
                        break
            if raw in ready:
                peer, req = raw.recv_multipart()
                if req == b"stop":
                    return
                raw.send_multipart([peer, replies[int.from_bytes(req[:4], "big")]])
    except BaseException as exc:
        if not started:
            info.put(("error", repr(exc)))
        raise
    finally:
        engine.wal.close()
        ctx.destroy(linger=0)


def _catch_up(client: CommandClient, sock: zmq.Socket) -> tuple[float, float, int, int]:
    """What `Actor.follow_stream` does from seq 0 until it holds the head:
    (seconds, of them decoding and taking, events taken, bytes received)."""
    clock = time.perf_counter
    cursor = StreamCursor(0)
    taken = nbytes = 0
    busy = 0.0
    t0 = clock()
    while True:
        req = client.send(StreamSince(since=cursor.last))
        if not sock.poll(_TIMEOUT_MS):
            raise TimeoutError(f"no StreamBatch after since={cursor.last}")
        data = sock.recv(zmq.NOBLOCK)  # what CommandClient.recv does
        t1 = clock()
        nbytes += len(data)
        env = client.codec.decode(data)
        body = env.body
        if env.seq != req or not isinstance(body, StreamBatch):
            raise RuntimeError(f"unexpected answer to StreamSince({cursor.last}): {type(body).__name__}")
        for ev in body.events:
            if cursor.offer(ev.seq):
                taken += 1
        cursor.heard_head(body.head)
        busy += clock() - t1
        if not cursor.behind:
            break
    return clock() - t0, busy, taken, nbytes


def _raw_round_trips(sock: zmq.Socket, requests: list[bytes]) -> tuple[float, int]:
    nbytes = 0
    t0 = time.perf_counter()
    for req in requests:
        sock.send(req)
        if not sock.poll(_TIMEOUT_MS):
            raise TimeoutError("raw ROUTER did not answer")
        nbytes += len(sock.recv(zmq.NOBLOCK))
    return time.perf_counter() - t0, nbytes


def _follower(run_dir: Path, raw_ep: str, head: int, ask_size: int, n_replies: int, reps: int,
              out: "mp.Queue[dict]") -> None:
    """The follower's side, in its own process (start-up objects frozen, as `Actor.run` does): a
    DEALER as `Actor.connect_command` makes it, then catch-ups from 0, alternating with the raw ones."""
    import gc

    gc.collect()
    gc.freeze()
    cfg = load_config(DEMO)
    eps = Endpoints(cfg, run_dir)
    ctx = zmq.Context()
    try:
        dealer = _actor_socket(ctx, zmq.DEALER, cfg.endpoints.hwm)
        dealer.setsockopt(zmq.ROUTING_ID, FOLLOWER.encode())
        dealer.connect(eps.cmd(EXECUTOR))
        client = CommandClient(dealer, FOLLOWER, time.time_ns())
        raw = ctx.socket(zmq.DEALER)
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(raw_ep)
        requests = [k.to_bytes(4, "big") + b"\0" * max(0, ask_size - 4) for k in range(n_replies)]
        _catch_up(client, dealer)  # warm-up: connections made, code paths warm
        _raw_round_trips(raw, requests)
        res: dict = {"xmc_s": [], "busy_s": [], "raw_s": []}
        for _ in range(reps):
            secs, busy, res["taken"], res["xmc_bytes"] = _catch_up(client, dealer)
            res["xmc_s"].append(secs)
            res["busy_s"].append(busy)
            secs, res["raw_bytes"] = _raw_round_trips(raw, requests)
            res["raw_s"].append(secs)
        client.send(Control(cmd="stop"))
        raw.send(b"stop")
        out.put(res)
    except BaseException as exc:
        out.put({"error": repr(exc)})
        raise
    finally:
        ctx.destroy(linger=500)


def bench_stream(events: int = 50_000, reps: int = 7) -> dict:
    """`stream_catchup_per_s` (see the module docstring)."""
    mpctx = mp.get_context("fork")
    tmp = Path(tempfile.mkdtemp(prefix="xbst-", dir="/tmp"))
    run_dir = tmp / "run"
    Endpoints(load_config(DEMO), run_dir).sock_dir.mkdir(parents=True)
    (run_dir / "state").mkdir()
    raw_ep = f"ipc://{run_dir / 'sock' / 'raw.cmd'}"
    info: "mp.Queue[tuple]" = mpctx.Queue()
    out: "mp.Queue[dict]" = mpctx.Queue()
    procs = [mpctx.Process(target=_server, args=(events, run_dir, raw_ep, info), daemon=True)]
    try:
        procs[0].start()
        got = info.get(timeout=120)
        if got[0] == "error":
            raise RuntimeError(f"stream server failed: {got[1]}")
        head, ask_size, sizes = got
        procs.append(mpctx.Process(target=_follower, args=(run_dir, raw_ep, head, ask_size, len(sizes), reps, out),
                                   daemon=True))
        procs[1].start()
        res = out.get(timeout=300)
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
        for f in sorted(tmp.rglob("*"), reverse=True):
            f.rmdir() if f.is_dir() else f.unlink()
        tmp.rmdir()
    if "error" in res:
        raise RuntimeError(f"stream follower failed: {res['error']}")
    if res["taken"] != head:
        raise RuntimeError(f"follower took {res['taken']} of {head} events")
    if abs(res["raw_bytes"] - res["xmc_bytes"]) > len(sizes) * 16:
        raise RuntimeError(f"raw moved {res['raw_bytes']} bytes, xmc {res['xmc_bytes']}")
    xmc_s, raw_s = statistics.median(res["xmc_s"]), statistics.median(res["raw_s"])
    return {"stream_catchup_per_s": _metric(
        head / xmc_s, "per_s", head / raw_s, events=head, batches=len(sizes), batch=STREAM_BATCH, reps=reps,
        bytes_per_event=round(res["xmc_bytes"] / head, 1), catchup_ms=round(xmc_s * 1e3, 2),
        follower_ms=round(statistics.median(res["busy_s"]) * 1e3, 2))}


if __name__ == "__main__":
    for name, m in {**bench_executor(), **bench_stream(20_000, 3)}.items():
        print(f"{name:40s} {m['value']:12.2f} {m['unit']}")
