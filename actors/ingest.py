"""The ingest actor (one per venue): a venue feed in, normalised quotes out.

It stamps every record with its monotonic receive time (the start of every
latency measurement), publishes ``md.<venue>.<instrument>`` (`Quote`, or
`FxRate` for a currency pair), watches each instrument for a stale feed and
reports per-instrument quote rates to `xmc status`. Bad records are counted
by the adapter and never stop the actor.

FIX (``kind = "fix"``): ingest logs on to the venue's ``[fix.md]`` session as a
QuickFIX initiator and, on every logon (so again after a reconnect), asks for
each instrument of the venue with a MarketDataRequest. Snapshots (W) and
incremental updates (X) become quotes through `feeds.fix.marketdata.MdBook`;
a refused subscription (Y) is logged (`fix_md_rejected`), counted and makes the
actor degraded until that instrument quotes. Log events: `fix_md_logon`,
`fix_md_logout`, `fix_md_subscribed`, `fix_md_rejected`, `fix_md_dropped` (once
per reason code). A quote's `recv_ns` is when QuickFIX handed the message over.

Lockstep (``run.lockstep``): simex's `Step` markers are passed on in stream
order on ``md.<venue>.~step``; there is no stale-feed check, since the
market clock stands still while a trade is in flight.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from actors.runtime import Actor
from bus import topics
from bus.frames import FrameTemplate
from bus.messages import Envelope, InstrumentStatus, Quote, Step
from feeds.adapter import PacedFeed
from feeds.book import TopOfBook

if TYPE_CHECKING:
    from feeds.fix.marketdata import MdBook, MdDrop, MdReject
    from feeds.fix.session import FixEngine, SessionEvent

REPLAY_BATCH = 500  # records per loop turn when replaying as fast as possible


class IngestActor(Actor):
    kind = "ingest"

    def setup(self) -> None:
        self.venue = self.spec.venue
        vcfg = self.cfg.venues[self.venue]
        self.instruments = self.cfg.venue_instruments(self.venue)
        self.fx_pair = {i.symbol: k for k, i in self.instruments.items() if i.fx}  # venue symbol -> pair
        self.stale_ns = int(vcfg.stale_ms * 1e6)
        self.last_recv: dict[str, int] = {}
        self.stale: set[str] = set()
        self.counts: dict[str, int] = {}
        self._frames: dict[str, FrameTemplate] = {}  # venue symbol -> its frame (built at its first quote)
        self.rates: dict[str, float] = {}
        self._rate_t = time.monotonic()
        self.feed: PacedFeed | None = None
        self.md_book: MdBook | None = None
        self.md_rejects: dict[str, str] = {}  # instrument ("" if unknown) -> why its subscription was refused
        if vcfg.kind == "sim":
            simex = [n for n, a in self.cfg.actors.items() if a.kind == "simex" and (not a.venues or self.venue in a.venues)]
            self.subscribe(simex, [topics.raw(self.venue)], self._on_raw, name="venue")
        elif vcfg.kind == "replay":
            from feeds.replay import replay_feed

            assert vcfg.replay is not None
            self.feed = replay_feed(self.venue, vcfg.replay, instruments=self.cfg.instruments)
            self._audience = 0
            self._started = False
            if vcfg.replay.wait_subscribers:
                self.after(vcfg.replay.wait_timeout_s, lambda: self._start_replay("wait_timeout"))
            else:
                self._start_replay("no_wait")
        elif vcfg.kind == "fix":
            self._setup_fix()
        if not self.cfg.run.lockstep.enabled:
            self.every(max(0.05, vcfg.stale_ms / 4000.0), self._check_stale)
        self.every(1.0, self._roll_rates)

    def _on_raw(self, topic: str, env: Envelope) -> None:
        q = env.body
        if isinstance(q, Quote):
            self._emit_quote(q)
        elif isinstance(q, Step) and q.venue == self.venue:
            self.publish(topics.md(self.venue, topics.STEP_SYMBOL), q)

    def _emit_quote(self, q: Quote) -> None:
        now = time.monotonic_ns()
        pair = self.fx_pair.get(q.symbol)
        self._publish_tob(TopOfBook(venue=q.venue, instrument=pair or q.symbol, symbol=q.symbol, bid=q.bid, ask=q.ask,
                                    bid_size=q.bid_size, ask_size=q.ask_size, ts_ns=q.exch_ts_ns, seq=q.venue_seq,
                                    fx=pair is not None), now)

    def _publish_tob(self, tob: TopOfBook, recv_ns: int) -> None:
        """Publish a record on ``md.<venue>.<symbol>`` (`TopOfBook.to_message`). Each instrument's
        frame is encoded at its first record (`bus.frames`); a record writes its numbers into it."""
        symbol = tob.symbol
        t = self._frames.get(symbol)
        if t is None:
            t = self._frames[symbol] = self.pub.template(topics.md(self.venue, symbol), tob.to_message(recv_ns),
                                                         tob.frame_fields)
        self.pub.publish_template(t, tob.frame_values(recv_ns))
        self.last_recv[symbol] = recv_ns
        self.counts[symbol] = self.counts.get(symbol, 0) + 1
        if symbol in self.stale:
            self.stale.discard(symbol)
            self.publish(topics.md(self.venue, symbol),
                         InstrumentStatus(venue=self.venue, symbol=symbol, stale=False, age_ms=0.0))
            self.log.info("feed_fresh", venue=self.venue, instrument=symbol)

    def on_subscribe(self, prefix: str) -> None:
        if self.feed is None or self._started or not topics.md_prefix(self.venue).startswith(prefix):
            return
        self._audience += 1
        replay = self.cfg.venues[self.venue].replay
        if replay is not None and self._audience >= replay.wait_subscribers:
            self._start_replay("subscribers_ready")

    def _start_replay(self, why: str) -> None:
        if self._started:
            return
        self._started = True
        self.log.info("replay_started", venue=self.venue, why=why, subscribers=self._audience)
        self.after(0.0, self._replay)

    def _replay(self) -> None:
        feed = self.feed
        assert feed is not None
        for tob in feed.poll(time.monotonic_ns(), REPLAY_BATCH):
            now = time.monotonic_ns()
            self._publish_tob(tob, now)
        if feed.done:
            self.log.info("replay_done", venue=self.venue, **{k.replace(".", "_"): v for k, v in feed.adapter.stats.as_dict().items()})
            return
        nxt = feed.next_due_ns()
        delay = 0.0 if nxt is None else max(0.0, (nxt - time.monotonic_ns()) / 1e9)
        self.after(delay, self._replay)

    # ---- FIX market data -------------------------------------------------------------

    def _setup_fix(self) -> None:
        from feeds.fix.marketdata import MdBook
        from feeds.fix.session import NOT_LOGGED_ON_WARN_S, FixEngine, FixUnavailable
        from feeds.fix.venue import logon_fields, md_session

        fx = self.cfg.venues[self.venue].fix
        spec = md_session(self.run_dir, self.venue, fx) if fx is not None else None
        if fx is None or spec is None:
            raise FixUnavailable(f"FIX_MD_SESSION_MISSING: venue={self.venue} (a [venues.{self.venue}.fix.md] table is needed)")
        self.md_spec = spec
        self.md_depth = fx.md.depth if fx.md is not None else 1
        self.md_requests = 0
        self.md_send_failed = 0
        self._md_logged: set[str] = set()
        self._md_up = False
        self.engine: FixEngine = FixEngine("initiator", [spec], self.ctx, logon_fields=logon_fields(fx))
        self.on_close(self.engine.stop)
        # request ids `<venue>-<instrument>-<n>`, n from the wall clock in ms: never reused across restarts
        self.md_book = MdBook.from_config(self.cfg, self.venue, first_req_id=time.time_ns() // 1_000_000)
        self.watch(self.engine.socket, self._on_fix)
        self._warn_s = NOT_LOGGED_ON_WARN_S
        self.every(NOT_LOGGED_ON_WARN_S, self._warn_not_logged_on)
        self.engine.start()
        self.log.info("fix_md_started", venue=self.venue, session=spec.session_id, host=spec.host, port=spec.port,
                      instruments=sorted(self.md_book.by_instrument))

    def _warn_not_logged_on(self) -> None:
        for view in self.engine.not_logged_on(self._warn_s):
            self.log.warning("fix_md_not_logged_on", venue=self.venue, session=view.session, state=view.state.value,
                             for_s=round((time.monotonic_ns() - view.since_ns) / 1e9, 1), reason=view.last_reason)

    def _on_fix(self) -> None:
        for ev in self.engine.drain():
            self._guarded(self._on_fix_event, ev)

    def _on_fix_event(self, ev: "SessionEvent") -> None:
        from feeds.fix import wire
        from feeds.fix.session import SessionEventKind

        book = self.md_book
        assert book is not None
        kind = ev.kind
        if kind is SessionEventKind.APP or kind is SessionEventKind.ADMIN:
            try:
                fields = wire.Fields.parse(ev.raw)
            except wire.FixError as exc:
                self._md_bad(str(exc).split(":", 1)[0], str(exc))
                return
            if kind is SessionEventKind.ADMIN and fields.msg_type != "3":
                self.log.warning("fix_md_admin", venue=self.venue, session=ev.session, msg_type=fields.msg_type,
                                 text=fields.get(wire.TEXT)[:200])
                return
            res = book.on_message(fields)
            for drop in res.drops:
                self._md_dropped(drop)
            for tob in res.quotes:
                self._publish_tob(tob, ev.ts_ns)
                if self.md_rejects.pop(tob.instrument, None) is not None:
                    self.log.info("fix_md_recovered", venue=self.venue, instrument=tob.instrument, symbol=tob.symbol)
                    self._refresh_degraded()
            if res.reject is not None:
                self._md_rejected(ev.session, res.reject)
        elif kind is SessionEventKind.LOGON:
            self._md_up = True
            self.log.info("fix_md_logon", venue=self.venue, session=ev.session)
            book.new_logon()
            self.md_rejects.pop("", None)  # an unattributed refusal is retried by the new subscriptions
            self._refresh_degraded()
            self._subscribe_all(ev.session)
        elif kind is SessionEventKind.LOGOUT:
            book.reset()
            view = self.engine.views.get(ev.session)
            reason = view.last_reason if view is not None else ""
            if self._md_up:  # QuickFIX may report one disconnect twice: log it once
                self._md_up = False
                self.log.warning("fix_md_logout", venue=self.venue, session=ev.session, reason=reason)
        elif kind is SessionEventKind.GAP_FILLED:
            # the venue asked for messages we keep none of (initiators gap-fill): our subscriptions may
            # have been among them, so they go out again, after the gap fill, with new request ids
            self.log.warning("fix_md_resubscribe", venue=self.venue, session=ev.session)
            self._subscribe_all(ev.session)
        elif kind is SessionEventKind.LOGON_REFUSED:
            view = self.engine.views.get(ev.session)
            self.log.error("fix_md_logon_refused", venue=self.venue, session=ev.session,
                           reason=view.last_reason if view is not None else "")
        elif kind is SessionEventKind.REFUSED:
            self._md_bad("FIX_REFUSED", f"FIX_REFUSED: session={ev.session} reject={wire.masked(ev.raw, 200)}")

    def _subscribe_all(self, session: str) -> None:
        from feeds.fix.marketdata import market_data_request

        book = self.md_book
        assert book is not None
        for inst, vs in sorted(book.by_instrument.items()):
            req = book.subscribe(inst)
            ok = self.engine.send(session, market_data_request(self.md_spec.begin_string, req, vs, self.md_depth))
            if ok:
                self.md_requests += 1
                self.log.info("fix_md_subscribed", venue=self.venue, session=session, instrument=inst,
                              symbol=vs.symbol, md_req_id=req, depth=self.md_depth)
            else:
                self.md_send_failed += 1
                self.log.warning("fix_md_send_failed", venue=self.venue, session=session, instrument=inst, md_req_id=req)

    def _md_dropped(self, drop: "MdDrop") -> None:
        if drop.code not in self._md_logged:
            self._md_logged.add(drop.code)
            self.log.warning("fix_md_dropped", venue=self.venue, reason=drop.code, detail=drop.detail)

    def _md_bad(self, code: str, detail: str) -> None:
        """A bad message the book never saw (unparseable, or refused by QuickFIX): counted like its drops."""
        from feeds.fix.marketdata import MdDrop

        book = self.md_book
        assert book is not None
        book.count_bad(code)
        self._md_dropped(MdDrop(code=code, detail=detail))

    def _md_rejected(self, session: str, rej: "MdReject") -> None:
        self.log.error("fix_md_rejected", venue=self.venue, session=session, instrument=rej.instrument,
                       symbol=rej.symbol, md_req_id=rej.md_req_id, reason=rej.reason, reason_code=rej.reason_code,
                       text=rej.text)
        self.md_rejects[rej.instrument] = rej.describe()
        self._refresh_degraded()

    def _refresh_degraded(self) -> None:
        why = []
        if self.stale:
            why.append(f"stale: {', '.join(sorted(self.stale))}")
        if self.md_rejects:
            why.append("; ".join(self.md_rejects[k] for k in sorted(self.md_rejects)))
        self.set_degraded(bool(why), reason="; ".join(why))

    def _check_stale(self) -> None:
        now = time.monotonic_ns()
        for key, last in self.last_recv.items():
            age = now - last
            if age > self.stale_ns and key not in self.stale:
                self.stale.add(key)
                self.publish(topics.md(self.venue, key),
                             InstrumentStatus(venue=self.venue, symbol=key, stale=True, age_ms=age / 1e6,
                                              reason=f"FEED_STALE: instrument={key} age_ms={age / 1e6:.0f}"))
                self.log.warning("feed_stale", venue=self.venue, instrument=key, age_ms=round(age / 1e6))
        self._refresh_degraded()

    def _roll_rates(self) -> None:
        now = time.monotonic()
        span = max(1e-3, now - self._rate_t)
        self.rates = {k: n / span for k, n in self.counts.items()}
        self.counts = {}
        self._rate_t = now

    def detail(self) -> dict[str, float]:
        d = {f"{k}/s": round(v, 1) for k, v in self.rates.items()}
        if self.feed is not None:
            d.update({f"replay.{k}": v for k, v in self.feed.adapter.stats.as_dict().items()})
        d["stale"] = float(len(self.stale))
        book = self.md_book
        if book is not None:
            d.update(self.engine.status_detail(self.venue))  # fix.<venue>.<SENDER->TARGET>.<field>
            d["fix_md_requests"] = float(self.md_requests)
            d["fix_md_send_failed"] = float(self.md_send_failed)
            d["fix_md_quotes"] = float(book.quotes)
            d["fix_md_rejected"] = float(book.rejected)
            d["fix_md_rejected_now"] = float(len(self.md_rejects))
            d["fix_md_bad"] = float(sum(book.bad.values()))
            d.update({f"fix_md_bad.{code}": float(n) for code, n in book.bad.items()})
            d["fix_md_ignored"] = float(book.ignored)
        return d
