"""Who may talk on the bus (`bus.security`): over tcp with CURVE keys the operator's CLI commands
the run and every command is journalled with its sender; a peer without CURVE, with an unknown
key, or with an actor's key on the operators' socket reads nothing, changes nothing, and is
counted. `xmc check` keeps tcp beyond loopback closed unless the config says plaintext; an ipc
run's folders are the owner's alone.

"Receives nothing" is shown without sleeping: wait until the refusal counter of the socket in
question went up (the attempt was made and refused), then check that nothing is queued on the
intruder's socket and that the state it tried to change did not change.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import zmq
import zmq.auth

from bus.command import CommandClient
from bus.endpoints import Endpoints
from bus.messages import CmdAck, Control, OrderEvent, OrderRequest, Side
from configs.load import load_config
from configs.schema import Config
from helpers import FX_ONLY, actor_processes, demo_with, free_base_port, log_records, status, wait_for, write_config, xmc

OPERATOR = "operator:alice"
# an order only an accepted peer can place: on the FX venue, which no pair trades, so simex's
# FX.orders counter moves for it alone; a limit far below the market, so it rests and never fills
PROBE_VENUE, PROBE_INSTRUMENT = "FX", "USDCNH"


def _probe_order(cl_ord_id: str) -> OrderRequest:
    return OrderRequest(cl_ord_id=cl_ord_id, trade_id=cl_ord_id, account="hk", venue=PROBE_VENUE,
                        instrument=PROBE_INSTRUMENT, side=Side.BUY, qty=1, price=1.0)


# ---- one CURVE demo run, shared by the tests that need it ---------------------------------------


@dataclass
class CurveRun:
    config: Path
    cfg: Config
    keys: Path
    run_dir: Path
    intruded: bool = False  # set once a test made refused attempts (the refusal counters are no longer 0)

    def server_key(self, actor: str) -> bytes:
        """An actor's (or the supervisor's) public key, as anyone holding the key dir's *.key files knows it."""
        return zmq.auth.load_certificate(self.keys / "actors" / f"{actor}.key")[0]

    def key_pair(self, sub: str, name: str) -> tuple[bytes, bytes]:
        public, secret = zmq.auth.load_certificate(self.keys / sub / f"{name}.key_secret")
        assert secret is not None
        return public, secret


@pytest.fixture(scope="module")
def curve_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CurveRun]:
    """The demo over tcp loopback with CURVE keys made by `xmc keys init` for operator alice.

    Teardown is the run_dir fixture's: `xmc down`, then no process of the run may be left."""
    home = tmp_path_factory.mktemp("curve")
    config = home / "demo-curve.toml"
    config.write_text(demo_with(reject=0.05, partial=0.1, drop=0.0) + f"""
[endpoints]
transport = "tcp"
host = "127.0.0.1"
base_port = {free_base_port()}
curve_keys = "keys"
""")
    xmc("keys", "init", str(home / "keys"), "--config", str(config), "--operator", "alice", check=True)
    run_dir = Path(tempfile.mkdtemp(prefix="xmc-", dir="/tmp"))
    try:
        xmc("up", str(config), "--detach", run_dir=run_dir, check=True)
        yield CurveRun(config, load_config(config), home / "keys", run_dir)
    finally:
        xmc("down", run_dir=run_dir, timeout=60)
        left = actor_processes(run_dir)
        if not os.environ.get("XMC_KEEP_RUN_DIRS"):
            shutil.rmtree(run_dir, ignore_errors=True)
        assert not left, f"processes left behind: {left}"


def _refusals(doc: dict) -> dict[str, float]:
    """Refused handshakes per listening socket: "<actor>.pub", "<actor>.cmd", "supervisor.ctl", ..."""
    out = {f"supervisor.{k}": float(v) for k, v in doc["supervisor"]["bus"]["refused"].items()}
    for a in doc["actors"]:
        for sock in ("pub", "cmd"):
            out[f"{a['name']}.{sock}"] = float(a["detail"].get(f"refused.{sock}", 0.0))
    return out


def _simex(doc: dict) -> dict:
    return next(a for a in doc["actors"] if a["name"] == "simex")["detail"]


def _halt(run: CurveRun, reason: str) -> dict:
    xmc("halt", "--reason", reason, run_dir=run.run_dir, check=True)
    return wait_for(lambda: (d := status(run.run_dir))["supervisor"]["kill_switch"]["halted"] and d, 10, "halted")


def _control_commands(run_dir: Path) -> list[dict]:
    return log_records(run_dir, "supervisor", "control_command")


