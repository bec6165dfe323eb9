"""Secrets, real processes: a FIX password placed in the environment appears in no file of the run
dir after a run whose logons are refused, nor in what `xmc status`, `xmc check` or `xmc logs` print.

The venue (a QuickFIX acceptor of the test's, `fixpeer.Acceptor`, outside the run dir) refuses
every Logon of the executor's order session and of the ingest's market-data session with a
reason that repeats the password back: the refusal is logged by both actors with the password
masked (``***``), which is what shows the redaction at work rather than a password nobody wrote.
A journal runs too, so the audit store is among the files scanned. Every wait polls a condition
with a deadline (`helpers.wait_for`).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Callable

import pytest

from configs.load import load_config
from feeds.fix.venue import acceptor_sessions
from fixpeer import Acceptor, free_port
from helpers import log_records, status, wait_for, write_config, xmc

pytest.importorskip("quickfix")

pytestmark = pytest.mark.slow

VENUE = "COMEX"
ENV = "XMC_TEST_SECRET_FIX_PASSWORD"


def config(tmp_path: Path, port: int) -> Path:
    """COMEX over FIX (orders and market data on one port, password from ENV), its executor,
    ingest and a journal."""
    return write_config(tmp_path / "secrets.toml", f"""
[run]
heartbeat_s = 0.2
restart_backoff_s = 0.1
[venues.{VENUE}]
kind = "fix"
stale_ms = 60000
[venues.{VENUE}.fix]
port = {port}
sender_comp_id = "XMC"
target_comp_id = "COMEX"
heartbeat_s = 1
reconnect_s = 1
logon_timeout_s = 1
username = "desk"
password_env = "{ENV}"
md = {{ sender_comp_id = "XMC-MD" }}
[accounts.hk]
currency = "USD"
balance = 1000000
venues = ["{VENUE}"]
[actors.executor]
kind = "executor"
[actors.ingest]
kind = "ingest"
venue = "{VENUE}"
[actors.journal]
kind = "journal"
""")


def test_env_password_is_in_no_file_of_the_run_dir_nor_any_cli_output_after_refused_logons(
        tmp_path: Path, run_dir: Path, acceptors: Callable[..., Acceptor], monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"pw-{uuid.uuid4().hex}"
    monkeypatch.setenv(ENV, secret)  # `xmc up` and the actors it starts inherit it
    cfg_path = config(tmp_path, free_port())
    assert secret not in cfg_path.read_text()
    fx = load_config(cfg_path).venues[VENUE].fix
    assert fx is not None
    specs = acceptor_sessions(tmp_path / "venue", VENUE, fx)  # the venue's own store: outside the run dir
    acceptor = acceptors(specs, fx.version)
    why = f"bad password {secret}"  # a venue that says the password back
    for s in specs:
        acceptor.refuse_logons(why, session=s.session_id)

    xmc("up", str(cfg_path), "--detach", run_dir=run_dir, check=True)
    # both sessions refused, each refusal logged with the venue's reason, the password masked in it
    refusals = wait_for(lambda: (e := log_records(run_dir, "executor", "fix_logon_refused")) and e, 20,
                        "the executor's fix_logon_refused")
    md_refusals = wait_for(lambda: (e := log_records(run_dir, "ingest", "fix_md_logon_refused")) and e, 20,
                           "the ingest's fix_md_logon_refused")
    for e in refusals + md_refusals:
        assert e["reason"] == "Rejected Logon Attempt: bad password ***", e
    wait_for(lambda: any(r.get("logon_refused", 0) >= 1 for r in status(run_dir)["fix_sessions"]), 10,
             "a refused logon in xmc status")
    assert acceptor.logons() == 0

    outputs = {
        "status --json": xmc("status", "--json", run_dir=run_dir, check=True),
        "status": xmc("status", run_dir=run_dir, check=True),
        "check": xmc("check", str(cfg_path), run_dir=run_dir),
        "logs executor": xmc("logs", "executor", run_dir=run_dir, check=True),
        "logs ingest": xmc("logs", "ingest", run_dir=run_dir, check=True),
    }
    assert outputs["check"].returncode == 0, outputs["check"].stderr
    xmc("down", run_dir=run_dir, check=True, timeout=60)

    files = [p for p in sorted(run_dir.rglob("*")) if p.is_file()]  # sockets and fifos are not files
    names = {p.relative_to(run_dir).as_posix() for p in files}
    assert {"logs/executor.jsonl", "logs/ingest.jsonl", "logs/executor.stderr", "journal.sqlite"} <= names, names
    assert any(n.startswith("state/fix/") for n in names), names  # QuickFIX's file store: scanned too
    leaks = [p.relative_to(run_dir).as_posix() for p in files + [cfg_path] if secret.encode() in p.read_bytes()]
    leaks += [f"xmc {cmd}" for cmd, proc in outputs.items() if secret in proc.stdout + proc.stderr]
    assert not leaks, f"the password is in {leaks}"
