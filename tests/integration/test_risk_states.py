"""Risk states with real processes: simex -> ingest -> trigger -> executor, marginwatch.

1. A falling market: the trigger sells the HSI/MHI spread once (short 1 HSI, long
   5 MHI), then the simex `drift` drill walks MHI down; the loss raises margin
   utilisation through WARN, REDUCE_ONLY and HALTED, each published on
   `risk.state`; the trigger and the executor apply each level as it comes, and a
   closing trade opened under WARN and still working at REDUCE_ONLY is cancelled flat.
2. The operator's kill switch (`xmc halt`) with a pair trade in flight: the
   trade finishes its rollback (never BROKEN), and no new pair trade opens
   while the signals that keep coming are refused with RISK_STATE.

Signals other than the trigger's come from the test, standing in for a second
(disabled) trigger actor `desk` whose PUB endpoint it binds.

Sizing of the falling market (HKD base, one HKD account, margin 2 % of notional):
one spread unit is 1 HSI + 5 MHI, HKD 1.25M notional per leg, IM 25k + 25k.
With a balance of 100k, utilisation starts near 0.48 (putting the forced basis back
gains the position ~5k); each 1 % MHI falls costs 12.5k, so WARN (0.6) comes after a
fall of ~1.8 %, REDUCE_ONLY (0.75) ~3.2 %, HALTED (1.0) ~4.5 %. At -1.5 bp per MHI
quote (40 quotes/s) the levels are ~2.3 s apart: far more than one marginwatch
snapshot (50 ms), so no level is skipped even on a busy host.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Iterator

import pytest

from bus import topics
from bus.messages import Heartbeat, PairTradeEvent, Quote, RiskLevel, RiskState, Side, Signal, SignalLeg
from configs.load import load_config
from configs.schema import Config
from helpers import DeskBus, drill, wait_for, write_config, xmc

PAIR = "hsi_mhi"
LEVELS = [RiskLevel.NORMAL, RiskLevel.WARN, RiskLevel.REDUCE_ONLY, RiskLevel.HALTED]


def _config(*, venue_sim: str, hsi_vol_bp: float, reversion: float, pair_extra: str, balance: float, risk: str) -> str:
    return f"""
[run]
seed = 5
base_currency = "HKD"
heartbeat_s = 0.2
heartbeat_timeout_s = 10.0

[venues.HKEX]
kind = "sim"
sim = {venue_sim}

[instruments.HSI]
hours = []
margin_pct = 0.02
sim = {{ start = 25000.0, vol_bp = {hsi_vol_bp}, spread_ticks = 1, size = 15, interval_ms = 25 }}

[instruments.MHI]
hours = []
margin_pct = 0.02
sim = {{ start = 25000.0, vol_bp = {hsi_vol_bp}, spread_ticks = 1, size = 40, interval_ms = 25 }}

[pairs.{PAIR}]
leg_a = "HSI"
leg_b = "MHI"
ratio_a = 1
ratio_b = 5
currency = "HKD"
unit = "pt"
mode = "spread"
entry = 40.0
exit = 0.0
max_inventory = 1
cooldown_ms = 50
max_quote_age_ms = 5000
expiry_ms = 5000
sim_basis_bp = 0.0
sim_basis_vol_bp = 0.0
sim_basis_reversion = {reversion}
{pair_extra}

[accounts.hk]
currency = "HKD"
balance = {balance}
venues = ["HKEX"]

[risk]
{risk}

[actors.simex]
kind = "simex"

[actors.ingest_hkex]
kind = "ingest"
venue = "HKEX"

[actors.trigger]
kind = "trigger"

[actors.executor]
kind = "executor"

[actors.marginwatch]
kind = "marginwatch"

