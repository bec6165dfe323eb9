"""The bus over tcp with actors started by someone else (as docker-compose does):
the supervisor in --external mode watches their heartbeats, relays the kill
switch and notices a restart it did not make."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path

from helpers import ROOT, actor, wait_for, write_config, xmc


def _free_base_port(span: int = 40) -> int:
    """A base port whose next `span` ports are free right now on loopback."""
    for _ in range(50):
        base = random.randint(20_000, 60_000)
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


def _start_actor(name: str, cfg: Path, run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "actors.run", name, str(cfg), str(run_dir)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def test_external_actors_over_tcp_are_watched_halted_and_their_restart_noticed(tmp_path: Path, run_dir: Path) -> None:
    cfg = write_config(tmp_path / "tcp.toml", f"""
[run]
heartbeat_s = 0.2
heartbeat_timeout_s = 1.5
[endpoints]
transport = "tcp"
host = "127.0.0.1"
base_port = {_free_base_port()}
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
sim = {{ start = 7.2, interval_ms = 20 }}
[actors.simex]
kind = "simex"
[actors.ingest_fx]
kind = "ingest"
venue = "FX"
""")
    xmc("up", str(cfg), "--external", "--detach", run_dir=run_dir, check=True)
    procs = {name: _start_actor(name, cfg, run_dir) for name in ("simex", "ingest_fx")}
    try:
        wait_for(lambda: all(actor(run_dir, n)["state"] == "running" for n in procs), 60, "external actors running")
        wait_for(lambda: actor(run_dir, "ingest_fx")["detail"].get("USDCNH/s", 0) > 0, 20, "quotes over tcp")

        xmc("halt", "--reason", "compose drill", run_dir=run_dir, check=True)
        log = run_dir / "logs" / "ingest_fx.jsonl"
        wait_for(lambda: '"reason":"compose drill"' in log.read_text(), 10, "kill switch over tcp")
        assert xmc("restart", "simex", run_dir=run_dir).returncode == 1  # not the supervisor's to restart

        os.killpg(procs["ingest_fx"].pid, signal.SIGKILL)
        procs["ingest_fx"].wait()
        wait_for(lambda: actor(run_dir, "ingest_fx")["state"] == "stopped", 20, "silent actor marked stopped")
        procs["ingest_fx"] = _start_actor("ingest_fx", cfg, run_dir)
        a = wait_for(lambda: (x := actor(run_dir, "ingest_fx"))["state"] == "running" and x["restarts"] == 1 and x, 60,
                     "restart noticed")
        assert a["pid"] == procs["ingest_fx"].pid
        wait_for(lambda: '"reason":"compose drill"' in log.read_text().split('"event":"actor_starting"')[-1], 10,
                 "kill switch re-sent to the restarted actor")
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(15)
