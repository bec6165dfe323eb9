"""The executor actor: the adapter between the bus, the venues and the execution engine.

Everything a pair trade is lives in `execution.engine` (pure: trades, limits, positions, the
write-ahead log and the durable execution stream). This actor feeds it signals, reports,
timers and risk levels, and carries out the effects it returns in order: venue requests to
the gateways (simulated venue or FIX sessions), stream events and alerts to the bus. After
kill -9 the supervisor restarts it and the engine resumes every open trade from the log.

Topics: `exec.stream` (StreamEvent: fills, trade events, positions, numbered from the log;
StreamHead on a timer; "since N" answered on the command channel), `exec.order.<venue>`
(OrderRequest as sent), `exec.report.<venue>` (OrderEvent as received), `risk.alert`,
`risk.deny`.
"""

from __future__ import annotations

import time
from collections import deque

import msgspec

from actors.runtime import Actor, Timer
from bus import topics
from bus.lockstep import StepBarrier
from bus.messages import (Alert, CmdAck, Control, Envelope, FxRate, KillSwitch, MarginSnapshot, Message, OrderEvent,
                          Quote, RiskLevel, RiskState, Severity, Signal, Step, StepDone, StreamBatch, StreamHead,
                          StreamSince)
from configs.schema import FixVenueCfg
from execution.armed import FastPathDiverged
from execution.engine import STREAM_BATCH, CancelWire, Effect, Emit, ExecutionEngine, Log, Publish, QueryWire, SendWire
from execution.fixgateway import FixGateway
from execution.gateway import OrderGateway, SimGateway
from execution.pairtrade import RequestHalt, params_from_config
from execution.wal import WriteAheadLog, compact
from feeds.fix.session import NOT_LOGGED_ON_WARN_S, FixEngine, SessionEvent, SessionEventKind
from feeds.fix.venue import logon_fields, order_session
from feeds.fix.wire import FixError, masked
from riskguard.ledger import mid_of

REHEARSE_S = 0.001  # the armed path runs dry this often: measured, 5 ms left it cold enough to cost ~15 us
WAL_COMPACT_BYTES = 8 * 1024 * 1024
STREAM_HEAD_S = 0.5
FX_ASK_S = 3600.0  # the FX feeds' buffers are asked once at start; live rates come by subscription


