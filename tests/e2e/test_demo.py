"""The demo end to end, as `make run` runs it: real processes, the demo config with a
fixed seed, a short duration; then the operator's tools on the run directory."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from bus.auditstore import AuditReader
from helpers import ROOT, actor, wait_for, xmc

pytestmark = pytest.mark.slow

DURATION = "18"


def _run(tmp_path: Path, run_dir: Path) -> list[dict]:
    cfg = tmp_path / "demo-short.toml"
    cfg.write_text(f'include = ["{ROOT / "configs" / "demo.toml"}"]\n')
    proc = xmc("up", str(cfg), "--duration", DURATION, run_dir=run_dir, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(xmc("trades", "--json", run_dir=run_dir, check=True).stdout)


def _venue_fills(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "state" / "simex-fills.jsonl").read_text().splitlines()]


def test_demo_trades_end_terminal_flat_or_in_ratio_and_every_hop_is_traced(tmp_path: Path, run_dir: Path) -> None:
    trades = _run(tmp_path, run_dir)

    states = {t["state"] for t in trades}
    assert len(trades) >= 5, trades
    assert "BROKEN" not in states
    assert all(t["terminal"] for t in trades), [t for t in trades if not t["terminal"]]
    assert len(states) >= 2, states
    for t in trades:
        a, b = t["legs"]
        if t["state"] == "COMPLETED":
            ratio = a["target_qty"] / b["target_qty"]
            assert a["filled_qty"] > 0 and a["filled_qty"] / b["filled_qty"] == ratio, t
            assert abs(a["net_qty"]) == a["filled_qty"] and abs(b["net_qty"]) == b["filled_qty"], t
        else:
            assert a["net_qty"] == 0 and b["net_qty"] == 0, t

    # the journal holds every fill the venue made, one for one, and the trades' positions match them
    fills = _venue_fills(run_dir)
    reader = AuditReader(run_dir / "journal.sqlite")
    journalled = [r["body"] for r in reader.rows("kind = 'OrderEvent' AND src = 'simex' AND topic LIKE 'venue.fill.%'")]
    assert sorted((f["venue"], f["exec_id"]) for f in journalled) == sorted((f["venue"], f["exec_id"]) for f in fills)
    position: dict[tuple[str, str], int] = defaultdict(int)
    for f in fills:
        position[(f["cl_ord_id"].rsplit(".", 1)[0], f["instrument"])] += (1 if f["side"] == "BUY" else -1) * f["last_qty"]
    for t in trades:
        for leg in t["legs"]:
            assert position[(t["trade_id"], leg["instrument"])] == leg["net_qty"], (t["trade_id"], leg)

    # every trade's trace has all its hops
    for t in trades:
        doc = json.loads(xmc("trace", t["trade_id"], "--json", run_dir=run_dir, check=True).stdout)
        kinds = {e["kind"] for e in doc["events"]}
        assert {"Signal", "OrderRequest", "OrderEvent", "PairTradeEvent"} <= kinds, (t["trade_id"], kinds)
        assert kinds & {"Quote", "FxRate"}, (t["trade_id"], "no triggering tick", kinds)
        lat = doc["latency_us"]
        for hop in ("tick_to_signal", "signal_to_orders", "tick_to_trade", "sent_to_ack"):
            assert lat[hop] is not None and lat[hop] >= 0, (t["trade_id"], hop, lat)

    # the operator's other views work on the same run
    report = json.loads(xmc("report", "--json", run_dir=run_dir, check=True).stdout)
    assert report["trades"] == len(trades) and Path(report["chart"]).stat().st_size > 10_000
    assert report["tick_to_trade_us"]["n"] > 0
    day = json.loads(xmc("audit", "export", "--day", _first_day(reader), "--format", "json", run_dir=run_dir, check=True).stdout)
    assert any(e["kind"] == "PairTradeEvent" for e in day)
    one = trades[0]["trade_id"]
    lines = xmc("logs", "--trade", one, run_dir=run_dir, check=True).stdout.splitlines()
    actors = {json.loads(line)["actor"] for line in lines}
    assert "executor" in actors and all(one in line for line in lines)
    # the hot path: entries go out from their armed entries (one small log record, then the orders)
    opened = [json.loads(line) for line in (run_dir / "logs" / "executor.jsonl").read_text().splitlines()
              if '"event":"trade_opened"' in line]
    assert opened and sum(o["armed"] for o in opened) >= len(opened) // 2, opened
    reader.close()


def _first_day(reader: AuditReader) -> str:
    import datetime as dt

    row = next(reader.rows("1=1"))
    return dt.datetime.fromtimestamp(row["wall_ns"] / 1e9, dt.timezone.utc).date().isoformat()


def _lockstep_run(tmp: Path, run_dir: Path, steps: int) -> tuple[list[dict], list[tuple]]:
    """A lockstep run of the demo until its market closes: (trades, the venue's fills)."""
    tmp.mkdir(parents=True)
    cfg = tmp / "lockstep-short.toml"
    cfg.write_text(f'include = ["{ROOT / "configs" / "lockstep.toml"}"]\n[run.lockstep]\nsteps = {steps}\n')
    xmc("up", str(cfg), "--detach", run_dir=run_dir, timeout=120, check=True)
    try:
        wait_for(lambda: actor(run_dir, "simex")["detail"].get("lockstep_closed") == 1.0, 120,
                 f"the lockstep market to close after {steps} steps")
        # each actor's status is a heartbeat old: simex's "closed" may be newer than the trigger's step
        wait_for(lambda: actor(run_dir, "trigger")["detail"].get("lockstep_step") == steps, 10,
                 f"the trigger to report step {steps}")
    finally:
        xmc("down", run_dir=run_dir, timeout=60)
    trades = json.loads(xmc("trades", "--json", run_dir=run_dir, check=True).stdout)
    fills = [(f["cl_ord_id"], f["side"], f["last_qty"], f["last_px"]) for f in _venue_fills(run_dir)]
    return trades, fills


def _comparable(trade: dict) -> tuple:
    legs = tuple((leg["instrument"], leg["side"], leg["target_qty"], leg["filled_qty"], leg["avg_price"],
                  leg["net_qty"]) for leg in trade["legs"])
    return (trade["trade_id"], trade["pair"], trade["direction"], trade["state"], legs, trade["resubmits"],
            trade["rollbacks"], trade["realised_pnl_base"])


def test_lockstep_demo_same_seed_makes_the_same_trades(tmp_path: Path, run_dir: Path) -> None:
    """Two lockstep runs of the demo with the same seed: the same trades, the same venue fills, order for order."""
    import shutil
    import tempfile

    first, first_fills = _lockstep_run(tmp_path / "a", run_dir, 1200)
    second_dir = Path(tempfile.mkdtemp(prefix="xmc-", dir="/tmp"))
    try:
        second, second_fills = _lockstep_run(tmp_path / "b", second_dir, 1200)
    finally:
        shutil.rmtree(second_dir, ignore_errors=True)
    assert len(first) >= 20, f"only {len(first)} trades in 1200 steps"
    assert sum(t["resubmits"] for t in first) > 0  # the venues' rejects and partial fills were exercised
    assert all(t["state"] != "BROKEN" for t in first)
    assert [_comparable(t) for t in first] == [_comparable(t) for t in second]
    assert first_fills == second_fills
