"""System benchmarks: the real actor processes, started with the real CLI, measured from outside.

Each benchmark writes a config into a fresh temp dir under /tmp (short ipc paths),
runs `xmc up CONFIG --run-dir DIR --detach`, measures, and always runs `xmc down`
and checks that no process of the run is left, even when the measurement fails.
Where a test process has to stand in for an actor, the config keeps that actor
but disables it: its endpoints stay defined, so the bench binds the actor's PUB
endpoint and the real actors connect to it as usual.

Status is polled over the supervisor's CLI channel in process (the document
`xmc status --json` prints); figures reported at the end of a run are read with
the real `xmc status --json`.

Metrics (each function's docstring says exactly what is timed and against what):

- ``ingest_replay_per_s`` (`bench_ingest_replay`): quotes/s one ingest process normalises and
  publishes replaying a recorded mbp-1 file, counted by a subscriber.
- ``journal_write_per_s`` (`bench_journal`): rows/s into the audit store as the journal writes
  them, bus messages and execution-stream events (filed by `JournalActor._on_stream`) alike.
- ``tick_to_trade_{p50,p99,p999}_us``, ``tick_to_trade_latency_profile_*``,
  ``executor_signal_to_orders[_latency_profile]_us`` (`bench_demo`): the demo, ingest receive ->
  both entry orders sent, from the journal; the executor's own signal -> orders from its status.
- ``trigger_burst_per_s`` (`bench_trigger_burst`): quotes/s the trigger consumes from a burst.
- ``risk_state_latency_us`` (`bench_risk_state`): margin threshold crossing (a fill on a
  stand-in executor's execution stream, `StreamStandIn`) -> risk state received by the executor.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, TypeVar

import numpy as np
import zmq

from actors.journal import FLUSH_ROWS, JournalActor
from actors.tradebook import STAGES, tick_stages_us, tick_to_trade_us
from bench.bus import raw_pubsub_rate, run_chain
from bench.ingest import MBP1_FILE
from bench.stats import metric, percentiles
from bus import topics
from bus.auditstore import INSERT_SQL as INSERT_EVENT  # the writer's own statement, for the raw baseline
from bus.auditstore import SCHEMA, STREAM_EPOCH, AuditReader, AuditWriter, row_of
from bus.codec import Codec, FrameError
from bus.command import CommandServer, call
from bus.endpoints import Endpoints
from bus.messages import (CmdAck, Control, Envelope, ExecType, FxRate, Heartbeat, InstrumentPosition, LegView, Message,
                          OrderEvent, OrderPurpose, OrderRequest, PairTradeEvent, PairUnits, Positions, Quote,
                          RiskLevel, RiskState, Side, Signal, SignalLeg, StreamBatch, StreamEvent, StreamSince,
                          TradeState)
from bus.pubsub import Publisher
from bus.stream import filed_topic
from execution.engine import STREAM_BATCH
from actors.supervisor import run_dir_processes
from configs.load import load_config

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo.toml"
CATALOGUE = ROOT / "configs" / "instruments.toml"
T = TypeVar("T")
_CODEC = Codec()


def _xmc_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("xmc")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "actors.cli"]


def wait_for(cond: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll `cond` until it returns something truthy; raise naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)  # polling a condition with a deadline


class SystemRun:
    """One `xmc up --detach` run of a config body in a temp dir; `xmc down` and cleanup on exit."""

    def __init__(self, name: str, body: str) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"xb{name[:4]}-", dir="/tmp"))
        self.config = self.tmp / "bench.toml"
        self.run_dir = self.tmp / "run"
        try:
            self.config.write_text(body)
            self.eps = Endpoints(load_config(self.config), self.run_dir)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        self.ctx = zmq.Context()
        self._up = False

    def xmc(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*_xmc_cmd(), *args, "--run-dir", str(self.run_dir)], capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT)

    def __enter__(self) -> "SystemRun":
        try:
            self._up = True
            proc = self.xmc("up", str(self.config), "--detach")
            if proc.returncode != 0:
                raise RuntimeError(f"xmc up failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
        except BaseException:
            try:
                self.__exit__(None, None, None)
            except Exception as exc:  # keep the original error; say what cleanup found
                print(f"bench: cleanup after a failed start: {exc}", file=sys.stderr)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.down()
        finally:
            self.ctx.destroy(linger=0)
            shutil.rmtree(self.tmp, ignore_errors=True)

    def down(self) -> None:
        """`xmc down`, then make sure no process of this run is left (kill and complain if one is)."""
        if not self._up:
            return
        self._up = False
        proc = self.xmc("down")
        left = run_dir_processes(self.run_dir)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        if proc.returncode != 0 or left:
            raise RuntimeError(f"xmc down -> {proc.returncode} ({proc.stderr.strip()[-300:]}); leftover pids {left}")

    def status(self) -> dict:
        """The live status document (what `xmc status --json` prints), over the supervisor's CLI channel."""
        info = json.loads((self.run_dir / "supervisor.json").read_text())
        reply = call(self.ctx, info["cli"], Control(cmd="status"), 5.0, src="bench")
        if not isinstance(reply, CmdAck) or not reply.ok:
            raise RuntimeError(f"supervisor status: {reply}")
        return json.loads(reply.data["json"])

    def cli_status(self) -> dict:
        """`xmc status --json`, the real CLI."""
        proc = self.xmc("status", "--json", timeout=30)
        if proc.returncode != 0:
            raise RuntimeError(f"xmc status failed: {proc.stderr.strip()[-300:]}")
        return json.loads(proc.stdout)

    def sub(self, actor: str, prefix: str) -> zmq.Socket:
        s = self.ctx.socket(zmq.SUB)
        s.setsockopt(zmq.RCVHWM, 0)
        s.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        s.connect(self.eps.pub(actor))
        return s

    def stand_in(self, actor: str) -> zmq.Socket:
        """Bind the (disabled) actor's PUB endpoint: an XPUB that sees its subscribers, never drops."""
        s = self.ctx.socket(zmq.XPUB)
        s.setsockopt(zmq.SNDHWM, 0)
        s.setsockopt(zmq.XPUB_VERBOSE, 1)
        s.bind(self.eps.pub(actor))
        return s


