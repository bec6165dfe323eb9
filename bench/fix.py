"""FIX order-session benchmark: xmc's own FIX gateway against the real simex serving a FIX venue.

`xmc up --detach` starts one simex actor (nothing else) serving two venues with the
same simulated behaviour (no latency, no rejects, partials or drops): ``COMEX`` as a
QuickFIX acceptor on loopback (``kind = "fix"``) and ``COMEXSIM`` on the bus command
channel (``kind = "sim"``). The bench process is the client of both, built from the
executor's own parts:

- FIX: `execution.fixgateway.FixGateway` over `feeds.fix.session.FixEngine("initiator",
  [order_session(...)])`, read through `engine.drain()` and `gateway.on_event()`;
- bus: a DEALER (`bus.command.CommandClient`, routing id as `connect_command` sets it) to
  simex's command ROUTER behind `execution.gateway.SimGateway`.

Every order is an IOC limit for one lot five ticks away from the (constant) market on the
passive side, inside the price band: acknowledged, then expired. Orders go one at a time
at a steady rate; FIX and bus batches alternate (which path goes first alternates too) so
host noise hits both; figures are medians over the repetitions. Metrics:

- ``fix_order_roundtrip_p50_us`` / ``_p99_us``: just before ``gateway.send(order)`` -> the
  ExecutionReport (150=0) that `on_event` maps to an ACK, received: ``ev.ts_ns`` (QuickFIX
  handed it over; ``loop_*`` fields: when the loop saw the ACK). Baseline: the same order to
  the sim venue on the bus command channel until the ACK `OrderEvent` is decoded.
- ``fix_gateway_send_us``: ``FixGateway.send(order)`` in the caller's thread (build the
  NewOrderSingle field by field, QuickFIX serialises, stores and writes it), p50 on the paced
  orders above; baseline ``SimGateway.send`` (msgpack encode + zmq send). ``warm_*``: the same
  in bursts of back-to-back orders.
- ``fix_report_map_us``: one ExecutionReport text -> `OrderEvent` (``Fields.parse`` +
  ``FixGateway.on_event``, i.e. `execution.fixorders.execution_report`), p50 in a tight loop;
  baseline: the bus's decode of the same ACK (`Codec.decode` of the received command frame).
"""

from __future__ import annotations

import socket
import statistics
import time
from pathlib import Path

import msgspec
import zmq

from bench.stats import metric, percentiles
from bench.system import CATALOGUE, SystemRun, wait_for
from bus.codec import Codec
from bus.command import CommandClient
from bus.messages import ExecType, OrderEvent, OrderPurpose, OrderRequest, Side, TimeInForce
from configs.load import load_config
from configs.schema import Config
from execution.gateway import SimGateway
from feeds.fix import wire

VENUE = "COMEX"  # served by simex as a FIX acceptor
SIM_VENUE = "COMEXSIM"  # the same simulated venue on the bus command channel
FIX_INST, SIM_INST = "GC", "GCS"
MID, TICK, AWAY_TICKS = 2400.0, 0.1, 5  # constant market (vol 0): 2399.9 / 2400.1 with spread_ticks 2
FIX_VERSION = "FIX.4.4"
SIM = "ack_latency_ms = 0.0, fill_latency_ms = 0.0, reject_rate = 0.0, partial_rate = 0.0, drop_rate = 0.0"
PRICES = "start = 2400.0, vol_bp = 0.0, spread_ticks = 2, size = 20, interval_ms = 20"
TIMEOUT_S = 5.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))  # QuickFIX's acceptor listens on every interface
        return int(s.getsockname()[1])


def _config(port: int) -> str:
    return f"""include = ["{CATALOGUE}"]
[run]
heartbeat_s = 0.5
[venues.{VENUE}]
kind = "fix"
sim = {{ {SIM} }}
[venues.{VENUE}.fix]
host = "127.0.0.1"
port = {port}
version = "{FIX_VERSION}"
sender_comp_id = "XMC"
target_comp_id = "SIMEX"
heartbeat_s = 30
reconnect_s = 1
logon_timeout_s = 5
account = "hk"
symbols = {{ {FIX_INST} = {{ symbol = "GC", security_exchange = "CMX" }} }}
[venues.{SIM_VENUE}]
kind = "sim"
sim = {{ {SIM} }}
[instruments.{FIX_INST}]
hours = []
sim = {{ {PRICES} }}
[instruments.{SIM_INST}]
venue = "{SIM_VENUE}"
symbol = "GCZ6"
tick = {TICK}
multiplier = 100.0
currency = "USD"
unit = "oz"
hours = []
sim = {{ {PRICES} }}
[actors.simex]
kind = "simex"
venues = ["{VENUE}", "{SIM_VENUE}"]
"""


