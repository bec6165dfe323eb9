"""The trigger path with real processes: simex -> ingest -> trigger (+ marginwatch).

A forced basis (the simex `basis` drill) opens the HSI/MHI spread far past the
trigger and a `Signal` in the direction that trades it back comes out on
`sig.hsi_mhi`; under the operator's kill switch the trigger keeps evaluating
but suppresses every signal with RISK_STATE, and signals come again after
`xmc resume`. The simulated basis has no noise (`sim_basis_vol_bp = 0`), so
the spread only opens when the test forces it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import pytest

from bus.messages import Envelope, Heartbeat, RiskLevel, RiskState, Side, Signal
from configs.load import load_config
from configs.schema import Config
from helpers import BusTap, actor, drill, wait_for, write_config, xmc

T = TypeVar("T")
PAIR = "hsi_mhi"
ENTRY_PTS = 40.0  # spread mode: HSI - MHI in index points
FORCED_BP = 60.0  # MHI 60 bp off HSI: ~150 points, far past the entry

CONFIG = f"""
[run]
seed = 11
base_currency = "HKD"
heartbeat_s = 0.2
heartbeat_timeout_s = 10.0

[venues.HKEX]
kind = "sim"

[instruments.HSI]
hours = []
sim = {{ start = 25000.0, vol_bp = 1.0, spread_ticks = 1, size = 15, interval_ms = 25 }}

[instruments.MHI]
hours = []
sim = {{ start = 25000.0, vol_bp = 1.0, spread_ticks = 1, size = 40, interval_ms = 25 }}

[pairs.{PAIR}]
leg_a = "HSI"
leg_b = "MHI"
ratio_a = 1
ratio_b = 5
currency = "HKD"
unit = "pt"
mode = "spread"
entry = {ENTRY_PTS}
exit = 0.0
cooldown_ms = 50
max_inventory = 1000       # no executor reports trades done: signals stay pending
max_quote_age_ms = 5000    # a busy 2-core host must not turn this into QUOTE_OLD
expiry_ms = 5000
sim_basis_bp = 0.0
sim_basis_vol_bp = 0.0
sim_basis_reversion = 0.02

[accounts.hk]
currency = "HKD"
balance = 1000000.0
venues = ["HKEX"]

[actors.simex]
kind = "simex"

[actors.ingest_hkex]
kind = "ingest"
venue = "HKEX"

[actors.trigger]
kind = "trigger"

[actors.marginwatch]
kind = "marginwatch"
"""


class Tap(BusTap):
    """Every decoded (topic, envelope) seen, in arrival order per actor."""

    def __init__(self, cfg: Config, run_dir: Path, subs: dict[str, list[str]]) -> None:
        super().__init__(cfg, run_dir, subs)
        self.seen: list[tuple[str, Envelope]] = []

    def pump(self) -> list[tuple[str, Envelope]]:
        """Read every frame already queued (never blocks); returns the new ones."""
        new = self.read()
        self.seen.extend(new)
        return new

    def signals(self) -> list[Signal]:
        self.pump()
        return [e.body for _, e in self.seen if isinstance(e.body, Signal)]

    def last_heartbeat(self, name: str) -> Heartbeat | None:
        self.pump()
        hbs = [e.body for _, e in self.seen if isinstance(e.body, Heartbeat) and e.body.actor == name]
        return hbs[-1] if hbs else None


@pytest.fixture
def trigger_run(tmp_path: Path, run_dir: Path) -> Iterator[tuple[Config, Path, Tap]]:
    cfg_path = write_config(tmp_path / "trigger.toml", CONFIG)
    cfg = load_config(cfg_path)
    xmc("up", str(cfg_path), "--detach", run_dir=run_dir, check=True)
    tap = Tap(cfg, run_dir, {"trigger": ["sig.", "hb.trigger"], "marginwatch": ["risk.state"]})
    try:
        yield cfg, run_dir, tap
    finally:
        tap.close()


def force_basis(cfg: Config, run_dir: Path, bp: float) -> None:
    drill(cfg, run_dir, "basis", pair=PAIR, bp=bp)


def force_until(cfg: Config, run_dir: Path, bp: float, cond: Callable[[], T], timeout: float, what: str) -> T:
    """Force the basis, then wait for `cond`; force it again every 2 s (a simulated basis
    jump may reset it to its mean at any step) until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        force_basis(cfg, run_dir, bp)
        try:
            return wait_for(cond, min(2.0, max(0.1, deadline - time.monotonic())), what)
        except AssertionError:
            if time.monotonic() >= deadline:
                raise


def log_events(run_dir: Path, name: str, event: str) -> list[dict]:
    """An actor's JSON log lines with this event name, in order."""
    lines = (run_dir / "logs" / f"{name}.jsonl").read_text().splitlines()
    return [d for d in map(json.loads, lines) if d.get("event") == event]


