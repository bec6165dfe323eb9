"""The trigger actor: both legs' books in, `sig.<pair>` Signals out.

Under a burst the runtime drains the market-data socket before `after_hot`
(before any other socket is served), so the engine evaluates only the newest
book per instrument (conflation) and never acts on a quote a newer one already
replaced. The effective risk level is the stricter of the published
`risk.state` and the operator's kill switch.

Lockstep (``run.lockstep``): the trigger paces the simulated market. It
evaluates step k once every ingest's `Step` k marker has arrived (so every
quote of the step is in) and marginwatch has answered step k (so the risk
state covers the step's prices and every earlier fill); quote ages, cooldowns
and expiries run on venue time. When every trade it started has ended it
publishes `StepDone(k)`, and simex releases step k+1.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import msgspec

from actors.runtime import Actor
from bus.lockstep import StepBarrier
from bus import topics
from bus.frames import FrameTemplate
from bus.messages import (Envelope, FxRate, InstrumentStatus, KillSwitch, PairTradeEvent, Positions, Quote, RiskLevel,
                          RiskState, Side, Signal, Step, StepDone, StreamEvent)
from signals.kernels import warm_up
from signals.rules import SIGNAL_NUMBERS, TriggerEngine

LOST_SIGNAL_S = 10.0  # lockstep: a signal with no answer from the executor this long is given up
SIGNAL_FIELDS = (*SIGNAL_NUMBERS, "signal_ns", "step", "eval_ns")  # what changes between a shape's signals


class TriggerActor(Actor):
    kind = "trigger"

    def setup(self) -> None:
        self.engine = TriggerEngine(self.cfg, id_prefix=f"{self.epoch % 10**8:08d}.")
        # every signal's frame, encoded at start per pair, direction and opening/closing: a signal
        # writes its numbers and id into it (bus.frames) instead of being encoded
        self.frames: dict[tuple[str, Side, bool], FrameTemplate] = {
            (pair, side, closing): self.pub.template(topics.sig(pair), self.engine.signal_shape(pair, side, closing),
                                                     SIGNAL_FIELDS)
            for pair in self.engine.pairs for side in Side for closing in (False, True)}
        actors = self.cfg.actors
        self.subscribe([n for n, a in actors.items() if a.kind == "ingest"], [topics.MD], self._on_md, name="md", hot=True)
        self.subscribe([n for n, a in actors.items() if a.kind == "marginwatch"], [topics.RISK_STATE], self._on_risk, name="risk")
        self.published = RiskLevel.NORMAL
        self.open_signals: dict[str, Signal] = {}
        self.dirty = False
        self.newest_eval_age_us = 0.0
        self._newest_recv = 0
        self.lockstep = self.cfg.run.lockstep.enabled
        self.risk_paced = any(a.kind == "marginwatch" and a.enabled for a in actors.values())
        # the probe is answered once every executor has subscribed to signals (the journal pulls
        # them from the replay buffer: it files every one whenever it comes)
        self.sig_audience_needed = sum(a.kind == "executor" and a.enabled for a in actors.values())
        self.sig_audience = 0
        self.steps = StepBarrier(n for n, a in actors.items() if a.kind == "ingest" and a.enabled)  # done: answered
        self.step_evaluated = -1  # last step evaluated (its trades may still run)
        self.risk_step = -1  # marginwatch's last StepDone
        self._step_recv = 0  # newest real receive time among the step's quotes
        self._signals_sent_mono = 0
        self._eval_start = 0  # monotonic ns when the evaluation now publishing began
        self._sent_mono: list[int] = []  # when each signal of the evaluation now publishing went out
        if self.lockstep:
            self.every(1.0, self._check_lost_signals)
        # trade ends (they release signals) and the executor's position view (inventory), every
        # event once from the start of the stream: the positions after a restart come with it
        for ex in (n for n, a in actors.items() if a.kind == "executor"):
            self.follow_stream(ex, self._on_stream, since=0, name=f"stream:{ex}")

    def warm(self) -> None:
        warm_up()

    def _on_md(self, topic: str, env: Envelope) -> None:
        b = env.body
        if self.lockstep:
            self._on_md_lockstep(env.src, b)
        elif isinstance(b, Quote):
            self.dirty |= self.engine.on_quote(b)
            if b.recv_ns > self._newest_recv:
                self._newest_recv = b.recv_ns
        elif isinstance(b, FxRate):
            self.dirty |= self.engine.on_fx(b)
        elif isinstance(b, InstrumentStatus):
            self.dirty |= self.engine.on_status(b)

    # --- lockstep ---------------------------------------------------------------

    def _on_md_lockstep(self, src: str, b: object) -> None:
        """Quotes go into the book stamped with venue time (their real receive time is kept for
        tick-to-trade); a feed's Step marker says it delivered the whole step."""
        if isinstance(b, (Quote, FxRate)):
            self._step_recv = max(self._step_recv, b.recv_ns)
            b = msgspec.structs.replace(b, recv_ns=b.exch_ts_ns)
            if isinstance(b, Quote):
                self.engine.on_quote(b)
            else:
                self.engine.on_fx(b)
        elif isinstance(b, Step):
            done = self.steps.done
            if self.steps.on_marker(src, b):
                self.log.warning("lockstep_market_restarted", step_done=done)
                self.step_evaluated = self.risk_step = -1
            elif b.step == done:  # simex did not hear our answer: say it again
                self.publish(topics.LOCKSTEP_DONE, StepDone(step=b.step))
        # InstrumentStatus: the wall-clock stale check does not apply to a paced market

    def on_subscribe(self, prefix: str) -> None:
        if prefix.startswith(topics.SIG) or topics.SIG.startswith(prefix):
            self.sig_audience += 1

    def _step_ready(self) -> Step | None:
        """The step to evaluate now, if its markers and marginwatch's answer are all in."""
        if self.step_evaluated > self.steps.done:
            return None  # trades of the evaluated step are still running
        step = self.steps.complete()
        if step is None or (self.risk_paced and self.risk_step < step.step):
            return None
        if step.step == 0 and self.sig_audience < self.sig_audience_needed:
            return None  # the probe: answer once the executor hears our signals
        return step

    def _lockstep(self) -> None:
        step = self._step_ready()
        if step is None:
            return
        self.step_evaluated = step.step
        self._eval_start = time.monotonic_ns()
        if step.step > 0:
            self._emit(self.engine.evaluate(step.ts_ns, utc_ns=step.ts_ns), step.ts_ns, step.step)
        self._finish_step()

    def _finish_step(self) -> None:
        if self.step_evaluated > self.steps.done and not self.open_signals:
            self.steps.finish(self.step_evaluated)
            self._step_recv = 0
            self.publish(topics.LOCKSTEP_DONE, StepDone(step=self.step_evaluated))

    def _check_lost_signals(self) -> None:
        """Re-send signals nobody answered (the executor may have been restarting: it trades a
        signal id once); give them up after LOST_SIGNAL_S."""
        if not self.open_signals:
            return
        now = time.monotonic_ns()
        if now - self._signals_sent_mono > LOST_SIGNAL_S * 1e9:
            self.log.error("lockstep_signals_lost", signal_ids=sorted(self.open_signals), step=self.step_evaluated)
            self.open_signals.clear()
            self._finish_step()
            return
        for sig in self.open_signals.values():
            again = msgspec.structs.replace(sig, expiry_ns=now + (sig.expiry_ns - sig.signal_ns), signal_ns=now)
            self.publish(topics.sig(sig.pair), again)

    def _on_risk(self, topic: str, env: Envelope) -> None:
        if isinstance(env.body, RiskState):
            self.published = env.body.state
            self._apply_risk()
        elif isinstance(env.body, StepDone):
            self.risk_step = env.body.step

    def on_kill(self, kill: KillSwitch) -> None:
        self._apply_risk()

    def _apply_risk(self) -> None:
        level = RiskLevel.HALTED if self.kill.halted else self.published
        if level is not self.engine.risk:
            self.log.warning("risk_level", state=level.value, published=self.published.value, kill=self.kill.halted)
            self.engine.set_risk(level)

    def _on_stream(self, ev: StreamEvent, ts_ns: int) -> None:
        body = ev.body
        if isinstance(body, Positions):  # the executor's units per pair: the inventory, by construction
            for p in body.pairs:
                if p.pair in self.engine.pair_index:
                    self.engine.set_position(p.pair, p.units)
            return
        if not isinstance(body, PairTradeEvent) or not body.state.terminal:
            return
        sig = self.open_signals.pop(body.signal_id, None)
        if sig is None or sig.pair != body.pair:
            return  # not one of this trigger's open signals
        # releases the signal; the units it left come with the Positions that follow
        self.engine.on_trade_done(body.pair, sig.direction, sig.closing, 0, body.signal_id)
        if self.lockstep:
            self._finish_step()

    def after_hot(self) -> None:
        if not self.lockstep:  # the newest books, evaluated before any other socket is served
            self._evaluate()

    def after_drain(self) -> None:
        if self.lockstep:
            self._lockstep()
        else:
            self._evaluate()

    def _evaluate(self) -> None:
        if not self.dirty:
            return
        self.dirty = False
        now = self._eval_start = time.monotonic_ns()
        self._sent_mono.clear()
        # each signal is sent from inside the evaluation, as soon as its gates pass (_send_signal)
        signals = self.engine.evaluate(now, utc_ns=time.time_ns(), send=self._send_signal)
        self.newest_eval_age_us = (now - self._newest_recv) / 1e3 if self._newest_recv else 0.0
        if signals:
            self._record(zip(signals, self._sent_mono))

    def _send_signal(self, shape: tuple[str, Side, bool], numbers: tuple) -> None:
        """One signal's numbers into its pre-encoded frame, and out (`TriggerEngine.evaluate(send=)`)."""
        mono = time.monotonic_ns()
        self.pub.publish_template(self.frames[shape], (*numbers, mono, 0, self._eval_start))
        self._sent_mono.append(mono)

    def _emit(self, signals: list[Signal], now: int, step: int) -> None:
        """Lockstep: publish signals the engine priced at venue time `now`; their times move to the
        monotonic clock the executor judges expiry by, tick time becomes the real receive time."""
        sent = []
        for sig in signals:
            mono = self._signals_sent_mono = time.monotonic_ns()
            sig = msgspec.structs.replace(sig, expiry_ns=mono + (sig.expiry_ns - now), step=step,
                                          tick_recv_ns=self._step_recv or sig.tick_recv_ns)
            a, b = sig.legs
            self.pub.publish_template(self.frames[sig.pair, sig.direction, sig.closing], (
                sig.signal_id, a.qty, a.limit_px, b.qty, b.limit_px, sig.spread, sig.zscore, sig.expiry_ns,
                sig.tick_recv_ns, mono, sig.step, self._eval_start))
            sent.append((sig, mono))
        self._record(sent)

    def _record(self, sent: Iterable[tuple[Signal, int]]) -> None:
        """After every signal of an evaluation is out: each as sent (at `mono`) is open until its
        trade ends, and its log line is deferred (`log_soon`)."""
        for sig, mono in sent:
            sig = msgspec.structs.replace(sig, signal_ns=mono, eval_ns=self._eval_start)  # as sent
            self.open_signals[sig.signal_id] = sig
            self.log_soon("info", "signal", dict(
                signal_id=sig.signal_id, pair=sig.pair, direction=sig.direction.value, closing=sig.closing,
                spread=round(sig.spread, 6), z=round(sig.zscore, 3),
                tick_to_signal_us=round((sig.signal_ns - sig.tick_recv_ns) / 1e3, 1)))

    def detail(self) -> dict[str, float]:
        d = {k: float(v) for k, v in self.engine.stats().items() if not k.startswith("suppressed.") or v}
        d["eval_age_us"] = round(self.newest_eval_age_us, 1)
        if self.lockstep:
            d["lockstep_step"] = float(self.steps.done)
        d["risk_level"] = float(self.engine.risk.rank)
        for pair in self.engine.pairs:
            v = self.engine.view(pair)
            d[f"{pair}.z"] = round(v.z, 3) if v.z == v.z else 0.0
            d[f"{pair}.position"] = float(v.position)
        return d
