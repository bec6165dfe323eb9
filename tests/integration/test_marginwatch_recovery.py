"""Margin watch keeps the desk's true positions: fills the executor learnt from a
status answer after a lost report count too, and a kill -9 of marginwatch loses
none of them (it takes the executor's durable execution stream again from its first event)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest

from helpers import actor, demo_with, wait_for, xmc

pytestmark = pytest.mark.slow

CONFIG = demo_with(reject=0.05, partial=0.2, drop=0.2) + """
[accounts.cn]
balance = 50000000.0

[accounts.hk]
balance = 80000000.0
"""


def _venue_net(run_dir: Path) -> dict[str, float]:
    net: dict[str, float] = defaultdict(float)
    for line in (run_dir / "state" / "simex-fills.jsonl").read_text().splitlines():
        f = json.loads(line)
        net[f["instrument"]] += (1 if f["side"] == "BUY" else -1) * f["last_qty"]
    return {k: v for k, v in net.items() if v}


def _watched(run_dir: Path) -> dict[str, float]:
    detail = actor(run_dir, "marginwatch")["detail"]
    return {k[4:]: v for k, v in detail.items() if k.startswith("pos.") and v}


def _freeze_holding_positions(run_dir: Path) -> dict[str, float]:
    """Halt once the run has sent 40 orders and holds a position; while it happens to be flat when
    halted (its pair trades closed out), resume and halt again 10 orders later."""
    orders = 40
    deadline = time.monotonic() + 150
    while True:
        wait_for(lambda: actor(run_dir, "executor")["detail"].get("orders", 0) >= orders, 90, f"{orders} orders")
        xmc("halt", "--reason", "freeze positions", run_dir=run_dir, check=True)
        wait_for(lambda: actor(run_dir, "executor")["detail"].get("open_trades", 1) == 0, 30, "no trade open")
        venue = _venue_net(run_dir)
        if venue:
            return venue
        assert time.monotonic() < deadline, "the run was flat every time it was halted"
        xmc("resume", run_dir=run_dir, check=True)
        orders += 10


def test_marginwatch_positions_match_the_venue_through_lost_reports_and_a_kill9(tmp_path: Path, run_dir: Path) -> None:
    cfg = tmp_path / "mw.toml"
    cfg.write_text(CONFIG)
    xmc("up", str(cfg), "--detach", run_dir=run_dir, check=True)
    venue = _freeze_holding_positions(run_dir)
    dropped = sum(v for k, v in actor(run_dir, "simex")["detail"].items() if k.endswith("lost_reports"))
    assert dropped > 0, "the run should have lost some reports"
    wait_for(lambda: _watched(run_dir) == venue, 20, f"marginwatch positions == venue fills {venue}")

    before = actor(run_dir, "marginwatch")
    os.kill(before["pid"], signal.SIGKILL)
    wait_for(lambda: (a := actor(run_dir, "marginwatch"))["restarts"] == 1 and a["state"] == "running", 30,
             "marginwatch restarted")
    wait_for(lambda: _watched(run_dir) == venue, 20, f"restarted marginwatch positions == venue fills {venue}")