def _recv_env(sock: zmq.Socket, timeout_s: float) -> tuple[str, Envelope]:
    if not sock.poll(int(timeout_s * 1000)):
        raise TimeoutError(f"no message within {timeout_s:.1f}s")
    return _CODEC.decode_frame(sock.recv())


def _wait_subscription(xpub: zmq.Socket, prefix: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if xpub.poll(100) and xpub.recv() == b"\x01" + prefix.encode():
            return
    raise TimeoutError(f"nobody subscribed to {prefix!r} within {timeout_s}s")


def _disable(*actors: str) -> str:
    return "".join(f"[actors.{a}]\nenabled = false\n" for a in actors)


# --- ingest replay -------------------------------------------------------------------------------


def bench_ingest_replay(n: int = 50_000) -> dict:
    """`ingest_replay_per_s`: quotes/s one real ingest process normalises and publishes replaying the
    recorded ES mbp-1 file as fast as possible (looped), counted by a subscriber over `n` quotes
    after n/10 of warm-up; baseline: raw pyzmq PUB->SUB of same-size frames across two processes."""
    body = f"""include = ["{CATALOGUE}"]
[venues.CME]
kind = "replay"
replay = {{ path = "{MBP1_FILE}", format = "dbn", pace = "fast", loop = true, symbols = {{ ESU4 = "ES" }}, wait_subscribers = 1 }}
[instruments.ES]
symbol = "ESU4"
[actors.ingest_cme]
kind = "ingest"
venue = "CME"
"""
    warm = n // 10
    with SystemRun("replay", body) as run:
        sub = run.sub("ingest_cme", "md.CME.")
        sub.setsockopt(zmq.RCVTIMEO, 20_000)
        for _ in range(warm):
            before = sub.recv()
        t0 = time.perf_counter()
        for _ in range(n):
            frame = sub.recv()
        elapsed = time.perf_counter() - t0
    # one topic (md.CME.ESU4), one sequence: what the subscriber did not get, the PUB dropped
    dropped = _CODEC.decode_frame(frame)[1].seq - _CODEC.decode_frame(before)[1].seq - n
    rate = n / elapsed
    baseline = raw_pubsub_rate(len(frame), n)
    return {"ingest_replay_per_s": metric(rate, "per_s", baseline, n=n, frame_bytes=len(frame), dropped=dropped)}


# --- journal ---------------------------------------------------------------------------------------


def _journal_traffic(n: int) -> list[tuple[str, Envelope]]:
    """`n` bus messages in roughly the demo's mix: mostly quotes, some FX, heartbeats, and the
    executor's orders and execution stream (a fill, a trade event, positions: `StreamEvent`s
    as published live on ``exec.stream``, seq 1, 2, ...)."""
    rng = np.random.default_rng(11)
    mids = 556.0 + np.cumsum(rng.normal(0, 0.02, n))
    seqs: dict[tuple[str, str], int] = {}
    stream_seq = 0
    out = []
    for i in range(n):
        now = 10**12 + i * 1000
        k = i % 20
        tid = f"T{i // 20:06d}"
        body: Message
        if k < 13:
            src, topic = "ingest_shfe", "md.SHFE.au2612"
            body = Quote(venue="SHFE", symbol="au2612", bid=float(mids[i]), ask=float(mids[i]) + 0.04, bid_size=12.0,
                         ask_size=9.0, exch_ts_ns=now, recv_ns=now, venue_seq=i)
        elif k == 14:
            src, topic = "ingest_fx", "md.FX.USDCNH"
            body = FxRate(pair="USDCNH", bid=7.2001, ask=7.2003, exch_ts_ns=now, recv_ns=now)
        elif k == 15:
            src, topic = "trigger", "hb.trigger"
            body = Heartbeat(actor="trigger", pid=123, state="running", msgs_in=i, msgs_out=i // 20, decode_errors=0,
                             gaps=0, dups=0, detail={"quotes": float(i), "conflated": 3.0, "eval_age_us": 80.0}, ts_ns=now)
        elif k == 16:
            src, topic = "trigger", "sig.au_gc"
            body = Signal(signal_id=f"s{i}", pair="au_gc", direction=Side.BUY, closing=False,
                          legs=(SignalLeg(instrument="au", side=Side.BUY, qty=3, limit_px=556.0),
                                SignalLeg(instrument="GC", side=Side.SELL, qty=1, limit_px=2400.0)),
                          spread=1.2, zscore=2.1, expiry_ns=now + 5 * 10**8, tick_recv_ns=now, signal_ns=now)
        elif k == 17:
            src, topic = "executor", "exec.order.SHFE"
            body = OrderRequest(cl_ord_id=f"{tid}.a1", trade_id=tid, account="cn-a", venue="SHFE", instrument="au",
                                side=Side.BUY, qty=3, price=556.04, purpose=OrderPurpose.OPEN, tick_recv_ns=now,
                                sent_ns=now)
        else:  # k in (13, 18, 19): the execution stream
            src, topic = "executor", topics.EXEC_STREAM
            stream_seq += 1
            inner: OrderEvent | PairTradeEvent | Positions
            if k == 18:
                inner = OrderEvent(cl_ord_id=f"{tid}.a1", exec_type=ExecType.FILL, venue="SHFE", instrument="au",
                                   side=Side.BUY, order_qty=3, cum_qty=3, leaves_qty=0, last_qty=3, last_px=556.04,
                                   avg_px=556.04, exec_id=f"{tid}.a1#3", recv_ns=now, account="cn")
            elif k == 19:
                inner = PairTradeEvent(trade_id=tid, pair="au_gc", state=TradeState.COMPLETED,
                                       prev_state=TradeState.WORKING, transition="leg_filled", direction=Side.BUY,
                                       signal_id=f"s{i - 3}", tick_recv_ns=now, ts_ns=now,
                                       legs=(LegView(instrument="au", side=Side.BUY, target_qty=3, filled_qty=3,
                                                     avg_price=556.04, net_qty=3),
                                             LegView(instrument="GC", side=Side.SELL, target_qty=1, filled_qty=1,
                                                     avg_price=2400.0, net_qty=-1)))
            else:
                inner = Positions(pairs=(PairUnits(pair="au_gc", units=1), PairUnits(pair="hsi_mhi", units=0)),
                                  instruments=(InstrumentPosition(account="cn", instrument="au", qty=3),
                                               InstrumentPosition(account="hk", instrument="GC", qty=-1)))
            body = StreamEvent(seq=stream_seq, body=inner)
        seq = seqs[(src, topic)] = seqs.get((src, topic), 0) + 1
        out.append((topic, Envelope(src=src, epoch=1, seq=seq, ts_ns=now, body=body)))
    return out


def bench_journal(n: int = 60_000) -> dict:
    """`journal_write_per_s`: rows/s into the audit store as the journal actor writes them (`row_of` per
    message; a stream event through the journal's own `JournalActor._on_stream`, which files it under
    `bus.stream.filed_topic` with the stream's seq; `AuditWriter` flushed every FLUSH_ROWS rows);
    baseline: the same rows, precomputed, with raw sqlite `executemany` in the same batches into the
    same schema."""
    traffic = _journal_traffic(n)
    with tempfile.TemporaryDirectory(prefix="xbjn-", dir="/tmp") as tmp:
        store = AuditWriter(Path(tmp) / "journal.sqlite")
        journal = SimpleNamespace(store=store)  # what JournalActor._on_stream uses of the actor
        on_stream = JournalActor._on_stream
        t0 = time.perf_counter()
        for topic, env in traffic:
            body = env.body
            if isinstance(body, StreamEvent):
                on_stream(journal, env.src, body, env.ts_ns)  # type: ignore[arg-type]
            else:
                store.add(row_of(topic, env))
            if store.pending >= FLUSH_ROWS:
                store.flush()
        store.flush()
        value = n / (time.perf_counter() - t0)
        written = store.written
        store.close()

        rows = []
        for topic, env in traffic:
            body = env.body
            if isinstance(body, StreamEvent):
                rows.append(row_of(filed_topic(body), Envelope(src=env.src, epoch=STREAM_EPOCH, seq=body.seq,
                                                               ts_ns=env.ts_ns, body=body.body)))
            else:
                rows.append(row_of(topic, env))
        db = sqlite3.connect(Path(tmp) / "raw.sqlite", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        t0 = time.perf_counter()
        for i in range(0, n, FLUSH_ROWS):
            db.execute("BEGIN")
            db.executemany(INSERT_EVENT, rows[i:i + FLUSH_ROWS])
            db.execute("COMMIT")
        baseline = n / (time.perf_counter() - t0)
        db.close()
    if written != n:
        raise RuntimeError(f"journal wrote {written} of {n} rows")
    return {"journal_write_per_s": metric(value, "per_s", baseline, n=n, batch=FLUSH_ROWS)}


# --- demo: tick-to-trade and signal-to-orders ------------------------------------------------------


def _quote_rate(doc: dict) -> float | None:
    """Quotes/s into the trigger: the sum of every ingest actor's per-instrument `<symbol>/s`."""
    ingest = [a for a in doc["actors"] if a["kind"] == "ingest"]
    rates = [v for a in ingest for k, v in a["detail"].items() if k.endswith("/s")]
    return sum(rates) if ingest and rates else None


def _demo_run(name: str, seconds: float, extra: str = "") -> tuple[list[float], float, dict]:
    """Run the demo (with the config lines `extra`) for `seconds`: (tick-to-trade us, quote rate, executor detail)."""
    body = f'include = ["{DEMO}"]\n{extra}'
    with SystemRun(f"demo{name[:2]}", body) as run:
        rates: list[float] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))  # the measurement window, sampled every second
            r = _quote_rate(run.status())
            if r:
                rates.append(r)
        doc = run.cli_status()
        executor = next(a for a in doc["actors"] if a["kind"] == "executor")["detail"]
        run.down()
        reader = AuditReader(run.run_dir / "journal.sqlite")
        t2t = tick_to_trade_us(reader)
        stages = tick_stages_us(reader)
        reader.close()
    if not t2t:
        raise RuntimeError(f"demo ({name}) made no trade in {seconds:.0f}s")
    executor = dict(executor, stages=stages)  # type: ignore[arg-type]
    return t2t, statistics.median(rates) if rates else 0.0, executor


