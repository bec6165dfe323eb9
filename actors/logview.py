"""Reading and filtering the actors' JSON-lines logs (`xmc logs`)."""

from __future__ import annotations

import heapq
import json
import time
from pathlib import Path
from typing import Iterator

import msgspec

_RANK = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


class LogFilter(msgspec.Struct, frozen=True, kw_only=True):
    min_level: int = 0
    trade_id: str | None = None
    equals: tuple[tuple[str, str], ...] = ()

    @classmethod
    def build(cls, level: str | None, trade_id: str | None, greps: tuple[str, ...]) -> "LogFilter":
        pairs = []
        for g in greps:
            key, sep, value = g.partition("=")
            if not sep or not key:
                raise ValueError(f"--grep takes KEY=VALUE, got {g!r}")
            pairs.append((key, value))
        return cls(min_level=_RANK[level] if level else 0, trade_id=trade_id, equals=tuple(pairs))

    def match(self, rec: dict) -> bool:
        if self.min_level and _RANK.get(str(rec.get("level", "info")), 20) < self.min_level:
            return False
        if self.trade_id is not None:
            t = self.trade_id
            if rec.get("trade_id") != t and not str(rec.get("cl_ord_id", "")).startswith(t + "."):
                return False
        return all(str(rec.get(k)) == v for k, v in self.equals)


def _files(log_dir: Path, actor: str | None) -> list[Path]:
    return [log_dir / f"{actor}.jsonl"] if actor else sorted(log_dir.glob("*.jsonl"))


def _parse(line: str) -> dict | None:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        return None
    return rec if isinstance(rec, dict) else None


def read_logs(log_dir: Path, actor: str | None, flt: LogFilter) -> Iterator[str]:
    """Matching lines of all selected files, merged by timestamp."""
    streams = []
    for path in _files(log_dir, actor):
        recs = []
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                rec = _parse(line)
                if rec is not None and flt.match(rec):
                    recs.append((str(rec.get("ts", "")), line.rstrip("\n")))
        streams.append(recs)
    for _, line in heapq.merge(*streams):
        yield line


def follow_logs(log_dir: Path, actor: str | None, flt: LogFilter, poll_s: float = 0.2) -> Iterator[str]:
    """New matching lines as they are written (files created later are picked up)."""
    offsets = {p: p.stat().st_size for p in _files(log_dir, actor)}
    while True:
        for path in _files(log_dir, actor):
            pos = offsets.get(path, 0)
            with open(path, encoding="utf-8", errors="replace") as fh:
                fh.seek(pos)
                chunk = fh.read()
            if not chunk:
                continue
            complete = chunk[: chunk.rfind("\n") + 1]
            offsets[path] = pos + len(complete.encode("utf-8"))
            for line in complete.splitlines():
                rec = _parse(line)
                if rec is not None and flt.match(rec):
                    yield line
        time.sleep(poll_s)
