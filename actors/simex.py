"""The simulated exchange actor: the embedded default venue(s).

It publishes each simulated venue's raw top of book on ``raw.<venue>.<instrument>``
(the venue's own feed, which the venue's ingest normalises) and runs the
order sessions: `OrderRequest`/`CancelRequest`/`StatusRequest` arrive on its
command ROUTER and execution reports go back to the session that sent the
order, after the venue's configured latency (in venue time). Every fill the
venue makes is also published on ``venue.fill.<venue>`` and appended to
``state/simex-fills.jsonl``: the venue's own drop copy, to reconcile against.

A venue of ``kind = "fix"`` named in the actor's ``venues`` list is served the
same way behind a real FIX acceptor (QuickFIX, on the venue's port: `xmc check`
wants a loopback host, but this QuickFIX build has no setting for the listening
address; `feeds.simex.fixserver`): NewOrderSingle / OrderCancelRequest /
OrderStatusRequest reach the same `SimVenue.handle` as bus requests, the
reports of those orders go back over FIX as ExecutionReports and
OrderCancelRejects, MarketDataRequests subscribe to the venue's quotes as
MarketDataSnapshotFullRefresh messages, and the venue's scheduled disconnects
log its FIX sessions out and refuse their logons until it is up again. Its
quotes still go out on ``raw.<venue>.<instrument>``, its fills on
``venue.fill.<venue>`` and into the drop copy.

Lockstep (``run.lockstep``): venue time is no longer the wall clock. simex
releases one market step (every quote due at the next grid time) followed by
a `Step` marker on each venue's stream, then waits for the trigger's
`StepDone` before the next one. Orders are handled at the step's venue time
and their reports delivered at once, so venue time stands still while a trade
is in flight. Before step 1 it sends probe markers (step 0) every
`PROBE_S` until the trigger answers: the whole path is then subscribed.
"""

from __future__ import annotations

import time

import msgspec

from actors.runtime import Actor, Timer
from bus import topics
from bus.messages import (CancelRequest, CmdAck, Control, Envelope, ExecType, Message, OrderEvent, OrderRequest, Side,
                          StatusRequest, Step, StepDone)
from configs.load import lockstep_start_ns
from feeds.book import TopOfBook
from feeds.simex.fixserver import FixVenueServer, VenueRequest
from feeds.simex.prices import PriceProcess
from feeds.simex.venue import SimVenue, venue_seed

MAX_WAKE_S = 0.05
PROBE_S = 0.05  # lockstep: probe markers before the market opens
REANNOUNCE_S = 1.0  # lockstep: re-send the current step's markers when its StepDone is this late


