"""The write-ahead log's writer killed with SIGKILL in the middle of its run: a real process,
a real file, the kernel's page cache as the only thing that survives it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from execution.wal import MAGIC, OrderSent, WriteAheadLog, read_records

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
