"""The simulated exchange actor: the embedded default venue(s).

It publishes each simulated venue's raw top of book on ``raw.<venue>.<instrument>``
(the venue's own feed, which the venue's ingest normalises) and runs the
order sessions: `OrderRequest`/`CancelRequest`/`StatusRequest` arrive on its
command ROUTER and execution reports go back to the session that sent the
order, after the venue's configured latency (in venue time). Every fill the
venue makes is also published on ``venue.fill.<venue>`` and appended to
``state/simex-fills.jsonl``: the venue's own drop copy, to reconcile against.
"""

from __future__ import annotations

import time

import msgspec

from actors.runtime import Actor, Timer
from bus.messages import CancelRequest, CmdAck, Control, Envelope, ExecType, Message, OrderEvent, OrderRequest, Side, StatusRequest
from feeds.simex.prices import PriceProcess
from feeds.simex.venue import SimVenue, venue_seed

MAX_WAKE_S = 0.05


def raw_topic(venue: str, instrument: str) -> str:
    return f"raw.{venue}.{instrument}"


class SimexActor(Actor):
    kind = "simex"
    replay_depth = 256

    def setup(self) -> None:
        cfg = self.cfg
        names = self.spec.venues or [n for n, v in cfg.venues.items() if v.kind == "sim"]
        self.t0_wall = time.time_ns()
        self.t0_mono = time.monotonic_ns()
        start = self.venue_now()
        self.prices = PriceProcess(cfg, names, start_ns=start)
        instruments = cfg.active_instruments()
        self.venues = {n: SimVenue(n, cfg.venues[n].sim, instruments, venue_seed(cfg.run.seed, n), start_ns=start,
                                   band_ticks=cfg.venues[n].sim.band_ticks) for n in names}
        self.venue_of = {k: i.venue for k, i in instruments.items() if i.venue in self.venues}
        self.peers: dict[str, bytes] = {}  # cl_ord_id -> session that sent it
        self.fill_log = open(self.run_dir / "state" / "simex-fills.jsonl", "ab")
        self._enc = msgspec.json.Encoder()
        self._wake: Timer | None = None
        self.undeliverable = 0
        self.quotes = 0
        self._fills_seen = {n: 0 for n in names}
        self._pump()

    def venue_now(self) -> int:
        return self.t0_wall + (time.monotonic_ns() - self.t0_mono)

    def _pump(self) -> None:
        """Emit due quotes, deliver due reports, and re-arm the wake-up timer."""
        now = self.venue_now()
        for tob in self.prices.step(now):
            venue = self.venues.get(tob.venue)
            if venue is not None:
                venue.on_quote(tob)
            self.publish(raw_topic(tob.venue, tob.instrument), tob.to_quote(0))
            self.quotes += 1
        self._deliver(now)
        nxt = [t for t in [self.prices.next_due_ns()] + [v.next_due_ns() for v in self.venues.values()] if t is not None]
        delay = min(MAX_WAKE_S, max(0.0, (min(nxt) - self.venue_now()) / 1e9)) if nxt else MAX_WAKE_S
        if self._wake is not None:
            self._wake.cancelled = True
        self._wake = self.after(delay, self._pump)

    def _deliver(self, now: int) -> None:
        for name, venue in self.venues.items():
            for ev in venue.due(now):
                self._send_report(ev)
            fills = venue.fills()
            for ev in fills[self._fills_seen[name]:]:
                self.fill_log.write(self._enc.encode(ev) + b"\n")
                self.publish(f"venue.fill.{name}", ev)
            if len(fills) > self._fills_seen[name]:
                self.fill_log.flush()
            self._fills_seen[name] = len(fills)

    def _send_report(self, ev: OrderEvent) -> None:
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
            local = venue.handle(msg, self.venue_now())
            if local is not None:
                self._send_report(local)
            self._pump()
            return None
        return super().on_command(peer, env)

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
        for name, v in self.venues.items():
            for k, n in v.stats.items():
                if n:
                    d[f"{name}.{k}"] = float(n)
        return d

    def teardown(self) -> None:
        self._deliver(self.venue_now())
        self.fill_log.close()

