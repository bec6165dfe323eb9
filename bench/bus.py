"""Bus benchmarks: one PUB/SUB hop and a 3-process chain on ipc, xmc bus vs raw pyzmq.

Each stage is its own process. The source stamps `time.monotonic_ns()` (shared
by processes on one host) and the sink measures the one-way latency. Stages
use XPUB so each waits for its downstream subscription before the source
starts: no message is sent into a slow-joiner hole. Both variants run at the
same paced message rate, because per-hop cost depends on the rate here.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import struct
import tempfile
import time

import zmq

from bench.stats import metric, percentiles
from bus.messages import Quote
from bus.pubsub import Inbound, Publisher

_TS = struct.Struct("<q")


def _xpub(ctx: zmq.Context, ep: str) -> zmq.Socket:
    s = ctx.socket(zmq.XPUB)
    s.setsockopt(zmq.SNDHWM, 100_000)
    s.bind(ep)
    return s


def _sub(ctx: zmq.Context, ep: str, prefix: bytes = b"") -> zmq.Socket:
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.RCVHWM, 100_000)
    s.setsockopt(zmq.SUBSCRIBE, prefix)
    s.connect(ep)
    return s


def _quote(i: int, now: int) -> Quote:
    return Quote(venue="SHFE", symbol="au", bid=556.0 + (i % 7) * 0.02, ask=556.04, bid_size=10, ask_size=12,
                 exch_ts_ns=now, recv_ns=now, venue_seq=i)


def _source(mode: str, ep: str, n: int, rate: float) -> None:
    ctx = zmq.Context()
    pub = _xpub(ctx, ep)
    pub.recv()  # downstream subscribed: the chain is ready
    gap = 1e9 / rate
    t0 = time.monotonic_ns()
    publisher = Publisher(pub, "src", t0) if mode == "xmc" else None
    for i in range(n):
        due = t0 + int(i * gap)
        while True:
            left = due - time.monotonic_ns()
            if left <= 0:
                break
            time.sleep(left / 1e9 if left > 200_000 else 0)
        now = time.monotonic_ns()
        if publisher is not None:
            publisher.publish("md.SHFE.au", _quote(i, now))
        else:
            pub.send(b"md.SHFE.au|" + _TS.pack(now) + b"x" * 80)
    pub.close(linger=2000)
    ctx.term()


def _relay(mode: str, up: str, down: str, n: int) -> None:
    ctx = zmq.Context()
    pub = _xpub(ctx, down)
    pub.recv()
    sub = _sub(ctx, up, b"md.")
    if mode == "xmc":
        inbound = Inbound("relay", lambda *a: None)
        publisher = Publisher(pub, "relay", time.monotonic_ns())
        for _ in range(n):
            decoded = inbound.decode(sub.recv())
            assert decoded is not None
            topic, env = decoded
            inbound.seq.check(topic, env)
            q = env.body
            publisher.publish("sig.au_gc", _quote(q.venue_seq, q.recv_ns))  # type: ignore[union-attr]
    else:
        for _ in range(n):
            frame = sub.recv()
            pub.send(b"sig.au_gc|" + frame[frame.find(b"|") + 1:])
    pub.close(linger=2000)
    sub.close(0)
    ctx.term()


def _sink(mode: str, up: str, n: int, out: "mp.Queue[list[int]]") -> None:
    ctx = zmq.Context()
    sub = _sub(ctx, up)
    lat = []
    if mode == "xmc":
        inbound = Inbound("sink", lambda *a: None)
        for _ in range(n):
            decoded = inbound.decode(sub.recv())
            now = time.monotonic_ns()
            assert decoded is not None
            topic, env = decoded
            inbound.seq.check(topic, env)
            lat.append(now - env.body.recv_ns)  # type: ignore[union-attr]
    else:
        for _ in range(n):
            frame = sub.recv()
            now = time.monotonic_ns()
            cut = frame.find(b"|") + 1
            lat.append(now - _TS.unpack_from(frame, cut)[0])
    out.put(lat)
    sub.close(0)
    ctx.term()


def run_chain(mode: str, hops: int, n: int, rate: float) -> list[int]:
    """Latencies (ns) of `n` messages through `hops` PUB/SUB hops (1 or 2 relays + sink)."""
    mpctx = mp.get_context("fork")
    tmp = tempfile.mkdtemp(prefix="xmcb-", dir="/tmp")
    eps = [f"ipc://{tmp}/s{i}" for i in range(hops)]
    out: "mp.Queue[list[int]]" = mpctx.Queue()
    procs = [mpctx.Process(target=_sink, args=(mode, eps[-1], n, out))]
    for i in range(hops - 1, 0, -1):
        procs.append(mpctx.Process(target=_relay, args=(mode, eps[i - 1], eps[i], n)))
    procs.append(mpctx.Process(target=_source, args=(mode, eps[0], n, rate)))
    for p in procs:
        p.start()
    lat = out.get(timeout=120)
    for p in procs:
        p.join(30)
    for f in os.listdir(tmp):
        os.unlink(os.path.join(tmp, f))
    os.rmdir(tmp)
    return lat[n // 10:]  # drop warm-up


def bench_bus(n: int = 6000, rate: float = 2000.0, reps: int = 3) -> dict:
    """bus_hop_* (1 hop) and chain3_* (3 processes, 2 hops) p50/p99/p99.9, xmc vs raw pyzmq, medians of reps."""
    out: dict = {}
    for name, hops in (("bus_hop", 1), ("chain3", 2)):
        runs: dict[str, list[dict[str, float]]] = {"xmc": [], "raw": []}
        for _ in range(reps):
            for mode in ("raw", "xmc"):
                runs[mode].append(percentiles(run_chain(mode, hops, n, rate)))
        med = {m: {k: sorted(r[k] for r in runs[m])[len(runs[m]) // 2] for k in runs[m][0]} for m in runs}
        for q in ("p50", "p99", "p999"):
            out[f"{name}_{q}_us"] = metric(med["xmc"][q] / 1e3, "us", med["raw"][q] / 1e3, rate_per_s=rate)
    return out


def _blast(ep: str, frame: bytes, n: int) -> None:
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.SNDHWM, 0)  # unlimited: the subscriber's pace is measured, nothing is dropped
    pub.bind(ep)
    pub.recv()
    for _ in range(n):
        pub.send(frame)
    pub.close(linger=-1)
    ctx.term()


def raw_pubsub_rate(frame_size: int, n: int) -> float:
    """Frames/s a raw pyzmq SUB receives from a PUB in another process blasting `n` same-size frames on ipc.

    The reference for throughput figures (replay ingest, trigger burst): the rate is
    counted by the subscriber from its first to its last frame.
    """
    mpctx = mp.get_context("fork")
    tmp = tempfile.mkdtemp(prefix="xmcb-", dir="/tmp")
    ep = f"ipc://{tmp}/r"
    frame = b"md.X.Y|" + b"x" * max(0, frame_size - 7)
    proc = mpctx.Process(target=_blast, args=(ep, frame, n))
    proc.start()
    ctx = zmq.Context()
    sub = _sub(ctx, ep)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.RCVTIMEO, 30_000)
    try:
        sub.recv()
        t0 = time.perf_counter()
        for _ in range(n - 1):
            sub.recv()
        elapsed = time.perf_counter() - t0
    finally:
        ctx.destroy(linger=0)
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join()
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)
    return (n - 1) / elapsed