def _audit_rows(run_dir: Path) -> list[dict]:
    db = sqlite3.connect(f"file:{run_dir / 'journal.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT body FROM events WHERE topic = 'ctl.audit' AND kind = 'ControlAudit' ORDER BY id").fetchall()
    finally:
        db.close()
    return [json.loads(body) for (body,) in rows]


class Peer:
    """Sockets of someone outside the run: plaintext (`keys` None) or a CURVE client with `keys`
    = (public, secret), which knows each server's real public key."""

    def __init__(self, run: CurveRun, keys: tuple[bytes, bytes] | None, name: str) -> None:
        self.run = run
        self.keys = keys
        self.name = name
        self.eps = Endpoints(run.cfg, run.run_dir)
        self.ctx = zmq.Context()
        self.socks: list[zmq.Socket] = []

    def socket(self, kind: int, server: str, endpoint: str, routing_id: bytes | None = None) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        if routing_id is not None:
            sock.setsockopt(zmq.ROUTING_ID, routing_id)
        if self.keys is not None:
            sock.setsockopt(zmq.CURVE_SERVERKEY, self.run.server_key(server))
            sock.setsockopt(zmq.CURVE_PUBLICKEY, self.keys[0])
            sock.setsockopt(zmq.CURVE_SECRETKEY, self.keys[1])
        sock.connect(endpoint)
        self.socks.append(sock)
        return sock

    def subscribe_all(self) -> dict[str, zmq.Socket]:
        """A SUB with prefix b"" on every actor's PUB."""
        out = {}
        for actor in sorted(self.run.cfg.actors):
            sock = self.socket(zmq.SUB, actor, self.eps.pub(actor))
            sock.setsockopt(zmq.SUBSCRIBE, b"")
            out[actor] = sock
        return out

    def command(self, server: str, endpoint: str, msg: object, routing_id: bytes | None = None) -> zmq.Socket:
        """A DEALER sending one real bus Envelope, as `bus.command.CommandClient` frames it."""
        sock = self.socket(zmq.DEALER, server, endpoint, routing_id or f"peer-{self.name}".encode())
        try:  # a refused peer may have no pipe to queue on at this instant: never block on it
            CommandClient(sock, f"peer-{self.name}", 1).send(msg, flags=zmq.NOBLOCK)  # type: ignore[arg-type]
        except zmq.Again:
            pass
        return sock

    def queued(self) -> list[int]:
        """Indexes of this peer's sockets with a frame waiting (never blocks)."""
        return [i for i, s in enumerate(self.socks) if s.poll(0, zmq.POLLIN)]

    def close(self) -> None:
        self.ctx.destroy(0)


# ---- 1. the demo over CURVE: trades, operator commands, the audit trail -----------------------------


@pytest.mark.slow
def test_curve_demo_trades_and_operator_halt_resume_are_journalled_by_alice(curve_run: CurveRun) -> None:
    run = curve_run
    doc = status(run.run_dir)
    assert doc["supervisor"]["bus"]["security"] == "curve"
    assert doc["supervisor"]["bus"]["authenticated"] is True
    assert set(doc["supervisor"]["bus"]["refused"]) == {"ctl", "cli"}
    if not run.intruded:  # every actor, the supervisor and the CLI completed their handshakes
        assert set(_refusals(doc).values()) == {0.0}, _refusals(doc)

    wait_for(lambda: len([t for t in json.loads(xmc("trades", "--json", run_dir=run.run_dir, check=True).stdout)
                          if t["terminal"]]) >= 2, 45, "terminal trades over the CURVE bus")

    # the CLI finds alice's key on its own: the only operator secret key in keys/operators
    xmc("halt", "--reason", "curve drill", run_dir=run.run_dir, check=True)
    ks = status(run.run_dir)["supervisor"]["kill_switch"]
    assert ks == {"halted": True, "reason": "curve drill", "by": OPERATOR}
    wait_for(lambda: any(r["halted"] and r["reason"] == "curve drill"
                         for r in log_records(run.run_dir, "trigger", "kill_switch")),
             10, "the kill switch relayed to the trigger over CURVE")

    xmc("resume", run_dir=run.run_dir, check=True)
    ks = status(run.run_dir)["supervisor"]["kill_switch"]
    assert ks == {"halted": False, "reason": "", "by": OPERATOR}

    audits = wait_for(lambda: [r for r in _audit_rows(run.run_dir) if r["cmd"] in ("halt", "resume")][-2:], 10,
                      "ctl.audit rows in journal.sqlite")
    assert [(r["cmd"], r["by"], r["ok"]) for r in audits] == [("halt", OPERATOR, True), ("resume", OPERATOR, True)]
    assert audits[0]["args"] == {"reason": "curve drill"}
    logged = [(r["cmd"], r["by"]) for r in _control_commands(run.run_dir)]
    assert logged[-2:] == [("halt", OPERATOR), ("resume", OPERATOR)]


