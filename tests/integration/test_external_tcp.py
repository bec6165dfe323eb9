"""The bus over tcp with actors started by someone else (as docker-compose does):
the supervisor in --external mode watches their heartbeats, relays the kill
switch and notices a restart it did not make."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from helpers import FX_ONLY, ROOT, actor, free_base_port, wait_for, write_config, xmc


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
base_port = {free_base_port()}
""" + FX_ONLY)
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