def faster_quotes(factor: float) -> str:
    """Config lines that make every simulated instrument of the demo quote `factor` times as often."""
    cfg = load_config(DEMO)
    return "".join(f"[instruments.{k}.sim]\ninterval_ms = {i.sim.interval_ms / factor:g}\n"
                   for k, i in cfg.instruments.items() if i.sim is not None)


def configured_quote_rate(factor: float = 1.0) -> float:
    """Quotes/s the demo's simulated instruments send when each quotes `factor` times as often."""
    cfg = load_config(DEMO)
    return sum(1000.0 / i.sim.interval_ms for i in cfg.instruments.values() if i.sim is not None) * factor


QUOTE_FACTOR = 10  # the "10x the demo's quote rate"
SPARSE_SAMPLES = 60  # messages through the whole sparse chain (`sparse_chain_us`)


def bench_demo(seconds: float = 25.0, chain_seconds: float = 8.0) -> dict:
    """`tick_to_trade_*` and `executor_signal_to_orders_us` on the demo as configured (contract names),
    with cpu_profile "latency" (`*_latency_profile_*`) and with every instrument quoting
    QUOTE_FACTOR times as often (`*_10x_*`).

    tick-to-trade (ingest receive -> both entry orders sent) comes from the journal
    (`actors.tradebook.tick_to_trade_us`); the baseline is the raw pyzmq 3-process chain
    (`bench.bus.run_chain("raw", 2, ...)`) at the quote rate the demo's instruments are configured
    to send (`rate_per_s`; the rate measured into the trigger, the median of per-second samples of
    the ingest actors' `<symbol>/s`, is `measured_rate_per_s`), its stages under the demo's
    `run.realtime_priority` (stated in `realtime_priority`), as the system's tick path runs. Its
    messages are sent in two halves, right before and right after the run, so a noisy stretch of
    a shared host weighs on the baseline as on the run. Extras `sparse_chain_us` / `ratio_sparse` (context, not the baseline):
    the same chain whose relay passes on one message in `sparse_every` (the run's quotes per
    trade), so its last hop is as sparse and as cold as the trigger -> executor hop; 60 messages
    reach its sink. signal-to-orders is the executor's status detail
    `signal_to_orders_p50_us` read with `xmc status --json` before `xmc down`; no baseline.
    `tick_to_first_order_p50_us` (the first leg out; baseline the raw chain's p50) and
    `stage_<name>_p50_us` (p99 in `p99_us`): where each trade's time went, tick -> trigger wake
    -> signal published -> executor wake -> first order -> last order
    (`actors.tradebook.tick_stages_us`), for the demo as configured and at 10x (`_10x` before `_p50`).
    """
    rt = load_config(DEMO).run.realtime_priority
    # the runs with a baseline of their own (the latency profile runs at the default's rate: it shares its baseline)
    rates = {"": configured_quote_rate(), "_10x": configured_quote_rate(QUOTE_FACTOR)}
    runs: dict[str, tuple[list[float], float, dict]] = {}
    chains: dict[str, list[int]] = {}
    for tag, profile, extra in (("", "none", ""), ("_latency_profile", "latency", '[run]\ncpu_profile = "latency"\n'),
                                ("_10x", "10x", faster_quotes(QUOTE_FACTOR))):
        if tag not in rates:
            runs[tag] = _demo_run(profile, seconds, extra)
            continue
        # the baseline's two halves bracket the run, so a noisy minute of the host weighs on both
        half = max(150, int(rates[tag] * chain_seconds / 2))
        before = run_chain("raw", 2, half, rates[tag], realtime=rt)
        runs[tag] = _demo_run(profile, seconds, extra)
        chains[tag] = before + run_chain("raw", 2, half, rates[tag], realtime=rt)
    # context, not the contract's baseline: the chain with the trigger's pattern (one message on
    # for every `every` in, about as often as the run's trades)
    sparse: dict[str, tuple[int, dict[str, float]]] = {}
    for tag, rate in rates.items():
        every = max(1, round(rate * seconds / max(1, len(runs[tag][0]))))
        sparse[tag] = every, percentiles(run_chain("raw", 2, every * SPARSE_SAMPLES, rate, realtime=rt,
                                                   forward_every=every))
    out: dict = {}
    for tag, (t2t, measured, executor) in runs.items():
        base = tag if tag in rates else ""
        rate, chain, (every, thin) = rates[base], percentiles(chains[base]), sparse[base]
        p = percentiles(t2t)
        for q in ("p50", "p99", "p999"):
            out[f"tick_to_trade{tag}_{q}_us"] = metric(
                p[q], "us", chain[q] / 1e3, rate_per_s=round(rate, 1), measured_rate_per_s=round(measured, 1),
                trades=len(t2t), realtime_priority=rt,
                sparse_chain_us=round(thin[q] / 1e3, 1), ratio_sparse=round(p[q] / (thin[q] / 1e3), 3),
                sparse_every=every)
        s2o = executor.get("signal_to_orders_p50_us")
        if s2o is not None:
            out[f"executor_signal_to_orders{tag}_us"] = metric(s2o, "us", None, signals=executor.get("signals", 0.0),
                                                               armed_sent=executor.get("armed_sent", 0.0))
        stages: list[dict] = executor.get("stages", [])  # type: ignore[assignment]
        if stages and tag in rates:  # where the tick's time goes, stage by stage
            first = percentiles([r["tick_to_first_order"] for r in stages])
            out[f"tick_to_first_order{tag}_p50_us"] = metric(first["p50"], "us", chain["p50"] / 1e3,
                                                             p99_us=round(first["p99"], 1), trades=len(stages))
            for name in STAGES:
                q = percentiles([r[name] for r in stages])
                out[f"stage_{name}{tag}_p50_us"] = metric(q["p50"], "us", None, p99_us=round(q["p99"], 1),
                                                          trades=len(stages))
    return out