# ---- 2. intruders against the same run -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("intruder", ["plaintext", "unknown_key"])
def test_intruder_on_curve_bus_reads_nothing_and_commands_nothing(curve_run: CurveRun, intruder: str) -> None:
    run = curve_run
    halted = _halt(run, f"before {intruder} intruder")["supervisor"]["kill_switch"]
    base = status(run.run_dir)
    before = _refusals(base)
    orders_before = _simex(base).get(f"{PROBE_VENUE}.orders", 0.0)
    commands_before = len(_control_commands(run.run_dir))

    keys = None if intruder == "plaintext" else zmq.curve_keypair()  # not in the key dir: nobody lists it
    peer = Peer(run, keys, intruder)
    run.intruded = True
    try:
        subs = peer.subscribe_all()
        peer.command("simex", peer.eps.cmd("simex"), _probe_order(f"INTRUDER-{intruder}"))
        peer.command("supervisor", peer.eps.supervisor_cli(), Control(cmd="resume"))
        # posing as the trigger on the socket actors report to: a halt there would take the run's
        # kill switch (its reason and sender would change)
        peer.command("supervisor", peer.eps.supervisor_ctl(), Control(cmd="halt", args={"reason": "intruder"}),
                     routing_id=b"trigger")

        expected = [f"{a}.pub" for a in subs] + ["simex.cmd", "supervisor.cli", "supervisor.ctl"]
        after = wait_for(lambda: (r := _refusals(d := status(run.run_dir))) and all(r[k] > before[k] for k in expected)
                         and (r, d), 20, f"every attempt of the {intruder} peer refused and counted")
        refusals, doc = after

        assert peer.queued() == [], "an intruder's socket received something"
        assert _simex(doc).get(f"{PROBE_VENUE}.orders", 0.0) == orders_before, "the intruder's order reached the venue"
        assert doc["supervisor"]["kill_switch"] == halted  # not resumed, not re-halted by a fake trigger
        assert len(_control_commands(run.run_dir)) == commands_before  # nothing reached the CLI socket
        assert all(r["by"] == OPERATOR for r in _audit_rows(run.run_dir))
        untouched = {k: v for k, v in refusals.items() if k not in expected and k.endswith(".cmd")}
        assert untouched == {k: before[k] for k in untouched}, "a socket the peer never tried counted a refusal"
        if keys is not None:  # ZAP refused that very key on every actor's PUB (its domain: bus)
            public = keys[0].decode()
            for actor in subs:
                recs = [r for r in log_records(run.run_dir, actor, "bus_key_refused") if r["public_key"] == public]
                assert recs and recs[0]["domain"] == "bus", f"{actor} did not log the refused key"
    finally:
        peer.close()


@pytest.mark.slow
def test_actor_key_resume_on_operator_socket_refused_and_its_control_on_cmd_denied(curve_run: CurveRun) -> None:
    """The trigger's own key pair is a good bus key, but not an operator's: the supervisor's CLI
    socket (ZAP domain operators) refuses the handshake; simex reads its Control and denies it."""
    run = curve_run
    halted = _halt(run, "before the actor-key peer")["supervisor"]["kill_switch"]
    before = _refusals(status(run.run_dir))
    commands_before = len(_control_commands(run.run_dir))

    peer = Peer(run, run.key_pair("actors", "trigger"), "trigger-key")
    run.intruded = True
    try:
        cli = peer.command("supervisor", peer.eps.supervisor_cli(), Control(cmd="resume"))
        doc = wait_for(lambda: _refusals(d := status(run.run_dir))["supervisor.cli"] > before["supervisor.cli"] and d, 20,
                       "the actor key refused on the CLI socket")
        assert not cli.poll(0, zmq.POLLIN)
        assert doc["supervisor"]["kill_switch"] == halted
        assert len(_control_commands(run.run_dir)) == commands_before

        # the same key on simex's command socket (domain bus) is let in, and a drill command from it
        # is answered AUTH_NOT_OPERATOR: Control there is for operators and the supervisor only
        cmd = peer.command("simex", peer.eps.cmd("simex"), Control(cmd="drift", args={"instrument": PROBE_INSTRUMENT, "bp": "0"}))
        assert cmd.poll(10_000, zmq.POLLIN), "no answer from simex"
        reply = CommandClient(cmd, "peer", 1).recv().body
        assert isinstance(reply, CmdAck) and not reply.ok
        assert reply.reason == "AUTH_NOT_OPERATOR: sender=trigger"
        assert any(r["sender"] == "trigger" and r["cmd"] == "drift" for r in log_records(run.run_dir, "simex", "control_refused"))
        assert not log_records(run.run_dir, "simex", "simex_control")
    finally:
        peer.close()


