"""The supervisor: starts every configured actor as its own process, waits for the
ready handshake, restarts crashed or silent actors with backoff, gives up on a
crash loop (faulted), relays the kill switch, and answers the CLI.

Files it keeps in the run dir: `supervisor.json` (pid, endpoints; present while
it runs), `status.json` (the last status, rewritten twice a second),
`logs/supervisor.jsonl` and `logs/<actor>.stderr` (what an actor printed,
tracebacks included).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import msgspec
import zmq

from actors.logs import setup_logging
from actors.secrets import register as register_secret, register_config as register_config_secrets
from bus.codec import FrameError
from bus.command import CommandServer
from bus.endpoints import Endpoints
from bus.messages import ActorState, CmdAck, Control, ControlAudit, Heartbeat, KillSwitch
from bus.security import DOMAIN_ACTORS, DOMAIN_OPERATORS, BusSecurity, RefusalWatch, private_dir
from configs.schema import TICK_PATH, Config

HOT_KINDS = {"simex", "ingest", "trigger", "executor"}  # full scheduling priority
STOP_ORDER = ({"trigger"}, {"executor"}, {"marginwatch", "ingest"}, {"simex"}, {"journal"})


class ActorProc:
    """What the supervisor knows of one actor."""

    def __init__(self, name: str, kind: str, external: bool = False) -> None:
        self.name = name
        self.kind = kind
        self.external = external  # started and restarted by someone else (docker-compose)
        self.proc: subprocess.Popen[bytes] | None = None
        self.state = ActorState.STOPPED
        self.restarts = 0
        self.crashes: collections.deque[float] = collections.deque()
        self.consecutive = 0
        self.started = 0.0
        self.last_hb = 0.0
        self.hb: Heartbeat | None = None
        self.epoch = 0
        self.restart_due: float | None = None
        self.expected_exit = False

    @property
    def pid(self) -> int | None:
        if self.external:
            return self.hb.pid if self.hb is not None and self.state.live else None
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def view(self, now: float) -> dict:
        hb = self.hb
        return {
            "name": self.name,
            "kind": self.kind,
            "pid": self.pid,
            "state": self.state.value,
            "restarts": self.restarts,
            "heartbeat_age_s": round(now - self.last_hb, 3) if self.last_hb else None,
            "msgs_in": hb.msgs_in if hb else 0,
            "msgs_out": hb.msgs_out if hb else 0,
            "decode_errors": hb.decode_errors if hb else 0,
            "gaps": hb.gaps if hb else 0,
            "dups": hb.dups if hb else 0,
            "detail": dict(hb.detail) if hb else {},
        }


class Supervisor:
    def __init__(self, config_path: str | Path, cfg: Config, run_dir: str | Path, duration: float | None = None,
                 external: bool = False) -> None:
        self.config_path = str(Path(config_path).resolve())
        self.cfg = cfg
        self.run_dir = Path(run_dir).resolve()
        self.duration = duration
        self.eps = Endpoints(cfg, self.run_dir)
        self.external = external
        self.actors = {n: ActorProc(n, a.kind, external) for n, a in cfg.actors.items() if a.enabled}
        self.kill = KillSwitch(halted=False, reason="", ts_ns=time.monotonic_ns())
        self.decode_errors = 0
        self._stop = False
        self._stop_reason = ""
        self.epoch = time.time_ns()
        self.tick_hooks: list[Callable[[], None]] = []  # called every loop turn (e.g. the live view)
        self.stop_hooks: list[Callable[[], None]] = []

    # ---- setup ------------------------------------------------------------------

    def start(self) -> None:
        private_dir(self.run_dir)  # the run dir and its sockets are the owner's alone
        for sub in ("logs", "sock", "state"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        private_dir(self.run_dir / "sock")
        self.log = setup_logging(self.run_dir, "supervisor", self.cfg.run.log_level)
        register_config_secrets(self.cfg)
        self.ctx = zmq.Context.instance()
        self.security = BusSecurity(self.cfg, "supervisor")
        if self.security.enabled:
            register_secret(self.security.secret_text)
            self.security.start(self.ctx)
        self.refusals: list[RefusalWatch] = []
        self.ctl_sock = self.ctx.socket(zmq.ROUTER)
        self.ctl_sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # a restarted actor takes over its routing id; not with CURVE (a routing id is bound to its key)
        self.ctl_sock.setsockopt(zmq.ROUTER_HANDOVER, 0 if self.security.enabled else 1)
        self.ctl_sock.setsockopt(zmq.LINGER, 0)
        self._listen(self.ctl_sock, self.eps.supervisor_ctl(), "ctl", DOMAIN_ACTORS)  # actors report here
        self.ctl = CommandServer(self.ctl_sock, "supervisor", self.epoch, authenticated=self.security.enabled)
        self.cli_sock = self.ctx.socket(zmq.ROUTER)
        self.cli_sock.setsockopt(zmq.LINGER, 0)
        self._listen(self.cli_sock, self.eps.supervisor_cli(), "cli", DOMAIN_OPERATORS)  # operators only
        self.cli = CommandServer(self.cli_sock, "supervisor", self.epoch, authenticated=self.security.enabled)
        if self.security.mode == "plaintext":
            self.log.warning("bus_unauthenticated", transport="tcp", host=self.cfg.endpoints.host,
                             note="endpoints.plaintext: anyone who reaches these ports can command the run")
        info = {"pid": os.getpid(), "config": self.config_path, "cli": self.eps.supervisor_cli(), "started_unix": time.time()}
        (self.run_dir / "supervisor.json").write_text(json.dumps(info))
        self.log.info("supervisor_started", config=self.config_path, actors=sorted(self.actors), external=self.external)
        for a in self.actors.values():
            if self.external:
                a.state, a.started = ActorState.STARTING, time.monotonic()
            else:
                self._spawn(a)

    def _listen(self, sock: zmq.Socket, endpoint: str, label: str, domain: str) -> None:
        self.security.server(sock, domain)
        if self.security.enabled:
            self.refusals.append(RefusalWatch(sock, label))
        sock.bind(self.eps.bindable(endpoint))

    def _drain_refusals(self) -> None:
        for watch in self.refusals:
            self.security.log_refusals(watch, self.log)

    def _spawn(self, a: ActorProc) -> None:
        env = dict(os.environ)
        if self.cfg.run.cpu_profile == "latency" and (os.cpu_count() or 1) >= 2:
            env["XMC_CPUS"] = "0" if a.kind in TICK_PATH else "1"
        # the tick's path wins the CPU when a tick wakes everyone at once
        env["XMC_NICE"] = "0" if a.kind in HOT_KINDS else str(self.cfg.run.background_nice)
        env.pop("XMC_RT", None)
        if self.cfg.run.realtime_priority and a.kind in TICK_PATH:
            env["XMC_RT"] = str(self.cfg.run.realtime_priority)
        err = open(self.run_dir / "logs" / f"{a.name}.stderr", "ab")
        a.proc = subprocess.Popen(
            [sys.executable, "-m", "actors.run", a.name, self.config_path, str(self.run_dir)],
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
        err.close()
        a.state = ActorState.STARTING
        a.started = time.monotonic()
        a.last_hb = 0.0
        a.hb = None
        a.restart_due = None
        a.expected_exit = False
        self.log.info("actor_spawned", target=a.name, kind=a.kind, child_pid=a.proc.pid)

    # ---- loop ---------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        self._stop = True
        self._stop_reason = reason

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop("SIGTERM"))
        signal.signal(signal.SIGINT, lambda *_: self.request_stop("SIGINT"))
        poller = zmq.Poller()
        poller.register(self.ctl_sock, zmq.POLLIN)
        poller.register(self.cli_sock, zmq.POLLIN)
        for watch in self.refusals:
            poller.register(watch.monitor, zmq.POLLIN)
        end = time.monotonic() + self.duration if self.duration else None
        next_status = 0.0
        while not self._stop:
            for sock, _ in poller.poll(100):
                if sock is self.ctl_sock:
                    self._drain_ctl()
                elif sock is self.cli_sock:
                    self._drain_cli()
                else:
                    self._drain_refusals()
            now = time.monotonic()
            self._check_children(now)
            if now >= next_status:
                self.write_status()
                next_status = now + 0.5
            for hook in self.tick_hooks:
                hook()
            if end is not None and now >= end:
                self.request_stop("duration elapsed")
        for hook in self.stop_hooks:
            hook()
        return self.shutdown()

    def _drain_ctl(self) -> None:
        while True:
            try:
                peer, env = self.ctl.recv()
            except zmq.Again:
                return
            except FrameError as exc:
                self._bad("supervisor.ctl", str(exc))
                continue
            a = self.actors.get(peer.decode("utf-8", "replace"))
            if self.security.enabled and (a is None or self.security.who(self.ctl.user_id) != a.name):
                self._bad("supervisor.ctl", f"BUS_IDENTITY_MISMATCH: claimed={peer.decode('utf-8', 'replace')} "
                                            f"sender={self.security.who(self.ctl.user_id)}")
                continue
            body = env.body
            if a is not None and isinstance(body, Control) and body.cmd == "halt":
                self.log.error("halt_requested", by=a.name, reason=body.args.get("reason", ""))
                self._cli(Control(cmd="halt", args={"reason": f"{a.name}: {body.args.get('reason', '')}"}), by=a.name)
                continue
            if a is None or not isinstance(body, Heartbeat):
                self._bad("supervisor.ctl", f"unexpected {type(body).__name__} from {peer!r}")
                continue
            if a.external:
                # a container restart may reuse the pid (pid 1): the actor's epoch tells a new process
                if a.hb is not None and (body.pid != a.hb.pid or env.epoch != a.epoch):
                    a.restarts += 1
                    a.state = ActorState.STARTING
                    self.log.warning("actor_restarted_externally", target=a.name, child_pid=body.pid)
            elif a.proc is None or body.pid != a.proc.pid:
                continue  # a late heartbeat of a process already replaced
            first_ready = a.state in (ActorState.STARTING, ActorState.STOPPED) and body.state.live
            a.hb = body
            a.epoch = env.epoch
            a.last_hb = time.monotonic()
            # FAULTED is the supervisor's verdict on a crash loop; an actor reporting its own start
            # failure is about to exit and be restarted
            if (a.state != ActorState.FAULTED or a.external) and body.state != ActorState.FAULTED:
                a.state = body.state
            if first_ready:
                a.consecutive = 0
                self.log.info("actor_ready", target=a.name, child_pid=body.pid, startup_s=round(a.last_hb - a.started, 3))
                self.ctl.send(peer, 0, self.kill)

    def _bad(self, source: str, reason: str) -> None:
        self.decode_errors += 1
        if self.decode_errors == 1 or self.decode_errors % 1000 == 0:
            self.log.warning("frame_dropped", source=source, reason=reason, count=self.decode_errors)

    def _check_children(self, now: float) -> None:
        run = self.cfg.run
        for a in self.actors.values():
            if a.external:
                if a.state.live and now - a.last_hb > run.heartbeat_timeout_s:
                    a.state = ActorState.STOPPED
                    self.log.error("actor_silent", target=a.name, heartbeat_age_s=round(now - a.last_hb, 3),
                                   note="external actor: its restart is up to the container runtime")
                continue
            if a.proc is None:
                if a.restart_due is not None and now >= a.restart_due:
                    a.restarts += 1
                    self._spawn(a)
                continue
            code = a.proc.poll()
            if code is not None:
                self._on_exit(a, code, now)
                continue
            if a.state == ActorState.STARTING and now - a.started > run.ready_timeout_s:
                self.log.error("actor_not_ready", target=a.name, timeout_s=run.ready_timeout_s)
                self._kill9(a)
            elif a.state.live and now - a.last_hb > run.heartbeat_timeout_s:
                self.log.error("actor_silent", target=a.name, heartbeat_age_s=round(now - a.last_hb, 3))
                self._kill9(a)

    def _kill9(self, a: ActorProc) -> None:
        if a.proc is not None and a.proc.poll() is None:
            try:
                os.killpg(a.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _on_exit(self, a: ActorProc, code: int, now: float) -> None:
        a.proc = None
        if a.expected_exit:
            self.log.info("actor_restarting", target=a.name, exit_code=code)
            a.restart_due = now
            a.state = ActorState.STARTING
            return
        run = self.cfg.run
        a.crashes.append(now)
        while a.crashes and now - a.crashes[0] > run.restart_window_s:
            a.crashes.popleft()
        a.consecutive += 1
        if len(a.crashes) >= run.max_restarts:
            a.state = ActorState.FAULTED
            a.restart_due = None
            self.log.error("actor_faulted", target=a.name, exit_code=code, crashes=len(a.crashes), window_s=run.restart_window_s,
                           code="SUPERVISOR_FAULTED: actor=" + a.name)
            return
        backoff = min(run.restart_backoff_s * 2 ** (a.consecutive - 1), run.restart_backoff_max_s)
        a.state = ActorState.STARTING
        a.restart_due = now + backoff
        self.log.error("actor_crashed", target=a.name, exit_code=code, restart_in_s=round(backoff, 3), crashes=len(a.crashes))

    # ---- CLI -------------------------------------------------------------------------

    def _drain_cli(self) -> None:
        while True:
            try:
                peer, env = self.cli.recv()
            except zmq.Again:
                return
            except FrameError as exc:
                self._bad("supervisor.cli", str(exc))
                continue
            if not isinstance(env.body, Control):
                self._bad("supervisor.cli", f"unexpected {type(env.body).__name__}")
                continue
            ctl = env.body
            by = self.security.who(self.cli.user_id)
            reply = self._cli(ctl, by)
            if ctl.cmd != "status":  # a query changes nothing; every command is on record with its sender
                self.log.warning("control_command", cmd=ctl.cmd, args=ctl.args, by=by, ok=reply.ok, reason=reply.reason)
                self._audit(ControlAudit(cmd=ctl.cmd, args=dict(ctl.args), by=by, ok=reply.ok, reason=reply.reason,
                                         ts_ns=time.time_ns()))
            self.cli.send(peer, env.seq, reply)

    def _audit(self, audit: ControlAudit) -> None:
        """To every journal, over the channel the kill switch takes."""
        for a in self.actors.values():
            if a.kind == "journal" and a.pid is not None:
                self.ctl.send(a.name.encode(), 0, audit)

    def _cli(self, ctl: Control, by: str = "") -> CmdAck:
        if ctl.cmd == "status":
            return CmdAck(ok=True, data={"json": json.dumps(self.status())})
        if ctl.cmd == "down":
            self.request_stop("xmc down")
            return CmdAck(ok=True)
        if ctl.cmd == "restart":
            a = self.actors.get(ctl.args.get("actor", ""))
            if a is None:
                return CmdAck(ok=False, reason=f"ACTOR_UNKNOWN: actor={ctl.args.get('actor', '')}")
            if a.external:
                return CmdAck(ok=False, reason=f"SUPERVISOR_EXTERNAL: actor={a.name} is restarted by its container runtime")
            self.log.info("actor_restart_requested", target=a.name)
            a.crashes.clear()
            a.consecutive = 0
            if a.proc is not None and a.proc.poll() is None:
                a.expected_exit = True
                a.proc.terminate()
            else:
                a.restart_due = time.monotonic()
            return CmdAck(ok=True)
        if ctl.cmd in ("halt", "resume"):
            halted = ctl.cmd == "halt"
            reason = ctl.args.get("reason", "operator") if halted else ""
            self.kill = KillSwitch(halted=halted, reason=reason, ts_ns=time.monotonic_ns(), by=by)
            self.log.warning("kill_switch", halted=halted, reason=reason, by=by)
            for a in self.actors.values():
                if a.pid is not None:
                    self.ctl.send(a.name.encode(), 0, self.kill)
            return CmdAck(ok=True)
        return CmdAck(ok=False, reason=f"CONTROL_UNKNOWN: cmd={ctl.cmd}")

    # ---- status and shutdown -----------------------------------------------------------

    def status(self) -> dict:
        now = time.monotonic()
        return {
            "supervisor": {"pid": os.getpid(), "config": self.config_path, "decode_errors": self.decode_errors,
                           "kill_switch": {"halted": self.kill.halted, "reason": self.kill.reason, "by": self.kill.by},
                           "bus": {"security": self.security.mode, "authenticated": self.security.mode != "plaintext",
                                   "refused": {w.name: w.total for w in self.refusals}}},
            "actors": [a.view(now) for a in self.actors.values()],
        }

    def write_status(self) -> None:
        tmp = self.run_dir / "status.json.tmp"
        tmp.write_text(json.dumps(self.status()))
        tmp.replace(self.run_dir / "status.json")

    def shutdown(self) -> int:
        """Stop actors in dependency order: no new signals first, the executor flattens while
        the venue still answers, and the journal goes last so it records everything."""
        self.log.info("supervisor_stopping", reason=self._stop_reason)
        for kinds in STOP_ORDER:
            live = [a for a in self.actors.values() if a.kind in kinds and a.proc is not None and a.proc.poll() is None]
            for a in live:
                a.state = ActorState.STOPPING
                a.proc.terminate()  # type: ignore[union-attr]
            deadline = time.monotonic() + self.cfg.run.stop_timeout_s
            for a in live:
                try:
                    a.proc.wait(max(0.0, deadline - time.monotonic()))  # type: ignore[union-attr]
                except subprocess.TimeoutExpired:
                    self.log.error("actor_stop_timeout", target=a.name)
                    self._kill9(a)
                    a.proc.wait()  # type: ignore[union-attr]
        faulted = [a.name for a in self.actors.values() if a.state == ActorState.FAULTED]
        for a in self.actors.values():
            if a.state != ActorState.FAULTED:
                a.state = ActorState.STOPPED
            a.proc = None
        self.write_status()
        for watch in self.refusals:
            watch.close()
        self.ctl_sock.close(0)
        self.cli_sock.close(0)
        self.security.stop()
        (self.run_dir / "supervisor.json").unlink(missing_ok=True)
        self.log.info("supervisor_stopped", faulted=faulted)
        return 1 if faulted else 0


def run_dir_processes(run_dir: str | Path) -> list[int]:
    """Live actor and supervisor processes started for this run dir (found by their command line)."""
    marker = str(Path(run_dir).resolve())
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = [a.decode("utf-8", "replace") for a in (proc / "cmdline").read_bytes().split(b"\0")]
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]  # the name may hold spaces
        except (OSError, IndexError):
            continue
        if state != "Z" and marker in args and ("actors.run" in args or "actors.supervisor" in args):
            pids.append(int(proc.name))
    return pids


def read_status_file(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / "status.json"
    try:
        return msgspec.json.decode(path.read_bytes())
    except (FileNotFoundError, msgspec.DecodeError):
        return None


def main(argv: list[str]) -> int:
    """`python -m actors.supervisor CONFIG RUN_DIR [DURATION] [external]`: the detached supervisor."""
    from configs.load import ConfigInvalid, load_config

    config, run_dir = argv[0], argv[1]
    duration = float(argv[2]) if len(argv) > 2 and argv[2] else None
    external = len(argv) > 3 and argv[3] == "external"
    try:
        cfg = load_config(config)
    except ConfigInvalid as exc:
        print(exc, file=sys.stderr)
        return 2
    sup = Supervisor(config, cfg, run_dir, duration, external)
    sup.start()
    return sup.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
