"""Pre-trade margin what-if with real processes: the demo (simex, ingest, executor, marginwatch,
journal) with balances set so that one au_gc entry fits and a second one, same direction, would
take the cn account past `risk.limits.whatif_utilisation`.

Signals come from the test, standing in for a (disabled) second trigger actor `desk` whose PUB
endpoint it binds (as tests/integration/test_risk_states.py does); the demo's own trigger is
disabled so that nothing else trades.

Sizing (demo margins: au 10 % of notional on cn (CNY), GC USD 16,500 a lot on hk (HKD), spread
credit 0.6 on both legs, broker add-on 1.3): one au_gc unit is 3 au vs 1 GC; at au ~556 CNY/g,
cn's initial margin is 3 x 556 x 1000 x 10 % x (1 - 0.6) x 1.3 = 86,736 CNY a unit (the FX rate
cancels: CNY -> USD -> CNY). With cn at 250,000 CNY: one unit 0.347, two 0.694; the level is set
to 0.5. hk holds 4,000,000 HKD, so the desk's total utilisation (what drives the risk state)
stays near 4 %: NORMAL throughout, so the refusal can only be the what-if's.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Iterator

import pytest

from bus import topics
from bus.messages import PairTradeEvent, RiskLevel, RiskState, Side, Signal, SignalLeg
from configs.load import load_config
from configs.schema import Config
from helpers import DeskBus, demo_with, log_records, wait_for, xmc

pytestmark = pytest.mark.slow

PAIR = "au_gc"
CN_BALANCE = 250_000.0
HK_BALANCE = 4_000_000.0
LIMIT = 0.5
CN_PER_UNIT = 3 * 1000 * 0.10 * 0.4 * 1.3  # CNY of cn's initial margin per unit, per CNY/g of au's price
REASON = re.compile(r"^MARGIN_WHATIF: account=cn utilisation_after=(\d+\.\d{4}) limit=0\.5$")
ROW_FIELDS = {"account", "currency", "equity", "initial", "maintenance", "utilisation", "headroom", "headroom_base",
              "margin_call_line", "above_call_line", "near_threshold"}

CONFIG = demo_with(reject=0.0, partial=0.0, drop=0.0, seed=11) + f"""
[accounts.cn]
balance = {CN_BALANCE}

[accounts.hk]
balance = {HK_BALANCE}

[risk]
snapshot_interval_ms = 100

[risk.limits]
whatif_utilisation = {LIMIT}

[actors.trigger]
enabled = false

