"""The marginwatch actor: one view of capital across markets and currencies.

It consumes quotes and FX from every ingest and fills from the executor,
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

import sqlite3
import time

import msgspec

from actors.journal import audit_path
from actors.runtime import Actor, Timer
from bus.auditstore import AuditReader
from bus.lockstep import StepBarrier
from bus import topics
from bus.messages import Envelope, ExecType, FxRate, KillSwitch, OrderEvent, Quote, RiskState, Step, StepDone
from riskguard.watch import MarginWatch


FILL_COALESCE_S = 0.02
MD_PULL_S = 0.1
FILL_PULL_S = 1.0
JOURNAL_SWEEP_S = 5.0
FILLS_WAIT_S = 3.0  # lockstep: how long a step waits for the fills simex made before it
EXEC_FILL = "exec.fill."


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
        # positions: the executor's fill stream as it happens, its replay buffer as a safety net,
        # and the journal for what came before this process started
        self.subscribe(executors, [EXEC_FILL], self._on_report, name="exec")
        self.pull(executors, EXEC_FILL, FILL_PULL_S, self._on_report, name="fills")
        self.fills = 0
        self.last_state: RiskState | None = None
        self.util = 0.0
        self._dirty = False
        self._pending: Timer | None = None
        self._journal_id = 0  # the last journal row read for fills
        self.journal_recovered = 0
        self.journal_bad_rows = 0
        fills = self._journal_fills()
        if fills is not None:
            self.log.info("positions_bootstrapped", fills=fills, positions=len(self.watch.positions()))
        self.every(self.cfg.risk.snapshot_interval_ms / 1000.0, self._tick)
        self.every(JOURNAL_SWEEP_S, self._sweep_journal)

    def _journal_fills(self) -> int | None:
        """Apply the journal's fills after the last row read (the ledger drops exec ids it has);
        how many it applied, None if the journal could not be read."""
        path = audit_path(self.run_dir)
        if not path.exists():
            return 0
        try:
            reader = AuditReader(path)
            rows = reader.db.execute("SELECT id, body FROM events WHERE topic LIKE 'exec.fill.%' AND id > ? ORDER BY id",
                                     (self._journal_id,)).fetchall()
            reader.close()
        except sqlite3.Error as exc:
            self.log.error("journal_fills_failed", error=repr(exc))
            return None
        applied = 0
        for row_id, body in rows:
            self._journal_id = row_id
            try:
                ev = msgspec.json.decode(body, type=OrderEvent)
            except msgspec.DecodeError as exc:  # one bad row is skipped, never read again
                self.journal_bad_rows += 1
                self.log.error("journal_fill_bad", row_id=row_id, error=repr(exc))
                continue
            if self.watch.on_fill(ev):
                applied += 1
                self.fills += 1
                self.filled_qty += ev.last_qty
        return applied

    def _sweep_journal(self) -> None:
        """The safety net behind the fill stream and the executor's replay buffer: a fill the
        executor published and died before anyone here fetched it is still in the journal."""
        applied = self._journal_fills()
        if applied:
            self.journal_recovered += applied
            self.log.warning("fills_recovered_from_journal", fills=applied)
            self._dirty = True

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

    def _on_report(self, topic: str, env: Envelope) -> None:
        ev = env.body
        if isinstance(ev, OrderEvent) and ev.exec_type is ExecType.FILL and ev.last_qty > 0 and self.watch.on_fill(ev):
            self.fills += 1
            self.filled_qty += ev.last_qty
            self._dirty = True

    def on_gap(self, src: str, topic: str, first: int, last: int) -> None:
        if topic.startswith(EXEC_FILL):  # fetch the missed fills from the executor's buffer while it lives
            self.pull_now("fills")

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
        self.util = ev.snapshot.total.utilisation

    def detail(self) -> dict[str, float]:
        s = self.last_state
        d = {"fills": float(self.fills), "journal_recovered": float(self.journal_recovered),
             "journal_bad_rows": float(self.journal_bad_rows),
             "utilisation": round(self.util, 4),
             "risk_level": float(s.state.rank) if s is not None else 0.0}
        for p in self.watch.positions():
            key = f"pos.{p.instrument}"
            d[key] = d.get(key, 0.0) + p.qty
        return d
