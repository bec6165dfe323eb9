"""structlog JSON-lines logging: one file per actor, `<run-dir>/logs/<actor>.jsonl`.

Every line has `ts`, `level`, `event` (a stable snake_case name), `actor` and
`pid`, plus the ids the event concerns (trade_id, cl_ord_id, pair, ...), so
`xmc logs --trade ID` can follow one trade across every actor.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import IO, Any

import msgspec
import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_json = msgspec.json.Encoder()


def _dumps(obj: Any, **_: Any) -> str:
    try:
        return _json.encode(obj).decode()
    except TypeError:
        return _json.encode({k: (v if isinstance(v, (int, float, bool, str, type(None))) else str(v)) for k, v in obj.items()}).decode()


def log_path(run_dir: str | Path, actor: str) -> Path:
    return Path(run_dir) / "logs" / f"{actor}.jsonl"


def setup_logging(run_dir: str | Path, actor: str, level: str = "info") -> structlog.stdlib.BoundLogger:
    """Route structlog to the actor's JSON-lines file and return a bound logger."""
    path = log_path(run_dir, actor)
    path.parent.mkdir(parents=True, exist_ok=True)
    stream: IO[str] = open(path, "a", buffering=1, encoding="utf-8")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
    return structlog.get_logger().bind(actor=actor, pid=os.getpid())
