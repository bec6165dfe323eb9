"""Trades, traces and run statistics read back from the audit store.

Pure queries over `bus.auditstore.AuditReader` for `xmc trades`, `xmc trace`,
`xmc report` and `xmc audit export`; no sockets.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any, Iterator

from bus.auditstore import AuditReader
from bus.messages import TradeState
from configs.schema import Config

_SIGN = {"BUY": 1, "SELL": -1}


def percentiles(values: list[int] | list[float]) -> dict[str, float]:
    """p50/p99/p99.9 by nearest rank."""
    s = sorted(values)
    if not s:
        return {"p50": 0.0, "p99": 0.0, "p999": 0.0}

    def at(q: float) -> float:
        return float(s[min(len(s) - 1, int(q * len(s)))])

    return {"p50": at(0.50), "p99": at(0.99), "p999": at(0.999)}


def _fx_to_base(reader: AuditReader, base: str) -> dict[str, float]:
    """currency -> base-currency rate from the last FX rates journalled."""
    last: dict[str, float] = {}
    for row in reader.rows("kind = 'FxRate'"):
        b = row["body"]
        last[b["pair"]] = (b["bid"] + b["ask"]) / 2.0
    rates = {base: 1.0}
    for pair, mid in last.items():
        c1, c2 = pair[:3], pair[3:]
        if c1 == base and mid > 0:
            rates.setdefault(c2, 1.0 / mid)
        elif c2 == base:
            rates.setdefault(c1, mid)
    return rates


def trades(reader: AuditReader, cfg: Config | None = None, state: str | None = None, pair: str | None = None) -> list[dict]:
    """Every pair trade with its last state, legs, sub-accounts, fills and realised P&L."""
    last: dict[str, dict] = {}
    first_ts: dict[str, int] = {}
    # order by publisher epoch and sequence: frames recovered from a replay buffer arrive late
    for row in reader.rows("kind = 'PairTradeEvent' AND trade_id IS NOT NULL", order="epoch, seq"):
        tid = row["trade_id"]
        last[tid] = row["body"]
        first_ts.setdefault(tid, row["ts_ns"])
    accounts: dict[tuple[str, str], set[str]] = defaultdict(set)
    for row in reader.rows("kind = 'OrderRequest'"):
        b = row["body"]
        accounts[(row["trade_id"], b["instrument"])].add(b["account"])
    # per order, the report with the highest cumulative quantity: a fill whose own report was lost
    # still shows in a later STATUS or cancel answer, with the average price
    best: dict[str, dict] = {}
    fills: dict[str, int] = defaultdict(int)
    for row in reader.rows("kind = 'OrderEvent' AND src IN (SELECT DISTINCT src FROM events WHERE kind = 'PairTradeEvent')"):
        b = row["body"]
        if not row["trade_id"]:
            continue
        if b["exec_type"] == "FILL" and b["last_qty"] > 0:
            fills[row["trade_id"]] += 1
        if b["cum_qty"] > 0 and b["avg_px"] > 0 and b["cum_qty"] >= best.get(b["cl_ord_id"], {}).get("cum_qty", 0):
            best[b["cl_ord_id"]] = dict(b, trade_id=row["trade_id"])
    cash: dict[tuple[str, str], float] = defaultdict(float)
    for b in best.values():
        cash[(b["trade_id"], b["instrument"])] -= _SIGN[b["side"]] * b["cum_qty"] * b["avg_px"]
    fx = _fx_to_base(reader, cfg.run.base_currency) if cfg is not None else {}
    out = []
    for tid, ev in sorted(last.items()):
        if (state and ev["state"] != state) or (pair and ev["pair"] != pair):
            continue
        legs = []
        pnl: float | None = 0.0
        for leg in ev["legs"]:
            view = {k: leg[k] for k in ("instrument", "side", "target_qty", "filled_qty", "avg_price", "net_qty")}
            view["sub_accounts"] = sorted(accounts.get((tid, leg["instrument"]), ()))
            legs.append(view)
            if cfg is None or pnl is None:
                pnl = None
            elif leg["net_qty"] == 0:
                inst = cfg.instruments.get(leg["instrument"])
                rate = fx.get(inst.currency) if inst is not None else None
                pnl = None if inst is None or rate is None else pnl + cash[(tid, leg["instrument"])] * inst.multiplier * rate
        flat = all(leg["net_qty"] == 0 for leg in ev["legs"])
        out.append({
            "trade_id": tid, "pair": ev["pair"], "direction": ev["direction"], "state": ev["state"],
            "terminal": TradeState(ev["state"]).terminal, "legs": legs, "resubmits": ev["resubmits"], "rollbacks": ev["rollbacks"],
            "fills": fills.get(tid, 0), "signal_id": ev["signal_id"], "reason": ev["reason"],
            "realised_pnl_base": round(pnl, 2) if (pnl is not None and flat) else None,
        })
    return out


def trace(reader: AuditReader, trade_id: str) -> dict | None:
    """The whole chain of one trade: triggering quotes, signal, orders, reports, transitions, with hop latencies."""
    rows = list(reader.rows("trade_id = ?", (trade_id,)))
    transitions = [r for r in rows if r["kind"] == "PairTradeEvent"]
    if not transitions:
        return None
    first = transitions[0]["body"]
    tick = first["tick_recv_ns"]
    origin = [r for r in reader.rows("tick_ns = ? AND kind IN ('Quote', 'FxRate', 'Signal')", (tick,))] if tick else []
    signal = next((r["body"] for r in origin if r["kind"] == "Signal" and r["body"]["signal_id"] == first["signal_id"]), None)
    origin = [r for r in origin if r["kind"] != "Signal" or r["body"] is signal]
    events = []
    for r in sorted(origin + rows, key=lambda r: (r["ts_ns"], r["id"])):
        b = r["body"]
        name = b.get("transition") or (b["exec_type"] if r["kind"] == "OrderEvent" else r["kind"])
        ev: dict[str, Any] = {k: v for k, v in b.items() if k != "k"}
        ev.update({"ts_ns": r["ts_ns"], "actor": r["src"], "event": name, "kind": r["kind"], "topic": r["topic"]})
        events.append(ev)
    orders = [r["body"] for r in rows if r["kind"] == "OrderRequest"]
    reports = [r["body"] for r in rows if r["kind"] == "OrderEvent"]
    return {"trade_id": trade_id, "pair": first["pair"], "state": transitions[-1]["body"]["state"],
            "events": events, "latency_us": hop_latencies(tick, signal, orders, reports)}


def hop_latencies(tick: int, signal: dict | None, orders: list[dict], reports: list[dict]) -> dict[str, float | None]:
    """tick->signal, signal->orders sent, sent->ack, sent->fill and tick-to-trade, in microseconds."""

    def us(a: int | None, b: int | None) -> float | None:
        return round((b - a) / 1e3, 1) if a and b else None

    first_open: dict[str, dict] = {}
    for o in orders:
        if o["purpose"] == "OPEN" and o["sent_ns"]:
            first_open.setdefault(o["instrument"], o)
    both_sent = max((o["sent_ns"] for o in first_open.values()), default=None) if len(first_open) == 2 else None
    acks, fills = [], []
    for o in first_open.values():
        mine = [r for r in reports if r["cl_ord_id"] == o["cl_ord_id"] and r["recv_ns"]]  # as the executor received them
        ack = next((r["recv_ns"] for r in mine if r["exec_type"] in ("ACK", "FILL", "REJECT", "CANCELLED", "STATUS")), None)
        fill = next((r["recv_ns"] for r in mine if r["exec_type"] == "FILL"), None)
        acks.append(us(o["sent_ns"], ack))
        fills.append(us(o["sent_ns"], fill))
    sig_ns = signal["signal_ns"] if signal else None
    return {
        "tick_to_signal": us(tick, sig_ns),
        "signal_to_orders": us(sig_ns, both_sent),
        "sent_to_ack": max((a for a in acks if a is not None), default=None),
        "sent_to_fill": max((f for f in fills if f is not None), default=None),
        "tick_to_trade": us(tick, both_sent),
    }


def tick_to_trade_us(reader: AuditReader) -> list[float]:
    """tick-to-trade (both legs' first entry orders sent) of every trade, microseconds."""
    first: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)
    for row in reader.rows("kind = 'OrderRequest'"):
        b = row["body"]
        if b["purpose"] == "OPEN" and b["sent_ns"] and b["tick_recv_ns"]:
            first[row["trade_id"]].setdefault(b["instrument"], (b["sent_ns"], b["tick_recv_ns"]))
    out = []
    for legs in first.values():
        if len(legs) == 2:
            sent = max(s for s, _ in legs.values())
            tick = max(t for _, t in legs.values())
            out.append((sent - tick) / 1e3)
    return out


def export_day(reader: AuditReader, day: dt.date) -> Iterator[dict]:
    """Every event journalled on `day` (UTC), in order, flattened for CSV/JSON."""
    start = int(dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc).timestamp() * 1e9)
    end = start + 86_400 * 10**9
    for r in reader.rows("wall_ns >= ? AND wall_ns < ?", (start, end)):
        yield {
            "id": r["id"], "utc": dt.datetime.fromtimestamp(r["wall_ns"] / 1e9, dt.timezone.utc).isoformat(),
            "src": r["src"], "topic": r["topic"], "seq": r["seq"], "kind": r["kind"], "trade_id": r["trade_id"] or "",
            "cl_ord_id": r["cl_ord_id"] or "", "pair": r["pair"] or "", "replayed": r["replayed"], "body": r["body"],
        }
