"""Shared test helpers: run the real CLI, wait on conditions with deadlines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT / "configs" / "instruments.toml"
T = TypeVar("T")


def xmc(*args: str, run_dir: Path | None = None, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the real `xmc` CLI in a subprocess."""
    cmd = [sys.executable, "-m", "actors.cli", *args]
    if run_dir is not None:
        cmd += ["--run-dir", str(run_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"xmc {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def wait_for(cond: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `cond` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = cond()
        except (OSError, ValueError, KeyError, json.JSONDecodeError, AssertionError) as exc:
            last = exc
        else:
            if last:
                return last  # type: ignore[return-value]
        time.sleep(interval)  # polling a condition with a deadline, not synchronising by sleep
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def status(run_dir: Path) -> dict:
    proc = xmc("status", "--json", run_dir=run_dir, check=True)
    return json.loads(proc.stdout)


def actor(run_dir: Path, name: str) -> dict:
    return next(a for a in status(run_dir)["actors"] if a["name"] == name)


def actor_processes(run_dir: Path) -> list[int]:
    """Live actor processes started for this run dir (by their command line)."""
    marker = str(run_dir.resolve())
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0")]
            state = (proc / "stat").read_text().split()[2]
        except (OSError, IndexError, UnicodeDecodeError):
            continue
        if state != "Z" and marker in args and ("actors.run" in args or "actors.supervisor" in args):
            pids.append(int(proc.name))
    return pids


def write_config(path: Path, body: str) -> Path:
    path.write_text(f'include = ["{CATALOGUE}"]\n' + body)
    return path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return False
