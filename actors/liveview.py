"""`xmc up --live`: a terminal view of a running system, drawn by the supervisor.

It subscribes to the bus like any observer (quotes, pair-trade events, risk
state and margin) and combines that with the supervisor's actor status: per
pair both legs' books, the z-score against its entry/exit thresholds and the
trades by state; margin utilisation and risk state; actor health. On a
terminal it redraws in place; otherwise it prints one summary line every 5 s.
"""

from __future__ import annotations

import sys
import time
from collections import Counter

import zmq
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from actors.supervisor import Supervisor
from actors.tables import capital_table, status_table
from bus.codec import Codec, FrameError
from bus import topics
from bus.messages import ActorState, MarginSnapshot, PairTradeEvent, Quote, RiskState, StreamEvent, TradeState
from riskguard.capital import capital_view


class LiveView:
    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        cfg = sup.cfg
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        for prefix in (topics.MD, topics.EXEC_STREAM, topics.RISK_STATE, topics.RISK_MARGIN):
            self.sock.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        for name, a in cfg.actors.items():
            if a.kind in ("ingest", "executor", "marginwatch") and a.enabled:
                sup.security.client(self.sock, name)
                self.sock.connect(sup.eps.pub(name))
        self.codec = Codec()
        self.books: dict[str, Quote] = {}
        self.trades: dict[str, TradeState] = {}
        self.risk: RiskState | None = None
        self.margin: MarginSnapshot | None = None
        self.symbol_of = {k: (i.venue, i.symbol) for k, i in cfg.instruments.items()}
        self.tty = sys.stdout.isatty()
        self.console = Console()
        self.live: Live | None = Live(console=self.console, auto_refresh=False, transient=False) if self.tty else None
        if self.live is not None:
            self.live.start()
        self._next = 0.0

    def tick(self) -> None:
        for _ in range(5000):
            try:
                frame = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                _, env = self.codec.decode_frame(frame)
            except FrameError:
                continue
            b = env.body
            if isinstance(b, StreamEvent):  # a view, not a follower: what it misses it does not show
                b = b.body
            if isinstance(b, Quote):
                self.books[f"{b.venue}.{b.symbol}"] = b
            elif isinstance(b, PairTradeEvent) and b.trade_id:
                self.trades[b.trade_id] = b.state
            elif isinstance(b, RiskState):
                self.risk = b
            elif isinstance(b, MarginSnapshot):
                self.margin = b
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + (0.5 if self.tty else 5.0)
        if self.live is not None:
            self.live.update(self.render(), refresh=True)
        else:
            print(self.line(), flush=True)

    def _states(self) -> Counter:
        return Counter(s.value if s.terminal else "IN_FLIGHT" for s in self.trades.values())

    def line(self) -> str:
        states = ", ".join(f"{k}={v}" for k, v in sorted(self._states().items())) or "none yet"
        risk = self.risk.state.value if self.risk else "?"
        util = f"{self.margin.total.utilisation:.1%}" if self.margin else "?"
        alive = sum(1 for a in self.sup.actors.values() if a.state in (ActorState.READY, ActorState.RUNNING))
        return f"xmc: actors {alive}/{len(self.sup.actors)} up | trades {states} | risk {risk} | margin {util}"

    def render(self) -> Group:
        cfg = self.sup.cfg
        status = self.sup.status()
        trig = next((a["detail"] for a in status["actors"] if a["kind"] == "trigger"), {})
        pairs = Table(title="pairs")
        for col in ("pair", "leg A bid/ask", "leg B bid/ask", "z", "entry/exit", "position"):
            pairs.add_column(col)
        for name, pc in cfg.pairs.items():
            cells = []
            for leg in (pc.leg_a, pc.leg_b):
                venue, sym = self.symbol_of[leg]
                q = self.books.get(f"{venue}.{sym}")
                cells.append(f"{leg} {q.bid:g} / {q.ask:g} ({q.bid_size:g}x{q.ask_size:g})" if q else f"{leg} -")
            z = trig.get(f"{name}.z", 0.0)
            hot = abs(z) >= pc.entry
            pairs.add_row(name, *cells, f"[{'bold red' if hot else 'white'}]{z:+.2f}[/]", f"±{pc.entry:g} / ±{pc.exit:g}",
                          f"{trig.get(f'{name}.position', 0):g}")
        summary = Table(title="trades and risk")
        summary.add_column("figure")
        summary.add_column("value")
        for k, v in sorted(self._states().items()):
            summary.add_row(f"trades {k}", str(v))
        if self.risk is not None:
            style = {"NORMAL": "green", "WARN": "yellow"}.get(self.risk.state.value, "bold red")
            summary.add_row("risk state", f"[{style}]{self.risk.state.value}[/] ({self.risk.reason[:60]})")
        parts = [pairs, summary]
        if self.margin is not None:
            parts.append(capital_table(capital_view(self.margin, cfg.risk, state=self.risk), console=self.console))
        return Group(*parts, status_table(status, console=self.console))

    def close(self) -> None:
        if self.live is not None:
            self.live.update(self.render(), refresh=True)
            self.live.stop()
        else:
            print(self.line(), flush=True)
        self.sock.close(0)


def attach_live_view(sup: Supervisor) -> LiveView:
    view = LiveView(sup)
    sup.tick_hooks.append(view.tick)
    sup.stop_hooks.append(view.close)
    return view
