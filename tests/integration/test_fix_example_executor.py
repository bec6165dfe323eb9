"""xmc against a FIX venue it did not write: QuickFIX's own example executor (Debian's
libquickfix-doc), in its own process on loopback. The executor logs on, pair trades' GC
legs go out as NewOrderSingle and come back filled, and the fills reach the journal,
marginwatch and `xmc trades`. GC's quotes come over FIX from simex (`md_only`): the
example executor has no market data."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from bus.auditstore import AuditReader
from fixpeer import ExamplePeer, free_port
from helpers import ROOT, actor, status, wait_for, xmc

pytestmark = pytest.mark.slow


def _config(peer_port: int, md_port: int) -> str:
    return f"""include = ["{ROOT / 'configs' / 'demo.toml'}"]

[run]
heartbeat_s = 0.2

[venues.SHFE]
sim = {{ ack_latency_ms = 0.5, fill_latency_ms = 1.0, reject_rate = 0.0, partial_rate = 0.0, drop_rate = 0.0 }}

[venues.COMEX]
kind = "fix"

[venues.COMEX.fix]
port = {peer_port}
version = "FIX.4.2"
sender_comp_id = "XMC"
target_comp_id = "EXECUTOR"
heartbeat_s = 5
reconnect_s = 1
symbols = {{ GC = "GC" }}
market_orders = false     # the example executor rejects OrdType market
status_requests = false   # ... and answers OrderStatusRequest with a BusinessMessageReject
md = {{ sender_comp_id = "XMC-MD", target_comp_id = "SIMEX-MD", port = {md_port} }}

[pairs.au_gc]
entry = 1.0
exit = 0.2
cooldown_ms = 50
warmup_ticks = 20
rollback_far_ticks = 20

[actors.simex]
kind = "simex"
venues = ["SHFE", "COMEX", "HKEX", "FX"]
md_only = ["COMEX"]
"""


def test_pair_trades_against_quickfix_example_executor_fill_and_reach_journal_marginwatch_and_trades(
        tmp_path: Path, run_dir: Path) -> None:
    peer = ExamplePeer(tmp_path / "peer", free_port(), target="XMC")
    try:
        cfg = tmp_path / "peer.toml"
        cfg.write_text(_config(peer.port, free_port()))
        assert xmc("check", str(cfg)).returncode == 0, xmc("check", str(cfg)).stderr
        xmc("up", str(cfg), "--detach", run_dir=run_dir, check=True, timeout=120)
        wait_for(lambda: {(s["actor"], s["state"]) for s in status(run_dir)["fix_sessions"]} >= {
            ("executor", "LOGGED_ON"), ("ingest_comex", "LOGGED_ON")}, 30, "logon to the example executor and simex md")

        def gc_filled() -> list | None:
            trades = json.loads(xmc("trades", "--json", run_dir=run_dir, check=True).stdout)
            done = [t for t in trades if t["pair"] == "au_gc" and t["state"] == "COMPLETED"]
            return trades if len(done) >= 2 else None

        wait_for(gc_filled, 90, "two au_gc trades completed with their GC leg filled over FIX")
        xmc("halt", "--reason", "end of test", run_dir=run_dir, check=True)
        trades = wait_for(lambda: (ts := json.loads(xmc("trades", "--json", run_dir=run_dir, check=True).stdout))
                          and actor(run_dir, "executor")["detail"].get("open_trades", 1) == 0
                          and all(t["terminal"] for t in ts) and ts, 60, "every trade terminal")
        assert "BROKEN" not in {t["state"] for t in trades}
        net: dict[str, int] = defaultdict(int)
        for t in trades:
            for leg in t["legs"]:
                net[leg["instrument"]] += leg["net_qty"]
        gc = [leg for t in trades if t["state"] == "COMPLETED" for leg in t["legs"] if leg["instrument"] == "GC"]
        assert gc and all(leg["filled_qty"] == leg["target_qty"] and leg["avg_price"] > 0 for leg in gc), gc

        # the executor's fill stream in the journal: GC fills from the example executor
        reader = AuditReader(run_dir / "journal.sqlite")
        fills = [r["body"] for r in reader.rows("kind = 'OrderEvent' AND topic = 'exec.fill.COMEX'")]
        orders = [r["body"] for r in reader.rows("kind = 'OrderRequest' AND topic = 'exec.order.COMEX'")]
        reader.close()
        assert fills and all(f["venue"] == "COMEX" and f["last_px"] > 0 for f in fills)
        assert sum((1 if f["side"] == "BUY" else -1) * f["last_qty"] for f in fills) == net["GC"]
        assert all(o["price"] is not None for o in orders)  # no market order reached a venue without them
        # marginwatch holds the same positions
        wait_for(lambda: {k[4:]: v for k, v in actor(run_dir, "marginwatch")["detail"].items()
                          if k.startswith("pos.") and v} == {k: v for k, v in net.items() if v},
                 20, f"marginwatch positions == trades' positions {dict(net)}")
        detail = actor(run_dir, "executor")["detail"]
        assert detail["fix.COMEX.reports"] >= len(gc) and detail.get("fix.COMEX.bad_messages", 0) == 0
        log = (run_dir / "logs" / "executor.jsonl").read_text()
        assert '"event":"fix_session_logon"' in log and '"venue":"COMEX"' in log
    finally:
        xmc("down", run_dir=run_dir, timeout=60)
        peer.stop()
