"""`xmc report`: a run's summary figures and its PNG chart, from the audit store."""

from __future__ import annotations

from collections import Counter
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