[actors.desk]      # a second trigger the test stands in for
kind = "trigger"
enabled = false
"""


# Fills 200 ms of venue time after an order arrives keep a pair trade whose leg rests off
# the touch in flight for seconds (30 resubmits); a calm HSI (0.2 bp a quote) lets the
# trigger's own orders at the touch fill within a few resubmits.
SLOW_PAIR = """order_timeout_ms = 3000
deadline_ms = 30000
max_resubmits = 30
slippage_budget_ticks = 40"""

FALLING = _config(
    venue_sim="{ ack_latency_ms = 1.0, fill_latency_ms = 200.0 }",
    hsi_vol_bp=0.2,
    reversion=0.0,  # a forced basis stays until the test puts it back
    # lead leg first: MHI falls ~150 points a second, far out of any resting order's band,
    # so the closing trade below works its HSI leg only
    pair_extra=SLOW_PAIR + '\nsend_mode = "lead"\nlead_leg = "a"',
    balance=100_000.0,
    risk="""warn_utilisation = 0.6
reduce_utilisation = 0.75
halt_utilisation = 1.0
hysteresis = 0.02
margin_call_buffer = 1.0
snapshot_interval_ms = 50""",
)

# Slower fills still (1 s) for the kill switch: its trade is caught with one leg filled.
KILL = _config(
    venue_sim="{ ack_latency_ms = 1.0, fill_latency_ms = 1000.0 }",
    hsi_vol_bp=0.2,
    reversion=0.05,
    pair_extra=SLOW_PAIR,
    balance=1e9,
    risk="snapshot_interval_ms = 100",
)


class Bus(DeskBus):
    """The test's view of the bus: SUB sockets on actors' PUBs, and the `desk` trigger's PUB."""

    def states(self) -> list[RiskState]:
        return self.of(RiskState)

    def trade_events(self) -> list[PairTradeEvent]:
        return self.of(PairTradeEvent)

    def send_signal(self, direction: Side, closing: bool, *, passive_a: float = 0.0, passive_b: float = 0.0,
                    through: float = 20.0) -> str:
        """Publish one desk Signal priced off the latest quotes. Each leg is `through` ticks
        marketable, or, with a `passive_*` offset, that many ticks away on its passive side."""
        def have_quotes() -> bool:
            self.pump()
            return {"HSI", "MHI"} <= set(self.quotes)

        wait_for(have_quotes, 15, "HSI and MHI quotes")
        assert self.desk is not None

        def price(q: Quote, side: Side, passive: float) -> float:  # tick = 1 point for both legs
            if passive > 0:  # a buy under the bid, a sell over the ask
                return (q.bid if side is Side.BUY else q.ask) - side.sign * passive
            return (q.ask if side is Side.BUY else q.bid) + side.sign * through

        px_a = price(self.quotes["HSI"], direction, passive_a)
        px_b = price(self.quotes["MHI"], direction.opposite, passive_b)
        qa, qb = self.quotes["HSI"], self.quotes["MHI"]
        self.desk_n += 1
        sig_id = f"desk-{self.desk_n}"
        now = time.monotonic_ns()
        self.desk.publish(f"sig.{PAIR}", Signal(
            signal_id=sig_id, pair=PAIR, direction=direction, closing=closing,
            legs=(SignalLeg(instrument="HSI", side=direction, qty=1, limit_px=float(px_a)),
                  SignalLeg(instrument="MHI", side=direction.opposite, qty=5, limit_px=float(px_b))),
            spread=0.0, zscore=0.0, expiry_ns=0, tick_recv_ns=max(qa.recv_ns, qb.recv_ns), signal_ns=now))
        return sig_id

    def close(self) -> None:
        self.ctx.destroy(0)


def log_events(run_dir: Path, name: str, *events: str) -> list[dict]:
    """An actor's JSON log lines with these event names, in order."""
    lines = (run_dir / "logs" / f"{name}.jsonl").read_text().splitlines()
    return [d for d in map(json.loads, lines) if d.get("event") in events]


def final_trades(bus: Bus) -> dict[str, PairTradeEvent]:
    """The last transition of every pair trade seen on the execution stream (signal rejections left out)."""
    out: dict[str, PairTradeEvent] = {}
    for ev in bus.trade_events():
        if ev.trade_id:
            out[ev.trade_id] = ev
    return out


