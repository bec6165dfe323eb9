"""Real FIX peers for tests: QuickFIX's own example executor (Debian's libquickfix-doc) on loopback.

The executor answers a limit NewOrderSingle with a fill of the whole quantity at the
limit price; a market order gets a session-level Reject (35=3), and anything else it
does not handle (OrderCancelRequest, OrderStatusRequest) a BusinessMessageReject (35=j).
`make test` installs the package (`make fix-peer`).
"""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from helpers import wait_for

EXECUTOR_GZ = Path("/usr/share/doc/libquickfix-doc/examples/executor/C++/.libs/executor.gz")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class ExamplePeer:
    """QuickFIX's example executor as a running process (`stop()` ends it)."""

    def __init__(self, work: Path, port: int, begin_string: str = "FIX.4.2", sender: str = "EXECUTOR",
                 target: str = "XMC") -> None:
        if not EXECUTOR_GZ.exists():
            raise RuntimeError(f"{EXECUTOR_GZ} is missing: run `make fix-peer` (apt: libquickfix17 libquickfix-doc)")
        work.mkdir(parents=True, exist_ok=True)
        binary = work / "executor"
        with gzip.open(EXECUTOR_GZ) as src, open(binary, "wb") as dst:
            shutil.copyfileobj(src, dst)
        binary.chmod(0o755)
        dictionary = Path(sys.prefix) / "share" / "quickfix" / (begin_string.replace(".", "") + ".xml")
        cfg = work / "executor.cfg"
        cfg.write_text(
            "[DEFAULT]\nConnectionType=acceptor\n"
            f"SocketAcceptPort={port}\nSocketReuseAddress=Y\nStartTime=00:00:00\nEndTime=00:00:00\n"
            f"FileStorePath={work / 'store'}\nUseDataDictionary=Y\nDataDictionary={dictionary}\n"
            f"[SESSION]\nBeginString={begin_string}\nSenderCompID={sender}\nTargetCompID={target}\n")
        self.port = port
        self.log = work / "executor.out"
        self.proc = subprocess.Popen([str(binary), str(cfg)], stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,
                                     cwd=work, env={**os.environ, "LD_LIBRARY_PATH": ""})
        wait_for(lambda: self.proc.poll() is not None or listening(port), 15, "the example executor to listen")
        if self.proc.poll() is not None:
            raise RuntimeError(f"example executor exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
