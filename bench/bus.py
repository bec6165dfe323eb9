"""Bus benchmarks: one PUB/SUB hop and a 3-process chain, xmc bus vs raw pyzmq on ipc, and
the xmc bus over tcp with CURVE vs plaintext tcp.

Each stage is its own process. The source stamps `time.monotonic_ns()` (shared
by processes on one host) and the sink measures the one-way latency. Stages
use XPUB so each waits for its downstream subscription before the source
starts: no message is sent into a slow-joiner hole. Both variants of a metric
run at the same paced message rate, because per-hop cost depends on the rate here.

Metrics (value / baseline, medians of reps, first 10% of each run dropped as warm-up):

- `bus_hop_{p50,p99,p999}_us`: source -> sink, one PUB/SUB hop on ipc; xmc bus
  (Publisher encode + Inbound decode and sequence check) vs raw pyzmq frames.
- `chain3_{p50,p99,p999}_us`: source -> relay -> sink, 3 processes, 2 hops on ipc;
  xmc bus vs raw pyzmq.
- `bus_hop_tcp_curve_{p50,p99}_us`, `chain3_tcp_curve_{p50,p99}_us`: the same hop and
  chain with the xmc bus in both variants, over tcp on 127.0.0.1 with CURVE (value)
  vs plaintext tcp (baseline): the per-message cost of encryption and authentication
  (libzmq's crypto_box on every frame, each hop encrypting and decrypting). Every
  binder (source, relay) is a CURVE server with a ZAP domain and runs a
  ThreadAuthenticator allowing the other processes' public keys (key pairs are made
  with zmq.auth.create_certificates in a temp dir per run); every connecter holds
  its own key pair and the server's public key. The CURVE handshake and ZAP check
  happen before timing starts: a binder only sees the subscription after them.
  Extra fields: `rate_per_s`, the plaintext figure (`plain_tcp_us`) and p99.9 of both.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import struct
import tempfile
import time
from typing import Callable, NamedTuple

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from bench.stats import metric, percentiles
from bus.messages import Quote
from bus.pubsub import Inbound, Publisher

_TS = struct.Struct("<q")
_ZAP_DOMAIN = "xmc-bench"
_READY_MS = 30_000  # the chain must be up (and CURVE-authenticated) within this


class _Curve(NamedTuple):
    """Where a stage finds its CURVE keys: `keys/s{stage}.key[_secret]`, `keys/allow-s{stage}/`."""

    keys: str
    stage: int

    def pair(self, stage: int | None = None) -> tuple[bytes, bytes]:
        """(public, secret) key of this stage, or of `stage`."""
        name = f"s{self.stage if stage is None else stage}.key_secret"
        pub, sec = zmq.auth.load_certificate(os.path.join(self.keys, name))
        assert sec is not None
        return pub, sec


def _make_keys(stages: int) -> str:
    """A temp dir with one key pair per stage and, per stage, a dir of the other stages' public keys."""
    keys = tempfile.mkdtemp(prefix="xmcb-keys-", dir="/tmp")
    for s in range(stages):
        zmq.auth.create_certificates(keys, f"s{s}")
    for s in range(stages):
        allow = os.path.join(keys, f"allow-s{s}")
        os.mkdir(allow)
        for o in range(stages):
            if o != s:
                shutil.copy(os.path.join(keys, f"s{o}.key"), allow)
    return keys


def _authenticator(ctx: zmq.Context, curve: _Curve | None) -> ThreadAuthenticator | None:
    """A binder's ZAP handler, allowing only the other stages' public keys (None in plaintext)."""
    if curve is None:
        return None
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain=_ZAP_DOMAIN, location=os.path.join(curve.keys, f"allow-s{curve.stage}"))
    return auth


def _xpub(ctx: zmq.Context, ep: str, curve: _Curve | None = None) -> zmq.Socket:
    s = ctx.socket(zmq.XPUB)
    s.setsockopt(zmq.SNDHWM, 100_000)
    if curve is not None:
        pub, sec = curve.pair()
        s.curve_secretkey = sec
        s.curve_publickey = pub
        s.zap_domain = _ZAP_DOMAIN.encode()
        s.curve_server = True
    s.bind(ep)
    return s


