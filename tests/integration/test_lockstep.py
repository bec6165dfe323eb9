"""Lockstep survives crashes: a kill -9 of the trigger or the executor mid-run does not stall the
paced market (simex announces a late step again, the restarted executor finishes its trades from
its write-ahead log) and no trade is left in flight or broken."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from helpers import ROOT, actor, log_records, wait_for, xmc

pytestmark = pytest.mark.slow

STEPS = 5000  # long enough that the executor's kill lands while the market runs (asserted below)


def _step(run_dir: Path) -> float:
    return actor(run_dir, "simex")["detail"].get("lockstep_step", 0.0)


def _kill(run_dir: Path, name: str) -> None:
    before = actor(run_dir, name)
    os.kill(before["pid"], signal.SIGKILL)
    wait_for(lambda: (a := actor(run_dir, name))["restarts"] == before["restarts"] + 1 and a["state"] == "running",
             30, f"{name} restarted")


def test_lockstep_market_closes_after_trigger_and_executor_kill9_with_no_trade_in_flight(
        tmp_path: Path, run_dir: Path) -> None:
    cfg = tmp_path / "ls.toml"
    cfg.write_text(f'include = ["{ROOT / "configs" / "lockstep.toml"}"]\n'
                   f'[run]\nheartbeat_s = 0.1\nrestart_backoff_s = 0.1\n[run.lockstep]\nsteps = {STEPS}\n')
    xmc("up", str(cfg), "--detach", run_dir=run_dir, check=True)
    try:
        wait_for(lambda: _step(run_dir) >= 250, 60, "250 market steps")
        _kill(run_dir, "trigger")
        # status lags the market by up to a few hundred steps, and with a fast path the market may
        # close soon after the restart: moving 250 steps on, or to its close, is moving again
        target = min(_step(run_dir) + 250, STEPS)
        wait_for(lambda: _step(run_dir) >= target, 60, "the market moving again after the trigger's restart")
        _kill(run_dir, "executor")
        wait_for(lambda: actor(run_dir, "simex")["detail"].get("lockstep_closed") == 1.0, 120,
                 f"the market to close after {STEPS} steps")
        wait_for(lambda: actor(run_dir, "executor")["detail"].get("open_trades", 1) == 0, 30, "no trade open")
    finally:
        xmc("down", run_dir=run_dir, timeout=60)
    trades = json.loads(xmc("trades", "--json", run_dir=run_dir, check=True).stdout)
    assert len(trades) >= 20
    assert all(t["terminal"] and t["state"] != "BROKEN" for t in trades), [t for t in trades if not t["terminal"]]
    simex_log = log_records(run_dir, "simex")
    assert any(e["event"] == "lockstep_reannounce" for e in simex_log)  # the step the dead trigger never answered
    closed = next(e["ts"] for e in simex_log if e["event"] == "lockstep_closed")
    executor_ready = [e["ts"] for e in log_records(run_dir, "executor", "actor_ready")]
    assert len(executor_ready) == 2 and executor_ready[1] < closed, "the executor's kill -9 must land mid-market"
