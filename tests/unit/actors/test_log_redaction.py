"""actors.logs masks registered secrets: in every string of a log line (a message, a nested dict or
list, an exception's text and traceback, an object the renderer turns into text) and in what an
actor prints to its stderr when it dies (main thread, other threads)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path
from typing import Iterator

import msgspec
import pytest
import structlog

from actors import logs, secrets

ROOT = Path(__file__).resolve().parents[3]
SECRET = "s3cr3t-Pw-7f1c"


@pytest.fixture(autouse=True)
def registry() -> Iterator[None]:
    secrets.clear()
    secrets.register(SECRET)
    yield
    secrets.clear()


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[tuple[structlog.stdlib.BoundLogger, Path]]:
    """`setup_logging` in this process, undone afterwards (structlog's config, the hooks)."""
    saved = (sys.excepthook, threading.excepthook, sys.unraisablehook, warnings.showwarning)
    log = logs.setup_logging(tmp_path, "unit", "debug")
    try:
        yield log, logs.log_path(tmp_path, "unit")
    finally:
        sys.excepthook, threading.excepthook, sys.unraisablehook, warnings.showwarning = saved
        structlog.reset_defaults()


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def process(event: dict) -> dict:
    return logs.redact_secrets(None, "info", event)


class Detail(msgspec.Struct):
    why: str


def test_processor_masks_message_strings_and_nested_values() -> None:
    out = process({"event": "fix_logon_refused", "reason": f"Rejected: password {SECRET} wrong",
                   "detail": {"raw": f"554={SECRET}", "deeper": [1, {"x": SECRET}, (SECRET, 2.5)]},
                   "n": 3, "ok": True, "none": None})
    assert out == {"event": "fix_logon_refused", "reason": "Rejected: password *** wrong",
                   "detail": {"raw": "554=***", "deeper": [1, {"x": "***"}, ["***", 2.5]]},
                   "n": 3, "ok": True, "none": None}


def test_processor_masks_text_of_objects_the_renderer_would_encode() -> None:
    out = process({"event": "e", "struct": Detail(why=SECRET), "exc": ValueError(f"bad {SECRET}")})
    assert out["struct"] == {"why": "***"}
    assert out["exc"] == "bad ***"


def test_processor_with_nothing_registered_changes_nothing() -> None:
    secrets.clear()
    event = {"event": "e", "reason": SECRET, "d": {"x": SECRET}}
    assert process(dict(event)) == event


def test_log_lines_mask_the_secret_in_messages_nested_values_and_exceptions(logged) -> None:
    log, path = logged
    log.error("fix_logon_refused", reason=f"Rejected Logon Attempt: bad password {SECRET}")
    log.info("nested", detail={"logon": {"554": SECRET}, "list": [f"x{SECRET}y"]})
    try:
        raise RuntimeError(f"logon failed with {SECRET}")
    except RuntimeError:
        log.exception("handler_error")
    log.warning(f"event-name-with-{SECRET}")
    text = path.read_text()
    assert SECRET not in text, text
    by_event = {e["event"]: e for e in lines(path)}
    assert by_event["fix_logon_refused"]["reason"] == "Rejected Logon Attempt: bad password ***"
    assert by_event["nested"]["detail"] == {"logon": {"554": "***"}, "list": ["x***y"]}
    exc = by_event["handler_error"]["exception"]
    assert "Traceback" in exc and "RuntimeError: logon failed with ***" in exc, exc
    assert "event-name-with-***" in by_event


def test_a_secret_registered_after_setup_is_masked_too(logged) -> None:
    log, path = logged
    later = "registered-later-pw"
    log.info("before", v=later)
    secrets.register(later)
    log.info("after", v=later)
    assert [e["v"] for e in lines(path)] == [later, "***"]


def test_hooks_write_redacted_tracebacks(logged, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        raise KeyError(f"key {SECRET}")
    except KeyError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    t = threading.Thread(target=lambda: (_ for _ in ()).throw(ValueError(f"in thread {SECRET}")), name="qf-cb")
    t.start()
    t.join()
    warnings.showwarning(UserWarning(f"warned {SECRET}"), UserWarning, "f.py", 1)
    err = capsys.readouterr().err
    assert SECRET not in err, err
    assert "KeyError: 'key ***'" in err, err
    assert "Exception in thread qf-cb:" in err and "ValueError: in thread ***" in err, err
    assert "UserWarning: warned ***" in err, err


def run_actor_like(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    """A process that does what an actor does at start (`setup_logging`, then reads its password
    from the environment), then `body`; stderr is what lands in logs/<actor>.stderr."""
    script = textwrap.dedent("""
        import sys, threading
        from actors.logs import setup_logging
        from feeds.fix.session import read_secret
        log = setup_logging(sys.argv[1], "executor")
        password = read_secret("XMC_UNIT_HOOK_PW", "")
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env={**os.environ, "XMC_UNIT_HOOK_PW": SECRET})


def test_actor_dying_of_an_exception_prints_a_redacted_traceback(tmp_path: Path) -> None:
    proc = run_actor_like(tmp_path, """
        def logon(pw):
            raise ConnectionError(f"venue refused logon with password {pw!r}")
        try:
            logon(password)
        except ConnectionError as exc:
            raise RuntimeError("logon failed: " + password) from exc
    """)
    assert proc.returncode == 1
    assert SECRET not in proc.stdout + proc.stderr, proc.stderr
    assert "Traceback (most recent call last):" in proc.stderr
    assert "ConnectionError: venue refused logon with password '***'" in proc.stderr, proc.stderr
    assert "RuntimeError: logon failed: ***" in proc.stderr, proc.stderr
    assert SECRET not in (tmp_path / "logs" / "executor.jsonl").read_text()


def test_actor_thread_dying_of_an_exception_prints_a_redacted_traceback(tmp_path: Path) -> None:
    proc = run_actor_like(tmp_path, """
        def callback():
            raise ValueError("toAdmin: 554=" + password)
        t = threading.Thread(target=callback, name="quickfix")
        t.start()
        t.join()
        log.info("after_thread", pw=password)
    """)
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr, proc.stderr
    assert "Exception in thread quickfix:" in proc.stderr and "ValueError: toAdmin: 554=***" in proc.stderr
    [line] = lines(tmp_path / "logs" / "executor.jsonl")
    assert line["pw"] == "***"