def _sub(ctx: zmq.Context, ep: str, prefix: bytes = b"", curve: _Curve | None = None) -> zmq.Socket:
    """A SUB; with `curve`, a CURVE client of the stage just upstream (the binder of `ep`)."""
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.RCVHWM, 100_000)
    s.setsockopt(zmq.SUBSCRIBE, prefix)
    if curve is not None:
        pub, sec = curve.pair()
        s.curve_serverkey = curve.pair(curve.stage - 1)[0]
        s.curve_publickey = pub
        s.curve_secretkey = sec
    s.connect(ep)
    return s


def _await_subscriber(pub: zmq.Socket, curve: _Curve | None) -> None:
    """Block until the downstream subscription arrives (after the CURVE handshake and ZAP, if any)."""
    pub.setsockopt(zmq.RCVTIMEO, _READY_MS)
    pub.recv()
    pub.setsockopt(zmq.RCVTIMEO, -1)
    if curve is not None:
        assert pub.getsockopt(zmq.MECHANISM) == zmq.CURVE


def _bind_ep(pub: zmq.Socket, epq: "mp.Queue[str]") -> None:
    """Tell the downstream stage the endpoint actually bound (tcp port * -> the port the OS chose)."""
    epq.put(pub.getsockopt_string(zmq.LAST_ENDPOINT))


def _quote(i: int, now: int) -> Quote:
    return Quote(venue="SHFE", symbol="au", bid=556.0 + (i % 7) * 0.02, ask=556.04, bid_size=10, ask_size=12,
                 exch_ts_ns=now, recv_ns=now, venue_seq=i)


def _source(mode: str, ep: str, n: int, rate: float, epq: "mp.Queue[str]", curve: _Curve | None = None) -> None:
    ctx = zmq.Context()
    auth = _authenticator(ctx, curve)
    pub = _xpub(ctx, ep, curve)
    _bind_ep(pub, epq)
    _await_subscriber(pub, curve)  # downstream subscribed: the chain is ready
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
    if auth is not None:
        auth.stop()
    ctx.term()


def _relay(mode: str, upq: "mp.Queue[str]", down: str, n: int, epq: "mp.Queue[str]",
           curve: _Curve | None = None, every: int = 1) -> None:
    ctx = zmq.Context()
    auth = _authenticator(ctx, curve)
    pub = _xpub(ctx, down, curve)
    _bind_ep(pub, epq)
    _await_subscriber(pub, curve)
    sub = _sub(ctx, upq.get(timeout=_READY_MS / 1e3), b"md.", curve)
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
        for i in range(n):
            frame = sub.recv()
            if i % every == every - 1:  # every message, or (a trigger's pattern) one in `every`
                pub.send(b"sig.au_gc|" + frame[frame.find(b"|") + 1:])
    pub.close(linger=2000)
    sub.close(0)
    if auth is not None:
        auth.stop()
    ctx.term()


def _sink(mode: str, upq: "mp.Queue[str]", n: int, out: "mp.Queue[list[int]]", curve: _Curve | None = None) -> None:
    ctx = zmq.Context()
    sub = _sub(ctx, upq.get(timeout=_READY_MS / 1e3), b"", curve)
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


def _scheduled(realtime: int, target: Callable[..., None], *args: object) -> None:
    """A chain stage under the scheduling the system it is a baseline for runs with (SCHED_FIFO
    at `realtime`, as `run.realtime_priority` puts the tick's path; 0: the normal scheduler)."""
    if realtime > 0:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(realtime))
        except OSError:
            pass  # no CAP_SYS_NICE: neither has the system under test (its actors say so)
    target(*args)


