"""Terminal tables (rich) for the CLI."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

_STATE_STYLE = {"running": "green", "ready": "green", "degraded": "yellow", "starting": "cyan",
                "stopping": "cyan", "stopped": "dim", "faulted": "bold red"}


def status_table(doc: dict, console: Console | None = None) -> Table:
    table = Table(title="xmc actors" + ("" if doc.get("running", True) else " (supervisor not running)"))
    for col in ("actor", "kind", "pid", "state", "restarts", "hb age s", "in", "out", "bad frames", "gaps", "detail"):
        table.add_column(col, justify="right" if col not in ("actor", "kind", "state", "detail") else "left")
    for a in doc.get("actors", []):
        detail = ", ".join(f"{k}={v:g}" for k, v in sorted(a.get("detail", {}).items()) if k != "handler_errors" or v)
        age = a.get("heartbeat_age_s")
        table.add_row(
            a["name"], a.get("kind", ""), str(a.get("pid") or "-"),
            f"[{_STATE_STYLE.get(a['state'], '')}]{a['state']}[/]", str(a["restarts"]),
            "-" if age is None else f"{age:.1f}", str(a["msgs_in"]), str(a["msgs_out"]),
            str(a["decode_errors"]), str(a["gaps"]), detail[:80],
        )
    kill = doc.get("supervisor", {}).get("kill_switch", {})
    if console is None:
        console = Console()
        console.print(table)
        if kill.get("halted"):
            console.print(f"[bold red]KILL SWITCH: HALTED[/] ({kill.get('reason', '')})")
    return table
