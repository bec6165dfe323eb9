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
        detail = ", ".join(f"{k}={v:g}" for k, v in sorted(a.get("detail", {}).items())
                           if (k != "handler_errors" or v) and not (k.startswith("fix.") and "->" in k))
        age = a.get("heartbeat_age_s")
        table.add_row(
            a["name"], a.get("kind", ""), str(a.get("pid") or "-"),
            f"[{_STATE_STYLE.get(a['state'], '')}]{a['state']}[/]", str(a["restarts"]),
            "-" if age is None else f"{age:.1f}", str(a["msgs_in"]), str(a["msgs_out"]),
            str(a["decode_errors"]), str(a["gaps"]), detail[:80],
        )
    sup = doc.get("supervisor", {})
    kill = sup.get("kill_switch", {})
    captions = []
    if kill.get("halted"):
        by = f" by {kill['by']}" if kill.get("by") else ""
        captions.append(f"KILL SWITCH: HALTED ({kill.get('reason', '')}){by}")
    bus = sup.get("bus", {})
    if bus:
        refused = sum(bus.get("refused", {}).values())
        mode = bus.get("security", "")
        captions.append("bus: UNAUTHENTICATED plaintext tcp" if mode == "plaintext" else
                        f"bus: {mode}" + (f", {refused} connection(s) refused" if refused else ""))
    if captions:
        table.caption = " | ".join(captions)
    if console is None:
        console = Console()
        console.print(table)
        if doc.get("fix_sessions"):
            console.print(fix_sessions_table(doc["fix_sessions"]))
    return table


_FIX_STATE_STYLE = {"LOGGED_ON": "green", "CONNECTING": "cyan", "DOWN": "bold red"}


def fix_sessions_table(rows: list[dict]) -> Table:
    table = Table(title="FIX sessions")
    for col in ("actor", "venue", "session", "state", "next out seq", "next in seq", "last in s", "logons",
                "logon refused", "refused msgs"):
        table.add_column(col, justify="left" if col in ("actor", "venue", "session", "state") else "right")
    for r in rows:
        age = r.get("last_in_age_s")
        table.add_row(r["actor"], r["venue"], r["session"], f"[{_FIX_STATE_STYLE.get(r['state'], '')}]{r['state']}[/]",
                      f"{r.get('next_out_seq', 0):g}", f"{r.get('next_in_seq', 0):g}",
                      "-" if age is None else f"{age:.1f}", f"{r.get('logons', 0):g}", f"{r.get('logon_refused', 0):g}",
                      f"{r.get('refused', 0):g}")
    return table


def trades_table(rows: list[dict], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"pair trades ({len(rows)})")
    for col in ("trade", "pair", "dir", "state", "leg A", "leg B", "resub", "rollb", "P&L base", "expo ms", "peak expo"):
        table.add_column(col, justify="right" if col in ("expo ms", "peak expo") else "left")
    for t in rows:
        legs = [f"{l['side'][0]} {l['filled_qty']}/{l['target_qty']} {l['instrument']} @{l['avg_price']:g} net {l['net_qty']}"
                for l in t["legs"]]
        pnl = "" if t["realised_pnl_base"] is None else f"{t['realised_pnl_base']:,.2f}"
        table.add_row(t["trade_id"], t["pair"], t["direction"], t["state"], *(legs + ["", ""])[:2],
                      str(t["resubmits"]), str(t["rollbacks"]), pnl, *_exposure_cells(t))
    console.print(table)


_ENDED_STYLE = {"open": "bold red", "unwound": "yellow"}


def _exposure_cells(t: dict) -> tuple[str, str]:
    """`expo ms` (with how the exposure ended unless it was hedged) and `peak expo` of a trade."""
    if not t.get("exposed"):
        return "-", "-"
    ended = t.get("exposure_ended", "")
    tag = "" if ended == "hedged" else f" [{_ENDED_STYLE.get(ended, '')}]{ended}[/]"
    peak = "?" if t.get("peak_exposure") is None else f"{t['peak_exposure']:,.2f}"
    return f"{t['exposure_ms']:,.3f}{tag}", peak


def trace_table(doc: dict, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"trace {doc['trade_id']} ({doc['pair']}, {doc['state']})")
    for col in ("+µs", "actor", "event", "detail"):
        table.add_column(col)
    t0 = doc["events"][0]["ts_ns"] if doc["events"] else 0
    for e in doc["events"]:
        if e.get("kind") == "Exposure":  # a window of unhedged exposure opening / closing
            keys = ("net_a", "net_b", "unhedged_a", "unhedged_b", "window_ms", "ended")
            detail = " ".join(f"{k}={e[k]}" for k in keys if k in e)
            style = "bold red" if e["event"] == "exposure_start" else "green"
            table.add_row(f"{(e['ts_ns'] - t0) / 1e3:,.1f}", e["actor"], f"[{style}]{e['event']}[/]", detail[:90])
            continue
        keys = ("cl_ord_id", "side", "qty", "price", "last_qty", "last_px", "reason", "state", "bid", "ask", "spread")
        detail = " ".join(f"{k}={e[k]}" for k in keys if e.get(k) not in (None, "", 0))
        table.add_row(f"{(e['ts_ns'] - t0) / 1e3:,.1f}", e["actor"], e["event"], detail[:90])
    console.print(table)
    console.print("latency µs: " + ", ".join(f"{k}={v}" for k, v in doc["latency_us"].items()))
    if "exposure_ms" in doc:
        console.print(_exposure_line(doc))


