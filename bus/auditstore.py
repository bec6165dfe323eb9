"""The audit store: one SQLite file (WAL mode) holding every bus message of a run.

Schema (also in the README):

- ``events``: one row per message seen on the bus. ``(src, epoch, topic, seq)``
  is unique, so a frame replayed to fill a gap is stored once. Columns: the
  envelope (src, epoch, topic, seq, ts_ns = publisher's monotonic send time),
  ``wall_ns`` (UTC ns when journalled, for day exports), ``kind`` (message
  class), the ids an incident is searched by (trade_id, cl_ord_id, pair,
  instrument), ``tick_ns`` (the originating quote's receive time), ``replayed``
  (1 if it came from a replay buffer) and ``body`` (the message as JSON).
- ``incidents``: gaps and publisher restarts seen by the journal, with the
  missing range and how many frames were recovered.

The executor's durable execution stream is filed event by event under the topic
`bus.stream.filed_topic` names (``exec.fill.<venue>``, ``exec.trade.<pair>``,
``exec.positions``) with ``epoch`` = `STREAM_EPOCH` and ``seq`` = the stream's own
sequence number, so an event is stored once however often it is delivered, and the
journal resumes from `AuditWriter.stream_head`.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator

import msgspec

from bus.messages import Envelope

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY,
  src TEXT NOT NULL,
  epoch INTEGER NOT NULL,
  topic TEXT NOT NULL,
  seq INTEGER NOT NULL,
  ts_ns INTEGER NOT NULL,
  wall_ns INTEGER NOT NULL,
  kind TEXT NOT NULL,
  trade_id TEXT,
  cl_ord_id TEXT,
  pair TEXT,
  instrument TEXT,
  tick_ns INTEGER,
  replayed INTEGER NOT NULL DEFAULT 0,
  body TEXT NOT NULL,
  UNIQUE (src, epoch, topic, seq)
);
CREATE INDEX IF NOT EXISTS events_trade ON events (trade_id);
CREATE INDEX IF NOT EXISTS events_kind ON events (kind);
CREATE INDEX IF NOT EXISTS events_tick ON events (tick_ns);
CREATE TABLE IF NOT EXISTS incidents (
  id INTEGER PRIMARY KEY,
  wall_ns INTEGER NOT NULL,
  kind TEXT NOT NULL,
  src TEXT NOT NULL,
  topic TEXT NOT NULL,
  first_seq INTEGER,
  last_seq INTEGER,
  recovered INTEGER NOT NULL DEFAULT 0,
  detail TEXT NOT NULL DEFAULT ''
);
"""

INSERT_SQL = (
    "INSERT OR IGNORE INTO events (src, epoch, topic, seq, ts_ns, wall_ns, kind, trade_id, cl_ord_id, pair,"
    " instrument, tick_ns, replayed, body) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_json = msgspec.json.Encoder()
STREAM_EPOCH = 0  # the epoch of filed stream events: their seq is durable, not per publisher process


def trade_of(cl_ord_id: str) -> str:
    """The trade id a client order id belongs to (`<trade_id>.<leg><n>`)."""
    return cl_ord_id.rsplit(".", 1)[0] if "." in cl_ord_id else ""


def row_of(topic: str, env: Envelope, replayed: bool = False) -> tuple:
    body = env.body
    get = body.__getattribute__

    def attr(name: str) -> Any:
        try:
            return get(name)
        except AttributeError:
            return None

    cl = attr("cl_ord_id")
    trade = attr("trade_id") or (trade_of(cl) if cl else None)
    kind = type(body).__name__
    tick = attr("recv_ns") if kind in ("Quote", "FxRate") else attr("tick_recv_ns")
    return (
        env.src, env.epoch, topic, env.seq, env.ts_ns, time.time_ns(), kind, trade or None, cl,
        attr("pair"), attr("instrument") or attr("symbol"), tick, int(replayed), _json.encode(body).decode(),
    )


class AuditWriter:
    """Batched writer; call `flush()` on a timer and before exit."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self._rows: list[tuple] = []
        self.written = 0

    @property
    def pending(self) -> int:
        return len(self._rows)

    def add(self, row: tuple) -> None:
        self._rows.append(row)

    def flush(self) -> int:
        rows, self._rows = self._rows, []
        if not rows:
            return 0
        self.db.execute("BEGIN")
        cur = self.db.executemany(INSERT_SQL, rows)
        self.db.execute("COMMIT")
        self.written += cur.rowcount if cur.rowcount >= 0 else len(rows)
        return len(rows)

    def incident(self, kind: str, src: str, topic: str, first: int | None, last: int | None, detail: str = "") -> int:
        cur = self.db.execute(
            "INSERT INTO incidents (wall_ns, kind, src, topic, first_seq, last_seq, detail) VALUES (?,?,?,?,?,?,?)",
            (time.time_ns(), kind, src, topic, first, last, detail),
        )
        return int(cur.lastrowid or 0)

    def recovered(self, incident_id: int, count: int) -> None:
        self.db.execute("UPDATE incidents SET recovered = recovered + ? WHERE id = ?", (count, incident_id))

    def last_seqs(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(src, topic) -> (epoch, highest seq) of the newest epoch stored, to resume gap detection."""
        out: dict[tuple[str, str], tuple[int, int]] = {}
        for src, topic, epoch, seq in self.db.execute(
            "SELECT src, topic, epoch, MAX(seq) FROM events GROUP BY src, topic, epoch ORDER BY epoch"
        ):
            out[(src, topic)] = (epoch, seq)
        return out

    def stream_head(self, src: str) -> int:
        """The newest stream seq filed for executor `src` (0: none)."""
        row = self.db.execute("SELECT MAX(seq) FROM events WHERE src = ? AND epoch = ?", (src, STREAM_EPOCH)).fetchone()
        return int(row[0] or 0)

    def close(self) -> None:
        self.flush()
        self.db.close()


class AuditReader:
    """Read-only queries for `xmc trades`, `xmc trace`, `xmc audit export`, `xmc report`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no audit store at {self.path}")
        self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)

    def rows(self, where: str = "1=1", params: tuple = (), order: str = "id") -> Iterator[dict]:
        cur = self.db.execute(
            f"SELECT id, src, topic, seq, ts_ns, wall_ns, kind, trade_id, cl_ord_id, pair, tick_ns, replayed, body"
            f" FROM events WHERE {where} ORDER BY {order}",
            params,
        )
        for r in cur:
            yield {
                "id": r[0], "src": r[1], "topic": r[2], "seq": r[3], "ts_ns": r[4], "wall_ns": r[5], "kind": r[6],
                "trade_id": r[7], "cl_ord_id": r[8], "pair": r[9], "tick_ns": r[10], "replayed": bool(r[11]),
                "body": msgspec.json.decode(r[12]),
            }

    def incidents(self) -> list[dict]:
        cols = ("id", "wall_ns", "kind", "src", "topic", "first_seq", "last_seq", "recovered", "detail")
        return [dict(zip(cols, r)) for r in self.db.execute(f"SELECT {', '.join(cols)} FROM incidents ORDER BY id")]

    def close(self) -> None:
        self.db.close()