def assert_settled_never_broken(bus: Bus, run_dir: Path) -> dict[str, PairTradeEvent]:
    """Every trade the executor opened ended COMPLETED (legs in ratio) or flat; none BROKEN."""
    opened = [e["trade_id"] for e in log_events(run_dir, "executor", "trade_opened")]
    assert opened, "the executor opened no trade"
    broken = [e for e in bus.trade_events() if e.state == "BROKEN"]
    assert not broken, f"BROKEN trades: {broken}"
    last = wait_for(lambda: (f := final_trades(bus)) and all(f.get(t) and f[t].state.terminal for t in opened) and f,
                    30, f"trades {opened} terminal")
    for t in opened:
        ev = last[t]
        a, b = ev.legs
        if ev.state == "COMPLETED":
            assert (abs(a.net_qty), abs(b.net_qty)) == (a.target_qty, b.target_qty), ev
            assert a.target_qty * 5 == b.target_qty, ev
        else:
            assert (a.net_qty, b.net_qty) == (0, 0), ev
    return last


def _run(tmp_path: Path, run_dir: Path, body: str, subs: dict[str, list[str]]) -> Iterator[tuple[Config, Bus]]:
    cfg_path = write_config(tmp_path / "risk.toml", body)
    cfg = load_config(cfg_path)
    xmc("up", str(cfg_path), "--detach", run_dir=run_dir, check=True)
    bus = Bus(cfg, run_dir, subs)
    try:
        bus.bind_desk()
        yield cfg, bus
    finally:
        bus.close()


@pytest.fixture
def falling_run(tmp_path: Path, run_dir: Path) -> Iterator[tuple[Config, Bus]]:
    yield from _run(tmp_path, run_dir, FALLING, {
        "marginwatch": ["risk.state"], "executor": [topics.EXEC_STREAM, "hb."], "trigger": ["hb."],
        "ingest_hkex": ["md.HKEX."]})


@pytest.fixture
def kill_run(tmp_path: Path, run_dir: Path) -> Iterator[tuple[Config, Bus]]:
    yield from _run(tmp_path, run_dir, KILL, {
        "marginwatch": ["risk.state"], "executor": [topics.EXEC_STREAM, "hb."], "ingest_hkex": ["md.HKEX."]})


def _rank_in(reason: str) -> int:
    m = re.match(r"RISK_STATE: state=(\w+) ", reason)
    assert m, reason
    return RiskLevel(m.group(1)).rank


def _distinct(seq: list) -> list:
    return [x for i, x in enumerate(seq) if i == 0 or x != seq[i - 1]]


