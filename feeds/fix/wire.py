"""Reading FIX messages as text: tags in order, repeating groups kept in sequence.

QuickFIX owns the session (logon, sequence numbers, resends, heartbeats); what
crosses from its threads into an actor's loop is the message's text. This
module reads that text without QuickFIX, so the mappings built on it
(`execution.fixorders`, `feeds.fix.marketdata`) are pure and unit-testable.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Iterator

from bus.messages import Side

SOH = "\x01"

# tags used across xmc (FIX 4.2 / 4.4 numbers are the same)
ACCOUNT = 1
AVG_PX = 6
BEGIN_STRING = 8
CL_ORD_ID = 11
CUM_QTY = 14
EXEC_ID = 17
EXEC_TRANS_TYPE = 20
HANDL_INST = 21
LAST_PX = 31
LAST_QTY = 32
MSG_SEQ_NUM = 34
MSG_TYPE = 35
ORDER_ID = 37
ORDER_QTY = 38
ORD_STATUS = 39
ORD_TYPE = 40
ORIG_CL_ORD_ID = 41
POSS_DUP = 43
PRICE = 44
REF_SEQ_NUM = 45
SENDER_COMP_ID = 49
SENDING_TIME = 52
SIDE = 54
SYMBOL = 55
TARGET_COMP_ID = 56
TEXT = 58
TIME_IN_FORCE = 59
TRANSACT_TIME = 60
ORD_REJ_REASON = 103
EXEC_TYPE = 150
LEAVES_QTY = 151
SECURITY_EXCHANGE = 207
CXL_REJ_REASON = 102
MD_REQ_ID = 262
SUBSCRIPTION_REQUEST_TYPE = 263
MARKET_DEPTH = 264
MD_UPDATE_TYPE = 265
NO_MD_ENTRY_TYPES = 267
NO_MD_ENTRIES = 268
MD_ENTRY_TYPE = 269
MD_ENTRY_PX = 270
MD_ENTRY_SIZE = 271
MD_UPDATE_ACTION = 279
MD_REQ_REJ_REASON = 281
NO_RELATED_SYM = 146
REF_TAG_ID = 371
REF_MSG_TYPE = 372
SESSION_REJECT_REASON = 373
BUSINESS_REJECT_REASON = 380
CXL_REJ_RESPONSE_TO = 434
USERNAME = 553
PASSWORD = 554


class FixError(ValueError):
    """A message xmc cannot use: `CATEGORY_CONDITION: key=value` in its text."""


SIDE_CODE = {Side.BUY: "1", Side.SELL: "2"}  # tag 54
SIDE_OF_CODE = {code: side for side, code in SIDE_CODE.items()}


DAY_NS = 86_400 * 1_000_000_000
_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()


def date_days(value: str, tag: int) -> int:
    """A UTCDateOnly ``YYYYMMDD`` -> days since 1970-01-01; FixError ``FIX_BAD_TIME`` names the tag."""
    try:
        if len(value) != 8 or not value.isdigit():
            raise ValueError
        return _dt.date(int(value[0:4]), int(value[4:6]), int(value[6:8])).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        raise FixError(f"FIX_BAD_TIME: tag={tag} value={value[:32]!r}") from None


def time_ns(value: str, tag: int) -> int:
    """A UTCTimeOnly ``HH:MM:SS[.fraction]`` -> ns since midnight (fraction up to nanoseconds)."""
    main, _, frac = value.partition(".")
    try:
        hh, mm, ss = main.split(":")
        if not (len(hh) == len(mm) == len(ss) == 2 and (hh + mm + ss).isdigit()):
            raise ValueError
        h, m, s = int(hh), int(mm), int(ss)
        if h > 23 or m > 59 or s > 60 or len(frac) > 9 or (frac and not frac.isdigit()):
            raise ValueError
    except ValueError:
        raise FixError(f"FIX_BAD_TIME: tag={tag} value={value[:32]!r}") from None
    return ((h * 60 + m) * 60 + s) * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0)


def timestamp_days_ns(value: str, tag: int) -> tuple[int, int]:
    """A UTCTimestamp ``YYYYMMDD-HH:MM:SS[.fff]`` -> (days since epoch, ns since midnight)."""
    date, sep, tod = value.partition("-")
    if not sep:
        raise FixError(f"FIX_BAD_TIME: tag={tag} value={value[:32]!r}")
    return date_days(date, tag), time_ns(tod, tag)


class Fields:
    """A FIX message's fields in wire order; lookups return the first occurrence."""

    __slots__ = ("pairs", "_first")

    def __init__(self, pairs: list[tuple[int, str]]) -> None:
        self.pairs = pairs
        first: dict[int, str] = {}
        for tag, value in pairs:
            first.setdefault(tag, value)
        self._first = first

    @classmethod
    def parse(cls, raw: str) -> "Fields":
        """Split `tag=value<SOH>...`; raise FixError on anything that is not one."""
        pairs: list[tuple[int, str]] = []
        for part in raw.split(SOH):
            if not part:
                continue
            tag, sep, value = part.partition("=")
            if not sep or not tag.isdigit():
                raise FixError(f"FIX_MALFORMED: field={part[:32]!r}")
            pairs.append((int(tag), value))
        if not pairs or pairs[0][0] != BEGIN_STRING:
            raise FixError("FIX_MALFORMED: reason=no_begin_string")
        return cls(pairs)

    @property
    def msg_type(self) -> str:
        return self._first.get(MSG_TYPE, "")

    def get(self, tag: int, default: str = "") -> str:
        return self._first.get(tag, default)

    def has(self, tag: int) -> bool:
        return tag in self._first

    def need(self, tag: int) -> str:
        """A required field's value; FixError names the tag and message type when it is missing."""
        value = self._first.get(tag)
        if value is None or value == "":
            raise FixError(f"FIX_MISSING_TAG: tag={tag} msg_type={self.msg_type}")
        return value

    def num(self, tag: int, default: float = 0.0) -> float:
        value = self._first.get(tag)
        if value is None or value == "":
            return default
        try:
            out = float(value)
        except ValueError:
            raise FixError(f"FIX_BAD_VALUE: tag={tag} value={value[:24]!r}") from None
        if not math.isfinite(out):  # 400 digits pass QuickFIX's dictionary check and overflow to inf
            raise FixError(f"FIX_BAD_VALUE: tag={tag} value={value[:24]!r}")
        return out

    def qty(self, tag: int, default: int = 0) -> int:
        """A quantity as whole lots (futures trade whole contracts)."""
        return int(round(self.num(tag, float(default))))

    def groups(self, count_tag: int, first_tag: int) -> Iterator["Fields"]:
        """The entries of the repeating group counted by `count_tag`; each starts at `first_tag`."""
        entries: list[list[tuple[int, str]]] = []
        inside = False
        for tag, value in self.pairs:
            if tag == count_tag:
                inside = True
                continue
            if not inside:
                continue
            if tag == first_tag:
                entries.append([])
            if entries:
                entries[-1].append((tag, value))
        for entry in entries:
            yield Fields(entry)



def masked(raw: str, limit: int = 300) -> str:
    """A FIX message for a log line, parsed or not: `|` for SOH, the password (554) masked, at most
    `limit` characters."""
    return "|".join("554=***" if part.startswith("554=") else part for part in raw.split(SOH) if part)[:limit]
