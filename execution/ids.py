"""Trade ids and client order ids: unique, deterministic, stable across restarts.

A trade id is ``<prefix><n>`` with ``n`` zero-padded (``X-000042``); the
executor resumes ``n`` from its write-ahead log, so ids never repeat within a
run directory. A client order id is ``<trade_id>.<leg><k>`` (``X-000042.b3``:
the third order of leg B), derived from the trade's own deterministic order
count, so replaying the log regenerates exactly the same ids.
"""

from __future__ import annotations

import re
from typing import Iterable

import msgspec

_PREFIX = re.compile(r"^(?:[A-Za-z0-9_-]*[A-Za-z_-])?$")
_TRAILING_DIGITS = re.compile(r"(\d+)$")
_CL_ORD = re.compile(r"^(?P<trade>[^.]+)\.(?P<leg>[ab])(?P<n>[1-9]\d*)$")


class ClOrdId(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed client order id."""

    trade_id: str
    leg: str  # "a" or "b"
    n: int  # 1-based order count within the leg


def cl_ord_id(trade_id: str, leg: str, n: int) -> str:
    """The client order id of the `n`-th order (1-based) of `leg` ("a"/"b") in a trade."""
    return f"{trade_id}.{leg}{n}"


def parse_cl_ord_id(value: str) -> ClOrdId | None:
    """Split a client order id made by `cl_ord_id`; None if it is not one of ours."""
    m = _CL_ORD.match(value)
    if m is None:
        return None
    return ClOrdId(trade_id=m["trade"], leg=m["leg"], n=int(m["n"]))


def trade_number(trade_id: str) -> int | None:
    """The counter at the end of a trade id, whatever its prefix; None if there is none."""
    m = _TRAILING_DIGITS.search(trade_id)
    return int(m.group(1)) if m else None


class TradeIds:
    """Generator of trade ids ``<prefix><n:0{width}d>``, starting at `start`.

    Resume after a restart with ``TradeIds(prefix, recovered.next_trade_n)``.
    """

    def __init__(self, prefix: str, start: int = 1, width: int = 6) -> None:
        if not _PREFIX.match(prefix):
            raise ValueError(f"ID_PREFIX: prefix={prefix!r} (letters, digits, _ and -, not ending in a digit)")
        if start < 1:
            raise ValueError(f"ID_START: start={start}")
        self.prefix = prefix
        self.width = width
        self._n = start

    @property
    def next_n(self) -> int:
        """The number the next id will carry."""
        return self._n

    def next(self) -> str:
        """A new trade id."""
        n = self._n
        self._n += 1
        return f"{self.prefix}{n:0{self.width}d}"

    def peek(self) -> str:
        """The id `next` will return."""
        return f"{self.prefix}{self._n:0{self.width}d}"

    def observe(self, trade_id: str) -> None:
        """Make sure ids after this call are past `trade_id`'s number."""
        n = trade_number(trade_id)
        if n is not None and n >= self._n:
            self._n = n + 1

    @classmethod
    def resume(cls, prefix: str, seen: Iterable[str], width: int = 6) -> "TradeIds":
        """A generator whose ids come after every id in `seen`."""
        ids = cls(prefix, 1, width)
        for trade_id in seen:
            ids.observe(trade_id)
        return ids
