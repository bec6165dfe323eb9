"""Recorded CME data through the real ingest process onto the bus; stale-feed
detection; a corrupt recording makes the actor crash-loop into `faulted`
while the rest of the run keeps going."""

from __future__ import annotations

from pathlib import Path

import pytest
import zmq

from bus.codec import Codec
from bus.endpoints import Endpoints
from bus.messages import InstrumentStatus, Quote
from configs.load import load_config
from feeds.replay import open_replay
from helpers import ROOT, actor, status, wait_for, write_config, xmc

DATA = ROOT.parent / "shared" / "data" / "databento"
MBP1 = DATA / "ESU4.glbx-mdp3.mbp-1.2024-07-01T2358.dbn.zst"
BBO = DATA / "ESZ5-ESH6.glbx-mdp3.bbo-1m.2025-12-19T1425.dbn.zst"

pytestmark = pytest.mark.skipif(not MBP1.exists(), reason=f"recorded data missing at {DATA} (shared/ is beside the repo)")


def _config(tmp_path: Path, path: Path, extra: str = "") -> Path:
    return write_config(tmp_path / "replay.toml", f"""
[run]
heartbeat_s = 0.2
max_restarts = 3
restart_backoff_s = 0.05
[venues.CME]
kind = "replay"
stale_ms = 300
replay = {{ path = "{path}", format = "dbn", pace = "fast", symbols = {{ ESU4 = "ES" }}, wait_subscribers = 1 }}
[instruments.ES]
symbol = "ESU4"
[actors.ingest_cme]
kind = "ingest"
venue = "CME"
{extra}
""")


def test_dbn_replay_publishes_every_quote_in_file_order_then_marks_the_feed_stale(tmp_path: Path, run_dir: Path) -> None:
    cfg_path = _config(tmp_path, MBP1)
    cfg = load_config(cfg_path)
    assert cfg.venues["CME"].replay is not None
    expected = [tob for _, tob in open_replay("CME", cfg.venues["CME"].replay).records()]
    assert len(expected) > 1000
    xmc("up", str(cfg_path), "--detach", run_dir=run_dir, check=True)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"md.CME.")
    sub.connect(Endpoints(cfg, run_dir).pub("ingest_cme"))
    codec = Codec()
    quotes: list[Quote] = []
    stale: list[InstrumentStatus] = []
    while not stale:
        assert sub.poll(15_000), f"bus went quiet after {len(quotes)} quotes"
        topic, env = codec.decode_frame(sub.recv())
        assert topic == "md.CME.ESU4"
        if isinstance(env.body, Quote):
            quotes.append(env.body)
        elif isinstance(env.body, InstrumentStatus) and env.body.stale:
            stale.append(env.body)
    ctx.destroy(0)
    assert len(quotes) == len(expected)
    for got, want in ((quotes[0], expected[0]), (quotes[-1], expected[-1]), (quotes[len(quotes) // 2], expected[len(expected) // 2])):
        assert (got.bid, got.ask, got.bid_size, got.ask_size, got.exch_ts_ns) == (want.bid, want.ask, want.bid_size, want.ask_size, want.ts_ns)
    assert all(q.recv_ns > 0 for q in quotes)
    assert all(a.recv_ns <= b.recv_ns for a, b in zip(quotes, quotes[1:]))
    assert stale[0].reason.startswith("FEED_STALE: instrument=ESU4")
    a = actor(run_dir, "ingest_cme")
    assert a["detail"]["replay.records"] == len(expected)


def test_corrupt_recording_crash_loops_into_faulted_while_the_rest_keeps_running(tmp_path: Path, run_dir: Path) -> None:
    bad = tmp_path / "corrupt.dbn.zst"
    bad.write_bytes(b"this is not a zstd frame at all" * 10)
    cfg_path = _config(tmp_path, bad, extra='[actors.journal]\nkind = "journal"\n')
    proc = xmc("up", str(cfg_path), "--detach", run_dir=run_dir)
    assert proc.returncode == 1 and "faulted" in proc.stderr and "ingest_cme" in proc.stderr

    def faulted() -> dict | None:
        doc = {a["name"]: a for a in status(run_dir)["actors"]}
        return doc if doc["ingest_cme"]["state"] == "faulted" and doc["journal"]["state"] == "running" else None

    doc = wait_for(faulted, 30, "ingest faulted, journal running")
    assert doc["ingest_cme"]["restarts"] == 2 and doc["ingest_cme"]["pid"] is None
    log = (run_dir / "logs" / "ingest_cme.jsonl").read_text()
    assert "actor_start_failed" in log and "corrupt.dbn.zst" in log
    assert "actor_faulted" in (run_dir / "logs" / "supervisor.jsonl").read_text()


def test_bbo_calendar_spread_replay_publishes_both_contracts_with_the_file_values(tmp_path: Path, run_dir: Path) -> None:
    cfg_path = write_config(tmp_path / "bbo.toml", f"""
[run]
heartbeat_s = 0.2
[venues.CME]
kind = "replay"
replay = {{ path = "{BBO}", format = "dbn", pace = "fast", symbols = {{ ESZ5 = "ES", ESH6 = "ESH6" }}, wait_subscribers = 1 }}
[instruments.ES]
symbol = "ESZ5"
[instruments.ESH6]
venue = "CME"
symbol = "ESH6"
tick = 0.25
multiplier = 50.0
currency = "USD"
margin_model = "fixed"
margin_fixed = 12650.0
commodity = "spx"
[actors.ingest_cme]
kind = "ingest"
venue = "CME"
""")
    cfg = load_config(cfg_path)
    assert cfg.venues["CME"].replay is not None
    expected = [tob for _, tob in open_replay("CME", cfg.venues["CME"].replay, instruments=cfg.instruments).records()]
    assert {t.symbol for t in expected} == {"ESZ5", "ESH6"}
    xmc("up", str(cfg_path), "--detach", run_dir=run_dir, check=True)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"md.CME.")
    sub.connect(Endpoints(cfg, run_dir).pub("ingest_cme"))
    codec = Codec()
    got: list[tuple[str, Quote]] = []
    while len(got) < len(expected):
        assert sub.poll(15_000), f"bus went quiet after {len(got)} quotes"
        topic, env = codec.decode_frame(sub.recv())
        if isinstance(env.body, Quote):
            got.append((topic, env.body))
    ctx.destroy(0)
    for (topic, q), want in zip(got, expected):
        assert topic == f"md.CME.{want.symbol}" and q.symbol == want.symbol
        assert (q.bid, q.ask, q.bid_size, q.ask_size, q.exch_ts_ns) == (want.bid, want.ask, want.bid_size, want.ask_size, want.ts_ns)
