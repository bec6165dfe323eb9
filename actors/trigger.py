"""The trigger actor: both legs' books in, `sig.<pair>` Signals out.

Under a burst the runtime drains every socket before `after_drain`, so the
engine evaluates only the newest book per instrument (conflation) and never
acts on a quote a newer one already replaced. The effective risk level is the
stricter of the published `risk.state` and the operator's kill switch.
"""

from __future__ import annotations

import sqlite3
import time

import msgspec

from actors.journal import audit_path
from actors.runtime import Actor
from bus.auditstore import AuditReader
from bus import topics
from bus.messages import (Envelope, FxRate, InstrumentStatus, KillSwitch, PairTradeEvent, Quote, RiskLevel,
                          RiskState, Signal)
from signals.kernels import warm_up
from signals.rules import TriggerEngine

TERMINAL = {"COMPLETED", "CANCELLED", "ROLLED_BACK", "BROKEN"}
REJECTED = "REJECTED"  # the executor refused the signal: no trade, nothing filled


class TriggerActor(Actor):
    kind = "trigger"

    def setup(self) -> None:
        self.engine = TriggerEngine(self.cfg, id_prefix=f"{self.epoch % 10**8:08d}.")
        actors = self.cfg.actors
        self.subscribe([n for n, a in actors.items() if a.kind == "ingest"], [topics.MD], self._on_md, name="md")
        self.subscribe([n for n, a in actors.items() if a.kind == "marginwatch"], [topics.RISK_STATE], self._on_risk, name="risk")
        self.subscribe([n for n, a in actors.items() if a.kind == "executor"], ["exec.trade."], self._on_trade, name="exec")
        self.published = RiskLevel.NORMAL
        self.open_signals: dict[str, Signal] = {}
        self.dirty = False
        self.newest_eval_age_us = 0.0
        self._newest_recv = 0
        self._bootstrap_positions()

    def _bootstrap_positions(self) -> None:
        """After a restart, each pair's position is what its settled trades left (from the journal)."""
        path = audit_path(self.run_dir)
        if not path.exists():
            return
        try:
            reader = AuditReader(path)
            last: dict[str, dict] = {}
            for row in reader.rows("kind = 'PairTradeEvent' AND trade_id IS NOT NULL", order="epoch, seq"):
                last[row["trade_id"]] = row["body"]
            reader.close()
        except sqlite3.Error as exc:
            self.log.error("positions_bootstrap_failed", error=repr(exc))
            return
        units: dict[str, int] = {}
        for ev in last.values():
            pc = self.cfg.pairs.get(ev["pair"])
            if pc is None or not ev["legs"]:
                continue
            net_a = ev["legs"][0]["net_qty"]
            units[ev["pair"]] = units.get(ev["pair"], 0) + int(net_a / pc.ratio_a)
        for pair, n in units.items():
            self.engine.set_position(pair, n)
        if units:
            self.log.info("positions_bootstrapped", positions=units)

    def warm(self) -> None:
        warm_up()

    def _on_md(self, topic: str, env: Envelope) -> None:
        b = env.body
        if isinstance(b, Quote):
            self.dirty |= self.engine.on_quote(b)
            if b.recv_ns > self._newest_recv:
                self._newest_recv = b.recv_ns
        elif isinstance(b, FxRate):
            self.dirty |= self.engine.on_fx(b)
        elif isinstance(b, InstrumentStatus):
            self.dirty |= self.engine.on_status(b)

    def _on_risk(self, topic: str, env: Envelope) -> None:
        if isinstance(env.body, RiskState):
            self.published = env.body.state
            self._apply_risk()

    def on_kill(self, kill: KillSwitch) -> None:
        self._apply_risk()

    def _apply_risk(self) -> None:
        level = RiskLevel.HALTED if self.kill.halted else self.published
        if level is not self.engine.risk:
            self.log.warning("risk_level", state=level.value, published=self.published.value, kill=self.kill.halted)
            self.engine.set_risk(level)

    def _on_trade(self, topic: str, env: Envelope) -> None:
        ev = env.body
        if not isinstance(ev, PairTradeEvent) or (ev.state not in TERMINAL and ev.state != REJECTED):
            return
        sig = self.open_signals.pop(ev.signal_id, None)
        pc = self.cfg.pairs.get(ev.pair)
        if sig is None or pc is None or sig.pair != ev.pair:
            return  # not one of this trigger's open signals
        if ev.state in (REJECTED, "CANCELLED", "ROLLED_BACK") or len(ev.legs) != 2:
            units = 0
        else:
            a, b = ev.legs
            units = min(abs(a.net_qty) // pc.ratio_a, abs(b.net_qty) // pc.ratio_b)
        self.engine.on_trade_done(ev.pair, sig.direction, sig.closing, int(units), ev.signal_id)

    def after_drain(self) -> None:
        if not self.dirty:
            return
        self.dirty = False
        now = time.monotonic_ns()
        signals = self.engine.evaluate(now, utc_ns=time.time_ns())
        self.newest_eval_age_us = (now - self._newest_recv) / 1e3 if self._newest_recv else 0.0
        for sig in signals:
            sig = msgspec.structs.replace(sig, signal_ns=time.monotonic_ns())
            self.publish(topics.sig(sig.pair), sig)
            self.open_signals[sig.signal_id] = sig
            self.log.info("signal", signal_id=sig.signal_id, pair=sig.pair, direction=sig.direction.value,
                          closing=sig.closing, spread=round(sig.spread, 6), z=round(sig.zscore, 3),
                          tick_to_signal_us=round((sig.signal_ns - sig.tick_recv_ns) / 1e3, 1))

    def detail(self) -> dict[str, float]:
        d = {k: float(v) for k, v in self.engine.stats().items() if not k.startswith("suppressed.") or v}
        d["eval_age_us"] = round(self.newest_eval_age_us, 1)
        d["risk_level"] = float(self.engine.risk.rank)
        for pair in self.engine.pairs:
            v = self.engine.view(pair)
            d[f"{pair}.z"] = round(v.z, 3) if v.z == v.z else 0.0
            d[f"{pair}.position"] = float(v.position)
        return d
