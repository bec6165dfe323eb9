"""Shared test helpers: run the real CLI, wait on conditions with deadlines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, TypeVar

if TYPE_CHECKING:
    import zmq

    from bus.messages import Envelope
    from configs.schema import Config

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT / "configs" / "instruments.toml"
T = TypeVar("T")


def xmc(*args: str, run_dir: Path | None = None, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the real `xmc` CLI in a subprocess."""
    cmd = [sys.executable, "-m", "actors.cli", *args]
    if run_dir is not None:
        cmd += ["--run-dir", str(run_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"xmc {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def started_until_down(run_dir: Path, start: Callable[..., T], stop: Callable[[T], None]) -> Iterator[Callable[..., T]]:
    """A fixture's body for test venues: hands out `start`; at the end `xmc down` first (the executor
    leaves before its venues: stopping a venue whose session is logged on waits for the logout),
    then `stop` for every venue started."""
    made: list[T] = []

    def make(*args: object) -> T:
        v = start(*args)
        made.append(v)
        return v

    try:
        yield make
    finally:
        xmc("down", run_dir=run_dir, timeout=60)
        for v in made:
            stop(v)


def wait_for(cond: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `cond` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = cond()
        except (OSError, ValueError, KeyError, json.JSONDecodeError, AssertionError) as exc:
            last = exc
        else:
            if last:
                return last  # type: ignore[return-value]
        time.sleep(interval)  # polling a condition with a deadline, not synchronising by sleep
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def status(run_dir: Path) -> dict:
    proc = xmc("status", "--json", run_dir=run_dir, check=True)
    return json.loads(proc.stdout)


def actor(run_dir: Path, name: str) -> dict:
    return next(a for a in status(run_dir)["actors"] if a["name"] == name)


def actor_processes(run_dir: Path) -> list[int]:
    """Live actor and supervisor processes started for this run dir."""
    from actors.supervisor import run_dir_processes

    return run_dir_processes(run_dir)


def write_config(path: Path, body: str) -> Path:
    path.write_text(f'include = ["{CATALOGUE}"]\n' + body)
    return path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return False


class BusTap:
    """The test's SUB sockets on actors' PUBs (actor -> topic prefixes)."""

    def __init__(self, cfg: "Config", run_dir: Path, subs: dict[str, list[str]]) -> None:
        import zmq

        from bus.codec import Codec
        from bus.endpoints import Endpoints

        self.ctx = zmq.Context()
        self.codec = Codec()
        self.eps = Endpoints(cfg, run_dir)
        self.socks = []
        for name, prefixes in subs.items():
            sock = self.ctx.socket(zmq.SUB)
            sock.setsockopt(zmq.RCVHWM, 0)
            for prefix in prefixes:
                sock.setsockopt(zmq.SUBSCRIBE, prefix.encode())
            sock.connect(self.eps.pub(name))
            self.socks.append(sock)

    def read(self) -> list[tuple[str, "Envelope"]]:
        """Every frame already queued, decoded (never blocks)."""
        import zmq

        new = []
        for sock in self.socks:
            while True:
                try:
                    frame = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                new.append(self.codec.decode_frame(frame))
        return new

    def close(self) -> None:
        self.ctx.destroy(0)


class DeskBus(BusTap):
    """The test as a `desk` trigger: SUB taps on actors' PUBs (execution stream events unwrapped,
    the latest quote per instrument key kept aside) and a PUB the executor takes signals from."""

    def __init__(self, cfg: "Config", run_dir: Path, subs: dict[str, list[str]]) -> None:
        super().__init__(cfg, run_dir, subs)
        self.cfg = cfg
        self.seen: list["Envelope"] = []
        self.quotes: dict[str, object] = {}  # by instrument key (a Quote names the venue symbol)
        self.key_of = {i.symbol: k for k, i in cfg.active_instruments().items()}
        self.desk: object | None = None  # a bus.pubsub.Publisher once bound
        self.desk_n = 0

    def pump(self) -> None:
        """Read every frame already queued (never blocks)."""
        import msgspec

        from bus.messages import Quote, StreamEvent

        for _, env in self.read():
            if isinstance(env.body, StreamEvent):  # the execution stream: its events as they come
                env = msgspec.structs.replace(env, body=env.body.body)
            if isinstance(env.body, Quote):
                self.quotes[self.key_of.get(env.body.symbol, env.body.symbol)] = env.body
            else:
                self.seen.append(env)

    def of(self, kind: type) -> list:
        self.pump()
        return [e.body for e in self.seen if isinstance(e.body, kind)]

    def level(self, actor: str) -> int:
        """The actor's risk level as its latest heartbeat reports it (-1: none yet)."""
        from bus.messages import Heartbeat

        hbs = [h for h in self.of(Heartbeat) if h.actor == actor]
        return int(hbs[-1].detail.get("risk_level", -1)) if hbs else -1

    def bind_desk(self, timeout: float = 30.0) -> None:
        """Bind the `desk` trigger's PUB and wait for the executor's subscription."""
        import zmq

        from bus.pubsub import Publisher

        sock = self.ctx.socket(zmq.XPUB)
        sock.bind(self.eps.pub("desk"))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0 and sock.poll(int(left * 1000)), "the executor never subscribed to desk signals"
            if sock.recv() == b"\x01sig.":
                break
        self.desk = Publisher(sock, "desk", time.time_ns())


def drill(cfg: "Config", run_dir: Path, cmd: str, **args: object) -> None:
    """A drill command to the simulated exchange (drift, shock, basis)."""
    import zmq

    from bus.command import call
    from bus.endpoints import Endpoints
    from bus.messages import CmdAck, Control

    reply = call(zmq.Context.instance(), Endpoints(cfg, run_dir).cmd("simex"),
                 Control(cmd=cmd, args={k: str(v) for k, v in args.items()}), timeout_s=5)
    assert isinstance(reply, CmdAck) and reply.ok, reply


def demo_with(*, reject: float, partial: float, drop: float, seed: int = 7, slow_shfe: bool = False,
              shfe_disconnects: tuple[float, float] | None = None) -> str:
    """The demo config with venue misbehaviour rates set, as a TOML prefix to add sections to.

    `slow_shfe` makes SHFE fills take 300 ms, so pair trades stay open long enough to be caught;
    `shfe_disconnects` = (every_s, for_s) takes SHFE's order session down on that schedule."""
    shfe = "ack_latency_ms = 20, fill_latency_ms = 300" if slow_shfe else "ack_latency_ms = 0.5, fill_latency_ms = 1.0"
    if shfe_disconnects is not None:
        shfe += f", disconnect_every_s = {shfe_disconnects[0]}, disconnect_for_s = {shfe_disconnects[1]}"
    rates = f"reject_rate = {reject}, partial_rate = {partial}, drop_rate = {drop}"
    return f"""include = ["{ROOT / 'configs' / 'demo.toml'}"]

[run]
seed = {seed}
heartbeat_s = 0.1
restart_backoff_s = 0.1

[venues.SHFE]
sim = {{ {shfe}, {rates} }}

[venues.COMEX]
sim = {{ ack_latency_ms = 0.3, fill_latency_ms = 0.8, {rates} }}

[venues.HKEX]
sim = {{ ack_latency_ms = 0.4, fill_latency_ms = 0.8, {rates} }}
"""


def fix_demo_with(*, reject: float, partial: float, drop: float, seed: int = 7, slow_shfe: bool = False,
                  shfe_disconnects: tuple[float, float] | None = None) -> str:
    """`demo_with` on configs/demo-fix.toml (au_gc traded and priced over FIX), on free ports."""
    from fixpeer import free_port

    body = demo_with(reject=reject, partial=partial, drop=drop, seed=seed, slow_shfe=slow_shfe,
                     shfe_disconnects=shfe_disconnects)
    body = body.replace(f"{ROOT / 'configs' / 'demo.toml'}", f"{ROOT / 'configs' / 'demo-fix.toml'}")
    return body + f"""
[venues.SHFE.fix]
port = {free_port()}

[venues.COMEX.fix]
port = {free_port()}
"""


def free_base_port(span: int = 40) -> int:
    """A tcp base port whose next `span` ports are free right now on loopback (a run needs
    4 per actor plus 4 for the supervisor: `bus.endpoints`). Below the kernel's ephemeral range,
    so the run's own outgoing connections cannot take one before its actor binds it."""
    import random
    import socket

    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(50):
        base = random.randint(10_000, max(10_001, low - span - 1))
        socks = []
        try:
            for port in range(base, base + span):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


def log_records(run_dir: Path, name: str, event: str | None = None) -> list[dict]:
    """The JSON log lines of one actor (or "supervisor"), optionally only those of one event."""
    path = run_dir / "logs" / f"{name}.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written right now
        if event is None or rec.get("event") == event:
            out.append(rec)
    return out


# The smallest run: one simulated FX venue, its simulator and its feed (TOML, no braces to escape).
FX_ONLY = """
[venues.FX]
kind = "sim"
[instruments.USDCNH]
venue = "FX"
symbol = "USDCNH"
tick = 0.0001
multiplier = 1.0
currency = "CNH"
unit = "ccy"
fx = true
sim = { start = 7.2, interval_ms = 20 }
[actors.simex]
kind = "simex"
[actors.ingest_fx]
kind = "ingest"
venue = "FX"
"""


# The demo's pairs trading often, with short deadlines: kill tests catch trades open (TOML).
BUSY_PAIRS = """
[pairs.au_gc]
order_timeout_ms = 1000
deadline_ms = 4000
entry = 1.0
exit = 0.2
cooldown_ms = 50
warmup_ticks = 20

[pairs.hsi_mhi]
entry = 1.0
exit = 0.2
cooldown_ms = 50
warmup_ticks = 20
"""


@contextmanager
def inproc_pair(bound_type: int, connected_type: int) -> Iterator[tuple["zmq.Socket", "zmq.Socket"]]:
    """Two real sockets on a fresh inproc endpoint, the first bound, the second connected; closed
    after. With an XPUB and a SUB, `subscribed` is the handshake before the first publish."""
    import zmq

    ctx = zmq.Context.instance()
    bound, connected = ctx.socket(bound_type), ctx.socket(connected_type)
    try:
        endpoint = f"inproc://test-{uuid.uuid4().hex}"
        bound.bind(endpoint)
        connected.connect(endpoint)
        yield bound, connected
    finally:
        bound.close(0)
        connected.close(0)


def subscribed(xpub: "zmq.Socket", sub: "zmq.Socket", prefix: bytes) -> None:
    """Subscribe `sub` to `prefix` and wait (with a deadline) until `xpub` has heard it, so a
    frame published after this reaches `sub`."""
    sub.subscribe(prefix)
    assert xpub.poll(10_000), "the subscription never reached the publisher"
    assert xpub.recv() == b"\x01" + prefix