class _Ids:
    """ClOrdIDs ``B000001.a1`` (trade id ``B000001``), unique over both paths."""

    def __init__(self) -> None:
        self.n = 0

    def order(self, venue: str, instrument: str) -> OrderRequest:
        self.n += 1
        tid = f"B{self.n:06d}"
        side = Side.BUY if self.n % 2 else Side.SELL
        px = round(MID - AWAY_TICKS * TICK if side is Side.BUY else MID + AWAY_TICKS * TICK, 1)
        return OrderRequest(cl_ord_id=f"{tid}.a1", trade_id=tid, account="hk", venue=venue, instrument=instrument,
                            side=side, qty=1, price=px, tif=TimeInForce.IOC, purpose=OrderPurpose.OPEN)


class _Sample(msgspec.Struct, array_like=True):
    send_ns: int  # gateway.send() itself
    rx_ns: int  # send start -> received (FIX: QuickFIX handed it over; bus: = seen)
    seen_ns: int  # send start -> the loop has the ACK OrderEvent
    reply_ns: int = 0  # bus only: send start -> simex stamped the reply envelope


class _FixClient:
    """The executor's FIX order path in this process: FixEngine (initiator) + FixGateway."""

    def __init__(self, cfg: Config, run_dir: Path, ctx: zmq.Context) -> None:
        from execution.fixgateway import FixGateway  # needs quickfix
        from feeds.fix.session import FixEngine, SessionEventKind
        from feeds.fix.venue import order_session

        fx = cfg.venues[VENUE].fix
        assert fx is not None
        self.kinds = SessionEventKind
        self.spec = order_session(run_dir, VENUE, fx)
        self.engine = FixEngine("initiator", [self.spec], ctx)
        self.gw = FixGateway(VENUE, cfg, self.engine, self.spec.session_id, on_local=lambda: None)
        self.last_ack = None  # the last ACK's SessionEvent (for the mapping benchmark)
        self.engine.start()

    def close(self) -> None:
        self.engine.stop()

    def wait_logon(self, timeout_s: float) -> None:
        def logged_on() -> bool:
            if self.engine.socket.poll(50):
                self.engine.drain()
            return self.gw.connected

        wait_for(logged_on, timeout_s, f"FIX logon of {self.spec.session_id}", interval=0)

    def send(self, order: OrderRequest) -> int:
        t0 = time.monotonic_ns()
        self.gw.send(order)
        return time.monotonic_ns() - t0

    def roundtrip(self, order: OrderRequest) -> _Sample:
        cid = order.cl_ord_id
        t0 = time.monotonic_ns()
        self.gw.send(order)
        t1 = time.monotonic_ns()
        if self.gw.local:
            raise RuntimeError(f"FIX gateway answered locally: {self.gw.take_local()[0].reason}")
        rx = seen = 0
        deadline = t0 + int(TIMEOUT_S * 1e9)
        while True:  # the ACK, then the IOC expiry (so the next order starts on a quiet path)
            for ev in self.engine.drain():
                if ev.kind is self.kinds.LOGOUT:
                    raise RuntimeError(f"FIX session logged out: {ev.raw[:200]}")
                if ev.kind is not self.kinds.APP:
                    continue
                for oe in self.gw.on_event(ev):
                    if oe.cl_ord_id != cid:
                        continue
                    if oe.exec_type is ExecType.ACK:
                        seen = time.monotonic_ns()
                        rx = ev.ts_ns
                        self.last_ack = ev
                    elif oe.exec_type is ExecType.CANCELLED and seen:
                        return _Sample(t1 - t0, rx - t0, seen - t0)
                    else:
                        raise RuntimeError(f"unexpected report for {cid}: {oe.exec_type.value} {oe.reason}")
            left = deadline - time.monotonic_ns()
            if left <= 0:
                raise TimeoutError(f"no ACK and expiry for FIX order {cid} within {TIMEOUT_S}s (acked={bool(seen)})")
            self.engine.socket.poll(max(1, left // 1_000_000))

    def settle(self, cids: list[str]) -> None:
        """Wait until every order in `cids` has expired (after a burst)."""
        want = set(cids)
        deadline = time.monotonic() + TIMEOUT_S
        while want:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(want)} FIX orders not answered within {TIMEOUT_S}s")
            if self.engine.socket.poll(100):
                for ev in self.engine.drain():
                    if ev.kind is self.kinds.APP:
                        for oe in self.gw.on_event(ev):
                            if oe.exec_type is ExecType.CANCELLED:
                                want.discard(oe.cl_ord_id)


class _BusClient:
    """The executor's simulated-venue path: a DEALER to simex's command ROUTER behind SimGateway."""

    def __init__(self, run: SystemRun) -> None:
        self.sock = run.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTING_ID, b"bench")  # as connect_command names its channel
        self.sock.connect(run.eps.cmd("simex"))
        self.client = CommandClient(self.sock, "bench", time.monotonic_ns())
        self.gw = SimGateway(SIM_VENUE, self.client.send)
        self.last_ack: bytes = b""  # the last ACK frame (for the decoding baseline)

    def send(self, order: OrderRequest) -> int:
        t0 = time.monotonic_ns()
        self.gw.send(order)
        return time.monotonic_ns() - t0

    def roundtrip(self, order: OrderRequest) -> _Sample:
        cid = order.cl_ord_id
        t0 = time.monotonic_ns()
        self.gw.send(order)
        t1 = time.monotonic_ns()
        seen = reply = 0
        deadline = t0 + int(TIMEOUT_S * 1e9)
        while True:
            left = deadline - time.monotonic_ns()
            if left <= 0:
                raise TimeoutError(f"no ACK and expiry for bus order {cid} within {TIMEOUT_S}s (acked={bool(seen)})")
            if not self.sock.poll(max(1, left // 1_000_000)):
                continue
            frame = self.sock.recv(zmq.NOBLOCK)  # CommandClient.recv, keeping the frame
            env = self.client.codec.decode(frame)
            oe = env.body
            if not isinstance(oe, OrderEvent) or oe.cl_ord_id != cid:
                continue
            if oe.exec_type is ExecType.ACK:
                seen = time.monotonic_ns()
                reply = env.ts_ns
                self.last_ack = frame
            elif oe.exec_type is ExecType.CANCELLED and seen:
                return _Sample(t1 - t0, seen - t0, seen - t0, reply - t0)
            else:
                raise RuntimeError(f"unexpected report for {cid}: {oe.exec_type.value} {oe.reason}")

    def settle(self, cids: list[str]) -> None:
        want = set(cids)
        deadline = time.monotonic() + TIMEOUT_S
        while want:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(want)} bus orders not answered within {TIMEOUT_S}s")
            if self.sock.poll(100):
                oe = self.client.recv().body
                if isinstance(oe, OrderEvent) and oe.exec_type is ExecType.CANCELLED:
                    want.discard(oe.cl_ord_id)


def _paced(client: _FixClient | _BusClient, ids: _Ids, venue: str, inst: str, n: int, rate: float) -> list[_Sample]:
    """`n` orders one at a time, each started on a `rate` grid (later if the previous one ran over)."""
    period = int(1e9 / rate)
    out = []
    nxt = time.monotonic_ns()
    for _ in range(n):
        order = ids.order(venue, inst)
        wait = nxt - time.monotonic_ns()
        if wait > 0:
            time.sleep(wait / 1e9)
        out.append(client.roundtrip(order))
        nxt += period
        nxt = max(nxt, time.monotonic_ns() - period)  # never burst to catch up
    return out


def _bursts(client: _FixClient | _BusClient, ids: _Ids, venue: str, inst: str, bursts: int, size: int) -> list[int]:
    """`send` cost of back-to-back orders (warm caches), waiting for all answers between bursts."""
    out = []
    for _ in range(bursts):
        orders = [ids.order(venue, inst) for _ in range(size)]
        out += [client.send(o) for o in orders]
        client.settle([o.cl_ord_id for o in orders])
    return out


def _us(ns: list[int]) -> dict[str, float]:
    return {k: v / 1e3 for k, v in percentiles(ns).items()}


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def _map_costs(fix: _FixClient, bus: _BusClient, n: int) -> dict[str, list[int]]:
    """Interleaved tight loops over the last ACK of each path: FIX text -> OrderEvent vs bus frame decode."""
    from execution.fixorders import execution_report

    ev, frame = fix.last_ack, bus.last_ack
    assert ev is not None and frame, "no ACK captured"
    gw, codec, clock = fix.gw, Codec(), time.perf_counter_ns
    body = msgspec.msgpack.encode(codec.decode(frame).body)
    body_dec = msgspec.msgpack.Decoder(OrderEvent)
    cid = wire.Fields.parse(ev.raw).get(wire.CL_ORD_ID)
    entry = gw.book[cid]
    [got] = gw.on_event(ev)
    assert got.exec_type is ExecType.ACK and codec.decode(frame).body.exec_type is ExecType.ACK
    out: dict[str, list[int]] = {"map": [], "parse": [], "report": [], "decode": [], "body": []}
    raw = ev.raw
    for _ in range(n):
        t0 = clock()
        gw.on_event(ev)
        t1 = clock()
        codec.decode(frame)
        t2 = clock()
        f = wire.Fields.parse(raw)
        t3 = clock()
        execution_report(f, entry, VENUE, FIX_INST, cid)
        t4 = clock()
        body_dec.decode(body)
        t5 = clock()
        out["map"].append(t1 - t0)
        out["decode"].append(t2 - t1)
        out["parse"].append(t3 - t2)
        out["report"].append(t4 - t3)
        out["body"].append(t5 - t4)
    return out


def bench_fix(n: int = 600, reps: int = 3, rate: float = 300.0, map_n: int = 20_000, burst: int = 20) -> dict:
    """The FIX order path against simex's FIX acceptor vs the bus command channel to the same simex:
    `reps` alternating batches of `n` paced orders per path (after n/6 of warm-up, at most 100), then
    n/20 bursts of `burst` back-to-back orders, then `map_n` report mappings in process."""
    warm, bursts = min(100, max(20, n // 6)), max(10, n // 20)
    ids = _Ids()
    fix_runs: list[list[_Sample]] = []
    bus_runs: list[list[_Sample]] = []
    with SystemRun("fix", _config(_free_port())) as run:
        cfg = load_config(run.config)
        fix = _FixClient(cfg, run.run_dir, run.ctx)
        try:
            fix.wait_logon(20.0)
            bus = _BusClient(run)
            paths = {"fix": (fix, VENUE, FIX_INST, fix_runs), "bus": (bus, SIM_VENUE, SIM_INST, bus_runs)}
            for name in ("fix", "bus"):  # warm both paths (and simex) up; discarded
                client, venue, inst, _ = paths[name]
                _paced(client, ids, venue, inst, warm, rate)
            for rep in range(reps):
                for name in (("fix", "bus") if rep % 2 == 0 else ("bus", "fix")):
                    client, venue, inst, runs = paths[name]
                    runs.append(_paced(client, ids, venue, inst, n, rate))
            warm_fix: list[int] = []
            warm_bus: list[int] = []
            for i in range(bursts):  # alternate single bursts
                for name in (("fix", "bus") if i % 2 == 0 else ("bus", "fix")):
                    client, venue, inst, _ = paths[name]
                    (warm_fix if name == "fix" else warm_bus).extend(_bursts(client, ids, venue, inst, 1, burst))
            costs = _map_costs(fix, bus, map_n)
            stats = dict(fix.gw.stats)
        finally:
            fix.close()
    # `with run` has run `xmc down` and checked that no process of the run is left

    def per_rep(runs: list[list[_Sample]], field: str) -> list[dict[str, float]]:
        return [_us([getattr(s, field) for s in r]) for r in runs]

    fix_rx, fix_seen = per_rep(fix_runs, "rx_ns"), per_rep(fix_runs, "seen_ns")
    bus_seen, bus_reply = per_rep(bus_runs, "seen_ns"), per_rep(bus_runs, "reply_ns")
    fix_send, bus_send = per_rep(fix_runs, "send_ns"), per_rep(bus_runs, "send_ns")

    def med(rows: list[dict[str, float]], q: str) -> float:
        return _median([r[q] for r in rows])

    common = {"n": n * reps, "reps": reps, "rate_per_s": rate, "fix_version": FIX_VERSION}
    out = {}
    for q in ("p50", "p99"):
        out[f"fix_order_roundtrip_{q}_us"] = metric(
            med(fix_rx, q), "us", med(bus_seen, q), **common,
            loop_us=round(med(fix_seen, q), 1),  # the loop saw the ACK (after the inproc hand-off + drain)
            fix_reps_us=[round(r[q], 1) for r in fix_rx], bus_reps_us=[round(r[q], 1) for r in bus_seen],
            bus_to_reply_us=round(med(bus_reply, q), 1),  # bus: send start -> simex stamped its reply
            p999_us=round(med(fix_rx, "p999"), 1), baseline_p999_us=round(med(bus_seen, "p999"), 1))
    wf, wb = _us(warm_fix), _us(warm_bus)
    out["fix_gateway_send_us"] = metric(
        med(fix_send, "p50"), "us", med(bus_send, "p50"), **common,
        p99_us=round(med(fix_send, "p99"), 1), baseline_p99_us=round(med(bus_send, "p99"), 1),
        warm_p50_us=round(wf["p50"], 2), warm_baseline_p50_us=round(wb["p50"], 2), warm_n=len(warm_fix),
        fix_orders_sent=stats.get("orders", 0))
    mp = {k: _us(v) for k, v in costs.items()}
    out["fix_report_map_us"] = metric(
        mp["map"]["p50"], "us", mp["decode"]["p50"], n=map_n,
        p99_us=round(mp["map"]["p99"], 2), baseline_p99_us=round(mp["decode"]["p99"], 2),
        parse_us=round(mp["parse"]["p50"], 2), execution_report_us=round(mp["report"]["p50"], 2),
        body_decode_us=round(mp["body"]["p50"], 3))
    return out


if __name__ == "__main__":
    for name, m in bench_fix(n=200, reps=2, map_n=5000).items():
        print(name, m)
