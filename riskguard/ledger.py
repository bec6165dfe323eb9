"""Positions, average prices and P&L per account and instrument, built from fills.

P&L is kept in the instrument's currency and converted at the current rate
when equity is asked for. Equity of an account = its configured balance +
realised + unrealised P&L of its positions, in the account's currency.
Marks are quote mids; a position with no mark yet is marked at its average
price (unrealised 0). An instrument belongs to the account whose `venues`
lists its venue, unless a fill names the (sub-)account.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import msgspec

from bus.messages import ExecType, OrderEvent, Quote, Side
from configs.schema import AccountCfg, Config, InstrumentCfg
from riskguard.catalog import Catalog
from riskguard.fx import FxTable


class PositionView(msgspec.Struct, frozen=True, kw_only=True):
    """A position's state; P&L in the instrument's `currency`."""

    account: str
    instrument: str
    qty: int  # signed lots, + long
    avg_price: float
    realised: float
    unrealised: float
    mark: float | None
    currency: str


class _Pos:
    __slots__ = ("qty", "avg", "realised")

    def __init__(self, qty: int = 0, avg: float = 0.0, realised: float = 0.0) -> None:
        self.qty = qty
        self.avg = avg
        self.realised = realised


def mid_of(q: Quote) -> float | None:
    """Mid of a two-sided quote, else None."""
    if q.bid > 0.0 and q.ask > 0.0 and math.isfinite(q.bid) and math.isfinite(q.ask):
        return (q.bid + q.ask) / 2.0
    return None


class Ledger:
    """Per (account, instrument) positions from fills; equity from balances, P&L and marks."""

    def __init__(self, instruments: Mapping[str, InstrumentCfg], accounts: Mapping[str, AccountCfg]) -> None:
        self.cat = Catalog(instruments, accounts)
        self._pos: dict[tuple[str, str], _Pos] = {}
        self._marks: dict[str, float] = {}
        self._seen_exec: set[tuple[str, str]] = set()

    @classmethod
    def from_config(cls, cfg: Config) -> "Ledger":
        return cls(cfg.instruments, cfg.accounts)

    # --- inputs ------------------------------------------------------------------

    def on_fill(self, ev: OrderEvent, account: str | None = None) -> float | None:
        """Apply a FILL report; returns the realised P&L it made, None if ignored.

        Ignored: non-fills, zero quantity, unknown instruments or accounts, and a
        repeated (venue, exec_id). `account` may name an account or a
        sub-account; without it the instrument's venue decides.
        """
        if ev.exec_type is not ExecType.FILL or ev.last_qty <= 0:
            return None
        key = self.cat.resolve(ev.venue, ev.instrument)
        if key is None:
            return None
        acct = self.cat.parent_account(account) if account else None
        if acct is None:
            acct = self.cat.account_of(key)
        if acct is None:
            return None
        if ev.exec_id:
            dedup = (ev.venue, ev.exec_id)
            if dedup in self._seen_exec:
                return None
            self._seen_exec.add(dedup)
        return self.apply_fill(acct, key, ev.side, ev.last_qty, ev.last_px)

    def apply_fill(self, account: str, instrument: str, side: Side, qty: int, px: float) -> float:
        """Move the position by a fill; returns the realised P&L (instrument currency)."""
        mult = self.cat.instruments[instrument].multiplier
        p = self._pos.setdefault((account, instrument), _Pos())
        signed = side.sign * qty
        realised = 0.0
        if p.qty == 0 or (p.qty > 0) == (signed > 0):
            new_qty = p.qty + signed
            p.avg = (p.avg * abs(p.qty) + px * qty) / abs(new_qty)
            p.qty = new_qty
        else:
            closed = min(qty, abs(p.qty))
            direction = 1 if p.qty > 0 else -1
            realised = (px - p.avg) * closed * direction * mult
            p.realised += realised
            p.qty += signed
            if p.qty == 0:
                p.avg = 0.0
            elif (p.qty > 0) != (direction > 0):
                p.avg = px  # flipped: the remainder opened at this fill's price
        return realised

    def on_mark(self, instrument: str, price: float) -> None:
        """Set the mark price of `instrument` (key)."""
        if math.isfinite(price) and price > 0.0:
            self._marks[instrument] = price

    def on_quote(self, q: Quote) -> str | None:
        """Mark the quoted instrument at its mid; returns its key, None if unknown or one-sided."""
        key = self.cat.resolve(q.venue, q.symbol)
        mid = mid_of(q)
        if key is None or mid is None:
            return None
        self._marks[key] = mid
        return key

    def restore(self, positions: list[PositionView]) -> None:
        """Replace every position (recovery from a snapshot of `positions()`)."""
        self._pos = {
            (v.account, v.instrument): _Pos(v.qty, v.avg_price, v.realised) for v in positions
        }

    # --- views -------------------------------------------------------------------

    def mark(self, instrument: str) -> float | None:
        return self._marks.get(instrument)

    def position(self, account: str, instrument: str) -> PositionView:
        """The position (flat and zero if never traded)."""
        p = self._pos.get((account, instrument)) or _Pos()
        inst = self.cat.instruments[instrument]
        mark = self._marks.get(instrument)
        unreal = 0.0 if mark is None or p.qty == 0 else (mark - p.avg) * p.qty * inst.multiplier
        return PositionView(
            account=account, instrument=instrument, qty=p.qty, avg_price=p.avg,
            realised=p.realised, unrealised=unreal, mark=mark, currency=inst.currency,
        )

    def positions(self, account: str | None = None) -> list[PositionView]:
        """Every position ever traded (flat ones keep their realised P&L), sorted."""
        return [
            self.position(a, i) for (a, i) in sorted(self._pos) if account is None or a == account
        ]

    def equity(self, account: str, fx: FxTable) -> float:
        """Balance + P&L in the account's currency; raises `FxUnavailable`."""
        ccy = self.cat.accounts[account].currency
        total = self.cat.accounts[account].balance
        for v in self.positions(account):
            pnl = v.realised + v.unrealised
            if pnl:
                total += pnl * fx.rate(v.currency, ccy)
        return total

    def equity_base(self, account: str, fx: FxTable, base: str) -> float:
        """Equity of `account` in `base`; raises `FxUnavailable`."""
        return self.equity(account, fx) * fx.rate(self.cat.accounts[account].currency, base)
