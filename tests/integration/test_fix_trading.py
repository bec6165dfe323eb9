"""Pair trades over real FIX sessions: simex serves SHFE and COMEX as QuickFIX acceptors
(orders and market data), the executor and the ingest actors log on as QuickFIX
initiators, and the venues misbehave (rejects, partial fills, lost reports,
disconnects). Whatever happens, every trade ends terminal and the venue's own fills,
the trades' positions, the journal and marginwatch agree; a kill -9 of the executor
resumes the FIX session from QuickFIX's store with no ClOrdID sent twice."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from bus.auditstore import AuditReader
from helpers import actor, fix_demo_with, status, wait_for, xmc

pytestmark = pytest.mark.slow

PAIRS = """
[pairs.au_gc]
order_timeout_ms = 600
deadline_ms = 3000
entry = 1.0
exit = 0.2
cooldown_ms = 50
warmup_ticks = 20
"""
FIX_VENUES = ("SHFE", "COMEX")


def _up(tmp_path: Path, run_dir: Path, body: str) -> None:
    cfg = tmp_path / "fix.toml"
    cfg.write_text(body + PAIRS)
    xmc("up", str(cfg), "--detach", run_dir=run_dir, check=True, timeout=120)
    wait_for(lambda: all(s["state"] == "LOGGED_ON" for s in status(run_dir)["fix_sessions"])
             and len(status(run_dir)["fix_sessions"]) == 8, 30, "every FIX session logged on")


def _au_gc_trades(run_dir: Path) -> list[dict]:
    return [t for t in json.loads(xmc("trades", "--json", run_dir=run_dir, check=True).stdout) if t["pair"] == "au_gc"]


def _halt_and_settle(run_dir: Path) -> list[dict]:
    xmc("halt", "--reason", "end of test", run_dir=run_dir, check=True)

    def settled() -> list | None:
        trades = json.loads(xmc("trades", "--json", run_dir=run_dir, check=True).stdout)
        quiet = actor(run_dir, "executor")["detail"].get("open_trades", 1) == 0
        return trades if quiet and trades and all(t["terminal"] for t in trades) else None

    return wait_for(settled, 60, "every trade terminal")


def _venue_fills(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "state" / "simex-fills.jsonl").read_text().splitlines()]


def _check_books_agree(run_dir: Path, trades: list[dict]) -> None:
    """No BROKEN trade; venue fills == trades' net_qty per trade and leg; journal and marginwatch agree."""
    assert "BROKEN" not in {t["state"] for t in trades}, [t for t in trades if t["state"] == "BROKEN"]
    fills = _venue_fills(run_dir)
    venue: dict[tuple[str, str], int] = defaultdict(int)
    seen = set()
    for f in fills:
        assert (f["venue"], f["exec_id"]) not in seen, f"duplicate venue fill {f}"
        seen.add((f["venue"], f["exec_id"]))
        venue[(f["cl_ord_id"].split(".", 1)[0], f["instrument"])] += (1 if f["side"] == "BUY" else -1) * f["last_qty"]
    net: dict[str, int] = defaultdict(int)
    for t in trades:
        for leg in t["legs"]:
            assert venue.get((t["trade_id"], leg["instrument"]), 0) == leg["net_qty"], (t, leg)
            net[leg["instrument"]] += leg["net_qty"]
        if t["state"] in ("ROLLED_BACK", "CANCELLED"):
            assert all(leg["net_qty"] == 0 for leg in t["legs"]), t
    assert {tid for tid, _ in venue} <= {t["trade_id"] for t in trades}, "a venue fill of a trade the executor never knew"
    # the executor's fill stream in the journal sums to the same positions
    reader = AuditReader(run_dir / "journal.sqlite")
    journal: dict[str, int] = defaultdict(int)
    for r in reader.rows("kind = 'OrderEvent' AND topic LIKE 'exec.fill.%'"):
        f = r["body"]
        journal[f["instrument"]] += (1 if f["side"] == "BUY" else -1) * f["last_qty"]
    reader.close()
    assert {k: v for k, v in journal.items() if v} == {k: v for k, v in net.items() if v}
    watched = wait_for(lambda: (d := actor(run_dir, "marginwatch")["detail"]) and {
        k[4:]: v for k, v in d.items() if k.startswith("pos.") and v} == {k: v for k, v in net.items() if v} and d,
        20, f"marginwatch positions == trades' positions {dict(net)}")
    assert watched


