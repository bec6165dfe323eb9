"""The ingest actor (one per venue): a venue feed in, normalised quotes out.

It stamps every record with its monotonic receive time (the start of every
latency measurement), publishes ``md.<venue>.<instrument>`` (`Quote`, or
`FxRate` for a currency pair), watches each instrument for a stale feed and
reports per-instrument quote rates to `xmc status`. Bad records are counted
by the adapter and never stop the actor.

Lockstep (``run.lockstep``): simex's `Step` markers are passed on in stream
order on ``md.<venue>.~step``; there is no stale-feed check, since the
market clock stands still while a trade is in flight.
"""

from __future__ import annotations

import time

from actors.runtime import Actor
from bus import topics
from bus.messages import Envelope, FxRate, InstrumentStatus, Message, Quote, Step
from feeds.adapter import PacedFeed

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
        self.rates: dict[str, float] = {}
        self._rate_t = time.monotonic()
        self.feed: PacedFeed | None = None
        if vcfg.kind == "sim":
            simex = [n for n, a in self.cfg.actors.items() if a.kind == "simex" and (not a.venues or self.venue in a.venues)]
            self.subscribe(simex, [f"raw.{self.venue}."], self._on_raw, name="venue")
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
        key = q.symbol
        pair = self.fx_pair.get(key)
        if pair is not None:
            msg = FxRate(pair=pair, bid=q.bid, ask=q.ask, exch_ts_ns=q.exch_ts_ns, recv_ns=now)
        else:
            msg = Quote(venue=q.venue, symbol=key, bid=q.bid, ask=q.ask, bid_size=q.bid_size, ask_size=q.ask_size,
                        exch_ts_ns=q.exch_ts_ns, recv_ns=now, venue_seq=q.venue_seq)
        self._publish(key, msg, now)

    def _publish(self, key: str, msg: Message, now: int) -> None:
        self.publish(topics.md(self.venue, key), msg)
        self.last_recv[key] = now
        self.counts[key] = self.counts.get(key, 0) + 1
        if key in self.stale:
            self.stale.discard(key)
            self.publish(topics.md(self.venue, key), InstrumentStatus(venue=self.venue, symbol=key, stale=False, age_ms=0.0))
            self.log.info("feed_fresh", venue=self.venue, instrument=key)

    def on_subscribe(self, prefix: str) -> None:
        if self.feed is None or self._started or not f"md.{self.venue}.".startswith(prefix):
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
            self._publish(tob.symbol, tob.to_message(now), now)
        if feed.done:
            self.log.info("replay_done", venue=self.venue, **{k.replace(".", "_"): v for k, v in feed.adapter.stats.as_dict().items()})
            return
        nxt = feed.next_due_ns()
        delay = 0.0 if nxt is None else max(0.0, (nxt - time.monotonic_ns()) / 1e9)
        self.after(delay, self._replay)

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
        self.set_degraded(bool(self.stale), reason=f"stale: {', '.join(sorted(self.stale))}")

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
        return d