# --- trigger burst -----------------------------------------------------------------------------------

_BURST_LEGS = (("SHFE", "au2612", 556.0, 0.02), ("COMEX", "GCZ6", 2400.0, 0.1), ("HKEX", "HSIZ6", 25000.0, 1.0),
               ("HKEX", "MHIZ6", 25000.0, 1.0))
_U64 = struct.Struct(">Q")
_STAMP = 2**62  # encodes as msgpack uint64 (0xcf + 8 bytes), like every monotonic ns here (> 2**32)


def _burst_frames(n: int, src: str, epoch: int) -> list[tuple[bytearray, int, int]]:
    """`n` encoded quote frames of the demo legs (random walks) with the offsets of the envelope's
    `ts_ns` and the quote's `recv_ns`, so the sender stamps both as it sends, the way ingest does."""
    steps = np.random.default_rng(5).integers(-1, 2, n).tolist()
    ticks = [0] * len(_BURST_LEGS)
    seqs: dict[str, int] = {}
    stamp = b"\xcf" + _U64.pack(_STAMP)
    out = []
    for i in range(n):
        j = i % len(_BURST_LEGS)
        venue, symbol, base, tick = _BURST_LEGS[j]
        ticks[j] += steps[i]
        bid = base + ticks[j] * tick
        topic = f"md.{venue}.{symbol}"
        seq = seqs[topic] = seqs.get(topic, 0) + 1
        q = Quote(venue=venue, symbol=symbol, bid=bid, ask=bid + tick, bid_size=10.0, ask_size=12.0,
                  exch_ts_ns=time.time_ns(), recv_ns=_STAMP, venue_seq=i)
        frame = _CODEC.encode_frame(topic, Envelope(src=src, epoch=epoch, seq=seq, ts_ns=_STAMP, body=q))
        ts_at = frame.index(stamp) + 1
        out.append((frame, ts_at, frame.index(stamp, ts_at) + 1))
    return out


