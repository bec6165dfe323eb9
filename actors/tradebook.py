"""Trades, traces and run statistics read back from the audit store.

Pure queries over `bus.auditstore.AuditReader` for `xmc trades`, `xmc trace`,
`xmc report` and `xmc audit export`; no sockets. Leg exposure (time out of ratio, peak
unhedged notional, how it ended) is worked out per trade by `execution.exposure` from the
execution stream as the journal files it (fills under ``exec.fill.*``, trade events under
``exec.trade.*``, in stream ``seq`` order).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from typing import Any, Iterator

import msgspec

from bus import topics
from bus.auditstore import AuditReader
from bus.messages import OrderEvent, PairTradeEvent, TradeState
from configs.schema import Config
from execution import exposure as expo

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


# the executor's execution stream as the journal files it (`bus.stream.filed_topic`): fills and trade events
_STREAM_WHERE = (f"trade_id IS NOT NULL AND kind IN ('OrderEvent', 'PairTradeEvent')"
                 f" AND (topic LIKE '{topics.EXEC_FILL}%' OR topic LIKE '{topics.EXEC_TRADE}%')")


def _is_stream_row(row: dict) -> bool:
    return row["kind"] in ("OrderEvent", "PairTradeEvent") and row["topic"].startswith((topics.EXEC_FILL, topics.EXEC_TRADE))


def _stream_body(row: dict) -> OrderEvent | PairTradeEvent:
    return msgspec.convert(row["body"], OrderEvent if row["kind"] == "OrderEvent" else PairTradeEvent)


def stream_rows(reader: AuditReader, trade_id: str | None = None) -> dict[str, list[dict]]:
    """trade id -> its filed execution-stream rows (fill events, trade events) in stream order."""
    where, params = (_STREAM_WHERE + " AND trade_id = ?", (trade_id,)) if trade_id else (_STREAM_WHERE, ())
    out: dict[str, list[dict]] = defaultdict(list)
    for row in reader.rows(where, params, order="src, seq"):
        out[row["trade_id"]].append(row)
    return out


def leg_specs(trade_events: list[dict], cfg: Config | None, fx: dict[str, float]) -> tuple[expo.LegSpec, expo.LegSpec] | None:
    """The two legs of a trade for `execution.exposure`: from the run's config (ratios, multipliers,
    currencies with `fx` to base), or without one from the trade's own first target quantities
    (ratio reduced by their gcd; no notional). None if neither says."""
    pair = trade_events[0]["pair"] if trade_events else None
    pc = cfg.pairs.get(pair) if cfg is not None and pair else None
    if pc is not None:
        specs = []
        for key, ratio in ((pc.leg_a, pc.ratio_a), (pc.leg_b, pc.ratio_b)):
            inst = cfg.instruments.get(key)  # type: ignore[union-attr]
            specs.append(expo.LegSpec(instrument=key, ratio=ratio, multiplier=inst.multiplier if inst else None,
                                      fx=fx.get(inst.currency) if inst else None))
        return specs[0], specs[1]
    for ev in trade_events:
        legs = ev.get("legs") or ()
        if len(legs) == 2 and legs[0]["target_qty"] > 0 and legs[1]["target_qty"] > 0:
            g = math.gcd(legs[0]["target_qty"], legs[1]["target_qty"])
            a, b = (expo.LegSpec(instrument=leg["instrument"], ratio=leg["target_qty"] // g, multiplier=None, fx=None)
                    for leg in legs)
            return a, b
    return None


def exposure_moments(rows: list[dict], cfg: Config | None, fx: dict[str, float]) -> list[expo.Moment]:
    """A trade's positions moment by moment from its filed stream rows (see `execution.exposure`)."""
    specs = leg_specs([r["body"] for r in rows if r["kind"] == "PairTradeEvent"], cfg, fx)
    if specs is None:
        return []
    return expo.moments([_stream_body(r) for r in rows], *specs)


def exposure_fields(e: expo.Exposure) -> dict[str, Any]:
    """The exposure figures of a trade as `xmc trades` shows them."""
    return {"exposure_ms": e.exposure_ms,
            "peak_exposure": None if e.peak_exposure is None else round(e.peak_exposure, 2),
            "exposure_ended": e.ended, "exposed": e.exposed, "exposure_windows": len(e.windows)}


def trades(reader: AuditReader, cfg: Config | None = None, state: str | None = None, pair: str | None = None) -> list[dict]:
    """Every pair trade with its last state, legs, sub-accounts, fills, realised P&L and leg exposure."""
    last: dict[str, dict] = {}
    first_wall: dict[str, int] = {}
    # order by publisher epoch and sequence: frames recovered from a replay buffer arrive late
    for row in reader.rows("kind = 'PairTradeEvent' AND trade_id IS NOT NULL", order="epoch, seq"):
        tid = row["trade_id"]
        last[tid] = row["body"]
        first_wall.setdefault(tid, row["wall_ns"])
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
    stream = stream_rows(reader)
    out = []
    for tid, ev in sorted(last.items()):
        if (state and ev["state"] != state) or (pair and ev["pair"] != pair):
            continue
        exposure = expo.exposure_of(exposure_moments(stream.get(tid, []), cfg, fx))
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
            **exposure_fields(exposure),
            "utc_day": dt.datetime.fromtimestamp(first_wall[tid] / 1e9, dt.timezone.utc).date().isoformat(),
        })
    return out


