"""structlog JSON-lines logging: one file per actor, `<run-dir>/logs/<actor>.jsonl`.

Every line has `ts`, `level`, `event` (a stable snake_case name), `actor` and
`pid`, plus the ids the event concerns (trade_id, cl_ord_id, pair, ...), so
`xmc logs --trade ID` can follow one trade across every actor.

Secrets (`actors.secrets`): every registered secret is masked (``***``) in every string of a log
line, exception text included (`redact_secrets`, after `format_exc_info`, before the renderer),
and in the tracebacks an actor prints to its stderr (`logs/<actor>.stderr`) on its way out: the
exception hooks `install_excepthooks` sets redact what Python would print.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import IO, Any

import msgspec
import structlog

from actors import secrets

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_json = msgspec.json.Encoder()


def _dumps(obj: Any, **_: Any) -> str:
    try:
        return _json.encode(obj).decode()
    except TypeError:
        return _json.encode({k: (v if isinstance(v, (int, float, bool, str, type(None))) else str(v)) for k, v in obj.items()}).decode()


_SCALARS = (int, float, bool, type(None))


def _redacted(value: Any) -> Any:
    """`value` with every registered secret masked in every string in it (dict values, list and
    tuple items, recursively). Anything else the renderer would encode (a Struct, an enum, an
    exception) is first turned into what the encoder would make of it, so its text is covered too."""
    if isinstance(value, str):
        return secrets.redact(value)
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v) for v in value]
    try:
        return _redacted(msgspec.to_builtins(value))
    except (TypeError, ValueError):
        return secrets.redact(str(value))


def redact_secrets(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: mask registered secrets in every value of the event (nothing to do,
    and nothing done, while none is registered)."""
    if not secrets.registered():
        return event_dict
    for key, value in event_dict.items():  # a fresh dict per call: changed in place
        if not isinstance(value, _SCALARS):
            event_dict[key] = _redacted(value)
    return event_dict


def _write_stderr(text: str) -> None:
    try:
        sys.stderr.write(secrets.redact(text))
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):  # stderr closed or gone: nowhere left to say it
        pass


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    _write_stderr("".join(traceback.format_exception(exc_type, exc, tb)))


def _threading_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return  # what the default hook does: a thread that exits is not an error
    name = args.thread.name if args.thread is not None else threading.get_ident()
    _write_stderr(f"Exception in thread {name}:\n"
                  + "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)))


def _unraisablehook(u: Any) -> None:
    head = f"{u.err_msg or 'Exception ignored in'}: {u.object!r}\n" if u.object is not None else f"{u.err_msg or 'Exception ignored'}\n"
    body = "".join(traceback.format_exception(u.exc_type, u.exc_value, u.exc_traceback)) if u.exc_type else ""
    _write_stderr(head + body)


def _showwarning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: IO[str] | None = None, line: str | None = None) -> None:
    text = secrets.redact(warnings.formatwarning(message, category, filename, lineno, line))
    if file is None:
        _write_stderr(text)
    else:
        try:
            file.write(text)
        except (OSError, ValueError):
            pass


def install_excepthooks() -> None:
    """Print uncaught exceptions (main thread, other threads, unraisable ones; Python also sends
    what a QuickFIX callback raised through `sys.excepthook`) and warnings as Python would, with
    registered secrets masked. Idempotent."""
    sys.excepthook = _excepthook
    threading.excepthook = _threading_excepthook
    sys.unraisablehook = _unraisablehook
    warnings.showwarning = _showwarning


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
AT_NS = "_at_ns"  # a line written later than it happened carries its wall time (ns) under this key


def stamp(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: ``ts``, ISO-8601 UTC with microseconds, of when the event happened
    (``_at_ns`` if the line was deferred, else now)."""
    at = event_dict.pop(AT_NS, None)
    ns = at if isinstance(at, int) else time.time_ns()
    event_dict["ts"] = (_EPOCH + dt.timedelta(microseconds=ns // 1000)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return event_dict


def log_path(run_dir: str | Path, actor: str) -> Path:
    return Path(run_dir) / "logs" / f"{actor}.jsonl"


def setup_logging(run_dir: str | Path, actor: str, level: str = "info") -> structlog.stdlib.BoundLogger:
    """Route structlog to the actor's JSON-lines file and return a bound logger; uncaught
    exceptions of this process are printed with its secrets masked from now on."""
    install_excepthooks()
    path = log_path(run_dir, actor)
    path.parent.mkdir(parents=True, exist_ok=True)
    stream: IO[str] = open(path, "a", buffering=1, encoding="utf-8")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamp,
            structlog.processors.format_exc_info,
            redact_secrets,  # after the exception text exists, before anything is rendered
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
    return structlog.get_logger().bind(actor=actor, pid=os.getpid())