@pytest.mark.slow
def test_falling_market_escalates_warn_reduce_only_halted_and_trigger_and_executor_obey(
        falling_run: tuple[Config, Bus], run_dir: Path) -> None:
    cfg, bus = falling_run
    wait_for(lambda: any(s.state is RiskLevel.NORMAL for s in bus.states()), 15, "risk.state NORMAL")

    # MHI 40 bp under HSI (~100 points): the trigger sells the spread once (max_inventory 1)
    def completed() -> PairTradeEvent | None:
        return next((e for e in bus.trade_events() if e.state == "COMPLETED"), None)

    deadline = time.monotonic() + 40
    while (trade := completed()) is None:
        assert time.monotonic() < deadline, f"no trade COMPLETED; events: {bus.trade_events()}"
        drill(cfg, run_dir, "basis", pair=PAIR, bp=-40)  # again if a simulated jump reset it
        try:
            trade = wait_for(completed, 5, "the trigger's pair trade COMPLETED")
        except AssertionError:
            continue
    assert trade.direction is Side.SELL
    assert [(l.instrument, l.net_qty) for l in trade.legs] == [("HSI", -1), ("MHI", 5)]
    drill(cfg, run_dir, "basis", pair=PAIR, bp=0)  # MHI back to par: the position gains ~5k
    wait_for(lambda: 0.3 < bus.states()[-1].utilisation < 0.49, 10, "utilisation settled with the position")
    assert bus.states()[-1].state is RiskLevel.NORMAL, bus.states()[-1]

    # MHI falls 1.5 bp a quote. At each level, a desk signal the level forbids is sent; at WARN
    # also a closing one (allowed) whose lead leg rests far off the touch, in flight at the next switch
    drill(cfg, run_dir, "drift", instrument="MHI", bp=-1.5)
    probes: dict[RiskLevel, str] = {}
    inflight: list[str] = []

    def escalate() -> bool:
        cur = bus.states()[-1].state
        if cur is not RiskLevel.NORMAL and cur not in probes and bus.level("executor") >= cur.rank:
            probes[cur] = bus.send_signal(Side.SELL, closing=cur is RiskLevel.HALTED)
            if cur is RiskLevel.WARN:
                inflight.append(bus.send_signal(Side.BUY, closing=True, passive_a=60, passive_b=60))
        return cur is RiskLevel.HALTED and RiskLevel.HALTED in probes

    wait_for(escalate, 60, "risk.state escalating to HALTED")
    drill(cfg, run_dir, "drift", instrument="MHI", bp=0)

    states = bus.states()
    assert _distinct([s.state for s in states]) == LEVELS, [(s.state.value, round(s.utilisation, 3)) for s in states]
    for s in states:
        assert not s.kill and s.state is s.computed
        if s.state is not RiskLevel.NORMAL:
            assert s.reason.startswith(f"RISK_UTILISATION_{s.state.value}: utilisation="), s.reason
    first = {lv: next(s for s in states if s.state is lv) for lv in LEVELS[1:]}
    assert first[RiskLevel.WARN].utilisation >= 0.6
    assert first[RiskLevel.REDUCE_ONLY].utilisation >= 0.75
    assert first[RiskLevel.HALTED].utilisation >= 1.0

    # each probe was refused for the risk state, by the level it was sent in (or a stricter one)
    def refusals() -> dict[str, PairTradeEvent] | None:
        rej = {e.signal_id: e for e in bus.trade_events() if e.state == "REJECTED"}
        return rej if all(sid in rej for sid in probes.values()) else None

    rej = wait_for(refusals, 15, "desk signals refused")
    for lv, sid in probes.items():
        assert rej[sid].reason.startswith("RISK_STATE: "), rej[sid].reason
        assert _rank_in(rej[sid].reason) >= lv.rank, (lv, rej[sid].reason)
    assert rej[probes[RiskLevel.HALTED]].reason == "RISK_STATE: state=HALTED closing=True"

    # the closing trade opened under WARN was still working at REDUCE_ONLY: cancelled, flat
    assert inflight, "the state skipped WARN before the executor reported it"
    closing = [e for e in bus.trade_events() if e.signal_id == inflight[0]]
    assert closing and closing[0].trade_id, closing
    closing_id = closing[0].trade_id
    last = wait_for(lambda: (t := final_trades(bus).get(closing_id)) and t.state.terminal and t, 30,
                    "the closing trade terminal")
    assert last.state == "CANCELLED" and [l.net_qty for l in last.legs] == [0, 0], last
    assert any(e.reason.startswith("RISK_REDUCE_ONLY: ") for e in closing), [(e.transition, e.reason) for e in closing]

    # both actors applied every level, in order, each once
    wait_for(lambda: bus.level("trigger") == RiskLevel.HALTED.rank, 10, "trigger heartbeat at HALTED")
    for name in ("trigger", "executor"):
        got = [e["state"] for e in log_events(run_dir, name, "risk_level")]
        assert got == ["WARN", "REDUCE_ONLY", "HALTED"], (name, got)

    # the trigger kept seeing the open spread, and refused it for the risk state from WARN on
    trig = [h for h in bus.of(Heartbeat) if h.actor == "trigger"][-1].detail
    assert trig["signals"] >= 1 and trig.get("suppressed.RISK_STATE", 0) > 0
    tr = log_events(run_dir, "trigger", "risk_level", "signal")
    first_change = next(i for i, e in enumerate(tr) if e["event"] == "risk_level")
    assert [e for e in tr[first_change:] if e["event"] == "signal"] == []

    # once the state left NORMAL the executor opened the closing trade only, and nothing after HALTED
    ex = log_events(run_dir, "executor", "risk_level", "trade_opened")
    first_change = next(i for i, e in enumerate(ex) if e["event"] == "risk_level")
    later = [e for e in ex[first_change:] if e["event"] == "trade_opened"]
    assert [(e["trade_id"], e["closing"]) for e in later] == [(closing_id, True)], later
    halted_at = next(i for i, e in enumerate(ex) if e["event"] == "risk_level" and e["state"] == "HALTED")
    assert [e for e in ex[halted_at:] if e["event"] == "trade_opened"] == []
    assert_settled_never_broken(bus, run_dir)


