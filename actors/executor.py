"""The executor actor: signals become pair trades; pair trades never end with a naked leg.

The pair-trade logic lives in `execution.pairtrade` (pure); this actor only
carries out its actions and feeds it inputs, writing every input and every
order to the write-ahead log first (`execution.wal` documents the protocol).
After kill -9 the supervisor restarts it and it resumes every open trade from
the log: in-doubt orders are queried, unsent ones sent, fills are not lost.

Topics: `exec.order.<venue>` (OrderRequest as sent), `exec.report.<venue>`
(OrderEvent as received), `exec.trade.<pair>` (PairTradeEvent per
transition), `risk.alert`, `risk.deny`.
"""

from __future__ import annotations

import sqlite3
import time
from collections import deque
from typing import Callable

import msgspec

from actors.journal import audit_path
from actors.runtime import Actor, Timer
from bus.auditstore import AuditReader
from bus import topics
from bus.messages import (Alert, Control, Envelope, ExecType, FxRate, KillSwitch, OrderEvent,
                          OrderPurpose, OrderRequest, PairTradeEvent, Quote, RiskLevel, RiskState, Severity, Side, Signal,
                          SignalLeg, StatusRequest, Step, StepDone)
from bus.lockstep import StepBarrier
from execution.allocation import Allocator
from configs.schema import FixVenueCfg
from execution.fixgateway import FixGateway
from execution.gateway import OrderGateway, SimGateway
from feeds.fix.session import NOT_LOGGED_ON_WARN_S, FixEngine, SessionEvent, SessionEventKind
from feeds.fix.venue import logon_fields, order_session
from feeds.fix.wire import FixError, masked
from execution.ids import TradeIds, parse_cl_ord_id
from execution.pairtrade import (Action, CancelOrder, OrderStatus, PairTrade, QueryStatus, RaiseAlert, RequestHalt, SendOrder,
                                 SignalInvalid, Transition, marketable_limit, params_from_config)
from execution.childorders import ChildRouter, parent_of, session_down
from execution.wal import (ChildSent, Halted, OrderSent, ReportApplied, Resumed, TimerFired, TradeClosed, TradeOpened,
                           WalRecord, WriteAheadLog, compact, recover)
from execution.wal import encode_frame as encode_wal
from riskguard.fx import FxTable
from riskguard.limits import PreTradeLimits

TRADE_PREFIX = "T"
KEEP_DONE = 5000  # settled trades kept in memory for late reports
REHEARSE_S = 0.005
WAL_COMPACT_BYTES = 8 * 1024 * 1024