def bench_trigger_burst(n: int = 200_000) -> dict:
    """`trigger_burst_per_s`: quotes/s the real trigger process consumes when `n` quotes arrive at once.

    The config keeps only the trigger; the bench stands in for `ingest_shfe` on its PUB endpoint
    (an XPUB that waits for the trigger's subscription and never drops), sends FX rates, then blasts
    `n` pre-encoded quotes of the four demo legs, stamping each one's `recv_ns` as it sends it.
    The trigger's heartbeats (every 50 ms, on its PUB) carry its `quotes`, `conflated` and
    `eval_age_us`; the rate is the slope of `quotes` between the first and last heartbeat inside
    the burst. `conflated`: quotes of the burst replaced before they were evaluated;
    `eval_age_max_us`: the largest age of the newest evaluated quote seen (the backlog's lag).
    Baseline: a raw pyzmq SUB receiving as many same-size frames (`bench.bus.raw_pubsub_rate`).
    """
    body = (f'include = ["{DEMO}"]\n[run]\nheartbeat_s = 0.05\n'
            + _disable("simex", "ingest_shfe", "ingest_comex", "ingest_hkex", "ingest_fx", "executor", "marginwatch",
                       "journal"))
    with SystemRun("burst", body) as run:
        hb = run.sub("trigger", "hb.trigger")
        xpub = run.stand_in("ingest_shfe")
        _wait_subscription(xpub, "md.", 20.0)
        pub = Publisher(xpub, "ingest_shfe", time.time_ns())
        frames = _burst_frames(n, pub.src, pub.epoch)

        def heartbeat() -> Heartbeat:
            while True:
                _, env = _recv_env(hb, 10.0)
                if isinstance(env.body, Heartbeat):
                    return env.body

        now = time.monotonic_ns()
        for pair, px in (("USDCNH", 7.2), ("USDCNY", 7.2), ("USDHKD", 7.8)):
            pub.publish(f"md.FX.{pair}", FxRate(pair=pair, bid=px, ask=px + 0.0002, exch_ts_ns=time.time_ns(), recv_ns=now))
        q0 = heartbeat().detail["quotes"]
        first = wait_for(lambda: (h := heartbeat()).detail["quotes"] >= q0 + 3 and h, 10.0, "FX rates in the trigger")
        q0, c0 = first.detail["quotes"], first.detail["conflated"]
        send, pack, clock = xpub.send, _U64.pack_into, time.monotonic_ns
        t_send = clock()
        for frame, ts_at, recv_at in frames:
            now = clock()
            pack(frame, ts_at, now)
            pack(frame, recv_at, now)
            send(frame)
        offered = n / ((clock() - t_send) / 1e9)
        samples: list[Heartbeat] = []
        while not samples or samples[-1].detail["quotes"] < q0 + n:
            samples.append(heartbeat())
            if samples[-1].ts_ns - t_send > 60e9:
                raise TimeoutError(f"trigger consumed {samples[-1].detail['quotes'] - q0:.0f} of {n} quotes in 60 s")
    inside = [h for h in samples if q0 < h.detail["quotes"] < q0 + n]
    if len(inside) >= 2:
        a, b = inside[0], inside[-1]
        rate = (b.detail["quotes"] - a.detail["quotes"]) / ((b.ts_ns - a.ts_ns) / 1e9)
    else:
        rate = n / ((samples[-1].ts_ns - t_send) / 1e9)
    end = samples[-1]
    baseline = raw_pubsub_rate(len(frames[0][0]), n)
    return {"trigger_burst_per_s": metric(
        rate, "per_s", baseline, n=n, offered_per_s=round(offered), conflated=end.detail["conflated"] - c0,
        evaluations=end.detail["evaluations"] - first.detail["evaluations"],
        eval_age_max_us=max(h.detail["eval_age_us"] for h in samples), gaps=end.gaps)}


