"""Trading sessions: UTC "HH:MM-HH:MM" windows, checked against venue time (UTC ns)."""

from __future__ import annotations

_MIN_NS = 60_000_000_000
_DAY_MIN = 1440


def parse_sessions(hours: list[str]) -> list[tuple[int, int]]:
    """Sessions as (start, end) minutes of the UTC day; an end of 23:59 means midnight."""
    out: list[tuple[int, int]] = []
    for h in hours:
        start, end = h.split("-")
        s = int(start[:2]) * 60 + int(start[3:5])
        e = int(end[:2]) * 60 + int(end[3:5])
        out.append((s, _DAY_MIN if e == _DAY_MIN - 1 else e))
    return out


def is_open(sessions: list[tuple[int, int]], venue_time_ns: int) -> bool:
    """True if `venue_time_ns` falls in a session; no sessions means always open."""
    if not sessions:
        return True
    minute = (venue_time_ns // _MIN_NS) % _DAY_MIN
    for s, e in sessions:
        if s <= e:
            if s <= minute < e:
                return True
        elif minute >= s or minute < e:  # across midnight
            return True
    return False
