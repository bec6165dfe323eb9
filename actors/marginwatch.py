"""The marginwatch actor: one view of capital across markets and currencies.

It consumes quotes and FX from every ingest and fills from the executor's
durable execution stream (every fill once, in order, from seq 1 after a restart),
publishes a `MarginSnapshot` on `risk.margin` on a timer and after every fill,
and the `RiskState` on `risk.state` at once when it changes (and on the timer,
so a restarted subscriber learns it). Alerts go to `risk.alert` and the log.

Lockstep (``run.lockstep``): market data is taken as it comes, and risk is
evaluated once per market step, on venue time, when every ingest's `Step`
marker has arrived and the fills seen add up to the quantity simex had filled
when it released the step; then `StepDone` goes out on ``risk.state.step``,
behind the RiskState it covers. The timer only repeats the last state.
"""

from __future__ import annotations

import json
import time

import msgspec

from actors.runtime import Actor, Timer
from bus.lockstep import StepBarrier
from bus import topics
from bus.messages import (CmdAck, Control, Envelope, ExecType, FxRate, KillSwitch, MarginSnapshot, OrderEvent, Quote,
                          RiskState, Step, StepDone, StreamEvent)
from riskguard.capital import capital_view
from riskguard.watch import MarginWatch


FILL_COALESCE_S = 0.02
MD_PULL_S = 0.1
FILLS_WAIT_S = 3.0  # lockstep: how long a step waits for the fills simex made before it


class MarginWatchActor(Actor):
    kind = "marginwatch"

    def setup(self) -> None:
        self.watch = MarginWatch(self.cfg, actor=self.name, calendar_charge=self.cfg.risk.calendar_charges,
                                 cross_account_credits=self.cfg.risk.cross_account_credits)
        ingest = [n for n, a in self.cfg.actors.items() if a.kind == "ingest"]
        executors = [n for n, a in self.cfg.actors.items() if a.kind == "executor"]
        self.lockstep = self.cfg.run.lockstep.enabled
        self.steps = StepBarrier(n for n in ingest if self.cfg.actors[n].enabled)
        self._fills_wait: dict[int, float] = {}  # lockstep: step -> when it started waiting for fills
        self.filled_qty = 0  # quantity of every fill taken into the positions
        if self.lockstep:
            self.subscribe(ingest, [topics.MD], self._on_md, name="md")
        else:
            # marks and FX are needed per evaluation, not per tick: pull them in batches
            self.pull(ingest, topics.MD, MD_PULL_S, self._on_md, name="md")
        self.fills = 0
        # positions: every fill of the executor's stream, from its first (the stream is the log)
        for ex in executors:
            self.follow_stream(ex, self._on_stream, since=0, name=f"stream:{ex}")
        self.last_state: RiskState | None = None
        self.last_snapshot: MarginSnapshot | None = None
        self.util = 0.0
        self._dirty = False
        self._pending: Timer | None = None
        self.every(self.cfg.risk.snapshot_interval_ms / 1000.0, self._tick)

    def warm(self) -> None:
        self.watch.warm_up()

    def _on_md(self, topic: str, env: Envelope) -> None:
        body = env.body
        if self.lockstep and isinstance(body, (Quote, FxRate)):  # ages run on venue time
            body = msgspec.structs.replace(body, recv_ns=body.exch_ts_ns)
        if isinstance(body, Quote):
            self.watch.on_quote(body)
        elif isinstance(body, FxRate):
            self.watch.on_fx(body)
        elif isinstance(body, Step) and self.lockstep:
            self.steps.on_marker(env.src, body)

    def _on_stream(self, ev: StreamEvent, ts_ns: int) -> None:
        fill = ev.body
        if (isinstance(fill, OrderEvent) and fill.exec_type is ExecType.FILL and fill.last_qty > 0
                and self.watch.on_fill(fill, fill.account or None)):
            self.fills += 1
            self.filled_qty += fill.last_qty
            self._dirty = True

    def after_drain(self) -> None:
        if self.lockstep:
            self._lockstep()
            return
        # a pair trade's fills come in a burst: one evaluation shortly after its first fill
        if self._dirty and self._pending is None:
            self._pending = self.after(FILL_COALESCE_S, self._on_fills)

    def _on_fills(self) -> None:
        self._pending = None
        if self._dirty:
            self._dirty = False
            self._evaluate(periodic=False)

    def on_kill(self, kill: KillSwitch) -> None:
        self.watch.set_kill(kill.halted, kill.reason, time.monotonic_ns())
        self._evaluate(periodic=False)

    def _lockstep(self) -> None:
        """Evaluate every step whose markers are all in and whose fills have all arrived."""
        while (step := self.steps.complete()) is not None:
            if self.filled_qty < step.fill_qty:  # the executor has not published every fill made before it yet
                now = time.monotonic()
                since = self._fills_wait.setdefault(step.step, now)
                if now - since < FILLS_WAIT_S:
                    return
                # liveness first: a fill that was never published (a crash between logging and
                # publishing it) must not stop the market; the run is no longer reproducible
                self.log.error("lockstep_fills_missing", step=step.step, filled_qty=self.filled_qty,
                               venue_filled_qty=step.fill_qty)
            self._fills_wait.pop(step.step, None)
            self._dirty = False
            self._evaluate(periodic=False, now_ns=step.ts_ns)
            self.steps.finish(step.step)
            self.publish(topics.RISK_STEP, StepDone(step=step.step))

    def _tick(self) -> None:
        if self.lockstep:  # risk moves with the market steps only; repeat what subscribers may have missed
            self._lockstep()  # a step held for fills gives up waiting here
            if self.last_state is not None:
                self.publish(topics.RISK_STATE, self.last_state)
            if self.steps.done >= 0:
                self.publish(topics.RISK_STEP, StepDone(step=self.steps.done))
            return
        self._evaluate(periodic=True)

    def _evaluate(self, periodic: bool, now_ns: int | None = None) -> None:
        ev = self.watch.evaluate(time.monotonic_ns() if now_ns is None else now_ns)
        if ev.changed or periodic:
            self.publish(topics.RISK_STATE, ev.state)
        self.publish(topics.RISK_MARGIN, ev.snapshot)
        for alert in ev.alerts:
            self.publish(topics.RISK_ALERT, alert)
            log = self.log.error if alert.severity.value == "CRITICAL" else self.log.warning
            log("risk_alert", code=alert.code, text=alert.text)
        if ev.changed:
            self.log.warning("risk_state", state=ev.state.state.value, computed=ev.state.computed.value,
                             kill=ev.state.kill, reason=ev.state.reason, utilisation=round(ev.state.utilisation, 4))
        self.last_state = ev.state
        self.last_snapshot = ev.snapshot
        self.util = ev.snapshot.total.utilisation

    def on_control(self, ctl: Control) -> CmdAck:
        """`capital`: the capital view per account and currency (`xmc capital`)."""
        if ctl.cmd == "capital":
            if self.last_snapshot is None:
                return CmdAck(ok=False, reason="CAPITAL_NOT_READY: no margin evaluation yet")
            doc = capital_view(self.last_snapshot, self.cfg.risk, self.watch.fx.try_rate, self.last_state)
            return CmdAck(ok=True, data={"json": json.dumps(doc)})
        return super().on_control(ctl)

    def detail(self) -> dict[str, float]:
        s = self.last_state
        d = {"fills": float(self.fills), "utilisation": round(self.util, 4),
             "risk_level": float(s.state.rank) if s is not None else 0.0}
        for p in self.watch.positions():
            key = f"pos.{p.instrument}"
            d[key] = d.get(key, 0.0) + p.qty
        return d
