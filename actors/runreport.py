"""`xmc report`: a run's summary figures (leg exposure per pair and UTC day among them) and its PNG
chart, from the audit store."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from actors import tradebook
from bus.auditstore import AuditReader
from configs.schema import Config


def build_report(reader: AuditReader, cfg: Config | None) -> dict:
    rows = tradebook.trades(reader, cfg)
    states = Counter(t["state"] for t in rows)
    orders = Counter()
    for r in reader.rows("kind = 'OrderRequest'"):
        orders[r["body"]["purpose"]] += 1
    reports = Counter()
    filled: set[str] = set()
    for r in reader.rows("kind = 'OrderEvent' AND trade_id IS NOT NULL AND src != 'simex'"):
        reports[r["body"]["exec_type"]] += 1
        if r["body"]["cum_qty"] > 0:
            filled.add(r["body"]["cl_ord_id"])
    n_orders = sum(orders.values())
    lat = tradebook.tick_to_trade_us(reader)
    util = [r["body"]["total"]["utilisation"] for r in reader.rows("kind = 'MarginSnapshot'")]
    risk = Counter(r["body"]["state"] for r in reader.rows("kind = 'RiskState'"))
    pnl = [t["realised_pnl_base"] for t in rows if t["realised_pnl_base"] is not None]
    incidents = reader.incidents()
    return {
        "trades": len(rows),
        "by_state": dict(states),
        "realised_pnl_base": round(sum(pnl), 2),
        "base_currency": cfg.run.base_currency if cfg else "",
        "orders": n_orders,
        "orders_by_purpose": dict(orders),
        "fill_rate": round(len(filled) / n_orders, 4) if n_orders else 0.0,  # orders with any fill
        "reject_rate": round(reports["REJECT"] / n_orders, 4) if n_orders else 0.0,
        "resubmit_rate": round(orders["RESUBMIT"] / n_orders, 4) if n_orders else 0.0,
        "rollback_rate": round(sum(1 for t in rows if t["rollbacks"]) / len(rows), 4) if rows else 0.0,
        "tick_to_trade_us": {k: round(v, 1) for k, v in tradebook.percentiles(lat).items()} | {"n": len(lat)},
        "margin_utilisation": {"max": round(max(util), 4) if util else 0.0, "last": round(util[-1], 4) if util else 0.0},
        "risk_states_published": dict(risk),
        "journal_gaps": sum(1 for i in incidents if i["kind"] == "gap"),
        "journal_catch_ups": sum(1 for i in incidents if i["kind"] == "catch_up"),
        "journal_recovered": sum(i["recovered"] for i in incidents),
        "exposure": exposure_summary(rows, cfg.run.base_currency if cfg else ""),
    }


WORST = 5


def _worst(rows: list[dict], n: int = WORST) -> list[dict]:
    exposed = sorted((t for t in rows if t["exposed"]), key=lambda t: (-t["exposure_ms"], t["trade_id"]))
    return [{k: t[k] for k in ("trade_id", "pair", "utc_day", "state", "exposure_ms", "peak_exposure")}
            | {"ended": t["exposure_ended"]} for t in exposed[:n]]


def exposure_stats(rows: list[dict]) -> dict:
    """Leg exposure of a group of trades: how many, how many ever out of ratio, the distribution of the
    time out of ratio over all of them (never exposed counts as 0 ms), the worst trades."""
    ms = [t["exposure_ms"] for t in rows]
    pct = tradebook.percentiles(ms)
    peaks = [t["peak_exposure"] for t in rows if t["exposed"] and t["peak_exposure"] is not None]
    exposed = sum(1 for t in rows if t["exposed"])
    return {
        "trades": len(rows),
        "filled": sum(1 for t in rows if t["fills"]),
        "exposed": exposed,
        "exposed_share": round(exposed / len(rows), 4) if rows else 0.0,
        "exposure_ms": {"p50": round(pct["p50"], 3), "p99": round(pct["p99"], 3), "max": round(max(ms, default=0.0), 3)},
        "peak_exposure_max": round(max(peaks), 2) if peaks else None,
        "ended": dict(Counter(t["exposure_ended"] for t in rows)),
        "worst": _worst(rows),
    }


def exposure_summary(rows: list[dict], base_currency: str) -> dict:
    """Leg exposure over the run, per pair, per UTC day and per pair and day (`exposure_stats`)."""
    by_pair: dict[str, list[dict]] = defaultdict(list)
    by_day: dict[str, list[dict]] = defaultdict(list)
    by_both: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for t in rows:
        by_pair[t["pair"]].append(t)
        by_day[t["utc_day"]].append(t)
        by_both[(t["pair"], t["utc_day"])].append(t)
    return {
        "base_currency": base_currency,
        "overall": exposure_stats(rows),
        "by_pair": {p: exposure_stats(v) for p, v in sorted(by_pair.items())},
        "by_day": {d: exposure_stats(v) for d, v in sorted(by_day.items())},
        "by_pair_day": [{"pair": p, "utc_day": d} | exposure_stats(v) for (p, d), v in sorted(by_both.items())],
    }


def save_chart(reader: AuditReader, cfg: Config | None, path: Path) -> Path:
    """Latency histogram, each pair's z-score path with entry/exit marks, margin utilisation over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat = tradebook.tick_to_trade_us(reader)
    signals = [r for r in reader.rows("kind = 'Signal'")]
    snaps = [(r["ts_ns"], r["body"]["total"]["utilisation"]) for r in reader.rows("kind = 'MarginSnapshot'")]
    pairs = sorted({s["body"]["pair"] for s in signals}) or (sorted(cfg.pairs) if cfg else [])
    t0 = min([r["ts_ns"] for r in signals] + [t for t, _ in snaps] or [0])
    fig, axes = plt.subplots(2 + len(pairs), 1, figsize=(10, 3.2 * (2 + len(pairs))))
    ax = axes[0]
    ax.hist(lat or [0], bins=40, color="#33658a")
    ax.set_title(f"tick-to-trade (both legs sent), {len(lat)} trades")
    ax.set_xlabel("µs")
    for ax, pair in zip(axes[1:-1], pairs):
        mine = [s for s in signals if s["body"]["pair"] == pair]
        for closing, marker, color, label in ((False, "^", "#d1495b", "entry"), (True, "v", "#2e933c", "exit")):
            pts = [s for s in mine if s["body"]["closing"] is closing]
            ax.scatter([(s["ts_ns"] - t0) / 1e9 for s in pts], [s["body"]["spread"] for s in pts],
                       marker=marker, color=color, label=f"{label} ({len(pts)})")
        ax.set_title(f"{pair}: executable spread at each signal")
        ax.set_xlabel("s")
        ax.legend(loc="best")
    ax = axes[-1]
    ax.plot([(t - t0) / 1e9 for t, _ in snaps], [u * 100 for _, u in snaps], color="#edae49")
    if cfg is not None:
        for level, style in ((cfg.risk.warn_utilisation, "--"), (cfg.risk.reduce_utilisation, ":")):
            ax.axhline(level * 100, linestyle=style, color="grey")
    ax.set_title("margin utilisation (total, %)")
    ax.set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