def run_chain(mode: str, hops: int, n: int, rate: float, transport: str = "ipc", realtime: int = 0,
              forward_every: int = 1) -> list[int]:
    """Latencies (ns) of `n` messages through `hops` PUB/SUB hops (1 or 2 relays + sink).

    `transport`: "ipc", "tcp" (plaintext, 127.0.0.1, free ports) or "curve" (tcp with CURVE
    and a ZAP authenticator in every binder; fresh key pairs for this run). `realtime`: every
    stage runs SCHED_FIFO at that priority (the system's `run.realtime_priority`).
    `forward_every` (raw, 2 hops): the relay passes on one message in that many, as a trigger
    passes on a signal for many ticks, so the last hop is as sparse as the system's.
    """
    if forward_every > 1 and (mode != "raw" or hops != 2):
        raise ValueError("forward_every is for the raw 2-hop chain")
    if transport not in ("ipc", "tcp", "curve"):
        raise ValueError(f"unknown transport {transport!r}")
    mpctx = mp.get_context("fork")
    tmp = tempfile.mkdtemp(prefix="xmcb-", dir="/tmp")
    keys = _make_keys(hops + 1) if transport == "curve" else None

    def curve(stage: int) -> _Curve | None:
        return None if keys is None else _Curve(keys, stage)

    # stage 0 is the source, stage `hops` the sink; stage i binds eps[i] and hands the bound
    # endpoint to stage i + 1 through epqs[i]
    eps = [f"ipc://{tmp}/s{i}" if transport == "ipc" else "tcp://127.0.0.1:*" for i in range(hops)]
    epqs: "list[mp.Queue[str]]" = [mpctx.Queue() for _ in range(hops)]
    out: "mp.Queue[list[int]]" = mpctx.Queue()
    procs = [mpctx.Process(target=_scheduled,
                           args=(realtime, _sink, mode, epqs[-1], n // forward_every, out, curve(hops)))]
    for i in range(hops - 1, 0, -1):
        procs.append(mpctx.Process(target=_scheduled, args=(realtime, _relay, mode, epqs[i - 1], eps[i], n, epqs[i],
                                                            curve(i), forward_every)))
    procs.append(mpctx.Process(target=_scheduled, args=(realtime, _source, mode, eps[0], n, rate, epqs[0], curve(0))))
    for p in procs:
        p.start()
    done = False
    try:
        lat = out.get(timeout=120)
        done = True
    finally:
        for p in procs:
            p.join(30 if done else 1)
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
        for d in (tmp, keys):
            if d is not None:
                shutil.rmtree(d, ignore_errors=True)
    return lat[len(lat) // 10:]  # drop warm-up


def _median_runs(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: sorted(r[k] for r in runs)[len(runs) // 2] for k in runs[0]}


def bench_bus(n: int = 6000, rate: float = 2000.0, reps: int = 3) -> dict:
    """bus_hop_* (1 hop) and chain3_* (3 processes, 2 hops) p50/p99/p99.9, xmc vs raw pyzmq, medians of reps."""
    out: dict = {}
    for name, hops in (("bus_hop", 1), ("chain3", 2)):
        runs: dict[str, list[dict[str, float]]] = {"xmc": [], "raw": []}
        for _ in range(reps):
            for mode in ("raw", "xmc"):
                runs[mode].append(percentiles(run_chain(mode, hops, n, rate)))
        med = {m: _median_runs(runs[m]) for m in runs}
        for q in ("p50", "p99", "p999"):
            out[f"{name}_{q}_us"] = metric(med["xmc"][q] / 1e3, "us", med["raw"][q] / 1e3, rate_per_s=rate)
    return out


def bench_bus_tcp(n: int = 6000, rate: float = 2000.0, reps: int = 3) -> dict:
    """bus_hop_tcp_curve_* and chain3_tcp_curve_* p50/p99: xmc bus over tcp with CURVE vs plaintext tcp.

    Same paced rate for both; plaintext and CURVE runs alternate within each rep; medians of reps.
    """
    out: dict = {}
    for name, hops in (("bus_hop", 1), ("chain3", 2)):
        runs: dict[str, list[dict[str, float]]] = {"tcp": [], "curve": []}
        for _ in range(reps):
            for transport in ("tcp", "curve"):
                runs[transport].append(percentiles(run_chain("xmc", hops, n, rate, transport)))
        med = {t: _median_runs(runs[t]) for t in runs}
        for q in ("p50", "p99"):
            plain = med["tcp"][q] / 1e3
            out[f"{name}_tcp_curve_{q}_us"] = metric(
                med["curve"][q] / 1e3, "us", plain, rate_per_s=rate, plain_tcp_us=round(plain, 3),
                curve_p999_us=round(med["curve"]["p999"] / 1e3, 3), plain_p999_us=round(med["tcp"]["p999"] / 1e3, 3))
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
