"""Trading sessions: UTC "HH:MM-HH:MM" windows (`InstrumentCfg.hours`), checked against UTC ns.

One definition for the venue simulator (venue time) and the trigger (wall clock or replay time).
"""

from __future__ import annotations

from collections.abc import Sequence

NS_PER_S = 1_000_000_000
DAY_S = 86_400

Session = tuple[int, int]  # [start, end) in seconds of the UTC day; start > end wraps past midnight


def parse_sessions(hours: Sequence[str]) -> tuple[Session, ...]:
    """Parse "HH:MM-HH:MM" windows; an end of 23:59 means through midnight. Empty: always open."""
    out = []
    for text in hours:
        try:
            start, end = text.split("-")
            s = _seconds(start)
            e = _seconds(end)
        except ValueError:
            raise ValueError(f"HOURS_FORMAT: value={text!r} want='HH:MM-HH:MM'") from None
        if e == DAY_S - 60:
            e = DAY_S
        out.append((s, e))
    return tuple(out)


def _seconds(hhmm: str) -> int:
    hh, mm = hhmm.strip().split(":")
    h, m = int(hh), int(mm)
    if not (0 <= h < 24 and 0 <= m < 60):
        raise ValueError(hhmm)
    return h * 3600 + m * 60


def is_open(sessions: Sequence[Session], utc_ns: int) -> bool:
    """True when `utc_ns` falls inside one of `sessions` (always True for no sessions)."""
    if not sessions:
        return True
    sec = (utc_ns // NS_PER_S) % DAY_S
    for s, e in sessions:
        if s <= e:
            if s <= sec < e:
                return True
        elif sec >= s or sec < e:
            return True
    return False


def clock(utc_ns: int) -> str:
    """UTC time of day as HH:MM:SS, for reasons."""
    sec = (utc_ns // NS_PER_S) % DAY_S
    return f"{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}"