[actors.desk]      # a second trigger the test stands in for
kind = "trigger"
enabled = false
"""


class Bus(DeskBus):
    """SUB sockets on the actors' PUBs, and the `desk` trigger's PUB."""

    def send(self, direction: Side, closing: bool, through: int = 20) -> str:
        """One desk au_gc Signal for 1 unit (3 au vs 1 GC), each leg `through` ticks marketable."""
        def have_quotes() -> bool:
            self.pump()
            return {"au", "GC"} <= set(self.quotes)

        wait_for(have_quotes, 20, "au and GC quotes")
        assert self.desk is not None

        def price(inst: str, side: Side) -> float:
            q, tick = self.quotes[inst], self.cfg.instruments[inst].tick
            px = (q.ask if side is Side.BUY else q.bid) + side.sign * through * tick
            return round(round(px / tick) * tick, 6)

        self.desk_n += 1
        sig_id = f"desk-{self.desk_n}"
        other = direction.opposite
        self.desk.publish(f"sig.{PAIR}", Signal(
            signal_id=sig_id, pair=PAIR, direction=direction, closing=closing,
            legs=(SignalLeg(instrument="au", side=direction, qty=3, limit_px=price("au", direction)),
                  SignalLeg(instrument="GC", side=other, qty=1, limit_px=price("GC", other))),
            spread=0.0, zscore=0.0, expiry_ns=0, tick_recv_ns=time.monotonic_ns(), signal_ns=time.monotonic_ns()))
        return sig_id

    def outcome(self, sig_id: str) -> PairTradeEvent | None:
        """The signal's refusal, or its trade's terminal event (None while neither)."""
        for ev in self.of(PairTradeEvent):
            if ev.signal_id == sig_id and ev.state.terminal:
                return ev
        return None


def capital(run_dir: Path) -> dict:
    proc = xmc("capital", "--json", run_dir=run_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def desk_run(tmp_path: Path, run_dir: Path) -> Iterator[tuple[Config, Bus]]:
    path = tmp_path / "whatif.toml"
    path.write_text(CONFIG)
    cfg = load_config(path)
    assert cfg.risk.limits.whatif_utilisation == LIMIT and cfg.accounts["cn"].balance == CN_BALANCE
    assert not cfg.actors["trigger"].enabled
    xmc("up", str(path), "--detach", run_dir=run_dir, check=True)
    bus = Bus(cfg, run_dir, {
        "marginwatch": [topics.RISK_STATE], "executor": [topics.EXEC_STREAM, "hb."],
        "ingest_shfe": ["md.SHFE."], "ingest_comex": ["md.COMEX."]})
    try:
        bus.bind_desk()
        yield cfg, bus
    finally:
        bus.close()


def test_second_entry_refused_by_the_margin_whatif_while_the_exit_trades(desk_run: tuple[Config, Bus],
                                                                          run_dir: Path) -> None:
    cfg, bus = desk_run
    # marginwatch NORMAL means every FX rate has arrived (the executor's come from the same feed)
    wait_for(lambda: (s := bus.of(RiskState)) and s[-1].state is RiskLevel.NORMAL, 40, "risk.state NORMAL")
    wait_for(lambda: bus.level("executor") == RiskLevel.NORMAL.rank, 20, "executor heartbeat at NORMAL")
    flat = wait_for(lambda: capital(run_dir), 20, "xmc capital answering")
    assert [a["account"] for a in flat["accounts"]] == ["cn", "hk"]
    assert flat["accounts"][0]["equity"] == CN_BALANCE and flat["accounts"][0]["initial"] == 0.0

    # 1. the first entry fits (cn at ~0.347): it trades
    first = bus.send(Side.BUY, closing=False)
    ev1 = wait_for(lambda: bus.outcome(first), 30, "the first entry terminal")
    assert ev1.state == "COMPLETED" and ev1.trade_id, ev1
    assert [(l.instrument, l.net_qty) for l in ev1.legs] == [("au", 3), ("GC", -1)]
    au_px = next(l.avg_price for l in ev1.legs if l.instrument == "au")

    # xmc capital --json with the position on: every field, cn margin as computed by hand
    def margined() -> dict | None:
        doc = capital(run_dir)
        return doc if doc["accounts"][0]["initial"] > 0 and doc["accounts"][1]["initial"] > 0 else None

    doc = wait_for(margined, 20, "marginwatch margining the first entry")
    assert doc["base_currency"] == "USD" and doc["risk_state"] == "NORMAL"
    assert set(doc) >= {"accounts", "total", "margin_call", "suggested_transfer", "risk_state"}
    cn, hk = doc["accounts"]
    for row in (cn, hk, doc["total"]):
        assert set(row) >= ROW_FIELDS, row
        assert row["margin_call_line"] == pytest.approx(row["maintenance"] * cfg.risk.margin_call_buffer, abs=0.02)
    assert (cn["currency"], hk["currency"], doc["total"]["currency"]) == ("CNY", "HKD", "USD")
    assert cn["initial"] == pytest.approx(CN_PER_UNIT * au_px, rel=0.02)  # marked at the touch, not the fill
    assert cn["utilisation"] == pytest.approx(CN_PER_UNIT * au_px / CN_BALANCE, rel=0.03)
    assert cn["utilisation"] < LIMIT
    assert cn["headroom_base"] == pytest.approx(cn["headroom"] / 7.2, rel=0.02)  # USDCNY ~7.2
    assert hk["headroom_base"] == pytest.approx(hk["headroom"] / 7.8, rel=0.02)  # USDHKD ~7.8
    assert doc["margin_call"] is False and doc["suggested_transfer"] == ""

    # 2. the second entry, same direction, would take cn to ~0.694 > 0.5: refused, nothing sent
    opened_before = sum(1 for r in log_records(run_dir, "executor", "trade_opened"))
    second = bus.send(Side.BUY, closing=False)
    ev2 = wait_for(lambda: bus.outcome(second), 30, "the second entry refused")
    assert ev2.state == "REJECTED" and ev2.trade_id == "", ev2
    m = REASON.match(ev2.reason)
    assert m, ev2.reason
    assert float(m.group(1)) == pytest.approx(2 * CN_PER_UNIT * au_px / CN_BALANCE, rel=0.03)
    logged = wait_for(lambda: [r for r in log_records(run_dir, "executor", "signal_rejected")
                               if r.get("signal_id") == second], 10, "signal_rejected in the executor's log")
    assert logged[0]["reason"] == ev2.reason and logged[0]["reason"].startswith("MARGIN_WHATIF: account=")
    assert len(log_records(run_dir, "executor", "trade_opened")) == opened_before
    assert bus.of(RiskState)[-1].state is RiskLevel.NORMAL  # not the risk state: the what-if

    # 3. the exit (closing) still trades, back to flat
    exit_ = bus.send(Side.SELL, closing=True)
    ev3 = wait_for(lambda: bus.outcome(exit_), 30, "the exit terminal")
    assert ev3.state == "COMPLETED" and ev3.trade_id, ev3
    assert [(l.instrument, l.net_qty) for l in ev3.legs] == [("au", -3), ("GC", 1)]
    opened = [(r["signal_id"], r["closing"]) for r in log_records(run_dir, "executor", "trade_opened")]
    assert opened == [(first, False), (exit_, True)]

    # the journal: two trades (the entry and the exit), none for the refused signal
    def journal() -> list[dict] | None:
        proc = xmc("trades", "--json", run_dir=run_dir)
        rows = json.loads(proc.stdout) if proc.returncode == 0 else []
        return rows if len(rows) >= 2 and all(r["terminal"] for r in rows) else None

    rows = wait_for(journal, 30, "both trades in the journal")
    assert sorted((r["signal_id"], r["state"]) for r in rows) == sorted([(first, "COMPLETED"), (exit_, "COMPLETED")])
    assert second not in {r["signal_id"] for r in rows}
    assert {r["trade_id"] for r in rows} == {ev1.trade_id, ev3.trade_id}

    # flat again: marginwatch's view shows no margin, and the table prints
    wait_for(lambda: capital(run_dir)["accounts"][0]["initial"] == 0.0, 20, "cn margin back to 0")
    table = xmc("capital", run_dir=run_dir)
    assert table.returncode == 0, table.stdout + table.stderr
    assert "cn" in table.stdout and "hk" in table.stdout and "CNY" in table.stdout