@pytest.mark.slow
def test_operator_key_on_curve_bus_reads_frames_and_reaches_simex(curve_run: CurveRun) -> None:
    """The intruder tests' probes, with a listed key: they would have seen it get through."""
    run = curve_run
    before = status(run.run_dir)
    orders_before = _simex(before).get(f"{PROBE_VENUE}.orders", 0.0)
    peer = Peer(run, run.key_pair("operators", "alice"), "alice")
    try:
        subs = peer.subscribe_all()
        order = peer.command("simex", peer.eps.cmd("simex"), _probe_order("OPERATOR-PROBE"))
        wait_for(lambda: all(s.poll(0, zmq.POLLIN) for s in subs.values()), 10, "frames from every actor's PUB")
        assert order.poll(10_000, zmq.POLLIN), "no answer from simex"
        ack = CommandClient(order, "peer", 1).recv().body
        assert isinstance(ack, OrderEvent) and ack.cl_ord_id == "OPERATOR-PROBE" and ack.venue == PROBE_VENUE
        wait_for(lambda: _simex(status(run.run_dir)).get(f"{PROBE_VENUE}.orders", 0.0) == orders_before + 1, 10,
                 "the probe order counted by simex")
        public = peer.keys[0].decode()  # type: ignore[index]
        assert not [(a, r) for a in subs for r in log_records(run.run_dir, a, "bus_key_refused") if r["public_key"] == public]
    finally:
        peer.close()


# ---- a routing id is bound to its key: an actor key cannot pose as another actor ---------------------


def _concluded(peer: Peer, server: str, endpoint: str, routing_id: bytes) -> zmq.Socket:
    """A DEALER of `peer` named `routing_id`, once its handshake with `server` succeeded or failed."""
    from zmq.utils.monitor import parse_monitor_message

    sock = peer.ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTING_ID, routing_id)
    assert peer.keys is not None
    sock.setsockopt(zmq.CURVE_SERVERKEY, peer.run.server_key(server))
    sock.setsockopt(zmq.CURVE_PUBLICKEY, peer.keys[0])
    sock.setsockopt(zmq.CURVE_SECRETKEY, peer.keys[1])
    done = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
    mon = sock.get_monitor_socket(done)
    sock.connect(endpoint)
    peer.socks.append(sock)
    assert mon.poll(10_000, zmq.POLLIN), f"no handshake with {endpoint}"
    parse_monitor_message(mon.recv_multipart())
    return sock


def _venue_orders(run: CurveRun) -> float:
    """Orders simex's venues took, the probe venue's aside: the executor's."""
    return sum(v for k, v in _simex(status(run.run_dir)).items()
               if k.endswith(".orders") and not k.startswith(f"{PROBE_VENUE}."))


@pytest.mark.slow
def test_actor_key_posing_as_executor_on_simex_cmd_executor_orders_keep_reaching_simex(curve_run: CurveRun) -> None:
    run = curve_run
    xmc("resume", run_dir=run.run_dir, check=True)
    start = _venue_orders(run)
    wait_for(lambda: _venue_orders(run) > start, 30, "the executor's orders reaching simex")
    peer = Peer(run, run.key_pair("actors", "ingest_fx"), "ingest_fx-as-executor")
    try:
        _concluded(peer, "simex", peer.eps.cmd("simex"), b"executor")
    finally:
        peer.close()
    after = _venue_orders(run)
    wait_for(lambda: _venue_orders(run) > after, 15, "the executor's orders still reaching simex after the impostor left")