class SimexActor(Actor):
    kind = "simex"
    replay_depth = 256

    def setup(self) -> None:
        cfg = self.cfg
        names = self.spec.venues or [n for n, v in cfg.venues.items() if v.kind == "sim"]
        self.t0_wall = time.time_ns()
        self.t0_mono = time.monotonic_ns()
        ls = cfg.run.lockstep
        self.lockstep = ls.enabled
        self.step = 0  # lockstep: the step released last (0: probing)
        self.step_limit = ls.steps
        self.step_ns = (lockstep_start_ns(ls.start_utc) or 0) if ls.enabled else 0
        self._close_logged = False
        self._released_mono = time.monotonic_ns()
        self.filled_qty = 0
        start = self.venue_now()
        self.prices = PriceProcess(cfg, names, start_ns=start)
        instruments = cfg.active_instruments()
        self.venues = {n: SimVenue(n, cfg.venues[n].sim, instruments, venue_seed(cfg.run.seed, n), start_ns=start,
                                   band_ticks=cfg.venues[n].sim.band_ticks,
                                   # ids stay unique when simex restarts (a trade drops an exec id it has seen)
                                   session=f"{self.epoch % 10**6:06d}.") for n in names}
        self.venue_of = {k: i.venue for k, i in instruments.items() if i.venue in self.venues}
        self.peers: dict[str, bytes] = {}  # cl_ord_id -> session that sent it
        self.fill_log = open(self.run_dir / "state" / "simex-fills.jsonl", "ab")
        self._enc = msgspec.json.Encoder()
        self._wake: Timer | None = None
        self.undeliverable = 0
        self.quotes = 0
        self._fills_seen = {n: 0 for n in names}
        self.fix_servers: dict[str, FixVenueServer] = {}
        for n in names:
            if cfg.venues[n].kind == "fix":
                self._serve_fix(n)
        if self.lockstep:
            triggers = [n for n, a in cfg.actors.items() if a.kind == "trigger" and a.enabled]
            self.subscribe(triggers, [topics.LOCKSTEP_DONE], self._on_step_done, name="lockstep")
            self.every(PROBE_S, self._announce)
            self.log.info("lockstep", start_ns=self.step_ns, steps=self.step_limit)
        else:
            self._pump()

    # --- FIX venues ---------------------------------------------------------------

    def _serve_fix(self, name: str) -> None:
        """Serve venue `name` over FIX: an acceptor engine in this loop, stopped on every exit path."""
        srv = FixVenueServer(self.cfg, name, self.run_dir, self.ctx, log=self.log, clock=self.venue_now,
                             id_prefix=f"{self.epoch % 10**6:06d}.", order_state=self.venues[name].order_state,
                             orders=name not in self.spec.md_only)  # md_only: the orders go to a real FIX venue
        self.on_close(srv.stop)
        self.fix_servers[name] = srv
        self.watch(srv.socket, lambda srv=srv: self._guarded(self._on_fix, srv))
        srv.set_up(self.venues[name].connected(self.venue_now()))
        srv.start()
        fx = self.cfg.venues[name].fix
        self.log.info("fix_acceptor_started", venue=name, host=fx.host if fx else "", port=fx.port if fx else 0,
                      sessions=",".join(srv.sessions))

    def _on_fix(self, srv: FixVenueServer) -> None:
        """Requests that arrived over FIX go to the venue exactly like bus requests (`on_command`)."""
        requests = srv.poll()
        if requests:
            self._handle_requests(self.venues[srv.venue], requests)

    def _check_fix_sessions(self) -> None:
        """Follow each FIX venue's disconnect schedule (venue time): drop and refuse its sessions while down."""
        if not self.fix_servers:
            return
        now = self.venue_now()
        for name, srv in self.fix_servers.items():
            srv.set_up(self.venues[name].connected(now))

    # --- lockstep ----------------------------------------------------------------

    def _announce(self) -> None:
        """Probe before the market opens; re-send a step's markers if its StepDone is late."""
        if self.step > 0:
            now = time.monotonic_ns()
            if self._closed() or now - self._released_mono < REANNOUNCE_S * 1e9:
                return
            self.log.warning("lockstep_reannounce", step=self.step)
            self._released_mono = now
        self._markers()

    def _closed(self) -> bool:
        return 0 < self.step_limit <= self.step

    def _markers(self) -> None:
        for name in self.venues:
            self.publish(topics.raw(name, topics.STEP_SYMBOL),
                         Step(step=self.step, ts_ns=self.step_ns, venue=name, fill_qty=self.filled_qty))

    def _on_step_done(self, topic: str, env: Envelope) -> None:
        done = env.body
        if not isinstance(done, StepDone) or done.step != self.step:
            return  # a repeat of an earlier answer
        if self._closed():
            if not self._close_logged:
                self._close_logged = True
                self.log.info("lockstep_closed", step=self.step, quotes=self.quotes, filled_qty=self.filled_qty)
            return
        self._release()

    def _release(self) -> None:
        """Publish the next market step: its quotes, then a Step marker per venue."""
        tobs = []
        while not tobs:
            nxt = self.prices.next_due_ns()
            if nxt is None:
                return
            tobs = self.prices.step(nxt)
            self.step_ns = nxt
        self.step += 1
        self._released_mono = time.monotonic_ns()
        self._check_fix_sessions()
        self._emit_quotes(tobs)
        self._markers()

    def _drain_venues(self) -> None:
        """Lockstep: run every venue's pending events to the end and deliver their reports now."""
        for name, venue in self.venues.items():
            while (t := venue.next_due_ns()) is not None:
                for ev in venue.due(t):
                    self._send_report(ev)
            self._publish_fills(name, venue)

    def venue_now(self) -> int:
        if self.lockstep:
            return self.step_ns
        return self.t0_wall + (time.monotonic_ns() - self.t0_mono)

    def _pump(self) -> None:
        """Emit due quotes, deliver due reports, and re-arm the wake-up timer."""
        now = self.venue_now()
        self._emit_quotes(self.prices.step(now))
        self._deliver_reports(now)
        self._check_fix_sessions()
        nxt = [t for t in [self.prices.next_due_ns()] + [v.next_due_ns() for v in self.venues.values()] if t is not None]
        delay = min(MAX_WAKE_S, max(0.0, (min(nxt) - self.venue_now()) / 1e9)) if nxt else MAX_WAKE_S
        if self._wake is not None:
            self._wake.cancelled = True
        self._wake = self.after(delay, self._pump)

    def _emit_quotes(self, tobs: list[TopOfBook]) -> None:
        """Each quote into its venue's book (in time order), then out on the venue's raw feed."""
        for tob in tobs:
            venue = self.venues.get(tob.venue)
            if venue is not None:
                venue.on_quote(tob)
            self.publish(topics.raw(tob.venue, tob.instrument), tob.to_quote(0))
            self.quotes += 1
            srv = self.fix_servers.get(tob.venue)
            if srv is not None:
                srv.on_quote(tob)

    def _deliver_reports(self, now: int) -> None:
        for name, venue in self.venues.items():
            for ev in venue.due(now):
                self._send_report(ev)
            self._publish_fills(name, venue)

    def _publish_fills(self, name: str, venue: SimVenue) -> None:
        fills = venue.fills()
        for ev in fills[self._fills_seen[name]:]:
            self.fill_log.write(self._enc.encode(ev) + b"\n")
            self.publish(topics.venue_fill(name), ev)
            self.filled_qty += ev.last_qty
        if len(fills) > self._fills_seen[name]:
            self.fill_log.flush()
        self._fills_seen[name] = len(fills)

    def _send_report(self, ev: OrderEvent) -> None:
        srv = self.fix_servers.get(ev.venue)
        if srv is not None and srv.owns(ev.cl_ord_id):  # an order that came over FIX: answered over FIX
            if not srv.report(ev):
                self.undeliverable += 1
                self.log.warning("report_undeliverable", cl_ord_id=ev.cl_ord_id, exec_type=ev.exec_type.value,
                                 venue=ev.venue, peer="fix")
            return
        peer = self.peers.get(ev.cl_ord_id)
        if peer is None or not self.cmd.send(peer, 0, ev):
            self.undeliverable += 1
            self.log.warning("report_undeliverable", cl_ord_id=ev.cl_ord_id, exec_type=ev.exec_type.value,
                             venue=ev.venue, peer=(peer or b"").decode(errors="replace"))

    def on_command(self, peer: bytes, env: Envelope) -> Message | None:
        msg = env.body
        if isinstance(msg, (OrderRequest, CancelRequest, StatusRequest)):
            venue = self.venues.get(msg.venue)
            if venue is None:
                return OrderEvent(cl_ord_id=msg.cl_ord_id, exec_type=ExecType.REJECT, venue=msg.venue,
                                  instrument=getattr(msg, "instrument", ""), side=getattr(msg, "side", Side.BUY),
                                  order_qty=getattr(msg, "qty", 0), cum_qty=0, leaves_qty=0,
                                  reason=f"VENUE_UNKNOWN: venue={msg.venue}")
            self.peers.setdefault(msg.cl_ord_id, peer)
            if isinstance(msg, OrderRequest):
                self.peers[msg.cl_ord_id] = peer
            self._handle_requests(venue, [msg])
            return None
        return super().on_command(peer, env)

    def _handle_requests(self, venue: SimVenue, requests: list[VenueRequest]) -> None:
        """Hand requests to the venue at the current venue time, then deliver what fell due."""
        for msg in requests:
            local = venue.handle(msg, self.venue_now())
            if local is not None:
                self._send_report(local)
        if self.lockstep:
            self._drain_venues()
        else:
            self._pump()

    def on_control(self, ctl: Control) -> CmdAck:
        """Test and drill hooks: drift/shock an instrument, force a pair's basis."""
        try:
            if ctl.cmd == "drift":
                self.prices.set_drift(ctl.args["instrument"], float(ctl.args["bp"]))
            elif ctl.cmd == "shock":
                self.prices.shock(ctl.args["instrument"], float(ctl.args["bp"]))
            elif ctl.cmd == "basis":
                self.prices.set_basis(ctl.args["pair"], float(ctl.args["bp"]))
            else:
                return super().on_control(ctl)
        except (KeyError, ValueError) as exc:
            return CmdAck(ok=False, reason=f"CONTROL_BAD_ARGS: cmd={ctl.cmd} error={exc}")
        self.log.info("simex_control", cmd=ctl.cmd, **ctl.args)
        return CmdAck(ok=True)

    def detail(self) -> dict[str, float]:
        d = {"quotes": float(self.quotes), "undeliverable": float(self.undeliverable)}
        if self.lockstep:
            d["lockstep_step"] = float(self.step)
            d["lockstep_closed"] = float(self._closed())
        for name, v in self.venues.items():
            for k, n in v.stats.items():
                if n:
                    d[f"{name}.{k}"] = float(n)
        for srv in self.fix_servers.values():
            d.update(srv.detail())
        return d

    def teardown(self) -> None:
        if self.lockstep:
            self._drain_venues()
        else:
            self._deliver_reports(self.venue_now())
        self.fill_log.close()