def _exposure_line(doc: dict) -> str:
    if not doc.get("exposed"):
        return "leg exposure: never out of ratio"
    ccy = doc.get("exposure", {}).get("base_currency", "")
    peak = "unknown (no FX / config)" if doc.get("peak_exposure") is None else f"{doc['peak_exposure']:,.2f} {ccy}".rstrip()
    windows = ", ".join(f"{w['ms']:,.3f}" + ("" if w["end_ns"] is not None else " (open)")
                        for w in doc.get("exposure", {}).get("windows", []))
    return (f"leg exposure: {doc['exposure_ms']:,.3f} ms out of ratio in {doc['exposure_windows']} window(s) [{windows}] ms, "
            f"peak {peak}, ended {doc['exposure_ended']}")


def report_tables(doc: dict, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title="xmc run report")
    table.add_column("figure")
    table.add_column("value", justify="right")
    lat = doc["tick_to_trade_us"]
    rows = [
        ("trades", str(doc["trades"])),
        *((f"  {s}", str(n)) for s, n in sorted(doc["by_state"].items())),
        (f"realised P&L ({doc['base_currency']})", f"{doc['realised_pnl_base']:,.2f}"),
        ("orders", str(doc["orders"])),
        ("fill / reject / resubmit rate", f"{doc['fill_rate']:.2%} / {doc['reject_rate']:.2%} / {doc['resubmit_rate']:.2%}"),
        ("trades with a rollback", f"{doc['rollback_rate']:.2%}"),
        ("tick-to-trade p50 / p99 / p99.9 µs", f"{lat['p50']:,.0f} / {lat['p99']:,.0f} / {lat['p999']:,.0f} (n={lat['n']})"),
        ("margin utilisation max / last", f"{doc['margin_utilisation']['max']:.1%} / {doc['margin_utilisation']['last']:.1%}"),
        ("risk states published", ", ".join(f"{k}={v}" for k, v in sorted(doc["risk_states_published"].items()))),
        ("journal gaps / catch-ups / frames recovered",
         f"{doc['journal_gaps']} / {doc['journal_catch_ups']} / {doc['journal_recovered']}"),
        ("chart", doc["chart"]),
    ]
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    if doc.get("exposure"):
        exposure_tables(doc["exposure"], console)


def exposure_tables(doc: dict, console: Console) -> None:
    """`xmc report`'s leg exposure: per pair and UTC day, then the worst trades of the run."""
    ccy = doc.get("base_currency", "")
    table = Table(title="leg exposure (time out of ratio) per pair and UTC day")
    for col in ("pair", "day", "trades", "exposed", "p50 ms", "p99 ms", "max ms", f"max peak {ccy}".rstrip(), "ended"):
        table.add_column(col, justify="left" if col in ("pair", "day", "ended") else "right")
    groups = [(g["pair"], g["utc_day"], g) for g in doc["by_pair_day"]]
    if len(groups) > 1:
        groups.append(("all", "", doc["overall"]))
    for pair, day, g in groups:
        ms = g["exposure_ms"]
        peak = "-" if g["peak_exposure_max"] is None else f"{g['peak_exposure_max']:,.2f}"
        ended = ", ".join(f"{k}={v}" for k, v in sorted(g["ended"].items()) if k != "never")
        table.add_row(pair, day, str(g["trades"]), f"{g['exposed']} ({g['exposed_share']:.1%})",
                      f"{ms['p50']:,.3f}", f"{ms['p99']:,.3f}", f"{ms['max']:,.3f}", peak, ended)
    console.print(table)
    worst = doc["overall"]["worst"]
    if not worst:
        return
    table = Table(title=f"worst {len(worst)} trades by time out of ratio")
    for col in ("trade", "pair", "day", "state", "expo ms", f"peak {ccy}".rstrip(), "ended"):
        table.add_column(col, justify="right" if col.startswith(("expo", "peak")) else "left")
    for t in worst:
        peak = "?" if t["peak_exposure"] is None else f"{t['peak_exposure']:,.2f}"
        table.add_row(t["trade_id"], t["pair"], t["utc_day"], t["state"], f"{t['exposure_ms']:,.3f}", peak, t["ended"])
    console.print(table)


def capital_table(doc: dict, console: Console | None = None) -> Table:
    """`xmc capital`: per account (its currency) and the total (base currency)."""
    base = doc.get("base_currency", "")
    table = Table(title=f"capital (base {base})" + (f" | risk {doc['risk_state']}" if doc.get("risk_state") else ""))
    for col in ("account", "ccy", "equity", "initial", "maint.", "util.", "headroom", f"headroom {base}",
                "call line", "above line"):
        table.add_column(col, justify="left" if col in ("account", "ccy") else "right")
    for row in [*doc.get("accounts", []), doc.get("total", {})]:
        if not row:
            continue
        style = "bold red" if row["utilisation"] >= 1.0 else "yellow" if row.get("near_threshold") else ""
        hb = row.get("headroom_base")
        table.add_row(
            row["account"], row["currency"], f"{row['equity']:,.0f}", f"{row['initial']:,.0f}",
            f"{row['maintenance']:,.0f}", f"[{style}]{row['utilisation']:.1%}[/]" if style else f"{row['utilisation']:.1%}",
            f"{row['headroom']:,.0f}", "-" if hb is None else f"{hb:,.0f}", f"{row['margin_call_line']:,.0f}",
            f"{row['above_call_line']:,.0f}",
        )
    notes = []
    if doc.get("margin_call"):
        notes.append("MARGIN CALL")
    if doc.get("suggested_transfer"):
        notes.append(f"suggested: {doc['suggested_transfer']}")
    if notes:
        table.caption = " | ".join(notes)
    if console is None:
        Console().print(table)
    return table