def test_fix_pair_trades_with_rejects_partials_and_lost_reports_match_the_venue(tmp_path: Path, run_dir: Path) -> None:
    _up(tmp_path, run_dir, fix_demo_with(reject=0.12, partial=0.3, drop=0.06, seed=5))
    def asked_about_lost_reports() -> float:
        d = actor(run_dir, "executor")["detail"]
        return d.get("fix.SHFE.status_requests", 0) + d.get("fix.COMEX.status_probes", 0)

    wait_for(lambda: len(_au_gc_trades(run_dir)) >= 8 and sum(t["resubmits"] for t in _au_gc_trades(run_dir)) >= 2
             and asked_about_lost_reports() > 0, 90, "au_gc trades over FIX with resubmits and a lost report asked about")
    trades = _halt_and_settle(run_dir)
    au_gc = [t for t in trades if t["pair"] == "au_gc"]
    assert {"COMPLETED"} <= {t["state"] for t in au_gc}, Counter(t["state"] for t in au_gc)
    _check_books_agree(run_dir, trades)
    detail = actor(run_dir, "executor")["detail"]
    assert detail["fix.COMEX.emulated_ioc"] > 0 and detail["fix.COMEX.orders"] > 0  # COMEX takes no IOC
    assert actor(run_dir, "executor")["restarts"] == 0
    # the quotes that priced them came over FIX too
    assert actor(run_dir, "ingest_comex")["detail"]["fix_md_quotes"] > 100


def test_executor_killed_mid_fix_trade_resumes_the_session_with_no_clordid_sent_twice(tmp_path: Path, run_dir: Path) -> None:
    _up(tmp_path, run_dir, fix_demo_with(reject=0.1, partial=0.3, drop=0.1, seed=11, slow_shfe=True))
    log = run_dir / "logs" / "executor.jsonl"

    def busy() -> dict | None:
        a = actor(run_dir, "executor")
        return a if a["detail"].get("open_trades", 0) > 0 and a["detail"].get("orders", 0) >= 10 else None

    for kills in range(1, 4):
        before = wait_for(busy, 60, "executor with an open trade", interval=0.005)
        seq_before = before["detail"]["fix.SHFE.XMC->SHFE.next_out_seq"]
        os.kill(before["pid"], signal.SIGKILL)
        after = wait_for(lambda: (a := actor(run_dir, "executor"))["restarts"] == kills and a["state"] == "running"
                         and a["detail"].get("fix.SHFE.XMC->SHFE.state") == 1.0 and a, 30, "executor restarted and logged on")
        # QuickFIX's store kept the sequence numbers: the new process went on from them, not from 1
        assert after["detail"]["fix.SHFE.XMC->SHFE.next_out_seq"] >= seq_before
        if '"event":"executor_recovering"' in log.read_text():
            break
    else:
        raise AssertionError("three kills never caught the executor with a pair trade open")
    wait_for(lambda: actor(run_dir, "executor")["detail"].get("orders", 0) >= 6, 60, "trading resumed after the restart")
    trades = _halt_and_settle(run_dir)
    _check_books_agree(run_dir, trades)
    # every order reached the venue at most once under its ClOrdID
    reader = AuditReader(run_dir / "journal.sqlite")
    sent = Counter(r["body"]["cl_ord_id"] for r in reader.rows("kind = 'OrderRequest' AND topic LIKE 'exec.order.%'")
                   if r["body"]["venue"] in FIX_VENUES)
    dup = [r["body"]["reason"] for r in reader.rows("kind = 'OrderEvent' AND topic LIKE 'exec.report.%'")
           if r["body"]["reason"].startswith("ORDER_DUPLICATE")]
    reader.close()
    assert sent and max(sent.values()) == 1, [c for c, n in sent.items() if n > 1]
    assert not dup, dup
    logons = [json.loads(line) for line in log.read_text().splitlines() if '"event":"fix_session_logon"' in line]
    assert any(e["next_in_seq"] > 1 and e["next_out_seq"] > 1 for e in logons[2:]), logons


def test_fix_session_disconnects_leave_orders_in_doubt_until_logon_then_resolve(tmp_path: Path, run_dir: Path) -> None:
    _up(tmp_path, run_dir, fix_demo_with(reject=0.05, partial=0.2, drop=0.05, seed=3, slow_shfe=True,
                                         shfe_disconnects=(3.0, 1.0)))
    log = run_dir / "logs" / "executor.jsonl"
    wait_for(lambda: log.read_text().count('"event":"fix_session_down"') >= 2
             and len(_au_gc_trades(run_dir)) >= 4, 90, "two SHFE FIX outages and some au_gc trades")
    trades = _halt_and_settle(run_dir)
    _check_books_agree(run_dir, trades)
    text = log.read_text()
    assert '"reason":"SESSION_DOWN: venue=SHFE' in text  # orders, queries or signals met the outage
    assert text.count('"event":"fix_session_logon"') >= 3  # first logon + one after each outage
    assert actor(run_dir, "executor")["restarts"] == 0
