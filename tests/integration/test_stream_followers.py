"""The executor's durable execution stream: a follower that was away while the executor was
killed and restarted twice catches up with every event, in order, none twice; and the journal
(a real follower, frozen meanwhile) files exactly the events the executor's log holds."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import pytest
import zmq

from bus.command import CommandTimeout, call
from bus.endpoints import Endpoints
from bus.messages import StreamBatch, StreamEvent, StreamSince
from bus.stream import StreamCursor
from configs.load import load_config
from execution.wal import Streamed, read_records
from helpers import actor, demo_with, wait_for, xmc

pytestmark = pytest.mark.slow

CONFIG = demo_with(reject=0.1, partial=0.2, drop=0.05, seed=5) + """
[pairs.au_gc]
cooldown_ms = 50
warmup_ticks = 20

[pairs.hsi_mhi]
cooldown_ms = 50
warmup_ticks = 20
"""


class Follower:
    """A stream follower built only from the bus library: "since N" on the executor's command channel."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.cursor = StreamCursor()
        self.events: list[StreamEvent] = []

    def catch_up(self, until: int) -> bool:
        """Ask until holding seq `until`; False if the executor did not answer (restarting)."""
        ctx = zmq.Context.instance()
        while self.cursor.last < until:
            try:
                batch = call(ctx, self.endpoint, StreamSince(since=self.cursor.last), timeout_s=2.0, src="test-follower")
            except CommandTimeout:
                return False
            assert isinstance(batch, StreamBatch), batch
            for ev in batch.events:
                if self.cursor.offer(ev.seq):
                    self.events.append(ev)
            if not batch.events:
                return False
        return True


def _head(run_dir: Path) -> int:
    return int(actor(run_dir, "executor")["detail"].get("stream_head", 0))


def _logged(run_dir: Path) -> list[StreamEvent]:
    records, _ = read_records(run_dir / "state" / "executor.wal")
    return [r.event for r in records if isinstance(r, Streamed)]


def _kill_executor(run_dir: Path, kills: int) -> None:
    before = actor(run_dir, "executor")
    os.kill(before["pid"], signal.SIGKILL)
    wait_for(lambda: (a := actor(run_dir, "executor"))["restarts"] == kills and a["state"] == "running"
             and a["pid"] != before["pid"], 30, f"executor restart {kills}")


def test_follower_away_across_two_executor_restarts_gets_every_event_once_in_order(tmp_path: Path,
                                                                                     run_dir: Path) -> None:
    cfg_path = tmp_path / "stream.toml"
    cfg_path.write_text(CONFIG)
    xmc("up", str(cfg_path), "--detach", run_dir=run_dir, check=True)
    follower = Follower(Endpoints(load_config(cfg_path), run_dir).cmd("executor"))

    first = wait_for(lambda: (h := _head(run_dir)) >= 20 and h, 90, "20 stream events")
    assert wait_for(lambda: follower.catch_up(first), 20, "the follower's first catch-up")
    away_at = follower.cursor.last
    journal = actor(run_dir, "journal")
    os.kill(journal["pid"], signal.SIGSTOP)  # the journal is away too (the supervisor may restart it)
    try:
        for kills in (1, 2):
            mark = _head(run_dir)
            _kill_executor(run_dir, kills)
            wait_for(lambda: _head(run_dir) > mark + 10, 60, f"trading after restart {kills}")
    finally:
        try:
            os.kill(journal["pid"], signal.SIGCONT)
        except ProcessLookupError:
            pass
    xmc("halt", "--reason", "end of test", run_dir=run_dir, check=True)
    wait_for(lambda: actor(run_dir, "executor")["detail"].get("open_trades", 1) == 0, 60, "no trade open")
    head = _head(run_dir)
    assert head > away_at + 20

    assert wait_for(lambda: follower.catch_up(head), 20, "the follower's catch-up after two restarts")
    seqs = [ev.seq for ev in follower.events]
    assert seqs == list(range(1, len(seqs) + 1)) and seqs[-1] >= head, "every event once, in order"
    assert follower.cursor.dups == 0
    logged = _logged(run_dir)
    assert follower.events == logged[:len(follower.events)], "what was served is what the log holds"

    def filed() -> list[int] | None:
        db = sqlite3.connect(f"file:{run_dir / 'journal.sqlite'}?mode=ro", uri=True)
        try:
            rows = [s for (s,) in db.execute("SELECT seq FROM events WHERE src = 'executor' AND epoch = 0 ORDER BY id")]
        finally:
            db.close()
        return rows if rows and rows[-1] >= head else None

    rows = wait_for(filed, 30, "the journal to file the stream up to its head")
    assert rows == list(range(1, len(rows) + 1)), "the journal filed every event once, in order"