class ExecutorActor(Actor):
    kind = "executor"

    def setup(self) -> None:
        cfg = self.cfg
        self.params = params_from_config(cfg)
        self.limits = PreTradeLimits.from_config(cfg)
        self.fx = FxTable(cfg.run.base_currency, expected=sorted(cfg.fx_instruments()))
        self.router = ChildRouter({n: Allocator(n, a) for n, a in cfg.accounts.items() if a.sub_accounts},
                                  {n: a.iceberg_visible for n, a in cfg.accounts.items()})
        self.trades: dict[str, PairTrade] = {}
        self.open: set[str] = set()
        self.done: deque[str] = deque()
        self.signal_seen: set[str] = set()
        self.published = RiskLevel.NORMAL
        self.level = RiskLevel.NORMAL
        self.stats = {"signals": 0, "rejected": 0, "orders": 0, "reports": 0, "fills": 0, "denied": 0,
                      "orphan_reports": 0, "recovered": 0}
        self.s2o_us: deque[float] = deque(maxlen=2000)
        self._fill_avg: dict[str, tuple[int, float]] = {}  # cl_ord_id -> (qty, avg price) published as filled
        # lockstep: a signal waits until marginwatch has answered its step and the FX feeds have
        # delivered it, so the risk level and the rates it is judged by are the ones the trigger saw
        lockstep = cfg.run.lockstep.enabled
        self.risk_paced = lockstep and any(a.kind == "marginwatch" and a.enabled for a in cfg.actors.values())
        self.risk_step = -1
        fx_venues = {i.venue for i in cfg.fx_instruments().values()}
        fx_feeds = [n for n, a in cfg.actors.items() if a.kind == "ingest" and a.enabled and a.venue in fx_venues]
        self.fx_steps = StepBarrier(fx_feeds) if lockstep and fx_feeds else None
        self.parked: list[tuple[str, Envelope]] = []

        actors = cfg.actors
        self.subscribe([n for n, a in actors.items() if a.kind == "trigger"], [topics.SIG], self._on_signal, name="sig")
        self.subscribe([n for n, a in actors.items() if a.kind == "marginwatch"], [topics.RISK_STATE], self._on_risk, name="risk")
        fx_prefixes = [topics.md(i.venue, k) for k, i in cfg.fx_instruments().items()]
        if self.fx_steps is not None:
            fx_prefixes += [topics.md(v, topics.STEP_SYMBOL) for v in sorted(fx_venues)]
        if fx_prefixes:
            self.subscribe([n for n, a in actors.items() if a.kind == "ingest"], fx_prefixes, self._on_fx, name="fx")
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
        # unwinds priced as limits (`rollback_far_ticks`; required on venues without market orders) go
        # that far through the *current* touch, so the executor keeps those instruments' top of book, and
        # only those: every quote wakes it. Not in lockstep, where quotes and signals would race.
        self.touch: dict[str, tuple[float, float]] = {}
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
        self._last_sent_ns = 0
        self.risk_latency_us = 0.0  # computed risk state -> received here, for the last RiskState
        self._wal_head: list[TradeOpened] = []

        wal_path = self.run_dir / "state" / f"{self.name}.wal"
        if wal_path.exists() and wal_path.stat().st_size > WAL_COMPACT_BYTES:
            report = compact(wal_path, self.params)  # keep only open trades: restarts stay fast
            self.log.info("wal_compacted", records=report.records, bytes=report.valid_bytes)
        self._bootstrap_fx()
        recovered = recover(wal_path, self.params)
        self.wal = WriteAheadLog(wal_path)
        if self.wal.scan.reason:
            self.log.error("wal_torn_tail", reason=self.wal.scan.reason)
        for rec in self.wal.records:
            if isinstance(rec, TradeOpened):  # a signal is traded once, even if it comes again after a restart
                self.signal_seen.add(rec.signal.signal_id)
            elif isinstance(rec, ChildSent) and rec.order.trade_id in recovered.trades:
                self.router.restore(rec.parent, rec.order)
            elif (isinstance(rec, ReportApplied) and rec.trade_id in recovered.trades
                  and rec.report.exec_type is ExecType.FILL):
                self.router.restore_fill(rec.report)
            if isinstance(rec, (OrderSent, ChildSent)) and rec.order.trade_id in recovered.trades:
                fix_gw = self.gateways.get(rec.order.venue)
                if isinstance(fix_gw, FixGateway):  # so it can name the order in a status or cancel request
                    fix_gw.remember(rec.order)
        for trade in recovered.trades.values():
            for view in trade.order_views():
                if view.cancel_requested:
                    self.router.restore_cancel(view.cl_ord_id)
        self.ids = TradeIds(TRADE_PREFIX, recovered.next_trade_n)
        self.trades.update(recovered.trades)
        self.open.update(recovered.trades)
        for trade in recovered.trades.values():
            self.signal_seen.add(trade.signal.signal_id)
        if recovered.trades or recovered.errors:
            now = time.monotonic_ns()
            self.log.warning("executor_recovering", open_trades=len(recovered.trades), in_doubt=len(recovered.in_doubt),
                             to_send=len(recovered.to_send), errors=list(recovered.errors))
            self.wal.append(Resumed(now_ns=now))
            for trade_id, action in recovered.resume(now):
                self._run(self.trades[trade_id], [action], now)
            self.stats["recovered"] = len(recovered.trades)
        self._rearm()
        self._rehearsal = self._rehearsal_signals()
        self._shadow_limits = PreTradeLimits.from_config(cfg)
        self._shadow_codec = msgspec.msgpack.Encoder()
        self.every(REHEARSE_S, self._rehearse)

    def _bootstrap_fx(self) -> None:
        """After a restart: each FX pair's latest rate from the journal, so the orders of recovered
        trades pass the notional limits before the live FX feed ticks again (its receive time keeps
        the staleness check honest)."""
        path = audit_path(self.run_dir)
        if not path.exists():
            return
        try:
            reader = AuditReader(path)
            rows = reader.db.execute("SELECT body FROM events WHERE kind = 'FxRate' ORDER BY id DESC LIMIT 500").fetchall()
            reader.close()
            latest: dict[str, FxRate] = {}
            for (body,) in rows:
                rate = msgspec.json.decode(body, type=FxRate)
                latest.setdefault(rate.pair, rate)
        except (sqlite3.Error, msgspec.DecodeError) as exc:  # DecodeError covers a body of the wrong shape
            self.log.error("fx_bootstrap_failed", error=repr(exc))
            return
        for rate in latest.values():
            self.fx.on_fx(rate)
        if latest:
            self.log.info("fx_bootstrapped", pairs=sorted(latest))

    # ---- keeping the hot path warm -------------------------------------------------------

    def _rehearse(self) -> None:
        """Run a signal's path without effects (no log, no send) so code and data stay in the CPU
        caches between sparse signals; a cold executor takes several times longer to send."""
        now = time.monotonic_ns()
        for pair, sig in self._rehearsal.items():
            trade = PairTrade("R000000", msgspec.structs.replace(sig, expiry_ns=now + 10**9), self.params[pair])
            for action in trade.start(now):
                if isinstance(action, SendOrder):
                    o = action.order
                    inst = self.cfg.instruments[o.instrument]
                    self._shadow_limits.check(o, now, o.price, self.fx.try_rate(inst.currency, self.cfg.run.base_currency))
                    encode_wal(OrderSent(order=o))
                    self._shadow_codec.encode(o)

    def _rehearsal_signals(self) -> dict[str, Signal]:
        out = {}
        for pair, p in self.params.items():
            legs = tuple(SignalLeg(instrument=leg.instrument, side=side, qty=leg.ratio, limit_px=1.0)
                         for leg, side in ((p.a, Side.BUY), (p.b, Side.SELL)))
            out[pair] = Signal(signal_id="rehearsal", pair=pair, direction=Side.BUY, closing=False, legs=legs,
                               spread=0.0, zscore=0.0, expiry_ns=0, tick_recv_ns=0, signal_ns=0)
        return out

    # ---- inputs -----------------------------------------------------------------------

    def _on_fx(self, topic: str, env: Envelope) -> None:
        if isinstance(env.body, FxRate):
            self.fx.on_fx(env.body)
        elif isinstance(env.body, Step) and self.fx_steps is not None:
            self.fx_steps.on_marker(env.src, env.body)
            while (step := self.fx_steps.complete()) is not None:
                self.fx_steps.finish(step.step)
            self._unpark()

    def _on_touch(self, topic: str, env: Envelope) -> None:
        q = env.body
        if isinstance(q, Quote):
            inst = self._touch_of.get((q.venue, q.symbol))
            if inst is not None:
                self.touch[inst] = (q.bid, q.ask)

    def _on_risk(self, topic: str, env: Envelope) -> None:
        if isinstance(env.body, RiskState):
            if not self.risk_paced:  # in lockstep the state is stamped with venue time
                self.risk_latency_us = (time.monotonic_ns() - env.body.ts_ns) / 1e3
            self.published = env.body.state
            self._apply_risk(env.body.reason)
        elif isinstance(env.body, StepDone):
            self.risk_step = env.body.step  # the latest: it goes back to 0 if simex restarts
            self._unpark()

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
        if level is self.level:
            return
        self.log.warning("risk_level", state=level.value, published=self.published.value, kill=self.kill.halted, reason=reason,
                         risk_state_latency_us=round(self.risk_latency_us, 1))
        self.level = level
        if level.rank >= RiskLevel.REDUCE_ONLY.rank and self.open:
            now = time.monotonic_ns()
            why = f"RISK_{level.value}: {reason}"
            self.wal.append(Halted(now_ns=now, reason=why))
            for trade_id in sorted(self.open):
                trade = self.trades[trade_id]
                self._run(trade, trade.halt(now, why), now)
            self._rearm()

    def _on_signal(self, topic: str, env: Envelope) -> None:
        sig = env.body
        if not isinstance(sig, Signal):
            return
        if sig.step and self._waits_for_step(sig):
            self.parked.append((topic, env))
            return
        if sig.signal_id in self.signal_seen:  # a repeat (the trigger re-sends one it heard nothing about)
            self.log.info("signal_repeated", signal_id=sig.signal_id, pair=sig.pair)
            return
        recv = time.monotonic_ns()
        self.stats["signals"] += 1
        reason = self._refuse(sig, recv)
        if reason is not None:
            self._reject_signal(sig, reason)
            return
        params = self.params[sig.pair]
        trade_id = self.ids.next()
        try:
            trade = PairTrade(trade_id, sig, params)
        except SignalInvalid as exc:
            self._reject_signal(sig, str(exc))
            return
        self.signal_seen.add(sig.signal_id)
        self.trades[trade_id] = trade
        self.open.add(trade_id)
        self._last_sent_ns = 0
        # TradeOpened goes to the log in the same write as the entry orders, ahead of them
        self._wal_head = [TradeOpened(trade_id=trade_id, signal=sig, params=params, now_ns=recv)]
        self._run(trade, trade.start(recv), recv)
        if self._wal_head:
            self.wal.append_many(self._wal_head)
            self._wal_head = []
        self.log.info("trade_opened", trade_id=trade_id, pair=sig.pair, signal_id=sig.signal_id,
                      direction=sig.direction.value, closing=sig.closing)
        if self._last_sent_ns:
            self.s2o_us.append((self._last_sent_ns - recv) / 1e3)
        self._rearm()

    def _refuse(self, sig: Signal, now: int) -> str | None:
        if sig.pair not in self.params:
            return f"SIGNAL_PAIR_UNKNOWN: pair={sig.pair}"
        if 0 < sig.expiry_ns < now:
            return f"SIGNAL_EXPIRED: age_us={(now - sig.signal_ns) / 1e3:.0f}"
        level = self.level
        if level is RiskLevel.HALTED or (level is not RiskLevel.NORMAL and not sig.closing):
            return f"RISK_STATE: state={level.value} closing={sig.closing}"
        p = self.params[sig.pair]
        legs = sorted(leg.instrument for leg in sig.legs)
        if legs != sorted((p.a.instrument, p.b.instrument)):
            return f"SIGNAL_LEGS: pair={sig.pair} legs={','.join(legs)} want={p.a.instrument},{p.b.instrument}"
        busy = [t for t in self.open if self.trades[t].pair == sig.pair]
        if busy:
            return f"EXEC_PAIR_BUSY: pair={sig.pair} trade_id={busy[0]}"
        for leg in (p.a, p.b):
            gw = self.gateways.get(leg.venue)
            if gw is not None and not gw.connected:
                return f"SESSION_DOWN: venue={leg.venue} instrument={leg.instrument}"
        doubt = {i for t in self.open for i in self.trades[t].instruments_in_doubt()}
        for leg in (p.a.instrument, p.b.instrument):
            if leg in doubt:
                return f"EXEC_IN_DOUBT: instrument={leg}"
        units = sig.legs[0].qty // max(1, p.a.ratio) * sig.direction.sign
        return self.limits.check_pair(sig.pair, units)

    def _reject_signal(self, sig: Signal, reason: str) -> None:
        self.stats["rejected"] += 1
        self.log.info("signal_rejected", signal_id=sig.signal_id, pair=sig.pair, reason=reason)
        self.publish(topics.exec_trade(sig.pair), PairTradeEvent(
            trade_id="", pair=sig.pair, state="REJECTED", prev_state="", transition="signal_rejected",
            direction=sig.direction, legs=(), reason=reason, signal_id=sig.signal_id, tick_recv_ns=sig.tick_recv_ns,
            ts_ns=time.monotonic_ns()))

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
        asked = 0
        for trade_id in sorted(self.open):
            trade = self.trades[trade_id]
            for view in trade.order_views():
                if view.status is OrderStatus.IN_DOUBT and getattr(trade.params, view.leg).venue == venue:
                    self._act(trade, QueryStatus(query=StatusRequest(cl_ord_id=view.cl_ord_id, venue=venue)),
                              time.monotonic_ns())
                    asked += 1
        if asked:
            self.log.info("fix_in_doubt_queried", venue=venue, orders=asked)

    # ---- venue answers --------------------------------------------------------------------

    def _on_venue_answer(self, env: Envelope) -> None:
        if isinstance(env.body, OrderEvent):
            self._on_report(env.body)

    def _on_report(self, ev: OrderEvent, recv_ns: int = 0) -> None:
        now = time.monotonic_ns()
        ev = msgspec.structs.replace(ev, recv_ns=recv_ns or now)
        self.stats["reports"] += 1
        self.publish(topics.exec_report(ev.venue), ev)
        if ev.exec_type is ExecType.FILL and ev.last_qty > 0:
            self.stats["fills"] += 1
            self.limits.on_fill(ev.instrument, ev.side, ev.last_qty)
        parent_id = parent_of(ev.cl_ord_id)
        if parent_id is not None:  # a child: what it means for its parent goes to the trade
            events, more = self.router.on_report(ev)
            trade = self._trade_of(parent_id)
            if trade is None:
                self._orphan(ev)
                return
            self.log.info("child_report", trade_id=trade.trade_id, cl_ord_id=ev.cl_ord_id, exec_type=ev.exec_type.value,
                          last_qty=ev.last_qty, cum_qty=ev.cum_qty, leaves_qty=ev.leaves_qty, reason=ev.reason)
            parent_req = self.router.parent_request(parent_id)
            if more and parent_req is not None:  # the next iceberg slices
                self._send(trade, [ChildSent(parent=parent_req, order=c) for c in more], more)
            for pev in events:
                self._apply_report(trade, msgspec.structs.replace(pev, recv_ns=now), now)
        else:
            trade = self._trade_of(ev.cl_ord_id)
            if trade is None:
                self._orphan(ev)
                return
            if session_down(ev) and self._order_status(trade, ev.cl_ord_id) is not OrderStatus.SENT:
                # a status or cancel that never reached the venue: the order stays in doubt, asked again
                self.log.warning("answer_session_down", trade_id=trade.trade_id, cl_ord_id=ev.cl_ord_id, reason=ev.reason)
                return
            self._apply_report(trade, ev, now)
        self._rearm()

    @staticmethod
    def _order_status(trade: PairTrade, cl_ord_id: str) -> OrderStatus | None:
        return next((o.status for o in trade.order_views() if o.cl_ord_id == cl_ord_id), None)

    def _trade_of(self, cl_ord_id: str) -> PairTrade | None:
        parsed = parse_cl_ord_id(cl_ord_id)
        trade = self.trades.get(parsed.trade_id) if parsed is not None else None
        return trade if trade is not None and trade.owns(cl_ord_id) else None

    def _orphan(self, ev: OrderEvent) -> None:
        self.stats["orphan_reports"] += 1
        severity = "error" if ev.exec_type is ExecType.FILL else "warning"
        getattr(self.log, severity)("report_orphan", cl_ord_id=ev.cl_ord_id, exec_type=ev.exec_type.value,
                                    last_qty=ev.last_qty, reason=ev.reason)
        if ev.exec_type is ExecType.FILL:
            self._alert(Severity.CRITICAL, f"EXEC_ORPHAN_FILL: cl_ord_id={ev.cl_ord_id} qty={ev.last_qty}", "")

    def _apply_report(self, trade: PairTrade, ev: OrderEvent, now: int) -> None:
        """A report of one of the trade's own orders: logged ahead, applied, fills published."""
        self.log.info("order_report", trade_id=trade.trade_id, cl_ord_id=ev.cl_ord_id, exec_type=ev.exec_type.value,
                      last_qty=ev.last_qty, last_px=ev.last_px, cum_qty=ev.cum_qty, leaves_qty=ev.leaves_qty, reason=ev.reason)
        before = self._filled(trade, ev.cl_ord_id)
        self.wal.append(ReportApplied(trade_id=trade.trade_id, report=ev, now_ns=now))
        actions = trade.on_report(ev, now)
        self._publish_fill(ev, before, self._filled(trade, ev.cl_ord_id))
        self._run(trade, actions, now)

    @staticmethod
    def _filled(trade: PairTrade, cl_ord_id: str) -> int:
        return next((o.filled_qty for o in trade.order_views() if o.cl_ord_id == cl_ord_id), 0)

    def _publish_fill(self, ev: OrderEvent, before: int, after: int) -> None:
        """Publish what the trade now holds more of, however the venue told us (a FILL, or a status or
        cancel answer after a lost report), once: `exec.fill.<venue>` is the position-keeping stream."""
        if after <= before:
            return
        qty = after - before
        if ev.exec_type is ExecType.FILL and ev.last_qty == qty and ev.last_px > 0:
            px = ev.last_px
        else:  # from the cumulative average and what was already published for this order
            prev_qty, prev_avg = self._fill_avg.get(ev.cl_ord_id, (before, ev.avg_px))
            px = (after * ev.avg_px - prev_qty * prev_avg) / qty if ev.avg_px > 0 else ev.last_px
        self._fill_avg[ev.cl_ord_id] = (after, ev.avg_px if ev.avg_px > 0 else px)
        self.publish(topics.exec_fill(ev.venue), msgspec.structs.replace(
            ev, exec_type=ExecType.FILL, last_qty=qty, last_px=px, cum_qty=after, exec_id=f"{ev.cl_ord_id}#{after}"))

    def _on_timer(self) -> None:
        self._wake = None
        now = time.monotonic_ns()
        try:
            for trade_id in sorted(self.open):
                trade = self.trades[trade_id]
                due = trade.next_deadline_ns()
                if due is not None and due <= now:
                    self.wal.append(TimerFired(trade_id=trade_id, now_ns=now))
                    self._guarded(lambda t=trade: self._run(t, t.on_timer(now), now))
        finally:
            self._rearm()  # whatever happened, the next timeout stays armed

    def _rearm(self) -> None:
        dues = [d for t in self.open if (d := self.trades[t].next_deadline_ns()) is not None]
        if self._wake is not None:
            self._wake.cancelled = True
            self._wake = None
        if dues:
            delay = max(0.0, (min(dues) - time.monotonic_ns()) / 1e9)
            self._wake = self.after(delay, self._on_timer)

    # ---- actions ------------------------------------------------------------------------

    def _run(self, trade: PairTrade, actions: list[Action], now: int) -> None:
        """Carry out a trade's actions: orders leave first (WAL, then wire); publishing and logging after."""
        records: list[WalRecord] = [*self._wal_head]
        self._wal_head = []
        wire: list[OrderRequest] = []
        denied: list[tuple[OrderRequest, str]] = []
        unplaced: list[OrderEvent] = []
        for action in actions:
            if not isinstance(action, SendOrder):
                continue
            order, denial = self._vet(trade, action.order, now)
            if denial is not None:
                denied.append((order, denial))
                continue
            records.append(OrderSent(order=order))
            children, reject = self.router.route(order)  # sub-accounts and iceberg slices
            if reject is not None:
                unplaced.append(msgspec.structs.replace(reject, recv_ns=now))
            elif children != [order]:
                records += [ChildSent(parent=order, order=c) for c in children]
            wire += children
        self._send(trade, records, wire)
        for action in actions:
            if not isinstance(action, SendOrder):
                self._act(trade, action, now)
        for order, denial in denied:
            self._deny(trade, order, denial, now)
        for reject in unplaced:
            self._apply_report(trade, reject, now)
        self._settle(trade, now)

    def _send(self, trade: PairTrade, records: list[WalRecord], wire: list[OrderRequest]) -> None:
        """Log ahead in one write, then hand the orders to their venue sessions, then tell the bus."""
        if records:
            self.wal.append_many(records)
        stamped = []
        for o in wire:
            o = msgspec.structs.replace(o, sent_ns=time.monotonic_ns())
            gw = self.gateways.get(o.venue)
            if gw is None:
                self._no_gateway(trade, o.cl_ord_id, o.venue, o.sent_ns)
            else:
                gw.send(o)
                self._last_sent_ns = o.sent_ns
            stamped.append(o)
        for o in stamped:
            self.stats["orders"] += 1
            self.publish(topics.exec_order(o.venue), o)
            self.log.info("order_sent", trade_id=trade.trade_id, cl_ord_id=o.cl_ord_id, instrument=o.instrument,
                          side=o.side.value, qty=o.qty, price=o.price, purpose=o.purpose.value, account=o.account)

    def _settle(self, trade: PairTrade, now: int) -> None:
        if trade.trade_id in self.open and trade.is_done:
            self.open.discard(trade.trade_id)
            self.wal.append(TradeClosed(trade_id=trade.trade_id, state=trade.state.value, now_ns=now))
            self.done.append(trade.trade_id)
            if trade.state.value == "COMPLETED":
                p = self.params[trade.pair]
                units = trade.signal.legs[0].qty // max(1, p.a.ratio)
                self.limits.on_pair_units(trade.pair, units * trade.signal.direction.sign)
            while len(self.done) > KEEP_DONE:
                old = self.done.popleft()
                if old not in self.open:  # a late fill may have reopened it
                    self.trades.pop(old, None)
        elif trade.trade_id not in self.open and not trade.is_done:
            self.open.add(trade.trade_id)  # a late fill reopened a settled trade

    def _act(self, trade: PairTrade, action: Action, now: int) -> None:
        if isinstance(action, SendOrder):
            self._run(trade, [action], now)
        elif isinstance(action, CancelOrder):
            for c in self.router.cancel(action.cancel):
                self._gateway(c.venue, trade, c.cl_ord_id, now, lambda g, c=c: g.cancel(c))
        elif isinstance(action, QueryStatus):
            for q in self.router.status(action.query):
                self._gateway(q.venue, trade, q.cl_ord_id, now, lambda g, q=q: g.status(q))
        elif isinstance(action, Transition):
            ev = action.event
            self.publish(topics.exec_trade(ev.pair), ev)
            log = self.log.error if ev.state == "BROKEN" else self.log.info
            log("trade_transition", trade_id=ev.trade_id, pair=ev.pair, state=ev.state, prev_state=ev.prev_state,
                transition=ev.transition, reason=ev.reason)
        elif isinstance(action, RaiseAlert):
            self.publish(topics.RISK_ALERT, action.alert)
            self.log.error("trade_alert", trade_id=action.alert.trade_id, code=action.alert.code, text=action.alert.text)
        elif isinstance(action, RequestHalt):
            self.log.error("halt_requested", trade_id=trade.trade_id, reason=action.reason)
            self.tell_supervisor(Control(cmd="halt", args={"reason": action.reason}))

    def _vet(self, trade: PairTrade, order: OrderRequest, now: int) -> tuple[OrderRequest, str | None]:
        """Pre-trade limits and sub-account routing; (order as it will leave, denial reason or None)."""
        leg = next(l for l in trade.signal.legs if l.instrument == order.instrument)
        if order.purpose in (OrderPurpose.OPEN, OrderPurpose.RESUBMIT):
            inst = self.cfg.instruments[order.instrument]
            fx = self.fx.try_rate(inst.currency, self.cfg.run.base_currency)
            denial = self.limits.check(order, now, leg.limit_px, fx)
            if denial is not None:
                return order, denial
        else:
            self.limits.check(order, now, leg.limit_px, None)  # never blocks an unwind; counts in the rate window
            book = self.touch.get(order.instrument) if order.price is not None else None
            if book is not None:  # a limit unwind: `rollback_far_ticks` through the touch as it is now
                tick = self.cfg.instruments[order.instrument].tick
                price = marketable_limit(order.side, book[0], book[1], max(1, trade.params.rollback_far_ticks), tick)
                order = msgspec.structs.replace(order, price=price)
        return order, None

    def _deny(self, trade: PairTrade, order: OrderRequest, denial: str, now: int) -> None:
        """A denied order comes back to its trade as a venue-style REJECT (logged first, like any report)."""
        self.stats["denied"] += 1
        self.log.warning("order_denied", trade_id=trade.trade_id, cl_ord_id=order.cl_ord_id, reason=denial)
        self.publish(topics.RISK_DENY, Alert(severity=Severity.WARNING, code=denial.split(":")[0], text=denial,
                                             actor=self.name, trade_id=trade.trade_id, ts_ns=now))
        reject = OrderEvent(cl_ord_id=order.cl_ord_id, exec_type=ExecType.REJECT, venue=order.venue,
                            instrument=order.instrument, side=order.side, order_qty=order.qty, cum_qty=0,
                            leaves_qty=0, reason=denial, recv_ns=now)
        self.wal.append(ReportApplied(trade_id=trade.trade_id, report=reject, now_ns=now))
        self._run(trade, trade.on_report(reject, now), now)

    def _gateway(self, venue: str, trade: PairTrade, cl_ord_id: str, now: int, fn: Callable[[OrderGateway], None]) -> None:
        gw = self.gateways.get(venue)
        if gw is None:
            self._no_gateway(trade, cl_ord_id, venue, now)
        else:
            fn(gw)

    def _no_gateway(self, trade: PairTrade, cl_ord_id: str, venue: str, now: int) -> None:
        self._alert(Severity.CRITICAL, f"EXEC_NO_GATEWAY: venue={venue} cl_ord_id={cl_ord_id}", trade.trade_id)

    def _alert(self, severity: Severity, text: str, trade_id: str) -> None:
        self.publish(topics.RISK_ALERT, Alert(severity=severity, code=text.split(":")[0], text=text, actor=self.name,
                                              trade_id=trade_id, ts_ns=time.monotonic_ns()))
        self.log.error("exec_alert", trade_id=trade_id, text=text)

    def detail(self) -> dict[str, float]:
        d = {k: float(v) for k, v in self.stats.items()}
        for gw in self.fix_gateways:
            d.update(gw.detail())
        d["open_trades"] = float(len(self.open))
        d["risk_level"] = float(self.level.rank)
        if self.s2o_us:
            s = sorted(self.s2o_us)
            d["signal_to_orders_p50_us"] = round(s[len(s) // 2], 1)
        return d

    def on_stop_requested(self) -> None:
        """Shutting down: start nothing new and flatten what is open while the venues still answer."""
        self.level = RiskLevel.HALTED
        if self.open:
            now = time.monotonic_ns()
            self.log.warning("shutdown_flattening", open_trades=len(self.open))
            self.wal.append(Halted(now_ns=now, reason="SHUTDOWN: flatten"))
            for trade_id in sorted(self.open):
                trade = self.trades[trade_id]
                self._run(trade, trade.halt(now, "SHUTDOWN: flatten"), now)
            self._rearm()

    def finishing(self) -> bool:
        return bool(self.open)

    def teardown(self) -> None:
        if self.open:
            self.log.error("shutdown_with_open_trades", trade_ids=sorted(self.open),
                           note="resumed from the write-ahead log at next start")
        self.wal.close()