# --- risk state ------------------------------------------------------------------------------------------


def _log_wall_ns(ts: str) -> int:
    """A structlog ISO-8601 UTC `ts` as integer ns since the epoch (microsecond resolution)."""
    t = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return (t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1) * 1000


def _mono_offset_ns() -> int:
    """time.time_ns() - time.monotonic_ns() in this process (the clocks of every process on this host)."""
    return int(statistics.median(time.time_ns() - time.monotonic_ns() for _ in range(9)))


def _detail(doc: dict, actor: str) -> dict:
    return next(a for a in doc["actors"] if a["name"] == actor)["detail"]


def _risk_logged(log: Path, want: RiskLevel, since_wall_ns: int) -> dict | None:
    """The executor's first `risk_level` log record for `want` written at or after `since_wall_ns`."""
    data = log.read_bytes()
    for line in data[: data.rfind(b"\n") + 1].splitlines():
        if b'"risk_level"' not in line:
            continue
        rec = json.loads(line)
        if rec.get("event") == "risk_level" and rec.get("state") == want.value and \
                _log_wall_ns(rec["ts"]) >= since_wall_ns - 1000:
            return rec
    return None


class StreamStandIn:
    """A minimal executor on a disabled executor actor's endpoints: its execution stream.

    On the actor's PUB endpoint, an XPUB (`SystemRun.stand_in`) publishing `StreamEvent`s
    seq 1, 2, ... on ``exec.stream``; on its command endpoint, a ROUTER (`CommandServer`) that
    answers `StreamSince(N)` with a `StreamBatch` of the events after N, as the executor does
    (`Actor.follow_stream` asks at start and whenever it is behind). `serve` answers what is
    waiting; call it while waiting for anything else.
    """

    def __init__(self, run: SystemRun, actor: str) -> None:
        self.xpub = run.stand_in(actor)
        self.pub = Publisher(self.xpub, actor, time.time_ns())
        self.sock = run.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.sock.bind(run.eps.bindable(run.eps.cmd(actor)))
        self.server = CommandServer(self.sock, actor, self.pub.epoch)
        self.events: list[StreamEvent] = []
        self.answered = 0  # StreamSince requests answered

    def emit(self, body: OrderEvent | PairTradeEvent | Positions) -> StreamEvent:
        ev = StreamEvent(seq=len(self.events) + 1, body=body)
        self.events.append(ev)
        self.pub.publish(topics.EXEC_STREAM, ev)
        return ev

    def serve(self) -> int:
        """Answer every request waiting on the command ROUTER; how many were answered."""
        n = 0
        while True:
            try:
                peer, env = self.server.recv()
            except zmq.Again:
                self.answered += n
                return n
            except FrameError:
                continue
            req = env.body
            if isinstance(req, StreamSince):
                start = max(0, req.since)
                batch = tuple(self.events[start:start + min(req.limit or STREAM_BATCH, STREAM_BATCH)])
                self.server.send(peer, env.seq, StreamBatch(events=batch, head=len(self.events)))
                n += 1
            else:
                self.server.send(peer, env.seq, CmdAck(ok=False, reason=f"COMMAND_UNKNOWN: kind={type(req).__name__}"))