def trace(reader: AuditReader, trade_id: str, cfg: Config | None = None) -> dict | None:
    """The whole chain of one trade: triggering quotes, signal, orders, reports, transitions, with hop
    latencies, and its leg exposure: each window marked on the timeline (``exposure_start`` /
    ``exposure_end`` rows right after the stream event that opened / closed it) and the totals."""
    rows = list(reader.rows("trade_id = ?", (trade_id,)))
    transitions = [r for r in rows if r["kind"] == "PairTradeEvent"]
    if not transitions:
        return None
    first = transitions[0]["body"]
    tick = first["tick_recv_ns"]
    origin = [r for r in reader.rows("tick_ns = ? AND kind IN ('Quote', 'FxRate', 'Signal')", (tick,))] if tick else []
    signal = next((r["body"] for r in origin if r["kind"] == "Signal" and r["body"]["signal_id"] == first["signal_id"]), None)
    origin = [r for r in origin if r["kind"] != "Signal" or r["body"] is signal]
    fx = _fx_to_base(reader, cfg.run.base_currency) if cfg is not None else {}
    stream = sorted((r for r in rows if _is_stream_row(r)), key=lambda r: (r["src"], r["seq"]))
    steps = exposure_moments(stream, cfg, fx)
    exposure = expo.exposure_of(steps)
    markers = _exposure_markers(steps, stream, exposure)
    events = []
    for r in sorted(origin + rows, key=lambda r: (r["ts_ns"], r["id"])):
        b = r["body"]
        name = b.get("transition") or (b["exec_type"] if r["kind"] == "OrderEvent" else r["kind"])
        ev: dict[str, Any] = {k: v for k, v in b.items() if k != "k"}
        ev.update({"ts_ns": r["ts_ns"], "actor": r["src"], "event": name, "kind": r["kind"], "topic": r["topic"]})
        events.append(ev)
        events.extend(markers.get(r["id"], ()))
    orders = [r["body"] for r in rows if r["kind"] == "OrderRequest"]
    reports = [r["body"] for r in rows if r["kind"] == "OrderEvent"]
    return {"trade_id": trade_id, "pair": first["pair"], "state": transitions[-1]["body"]["state"],
            "events": events, "latency_us": hop_latencies(tick, signal, orders, reports),
            **exposure_fields(exposure),
            "exposure": {
                "windows": [{"start_ns": s, "end_ns": e, "ms": round(((exposure.last_ns if e is None else e) - s) / 1e6, 3)}
                            for s, e in exposure.windows],
                "peak_ns": exposure.peak_ns, "base_currency": cfg.run.base_currency if cfg is not None else ""}}


def _exposure_markers(steps: list[expo.Moment], stream: list[dict], e: expo.Exposure) -> dict[int, list[dict]]:
    """row id -> the exposure_start / exposure_end timeline rows to show right after it."""
    out: dict[int, list[dict]] = defaultdict(list)
    out_of_ratio = False
    n = 0
    for m in steps:
        row = stream[m.last_index]
        base = {"ts_ns": row["ts_ns"], "actor": "exposure", "kind": "Exposure", "topic": "", "at_ns": m.t_ns,
                "net_a": m.net_a, "net_b": m.net_b}
        if not m.in_ratio and not out_of_ratio:
            out_of_ratio = True
            out[row["id"]].append(base | {"event": "exposure_start", "window": n, "unhedged_a": m.unhedged_a,
                                          "unhedged_b": m.unhedged_b})
        elif m.in_ratio and out_of_ratio:
            out_of_ratio = False
            start = e.windows[n][0]
            out[row["id"]].append(base | {"event": "exposure_end", "window": n, "ended": expo.closed_by(m),
                                          "window_ms": round((m.t_ns - start) / 1e6, 3)})
            n += 1
    return out


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


STAGES = ("tick_to_trigger", "trigger_eval", "signal_to_executor", "executor_to_first_order",
          "first_to_last_order")


def tick_stages_us(reader: AuditReader) -> list[dict[str, float]]:
    """Where each trade's tick-to-trade went, microseconds per stage: tick (ingest receive) ->
    trigger wake (`Signal.eval_ns`) -> signal published (`signal_ns`) -> executor wake (its first
    trade event's `ts_ns`) -> first entry order sent -> last entry order sent; plus
    `tick_to_first_order` and `tick_to_trade`. Trades without every stamp are left out."""
    sent: dict[str, list[int]] = defaultdict(list)
    tick: dict[str, int] = {}
    for row in reader.rows("kind = 'OrderRequest'"):
        b = row["body"]
        if b["purpose"] == "OPEN" and b["sent_ns"] and b["tick_recv_ns"]:
            sent[row["trade_id"]].append(b["sent_ns"])
            tick.setdefault(row["trade_id"], b["tick_recv_ns"])
    woke: dict[str, tuple[int, str]] = {}
    for row in reader.rows("kind = 'PairTradeEvent' AND trade_id IS NOT NULL", order="epoch, seq"):
        woke.setdefault(row["trade_id"], (row["body"]["ts_ns"], row["body"]["signal_id"]))
    signals: dict[str, dict] = {}
    for row in reader.rows("kind = 'Signal'"):
        signals.setdefault(row["body"]["signal_id"], row["body"])
    out = []
    for tid, times in sent.items():
        if tid not in woke or woke[tid][1] not in signals:
            continue
        sig, exec_wake = signals[woke[tid][1]], woke[tid][0]
        t0, first, last = tick[tid], min(times), max(times)
        if not sig.get("eval_ns") or len(times) < 2:
            continue
        marks = (t0, sig["eval_ns"], sig["signal_ns"], exec_wake, first, last)
        row = {name: (b - a) / 1e3 for name, a, b in zip(STAGES, marks, marks[1:])}
        row["tick_to_first_order"] = (first - t0) / 1e3
        row["tick_to_trade"] = (last - t0) / 1e3
        out.append(row)
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