class ExecutorActor(Actor):
    kind = "executor"

    def setup(self) -> None:
        cfg = self.cfg
        params = params_from_config(cfg)
        self.stats = {"orders": 0, "stream_served": 0}
        self.s2o_us: deque[float] = deque(maxlen=2000)
        self.published = RiskLevel.NORMAL
        # lockstep: a signal waits until marginwatch has answered its step and the FX feeds have
        # delivered it, so the risk level and the rates it is judged by are the ones the trigger saw
        lockstep = cfg.run.lockstep.enabled
        self.risk_paced = lockstep and any(a.kind == "marginwatch" and a.enabled for a in cfg.actors.values())
        self.risk_step = -1
        fx_venues = {i.venue for i in cfg.fx_instruments().values()}
        fx_feeds = [n for n, a in cfg.actors.items() if a.kind == "ingest" and a.enabled and a.venue in fx_venues]
        self.fx_steps = StepBarrier(fx_feeds) if lockstep and fx_feeds else None
        self.parked: list[tuple[str, Envelope]] = []

        wal_path = self.run_dir / "state" / f"{self.name}.wal"
        if wal_path.exists() and wal_path.stat().st_size > WAL_COMPACT_BYTES:
            report = compact(wal_path, params)  # keep open trades and the stream: restarts stay fast
            self.log.info("wal_compacted", records=report.records, bytes=report.valid_bytes)
        self.wal = WriteAheadLog(wal_path)
        if self.wal.scan.reason:
            self.log.error("wal_torn_tail", reason=self.wal.scan.reason)
        self.engine = ExecutionEngine(cfg, self.wal, params=params, actor=self.name)

        actors = cfg.actors
        self.subscribe([n for n, a in actors.items() if a.kind == "trigger"], [topics.SIG], self._on_signal, name="sig",
                       hot=True)
        self.subscribe([n for n, a in actors.items() if a.kind == "marginwatch"], [topics.RISK_STATE, topics.RISK_MARGIN],
                       self._on_risk, name="risk")
        fx_prefixes = [topics.md(i.venue, k) for k, i in cfg.fx_instruments().items()]
        if self.fx_steps is not None:
            fx_prefixes += [topics.md(v, topics.STEP_SYMBOL) for v in sorted(fx_venues)]
        if fx_prefixes:
            fx_ingest = [n for n, a in actors.items() if a.kind == "ingest"]
            self.subscribe(fx_ingest, fx_prefixes, self._on_fx, name="fx")
            if not lockstep:
                # at start, each rate as its feed last published it (asked once from the feed's replay
                # buffer), so recovered trades' orders pass the notional limits before the next tick
                for k, i in cfg.fx_instruments().items():
                    feeds = [n for n in fx_ingest if actors[n].venue == i.venue]  # each channel is a socket polled
                    self.pull(feeds, topics.md(i.venue, k), FX_ASK_S, self._on_fx_at_start, name=f"fx:{k}")
                    self.pull_now(f"fx:{k}")
        self.gateways: dict[str, OrderGateway] = {}
        for name, a in actors.items():
            if a.kind != "simex":
                continue
            client = self.connect_command(name, self._on_venue_answer)
            venues = a.venues or [v for v, vc in cfg.venues.items() if vc.kind == "sim"]
            for v in venues:
                if cfg.venues[v].kind != "sim":
                    continue  # a FIX venue simex serves is reached over FIX like any other
                self.gateways[v] = SimGateway(v, client.send)
        self.fix_gateways: list[FixGateway] = []
        self._local_timer: Timer | None = None
        traded = {v for a in cfg.accounts.values() for v in a.venues}
        for v, vc in cfg.venues.items():
            if vc.kind == "fix" and vc.fix is not None and v in traded:
                self._start_fix(v, vc.fix)
        for order in self.engine.recovered_orders:
            fix_gw = self.gateways.get(order.venue)
            if isinstance(fix_gw, FixGateway):  # so it can name the order in a status or cancel request
                fix_gw.remember(order)
        # unwinds priced as limits (`rollback_far_ticks`; required on venues without market orders) go
        # that far through the *current* touch, so the executor keeps those instruments' top of book, and
        # only those: every quote wakes it. Not in lockstep, where quotes and signals would race.
        self._touch_of: dict[tuple[str, str], str] = {}
        if not lockstep:
            inst = cfg.active_instruments()
            no_market = {v for v, vc in cfg.venues.items() if vc.fix is not None and not vc.fix.market_orders}
            keys = {k for k, i in inst.items() if i.venue in no_market and not i.fx}
            keys |= {leg for pc in cfg.pairs.values() if pc.rollback_far_ticks > 0 for leg in (pc.leg_a, pc.leg_b)
                     if leg in inst}
            self._touch_of = {(inst[k].venue, inst[k].symbol): k for k in keys}
        if self._touch_of:
            venues = {v for v, _ in self._touch_of}
            self.subscribe([n for n, a in actors.items() if a.kind == "ingest" and a.venue in venues],
                           [topics.md(v, sym) for v, sym in sorted(self._touch_of)], self._on_touch, name="touch")
        self._wake: Timer | None = None
        self._sent_at = 0  # when the current signal's last order left
        self.risk_latency_us = 0.0  # computed risk state -> received here, for the last RiskState

        self._do(self.engine.resume(time.monotonic_ns()))
        self._rearm()
        self.every(REHEARSE_S, lambda: self.engine.rehearse(time.monotonic_ns()))
        self.every(STREAM_HEAD_S, self._publish_head)
        self._publish_head()

    # ---- the execution stream ------------------------------------------------------------

    def _publish_head(self) -> None:
        self.publish(topics.EXEC_STREAM, StreamHead(head=self.engine.head))

    def on_command(self, peer: bytes, env: Envelope) -> Message | None:
        body = env.body
        if isinstance(body, StreamSince):  # "everything since N", from the log
            limit = min(body.limit or STREAM_BATCH, STREAM_BATCH)
            events = self.engine.since(body.since, limit)
            self.stats["stream_served"] += len(events)
            return StreamBatch(events=events, head=self.engine.head)
        return CmdAck(ok=False, reason=f"COMMAND_UNKNOWN: kind={type(body).__name__}")

    # ---- inputs -----------------------------------------------------------------------

    def _on_fx(self, topic: str, env: Envelope) -> None:
        if isinstance(env.body, FxRate):
            self.engine.on_fx(env.body)
        elif isinstance(env.body, Step) and self.fx_steps is not None:
            self.fx_steps.on_marker(env.src, env.body)
            while (step := self.fx_steps.complete()) is not None:
                self.fx_steps.finish(step.step)
            self._unpark()

    def _on_fx_at_start(self, topic: str, env: Envelope) -> None:
        rate = env.body
        if isinstance(rate, FxRate) and rate.recv_ns > self.engine.fx_recv_ns(rate.pair):
            self.engine.on_fx(rate)

    def _on_touch(self, topic: str, env: Envelope) -> None:
        q = env.body
        if isinstance(q, Quote) and mid_of(q) is not None:  # a one-sided or broken quote prices nothing
            inst = self._touch_of.get((q.venue, q.symbol))
            if inst is not None:
                self.engine.on_touch(inst, q.bid, q.ask)

    def _on_risk(self, topic: str, env: Envelope) -> None:
        if isinstance(env.body, RiskState):
            if not self.risk_paced:  # in lockstep the state is stamped with venue time
                self.risk_latency_us = (time.monotonic_ns() - env.body.ts_ns) / 1e3
            self.published = env.body.state
            self._apply_risk(env.body.reason)
        elif isinstance(env.body, StepDone):
            self.risk_step = env.body.step  # the latest: it goes back to 0 if simex restarts
            self._unpark()
        elif isinstance(env.body, MarginSnapshot):
            self.engine.on_margin(env.body)

    def _waits_for_step(self, sig: Signal) -> bool:
        if self.risk_paced and sig.step > self.risk_step:
            return True
        return self.fx_steps is not None and sig.step > self.fx_steps.done

    def _unpark(self) -> None:
        parked, self.parked = self.parked, []
        for sig_topic, sig_env in parked:
            self._on_signal(sig_topic, sig_env)

    def on_kill(self, kill: KillSwitch) -> None:
        self._apply_risk(f"KILL_SWITCH: reason={kill.reason}" if kill.halted else "KILL_SWITCH: released")

    def _apply_risk(self, reason: str) -> None:
        level = RiskLevel.HALTED if self.kill.halted else self.published
        if level is self.engine.level:
            return
        self.log.warning("risk_level", state=level.value, published=self.published.value, kill=self.kill.halted, reason=reason,
                         risk_state_latency_us=round(self.risk_latency_us, 1))
        self.engine.level = level
        if level.rank >= RiskLevel.REDUCE_ONLY.rank:
            self._do(self.engine.halt(time.monotonic_ns(), f"RISK_{level.value}: {reason}"))
            self._rearm()

    def _on_signal(self, topic: str, env: Envelope) -> None:
        sig = env.body
        if not isinstance(sig, Signal):
            return
        if sig.step and self._waits_for_step(sig):
            self.parked.append((topic, env))
            return
        recv = time.monotonic_ns()
        down = [gw.venue for gw in self.fix_gateways if not gw.connected]
        self._sent_at = 0
        try:
            rest = self.engine.on_signal(sig, recv, down, send=self._send_first)
        except FastPathDiverged as exc:  # memory and log disagree: stop; the restart rebuilds from the log
            self.log.error("exec_fast_path_diverged", signal_id=sig.signal_id, pair=sig.pair, reason=str(exc)[:4000])
            raise
        if self._sent_at:
            self.s2o_us.append((self._sent_at - recv) / 1e3)
        self._do(rest)
        self._rearm()

    def _send_first(self, wire: list[Effect]) -> None:
        """A signal's orders, out as soon as they are logged (the trade's bookkeeping comes after)."""
        self._sent_at = self._do(wire)

    def after_drain(self) -> None:
        # an input moved what armed entries depend on: arm again now, while the caches are warm
        if self.engine.armed_gen != self.engine.gen:
            self.engine.arm(time.monotonic_ns())

    # ---- FIX order sessions ---------------------------------------------------------------

    def _start_fix(self, venue: str, fx: FixVenueCfg) -> None:
        """A QuickFIX initiator for the venue's order session; its callbacks reach this loop."""
        spec = order_session(self.run_dir, venue, fx)
        engine = FixEngine("initiator", [spec], self.ctx, logon_fields=logon_fields(fx))
        self.on_close(engine.stop)
        gw = FixGateway(venue, self.cfg, engine, spec.session_id, on_local=self._local_soon)
        self.gateways[venue] = gw
        self.fix_gateways.append(gw)
        self.watch(engine.socket, lambda: self._on_fix(gw))
        self.every(NOT_LOGGED_ON_WARN_S, lambda: self._warn_not_logged_on(gw))
        engine.start()
        self.log.info("fix_session_starting", venue=venue, session=spec.session_id, host=fx.host, port=fx.port,
                      store=spec.store_dir, ioc=fx.ioc, market_orders=fx.market_orders,
                      status_requests=fx.status_requests)

    def _on_fix(self, gw: FixGateway) -> None:
        for sev in gw.engine.drain():  # one event at a time: a bug on one never loses the others
            self._guarded(self._on_fix_event, gw, sev)

    def _on_fix_event(self, gw: FixGateway, sev: SessionEvent) -> None:
        if sev.kind is SessionEventKind.LOGON:
            out_seq, in_seq = gw.engine.seq_nums(sev.session)
            self.log.info("fix_session_logon", venue=gw.venue, session=sev.session, next_out_seq=out_seq,
                          next_in_seq=in_seq)
            self._query_in_doubt(gw.venue)
        elif sev.kind is SessionEventKind.LOGOUT:
            self.log.warning("fix_session_down", venue=gw.venue, session=sev.session,
                             reason=gw.engine.views[sev.session].last_reason)
        elif sev.kind is SessionEventKind.REFUSED:  # QuickFIX refused a message the venue sent
            self.log.warning("fix_message_refused", venue=gw.venue, session=sev.session, message=masked(sev.raw))
        elif sev.kind is SessionEventKind.GAP_FILLED:  # orders it covered never arrive: they time out, are asked about
            self.log.warning("fix_gap_filled", venue=gw.venue, session=sev.session, message=masked(sev.raw))
        elif sev.kind is SessionEventKind.LOGON_REFUSED:  # retried every reconnect_s
            view = gw.engine.views[sev.session]
            self.log.error("fix_logon_refused", venue=gw.venue, session=sev.session, reason=view.last_reason,
                           attempts=view.logon_refused)
        else:
            try:
                events = gw.on_event(sev)
            except FixError as exc:
                gw.stats["bad_messages"] += 1
                self.log.error("fix_message_dropped", venue=gw.venue, reason=str(exc), message=masked(sev.raw))
                if str(exc).startswith("FIX_UNSUPPORTED"):
                    self._alert(Severity.CRITICAL, f"EXEC_FIX_UNSUPPORTED: venue={gw.venue} {exc}", "")
                return
            for ev in events:
                self._on_report(ev, sev.ts_ns)  # received when QuickFIX handed it over

    def _warn_not_logged_on(self, gw: FixGateway) -> None:
        for view in gw.engine.not_logged_on(NOT_LOGGED_ON_WARN_S):
            out_seq, _ = gw.engine.seq_nums(view.session)
            self.log.warning("fix_session_not_logged_on", venue=gw.venue, session=view.session, state=view.state.value,
                             for_s=round((time.monotonic_ns() - view.since_ns) / 1e9, 1), next_out_seq=out_seq,
                             logon_refused=view.logon_refused, reason=view.last_reason)

    def _local_soon(self) -> None:
        """A gateway answered without its venue: deliver on the next loop turn, never inside a send."""
        if self._local_timer is None:
            self._local_timer = self.after(0.0, self._flush_local)

    def _flush_local(self) -> None:
        self._local_timer = None
        for gw in self.fix_gateways:
            for ev in gw.take_local():
                self._on_report(ev)

    def _query_in_doubt(self, venue: str) -> None:
        """A session (re)logged on: ask at once about every order on it whose fate is unknown."""
        effects = self.engine.query_in_doubt(venue, time.monotonic_ns())
        self._do(effects)
        if effects:
            self.log.info("fix_in_doubt_queried", venue=venue, orders=len(effects))

    # ---- venue answers --------------------------------------------------------------------

    def _on_venue_answer(self, env: Envelope) -> None:
        if isinstance(env.body, OrderEvent):
            self._on_report(env.body)

    def _on_report(self, ev: OrderEvent, recv_ns: int = 0) -> None:
        now = time.monotonic_ns()
        ev = msgspec.structs.replace(ev, recv_ns=recv_ns or now)
        self.publish(topics.exec_report(ev.venue), ev)
        self._do(self.engine.on_report(ev, now))
        self._rearm()

    def _on_timer(self) -> None:
        self._wake = None
        try:
            self._do(self.engine.on_timer(time.monotonic_ns()))
        finally:
            self._rearm()  # whatever happened, the next timeout stays armed
        self.after_drain()

    def _rearm(self) -> None:
        due = self.engine.next_deadline()
        if self._wake is not None:
            self._wake.cancelled = True
            self._wake = None
        if due is not None:
            self._wake = self.after(max(0.0, (due - time.monotonic_ns()) / 1e9), self._on_timer)

    # ---- effects ------------------------------------------------------------------------

    def _do(self, effects: list[Effect]) -> int:
        """Carry out the engine's effects in order (they are logged already); the last order's send time."""
        last_sent = 0
        sent = []
        for e in effects:
            if isinstance(e, SendWire):
                o = msgspec.structs.replace(e.order, sent_ns=time.monotonic_ns())
                gw = self.gateways.get(o.venue)
                if gw is None:
                    self._no_gateway(o.trade_id, o.cl_ord_id, o.venue)
                else:
                    gw.send(o)
                    last_sent = o.sent_ns
                sent.append(o)
            elif isinstance(e, (CancelWire, QueryWire)):
                gw = self.gateways.get(e.req.venue)
                if gw is None:
                    self._no_gateway(e.trade_id, e.req.cl_ord_id, e.req.venue)
                elif isinstance(e, CancelWire):
                    gw.cancel(e.req)
                else:
                    gw.status(e.req)
            elif isinstance(e, Emit):
                self.publish(topics.EXEC_STREAM, e.event)
            elif isinstance(e, Publish):
                self.publish(e.topic, e.msg)
            elif isinstance(e, RequestHalt):
                self.tell_supervisor(Control(cmd="halt", args={"reason": e.reason}))
        for o in sent:  # after every order is out
            self.stats["orders"] += 1
            self.publish(topics.exec_order(o.venue), o)
            self.log_soon("info", "order_sent", dict(
                trade_id=o.trade_id, cl_ord_id=o.cl_ord_id, instrument=o.instrument, side=o.side.value, qty=o.qty,
                price=o.price, purpose=o.purpose.value, account=o.account))
        for e in effects:  # the log lines last, and later: formatting them never delays an order or an event
            if isinstance(e, Log):
                self.log_soon(e.level, e.event, e.fields)
        return last_sent

    def _no_gateway(self, trade_id: str, cl_ord_id: str, venue: str) -> None:
        self._alert(Severity.CRITICAL, f"EXEC_NO_GATEWAY: venue={venue} cl_ord_id={cl_ord_id}", trade_id)

    def _alert(self, severity: Severity, text: str, trade_id: str) -> None:
        self.publish(topics.RISK_ALERT, Alert(severity=severity, code=text.split(":")[0], text=text, actor=self.name,
                                              trade_id=trade_id, ts_ns=time.monotonic_ns()))
        self.log.error("exec_alert", trade_id=trade_id, text=text)

    def detail(self) -> dict[str, float]:
        d = {k: float(v) for k, v in self.engine.stats.items()}
        d.update({k: float(v) for k, v in self.stats.items()})
        for gw in self.fix_gateways:
            d.update(gw.detail())
        d["open_trades"] = float(len(self.engine.open))
        d["risk_level"] = float(self.engine.level.rank)
        d["armed_entries"] = float(len(self.engine.armed))
        d["stream_head"] = float(self.engine.head)
        for p in self.engine.book.view().pairs:
            d[f"units.{p.pair}"] = float(p.units)
        if self.s2o_us:
            s = sorted(self.s2o_us)
            d["signal_to_orders_p50_us"] = round(s[len(s) // 2], 1)
        return d

    def on_stop_requested(self) -> None:
        """Shutting down: start nothing new and flatten what is open while the venues still answer."""
        self.engine.level = RiskLevel.HALTED
        if self.engine.open:
            self.log.warning("shutdown_flattening", open_trades=len(self.engine.open))
            self._do(self.engine.halt(time.monotonic_ns(), "SHUTDOWN: flatten"))
            self._rearm()

    def finishing(self) -> bool:
        return bool(self.engine.open)

    def teardown(self) -> None:
        if self.engine.open:
            self.log.error("shutdown_with_open_trades", trade_ids=sorted(self.engine.open),
                           note="resumed from the write-ahead log at next start")
        self.wal.close()