@pytest.mark.slow
def test_actor_key_posing_as_executor_on_ctl_kill_switch_still_reaches_executor(curve_run: CurveRun) -> None:
    run = curve_run
    executor_pid = next(a for a in status(run.run_dir)["actors"] if a["name"] == "executor")["pid"]
    peer = Peer(run, run.key_pair("actors", "ingest_fx"), "ingest_fx-as-executor")
    try:
        sock = _concluded(peer, "supervisor", peer.eps.supervisor_ctl(), b"executor")
        xmc("halt", "--reason", "impostor drill", run_dir=run.run_dir, check=True)
        # the executor process that was running, not the one the supervisor starts after killing it as silent
        wait_for(lambda: any(r["pid"] == executor_pid and r["reason"] == "impostor drill"
                             for r in log_records(run.run_dir, "executor", "kill_switch")), 10,
                 "the kill switch reaching the executor")
        assert not sock.poll(0, zmq.POLLIN), "the impostor received the executor's kill switch"
    finally:
        peer.close()


# ---- 3. config check and plaintext tcp ------------------------------------------------------------

SMALL = """
[run]
heartbeat_s = 0.2
[endpoints]
{endpoints}
""" + FX_ONLY.replace("{", "{{").replace("}", "}}")


def _tcp(host: str, extra: str = "") -> str:
    return f'transport = "tcp"\nhost = "{host}"\nbase_port = {free_base_port(12)}\n{extra}'


@pytest.mark.parametrize("host", ["0.0.0.0", "{actor}"])
def test_check_tcp_beyond_loopback_without_keys_exits_2_naming_curve_keys(tmp_path: Path, host: str) -> None:
    cfg = write_config(tmp_path / "open.toml", SMALL.format(endpoints=_tcp(host)))
    proc = xmc("check", str(cfg))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = next(ln for ln in proc.stderr.splitlines() if "endpoints.curve_keys" in ln)
    assert "listens beyond loopback" in line and "xmc keys init" in line and "plaintext = true" in line


@pytest.mark.parametrize("host", ["0.0.0.0", "{actor}"])
def test_check_tcp_beyond_loopback_plaintext_true_exits_0(tmp_path: Path, host: str) -> None:
    cfg = write_config(tmp_path / "said.toml", SMALL.format(endpoints=_tcp(host, "plaintext = true")))
    proc = xmc("check", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok:")


@pytest.mark.parametrize("extra, path, why", [
    ('curve_keys = "keys"\nplaintext = true', "endpoints.plaintext", "choose one"),
    ('curve_keys = "no-such-keys"', "endpoints.curve_keys", "no such directory"),
])
def test_check_tcp_curve_keys_misconfigured_exits_2_naming_key(tmp_path: Path, extra: str, path: str, why: str) -> None:
    cfg = write_config(tmp_path / "keys.toml", SMALL.format(endpoints=_tcp("127.0.0.1", extra)))
    xmc("keys", "init", str(tmp_path / "keys"), "--actor", "simex", "--actor", "ingest_fx", "--operator", "alice", check=True)
    proc = xmc("check", str(cfg))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert any(path in ln and why in ln for ln in proc.stderr.splitlines()), proc.stderr


@pytest.mark.slow
def test_plaintext_tcp_loopback_run_status_shows_plaintext(tmp_path: Path, run_dir: Path) -> None:
    cfg = write_config(tmp_path / "loop.toml", SMALL.format(endpoints=_tcp("127.0.0.1")))
    assert xmc("check", str(cfg)).returncode == 0  # loopback only: allowed without keys
    xmc("up", str(cfg), "--detach", run_dir=run_dir, check=True)
    doc = status(run_dir)
    assert doc["supervisor"]["bus"] == {"security": "plaintext", "authenticated": False, "refused": {}}
    assert all(not any(k.startswith("refused.") for k in a["detail"]) for a in doc["actors"])
    warn = log_records(run_dir, "supervisor", "bus_unauthenticated")
    assert warn and warn[0]["transport"] == "tcp" and warn[0]["level"] == "warning"


# ---- 4. ipc: the run dir is private ------------------------------------------------------------------


@pytest.mark.slow
def test_ipc_run_dir_and_sock_folder_mode_0700_after_up(tmp_path: Path, run_dir: Path) -> None:
    cfg = write_config(tmp_path / "ipc.toml", SMALL.format(endpoints='transport = "ipc"'))
    os.chmod(run_dir, 0o755)  # as a shared /tmp folder would be; `xmc up` must close it
    (run_dir / "sock").mkdir(mode=0o755)
    os.chmod(run_dir / "sock", 0o755)
    xmc("up", str(cfg), "--detach", run_dir=run_dir, check=True)
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((run_dir / "sock").stat().st_mode) == 0o700
    assert {"ingest_fx.cmd", "ingest_fx.pub"} <= {p.name for p in (run_dir / "sock").iterdir()}
    assert status(run_dir)["supervisor"]["bus"]["security"] == "ipc"
