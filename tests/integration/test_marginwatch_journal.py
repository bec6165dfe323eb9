"""marginwatch's last safety net: a fill the journal holds but the live fill stream never
delivered (its executor died before anyone fetched it) still reaches the positions."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bus.auditstore import AuditWriter, row_of
from bus.messages import Envelope, ExecType, OrderEvent, Side
from helpers import ROOT, actor, wait_for, xmc

pytestmark = pytest.mark.slow

CONFIG = f"""include = ["{ROOT / 'configs' / 'demo.toml'}"]
[run]
heartbeat_s = 0.1
[actors.trigger]
enabled = false
[actors.executor]
enabled = false
"""


def test_marginwatch_takes_a_fill_only_the_journal_has_past_a_malformed_row(tmp_path: Path, run_dir: Path) -> None:
    cfg = tmp_path / "mw.toml"
    cfg.write_text(CONFIG)
    xmc("up", str(cfg), "--detach", run_dir=run_dir, check=True)
    fill = OrderEvent(cl_ord_id="T000042.a1", exec_type=ExecType.FILL, venue="SHFE", instrument="au", side=Side.SELL,
                      order_qty=3, cum_qty=3, leaves_qty=0, last_qty=3, last_px=556.0, avg_px=556.0,
                      exec_id="SHFE-E42", venue_order_id="SHFE-O42")
    bad = Envelope(src="executor", epoch=12345, seq=1, ts_ns=time.monotonic_ns(), body=fill)
    env = Envelope(src="executor", epoch=12345, seq=2, ts_ns=time.monotonic_ns(), body=fill)
    writer = AuditWriter(run_dir / "journal.sqlite")  # as the journal's catch-up would have stored it
    writer.add(row_of("exec.fill.SHFE", bad, replayed=True)[:-1] + ("{not json",))
    writer.add(row_of("exec.fill.SHFE", env, replayed=True))
    writer.flush()
    writer.close()
    wait_for(lambda: actor(run_dir, "marginwatch")["detail"].get("pos.au") == -3.0, 20,
             "marginwatch to hold the journal's fill")
    detail = actor(run_dir, "marginwatch")["detail"]
    assert detail["journal_recovered"] == 1.0 and detail["journal_bad_rows"] == 1.0