def detail(tap: Tap) -> dict[str, float]:
    hb = tap.last_heartbeat("trigger")
    assert hb is not None, "no heartbeat from the trigger yet"
    return hb.detail


def _check_leg_shape(sig: Signal, direction: Side) -> None:
    a, b = sig.legs
    assert (a.instrument, a.side, a.qty) == ("HSI", direction, 1)
    assert (b.instrument, b.side, b.qty) == ("MHI", direction.opposite, 5)
    assert sig.pair == PAIR and sig.direction is direction and not sig.closing
    assert 0 < sig.tick_recv_ns <= sig.signal_ns < sig.expiry_ns


Run = tuple[Config, Path, Tap]


def test_quiet_market_gives_no_signal_and_forced_basis_gives_signals_that_trade_it_back(trigger_run: Run) -> None:
    cfg, run_dir, tap = trigger_run
    # the trigger prices the pair many times with the spread shut: nothing fires
    base = wait_for(lambda: (d := detail(tap)).get("evaluations", 0) >= 50 and d, 30, "trigger evaluating quotes")
    assert base["signals"] == 0 and tap.signals() == []

    # MHI 60 bp over HSI: the spread is ~-150 points; buy it (buy HSI, sell MHI)
    buys = force_until(cfg, run_dir, FORCED_BP, lambda: [s for s in tap.signals() if s.direction is Side.BUY],
                       20, "a BUY signal after forcing the basis up")
    sig = buys[0]
    _check_leg_shape(sig, Side.BUY)
    # limits at the touch it priced: HSI's ask and MHI's bid, and the spread is their difference
    assert sig.spread == pytest.approx(sig.legs[0].limit_px - sig.legs[1].limit_px)
    assert sig.spread <= -ENTRY_PTS
    assert all(s.direction is Side.BUY for s in tap.signals()), "a SELL fired while only the BUY side was open"

    # MHI 60 bp under HSI: sell the spread
    n_before = len(tap.signals())
    sells = force_until(cfg, run_dir, -FORCED_BP,
                        lambda: [s for s in tap.signals()[n_before:] if s.direction is Side.SELL],
                        20, "a SELL signal after forcing the basis down")
    sig = sells[0]
    _check_leg_shape(sig, Side.SELL)
    assert sig.spread == pytest.approx(sig.legs[0].limit_px - sig.legs[1].limit_px)  # HSI bid - MHI ask
    assert sig.spread >= ENTRY_PTS
    ids = [s.signal_id for s in tap.signals()]
    assert len(ids) == len(set(ids)), "signal ids repeat"
    wait_for(lambda: actor(run_dir, "trigger")["detail"]["signals"] >= len(ids), 10, "`xmc status` counting the signals")


def test_kill_switch_suppresses_signals_with_risk_state_until_resume(trigger_run: Run) -> None:
    cfg, run_dir, tap = trigger_run
    wait_for(lambda: detail(tap).get("evaluations", 0) >= 20, 30, "trigger evaluating quotes")
    xmc("halt", "--reason", "drill", run_dir=run_dir, check=True)
    wait_for(lambda: detail(tap)["risk_level"] == RiskLevel.HALTED.rank, 15, "trigger applying HALTED")

    def marginwatch_halted() -> bool:
        tap.pump()
        states = [e.body for _, e in tap.seen if isinstance(e.body, RiskState)]
        return bool(states) and states[-1].state is RiskLevel.HALTED and states[-1].kill

    wait_for(marginwatch_halted, 15, "risk.state HALTED (kill) from marginwatch")
    halted = detail(tap)
    evals0 = halted["evaluations"]
    supp0 = halted.get("suppressed.RISK_STATE", 0.0)

    # the spread is forced wide open; the window closes once the trigger has priced it
    # at least 40 more times and refused at least 10 of them for the risk state
    def refused_enough() -> dict[str, float] | None:
        d = detail(tap)
        return d if d["evaluations"] >= evals0 + 40 and d.get("suppressed.RISK_STATE", 0) >= supp0 + 10 else None

    during = force_until(cfg, run_dir, FORCED_BP, refused_enough, 30, "RISK_STATE suppressions while halted")
    assert during["signals"] == 0
    assert tap.signals() == [], "a signal left the trigger under the kill switch"
    assert "HALTED" in [e["state"] for e in log_events(run_dir, "trigger", "risk_level")]

    xmc("resume", run_dir=run_dir, check=True)
    wait_for(lambda: detail(tap)["risk_level"] == RiskLevel.NORMAL.rank, 15, "trigger back to NORMAL")
    sigs = force_until(cfg, run_dir, FORCED_BP, tap.signals, 20, "a signal after resume")
    _check_leg_shape(sigs[0], Side.BUY)
    after = detail(tap)
    assert after.get("suppressed.RISK_STATE", 0) >= supp0 + 10
