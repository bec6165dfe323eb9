"""The one position view: what the executor's trades hold, computed once from the stream's events.

Signed lots per (account, instrument) move with every fill event; ratio units per pair
move when a trade settles (and back out if a late fill reopens it). The execution engine
feeds it the events it writes to the stream, the pre-trade limits read it, and it is
published on the stream (`Positions`) for the trigger, marginwatch and the CLI, so they
agree with the limits by construction instead of each keeping its own count.
"""

from __future__ import annotations

from collections.abc import Mapping

from bus.messages import ExecType, InstrumentPosition, OrderEvent, PairTradeEvent, PairUnits, Positions, TradeState
from execution.exposure import hedged_units


def units_held(ev: PairTradeEvent, ratio_a: int, ratio_b: int) -> int:
    """Ratio units a trade holds after `ev` (+ long the spread: long leg A, short leg B).

    Units exist only where both legs hold their ratio in opposite directions; whatever is
    left over is a naked remainder, not a unit. Refused, cancelled and rolled back trades
    hold none.
    """
    if ev.state in (TradeState.REJECTED, TradeState.CANCELLED, TradeState.ROLLED_BACK) or len(ev.legs) != 2:
        return 0
    a, b = ev.legs[0].net_qty, ev.legs[1].net_qty
    n = hedged_units(a, b, ratio_a, ratio_b)
    return n if a > 0 else -n


class PositionBook:
    """Units per pair and lots per (account, instrument); feed it stream events in order."""

    def __init__(self, ratios: Mapping[str, tuple[int, int]]) -> None:
        """`ratios`: pair -> (ratio of leg A, ratio of leg B)."""
        self.ratios = dict(ratios)
        self._lots: dict[tuple[str, str], int] = {}
        self._by_instrument: dict[str, int] = {}
        self._units: dict[str, int] = {}
        self._held: dict[str, tuple[str, int]] = {}  # settled trade id -> (pair, units it holds)

    # --- events --------------------------------------------------------------------

    def on_fill(self, ev: OrderEvent) -> None:
        """A fill event of the stream (exec_type FILL, `last_qty` more held)."""
        if ev.exec_type is ExecType.FILL and ev.last_qty > 0:
            self.move(ev.account, ev.instrument, ev.side.sign * ev.last_qty)

    def on_trade(self, ev: PairTradeEvent) -> bool:
        """A trade event; True if the pair's units changed (a trade settled or was reopened)."""
        if not ev.trade_id or ev.pair not in self.ratios:
            return False
        prev = self._held.pop(ev.trade_id, None)
        now = 0
        if ev.state.terminal:
            now = units_held(ev, *self.ratios[ev.pair])
            self._held[ev.trade_id] = (ev.pair, now)
        before = prev[1] if prev is not None else 0
        if now != before:
            self._units[ev.pair] = self._units.get(ev.pair, 0) + now - before
            return True
        return False

    def move(self, account: str, instrument: str, qty: int) -> None:
        key = (account, instrument)
        self._lots[key] = self._lots.get(key, 0) + qty
        self._by_instrument[instrument] = self._by_instrument.get(instrument, 0) + qty

    def forget_settled(self, trade_id: str) -> None:
        """Drop a settled trade's bookkeeping (its units stay counted); a late fill can no longer
        reopen it in this view. Keeps memory bounded over long runs."""
        self._held.pop(trade_id, None)

    # --- reads ---------------------------------------------------------------------

    def units(self, pair: str) -> int:
        return self._units.get(pair, 0)

    def lots(self, account: str, instrument: str) -> int:
        return self._lots.get((account, instrument), 0)

    def holdings(self) -> list[tuple[str, str]]:
        """(account, instrument) of every non-flat position."""
        return [k for k, q in self._lots.items() if q]

    def position(self, instrument: str) -> int:
        """Signed lots on `instrument`, summed over accounts."""
        return self._by_instrument.get(instrument, 0)

    def view(self) -> Positions:
        return Positions(
            pairs=tuple(PairUnits(pair=p, units=u) for p, u in sorted(self._units.items())),
            instruments=tuple(InstrumentPosition(account=a, instrument=i, qty=q)
                              for (a, i), q in sorted(self._lots.items())),
        )
