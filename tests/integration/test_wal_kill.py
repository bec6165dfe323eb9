"""The write-ahead log's writer killed with SIGKILL in the middle of its run: a real process,
a real file, the kernel's page cache as the only thing that survives it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from execution.wal import MAGIC, OrderSent, WriteAheadLog, read_records
from helpers import actor, demo_with, log_records, wait_for

ROOT = Path(__file__).resolve().parents[2]
N = 200

WRITER = """
import sys
from bus.messages import OrderPurpose, OrderRequest, Side
from execution.wal import OrderSent, WriteAheadLog
wal = WriteAheadLog(sys.argv[1])
for n in range(int(sys.argv[2])):
    wal.append(OrderSent(order=OrderRequest(
        cl_ord_id=f"T{n:06d}.a1", trade_id=f"T{n:06d}", account="cn", venue="SHFE", instrument="au",
        side=Side.BUY, qty=1, price=556.0 + n, purpose=OrderPurpose.OPEN)))
print(wal.end, flush=True)  # the handshake: every append has returned
sys.stdin.read()  # killed while waiting here, the map still open
"""


def test_wal_writer_killed_with_sigkill_loses_no_appended_record(tmp_path: Path) -> None:
    path = tmp_path / "exec.wal"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(N)], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        end = int(proc.stdout.readline())  # type: ignore[union-attr]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert path.stat().st_size > end  # the writer's zero fill is still there
    with WriteAheadLog(path) as wal:  # the lock died with the writer
        assert wal.scan.reason == "" and wal.end == end
        assert [r.order.price for r in wal.records if isinstance(r, OrderSent)] == [556.0 + n for n in range(N)]
    assert path.stat().st_size == end and path.read_bytes().startswith(MAGIC)
    assert len(read_records(path)[0]) == N


@pytest.mark.slow
def test_executor_whose_log_another_process_holds_fails_to_start_then_starts_once_free(tmp_path: Path,
                                                                                         run_dir: Path) -> None:
    """Two writers on one log would overwrite each other: the executor refuses to start
    (`actor_start_failed`, `WAL_LOCKED`), and the supervisor's next restart finds the log free."""
    held = WriteAheadLog(run_dir / "state" / "executor.wal")  # e.g. a stale executor of another supervisor
    cfg = tmp_path / "c.toml"
    cfg.write_text(demo_with(reject=0.0, partial=0.0, drop=0.0))
    with open(tmp_path / "up.out", "w") as out:  # `xmc up` waits for every actor: run it beside the test
        up = subprocess.Popen([sys.executable, "-m", "actors.cli", "up", str(cfg), "--run-dir", str(run_dir), "--detach"],
                              cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            refused = wait_for(lambda: [r for r in log_records(run_dir, "executor", "actor_start_failed")
                                        if "WAL_LOCKED" in r.get("error", "")], 60, "the executor refused its held log")
            assert f"path={run_dir / 'state' / 'executor.wal'}" in refused[0]["error"]
        finally:
            held.close()
        wait_for(lambda: actor(run_dir, "executor")["state"] == "running", 60, "the executor running once the log is free")
        assert actor(run_dir, "executor")["restarts"] >= 1
        assert up.wait(timeout=60) == 0