def test_kill_switch_rolls_back_the_trade_in_flight_and_opens_no_new_one(
        kill_run: tuple[Config, Bus], run_dir: Path) -> None:
    cfg, bus = kill_run
    wait_for(lambda: bus.level("executor") == RiskLevel.NORMAL.rank, 15, "executor heartbeat")

    # leg A (HSI) fills after 1 s; leg B (MHI) rests 40 ticks off the touch and keeps
    # expiring and being resubmitted: the trade stays in flight with a filled leg
    sid = bus.send_signal(Side.SELL, closing=False, passive_b=40)

    def leg_a_filled() -> PairTradeEvent | None:
        return next((e for e in bus.trade_events() if e.signal_id == sid and e.legs and e.legs[0].filled_qty == 1), None)

    inflight = wait_for(leg_a_filled, 20, "leg A of the desk trade filled")
    trade_id = inflight.trade_id
    assert not inflight.state.terminal, inflight

    xmc("halt", "--reason", "drill", run_dir=run_dir, check=True)
    wait_for(lambda: bus.level("executor") == RiskLevel.HALTED.rank, 15, "executor at HALTED")

    # new signals keep coming and are refused; the trade in flight unwinds its filled leg
    probes = [bus.send_signal(Side.SELL, closing=False), bus.send_signal(Side.BUY, closing=True)]

    def refused() -> list[PairTradeEvent] | None:
        rej = {e.signal_id: e for e in bus.trade_events() if e.state == "REJECTED"}
        return [rej[p] for p in probes] if all(p in rej for p in probes) else None

    got = wait_for(refused, 15, "desk signals refused under the kill switch")
    assert [e.reason for e in got] == ["RISK_STATE: state=HALTED closing=False", "RISK_STATE: state=HALTED closing=True"]

    last = wait_for(lambda: (t := final_trades(bus).get(trade_id)) and t.state.terminal and t, 30,
                    "the trade in flight terminal")
    assert last.state == "ROLLED_BACK", last
    transitions = [e.transition for e in bus.trade_events() if e.trade_id == trade_id]
    assert "halt_rollback_started" in transitions, transitions
    assert bus.states()[-1].state is RiskLevel.HALTED and bus.states()[-1].kill

    # nothing opened after the kill switch reached the executor
    ex = log_events(run_dir, "executor", "kill_switch", "trade_opened")
    k = next(i for i, e in enumerate(ex) if e["event"] == "kill_switch" and e["halted"])
    assert [e for e in ex[k:] if e["event"] == "trade_opened"] == []
    assert [e["trade_id"] for e in ex if e["event"] == "trade_opened"] == [trade_id]
    assert_settled_never_broken(bus, run_dir)

    # after resume, pair trades open again
    xmc("resume", run_dir=run_dir, check=True)
    wait_for(lambda: bus.level("executor") == RiskLevel.NORMAL.rank, 15, "executor back to NORMAL")
    again = bus.send_signal(Side.SELL, closing=False)
    opened = wait_for(lambda: next((e for e in bus.trade_events() if e.signal_id == again and e.trade_id), None), 15,
                      "a pair trade opened after resume")
    assert opened.state != "REJECTED"
