"""What an operator sees of a FIX session: its state and figures, and how `xmc status` reads
them back from an actor's heartbeat (no QuickFIX needed here)."""

from __future__ import annotations

import enum
import time


class SessionState(str, enum.Enum):
    CONNECTING = "CONNECTING"  # never logged on yet
    LOGGED_ON = "LOGGED_ON"
    DOWN = "DOWN"  # was logged on, now logged out or disconnected


class SessionView:
    """What `xmc status` shows of one FIX session (kept on the loop thread)."""

    __slots__ = ("session", "state", "logons", "logouts", "last_in_ns", "refused", "admin_rejects", "last_reason",
                 "logon_refused", "since_ns")

    def __init__(self, session: str) -> None:
        self.session = session
        self.state = SessionState.CONNECTING
        self.logons = 0
        self.logouts = 0
        self.last_in_ns = 0
        self.refused = 0
        self.admin_rejects = 0
        self.last_reason = ""
        self.logon_refused = 0  # Logouts with a reason while not logged on: the venue refused our Logon
        self.since_ns = time.monotonic_ns()  # when it entered its current state


STATE_CODE = {SessionState.CONNECTING: 0.0, SessionState.LOGGED_ON: 1.0, SessionState.DOWN: 2.0}
_STATE_OF = {code: state for state, code in STATE_CODE.items()}


def sessions_from_detail(actor: str, detail: dict[str, float]) -> list[dict[str, object]]:
    """The FIX sessions in an actor's heartbeat detail, one dict each, for `xmc status`."""
    rows: dict[tuple[str, str], dict[str, object]] = {}
    for key, value in detail.items():
        if not key.startswith("fix.") or "->" not in key:
            continue
        head, _, field = key.rpartition(".")
        _, venue, session = head.split(".", 2)
        row = rows.setdefault((venue, session), {"actor": actor, "venue": venue, "session": session})
        row[field] = _STATE_OF.get(value, SessionState.DOWN).value if field == "state" else value
    return list(rows.values())