def bench_risk_state(crossings: int = 20) -> dict:
    """`risk_state_latency_us`: margin threshold crossing -> risk state received by the executor, p50.

    Method: a run of simex, ingests, marginwatch and executor whose accounts are small and whose
    `warn_utilisation` is 0.3, so one GC lot puts the margin at ~0.54 (WARN) and flat is NORMAL.
    The bench stands in for a second, disabled executor (`fills`) on its PUB and command endpoints
    (`StreamStandIn`): it publishes FILLs (buy 1 GC, then sell it, alternately; account hk) as
    events of its execution stream (`StreamEvent` seq 1, 2, ... on ``exec.stream``) and answers
    marginwatch's "since N" (`StreamSince`), and marginwatch books each fill. Each fill makes
    marginwatch cross a threshold: it publishes `risk.state` at once, stamped `ts_ns` (monotonic) at
    the evaluation that crossed. The bench subscribes to `risk.state` to get that stamp, and the real
    executor logs `risk_level` when it receives it; the log's wall-clock `ts` is turned into
    monotonic with this process's (wall - monotonic) offset. latency = log time - `RiskState.ts_ns`
    (includes the rest of marginwatch's evaluation, its publish, the hop, the executor's decode and
    its log call); `from_publish_p50_us` starts instead at the frame's envelope `ts_ns` (sent).
    Baseline: the raw pyzmq one-hop chain at a low rate (50 msg/s: each hop wakes an idle process,
    as a risk change does).
    """
    body = (f'include = ["{DEMO}"]\n[accounts.cn]\nbalance = 10000.0\n[accounts.hk]\nbalance = 300000.0\n'
            f'[risk]\nwarn_utilisation = 0.3\n' + _disable("trigger", "journal")
            + '[actors.fills]\nkind = "executor"\nenabled = false\n')
    samples: list[float] = []
    hops: list[float] = []  # from marginwatch's publish (envelope ts_ns) instead of its evaluation
    with SystemRun("risk", body) as run:
        risk = run.sub("marginwatch", "risk.state")
        fills = StreamStandIn(run, "fills")
        _wait_subscription(fills.xpub, topics.EXEC_STREAM, 20.0)
        wait_for(fills.serve, 20.0, "marginwatch asking the fills stream since 0")
        poller = zmq.Poller()
        poller.register(risk, zmq.POLLIN)
        poller.register(fills.sock, zmq.POLLIN)

        def next_state(want: RiskLevel, timeout: float = 10.0) -> tuple[RiskState, int]:
            """The next `risk.state` in state `want` and when marginwatch published it; serves the stream meanwhile."""
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no risk.state {want.value} within {timeout:.1f}s")
                ready = dict(poller.poll(int(left * 1000) + 1))
                if fills.sock in ready:
                    fills.serve()
                if risk in ready:
                    _, env = _CODEC.decode_frame(risk.recv())
                    if isinstance(env.body, RiskState) and env.body.state is want:
                        return env.body, env.ts_ns

        log = run.run_dir / "logs" / "executor.jsonl"

        def logged(want: RiskLevel, since_wall_ns: int) -> dict | None:
            fills.serve()
            return _risk_logged(log, want, since_wall_ns)

        def executor_normal() -> bool:
            fills.serve()
            return _detail(run.status(), "executor").get("risk_level") == 0.0

        next_state(RiskLevel.NORMAL, 30.0)  # FX rates are in: margin converts to the base currency
        wait_for(executor_normal, 10.0, "executor at NORMAL")
        for k in range(crossings):
            buy = k % 2 == 0
            want = RiskLevel.WARN if buy else RiskLevel.NORMAL
            sent_wall = time.time_ns()
            fills.emit(OrderEvent(
                cl_ord_id=f"B{k}.b1", exec_type=ExecType.FILL, venue="COMEX", instrument="GC",
                side=Side.BUY if buy else Side.SELL, order_qty=1, cum_qty=1, leaves_qty=0, last_qty=1, last_px=2400.0,
                avg_px=2400.0, exec_id=f"B{k}.b1#1", recv_ns=time.monotonic_ns(), account="hk"))
            state, published = next_state(want)
            rec = wait_for(lambda w=want, t=sent_wall: logged(w, t), 10.0, f"executor risk_level {want.value}")
            received = _log_wall_ns(rec["ts"]) - _mono_offset_ns()
            samples.append((received - state.ts_ns) / 1e3)
            hops.append((received - published) / 1e3)
        streamed, answered = len(fills.events), fills.answered
    base = percentiles(run_chain("raw", 1, 200, 50.0))
    p = percentiles(samples)
    return {"risk_state_latency_us": metric(p["p50"], "us", base["p50"] / 1e3, p99_us=p["p99"],
                                            from_publish_p50_us=percentiles(hops)["p50"], crossings=len(samples),
                                            streamed=streamed, since_answered=answered, baseline_rate_per_s=50.0)}
